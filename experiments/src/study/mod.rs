//! Robustness studies: what is evaluated ([`target`]), one attack at one strength and `epsim
//! attack`'s run ([`attack`]), the protocols and the paper's ε grids ([`protocol`]), robustness
//! suites ([`suite`]) and their run on one target ([`robustness`]), and device-parameter sweeps
//! of a suite ([`sweep`]); whole studies — models × substrates × seeds × protocols × suite items —
//! from one file ([`spec`]), as cells that run, resume and collect on their own ([`cells`]), with
//! the study's own sweeps in its report ([`sweep_cells`]), under the index contract of schedulers
//! ([`index`]) and as Slurm job arrays ([`slurm`]).

pub mod attack;
pub mod cells;
pub mod figures;
pub mod index;
pub mod item;
pub mod levels;
pub mod manifest;
pub mod protocol;
pub mod robustness;
pub mod slurm;
pub mod spec;
pub mod suite;
pub mod sweep;
pub mod sweep_cells;
pub mod target;
