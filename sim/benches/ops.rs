//! Op benchmarks (divan): `cargo bench -p sim --bench ops`.
//!
//! Throughput is reported as items/s with one item = one floating-point operation (2·M·N·K per
//! GEMM), so divan's "Gitem/s" column reads directly as GFLOP/s. The `sgemm` group measures the
//! machine's SGEMM peak in the same run (square and conv-like shapes); the `conv*` groups are the
//! CIFAR-10 EP-CNN layers (Laborieux et al. 2021: 128-256-512-512, 3x3, stride 1) at batch 128.
//! Thread count: rayon's global pool (all cores unless `RAYON_NUM_THREADS` is set).

use divan::Bencher;
use divan::counter::ItemsCount;
use sim::cpu::{
    ConvAlgo, Gemm, conv2d, conv2d_input_grad, conv2d_input_grad_with, conv2d_weight_grad,
    conv2d_with, linear, linear_input_grad, linear_weight_grad, sgemm,
};
use sim::gradcheck::test_tensor;
use sim::{Conv2dParams, Tensor};

fn main() {
    if std::env::var_os("EPSIM_SYSTEM_ALLOC").is_none() {
        sim::alloc::keep_freed_memory();
    }
    divan::main();
}

const BATCH: usize = 128;

/// (name, C, O, H=W, padding) of the EP-CNN conv layers, 3x3 stride 1.
const LAYERS: &[(&str, usize, usize, usize, usize)] = &[
    ("conv1_3to128_32px", 3, 128, 32, 1),
    ("conv2_128to256_16px", 128, 256, 16, 1),
    ("conv3_256to512_8px", 256, 512, 8, 1),
    ("conv4_512to512_4px_pad0", 512, 512, 4, 0),
];

struct Layer {
    x: Tensor,
    w: Tensor,
    b: Tensor,
    gy: Tensor,
    p: Conv2dParams,
    flops: u64,
}

fn layer(name: &str) -> Layer {
    let &(_, c, o, hw, pad) = LAYERS.iter().find(|l| l.0 == name).expect("known layer");
    let p = Conv2dParams::new(1, pad);
    let ho = hw + 2 * pad - 2;
    let x = test_tensor(&[BATCH, c, hw, hw], 1, 1.0);
    let w = test_tensor(&[o, c, 3, 3], 2, 0.05);
    let b = test_tensor(&[o], 3, 0.1);
    let gy = test_tensor(&[BATCH, o, ho, ho], 4, 1.0);
    let flops = 2 * (BATCH * o * ho * ho * c * 9) as u64;
    Layer {
        x,
        w,
        b,
        gy,
        p,
        flops,
    }
}

const NAMES: [&str; 4] = [LAYERS[0].0, LAYERS[1].0, LAYERS[2].0, LAYERS[3].0];

#[divan::bench(args = NAMES, sample_count = 12, sample_size = 1)]
fn conv_forward(bencher: Bencher, name: &str) {
    let l = layer(name);
    bencher
        .counter(ItemsCount::new(l.flops))
        .bench(|| conv2d(&l.x, &l.w, Some(&l.b), l.p).unwrap());
}

#[divan::bench(args = NAMES, sample_count = 12, sample_size = 1)]
fn conv_input_grad(bencher: Bencher, name: &str) {
    let l = layer(name);
    let hw = (l.x.shape()[2], l.x.shape()[3]);
    bencher
        .counter(ItemsCount::new(l.flops))
        .bench(|| conv2d_input_grad(&l.gy, &l.w, hw, l.p).unwrap());
}

#[divan::bench(args = NAMES, sample_count = 12, sample_size = 1)]
fn conv_weight_grad(bencher: Bencher, name: &str) {
    let l = layer(name);
    bencher
        .counter(ItemsCount::new(l.flops))
        .bench(|| conv2d_weight_grad(&l.x, &l.gy, (3, 3), l.p).unwrap());
}

/// "layer/algo" pairs of the 3x3 layers with ≥ 128 channels, im2col next to Winograd, for the
/// `conv_*_algo` benches (items = direct-convolution FLOPs, so Gitem/s is the effective GFLOP/s).
/// The Winograd input adjoint of the 2x2-output layer is listed although `Auto` keeps im2col there.
/// For ratios under load prefer the interleaved `conv_algo_ab` bench.
const ALGO_ARGS: &[&str] = &[
    "conv2_128to256_16px/im2col",
    "conv2_128to256_16px/winograd",
    "conv3_256to512_8px/im2col",
    "conv3_256to512_8px/winograd",
    "conv4_512to512_4px_pad0/im2col",
    "conv4_512to512_4px_pad0/winograd",
];

