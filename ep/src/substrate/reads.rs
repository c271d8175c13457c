//! The reads of a realized netlist (see the parent module doc): per query (read-noise stream) the
//! realization as [`SynapseReads`] ([`QueryReads`]), whose synapses take the exact ops or the
//! crossbar read (`Backend::xbar_read` of their `sim::analog::ReadPlan`: tiles, converters, noise
//! and bound management, IR-drop response) and whose populations take their neurons (gain/offset
//! spreads, noise, spiking read-out); the cached first read of the input; and the per-query entry
//! points of the one [`Dynamics`].

use std::sync::atomic::{AtomicU64, Ordering};

use sim::analog::{ConvGeom, Prepared, ReadKind, Tally};
use sim::{Act, Backend, Result, Stream};

use super::{Realized, SynapseRead};
use crate::dynamics::{Dynamics, SynapseReads};
use crate::model::{EpNet, Forward, State};
use crate::spec::Pool;
use devices::IntegrateFire;

/// The reusable part of the first array's read of the input in one phase (the
/// [`SynapseReads::Input`] of [`QueryReads`]).
pub struct InputCache<B: Backend>(Cached<B>);

enum Cached<B: Backend> {
    None,
    Digital(Forward<B>),
    Prepared(Box<Prepared>),
}

/// Apply `f(flat index, value)` on the host, in parallel (every value depends on its index only,
/// so the result does not depend on the thread count).
fn host_map<B: Backend>(
    be: &B,
    t: &B::Tensor,
    f: impl Fn(usize, f32) -> f32 + Sync,
) -> Result<B::Tensor> {
    use rayon::prelude::*;
    let h = be.host(t)?;
    let v: Vec<f32> = h
        .as_slice()
        .expect("standard layout")
        .par_iter()
        .enumerate()
        .map(|(i, &v)| f(i, v))
        .collect();
    be.upload_owned(sim::tensor(h.shape(), v)?)
}

impl<B: Backend> Realized<B> {
    /// Conv geometry of array `i`'s reads on an input of shape `xs` (`[N, C, H, W]`).
    fn conv_geom(&self, i: usize, xs: &[usize]) -> ConvGeom {
        let net = &self.net;
        let l = &net.spec.conv[i];
        let p = net.conv_params(i);
        let (ho, wo) = net.geom.conv_out_hw[i];
        ConvGeom {
            n: xs[0],
            c: xs[1],
            h: xs[2],
            w: xs[3],
            kh: l.kernel,
            kw: l.kernel,
            stride: p.stride,
            pad: p.padding,
            ho,
            wo,
        }
    }

    /// What array `i`'s forward read of an input of shape `xs` unrolls: one K-patch per sample
    /// and position of a conv array, one vector per sample of a dense one.
    fn forward_kind(&self, i: usize, xs: &[usize]) -> ReadKind {
        if i < self.net.spec.conv.len() {
            ReadKind::ConvForward(self.conv_geom(i, xs))
        } else {
            ReadKind::Dense
        }
    }

    /// Count the vector reads of `tally` (re-reads and Σ x² with them) of array `i`, forward or
    /// transposed.
    fn count(&self, i: usize, transposed: bool, tally: Tally) {
        self.reads.fetch_add(tally.reads, Ordering::Relaxed);
        self.rereads.fetch_add(tally.rereads, Ordering::Relaxed);
        let k = if transposed { 2 } else { 0 };
        let c = &self.arrays[i].counts;
        c[k].fetch_add(tally.reads, Ordering::Relaxed);
        c[k + 1].fetch_add(tally.rereads, Ordering::Relaxed);
        c[4 + k / 2].fetch_add(tally.sumsq, Ordering::Relaxed);
    }

