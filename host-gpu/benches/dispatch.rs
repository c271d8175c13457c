//! The GPU backend's cost per kernel launch: `cargo bench -p host-gpu --bench dispatch`. One
//! iteration records 1000 element-wise adds on a tensor of 256 floats (one workgroup each, nothing
//! to compute) and then syncs, so iteration / 1000 bounds what one dispatch costs the host
//! (parameter buffer, bind group, compute pass, encoding, submission) plus the driver's launch.
//! A paper-config EP free step is 23 launches under `ConvAlgo::Auto` at batch 128 (BENCHMARKS.md);
//! on a GPU where its arithmetic takes about 0.5 ms, 10 µs per launch would be half of it.
//!
//! `paper_free_step_batch1`: one free step of the paper's CIFAR-10 EP-CNN at batch 1 (after ten
//! untimed ones), then a sync: the step's launches with little arithmetic, so on a GPU it times
//! what the host and the driver cost per step, and under callgrind (`--separate-threads=yes`,
//! `--sample-count N --sample-size 1` for two N) the main thread's instructions per step.

use divan::Bencher;
use ep::ModelSpec;
use sim::{Backend, Cpu, Stream};

mod common;
use common::gpu;

fn main() {
    divan::main();
}

/// Launches per timed iteration.
const LAUNCHES: usize = 1000;

/// The device, a 256-float tensor on it, and the add's pipeline compiled.
fn setup() -> (host_gpu::Gpu, host_gpu::GpuTensor) {
    let g = gpu();
    let x = g
        .upload(&Cpu.rand(&[256], &Stream::new(0, "dispatch"), 0).unwrap())
        .unwrap();
    drop(g.add(&x, &x).unwrap());
    g.sync().unwrap();
    (g, x)
}

/// [`LAUNCHES`] adds, each on the previous result.
fn adds(g: &host_gpu::Gpu, x: &host_gpu::GpuTensor) -> host_gpu::GpuTensor {
    let mut y = x.clone();
    for _ in 0..LAUNCHES {
        y = g.add(&y, x).unwrap();
    }
    y
}

#[divan::bench(sample_count = 10)]
fn add_1000_small(b: Bencher) {
    let (g, x) = setup();
    b.bench_local(|| {
        let y = adds(&g, &x);
        g.sync().unwrap();
        y
    });
}

/// Recording only: the same 1000 adds without the final sync (the driver may still be running
/// earlier submissions; the next sample's sync waits for them).
#[divan::bench(sample_count = 10)]
fn add_1000_small_record_only(b: Bencher) {
    let (g, x) = setup();
    b.bench_local(|| adds(&g, &x));
    g.sync().unwrap();
}

#[divan::bench(sample_count = 20)]
fn paper_free_step_batch1(b: Bencher) {
    let g = gpu();
    let (net, x, mut s) = common::setup(&g, &ModelSpec::cifar10_reference(), 1, 10);
    let input = net.read_input(&g, &x).unwrap();
    g.sync().unwrap();
    b.bench_local(|| {
        s = net.step_with(&g, &x, &s, None, Some(&input)).unwrap();
        g.sync().unwrap();
    });
}
