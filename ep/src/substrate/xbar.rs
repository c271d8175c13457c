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

use devices::converters::{CurveF32, noise_management_scale};
use devices::{Adc, Dac, NoiseManagement};
use rayon::prelude::*;
use sim::Stream;
use sim::cpu::{Gemm, Par, sgemm_par};

use super::Io;

mod kernels;
use kernels::{Noise, adc_tile, dac_slice, dot};

/// Rows of `X` per parallel work item (fixed, so results do not depend on the thread count).
const CHUNK: usize = 128;

/// A converter part as the read uses it.
#[derive(Debug, Clone, Copy)]
struct Conv {
    /// The converter's transfer curve (parameters from `devices::converters`).
    q: CurveF32,
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
/// row (0: an all-zero row that reads exactly zero) and the pre-ADC outputs with the σ of their
/// per-read noise.
pub(super) struct Pre {
    alpha: Vec<Vec<f32>>,
    y: Vec<Vec<f32>>,
    sd: Vec<Option<Vec<f32>>>,
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
        let v = match self.io.nm {
            NoiseManagement::None => return 1.0,
            NoiseManagement::AbsMax => {
                // As `noise_management_scale`, written so that it vectorizes.
                // Eight running maxima (max is exact and order-free, so the same value as one
                // sequential pass; a NaN is skipped in both).
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
                if self.io.nm_thres > 0.0 {
                    m.min(self.io.nm_thres as f32)
                } else {
                    m
                }
            }
            nm => noise_management_scale(nm, self.io.nm_thres, xs),
        };
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
        };
        for (b, blk) in self.blocks.iter().enumerate() {
            let ns = round_stream(s, "dac", b, 0, t);
            let mut alpha = vec![1.0f32; m];
            let mut y = vec![0.0f32; m * n_out];
            let mut sd = blk.s2.as_ref().map(|_| vec![0.0f32; m * n_out]);
            let step = CHUNK * n_out.max(1);
            let run = |c: usize, al: &mut [f32], yc: &mut [f32], sdc: Option<&mut [f32]>| {
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
                    unsafe { self.pre_chunk_avx2(&ctx, al, yc, sdc) };
                    return;
                }
                self.pre_chunk(&ctx, al, yc, sdc)
            };
            match &mut sd {
                None => alpha
                    .par_chunks_mut(CHUNK)
                    .zip(y.par_chunks_mut(step))
                    .enumerate()
                    .for_each(|(c, (al, yc))| run(c, al, yc, None)),
                Some(sd) => alpha
                    .par_chunks_mut(CHUNK)
                    .zip(y.par_chunks_mut(step).zip(sd.par_chunks_mut(step)))
                    .enumerate()
                    .for_each(|(c, (al, (yc, sdc)))| run(c, al, yc, Some(sdc))),
            }
            pre.alpha.push(alpha);
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
        al: &mut [f32],
        yc: &mut [f32],
        sdc: Option<&mut [f32]>,
    ) {
        self.pre_chunk(ctx, al, yc, sdc)
    }

    /// [`Dir::pre`] of one block on the rows `r0..r0 + al.len()`: scales into `al`, pre-ADC sums
    /// into `yc` (zero rows untouched), read-noise σ into `sdc`.
    #[inline(always)]
    fn pre_chunk(&self, ctx: &PreCtx<'_>, al: &mut [f32], yc: &mut [f32], sdc: Option<&mut [f32]>) {
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
            self.dac_row(
                &x[j * n_in + lo..j * n_in + hi],
                al[j],
                ns,
                (r * n_in + lo) as u64,
                &mut xq[i * nb..(i + 1) * nb],
            );
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
                    for (i, &j) in rows.iter().enumerate() {
                        let x = &xq[i * nb..(i + 1) * nb];
                        let ss = dot(x, x);
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

    /// Per-read noise, ADC and bound management of a read prepared by [`Dir::pre`] on the same
    /// `x`, step `t`: the outputs `[m, n_out]` summed over the blocks (normalized units), with the
    /// numbers of (row, block, tile) vector reads and of bound-management re-reads.
    pub(super) fn finish(
        &self,
        pre: &Pre,
        x: &[f32],
        m: usize,
        s: &Stream,
        t: u64,
    ) -> (Vec<f32>, u64, u64) {
        self.run(Some(pre), x, m, s, t)
    }

    /// The whole read of the `m` rows of `x` (`[m, n_in]`) at step `t`: [`Dir::pre`] and
    /// [`Dir::finish`] fused chunk by chunk (the same arithmetic, so the same result, without the
    /// full-size intermediate arrays).
    pub(super) fn read(&self, x: &[f32], m: usize, s: &Stream, t: u64) -> (Vec<f32>, u64, u64) {
        self.run(None, x, m, s, t)
    }

    fn run(
        &self,
        pre: Option<&Pre>,
        x: &[f32],
        m: usize,
        s: &Stream,
        t: u64,
    ) -> (Vec<f32>, u64, u64) {
        let n_out = self.n_out;
        let mut acc = vec![0.0f32; m * n_out];
        if n_out == 0 {
            return (acc, 0, 0);
        }
        let (noise_s, dac_s) = self.streams(s, t);
        let (reads, rereads) = acc
            .par_chunks_mut(CHUNK * n_out)
            .enumerate()
            .map(|(c, ac)| {
                let r0 = c * CHUNK;
                let rows = ac.len() / n_out;
                let ctx = ChunkCtx {
                    pre,
                    x: &x[r0 * self.n_in..(r0 + rows) * self.n_in],
                    r0,
                    s,
                    t,
                    noise_s: &noise_s,
                    dac_s: &dac_s,
                };
                self.chunk(&ctx, ac)
            })
            .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        (acc, reads, rereads)
    }

    /// The round-0 streams of every block: (noise before the ADC, DAC).
    fn streams(&self, s: &Stream, t: u64) -> (Vec<Stream>, Vec<Stream>) {
        let nblk = self.blocks.len();
        let noise_s = (0..nblk)
            .map(|b| round_stream(&s.child("adc"), "noise", b, 0, t))
            .collect();
        let dac_s = (0..nblk).map(|b| round_stream(s, "dac", b, 0, t)).collect();
        (noise_s, dac_s)
    }

    /// [`Dir::finish_chunk`], AVX2 build where the CPU has it.
    #[inline(always)]
    fn chunk(&self, ctx: &ChunkCtx<'_>, ac: &mut [f32]) -> (u64, u64) {
        // (An AVX-512 build of the chunk kernel measured 12 % slower here than the AVX2 one.)
        #[cfg(target_arch = "x86_64")]
        if sim::simd::has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked at run time).
            return unsafe { self.finish_chunk_avx2(ctx, ac) };
        }
        self.finish_chunk(ctx, ac)
    }

    /// The read of `m = groups·per` rows (group `g`: rows `g·per..(g + 1)·per`, e.g. one
    /// sample's conv positions), with the values of [`Dir::read`] (`pre: None`) or [`Dir::finish`]
    /// (`pre` prepared on the same rows), but without the `[m, n_out]` result array: each group is
    /// read in runs of at most [`CHUNK`] rows, in order, and each run's outputs `[rows, n_out]`
    /// (normalized, summed over the blocks) are handed, while in cache, to `sink(i0, acc, og)`
    /// with `i0` the run's first row within the group and `og` the group's equal share of `out`;
    /// groups shorter than [`CHUNK`] are read several at a time (one run, one GEMM per block), the
    /// sink still called once per group. Runs go in parallel; every draw is indexed by (row, element) as in [`Dir::read`], so
    /// the result depends neither on the thread count nor on the run split. Returns (reads,
    /// re-reads).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn read_groups(
        &self,
        pre: Option<&Pre>,
        rows: Rows<'_>,
        groups: usize,
        per: usize,
        s: &Stream,
        t: u64,
        out: &mut [f32],
        sink: &Sink<'_>,
    ) -> (u64, u64) {
        let (n_in, n_out) = (self.n_in, self.n_out);
        if n_out == 0 || groups == 0 || per == 0 || out.is_empty() {
            return (0, 0);
        }
        let (noise_s, dac_s) = self.streams(s, t);
        // Short groups are read several at a time (one run of up to CHUNK rows), long ones in
        // runs of CHUNK rows.
        let gpr = (CHUNK / per).max(1);
        let run = CHUNK.min(per) * gpr;
        let share = out.len() / groups;
        out.par_chunks_mut(share * gpr)
            .enumerate()
            .map(|(sg, osg)| {
                let mut ac = take_buf(run * n_out);
                let mut xb = match rows {
                    Rows::All(_) => Buf::empty(),
                    Rows::Fill(_) => take_buf(run * n_in),
                };
                let ng = osg.len() / share;
                let (first, last) = (sg * gpr * per, (sg * gpr + ng) * per);
                let mut tot = (0u64, 0u64);
                let mut r0 = first;
                while r0 < last {
                    // Within one group, or whole groups.
                    let nr = if gpr > 1 {
                        last - r0
                    } else {
                        run.min(per - r0 % per)
                    };
                    if let Rows::Fill(f) = rows {
                        f(r0, &mut xb[..nr * n_in]);
                    }
                    let x = match rows {
                        Rows::All(x) => &x[r0 * n_in..(r0 + nr) * n_in],
                        Rows::Fill(_) => &xb[..nr * n_in],
                    };
                    let acc = &mut ac[..nr * n_out];
                    let ctx = ChunkCtx {
                        pre,
                        x,
                        r0,
                        s,
                        t,
                        noise_s: &noise_s,
                        dac_s: &dac_s,
                    };
                    let (a, b) = self.chunk(&ctx, acc);
                    tot = (tot.0 + a, tot.1 + b);
                    // Hand each group's part of the run to the sink.
                    let mut r = r0;
                    while r < r0 + nr {
                        let (g, i0) = (r / per, r % per);
                        let k = (per - i0).min(r0 + nr - r);
                        let og = &mut osg[(g - sg * gpr) * share..(g - sg * gpr + 1) * share];
                        sink(i0, &acc[(r - r0) * n_out..(r - r0 + k) * n_out], og);
                        r += k;
                    }
                    r0 += nr;
                }
                give_buf(ac);
                give_buf(xb);
                tot
            })
            .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }

    /// [`Dir::finish_chunk`] compiled for AVX2 (same operations, same bits).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn finish_chunk_avx2(&self, ctx: &ChunkCtx<'_>, ac: &mut [f32]) -> (u64, u64) {
        self.finish_chunk(ctx, ac)
    }

    /// [`Dir::finish`] on the rows `r0..` of `ac` (overwritten): returns (reads, re-reads).
    #[inline(always)]
    fn finish_chunk(&self, ctx: &ChunkCtx<'_>, ac: &mut [f32]) -> (u64, u64) {
        let ChunkCtx {
            pre,
            x,
            r0,
            s,
            t,
            noise_s,
            dac_s,
        } = *ctx;
        let (n_in, n_out) = (self.n_in, self.n_out);
        let last_r = self.io.last_r;
        let (mut reads, mut rereads) = (0u64, 0u64);
        let rows = ac.len() / n_out;
        let adc_noisy = self.adc.is_some_and(|a| a.noise > 0.0);
        let noisy_w = self.blocks.iter().any(|b| b.s2.is_some());
        // The draws are made for a few rows at a time (about 16 KiB, so they stay in L1 until
        // used); one Gaussian per output carries the per-read noise and the ADC noise together
        // (their sum has σ = √(var + σ_adc²), which `pre_chunk` writes as the row's σ when there
        // is read noise).
        let rg = (4096 / n_out).clamp(1, rows.max(1));
        let mut nz = take_buf(if adc_noisy || noisy_w { rg * n_out } else { 0 });
        let mut q = take_buf(n_out);
        // Chunk-local round-0 results of the fused read.
        let (mut al_buf, mut y_buf, mut sd_buf) = match pre {
            Some(_) => (Buf::empty(), Buf::empty(), Buf::empty()),
            None => (
                take_buf(rows),
                take_buf(rows * n_out),
                take_buf(if noisy_w { rows * n_out } else { 0 }),
            ),
        };
        for (b, blk) in self.blocks.iter().enumerate() {
            let (alpha, yb, sdb): (&[f32], &[f32], Option<&[f32]>) = match pre {
                Some(p) => (
                    &p.alpha[b][r0..r0 + rows],
                    &p.y[b][r0 * n_out..(r0 + rows) * n_out],
                    p.sd[b]
                        .as_ref()
                        .map(|v| &v[r0 * n_out..(r0 + rows) * n_out]),
                ),
                None => {
                    let pc = PreCtx {
                        blk,
                        x,
                        r0,
                        ns: &dac_s[b],
                    };
                    let sdc = blk.s2.as_ref().map(|_| &mut sd_buf[..]);
                    self.pre_chunk(&pc, &mut al_buf, &mut y_buf, sdc);
                    (&al_buf, &y_buf, blk.s2.as_ref().map(|_| &sd_buf[..]))
                }
            };
            let noisy = adc_noisy || sdb.is_some();
            let first = b == 0;
            for g0 in (0..rows).step_by(rg) {
                let g1 = (g0 + rg).min(rows);
                if noisy {
                    // Indices (row, output), as a per-row fill would.
                    let nzg = &mut nz[..(g1 - g0) * n_out];
                    noise_s[b].fill_normal_fast(((r0 + g0) * n_out) as u64, nzg);
                }
                for j in g0..g1 {
                    let a = &mut ac[j * n_out..(j + 1) * n_out];
                    let al = alpha[j];
                    if al == 0.0 {
                        if first {
                            a.fill(0.0);
                        }
                        continue;
                    }
                    let y = &yb[j * n_out..(j + 1) * n_out];
                    let nzr = noisy.then(|| &nz[(j - g0) * n_out..(j - g0 + 1) * n_out]);
                    let sdr = sdb.map(|sd| &sd[j * n_out..(j + 1) * n_out]);
                    let Some(adc) = &self.adc else {
                        // No ADC: the values themselves (with their read noise).
                        match (nzr, sdr) {
                            (Some(nz), Some(sd)) => {
                                for o in 0..n_out {
                                    q[o] = y[o] + sd[o] * nz[o];
                                }
                            }
                            _ => q.copy_from_slice(y),
                        }
                        add_scaled(a, &q, al, first);
                        reads += self.outs.len() as u64;
                        continue;
                    };
                    for &(o0, o1) in &self.outs {
                        let ys = &y[o0..o1];
                        let noise = match (nzr, sdr) {
                            (Some(nz), Some(sd)) => Noise::Var(&sd[o0..o1], &nz[o0..o1]),
                            (Some(nz), None) => Noise::Const(adc.noise, &nz[o0..o1]),
                            _ => Noise::None,
                        };
                        // The first block writes q·α straight into the output; later blocks
                        // convert into `q` and add.
                        let (qs, scale) = if first {
                            (&mut a[o0..o1], al)
                        } else {
                            (&mut q[o0..o1], 1.0)
                        };
                        let peak = adc_tile(ys, noise, qs, &adc.q, scale);
                        reads += 1;
                        let mut red = 1.0f32;
                        // A saturated tile is replaced by its bound-management result.
                        if peak > adc.bound && last_r > 1 {
                            let r = r0 + j;
                            let xr = &x[j * n_in..(j + 1) * n_in];
                            let qs = &mut q[o0..o1];
                            let (n, rd) = self.reread(blk, b, xr, r, al, (o0, o1), s, t, qs);
                            reads += n;
                            rereads += n;
                            red = rd as f32;
                            if first {
                                // As the sum of q·red and then ·α.
                                for (a, &v) in a[o0..o1].iter_mut().zip(qs.iter()) {
                                    *a = (v * red) * al;
                                }
                                continue;
                            }
                        } else if first {
                            continue;
                        }
                        let qs = &q[o0..o1];
                        let a = &mut a[o0..o1];
                        if red == 1.0 {
                            add_scaled(a, qs, al, false);
                        } else {
                            for (a, &v) in a.iter_mut().zip(qs) {
                                *a += (v * red) * al;
                            }
                        }
                    }
                }
            }
        }
        if self.blocks.is_empty() {
            ac.fill(0.0);
        }
        for b in [nz, q, al_buf, y_buf, sd_buf] {
            give_buf(b);
        }
        (reads, rereads)
    }

    /// Iterative bound management of the saturated vector (row `r`, block `b`, outputs `o0..o1`):
    /// re-read with the input divided by α·2^k, k = 1, 2, … (own DAC, read and ADC draws per
    /// round) until nothing saturates or the last allowed reduction. Writes the last conversion
    /// into `q` and returns (re-reads made, its reduction r).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn reread(
        &self,
        blk: &InBlock,
        b: usize,
        xrow: &[f32],
        r: usize,
        alpha: f32,
        (o0, o1): (usize, usize),
        s: &Stream,
        t: u64,
        q: &mut [f32],
    ) -> (u64, u64) {
        let (lo, hi) = (blk.lo, blk.hi);
        let nb = hi - lo;
        let adc = self.adc.as_ref().expect("bound management needs an ADC");
        let mut xq = vec![0.0f32; nb];
        let mut xq2 = vec![0.0f32; if blk.s2.is_some() { nb } else { 0 }];
        let mut nz = vec![0.0f32; o1 - o0];
        let n2 = self.adc_noise_var();
        let noisy = adc.noise > 0.0 || blk.s2.is_some();
        let base = (r * self.n_out + o0) as u64;
        let (mut red, mut k, mut n) = (1u64, 0u32, 0u64);
        loop {
            k += 1;
            red *= 2;
            n += 1;
            let ns = round_stream(s, "dac", b, k, t);
            self.dac_row(
                &xrow[lo..hi],
                alpha * red as f32,
                &ns,
                (r * self.n_in + lo) as u64,
                &mut xq,
            );
            if blk.s2.is_some() {
                xq2.iter_mut().zip(&xq).for_each(|(a, v)| *a = v * v);
            }
            if noisy {
                round_stream(&s.child("adc"), "noise", b, k, t).fill_normal_fast(base, &mut nz);
            }
            let mut sat = false;
            for (j, o) in (o0..o1).enumerate() {
                let y = dot(&blk.w[o * nb..(o + 1) * nb], &xq);
                // One draw for the read noise and the ADC noise together, as in round 0.
                let sd = match &blk.s2 {
                    Some(s2) => (dot(&s2[o * nb..(o + 1) * nb], &xq2).max(0.0) + n2).sqrt(),
                    None => adc.noise,
                };
                let p = if noisy { y + sd * nz[j] } else { y };
                sat |= p.abs() > adc.bound;
                q[j] = adc.q.convert(p);
            }
            if !sat || red >= self.io.last_r {
                return (n, red);
            }
        }
    }
}

