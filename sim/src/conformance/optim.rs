//! Conformance of the optimizer update (`optim_update`): SGD with and without momentum and weight
//! decay, and Adam, over two steps (the second reads the buffers the first returned), against
//! the rules of [`crate::OptimStep`] evaluated in f64 on the host; and its shape errors.

use super::refs::{Must, down, up};
use crate::gradcheck::test_tensor;
use crate::{Backend, OptimStep, Tensor};

/// State of one parameter in f64: (p, buf1, buf2).
type State = (Vec<f64>, Option<Vec<f64>>, Option<Vec<f64>>);

/// One step of the rules in f64.
fn reference((p, b1, b2): &State, g: &[f64], step: OptimStep) -> State {
    let n = p.len();
    match step {
        OptimStep::Sgd { lr, wd, momentum } => {
            let d: Vec<f64> = (0..n).map(|i| g[i] + wd as f64 * p[i]).collect();
            let (d, nb1) = if momentum != 0.0 {
                let b: Vec<f64> = match b1 {
                    None => d.clone(),
                    Some(b) => (0..n).map(|i| momentum as f64 * b[i] + d[i]).collect(),
                };
                (b.clone(), Some(b))
            } else {
                (d, b1.clone())
            };
            let np = (0..n).map(|i| p[i] - lr as f64 * d[i]).collect();
            (np, nb1, b2.clone())
        }
        OptimStep::Adam {
            lr,
            wd,
            beta1,
            beta2,
            eps,
            bc1,
            bc2,
        } => {
            let (b1c, b2c) = (beta1 as f64, beta2 as f64);
            let zero = vec![0.0; n];
            let (m0, v0) = (b1.as_ref().unwrap_or(&zero), b2.as_ref().unwrap_or(&zero));
            let d: Vec<f64> = (0..n).map(|i| g[i] + wd as f64 * p[i]).collect();
            let m: Vec<f64> = (0..n).map(|i| b1c * m0[i] + (1.0 - b1c) * d[i]).collect();
            let v: Vec<f64> = (0..n)
                .map(|i| b2c * v0[i] + (1.0 - b2c) * d[i] * d[i])
                .collect();
            let np = (0..n)
                .map(|i| {
                    p[i] - (lr as f64 / bc1 as f64) * m[i]
                        / ((v[i] / bc2 as f64).sqrt() + eps as f64)
                })
                .collect();
            (np, Some(m), Some(v))
        }
    }
}

fn f64s(t: &Tensor) -> Vec<f64> {
    t.iter().map(|&v| v as f64).collect()
}

#[track_caller]
fn assert_near(got: &Tensor, want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: sizes");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "{what}: element {i}: {g} vs {w}"
        );
    }
}

pub fn optim_update_follows_the_rules_over_two_steps<B: Backend>(be: &B) {
    let rules = [
        OptimStep::Sgd {
            lr: 0.1,
            wd: 0.0,
            momentum: 0.0,
        },
        OptimStep::Sgd {
            lr: 0.05,
            wd: 0.01,
            momentum: 0.9,
        },
        OptimStep::Adam {
            lr: 0.01,
            wd: 0.001,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            bc1: 0.1,
            bc2: 0.001,
        },
    ];
    for (r, rule) in rules.into_iter().enumerate() {
        let p = test_tensor(&[5, 37], 10 + r as u64, 1.0);
        let g1 = test_tensor(&[5, 37], 20 + r as u64, 1.0);
        let g2 = test_tensor(&[5, 37], 30 + r as u64, 1.0);
        let (q1, c1, d1) = be
            .optim_update(&up(be, &p), &up(be, &g1), None, None, rule)
            .must();
        let s1 = reference(&(f64s(&p), None, None), &f64s(&g1), rule);
        assert_near(&down(be, &q1), &s1.0, &format!("{rule:?} step 1"));
        assert_eq!(c1.is_some(), s1.1.is_some(), "{rule:?}: first buffer");
        assert_eq!(d1.is_some(), s1.2.is_some(), "{rule:?}: second buffer");
        let (q2, c2, _) = be
            .optim_update(&q1, &up(be, &g2), c1.as_ref(), d1.as_ref(), rule)
            .must();
        // The reference continues from the backend's step-1 state (so only step 2 is compared).
        let st = (
            f64s(&down(be, &q1)),
            c1.as_ref().map(|t| f64s(&down(be, t))),
            d1.as_ref().map(|t| f64s(&down(be, t))),
        );
        let s2 = reference(&st, &f64s(&g2), rule);
        assert_near(&down(be, &q2), &s2.0, &format!("{rule:?} step 2"));
        if let (Some(c2), Some(w)) = (&c2, &s2.1) {
            assert_near(&down(be, c2), w, &format!("{rule:?} step 2 buffer"));
        }
    }
}

pub fn optim_update_shape_errors<B: Backend>(be: &B) {
    let rule = OptimStep::Sgd {
        lr: 0.1,
        wd: 0.0,
        momentum: 0.9,
    };
    let p = up(be, &test_tensor(&[3, 4], 1, 1.0));
    let g = up(be, &test_tensor(&[4, 3], 2, 1.0));
    assert!(
        be.optim_update(&p, &g, None, None, rule).is_err(),
        "gradient of another shape"
    );
    let g = up(be, &test_tensor(&[3, 4], 3, 1.0));
    let b = up(be, &test_tensor(&[2, 6], 4, 1.0));
    assert!(
        be.optim_update(&p, &g, Some(&b), None, rule).is_err(),
        "buffer of another shape"
    );
}
