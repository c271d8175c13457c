//! Training configs (`epsim train --config run.toml`): one TOML file fixes the data, the model, the
//! learning rule, the optimizer and the loop, so that a run is reproducible from the file and a seed.
//! Unknown keys are errors (a typo must not silently fall back to a default).

use std::path::PathBuf;

use ep::subtrain::Rounding;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use ep::ModelSpec;

use crate::data::DataConfig;
use crate::device::Device;
use ep::optim::{OptimKind, Schedule};
use ep::train::EpConfig;

/// What `epsim train` trains (top-level `kind` of a config; default `"ep"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// An EP network ([`TrainConfig`]).
    #[default]
    Ep,
    /// BP-CNN with batch norm ([`BaselineConfig`] with `[model]`).
    BpCnn,
    /// BP-CNN trained by PGD adversarial training ([`BaselineConfig`] with `[model]` and `[adv]`).
    AdvCnn,
    /// Vision Transformer ([`BaselineConfig`] with `[vit]`).
    Vit,
}

/// A whole training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Always `"ep"` here (the default); other kinds are [`BaselineConfig`]s.
    #[serde(default)]
    pub kind: ModelKind,
    /// Run name: outputs go to `runs/<name>/`.
    pub name: String,
    /// Master seed (overridden by `--seed` when given).
    #[serde(default)]
    pub seed: u64,
    /// Compute device, `"cpu"` (default), `"gpu"` or `"gpu:N"` (overridden by `--device`; not part
    /// of the run's identity: a run may be resumed on another device).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
    /// Data sources and preprocessing.
    pub data: DataConfig,
    /// The model spec (architecture + dynamics).
    pub model: ModelSpec,
    /// Initialization scale (the reference's `--scale`), if any.
    #[serde(default)]
    pub init_scale: Option<f32>,
    /// EP learning rule.
    pub ep: EpConfig,
    /// Optimizer and schedule.
    pub optim: OptimConfig,
    /// Loop settings.
    pub train: LoopConfig,
    /// Train on a simulated substrate with EP's local update rule instead of the digital engine
    /// (see [`super::substrate`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substrate: Option<SubstrateConfig>,
}

/// Optimizer, per-synapse learning rates and weight decays, schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    /// SGD (with momentum) or Adam.
    pub algorithm: OptimKind,
    /// One learning rate per synapse (the reference's `--lrs`).
    pub lrs: Vec<f32>,
    /// One weight decay per synapse (the reference's `--wds`); empty = none.
    #[serde(default)]
    pub wds: Vec<f32>,
    /// Learning-rate schedule, stepped per epoch.
    #[serde(default = "constant")]
    pub schedule: Schedule,
}

fn constant() -> Schedule {
    Schedule::Constant
}

/// Loop settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopConfig {
    /// Epochs.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Batch size for evaluation (default: the training batch size).
    #[serde(default)]
    pub eval_batch_size: Option<usize>,
    /// Stop each epoch after this many batches, and evaluate on this many test batches (smoke runs
    /// of big configs).
    #[serde(default)]
    pub max_batches: Option<usize>,
}

fn stochastic() -> Rounding {
    Rounding::Stochastic
}

fn default_tile() -> String {
    "512x512".into()
}

/// The `[substrate]` section of a training config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubstrateConfig {
    /// Device preset: a built-in name (`ecram`, `pcm`, `rram`, `ideal`), a preset TOML file, or
    /// either prefixed with `netlist:`.
    pub preset: String,
    /// Preset overrides `key=value` (as `epsim eval --set`).
    #[serde(default)]
    pub set: Vec<String>,
    /// Physical array size `RxC`.
    #[serde(default = "default_tile")]
    pub tile: String,
    /// Pulse-count rounding of pulsed devices: "stochastic" (default) or "nearest".
    #[serde(default = "stochastic")]
    pub rounding: Rounding,
    /// Seed of the realization (programming, device variations, read noise); default: the run's.
    #[serde(default)]
    pub seed: Option<u64>,
}

impl SubstrateConfig {
    /// The preset name or file without a `netlist:` prefix.
    pub fn preset_name(&self) -> &str {
        self.preset.strip_prefix("netlist:").unwrap_or(&self.preset)
    }
}

/// Options of `epsim train` beyond the config.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Output directory (default `runs/<name>`).
    pub out_dir: Option<PathBuf>,
    /// Continue from the run's checkpoint.
    pub resume: bool,
    /// Override the config's epoch count.
    pub epochs: Option<usize>,
    /// Override the config's batches-per-epoch cap.
    pub max_batches: Option<usize>,
    /// Override the seed.
    pub seed: Option<u64>,
    /// Stop after this many epochs of this invocation (used by tests to simulate an interruption).
    pub stop_after: Option<usize>,
}

