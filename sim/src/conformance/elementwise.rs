//! Conformance of the element maps (`Act`) and their gradients, the arithmetic ops and the bias
//! add along an axis: values against the scalar definitions and ndarray, gradient checks through
//! the backend, hand values, empty tensors and the errors of bad operands.

use super::refs::{
    Must, assert_close, assert_grad_ok, assert_param_err, assert_shape_err, bits, down, ip, up,
    zeros,
};
use crate::gradcheck::{check_gradient, test_tensor};
use crate::{Act, Backend, Tensor, tensor};

/// Every element map of the op set.
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

/// Relative tolerance of a backend's map against the scalar definition: a few ulps for the
/// piecewise-linear maps (an implementation may round `x/2` and `(1 + (x − 1))/2` differently),
/// more for the ones built on exp and erf.
fn act_tol(act: Act) -> f32 {
    match act {
        Act::MySigmoid | Act::Gelu => 1e-5,
        _ => 1e-6,
    }
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

pub fn map_values_and_gradients<B: Backend>(be: &B) {
    let x = away_from_kinks(&[3, 4, 5], 1);
    let r = test_tensor(&[3, 4, 5], 2, 1.0);
    let (dx, dr) = (up(be, &x), up(be, &r));
    for act in acts() {
        let tol = act_tol(act);
        let y = down(be, &be.map(&dx, act).must());
        assert_close(&y, &x.mapv(|v| act.f(v)), tol, &format!("map {act:?}"));
        let g = down(be, &be.map_grad(&dx, &dr, act).must());
        let want: Tensor = ndarray::Zip::from(&x)
            .and(&r)
            .map_collect(|&x, &r| r * act.df(x));
        assert_close(&g, &want, tol, &format!("map_grad {act:?}"));
        let res = check_gradient(
            |t| ip(&r, &down(be, &be.map(&up(be, t), act).must())),
            &x,
            &g,
            1e-3,
            200,
        );
        assert_grad_ok(&format!("map {act:?}"), res, 5e-3);
    }
    // A large tensor (many workgroups, vector tails).
    let n = 3 * 70_001;
    let big = tensor(
        &[3, 70_001],
        (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect(),
    )
    .unwrap();
    let db = up(be, &big);
    for act in acts() {
        let y = down(be, &be.map(&db, act).must());
        assert_close(
            &y,
            &big.mapv(|v| act.f(v)),
            act_tol(act),
            &format!("large map {act:?}"),
        );
    }
}

pub fn map_hand_values<B: Backend>(be: &B) {
    let x = up(be, &tensor(&[5], vec![-1.0, 0.25, 0.5, 1.5, 3.0]).unwrap());
    let hs = down(be, &be.map(&x, Act::HardSigmoid).must());
    assert_eq!(hs.as_slice().unwrap(), &[0.0, 0.25, 0.5, 1.0, 1.0]);
    let mh = down(be, &be.map(&x, Act::MyHardSig).must());
    assert_eq!(mh.as_slice().unwrap(), &[0.0, 0.125, 0.25, 0.75, 1.0]);
    let relu = down(be, &be.map(&x, Act::Relu).must());
    assert_eq!(relu.as_slice().unwrap(), &[0.0, 0.25, 0.5, 1.5, 3.0]);
    // Derivatives at the kinks: zero (as PyTorch's hardtanh/clamp/relu).
    let k = up(be, &tensor(&[3], vec![0.0, 1.0, 0.5]).unwrap());
    let ones = up(be, &tensor(&[3], vec![1.0; 3]).unwrap());
    let d = down(be, &be.map_grad(&k, &ones, Act::HardSigmoid).must());
    assert_eq!(d.as_slice().unwrap(), &[0.0, 0.0, 1.0]);
    let k2 = up(be, &tensor(&[4], vec![0.0, 2.0, 1.0, -0.5]).unwrap());
    let ones4 = up(be, &tensor(&[4], vec![1.0; 4]).unwrap());
    let d = down(be, &be.map_grad(&k2, &ones4, Act::MyHardSig).must());
    assert_eq!(d.as_slice().unwrap(), &[0.0, 0.0, 0.5, 0.0]);
    let d = down(be, &be.map_grad(&k2, &ones4, Act::Relu).must());
    assert_eq!(d.as_slice().unwrap(), &[0.0, 1.0, 1.0, 0.0]);
    // GELU(-1) = -Φ(-1) = -0.15865525; my_sigmoid(0.5) = 0.5.
    let g = down(
        be,
        &be.map(&up(be, &tensor(&[1], vec![-1.0]).unwrap()), Act::Gelu)
            .must(),
    );
    assert!(
        (g[[0]] + 0.158_655_25).abs() < 1e-6,
        "gelu(-1) = {}",
        g[[0]]
    );
    let s = down(
        be,
        &be.map(&up(be, &tensor(&[1], vec![0.5]).unwrap()), Act::MySigmoid)
            .must(),
    );
    assert!((s[[0]] - 0.5).abs() < 1e-7, "my_sigmoid(0.5) = {}", s[[0]]);
    // Clamp to [−0.3, 0.7].
    let c = down(be, &be.map(&x, Act::Clamp { lo: -0.3, hi: 0.7 }).must());
    assert_eq!(c.as_slice().unwrap(), &[-0.3, 0.25, 0.5, 0.7, 0.7]);
}

/// NaN and infinities map as the scalar definitions (`Act::f`, `Act::df`) say: the clamp-based
/// maps pass NaN through (so a diverged state stays visible), relu maps it to 0.
pub fn map_non_finite_inputs_follow_the_scalar_definition<B: Backend>(be: &B) {
    let xs = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, 0.5];
    let x = up(be, &tensor(&[xs.len()], xs.to_vec()).unwrap());
    let ones = up(be, &tensor(&[xs.len()], vec![1.0; xs.len()]).unwrap());
    let acts = [
        Act::Identity,
        Act::HardSigmoid,
        Act::MyHardSig,
        Act::MySigmoid,
        Act::Relu,
        Act::Gelu,
        Act::Clamp { lo: -0.3, hi: 0.7 },
    ];
    for act in acts {
        let y = down(be, &be.map(&x, act).must());
        let g = down(be, &be.map_grad(&x, &ones, act).must());
        for (i, &v) in xs.iter().enumerate() {
            for (what, got, want) in [("map", y[[i]], act.f(v)), ("map_grad", g[[i]], act.df(v))] {
                // NaN where the definition gives NaN, the same infinity, else a few ulps.
                let ok = if want.is_nan() || want.is_infinite() {
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan())
                } else {
                    (got - want).abs() <= 1e-6 * (1.0 + want.abs())
                };
                assert!(
                    ok,
                    "{act:?} {what}({v}): got {got}, the scalar definition gives {want}"
                );
            }
        }
    }
}

