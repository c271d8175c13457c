//! Image-processing building blocks re-implemented from the libraries `make_cifar_c.py` calls
//! (scipy.ndimage, skimage, Pillow, OpenCV, ImageMagick). Images are row-major planes or HWC
//! interleaved buffers of `f64`; every function documents which library behaviour it follows.

/// Boundary handling for out-of-range indices, named as in scipy.ndimage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Border {
    /// Clamp to the edge (`aaa|abcd|ddd`): scipy `nearest`, OpenCV `BORDER_REPLICATE`.
    Nearest,
    /// Half-sample symmetric (`ba|abcd|dc`): scipy `reflect`, OpenCV `BORDER_REFLECT`.
    Reflect,
    /// Whole-sample symmetric (`cb|abcd|cb`): scipy `mirror`, OpenCV `BORDER_REFLECT_101`.
    Mirror,
}

/// Map index `i` (possibly out of range) into `0..n` with border rule `b` (`n ≥ 1`).
#[inline]
pub fn border_index(i: isize, n: usize, b: Border) -> usize {
    let n = n as isize;
    if (0..n).contains(&i) {
        return i as usize;
    }
    match b {
        Border::Nearest => i.clamp(0, n - 1) as usize,
        Border::Reflect => {
            let p = 2 * n;
            let mut k = i.rem_euclid(p);
            if k >= n {
                k = p - 1 - k;
            }
            k as usize
        }
        Border::Mirror => {
            if n == 1 {
                return 0;
            }
            let p = 2 * n - 2;
            let mut k = i.rem_euclid(p);
            if k >= n {
                k = p - k;
            }
            k as usize
        }
    }
}

/// numpy's pairwise summation (`np.sum` of a contiguous float64 vector), so that kernel
/// normalisations match to the last bit.
pub fn np_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut s = 0.0;
        for &v in a {
            s += v;
        }
        s
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i + 8 <= n {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let n2 = (n / 2) & !7;
        np_sum(&a[..n2]) + np_sum(&a[n2..])
    }
}

/// scipy's 1-D gaussian kernel (`_gaussian_kernel1d`, order 0): `exp(-t²/(2σ²))` for
/// `t = -r..=r`, `r = int(truncate·σ + 0.5)`, normalised with numpy's summation.
pub fn gaussian_kernel1d(sigma: f64, truncate: f64) -> Vec<f64> {
    let r = (truncate * sigma + 0.5) as i64;
    let s2 = sigma * sigma;
    let k: Vec<f64> = (-r..=r)
        .map(|t| ((-0.5 / s2) * (t * t) as f64).exp())
        .collect();
    let s = np_sum(&k);
    k.into_iter().map(|v| v / s).collect()
}

/// Correlate a strided 1-D line with a symmetric kernel using scipy's summation order
/// (`NI_Correlate1D`, symmetric branch: `x₀w₀ + Σ_{j=r..1} (x₊ⱼ + x₋ⱼ)wⱼ`).
fn correlate_sym_line(src: &[f64], dst: &mut [f64], n: usize, stride: usize, k: &[f64], b: Border) {
    let r = (k.len() / 2) as isize;
    let at = |i: isize| src[border_index(i, n, b) * stride];
    for i in 0..n as isize {
        let mut acc = at(i) * k[r as usize];
        for j in (1..=r).rev() {
            acc += (at(i + j) + at(i - j)) * k[(r + j) as usize];
        }
        dst[i as usize * stride] = acc;
    }
}

