//! The CPU backend: ndarray storage, rayon parallelism over batch/channels, im2col + `gemm` for
//! convolutions and products. Results are bit-for-bit identical for every rayon thread count: work is
//! split into chunks whose boundaries do not depend on the number of threads, and every reduction
//! runs in a fixed order.
//!
//! The ops are free functions in the submodules (usable directly on `Tensor`s); [`Cpu`] implements
//! [`Backend`] by delegating to them.

pub mod analog;
mod conv;
mod elementwise;
mod gather;
mod gemm;
mod layout;
mod linear;
mod norm;
pub mod optim;
mod pool;
mod scratch;
mod softmax;
mod winograd;
mod xbar;

pub use conv::{
    ConvAlgo, WINOGRAD_MIN_CHANNELS, conv2d, conv2d_input_grad, conv2d_input_grad_with,
    conv2d_weight_grad, conv2d_with, winograd_pays,
};
pub use elementwise::{
    add, add_along, add_map, axpy, dot, map, map_grad, mul, scale, sub, sum_all, sum_except,
};
pub use gather::pool_gather;
pub use gemm::{Gemm, Par, sgemm, sgemm_par};
pub use layout::{concat, slice};
pub use linear::{linear, linear_input_grad, linear_weight_grad, matmul};
pub use norm::{batch_norm_eval, batch_norm_grad, batch_norm_train, layer_norm, layer_norm_grad};
pub use pool::{avg_pool2d, avg_pool2d_adjoint, max_pool2d, max_unpool2d};
pub use softmax::{cross_entropy, log_softmax, log_softmax_grad, softmax};

use crate::Tensor;
use crate::analog::{Prepared, ReadKind, ReadPlan, Tally};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::ops::{Act, Conv2dParams, OptimStep, Pool2dParams};
use crate::rng::Stream;

/// Argmax indices of max-pooling on the CPU: same shape as the pooled output, each the flat index
/// `h * W + w` of the winner inside its input plane.
pub type IndexTensor = ndarray::ArrayD<u32>;

/// The CPU backend. Uses the current rayon pool (set its size with `rayon::ThreadPoolBuilder` or the
/// CLI's `--threads`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu;

/// Draws per parallel chunk of `randn`/`rand` (fixed, so results do not depend on thread count).
const RNG_CHUNK: usize = 1 << 14;

fn fill_random(shape: &[usize], normal: bool, stream: &Stream, offset: u64) -> Tensor {
    use rayon::prelude::*;
    let n: usize = shape.iter().product();
    let mut v = vec![0.0f32; n];
    v.par_chunks_mut(RNG_CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| {
            let o = offset + (c * RNG_CHUNK) as u64;
            if normal {
                stream.fill_normal(o, chunk)
            } else {
                stream.fill_uniform(o, chunk)
            }
        });
    Tensor::from_shape_vec(ndarray::IxDyn(shape), v).expect("sizes agree")
}

impl Backend for Cpu {
    type Tensor = Tensor;
    type Index = IndexTensor;

