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
//!
//! ## I/O management
//!
//! The converters also carry aihwkit's input/output management of a read (same defaults as
//! `IOParameters()`; `IBM/aihwkit:src/rpucuda/rpu_forward_backward_pass.cpp`):
//!
//! * **noise management** (on the DAC, default `abs_max`): each input vector `x` of a read is sent
//!   through the DAC as `x / α` and the read's result multiplied by `α`, with α = max|x_i| (capped at
//!   `nm_thres` when that is > 0), so the DAC range is used fully and never clips; an all-zero
//!   vector reads exactly zero ([`noise_management_scale`]). `constant` uses α = `nm_thres`.
//! * **bound management** (on the ADC, default `iterative`): when any output of a read is out of
//!   ±bound (after its noise), the whole output vector is read again with its input divided by a
//!   reduction r = 2, 4, 8, … and the result multiplied by r, until nothing saturates or after the
//!   read with r > `max_bm_factor` (1000) or r > `max_bm_res`/(DAC resolution) (0.25·126 = 31.5 for
//!   the 7-bit DAC, so at most r = 32: six reads); that last read is kept, clipped
//!   ([`bound_management_last_reduction`]). Every re-read is a new conversion with its own noise.
//!
//! Where a read is realized (`ep::substrate`) applies them; the converters' own `convert` methods
//! are the plain transfer curves.

use serde::{Deserialize, Serialize};
use sim::analog::{Converter as EngineConverter, Curve};
use sim::{Error, Result, Stream};

use crate::check;

pub use sim::netlist::{BoundManagement, NoiseManagement};

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
fn abs_max() -> NoiseManagement {
    NoiseManagement::AbsMax
}
fn iterative() -> BoundManagement {
    BoundManagement::Iterative
}
fn max_bm_factor() -> u32 {
    1000
}
fn max_bm_res() -> f64 {
    0.25
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
    /// Input scaling of every read through this DAC (module doc; aihwkit default `abs_max`).
    #[serde(default = "abs_max")]
    pub noise_management: NoiseManagement,
    /// Cap of the abs-max scale / the constant scale; 0 = no cap (aihwkit `nm_thres`, default 0).
    #[serde(default)]
    pub nm_thres: f64,
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
    /// What a saturated read does (module doc; aihwkit default `iterative`).
    #[serde(default = "iterative")]
    pub bound_management: BoundManagement,
    /// Iterative bound management stops after the read with reduction r > this (aihwkit 1000).
    #[serde(default = "max_bm_factor")]
    pub max_bm_factor: u32,
    /// … or after the read with r > `max_bm_res`·(2^bits − 2) of the DAC (aihwkit 0.25).
    #[serde(default = "max_bm_res")]
    pub max_bm_res: f64,
}

impl Default for Dac {
    fn default() -> Self {
        Dac {
            bits: dac_bits(),
            bound: 1.0,
            noise_std: 0.0,
            noise_management: abs_max(),
            nm_thres: 0.0,
        }
    }
}