/// `a = q·α` (`first`) or `a += q·α`.
#[inline(always)]
fn add_scaled(a: &mut [f32], q: &[f32], al: f32, first: bool) {
    match (first, al == 1.0) {
        (true, true) => a.copy_from_slice(q),
        (true, false) => a.iter_mut().zip(q).for_each(|(a, &v)| *a = v * al),
        (false, true) => a.iter_mut().zip(q).for_each(|(a, &v)| *a += v),
        (false, false) => a.iter_mut().zip(q).for_each(|(a, &v)| *a += v * al),
    }
}

/// A zeroed vector of `n` floats, written by all threads (the step's large read outputs: a serial
/// `memset` of them cost ≈ 3 % of a converter-bearing run).
pub(super) fn zeros(n: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(n);
    v.par_extend(rayon::iter::repeat_n(0.0f32, n));
    v
}

/// `dst.copy_from_slice(src)` for the short runs of a patch (kernel widths): constant-size copies
/// up to 8 elements, so that no `memcpy` call is made per run.
#[inline(always)]
fn copy_run(dst: &mut [f32], src: &[f32]) {
    macro_rules! fixed {
        ($($n:literal)*) => {
            match dst.len() {
                $($n => dst[..$n].copy_from_slice(&src[..$n]),)*
                _ => dst.copy_from_slice(src),
            }
        };
    }
    fixed!(1 2 3 4 5 6 7 8)
}

