//! # host-gpu — the GPU backend
//!
//! Role: implements the `sim::Backend` op set with wgpu compute shaders (WGSL), plus fused kernels
//! for the EP step; runs on any Vulkan/Metal/DX12 GPU and, for tests, on Mesa's software Vulkan.
//!
//! Dependencies: `sim` only.
