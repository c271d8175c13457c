//! Data layout of the crossbar reads of a conv array: the geometry of its unrolled reads
//! ([`ConvGeom`]), im2row of input patches and row2im (col2im) of transposed outputs, whole or by
//! runs of positions, and the transposes between the reads' `[rows, C]` vectors and NCHW tensors
//! (with the forward read's bias and scale fused in).

use rayon::prelude::*;

use crate::analog::ConvGeom;
use crate::cpu::analog;

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

impl ConvGeom {
    /// The patch of output position (oh, ow) as runs: `f(k, input index, len)` for every
    /// (channel, kernel row) inside the input, with the kernel columns `j0..j0 + len` inside the
    /// input, where `k` is the patch index of (c, i, j0) and the input index (within one sample's
    /// `[C, H, W]`) that of its first element; consecutive elements of a run are consecutive in
    /// both. Runs come in increasing `k` (channel, then kernel row), as [`analog::PatchRuns`]
    /// lists an interior patch's.
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
        // Kernel rows inside the input: ih = oh·s + i − pad ∈ [0, h).
        let top = oh * self.stride.0;
        let i0 = self.pad.0.saturating_sub(top);
        let i1 = (self.h + self.pad.0).saturating_sub(top).min(self.kh);
        for ci in 0..self.c {
            for i in i0..i1 {
                let ih = top + i - self.pad.0;
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

    /// The runs of the interior patch of output position (oh, ow) (see [`analog::PatchRuns`]).
    #[inline(always)]
    fn interior_runs(&self, oh: usize, ow: usize) -> analog::PatchRuns {
        analog::PatchRuns {
            g0: (oh * self.stride.0 - self.pad.0) * self.w + ow * self.stride.1 - self.pad.1,
            c: self.c,
            kh: self.kh,
            hw: self.h * self.w,
            w: self.w,
            n: self.kw,
        }
    }

    /// Rows `r0..r0 + out.len() / K` of [`ConvGeom::im2row`] of `x` into `out`.
    pub(crate) fn im2row_part(&self, x: &[f32], r0: usize, out: &mut [f32]) {
        let (k, p, chw) = (self.k(), self.p(), self.c * self.h * self.w);
        if k == 0 {
            return;
        }
        for (j, row) in out.chunks_exact_mut(k).enumerate() {
            let r = r0 + j;
            let (smp, pi) = (r / p, r % p);
            let xs = &x[smp * chw..(smp + 1) * chw];
            let (oh, ow) = (pi / self.wo, pi % self.wo);
            if self.interior(oh, ow) {
                self.interior_runs(oh, ow).copy(xs, row);
            } else {
                // Padding: the elements outside the input are zeros.
                row.fill(0.0);
                self.patch_runs(oh, ow, |kk, ii, len| {
                    copy_run(&mut row[kk..kk + len], &xs[ii..ii + len]);
                });
            }
        }
    }

    /// Add the patch vectors `ys[rows, K]` of one sample's positions `i0..` onto its input grid
    /// `o[C, H, W]` (the part of [`ConvGeom::row2im`] before its scaling; positions in order).
    pub(crate) fn row2im_part(&self, i0: usize, ys: &[f32], o: &mut [f32]) {
        let k = self.k();
        if k == 0 {
            return;
        }
        for (j, row) in ys.chunks_exact(k).enumerate() {
            let pi = i0 + j;
            let (oh, ow) = (pi / self.wo, pi % self.wo);
            if self.interior(oh, ow) {
                self.interior_runs(oh, ow).add(row, o);
            } else {
                self.patch_runs(oh, ow, |kk, ii, len| {
                    add_run(&mut o[ii..ii + len], &row[kk..kk + len]);
                });
            }
        }
    }

    /// The patch matrix `[N·P, K]` of `x[N, C, H, W]` (rows (sample, oh, ow), columns (c, i, j)).
    pub(crate) fn im2row(&self, x: &[f32]) -> Vec<f32> {
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
    pub(crate) fn row2im(&self, y: &[f32], scale: f32) -> Vec<f32> {
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
pub(crate) fn nchw_to_rows(u: &[f32], n: usize, c: usize, p: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; n * p * c];
    crate::cpu::layout::transpose_blocks(u, c, p, &mut out);
    out
}

/// Rows `[rows, C]` of one sample's positions `i0..` into its `o[C, P]`, each value times `scale`
/// plus `bias[c]` (a part of [`rows_to_nchw`]).
pub(crate) fn rows_to_chw_part(ys: &[f32], i0: usize, o: &mut [f32], scale: f32, bias: &[f32]) {
    let c = bias.len();
    if c == 0 {
        return;
    }
    let (p, rows) = (o.len() / c, ys.len() / c);
    // Blocks of 8 rows × 8 channels transposed in registers, then the rest below.
    let (rb, cb) = analog::rows_to_chw_blocks(ys, c, i0, p, o, scale, bias);
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
pub(crate) fn nchw_to_rows_part(u: &[f32], c: usize, p: usize, r0: usize, out: &mut [f32]) {
    if c == 0 {
        return;
    }
    let rows = out.len() / c;
    // Per sample: channel by channel, a contiguous run of its positions into a column.
    let mut j = 0;
    while j < rows {
        let (smp, pi) = ((r0 + j) / p, (r0 + j) % p);
        let k = (p - pi).min(rows - j);
        let us = &u[smp * c * p..(smp + 1) * c * p];
        let dst = &mut out[j * c..(j + k) * c];
        for ci in 0..c {
            for (t, &v) in us[ci * p + pi..ci * p + pi + k].iter().enumerate() {
                dst[t * c + ci] = v;
            }
        }
        j += k;
    }
}

/// `[N·P, C]` → `[N, C, P]`, each value times `scale` plus `bias[c]`.
#[cfg(test)]
pub(crate) fn rows_to_nchw(
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
    use crate::Stream;

    /// The per-run helpers of the fused conv reads give the whole-array transforms exactly.
    #[test]
    fn conv_parts_compose_to_the_whole_transforms() {
        let st = Stream::new(3, "parts");
        // Kernel widths of the masked AVX2 interior runs (2, 5; up to 8) and of the loop (9).
        let kernels = [(3, 2), (5, 5), (2, 9)];
        let strides = [((1, 1), (0, 0)), ((2, 1), (1, 2))];
        for ((kh, kw), (stride, pad)) in kernels
            .into_iter()
            .flat_map(|k| strides.into_iter().map(move |s| (k, s)))
        {
            let (h, w) = (7, 11);
            let g = ConvGeom {
                n: 3,
                c: 2,
                h,
                w,
                kh,
                kw,
                stride,
                pad,
                ho: (h + 2 * pad.0 - kh) / stride.0 + 1,
                wo: (w + 2 * pad.1 - kw) / stride.1 + 1,
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
