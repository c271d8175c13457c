//! The EP dynamics, written once over the synapse-read interface.
//!
//! [`SynapseReads`] is what a realization of a network provides (the role of aihwkit's simulator
//! tile): per synapse a **forward read** (P_i(conv_i(s_{i−1})) or W_i s_{i−1} + b_i, with the
//! pooling switches) and a **transposed read** (the feedback term synapse_iᵀ into its source), and
//! per neuron population its **neurons** (the new state from the pre-activation, the argument of σ
//! and its adjoint). Two realizations exist: the digital [`EpNet`] itself (the exact `Backend` ops,
//! ideal neurons; implemented here) and the `netlist:<preset>` substrate
//! (`crate::substrate::Realized`, whose per-query reads choose per synapse between the exact ops
//! and a crossbar read through tiles and converters).
//!
//! [`Dynamics`] (implemented for every [`SynapseReads`], never overridden) is the one definition
//! of: a synchronous step (every layer ← neurons(∂Φ/∂s), the nudge −β ∂ℓ/∂s of the output layer
//! from the digital periphery), relaxation (free and nudged phases, with the first synapse's read of
//! the input done once per phase), the readout, and BPTT through the free phase by a hand-written
//! adjoint of the equations of motion (no tape) with state checkpointing, so that memory grows with
//! √T rather than T. Steps are numbered within a phase (0-based); a noisy realization indexes its
//! per-read draws by that number, so a recomputed step reproduces its noise exactly.
//!
//! BPTT is used for attacks (d loss / d input through T unrolled steps) and for the GDU check (the
//! EP update against the BPTT gradient). Pooling switches are held fixed inside a step (the
//! derivative of argmax is zero almost everywhere), as autograd does. The adjoint of a read is the
//! exact adjoint of the synapse's (programmed) weights: converters are straight-through and
//! additive noises constants; activation derivatives are taken at the argument the neurons saw.

use std::borrow::Cow;

use sim::{Backend, Error, Result};

use crate::model::{EpNet, Forward, Grads, InputRead, State, Target};
use crate::spec::Pool;

/// The reads and neurons of a realized network (see the module doc). Steps `t` are numbered within
/// a phase; an exact realization ignores them.
pub trait SynapseReads<B: Backend> {
    /// What of the first synapse's read of the input one phase computes once.
    type Input;

    /// The network: spec, geometry, and the (programmed) weights of the exact ops and adjoints.
    fn net(&self) -> &EpNet<B>;

    /// The reusable part of the first synapse's read of `x`, for every step of a phase.
    fn read_input(&self, be: &B, x: &B::Tensor) -> Result<Self::Input>;

    /// The first synapse's forward read when `input` holds all of it (shared by every step).
    fn cached_forward<'a>(&self, input: &'a Self::Input) -> Option<&'a Forward<B>>;

    /// Forward read of synapse `i` on its input `inp` at step `t` (bias and pooling included);
    /// `input` is the phase's input read when `i` = 0.
    fn forward(
        &self,
        be: &B,
        inp: &B::Tensor,
        i: usize,
        t: u64,
        input: Option<&Self::Input>,
    ) -> Result<Forward<B>>;

    /// Transposed read of synapse `j` driven by `v` (of the shape of layer j+1, routed through the
    /// pooling switches of `fwd`): the feedback into its source, of shape `input_shape`.
    #[allow(clippy::too_many_arguments)]
    fn transposed(
        &self,
        be: &B,
        v: &B::Tensor,
        fwd: &Forward<B>,
        j: usize,
        input_shape: &[usize],
        t: u64,
    ) -> Result<B::Tensor>;

    /// The new state of population `k` from its pre-activation `a` at step `t`.
    fn neurons(&self, be: &B, k: usize, a: B::Tensor, t: u64) -> Result<B::Tensor>;

    /// The new state of population `k` from its two reads at step `t`: its forward read `fwd`
    /// plus the feedback `fb` (the pre-activation). [`neurons`](Self::neurons) of their sum by
    /// default; a realization may fuse the sum into its neurons (the same values).
    fn neurons_of_sum(
        &self,
        be: &B,
        k: usize,
        fwd: &B::Tensor,
        fb: &B::Tensor,
        t: u64,
    ) -> Result<B::Tensor> {
        self.neurons(be, k, be.add(fwd, fb)?, t)
    }

    /// The argument z of σ the neurons of population `k` see for pre-activation `a` at step `t`
    /// (what [`SynapseReads::neurons_adjoint`] needs). A realization with counters evaluates its
    /// neurons here as in a step, so that recomputed steps count too.
    fn neuron_argument(&self, be: &B, k: usize, a: B::Tensor, t: u64) -> Result<B::Tensor>;

    /// dL/da of population `k` from dL/dy = `g` at argument `z`.
    fn neurons_adjoint(&self, be: &B, k: usize, z: &B::Tensor, g: &B::Tensor) -> Result<B::Tensor>;
}

