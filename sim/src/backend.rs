//! The `Backend` trait: exactly the closed set of primitive ops of ARCHITECTURE.md, each forward
//! op with its adjoint(s). Models, the tape and the EP dynamics are written against this trait only,
//! so the CPU backend (`crate::cpu::Cpu`) and the GPU backend (`host-gpu`) are interchangeable.
//!
//! Conventions: f32, NCHW activations, OIHW conv weights, `[out, in]` linear weights (PyTorch).
//! Every method checks its operands and returns [`Error`](crate::Error) naming the op and the shapes
//! instead of panicking.

use crate::Tensor;
use crate::analog::{Prepared, ReadKind, ReadPlan, Tally};
use crate::error::{Error, Result};
use crate::ops::{Act, Conv2dParams, OptimStep, Pool2dParams, Pooling};
use crate::rng::Stream;

/// What [`Backend::optim_update`] returns: the new parameter and optimizer buffers.
pub type OptimOut<T> = (T, Option<T>, Option<T>);

/// The closed op set.
pub trait Backend: Send + Sync {
    /// A tensor living on this backend.
    type Tensor: Clone + Send + Sync + std::fmt::Debug;
    /// Argmax indices of max-pooling (flat index of the winner inside its input plane `h * W + w`).
    type Index: Clone + Send + Sync + std::fmt::Debug;

    /// Short name for logs ("cpu", "wgpu:<adapter>").
    fn name(&self) -> String;

