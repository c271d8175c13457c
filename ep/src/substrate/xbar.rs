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
//! The read is split in [`Dir::pre`] (DAC and GEMMs: deterministic when the DAC is noise-free,
//! which lets the first array's read of the input be cached per query) and [`Dir::finish`] (noise,
//! ADC, bound management, block sum).

use devices::converters::noise_management_scale;
use devices::{Adc, Dac, NoiseManagement};
use rayon::prelude::*;
use sim::Stream;
use sim::cpu::{Gemm, Par, sgemm_par};

use super::Io;

/// Rows of `X` per parallel work item (fixed, so results do not depend on the thread count).
const CHUNK: usize = 128;

/// The clip-and-quantize curve of a converter, evaluated exactly as
/// `devices::converters::convert_noiseless` (f64 clip, division by the step, rounding half away
/// from zero, clamp to the levels) but without libm calls, so it vectorizes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Quant {
    bound: f64,
    step: f64,
    half: f64,
    quantize: bool,
}

impl Quant {
    pub(super) fn new(bits: u32, bound: f64) -> Self {
        let steps = if bits > 0 {
            ((1u64 << bits) - 2) as f64
        } else {
            0.0
        };
        Quant {
            bound,
            step: if bits > 0 { 2.0 * bound / steps } else { 1.0 },
            half: steps / 2.0,
            quantize: bits > 0,
        }
    }

    #[inline(always)]
    pub(super) fn convert(&self, x: f32) -> f32 {
        let x = (x as f64).clamp(-self.bound, self.bound);
        if !self.quantize {
            return x as f32;
        }
        let v = x / self.step;
        // Round to nearest even (exact for |v| < 2⁵¹; |v| ≤ half here), then move ties away from 0.
        const MAGIC: f64 = 6_755_399_441_055_744.0;
        let r = (v + MAGIC) - MAGIC;
        let r = if (v - r).abs() == 0.5 {
            v + 0.5f64.copysign(v)
        } else {
            r
        };
        (r.clamp(-self.half, self.half) * self.step) as f32
    }
}

/// A converter part as the read uses it.
#[derive(Debug, Clone, Copy)]
struct Conv {
    q: Quant,
    noise: f32,
    bound: f64,
}