impl TrainOptions {
    /// The run directory: `--out`, else `runs/<name>`.
    pub fn out_dir(&self, name: &str) -> PathBuf {
        self.out_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs").join(name))
    }
}

/// A training config as the loop sees it.
pub trait RunConfig: Clone + PartialEq + Serialize + DeserializeOwned {
    /// The run's name.
    fn name(&self) -> &str;
    /// The optimizer section.
    fn optim(&self) -> &OptimConfig;
    /// The `[train]` loop section.
    fn train_loop(&self) -> &LoopConfig;
    /// The `[train]` loop section, mutable.
    fn train_loop_mut(&mut self) -> &mut LoopConfig;
    /// The seed, mutable.
    fn seed_mut(&mut self) -> &mut u64;
    /// The compute device the file asks for (`device = "gpu"`), if any.
    fn device(&self) -> Option<Device>;
    /// The compute device the file asks for, mutable.
    fn device_mut(&mut self) -> &mut Option<Device>;

    /// The config with the command-line overrides (epochs, batch cap, seed) applied (not checked).
    fn with_overrides(&self, opts: &TrainOptions) -> Self {
        let mut cfg = self.clone();
        if let Some(e) = opts.epochs {
            cfg.train_loop_mut().epochs = e;
        }
        if let Some(m) = opts.max_batches {
            cfg.train_loop_mut().max_batches = Some(m);
        }
        if let Some(s) = opts.seed {
            *cfg.seed_mut() = s;
        }
        cfg
    }
}

/// Both config types keep the run's fields under the same names.
macro_rules! run_config {
    ($($t:ty),*) => {$(
        impl RunConfig for $t {
            fn name(&self) -> &str {
                &self.name
            }
            fn optim(&self) -> &OptimConfig {
                &self.optim
            }
            fn train_loop(&self) -> &LoopConfig {
                &self.train
            }
            fn train_loop_mut(&mut self) -> &mut LoopConfig {
                &mut self.train
            }
            fn seed_mut(&mut self) -> &mut u64 {
                &mut self.seed
            }
            fn device(&self) -> Option<$crate::device::Device> {
                self.device
            }
            fn device_mut(&mut self) -> &mut Option<$crate::device::Device> {
                &mut self.device
            }
        }
    )*};
}
#[cfg(test)]
pub(crate) use run_config;
run_config!(TrainConfig, BaselineConfig);

impl TrainConfig {
    /// Parse and check a config; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> anyhow::Result<Self> {
        let cfg: TrainConfig = toml::from_str(text).map_err(|e| invalid(origin, &e))?;
        cfg.validate()
            .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        Ok(cfg)
    }

    /// Cross-field checks.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.kind == ModelKind::Ep,
            "kind = {:?} is a baseline config, not an EP config",
            self.kind
        );
        self.model
            .geometry()
            .map_err(|e| anyhow::anyhow!("[model] {e}"))?;
        self.ep
            .settle
            .check()
            .map_err(|e| anyhow::anyhow!("[ep] {e}"))?;
        if let Some(n) = &self.model.input_norm {
            anyhow::ensure!(
                n.mean == self.data.mean && n.std == self.data.std,
                "[model] input_norm differs from [data] mean/std (it is filled from [data]; leave it out)"
            );
        }
        let ns = self.model.n_synapses();
        anyhow::ensure!(
            self.optim.lrs.len() == ns,
            "[optim] lrs has {} entries but the model has {ns} synapses",
            self.optim.lrs.len()
        );
        anyhow::ensure!(
            self.optim.wds.is_empty() || self.optim.wds.len() == ns,
            "[optim] wds has {} entries but the model has {ns} synapses",
            self.optim.wds.len()
        );
        let c = self.model.input[0];
        anyhow::ensure!(
            self.data.mean.len() == c && self.data.std.len() == c,
            "[data] mean and std need {c} entries (input channels)"
        );
        anyhow::ensure!(
            self.data.std.iter().all(|&s| s > 0.0),
            "[data] std entries must be > 0"
        );
        if let Some(r) = &self.data.randaugment {
            r.check().map_err(|e| anyhow::anyhow!("[data] {e}"))?;
        }
        anyhow::ensure!(
            matches!(self.data.padding_mode.as_str(), "edge" | "zero"),
            "[data] padding_mode must be \"edge\" or \"zero\""
        );
        anyhow::ensure!(
            self.train.batch_size > 0 && self.train.epochs > 0,
            "[train] epochs and batch_size must be ≥ 1"
        );
        anyhow::ensure!(self.ep.beta != 0.0, "[ep] beta must be non-zero");
        Ok(())
    }

    /// Weight decays, one per synapse (zeros when not given).
    pub fn wds(&self) -> Vec<f32> {
        if self.optim.wds.is_empty() {
            vec![0.0; self.optim.lrs.len()]
        } else {
            self.optim.wds.clone()
        }
    }
}

