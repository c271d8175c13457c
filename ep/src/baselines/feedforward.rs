//! A BP-CNN or AdvCNN in evaluation mode as a plain feed-forward network, the form a crossbar
//! substrate realizes: every batch norm folded into its conv, `W' = W·s`, `b' = β − μ·s` with
//! `s = γ/√(σ² + ε)` per output channel (running statistics), so that `conv'(x)` equals
//! `BN(conv(x))` exactly in exact arithmetic. The convs (with their pooling) and linear layers
//! become the synapses of an EP spec with the same shapes (no softmax readout), which the netlist
//! compiler programs onto tiles like an EP network's; the activation stays digital. A synapse's
//! read pools before the activation (conv → BN → pool → act): with max pooling and a
//! non-decreasing activation that is the baseline's conv → BN → act → pool exactly, so average
//! pooling and GELU (non-monotone) are refused. A ViT has no such form: its attention multiplies
//! activations with activations, which are not programmable weights.

use sim::{Act, Error, Result, Tensor};

use super::{Arch, Baseline};
use crate::spec::{Loss, ModelSpec, Pool};

/// A baseline as a feed-forward network of convs (with bias) and linear layers.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedForward {
    /// The synapses as an EP spec: the baseline's convs (with their max pooling) and its linear
    /// layers (softmax readout off, so every layer is a synapse), with its input normalization.
    pub spec: ModelSpec,
    /// Weights per synapse (OIHW, `[out, in]`), batch norm folded into the convs.
    pub weights: Vec<Tensor>,
    /// Biases per synapse (the folded batch-norm shifts for the convs).
    pub biases: Vec<Tensor>,
    /// The activation after every synapse but the last.
    pub act: Act,
}

impl Baseline {
    /// This baseline as a [`FeedForward`] network (see the module doc); a ViT is refused.
    pub fn feed_forward(&self) -> Result<FeedForward> {
        let s = match &self.spec.arch {
            Arch::BpCnn(s) | Arch::AdvCnn(s) => s,
            Arch::Vit(_) => {
                return Err(Error::param(
                    "feed_forward",
                    "a ViT cannot be realized on crossbars: its attention multiplies activations \
                     with activations, which are not programmable weights",
                ));
            }
        };
        let get = |name: &str, list: &[(String, Tensor)]| {
            list.iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.clone())
                .ok_or_else(|| Error::Other(format!("feed_forward: no tensor {name}")))
        };
        let spec = ModelSpec {
            input: s.input,
            conv: s.conv.clone(),
            fc: s.fc.clone(),
            act: s.act,
            softmax: false,
            loss: Loss::Mse,
            t1: 1,
            t2: 1,
            input_norm: self.spec.input_norm.clone(),
        };
        check_realizable(&spec, s.act)?;
        spec.geometry()?;
        let (mut weights, mut biases) = (Vec::new(), Vec::new());
        for (i, l) in s.conv.iter().enumerate() {
            let w = get(&format!("conv.{i}.weight"), &self.params)?;
            let gamma = get(&format!("bn.{i}.weight"), &self.params)?;
            let beta = get(&format!("bn.{i}.bias"), &self.params)?;
            let mean = get(&format!("bn.{i}.running_mean"), &self.buffers)?;
            let var = get(&format!("bn.{i}.running_var"), &self.buffers)?;
            let o = l.channels;
            let per = w.len() / o.max(1);
            let wv: Vec<f32> = w.iter().copied().collect();
            let mut folded = Vec::with_capacity(wv.len());
            let mut b = Vec::with_capacity(o);
            for c in 0..o {
                let sc = gamma[c] / (var[c] + s.bn_eps).sqrt();
                folded.extend(wv[c * per..(c + 1) * per].iter().map(|v| v * sc));
                b.push(beta[c] - mean[c] * sc);
            }
            weights.push(sim::tensor(w.shape(), folded)?);
            biases.push(sim::tensor(&[o], b)?);
        }
        for j in 0..s.fc.len() {
            weights.push(get(&format!("fc.{j}.weight"), &self.params)?);
            biases.push(get(&format!("fc.{j}.bias"), &self.params)?);
        }
        Ok(FeedForward {
            spec,
            weights,
            biases,
            act: s.act,
        })
    }
}

/// Whether a network of spec `spec` with activation `act` reads as a feed-forward network on a
/// substrate, whose reads pool before the digital activation: every layer a synapse (no softmax
/// readout), max or no pooling, a non-decreasing activation (not GELU). The one check of both
/// [`Baseline::feed_forward`] and the realization's reader (`substrate::feedforward::Layout`).
pub fn check_realizable(spec: &ModelSpec, act: Act) -> Result<()> {
    if spec.softmax {
        return Err(Error::param(
            "feed_forward",
            "a feed-forward realization reads every layer as a synapse: no softmax readout",
        ));
    }
    if matches!(act, Act::Gelu) {
        return Err(Error::param(
            "feed_forward",
            "GELU is not monotone: pooling before it (as a crossbar read pools) would change the \
             network; realize baselines with ReLU",
        ));
    }
    if let Some(i) = spec.conv.iter().position(|l| l.pool == Pool::Avg) {
        return Err(Error::param(
            "feed_forward",
            format!(
                "conv[{i}]: average pooling does not commute with the activation, so the crossbar \
                 read (which pools before it) would change the network; max pooling and no \
                 pooling are realizable"
            ),
        ));
    }
    Ok(())
}
