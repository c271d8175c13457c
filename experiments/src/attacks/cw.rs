//! Carlini–Wagner L2 (carlini/nn_robust_attacks `l2_attack.py`).
//!
//! Minimizes `‖x' − x‖₂² + c·f6(x')` over `x' = ½(tanh(w + atanh((2x − 1)·0.999999)) + 1)` (the tanh
//! box; with `clip` off, `x' = x + w` unconstrained) with Adam, `steps` iterations per value of c.
//! f6 is [`super::losses::cw_f6`] with confidence κ (exact max over the other classes). Binary search
//! over c per sample (`binary_search_steps`, from `initial_const`; on success `upper = min(upper, c)`,
//! on failure `lower = max(lower, c)`, bisect when `upper < 1e9`, else `c ×= 10`; with ≥ 10 steps the
//! last uses `c = upper`). Fixed-c mode ([`CarliniWagnerL2::fixed_c`]) is one search step. Keeps the
//! smallest-L2 iterate that succeeds with confidence κ; failures return the clean image.
//!
//! Deviation: early abort (every `steps/10` iterations, if the objective did not fall below 0.9999 of
//! its previous value) is decided per sample instead of for the whole batch, so results do not depend
//! on the batch split.

use anyhow::{Result, ensure};
use ndarray::Array2;
use sim::Tensor;

use super::losses::cw_f6;
use super::{
    Attack, AttackResult, Norm, attack_labels, check_inputs, check_targets, finish, grad_rows, take,
};
use crate::classifier::{Classifier, Counted};

/// C&W-L2 settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CarliniWagnerL2 {
    /// Confidence κ ≥ 0.
    pub kappa: f32,
    /// Adam iterations per value of c.
    pub steps: usize,
    /// Adam learning rate.
    pub lr: f32,
    /// Binary-search steps over c (1 = fixed c).
    pub binary_search_steps: usize,
    /// Initial (or fixed) c.
    pub initial_const: f32,
    /// Stop a sample's optimization early when its objective stalls.
    pub abort_early: bool,
    /// tanh box to [0, 1] (else unconstrained).
    pub clip: bool,
    /// Attack the model's predicted labels instead of the given ones.
    pub use_predicted: bool,
    /// Gradients averaged per step for stochastic classifiers.
    pub eot_iter: usize,
}

impl Default for CarliniWagnerL2 {
    fn default() -> Self {
        CarliniWagnerL2 {
            kappa: 0.0,
            steps: 1000,
            lr: 0.01,
            binary_search_steps: 9,
            initial_const: 1e-3,
            abort_early: true,
            clip: true,
            use_predicted: false,
            eot_iter: 1,
        }
    }
}

impl CarliniWagnerL2 {
    /// Fixed-c C&W (no binary search), e.g. the study's c ∈ {0.005, 0.01, 0.1, 1.0}.
    pub fn fixed_c(c: f32, steps: usize) -> Self {
        CarliniWagnerL2 {
            binary_search_steps: 1,
            initial_const: c,
            steps,
            ..Default::default()
        }
    }

    fn check(&self) -> Result<()> {
        ensure!(
            self.kappa.is_finite() && self.kappa >= 0.0,
            "cw: κ must be finite and ≥ 0 (got {})",
            self.kappa
        );
        ensure!(
            self.lr.is_finite() && self.lr > 0.0,
            "cw: learning rate must be > 0 (got {})",
            self.lr
        );
        ensure!(
            self.initial_const.is_finite() && self.initial_const > 0.0,
            "cw: c must be finite and > 0 (got {})",
            self.initial_const
        );
        ensure!(
            self.binary_search_steps >= 1,
            "cw: binary_search_steps must be ≥ 1"
        );
        Ok(())
    }