fn layer_algo(arg: &str) -> (Layer, ConvAlgo) {
    let (name, algo) = arg.split_once('/').expect("layer/algo");
    let algo = match algo {
        "im2col" => ConvAlgo::Im2col,
        "winograd" => ConvAlgo::Winograd,
        _ => ConvAlgo::Auto,
    };
    (layer(name), algo)
}

#[divan::bench(args = ALGO_ARGS, sample_count = 12, sample_size = 1)]
fn conv_forward_algo(bencher: Bencher, arg: &str) {
    let (l, algo) = layer_algo(arg);
    bencher
        .counter(ItemsCount::new(l.flops))
        .bench(|| conv2d_with(algo, &l.x, &l.w, Some(&l.b), l.p).unwrap());
}

#[divan::bench(args = ALGO_ARGS, sample_count = 12, sample_size = 1)]
fn conv_input_grad_algo(bencher: Bencher, arg: &str) {
    let (l, algo) = layer_algo(arg);
    let hw = (l.x.shape()[2], l.x.shape()[3]);
    bencher
        .counter(ItemsCount::new(l.flops))
        .bench(|| conv2d_input_grad_with(algo, &l.gy, &l.w, hw, l.p).unwrap());
}

/// SGEMM shapes "MxNxK", row-major, no transposes: square, and the GEMMs of the conv layers
/// (M = O, K = 9·C, N = columns of one chunk / of the whole batch).
const GEMMS: &[&str] = &[
    "1024x1024x1024",
    "2048x2048x2048",
    "256x512x1152",
    "512x512x2304",
    "512x512x4608",
    "256x32768x1152",
    "512x8192x2304",
];

#[divan::bench(args = GEMMS, sample_count = 12, sample_size = 1)]
fn sgemm_peak(bencher: Bencher, label: &str) {
    let d: Vec<usize> = label.split('x').map(|v| v.parse().unwrap()).collect();
    let (m, n, k) = (d[0], d[1], d[2]);
    let a = test_tensor(&[m * k], 1, 1.0);
    let b = test_tensor(&[k * n], 2, 1.0);
    let mut c = vec![0.0f32; m * n];
    let g = Gemm {
        m,
        n,
        k,
        trans_a: false,
        trans_b: false,
    };
    bencher
        .counter(ItemsCount::new(2 * (m * n * k) as u64))
        .bench_local(|| {
            sgemm(
                g,
                1.0,
                a.as_slice().unwrap(),
                b.as_slice().unwrap(),
                0.0,
                &mut c,
            )
            .unwrap()
        });
}

/// Single-threaded SGEMM on a chunk-sized shape (what each parallel conv chunk runs).
#[divan::bench(sample_count = 12, sample_size = 1)]
fn sgemm_1thread_512x512x2304(bencher: Bencher) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let (m, n, k) = (512, 512, 2304);
    let a = test_tensor(&[m * k], 1, 1.0);
    let b = test_tensor(&[k * n], 2, 1.0);
    let mut c = vec![0.0f32; m * n];
    let g = Gemm {
        m,
        n,
        k,
        trans_a: false,
        trans_b: false,
    };
    bencher
        .counter(ItemsCount::new(2 * (m * n * k) as u64))
        .bench_local(|| {
            pool.install(|| {
                sgemm(
                    g,
                    1.0,
                    a.as_slice().unwrap(),
                    b.as_slice().unwrap(),
                    0.0,
                    &mut c,
                )
                .unwrap()
            })
        });
}

/// linear 784 → 500 at batch 128 (the EP-MLP / FC layer), forward and both adjoints.
mod linear_128x784x500 {
    use super::*;

    const FLOPS: u64 = 2 * 128 * 784 * 500;

    fn data() -> (Tensor, Tensor, Tensor, Tensor) {
        (
            test_tensor(&[128, 784], 1, 1.0),
            test_tensor(&[500, 784], 2, 0.05),
            test_tensor(&[500], 3, 0.1),
            test_tensor(&[128, 500], 4, 1.0),
        )
    }

