//! Deterministic reductions: sum of all elements, dot product (both as device scalars), and the
//! sum over every axis but one. PLACEHOLDER: filled in by the reductions work.

use std::sync::Arc;

use sim::{Error, Result};

use crate::context::Ctx;
use crate::tensor::GpuTensor;

fn todo_op(op: &'static str) -> Error {
    Error::Other(format!("{op}: not yet on the GPU backend"))
}

/// Σ x as a device scalar (shape `[]`).
pub(crate) fn sum_all(_ctx: &Arc<Ctx>, _x: &GpuTensor) -> Result<GpuTensor> {
    Err(todo_op("sum_all"))
}
/// Σ a ⊙ b as a device scalar (shape `[]`).
pub(crate) fn dot(_ctx: &Arc<Ctx>, _a: &GpuTensor, _b: &GpuTensor) -> Result<GpuTensor> {
    Err(todo_op("dot"))
}
pub(crate) fn sum_except(_ctx: &Arc<Ctx>, _x: &GpuTensor, _axis: usize) -> Result<GpuTensor> {
    Err(todo_op("sum_except"))
}
