//! Settling a phase to its fixed point: plain iteration of the EP step (the default, bit-identical
//! to [`Dynamics::relax`]), plain iteration with convergence-aware stopping, and Anderson
//! acceleration of the fixed-point map s ← F(s) (one synchronous EP step).
//!
//! **Stopping, per sample.** A settle with a tolerance finishes a sample at the first step k whose
//! change max|F(s_k) − s_k| (over all its layers and neurons) is below `tol`, or at the cap
//! (`max_steps`, else the `steps` argument); its state is F(s_k), so it lies in σ's range. The
//! per-sample maxima come from [`Backend::row_max_abs_diff`] (one `[N]` read-back per layer per
//! step; whole states are never downloaded). Finished samples leave the batch (the active set,
//! with [`Backend::take_rows`]; see `Batch`), so a batch does the work of its samples' own step
//! counts, not of its slowest sample's: [`Settled::row_steps`] counts it and
//! [`Settled::sample_steps`] records each sample's step. On a deterministic realization a
//! sample's result does not depend on its batch (up to float rounding; tested). Steps keep their
//! numbers within the phase, so a noisy realization draws its noise per step actually taken (its
//! draws are indexed by the row a sample has in the batch then, as they always were).
//!
//! **Anderson** (type II, Walker & Ni 2011), per sample: with the residuals f_i = F(s_i) − s_i of
//! the last m+1 iterates, their differences ΔF and the differences ΔG of the F(s_i),
//! γ = argmin ‖f_k − ΔF γ‖² + λ‖γ‖² (λ = `reg` · the mean diagonal of ΔFᵀΔF, a Tikhonov term that
//! keeps the solve well posed when the history is nearly collinear), solved on the host from the
//! m×m Gram matrix of each sample (batched `matmul`s over the layers, read back as `[N, m, m]`), and
//! s_{k+1} = F(s_k) − ΔG γ − (1 − β)(f_k − ΔF γ). Each sample has its own γ: the samples of a batch
//! are independent problems. An extrapolated state can leave σ's range; the mixed state of every
//! layer whose neurons have a bounded range (the sigmoids: [0, 1]; ReLU: [0, ∞)) is clamped into it
//! before F is evaluated there (a projection onto a set holding the fixed point, which cannot move
//! a converged iterate). A sample whose residual grows above `restart` times the smallest it had
//! restarts with an empty history (a safeguard for the piecewise-linear σ and pooling switches).
//!
//! **Which fixed point.** The free phase of a trained EP-CNN can have several fixed points, and
//! mixing from the first step extrapolates out of the basin plain iteration from zero ends in: on
//! the quick-start EP-CNN (first 128 Fashion-MNIST test images) Anderson with mixing from the
//! start converged (change < 1e-5) for 50 of 128 samples to another fixed point, up to 0.66 away
//! from the 2000-step plain one. A sample therefore takes plain steps until its change falls
//! below `start` (default 1e-3) and mixes from there: then every sample reached the plain fixed
//! point within 1e-5 (see `benches/settle.rs` and BENCHMARKS.md).
//!
//! **Gradients.** Through plain iteration of a fixed number of steps, BPTT differentiates the
//! steps ([`Dynamics::free_phase_bptt`]). Through a settle with a tolerance (early-stopped or
//! accelerated) the steps taken are not a gradient of anything well defined (the history mixing
//! is not differentiated, and the step count depends on the input), so [`free_phase_bptt_with`]
//! gives the implicit-function (equilibrium) gradient at the state reached instead
//! ([`equilibrium_gradient`]: the adjoint fixed point λ = Jᵀλ + ∂ℓ/∂s, by iterating the step's
//! adjoint at that state), tested against BPTT through a long plain free phase and against
//! finite differences. The EP update needs no BPTT: at the Anderson equilibrium it keeps the GDU
//! property (tested).

use serde::{Deserialize, Serialize};
use sim::{Act, Backend, Error, Result};

use crate::dynamics::{Bptt, Dynamics, finish_bptt, readout_loss, step_adjoint};
use crate::model::{State, Target};

/// How a phase settles (serde, e.g. in TOML: `settle = { method = "plain" }`,
/// `settle = { method = "anderson", tol = 1e-5 }`, with optional `max_steps`, and for Anderson
/// `m`, `beta`, `reg`, `restart`, `start`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum Settle {
    /// Plain iteration s ← F(s). Without `tol`: exactly the requested steps, bit-identical to
    /// [`Dynamics::relax`]; with `tol`: stop when every sample's change is below it.
    Plain {
        /// Max-abs change per sample below which the batch stops.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tol: Option<f32>,
        /// Cap on the steps with `tol` (else the caller's step count); refused without `tol`
        /// (plain iteration takes the caller's steps: T1, `--steps`, T_predict).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_steps: Option<usize>,
    },
    /// Anderson acceleration over the last `m` iterates.
    Anderson {
        /// History length (≥ 1).
        #[serde(default = "default_m")]
        m: usize,
        /// Mixing (damping) β in (0, 1]: 1 takes the mixed F values.
        #[serde(default = "default_beta")]
        beta: f32,
        /// Max-abs change per sample below which the batch stops.
        tol: f32,
        /// Cap on the steps (else the caller's step count).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_steps: Option<usize>,
        /// Relative Tikhonov regularization of the least-squares solve.
        #[serde(default = "default_reg")]
        reg: f32,
        /// Restart a sample's history when its residual exceeds this multiple of its best one.
        #[serde(default = "default_restart")]
        restart: f32,
        /// A sample takes plain steps until its max-abs change falls below `start` (then mixes):
        /// extrapolating from far away can leave the basin of the plain iteration's fixed point.
        #[serde(default = "default_start")]
        start: f32,
    },
}

