//! Conformance of the softmax family over the last axis: softmax, log-softmax and its adjoint,
//! cross-entropy with its gradient (hand values, stability at extreme logits, NaN propagation,
//! row sums on random shapes, gradient checks through the backend, errors).

use super::refs::{
    Cases, Must, assert_close, assert_grad_ok, assert_param_err, assert_refused, assert_shape_err,
    down, ip, up, zeros,
};
use crate::gradcheck::{check_gradient, test_tensor};
use crate::{Backend, tensor};

pub fn softmax_hand_values_and_stability<B: Backend>(be: &B) {
    let ln2 = std::f32::consts::LN_2;
    let x = up(
        be,
        &tensor(&[2, 2], vec![0.0, ln2, 1000.0, 1000.0]).unwrap(),
    );
    let s = down(be, &be.softmax(&x).must());
    assert_close(
        &s,
        &tensor(&[2, 2], vec![1.0 / 3.0, 2.0 / 3.0, 0.5, 0.5]).unwrap(),
        1e-6,
        "softmax",
    );
    let ls = down(be, &be.log_softmax(&x).must());
    let l3 = 3.0f32.ln();
    assert_close(
        &ls,
        &tensor(&[2, 2], vec![-l3, ln2 - l3, -ln2, -ln2]).unwrap(),
        1e-6,
        "log_softmax",
    );
    // Very negative logits: no -inf / NaN in log_softmax.
    let y = down(
        be,
        &be.log_softmax(&up(be, &tensor(&[1, 2], vec![0.0, -200.0]).unwrap()))
            .must(),
    );
    assert!(
        (y[[0, 1]] + 200.0).abs() < 1e-3 && y[[0, 0]].abs() < 1e-6,
        "log_softmax([0, -200]) = {y:?}"
    );
    // NaN propagates to the whole row, and only to it.
    let n = down(
        be,
        &be.softmax(&up(
            be,
            &tensor(&[2, 3], vec![0.0, f32::NAN, 1.0, 0.0, 0.0, 0.0]).unwrap(),
        ))
        .must(),
    );
    assert!(n.iter().take(3).all(|v| v.is_nan()), "{n:?}");
    assert!(
        n.iter().skip(3).all(|&v| (v - 1.0 / 3.0).abs() < 1e-6),
        "{n:?}"
    );
    // A single class: probability 1, log-probability 0; rank 1 and rank 3 inputs.
    let one = down(
        be,
        &be.softmax(&up(be, &tensor(&[3, 1], vec![-5.0, 0.0, 7.0]).unwrap()))
            .must(),
    );
    assert_eq!(one.as_slice().unwrap(), &[1.0, 1.0, 1.0]);
    let v = down(
        be,
        &be.softmax(&up(be, &tensor(&[2], vec![0.0, ln2]).unwrap()))
            .must(),
    );
    assert_close(
        &v,
        &tensor(&[2], vec![1.0 / 3.0, 2.0 / 3.0]).unwrap(),
        1e-6,
        "rank 1",
    );
}

/// Rows of softmax are probabilities summing to one and log-softmax is their logarithm, over 48
/// random shapes and logit scales (up to 30, where a naive exp overflows for none but loses
/// digits).
pub fn softmax_rows_sum_to_one_on_random_shapes<B: Backend>(be: &B) {
    let mut c = Cases::new("conformance.softmax_rows");
    for case in 0..48u64 {
        let (rows, k) = (c.range(1, 5), c.range(1, 9));
        let scale = c.uniform(0.1, 30.0);
        let x = test_tensor(&[rows, k], case, scale);
        let dx = up(be, &x);
        let s = down(be, &be.softmax(&dx).must());
        let ls = down(be, &be.log_softmax(&dx).must());
        for r in 0..rows {
            let sum: f32 = (0..k).map(|j| s[[r, j]]).sum();
            assert!(
                (sum - 1.0).abs() < 1e-5,
                "case {case}: row {r} sums to {sum}"
            );
            // Against an f64 reference.
            let m = (0..k).map(|j| x[[r, j]] as f64).fold(f64::MIN, f64::max);
            let lse = m
                + (0..k)
                    .map(|j| (x[[r, j]] as f64 - m).exp())
                    .sum::<f64>()
                    .ln();
            for j in 0..k {
                let want = x[[r, j]] as f64 - lse;
                assert!(ls[[r, j]] <= 0.0, "case {case}: log_softmax > 0");
                assert!(s[[r, j]] >= 0.0, "case {case}: softmax < 0");
                assert!(
                    (ls[[r, j]] as f64 - want).abs() < 1e-5 * (1.0 + want.abs()),
                    "case {case}: log_softmax[{r},{j}] = {} vs {want}",
                    ls[[r, j]]
                );
                assert!((ls[[r, j]].exp() - s[[r, j]]).abs() < 1e-5);
            }
        }
    }
}

