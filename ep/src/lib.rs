//! # ep — models and learning
//!
//! Role: EP-MLP and EP-CNN (energy, exact equations of motion, free and nudged phases, symmetric EP),
//! optimizers and schedules, the training loop with checkpoint/resume, the backprop baselines, and
//! compilation of a model plus a device preset into a netlist. [`conformance`] holds the checks of the
//! dynamics written once over the backend, run on every backend by [`conformance_suite!`] and
//! between two backends by [`parity_suite!`].
//!
//! Dependencies: `sim`, `devices`. A model never knows about files or the CLI.

pub mod baselines;
pub mod checkpoint;
pub mod compile;
pub mod conformance;
pub mod dynamics;
pub mod export;
pub mod model;
pub mod optim;
pub mod settle;
pub mod spec;
pub mod substrate;
pub mod subtrain;
pub mod train;

sim::overflow_probe!();

pub use dynamics::{Bptt, Dynamics, SynapseReads};
pub use model::{EpNet, Forward, InputRead, State, Target};
pub use settle::{Settle, Settled, Settler};
pub use spec::{ConvLayer, InputNorm, Loss, ModelSpec, Pool};
