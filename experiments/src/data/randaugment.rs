//! A RandAugment-style policy (Cubuk et al. 2020; torchvision `RandAugment` semantics, simplified):
//! per image, `n` operations drawn uniformly from a fixed list, each at one global magnitude
//! `magnitude / 30` (torchvision's 31 bins) with a random sign where the op is signed. Operations
//! act on u8 CHW images: identity, auto-contrast, brightness, contrast, color (saturation, 3
//! channels; identity otherwise), solarize, posterize, translate-x, translate-y (zero fill).
//! Geometric shears/rotations and equalize/sharpness are not included.
//!
//! Draws: image `i` of epoch `e` uses draws `2n·i + 2k` (op) and `2n·i + 2k + 1` (sign) of the
//! epoch's stream, so the result does not depend on batch split or thread count.

use serde::{Deserialize, Serialize};
use sim::Stream;

/// The policy: `n` ops per image at magnitude `magnitude` (0..=30).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandAugment {
    /// Operations per image.
    pub n: usize,
    /// Magnitude bin, 0..=30 (torchvision's default is 9).
    pub magnitude: u32,
}

/// Number of operations in the list.
pub const NUM_OPS: u64 = 9;

impl RandAugment {
    /// Error unless the magnitude is in 0..=30.
    pub fn check(&self) -> Result<(), String> {
        if self.magnitude > 30 {
            return Err(format!(
                "randaugment magnitude must be in 0..=30, got {}",
                self.magnitude
            ));
        }
        Ok(())
    }

    /// Apply the policy to image `index` (u8 CHW of `shape`) with the epoch's stream `s`.
    pub fn apply(&self, img: &mut [u8], shape: [usize; 3], s: &Stream, index: usize) {
        let m = self.magnitude.min(30) as f32 / 30.0;
        for k in 0..self.n {
            let base = (2 * self.n * index + 2 * k) as u64;
            let op = s.below(base, NUM_OPS);
            let sign = if s.uniform(base + 1) < 0.5 { -1.0 } else { 1.0 };
            apply_op(img, shape, op, m, sign);
        }
    }
}

fn clamp_u8(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// Operation `op` at magnitude `m` in [0, 1] with sign `sign` (±1).
pub fn apply_op(img: &mut [u8], [c, h, w]: [usize; 3], op: u64, m: f32, sign: f32) {
    let plane = h * w;
    match op {
        // identity
        0 => {}
        // auto-contrast: stretch each channel to 0..255
        1 => {
            for ch in img.chunks_mut(plane) {
                let lo = *ch.iter().min().unwrap_or(&0) as f32;
                let hi = *ch.iter().max().unwrap_or(&255) as f32;
                if hi > lo {
                    ch.iter_mut()
                        .for_each(|v| *v = clamp_u8((*v as f32 - lo) * 255.0 / (hi - lo)));
                }
            }
        }
        // brightness: blend with black, factor 1 ± 0.9 m
        2 => {
            let f = 1.0 + sign * 0.9 * m;
            img.iter_mut().for_each(|v| *v = clamp_u8(*v as f32 * f));
        }
        // contrast: blend with the mean grey level
        3 => {
            let f = 1.0 + sign * 0.9 * m;
            let mean = img.iter().map(|&v| v as f32).sum::<f32>() / img.len().max(1) as f32;
            img.iter_mut()
                .for_each(|v| *v = clamp_u8(mean + (*v as f32 - mean) * f));
        }
        // color (saturation): blend with the per-pixel grey, 3 channels only
        4 if c == 3 => {
            let f = 1.0 + sign * 0.9 * m;
            for p in 0..plane {
                let (r, g, b) = (
                    img[p] as f32,
                    img[plane + p] as f32,
                    img[2 * plane + p] as f32,
                );
                let grey = 0.299 * r + 0.587 * g + 0.114 * b;
                for (ch, v) in [r, g, b].into_iter().enumerate() {
                    img[ch * plane + p] = clamp_u8(grey + (v - grey) * f);
                }
            }
        }
        // solarize: invert pixels above a threshold 255·(1 − m)
        5 => {
            let thr = 255.0 * (1.0 - m);
            img.iter_mut().for_each(|v| {
                if *v as f32 >= thr && m > 0.0 {
                    *v = 255 - *v
                }
            });
        }
        // posterize: keep 8 − round(4 m) bits
        6 => {
            let bits = 8 - (4.0 * m).round() as u32;
            let mask = (0xffu32 << (8 - bits)) as u8;
            img.iter_mut().for_each(|v| *v &= mask);
        }
        // translate x / y by ± round(0.33 m · size) pixels, zero fill
        7 | 8 => {
            let horizontal = op == 7;
            let size = if horizontal { w } else { h };
            let shift = (sign * (0.33 * m * size as f32).round()) as isize;
            if shift != 0 {
                let src = img.to_vec();
                for ch in 0..c {
                    for y in 0..h {
                        for x in 0..w {
                            let (sy, sx) = if horizontal {
                                (y as isize, x as isize - shift)
                            } else {
                                (y as isize - shift, x as isize)
                            };
                            let inside = sy >= 0 && sy < h as isize && sx >= 0 && sx < w as isize;
                            img[ch * plane + y * w + x] = if inside {
                                src[ch * plane + sy as usize * w + sx as usize]
                            } else {
                                0
                            };
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_do_what_they_say() {
        let shape = [1, 2, 3];
        let base: Vec<u8> = vec![10, 20, 30, 200, 220, 240];
        let run = |op, m, sign| {
            let mut v = base.clone();
            apply_op(&mut v, shape, op, m, sign);
            v
        };
        assert_eq!(run(0, 1.0, 1.0), base);
        assert_eq!(run(1, 0.0, 1.0), vec![0, 11, 22, 211, 233, 255]);
        assert_eq!(run(2, 0.0, 1.0), base, "magnitude 0 is the identity");
        assert_eq!(run(2, 1.0, -1.0), vec![1, 2, 3, 20, 22, 24]);
        assert_eq!(run(5, 0.5, 1.0), vec![10, 20, 30, 55, 35, 15]);
        assert_eq!(run(6, 1.0, 1.0), vec![0, 16, 16, 192, 208, 240]);
        assert_eq!(run(7, 1.0, 1.0), vec![0, 10, 20, 0, 200, 220]);
        assert_eq!(run(8, 1.0, -1.0), vec![200, 220, 240, 0, 0, 0]);
    }

    #[test]
    fn policy_is_keyed_by_image_and_checks_magnitude() {
        let ra = RandAugment { n: 2, magnitude: 9 };
        let s = Stream::new(1, "ra");
        let img: Vec<u8> = (0..48).map(|v| (v * 5) as u8).collect();
        let mut a = img.clone();
        let mut b = img.clone();
        ra.apply(&mut a, [3, 4, 4], &s, 7);
        ra.apply(&mut b, [3, 4, 4], &s, 7);
        assert_eq!(a, b);
        assert!(
            RandAugment {
                n: 1,
                magnitude: 31
            }
            .check()
            .is_err()
        );
    }
}
