//! FAB-T, the targeted Fast Adaptive Boundary attack (Croce & Hein 2020; fra31/auto-attack
//! `fab_base.py`, `fab_pt.py`), a minimum-norm attack used by AutoAttack 'standard' with 9 target
//! classes (the 2nd … 10th most likely classes at the clean point) and one restart.
//!
//! Each iteration linearizes `g = z_t − z_y` at the current point x₁, projects both x₁ and the original
//! point x₀ onto the linearized boundary `{g = 0}` ∩ box (exact minimal-norm projections, computed by
//! bisection on the KKT multiplier: L2 `d_j = clip(λ w_j, −p_j, 1 − p_j)`; L∞
//! `d_j = s·sign(w_j)·min(τ, room_j)`), mixes them with `α = min(max(a₁/(a₁ + a₂), 0), α_max)` and
//! extrapolates by η: `x₁ ← clip((x₁ + η d₁)(1 − α) + (x₀ + η d₂) α)`. When x₁ is misclassified,
//! the smallest-norm adversarial so far is kept and x₁ steps back toward x₀ by β. A result counts as a
//! success only if its norm is ≤ ε. Restarts after the first start from a random point at radius ε/2.
//!
//! Deviation: fra31's `projection_linf/l2` solve the same projection problems with sorting-based exact
//! solvers; here bisection (60 halvings in f64) is used. Points never fooled return the clean image.

use anyhow::{Result, ensure};
use ndarray::{Array1, Array2, ArrayView1};
use sim::{Stream, Tensor};

use super::losses::logit_diff;
use super::{
    Attack, AttackResult, Norm, argmax_rows, check_eps, check_inputs, finish, grad_rows, logits_of,
    take,
};
use crate::classifier::{Classifier, Counted};

/// FAB-T settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FabT {
    /// Threat model.
    pub norm: Norm,
    /// Radius ε for counting successes.
    pub eps: f32,
    /// Iterations per run.
    pub n_iter: usize,
    /// Number of target classes (capped at K − 1).
    pub n_target_classes: usize,
    /// Runs per target (the first without random start).
    pub n_restarts: usize,
    /// Maximum weight of the original point's projection.
    pub alpha_max: f32,
    /// Extrapolation factor.
    pub eta: f32,
    /// Step back toward the original point after a success.
    pub beta: f32,
    /// Box [0, 1].
    pub clip: bool,
    /// Gradients averaged per step for stochastic classifiers.
    pub eot_iter: usize,
}

impl FabT {
    /// FAB-T as in AutoAttack 'standard': 100 iterations, 9 targets, 1 restart, α_max 0.1, η 1.05, β 0.9.
    pub fn new(norm: Norm, eps: f32) -> Self {
        FabT {
            norm,
            eps,
            n_iter: 100,
            n_target_classes: 9,
            n_restarts: 1,
            alpha_max: 0.1,
            eta: 1.05,
            beta: 0.9,
            clip: true,
            eot_iter: 1,
        }
    }
}

