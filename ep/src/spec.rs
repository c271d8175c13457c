//! The model spec: architecture and dynamics hyperparameters of an EP network (serde, stored as
//! JSON in checkpoint metadata under `epsim.spec`).
//!
//! Layer bookkeeping follows the reference code (Laborieux et al. 2021, `P_CNN` / `P_MLP`): synapse
//! `i` joins layer `i` (layer 0 is the input) to layer `i + 1`. With `softmax = true` the last synapse
//! is a readout outside the dynamics: the network then has one neuron layer fewer than synapses.

use serde::{Deserialize, Serialize};
use sim::{Act, Conv2dParams, Error, Pool2dParams, Result};

/// Pooling after a conv layer (the reference's `pools` string: `m` max 2x2/2, `a` avg 2x2/2, `i` none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pool {
    /// Max pooling 2x2, stride 2.
    Max,
    /// Average pooling 2x2, stride 2.
    Avg,
    /// No pooling.
    Identity,
}

impl Pool {
    /// Parse one character of the reference's pools string.
    pub fn from_char(c: char) -> Result<Self> {
        match c {
            'm' => Ok(Pool::Max),
            'a' => Ok(Pool::Avg),
            'i' => Ok(Pool::Identity),
            other => Err(Error::param(
                "spec",
                format!("unknown pool {other:?} (use m = max, a = avg, i = none)"),
            )),
        }
    }
    /// The pooling as the engine's fused reads take it.
    pub fn pooling(self) -> sim::Pooling {
        match self {
            Pool::Max => sim::Pooling::Max(Pool2dParams::new(2, 2)),
            Pool::Avg => sim::Pooling::Avg(Pool2dParams::new(2, 2)),
            Pool::Identity => sim::Pooling::None,
        }
    }
    /// The pooling window (2x2, stride 2) when there is one.
    pub fn params(self) -> Option<Pool2dParams> {
        match self {
            Pool::Identity => None,
            _ => Some(Pool2dParams::new(2, 2)),
        }
    }
}

/// The cost the output is nudged with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// ½‖s_out − onehot(y)‖² on the output neurons (reference default).
    Mse,
    /// Cross-entropy; with `softmax = true` on the readout of the last neuron layer.
    CrossEntropy,
}

/// One conv layer of an EP-CNN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvLayer {
    /// Output channels.
    pub channels: usize,
    /// Square kernel size.
    pub kernel: usize,
    /// Stride.
    #[serde(default = "one")]
    pub stride: usize,
    /// Zero padding.
    #[serde(default)]
    pub padding: usize,
    /// Pooling after the conv.
    pub pool: Pool,
}

fn one() -> usize {
    1
}

/// Architecture + dynamics of an EP network. An EP-MLP is the case with no conv layers (its input is
/// flattened).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Input shape [C, H, W].
    pub input: [usize; 3],
    /// Conv layers, in order (empty for an MLP).
    #[serde(default)]
    pub conv: Vec<ConvLayer>,
    /// Sizes of the fully connected layers after the convs; the last is the number of classes.
    pub fc: Vec<usize>,
    /// Neuron activation σ (`my_hard_sig`, `hard_sigmoid`, `my_sigmoid`, ...).
    pub act: Act,
    /// Softmax readout: the last linear layer is outside the dynamics.
    #[serde(default)]
    pub softmax: bool,
    /// Cost used for nudging.
    pub loss: Loss,
    /// Free-phase steps T1 (also the default for evaluation).
    pub t1: usize,
    /// Nudged-phase steps T2.
    pub t2: usize,
    /// Per-channel normalization of pixel inputs in [0, 1] that the model was trained with
    /// (x̂ = (x − mean) / std). The dynamics take x̂; classifiers and the CLI apply it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_norm: Option<InputNorm>,
}

/// Per-channel input normalization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputNorm {
    /// Mean per channel.
    pub mean: Vec<f32>,
    /// Std per channel.
    pub std: Vec<f32>,
}

/// Static shape information derived from a spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Geometry {
    /// Per synapse: weight shape (OIHW for conv, [out, in] for linear).
    pub weight_shapes: Vec<Vec<usize>>,
    /// Per neuron layer (without the input): shape without the batch axis.
    pub layer_shapes: Vec<Vec<usize>>,
    /// Per conv synapse: (conv output H, W) before pooling.
    pub conv_out_hw: Vec<(usize, usize)>,
}

