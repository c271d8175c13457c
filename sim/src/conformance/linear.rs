//! Conformance of linear layers (forward, input and weight adjoints, any leading axes) and of
//! batched matmul with both transpose flags: parity with naive f64 products, random shapes
//! (empty ones included), gradient checks through the backend, and the errors of bad shapes.

use super::refs::{
    Cases, Must, assert_close_to_ref, down, ip, is_err_of, mm_shape, naive_gemm, naive_linear,
    naive_matmul, up, zeros,
};
use crate::Backend;
use crate::gradcheck::{check_gradient, test_tensor};

pub fn linear_and_adjoints_match_naive_for_any_leading_axes<B: Backend>(be: &B) {
    for (si, lead) in [vec![], vec![5], vec![2, 3], vec![1, 2, 2], vec![64]]
        .into_iter()
        .enumerate()
    {
        let (inp, out) = if si == 4 { (300, 70) } else { (7, 4) };
        let mut xs = lead.clone();
        xs.push(inp);
        let mut ys = lead.clone();
        ys.push(out);
        let x = test_tensor(&xs, 30 + si as u64, 1.0);
        let w = test_tensor(&[out, inp], 31, 0.5);
        let b = test_tensor(&[out], 32, 1.0);
        let (dx, dw) = (up(be, &x), up(be, &w));
        let y = down(be, &be.linear(&dx, &dw, Some(&up(be, &b))).must());
        assert_eq!(y.shape(), ys.as_slice());
        assert_close_to_ref("linear", &y, &naive_linear(&x, &w, Some(&b)));
        let y0 = down(be, &be.linear(&dx, &dw, None).must());
        assert_close_to_ref("linear nobias", &y0, &naive_linear(&x, &w, None));

        let rows = x.len() / inp;
        let gy = test_tensor(&ys, 33, 1.0);
        let dgy = up(be, &gy);
        let gx = down(be, &be.linear_input_grad(&dgy, &dw).must());
        assert_eq!(gx.shape(), x.shape());
        let r = naive_gemm(
            (rows, inp, out),
            false,
            false,
            gy.as_slice().unwrap(),
            w.as_slice().unwrap(),
        );
        assert_close_to_ref("linear_input_grad", &gx, &r);
        let gw = down(be, &be.linear_weight_grad(&dx, &dgy).must());
        assert_eq!(gw.shape(), &[out, inp]);
        let r = naive_gemm(
            (out, inp, rows),
            true,
            false,
            gy.as_slice().unwrap(),
            x.as_slice().unwrap(),
        );
        assert_close_to_ref("linear_weight_grad", &gw, &r);
    }
}

pub fn linear_gradients_by_finite_differences<B: Backend>(be: &B) {
    let x = test_tensor(&[3, 2, 6], 40, 1.0);
    let w = test_tensor(&[5, 6], 41, 0.5);
    let b = test_tensor(&[5], 42, 1.0);
    let r = test_tensor(&[3, 2, 5], 43, 1.0);
    let (dx, dw, db, dr) = (up(be, &x), up(be, &w), up(be, &b), up(be, &r));
    let f = |x: &B::Tensor, w: &B::Tensor, b: &B::Tensor| {
        ip(&r, &down(be, &be.linear(x, w, Some(b)).must()))
    };
    let gx = down(be, &be.linear_input_grad(&dr, &dw).must());
    let chk = check_gradient(|t| f(&up(be, t), &dw, &db), &x, &gx, 0.25, 100);
    assert!(chk.ok(1e-3), "d/dx: {chk:?}");
    let gw = down(be, &be.linear_weight_grad(&dx, &dr).must());
    let chk = check_gradient(|t| f(&dx, &up(be, t), &db), &w, &gw, 0.25, 100);
    assert!(chk.ok(1e-3), "d/dw: {chk:?}");
    let mut gb = vec![0.0f32; 5];
    r.iter().enumerate().for_each(|(i, v)| gb[i % 5] += v);
    let gb = crate::tensor(&[5], gb).unwrap();
    let chk = check_gradient(|t| f(&dx, &dw, &up(be, t)), &b, &gb, 0.25, 100);
    assert!(chk.ok(1e-3), "d/db: {chk:?}");
}

fn t<B: Backend>(be: &B, shape: &[usize]) -> B::Tensor {
    up(be, &zeros(shape))
}

pub fn linear_bad_shapes_are_errors<B: Backend>(be: &B) {
    let bad = |r: crate::Result<B::Tensor>, op: &str, what: &str| {
        assert!(
            is_err_of(&r, op),
            "{what}: expected an error of {op}, got {r:?}"
        )
    };
    let w = t(be, &[4, 7]);
    bad(
        be.linear(&t(be, &[3, 6]), &w, None),
        "linear",
        "6 inputs for 7",
    );
    bad(be.linear(&t(be, &[]), &w, None), "linear", "scalar input");
    bad(
        be.linear(&t(be, &[3, 7]), &t(be, &[4, 7, 1]), None),
        "linear",
        "rank-3 weights",
    );
    bad(
        be.linear(&t(be, &[3, 7]), &w, Some(&t(be, &[7]))),
        "linear",
        "bias of 7 for 4",
    );
    bad(
        be.linear_input_grad(&t(be, &[3, 7]), &w),
        "linear_input_grad",
        "7 outputs for 4",
    );
    bad(
        be.linear_input_grad(&t(be, &[3, 4]), &t(be, &[4])),
        "linear_input_grad",
        "rank-1 weights",
    );
    bad(
        be.linear_weight_grad(&t(be, &[3, 7]), &t(be, &[2, 4])),
        "linear_weight_grad",
        "rows differ",
    );
    bad(
        be.linear_weight_grad(&t(be, &[2, 3, 7]), &t(be, &[3, 2, 4])),
        "linear_weight_grad",
        "leading axes differ",
    );
    bad(
        be.linear_weight_grad(&t(be, &[]), &t(be, &[4])),
        "linear_weight_grad",
        "scalar input",
    );
}

