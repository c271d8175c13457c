//! `epsim study STUDY.toml`: a whole robustness study from one file — models × substrates × seeds
//! × protocols × attacks and corruptions — as resumable cells, then results.jsonl, report.md and
//! plots (the work is in [`crate::study::cells`]).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::device::Device;
use crate::study::cells::{StudyOptions, run_study};
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
}

/// `epsim study` on `device` (default: the study's `device`, else the CPU): run, then print the
/// summary table and where the report is.
pub fn study(a: &StudyArgs, device: Option<Device>) -> Result<()> {
    let spec = StudySpec::read(&a.study)?;
    let opts = StudyOptions {
        resume: a.resume,
        only: a.only.clone(),
    };
    let device = Device::pick(device, spec.device);
    let o = crate::with_backend!(device, be => run_study(be, &spec, &a.study, &opts))?;
    if let Some(r) = &o.report {
        if let Some(summary) = r.markdown.split("\n## ").find(|s| s.starts_with("Summary")) {
            println!("\n## {}", summary.trim_end());
        }
        for w in &r.warnings {
            eprintln!("warning: {w}");
        }
        println!(
            "\n{} cells ({} run now); report: {}",
            o.cells,
            o.ran,
            o.out_dir.join("report.md").display()
        );
    }
    Ok(())
}
