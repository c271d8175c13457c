//! `epsim train` (a run from a TOML config, with exact resume) and `epsim smoke` (the quick-start
//! run: data summaries, a short EP training, reload and evaluation). The work is in
//! [`crate::runs`].

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use clap::Args;

use crate::classifier::Normalize;
use crate::classifier::load::load_model;
use crate::data::{DatasetSpec, Normalization, balanced_subset, load_split, report};
use crate::device::{Device, Engine};
use crate::eval::evaluate;
use crate::runs::{AnyConfig, TrainConfig, TrainOptions};

/// Arguments of `epsim train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Training config (TOML): data, model, EP rule, optimizer, loop. See configs/.
    #[arg(long, value_name = "TOML")]
    pub config: PathBuf,
    /// Output directory (default runs/<name>): checkpoint.safetensors (every epoch, atomic) and
    /// log.jsonl.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue the run from its checkpoint (exact: same bits as an uninterrupted run).
    #[arg(long)]
    pub resume: bool,
    /// Override [train] epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Override [train] max_batches: batches per epoch, and test batches per evaluation; e.g. to
    /// prove that a big config runs.
    #[arg(long)]
    pub max_batches: Option<usize>,
    /// Override [ep] settle (EP configs; given only when --tol or --settle is): how the free and
    /// nudged phases and the per-epoch evaluation settle.
    #[command(flatten)]
    pub settle: super::args::SettleFlags,
}

/// Arguments of `epsim smoke`.
#[derive(Debug, Args)]
pub struct SmokeArgs {
    /// Output directory.
    #[arg(long, value_name = "DIR", default_value = "runs/smoke")]
    pub out: PathBuf,
}

/// `epsim train` on `device` (default: the config's `device`, else the CPU).
pub fn train(a: &TrainArgs, seed: Option<u64>, device: Option<Device>) -> Result<()> {
    let text = std::fs::read_to_string(&a.config)
        .with_context(|| format!("reading config {}", a.config.display()))?;
    let mut any = AnyConfig::from_toml(&text, &a.config.display().to_string())?;
    if a.settle.tol.is_some() || a.settle.settle != "plain" {
        let settle = a.settle.settle()?;
        match &mut any {
            AnyConfig::Ep(c) => c.ep.settle = settle,
            _ => anyhow::bail!(
                "{}: --settle/--tol apply to EP configs (a baseline has no free phase)",
                a.config.display()
            ),
        }
    }
    let opts = TrainOptions {
        out_dir: a.out.clone(),
        resume: a.resume,
        epochs: a.epochs,
        max_batches: a.max_batches,
        seed,
        stop_after: None,
    };
    let device = Device::pick(device, any.device());
    let logs = crate::with_backend!(device, be => crate::runs::train(be, &any, &opts))?;
    if let Some(l) = logs.last() {
        println!("final: epoch {} test accuracy {:.4}", l.epoch, l.test_acc);
    }
    Ok(())
}

/// The built-in quick-start config: a small EP-CNN on a Fashion-MNIST subset.
pub const SMOKE_CONFIG: &str = include_str!("../../../configs/smoke-fmnist.toml");

/// `epsim smoke`: data + engine smoke run — dataset summaries, a short EP training on Fashion-MNIST
/// with checkpoint, and evaluation of the saved model; computing on `be`.
pub fn smoke<B: Engine>(be: &B, a: &SmokeArgs, seed: Option<u64>) -> Result<()> {
    crate::files::check_writable(&a.out.join("checkpoint.safetensors"), "--out")?;
    println!("== data");
    let fm = DatasetSpec::parse("fashion-mnist")
        .map_err(|e| anyhow::anyhow!(e))?
        .load()?;
    print!(
        "{}",
        report::format_text(&fm.iter().map(report::summarize).collect::<Vec<_>>())
    );
    println!("== engine: EP-CNN training on a Fashion-MNIST subset");
    let cfg = TrainConfig::from_toml(SMOKE_CONFIG, "configs/smoke-fmnist.toml")?;
    if a.out.join("checkpoint.safetensors").exists() {
        std::fs::remove_file(a.out.join("checkpoint.safetensors"))
            .with_context(|| format!("cleaning {}", a.out.display()))?;
    }
    let opts = TrainOptions {
        out_dir: Some(a.out.clone()),
        seed,
        ..Default::default()
    };
    let logs = crate::runs::train(be, &AnyConfig::Ep(cfg.clone()), &opts)?;
    let last = logs.last().context("no epoch ran")?;
    println!(
        "== reload {} and evaluate",
        a.out.join("checkpoint.safetensors").display()
    );
    let net = load_model(be, &a.out.join("checkpoint.safetensors"), None)?;
    let test = balanced_subset(
        &load_split(&cfg.data.test, "test")?,
        cfg.data.test_subset.unwrap_or(usize::MAX),
    );
    let n = Normalize::of_model(&net.spec);
    let norm = Normalization {
        mean: n.mean,
        std: n.std,
    };
    let acc = evaluate(
        be,
        &net,
        &test,
        &norm,
        128,
        net.spec.t1,
        &cfg.ep.settle,
        false,
    )?
    .accuracy;
    ensure!(
        (acc - last.test_acc).abs() < 1e-12,
        "reloaded model gives {acc}, training reported {}",
        last.test_acc
    );
    println!(
        "smoke run done: test accuracy {:.4} on {} images (chance 0.1)",
        acc,
        test.len()
    );
    Ok(())
}
