//! The GPU's Winograd convolutions, F(2×2, 3×3) and F(4×4, 3×3) (`ConvAlgo::Winograd2`,
//! `Winograd4`; every case runs for both, in modules `f2` and `f4`), against the CPU backend and
//! against the GPU's direct implicit GEMM: forward (with and without bias, odd and even sizes,
//! one-row outputs, asymmetric and large padding), input adjoint (padding 0, 1, 2, and above 2,
//! where the direct path takes over), the pooled input adjoint through max and average unpooling
//! (the EP feedback), bit-identical reruns, and the adjoint identity ⟨conv(x), g⟩ = ⟨x, convᵀ(g)⟩
//! computed with the Winograd path on both sides. Sizes are small: lavapipe runs a few GFLOP/s.

use host_gpu::{ConvAlgo, Gpu};
use sim::conformance::refs::bits;
use sim::{Backend, Conv2dParams, Cpu, Pool2dParams, Pooling, Tensor};

mod common;
use common::{assert_close, down, gpu, rand, up};

fn direct() -> Gpu {
    gpu().with_conv_algo(ConvAlgo::Direct)
}

/// (n, c, o, h, w, padding) of one convolution.
type Shape = (usize, usize, usize, usize, usize, (usize, usize));

/// Odd and even sizes, one-row outputs, asymmetric padding, ≥ 32 channels.
const SHAPES: [Shape; 9] = [
    (2, 3, 5, 7, 6, (1, 1)),
    (1, 4, 4, 5, 5, (0, 0)),
    (3, 2, 6, 4, 4, (2, 2)),
    (2, 5, 3, 1, 1, (1, 1)),
    (1, 3, 2, 8, 3, (0, 1)),
    (2, 6, 7, 9, 11, (1, 2)),
    (1, 33, 40, 6, 6, (1, 1)),
    (4, 2, 3, 3, 3, (0, 0)),
    (8, 32, 64, 16, 16, (1, 1)),
];

fn forward_matches_cpu_and_the_direct_gemm(wino: &Gpu) {
    for (i, &(n, c, o, h, w, pad)) in SHAPES.iter().enumerate() {
        let p = Conv2dParams {
            stride: (1, 1),
            padding: pad,
        };
        let x = rand(&[n, c, h, w], 10 + i as u64);
        let wt = rand(&[o, c, 3, 3], 20 + i as u64);
        let b = rand(&[o], 30 + i as u64);
        for bias in [None, Some(&b)] {
            let what = format!("forward {:?} bias {}", SHAPES[i], bias.is_some());
            let want = Cpu.conv2d(&x, &wt, bias, p).unwrap();
            let gb = bias.map(up);
            let got = wino.conv2d(&up(&x), &up(&wt), gb.as_ref(), p).unwrap();
            assert_close(&format!("{what} vs cpu"), &down(&got), &want);
            let dir = direct().conv2d(&up(&x), &up(&wt), gb.as_ref(), p).unwrap();
            assert_close(&format!("{what} vs direct"), &down(&got), &down(&dir));
        }
    }
}

fn forward_with_padding_above_two_matches_cpu(wino: &Gpu) {
    let p = Conv2dParams::new(1, 3);
    let x = rand(&[2, 3, 4, 5], 1);
    let wt = rand(&[4, 3, 3, 3], 2);
    let want = Cpu.conv2d(&x, &wt, None, p).unwrap();
    let got = wino.conv2d(&up(&x), &up(&wt), None, p).unwrap();
    assert_close("forward padding 3", &down(&got), &want);
}

fn input_adjoint_matches_cpu_and_the_direct_gemm(wino: &Gpu) {
    for (i, &(n, c, o, h, w, pad)) in SHAPES.iter().enumerate() {
        let p = Conv2dParams {
            stride: (1, 1),
            padding: pad,
        };
        let (ho, wo) = p.output_hw("test", (h, w), (3, 3)).unwrap();
        let gy = rand(&[n, o, ho, wo], 40 + i as u64);
        let wt = rand(&[o, c, 3, 3], 50 + i as u64);
        let what = format!("input adjoint {:?}", SHAPES[i]);
        let want = Cpu.conv2d_input_grad(&gy, &wt, (h, w), p).unwrap();
        let got = wino
            .conv2d_input_grad(&up(&gy), &up(&wt), (h, w), p)
            .unwrap();
        assert_close(&format!("{what} vs cpu"), &down(&got), &want);
        let dir = direct()
            .conv2d_input_grad(&up(&gy), &up(&wt), (h, w), p)
            .unwrap();
        assert_close(&format!("{what} vs direct"), &down(&got), &down(&dir));
    }
}

