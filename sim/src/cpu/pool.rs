//! Pooling and its adjoints on NCHW tensors (no padding, floor mode: PyTorch's defaults).
//!
//! Work is split by (n, c) plane; each plane is computed sequentially in row-major order, so results
//! do not depend on the rayon thread count.
use rayon::prelude::*;

use super::IndexTensor;
use super::elementwise::{PAR_MIN, flat, from_vec};
use crate::Tensor;
use crate::error::{Error, Result};
use crate::ops::Pool2dParams;

/// (N, C, H, W) of a 4-D tensor, or a shape error naming `op` and `what`.
fn nchw(op: &'static str, what: &str, t: &[usize]) -> Result<(usize, usize, usize, usize)> {
    match *t {
        [n, c, h, w] => Ok((n, c, h, w)),
        _ => Err(Error::shape(
            op,
            format!("{what} must be 4-D [N, C, H, W], got {t:?}"),
        )),
    }
}

/// Run `f(plane_index, out_plane)` over the planes of `out` (each `plane` long), in parallel when
/// `work` (the number of elements touched) is large.
fn per_plane<T: Send>(
    out: &mut [T],
    plane: usize,
    work: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    if plane == 0 {
        return;
    }
    if work >= PAR_MIN {
        out.par_chunks_mut(plane)
            .enumerate()
            .for_each(|(i, o)| f(i, o));
    } else {
        out.chunks_mut(plane).enumerate().for_each(|(i, o)| f(i, o));
    }
}

/// Max pooling with argmax indices: y[n,c,i,j] = max over the window at (i·sh, j·sw), idx the flat
/// index `h·W + w` of the winner in its input plane. The first maximum in row-major window order
/// wins; a NaN in the window propagates (as PyTorch's CPU kernel: a NaN replaces the running max,
/// so the index is the last NaN of the window).
pub fn max_pool2d(x: &Tensor, p: Pool2dParams) -> Result<(Tensor, IndexTensor)> {
    let (n, c, h, w) = nchw("max_pool2d", "input", x.shape())?;
    let (ho, wo) = p.output_hw("max_pool2d", (h, w))?;
    if h * w > u32::MAX as usize {
        return Err(Error::param(
            "max_pool2d",
            format!("plane of {h}x{w} too large for u32 indices"),
        ));
    }
    let xv = flat(x);
    let (kh, kw) = p.kernel;
    let (sh, sw) = p.stride;
    let plane_out = ho * wo;
    let mut vals = vec![0.0f32; n * c * plane_out];
    let mut args = vec![0u32; n * c * plane_out];
    let plane = |pl: usize, ov: &mut [f32], oi: &mut [u32]| {
        let xp = &xv[pl * h * w..(pl + 1) * h * w];
        if (kh, kw, sh, sw) == (2, 2, 2, 2) {
            return max_pool_2x2_plane(xp, w, ho, wo, ov, oi);
        }
        for i in 0..ho {
            for j in 0..wo {
                let (h0, w0) = (i * sh, j * sw);
                let mut best = f32::NEG_INFINITY;
                let mut arg = h0 * w + w0;
                for dh in 0..kh {
                    let row = (h0 + dh) * w;
                    for dw in 0..kw {
                        let k = row + w0 + dw;
                        let v = xp[k];
                        // Branch-free select: on random data the comparison is unpredictable and
                        // a branch here cost ~5 ns per element (measured with perf).
                        let take = v > best || v.is_nan();
                        let m = 0u32.wrapping_sub(u32::from(take));
                        best =
                            f32::from_bits(best.to_bits() ^ ((best.to_bits() ^ v.to_bits()) & m));
                        arg ^= (arg ^ k) & (m as usize | ((m as usize) << 16 << 16));
                    }
                }
                ov[i * wo + j] = best;
                oi[i * wo + j] = arg as u32;
            }
        }
    };
    if plane_out > 0 {
        if xv.len() >= PAR_MIN {
            vals.par_chunks_mut(plane_out)
                .zip(args.par_chunks_mut(plane_out))
                .enumerate()
                .for_each(|(pl, (ov, oi))| plane(pl, ov, oi));
        } else {
            vals.chunks_mut(plane_out)
                .zip(args.chunks_mut(plane_out))
                .enumerate()
                .for_each(|(pl, (ov, oi))| plane(pl, ov, oi));
        }
    }
    let shape = [n, c, ho, wo];
    let y = from_vec(&shape, vals);
    let idx = IndexTensor::from_shape_vec(ndarray::IxDyn(&shape), args)
        .expect("element count matches shape");
    Ok((y, idx))
}

