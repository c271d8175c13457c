//! The primitives an analog (crossbar) read is built from, on host slices: the per-vector abs-max
//! of noise management ([`abs_max`]), the DAC of a vector with its scale and input noise
//! ([`dac_slice`]), the ADC of a vector with the noise before it and the per-vector saturation
//! test of bound management ([`adc_tile`], and [`adc_rows`] for a group of vectors), the dot product
//! ([`dot`]) and the register-transposed `[rows, C]` → `[C, P]` store of conv read outputs
//! ([`rows_to_chw_blocks`]). Each is written once portably and once in AVX2 with the same
//! operations in the same order (separate multiply and add, the same clip, rounding and tie rule
//! as [`Curve::convert`]), so both give the same bits. The bulk normal draws come from
//! [`crate::Stream::fill_normal_fast`]; the laws (which bound, step and scale) are `devices`'.

use crate::analog::Curve;
pub use crate::analog::abs_max;

/// The noise before the ADC of one tile's outputs.
#[derive(Clone, Copy)]
pub enum Noise<'a> {
    None,
    /// `y + sd·z` with one σ.
    Const(f32, &'a [f32]),
    /// `y + sd[o]·z[o]`.
    Var(&'a [f32], &'a [f32]),
}

/// The ADC of one tile's outputs `v = y + noise`, times `scale`, into `q`; returns the largest |v|
/// (the bound-management test; a NaN is skipped, as `v.abs() > bound` would).
#[inline(always)]
pub fn adc_tile(y: &[f32], noise: Noise<'_>, q: &mut [f32], c: &Curve, scale: f32) -> f32 {
    let n = q.len();
    let mut peak = [0.0f32];
    let shape = TileRows {
        rows: 1,
        n,
        stride: n,
    };
    adc_rows(shape, y, noise, q, c, &[scale], &mut peak);
    peak[0]
}

/// Where the vectors of one output tile lie in [`adc_rows`]' slices: `rows` vectors of `n`
/// values, vector r starting at r·`stride` of every slice (a tile's columns of `[rows, stride]`
/// row-major arrays).
#[derive(Clone, Copy, Debug)]
pub struct TileRows {
    pub rows: usize,
    pub n: usize,
    pub stride: usize,
}

impl TileRows {
    /// The slice length that holds every vector.
    fn span(&self) -> usize {
        if self.rows == 0 {
            0
        } else {
            (self.rows - 1) * self.stride + self.n
        }
    }
}

/// [`adc_tile`] of the `shape.rows` vectors of one tile at once (one call instead of one per
/// vector, which dominates for short tiles): vector r of `y` (with its noise, the same layout)
/// converted, times `scales[r]`, into `q`, and its largest |v| into `peaks[r]`. The same bits as
/// [`adc_tile`] on each vector.
#[inline(always)]
pub fn adc_rows(
    shape: TileRows,
    y: &[f32],
    noise: Noise<'_>,
    q: &mut [f32],
    c: &Curve,
    scales: &[f32],
    peaks: &mut [f32],
) {
    let len = shape.span();
    assert!(
        shape.n <= shape.stride || shape.rows <= 1,
        "adc_rows: vectors overlap"
    );
    let (y, q) = (&y[..len], &mut q[..len]);
    let noise = match noise {
        Noise::None => Noise::None,
        Noise::Const(sd, z) => Noise::Const(sd, &z[..len]),
        Noise::Var(sd, z) => Noise::Var(&sd[..len], &z[..len]),
    };
    let (scales, peaks) = (&scales[..shape.rows], &mut peaks[..shape.rows]);
    #[cfg(target_arch = "x86_64")]
    if crate::simd::has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 (checked at run time); every slice spans the vectors.
        return unsafe { adc_rows_avx2(shape, y, noise, q, c, scales, peaks) };
    }
    for r in 0..shape.rows {
        let o = r * shape.stride;
        let v = o..o + shape.n;
        peaks[r] = adc_vector_portable(&y[v.clone()], noise.at(v.clone()), &mut q[v], c, scales[r]);
    }
}

