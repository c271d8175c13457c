//! The 19 corruption functions. Each takes the 8-bit HWC image and its parameter tuple and
//! returns the corrupted image on the 0..255 float scale (truncation to `u8` happens in
//! `Corruption::apply_with_param`). Random fields are indexed by (field stream, element index).

use super::ops::{self, Border};
use super::plasma::plasma_fractal;
use super::{CorruptError, Corruption, Result, frost, jpeg, spatter};
use sim::rng::Stream;

fn to_unit(img: &[u8]) -> Vec<f64> {
    img.iter().map(|&v| v as f64 / 255.0).collect()
}

fn clip01_255(x: impl IntoIterator<Item = f64>) -> Vec<f64> {
    x.into_iter().map(|v| v.clamp(0.0, 1.0) * 255.0).collect()
}

fn perr<T>(c: Corruption, msg: &str) -> Result<T> {
    Err(CorruptError::Param {
        corruption: c.name(),
        msg: msg.to_string(),
    })
}

/// Dispatch.
pub(super) fn apply(
    c: Corruption,
    img: &[u8],
    h: usize,
    w: usize,
    p: &[f64],
    s: &Stream,
) -> Result<Vec<f64>> {
    use Corruption::*;
    Ok(match c {
        GaussianNoise => {
            let n = s.child("normal");
            clip01_255(
                to_unit(img)
                    .into_iter()
                    .enumerate()
                    .map(|(i, x)| x + p[0] * n.normal(i as u64) as f64),
            )
        }
        ShotNoise => {
            if p[0] <= 0.0 {
                return perr(c, "the photon count c must be > 0");
            }
            let u = s.child("poisson");
            clip01_255(
                to_unit(img)
                    .into_iter()
                    .enumerate()
                    .map(|(i, x)| poisson(&u, i as u64, x * p[0]) as f64 / p[0]),
            )
        }
        ImpulseNoise => {
            let (flip, salt) = (s.child("flip"), s.child("salt"));
            clip01_255(to_unit(img).into_iter().enumerate().map(|(i, x)| {
                if (flip.uniform(i as u64) as f64) < p[0] {
                    if (salt.uniform(i as u64) as f64) < 0.5 {
                        1.0
                    } else {
                        0.0
                    }
                } else {
                    x
                }
            }))
        }
        SpeckleNoise => {
            let n = s.child("normal");
            clip01_255(
                to_unit(img)
                    .into_iter()
                    .enumerate()
                    .map(|(i, x)| x + x * (p[0] * n.normal(i as u64) as f64)),
            )
        }
        GaussianBlur => {
            if p[0] < 0.0 {
                return perr(c, "sigma must be ≥ 0");
            }
            clip01_255(ops::gaussian_filter_hwc(
                &to_unit(img),
                h,
                w,
                3,
                p[0],
                4.0,
                Border::Nearest,
            ))
        }
        DefocusBlur => {
            if !(0.0..=8.0).contains(&p[0]) || p[1] <= 0.0 {
                return perr(c, "radius must be in 0..=8 and alias_blur > 0");
            }
            let k: Vec<f64> = ops::defocus_disk(p[0], p[1])
                .into_iter()
                .map(|v| v as f64)
                .collect();
            let x = to_unit(img);
            let mut out = vec![0.0; x.len()];
            for ch in 0..3 {
                let plane: Vec<f64> = (0..h * w).map(|i| x[i * 3 + ch]).collect();
                let f = ops::filter2d_plane(&plane, h, w, &k, 17, 17);
                for i in 0..h * w {
                    out[i * 3 + ch] = f[i];
                }
            }
            clip01_255(out)
        }
        GlassBlur => glass_blur(c, img, h, w, p, s)?,
        MotionBlur => {
            if p[0] < 0.0 || p[1] <= 0.0 {
                return perr(c, "radius must be ≥ 0 and sigma > 0");
            }
            let angle = -45.0 + 90.0 * s.child("angle").uniform(0) as f64;
            ops::motion_blur_u8(img, h, w, 3, p[0], p[1], angle)
                .into_iter()
                .map(|v| v as f64)
                .collect()
        }
        ZoomBlur => {
            if p.is_empty() || p.iter().any(|&z| z < 1.0) {
                return perr(c, "zoom factors must be a non-empty list of values ≥ 1");
            }
            // The reference runs in float32: x = float32(img/255), each zoom's output is cast to
            // float32 (scipy interpolates in double), summed, averaged and scaled in float32.
            let x32: Vec<f32> = img.iter().map(|&v| (v as f64 / 255.0) as f32).collect();
            let x: Vec<f64> = x32.iter().map(|&v| v as f64).collect();
            let mut acc = vec![0f32; x.len()];
            for &z in p {
                for (a, v) in acc.iter_mut().zip(ops::clipped_zoom(&x, h, w, 3, z)) {
                    *a += v as f32;
                }
            }
            let n = (p.len() + 1) as f32;
            x32.iter()
                .zip(acc)
                .map(|(&a, b)| ((a + b) / n).clamp(0.0, 1.0) * 255.0)
                .map(|v| v as f64)
                .collect()
        }
        Snow => snow(c, img, h, w, p, s)?,
        Frost => {
            let (idx, top, left) = frost::draws(h, w, &s.child("crop"))?;
            frost::frost_with(img, h, w, p, idx, top, left)?
        }
        Fog => {
            if p[1] <= 0.0 {
                return perr(c, "wibble decay must be > 0");
            }
            let mut x = to_unit(img);
            let max_val = x.iter().cloned().fold(f64::MIN, f64::max);
            let size = h.max(w).next_power_of_two();
            let pl = plasma_fractal(size, p[1], &s.child("plasma"));
            for i in 0..h {
                for j in 0..w {
                    for ch in 0..3 {
                        x[(i * w + j) * 3 + ch] += p[0] * pl[i * size + j];
                    }
                }
            }
            let den = max_val + p[0];
            if den == 0.0 {
                return Ok(vec![0.0; x.len()]);
            }
            clip01_255(x.into_iter().map(|v| v * max_val / den))
        }
        Brightness => hsv_map(img, |hsv| [hsv[0], hsv[1], (hsv[2] + p[0]).clamp(0.0, 1.0)]),
        Saturate => hsv_map(img, |hsv| {
            [hsv[0], (hsv[1] * p[0] + p[1]).clamp(0.0, 1.0), hsv[2]]
        }),
        Contrast => {
            let x = to_unit(img);
            let mut mean = [0.0f64; 3];
            for i in 0..h * w {
                for ch in 0..3 {
                    mean[ch] += x[i * 3 + ch];
                }
            }
            for m in mean.iter_mut() {
                *m /= (h * w) as f64;
            }
            clip01_255(
                x.iter()
                    .enumerate()
                    .map(|(i, &v)| (v - mean[i % 3]) * p[0] + mean[i % 3]),
            )
        }
        ElasticTransform => elastic(c, img, h, w, p, s)?,
        Pixelate => {
            if !(p[0] > 0.0 && p[0] <= 1.0) {
                return perr(c, "the scale factor must be in (0, 1]");
            }
            let oh = ((h as f64 * p[0]) as usize).max(1);
            let ow = ((w as f64 * p[0]) as usize).max(1);
            let small = ops::resize_box_u8(img, h, w, oh, ow);
            ops::resize_box_u8(&small, oh, ow, h, w)
                .into_iter()
                .map(|v| v as f64)
                .collect()
        }
        JpegCompression => {
            if !(1.0..=100.0).contains(&p[0]) {
                return perr(c, "JPEG quality must be in 1..=100");
            }
            jpeg::roundtrip(img, h, w, p[0] as u8)?
                .into_iter()
                .map(|v| v as f64)
                .collect()
        }
        Spatter => spatter::spatter(c, img, h, w, p, s)?,
    })
}

