//! Crossbar cells for inference: programming, drift, accumulated and per-read noise, faults.
//!
//! One interface, [`CellModel`] (a serde enum tagged by `kind`), covers the ideal cell, the PCM
//! statistical model of aihwkit and an RRAM model. A layer is programmed once
//! ([`CellModel::program`] → [`ProgrammedArray`]), aged to an inference time
//! ([`CellModel::age`], drift plus accumulated 1/f noise, sampled once per inference time like
//! aihwkit's `drift_analog_weights`), optionally drift-compensated ([`CellModel::compensation`]) and
//! read with fresh per-read noise ([`CellModel::read`]).
//!
//! ## Randomness
//!
//! Every draw is indexed by the device's position, so results do not depend on thread count or on the
//! order in which layers are handled. With `k = o·in + i` the weight index (layout `[out, in]`),
//! the `G⁺` device is `2k` and the `G⁻` device `2k + 1`. The caller passes one [`Stream`] per array
//! (e.g. `Stream::new(seed, "devices").child("layer3")`); the model draws from its children
//! `"program"` (programming noise), `"nu"` (drift exponents), `"accum"` (accumulated 1/f noise, further
//! split by `.sub(t_inference_s.to_bits())`), `"fault"` (stuck-at faults) and `"read"` (per-read
//! noise, split by `.sub(read_counter)`).

use serde::{Deserialize, Serialize};
use sim::{Error, Result, Stream, Tensor};

use crate::check;
use crate::mapping::{self, ScaleMode, Targets};

/// The ideal cell: conductances equal their targets, forever.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdealCell {
    /// Maximal conductance in µS (the abs-max weight maps to it).
    #[serde(default = "pcm_g_max")]
    pub g_max_us: f64,
    /// Minimal conductance in µS (weight 0 on both devices of a pair).
    #[serde(default)]
    pub g_min_us: f64,
}

impl Default for IdealCell {
    fn default() -> Self {
        IdealCell {
            g_max_us: 25.0,
            g_min_us: 0.0,
        }
    }
}

/// A clipped logarithmic fit `clamp(slope · ln(G/g_max) + intercept, min, max)`, used by the PCM
/// drift-exponent statistics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFit {
    /// Coefficient of `ln(G/g_max)`.
    pub slope: f64,
    /// Constant term.
    pub intercept: f64,
    /// Lower clip.
    pub min: f64,
    /// Upper clip.
    pub max: f64,
}

impl LogFit {
    /// Evaluate at relative conductance `g_rel = G/g_max` (already floored above 0).
    #[inline]
    pub fn eval(&self, g_rel: f64) -> f64 {
        (self.slope * g_rel.ln() + self.intercept).clamp(self.min, self.max)
    }
    fn validate(&self, field: &str) -> Result<()> {
        for (n, v) in [
            ("slope", self.slope),
            ("intercept", self.intercept),
            ("min", self.min),
            ("max", self.max),
        ] {
            if !v.is_finite() {
                return Err(Error::param(
                    "pcm",
                    format!("`{field}.{n}` = {v} must be finite"),
                ));
            }
        }
        check::non_negative("pcm", &format!("{field}.min"), self.min)?;
        if self.min > self.max {
            return Err(Error::param(
                "pcm",
                format!(
                    "`{field}.min` = {} exceeds `{field}.max` = {}",
                    self.min, self.max
                ),
            ));
        }
        Ok(())
    }
}

fn pcm_g_max() -> f64 {
    25.0
}
fn pcm_prog_coeff() -> [f64; 3] {
    [0.26348, 1.9650, -1.1731]
}
fn pcm_t_read() -> f64 {
    250.0e-9
}
fn pcm_t0() -> f64 {
    20.0
}
fn pcm_nu_mean() -> LogFit {
    LogFit {
        slope: -0.0155,
        intercept: 0.0244,
        min: 0.049,
        max: 0.1,
    }
}
fn pcm_nu_std() -> LogFit {
    LogFit {
        slope: -0.0125,
        intercept: -0.0059,
        min: 0.008,
        max: 0.045,
    }
}
fn one() -> f64 {
    1.0
}
fn pcm_q0() -> f64 {
    0.0088
}
fn pcm_q_exp() -> f64 {
    0.65
}
fn pcm_q_floor() -> f64 {
    1e-3
}
fn pcm_q_max() -> f64 {
    0.2
}
fn pcm_g_rel_floor() -> f64 {
    1e-7
}

