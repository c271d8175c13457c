//! `epsim eval` (accuracy on the digital engine, of a baseline, or on a netlist substrate; EP
//! accuracy after every free-phase step with a plot) and `epsim settle` (every layer's state along
//! the free phase, for cross-checks with other implementations).

use std::path::PathBuf;

use anyhow::{Context, Result, bail, ensure};
use clap::Args;

use super::args::{DataArgs, ModelArgs, SettleFlags, SubstrateArgs};
use crate::classifier::Normalize;
use crate::classifier::load::{is_baseline_file, load_baseline, load_model};
use crate::classifier::substrate::{SubstrateSpec, classifier};
use crate::data::{Normalization, check_input_shape, load_eval_set};
use crate::device::Engine;
use crate::eval::{correct, evaluate, evaluate_baseline};
use crate::report::plot;

/// Arguments of `epsim eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// The images.
    #[command(flatten)]
    pub data: DataArgs,
    /// Free-phase steps (default: the model's T1).
    #[arg(long, value_name = "T")]
    pub steps: Option<usize>,
    /// How the free phase settles.
    #[command(flatten)]
    pub settle: SettleFlags,
    /// Accuracy after every free-phase step 1..T, as a table and a plot.
    #[arg(long)]
    pub per_step: bool,
    /// Plot file for --per-step (.png or .svg; default per_step_accuracy.png).
    #[arg(long, value_name = "FILE", requires = "per_step")]
    pub plot: Option<PathBuf>,
    /// Batch size.
    #[arg(long, default_value_t = 128, value_parser = super::args::at_least_one)]
    pub batch_size: usize,
    /// The substrate.
    #[command(flatten)]
    pub substrate: SubstrateArgs,
}

/// Arguments of `epsim settle`.
#[derive(Debug, Args)]
pub struct SettleArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Inputs as .npy, float32 NCHW, already normalized.
    #[arg(long, value_name = "NPY")]
    pub input: PathBuf,
    /// Free-phase steps.
    #[arg(long, value_name = "T")]
    pub steps: usize,
    /// Write every layer's state at the chosen steps to this .npz (arrays `layer{k}_step{t}`, k
    /// from 1, and `logits_step{t}`); dumps of the same inputs with --device cpu and --device gpu
    /// compare the devices.
    #[arg(long, value_name = "NPZ")]
    pub dump: Option<PathBuf>,
    /// Steps to dump, comma-separated (default: T).
    #[arg(long, value_delimiter = ',', value_name = "T1,T2,..")]
    pub at: Vec<usize>,
}

