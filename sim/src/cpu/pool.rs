//! Pooling and its adjoints. OWNER: elementwise helper. Placeholder bodies to be replaced.
use super::IndexTensor;
use crate::Tensor;
use crate::error::Result;
use crate::ops::Pool2dParams;

/// Max pooling with argmax indices.
pub fn max_pool2d(_x: &Tensor, _p: Pool2dParams) -> Result<(Tensor, IndexTensor)> {
    todo!("max_pool2d")
}
/// Max unpooling (adjoint of max pooling).
pub fn max_unpool2d(_y: &Tensor, _idx: &IndexTensor, _input_hw: (usize, usize)) -> Result<Tensor> {
    todo!("max_unpool2d")
}
/// Average pooling.
pub fn avg_pool2d(_x: &Tensor, _p: Pool2dParams) -> Result<Tensor> {
    todo!("avg_pool2d")
}
/// Adjoint of average pooling.
pub fn avg_pool2d_adjoint(
    _gy: &Tensor,
    _input_hw: (usize, usize),
    _p: Pool2dParams,
) -> Result<Tensor> {
    todo!("avg_pool2d_adjoint")
}