impl<'a> Noise<'a> {
    /// The noise of the values `v` (a range of the slices).
    #[inline(always)]
    fn at(self, v: std::ops::Range<usize>) -> Noise<'a> {
        match self {
            Noise::None => Noise::None,
            Noise::Const(sd, z) => Noise::Const(sd, &z[v]),
            Noise::Var(sd, z) => Noise::Var(&sd[v.clone()], &z[v]),
        }
    }
}

/// The definition of one vector's ADC (see [`adc_tile`]).
#[inline(always)]
fn adc_vector_portable(y: &[f32], noise: Noise<'_>, q: &mut [f32], c: &Curve, scale: f32) -> f32 {
    let n = q.len();
    let mut peak = 0.0f32;
    for o in 0..n {
        let v = match noise {
            Noise::None => y[o],
            Noise::Const(sd, z) => y[o] + sd * z[o],
            Noise::Var(sd, z) => y[o] + sd[o] * z[o],
        };
        let a = v.abs();
        peak = if a > peak { a } else { peak };
        q[o] = if scale == 1.0 {
            c.convert(v)
        } else {
            c.convert(v) * scale
        };
    }
    peak
}

/// [`adc_rows`] in AVX2 (the converter's constants set up once for all the vectors).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn adc_rows_avx2(
    shape: TileRows,
    y: &[f32],
    noise: Noise<'_>,
    q: &mut [f32],
    c: &Curve,
    scales: &[f32],
    peaks: &mut [f32],
) {
    use std::arch::x86_64::*;
    let n = shape.n;
    let body = n - n % 8;
    let k = QuantV::new(c);
    for (r, (&scale, pk)) in scales.iter().zip(peaks.iter_mut()).enumerate() {
        let base = r * shape.stride;
        let sv = _mm256_set1_ps(scale);
        let mut peak = _mm256_setzero_ps();
        let mut o = 0;
        while o < body {
            let i = base + o;
            // SAFETY: i + 8 ≤ base + n ≤ span = every slice's length.
            unsafe {
                let yv = _mm256_loadu_ps(y.as_ptr().add(i));
                let v = match noise {
                    Noise::None => yv,
                    Noise::Const(sd, z) => _mm256_add_ps(
                        yv,
                        _mm256_mul_ps(_mm256_set1_ps(sd), _mm256_loadu_ps(z.as_ptr().add(i))),
                    ),
                    Noise::Var(sd, z) => _mm256_add_ps(
                        yv,
                        _mm256_mul_ps(
                            _mm256_loadu_ps(sd.as_ptr().add(i)),
                            _mm256_loadu_ps(z.as_ptr().add(i)),
                        ),
                    ),
                };
                // max(a, peak) keeps peak where a is NaN.
                peak = _mm256_max_ps(k.abs(v), peak);
                let qv = k.convert(v);
                let qv = if scale == 1.0 {
                    qv
                } else {
                    _mm256_mul_ps(qv, sv)
                };
                _mm256_storeu_ps(q.as_mut_ptr().add(i), qv);
            }
            o += 8;
        }
        // The lanes' maximum (no lane is NaN; max is exact and order-free).
        let h = _mm_max_ps(
            _mm256_castps256_ps128(peak),
            _mm256_extractf128_ps::<1>(peak),
        );
        let h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        let m = _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
        let t = if body < n {
            let v = base + body..base + n;
            adc_vector_portable(&y[v.clone()], noise.at(v.clone()), &mut q[v], c, scale)
        } else {
            0.0
        };
        *pk = if t > m { t } else { m };
    }
}

/// The DAC of one row's block slice: `out[j] = c(xs[j] / scale + sigma·out[j])` where `out` holds
/// the standard normal draws on entry when `sigma > 0` (else `out[j] = c(xs[j] / scale)`). Returns
/// Σ out[j]², with the bits of [`dot`]`(out, out)` (accumulated in the same lanes as the values are
/// converted, instead of a second pass).
#[inline(always)]
pub fn dac_slice(xs: &[f32], scale: f32, sigma: f32, out: &mut [f32], c: &Curve) -> f32 {
    let xs = &xs[..out.len()];
    #[cfg(target_arch = "x86_64")]
    if crate::simd::has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 (checked at run time); both slices have out.len().
        return unsafe { dac_slice_avx2(xs, scale, sigma, out, c) };
    }
    dac_slice_portable(xs, scale, sigma, out, c);
    dot_portable(out, out)
}

