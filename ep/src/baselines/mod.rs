//! The backprop baselines of the study, trained with the reverse-mode tape (`sim::tape`): BP-CNN
//! (the EP-CNN's architecture with batch norm and ReLU), AdvCNN (the same network, trained on PGD
//! adversarial examples by the experiments driver) and a small ViT.
//!
//! A [`Baseline`] is a spec plus named host tensors (parameters and buffers), so that a checkpoint
//! is a safetensors file with PyTorch-like names (see [`bpcnn`] and [`vit`] for the names) and the
//! spec as JSON (with its `kind`) under the metadata key `epsim.spec`. Inputs are normalized NCHW
//! images; normalization is the caller's (the spec records it in `input_norm`).

pub mod bpcnn;
pub mod feedforward;
pub mod vit;

pub use bpcnn::BpCnnSpec;
pub use feedforward::FeedForward;
pub use vit::VitSpec;

use serde::{Deserialize, Serialize};
use sim::tape::{Tape, Var};
use sim::{Backend, Error, Result, Stream, Tensor};

use crate::checkpoint::{SPEC_KEY, TensorFile};
use crate::spec::InputNorm;

/// The architecture of a baseline, tagged by `kind` in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Arch {
    /// BP-CNN with batch norm.
    BpCnn(BpCnnSpec),
    /// AdvCNN: a BP-CNN trained adversarially (the attack is recorded in [`BaselineSpec::adv`]).
    AdvCnn(BpCnnSpec),
    /// Vision Transformer.
    Vit(VitSpec),
}

/// What an adversarially trained model was trained against (for reports).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdvTrained {
    /// "Linf" or "L2".
    pub norm: String,
    /// Radius ε in pixel units.
    pub eps: f32,
}

/// The spec stored with a baseline: architecture, input normalization and adversarial-training
/// record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineSpec {
    /// Architecture (with `kind`).
    #[serde(flatten)]
    pub arch: Arch,
    /// Per-channel normalization of [0, 1] pixels the model was trained with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_norm: Option<InputNorm>,
    /// Adversarial training, for AdvCNN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adv: Option<AdvTrained>,
}

impl BaselineSpec {
    /// Input shape [C, H, W].
    pub fn input(&self) -> [usize; 3] {
        match &self.arch {
            Arch::BpCnn(s) | Arch::AdvCnn(s) => s.input,
            Arch::Vit(v) => v.input,
        }
    }
    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        match &self.arch {
            Arch::BpCnn(s) | Arch::AdvCnn(s) => s.n_classes(),
            Arch::Vit(v) => v.classes,
        }
    }
    /// The kind as written in configs ("bp_cnn", "adv_cnn", "vit").
    pub fn kind(&self) -> &'static str {
        match &self.arch {
            Arch::BpCnn(_) => "bp_cnn",
            Arch::AdvCnn(_) => "adv_cnn",
            Arch::Vit(_) => "vit",
        }
    }
    #[allow(clippy::type_complexity)]
    fn shapes(&self) -> Result<(Vec<(String, Vec<usize>)>, Vec<(String, Vec<usize>)>)> {
        match &self.arch {
            Arch::BpCnn(s) | Arch::AdvCnn(s) => s.shapes(),
            Arch::Vit(v) => Ok((v.shapes()?, vec![])),
        }
    }
}

/// U(−bound, bound) draws from `stream` (element i from `stream.uniform(i)`).
pub(crate) fn uniform(shape: &[usize], bound: f32, stream: &Stream) -> Tensor {
    let n: usize = shape.iter().product();
    let mut v = vec![0.0f32; n];
    stream.fill_uniform(0, &mut v);
    v.iter_mut().for_each(|e| *e = (2.0 * *e - 1.0) * bound);
    sim::tensor(shape, v).expect("sizes agree")
}

/// A baseline model: spec, parameters and buffers (host tensors, named).
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    /// The spec.
    pub spec: BaselineSpec,
    /// Trainable parameters, in the architecture's order.
    pub params: Vec<(String, Tensor)>,
    /// Non-trainable buffers (batch-norm running statistics), in order.
    pub buffers: Vec<(String, Tensor)>,
}