fn default_m() -> usize {
    5
}
fn default_beta() -> f32 {
    1.0
}
fn default_reg() -> f32 {
    1e-8
}
fn default_restart() -> f32 {
    10.0
}
fn default_start() -> f32 {
    1e-3
}

impl Default for Settle {
    fn default() -> Self {
        Settle::Plain {
            tol: None,
            max_steps: None,
        }
    }
}

impl Settle {
    /// Anderson with the defaults (m = 5, β = 1, reg = 1e-8, restart = 10, start = 1e-3) and
    /// tolerance `tol`.
    pub fn anderson(tol: f32) -> Self {
        Settle::Anderson {
            m: default_m(),
            beta: default_beta(),
            tol,
            max_steps: None,
            reg: default_reg(),
            restart: default_restart(),
            start: default_start(),
        }
    }

    /// Plain iteration stopping at tolerance `tol`.
    pub fn plain_tol(tol: f32) -> Self {
        Settle::Plain {
            tol: Some(tol),
            max_steps: None,
        }
    }

    /// Whether this is the default: plain iteration of the caller's steps (a checked settle
    /// without a tolerance is this one).
    pub fn is_default(&self) -> bool {
        *self == Settle::default()
    }

    /// From the CLI's words: `method` (`plain` or `anderson`), `tol` (required by Anderson) and
    /// `max_steps`, with Anderson's other parameters at their defaults; checked.
    pub fn from_flags(method: &str, tol: Option<f32>, max_steps: Option<usize>) -> Result<Self> {
        let s = match method {
            "plain" => Settle::Plain { tol, max_steps },
            "anderson" => {
                let tol = tol.ok_or_else(|| {
                    Error::param("settle", "anderson needs a tolerance (--tol, e.g. 1e-4)")
                })?;
                let mut s = Settle::anderson(tol);
                if let Settle::Anderson { max_steps: cap, .. } = &mut s {
                    *cap = max_steps;
                }
                s
            }
            other => {
                return Err(Error::param(
                    "settle",
                    format!("unknown method {other:?}: use plain or anderson"),
                ));
            }
        };
        s.check()?;
        Ok(s)
    }

    /// The CLI's words for this settle, (flag without `--`, value), that [`Settle::from_flags`]
    /// reads back: none for the default; Anderson with its default parameters, as the flags make
    /// it. What a task of the index contract is given.
    pub fn flags(&self) -> Vec<(&'static str, String)> {
        let (method, tol, max_steps) = match *self {
            Settle::Plain { tol: None, .. } => return vec![],
            Settle::Plain {
                tol: Some(t),
                max_steps,
            } => ("plain", t, max_steps),
            Settle::Anderson { tol, max_steps, .. } => ("anderson", tol, max_steps),
        };
        let mut v = vec![("settle", method.to_string()), ("tol", tol.to_string())];
        if let Some(m) = max_steps {
            v.push(("max-steps", m.to_string()));
        }
        v
    }

    /// The step cap of a settle given the caller's `steps`.
    pub fn cap(&self, steps: usize) -> usize {
        match *self {
            Settle::Plain { max_steps, .. } | Settle::Anderson { max_steps, .. } => {
                max_steps.unwrap_or(steps)
            }
        }
    }

    /// A short description for logs and reports, e.g. `plain, tol 1e-3, ≤ 60 steps` (with the
    /// caller's `steps`).
    pub fn describe(&self, steps: usize) -> String {
        match *self {
            Settle::Plain { tol: None, .. } => format!("plain, {} steps", self.cap(steps)),
            Settle::Plain { tol: Some(t), .. } => {
                format!("plain, tol {t:e}, ≤ {} steps", self.cap(steps))
            }
            Settle::Anderson { m, tol, .. } => {
                format!("anderson m = {m}, tol {tol:e}, ≤ {} steps", self.cap(steps))
            }
        }
    }