/// `scipy.ndimage.gaussian_filter` on a `(h, w, c)` buffer with sigma `(σ, σ, 0)` (axis 0 then
/// axis 1; the channel axis is left alone), as skimage's `gaussian` calls it. `σ ≤ 1e-15` skips.
pub fn gaussian_filter_hwc(
    x: &[f64],
    h: usize,
    w: usize,
    c: usize,
    sigma: f64,
    truncate: f64,
    b: Border,
) -> Vec<f64> {
    if sigma <= 1e-15 {
        return x.to_vec();
    }
    let k = gaussian_kernel1d(sigma, truncate);
    let mut tmp = vec![0.0; x.len()];
    // axis 0 (rows): for each (col, ch) a line of length h with stride w·c
    let mut line = vec![0.0; h.max(w)];
    let mut out_line = vec![0.0; h.max(w)];
    for j in 0..w {
        for ch in 0..c {
            for i in 0..h {
                line[i] = x[(i * w + j) * c + ch];
            }
            correlate_sym_line(&line, &mut out_line, h, 1, &k, b);
            for i in 0..h {
                tmp[(i * w + j) * c + ch] = out_line[i];
            }
        }
    }
    let mut out = vec![0.0; x.len()];
    for i in 0..h {
        for ch in 0..c {
            for j in 0..w {
                line[j] = tmp[(i * w + j) * c + ch];
            }
            correlate_sym_line(&line, &mut out_line, w, 1, &k, b);
            for j in 0..w {
                out[(i * w + j) * c + ch] = out_line[j];
            }
        }
    }
    out
}

/// skimage `rgb2hsv` (v0.14): V = max, S = (max−min)/V, H by sequential overwrite (red, green,
/// blue max; the last wins on ties), `H = (h/6) mod 1` with numpy's remainder.
pub fn rgb2hsv(p: [f64; 3]) -> [f64; 3] {
    let [r, g, b] = p;
    let v = r.max(g).max(b);
    let delta = v - r.min(g).min(b);
    let s = if delta == 0.0 { 0.0 } else { delta / v };
    let mut h = 0.0;
    if r == v {
        h = (g - b) / delta;
    }
    if g == v {
        h = 2.0 + (b - r) / delta;
    }
    if b == v {
        h = 4.0 + (r - g) / delta;
    }
    let mut hh = np_remainder(h / 6.0, 1.0);
    if delta == 0.0 {
        hh = 0.0;
    }
    [hh, s, v]
}

/// numpy's float remainder (`np.remainder`, result takes the sign of the divisor).
pub fn np_remainder(a: f64, b: f64) -> f64 {
    let m = a % b;
    if m != 0.0 {
        if (b < 0.0) != (m < 0.0) { m + b } else { m }
    } else {
        0.0f64.copysign(b)
    }
}

/// skimage `hsv2rgb`: `hi = floor(6H) mod 6`, `f = 6H − floor(6H)` and the usual table.
pub fn hsv2rgb(p: [f64; 3]) -> [f64; 3] {
    let [h, s, v] = p;
    let hi_f = (h * 6.0).floor();
    let f = h * 6.0 - hi_f;
    let pp = v * (1.0 - s);
    let q = v * (1.0 - f * s);
    let t = v * (1.0 - (1.0 - f) * s);
    // numpy: hi.astype(uint8) % 6 (hi is 0..=6 here)
    let hi = (hi_f as i64).rem_euclid(256) % 6;
    match hi {
        0 => [v, t, pp],
        1 => [q, v, pp],
        2 => [pp, v, t],
        3 => [pp, q, v],
        4 => [t, pp, v],
        _ => [v, pp, q],
    }
}

/// Python's `round` (half to even), as scipy uses for zoom output sizes.
pub fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 {
        2.0 * (x / 2.0).round()
    } else {
        r
    }
}

/// `scipy.ndimage.zoom(order=1)` of a `(h, w, c)` buffer by `(z, z, 1)`: output size
/// `round(n·z)`, align-corners coordinates `in = out·(n_in−1)/(n_out−1)`, bilinear.
pub fn zoom_order1(x: &[f64], h: usize, w: usize, c: usize, z: f64) -> (Vec<f64>, usize, usize) {
    let oh = round_half_even(h as f64 * z) as usize;
    let ow = round_half_even(w as f64 * z) as usize;
    let scale = |n_in: usize, n_out: usize| {
        if n_out > 1 {
            (n_in as f64 - 1.0) / (n_out as f64 - 1.0)
        } else {
            0.0
        }
    };
    let (sy, sx) = (scale(h, oh), scale(w, ow));
    let mut out = vec![0.0; oh * ow * c];
    for i in 0..oh {
        let fy = i as f64 * sy;
        let y0 = (fy.floor() as usize).min(h - 1);
        let y1 = (y0 + 1).min(h - 1);
        let ty = fy - y0 as f64;
        for j in 0..ow {
            let fx = j as f64 * sx;
            let x0 = (fx.floor() as usize).min(w - 1);
            let x1 = (x0 + 1).min(w - 1);
            let tx = fx - x0 as f64;
            for ch in 0..c {
                let a = x[(y0 * w + x0) * c + ch];
                let b = x[(y0 * w + x1) * c + ch];
                let cc = x[(y1 * w + x0) * c + ch];
                let d = x[(y1 * w + x1) * c + ch];
                out[(i * ow + j) * c + ch] =
                    (1.0 - ty) * ((1.0 - tx) * a + tx * b) + ty * ((1.0 - tx) * cc + tx * d);
            }
        }
    }
    (out, oh, ow)
}