/// Gradients of a loss of the output after T free-phase steps.
#[derive(Debug)]
pub struct Bptt<B: Backend> {
    /// The loss value returned by the loss function.
    pub loss: f32,
    /// The logits at step T.
    pub logits: B::Tensor,
    /// d loss / d x.
    pub dx: B::Tensor,
    /// d loss / d θ per synapse (None when not requested).
    pub dparams: Option<Grads<B>>,
}

/// The EP dynamics over any [`SynapseReads`] (see the module doc).
pub trait Dynamics<B: Backend>: SynapseReads<B> {
    /// One synchronous step `t` of the dynamics: every layer ← neurons(∂Φ/∂s); `nudge` = (β,
    /// target); `input`: the phase's input read ([`SynapseReads::read_input`]), else read anew.
    fn step_at(
        &self,
        be: &B,
        x: &B::Tensor,
        st: &State<B>,
        t: u64,
        nudge: Option<(f32, &Target<B>)>,
        input: Option<&Self::Input>,
    ) -> Result<State<B>> {
        let (pre, fwds) = step_pre(self, be, x, st, t, nudge, input)?;
        let layers = pre
            .into_iter()
            .enumerate()
            .map(|(k, p)| match p {
                Pre::Sum(fb) => self.neurons_of_sum(be, k, &fwds[k].pre, &fb, t),
                p => self.neurons(be, k, p.total(be, &fwds[k])?, t),
            })
            .collect::<Result<_>>()?;
        Ok(State { layers })
    }

    /// Run `steps` steps (numbered 0..steps) from `st`, optionally nudged by `nudge` = (β, target)
    /// (the nudged phases of EP start from the free fixed point).
    /// Every step is checked for divergence: a NaN or infinity in any layer stops the run with an
    /// error naming the step (1-based, within this call) and the layer. On a backend whose
    /// read-backs stall it ([`Backend::check_every`] > 1) the check runs every few steps, and a
    /// failed check replays the steps since the last good one (the same reads: steps are pure
    /// functions of state and step number) to name the first step that diverged.
    fn relax(
        &self,
        be: &B,
        x: &B::Tensor,
        mut st: State<B>,
        steps: usize,
        nudge: Option<(f32, &Target<B>)>,
    ) -> Result<State<B>> {
        let net = self.net();
        net.check_input(be, x)?;
        let input = self.read_input(be, x)?;
        let mut good = (0, st.clone());
        for t in 0..steps {
            st = self.step_at(be, x, &st, t as u64, nudge, Some(&input))?;
            check_step(self, be, x, &input, nudge, &st, t, steps, &mut good)?;
        }
        Ok(st)
    }

    /// Free phase of `steps` steps from the zero state.
    fn free_phase(&self, be: &B, x: &B::Tensor, steps: usize) -> Result<State<B>> {
        let n = self.net().check_input(be, x)?;
        let st = self.net().zero_state(be, n)?;
        self.relax(be, x, st, steps, None)
    }

    /// Output of the network for a state: the readout synapse's forward read (read number `t`) of
    /// the last layer (softmax models), or the output layer.
    fn logits_at(&self, be: &B, st: &State<B>, t: u64) -> Result<B::Tensor> {
        let net = self.net();
        let last = st.layers.last().expect("at least one layer");
        if !net.spec.softmax {
            return Ok(last.clone());
        }
        let r = net.spec.n_synapses() - 1;
        Ok(self.forward(be, &flat(be, last)?, r, t, None)?.pre)
    }