    /// The parameters' ranges (also checked by every settle).
    pub fn check(&self) -> Result<()> {
        let bad = |d: String| Err(Error::param("settle", d));
        match *self {
            Settle::Plain { tol: Some(t), .. } if !(t > 0.0 && t.is_finite()) => {
                bad(format!("tol must be a positive number, got {t}"))
            }
            Settle::Plain {
                tol: None,
                max_steps: Some(_),
            } => bad(
                "max_steps caps a settle with a tolerance; plain iteration takes the model's \
                 steps (set T1, --steps or t_predict instead)"
                    .into(),
            ),
            Settle::Plain {
                max_steps: Some(0), ..
            }
            | Settle::Anderson {
                max_steps: Some(0), ..
            } => bad("max_steps must be ≥ 1".into()),
            Settle::Anderson {
                m,
                beta,
                tol,
                reg,
                restart,
                start,
                ..
            } => {
                if start.is_nan() || start <= 0.0 {
                    return bad(format!("anderson: start must be > 0, got {start}"));
                }
                if tol >= start {
                    return bad(format!(
                        "anderson mixes a sample once its change is below start = {start}, so \
                         with tol {tol} it never would: use plain, or a tol below {start}"
                    ));
                }
                if m == 0 {
                    bad("anderson: m must be ≥ 1".into())
                } else if !(beta > 0.0 && beta <= 1.0) {
                    bad(format!("anderson: beta must be in (0, 1], got {beta}"))
                } else if !(tol > 0.0 && tol.is_finite()) {
                    bad(format!(
                        "anderson: tol must be a positive number, got {tol}"
                    ))
                } else if !(reg >= 0.0 && reg.is_finite()) {
                    bad(format!("anderson: reg must be ≥ 0, got {reg}"))
                } else if restart.is_nan() || restart <= 1.0 {
                    bad(format!("anderson: restart must be > 1, got {restart}"))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }
}

/// A settled phase: the state, the steps taken (evaluations of F), and the convergence record.
#[derive(Debug)]
pub struct Settled<B: Backend> {
    /// The state after the last step.
    pub state: State<B>,
    /// Steps of the dynamics taken (each one evaluation of F).
    pub steps: usize,
    /// Per sample, the first step (1-based) whose change was below `tol` (`None` if never, or if
    /// the settle has no tolerance).
    pub sample_steps: Vec<Option<usize>>,
    /// The largest per-sample max-abs change of each sample's last step (`None` without a
    /// tolerance).
    pub residual: Option<f32>,
    /// Rows evaluated over all steps (Σ over steps of the batch's size then): the work done.
    /// A settle with a tolerance drops finished samples from the batch, so this is below
    /// `steps` × the batch size.
    pub row_steps: usize,
}

impl<B: Backend> Settled<B> {
    /// Whether every sample met the tolerance.
    pub fn converged(&self) -> bool {
        self.sample_steps.iter().all(Option::is_some) && !self.sample_steps.is_empty()
    }

    /// Steps per sample: the step at which it met the tolerance, else every step taken.
    pub fn per_sample_steps(&self) -> impl Iterator<Item = usize> + '_ {
        self.sample_steps.iter().map(|s| s.unwrap_or(self.steps))
    }

    /// The mean of [`Settled::per_sample_steps`] (0 for an empty batch).
    pub fn mean_steps(&self) -> f64 {
        let n = self.sample_steps.len();
        if n == 0 {
            return 0.0;
        }
        self.per_sample_steps().sum::<usize>() as f64 / n as f64
    }
}

/// The range of the neurons of activation `act` (`None`: unbounded).
fn act_range(act: Act) -> Option<(f32, f32)> {
    match act {
        Act::HardSigmoid | Act::MyHardSig | Act::MySigmoid => Some((0.0, 1.0)),
        Act::Relu => Some((0.0, f32::MAX)),
        Act::Clamp { lo, hi } => Some((lo, hi)),
        Act::Identity | Act::Gelu => None,
    }
}

/// Per sample, max |a − b| over every layer ([`Backend::row_max_abs_diff`], one `[N]` read-back
/// per layer).
pub fn sample_max_abs_diff<B: Backend>(be: &B, a: &State<B>, b: &State<B>) -> Result<Vec<f32>> {
    let mut out: Vec<f32> = Vec::new();
    for (la, lb) in a.layers.iter().zip(&b.layers) {
        let d = be.row_max_abs_diff(la, lb)?;
        if out.is_empty() {
            out = d;
            continue;
        }
        for (o, &v) in out.iter_mut().zip(&d) {
            // A NaN propagates (f32::max would drop it).
            *o = if v.is_nan() || o.is_nan() {
                f32::NAN
            } else {
                o.max(v)
            };
        }
    }
    Ok(out)
}

/// Settling on every [`Dynamics`] (see the module doc).
pub trait Settler<B: Backend>: Dynamics<B> {
    /// Settle from `st` with `settle`: `steps` is the step count of plain iteration without a
    /// tolerance, and the cap of the others unless they name `max_steps`; `nudge` as in
    /// [`Dynamics::relax`] (a nudged phase warm-started from the free equilibrium settles with the
    /// same solver). Steps are numbered 0.. within the call, as in `relax`.
    fn relax_with(
        &self,
        be: &B,
        x: &B::Tensor,
        st: State<B>,
        steps: usize,
        nudge: Option<(f32, &Target<B>)>,
        settle: &Settle,
    ) -> Result<Settled<B>> {
        settle.check()?;
        let n = self.net().check_input(be, x)?;
        if (n == 0 || settle.cap(steps) == 0) && !settle.is_default() {
            // Nothing to settle: the state as it is (as `relax` with 0 steps).
            return Ok(Settled {
                state: st,
                steps: 0,
                sample_steps: vec![None; n],
                residual: None,
                row_steps: 0,
            });
        }
        match *settle {
            Settle::Plain { tol: None, .. } => {
                let state = self.relax(be, x, st, steps, nudge)?;
                Ok(Settled {
                    state,
                    steps,
                    sample_steps: vec![None; n],
                    residual: None,
                    row_steps: n * steps,
                })
            }
            Settle::Plain {
                tol: Some(tol),
                max_steps,
            } => plain_tol(self, be, x, st, max_steps.unwrap_or(steps), nudge, tol, n),
            Settle::Anderson {
                m,
                beta,
                tol,
                max_steps,
                reg,
                restart,
                start,
            } => anderson(
                self,
                be,
                x,
                st,
                max_steps.unwrap_or(steps),
                nudge,
                AndersonParams {
                    m,
                    beta,
                    tol,
                    reg,
                    restart,
                    start,
                },
                n,
            ),
        }
    }

    /// The free phase from the zero state with `settle` (`steps` as in [`Settler::relax_with`]).
    fn free_phase_with(
        &self,
        be: &B,
        x: &B::Tensor,
        steps: usize,
        settle: &Settle,
    ) -> Result<Settled<B>> {
        let n = self.net().check_input(be, x)?;
        let st = self.net().zero_state(be, n)?;
        self.relax_with(be, x, st, steps, None, settle)
    }
}

impl<B: Backend, R: Dynamics<B> + ?Sized> Settler<B> for R {}

/// Gradients of a loss of the readout through a free phase settled with `settle`: plain iteration
/// of a fixed number of steps is [`Dynamics::free_phase_bptt`] (BPTT through the steps); any
/// other settle gives the implicit-function gradient at the state it reached
/// ([`equilibrium_gradient`], its adjoint iterated to the settle's tolerance, capped by the
/// settle's steps; `checkpoint_every` does not apply).
#[allow(clippy::too_many_arguments)]
pub fn free_phase_bptt_with<B: Backend, R: Dynamics<B> + ?Sized>(
    r: &R,
    be: &B,
    x: &B::Tensor,
    steps: usize,
    checkpoint_every: usize,
    want_params: bool,
    settle: &Settle,
    loss_grad: impl FnMut(&B::Tensor) -> Result<(f32, B::Tensor)>,
) -> Result<Bptt<B>> {
    match *settle {
        Settle::Plain { tol: None, .. } => {
            r.free_phase_bptt(be, x, steps, checkpoint_every, want_params, loss_grad)
        }
        Settle::Plain { tol: Some(tol), .. } | Settle::Anderson { tol, .. } => {
            let s = r.free_phase_with(be, x, steps, settle)?;
            let cap = settle.cap(steps);
            equilibrium_gradient(r, be, x, &s.state, tol, cap, want_params, loss_grad)
        }
    }
}

/// The implicit-function (equilibrium) gradient of a loss of the readout at a fixed point s* of
/// the free phase s = F(s, x; θ): with J = ∂F/∂s at s*, the adjoint λ solves λ = Jᵀλ + ∂ℓ/∂s,
/// and dℓ/dx = (∂F/∂x)ᵀλ, dℓ/dθ = (∂F/∂θ)ᵀλ (+ the readout's own terms). λ is the Neumann series
/// Σₖ (Jᵀ)ᵏ ∂ℓ/∂s, summed by iterating the step's adjoint at s* (recurrent backpropagation:
/// Almeida 1987, Pineda 1987; BPTT through infinitely many steps that all sit at s*), which
/// converges wherever the free phase contracts. It stops when the adjoint's norm falls below
/// `tol` times its first value, and is an error after `cap` iterations. At a state that is not a
/// fixed point (a loose tolerance) it is the same formula evaluated there: exact as tol → 0
/// (tested against BPTT through a long plain free phase and against finite differences).
#[allow(clippy::too_many_arguments)]
pub fn equilibrium_gradient<B: Backend, R: Dynamics<B> + ?Sized>(
    r: &R,
    be: &B,
    x: &B::Tensor,
    s_star: &State<B>,
    tol: f32,
    cap: usize,
    want_params: bool,
    mut loss_grad: impl FnMut(&B::Tensor) -> Result<(f32, B::Tensor)>,
) -> Result<Bptt<B>> {
    let net = r.net();
    net.check_input(be, x)?;
    let input = r.read_input(be, x)?;
    // One step number for every adjoint iteration: the same reads each time (a noisy realization
    // gives the gradient of that one draw).
    let t = cap as u64;
    let ns = net.spec.n_synapses();
    let mut dw: Vec<Option<B::Tensor>> = vec![None; ns];
    let mut db: Vec<Option<B::Tensor>> = vec![None; ns];
    let (loss, logits, mut g) = readout_loss(
        r,
        be,
        s_star,
        t,
        &mut loss_grad,
        "equilibrium gradient",
        want_params.then_some((&mut dw, &mut db)),
    )?;
    let norm = |g: &[Option<B::Tensor>]| -> Result<f32> {
        let mut s = 0f32;
        for l in g.iter().flatten() {
            s += be.dot(l, l)?;
        }
        Ok(s.sqrt())
    };
    let g0 = norm(&g)?;
    let mut dx: Option<B::Tensor> = None;
    let mut k = 0;
    loop {
        if k == cap {
            return Err(Error::param(
                "equilibrium gradient",
                format!(
                    "the adjoint did not converge in {cap} iterations (norm {:.1e} of {g0:.1e}): \
                     the free phase does not contract at this state; raise max_steps or use \
                     plain iteration of fixed steps (BPTT)",
                    norm(&g)?
                ),
            ));
        }
        g = step_adjoint(
            r,
            be,
            x,
            &input,
            s_star,
            t,
            &g,
            &mut dx,
            want_params.then_some((&mut dw, &mut db)),
        )?;
        k += 1;
        let gk = norm(&g)?;
        if !gk.is_finite() {
            return Err(Error::NonFinite {
                what: format!("equilibrium gradient, adjoint iteration {k}"),
                detail: "the adjoint diverged; the free phase does not contract at this state"
                    .into(),
            });
        }
        if gk <= tol * g0 {
            break;
        }
    }
    finish_bptt(
        net,
        be,
        x,
        loss,
        logits,
        dx,
        want_params.then_some((dw, db)),
    )
}

/// The batch of a settle with a tolerance (the active set): the rows still iterating (their
/// sample ids, inputs, nudge target and input read) and the final states of the finished samples.
/// A sample finishes at the first step whose change is below the tolerance (or at the cap): its
/// rows of F(s_k) are copied out at once, so its result does not depend on when the batch drops
/// it. The batch drops finished rows (compacts: [`Backend::take_rows`] on the inputs, the state
/// and the solver's history, and a new input read) once they are an eighth of it, which bounds
/// the work spent on finished rows and the cost of re-reading the input.
struct Batch<'a, B: Backend, R: Dynamics<B> + ?Sized> {
    r: &'a R,
    /// Sample id of each row.
    ids: Vec<usize>,
    x: B::Tensor,
    nudge: Option<(f32, Target<B>)>,
    input: R::Input,
    /// Per row: finished (still in the batch until the next compaction).
    frozen: Vec<bool>,
    done_ids: Vec<usize>,
    done: Vec<State<B>>,
    row_steps: usize,
    /// Per sample: the change of its last step.
    last_res: Vec<f32>,
}

impl<'a, B: Backend, R: Dynamics<B> + ?Sized> Batch<'a, B, R> {
    fn new(
        r: &'a R,
        be: &B,
        x: &B::Tensor,
        nudge: Option<(f32, &Target<B>)>,
        n: usize,
    ) -> Result<Self> {
        let nudge = match nudge {
            Some((beta, t)) => Some((
                beta,
                Target {
                    labels: t.labels.clone(),
                    onehot: t.onehot.clone(),
                },
            )),
            None => None,
        };
        Ok(Batch {
            r,
            ids: (0..n).collect(),
            x: x.clone(),
            nudge,
            input: r.read_input(be, x)?,
            frozen: vec![false; n],
            done_ids: Vec::with_capacity(n),
            done: Vec::new(),
            row_steps: 0,
            last_res: vec![f32::NAN; n],
        })
    }

