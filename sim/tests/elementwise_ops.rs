//! Tests of the CPU element maps, arithmetic, reductions, pooling, softmax family and norms:
//! finite-difference gradient checks of every adjoint, parity against naive reference loops written
//! here, hand-computed values, bad-input errors, thread-count independence and a few properties.

use proptest::prelude::*;
use sim::cpu;
use sim::gradcheck::{check_gradient, test_tensor};
use sim::{Act, Error, Pool2dParams, Tensor, tensor};

// ---------------------------------------------------------------------------------------------
// helpers

/// <r, t> in f64.
fn ip(r: &Tensor, t: &Tensor) -> f64 {
    assert_eq!(r.shape(), t.shape());
    r.iter()
        .zip(t.iter())
        .map(|(&a, &b)| a as f64 * b as f64)
        .sum()
}

fn assert_close(a: &Tensor, b: &Tensor, tol: f32, what: &str) {
    assert_eq!(a.shape(), b.shape(), "{what}: shapes");
    for (i, (&x, &y)) in a.iter().zip(b.iter()).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}: element {i}: {x} vs {y}"
        );
    }
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.iter().map(|v| v.to_bits()).collect()
}

fn assert_grad_ok(name: &str, g: sim::gradcheck::GradCheck, tol: f64) {
    assert!(g.probed > 0, "{name}: nothing probed");
    assert!(g.ok(tol), "{name}: gradient check failed: {g:?}");
}

/// Run `f` inside a rayon pool of `n` threads.
fn with_threads<T: Send>(n: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .unwrap()
        .install(f)
}

/// Distinct values (a shuffled grid spaced 0.05 apart) so that max-pool argmaxes never flip under a
/// finite-difference step of 1e-2.
fn distinct_tensor(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let perm = sim::Stream::new(seed, "test.distinct").permutation(n);
    tensor(
        shape,
        perm.iter()
            .map(|&p| (p as f32 - n as f32 / 2.0) * 0.05)
            .collect(),
    )
    .unwrap()
}

/// Naive max pool: first maximum in row-major window order wins.
fn naive_max_pool(x: &Tensor, p: Pool2dParams) -> (Tensor, Vec<u32>) {
    let s = x.shape();
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    let ho = (h - p.kernel.0) / p.stride.0 + 1;
    let wo = (w - p.kernel.1) / p.stride.1 + 1;
    let mut y = Tensor::zeros(ndarray::IxDyn(&[n, c, ho, wo]));
    let mut idx = vec![];
    for b in 0..n {
        for ch in 0..c {
            for i in 0..ho {
                for j in 0..wo {
                    let mut best = x[[b, ch, i * p.stride.0, j * p.stride.1]];
                    let mut arg = (i * p.stride.0) * w + j * p.stride.1;
                    for dh in 0..p.kernel.0 {
                        for dw in 0..p.kernel.1 {
                            let (hh, ww) = (i * p.stride.0 + dh, j * p.stride.1 + dw);
                            if x[[b, ch, hh, ww]] > best {
                                best = x[[b, ch, hh, ww]];
                                arg = hh * w + ww;
                            }
                        }
                    }
                    y[[b, ch, i, j]] = best;
                    idx.push(arg as u32);
                }
            }
        }
    }
    (y, idx)
}

fn naive_avg_pool(x: &Tensor, p: Pool2dParams) -> Tensor {
    let s = x.shape();
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    let ho = (h - p.kernel.0) / p.stride.0 + 1;
    let wo = (w - p.kernel.1) / p.stride.1 + 1;
    let mut y = Tensor::zeros(ndarray::IxDyn(&[n, c, ho, wo]));
    for b in 0..n {
        for ch in 0..c {
            for i in 0..ho {
                for j in 0..wo {
                    let mut s = 0.0f64;
                    for dh in 0..p.kernel.0 {
                        for dw in 0..p.kernel.1 {
                            s += x[[b, ch, i * p.stride.0 + dh, j * p.stride.1 + dw]] as f64;
                        }
                    }
                    y[[b, ch, i, j]] = (s / (p.kernel.0 * p.kernel.1) as f64) as f32;
                }
            }
        }
    }
    y
}

/// (kernel, stride, input shape).
type PoolCase = ((usize, usize), (usize, usize), [usize; 4]);

const POOLS: [PoolCase; 5] = [
    ((2, 2), (2, 2), [2, 3, 6, 8]),  // non-overlapping, non-square input
    ((3, 3), (2, 2), [1, 2, 7, 9]),  // overlapping windows
    ((2, 3), (1, 2), [2, 2, 5, 7]),  // non-square window, stride != kernel
    ((3, 2), (3, 1), [1, 3, 10, 6]), // rows dropped by the stride
    ((1, 1), (1, 1), [1, 1, 3, 3]),  // identity pooling
];

// ---------------------------------------------------------------------------------------------
// element maps

fn acts() -> Vec<Act> {
    vec![
        Act::Identity,
        Act::HardSigmoid,
        Act::MyHardSig,
        Act::MySigmoid,
        Act::Relu,
        Act::Gelu,
        Act::Clamp { lo: -0.3, hi: 0.7 },
    ]
}

/// Inputs kept at least 0.05 away from every kink of the piecewise-linear maps.
fn away_from_kinks(shape: &[usize], seed: u64) -> Tensor {
    let kinks = [-0.3f32, 0.0, 0.7, 1.0, 2.0];
    test_tensor(shape, seed, 1.5).mapv(|mut v| {
        for k in kinks {
            if (v - k).abs() < 0.05 {
                v = k + 0.05 * if v >= k { 1.0 } else { -1.0 };
            }
        }
        v
    })
}

#[test]
fn map_matches_scalar_definition_and_map_grad_passes_gradcheck() {
    let x = away_from_kinks(&[3, 4, 5], 1);
    let r = test_tensor(&[3, 4, 5], 2, 1.0);
    for act in acts() {
        let y = cpu::map(&x, act).unwrap();
        for (&xi, &yi) in x.iter().zip(y.iter()) {
            assert_eq!(yi.to_bits(), act.f(xi).to_bits(), "{act:?} at {xi}");
        }
        let g = cpu::map_grad(&x, &r, act).unwrap();
        let res = check_gradient(|t| ip(&r, &cpu::map(t, act).unwrap()), &x, &g, 1e-3, 200);
        assert_grad_ok(&format!("map {act:?}"), res, 5e-3);
    }
}