pub fn map_errors<B: Backend>(be: &B) {
    let x = up(be, &test_tensor(&[2, 3], 1, 1.0));
    let bad = Act::Clamp { lo: 1.0, hi: 0.0 };
    assert_param_err(be.map(&x, bad), "map", "clamp with lo > hi");
    let nan = Act::Clamp {
        lo: f32::NAN,
        hi: 1.0,
    };
    assert_param_err(be.map(&x, nan), "map", "clamp with a NaN bound");
    let gy = up(be, &test_tensor(&[3, 2], 2, 1.0));
    assert_shape_err(
        be.map_grad(&x, &gy, Act::Relu),
        "map_grad",
        "[2, 3] vs [3, 2]",
    );
    let gy_ok = up(be, &test_tensor(&[2, 3], 2, 1.0));
    assert_param_err(
        be.map_grad(&x, &gy_ok, bad),
        "map_grad",
        "clamp with lo > hi",
    );
}

/// `add_map` is `map(add)`: the same f32 sum then the same map, for every map and on non-finite
/// sums (NaN, ±∞ and an overflow to ∞), bit for bit on this backend.
pub fn add_map_equals_map_of_add<B: Backend>(be: &B) {
    let mut a = test_tensor(&[3, 4, 5], 3, 1.5);
    let b = test_tensor(&[3, 4, 5], 4, 1.5);
    for (i, v) in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX]
        .into_iter()
        .enumerate()
    {
        a[[0, 0, i]] = v;
    }
    a[[0, 1, 0]] = f32::MAX;
    let (da, db) = (up(be, &a), up(be, &b));
    let db_big = up(be, &b.mapv(|v| v.abs() * f32::MAX));
    for act in acts() {
        for (what, rhs) in [("sum", &db), ("overflowing sum", &db_big)] {
            let got = down(be, &be.add_map(&da, rhs, act).must());
            let want = down(be, &be.map(&be.add(&da, rhs).must(), act).must());
            assert_eq!(bits(&got), bits(&want), "add_map {act:?}, {what}");
        }
    }
}

