//! The "AutoAttack" the seed paper ran: ART's `AutoAttack` ensemble (Trusted-AI/adversarial-robustness-toolbox
//! `art/attacks/evasion/auto_attack.py`, unchanged from tag 1.16.0 to 1.20.1; called by lanl/AdvEP
//! `auto_attack()` as `AutoAttack(art_model, norm, eps, batch_size)` with `clip_values=(0, 1)`).
//! It is **not** fra31's AutoAttack ([`super::AutoAttack`]): see /work/shared/reference/robustness.md §0.
//!
//! Members, in ART's order, all untargeted:
//! 1. APGD-CE, ART's own APGD ([`ArtApgd`]): `max_iter = 100`, `nb_random_init = 5`, initial step
//!    `eps_step = 0.1` in pixel units whatever ε is (fra31 starts at 2ε);
//! 2. APGD-DLR, the same with the DLR loss;
//! 3. DeepFool (`max_iter = 100`, overshoot `epsilon = 1e-3`, `nb_grads = 10`); ART's DeepFool is an
//!    L2 attack whatever the ensemble's norm, so it runs in L2 and its result is judged in the
//!    ensemble's norm;
//! 4. Square (`max_iter = 5000`, `p_init = 0.8`, `nb_restarts = 5`; ART's schedule is rescaled to the
//!    budget, like the original code), on the model's logits (the ensemble's estimator, not the
//!    softmax black box of the paper's stand-alone Square).
//!
//! Ensemble rule (ART `run_attack`): each member attacks, from the original images, only the points
//! still robust; a candidate breaks a point if one prediction on it differs from the attacked label
//! **and** its perturbation passes the norm check `(1 − 10⁻⁴)·‖δ‖ ≤ ε` (i.e. ‖δ‖ ≤ ε·(1 + 10⁻⁴) to first
//! order), otherwise it is rejected. Robust accuracy is the per-sample worst case: a point is robust
//! only if it is classified correctly and every member fails.
//!
//! Where ART differs from fra31 and this module follows ART:
//! * labels: ART's `generate(x)` without `y` (as the paper calls it) attacks the model's **predicted**
//!   labels ([`ArtAutoAttack::use_predicted`]); clean errors are attacked too (away from their wrong
//!   label) but never count as robust. The paper counts `y_true == argmax f(x_adv)`, which would count
//!   a clean error that an attack happens to move onto the true class as correct; here it does not.
//! * box: the ensemble's estimator has `clip_values = (0, 1)`, so every member keeps to the box even
//!   under the advep protocol (whose PGD has no box).
//! * APGD: random start uniform in the ε-ball (ART `random_sphere`), fixed initial step `eps_step`,
//!   ART's checkpoints `ceil(p_j·max_iter)` with p = 0, 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03,
//!   0.06) evaluated in binary floating point as ART does (for 100 iterations: 22, 41, 58, 70, 80, 87,
//!   93, 99), ART's halving conditions, and only the **final** iterate of each restart counts (fra31
//!   keeps any misclassified iterate).
//!
//! Deviations (documented): the norm check allows a further 2⁻²² (L∞) or 2⁻²²·√d (L2) for the f32
//! rounding of `x + δ` (ART rejects some valid points at the smallest ε for that reason); APGD's loss
//! values come from the same call that gives the gradient (the attacker's dynamics, `T_attack`),
//! where ART's `compute_loss` runs a separate forward pass; DLR keeps fra31's `+1e−12` in its
//! denominator; the DeepFool member is [`DeepFool`] (per-step `+1e−4`, overshoot applied to each
//! iterate) and the Square member is [`Square`] with per-sample windows; restarts of APGD reuse the
//! robustness flags of the previous restart instead of a fresh prediction on every point.

use anyhow::{Result, ensure};
use ndarray::{Array1, Array2, ArrayView1};
use sim::{Stream, Tensor};

