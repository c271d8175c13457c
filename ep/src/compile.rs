//! Compile a model (spec + weights) and a device preset into a netlist, and read a netlist back as
//! a model spec with its weights.
//!
//! The compiled netlist is self-contained: weights and biases inline, the preset's cell, mapping,
//! inference and (when not all zero) IR-drop parameters inline under `devices.dev`, its DAC/ADC as converter parts with their
//! noise/bound management (the same pair on the forward and the transposed read of every array) and its neuron non-idealities on
//! every population (the activation itself comes from the model). With the preset's
//! `neuron.kind = spiking` every population becomes a spiking one with the preset's window,
//! threshold, leak and phase, except a linear (identity) output layer, which stays analog; a model
//! whose activation a spike rate cannot realize is an error. Names: input `x`, populations
//! `h1..hn`, arrays `syn0..`, readout `readout`, pools `pool{i}`.

use devices::Preset;
use devices::irdrop::IrDrop;
use devices::presets::{InferenceParams, MappingParams};
use serde::{Deserialize, Serialize};
use sim::netlist::{
    Converter, ConverterKind, CrossbarArray, Dynamics, Geometry, InputNorm as NetNorm, InputPort,
    LOGITS, Loaded, NResult, Netlist, NetlistError, NeuronKind, NeuronModel, NudgeLoss, PoolKind,
    PoolPart, Population, ReadPath, TensorRef, TileSize, unit_linear,
};
use sim::{Act, Error, Result, Tensor};

use crate::spec::{ConvLayer, InputNorm, Loss, ModelSpec, Pool};

/// Options of [`compile`].
#[derive(Debug, Clone)]
pub struct CompileOptions {
    /// Physical array size every weight matrix is tiled onto.
    pub tile: TileSize,
    /// Netlist name.
    pub name: String,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            tile: TileSize::default(),
            name: "epsim".into(),
        }
    }
}

/// The device entry of a netlist: the parts of a preset that crossbar cells need. JSON: either
/// `{"preset": "pcm", "set": {"read_noise_scale": 0.5}}` (a built-in preset with overrides) or the
/// inline tables `{"cell": {...}, "mapping": {...}, "inference": {...}, "ir_drop": {...}}` (optionally with a
/// `"preset"` label).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    /// Informational: the preset the parameters came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// Crossbar cell.
    pub cell: devices::CellModel,
    /// Weight → conductance mapping.
    #[serde(default)]
    pub mapping: MappingParams,
    /// Inference time and drift compensation.
    #[serde(default)]
    pub inference: InferenceParams,
    /// Interconnect resistances of the arrays (IR drop; absent or all 0 = none).
    #[serde(default, skip_serializing_if = "is_default_ir")]
    pub ir_drop: IrDrop,
}

fn is_default_ir(p: &IrDrop) -> bool {
    *p == IrDrop::default()
}

impl DeviceSpec {
    /// The device part of a preset.
    pub fn from_preset(p: &Preset) -> Self {
        DeviceSpec {
            preset: Some(p.name.clone()),
            cell: p.cell.clone(),
            mapping: p.mapping.clone(),
            inference: p.inference.clone(),
            ir_drop: p.ir_drop.clone(),
        }
    }

    /// Parse and validate a netlist device entry; errors name `path`.
    pub fn from_json(v: &serde_json::Value, path: &str) -> NResult<Self> {
        let obj = v
            .as_object()
            .ok_or_else(|| NetlistError::at(path, "a device is a JSON object"))?;
        if !obj.contains_key("cell") {
            let name = obj.get("preset").and_then(|p| p.as_str()).ok_or_else(|| {
                NetlistError::at(
                    path,
                    "a device needs `preset` (a built-in name) or inline `cell` parameters",
                )
            })?;
            if let Some(k) = obj.keys().find(|k| *k != "preset" && *k != "set") {
                return Err(NetlistError::at(
                    format!("{path}.{k}"),
                    format!("unknown field `{k}` (with `preset`, only `set` is allowed)"),
                ));
            }
            let mut p = Preset::builtin(name)
                .map_err(|e| NetlistError::at(format!("{path}.preset"), e.to_string()))?;
            if let Some(set) = obj.get("set") {
                let set = set.as_object().ok_or_else(|| {
                    NetlistError::at(format!("{path}.set"), "must be an object of key: value")
                })?;
                for (k, val) in set {
                    p.set_str(k, &val.to_string())
                        .map_err(|e| NetlistError::at(format!("{path}.set.{k}"), e.to_string()))?;
                }
            }
            return Ok(DeviceSpec::from_preset(&p));
        }
        let d: DeviceSpec =
            serde_json::from_value(v.clone()).map_err(|e| NetlistError::at(path, e.to_string()))?;
        d.cell
            .validate()
            .map_err(|e| NetlistError::at(format!("{path}.cell"), e.to_string()))?;
        d.ir_drop
            .validate()
            .map_err(|e| NetlistError::at(format!("{path}.ir_drop"), e.to_string()))?;
        if !(d.inference.t_inference_s >= 0.0 && d.inference.t_inference_s.is_finite()) {
            return Err(NetlistError::at(
                format!("{path}.inference.t_inference_s"),
                format!(
                    "out-of-range parameter: {} (must be ≥ 0)",
                    d.inference.t_inference_s
                ),
            ));
        }
        Ok(d)
    }
}

