//! Host kernels of the converter-bearing crossbar reads (see the parent module doc).
//!
//! A read in one direction is a matrix of input vectors `X[M, n_in]`: one row per conv output
//! position of one sample (the K = C_in·kh·kw patch for a forward read, the C_out vector for a
//! transposed one) or per sample for a dense array. The inputs are cut into blocks (the tiles' row
//! ranges forward, their column ranges transposed) and the outputs into the tiles' sensed ranges.
//! For every row and input block: noise management scale α of the row's block slice, DAC on
//! `x/α`, the block GEMM on its slice only, per-read conductance noise, then per output tile the
//! ADC (with its noise) and the bound-management test; a saturated (row, block, tile) vector is
//! re-read alone with its input divided by r = 2, 4, … The converted values times α·r are summed
//! over the blocks in block order. Rows are processed in fixed chunks of [`CHUNK`] in parallel and
//! every draw is indexed by (row, element), so the result does not depend on the thread count.
//!
//! Conv reads use [`Dir::read_groups`]: one group per sample, read in runs of at most [`CHUNK`]
//! positions whose input rows are built on the fly (im2row of the run, or the gather of its C_out
//! vectors from the NCHW state) and whose outputs go, while in cache, straight into the sample's
//! NCHW output (with bias) or onto its input grid (col2im), so that no `[N·P, K]` array is built.
//!
//! The read is split in [`Dir::pre`] (DAC and GEMMs: deterministic when the DAC is noise-free,
//! which lets the first array's read of the input be cached per query) and [`Dir::finish`] (noise,
//! ADC, bound management, block sum).
//!
//! Files by role: this one holds the read's parts (converters, input blocks, per-read noise
//! structure, buffers) and its deterministic half ([`Dir::new`], [`Dir::pre`]); `finish` the noisy
//! half (noise, ADC, bound management) and the whole and grouped reads; `layout` the conv reads'
//! data layout (im2row, row2im, NCHW ↔ rows); the element kernels (portable and AVX2) are `sim::cpu::analog`'s.

use devices::converters::noise_management_scale;
use devices::{Adc, Dac, NoiseManagement};
use rayon::prelude::*;
use sim::Stream;
use sim::cpu::analog::{Curve, Noise, adc_tile, dac_slice, dot};
use sim::cpu::{Gemm, Par, sgemm_par};

use super::Io;

mod finish;
mod layout;
pub(super) use layout::{ConvGeom, nchw_to_rows_part, rows_to_chw_part};

/// Rows of `X` per parallel work item (fixed, so results do not depend on the thread count).
const CHUNK: usize = 128;

/// A converter part as the read uses it.
#[derive(Debug, Clone, Copy)]
struct Conv {
    /// The converter's transfer curve (parameters from `devices::converters`).
    q: Curve,
    noise: f32,
    /// The saturation threshold of bound management (as f32).
    bound: f32,
}

impl Conv {
    fn dac(d: &Dac) -> Self {
        Conv {
            q: d.curve_f32(),
            noise: d.noise_std as f32,
            bound: d.bound as f32,
        }
    }
    fn adc(a: &Adc) -> Self {
        Conv {
            q: a.curve_f32(),
            noise: a.noise_std as f32,
            bound: a.bound as f32,
        }
    }
}

/// One input block: weights (normalized by the array's abs-max) `w[n_out, hi − lo]` linking the
/// block's inputs to every output of the direction, and the per-read noise variances (same layout).
struct InBlock {
    lo: usize,
    hi: usize,
    w: Vec<f32>,
    s2: Option<Vec<f32>>,
    /// How round 0 evaluates `Σ_k x_k²·s2(o, k)` (exactly detected structure of `s2`).
    var: Var,
}

