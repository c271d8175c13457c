//! Settling a phase to its fixed point: plain iteration of the EP step (the default, bit-identical
//! to [`Dynamics::relax`]), plain iteration with convergence-aware stopping, and Anderson
//! acceleration of the fixed-point map s ← F(s) (one synchronous EP step).
//!
//! **Stopping.** A settle with a tolerance stops after the first step k whose change
//! max|F(s_k) − s_k| is below `tol` for every sample of the batch (the max over all layers and
//! neurons of that sample), or after `max_steps` (else the `steps` argument) steps. The per-sample
//! maxima are composed from `Backend` ops (a `sub`, and a max pooling whose window is a whole
//! sample of a reshaped `[N, 1, 1, rest]` tensor, of the change and of its negation) and read back
//! as one `[N]` vector per layer per check; whole states are never downloaded. The batch runs until
//! its slowest sample converges (converged samples keep iterating, which only refines them); the
//! step at which each sample first met the tolerance is reported in [`Settled::sample_steps`].
//! The state returned is always F(s_k) of the last evaluated step, so it lies in σ's range.
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
//! **Gradients.** BPTT differentiates through the steps actually taken: through an accelerated or
//! early-stopped settle that is not the gradient of anything well defined (the history mixing is
//! not differentiated, and the step count depends on the input). [`free_phase_bptt_with`] refuses
//! every settle but plain iteration without a tolerance; the implicit-function (equilibrium)
//! gradient is not implemented. The EP update needs no BPTT: at the Anderson equilibrium it keeps
//! the GDU property (checked in the tests).

use serde::{Deserialize, Serialize};
use sim::{Act, Backend, Error, Pool2dParams, Result};

use crate::dynamics::{Bptt, Dynamics};
use crate::model::{State, Target};

