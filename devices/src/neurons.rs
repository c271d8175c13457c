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
//! **Rate-coded spiking neuron** ([`IntegrateFire`], selected by `kind = "spiking"`): the same
//! argument `z = g_i·(x + o_i) + ξ·noise_std/σ'` that the analog neuron feeds to σ is turned into
//! an input current `c = s·z + b` per tick, where `σ(z) = clamp(s·z + b, 0, 1)` (`my_hard_sig`:
//! `c = z/2`; `hard_sigmoid`: `c = z`; [`sim::netlist::unit_linear`]). The membrane integrates
//! it for `window` = W ticks per EP step, firing when it reaches the threshold θ (at most one spike
//! per tick, reset by subtraction), and the output is the rate `y = spikes / W ∈ [0, 1]`:
//!
//! ```text
//! u ← u₀;  for each of W ticks:  u ← (1 − λ)·u + c;  if u ≥ θ { spike; u ← u − θ }
//! ```
//!
//! For the non-leaky neuron (λ = 0) the count has the closed form
//! `spikes = clamp(⌊(u₀ + c·W)/θ⌋, 0, W)` ([`IntegrateFire::spikes`]; c ≥ θ fires every tick, the
//! upper clamp of σ; c ≤ 0 never, the lower clamp). With the random phase `u₀ ~ U(0, θ)` this is
//! stochastic rounding: `E[y] = clamp(c/θ, 0, 1)` exactly and `|y − c/θ| < 1/W`, so with θ = 1
//! `E[y] = σ(z)`. Phase `zero` rounds down (bias −1/(2W) on average), `half` to the nearest. A
//! threshold θ ≠ 1 scales the slope by 1/θ (a population-wide gain error). With leak λ > 0 the
//! transfer curve is the (discrete-time) LIF rate curve: for `c < λ·θ` the potential relaxes towards
//! `c/λ < θ` and the neuron never fires (a dead zone where σ is still rising), for `c ≥ θ` it fires
//! every tick, and in between the rate is about `λ / ln(c / (c − λθ))` per tick (continuous-time
//! LIF, small λ), ≈ `c/θ − λ/2` well above `λθ`: below the IF line. The count is then computed by
//! the tick recursion.
//!
//! **Max pooling as winner-take-all** ([`WinnerTakeAll`]): the unit's comparator picks the input
//! with the largest `v_k + c_k`, where `c_k` is a fixed comparator offset of input slot `k`
//! (σ = `comparator_offset_std`, drawn once), and passes the winner's true value `v_k` on. With zero
//! offsets this is the exact max (first index on ties). **Average pooling** is the mean of the
//! window (a current-summing node with equal weights).

use serde::{Deserialize, Serialize};
use sim::netlist::{DEFAULT_SPIKE_WINDOW, NeuronModel, check_spiking};
use sim::{Error, Result, Stream};

use crate::check;

pub use sim::netlist::{NeuronKind, SpikePhase, unit_linear};

fn one() -> f64 {
    1.0
}

fn default_window() -> u32 {
    DEFAULT_SPIKE_WINDOW
}

/// Neuron parameters of a preset (`[neuron]`): the analog hard-sigmoid and its non-idealities, and
/// the kind with the spiking parameters (used when `kind = "spiking"`, see [`IntegrateFire`]).
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
    /// `analog` (default) or `spiking`.
    #[serde(default)]
    pub kind: NeuronKind,
    /// Spiking: ticks per EP step (default 32).
    #[serde(default = "default_window")]
    pub window: u32,
    /// Spiking: firing threshold (full-scale charge per tick units; default 1).
    #[serde(default = "one")]
    pub threshold: f64,
    /// Spiking: fraction of the membrane potential lost per tick, in [0, 1) (default 0).
    #[serde(default)]
    pub leak: f64,
    /// Spiking: initial membrane potential of each step (default `random`).
    #[serde(default)]
    pub phase: SpikePhase,
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
            kind: NeuronKind::Analog,
            window: DEFAULT_SPIKE_WINDOW,
            threshold: 1.0,
            leak: 0.0,
            phase: SpikePhase::Random,
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
        check::non_negative("neuron", "noise_std", self.noise_std)?;
        self.integrate_fire().validate()
    }

    /// The spiking parameters of this table (whatever the kind).
    pub fn integrate_fire(&self) -> IntegrateFire {
        IntegrateFire {
            window: self.window,
            threshold: self.threshold,
            leak: self.leak,
            phase: self.phase,
        }
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
    /// `stream.child("noise").sub(step_counter)`. Returns the number of spikes fired (0 for the
    /// analog kind).
    ///
    /// With `kind = spiking` the noisy argument `v = slope·g·(x + o) + bias + noise` drives an
    /// [`IntegrateFire`] neuron with current `(v − lo)/(hi − lo)` per tick, initial potential from
    /// draw `first + i` of `stream.child("phase").sub(step_counter)`, and
    /// `y = lo + (hi − lo)·spikes/window`.
    pub fn apply(
        &self,
        x: &mut [f32],
        first: usize,
        step_counter: u64,
        stream: Stream,
    ) -> Result<u64> {
        if first + x.len() > self.len() {
            return Err(Error::shape(
                "neuron",
                format!("neurons {first}..{} of {}", first + x.len(), self.len()),
            ));
        }
        let p = &self.params;
        let spiking = p.kind == NeuronKind::Spiking;
        if spiking && p.hi <= p.lo {
            return Err(Error::param(
                "neuron",
                format!(
                    "a spiking neuron needs `hi` > `lo` (got lo {}, hi {})",
                    p.lo, p.hi
                ),
            ));
        }
        let s = (p.noise_std > 0.0).then(|| stream.child("noise").sub(step_counter));
        let sp = p.integrate_fire();
        let ph = stream.child("phase").sub(step_counter);
        let mut spikes = 0u64;
        for (i, v) in x.iter_mut().enumerate() {
            let j = first + i;
            let mut y =
                p.slope * self.gain[j] as f64 * (*v as f64 + self.offset[j] as f64) + p.bias;
            if let Some(s) = &s {
                y += p.noise_std * s.normal(j as u64) as f64;
            }
            *v = if spiking {
                let n = sp.spikes(
                    (y - p.lo) / (p.hi - p.lo),
                    sp.initial_potential(&ph, j as u64),
                );
                spikes += n as u64;
                (p.lo + (p.hi - p.lo) * n as f64 / sp.window as f64) as f32
            } else {
                y.clamp(p.lo, p.hi) as f32
            };
        }
        Ok(spikes)
    }
}