    /// BPTT through `steps` free-phase steps from the zero state (the readout read as step
    /// `steps`). `loss_grad(logits)` returns the loss and its gradient w.r.t. the logits. States
    /// are checkpointed every `checkpoint_every` steps (0 = ⌈√steps⌉) and recomputed segment by
    /// segment on the way back, with the same step numbers.
    fn free_phase_bptt(
        &self,
        be: &B,
        x: &B::Tensor,
        steps: usize,
        checkpoint_every: usize,
        want_params: bool,
        mut loss_grad: impl FnMut(&B::Tensor) -> Result<(f32, B::Tensor)>,
    ) -> Result<Bptt<B>> {
        let net = self.net();
        let n_batch = net.check_input(be, x)?;
        let c = if checkpoint_every == 0 {
            ((steps as f64).sqrt().ceil() as usize).max(1)
        } else {
            checkpoint_every
        };
        let mut ckpts = Vec::new();
        let mut st = net.zero_state(be, n_batch)?;
        let input = self.read_input(be, x)?;
        let mut good = (0, st.clone());
        for t in 0..steps {
            if t % c == 0 {
                ckpts.push(st.clone());
            }
            st = self.step_at(be, x, &st, t as u64, None, Some(&input))?;
            check_step(self, be, x, &input, None, &st, t, steps, &mut good)?;
        }
        let ns = net.spec.n_synapses();
        let mut dw: Vec<Option<B::Tensor>> = vec![None; ns];
        let mut db: Vec<Option<B::Tensor>> = vec![None; ns];
        let (loss, logits, mut g) = readout_loss(
            self,
            be,
            &st,
            steps as u64,
            &mut loss_grad,
            "bptt",
            want_params.then_some((&mut dw, &mut db)),
        )?;
        let mut dx: Option<B::Tensor> = None;
        for (j, ck) in ckpts.iter().enumerate().rev() {
            let t0 = j * c;
            let t1 = (t0 + c).min(steps);
            let mut seg = vec![ck.clone()];
            for t in t0..t1 - 1 {
                let s = seg.last().expect("segment");
                let next = self.step_at(be, x, s, t as u64, None, Some(&input))?;
                seg.push(next);
            }
            for (k, s) in seg.iter().enumerate().rev() {
                g = step_adjoint(
                    self,
                    be,
                    x,
                    &input,
                    s,
                    (t0 + k) as u64,
                    &g,
                    &mut dx,
                    want_params.then_some((&mut dw, &mut db)),
                )?;
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
}

/// Per-synapse parameter gradients being accumulated (None: zero so far).
pub(crate) type GradSlots<'a, B> = (
    &'a mut Vec<Option<<B as Backend>::Tensor>>,
    &'a mut Vec<Option<<B as Backend>::Tensor>>,
);

/// The loss of the readout at state `st` (read number `t`) and the start of its adjoint: (loss,
/// logits, dL/ds per layer: only the last is non-zero), with the readout synapse's parameter
/// gradients (softmax models) into `params` when asked. `what` names the caller in errors.
#[allow(clippy::type_complexity)]
pub(crate) fn readout_loss<B: Backend, R: SynapseReads<B> + ?Sized>(
    r: &R,
    be: &B,
    st: &State<B>,
    t: u64,
    loss_grad: &mut impl FnMut(&B::Tensor) -> Result<(f32, B::Tensor)>,
    what: &'static str,
    params: Option<GradSlots<'_, B>>,
) -> Result<(f32, B::Tensor, Vec<Option<B::Tensor>>)> {
    let net = r.net();
    let logits = r.logits_at(be, st, t)?;
    let (loss, dlogits) = loss_grad(&logits)?;
    if be.shape(&dlogits) != be.shape(&logits) {
        return Err(Error::shape(
            what,
            format!(
                "loss gradient {:?} does not match logits {:?}",
                be.shape(&dlogits),
                be.shape(&logits)
            ),
        ));
    }
    let n = st.layers.len();
    let mut g: Vec<Option<B::Tensor>> = vec![None; n];
    if net.spec.softmax {
        let r = net.spec.n_synapses() - 1;
        let last = &st.layers[n - 1];
        let back = be.linear_input_grad(&dlogits, &net.weights[r])?;
        g[n - 1] = Some(be.reshape(&back, &be.shape(last))?);
        if let Some((dw, db)) = params {
            dw[r] = Some(be.linear_weight_grad(&flat(be, last)?, &dlogits)?);
            db[r] = Some(be.sum_except(&dlogits, 1)?);
        }
    } else {
        g[n - 1] = Some(dlogits);
    }
    Ok((loss, logits, g))
}

/// The [`Bptt`] of accumulated gradients (zeros where nothing was accumulated).
#[allow(clippy::type_complexity)]
pub(crate) fn finish_bptt<B: Backend>(
    net: &EpNet<B>,
    be: &B,
    x: &B::Tensor,
    loss: f32,
    logits: B::Tensor,
    dx: Option<B::Tensor>,
    params: Option<(Vec<Option<B::Tensor>>, Vec<Option<B::Tensor>>)>,
) -> Result<Bptt<B>> {
    let dx = match dx {
        Some(d) => d,
        None => be.zeros(&be.shape(x))?,
    };
    let dparams = match params {
        Some((dw, db)) => {
            let mut out = Vec::with_capacity(dw.len());
            for (i, (w, b)) in dw.into_iter().zip(db).enumerate() {
                let ws = &net.geom.weight_shapes[i];
                out.push((
                    w.map_or_else(|| be.zeros(ws), Ok)?,
                    b.map_or_else(|| be.zeros(&ws[..1]), Ok)?,
                ));
            }
            Some(out)
        }
        None => None,
    };
    Ok(Bptt {
        loss,
        logits,
        dx,
        dparams,
    })
}

impl<B: Backend, R: SynapseReads<B> + ?Sized> Dynamics<B> for R {}

/// The divergence check after step `t` (0-based) of a loop of `steps` that reached `st`: on
/// every [`Backend::check_every`]-th step and the last. A failed check replays the steps from the
/// last good state `good` (updated here) to name the first step that diverged.
#[allow(clippy::too_many_arguments)]
fn check_step<B: Backend, R: SynapseReads<B> + ?Sized>(
    r: &R,
    be: &B,
    x: &B::Tensor,
    input: &R::Input,
    nudge: Option<(f32, &Target<B>)>,
    st: &State<B>,
    t: usize,
    steps: usize,
    good: &mut (usize, State<B>),
) -> Result<()> {
    let net = r.net();
    let every = be.check_every().max(1);
    if !(t + 1).is_multiple_of(every) && t + 1 != steps {
        return Ok(());
    }
    if every == 1 {
        // Checked at every step: this is the first bad one, and no state needs keeping (on the
        // CPU a kept state would be a full copy per step).
        return net.check_state(be, st, t + 1);
    }
    if let Err(e) = net.check_state(be, st, t + 1) {
        let mut s = good.1.clone();
        for u in good.0..t {
            s = r.step_at(be, x, &s, u as u64, nudge, Some(input))?;
            net.check_state(be, &s, u + 1)?;
        }
        return Err(e);
    }
    *good = (t + 1, st.clone());
    Ok(())
}

fn acc<B: Backend>(be: &B, slot: &mut Option<B::Tensor>, v: B::Tensor) -> Result<()> {
    *slot = Some(match slot.take() {
        None => v,
        Some(a) => be.add(&a, &v)?,
    });
    Ok(())
}

fn flat<B: Backend>(be: &B, t: &B::Tensor) -> Result<B::Tensor> {
    let s = be.shape(t);
    if s.len() == 2 {
        Ok(t.clone())
    } else {
        be.reshape(t, &[s[0], s[1..].iter().product()])
    }
}

/// Population k's pre-activation as [`step_pre`] leaves it: the forward read of synapse k plus
/// the feedback, the forward read alone (the last population), or computed in full (the last
/// population, nudged).
enum Pre<T> {
    Sum(T),
    Fwd,
    Full(T),
}

impl<T: Clone> Pre<T> {
    /// The pre-activation, given population k's forward read.
    fn total<B: Backend<Tensor = T>>(self, be: &B, fwd: &Forward<B>) -> Result<T> {
        match self {
            Pre::Sum(fb) => be.add(&fwd.pre, &fb),
            Pre::Fwd => Ok(fwd.pre.clone()),
            Pre::Full(a) => Ok(a),
        }
    }
}

/// Pre-activations of one synchronous step `t` (every a_k = ∂Φ/∂s_k at `st`, read through `r`),
/// with the forward reads they came from (the input read borrowed from `input` when it holds it).
#[allow(clippy::type_complexity)]
fn step_pre<'a, B: Backend, R: SynapseReads<B> + ?Sized>(
    r: &R,
    be: &B,
    x: &B::Tensor,
    st: &State<B>,
    t: u64,
    nudge: Option<(f32, &Target<B>)>,
    input: Option<&'a R::Input>,
) -> Result<(Vec<Pre<B::Tensor>>, Vec<Cow<'a, Forward<B>>>)> {
    let net = r.net();
    let n = st.layers.len();
    let mut fwds: Vec<Cow<'a, Forward<B>>> = Vec::with_capacity(n);
    for i in 0..n {
        // The input read is shared by every step of a phase: borrowed, not copied.
        if i == 0
            && let Some(f) = input.and_then(|inp| r.cached_forward(inp))
        {
            fwds.push(Cow::Borrowed(f));
            continue;
        }
        let inp = net.syn_input(be, x, st, i)?;
        let cached = if i == 0 { input } else { None };
        fwds.push(Cow::Owned(r.forward(be, &inp, i, t, cached)?));
    }
    let mut pre = Vec::with_capacity(n);
    for k in 0..n {
        if k + 1 < n {
            let shape = be.shape(&st.layers[k]);
            let fb = r.transposed(be, &st.layers[k + 1], &fwds[k + 1], k + 1, &shape, t)?;
            pre.push(Pre::Sum(fb));
        } else if let Some((beta, target)) = nudge
            && beta != 0.0
        {
            // The nudge of the digital periphery (for a softmax readout from the readout's
            // programmed weights; the readout is not read for it).
            let d = net.nudge_direction(be, st, target)?;
            pre.push(Pre::Full(be.axpy(beta, &d, &fwds[k].pre)?));
        } else {
            pre.push(Pre::Fwd);
        }
    }
    Ok((pre, fwds))
}

/// Adjoint of one free step `t` s → s' at state `s`: given ḡ = dL/ds' (None = zero), returns dL/ds,
/// adds dL/dx into `dx` and, when asked, dL/dθ into `params`. The step is recomputed through `r`
/// (the same reads, noise and pooling switches as on the way forward).
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
pub(crate) fn step_adjoint<B: Backend, R: SynapseReads<B> + ?Sized>(
    r: &R,
    be: &B,
    x: &B::Tensor,
    input: &R::Input,
    s: &State<B>,
    t: u64,
    gbar: &[Option<B::Tensor>],
    dx: &mut Option<B::Tensor>,
    mut params: Option<GradSlots<'_, B>>,
) -> Result<Vec<Option<B::Tensor>>> {
    let net = r.net();
    let n = s.layers.len();
    let (pre, fwds) = step_pre(r, be, x, s, t, None, Some(input))?;
    // ā_k = ḡ_k ⊙ σ'(z_k)
    let mut abar: Vec<Option<B::Tensor>> = Vec::with_capacity(n);
    for (k, p) in pre.into_iter().enumerate() {
        let z = r.neuron_argument(be, k, p.total(be, &fwds[k])?, t)?;
        abar.push(match &gbar[k] {
            None => None,
            Some(gk) => Some(r.neurons_adjoint(be, k, &z, gk)?),
        });
    }
    let mut out: Vec<Option<B::Tensor>> = vec![None; n];
    for i in 0..n {
        let Some(a) = &abar[i] else { continue };
        // Forward term of a_i: F_i(in_i), in_i = x (i = 0) or s_{i−1}.
        let in_shape = if i == 0 {
            be.shape(x)
        } else {
            be.shape(&s.layers[i - 1])
        };
        let d_in = net.feedback(be, a, &fwds[i], i, &in_shape)?;
        if i == 0 {
            acc(be, dx, d_in)?;
        } else {
            acc(be, &mut out[i - 1], d_in)?;
        }
        if let Some((dw, db)) = params.as_mut() {
            let inp = net.syn_input(be, x, s, i)?;
            if i < net.n_conv() {
                let u = net.pool_adjoint(be, a, &fwds[i], i)?;
                let k = net.spec.conv[i].kernel;
                acc(
                    be,
                    &mut dw[i],
                    be.conv2d_weight_grad(&inp, &u, (k, k), net.conv_params(i))?,
                )?;
                acc(be, &mut db[i], be.sum_except(&u, 1)?)?;
            } else {
                acc(be, &mut dw[i], be.linear_weight_grad(&inp, a)?)?;
                acc(be, &mut db[i], be.sum_except(a, 1)?)?;
            }
        }
        // Feedback term of a_i: B_{i+1}(s_{i+1}) = synapse_{i+1}ᵀ applied to s_{i+1}.
        if i + 1 < n {
            let j = i + 1;
            if j < net.n_conv() {
                let z = be.conv2d(a, &net.weights[j], None, net.conv_params(j))?;
                let gathered = match net.spec.conv[j].pool {
                    Pool::Max => {
                        be.pool_gather(&z, fwds[j].idx.as_ref().expect("max pool indices"))?
                    }
                    Pool::Avg => be.avg_pool2d(&z, net.spec.conv[j].pool.params().expect("avg"))?,
                    Pool::Identity => z,
                };
                acc(be, &mut out[j], gathered)?;
                if let Some((dw, _)) = params.as_mut() {
                    let u = net.pool_adjoint(be, &s.layers[j], &fwds[j], j)?;
                    let k = net.spec.conv[j].kernel;
                    acc(
                        be,
                        &mut dw[j],
                        be.conv2d_weight_grad(a, &u, (k, k), net.conv_params(j))?,
                    )?;
                }
            } else {
                let fa = flat(be, a)?;
                acc(be, &mut out[j], be.linear(&fa, &net.weights[j], None)?)?;
                if let Some((dw, _)) = params.as_mut() {
                    acc(be, &mut dw[j], be.linear_weight_grad(&fa, &s.layers[j])?)?;
                }
            }
        }
    }
    Ok(out)
}

/// The digital network is its own realization: exact reads (the `Backend` ops on its weights) and
/// ideal neurons (σ, or linear for a cross-entropy output layer without softmax readout).
impl<B: Backend> SynapseReads<B> for EpNet<B> {
    type Input = InputRead<B>;

