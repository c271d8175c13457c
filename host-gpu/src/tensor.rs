//! Device-resident tensors: a pooled storage buffer plus a shape. Tensors are immutable once
//! written (every op writes a fresh output), so `reshape` and `clone` share the buffer.

use std::sync::Arc;

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
