//! Softmax family. OWNER: elementwise helper. Placeholder bodies.
use crate::Tensor;
use crate::error::Result;

/// Softmax over the last axis.
pub fn softmax(_x: &Tensor) -> Result<Tensor> {
    todo!()
}
/// Log-softmax over the last axis.
pub fn log_softmax(_x: &Tensor) -> Result<Tensor> {
    todo!()
}
/// Adjoint of log-softmax from its output.
pub fn log_softmax_grad(_y: &Tensor, _gy: &Tensor) -> Result<Tensor> {
    todo!()
}
/// Mean cross-entropy and its gradient.
pub fn cross_entropy(_logits: &Tensor, _labels: &[usize]) -> Result<(f32, Tensor)> {
    todo!()
}