fn bound(b: f64) -> Option<f64> {
    b.is_finite().then_some(b)
}

/// The DAC part of a preset, with its noise management.
fn dac_part(d: &devices::Dac) -> Converter {
    Converter {
        noise_management: Some(d.noise_management),
        nm_thres: Some(d.nm_thres),
        ..Converter::plain(
            "dac",
            ConverterKind::Dac,
            d.bits,
            bound(d.bound),
            d.noise_std,
        )
    }
}

/// The ADC part of a preset, with its bound management.
fn adc_part(a: &devices::Adc) -> Converter {
    Converter {
        bound_management: Some(a.bound_management),
        max_bm_factor: Some(a.max_bm_factor),
        max_bm_res: Some(a.max_bm_res),
        ..Converter::plain(
            "adc",
            ConverterKind::Adc,
            a.bits,
            bound(a.bound),
            a.noise_std,
        )
    }
}

/// Compile a model and a preset into a netlist (see the module doc).
pub fn compile(
    spec: &ModelSpec,
    weights: &[Tensor],
    biases: &[Tensor],
    preset: &Preset,
    opts: &CompileOptions,
) -> Result<Netlist> {
    let geom = spec.geometry()?;
    let ns = spec.n_synapses();
    if weights.len() != ns || biases.len() != ns {
        return Err(Error::shape(
            "compile",
            format!(
                "spec has {ns} synapses, got {} weights and {} biases",
                weights.len(),
                biases.len()
            ),
        ));
    }
    preset.validate()?;
    let n = spec.n_layers();
    let spiking = preset.neuron.kind == NeuronKind::Spiking;
    if spiking && unit_linear(spec.act).is_none() {
        return Err(Error::param(
            "compile",
            format!(
                "neuron.kind = spiking: a spike rate realizes only an activation with range \
                 [0, 1] that is linear between its clamps (hard_sigmoid, my_hard_sig), the model \
                 uses {:?}",
                spec.act
            ),
        ));
    }
    let populations: Vec<Population> = (0..n)
        .map(|k| {
            let act = if k + 1 == n && !spec.softmax && spec.loss == Loss::CrossEntropy {
                Act::Identity
            } else {
                spec.act
            };
            // A linear (identity) output layer stays analog.
            let spk = spiking && unit_linear(act).is_some();
            let nn = &preset.neuron;
            Population {
                name: format!("h{}", k + 1),
                shape: geom.layer_shapes[k].clone(),
                neuron: NeuronModel {
                    kind: if spk {
                        NeuronKind::Spiking
                    } else {
                        NeuronKind::Analog
                    },
                    gain_dtod: nn.gain_dtod,
                    offset_dtod: nn.offset_dtod,
                    noise_std: nn.noise_std,
                    window: spk.then_some(nn.window),
                    threshold: spk.then_some(nn.threshold),
                    leak: spk.then_some(nn.leak),
                    phase: spk.then_some(nn.phase),
                    ..NeuronModel::analog(act)
                },
            }
        })
        .collect();
    let path = ReadPath {
        dac: Some("dac".into()),
        adc: Some("adc".into()),
    };
    let mut pools = Vec::new();
    let mut arrays = Vec::new();
    for i in 0..ns {
        let from = if i == 0 {
            "x".to_string()
        } else {
            format!("h{i}")
        };
        let readout = spec.softmax && i + 1 == ns;
        let (geometry, pool) = if i < spec.conv.len() {
            let l = &spec.conv[i];
            let pool = match l.pool {
                Pool::Identity => None,
                kind => {
                    pools.push(PoolPart {
                        name: format!("pool{i}"),
                        kind: if kind == Pool::Max {
                            PoolKind::Max
                        } else {
                            PoolKind::Avg
                        },
                        kernel: 2,
                        stride: 2,
                    });
                    Some(format!("pool{i}"))
                }
            };
            (
                Geometry::Conv {
                    kernel: l.kernel,
                    stride: l.stride,
                    padding: l.padding,
                },
                pool,
            )
        } else {
            (Geometry::Dense, None)
        };
        arrays.push(CrossbarArray {
            name: if readout {
                "readout".into()
            } else {
                format!("syn{i}")
            },
            from,
            to: if readout {
                LOGITS.into()
            } else {
                format!("h{}", i + 1)
            },
            geometry,
            pool,
            weight: TensorRef::inline(&weights[i]),
            bias: Some(TensorRef::inline(&biases[i])),
            tile: opts.tile,
            device: "dev".into(),
            forward: path.clone(),
            transposed: path.clone(),
        });
    }
    let dev = serde_json::to_value(DeviceSpec::from_preset(preset))
        .map_err(|e| Error::Other(format!("device parameters: {e}")))?;
    let nl = Netlist {
        format_version: sim::netlist::FORMAT_VERSION,
        name: opts.name.clone(),
        input: InputPort {
            name: "x".into(),
            shape: spec.input,
            norm: spec.input_norm.as_ref().map(|n| NetNorm {
                mean: n.mean.clone(),
                std: n.std.clone(),
            }),
        },
        populations,
        arrays,
        converters: vec![dac_part(&preset.dac), adc_part(&preset.adc)],
        pools,
        devices: [("dev".to_string(), dev)].into_iter().collect(),
        dynamics: Dynamics {
            t1: spec.t1,
            t2: spec.t2,
            loss: match spec.loss {
                Loss::Mse => NudgeLoss::Mse,
                Loss::CrossEntropy => NudgeLoss::CrossEntropy,
            },
            readout: spec.softmax.then(|| "readout".to_string()),
        },
    };
    nl.validate_structure()
        .map_err(|e| Error::Other(format!("compiled netlist is invalid (a bug): {e}")))?;
    Ok(nl)
}