    /// One step `k` of the rows in the batch from `s`.
    fn step(&mut self, be: &B, s: &State<B>, k: usize) -> Result<State<B>> {
        self.row_steps += self.ids.len();
        let nudge = self.nudge.as_ref().map(|(b, t)| (*b, t));
        self.r
            .step_at(be, &self.x, s, k as u64, nudge, Some(&self.input))
    }

    /// Record the changes `res` of step `k` (1-based) of the unfinished rows; returns those rows
    /// that met `tol` now. A non-finite change is an error naming the sample.
    fn record(
        &mut self,
        res: &[f32],
        tol: f32,
        k: usize,
        sample_steps: &mut [Option<usize>],
    ) -> Result<Vec<usize>> {
        let mut met = Vec::new();
        for (row, &v) in res.iter().enumerate() {
            if self.frozen[row] {
                continue;
            }
            let id = self.ids[row];
            if !v.is_finite() {
                return Err(Error::NonFinite {
                    what: format!("EP settle, step {k}, sample {id}"),
                    detail: "the state diverged (NaN/Inf); check the input, the weights, the \
                             learning rates and the settle's parameters"
                        .into(),
                });
            }
            self.last_res[id] = v;
            if v < tol {
                sample_steps[id] = Some(k);
                met.push(row);
            }
        }
        Ok(met)
    }