/// `epsim eval`, computing on `be`.
pub fn eval<B: Engine>(be: &B, a: &EvalArgs, seed: u64) -> Result<()> {
    let substrate = a.substrate.spec()?;
    let plot = a
        .plot
        .clone()
        .unwrap_or_else(|| PathBuf::from("per_step_accuracy.png"));
    ensure!(
        plot.extension().is_some_and(|e| e == "png" || e == "svg"),
        "--plot {}: the plot is written as .png or .svg",
        plot.display()
    );
    if a.per_step {
        crate::files::check_writable(&plot, "--plot")?;
    }
    if !substrate.is_digital() {
        return eval_substrate(be, a, &substrate, seed);
    }
    let d = load_eval_set(&a.data.spec, a.data.subset)?;
    if is_baseline_file(&a.model.model)? {
        ensure!(
            !a.per_step && a.steps.is_none() && a.settle.settle()?.is_default(),
            "--steps/--per-step/--settle/--tol apply to EP models only"
        );
        let m = load_baseline(&a.model.model)?;
        check_input_shape(&d, m.spec.input(), &a.data.spec)?;
        let norm = match &m.spec.input_norm {
            Some(n) => Normalization {
                mean: n.mean.clone(),
                std: n.std.clone(),
            },
            None => Normalization::identity(d.shape[1]),
        };
        let t = std::time::Instant::now();
        let acc = evaluate_baseline(be, &m, &d, &norm, a.batch_size)?;
        println!(
            "{}: {} images: accuracy {:.4} ({:.1} img/s)",
            a.data.spec,
            d.len(),
            acc,
            d.len() as f64 / t.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let net = load_model(be, &a.model.model, a.model.spec.as_deref())?;
    check_input_shape(&d, net.spec.input, &a.data.spec)?;
    let steps = a.steps.unwrap_or(net.spec.t1);
    ensure!(steps >= 1, "--steps must be ≥ 1");
    if net.spec.input_norm.is_none() {
        tracing::warn!(
            "the model carries no input normalization: pixels in [0, 1] are fed as they are"
        );
    }
    let n = Normalize::of_model(&net.spec);
    let norm = Normalization {
        mean: n.mean,
        std: n.std,
    };
    let t = std::time::Instant::now();
    let settle = a.settle.settle()?;
    let e = evaluate(
        be,
        &net,
        &d,
        &norm,
        a.batch_size,
        steps,
        &settle,
        a.per_step,
    )?;
    let (acc, curve) = (e.accuracy, e.curve);
    let secs = t.elapsed().as_secs_f64();
    let how = if settle.is_default() {
        format!("T = {steps}")
    } else {
        format!(
            "settle {}: {:.2} steps per image",
            settle.describe(steps),
            e.steps_per_image
        )
    };
    println!(
        "{}: {} images, {how}: accuracy {:.4} ({:.1} img/s)",
        a.data.spec,
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
        let series = [plot::Series {
            label: String::new(),
            points: pts,
        }];
        plot::line_chart(
            &plot,
            "Accuracy vs free-phase step",
            "free-phase step t",
            "test accuracy",
            &series,
            Some((0.0, 1.0)),
        )?;
        println!("plot: {}", plot.display());
    }
    Ok(())
}

/// `epsim eval --substrate netlist:<preset>`: accuracy of the realized model (one query per batch).
fn eval_substrate<B: Engine>(
    be: &B,
    a: &EvalArgs,
    substrate: &SubstrateSpec,
    seed: u64,
) -> Result<()> {
    ensure!(
        !a.per_step,
        "--per-step is only available on the digital substrate"
    );
    let clf = if substrate.netlist_file().is_none() && is_baseline_file(&a.model.model)? {
        // A backprop baseline, read once through the crossbars (its feed-forward form).
        ensure!(
            a.steps.is_none() && a.settle.settle()?.is_default(),
            "--steps/--settle/--tol apply to EP models only"
        );
        let m = load_baseline(&a.model.model)?;
        crate::classifier::substrate::baseline_classifier(be, &m, substrate, seed)?
    } else {
        let net = match substrate.netlist_file() {
            Some(_) => None,
            None => Some(load_model(be, &a.model.model, a.model.spec.as_deref())?),
        };
        classifier(be, net, substrate, seed, a.steps, &a.settle.settle()?)?
    };
    let d = load_eval_set(&a.data.spec, a.data.subset)?;
    check_input_shape(&d, clf.input_shape(), &a.data.spec)?;
    ensure!(a.batch_size >= 1, "--batch-size must be ≥ 1");
    let t = std::time::Instant::now();
    let right = correct(clf.as_ref(), &d, a.batch_size)?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{} on {}: {} images: accuracy {:.4} ({:.1} img/s)",
        clf.describe(),
        a.data.spec,
        d.len(),
        right as f64 / d.len().max(1) as f64,
        d.len() as f64 / secs
    );
    // The cost of these inferences, counted from their reads (presets carry a cost model).
    if let Some(fields) = clf.cost_fields(d.len() as u64) {
        let f = fields?;
        let num = |k: &str| f.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
        println!(
            "cost per inference: {:.3} µJ, {:.3} ms, {:.0} vector reads (epsim cost breaks it down)",
            num("energy_j") * 1e6,
            num("latency_s") * 1e3,
            num("vector_reads")
        );
    }
    Ok(())
}

/// `epsim settle`, computing on `be` (the states are read back for --dump: two devices' dumps
/// compare their states).
pub fn settle<B: Engine>(be: &B, a: &SettleArgs) -> Result<()> {
    use ndarray_npy::{NpzWriter, ReadNpyExt};
    let net = load_model(be, &a.model.model, a.model.spec.as_deref())?;
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
    let xd = be.upload(&x)?;
    let n = net
        .check_input(be, &xd)
        .with_context(|| format!("{}", a.input.display()))?;
    sim::check_finite(&a.input.display().to_string(), &x)?;
    let input = net.read_input(be, &xd)?;
    let mut st = net.zero_state(be, n)?;
    let mut npz = match &a.dump {
        Some(p) => Some(NpzWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    for t in 1..=a.steps {
        st = net.step_with(be, &xd, &st, None, Some(&input))?;
        net.check_state(be, &st, t)?;
        if at.contains(&t) {
            let logits = be.download(&net.logits(be, &st)?)?;
            if let Some(w) = npz.as_mut() {
                for (k, l) in st.layers.iter().enumerate() {
                    w.add_array(format!("layer{}_step{t}", k + 1), &*be.host(l)?)
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
