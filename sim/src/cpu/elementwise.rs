//! Element maps, arithmetic and reductions. OWNER: elementwise helper. Placeholder bodies.
use crate::Tensor;
use crate::error::Result;
use crate::ops::Act;

/// act(x).
pub fn map(_x: &Tensor, _act: Act) -> Result<Tensor> {
    todo!()
}
/// gy ⊙ act'(x).
pub fn map_grad(_x: &Tensor, _gy: &Tensor, _act: Act) -> Result<Tensor> {
    todo!()
}
/// a + b.
pub fn add(_a: &Tensor, _b: &Tensor) -> Result<Tensor> {
    todo!()
}
/// a − b.
pub fn sub(_a: &Tensor, _b: &Tensor) -> Result<Tensor> {
    todo!()
}
/// a ⊙ b.
pub fn mul(_a: &Tensor, _b: &Tensor) -> Result<Tensor> {
    todo!()
}
/// alpha·x.
pub fn scale(_x: &Tensor, _alpha: f32) -> Result<Tensor> {
    todo!()
}
/// alpha·x + y.
pub fn axpy(_alpha: f32, _x: &Tensor, _y: &Tensor) -> Result<Tensor> {
    todo!()
}
/// x + b along `axis`.
pub fn add_along(_x: &Tensor, _b: &Tensor, _axis: usize) -> Result<Tensor> {
    todo!()
}
/// Σ x.
pub fn sum_all(_x: &Tensor) -> Result<f32> {
    todo!()
}
/// Σ a⊙b.
pub fn dot(_a: &Tensor, _b: &Tensor) -> Result<f32> {
    todo!()
}
/// Sum over all axes but `axis`.
pub fn sum_except(_x: &Tensor, _axis: usize) -> Result<Tensor> {
    todo!()
}