/// The statistical PCM model of IBM's analog hardware kit: `PCMLikeNoiseModel` in
/// `IBM/aihwkit:src/aihwkit/inference/noise/pcm.py` (read at commit 1384c564), fitted to ~1 million
/// PCM devices (Nandakumar et al., ICECS 2019; Joshi et al., Nat. Commun. 11, 2473, 2020). All
/// defaults are aihwkit's. With `g_t` the target conductance and `g_max` the range:
///
/// * **programming noise** `G_prog = max(0, g_t + prog_noise_scale · σ_prog · ξ)`,
///   `σ_prog = (g_max / prog_coeff_g_max_reference_us) · Σ_i c_i (g_t/g_max)^i`,
///   `c = [0.26348, 1.9650, −1.1731]` µS referenced to `g_max = 25` µS;
/// * **drift** `G(t) = G_prog · (t/t0)^(−ν)` with `t = t_inference + t0`, `t0 = 20` s, and one
///   exponent per device `ν = drift_scale · |μ_ν + σ_ν ξ|`, `μ_ν = clamp(−0.0155 ln(g_t/g_max) +
///   0.0244, 0.049, 0.1)`, `σ_ν = clamp(−0.0125 ln(g_t/g_max) − 0.0059, 0.008, 0.045)` (with
///   `g_t/g_max` floored at 1e-7);
/// * **accumulated 1/f read noise** `G = max(0, G(t) + |G(t)| · read_noise_scale · σ_r · ξ)`,
///   `σ_r = Q_s · sqrt(ln((t + t_read)/(2 t_read)))`, `Q_s = min(0.0088 / max((G_prog/g_max)^0.65,
///   1e-3), 0.2)`, `t_read = 250` ns. As in aihwkit, `Q_s` uses the programmed (not the target)
///   conductance (`IBM/aihwkit#436`), and this noise is drawn once per inference time, not per read.
///
/// Not in `PCMLikeNoiseModel`: `per_read_noise_gmax_frac`, an optional additive Gaussian noise
/// drawn anew on every read, σ = frac · g_max (like aihwkit's forward `w_noise` of type
/// `ADDITIVE_CONSTANT`; 0 by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PcmCell {
    /// Maximal conductance in µS (aihwkit default 25 µS; the minimum is 0).
    #[serde(default = "pcm_g_max")]
    pub g_max_us: f64,
    /// Programming-noise polynomial coefficients `c_0, c_1, c_2` in µS.
    #[serde(default = "pcm_prog_coeff")]
    pub prog_coeff_us: [f64; 3],
    /// The `g_max` (µS) at which `prog_coeff_us` were fitted; σ_prog scales by `g_max / this`.
    #[serde(default = "pcm_g_max")]
    pub prog_coeff_g_max_reference_us: f64,
    /// Multiplier of the programming noise (0 = none).
    #[serde(default = "one")]
    pub prog_noise_scale: f64,
    /// Mean drift exponent μ_ν as a clipped fit in `ln(g_t/g_max)`.
    #[serde(default = "pcm_nu_mean")]
    pub drift_nu_mean: LogFit,
    /// Device-to-device spread σ_ν of the drift exponent as a clipped fit in `ln(g_t/g_max)`.
    #[serde(default = "pcm_nu_std")]
    pub drift_nu_std: LogFit,
    /// Floor of `g_t/g_max` before taking its logarithm (aihwkit `_ZERO_CLIP`).
    #[serde(default = "pcm_g_rel_floor")]
    pub g_rel_floor: f64,
    /// Multiplier of the drift exponent (0 = no drift).
    #[serde(default = "one")]
    pub drift_scale: f64,
    /// Time of the first read after programming, in seconds (drift reference `t0`).
    #[serde(default = "pcm_t0")]
    pub t0_s: f64,
    /// Read duration of the 1/f fit, in seconds.
    #[serde(default = "pcm_t_read")]
    pub t_read_s: f64,
    /// Numerator of `Q_s` (relative 1/f noise amplitude).
    #[serde(default = "pcm_q0")]
    pub read_noise_q0: f64,
    /// Exponent of `G_prog/g_max` in `Q_s`.
    #[serde(default = "pcm_q_exp")]
    pub read_noise_exponent: f64,
    /// Floor of `(G_prog/g_max)^exponent` in `Q_s`.
    #[serde(default = "pcm_q_floor")]
    pub read_noise_denominator_floor: f64,
    /// Upper clip of `Q_s`.
    #[serde(default = "pcm_q_max")]
    pub read_noise_q_max: f64,
    /// Multiplier of the accumulated 1/f read noise (0 = none).
    #[serde(default = "one")]
    pub read_noise_scale: f64,
    /// Per-read additive noise σ as a fraction of `g_max` (0 = none).
    #[serde(default)]
    pub per_read_noise_gmax_frac: f64,
}

