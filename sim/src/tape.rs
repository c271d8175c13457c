//! A small reverse-mode autodiff tape over the [`Backend`] ops, for the backprop baselines (BP-CNN
//! with batch norm, PGD adversarial training, a small ViT) and for checking hand-written adjoints.
//!
//! Usage: create a [`Tape`] on a backend, register inputs and parameters with [`Tape::leaf`] (or
//! [`Tape::constant`] for tensors that need no gradient), compose ops (each returns a [`Var`], a
//! cheap copyable handle), and call [`Tape::backward`] on a scalar loss. [`Grads::get`] then gives
//! d loss / d var for every leaf (and every intermediate) the loss depends on. A `Var` used several
//! times receives the sum of its gradient contributions.
//!
//! Every backward rule is built from the backend's adjoint ops (never from finite differences), so
//! the tape runs unchanged on any backend. Ops take `&self` (the node list sits in a `RefCell`), so
//! calls nest: `t.map(t.add(a, b)?, Act::Relu)?`.
//!
//! Scalars (losses, `sum_all`, `mean`, `dot`) are 0-d tensors.
//!
//! ```
//! use sim::tape::Tape;
//! use sim::{Act, Cpu, tensor};
//! # fn main() -> sim::Result<()> {
//! let cpu = Cpu;
//! let t = Tape::new(&cpu);
//! let x = t.constant(tensor(&[2, 3], vec![0.5, -1.0, 2.0, 1.0, 0.0, -0.5])?);
//! let w = t.leaf(tensor(&[4, 3], vec![0.1; 12])?);
//! let b = t.leaf(tensor(&[4], vec![0.0; 4])?);
//! let h = t.map(t.linear(x, w, Some(b))?, Act::Relu)?;
//! let loss = t.cross_entropy(h, &[0, 3])?;
//! let grads = t.backward(loss)?;
//! assert_eq!(grads.get(w).unwrap().shape(), &[4, 3]);
//! assert!(grads.get(x).is_none()); // constants get no gradient
//! # Ok(())
//! # }
//! ```

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::ops::{Act, Conv2dParams, Pool2dParams};

/// Tape identities, so that a `Var` of one tape is refused by another.
static NEXT_TAPE: AtomicU64 = AtomicU64::new(1);

/// Handle of a value recorded on a [`Tape`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Var {
    tape: u64,
    index: usize,
}

/// The recorded operation that produced a node, with what its backward rule needs.
enum Op<B: Backend> {
    Leaf,
    Constant,
    Conv2d {
        x: Var,
        w: Var,
        b: Option<Var>,
        p: Conv2dParams,
    },
    Linear {
        x: Var,
        w: Var,
        b: Option<Var>,
    },
    Matmul {
        a: Var,
        b: Var,
        trans_a: bool,
        trans_b: bool,
    },
    MaxPool2d {
        x: Var,
        idx: B::Index,
    },
    ConvInputGrad {
        gy: Var,
        w: Var,
        p: Conv2dParams,
    },
    LinearInputGrad {
        gy: Var,
        w: Var,
    },
    MaxUnpool2d {
        y: Var,
        idx: B::Index,
    },
    AvgPool2d {
        x: Var,
        p: Pool2dParams,
    },
    Map {
        x: Var,
        act: Act,
    },
    Add(Var, Var),
    Sub(Var, Var),
    Mul(Var, Var),
    Scale(Var, f32),
    AddAlong {
        x: Var,
        b: Var,
        axis: usize,
    },
    SumAll(Var),
    Mean(Var),
    Dot(Var, Var),
    Reshape(Var),
    Permute {
        x: Var,
        axes: Vec<usize>,
    },
    Concat {
        xs: Vec<Var>,
        axis: usize,
    },
    Slice {
        x: Var,
        axis: usize,
        start: usize,
    },
    Softmax(Var),
    LogSoftmax(Var),
    CrossEntropy {
        logits: Var,
        dlogits: B::Tensor,
    },
    LayerNorm {
        x: Var,
        gamma: Var,
        beta: Var,
        mean: B::Tensor,
        rstd: B::Tensor,
    },
    BatchNormTrain {
        x: Var,
        gamma: Var,
        beta: Var,
        mean: B::Tensor,
        var: B::Tensor,
        eps: f32,
    },
    BatchNormEval {
        x: Var,
        gamma: Var,
        beta: Var,
        mean: B::Tensor,
        var: B::Tensor,
        eps: f32,
    },
}

