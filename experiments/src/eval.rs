//! Accuracy of a model on a dataset: an EP network's free phase (optionally after every step), a
//! backprop baseline in evaluation mode, or any [`Classifier`] (the substrate-independent path of
//! attacks, corruptions and sweeps).

use anyhow::Result;
use ep::EpNet;
use ep::baselines::Baseline;
use ep::train::argmax_rows;
use sim::{Backend, Stream};

use crate::classifier::Classifier;
use crate::data::{Dataset, Loader, Normalization};

/// Accuracy of a model's free phase of `steps` steps on a dataset, and, when `per_step`, the
/// accuracy after every step 1..=steps.
pub fn evaluate<B: Backend>(
    be: &B,
    net: &EpNet<B>,
    data: &Dataset,
    norm: &Normalization,
    batch: usize,
    steps: usize,
    per_step: bool,
) -> Result<(f64, Vec<f64>)> {
    let loader = Loader::new(data, batch, Stream::new(0, "eval"))
        .normalize(norm.clone())
        .map_err(|e| anyhow::anyhow!("normalization: {e}"))?;
    let mut correct = 0usize;
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
        } else {
            let st = net.free_phase(be, &x, steps)?;
            let pred = argmax_rows(&be.download(&net.logits(be, &st)?)?);
            correct += pred.iter().zip(&b.y).filter(|(p, l)| p == l).count();
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    let n = data.len().max(1) as f64;
    if per_step {
        let curve: Vec<f64> = per.iter().map(|&c| c as f64 / n).collect();
        Ok((curve.last().copied().unwrap_or(0.0), curve))
    } else {
        Ok((correct as f64 / n, vec![]))
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
