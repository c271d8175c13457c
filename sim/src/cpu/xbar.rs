//! Host kernels of the converter-bearing crossbar reads: the semantics of
//! [`Backend::xbar_read`](crate::Backend::xbar_read), and its implementation on the host (every
//! backend's default).
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
//! Conv reads use [`ReadPlan::read_groups`]: one group per sample, read in runs of at most [`CHUNK`]
//! positions whose input rows are built on the fly (im2row of the run, or the gather of its C_out
//! vectors from the NCHW state) and whose outputs go, while in cache, straight into the sample's
//! NCHW output (with bias) or onto its input grid (col2im), so that no `[N·P, K]` array is built.
//!
//! The read is split in [`ReadPlan::pre`] (DAC and GEMMs: deterministic when the DAC is noise-free,
//! which lets the first array's read of the input be cached per query) and [`ReadPlan::finish`] (noise,
//! ADC, bound management, block sum).
//!
//! Files by role: the read's description ([`ReadPlan`]: input blocks, per-read noise structure,
//! converters) is `crate::analog`'s, backend-neutral; this file holds the read's buffers and its
//! deterministic half ([`ReadPlan::pre`]); `finish` the noisy half (noise, ADC, bound management)
//! and the whole and grouped reads; `layout` the conv reads' data layout (im2row, row2im, NCHW ↔
//! rows); `host` the reads on host tensors that back the `Backend::xbar_*` ops; the element
//! kernels (portable and AVX2) are `crate::cpu::analog`'s.

use rayon::prelude::*;

use crate::Stream;
use crate::analog::{
    InBlock, Pre, ReadPlan, Tally, Var, fixed_sumsq, noise_management_scale, round_stream,
};
use crate::cpu::analog::{Noise, TileRows, adc_rows, adc_tile, dac_slice, dot};
use crate::cpu::{Gemm, Par, sgemm_par};
use crate::netlist::NoiseManagement;

mod finish;
mod host;
mod layout;
pub(crate) use host::{prepare, read, read_prepared};
use layout::{nchw_to_rows_part, rows_to_chw_part};

/// Rows of `X` per parallel work item (fixed, so results do not depend on the thread count).
const CHUNK: usize = 128;

/// What [`ReadPlan::read_groups`] hands each run's outputs to: `(i0, acc, og)`.
type Sink<'a> = dyn Fn(usize, &[f32], &mut [f32]) + Sync + 'a;

/// Where the input rows of [`ReadPlan::read_groups`] come from.
#[derive(Clone, Copy)]
enum Rows<'a> {
    /// All rows `[m, n_in]`.
    All(&'a [f32]),
    /// `f(r0, buf)` writes rows `r0..r0 + buf.len() / n_in` into `buf` (e.g. im2row of a run of
    /// conv positions), so the full row matrix is never built.
    Fill(&'a (dyn Fn(usize, &mut [f32]) + Sync)),
}

/// What one chunk of [`ReadPlan::pre`] reads.
#[derive(Clone, Copy)]
struct PreCtx<'a> {
    blk: &'a InBlock,
    /// The chunk's rows (row `j` is row `r0 + j` of the read).
    x: &'a [f32],
    r0: usize,
    ns: &'a Stream,
}

/// What one chunk of [`ReadPlan::finish`] reads.
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

impl ReadPlan {
    /// `xs` (one row's block slice) divided by `scale` through the DAC into `out`; the DAC noise of
    /// element `j` is draw `base + j` of `ns`. Returns Σ out² (the bits of `dot(out, out)`).
    #[inline(always)]
    fn dac_row(&self, xs: &[f32], scale: f32, ns: &Stream, base: u64, out: &mut [f32]) -> f32 {
        match &self.dac {
            None => {
                if scale == 1.0 {
                    out.copy_from_slice(xs);
                } else {
                    out.iter_mut().zip(xs).for_each(|(o, &v)| *o = v / scale);
                }
                dot(out, out)
            }
            Some(d) if d.noise > 0.0 => {
                ns.fill_normal_fast(base, out);
                dac_slice(xs, scale, d.noise, out, &d.q)
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
    fn pre(&self, x: &[f32], m: usize, s: &Stream, t: u64) -> Pre {
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
                if crate::simd::has_avx2_fma() {
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

    /// [`ReadPlan::pre_chunk`] compiled for AVX2 (same operations, same bits).
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

    /// [`ReadPlan::pre`] of one block on the rows `r0..r0 + al.len()`: scales into `al` and Σ x² of
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
            ssc[j] = self.dac_row(
                &x[j * n_in + lo..j * n_in + hi],
                al[j],
                ns,
                (r * n_in + lo) as u64,
                xr,
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
fn zeros(n: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(n);
    v.par_extend(rayon::iter::repeat_n(0.0f32, n));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analog::{Converter, Io, SUMSQ_UNIT};

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
            let d = ReadPlan::new(
                n_in,
                n_out,
                &ins,
                &outs,
                |_, _| 0.5,
                Some(f),
                None,
                None,
                io,
            )
            .unwrap();
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
            let adc = Converter::new(f64::INFINITY, None, sa);
            let d = ReadPlan::new(
                n_in,
                n_out,
                &[(0, n_in)],
                &[(0, n_out)],
                w,
                read.then_some(&s2 as &dyn Fn(usize, usize) -> f32),
                None,
                Some(adc),
                io,
            )
            .unwrap();
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
            let d = ReadPlan::new(
                n_in,
                n_out,
                &ins,
                &outs,
                w,
                None,
                None,
                Some(Converter::ideal()),
                io,
            )
            .unwrap();
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
        let adc = Converter::new(0.05, None, 0.0);
        let io = Io {
            nm: NoiseManagement::AbsMax,
            nm_thres: 0.0,
            last_r: 2,
        };
        let d = ReadPlan::new(n_in, n_out, &ins, &outs, w, None, None, Some(adc), io).unwrap();
        let (_, t) = d.read(&x, m, &Stream::new(1, "r"), 0);
        let base = (m * ins.len() * outs.len()) as u64;
        assert!(t.rereads > 0 && t.reads == base + t.rereads, "{t:?}");
        let (_, plain) = ReadPlan::new(
            n_in,
            n_out,
            &ins,
            &outs,
            w,
            None,
            None,
            Some(Converter::ideal()),
            Io { last_r: 1, ..io },
        )
        .unwrap()
        .read(&x, m, &Stream::new(1, "r"), 0);
        let (got, full) = (t.sumsq as f64, plain.sumsq as f64);
        // Every re-read is at r = 2 (last_r): a quarter of its row's Σ x² at most.
        assert!(got > full && got <= full * 1.25, "{got} vs {full}");
    }
}
