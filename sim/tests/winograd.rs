//! Tests of the Winograd F(2×2, 3×3) path of conv2d and of its input adjoint: parity with the
//! im2col path and with a naive f64 direct convolution written here, the adjoint identity in f64,
//! finite-difference gradients through the Winograd ops, the `Auto` dispatch, and errors for shapes
//! the path does not support. Thread-count independence is checked in `conv_linear.rs`.

use proptest::prelude::*;
use sim::conformance::refs::bits;
use sim::cpu::{
    ConvAlgo, WINOGRAD_MIN_CHANNELS, conv2d, conv2d_input_grad, conv2d_input_grad_with,
    conv2d_with, winograd_pays,
};
use sim::gradcheck::{check_gradient, test_tensor};
use sim::{Conv2dParams, Error, Tensor};

/// Direct 3x3-or-any-kernel convolution in f64 (stride 1): y[s][o][i][j] = b[o] +
/// Σ_{c,k,l} x[s][c][i+k−ph][j+l−pw] · w[o][c][k][l], zero outside x.
fn naive_conv(x: &Tensor, w: &Tensor, b: Option<&Tensor>, pad: (usize, usize)) -> Vec<f64> {
    let (n, c, h, wd) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (o, kh, kw) = (w.shape()[0], w.shape()[2], w.shape()[3]);
    let (ho, wo) = (h + 2 * pad.0 + 1 - kh, wd + 2 * pad.1 + 1 - kw);
    let xv: Vec<f32> = x.iter().copied().collect();
    let wv: Vec<f32> = w.iter().copied().collect();
    let mut y = Vec::with_capacity(n * o * ho * wo);
    for s in 0..n {
        for oc in 0..o {
            for i in 0..ho {
                for j in 0..wo {
                    let mut acc = b.map_or(0.0, |b| b[[oc].as_slice()] as f64);
                    for ci in 0..c {
                        for k in 0..kh {
                            for l in 0..kw {
                                let (r, q) = (
                                    (i + k) as isize - pad.0 as isize,
                                    (j + l) as isize - pad.1 as isize,
                                );
                                if r < 0 || q < 0 || r >= h as isize || q >= wd as isize {
                                    continue;
                                }
                                let xi = ((s * c + ci) * h + r as usize) * wd + q as usize;
                                let wi = ((oc * c + ci) * kh + k) * kw + l;
                                acc += xv[xi] as f64 * wv[wi] as f64;
                            }
                        }
                    }
                    y.push(acc);
                }
            }
        }
    }
    y
}

