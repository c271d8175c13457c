//! linear, its adjoints, and batched matmul. OWNER: conv helper. Placeholder bodies to be replaced.
use crate::Tensor;
use crate::error::Result;

/// y[..., out] = x[..., in]·wᵀ + b.
pub fn linear(_x: &Tensor, _w: &Tensor, _b: Option<&Tensor>) -> Result<Tensor> {
    todo!("linear")
}
/// gx = gy·w.
pub fn linear_input_grad(_gy: &Tensor, _w: &Tensor) -> Result<Tensor> {
    todo!("linear_input_grad")
}
/// gw = Σ gyᵀ·x.
pub fn linear_weight_grad(_x: &Tensor, _gy: &Tensor) -> Result<Tensor> {
    todo!("linear_weight_grad")
}
/// Batched matmul with transpose flags.
pub fn matmul(_a: &Tensor, _b: &Tensor, _trans_a: bool, _trans_b: bool) -> Result<Tensor> {
    todo!("matmul")
}