/// `dst += src` elementwise for the short runs of a patch, with constant-size loops up to 8
/// elements (as [`copy_run`]).
#[inline(always)]
fn add_run(dst: &mut [f32], src: &[f32]) {
    #[inline(always)]
    fn add<const N: usize>(d: &mut [f32], s: &[f32]) {
        let d: &mut [f32; N] = (&mut d[..N]).try_into().expect("run length");
        let s: &[f32; N] = s[..N].try_into().expect("run length");
        for l in 0..N {
            d[l] += s[l];
        }
    }
    match dst.len() {
        1 => add::<1>(dst, src),
        2 => add::<2>(dst, src),
        3 => add::<3>(dst, src),
        4 => add::<4>(dst, src),
        5 => add::<5>(dst, src),
        6 => add::<6>(dst, src),
        7 => add::<7>(dst, src),
        8 => add::<8>(dst, src),
        _ => dst.iter_mut().zip(src).for_each(|(d, s)| *d += *s),
    }
}

/// Shapes of a conv array's unrolled reads.
#[derive(Debug, Clone, Copy)]
pub(super) struct ConvGeom {
    pub(super) n: usize,
    pub(super) c: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) stride: (usize, usize),
    pub(super) pad: (usize, usize),
    pub(super) ho: usize,
    pub(super) wo: usize,
}

