//! What the CPU-vs-GPU benches share: the GPU backend, the switch for the slow CPU rows, the
//! Fashion-MNIST EP-CNN and a net settled a few steps on a backend.
// Each bench includes this module and uses part of it.
#![allow(dead_code)]

use ep::{EpNet, ModelSpec, State};
use host_gpu::Gpu;
use sim::{Backend, Cpu, Stream};

/// The first GPU adapter, or a panic naming why there is none.
pub fn gpu() -> Gpu {
    Gpu::new(None).unwrap_or_else(|e| panic!("{e}"))
}

/// [`gpu`] with its GEMMs in 128×128 output blocks (`GemmTile::T128`).
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

/// Net, input and a state after `warm` free steps (realistic pooling switches), on backend `be`,
/// from host weights and `n` inputs drawn once (so both backends start from the same numbers).
pub fn setup<B: Backend>(
    be: &B,
    spec: &ModelSpec,
    n: usize,
    warm: usize,
) -> (EpNet<B>, B::Tensor, State<B>) {
    let host = EpNet::init(&Cpu, spec.clone(), &Stream::new(0, "init"), None).unwrap();
    let (ws, bs) = host.to_host(&Cpu).unwrap();
    let net = EpNet::from_host(be, spec.clone(), &ws, &bs).unwrap();
    let [c, h, w] = spec.input;
    let x = Cpu.rand(&[n, c, h, w], &Stream::new(1, "x"), 0).unwrap();
    let x = be.upload(&x).unwrap();
    let st = net.free_phase(be, &x, warm).unwrap();
    (net, x, st)
}
