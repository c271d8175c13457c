//! Adversarial attacks against any [`Classifier`]: PGD (L∞/L2), APGD (CE/DLR, targeted DLR),
//! Square (L∞/L2), Carlini–Wagner L2, DeepFool, FAB-T, AutoAttack ('standard' and 'rand') and ART's
//! AutoAttack ensemble as the seed paper ran it ([`ArtAutoAttack`]).
//!
//! Conventions shared by every attack:
//! * inputs are NCHW batches in pixel space; the box [0, 1] is enforced by default (`clip`), and can be
//!   switched off (the AdvEP protocol has no box);
//! * all randomness comes from `sim::rng::Stream`s keyed by the attack's seed and the **sample id**
//!   (`run_indexed`'s `ids`, by default the position in the batch), then by restart and iteration, so
//!   results do not depend on how a data set is split into batches;
//! * queries (images through `logits`) and gradients (images through `loss_grad`) are counted with
//!   [`Counted`]; the final verification query that sets [`AttackResult::success`] is not counted;
//! * for a stochastic classifier (`clf.stochastic()`), gradient attacks average `eot_iter` gradients
//!   (EOT); for a deterministic one a single gradient is taken whatever `eot_iter` says;
//! * bad input (negative or non-finite ε, labels out of range, shape mismatch) is an error.

#![allow(clippy::needless_range_loop)]

pub mod apgd;
pub mod art_ensemble;
pub mod autoattack;
pub mod cw;
pub mod deepfool;
pub mod fab;
pub mod losses;
pub mod pgd;
pub mod square;

use anyhow::{Result, bail, ensure};
use ndarray::{Array2, ArrayView1, ArrayViewMut1, Axis, IxDyn};
use sim::Tensor;

use crate::classifier::{Classifier, Counted};

pub use apgd::{Apgd, ApgdLoss, ApgdT};
pub use art_ensemble::{ArtApgd, ArtAutoAttack};
pub use autoattack::{AaVersion, AutoAttack, AutoAttackReport};
pub use cw::CarliniWagnerL2;
pub use deepfool::DeepFool;
pub use fab::FabT;
pub use losses::Objective;
pub use pgd::Pgd;
pub use square::Square;

/// Threat model norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Norm {
    /// L∞ (max absolute pixel change).
    Linf,
    /// L2 over all C·H·W values of a sample.
    L2,
}

impl std::str::FromStr for Norm {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "linf" | "inf" | "l_inf" | "l∞" => Ok(Norm::Linf),
            "l2" | "2" | "l_2" => Ok(Norm::L2),
            other => bail!("unknown norm '{other}' (expected 'Linf' or 'L2')"),
        }
    }
}

impl std::fmt::Display for Norm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Norm::Linf => "Linf",
            Norm::L2 => "L2",
        })
    }
}

impl Norm {
    /// The norm of a flattened vector.
    pub fn of(self, v: ArrayView1<f32>) -> f32 {
        match self {
            Norm::Linf => v.iter().fold(0.0f32, |m, a| m.max(a.abs())),
            Norm::L2 => v
                .iter()
                .map(|a| (*a as f64) * (*a as f64))
                .sum::<f64>()
                .sqrt() as f32,
        }
    }
}

/// What an attack returns for a batch.
#[derive(Debug, Clone)]
pub struct AttackResult {
    /// Adversarial batch, same shape as the input. For points the attack did not fool: the attack's
    /// best point by its own loss (PGD, APGD, Square) or the clean image (C&W, DeepFool failures).
    pub x_adv: Tensor,
    /// Per sample: the label was changed (untargeted) or the target reached (targeted), checked with
    /// one final `logits` query on `x_adv` (and, for ε-free attacks with an ε bound, the norm).
    pub success: Vec<bool>,
    /// Per-sample perturbation norm ‖x_adv − x‖ in the attack's norm.
    pub norms: Vec<f32>,
    /// The labels that were attacked (the true ones, or the model's predictions).
    pub labels: Vec<usize>,
    /// Images passed through `logits` by the attack (verification excluded).
    pub queries: u64,
    /// Images passed through `loss_grad` by the attack (each EOT draw counts).
    pub grads: u64,
}