/// Any training config, by its top-level `kind`.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyConfig {
    /// `kind = "ep"` (or no kind).
    Ep(TrainConfig),
    /// `kind = "bp_cnn" | "adv_cnn" | "vit"`.
    Baseline(BaselineConfig),
}

impl AnyConfig {
    /// The compute device the file asks for (`device = "gpu"`), if any.
    pub fn device(&self) -> Option<Device> {
        match self {
            AnyConfig::Ep(c) => c.device,
            AnyConfig::Baseline(c) => c.device,
        }
    }

    /// Parse a config of any kind; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> anyhow::Result<Self> {
        let v: toml::Table = toml::from_str(text).map_err(|e| invalid(origin, &e))?;
        let kind = match v.get("kind") {
            None => ModelKind::Ep,
            Some(k) => k.clone().try_into().map_err(|e| {
                anyhow::anyhow!(
                    "{origin}: kind must be \"ep\", \"bp_cnn\", \"adv_cnn\" or \"vit\": {e}"
                )
            })?,
        };
        Ok(match kind {
            ModelKind::Ep => AnyConfig::Ep(TrainConfig::from_toml(text, origin)?),
            _ => AnyConfig::Baseline(BaselineConfig::from_toml(text, origin)?),
        })
    }
}

/// PGD adversarial training (Madry et al.) with the attacks' [`Pgd`](crate::attacks::Pgd): every
/// training batch is replaced by its PGD adversarial examples against the current model (in
/// evaluation mode). `eps` is a list: one model is trained per ε, each in `<out>/eps-<ε>/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvConfig {
    /// Threat model: "Linf" or "L2".
    pub norm: crate::attacks::Norm,
    /// Radii ε (pixel units, images in [0, 1]); one run per entry.
    pub eps: Vec<f32>,
    /// PGD iterations.
    pub steps: usize,
    /// Step size α as a multiple of ε (default 2.5 / steps, Madry's choice).
    #[serde(default)]
    pub step_ratio: Option<f32>,
    /// Random start in the ε-ball.
    #[serde(default = "yes")]
    pub random_start: bool,
}

fn yes() -> bool {
    true
}

/// A baseline training run (`kind = "bp_cnn" | "adv_cnn" | "vit"`): the same `[data]`, `[optim]`
/// and `[train]` sections as EP; the architecture in `[model]` (BP-CNN / AdvCNN: the EP-CNN's
/// `input`, `conv`, `fc` keys plus `act`, `bn_eps`, `bn_momentum`) or `[vit]`; `[adv]` for AdvCNN.
/// `[optim] lrs` and `wds` hold one entry each (applied to every parameter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineConfig {
    /// Which baseline.
    pub kind: ModelKind,
    /// Run name: outputs go to `runs/<name>/`.
    pub name: String,
    /// Master seed.
    #[serde(default)]
    pub seed: u64,
    /// Compute device (as in an EP config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
    /// Data sources and preprocessing.
    pub data: DataConfig,
    /// BP-CNN / AdvCNN architecture.
    #[serde(default)]
    pub model: Option<ep::baselines::BpCnnSpec>,
    /// ViT architecture.
    #[serde(default)]
    pub vit: Option<ep::baselines::VitSpec>,
    /// Adversarial training (AdvCNN).
    #[serde(default)]
    pub adv: Option<AdvConfig>,
    /// Optimizer and schedule.
    pub optim: OptimConfig,
    /// Loop settings.
    pub train: LoopConfig,
}

