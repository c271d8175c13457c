//! The study file (`epsim study STUDY.toml`): models (checkpoints, or training configs trained
//! first when the checkpoint is absent), the substrates each is realized on, the robustness suite
//! (protocols, attacks with their strengths, corruptions), the images and the seeds. Unknown keys
//! are errors; everything is checked before any work.
//!
//! ```toml
//! name = "quickstart"            # results go to runs/<name>/ unless out_dir is given
//! data = "fashion-mnist:test"
//! subset = 500                   # first N images, class-balanced
//! seeds = [0]                    # master seeds: attacks, corruptions, substrate realizations
//! device = "cpu"                 # or "gpu", "gpu:N" (--device overrides)
//! t_attack_images = 50           # images of the report's Fig. 3b (0: none); example_images = 6
//!
//! [[model]]
//! name = "EP-CNN"
//! checkpoint = "models/quickstart-epcnn.safetensors"
//! train = "configs/quickstart-epcnn.toml"   # optional: trained first when the checkpoint is absent
//! substrates = ["digital", "netlist:pcm", "netlist:rram"]
//!
//! [suite]                        # the `epsim robustness --suite` format
//! protocols = ["standard", "advep"]
//! [[suite.attack]]
//! name = "pgd-linf"
//! eps = ["0.01", "0.03"]
//!
//! [[sweep]]                      # optional: a device parameter swept inside the study
//! model = "EP-CNN"
//! substrate = "netlist:pcm"
//! param = "prog_noise_scale=0,1,2,4"
//! items = ["clean"]              # suite items run at every level (default: the clean accuracy)
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;

use super::suite::Suite;
use crate::classifier::substrate::SubstrateSpec;
use crate::device::Device;

fn default_batch() -> usize {
    100
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

fn default_tile() -> String {
    "512x512".into()
}

fn digital_only() -> Vec<String> {
    vec!["digital".into()]
}

fn clean_only() -> Vec<String> {
    vec!["clean".into()]
}

/// A study file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudySpec {
    /// Study name; the default output directory is `runs/<name>`.
    pub name: String,
    /// Output directory (default `runs/<name>`), relative to the current directory.
    #[serde(default)]
    pub out_dir: Option<PathBuf>,
    /// Dataset spec of the evaluation images (the test split when it names none).
    pub data: String,
    /// Use only the first N images (class-balanced).
    #[serde(default)]
    pub subset: Option<usize>,
    /// Batch size of evaluations and attacks.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Master seeds; every cell runs once per seed.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// Gradients averaged per attack step on stochastic substrates (default 10 there, 1 else).
    #[serde(default)]
    pub eot: Option<usize>,
    /// Compute device of every cell and of the models trained first: `"cpu"` (default), `"gpu"`
    /// or `"gpu:N"`; `--device` overrides it. Not part of the plan: a study may be resumed on
    /// another device.
    #[serde(default)]
    pub device: Option<Device>,
    /// The models.
    #[serde(rename = "model")]
    pub models: Vec<ModelEntry>,
    /// The robustness suite every model × substrate × seed runs.
    pub suite: Suite,
    /// Device-parameter sweeps: cells after the suite's (see [`SweepEntry`]).
    #[serde(default, rename = "sweep")]
    pub sweeps: Vec<SweepEntry>,
    /// Images of the report's robust-accuracy-vs-T_attack figure (Fig. 3b: five PGD runs per EP
    /// model when the report is collected); 0 leaves the figure out (long free phases on a CPU).
    #[serde(default = "default_t_attack_images")]
    pub t_attack_images: usize,
    /// Images of the report's adversarial-examples figure (Fig. 5); 0 leaves it out.
    #[serde(default = "default_example_images")]
    pub example_images: usize,
}

fn default_t_attack_images() -> usize {
    50
}

fn default_example_images() -> usize {
    6
}

/// A device-parameter sweep inside a study: one model on one netlist substrate at every level of
/// one preset parameter (the model's `set` first, then `KEY=level`), running some of the suite's
/// items at each level and seed (attacks under the standard protocol). Its cells follow the
/// suite's; their records go to `sweeps.jsonl` and the report's sweep section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepEntry {
    /// A `[[model]]` name.
    pub model: String,
    /// The netlist substrate swept (`netlist:pcm`, a preset TOML).
    pub substrate: String,
    /// The parameter and its levels, `KEY=V1,V2,...`, with any key `--set` accepts.
    pub param: String,
    /// Suite item ids run at every level: `clean` (the default), `pgd-linf@0.05`, `contrast@s3`.
    #[serde(default = "clean_only")]
    pub items: Vec<String>,
}

/// A model of a study.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// Row label in the report (unique within the study).
    pub name: String,
    /// Model file (EP checkpoint or baseline), relative to the study file.
    pub checkpoint: PathBuf,
    /// Training config (relative to the study file) run first, into `<out>/models/<name>/`, when
    /// `checkpoint` does not exist.
    #[serde(default)]
    pub train: Option<PathBuf>,
    /// Train only this many epochs of the `train` config (its schedule unchanged: the model after
    /// that many epochs of the full run, as `epsim train --epochs N`).
    #[serde(default)]
    pub train_epochs: Option<usize>,
    /// For a `train` config of kind `adv_cnn` that lists several ε: the one this model is (only
    /// that one is trained, into `<out>/models/<name>/eps-<ε>/`).
    #[serde(default)]
    pub adv_eps: Option<f32>,
    /// Substrates: `digital`, `netlist:<preset|preset.toml|netlist.json>`.
    #[serde(default = "digital_only")]
    pub substrates: Vec<String>,
    /// Preset overrides for the netlist substrates (`key=value`).
    #[serde(default)]
    pub set: Vec<String>,
    /// Physical array size of the netlist substrates.
    #[serde(default = "default_tile")]
    pub tile: String,
    /// Free-phase steps of predictions (EP; default the model's T1).
    #[serde(default)]
    pub t_predict: Option<usize>,
    /// Free-phase steps of gradients under the advep protocol (EP, digital; default T_predict).
    #[serde(default)]
    pub t_attack: Option<usize>,
    /// How an EP model's predictions settle (`ep::Settle`; default plain iteration of
    /// T_predict steps), e.g. `settle = { method = "plain", tol = 1e-3 }`: T_predict is then the
    /// cap. Gradients go through each image's own steps (T_attack, when given: plain steps).
    #[serde(default, skip_serializing_if = "ep::Settle::is_default")]
    pub settle: ep::Settle,
}