fn input_adjoint_with_padding_above_two_falls_back_to_the_direct_gemm(wino: &Gpu) {
    let p = Conv2dParams::new(1, 3);
    let gy = rand(&[2, 4, 8, 9], 3);
    let wt = rand(&[4, 3, 3, 3], 4);
    let want = Cpu.conv2d_input_grad(&gy, &wt, (4, 5), p).unwrap();
    let got = wino
        .conv2d_input_grad(&up(&gy), &up(&wt), (4, 5), p)
        .unwrap();
    assert_close("input adjoint padding 3", &down(&got), &want);
}

/// The EP feedback of a pooled conv synapse, `convᵀ(unpool(v))`, with the unpooling inside the
/// Winograd input transform, for max (switches from pooling a real conv output) and average
/// pooling, windows 2 and 3 (the conv output's last row and column outside every window).
fn pooled_input_adjoint_matches_cpu(wino: &Gpu) {
    for (i, &(n, c, o, h, w, k)) in [
        (2, 3, 4, 8, 8, 2),
        (1, 5, 6, 7, 9, 2),
        (2, 2, 3, 10, 8, 3),
        (3, 34, 33, 6, 6, 2),
        (8, 32, 64, 16, 16, 2),
        (8, 64, 128, 8, 8, 2),
    ]
    .iter()
    .enumerate()
    {
        let p = Conv2dParams::new(1, 1);
        let pp = Pool2dParams::new(k, k);
        let x = rand(&[n, c, h, w], 60 + i as u64);
        let wt = rand(&[o, c, 3, 3], 70 + i as u64);
        for max in [true, false] {
            let pool = if max {
                Pooling::Max(pp)
            } else {
                Pooling::Avg(pp)
            };
            let what = format!("pooled adjoint case {i}, max {max}");
            let (yc, ic) = Cpu.conv2d_pooled(&x, &wt, None, p, pool).unwrap();
            let (yg, ig) = wino
                .conv2d_pooled(&up(&x), &up(&wt), None, p, pool)
                .unwrap();
            let v = rand(yc.shape(), 80 + i as u64);
            assert_eq!(down(&yg).shape(), v.shape());
            let want = Cpu
                .conv2d_pooled_input_grad(&v, ic.as_ref(), &wt, (h, w), (h, w), p, pool)
                .unwrap();
            let got = wino
                .conv2d_pooled_input_grad(&up(&v), ig.as_ref(), &up(&wt), (h, w), (h, w), p, pool)
                .unwrap();
            assert_close(&what, &down(&got), &want);
        }
    }
}

fn reruns_give_the_same_bits(wino: &Gpu) {
    let p = Conv2dParams::new(1, 1);
    let x = up(&rand(&[3, 40, 9, 10], 5));
    let wt = up(&rand(&[36, 40, 3, 3], 6));
    let gy = up(&rand(&[3, 36, 9, 10], 7));
    let run = || {
        let g = wino;
        let y = down(&g.conv2d(&x, &wt, None, p).unwrap());
        let gx = down(&g.conv2d_input_grad(&gy, &wt, (9, 10), p).unwrap());
        (bits(&y), bits(&gx))
    };
    assert_eq!(run(), run());
}

/// ⟨conv(x), g⟩ = ⟨x, convᵀ(g)⟩ with both sides on the Winograd path (f64 sums; the tolerance is
/// relative to Σ|terms|).
fn adjoint_identity_holds_on_the_winograd_path(wino: &Gpu) {
    for (n, c, o, h, w, pad) in [(2, 5, 4, 7, 8, 1), (1, 3, 6, 5, 5, 0), (2, 4, 3, 4, 6, 2)] {
        let p = Conv2dParams::new(1, pad);
        let x = rand(&[n, c, h, w], 90);
        let wt = rand(&[o, c, 3, 3], 91);
        let (ho, wo) = p.output_hw("test", (h, w), (3, 3)).unwrap();
        let g = rand(&[n, o, ho, wo], 92);
        let y = down(&wino.conv2d(&up(&x), &up(&wt), None, p).unwrap());
        let gx = down(
            &wino
                .conv2d_input_grad(&up(&g), &up(&wt), (h, w), p)
                .unwrap(),
        );
        let dot = |a: &Tensor, b: &Tensor| -> (f64, f64) {
            a.iter().zip(b.iter()).fold((0.0, 0.0), |(s, m), (u, v)| {
                let t = *u as f64 * *v as f64;
                (s + t, m + t.abs())
            })
        };
        let (l, lm) = dot(&y, &g);
        let (r, rm) = dot(&x, &gx);
        assert!(
            (l - r).abs() <= 1e-5 * lm.max(rm),
            "pad {pad}: {l} vs {r} (scale {lm})"
        );
    }
}