use super::apgd::ApgdLoss;
use super::autoattack::AutoAttackReport;
use super::deepfool::DeepFool;
use super::losses::{cross_entropy, dlr};
use super::square::Square;
use super::{
    Attack, AttackResult, Norm, argmax_rows, check_eps, check_inputs, finish, grad_rows, logits_of,
    pert_norms, take, to_nchw, to_rows,
};
use crate::classifier::{Classifier, Counted};

/// ART's relative tolerance of the ensemble's norm check (`rel_acc` in `run_attack`).
pub const NORM_REL_TOL: f64 = 1e-4;

/// Whether a perturbation of norm `norm` passes the ensemble's check for radius `eps`: ART's
/// `(1 − 10⁻⁴)·‖δ‖ ≤ ε`, plus the f32 rounding allowance `2⁻²²` (L∞) or `2⁻²²·√d` (L2) for inputs of
/// `d` values.
pub fn within_eps(norm_kind: Norm, norm: f64, eps: f64, d: usize) -> bool {
    let ulp = (2f64).powi(-22);
    let slack = match norm_kind {
        Norm::Linf => ulp,
        Norm::L2 => ulp * (d as f64).sqrt(),
    };
    norm.is_finite() && (1.0 - NORM_REL_TOL) * norm <= eps + slack
}

/// ART APGD's step-size checkpoints for `max_iter` iterations: `ceil(p_j·max_iter)` for
/// p₀ = 0, p₁ = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06) while p_{j+1} ≤ 1, computed in
/// f64 exactly as ART (Python floats) does. The first entry is 0 (never a check: iteration 0 is the
/// special first step); a check runs after iteration k when k is in the list, with window
/// `k − (previous entry)`.
pub fn art_checkpoints(max_iter: usize) -> Vec<usize> {
    let mut w = vec![0.0f64, 0.22];
    loop {
        let j = w.len() - 1;
        let next = w[j] + (w[j] - w[j - 1] - 0.03).max(0.06);
        if next > 1.0 {
            break;
        }
        w.push(next);
    }
    w.into_iter()
        .map(|p| (p * max_iter as f64).ceil() as usize)
        .collect()
}

/// ART's `projection` of a perturbation onto the ε-ball: L∞ `sign(δ)·min(|δ|, ε)`, L2
/// `δ·min(1, ε/(‖δ‖₂ + 1e−7))`.
fn art_project(norm: Norm, mut delta: Array1<f32>, eps: f32) -> Array1<f32> {
    match norm {
        Norm::Linf => delta.mapv_inplace(|a| a.clamp(-eps, eps)),
        Norm::L2 => {
            let n = Norm::L2.of(delta.view()) as f64;
            let s = (eps as f64 / (n + 1e-7)).min(1.0) as f32;
            delta.mapv_inplace(|a| a * s);
        }
    }
    delta
}

/// ART's step direction: `sign(g)` (L∞) or `g/(‖g‖₂ + 1e−7)` (L2).
fn art_dir(norm: Norm, g: ArrayView1<f32>) -> Array1<f32> {
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
            let n = Norm::L2.of(g) + 1e-7;
            g.mapv(|a| a / n)
        }
    }
}

/// `x0 + P(v − x0)` after clipping `v` to the box if `clip` (ART: clip, then project).
fn clip_project(
    norm: Norm,
    x0: ArrayView1<f32>,
    mut v: Array1<f32>,
    eps: f32,
    clip: bool,
) -> Array1<f32> {
    if clip {
        v.mapv_inplace(|a| a.clamp(0.0, 1.0));
    }
    let d = art_project(norm, &v - &x0, eps);
    &x0 + &d
}

/// ART's `AutoProjectedGradientDescent` (untargeted): see the module doc for how it differs from
/// fra31's APGD ([`super::Apgd`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ArtApgd {
    /// Threat model.
    pub norm: Norm,
    /// Radius ε.
    pub eps: f32,
    /// Initial step size η in pixel units (ART default 0.1, independent of ε).
    pub eps_step: f32,
    /// Iterations per restart.
    pub max_iter: usize,
    /// Restarts, each from a fresh random point on the points still robust (ART `nb_random_init`).
    pub nb_random_init: usize,
    /// CE or DLR.
    pub loss: ApgdLoss,
    /// Keep iterates in the box [0, 1] (ART: the estimator's `clip_values`).
    pub clip: bool,
    /// Gradients averaged per step for stochastic classifiers (EOT; not in ART).
    pub eot_iter: usize,
}

