//! `epsim study STUDY.toml`: a whole robustness study from one file — models × substrates × seeds
//! × protocols × attacks and corruptions — as resumable cells, then results.jsonl, report.md and
//! plots; or one step of the index contract (`--plan`, `--count`, `--run-cell`, `--collect`), or
//! the whole study as a Slurm job array (`--slurm`). The work is in [`crate::study::cells`],
//! [`crate::study::index`] and [`crate::study::slurm`].

use std::path::PathBuf;

use anyhow::{Result, ensure};
use clap::Args;

use super::index::{self, IndexArgs, Stepped};
use crate::device::Device;
use crate::study::cells::{StudyOptions, run_study};
use crate::study::index::{Grid, StudyGrid};
use crate::study::spec::StudySpec;

/// Arguments of `epsim study`.
#[derive(Debug, Args)]
pub struct StudyArgs {
    /// Study file (TOML): name, data, subset, seeds, device, [[model]] name/checkpoint/train/
    /// substrates/set/tile/t_predict/t_attack, and [suite] as for `epsim robustness` (protocols,
    /// [[suite.attack]], [suite.corruptions]). Example: configs/studies/quickstart.toml.
    #[arg(value_name = "STUDY.toml")]
    pub study: PathBuf,
    /// Continue an interrupted study: cells already written are kept (the plan must be the same).
    #[arg(long)]
    pub resume: bool,
    /// Run only these cells (indices of plan.jsonl, comma-separated); the report is written once
    /// every cell is done.
    #[arg(long, value_delimiter = ',', value_name = "I,J,..")]
    pub only: Vec<usize>,
    /// The index contract (--plan, --count, --run-cell, --collect) and Slurm (--slurm ...).
    #[command(flatten)]
    pub index: IndexArgs,
    /// With --collect: write the report of the cells done so far (headed by the ones still
    /// missing) instead of failing; results.jsonl then holds the finished cells only.
    #[arg(long, requires = "collect")]
    pub partial: bool,
    /// Train the study's models whose checkpoints are missing (from their `train` configs, into
    /// <out_dir>/models/<name>/, resumably) and stop: the first job of `--slurm` when there is
    /// something to train.
    #[arg(long, conflicts_with_all = ["plan", "count", "run_cell", "collect", "slurm"])]
    pub train_only: bool,
}

/// `epsim study` on `device` (default: the study's `device`, else the CPU): run, then print the
/// summary table and where the report is.
pub fn study(a: &StudyArgs, device: Option<Device>) -> Result<()> {
    let spec = StudySpec::read(&a.study)?;
    let device_flag = device;
    let device = Device::pick(device, spec.device);
    let name = spec.name.clone();
    let train_first = a.index.slurm && trains_first(&spec)?;
    let grid = StudyGrid {
        spec,
        file: a.study.clone(),
    };
    // Slurm's tasks get the command line's device only; without one they read the study file's.
    let step_device = if a.index.slurm {
        device_flag
    } else {
        Some(device)
    };
    match index::step(&grid, &name, &a.index, step_device, a.partial, train_first)? {
        Stepped::Done => return Ok(()),
        Stepped::Collected(r) => return summarize(&r, &grid.out_dir()),
        Stepped::Local => {}
    }
    let spec = &grid.spec;
    if a.train_only {
        let n = crate::with_backend!(device, be => crate::study::cells::train_models(be, spec))?;
        println!("{n} model(s) ready for study {}", spec.name);
        return Ok(());
    }
    let opts = StudyOptions {
        resume: a.resume,
        only: a.only.clone(),
        no_collect: false,
    };
    let o = crate::with_backend!(device, be => run_study(be, spec, &a.study, &opts))?;
    if let Some(r) = &o.report {
        summarize(r, &o.out_dir)?;
        println!("{} cells ({} run now)", o.cells, o.ran);
    }
    Ok(())
}

/// Whether a Slurm submission of `spec` trains models first (checkpoints missing); an error when
/// a missing one has no `train` config.
fn trains_first(spec: &StudySpec) -> Result<bool> {
    for m in spec.models.iter().filter(|m| !m.checkpoint.exists()) {
        ensure!(
            m.train.is_some(),
            "model {}: its checkpoint {} does not exist and it has no `train` config",
            m.name,
            m.checkpoint.display()
        );
    }
    Ok(spec.models.iter().any(|m| !m.checkpoint.exists()))
}

fn summarize(r: &crate::report::Written, out: &std::path::Path) -> Result<()> {
    if let Some(summary) = r.markdown.split("\n## ").find(|s| s.starts_with("Summary")) {
        println!("\n## {}", summary.trim_end());
    }
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    println!("\nreport: {}", out.join("report.md").display());
    Ok(())
}