struct Node<B: Backend> {
    value: B::Tensor,
    op: Op<B>,
    /// Whether any leaf (not constant) reaches this node, i.e. whether it needs a gradient.
    needs_grad: bool,
}

/// Output of [`Tape::batch_norm_train`]: the normalized output and the batch statistics (per
/// channel mean and biased variance) for the caller's running-statistics update.
#[derive(Debug, Clone)]
pub struct BatchNormOut<T> {
    /// Normalized, scaled and shifted output.
    pub y: Var,
    /// Batch mean per channel `[C]`.
    pub mean: T,
    /// Biased batch variance per channel `[C]`.
    pub var: T,
}

/// Gradients from [`Tape::backward`].
pub struct Grads<B: Backend> {
    tape: u64,
    grads: Vec<Option<B::Tensor>>,
}

impl<B: Backend> Grads<B> {
    /// d loss / d `v` for a leaf `v`, or `None` if the loss does not depend on `v` (or `v` is a
    /// constant or an intermediate result, whose gradients are not kept, or from another tape).
    pub fn get(&self, v: Var) -> Option<&B::Tensor> {
        if v.tape != self.tape {
            return None;
        }
        self.grads.get(v.index).and_then(|g| g.as_ref())
    }

    /// Take the gradient out (avoids a copy).
    pub fn take(&mut self, v: Var) -> Option<B::Tensor> {
        if v.tape != self.tape {
            return None;
        }
        self.grads.get_mut(v.index).and_then(|g| g.take())
    }
}

impl<B: Backend> std::fmt::Debug for Grads<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grads")
            .field("tape", &self.tape)
            .field(
                "present",
                &self.grads.iter().filter(|g| g.is_some()).count(),
            )
            .finish()
    }
}

/// A reverse-mode tape on backend `B`.
pub struct Tape<'b, B: Backend> {
    backend: &'b B,
    id: u64,
    nodes: RefCell<Vec<Node<B>>>,
}

impl<B: Backend> std::fmt::Debug for Tape<'_, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tape")
            .field("backend", &self.backend.name())
            .field("id", &self.id)
            .field("nodes", &self.nodes.borrow().len())
            .finish()
    }
}

impl<'b, B: Backend> Tape<'b, B> {
    /// An empty tape on `backend`.
    pub fn new(backend: &'b B) -> Self {
        Tape {
            backend,
            id: NEXT_TAPE.fetch_add(1, Ordering::Relaxed),
            nodes: RefCell::new(Vec::new()),
        }
    }

