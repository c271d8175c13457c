//! Free-phase steps of an EP-CNN realized on the `netlist:pcm` substrate (crossbar reads:
//! `Backend::xbar_read`) on the CPU and the GPU backend side by side, on the same weights, inputs
//! and realization: `cargo bench -p host-gpu --bench substrate`. One iteration is 5 free-phase
//! steps at batch 128 (then a device sync). `EPSIM_BENCH_CPU=0` skips the CPU rows (the
//! paper-config CPU row takes minutes on 2 cores). On lavapipe (Mesa's software Vulkan) the GPU
//! rows only prove the code runs.

use devices::Preset;
use divan::Bencher;
use ep::compile::{CompileOptions, compile};
use ep::substrate::Realized;
use ep::{EpNet, ModelSpec};
use sim::netlist::{Netlist, Origin, TileSize};
use sim::{Backend, Cpu, Stream};

mod common;
use common::{cpu_rows, fmnist_spec, gpu};

fn main() {
    divan::main();
}

/// Steps per timed iteration.
const STEPS: usize = 5;

/// `spec` with random weights realized on the PCM preset (512×512 tiles) on backend `be`, and a
/// batch of 128 inputs in [0, 1] (the same numbers on every backend).
fn setup<B: Backend>(be: &B, spec: &ModelSpec) -> (Realized<B>, B::Tensor) {
    let host = EpNet::init(&Cpu, spec.clone(), &Stream::new(0, "init"), None).unwrap();
    let (w, b) = host.to_host(&Cpu).unwrap();
    let nl = compile(
        spec,
        &w,
        &b,
        &Preset::builtin("pcm").unwrap(),
        &CompileOptions {
            tile: TileSize {
                rows: 512,
                cols: 512,
            },
            name: "bench".into(),
        },
    )
    .unwrap();
    let l = Netlist::from_json(&nl.to_json(), Origin::memory()).unwrap();
    let real = Realized::new(be, &l, 0).unwrap();
    let [c, h, wd] = spec.input;
    let x = Cpu.rand(&[128, c, h, wd], &Stream::new(1, "x"), 0).unwrap();
    (real, be.upload(&x).unwrap())
}

fn steps<B: Backend>(b: Bencher, be: &B, spec: ModelSpec) {
    let (real, x) = setup(be, &spec);
    real.free_phase(be, &x, 1, 0).unwrap();
    let mut q = 1;
    b.bench_local(|| {
        let s = real.free_phase(be, &x, STEPS, q).unwrap();
        q += 1;
        be.sync().unwrap();
        s
    });
}

#[divan::bench(sample_count = 5)]
fn fmnist_pcm_5_free_steps_cpu(b: Bencher) {
    if cpu_rows() {
        steps(b, &Cpu, fmnist_spec(30, 10));
    }
}

#[divan::bench(sample_count = 5)]
fn fmnist_pcm_5_free_steps_gpu(b: Bencher) {
    steps(b, &gpu(), fmnist_spec(30, 10));
}

#[divan::bench(sample_count = 3)]
fn cifar10_paper_pcm_5_free_steps_cpu(b: Bencher) {
    if cpu_rows() {
        steps(b, &Cpu, ModelSpec::cifar10_reference());
    }
}

#[divan::bench(sample_count = 3)]
fn cifar10_paper_pcm_5_free_steps_gpu(b: Bencher) {
    steps(b, &gpu(), ModelSpec::cifar10_reference());
}
