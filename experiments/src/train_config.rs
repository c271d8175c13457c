//! Training configs (`epsim train --config run.toml`): one TOML file fixes the data, the model, the
//! learning rule, the optimizer and the loop, so that a run is reproducible from the file and a seed.
//! Unknown keys are errors (a typo must not silently fall back to a default).

use serde::{Deserialize, Serialize};

use ep::ModelSpec;
use ep::optim::{OptimKind, Schedule};
use ep::train::EpConfig;

/// A whole training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Run name: outputs go to `runs/<name>/`.
    pub name: String,
    /// Master seed (overridden by `--seed` when given).
    #[serde(default)]
    pub seed: u64,
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
}

/// Where the data comes from and how it is preprocessed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Training set spec (see `epsim data info --help`), e.g. `cifar10:../shared/datasets/cifar10/cifar10-jpeg.zip:train`.
    pub train: String,
    /// Test set spec.
    pub test: String,
    /// Per-channel mean (pixels in [0, 1]).
    pub mean: Vec<f32>,
    /// Per-channel std.
    pub std: Vec<f32>,
    /// Random-crop padding (0 = no crop).
    #[serde(default)]
    pub crop_padding: usize,
    /// Padding mode of the crop: "edge" or "zero".
    #[serde(default = "edge")]
    pub padding_mode: String,
    /// Random horizontal flip with p = 0.5.
    #[serde(default)]
    pub hflip: bool,
    /// Use only the first N training images (class-balanced), for quick runs.
    #[serde(default)]
    pub train_subset: Option<usize>,
    /// Use only the first N test images.
    #[serde(default)]
    pub test_subset: Option<usize>,
}

fn edge() -> String {
    "edge".into()
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

impl TrainConfig {
    /// Parse and check a config; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> anyhow::Result<Self> {
        let cfg: TrainConfig =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{origin}: invalid config: {e}"))?;
        cfg.validate()
            .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        Ok(cfg)
    }

    /// Cross-field checks.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.model
            .geometry()
            .map_err(|e| anyhow::anyhow!("[model] {e}"))?;
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
