//! `epsim cost`: energy, latency and area per inference of a model realized on a device preset,
//! counted from a run on real data (the logic: [`crate::cost`]).

use anyhow::{Context, Result};
use clap::Args;

use super::args::{DataArgs, DeviceArgs, ModelArgs};
use crate::cost::render;
use crate::device::Engine;
use crate::eval::{Job, measure};

/// Arguments of `epsim cost`.
#[derive(Debug, Args)]
pub struct CostArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Device preset: a built-in name (ideal, pcm, rram, ecram) or a preset TOML file (also given
    /// as --device PRESET); its `[cost]` table holds the laws' parameters (--set adc_fom_j=…).
    #[arg(long, value_name = "PRESET|TOML")]
    pub preset: Option<String>,
    /// Preset overrides and tiles.
    #[command(flatten)]
    pub hw: DeviceArgs,
    /// The images.
    #[command(flatten)]
    pub data: DataArgs,
    /// Free-phase steps (default: the model's T1).
    #[arg(long, value_name = "T")]
    pub steps: Option<usize>,
    /// Batch size.
    #[arg(long, default_value_t = 128, value_parser = super::args::at_least_one)]
    pub batch_size: usize,
}

/// `epsim cost`, computing on `be`.
pub fn cost<B: Engine>(be: &B, a: &CostArgs, preset: Option<String>, seed: u64) -> Result<()> {
    let preset = preset.context("a device preset is needed: --preset PRESET|TOML")?;
    let m = measure(
        be,
        &Job {
            model: &a.model.model,
            spec: a.model.spec.as_deref(),
            preset: &preset,
            sets: &a.hw.set,
            tile: &a.hw.tile,
            data: &a.data.spec,
            subset: a.data.subset,
            steps: a.steps,
            batch: a.batch_size,
            seed,
        },
    )?;
    println!(
        "{} on {}: {} images: accuracy {:.4}",
        m.describe, a.data.spec, m.cost.images, m.accuracy
    );
    super::print_stdout(&render(&m.cost, m.steps))
}
