//! Tests of sgemm, conv2d (+ input/weight adjoints), linear (+ adjoints) and matmul on the CPU:
//! parity with naive f64 direct loops, finite-difference gradient checks where the analytic
//! gradient comes from the adjoint ops, adjoint identities, bad shapes returning `Err`, bit-for-bit
//! independence of the rayon thread count, and property tests over random shapes.

use proptest::prelude::*;
use sim::cpu::{
    ConvAlgo, Gemm, conv2d, conv2d_input_grad, conv2d_input_grad_with, conv2d_weight_grad,
    conv2d_with, linear, linear_input_grad, linear_weight_grad, matmul, sgemm,
};
use sim::gradcheck::{check_gradient, test_tensor};
use sim::{Backend, Conv2dParams, Cpu, Error, Tensor};

// ---------------------------------------------------------------------------------------------
// naive references (f64 accumulation)

fn at4(t: &Tensor, i: [usize; 4]) -> f64 {
    t[[i[0], i[1], i[2], i[3]].as_slice()] as f64
}

/// Direct-loop convolution; returns (values, Σ|terms|) per output element for error bounds.
fn naive_conv(x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: Conv2dParams) -> (Vec<f64>, Vec<f64>) {
    let (n, c, h, wd) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (o, kh, kw) = (w.shape()[0], w.shape()[2], w.shape()[3]);
    let ho = (h + 2 * p.padding.0 - kh) / p.stride.0 + 1;
    let wo = (wd + 2 * p.padding.1 - kw) / p.stride.1 + 1;
    let mut y = vec![0.0; n * o * ho * wo];
    let mut a = vec![0.0; n * o * ho * wo];
    for s in 0..n {
        for oc in 0..o {
            for oh in 0..ho {
                for ow in 0..wo {
                    let mut acc = b.map_or(0.0, |b| b[[oc].as_slice()] as f64);
                    let mut aacc = acc.abs();
                    for ci in 0..c {
                        for i in 0..kh {
                            for j in 0..kw {
                                let ih = (oh * p.stride.0 + i) as isize - p.padding.0 as isize;
                                let iw = (ow * p.stride.1 + j) as isize - p.padding.1 as isize;
                                if ih < 0 || iw < 0 || ih >= h as isize || iw >= wd as isize {
                                    continue;
                                }
                                let t = at4(x, [s, ci, ih as usize, iw as usize])
                                    * at4(w, [oc, ci, i, j]);
                                acc += t;
                                aacc += t.abs();
                            }
                        }
                    }
                    let idx = ((s * o + oc) * ho + oh) * wo + ow;
                    y[idx] = acc;
                    a[idx] = aacc;
                }
            }
        }
    }
    (y, a)
}

/// Direct-loop transposed convolution (scatter of every gy element through the kernel).
fn naive_conv_input_grad(
    gy: &Tensor,
    w: &Tensor,
    hw: (usize, usize),
    p: Conv2dParams,
) -> (Vec<f64>, Vec<f64>) {
    let (n, o, ho, wo) = (gy.shape()[0], gy.shape()[1], gy.shape()[2], gy.shape()[3]);
    let (c, kh, kw) = (w.shape()[1], w.shape()[2], w.shape()[3]);
    let (h, wd) = hw;
    let mut gx = vec![0.0; n * c * h * wd];
    let mut a = vec![0.0; n * c * h * wd];
    for s in 0..n {
        for oc in 0..o {
            for oh in 0..ho {
                for ow in 0..wo {
                    for ci in 0..c {
                        for i in 0..kh {
                            for j in 0..kw {
                                let ih = (oh * p.stride.0 + i) as isize - p.padding.0 as isize;
                                let iw = (ow * p.stride.1 + j) as isize - p.padding.1 as isize;
                                if ih < 0 || iw < 0 || ih >= h as isize || iw >= wd as isize {
                                    continue;
                                }
                                let idx = ((s * c + ci) * h + ih as usize) * wd + iw as usize;
                                let t = at4(gy, [s, oc, oh, ow]) * at4(w, [oc, ci, i, j]);
                                gx[idx] += t;
                                a[idx] += t.abs();
                            }
                        }
                    }
                }
            }
        }
    }
    (gx, a)
}

fn naive_conv_weight_grad(
    x: &Tensor,
    gy: &Tensor,
    khw: (usize, usize),
    p: Conv2dParams,
) -> (Vec<f64>, Vec<f64>) {
    let (n, c, h, wd) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (o, ho, wo) = (gy.shape()[1], gy.shape()[2], gy.shape()[3]);
    let (kh, kw) = khw;
    let mut gw = vec![0.0; o * c * kh * kw];
    let mut a = vec![0.0; o * c * kh * kw];
    for oc in 0..o {
        for ci in 0..c {
            for i in 0..kh {
                for j in 0..kw {
                    let idx = ((oc * c + ci) * kh + i) * kw + j;
                    for s in 0..n {
                        for oh in 0..ho {
                            for ow in 0..wo {
                                let ih = (oh * p.stride.0 + i) as isize - p.padding.0 as isize;
                                let iw = (ow * p.stride.1 + j) as isize - p.padding.1 as isize;
                                if ih < 0 || iw < 0 || ih >= h as isize || iw >= wd as isize {
                                    continue;
                                }
                                let t = at4(gy, [s, oc, oh, ow])
                                    * at4(x, [s, ci, ih as usize, iw as usize]);
                                gw[idx] += t;
                                a[idx] += t.abs();
                            }
                        }
                    }
                }
            }
        }
    }
    (gw, a)
}

