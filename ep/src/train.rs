//! One EP training step (the reference's `train` inner loop) and evaluation by the free phase.
//!
//! Step: free phase of T1 steps from the zero state (β₁ = 0); with `random_sign`, β₂ = ±β with a
//! seeded random sign per batch; nudged phase of T2 steps from the free fixed point with β₂; with
//! `symmetric` (the reference's `--thirdphase`), a second nudged phase of T2 steps from the free fixed
//! point with −β₂ and the symmetric estimate (1/2β)(∂Φ/∂θ(s^{+β}) − ∂Φ/∂θ(s^{−β})); else the vanilla
//! estimate (1/β)(∂Φ/∂θ(s^β) − ∂Φ/∂θ(s⁰)). Then one optimizer step.

use serde::{Deserialize, Serialize};
use sim::{Backend, Error, Result, Stream, Tensor};

use crate::model::{EpNet, State, Target};
use crate::optim::Optimizer;
use crate::settle::{Settle, Settler};

/// EP hyperparameters of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpConfig {
    /// Nudging strength β (the reference's second entry of `--betas`).
    pub beta: f32,
    /// Symmetric EP (two nudged phases ±β).
    #[serde(default = "yes")]
    pub symmetric: bool,
    /// Random sign of β per batch.
    #[serde(default = "yes")]
    pub random_sign: bool,
    /// How the free phase (T1 steps, the cap) and the nudged phases (T2, warm-started from the
    /// free equilibrium) settle: plain iteration (default), to a tolerance with finished samples
    /// leaving the batch, or Anderson-accelerated ([`Settle`]). In TOML:
    /// `settle = { method = "plain", tol = 1e-3 }`.
    #[serde(default, skip_serializing_if = "Settle::is_default")]
    pub settle: Settle,
}

fn yes() -> bool {
    true
}

/// Counts of one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BatchStats {
    /// Samples.
    pub n: usize,
    /// Correct predictions of the free phase.
    pub correct: usize,
    /// Steps of the dynamics summed over the samples and the phases (free and nudged): with a
    /// tolerance each sample counts the steps it took.
    pub sample_steps: usize,
}

/// Predicted classes: argmax of each row of `[N, K]` logits (first maximum wins).
pub fn argmax_rows(logits: &sim::Tensor) -> Vec<usize> {
    let k = logits.shape()[1];
    logits
        .as_slice()
        .expect("standard layout")
        .chunks(k)
        .map(|r| {
            r.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                    if v > bv { (i, v) } else { (bi, bv) }
                })
                .0
        })
        .collect()
}

/// Predictions after a free phase of `steps` steps.
pub fn predict<B: Backend>(
    be: &B,
    net: &EpNet<B>,
    x: &B::Tensor,
    steps: usize,
) -> Result<(Vec<usize>, State<B>)> {
    let st = net.free_phase(be, x, steps)?;
    let logits = be.download(&net.logits(be, &st)?)?;
    Ok((argmax_rows(&logits), st))
}

