//! # experiments — everything a user drives
//!
//! Role: datasets (Fashion-MNIST IDX, CIFAR-10/100 binary, image folders/zips) and augmentation,
//! attacks, corruptions, metrics, the `epsim` command-line tool, TOML experiment configs, sweeps,
//! results, reports and plots, export of chip programming targets.
//!
//! Dependencies: every crate below it (`sim`, `devices`, `ep`, `host-gpu`).
pub mod adv_examples;
pub mod attacks;
pub mod bp_run;
pub mod classifier;
pub mod cli;
pub mod cli_ep;
pub mod cli_hw;
pub mod cli_rob;
pub mod cli_sweep;
pub mod corrupt;
pub mod data;
pub mod ep_run;
pub mod epoch_loop;
pub mod plot;
pub mod protocol;
pub mod report;
pub mod sub_run;
pub mod substrate;
pub mod train_config;