/// Result of one training forward/backward pass.
#[derive(Debug, Clone)]
pub struct TrainOut {
    /// Mean cross-entropy of the batch.
    pub loss: f32,
    /// Logits `[N, K]` (training mode).
    pub logits: Tensor,
    /// Gradients of the mean loss, one per parameter, in order.
    pub grads: Vec<Tensor>,
}

impl Baseline {
    /// A freshly initialized model (every tensor from `stream.child(name)`).
    pub fn init(spec: BaselineSpec, stream: &Stream) -> Result<Self> {
        let (params, buffers) = match &spec.arch {
            Arch::BpCnn(s) | Arch::AdvCnn(s) => s.init(stream)?,
            Arch::Vit(v) => (v.init(stream)?, vec![]),
        };
        Ok(Baseline {
            spec,
            params,
            buffers,
        })
    }

    /// The parameter tensors (in order).
    pub fn param_tensors(&self) -> Vec<Tensor> {
        self.params.iter().map(|(_, t)| t.clone()).collect()
    }

    /// Replace the parameter tensors (same shapes, in order).
    pub fn set_params(&mut self, ps: Vec<Tensor>) -> Result<()> {
        if ps.len() != self.params.len() {
            return Err(Error::shape(
                "baseline",
                format!("{} tensors for {} parameters", ps.len(), self.params.len()),
            ));
        }
        for ((name, old), new) in self.params.iter_mut().zip(ps) {
            if old.shape() != new.shape() {
                return Err(Error::shape(
                    "baseline",
                    format!("{name}: shape {:?}, got {:?}", old.shape(), new.shape()),
                ));
            }
            *old = new;
        }
        Ok(())
    }

    /// Record the forward pass on `t` (parameters as leaves when `param_leaves`, else constants);
    /// returns the logits var, the parameter vars and the batch statistics of training mode.
    #[allow(clippy::type_complexity)]
    pub fn forward<B: Backend>(
        &self,
        t: &Tape<'_, B>,
        x: Var,
        train: bool,
        param_leaves: bool,
    ) -> Result<(Var, Vec<Var>, Vec<(B::Tensor, B::Tensor)>)> {
        let be = t.backend();
        let mut pv = Vec::with_capacity(self.params.len());
        for (_, p) in &self.params {
            let u = be.upload(p)?;
            pv.push(if param_leaves {
                t.leaf(u)
            } else {
                t.constant(u)
            });
        }
        match &self.spec.arch {
            Arch::BpCnn(s) | Arch::AdvCnn(s) => {
                let bufs = self
                    .buffers
                    .iter()
                    .map(|(_, b)| be.upload(b))
                    .collect::<Result<Vec<_>>>()?;
                let (y, st) = s.forward(t, x, &pv, &bufs, train)?;
                Ok((y, pv, st))
            }
            Arch::Vit(v) => Ok((v.forward(t, x, &pv)?, pv, vec![])),
        }
    }

