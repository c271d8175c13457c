//! The netlist IR: a JSON description of an energy-based network as hardware parts — neuron
//! populations, crossbar arrays (conv or dense geometry, tiled onto physical arrays of at most
//! R×C cells), converters (DAC/ADC), pooling parts and the dynamics — with validation whose errors
//! name the file and the JSON path of the offending value. The format is documented in
//! `docs/netlist.md`.
//!
//! This module is plain data plus checks: device physics (what a `device` entry means, how
//! conductances are programmed and read) lives in the `devices` crate and the realization of a
//! netlist as a settling network (`ep::substrate`) lives above it, because dependencies point down
//! (`sim` ← `devices` ← `ep`). Device entries are therefore kept here as opaque JSON values that
//! the realizing layer validates, again with JSON paths.

mod tensor_ref;
mod tiling;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Act, Conv2dParams, Pool2dParams, Tensor};

pub use tensor_ref::TensorRef;
pub use tiling::{Tile, tiles};

/// The netlist format version this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Name of the output port the readout array (if any) drives.
pub const LOGITS: &str = "logits";

/// A netlist error: the file (or `<memory>`), the JSON path (`$.arrays[2].weight`) and what is
/// wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct NetlistError {
    /// File the netlist came from.
    pub file: String,
    /// JSON path of the offending value (`$` is the root).
    pub path: String,
    /// What is wrong.
    pub msg: String,
}

impl fmt::Display for NetlistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.path, self.msg)
    }
}

impl std::error::Error for NetlistError {}

impl NetlistError {
    /// An error at `path` (the file is filled in by [`Netlist::validate`] / [`Netlist::from_json`]).
    pub fn at(path: impl Into<String>, msg: impl Into<String>) -> Self {
        NetlistError {
            file: "<memory>".into(),
            path: path.into(),
            msg: msg.into(),
        }
    }
    fn in_file(mut self, file: &str) -> Self {
        self.file = file.to_string();
        self
    }
}

/// Result of netlist operations.
pub type NResult<T> = std::result::Result<T, NetlistError>;

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

/// Deserialize `v` as `T`, turning serde's message into an error at `path`.
fn part<T: serde::de::DeserializeOwned>(v: &serde_json::Value, path: &str) -> NResult<T> {
    serde_json::from_value(v.clone()).map_err(|e| NetlistError::at(path, e.to_string()))
}

/// Deserialize a population; a bad neuron entry is reported at its field
/// (`$.populations[1].neuron.window`) rather than at the population.
fn population(v: &serde_json::Value, path: &str) -> NResult<Population> {
    part(v, path).map_err(|e| {
        let Some(n) = v.get("neuron") else { return e };
        let np = format!("{path}.neuron");
        if let Some(obj) = n.as_object() {
            for (k, f) in obj {
                let fp = format!("{np}.{k}");
                let r = match k.as_str() {
                    "act" => part::<Act>(f, &fp).err(),
                    "kind" => part::<NeuronKind>(f, &fp).err(),
                    "phase" => part::<SpikePhase>(f, &fp).err(),
                    "window" => part::<u32>(f, &fp).err(),
                    "gain_dtod" | "offset_dtod" | "noise_std" | "threshold" | "leak" => {
                        part::<f64>(f, &fp).err()
                    }
                    _ => None,
                };
                if let Some(r) = r {
                    return r;
                }
            }
        }
        part::<NeuronModel>(n, &np).err().unwrap_or(e)
    })
}

