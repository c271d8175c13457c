//! Named device presets in TOML.
//!
//! A [`Preset`] bundles everything the netlist compiler needs to realize a model on hardware: the
//! inference cell, the weight mapping, the inference time and drift compensation, DAC and ADC, the
//! neurons and pooling parts, the interconnect, and optionally the update-capable device for
//! on-substrate training. Every table rejects unknown keys; every value is range-checked by
//! [`Preset::validate`], whose errors name the field.
//!
//! Built-in presets live in `devices/presets/*.toml` (each with a comment block citing its sources)
//! and are compiled in: [`Preset::builtin`]. Command-line overrides (`--set key=value`) go through
//! [`Preset::set`] / [`Preset::set_str`]; a key is a dotted path (`adc.bits`, `cell.read_noise_scale`)
//! or any unambiguous suffix of one (`read_noise_scale`).

use serde::{Deserialize, Serialize};
use sim::{Error, Result};

use crate::cells::{CellModel, DriftCompensation};
use crate::check;
use crate::converters::{Adc, Dac};
use crate::cost::CostParams;
use crate::irdrop::IrDrop;
use crate::mapping::ScaleMode;
use crate::neurons::{HardSigmoid, NeuronKind, WinnerTakeAll};
use crate::pulsed::PulsedCell;

/// Weight-mapping options.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingParams {
    /// Scale per layer or per output (see [`crate::mapping`]).
    #[serde(default)]
    pub scale: ScaleMode,
}

/// When the network is read after programming, and how drift is compensated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceParams {
    /// Time since programming, in seconds (aihwkit `t_inference`).
    #[serde(default)]
    pub t_inference_s: f64,
    /// Drift compensation at read-out.
    #[serde(default)]
    pub drift_compensation: DriftCompensation,
}

/// A named set of part models. See the module doc.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    /// Preset name.
    pub name: String,
    /// One-line description.
    #[serde(default)]
    pub description: String,
    /// Where the numbers come from (papers, source files).
    #[serde(default)]
    pub sources: Vec<String>,
    /// Inference crossbar cell.
    pub cell: CellModel,
    /// Weight → conductance mapping.
    #[serde(default)]
    pub mapping: MappingParams,
    /// Inference time and drift compensation.
    #[serde(default)]
    pub inference: InferenceParams,
    /// Input DAC (default: aihwkit forward IO, 7 bits over ±1).
    #[serde(default)]
    pub dac: Dac,
    /// Output ADC (default: aihwkit forward IO, 9 bits over ±12, σ = 0.06).
    #[serde(default)]
    pub adc: Adc,
    /// Neurons: analog hard-sigmoid, or rate-coded integrate-and-fire with `kind = "spiking"`
    /// (keys `window`, `threshold`, `leak`, `phase`; see [`crate::neurons`]).
    #[serde(default)]
    pub neuron: HardSigmoid,
    /// Winner-take-all max pooling.
    #[serde(default)]
    pub wta: WinnerTakeAll,
    /// Interconnect (IR drop); default none.
    #[serde(default)]
    pub ir_drop: IrDrop,
    /// Update-capable device for on-substrate training, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<PulsedCell>,
    /// Energy, latency and area laws (see [`crate::cost`]); default: the cited defaults.
    #[serde(default)]
    pub cost: CostParams,
}

const BUILTIN: &[(&str, &str)] = &[
    ("ideal", include_str!("../presets/ideal.toml")),
    ("pcm", include_str!("../presets/pcm.toml")),
    ("rram", include_str!("../presets/rram.toml")),
    ("ecram", include_str!("../presets/ecram.toml")),
];

