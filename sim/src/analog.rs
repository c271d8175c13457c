//! The analog (crossbar) read as the engine sees it, independent of any backend: a converter's
//! transfer curve and parameters in f32 ([`Curve`], [`Converter`]; the laws — which bound, step,
//! noise — are `devices::converters`'), noise management's scale ([`noise_management_scale`]), the
//! I/O management of one read direction ([`Io`]), the programmed read of one array in one
//! direction ([`ReadPlan`]: input blocks of normalized weights with their per-read noise
//! variances, the sensed output tiles, the converters), the unrolled geometry of a conv array's
//! reads ([`ConvGeom`]), what a read is ([`ReadKind`]), its prepared deterministic half
//! ([`Prepared`]) and what it counted ([`Tally`]).
//!
//! A backend executes a plan with [`Backend::xbar_read`](crate::Backend::xbar_read) (and, where it
//! keeps the deterministic half of a read of fixed inputs, `xbar_prepare` and
//! `xbar_read_prepared`). The CPU runs the host kernels (`crate::cpu::xbar`, the reference
//! semantics); the GPU backend (`host-gpu`) runs its device kernels; the trait's defaults refuse.

use crate::Stream;
use crate::error::{Error, Result};
use crate::netlist::NoiseManagement;

/// The sub-stream of a read on stream `s` for draws of `what` (`"dac"`, or `"noise"` on
/// `s.child("adc")`) of input block `b`, bound-management round `k`, step `t`: draw `i` of it is the
/// element of flat index `i` (row·n_in + input for the DAC, row·n_out + output before the ADC).
pub fn round_stream(s: &Stream, what: &str, b: usize, k: u32, t: u64) -> Stream {
    let base = s.child(what).sub(b as u64);
    if k == 0 {
        base.sub(t)
    } else {
        base.child("bm").sub(k as u64).sub(t)
    }
}

/// A converter's transfer curve in f32: clip to ±bound, round to the nearest level (levels spaced
/// `step`, 0 a level; halves away from zero). The law — which bound and step a converter part has —
/// is `devices::converters`' (`Dac::curve_f32`, `Adc::curve_f32`); this is its evaluation, without
/// libm calls so that it vectorizes: `x·(1/step)` is within an ulp of `x/step`, so a value within
/// about 1e-5 steps of a midpoint between levels may land on the other neighbour (one level apart)
/// than the f64 evaluation of the law gives; every other value converts identically.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Curve {
    /// Clip bound (±; may be infinite).
    pub bound: f32,
    /// Level spacing (1 without quantization).
    pub step: f32,
    /// 1/step, rounded once from f64.
    pub inv_step: f32,
    /// Whether the curve quantizes (`bits` > 0).
    pub quantize: bool,
}

impl Curve {
    /// The curve clipping to ±`bound` and, with `step` = Some(s), quantizing to the levels k·s
    /// (`None`: clip only). Parameters are rounded to f32 once (1/step from the f64 step).
    pub fn new(bound: f64, step: Option<f64>) -> Self {
        let s = step.unwrap_or(1.0);
        Curve {
            bound: bound as f32,
            step: s as f32,
            inv_step: (1.0 / s) as f32,
            quantize: step.is_some(),
        }
    }

    /// Clip and quantize one value.
    #[inline(always)]
    pub fn convert(&self, x: f32) -> f32 {
        let x = x.max(-self.bound).min(self.bound);
        // Rounded either way and selected, so that loops over it vectorize.
        let v = x * self.inv_step;
        // Round to nearest even (exact for |v| < 2²²; |v| ≤ steps/2 here), then ties away from 0.
        const MAGIC: f32 = 12_582_912.0;
        let r = (v + MAGIC) - MAGIC;
        let r = if (v - r).abs() == 0.5 {
            v + 0.5f32.copysign(v)
        } else {
            r
        };
        // |v| ≤ steps/2 up to rounding (x is clipped to ±bound = ±(steps/2)·step, an integer
        // number of steps below 2²¹), so r is already a level within ±bound: no clamp needed.
        if self.quantize { r * self.step } else { x }
    }
}