    /// Forward read of array `i` on its input (pre-pooling sum + bias, then pooling). `cached`:
    /// the deterministic part of this read, when prepared ([`Realized::input_read`]).
    fn read_forward(
        &self,
        be: &B,
        inp: &B::Tensor,
        i: usize,
        q: &Stream,
        t: u64,
        cached: Option<&Prepared>,
    ) -> Result<Forward<B>> {
        let a = &self.arrays[i];
        let net = &self.net;
        let SynapseRead::Crossbar { fwd: plan, .. } = &a.read else {
            return net.forward(be, inp, i);
        };
        let s = q.child(&format!("{}.forward", a.name));
        let bias = Some(&net.biases[i]);
        let (z, tally) = match cached {
            Some(p) => be.xbar_read_prepared(plan, p, a.wmax, bias, &s, t)?,
            None => {
                let kind = self.forward_kind(i, &be.shape(inp));
                be.xbar_read(plan, inp, kind, a.wmax, bias, &s, t)?
            }
        };
        self.count(i, false, tally);
        if i < net.spec.conv.len() {
            self.pool_forward(be, z, i)
        } else {
            Ok(Forward { pre: z, idx: None })
        }
    }

    /// The pooling of conv array `i`'s forward read `z`.
    fn pool_forward(&self, be: &B, z: B::Tensor, i: usize) -> Result<Forward<B>> {
        let pool = self.net.spec.conv[i].pool;
        Ok(match pool {
            Pool::Max => {
                let (y, idx) = be.max_pool2d(&z, pool.params().expect("max pool"))?;
                Forward {
                    pre: y,
                    idx: Some(idx),
                }
            }
            Pool::Avg => Forward {
                pre: be.avg_pool2d(&z, pool.params().expect("avg pool"))?,
                idx: None,
            },
            Pool::Identity => Forward { pre: z, idx: None },
        })
    }

    /// Transposed read of array `j` driven by state `v` of its destination (the feedback term into
    /// its source, of shape `input_shape`): for a conv array every output position's C_out vector
    /// (of the pooled-back state) is read on its own and its K-vector digitized, then the patch
    /// vectors are summed onto the input grid (col2im).
    #[allow(clippy::too_many_arguments)]
    fn read_transposed(
        &self,
        be: &B,
        v: &B::Tensor,
        fwd: &Forward<B>,
        j: usize,
        input_shape: &[usize],
        q: &Stream,
        t: u64,
    ) -> Result<B::Tensor> {
        let a = &self.arrays[j];
        let net = &self.net;
        let SynapseRead::Crossbar { bwd: plan, .. } = &a.read else {
            return net.feedback(be, v, fwd, j, input_shape);
        };
        let s = q.child(&format!("{}.transposed", a.name));
        if j < net.spec.conv.len() {
            // Every output position's C_out vector of the pooled-back state read on its own,
            // summed onto the input grid (already of `input_shape`).
            let pa = net.pool_adjoint(be, v, fwd, j)?;
            let kind = ReadKind::ConvTransposed(self.conv_geom(j, input_shape));
            let (gx, tally) = be.xbar_read(plan, &pa, kind, a.wmax, None, &s, t)?;
            self.count(j, true, tally);
            Ok(gx)
        } else {
            // A dense array's transposed read feeds its source's layout (e.g. a conv state).
            let (gx, tally) = be.xbar_read(plan, v, ReadKind::Dense, a.wmax, None, &s, t)?;
            self.count(j, true, tally);
            be.reshape(&gx, input_shape)
        }
    }