impl Preset {
    /// Names of the built-in presets.
    pub fn builtin_names() -> Vec<&'static str> {
        BUILTIN.iter().map(|(n, _)| *n).collect()
    }

    /// A built-in preset by name; an unknown name is an error listing the valid ones.
    pub fn builtin(name: &str) -> Result<Preset> {
        match BUILTIN.iter().find(|(n, _)| *n == name) {
            Some((n, text)) => Preset::from_toml(text, &format!("builtin preset `{n}`")),
            None => Err(Error::param(
                "preset",
                format!(
                    "unknown preset `{name}`; built-in presets: {}",
                    Preset::builtin_names().join(", ")
                ),
            )),
        }
    }

    /// Parse and validate a preset; `origin` (a file name) prefixes every error.
    pub fn from_toml(text: &str, origin: &str) -> Result<Preset> {
        let p: Preset = toml::from_str(text).map_err(|e| {
            Error::param(
                "preset",
                format!(
                    "{origin}: {}",
                    sim::suggest::did_you_mean(e.to_string().trim_end())
                ),
            )
        })?;
        p.validate()
            .map_err(|e| Error::param("preset", format!("{origin}: {}", detail(e))))?;
        Ok(p)
    }

    /// The preset as TOML text (round-trips through [`Preset::from_toml`]).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| Error::Other(format!("preset `{}`: {e}", self.name)))
    }

    /// Check every parameter; errors name the table and field.
    pub fn validate(&self) -> Result<()> {
        if self.name.trim().is_empty() {
            return Err(Error::param("preset", "`name` must not be empty"));
        }
        let ctx = |table: &str, r: Result<()>| {
            r.map_err(|e| Error::param("preset", format!("[{table}] {}", detail(e))))
        };
        ctx("cell", self.cell.validate())?;
        ctx(
            "inference",
            check::non_negative("inference", "t_inference_s", self.inference.t_inference_s),
        )?;
        ctx("dac", self.dac.validate())?;
        ctx("adc", self.adc.validate())?;
        ctx("neuron", self.neuron.validate())?;
        ctx("wta", self.wta.validate())?;
        ctx("ir_drop", self.ir_drop.validate())?;
        if let Some(u) = &self.update {
            ctx("update", u.validate())?;
        }
        ctx("cost", self.cost.validate())?;
        Ok(())
    }

    /// Multiply every non-ideality by `s ≥ 0`: noise scales and spreads, fault probabilities, drift,
    /// the PCM accumulated read noise, DAC/ADC noise, neuron and comparator spreads, wire
    /// resistances, the spiking neurons' leak, the update device's variations, asymmetry and step
    /// nonlinearity (γ). At `s = 0` the discrete non-idealities are switched off too (DAC/ADC
    /// quantization and clipping, RRAM levels, spiking neurons become analog), so the preset then behaves exactly like the ideal device with the same conductance
    /// range. (The on/off ratio is kept: it cancels in the differential pair.)
    pub fn scale_nonidealities(&mut self, s: f64) -> Result<()> {
        check::non_negative("preset", "nonideality scale", s)?;
        match &mut self.cell {
            CellModel::Ideal(_) => {}
            CellModel::Pcm(c) => {
                c.prog_noise_scale *= s;
                c.drift_scale *= s;
                c.read_noise_scale *= s;
                c.per_read_noise_gmax_frac *= s;
            }
            CellModel::Rram(c) => {
                c.prog_noise_scale *= s;
                c.read_noise_scale *= s;
                c.stuck_off_prob *= s;
                c.stuck_on_prob *= s;
                if s == 0.0 {
                    c.levels = 0;
                }
            }
        }
        self.dac.noise_std *= s;
        self.adc.noise_std *= s;
        if s == 0.0 {
            self.dac = Dac::ideal();
            self.adc = Adc::ideal();
        }
        self.neuron.gain_dtod *= s;
        self.neuron.offset_dtod *= s;
        self.neuron.noise_std *= s;
        self.neuron.leak *= s;
        if s == 0.0 {
            // Spike-count quantization is a discrete non-ideality too.
            self.neuron.kind = NeuronKind::Analog;
        }
        self.wta.comparator_offset_std *= s;
        self.ir_drop.r_wire_ohm *= s;
        self.ir_drop.r_driver_ohm *= s;
        self.ir_drop.r_sense_ohm *= s;
        if let Some(u) = &mut self.update {
            for v in [
                &mut u.dw_min_dtod,
                &mut u.dw_min_std,
                &mut u.up_down,
                &mut u.up_down_dtod,
                &mut u.w_max_dtod,
                &mut u.w_min_dtod,
                &mut u.gamma_up,
                &mut u.gamma_down,
                &mut u.gamma_up_dtod,
                &mut u.gamma_down_dtod,
            ] {
                *v *= s;
            }
        }
        self.validate()
    }

    /// All settable keys (dotted paths of the leaves of this preset).
    pub fn keys(&self) -> Result<Vec<String>> {
        let v = self.to_value()?;
        let mut out = Vec::new();
        leaves(&v, "", &mut out);
        Ok(out)
    }

    /// Override one numeric value, e.g. `set("read_noise_scale", 0.5)` or `set("adc.bits", 6.0)`.
    /// See [`Preset::set_str`].
    pub fn set(&mut self, key: &str, value: f64) -> Result<()> {
        self.set_value(key, toml::Value::Float(value))
    }

    /// Override one value given as TOML text (`0.5`, `6`, `true`, `"output"`; a bare word is taken
    /// as a string), as from `--set key=value`. The key is a dotted path or an unambiguous suffix of
    /// one; an unknown or ambiguous key is an error listing the valid keys. The result is validated
    /// and the preset is left unchanged on error.
    pub fn set_str(&mut self, key: &str, text: &str) -> Result<()> {
        let text = text.trim();
        let value = match toml::from_str::<toml::Table>(&format!("x = {text}")) {
            Ok(mut t) => t.remove("x").expect("key x present"),
            Err(_) => toml::Value::String(text.to_string()),
        };
        self.set_value(key, value)
    }

    fn to_value(&self) -> Result<toml::Value> {
        toml::Value::try_from(self)
            .map_err(|e| Error::Other(format!("preset `{}`: {e}", self.name)))
    }

    fn set_value(&mut self, key: &str, value: toml::Value) -> Result<()> {
        let mut root = self.to_value()?;
        let keys = {
            let mut k = Vec::new();
            leaves(&root, "", &mut k);
            k
        };
        let matches: Vec<&String> = if keys.iter().any(|k| k == key) {
            keys.iter().filter(|k| *k == key).collect()
        } else {
            keys.iter()
                .filter(|k| k.ends_with(&format!(".{key}")))
                .collect()
        };
        let path = match matches.as_slice() {
            [one] => (*one).clone(),
            [] => {
                return Err(Error::param(
                    "preset",
                    format!("unknown key `{key}`; valid keys: {}", keys.join(", ")),
                ));
            }
            many => {
                return Err(Error::param(
                    "preset",
                    format!(
                        "ambiguous key `{key}`: matches {}",
                        many.iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        };
        let mut slot = &mut root;
        for part in path.split('.') {
            slot = slot
                .get_mut(part)
                .ok_or_else(|| Error::Other(format!("preset: key path `{path}` vanished")))?;
        }
        let value = match (&*slot, value) {
            (toml::Value::Integer(_), toml::Value::Float(f)) => {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    toml::Value::Integer(f as i64)
                } else {
                    return Err(Error::param(
                        "preset",
                        format!("`{path}` takes an integer, got {f}"),
                    ));
                }
            }
            (toml::Value::Float(_), toml::Value::Integer(i)) => toml::Value::Float(i as f64),
            (_, v) => v,
        };
        *slot = value;
        let p: Preset = root.try_into().map_err(|e: toml::de::Error| {
            Error::param("preset", format!("`{path}`: {}", e.to_string().trim_end()))
        })?;
        p.validate()
            .map_err(|e| Error::param("preset", format!("--set {path}: {}", detail(e))))?;
        *self = p;
        Ok(())
    }
}

/// The message of an error without its `op: kind:` prefix (for nesting into a preset error).
fn detail(e: Error) -> String {
    match e {
        Error::Param { detail, .. } | Error::Shape { detail, .. } => detail,
        other => other.to_string(),
    }
}

fn leaves(v: &toml::Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(v, &p, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}
