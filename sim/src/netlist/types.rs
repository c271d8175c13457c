//! The netlist's types: the JSON format's parts (neuron populations, crossbar arrays and their
//! tiles, converters, pooling parts, the dynamics), the loaded netlist with its tensors, and the
//! error type whose messages name the file and the JSON path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::TensorRef;
use crate::{Act, Pool2dParams, Tensor};

/// The netlist format version this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Name of the output port the readout array (if any) drives.
pub const LOGITS: &str = "logits";

/// Per-channel input normalization x̂ = (x − mean) / std applied before the first array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputNorm {
    /// Mean per channel.
    pub mean: Vec<f32>,
    /// Std per channel.
    pub std: Vec<f32>,
}

/// The input port: the image the network is clamped to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputPort {
    /// Net name other parts refer to.
    pub name: String,
    /// Shape [C, H, W].
    pub shape: [usize; 3],
    /// Normalization of [0, 1] pixels (applied by classifiers, not by the dynamics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub norm: Option<InputNorm>,
}

/// The neuron model of a population: the activation σ of the equations of motion plus the analog
/// non-idealities of a physical neuron (see `devices::neurons`): y = σ(g·(a + o) + ξ·noise_std/σ'),
/// g = 1 + gain_dtod·ξ_g and o = offset_dtod·ξ_o fixed per neuron, ξ fresh at every step.
///
/// With `kind = "spiking"` the same argument z = g·(a + o) + ξ·noise_std/σ' drives a rate-coded
/// integrate-and-fire neuron (`devices::neurons::IntegrateFire`) for `window` ticks per step and
/// y = spikes / window. The spiking parameters (`window`, `threshold`, `leak`, `phase`) are only
/// allowed with `kind = "spiking"`; absent ones take their defaults (32, 1, 0, `random`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeuronModel {
    /// Activation (`my_hard_sig`, `hard_sigmoid`, `identity` for a linear output layer, ...).
    pub act: Act,
    /// Analog (default; absent in older netlists) or spiking.
    #[serde(default, skip_serializing_if = "NeuronKind::is_analog")]
    pub kind: NeuronKind,
    /// Relative device-to-device spread of the gain.
    #[serde(default)]
    pub gain_dtod: f64,
    /// Device-to-device spread of the input-referred offset (pre-activation units).
    #[serde(default)]
    pub offset_dtod: f64,
    /// Additive noise σ per evaluation (output units).
    #[serde(default)]
    pub noise_std: f64,
    /// Spiking: integration ticks per EP step (1..=[`MAX_SPIKE_WINDOW`], default
    /// [`DEFAULT_SPIKE_WINDOW`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<u32>,
    /// Spiking: firing threshold in units of the full-scale charge per tick (> 0, default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Spiking: fraction of the membrane potential lost per tick, in [0, 1) (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leak: Option<f64>,
    /// Spiking: the membrane potential at the start of each step (default `random`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SpikePhase>,
}

impl NeuronModel {
    /// An analog neuron with activation `act` and no non-idealities.
    pub fn analog(act: Act) -> Self {
        NeuronModel {
            act,
            kind: NeuronKind::Analog,
            gain_dtod: 0.0,
            offset_dtod: 0.0,
            noise_std: 0.0,
            window: None,
            threshold: None,
            leak: None,
            phase: None,
        }
    }
}

/// The kind of a neuron population.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NeuronKind {
    /// The output is σ of the input.
    #[default]
    Analog,
    /// Rate-coded integrate-and-fire: the output is the spike count in a window of ticks divided
    /// by the window (see `devices::neurons::IntegrateFire`).
    Spiking,
}

impl NeuronKind {
    /// Whether this is the analog kind (the default).
    pub fn is_analog(&self) -> bool {
        *self == NeuronKind::Analog
    }
}

/// How the membrane potential of a spiking neuron starts each EP step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpikePhase {
    /// Uniform in (0, threshold), drawn per neuron and step from the seeded per-step stream:
    /// stochastic rounding, E[y] = σ(z) exactly for the non-leaky neuron.
    #[default]
    Random,
    /// Zero: deterministic, the count is rounded down (mean bias −1/(2·window)).
    Zero,
    /// Half the threshold: deterministic, the count is rounded to the nearest integer.
    Half,
}

/// Largest spiking window (ticks per step) a netlist may ask for.
pub const MAX_SPIKE_WINDOW: u32 = 1 << 20;

/// Spiking window of a netlist neuron that does not give one.
pub const DEFAULT_SPIKE_WINDOW: u32 = 32;