pub fn softmax_family_gradchecks<B: Backend>(be: &B) {
    let x = test_tensor(&[3, 2, 5], 1, 2.0);
    let r = test_tensor(&[3, 2, 5], 2, 1.0);
    let (dx, dr) = (up(be, &x), up(be, &r));
    let y = be.log_softmax(&dx).must();
    let g = down(be, &be.log_softmax_grad(&y, &dr).must());
    let res = check_gradient(
        |t| ip(&r, &down(be, &be.log_softmax(&up(be, t)).must())),
        &x,
        &g,
        1e-2,
        100,
    );
    assert_grad_ok("log_softmax", res, 5e-3);
    // softmax: its vector-Jacobian product is log_softmax_grad(log_softmax(x), softmax(x) ⊙ r).
    let s = be.softmax(&dx).must();
    let gs = down(be, &be.log_softmax_grad(&y, &be.mul(&s, &dr).must()).must());
    let res = check_gradient(
        |t| ip(&r, &down(be, &be.softmax(&up(be, t)).must())),
        &x,
        &gs,
        1e-2,
        100,
    );
    assert_grad_ok("softmax", res, 5e-3);
}

pub fn cross_entropy_hand_value_gradient_and_errors<B: Backend>(be: &B) {
    // All-zero logits over K classes: loss ln K, dlogits (1/K − onehot)/N.
    let z = up(be, &zeros(&[2, 4]));
    let (loss, g) = be.cross_entropy(&z, &[1, 3]).must();
    assert!((loss - 4.0f32.ln()).abs() < 1e-6, "loss {loss}");
    #[rustfmt::skip]
    let want = tensor(&[2, 4], vec![
        0.125, -0.375, 0.125, 0.125,
        0.125, 0.125, 0.125, -0.375,
    ]).unwrap();
    assert_close(&down(be, &g), &want, 1e-6, "dlogits");
    // Logits [0, ln 3]: p = [1/4, 3/4]; label 1 → loss ln(4/3).
    let l = up(be, &tensor(&[1, 2], vec![0.0, 3.0f32.ln()]).unwrap());
    let (loss, _) = be.cross_entropy(&l, &[1]).must();
    assert!((loss - (4.0f32 / 3.0).ln()).abs() < 1e-6, "loss {loss}");
    // Extreme logits stay finite.
    let big = up(be, &tensor(&[1, 2], vec![500.0, -500.0]).unwrap());
    let (loss, g) = be.cross_entropy(&big, &[1]).must();
    assert!((loss - 1000.0).abs() < 1e-2, "loss {loss}");
    assert!(down(be, &g).iter().all(|v| v.is_finite()));

    let x = test_tensor(&[5, 7], 3, 2.0);
    let labels = [0, 6, 3, 3, 1];
    let (_, g) = be.cross_entropy(&up(be, &x), &labels).must();
    let res = check_gradient(
        |t| be.cross_entropy(&up(be, t), &labels).must().0 as f64,
        &x,
        &down(be, &g),
        1e-2,
        100,
    );
    assert_grad_ok("cross_entropy", res, 1e-2);

    let dx = up(be, &x);
    assert_param_err(
        be.cross_entropy(&dx, &[0, 1, 2, 3, 7]),
        "cross_entropy",
        "label 7 of 7 classes",
    );
    assert_shape_err(
        be.cross_entropy(&dx, &[0, 1]),
        "cross_entropy",
        "2 labels for 5 rows",
    );
    let x3 = up(be, &test_tensor(&[2, 3, 4], 1, 1.0));
    assert_shape_err(
        be.cross_entropy(&x3, &[0, 1]),
        "cross_entropy",
        "rank-3 logits",
    );
    let empty = up(be, &zeros(&[0, 3]));
    assert_refused(
        be.cross_entropy(&empty, &[]),
        "cross_entropy",
        "an empty batch",
    );
}

pub fn softmax_errors<B: Backend>(be: &B) {
    let s = up(be, &zeros(&[]));
    assert_shape_err(be.softmax(&s), "softmax", "a scalar");
    assert_shape_err(be.log_softmax(&s), "log_softmax", "a scalar");
    let a = up(be, &test_tensor(&[2, 3], 1, 1.0));
    let b = up(be, &test_tensor(&[3, 2], 1, 1.0));
    assert_shape_err(
        be.log_softmax_grad(&a, &b),
        "log_softmax_grad",
        "[2, 3] vs [3, 2]",
    );
}