/// The forward read with its pooling fused into the output transform (`conv2d_pooled`) against
/// the conv followed by the pooling op on the same device (same bits and switches: both take
/// the tile's values from one WGSL function and the max rule from `maxpick.wgsl`) and against
/// the CPU. Max and average pooling, windows 1×1, 2×2, 2×1 and 4×4 (fused where they divide
/// the tile, composed otherwise), conv outputs whose last row and column lie in no window, and a
/// NaN in the input (the max rule's last-NaN-wins).
fn pooled_forward_matches_conv_then_pool(wino: &Gpu) {
    let cases: [(Shape, (usize, usize)); 6] = [
        ((2, 3, 5, 8, 8, (1, 1)), (2, 2)),
        ((1, 4, 6, 11, 11, (0, 0)), (2, 2)),
        ((2, 33, 40, 9, 10, (1, 1)), (2, 1)),
        ((1, 2, 3, 5, 7, (1, 1)), (1, 1)),
        ((2, 3, 4, 10, 12, (1, 1)), (4, 4)),
        ((1, 32, 32, 4, 4, (0, 0)), (2, 2)),
    ];
    for (i, &((n, c, o, h, w, pad), k)) in cases.iter().enumerate() {
        let p = Conv2dParams {
            stride: (1, 1),
            padding: pad,
        };
        let pp = Pool2dParams {
            kernel: k,
            stride: k,
        };
        let mut x = rand(&[n, c, h, w], 80 + i as u64);
        if i == 0 {
            x[[0, 1, 3, 4]] = f32::NAN;
        }
        let wt = rand(&[o, c, 3, 3], 81 + i as u64);
        let b = rand(&[o], 82 + i as u64);
        let (gx, gw, gb) = (up(&x), up(&wt), up(&b));
        for pool in [Pooling::Max(pp), Pooling::Avg(pp)] {
            let what = format!("case {i} {pool:?}");
            let (y, idx) = wino.conv2d_pooled(&gx, &gw, Some(&gb), p, pool).unwrap();
            let z = wino.conv2d(&gx, &gw, Some(&gb), p).unwrap();
            let (ry, ridx) = match pool {
                Pooling::Max(pp) => {
                    let (y, i) = wino.max_pool2d(&z, pp).unwrap();
                    (y, Some(i))
                }
                _ => (wino.avg_pool2d(&z, pp).unwrap(), None),
            };
            assert_eq!(bits(&down(&y)), bits(&down(&ry)), "{what}: values");
            let zs = wino.shape(&z);
            let sw = |ix: &host_gpu::GpuIndex| sim::conformance::refs::switches(wino, ix, &zs);
            assert_eq!(
                idx.as_ref().map(sw),
                ridx.as_ref().map(sw),
                "{what}: switches"
            );
            if i > 0 {
                let (want, _) = Cpu.conv2d_pooled(&x, &wt, Some(&b), p, pool).unwrap();
                assert_close(&format!("{what} vs cpu"), &down(&y), &want);
            }
        }
    }
}

/// One `#[test]` per case and tile: `f2::case` and `f4::case` run `case` with that algorithm.
macro_rules! for_each_tile {
    ($($case:ident),* $(,)?) => {
        mod f2 {
            $(#[test]
            fn $case() {
                super::$case(&super::gpu().with_conv_algo(host_gpu::ConvAlgo::Winograd2));
            })*
        }
        mod f4 {
            $(#[test]
            fn $case() {
                super::$case(&super::gpu().with_conv_algo(host_gpu::ConvAlgo::Winograd4));
            })*
        }
    };
}

for_each_tile!(
    forward_matches_cpu_and_the_direct_gemm,
    forward_with_padding_above_two_matches_cpu,
    input_adjoint_matches_cpu_and_the_direct_gemm,
    input_adjoint_with_padding_above_two_falls_back_to_the_direct_gemm,
    pooled_input_adjoint_matches_cpu,
    reruns_give_the_same_bits,
    adjoint_identity_holds_on_the_winograd_path,
    replaced_weights_are_never_served_stale,
    pooled_forward_matches_conv_then_pool
);