impl Conv {
    fn dac(d: &Dac) -> Self {
        Conv {
            q: Quant::new(d.bits, d.bound),
            noise: d.noise_std as f32,
            bound: d.bound,
        }
    }
    fn adc(a: &Adc) -> Self {
        Conv {
            q: Quant::new(a.bits, a.bound),
            noise: a.noise_std as f32,
            bound: a.bound,
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
                    s2: s2b,
                }
            })
            .collect();
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

    /// Whether [`Dir::pre`] makes random draws (a noisy DAC).
    pub(super) fn pre_is_random(&self) -> bool {
        self.dac.is_some_and(|d| d.noise > 0.0)
    }

    /// `xs` (one row's block slice) divided by `scale` through the DAC into `out`; the DAC noise of
    /// element `j` is draw `base + j` of `ns`.
    #[inline]
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
                out.iter_mut()
                    .zip(xs)
                    .for_each(|(o, &v)| *o = d.q.convert(v / scale + d.noise * *o));
            }
            Some(d) => out
                .iter_mut()
                .zip(xs)
                .for_each(|(o, &v)| *o = d.q.convert(v / scale)),
        }
    }

    /// DAC and block GEMMs of round 0 for the `m` rows of `x` (`[m, n_in]`) at step `t`.
    pub(super) fn pre(&self, x: &[f32], m: usize, s: &Stream, t: u64) -> Pre {
        debug_assert_eq!(x.len(), m * self.n_in);
        let (n_in, n_out) = (self.n_in, self.n_out);
        let dac_noisy = self.pre_is_random();
        let mut pre = Pre {
            alpha: Vec::new(),
            y: Vec::new(),
            sd: Vec::new(),
        };
        for (b, blk) in self.blocks.iter().enumerate() {
            let (lo, hi) = (blk.lo, blk.hi);
            let nb = hi - lo;
            let mut alpha = vec![1.0f32; m];
            if self.io.nm != NoiseManagement::None {
                alpha.par_iter_mut().enumerate().for_each(|(r, a)| {
                    let v = noise_management_scale(
                        self.io.nm,
                        self.io.nm_thres,
                        &x[r * n_in + lo..r * n_in + hi],
                    );
                    // aihwkit's short cut: an all-zero vector (noise-free DAC) reads exactly zero.
                    *a = if v > 0.0 {
                        v
                    } else if dac_noisy {
                        1.0
                    } else {
                        0.0
                    };
                });
            }
            let ns = round_stream(s, "dac", b, 0, t);
            let mut y = vec![0.0f32; m * n_out];
            let mut sd = blk.s2.as_ref().map(|_| vec![0.0f32; m * n_out]);
            let run = |c: usize, yc: &mut [f32], sdc: Option<&mut [f32]>| {
                let r0 = c * CHUNK;
                let rows: Vec<usize> = (r0..(r0 + yc.len() / n_out.max(1)))
                    .filter(|&r| alpha[r] != 0.0)
                    .collect();
                let na = rows.len();
                if na == 0 || nb == 0 || n_out == 0 {
                    return;
                }
                let mut xq = vec![0.0f32; na * nb];
                for (j, &r) in rows.iter().enumerate() {
                    self.dac_row(
                        &x[r * n_in + lo..r * n_in + hi],
                        alpha[r],
                        &ns,
                        (r * n_in + lo) as u64,
                        &mut xq[j * nb..(j + 1) * nb],
                    );
                }
                let g = Gemm {
                    m: na,
                    n: n_out,
                    k: nb,
                    trans_a: false,
                    trans_b: true,
                };
                let mut out = vec![0.0f32; na * n_out];
                sgemm_par(g, 1.0, &xq, &blk.w, 0.0, &mut out, Par::Seq).expect("block GEMM sizes");
                for (j, &r) in rows.iter().enumerate() {
                    let d = (r - r0) * n_out;
                    yc[d..d + n_out].copy_from_slice(&out[j * n_out..(j + 1) * n_out]);
                }
                if let (Some(s2), Some(sdc)) = (&blk.s2, sdc) {
                    xq.iter_mut().for_each(|v| *v *= *v);
                    sgemm_par(g, 1.0, &xq, s2, 0.0, &mut out, Par::Seq).expect("block GEMM sizes");
                    for (j, &r) in rows.iter().enumerate() {
                        let d = (r - r0) * n_out;
                        for (o, v) in sdc[d..d + n_out]
                            .iter_mut()
                            .zip(&out[j * n_out..(j + 1) * n_out])
                        {
                            *o = v.max(0.0).sqrt();
                        }
                    }
                }
            };
            let step = CHUNK * n_out.max(1);
            match &mut sd {
                None => y
                    .par_chunks_mut(step)
                    .enumerate()
                    .for_each(|(c, yc)| run(c, yc, None)),
                Some(sd) => y
                    .par_chunks_mut(step)
                    .zip(sd.par_chunks_mut(step))
                    .enumerate()
                    .for_each(|(c, (yc, sdc))| run(c, yc, Some(sdc))),
            }
            pre.alpha.push(alpha);
            pre.y.push(y);
            pre.sd.push(sd);
        }
        pre
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
        let (n_in, n_out) = (self.n_in, self.n_out);
        let mut acc = vec![0.0f32; m * n_out];
        if n_out == 0 {
            return (acc, 0, 0);
        }
        let nblk = self.blocks.len();
        let adc_s: Vec<Stream> = (0..nblk)
            .map(|b| round_stream(&s.child("adc"), "noise", b, 0, t))
            .collect();
        let w_s: Vec<Stream> = (0..nblk).map(|b| round_stream(s, "w", b, 0, t)).collect();
        let last_r = self.io.last_r;
        let (reads, rereads) = acc
            .par_chunks_mut(CHUNK * n_out)
            .enumerate()
            .map(|(c, ac)| {
                let r0 = c * CHUNK;
                let (mut reads, mut rereads) = (0u64, 0u64);
                let mut nz = vec![0.0f32; n_out];
                let mut rz = vec![0.0f32; n_out];
                let mut q = vec![0.0f32; n_out];
                let mut sat_any: Vec<(usize, usize)> = Vec::new();
                for (b, blk) in self.blocks.iter().enumerate() {
                    let alpha = &pre.alpha[b];
                    for (j, a) in ac.chunks_mut(n_out).enumerate() {
                        let r = r0 + j;
                        let al = alpha[r];
                        if al == 0.0 {
                            continue;
                        }
                        let y = &pre.y[b][r * n_out..(r + 1) * n_out];
                        let base = (r * n_out) as u64;
                        let sd = pre.sd[b].as_ref().map(|v| &v[r * n_out..(r + 1) * n_out]);
                        if let Some(sd) = sd {
                            w_s[b].fill_normal_fast(base, &mut rz);
                            q.iter_mut()
                                .zip(y.iter().zip(sd.iter().zip(&rz)))
                                .for_each(|(q, (&y, (&sd, &z)))| *q = y + sd * z);
                        } else {
                            q.copy_from_slice(y);
                        }
                        sat_any.clear();
                        if let Some(adc) = &self.adc {
                            if adc.noise > 0.0 {
                                adc_s[b].fill_normal_fast(base, &mut nz);
                                q.iter_mut()
                                    .zip(&nz)
                                    .for_each(|(q, &z)| *q += adc.noise * z);
                            }
                            for &(o0, o1) in &self.outs {
                                let sat = q[o0..o1]
                                    .iter()
                                    .fold(false, |s, &v| s | ((v as f64).abs() > adc.bound));
                                if sat && last_r > 1 {
                                    sat_any.push((o0, o1));
                                }
                                q[o0..o1].iter_mut().for_each(|v| *v = adc.q.convert(*v));
                            }
                        }
                        reads += self.outs.len() as u64;
                        // Tiles that saturated are replaced by their bound-management result.
                        for &(o0, o1) in &sat_any {
                            let (n, rr) = self.reread(
                                blk,
                                b,
                                &x[r * n_in..(r + 1) * n_in],
                                r,
                                al,
                                (o0, o1),
                                s,
                                t,
                                &mut q[o0..o1],
                            );
                            reads += n;
                            rereads += n;
                            q[o0..o1].iter_mut().for_each(|v| *v *= rr as f32);
                        }
                        if al == 1.0 {
                            a.iter_mut().zip(&q).for_each(|(a, &v)| *a += v);
                        } else {
                            a.iter_mut().zip(&q).for_each(|(a, &v)| *a += v * al);
                        }
                    }
                }
                (reads, rereads)
            })
            .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        (acc, reads, rereads)
    }

    /// Iterative bound management of the saturated vector (row `r`, block `b`, outputs `o0..o1`):
    /// re-read with the input divided by α·2^k, k = 1, 2, … (own DAC, read and ADC draws per
    /// round) until nothing saturates or the last allowed reduction. Writes the last conversion
    /// into `q` and returns (re-reads made, its reduction r).
    #[allow(clippy::too_many_arguments)]
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
        let mut nz = vec![0.0f32; o1 - o0];
        let mut rz = vec![0.0f32; o1 - o0];
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
            if adc.noise > 0.0 {
                round_stream(&s.child("adc"), "noise", b, k, t).fill_normal_fast(base, &mut nz);
            }
            if blk.s2.is_some() {
                round_stream(s, "w", b, k, t).fill_normal_fast(base, &mut rz);
            }
            let mut sat = false;
            for (j, o) in (o0..o1).enumerate() {
                let wr = &blk.w[o * nb..(o + 1) * nb];
                let mut y = wr.iter().zip(&xq).fold(0.0f32, |a, (w, x)| a + w * x);
                if let Some(s2) = &blk.s2 {
                    let sr = &s2[o * nb..(o + 1) * nb];
                    let var = sr.iter().zip(&xq).fold(0.0f32, |a, (s, x)| a + s * x * x);
                    y += var.max(0.0).sqrt() * rz[j];
                }
                let p = y + adc.noise * nz[j];
                sat |= (p as f64).abs() > adc.bound;
                q[j] = adc.q.convert(p);
            }
            if !sat || red >= self.io.last_r {
                return (n, red);
            }
        }
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

    /// Visit the input index (within one sample's `[C, H, W]`) of every patch element of output
    /// position (oh, ow) that lies inside the input: `f(k, input index)`.
    #[inline]
    fn patch(&self, oh: usize, ow: usize, mut f: impl FnMut(usize, usize)) {
        let (hw, khw) = (self.h * self.w, self.kh * self.kw);
        for i in 0..self.kh {
            let Some(ih) = (oh * self.stride.0 + i)
                .checked_sub(self.pad.0)
                .filter(|&v| v < self.h)
            else {
                continue;
            };
            for j in 0..self.kw {
                let Some(iw) = (ow * self.stride.1 + j)
                    .checked_sub(self.pad.1)
                    .filter(|&v| v < self.w)
                else {
                    continue;
                };
                for ci in 0..self.c {
                    f(ci * khw + i * self.kw + j, ci * hw + ih * self.w + iw);
                }
            }
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
                        self.patch(oh, ow, |kk, ii| row[kk] = xs[ii]);
                    }
                }
            });
        out
    }

    /// The sum of the patch vectors `y[N·P, K]` back onto the input grid `[N, C, H, W]` (col2im;
    /// positions in row-major order), times `scale`.
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
                        self.patch(oh, ow, |kk, ii| o[ii] += row[kk]);
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

/// `[N·P, C]` → `[N, C, P]`, each value times `scale` plus `bias[c]`.
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

    #[test]
    fn quant_matches_the_converter_curve() {
        for (bits, bound) in [
            (9u32, 12.0f64),
            (7, 1.0),
            (0, 3.0),
            (0, f64::INFINITY),
            (4, 0.5),
        ] {
            let q = Quant::new(bits, bound);
            let a = Adc {
                bits,
                bound,
                noise_std: 0.0,
                ..Adc::ideal()
            };
            let st = Stream::new(1, "q");
            let step = a.step().unwrap_or(1.0) as f32;
            for i in 0..20_000u64 {
                let x = match i % 3 {
                    0 => st.normal(i) * 8.0,
                    // exact ties between levels
                    1 => (st.below(i, 600) as f32 - 300.0 + 0.5) * step,
                    _ => (st.below(i, 600) as f32 - 300.0) * step,
                };
                assert_eq!(
                    q.convert(x).to_bits(),
                    a.convert_noiseless(x).to_bits(),
                    "bits {bits} bound {bound} x {x}"
                );
            }
        }
    }
}