impl ConvGeom {
    /// Patch length K = C·kh·kw (the array's rows, OIHW order).
    pub(super) fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }
    /// Output positions per sample.
    pub(super) fn p(&self) -> usize {
        self.ho * self.wo
    }

    /// The patch of output position (oh, ow) as runs: `f(k, input index, len)` for every
    /// (channel, kernel row) with the kernel columns `j0..j0 + len` inside the input, where `k` is
    /// the patch index of (c, i, j0) and the input index (within one sample's `[C, H, W]`) that of
    /// its first element; consecutive elements of a run are consecutive in both.
    #[inline(always)]
    fn patch_runs(&self, oh: usize, ow: usize, mut f: impl FnMut(usize, usize, usize)) {
        let (hw, khw) = (self.h * self.w, self.kh * self.kw);
        // Kernel columns inside the input: iw = ow·s + j − pad ∈ [0, w).
        let base = ow * self.stride.1;
        let j0 = self.pad.1.saturating_sub(base);
        let j1 = (self.w + self.pad.1).saturating_sub(base).min(self.kw);
        if j0 >= j1 {
            return;
        }
        let iw0 = base + j0 - self.pad.1;
        for i in 0..self.kh {
            let Some(ih) = (oh * self.stride.0 + i)
                .checked_sub(self.pad.0)
                .filter(|&v| v < self.h)
            else {
                continue;
            };
            for ci in 0..self.c {
                f(
                    ci * khw + i * self.kw + j0,
                    ci * hw + ih * self.w + iw0,
                    j1 - j0,
                );
            }
        }
    }

    /// Whether the patch of output position (oh, ow) lies wholly inside the input (no padding).
    #[inline(always)]
    fn interior(&self, oh: usize, ow: usize) -> bool {
        let (h0, w0) = (oh * self.stride.0, ow * self.stride.1);
        h0 >= self.pad.0
            && w0 >= self.pad.1
            && h0 + self.kh <= self.h + self.pad.0
            && w0 + self.kw <= self.w + self.pad.1
    }

    /// Rows `r0..r0 + out.len() / K` of [`ConvGeom::im2row`] of `x` into `out`.
    pub(super) fn im2row_part(&self, x: &[f32], r0: usize, out: &mut [f32]) {
        let (k, p, chw) = (self.k(), self.p(), self.c * self.h * self.w);
        if k == 0 {
            return;
        }
        for (j, row) in out.chunks_exact_mut(k).enumerate() {
            let r = r0 + j;
            let (smp, pi) = (r / p, r % p);
            let xs = &x[smp * chw..(smp + 1) * chw];
            if !self.interior(pi / self.wo, pi % self.wo) {
                // Padding: the elements outside the input are zeros.
                row.fill(0.0);
            }
            self.patch_runs(pi / self.wo, pi % self.wo, |kk, ii, len| {
                copy_run(&mut row[kk..kk + len], &xs[ii..ii + len]);
            });
        }
    }

    /// Add the patch vectors `ys[rows, K]` of one sample's positions `i0..` onto its input grid
    /// `o[C, H, W]` (the part of [`ConvGeom::row2im`] before its scaling; positions in order).
    pub(super) fn row2im_part(&self, i0: usize, ys: &[f32], o: &mut [f32]) {
        let k = self.k();
        if k == 0 {
            return;
        }
        for (j, row) in ys.chunks_exact(k).enumerate() {
            let pi = i0 + j;
            self.patch_runs(pi / self.wo, pi % self.wo, |kk, ii, len| {
                add_run(&mut o[ii..ii + len], &row[kk..kk + len]);
            });
        }
    }

    /// The patch matrix `[N·P, K]` of `x[N, C, H, W]` (rows (sample, oh, ow), columns (c, i, j)).
    pub(super) fn im2row(&self, x: &[f32]) -> Vec<f32> {
        let (k, p, chw) = (self.k(), self.p(), self.c * self.h * self.w);
        let mut out = vec![0.0f32; self.n * p * k];
        if k * p == 0 {
            return out;
        }
        out.par_chunks_mut(p * k)
            .zip(x.par_chunks(chw.max(1)))
            .for_each(|(o, xs)| {
                for oh in 0..self.ho {
                    for ow in 0..self.wo {
                        let row = &mut o[(oh * self.wo + ow) * k..][..k];
                        self.patch_runs(oh, ow, |kk, ii, len| {
                            for (d, s) in row[kk..kk + len].iter_mut().zip(&xs[ii..ii + len]) {
                                *d = *s;
                            }
                        });
                    }
                }
            });
        out
    }

    /// The sum of the patch vectors `y[N·P, K]` back onto the input grid `[N, C, H, W]` (col2im;
    /// positions in row-major order), times `scale`.
    #[cfg(test)]
    pub(super) fn row2im(&self, y: &[f32], scale: f32) -> Vec<f32> {
        let (k, p, chw) = (self.k(), self.p(), self.c * self.h * self.w);
        let mut out = vec![0.0f32; self.n * chw];
        if k * p == 0 || chw == 0 {
            return out;
        }
        out.par_chunks_mut(chw)
            .zip(y.par_chunks(p * k))
            .for_each(|(o, ys)| {
                for oh in 0..self.ho {
                    for ow in 0..self.wo {
                        let row = &ys[(oh * self.wo + ow) * k..][..k];
                        self.patch_runs(oh, ow, |kk, ii, len| {
                            for (d, s) in o[ii..ii + len].iter_mut().zip(&row[kk..kk + len]) {
                                *d += *s;
                            }
                        });
                    }
                }
                if scale != 1.0 {
                    o.iter_mut().for_each(|v| *v *= scale);
                }
            });
        out
    }
}