/// How a phase settles (serde: `{"settle": "plain"}`, `{"settle": "anderson", "tol": 1e-5}`, with
/// optional `max_steps`, and for Anderson `m`, `beta`, `reg`, `restart`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "settle", rename_all = "snake_case", deny_unknown_fields)]
pub enum Settle {
    /// Plain iteration s ← F(s). Without `tol`: exactly the requested steps, bit-identical to
    /// [`Dynamics::relax`]; with `tol`: stop when every sample's change is below it.
    Plain {
        /// Max-abs change per sample below which the batch stops.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tol: Option<f32>,
        /// Cap on the steps (else the caller's step count).
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

    /// Whether this is plain iteration of a fixed number of steps (the one BPTT supports).
    pub fn is_fixed_plain(&self) -> bool {
        matches!(self, Settle::Plain { tol: None, .. })
    }

    fn check(&self) -> Result<()> {
        let bad = |d: String| Err(Error::param("settle", d));
        match *self {
            Settle::Plain { tol: Some(t), .. } if !(t > 0.0 && t.is_finite()) => {
                bad(format!("tol must be a positive number, got {t}"))
            }
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
    /// The largest per-sample max-abs change of the last step (`None` without a tolerance).
    pub residual: Option<f32>,
}

impl<B: Backend> Settled<B> {
    /// Whether every sample met the tolerance.
    pub fn converged(&self) -> bool {
        self.sample_steps.iter().all(Option::is_some) && !self.sample_steps.is_empty()
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

/// `[N, rest]` view of a layer.
fn rows<B: Backend>(be: &B, t: &B::Tensor) -> Result<(usize, usize, B::Tensor)> {
    let s = be.shape(t);
    let n = s[0];
    let rest: usize = s[1..].iter().product();
    Ok((n, rest, be.reshape(t, &[n, 1, 1, rest])?))
}

/// Per sample, max |a − b| over every layer: one `[N]` read-back per layer.
pub fn sample_max_abs_diff<B: Backend>(be: &B, a: &State<B>, b: &State<B>) -> Result<Vec<f32>> {
    let mut out: Vec<f32> = Vec::new();
    for (la, lb) in a.layers.iter().zip(&b.layers) {
        let d = be.sub(la, lb)?;
        let (n, rest, d4) = rows(be, &d)?;
        let p = Pool2dParams {
            kernel: (1, rest),
            stride: (1, rest),
        };
        let (mx, _) = be.max_pool2d(&d4, p)?;
        let (mn, _) = be.max_pool2d(&be.scale(&d4, -1.0)?, p)?;
        let mx = be.download(&mx)?;
        let mn = be.download(&mn)?;
        if out.is_empty() {
            out = vec![0.0; n];
        }
        for (o, (&x, &y)) in out.iter_mut().zip(mx.iter().zip(mn.iter())) {
            // A NaN propagates (f32::max would drop it).
            *o = if x.is_nan() || y.is_nan() || o.is_nan() {
                f32::NAN
            } else {
                o.max(x).max(y)
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
        match *settle {
            Settle::Plain {
                tol: None,
                max_steps,
            } => {
                let steps = max_steps.unwrap_or(steps);
                let state = self.relax(be, x, st, steps, nudge)?;
                Ok(Settled {
                    state,
                    steps,
                    sample_steps: vec![None; n],
                    residual: None,
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

/// BPTT through a free phase settled with `settle`: only plain iteration of a fixed number of
/// steps is supported (then it is [`Dynamics::free_phase_bptt`]); any other settle is an error,
/// since differentiating the steps of an accelerated or early-stopped settle is not a gradient
/// of the equilibrium (the implicit-function gradient is not implemented).
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
        Settle::Plain {
            tol: None,
            max_steps,
        } => r.free_phase_bptt(
            be,
            x,
            max_steps.unwrap_or(steps),
            checkpoint_every,
            want_params,
            loss_grad,
        ),
        other => Err(Error::param(
            "bptt",
            format!(
                "BPTT through a settle other than plain iteration of a fixed number of steps is \
                 not supported (got {other:?}): the steps of an accelerated or early-stopped \
                 settle do not differentiate to the equilibrium gradient, and the \
                 implicit-function gradient is not implemented; use settle = \"plain\" without tol"
            ),
        )),
    }
}

/// Record the per-sample convergence of step `k` (1-based) and whether all samples converged.
fn record(res: &[f32], tol: f32, k: usize, sample_steps: &mut [Option<usize>]) -> Result<bool> {
    let mut all = true;
    for (i, &r) in res.iter().enumerate() {
        if !r.is_finite() {
            return Err(Error::NonFinite {
                what: format!("EP settle, step {k}, sample {i}"),
                detail: "the state diverged (NaN/Inf); check the input, the weights, the learning \
                         rates and the settle's parameters"
                    .into(),
            });
        }
        if r < tol {
            sample_steps[i].get_or_insert(k);
        } else {
            all = false;
        }
    }
    Ok(all)
}

#[allow(clippy::too_many_arguments)]
fn plain_tol<B: Backend, R: Dynamics<B> + ?Sized>(
    r: &R,
    be: &B,
    x: &B::Tensor,
    mut st: State<B>,
    cap: usize,
    nudge: Option<(f32, &Target<B>)>,
    tol: f32,
    n: usize,
) -> Result<Settled<B>> {
    let input = r.read_input(be, x)?;
    let mut sample_steps = vec![None; n];
    let mut residual = None;
    let mut steps = 0;
    for t in 0..cap {
        let next = r.step_at(be, x, &st, t as u64, nudge, Some(&input))?;
        let res = sample_max_abs_diff(be, &next, &st)?;
        st = next;
        steps = t + 1;
        residual = Some(res.iter().fold(0f32, |m, &v| m.max(v)));
        if record(&res, tol, steps, &mut sample_steps)? {
            break;
        }
    }
    Ok(Settled {
        state: st,
        steps,
        sample_steps,
        residual,
    })
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
    let input = r.read_input(be, x)?;
    let n_layers = st.layers.len();
    let shapes: Vec<Vec<usize>> = st.layers.iter().map(|l| be.shape(l)).collect();
    let ranges: Vec<Option<(f32, f32)>> = (0..n_layers)
        .map(|k| {
            if net.layer_is_linear(k, n_layers) {
                None
            } else {
                act_range(net.spec.act)
            }
        })
        .collect();
    // History (oldest first) of per-layer [N, 1, rest] differences ΔF and ΔG.
    let mut dfs: Vec<Vec<B::Tensor>> = Vec::new();
    let mut dgs: Vec<Vec<B::Tensor>> = Vec::new();
    // Per sample: the history it may use (a restart empties a sample's history by zeroing its γ
    // for the entries older than the restart).
    let mut first_valid = vec![0usize; n];
    let mut n_pushed = 0usize; // history entries pushed so far (global index of the next one)
    let mut best = vec![f32::INFINITY; n];
    let mut prev: Option<Pair<B>> = None; // (f, g) flat at k − 1
    let mut sample_steps = vec![None; n];
    let mut s = st;
    let mut g_state = s.clone();
    let mut residual = None;
    let mut steps = 0;
    for k in 0..cap {
        g_state = r.step_at(be, x, &s, k as u64, nudge, Some(&input))?;
        let res = sample_max_abs_diff(be, &g_state, &s)?;
        steps = k + 1;
        residual = Some(res.iter().fold(0f32, |m, &v| m.max(v)));
        if record(&res, p.tol, steps, &mut sample_steps)? || k + 1 == cap {
            break;
        }
        let g = flat3(be, &g_state)?;
        let sf = flat3(be, &s)?;
        let f: Vec<B::Tensor> = g
            .iter()
            .zip(&sf)
            .map(|(a, b)| be.sub(a, b))
            .collect::<Result<_>>()?;
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
        for i in 0..n {
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
            let mut gamma = vec![0f32; n * h];
            for i in 0..n {
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
            let gam = be.upload(&sim::tensor(&[n, 1, h], gamma)?)?;
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
    }
    Ok(Settled {
        state: g_state,
        steps,
        sample_steps,
        residual,
    })
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
        let s: Settle = serde_json::from_str(r#"{"settle":"anderson","tol":1e-5}"#).unwrap();
        assert_eq!(s, Settle::anderson(1e-5));
        let s: Settle = serde_json::from_str(r#"{"settle":"plain"}"#).unwrap();
        assert_eq!(s, Settle::default());
        let s: Settle =
            serde_json::from_str(r#"{"settle":"plain","tol":1e-4,"max_steps":50}"#).unwrap();
        assert_eq!(
            s,
            Settle::Plain {
                tol: Some(1e-4),
                max_steps: Some(50)
            }
        );
        assert!(serde_json::from_str::<Settle>(r#"{"settle":"anderson"}"#).is_err());
        assert!(serde_json::from_str::<Settle>(r#"{"settle":"newton","tol":1}"#).is_err());
        assert_eq!(
            serde_json::to_string(&Settle::default()).unwrap(),
            r#"{"settle":"plain"}"#
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
