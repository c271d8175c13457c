//! Optimizers and schedules, with PyTorch's exact update rules (so that a run can be compared with
//! the reference code step for step): SGD with momentum and per-group weight decay, Adam, and
//! cosine annealing. Parameter groups are per synapse (`lrs`, `wds` lists as in the reference).
//!
//! The update arithmetic is `sim::OptimStep` (one definition, evaluated by every backend's
//! `optim_update`). An [`Optimizer`] keeps its state (momentum buffers, Adam moments, step count)
//! as host tensors (`Optimizer<Tensor>`, the default, what checkpoints hold) or on a backend
//! (`Optimizer<B::Tensor>`, see [`Optimizer::to_backend`]) so that training never moves
//! parameters between host and device; the state is part of a training checkpoint so that
//! resuming is exact.

use serde::{Deserialize, Serialize};
use sim::{Backend, Error, OptimStep, Result, Tensor};

/// Which optimizer, with its hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum OptimKind {
    /// `torch.optim.SGD(momentum, dampening=0, nesterov=False)`.
    Sgd {
        /// Momentum factor.
        #[serde(default)]
        momentum: f32,
    },
    /// `torch.optim.Adam` (L2 weight decay added to the gradient, as PyTorch's Adam).
    Adam {
        /// β₁.
        #[serde(default = "beta1")]
        beta1: f32,
        /// β₂.
        #[serde(default = "beta2")]
        beta2: f32,
        /// ε.
        #[serde(default = "adam_eps")]
        eps: f32,
    },
}

fn beta1() -> f32 {
    0.9
}
fn beta2() -> f32 {
    0.999
}
fn adam_eps() -> f32 {
    1e-8
}

/// Learning-rate schedule, stepped once per epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Schedule {
    /// Constant learning rates.
    Constant,
    /// `CosineAnnealingLR(T_max, eta_min)`: lr_e = η_min + (lr₀ − η_min)(1 + cos(π e / T_max)) / 2.
    Cosine {
        /// Period (epochs).
        t_max: usize,
        /// Floor.
        eta_min: f32,
    },
}

impl Schedule {
    /// Learning rate at `epoch` (0-based) for a group whose base rate is `lr0`.
    pub fn lr(&self, lr0: f32, epoch: usize) -> f32 {
        match *self {
            Schedule::Constant => lr0,
            Schedule::Cosine { t_max, eta_min } => {
                let t = t_max.max(1) as f64;
                (eta_min as f64
                    + (lr0 as f64 - eta_min as f64)
                        * (1.0 + (std::f64::consts::PI * epoch as f64 / t).cos())
                        / 2.0) as f32
            }
        }
    }
}

/// An optimizer over a list of parameter tensors in groups of `per_group` consecutive tensors
/// (an EP synapse's weight and bias form one group, as in the reference's per-synapse `lrs`).
/// `T` is where its buffers live: host tensors by default, or a backend's tensors.
#[derive(Debug, Clone)]
pub struct Optimizer<T = Tensor> {
    /// Algorithm.
    pub kind: OptimKind,
    /// Current learning rate per group.
    pub lrs: Vec<f32>,
    /// Weight decay per group.
    pub wds: Vec<f32>,
    /// Consecutive parameter tensors per group.
    pub per_group: usize,
    /// First buffers (SGD momentum / Adam m), allocated lazily as PyTorch does.
    pub buf1: Vec<Option<T>>,
    /// Second buffers (Adam v).
    pub buf2: Vec<Option<T>>,
    /// Number of steps taken.
    pub steps: u64,
}

impl Optimizer<Tensor> {
    /// A new optimizer with one group per entry of `lrs`/`wds`, each of `per_group` tensors.
    pub fn new(kind: OptimKind, lrs: Vec<f32>, wds: Vec<f32>, per_group: usize) -> Result<Self> {
        if lrs.len() != wds.len() {
            return Err(Error::param(
                "optimizer",
                format!(
                    "{} learning rates but {} weight decays",
                    lrs.len(),
                    wds.len()
                ),
            ));
        }
        if per_group == 0 {
            return Err(Error::param("optimizer", "groups need at least one tensor"));
        }
        let n = lrs.len() * per_group;
        Ok(Optimizer {
            kind,
            lrs,
            wds,
            per_group,
            buf1: vec![None; n],
            buf2: vec![None; n],
            steps: 0,
        })
    }

    /// One update of every host parameter with its gradient (descent direction:
    /// p ← p − lr·update).
    pub fn step(&mut self, params: &mut [Tensor], grads: &[Tensor]) -> Result<()> {
        self.step_on(&sim::Cpu, params, grads)
    }

    /// The same optimizer with its buffers on backend `be`.
    pub fn to_backend<B: Backend>(&self, be: &B) -> Result<Optimizer<B::Tensor>> {
        let up = |v: &[Option<Tensor>]| -> Result<Vec<Option<B::Tensor>>> {
            v.iter()
                .map(|b| b.as_ref().map(|t| be.upload(t)).transpose())
                .collect()
        };
        Ok(Optimizer {
            kind: self.kind.clone(),
            lrs: self.lrs.clone(),
            wds: self.wds.clone(),
            per_group: self.per_group,
            buf1: up(&self.buf1)?,
            buf2: up(&self.buf2)?,
            steps: self.steps,
        })
    }
}

