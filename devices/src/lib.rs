//! # devices — physical part models
//!
//! Role: crossbar cells (ideal, RRAM, PCM, ECRAM-like), neurons (analog hard-sigmoid, spiking),
//! converters (DAC/ADC), interconnect (IR drop), each a plain serde struct with documented units, and
//! named presets in TOML citing their sources.
//!
//! Dependencies: `sim` only (tensors, random streams).
//!
//! ## Parts
//!
//! * [`mapping`]: signed weights ↔ differential conductance pairs `G⁺ − G⁻` in `[g_min, g_max]`,
//!   scale per layer or per output.
//! * [`cells`]: inference cells behind one enum [`CellModel`] (`ideal`, `pcm` = aihwkit's
//!   `PCMLikeNoiseModel`, `rram`): program → age (drift, accumulated 1/f noise) → compensate → read.
//! * [`pulsed`]: the update-capable device for on-substrate training (aihwkit's LinearStep /
//!   SoftBounds law: `dw_min`, bounds, up/down asymmetry, device-to-device and cycle-to-cycle
//!   variation), ECRAM presets.
//! * [`converters`]: DAC and ADC (bits over a symmetric range, clipping, additive noise), defaults of
//!   aihwkit's forward `IOParameters`.
//! * [`neurons`]: analog hard-sigmoid with gain/offset spread and noise, rate-coded
//!   integrate-and-fire spiking neurons ([`IntegrateFire`]); winner-take-all max pool and average
//!   pool.
//! * [`irdrop`]: IR drop on a tile: reference nodal solve, a fast iterative approximation with an
//!   a-posteriori error bound, and the tile's exact response matrix in the forward and transposed
//!   read directions (used by every read of `ep::substrate`).
//! * [`cost`]: energy, latency and area laws per tile read (DAC, array V²Gt, ADC by the Walden
//!   figure of merit, neurons, spikes, update pulses), with cited defaults in each preset's `[cost]`.
//! * [`presets`]: [`Preset`] loaded from TOML (`presets/*.toml`, built in with `include_str!`), with
//!   `set("key", value)` overrides and [`Preset::scale_nonidealities`].
//!
//! ## Example: one layer on PCM, one hour after programming
//!
//! ```
//! use devices::Preset;
//! use sim::Stream;
//!
//! let mut p = Preset::builtin("pcm")?;
//! p.set("read_noise_scale", 0.5)?; // a `--set` override
//! let (out, inp) = (4, 8);
//! let w: Vec<f32> = (0..out * inp).map(|k| (k as f32 - 16.0) / 16.0).collect();
//! let layer = Stream::new(1234, "devices").child("layer0");
//! let arr = p.cell.program(&w, out, inp, p.mapping.scale, layer)?; // programming noise, ν
//! let now = p.cell.age(&arr, p.inference.t_inference_s, layer)?; // drift + 1/f noise
//! let f = p.cell.compensation(&arr, &now, p.inference.drift_compensation)?;
//! let g = p.cell.read(&now, 0, layer); // read number 0 (per-read noise)
//! let w_eff = arr.weights(&g.g_pos_us, &g.g_neg_us, &f)?;
//! assert_eq!(w_eff.len(), w.len());
//! let mut x = vec![0.3f32; inp];
//! p.dac.convert(&mut x, 0, layer.child("dac")); // 7-bit DAC over ±1
//! # Ok::<(), sim::Error>(())
//! ```
//!
//! ## Randomness
//!
//! Every random draw comes from a [`sim::Stream`] at an index derived from the position of the part
//! (device index, neuron index) and a counter (read counter, step counter, update counter); no part
//! keeps a mutable RNG, so results do not depend on the thread count or evaluation order.
//!
//! ## Units
//!
//! Conductances in µS (`_us`), times in seconds (`_s`), resistances in Ω (`_ohm`), voltages in V
//! (`_v`), currents in µA (`_ua`). Converter ranges are in the normalized units of the analog MVM
//! (input 1.0 = full-scale read voltage; output in weight × input units), as in aihwkit.

mod check;

pub mod cells;
pub mod converters;
pub mod cost;
pub mod irdrop;
pub mod mapping;
pub mod neurons;
pub mod presets;
pub mod pulsed;

sim::overflow_probe!();

pub use cells::{
    CellModel, Conductances, DriftCompensation, Fault, IdealCell, PcmCell, ProgrammedArray,
    RramCell,
};
pub use converters::{Adc, BoundManagement, Dac, NoiseManagement};
pub use cost::CostParams;
pub use mapping::ScaleMode;
pub use neurons::{HardSigmoid, IntegrateFire, NeuronArray, WinnerTakeAll};
pub use presets::Preset;
pub use pulsed::{PulsedArray, PulsedCell};
