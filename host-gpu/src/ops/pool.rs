//! Max pooling with argmax indices, unpooling, gather at the indices, average pooling and its
//! adjoint. PLACEHOLDER: filled in by the pooling work.

use std::sync::Arc;

use sim::{Error, Pool2dParams, Result};

use crate::context::Ctx;
use crate::tensor::{GpuIndex, GpuTensor};

fn todo_op(op: &'static str) -> Error {
    Error::Other(format!("{op}: not yet on the GPU backend"))
}

pub(crate) fn max_pool2d(
    _ctx: &Arc<Ctx>,
    _x: &GpuTensor,
    _p: Pool2dParams,
) -> Result<(GpuTensor, GpuIndex)> {
    Err(todo_op("max_pool2d"))
}
pub(crate) fn max_unpool2d(
    _ctx: &Arc<Ctx>,
    _y: &GpuTensor,
    _idx: &GpuIndex,
    _input_hw: (usize, usize),
) -> Result<GpuTensor> {
    Err(todo_op("max_unpool2d"))
}
pub(crate) fn pool_gather(_ctx: &Arc<Ctx>, _x: &GpuTensor, _idx: &GpuIndex) -> Result<GpuTensor> {
    Err(todo_op("pool_gather"))
}
pub(crate) fn avg_pool2d(_ctx: &Arc<Ctx>, _x: &GpuTensor, _p: Pool2dParams) -> Result<GpuTensor> {
    Err(todo_op("avg_pool2d"))
}
pub(crate) fn avg_pool2d_adjoint(
    _ctx: &Arc<Ctx>,
    _gy: &GpuTensor,
    _input_hw: (usize, usize),
    _p: Pool2dParams,
) -> Result<GpuTensor> {
    Err(todo_op("avg_pool2d_adjoint"))
}