/// The 2×2, stride-2 case of [`max_pool2d`] on one plane (the EP-CNN's pooling): same window order
/// and NaN rule, written branch-free over two input rows at a time.
fn max_pool_2x2_plane(xp: &[f32], w: usize, ho: usize, wo: usize, ov: &mut [f32], oi: &mut [u32]) {
    #[inline(always)]
    fn pick(best: f32, arg: u32, v: f32, k: u32) -> (f32, u32) {
        let take = v > best || v.is_nan();
        let m = 0u32.wrapping_sub(u32::from(take));
        (
            f32::from_bits(best.to_bits() ^ ((best.to_bits() ^ v.to_bits()) & m)),
            arg ^ ((arg ^ k) & m),
        )
    }
    for i in 0..ho {
        let r0 = &xp[2 * i * w..2 * i * w + 2 * wo];
        let r1 = &xp[(2 * i + 1) * w..(2 * i + 1) * w + 2 * wo];
        let ovr = &mut ov[i * wo..(i + 1) * wo];
        let oir = &mut oi[i * wo..(i + 1) * wo];
        let base = (2 * i * w) as u32;
        let mut j0 = 0;
        #[cfg(target_arch = "x86_64")]
        if wo >= 4 && crate::simd::has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 (checked at run time); the rows hold 2·wo values.
            j0 = unsafe { max_pool_2x2_rows_avx2(r0, r1, base, w as u32, ovr, oir) };
        }
        for j in j0..wo {
            let k = base + 2 * j as u32;
            let (b, a) = pick(f32::NEG_INFINITY, k, r0[2 * j], k);
            let (b, a) = pick(b, a, r0[2 * j + 1], k + 1);
            let (b, a) = pick(b, a, r1[2 * j], k + w as u32);
            let (b, a) = pick(b, a, r1[2 * j + 1], k + w as u32 + 1);
            ovr[j] = b;
            oir[j] = a;
        }
    }
}