impl AttackResult {
    /// Fraction of successful samples.
    pub fn success_rate(&self) -> f32 {
        if self.success.is_empty() {
            return 0.0;
        }
        self.success.iter().filter(|&&s| s).count() as f32 / self.success.len() as f32
    }
}

/// The common shape of all attacks.
pub trait Attack: Send + Sync {
    /// Short name with the main settings.
    fn name(&self) -> String;
    /// Attack a batch whose samples have the given ids (ids key the random streams).
    fn run_indexed(
        &self,
        clf: &dyn Classifier,
        x: &Tensor,
        y: &[usize],
        ids: &[u64],
        seed: u64,
    ) -> Result<AttackResult>;
    /// Attack a batch; sample ids are the positions 0..N.
    fn run(
        &self,
        clf: &dyn Classifier,
        x: &Tensor,
        y: &[usize],
        seed: u64,
    ) -> Result<AttackResult> {
        let ids: Vec<u64> = (0..y.len() as u64).collect();
        self.run_indexed(clf, x, y, &ids, seed)
    }
}

/// A batch flattened to rows `[N, C·H·W]`, with the image shape to rebuild tensors.
#[derive(Debug, Clone)]
pub(crate) struct Batch {
    pub x: Array2<f32>,
    pub shape: [usize; 3],
}

impl Batch {
    pub fn n(&self) -> usize {
        self.x.nrows()
    }
}

/// Check a batch against the classifier and the labels; flatten it.
pub(crate) fn check_inputs(
    clf: &dyn Classifier,
    x: &Tensor,
    y: &[usize],
    ids: &[u64],
) -> Result<Batch> {
    let shape = clf.input_shape();
    ensure!(
        x.ndim() == 4 && x.shape()[1..] == shape[..],
        "attack: expected a batch [N, {}, {}, {}], got {:?}",
        shape[0],
        shape[1],
        shape[2],
        x.shape()
    );
    ensure!(
        shape.iter().all(|&s| s > 0),
        "attack: empty image shape {shape:?}"
    );
    let n = x.shape()[0];
    ensure!(y.len() == n, "attack: {} labels for {n} images", y.len());
    ensure!(
        ids.len() == n,
        "attack: {} sample ids for {n} images",
        ids.len()
    );
    let k = clf.num_classes();
    for (i, &l) in y.iter().enumerate() {
        ensure!(
            l < k,
            "attack: label {l} of sample {i} out of range (K = {k})"
        );
    }
    ensure!(
        x.iter().all(|v| v.is_finite()),
        "attack: non-finite input values"
    );
    Ok(Batch {
        x: to_rows(x),
        shape,
    })
}

/// Check an optional list of target labels.
pub(crate) fn check_targets(
    clf: &dyn Classifier,
    target: Option<&[usize]>,
    n: usize,
) -> Result<()> {
    if let Some(t) = target {
        ensure!(t.len() == n, "attack: {} targets for {n} images", t.len());
        let k = clf.num_classes();
        for (i, &l) in t.iter().enumerate() {
            ensure!(
                l < k,
                "attack: target {l} of sample {i} out of range (K = {k})"
            );
        }
    }
    Ok(())
}

/// ε must be finite and ≥ 0.
pub(crate) fn check_eps(eps: f32) -> Result<()> {
    ensure!(
        eps.is_finite() && eps >= 0.0,
        "attack: ε must be finite and ≥ 0 (got {eps})"
    );
    Ok(())
}

/// Flatten NCHW to `[N, C·H·W]` rows (standard layout).
pub(crate) fn to_rows(x: &Tensor) -> Array2<f32> {
    let n = x.shape()[0];
    let d = x.shape()[1..].iter().product();
    Array2::from_shape_vec((n, d), x.iter().cloned().collect())
        .expect("row count times row length equals the element count")
}

/// Rebuild an NCHW tensor from rows.
pub(crate) fn to_nchw(rows: &Array2<f32>, shape: [usize; 3]) -> Tensor {
    let n = rows.nrows();
    Tensor::from_shape_vec(
        IxDyn(&[n, shape[0], shape[1], shape[2]]),
        rows.iter().cloned().collect(),
    )
    .expect("rows have C·H·W columns")
}