/// C[m,n] = op(A)·op(B) in f64 from row-major storage; returns (values, Σ|terms|).
#[allow(clippy::too_many_arguments)]
fn naive_gemm(
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
    a: &[f32],
    b: &[f32],
) -> (Vec<f64>, Vec<f64>) {
    let mut c = vec![0.0; m * n];
    let mut abs = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            for p in 0..k {
                let av = if ta { a[p * m + i] } else { a[i * k + p] } as f64;
                let bv = if tb { b[j * k + p] } else { b[p * n + j] } as f64;
                c[i * n + j] += av * bv;
                abs[i * n + j] += (av * bv).abs();
            }
        }
    }
    (c, abs)
}

/// Every element within f32 accumulation error of the reference: |got − ref| ≤ 1e-5·Σ|terms| + 1e-6.
fn assert_close(what: &str, got: &Tensor, reference: &(Vec<f64>, Vec<f64>)) {
    let (r, a) = reference;
    assert_eq!(got.len(), r.len(), "{what}: element count");
    for (i, (&g, (&rv, &av))) in got.iter().zip(r.iter().zip(a.iter())).enumerate() {
        let tol = 1e-5 * av + 1e-6;
        assert!(
            (g as f64 - rv).abs() <= tol,
            "{what}: element {i}: got {g}, reference {rv} (tol {tol})"
        );
    }
}

fn dot64(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b.iter())
        .map(|(&x, &y)| x as f64 * y as f64)
        .sum()
}

// ---------------------------------------------------------------------------------------------
// the stride/padding/shape combos

/// (n, c, h, w, o, kh, kw, stride, padding)
type Case = (
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    (usize, usize),
    (usize, usize),
);

const CASES: &[Case] = &[
    (2, 3, 5, 5, 4, 3, 3, (1, 1), (1, 1)),   // stride 1 pad 1
    (2, 3, 6, 5, 4, 3, 3, (1, 1), (0, 0)),   // stride 1 pad 0, non-square input
    (2, 2, 7, 7, 3, 3, 3, (2, 2), (1, 1)),   // stride 2 pad 1
    (1, 2, 8, 7, 3, 3, 3, (2, 2), (0, 0)),   // stride 2 pad 0: the last row/column are dropped
    (2, 3, 6, 7, 2, 2, 3, (2, 1), (0, 1)),   // non-square kernel, stride and padding
    (1, 2, 2, 3, 3, 3, 3, (1, 1), (1, 1)),   // kernel as large as the padded input
    (3, 4, 4, 4, 5, 1, 1, (1, 1), (0, 0)),   // 1x1 kernel
    (2, 1, 3, 9, 2, 1, 4, (1, 3), (1, 2)),   // wide kernel, stride 3 drops columns
    (9, 4, 10, 10, 5, 3, 3, (1, 1), (1, 1)), // several forward chunks, a partial last one
    (5, 2, 32, 32, 3, 3, 3, (1, 1), (1, 1)), // several weight-adjoint chunks
    // ≥ 16 input channels: channels-last patch layout
    (3, 16, 5, 6, 4, 3, 3, (1, 1), (1, 1)),
    (2, 20, 7, 7, 3, 3, 2, (2, 1), (0, 1)),
    (2, 16, 8, 7, 5, 3, 3, (2, 2), (0, 0)),
    (9, 16, 10, 10, 5, 3, 3, (1, 1), (1, 1)),
    (40, 17, 4, 4, 6, 3, 3, (1, 1), (0, 0)),
    (1, 16, 2, 3, 2, 3, 3, (1, 1), (1, 1)),
];

fn case_tensors(case: &Case, seed: u64) -> (Tensor, Tensor, Tensor, Conv2dParams) {
    let &(n, c, h, w, o, kh, kw, stride, padding) = case;
    let x = test_tensor(&[n, c, h, w], seed, 1.0);
    let wt = test_tensor(&[o, c, kh, kw], seed + 1, 0.5);
    let b = test_tensor(&[o], seed + 2, 1.0);
    (x, wt, b, Conv2dParams { stride, padding })
}

// ---------------------------------------------------------------------------------------------
// sgemm

#[test]
fn sgemm_matches_naive_for_every_transpose_and_alpha_beta() {
    for &(m, n, k) in &[
        (1, 1, 1),
        (3, 5, 7),
        (17, 33, 9),
        (64, 48, 130),
        (5, 1, 300),
    ] {
        for ta in [false, true] {
            for tb in [false, true] {
                let a = test_tensor(&[m * k], 11, 1.0);
                let b = test_tensor(&[k * n], 12, 1.0);
                let c0 = test_tensor(&[m * n], 13, 1.0);
                let (alpha, beta) = (0.75f32, -0.5f32);
                let mut c = c0.as_slice().unwrap().to_vec();
                let g = Gemm {
                    m,
                    n,
                    k,
                    trans_a: ta,
                    trans_b: tb,
                };
                sgemm(
                    g,
                    alpha,
                    a.as_slice().unwrap(),
                    b.as_slice().unwrap(),
                    beta,
                    &mut c,
                )
                .unwrap();
                let (r, abs) = naive_gemm(
                    m,
                    n,
                    k,
                    ta,
                    tb,
                    a.as_slice().unwrap(),
                    b.as_slice().unwrap(),
                );
                for i in 0..m * n {
                    let want = alpha as f64 * r[i] + beta as f64 * c0.as_slice().unwrap()[i] as f64;
                    let tol = 1e-5 * (abs[i] + c0.as_slice().unwrap()[i].abs() as f64) + 1e-6;
                    assert!(
                        (c[i] as f64 - want).abs() <= tol,
                        "{g:?}: c[{i}] = {} vs {want}",
                        c[i]
                    );
                }
            }
        }
    }
}