#[test]
fn map_hand_values() {
    let x = tensor(&[5], vec![-1.0, 0.25, 0.5, 1.5, 3.0]).unwrap();
    let hs = cpu::map(&x, Act::HardSigmoid).unwrap();
    assert_eq!(hs.as_slice().unwrap(), &[0.0, 0.25, 0.5, 1.0, 1.0]);
    let mh = cpu::map(&x, Act::MyHardSig).unwrap();
    assert_eq!(mh.as_slice().unwrap(), &[0.0, 0.125, 0.25, 0.75, 1.0]);
    let relu = cpu::map(&x, Act::Relu).unwrap();
    assert_eq!(relu.as_slice().unwrap(), &[0.0, 0.25, 0.5, 1.5, 3.0]);
    // Derivatives at the kinks: zero (as PyTorch's hardtanh/clamp/relu).
    let k = tensor(&[3], vec![0.0, 1.0, 0.5]).unwrap();
    let ones = tensor(&[3], vec![1.0; 3]).unwrap();
    let d = cpu::map_grad(&k, &ones, Act::HardSigmoid).unwrap();
    assert_eq!(d.as_slice().unwrap(), &[0.0, 0.0, 1.0]);
    // GELU(-1) = -Φ(-1) = -0.15865525.
    let g = cpu::map(&tensor(&[1], vec![-1.0]).unwrap(), Act::Gelu).unwrap();
    assert!((g[[0]] + 0.158_655_25).abs() < 1e-6);
}

