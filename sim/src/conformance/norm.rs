//! Conformance of layer norm and batch norm: hand values, parity with naive f64 loops, the
//! statistics they return, normalized rows on random shapes, gradient checks of every adjoint
//! through the backend, and the errors of bad shapes and parameters.

use super::refs::{
    Cases, Must, assert_close, assert_grad_ok, assert_param_err, assert_refused, assert_shape_err,
    down, ip, naive_batch_norm, naive_layer_norm, up, zeros,
};
use crate::gradcheck::{check_gradient, test_tensor};
use crate::{Backend, Tensor, tensor};

pub fn layer_norm_hand_value_parity_and_stats<B: Backend>(be: &B) {
    // PyTorch: F.layer_norm([1, 2, 3], (3,), eps=0) = [-√1.5, 0, √1.5].
    let x = up(be, &tensor(&[1, 3], vec![1.0, 2.0, 3.0]).unwrap());
    let one = up(be, &tensor(&[3], vec![1.0; 3]).unwrap());
    let zero = up(be, &tensor(&[3], vec![0.0; 3]).unwrap());
    let (y, m, rs) = be.layer_norm(&x, &one, &zero, 0.0).must();
    let (y, m, rs) = (down(be, &y), down(be, &m), down(be, &rs));
    let r = 1.5f32.sqrt();
    assert_close(
        &y,
        &tensor(&[1, 3], vec![-r, 0.0, r]).unwrap(),
        1e-6,
        "ln hand",
    );
    assert_eq!(m.shape(), &[1]);
    assert_eq!(m[[0]], 2.0);
    assert!((rs[[0]] - 1.5f32.sqrt()).abs() < 1e-6, "rstd {}", rs[[0]]);

    for shape in [vec![2, 3, 8], vec![64, 96]] {
        let d = *shape.last().unwrap();
        let x = test_tensor(&shape, 1, 2.0);
        let g = test_tensor(&[d], 2, 1.0);
        let b = test_tensor(&[d], 3, 1.0);
        let (y, m, rs) = be
            .layer_norm(&up(be, &x), &up(be, &g), &up(be, &b), 1e-5)
            .must();
        let y = down(be, &y);
        assert_close(&y, &naive_layer_norm(&x, &g, &b, 1e-5), 1e-5, "ln parity");
        let lead = &shape[..shape.len() - 1];
        assert_eq!(be.shape(&m), lead);
        assert_eq!(be.shape(&rs), lead);
        // The statistics are the rows' mean and 1/√(var + eps).
        let (m, rs) = (down(be, &m), down(be, &rs));
        for (i, row) in x.as_slice().unwrap().chunks(d).enumerate() {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
            let ms = m.as_slice().unwrap()[i] as f64;
            let rss = rs.as_slice().unwrap()[i] as f64;
            assert!(
                (ms - mean).abs() < 1e-5 * (1.0 + mean.abs()),
                "mean row {i}"
            );
            let want = 1.0 / (var + 1e-5).sqrt();
            assert!(
                (rss - want).abs() < 1e-5 * want,
                "rstd row {i}: {rss} vs {want}"
            );
        }
    }
}

/// Layer norm with unit gain and zero shift gives rows of zero mean and unit variance, over 48
/// random shapes and scales.
pub fn layer_norm_rows_have_zero_mean_unit_variance<B: Backend>(be: &B) {
    let mut c = Cases::new("conformance.layer_norm_rows");
    for case in 0..48u64 {
        let (rows, d) = (c.range(1, 4), c.range(2, 12));
        let scale = c.uniform(0.5, 20.0);
        let x = test_tensor(&[rows, d], case, scale);
        let one = up(be, &Tensor::from_elem(ndarray::IxDyn(&[d]), 1.0));
        let zero = up(be, &zeros(&[d]));
        let (y, _, _) = be.layer_norm(&up(be, &x), &one, &zero, 0.0).must();
        let y = down(be, &y);
        for r in 0..rows {
            let m: f64 = (0..d).map(|j| y[[r, j]] as f64).sum::<f64>() / d as f64;
            let v: f64 = (0..d).map(|j| (y[[r, j]] as f64 - m).powi(2)).sum::<f64>() / d as f64;
            assert!(m.abs() < 1e-5, "case {case}: mean {m}");
            assert!((v - 1.0).abs() < 1e-4, "case {case}: var {v}");
        }
    }
}