    #[divan::bench(sample_count = 50, sample_size = 4)]
    fn forward(bencher: Bencher) {
        let (x, w, b, _) = data();
        bencher
            .counter(ItemsCount::new(FLOPS))
            .bench(|| linear(&x, &w, Some(&b)).unwrap());
    }

    #[divan::bench(sample_count = 50, sample_size = 4)]
    fn input_grad(bencher: Bencher) {
        let (_, w, _, gy) = data();
        bencher
            .counter(ItemsCount::new(FLOPS))
            .bench(|| linear_input_grad(&gy, &w).unwrap());
    }

    #[divan::bench(sample_count = 50, sample_size = 4)]
    fn weight_grad(bencher: Bencher) {
        let (x, _, _, gy) = data();
        bencher
            .counter(ItemsCount::new(FLOPS))
            .bench(|| linear_weight_grad(&x, &gy).unwrap());
    }
}

/// Pooling of the EP-CNN's conv outputs (2x2, stride 2) next to an elementwise add of the same
/// input (a memory-bound reference in the same run); items = input elements.
#[divan::bench_group(sample_count = 10)]
mod pool {
    use super::*;
    use sim::Pool2dParams;
    use sim::cpu::{add, max_pool2d, max_unpool2d};

    const SHAPES: [[usize; 4]; 2] = [[128, 256, 16, 16], [128, 512, 8, 8]];

    fn p() -> Pool2dParams {
        Pool2dParams {
            kernel: (2, 2),
            stride: (2, 2),
        }
    }

    #[divan::bench(args = SHAPES)]
    fn max_pool(bencher: Bencher, s: [usize; 4]) {
        let x = test_tensor(&s, 5, 1.0);
        bencher
            .counter(ItemsCount::new(x.len()))
            .bench(|| max_pool2d(&x, p()).unwrap());
    }

    #[divan::bench(args = SHAPES)]
    fn max_unpool(bencher: Bencher, s: [usize; 4]) {
        let x = test_tensor(&s, 5, 1.0);
        let (y, idx) = max_pool2d(&x, p()).unwrap();
        bencher
            .counter(ItemsCount::new(x.len()))
            .bench(|| max_unpool2d(&y, &idx, (s[2], s[3])).unwrap());
    }

    #[divan::bench(args = SHAPES)]
    fn add_same_size(bencher: Bencher, s: [usize; 4]) {
        let x = test_tensor(&s, 5, 1.0);
        bencher
            .counter(ItemsCount::new(x.len()))
            .bench(|| add(&x, &x).unwrap());
    }
}

/// Seeded Gaussian draws (the converter and read noises of the substrate), one item = one draw.
mod normals {
    use super::*;
    use sim::Stream;
    use sim::rng::NormalPath;

    const LENS: &[usize] = &[1_000, 102_400];

    #[divan::bench(args = LENS)]
    fn fill_normal_fast(bencher: Bencher, n: usize) {
        let s = Stream::new(1, "bench").sub(2);
        let mut v = vec![0.0f32; n];
        let mut off = 0u64;
        bencher.counter(ItemsCount::new(n)).bench_local(|| {
            s.fill_normal_fast(off, &mut v);
            off += n as u64;
        });
    }

    /// The code paths of `fill_normal_fast` side by side (the same bits on every path; paths this
    /// CPU lacks are skipped). The former Philox4x32-10 bulk normals measured 0.739 Gitem/s here
    /// (compiler-vectorized) and 0.991 Gitem/s (hand-written AVX-512): BENCHMARKS.md.
    #[divan::bench(args = ["portable", "aesni", "vaes512"])]
    fn fill_normal_fast_path(bencher: Bencher, path: &str) {
        let p = match path {
            "portable" => NormalPath::Portable,
            "aesni" => NormalPath::AesNi,
            _ => NormalPath::Vaes512,
        };
        if !p.available() {
            return;
        }
        let n = 102_400;
        let s = Stream::new(1, "bench").sub(2);
        let mut v = vec![0.0f32; n];
        let mut off = 0u64;
        bencher.counter(ItemsCount::new(n)).bench_local(|| {
            s.fill_normal_fast_on(p, off, &mut v);
            off += n as u64;
        });
    }
}