impl ArtApgd {
    /// ART AutoAttack's member: 100 iterations, 5 random restarts, initial step 0.1, box on.
    pub fn new(norm: Norm, eps: f32, loss: ApgdLoss) -> Self {
        ArtApgd {
            norm,
            eps,
            eps_step: 0.1,
            max_iter: 100,
            nb_random_init: 5,
            loss,
            clip: true,
            eot_iter: 1,
        }
    }

    /// One restart from `xk` (already randomized) around `x0`: returns the final iterate.
    fn single_run(
        &self,
        cc: &dyn Classifier,
        x0: &Array2<f32>,
        mut xk: Array2<f32>,
        shape: [usize; 3],
        ys: &[usize],
    ) -> Result<Array2<f32>> {
        let (m, _) = x0.dim();
        let eps = self.eps;
        let lossf = |z: &Tensor| match self.loss {
            ApgdLoss::Ce => cross_entropy(z, ys),
            ApgdLoss::Dlr => dlr(z, ys),
        };
        let checks = art_checkpoints(self.max_iter);
        let mut eta = vec![self.eps_step; m];
        let mut count = vec![0usize; m];
        // Iteration 0: one step from the random start, kept if the loss did not decrease.
        let g0 = grad_rows(cc, &xk, shape, &lossf, self.eot_iter)?;
        let mut x1 = xk.clone();
        for r in 0..m {
            let mut z = xk.row(r).to_owned();
            z.scaled_add(eta[r], &art_dir(self.norm, g0.grad.row(r)));
            x1.row_mut(r)
                .assign(&clip_project(self.norm, x0.row(r), z, eps, self.clip));
        }
        let g1 = grad_rows(cc, &x1, shape, &lossf, self.eot_iter)?;
        let mut eta_last = eta.clone();
        let mut f_max = g0.loss.clone();
        let mut f_max_last = g0.loss.clone();
        let mut x_max = xk.clone();
        let mut x_max_m1 = x0.clone();
        for r in 0..m {
            if g1.loss[r] >= g0.loss[r] {
                f_max[r] = g1.loss[r];
                x_max.row_mut(r).assign(&x1.row(r));
                count[r] += 1;
            }
        }
        let mut x_km1 = std::mem::replace(&mut xk, x1);
        let mut grad = g1.grad;
        for k in 1..self.max_iter {
            let mut xn = xk.clone();
            for r in 0..m {
                let xr = xk.row(r);
                let mut z = xr.to_owned();
                z.scaled_add(eta[r], &art_dir(self.norm, grad.row(r)));
                let z = clip_project(self.norm, x0.row(r), z, eps, self.clip);
                let v = &xr + &((&z - &xr) * 0.75) + &((&xr - &x_km1.row(r)) * 0.25);
                xn.row_mut(r)
                    .assign(&clip_project(self.norm, x0.row(r), v, eps, self.clip));
            }
            let gn = grad_rows(cc, &xn, shape, &lossf, self.eot_iter)?;
            if gn.loss.iter().all(|&f| f == 0.0) {
                return Ok(xn);
            }
            for r in 0..m {
                if gn.loss[r] > f_max[r] {
                    count[r] += 1;
                    x_max.row_mut(r).assign(&xn.row(r));
                    x_max_m1.row_mut(r).assign(&xk.row(r));
                    f_max[r] = gn.loss[r];
                }
            }
            x_km1 = std::mem::replace(&mut xk, xn);
            grad = gn.grad;
            if let Some(p) = checks.iter().position(|&c| c == k).filter(|&p| p > 0) {
                let window = (k - checks[p - 1]) as f64;
                let mut reset = vec![];
                for r in 0..m {
                    let cond1 = (count[r] as f64) < 0.75 * window;
                    let cond2 = eta_last[r] == eta[r] && f_max_last[r] == f_max[r];
                    if cond1 || cond2 {
                        eta[r] /= 2.0;
                        xk.row_mut(r).assign(&x_max.row(r));
                        x_km1.row_mut(r).assign(&x_max_m1.row(r));
                        reset.push(r);
                    }
                }
                count.iter_mut().for_each(|c| *c = 0);
                eta_last.clone_from(&eta);
                f_max_last.clone_from(&f_max);
                if !reset.is_empty() && k + 1 < self.max_iter {
                    // The next step needs the gradient at the reset points.
                    let yr: Vec<usize> = reset.iter().map(|&r| ys[r]).collect();
                    let lr = |z: &Tensor| match self.loss {
                        ApgdLoss::Ce => cross_entropy(z, &yr),
                        ApgdLoss::Dlr => dlr(z, &yr),
                    };
                    let gr = grad_rows(cc, &take(&xk, &reset), shape, &lr, self.eot_iter)?;
                    for (j, &r) in reset.iter().enumerate() {
                        grad.row_mut(r).assign(&gr.grad.row(j));
                    }
                }
            }
        }
        Ok(xk)
    }
}

