//! Spatter (extra corruption) and the OpenCV operators its "water" branch uses, re-implemented
//! (bit-exact with OpenCV 3.4.18 and 5.0 on CIFAR-derived liquid layers, see the tests):
//! Canny (Sobel 3×3 with replicated border, L1 magnitude, OpenCV's non-maximum suppression and
//! hysteresis), the 5×5 chamfer distance transform (DIST_L2, mask 5: 1, 1.4, 2.1969), box blur,
//! `equalizeHist`, and an 8-bit `filter2D`.

use super::ops::{self, Border, border_index};
use super::{CorruptError, Corruption, Result};
use sim::rng::Stream;

/// OpenCV `Canny(img, low, high)` on an 8-bit plane (aperture 3, L1 gradient). 255 on edges.
pub fn canny(x: &[u8], h: usize, w: usize, low: i32, high: i32) -> Vec<u8> {
    let px = |i: isize, j: isize| {
        x[border_index(i, h, Border::Nearest) * w + border_index(j, w, Border::Nearest)] as i32
    };
    let mut dx = vec![0i32; h * w];
    let mut dy = vec![0i32; h * w];
    let mut mag = vec![0i32; (h + 2) * (w + 2)]; // zero padded
    for i in 0..h as isize {
        for j in 0..w as isize {
            let gx = (px(i - 1, j + 1) + 2 * px(i, j + 1) + px(i + 1, j + 1))
                - (px(i - 1, j - 1) + 2 * px(i, j - 1) + px(i + 1, j - 1));
            let gy = (px(i + 1, j - 1) + 2 * px(i + 1, j) + px(i + 1, j + 1))
                - (px(i - 1, j - 1) + 2 * px(i - 1, j) + px(i - 1, j + 1));
            let k = i as usize * w + j as usize;
            dx[k] = gx;
            dy[k] = gy;
            mag[(i as usize + 1) * (w + 2) + j as usize + 1] = gx.abs() + gy.abs();
        }
    }
    const SHIFT: i64 = 15;
    let tg22 = (0.414_213_562_373_095_1 * (1i64 << SHIFT) as f64 + 0.5) as i64;
    let mg = |i: usize, j: usize| mag[i * (w + 2) + j] as i64; // padded coordinates
    // 2 = strong edge, 1 = candidate, 0 = none
    let mut map = vec![0u8; h * w];
    let mut stack = Vec::new();
    for i in 0..h {
        for j in 0..w {
            let (pi, pj) = (i + 1, j + 1);
            let m = mg(pi, pj);
            if m <= low as i64 {
                continue;
            }
            let xs = dx[i * w + j] as i64;
            let ys = dy[i * w + j] as i64;
            let xa = xs.abs();
            let ya = ys.abs() << SHIFT;
            let tg22x = xa * tg22;
            let keep = if ya < tg22x {
                m > mg(pi, pj - 1) && m >= mg(pi, pj + 1)
            } else {
                let tg67x = tg22x + (xa << (SHIFT + 1));
                if ya > tg67x {
                    m > mg(pi - 1, pj) && m >= mg(pi + 1, pj)
                } else {
                    let s: isize = if (xs ^ ys) < 0 { -1 } else { 1 };
                    m > mg(pi - 1, (pj as isize - s) as usize)
                        && m > mg(pi + 1, (pj as isize + s) as usize)
                }
            };
            if keep {
                if m > high as i64 {
                    map[i * w + j] = 2;
                    stack.push((i, j));
                } else {
                    map[i * w + j] = 1;
                }
            }
        }
    }
    while let Some((i, j)) = stack.pop() {
        for di in -1isize..=1 {
            for dj in -1isize..=1 {
                let (a, b) = (i as isize + di, j as isize + dj);
                if a < 0 || b < 0 || a >= h as isize || b >= w as isize {
                    continue;
                }
                let k = a as usize * w + b as usize;
                if map[k] == 1 {
                    map[k] = 2;
                    stack.push((a as usize, b as usize));
                }
            }
        }
    }
    map.into_iter()
        .map(|v| if v == 2 { 255 } else { 0 })
        .collect()
}