/// [`max_pool_2x2_plane`] on one pair of input rows, 8 outputs at a time (the same window order,
/// comparisons and NaN rule, so the same values and indices), then 4 at a time; returns how many
/// outputs it wrote (the caller does the rest, fewer than 4).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn max_pool_2x2_rows_avx2(
    r0: &[f32],
    r1: &[f32],
    base: u32,
    w: u32,
    ov: &mut [f32],
    oi: &mut [u32],
) -> usize {
    use std::arch::x86_64::*;
    let wo = ov.len();
    let body = wo - wo % 8;
    debug_assert!(r0.len() >= 2 * wo && r1.len() >= 2 * wo && oi.len() == wo);
    // Even and odd elements of 16 consecutive values, in order.
    #[inline(always)]
    fn split(p: *const f32) -> (__m256, __m256) {
        // SAFETY: the caller reads 16 values from p, inside its row.
        unsafe {
            let a = _mm256_loadu_ps(p);
            let b = _mm256_loadu_ps(p.add(8));
            let e = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
            let o = _mm256_shuffle_ps::<0b11_01_11_01>(a, b);
            (
                _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(e))),
                _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(o))),
            )
        }
    }
    // take = v > best || v is NaN, as the scalar `pick`.
    #[inline(always)]
    fn pick(best: __m256, arg: __m256i, v: __m256, k: __m256i) -> (__m256, __m256i) {
        // SAFETY: AVX2 is enabled in the caller.
        unsafe {
            let take = _mm256_or_ps(
                _mm256_cmp_ps::<_CMP_GT_OQ>(v, best),
                _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v),
            );
            (
                _mm256_blendv_ps(best, v, take),
                _mm256_castps_si256(_mm256_blendv_ps(
                    _mm256_castsi256_ps(arg),
                    _mm256_castsi256_ps(k),
                    take,
                )),
            )
        }
    }
    let lanes = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    let one = _mm256_set1_epi32(1);
    let wv = _mm256_set1_epi32(w as i32);
    let mut j = 0;
    while j < body {
        let (e0, o0) = split(r0[2 * j..].as_ptr());
        let (e1, o1) = split(r1[2 * j..].as_ptr());
        let k = _mm256_add_epi32(_mm256_set1_epi32((base + 2 * j as u32) as i32), lanes);
        // The first candidate from best = −∞: taken unless it is −∞ itself (then best stays −∞
        // and the index is its own either way).
        let (b, a) = (e0, k);
        let (b, a) = pick(b, a, o0, _mm256_add_epi32(k, one));
        let kw = _mm256_add_epi32(k, wv);
        let (b, a) = pick(b, a, e1, kw);
        let (b, a) = pick(b, a, o1, _mm256_add_epi32(kw, one));
        // SAFETY: j + 8 ≤ wo = both lengths.
        unsafe {
            _mm256_storeu_ps(ov.as_mut_ptr().add(j), b);
            _mm256_storeu_si256(oi.as_mut_ptr().add(j) as *mut __m256i, a);
        }
        j += 8;
    }
    // Then 4 at a time (128-bit: even and odd elements come out of one shuffle in order).
    while j + 4 <= wo {
        // SAFETY: j + 4 ≤ wo, so 8 values from 2·j are inside each row; j + 4 ≤ both lengths.
        unsafe {
            let split4 = |p: *const f32| {
                let a = _mm_loadu_ps(p);
                let b = _mm_loadu_ps(p.add(4));
                (
                    _mm_shuffle_ps::<0b10_00_10_00>(a, b),
                    _mm_shuffle_ps::<0b11_01_11_01>(a, b),
                )
            };
            let pick4 = |best: __m128, arg: __m128i, v: __m128, k: __m128i| {
                let take = _mm_or_ps(_mm_cmpgt_ps(v, best), _mm_cmpunord_ps(v, v));
                (
                    _mm_blendv_ps(best, v, take),
                    _mm_castps_si128(_mm_blendv_ps(
                        _mm_castsi128_ps(arg),
                        _mm_castsi128_ps(k),
                        take,
                    )),
                )
            };
            let (e0, o0) = split4(r0.as_ptr().add(2 * j));
            let (e1, o1) = split4(r1.as_ptr().add(2 * j));
            let k = _mm_add_epi32(
                _mm_set1_epi32((base + 2 * j as u32) as i32),
                _mm_setr_epi32(0, 2, 4, 6),
            );
            let (one, wv) = (_mm_set1_epi32(1), _mm_set1_epi32(w as i32));
            let (b, a) = (e0, k);
            let (b, a) = pick4(b, a, o0, _mm_add_epi32(k, one));
            let kw = _mm_add_epi32(k, wv);
            let (b, a) = pick4(b, a, e1, kw);
            let (b, a) = pick4(b, a, o1, _mm_add_epi32(kw, one));
            _mm_storeu_ps(ov.as_mut_ptr().add(j), b);
            _mm_storeu_si128(oi.as_mut_ptr().add(j) as *mut __m128i, a);
        }
        j += 4;
    }
    j
}

