//! DeepFool (Moosavi-Dezfooli et al. 2016), a minimal-norm attack: at each iteration linearize
//! `f_k = z_k − z_y` for the candidate classes k (the `nb_candidates − 1` most likely other classes at
//! the clean point), step to the closest linearized boundary, `r = (|f_k| + 1e−4)/‖w_k‖²·w_k` (L2) or
//! `(|f_k| + 1e−4)/‖w_k‖₁·sign(w_k)` (L∞) with `w_k = ∇f_k`, accumulate `r_tot`, and evaluate
//! `x + (1 + overshoot)·r_tot` until the label changes or `max_iter` iterations.
//!
//! Unbounded by default; with `eps = Some(ε)` a result only counts as a success if its norm is ≤ ε.
//! Points not fooled return their last iterate.

use anyhow::{Result, ensure};
use ndarray::Array2;
use sim::Tensor;

use super::losses::logit_diff;
use super::{
    Attack, AttackResult, Norm, argmax_rows, check_inputs, clip_box, finish, grad_rows, logits_of,
    take,
};
use crate::classifier::{Classifier, Counted};

/// DeepFool settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeepFool {
    /// L2 (the original) or L∞.
    pub norm: Norm,
    /// Maximum iterations.
    pub max_iter: usize,
    /// Overshoot factor applied to the accumulated perturbation.
    pub overshoot: f32,
    /// Number of classes considered, the clean label included.
    pub nb_candidates: usize,
    /// Keep iterates in the box [0, 1].
    pub clip: bool,
    /// Optional ε bound for counting successes.
    pub eps: Option<f32>,
    /// Gradients averaged per step for stochastic classifiers.
    pub eot_iter: usize,
}

impl DeepFool {
    /// DeepFool with the original defaults (50 iterations, overshoot 0.02, 10 candidates), box on.
    pub fn new(norm: Norm) -> Self {
        DeepFool {
            norm,
            max_iter: 50,
            overshoot: 0.02,
            nb_candidates: 10,
            clip: true,
            eps: None,
            eot_iter: 1,
        }
    }
}