/// `(s, b)` with `act(z) = clamp(s·z + b, 0, 1)` for the activations a rate-coded spiking neuron
/// can realize (output range [0, 1], linear between the clamps); `None` for the others.
pub fn unit_linear(act: Act) -> Option<(f64, f64)> {
    match act {
        Act::HardSigmoid => Some((1.0, 0.0)),
        Act::MyHardSig => Some((0.5, 0.0)),
        Act::Clamp { lo, hi } if lo == 0.0 && hi == 1.0 => Some((1.0, 0.0)),
        _ => None,
    }
}

/// Range checks of the spiking parameters: `Err((field, message))`.
pub fn check_spiking(
    window: u32,
    threshold: f64,
    leak: f64,
) -> std::result::Result<(), (&'static str, String)> {
    if !(1..=MAX_SPIKE_WINDOW).contains(&window) {
        return Err((
            "window",
            format!("out-of-range parameter: {window} (ticks per step, 1..={MAX_SPIKE_WINDOW})"),
        ));
    }
    if !(threshold > 0.0 && threshold.is_finite()) {
        return Err((
            "threshold",
            format!("out-of-range parameter: {threshold} (must be finite and > 0)"),
        ));
    }
    if !(0.0..1.0).contains(&leak) {
        return Err((
            "leak",
            format!("out-of-range parameter: {leak} (fraction lost per tick, in [0, 1))"),
        ));
    }
    Ok(())
}

/// A population of neurons (one EP layer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Population {
    /// Net name.
    pub name: String,
    /// Shape without the batch axis: [C, H, W] after a conv array, [n] after a dense one.
    pub shape: Vec<usize>,
    /// Neuron model.
    pub neuron: NeuronModel,
}

/// The geometry of the weight matrix of an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Geometry {
    /// Fully connected: weight `[out, in]`, `in` = number of source neurons (flattened).
    Dense,
    /// 2-D convolution, weight `[O, C, k, k]` (OIHW), unrolled onto the crossbar as the matrix
    /// `[O, C·k·k]` and read once per output position with the same programmed cells.
    Conv {
        /// Square kernel size.
        kernel: usize,
        /// Stride.
        #[serde(default = "one")]
        stride: usize,
        /// Zero padding.
        #[serde(default)]
        padding: usize,
    },
}

fn one() -> usize {
    1
}

/// Physical array size: at most `rows` crossbar rows (inputs) and `cols` columns (outputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TileSize {
    /// Rows (driven inputs) per physical array.
    pub rows: usize,
    /// Columns (sensed outputs) per physical array.
    pub cols: usize,
}

impl Default for TileSize {
    fn default() -> Self {
        TileSize {
            rows: 512,
            cols: 512,
        }
    }
}

/// Converters on one read direction of an array (names of `converters` parts; absent = ideal).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadPath {
    /// DAC driving the inputs of this direction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dac: Option<String>,
    /// ADC sensing the outputs of this direction (one conversion per tile partial sum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adc: Option<String>,
}

/// A crossbar array joining two nets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrossbarArray {
    /// Part name.
    pub name: String,
    /// Source net (the input port or a population).
    pub from: String,
    /// Destination net (a population, or `logits` for the readout).
    pub to: String,
    /// Conv or dense.
    pub geometry: Geometry,
    /// Pooling part applied to the forward read (conv arrays only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Weights, PyTorch layout (OIHW or `[out, in]`).
    pub weight: TensorRef,
    /// Bias `[out]`, added digitally after the converters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias: Option<TensorRef>,
    /// Physical array size the matrix is tiled onto.
    #[serde(default)]
    pub tile: TileSize,
    /// Name of the entry of `devices` the cells are made of.
    pub device: String,
    /// Converters of the forward read (rows driven, columns sensed).
    #[serde(default)]
    pub forward: ReadPath,
    /// Converters of the transposed read (columns driven, rows sensed: the feedback term).
    #[serde(default)]
    pub transposed: ReadPath,
}

/// Kind of a converter part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConverterKind {
    /// Digital-to-analog (inputs).
    Dac,
    /// Analog-to-digital (outputs).
    Adc,
}

/// Input scaling into the DAC range before a read (aihwkit `noise_management`): each input vector
/// `x` is read as `x / α` and the converted result is multiplied by `α`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseManagement {
    /// α = 1: inputs go to the DAC as they are.
    #[default]
    None,
    /// α = max_i |x_i| of the input vector (capped at `nm_thres` when that is > 0); an all-zero
    /// vector reads exactly zero.
    AbsMax,
    /// α = `nm_thres` (1 when `nm_thres` is 0).
    Constant,
}

/// What a read does when its ADC saturates (aihwkit `bound_management`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoundManagement {
    /// The ADC clips.
    #[default]
    None,
    /// An output vector with a value outside ±bound is read again with its input halved (reduction
    /// r = 1, 2, 4, …; the result is multiplied by r) until no value is out of range, or after the
    /// read with r > `max_bm_factor` or r > `max_bm_res`·(2^bits − 2) of the DAC (that read is kept).
    Iterative,
}