fn hsv_map(img: &[u8], f: impl Fn([f64; 3]) -> [f64; 3]) -> Vec<f64> {
    let x = to_unit(img);
    let mut out = Vec::with_capacity(x.len());
    for px in x.chunks_exact(3) {
        let rgb = ops::hsv2rgb(f(ops::rgb2hsv([px[0], px[1], px[2]])));
        out.extend(rgb.iter().map(|v| v.clamp(0.0, 1.0) * 255.0));
    }
    out
}

/// ln(k!) (exact sum for small k, Stirling series beyond).
fn ln_factorial(k: f64) -> f64 {
    if k < 20.0 {
        let mut s = 0.0;
        let mut i = 2.0;
        while i <= k {
            s += f64::ln(i);
            i += 1.0;
        }
        s
    } else {
        let n = k;
        n * n.ln() - n + 0.5 * (2.0 * std::f64::consts::PI * n).ln() + 1.0 / (12.0 * n)
            - 1.0 / (360.0 * n * n * n)
            + 1.0 / (1260.0 * n.powi(5))
    }
}

/// Poisson(λ) sample for element `i`: uniforms `i·2¹⁶ + j` of `u`. Knuth's product method for
/// λ < 10, Hörmann's PTRS (transformed rejection, as numpy uses) for λ ≥ 10.
fn poisson(u: &Stream, i: u64, lam: f64) -> u64 {
    let base = i << 16;
    let mut j = 0u64;
    let mut next = || {
        let v = u.uniform(base + j) as f64;
        j += 1;
        v
    };
    if lam <= 0.0 {
        return 0;
    }
    if lam < 10.0 {
        let l = (-lam).exp();
        let mut k = 0u64;
        let mut prod = next();
        while prod > l {
            k += 1;
            prod *= next();
        }
        return k;
    }
    let slam = lam.sqrt();
    let loglam = lam.ln();
    let b = 0.931 + 2.53 * slam;
    let a = -0.059 + 0.02483 * b;
    let invalpha = 1.1239 + 1.1328 / (b - 3.4);
    let vr = 0.9277 - 3.6224 / (b - 2.0);
    for _ in 0..30000 {
        let uu = next() - 0.5;
        let v = next();
        let us = 0.5 - uu.abs();
        let k = ((2.0 * a / us + b) * uu + lam + 0.43).floor();
        if us >= 0.07 && v <= vr {
            return k as u64;
        }
        if k < 0.0 || (us < 0.013 && v > us) {
            continue;
        }
        if v.ln() + invalpha.ln() - (a / (us * us) + b).ln() <= -lam + k * loglam - ln_factorial(k)
        {
            return k as u64;
        }
    }
    // Not reached in practice (acceptance rate > 0.9 per try); fall back to the mean.
    lam.round() as u64
}