    fn net(&self) -> &EpNet<B> {
        self
    }

    fn read_input(&self, be: &B, x: &B::Tensor) -> Result<InputRead<B>> {
        EpNet::read_input(self, be, x)
    }

    fn cached_forward<'a>(&self, input: &'a InputRead<B>) -> Option<&'a Forward<B>> {
        Some(&input.0)
    }

    fn forward(
        &self,
        be: &B,
        inp: &B::Tensor,
        i: usize,
        _t: u64,
        _input: Option<&InputRead<B>>,
    ) -> Result<Forward<B>> {
        EpNet::forward(self, be, inp, i)
    }

    fn transposed(
        &self,
        be: &B,
        v: &B::Tensor,
        fwd: &Forward<B>,
        j: usize,
        input_shape: &[usize],
        _t: u64,
    ) -> Result<B::Tensor> {
        self.feedback(be, v, fwd, j, input_shape)
    }

    fn neurons(&self, be: &B, k: usize, a: B::Tensor, _t: u64) -> Result<B::Tensor> {
        if self.layer_is_linear(k, self.geom.layer_shapes.len()) {
            Ok(a)
        } else {
            be.map(&a, self.spec.act)
        }
    }

    fn neurons_of_sum(
        &self,
        be: &B,
        k: usize,
        fwd: &B::Tensor,
        fb: &B::Tensor,
        _t: u64,
    ) -> Result<B::Tensor> {
        if self.layer_is_linear(k, self.geom.layer_shapes.len()) {
            be.add(fwd, fb)
        } else {
            // One pass on a backend that fuses it (the GPU), the same values as add then map.
            be.add_map(fwd, fb, self.spec.act)
        }
    }

    fn neuron_argument(&self, _be: &B, _k: usize, a: B::Tensor, _t: u64) -> Result<B::Tensor> {
        Ok(a)
    }

    fn neurons_adjoint(&self, be: &B, k: usize, z: &B::Tensor, g: &B::Tensor) -> Result<B::Tensor> {
        if self.layer_is_linear(k, self.geom.layer_shapes.len()) {
            Ok(g.clone())
        } else {
            be.map_grad(z, g, self.spec.act)
        }
    }
}

