//! Counter-based random draws (Philox4x32-10 as `sim::rng::Stream`). PLACEHOLDER.

use std::sync::Arc;

use sim::{Error, Result, Stream};

use crate::context::Ctx;
use crate::tensor::GpuTensor;

fn todo_op(op: &'static str) -> Error {
    Error::Other(format!("{op}: not yet on the GPU backend"))
}

pub(crate) fn randn(
    _ctx: &Arc<Ctx>,
    _shape: &[usize],
    _stream: &Stream,
    _offset: u64,
) -> Result<GpuTensor> {
    Err(todo_op("randn"))
}
pub(crate) fn rand(
    _ctx: &Arc<Ctx>,
    _shape: &[usize],
    _stream: &Stream,
    _offset: u64,
) -> Result<GpuTensor> {
    Err(todo_op("rand"))
}