#[inline(always)]
fn dac_slice_portable(xs: &[f32], scale: f32, sigma: f32, out: &mut [f32], c: &Curve) {
    if sigma > 0.0 {
        out.iter_mut()
            .zip(xs)
            .for_each(|(o, &v)| *o = c.convert(v / scale + sigma * *o));
    } else {
        out.iter_mut()
            .zip(xs)
            .for_each(|(o, &v)| *o = c.convert(v / scale));
    }
}

/// The clip-and-quantize curve of `c` on 8 lanes (as [`Curve::convert`]).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct QuantV {
    sign: std::arch::x86_64::__m256,
    hi: std::arch::x86_64::__m256,
    lo: std::arch::x86_64::__m256,
    inv: std::arch::x86_64::__m256,
    step: std::arch::x86_64::__m256,
    below_half: std::arch::x86_64::__m256,
    quantize: bool,
}

#[cfg(target_arch = "x86_64")]
impl QuantV {
    #[target_feature(enable = "avx2,fma")]
    fn new(c: &Curve) -> Self {
        use std::arch::x86_64::*;
        QuantV {
            sign: _mm256_set1_ps(-0.0),
            hi: _mm256_set1_ps(c.bound),
            lo: _mm256_set1_ps(-c.bound),
            inv: _mm256_set1_ps(c.inv_step),
            step: _mm256_set1_ps(c.step),
            below_half: _mm256_set1_ps(f32::from_bits(0.5f32.to_bits() - 1)),
            quantize: c.quantize,
        }
    }

    /// |v| (for the saturation test).
    #[target_feature(enable = "avx2,fma")]
    fn abs(&self, v: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
        std::arch::x86_64::_mm256_andnot_ps(self.sign, v)
    }

    #[target_feature(enable = "avx2,fma")]
    fn convert(&self, v: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // x.max(-bound).min(bound): a NaN v gives -bound, as f32::max does.
        let x = _mm256_min_ps(_mm256_max_ps(v, self.lo), self.hi);
        if !self.quantize {
            return x;
        }
        // Round half away from zero: trunc(t + copysign(0.49999997, t)), 0.49999997 being the
        // float just below one half (the expansion LLVM uses for `round`: with one half itself,
        // t = 0.49999997 would round up). The truncation goes through integers (|t| ≤ steps/2 <
        // 2²³, so it is exact), and an integer 0 converts to +0.0, as the magic-number rounding
        // of `Curve::convert` gives.
        let t = _mm256_mul_ps(x, self.inv);
        let h = _mm256_or_ps(_mm256_and_ps(t, self.sign), self.below_half);
        let i = _mm256_cvttps_epi32(_mm256_add_ps(t, h));
        _mm256_mul_ps(_mm256_cvtepi32_ps(i), self.step)
    }
}

/// x / s from r = 1/s (correctly rounded): x·r corrected by its exact residual (see
/// [`dac_slice_avx2`] for where this is the quotient's bits).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn quotient(
    x: std::arch::x86_64::__m256,
    s: std::arch::x86_64::__m256,
    r: std::arch::x86_64::__m256,
) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let q = _mm256_mul_ps(x, r);
    _mm256_fmadd_ps(_mm256_fnmadd_ps(q, s, x), r, q)
}

/// [`dac_slice`] in AVX2 (Σ out² in [`dot_avx2`]'s lanes and order).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dac_slice_avx2(xs: &[f32], scale: f32, sigma: f32, out: &mut [f32], c: &Curve) -> f32 {
    use std::arch::x86_64::*;
    let n = out.len();
    let body = n - n % 8;
    let k = QuantV::new(c);
    let sv = _mm256_set1_ps(scale);
    let nv = _mm256_set1_ps(sigma);
    // x / scale without a division where the result is quantized: q = x·r with r = 1/scale
    // (correctly rounded), then q + r·(x − q·scale) with the residual exact (FMA), which is the
    // correctly rounded quotient (Markstein 1990) wherever it is a normal number. A quotient below
    // the normal range quantizes to 0 either way (the step is far above it), and quantizing makes
    // the sign of a zero quotient irrelevant; other cases divide.
    let r = 1.0 / scale;
    let fast = c.quantize && scale.is_normal() && r.is_normal() && c.step >= 1e-30;
    let rv = _mm256_set1_ps(r);
    let mut acc = _mm256_setzero_ps();
    let mut o = 0;
    while o < body {
        // SAFETY: o + 8 ≤ n and both slices have length n.
        unsafe {
            let x = _mm256_loadu_ps(xs.as_ptr().add(o));
            let mut v = if fast {
                quotient(x, sv, rv)
            } else {
                _mm256_div_ps(x, sv)
            };
            if sigma > 0.0 {
                v = _mm256_add_ps(v, _mm256_mul_ps(nv, _mm256_loadu_ps(out.as_ptr().add(o))));
            }
            let q = k.convert(v);
            acc = _mm256_add_ps(acc, _mm256_mul_ps(q, q));
            _mm256_storeu_ps(out.as_mut_ptr().add(o), q);
        }
        o += 8;
    }
    let tail = &mut out[body..];
    dac_slice_portable(&xs[body..], scale, sigma, tail, c);
    let mut lanes = [0.0f32; 8];
    // SAFETY: 8 floats.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
    dot_finish(lanes, tail, tail)
}