/// A rate-coded integrate-and-fire neuron (see the module doc): the spiking parameters of a
/// netlist population or preset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntegrateFire {
    /// Ticks per EP step, W ≥ 1.
    pub window: u32,
    /// Firing threshold θ > 0.
    pub threshold: f64,
    /// Fraction λ ∈ [0, 1) of the membrane potential lost per tick.
    pub leak: f64,
    /// Initial membrane potential of each step.
    pub phase: SpikePhase,
}

impl Default for IntegrateFire {
    fn default() -> Self {
        IntegrateFire {
            window: DEFAULT_SPIKE_WINDOW,
            threshold: 1.0,
            leak: 0.0,
            phase: SpikePhase::Random,
        }
    }
}

impl IntegrateFire {
    /// The spiking neuron of a netlist neuron model (`None` for an analog one); absent parameters
    /// take their defaults.
    pub fn from_netlist(m: &NeuronModel) -> Option<Self> {
        if m.kind != NeuronKind::Spiking {
            return None;
        }
        let d = IntegrateFire::default();
        Some(IntegrateFire {
            window: m.window.unwrap_or(d.window),
            threshold: m.threshold.unwrap_or(d.threshold),
            leak: m.leak.unwrap_or(d.leak),
            phase: m.phase.unwrap_or(d.phase),
        })
    }

    /// Check every parameter; the error names the field.
    pub fn validate(&self) -> Result<()> {
        check_spiking(self.window, self.threshold, self.leak)
            .map_err(|(k, m)| Error::param("neuron", format!("`{k}`: {m}")))
    }

    /// Initial membrane potential of neuron `i` for one step: `θ·U(0, 1)` from draw `i` of
    /// `phase_stream` (random phase), 0 or θ/2.
    #[inline]
    pub fn initial_potential(&self, phase_stream: &Stream, i: u64) -> f64 {
        match self.phase {
            SpikePhase::Random => self.threshold * phase_stream.uniform(i) as f64,
            SpikePhase::Zero => 0.0,
            SpikePhase::Half => 0.5 * self.threshold,
        }
    }

    /// Spikes in one window for the input current `c` per tick from potential `u0`: the closed form
    /// `clamp(⌊(u0 + c·W)/θ⌋, 0, W)` without leak (exact for `u0 ∈ [0, θ)`), the tick recursion
    /// ([`IntegrateFire::spikes_ticks`]) with leak. A non-finite current fires every tick if +∞,
    /// never otherwise.
    #[inline]
    pub fn spikes(&self, c: f64, u0: f64) -> u32 {
        if self.leak > 0.0 {
            return self.spikes_ticks(c, u0);
        }
        let w = self.window as f64;
        let n = ((u0 + c * w) / self.threshold).floor();
        if n >= w {
            self.window
        } else if n > 0.0 {
            n as u32
        } else {
            0
        }
    }

    /// Spikes in one window, simulated tick by tick: `u ← (1 − λ)·u + c`, then a spike and
    /// `u ← u − θ` if `u ≥ θ` (at most one spike per tick).
    ///
    /// Two saturated cases are answered without ticking, with the loop's exact result (also in
    /// floating point): `c ≤ 0` from `u0 < θ` never fires (each tick computes `keep·u + c ≤ u`
    /// for `u ≥ 0`, and stays ≤ 0 from `u ≤ 0`), and `c ≥ θ` from `u0 ≥ 0` fires every tick (each
    /// tick reaches `keep·u + c ≥ c ≥ θ` and leaves `u − θ ≥ 0`).
    pub fn spikes_ticks(&self, c: f64, u0: f64) -> u32 {
        if (0.0..=1.0).contains(&self.leak) {
            if c <= 0.0 && u0 < self.threshold {
                return 0;
            }
            if c >= self.threshold && u0 >= 0.0 {
                return self.window;
            }
        }
        let keep = 1.0 - self.leak;
        let mut u = u0;
        let mut n = 0;
        for _ in 0..self.window {
            u = keep * u + c;
            if u >= self.threshold {
                n += 1;
                u -= self.threshold;
            }
        }
        n
    }

    /// The rate output `spikes / W` of a count.
    #[inline]
    pub fn rate(&self, spikes: u32) -> f32 {
        (spikes as f64 / self.window as f64) as f32
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