/// Run one EP training step on a batch; `batch_index` (global, across epochs) picks the β sign from
/// `sign_stream`. Returns the free-phase accuracy counts.
#[allow(clippy::too_many_arguments)]
pub fn train_batch<B: Backend>(
    be: &B,
    net: &mut EpNet<B>,
    opt: &mut Optimizer<B::Tensor>,
    cfg: &EpConfig,
    x: &B::Tensor,
    labels: &[usize],
    sign_stream: &Stream,
    batch_index: u64,
) -> Result<BatchStats> {
    if cfg.beta == 0.0 {
        return Err(Error::param("ep", "β must be non-zero"));
    }
    let n = net.check_input(be, x)?;
    if labels.len() != n {
        return Err(Error::shape(
            "ep",
            format!("{n} inputs but {} labels", labels.len()),
        ));
    }
    let target = Target::new(be, labels, net.spec.n_classes())?;
    let settle = &cfg.settle;
    let free = net.free_phase_with(be, x, net.spec.t1, settle)?;
    let mut sample_steps: usize = free.per_sample_steps().sum();
    let free = free.state;
    let pred = argmax_rows(&be.download(&net.logits(be, &free)?)?);
    let correct = pred.iter().zip(labels).filter(|(p, l)| p == l).count();

    let sign = if cfg.random_sign && sign_stream.below(batch_index, 2) == 0 {
        -1.0
    } else {
        1.0
    };
    let beta = sign * cfg.beta;
    let mut nudged = |b: f32, from: State<B>| -> Result<State<B>> {
        let s = net.relax_with(be, x, from, net.spec.t2, Some((b, &target)), settle)?;
        sample_steps += s.per_sample_steps().sum::<usize>();
        Ok(s.state)
    };
    let plus = nudged(beta, free.clone())?;
    let grads = if cfg.symmetric {
        let minus = nudged(-beta, free)?;
        net.ep_grads(be, x, (&plus, beta), (&minus, -beta), &target)?
    } else {
        net.ep_grads(be, x, (&free, 0.0), (&plus, beta), &target)?
    };
    apply_grads(be, net, opt, grads)?;
    Ok(BatchStats {
        n,
        correct,
        sample_steps,
    })
}

/// Optimizer step on the network's parameters, on the backend: parameters, gradients and the
/// optimizer's buffers stay where they live (no host round trip on a GPU). Every gradient is
/// checked finite first (a backend sum per gradient; only a non-finite sum downloads that
/// gradient, to name the first bad element).
pub fn apply_grads<B: Backend>(
    be: &B,
    net: &mut EpNet<B>,
    opt: &mut Optimizer<B::Tensor>,
    grads: crate::model::Grads<B>,
) -> Result<()> {
    let n = net.weights.len();
    let mut params = Vec::with_capacity(2 * n);
    let mut gs = Vec::with_capacity(2 * n);
    for ((w, b), (gw, gb)) in net.weights.iter().zip(&net.biases).zip(grads) {
        params.push(w.clone());
        params.push(b.clone());
        gs.push(gw);
        gs.push(gb);
    }
    for (i, g) in gs.iter().enumerate() {
        if !be.sum_all(g)?.is_finite() {
            sim::check_finite(
                &format!("EP gradient of parameter {i} (diverged dynamics?)"),
                &be.download(g)?,
            )?;
        }
    }
    opt.step_on(be, &mut params, &gs)?;
    let mut params = params.into_iter();
    for i in 0..n {
        net.weights[i] = params.next().expect("2n parameters");
        net.biases[i] = params.next().expect("2n parameters");
    }
    Ok(())
}

/// The optimizer's step on host parameters `(weights, biases)` with per-synapse gradients
/// `grads` (checked finite): the new `(weights, biases)`. The one update of EP training, digital
/// ([`apply_grads`]) and on the substrate (`crate::subtrain`, which turns it into device changes).
pub fn optimizer_step<B: Backend>(
    be: &B,
    opt: &mut Optimizer,
    ws: Vec<Tensor>,
    bs: Vec<Tensor>,
    grads: crate::model::Grads<B>,
) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
    let n = ws.len();
    let mut params = Vec::with_capacity(2 * n);
    let mut gs = Vec::with_capacity(2 * n);
    for ((w, b), (gw, gb)) in ws.into_iter().zip(bs).zip(grads) {
        params.push(w);
        params.push(b);
        gs.push(be.download(&gw)?);
        gs.push(be.download(&gb)?);
    }
    for (i, g) in gs.iter().enumerate() {
        sim::check_finite(
            &format!("EP gradient of parameter {i} (diverged dynamics?)"),
            g,
        )?;
    }
    opt.step(&mut params, &gs)?;
    let mut new_ws = Vec::with_capacity(n);
    let mut new_bs = Vec::with_capacity(n);
    for (i, p) in params.into_iter().enumerate() {
        if i % 2 == 0 {
            new_ws.push(p);
        } else {
            new_bs.push(p);
        }
    }
    Ok((new_ws, new_bs))
}