/// Max unpooling: scatter-add y[N,C,Ho,Wo] into a zero [N,C,H,W] tensor at the argmax positions
/// `idx` (the adjoint of `max_pool2d`). Entries of a plane are added in row-major order of y.
pub fn max_unpool2d(y: &Tensor, idx: &IndexTensor, input_hw: (usize, usize)) -> Result<Tensor> {
    let (n, c, ho, wo) = nchw("max_unpool2d", "values", y.shape())?;
    if idx.shape() != y.shape() {
        return Err(Error::shape(
            "max_unpool2d",
            format!(
                "indices of shape {:?} do not match values of shape {:?}",
                idx.shape(),
                y.shape()
            ),
        ));
    }
    let (h, w) = input_hw;
    let plane = h * w;
    let yv = flat(y);
    let owned;
    let iv: &[u32] = match idx.as_slice() {
        Some(s) => s,
        None => {
            owned = idx.iter().copied().collect::<Vec<u32>>();
            &owned
        }
    };
    let plane_in = ho * wo;
    let bad = std::sync::atomic::AtomicU64::new(u64::MAX);
    let mut out = vec![0.0f32; n * c * plane];
    per_plane(&mut out, plane, n * c * plane, |pl, o| {
        let ys = &yv[pl * plane_in..(pl + 1) * plane_in];
        let is = &iv[pl * plane_in..(pl + 1) * plane_in];
        for (&v, &i) in ys.iter().zip(is) {
            match o.get_mut(i as usize) {
                Some(e) => *e += v,
                None => bad.store(u64::from(i), std::sync::atomic::Ordering::Relaxed),
            }
        }
    });
    let bad = bad.into_inner();
    if bad != u64::MAX {
        return Err(Error::param(
            "max_unpool2d",
            format!("index {bad} out of range for an input plane of {h}x{w}"),
        ));
    }
    Ok(from_vec(&[n, c, h, w], out))
}

/// Average pooling: the mean of each kh×kw window (sum in row-major order, then divided by kh·kw).
pub fn avg_pool2d(x: &Tensor, p: Pool2dParams) -> Result<Tensor> {
    let (n, c, h, w) = nchw("avg_pool2d", "input", x.shape())?;
    let (ho, wo) = p.output_hw("avg_pool2d", (h, w))?;
    let xv = flat(x);
    let (kh, kw) = p.kernel;
    let (sh, sw) = p.stride;
    let count = (kh * kw) as f32;
    let plane_out = ho * wo;
    let mut out = vec![0.0f32; n * c * plane_out];
    per_plane(&mut out, plane_out, xv.len(), |pl, o| {
        let xp = &xv[pl * h * w..(pl + 1) * h * w];
        for i in 0..ho {
            for j in 0..wo {
                let (h0, w0) = (i * sh, j * sw);
                let mut s = 0.0f32;
                for dh in 0..kh {
                    let row = (h0 + dh) * w + w0;
                    for &v in &xp[row..row + kw] {
                        s += v;
                    }
                }
                o[i * wo + j] = s / count;
            }
        }
    });
    Ok(from_vec(&[n, c, ho, wo], out))
}

/// Adjoint of average pooling: each gy[n,c,i,j] / (kh·kw) is added to every input position of its
/// window (windows visited in row-major order).
pub fn avg_pool2d_adjoint(
    gy: &Tensor,
    input_hw: (usize, usize),
    p: Pool2dParams,
) -> Result<Tensor> {
    let (n, c, ho, wo) = nchw("avg_pool2d_adjoint", "gradient", gy.shape())?;
    let (h, w) = input_hw;
    let expect = p.output_hw("avg_pool2d_adjoint", (h, w))?;
    if expect != (ho, wo) {
        return Err(Error::shape(
            "avg_pool2d_adjoint",
            format!(
                "gradient {:?} has spatial size {:?} but input {:?} with {:?} pools to {:?}",
                gy.shape(),
                (ho, wo),
                input_hw,
                p,
                expect
            ),
        ));
    }
    let gv = flat(gy);
    let (kh, kw) = p.kernel;
    let (sh, sw) = p.stride;
    let count = (kh * kw) as f32;
    let plane_in = ho * wo;
    let mut out = vec![0.0f32; n * c * h * w];
    per_plane(&mut out, h * w, n * c * h * w, |pl, o| {
        let gp = &gv[pl * plane_in..(pl + 1) * plane_in];
        for i in 0..ho {
            for j in 0..wo {
                let g = gp[i * wo + j] / count;
                let (h0, w0) = (i * sh, j * sw);
                for dh in 0..kh {
                    let row = (h0 + dh) * w + w0;
                    for e in &mut o[row..row + kw] {
                        *e += g;
                    }
                }
            }
        }
    });
    Ok(from_vec(&[n, c, h, w], out))
}
