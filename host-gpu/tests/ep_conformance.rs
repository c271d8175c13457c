//! The EP conformance suite (`ep::conformance`) on the GPU backend, and the parity of the GPU
//! with the CPU on an EP-MLP, the quick-start Fashion-MNIST EP-CNN and the paper's CIFAR-10
//! EP-CNN (free-phase states, logits, one EP training step, BPTT). Each test opens its own
//! device. Without an adapter every test fails with the backend's message, which names the
//! package to install.

/// A fresh GPU backend, or a panic with the reason there is none.
fn gpu() -> host_gpu::Gpu {
    host_gpu::Gpu::new(None).unwrap_or_else(|e| panic!("{e}"))
}

ep::conformance_suite!(gpu, gpu());
ep::parity_suite!(cpu_vs_gpu, sim::Cpu, gpu());
// The parity again with each convolution algorithm forced: `Auto` runs the paper net's wide layers
// as Winograd F(2×2) and the narrow ones (the 3-channel first layer) and the 5x5 layers of the
// Fashion-MNIST nets direct. Not F(4×4) (`ConvAlgo::Winograd4`, outside the parity bars):
// instantiated here, the paper net's BPTT d/dx fails at 1.1e-2 of its scale (a small gradient, a
// difference of large transformed terms), and on a trained net it flips max-pool switches
// (`tests/tests/cli_device.rs`).
ep::parity_suite!(
    cpu_vs_gpu_direct,
    sim::Cpu,
    gpu().with_conv_algo(host_gpu::ConvAlgo::Direct)
);
ep::parity_suite!(
    cpu_vs_gpu_winograd2,
    sim::Cpu,
    gpu().with_conv_algo(host_gpu::ConvAlgo::Winograd2)
);
