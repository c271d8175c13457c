//! # experiments — everything a user drives
//!
//! One folder per concept; the library never imports the command line:
//!
//! * [`data`]: datasets (Fashion-MNIST/MNIST IDX, CIFAR-10/100 binary, image folders/zips), the
//!   pipeline (normalization, seeded augmentation, batches), subsets, the `[data]` config;
//! * [`classifier`]: the interface attacks and corruptions are written against, model files, and
//!   the substrates a model is realized on (`digital`, `netlist:<preset>`);
//! * [`eval`]: accuracy of a model on a dataset;
//! * [`cost`]: energy, latency and area per inference of a realized model, counted from a run;
//! * [`device`]: the compute device (`--device cpu|gpu[:N]`) and the one place a backend is opened;
//! * [`attacks`], [`corrupt`]: adversarial attacks and CIFAR-10-C style corruptions;
//! * [`runs`]: training runs (EP, EP on a substrate, baselines) over one epoch loop;
//! * [`study`]: robustness suites, attack runs at a strength, protocols and ε grids, sweeps;
//! * [`results`]: the JSON Lines record types, written and read back in one place;
//! * [`report`]: tables, sanity checks, protocol gap, plots, example grids;
//! * [`export`]: chip programming targets written to a directory, and read back;
//! * [`files`]: atomic writes and JSON Lines appends;
//! * [`progress`]: progress bars on a terminal, plain progress lines otherwise;
//! * [`cli`]: the `epsim` command line (argument types and thin commands).
//!
//! Dependencies: every crate below it (`sim`, `devices`, `ep`, `host-gpu`).
pub mod attacks;
pub mod classifier;
pub mod cli;
pub mod corrupt;
pub mod cost;
pub mod data;
pub mod device;
pub mod eval;
pub mod export;
pub mod files;
pub mod progress;
pub mod report;
pub mod results;
pub mod runs;
pub mod study;

sim::overflow_probe!();
