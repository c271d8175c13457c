//! `epsim data info` and `epsim data preview`: dataset summaries and preview grids.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;

use super::args::DATA_SPEC_HELP;
use super::print_stdout;
use crate::data::{self, DatasetSpec};

/// `epsim data ...`
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Print source, counts per split, image shape, classes with per-class counts, and the
    /// per-channel mean/std of pixels scaled to [0, 1]. For corruption files without a
    /// corruption (cifar10c:DIR): the files found, their shapes and the labels.
    #[command(after_long_help = DATA_SPEC_HELP)]
    Info(InfoArgs),
    /// Write a PNG grid of images of a split.
    #[command(after_long_help = DATA_SPEC_HELP)]
    Preview(PreviewArgs),
}

/// Arguments of `epsim data info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Dataset spec, e.g. cifar10:/data/test_batch.bin or fashion-mnist (see --help).
    #[arg(value_name = "SPEC")]
    pub spec: DatasetSpec,
    /// Print JSON (one object per split) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `epsim data preview`.
#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// Dataset spec (see --help). With several splits, the first is drawn unless SPEC names one.
    #[arg(value_name = "SPEC")]
    pub spec: DatasetSpec,
    /// Output PNG file.
    #[arg(short, long, value_name = "PNG")]
    pub output: PathBuf,
    /// Grid rows.
    #[arg(long, default_value_t = 8)]
    pub rows: usize,
    /// Grid columns.
    #[arg(long, default_value_t = 8)]
    pub cols: usize,
    /// Index of the first image.
    #[arg(long, default_value_t = 0)]
    pub start: usize,
    /// Pixel magnification.
    #[arg(long, default_value_t = 2)]
    pub scale: usize,
    /// Draw a random sample (from --seed) instead of consecutive images.
    #[arg(long)]
    pub shuffle: bool,
}

fn load(spec: &DatasetSpec) -> Result<Vec<data::Dataset>> {
    let t = std::time::Instant::now();
    let ds = spec
        .load()
        .with_context(|| format!("cannot load dataset '{spec}'"))?;
    tracing::info!(
        "loaded {} ({} images) in {:.2?}",
        spec,
        ds.iter().map(|d| d.len()).sum::<usize>(),
        t.elapsed()
    );
    Ok(ds)
}

/// `epsim data info`.
pub fn info(a: &InfoArgs) -> Result<()> {
    if let Some(text) = data::report::corruption_dir_info(&a.spec, a.json)
        .with_context(|| format!("cannot summarize '{}'", a.spec))?
    {
        return print_stdout(&text);
    }
    let ds = load(&a.spec)?;
    let sums: Vec<_> = ds.iter().map(data::report::summarize).collect();
    let text = if a.json {
        serde_json::to_string_pretty(&sums)? + "\n"
    } else {
        data::report::format_text(&sums)
    };
    print_stdout(&text)
}

/// `epsim data preview`.
pub fn preview(a: &PreviewArgs, seed: u64) -> Result<()> {
    let ds = load(&a.spec)?;
    let d = ds.first().context("no split loaded")?;
    let d = if a.shuffle {
        let perm = sim::Stream::new(seed, "data.preview").permutation(d.len());
        d.select(&perm[..d.len().min(a.start + a.rows * a.cols)])
    } else {
        d.clone()
    };
    let n = data::report::write_grid(&d, a.start, a.rows, a.cols, a.scale, &a.output)?;
    tracing::info!(
        "wrote {} images of {} {} to {}",
        n,
        d.name,
        d.split,
        a.output.display()
    );
    Ok(())
}