    /// The backend the tape runs on.
    pub fn backend(&self) -> &'b B {
        self.backend
    }

    /// Number of recorded nodes.
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&self, value: B::Tensor, op: Op<B>, needs_grad: bool) -> Var {
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(Node {
            value,
            op,
            needs_grad,
        });
        Var {
            tape: self.id,
            index: nodes.len() - 1,
        }
    }

    /// Error unless `v` belongs to this tape.
    fn check(&self, op: &'static str, v: Var) -> Result<()> {
        if v.tape != self.id || v.index >= self.nodes.borrow().len() {
            return Err(Error::param(
                op,
                format!(
                    "variable {v:?} does not belong to this tape (id {})",
                    self.id
                ),
            ));
        }
        Ok(())
    }

    /// Check all `vs`, then run `f` with the node list borrowed; returns whether any of them needs
    /// a gradient along with `f`'s result.
    fn with<T>(
        &self,
        op: &'static str,
        vs: &[Var],
        f: impl FnOnce(&[Node<B>]) -> Result<T>,
    ) -> Result<(T, bool)> {
        for &v in vs {
            self.check(op, v)?;
        }
        let nodes = self.nodes.borrow();
        let needs = vs.iter().any(|v| nodes[v.index].needs_grad);
        Ok((f(&nodes)?, needs))
    }

    /// A tensor that receives a gradient (an input or a parameter).
    pub fn leaf(&self, t: B::Tensor) -> Var {
        self.push(t, Op::Leaf, true)
    }

    /// A tensor that needs no gradient (data, labels as tensors, masks). Ops on constants only are
    /// recorded but skipped by `backward`.
    pub fn constant(&self, t: B::Tensor) -> Var {
        self.push(t, Op::Constant, false)
    }

    /// The value of `v` (a copy).
    pub fn value(&self, v: Var) -> Result<B::Tensor> {
        self.check("tape.value", v)?;
        Ok(self.nodes.borrow()[v.index].value.clone())
    }

    /// The shape of `v`.
    pub fn shape(&self, v: Var) -> Result<Vec<usize>> {
        self.check("tape.shape", v)?;
        Ok(self.backend.shape(&self.nodes.borrow()[v.index].value))
    }

    /// The value of a one-element `v` (a loss) as a number.
    pub fn scalar(&self, v: Var) -> Result<f32> {
        self.check("tape.scalar", v)?;
        let host = self.backend.download(&self.nodes.borrow()[v.index].value)?;
        if host.len() != 1 {
            return Err(Error::shape(
                "tape.scalar",
                format!(
                    "expected a one-element tensor, got shape {:?}",
                    host.shape()
                ),
            ));
        }
        Ok(host.iter().copied().next().expect("one element"))
    }

    fn scalar_tensor(&self, v: f32) -> Result<B::Tensor> {
        self.backend.full(&[], v)
    }

    // ---- ops -------------------------------------------------------------------------------

    /// conv2d(x, w) + b (see [`Backend::conv2d`]).
    pub fn conv2d(&self, x: Var, w: Var, b: Option<Var>, p: Conv2dParams) -> Result<Var> {
        let mut vs = vec![x, w];
        vs.extend(b);
        let (y, needs) = self.with("tape.conv2d", &vs, |n| {
            self.backend.conv2d(
                &n[x.index].value,
                &n[w.index].value,
                b.map(|b| &n[b.index].value),
                p,
            )
        })?;
        Ok(self.push(y, Op::Conv2d { x, w, b, p }, needs))
    }

    /// x · wᵀ + b (see [`Backend::linear`]).
    pub fn linear(&self, x: Var, w: Var, b: Option<Var>) -> Result<Var> {
        let mut vs = vec![x, w];
        vs.extend(b);
        let (y, needs) = self.with("tape.linear", &vs, |n| {
            self.backend.linear(
                &n[x.index].value,
                &n[w.index].value,
                b.map(|b| &n[b.index].value),
            )
        })?;
        Ok(self.push(y, Op::Linear { x, w, b }, needs))
    }

    /// Batched op(a) · op(b) (see [`Backend::matmul`]).
    pub fn matmul(&self, a: Var, b: Var, trans_a: bool, trans_b: bool) -> Result<Var> {
        let (y, needs) = self.with("tape.matmul", &[a, b], |n| {
            self.backend
                .matmul(&n[a.index].value, &n[b.index].value, trans_a, trans_b)
        })?;
        Ok(self.push(
            y,
            Op::Matmul {
                a,
                b,
                trans_a,
                trans_b,
            },
            needs,
        ))
    }

    /// Max pooling (the argmax is kept for the backward pass).
    pub fn max_pool2d(&self, x: Var, p: Pool2dParams) -> Result<Var> {
        let ((y, idx), needs) = self.with("tape.max_pool2d", &[x], |n| {
            self.backend.max_pool2d(&n[x.index].value, p)
        })?;
        Ok(self.push(y, Op::MaxPool2d { x, idx }, needs))
    }

    /// Max pooling that also returns the argmax switches, e.g. to route a later feedback through
    /// [`Tape::max_unpool2d`] at the same switches (they are constants for differentiation).
    pub fn max_pool2d_indexed(&self, x: Var, p: Pool2dParams) -> Result<(Var, B::Index)> {
        let ((y, idx), needs) = self.with("tape.max_pool2d_indexed", &[x], |n| {
            self.backend.max_pool2d(&n[x.index].value, p)
        })?;
        let v = self.push(
            y,
            Op::MaxPool2d {
                x,
                idx: idx.clone(),
            },
            needs,
        );
        Ok((v, idx))
    }

    /// Max unpooling of `y` at fixed switches `idx` (see [`Backend::max_unpool2d`]); differentiable
    /// in `y` (the adjoint is [`Backend::pool_gather`]).
    pub fn max_unpool2d(&self, y: Var, idx: &B::Index, input_hw: (usize, usize)) -> Result<Var> {
        let (u, needs) = self.with("tape.max_unpool2d", &[y], |n| {
            self.backend.max_unpool2d(&n[y.index].value, idx, input_hw)
        })?;
        Ok(self.push(
            u,
            Op::MaxUnpool2d {
                y,
                idx: idx.clone(),
            },
            needs,
        ))
    }

    /// The conv input adjoint as an op of its own, convᵀ_w(gy) (see
    /// [`Backend::conv2d_input_grad`]); differentiable in `gy` and `w` (the EP feedback term).
    pub fn conv2d_input_grad(
        &self,
        gy: Var,
        w: Var,
        input_hw: (usize, usize),
        p: Conv2dParams,
    ) -> Result<Var> {
        let (x, needs) = self.with("tape.conv2d_input_grad", &[gy, w], |n| {
            self.backend
                .conv2d_input_grad(&n[gy.index].value, &n[w.index].value, input_hw, p)
        })?;
        Ok(self.push(x, Op::ConvInputGrad { gy, w, p }, needs))
    }

    /// The linear input adjoint as an op of its own, gy · w (see [`Backend::linear_input_grad`]);
    /// differentiable in `gy` and `w`.
    pub fn linear_input_grad(&self, gy: Var, w: Var) -> Result<Var> {
        let (x, needs) = self.with("tape.linear_input_grad", &[gy, w], |n| {
            self.backend
                .linear_input_grad(&n[gy.index].value, &n[w.index].value)
        })?;
        Ok(self.push(x, Op::LinearInputGrad { gy, w }, needs))
    }

    /// Average pooling.
    pub fn avg_pool2d(&self, x: Var, p: Pool2dParams) -> Result<Var> {
        let (y, needs) = self.with("tape.avg_pool2d", &[x], |n| {
            self.backend.avg_pool2d(&n[x.index].value, p)
        })?;
        Ok(self.push(y, Op::AvgPool2d { x, p }, needs))
    }

    /// act(x) elementwise.
    pub fn map(&self, x: Var, act: Act) -> Result<Var> {
        let (y, needs) = self.with("tape.map", &[x], |n| {
            self.backend.map(&n[x.index].value, act)
        })?;
        Ok(self.push(y, Op::Map { x, act }, needs))
    }

    /// a + b (same shape).
    pub fn add(&self, a: Var, b: Var) -> Result<Var> {
        let (y, needs) = self.with("tape.add", &[a, b], |n| {
            self.backend.add(&n[a.index].value, &n[b.index].value)
        })?;
        Ok(self.push(y, Op::Add(a, b), needs))
    }

    /// a − b (same shape).
    pub fn sub(&self, a: Var, b: Var) -> Result<Var> {
        let (y, needs) = self.with("tape.sub", &[a, b], |n| {
            self.backend.sub(&n[a.index].value, &n[b.index].value)
        })?;
        Ok(self.push(y, Op::Sub(a, b), needs))
    }

    /// a ⊙ b (same shape).
    pub fn mul(&self, a: Var, b: Var) -> Result<Var> {
        let (y, needs) = self.with("tape.mul", &[a, b], |n| {
            self.backend.mul(&n[a.index].value, &n[b.index].value)
        })?;
        Ok(self.push(y, Op::Mul(a, b), needs))
    }

    /// alpha · x.
    pub fn scale(&self, x: Var, alpha: f32) -> Result<Var> {
        let (y, needs) = self.with("tape.scale", &[x], |n| {
            self.backend.scale(&n[x.index].value, alpha)
        })?;
        Ok(self.push(y, Op::Scale(x, alpha), needs))
    }

    /// x + b broadcast along `axis` (see [`Backend::add_along`]).
    pub fn add_along(&self, x: Var, b: Var, axis: usize) -> Result<Var> {
        let (y, needs) = self.with("tape.add_along", &[x, b], |n| {
            self.backend
                .add_along(&n[x.index].value, &n[b.index].value, axis)
        })?;
        Ok(self.push(y, Op::AddAlong { x, b, axis }, needs))
    }

    /// Σ x as a 0-d scalar.
    pub fn sum_all(&self, x: Var) -> Result<Var> {
        let (y, needs) = self.with("tape.sum_all", &[x], |n| {
            self.scalar_tensor(self.backend.sum_all(&n[x.index].value)?)
        })?;
        Ok(self.push(y, Op::SumAll(x), needs))
    }

    /// Mean of all elements as a 0-d scalar (error for an empty tensor).
    pub fn mean(&self, x: Var) -> Result<Var> {
        let (y, needs) = self.with("tape.mean", &[x], |n| {
            let t = &n[x.index].value;
            let count: usize = self.backend.shape(t).iter().product();
            if count == 0 {
                return Err(Error::shape(
                    "tape.mean",
                    format!("mean of an empty tensor {:?}", self.backend.shape(t)),
                ));
            }
            self.scalar_tensor(self.backend.sum_all(t)? / count as f32)
        })?;
        Ok(self.push(y, Op::Mean(x), needs))
    }

    /// Σ a ⊙ b as a 0-d scalar.
    pub fn dot(&self, a: Var, b: Var) -> Result<Var> {
        let (y, needs) = self.with("tape.dot", &[a, b], |n| {
            self.scalar_tensor(self.backend.dot(&n[a.index].value, &n[b.index].value)?)
        })?;
        Ok(self.push(y, Op::Dot(a, b), needs))
    }

    /// Same data, new shape.
    pub fn reshape(&self, x: Var, shape: &[usize]) -> Result<Var> {
        let (y, needs) = self.with("tape.reshape", &[x], |n| {
            self.backend.reshape(&n[x.index].value, shape)
        })?;
        Ok(self.push(y, Op::Reshape(x), needs))
    }

    /// Axes permutation.
    pub fn permute(&self, x: Var, axes: &[usize]) -> Result<Var> {
        let (y, needs) = self.with("tape.permute", &[x], |n| {
            self.backend.permute(&n[x.index].value, axes)
        })?;
        Ok(self.push(
            y,
            Op::Permute {
                x,
                axes: axes.to_vec(),
            },
            needs,
        ))
    }

    /// Concatenation along `axis` (see [`Backend::concat`]).
    pub fn concat(&self, xs: &[Var], axis: usize) -> Result<Var> {
        let (y, needs) = self.with("tape.concat", xs, |n| {
            let ts: Vec<&B::Tensor> = xs.iter().map(|v| &n[v.index].value).collect();
            self.backend.concat(&ts, axis)
        })?;
        Ok(self.push(
            y,
            Op::Concat {
                xs: xs.to_vec(),
                axis,
            },
            needs,
        ))
    }

    /// Entries `start..start + len` along `axis` (see [`Backend::slice`]).
    pub fn slice(&self, x: Var, axis: usize, start: usize, len: usize) -> Result<Var> {
        let (y, needs) = self.with("tape.slice", &[x], |n| {
            self.backend.slice(&n[x.index].value, axis, start, len)
        })?;
        Ok(self.push(y, Op::Slice { x, axis, start }, needs))
    }

    /// Softmax over the last axis.
    pub fn softmax(&self, x: Var) -> Result<Var> {
        let (y, needs) = self.with("tape.softmax", &[x], |n| {
            self.backend.softmax(&n[x.index].value)
        })?;
        Ok(self.push(y, Op::Softmax(x), needs))
    }

    /// Log-softmax over the last axis.
    pub fn log_softmax(&self, x: Var) -> Result<Var> {
        let (y, needs) = self.with("tape.log_softmax", &[x], |n| {
            self.backend.log_softmax(&n[x.index].value)
        })?;
        Ok(self.push(y, Op::LogSoftmax(x), needs))
    }

    /// Mean cross-entropy of logits `[N, K]` against `labels`, a 0-d scalar.
    pub fn cross_entropy(&self, logits: Var, labels: &[usize]) -> Result<Var> {
        let ((loss, dlogits), needs) = self.with("tape.cross_entropy", &[logits], |n| {
            self.backend.cross_entropy(&n[logits.index].value, labels)
        })?;
        let y = self.scalar_tensor(loss)?;
        Ok(self.push(y, Op::CrossEntropy { logits, dlogits }, needs))
    }

    /// Layer norm over the last axis with affine `gamma`, `beta` (each `[D]`).
    pub fn layer_norm(&self, x: Var, gamma: Var, beta: Var, eps: f32) -> Result<Var> {
        let ((y, mean, rstd), needs) = self.with("tape.layer_norm", &[x, gamma, beta], |n| {
            self.backend.layer_norm(
                &n[x.index].value,
                &n[gamma.index].value,
                &n[beta.index].value,
                eps,
            )
        })?;
        Ok(self.push(
            y,
            Op::LayerNorm {
                x,
                gamma,
                beta,
                mean,
                rstd,
            },
            needs,
        ))
    }

    /// Batch norm with batch statistics (training mode). The gradient flows through the batch
    /// statistics. Returns the output and the batch mean / biased variance; update running
    /// statistics from them (PyTorch uses the unbiased variance there: var · M / (M − 1)).
    pub fn batch_norm_train(
        &self,
        x: Var,
        gamma: Var,
        beta: Var,
        eps: f32,
    ) -> Result<BatchNormOut<B::Tensor>> {
        let ((y, mean, var), needs) =
            self.with("tape.batch_norm_train", &[x, gamma, beta], |n| {
                self.backend.batch_norm_train(
                    &n[x.index].value,
                    &n[gamma.index].value,
                    &n[beta.index].value,
                    eps,
                )
            })?;
        let y = self.push(
            y,
            Op::BatchNormTrain {
                x,
                gamma,
                beta,
                mean: mean.clone(),
                var: var.clone(),
                eps,
            },
            needs,
        );
        Ok(BatchNormOut { y, mean, var })
    }

    /// Batch norm with fixed (running) statistics (evaluation mode); gradients flow to x, gamma and
    /// beta, the statistics are constants.
    pub fn batch_norm_eval(
        &self,
        x: Var,
        gamma: Var,
        beta: Var,
        mean: &B::Tensor,
        var: &B::Tensor,
        eps: f32,
    ) -> Result<Var> {
        let (y, needs) = self.with("tape.batch_norm_eval", &[x, gamma, beta], |n| {
            self.backend.batch_norm_eval(
                &n[x.index].value,
                &n[gamma.index].value,
                &n[beta.index].value,
                mean,
                var,
                eps,
            )
        })?;
        Ok(self.push(
            y,
            Op::BatchNormEval {
                x,
                gamma,
                beta,
                mean: mean.clone(),
                var: var.clone(),
                eps,
            },
            needs,
        ))
    }

    // ---- backward --------------------------------------------------------------------------

    /// Gradients of the one-element `loss` with respect to every node it depends on.
    pub fn backward(&self, loss: Var) -> Result<Grads<B>> {
        self.check("tape.backward", loss)?;
        let shape = self.shape(loss)?;
        if shape.iter().product::<usize>() != 1 {
            return Err(Error::shape(
                "tape.backward",
                format!(
                    "the loss must have one element, got shape {shape:?} (use backward_with for a vector-Jacobian product)"
                ),
            ));
        }
        let seed = self.backend.full(&shape, 1.0)?;
        self.backward_with(loss, seed)
    }

    /// Vector-Jacobian product: gradients of ⟨seed, out⟩ with respect to every node `out` depends
    /// on (`seed` has the shape of `out`).
    pub fn backward_with(&self, out: Var, seed: B::Tensor) -> Result<Grads<B>> {
        self.check("tape.backward_with", out)?;
        let be = self.backend;
        let nodes = self.nodes.borrow();
        if be.shape(&seed) != be.shape(&nodes[out.index].value) {
            return Err(Error::shape(
                "tape.backward_with",
                format!(
                    "seed of shape {:?} does not match the output of shape {:?}",
                    be.shape(&seed),
                    be.shape(&nodes[out.index].value)
                ),
            ));
        }
        let mut grads: Vec<Option<B::Tensor>> = (0..=out.index).map(|_| None).collect();
        if nodes[out.index].needs_grad {
            grads[out.index] = Some(seed);
        }
        for i in (0..=out.index).rev() {
            let Some(g) = grads[i].take() else { continue };
            let contribs = self.node_backward(&nodes, i, &g)?;
            // Keep gradients of leaves only: an intermediate's gradient is dead once propagated,
            // and dropping it bounds the memory of a backward pass by the activations.
            if matches!(nodes[i].op, Op::Leaf) {
                grads[i] = Some(g);
            }
            for (v, c) in contribs {
                let slot = &mut grads[v.index];
                *slot = Some(match slot.take() {
                    None => c,
                    Some(prev) => be.add(&prev, &c)?,
                });
            }
        }
        Ok(Grads {
            tape: self.id,
            grads,
        })
    }

    /// The gradient contributions of node `i` (with output gradient `g`) to its inputs that need
    /// one.
    fn node_backward(
        &self,
        nodes: &[Node<B>],
        i: usize,
        g: &B::Tensor,
    ) -> Result<Vec<(Var, B::Tensor)>> {
        let be = self.backend;
        let val = |v: Var| &nodes[v.index].value;
        let need = |v: Var| nodes[v.index].needs_grad;
        let host_scalar = |t: &B::Tensor| -> Result<f32> {
            let h = be.download(t)?;
            Ok(h.iter().copied().next().unwrap_or(0.0))
        };
        let mut out: Vec<(Var, B::Tensor)> = Vec::new();
        match &nodes[i].op {
            Op::Leaf | Op::Constant => {}
            &Op::Conv2d { x, w, b, p } => {
                let xs = be.shape(val(x));
                let ws = be.shape(val(w));
                if need(x) {
                    out.push((x, be.conv2d_input_grad(g, val(w), (xs[2], xs[3]), p)?));
                }
                if need(w) {
                    out.push((w, be.conv2d_weight_grad(val(x), g, (ws[2], ws[3]), p)?));
                }
                if let Some(b) = b.filter(|&b| need(b)) {
                    out.push((b, be.sum_except(g, 1)?));
                }
            }
            &Op::Linear { x, w, b } => {
                if need(x) {
                    out.push((x, be.linear_input_grad(g, val(w))?));
                }
                if need(w) {
                    out.push((w, be.linear_weight_grad(val(x), g)?));
                }
                if let Some(b) = b.filter(|&b| need(b)) {
                    let last = be.shape(g).len() - 1;
                    out.push((b, be.sum_except(g, last)?));
                }
            }
            &Op::Matmul {
                a,
                b,
                trans_a,
                trans_b,
            } => {
                // C = op(A)·op(B); each adjoint is itself a (transposed) matmul.
                let (av, bv) = (val(a), val(b));
                if need(a) {
                    let ga = match (trans_a, trans_b) {
                        (false, false) => be.matmul(g, bv, false, true)?,
                        (false, true) => be.matmul(g, bv, false, false)?,
                        (true, false) => be.matmul(bv, g, false, true)?,
                        (true, true) => be.matmul(bv, g, true, true)?,
                    };
                    out.push((a, ga));
                }
                if need(b) {
                    let gb = match (trans_a, trans_b) {
                        (false, false) => be.matmul(av, g, true, false)?,
                        (false, true) => be.matmul(g, av, true, false)?,
                        (true, false) => be.matmul(av, g, false, false)?,
                        (true, true) => be.matmul(g, av, true, true)?,
                    };
                    out.push((b, gb));
                }
            }
            Op::MaxPool2d { x, idx } => {
                if need(*x) {
                    let xs = be.shape(val(*x));
                    out.push((*x, be.max_unpool2d(g, idx, (xs[2], xs[3]))?));
                }
            }
            &Op::ConvInputGrad { gy, w, p } => {
                // ⟨g, convᵀ_w(gy)⟩ = ⟨conv_w(g), gy⟩.
                if need(gy) {
                    out.push((gy, be.conv2d(g, val(w), None, p)?));
                }
                if need(w) {
                    let ws = be.shape(val(w));
                    out.push((w, be.conv2d_weight_grad(g, val(gy), (ws[2], ws[3]), p)?));
                }
            }
            &Op::LinearInputGrad { gy, w } => {
                // x = gy · w: d/dgy = g · wᵀ = linear(g, w); d/dw = gyᵀ · g.
                if need(gy) {
                    out.push((gy, be.linear(g, val(w), None)?));
                }
                if need(w) {
                    out.push((w, be.linear_weight_grad(g, val(gy))?));
                }
            }
            Op::MaxUnpool2d { y, idx } => {
                if need(*y) {
                    out.push((*y, be.pool_gather(g, idx)?));
                }
            }
            &Op::AvgPool2d { x, p } => {
                if need(x) {
                    let xs = be.shape(val(x));
                    out.push((x, be.avg_pool2d_adjoint(g, (xs[2], xs[3]), p)?));
                }
            }
            &Op::Map { x, act } => {
                if need(x) {
                    out.push((x, be.map_grad(val(x), g, act)?));
                }
            }
            &Op::Add(a, b) => {
                if need(a) {
                    out.push((a, g.clone()));
                }
                if need(b) {
                    out.push((b, g.clone()));
                }
            }
            &Op::Sub(a, b) => {
                if need(a) {
                    out.push((a, g.clone()));
                }
                if need(b) {
                    out.push((b, be.scale(g, -1.0)?));
                }
            }
            &Op::Mul(a, b) => {
                if need(a) {
                    out.push((a, be.mul(g, val(b))?));
                }
                if need(b) {
                    out.push((b, be.mul(g, val(a))?));
                }
            }
            &Op::Scale(x, alpha) => {
                if need(x) {
                    out.push((x, be.scale(g, alpha)?));
                }
            }
            &Op::AddAlong { x, b, axis } => {
                if need(x) {
                    out.push((x, g.clone()));
                }
                if need(b) {
                    out.push((b, be.sum_except(g, axis)?));
                }
            }
            &Op::SumAll(x) => {
                if need(x) {
                    out.push((x, be.full(&be.shape(val(x)), host_scalar(g)?)?));
                }
            }
            &Op::Mean(x) => {
                if need(x) {
                    let shape = be.shape(val(x));
                    let n = shape.iter().product::<usize>() as f32;
                    out.push((x, be.full(&shape, host_scalar(g)? / n)?));
                }
            }
            &Op::Dot(a, b) => {
                let s = host_scalar(g)?;
                if need(a) {
                    out.push((a, be.scale(val(b), s)?));
                }
                if need(b) {
                    out.push((b, be.scale(val(a), s)?));
                }
            }
            &Op::Reshape(x) => {
                if need(x) {
                    out.push((x, be.reshape(g, &be.shape(val(x)))?));
                }
            }
            Op::Permute { x, axes } => {
                if need(*x) {
                    let mut inv = vec![0usize; axes.len()];
                    for (k, &a) in axes.iter().enumerate() {
                        inv[a] = k;
                    }
                    out.push((*x, be.permute(g, &inv)?));
                }
            }
            Op::Concat { xs, axis } => {
                let mut start = 0;
                for &x in xs {
                    let len = be.shape(val(x))[*axis];
                    if need(x) {
                        out.push((x, be.slice(g, *axis, start, len)?));
                    }
                    start += len;
                }
            }
            &Op::Slice { x, axis, start } => {
                if need(x) {
                    let xs = be.shape(val(x));
                    let gs = be.shape(g);
                    let len = gs[axis];
                    let mut parts = Vec::new();
                    let mut before = xs.clone();
                    before[axis] = start;
                    let mut after = xs.clone();
                    after[axis] = xs[axis] - start - len;
                    let z0 = be.zeros(&before)?;
                    let z1 = be.zeros(&after)?;
                    if start > 0 {
                        parts.push(&z0);
                    }
                    parts.push(g);
                    if after[axis] > 0 {
                        parts.push(&z1);
                    }
                    out.push((x, be.concat(&parts, axis)?));
                }
            }
            &Op::Softmax(x) => {
                if need(x) {
                    // s ⊙ (g − Σ g⊙s) = log_softmax_grad(log_softmax(x), s ⊙ g).
                    let ls = be.log_softmax(val(x))?;
                    let sg = be.mul(&nodes[i].value, g)?;
                    out.push((x, be.log_softmax_grad(&ls, &sg)?));
                }
            }
            &Op::LogSoftmax(x) => {
                if need(x) {
                    out.push((x, be.log_softmax_grad(&nodes[i].value, g)?));
                }
            }
            Op::CrossEntropy { logits, dlogits } => {
                if need(*logits) {
                    out.push((*logits, be.scale(dlogits, host_scalar(g)?)?));
                }
            }
            Op::LayerNorm {
                x,
                gamma,
                beta,
                mean,
                rstd,
            } => {
                let (gx, gg, gb) = be.layer_norm_grad(val(*x), val(*gamma), mean, rstd, g)?;
                for (v, t) in [(*x, gx), (*gamma, gg), (*beta, gb)] {
                    if need(v) {
                        out.push((v, t));
                    }
                }
            }
            Op::BatchNormTrain {
                x,
                gamma,
                beta,
                mean,
                var,
                eps,
            } => {
                let (gx, gg, gb) = be.batch_norm_grad(val(*x), val(*gamma), mean, var, *eps, g)?;
                for (v, t) in [(*x, gx), (*gamma, gg), (*beta, gb)] {
                    if need(v) {
                        out.push((v, t));
                    }
                }
            }
            Op::BatchNormEval {
                x,
                gamma,
                beta,
                mean,
                var,
                eps,
            } => {
                // y = (x − m)·rstd·γ + β with constant statistics:
                // gx = g·γ·rstd = batch_norm_eval(g; γ, β=0, m=0, var),
                // gγ = Σ g ⊙ x̂ with x̂ = batch_norm_eval(x; 1, 0, m, var), gβ = Σ g.
                let c = be.shape(val(*gamma));
                let zeros = be.zeros(&c)?;
                if need(*x) {
                    let gx = be.batch_norm_eval(g, val(*gamma), &zeros, &zeros, var, *eps)?;
                    out.push((*x, gx));
                }
                if need(*gamma) {
                    let ones = be.full(&c, 1.0)?;
                    let xhat = be.batch_norm_eval(val(*x), &ones, &zeros, mean, var, *eps)?;
                    out.push((*gamma, be.sum_except(&be.mul(g, &xhat)?, 1)?));
                }
                if need(*beta) {
                    out.push((*beta, be.sum_except(g, 1)?));
                }
            }
        }
        Ok(out)
    }
}
