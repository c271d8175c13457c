//! GPU convolution benchmarks (divan): `cargo bench -p host-gpu --bench gemm`.
//!
//! The CIFAR-10 EP-CNN layers (Laborieux et al. 2021: 128-256-512-512, 3x3, stride 1; the same
//! list as `sim/benches/ops.rs`) at batch 128 (`EPSIM_BENCH_BATCH` overrides it), forward, input
//! adjoint and weight adjoint; the forward conv and the input adjoint on the direct implicit GEMM
//! and on Winograd F(2×2, 3×3) (`*_winograd2`) and F(4×4, 3×3) (`*_winograd4`); the `*_tile128`
//! rows run the same GEMMs in 128×128 output blocks (`GemmTile::T128`) instead of the default
//! 64×64. Each iteration ends with `Gpu::sync`, so the timings
//! include the GPU work; the pipelines are compiled before timing. Throughput is reported as
//! items/s with one item = one floating-point operation of the direct convolution (2·M·N·K), so
//! "Gitem/s" reads as GFLOP/s, and on the Winograd rows as the direct-equivalent rate (the same
//! work done with 2.25× or 4× fewer multiplies). On a software driver (lavapipe) the numbers only show
//! that the bench runs.

use std::sync::OnceLock;

use divan::Bencher;
use divan::counter::ItemsCount;
use host_gpu::{ConvAlgo, GemmTile, Gpu, GpuTensor};
use sim::{Backend, Conv2dParams, Stream};

fn main() {
    divan::main();
}

/// The first adapter, its GEMMs in blocks of `tile` (one device per tile, opened once).
fn gpu(tile: GemmTile) -> &'static Gpu {
    static T64: OnceLock<Gpu> = OnceLock::new();
    static T128: OnceLock<Gpu> = OnceLock::new();
    let cell = match tile {
        GemmTile::T64 => &T64,
        GemmTile::T128 => &T128,
    };
    cell.get_or_init(|| Gpu::new_with_gemm_tile(None, tile).expect("a GPU adapter"))
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

/// Uniform (−scale, scale) tensor from a fixed seed, on the device of `tile`.
fn rand(tile: GemmTile, shape: &[usize], seed: u64, scale: f32) -> GpuTensor {
    let s = Stream::new(seed, "bench");
    let n: usize = shape.iter().product();
    let t = sim::tensor(
        shape,
        (0..n as u64)
            .map(|i| scale * (2.0 * s.uniform(i) - 1.0))
            .collect(),
    )
    .expect("sizes agree");
    gpu(tile).upload(&t).expect("upload")
}

fn layer(name: &str, tile: GemmTile) -> Layer {
    let &(_, c, o, hw, pad) = LAYERS.iter().find(|l| l.0 == name).expect("known layer");
    let n = batch();
    let ho = hw + 2 * pad - 2;
    Layer {
        x: rand(tile, &[n, c, hw, hw], 1, 1.0),
        w: rand(tile, &[o, c, 3, 3], 2, 0.05),
        b: rand(tile, &[o], 3, 0.1),
        gy: rand(tile, &[n, o, ho, ho], 4, 1.0),
        p: Conv2dParams::new(1, pad),
        hw,
        flops: 2 * (n * o * ho * ho * c * 9) as u64,
    }
}

/// Time `op` on `g` (run once untimed first: pipeline compilation), syncing after every call.
fn run(bencher: Bencher, g: &Gpu, flops: u64, op: impl Fn() -> GpuTensor + Sync) {
    drop(op());
    g.sync().expect("sync");
    bencher.counter(ItemsCount::new(flops)).bench(|| {
        let y = op();
        g.sync().expect("sync");
        drop(y);
    });
}

fn forward(bencher: Bencher, name: &str, algo: ConvAlgo, tile: GemmTile) {
    let l = layer(name, tile);
    let g = gpu(tile).with_conv_algo(algo);
    run(bencher, &g, l.flops, || {
        g.conv2d(&l.x, &l.w, Some(&l.b), l.p).expect("conv2d")
    });
}

fn input_grad(bencher: Bencher, name: &str, algo: ConvAlgo, tile: GemmTile) {
    let l = layer(name, tile);
    let g = gpu(tile).with_conv_algo(algo);
    run(bencher, &g, l.flops, || {
        g.conv2d_input_grad(&l.gy, &l.w, (l.hw, l.hw), l.p)
            .expect("conv2d_input_grad")
    });
}

fn weight_grad(bencher: Bencher, name: &str, tile: GemmTile) {
    let l = layer(name, tile);
    let g = gpu(tile);
    run(bencher, g, l.flops, || {
        g.conv2d_weight_grad(&l.x, &l.gy, (3, 3), l.p)
            .expect("conv2d_weight_grad")
    });
}

#[divan::bench(args = NAMES)]
fn conv2d_forward(bencher: Bencher, name: &str) {
    forward(bencher, name, ConvAlgo::Direct, GemmTile::T64);
}

#[divan::bench(args = NAMES)]
fn conv2d_forward_winograd2(bencher: Bencher, name: &str) {
    forward(bencher, name, ConvAlgo::Winograd2, GemmTile::T64);
}

#[divan::bench(args = NAMES)]
fn conv2d_forward_winograd4(bencher: Bencher, name: &str) {
    forward(bencher, name, ConvAlgo::Winograd4, GemmTile::T64);
}

#[divan::bench(args = NAMES)]
fn conv2d_input_grad(bencher: Bencher, name: &str) {
    input_grad(bencher, name, ConvAlgo::Direct, GemmTile::T64);
}

#[divan::bench(args = NAMES)]
fn conv2d_input_grad_winograd2(bencher: Bencher, name: &str) {
    input_grad(bencher, name, ConvAlgo::Winograd2, GemmTile::T64);
}

#[divan::bench(args = NAMES)]
fn conv2d_input_grad_winograd4(bencher: Bencher, name: &str) {
    input_grad(bencher, name, ConvAlgo::Winograd4, GemmTile::T64);
}

#[divan::bench(args = NAMES)]
fn conv2d_weight_grad(bencher: Bencher, name: &str) {
    weight_grad(bencher, name, GemmTile::T64);
}

#[divan::bench(args = NAMES)]
fn conv2d_forward_tile128(bencher: Bencher, name: &str) {
    forward(bencher, name, ConvAlgo::Direct, GemmTile::T128);
}

#[divan::bench(args = NAMES)]
fn conv2d_forward_winograd2_tile128(bencher: Bencher, name: &str) {
    forward(bencher, name, ConvAlgo::Winograd2, GemmTile::T128);
}

#[divan::bench(args = NAMES)]
fn conv2d_input_grad_tile128(bencher: Bencher, name: &str) {
    input_grad(bencher, name, ConvAlgo::Direct, GemmTile::T128);
}

#[divan::bench(args = NAMES)]
fn conv2d_input_grad_winograd2_tile128(bencher: Bencher, name: &str) {
    input_grad(bencher, name, ConvAlgo::Winograd2, GemmTile::T128);
}

#[divan::bench(args = NAMES)]
fn conv2d_weight_grad_tile128(bencher: Bencher, name: &str) {
    weight_grad(bencher, name, GemmTile::T128);
}