    /// The unfinished rows.
    fn open_rows(&self) -> Vec<usize> {
        (0..self.ids.len()).filter(|&r| !self.frozen[r]).collect()
    }

    /// Finish `rows` with their states in `g`.
    fn finish(&mut self, be: &B, g: &State<B>, rows: &[usize]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.done.push(take_state(be, g, rows)?);
        for &row in rows {
            self.frozen[row] = true;
            self.done_ids.push(self.ids[row]);
        }
        Ok(())
    }

    fn all_finished(&self) -> bool {
        self.frozen.iter().all(|&f| f)
    }

    /// The rows to keep when the finished rows should be dropped now (an eighth of the batch or
    /// more), after narrowing the inputs, the target and the input read to them.
    fn compact(&mut self, be: &B) -> Result<Option<Vec<usize>>> {
        let finished = self.frozen.iter().filter(|&&f| f).count();
        if finished == 0 || finished * 8 < self.ids.len() {
            return Ok(None);
        }
        let keep = self.open_rows();
        self.x = be.take_rows(&self.x, &keep)?;
        if let Some((_, t)) = &mut self.nudge {
            t.onehot = be.take_rows(&t.onehot, &keep)?;
            t.labels = keep.iter().map(|&r| t.labels[r]).collect();
        }
        self.ids = keep.iter().map(|&r| self.ids[r]).collect();
        self.frozen = vec![false; keep.len()];
        self.input = self.r.read_input(be, &self.x)?;
        Ok(Some(keep))
    }