impl<B: Backend> EpNet<B> {
    /// One synchronous step of the dynamics: every layer ← σ(∂Φ/∂s). `nudge` = (β, target).
    pub fn step(
        &self,
        be: &B,
        x: &B::Tensor,
        st: &State<B>,
        nudge: Option<(f32, &Target<B>)>,
    ) -> Result<State<B>> {
        self.step_at(be, x, st, 0, nudge, None)
    }

    /// `step` with the input read precomputed by [`EpNet::read_input`].
    pub fn step_with(
        &self,
        be: &B,
        x: &B::Tensor,
        st: &State<B>,
        nudge: Option<(f32, &Target<B>)>,
        input: Option<&InputRead<B>>,
    ) -> Result<State<B>> {
        self.step_at(be, x, st, 0, nudge, input)
    }

    /// Output of the network for a state: the readout logits (softmax models) or the output layer
    /// ([`Dynamics::logits_at`] on the exact reads).
    pub fn logits(&self, be: &B, st: &State<B>) -> Result<B::Tensor> {
        self.logits_at(be, st, 0)
    }

    /// Free phase of `steps` steps from the zero state ([`Dynamics::free_phase`] on the exact
    /// reads, callable without the trait in scope).
    pub fn free_phase(&self, be: &B, x: &B::Tensor, steps: usize) -> Result<State<B>> {
        Dynamics::free_phase(self, be, x, steps)
    }
}