    /// One training pass on a normalized batch: mean cross-entropy, its parameter gradients, and
    /// (batch-norm models) the running statistics updated from the batch statistics.
    pub fn train_grads<B: Backend>(
        &mut self,
        be: &B,
        x: &Tensor,
        labels: &[usize],
    ) -> Result<TrainOut> {
        let t = Tape::new(be);
        let xv = t.constant(be.upload(x)?);
        let (logits, pv, stats) = self.forward(&t, xv, true, true)?;
        let loss = t.cross_entropy(logits, labels)?;
        let lossv = t.scalar(loss)?;
        let mut g = t.backward(loss)?;
        let grads = pv
            .iter()
            .zip(&self.params)
            .map(|(&v, (name, p))| match g.take(v) {
                Some(gt) => be.download(&gt),
                // A parameter the loss does not reach (e.g. empty batch) gets a zero gradient.
                None => {
                    let _ = name;
                    Ok(Tensor::zeros(p.raw_dim()))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        if let Arch::BpCnn(s) | Arch::AdvCnn(s) = &self.spec.arch {
            let host = stats
                .iter()
                .map(|(m, v)| Ok((be.download(m)?, be.download(v)?)))
                .collect::<Result<Vec<_>>>()?;
            let mut bufs: Vec<Tensor> = self.buffers.iter().map(|(_, b)| b.clone()).collect();
            s.update_running(&mut bufs, &host, x.shape()[0])?;
            for ((_, b), nb) in self.buffers.iter_mut().zip(bufs) {
                *b = nb;
            }
        }
        Ok(TrainOut {
            loss: lossv,
            logits: be.download(&t.value(logits)?)?,
            grads,
        })
    }

    /// Logits `[N, K]` of a normalized batch in evaluation mode (running statistics).
    pub fn logits<B: Backend>(&self, be: &B, x: &Tensor) -> Result<Tensor> {
        let t = Tape::new(be);
        let xv = t.constant(be.upload(x)?);
        let (y, _, _) = self.forward(&t, xv, false, false)?;
        be.download(&t.value(y)?)
    }

    /// Evaluation-mode logits and the input gradient of a loss of the logits: `dloss` maps the
    /// logits to d(loss)/d(logits); returns (logits, d loss / d x).
    pub fn input_grad<B: Backend>(
        &self,
        be: &B,
        x: &Tensor,
        dloss: impl FnOnce(&Tensor) -> Result<Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        let t = Tape::new(be);
        let xv = t.leaf(be.upload(x)?);
        let (y, _, _) = self.forward(&t, xv, false, false)?;
        let logits = be.download(&t.value(y)?)?;
        let g = dloss(&logits)?;
        if g.shape() != logits.shape() {
            return Err(Error::shape(
                "baseline.input_grad",
                format!(
                    "loss gradient {:?} does not match the logits {:?}",
                    g.shape(),
                    logits.shape()
                ),
            ));
        }
        let grads = t.backward_with(y, be.upload(&g)?)?;
        let dx = grads
            .get(xv)
            .map(|d| be.download(d))
            .transpose()?
            .unwrap_or_else(|| Tensor::zeros(x.raw_dim()));
        Ok((logits, dx))
    }

    /// The model as a tensor file (parameters, buffers, spec JSON under `epsim.spec`).
    pub fn to_file(&self) -> Result<TensorFile> {
        let mut f = TensorFile::default();
        f.tensors.extend(self.params.iter().cloned());
        f.tensors.extend(self.buffers.iter().cloned());
        f.metadata.insert(
            SPEC_KEY.into(),
            serde_json::to_string(&self.spec).map_err(|e| Error::Other(e.to_string()))?,
        );
        Ok(f)
    }

    /// A model from a tensor file: the spec from metadata (or `spec_override`), every named tensor
    /// present with its expected shape; extra tensors (optimizer state) are ignored.
    pub fn from_file(f: &TensorFile, spec_override: Option<BaselineSpec>) -> Result<Self> {
        let spec = match spec_override {
            Some(s) => s,
            None => {
                let j = f.metadata.get(SPEC_KEY).ok_or_else(|| {
                    Error::Other(format!("no model spec in the metadata (key {SPEC_KEY})"))
                })?;
                serde_json::from_str(j).map_err(|e| {
                    Error::Other(format!("metadata {SPEC_KEY} is not a baseline spec: {e}"))
                })?
            }
        };
        let (ps, bs) = spec.shapes()?;
        let fetch = |list: Vec<(String, Vec<usize>)>| -> Result<Vec<(String, Tensor)>> {
            list.into_iter()
                .map(|(name, shape)| {
                    let t = f
                        .get(&name)
                        .ok_or_else(|| Error::Other(format!("tensor {name} is missing")))?;
                    if t.shape() != shape.as_slice() {
                        return Err(Error::Other(format!(
                            "tensor {name} has shape {:?}, the spec needs {shape:?}",
                            t.shape()
                        )));
                    }
                    Ok((name, t.clone()))
                })
                .collect()
        };
        Ok(Baseline {
            params: fetch(ps)?,
            buffers: fetch(bs)?,
            spec,
        })
    }
}