impl Default for PcmCell {
    fn default() -> Self {
        PcmCell {
            g_max_us: pcm_g_max(),
            prog_coeff_us: pcm_prog_coeff(),
            prog_coeff_g_max_reference_us: pcm_g_max(),
            prog_noise_scale: 1.0,
            drift_nu_mean: pcm_nu_mean(),
            drift_nu_std: pcm_nu_std(),
            g_rel_floor: pcm_g_rel_floor(),
            drift_scale: 1.0,
            t0_s: pcm_t0(),
            t_read_s: pcm_t_read(),
            read_noise_q0: pcm_q0(),
            read_noise_exponent: pcm_q_exp(),
            read_noise_denominator_floor: pcm_q_floor(),
            read_noise_q_max: pcm_q_max(),
            read_noise_scale: 1.0,
            per_read_noise_gmax_frac: 0.0,
        }
    }
}

impl PcmCell {
    /// Programming-noise standard deviation (µS) at target conductance `g_t_us`, before
    /// `prog_noise_scale`.
    pub fn prog_sigma_us(&self, g_t_us: f64) -> f64 {
        let x = g_t_us / self.g_max_us;
        let c = &self.prog_coeff_us;
        (c[0] + c[1] * x + c[2] * x * x) * (self.g_max_us / self.prog_coeff_g_max_reference_us)
    }

    /// Mean and spread `(μ_ν, σ_ν)` of the drift exponent at target conductance `g_t_us`, before
    /// `drift_scale` and before folding (`ν = |μ_ν + σ_ν ξ|`).
    pub fn nu_stats(&self, g_t_us: f64) -> (f64, f64) {
        let g_rel = (g_t_us / self.g_max_us).abs().max(self.g_rel_floor);
        (
            self.drift_nu_mean.eval(g_rel),
            self.drift_nu_std.eval(g_rel),
        )
    }

    /// `Q_s` of the 1/f noise at programmed conductance `g_prog_us`.
    pub fn q_s(&self, g_prog_us: f64) -> f64 {
        let d = (g_prog_us.abs() / self.g_max_us)
            .powf(self.read_noise_exponent)
            .max(self.read_noise_denominator_floor);
        (self.read_noise_q0 / d).min(self.read_noise_q_max)
    }

    /// Relative accumulated read-noise σ at `t_inference_s` (before `read_noise_scale`):
    /// `Q_s · sqrt(ln((t + t_read)/(2 t_read)))`, `t = t_inference + t0`.
    pub fn accumulated_sigma_rel(&self, g_prog_us: f64, t_inference_s: f64) -> f64 {
        let t = t_inference_s + self.t0_s;
        self.q_s(g_prog_us) * ((t + self.t_read_s) / (2.0 * self.t_read_s)).ln().sqrt()
    }

    fn validate(&self) -> Result<()> {
        check::positive("pcm", "g_max_us", self.g_max_us)?;
        check::positive(
            "pcm",
            "prog_coeff_g_max_reference_us",
            self.prog_coeff_g_max_reference_us,
        )?;
        for (i, c) in self.prog_coeff_us.iter().enumerate() {
            if !c.is_finite() {
                return Err(Error::param(
                    "pcm",
                    format!("`prog_coeff_us[{i}]` = {c} must be finite"),
                ));
            }
        }
        // σ_prog must not be negative anywhere on [0, g_max]: check the ends and the vertex.
        let c = self.prog_coeff_us;
        let mut xs = vec![0.0, 1.0];
        if c[2] != 0.0 {
            let v = -c[1] / (2.0 * c[2]);
            if (0.0..=1.0).contains(&v) {
                xs.push(v);
            }
        }
        for x in xs {
            let s = c[0] + c[1] * x + c[2] * x * x;
            if s < 0.0 {
                return Err(Error::param(
                    "pcm",
                    format!("`prog_coeff_us` gives a negative σ_prog = {s} µS at G/g_max = {x}"),
                ));
            }
        }
        check::non_negative("pcm", "prog_noise_scale", self.prog_noise_scale)?;
        self.drift_nu_mean.validate("drift_nu_mean")?;
        self.drift_nu_std.validate("drift_nu_std")?;
        check::range("pcm", "g_rel_floor", self.g_rel_floor, 1e-30, 1.0)?;
        if self.g_rel_floor <= 0.0 {
            return Err(Error::param("pcm", "`g_rel_floor` must be > 0"));
        }
        check::non_negative("pcm", "drift_scale", self.drift_scale)?;
        check::positive("pcm", "t0_s", self.t0_s)?;
        check::positive("pcm", "t_read_s", self.t_read_s)?;
        if self.t0_s + self.t_read_s <= 2.0 * self.t_read_s {
            return Err(Error::param(
                "pcm",
                format!(
                    "`t0_s` = {} must exceed `t_read_s` = {} (the 1/f noise needs t > t_read)",
                    self.t0_s, self.t_read_s
                ),
            ));
        }
        check::non_negative("pcm", "read_noise_q0", self.read_noise_q0)?;
        check::non_negative("pcm", "read_noise_exponent", self.read_noise_exponent)?;
        check::positive(
            "pcm",
            "read_noise_denominator_floor",
            self.read_noise_denominator_floor,
        )?;
        check::non_negative("pcm", "read_noise_q_max", self.read_noise_q_max)?;
        check::non_negative("pcm", "read_noise_scale", self.read_noise_scale)?;
        check::non_negative(
            "pcm",
            "per_read_noise_gmax_frac",
            self.per_read_noise_gmax_frac,
        )?;
        Ok(())
    }
}