#[test]
fn map_errors() {
    let x = test_tensor(&[2, 3], 1, 1.0);
    let bad = Act::Clamp { lo: 1.0, hi: 0.0 };
    assert!(matches!(
        cpu::map(&x, bad),
        Err(Error::Param { op: "map", .. })
    ));
    let gy = test_tensor(&[3, 2], 2, 1.0);
    assert!(matches!(
        cpu::map_grad(&x, &gy, Act::Relu),
        Err(Error::Shape { op: "map_grad", .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// arithmetic

#[test]
fn arithmetic_parity_with_ndarray() {
    let a = test_tensor(&[4, 3, 2], 1, 1.0);
    let b = test_tensor(&[4, 3, 2], 2, 1.0);
    assert_eq!(bits(&cpu::add(&a, &b).unwrap()), bits(&(&a + &b)));
    assert_eq!(bits(&cpu::sub(&a, &b).unwrap()), bits(&(&a - &b)));
    assert_eq!(bits(&cpu::mul(&a, &b).unwrap()), bits(&(&a * &b)));
    assert_eq!(
        bits(&cpu::scale(&a, -2.5).unwrap()),
        bits(&a.mapv(|v| -2.5 * v))
    );
    let ax: Tensor = ndarray::Zip::from(&a)
        .and(&b)
        .map_collect(|&x, &y| 0.75 * x + y);
    assert_eq!(bits(&cpu::axpy(0.75, &a, &b).unwrap()), bits(&ax));
    // Hand values.
    let p = tensor(&[3], vec![1.0, 2.0, 3.0]).unwrap();
    let q = tensor(&[3], vec![0.5, -1.0, 4.0]).unwrap();
    assert_eq!(
        cpu::add(&p, &q).unwrap().as_slice().unwrap(),
        &[1.5, 1.0, 7.0]
    );
    assert_eq!(
        cpu::mul(&p, &q).unwrap().as_slice().unwrap(),
        &[0.5, -2.0, 12.0]
    );
    assert_eq!(
        cpu::axpy(2.0, &p, &q).unwrap().as_slice().unwrap(),
        &[2.5, 3.0, 10.0]
    );
}

#[test]
fn arithmetic_accepts_non_standard_layout() {
    let a = test_tensor(&[3, 4], 1, 1.0);
    let at = a.t().to_owned(); // Fortran-order owned array
    let b = test_tensor(&[4, 3], 2, 1.0);
    let sum = cpu::add(&at, &b).unwrap();
    for i in 0..4 {
        for j in 0..3 {
            assert_eq!(sum[[i, j]], a[[j, i]] + b[[i, j]]);
        }
    }
}

#[test]
fn arithmetic_shape_errors() {
    let a = test_tensor(&[2, 3], 1, 1.0);
    let b = test_tensor(&[3, 2], 2, 1.0);
    assert!(matches!(
        cpu::add(&a, &b),
        Err(Error::Shape { op: "add", .. })
    ));
    assert!(matches!(
        cpu::sub(&a, &b),
        Err(Error::Shape { op: "sub", .. })
    ));
    assert!(matches!(
        cpu::mul(&a, &b),
        Err(Error::Shape { op: "mul", .. })
    ));
    assert!(matches!(
        cpu::axpy(1.0, &a, &b),
        Err(Error::Shape { op: "axpy", .. })
    ));
    assert!(matches!(
        cpu::dot(&a, &b),
        Err(Error::Shape { op: "dot", .. })
    ));
    let msg = cpu::add(&a, &b).unwrap_err().to_string();
    assert!(msg.contains("[2, 3]") && msg.contains("[3, 2]"), "{msg}");
}

#[test]
fn mul_gradcheck() {
    let a = test_tensor(&[3, 5], 1, 1.0);
    let b = test_tensor(&[3, 5], 2, 1.0);
    let r = test_tensor(&[3, 5], 3, 1.0);
    // d<r, a⊙b>/da = r ⊙ b.
    let g = cpu::mul(&r, &b).unwrap();
    let res = check_gradient(|t| ip(&r, &cpu::mul(t, &b).unwrap()), &a, &g, 1e-2, 100);
    assert_grad_ok("mul", res, 1e-3);
}

#[test]
fn add_along_parity_and_bias_gradient() {
    let x = test_tensor(&[2, 3, 4, 5], 1, 1.0);
    for axis in 0..4 {
        let len = x.shape()[axis];
        let b = test_tensor(&[len], 10 + axis as u64, 1.0);
        let y = cpu::add_along(&x, &b, axis).unwrap();
        for (ix, &v) in x.indexed_iter() {
            assert_eq!(y[&ix], v + b[ix[axis]], "axis {axis} at {ix:?}");
        }
        // The adjoint of add_along w.r.t. b is sum_except.
        let r = test_tensor(x.shape(), 20 + axis as u64, 1.0);
        let gb = cpu::sum_except(&r, axis).unwrap();
        let res = check_gradient(
            |t| ip(&r, &cpu::add_along(&x, t, axis).unwrap()),
            &b,
            &gb,
            1e-2,
            100,
        );
        assert_grad_ok(&format!("add_along axis {axis}"), res, 1e-3);
    }
}

#[test]
fn add_along_empty_tensors() {
    let e = Tensor::zeros(ndarray::IxDyn(&[0, 3]));
    let b = tensor(&[3], vec![1.0, 2.0, 3.0]).unwrap();
    assert_eq!(cpu::add_along(&e, &b, 1).unwrap().shape(), &[0, 3]);
    let e2 = Tensor::zeros(ndarray::IxDyn(&[2, 0]));
    let b0 = Tensor::zeros(ndarray::IxDyn(&[0]));
    assert_eq!(cpu::add_along(&e2, &b0, 1).unwrap().shape(), &[2, 0]);
    assert_eq!(cpu::sum_except(&e2, 1).unwrap().shape(), &[0]);
}

#[test]
fn add_along_errors() {
    let x = test_tensor(&[2, 3], 1, 1.0);
    let b = test_tensor(&[3], 2, 1.0);
    assert!(matches!(
        cpu::add_along(&x, &b, 2),
        Err(Error::Param {
            op: "add_along",
            ..
        })
    ));
    assert!(matches!(
        cpu::add_along(&x, &b, 0),
        Err(Error::Shape {
            op: "add_along",
            ..
        })
    ));
    let b2 = test_tensor(&[1, 3], 2, 1.0);
    assert!(matches!(
        cpu::add_along(&x, &b2, 1),
        Err(Error::Shape {
            op: "add_along",
            ..
        })
    ));
}

// ---------------------------------------------------------------------------------------------
// reductions

#[test]
fn reductions_hand_values() {
    let a = tensor(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let b = tensor(&[2, 2], vec![0.5, -1.0, 2.0, 0.25]).unwrap();
    assert_eq!(cpu::sum_all(&a).unwrap(), 10.0);
    assert_eq!(cpu::dot(&a, &b).unwrap(), 0.5 - 2.0 + 6.0 + 1.0);
    assert_eq!(
        cpu::sum_except(&a, 0).unwrap().as_slice().unwrap(),
        &[3.0, 7.0]
    );
    assert_eq!(
        cpu::sum_except(&a, 1).unwrap().as_slice().unwrap(),
        &[4.0, 6.0]
    );
    // Empty tensor sums to zero.
    let e = Tensor::zeros(ndarray::IxDyn(&[0, 3]));
    assert_eq!(cpu::sum_all(&e).unwrap(), 0.0);
    assert_eq!(
        cpu::sum_except(&e, 1).unwrap().as_slice().unwrap(),
        &[0.0; 3]
    );
}

#[test]
fn reductions_accurate_on_large_input() {
    // 100_003 values: Σ (i mod 7) computed exactly in integers.
    let n = 100_003usize;
    let x = tensor(&[n], (0..n).map(|i| (i % 7) as f32).collect()).unwrap();
    let exact: u64 = (0..n).map(|i| (i % 7) as u64).sum();
    assert_eq!(cpu::sum_all(&x).unwrap(), exact as f32);
    let ones = tensor(&[n], vec![1.0; n]).unwrap();
    assert_eq!(cpu::dot(&x, &ones).unwrap(), exact as f32);
    // Summing many 0.1s: f64 accumulation keeps the f32 result correctly rounded.
    let t = tensor(&[n], vec![0.1; n]).unwrap();
    let want = (0.1f32 as f64 * n as f64) as f32;
    assert_eq!(cpu::sum_all(&t).unwrap(), want);
}

#[test]
fn sum_except_parity() {
    let x = test_tensor(&[3, 4, 5, 2], 7, 1.0);
    for axis in 0..4 {
        let got = cpu::sum_except(&x, axis).unwrap();
        let mut want = vec![0.0f64; x.shape()[axis]];
        for (ix, &v) in x.indexed_iter() {
            want[ix[axis]] += v as f64;
        }
        let want = tensor(&[want.len()], want.iter().map(|&v| v as f32).collect()).unwrap();
        assert_close(&got, &want, 1e-6, &format!("sum_except axis {axis}"));
    }
    assert!(matches!(
        cpu::sum_except(&x, 4),
        Err(Error::Param {
            op: "sum_except",
            ..
        })
    ));
}

#[test]
fn dot_gradcheck() {
    let a = test_tensor(&[4, 6], 1, 1.0);
    let b = test_tensor(&[4, 6], 2, 1.0);
    let res = check_gradient(|t| cpu::dot(t, &b).unwrap() as f64, &a, &b, 1e-2, 100);
    assert_grad_ok("dot", res, 1e-2);
    let ones = Tensor::from_elem(ndarray::IxDyn(&[4, 6]), 1.0);
    let res = check_gradient(|t| cpu::sum_all(t).unwrap() as f64, &a, &ones, 1e-2, 100);
    assert_grad_ok("sum_all", res, 1e-2);
}

// ---------------------------------------------------------------------------------------------
// pooling

#[test]
fn max_pool_parity_with_naive_reference() {
    for (seed, &(k, s, shape)) in POOLS.iter().enumerate() {
        let p = Pool2dParams {
            kernel: k,
            stride: s,
        };
        let x = test_tensor(&shape, seed as u64, 1.0);
        let (y, idx) = cpu::max_pool2d(&x, p).unwrap();
        let (ry, ridx) = naive_max_pool(&x, p);
        assert_eq!(bits(&y), bits(&ry), "{p:?} values");
        assert_eq!(
            idx.iter().copied().collect::<Vec<_>>(),
            ridx,
            "{p:?} indices"
        );
        assert_eq!(idx.shape(), y.shape());
    }
}

#[test]
fn max_pool_hand_example_ties_and_nan() {
    // 1×1×4×4, 2×2 windows stride 2.
    #[rustfmt::skip]
    let x = tensor(&[1, 1, 4, 4], vec![
        1.0, 5.0, 2.0, 2.0,
        3.0, 4.0, 2.0, 2.0,
        -1.0, -2.0, 7.0, 0.0,
        -3.0, -1.0, 0.0, 7.0,
    ]).unwrap();
    let (y, idx) = cpu::max_pool2d(&x, Pool2dParams::new(2, 2)).unwrap();
    assert_eq!(y.as_slice().unwrap(), &[5.0, 2.0, -1.0, 7.0]);
    // Ties: the first in row-major window order (2 at (0,2); 7 at (2,2)).
    assert_eq!(idx.as_slice().unwrap(), &[1, 2, 8, 10]);
    // NaN propagates to the output.
    let mut xn = x.clone();
    xn[[0, 0, 1, 0]] = f32::NAN;
    let (yn, idxn) = cpu::max_pool2d(&xn, Pool2dParams::new(2, 2)).unwrap();
    assert!(yn[[0, 0, 0, 0]].is_nan());
    assert_eq!(idxn[[0, 0, 0, 0]], 4);
    assert_eq!(yn[[0, 0, 0, 1]], 2.0);
    // All −∞ window: the first position.
    let xi = Tensor::from_elem(ndarray::IxDyn(&[1, 1, 2, 2]), f32::NEG_INFINITY);
    let (yi, ii) = cpu::max_pool2d(&xi, Pool2dParams::new(2, 2)).unwrap();
    assert_eq!(yi[[0, 0, 0, 0]], f32::NEG_INFINITY);
    assert_eq!(ii[[0, 0, 0, 0]], 0);
}

#[test]
fn max_pool_gradcheck_via_unpool() {
    for (seed, &(k, s, shape)) in POOLS.iter().enumerate() {
        let p = Pool2dParams {
            kernel: k,
            stride: s,
        };
        let x = distinct_tensor(&shape, seed as u64);
        let (y, idx) = cpu::max_pool2d(&x, p).unwrap();
        let r = test_tensor(y.shape(), 100 + seed as u64, 1.0);
        let g = cpu::max_unpool2d(&r, &idx, (shape[2], shape[3])).unwrap();
        let res = check_gradient(
            |t| ip(&r, &cpu::max_pool2d(t, p).unwrap().0),
            &x,
            &g,
            1e-2,
            400,
        );
        assert_grad_ok(&format!("max_pool {p:?}"), res, 1e-3);
    }
}

#[test]
fn max_unpool_scatter_adds_on_overlap() {
    // 1×1×3×3 with a 2×2 window, stride 1: the centre wins all four windows.
    let x = tensor(
        &[1, 1, 3, 3],
        vec![0.0, 0.0, 0.0, 0.0, 9.0, 0.0, 0.0, 0.0, 0.0],
    )
    .unwrap();
    let (_, idx) = cpu::max_pool2d(&x, Pool2dParams::new(2, 1)).unwrap();
    assert_eq!(idx.as_slice().unwrap(), &[4, 4, 4, 4]);
    let g = tensor(&[1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let u = cpu::max_unpool2d(&g, &idx, (3, 3)).unwrap();
    assert_eq!(
        u.as_slice().unwrap(),
        &[0.0, 0.0, 0.0, 0.0, 10.0, 0.0, 0.0, 0.0, 0.0]
    );
}

#[test]
fn pool_errors() {
    let x3 = test_tensor(&[2, 4, 4], 1, 1.0);
    assert!(matches!(
        cpu::max_pool2d(&x3, Pool2dParams::new(2, 2)),
        Err(Error::Shape {
            op: "max_pool2d",
            ..
        })
    ));
    assert!(matches!(
        cpu::avg_pool2d(&x3, Pool2dParams::new(2, 2)),
        Err(Error::Shape {
            op: "avg_pool2d",
            ..
        })
    ));
    let x = test_tensor(&[1, 1, 3, 3], 1, 1.0);
    for p in [
        Pool2dParams::new(4, 1),
        Pool2dParams::new(2, 0),
        Pool2dParams::new(0, 1),
    ] {
        assert!(
            matches!(cpu::max_pool2d(&x, p), Err(Error::Param { .. })),
            "{p:?}"
        );
        assert!(
            matches!(cpu::avg_pool2d(&x, p), Err(Error::Param { .. })),
            "{p:?}"
        );
    }
    let (y, idx) = cpu::max_pool2d(&x, Pool2dParams::new(2, 1)).unwrap();
    // Index out of range for the stated input size (window (0, 1) has its argmax at index ≥ 1).
    assert!(matches!(
        cpu::max_unpool2d(&y, &idx, (1, 1)),
        Err(Error::Param {
            op: "max_unpool2d",
            ..
        })
    ));
    // Values and indices of different shapes.
    let y2 = test_tensor(&[1, 1, 2, 1], 3, 1.0);
    assert!(matches!(
        cpu::max_unpool2d(&y2, &idx, (3, 3)),
        Err(Error::Shape {
            op: "max_unpool2d",
            ..
        })
    ));
    // Adjoint with a gradient whose size does not match the stated input.
    let gy = test_tensor(&[1, 1, 2, 2], 4, 1.0);
    assert!(matches!(
        cpu::avg_pool2d_adjoint(&gy, (6, 6), Pool2dParams::new(2, 2)),
        Err(Error::Shape {
            op: "avg_pool2d_adjoint",
            ..
        })
    ));
}

#[test]
fn avg_pool_parity_hand_value_and_gradcheck() {
    for (seed, &(k, s, shape)) in POOLS.iter().enumerate() {
        let p = Pool2dParams {
            kernel: k,
            stride: s,
        };
        let x = test_tensor(&shape, seed as u64, 1.0);
        let y = cpu::avg_pool2d(&x, p).unwrap();
        assert_close(&y, &naive_avg_pool(&x, p), 1e-6, &format!("avg_pool {p:?}"));
        let r = test_tensor(y.shape(), 50 + seed as u64, 1.0);
        let g = cpu::avg_pool2d_adjoint(&r, (shape[2], shape[3]), p).unwrap();
        let res = check_gradient(
            |t| ip(&r, &cpu::avg_pool2d(t, p).unwrap()),
            &x,
            &g,
            1e-2,
            400,
        );
        assert_grad_ok(&format!("avg_pool {p:?}"), res, 1e-3);
    }
    let x = tensor(&[1, 1, 2, 4], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]).unwrap();
    let y = cpu::avg_pool2d(&x, Pool2dParams::new(2, 2)).unwrap();
    assert_eq!(y.as_slice().unwrap(), &[3.5, 5.5]);
    let g = cpu::avg_pool2d_adjoint(&y, (2, 4), Pool2dParams::new(2, 2)).unwrap();
    assert_eq!(
        g.as_slice().unwrap(),
        &[0.875, 0.875, 1.375, 1.375, 0.875, 0.875, 1.375, 1.375]
    );
}

// ---------------------------------------------------------------------------------------------
// softmax family

#[test]
fn softmax_hand_values_and_stability() {
    let ln2 = std::f32::consts::LN_2;
    let x = tensor(&[2, 2], vec![0.0, ln2, 1000.0, 1000.0]).unwrap();
    let s = cpu::softmax(&x).unwrap();
    assert_close(
        &s,
        &tensor(&[2, 2], vec![1.0 / 3.0, 2.0 / 3.0, 0.5, 0.5]).unwrap(),
        1e-6,
        "softmax",
    );
    let ls = cpu::log_softmax(&x).unwrap();
    let l3 = 3.0f32.ln();
    assert_close(
        &ls,
        &tensor(&[2, 2], vec![-l3, ln2 - l3, -ln2, -ln2]).unwrap(),
        1e-6,
        "log_softmax",
    );
    // Very negative logits: no -inf / NaN in log_softmax.
    let y = cpu::log_softmax(&tensor(&[1, 2], vec![0.0, -200.0]).unwrap()).unwrap();
    assert!((y[[0, 1]] + 200.0).abs() < 1e-3 && y[[0, 0]].abs() < 1e-6);
    // NaN propagates.
    let n = cpu::softmax(&tensor(&[1, 3], vec![0.0, f32::NAN, 1.0]).unwrap()).unwrap();
    assert!(n.iter().all(|v| v.is_nan()));
}

#[test]
fn softmax_family_gradchecks() {
    let x = test_tensor(&[3, 2, 5], 1, 2.0);
    let r = test_tensor(&[3, 2, 5], 2, 1.0);
    let y = cpu::log_softmax(&x).unwrap();
    let g = cpu::log_softmax_grad(&y, &r).unwrap();
    let res = check_gradient(|t| ip(&r, &cpu::log_softmax(t).unwrap()), &x, &g, 1e-2, 100);
    assert_grad_ok("log_softmax", res, 5e-3);
    // softmax: its vector-Jacobian product is log_softmax_grad(log_softmax(x), softmax(x) ⊙ r).
    let s = cpu::softmax(&x).unwrap();
    let gs = cpu::log_softmax_grad(&y, &cpu::mul(&s, &r).unwrap()).unwrap();
    let res = check_gradient(|t| ip(&r, &cpu::softmax(t).unwrap()), &x, &gs, 1e-2, 100);
    assert_grad_ok("softmax", res, 5e-3);
}

#[test]
fn cross_entropy_hand_value_gradient_and_errors() {
    // All-zero logits over K classes: loss ln K, dlogits (1/K − onehot)/N.
    let z = Tensor::zeros(ndarray::IxDyn(&[2, 4]));
    let (loss, g) = cpu::cross_entropy(&z, &[1, 3]).unwrap();
    assert!((loss - 4.0f32.ln()).abs() < 1e-6);
    #[rustfmt::skip]
    let want = tensor(&[2, 4], vec![
        0.125, -0.375, 0.125, 0.125,
        0.125, 0.125, 0.125, -0.375,
    ]).unwrap();
    assert_close(&g, &want, 1e-6, "dlogits");
    // Logits [0, ln 3]: p = [1/4, 3/4]; label 1 → loss ln(4/3).
    let l = tensor(&[1, 2], vec![0.0, 3.0f32.ln()]).unwrap();
    let (loss, _) = cpu::cross_entropy(&l, &[1]).unwrap();
    assert!((loss - (4.0f32 / 3.0).ln()).abs() < 1e-6);

    let x = test_tensor(&[5, 7], 3, 2.0);
    let labels = [0, 6, 3, 3, 1];
    let (_, g) = cpu::cross_entropy(&x, &labels).unwrap();
    let res = check_gradient(
        |t| cpu::cross_entropy(t, &labels).unwrap().0 as f64,
        &x,
        &g,
        1e-2,
        100,
    );
    assert_grad_ok("cross_entropy", res, 1e-2);

    assert!(matches!(
        cpu::cross_entropy(&x, &[0, 1, 2, 3, 7]),
        Err(Error::Param {
            op: "cross_entropy",
            ..
        })
    ));
    assert!(matches!(
        cpu::cross_entropy(&x, &[0, 1]),
        Err(Error::Shape {
            op: "cross_entropy",
            ..
        })
    ));
    let x3 = test_tensor(&[2, 3, 4], 1, 1.0);
    assert!(matches!(
        cpu::cross_entropy(&x3, &[0, 1]),
        Err(Error::Shape {
            op: "cross_entropy",
            ..
        })
    ));
    let empty = Tensor::zeros(ndarray::IxDyn(&[0, 3]));
    assert!(cpu::cross_entropy(&empty, &[]).is_err());
}

#[test]
fn softmax_errors() {
    let s = Tensor::zeros(ndarray::IxDyn(&[]));
    assert!(matches!(
        cpu::softmax(&s),
        Err(Error::Shape { op: "softmax", .. })
    ));
    assert!(matches!(
        cpu::log_softmax(&s),
        Err(Error::Shape {
            op: "log_softmax",
            ..
        })
    ));
    let a = test_tensor(&[2, 3], 1, 1.0);
    let b = test_tensor(&[3, 2], 1, 1.0);
    assert!(matches!(
        cpu::log_softmax_grad(&a, &b),
        Err(Error::Shape {
            op: "log_softmax_grad",
            ..
        })
    ));
}

// ---------------------------------------------------------------------------------------------
// layer norm

fn naive_layer_norm(x: &Tensor, g: &Tensor, b: &Tensor, eps: f64) -> Tensor {
    let d = *x.shape().last().unwrap();
    let xs: Vec<f32> = x.iter().copied().collect();
    let mut out = vec![];
    for row in xs.chunks(d) {
        let m = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let v = row.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / d as f64;
        for (j, &e) in row.iter().enumerate() {
            out.push(((e as f64 - m) / (v + eps).sqrt() * g[j] as f64 + b[j] as f64) as f32);
        }
    }
    tensor(x.shape(), out).unwrap()
}

#[test]
fn layer_norm_hand_value_parity_and_stats() {
    // PyTorch: F.layer_norm([1, 2, 3], (3,), eps=0) = [-√1.5, 0, √1.5].
    let x = tensor(&[1, 3], vec![1.0, 2.0, 3.0]).unwrap();
    let one = tensor(&[3], vec![1.0; 3]).unwrap();
    let zero = tensor(&[3], vec![0.0; 3]).unwrap();
    let (y, m, rs) = cpu::layer_norm(&x, &one, &zero, 0.0).unwrap();
    let r = 1.5f32.sqrt();
    assert_close(
        &y,
        &tensor(&[1, 3], vec![-r, 0.0, r]).unwrap(),
        1e-6,
        "ln hand",
    );
    assert_eq!(m.shape(), &[1]);
    assert_eq!(m[[0]], 2.0);
    assert!((rs[[0]] - 1.5f32.sqrt()).abs() < 1e-6);

    let x = test_tensor(&[2, 3, 8], 1, 2.0);
    let g = test_tensor(&[8], 2, 1.0);
    let b = test_tensor(&[8], 3, 1.0);
    let (y, m, rs) = cpu::layer_norm(&x, &g, &b, 1e-5).unwrap();
    assert_close(&y, &naive_layer_norm(&x, &g, &b, 1e-5), 1e-5, "ln parity");
    assert_eq!(m.shape(), &[2, 3]);
    assert_eq!(rs.shape(), &[2, 3]);
}

#[test]
fn layer_norm_gradchecks() {
    let shape = [3, 2, 6];
    let x = test_tensor(&shape, 1, 1.5);
    let g = test_tensor(&[6], 2, 1.0);
    let b = test_tensor(&[6], 3, 1.0);
    let r = test_tensor(&shape, 4, 1.0);
    let eps = 1e-5;
    let (_, m, rs) = cpu::layer_norm(&x, &g, &b, eps).unwrap();
    let (gx, gg, gb) = cpu::layer_norm_grad(&x, &g, &m, &rs, &r).unwrap();
    let f = |x: &Tensor, g: &Tensor, b: &Tensor| ip(&r, &cpu::layer_norm(x, g, b, eps).unwrap().0);
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

#[test]
fn layer_norm_errors() {
    let x = test_tensor(&[2, 4], 1, 1.0);
    let g4 = test_tensor(&[4], 2, 1.0);
    let g3 = test_tensor(&[3], 2, 1.0);
    assert!(matches!(
        cpu::layer_norm(&x, &g3, &g4, 1e-5),
        Err(Error::Shape {
            op: "layer_norm",
            ..
        })
    ));
    assert!(matches!(
        cpu::layer_norm(&x, &g4, &g3, 1e-5),
        Err(Error::Shape {
            op: "layer_norm",
            ..
        })
    ));
    assert!(matches!(
        cpu::layer_norm(&x, &g4, &g4, -1.0),
        Err(Error::Param {
            op: "layer_norm",
            ..
        })
    ));
    let s = Tensor::zeros(ndarray::IxDyn(&[]));
    assert!(cpu::layer_norm(&s, &g4, &g4, 1e-5).is_err());
    let (_, m, rs) = cpu::layer_norm(&x, &g4, &g4, 1e-5).unwrap();
    let gy = test_tensor(&[4, 2], 3, 1.0);
    assert!(matches!(
        cpu::layer_norm_grad(&x, &g4, &m, &rs, &gy),
        Err(Error::Shape {
            op: "layer_norm_grad",
            ..
        })
    ));
    let gy = test_tensor(&[2, 4], 3, 1.0);
    assert!(matches!(
        cpu::layer_norm_grad(
            &x,
            &g4,
            &rs.clone()
                .into_shape_with_order(ndarray::IxDyn(&[1, 2]))
                .unwrap(),
            &rs,
            &gy
        ),
        Err(Error::Shape {
            op: "layer_norm_grad",
            ..
        })
    ));
}

// ---------------------------------------------------------------------------------------------
// batch norm

/// Naive batch norm over all axes but 1: (y, mean, biased var).
fn naive_batch_norm(x: &Tensor, g: &Tensor, b: &Tensor, eps: f64) -> (Tensor, Vec<f64>, Vec<f64>) {
    let c = x.shape()[1];
    let mut sum = vec![0.0f64; c];
    let mut cnt = vec![0usize; c];
    for (ix, &v) in x.indexed_iter() {
        sum[ix[1]] += v as f64;
        cnt[ix[1]] += 1;
    }
    let mean: Vec<f64> = sum.iter().zip(&cnt).map(|(s, &n)| s / n as f64).collect();
    let mut q = vec![0.0f64; c];
    for (ix, &v) in x.indexed_iter() {
        q[ix[1]] += (v as f64 - mean[ix[1]]).powi(2);
    }
    let var: Vec<f64> = q.iter().zip(&cnt).map(|(s, &n)| s / n as f64).collect();
    let mut y = x.clone();
    for (ix, v) in y.indexed_iter_mut() {
        let ch = ix[1];
        *v = ((*v as f64 - mean[ch]) / (var[ch] + eps).sqrt() * g[ch] as f64 + b[ch] as f64) as f32;
    }
    (y, mean, var)
}

#[test]
fn batch_norm_train_parity_nchw_and_nc() {
    for shape in [vec![4, 3, 5, 2], vec![6, 5]] {
        let c = shape[1];
        let x = test_tensor(&shape, 1, 2.0).mapv(|v| v + 0.7);
        let g = test_tensor(&[c], 2, 1.0);
        let b = test_tensor(&[c], 3, 1.0);
        let (y, m, v) = cpu::batch_norm_train(&x, &g, &b, 1e-5).unwrap();
        let (ry, rm, rv) = naive_batch_norm(&x, &g, &b, 1e-5);
        assert_close(&y, &ry, 1e-5, "bn y");
        for ch in 0..c {
            assert!((m[[ch]] as f64 - rm[ch]).abs() < 1e-6, "mean {ch}");
            assert!((v[[ch]] as f64 - rv[ch]).abs() < 1e-5, "var {ch}");
        }
        // Eval mode with the batch statistics reproduces train mode.
        let ye = cpu::batch_norm_eval(&x, &g, &b, &m, &v, 1e-5).unwrap();
        assert_close(&ye, &y, 1e-6, "bn eval = train");
    }
    // Hand value: channel values [1, 3] → mean 2, biased var 1, y = ±1/√(1+eps).
    let x = tensor(&[2, 1], vec![1.0, 3.0]).unwrap();
    let one = tensor(&[1], vec![1.0]).unwrap();
    let zero = tensor(&[1], vec![0.0]).unwrap();
    let (y, m, v) = cpu::batch_norm_train(&x, &one, &zero, 0.0).unwrap();
    assert_eq!(y.as_slice().unwrap(), &[-1.0, 1.0]);
    assert_eq!((m[[0]], v[[0]]), (2.0, 1.0));
}

#[test]
fn batch_norm_eval_hand_value() {
    let x = tensor(&[1, 2, 1, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let g = tensor(&[2], vec![2.0, 1.0]).unwrap();
    let b = tensor(&[2], vec![0.5, -1.0]).unwrap();
    let m = tensor(&[2], vec![1.0, 2.0]).unwrap();
    let v = tensor(&[2], vec![4.0, 0.25]).unwrap();
    let y = cpu::batch_norm_eval(&x, &g, &b, &m, &v, 0.0).unwrap();
    // ch0: (x−1)/2·2+0.5; ch1: (x−2)/0.5·1−1.
    assert_eq!(y.as_slice().unwrap(), &[0.5, 1.5, 1.0, 3.0]);
}

#[test]
fn batch_norm_grad_gradchecks() {
    for shape in [vec![3, 2, 3, 2], vec![5, 3]] {
        let c = shape[1];
        let x = test_tensor(&shape, 11, 1.5);
        let g = test_tensor(&[c], 12, 1.0);
        let b = test_tensor(&[c], 13, 1.0);
        let r = test_tensor(&shape, 14, 1.0);
        let eps = 1e-5;
        let (_, m, v) = cpu::batch_norm_train(&x, &g, &b, eps).unwrap();
        let (gx, gg, gb) = cpu::batch_norm_grad(&x, &g, &m, &v, eps, &r).unwrap();
        let f = |x: &Tensor, g: &Tensor, b: &Tensor| {
            ip(&r, &cpu::batch_norm_train(x, g, b, eps).unwrap().0)
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

#[test]
fn batch_norm_errors() {
    let x = test_tensor(&[2, 3, 2, 2], 1, 1.0);
    let g3 = test_tensor(&[3], 2, 1.0);
    let g2 = test_tensor(&[2], 2, 1.0);
    assert!(matches!(
        cpu::batch_norm_train(&x, &g2, &g3, 1e-5),
        Err(Error::Shape {
            op: "batch_norm_train",
            ..
        })
    ));
    assert!(matches!(
        cpu::batch_norm_train(&x, &g3, &g3, f32::NAN),
        Err(Error::Param { .. })
    ));
    let x1 = test_tensor(&[3], 1, 1.0);
    assert!(matches!(
        cpu::batch_norm_train(&x1, &g3, &g3, 1e-5),
        Err(Error::Shape { .. })
    ));
    // One value per channel in training mode is refused (as PyTorch does).
    let single = test_tensor(&[1, 3], 1, 1.0);
    assert!(matches!(
        cpu::batch_norm_train(&single, &g3, &g3, 1e-5),
        Err(Error::Shape { .. })
    ));
    let v = tensor(&[3], vec![1.0, -1.0, 1.0]).unwrap();
    assert!(matches!(
        cpu::batch_norm_eval(&x, &g3, &g3, &g3, &v, 1e-5),
        Err(Error::Param {
            op: "batch_norm_eval",
            ..
        })
    ));
    assert!(matches!(
        cpu::batch_norm_eval(&x, &g3, &g3, &g2, &g3, 1e-5),
        Err(Error::Shape {
            op: "batch_norm_eval",
            ..
        })
    ));
    let gy = test_tensor(&[2, 3, 2, 1], 1, 1.0);
    let ones = tensor(&[3], vec![1.0; 3]).unwrap();
    assert!(matches!(
        cpu::batch_norm_grad(&x, &g3, &g3, &ones, 1e-5, &gy),
        Err(Error::Shape {
            op: "batch_norm_grad",
            ..
        })
    ));
}

// ---------------------------------------------------------------------------------------------
// thread-count independence (tensors large enough to take the parallel paths)

fn run_all(seed: u64) -> Vec<Vec<u32>> {
    let shape = [8, 16, 24, 24]; // 73 728 elements
    let x = test_tensor(&shape, seed, 1.0);
    let y = test_tensor(&shape, seed + 1, 1.0);
    let c16 = test_tensor(&[16], seed + 2, 1.0);
    let c24 = test_tensor(&[24], seed + 3, 1.0);
    let mut out = vec![];
    let scalar = |v: f32| vec![v.to_bits()];
    out.push(bits(&cpu::map(&x, Act::Gelu).unwrap()));
    out.push(bits(&cpu::map_grad(&x, &y, Act::MySigmoid).unwrap()));
    out.push(bits(&cpu::axpy(0.3, &x, &y).unwrap()));
    out.push(bits(&cpu::add_along(&x, &c16, 1).unwrap()));
    out.push(scalar(cpu::sum_all(&x).unwrap()));
    out.push(scalar(cpu::dot(&x, &y).unwrap()));
    for axis in 0..4 {
        out.push(bits(&cpu::sum_except(&x, axis).unwrap()));
    }
    let p = Pool2dParams::new(3, 2);
    let (mp, idx) = cpu::max_pool2d(&x, p).unwrap();
    out.push(bits(&mp));
    out.push(idx.iter().copied().collect());
    out.push(bits(&cpu::max_unpool2d(&mp, &idx, (24, 24)).unwrap()));
    let ap = cpu::avg_pool2d(&x, p).unwrap();
    out.push(bits(&ap));
    out.push(bits(&cpu::avg_pool2d_adjoint(&ap, (24, 24), p).unwrap()));
    out.push(bits(&cpu::softmax(&x).unwrap()));
    let ls = cpu::log_softmax(&x).unwrap();
    out.push(bits(&ls));
    out.push(bits(&cpu::log_softmax_grad(&ls, &y).unwrap()));
    let logits = x
        .clone()
        .into_shape_with_order(ndarray::IxDyn(&[3072, 24]))
        .unwrap();
    let labels: Vec<usize> = (0..3072).map(|i| (i * 7) % 24).collect();
    let (l, g) = cpu::cross_entropy(&logits, &labels).unwrap();
    out.push(scalar(l));
    out.push(bits(&g));
    let (lny, m, rs) = cpu::layer_norm(&x, &c24, &c24, 1e-5).unwrap();
    out.push(bits(&lny));
    let (a, b, c) = cpu::layer_norm_grad(&x, &c24, &m, &rs, &y).unwrap();
    out.extend([bits(&a), bits(&b), bits(&c)]);
    let (bny, bm, bv) = cpu::batch_norm_train(&x, &c16, &c16, 1e-5).unwrap();
    out.extend([bits(&bny), bits(&bm), bits(&bv)]);
    out.push(bits(
        &cpu::batch_norm_eval(&x, &c16, &c16, &bm, &bv, 1e-5).unwrap(),
    ));
    let (a, b, c) = cpu::batch_norm_grad(&x, &c16, &bm, &bv, 1e-5, &y).unwrap();
    out.extend([bits(&a), bits(&b), bits(&c)]);
    out
}

#[test]
fn results_are_bitwise_independent_of_thread_count() {
    let one = with_threads(1, || run_all(5));
    let two = with_threads(2, || run_all(5));
    let three = with_threads(3, || run_all(5));
    assert_eq!(one.len(), two.len());
    for (i, ((a, b), c)) in one.iter().zip(&two).zip(&three).enumerate() {
        assert!(
            a == b && a == c,
            "result {i} differs between 1, 2 and 3 threads"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn softmax_rows_sum_to_one_and_log_softmax_nonpositive(
        rows in 1usize..5, k in 1usize..9, seed in 0u64..1000, scale in 0.1f32..30.0
    ) {
        let x = test_tensor(&[rows, k], seed, scale);
        let s = cpu::softmax(&x).unwrap();
        let ls = cpu::log_softmax(&x).unwrap();
        for r in 0..rows {
            let sum: f32 = (0..k).map(|j| s[[r, j]]).sum();
            prop_assert!((sum - 1.0).abs() < 1e-5, "row {} sums to {}", r, sum);
            for j in 0..k {
                prop_assert!(ls[[r, j]] <= 0.0);
                prop_assert!(s[[r, j]] >= 0.0);
                prop_assert!((ls[[r, j]].exp() - s[[r, j]]).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn pooling_adjoint_identities(
        kh in 1usize..4, kw in 1usize..4, sh in 1usize..4, sw in 1usize..4,
        h in 3usize..9, w in 3usize..9, seed in 0u64..1000
    ) {
        // <pool(x), g> = <x, poolᵀ(g)> for max pool (with its argmax) and avg pool, overlapping or not.
        let p = Pool2dParams { kernel: (kh, kw), stride: (sh, sw) };
        let x = test_tensor(&[2, 2, h, w], seed, 1.0);
        let (y, idx) = cpu::max_pool2d(&x, p).unwrap();
        let g = test_tensor(y.shape(), seed + 1, 1.0);
        let u = cpu::max_unpool2d(&g, &idx, (h, w)).unwrap();
        let (lhs, rhs) = (ip(&y, &g), ip(&x, &u));
        prop_assert!((lhs - rhs).abs() < 1e-4 * (1.0 + lhs.abs()), "max: {} vs {}", lhs, rhs);
        let ya = cpu::avg_pool2d(&x, p).unwrap();
        let ua = cpu::avg_pool2d_adjoint(&g, (h, w), p).unwrap();
        let (lhs, rhs) = (ip(&ya, &g), ip(&x, &ua));
        prop_assert!((lhs - rhs).abs() < 1e-4 * (1.0 + lhs.abs()), "avg: {} vs {}", lhs, rhs);
        // Every max-pool output equals the input at its argmax.
        let xs = x.as_slice().unwrap();
        for (o, (&v, &i)) in y.iter().zip(idx.iter()).enumerate() {
            let plane = o / (y.shape()[2] * y.shape()[3]);
            prop_assert_eq!(v, xs[plane * h * w + i as usize]);
        }
    }

    #[test]
    fn layer_norm_rows_have_zero_mean_unit_variance(
        rows in 1usize..4, d in 2usize..12, seed in 0u64..1000, scale in 0.5f32..20.0
    ) {
        let x = test_tensor(&[rows, d], seed, scale);
        let one = Tensor::from_elem(ndarray::IxDyn(&[d]), 1.0);
        let zero = Tensor::zeros(ndarray::IxDyn(&[d]));
        let (y, _, _) = cpu::layer_norm(&x, &one, &zero, 0.0).unwrap();
        for r in 0..rows {
            let m: f64 = (0..d).map(|j| y[[r, j]] as f64).sum::<f64>() / d as f64;
            let v: f64 = (0..d).map(|j| (y[[r, j]] as f64 - m).powi(2)).sum::<f64>() / d as f64;
            prop_assert!(m.abs() < 1e-5, "mean {}", m);
            prop_assert!((v - 1.0).abs() < 1e-4, "var {}", v);
        }
    }
}

/// The 2×2 stride-2 fast path on planes wide enough for its 8-output vector blocks (and their
/// tails) follows the documented rule, with ties, NaNs and −∞ in every lane.
#[test]
fn max_pool_2x2_wide_planes_follow_the_documented_rule() {
    for (seed, &(h, w)) in [
        (4usize, 16usize),
        (6, 38),
        (24, 24),
        (8, 50),
        (3, 33),
        (8, 8),
        (4, 10),
        (2, 30),
    ]
    .iter()
    .enumerate()
    {
        let mut x = test_tensor(&[2, 3, h, w], 40 + seed as u64, 1.0);
        // Coarse values (many ties), then NaNs and −∞ scattered over the lanes.
        x.mapv_inplace(|v| (v * 3.0).round());
        for (i, v) in x.iter_mut().enumerate() {
            if i % 29 == 3 {
                *v = f32::NAN;
            } else if i % 17 == 5 {
                *v = f32::NEG_INFINITY;
            }
        }
        let p = Pool2dParams::new(2, 2);
        let (y, idx) = cpu::max_pool2d(&x, p).unwrap();
        // The documented rule, written out: the first maximum in row-major window order; a NaN
        // replaces the running maximum (so the last NaN of a window wins).
        let (mut ry, mut ridx) = (vec![], vec![]);
        for b in 0..2 {
            for ch in 0..3 {
                for i in 0..h / 2 {
                    for j in 0..w / 2 {
                        let (mut best, mut arg) = (f32::NEG_INFINITY, (2 * i) * w + 2 * j);
                        for (dh, dw) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                            let v = x[[b, ch, 2 * i + dh, 2 * j + dw]];
                            if v > best || v.is_nan() {
                                best = v;
                                arg = (2 * i + dh) * w + 2 * j + dw;
                            }
                        }
                        ry.push(best.to_bits());
                        ridx.push(arg as u32);
                    }
                }
            }
        }
        assert_eq!(bits(&y), ry, "{h}x{w} values");
        assert_eq!(
            idx.iter().copied().collect::<Vec<_>>(),
            ridx,
            "{h}x{w} indices"
        );
    }
}
