//! `epsim train`, `epsim eval`, `epsim settle` and `epsim smoke`: the EP commands of the CLI.

use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use clap::Args;

use ep::EpNet;
use sim::Cpu;

use crate::data::{DatasetSpec, Normalization};
use crate::ep_run::{self, TrainOptions};
use crate::train_config::TrainConfig;

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
}

/// Arguments of `epsim eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Model file: an epsim checkpoint (safetensors with the spec in metadata), or a PyTorch state
    /// dict saved with safetensors plus --spec.
    #[arg(long, value_name = "SAFETENSORS")]
    pub model: PathBuf,
    /// Model spec (TOML or JSON) for files without one.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Dataset spec (see `epsim data info --help`); without a split the test split is used.
    #[arg(long, value_name = "SPEC")]
    pub data: String,
    /// Free-phase steps (default: the model's T1).
    #[arg(long, value_name = "T")]
    pub steps: Option<usize>,
    /// Accuracy after every free-phase step 1..T, as a table and a plot.
    #[arg(long)]
    pub per_step: bool,
    /// Plot file for --per-step (.png or .svg).
    #[arg(long, value_name = "FILE", default_value = "per_step_accuracy.png")]
    pub plot: PathBuf,
    /// Evaluate only the first N images (class-balanced).
    #[arg(long, value_name = "N")]
    pub subset: Option<usize>,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Substrate: digital, or netlist:<preset|preset.toml|netlist.json> (the model compiled and
    /// realized on simulated hardware, programmed from --seed).
    #[arg(long, default_value = "digital", value_name = "SUBSTRATE")]
    pub substrate: String,
    /// Preset overrides for netlist substrates, e.g. --set read_noise_scale=0.5,t_inference=3600
    /// or neuron.kind=spiking,neuron.window=32 (spiking neurons).
    #[arg(long, value_delimiter = ',', value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Physical array size ROWSxCOLS for netlist substrates.
    #[arg(long, default_value = "512x512", value_name = "RxC")]
    pub tile: String,
}

/// Arguments of `epsim settle`.
#[derive(Debug, Args)]
pub struct SettleArgs {
    /// Model file (see `epsim eval --help`).
    #[arg(long, value_name = "SAFETENSORS")]
    pub model: PathBuf,
    /// Model spec (TOML or JSON) for files without one.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Inputs as .npy, float32 NCHW, already normalized.
    #[arg(long, value_name = "NPY")]
    pub input: PathBuf,
    /// Free-phase steps.
    #[arg(long, value_name = "T")]
    pub steps: usize,
    /// Write every layer's state at the chosen steps to this .npz (arrays `layer{k}_step{t}`, k
    /// from 1, and `logits_step{t}`).
    #[arg(long, value_name = "NPZ")]
    pub dump: Option<PathBuf>,
    /// Steps to dump, comma-separated (default: T).
    #[arg(long, value_delimiter = ',', value_name = "T1,T2,..")]
    pub at: Vec<usize>,
}

/// Arguments of `epsim smoke`.
#[derive(Debug, Args)]
pub struct SmokeArgs {
    /// Output directory.
    #[arg(long, value_name = "DIR", default_value = "runs/smoke")]
    pub out: PathBuf,
}

/// `epsim train`.
pub fn train(a: &TrainArgs, seed: Option<u64>) -> Result<()> {
    let text = std::fs::read_to_string(&a.config)
        .with_context(|| format!("reading config {}", a.config.display()))?;
    let any = crate::train_config::AnyConfig::from_toml(&text, &a.config.display().to_string())?;
    let opts = TrainOptions {
        out_dir: a.out.clone(),
        resume: a.resume,
        epochs: a.epochs,
        max_batches: a.max_batches,
        seed,
        stop_after: None,
    };
    let logs = match any {
        crate::train_config::AnyConfig::Ep(cfg) => ep_run::train(&cfg, &opts)?,
        crate::train_config::AnyConfig::Baseline(cfg) => crate::bp_run::train(&cfg, &opts)?,
    };
    if let Some(l) = logs.last() {
        println!("final: epoch {} test accuracy {:.4}", l.epoch, l.test_acc);
    }
    Ok(())
}

fn model_norm(net: &EpNet<Cpu>, channels: usize) -> Normalization {
    match &net.spec.input_norm {
        Some(n) => Normalization {
            mean: n.mean.clone(),
            std: n.std.clone(),
        },
        None => {
            tracing::warn!(
                "the model carries no input normalization: pixels in [0, 1] are fed as they are"
            );
            Normalization::identity(channels)
        }
    }
}

