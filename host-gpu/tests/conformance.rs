//! The op conformance suite (`sim::conformance`) on the GPU backend: every op check the CPU
//! passes, run on the first wgpu adapter (lavapipe where no GPU is present). Each test opens its
//! own device, so that tests running in parallel do not share one (sharing is checked by the
//! suite's own case `layout::concurrent_use_from_threads`). Without an adapter every test fails
//! with the backend's message, which names the package to install.

/// A fresh GPU backend, or a panic with the reason there is none.
fn gpu() -> host_gpu::Gpu {
    host_gpu::Gpu::new(None).unwrap_or_else(|e| panic!("{e}"))
}

sim::conformance_suite!(gpu, gpu());
// The same suite with each convolution algorithm forced (the default, `Auto`, takes Winograd only
// for ≥ 32 channels, which few of the suite's shapes have). Not F(4×4) (`ConvAlgo::Winograd4`, a
// benchmarking option outside the parity bars): its rounding (about 10× the direct sum's) exceeds
// this suite's tolerances, which are set for direct sums; its checks are in `tests/winograd.rs`.
// Not the 128×128 GEMM tile (`GemmTile::T128`) either: it gives the 64×64 tile's bits (checked on
// every GEMM flavor by `tests/gemm.rs`), and on lavapipe an instance with it took this binary
// from 38 s to 304 s (`cargo test --release -p host-gpu --test conformance`, 2 cores, 2026-12-08);
// the EP parity suite runs with it (`tests/ep_conformance.rs`).
sim::conformance_suite!(gpu_direct, gpu().with_conv_algo(host_gpu::ConvAlgo::Direct));
sim::conformance_suite!(
    gpu_winograd2,
    gpu().with_conv_algo(host_gpu::ConvAlgo::Winograd2)
);