/// The model a (validated) netlist realizes: its spec, with weights and biases. Errors (with JSON
/// paths) for netlists outside what the EP dynamics support: mixed activations, pools other than
/// 2×2 stride 2.
pub fn model_of(l: &Loaded) -> NResult<(ModelSpec, Vec<Tensor>, Vec<Tensor>)> {
    let nl = &l.netlist;
    let softmax = nl.dynamics.readout.is_some();
    let loss = match nl.dynamics.loss {
        NudgeLoss::Mse => Loss::Mse,
        NudgeLoss::CrossEntropy => Loss::CrossEntropy,
    };
    let n = nl.populations.len();
    let linear_out = !softmax && loss == Loss::CrossEntropy;
    let act = nl.populations[0].neuron.act;
    for (k, p) in nl.populations.iter().enumerate() {
        let want = if k + 1 == n && linear_out {
            Act::Identity
        } else {
            act
        };
        if p.neuron.act != want {
            return Err(NetlistError::at(
                format!("$.populations[{k}].neuron.act"),
                format!(
                    "activation {:?}: expected {want:?} (one activation for every population; the \
                     output is linear (identity) exactly when the cost is cross-entropy without a readout)",
                    p.neuron.act
                ),
            ));
        }
    }
    let mut conv = Vec::new();
    let mut fc = Vec::new();
    for (i, a) in nl.arrays.iter().enumerate() {
        match a.geometry {
            Geometry::Conv {
                kernel,
                stride,
                padding,
            } => {
                let pool = match nl.pool_of(i) {
                    None => Pool::Identity,
                    Some(p) => {
                        if p.kernel != 2 || p.stride != 2 {
                            return Err(NetlistError::at(
                                format!("$.arrays[{i}].pool"),
                                "only 2x2 pools with stride 2 are realizable",
                            ));
                        }
                        match p.kind {
                            PoolKind::Max => Pool::Max,
                            PoolKind::Avg => Pool::Avg,
                        }
                    }
                };
                conv.push(ConvLayer {
                    channels: l.weights[i].shape()[0],
                    kernel,
                    stride,
                    padding,
                    pool,
                });
            }
            Geometry::Dense => fc.push(l.weights[i].shape()[0]),
        }
    }
    if fc.is_empty() {
        return Err(NetlistError::at(
            "$.arrays",
            "the last array must be dense (the classifier layer)",
        ));
    }
    let spec = ModelSpec {
        input: nl.input.shape,
        conv,
        fc,
        act,
        softmax,
        loss,
        t1: nl.dynamics.t1,
        t2: nl.dynamics.t2,
        input_norm: nl.input.norm.as_ref().map(|n| InputNorm {
            mean: n.mean.clone(),
            std: n.std.clone(),
        }),
    };
    spec.geometry()
        .map_err(|e| NetlistError::at("$", e.to_string()))?;
    Ok((spec, l.weights.clone(), l.biases.clone()))
}