/// A Winograd conv is four launches (weight, input and output transforms around one GEMM) where
/// the direct conv is one; the weight transform runs once per weight tensor, tile and direction
/// (forward or adjoint), so a repeat is three; a fused pooling adds none. On a device of its own (so that no other test's
/// launches count).
#[test]
fn a_winograd_conv_is_four_launches_then_three_and_a_direct_one_is_one() {
    let dev = host_gpu::Gpu::new(None).expect("a GPU adapter (lavapipe in CI)");
    let p = Conv2dParams::new(1, 1);
    let x = dev.upload(&rand(&[2, 40, 8, 8], 1)).unwrap();
    let gy = dev.upload(&rand(&[2, 48, 8, 8], 3)).unwrap();
    let w = dev.upload(&rand(&[48, 40, 3, 3], 2)).unwrap();
    let count = |algo: ConvAlgo, adjoint: bool, w: &host_gpu::GpuTensor| {
        let g = dev.with_conv_algo(algo);
        let before = g.launches();
        if adjoint {
            drop(g.conv2d_input_grad(&gy, w, (8, 8), p).unwrap());
        } else {
            drop(g.conv2d(&x, w, None, p).unwrap());
        }
        g.launches() - before
    };
    for (algo, adjoint, want) in [
        (ConvAlgo::Direct, false, 1),
        (ConvAlgo::Winograd2, false, 4),
        (ConvAlgo::Winograd2, false, 3),
        // Auto takes F(2×2) here: the same transformed weights.
        (ConvAlgo::Auto, false, 3),
        (ConvAlgo::Winograd2, true, 4),
        (ConvAlgo::Winograd2, true, 3),
        (ConvAlgo::Winograd4, false, 4),
        (ConvAlgo::Winograd4, false, 3),
        (ConvAlgo::Direct, true, 1),
    ] {
        assert_eq!(count(algo, adjoint, &w), want, "{algo:?} adjoint {adjoint}");
    }
    // The forward read with a 2×2 max pooling: fused into the Winograd output transform (the
    // three launches of a conv with transformed weights at hand), after the direct conv a
    // pooling launch of its own.
    let pool = sim::Pooling::Max(Pool2dParams::new(2, 2));
    for (algo, want) in [(ConvAlgo::Winograd2, 3), (ConvAlgo::Direct, 2)] {
        let g = dev.with_conv_algo(algo);
        let before = g.launches();
        drop(g.conv2d_pooled(&x, &w, None, p, pool).unwrap());
        assert_eq!(g.launches() - before, want, "{algo:?} pooled");
    }
    // A reshape shares the buffer (and its transform); a new tensor of equal values does not.
    let same = dev.reshape(&w, &[48, 40, 3, 3]).unwrap();
    assert_eq!(count(ConvAlgo::Winograd2, false, &same), 3);
    let fresh = dev.upload(&rand(&[48, 40, 3, 3], 2)).unwrap();
    assert_eq!(count(ConvAlgo::Winograd2, false, &fresh), 4);
}

/// Weights replaced step after step, as training does. Each new weight tensor is computed on the
/// device just after the previous one is dropped, so the pool hands it the previous one's buffer
/// (its size class is used by no other tensor here): a cache of transformed weights keyed on the
/// buffer rather than on the tensor's life would serve the old weights (checked with such a
/// cache). Every step's forward conv and input adjoint must match the CPU with that step's weights.
fn replaced_weights_are_never_served_stale(wino: &Gpu) {
    let p = Conv2dParams::new(1, 1);
    let x = rand(&[2, 6, 4, 4], 60);
    let gy = rand(&[2, 8, 4, 4], 61);
    let (x_up, gy_up) = (up(&x), up(&gy));
    let base = up(&rand(&[8, 6, 3, 3], 62));
    let mut w = up(&rand(&[8, 6, 3, 3], 63));
    for step in 0..4u64 {
        let wc = down(&w);
        let y = down(&wino.conv2d(&x_up, &w, None, p).unwrap());
        let want = Cpu.conv2d(&x, &wc, None, p).unwrap();
        assert_close(&format!("step {step} forward"), &y, &want);
        let gx = down(&wino.conv2d_input_grad(&gy_up, &w, (4, 4), p).unwrap());
        let want = Cpu.conv2d_input_grad(&gy, &wc, (4, 4), p).unwrap();
        assert_close(&format!("step {step} input adjoint"), &gx, &want);
        let d = up(&rand(&[8, 6, 3, 3], 70 + step));
        drop(w);
        w = wino.axpy(0.5, &d, &base).unwrap();
    }
}