    fn name(&self) -> String {
        format!("cpu({} threads)", rayon::current_num_threads())
    }
    fn upload(&self, t: &Tensor) -> Result<Tensor> {
        Ok(t.as_standard_layout().into_owned())
    }
    fn download(&self, t: &Tensor) -> Result<Tensor> {
        Ok(t.clone())
    }
    fn upload_owned(&self, t: Tensor) -> Result<Tensor> {
        Ok(if t.is_standard_layout() {
            t
        } else {
            t.as_standard_layout().into_owned()
        })
    }
    fn host<'a>(&self, t: &'a Tensor) -> Result<std::borrow::Cow<'a, Tensor>> {
        Ok(if t.is_standard_layout() {
            std::borrow::Cow::Borrowed(t)
        } else {
            std::borrow::Cow::Owned(t.as_standard_layout().into_owned())
        })
    }
    fn shape(&self, t: &Tensor) -> Vec<usize> {
        t.shape().to_vec()
    }
    fn zeros(&self, shape: &[usize]) -> Result<Tensor> {
        Ok(Tensor::zeros(ndarray::IxDyn(shape)))
    }
    fn full(&self, shape: &[usize], value: f32) -> Result<Tensor> {
        Ok(Tensor::from_elem(ndarray::IxDyn(shape), value))
    }
    fn reshape(&self, t: &Tensor, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != t.len() {
            return Err(Error::shape(
                "reshape",
                format!(
                    "cannot reshape {:?} ({} elements) to {shape:?} ({n})",
                    t.shape(),
                    t.len()
                ),
            ));
        }
        let flat: Vec<f32> = t.as_standard_layout().iter().copied().collect();
        Ok(Tensor::from_shape_vec(ndarray::IxDyn(shape), flat).expect("sizes checked"))
    }
    fn permute(&self, t: &Tensor, axes: &[usize]) -> Result<Tensor> {
        let mut seen = vec![false; t.ndim()];
        if axes.len() != t.ndim()
            || axes
                .iter()
                .any(|&a| a >= t.ndim() || std::mem::replace(&mut seen[a], true))
        {
            return Err(Error::shape(
                "permute",
                format!(
                    "axes {axes:?} are not a permutation of the {} axes of {:?}",
                    t.ndim(),
                    t.shape()
                ),
            ));
        }
        Ok(t.view()
            .permuted_axes(ndarray::IxDyn(axes))
            .as_standard_layout()
            .into_owned())
    }

    fn concat(&self, xs: &[&Tensor], axis: usize) -> Result<Tensor> {
        concat(xs, axis)
    }
    fn slice(&self, x: &Tensor, axis: usize, start: usize, len: usize) -> Result<Tensor> {
        slice(x, axis, start, len)
    }

    fn conv2d(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        p: Conv2dParams,
    ) -> Result<Tensor> {
        conv2d(x, w, b, p)
    }
    fn conv2d_input_grad(
        &self,
        gy: &Tensor,
        w: &Tensor,
        input_hw: (usize, usize),
        p: Conv2dParams,
    ) -> Result<Tensor> {
        conv2d_input_grad(gy, w, input_hw, p)
    }
    fn conv2d_weight_grad(
        &self,
        x: &Tensor,
        gy: &Tensor,
        kernel_hw: (usize, usize),
        p: Conv2dParams,
    ) -> Result<Tensor> {
        conv2d_weight_grad(x, gy, kernel_hw, p)
    }

    fn linear(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        linear(x, w, b)
    }
    fn linear_input_grad(&self, gy: &Tensor, w: &Tensor) -> Result<Tensor> {
        linear_input_grad(gy, w)
    }
    fn linear_weight_grad(&self, x: &Tensor, gy: &Tensor) -> Result<Tensor> {
        linear_weight_grad(x, gy)
    }
    fn matmul(&self, a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
        matmul(a, b, trans_a, trans_b)
    }

    fn max_pool2d(&self, x: &Tensor, p: Pool2dParams) -> Result<(Tensor, IndexTensor)> {
        max_pool2d(x, p)
    }
    fn max_unpool2d(
        &self,
        y: &Tensor,
        idx: &IndexTensor,
        input_hw: (usize, usize),
    ) -> Result<Tensor> {
        max_unpool2d(y, idx, input_hw)
    }
    fn pool_gather(&self, x: &Tensor, idx: &IndexTensor) -> Result<Tensor> {
        pool_gather(x, idx)
    }
    fn avg_pool2d(&self, x: &Tensor, p: Pool2dParams) -> Result<Tensor> {
        avg_pool2d(x, p)
    }
    fn avg_pool2d_adjoint(
        &self,
        gy: &Tensor,
        input_hw: (usize, usize),
        p: Pool2dParams,
    ) -> Result<Tensor> {
        avg_pool2d_adjoint(gy, input_hw, p)
    }

    fn map(&self, x: &Tensor, act: Act) -> Result<Tensor> {
        map(x, act)
    }
    fn add_map(&self, a: &Tensor, b: &Tensor, act: Act) -> Result<Tensor> {
        add_map(a, b, act)
    }
    fn map_grad(&self, x: &Tensor, gy: &Tensor, act: Act) -> Result<Tensor> {
        map_grad(x, gy, act)
    }
    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        add(a, b)
    }
    fn sub(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        sub(a, b)
    }
    fn mul(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        mul(a, b)
    }
    fn scale(&self, x: &Tensor, alpha: f32) -> Result<Tensor> {
        scale(x, alpha)
    }
    fn axpy(&self, alpha: f32, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        axpy(alpha, x, y)
    }
    fn add_along(&self, x: &Tensor, b: &Tensor, axis: usize) -> Result<Tensor> {
        add_along(x, b, axis)
    }

    fn sum_all(&self, x: &Tensor) -> Result<f32> {
        sum_all(x)
    }
    fn dot(&self, a: &Tensor, b: &Tensor) -> Result<f32> {
        dot(a, b)
    }
    fn sum_except(&self, x: &Tensor, axis: usize) -> Result<Tensor> {
        sum_except(x, axis)
    }
    fn row_max_abs_diff(&self, a: &Tensor, b: &Tensor) -> Result<Vec<f32>> {
        elementwise::row_max_abs_diff(a, b)
    }

    fn softmax(&self, x: &Tensor) -> Result<Tensor> {
        softmax(x)
    }
    fn log_softmax(&self, x: &Tensor) -> Result<Tensor> {
        log_softmax(x)
    }
    fn log_softmax_grad(&self, y: &Tensor, gy: &Tensor) -> Result<Tensor> {
        log_softmax_grad(y, gy)
    }
    fn cross_entropy(&self, logits: &Tensor, labels: &[usize]) -> Result<(f32, Tensor)> {
        cross_entropy(logits, labels)
    }

    fn layer_norm(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        layer_norm(x, gamma, beta, eps)
    }
    fn layer_norm_grad(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        mean: &Tensor,
        rstd: &Tensor,
        gy: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        layer_norm_grad(x, gamma, mean, rstd, gy)
    }
    fn batch_norm_train(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        batch_norm_train(x, gamma, beta, eps)
    }
    fn batch_norm_eval(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        mean: &Tensor,
        var: &Tensor,
        eps: f32,
    ) -> Result<Tensor> {
        batch_norm_eval(x, gamma, beta, mean, var, eps)
    }
    fn batch_norm_grad(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        mean: &Tensor,
        var: &Tensor,
        eps: f32,
        gy: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        batch_norm_grad(x, gamma, mean, var, eps, gy)
    }

    fn optim_update(
        &self,
        p: &Tensor,
        g: &Tensor,
        buf1: Option<&Tensor>,
        buf2: Option<&Tensor>,
        step: OptimStep,
    ) -> Result<crate::backend::OptimOut<Tensor>> {
        let mut p = p.as_standard_layout().into_owned();
        let (mut b1, mut b2) = (buf1.cloned(), buf2.cloned());
        optim::update(&mut p, g, &mut b1, &mut b2, step)?;
        Ok((p, b1, b2))
    }
    fn xbar_read(
        &self,
        plan: &ReadPlan,
        x: &Tensor,
        kind: ReadKind,
        wmax: f32,
        bias: Option<&Tensor>,
        s: &Stream,
        t: u64,
    ) -> Result<(Tensor, Tally)> {
        xbar::read(plan, x, kind, wmax, bias, s, t)
    }
    fn xbar_prepare(
        &self,
        plan: &ReadPlan,
        x: &Tensor,
        kind: ReadKind,
        s: &Stream,
    ) -> Result<Option<Prepared>> {
        xbar::prepare(plan, x, kind, s)
    }
    fn xbar_read_prepared(
        &self,
        plan: &ReadPlan,
        prepared: &Prepared,
        wmax: f32,
        bias: Option<&Tensor>,
        s: &Stream,
        t: u64,
    ) -> Result<(Tensor, Tally)> {
        xbar::read_prepared(plan, prepared, wmax, bias, s, t)
    }
    fn randn(&self, shape: &[usize], stream: &Stream, offset: u64) -> Result<Tensor> {
        Ok(fill_random(shape, true, stream, offset))
    }
    fn rand(&self, shape: &[usize], stream: &Stream, offset: u64) -> Result<Tensor> {
        Ok(fill_random(shape, false, stream, offset))
    }
}
