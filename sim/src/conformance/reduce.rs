//! Conformance of the reductions: `sum_all`, `dot`, `sum_except` and `row_max_abs_diff` (hand values, exact integer
//! sums, accuracy on long inputs, parity with an f64 loop, gradient checks, errors).

use super::refs::{
    Must, assert_close, assert_grad_ok, assert_param_err, assert_shape_err, down, up, zeros,
};
use crate::gradcheck::{check_gradient, test_tensor};
use crate::{Backend, Tensor, tensor};

pub fn reductions_hand_values<B: Backend>(be: &B) {
    let a = up(be, &tensor(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap());
    let b = up(be, &tensor(&[2, 2], vec![0.5, -1.0, 2.0, 0.25]).unwrap());
    assert_eq!(be.sum_all(&a).must(), 10.0);
    assert_eq!(be.dot(&a, &b).must(), 0.5 - 2.0 + 6.0 + 1.0);
    assert_eq!(
        down(be, &be.sum_except(&a, 0).must()).as_slice().unwrap(),
        &[3.0, 7.0]
    );
    assert_eq!(
        down(be, &be.sum_except(&a, 1).must()).as_slice().unwrap(),
        &[4.0, 6.0]
    );
    // Empty tensors sum to zero.
    let e = up(be, &zeros(&[0, 3]));
    assert_eq!(be.sum_all(&e).must(), 0.0);
    assert_eq!(be.dot(&e, &e).must(), 0.0);
    assert_eq!(
        down(be, &be.sum_except(&e, 1).must()).as_slice().unwrap(),
        &[0.0; 3]
    );
    // A scalar.
    let s = up(be, &tensor(&[], vec![-2.5]).unwrap());
    assert_eq!(be.sum_all(&s).must(), -2.5);
    // NaN propagates.
    let n = up(be, &tensor(&[3], vec![1.0, f32::NAN, 2.0]).unwrap());
    assert!(be.sum_all(&n).must().is_nan());
}

pub fn reductions_accurate_on_large_input<B: Backend>(be: &B) {
    // 100_003 values: Σ (i mod 7) is exact in f32 in any order (every partial sum is an integer
    // below 2²⁴).
    let n = 100_003usize;
    let x = up(
        be,
        &tensor(&[n], (0..n).map(|i| (i % 7) as f32).collect()).unwrap(),
    );
    let exact: u64 = (0..n).map(|i| (i % 7) as u64).sum();
    assert_eq!(be.sum_all(&x).must(), exact as f32);
    let ones = up(be, &tensor(&[n], vec![1.0; n]).unwrap());
    assert_eq!(be.dot(&x, &ones).must(), exact as f32);
    // Many 0.1s: a sequential f32 loop would be off by ~1e-3 relative; pairwise or wide
    // accumulation stays within a few ulps.
    let t = up(be, &tensor(&[n], vec![0.1; n]).unwrap());
    let want = 0.1f32 as f64 * n as f64;
    let got = be.sum_all(&t).must() as f64;
    assert!(
        (got - want).abs() <= 1e-6 * want,
        "Σ 0.1 over {n}: {got} vs {want}"
    );
    let s = be.sum_except(&be.reshape(&t, &[1, n]).must(), 0).must();
    let got = down(be, &s)[[0]] as f64;
    assert!(
        (got - want).abs() <= 1e-6 * want,
        "sum_except over {n}: {got} vs {want}"
    );
}

pub fn sum_except_parity<B: Backend>(be: &B) {
    for shape in [vec![3, 4, 5, 2], vec![8, 16, 24, 24]] {
        let x = test_tensor(&shape, 7, 1.0);
        let dx = up(be, &x);
        for axis in 0..4 {
            let got = down(be, &be.sum_except(&dx, axis).must());
            let mut want = vec![0.0f64; x.shape()[axis]];
            let mut abs = vec![0.0f64; x.shape()[axis]];
            for (ix, &v) in x.indexed_iter() {
                want[ix[axis]] += v as f64;
                abs[ix[axis]] += (v as f64).abs();
            }
            assert_eq!(got.shape(), &[want.len()]);
            for (i, (&g, (&w, &a))) in got.iter().zip(want.iter().zip(&abs)).enumerate() {
                assert!(
                    (g as f64 - w).abs() <= 1e-6 * a + 1e-6,
                    "sum_except {shape:?} axis {axis} element {i}: {g} vs {w}"
                );
            }
        }
        let sum = be.sum_all(&dx).must() as f64;
        let want: f64 = x.iter().map(|&v| v as f64).sum();
        let abs: f64 = x.iter().map(|&v| (v as f64).abs()).sum();
        assert!(
            (sum - want).abs() <= 1e-6 * abs,
            "sum_all {shape:?}: {sum} vs {want}"
        );
        let y = test_tensor(&shape, 8, 1.0);
        let dot = be.dot(&dx, &up(be, &y)).must() as f64;
        let want: f64 = x
            .iter()
            .zip(y.iter())
            .map(|(&a, &b)| a as f64 * b as f64)
            .sum();
        let abs: f64 = x
            .iter()
            .zip(y.iter())
            .map(|(&a, &b)| (a as f64 * b as f64).abs())
            .sum();
        assert!(
            (dot - want).abs() <= 1e-6 * abs,
            "dot {shape:?}: {dot} vs {want}"
        );
    }
    let x = up(be, &test_tensor(&[3, 4, 5, 2], 7, 1.0));
    assert_param_err(
        be.sum_except(&x, 4),
        "sum_except",
        "axis 4 of a rank-4 tensor",
    );
    let v = test_tensor(&[6], 9, 1.0);
    assert_close(
        &down(be, &be.sum_except(&up(be, &v), 0).must()),
        &v,
        0.0,
        "rank 1, axis 0",
    );
}

pub fn dot_and_sum_all_gradchecks<B: Backend>(be: &B) {
    let a = test_tensor(&[4, 6], 1, 1.0);
    let b = test_tensor(&[4, 6], 2, 1.0);
    let db = up(be, &b);
    let res = check_gradient(|t| be.dot(&up(be, t), &db).must() as f64, &a, &b, 1e-2, 100);
    assert_grad_ok("dot", res, 1e-2);
    let ones = Tensor::from_elem(ndarray::IxDyn(&[4, 6]), 1.0);
    let res = check_gradient(
        |t| be.sum_all(&up(be, t)).must() as f64,
        &a,
        &ones,
        1e-2,
        100,
    );
    assert_grad_ok("sum_all", res, 1e-2);
}

/// `row_max_abs_diff` against a host loop on random shapes, a row with a NaN, a row of equal
/// values, and its shape errors.
pub fn row_max_abs_diff_matches_host_and_errors<B: Backend>(be: &B) {
    for (k, shape) in [vec![5usize, 7], vec![3, 2, 4, 4], vec![1, 1], vec![4, 300]]
        .into_iter()
        .enumerate()
    {
        let a = crate::gradcheck::test_tensor(&shape, 40 + k as u64, 1.0);
        let mut b = crate::gradcheck::test_tensor(&shape, 60 + k as u64, 1.0);
        let n = shape[0];
        let rest = a.len() / n;
        let bv = b.as_slice_mut().unwrap();
        if n > 1 {
            bv[rest..2 * rest].copy_from_slice(&a.as_slice().unwrap()[rest..2 * rest]);
        }
        let got = be.row_max_abs_diff(&up(be, &a), &up(be, &b)).must();
        let (av, bv) = (a.as_slice().unwrap(), b.as_slice().unwrap());
        let want: Vec<f32> = (0..n)
            .map(|i| {
                (0..rest)
                    .map(|j| (av[i * rest + j] - bv[i * rest + j]).abs())
                    .fold(0f32, f32::max)
            })
            .collect();
        assert_eq!(got, want, "row_max_abs_diff {shape:?}");
        if n > 1 {
            assert_eq!(got[1], 0.0, "equal rows");
        }
    }
    let a = tensor(&[2, 3], vec![0.0, 1.0, 2.0, 0.0, 0.0, 0.0]).unwrap();
    let b = tensor(&[2, 3], vec![0.5, f32::NAN, 2.0, 0.0, -3.0, 1.0]).unwrap();
    let got = be.row_max_abs_diff(&up(be, &a), &up(be, &b)).must();
    assert!(
        got[0].is_nan(),
        "a NaN difference gives NaN, got {}",
        got[0]
    );
    assert_eq!(got[1], 3.0);
    let c = up(be, &zeros(&[3, 2]));
    assert_shape_err(
        be.row_max_abs_diff(&up(be, &a), &c),
        "row_max_abs_diff",
        "shapes differ",
    );
}
