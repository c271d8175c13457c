//! The GPU matrix ops (conv2d and its adjoints, linear and its adjoints, batched matmul) against the
//! CPU backend on many shapes, the adjoint identities computed on the GPU, run-to-run determinism,
//! and the shape/parameter errors the CPU gives. Sizes are kept small: lavapipe runs a few GFLOP/s.

use host_gpu::GpuTensor;
use sim::{Backend, Conv2dParams, Cpu, Error, Tensor};

mod common;
use common::{assert_close, down, gpu, rand, up};

fn dot64(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| *x as f64 * *y as f64)
        .sum()
}

fn abs_dot64(a: &Tensor, b: &Tensor) -> f64 {
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (*x as f64 * *y as f64).abs())
        .sum()
}

/// One convolution case: x shape, w shape, params, with bias.
struct Case {
    x: [usize; 4],
    w: [usize; 4],
    p: Conv2dParams,
    bias: bool,
}

fn case(
    x: [usize; 4],
    w: [usize; 4],
    stride: (usize, usize),
    pad: (usize, usize),
    bias: bool,
) -> Case {
    Case {
        x,
        w,
        p: Conv2dParams {
            stride,
            padding: pad,
        },
        bias,
    }
}

/// conv2d, conv2d_input_grad and conv2d_weight_grad of one case on both backends.
fn check_conv(c: &Case, seed: u64) {
    let (g, cpu) = (gpu(), Cpu);
    let what = format!("x {:?} w {:?} {:?} bias {}", c.x, c.w, c.p, c.bias);
    let x = rand(&c.x, seed);
    let w = rand(&c.w, seed + 1);
    let b = c.bias.then(|| rand(&[c.w[0]], seed + 2));
    let y_cpu = cpu.conv2d(&x, &w, b.as_ref(), c.p).unwrap();
    let gb = b.as_ref().map(up);
    let y_gpu = down(&g.conv2d(&up(&x), &up(&w), gb.as_ref(), c.p).unwrap());
    assert_close(&format!("conv2d {what}"), &y_gpu, &y_cpu);

    let gy = rand(y_cpu.shape(), seed + 3);
    let hw = (c.x[2], c.x[3]);
    let gx_cpu = cpu.conv2d_input_grad(&gy, &w, hw, c.p).unwrap();
    let gx_gpu = down(&g.conv2d_input_grad(&up(&gy), &up(&w), hw, c.p).unwrap());
    assert_close(&format!("conv2d_input_grad {what}"), &gx_gpu, &gx_cpu);

    let khw = (c.w[2], c.w[3]);
    let gw_cpu = cpu.conv2d_weight_grad(&x, &gy, khw, c.p).unwrap();
    let gw_gpu = down(&g.conv2d_weight_grad(&up(&x), &up(&gy), khw, c.p).unwrap());
    assert_close(&format!("conv2d_weight_grad {what}"), &gw_gpu, &gw_cpu);
}

#[test]
fn conv_paper_layers_match_cpu() {
    // The CIFAR-10 EP-CNN's layers (3x3, padding 1), small batches (batch 4 and 2).
    let cases = [
        case([4, 3, 32, 32], [128, 3, 3, 3], (1, 1), (1, 1), true),
        case([2, 128, 16, 16], [256, 128, 3, 3], (1, 1), (1, 1), true),
        case([2, 256, 8, 8], [512, 256, 3, 3], (1, 1), (1, 1), false),
        case([2, 512, 4, 4], [512, 512, 3, 3], (1, 1), (1, 1), true),
        // The last layer as `sim/benches/ops.rs` runs it: padding 0, 2x2 output.
        case([2, 512, 4, 4], [512, 512, 3, 3], (1, 1), (0, 0), false),
    ];
    for (i, c) in cases.iter().enumerate() {
        check_conv(c, 100 + 10 * i as u64);
    }
}

