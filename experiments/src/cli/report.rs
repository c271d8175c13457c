//! `epsim report`: merge the results of several runs into the study's tables, plots and checks
//! (the work is in [`crate::report`]).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::print_stdout;

/// Arguments of `epsim report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Results files (JSON Lines of `epsim attack` / `epsim robustness`), merged in this order.
    #[arg(long, num_args = 1.., required = true, value_name = "JSONL")]
    pub results: Vec<PathBuf>,
    /// Markdown report; the plots go next to it as `<stem>_<attack>.png`.
    #[arg(long, default_value = "report.md", value_name = "MD")]
    pub out: PathBuf,
    /// Row label of a model: `--label runs/ep/checkpoint.safetensors=EP-CNN` (the model path as
    /// recorded, or its file name or stem when that names one model). Default: the file stem.
    #[arg(long, value_name = "PATH=NAME")]
    pub label: Vec<String>,
}

/// `epsim report`: write the report and its plots, print it, then its warnings.
pub fn report(a: &ReportArgs) -> Result<()> {
    let w = crate::report::write_report(&a.results, &a.out, &a.label)?;
    print_stdout(&w.markdown)?;
    for msg in &w.warnings {
        eprintln!("warning: {msg}");
    }
    eprintln!(
        "report in {} ({} plot(s) beside it)",
        a.out.display(),
        w.plots
    );
    Ok(())
}