/// Minimal-norm `d` with `w·(p + d) = w·p + c` and (if `clip`) `p + d ∈ [0, 1]`; when the hyperplane
/// cannot be reached inside the box, the point of the box that gets closest to it.
pub fn project_hyperplane_box(
    norm: Norm,
    p: ArrayView1<f32>,
    w: ArrayView1<f32>,
    c: f32,
    clip: bool,
) -> Array1<f32> {
    let d = p.len();
    let c = c as f64;
    let w64: Vec<f64> = w.iter().map(|&a| a as f64).collect();
    let (lo, hi): (Vec<f64>, Vec<f64>) = if clip {
        (
            p.iter().map(|&a| -(a as f64)).collect(),
            p.iter().map(|&a| 1.0 - a as f64).collect(),
        )
    } else {
        (vec![f64::NEG_INFINITY; d], vec![f64::INFINITY; d])
    };
    let wn2: f64 = w64.iter().map(|a| a * a).sum();
    if wn2 == 0.0 || c == 0.0 {
        return Array1::zeros(d);
    }
    match norm {
        Norm::L2 => {
            let dl = |lam: f64| -> Vec<f64> {
                (0..d).map(|j| (lam * w64[j]).clamp(lo[j], hi[j])).collect()
            };
            let g = |lam: f64| -> f64 { dl(lam).iter().zip(&w64).map(|(a, b)| a * b).sum() };
            // g is nondecreasing in λ, g(0) = 0; bracket the root on c's side.
            let mut far = c / wn2;
            let mut n = 0;
            while (g(far) - c) * c.signum() < 0.0 && n < 200 {
                far *= 2.0;
                n += 1;
            }
            let (mut a, mut b) = (0.0f64, far);
            for _ in 0..60 {
                let m = 0.5 * (a + b);
                if (g(m) - c) * c.signum() < 0.0 {
                    a = m;
                } else {
                    b = m;
                }
            }
            Array1::from(dl(b).into_iter().map(|v| v as f32).collect::<Vec<_>>())
        }
        Norm::Linf => {
            let s = c.signum();
            // room in the useful direction of each coordinate
            let room: Vec<f64> = (0..d)
                .map(|j| if s * w64[j] > 0.0 { hi[j] } else { -lo[j] })
                .collect();
            let h = |t: f64| -> f64 { (0..d).map(|j| w64[j].abs() * t.min(room[j])).sum() };
            let target = c.abs();
            let l1: f64 = w64.iter().map(|a| a.abs()).sum();
            let mut far = target / l1;
            let mut n = 0;
            while h(far) < target && n < 200 && far.is_finite() {
                far *= 2.0;
                n += 1;
            }
            let (mut a, mut b) = (0.0f64, far);
            for _ in 0..60 {
                let m = 0.5 * (a + b);
                if h(m) < target {
                    a = m;
                } else {
                    b = m;
                }
            }
            Array1::from(
                (0..d)
                    .map(|j| {
                        (s * w64[j].signum() * b.min(room[j]) * (w64[j] != 0.0) as u8 as f64) as f32
                    })
                    .collect::<Vec<_>>(),
            )
        }
    }
}

impl FabT {
    /// One targeted run on a batch: returns (best adversarial per row, its norm or ∞).
    #[allow(clippy::too_many_arguments)]
    fn single_run(
        &self,
        cc: &dyn Classifier,
        x0: &Array2<f32>,
        shape: [usize; 3],
        y: &[usize],
        t: &[usize],
        rand_start: Option<&[Stream]>,
    ) -> Result<(Array2<f32>, Vec<f32>)> {
        let (n, d) = x0.dim();
        let mut x1 = x0.clone();
        if let Some(st) = rand_start {
            for row in 0..n {
                let tv: Vec<f32> = match self.norm {
                    Norm::Linf => (0..d)
                        .map(|j| 2.0 * st[row].uniform(j as u64) - 1.0)
                        .collect(),
                    Norm::L2 => (0..d).map(|j| st[row].normal(j as u64)).collect(),
                };
                let tn = self.norm.of(ArrayView1::from(&tv[..])).max(1e-12);
                let mut v = x1.row_mut(row);
                for j in 0..d {
                    v[j] += self.eps * tv[j] / tn * 0.5;
                }
                if self.clip {
                    super::clip_box(v);
                }
            }
        }
        let mut adv = x0.clone();
        let mut res = vec![f32::INFINITY; n];
        let lossf = |z: &Tensor| logit_diff(z, t, y);
        for _ in 0..self.n_iter {
            let go = grad_rows(cc, &x1, shape, &lossf, self.eot_iter)?;
            for row in 0..n {
                let w = go.grad.row(row);
                let df = go.loss[row];
                let c2 = -df + w.dot(&(&x1.row(row) - &x0.row(row)));
                let d1 = project_hyperplane_box(self.norm, x1.row(row), w, -df, self.clip);
                let d2 = project_hyperplane_box(self.norm, x0.row(row), w, c2, self.clip);
                let a1 = self.norm.of(d1.view()).max(1e-8);
                let a2 = self.norm.of(d2.view()).max(1e-8);
                let alpha = (a1 / (a1 + a2)).max(0.0).min(self.alpha_max);
                let mut v = (&x1.row(row) + &(&d1 * self.eta)) * (1.0 - alpha)
                    + (&x0.row(row) + &(&d2 * self.eta)) * alpha;
                if self.clip {
                    v.mapv_inplace(|a| a.clamp(0.0, 1.0));
                }
                x1.row_mut(row).assign(&v);
            }
            let pred = argmax_rows(&logits_of(cc, &x1, shape)?);
            for row in 0..n {
                if pred[row] != y[row] {
                    let dv = &x1.row(row) - &x0.row(row);
                    let nr = self.norm.of(dv.view());
                    if nr < res[row] {
                        res[row] = nr;
                        adv.row_mut(row).assign(&x1.row(row));
                    }
                    let back = &x0.row(row) + &(&dv * self.beta);
                    x1.row_mut(row).assign(&back);
                }
            }
        }
        Ok((adv, res))
    }
}