impl Default for Adc {
    fn default() -> Self {
        Adc {
            bits: adc_bits(),
            bound: adc_bound(),
            noise_std: adc_noise(),
            bound_management: iterative(),
            max_bm_factor: max_bm_factor(),
            max_bm_res: max_bm_res(),
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

/// Number of steps between the levels −bound and +bound of a `bits`-bit converter (`bits` > 0).
#[inline]
fn steps_of(bits: u32) -> f64 {
    ((1u64 << bits) - 2) as f64
}

/// Level spacing of a `bits`-bit converter over ±`bound` (`bits` > 0).
#[inline]
fn step_of(bits: u32, bound: f64) -> f64 {
    2.0 * bound / steps_of(bits)
}

/// Quantize `x` (already clipped to ±bound) with `bits` over ±bound; see the module doc.
#[inline]
fn quantize(x: f64, bits: u32, bound: f64) -> f64 {
    if bits == 0 {
        return x;
    }
    let step = step_of(bits, bound);
    let half = steps_of(bits) / 2.0;
    (x / step).round().clamp(-half, half) * step
}

/// Noise, clip, quantize one value.
#[inline]
fn convert(x: f64, noise: f64, bits: u32, bound: f64) -> f64 {
    quantize((x + noise).clamp(-bound, bound), bits, bound)
}

impl Dac {
    /// A transparent DAC: no quantization, no clipping, no noise, no input scaling.
    pub fn ideal() -> Self {
        Dac {
            bits: 0,
            bound: f64::INFINITY,
            noise_std: 0.0,
            noise_management: NoiseManagement::None,
            nm_thres: 0.0,
        }
    }

    /// Check every parameter; the error names the field.
    pub fn validate(&self) -> Result<()> {
        validate("dac", self.bits, self.bound, self.noise_std)?;
        check::non_negative("dac", "nm_thres", self.nm_thres)
    }
}

impl Adc {
    /// A transparent ADC: no quantization, no clipping, no noise, no bound management.
    pub fn ideal() -> Self {
        Adc {
            bits: 0,
            bound: f64::INFINITY,
            noise_std: 0.0,
            bound_management: BoundManagement::None,
            max_bm_factor: max_bm_factor(),
            max_bm_res: max_bm_res(),
        }
    }

    /// Check every parameter; the error names the field.
    pub fn validate(&self) -> Result<()> {
        validate("adc", self.bits, self.bound, self.noise_std)?;
        if self.max_bm_factor == 0 {
            return Err(Error::param("adc", "`max_bm_factor` = 0 must be ≥ 1"));
        }
        check::positive("adc", "max_bm_res", self.max_bm_res)
    }
}

/// The noise-management scale α of one input vector `xs` (see the module doc): 1 for `none`,
/// max|x_i| (capped at `nm_thres` when > 0) for `abs_max` (0 for an all-zero vector), `nm_thres`
/// (or 1 when it is 0) for `constant`. Evaluated in the engine (`sim::analog`), which every read
/// calls.
pub use sim::analog::noise_management_scale;

/// The input reduction r of the last read iterative bound management may make: the first power of
/// two r = 1, 2, 4, … with r > `max_bm_factor` or, with a quantizing DAC of `dac_bits`,
/// r > `max_bm_res`·(2^dac_bits − 2) (aihwkit's stopping rule, checked after each read). With
/// aihwkit's defaults (1000, 0.25, 7 bits): 32.
pub fn bound_management_last_reduction(max_bm_factor: u32, max_bm_res: f64, dac_bits: u32) -> u64 {
    let res_limit = if dac_bits > 0 {
        max_bm_res * ((1u64 << dac_bits) - 2) as f64
    } else {
        f64::INFINITY
    };
    let mut r = 1u64;
    while !(r > max_bm_factor as u64 || r as f64 > res_limit) {
        r *= 2;
    }
    r
}

macro_rules! converter_impl {
    ($t:ty) => {
        impl $t {
            /// Whether the plain conversion is the identity (no quantization, clipping or noise).
            pub fn is_transparent(&self) -> bool {
                self.bits == 0 && self.bound.is_infinite() && self.noise_std == 0.0
            }

            /// Quantization step (level spacing), or `None` without quantization.
            pub fn step(&self) -> Option<f64> {
                (self.bits > 0).then(|| step_of(self.bits, self.bound))
            }

            /// The transfer curve with its parameters in f32 (noise excluded), for the f32 engine
            /// (`sim::analog`).
            pub fn curve_f32(&self) -> Curve {
                Curve::new(self.bound, self.step())
            }

            /// The part as the engine's crossbar reads take it (`sim::analog::Converter`): its
            /// curve, noise and saturation bound in f32.
            pub fn engine(&self) -> EngineConverter {
                EngineConverter::new(self.bound, self.step(), self.noise_std)
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

converter_impl!(Dac);
converter_impl!(Adc);

#[cfg(test)]
mod tests {
    use super::*;

    /// The f32 curve (`sim::analog::Curve` with the law's parameters) gives the converter's own level (to f32 rounding of the level), except within
    /// 1e-4 steps of a midpoint between two levels, where it may give the other neighbour.
    #[test]
    fn quant_matches_the_converter_curve() {
        for (bits, bound) in [
            (9u32, 12.0f64),
            (7, 1.0),
            (0, 3.0),
            (0, f64::INFINITY),
            (4, 0.5),
        ] {
            let a = Adc {
                bits,
                bound,
                noise_std: 0.0,
                ..Adc::ideal()
            };
            let q = a.curve_f32();
            let st = Stream::new(1, "q");
            let step = a.step().unwrap_or(1.0);
            let mut exact = 0;
            for i in 0..30_000u64 {
                let x = match i % 3 {
                    0 => st.normal(i) * 8.0,
                    // (near) ties between levels
                    1 => ((st.below(i, 600) as f64 - 300.0 + 0.5) * step) as f32,
                    _ => ((st.below(i, 600) as f64 - 300.0) * step) as f32,
                };
                let (got, want) = (q.convert(x), a.convert_noiseless(x));
                // The same level (an f32 product may round the level itself differently).
                if ((got - want) as f64).abs() <= 1e-6 * (want as f64).abs() {
                    exact += 1;
                    continue;
                }
                let v = (x as f64).clamp(-bound, bound) / step;
                let near_tie = (v - v.trunc()).abs() - 0.5;
                assert!(
                    near_tie.abs() < 1e-4 && ((got - want) as f64).abs() <= step * 1.0001,
                    "bits {bits} bound {bound} x {x}: {got} vs {want}"
                );
            }
            assert!(exact > 19_000, "bits {bits}: only {exact} identical");
        }
    }
}
