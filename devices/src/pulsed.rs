//! The update-capable device for on-substrate training: aihwkit's pulsed `LinearStepDevice` law,
//! which includes `SoftBoundsDevice` (γ = 1) and `ConstantStepDevice` (γ = 0).
//!
//! Source: `IBM/aihwkit:src/rpucuda/rpu_pulsed_device.cpp` (`PulsedRPUDevice::populate`) and
//! `src/rpucuda/rpu_linearstep_device.cpp` (`update_once_mult` / `update_once_add`). The state is the
//! weight `w` of one device in normalized units (aihwkit's convention: the device's symmetry point is
//! shifted to 0, bounds `[w_min, w_max]` contain 0). Per device `ij`, fixed at instantiation
//! (device-to-device variation, ξ standard normal):
//!
//! ```text
//! w_max_ij = w_max (1 + w_max_dtod ξ)         w_min_ij = w_min (1 + w_min_dtod ξ)
//! gain = 1 + dw_min_dtod ξ                    r = up_down_dtod ξ
//! up_bias = min(up_down, 0)                   down_bias = −max(up_down, 0)
//! scale_up = (up_bias + gain + r) dw_min      scale_down = (down_bias + gain − r) dw_min   (abs)
//! γ_up_ij = |γ_up + γ_up_dtod ξ|               γ_down_ij = |γ_down + γ_down_dtod ξ|
//! slope_up = −γ_up_ij scale_up / w_max_ref     slope_down = −γ_down_ij scale_down / w_min_ref
//! ```
//!
//! with `w_*_ref` the nominal bound (`mean_bound_reference = true`) or the device's own bound. One
//! pulse up (potentiation) / down (depression), with cycle-to-cycle noise ξ drawn per pulse:
//!
//! ```text
//! mult_noise:  w += (slope_up w + scale_up)(1 + dw_min_std ξ)      w −= (slope_down w + scale_down)(1 + dw_min_std ξ)
//! additive:    w += slope_up w + scale_up (1 + dw_min_std ξ)       w −= slope_down w + scale_down (1 + dw_min_std ξ)
//! ```
//!
//! then `w` is clipped to `[w_min_ij, w_max_ij]`. With γ = 1 and the device's own bound as reference,
//! the step shrinks linearly to 0 at the bound (soft bounds).

use serde::{Deserialize, Serialize};
use sim::{Error, Result, Stream};

use crate::check;

fn dw_min() -> f64 {
    0.001
}
fn point3() -> f64 {
    0.3
}
fn w_max() -> f64 {
    0.6
}
fn w_min() -> f64 {
    -0.6
}
fn yes() -> bool {
    true
}
fn max_pulses() -> u32 {
    1000
}

/// Parameters of the pulsed update device (defaults: aihwkit `PulsedDevice` defaults, γ = 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PulsedCell {
    /// Mean weight change of one pulse at w = 0 (normalized weight units).
    #[serde(default = "dw_min")]
    pub dw_min: f64,
    /// Device-to-device relative spread of `dw_min`.
    #[serde(default = "point3")]
    pub dw_min_dtod: f64,
    /// Cycle-to-cycle relative spread of each pulse's step.
    #[serde(default = "point3")]
    pub dw_min_std: f64,
    /// Systematic up/down asymmetry β: positive makes down steps smaller than up steps.
    #[serde(default)]
    pub up_down: f64,
    /// Device-to-device spread of the up/down asymmetry.
    #[serde(default)]
    pub up_down_dtod: f64,
    /// Upper bound of w (> 0).
    #[serde(default = "w_max")]
    pub w_max: f64,
    /// Lower bound of w (< 0).
    #[serde(default = "w_min")]
    pub w_min: f64,
    /// Device-to-device relative spread of `w_max`.
    #[serde(default = "point3")]
    pub w_max_dtod: f64,
    /// Device-to-device relative spread of `w_min`.
    #[serde(default = "point3")]
    pub w_min_dtod: f64,
    /// Step decrease at the upper bound (0 = constant step, 1 = soft bounds).
    #[serde(default)]
    pub gamma_up: f64,
    /// Step decrease at the lower bound.
    #[serde(default)]
    pub gamma_down: f64,
    /// Device-to-device spread of `gamma_up`.
    #[serde(default)]
    pub gamma_up_dtod: f64,
    /// Device-to-device spread of `gamma_down`.
    #[serde(default)]
    pub gamma_down_dtod: f64,
    /// Cycle-to-cycle noise multiplies the whole step (true) or only its constant part (false).
    #[serde(default = "yes")]
    pub mult_noise: bool,
    /// Slopes refer to the nominal bounds (true) or each device's own bounds (false).
    #[serde(default = "yes")]
    pub mean_bound_reference: bool,
    /// Largest |pulse count| one update may apply to one device (larger requests are clipped).
    #[serde(default = "max_pulses")]
    pub max_pulses: u32,
}

