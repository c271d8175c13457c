//! Spatter (extra corruption) and the OpenCV operators its "water" branch uses, re-implemented:
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

/// OpenCV `distanceTransform(src, DIST_L2, 5)`: 5×5 chamfer distance (1, 1.4, 2.1969) to the
/// nearest zero pixel; pixels with no zero pixel anywhere keep a huge value.
pub fn distance_transform_l2_5(x: &[u8], h: usize, w: usize) -> Vec<f64> {
    const BIG: f64 = 1e9;
    let (a, b, c) = (1.0, 1.4, 2.1969);
    let mut d: Vec<f64> = x.iter().map(|&v| if v == 0 { 0.0 } else { BIG }).collect();
    let fwd: [(isize, isize, f64); 8] = [
        (-2, -1, c),
        (-2, 1, c),
        (-1, -2, c),
        (-1, -1, b),
        (-1, 0, a),
        (-1, 1, b),
        (-1, 2, c),
        (0, -1, a),
    ];
    let get = |d: &Vec<f64>, i: isize, j: isize| {
        if i < 0 || j < 0 || i >= h as isize || j >= w as isize {
            BIG
        } else {
            d[i as usize * w + j as usize]
        }
    };
    for i in 0..h as isize {
        for j in 0..w as isize {
            let k = i as usize * w + j as usize;
            let mut v = d[k];
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
            for &(di, dj, cost) in &fwd {
                v = v.min(get(&d, i - di, j - dj) + cost);
            }
            d[k] = v;
        }
    }
    d
}

/// OpenCV `blur(x, (3, 3))` (BORDER_REFLECT_101) on a float plane.
fn box3(x: &[f64], h: usize, w: usize) -> Vec<f64> {
    ops::filter2d_plane(x, h, w, &[1.0 / 9.0; 9], 3, 3)
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
    let raw: Vec<f64> = (0..h * w)
        .map(|i| p[0] + p[1] * n.normal(i as u64) as f64)
        .collect();
    let mut liquid = ops::gaussian_filter_hwc(&raw, h, w, 1, p[2], 4.0, Border::Nearest);
    for v in liquid.iter_mut() {
        if *v < p[3] {
            *v = 0.0;
        }
    }
    let x: Vec<f64> = img.iter().map(|&v| v as f64 / 255.0).collect();
    let mut out = vec![0.0; x.len()];
    if p[5] == 0.0 {
        let l8: Vec<u8> = liquid
            .iter()
            .map(|v| (v * 255.0).clamp(0.0, 255.0) as u8)
            .collect();
        let edges = canny(&l8, h, w, 50, 150);
        let inv: Vec<u8> = edges.iter().map(|&e| 255 - e).collect();
        let dist: Vec<f64> = distance_transform_l2_5(&inv, h, w)
            .into_iter()
            .map(|d| d.min(20.0))
            .collect();
        let dist8: Vec<u8> = box3(&dist, h, w)
            .into_iter()
            .map(|v| v.clamp(0.0, 255.0) as u8)
            .collect();
        let eq: Vec<f64> = equalize_hist(&dist8)
            .into_iter()
            .map(|v| v as f64)
            .collect();
        let ker = [-2.0, -1.0, 0.0, -1.0, 1.0, 1.0, 0.0, 1.0, 2.0];
        let f: Vec<f64> = ops::filter2d_plane(&eq, h, w, &ker, 3, 3)
            .into_iter()
            .map(|v| sat_u8(v) as f64)
            .collect();
        let b: Vec<f64> = box3(&f, h, w)
            .into_iter()
            .map(|v| sat_u8(v) as f64)
            .collect();
        let m: Vec<f64> = l8.iter().zip(&b).map(|(&l, &d)| l as f64 * d).collect();
        let mx = m.iter().cloned().fold(0.0, f64::max);
        let color = [175.0 / 255.0, 238.0 / 255.0, 238.0 / 255.0];
        for i in 0..h * w {
            let mm = if mx > 0.0 { m[i] / mx * p[4] } else { 0.0 };
            for ch in 0..3 {
                out[i * 3 + ch] = (x[i * 3 + ch] + mm * color[ch]).clamp(0.0, 1.0) * 255.0;
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
        let color = [63.0 / 255.0, 42.0 / 255.0, 20.0 / 255.0];
        for i in 0..h * w {
            for ch in 0..3 {
                out[i * 3 + ch] =
                    (x[i * 3 + ch] * (1.0 - m[i]) + m[i] * color[ch]).clamp(0.0, 1.0) * 255.0;
            }
        }
    }
    Ok(out)
}
