//! Conformance of conv2d and its input and weight adjoints: parity with naive f64 direct loops
//! over a table of stride/padding/shape combinations and over random shapes, known values,
//! finite-difference gradients through the backend, adjoint identities, empty batches and
//! channels, and the errors of bad shapes and parameters.

use super::refs::{
    Cases, Must, assert_close_to_ref, down, ip, is_err_of, naive_conv, naive_conv_input_grad,
    naive_conv_weight_grad, up, zeros,
};
use crate::gradcheck::{check_gradient, test_tensor};
use crate::{Backend, Conv2dParams, Tensor};

/// (n, c, h, w, o, kh, kw, stride, padding)
pub type Case = (
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

/// The stride/padding/shape combinations every conv check runs on.
pub const CASES: &[Case] = &[
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

/// Host input, weights and bias of a case, and its parameters.
pub fn case_tensors(case: &Case, seed: u64) -> (Tensor, Tensor, Tensor, Conv2dParams) {
    let &(n, c, h, w, o, kh, kw, stride, padding) = case;
    let x = test_tensor(&[n, c, h, w], seed, 1.0);
    let wt = test_tensor(&[o, c, kh, kw], seed + 1, 0.5);
    let b = test_tensor(&[o], seed + 2, 1.0);
    (x, wt, b, Conv2dParams { stride, padding })
}

pub fn conv2d_matches_naive<B: Backend>(be: &B) {
    for (ci, case) in CASES.iter().enumerate() {
        let (x, w, b, p) = case_tensors(case, 100 + ci as u64);
        let (dx, dw) = (up(be, &x), up(be, &w));
        let y = down(be, &be.conv2d(&dx, &dw, Some(&up(be, &b)), p).must());
        assert_close_to_ref(
            &format!("conv2d {case:?}"),
            &y,
            &naive_conv(&x, &w, Some(&b), p),
        );
        let y0 = down(be, &be.conv2d(&dx, &dw, None, p).must());
        assert_close_to_ref(
            &format!("conv2d nobias {case:?}"),
            &y0,
            &naive_conv(&x, &w, None, p),
        );
    }
}

pub fn conv2d_input_grad_matches_naive<B: Backend>(be: &B) {
    for (ci, case) in CASES.iter().enumerate() {
        let (x, w, _, p) = case_tensors(case, 200 + ci as u64);
        let hw = (x.shape()[2], x.shape()[3]);
        let dw = up(be, &w);
        let y = be.conv2d(&up(be, &x), &dw, None, p).must();
        let gy = test_tensor(&be.shape(&y), 300 + ci as u64, 1.0);
        let gx = down(be, &be.conv2d_input_grad(&up(be, &gy), &dw, hw, p).must());
        assert_eq!(gx.shape(), x.shape());
        assert_close_to_ref(
            &format!("input_grad {case:?}"),
            &gx,
            &naive_conv_input_grad(&gy, &w, hw, p),
        );
    }
}

pub fn conv2d_weight_grad_matches_naive<B: Backend>(be: &B) {
    for (ci, case) in CASES.iter().enumerate() {
        let (x, w, _, p) = case_tensors(case, 400 + ci as u64);
        let khw = (w.shape()[2], w.shape()[3]);
        let dx = up(be, &x);
        let y = be.conv2d(&dx, &up(be, &w), None, p).must();
        let gy = test_tensor(&be.shape(&y), 500 + ci as u64, 1.0);
        let gw = down(be, &be.conv2d_weight_grad(&dx, &up(be, &gy), khw, p).must());
        assert_eq!(gw.shape(), w.shape());
        assert_close_to_ref(
            &format!("weight_grad {case:?}"),
            &gw,
            &naive_conv_weight_grad(&x, &gy, khw, p),
        );
    }
}

pub fn conv2d_known_values<B: Backend>(be: &B) {
    // 1x1x3x3 input 1..9, 2x2 kernel of ones, stride 1, no padding: sums of 2x2 windows.
    let x = up(
        be,
        &crate::tensor(&[1, 1, 3, 3], (1..=9).map(|v| v as f32).collect()).unwrap(),
    );
    let w = up(be, &crate::tensor(&[1, 1, 2, 2], vec![1.0; 4]).unwrap());
    let b = up(be, &crate::tensor(&[1], vec![0.5]).unwrap());
    let y = be.conv2d(&x, &w, Some(&b), Conv2dParams::new(1, 0)).must();
    assert_eq!(be.shape(&y), vec![1, 1, 2, 2]);
    assert_eq!(down(be, &y).as_slice().unwrap(), &[12.5, 16.5, 24.5, 28.5]);
    // Padding 1, stride 2: windows at corners of the padded 5x5 grid.
    let y = be.conv2d(&x, &w, None, Conv2dParams::new(2, 1)).must();
    assert_eq!(down(be, &y).as_slice().unwrap(), &[1.0, 5.0, 11.0, 28.0]);
}

/// f(θ) = ⟨r, conv2d(x, w, b)⟩, analytic gradients from the adjoint ops, all through the backend.
pub fn conv2d_gradients_by_finite_differences<B: Backend>(be: &B) {
    for (ci, case) in CASES.iter().enumerate() {
        let (x, w, b, p) = case_tensors(case, 600 + ci as u64);
        let hw = (x.shape()[2], x.shape()[3]);
        let khw = (w.shape()[2], w.shape()[3]);
        let (dx, dw, db) = (up(be, &x), up(be, &w), up(be, &b));
        let y = be.conv2d(&dx, &dw, Some(&db), p).must();
        let r = test_tensor(&be.shape(&y), 700 + ci as u64, 1.0);
        let dr = up(be, &r);
        let f = |x: &B::Tensor, w: &B::Tensor, b: &B::Tensor| {
            ip(&r, &down(be, &be.conv2d(x, w, Some(b), p).must()))
        };
        // f is linear in each argument, so central differences are exact up to rounding; a large
        // step (1.0) keeps the f32 rounding of f small against the difference.
        let gx = down(be, &be.conv2d_input_grad(&dr, &dw, hw, p).must());
        let chk = check_gradient(|t| f(&up(be, t), &dw, &db), &x, &gx, 1.0, 60);
        assert!(chk.ok(1e-3), "d/dx {case:?}: {chk:?}");

        let gw = down(be, &be.conv2d_weight_grad(&dx, &dr, khw, p).must());
        let chk = check_gradient(|t| f(&dx, &up(be, t), &db), &w, &gw, 1.0, 60);
        assert!(chk.ok(1e-3), "d/dw {case:?}: {chk:?}");

        // Bias gradient: the backend's sum of r over samples and positions per channel.
        let gb = down(be, &be.sum_except(&dr, 1).must());
        let chk = check_gradient(|t| f(&dx, &dw, &up(be, t)), &b, &gb, 1.0, 60);
        assert!(chk.ok(1e-3), "d/db {case:?}: {chk:?}");
    }
}

/// The procedure above on this backend rejects a gradient with one wrong coordinate.
pub fn gradient_check_catches_a_wrong_adjoint<B: Backend>(be: &B) {
    let (x, w, b, p) = case_tensors(&CASES[2], 1);
    let (dw, db) = (up(be, &w), up(be, &b));
    let y = be.conv2d(&up(be, &x), &dw, Some(&db), p).must();
    let r = test_tensor(&be.shape(&y), 2, 1.0);
    let mut gx = down(
        be,
        &be.conv2d_input_grad(&up(be, &r), &dw, (7, 7), p).must(),
    );
    gx.as_slice_mut().unwrap()[0] += 0.1;
    let chk = check_gradient(
        |t| {
            ip(
                &r,
                &down(be, &be.conv2d(&up(be, t), &dw, Some(&db), p).must()),
            )
        },
        &x,
        &gx,
        0.25,
        usize::MAX,
    );
    assert!(!chk.ok(1e-3), "{chk:?}");
}

pub fn conv2d_adjoint_identities<B: Backend>(be: &B) {
    for (ci, case) in CASES.iter().enumerate() {
        let (x, w, _, p) = case_tensors(case, 800 + ci as u64);
        let hw = (x.shape()[2], x.shape()[3]);
        let khw = (w.shape()[2], w.shape()[3]);
        let (dx, dw) = (up(be, &x), up(be, &w));
        let y = down(be, &be.conv2d(&dx, &dw, None, p).must());
        let g = test_tensor(y.shape(), 900 + ci as u64, 1.0);
        let dg = up(be, &g);
        let lhs = ip(&y, &g);
        let rhs_x = ip(&x, &down(be, &be.conv2d_input_grad(&dg, &dw, hw, p).must()));
        let rhs_w = ip(
            &w,
            &down(be, &be.conv2d_weight_grad(&dx, &dg, khw, p).must()),
        );
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

/// conv2d and both adjoints against the naive loops over 49 shapes (48 random), strides and paddings
/// (few and ≥ 16 channels), with an error exactly when the kernel exceeds the padded input.
pub fn conv2d_and_adjoints_match_naive_on_random_shapes<B: Backend>(be: &B) {
    let mut cs = Cases::new("conformance.conv2d");
    // (n, c, o, h, w, kh, kw, sh, sw, ph, pw): a case that once failed (padding on one side only
    // with a kernel wider than the input), then random ones.
    let mut shapes = vec![(1, 1, 1, 2, 1, 1, 2, 1, 1, 0, 1)];
    for _ in 0..48 {
        let n = cs.range(1, 4);
        let c = if cs.flip() {
            cs.range(1, 4)
        } else {
            cs.range(16, 19)
        };
        let o = cs.range(1, 5);
        let (h, w, kh, kw) = (
            cs.range(1, 9),
            cs.range(1, 9),
            cs.range(1, 4),
            cs.range(1, 4),
        );
        let (sh, sw, ph, pw) = (
            cs.range(1, 4),
            cs.range(1, 4),
            cs.range(0, 3),
            cs.range(0, 3),
        );
        shapes.push((n, c, o, h, w, kh, kw, sh, sw, ph, pw));
    }
    for (case, &(n, c, o, h, w, kh, kw, sh, sw, ph, pw)) in shapes.iter().enumerate() {
        let case = case as u64;
        let p = Conv2dParams {
            stride: (sh, sw),
            padding: (ph, pw),
        };
        let seed = 3000 + 10 * case;
        let x = test_tensor(&[n, c, h, w], seed, 1.0);
        let wt = test_tensor(&[o, c, kh, kw], seed + 1, 1.0);
        let b = test_tensor(&[o], seed + 2, 1.0);
        let fits = h + 2 * ph >= kh && w + 2 * pw >= kw;
        let (dx, dw) = (up(be, &x), up(be, &wt));
        let y = be.conv2d(&dx, &dw, Some(&up(be, &b)), p);
        let what = format!("x {:?} w {:?} {p:?}", x.shape(), wt.shape());
        if !fits {
            assert!(
                is_err_of(&y, "conv2d"),
                "{what}: expected an error, got {y:?}"
            );
            continue;
        }
        let y = down(be, &y.must());
        assert_close_to_ref(
            &format!("conv2d {what}"),
            &y,
            &naive_conv(&x, &wt, Some(&b), p),
        );
        let g = test_tensor(y.shape(), seed + 3, 1.0);
        let dg = up(be, &g);
        let gx = down(be, &be.conv2d_input_grad(&dg, &dw, (h, w), p).must());
        assert_close_to_ref(
            &format!("input_grad {what}"),
            &gx,
            &naive_conv_input_grad(&g, &wt, (h, w), p),
        );
        let gw = down(be, &be.conv2d_weight_grad(&dx, &dg, (kh, kw), p).must());
        assert_close_to_ref(
            &format!("weight_grad {what}"),
            &gw,
            &naive_conv_weight_grad(&x, &g, (kh, kw), p),
        );
    }
}

fn t<B: Backend>(be: &B, shape: &[usize]) -> B::Tensor {
    up(be, &zeros(shape))
}

pub fn conv2d_bad_shapes_are_errors<B: Backend>(be: &B) {
    let p = Conv2dParams::new(1, 1);
    let x = t(be, &[2, 3, 5, 5]);
    let w = t(be, &[4, 3, 3, 3]);
    let op = "conv2d";
    let bad = |r: crate::Result<B::Tensor>, what: &str| {
        assert!(
            is_err_of(&r, op),
            "{what}: expected an error of {op}, got {r:?}"
        )
    };
    bad(be.conv2d(&t(be, &[3, 5, 5]), &w, None, p), "rank-3 input");
    bad(be.conv2d(&x, &t(be, &[4, 3, 3]), None, p), "rank-3 weights");
    bad(
        be.conv2d(&x, &t(be, &[4, 2, 3, 3]), None, p),
        "channels differ",
    );
    bad(
        be.conv2d(&x, &w, Some(&t(be, &[3])), p),
        "bias of 3 for 4 outputs",
    );
    bad(be.conv2d(&x, &w, Some(&t(be, &[4, 1])), p), "rank-2 bias");
    bad(
        be.conv2d(&x, &t(be, &[4, 3, 8, 3]), None, p),
        "kernel too large",
    );
    bad(be.conv2d(&x, &w, None, Conv2dParams::new(0, 1)), "stride 0");
    bad(
        be.conv2d(&x, &t(be, &[4, 3, 0, 3]), None, p),
        "empty kernel",
    );
    // The message names the shapes.
    let e = be
        .conv2d(&x, &t(be, &[4, 2, 3, 3]), None, p)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("[2, 3, 5, 5]") && e.contains("[4, 2, 3, 3]"),
        "{e}"
    );
}

pub fn conv2d_input_grad_bad_shapes_are_errors<B: Backend>(be: &B) {
    let p = Conv2dParams::new(2, 0);
    let w = t(be, &[4, 3, 3, 3]);
    let op = "conv2d_input_grad";
    let bad = |r: crate::Result<B::Tensor>, what: &str| {
        assert!(
            is_err_of(&r, op),
            "{what}: expected an error of {op}, got {r:?}"
        )
    };
    // input 7x7, stride 2, no padding -> 3x3 output.
    be.conv2d_input_grad(&t(be, &[2, 4, 3, 3]), &w, (7, 7), p)
        .must();
    be.conv2d_input_grad(&t(be, &[2, 4, 3, 3]), &w, (8, 8), p)
        .must(); // stride drops a row
    bad(
        be.conv2d_input_grad(&t(be, &[2, 4, 3, 3]), &w, (9, 9), p),
        "9x9 gives 4x4",
    );
    bad(
        be.conv2d_input_grad(&t(be, &[2, 5, 3, 3]), &w, (7, 7), p),
        "5 output channels",
    );
    bad(
        be.conv2d_input_grad(&t(be, &[4, 3, 3]), &w, (7, 7), p),
        "rank-3 gradient",
    );
    bad(
        be.conv2d_input_grad(&t(be, &[2, 4, 3, 3]), &t(be, &[4, 3, 3]), (7, 7), p),
        "rank-3 weights",
    );
    bad(
        be.conv2d_input_grad(&t(be, &[2, 4, 3, 3]), &w, (2, 2), p),
        "kernel too large",
    );
    bad(
        be.conv2d_input_grad(&t(be, &[2, 4, 3, 2]), &w, (7, 7), p),
        "3x2 gradient",
    );
}

pub fn conv2d_weight_grad_bad_shapes_are_errors<B: Backend>(be: &B) {
    let p = Conv2dParams::new(1, 1);
    let x = t(be, &[2, 3, 5, 5]);
    let op = "conv2d_weight_grad";
    let bad = |r: crate::Result<B::Tensor>, what: &str| {
        assert!(
            is_err_of(&r, op),
            "{what}: expected an error of {op}, got {r:?}"
        )
    };
    be.conv2d_weight_grad(&x, &t(be, &[2, 4, 5, 5]), (3, 3), p)
        .must();
    bad(
        be.conv2d_weight_grad(&x, &t(be, &[3, 4, 5, 5]), (3, 3), p),
        "batch differs",
    );
    bad(
        be.conv2d_weight_grad(&x, &t(be, &[2, 4, 4, 5]), (3, 3), p),
        "4x5 gradient",
    );
    bad(
        be.conv2d_weight_grad(&x, &t(be, &[2, 4, 5]), (3, 3), p),
        "rank-3 gradient",
    );
    bad(
        be.conv2d_weight_grad(&t(be, &[3, 5, 5]), &t(be, &[2, 4, 5, 5]), (3, 3), p),
        "rank-3 input",
    );
    bad(
        be.conv2d_weight_grad(&x, &t(be, &[2, 4, 5, 5]), (9, 3), p),
        "kernel too large",
    );
    bad(
        be.conv2d_weight_grad(&x, &t(be, &[2, 4, 5, 5]), (0, 3), p),
        "empty kernel",
    );
}

pub fn conv2d_empty_batch_and_channels<B: Backend>(be: &B) {
    let p = Conv2dParams::new(1, 1);
    let y = be
        .conv2d(&t(be, &[0, 3, 5, 5]), &t(be, &[4, 3, 3, 3]), None, p)
        .must();
    assert_eq!(be.shape(&y), vec![0, 4, 5, 5]);
    let b = up(be, &crate::tensor(&[2], vec![1.0, -2.0]).unwrap());
    let y = be
        .conv2d(&t(be, &[1, 0, 2, 2]), &t(be, &[2, 0, 3, 3]), Some(&b), p)
        .must();
    assert_eq!(
        down(be, &y).as_slice().unwrap(),
        &[1.0, 1.0, 1.0, 1.0, -2.0, -2.0, -2.0, -2.0]
    );
    let gw = be
        .conv2d_weight_grad(&t(be, &[0, 3, 5, 5]), &t(be, &[0, 4, 5, 5]), (3, 3), p)
        .must();
    assert_eq!(be.shape(&gw), vec![4, 3, 3, 3]);
    assert!(
        down(be, &gw).iter().all(|&v| v == 0.0),
        "no samples: zero gradient"
    );
    let gx = be
        .conv2d_input_grad(&t(be, &[0, 4, 5, 5]), &t(be, &[4, 3, 3, 3]), (5, 5), p)
        .must();
    assert_eq!(be.shape(&gx), vec![0, 3, 5, 5]);
}