/// `[N, C, P]` → `[N·P, C]` (each position's channel vector a row).
#[cfg(test)]
pub(super) fn nchw_to_rows(u: &[f32], n: usize, c: usize, p: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; n * p * c];
    if c * p == 0 {
        return out;
    }
    out.par_chunks_mut(p * c)
        .zip(u.par_chunks(c * p))
        .for_each(|(o, us)| {
            for ci in 0..c {
                for (pi, v) in us[ci * p..(ci + 1) * p].iter().enumerate() {
                    o[pi * c + ci] = *v;
                }
            }
        });
    out
}

/// Rows `[rows, C]` of one sample's positions `i0..` into its `o[C, P]`, each value times `scale`
/// plus `bias[c]` (a part of [`rows_to_nchw`]).
pub(super) fn rows_to_chw_part(ys: &[f32], i0: usize, o: &mut [f32], scale: f32, bias: &[f32]) {
    let c = bias.len();
    if c == 0 {
        return;
    }
    let (p, rows) = (o.len() / c, ys.len() / c);
    // Blocks of 8 rows × 8 channels transposed in registers, then the rest below.
    let (rb, cb) = kernels::rows_to_chw_blocks(ys, c, i0, p, o, scale, bias);
    if rb == rows && cb == c {
        return;
    }
    // Channel-major: contiguous writes, strided reads of the (cached) run; the elements the blocks
    // did not cover (rows ≥ rb of channels < cb, and every row of channels ≥ cb).
    for (ci, &b) in bias.iter().enumerate() {
        let j0 = if ci < cb { rb } else { 0 };
        for (j, v) in o[ci * p + i0 + j0..ci * p + i0 + rows]
            .iter_mut()
            .enumerate()
            .map(|(j, v)| (j + j0, v))
        {
            *v = ys[j * c + ci] * scale + b;
        }
    }
}

