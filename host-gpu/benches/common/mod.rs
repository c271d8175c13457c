//! What the CPU-vs-GPU benches share: the GPU backend, the switch for the slow CPU rows, and the
//! Fashion-MNIST EP-CNN.

use ep::ModelSpec;
use host_gpu::Gpu;

/// The first GPU adapter, or a panic naming why there is none.
pub fn gpu() -> Gpu {
    Gpu::new(None).unwrap_or_else(|e| panic!("{e}"))
}

/// [`gpu`] with its GEMMs in 128×128 output blocks (`GemmTile::T128`).
#[allow(dead_code)] // not every bench has tile rows
pub fn gpu_tile128() -> Gpu {
    Gpu::new_with_gemm_tile(None, host_gpu::GemmTile::T128).unwrap_or_else(|e| panic!("{e}"))
}

/// Whether the CPU rows run (`EPSIM_BENCH_CPU=0` skips them: the paper-config CPU rows take
/// minutes on 2 cores).
pub fn cpu_rows() -> bool {
    std::env::var("EPSIM_BENCH_CPU").map_or(true, |v| v != "0")
}

/// The Fashion-MNIST EP-CNN (`ModelSpec::fmnist_reference`) with free and nudged phases of `t1`
/// and `t2` steps.
pub fn fmnist_spec(t1: usize, t2: usize) -> ModelSpec {
    ModelSpec {
        t1,
        t2,
        ..ModelSpec::fmnist_reference()
    }
}