impl Attack for ArtApgd {
    fn name(&self) -> String {
        let l = match self.loss {
            ApgdLoss::Ce => "CE",
            ApgdLoss::Dlr => "DLR",
        };
        format!(
            "ART-APGD-{l}-{} eps={} iters={} restarts={} eps_step={}",
            self.norm, self.eps, self.max_iter, self.nb_random_init, self.eps_step
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
        ensure!(self.max_iter >= 1, "art-apgd: max_iter must be ≥ 1");
        ensure!(
            self.nb_random_init >= 1,
            "art-apgd: nb_random_init must be ≥ 1"
        );
        ensure!(
            self.eps_step.is_finite() && self.eps_step > 0.0,
            "art-apgd: eps_step must be finite and > 0 (got {})",
            self.eps_step
        );
        let b = check_inputs(clf, x, y, ids)?;
        if self.loss == ApgdLoss::Dlr {
            ensure!(clf.num_classes() >= 3, "APGD-DLR needs at least 3 classes");
        }
        let counted = Counted::new(clf);
        let cc: &dyn Classifier = &counted;
        let n = b.n();
        let d = b.x.ncols();
        let pred0 = argmax_rows(&logits_of(cc, &b.x, b.shape)?);
        let mut robust: Vec<bool> = (0..n).map(|i| pred0[i] == y[i]).collect();
        let mut x_adv = b.x.clone();
        let name = match self.loss {
            ApgdLoss::Ce => "art-apgd-ce",
            ApgdLoss::Dlr => "art-apgd-dlr",
        };
        for r in 0..self.nb_random_init {
            let idx: Vec<usize> = (0..n).filter(|&i| robust[i]).collect();
            if idx.is_empty() {
                break;
            }
            let x0 = take(&b.x, &idx);
            let mut xk = x0.clone();
            for (row, &i) in idx.iter().enumerate() {
                // ART `random_sphere`: uniform in the L∞ cube, or uniform in the L2 ball.
                let s = Stream::new(seed, name).sub(ids[i]).sub(r as u64);
                let delta: Array1<f32> = match self.norm {
                    Norm::Linf => (0..d)
                        .map(|j| self.eps * (2.0 * s.uniform(j as u64) - 1.0))
                        .collect(),
                    Norm::L2 => {
                        let g: Array1<f32> = (0..d).map(|j| s.normal(j as u64)).collect();
                        let gn = Norm::L2.of(g.view()).max(1e-12);
                        let radius = self.eps
                            * (s.child("radius").uniform(0) as f64).powf(1.0 / d as f64) as f32;
                        g.mapv(|a| a / gn * radius)
                    }
                };
                let v = &x0.row(row) + &delta;
                xk.row_mut(row).assign(&clip_project(
                    self.norm,
                    x0.row(row),
                    v,
                    self.eps,
                    self.clip,
                ));
            }
            let ys: Vec<usize> = idx.iter().map(|&i| y[i]).collect();
            let xf = self.single_run(cc, &x0, xk, b.shape, &ys)?;
            let pred = argmax_rows(&logits_of(cc, &xf, b.shape)?);
            for (row, &i) in idx.iter().enumerate() {
                if pred[row] != y[i] {
                    robust[i] = false;
                    x_adv.row_mut(i).assign(&xf.row(row));
                }
            }
        }
        finish(clf, &counted, &b, x_adv, y.to_vec(), None, self.norm, None)
    }
}

/// An attack run `restarts` times, each on the points the previous runs did not fool, with a seed
/// derived from the master seed and the restart number (ART's Square `nb_restarts`). Every run starts
/// from the original images.
#[derive(Debug, Clone)]
pub struct Restarted<A> {
    /// The attack.
    pub attack: A,
    /// Number of runs (≥ 1).
    pub restarts: usize,
    /// The norm the result's `norms` are measured in.
    pub norm: Norm,
}

impl<A: Attack> Attack for Restarted<A> {
    fn name(&self) -> String {
        format!("{} restarts={}", self.attack.name(), self.restarts)
    }
    fn run_indexed(
        &self,
        clf: &dyn Classifier,
        x: &Tensor,
        y: &[usize],
        ids: &[u64],
        seed: u64,
    ) -> Result<AttackResult> {
        ensure!(self.restarts >= 1, "restarts must be ≥ 1");
        let b = check_inputs(clf, x, y, ids)?;
        let n = b.n();
        let mut adv = b.x.clone();
        let mut success = vec![false; n];
        let mut labels = y.to_vec();
        let (mut queries, mut grads) = (0u64, 0u64);
        for r in 0..self.restarts {
            let idx: Vec<usize> = (0..n).filter(|&i| !success[i]).collect();
            if idx.is_empty() {
                break;
            }
            let xs = to_nchw(&take(&b.x, &idx), b.shape);
            let ys: Vec<usize> = idx.iter().map(|&i| y[i]).collect();
            let is: Vec<u64> = idx.iter().map(|&i| ids[i]).collect();
            let seed_r = Stream::new(seed, "restart").u64_at(r as u64);
            let res = self.attack.run_indexed(clf, &xs, &ys, &is, seed_r)?;
            queries += res.queries;
            grads += res.grads;
            let rows = to_rows(&res.x_adv);
            for (j, &i) in idx.iter().enumerate() {
                adv.row_mut(i).assign(&rows.row(j));
                success[i] = res.success[j];
                labels[i] = res.labels[j];
            }
        }
        Ok(AttackResult {
            norms: pert_norms(self.norm, &adv, &b.x),
            x_adv: to_nchw(&adv, b.shape),
            success,
            labels,
            queries,
            grads,
        })
    }
}

/// ART's AutoAttack ensemble as the seed paper ran it (see the module doc).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ArtAutoAttack {
    /// Threat model.
    pub norm: Norm,
    /// Radius ε.
    pub eps: f32,
    /// APGD's initial step (ART default 0.1).
    pub eps_step: f32,
    /// APGD iterations per restart.
    pub apgd_iter: usize,
    /// APGD random restarts.
    pub apgd_restarts: usize,
    /// DeepFool iterations.
    pub deepfool_iter: usize,
    /// DeepFool overshoot.
    pub deepfool_overshoot: f32,
    /// DeepFool class gradients (the predicted class included).
    pub deepfool_grads: usize,
    /// Square queries per restart.
    pub square_queries: usize,
    /// Square initial fraction p_init.
    pub square_p_init: f32,
    /// Square restarts.
    pub square_restarts: usize,
    /// Attack the model's predicted labels (ART without `y`, as the paper calls it) instead of the
    /// true ones.
    pub use_predicted: bool,
    /// Box [0, 1] for every member (ART: `clip_values = (0, 1)`).
    pub clip: bool,
    /// Gradients averaged per step for stochastic classifiers (EOT; the Square member averages
    /// margins over as many queries).
    pub eot_iter: usize,
}

