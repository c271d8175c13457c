//! Parameters of the primitive ops and the scalar element maps shared by every backend.
//!
//! The closed op set itself is the [`crate::Backend`] trait; this module holds the small value types
//! its methods take, and the scalar definitions of the element maps (`Act`) so that every backend
//! computes exactly the same function.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Stride and zero padding of a 2-D convolution (PyTorch `nn.Conv2d` semantics, dilation 1, groups 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conv2dParams {
    /// (vertical, horizontal) stride, each ≥ 1.
    pub stride: (usize, usize),
    /// (vertical, horizontal) zero padding added on both sides.
    pub padding: (usize, usize),
}

impl Conv2dParams {
    /// Square stride and padding.
    pub fn new(stride: usize, padding: usize) -> Self {
        Self {
            stride: (stride, stride),
            padding: (padding, padding),
        }
    }

    /// Output spatial size for an input of `(h, w)` and a kernel of `(kh, kw)`, or an error naming `op`.
    pub fn output_hw(
        &self,
        op: &'static str,
        hw: (usize, usize),
        khw: (usize, usize),
    ) -> Result<(usize, usize)> {
        let (sh, sw) = self.stride;
        if sh == 0 || sw == 0 {
            return Err(Error::param(
                op,
                format!("stride must be ≥ 1, got {:?}", self.stride),
            ));
        }
        if khw.0 == 0 || khw.1 == 0 {
            return Err(Error::param(
                op,
                format!("kernel must be ≥ 1x1, got {khw:?}"),
            ));
        }
        let padded = |n: usize, p: usize| p.checked_mul(2).and_then(|p2| n.checked_add(p2));
        let (Some(ph), Some(pw)) = (padded(hw.0, self.padding.0), padded(hw.1, self.padding.1))
        else {
            return Err(Error::param(
                op,
                format!("input {hw:?} with padding {:?} is too large", self.padding),
            ));
        };
        if ph < khw.0 || pw < khw.1 {
            return Err(Error::param(
                op,
                format!(
                    "kernel {khw:?} larger than padded input {:?} (input {hw:?}, padding {:?})",
                    (ph, pw),
                    self.padding
                ),
            ));
        }
        Ok(((ph - khw.0) / sh + 1, (pw - khw.1) / sw + 1))
    }
}

/// Window and stride of a 2-D pooling (no padding, floor mode, as PyTorch's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool2dParams {
    /// (vertical, horizontal) window.
    pub kernel: (usize, usize),
    /// (vertical, horizontal) stride.
    pub stride: (usize, usize),
}

impl Pool2dParams {
    /// Square window and stride.
    pub fn new(kernel: usize, stride: usize) -> Self {
        Self {
            kernel: (kernel, kernel),
            stride: (stride, stride),
        }
    }

    /// Output spatial size for an input of `(h, w)`, or an error naming `op`.
    pub fn output_hw(&self, op: &'static str, hw: (usize, usize)) -> Result<(usize, usize)> {
        if self.kernel.0 == 0 || self.kernel.1 == 0 || self.stride.0 == 0 || self.stride.1 == 0 {
            return Err(Error::param(
                op,
                format!("kernel and stride must be ≥ 1, got {self:?}"),
            ));
        }
        if hw.0 < self.kernel.0 || hw.1 < self.kernel.1 {
            return Err(Error::param(
                op,
                format!("window {:?} larger than input {hw:?}", self.kernel),
            ));
        }
        Ok((
            (hw.0 - self.kernel.0) / self.stride.0 + 1,
            (hw.1 - self.kernel.1) / self.stride.1 + 1,
        ))
    }
}