/// max_i |xs_i| (0 for an empty or all-zero vector; a NaN is skipped): eight running maxima, so
/// that it vectorizes (max is exact and order-free, so the same value as one sequential pass).
#[inline(always)]
pub fn abs_max(xs: &[f32]) -> f32 {
    let mut l = [0.0f32; 8];
    let c = xs.chunks_exact(8);
    let tail = c.remainder();
    for v in c {
        for k in 0..8 {
            let a = v[k].abs();
            l[k] = if a > l[k] { a } else { l[k] };
        }
    }
    let mut m = 0.0f32;
    for a in l.into_iter().chain(tail.iter().map(|v| v.abs())) {
        m = if a > m { a } else { m };
    }
    m
}

/// The noise-management scale α of one input vector `xs`: 1 for `none`, max|x_i| (capped at
/// `nm_thres` when > 0) for `abs_max` (0 for an all-zero vector), `nm_thres` (or 1 when it is 0)
/// for `constant` (aihwkit's noise management; `devices::converters` documents the law).
#[inline]
pub fn noise_management_scale(nm: NoiseManagement, nm_thres: f64, xs: &[f32]) -> f32 {
    match nm {
        NoiseManagement::None => 1.0,
        NoiseManagement::AbsMax => {
            let m = abs_max(xs);
            if nm_thres > 0.0 {
                m.min(nm_thres as f32)
            } else {
                m
            }
        }
        NoiseManagement::Constant => {
            if nm_thres > 0.0 {
                nm_thres as f32
            } else {
                1.0
            }
        }
    }
}

/// A converter part (DAC or ADC) as the read uses it, with its law's parameters in f32.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Converter {
    /// The converter's transfer curve.
    pub q: Curve,
    /// Std of its Gaussian noise (input-referred for a DAC, before the curve for an ADC).
    pub noise: f32,
    /// The saturation threshold of bound management.
    pub bound: f32,
}

impl Converter {
    /// The converter clipping to ±`bound` (also its saturation threshold), quantizing to the
    /// levels k·`step` (`None`: no quantization), with Gaussian noise of std `noise`.
    pub fn new(bound: f64, step: Option<f64>, noise: f64) -> Self {
        Converter {
            q: Curve::new(bound, step),
            noise: noise as f32,
            bound: bound as f32,
        }
    }

    /// The transparent converter (no clipping, quantization or noise).
    pub fn ideal() -> Self {
        Converter::new(f64::INFINITY, None, 0.0)
    }
}

/// The I/O management of one read direction (from its DAC and ADC parts).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Io {
    /// Noise management of the input vectors.
    pub nm: NoiseManagement,
    /// Its cap (0: none).
    pub nm_thres: f64,
    /// Input reduction of the last read iterative bound management may make (1 = none).
    pub last_r: u64,
}

/// One input block: weights (normalized by the array's abs-max) `w[n_out, hi − lo]` linking the
/// block's inputs to every output of the direction, and the per-read noise variances (same layout).
pub(crate) struct InBlock {
    pub(crate) lo: usize,
    pub(crate) hi: usize,
    pub(crate) w: Vec<f32>,
    pub(crate) s2: Option<Vec<f32>>,
    /// How round 0 evaluates `Σ_k x_k²·s2(o, k)` (exactly detected structure of `s2`).
    pub(crate) var: Var,
}

/// The structure of a block's per-read noise variances `s2[n_out, nb]`, found exactly at
/// construction. Device models give the per-read noise σ of a column (an output of the forward
/// read) independent of the row, so a forward block has every row constant and a transposed block
/// the same row for all outputs of one tile; both need far less than the full second GEMM.
pub(crate) enum Var {
    /// No per-read noise.
    None,
    /// General: the full GEMM with `s2`.
    Full,
    /// `s2(o, k) = c[o]`: the variance is `c[o]·Σ_k x_k²`.
    RowConst(Vec<f32>),
    /// `s2(o, k) = rows[tile(o)][k]` for the output tiles (in `ReadPlan::outs` order): one GEMM
    /// column per tile.
    TileShared(Vec<f32>),
}

impl Var {
    fn of(s2: Option<&[f32]>, n_out: usize, nb: usize, outs: &[(usize, usize)]) -> Var {
        let Some(s2) = s2 else { return Var::None };
        if nb == 0 || n_out == 0 {
            return Var::Full;
        }
        let row = |o: usize| &s2[o * nb..(o + 1) * nb];
        if (0..n_out).all(|o| row(o).iter().all(|&v| v == row(o)[0])) {
            return Var::RowConst((0..n_out).map(|o| row(o)[0]).collect());
        }
        let covered = outs.iter().map(|&(a, b)| b - a).sum::<usize>() == n_out;
        if covered
            && outs
                .iter()
                .all(|&(o0, o1)| (o0..o1).all(|o| row(o) == row(o0)))
        {
            return Var::TileShared(outs.iter().flat_map(|&(o0, _)| row(o0).to_vec()).collect());
        }
        Var::Full
    }
}