/// A converter: `bits` over ±`bound` (null bound = no clipping), additive noise σ, and the
/// converter's share of aihwkit's I/O management (absent = none): noise management on a DAC, bound
/// management on an ADC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Converter {
    /// Part name.
    pub name: String,
    /// DAC or ADC.
    pub kind: ConverterKind,
    /// Resolution in bits (0 = none, else 2..=24).
    #[serde(default)]
    pub bits: u32,
    /// Range ±bound in normalized units; `null`/absent = no clipping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound: Option<f64>,
    /// Additive Gaussian noise σ per conversion.
    #[serde(default)]
    pub noise_std: f64,
    /// DAC only: input scaling of every read through this DAC (absent = none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_management: Option<NoiseManagement>,
    /// DAC only: cap of the abs-max scale, or the constant scale (absent = 0 = no cap / 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nm_thres: Option<f64>,
    /// ADC only: what a saturated read does (absent = none: the ADC clips).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_management: Option<BoundManagement>,
    /// ADC only: the iterative bound management stops after the read with reduction
    /// r > `max_bm_factor` (absent = 1000, aihwkit's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bm_factor: Option<u32>,
    /// ADC only: it also stops after the read with r > `max_bm_res` / (DAC resolution), i.e. when
    /// the reduced inputs have fewer than `max_bm_res`·(2^bits − 2) DAC steps (absent = 0.25,
    /// aihwkit's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bm_res: Option<f64>,
}

impl Converter {
    /// A converter without management options.
    pub fn plain(
        name: &str,
        kind: ConverterKind,
        bits: u32,
        bound: Option<f64>,
        noise_std: f64,
    ) -> Self {
        Converter {
            name: name.into(),
            kind,
            bits,
            bound,
            noise_std,
            noise_management: None,
            nm_thres: None,
            bound_management: None,
            max_bm_factor: None,
            max_bm_res: None,
        }
    }
}

/// Kind of a pooling part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolKind {
    /// Winner-take-all max pooling (first maximum wins).
    Max,
    /// Average pooling (a current-summing node).
    Avg,
}

/// A pooling part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolPart {
    /// Part name.
    pub name: String,
    /// Max or average.
    pub kind: PoolKind,
    /// Square window.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
}

impl PoolPart {
    /// Window parameters.
    pub fn params(&self) -> Pool2dParams {
        Pool2dParams::new(self.kernel, self.stride)
    }
}

/// The cost the output is nudged with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NudgeLoss {
    /// Squared error on the output population.
    Mse,
    /// Cross-entropy (on the readout when there is one).
    CrossEntropy,
}

/// How the network settles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dynamics {
    /// Free-phase steps.
    pub t1: usize,
    /// Nudged-phase steps.
    #[serde(default)]
    pub t2: usize,
    /// Nudging cost.
    pub loss: NudgeLoss,
    /// Name of the readout array (softmax readout outside the dynamics), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readout: Option<String>,
}

/// A whole netlist. See the module doc and `docs/netlist.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Netlist {
    /// Must be [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Free-form name.
    #[serde(default)]
    pub name: String,
    /// Input port.
    pub input: InputPort,
    /// Neuron populations, in layer order.
    pub populations: Vec<Population>,
    /// Crossbar arrays: array k joins net k−1 (0 = input) to population k; the readout last.
    pub arrays: Vec<CrossbarArray>,
    /// Converter parts.
    #[serde(default)]
    pub converters: Vec<Converter>,
    /// Pooling parts.
    #[serde(default)]
    pub pools: Vec<PoolPart>,
    /// Device models by name (opaque here; realized and validated by `ep::substrate`).
    #[serde(default)]
    pub devices: BTreeMap<String, serde_json::Value>,
    /// Dynamics.
    pub dynamics: Dynamics,
}

/// Where relative tensor files are resolved, and the name used in errors.
#[derive(Debug, Clone)]
pub struct Origin {
    /// Name for errors (the file path, or `<memory>`).
    pub file: String,
    /// Directory relative `npy` references are resolved against.
    pub dir: PathBuf,
}

impl Origin {
    /// An in-memory netlist resolving files against the current directory.
    pub fn memory() -> Self {
        Origin {
            file: "<memory>".into(),
            dir: PathBuf::from("."),
        }
    }
    /// A netlist read from `path`.
    pub fn file(path: &Path) -> Self {
        Origin {
            file: path.display().to_string(),
            dir: path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
        }
    }
}

/// A validated netlist with its tensors loaded.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The netlist.
    pub netlist: Netlist,
    /// Per array: weight tensor.
    pub weights: Vec<Tensor>,
    /// Per array: bias tensor (zeros when absent).
    pub biases: Vec<Tensor>,
    /// Where it came from.
    pub origin: Origin,
}