fn rram_g_max() -> f64 {
    225.0
}
fn rram_on_off() -> f64 {
    4.5
}
fn rram_sigma_intercept() -> f64 {
    4.782321
}
fn rram_sigma_slope() -> f64 {
    -0.009107
}

/// An RRAM cell for inference: finite on/off ratio, finite number of programmable levels,
/// conductance-dependent programming noise, stuck-at faults and per-read noise. No drift.
///
/// Programming of target `g_t` (µS): quantize to the nearest of `levels` equally spaced levels in
/// `[g_min, g_max]` (`g_min = g_max / on_off_ratio`; `levels = 0` means continuous), add Gaussian
/// noise of σ = `prog_noise_scale · max(0, prog_sigma_intercept_us + prog_sigma_slope · g)` (the
/// linear fit of CrossSim's `RRAM_Milo` device, `sandialabs/cross-sim:simulator/devices/custom/
/// RRAM_Milo.py`, to Fig. 4 of Milo et al., IRPS 2021: A = −0.009107, B = 4.782321 µS, g_max = 225 µS,
/// on/off 4.5), clip at 0; then each device is independently stuck off (`g_min`) with probability
/// `stuck_off_prob` or stuck on (`g_max`) with `stuck_on_prob` (stuck devices ignore their target and
/// the programming noise). Each read adds Gaussian noise σ = `read_noise_scale ·
/// per_read_noise_gmax_frac · g_max`, clipped at 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RramCell {
    /// Maximal (LRS) conductance in µS.
    #[serde(default = "rram_g_max")]
    pub g_max_us: f64,
    /// On/off ratio `g_max/g_min` (≥ 1; `inf` means `g_min = 0`).
    #[serde(default = "rram_on_off")]
    pub on_off_ratio: f64,
    /// Number of programmable conductance levels in `[g_min, g_max]` (0 = continuous, else ≥ 2).
    #[serde(default)]
    pub levels: u32,
    /// Programming-noise σ at G = 0, in µS.
    #[serde(default = "rram_sigma_intercept")]
    pub prog_sigma_intercept_us: f64,
    /// Slope of the programming-noise σ in G (µS per µS).
    #[serde(default = "rram_sigma_slope")]
    pub prog_sigma_slope: f64,
    /// Multiplier of the programming noise (0 = none).
    #[serde(default = "one")]
    pub prog_noise_scale: f64,
    /// Per-read additive noise σ as a fraction of `g_max`.
    #[serde(default)]
    pub per_read_noise_gmax_frac: f64,
    /// Multiplier of the per-read noise (0 = none).
    #[serde(default = "one")]
    pub read_noise_scale: f64,
    /// Probability that a device is stuck at `g_min` (stuck-at-off / SA0 / HRS).
    #[serde(default)]
    pub stuck_off_prob: f64,
    /// Probability that a device is stuck at `g_max` (stuck-at-on / SA1 / LRS).
    #[serde(default)]
    pub stuck_on_prob: f64,
}

impl Default for RramCell {
    fn default() -> Self {
        RramCell {
            g_max_us: rram_g_max(),
            on_off_ratio: rram_on_off(),
            levels: 0,
            prog_sigma_intercept_us: rram_sigma_intercept(),
            prog_sigma_slope: rram_sigma_slope(),
            prog_noise_scale: 1.0,
            per_read_noise_gmax_frac: 0.0,
            read_noise_scale: 1.0,
            stuck_off_prob: 0.0,
            stuck_on_prob: 0.0,
        }
    }
}

