//! BP-CNN: the EP-CNN's conv/pool/FC architecture trained by backprop, each conv followed by batch
//! norm and ReLU (conv → BN → ReLU → pool), ReLU between the fully connected layers, plain logits
//! out (cross-entropy is the caller's loss).
//!
//! Parameter names (safetensors, PyTorch layouts): `conv.{i}.weight` `[O, C, k, k]` (no bias: the
//! batch norm's shift replaces it), `bn.{i}.weight`, `bn.{i}.bias` `[O]`, `fc.{j}.weight`
//! `[out, in]`, `fc.{j}.bias`. Buffers: `bn.{i}.running_mean`, `bn.{i}.running_var` (PyTorch's
//! `BatchNorm2d` buffers: unbiased batch variance in the running average, momentum 0.1 by default).

use serde::{Deserialize, Serialize};
use sim::tape::{Tape, Var};
use sim::{Act, Backend, Conv2dParams, Error, Result, Stream, Tensor};

use crate::spec::ConvLayer;

/// Architecture of a BP-CNN: the same keys as the EP-CNN's `[model]` (`input`, `conv`, `fc`), plus
/// the batch-norm constants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BpCnnSpec {
    /// Input shape [C, H, W].
    pub input: [usize; 3],
    /// Conv layers (channels, kernel, stride, padding, pool), as in the EP-CNN spec.
    #[serde(default)]
    pub conv: Vec<ConvLayer>,
    /// Fully connected sizes after the convs; the last is the number of classes.
    pub fc: Vec<usize>,
    /// Activation after each batch norm and between the fully connected layers (ReLU; GELU etc.
    /// are accepted, which the gradient checks use to avoid ReLU's kink).
    #[serde(default = "relu")]
    pub act: Act,
    /// Batch-norm ε.
    #[serde(default = "bn_eps")]
    pub bn_eps: f32,
    /// Batch-norm running-average momentum (PyTorch convention: new = (1 − m)·old + m·batch).
    #[serde(default = "bn_momentum")]
    pub bn_momentum: f32,
}

fn relu() -> Act {
    Act::Relu
}
fn bn_eps() -> f32 {
    1e-5
}
fn bn_momentum() -> f32 {
    0.1
}