/// The programmed read of one array in one direction (a backend's plan for
/// [`Backend::xbar_read`](crate::Backend::xbar_read)): `n_in` inputs cut into blocks, `n_out`
/// outputs sensed in tiles, the converters and the I/O management.
pub struct ReadPlan {
    pub(crate) n_in: usize,
    pub(crate) n_out: usize,
    pub(crate) blocks: Vec<InBlock>,
    pub(crate) outs: Vec<(usize, usize)>,
    pub(crate) dac: Option<Converter>,
    pub(crate) adc: Option<Converter>,
    pub(crate) io: Io,
    pub(crate) backend: std::sync::OnceLock<BackendCopy>,
}

/// A backend's own copy of a [`ReadPlan`] (see [`ReadPlan::backend_slot`]): an owner tag (which
/// device made it) and the backend's data.
pub type BackendCopy = (usize, std::sync::Arc<dyn std::any::Any + Send + Sync>);

/// The deterministic part of a read (given the DAC draws): per input block the scale α of every
/// row (0: an all-zero row that reads exactly zero), the pre-ADC outputs with the σ of their
/// per-read noise, and Σ x² of every row's converted inputs (the cost model's array energy).
pub(crate) struct Pre {
    pub(crate) alpha: Vec<Vec<f32>>,
    pub(crate) y: Vec<Vec<f32>>,
    pub(crate) sd: Vec<Option<Vec<f32>>>,
    pub(crate) ss: Vec<Vec<f32>>,
}

/// What reads counted: vector reads (one input vector on one tile, re-reads included), of them
/// bound-management re-reads, and Σ over those reads of Σ x² of the driven inputs (normalized to
/// the full-scale read voltage) in fixed point ([`SUMSQ_UNIT`] per unit, rounded per read), so
/// that the sums are exact whatever the thread count and the split of the rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub reads: u64,
    pub rereads: u64,
    pub sumsq: u64,
}

/// Fixed-point units of [`Tally::sumsq`] per unit of Σ x².
pub const SUMSQ_UNIT: f64 = 65536.0;

/// One read's Σ x² in [`SUMSQ_UNIT`]s.
#[inline(always)]
pub(crate) fn fixed_sumsq(ss: f64) -> u64 {
    (ss * SUMSQ_UNIT).round() as u64
}

impl std::ops::Add for Tally {
    type Output = Tally;
    /// The sum of two tallies.
    fn add(self, o: Tally) -> Tally {
        Tally {
            reads: self.reads + o.reads,
            rereads: self.rereads + o.rereads,
            sumsq: self.sumsq + o.sumsq,
        }
    }
}