#[test]
fn conv_odd_shapes_match_cpu() {
    let cases = [
        // 1x1 kernel, with bias.
        case([3, 5, 9, 7], [6, 5, 1, 1], (1, 1), (0, 0), true),
        // 5x5, padding 2, sizes not multiples of anything.
        case([2, 4, 11, 13], [7, 4, 5, 5], (1, 1), (2, 2), false),
        // Stride 2 covering every row, and stride 2 dropping the last row and column.
        case([2, 3, 9, 9], [5, 3, 3, 3], (2, 2), (0, 0), true),
        case([2, 3, 10, 10], [5, 3, 3, 3], (2, 2), (0, 0), false),
        // C = 1, non-square kernel, stride 2 with padding.
        case([1, 1, 17, 23], [3, 1, 3, 5], (2, 2), (1, 1), true),
        // Unequal strides and paddings, non-square everything.
        case([2, 6, 8, 12], [4, 6, 2, 3], (3, 2), (0, 1), false),
        // Channels not multiples of 16 or 64 (M, N and K all ragged).
        case([2, 70, 5, 6], [67, 70, 3, 3], (1, 1), (1, 1), true),
        // 1x1 at stride 2: stride phases without any tap (their gradient is zero).
        case([2, 8, 7, 7], [16, 8, 1, 1], (2, 2), (0, 0), false),
        // Kernel larger than the stride, padding 2.
        case([1, 2, 6, 6], [3, 2, 4, 4], (3, 3), (2, 2), true),
        // Empty batch; no input channels (the output is the bias).
        case([0, 3, 8, 8], [4, 3, 3, 3], (1, 1), (1, 1), true),
        case([2, 0, 5, 5], [3, 0, 3, 3], (1, 1), (1, 1), true),
    ];
    for (i, c) in cases.iter().enumerate() {
        check_conv(c, 500 + 10 * i as u64);
    }
}

#[test]
fn conv_adjoint_identities_on_gpu() {
    // ⟨conv(x), gy⟩ = ⟨x, convᵀ(gy)⟩ = ⟨w, conv_weight_grad(x, gy)⟩, every product on the GPU.
    let g = gpu();
    for (i, c) in [
        case([3, 5, 9, 9], [6, 5, 3, 3], (2, 2), (1, 1), false),
        case([2, 4, 12, 10], [5, 4, 3, 2], (1, 2), (2, 0), false),
        case([4, 16, 16, 16], [8, 16, 3, 3], (1, 1), (1, 1), false),
    ]
    .iter()
    .enumerate()
    {
        let s = 900 + 10 * i as u64;
        let (x, w) = (rand(&c.x, s), rand(&c.w, s + 1));
        let y = down(&g.conv2d(&up(&x), &up(&w), None, c.p).unwrap());
        let gy = rand(y.shape(), s + 2);
        let gx = down(
            &g.conv2d_input_grad(&up(&gy), &up(&w), (c.x[2], c.x[3]), c.p)
                .unwrap(),
        );
        let gw = down(
            &g.conv2d_weight_grad(&up(&x), &up(&gy), (c.w[2], c.w[3]), c.p)
                .unwrap(),
        );
        let (a, b, e) = (dot64(&y, &gy), dot64(&x, &gx), dot64(&w, &gw));
        let scale = abs_dot64(&y, &gy);
        assert!((a - b).abs() <= 1e-5 * scale, "case {i}: {a} vs {b}");
        assert!((a - e).abs() <= 1e-5 * scale, "case {i}: {a} vs {e}");
    }
}

