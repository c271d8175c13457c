//! Neurons and pooling parts.
//!
//! **Analog hard-sigmoid** ([`HardSigmoid`]): nominally `y = clamp(slope·x + bias, lo, hi)`, which
//! covers the EP activations (e.g. `clamp(x, 0, 1)`: slope 1, bias 0; `0.5·(1 + hardtanh(x))`:
//! slope 0.5, bias 0.5, lo 0, hi 1). A physical neuron `i` has a fixed gain error and input-referred
//! offset (device-to-device, drawn once) and additive noise on every evaluation:
//!
//! ```text
//! y_i = clamp(slope · g_i · (x + o_i) + bias + noise_std · ξ, lo, hi)
//! g_i = 1 + gain_dtod · ξ_g,   o_i = offset_dtod · ξ_o
//! ```
//!
//! **Max pooling as winner-take-all** ([`WinnerTakeAll`]): the unit's comparator picks the input
//! with the largest `v_k + c_k`, where `c_k` is a fixed comparator offset of input slot `k`
//! (σ = `comparator_offset_std`, drawn once), and passes the winner's true value `v_k` on. With zero
//! offsets this is the exact max (first index on ties). **Average pooling** is the mean of the
//! window (a current-summing node with equal weights).

use serde::{Deserialize, Serialize};
use sim::{Error, Result, Stream};

use crate::check;

fn one() -> f64 {
    1.0
}

/// Analog hard-sigmoid neuron parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardSigmoid {
    /// Nominal slope (output units per input unit).
    #[serde(default = "one")]
    pub slope: f64,
    /// Nominal output bias.
    #[serde(default)]
    pub bias: f64,
    /// Lower saturation.
    #[serde(default)]
    pub lo: f64,
    /// Upper saturation.
    #[serde(default = "one")]
    pub hi: f64,
    /// Device-to-device relative spread of the gain.
    #[serde(default)]
    pub gain_dtod: f64,
    /// Device-to-device spread of the input-referred offset (input units).
    #[serde(default)]
    pub offset_dtod: f64,
    /// Additive Gaussian noise σ per evaluation (output units).
    #[serde(default)]
    pub noise_std: f64,
}

impl Default for HardSigmoid {
    fn default() -> Self {
        HardSigmoid {
            slope: 1.0,
            bias: 0.0,
            lo: 0.0,
            hi: 1.0,
            gain_dtod: 0.0,
            offset_dtod: 0.0,
            noise_std: 0.0,
        }
    }
}

/// An instantiated population of hard-sigmoid neurons with their fixed gain and offset.
#[derive(Debug, Clone, PartialEq)]
pub struct NeuronArray {
    /// The parameters.
    pub params: HardSigmoid,
    /// Gain `g_i` per neuron.
    pub gain: Vec<f32>,
    /// Input-referred offset `o_i` per neuron.
    pub offset: Vec<f32>,
}

impl HardSigmoid {
    /// Check every parameter; the error names the field.
    pub fn validate(&self) -> Result<()> {
        for (n, v) in [
            ("slope", self.slope),
            ("bias", self.bias),
            ("lo", self.lo),
            ("hi", self.hi),
        ] {
            if !v.is_finite() {
                return Err(Error::param(
                    "neuron",
                    format!("`{n}` = {v} must be finite"),
                ));
            }
        }
        if self.lo > self.hi {
            return Err(Error::param(
                "neuron",
                format!("`lo` = {} exceeds `hi` = {}", self.lo, self.hi),
            ));
        }
        check::non_negative("neuron", "gain_dtod", self.gain_dtod)?;
        check::non_negative("neuron", "offset_dtod", self.offset_dtod)?;
        check::non_negative("neuron", "noise_std", self.noise_std)
    }