/// Direct input adjoint in f64 (stride 1): gx[s][c][r][q] = Σ_{o,i,j} gy[s][o][i][j] ·
/// w[o][c][r−i+ph][q−j+pw] over kernel indices inside the kernel, written as a scatter.
fn naive_input_grad(gy: &Tensor, w: &Tensor, hw: (usize, usize), pad: (usize, usize)) -> Vec<f64> {
    let (n, o, ho, wo) = (gy.shape()[0], gy.shape()[1], gy.shape()[2], gy.shape()[3]);
    let (c, kh, kw) = (w.shape()[1], w.shape()[2], w.shape()[3]);
    let (h, wd) = hw;
    let gv: Vec<f32> = gy.iter().copied().collect();
    let wv: Vec<f32> = w.iter().copied().collect();
    let mut gx = vec![0.0f64; n * c * h * wd];
    for s in 0..n {
        for oc in 0..o {
            for i in 0..ho {
                for j in 0..wo {
                    let gval = gv[((s * o + oc) * ho + i) * wo + j] as f64;
                    for ci in 0..c {
                        for k in 0..kh {
                            for l in 0..kw {
                                let (r, q) = (
                                    (i + k) as isize - pad.0 as isize,
                                    (j + l) as isize - pad.1 as isize,
                                );
                                if r < 0 || q < 0 || r >= h as isize || q >= wd as isize {
                                    continue;
                                }
                                let wi = ((oc * c + ci) * kh + k) * kw + l;
                                gx[((s * c + ci) * h + r as usize) * wd + q as usize] +=
                                    gval * wv[wi] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    gx
}

/// max |got − reference| ≤ 1e-5 · max |reference| (+ 1e-6 absolute, for all-zero references).
fn assert_rel(what: &str, got: &Tensor, reference: &[f64]) {
    assert_eq!(got.len(), reference.len(), "{what}: element count");
    let scale = reference.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let tol = 1e-5 * scale + 1e-6;
    for (i, (&g, &r)) in got.iter().zip(reference).enumerate() {
        assert!(
            (g as f64 - r).abs() <= tol,
            "{what}: element {i}: got {g}, reference {r} (tol {tol}, max |ref| {scale})"
        );
    }
}

fn as_f64(t: &Tensor) -> Vec<f64> {
    t.iter().map(|&v| v as f64).collect()
}

fn dot64(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b.iter())
        .map(|(&x, &y)| x as f64 * y as f64)
        .sum()
}

/// Forward and input adjoint of one shape: Winograd against im2col and against the naive loops,
/// and the adjoint identity ⟨conv(x), g⟩ = ⟨x, convᵀ(g)⟩ in f64 with the Winograd ops.
#[allow(clippy::too_many_arguments)]
fn check_shape(
    n: usize,
    c: usize,
    o: usize,
    h: usize,
    w: usize,
    pad: (usize, usize),
    seed: u64,
    bias: bool,
) {
    let p = Conv2dParams {
        stride: (1, 1),
        padding: pad,
    };
    let x = test_tensor(&[n, c, h, w], seed, 1.0);
    let wt = test_tensor(&[o, c, 3, 3], seed + 1, 0.5);
    let b = test_tensor(&[o], seed + 2, 1.0);
    let b = bias.then_some(&b);
    let what = format!("n{n} c{c} o{o} {h}x{w} pad {pad:?}");
    let yw = conv2d_with(ConvAlgo::Winograd, &x, &wt, b, p).unwrap();
    let yi = conv2d_with(ConvAlgo::Im2col, &x, &wt, b, p).unwrap();
    assert_eq!(yw.shape(), yi.shape(), "{what}");
    assert_rel(
        &format!("forward vs naive, {what}"),
        &yw,
        &naive_conv(&x, &wt, b, pad),
    );
    assert_rel(&format!("forward vs im2col, {what}"), &yw, &as_f64(&yi));

    let g = test_tensor(yw.shape(), seed + 3, 1.0);
    let gxw = conv2d_input_grad_with(ConvAlgo::Winograd, &g, &wt, (h, w), p).unwrap();
    let gxi = conv2d_input_grad_with(ConvAlgo::Im2col, &g, &wt, (h, w), p).unwrap();
    assert_eq!(gxw.shape(), x.shape(), "{what}");
    assert_rel(
        &format!("input adjoint vs naive, {what}"),
        &gxw,
        &naive_input_grad(&g, &wt, (h, w), pad),
    );
    assert_rel(
        &format!("input adjoint vs im2col, {what}"),
        &gxw,
        &as_f64(&gxi),
    );

    let y0 = conv2d_with(ConvAlgo::Winograd, &x, &wt, None, p).unwrap();
    let lhs = dot64(&y0, &g);
    let rhs = dot64(&x, &gxw);
    let scale: f64 = y0
        .iter()
        .zip(g.iter())
        .map(|(a, b)| (a * b).abs() as f64)
        .sum::<f64>()
        + 1.0;
    assert!(
        (lhs - rhs).abs() <= 1e-5 * scale,
        "{what}: <conv x, g> = {lhs} vs <x, convT g> = {rhs}"
    );
}

#[test]
fn winograd_matches_naive_and_im2col_on_fixed_shapes() {
    // Even and odd outputs, every padding, one tile, partial tiles, non-square, 1x1 output.
    // (n, c, o, h, w, padding)
    type Shape = (usize, usize, usize, usize, usize, (usize, usize));
    let shapes: &[Shape] = &[
        (2, 3, 4, 5, 5, (1, 1)),
        (1, 5, 3, 6, 6, (0, 0)),
        (2, 4, 2, 7, 4, (2, 2)),
        (1, 2, 3, 3, 3, (0, 0)),
        (3, 6, 5, 4, 9, (1, 0)),
        (2, 3, 2, 1, 1, (1, 1)),
        (1, 3, 3, 1, 2, (2, 1)),
        (2, 33, 35, 8, 8, (1, 1)),
        (2, 40, 32, 4, 4, (0, 0)),
        (9, 64, 72, 5, 7, (1, 2)),
    ];
    for (i, &(n, c, o, h, w, pad)) in shapes.iter().enumerate() {
        check_shape(n, c, o, h, w, pad, 10 * i as u64, i % 2 == 0);
    }
}

#[test]
fn several_chunks_with_a_partial_last_one() {
    // 9 tiles per sample: 57 samples per chunk, so 2 chunks; 1 tile per sample: 512 per chunk.
    check_shape(70, 3, 4, 6, 5, (1, 0), 7, true);
    check_shape(600, 2, 3, 4, 4, (0, 0), 8, true);
}

#[test]
fn known_values() {
    // 1x1x4x4 input 1..16, kernel of ones with centre 2, padding 0: window sums plus the centre.
    let x = sim::tensor(&[1, 1, 4, 4], (1..=16).map(|v| v as f32).collect()).unwrap();
    let mut k = vec![1.0f32; 9];
    k[4] = 2.0;
    let w = sim::tensor(&[1, 1, 3, 3], k).unwrap();
    let b = sim::tensor(&[1], vec![0.5]).unwrap();
    let y = conv2d_with(
        ConvAlgo::Winograd,
        &x,
        &w,
        Some(&b),
        Conv2dParams::new(1, 0),
    )
    .unwrap();
    // Window sums 54, 63, 90, 99; centres 6, 7, 10, 11.
    assert_eq!(y.as_slice().unwrap(), &[60.5, 70.5, 100.5, 110.5]);
}

#[test]
fn gradients_through_winograd_by_finite_differences() {
    let p = Conv2dParams::new(1, 1);
    let x = test_tensor(&[2, 5, 5, 6], 1, 1.0);
    let w = test_tensor(&[4, 5, 3, 3], 2, 0.5);
    let f = |t: &Tensor| conv2d_with(ConvAlgo::Winograd, t, &w, None, p).unwrap();
    let r = test_tensor(f(&x).shape(), 3, 1.0);
    let gx = conv2d_input_grad_with(ConvAlgo::Winograd, &r, &w, (5, 6), p).unwrap();
    let chk = check_gradient(|t| dot64(&r, &f(t)), &x, &gx, 1.0, 80);
    assert!(chk.ok(1e-3), "{chk:?}");
    // A wrong adjoint fails the same check.
    let mut bad = gx.clone();
    bad.as_slice_mut().unwrap()[7] += 0.1;
    let chk = check_gradient(|t| dot64(&r, &f(t)), &x, &bad, 1.0, usize::MAX);
    assert!(!chk.ok(1e-3), "{chk:?}");
}

#[test]
fn auto_picks_winograd_for_wide_layers_only() {
    let k = WINOGRAD_MIN_CHANNELS;
    let p1 = Conv2dParams::new(1, 1);
    // k → k channels at 8x8: Winograd forward and adjoint.
    let x = test_tensor(&[2, k, 8, 8], 1, 1.0);
    let w = test_tensor(&[k, k, 3, 3], 2, 0.1);
    let b = test_tensor(&[k], 3, 1.0);
    let y = conv2d(&x, &w, Some(&b), p1).unwrap();
    let yw = conv2d_with(ConvAlgo::Winograd, &x, &w, Some(&b), p1).unwrap();
    assert_eq!(bits(&y), bits(&yw));
    let gx = conv2d_input_grad(&y, &w, (8, 8), p1).unwrap();
    let gxw = conv2d_input_grad_with(ConvAlgo::Winograd, &y, &w, (8, 8), p1).unwrap();
    assert_eq!(bits(&gx), bits(&gxw));
    // Fewer input (forward) or output (adjoint) channels: im2col.
    let x = test_tensor(&[2, k - 1, 8, 8], 1, 1.0);
    let w = test_tensor(&[k, k - 1, 3, 3], 2, 0.1);
    let y = conv2d(&x, &w, None, p1).unwrap();
    let yi = conv2d_with(ConvAlgo::Im2col, &x, &w, None, p1).unwrap();
    assert_eq!(bits(&y), bits(&yi));
    let gx = conv2d_input_grad(&y, &w, (8, 8), p1).unwrap();
    let gxi = conv2d_input_grad_with(ConvAlgo::Im2col, &y, &w, (8, 8), p1).unwrap();
    assert_eq!(bits(&gx), bits(&gxi));
    // 4x4 input, padding 0 (2x2 output): Winograd forward; the adjoint's 4x4 Winograd output
    // would cost 64 multiplies against 36, so it stays on im2col.
    let p0 = Conv2dParams::new(1, 0);
    let x = test_tensor(&[2, k, 4, 4], 1, 1.0);
    let w = test_tensor(&[k, k, 3, 3], 2, 0.1);
    let y = conv2d(&x, &w, None, p0).unwrap();
    let yw = conv2d_with(ConvAlgo::Winograd, &x, &w, None, p0).unwrap();
    assert_eq!(bits(&y), bits(&yw));
    let gx = conv2d_input_grad(&y, &w, (4, 4), p0).unwrap();
    let gxi = conv2d_input_grad_with(ConvAlgo::Im2col, &y, &w, (4, 4), p0).unwrap();
    assert_eq!(bits(&gx), bits(&gxi));
    // Stride 2: im2col whatever the channels.
    let p2 = Conv2dParams::new(2, 1);
    let x = test_tensor(&[1, k, 8, 8], 1, 1.0);
    let y = conv2d(&x, &w, None, p2).unwrap();
    let yi = conv2d_with(ConvAlgo::Im2col, &x, &w, None, p2).unwrap();
    assert_eq!(bits(&y), bits(&yi));
    // The rule itself.
    assert!(winograd_pays(k, k, (16, 16), 256));
    assert!(!winograd_pays(k - 1, k, (16, 16), 256));
    assert!(!winograd_pays(k, k - 1, (16, 16), 256));
    assert!(winograd_pays(k, k, (2, 2), 4));
    assert!(!winograd_pays(k, k, (4, 4), 4));
}

fn is_param_err(r: sim::Result<Tensor>, op: &str) -> bool {
    matches!(r, Err(Error::Param { op: o, .. }) if o == op)
}

fn is_shape_err(r: sim::Result<Tensor>, op: &str) -> bool {
    matches!(r, Err(Error::Shape { op: o, .. }) if o == op)
}

#[test]
fn unsupported_shapes_are_errors_not_panics() {
    let x = test_tensor(&[1, 2, 6, 6], 1, 1.0);
    let w3 = test_tensor(&[2, 2, 3, 3], 2, 1.0);
    let w5 = test_tensor(&[2, 2, 5, 5], 2, 1.0);
    let wino = ConvAlgo::Winograd;
    assert!(is_param_err(
        conv2d_with(wino, &x, &w5, None, Conv2dParams::new(1, 1)),
        "conv2d"
    ));
    assert!(is_param_err(
        conv2d_with(wino, &x, &w3, None, Conv2dParams::new(2, 1)),
        "conv2d"
    ));
    let op = "conv2d_input_grad";
    let gy = test_tensor(&[1, 2, 10, 10], 3, 1.0);
    assert!(is_param_err(
        conv2d_input_grad_with(wino, &gy, &w3, (6, 6), Conv2dParams::new(1, 3)),
        op
    ));
    let gy = test_tensor(&[1, 2, 3, 3], 3, 1.0);
    assert!(is_param_err(
        conv2d_input_grad_with(wino, &gy, &w3, (6, 6), Conv2dParams::new(2, 1)),
        op
    ));
    // Shape errors come first, whatever the algorithm.
    let w_bad = test_tensor(&[2, 3, 3, 3], 2, 1.0);
    assert!(is_shape_err(
        conv2d_with(wino, &x, &w_bad, None, Conv2dParams::new(1, 1)),
        "conv2d"
    ));
    let gy = test_tensor(&[1, 2, 5, 5], 3, 1.0);
    assert!(is_shape_err(
        conv2d_input_grad_with(wino, &gy, &w3, (6, 6), Conv2dParams::new(1, 1)),
        op
    ));
    // Too small for the kernel.
    let tiny = test_tensor(&[1, 2, 1, 1], 1, 1.0);
    assert!(conv2d_with(wino, &tiny, &w3, None, Conv2dParams::new(1, 0)).is_err());
    // Padding > 2 is fine for the forward conv.
    let y = conv2d_with(wino, &x, &w3, None, Conv2dParams::new(1, 3)).unwrap();
    assert_rel("padding 3", &y, &naive_conv(&x, &w3, None, (3, 3)));
}

#[test]
fn empty_batch_and_channels() {
    let wino = ConvAlgo::Winograd;
    let p = Conv2dParams::new(1, 1);
    let b = test_tensor(&[3], 1, 1.0);
    // No input channels: the bias alone.
    let y = conv2d_with(
        wino,
        &Tensor::zeros(ndarray::IxDyn(&[2, 0, 4, 4])),
        &Tensor::zeros(ndarray::IxDyn(&[3, 0, 3, 3])),
        Some(&b),
        p,
    )
    .unwrap();
    assert_eq!(y.shape(), &[2, 3, 4, 4]);
    for (i, &v) in y.iter().enumerate() {
        assert_eq!(v, b[[(i / 16) % 3].as_slice()]);
    }
    // No samples, no output channels.
    let y = conv2d_with(
        wino,
        &Tensor::zeros(ndarray::IxDyn(&[0, 2, 4, 4])),
        &test_tensor(&[3, 2, 3, 3], 1, 1.0),
        None,
        p,
    )
    .unwrap();
    assert_eq!(y.shape(), &[0, 3, 4, 4]);
    let y = conv2d_with(
        wino,
        &test_tensor(&[1, 2, 4, 4], 1, 1.0),
        &Tensor::zeros(ndarray::IxDyn(&[0, 2, 3, 3])),
        None,
        p,
    )
    .unwrap();
    assert_eq!(y.shape(), &[1, 0, 4, 4]);
    let gx = conv2d_input_grad_with(
        wino,
        &Tensor::zeros(ndarray::IxDyn(&[1, 0, 4, 4])),
        &Tensor::zeros(ndarray::IxDyn(&[0, 2, 3, 3])),
        (4, 4),
        p,
    )
    .unwrap();
    assert_eq!(gx.shape(), &[1, 2, 4, 4]);
    assert!(gx.iter().all(|&v| v == 0.0));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn prop_winograd_matches_naive_and_im2col(
        n in 1usize..4, c in 1usize..41, o in 1usize..41,
        h in 1usize..12, w in 1usize..12, ph in 0usize..3, pw in 0usize..3,
        bias: bool, seed in 0u64..1000,
    ) {
        prop_assume!(h + 2 * ph >= 3 && w + 2 * pw >= 3);
        check_shape(n, c, o, h, w, (ph, pw), seed, bias);
    }
}