impl Default for PulsedCell {
    fn default() -> Self {
        PulsedCell {
            dw_min: dw_min(),
            dw_min_dtod: 0.3,
            dw_min_std: 0.3,
            up_down: 0.0,
            up_down_dtod: 0.0,
            w_max: w_max(),
            w_min: w_min(),
            w_max_dtod: 0.3,
            w_min_dtod: 0.3,
            gamma_up: 0.0,
            gamma_down: 0.0,
            gamma_up_dtod: 0.0,
            gamma_down_dtod: 0.0,
            mult_noise: true,
            mean_bound_reference: true,
            max_pulses: max_pulses(),
        }
    }
}

/// Per-device parameters of an instantiated pulsed array plus the weights (normalized units).
#[derive(Debug, Clone, PartialEq)]
pub struct PulsedArray {
    /// Current weights, one per device.
    pub w: Vec<f32>,
    /// Upper bound per device.
    pub w_max: Vec<f32>,
    /// Lower bound per device.
    pub w_min: Vec<f32>,
    /// Constant part of the up step per device.
    pub scale_up: Vec<f32>,
    /// Constant part of the down step per device.
    pub scale_down: Vec<f32>,
    /// Slope of the up step in w per device.
    pub slope_up: Vec<f32>,
    /// Slope of the down step in w per device.
    pub slope_down: Vec<f32>,
    dw_min_std: f32,
    mult_noise: bool,
    max_pulses: u32,
    dw_min: f64,
}

impl PulsedCell {
    /// Check every parameter; the error names the field.
    pub fn validate(&self) -> Result<()> {
        check::positive("pulsed", "dw_min", self.dw_min)?;
        for (n, v) in [
            ("dw_min_dtod", self.dw_min_dtod),
            ("dw_min_std", self.dw_min_std),
            ("up_down_dtod", self.up_down_dtod),
            ("w_max_dtod", self.w_max_dtod),
            ("w_min_dtod", self.w_min_dtod),
            ("gamma_up", self.gamma_up),
            ("gamma_down", self.gamma_down),
            ("gamma_up_dtod", self.gamma_up_dtod),
            ("gamma_down_dtod", self.gamma_down_dtod),
        ] {
            check::non_negative("pulsed", n, v)?;
        }
        check::range("pulsed", "up_down", self.up_down, -1.0, 1.0)?;
        check::positive("pulsed", "w_max", self.w_max)?;
        if !self.w_min.is_finite() || self.w_min >= 0.0 {
            return Err(Error::param(
                "pulsed",
                format!("`w_min` = {} must be finite and < 0", self.w_min),
            ));
        }
        if self.max_pulses == 0 || self.max_pulses >= 1 << 20 {
            return Err(Error::param(
                "pulsed",
                format!("`max_pulses` = {} must be in 1..2^20", self.max_pulses),
            ));
        }
        Ok(())
    }

    /// Instantiate `n` devices with their device-to-device variation (draws from
    /// `stream.child("d2d")`, indices `8·j + 0..6` for device `j`), all weights 0.
    pub fn instantiate(&self, n: usize, stream: Stream) -> Result<PulsedArray> {
        self.validate()?;
        let s = stream.child("d2d");
        let up_bias = self.up_down.min(0.0);
        let down_bias = -self.up_down.max(0.0);
        let mut a = PulsedArray {
            w: vec![0.0; n],
            w_max: Vec::with_capacity(n),
            w_min: Vec::with_capacity(n),
            scale_up: Vec::with_capacity(n),
            scale_down: Vec::with_capacity(n),
            slope_up: Vec::with_capacity(n),
            slope_down: Vec::with_capacity(n),
            dw_min_std: self.dw_min_std as f32,
            mult_noise: self.mult_noise,
            max_pulses: self.max_pulses,
            dw_min: self.dw_min,
        };
        for j in 0..n as u64 {
            let g = |m: u64| s.normal(8 * j + m) as f64;
            // A bound that the variation pushed through zero would break the [w_min, w_max] ∋ 0
            // invariant; keep it on its side (aihwkit leaves this to the user).
            let wmax = (self.w_max * (1.0 + self.w_max_dtod * g(0))).max(1e-6 * self.w_max);
            let wmin = (self.w_min * (1.0 + self.w_min_dtod * g(1))).min(1e-6 * self.w_min);
            let gain = 1.0 + self.dw_min_dtod * g(2);
            let r = self.up_down_dtod * g(3);
            let su = ((up_bias + gain + r) * self.dw_min).abs();
            let sd = ((down_bias + gain - r) * self.dw_min).abs();
            let gu = (self.gamma_up + self.gamma_up_dtod * g(4)).abs();
            let gd = (self.gamma_down + self.gamma_down_dtod * g(5)).abs();
            let (ref_up, ref_down) = if self.mean_bound_reference {
                (self.w_max, self.w_min)
            } else {
                (wmax, wmin)
            };
            a.w_max.push(wmax as f32);
            a.w_min.push(wmin as f32);
            a.scale_up.push(su as f32);
            a.scale_down.push(sd as f32);
            a.slope_up.push((-gu * su / ref_up) as f32);
            a.slope_down.push((-gd * sd / ref_down) as f32);
        }
        Ok(a)
    }
}

