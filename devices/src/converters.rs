//! Converters: DAC at the crossbar inputs, ADC at its outputs.
//!
//! Both quantize symmetrically over `[−bound, bound]` with `2^bits − 2` steps of width
//! `2·bound/(2^bits − 2)`, so 0 and ±bound are levels and there are `2^bits − 1` levels in all.
//! This is aihwkit's convention (`IBM/aihwkit:src/aihwkit/simulator/parameters/io.py`:
//! `inp_res = 1/(2^7 − 2)` "7-bit" DAC, `out_res = 1/(2^9 − 2)` "9-bit" ADC, resolution relative to
//! the full range). `bits = 0` means no quantization; `bound = inf` means no clipping.
//! Rounding is to the nearest level (halves away from zero); aihwkit's default is also deterministic
//! rounding (`inp_sto_round = out_sto_round = false`).
//!
//! Units are those of the normalized analog MVM (as in aihwkit): DAC input 1.0 is the full-scale read
//! voltage; ADC input/output are in weight × input units, with the weights' abs-max mapped to 1.
//!
//! Defaults ([`Default`]) are aihwkit's forward `IOParameters()`: DAC 7 bits over ±1
//! (`inp_bound = 1`), no input noise; ADC 9 bits over ±12 (`out_bound = 12`), additive Gaussian
//! output noise σ = 0.06 (`out_noise`) per conversion, added before clipping and quantization.
//! (aihwkit's noise/bound management, which rescales inputs per vector, is not part of these
//! converters.)

use serde::{Deserialize, Serialize};
use sim::{Error, Result, Stream};

use crate::check;

fn dac_bits() -> u32 {
    7
}
fn adc_bits() -> u32 {
    9
}
fn one() -> f64 {
    1.0
}
fn adc_bound() -> f64 {
    12.0
}
fn adc_noise() -> f64 {
    0.06
}

/// Digital-to-analog converter at the crossbar inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dac {
    /// Resolution in bits (0 = no quantization, else 2..=24).
    #[serde(default = "dac_bits")]
    pub bits: u32,
    /// Input range ±bound (normalized units; `inf` = no clipping).
    #[serde(default = "one")]
    pub bound: f64,
    /// Additive Gaussian noise σ after conversion (normalized units).
    #[serde(default)]
    pub noise_std: f64,
}

/// Analog-to-digital converter at the crossbar outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adc {
    /// Resolution in bits (0 = no quantization, else 2..=24).
    #[serde(default = "adc_bits")]
    pub bits: u32,
    /// Output range ±bound (normalized units; `inf` = no clipping).
    #[serde(default = "adc_bound")]
    pub bound: f64,
    /// Additive Gaussian output noise σ per conversion, before clipping (normalized units).
    #[serde(default = "adc_noise")]
    pub noise_std: f64,
}

impl Default for Dac {
    fn default() -> Self {
        Dac {
            bits: dac_bits(),
            bound: 1.0,
            noise_std: 0.0,
        }
    }
}

impl Default for Adc {
    fn default() -> Self {
        Adc {
            bits: adc_bits(),
            bound: adc_bound(),
            noise_std: adc_noise(),
        }
    }
}

fn validate(op: &'static str, bits: u32, bound: f64, noise_std: f64) -> Result<()> {
    if bits == 1 || bits > 24 {
        return Err(Error::param(
            op,
            format!("`bits` = {bits} must be 0 (no quantization) or in 2..=24"),
        ));
    }
    check::positive_or_inf(op, "bound", bound)?;
    if bits > 0 && bound.is_infinite() {
        return Err(Error::param(
            op,
            format!("`bits` = {bits} needs a finite `bound` (got inf)"),
        ));
    }
    check::non_negative(op, "noise_std", noise_std)
}

/// Quantize `x` (already clipped to ±bound) with `bits` over ±bound; see the module doc.
#[inline]
fn quantize(x: f64, bits: u32, bound: f64) -> f64 {
    if bits == 0 {
        return x;
    }
    let steps = ((1u64 << bits) - 2) as f64;
    let step = 2.0 * bound / steps;
    let half = steps / 2.0;
    (x / step).round().clamp(-half, half) * step
}

/// Noise, clip, quantize one value.
#[inline]
fn convert(x: f64, noise: f64, bits: u32, bound: f64) -> f64 {
    quantize((x + noise).clamp(-bound, bound), bits, bound)
}

macro_rules! converter_impl {
    ($t:ty, $op:literal, $ideal_doc:literal) => {
        impl $t {
            #[doc = $ideal_doc]
            pub fn ideal() -> Self {
                Self {
                    bits: 0,
                    bound: f64::INFINITY,
                    noise_std: 0.0,
                }
            }

            /// Check every parameter; the error names the field.
            pub fn validate(&self) -> Result<()> {
                validate($op, self.bits, self.bound, self.noise_std)
            }

            /// Quantization step (level spacing), or `None` without quantization.
            pub fn step(&self) -> Option<f64> {
                (self.bits > 0).then(|| 2.0 * self.bound / ((1u64 << self.bits) - 2) as f64)
            }

            /// Noise-free conversion of one value: clip to ±bound, round to the nearest level.
            pub fn convert_noiseless(&self, x: f32) -> f32 {
                convert(x as f64, 0.0, self.bits, self.bound) as f32
            }

            /// Convert `xs` in place: add noise (draw `i` of `stream.child("noise").sub(counter)` for
            /// element `i`), clip, quantize. Without noise no draw is made.
            pub fn convert(&self, xs: &mut [f32], counter: u64, stream: Stream) {
                if self.noise_std > 0.0 {
                    let s = stream.child("noise").sub(counter);
                    for (i, x) in xs.iter_mut().enumerate() {
                        let n = self.noise_std * s.normal(i as u64) as f64;
                        *x = convert(*x as f64, n, self.bits, self.bound) as f32;
                    }
                } else if self.bits > 0 || self.bound.is_finite() {
                    for x in xs.iter_mut() {
                        *x = convert(*x as f64, 0.0, self.bits, self.bound) as f32;
                    }
                }
            }
        }
    };
}

converter_impl!(
    Dac,
    "dac",
    "A transparent DAC: no quantization, no clipping, no noise."
);
converter_impl!(
    Adc,
    "adc",
    "A transparent ADC: no quantization, no clipping, no noise."
);