impl Attack for DeepFool {
    fn name(&self) -> String {
        format!(
            "DeepFool-{} iters={} overshoot={}",
            self.norm, self.max_iter, self.overshoot
        )
    }
    fn run_indexed(
        &self,
        clf: &dyn Classifier,
        x: &Tensor,
        y: &[usize],
        ids: &[u64],
        _seed: u64,
    ) -> Result<AttackResult> {
        ensure!(
            self.overshoot.is_finite() && self.overshoot >= 0.0,
            "deepfool: overshoot must be ≥ 0"
        );
        ensure!(
            self.nb_candidates >= 2,
            "deepfool: nb_candidates must be ≥ 2"
        );
        if let Some(e) = self.eps {
            super::check_eps(e)?;
        }
        let b = check_inputs(clf, x, y, ids)?;
        let k = clf.num_classes();
        ensure!(k >= 2, "deepfool: needs at least 2 classes");
        let counted = Counted::new(clf);
        let cc: &dyn Classifier = &counted;
        let (n, d) = b.x.dim();
        let z0 = logits_of(cc, &b.x, b.shape)?;
        let pred0 = argmax_rows(&z0);
        let n_c = self.nb_candidates.min(k) - 1;
        let cands: Vec<Vec<usize>> = (0..n)
            .map(|i| {
                let r = z0.row(i);
                let mut o: Vec<usize> = (0..k).filter(|&j| j != y[i]).collect();
                o.sort_by(|&a, &c| r[c].partial_cmp(&r[a]).unwrap_or(std::cmp::Ordering::Equal));
                o.truncate(n_c);
                o
            })
            .collect();
        let mut out = b.x.clone();
        let mut active: Vec<usize> = (0..n).filter(|&i| pred0[i] == y[i]).collect();
        let mut r_tot = Array2::<f32>::zeros((n, d));
        let mut xa = take(&b.x, &active);
        for _ in 0..=self.max_iter {
            if active.is_empty() {
                break;
            }
            let mut best_pert = vec![f32::INFINITY; active.len()];
            let mut best_w = Array2::<f32>::zeros((active.len(), d));
            for j in 0..n_c {
                let ya: Vec<usize> = active.iter().map(|&i| y[i]).collect();
                let ka: Vec<usize> = active.iter().map(|&i| cands[i][j]).collect();
                let lossf = |z: &Tensor| logit_diff(z, &ka, &ya);
                let go = grad_rows(cc, &xa, b.shape, &lossf, self.eot_iter)?;
                if j == 0 {
                    // Stop the samples whose label has changed (their iterate is the result).
                    let pred = argmax_rows(&go.logits);
                    let keep: Vec<usize> = (0..active.len())
                        .filter(|&r| pred[r] == y[active[r]])
                        .collect();
                    for (r, &i) in active.iter().enumerate() {
                        out.row_mut(i).assign(&xa.row(r));
                    }
                    if keep.len() < active.len() {
                        active = keep.iter().map(|&r| active[r]).collect();
                        xa = take(&xa, &keep);
                        best_pert.truncate(active.len());
                        best_w = Array2::zeros((active.len(), d));
                    }
                    if active.is_empty() {
                        break;
                    }
                    if keep.len() < pred.len() {
                        // Recompute this candidate's gradient on the reduced set.
                        let ya: Vec<usize> = active.iter().map(|&i| y[i]).collect();
                        let ka: Vec<usize> = active.iter().map(|&i| cands[i][j]).collect();
                        let lossf = |z: &Tensor| logit_diff(z, &ka, &ya);
                        let go = grad_rows(cc, &xa, b.shape, &lossf, self.eot_iter)?;
                        self.pick(&go.loss, &go.grad, &mut best_pert, &mut best_w);
                        continue;
                    }
                }
                self.pick(&go.loss, &go.grad, &mut best_pert, &mut best_w);
            }
            if active.is_empty() {
                break;
            }
            if (0..active.len()).all(|r| !best_pert[r].is_finite()) {
                break; // zero gradients everywhere: DeepFool cannot move
            }
            for (r, &i) in active.iter().enumerate() {
                if !best_pert[r].is_finite() {
                    continue;
                }
                let w = best_w.row(r);
                let step = match self.norm {
                    Norm::L2 => {
                        let wn = Norm::L2.of(w);
                        w.mapv(|a| (best_pert[r] + 1e-4) * a / wn)
                    }
                    Norm::Linf => {
                        w.mapv(|a| (best_pert[r] + 1e-4) * a.signum() * (a != 0.0) as u8 as f32)
                    }
                };
                let mut rt = r_tot.row_mut(i);
                rt += &step;
                let mut v = xa.row_mut(r);
                v.assign(&(&b.x.row(i) + &(&rt * (1.0 + self.overshoot))));
                if self.clip {
                    clip_box(v);
                }
            }
        }
        // Samples still active after max_iter: their last iterate.
        for (r, &i) in active.iter().enumerate() {
            out.row_mut(i).assign(&xa.row(r));
        }
        finish(
            clf,
            &counted,
            &b,
            out,
            y.to_vec(),
            None,
            self.norm,
            self.eps,
        )
    }
}

impl DeepFool {
    /// Keep, per row, the candidate with the smallest linearized distance |f|/‖w‖_dual.
    fn pick(&self, f: &[f32], w: &Array2<f32>, best_pert: &mut [f32], best_w: &mut Array2<f32>) {
        for r in 0..f.len() {
            let wr = w.row(r);
            let dual = match self.norm {
                Norm::L2 => Norm::L2.of(wr),
                Norm::Linf => wr.iter().map(|a| a.abs()).sum::<f32>(),
            };
            if dual <= 0.0 || !dual.is_finite() {
                continue;
            }
            let p = f[r].abs() / dual;
            if p < best_pert[r] {
                best_pert[r] = p;
                best_w.row_mut(r).assign(&wr);
            }
        }
    }
}
