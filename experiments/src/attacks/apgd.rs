//! Auto-PGD (Croce & Hein 2020, fra31/auto-attack `autopgd_base.py`): untargeted APGD with the CE or
//! DLR loss ([`Apgd`]) and the targeted APGD-T with the targeted DLR loss over the top classes
//! ([`ApgdT`]).
//!
//! One run (`attack_single_run`): start at a random point on the ε-sphere (L∞: `x + ε·t/‖t‖∞`, t uniform
//! in [−1, 1]; L2: `x + ε·g/‖g‖₂`, g Gaussian), box-clipped; step size η = 2ε per sample; momentum
//! update `z = P(x_k + η·dir(∇))`, `x_{k+1} = P(x_k + a(z − x_k) + (1 − a)(x_k − x_{k−1}))` with
//! a = 1 at the first iteration and 0.75 after; checkpoints after k = ⌊0.22·n_iter⌋ iterations, then
//! k ← max(k − ⌊0.03·n_iter⌋, ⌊0.06·n_iter⌋); at a checkpoint the step is halved (and the iterate and
//! gradient reset to the best point) if the loss increased in at most ρ·k of the last k steps, or if the
//! step was not halved at the previous checkpoint and the best loss did not improve. Any misclassified
//! iterate is kept as the adversarial example. Restarts attack only the points still robust.
//!
//! Deviation: under EOT the loss used for step-size control is the mean over the draws (fra31 uses the
//! last draw's); the success check uses the last draw's logits, as fra31 does.

use anyhow::{Result, ensure};
use ndarray::Array2;
use sim::{Stream, Tensor};

use super::losses::{cross_entropy, dlr, dlr_targeted};
use super::{
    Attack, AttackResult, Norm, argmax_rows, ascent_dir, check_eps, check_inputs, finish,
    grad_rows, logits_of, project, take,
};
use crate::classifier::{Classifier, Counted};

/// Loss of the untargeted APGD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ApgdLoss {
    /// Cross-entropy (APGD-CE).
    Ce,
    /// Difference of logits ratio (APGD-DLR).
    Dlr,
}

#[derive(Debug, Clone, Copy)]
enum LossSpec {
    Ce,
    Dlr,
    DlrTargeted,
}

/// Shared settings of one APGD run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunCfg {
    pub norm: Norm,
    pub eps: f32,
    pub n_iter: usize,
    pub rho: f32,
    pub eot_iter: usize,
    pub clip: bool,
}

pub(crate) struct SingleRun {
    pub x_best: Array2<f32>,
    pub x_best_adv: Array2<f32>,
    pub fooled: Vec<bool>,
    pub loss_best: Vec<f32>,
}

/// The checkpoint schedule parameters (n_iter_2, n_iter_min, size_decr).
pub fn schedule(n_iter: usize) -> (usize, usize, usize) {
    let f = |p: f64| ((p * n_iter as f64) as usize).max(1);
    (f(0.22), f(0.06), f(0.03))
}

/// The step-size checkpoints: (0-based iteration after which the check runs, window length k of that
/// check). fra31: the first check after ⌊0.22·n_iter⌋ iterations, then k ← max(k − ⌊0.03·n_iter⌋,
/// ⌊0.06·n_iter⌋) (all at least 1). The attack itself is driven by this list.
pub fn checkpoint_schedule(n_iter: usize) -> Vec<(usize, usize)> {
    let (n2, nmin, dec) = schedule(n_iter);
    let (mut k, mut c, mut out) = (n2, 0, vec![]);
    for i in 0..n_iter {
        c += 1;
        if c == k {
            out.push((i, k));
            k = k.saturating_sub(dec).max(nmin);
            c = 0;
        }
    }
    out
}