    /// Neurons of population `k` on pre-activations `a`: (new state, argument z of σ).
    fn neurons(
        &self,
        be: &B,
        k: usize,
        a: B::Tensor,
        q: &Stream,
        t: u64,
    ) -> Result<(B::Tensor, B::Tensor)> {
        let nr = &self.neurons[k];
        if nr.ideal() {
            let y = if nr.act == Act::Identity {
                a.clone()
            } else {
                be.map(&a, nr.act)?
            };
            return Ok((y, a));
        }
        let slope = match nr.act {
            Act::MyHardSig => 0.5,
            _ => 1.0,
        };
        let ns = q.child(&format!("neurons{k}")).sub(t);
        let per = be.shape(&a)[1..].iter().product::<usize>().max(1);
        let exact_z = nr.gain.is_none() && nr.offset.is_none() && nr.noise_std == 0.0;
        let z = if exact_z {
            a
        } else {
            host_map(be, &a, |i, v| {
                let j = i % per;
                let g = nr.gain.as_ref().map_or(1.0, |g| g[j]);
                let o = nr.offset.as_ref().map_or(0.0, |o| o[j]);
                let n = if nr.noise_std > 0.0 {
                    nr.noise_std / slope * ns.normal(i as u64)
                } else {
                    0.0
                };
                g * (v + o) + n
            })?
        };
        let y = if let Some((sp, (s, b))) = &nr.spiking {
            self.spike(be, &nr.spikes, sp, (*s, *b), &z, &ns.child("phase"))?
        } else if nr.act == Act::Identity {
            z.clone()
        } else {
            be.map(&z, nr.act)?
        };
        Ok((y, z))
    }

    /// Rate outputs of spiking neurons on arguments `z` (current `s·z + b` per tick; element `i`
    /// starts from draw `i` of `phase`), adding the spikes fired to `counter`.
    fn spike(
        &self,
        be: &B,
        counter: &AtomicU64,
        sp: &IntegrateFire,
        (s, b): (f64, f64),
        z: &B::Tensor,
        phase: &Stream,
    ) -> Result<B::Tensor> {
        use rayon::prelude::*;
        let mut h = be.download(z)?;
        let n: u64 = h
            .as_slice_mut()
            .expect("standard layout")
            .par_iter_mut()
            .enumerate()
            .map(|(i, v)| {
                let k = sp.spikes(s * *v as f64 + b, sp.initial_potential(phase, i as u64));
                *v = sp.rate(k);
                k as u64
            })
            .sum();
        counter.fetch_add(n, Ordering::Relaxed);
        be.upload_owned(h)
    }

    /// What of the first array's read of the input `x` is the same at every step of a query: the
    /// whole read of an exact array; for a converter array, what the backend prepares (with a
    /// noise-free DAC, `ReadPlan::preparable`: the patch rows, the noise-management scales and the
    /// pre-ADC block sums; only the per-read, ADC and bound-management draws differ between steps).
    fn input_read(&self, be: &B, x: &B::Tensor, q: &Stream) -> Result<InputCache<B>> {
        let a = &self.arrays[0];
        match &a.read {
            SynapseRead::Exact => Ok(InputCache(Cached::Digital(self.net.read_input(be, x)?.0))),
            SynapseRead::Crossbar { fwd: plan, .. } => {
                let empty = State { layers: vec![] };
                let inp = self.net.syn_input(be, x, &empty, 0)?;
                let s = q.child(&format!("{}.forward", a.name));
                let kind = self.forward_kind(0, &be.shape(&inp));
                Ok(InputCache(match be.xbar_prepare(plan, &inp, kind, &s)? {
                    Some(p) => Cached::Prepared(Box::new(p)),
                    None => Cached::None,
                }))
            }
        }
    }