/// The errors of `add_map` are those of the `add` and `map` it stands for.
pub fn add_map_errors<B: Backend>(be: &B) {
    let x = up(be, &test_tensor(&[2, 3], 1, 1.0));
    let y = up(be, &test_tensor(&[3, 2], 2, 1.0));
    assert_shape_err(be.add_map(&x, &y, Act::Relu), "add", "[2, 3] + [3, 2]");
    let bad = Act::Clamp { lo: 1.0, hi: 0.0 };
    assert_param_err(be.add_map(&x, &x, bad), "map", "clamp with lo > hi");
}

pub fn arithmetic_parity_with_ndarray<B: Backend>(be: &B) {
    for shape in [vec![4, 3, 2], vec![2, 50_001]] {
        let a = test_tensor(&shape, 1, 1.0);
        let b = test_tensor(&shape, 2, 1.0);
        let (da, db) = (up(be, &a), up(be, &b));
        // Exactly rounded ops are exact on every backend.
        assert_eq!(
            bits(&down(be, &be.add(&da, &db).must())),
            bits(&(&a + &b)),
            "add"
        );
        assert_eq!(
            bits(&down(be, &be.sub(&da, &db).must())),
            bits(&(&a - &b)),
            "sub"
        );
        assert_eq!(
            bits(&down(be, &be.mul(&da, &db).must())),
            bits(&(&a * &b)),
            "mul"
        );
        assert_eq!(
            bits(&down(be, &be.scale(&da, -2.5).must())),
            bits(&a.mapv(|v| -2.5 * v)),
            "scale"
        );
        // alpha·x + y: rounded once (fused) or twice, nothing else.
        let got = down(be, &be.axpy(0.75, &da, &db).must());
        for (i, ((&g, &x), &y)) in got.iter().zip(a.iter()).zip(b.iter()).enumerate() {
            let exact = 0.75 * x as f64 + y as f64;
            let bound = f32::EPSILON as f64 * (0.75 * (x as f64).abs() + (y as f64).abs());
            assert!(
                (g as f64 - exact).abs() <= bound,
                "axpy element {i}: {g} vs {exact}"
            );
        }
    }
    // Hand values.
    let p = up(be, &tensor(&[3], vec![1.0, 2.0, 3.0]).unwrap());
    let q = up(be, &tensor(&[3], vec![0.5, -1.0, 4.0]).unwrap());
    let h = |t: crate::Result<B::Tensor>| down(be, &t.must()).as_slice().unwrap().to_vec();
    assert_eq!(h(be.add(&p, &q)), &[1.5, 1.0, 7.0]);
    assert_eq!(h(be.sub(&p, &q)), &[0.5, 3.0, -1.0]);
    assert_eq!(h(be.mul(&p, &q)), &[0.5, -2.0, 12.0]);
    assert_eq!(h(be.scale(&p, 0.5)), &[0.5, 1.0, 1.5]);
    assert_eq!(h(be.axpy(2.0, &p, &q)), &[2.5, 3.0, 10.0]);
    // NaN and infinities propagate as IEEE arithmetic says.
    let s = up(
        be,
        &tensor(&[3], vec![f32::NAN, f32::INFINITY, 1.0]).unwrap(),
    );
    let o = up(
        be,
        &tensor(&[3], vec![1.0, f32::NEG_INFINITY, 0.0]).unwrap(),
    );
    let r = h(be.add(&s, &o));
    assert!(r[0].is_nan() && r[1].is_nan() && r[2] == 1.0, "{r:?}");
    // Empty operands.
    let e = up(be, &zeros(&[0, 4]));
    assert_eq!(be.shape(&be.add(&e, &e).must()), vec![0, 4]);
}

