//! Layer norm and batch norm with their adjoints. PLACEHOLDER: filled in by the norm work.

use std::sync::Arc;

use sim::{Error, Result};

use crate::context::Ctx;
use crate::tensor::GpuTensor;

fn todo_op(op: &'static str) -> Error {
    Error::Other(format!("{op}: not yet on the GPU backend"))
}

type T3 = (GpuTensor, GpuTensor, GpuTensor);

pub(crate) fn layer_norm(
    _ctx: &Arc<Ctx>,
    _x: &GpuTensor,
    _gamma: &GpuTensor,
    _beta: &GpuTensor,
    _eps: f32,
) -> Result<T3> {
    Err(todo_op("layer_norm"))
}
pub(crate) fn layer_norm_grad(
    _ctx: &Arc<Ctx>,
    _x: &GpuTensor,
    _gamma: &GpuTensor,
    _mean: &GpuTensor,
    _rstd: &GpuTensor,
    _gy: &GpuTensor,
) -> Result<T3> {
    Err(todo_op("layer_norm_grad"))
}
pub(crate) fn batch_norm_train(
    _ctx: &Arc<Ctx>,
    _x: &GpuTensor,
    _gamma: &GpuTensor,
    _beta: &GpuTensor,
    _eps: f32,
) -> Result<T3> {
    Err(todo_op("batch_norm_train"))
}
pub(crate) fn batch_norm_eval(
    _ctx: &Arc<Ctx>,
    _x: &GpuTensor,
    _gamma: &GpuTensor,
    _beta: &GpuTensor,
    _mean: &GpuTensor,
    _var: &GpuTensor,
    _eps: f32,
) -> Result<GpuTensor> {
    Err(todo_op("batch_norm_eval"))
}
pub(crate) fn batch_norm_grad(
    _ctx: &Arc<Ctx>,
    _x: &GpuTensor,
    _gamma: &GpuTensor,
    _mean: &GpuTensor,
    _var: &GpuTensor,
    _eps: f32,
    _gy: &GpuTensor,
) -> Result<T3> {
    Err(todo_op("batch_norm_grad"))
}
