//! Convolutions (forward, input and weight adjoints), linear layers and batched matmul.
//! PLACEHOLDER: filled in by the gemm work.

use std::sync::Arc;

use sim::{Conv2dParams, Error, Result};

use crate::context::Ctx;
use crate::tensor::GpuTensor;

fn todo_op(op: &'static str) -> Error {
    Error::Other(format!("{op}: not yet on the GPU backend"))
}

pub(crate) fn conv2d(
    _ctx: &Arc<Ctx>,
    _x: &GpuTensor,
    _w: &GpuTensor,
    _b: Option<&GpuTensor>,
    _p: Conv2dParams,
) -> Result<GpuTensor> {
    Err(todo_op("conv2d"))
}
pub(crate) fn conv2d_input_grad(
    _ctx: &Arc<Ctx>,
    _gy: &GpuTensor,
    _w: &GpuTensor,
    _input_hw: (usize, usize),
    _p: Conv2dParams,
) -> Result<GpuTensor> {
    Err(todo_op("conv2d_input_grad"))
}
pub(crate) fn conv2d_weight_grad(
    _ctx: &Arc<Ctx>,
    _x: &GpuTensor,
    _gy: &GpuTensor,
    _kernel_hw: (usize, usize),
    _p: Conv2dParams,
) -> Result<GpuTensor> {
    Err(todo_op("conv2d_weight_grad"))
}
pub(crate) fn linear(
    _ctx: &Arc<Ctx>,
    _x: &GpuTensor,
    _w: &GpuTensor,
    _b: Option<&GpuTensor>,
) -> Result<GpuTensor> {
    Err(todo_op("linear"))
}
pub(crate) fn linear_input_grad(
    _ctx: &Arc<Ctx>,
    _gy: &GpuTensor,
    _w: &GpuTensor,
) -> Result<GpuTensor> {
    Err(todo_op("linear_input_grad"))
}
pub(crate) fn linear_weight_grad(
    _ctx: &Arc<Ctx>,
    _x: &GpuTensor,
    _gy: &GpuTensor,
) -> Result<GpuTensor> {
    Err(todo_op("linear_weight_grad"))
}
pub(crate) fn matmul(
    _ctx: &Arc<Ctx>,
    _a: &GpuTensor,
    _b: &GpuTensor,
    _ta: bool,
    _tb: bool,
) -> Result<GpuTensor> {
    Err(todo_op("matmul"))
}