impl RramCell {
    /// The minimal conductance `g_max / on_off_ratio` in µS.
    pub fn g_min_us(&self) -> f64 {
        if self.on_off_ratio.is_infinite() {
            0.0
        } else {
            self.g_max_us / self.on_off_ratio
        }
    }

    /// Programming-noise σ (µS) at conductance `g_us`, before `prog_noise_scale`.
    pub fn prog_sigma_us(&self, g_us: f64) -> f64 {
        (self.prog_sigma_intercept_us + self.prog_sigma_slope * g_us).max(0.0)
    }

    /// The nearest programmable level to `g_us` (identity when `levels == 0`).
    pub fn quantize(&self, g_us: f64) -> f64 {
        if self.levels == 0 {
            return g_us;
        }
        let g_min = self.g_min_us();
        let step = (self.g_max_us - g_min) / (self.levels - 1) as f64;
        let k = ((g_us - g_min) / step)
            .round()
            .clamp(0.0, (self.levels - 1) as f64);
        g_min + k * step
    }

    fn validate(&self) -> Result<()> {
        check::positive("rram", "g_max_us", self.g_max_us)?;
        if self.on_off_ratio.is_nan() || self.on_off_ratio <= 1.0 {
            return Err(Error::param(
                "rram",
                format!(
                    "`on_off_ratio` = {} must be > 1 (or inf)",
                    self.on_off_ratio
                ),
            ));
        }
        if self.levels == 1 || self.levels > 1 << 20 {
            return Err(Error::param(
                "rram",
                format!(
                    "`levels` = {} must be 0 (continuous) or in 2..=2^20",
                    self.levels
                ),
            ));
        }
        if !self.prog_sigma_intercept_us.is_finite() || !self.prog_sigma_slope.is_finite() {
            return Err(Error::param(
                "rram",
                "`prog_sigma_intercept_us` and `prog_sigma_slope` must be finite",
            ));
        }
        check::non_negative("rram", "prog_noise_scale", self.prog_noise_scale)?;
        check::non_negative(
            "rram",
            "per_read_noise_gmax_frac",
            self.per_read_noise_gmax_frac,
        )?;
        check::non_negative("rram", "read_noise_scale", self.read_noise_scale)?;
        check::probability("rram", "stuck_off_prob", self.stuck_off_prob)?;
        check::probability("rram", "stuck_on_prob", self.stuck_on_prob)?;
        if self.stuck_off_prob + self.stuck_on_prob > 1.0 {
            return Err(Error::param(
                "rram",
                "`stuck_off_prob` + `stuck_on_prob` must not exceed 1",
            ));
        }
        Ok(())
    }
}

/// A crossbar cell model for inference. TOML: a table with `kind = "ideal" | "pcm" | "rram"` and the
/// fields of the chosen variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CellModel {
    /// [`IdealCell`].
    Ideal(IdealCell),
    /// [`PcmCell`].
    Pcm(PcmCell),
    /// [`RramCell`].
    Rram(RramCell),
}

/// A device fault, fixed at programming time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Works normally.
    #[default]
    None,
    /// Stuck at the minimal conductance.
    StuckOff,
    /// Stuck at the maximal conductance.
    StuckOn,
}

/// How drift is compensated at read-out (aihwkit `inference/compensation/drift.py`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftCompensation {
    /// No compensation.
    None,
    /// One factor per array: `mean|W(t0)| / mean|W(t)|` (aihwkit `GlobalDriftCompensation` reads
    /// the array with one-hot inputs, so its readout is the mean absolute weight; here the readout is
    /// exact, as in `GlobalDriftCompensationWithExactReference`).
    #[default]
    Global,
    /// One factor per output (crossbar column), aihwkit `PerColumnDriftCompensation`.
    PerOutput,
}

/// A programmed array of differential pairs, state right after programming (t = 0).
#[derive(Debug, Clone, PartialEq)]
pub struct ProgrammedArray {
    /// Outputs (rows of `W`, crossbar columns).
    pub out: usize,
    /// Inputs (columns of `W`, crossbar rows).
    pub inp: usize,
    /// The targets and weight scale used.
    pub targets: Targets,
    /// Programmed `G⁺` in µS, layout `[out, in]`.
    pub g_pos_us: Vec<f32>,
    /// Programmed `G⁻` in µS, layout `[out, in]`.
    pub g_neg_us: Vec<f32>,
    /// Drift exponents of the `G⁺` devices (empty when the model has no drift).
    pub nu_pos: Vec<f32>,
    /// Drift exponents of the `G⁻` devices (empty when the model has no drift).
    pub nu_neg: Vec<f32>,
    /// Faults of the `G⁺` devices (empty when the model has no faults).
    pub fault_pos: Vec<Fault>,
    /// Faults of the `G⁻` devices (empty when the model has no faults).
    pub fault_neg: Vec<Fault>,
}

