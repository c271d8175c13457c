//! conv2d and its adjoints (im2col + GEMM). OWNER: conv helper. Placeholder bodies to be replaced.
use crate::Tensor;
use crate::error::Result;
use crate::ops::Conv2dParams;

/// y[N,O,Ho,Wo] = conv2d(x[N,C,H,W], w[O,C,kh,kw]) + b[O].
pub fn conv2d(_x: &Tensor, _w: &Tensor, _b: Option<&Tensor>, _p: Conv2dParams) -> Result<Tensor> {
    todo!("conv2d")
}
/// Transposed convolution (input adjoint).
pub fn conv2d_input_grad(
    _gy: &Tensor,
    _w: &Tensor,
    _input_hw: (usize, usize),
    _p: Conv2dParams,
) -> Result<Tensor> {
    todo!("conv2d_input_grad")
}
/// Weight adjoint.
pub fn conv2d_weight_grad(
    _x: &Tensor,
    _gy: &Tensor,
    _kernel_hw: (usize, usize),
    _p: Conv2dParams,
) -> Result<Tensor> {
    todo!("conv2d_weight_grad")
}