/// The spiking parameters of a neuron model: only with `kind = "spiking"`, in range, and an
/// activation a spike rate can realize.
fn check_neuron(m: &NeuronModel, path: &str) -> NResult<()> {
    let given = [
        ("window", m.window.is_some()),
        ("threshold", m.threshold.is_some()),
        ("leak", m.leak.is_some()),
        ("phase", m.phase.is_some()),
    ];
    match m.kind {
        NeuronKind::Analog => {
            if let Some((k, _)) = given.iter().find(|(_, g)| *g) {
                return Err(NetlistError::at(
                    format!("{path}.{k}"),
                    format!("`{k}` is a spiking-neuron parameter; it needs `kind` = \"spiking\""),
                ));
            }
            Ok(())
        }
        NeuronKind::Spiking => {
            if unit_linear(m.act).is_none() {
                return Err(NetlistError::at(
                    format!("{path}.act"),
                    format!(
                        "a spiking neuron's rate realizes only an activation with range [0, 1] \
                         that is linear between its clamps (hard_sigmoid, my_hard_sig, \
                         clamp 0..1), not {:?}",
                        m.act
                    ),
                ));
            }
            check_spiking(
                m.window.unwrap_or(DEFAULT_SPIKE_WINDOW),
                m.threshold.unwrap_or(1.0),
                m.leak.unwrap_or(0.0),
            )
            .map_err(|(k, msg)| NetlistError::at(format!("{path}.{k}"), msg))
        }
    }
}