impl ArtAutoAttack {
    /// The ensemble with ART's defaults, attacking the predicted labels, box on: what the seed paper
    /// ran (the advep protocol's `autoattack-<norm>`).
    pub fn paper(norm: Norm, eps: f32) -> Self {
        ArtAutoAttack {
            norm,
            eps,
            eps_step: 0.1,
            apgd_iter: 100,
            apgd_restarts: 5,
            deepfool_iter: 100,
            deepfool_overshoot: 1e-3,
            deepfool_grads: 10,
            square_queries: 5000,
            square_p_init: 0.8,
            square_restarts: 5,
            use_predicted: true,
            clip: true,
            eot_iter: 1,
        }
    }

    /// The members in ART's order: APGD-CE, APGD-DLR, DeepFool (L2), Square.
    pub fn members(&self) -> Vec<Box<dyn Attack>> {
        let ce = ArtApgd {
            eps_step: self.eps_step,
            max_iter: self.apgd_iter,
            nb_random_init: self.apgd_restarts,
            clip: self.clip,
            eot_iter: self.eot_iter,
            ..ArtApgd::new(self.norm, self.eps, ApgdLoss::Ce)
        };
        let dlr = ArtApgd {
            loss: ApgdLoss::Dlr,
            ..ce.clone()
        };
        let df = DeepFool {
            max_iter: self.deepfool_iter,
            overshoot: self.deepfool_overshoot,
            nb_candidates: self.deepfool_grads,
            clip: self.clip,
            eps: None,
            eot_iter: self.eot_iter,
            ..DeepFool::new(Norm::L2)
        };
        let sq = Restarted {
            attack: Square {
                n_queries: self.square_queries,
                p_init: self.square_p_init,
                rescale_schedule: true,
                clip: self.clip,
                use_predicted: false,
                on_probabilities: false,
                eot_iter: self.eot_iter,
                ..Square::new(self.norm, self.eps)
            },
            restarts: self.square_restarts,
            norm: self.norm,
        };
        vec![
            Box::new(ce) as Box<dyn Attack>,
            Box::new(dlr),
            Box::new(df),
            Box::new(sq),
        ]
    }

