//! `epsim sweep`: a robustness suite on the digital model and on a device preset at every level of
//! one parameter × substrate seed, run here or as cells under the index contract (`--plan`,
//! `--run-cell`, `--collect`, `--slurm`; the work is in [`crate::study::sweep`]).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::args::{DataArgs, DeviceArgs, ModelArgs, OutputArgs};
use super::index::{self, IndexArgs, Stepped};
use crate::device::Device;
use crate::study::sweep::{Sweep, SweepGrid};

/// Arguments of `epsim sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// The EP model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// The images.
    #[command(flatten)]
    pub data: DataArgs,
    /// Device preset: a built-in name (ideal, pcm, rram, ecram) or a preset TOML file (also given
    /// as --device PRESET); default pcm.
    #[arg(long, value_name = "PRESET")]
    pub preset: Option<String>,
    /// The swept parameter and its levels, KEY=V1,V2,... with any key --set accepts, e.g.
    /// prog_noise_scale=0,0.5,1,2 or adc.bits=6,8,10 or bound_management=none,iterative.
    #[arg(long, value_name = "KEY=V1,V2,...")]
    pub param: String,
    /// Suite file (TOML), as for `epsim robustness`: [[attack]] name/eps/steps/restarts,
    /// [corruptions] names/severities/released.
    #[arg(long, value_name = "TOML")]
    pub suite: PathBuf,
    /// Substrate realizations per level (seeds --seed, --seed + 1, ...).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub substrate_seeds: usize,
    /// Where the results go (results.jsonl gets one line per item and run, appended as runs
    /// finish; sweep.md; one PNG per suite item).
    #[command(flatten)]
    pub out: OutputArgs,
    /// Continue an interrupted sweep in --out-dir: runs completely recorded in its results.jsonl
    /// are kept and not rerun; a partly recorded run is redone.
    #[arg(long)]
    pub resume: bool,
    /// Free-phase steps for predictions and gradients (default: the model's T1).
    #[arg(long, value_name = "T")]
    pub t_predict: Option<usize>,
    /// How an EP model's predictions settle (T_predict is then the cap; an attack's gradient goes
    /// through each image's own steps).
    #[command(flatten)]
    pub settle: super::args::SettleFlags,
    /// Batch size.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Overrides applied at every level before the swept value (e.g. --set t_inference=86400),
    /// and the physical array size.
    #[command(flatten)]
    pub hw: DeviceArgs,
    /// Gradients averaged per attack step on stochastic substrates (EOT); default 1 on
    /// deterministic substrates, 10 on stochastic ones.
    #[arg(long, value_name = "N")]
    pub eot: Option<usize>,
    /// The index contract (--plan, --count, --run-cell, --collect) and Slurm (--slurm ...): cell 0
    /// is the digital reference, then every level × substrate seed; tasks must be given the same
    /// arguments (the sbatch files are written with them).
    #[command(flatten)]
    pub index: IndexArgs,
}

/// `epsim sweep` of the device preset `preset` (default pcm), computing on `device` (default the
/// CPU).
pub fn sweep(
    a: &SweepArgs,
    preset: Option<String>,
    seed: u64,
    device: Option<Device>,
) -> Result<()> {
    let grid = SweepGrid {
        sweep: Sweep {
            model: a.model.model.clone(),
            spec: a.model.spec.clone(),
            data: a.data.spec.clone(),
            preset: preset.unwrap_or_else(|| "pcm".into()),
            param: a.param.clone(),
            set: a.hw.set.clone(),
            suite: a.suite.clone(),
            substrate_seeds: a.substrate_seeds,
            out_dir: a.out.dir_or("sweep"),
            resume: a.resume,
            t_predict: a.t_predict,
            settle: a.settle.settle()?,
            subset: a.data.subset,
            batch_size: a.batch_size,
            tile: a.hw.tile_size()?,
            eot: a.eot,
        },
        seed,
    };
    grid.sweep.check()?;
    let name = format!(
        "sweep-{}",
        grid.sweep.param.split('=').next().unwrap_or("param")
    );
    match index::step(&grid, &name, &a.index, device, false, false)? {
        Stepped::Done => Ok(()),
        Stepped::Collected(w) => {
            println!("{}", w.markdown);
            println!(
                "results in {}",
                grid.sweep.out_dir.join("results.jsonl").display()
            );
            Ok(())
        }
        Stepped::Local => {
            let d = device.unwrap_or_default();
            crate::with_backend!(d, be => grid.sweep.run(be, seed))
        }
    }
}
