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
// as Winograd and the narrow ones (the quick-start net, the 3-channel first layer) direct.
ep::parity_suite!(
    cpu_vs_gpu_winograd,
    sim::Cpu,
    gpu().with_conv_algo(host_gpu::ConvAlgo::Winograd)
);
ep::parity_suite!(
    cpu_vs_gpu_direct,
    sim::Cpu,
    gpu().with_conv_algo(host_gpu::ConvAlgo::Direct)
);