/// The element maps of the op set. Each has a scalar value and derivative here; backends apply them
/// elementwise. Names follow the reference EP code (Laborieux et al. 2021, `model_utils.py`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Act {
    /// x
    Identity,
    /// `hard_sigmoid`: (1 + hardtanh(2x − 1)) / 2 = clamp(x, 0, 1).
    HardSigmoid,
    /// `my_hard_sig`: (1 + hardtanh(x − 1)) / 2 = clamp(x / 2, 0, 1).
    MyHardSig,
    /// `my_sigmoid`: 1 / (1 + exp(−4 (x − 0.5))).
    MySigmoid,
    /// max(x, 0).
    Relu,
    /// x Φ(x) with the exact (erf) Gaussian CDF, as PyTorch's default `nn.GELU`.
    Gelu,
    /// clamp(x, lo, hi).
    Clamp {
        /// Lower bound.
        lo: f32,
        /// Upper bound.
        hi: f32,
    },
}

impl Act {
    /// Value at `x`.
    #[inline]
    pub fn f(self, x: f32) -> f32 {
        match self {
            Act::Identity => x,
            Act::HardSigmoid => (1.0 + (2.0 * x - 1.0).clamp(-1.0, 1.0)) * 0.5,
            Act::MyHardSig => (1.0 + (x - 1.0).clamp(-1.0, 1.0)) * 0.5,
            Act::MySigmoid => 1.0 / (1.0 + (-4.0 * (x - 0.5)).exp()),
            Act::Relu => x.max(0.0),
            Act::Gelu => 0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2)),
            Act::Clamp { lo, hi } => x.max(lo).min(hi),
        }
    }

    /// Derivative at `x`. At the kinks of the piecewise-linear maps it is what PyTorch's autograd
    /// gives: hardtanh, clamp and relu pass the gradient only strictly inside their linear range.
    #[inline]
    pub fn df(self, x: f32) -> f32 {
        match self {
            Act::Identity => 1.0,
            Act::HardSigmoid => {
                if x > 0.0 && x < 1.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Act::MyHardSig => {
                if x > 0.0 && x < 2.0 {
                    0.5
                } else {
                    0.0
                }
            }
            Act::MySigmoid => {
                let s = 1.0 / (1.0 + (-4.0 * (x - 0.5)).exp());
                4.0 * s * (1.0 - s)
            }
            Act::Relu => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Act::Gelu => {
                let cdf = 0.5 * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2));
                let pdf = (-0.5 * x * x).exp() * 0.398_942_3;
                cdf + x * pdf
            }
            Act::Clamp { lo, hi } => {
                if x > lo && x < hi {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }

    /// Error (naming `op`) for an [`Act::Clamp`] whose bounds are not ordered or NaN; every
    /// backend's `map` and `map_grad` check this first.
    pub fn check(self, op: &'static str) -> Result<()> {
        match self {
            Act::Clamp { lo, hi } if lo.is_nan() || hi.is_nan() || lo > hi => Err(Error::param(
                op,
                format!("clamp bounds need lo ≤ hi, got lo={lo}, hi={hi}"),
            )),
            _ => Ok(()),
        }
    }

    /// Parse the names used in configs and the reference code (`hard_sigmoid`, `my_hard_sig`,
    /// `my_sigmoid`, `relu`, `gelu`, `identity`).
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "identity" => Act::Identity,
            "hard_sigmoid" => Act::HardSigmoid,
            "my_hard_sig" => Act::MyHardSig,
            "my_sigmoid" => Act::MySigmoid,
            "relu" => Act::Relu,
            "gelu" => Act::Gelu,
            other => {
                return Err(Error::param(
                    "act",
                    format!(
                        "unknown activation {other:?} (known: identity, hard_sigmoid, my_hard_sig, my_sigmoid, relu, gelu)"
                    ),
                ));
            }
        })
    }
}

/// The pooling that follows a convolution in a fused read ([`crate::Backend::conv2d_pooled`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// No pooling.
    None,
    /// Max pooling (with argmax switches).
    Max(Pool2dParams),
    /// Average pooling.
    Avg(Pool2dParams),
}