impl<T: Clone> Optimizer<T> {
    /// Count a step and check the operand counts; returns the new step number.
    fn begin_step(&mut self, params: usize, grads: usize) -> Result<u64> {
        if params != self.lrs.len() * self.per_group || grads != params {
            return Err(Error::shape(
                "optimizer",
                format!(
                    "{params} params, {grads} grads, {} groups of {}",
                    self.lrs.len(),
                    self.per_group
                ),
            ));
        }
        self.steps += 1;
        Ok(self.steps)
    }

    /// The update rule of parameter `i` at step `t`.
    fn rule(&self, i: usize, t: u64) -> OptimStep {
        let (lr, wd) = (self.lrs[i / self.per_group], self.wds[i / self.per_group]);
        match self.kind {
            OptimKind::Sgd { momentum } => OptimStep::Sgd { lr, wd, momentum },
            OptimKind::Adam { beta1, beta2, eps } => {
                let t = t as i32;
                OptimStep::Adam {
                    lr,
                    wd,
                    beta1,
                    beta2,
                    eps,
                    bc1: 1.0 - beta1.powi(t),
                    bc2: 1.0 - beta2.powi(t),
                }
            }
        }
    }

    /// One update of every parameter on backend `be` (parameters, gradients and this optimizer's
    /// buffers all live there; nothing is copied to the host).
    pub fn step_on<B: Backend<Tensor = T>>(
        &mut self,
        be: &B,
        params: &mut [T],
        grads: &[T],
    ) -> Result<()> {
        let steps = self.begin_step(params.len(), grads.len())?;
        for i in 0..params.len() {
            let rule = self.rule(i, steps);
            let (p, b1, b2) = be
                .optim_update(
                    &params[i],
                    &grads[i],
                    self.buf1[i].as_ref(),
                    self.buf2[i].as_ref(),
                    rule,
                )
                .map_err(|e| param_error(i, e))?;
            params[i] = p;
            self.buf1[i] = b1;
            self.buf2[i] = b2;
        }
        Ok(())
    }

    /// The same optimizer with its buffers copied from backend `be` to the host (checkpoints).
    pub fn to_host<B: Backend<Tensor = T>>(&self, be: &B) -> Result<Optimizer<Tensor>> {
        let down = |v: &[Option<T>]| -> Result<Vec<Option<Tensor>>> {
            v.iter()
                .map(|b| b.as_ref().map(|t| be.download(t)).transpose())
                .collect()
        };
        Ok(Optimizer {
            kind: self.kind.clone(),
            lrs: self.lrs.clone(),
            wds: self.wds.clone(),
            per_group: self.per_group,
            buf1: down(&self.buf1)?,
            buf2: down(&self.buf2)?,
            steps: self.steps,
        })
    }
}

/// An update error, naming the parameter.
fn param_error(i: usize, e: Error) -> Error {
    match e {
        Error::Shape { detail, .. } => Error::shape("optimizer", format!("param {i}: {detail}")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgd_momentum_matches_hand_computation() {
        // PyTorch: buf1 = g1; p1 = p0 − lr(g1 + wd p0); buf2 = m·buf1 + (g2 + wd p1); p2 = p1 − lr·buf2.
        let mut o =
            Optimizer::new(OptimKind::Sgd { momentum: 0.9 }, vec![0.1], vec![0.01], 1).unwrap();
        let mut p = vec![sim::tensor(&[1], vec![1.0]).unwrap()];
        o.step(&mut p, &[sim::tensor(&[1], vec![0.5]).unwrap()])
            .unwrap();
        let d1 = 0.5 + 0.01 * 1.0;
        let p1 = 1.0 - 0.1 * d1;
        assert!((p[0][[0]] as f64 - p1).abs() < 1e-6);
        o.step(&mut p, &[sim::tensor(&[1], vec![-0.2]).unwrap()])
            .unwrap();
        let d2 = 0.9 * d1 + (-0.2 + 0.01 * p1);
        assert!((p[0][[0]] as f64 - (p1 - 0.1 * d2)).abs() < 1e-6);
    }

    #[test]
    fn adam_first_step_is_lr_sign() {
        // After one step, m̂ = g and v̂ = g², so the step is lr·g/(|g| + ε) ≈ lr·sign(g).
        let mut o = Optimizer::new(
            OptimKind::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            vec![0.01],
            vec![0.0],
            1,
        )
        .unwrap();
        let mut p = vec![sim::tensor(&[2], vec![1.0, 1.0]).unwrap()];
        o.step(&mut p, &[sim::tensor(&[2], vec![3.0, -0.001]).unwrap()])
            .unwrap();
        assert!((p[0][[0]] - 0.99).abs() < 1e-6);
        assert!((p[0][[1]] - 1.01).abs() < 1e-5);
    }

    #[test]
    fn cosine_schedule_endpoints() {
        let s = Schedule::Cosine {
            t_max: 100,
            eta_min: 1e-5,
        };
        assert!((s.lr(0.25, 0) - 0.25).abs() < 1e-7);
        assert!((s.lr(0.25, 100) - 1e-5).abs() < 1e-7);
        assert!((s.lr(0.25, 50) - (1e-5 + 0.25) / 2.0).abs() < 1e-6);
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        let mut o =
            Optimizer::new(OptimKind::Sgd { momentum: 0.0 }, vec![0.1], vec![0.0], 1).unwrap();
        let mut p = vec![sim::tensor(&[2], vec![1.0, 1.0]).unwrap()];
        assert!(
            o.step(&mut p, &[sim::tensor(&[3], vec![0.0; 3]).unwrap()])
                .is_err()
        );
    }
}
