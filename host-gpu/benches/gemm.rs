//! GPU convolution benchmarks (divan): `cargo bench -p host-gpu --bench gemm`.
//!
//! The CIFAR-10 EP-CNN layers (Laborieux et al. 2021: 128-256-512-512, 3x3, stride 1; the same
//! list as `sim/benches/ops.rs`) at batch 128 (`EPSIM_BENCH_BATCH` overrides it), forward, input
//! adjoint and weight adjoint; the forward conv and the input adjoint on the direct implicit GEMM
//! and on Winograd F(2×2, 3×3) (`*_winograd2`) and F(4×4, 3×3) (`*_winograd4`). Each iteration ends with `Gpu::sync`, so the timings
//! include the GPU work; the pipelines are compiled before timing. Throughput is reported as
//! items/s with one item = one floating-point operation of the direct convolution (2·M·N·K), so
//! "Gitem/s" reads as GFLOP/s, and on the Winograd rows as the direct-equivalent rate (the same
//! work done with 2.25× or 4× fewer multiplies). On a software driver (lavapipe) the numbers only show
//! that the bench runs.

use std::sync::OnceLock;

use divan::Bencher;
use divan::counter::ItemsCount;
use host_gpu::{ConvAlgo, Gpu, GpuTensor};
use sim::{Backend, Conv2dParams, Stream};

fn main() {
    divan::main();
}

fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| Gpu::new(None).expect("a GPU adapter"))
}

fn batch() -> usize {
    std::env::var("EPSIM_BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128)
}

/// (name, C, O, H=W, padding) of the EP-CNN conv layers, 3x3 stride 1.
const LAYERS: &[(&str, usize, usize, usize, usize)] = &[
    ("conv1_3to128_32px", 3, 128, 32, 1),
    ("conv2_128to256_16px", 128, 256, 16, 1),
    ("conv3_256to512_8px", 256, 512, 8, 1),
    ("conv4_512to512_4px_pad0", 512, 512, 4, 0),
];
const NAMES: &[&str] = &[
    "conv1_3to128_32px",
    "conv2_128to256_16px",
    "conv3_256to512_8px",
    "conv4_512to512_4px_pad0",
];

struct Layer {
    x: GpuTensor,
    w: GpuTensor,
    b: GpuTensor,
    gy: GpuTensor,
    p: Conv2dParams,
    hw: usize,
    flops: u64,
}

/// Uniform (−scale, scale) device tensor from a fixed seed.
fn rand(shape: &[usize], seed: u64, scale: f32) -> GpuTensor {
    let s = Stream::new(seed, "bench");
    let n: usize = shape.iter().product();
    let t = sim::tensor(
        shape,
        (0..n as u64)
            .map(|i| scale * (2.0 * s.uniform(i) - 1.0))
            .collect(),
    )
    .expect("sizes agree");
    gpu().upload(&t).expect("upload")
}

fn layer(name: &str) -> Layer {
    let &(_, c, o, hw, pad) = LAYERS.iter().find(|l| l.0 == name).expect("known layer");
    let n = batch();
    let ho = hw + 2 * pad - 2;
    Layer {
        x: rand(&[n, c, hw, hw], 1, 1.0),
        w: rand(&[o, c, 3, 3], 2, 0.05),
        b: rand(&[o], 3, 0.1),
        gy: rand(&[n, o, ho, ho], 4, 1.0),
        p: Conv2dParams::new(1, pad),
        hw,
        flops: 2 * (n * o * ho * ho * c * 9) as u64,
    }
}

/// Time `op` (run once untimed first: pipeline compilation), syncing after every call.
fn run(bencher: Bencher, flops: u64, op: impl Fn() -> GpuTensor + Sync) {
    let g = gpu();
    drop(op());
    g.sync().expect("sync");
    bencher.counter(ItemsCount::new(flops)).bench(|| {
        let y = op();
        g.sync().expect("sync");
        drop(y);
    });
}

fn forward(bencher: Bencher, name: &str, algo: ConvAlgo) {
    let l = layer(name);
    let g = gpu().with_conv_algo(algo);
    run(bencher, l.flops, || {
        g.conv2d(&l.x, &l.w, Some(&l.b), l.p).expect("conv2d")
    });
}

fn input_grad(bencher: Bencher, name: &str, algo: ConvAlgo) {
    let l = layer(name);
    let g = gpu().with_conv_algo(algo);
    run(bencher, l.flops, || {
        g.conv2d_input_grad(&l.gy, &l.w, (l.hw, l.hw), l.p)
            .expect("conv2d_input_grad")
    });
}

#[divan::bench(args = NAMES)]
fn conv2d_forward(bencher: Bencher, name: &str) {
    forward(bencher, name, ConvAlgo::Direct);
}

#[divan::bench(args = NAMES)]
fn conv2d_forward_winograd2(bencher: Bencher, name: &str) {
    forward(bencher, name, ConvAlgo::Winograd2);
}

#[divan::bench(args = NAMES)]
fn conv2d_forward_winograd4(bencher: Bencher, name: &str) {
    forward(bencher, name, ConvAlgo::Winograd4);
}

#[divan::bench(args = NAMES)]
fn conv2d_input_grad(bencher: Bencher, name: &str) {
    input_grad(bencher, name, ConvAlgo::Direct);
}

#[divan::bench(args = NAMES)]
fn conv2d_input_grad_winograd2(bencher: Bencher, name: &str) {
    input_grad(bencher, name, ConvAlgo::Winograd2);
}

#[divan::bench(args = NAMES)]
fn conv2d_input_grad_winograd4(bencher: Bencher, name: &str) {
    input_grad(bencher, name, ConvAlgo::Winograd4);
}

#[divan::bench(args = NAMES)]
fn conv2d_weight_grad(bencher: Bencher, name: &str) {
    let l = layer(name);
    run(bencher, l.flops, || {
        gpu()
            .conv2d_weight_grad(&l.x, &l.gy, (3, 3), l.p)
            .expect("conv2d_weight_grad")
    });
}