fn glass_blur(
    c: Corruption,
    img: &[u8],
    h: usize,
    w: usize,
    p: &[f64],
    s: &Stream,
) -> Result<Vec<f64>> {
    let (sigma, d, iters) = (p[0], p[1], p[2]);
    if sigma < 0.0
        || d < 1.0
        || d.fract() != 0.0
        || iters < 0.0
        || iters.fract() != 0.0
        || iters > 100.0
    {
        return perr(
            c,
            "need sigma ≥ 0, integer max_delta ≥ 1, integer iterations in 0..=100",
        );
    }
    let (d, iters) = (d as isize, iters as usize);
    if 2 * d + 1 > h.min(w) as isize {
        return perr(c, "max_delta too large for the image");
    }
    let r = s.child("shuffle");
    // draw `which` (0: dx, 1: dy) of pixel (hi, wi) in iteration `it`, as np.random.randint(−d, d)
    Ok(glass_blur_with(
        img,
        h,
        w,
        sigma,
        d,
        iters,
        |it, hi, wi, which| {
            let idx = (((it * h + hi) * w + wi) * 2 + which) as u64;
            r.below(idx, 2 * d as u64) as isize - d
        },
    ))
}

/// Glass blur with injected draws: `draw(iteration, row, col, 0 | 1)` returns the `dx` (0) or `dy`
/// (1) of `np.random.randint(−d, d, size=2)` for that pixel. `x8 = uint8(gaussian(x, σ)·255)`,
/// then for each iteration rows `h − d` down to `d + 1` and columns likewise, the reference's
/// "swap" of numpy rows (a copy: `x[h, w] = x[h + dy, w + dx]`), then `gaussian(x8/255, σ)`.
pub fn glass_blur_with(
    img: &[u8],
    h: usize,
    w: usize,
    sigma: f64,
    d: isize,
    iters: usize,
    mut draw: impl FnMut(usize, usize, usize, usize) -> isize,
) -> Vec<f64> {
    let g = ops::gaussian_filter_hwc(&to_unit(img), h, w, 3, sigma, 4.0, Border::Nearest);
    let mut x8: Vec<u8> = g.iter().map(|v| (v * 255.0) as u8).collect();
    let (hh, ww) = (h as isize, w as isize);
    for it in 0..iters {
        let mut hi = hh - d;
        while hi > d {
            let mut wi = ww - d;
            while wi > d {
                let dx = draw(it, hi as usize, wi as usize, 0);
                let dy = draw(it, hi as usize, wi as usize, 1);
                let (hp, wp) = (hi + dy, wi + dx);
                let src = ((hp * ww + wp) * 3) as usize;
                let dst = ((hi * ww + wi) * 3) as usize;
                for ch in 0..3 {
                    x8[dst + ch] = x8[src + ch];
                }
                wi -= 1;
            }
            hi -= 1;
        }
    }
    let x: Vec<f64> = x8.iter().map(|&v| v as f64 / 255.0).collect();
    clip01_255(ops::gaussian_filter_hwc(
        &x,
        h,
        w,
        3,
        sigma,
        4.0,
        Border::Nearest,
    ))
}