/// The reference's `clipped_zoom`: centre crop of `ceil(n/z)` pixels, zoom by `z` (order 1),
/// centre-trim back to `n`. Generalised per axis for non-square images (the reference uses the
/// height for both axes, which is the same thing for square inputs).
pub fn clipped_zoom(x: &[f64], h: usize, w: usize, c: usize, z: f64) -> Vec<f64> {
    let ch = ((h as f64 / z).ceil() as usize).clamp(1, h);
    let cw = ((w as f64 / z).ceil() as usize).clamp(1, w);
    let top = (h - ch) / 2;
    let left = (w - cw) / 2;
    let mut crop = Vec::with_capacity(ch * cw * c);
    for i in top..top + ch {
        crop.extend_from_slice(&x[(i * w + left) * c..(i * w + left + cw) * c]);
    }
    let (zz, zh, zw) = zoom_order1(&crop, ch, cw, c, z);
    let tt = zh.saturating_sub(h) / 2;
    let tl = zw.saturating_sub(w) / 2;
    let mut out = vec![0.0; h * w * c];
    for i in 0..h {
        for j in 0..w {
            // When the zoomed size falls short (not possible for z ≥ 1), edge-clamp.
            let si = (tt + i).min(zh - 1);
            let sj = (tl + j).min(zw - 1);
            for k in 0..c {
                out[(i * w + j) * c + k] = zz[(si * zw + sj) * c + k];
            }
        }
    }
    out
}