/// The runs of one interior conv patch: for channel `ci < c` and kernel row `i < kh`, run
/// `r = ci·kh + i` is the `n` values at `g0 + ci·hw + i·w` of a sample's `[C, H, W]` grid and the
/// `n` values at `r·n` of the patch vector (`K = c·kh·n`).
#[derive(Clone, Copy, Debug)]
pub struct PatchRuns {
    pub g0: usize,
    pub c: usize,
    pub kh: usize,
    pub hw: usize,
    pub w: usize,
    pub n: usize,
}

impl PatchRuns {
    /// Whether there is nothing to move; else panics unless every run lies inside `grid` and
    /// `patch`.
    fn empty_or_check(&self, grid: usize, patch: usize) -> bool {
        if self.c * self.kh * self.n == 0 {
            return true;
        }
        let last = self.g0 + (self.c - 1) * self.hw + (self.kh - 1) * self.w + self.n;
        assert!(
            last <= grid && self.c * self.kh * self.n <= patch,
            "patch runs {self:?} past a grid of {grid} or a patch of {patch} values"
        );
        false
    }

    /// `patch[run] = grid[run]` for every run (im2row of one interior position).
    #[inline(always)]
    pub fn copy(&self, grid: &[f32], patch: &mut [f32]) {
        if self.empty_or_check(grid.len(), patch.len()) {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if self.n <= 8 && crate::simd::has_avx2_fma() {
            // SAFETY: AVX2 checked at run time; every run is inside both slices (checked above,
            // and there is at least one).
            unsafe { self.runs_avx2::<false>(grid.as_ptr().cast_mut(), patch.as_mut_ptr()) };
            return;
        }
        self.each(|g, p| patch[p..p + self.n].copy_from_slice(&grid[g..g + self.n]));
    }

    /// `grid[run] += patch[run]` for every run (row2im of one interior position; each grid value
    /// gets one addition, so the order of the runs does not matter).
    #[inline(always)]
    pub fn add(&self, patch: &[f32], grid: &mut [f32]) {
        if self.empty_or_check(grid.len(), patch.len()) {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if self.n <= 8 && crate::simd::has_avx2_fma() {
            // SAFETY: AVX2 checked at run time; every run is inside both slices (checked above,
            // and there is at least one).
            unsafe { self.runs_avx2::<true>(grid.as_mut_ptr(), patch.as_ptr().cast_mut()) };
            return;
        }
        self.each(|g, p| {
            for l in 0..self.n {
                grid[g + l] += patch[p + l];
            }
        });
    }

    /// `f(grid index, patch index)` of every run's first value.
    #[inline(always)]
    fn each(&self, mut f: impl FnMut(usize, usize)) {
        for ci in 0..self.c {
            for i in 0..self.kh {
                f(
                    self.g0 + ci * self.hw + i * self.w,
                    (ci * self.kh + i) * self.n,
                );
            }
        }
    }

    /// The runs with `n ≤ 8` lanes masked: `ADD` adds the patch into the grid, else copies the
    /// grid into the patch.
    ///
    /// # Safety
    /// AVX2; every run inside the memory behind both pointers; the grid pointer is written only
    /// with `ADD`, the patch pointer only without.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn runs_avx2<const ADD: bool>(&self, grid: *mut f32, patch: *mut f32) {
        use std::arch::x86_64::*;
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let m = _mm256_cmpgt_epi32(_mm256_set1_epi32(self.n as i32), lanes);
        for ci in 0..self.c {
            for i in 0..self.kh {
                // SAFETY: inside both slices (the caller's contract).
                unsafe {
                    let g = grid.add(self.g0 + ci * self.hw + i * self.w);
                    let p = patch.add((ci * self.kh + i) * self.n);
                    if ADD {
                        let v = _mm256_add_ps(_mm256_maskload_ps(g, m), _mm256_maskload_ps(p, m));
                        _mm256_maskstore_ps(g, m, v);
                    } else {
                        _mm256_maskstore_ps(p, m, _mm256_maskload_ps(g, m));
                    }
                }
            }
        }
    }
}

/// `o[ci·p + i0 + j] = ys[j·c + ci]·scale + bias[ci]` (a run's `[rows, C]` outputs into a sample's
/// `[C, P]` planes) on the blocks of 8 rows × 8 channels, transposed in registers where the CPU has
/// AVX2 (the same multiply then add, so the same bits as the element loop); returns how many rows
/// and channels it covered (multiples of 8; the caller does the rest; (0, 0) without AVX2).
#[inline(always)]
pub fn rows_to_chw_blocks(
    ys: &[f32],
    c: usize,
    i0: usize,
    p: usize,
    o: &mut [f32],
    scale: f32,
    bias: &[f32],
) -> (usize, usize) {
    let rows = ys.len() / c.max(1);
    let (rb, cb) = (rows - rows % 8, c - c % 8);
    if rb == 0 || cb == 0 {
        return (0, 0);
    }
    assert!(ys.len() >= rows * c && o.len() >= (c - 1) * p + i0 + rows && bias.len() >= c);
    #[cfg(target_arch = "x86_64")]
    if crate::simd::has_avx2_fma() {
        // SAFETY: AVX2 checked at run time; the bounds are asserted above.
        unsafe { rows_to_chw_avx2(ys, c, i0, p, o, scale, bias, rb, cb) };
        return (rb, cb);
    }
    (0, 0)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
fn rows_to_chw_avx2(
    ys: &[f32],
    c: usize,
    i0: usize,
    p: usize,
    o: &mut [f32],
    scale: f32,
    bias: &[f32],
    rb: usize,
    cb: usize,
) {
    use std::arch::x86_64::*;
    let sv = _mm256_set1_ps(scale);
    for c0 in (0..cb).step_by(8) {
        for j0 in (0..rb).step_by(8) {
            // SAFETY: rows j0..j0 + 8 ≤ rows and channels c0..c0 + 8 ≤ c (asserted by the caller).
            unsafe {
                let r = |k: usize| _mm256_loadu_ps(ys.as_ptr().add((j0 + k) * c + c0));
                let (r0, r1, r2, r3, r4, r5, r6, r7) =
                    (r(0), r(1), r(2), r(3), r(4), r(5), r(6), r(7));
                let t0 = _mm256_unpacklo_ps(r0, r1);
                let t1 = _mm256_unpackhi_ps(r0, r1);
                let t2 = _mm256_unpacklo_ps(r2, r3);
                let t3 = _mm256_unpackhi_ps(r2, r3);
                let t4 = _mm256_unpacklo_ps(r4, r5);
                let t5 = _mm256_unpackhi_ps(r4, r5);
                let t6 = _mm256_unpacklo_ps(r6, r7);
                let t7 = _mm256_unpackhi_ps(r6, r7);
                let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                let cols = [
                    _mm256_permute2f128_ps::<0x20>(u0, u4),
                    _mm256_permute2f128_ps::<0x20>(u1, u5),
                    _mm256_permute2f128_ps::<0x20>(u2, u6),
                    _mm256_permute2f128_ps::<0x20>(u3, u7),
                    _mm256_permute2f128_ps::<0x31>(u0, u4),
                    _mm256_permute2f128_ps::<0x31>(u1, u5),
                    _mm256_permute2f128_ps::<0x31>(u2, u6),
                    _mm256_permute2f128_ps::<0x31>(u3, u7),
                ];
                for (m, col) in cols.into_iter().enumerate() {
                    let ci = c0 + m;
                    let v = _mm256_add_ps(_mm256_mul_ps(col, sv), _mm256_set1_ps(bias[ci]));
                    _mm256_storeu_ps(o.as_mut_ptr().add(ci * p + i0 + j0), v);
                }
            }
        }
    }
}

/// Σ a_i·b_i with 8 interleaved partial sums (a fixed order, the same in both builds, so the
/// result depends on nothing but the operands).
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    #[cfg(target_arch = "x86_64")]
    if crate::simd::has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 (checked at run time); both slices have length n.
        return unsafe { dot_avx2(a, b) };
    }
    dot_portable(a, b)
}