    /// The reads of query stream `q` (see [`Realized::query_stream`]): the realization as
    /// [`SynapseReads`], so that the one [`Dynamics`] (steps, relaxation, nudged phases, BPTT)
    /// runs on it. Nudged phases of on-substrate EP use their own streams.
    pub fn reads(&self, q: Stream) -> QueryReads<'_, B> {
        QueryReads { real: self, q }
    }

    /// The reads of query `query` (its read-noise stream [`Realized::query_stream`]).
    pub fn query(&self, query: u64) -> QueryReads<'_, B> {
        self.reads(self.query_stream(query))
    }

    /// One synchronous step `t` (0-based) of query stream `q` (see [`Realized::query_stream`]).
    pub fn step(
        &self,
        be: &B,
        x: &B::Tensor,
        st: &State<B>,
        q: &Stream,
        t: u64,
    ) -> Result<State<B>> {
        self.reads(*q).step_at(be, x, st, t, None, None)
    }

    /// Free phase of `steps` steps from the zero state for query `query`.
    pub fn free_phase(&self, be: &B, x: &B::Tensor, steps: usize, query: u64) -> Result<State<B>> {
        self.query(query).free_phase(be, x, steps)
    }

    /// Logits of a state: the readout array's read (through its converters) or the output layer.
    /// `t` numbers the read (the free phase uses `steps`).
    pub fn logits(&self, be: &B, st: &State<B>, query: u64, t: u64) -> Result<B::Tensor> {
        self.query(query).logits_at(be, st, t)
    }

    /// dL/da of population `k` from dL/dy = `g` at the argument `z` its neurons saw.
    fn neurons_adjoint(&self, be: &B, k: usize, z: &B::Tensor, g: &B::Tensor) -> Result<B::Tensor> {
        let nr = &self.neurons[k];
        let d = if nr.act == Act::Identity {
            g.clone()
        } else {
            be.map_grad(z, g, nr.act)?
        };
        // Spiking: σ' is the straight-through surrogate of the rate (slope 1/θ).
        let d = match &nr.spiking {
            Some((sp, _)) if sp.threshold != 1.0 => be.scale(&d, (1.0 / sp.threshold) as f32)?,
            _ => d,
        };
        match &nr.gain {
            None => Ok(d),
            Some(gain) => {
                let per = gain.len();
                host_map(be, &d, |i, v| v * gain[i % per])
            }
        }
    }
}

/// A realization's reads under one read-noise stream (one query, or one nudged phase): the
/// [`SynapseReads`] of the `netlist:<preset>` substrate (see the module doc).
pub struct QueryReads<'a, B: Backend> {
    real: &'a Realized<B>,
    q: Stream,
}

impl<B: Backend> SynapseReads<B> for QueryReads<'_, B> {
    type Input = InputCache<B>;

    fn net(&self) -> &EpNet<B> {
        &self.real.net
    }

    fn read_input(&self, be: &B, x: &B::Tensor) -> Result<InputCache<B>> {
        self.real.input_read(be, x, &self.q)
    }

    fn cached_forward<'a>(&self, input: &'a InputCache<B>) -> Option<&'a Forward<B>> {
        match &input.0 {
            Cached::Digital(f) => Some(f),
            _ => None,
        }
    }

    fn forward(
        &self,
        be: &B,
        inp: &B::Tensor,
        i: usize,
        t: u64,
        input: Option<&InputCache<B>>,
    ) -> Result<Forward<B>> {
        let cached = match input.map(|c| &c.0) {
            Some(Cached::Prepared(p)) => Some(&**p),
            _ => None,
        };
        self.real.read_forward(be, inp, i, &self.q, t, cached)
    }

    fn transposed(
        &self,
        be: &B,
        v: &B::Tensor,
        fwd: &Forward<B>,
        j: usize,
        input_shape: &[usize],
        t: u64,
    ) -> Result<B::Tensor> {
        self.real
            .read_transposed(be, v, fwd, j, input_shape, &self.q, t)
    }

    fn neurons(&self, be: &B, k: usize, a: B::Tensor, t: u64) -> Result<B::Tensor> {
        Ok(self.real.neurons(be, k, a, &self.q, t)?.0)
    }

    fn neuron_argument(&self, be: &B, k: usize, a: B::Tensor, t: u64) -> Result<B::Tensor> {
        Ok(self.real.neurons(be, k, a, &self.q, t)?.1)
    }

    fn neurons_adjoint(&self, be: &B, k: usize, z: &B::Tensor, g: &B::Tensor) -> Result<B::Tensor> {
        self.real.neurons_adjoint(be, k, z, g)
    }
}