    /// Run the ensemble on a batch whose samples have ids `ids` (`y`: the true labels).
    pub fn evaluate(
        &self,
        clf: &dyn Classifier,
        x: &Tensor,
        y: &[usize],
        ids: &[u64],
        seed: u64,
    ) -> Result<AutoAttackReport> {
        ensure!(
            clf.num_classes() >= 3,
            "ART AutoAttack needs ≥ 3 classes for APGD-DLR (got {})",
            clf.num_classes()
        );
        run_ensemble(
            &self.members(),
            clf,
            x,
            y,
            ids,
            seed,
            self.norm,
            self.eps,
            self.use_predicted,
        )
    }
}

impl Attack for ArtAutoAttack {
    fn name(&self) -> String {
        format!(
            "ART-AutoAttack-{} eps={} (APGD-CE x{}, APGD-DLR x{}, DeepFool-L2, Square {} queries x{}; {} labels)",
            self.norm,
            self.eps,
            self.apgd_restarts,
            self.apgd_restarts,
            self.square_queries,
            self.square_restarts,
            if self.use_predicted {
                "predicted"
            } else {
                "true"
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
        let rep = self.evaluate(clf, x, y, ids, seed)?;
        let x0 = to_rows(x);
        let adv = to_rows(&rep.x_adv);
        let labels = if self.use_predicted {
            argmax_rows(&logits_of(clf, &x0, clf.input_shape())?)
        } else {
            y.to_vec()
        };
        Ok(AttackResult {
            norms: pert_norms(self.norm, &adv, &x0),
            // Broken by a member (clean errors are never robust, whatever this says).
            success: rep.broken_by.iter().map(|b| b.is_some()).collect(),
            labels,
            x_adv: rep.x_adv,
            queries: rep.queries,
            grads: rep.grads,
        })
    }
}

/// ART's ensemble rule over any `members` (in order): each attacks the points still robust, from the
/// original images, with the attacked labels (`y`, or the model's clean predictions if
/// `use_predicted`); a member's candidate breaks a point if one prediction on it differs from the
/// attacked label and [`within_eps`] holds in `norm` for `eps`, otherwise it is rejected. A point is
/// robust if it is classified correctly (w.r.t. the true labels `y`) and no member broke it.
/// Queries count the clean prediction and one check per candidate; members' own counts are added.
#[allow(clippy::too_many_arguments)]
pub fn run_ensemble(
    members: &[Box<dyn Attack + '_>],
    clf: &dyn Classifier,
    x: &Tensor,
    y: &[usize],
    ids: &[u64],
    seed: u64,
    norm: Norm,
    eps: f32,
    use_predicted: bool,
) -> Result<AutoAttackReport> {
    check_eps(eps)?;
    let b = check_inputs(clf, x, y, ids)?;
    let counted = Counted::new(clf);
    let n = b.n();
    let d = b.x.ncols();
    let pred0 = argmax_rows(&logits_of(&counted, &b.x, b.shape)?);
    let labels: Vec<usize> = if use_predicted {
        pred0.clone()
    } else {
        y.to_vec()
    };
    let clean_correct: Vec<bool> = (0..n).map(|i| pred0[i] == y[i]).collect();
    // ART's `sample_is_robust`: the prediction equals the attacked label.
    let mut attackable: Vec<bool> = (0..n).map(|i| pred0[i] == labels[i]).collect();
    let mut adv = b.x.clone();
    let mut broken_by: Vec<Option<String>> = vec![None; n];
    let mut per_attack = vec![];
    let mut grads = 0u64;
    let mut member_queries = 0u64;
    for atk in members {
        let name = atk.name();
        let idx: Vec<usize> = (0..n).filter(|&i| attackable[i]).collect();
        if idx.is_empty() {
            per_attack.push((name, 0));
            continue;
        }
        let xs = to_nchw(&take(&b.x, &idx), b.shape);
        let ys: Vec<usize> = idx.iter().map(|&i| labels[i]).collect();
        let is: Vec<u64> = idx.iter().map(|&i| ids[i]).collect();
        let res = atk.run_indexed(clf, &xs, &ys, &is, seed)?;
        member_queries += res.queries;
        grads += res.grads;
        let rows = to_rows(&res.x_adv);
        ensure!(
            rows.dim() == (idx.len(), d),
            "{name}: returned {:?} adversarials for {} inputs",
            rows.dim(),
            idx.len()
        );
        let pred = argmax_rows(&logits_of(&counted, &rows, b.shape)?);
        let norms = pert_norms(norm, &rows, &take(&b.x, &idx));
        let mut broke = 0;
        for (r, &i) in idx.iter().enumerate() {
            if pred[r] != labels[i] && within_eps(norm, norms[r] as f64, eps as f64, d) {
                attackable[i] = false;
                adv.row_mut(i).assign(&rows.row(r));
                broken_by[i] = Some(name.clone());
                broke += 1;
            }
        }
        per_attack.push((name, broke));
    }
    let robust: Vec<bool> = (0..n).map(|i| clean_correct[i] && attackable[i]).collect();
    let frac = |v: &[bool]| {
        if n == 0 {
            0.0
        } else {
            v.iter().filter(|&&a| a).count() as f32 / n as f32
        }
    };
    let queries = counted.queries.load(std::sync::atomic::Ordering::Relaxed) + member_queries;
    Ok(AutoAttackReport {
        clean_accuracy: frac(&clean_correct),
        robust_accuracy: frac(&robust),
        clean_correct,
        robust,
        x_adv: to_nchw(&adv, b.shape),
        broken_by,
        per_attack,
        queries,
        grads,
    })
}