impl Netlist {
    /// Parse and validate netlist JSON text, loading its tensors; every error names `origin.file`
    /// and a JSON path.
    pub fn from_json(text: &str, origin: Origin) -> NResult<Loaded> {
        let file = origin.file.clone();
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| NetlistError::at("$", format!("not valid JSON: {e}")).in_file(&file))?;
        let n = Self::from_value(&v).map_err(|e| e.in_file(&file))?;
        n.load(origin)
    }

    /// Read, parse, validate and load a netlist file.
    pub fn read(path: &Path) -> NResult<Loaded> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            NetlistError::at("$", format!("cannot read: {e}")).in_file(&path.display().to_string())
        })?;
        Self::from_json(&text, Origin::file(path))
    }

    /// Structured parse of a JSON value, section by section so that errors carry a path.
    fn from_value(v: &serde_json::Value) -> NResult<Netlist> {
        let obj = v
            .as_object()
            .ok_or_else(|| NetlistError::at("$", "a netlist is a JSON object"))?;
        const KNOWN: [&str; 9] = [
            "format_version",
            "name",
            "input",
            "populations",
            "arrays",
            "converters",
            "pools",
            "devices",
            "dynamics",
        ];
        for k in obj.keys() {
            if !KNOWN.contains(&k.as_str()) {
                return Err(NetlistError::at(
                    format!("$.{k}"),
                    format!("unknown part `{k}`; expected one of {}", KNOWN.join(", ")),
                ));
            }
        }
        let fv = obj
            .get("format_version")
            .ok_or_else(|| NetlistError::at("$.format_version", "missing"))?;
        let fv: u32 = part(fv, "$.format_version")?;
        if fv != FORMAT_VERSION {
            return Err(NetlistError::at(
                "$.format_version",
                format!("unsupported format_version {fv} (this build reads {FORMAT_VERSION})"),
            ));
        }
        let req = |k: &str| {
            obj.get(k)
                .ok_or_else(|| NetlistError::at(format!("$.{k}"), "missing"))
        };
        let list = |k: &str, required: bool| -> NResult<Vec<serde_json::Value>> {
            match obj.get(k) {
                None if !required => Ok(vec![]),
                None => Err(NetlistError::at(format!("$.{k}"), "missing")),
                Some(serde_json::Value::Array(a)) => Ok(a.clone()),
                Some(_) => Err(NetlistError::at(format!("$.{k}"), "must be a JSON array")),
            }
        };
        let each = |k: &str, required: bool| -> NResult<Vec<(String, serde_json::Value)>> {
            Ok(list(k, required)?
                .into_iter()
                .enumerate()
                .map(|(i, v)| (format!("$.{k}[{i}]"), v))
                .collect())
        };
        let populations = each("populations", true)?
            .iter()
            .map(|(p, v)| population(v, p))
            .collect::<NResult<_>>()?;
        let arrays = each("arrays", true)?
            .iter()
            .map(|(p, v)| part(v, p))
            .collect::<NResult<_>>()?;
        let converters = each("converters", false)?
            .iter()
            .map(|(p, v)| part(v, p))
            .collect::<NResult<_>>()?;
        let pools = each("pools", false)?
            .iter()
            .map(|(p, v)| part(v, p))
            .collect::<NResult<_>>()?;
        let devices = match obj.get("devices") {
            None => BTreeMap::new(),
            Some(d) => part(d, "$.devices")?,
        };
        Ok(Netlist {
            format_version: fv,
            name: match obj.get("name") {
                None => String::new(),
                Some(n) => part(n, "$.name")?,
            },
            input: part(req("input")?, "$.input")?,
            populations,
            arrays,
            converters,
            pools,
            devices,
            dynamics: part(req("dynamics")?, "$.dynamics")?,
        })
    }

    /// Serialize to pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("netlist serializes")
    }

    /// Validate the structure and load every tensor (checking shapes and finiteness).
    pub fn load(self, origin: Origin) -> NResult<Loaded> {
        let file = origin.file.clone();
        let r = (|| {
            self.validate_structure()?;
            let mut weights = Vec::new();
            let mut biases = Vec::new();
            for (i, a) in self.arrays.iter().enumerate() {
                let p = format!("$.arrays[{i}]");
                let w = a.weight.load(&origin.dir, &format!("{p}.weight"))?;
                let expect = if a.to == LOGITS {
                    let src: usize = self.net_shape(&a.from).expect("validated").iter().product();
                    vec![w.shape().first().copied().unwrap_or(0).max(1), src]
                } else {
                    self.weight_shape(i)?
                };
                if w.shape() != expect.as_slice() {
                    return Err(NetlistError::at(
                        format!("{p}.weight"),
                        format!(
                            "shape mismatch: weight has shape {:?}, the nets it joins need {:?}",
                            w.shape(),
                            expect
                        ),
                    ));
                }
                let b = match &a.bias {
                    Some(b) => {
                        let b = b.load(&origin.dir, &format!("{p}.bias"))?;
                        if b.shape() != [expect[0]] {
                            return Err(NetlistError::at(
                                format!("{p}.bias"),
                                format!(
                                    "shape mismatch: bias has shape {:?}, expected [{}]",
                                    b.shape(),
                                    expect[0]
                                ),
                            ));
                        }
                        b
                    }
                    None => Tensor::zeros(ndarray::IxDyn(&[expect[0]])),
                };
                weights.push(w);
                biases.push(b);
            }
            Ok((weights, biases))
        })();
        let (weights, biases) = r.map_err(|e: NetlistError| e.in_file(&file))?;
        Ok(Loaded {
            netlist: self,
            weights,
            biases,
            origin,
        })
    }

    /// Number of arrays inside the dynamics (all but the readout).
    pub fn n_dynamic_arrays(&self) -> usize {
        self.arrays.len() - usize::from(self.dynamics.readout.is_some())
    }

    /// Shape of the net called `name` (without the batch axis).
    pub fn net_shape(&self, name: &str) -> Option<Vec<usize>> {
        if name == self.input.name {
            return Some(self.input.shape.to_vec());
        }
        self.populations
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.shape.clone())
    }

    /// The weight shape array `i` must have, given the nets it joins (validated structure).
    pub fn weight_shape(&self, i: usize) -> NResult<Vec<usize>> {
        let a = &self.arrays[i];
        let p = format!("$.arrays[{i}]");
        let src = self
            .net_shape(&a.from)
            .ok_or_else(|| NetlistError::at(format!("{p}.from"), "dangling net"))?;
        match a.geometry {
            Geometry::Dense => {
                let out = if a.to == LOGITS {
                    self.readout_classes(i)?
                } else {
                    let dst = self
                        .net_shape(&a.to)
                        .ok_or_else(|| NetlistError::at(format!("{p}.to"), "dangling net"))?;
                    dst.iter().product()
                };
                Ok(vec![out, src.iter().product()])
            }
            Geometry::Conv { kernel, .. } => {
                let dst = self
                    .net_shape(&a.to)
                    .ok_or_else(|| NetlistError::at(format!("{p}.to"), "dangling net"))?;
                Ok(vec![dst[0], src[0], kernel, kernel])
            }
        }
    }

    /// Number of classes of a readout array: the leading dim of its weight (inline shape or file).
    fn readout_classes(&self, i: usize) -> NResult<usize> {
        self.arrays[i].weight.leading_dim().ok_or_else(|| {
            NetlistError::at(
                format!("$.arrays[{i}].weight"),
                "cannot determine the number of classes of the readout",
            )
        })
    }

    /// Conv parameters of array `i` (None for dense).
    pub fn conv_params(&self, i: usize) -> Option<Conv2dParams> {
        match self.arrays[i].geometry {
            Geometry::Conv {
                stride, padding, ..
            } => Some(Conv2dParams::new(stride, padding)),
            Geometry::Dense => None,
        }
    }

    /// The pooling part of array `i`, if any.
    pub fn pool_of(&self, i: usize) -> Option<&PoolPart> {
        let name = self.arrays[i].pool.as_ref()?;
        self.pools.iter().find(|p| &p.name == name)
    }

    /// The converter called `name`.
    pub fn converter(&self, name: &str) -> Option<&Converter> {
        self.converters.iter().find(|c| c.name == name)
    }

    /// Check names, references, the layered topology, geometries, shapes and parameter ranges
    /// (tensors are checked by [`Netlist::load`]).
    pub fn validate_structure(&self) -> NResult<()> {
        let mut names: HashMap<String, String> = HashMap::new();
        let mut claim = |name: &str, path: String| -> NResult<()> {
            if name.is_empty() {
                return Err(NetlistError::at(format!("{path}.name"), "empty name"));
            }
            if name == LOGITS {
                return Err(NetlistError::at(
                    format!("{path}.name"),
                    format!("`{LOGITS}` is reserved for the readout output"),
                ));
            }
            if let Some(prev) = names.insert(name.to_string(), path.clone()) {
                return Err(NetlistError::at(
                    format!("{path}.name"),
                    format!("duplicate name `{name}` (also at {prev})"),
                ));
            }
            Ok(())
        };
        claim(&self.input.name, "$.input".into())?;
        if self.input.shape.contains(&0) {
            return Err(NetlistError::at(
                "$.input.shape",
                format!(
                    "out-of-range parameter: zero dimension in {:?}",
                    self.input.shape
                ),
            ));
        }
        if let Some(n) = &self.input.norm {
            let c = self.input.shape[0];
            if n.mean.len() != c || n.std.len() != c {
                return Err(NetlistError::at(
                    "$.input.norm",
                    format!("shape mismatch: mean/std need {c} entries (one per channel)"),
                ));
            }
            if let Some((j, s)) = n.std.iter().enumerate().find(|(_, s)| {
                s.partial_cmp(&&0.0) != Some(std::cmp::Ordering::Greater) || !s.is_finite()
            }) {
                return Err(NetlistError::at(
                    format!("$.input.norm.std[{j}]"),
                    format!("out-of-range parameter: {s} (must be > 0)"),
                ));
            }
        }
        for (i, p) in self.populations.iter().enumerate() {
            let path = format!("$.populations[{i}]");
            claim(&p.name, path.clone())?;
            if p.shape.is_empty() || p.shape.len() == 2 || p.shape.len() > 3 || p.shape.contains(&0)
            {
                return Err(NetlistError::at(
                    format!("{path}.shape"),
                    format!(
                        "out-of-range parameter: {:?} (use [n] or [C, H, W], no zeros)",
                        p.shape
                    ),
                ));
            }
            for (k, v) in [
                ("gain_dtod", p.neuron.gain_dtod),
                ("offset_dtod", p.neuron.offset_dtod),
                ("noise_std", p.neuron.noise_std),
            ] {
                if !(v >= 0.0 && v.is_finite()) {
                    return Err(NetlistError::at(
                        format!("{path}.neuron.{k}"),
                        format!("out-of-range parameter: {v} (must be finite and ≥ 0)"),
                    ));
                }
            }
            check_neuron(&p.neuron, &format!("{path}.neuron"))?;
        }
        for (i, c) in self.converters.iter().enumerate() {
            let path = format!("$.converters[{i}]");
            claim(&c.name, path.clone())?;
            if c.bits == 1 || c.bits > 24 {
                return Err(NetlistError::at(
                    format!("{path}.bits"),
                    format!("out-of-range parameter: {} (0 = none, else 2..=24)", c.bits),
                ));
            }
            match c.bound {
                Some(b) if !(b > 0.0 && b.is_finite()) => {
                    return Err(NetlistError::at(
                        format!("{path}.bound"),
                        format!("out-of-range parameter: {b} (must be finite and > 0, or null)"),
                    ));
                }
                None if c.bits > 0 => {
                    return Err(NetlistError::at(
                        format!("{path}.bound"),
                        "a quantizing converter (bits > 0) needs a finite bound",
                    ));
                }
                _ => {}
            }
            if !(c.noise_std >= 0.0 && c.noise_std.is_finite()) {
                return Err(NetlistError::at(
                    format!("{path}.noise_std"),
                    format!("out-of-range parameter: {} (must be ≥ 0)", c.noise_std),
                ));
            }
            let wrong_kind = match c.kind {
                ConverterKind::Dac => [
                    ("bound_management", c.bound_management.is_some()),
                    ("max_bm_factor", c.max_bm_factor.is_some()),
                    ("max_bm_res", c.max_bm_res.is_some()),
                ],
                ConverterKind::Adc => [
                    ("noise_management", c.noise_management.is_some()),
                    ("nm_thres", c.nm_thres.is_some()),
                    ("", false),
                ],
            };
            if let Some((k, _)) = wrong_kind.iter().find(|(_, set)| *set) {
                return Err(NetlistError::at(
                    format!("{path}.{k}"),
                    format!(
                        "`{k}` is an option of {} (noise management scales DAC inputs, bound \
                         management re-reads when the ADC saturates)",
                        if c.kind == ConverterKind::Dac {
                            "ADCs, not DACs"
                        } else {
                            "DACs, not ADCs"
                        }
                    ),
                ));
            }
            if let Some(v) = c.nm_thres
                && !(v >= 0.0 && v.is_finite())
            {
                return Err(NetlistError::at(
                    format!("{path}.nm_thres"),
                    format!("out-of-range parameter: {v} (must be finite and ≥ 0)"),
                ));
            }
            if c.max_bm_factor == Some(0) {
                return Err(NetlistError::at(
                    format!("{path}.max_bm_factor"),
                    "out-of-range parameter: 0 (must be ≥ 1)",
                ));
            }
            if let Some(v) = c.max_bm_res
                && !(v > 0.0 && v.is_finite())
            {
                return Err(NetlistError::at(
                    format!("{path}.max_bm_res"),
                    format!("out-of-range parameter: {v} (must be finite and > 0)"),
                ));
            }
        }
        for (i, p) in self.pools.iter().enumerate() {
            let path = format!("$.pools[{i}]");
            claim(&p.name, path.clone())?;
            for (k, v) in [("kernel", p.kernel), ("stride", p.stride)] {
                if v == 0 {
                    return Err(NetlistError::at(
                        format!("{path}.{k}"),
                        "out-of-range parameter: 0 (must be ≥ 1)",
                    ));
                }
            }
        }
        for (i, a) in self.arrays.iter().enumerate() {
            claim(&a.name, format!("$.arrays[{i}]"))?;
        }
        if self.populations.is_empty() {
            return Err(NetlistError::at(
                "$.populations",
                "at least one population is needed",
            ));
        }
        if self.dynamics.t1 == 0 {
            return Err(NetlistError::at(
                "$.dynamics.t1",
                "out-of-range parameter: 0 (must be ≥ 1)",
            ));
        }
        // Readout.
        let n_dyn = match &self.dynamics.readout {
            None => self.arrays.len(),
            Some(r) => {
                let Some(k) = self.arrays.iter().position(|a| &a.name == r) else {
                    return Err(NetlistError::at(
                        "$.dynamics.readout",
                        format!("dangling net: no array named `{r}`"),
                    ));
                };
                if k + 1 != self.arrays.len() {
                    return Err(NetlistError::at(
                        "$.dynamics.readout",
                        "the readout must be the last array",
                    ));
                }
                self.arrays.len() - 1
            }
        };
        if n_dyn != self.populations.len() {
            return Err(NetlistError::at(
                "$.arrays",
                format!(
                    "{} arrays inside the dynamics for {} populations: each population is driven by exactly one array",
                    n_dyn,
                    self.populations.len()
                ),
            ));
        }
        let mut seen_dense = false;
        for (i, a) in self.arrays.iter().enumerate() {
            let p = format!("$.arrays[{i}]");
            // Layered topology: array k joins net k-1 to population k.
            let want_from = if i == 0 {
                self.input.name.as_str()
            } else {
                self.populations[i - 1].name.as_str()
            };
            if self.net_shape(&a.from).is_none() {
                return Err(NetlistError::at(
                    format!("{p}.from"),
                    format!(
                        "dangling net `{}`: no input port or population of that name",
                        a.from
                    ),
                ));
            }
            if a.from != want_from {
                return Err(NetlistError::at(
                    format!("{p}.from"),
                    format!(
                        "array {i} must be driven by `{want_from}` (layered network), got `{}`",
                        a.from
                    ),
                ));
            }
            let want_to = if i < n_dyn {
                self.populations[i].name.as_str()
            } else {
                LOGITS
            };
            if a.to != LOGITS && self.net_shape(&a.to).is_none() {
                return Err(NetlistError::at(
                    format!("{p}.to"),
                    format!("dangling net `{}`: no population of that name", a.to),
                ));
            }
            if a.to != want_to {
                return Err(NetlistError::at(
                    format!("{p}.to"),
                    format!("array {i} must drive `{want_to}`, got `{}`", a.to),
                ));
            }
            if !self.devices.contains_key(&a.device) {
                return Err(NetlistError::at(
                    format!("{p}.device"),
                    format!("dangling reference: no device `{}` in $.devices", a.device),
                ));
            }
            for (dir, rp) in [("forward", &a.forward), ("transposed", &a.transposed)] {
                for (k, want, name) in [
                    ("dac", ConverterKind::Dac, &rp.dac),
                    ("adc", ConverterKind::Adc, &rp.adc),
                ] {
                    if let Some(n) = name {
                        match self.converter(n) {
                            None => {
                                return Err(NetlistError::at(
                                    format!("{p}.{dir}.{k}"),
                                    format!("dangling reference: no converter `{n}`"),
                                ));
                            }
                            Some(c) if c.kind != want => {
                                return Err(NetlistError::at(
                                    format!("{p}.{dir}.{k}"),
                                    format!("converter `{n}` is a {:?}, a {k} is needed", c.kind),
                                ));
                            }
                            _ => {}
                        }
                    }
                }
            }
            if a.tile.rows == 0
                || a.tile.cols == 0
                || a.tile.rows > 1 << 20
                || a.tile.cols > 1 << 20
            {
                return Err(NetlistError::at(
                    format!("{p}.tile"),
                    format!(
                        "out-of-range parameter: {}x{} (each in 1..=2^20)",
                        a.tile.rows, a.tile.cols
                    ),
                ));
            }
            let src = self.net_shape(&a.from).expect("checked");
            match a.geometry {
                Geometry::Dense => {
                    seen_dense = true;
                    if a.pool.is_some() {
                        return Err(NetlistError::at(
                            format!("{p}.pool"),
                            "pooling is only supported after conv arrays",
                        ));
                    }
                    if a.to != LOGITS {
                        let dst = self.net_shape(&a.to).expect("checked");
                        if dst.len() != 1 {
                            return Err(NetlistError::at(
                                format!("{p}.to"),
                                format!(
                                    "shape mismatch: a dense array drives a flat population, `{}` has shape {dst:?}",
                                    a.to
                                ),
                            ));
                        }
                    }
                }
                Geometry::Conv {
                    kernel,
                    stride,
                    padding: _,
                } => {
                    if seen_dense {
                        return Err(NetlistError::at(
                            format!("{p}.geometry"),
                            "conv arrays must come before every dense array",
                        ));
                    }
                    if kernel == 0 || stride == 0 {
                        return Err(NetlistError::at(
                            format!("{p}.geometry"),
                            "out-of-range parameter: kernel and stride must be ≥ 1",
                        ));
                    }
                    if src.len() != 3 {
                        return Err(NetlistError::at(
                            format!("{p}.from"),
                            format!(
                                "shape mismatch: a conv array reads a [C, H, W] net, `{}` has shape {src:?}",
                                a.from
                            ),
                        ));
                    }
                    if a.to == LOGITS {
                        return Err(NetlistError::at(
                            format!("{p}.geometry"),
                            "the readout must be dense",
                        ));
                    }
                    let dst = self.net_shape(&a.to).expect("checked");
                    let cp = self.conv_params(i).expect("conv");
                    let (ho, wo) = cp
                        .output_hw("netlist", (src[1], src[2]), (kernel, kernel))
                        .map_err(|e| {
                            NetlistError::at(
                                format!("{p}.geometry"),
                                format!("out-of-range parameter: {e}"),
                            )
                        })?;
                    let (hp, wp) = match &a.pool {
                        None => (ho, wo),
                        Some(name) => {
                            let pp = self.pool_of(i).ok_or_else(|| {
                                NetlistError::at(
                                    format!("{p}.pool"),
                                    format!("dangling reference: no pool `{name}`"),
                                )
                            })?;
                            pp.params().output_hw("netlist", (ho, wo)).map_err(|e| {
                                NetlistError::at(
                                    format!("{p}.pool"),
                                    format!("out-of-range parameter: {e}"),
                                )
                            })?
                        }
                    };
                    if dst.len() != 3 || dst[1] != hp || dst[2] != wp {
                        return Err(NetlistError::at(
                            format!("{p}.to"),
                            format!(
                                "shape mismatch: conv output (after pooling) is [C, {hp}, {wp}], population `{}` has shape {dst:?}",
                                a.to
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Human-readable summary (one line per array), for `epsim netlist check`. Weight shapes of
    /// arrays whose tensors live in files are shown as derived from the nets (see
    /// [`Loaded::summary`] for the loaded shapes).
    pub fn summary(&self) -> String {
        self.summary_with(&|i| self.weight_shape(i).unwrap_or_default())
    }

    fn summary_with(&self, shape_of: &dyn Fn(usize) -> Vec<usize>) -> String {
        let mut s = format!(
            "netlist `{}` (format {}): input {} {:?}, {} populations, {} arrays, {} converters, {} pools, {} devices; T1 {}\n",
            self.name,
            self.format_version,
            self.input.name,
            self.input.shape,
            self.populations.len(),
            self.arrays.len(),
            self.converters.len(),
            self.pools.len(),
            self.devices.len(),
            self.dynamics.t1
        );
        for (i, a) in self.arrays.iter().enumerate() {
            let shape = shape_of(i);
            let out = shape.first().copied().unwrap_or(0);
            let inp: usize = shape.iter().skip(1).product();
            let t = tiles(out, inp, a.tile);
            s += &format!(
                "  array {} : {} -> {} {:?} weight {:?}, {} tile(s) of <= {}x{}, device {}\n",
                a.name,
                a.from,
                a.to,
                a.geometry,
                shape,
                t.len(),
                a.tile.rows,
                a.tile.cols,
                a.device
            );
        }
        s
    }
}

impl Loaded {
    /// Human-readable summary with the loaded weight shapes.
    pub fn summary(&self) -> String {
        self.netlist
            .summary_with(&|i| self.weights[i].shape().to_vec())
    }
}

#[cfg(test)]
mod tests;