    /// The finished states in sample order, with the convergence record.
    fn settled(self, be: &B, steps: usize, sample_steps: Vec<Option<usize>>) -> Result<Settled<B>> {
        let n_layers = self.done[0].layers.len();
        let layers = (0..n_layers)
            .map(|l| {
                let parts: Vec<&B::Tensor> = self.done.iter().map(|d| &d.layers[l]).collect();
                be.concat(&parts, 0)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut pos = vec![0usize; self.done_ids.len()];
        for (p, &id) in self.done_ids.iter().enumerate() {
            pos[id] = p;
        }
        let state = take_state(be, &State { layers }, &pos)?;
        let residual = Some(self.last_res.iter().fold(0f32, |m, &v| m.max(v)));
        Ok(Settled {
            state,
            steps,
            sample_steps,
            residual,
            row_steps: self.row_steps,
        })
    }
}

/// The rows `rows` of every layer of `st`.
fn take_state<B: Backend>(be: &B, st: &State<B>, rows: &[usize]) -> Result<State<B>> {
    Ok(State {
        layers: st
            .layers
            .iter()
            .map(|l| be.take_rows(l, rows))
            .collect::<Result<_>>()?,
    })
}

/// The rows `rows` of every tensor of `ts`.
fn take_all<B: Backend>(be: &B, ts: &[B::Tensor], rows: &[usize]) -> Result<Vec<B::Tensor>> {
    ts.iter().map(|t| be.take_rows(t, rows)).collect()
}

/// Plain iteration to a tolerance, on the active set.
#[allow(clippy::too_many_arguments)]
fn plain_tol<B: Backend, R: Dynamics<B> + ?Sized>(
    r: &R,
    be: &B,
    x: &B::Tensor,
    mut s: State<B>,
    cap: usize,
    nudge: Option<(f32, &Target<B>)>,
    tol: f32,
    n: usize,
) -> Result<Settled<B>> {
    let mut batch = Batch::new(r, be, x, nudge, n)?;
    let mut sample_steps = vec![None; n];
    let mut steps = 0;
    for k in 0..cap {
        let g = batch.step(be, &s, k)?;
        let res = sample_max_abs_diff(be, &g, &s)?;
        steps = k + 1;
        let met = batch.record(&res, tol, steps, &mut sample_steps)?;
        let fin = if steps == cap { batch.open_rows() } else { met };
        batch.finish(be, &g, &fin)?;
        if batch.all_finished() {
            break;
        }
        s = g;
        if let Some(keep) = batch.compact(be)? {
            s = take_state(be, &s, &keep)?;
        }
    }
    batch.settled(be, steps, sample_steps)
}

#[derive(Clone, Copy)]
struct AndersonParams {
    m: usize,
    beta: f32,
    tol: f32,
    reg: f32,
    restart: f32,
    start: f32,
}

/// Per layer (f, g) of one iterate.
type Pair<B> = (Vec<<B as Backend>::Tensor>, Vec<<B as Backend>::Tensor>);

/// Per layer `[N, 1, rest]` views of a state.
fn flat3<B: Backend>(be: &B, st: &State<B>) -> Result<Vec<B::Tensor>> {
    st.layers
        .iter()
        .map(|l| {
            let s = be.shape(l);
            be.reshape(l, &[s[0], 1, s[1..].iter().product()])
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn anderson<B: Backend, R: Dynamics<B> + ?Sized>(
    r: &R,
    be: &B,
    x: &B::Tensor,
    st: State<B>,
    cap: usize,
    nudge: Option<(f32, &Target<B>)>,
    p: AndersonParams,
    n: usize,
) -> Result<Settled<B>> {
    let net = r.net();
    let n_layers = st.layers.len();
    let ranges: Vec<Option<(f32, f32)>> = (0..n_layers)
        .map(|k| {
            if net.layer_is_linear(k, n_layers) {
                None
            } else {
                act_range(net.spec.act)
            }
        })
        .collect();
    let mut batch = Batch::new(r, be, x, nudge, n)?;
    // History (oldest first) of per-layer [rows, 1, rest] differences ΔF and ΔG.
    let mut dfs: Vec<Vec<B::Tensor>> = Vec::new();
    let mut dgs: Vec<Vec<B::Tensor>> = Vec::new();
    // Per row: the history it may use (a restart empties a row's history by zeroing its γ for
    // the entries older than the restart).
    let mut first_valid = vec![0usize; n];
    let mut n_pushed = 0usize; // history entries pushed so far (global index of the next one)
    let mut best = vec![f32::INFINITY; n];
    let mut prev: Option<Pair<B>> = None; // (f, g) flat at k − 1
    let mut sample_steps = vec![None; n];
    let mut s = st;
    let mut steps = 0;
    for k in 0..cap {
        let g_state = batch.step(be, &s, k)?;
        let res = sample_max_abs_diff(be, &g_state, &s)?;
        steps = k + 1;
        let met = batch.record(&res, p.tol, steps, &mut sample_steps)?;
        let fin = if steps == cap { batch.open_rows() } else { met };
        batch.finish(be, &g_state, &fin)?;
        if batch.all_finished() {
            break;
        }
        let rows = res.len();
        let shapes: Vec<Vec<usize>> = g_state.layers.iter().map(|l| be.shape(l)).collect();
        let g = flat3(be, &g_state)?;
        let sf = flat3(be, &s)?;
        let f: Vec<B::Tensor> = g
            .iter()
            .zip(&sf)
            .map(|(a, b)| be.sub(a, b))
            .collect::<Result<_>>()?;
        if res.iter().all(|&v| v.is_nan() || v >= p.start) {
            // Every row still takes plain steps: no history entry (a row's history starts when
            // it mixes), but the last (f, g), so that a row's first entry comes at the same
            // step whatever the other rows do.
            first_valid.iter_mut().for_each(|f| *f = n_pushed);
            prev = Some((f, g));
            s = g_state;
            if let Some(keep) = batch.compact(be)? {
                s = take_state(be, &s, &keep)?;
                let h = (&mut dfs, &mut dgs, &mut prev);
                take_history(be, &keep, h, &mut first_valid, &mut best)?;
            }
            continue;
        }
        if let Some((fp, gp)) = prev.take() {
            dfs.push(
                f.iter()
                    .zip(&fp)
                    .map(|(a, b)| be.sub(a, b))
                    .collect::<Result<_>>()?,
            );
            dgs.push(
                g.iter()
                    .zip(&gp)
                    .map(|(a, b)| be.sub(a, b))
                    .collect::<Result<_>>()?,
            );
            n_pushed += 1;
            if dfs.len() > p.m {
                dfs.remove(0);
                dgs.remove(0);
            }
        }
        for i in 0..rows {
            if res[i].is_nan() || res[i] >= p.start {
                // Plain steps until close: the history starts when mixing does.
                first_valid[i] = n_pushed;
                continue;
            }
            if res[i] < best[i] {
                best[i] = res[i];
            } else if res[i] > p.restart * best[i] {
                first_valid[i] = n_pushed;
                best[i] = res[i];
            }
        }
        let h = dfs.len();
        let next_flat: Vec<B::Tensor> = if h == 0 {
            g.clone()
        } else {
            // Per-sample Gram matrices Σ_layers ΔF ΔFᵀ [N, h, h] and ΔFᵀ f [N, h, 1].
            let mut gram: Option<B::Tensor> = None;
            let mut rhs: Option<B::Tensor> = None;
            let mut stacks_f = Vec::with_capacity(n_layers);
            let mut stacks_g = Vec::with_capacity(n_layers);
            for l in 0..n_layers {
                let dfl: Vec<&B::Tensor> = dfs.iter().map(|d| &d[l]).collect();
                let dgl: Vec<&B::Tensor> = dgs.iter().map(|d| &d[l]).collect();
                let sf = be.concat(&dfl, 1)?;
                let sg = be.concat(&dgl, 1)?;
                let a = be.matmul(&sf, &sf, false, true)?;
                let b = be.matmul(&sf, &f[l], false, true)?;
                gram = Some(match gram {
                    None => a,
                    Some(x) => be.add(&x, &a)?,
                });
                rhs = Some(match rhs {
                    None => b,
                    Some(x) => be.add(&x, &b)?,
                });
                stacks_f.push(sf);
                stacks_g.push(sg);
            }
            let gram = be.download(&gram.expect("a layer"))?;
            let rhs = be.download(&rhs.expect("a layer"))?;
            let gram = gram.as_slice().expect("std");
            let rhs = rhs.as_slice().expect("std");
            let oldest = n_pushed - h; // global index of dfs[0]
            let mut gamma = vec![0f32; rows * h];
            for i in 0..rows {
                let skip = first_valid[i].saturating_sub(oldest).min(h);
                let hh = h - skip;
                if hh == 0 {
                    continue;
                }
                let mut a = vec![0f64; hh * hh];
                let mut b = vec![0f64; hh];
                for u in 0..hh {
                    for v in 0..hh {
                        a[u * hh + v] = gram[i * h * h + (u + skip) * h + v + skip] as f64;
                    }
                    b[u] = rhs[i * h + u + skip] as f64;
                }
                let tr = (0..hh).map(|u| a[u * hh + u]).sum::<f64>() / hh as f64;
                let lambda = (p.reg as f64 * tr).max(1e-30);
                for u in 0..hh {
                    a[u * hh + u] += lambda;
                }
                if let Some(sol) = solve_spd(&mut a, &mut b, hh) {
                    for u in 0..hh {
                        gamma[i * h + u + skip] = sol[u] as f32;
                    }
                }
            }
            let gam = be.upload(&sim::tensor(&[rows, 1, h], gamma)?)?;
            let mut out = Vec::with_capacity(n_layers);
            for l in 0..n_layers {
                // s' = g − ΔG γ − (1 − β)(f − ΔF γ)
                let corr_g = be.matmul(&gam, &stacks_g[l], false, false)?;
                let mut nx = be.sub(&g[l], &corr_g)?;
                if p.beta != 1.0 {
                    let corr_f = be.matmul(&gam, &stacks_f[l], false, false)?;
                    let fr = be.sub(&f[l], &corr_f)?;
                    nx = be.axpy(-(1.0 - p.beta), &fr, &nx)?;
                }
                out.push(nx);
            }
            out
        };
        prev = Some((f, g));
        let layers = next_flat
            .into_iter()
            .enumerate()
            .map(|(l, t)| {
                let t = be.reshape(&t, &shapes[l])?;
                match ranges[l] {
                    Some((lo, hi)) => be.map(&t, Act::Clamp { lo, hi }),
                    None => Ok(t),
                }
            })
            .collect::<Result<_>>()?;
        s = State { layers };
        if let Some(keep) = batch.compact(be)? {
            s = take_state(be, &s, &keep)?;
            let h = (&mut dfs, &mut dgs, &mut prev);
            take_history(be, &keep, h, &mut first_valid, &mut best)?;
        }
    }
    batch.settled(be, steps, sample_steps)
}

/// Anderson's history (ΔF, ΔG, the last (f, g)) of a batch.
type HistoryMut<'a, B> = (
    &'a mut Vec<Vec<<B as Backend>::Tensor>>,
    &'a mut Vec<Vec<<B as Backend>::Tensor>>,
    &'a mut Option<Pair<B>>,
);

/// Narrow Anderson's history and its per-row bookkeeping to the rows `keep`.
fn take_history<B: Backend>(
    be: &B,
    keep: &[usize],
    (dfs, dgs, prev): HistoryMut<'_, B>,
    first_valid: &mut Vec<usize>,
    best: &mut Vec<f32>,
) -> Result<()> {
    for d in dfs.iter_mut().chain(dgs.iter_mut()) {
        *d = take_all(be, d, keep)?;
    }
    if let Some((f, g)) = prev.take() {
        *prev = Some((take_all(be, &f, keep)?, take_all(be, &g, keep)?));
    }
    *first_valid = keep.iter().map(|&r| first_valid[r]).collect();
    *best = keep.iter().map(|&r| best[r]).collect();
    Ok(())
}

/// Solve the symmetric positive definite system `a x = b` (`a` row-major `n×n`) by Cholesky, in
/// place; `None` when `a` is not numerically positive definite.
fn solve_spd(a: &mut [f64], b: &mut [f64], n: usize) -> Option<Vec<f64>> {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if d.is_nan() || d <= 0.0 || !d.is_finite() {
            return None;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut v = a[i * n + j];
            for k in 0..j {
                v -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = v / d;
        }
    }
    for i in 0..n {
        let mut v = b[i];
        for k in 0..i {
            v -= a[i * n + k] * b[k];
        }
        b[i] = v / a[i * n + i];
    }
    for i in (0..n).rev() {
        let mut v = b[i];
        for k in i + 1..n {
            v -= a[k * n + i] * b[k];
        }
        b[i] = v / a[i * n + i];
    }
    b.iter().all(|v| v.is_finite()).then(|| b.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settle_serde_defaults_and_errors() {
        let s: Settle = serde_json::from_str(r#"{"method":"anderson","tol":1e-5}"#).unwrap();
        assert_eq!(s, Settle::anderson(1e-5));
        let s: Settle = serde_json::from_str(r#"{"method":"plain"}"#).unwrap();
        assert_eq!(s, Settle::default());
        let s: Settle =
            serde_json::from_str(r#"{"method":"plain","tol":1e-4,"max_steps":50}"#).unwrap();
        assert_eq!(
            s,
            Settle::Plain {
                tol: Some(1e-4),
                max_steps: Some(50)
            }
        );
        assert!(serde_json::from_str::<Settle>(r#"{"method":"anderson"}"#).is_err());
        assert!(serde_json::from_str::<Settle>(r#"{"method":"newton","tol":1}"#).is_err());
        assert_eq!(
            serde_json::to_string(&Settle::default()).unwrap(),
            r#"{"method":"plain"}"#
        );
        let bad = Settle::Anderson {
            m: 0,
            beta: 1.0,
            tol: 1e-5,
            max_steps: None,
            reg: 1e-8,
            restart: 10.0,
            start: f32::INFINITY,
        };
        assert!(bad.check().unwrap_err().to_string().contains("m must"));
        assert!(Settle::plain_tol(-1.0).check().is_err());
        let capped_plain = Settle::Plain {
            tol: None,
            max_steps: Some(5),
        };
        let e = capped_plain.check().unwrap_err().to_string();
        assert!(e.contains("caps a settle with a tolerance"), "{e}");
    }

    #[test]
    fn flags_read_back_as_the_settle() {
        let word =
            |s: &Settle, k: &str| s.flags().into_iter().find(|(f, _)| *f == k).map(|(_, v)| v);
        for s in [
            Settle::plain_tol(1e-3),
            Settle::Plain {
                tol: Some(0.05),
                max_steps: Some(40),
            },
            Settle::anderson(1e-5),
        ] {
            let method = word(&s, "settle").unwrap();
            let tol = word(&s, "tol").map(|v| v.parse().unwrap());
            let max = word(&s, "max-steps").map(|v| v.parse().unwrap());
            assert_eq!(Settle::from_flags(&method, tol, max).unwrap(), s);
        }
        assert!(Settle::default().flags().is_empty());
    }

    #[test]
    fn a_settle_of_zero_steps_returns_the_state() {
        use crate::spec::{Loss, ModelSpec};
        let be = sim::Cpu;
        let spec = ModelSpec {
            input: [1, 2, 2],
            conv: vec![],
            fc: vec![3, 2],
            act: Act::MyHardSig,
            softmax: false,
            loss: Loss::Mse,
            t1: 4,
            t2: 2,
            input_norm: None,
        };
        let net = crate::EpNet::init(&be, spec, &sim::Stream::new(1, "init"), None).unwrap();
        let x = be.full(&[2, 1, 2, 2], 0.5).unwrap();
        for s in [Settle::plain_tol(1e-3), Settle::anderson(1e-4)] {
            let r = net.free_phase_with(&be, &x, 0, &s).unwrap();
            assert_eq!((r.steps, r.row_steps), (0, 0));
            assert_eq!(r.sample_steps, vec![None, None]);
            for l in &r.state.layers {
                assert!(l.iter().all(|&v| v == 0.0), "the zero state");
            }
        }
    }

    #[test]
    fn cholesky_solves() {
        let mut a = vec![4.0, 2.0, 2.0, 3.0];
        let mut b = vec![2.0, 1.0];
        let x = solve_spd(&mut a, &mut b, 2).unwrap();
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12, "{x:?}");
        let mut a = vec![1.0, 1.0, 1.0, 1.0];
        let mut b = vec![1.0, 1.0];
        assert!(solve_spd(&mut a, &mut b, 2).is_none());
    }
}