/// Rows `idx` of `a`.
pub(crate) fn take(a: &Array2<f32>, idx: &[usize]) -> Array2<f32> {
    a.select(Axis(0), idx)
}

/// Argmax of each row of `[N, K]` logits (first index on ties).
pub(crate) fn argmax_rows(z: &Array2<f32>) -> Vec<usize> {
    z.outer_iter()
        .map(|r| {
            let mut b = 0;
            for (j, &v) in r.iter().enumerate() {
                if v > r[b] {
                    b = j;
                }
            }
            b
        })
        .collect()
}

fn logits_2d(z: Tensor, n: usize, k: usize) -> Result<Array2<f32>> {
    ensure!(
        z.shape() == [n, k],
        "classifier returned logits {:?}, expected [{n}, {k}]",
        z.shape()
    );
    Ok(z.into_dimensionality::<ndarray::Ix2>()?)
}

/// Logits `[N, K]` of rows.
pub(crate) fn logits_of(
    clf: &dyn Classifier,
    rows: &Array2<f32>,
    shape: [usize; 3],
) -> Result<Array2<f32>> {
    if rows.nrows() == 0 {
        return Ok(Array2::zeros((0, clf.num_classes())));
    }
    logits_2d(
        clf.logits(&to_nchw(rows, shape))?,
        rows.nrows(),
        clf.num_classes(),
    )
}

/// Result of one (EOT-averaged) gradient evaluation.
pub(crate) struct GradOut {
    /// Logits of the last draw.
    pub logits: Array2<f32>,
    /// Loss values averaged over the draws.
    pub loss: Vec<f32>,
    /// Gradient averaged over the draws, as rows.
    pub grad: Array2<f32>,
}

/// d(Σ loss)/dx at rows, averaged over `eot_iter` draws when the classifier is stochastic.
pub(crate) fn grad_rows(
    clf: &dyn Classifier,
    rows: &Array2<f32>,
    shape: [usize; 3],
    loss: &dyn Fn(&Tensor) -> Result<losses::LossOut>,
    eot_iter: usize,
) -> Result<GradOut> {
    let (n, d) = rows.dim();
    let k = clf.num_classes();
    if n == 0 {
        return Ok(GradOut {
            logits: Array2::zeros((0, k)),
            loss: vec![],
            grad: Array2::zeros((0, d)),
        });
    }
    let draws = if clf.stochastic() { eot_iter.max(1) } else { 1 };
    let x = to_nchw(rows, shape);
    let mut grad = Array2::<f32>::zeros((n, d));
    let mut lsum = vec![0f64; n];
    let mut last = None;
    for _ in 0..draws {
        let (z, g) = clf.loss_grad(&x, loss)?;
        ensure!(
            g.shape() == x.shape(),
            "classifier returned an input gradient {:?} for input {:?}",
            g.shape(),
            x.shape()
        );
        let z = logits_2d(z, n, k)?;
        let zt = z.clone().into_dyn();
        let (vals, _) = loss(&zt)?;
        for (a, v) in lsum.iter_mut().zip(vals) {
            *a += v as f64;
        }
        grad += &to_rows(&g);
        last = Some(z);
    }
    if draws > 1 {
        grad.mapv_inplace(|v| v / draws as f32);
    }
    Ok(GradOut {
        logits: last.expect("at least one draw"),
        loss: lsum
            .into_iter()
            .map(|v| (v / draws as f64) as f32)
            .collect(),
        grad,
    })
}

/// Public EOT gradient: d(Σ loss)/dx of a batch, averaged over `eot_iter` calls of `loss_grad` when
/// `clf.stochastic()` (one call otherwise). Returns (logits of the last draw, averaged gradient).
pub fn eot_gradient(
    clf: &dyn Classifier,
    x: &Tensor,
    loss: &dyn Fn(&Tensor) -> Result<losses::LossOut>,
    eot_iter: usize,
) -> Result<(Tensor, Tensor)> {
    let shape = clf.input_shape();
    ensure!(
        x.ndim() == 4 && x.shape()[1..] == shape[..],
        "eot_gradient: expected [N, {shape:?}], got {:?}",
        x.shape()
    );
    let g = grad_rows(clf, &to_rows(x), shape, loss, eot_iter)?;
    Ok((g.logits.into_dyn(), to_nchw(&g.grad, shape)))
}

