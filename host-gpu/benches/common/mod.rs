//! What the CPU-vs-GPU benches share: the GPU backend, the switch for the slow CPU rows, and the
//! Fashion-MNIST EP-CNN.

use ep::{ConvLayer, Loss, ModelSpec, Pool};
use host_gpu::Gpu;
use sim::Act;

/// The first GPU adapter, or a panic naming why there is none.
pub fn gpu() -> Gpu {
    Gpu::new(None).unwrap_or_else(|e| panic!("{e}"))
}

/// Whether the CPU rows run (`EPSIM_BENCH_CPU=0` skips them: the paper-config CPU rows take
/// minutes on 2 cores).
pub fn cpu_rows() -> bool {
    std::env::var("EPSIM_BENCH_CPU").map_or(true, |v| v != "0")
}

/// The Fashion-MNIST EP-CNN (channels 32-64, kernel 5, max pools, softmax readout) with free and
/// nudged phases of `t1` and `t2` steps.
pub fn fmnist_spec(t1: usize, t2: usize) -> ModelSpec {
    let conv = |channels| ConvLayer {
        channels,
        kernel: 5,
        stride: 1,
        padding: 0,
        pool: Pool::Max,
    };
    ModelSpec {
        input: [1, 28, 28],
        conv: vec![conv(32), conv(64)],
        fc: vec![10],
        act: Act::MyHardSig,
        softmax: true,
        loss: Loss::CrossEntropy,
        t1,
        t2,
        input_norm: None,
    }
}
