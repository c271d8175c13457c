//! Softmax, log-softmax, its adjoint and cross-entropy over the last axis.
//! PLACEHOLDER: filled in by the softmax work.

use std::sync::Arc;

use sim::{Error, Result};

use crate::context::Ctx;
use crate::tensor::GpuTensor;

fn todo_op(op: &'static str) -> Error {
    Error::Other(format!("{op}: not yet on the GPU backend"))
}

pub(crate) fn softmax(_ctx: &Arc<Ctx>, _x: &GpuTensor) -> Result<GpuTensor> {
    Err(todo_op("softmax"))
}
pub(crate) fn log_softmax(_ctx: &Arc<Ctx>, _x: &GpuTensor) -> Result<GpuTensor> {
    Err(todo_op("log_softmax"))
}
pub(crate) fn log_softmax_grad(
    _ctx: &Arc<Ctx>,
    _y: &GpuTensor,
    _gy: &GpuTensor,
) -> Result<GpuTensor> {
    Err(todo_op("log_softmax_grad"))
}
/// Mean cross-entropy (device scalar, shape `[]`) and the gradient w.r.t. the logits.
pub(crate) fn cross_entropy(
    _ctx: &Arc<Ctx>,
    _logits: &GpuTensor,
    _labels: &[usize],
) -> Result<(GpuTensor, GpuTensor)> {
    Err(todo_op("cross_entropy"))
}