/// The 0-based iterations after which APGD checks the step size (for n_iter = 100:
/// 21, 40, 56, 69, 79, 86, 92, 98).
pub fn checkpoints(n_iter: usize) -> Vec<usize> {
    checkpoint_schedule(n_iter)
        .into_iter()
        .map(|(i, _)| i)
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn single_run(
    cc: &dyn Classifier,
    x0: &Array2<f32>,
    shape: [usize; 3],
    y: &[usize],
    t: Option<&[usize]>,
    spec: LossSpec,
    cfg: RunCfg,
    streams: &[Stream],
) -> Result<SingleRun> {
    let (n, d) = x0.dim();
    let eps = cfg.eps;
    let mut xa = x0.clone();
    for row in 0..n {
        let s = streams[row];
        let tv: Vec<f32> = match cfg.norm {
            Norm::Linf => (0..d).map(|j| 2.0 * s.uniform(j as u64) - 1.0).collect(),
            Norm::L2 => (0..d).map(|j| s.normal(j as u64)).collect(),
        };
        let tn = cfg.norm.of(ndarray::ArrayView1::from(&tv[..])).max(1e-12);
        let mut v = xa.row_mut(row);
        for j in 0..d {
            v[j] += eps * tv[j] / tn;
        }
        if cfg.clip {
            super::clip_box(v);
        }
    }
    let lossf = |z: &Tensor| match spec {
        LossSpec::Ce => cross_entropy(z, y),
        LossSpec::Dlr => dlr(z, y),
        LossSpec::DlrTargeted => dlr_targeted(z, y, t.expect("targets for APGD-T")),
    };
    let g = grad_rows(cc, &xa, shape, &lossf, cfg.eot_iter)?;
    let mut grad = g.grad;
    let mut grad_best = grad.clone();
    let pred = argmax_rows(&g.logits);
    let mut fooled: Vec<bool> = (0..n).map(|i| pred[i] != y[i]).collect();
    let mut x_best_adv = xa.clone();
    let mut x_best = xa.clone();
    let mut loss_best = g.loss.clone();
    let mut step = vec![2.0 * eps; n];
    let mut x_old = xa.clone();
    let checks = checkpoint_schedule(cfg.n_iter);
    let mut next_check = 0usize;
    let mut loss_best_last = loss_best.clone();
    let mut reduced_last = vec![true; n];
    let mut loss_steps = vec![vec![0f32; n]; cfg.n_iter];

    for i in 0..cfg.n_iter {
        let a = if i > 0 { 0.75f32 } else { 1.0 };
        let grad2 = &xa - &x_old;
        x_old = xa.clone();
        for row in 0..n {
            let x0r = x0.row(row);
            let mut z = xa.row(row).to_owned();
            z.scaled_add(step[row], &ascent_dir(cfg.norm, grad.row(row)));
            project(cfg.norm, x0r, z.view_mut(), eps, cfg.clip);
            let xr = xa.row(row).to_owned();
            let mut v = &xr + &((&z - &xr) * a);
            v.scaled_add(1.0 - a, &grad2.row(row));
            project(cfg.norm, x0r, v.view_mut(), eps, cfg.clip);
            xa.row_mut(row).assign(&v);
        }
        let g = grad_rows(cc, &xa, shape, &lossf, cfg.eot_iter)?;
        grad = g.grad;
        let pred = argmax_rows(&g.logits);
        for row in 0..n {
            if pred[row] != y[row] {
                fooled[row] = true;
                x_best_adv.row_mut(row).assign(&xa.row(row));
            }
        }
        loss_steps[i].clone_from(&g.loss);
        for row in 0..n {
            if g.loss[row] > loss_best[row] {
                x_best.row_mut(row).assign(&xa.row(row));
                grad_best.row_mut(row).assign(&grad.row(row));
                loss_best[row] = g.loss[row];
            }
        }
        if next_check < checks.len() && checks[next_check].0 == i {
            let k = checks[next_check].1;
            next_check += 1;
            let at = |idx: isize, row: usize| -> f32 {
                let j = if idx < 0 {
                    (cfg.n_iter as isize + idx) as usize
                } else {
                    idx as usize
                };
                loss_steps[j][row]
            };
            for row in 0..n {
                let mut cnt = 0usize;
                for c5 in 0..k as isize {
                    if at(i as isize - c5, row) > at(i as isize - c5 - 1, row) {
                        cnt += 1;
                    }
                }
                let osc = (cnt as f32) <= k as f32 * cfg.rho;
                let no_impr = !reduced_last[row] && loss_best_last[row] >= loss_best[row];
                let fl = osc || no_impr;
                reduced_last[row] = fl;
                loss_best_last[row] = loss_best[row];
                if fl {
                    step[row] /= 2.0;
                    xa.row_mut(row).assign(&x_best.row(row));
                    grad.row_mut(row).assign(&grad_best.row(row));
                }
            }
        }
    }
    Ok(SingleRun {
        x_best,
        x_best_adv,
        fooled,
        loss_best,
    })
}

/// Per-sample bookkeeping over restarts / target classes.
struct Tracker {
    adv: Array2<f32>,
    robust: Vec<bool>,
    best_loss: Vec<f32>,
}

impl Tracker {
    fn absorb(&mut self, idx: &[usize], r: &SingleRun) {
        for (row, &i) in idx.iter().enumerate() {
            if r.fooled[row] {
                self.robust[i] = false;
                self.adv.row_mut(i).assign(&r.x_best_adv.row(row));
            } else if r.loss_best[row] > self.best_loss[i] {
                self.best_loss[i] = r.loss_best[row];
                self.adv.row_mut(i).assign(&r.x_best.row(row));
            }
        }
    }
}

/// Untargeted APGD (fra31 defaults: 100 iterations, ρ = 0.75; AutoAttack 'standard' uses 1 restart).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Apgd {
    /// Threat model.
    pub norm: Norm,
    /// Radius ε.
    pub eps: f32,
    /// Iterations per run.
    pub n_iter: usize,
    /// Runs (each on the points still robust).
    pub n_restarts: usize,
    /// CE or DLR.
    pub loss: ApgdLoss,
    /// Gradients averaged per step for stochastic classifiers (AutoAttack 'rand': 20).
    pub eot_iter: usize,
    /// Oscillation threshold ρ.
    pub rho: f32,
    /// Keep iterates in the box [0, 1].
    pub clip: bool,
}