impl ReadPlan {
    /// A direction with `n_in` inputs cut into `ins` blocks and `n_out` outputs sensed in `outs`
    /// ranges; `w(o, k)` is the normalized weight from input `k` to output `o`, `s2(o, k)` the
    /// normalized per-read noise variance (when the device has per-read noise).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        n_in: usize,
        n_out: usize,
        ins: &[(usize, usize)],
        outs: &[(usize, usize)],
        w: impl Fn(usize, usize) -> f32,
        s2: Option<&dyn Fn(usize, usize) -> f32>,
        dac: Option<Converter>,
        adc: Option<Converter>,
        io: Io,
    ) -> Result<Self> {
        if let Some(&(lo, hi)) = ins.iter().find(|&&(lo, hi)| lo > hi || hi > n_in) {
            return Err(Error::param(
                "xbar read plan",
                format!("input block {lo}..{hi} outside 0..{n_in}"),
            ));
        }
        let blocks = ins
            .iter()
            .map(|&(lo, hi)| {
                let nb = hi - lo;
                let mut wb = vec![0.0f32; n_out * nb];
                for o in 0..n_out {
                    for k in lo..hi {
                        wb[o * nb + k - lo] = w(o, k);
                    }
                }
                let s2b = s2.map(|f| {
                    let mut v = vec![0.0f32; n_out * nb];
                    for o in 0..n_out {
                        for k in lo..hi {
                            v[o * nb + k - lo] = f(o, k);
                        }
                    }
                    v
                });
                InBlock {
                    lo,
                    hi,
                    w: wb,
                    var: Var::of(s2b.as_deref(), n_out, nb, outs),
                    s2: s2b,
                }
            })
            .collect();
        // The output tiles partition the outputs (every output is sensed exactly once).
        let mut sensed = vec![0u8; n_out];
        for &(o0, o1) in outs {
            sensed[o0..o1].iter_mut().for_each(|c| *c += 1);
        }
        if let Some(o) = sensed.iter().position(|&c| c != 1) {
            return Err(Error::param(
                "xbar read plan",
                format!("output tiles {outs:?} do not partition 0..{n_out} (output {o})"),
            ));
        }
        Ok(ReadPlan {
            n_in,
            n_out,
            blocks,
            outs: outs.to_vec(),
            dac,
            adc,
            io,
            backend: std::sync::OnceLock::new(),
        })
    }

    /// The ADC's output-noise variance (0 without an ADC).
    pub(crate) fn adc_noise_var(&self) -> f32 {
        self.adc.map_or(0.0, |a| a.noise * a.noise)
    }

    /// Whether the deterministic half ([`Prepared`]) makes random draws (a noisy DAC).
    pub fn pre_is_random(&self) -> bool {
        self.dac.is_some_and(|d| d.noise > 0.0)
    }

    /// Whether a read of `kind` with this plan has a deterministic half to prepare
    /// ([`Backend::xbar_prepare`](crate::Backend::xbar_prepare)): a forward or dense read through a
    /// noise-free DAC.
    pub fn preparable(&self, kind: ReadKind) -> bool {
        !self.pre_is_random() && !matches!(kind, ReadKind::ConvTransposed(_))
    }

    /// Check an input of shape `xs` against what `kind` reads with this plan, and a bias of
    /// shape `bias` against its outputs (forward reads only); returns the number of input vectors.
    pub fn check_read(
        &self,
        xs: &[usize],
        kind: ReadKind,
        bias: Option<&[usize]>,
    ) -> Result<usize> {
        let bad = |what: String| Err(Error::shape("xbar_read", what));
        let rows = match kind {
            ReadKind::Dense => {
                if xs.len() != 2 || xs[1] != self.n_in {
                    return bad(format!(
                        "input {xs:?}, a dense read of {} inputs",
                        self.n_in
                    ));
                }
                xs[0]
            }
            ReadKind::ConvForward(g) => {
                if xs != [g.n, g.c, g.h, g.w] || g.k() != self.n_in {
                    return bad(format!(
                        "input {xs:?}, a conv forward read of [{}, {}, {}, {}] with K = {} ({} inputs)",
                        g.n,
                        g.c,
                        g.h,
                        g.w,
                        g.k(),
                        self.n_in
                    ));
                }
                g.n * g.p()
            }
            ReadKind::ConvTransposed(g) => {
                if xs != [g.n, self.n_in, g.ho, g.wo] || g.k() != self.n_out {
                    return bad(format!(
                        "input {xs:?}, a conv transposed read of [{}, {}, {}, {}] into K = {} ({} outputs)",
                        g.n,
                        self.n_in,
                        g.ho,
                        g.wo,
                        g.k(),
                        self.n_out
                    ));
                }
                g.n * g.p()
            }
        };
        match bias {
            Some(b) if matches!(kind, ReadKind::ConvTransposed(_)) => bad(format!(
                "a transposed conv read takes no bias (given {b:?})"
            )),
            Some(b) if b.iter().product::<usize>() != self.n_out => {
                bad(format!("bias {b:?} for {} outputs", self.n_out))
            }
            _ => Ok(rows),
        }
    }

    /// The shape of the outputs of a read of `rows` vectors as `kind`.
    pub fn out_shape(&self, kind: ReadKind, rows: usize) -> Vec<usize> {
        match kind {
            ReadKind::Dense => vec![rows, self.n_out],
            ReadKind::ConvForward(g) => vec![g.n, self.n_out, g.ho, g.wo],
            ReadKind::ConvTransposed(g) => vec![g.n, g.c, g.h, g.w],
        }
    }

    /// The input blocks `lo..hi` (in block order).
    pub fn input_blocks(&self) -> impl ExactSizeIterator<Item = (usize, usize)> + '_ {
        self.blocks.iter().map(|b| (b.lo, b.hi))
    }
    /// Input block `b`'s range `lo..hi`.
    pub fn input_block(&self, b: usize) -> (usize, usize) {
        (self.blocks[b].lo, self.blocks[b].hi)
    }
    /// Block `b`'s normalized weights `[n_out, hi − lo]` and per-read noise variances (same
    /// layout, when the device has per-read noise).
    pub fn block(&self, b: usize) -> (&[f32], Option<&[f32]>) {
        let blk = &self.blocks[b];
        (&blk.w, blk.s2.as_deref())
    }
    /// The sensed output tiles `o0..o1` (a partition of the outputs).
    pub fn output_tiles(&self) -> &[(usize, usize)] {
        &self.outs
    }
    /// The DAC and the ADC (`None`: none, the values pass as they are).
    pub fn converters(&self) -> (Option<Converter>, Option<Converter>) {
        (self.dac, self.adc)
    }
    /// The I/O management.
    pub fn io(&self) -> Io {
        self.io
    }
    /// A slot where a backend keeps its own copy of the plan (e.g. the weights on a device),
    /// made on the first read and dropped with the plan.
    pub fn backend_slot(&self) -> &std::sync::OnceLock<BackendCopy> {
        &self.backend
    }

    /// Inputs of one vector read.
    pub fn n_in(&self) -> usize {
        self.n_in
    }
    /// Outputs of one vector read.
    pub fn n_out(&self) -> usize {
        self.n_out
    }
}