impl BpCnnSpec {
    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.fc.last().copied().unwrap_or(0)
    }

    /// Check the spec; returns the named parameter shapes and buffer shapes in order.
    #[allow(clippy::type_complexity)]
    pub fn shapes(&self) -> Result<(Vec<(String, Vec<usize>)>, Vec<(String, Vec<usize>)>)> {
        let [c0, h0, w0] = self.input;
        if c0 == 0 || h0 == 0 || w0 == 0 {
            return Err(Error::param(
                "bp_cnn",
                format!("input shape {:?} has a zero dimension", self.input),
            ));
        }
        if self.fc.is_empty() || self.fc.contains(&0) {
            return Err(Error::param(
                "bp_cnn",
                format!(
                    "fc must list ≥ 1 positive sizes ending with the classes, got {:?}",
                    self.fc
                ),
            ));
        }
        if self.bn_eps.is_nan() || self.bn_eps <= 0.0 || !(0.0..=1.0).contains(&self.bn_momentum) {
            return Err(Error::param(
                "bp_cnn",
                format!(
                    "bn_eps must be > 0 and bn_momentum in [0, 1] (got {}, {})",
                    self.bn_eps, self.bn_momentum
                ),
            ));
        }
        let (mut params, mut bufs) = (Vec::new(), Vec::new());
        let (mut c, mut h, mut w) = (c0, h0, w0);
        for (i, l) in self.conv.iter().enumerate() {
            if l.channels == 0 || l.kernel == 0 || l.stride == 0 {
                return Err(Error::param(
                    "bp_cnn",
                    format!("conv[{i}]: channels, kernel and stride must be ≥ 1: {l:?}"),
                ));
            }
            let (ho, wo) = Conv2dParams::new(l.stride, l.padding)
                .output_hw("bp_cnn", (h, w), (l.kernel, l.kernel))
                .map_err(|e| Error::param("bp_cnn", format!("conv[{i}] on {c}x{h}x{w}: {e}")))?;
            (h, w) = match l.pool.params() {
                Some(p) => p.output_hw("bp_cnn", (ho, wo)).map_err(|e| {
                    Error::param("bp_cnn", format!("pool after conv[{i}] on {ho}x{wo}: {e}"))
                })?,
                None => (ho, wo),
            };
            params.push((
                format!("conv.{i}.weight"),
                vec![l.channels, c, l.kernel, l.kernel],
            ));
            params.push((format!("bn.{i}.weight"), vec![l.channels]));
            params.push((format!("bn.{i}.bias"), vec![l.channels]));
            bufs.push((format!("bn.{i}.running_mean"), vec![l.channels]));
            bufs.push((format!("bn.{i}.running_var"), vec![l.channels]));
            c = l.channels;
        }
        let mut fan_in = crate::spec::flat_size("bp_cnn", c, h, w)?;
        for (j, &n) in self.fc.iter().enumerate() {
            params.push((format!("fc.{j}.weight"), vec![n, fan_in]));
            params.push((format!("fc.{j}.bias"), vec![n]));
            fan_in = n;
        }
        crate::spec::check_param_count(
            "bp_cnn",
            params.iter().chain(&bufs).map(|p| p.1.as_slice()),
        )?;
        Ok((params, bufs))
    }

    /// Initial parameters (PyTorch defaults: conv and linear weights and biases U(±1/√fan_in), BN
    /// γ = 1, β = 0) and buffers (running mean 0, running var 1), drawn from `stream`'s children
    /// named after each tensor.
    #[allow(clippy::type_complexity)]
    pub fn init(&self, stream: &Stream) -> Result<(Vec<(String, Tensor)>, Vec<(String, Tensor)>)> {
        let (ps, bs) = self.shapes()?;
        let params = ps
            .into_iter()
            .map(|(name, shape)| {
                let t = if name.starts_with("bn.") {
                    let v = if name.ends_with("weight") { 1.0 } else { 0.0 };
                    Tensor::from_elem(ndarray::IxDyn(&shape), v)
                } else {
                    // fan_in of the layer: the weight's row length (bias shares its layer's).
                    let fan_in = self.fan_in(&name)?;
                    super::uniform(&shape, 1.0 / (fan_in as f32).sqrt(), &stream.child(&name))
                };
                Ok((name, t))
            })
            .collect::<Result<Vec<_>>>()?;
        let bufs = bs
            .into_iter()
            .map(|(name, shape)| {
                let v = if name.ends_with("running_var") {
                    1.0
                } else {
                    0.0
                };
                (name, Tensor::from_elem(ndarray::IxDyn(&shape), v))
            })
            .collect();
        Ok((params, bufs))
    }

    fn fan_in(&self, name: &str) -> Result<usize> {
        let (ps, _) = self.shapes()?;
        let layer = name.rsplit_once('.').map(|(l, _)| l).unwrap_or(name);
        let w = ps
            .iter()
            .find(|(n, _)| n == &format!("{layer}.weight"))
            .ok_or_else(|| Error::Other(format!("bp_cnn: no weight for {name}")))?;
        Ok(w.1[1..].iter().product())
    }

    /// Forward pass on `t` from normalized input `x` `[N, C, H, W]` with parameter vars `p` (in the
    /// order of [`shapes`](Self::shapes)). `train`: batch statistics (returned per BN layer as
    /// (mean, biased var)); else the running statistics `bufs` (in buffer order).
    #[allow(clippy::type_complexity)]
    pub fn forward<B: Backend>(
        &self,
        t: &Tape<'_, B>,
        x: Var,
        p: &[Var],
        bufs: &[B::Tensor],
        train: bool,
    ) -> Result<(Var, Vec<(B::Tensor, B::Tensor)>)> {
        let xs = t.shape(x)?;
        if xs.len() != 4 || xs[1..] != self.input[..] {
            return Err(Error::shape(
                "bp_cnn",
                format!("expected input [N, {:?}], got {xs:?}", self.input),
            ));
        }
        let mut stats = Vec::new();
        let mut h = x;
        let mut k = 0;
        for (i, l) in self.conv.iter().enumerate() {
            h = t.conv2d(h, p[k], None, Conv2dParams::new(l.stride, l.padding))?;
            h = if train {
                let o = t.batch_norm_train(h, p[k + 1], p[k + 2], self.bn_eps)?;
                stats.push((o.mean, o.var));
                o.y
            } else {
                t.batch_norm_eval(
                    h,
                    p[k + 1],
                    p[k + 2],
                    &bufs[2 * i],
                    &bufs[2 * i + 1],
                    self.bn_eps,
                )?
            };
            h = t.map(h, self.act)?;
            match l.pool {
                crate::spec::Pool::Max => h = t.max_pool2d(h, sim::Pool2dParams::new(2, 2))?,
                crate::spec::Pool::Avg => h = t.avg_pool2d(h, sim::Pool2dParams::new(2, 2))?,
                crate::spec::Pool::Identity => {}
            }
            k += 3;
        }
        let n = xs[0];
        let flat: usize = t.shape(h)?[1..].iter().product();
        h = t.reshape(h, &[n, flat])?;
        for j in 0..self.fc.len() {
            h = t.linear(h, p[k], Some(p[k + 1]))?;
            if j + 1 < self.fc.len() {
                h = t.map(h, self.act)?;
            }
            k += 2;
        }
        Ok((h, stats))
    }

    /// Update running statistics in `bufs` (host, buffer order) from the batch statistics of one
    /// training forward pass on a batch of `n` images, as PyTorch does (unbiased variance).
    pub fn update_running(
        &self,
        bufs: &mut [Tensor],
        stats: &[(Tensor, Tensor)],
        n: usize,
    ) -> Result<()> {
        let mut hw = (self.input[1], self.input[2]);
        let m = self.bn_momentum;
        for (i, ((mean, var), l)) in stats.iter().zip(&self.conv).enumerate() {
            let (ho, wo) = Conv2dParams::new(l.stride, l.padding).output_hw(
                "bp_cnn",
                hw,
                (l.kernel, l.kernel),
            )?;
            let count = (n * ho * wo) as f32;
            let corr = if count > 1.0 {
                count / (count - 1.0)
            } else {
                1.0
            };
            bufs[2 * i].zip_mut_with(mean, |r, &b| *r = (1.0 - m) * *r + m * b);
            bufs[2 * i + 1].zip_mut_with(var, |r, &b| *r = (1.0 - m) * *r + m * b * corr);
            hw = match l.pool.params() {
                Some(p) => p.output_hw("bp_cnn", (ho, wo))?,
                None => (ho, wo),
            };
        }
        Ok(())
    }
}