fn snow(c: Corruption, img: &[u8], h: usize, w: usize, p: &[f64], s: &Stream) -> Result<Vec<f64>> {
    if p[1] < 0.0 || p[2] < 1.0 || p[4] < 0.0 || p[5] <= 0.0 || !(0.0..=1.0).contains(&p[6]) {
        return perr(
            c,
            "need scale ≥ 0, zoom ≥ 1, radius ≥ 0, sigma > 0, mix in 0..=1",
        );
    }
    let n = s.child("layer");
    let z: Vec<f64> = (0..h * w).map(|i| n.normal(i as u64) as f64).collect();
    let angle = -135.0 + 90.0 * s.child("angle").uniform(0) as f64;
    Ok(snow_with(img, h, w, p, &z, angle))
}

/// Snow with injected randomness: `z` is the standard-normal field (`h·w`, the layer is
/// `p₀ + p₁·z`) and `angle` the motion-blur angle in degrees. The layer is zoomed
/// (`clipped_zoom`, float64), thresholded, stored as uint8, motion-blurred (ImageMagick model) and
/// divided by 255; the image part runs in float32 as the reference's
/// (`c₆·x + (1 − c₆)·max(x, gray·1.5 + 0.5)` with OpenCV's RGB→gray), and the final sum
/// `x + layer + rot180(layer)` in float64.
pub fn snow_with(img: &[u8], h: usize, w: usize, p: &[f64], z: &[f64], angle: f64) -> Vec<f64> {
    let layer: Vec<f64> = z.iter().map(|&v| p[0] + p[1] * v).collect();
    let mut layer = ops::clipped_zoom(&layer, h, w, 1, p[2]);
    for v in layer.iter_mut() {
        if *v < p[3] {
            *v = 0.0;
        }
    }
    let l8: Vec<u8> = layer
        .iter()
        .map(|v| (v.clamp(0.0, 1.0) * 255.0) as u8)
        .collect();
    let blurred = ops::motion_blur_u8(&l8, h, w, 1, p[4], p[5], angle);
    let layer: Vec<f64> = blurred.iter().map(|&v| v as f64 / 255.0).collect();
    let x: Vec<f32> = img.iter().map(|&v| v as f32 / 255.0).collect();
    let (c6, c6m) = (p[6] as f32, (1.0 - p[6]) as f32);
    let mut out = vec![0.0; x.len()];
    for i in 0..h {
        for j in 0..w {
            let k = (i * w + j) * 3;
            let gray = x[k] * 0.299f32 + x[k + 1] * 0.587f32 + x[k + 2] * 0.114f32;
            let l1 = layer[i * w + j];
            let l2 = layer[(h - 1 - i) * w + (w - 1 - j)]; // rot90(layer, 2)
            for ch in 0..3 {
                let v = x[k + ch];
                let v = c6 * v + c6m * v.max(gray * 1.5 + 0.5);
                out[k + ch] = ((v as f64 + l1) + l2).clamp(0.0, 1.0) * 255.0;
            }
        }
    }
    out
}