/// OpenCV `distanceTransform(src, DIST_L2, 5)`: two-pass 5×5 chamfer distance to the nearest zero
/// pixel with steps 1, 1.4, 2.1969 accumulated in float32 (5 diagonal steps give exactly 7.0, as
/// OpenCV 3.4.18 and 5.0 both return). Pixels with no zero pixel in reach keep a huge value.
pub fn distance_transform_l2_5(x: &[u8], h: usize, w: usize) -> Vec<f32> {
    const BIG: f32 = 1e30;
    let (a, b, c) = (1.0f32, 1.4f32, 2.1969f32);
    let mut d: Vec<f32> = x.iter().map(|&v| if v == 0 { 0.0 } else { BIG }).collect();
    let fwd: [(isize, isize, f32); 8] = [
        (-2, -1, c),
        (-2, 1, c),
        (-1, -2, c),
        (-1, -1, b),
        (-1, 0, a),
        (-1, 1, b),
        (-1, 2, c),
        (0, -1, a),
    ];
    let get = |d: &Vec<f32>, i: isize, j: isize| {
        if i < 0 || j < 0 || i >= h as isize || j >= w as isize {
            BIG
        } else {
            d[i as usize * w + j as usize]
        }
    };
    for i in 0..h as isize {
        for j in 0..w as isize {
            let k = i as usize * w + j as usize;
            if d[k] == 0.0 {
                continue;
            }
            let mut v = BIG;
            for &(di, dj, cost) in &fwd {
                v = v.min(get(&d, i + di, j + dj) + cost);
            }
            d[k] = v;
        }
    }
    for i in (0..h as isize).rev() {
        for j in (0..w as isize).rev() {
            let k = i as usize * w + j as usize;
            let mut v = d[k];
            if v > a {
                for &(di, dj, cost) in &fwd {
                    v = v.min(get(&d, i - di, j - dj) + cost);
                }
                d[k] = v;
            }
        }
    }
    d
}

/// OpenCV `blur(x, (3, 3))` (BORDER_REFLECT_101) on a float32 plane: sums in double, times 1/9,
/// cast to float32 (OpenCV's `ColumnSum<double, float>`).
fn box3_f32(x: &[f32], h: usize, w: usize) -> Vec<f32> {
    let mut out = vec![0f32; h * w];
    for i in 0..h as isize {
        for j in 0..w as isize {
            let mut s = 0.0f64;
            for di in -1..=1 {
                let si = border_index(i + di, h, Border::Mirror);
                for dj in -1..=1 {
                    s += x[si * w + border_index(j + dj, w, Border::Mirror)] as f64;
                }
            }
            out[i as usize * w + j as usize] = (s * (1.0 / 9.0)) as f32;
        }
    }
    out
}

/// OpenCV `equalizeHist` on an 8-bit plane.
pub fn equalize_hist(x: &[u8]) -> Vec<u8> {
    let mut hist = [0usize; 256];
    for &v in x {
        hist[v as usize] += 1;
    }
    let total = x.len();
    let mut i = 0;
    while i < 256 && hist[i] == 0 {
        i += 1;
    }
    if i == 256 {
        return x.to_vec();
    }
    if hist[i] == total {
        return vec![i as u8; total];
    }
    let scale = 255.0f32 / (total - hist[i]) as f32;
    let mut lut = [0u8; 256];
    let mut sum = 0usize;
    lut[i] = 0;
    for k in i + 1..256 {
        sum += hist[k];
        lut[k] = ((sum as f32 * scale).round_ties_even()).clamp(0.0, 255.0) as u8;
    }
    x.iter().map(|&v| lut[v as usize]).collect()
}

fn sat_u8(v: f64) -> u8 {
    v.round_ties_even().clamp(0.0, 255.0) as u8
}

/// The OpenCV chain of the "water" branch on the 8-bit liquid layer, returning its stages:
/// `[Canny(50, 150), blur₃(min(distanceTransform(255 − edges), 20)) as u8, equalizeHist,
/// blur₃(filter2D_8U([[-2,-1,0],[-1,1,1],[0,1,2]]))]`; the last one is the `dist` the reference
/// multiplies with the liquid layer.
pub fn water_stages(l8: &[u8], h: usize, w: usize) -> [Vec<u8>; 4] {
    let edges = canny(l8, h, w, 50, 150);
    let inv: Vec<u8> = edges.iter().map(|&e| 255 - e).collect();
    let dist: Vec<f32> = distance_transform_l2_5(&inv, h, w)
        .into_iter()
        .map(|d| d.min(20.0))
        .collect();
    let dist8: Vec<u8> = box3_f32(&dist, h, w).into_iter().map(|v| v as u8).collect();
    let eq = equalize_hist(&dist8);
    let eqf: Vec<f64> = eq.iter().map(|&v| v as f64).collect();
    let ker = [-2.0, -1.0, 0.0, -1.0, 1.0, 1.0, 0.0, 1.0, 2.0];
    let f: Vec<f64> = ops::filter2d_plane(&eqf, h, w, &ker, 3, 3)
        .into_iter()
        .map(|v| sat_u8(v) as f64)
        .collect();
    let f32s: Vec<f32> = f.iter().map(|&v| v as f32).collect();
    // 8-bit blur: integer sums times 1/9, rounded (sums of 9 integers never tie at .5).
    let b: Vec<u8> = box3_f32(&f32s, h, w)
        .into_iter()
        .map(|v| sat_u8(v as f64))
        .collect();
    [edges, dist8, eq, b]
}