#[test]
fn sgemm_beta_zero_ignores_nan_in_c_and_k_zero_scales() {
    let a = vec![1.0f32; 6];
    let b = vec![2.0f32; 6];
    let mut c = vec![f32::NAN; 4];
    let g = Gemm {
        m: 2,
        n: 2,
        k: 3,
        trans_a: false,
        trans_b: false,
    };
    sgemm(g, 1.0, &a, &b, 0.0, &mut c).unwrap();
    assert_eq!(c, vec![6.0; 4]);
    let mut c = vec![3.0f32; 4];
    let g0 = Gemm { k: 0, ..g };
    sgemm(g0, 1.0, &[], &[], 0.5, &mut c).unwrap();
    assert_eq!(c, vec![1.5; 4]);
}

#[test]
fn sgemm_short_slices_are_errors() {
    let g = Gemm {
        m: 4,
        n: 3,
        k: 2,
        trans_a: false,
        trans_b: true,
    };
    let mut c = vec![0.0f32; 12];
    assert!(matches!(
        sgemm(g, 1.0, &[0.0; 7], &[0.0; 6], 0.0, &mut c),
        Err(Error::Shape { op: "sgemm", .. })
    ));
    assert!(sgemm(g, 1.0, &[0.0; 8], &[0.0; 5], 0.0, &mut c).is_err());
    assert!(sgemm(g, 1.0, &[0.0; 8], &[0.0; 6], 0.0, &mut c[..11]).is_err());
    let huge = Gemm {
        m: usize::MAX,
        n: 2,
        k: 2,
        trans_a: false,
        trans_b: false,
    };
    assert!(sgemm(huge, 1.0, &[], &[], 0.0, &mut c).is_err());
}

// ---------------------------------------------------------------------------------------------
// conv2d parity

#[test]
fn conv2d_matches_naive() {
    for (ci, case) in CASES.iter().enumerate() {
        let (x, w, b, p) = case_tensors(case, 100 + ci as u64);
        let y = conv2d(&x, &w, Some(&b), p).unwrap();
        assert_close(
            &format!("conv2d {case:?}"),
            &y,
            &naive_conv(&x, &w, Some(&b), p),
        );
        let y0 = conv2d(&x, &w, None, p).unwrap();
        assert_close(
            &format!("conv2d nobias {case:?}"),
            &y0,
            &naive_conv(&x, &w, None, p),
        );
    }
}

#[test]
fn conv2d_input_grad_matches_naive() {
    for (ci, case) in CASES.iter().enumerate() {
        let (x, w, _, p) = case_tensors(case, 200 + ci as u64);
        let hw = (x.shape()[2], x.shape()[3]);
        let y = conv2d(&x, &w, None, p).unwrap();
        let gy = test_tensor(y.shape(), 300 + ci as u64, 1.0);
        let gx = conv2d_input_grad(&gy, &w, hw, p).unwrap();
        assert_eq!(gx.shape(), x.shape());
        assert_close(
            &format!("input_grad {case:?}"),
            &gx,
            &naive_conv_input_grad(&gy, &w, hw, p),
        );
    }
}

#[test]
fn conv2d_weight_grad_matches_naive() {
    for (ci, case) in CASES.iter().enumerate() {
        let (x, w, _, p) = case_tensors(case, 400 + ci as u64);
        let khw = (w.shape()[2], w.shape()[3]);
        let y = conv2d(&x, &w, None, p).unwrap();
        let gy = test_tensor(y.shape(), 500 + ci as u64, 1.0);
        let gw = conv2d_weight_grad(&x, &gy, khw, p).unwrap();
        assert_eq!(gw.shape(), w.shape());
        assert_close(
            &format!("weight_grad {case:?}"),
            &gw,
            &naive_conv_weight_grad(&x, &gy, khw, p),
        );
    }
}

#[test]
fn conv2d_known_values() {
    // 1x1x3x3 input 1..9, 2x2 kernel of ones, stride 1, no padding: sums of 2x2 windows.
    let x = sim::tensor(&[1, 1, 3, 3], (1..=9).map(|v| v as f32).collect()).unwrap();
    let w = sim::tensor(&[1, 1, 2, 2], vec![1.0; 4]).unwrap();
    let b = sim::tensor(&[1], vec![0.5]).unwrap();
    let y = conv2d(&x, &w, Some(&b), Conv2dParams::new(1, 0)).unwrap();
    assert_eq!(y.shape(), &[1, 1, 2, 2]);
    assert_eq!(y.as_slice().unwrap(), &[12.5, 16.5, 24.5, 28.5]);
    // Padding 1, stride 2: windows at corners of the padded 5x5 grid.
    let y = conv2d(&x, &w, None, Conv2dParams::new(2, 1)).unwrap();
    assert_eq!(y.as_slice().unwrap(), &[1.0, 5.0, 11.0, 28.0]);
}