impl StudySpec {
    /// Read and check a study file; relative paths in it are made relative to its folder.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading study {}", path.display()))?;
        let mut s: StudySpec = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: invalid study: {}",
                path.display(),
                sim::suggest::did_you_mean(&e.to_string())
            )
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        for m in &mut s.models {
            m.checkpoint = beside(base, &m.checkpoint);
            m.train = m.train.as_ref().map(|t| beside(base, t));
        }
        s.check(path)?;
        Ok(s)
    }

    fn check(&self, path: &Path) -> Result<()> {
        let at = || path.display().to_string();
        ensure!(!self.models.is_empty(), "{}: no [[model]]", at());
        ensure!(!self.seeds.is_empty(), "{}: `seeds` is empty", at());
        ensure!(self.batch_size >= 1, "{}: batch_size must be ≥ 1", at());
        ensure!(self.subset != Some(0), "{}: subset must be ≥ 1", at());
        ensure!(
            !self.suite.attack.is_empty() || self.suite.corruptions.is_some(),
            "{}: the suite has no [[suite.attack]] and no [suite.corruptions]",
            at()
        );
        self.suite.check(path)?;
        self.suite.items(path)?;
        for (i, m) in self.models.iter().enumerate() {
            ensure!(
                !self.models[..i].iter().any(|o| o.name == m.name),
                "{}: model name {:?} is used twice",
                at(),
                m.name
            );
            ensure!(
                m.train_epochs != Some(0),
                "{}: model {}: train_epochs must be ≥ 1",
                at(),
                m.name
            );
            m.settle
                .check()
                .map_err(|e| anyhow::anyhow!("{}: model {}: {e}", at(), m.name))?;
            ensure!(
                !m.substrates.is_empty(),
                "{}: model {}: no substrates",
                at(),
                m.name
            );
            if !m.checkpoint.exists() && m.train.as_ref().is_none_or(|t| !t.exists()) {
                bail!(
                    "{}: model {}: {} does not exist{}",
                    at(),
                    m.name,
                    m.checkpoint.display(),
                    match &m.train {
                        Some(t) => format!(" and neither does its training config {}", t.display()),
                        None => " (give `train = \"config.toml\"` to train it first)".into(),
                    }
                );
            }
            for s in &m.substrates {
                m.substrate(s)
                    .with_context(|| format!("{}: model {}", at(), m.name))?;
            }
        }
        let ids: Vec<String> = self.suite.items(path)?.iter().map(|i| i.id()).collect();
        for (k, sw) in self.sweeps.iter().enumerate() {
            let at = || format!("{}: [[sweep]] {}", path.display(), k + 1);
            let m = self
                .models
                .iter()
                .find(|m| m.name == sw.model)
                .with_context(|| format!("{}: no [[model]] named {:?}", at(), sw.model))?;
            ensure!(
                sw.substrate != "digital",
                "{}: a sweep changes a device preset's parameter: give a netlist substrate",
                at()
            );
            let param = super::levels::SweepParam::parse(&sw.param).with_context(at)?;
            for i in 0..param.levels.len() {
                let spec = m
                    .substrate_with(&sw.substrate, &param.sets(&[], i))
                    .with_context(at)?;
                if let SubstrateSpec::Netlist {
                    preset, overrides, ..
                } = &spec
                {
                    crate::classifier::substrate::load_preset(preset, overrides)
                        .with_context(|| format!("{}: {}={}", at(), param.key, param.levels[i]))?;
                }
            }
            ensure!(!sw.items.is_empty(), "{}: `items` is empty", at());
            for it in &sw.items {
                ensure!(
                    ids.contains(it),
                    "{}: item {it:?} is not one of the suite's: {}",
                    at(),
                    ids.join(", ")
                );
            }
        }
        Ok(())
    }
}

/// `rel` taken relative to the folder `base`, with `a/../` folded away (so records and reports show
/// `models/m.safetensors`, not `configs/studies/../../models/m.safetensors`).
fn beside(base: &Path, rel: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in base.join(rel).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

impl ModelEntry {
    /// Substrate `name` of this model with its overrides and tiles.
    pub fn substrate(&self, name: &str) -> Result<SubstrateSpec> {
        self.substrate_with(name, &[])
    }

    /// Substrate `name` with the model's overrides, then `extra` (a sweep's `KEY=level`).
    pub fn substrate_with(&self, name: &str, extra: &[String]) -> Result<SubstrateSpec> {
        if name == "digital" {
            return SubstrateSpec::parse(name, &[], &self.tile);
        }
        let sets: Vec<String> = self.set.iter().chain(extra).cloned().collect();
        SubstrateSpec::parse(name, &sets, &self.tile)
    }
}
