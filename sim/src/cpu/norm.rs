//! Layer norm and batch norm. OWNER: elementwise helper. Placeholder bodies.
use crate::Tensor;
use crate::error::Result;

/// Layer norm over the last axis: (y, mean, rstd).
pub fn layer_norm(
    _x: &Tensor,
    _g: &Tensor,
    _b: &Tensor,
    _eps: f32,
) -> Result<(Tensor, Tensor, Tensor)> {
    todo!()
}
/// Layer norm adjoint: (gx, ggamma, gbeta).
pub fn layer_norm_grad(
    _x: &Tensor,
    _g: &Tensor,
    _mean: &Tensor,
    _rstd: &Tensor,
    _gy: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    todo!()
}
/// Batch norm with batch statistics: (y, mean, biased var).
pub fn batch_norm_train(
    _x: &Tensor,
    _g: &Tensor,
    _b: &Tensor,
    _eps: f32,
) -> Result<(Tensor, Tensor, Tensor)> {
    todo!()
}
/// Batch norm with given statistics.
pub fn batch_norm_eval(
    _x: &Tensor,
    _g: &Tensor,
    _b: &Tensor,
    _mean: &Tensor,
    _var: &Tensor,
    _eps: f32,
) -> Result<Tensor> {
    todo!()
}
/// Adjoint of batch_norm_train: (gx, ggamma, gbeta).
pub fn batch_norm_grad(
    _x: &Tensor,
    _g: &Tensor,
    _mean: &Tensor,
    _var: &Tensor,
    _eps: f32,
    _gy: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    todo!()
}