/// Shapes of a conv array's unrolled reads: the input `[n, c, h, w]`, the kernel, stride and
/// padding, the output grid `ho × wo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    /// Samples.
    pub n: usize,
    /// Input channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride (rows, columns).
    pub stride: (usize, usize),
    /// Zero padding (rows, columns).
    pub pad: (usize, usize),
    /// Output height.
    pub ho: usize,
    /// Output width.
    pub wo: usize,
}

impl ConvGeom {
    /// Patch length K = C·kh·kw (the array's rows, OIHW order).
    pub fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }
    /// Output positions per sample.
    pub fn p(&self) -> usize {
        self.ho * self.wo
    }
}

/// What a crossbar read drives and returns (the plan's `n_in` inputs to its `n_out` outputs, in
/// normalized units times `wmax`):
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadKind {
    /// One vector per sample: `x [N, n_in]` → `[N, n_out]`.
    Dense,
    /// The forward read of a conv array: one K-patch per sample and output position of the NCHW
    /// input `[n, c, h, w]` → the NCHW output `[n, n_out, ho, wo]`.
    ConvForward(ConvGeom),
    /// The transposed read of a conv array: one C_out vector per sample and position of
    /// `[n, n_in, ho, wo]`, each digitized K-vector summed onto the input grid (col2im) →
    /// `[n, c, h, w]`.
    ConvTransposed(ConvGeom),
}

/// The deterministic half of a read of fixed inputs (a noise-free DAC): the input rows, the
/// noise-management scales and the pre-ADC block sums, computed once and finished at every step
/// by [`Backend::xbar_read_prepared`](crate::Backend::xbar_read_prepared). The host kernels keep
/// them on the host; another backend keeps its own copy ([`Prepared::from_backend`]), opaque here.
pub struct Prepared {
    pub(crate) m: usize,
    pub(crate) kind: ReadKind,
    pub(crate) data: PreparedData,
}

/// Where a [`Prepared`] read's data lives.
pub(crate) enum PreparedData {
    /// The host kernels': the input rows `[m, n_in]` and the round-0 results.
    Host { rows: Vec<f32>, pre: Pre },
    /// A backend's own (e.g. device buffers).
    Backend(Box<dyn std::any::Any + Send + Sync>),
}

impl Prepared {
    /// A prepared read of `m` vectors of `kind` whose data a backend keeps itself.
    pub fn from_backend<T: std::any::Any + Send + Sync>(m: usize, kind: ReadKind, data: T) -> Self {
        Prepared {
            m,
            kind,
            data: PreparedData::Backend(Box::new(data)),
        }
    }

    /// The data of a read prepared by [`Prepared::from_backend`] with a `T`, else `None`.
    pub fn backend_data<T: std::any::Any>(&self) -> Option<&T> {
        match &self.data {
            PreparedData::Backend(d) => d.downcast_ref(),
            PreparedData::Host { .. } => None,
        }
    }

    /// The read's kind.
    pub fn kind(&self) -> ReadKind {
        self.kind
    }

    /// The number of input vectors.
    pub fn vectors(&self) -> usize {
        self.m
    }
}