pub fn layer_norm_gradchecks<B: Backend>(be: &B) {
    let shape = [3, 2, 6];
    let x = test_tensor(&shape, 1, 1.5);
    let g = test_tensor(&[6], 2, 1.0);
    let b = test_tensor(&[6], 3, 1.0);
    let r = test_tensor(&shape, 4, 1.0);
    let eps = 1e-5;
    let (dx, dg) = (up(be, &x), up(be, &g));
    let (_, m, rs) = be.layer_norm(&dx, &dg, &up(be, &b), eps).must();
    let (gx, gg, gb) = be.layer_norm_grad(&dx, &dg, &m, &rs, &up(be, &r)).must();
    let (gx, gg, gb) = (down(be, &gx), down(be, &gg), down(be, &gb));
    let f = |x: &Tensor, g: &Tensor, b: &Tensor| {
        let y = be
            .layer_norm(&up(be, x), &up(be, g), &up(be, b), eps)
            .must()
            .0;
        ip(&r, &down(be, &y))
    };
    assert_grad_ok(
        "ln x",
        check_gradient(|t| f(t, &g, &b), &x, &gx, 1e-2, 100),
        5e-3,
    );
    assert_grad_ok(
        "ln gamma",
        check_gradient(|t| f(&x, t, &b), &g, &gg, 1e-2, 100),
        5e-3,
    );
    assert_grad_ok(
        "ln beta",
        check_gradient(|t| f(&x, &g, t), &b, &gb, 1e-2, 100),
        5e-3,
    );
}

pub fn layer_norm_errors<B: Backend>(be: &B) {
    let x = up(be, &test_tensor(&[2, 4], 1, 1.0));
    let g4 = up(be, &test_tensor(&[4], 2, 1.0));
    let g3 = up(be, &test_tensor(&[3], 2, 1.0));
    assert_shape_err(
        be.layer_norm(&x, &g3, &g4, 1e-5),
        "layer_norm",
        "gamma of 3 for 4 features",
    );
    assert_shape_err(
        be.layer_norm(&x, &g4, &g3, 1e-5),
        "layer_norm",
        "beta of 3 for 4 features",
    );
    assert_param_err(be.layer_norm(&x, &g4, &g4, -1.0), "layer_norm", "eps < 0");
    let s = up(be, &zeros(&[]));
    assert_refused(be.layer_norm(&s, &g4, &g4, 1e-5), "layer_norm", "a scalar");
    let (_, m, rs) = be.layer_norm(&x, &g4, &g4, 1e-5).must();
    let gy = up(be, &test_tensor(&[4, 2], 3, 1.0));
    assert_shape_err(
        be.layer_norm_grad(&x, &g4, &m, &rs, &gy),
        "layer_norm_grad",
        "gradient [4, 2] for x [2, 4]",
    );
    let gy = up(be, &test_tensor(&[2, 4], 3, 1.0));
    let m12 = be.reshape(&rs, &[1, 2]).must();
    assert_shape_err(
        be.layer_norm_grad(&x, &g4, &m12, &rs, &gy),
        "layer_norm_grad",
        "mean [1, 2] for rows [2]",
    );
}

pub fn batch_norm_train_parity_nchw_and_nc<B: Backend>(be: &B) {
    for shape in [vec![4, 3, 5, 2], vec![6, 5], vec![8, 16, 12, 12]] {
        let c = shape[1];
        let x = test_tensor(&shape, 1, 2.0).mapv(|v| v + 0.7);
        let g = test_tensor(&[c], 2, 1.0);
        let b = test_tensor(&[c], 3, 1.0);
        let (dx, dg, db) = (up(be, &x), up(be, &g), up(be, &b));
        let (y, m, v) = be.batch_norm_train(&dx, &dg, &db, 1e-5).must();
        let (ry, rm, rv) = naive_batch_norm(&x, &g, &b, 1e-5);
        assert_close(&down(be, &y), &ry, 1e-5, "bn y");
        let (hm, hv) = (down(be, &m), down(be, &v));
        for ch in 0..c {
            assert!((hm[[ch]] as f64 - rm[ch]).abs() < 1e-6, "mean {ch}");
            assert!((hv[[ch]] as f64 - rv[ch]).abs() < 1e-5, "var {ch}");
        }
        // Eval mode with the batch statistics reproduces train mode.
        let ye = be.batch_norm_eval(&dx, &dg, &db, &m, &v, 1e-5).must();
        assert_close(&down(be, &ye), &down(be, &y), 1e-6, "bn eval = train");
    }
    // Hand value: channel values [1, 3] → mean 2, biased var 1, y = ±1/√(1+eps).
    let x = up(be, &tensor(&[2, 1], vec![1.0, 3.0]).unwrap());
    let one = up(be, &tensor(&[1], vec![1.0]).unwrap());
    let zero = up(be, &tensor(&[1], vec![0.0]).unwrap());
    let (y, m, v) = be.batch_norm_train(&x, &one, &zero, 0.0).must();
    assert_eq!(down(be, &y).as_slice().unwrap(), &[-1.0, 1.0]);
    assert_eq!((down(be, &m)[[0]], down(be, &v)[[0]]), (2.0, 1.0));
}