impl ProgrammedArray {
    /// The weights `(G⁺ − G⁻)/s` represented by conductances `g_pos_us`, `g_neg_us`
    /// (e.g. from [`CellModel::age`] or [`CellModel::read`]), each output multiplied by its
    /// compensation factor (`factors` has 1 or `out` entries; pass `&[1.0]` for none).
    pub fn weights(&self, g_pos_us: &[f32], g_neg_us: &[f32], factors: &[f64]) -> Result<Vec<f32>> {
        let mut w = mapping::conductances_to_weights(
            g_pos_us,
            g_neg_us,
            self.out,
            self.inp,
            &self.targets.scale_us,
        )?;
        if factors.len() != 1 && factors.len() != self.out {
            return Err(Error::shape(
                "cells",
                format!(
                    "{} compensation factors for {} outputs",
                    factors.len(),
                    self.out
                ),
            ));
        }
        if factors.iter().any(|&f| f != 1.0) {
            for o in 0..self.out {
                let f = mapping::scale_of(factors, o);
                for v in &mut w[o * self.inp..(o + 1) * self.inp] {
                    *v = (*v as f64 * f) as f32;
                }
            }
        }
        Ok(w)
    }
}

impl ProgrammedArray {
    /// Like [`ProgrammedArray::weights`], reshaped to `shape` (e.g. the conv weight's OIHW shape).
    pub fn weights_tensor(
        &self,
        g_pos_us: &[f32],
        g_neg_us: &[f32],
        factors: &[f64],
        shape: &[usize],
    ) -> Result<Tensor> {
        sim::tensor(shape, self.weights(g_pos_us, g_neg_us, factors)?)
    }
}

/// Conductances of an array at one moment (µS, layout `[out, in]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Conductances {
    /// `G⁺` in µS.
    pub g_pos_us: Vec<f32>,
    /// `G⁻` in µS.
    pub g_neg_us: Vec<f32>,
}

impl CellModel {
    /// Check every parameter; the error names the field.
    pub fn validate(&self) -> Result<()> {
        match self {
            CellModel::Ideal(c) => {
                check::positive("ideal", "g_max_us", c.g_max_us)?;
                check::non_negative("ideal", "g_min_us", c.g_min_us)?;
                if c.g_min_us >= c.g_max_us {
                    return Err(Error::param(
                        "ideal",
                        format!(
                            "`g_min_us` = {} must be below `g_max_us` = {}",
                            c.g_min_us, c.g_max_us
                        ),
                    ));
                }
                Ok(())
            }
            CellModel::Pcm(c) => c.validate(),
            CellModel::Rram(c) => c.validate(),
        }
    }

    /// The conductance range `(g_min, g_max)` in µS that weights are mapped into.
    pub fn g_range_us(&self) -> (f64, f64) {
        match self {
            CellModel::Ideal(c) => (c.g_min_us, c.g_max_us),
            CellModel::Pcm(c) => (0.0, c.g_max_us),
            CellModel::Rram(c) => (c.g_min_us(), c.g_max_us),
        }
    }