/// The structure of a block's per-read noise variances `s2[n_out, nb]`, found exactly at
/// construction. Device models give the per-read noise σ of a column (an output of the forward
/// read) independent of the row, so a forward block has every row constant and a transposed block
/// the same row for all outputs of one tile; both need far less than the full second GEMM.
enum Var {
    /// No per-read noise.
    None,
    /// General: the full GEMM with `s2`.
    Full,
    /// `s2(o, k) = c[o]`: the variance is `c[o]·Σ_k x_k²`.
    RowConst(Vec<f32>),
    /// `s2(o, k) = rows[tile(o)][k]` for the output tiles (in `Dir::outs` order): one GEMM
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

/// What [`Dir::read_groups`] hands each run's outputs to: `(i0, acc, og)`.
pub(super) type Sink<'a> = dyn Fn(usize, &[f32], &mut [f32]) + Sync + 'a;

/// Where the input rows of [`Dir::read_groups`] come from.
#[derive(Clone, Copy)]
pub(super) enum Rows<'a> {
    /// All rows `[m, n_in]`.
    All(&'a [f32]),
    /// `f(r0, buf)` writes rows `r0..r0 + buf.len() / n_in` into `buf` (e.g. im2row of a run of
    /// conv positions), so the full row matrix is never built.
    Fill(&'a (dyn Fn(usize, &mut [f32]) + Sync)),
}

/// One read direction of one array.
pub(super) struct Dir {
    pub(super) n_in: usize,
    pub(super) n_out: usize,
    blocks: Vec<InBlock>,
    outs: Vec<(usize, usize)>,
    dac: Option<Conv>,
    adc: Option<Conv>,
    io: Io,
}

/// The deterministic part of a read (given the DAC draws): per input block the scale α of every
/// row (0: an all-zero row that reads exactly zero), the pre-ADC outputs with the σ of their
/// per-read noise, and Σ x² of every row's converted inputs (the cost model's array energy).
pub(super) struct Pre {
    alpha: Vec<Vec<f32>>,
    y: Vec<Vec<f32>>,
    sd: Vec<Option<Vec<f32>>>,
    ss: Vec<Vec<f32>>,
}

/// What reads counted: vector reads (one input vector on one tile, re-reads included), of them
/// bound-management re-reads, and Σ over those reads of Σ x² of the driven inputs (normalized to
/// the full-scale read voltage) in fixed point ([`SUMSQ_UNIT`] per unit, rounded per read), so
/// that the sums are exact whatever the thread count and the split of the rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(in crate::substrate) struct Tally {
    pub reads: u64,
    pub rereads: u64,
    pub sumsq: u64,
}

/// Fixed-point units of [`Tally::sumsq`] per unit of Σ x².
pub(in crate::substrate) const SUMSQ_UNIT: f64 = 65536.0;

/// One read's Σ x² in [`SUMSQ_UNIT`]s.
#[inline(always)]
fn fixed_sumsq(ss: f64) -> u64 {
    (ss * SUMSQ_UNIT).round() as u64
}

impl Tally {
    /// The sum of two tallies.
    pub(in crate::substrate) fn add(self, o: Tally) -> Tally {
        Tally {
            reads: self.reads + o.reads,
            rereads: self.rereads + o.rereads,
            sumsq: self.sumsq + o.sumsq,
        }
    }
}

/// What one chunk of [`Dir::pre`] reads.
#[derive(Clone, Copy)]
struct PreCtx<'a> {
    blk: &'a InBlock,
    /// The chunk's rows (row `j` is row `r0 + j` of the read).
    x: &'a [f32],
    r0: usize,
    ns: &'a Stream,
}

/// What one chunk of [`Dir::finish`] reads.
#[derive(Clone, Copy)]
struct ChunkCtx<'a> {
    pre: Option<&'a Pre>,
    /// The chunk's rows (row `j` is row `r0 + j` of the read).
    x: &'a [f32],
    r0: usize,
    s: &'a Stream,
    t: u64,
    /// Per block: the stream of the Gaussian before the ADC (read noise and ADC noise).
    noise_s: &'a [Stream],
    dac_s: &'a [Stream],
}

thread_local! {
    /// Per-thread pool of scratch buffers of the chunk kernels.
    static BUFS: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A scratch buffer (a view of the first `len` elements of a pooled vector that keeps its full
/// length, so that reuse never zeroes memory again).
struct Buf {
    v: Vec<f32>,
    len: usize,
}

impl Buf {
    fn empty() -> Self {
        Buf {
            v: Vec::new(),
            len: 0,
        }
    }
}

impl std::ops::Deref for Buf {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.v[..self.len]
    }
}

impl std::ops::DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.v[..self.len]
    }
}

