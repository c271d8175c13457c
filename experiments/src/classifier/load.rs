//! Model files: an EP network (epsim checkpoint, or a PyTorch-style state dict plus a spec file)
//! or a backprop baseline, read from safetensors, with errors naming the file.

use std::path::Path;

use anyhow::{Context, Result};
use ep::EpNet;
use ep::baselines::Baseline;
use ep::checkpoint::{TensorFile, model_from_file};
use sim::{Backend, Tensor};

/// An EP model on the host: its spec, and its weights and biases in PyTorch layouts (what a
/// checkpoint holds and what is compiled into a netlist).
#[derive(Debug, Clone)]
pub struct HostModel {
    /// Architecture and dynamics.
    pub spec: ep::ModelSpec,
    /// One weight tensor per synapse.
    pub weights: Vec<Tensor>,
    /// One bias vector per synapse.
    pub biases: Vec<Tensor>,
}

impl HostModel {
    /// A network's parameters, read back from its backend.
    pub fn of_net<B: Backend>(be: &B, net: &EpNet<B>) -> Result<Self> {
        let (weights, biases) = net.to_host(be)?;
        Ok(HostModel {
            spec: net.spec.clone(),
            weights,
            biases,
        })
    }

    /// The network on a backend.
    pub fn to_net<B: Backend>(&self, be: &B) -> Result<EpNet<B>> {
        Ok(EpNet::from_host(
            be,
            self.spec.clone(),
            &self.weights,
            &self.biases,
        )?)
    }
}

/// Read a model file (safetensors; spec from metadata or from `spec_file`, TOML or JSON) onto
/// backend `be`.
pub fn load_model<B: Backend>(be: &B, path: &Path, spec_file: Option<&Path>) -> Result<EpNet<B>> {
    read_model(path, spec_file)?
        .to_net(be)
        .with_context(|| format!("{}", path.display()))
}

/// Read a model file as [`load_model`] does (the same checks: shapes against the spec, finite
/// values), keeping it on the host.
pub fn load_host_model(path: &Path, spec_file: Option<&Path>) -> Result<HostModel> {
    let m = read_model(path, spec_file)?;
    // The CPU backend holds host tensors: building the network there is only the check.
    m.to_net(&sim::Cpu)
        .with_context(|| format!("{}", path.display()))?;
    Ok(m)
}

/// The spec and tensors of a model file, unchecked.
fn read_model(path: &Path, spec_file: Option<&Path>) -> Result<HostModel> {
    let bytes = std::fs::read(path).with_context(|| format!("reading model {}", path.display()))?;
    let f = TensorFile::from_bytes(&bytes).with_context(|| format!("{}", path.display()))?;
    let spec = match spec_file {
        None => None,
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading spec {}", p.display()))?;
            let s: ep::ModelSpec = if p.extension().is_some_and(|e| e == "json") {
                serde_json::from_str(&text).map_err(|e| bad_spec(p, &e.to_string()))?
            } else {
                toml::from_str(&text).map_err(|e| bad_spec(p, &e.to_string()))?
            };
            Some(s)
        }
    };
    let (spec, weights, biases) =
        model_from_file(&f, spec).with_context(|| format!("{}", path.display()))?;
    Ok(HostModel {
        spec,
        weights,
        biases,
    })
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

/// A model spec file that does not parse, naming the file, with a "did you mean" for a typo.
fn bad_spec(p: &Path, message: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{}: invalid model spec: {}",
        p.display(),
        sim::suggest::did_you_mean(message)
    )
}
