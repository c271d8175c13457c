//! `Gpu`: the `sim::Backend` implementation on wgpu. Each trait method checks its operands and
//! records kernels through `ops/`; nothing waits for the device except read-backs.

use std::sync::Arc;

use sim::analog::{Prepared, ReadKind, ReadPlan, Tally};
use sim::backend::OptimOut;
use sim::{
    Act, Backend, Conv2dParams, Error, OptimStep, Pool2dParams, Pooling, Result, Stream, Tensor,
};

use crate::context::Ctx;
use crate::ops::conv::{self, ConvAlgo};
use crate::ops::{elementwise as ew, gemm, layout, norm, optim, pool, reduce, rng, softmax, xbar};
use crate::tensor::{GpuIndex, GpuTensor};
use crate::tile::GemmTile;

/// The GPU backend: one wgpu device. Cheap to clone (shares the device).
#[derive(Clone)]
pub struct Gpu {
    ctx: Arc<Ctx>,
    conv: ConvAlgo,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gpu({})", self.ctx.info.name)
    }
}

impl Gpu {
    /// Open GPU number `ordinal` (`--device gpu:N`; discrete GPUs are numbered first), or the
    /// first adapter when `None`. The error names what was tried and how to install a driver.
    pub fn new(ordinal: Option<usize>) -> Result<Gpu> {
        Gpu::new_with_gemm_tile(ordinal, GemmTile::default())
    }

    /// [`Gpu::new`], every GEMM (linear layers, matmuls, the convolutions' implicit GEMMs and
    /// Winograd products) in output blocks of `tile`: a property of the device's compiled
    /// kernels, fixed when it is opened.
    pub fn new_with_gemm_tile(ordinal: Option<usize>, tile: GemmTile) -> Result<Gpu> {
        Ok(Gpu {
            ctx: Ctx::open(ordinal, tile)?,
            conv: ConvAlgo::default(),
        })
    }

    /// The same device with the convolution algorithm `algo` (the default is
    /// [`ConvAlgo::Auto`]); tensors are shared with `self`.
    pub fn with_conv_algo(&self, algo: ConvAlgo) -> Gpu {
        Gpu {
            ctx: self.ctx.clone(),
            conv: algo,
        }
    }

    /// Kernel launches recorded on this device so far (all `Gpu` handles of it together): the
    /// difference over a piece of work counts its dispatches.
    pub fn launches(&self) -> u64 {
        self.ctx.launches()
    }

    /// Bind groups made on this device so far: a launch makes one only when no earlier launch
    /// bound the same pipeline to the same buffers, or when its parameter words overflow their
    /// slot (the difference over a piece of work counts its cache misses).
    pub fn bind_groups_made(&self) -> u64 {
        self.ctx.bind_groups_made()
    }

    /// The device context, for the ops' unit tests.
    #[cfg(test)]
    pub(crate) fn ctx(&self) -> &Arc<Ctx> {
        &self.ctx
    }

    /// The adapter's name, e.g. "NVIDIA H100 80GB HBM3" or "llvmpipe (LLVM 15.0.6, 256 bits)".
    pub fn adapter_name(&self) -> &str {
        &self.ctx.info.name
    }

