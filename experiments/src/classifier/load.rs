//! Model files: an EP network (epsim checkpoint, or a PyTorch-style state dict plus a spec file)
//! or a backprop baseline, read from safetensors, with errors naming the file.

use std::path::Path;

use anyhow::{Context, Result};
use ep::EpNet;
use ep::baselines::Baseline;
use ep::checkpoint::{TensorFile, model_from_file};
use sim::Cpu;

/// Read a model file (safetensors; spec from metadata or from `spec_file`, TOML or JSON).
pub fn load_model(path: &Path, spec_file: Option<&Path>) -> Result<EpNet<Cpu>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading model {}", path.display()))?;
    let f = TensorFile::from_bytes(&bytes).with_context(|| format!("{}", path.display()))?;
    let spec = match spec_file {
        None => None,
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading spec {}", p.display()))?;
            let s: ep::ModelSpec = if p.extension().is_some_and(|e| e == "json") {
                serde_json::from_str(&text)
                    .with_context(|| format!("{}: invalid model spec", p.display()))?
            } else {
                toml::from_str(&text)
                    .with_context(|| format!("{}: invalid model spec", p.display()))?
            };
            Some(s)
        }
    };
    let (spec, ws, bs) =
        model_from_file(&f, spec).with_context(|| format!("{}", path.display()))?;
    EpNet::from_host(&Cpu, spec, &ws, &bs).with_context(|| format!("{}", path.display()))
}

/// Read a baseline model file (safetensors with the spec in metadata).
pub fn load_baseline(path: &Path) -> Result<Baseline> {
    let bytes = std::fs::read(path).with_context(|| format!("reading model {}", path.display()))?;
    let f = TensorFile::from_bytes(&bytes).with_context(|| format!("{}", path.display()))?;
    Baseline::from_file(&f, None).with_context(|| format!("{}", path.display()))
}

/// Whether a model file holds a backprop baseline (its spec has `kind` bp_cnn, adv_cnn or vit),
/// not an EP network.
pub fn is_baseline_file(path: &Path) -> Result<bool> {
    let bytes = std::fs::read(path).with_context(|| format!("reading model {}", path.display()))?;
    let f = ep::checkpoint::TensorFile::from_bytes(&bytes)
        .with_context(|| format!("{}", path.display()))?;
    Ok(f.metadata
        .get(ep::checkpoint::SPEC_KEY)
        .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
        .is_some_and(|v| {
            v.get("kind")
                .and_then(|k| k.as_str())
                .is_some_and(|k| matches!(k, "bp_cnn" | "adv_cnn" | "vit"))
        }))
}