/// Pillow BOX resample coefficients (`precompute_coeffs`, Pillow 5.x box `[−0.5, 0.5)`),
/// converted to 22-bit fixed point as the 8-bit path does. Returns (xmin, weights) per output.
fn box_coeffs(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i64>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 0.5 * filterscale;
    let ss = 1.0 / filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
            let mut k: Vec<f64> = (0..xmax)
                .map(|x| {
                    let t = (x as f64 + xmin as f64 - center + 0.5) * ss;
                    if (-0.5..0.5).contains(&t) { 1.0 } else { 0.0 }
                })
                .collect();
            let ww: f64 = k.iter().sum();
            if ww != 0.0 {
                for v in k.iter_mut() {
                    *v /= ww;
                }
            }
            let fixed = k
                .iter()
                .map(|&v| {
                    let f = v * (1u64 << 22) as f64;
                    if v < 0.0 {
                        (f - 0.5) as i64
                    } else {
                        (f + 0.5) as i64
                    }
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

/// Pillow `Image.resize((ow, oh), BOX)` on an 8-bit RGB HWC image: horizontal pass, then vertical,
/// each rounding to 8 bits (`(Σ + 2²¹) >> 22`, clipped).
pub fn resize_box_u8(x: &[u8], h: usize, w: usize, oh: usize, ow: usize) -> Vec<u8> {
    let clip8 = |s: i64| ((s + (1 << 21)) >> 22).clamp(0, 255) as u8;
    let tmp = if ow != w {
        let cx = box_coeffs(w, ow);
        let mut t = vec![0u8; h * ow * 3];
        for i in 0..h {
            for (j, (xmin, k)) in cx.iter().enumerate() {
                for ch in 0..3 {
                    let s: i64 = k
                        .iter()
                        .enumerate()
                        .map(|(m, &wt)| x[(i * w + xmin + m) * 3 + ch] as i64 * wt)
                        .sum();
                    t[(i * ow + j) * 3 + ch] = clip8(s);
                }
            }
        }
        t
    } else {
        x.to_vec()
    };
    if oh == h {
        return tmp;
    }
    let cy = box_coeffs(h, oh);
    let mut out = vec![0u8; oh * ow * 3];
    for (i, (ymin, k)) in cy.iter().enumerate() {
        for j in 0..ow {
            for ch in 0..3 {
                let s: i64 = k
                    .iter()
                    .enumerate()
                    .map(|(m, &wt)| tmp[((ymin + m) * ow + j) * 3 + ch] as i64 * wt)
                    .sum();
                out[(i * ow + j) * 3 + ch] = clip8(s);
            }
        }
    }
    out
}

/// ImageMagick 6 `MotionBlurImage` on an 8-bit `(h, w, c)` image: one-sided gaussian kernel of
/// width `2·ceil(radius)+1` (`exp(−i²/2σ²)/(√(2π)σ)`, normalised), offsets
/// `(ceil(i·cos θ − ½), ceil(i·sin θ − ½))`, edge virtual pixels. The Q16 path is modelled as
/// accumulate `Σ kᵢ·(257·vᵢ)`, `ClampToQuantum` (round half up), 8-bit PNG export `q / 257`
/// (integer division). Checked bit-exact against ImageMagick 6.9.11-60 Q16 (`convert
/// -motion-blur RxS+A`) on CIFAR-10 test images for the motion_blur and snow parameters and
/// angles in −135°..45° (see the corruption tests).
pub fn motion_blur_u8(
    x: &[u8],
    h: usize,
    w: usize,
    c: usize,
    radius: f64,
    sigma: f64,
    angle_deg: f64,
) -> Vec<u8> {
    let width = 2 * (radius.ceil() as usize) + 1;
    let mut k: Vec<f64> = (0..width)
        .map(|i| {
            let i = i as f64;
            (-(i * i) / (2.0 * sigma * sigma)).exp() / ((2.0 * std::f64::consts::PI).sqrt() * sigma)
        })
        .collect();
    let norm: f64 = k.iter().sum();
    for v in k.iter_mut() {
        *v /= norm;
    }
    let theta = angle_deg.to_radians();
    let px = width as f64 * theta.sin();
    let py = width as f64 * theta.cos();
    let hyp = px.hypot(py);
    let offs: Vec<(isize, isize)> = (0..width)
        .map(|i| {
            let dx = ((i as f64 * py) / hyp - 0.5).ceil() as isize;
            let dy = ((i as f64 * px) / hyp - 0.5).ceil() as isize;
            (dx, dy)
        })
        .collect();
    let mut out = vec![0u8; x.len()];
    for yy in 0..h as isize {
        for xx in 0..w as isize {
            for ch in 0..c {
                let mut acc = 0.0;
                for (kk, &(dx, dy)) in k.iter().zip(offs.iter()) {
                    let sy = (yy + dy).clamp(0, h as isize - 1) as usize;
                    let sx = (xx + dx).clamp(0, w as isize - 1) as usize;
                    acc += kk * (x[(sy * w + sx) * c + ch] as f64 * 257.0);
                }
                let q = (acc + 0.5).floor().clamp(0.0, 65535.0) as u32;
                out[(yy as usize * w + xx as usize) * c + ch] = (q / 257) as u8;
            }
        }
    }
    out
}

/// Bilinear sample of channel `ch` of a `(h, w, c)` buffer at `(y, x)`, taps mapped by `b`.
#[inline]
#[allow(clippy::too_many_arguments)]
pub fn bilinear(
    x: &[f64],
    h: usize,
    w: usize,
    c: usize,
    ch: usize,
    y: f64,
    xx: f64,
    b: Border,
) -> f64 {
    let y0 = y.floor();
    let x0 = xx.floor();
    let ty = y - y0;
    let tx = xx - x0;
    let (y0, x0) = (y0 as isize, x0 as isize);
    let get = |i: isize, j: isize| x[(border_index(i, h, b) * w + border_index(j, w, b)) * c + ch];
    (1.0 - ty) * ((1.0 - tx) * get(y0, x0) + tx * get(y0, x0 + 1))
        + ty * ((1.0 - tx) * get(y0 + 1, x0) + tx * get(y0 + 1, x0 + 1))
}

/// `scipy.ndimage.map_coordinates(img, (i + dy, j + dx, ch), order=1, mode='reflect')` for a
/// float32 image held in `f64` (interpolated in double, returned as float32 as scipy does for a
/// float32 input). `dy`, `dx` are per-pixel displacements (row-major `h × w`).
pub fn map_coordinates_order1_reflect(
    img: &[f64],
    h: usize,
    w: usize,
    c: usize,
    dy: &[f64],
    dx: &[f64],
) -> Vec<f32> {
    let mut out = vec![0f32; img.len()];
    for i in 0..h {
        for j in 0..w {
            let (yy, xx) = (i as f64 + dy[i * w + j], j as f64 + dx[i * w + j]);
            for ch in 0..c {
                out[(i * w + j) * c + ch] =
                    bilinear(img, h, w, c, ch, yy, xx, Border::Reflect) as f32;
            }
        }
    }
    out
}

/// OpenCV `getAffineTransform`: the 2×3 matrix mapping `src[i]` to `dst[i]` (points as (x, y)).
pub fn affine_from_points(src: [[f64; 2]; 3], dst: [[f64; 2]; 3]) -> Option<[f64; 6]> {
    // Solve [x y 1] [a b c]^T = x', separately for each output coordinate (Cramer's rule).
    let det3 = |m: [[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let a = [
        [src[0][0], src[0][1], 1.0],
        [src[1][0], src[1][1], 1.0],
        [src[2][0], src[2][1], 1.0],
    ];
    let d = det3(a);
    if d.abs() < 1e-12 {
        return None;
    }
    let mut m = [0.0; 6];
    for out in 0..2 {
        let rhs = [dst[0][out], dst[1][out], dst[2][out]];
        for col in 0..3 {
            let mut b = a;
            for row in 0..3 {
                b[row][col] = rhs[row];
            }
            m[out * 3 + col] = det3(b) / d;
        }
    }
    Some(m)
}

/// OpenCV `warpAffine(src, M, INTER_LINEAR, BORDER_REFLECT_101)` of a float32 `(h, w, c)` buffer,
/// as OpenCV 3.4 computes it (the generation that made CIFAR-10-C; checked bit-exact against
/// OpenCV 3.4.18): `M` is inverted (`invertAffineTransform`), source coordinates are computed in
/// fixed point (`AB_BITS = 10`) and quantised to 1/32 pixel (`X = (round(M₀·x·1024) +
/// round((M₁·y + M₂)·1024) + 16) >> 5`), and each output is `s₀₀w₀ + s₀₁w₁ + s₁₀w₂ + s₁₁w₃` in
/// float32 with the interpolation-table weights `(1 − g)(1 − f)`, `(1 − g)f`, `g(1 − f)`, `gf`.
/// OpenCV 5 uses unquantised coordinates instead (differences up to ≈ 0.01 on the 0..1 scale).
pub fn warp_affine_f32(x: &[f32], h: usize, w: usize, c: usize, m: [f64; 6]) -> Vec<f32> {
    let det = m[0] * m[4] - m[1] * m[3];
    let det = if det != 0.0 { 1.0 / det } else { 0.0 };
    let a11 = m[4] * det;
    let a22 = m[0] * det;
    let a12 = -m[1] * det;
    let a21 = -m[3] * det;
    let b1 = -a11 * m[2] - a12 * m[5];
    let b2 = -a21 * m[2] - a22 * m[5];
    let sat = |v: f64| v.round_ties_even() as i64;
    let tab: Vec<f32> = (0..32).map(|i| i as f32 * (1.0f32 / 32.0)).collect();
    let mut out = vec![0f32; x.len()];
    for i in 0..h {
        let x0 = sat((a12 * i as f64 + b1) * 1024.0) + 16;
        let y0 = sat((a22 * i as f64 + b2) * 1024.0) + 16;
        for j in 0..w {
            let xx = (x0 + sat(a11 * j as f64 * 1024.0)) >> 5;
            let yy = (y0 + sat(a21 * j as f64 * 1024.0)) >> 5;
            let (sx, sy) = ((xx >> 5) as isize, (yy >> 5) as isize);
            let (fx, fy) = (tab[(xx & 31) as usize], tab[(yy & 31) as usize]);
            let wt = [
                (1.0 - fy) * (1.0 - fx),
                (1.0 - fy) * fx,
                fy * (1.0 - fx),
                fy * fx,
            ];
            let r0 = border_index(sy, h, Border::Mirror);
            let r1 = border_index(sy + 1, h, Border::Mirror);
            let c0 = border_index(sx, w, Border::Mirror);
            let c1 = border_index(sx + 1, w, Border::Mirror);
            for ch in 0..c {
                let g = |r: usize, cc: usize| x[(r * w + cc) * c + ch];
                out[(i * w + j) * c + ch] =
                    g(r0, c0) * wt[0] + g(r0, c1) * wt[1] + g(r1, c0) * wt[2] + g(r1, c1) * wt[3];
            }
        }
    }
    out
}

/// OpenCV `getGaussianKernel(3, σ)` (double, normalised, cast to float32).
fn cv_gauss3(sigma: f64) -> [f32; 3] {
    let e = (-1.0 / (2.0 * sigma * sigma)).exp();
    let s = 1.0 + 2.0 * e;
    [(e / s) as f32, (1.0 / s) as f32, (e / s) as f32]
}

/// The reference's `disk(radius, alias_blur)` for radius ≤ 8: the 17×17 aliased disk, normalised
/// in float32, then `cv2.GaussianBlur(ksize=3, σ=alias_blur)` as a separable float32 pass
/// (`c·k₁ + (l + r)·k₀`, BORDER_REFLECT_101). Returned as 17×17 row-major.
pub fn defocus_disk(radius: f64, alias_blur: f64) -> Vec<f32> {
    let n = 17usize;
    let mut d = vec![0f32; n * n];
    for (i, yy) in (-8i32..=8).enumerate() {
        for (j, xx) in (-8i32..=8).enumerate() {
            if ((xx * xx + yy * yy) as f64) <= radius * radius {
                d[i * n + j] = 1.0;
            }
        }
    }
    let s: f32 = d.iter().sum();
    for v in d.iter_mut() {
        *v /= s;
    }
    let k = cv_gauss3(alias_blur);
    let pass = |src: &[f32], horizontal: bool| {
        let mut o = vec![0f32; n * n];
        for i in 0..n {
            for j in 0..n {
                let get = |di: isize| {
                    if horizontal {
                        src[i * n + border_index(j as isize + di, n, Border::Mirror)]
                    } else {
                        src[border_index(i as isize + di, n, Border::Mirror) * n + j]
                    }
                };
                o[i * n + j] = get(0) * k[1] + (get(-1) + get(1)) * k[0];
            }
        }
        o
    };
    let t = pass(&d, true);
    pass(&t, false)
}

/// OpenCV `filter2D` (correlation, anchor at the centre, BORDER_REFLECT_101) of one plane.
pub fn filter2d_plane(x: &[f64], h: usize, w: usize, k: &[f64], kh: usize, kw: usize) -> Vec<f64> {
    let (ay, ax) = ((kh / 2) as isize, (kw / 2) as isize);
    let mut out = vec![0.0; h * w];
    for i in 0..h as isize {
        for j in 0..w as isize {
            let mut acc = 0.0;
            for u in 0..kh as isize {
                let si = border_index(i + u - ay, h, Border::Mirror);
                for v in 0..kw as isize {
                    let sj = border_index(j + v - ax, w, Border::Mirror);
                    acc += k[(u * kw as isize + v) as usize] * x[si * w + sj];
                }
            }
            out[(i * w as isize + j) as usize] = acc;
        }
    }
    out
}
