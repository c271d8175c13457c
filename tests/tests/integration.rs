//! The cross-crate integration tests as one test binary, one module per file of this directory.
//!
//! One binary, not one per file: each file instantiates the backend-generic pipelines of
//! `experiments` and `ep` for itself, so twenty-one binaries compiled and linked that code
//! twenty-one times (most of the build time of this crate), and `cargo test` ran them one after
//! the other. Run one file's tests with `cargo test --release -p epsim-tests --test integration
//! <file>::`. `cli_gpu_conv.rs` stays its own binary: it sets an environment variable in its
//! process, which the GPU tests here would read.

mod advep_protocol;
mod bad_input;
mod bp_train;
mod cifar_c_roundtrip;
mod cli_cost;
mod cli_device;
mod cli_ep;
mod cli_irdrop;
mod cli_netlist;
mod cli_sweep;
mod fuzz_parsers;
mod module_layout;
mod netlist_classifier;
mod netlist_export;
mod protocol_gap;
mod study;
mod study_index;
mod study_slurm;
mod substrate_train;
mod train_resume;
mod transfer_attack;