/// A scratch buffer of `len` elements with unspecified contents (the kernels write every element
/// they read first), from the thread's pool: the smallest pooled vector that is long enough, else
/// one grown to `len`.
fn take_buf(len: usize) -> Buf {
    let mut v = BUFS.with(|p| {
        let mut p = p.borrow_mut();
        let best = (0..p.len())
            .filter(|&i| p[i].len() >= len)
            .min_by_key(|&i| p[i].len());
        match best {
            Some(i) => p.swap_remove(i),
            None => p.pop().unwrap_or_default(),
        }
    });
    if v.len() < len {
        v.resize(len, 0.0);
    }
    Buf { v, len }
}

/// Return a scratch buffer to the thread's pool.
fn give_buf(b: Buf) {
    if b.v.capacity() > 0 {
        BUFS.with(|p| p.borrow_mut().push(b.v));
    }
}

/// A sub-stream for draws of `what` of input block `b`, bound-management round `k`, step `t`.
fn round_stream(s: &Stream, what: &str, b: usize, k: u32, t: u64) -> Stream {
    let base = s.child(what).sub(b as u64);
    if k == 0 {
        base.sub(t)
    } else {
        base.child("bm").sub(k as u64).sub(t)
    }
}

impl Dir {
    /// A direction with `n_in` inputs cut into `ins` blocks and `n_out` outputs sensed in `outs`
    /// ranges; `w(o, k)` is the normalized weight from input `k` to output `o`, `s2(o, k)` the
    /// normalized per-read noise variance (when the device has per-read noise).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        n_in: usize,
        n_out: usize,
        ins: &[(usize, usize)],
        outs: &[(usize, usize)],
        w: impl Fn(usize, usize) -> f32,
        s2: Option<&dyn Fn(usize, usize) -> f32>,
        dac: Option<&Dac>,
        adc: Option<&Adc>,
        io: Io,
    ) -> Self {
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
        assert!(
            sensed.iter().all(|&c| c == 1),
            "output tiles {outs:?} do not partition 0..{n_out}"
        );
        Dir {
            n_in,
            n_out,
            blocks,
            outs: outs.to_vec(),
            dac: dac.map(Conv::dac),
            adc: adc.map(Conv::adc),
            io,
        }
    }

    /// The ADC's output-noise variance (0 without an ADC).
    fn adc_noise_var(&self) -> f32 {
        self.adc.map_or(0.0, |a| a.noise * a.noise)
    }

    /// Whether [`Dir::pre`] makes random draws (a noisy DAC).
    pub(super) fn pre_is_random(&self) -> bool {
        self.dac.is_some_and(|d| d.noise > 0.0)
    }

    /// `xs` (one row's block slice) divided by `scale` through the DAC into `out`; the DAC noise of
    /// element `j` is draw `base + j` of `ns`.
    #[inline(always)]
    fn dac_row(&self, xs: &[f32], scale: f32, ns: &Stream, base: u64, out: &mut [f32]) {
        match &self.dac {
            None => {
                if scale == 1.0 {
                    out.copy_from_slice(xs);
                } else {
                    out.iter_mut().zip(xs).for_each(|(o, &v)| *o = v / scale);
                }
            }
            Some(d) if d.noise > 0.0 => {
                ns.fill_normal_fast(base, out);
                dac_slice(xs, scale, d.noise, out, &d.q);
            }
            Some(d) => dac_slice(xs, scale, 0.0, out, &d.q),
        }
    }

    /// The noise-management scale of one row's block slice (0: an all-zero vector that reads
    /// exactly zero, aihwkit's short cut, only with a noise-free DAC).
    #[inline(always)]
    fn nm_scale(&self, xs: &[f32]) -> f32 {
        if self.io.nm == NoiseManagement::None {
            return 1.0;
        }
        let v = noise_management_scale(self.io.nm, self.io.nm_thres, xs);
        if v > 0.0 {
            v
        } else if self.pre_is_random() {
            1.0
        } else {
            0.0
        }
    }

    /// DAC and block GEMMs of round 0 for the `m` rows of `x` (`[m, n_in]`) at step `t`.
    pub(super) fn pre(&self, x: &[f32], m: usize, s: &Stream, t: u64) -> Pre {
        debug_assert_eq!(x.len(), m * self.n_in);
        let n_out = self.n_out;
        let mut pre = Pre {
            alpha: Vec::new(),
            y: Vec::new(),
            sd: Vec::new(),
            ss: Vec::new(),
        };
        for (b, blk) in self.blocks.iter().enumerate() {
            let ns = round_stream(s, "dac", b, 0, t);
            let mut alpha = vec![1.0f32; m];
            let mut ss = vec![0.0f32; m];
            let mut y = vec![0.0f32; m * n_out];
            let mut sd = blk.s2.as_ref().map(|_| vec![0.0f32; m * n_out]);
            let step = CHUNK * n_out.max(1);
            let run = |c: usize,
                       (al, ssc): (&mut [f32], &mut [f32]),
                       yc: &mut [f32],
                       sdc: Option<&mut [f32]>| {
                let r0 = c * CHUNK;
                let ctx = PreCtx {
                    blk,
                    x: &x[r0 * self.n_in..(r0 + al.len()) * self.n_in],
                    r0,
                    ns: &ns,
                };
                #[cfg(target_arch = "x86_64")]
                if sim::simd::has_avx2_fma() {
                    // SAFETY: the CPU supports AVX2 and FMA (checked at run time).
                    unsafe { self.pre_chunk_avx2(&ctx, (al, ssc), yc, sdc) };
                    return;
                }
                self.pre_chunk(&ctx, (al, ssc), yc, sdc)
            };
            let heads = alpha.par_chunks_mut(CHUNK).zip(ss.par_chunks_mut(CHUNK));
            match &mut sd {
                None => heads
                    .zip(y.par_chunks_mut(step))
                    .enumerate()
                    .for_each(|(c, (h, yc))| run(c, h, yc, None)),
                Some(sd) => heads
                    .zip(y.par_chunks_mut(step).zip(sd.par_chunks_mut(step)))
                    .enumerate()
                    .for_each(|(c, (h, (yc, sdc)))| run(c, h, yc, Some(sdc))),
            }
            pre.alpha.push(alpha);
            pre.ss.push(ss);
            pre.y.push(y);
            pre.sd.push(sd);
        }
        pre
    }

    /// [`Dir::pre_chunk`] compiled for AVX2 (same operations, same bits).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn pre_chunk_avx2(
        &self,
        ctx: &PreCtx<'_>,
        heads: (&mut [f32], &mut [f32]),
        yc: &mut [f32],
        sdc: Option<&mut [f32]>,
    ) {
        self.pre_chunk(ctx, heads, yc, sdc)
    }

    /// [`Dir::pre`] of one block on the rows `r0..r0 + al.len()`: scales into `al` and Σ x² of
    /// the converted inputs into `ssc` (rows read only), pre-ADC sums into `yc` (zero rows
    /// untouched), read-noise σ into `sdc`.
    #[inline(always)]
    fn pre_chunk(
        &self,
        ctx: &PreCtx<'_>,
        (al, ssc): (&mut [f32], &mut [f32]),
        yc: &mut [f32],
        sdc: Option<&mut [f32]>,
    ) {
        let PreCtx { blk, x, r0, ns } = *ctx;
        let (n_in, n_out) = (self.n_in, self.n_out);
        let (lo, hi) = (blk.lo, blk.hi);
        let nb = hi - lo;
        for (j, a) in al.iter_mut().enumerate() {
            *a = self.nm_scale(&x[j * n_in + lo..j * n_in + hi]);
        }
        let rows: Vec<usize> = (0..al.len()).filter(|&j| al[j] != 0.0).collect();
        let na = rows.len();
        if na == 0 || nb == 0 || n_out == 0 {
            return;
        }
        let mut xq = take_buf(na * nb);
        for (i, &j) in rows.iter().enumerate() {
            let r = r0 + j;
            let xr = &mut xq[i * nb..(i + 1) * nb];
            self.dac_row(
                &x[j * n_in + lo..j * n_in + hi],
                al[j],
                ns,
                (r * n_in + lo) as u64,
                xr,
            );
            ssc[j] = dot(xr, xr);
        }
        let g = Gemm {
            m: na,
            n: n_out,
            k: nb,
            trans_a: false,
            trans_b: true,
        };
        let dense = na * n_out == yc.len();
        let mut out =
            if dense && matches!(blk.var, Var::None | Var::RowConst(_) | Var::TileShared(_)) {
                Buf::empty()
            } else {
                take_buf(na * n_out)
            };
        if dense {
            sgemm_par(g, 1.0, &xq, &blk.w, 0.0, yc, Par::Seq).expect("block GEMM sizes");
        } else {
            sgemm_par(g, 1.0, &xq, &blk.w, 0.0, &mut out, Par::Seq).expect("block GEMM sizes");
            for (i, &j) in rows.iter().enumerate() {
                yc[j * n_out..(j + 1) * n_out].copy_from_slice(&out[i * n_out..(i + 1) * n_out]);
            }
        }
        if let (Some(s2), Some(sdc)) = (&blk.s2, sdc) {
            // σ of the total Gaussian noise before the ADC: the per-read noise and the ADC's own
            // noise are independent and add, so one draw of σ = √(var + σ_adc²) has their law.
            let n2 = self.adc_noise_var();
            match &blk.var {
                Var::RowConst(c) => {
                    // The row's Σ x², computed above for the cost tally.
                    for &j in &rows {
                        let ss = ssc[j];
                        for (o, c) in sdc[j * n_out..(j + 1) * n_out].iter_mut().zip(c) {
                            *o = ((c * ss).max(0.0) + n2).sqrt();
                        }
                    }
                }
                Var::TileShared(tr) => {
                    let nt = self.outs.len();
                    xq.iter_mut().for_each(|v| *v *= *v);
                    let gt = Gemm { n: nt, ..g };
                    let mut vt = take_buf(na * nt);
                    sgemm_par(gt, 1.0, &xq, tr, 0.0, &mut vt, Par::Seq).expect("block GEMM sizes");
                    for (i, &j) in rows.iter().enumerate() {
                        let sr = &mut sdc[j * n_out..(j + 1) * n_out];
                        for (ti, &(o0, o1)) in self.outs.iter().enumerate() {
                            sr[o0..o1].fill((vt[i * nt + ti].max(0.0) + n2).sqrt());
                        }
                    }
                    give_buf(vt);
                }
                _ => {
                    xq.iter_mut().for_each(|v| *v *= *v);
                    sgemm_par(g, 1.0, &xq, s2, 0.0, &mut out, Par::Seq).expect("block GEMM sizes");
                    for (i, &j) in rows.iter().enumerate() {
                        for (o, v) in sdc[j * n_out..(j + 1) * n_out]
                            .iter_mut()
                            .zip(&out[i * n_out..(i + 1) * n_out])
                        {
                            *o = (v.max(0.0) + n2).sqrt();
                        }
                    }
                }
            }
        }
        give_buf(xq);
        give_buf(out);
    }
}