    /// Instantiate `n` neurons: gain from `stream.child("gain")`, offset from
    /// `stream.child("offset")`, both at the neuron index.
    pub fn instantiate(&self, n: usize, stream: Stream) -> Result<NeuronArray> {
        self.validate()?;
        let (sg, so) = (stream.child("gain"), stream.child("offset"));
        let gain = (0..n as u64)
            .map(|i| {
                if self.gain_dtod > 0.0 {
                    (1.0 + self.gain_dtod * sg.normal(i) as f64) as f32
                } else {
                    1.0
                }
            })
            .collect();
        let offset = (0..n as u64)
            .map(|i| {
                if self.offset_dtod > 0.0 {
                    (self.offset_dtod * so.normal(i) as f64) as f32
                } else {
                    0.0
                }
            })
            .collect();
        Ok(NeuronArray {
            params: self.clone(),
            gain,
            offset,
        })
    }
}

impl NeuronArray {
    /// Number of neurons.
    pub fn len(&self) -> usize {
        self.gain.len()
    }

    /// Whether there are no neurons.
    pub fn is_empty(&self) -> bool {
        self.gain.is_empty()
    }

    /// Evaluate in place on the pre-activations `x` of neurons `first .. first + x.len()` (so a
    /// batch can be processed in slices); evaluation noise is draw `first + i` of
    /// `stream.child("noise").sub(step_counter)`.
    pub fn apply(
        &self,
        x: &mut [f32],
        first: usize,
        step_counter: u64,
        stream: Stream,
    ) -> Result<()> {
        if first + x.len() > self.len() {
            return Err(Error::shape(
                "neuron",
                format!("neurons {first}..{} of {}", first + x.len(), self.len()),
            ));
        }
        let p = &self.params;
        let s = (p.noise_std > 0.0).then(|| stream.child("noise").sub(step_counter));
        for (i, v) in x.iter_mut().enumerate() {
            let j = first + i;
            let mut y =
                p.slope * self.gain[j] as f64 * (*v as f64 + self.offset[j] as f64) + p.bias;
            if let Some(s) = &s {
                y += p.noise_std * s.normal(j as u64) as f64;
            }
            *v = y.clamp(p.lo, p.hi) as f32;
        }
        Ok(())
    }
}

/// Winner-take-all max-pool parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WinnerTakeAll {
    /// σ of the fixed comparator offset of each input slot (input units).
    #[serde(default)]
    pub comparator_offset_std: f64,
}

impl WinnerTakeAll {
    /// Check every parameter; the error names the field.
    pub fn validate(&self) -> Result<()> {
        check::non_negative("wta", "comparator_offset_std", self.comparator_offset_std)
    }

    /// Fixed comparator offsets for `units` pooling units of `window` inputs each (draw
    /// `u·window + k` of `stream.child("comparator")`), layout `[units, window]`.
    pub fn offsets(&self, units: usize, window: usize, stream: Stream) -> Result<Vec<f32>> {
        self.validate()?;
        let n = units * window;
        if self.comparator_offset_std == 0.0 {
            return Ok(vec![0.0; n]);
        }
        let s = stream.child("comparator");
        Ok((0..n as u64)
            .map(|i| (self.comparator_offset_std * s.normal(i) as f64) as f32)
            .collect())
    }
}

/// Winner-take-all over one window: the index `k` maximizing `values[k] + offsets[k]` (first on
/// ties) and the winner's true value. `None` for an empty window or mismatched lengths.
pub fn wta_max(values: &[f32], offsets: &[f32]) -> Option<(usize, f32)> {
    if values.is_empty() || values.len() != offsets.len() {
        return None;
    }
    let mut best = 0;
    let mut best_v = values[0] + offsets[0];
    for k in 1..values.len() {
        let v = values[k] + offsets[k];
        if v > best_v {
            best = k;
            best_v = v;
        }
    }
    Some((best, values[best]))
}

/// Average of one window (`None` if empty).
pub fn avg_pool(values: &[f32]) -> Option<f32> {
    if values.is_empty() {
        return None;
    }
    Some((values.iter().map(|&v| v as f64).sum::<f64>() / values.len() as f64) as f32)
}