#[test]
fn conv_results_are_deterministic() {
    // The weight adjoint of the first layer takes the split-K path (K = N·H·W is large).
    let g = gpu();
    let p = Conv2dParams::new(1, 1);
    let x = up(&rand(&[4, 3, 32, 32], 1));
    let w = up(&rand(&[16, 3, 3, 3], 2));
    let gy = up(&rand(&[4, 16, 32, 32], 3));
    let bits = |t: &GpuTensor| down(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let gw1 = bits(&g.conv2d_weight_grad(&x, &gy, (3, 3), p).unwrap());
    let gw2 = bits(&g.conv2d_weight_grad(&x, &gy, (3, 3), p).unwrap());
    assert_eq!(gw1, gw2);
    let y1 = bits(&g.conv2d(&x, &w, None, p).unwrap());
    let y2 = bits(&g.conv2d(&x, &w, None, p).unwrap());
    assert_eq!(y1, y2);
}

#[test]
fn linear_matches_cpu() {
    let (g, cpu) = (gpu(), Cpu);
    // (x shape, out, bias): rank 3, rank 2 with ragged tiles, rank 1, empty rows, a long K that
    // takes the split path (with the bias added by the split reduction), a split weight adjoint.
    let cases: [(&[usize], usize, bool); 7] = [
        (&[5, 7, 33], 19, true),
        (&[5, 7, 33], 19, false),
        (&[130, 70], 65, true),
        (&[12], 4, true),
        (&[0, 8], 6, true),
        (&[2, 4096], 3, true),
        (&[3000, 20], 10, false),
    ];
    for (i, (xs, out, bias)) in cases.into_iter().enumerate() {
        let s = 300 + 10 * i as u64;
        let what = format!("x {xs:?} out {out} bias {bias}");
        let inp = *xs.last().unwrap();
        let x = rand(xs, s);
        let w = rand(&[out, inp], s + 1);
        let b = bias.then(|| rand(&[out], s + 2));
        let y_cpu = cpu.linear(&x, &w, b.as_ref()).unwrap();
        let gb = b.as_ref().map(up);
        let y_gpu = down(&g.linear(&up(&x), &up(&w), gb.as_ref()).unwrap());
        assert_close(&format!("linear {what}"), &y_gpu, &y_cpu);
        let gy = rand(y_cpu.shape(), s + 3);
        let gx_cpu = cpu.linear_input_grad(&gy, &w).unwrap();
        let gx_gpu = down(&g.linear_input_grad(&up(&gy), &up(&w)).unwrap());
        assert_close(&format!("linear_input_grad {what}"), &gx_gpu, &gx_cpu);
        let gw_cpu = cpu.linear_weight_grad(&x, &gy).unwrap();
        let gw_gpu = down(&g.linear_weight_grad(&up(&x), &up(&gy)).unwrap());
        assert_close(&format!("linear_weight_grad {what}"), &gw_gpu, &gw_cpu);
    }
}

#[test]
fn matmul_matches_cpu() {
    let (g, cpu) = (gpu(), Cpu);
    // (batch axes, M, K, N): batched, unbatched, a long K (split with batch), an empty batch.
    let cases: [(&[usize], usize, usize, usize); 4] = [
        (&[2, 3], 17, 40, 70),
        (&[], 65, 33, 129),
        (&[3], 5, 2000, 6),
        (&[0], 4, 5, 6),
    ];
    for (i, (lead, m, k, n)) in cases.into_iter().enumerate() {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let s = 700 + 10 * i as u64 + 2 * (ta as u64) + 4 * (tb as u64);
            let mut ash = lead.to_vec();
            ash.extend(if ta { [k, m] } else { [m, k] });
            let mut bsh = lead.to_vec();
            bsh.extend(if tb { [n, k] } else { [k, n] });
            let (a, b) = (rand(&ash, s), rand(&bsh, s + 1));
            let c_cpu = cpu.matmul(&a, &b, ta, tb).unwrap();
            let c_gpu = down(&g.matmul(&up(&a), &up(&b), ta, tb).unwrap());
            assert_close(
                &format!("matmul a {ash:?} b {bsh:?} ta {ta} tb {tb}"),
                &c_gpu,
                &c_cpu,
            );
        }
    }
}

#[test]
fn linear_and_matmul_adjoint_identities_on_gpu() {
    let g = gpu();
    let (x, w) = (rand(&[3, 5, 40], 41), rand(&[24, 40], 42));
    let y = down(&g.linear(&up(&x), &up(&w), None).unwrap());
    let gy = rand(y.shape(), 43);
    let gx = down(&g.linear_input_grad(&up(&gy), &up(&w)).unwrap());
    let gw = down(&g.linear_weight_grad(&up(&x), &up(&gy)).unwrap());
    let (a, b, e) = (dot64(&y, &gy), dot64(&x, &gx), dot64(&w, &gw));
    let scale = abs_dot64(&y, &gy);
    assert!(
        (a - b).abs() <= 1e-5 * scale && (a - e).abs() <= 1e-5 * scale,
        "{a} {b} {e}"
    );
    // matmul: ⟨a·b, gc⟩ = ⟨a, gc·bᵀ⟩ = ⟨b, aᵀ·gc⟩.
    let (a, b) = (rand(&[2, 9, 21], 44), rand(&[2, 21, 13], 45));
    let (ga, gb) = (up(&a), up(&b));
    let c = down(&g.matmul(&ga, &gb, false, false).unwrap());
    let gc = rand(c.shape(), 46);
    let da = down(&g.matmul(&up(&gc), &gb, false, true).unwrap());
    let db = down(&g.matmul(&ga, &up(&gc), true, false).unwrap());
    let (p, q, r) = (dot64(&c, &gc), dot64(&a, &da), dot64(&b, &db));
    let scale = abs_dot64(&c, &gc);
    assert!(
        (p - q).abs() <= 1e-5 * scale && (p - r).abs() <= 1e-5 * scale,
        "{p} {q} {r}"
    );
}