/// Spatter: water (parameter 5 = 0) or mud (parameter 5 = 1), as `make_cifar_c.py` L278–330.
pub(super) fn spatter(
    c: Corruption,
    img: &[u8],
    h: usize,
    w: usize,
    p: &[f64],
    s: &Stream,
) -> Result<Vec<f64>> {
    if p[1] < 0.0 || p[2] < 0.0 || p[4] < 0.0 || !(p[5] == 0.0 || p[5] == 1.0) {
        return Err(CorruptError::Param {
            corruption: c.name(),
            msg: "need scale, sigma, strength ≥ 0 and kind 0 (water) or 1 (mud)".into(),
        });
    }
    let n = s.child("liquid");
    let z: Vec<f64> = (0..h * w).map(|i| n.normal(i as u64) as f64).collect();
    Ok(spatter_with(img, h, w, p, &z))
}

/// Spatter with an injected standard-normal field `z` (`h·w`, the liquid layer is `p₀ + p₁·z`),
/// in the reference's precisions: the liquid layer in float64; the water branch in float32 after
/// the OpenCV chain; the mud branch's smoothed mask in float64 (skimage 0.14 `gaussian` returned
/// float64) applied to the float32 image by in-place float32 updates.
pub fn spatter_with(img: &[u8], h: usize, w: usize, p: &[f64], z: &[f64]) -> Vec<f64> {
    let raw: Vec<f64> = z.iter().map(|&v| p[0] + p[1] * v).collect();
    let mut liquid = ops::gaussian_filter_hwc(&raw, h, w, 1, p[2], 4.0, Border::Nearest);
    for v in liquid.iter_mut() {
        if *v < p[3] {
            *v = 0.0;
        }
    }
    let x: Vec<f32> = img.iter().map(|&v| v as f32 / 255.0).collect();
    let mut out = vec![0.0; x.len()];
    if p[5] == 0.0 {
        let l8: Vec<u8> = liquid
            .iter()
            .map(|v| (v * 255.0).clamp(0.0, 255.0) as u8)
            .collect();
        let dist = &water_stages(&l8, h, w)[3];
        let m: Vec<f32> = l8
            .iter()
            .zip(dist)
            .map(|(&l, &d)| l as f32 * d as f32)
            .collect();
        let mx = m.iter().cloned().fold(0.0f32, f32::max);
        let color = [175.0 / 255.0, 238.0 / 255.0, 238.0 / 255.0].map(|v: f64| v as f32);
        let c4 = p[4] as f32;
        for i in 0..h * w {
            // The reference divides by the maximum (NaN when there is no liquid); 0 here.
            let mm = if mx > 0.0 { m[i] / mx * c4 } else { 0.0 };
            for ch in 0..3 {
                out[i * 3 + ch] = ((x[i * 3 + ch] + mm * color[ch]).clamp(0.0, 1.0) * 255.0) as f64;
            }
        }
    } else {
        let mask: Vec<f64> = liquid
            .iter()
            .map(|&v| if v > p[3] { 1.0 } else { 0.0 })
            .collect();
        let mut m = ops::gaussian_filter_hwc(&mask, h, w, 1, p[4], 4.0, Border::Nearest);
        for v in m.iter_mut() {
            if *v < 0.8 {
                *v = 0.0;
            }
        }
        let color = [63.0 / 255.0, 42.0 / 255.0, 20.0 / 255.0].map(|v: f64| v as f32);
        for i in 0..h * w {
            for ch in 0..3 {
                let col = (color[ch] as f64 * m[i]) as f32;
                let xv = (x[i * 3 + ch] as f64 * (1.0 - m[i])) as f32;
                out[i * 3 + ch] = ((xv + col).clamp(0.0, 1.0) * 255.0) as f64;
            }
        }
    }
    out
}