    /// Program weights `w` (`[out, in]`, row-major) onto differential pairs: map to targets
    /// (see [`crate::mapping`]), then apply the model's programming non-idealities. Draws from
    /// `stream.child("program" | "nu" | "fault")` at the device index (`2k` for G⁺, `2k+1` for G⁻).
    pub fn program(
        &self,
        w: &[f32],
        out: usize,
        inp: usize,
        mode: ScaleMode,
        stream: Stream,
    ) -> Result<ProgrammedArray> {
        self.validate()?;
        let (g_min, g_max) = self.g_range_us();
        let targets = mapping::weights_to_targets(w, out, inp, g_min, g_max, mode)?;
        let n = out * inp;
        let mut arr = ProgrammedArray {
            out,
            inp,
            g_pos_us: Vec::with_capacity(n),
            g_neg_us: Vec::with_capacity(n),
            nu_pos: Vec::new(),
            nu_neg: Vec::new(),
            fault_pos: Vec::new(),
            fault_neg: Vec::new(),
            targets,
        };
        let prog = stream.child("program");
        match self {
            CellModel::Ideal(_) => {
                arr.g_pos_us = arr.targets.g_pos_us.iter().map(|&g| g as f32).collect();
                arr.g_neg_us = arr.targets.g_neg_us.iter().map(|&g| g as f32).collect();
            }
            CellModel::Pcm(c) => {
                let nu_s = stream.child("nu");
                for (side, tg) in [(0u64, &arr.targets.g_pos_us), (1, &arr.targets.g_neg_us)] {
                    let mut g = Vec::with_capacity(n);
                    let mut nu = Vec::with_capacity(n);
                    for (k, &gt) in tg.iter().enumerate() {
                        let d = 2 * k as u64 + side;
                        let sig = c.prog_sigma_us(gt);
                        let gp = (gt + c.prog_noise_scale * sig * prog.normal(d) as f64).max(0.0);
                        g.push(gp as f32);
                        let (mu, sd) = c.nu_stats(gt);
                        let v = (mu + sd * nu_s.normal(d) as f64).abs() * c.drift_scale;
                        nu.push(v as f32);
                    }
                    if side == 0 {
                        arr.g_pos_us = g;
                        arr.nu_pos = nu;
                    } else {
                        arr.g_neg_us = g;
                        arr.nu_neg = nu;
                    }
                }
            }
            CellModel::Rram(c) => {
                let fault_s = stream.child("fault");
                let has_faults = c.stuck_off_prob > 0.0 || c.stuck_on_prob > 0.0;
                let g_min_dev = c.g_min_us();
                for (side, tg) in [(0u64, &arr.targets.g_pos_us), (1, &arr.targets.g_neg_us)] {
                    let mut g = Vec::with_capacity(n);
                    let mut faults = Vec::new();
                    for (k, &gt) in tg.iter().enumerate() {
                        let d = 2 * k as u64 + side;
                        let gq = c.quantize(gt);
                        let sig = c.prog_noise_scale * c.prog_sigma_us(gq);
                        let mut gp = if sig > 0.0 {
                            (gq + sig * prog.normal(d) as f64).max(0.0)
                        } else {
                            gq
                        };
                        if has_faults {
                            let u = fault_s.uniform(d) as f64;
                            let f = if u < c.stuck_off_prob {
                                Fault::StuckOff
                            } else if u < c.stuck_off_prob + c.stuck_on_prob {
                                Fault::StuckOn
                            } else {
                                Fault::None
                            };
                            gp = match f {
                                Fault::StuckOff => g_min_dev,
                                Fault::StuckOn => c.g_max_us,
                                Fault::None => gp,
                            };
                            faults.push(f);
                        }
                        g.push(gp as f32);
                    }
                    if side == 0 {
                        arr.g_pos_us = g;
                        arr.fault_pos = faults;
                    } else {
                        arr.g_neg_us = g;
                        arr.fault_neg = faults;
                    }
                }
            }
        }
        Ok(arr)
    }

    /// Conductances at `t_inference_s` seconds after programming: drift and accumulated 1/f noise
    /// for PCM (sampled once per call from `stream.child("accum").sub(t_inference_s.to_bits())`);
    /// the programmed values for the other models.
    pub fn age(
        &self,
        arr: &ProgrammedArray,
        t_inference_s: f64,
        stream: Stream,
    ) -> Result<Conductances> {
        check::non_negative("cells", "t_inference_s", t_inference_s)?;
        let c = match self {
            CellModel::Pcm(c) => c,
            _ => {
                return Ok(Conductances {
                    g_pos_us: arr.g_pos_us.clone(),
                    g_neg_us: arr.g_neg_us.clone(),
                });
            }
        };
        if arr.nu_pos.len() != arr.g_pos_us.len() || arr.nu_neg.len() != arr.g_neg_us.len() {
            return Err(Error::param(
                "pcm",
                "array was not programmed by a PCM model (no drift exponents)",
            ));
        }
        let accum = stream.child("accum").sub(t_inference_s.to_bits());
        let t = t_inference_s + c.t0_s;
        let log_ratio = (t / c.t0_s).ln();
        let noise_time = ((t + c.t_read_s) / (2.0 * c.t_read_s)).ln().sqrt();
        let mut sides = [Vec::new(), Vec::new()];
        for (side, (g, nu)) in [(&arr.g_pos_us, &arr.nu_pos), (&arr.g_neg_us, &arr.nu_neg)]
            .into_iter()
            .enumerate()
        {
            let out = &mut sides[side];
            out.reserve(g.len());
            for (k, (&gp, &v)) in g.iter().zip(nu.iter()).enumerate() {
                let gp = gp as f64;
                let gd = if t > c.t0_s {
                    gp * (-(v as f64) * log_ratio).exp()
                } else {
                    gp
                };
                let sig = c.read_noise_scale * c.q_s(gp) * noise_time;
                let gf = if sig > 0.0 {
                    let d = 2 * k as u64 + side as u64;
                    (gd + gd.abs() * sig * accum.normal(d) as f64).max(0.0)
                } else {
                    gd.max(0.0)
                };
                out.push(gf as f32);
            }
        }
        let [g_pos_us, g_neg_us] = sides;
        Ok(Conductances { g_pos_us, g_neg_us })
    }