    /// True on a software (CPU) Vulkan driver such as lavapipe: correct, but not for timings.
    pub fn is_software(&self) -> bool {
        self.ctx.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Read a device scalar (shape `[]`) back to the host.
    pub fn scalar(&self, t: &GpuTensor) -> Result<f32> {
        if t.len() != 1 {
            return Err(Error::shape(
                "scalar",
                format!("expected one element, got shape {:?}", t.shape),
            ));
        }
        let bytes = self.ctx.read(t.buffer(), 4)?;
        Ok(f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// Σ x as a device scalar (shape `[]`), for callers that feed it back without reading it.
    pub fn sum_all_device(&self, x: &GpuTensor) -> Result<GpuTensor> {
        reduce::sum_all(&self.ctx, x)
    }

    /// Σ a ⊙ b as a device scalar (shape `[]`).
    pub fn dot_device(&self, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
        reduce::dot(&self.ctx, a, b)
    }

    /// Upload host u32 indices (pooling switches) to the device.
    pub fn upload_index(&self, shape: &[usize], idx: &[u32]) -> Result<GpuIndex> {
        let n: usize = shape.iter().product();
        if n != idx.len() {
            return Err(Error::shape(
                "upload_index",
                format!("shape {shape:?} holds {n} elements, data has {}", idx.len()),
            ));
        }
        Ok(GpuIndex {
            buf: Arc::new(self.ctx.alloc_init(bytemuck::cast_slice(idx))?),
            shape: shape.to_vec(),
            bound: idx.iter().max().map_or(0, |&m| u64::from(m) + 1),
            pool: None,
        })
    }

    /// Download pooling indices.
    pub fn download_index(&self, idx: &GpuIndex) -> Result<Vec<u32>> {
        let bytes = self.ctx.read(idx.buffer(), 4 * idx.len() as u64)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
}

impl Backend for Gpu {
    type Tensor = GpuTensor;
    type Index = GpuIndex;

    fn name(&self) -> String {
        format!("wgpu:{}", self.ctx.info.name)
    }

    fn upload(&self, t: &Tensor) -> Result<GpuTensor> {
        let data: Vec<f32> = match t.as_slice() {
            Some(s) => s.to_vec(),
            None => t.iter().copied().collect(),
        };
        Ok(GpuTensor {
            buf: Arc::new(self.ctx.alloc_init(bytemuck::cast_slice(&data))?),
            shape: t.shape().to_vec(),
        })
    }

    fn download(&self, t: &GpuTensor) -> Result<Tensor> {
        let bytes = self.ctx.read(t.buffer(), 4 * t.len() as u64)?;
        sim::tensor(&t.shape, bytemuck::pod_collect_to_vec(&bytes))
    }

    fn sync(&self) -> Result<()> {
        self.ctx.sync()
    }

    fn check_every(&self) -> usize {
        // A divergence check reads back one scalar per layer; every 16 steps keeps the queue full.
        16
    }

    fn shape(&self, t: &GpuTensor) -> Vec<usize> {
        t.shape.clone()
    }

    fn zeros(&self, shape: &[usize]) -> Result<GpuTensor> {
        ew::full(&self.ctx, shape, 0.0)
    }

    fn full(&self, shape: &[usize], value: f32) -> Result<GpuTensor> {
        ew::full(&self.ctx, shape, value)
    }

    fn reshape(&self, t: &GpuTensor, shape: &[usize]) -> Result<GpuTensor> {
        layout::reshape(t, shape)
    }

    fn permute(&self, t: &GpuTensor, axes: &[usize]) -> Result<GpuTensor> {
        layout::permute(&self.ctx, t, axes)
    }

    fn concat(&self, xs: &[&GpuTensor], axis: usize) -> Result<GpuTensor> {
        layout::concat(&self.ctx, xs, axis)
    }

    fn slice(&self, x: &GpuTensor, axis: usize, start: usize, len: usize) -> Result<GpuTensor> {
        layout::slice(&self.ctx, x, axis, start, len)
    }

    fn conv2d(
        &self,
        x: &GpuTensor,
        w: &GpuTensor,
        b: Option<&GpuTensor>,
        p: Conv2dParams,
    ) -> Result<GpuTensor> {
        conv::conv2d(&self.ctx, self.conv, x, w, b, p)
    }

    fn conv2d_input_grad(
        &self,
        gy: &GpuTensor,
        w: &GpuTensor,
        input_hw: (usize, usize),
        p: Conv2dParams,
    ) -> Result<GpuTensor> {
        conv::conv2d_input_grad(&self.ctx, self.conv, gy, w, input_hw, p)
    }

    fn conv2d_weight_grad(
        &self,
        x: &GpuTensor,
        gy: &GpuTensor,
        kernel_hw: (usize, usize),
        p: Conv2dParams,
    ) -> Result<GpuTensor> {
        conv::conv2d_weight_grad(&self.ctx, x, gy, kernel_hw, p)
    }

    fn linear(&self, x: &GpuTensor, w: &GpuTensor, b: Option<&GpuTensor>) -> Result<GpuTensor> {
        gemm::linear(&self.ctx, x, w, b)
    }

    fn linear_input_grad(&self, gy: &GpuTensor, w: &GpuTensor) -> Result<GpuTensor> {
        gemm::linear_input_grad(&self.ctx, gy, w)
    }

    fn linear_weight_grad(&self, x: &GpuTensor, gy: &GpuTensor) -> Result<GpuTensor> {
        gemm::linear_weight_grad(&self.ctx, x, gy)
    }

    fn matmul(
        &self,
        a: &GpuTensor,
        b: &GpuTensor,
        trans_a: bool,
        trans_b: bool,
    ) -> Result<GpuTensor> {
        gemm::matmul(&self.ctx, a, b, trans_a, trans_b)
    }

    fn max_pool2d(&self, x: &GpuTensor, p: Pool2dParams) -> Result<(GpuTensor, GpuIndex)> {
        pool::max_pool2d(&self.ctx, x, p)
    }

    fn max_unpool2d(
        &self,
        y: &GpuTensor,
        idx: &GpuIndex,
        input_hw: (usize, usize),
    ) -> Result<GpuTensor> {
        pool::max_unpool2d(&self.ctx, y, idx, input_hw)
    }

    fn pool_gather(&self, x: &GpuTensor, idx: &GpuIndex) -> Result<GpuTensor> {
        pool::pool_gather(&self.ctx, x, idx)
    }

    fn avg_pool2d(&self, x: &GpuTensor, p: Pool2dParams) -> Result<GpuTensor> {
        pool::avg_pool2d(&self.ctx, x, p)
    }

    fn avg_pool2d_adjoint(
        &self,
        gy: &GpuTensor,
        input_hw: (usize, usize),
        p: Pool2dParams,
    ) -> Result<GpuTensor> {
        pool::avg_pool2d_adjoint(&self.ctx, gy, input_hw, p)
    }

    fn map(&self, x: &GpuTensor, act: Act) -> Result<GpuTensor> {
        ew::map(&self.ctx, x, act)
    }

    fn add_map(&self, a: &GpuTensor, b: &GpuTensor, act: Act) -> Result<GpuTensor> {
        ew::add_map(&self.ctx, a, b, act)
    }

    fn map_grad(&self, x: &GpuTensor, gy: &GpuTensor, act: Act) -> Result<GpuTensor> {
        ew::map_grad(&self.ctx, x, gy, act)
    }

    fn add(&self, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
        ew::lincomb(&self.ctx, "add", 1.0, a, 1.0, b)
    }

    fn sub(&self, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
        ew::lincomb(&self.ctx, "sub", 1.0, a, -1.0, b)
    }

    fn mul(&self, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
        ew::mul(&self.ctx, a, b)
    }

    fn scale(&self, x: &GpuTensor, alpha: f32) -> Result<GpuTensor> {
        ew::scale(&self.ctx, x, alpha)
    }

    fn axpy(&self, alpha: f32, x: &GpuTensor, y: &GpuTensor) -> Result<GpuTensor> {
        ew::lincomb(&self.ctx, "axpy", alpha, x, 1.0, y)
    }

    fn add_along(&self, x: &GpuTensor, b: &GpuTensor, axis: usize) -> Result<GpuTensor> {
        ew::add_along(&self.ctx, x, b, axis)
    }

    fn sum_all(&self, x: &GpuTensor) -> Result<f32> {
        self.scalar(&reduce::sum_all(&self.ctx, x)?)
    }

    fn dot(&self, a: &GpuTensor, b: &GpuTensor) -> Result<f32> {
        self.scalar(&reduce::dot(&self.ctx, a, b)?)
    }

    fn sum_except(&self, x: &GpuTensor, axis: usize) -> Result<GpuTensor> {
        reduce::sum_except(&self.ctx, x, axis)
    }

    fn softmax(&self, x: &GpuTensor) -> Result<GpuTensor> {
        softmax::softmax(&self.ctx, x)
    }

    fn log_softmax(&self, x: &GpuTensor) -> Result<GpuTensor> {
        softmax::log_softmax(&self.ctx, x)
    }

    fn log_softmax_grad(&self, y: &GpuTensor, gy: &GpuTensor) -> Result<GpuTensor> {
        softmax::log_softmax_grad(&self.ctx, y, gy)
    }

    fn cross_entropy(&self, logits: &GpuTensor, labels: &[usize]) -> Result<(f32, GpuTensor)> {
        let (loss, grad) = softmax::cross_entropy(&self.ctx, logits, labels)?;
        Ok((self.scalar(&loss)?, grad))
    }

    fn layer_norm(
        &self,
        x: &GpuTensor,
        gamma: &GpuTensor,
        beta: &GpuTensor,
        eps: f32,
    ) -> Result<(GpuTensor, GpuTensor, GpuTensor)> {
        norm::layer_norm(&self.ctx, x, gamma, beta, eps)
    }

    fn layer_norm_grad(
        &self,
        x: &GpuTensor,
        gamma: &GpuTensor,
        mean: &GpuTensor,
        rstd: &GpuTensor,
        gy: &GpuTensor,
    ) -> Result<(GpuTensor, GpuTensor, GpuTensor)> {
        norm::layer_norm_grad(&self.ctx, x, gamma, mean, rstd, gy)
    }

    fn batch_norm_train(
        &self,
        x: &GpuTensor,
        gamma: &GpuTensor,
        beta: &GpuTensor,
        eps: f32,
    ) -> Result<(GpuTensor, GpuTensor, GpuTensor)> {
        norm::batch_norm_train(&self.ctx, x, gamma, beta, eps)
    }

    fn batch_norm_eval(
        &self,
        x: &GpuTensor,
        gamma: &GpuTensor,
        beta: &GpuTensor,
        mean: &GpuTensor,
        var: &GpuTensor,
        eps: f32,
    ) -> Result<GpuTensor> {
        norm::batch_norm_eval(&self.ctx, x, gamma, beta, mean, var, eps)
    }

    fn batch_norm_grad(
        &self,
        x: &GpuTensor,
        gamma: &GpuTensor,
        mean: &GpuTensor,
        var: &GpuTensor,
        eps: f32,
        gy: &GpuTensor,
    ) -> Result<(GpuTensor, GpuTensor, GpuTensor)> {
        norm::batch_norm_grad(&self.ctx, x, gamma, mean, var, eps, gy)
    }

    fn conv2d_pooled(
        &self,
        x: &GpuTensor,
        w: &GpuTensor,
        b: Option<&GpuTensor>,
        p: Conv2dParams,
        pool: Pooling,
    ) -> Result<(GpuTensor, Option<GpuIndex>)> {
        conv::conv2d_pooled(&self.ctx, self.conv, x, w, b, p, pool)
    }

    fn conv2d_pooled_input_grad(
        &self,
        v: &GpuTensor,
        idx: Option<&GpuIndex>,
        w: &GpuTensor,
        conv_hw: (usize, usize),
        input_hw: (usize, usize),
        p: Conv2dParams,
        pool: Pooling,
    ) -> Result<GpuTensor> {
        // Non-overlapping windows: the unpooling happens inside the GEMM's loader.
        if let Some(g) = conv::conv2d_pooled_input_grad(
            &self.ctx, self.conv, v, idx, w, conv_hw, input_hw, p, pool,
        )? {
            return Ok(g);
        }
        let u = match (pool, idx) {
            (Pooling::None, _) => None,
            (Pooling::Max(_), Some(idx)) => Some(pool::max_unpool2d(&self.ctx, v, idx, conv_hw)?),
            (Pooling::Max(_), None) => {
                return Err(Error::param(
                    "conv2d_pooled_input_grad",
                    "max pooling needs its switches",
                ));
            }
            (Pooling::Avg(pp), _) => Some(pool::avg_pool2d_adjoint(&self.ctx, v, conv_hw, pp)?),
        };
        conv::conv2d_input_grad(
            &self.ctx,
            self.conv,
            u.as_ref().unwrap_or(v),
            w,
            input_hw,
            p,
        )
    }

    fn optim_update(
        &self,
        p: &GpuTensor,
        g: &GpuTensor,
        buf1: Option<&GpuTensor>,
        buf2: Option<&GpuTensor>,
        step: OptimStep,
    ) -> Result<OptimOut<GpuTensor>> {
        optim::update(&self.ctx, p, g, buf1, buf2, step)
    }

    fn randn(&self, shape: &[usize], stream: &Stream, offset: u64) -> Result<GpuTensor> {
        rng::randn(&self.ctx, shape, stream, offset)
    }

    fn rand(&self, shape: &[usize], stream: &Stream, offset: u64) -> Result<GpuTensor> {
        rng::rand(&self.ctx, shape, stream, offset)
    }

    // Crossbar reads: the device kernels (`ops::xbar`); the reads they cannot hold run the CPU
    // backend's host kernels on host copies (and are not prepared: read plainly at every step).
    fn xbar_read(
        &self,
        plan: &ReadPlan,
        x: &GpuTensor,
        kind: ReadKind,
        wmax: f32,
        bias: Option<&GpuTensor>,
        s: &Stream,
        t: u64,
    ) -> Result<(GpuTensor, Tally)> {
        if let Some(r) = xbar::read(&self.ctx, plan, x, kind, wmax, bias, s, t)? {
            return Ok(r);
        }
        let b = bias.map(|b| self.download(b)).transpose()?;
        let (y, tally) =
            sim::Cpu.xbar_read(plan, &self.download(x)?, kind, wmax, b.as_ref(), s, t)?;
        Ok((self.upload(&y)?, tally))
    }

    fn xbar_prepare(
        &self,
        plan: &ReadPlan,
        x: &GpuTensor,
        kind: ReadKind,
        s: &Stream,
    ) -> Result<Option<Prepared>> {
        xbar::prepare(&self.ctx, plan, x, kind, s)
    }

    fn xbar_read_prepared(
        &self,
        plan: &ReadPlan,
        prepared: &Prepared,
        wmax: f32,
        bias: Option<&GpuTensor>,
        s: &Stream,
        t: u64,
    ) -> Result<(GpuTensor, Tally)> {
        xbar::read_prepared(&self.ctx, plan, prepared, wmax, bias, s, t)
    }
}