/// The most parameters a model may have (2³¹ values, 8 GiB of f32): a spec or config asking for
/// more (usually a typo in a size) is refused with an error instead of failing to allocate.
pub const MAX_PARAMS: usize = 1 << 31;

/// The size `c·h·w` of a flattened feature map (the fan-in of the first dense layer after the
/// convs), or an error naming `what` when it overflows.
pub fn flat_size(what: &'static str, c: usize, h: usize, w: usize) -> Result<usize> {
    c.checked_mul(h)
        .and_then(|x| x.checked_mul(w))
        .ok_or_else(|| {
            Error::param(
                what,
                format!("the last conv's output {c}x{h}x{w} is too large"),
            )
        })
}

/// The number of values of tensors of `shapes`, or an error naming `what` when it overflows or
/// exceeds [`MAX_PARAMS`].
pub fn check_param_count<'a>(
    what: &'static str,
    shapes: impl IntoIterator<Item = &'a [usize]>,
) -> Result<usize> {
    let mut total: usize = 0;
    for s in shapes {
        total = s
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .and_then(|n| total.checked_add(n))
            .filter(|&t| t <= MAX_PARAMS)
            .ok_or_else(|| {
                Error::param(
                    what,
                    format!(
                        "the model would have more than {MAX_PARAMS} parameters (at a tensor of \
                         shape {s:?}): check its sizes"
                    ),
                )
            })?;
    }
    Ok(total)
}

impl ModelSpec {
    /// Number of synapses (conv + fc).
    pub fn n_synapses(&self) -> usize {
        self.conv.len() + self.fc.len()
    }