/// One optimizer update of one parameter tensor, with PyTorch's exact rules (the arithmetic lives
/// once, in `crate::cpu::optim`, and each backend evaluates the same formulas). The gradient is
/// first L2-decayed, `d = g + wd · p`; then
/// - SGD: with momentum, `buf1 ← momentum · buf1 + d` (`buf1 ← d` on the first step), `d ← buf1`;
///   `p ← p − lr · d`;
/// - Adam: `m ← β₁ m + (1 − β₁) d`, `v ← β₂ v + (1 − β₂) d²` (both start at zero),
///   `p ← p − (lr / bc1) · m / (√(v / bc2) + ε)` with the bias corrections `bc1 = 1 − β₁ᵗ`,
///   `bc2 = 1 − β₂ᵗ` computed by the caller for step t.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OptimStep {
    /// `torch.optim.SGD(momentum, dampening=0, nesterov=False, weight_decay=wd)`.
    Sgd {
        /// Learning rate.
        lr: f32,
        /// L2 weight decay.
        wd: f32,
        /// Momentum factor (0: no buffer).
        momentum: f32,
    },
    /// `torch.optim.Adam(weight_decay=wd)`.
    Adam {
        /// Learning rate.
        lr: f32,
        /// L2 weight decay.
        wd: f32,
        /// β₁.
        beta1: f32,
        /// β₂.
        beta2: f32,
        /// ε.
        eps: f32,
        /// 1 − β₁ᵗ.
        bc1: f32,
        /// 1 − β₂ᵗ.
        bc2: f32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn act_derivatives_match_finite_differences_away_from_kinks() {
        let acts = [
            Act::Identity,
            Act::HardSigmoid,
            Act::MyHardSig,
            Act::MySigmoid,
            Act::Relu,
            Act::Gelu,
            Act::Clamp { lo: -0.3, hi: 0.7 },
        ];
        let kinks = [-1.0f32, -0.3, 0.0, 0.7, 1.0, 2.0];
        for act in acts {
            for i in 0..200 {
                let x = -3.0 + 6.0 * (i as f32 + 0.37) / 200.0;
                if kinks.iter().any(|k| (x - k).abs() < 1e-2) {
                    continue;
                }
                let h = 1e-3f64;
                let fd = (act.f((x as f64 + h) as f32) as f64
                    - act.f((x as f64 - h) as f32) as f64)
                    / (2.0 * h);
                assert!(
                    (fd - act.df(x) as f64).abs() < 2e-3,
                    "{act:?} at {x}: fd {fd} vs df {}",
                    act.df(x)
                );
            }
        }
    }

    #[test]
    fn reference_definitions() {
        // hard_sigmoid is clamp(x,0,1); my_hard_sig is clamp(x/2,0,1).
        for x in [-2.0f32, -0.2, 0.3, 0.9, 1.7, 2.5] {
            assert_eq!(Act::HardSigmoid.f(x), x.clamp(0.0, 1.0));
            assert!((Act::MyHardSig.f(x) - (x / 2.0).clamp(0.0, 1.0)).abs() < 1e-7);
        }
        assert!((Act::MySigmoid.f(0.5) - 0.5).abs() < 1e-7);
        // GELU(1) = Φ(1) = 0.8413447...
        assert!((Act::Gelu.f(1.0) - 0.841_344_7).abs() < 1e-6);
    }

    #[test]
    fn conv_output_shape_and_errors() {
        let p = Conv2dParams::new(1, 1);
        assert_eq!(p.output_hw("conv2d", (32, 32), (3, 3)).unwrap(), (32, 32));
        assert_eq!(
            Conv2dParams::new(2, 0)
                .output_hw("conv2d", (7, 7), (3, 3))
                .unwrap(),
            (3, 3)
        );
        assert!(
            Conv2dParams::new(0, 0)
                .output_hw("conv2d", (7, 7), (3, 3))
                .is_err()
        );
        assert!(
            Conv2dParams::new(1, 0)
                .output_hw("conv2d", (2, 2), (3, 3))
                .is_err()
        );
        assert!(
            Pool2dParams::new(2, 2)
                .output_hw("max_pool2d", (1, 4))
                .is_err()
        );
        assert_eq!(
            Pool2dParams::new(2, 2)
                .output_hw("max_pool2d", (5, 4))
                .unwrap(),
            (2, 2)
        );
    }
}