impl Apgd {
    /// APGD with fra31's defaults (100 iterations, 1 restart, ρ = 0.75, no EOT, box on).
    pub fn new(norm: Norm, eps: f32, loss: ApgdLoss) -> Self {
        Apgd {
            norm,
            eps,
            n_iter: 100,
            n_restarts: 1,
            loss,
            eot_iter: 1,
            rho: 0.75,
            clip: true,
        }
    }

    fn cfg(&self) -> Result<RunCfg> {
        check_eps(self.eps)?;
        ensure!(self.n_iter >= 1, "apgd: n_iter must be ≥ 1");
        ensure!(self.rho.is_finite(), "apgd: ρ must be finite");
        Ok(RunCfg {
            norm: self.norm,
            eps: self.eps,
            n_iter: self.n_iter,
            rho: self.rho,
            eot_iter: self.eot_iter,
            clip: self.clip,
        })
    }
}

impl Attack for Apgd {
    fn name(&self) -> String {
        let l = match self.loss {
            ApgdLoss::Ce => "CE",
            ApgdLoss::Dlr => "DLR",
        };
        format!(
            "APGD-{l}-{} eps={} iters={} restarts={} eot={}",
            self.norm, self.eps, self.n_iter, self.n_restarts, self.eot_iter
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
        let cfg = self.cfg()?;
        let b = check_inputs(clf, x, y, ids)?;
        if self.loss == ApgdLoss::Dlr {
            ensure!(clf.num_classes() >= 3, "APGD-DLR needs at least 3 classes");
        }
        let counted = Counted::new(clf);
        let cc: &dyn Classifier = &counted;
        let pred0 = argmax_rows(&logits_of(cc, &b.x, b.shape)?);
        let n = b.n();
        let mut tr = Tracker {
            adv: b.x.clone(),
            robust: (0..n).map(|i| pred0[i] == y[i]).collect(),
            best_loss: vec![f32::NEG_INFINITY; n],
        };
        let spec = match self.loss {
            ApgdLoss::Ce => LossSpec::Ce,
            ApgdLoss::Dlr => LossSpec::Dlr,
        };
        let name = match self.loss {
            ApgdLoss::Ce => "apgd-ce",
            ApgdLoss::Dlr => "apgd-dlr",
        };
        for r in 0..self.n_restarts {
            let idx: Vec<usize> = (0..n).filter(|&i| tr.robust[i]).collect();
            if idx.is_empty() {
                break;
            }
            let streams: Vec<Stream> = idx
                .iter()
                .map(|&i| Stream::new(seed, name).sub(ids[i]).sub(r as u64))
                .collect();
            let ys: Vec<usize> = idx.iter().map(|&i| y[i]).collect();
            let res = single_run(
                cc,
                &take(&b.x, &idx),
                b.shape,
                &ys,
                None,
                spec,
                cfg,
                &streams,
            )?;
            tr.absorb(&idx, &res);
        }
        finish(clf, &counted, &b, tr.adv, y.to_vec(), None, self.norm, None)
    }
}

/// Targeted APGD with the targeted DLR loss; targets are the 2nd … (n_target_classes+1)-th most likely
/// classes at the clean point, each tried on the points still robust (AutoAttack 'standard': 9 targets,
/// 1 restart). Success is any misclassification. Needs K ≥ 4.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ApgdT {
    /// Threat model.
    pub norm: Norm,
    /// Radius ε.
    pub eps: f32,
    /// Iterations per run.
    pub n_iter: usize,
    /// Runs per target class.
    pub n_restarts: usize,
    /// Number of target classes (capped at K − 1).
    pub n_target_classes: usize,
    /// Gradients averaged per step for stochastic classifiers.
    pub eot_iter: usize,
    /// Oscillation threshold ρ.
    pub rho: f32,
    /// Keep iterates in the box [0, 1].
    pub clip: bool,
}

