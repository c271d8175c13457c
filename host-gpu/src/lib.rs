//! # host-gpu — the GPU backend
//!
//! Role: implements the `sim::Backend` op set with wgpu compute shaders (WGSL, in
//! `src/kernels/*.wgsl`); runs on any Vulkan GPU and, for tests, on Mesa's software Vulkan
//! (lavapipe). Tensors stay on the device; only `download`/`host` and the host-scalar reductions
//! read back.
//!
//! Layout: `context` (device, pipelines, buffer pool, command batching), `tile` (the GEMM tile
//! option), `tensor` (device tensors), `ops/` (one file per op family, each with its `.wgsl`),
//! `backend` (the trait impl).
//!
//! Dependencies: `sim` only.

mod backend;
mod context;
mod ops;
mod tensor;
mod tile;

pub use backend::Gpu;
pub use ops::conv::{CONV_ALGO_VALUES, ConvAlgo, WINOGRAD_MIN_CHANNELS};
pub use tensor::{GpuIndex, GpuTensor};
pub use tile::GemmTile;