    /// Untargeted (`target = None`) or targeted attack of a batch (deterministic: `seed` is unused).
    pub fn attack(
        &self,
        clf: &dyn Classifier,
        x: &Tensor,
        y: &[usize],
        target: Option<&[usize]>,
        ids: &[u64],
        _seed: u64,
    ) -> Result<AttackResult> {
        self.check()?;
        let b = check_inputs(clf, x, y, ids)?;
        check_targets(clf, target, b.n())?;
        let counted = Counted::new(clf);
        let cc: &dyn Classifier = &counted;
        let labels = attack_labels(cc, &b, y, self.use_predicted)?;
        let (n, d) = b.x.dim();
        let k = clf.num_classes();
        ensure!(k >= 2, "cw: needs at least 2 classes");
        let goal: Vec<usize> = match target {
            Some(t) => t.to_vec(),
            None => labels.clone(),
        };
        let targeted = target.is_some();
        let x0 = &b.x;
        let w0 = if self.clip {
            x0.mapv(|v| ((2.0 * v as f64 - 1.0) * 0.999999).atanh() as f32)
        } else {
            x0.clone()
        };
        let to_x = |w: f32| if self.clip { 0.5 * (w.tanh() + 1.0) } else { w };

        let mut lower = vec![0f64; n];
        let mut upper = vec![1e10f64; n];
        let mut cst = vec![self.initial_const as f64; n];
        let mut o_best_l2 = vec![f32::INFINITY; n];
        let mut o_best = x0.clone();
        let repeat = self.binary_search_steps >= 10;
        let every = (self.steps / 10).max(1);
        let (b1, b2) = (0.9f64, 0.999f64);

        for outer in 0..self.binary_search_steps {
            if repeat && outer == self.binary_search_steps - 1 {
                cst.clone_from(&upper);
            }
            let mut modif = Array2::<f32>::zeros((n, d));
            let mut m1 = Array2::<f64>::zeros((n, d));
            let mut m2 = Array2::<f64>::zeros((n, d));
            let mut best_l2 = vec![f32::INFINITY; n];
            let mut prev = vec![1e6f64; n];
            let mut running = vec![true; n];
            for it in 0..self.steps {
                let act: Vec<usize> = (0..n).filter(|&i| running[i]).collect();
                if act.is_empty() {
                    break;
                }
                let wa = &take(&w0, &act) + &take(&modif, &act);
                let xp = wa.mapv(to_x);
                let ga: Vec<usize> = act.iter().map(|&i| goal[i]).collect();
                let ca: Vec<f64> = act.iter().map(|&i| cst[i]).collect();
                let kappa = self.kappa;
                let lossf = |z: &Tensor| -> Result<super::losses::LossOut> {
                    let (v, mut g) = cw_f6(z, &ga, kappa, targeted)?;
                    for (r, mut row) in g.outer_iter_mut().enumerate() {
                        row.mapv_inplace(|a| (a as f64 * ca[r]) as f32);
                    }
                    Ok((
                        v.iter()
                            .zip(&ca)
                            .map(|(a, c)| (*a as f64 * c) as f32)
                            .collect(),
                        g,
                    ))
                };
                let go = grad_rows(cc, &xp, b.shape, &lossf, self.eot_iter)?;
                for (row, &i) in act.iter().enumerate() {
                    let diff = &xp.row(row) - &x0.row(i);
                    let l2 = diff.iter().map(|v| (*v as f64).powi(2)).sum::<f64>();
                    let obj = l2 + go.loss[row] as f64;
                    if self.abort_early && it % every == 0 {
                        if obj > prev[i] * 0.9999 {
                            running[i] = false;
                            continue;
                        }
                        prev[i] = obj;
                    }
                    let z = go.logits.row(row);
                    let succ = {
                        let mut zz: Vec<f32> = z.to_vec();
                        if targeted {
                            zz[goal[i]] -= self.kappa;
                        } else {
                            zz[goal[i]] += self.kappa;
                        }
                        let am =
                            super::argmax_rows(&Array2::from_shape_vec((1, k), zz).expect("1×K"))
                                [0];
                        if targeted {
                            am == goal[i]
                        } else {
                            am != goal[i]
                        }
                    };
                    let l2f = l2 as f32;
                    if succ && l2f < best_l2[i] {
                        best_l2[i] = l2f;
                    }
                    if succ && l2f < o_best_l2[i] {
                        o_best_l2[i] = l2f;
                        o_best.row_mut(i).assign(&xp.row(row));
                    }
                    // Adam step on the modifier.
                    let t = (it + 1) as i32;
                    for j in 0..d {
                        let xv = xp[[row, j]] as f64;
                        let gx = 2.0 * diff[j] as f64 + go.grad[[row, j]] as f64;
                        let gw = if self.clip {
                            gx * 0.5 * (1.0 - (2.0 * xv - 1.0).powi(2))
                        } else {
                            gx
                        };
                        m1[[i, j]] = b1 * m1[[i, j]] + (1.0 - b1) * gw;
                        m2[[i, j]] = b2 * m2[[i, j]] + (1.0 - b2) * gw * gw;
                        let mh = m1[[i, j]] / (1.0 - b1.powi(t));
                        let vh = m2[[i, j]] / (1.0 - b2.powi(t));
                        modif[[i, j]] -= (self.lr as f64 * mh / (vh.sqrt() + 1e-8)) as f32;
                    }
                }
            }
            for i in 0..n {
                if best_l2[i].is_finite() {
                    upper[i] = upper[i].min(cst[i]);
                    if upper[i] < 1e9 {
                        cst[i] = (lower[i] + upper[i]) / 2.0;
                    }
                } else {
                    lower[i] = lower[i].max(cst[i]);
                    if upper[i] < 1e9 {
                        cst[i] = (lower[i] + upper[i]) / 2.0;
                    } else {
                        cst[i] *= 10.0;
                    }
                }
            }
        }
        finish(clf, &counted, &b, o_best, labels, target, Norm::L2, None)
    }
}

impl Attack for CarliniWagnerL2 {
    fn name(&self) -> String {
        if self.binary_search_steps == 1 {
            format!(
                "CW-L2 c={} kappa={} steps={}",
                self.initial_const, self.kappa, self.steps
            )
        } else {
            format!(
                "CW-L2 search={} c0={} kappa={} steps={}",
                self.binary_search_steps, self.initial_const, self.kappa, self.steps
            )
        }
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