impl Attack for FabT {
    fn name(&self) -> String {
        format!(
            "FAB-T-{} eps={} iters={} targets={}",
            self.norm, self.eps, self.n_iter, self.n_target_classes
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
        check_eps(self.eps)?;
        ensure!(self.n_restarts >= 1, "fab-t: n_restarts must be ≥ 1");
        let b = check_inputs(clf, x, y, ids)?;
        let k = clf.num_classes();
        ensure!(k >= 2, "fab-t: needs at least 2 classes");
        let counted = Counted::new(clf);
        let cc: &dyn Classifier = &counted;
        let z0 = logits_of(cc, &b.x, b.shape)?;
        let pred0 = argmax_rows(&z0);
        let n = b.n();
        let order: Vec<Vec<usize>> = z0
            .outer_iter()
            .map(|r| {
                let mut o: Vec<usize> = (0..k).collect();
                o.sort_by(|&a, &c| r[c].partial_cmp(&r[a]).unwrap_or(std::cmp::Ordering::Equal));
                o
            })
            .collect();
        let mut robust: Vec<bool> = (0..n).map(|i| pred0[i] == y[i]).collect();
        let mut out = b.x.clone();
        let tol = self.eps * (1.0 + 1e-4) + 1e-7;
        for tc in 2..self.n_target_classes.min(k - 1) + 2 {
            for r in 0..self.n_restarts {
                let idx: Vec<usize> = (0..n).filter(|&i| robust[i]).collect();
                if idx.is_empty() {
                    break;
                }
                let ys: Vec<usize> = idx.iter().map(|&i| y[i]).collect();
                let ts: Vec<usize> = idx.iter().map(|&i| order[i][tc - 1]).collect();
                let streams: Vec<Stream> = idx
                    .iter()
                    .map(|&i| {
                        Stream::new(seed, "fab-t")
                            .sub(ids[i])
                            .sub(tc as u64)
                            .sub(r as u64)
                    })
                    .collect();
                let (adv, res) = self.single_run(
                    cc,
                    &take(&b.x, &idx),
                    b.shape,
                    &ys,
                    &ts,
                    (r > 0).then_some(&streams[..]),
                )?;
                for (row, &i) in idx.iter().enumerate() {
                    if res[row] <= tol {
                        robust[i] = false;
                        out.row_mut(i).assign(&adv.row(row));
                    }
                }
            }
        }
        finish(
            clf,
            &counted,
            &b,
            out,
            y.to_vec(),
            None,
            self.norm,
            Some(self.eps),
        )
    }
}