    // ---- data movement -------------------------------------------------------------------
    /// Copy a host tensor onto the backend.
    fn upload(&self, t: &Tensor) -> Result<Self::Tensor>;
    /// Copy a backend tensor to the host.
    fn download(&self, t: &Self::Tensor) -> Result<Tensor>;
    /// Move a host tensor onto the backend: [`upload`](Backend::upload), except that a backend
    /// keeping its tensors on the host (CPU) adopts the buffer instead of copying it.
    fn upload_owned(&self, t: Tensor) -> Result<Self::Tensor> {
        self.upload(&t)
    }
    /// The host data of a backend tensor for reading: [`download`](Backend::download), except
    /// that a backend keeping its tensors on the host (CPU) lends it without a copy.
    fn host<'a>(&self, t: &'a Self::Tensor) -> Result<std::borrow::Cow<'a, Tensor>> {
        Ok(std::borrow::Cow::Owned(self.download(t)?))
    }
    /// Wait until every op recorded on the backend has finished (for timings, as candle's
    /// `synchronize`); a no-op where ops run synchronously (the CPU).
    fn sync(&self) -> Result<()> {
        Ok(())
    }
    /// Steps a long loop (the EP phases) may run between checks that read a value back from
    /// the backend (divergence checks): 1 where reading back costs nothing (the CPU), more where
    /// each read-back stalls a device queue. Loops replay from the last checked state to name the
    /// exact failing step, so this changes no result and no message.
    fn check_every(&self) -> usize {
        1
    }
    /// Shape of a tensor.
    fn shape(&self, t: &Self::Tensor) -> Vec<usize>;
    /// A tensor of zeros.
    fn zeros(&self, shape: &[usize]) -> Result<Self::Tensor>;
    /// A tensor filled with `value`.
    fn full(&self, shape: &[usize], value: f32) -> Result<Self::Tensor>;
    /// Same data, new shape (element count must match).
    fn reshape(&self, t: &Self::Tensor, shape: &[usize]) -> Result<Self::Tensor>;
    /// Axes permutation (materialized in standard layout).
    fn permute(&self, t: &Self::Tensor, axes: &[usize]) -> Result<Self::Tensor>;
    /// Concatenation along `axis` (every other axis equal), as `torch.cat`. Its adjoint is
    /// [`slice`](Backend::slice) of the output gradient.
    fn concat(&self, xs: &[&Self::Tensor], axis: usize) -> Result<Self::Tensor>;
    /// The entries `start..start + len` along `axis`, as `Tensor.narrow`. Its adjoint is the
    /// gradient padded with zeros ([`concat`](Backend::concat) with zero blocks).
    fn slice(
        &self,
        x: &Self::Tensor,
        axis: usize,
        start: usize,
        len: usize,
    ) -> Result<Self::Tensor>;
    /// The entries `rows` along axis 0, in that order (repeats allowed), as `Tensor.index_select(0,
    /// rows)`: `[rows.len(), ...]`. Used to drop finished samples from a batch and to restore an
    /// order. The default slices each run of consecutive indices and concatenates the runs.
    fn take_rows(&self, x: &Self::Tensor, rows: &[usize]) -> Result<Self::Tensor> {
        let shape = self.shape(x);
        let Some(&n) = shape.first() else {
            return Err(Error::param(
                "take_rows",
                "needs a tensor with a batch axis",
            ));
        };
        if let Some(&bad) = rows.iter().find(|&&r| r >= n) {
            return Err(Error::param(
                "take_rows",
                format!("row {bad} out of range for {n} rows (shape {shape:?})"),
            ));
        }
        if rows.is_empty() {
            let mut s = shape;
            s[0] = 0;
            return self.zeros(&s);
        }
        let mut runs: Vec<Self::Tensor> = Vec::new();
        let mut start = 0;
        for i in 1..=rows.len() {
            if i == rows.len() || rows[i] != rows[i - 1] + 1 {
                runs.push(self.slice(x, 0, rows[start], i - start)?);
                start = i;
            }
        }
        if runs.len() == 1 {
            return Ok(runs.pop().expect("one run"));
        }
        self.concat(&runs.iter().collect::<Vec<_>>(), 0)
    }

    // ---- convolution ---------------------------------------------------------------------
    /// y[N,O,Ho,Wo] = conv2d(x[N,C,H,W], w[O,C,kh,kw]) + b[O].
    fn conv2d(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        b: Option<&Self::Tensor>,
        p: Conv2dParams,
    ) -> Result<Self::Tensor>;
    /// Input adjoint (transposed convolution): gx[N,C,H,W] = convᵀ(gy[N,O,Ho,Wo]) with weights
    /// w[O,C,kh,kw]; `input_hw` is (H, W) of the forward input (needed when the stride drops rows).
    fn conv2d_input_grad(
        &self,
        gy: &Self::Tensor,
        w: &Self::Tensor,
        input_hw: (usize, usize),
        p: Conv2dParams,
    ) -> Result<Self::Tensor>;
    /// Weight adjoint: gw[O,C,kh,kw] = Σ_n,positions gy ⊗ patches(x).
    fn conv2d_weight_grad(
        &self,
        x: &Self::Tensor,
        gy: &Self::Tensor,
        kernel_hw: (usize, usize),
        p: Conv2dParams,
    ) -> Result<Self::Tensor>;

    // ---- linear / matmul -----------------------------------------------------------------
    /// y[..., out] = x[..., in] · wᵀ + b (w is `[out, in]`).
    fn linear(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        b: Option<&Self::Tensor>,
    ) -> Result<Self::Tensor>;
    /// gx[..., in] = gy[..., out] · w.
    fn linear_input_grad(&self, gy: &Self::Tensor, w: &Self::Tensor) -> Result<Self::Tensor>;
    /// gw[out, in] = Σ gyᵀ · x over all leading axes.
    fn linear_weight_grad(&self, x: &Self::Tensor, gy: &Self::Tensor) -> Result<Self::Tensor>;
    /// Batched matrix product over equal leading axes: op(a)[..., M, K] · op(b)[..., K, N], where op
    /// transposes the last two axes when the flag is set. Its adjoints are matmuls themselves.
    fn matmul(
        &self,
        a: &Self::Tensor,
        b: &Self::Tensor,
        trans_a: bool,
        trans_b: bool,
    ) -> Result<Self::Tensor>;

    // ---- pooling -------------------------------------------------------------------------
    /// Max pooling with the argmax of each window (first maximum in row-major window order wins).
    fn max_pool2d(&self, x: &Self::Tensor, p: Pool2dParams) -> Result<(Self::Tensor, Self::Index)>;
    /// Max-unpooling: scatter y[N,C,Ho,Wo] to the argmax positions of an [N,C,H,W] zero tensor
    /// (summing if windows overlap). This is also the adjoint of `max_pool2d`.
    fn max_unpool2d(
        &self,
        y: &Self::Tensor,
        idx: &Self::Index,
        input_hw: (usize, usize),
    ) -> Result<Self::Tensor>;
    /// Gather x[N,C,H,W] at argmax indices: y[n,c,i,j] = x[n,c,idx[n,c,i,j]] (y has the shape of
    /// `idx`). The adjoint of `max_unpool2d`, needed to differentiate through the EP feedback term
    /// convᵀ(Pᵀ(s)) at fixed pooling switches.
    fn pool_gather(&self, x: &Self::Tensor, idx: &Self::Index) -> Result<Self::Tensor>;
    /// Average pooling.
    fn avg_pool2d(&self, x: &Self::Tensor, p: Pool2dParams) -> Result<Self::Tensor>;
    /// Adjoint of average pooling (spreads each gradient evenly over its window).
    fn avg_pool2d_adjoint(
        &self,
        gy: &Self::Tensor,
        input_hw: (usize, usize),
        p: Pool2dParams,
    ) -> Result<Self::Tensor>;

    // ---- element maps --------------------------------------------------------------------
    /// act(x) elementwise.
    fn map(&self, x: &Self::Tensor, act: Act) -> Result<Self::Tensor>;
    /// gy ⊙ act'(x).
    fn map_grad(&self, x: &Self::Tensor, gy: &Self::Tensor, act: Act) -> Result<Self::Tensor>;
    /// act(a + b) elementwise (same shape): an EP layer's neurons from its two reads. The
    /// default composes [`add`](Backend::add) and [`map`](Backend::map); a backend may fuse them
    /// (one pass over memory), computing the same f32 sum and map.
    fn add_map(&self, a: &Self::Tensor, b: &Self::Tensor, act: Act) -> Result<Self::Tensor> {
        self.map(&self.add(a, b)?, act)
    }
    /// a + b (same shape).
    fn add(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// a − b (same shape).
    fn sub(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// a ⊙ b (same shape).
    fn mul(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// alpha · x.
    fn scale(&self, x: &Self::Tensor, alpha: f32) -> Result<Self::Tensor>;
    /// alpha · x + y.
    fn axpy(&self, alpha: f32, x: &Self::Tensor, y: &Self::Tensor) -> Result<Self::Tensor>;
    /// x + b broadcast along `axis` (b has length `x.shape[axis]`): the bias add of conv (axis 1)
    /// and linear (last axis).
    fn add_along(&self, x: &Self::Tensor, b: &Self::Tensor, axis: usize) -> Result<Self::Tensor>;

    // ---- reductions ----------------------------------------------------------------------
    /// Sum of all elements (deterministic order, independent of thread count).
    fn sum_all(&self, x: &Self::Tensor) -> Result<f32>;
    /// Σ a ⊙ b over all elements (the bilinear terms of the EP energy).
    fn dot(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<f32>;
    /// Per row along axis 0 of `a` and `b` (one shape, rank ≥ 1): the largest |a − b| over the
    /// row's entries (NaN when a difference is NaN), read back as `N` host values: the
    /// per-sample convergence test of a settle. The default subtracts, max-pools the difference
    /// and its negation over each row and downloads both.
    fn row_max_abs_diff(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Vec<f32>> {
        let (sa, sb) = (self.shape(a), self.shape(b));
        if sa != sb || sa.is_empty() {
            return Err(Error::shape(
                "row_max_abs_diff",
                format!("operands {sa:?} and {sb:?}: one shape with a batch axis"),
            ));
        }
        let n = sa[0];
        let rest: usize = sa[1..].iter().product();
        if n == 0 || rest == 0 {
            return Ok(vec![0.0; n]);
        }
        let d = self.reshape(&self.sub(a, b)?, &[n, 1, 1, rest])?;
        let p = Pool2dParams {
            kernel: (1, rest),
            stride: (1, rest),
        };
        let hi = self.download(&self.max_pool2d(&d, p)?.0)?;
        let lo = self.download(&self.max_pool2d(&self.scale(&d, -1.0)?, p)?.0)?;
        Ok(hi
            .iter()
            .zip(lo.iter())
            .map(|(&x, &y)| {
                if x.is_nan() || y.is_nan() {
                    f32::NAN
                } else {
                    x.max(y)
                }
            })
            .collect())
    }
    /// Sum over every axis except `axis`, giving a vector of length `x.shape[axis]` (the adjoint of
    /// `add_along`: bias gradients).
    fn sum_except(&self, x: &Self::Tensor, axis: usize) -> Result<Self::Tensor>;

    // ---- softmax family (over the last axis) ---------------------------------------------
    /// Softmax over the last axis.
    fn softmax(&self, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// Log-softmax over the last axis.
    fn log_softmax(&self, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// Adjoint of log-softmax given its output `y`: gx = gy − softmax(x) · Σ gy.
    fn log_softmax_grad(&self, y: &Self::Tensor, gy: &Self::Tensor) -> Result<Self::Tensor>;
    /// Mean cross-entropy of logits[N, K] against integer labels, and its gradient w.r.t. the logits.
    fn cross_entropy(&self, logits: &Self::Tensor, labels: &[usize])
    -> Result<(f32, Self::Tensor)>;

    // ---- normalization -------------------------------------------------------------------
    /// Layer norm over the last axis with affine gamma, beta; returns (y, mean, rstd) where mean and
    /// rstd have the leading shape.
    fn layer_norm(
        &self,
        x: &Self::Tensor,
        gamma: &Self::Tensor,
        beta: &Self::Tensor,
        eps: f32,
    ) -> Result<(Self::Tensor, Self::Tensor, Self::Tensor)>;
    /// Layer norm adjoint: (gx, ggamma, gbeta).
    fn layer_norm_grad(
        &self,
        x: &Self::Tensor,
        gamma: &Self::Tensor,
        mean: &Self::Tensor,
        rstd: &Self::Tensor,
        gy: &Self::Tensor,
    ) -> Result<(Self::Tensor, Self::Tensor, Self::Tensor)>;
    /// Batch norm of NCHW (or NC) input with batch statistics per channel; returns (y, mean, var)
    /// with the biased batch variance (the caller updates running statistics with the unbiased one).
    fn batch_norm_train(
        &self,
        x: &Self::Tensor,
        gamma: &Self::Tensor,
        beta: &Self::Tensor,
        eps: f32,
    ) -> Result<(Self::Tensor, Self::Tensor, Self::Tensor)>;
    /// Batch norm with given (running) statistics.
    fn batch_norm_eval(
        &self,
        x: &Self::Tensor,
        gamma: &Self::Tensor,
        beta: &Self::Tensor,
        mean: &Self::Tensor,
        var: &Self::Tensor,
        eps: f32,
    ) -> Result<Self::Tensor>;
    /// Adjoint of `batch_norm_train`: (gx, ggamma, gbeta).
    fn batch_norm_grad(
        &self,
        x: &Self::Tensor,
        gamma: &Self::Tensor,
        mean: &Self::Tensor,
        var: &Self::Tensor,
        eps: f32,
        gy: &Self::Tensor,
    ) -> Result<(Self::Tensor, Self::Tensor, Self::Tensor)>;

    // ---- fused reads of a conv synapse (the EP step's two reads; defaults compose the ops
    // above, a backend overrides them to save passes over memory) ---------------------------
    /// Forward read: `pool(conv2d(x, w) + b)`, with the max-pooling switches.
    fn conv2d_pooled(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        b: Option<&Self::Tensor>,
        p: Conv2dParams,
        pool: Pooling,
    ) -> Result<(Self::Tensor, Option<Self::Index>)> {
        let z = self.conv2d(x, w, b, p)?;
        match pool {
            Pooling::None => Ok((z, None)),
            Pooling::Max(pp) => {
                let (y, idx) = self.max_pool2d(&z, pp)?;
                Ok((y, Some(idx)))
            }
            Pooling::Avg(pp) => Ok((self.avg_pool2d(&z, pp)?, None)),
        }
    }

    /// Transposed read, the adjoint of [`conv2d_pooled`](Backend::conv2d_pooled) in its input:
    /// `conv2d_input_grad(poolᵀ(v))`, where poolᵀ is `max_unpool2d` at `idx`, the average-pool
    /// adjoint or nothing. `conv_hw` is the convolution's output size (before pooling), `input_hw`
    /// its input's.
    #[allow(clippy::too_many_arguments)]
    fn conv2d_pooled_input_grad(
        &self,
        v: &Self::Tensor,
        idx: Option<&Self::Index>,
        w: &Self::Tensor,
        conv_hw: (usize, usize),
        input_hw: (usize, usize),
        p: Conv2dParams,
        pool: Pooling,
    ) -> Result<Self::Tensor> {
        let u = match (pool, idx) {
            (Pooling::None, _) => None,
            (Pooling::Max(_), Some(idx)) => Some(self.max_unpool2d(v, idx, conv_hw)?),
            (Pooling::Max(_), None) => {
                return Err(crate::Error::param(
                    "conv2d_pooled_input_grad",
                    "max pooling needs its switches",
                ));
            }
            (Pooling::Avg(pp), _) => Some(self.avg_pool2d_adjoint(v, conv_hw, pp)?),
        };
        self.conv2d_input_grad(u.as_ref().unwrap_or(v), w, input_hw, p)
    }

    // ---- optimizer -----------------------------------------------------------------------
    /// One optimizer update of parameter `p` with gradient `g` and the optimizer's buffers for it
    /// (`None` before the first step; see [`OptimStep`] for the rules). Returns the new parameter
    /// and buffers, so training keeps parameters and optimizer state on the backend.
    fn optim_update(
        &self,
        p: &Self::Tensor,
        g: &Self::Tensor,
        buf1: Option<&Self::Tensor>,
        buf2: Option<&Self::Tensor>,
        step: OptimStep,
    ) -> Result<OptimOut<Self::Tensor>>;

    // ---- random --------------------------------------------------------------------------
    /// Standard normal draws: element i is `stream.normal(offset + i)`, so CPU and GPU draw the same.
    fn randn(&self, shape: &[usize], stream: &Stream, offset: u64) -> Result<Self::Tensor>;
    /// Uniform (0, 1) draws: element i is `stream.uniform(offset + i)`.
    fn rand(&self, shape: &[usize], stream: &Stream, offset: u64) -> Result<Self::Tensor>;

    // ---- analog (crossbar) reads ---------------------------------------------------------
    /// One crossbar read of `plan` at step `t` of read-noise stream `s` (see
    /// [`analog`](crate::analog) and `crate::cpu::xbar` for the semantics): every input vector
    /// of `x` as `kind` unrolls it is read on its own — noise management, DAC, the blocks' partial
    /// sums with per-read noise, ADC with its noise, iterative bound management — and the outputs
    /// come back times `wmax`, plus `bias` (`[n_out]`; forward reads only). Returns the outputs
    /// (shape by [`ReadKind`]) and what the read counted. Every draw is indexed by (vector,
    /// element) in named sub-streams of `s`, so the result depends on neither the batch split
    /// nor the thread count. The CPU runs the host kernels (`crate::cpu`); a backend without its own
    /// kernels may run them on host copies through [`Cpu`](crate::Cpu) (the default is an error).
    #[allow(clippy::too_many_arguments)]
    fn xbar_read(
        &self,
        plan: &ReadPlan,
        x: &Self::Tensor,
        kind: ReadKind,
        wmax: f32,
        bias: Option<&Self::Tensor>,
        s: &Stream,
        t: u64,
    ) -> Result<(Self::Tensor, Tally)> {
        let _ = (plan, x, kind, wmax, bias, s, t);
        Err(no_xbar(self, "xbar_read"))
    }
    /// The deterministic half of [`xbar_read`](Backend::xbar_read)s of the fixed input `x` (the
    /// first array's read of the input at every step of a query), or `None` where there is none
    /// (a noisy DAC, a transposed read) or the backend does not keep one.
    fn xbar_prepare(
        &self,
        plan: &ReadPlan,
        x: &Self::Tensor,
        kind: ReadKind,
        s: &Stream,
    ) -> Result<Option<Prepared>> {
        let _ = (plan, x, kind, s);
        Ok(None)
    }
    /// [`xbar_read`](Backend::xbar_read) of the input `prepared` was made from, at step `t` of
    /// the same stream `s`: the same result.
    fn xbar_read_prepared(
        &self,
        plan: &ReadPlan,
        prepared: &Prepared,
        wmax: f32,
        bias: Option<&Self::Tensor>,
        s: &Stream,
        t: u64,
    ) -> Result<(Self::Tensor, Tally)> {
        let _ = (plan, prepared, wmax, bias, s, t);
        Err(no_xbar(self, "xbar_read_prepared"))
    }
}

/// The error of a crossbar read on a backend without crossbar reads.
fn no_xbar<B: Backend + ?Sized>(be: &B, op: &'static str) -> Error {
    Error::param(
        op,
        format!(
            "backend {} has no crossbar reads (analog substrates run on cpu or gpu)",
            be.name()
        ),
    )
}