fn elastic(
    c: Corruption,
    img: &[u8],
    h: usize,
    w: usize,
    p: &[f64],
    s: &Stream,
) -> Result<Vec<f64>> {
    let (alpha, sigma, aff) = (p[0], p[1], p[2]);
    if alpha < 0.0 || sigma < 0.0 || aff < 0.0 {
        return perr(c, "alpha, sigma and affine must be ≥ 0");
    }
    let ua = s.child("affine");
    let au: [f64; 6] = std::array::from_fn(|t| ua.uniform(t as u64) as f64);
    let (ux, uy) = (s.child("dx"), s.child("dy"));
    let dxu: Vec<f64> = (0..h * w).map(|i| ux.uniform(i as u64) as f64).collect();
    let dyu: Vec<f64> = (0..h * w).map(|i| uy.uniform(i as u64) as f64).collect();
    elastic_with(img, h, w, p, &au, &dxu, &dyu).ok_or_else(|| CorruptError::Param {
        corruption: c.name(),
        msg: "degenerate affine transform".into(),
    })
}

/// Elastic transform with injected uniforms in [0, 1): `affine_u` for the 3×2 point offsets
/// (`U(−c₂, c₂) = −c₂ + 2c₂·u`, row-major), `dx_u`, `dy_u` for the two displacement fields
/// (`U(−1, 1)`). Float32 image; OpenCV-3.4 `warpAffine` (1/32-pixel quantised, BORDER_REFLECT_101);
/// fields `float32(gaussian(U, σ, mode='reflect', truncate=3)·α)`; scipy `map_coordinates(order=1,
/// mode='reflect')`; `clip(·, 0, 1)·255` in float32. `None` for a degenerate affine transform.
pub fn elastic_with(
    img: &[u8],
    h: usize,
    w: usize,
    p: &[f64],
    affine_u: &[f64; 6],
    dx_u: &[f64],
    dy_u: &[f64],
) -> Option<Vec<f64>> {
    let (alpha, sigma, aff) = (p[0], p[1], p[2]);
    let x: Vec<f32> = img.iter().map(|&v| v as f32 / 255.0).collect();
    // Reference: centre = shape//2, square = min(shape)//3, points as (x, y) built from
    // (row, col) pairs (identical for square images), in float32.
    let (cy, cx) = ((h / 2) as f32, (w / 2) as f32);
    let sq = (h.min(w) / 3) as f32;
    let pts1 = [[cy + sq, cx + sq], [cy + sq, cx - sq], [cy - sq, cx - sq]];
    let mut pts2 = pts1;
    for (k, pt) in pts2.iter_mut().enumerate() {
        for (l, v) in pt.iter_mut().enumerate() {
            *v += (-aff + 2.0 * aff * affine_u[k * 2 + l]) as f32;
        }
    }
    let to64 = |p: [[f32; 2]; 3]| p.map(|q| q.map(|v| v as f64));
    let m = ops::affine_from_points(to64(pts1), to64(pts2))?;
    let warped: Vec<f64> = ops::warp_affine_f32(&x, h, w, 3, m)
        .into_iter()
        .map(|v| v as f64)
        .collect();
    let field = |u: &[f64]| -> Vec<f64> {
        let raw: Vec<f64> = u.iter().map(|&u| -1.0 + 2.0 * u).collect();
        ops::gaussian_filter_hwc(&raw, h, w, 1, sigma, 3.0, Border::Reflect)
            .into_iter()
            .map(|v| ((v * alpha) as f32) as f64)
            .collect()
    };
    let (dx, dy) = (field(dx_u), field(dy_u));
    Some(
        ops::map_coordinates_order1_reflect(&warped, h, w, 3, &dy, &dx)
            .into_iter()
            .map(|v| (v.clamp(0.0, 1.0) * 255.0) as f64)
            .collect(),
    )
}