    /// Drift-compensation factors for conductances `now` of `arr` (1 entry for `Global`, `out`
    /// entries for `PerOutput`): the ratio of the mean absolute weight right after programming to the
    /// mean absolute weight now. A zero readout gives factor 1.
    pub fn compensation(
        &self,
        arr: &ProgrammedArray,
        now: &Conductances,
        mode: DriftCompensation,
    ) -> Result<Vec<f64>> {
        let w0 = arr.weights(&arr.g_pos_us, &arr.g_neg_us, &[1.0])?;
        let wt = arr.weights(&now.g_pos_us, &now.g_neg_us, &[1.0])?;
        let ratio = |a: &[f32], b: &[f32]| {
            let s0: f64 = a.iter().map(|v| (*v as f64).abs()).sum();
            let s1: f64 = b.iter().map(|v| (*v as f64).abs()).sum();
            if s1 > 0.0 && s0 > 0.0 { s0 / s1 } else { 1.0 }
        };
        Ok(match mode {
            DriftCompensation::None => vec![1.0],
            DriftCompensation::Global => vec![ratio(&w0, &wt)],
            DriftCompensation::PerOutput => (0..arr.out)
                .map(|o| {
                    let r = o * arr.inp..(o + 1) * arr.inp;
                    ratio(&w0[r.clone()], &wt[r])
                })
                .collect(),
        })
    }

    /// One read of the array: `now` plus the model's per-read noise, drawn from
    /// `stream.child("read").sub(read_counter)` at the device index. Without per-read noise the
    /// result equals `now` exactly.
    pub fn read(&self, now: &Conductances, read_counter: u64, stream: Stream) -> Conductances {
        let sigma = match self {
            CellModel::Ideal(_) => 0.0,
            CellModel::Pcm(c) => c.per_read_noise_gmax_frac * c.g_max_us,
            CellModel::Rram(c) => c.read_noise_scale * c.per_read_noise_gmax_frac * c.g_max_us,
        };
        if sigma == 0.0 {
            return now.clone();
        }
        let s = stream.child("read").sub(read_counter);
        let noisy = |g: &[f32], side: u64| -> Vec<f32> {
            g.iter()
                .enumerate()
                .map(|(k, &v)| {
                    (v as f64 + sigma * s.normal(2 * k as u64 + side) as f64).max(0.0) as f32
                })
                .collect()
        };
        Conductances {
            g_pos_us: noisy(&now.g_pos_us, 0),
            g_neg_us: noisy(&now.g_neg_us, 1),
        }
    }

    /// Program a weight tensor: a linear weight `[out, in]` or a conv weight `[O, I, kh, kw]`
    /// (flattened to `[O, I·kh·kw]`, one crossbar column per output channel). See [`Self::program`].
    pub fn program_tensor(
        &self,
        w: &Tensor,
        mode: ScaleMode,
        stream: Stream,
    ) -> Result<ProgrammedArray> {
        let shape = w.shape();
        if shape.len() < 2 || shape.contains(&0) {
            return Err(Error::shape(
                "cells",
                format!(
                    "weight tensor {shape:?}: expected [out, in] or [O, I, kh, kw] without zero dims"
                ),
            ));
        }
        let out = shape[0];
        let inp: usize = shape[1..].iter().product();
        let flat: Vec<f32> = w.iter().copied().collect();
        self.program(&flat, out, inp, mode, stream)
    }

    /// Convenience: program, age to `t_inference_s`, compensate, and return the effective weights
    /// (`[out, in]`) without per-read noise.
    #[allow(clippy::too_many_arguments)]
    pub fn weights_at(
        &self,
        w: &[f32],
        out: usize,
        inp: usize,
        mode: ScaleMode,
        t_inference_s: f64,
        comp: DriftCompensation,
        stream: Stream,
    ) -> Result<Vec<f32>> {
        let arr = self.program(w, out, inp, mode, stream)?;
        let now = self.age(&arr, t_inference_s, stream)?;
        let f = self.compensation(&arr, &now, comp)?;
        arr.weights(&now.g_pos_us, &now.g_neg_us, &f)
    }
}