#[test]
fn conv2d_accepts_non_standard_layout() {
    let (x, w, b, p) = case_tensors(&CASES[0], 7);
    // Same values, stored transposed-then-permuted back (non-standard strides).
    let xt = x.clone().reversed_axes();
    let xt = xt.as_standard_layout().into_owned().reversed_axes();
    assert!(xt.as_slice().is_none());
    assert_eq!(
        conv2d(&xt, &w, Some(&b), p).unwrap(),
        conv2d(&x, &w, Some(&b), p).unwrap()
    );
}

// ---------------------------------------------------------------------------------------------
// gradient checks: f(θ) = <r, conv2d(x, w, b)>, analytic gradients from the adjoint ops

#[test]
fn conv2d_gradients_by_finite_differences() {
    for (ci, case) in CASES.iter().enumerate() {
        let (x, w, b, p) = case_tensors(case, 600 + ci as u64);
        let hw = (x.shape()[2], x.shape()[3]);
        let khw = (w.shape()[2], w.shape()[3]);
        let y = conv2d(&x, &w, Some(&b), p).unwrap();
        let r = test_tensor(y.shape(), 700 + ci as u64, 1.0);
        let f = |x: &Tensor, w: &Tensor, b: &Tensor| dot64(&r, &conv2d(x, w, Some(b), p).unwrap());
        // f is linear in each argument, so central differences are exact up to rounding; a large
        // step (1.0) keeps the f32 rounding of f small against the difference.

        let gx = conv2d_input_grad(&r, &w, hw, p).unwrap();
        let chk = check_gradient(|t| f(t, &w, &b), &x, &gx, 1.0, 60);
        assert!(chk.ok(1e-3), "d/dx {case:?}: {chk:?}");

        let gw = conv2d_weight_grad(&x, &r, khw, p).unwrap();
        let chk = check_gradient(|t| f(&x, t, &b), &w, &gw, 1.0, 60);
        assert!(chk.ok(1e-3), "d/dw {case:?}: {chk:?}");

        // Bias gradient: Σ of r over samples and positions, per channel (direct loop).
        let o = w.shape()[0];
        let mut gb = vec![0.0f32; o];
        for (i, &v) in r.iter().enumerate() {
            gb[(i / (r.shape()[2] * r.shape()[3])) % o] += v;
        }
        let gb = sim::tensor(&[o], gb).unwrap();
        let chk = check_gradient(|t| f(&x, &w, t), &b, &gb, 1.0, 60);
        assert!(chk.ok(1e-3), "d/db {case:?}: {chk:?}");
    }
}

#[test]
fn gradient_check_catches_a_wrong_adjoint() {
    // Sanity of the procedure above: a gradient with one wrong coordinate fails.
    let (x, w, b, p) = case_tensors(&CASES[2], 1);
    let y = conv2d(&x, &w, Some(&b), p).unwrap();
    let r = test_tensor(y.shape(), 2, 1.0);
    let mut gx = conv2d_input_grad(&r, &w, (7, 7), p).unwrap();
    gx.as_slice_mut().unwrap()[0] += 0.1;
    let chk = check_gradient(
        |t| dot64(&r, &conv2d(t, &w, Some(&b), p).unwrap()),
        &x,
        &gx,
        0.25,
        usize::MAX,
    );
    assert!(!chk.ok(1e-3), "{chk:?}");
}

