//! Projected gradient descent (Madry et al.; torchattacks / ART semantics), L∞ and L2.
//!
//! Each iteration: `x ← P(x + α·sign(∇))` (L∞) or `x ← P(x + α·∇/‖∇‖₂)` (L2), where `∇` is the
//! gradient of the maximized [`Objective`] (EOT-averaged for stochastic models) and `P` projects on
//! the ε-ball (clip / rescale) and, unless `clip` is off, on the box [0, 1]. Random start: uniform in
//! the L∞ cube, or uniform in the L2 ball (ART's `random_sphere`). Restarts attack only the points
//! not fooled yet. Per sample the first iterate that fools the model is kept; for points never fooled,
//! the iterate with the highest objective over all iterations and restarts.

use anyhow::{Result, ensure};
use ndarray::Array2;
use sim::{Stream, Tensor};

use super::losses::{Objective, objective};
use super::{
    Attack, AttackResult, Norm, argmax_rows, ascent_dir, attack_labels, check_eps, check_inputs,
    check_targets, finish, grad_rows, is_success, logits_of, project, take,
};
use crate::classifier::{Classifier, Counted};

/// PGD settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pgd {
    /// Threat model.
    pub norm: Norm,
    /// Radius ε (pixel units).
    pub eps: f32,
    /// Step size α.
    pub step: f32,
    /// Iterations per restart.
    pub iters: usize,
    /// Number of runs (1 = no restart).
    pub restarts: usize,
    /// Start from a random point of the ball (else from x).
    pub random_start: bool,
    /// Objective maximized.
    pub loss: Objective,
    /// Attack the model's predicted labels instead of the given ones (ART's `y = None`).
    pub use_predicted: bool,
    /// Keep iterates in the box [0, 1].
    pub clip: bool,
    /// Gradients averaged per step for stochastic classifiers (EOT).
    pub eot_iter: usize,
}

impl Pgd {
    /// Standard PGD: random start, 20 iterations of step 2.5·ε/20, one run, CE, true labels, box clip.
    pub fn new(norm: Norm, eps: f32) -> Self {
        Pgd {
            norm,
            eps,
            step: 2.5 * eps / 20.0,
            iters: 20,
            restarts: 1,
            random_start: true,
            loss: Objective::Ce,
            use_predicted: false,
            clip: true,
            eot_iter: 1,
        }
    }

    /// The AdvEP paper's ART configuration: no random start, step 2.5·ε/20, 20 iterations, predicted
    /// labels, no box clip.
    pub fn paper(norm: Norm, eps: f32) -> Self {
        Pgd {
            random_start: false,
            use_predicted: true,
            clip: false,
            ..Pgd::new(norm, eps)
        }
    }

    fn check(&self) -> Result<()> {
        check_eps(self.eps)?;
        ensure!(
            self.step.is_finite() && self.step >= 0.0,
            "pgd: step must be finite and ≥ 0 (got {})",
            self.step
        );
        ensure!(self.restarts >= 1, "pgd: restarts must be ≥ 1");
        Ok(())
    }