impl ApgdT {
    /// APGD-T as in AutoAttack 'standard' (100 iterations, 1 restart, 9 targets).
    pub fn new(norm: Norm, eps: f32) -> Self {
        ApgdT {
            norm,
            eps,
            n_iter: 100,
            n_restarts: 1,
            n_target_classes: 9,
            eot_iter: 1,
            rho: 0.75,
            clip: true,
        }
    }
}

impl Attack for ApgdT {
    fn name(&self) -> String {
        format!(
            "APGD-T-{} eps={} iters={} targets={}",
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
        ensure!(self.n_iter >= 1, "apgd-t: n_iter must be ≥ 1");
        let cfg = RunCfg {
            norm: self.norm,
            eps: self.eps,
            n_iter: self.n_iter,
            rho: self.rho,
            eot_iter: self.eot_iter,
            clip: self.clip,
        };
        let b = check_inputs(clf, x, y, ids)?;
        let k = clf.num_classes();
        ensure!(
            k >= 4,
            "APGD-T (targeted DLR) needs at least 4 classes (got {k})"
        );
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
        let mut tr = Tracker {
            adv: b.x.clone(),
            robust: (0..n).map(|i| pred0[i] == y[i]).collect(),
            best_loss: vec![f32::NEG_INFINITY; n],
        };
        let n_t = self.n_target_classes.min(k - 1);
        for tc in 2..n_t + 2 {
            for r in 0..self.n_restarts {
                let idx: Vec<usize> = (0..n).filter(|&i| tr.robust[i]).collect();
                if idx.is_empty() {
                    break;
                }
                let streams: Vec<Stream> = idx
                    .iter()
                    .map(|&i| {
                        Stream::new(seed, "apgd-t")
                            .sub(ids[i])
                            .sub(tc as u64)
                            .sub(r as u64)
                    })
                    .collect();
                let ys: Vec<usize> = idx.iter().map(|&i| y[i]).collect();
                let ts: Vec<usize> = idx.iter().map(|&i| order[i][tc - 1]).collect();
                let res = single_run(
                    cc,
                    &take(&b.x, &idx),
                    b.shape,
                    &ys,
                    Some(&ts),
                    LossSpec::DlrTargeted,
                    cfg,
                    &streams,
                )?;
                tr.absorb(&idx, &res);
            }
        }
        finish(clf, &counted, &b, tr.adv, y.to_vec(), None, self.norm, None)
    }
}