pub fn matmul_matches_naive_for_every_transpose<B: Backend>(be: &B) {
    for (li, lead) in [vec![], vec![3], vec![2, 3], vec![9]]
        .into_iter()
        .enumerate()
    {
        for ta in [false, true] {
            for tb in [false, true] {
                let (m, k, n) = (4, 6, 5);
                let a = test_tensor(&mm_shape(&lead, m, k, ta), 50 + li as u64, 1.0);
                let b = test_tensor(&mm_shape(&lead, k, n, tb), 51, 1.0);
                let c = down(be, &be.matmul(&up(be, &a), &up(be, &b), ta, tb).must());
                assert_eq!(c.shape(), mm_shape(&lead, m, n, false).as_slice());
                assert_close_to_ref(
                    &format!("matmul {lead:?} {ta} {tb}"),
                    &c,
                    &naive_matmul(&a, &b, ta, tb),
                );
            }
        }
    }
    // Sizes that are not multiples of any tile: 3 × [67, 130] · [130, 45].
    let a = test_tensor(&[3, 67, 130], 52, 1.0);
    let b = test_tensor(&[3, 45, 130], 53, 1.0);
    let c = down(be, &be.matmul(&up(be, &a), &up(be, &b), false, true).must());
    assert_close_to_ref("matmul 67x130x45", &c, &naive_matmul(&a, &b, false, true));
}

/// matmul against the naive product over 49 shapes (48 random) with empty axes allowed and random
/// transpose flags.
pub fn matmul_matches_naive_on_random_shapes<B: Backend>(be: &B) {
    let mut cs = Cases::new("conformance.matmul");
    // (batch, m, k, n, ta, tb): an empty inner axis (once a failure), then random shapes.
    let mut shapes = vec![(1, 1, 0, 1, false, false)];
    for _ in 0..48 {
        let (batch, m, k, n) = (
            cs.range(0, 4),
            cs.range(0, 12),
            cs.range(0, 12),
            cs.range(0, 12),
        );
        shapes.push((batch, m, k, n, cs.flip(), cs.flip()));
    }
    for (case, &(batch, m, k, n, ta, tb)) in shapes.iter().enumerate() {
        let case = case as u64;
        let a = test_tensor(&mm_shape(&[batch], m, k, ta), 4000 + case, 1.0);
        let b = test_tensor(&mm_shape(&[batch], k, n, tb), 5000 + case, 1.0);
        let c = down(be, &be.matmul(&up(be, &a), &up(be, &b), ta, tb).must());
        let want = mm_shape(&[batch], m, n, false);
        assert_eq!(c.shape(), want.as_slice(), "case {case}");
        assert_close_to_ref(
            &format!("matmul {:?}{} · {:?}{}", a.shape(), ta, b.shape(), tb),
            &c,
            &naive_matmul(&a, &b, ta, tb),
        );
    }
}

pub fn matmul_gradients_by_finite_differences<B: Backend>(be: &B) {
    // C = A·B; dL/dA = G·Bᵀ, dL/dB = Aᵀ·G, both matmuls themselves.
    let a = test_tensor(&[2, 3, 4], 60, 1.0);
    let b = test_tensor(&[2, 4, 5], 61, 1.0);
    let r = test_tensor(&[2, 3, 5], 62, 1.0);
    let (da, db, dr) = (up(be, &a), up(be, &b), up(be, &r));
    let ga = down(be, &be.matmul(&dr, &db, false, true).must());
    let gb = down(be, &be.matmul(&da, &dr, true, false).must());
    let f = |a: &B::Tensor, b: &B::Tensor| ip(&r, &down(be, &be.matmul(a, b, false, false).must()));
    let chk = check_gradient(|t| f(&up(be, t), &db), &a, &ga, 0.25, 100);
    assert!(chk.ok(1e-3), "d/da: {chk:?}");
    let chk = check_gradient(|t| f(&da, &up(be, t)), &b, &gb, 0.25, 100);
    assert!(chk.ok(1e-3), "d/db: {chk:?}");
}

pub fn matmul_bad_shapes_are_errors<B: Backend>(be: &B) {
    let op = "matmul";
    let bad = |r: crate::Result<B::Tensor>, what: &str| {
        assert!(
            is_err_of(&r, op),
            "{what}: expected an error of {op}, got {r:?}"
        )
    };
    bad(
        be.matmul(&t(be, &[3]), &t(be, &[3, 2]), false, false),
        "rank-1 operand",
    );
    bad(
        be.matmul(&t(be, &[2, 3]), &t(be, &[4, 2]), false, false),
        "[2,3]·[4,2]",
    );
    bad(
        be.matmul(&t(be, &[2, 3]), &t(be, &[4, 2]), true, false),
        "[3,2]·[4,2]",
    );
    be.matmul(&t(be, &[2, 3]), &t(be, &[4, 2]), true, true)
        .must(); // [3,2]·[2,4]
    bad(
        be.matmul(&t(be, &[2, 2, 3]), &t(be, &[3, 3, 2]), false, false),
        "batches differ",
    );
    bad(
        be.matmul(&t(be, &[2, 2, 3]), &t(be, &[3, 2]), false, false),
        "ranks differ",
    );
}