    /// Untargeted (`target = None`) or targeted attack of a batch.
    pub fn attack(
        &self,
        clf: &dyn Classifier,
        x: &Tensor,
        y: &[usize],
        target: Option<&[usize]>,
        ids: &[u64],
        seed: u64,
    ) -> Result<AttackResult> {
        self.check()?;
        let b = check_inputs(clf, x, y, ids)?;
        check_targets(clf, target, b.n())?;
        let counted = Counted::new(clf);
        let cc: &dyn Classifier = &counted;
        let labels = attack_labels(cc, &b, y, self.use_predicted)?;
        let (n, d) = b.x.dim();
        let tgt = |i: usize| target.map(|t| t[i]);

        let mut best = b.x.clone();
        let mut best_loss = vec![f32::NEG_INFINITY; n];
        let mut done = vec![false; n];
        // Already fooled at the clean point: nothing to do.
        let pred0 = argmax_rows(&logits_of(cc, &b.x, b.shape)?);
        for i in 0..n {
            done[i] = is_success(pred0[i], labels[i], tgt(i));
        }
        let root = Stream::new(seed, "pgd");

        for r in 0..self.restarts {
            let mut active: Vec<usize> = (0..n).filter(|&i| !done[i]).collect();
            if active.is_empty() {
                break;
            }
            let x0 = take(&b.x, &active);
            let mut xa = x0.clone();
            if self.random_start && self.eps > 0.0 {
                for (row, &i) in active.iter().enumerate() {
                    let s = root.sub(ids[i]).sub(r as u64);
                    let mut v = xa.row_mut(row);
                    match self.norm {
                        Norm::Linf => {
                            for j in 0..d {
                                v[j] += self.eps * (2.0 * s.uniform(j as u64) - 1.0);
                            }
                        }
                        Norm::L2 => {
                            let g: Vec<f32> = (0..d).map(|j| s.normal(j as u64)).collect();
                            let gn = g.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
                            let rad = self.eps * s.child("radius").uniform(0).powf(1.0 / d as f32);
                            for j in 0..d {
                                v[j] += rad * g[j] / gn;
                            }
                        }
                    }
                    project(self.norm, x0.row(row), v, self.eps, self.clip);
                }
            }
            let mut x0 = x0;
            for it in 0..=self.iters {
                // Evaluate the current iterates (gradient and logits, or logits only after the last step).
                let labels_a: Vec<usize> = active.iter().map(|&i| labels[i]).collect();
                let targets_a: Option<Vec<usize>> =
                    target.map(|t| active.iter().map(|&i| t[i]).collect());
                let kind = self.loss;
                let lossf = |z: &Tensor| objective(kind, z, &labels_a, targets_a.as_deref());
                let (z, lvals, grad) = if it < self.iters {
                    let g = grad_rows(cc, &xa, b.shape, &lossf, self.eot_iter)?;
                    (g.logits, g.loss, Some(g.grad))
                } else {
                    let z = logits_of(cc, &xa, b.shape)?;
                    let (l, _) = lossf(&z.clone().into_dyn())?;
                    (z, l, None)
                };
                let pred = argmax_rows(&z);
                let mut keep = Vec::with_capacity(active.len());
                for (row, &i) in active.iter().enumerate() {
                    if is_success(pred[row], labels[i], tgt(i)) {
                        done[i] = true;
                        best.row_mut(i).assign(&xa.row(row));
                    } else {
                        if lvals[row] > best_loss[i] {
                            best_loss[i] = lvals[row];
                            best.row_mut(i).assign(&xa.row(row));
                        }
                        keep.push(row);
                    }
                }
                let Some(mut grad) = grad else { break };
                if keep.len() < active.len() {
                    active = keep.iter().map(|&row| active[row]).collect();
                    xa = take(&xa, &keep);
                    x0 = take(&x0, &keep);
                    grad = take(&grad, &keep);
                }
                if active.is_empty() {
                    break;
                }
                step_rows(
                    self.norm, &mut xa, &x0, &grad, self.step, self.eps, self.clip,
                );
            }
        }
        finish(clf, &counted, &b, best, labels, target, self.norm, None)
    }
}

/// One PGD step on every row, followed by the projection.
pub(crate) fn step_rows(
    norm: Norm,
    xa: &mut Array2<f32>,
    x0: &Array2<f32>,
    grad: &Array2<f32>,
    step: f32,
    eps: f32,
    clip: bool,
) {
    for row in 0..xa.nrows() {
        let dir = ascent_dir(norm, grad.row(row));
        let mut v = xa.row_mut(row);
        v.scaled_add(step, &dir);
        project(norm, x0.row(row), v, eps, clip);
    }
}

impl Attack for Pgd {
    fn name(&self) -> String {
        format!(
            "PGD-{} eps={} step={} iters={} restarts={}{}",
            self.norm,
            self.eps,
            self.step,
            self.iters,
            self.restarts,
            if self.random_start {
                ""
            } else {
                " (no random start)"
            }
        )
    }
    fn run_indexed(
        &self,
        clf: &dyn Classifier,
        x: &Tensor,
        y: &[usize],
        ids: &[u64],
        seed: u64,
    ) -> Result<AttackResult> {
        self.attack(clf, x, y, None, ids, seed)
    }
}