pub fn batch_norm_eval_hand_value<B: Backend>(be: &B) {
    let x = up(
        be,
        &tensor(&[1, 2, 1, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap(),
    );
    let g = up(be, &tensor(&[2], vec![2.0, 1.0]).unwrap());
    let b = up(be, &tensor(&[2], vec![0.5, -1.0]).unwrap());
    let m = up(be, &tensor(&[2], vec![1.0, 2.0]).unwrap());
    let v = up(be, &tensor(&[2], vec![4.0, 0.25]).unwrap());
    let y = be.batch_norm_eval(&x, &g, &b, &m, &v, 0.0).must();
    // ch0: (x−1)/2·2+0.5; ch1: (x−2)/0.5·1−1.
    assert_eq!(down(be, &y).as_slice().unwrap(), &[0.5, 1.5, 1.0, 3.0]);
}

pub fn batch_norm_grad_gradchecks<B: Backend>(be: &B) {
    for shape in [vec![3, 2, 3, 2], vec![5, 3]] {
        let c = shape[1];
        let x = test_tensor(&shape, 11, 1.5);
        let g = test_tensor(&[c], 12, 1.0);
        let b = test_tensor(&[c], 13, 1.0);
        let r = test_tensor(&shape, 14, 1.0);
        let eps = 1e-5;
        let (dx, dg) = (up(be, &x), up(be, &g));
        let (_, m, v) = be.batch_norm_train(&dx, &dg, &up(be, &b), eps).must();
        let (gx, gg, gb) = be
            .batch_norm_grad(&dx, &dg, &m, &v, eps, &up(be, &r))
            .must();
        let (gx, gg, gb) = (down(be, &gx), down(be, &gg), down(be, &gb));
        let f = |x: &Tensor, g: &Tensor, b: &Tensor| {
            let y = be
                .batch_norm_train(&up(be, x), &up(be, g), &up(be, b), eps)
                .must()
                .0;
            ip(&r, &down(be, &y))
        };
        assert_grad_ok(
            "bn x",
            check_gradient(|t| f(t, &g, &b), &x, &gx, 1e-2, 100),
            5e-3,
        );
        assert_grad_ok(
            "bn gamma",
            check_gradient(|t| f(&x, t, &b), &g, &gg, 1e-2, 100),
            5e-3,
        );
        assert_grad_ok(
            "bn beta",
            check_gradient(|t| f(&x, &g, t), &b, &gb, 1e-2, 100),
            5e-3,
        );
    }
}

pub fn batch_norm_errors<B: Backend>(be: &B) {
    let x = up(be, &test_tensor(&[2, 3, 2, 2], 1, 1.0));
    let g3 = up(be, &test_tensor(&[3], 2, 1.0));
    let g2 = up(be, &test_tensor(&[2], 2, 1.0));
    assert_shape_err(
        be.batch_norm_train(&x, &g2, &g3, 1e-5),
        "batch_norm_train",
        "gamma of 2 for 3 channels",
    );
    assert!(
        matches!(
            be.batch_norm_train(&x, &g3, &g3, f32::NAN),
            Err(crate::Error::Param { .. })
        ),
        "eps NaN must be a parameter error"
    );
    let x1 = up(be, &test_tensor(&[3], 1, 1.0));
    assert!(
        matches!(
            be.batch_norm_train(&x1, &g3, &g3, 1e-5),
            Err(crate::Error::Shape { .. })
        ),
        "a rank-1 input must be a shape error"
    );
    // One value per channel in training mode is refused (as PyTorch does).
    let single = up(be, &test_tensor(&[1, 3], 1, 1.0));
    assert!(
        matches!(
            be.batch_norm_train(&single, &g3, &g3, 1e-5),
            Err(crate::Error::Shape { .. })
        ),
        "one value per channel must be a shape error"
    );
    let v = up(be, &tensor(&[3], vec![1.0, -1.0, 1.0]).unwrap());
    assert_param_err(
        be.batch_norm_eval(&x, &g3, &g3, &g3, &v, 1e-5),
        "batch_norm_eval",
        "a negative variance",
    );
    assert_shape_err(
        be.batch_norm_eval(&x, &g3, &g3, &g2, &g3, 1e-5),
        "batch_norm_eval",
        "mean of 2 for 3 channels",
    );
    let gy = up(be, &test_tensor(&[2, 3, 2, 1], 1, 1.0));
    let ones = up(be, &tensor(&[3], vec![1.0; 3]).unwrap());
    assert_shape_err(
        be.batch_norm_grad(&x, &g3, &g3, &ones, 1e-5, &gy),
        "batch_norm_grad",
        "gradient [2, 3, 2, 1] for x [2, 3, 2, 2]",
    );
}