/// `epsim eval`.
pub fn eval(a: &EvalArgs) -> Result<()> {
    let spec =
        DatasetSpec::parse(&a.data).map_err(|e| anyhow::anyhow!("--data {:?}: {e}", a.data))?;
    let mut d = ep_run::load_split(&a.data, spec.split.as_deref().unwrap_or("test"))?;
    if let Some(n) = a.subset {
        d = ep_run::balanced_subset(&d, n);
    }
    if crate::cli_rob::is_baseline_file(&a.model)? {
        ensure!(
            !a.per_step && a.steps.is_none(),
            "--steps/--per-step apply to EP models only"
        );
        let m = crate::bp_run::load_baseline(&a.model)?;
        ensure!(
            d.image_shape() == m.spec.input(),
            "the model expects {:?} inputs, {} has {:?}",
            m.spec.input(),
            a.data,
            d.image_shape()
        );
        let norm = match &m.spec.input_norm {
            Some(n) => Normalization {
                mean: n.mean.clone(),
                std: n.std.clone(),
            },
            None => Normalization::identity(d.shape[1]),
        };
        let t = std::time::Instant::now();
        let acc = crate::bp_run::evaluate_baseline(&m, &d, &norm, a.batch_size)?;
        println!(
            "{}: {} images: accuracy {:.4} ({:.1} img/s)",
            a.data,
            d.len(),
            acc,
            d.len() as f64 / t.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let net = ep_run::load_model(&a.model, a.spec.as_deref())?;
    ensure!(
        d.image_shape() == net.spec.input,
        "the model expects {:?} inputs, {} has {:?}",
        net.spec.input,
        a.data,
        d.image_shape()
    );
    let steps = a.steps.unwrap_or(net.spec.t1);
    ensure!(steps >= 1, "--steps must be ≥ 1");
    let norm = model_norm(&net, d.shape[1]);
    let t = std::time::Instant::now();
    let (acc, curve) = ep_run::evaluate(&Cpu, &net, &d, &norm, a.batch_size, steps, a.per_step)?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{}: {} images, T = {steps}: accuracy {:.4} ({:.1} img/s)",
        a.data,
        d.len(),
        acc,
        d.len() as f64 / secs
    );
    if a.per_step {
        println!("{:>6}  {:>8}", "step", "accuracy");
        for (t, v) in curve.iter().enumerate() {
            println!("{:>6}  {:>8.4}", t + 1, v);
        }
        let pts: Vec<(f64, f64)> = curve
            .iter()
            .enumerate()
            .map(|(t, &v)| ((t + 1) as f64, v))
            .collect();
        crate::plot::line_chart(
            &a.plot,
            "Accuracy vs free-phase step",
            "free-phase step t",
            "test accuracy",
            &[crate::plot::Series {
                label: String::new(),
                points: pts,
            }],
            Some((0.0, 1.0)),
        )?;
        println!("plot: {}", a.plot.display());
    }
    Ok(())
}

/// `epsim settle`.
pub fn settle(a: &SettleArgs) -> Result<()> {
    use ndarray_npy::{NpzWriter, ReadNpyExt};
    let net = ep_run::load_model(&a.model, a.spec.as_deref())?;
    let f =
        std::fs::File::open(&a.input).with_context(|| format!("opening {}", a.input.display()))?;
    let x = ndarray::ArrayD::<f32>::read_npy(f)
        .with_context(|| format!("{}: not a float32 .npy array", a.input.display()))?;
    let x = x.as_standard_layout().into_owned();
    ensure!(a.steps >= 1, "--steps must be ≥ 1");
    let at: Vec<usize> = if a.at.is_empty() {
        vec![a.steps]
    } else {
        a.at.clone()
    };
    if let Some(&bad) = at.iter().find(|&&t| t == 0 || t > a.steps) {
        bail!("--at {bad} is outside 1..={}", a.steps);
    }
    let be = Cpu;
    let n = net
        .check_input(&be, &x)
        .with_context(|| format!("{}", a.input.display()))?;
    sim::check_finite(&a.input.display().to_string(), &x)?;
    let input = net.read_input(&be, &x)?;
    let mut st = net.zero_state(&be, n)?;
    let mut npz = match &a.dump {
        Some(p) => Some(NpzWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    for t in 1..=a.steps {
        st = net.step_with(&be, &x, &st, None, Some(&input))?;
        net.check_state(&be, &st, t)?;
        if at.contains(&t) {
            let logits = net.logits(&be, &st)?;
            if let Some(w) = npz.as_mut() {
                for (k, l) in st.layers.iter().enumerate() {
                    w.add_array(format!("layer{}_step{t}", k + 1), l)
                        .context("writing npz")?;
                }
                w.add_array(format!("logits_step{t}"), &logits)
                    .context("writing npz")?;
            }
            let pred = ep::train::argmax_rows(&logits);
            println!("step {t}: predictions {:?}", &pred[..pred.len().min(20)]);
        }
    }
    if let (Some(w), Some(p)) = (npz, &a.dump) {
        w.finish().context("writing npz")?;
        println!("states written to {}", p.display());
    }
    Ok(())
}

/// The built-in quick-start config: a small EP-CNN on a Fashion-MNIST subset.
pub const SMOKE_CONFIG: &str = include_str!("../../configs/smoke-fmnist.toml");

/// `epsim smoke`: data + engine smoke run — dataset summaries, a short EP training on Fashion-MNIST
/// with checkpoint, and evaluation of the saved model.
pub fn smoke(a: &SmokeArgs, seed: Option<u64>) -> Result<()> {
    println!("== data");
    let fm = crate::data::DatasetSpec::parse("fashion-mnist")
        .map_err(|e| anyhow::anyhow!(e))?
        .load()?;
    print!(
        "{}",
        crate::data::report::format_text(
            &fm.iter()
                .map(crate::data::report::summarize)
                .collect::<Vec<_>>()
        )
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
    let logs = ep_run::train(&cfg, &opts)?;
    let last = logs.last().context("no epoch ran")?;
    println!(
        "== reload {} and evaluate",
        a.out.join("checkpoint.safetensors").display()
    );
    let net = ep_run::load_model(&a.out.join("checkpoint.safetensors"), None)?;
    let test = ep_run::balanced_subset(
        &ep_run::load_split(&cfg.data.test, "test")?,
        cfg.data.test_subset.unwrap_or(usize::MAX),
    );
    let norm = model_norm(&net, test.shape[1]);
    let (acc, _) = ep_run::evaluate(&Cpu, &net, &test, &norm, 128, net.spec.t1, false)?;
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