/// Both backends reject the operands with the same kind of error.
fn same_error<T: std::fmt::Debug, U: std::fmt::Debug>(
    what: &str,
    g: sim::Result<T>,
    c: sim::Result<U>,
) {
    let kind = |e: &Error| match e {
        Error::Shape { .. } => "shape",
        Error::Param { .. } => "param",
        _ => "other",
    };
    match (g, c) {
        (Err(ge), Err(ce)) => assert_eq!(kind(&ge), kind(&ce), "{what}: gpu {ge} / cpu {ce}"),
        (g, c) => panic!("{what}: expected errors, got gpu {g:?} / cpu {c:?}"),
    }
}

#[test]
fn bad_shapes_give_the_cpu_errors() {
    let (g, cpu) = (gpu(), Cpu);
    let t = |s: &[usize]| rand(s, 7);
    let p1 = Conv2dParams::new(1, 1);
    // conv2d: ranks, channel mismatch, bias shape, zero stride, kernel larger than the padded input.
    let conv: Vec<(&str, Tensor, Tensor, Option<Tensor>, Conv2dParams)> = vec![
        ("rank x", t(&[3, 8, 8]), t(&[4, 3, 3, 3]), None, p1),
        ("rank w", t(&[1, 3, 8, 8]), t(&[4, 3, 3]), None, p1),
        ("channels", t(&[1, 3, 8, 8]), t(&[4, 2, 3, 3]), None, p1),
        (
            "bias",
            t(&[1, 3, 8, 8]),
            t(&[4, 3, 3, 3]),
            Some(t(&[3])),
            p1,
        ),
        (
            "bias rank",
            t(&[1, 3, 8, 8]),
            t(&[4, 3, 3, 3]),
            Some(t(&[4, 1])),
            p1,
        ),
        (
            "stride 0",
            t(&[1, 3, 8, 8]),
            t(&[4, 3, 3, 3]),
            None,
            Conv2dParams::new(0, 1),
        ),
        (
            "kernel",
            t(&[1, 3, 2, 2]),
            t(&[4, 3, 3, 3]),
            None,
            Conv2dParams::new(1, 0),
        ),
        ("kernel 0", t(&[1, 3, 4, 4]), t(&[4, 3, 0, 3]), None, p1),
    ];
    for (what, x, w, b, p) in &conv {
        let gb = b.as_ref().map(up);
        same_error(
            &format!("conv2d {what}"),
            g.conv2d(&up(x), &up(w), gb.as_ref(), *p),
            cpu.conv2d(x, w, b.as_ref(), *p),
        );
    }
    // conv2d_input_grad: gy channels, gy spatial size, rank, zero stride.
    let w = t(&[4, 3, 3, 3]);
    for (what, gy, hw, p) in [
        ("channels", t(&[1, 5, 8, 8]), (8, 8), p1),
        ("spatial", t(&[1, 4, 7, 8]), (8, 8), p1),
        ("rank", t(&[4, 8, 8]), (8, 8), p1),
        (
            "stride 0",
            t(&[1, 4, 8, 8]),
            (8, 8),
            Conv2dParams::new(0, 1),
        ),
        ("kernel", t(&[1, 4, 8, 8]), (1, 1), Conv2dParams::new(1, 0)),
    ] {
        same_error(
            &format!("conv2d_input_grad {what}"),
            g.conv2d_input_grad(&up(&gy), &up(&w), hw, p),
            cpu.conv2d_input_grad(&gy, &w, hw, p),
        );
    }
    // conv2d_weight_grad: batch mismatch, spatial mismatch, rank, zero kernel.
    let x = t(&[2, 3, 8, 8]);
    for (what, gy, khw, p) in [
        ("batch", t(&[1, 4, 8, 8]), (3, 3), p1),
        ("spatial", t(&[2, 4, 6, 8]), (3, 3), p1),
        ("rank", t(&[2, 4, 64]), (3, 3), p1),
        ("kernel 0", t(&[2, 4, 8, 8]), (0, 3), p1),
        (
            "stride 0",
            t(&[2, 4, 8, 8]),
            (3, 3),
            Conv2dParams::new(0, 1),
        ),
    ] {
        same_error(
            &format!("conv2d_weight_grad {what}"),
            g.conv2d_weight_grad(&up(&x), &up(&gy), khw, p),
            cpu.conv2d_weight_grad(&x, &gy, khw, p),
        );
    }
    // linear family.
    let scalar = sim::tensor(&[], vec![1.0]).unwrap();
    for (what, x, w, b) in [
        ("in", t(&[2, 5]), t(&[3, 4]), None),
        ("w rank", t(&[2, 4]), t(&[3, 4, 1]), None),
        ("bias", t(&[2, 4]), t(&[3, 4]), Some(t(&[4]))),
        ("scalar x", scalar.clone(), t(&[3, 1]), None),
    ] {
        let gb = b.as_ref().map(up);
        same_error(
            &format!("linear {what}"),
            g.linear(&up(&x), &up(&w), gb.as_ref()),
            cpu.linear(&x, &w, b.as_ref()),
        );
    }
    for (what, gy, w) in [
        ("out", t(&[2, 5]), t(&[3, 4])),
        ("w rank", t(&[2, 3]), t(&[3])),
    ] {
        same_error(
            &format!("linear_input_grad {what}"),
            g.linear_input_grad(&up(&gy), &up(&w)),
            cpu.linear_input_grad(&gy, &w),
        );
    }
    for (what, x, gy) in [
        ("lead", t(&[2, 4]), t(&[3, 5])),
        ("rank", t(&[2, 3, 4]), t(&[6, 5])),
        ("scalar", scalar.clone(), t(&[3])),
    ] {
        same_error(
            &format!("linear_weight_grad {what}"),
            g.linear_weight_grad(&up(&x), &up(&gy)),
            cpu.linear_weight_grad(&x, &gy),
        );
    }
    // matmul: rank < 2, batch axes differ, inner sizes differ (for each flag).
    for (what, a, b, ta, tb) in [
        ("rank", t(&[4]), t(&[4, 2]), false, false),
        ("batch", t(&[2, 3, 4]), t(&[3, 4, 5]), false, false),
        ("inner", t(&[3, 4]), t(&[5, 6]), false, false),
        ("inner ta", t(&[3, 4]), t(&[4, 6]), true, false),
        ("inner tb", t(&[3, 4]), t(&[4, 6]), false, true),
    ] {
        same_error(
            &format!("matmul {what}"),
            g.matmul(&up(&a), &up(&b), ta, tb),
            cpu.matmul(&a, &b, ta, tb),
        );
    }
}

