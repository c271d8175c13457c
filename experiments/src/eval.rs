//! Accuracy of a model on a dataset: an EP network's free phase (optionally after every step), a
//! backprop baseline in evaluation mode, or any [`Classifier`] (the substrate-independent path of
//! attacks, corruptions and sweeps); and [`measure`], the accuracy of a model realized on a device
//! preset with the cost of its run (`epsim cost`).

use std::path::Path;

use anyhow::Result;
use ep::baselines::Baseline;
use ep::train::argmax_rows;
use ep::{EpNet, Settle, Settler};
use sim::{Backend, Stream};

use crate::classifier::Classifier;
use crate::classifier::load::load_host_model;
use crate::classifier::substrate::{NetlistClassifier, compile_model, load_preset, parse_tile};
use crate::cost::Cost;
use crate::data::{Dataset, Loader, Normalization, check_input_shape, load_eval_set};
use crate::device::Engine;

/// What [`evaluate`] measures.
#[derive(Debug, Clone, Default)]
pub struct Evaluated {
    /// Accuracy (after the last step with `per_step`).
    pub accuracy: f64,
    /// With `per_step`: the accuracy after every step 1..=steps.
    pub curve: Vec<f64>,
    /// Mean free-phase steps per image (with a tolerance: the steps each image took).
    pub steps_per_image: f64,
}

/// Accuracy of a model's free phase on a dataset, settled by `settle` (`steps`: the plain
/// iteration's steps, the cap of the others unless they name one), and, when `per_step` (plain
/// iteration only), the accuracy after every step 1..=steps.
#[allow(clippy::too_many_arguments)]
pub fn evaluate<B: Backend>(
    be: &B,
    net: &EpNet<B>,
    data: &Dataset,
    norm: &Normalization,
    batch: usize,
    steps: usize,
    settle: &Settle,
    per_step: bool,
) -> Result<Evaluated> {
    anyhow::ensure!(
        !per_step || settle.is_default(),
        "the per-step curve is of plain iteration; drop the tolerance or --per-step"
    );
    let loader = Loader::new(data, batch, Stream::new(0, "eval"))
        .normalize(norm.clone())
        .map_err(|e| anyhow::anyhow!("normalization: {e}"))?;
    let mut correct = 0usize;
    let mut step_sum = 0usize;
    let mut per = vec![0usize; if per_step { steps } else { 0 }];
    let pb = crate::progress::progress(loader.num_batches() as u64, "eval");
    for b in loader.epoch(0) {
        let x = be.upload(&b.x)?;
        if per_step {
            let n = net.check_input(be, &x)?;
            let mut st = net.zero_state(be, n)?;
            for (t, slot) in per.iter_mut().enumerate() {
                st = net.step(be, &x, &st, None)?;
                net.check_state(be, &st, t + 1)?;
                let pred = argmax_rows(&be.download(&net.logits(be, &st)?)?);
                *slot += pred.iter().zip(&b.y).filter(|(p, l)| p == l).count();
            }
            step_sum += n * steps;
        } else {
            let st = net.free_phase_with(be, &x, steps, settle)?;
            step_sum += st.per_sample_steps().sum::<usize>();
            let pred = argmax_rows(&be.download(&net.logits(be, &st.state)?)?);
            correct += pred.iter().zip(&b.y).filter(|(p, l)| p == l).count();
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    let n = data.len().max(1) as f64;
    let steps_per_image = step_sum as f64 / n;
    if per_step {
        let curve: Vec<f64> = per.iter().map(|&c| c as f64 / n).collect();
        Ok(Evaluated {
            accuracy: curve.last().copied().unwrap_or(0.0),
            curve,
            steps_per_image,
        })
    } else {
        Ok(Evaluated {
            accuracy: correct as f64 / n,
            curve: vec![],
            steps_per_image,
        })
    }
}

/// Clean accuracy of a baseline (evaluation mode, computing on `be`) on a dataset.
pub fn evaluate_baseline<B: Backend>(
    be: &B,
    model: &Baseline,
    data: &Dataset,
    norm: &Normalization,
    batch: usize,
) -> Result<f64> {
    let loader = Loader::new(data, batch, Stream::new(0, "eval"))
        .normalize(norm.clone())
        .map_err(|e| anyhow::anyhow!("normalization: {e}"))?;
    let mut correct = 0usize;
    let pb = crate::progress::progress(loader.num_batches() as u64, "eval");
    for b in loader.epoch(0) {
        let pred = argmax_rows(&model.logits(be, &b.x)?);
        correct += pred.iter().zip(&b.y).filter(|(p, l)| p == l).count();
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(correct as f64 / data.len().max(1) as f64)
}

/// Images of `d` that `clf` classifies correctly (batches of `batch`, in dataset order).
pub fn correct(clf: &dyn Classifier, d: &Dataset, batch: usize) -> Result<usize> {
    let loader = Loader::new(d, batch, Stream::new(0, "eval"));
    let mut correct = 0usize;
    for b in loader.epoch(0) {
        let pred = argmax_rows(&clf.logits(&b.x)?);
        correct += pred.iter().zip(&b.y).filter(|(p, l)| p == l).count();
    }
    Ok(correct)
}

/// What `epsim cost` measures: the accuracy of a realized model and the cost of its run.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The substrate as described by the classifier (reads, re-reads, spikes).
    pub describe: String,
    /// Accuracy on the images.
    pub accuracy: f64,
    /// Free-phase steps per inference.
    pub steps: usize,
    /// The cost per inference.
    pub cost: Cost,
}

/// What to run for [`measure`].
#[derive(Debug, Clone)]
pub struct Job<'a> {
    /// Model file and optional spec file.
    pub model: &'a Path,
    /// Spec file for files without one.
    pub spec: Option<&'a Path>,
    /// Device preset (built-in name or TOML file) and its `key=value` overrides.
    pub preset: &'a str,
    /// `--set` overrides.
    pub sets: &'a [String],
    /// Tile size `RxC`.
    pub tile: &'a str,
    /// Dataset spec and subset.
    pub data: &'a str,
    /// Use only the first N images (class-balanced).
    pub subset: Option<usize>,
    /// Free-phase steps (default: the model's T1).
    pub steps: Option<usize>,
    /// Batch size.
    pub batch: usize,
    /// Realization seed.
    pub seed: u64,
}

/// Compile the model onto the preset, realize it, evaluate the images and count the cost.
pub fn measure<B: Engine>(be: &B, j: &Job<'_>) -> Result<Measured> {
    let net = load_host_model(j.model, j.spec)?;
    let preset = load_preset(j.preset, j.sets)?;
    let l = compile_model(&net, &preset, parse_tile(j.tile)?)?;
    let label = format!("netlist:{}", j.preset);
    let clf = NetlistClassifier::new(be, &l, j.seed, &label, j.steps)?.with_cost(&preset, &l);
    let d = load_eval_set(j.data, j.subset)?;
    check_input_shape(&d, clf.input_shape(), j.data)?;
    let right = correct(&clf, &d, j.batch)?;
    let images = d.len() as u64;
    let cost = clf.cost_so_far(images)?;
    Ok(Measured {
        describe: clf.describe(),
        accuracy: right as f64 / images.max(1) as f64,
        steps: clf.t_predict,
        cost,
    })
}
