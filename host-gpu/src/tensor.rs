//! Device-resident tensors: a pooled storage buffer plus a shape. Tensors are immutable once
//! written (every op writes a fresh output), so `reshape` and `clone` share the buffer, and data
//! derived from a buffer's contents can be kept with it (`PoolBuf::derived`).

use std::sync::Arc;

use sim::Pool2dParams;

use crate::context::PoolBuf;

/// An f32 tensor on the GPU, in standard (row-major) layout, NCHW for images.
#[derive(Clone, Debug)]
pub struct GpuTensor {
    pub(crate) buf: Arc<PoolBuf>,
    pub(crate) shape: Vec<usize>,
}

/// Max-pooling argmax indices on the GPU (u32, flat index inside the input plane).
#[derive(Clone, Debug)]
pub struct GpuIndex {
    pub(crate) buf: Arc<PoolBuf>,
    pub(crate) shape: Vec<usize>,
    /// Every stored index is below `bound` (exact for uploaded indices, the last position of the
    /// last window for pooled ones), so range checks need no read-back when it fits the plane.
    pub(crate) bound: u64,
    /// The max pooling that produced the indices (its parameters and input plane `(H, W)`):
    /// index k then lies inside window k, and unpooling gathers over the windows holding each
    /// position. `None` for uploaded indices.
    pub(crate) pool: Option<(Pool2dParams, (usize, usize))>,
}

impl GpuTensor {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// True when the tensor has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        self.buf.buffer()
    }
}

impl GpuIndex {
    pub(crate) fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        self.buf.buffer()
    }
}