#[test]
fn grids_beyond_the_per_dimension_limit_match_cpu() {
    // More than 65,535 batch entries (the grid's z is cut into several dispatches) and more than
    // 65,535 output tiles (the tile index spreads over the grid's x and y). About 15 s on lavapipe:
    // the cost is the number of workgroups, not the arithmetic.
    let (g, cpu) = (gpu(), Cpu);
    let (a, b) = (rand(&[65_540, 2, 3], 61), rand(&[65_540, 3, 2], 62));
    let c_cpu = cpu.matmul(&a, &b, false, false).unwrap();
    let c_gpu = down(&g.matmul(&up(&a), &up(&b), false, false).unwrap());
    assert_close("matmul batch 65540", &c_gpu, &c_cpu);
    let (x, w) = (rand(&[1, 2], 63), rand(&[64 * 65_536 + 3, 2], 64));
    let y_cpu = cpu.linear(&x, &w, None).unwrap();
    let y_gpu = down(&g.linear(&up(&x), &up(&w), None).unwrap());
    assert_close("linear with 65,537 tiles", &y_gpu, &y_cpu);
}

/// The 128×128 GEMM tile (`GemmTile::T128`) against the default 64×64 one: the same bits where K
/// is one slice for both (K < 512; every output sums its k in the same order), and the CPU's
/// numbers where split-K cuts K differently (the conv weight adjoint). Ragged edges in M and N on
/// both tiles, every transpose, batched and the convolutions' implicit GEMMs.
#[test]
fn the_128_tile_gives_the_64_tiles_bits() {
    let g64 = gpu();
    let g128 = host_gpu::Gpu::new_with_gemm_tile(None, host_gpu::GemmTile::T128)
        .expect("a GPU adapter (lavapipe in CI)");
    let bits =
        |g: &host_gpu::Gpu, t: &GpuTensor| sim::conformance::refs::bits(&g.download(t).unwrap());
    let same = |what: &str, a: &GpuTensor, b: &GpuTensor| {
        let (a, b) = (bits(g64, a), bits(&g128, b));
        assert_eq!(a.len(), b.len(), "{what}: sizes");
        let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        let first = a.iter().zip(&b).position(|(x, y)| x != y);
        assert_eq!(
            differ, 0,
            "{what}: 64 vs 128 tile differ in {differ} values, first at {first:?}"
        );
    };
    let on128 = |t: &Tensor| g128.upload(t).unwrap();
    for (i, (lead, m, k, n)) in [
        (&[][..], 130, 33, 129),
        (&[2][..], 200, 300, 70),
        (&[][..], 5, 17, 3),
    ]
    .into_iter()
    .enumerate()
    {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let s = 900 + 10 * i as u64 + 2 * (ta as u64) + 4 * (tb as u64);
            let mut ash = lead.to_vec();
            ash.extend(if ta { [k, m] } else { [m, k] });
            let mut bsh = lead.to_vec();
            bsh.extend(if tb { [n, k] } else { [k, n] });
            let (a, b) = (rand(&ash, s), rand(&bsh, s + 1));
            same(
                &format!("matmul a {ash:?} b {bsh:?} ta {ta} tb {tb}"),
                &g64.matmul(&up(&a), &up(&b), ta, tb).unwrap(),
                &g128.matmul(&on128(&a), &on128(&b), ta, tb).unwrap(),
            );
        }
    }
    let (x, w, bias) = (
        rand(&[150, 300], 950),
        rand(&[140, 300], 951),
        rand(&[140], 952),
    );
    same(
        "linear with bias",
        &g64.linear(&up(&x), &up(&w), Some(&up(&bias))).unwrap(),
        &g128
            .linear(&on128(&x), &on128(&w), Some(&on128(&bias)))
            .unwrap(),
    );
    for (j, c) in [
        case([3, 16, 20, 20], [40, 16, 3, 3], (1, 1), (1, 1), true),
        case([2, 24, 17, 13], [36, 24, 3, 3], (2, 2), (0, 1), false),
        case([2, 8, 12, 12], [70, 8, 5, 5], (1, 1), (2, 2), true),
    ]
    .into_iter()
    .enumerate()
    {
        let s = 960 + 10 * j as u64;
        let (x, w) = (rand(&c.x, s), rand(&c.w, s + 1));
        let b = c.bias.then(|| rand(&[c.w[0]], s + 2));
        let y64 = g64
            .conv2d(&up(&x), &up(&w), b.as_ref().map(up).as_ref(), c.p)
            .unwrap();
        let y128 = g128
            .conv2d(&on128(&x), &on128(&w), b.as_ref().map(on128).as_ref(), c.p)
            .unwrap();
        same(&format!("conv2d case {j}"), &y64, &y128);
        let gy = rand(y64.shape(), s + 3);
        let hw = (c.x[2], c.x[3]);
        same(
            &format!("conv2d_input_grad case {j}"),
            &g64.conv2d_input_grad(&up(&gy), &up(&w), hw, c.p).unwrap(),
            &g128
                .conv2d_input_grad(&on128(&gy), &on128(&w), hw, c.p)
                .unwrap(),
        );
        let kw = (c.w[2], c.w[3]);
        let gw_cpu = Cpu.conv2d_weight_grad(&x, &gy, kw, c.p).unwrap();
        let gw128 = g128
            .conv2d_weight_grad(&on128(&x), &on128(&gy), kw, c.p)
            .unwrap();
        assert_close(
            &format!("conv2d_weight_grad case {j}, 128 tile"),
            &g128.download(&gw128).unwrap(),
            &gw_cpu,
        );
    }
}