    /// Number of neuron layers in the dynamics.
    pub fn n_layers(&self) -> usize {
        self.n_synapses() - usize::from(self.softmax)
    }

    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        *self.fc.last().unwrap_or(&0)
    }

    /// Check the spec and derive all shapes; errors name the offending field.
    pub fn geometry(&self) -> Result<Geometry> {
        let [c0, h0, w0] = self.input;
        if c0 == 0 || h0 == 0 || w0 == 0 {
            return Err(Error::param(
                "spec",
                format!("input shape {:?} has a zero dimension", self.input),
            ));
        }
        if self.fc.is_empty() {
            return Err(Error::param(
                "spec",
                "fc must list at least the output layer (number of classes)",
            ));
        }
        if self.fc.contains(&0) {
            return Err(Error::param(
                "spec",
                format!("fc sizes must be ≥ 1, got {:?}", self.fc),
            ));
        }
        if self.softmax && self.n_synapses() < 2 {
            return Err(Error::param(
                "spec",
                "softmax readout needs at least one neuron layer before the readout",
            ));
        }
        if self.t1 == 0 {
            return Err(Error::param("spec", "t1 (free-phase steps) must be ≥ 1"));
        }
        let mut weight_shapes = Vec::new();
        let mut layer_shapes = Vec::new();
        let mut conv_out_hw = Vec::new();
        let (mut c, mut h, mut w) = (c0, h0, w0);
        for (i, l) in self.conv.iter().enumerate() {
            if l.channels == 0 || l.kernel == 0 || l.stride == 0 {
                return Err(Error::param(
                    "spec",
                    format!("conv[{i}]: channels, kernel and stride must be ≥ 1: {l:?}"),
                ));
            }
            let p = Conv2dParams::new(l.stride, l.padding);
            let (ho, wo) = p
                .output_hw("spec", (h, w), (l.kernel, l.kernel))
                .map_err(|e| {
                    Error::param("spec", format!("conv[{i}] on input {c}x{h}x{w}: {e}"))
                })?;
            conv_out_hw.push((ho, wo));
            weight_shapes.push(vec![l.channels, c, l.kernel, l.kernel]);
            let (hp, wp) = match l.pool.params() {
                Some(pp) => pp.output_hw("spec", (ho, wo)).map_err(|e| {
                    Error::param("spec", format!("pool after conv[{i}] on {ho}x{wo}: {e}"))
                })?,
                None => (ho, wo),
            };
            c = l.channels;
            h = hp;
            w = wp;
            layer_shapes.push(vec![c, h, w]);
        }
        let mut fan_in = flat_size("spec", c, h, w)?;
        for &n in &self.fc {
            weight_shapes.push(vec![n, fan_in]);
            layer_shapes.push(vec![n]);
            fan_in = n;
        }
        if self.softmax {
            layer_shapes.pop();
        }
        check_param_count("model", weight_shapes.iter().map(Vec::as_slice))?;
        Ok(Geometry {
            weight_shapes,
            layer_shapes,
            conv_out_hw,
        })
    }

    /// The Fashion-MNIST EP-CNN of `configs/fmnist-epcnn.toml` (the speed anchor of the benches):
    /// channels 32-64, kernels 5, no padding, pools `mm`, fc 10, softmax readout, `my_hard_sig`,
    /// T1 30, T2 10; the inputs' normalization comes from the config's `[data]` at training.
    pub fn fmnist_reference() -> Self {
        let conv = |channels| ConvLayer {
            channels,
            kernel: 5,
            stride: 1,
            padding: 0,
            pool: Pool::Max,
        };
        ModelSpec {
            input: [1, 28, 28],
            conv: vec![conv(32), conv(64)],
            fc: vec![10],
            act: Act::MyHardSig,
            softmax: true,
            loss: Loss::CrossEntropy,
            t1: 30,
            t2: 10,
            input_norm: None,
        }
    }

    /// The reference CIFAR-10 EP-CNN (Laborieux et al. 2021; AdvEP): channels 128-256-512-512,
    /// kernels 3, paddings 1 1 1 0, pools `mmmm`, fc 10, softmax readout, `my_hard_sig`, T1 250, T2 25.
    pub fn cifar10_reference() -> Self {
        let conv = [(128, 1), (256, 1), (512, 1), (512, 0)]
            .iter()
            .map(|&(channels, padding)| ConvLayer {
                channels,
                kernel: 3,
                stride: 1,
                padding,
                pool: Pool::Max,
            })
            .collect();
        ModelSpec {
            input: [3, 32, 32],
            conv,
            fc: vec![10],
            act: Act::MyHardSig,
            softmax: true,
            loss: Loss::CrossEntropy,
            t1: 250,
            t2: 25,
            input_norm: Some(InputNorm {
                mean: vec![0.4914, 0.4822, 0.4465],
                std: vec![3.0 * 0.2023, 3.0 * 0.1994, 3.0 * 0.2010],
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_cifar_geometry() {
        let g = ModelSpec::cifar10_reference().geometry().unwrap();
        assert_eq!(
            g.layer_shapes,
            vec![
                vec![128, 16, 16],
                vec![256, 8, 8],
                vec![512, 4, 4],
                vec![512, 1, 1]
            ]
        );
        assert_eq!(g.weight_shapes.last().unwrap(), &vec![10, 512]);
        assert_eq!(g.conv_out_hw, vec![(32, 32), (16, 16), (8, 8), (2, 2)]);
    }

    #[test]
    fn mlp_geometry_and_errors() {
        let spec = ModelSpec {
            input: [1, 28, 28],
            conv: vec![],
            fc: vec![512, 10],
            act: Act::MyHardSig,
            softmax: false,
            loss: Loss::Mse,
            t1: 30,
            t2: 10,
            input_norm: None,
        };
        let g = spec.geometry().unwrap();
        assert_eq!(g.weight_shapes, vec![vec![512, 784], vec![10, 512]]);
        assert_eq!(g.layer_shapes, vec![vec![512], vec![10]]);
        let mut bad = spec.clone();
        bad.fc.clear();
        assert!(bad.geometry().unwrap_err().to_string().contains("fc"));
        let mut bad = ModelSpec::cifar10_reference();
        bad.input = [3, 8, 8];
        assert!(bad.geometry().unwrap_err().to_string().contains("conv["));
    }

    #[test]
    fn spec_json_roundtrip() {
        let s = ModelSpec::cifar10_reference();
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<ModelSpec>(&j).unwrap(), s);
    }
}
