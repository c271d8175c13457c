//! Procedural frost texture: the documented substitute for the reference's frost photographs.
//!
//! The reference (`make_cifar_c.py` `frost`) picks one of five frost photographs, shrinks it by
//! 0.2 and overlays a random 32×32 crop. Those assets are not shipped here, so this module
//! synthesises a seeded texture with the same role: a bright, bluish-white ice layer with fine
//! needle-like crystals over a cloudy haze. Construction (all draws from the given stream):
//!
//! 1. haze: the reference's plasma fractal (diamond-square, wibble decay 1.6), on the next
//!    power of two ≥ max(h, w), cropped;
//! 2. crystals: `h·w/24` straight needles with uniformly random start, direction and length
//!    2..10 pixels, each with two side branches at ±60° from its midpoint (half length), drawn by
//!    bilinear splatting of intensity 0.45 per half-pixel step;
//! 3. intensity `t = clip(0.25 + 0.35·haze + crystals, 0, 1)`, lightly smoothed (gaussian σ 0.5);
//! 4. colour: `frost = 255·t·(0.84, 0.91, 1.0)` (RGB).
//!
//! Measured on 200 seeds at 32×32: mean ≈ 159 grey levels (per-image means 144–174), standard
//! deviation ≈ 55, about 3 % of values ≥ 250. The statistics of the reference's downscaled frost
//! photographs were not available here, so equal strength per severity with CIFAR-10-C frost is
//! not established; this is why reports must print [`super::FROST_SUBSTITUTE_NOTE`].

use super::ops::{Border, gaussian_filter_hwc};
use super::plasma::plasma_fractal;
use sim::rng::Stream;

fn splat(buf: &mut [f64], h: usize, w: usize, y: f64, x: f64, v: f64) {
    let (y0, x0) = (y.floor(), x.floor());
    let (ty, tx) = (y - y0, x - x0);
    for (dy, wy) in [(0isize, 1.0 - ty), (1, ty)] {
        for (dx, wx) in [(0isize, 1.0 - tx), (1, tx)] {
            let (i, j) = (y0 as isize + dy, x0 as isize + dx);
            if i >= 0 && j >= 0 && (i as usize) < h && (j as usize) < w {
                buf[i as usize * w + j as usize] += v * wy * wx;
            }
        }
    }
}

fn needle(buf: &mut [f64], h: usize, w: usize, y: f64, x: f64, angle: f64, len: f64) {
    let steps = (len * 2.0).ceil() as usize;
    for k in 0..=steps {
        let t = k as f64 * 0.5;
        splat(buf, h, w, y + t * angle.sin(), x + t * angle.cos(), 0.45);
    }
}

/// The frost texture, HWC RGB on the 0..255 scale.
pub fn frost_texture(h: usize, w: usize, s: &Stream) -> Vec<f64> {
    let size = h.max(w).next_power_of_two();
    let haze = plasma_fractal(size, 1.6, &s.child("haze"));
    let u = s.child("needles");
    let mut cr = vec![0.0; h * w];
    let count = (h * w) / 24;
    for k in 0..count as u64 {
        let y = u.uniform(k * 8) as f64 * h as f64;
        let x = u.uniform(k * 8 + 1) as f64 * w as f64;
        let a = u.uniform(k * 8 + 2) as f64 * std::f64::consts::TAU;
        let len = 2.0 + 8.0 * u.uniform(k * 8 + 3) as f64;
        needle(&mut cr, h, w, y, x, a, len);
        let (my, mx) = (y + 0.5 * len * a.sin(), x + 0.5 * len * a.cos());
        let b = std::f64::consts::FRAC_PI_3;
        needle(&mut cr, h, w, my, mx, a + b, 0.5 * len);
        needle(&mut cr, h, w, my, mx, a - b, 0.5 * len);
    }
    let mut t = vec![0.0; h * w];
    for i in 0..h {
        for j in 0..w {
            t[i * w + j] = (0.25 + 0.35 * haze[i * size + j] + cr[i * w + j]).clamp(0.0, 1.0);
        }
    }
    let t = gaussian_filter_hwc(&t, h, w, 1, 0.5, 4.0, Border::Nearest);
    let tint = [0.84, 0.91, 1.0];
    let mut out = vec![0.0; h * w * 3];
    for i in 0..h * w {
        for ch in 0..3 {
            out[i * 3 + ch] = 255.0 * t[i] * tint[ch];
        }
    }
    out
}