#[test]
fn conv2d_adjoint_identities() {
    for (ci, case) in CASES.iter().enumerate() {
        let (x, w, _, p) = case_tensors(case, 800 + ci as u64);
        let hw = (x.shape()[2], x.shape()[3]);
        let khw = (w.shape()[2], w.shape()[3]);
        let y = conv2d(&x, &w, None, p).unwrap();
        let g = test_tensor(y.shape(), 900 + ci as u64, 1.0);
        let lhs = dot64(&y, &g);
        let rhs_x = dot64(&x, &conv2d_input_grad(&g, &w, hw, p).unwrap());
        let rhs_w = dot64(&w, &conv2d_weight_grad(&x, &g, khw, p).unwrap());
        let scale = y
            .iter()
            .zip(g.iter())
            .map(|(a, b)| (a * b).abs() as f64)
            .sum::<f64>()
            + 1.0;
        assert!(
            (lhs - rhs_x).abs() <= 1e-5 * scale,
            "<conv x, g> = {lhs} vs <x, convT g> = {rhs_x} {case:?}"
        );
        assert!(
            (lhs - rhs_w).abs() <= 1e-5 * scale,
            "<conv x, g> = {lhs} vs <w, gw> = {rhs_w} {case:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// bad shapes

fn t(shape: &[usize]) -> Tensor {
    Tensor::zeros(ndarray::IxDyn(shape))
}

fn is_err_of(r: sim::Result<Tensor>, op: &str) -> bool {
    match r {
        Err(Error::Shape { op: o, .. }) | Err(Error::Param { op: o, .. }) => o == op,
        _ => false,
    }
}

#[test]
fn conv2d_bad_shapes_are_errors() {
    let p = Conv2dParams::new(1, 1);
    let x = t(&[2, 3, 5, 5]);
    let w = t(&[4, 3, 3, 3]);
    assert!(is_err_of(conv2d(&t(&[3, 5, 5]), &w, None, p), "conv2d"));
    assert!(is_err_of(conv2d(&x, &t(&[4, 3, 3]), None, p), "conv2d"));
    assert!(is_err_of(conv2d(&x, &t(&[4, 2, 3, 3]), None, p), "conv2d"));
    assert!(is_err_of(conv2d(&x, &w, Some(&t(&[3])), p), "conv2d"));
    assert!(is_err_of(conv2d(&x, &w, Some(&t(&[4, 1])), p), "conv2d"));
    assert!(is_err_of(conv2d(&x, &t(&[4, 3, 8, 3]), None, p), "conv2d")); // kernel too large
    assert!(is_err_of(
        conv2d(&x, &w, None, Conv2dParams::new(0, 1)),
        "conv2d"
    ));
    assert!(is_err_of(conv2d(&x, &t(&[4, 3, 0, 3]), None, p), "conv2d"));
    // the message names the shapes
    let e = conv2d(&x, &t(&[4, 2, 3, 3]), None, p)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("[2, 3, 5, 5]") && e.contains("[4, 2, 3, 3]"),
        "{e}"
    );
}

#[test]
fn conv2d_input_grad_bad_shapes_are_errors() {
    let p = Conv2dParams::new(2, 0);
    let w = t(&[4, 3, 3, 3]);
    // input 7x7, stride 2, no padding -> 3x3 output.
    assert!(conv2d_input_grad(&t(&[2, 4, 3, 3]), &w, (7, 7), p).is_ok());
    assert!(conv2d_input_grad(&t(&[2, 4, 3, 3]), &w, (8, 8), p).is_ok()); // stride drops a row
    let op = "conv2d_input_grad";
    assert!(is_err_of(
        conv2d_input_grad(&t(&[2, 4, 3, 3]), &w, (9, 9), p),
        op
    ));
    assert!(is_err_of(
        conv2d_input_grad(&t(&[2, 5, 3, 3]), &w, (7, 7), p),
        op
    ));
    assert!(is_err_of(
        conv2d_input_grad(&t(&[4, 3, 3]), &w, (7, 7), p),
        op
    ));
    assert!(is_err_of(
        conv2d_input_grad(&t(&[2, 4, 3, 3]), &t(&[4, 3, 3]), (7, 7), p),
        op
    ));
    assert!(is_err_of(
        conv2d_input_grad(&t(&[2, 4, 3, 3]), &w, (2, 2), p),
        op
    )); // kernel too large
    assert!(is_err_of(
        conv2d_input_grad(&t(&[2, 4, 3, 2]), &w, (7, 7), p),
        op
    ));
}

#[test]
fn conv2d_weight_grad_bad_shapes_are_errors() {
    let p = Conv2dParams::new(1, 1);
    let x = t(&[2, 3, 5, 5]);
    let op = "conv2d_weight_grad";
    assert!(conv2d_weight_grad(&x, &t(&[2, 4, 5, 5]), (3, 3), p).is_ok());
    assert!(is_err_of(
        conv2d_weight_grad(&x, &t(&[3, 4, 5, 5]), (3, 3), p),
        op
    ));
    assert!(is_err_of(
        conv2d_weight_grad(&x, &t(&[2, 4, 4, 5]), (3, 3), p),
        op
    ));
    assert!(is_err_of(
        conv2d_weight_grad(&x, &t(&[2, 4, 5]), (3, 3), p),
        op
    ));
    assert!(is_err_of(
        conv2d_weight_grad(&t(&[3, 5, 5]), &t(&[2, 4, 5, 5]), (3, 3), p),
        op
    ));
    assert!(is_err_of(
        conv2d_weight_grad(&x, &t(&[2, 4, 5, 5]), (9, 3), p),
        op
    ));
    assert!(is_err_of(
        conv2d_weight_grad(&x, &t(&[2, 4, 5, 5]), (0, 3), p),
        op
    ));
}

#[test]
fn conv2d_empty_batch_and_channels() {
    let p = Conv2dParams::new(1, 1);
    let y = conv2d(&t(&[0, 3, 5, 5]), &t(&[4, 3, 3, 3]), None, p).unwrap();
    assert_eq!(y.shape(), &[0, 4, 5, 5]);
    let b = sim::tensor(&[2], vec![1.0, -2.0]).unwrap();
    let y = conv2d(&t(&[1, 0, 2, 2]), &t(&[2, 0, 3, 3]), Some(&b), p).unwrap();
    assert_eq!(
        y.as_slice().unwrap(),
        &[1.0, 1.0, 1.0, 1.0, -2.0, -2.0, -2.0, -2.0]
    );
    let gw = conv2d_weight_grad(&t(&[0, 3, 5, 5]), &t(&[0, 4, 5, 5]), (3, 3), p).unwrap();
    assert_eq!(gw.shape(), &[4, 3, 3, 3]);
    let gx = conv2d_input_grad(&t(&[0, 4, 5, 5]), &t(&[4, 3, 3, 3]), (5, 5), p).unwrap();
    assert_eq!(gx.shape(), &[0, 3, 5, 5]);
}

// ---------------------------------------------------------------------------------------------
// linear and matmul

fn naive_linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> (Vec<f64>, Vec<f64>) {
    let (out, inp) = (w.shape()[0], w.shape()[1]);
    let rows = x.len() / inp;
    let (mut y, mut a) = naive_gemm(
        rows,
        out,
        inp,
        false,
        true,
        x.as_slice().unwrap(),
        w.as_slice().unwrap(),
    );
    if let Some(b) = b {
        for r in 0..rows {
            for o in 0..out {
                y[r * out + o] += b[[o].as_slice()] as f64;
                a[r * out + o] += (b[[o].as_slice()] as f64).abs();
            }
        }
    }
    (y, a)
}

#[test]
fn linear_and_adjoints_match_naive_for_any_leading_axes() {
    for (si, lead) in [vec![], vec![5], vec![2, 3], vec![1, 2, 2]]
        .into_iter()
        .enumerate()
    {
        let (inp, out) = (7, 4);
        let mut xs = lead.clone();
        xs.push(inp);
        let mut ys = lead.clone();
        ys.push(out);
        let x = test_tensor(&xs, 30 + si as u64, 1.0);
        let w = test_tensor(&[out, inp], 31, 0.5);
        let b = test_tensor(&[out], 32, 1.0);
        let y = linear(&x, &w, Some(&b)).unwrap();
        assert_eq!(y.shape(), ys.as_slice());
        assert_close("linear", &y, &naive_linear(&x, &w, Some(&b)));
        let y0 = linear(&x, &w, None).unwrap();
        assert_close("linear nobias", &y0, &naive_linear(&x, &w, None));

        let rows = x.len() / inp;
        let gy = test_tensor(&ys, 33, 1.0);
        let gx = linear_input_grad(&gy, &w).unwrap();
        assert_eq!(gx.shape(), x.shape());
        let r = naive_gemm(
            rows,
            inp,
            out,
            false,
            false,
            gy.as_slice().unwrap(),
            w.as_slice().unwrap(),
        );
        assert_close("linear_input_grad", &gx, &r);
        let gw = linear_weight_grad(&x, &gy).unwrap();
        assert_eq!(gw.shape(), &[out, inp]);
        let r = naive_gemm(
            out,
            inp,
            rows,
            true,
            false,
            gy.as_slice().unwrap(),
            x.as_slice().unwrap(),
        );
        assert_close("linear_weight_grad", &gw, &r);
    }
}

#[test]
fn linear_gradients_by_finite_differences() {
    let x = test_tensor(&[3, 2, 6], 40, 1.0);
    let w = test_tensor(&[5, 6], 41, 0.5);
    let b = test_tensor(&[5], 42, 1.0);
    let r = test_tensor(&[3, 2, 5], 43, 1.0);
    let f = |x: &Tensor, w: &Tensor, b: &Tensor| dot64(&r, &linear(x, w, Some(b)).unwrap());
    let gx = linear_input_grad(&r, &w).unwrap();
    assert!(check_gradient(|t| f(t, &w, &b), &x, &gx, 0.25, 100).ok(1e-3));
    let gw = linear_weight_grad(&x, &r).unwrap();
    assert!(check_gradient(|t| f(&x, t, &b), &w, &gw, 0.25, 100).ok(1e-3));
    let mut gb = vec![0.0f32; 5];
    r.iter().enumerate().for_each(|(i, v)| gb[i % 5] += v);
    let gb = sim::tensor(&[5], gb).unwrap();
    assert!(check_gradient(|t| f(&x, &w, t), &b, &gb, 0.25, 100).ok(1e-3));
}

#[test]
fn linear_bad_shapes_are_errors() {
    let w = t(&[4, 7]);
    assert!(is_err_of(linear(&t(&[3, 6]), &w, None), "linear"));
    assert!(is_err_of(linear(&t(&[]), &w, None), "linear"));
    assert!(is_err_of(
        linear(&t(&[3, 7]), &t(&[4, 7, 1]), None),
        "linear"
    ));
    assert!(is_err_of(linear(&t(&[3, 7]), &w, Some(&t(&[7]))), "linear"));
    assert!(is_err_of(
        linear_input_grad(&t(&[3, 7]), &w),
        "linear_input_grad"
    ));
    assert!(is_err_of(
        linear_input_grad(&t(&[3, 4]), &t(&[4])),
        "linear_input_grad"
    ));
    assert!(is_err_of(
        linear_weight_grad(&t(&[3, 7]), &t(&[2, 4])),
        "linear_weight_grad"
    ));
    assert!(is_err_of(
        linear_weight_grad(&t(&[2, 3, 7]), &t(&[3, 2, 4])),
        "linear_weight_grad"
    ));
    assert!(is_err_of(
        linear_weight_grad(&t(&[]), &t(&[4])),
        "linear_weight_grad"
    ));
}

fn naive_matmul(a: &Tensor, b: &Tensor, ta: bool, tb: bool) -> (Vec<f64>, Vec<f64>) {
    let nd = a.ndim();
    let (ra, rb) = (&a.shape()[nd - 2..], &b.shape()[nd - 2..]);
    let (m, k) = if ta { (ra[1], ra[0]) } else { (ra[0], ra[1]) };
    let n = if tb { rb[0] } else { rb[1] };
    let batch: usize = a.shape()[..nd - 2].iter().product();
    let (asl, bsl) = (a.as_slice().unwrap(), b.as_slice().unwrap());
    let (mut c, mut abs) = (vec![], vec![]);
    for i in 0..batch {
        let (ci, ai) = naive_gemm(
            m,
            n,
            k,
            ta,
            tb,
            &asl[i * m * k..(i + 1) * m * k],
            &bsl[i * k * n..(i + 1) * k * n],
        );
        c.extend(ci);
        abs.extend(ai);
    }
    (c, abs)
}

fn mm_shape(lead: &[usize], r: usize, c: usize, trans: bool) -> Vec<usize> {
    let mut s = lead.to_vec();
    if trans {
        s.extend([c, r]);
    } else {
        s.extend([r, c]);
    }
    s
}

#[test]
fn matmul_matches_naive_for_every_transpose() {
    for (li, lead) in [vec![], vec![3], vec![2, 3], vec![9]]
        .into_iter()
        .enumerate()
    {
        for ta in [false, true] {
            for tb in [false, true] {
                let (m, k, n) = (4, 6, 5);
                let a = test_tensor(&mm_shape(&lead, m, k, ta), 50 + li as u64, 1.0);
                let b = test_tensor(&mm_shape(&lead, k, n, tb), 51, 1.0);
                let c = matmul(&a, &b, ta, tb).unwrap();
                assert_eq!(c.shape(), mm_shape(&lead, m, n, false).as_slice());
                assert_close(
                    &format!("matmul {lead:?} {ta} {tb}"),
                    &c,
                    &naive_matmul(&a, &b, ta, tb),
                );
            }
        }
    }
}

#[test]
fn matmul_gradients_by_finite_differences() {
    // C = A·B; dL/dA = G·Bᵀ, dL/dB = Aᵀ·G, both matmuls themselves.
    let a = test_tensor(&[2, 3, 4], 60, 1.0);
    let b = test_tensor(&[2, 4, 5], 61, 1.0);
    let r = test_tensor(&[2, 3, 5], 62, 1.0);
    let ga = matmul(&r, &b, false, true).unwrap();
    let gb = matmul(&a, &r, true, false).unwrap();
    let chk = check_gradient(
        |t| dot64(&r, &matmul(t, &b, false, false).unwrap()),
        &a,
        &ga,
        0.25,
        100,
    );
    assert!(chk.ok(1e-3), "{chk:?}");
    let chk = check_gradient(
        |t| dot64(&r, &matmul(&a, t, false, false).unwrap()),
        &b,
        &gb,
        0.25,
        100,
    );
    assert!(chk.ok(1e-3), "{chk:?}");
}

#[test]
fn matmul_bad_shapes_are_errors() {
    let op = "matmul";
    assert!(is_err_of(matmul(&t(&[3]), &t(&[3, 2]), false, false), op));
    assert!(is_err_of(
        matmul(&t(&[2, 3]), &t(&[4, 2]), false, false),
        op
    ));
    assert!(is_err_of(matmul(&t(&[2, 3]), &t(&[4, 2]), true, false), op)); // [3,2]·[4,2]
    assert!(matmul(&t(&[2, 3]), &t(&[4, 2]), true, true).is_ok()); // [3,2]·[2,4]
    assert!(is_err_of(
        matmul(&t(&[2, 2, 3]), &t(&[3, 3, 2]), false, false),
        op
    ));
    assert!(is_err_of(
        matmul(&t(&[2, 2, 3]), &t(&[3, 2]), false, false),
        op
    ));
}

// ---------------------------------------------------------------------------------------------
// thread-count independence

fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn results_do_not_depend_on_thread_count() {
    // Shapes large enough that `gemm` really splits work among threads, and that take both the
    // parallel-chunk and the serial-chunk paths of the convolutions.
    let conv_cases: &[Case] = &[
        (16, 32, 8, 8, 64, 3, 3, (1, 1), (1, 1)), // 2 forward chunks: serial path, pool GEMM
        (64, 16, 8, 8, 48, 3, 3, (1, 1), (1, 1)), // 8 chunks: parallel path
        (64, 64, 4, 4, 96, 3, 3, (1, 1), (0, 0)), // 2x2 output
        (24, 8, 9, 9, 16, 3, 3, (2, 2), (1, 1)),
    ];
    let run = || {
        let mut outs = vec![];
        for (ci, case) in conv_cases.iter().enumerate() {
            let (x, w, b, p) = case_tensors(case, 1000 + ci as u64);
            let y = conv2d(&x, &w, Some(&b), p).unwrap();
            let g = test_tensor(y.shape(), 1100 + ci as u64, 1.0);
            outs.push(bits(&y));
            outs.push(bits(
                &conv2d_input_grad(&g, &w, (x.shape()[2], x.shape()[3]), p).unwrap(),
            ));
            outs.push(bits(
                &conv2d_weight_grad(&x, &g, (w.shape()[2], w.shape()[3]), p).unwrap(),
            ));
        }
        // Winograd forward and input adjoint, forced: one chunk, several chunks with a partial
        // last one (9 tiles per sample → 57 samples per chunk), 5 chunks of 8 samples (chunks in
        // parallel with 1 thread, stages in parallel with 2 and 3), 13 chunks (chunks in
        // parallel for 1–3 threads), a 2x2 output, odd sizes.
        let wino_cases: &[Case] = &[
            (16, 32, 8, 8, 64, 3, 3, (1, 1), (1, 1)),
            (70, 8, 6, 5, 12, 3, 3, (1, 1), (1, 0)),
            (40, 6, 16, 16, 8, 3, 3, (1, 1), (1, 1)),
            (104, 3, 16, 16, 4, 3, 3, (1, 1), (1, 1)),
            (40, 48, 4, 4, 40, 3, 3, (1, 1), (0, 0)),
            (6, 20, 7, 9, 24, 3, 3, (1, 1), (2, 1)),
        ];
        for (ci, case) in wino_cases.iter().enumerate() {
            let (x, w, b, p) = case_tensors(case, 1200 + ci as u64);
            let y = conv2d_with(ConvAlgo::Winograd, &x, &w, Some(&b), p).unwrap();
            let g = test_tensor(y.shape(), 1300 + ci as u64, 1.0);
            let hw = (x.shape()[2], x.shape()[3]);
            outs.push(bits(&y));
            outs.push(bits(
                &conv2d_input_grad_with(ConvAlgo::Winograd, &g, &w, hw, p).unwrap(),
            ));
        }
        let a = test_tensor(&[300, 700], 1, 1.0);
        let b = test_tensor(&[500, 700], 2, 1.0);
        let mut c = vec![0.0f32; 300 * 500];
        let g = Gemm {
            m: 300,
            n: 500,
            k: 700,
            trans_a: false,
            trans_b: true,
        };
        sgemm(
            g,
            1.0,
            a.as_slice().unwrap(),
            b.as_slice().unwrap(),
            0.0,
            &mut c,
        )
        .unwrap();
        outs.push(c.iter().map(|v| v.to_bits()).collect());
        let x = test_tensor(&[128, 784], 3, 1.0);
        let w = test_tensor(&[500, 784], 4, 0.1);
        let bias = test_tensor(&[500], 5, 1.0);
        let y = linear(&x, &w, Some(&bias)).unwrap();
        outs.push(bits(&y));
        outs.push(bits(&linear_input_grad(&y, &w).unwrap()));
        outs.push(bits(&linear_weight_grad(&x, &y).unwrap()));
        let qa = test_tensor(&[3, 64, 96], 6, 1.0);
        let qb = test_tensor(&[3, 80, 96], 7, 1.0);
        outs.push(bits(&matmul(&qa, &qb, false, true).unwrap()));
        let qa = test_tensor(&[16, 32, 48], 8, 1.0);
        let qb = test_tensor(&[16, 32, 40], 9, 1.0);
        outs.push(bits(&matmul(&qa, &qb, true, false).unwrap()));
        outs
    };
    let one = in_pool(1, run);
    let two = in_pool(2, run);
    let three = in_pool(3, run);
    for (i, ((a, b), c)) in one.iter().zip(&two).zip(&three).enumerate() {
        assert!(a == b, "output {i} differs between 1 and 2 threads");
        assert!(a == c, "output {i} differs between 1 and 3 threads");
    }
}

#[test]
fn backend_trait_delegates() {
    let cpu = Cpu;
    let (x, w, b, p) = case_tensors(&CASES[2], 3);
    assert_eq!(
        cpu.conv2d(&x, &w, Some(&b), p).unwrap(),
        conv2d(&x, &w, Some(&b), p).unwrap()
    );
    let xl = test_tensor(&[4, 6], 1, 1.0);
    let wl = test_tensor(&[3, 6], 2, 1.0);
    assert_eq!(
        cpu.linear(&xl, &wl, None).unwrap(),
        linear(&xl, &wl, None).unwrap()
    );
}

// ---------------------------------------------------------------------------------------------
// property tests

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn prop_conv2d_and_adjoints_match_naive(
        n in 1usize..4, c in prop_oneof![1usize..4, 16usize..19], o in 1usize..5,
        h in 1usize..9, w in 1usize..9, kh in 1usize..4, kw in 1usize..4,
        sh in 1usize..4, sw in 1usize..4, ph in 0usize..3, pw in 0usize..3,
        seed in 0u64..1000,
    ) {
        let p = Conv2dParams { stride: (sh, sw), padding: (ph, pw) };
        let x = test_tensor(&[n, c, h, w], seed, 1.0);
        let wt = test_tensor(&[o, c, kh, kw], seed + 1, 1.0);
        let b = test_tensor(&[o], seed + 2, 1.0);
        let fits = h + 2 * ph >= kh && w + 2 * pw >= kw;
        let y = conv2d(&x, &wt, Some(&b), p);
        prop_assert_eq!(y.is_ok(), fits);
        if let Ok(y) = y {
            assert_close("conv2d", &y, &naive_conv(&x, &wt, Some(&b), p));
            let g = test_tensor(y.shape(), seed + 3, 1.0);
            let gx = conv2d_input_grad(&g, &wt, (h, w), p).unwrap();
            assert_close("input_grad", &gx, &naive_conv_input_grad(&g, &wt, (h, w), p));
            let gw = conv2d_weight_grad(&x, &g, (kh, kw), p).unwrap();
            assert_close("weight_grad", &gw, &naive_conv_weight_grad(&x, &g, (kh, kw), p));
        }
    }

    #[test]
    fn prop_matmul_matches_naive(
        batch in 0usize..4, m in 0usize..12, k in 0usize..12, n in 0usize..12,
        ta: bool, tb: bool, seed in 0u64..1000,
    ) {
        let a = test_tensor(&mm_shape(&[batch], m, k, ta), seed, 1.0);
        let b = test_tensor(&mm_shape(&[batch], k, n, tb), seed + 1, 1.0);
        let c = matmul(&a, &b, ta, tb).unwrap();
        let want = mm_shape(&[batch], m, n, false);
        prop_assert_eq!(c.shape(), want.as_slice());
        assert_close("matmul", &c, &naive_matmul(&a, &b, ta, tb));
    }
}