/// A zeroed vector of `n` floats, written by all threads (the step's large read outputs: a serial
/// `memset` of them cost ≈ 3 % of a converter-bearing run).
pub(super) fn zeros(n: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(n);
    v.par_extend(rayon::iter::repeat_n(0.0f32, n));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The structured evaluations of the per-read noise σ (row-constant and tile-shared
    /// variances) are detected and give σ = sqrt(Σ_k x_k²·s2(o, k)) as the full evaluation does.
    #[test]
    fn per_read_sigma_structures_match_the_definition() {
        let st = Stream::new(4, "var");
        let (n_in, n_out, m) = (11, 7, 5);
        let ins = [(0, 6), (6, 11)];
        let outs = [(0, 3), (3, 7)];
        let tile = |o: usize| usize::from(o >= 3);
        let row_const = |o: usize, _k: usize| 0.1 + o as f32 * 0.03;
        let shared = |o: usize, k: usize| 0.05 + (tile(o) * 13 + k) as f32 * 0.01;
        let general = |o: usize, k: usize| 0.02 + ((o * 7 + k * 3) % 5) as f32 * 0.02;
        let x: Vec<f32> = (0..(m * n_in) as u64).map(|i| st.normal(i)).collect();
        let io = Io {
            nm: NoiseManagement::None,
            nm_thres: 0.0,
            last_r: 1,
        };
        type F<'a> = dyn Fn(usize, usize) -> f32 + 'a;
        let cases: [(&F<'_>, &str); 3] =
            [(&row_const, "row"), (&shared, "tile"), (&general, "full")];
        for (f, kind) in cases {
            let d = Dir::new(
                n_in,
                n_out,
                &ins,
                &outs,
                |_, _| 0.5,
                Some(f),
                None,
                None,
                io,
            );
            for blk in &d.blocks {
                let got = match blk.var {
                    Var::RowConst(_) => "row",
                    Var::TileShared(_) => "tile",
                    Var::Full => "full",
                    Var::None => "none",
                };
                assert_eq!(got, kind);
            }
            let pre = d.pre(&x, m, &st, 0);
            for (b, blk) in d.blocks.iter().enumerate() {
                let sd = pre.sd[b].as_ref().expect("σ computed");
                for r in 0..m {
                    for o in 0..n_out {
                        let v: f64 = (blk.lo..blk.hi)
                            .map(|k| (x[r * n_in + k] as f64).powi(2) * f(o, k) as f64)
                            .sum();
                        let (g, w) = (sd[r * n_out + o] as f64, v.sqrt());
                        assert!(
                            (g - w).abs() <= 1e-5 * w,
                            "{kind} b{b} r{r} o{o}: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }

    /// The Gaussian before the ADC carries the per-read noise and the ADC noise together: over many
    /// reads of one vector, an output's mean is its ideal value and its variance the sum
    /// Σ_k x_k²·s2(o, k) + σ_adc² (each term alone, then both; 5-σ bounds on the sample moments).
    #[test]
    fn noise_before_the_adc_has_the_summed_variance() {
        let (n_in, n_out, m) = (16, 3, 40_000);
        let x: Vec<f32> = (0..m * n_in)
            .map(|i| 0.5 + (i % n_in) as f32 * 0.05)
            .collect();
        let xs = &x[..n_in];
        let io = Io {
            nm: NoiseManagement::None,
            nm_thres: 0.0,
            last_r: 1,
        };
        let w = |o: usize, k: usize| 0.1 * (o + 1) as f32 - 0.01 * k as f32;
        let s2 = |o: usize, k: usize| 0.002 * (o + 1) as f32 + 0.0005 * k as f32;
        for (read, sa) in [(true, 0.0), (false, 0.3), (true, 0.3)] {
            let adc = Adc {
                noise_std: sa,
                ..Adc::ideal()
            };
            let d = Dir::new(
                n_in,
                n_out,
                &[(0, n_in)],
                &[(0, n_out)],
                w,
                read.then_some(&s2 as &dyn Fn(usize, usize) -> f32),
                None,
                Some(&adc),
                io,
            );
            let (y, _) = d.read(&x, m, &Stream::new(9, "sum"), 0);
            for o in 0..n_out {
                let mean: f64 = (0..n_in).map(|k| (w(o, k) * xs[k]) as f64).sum();
                let mut var = sa * sa;
                if read {
                    var += (0..n_in)
                        .map(|k| (xs[k] * xs[k] * s2(o, k)) as f64)
                        .sum::<f64>();
                }
                let vals: Vec<f64> = (0..m).map(|r| y[r * n_out + o] as f64).collect();
                let mf = m as f64;
                let em = vals.iter().sum::<f64>() / mf;
                let ev = vals.iter().map(|v| (v - em).powi(2)).sum::<f64>() / (mf - 1.0);
                let case = format!("read {read}, σ_adc {sa}, output {o}");
                assert!(
                    (em - mean).abs() < 5.0 * (var / mf).sqrt(),
                    "{case}: mean {em} vs {mean}"
                );
                assert!(
                    (ev - var).abs() < 5.0 * var * (2.0 / mf).sqrt(),
                    "{case}: variance {ev} vs {var}"
                );
            }
        }
    }

    /// The tally of a read counts every (row, block, tile) vector read with the Σ x² of the row's
    /// block slice as the DAC drives it (after noise management), in the whole read, the grouped
    /// read and the prepared one alike; a re-read adds its own reduced inputs.
    #[test]
    fn the_tally_counts_the_squared_inputs_of_every_tile_read() {
        let (n_in, n_out, m) = (11, 7, 300);
        let ins = [(0, 6), (6, 11)];
        let outs = [(0, 3), (3, 7)];
        let st = Stream::new(5, "tally");
        let x: Vec<f32> = (0..(m * n_in) as u64).map(|i| st.normal(i)).collect();
        let w = |o: usize, k: usize| 0.02 * (o as f32 - 3.0) + 0.01 * k as f32;
        for nm in [NoiseManagement::None, NoiseManagement::AbsMax] {
            let io = Io {
                nm,
                nm_thres: 0.0,
                last_r: 1,
            };
            let d = Dir::new(
                n_in,
                n_out,
                &ins,
                &outs,
                w,
                None,
                None,
                Some(&Adc::ideal()),
                io,
            );
            let mut want = 0.0f64;
            for r in 0..m {
                for &(lo, hi) in &ins {
                    let xs = &x[r * n_in + lo..r * n_in + hi];
                    let a = noise_management_scale(nm, 0.0, xs);
                    let ss: f64 = xs.iter().map(|v| f64::from(v / a).powi(2)).sum();
                    want += ss * outs.len() as f64;
                }
            }
            let s = Stream::new(1, "r");
            let (_, whole) = d.read(&x, m, &s, 0);
            assert_eq!(whole.reads, (m * ins.len() * outs.len()) as u64);
            assert_eq!(whole.rereads, 0);
            let got = whole.sumsq as f64 / SUMSQ_UNIT;
            assert!((got - want).abs() <= 1e-5 * want, "{nm:?}: {got} vs {want}");
            // The prepared read and the grouped read (3 groups of 100 rows) tally the same.
            let pre = d.pre(&x, m, &s, 0);
            assert_eq!(d.finish(&pre, &x, m, &s, 0).1, whole);
            let mut out = vec![0.0f32; m * n_out];
            let sink = |i0: usize, acc: &[f32], og: &mut [f32]| {
                og[i0 * n_out..i0 * n_out + acc.len()].copy_from_slice(acc)
            };
            let grouped = d.read_groups(None, Rows::All(&x), 3, m / 3, &s, 0, &mut out, &sink);
            assert_eq!(grouped, whole);
        }
        // Bound management: saturated vectors are re-read with their inputs halved, so each
        // re-read adds a quarter of the row's Σ x² per halving.
        let adc = Adc {
            bound: 0.05,
            ..Adc::ideal()
        };
        let io = Io {
            nm: NoiseManagement::AbsMax,
            nm_thres: 0.0,
            last_r: 2,
        };
        let d = Dir::new(n_in, n_out, &ins, &outs, w, None, None, Some(&adc), io);
        let (_, t) = d.read(&x, m, &Stream::new(1, "r"), 0);
        let base = (m * ins.len() * outs.len()) as u64;
        assert!(t.rereads > 0 && t.reads == base + t.rereads, "{t:?}");
        let (_, plain) = Dir::new(
            n_in,
            n_out,
            &ins,
            &outs,
            w,
            None,
            None,
            Some(&Adc::ideal()),
            Io { last_r: 1, ..io },
        )
        .read(&x, m, &Stream::new(1, "r"), 0);
        let (got, full) = (t.sumsq as f64, plain.sumsq as f64);
        // Every re-read is at r = 2 (last_r): a quarter of its row's Σ x² at most.
        assert!(got > full && got <= full * 1.25, "{got} vs {full}");
    }
}