#[inline(always)]
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    dot_finish(acc, ra, rb)
}

/// The fixed reduction of the 8 partial sums and the tail.
#[inline(always)]
fn dot_finish(acc: [f32; 8], ra: &[f32], rb: &[f32]) -> f32 {
    let mut tail = 0.0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// [`dot`] in AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len();
    let body = n - n % 8;
    let mut acc = _mm256_setzero_ps();
    let mut o = 0;
    while o < body {
        // SAFETY: o + 8 ≤ n = both lengths.
        unsafe {
            let p = _mm256_mul_ps(
                _mm256_loadu_ps(a.as_ptr().add(o)),
                _mm256_loadu_ps(b.as_ptr().add(o)),
            );
            acc = _mm256_add_ps(acc, p);
        }
        o += 8;
    }
    let mut lanes = [0.0f32; 8];
    // SAFETY: 8 floats.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
    dot_finish(lanes, &a[body..], &b[body..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Stream;

    /// The ADC of a row group's vectors of one tile ([`adc_rows`]: strided vectors, per-vector
    /// scales, a zero scale among them) gives, vector by vector, the bits and the peak of the
    /// definition on that vector alone, for tile widths with and without an 8-lane tail, and
    /// leaves the values between the tiles' vectors alone.
    #[test]
    fn the_adc_of_a_row_group_is_the_adc_of_each_vector() {
        let st = Stream::new(13, "rows");
        let c = Curve::new(12.0, Some(24.0 / 510.0));
        for (rows, n, stride) in [
            (1usize, 16usize, 16usize),
            (5, 16, 16),
            (7, 13, 20),
            (3, 40, 45),
        ] {
            let len = rows * stride;
            let y: Vec<f32> = (0..len as u64).map(|i| 9.0 * st.normal(i)).collect();
            let z: Vec<f32> = (0..len as u64).map(|i| st.normal(5000 + i)).collect();
            let sd: Vec<f32> = (0..len as u64).map(|i| st.uniform(9000 + i)).collect();
            let scales: Vec<f32> = (0..rows).map(|r| [0.5f32, 1.0, 0.0, 2.25][r % 4]).collect();
            for noise in [Noise::None, Noise::Const(0.3, &z), Noise::Var(&sd, &z)] {
                let mut q = vec![f32::NAN; len];
                let mut peaks = vec![f32::NAN; rows];
                let shape = TileRows { rows, n, stride };
                adc_rows(shape, &y, noise, &mut q, &c, &scales, &mut peaks);
                for r in 0..rows {
                    let v = r * stride..r * stride + n;
                    let mut want = vec![0.0f32; n];
                    let p = adc_vector_portable(
                        &y[v.clone()],
                        noise.at(v.clone()),
                        &mut want,
                        &c,
                        scales[r],
                    );
                    assert_eq!(
                        peaks[r].to_bits(),
                        p.to_bits(),
                        "peak: rows {rows} n {n} r {r}"
                    );
                    let got: Vec<u32> = q[v].iter().map(|x| x.to_bits()).collect();
                    let want: Vec<u32> = want.iter().map(|x| x.to_bits()).collect();
                    assert_eq!(got, want, "values: rows {rows} n {n} r {r}");
                    // Between this vector and the next: untouched.
                    let gap = r * stride + n..((r + 1) * stride).min(len);
                    assert!(q[gap].iter().all(|x| x.is_nan()), "rows {rows} n {n} r {r}");
                }
            }
        }
    }

    /// The vectorized curve rounds as [`Curve::convert`] on inputs a few ulps around every level
    /// and every midpoint between levels (where round-half-away and its shortcuts differ).
    #[test]
    fn the_vector_curve_rounds_near_midpoints_as_the_definition() {
        for (bits, bound) in [(9u32, 12.0f64), (7, 1.0), (4, 3.0)] {
            let c = Curve::new(bound, Some(2.0 * bound / ((1u64 << bits) - 2) as f64));
            let levels = (1i64 << (bits - 1)) + 1;
            let mut y = Vec::new();
            for k in -2 * levels..=2 * levels {
                let x = (k as f32 * 0.5) * c.step;
                for d in -4i32..=4 {
                    y.push(f32::from_bits((x.to_bits() as i32 + d) as u32));
                }
            }
            let mut q = vec![0.0f32; y.len()];
            adc_tile(&y, Noise::None, &mut q, &c, 1.0);
            for (v, got) in y.iter().zip(&q) {
                let want = c.convert(*v);
                assert_eq!(got.to_bits(), want.to_bits(), "{bits} bits: convert({v:e})");
            }
        }
    }

    /// The DAC's division-free quotient (x·r corrected by its FMA residual) is the correctly
    /// rounded x / s wherever that is a normal number: random scales over 2⁻⁴⁰..2⁴⁰ (and scales
    /// whose significand is all ones, or a power of two), inputs from 2⁻³⁰·s to s of either sign,
    /// and inputs one ulp around multiples of s·2⁻ᵏ (quotients next to short binary values).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_dac_quotient_is_the_division() {
        if !crate::simd::has_avx2_fma() {
            eprintln!("no AVX2 + FMA on this CPU: the portable DAC divides");
            return;
        }
        use std::arch::x86_64::*;
        let st = Stream::new(12, "quotient");
        let mut bad = 0usize;
        let mut checked = 0usize;
        for k in 0..3000u64 {
            let e = (st.uniform(k) * 80.0 - 40.0).floor();
            let m = match k % 10 {
                0 => 2.0 - f32::EPSILON,
                1 => 1.0,
                _ => 1.0 + st.uniform(10_000 + k),
            };
            let s = m * 2f32.powf(e);
            let r = 1.0 / s;
            let xs: Vec<f32> = (0..256u64)
                .map(|i| {
                    let j = k * 1000 + i;
                    let sign = if st.uniform(50_000_000 + j) < 0.5 {
                        -1.0
                    } else {
                        1.0
                    };
                    let v = if i % 2 == 0 {
                        s * 2f32.powf(-30.0 * st.uniform(60_000_000 + j))
                    } else {
                        // A multiple of s·2⁻⁸, moved by -1, 0 or +1 ulp.
                        let base = s * (st.uniform(70_000_000 + j) * 256.0).floor() / 256.0;
                        let bits = base.to_bits() as i64 + (i as i64 % 3) - 1;
                        f32::from_bits(bits.max(0) as u32)
                    };
                    sign * v
                })
                .collect();
            for c in xs.chunks_exact(8) {
                let mut got = [0.0f32; 8];
                // SAFETY: AVX2 and FMA checked above; 8 floats each.
                unsafe {
                    let q = quotient(
                        _mm256_loadu_ps(c.as_ptr()),
                        _mm256_set1_ps(s),
                        _mm256_set1_ps(r),
                    );
                    _mm256_storeu_ps(got.as_mut_ptr(), q);
                }
                for (x, g) in c.iter().zip(got) {
                    let want = x / s;
                    if want.is_normal() {
                        checked += 1;
                        bad += usize::from(g.to_bits() != want.to_bits());
                    }
                }
            }
        }
        assert!(checked > 500_000, "{checked} quotients checked");
        assert_eq!(
            bad, 0,
            "{bad} of {checked} quotients differ from the division"
        );
    }

    /// The AVX2 kernels give the portable kernels' bits (values near level midpoints, at the
    /// clip bounds, NaN, every tail length), and the portable ones follow `Curve::convert`.
    #[test]
    fn avx2_kernels_match_the_portable_ones() {
        let st = Stream::new(11, "kernels");
        for (bits, bound) in [(9u32, 12.0f64), (7, 1.0), (0, 3.0), (0, f64::INFINITY)] {
            let c = Curve::new(
                bound,
                (bits > 0).then(|| 2.0 * bound / ((1u64 << bits) - 2) as f64),
            );
            for n in [0usize, 1, 7, 8, 9, 31, 64, 77] {
                let mut y: Vec<f32> = (0..n as u64).map(|i| 14.0 * st.normal(i)).collect();
                if n > 3 {
                    // A midpoint between levels, a bound, a NaN.
                    y[1] = if bits > 0 { c.step * 2.5 } else { 1.0 };
                    y[2] = bound.min(1e30) as f32;
                    y[3] = f32::NAN;
                }
                if n > 12 && bits > 0 {
                    // Just below, at and just above half a step and one and a half steps.
                    let near = |v: f32, d: i32| f32::from_bits((v.to_bits() as i32 + d) as u32);
                    for (i, (v, d)) in [(0.5f32, -1), (0.5, 0), (0.5, 1), (1.5, -1), (-0.5, -1)]
                        .into_iter()
                        .enumerate()
                    {
                        y[4 + i] = near(v, d) * c.step;
                    }
                }
                let sd: Vec<f32> = (0..n as u64).map(|i| 0.1 + st.uniform(1000 + i)).collect();
                let z: Vec<f32> = (0..n as u64).map(|i| st.normal(2000 + i)).collect();
                for noise in [Noise::None, Noise::Const(0.3, &z), Noise::Var(&sd, &z)] {
                    let (mut a, mut b) = (vec![0.0f32; n], vec![0.0f32; n]);
                    let pa = adc_tile(&y, noise, &mut a, &c, 1.0);
                    let pb = adc_vector_portable(&y, noise, &mut b, &c, 1.0);
                    let (mut a2, mut b2) = (vec![0.0f32; n], vec![0.0f32; n]);
                    adc_tile(&y, noise, &mut a2, &c, 0.37);
                    adc_vector_portable(&y, noise, &mut b2, &c, 0.37);
                    let bits_of = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits_of(&a), bits_of(&b), "adc bits {bits} n {n}");
                    assert_eq!(pa.to_bits(), pb.to_bits(), "peak bits {bits} n {n}");
                    for o in 0..n {
                        let v = match noise {
                            Noise::None => y[o],
                            Noise::Const(s, z) => y[o] + s * z[o],
                            Noise::Var(s, z) => y[o] + s[o] * z[o],
                        };
                        assert_eq!(b[o].to_bits(), c.convert(v).to_bits());
                        assert_eq!(a2[o].to_bits(), b2[o].to_bits(), "scaled adc {bits} n {n}");
                        assert_eq!(b2[o].to_bits(), (c.convert(v) * 0.37).to_bits());
                    }
                }
                for sigma in [0.0f32, 0.05] {
                    let mut a = z.clone();
                    let mut b = z.clone();
                    let sa = dac_slice(&y, 1.7, sigma, &mut a, &c);
                    dac_slice_portable(&y, 1.7, sigma, &mut b, &c);
                    // Σ out² in the lanes of `dot`.
                    assert_eq!(sa.to_bits(), dot_portable(&b, &b).to_bits(), "dac Σ out²");
                    for o in 0..n {
                        assert_eq!(a[o].to_bits(), b[o].to_bits(), "dac {bits} n {n} o {o}");
                    }
                }
                let d = dot(&y[..n.min(2)], &z[..n.min(2)]);
                let e = dot_portable(&y[..n.min(2)], &z[..n.min(2)]);
                assert_eq!(d.to_bits(), e.to_bits());
                let (ys, zs): (Vec<f32>, Vec<f32>) = y
                    .iter()
                    .zip(&z)
                    .filter(|(v, _)| v.is_finite())
                    .map(|(a, b)| (*a, *b))
                    .unzip();
                let (d, e) = (dot(&ys, &zs), dot_portable(&ys, &zs));
                assert_eq!(d.to_bits(), e.to_bits(), "dot n {n}");
                let exact: f64 = ys.iter().zip(&zs).map(|(a, b)| *a as f64 * *b as f64).sum();
                let mag: f64 = ys
                    .iter()
                    .zip(&zs)
                    .map(|(a, b)| (*a as f64 * *b as f64).abs())
                    .sum();
                assert!(
                    (d as f64 - exact).abs() <= 1e-5 * mag.max(1.0),
                    "dot {d} vs {exact}"
                );
            }
        }
    }
}