impl PulsedArray {
    /// Number of devices.
    pub fn len(&self) -> usize {
        self.w.len()
    }

    /// Whether the array has no devices.
    pub fn is_empty(&self) -> bool {
        self.w.is_empty()
    }

    /// Set the weights (e.g. an initialization), clipped to each device's bounds.
    pub fn set_weights(&mut self, w: &[f32]) -> Result<()> {
        if w.len() != self.w.len() {
            return Err(Error::shape(
                "pulsed",
                format!("{} weights for {} devices", w.len(), self.w.len()),
            ));
        }
        for (j, &v) in w.iter().enumerate() {
            if !v.is_finite() {
                return Err(Error::NonFinite {
                    what: "pulsed: weights".into(),
                    detail: format!("index {j} is {v}"),
                });
            }
            self.w[j] = v.clamp(self.w_min[j], self.w_max[j]);
        }
        Ok(())
    }

    /// Apply `pulses[j]` pulses to device `j` (positive = up/potentiation, negative = down), one at a
    /// time. Pulse `p` of device `j` draws its cycle-to-cycle noise from
    /// `stream.child("c2c").sub(update_counter)` at index `j·2²⁰ + p`. Counts beyond `max_pulses` are
    /// clipped.
    pub fn pulse(&mut self, pulses: &[i32], update_counter: u64, stream: Stream) -> Result<()> {
        if pulses.len() != self.w.len() {
            return Err(Error::shape(
                "pulsed",
                format!("{} pulse counts for {} devices", pulses.len(), self.w.len()),
            ));
        }
        let s = stream.child("c2c").sub(update_counter);
        let m = self.max_pulses as i64;
        for (j, &n) in pulses.iter().enumerate() {
            let n = (n as i64).clamp(-m, m);
            let mut w = self.w[j];
            for p in 0..n.unsigned_abs() {
                let xi = if self.dw_min_std > 0.0 {
                    self.dw_min_std * s.normal(((j as u64) << 20) + p)
                } else {
                    0.0
                };
                if n > 0 {
                    let (sl, sc) = (self.slope_up[j], self.scale_up[j]);
                    w += if self.mult_noise {
                        (sl * w + sc) * (1.0 + xi)
                    } else {
                        sl * w + sc * (1.0 + xi)
                    };
                } else {
                    let (sl, sc) = (self.slope_down[j], self.scale_down[j]);
                    w -= if self.mult_noise {
                        (sl * w + sc) * (1.0 + xi)
                    } else {
                        sl * w + sc * (1.0 + xi)
                    };
                }
                w = w.clamp(self.w_min[j], self.w_max[j]);
            }
            self.w[j] = w;
        }
        Ok(())
    }

    /// The pulse counts that request the weight changes `dw` (normalized units):
    /// `round(dw / dw_min)`, clipped to `±max_pulses`.
    pub fn pulses_for(&self, dw: &[f32]) -> Vec<i32> {
        let m = self.max_pulses as f64;
        dw.iter()
            .map(|&d| ((d as f64 / self.dw_min).round()).clamp(-m, m) as i32)
            .collect()
    }

    /// Request weight changes `dw` (normalized units) by pulsing: see [`Self::pulses_for`] and
    /// [`Self::pulse`].
    pub fn update(&mut self, dw: &[f32], update_counter: u64, stream: Stream) -> Result<()> {
        if let Some(i) = dw.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: "pulsed: dw".into(),
                detail: format!("index {i} is {}", dw[i]),
            });
        }
        let p = self.pulses_for(dw);
        self.pulse(&p, update_counter, stream)
    }
}