/// Rows `r0..r0 + out.len() / C` of [`nchw_to_rows`] of `u[N, C, P]` into `out`.
pub(super) fn nchw_to_rows_part(u: &[f32], c: usize, p: usize, r0: usize, out: &mut [f32]) {
    if c == 0 {
        return;
    }
    for (j, row) in out.chunks_exact_mut(c).enumerate() {
        let r = r0 + j;
        let us = &u[(r / p) * c * p + r % p..];
        for (ci, v) in row.iter_mut().enumerate() {
            *v = us[ci * p];
        }
    }
}

/// `[N·P, C]` → `[N, C, P]`, each value times `scale` plus `bias[c]`.
#[cfg(test)]
pub(super) fn rows_to_nchw(
    y: &[f32],
    n: usize,
    c: usize,
    p: usize,
    scale: f32,
    bias: &[f32],
) -> Vec<f32> {
    let mut out = vec![0.0f32; n * p * c];
    if c * p == 0 {
        return out;
    }
    out.par_chunks_mut(c * p)
        .zip(y.par_chunks(p * c))
        .for_each(|(o, ys)| {
            for ci in 0..c {
                for (pi, v) in o[ci * p..(ci + 1) * p].iter_mut().enumerate() {
                    *v = ys[pi * c + ci] * scale + bias[ci];
                }
            }
        });
    out
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
            let (y, _, _) = d.read(&x, m, &Stream::new(9, "sum"), 0);
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

    /// The per-run helpers of the fused conv reads give the whole-array transforms exactly.
    #[test]
    fn conv_parts_compose_to_the_whole_transforms() {
        let st = Stream::new(3, "parts");
        for (stride, pad) in [((1, 1), (0, 0)), ((2, 1), (1, 2))] {
            let g = ConvGeom {
                n: 3,
                c: 2,
                h: 7,
                w: 6,
                kh: 3,
                kw: 2,
                stride,
                pad,
                ho: (7 + 2 * pad.0 - 3) / stride.0 + 1,
                wo: (6 + 2 * pad.1 - 2) / stride.1 + 1,
            };
            let (k, p) = (g.k(), g.p());
            let x: Vec<f32> = (0..(g.n * g.c * g.h * g.w) as u64)
                .map(|i| st.normal(i))
                .collect();
            let whole = g.im2row(&x);
            // Runs of 5 rows crossing sample boundaries.
            let mut parts = vec![f32::NAN; whole.len()];
            for (c, buf) in parts.chunks_mut(5 * k).enumerate() {
                g.im2row_part(&x, 5 * c, buf);
            }
            assert_eq!(parts, whole);
            let y: Vec<f32> = (0..(g.n * p * k) as u64)
                .map(|i| st.normal(1000 + i))
                .collect();
            let want = g.row2im(&y, 1.0);
            let chw = g.c * g.h * g.w;
            let mut got = vec![0.0f32; want.len()];
            for (smp, o) in got.chunks_mut(chw).enumerate() {
                let ys = &y[smp * p * k..(smp + 1) * p * k];
                for (c, run) in ys.chunks(4 * k).enumerate() {
                    g.row2im_part(4 * c, run, o);
                }
            }
            assert_eq!(got, want);
            let c = 3;
            let u: Vec<f32> = (0..(g.n * c * p) as u64)
                .map(|i| st.normal(5000 + i))
                .collect();
            let rows = nchw_to_rows(&u, g.n, c, p);
            let mut parts = vec![f32::NAN; rows.len()];
            for (j, buf) in parts.chunks_mut(4 * c).enumerate() {
                nchw_to_rows_part(&u, c, p, 4 * j, buf);
            }
            assert_eq!(parts, rows);
            let bias = [0.5f32, -1.0, 2.0];
            let want = rows_to_nchw(&rows, g.n, c, p, 1.5, &bias);
            let mut got = vec![f32::NAN; want.len()];
            for (smp, o) in got.chunks_mut(c * p).enumerate() {
                let ys = &rows[smp * p * c..(smp + 1) * p * c];
                for (j, run) in ys.chunks(3 * c).enumerate() {
                    rows_to_chw_part(run, 3 * j, o, 1.5, &bias);
                }
            }
            assert_eq!(got, want);
        }
    }

    /// The register-transposed blocks of `rows_to_chw_part` (8 rows × 8 channels) and their
    /// element-loop edges give the whole-array transform's bits, for channel counts and run lengths
    /// with and without remainders.
    #[test]
    fn rows_to_chw_blocks_match_the_whole_transform() {
        let st = Stream::new(8, "blocks");
        for (c, p, run) in [
            (8usize, 16usize, 8usize),
            (13, 30, 11),
            (32, 64, 24),
            (32, 576, 128),
            (9, 7, 16),
        ] {
            let n = 2;
            let rows: Vec<f32> = (0..(n * p * c) as u64).map(|i| st.normal(i)).collect();
            let bias: Vec<f32> = (0..c as u64).map(|i| st.normal(90_000 + i)).collect();
            let want = rows_to_nchw(&rows, n, c, p, 0.7, &bias);
            let mut got = vec![f32::NAN; want.len()];
            for (smp, o) in got.chunks_mut(c * p).enumerate() {
                let ys = &rows[smp * p * c..(smp + 1) * p * c];
                for (j, r) in ys.chunks(run * c).enumerate() {
                    rows_to_chw_part(r, run * j, o, 0.7, &bias);
                }
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "c {c} p {p} run {run}");
        }
    }
}