impl BaselineConfig {
    /// Parse and check a config; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> anyhow::Result<Self> {
        let cfg: BaselineConfig = toml::from_str(text).map_err(|e| invalid(origin, &e))?;
        cfg.validate()
            .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        Ok(cfg)
    }

    /// The architecture spec (without input normalization).
    pub fn arch(&self) -> anyhow::Result<ep::baselines::Arch> {
        use ep::baselines::Arch;
        Ok(match self.kind {
            ModelKind::BpCnn | ModelKind::AdvCnn => {
                let m = self.model.clone().ok_or_else(|| {
                    anyhow::anyhow!("[model] is required for kind {:?}", self.kind)
                })?;
                if self.kind == ModelKind::BpCnn {
                    Arch::BpCnn(m)
                } else {
                    Arch::AdvCnn(m)
                }
            }
            ModelKind::Vit => Arch::Vit(
                self.vit
                    .clone()
                    .ok_or_else(|| anyhow::anyhow!("[vit] is required for kind \"vit\""))?,
            ),
            ModelKind::Ep => anyhow::bail!("kind \"ep\" is not a baseline"),
        })
    }

    /// Cross-field checks.
    pub fn validate(&self) -> anyhow::Result<()> {
        let arch = self.arch()?;
        match self.kind {
            ModelKind::Vit => anyhow::ensure!(
                self.model.is_none() && self.adv.is_none(),
                "kind \"vit\" takes [vit], not [model] or [adv]"
            ),
            ModelKind::BpCnn => anyhow::ensure!(
                self.vit.is_none() && self.adv.is_none(),
                "kind \"bp_cnn\" takes [model], not [vit] or [adv] (use kind = \"adv_cnn\")"
            ),
            ModelKind::AdvCnn => {
                anyhow::ensure!(
                    self.vit.is_none(),
                    "kind \"adv_cnn\" takes [model], not [vit]"
                );
                let a = self
                    .adv
                    .as_ref()
                    .ok_or_else(|| anyhow::anyhow!("[adv] is required for kind \"adv_cnn\""))?;
                anyhow::ensure!(!a.eps.is_empty(), "[adv] eps must list at least one radius");
                anyhow::ensure!(
                    a.eps.iter().all(|e| e.is_finite() && *e >= 0.0),
                    "[adv] eps entries must be finite and ≥ 0"
                );
                anyhow::ensure!(a.steps >= 1, "[adv] steps must be ≥ 1");
                anyhow::ensure!(
                    a.step_ratio.is_none_or(|r| r.is_finite() && r >= 0.0),
                    "[adv] step_ratio must be finite and ≥ 0"
                );
            }
            ModelKind::Ep => {}
        }
        let spec = ep::baselines::BaselineSpec {
            arch,
            input_norm: None,
            adv: None,
        };
        ep::baselines::Baseline::init(spec.clone(), &sim::Stream::new(0, "validate")).map_err(
            |e| {
                anyhow::anyhow!(
                    "[{}] {e}",
                    if self.kind == ModelKind::Vit {
                        "vit"
                    } else {
                        "model"
                    }
                )
            },
        )?;
        anyhow::ensure!(
            self.optim.lrs.len() == 1,
            "[optim] lrs must hold exactly one learning rate for a baseline (got {})",
            self.optim.lrs.len()
        );
        anyhow::ensure!(
            self.optim.wds.len() <= 1,
            "[optim] wds must hold at most one weight decay for a baseline (got {})",
            self.optim.wds.len()
        );
        let c = spec.input()[0];
        anyhow::ensure!(
            self.data.mean.len() == c && self.data.std.len() == c,
            "[data] mean and std need {c} entries (input channels)"
        );
        anyhow::ensure!(
            self.data.std.iter().all(|&s| s > 0.0),
            "[data] std entries must be > 0"
        );
        if let Some(r) = &self.data.randaugment {
            r.check().map_err(|e| anyhow::anyhow!("[data] {e}"))?;
        }
        anyhow::ensure!(
            matches!(self.data.padding_mode.as_str(), "edge" | "zero"),
            "[data] padding_mode must be \"edge\" or \"zero\""
        );
        anyhow::ensure!(
            self.train.batch_size > 0 && self.train.epochs > 0,
            "[train] epochs and batch_size must be ≥ 1"
        );
        Ok(())
    }

    /// The weight decay (0 when not given).
    pub fn wd(&self) -> f32 {
        self.optim.wds.first().copied().unwrap_or(0.0)
    }
}

/// A config that does not parse, as an error naming the file, with a "did you mean" for a
/// misspelt key.
fn invalid(origin: &str, e: &toml::de::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "{origin}: invalid config: {}",
        sim::suggest::did_you_mean(&e.to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every training config shipped in `configs/` parses (so an edit of a config's comments or keys
    /// cannot break `epsim train --config` unnoticed), and a broken one is reported with its file.
    #[test]
    fn every_shipped_config_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                let text = std::fs::read_to_string(&p).unwrap();
                let origin = p.display().to_string();
                if let Err(err) = AnyConfig::from_toml(&text, &origin) {
                    panic!("{origin}: {err:#}");
                }
                n += 1;
            }
        }
        assert!(n >= 10, "found only {n} configs in {}", dir.display());
        let err = AnyConfig::from_toml("kind = \"vit\"\n[vit\n", "broken.toml").unwrap_err();
        assert!(format!("{err:#}").contains("broken.toml"), "{err:#}");
    }
}