pub fn arithmetic_shape_errors<B: Backend>(be: &B) {
    let a = up(be, &test_tensor(&[2, 3], 1, 1.0));
    let b = up(be, &test_tensor(&[3, 2], 2, 1.0));
    assert_shape_err(be.add(&a, &b), "add", "[2, 3] + [3, 2]");
    assert_shape_err(be.sub(&a, &b), "sub", "[2, 3] − [3, 2]");
    assert_shape_err(be.mul(&a, &b), "mul", "[2, 3] ⊙ [3, 2]");
    assert_shape_err(be.axpy(1.0, &a, &b), "axpy", "[2, 3], [3, 2]");
    assert_shape_err(be.dot(&a, &b), "dot", "[2, 3] · [3, 2]");
    let msg = be.add(&a, &b).unwrap_err().to_string();
    assert!(msg.contains("[2, 3]") && msg.contains("[3, 2]"), "{msg}");
    // Same element count, different rank.
    let flat = up(be, &test_tensor(&[6], 3, 1.0));
    assert_shape_err(be.add(&a, &flat), "add", "[2, 3] + [6]");
}

pub fn mul_gradcheck<B: Backend>(be: &B) {
    let a = test_tensor(&[3, 5], 1, 1.0);
    let b = test_tensor(&[3, 5], 2, 1.0);
    let r = test_tensor(&[3, 5], 3, 1.0);
    let db = up(be, &b);
    // d<r, a⊙b>/da = r ⊙ b.
    let g = down(be, &be.mul(&up(be, &r), &db).must());
    let res = check_gradient(
        |t| ip(&r, &down(be, &be.mul(&up(be, t), &db).must())),
        &a,
        &g,
        1e-2,
        100,
    );
    assert_grad_ok("mul", res, 1e-3);
}

pub fn add_along_parity_and_bias_gradient<B: Backend>(be: &B) {
    let x = test_tensor(&[2, 3, 4, 5], 1, 1.0);
    let dx = up(be, &x);
    for axis in 0..4 {
        let len = x.shape()[axis];
        let b = test_tensor(&[len], 10 + axis as u64, 1.0);
        let y = down(be, &be.add_along(&dx, &up(be, &b), axis).must());
        for (ix, &v) in x.indexed_iter() {
            assert_eq!(y[&ix], v + b[ix[axis]], "axis {axis} at {ix:?}");
        }
        // The adjoint of add_along w.r.t. b is sum_except.
        let r = test_tensor(x.shape(), 20 + axis as u64, 1.0);
        let gb = down(be, &be.sum_except(&up(be, &r), axis).must());
        let res = check_gradient(
            |t| ip(&r, &down(be, &be.add_along(&dx, &up(be, t), axis).must())),
            &b,
            &gb,
            1e-2,
            100,
        );
        assert_grad_ok(&format!("add_along axis {axis}"), res, 1e-3);
    }
    // The conv bias (axis 1) and linear bias (last axis) on larger tensors.
    let big = test_tensor(&[4, 16, 33, 31], 3, 1.0);
    let c = test_tensor(&[16], 4, 1.0);
    let y = down(be, &be.add_along(&up(be, &big), &up(be, &c), 1).must());
    for (ix, &v) in big.indexed_iter() {
        assert_eq!(y[&ix], v + c[ix[1]], "large, axis 1 at {ix:?}");
    }
}

pub fn add_along_empty_tensors<B: Backend>(be: &B) {
    let e = up(be, &zeros(&[0, 3]));
    let b = up(be, &tensor(&[3], vec![1.0, 2.0, 3.0]).unwrap());
    assert_eq!(be.shape(&be.add_along(&e, &b, 1).must()), vec![0, 3]);
    let e2 = up(be, &zeros(&[2, 0]));
    let b0 = up(be, &zeros(&[0]));
    assert_eq!(be.shape(&be.add_along(&e2, &b0, 1).must()), vec![2, 0]);
    assert_eq!(be.shape(&be.sum_except(&e2, 1).must()), vec![0]);
}

pub fn add_along_errors<B: Backend>(be: &B) {
    let x = up(be, &test_tensor(&[2, 3], 1, 1.0));
    let b = up(be, &test_tensor(&[3], 2, 1.0));
    assert_param_err(be.add_along(&x, &b, 2), "add_along", "axis out of range");
    assert_shape_err(
        be.add_along(&x, &b, 0),
        "add_along",
        "length 3 along axis 0 of length 2",
    );
    let b2 = up(be, &test_tensor(&[1, 3], 2, 1.0));
    assert_shape_err(be.add_along(&x, &b2, 1), "add_along", "a [1, 3] bias");
}