/// Clip to the box [0, 1].
pub(crate) fn clip_box(mut v: ArrayViewMut1<f32>) {
    v.mapv_inplace(|a| a.clamp(0.0, 1.0));
}

/// Unit direction of a gradient row for a steepest-ascent step: sign (L∞) or g/(‖g‖₂ + 1e−12) (L2).
pub(crate) fn ascent_dir(norm: Norm, g: ArrayView1<f32>) -> ndarray::Array1<f32> {
    match norm {
        Norm::Linf => g.mapv(|a| {
            if a > 0.0 {
                1.0
            } else if a < 0.0 {
                -1.0
            } else {
                0.0
            }
        }),
        Norm::L2 => {
            let n = Norm::L2.of(g) + 1e-12;
            g.mapv(|a| a / n)
        }
    }
}

/// Project row `v` onto the ε-ball around `x0` (L∞: clip; L2: rescale as
/// `x0 + (v−x0)/(‖v−x0‖+1e−12)·min(ε, ‖v−x0‖)`), then onto the box if `clip`.
pub(crate) fn project(
    norm: Norm,
    x0: ArrayView1<f32>,
    mut v: ArrayViewMut1<f32>,
    eps: f32,
    clip: bool,
) {
    match norm {
        Norm::Linf => {
            v.zip_mut_with(&x0, |a, &o| *a = a.clamp(o - eps, o + eps));
        }
        Norm::L2 => {
            let d = &v.view() - &x0;
            let n = Norm::L2.of(d.view());
            if n > eps {
                let s = eps / (n + 1e-12);
                v.zip_mut_with(&x0, |a, &o| *a = o + (*a - o) * s);
            }
        }
    }
    if clip {
        clip_box(v);
    }
}

/// Per-sample norms of `x_adv − x0`.
pub(crate) fn pert_norms(norm: Norm, x_adv: &Array2<f32>, x0: &Array2<f32>) -> Vec<f32> {
    let d = x_adv - x0;
    d.outer_iter().map(|r| norm.of(r)).collect()
}

/// Success of predictions: differ from `labels` (untargeted) or equal `target`.
pub(crate) fn is_success(pred: usize, label: usize, target: Option<usize>) -> bool {
    match target {
        Some(t) => pred == t,
        None => pred != label,
    }
}

/// Labels to attack: the given ones, or the classifier's predictions on the clean batch.
pub(crate) fn attack_labels(
    clf: &dyn Classifier,
    b: &Batch,
    y: &[usize],
    predicted: bool,
) -> Result<Vec<usize>> {
    if predicted {
        Ok(argmax_rows(&logits_of(clf, &b.x, b.shape)?))
    } else {
        Ok(y.to_vec())
    }
}

/// Build the result: one uncounted verification query on `x_adv`, norms, counts.
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish(
    clf: &dyn Classifier,
    counted: &Counted<'_, dyn Classifier + '_>,
    b: &Batch,
    x_adv: Array2<f32>,
    labels: Vec<usize>,
    target: Option<&[usize]>,
    norm: Norm,
    eps_bound: Option<f32>,
) -> Result<AttackResult> {
    let pred = argmax_rows(&logits_of(clf, &x_adv, b.shape)?);
    let norms = pert_norms(norm, &x_adv, &b.x);
    let success = (0..b.n())
        .map(|i| {
            is_success(pred[i], labels[i], target.map(|t| t[i]))
                && eps_bound.is_none_or(|e| norms[i] <= e * (1.0 + 1e-4) + 1e-7)
        })
        .collect();
    Ok(AttackResult {
        x_adv: to_nchw(&x_adv, b.shape),
        success,
        norms,
        labels,
        queries: counted.queries.load(std::sync::atomic::Ordering::Relaxed),
        grads: counted.grads.load(std::sync::atomic::Ordering::Relaxed),
    })
}
