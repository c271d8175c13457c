//! Conformance of pooling: max pooling (values and switches against a naive loop, the
//! documented tie/NaN rule, gradient checks through unpooling), max-unpooling, `pool_gather`,
//! average pooling and its adjoint, adjoint identities on random shapes, and the errors.

use super::refs::{
    Cases, Must, assert_close, assert_grad_ok, assert_param_err, assert_refused, assert_shape_err,
    bits, distinct_tensor, down, ip, naive_avg_pool, naive_max_pool, switches, up,
};
use crate::gradcheck::{check_gradient, test_tensor};
use crate::{Backend, Pool2dParams, Tensor, tensor};

/// (kernel, stride, input shape).
type PoolCase = ((usize, usize), (usize, usize), [usize; 4]);

const POOLS: [PoolCase; 6] = [
    ((2, 2), (2, 2), [2, 3, 6, 8]),    // non-overlapping, non-square input
    ((3, 3), (2, 2), [1, 2, 7, 9]),    // overlapping windows
    ((2, 3), (1, 2), [2, 2, 5, 7]),    // non-square window, stride != kernel
    ((3, 2), (3, 1), [1, 3, 10, 6]),   // rows dropped by the stride
    ((1, 1), (1, 1), [1, 1, 3, 3]),    // identity pooling
    ((2, 2), (2, 2), [4, 16, 24, 24]), // the EP-CNN's pooling, many planes
];

fn params(k: (usize, usize), s: (usize, usize)) -> Pool2dParams {
    Pool2dParams {
        kernel: k,
        stride: s,
    }
}

pub fn max_pool_parity_with_naive_reference<B: Backend>(be: &B) {
    for (seed, &(k, s, shape)) in POOLS.iter().enumerate() {
        let p = params(k, s);
        let x = test_tensor(&shape, seed as u64, 1.0);
        let (y, idx) = be.max_pool2d(&up(be, &x), p).must();
        let (ry, ridx) = naive_max_pool(&x, p);
        assert_eq!(bits(&down(be, &y)), bits(&ry), "{p:?} values");
        assert_eq!(switches(be, &idx, &shape), ridx, "{p:?} indices");
    }
}

pub fn max_pool_hand_example_ties_and_nan<B: Backend>(be: &B) {
    // 1×1×4×4, 2×2 windows stride 2.
    #[rustfmt::skip]
    let x = tensor(&[1, 1, 4, 4], vec![
        1.0, 5.0, 2.0, 2.0,
        3.0, 4.0, 2.0, 2.0,
        -1.0, -2.0, 7.0, 0.0,
        -3.0, -1.0, 0.0, 7.0,
    ]).unwrap();
    let p = Pool2dParams::new(2, 2);
    let (y, idx) = be.max_pool2d(&up(be, &x), p).must();
    assert_eq!(down(be, &y).as_slice().unwrap(), &[5.0, 2.0, -1.0, 7.0]);
    // Ties: the first in row-major window order (2 at (0,2); 7 at (2,2)).
    assert_eq!(switches(be, &idx, x.shape()), &[1, 2, 8, 10]);
    // NaN propagates to the output, and its position is the switch.
    let mut xn = x.clone();
    xn[[0, 0, 1, 0]] = f32::NAN;
    let (yn, idxn) = be.max_pool2d(&up(be, &xn), p).must();
    let yn = down(be, &yn);
    assert!(yn[[0, 0, 0, 0]].is_nan());
    assert_eq!(switches(be, &idxn, x.shape())[0], 4);
    assert_eq!(yn[[0, 0, 0, 1]], 2.0);
    // All −∞ window: the first position.
    let xi = Tensor::from_elem(ndarray::IxDyn(&[1, 1, 2, 2]), f32::NEG_INFINITY);
    let (yi, ii) = be.max_pool2d(&up(be, &xi), p).must();
    assert_eq!(down(be, &yi)[[0, 0, 0, 0]], f32::NEG_INFINITY);
    assert_eq!(switches(be, &ii, &[1, 1, 2, 2]), &[0]);
}

/// The 2×2 stride-2 pooling on planes of many widths (vector blocks and their tails in a fast
/// path) follows the documented rule, with ties, NaNs and −∞ in every lane.
pub fn max_pool_2x2_wide_planes_follow_the_documented_rule<B: Backend>(be: &B) {
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
        let (y, idx) = be.max_pool2d(&up(be, &x), Pool2dParams::new(2, 2)).must();
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
        let y = down(be, &y);
        let yb = bits(&y);
        for (i, (&g, &r)) in yb.iter().zip(&ry).enumerate() {
            let (gf, rf) = (f32::from_bits(g), f32::from_bits(r));
            assert!(
                g == r || (gf.is_nan() && rf.is_nan()),
                "{h}x{w} value {i}: {gf} vs {rf}"
            );
        }
        assert_eq!(switches(be, &idx, x.shape()), ridx, "{h}x{w} indices");
    }
}

pub fn max_pool_gradcheck_via_unpool<B: Backend>(be: &B) {
    for (seed, &(k, s, shape)) in POOLS.iter().take(5).enumerate() {
        let p = params(k, s);
        let x = distinct_tensor(&shape, seed as u64);
        let (y, idx) = be.max_pool2d(&up(be, &x), p).must();
        let r = test_tensor(&be.shape(&y), 100 + seed as u64, 1.0);
        let g = down(
            be,
            &be.max_unpool2d(&up(be, &r), &idx, (shape[2], shape[3]))
                .must(),
        );
        let res = check_gradient(
            |t| ip(&r, &down(be, &be.max_pool2d(&up(be, t), p).must().0)),
            &x,
            &g,
            1e-2,
            400,
        );
        assert_grad_ok(&format!("max_pool {p:?}"), res, 1e-3);
    }
}

pub fn max_unpool_scatter_adds_on_overlap<B: Backend>(be: &B) {
    // 1×1×3×3 with a 2×2 window, stride 1: the centre wins all four windows.
    let x = tensor(
        &[1, 1, 3, 3],
        vec![0.0, 0.0, 0.0, 0.0, 9.0, 0.0, 0.0, 0.0, 0.0],
    )
    .unwrap();
    let (_, idx) = be.max_pool2d(&up(be, &x), Pool2dParams::new(2, 1)).must();
    assert_eq!(switches(be, &idx, x.shape()), &[4, 4, 4, 4]);
    let g = up(
        be,
        &tensor(&[1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap(),
    );
    let u = down(be, &be.max_unpool2d(&g, &idx, (3, 3)).must());
    assert_eq!(
        u.as_slice().unwrap(),
        &[0.0, 0.0, 0.0, 0.0, 10.0, 0.0, 0.0, 0.0, 0.0]
    );
    // Overlapping 3×3 windows, stride 1, on a larger input: against a host scatter.
    let x = test_tensor(&[2, 3, 9, 8], 5, 1.0);
    let (y, idx) = be.max_pool2d(&up(be, &x), Pool2dParams::new(3, 1)).must();
    let ys = be.shape(&y);
    let r = test_tensor(&ys, 6, 1.0);
    let sw = switches(be, &idx, x.shape());
    let mut want = vec![0.0f64; x.len()];
    let per_plane = ys[2] * ys[3];
    for (o, (&v, &i)) in r.iter().zip(&sw).enumerate() {
        want[(o / per_plane) * 72 + i as usize] += v as f64;
    }
    let want = tensor(x.shape(), want.iter().map(|&v| v as f32).collect()).unwrap();
    let got = down(be, &be.max_unpool2d(&up(be, &r), &idx, (9, 8)).must());
    assert_close(&got, &want, 1e-6, "unpool with overlaps");
}

pub fn avg_pool_parity_hand_value_and_gradcheck<B: Backend>(be: &B) {
    for (seed, &(k, s, shape)) in POOLS.iter().enumerate() {
        let p = params(k, s);
        let x = test_tensor(&shape, seed as u64, 1.0);
        let y = down(be, &be.avg_pool2d(&up(be, &x), p).must());
        assert_close(&y, &naive_avg_pool(&x, p), 1e-6, &format!("avg_pool {p:?}"));
        if seed >= 5 {
            continue; // the large case: parity only
        }
        let r = test_tensor(y.shape(), 50 + seed as u64, 1.0);
        let g = down(
            be,
            &be.avg_pool2d_adjoint(&up(be, &r), (shape[2], shape[3]), p)
                .must(),
        );
        let res = check_gradient(
            |t| ip(&r, &down(be, &be.avg_pool2d(&up(be, t), p).must())),
            &x,
            &g,
            1e-2,
            400,
        );
        assert_grad_ok(&format!("avg_pool {p:?}"), res, 1e-3);
    }
    let x = tensor(&[1, 1, 2, 4], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]).unwrap();
    let y = be.avg_pool2d(&up(be, &x), Pool2dParams::new(2, 2)).must();
    assert_eq!(down(be, &y).as_slice().unwrap(), &[3.5, 5.5]);
    let g = be
        .avg_pool2d_adjoint(&y, (2, 4), Pool2dParams::new(2, 2))
        .must();
    assert_eq!(
        down(be, &g).as_slice().unwrap(),
        &[0.875, 0.875, 1.375, 1.375, 0.875, 0.875, 1.375, 1.375]
    );
}

/// ⟨pool(x), g⟩ = ⟨x, poolᵀ(g)⟩ for max pool (with its switches) and avg pool, overlapping or not,
/// and every max-pool output is the input at its switch, over 48 random shapes.
pub fn pooling_adjoint_identities_on_random_shapes<B: Backend>(be: &B) {
    let mut c = Cases::new("conformance.pool_adjoint");
    for case in 0..48u64 {
        let (kh, kw, sh, sw) = (c.range(1, 4), c.range(1, 4), c.range(1, 4), c.range(1, 4));
        let (h, w) = (c.range(3, 9), c.range(3, 9));
        let p = Pool2dParams {
            kernel: (kh, kw),
            stride: (sh, sw),
        };
        let x = test_tensor(&[2, 2, h, w], 1000 + case, 1.0);
        let dx = up(be, &x);
        let (y, idx) = be.max_pool2d(&dx, p).must();
        let y = down(be, &y);
        let g = test_tensor(y.shape(), 2000 + case, 1.0);
        let dg = up(be, &g);
        let u = down(be, &be.max_unpool2d(&dg, &idx, (h, w)).must());
        let (lhs, rhs) = (ip(&y, &g), ip(&x, &u));
        assert!(
            (lhs - rhs).abs() < 1e-4 * (1.0 + lhs.abs()),
            "max {p:?} on {h}x{w}: {lhs} vs {rhs}"
        );
        let ya = down(be, &be.avg_pool2d(&dx, p).must());
        let ua = down(be, &be.avg_pool2d_adjoint(&dg, (h, w), p).must());
        let (lhs, rhs) = (ip(&ya, &g), ip(&x, &ua));
        assert!(
            (lhs - rhs).abs() < 1e-4 * (1.0 + lhs.abs()),
            "avg {p:?} on {h}x{w}: {lhs} vs {rhs}"
        );
        let xs = x.as_slice().unwrap();
        let sw = switches(be, &idx, x.shape());
        for (o, (&v, &i)) in y.iter().zip(&sw).enumerate() {
            let plane = o / (y.shape()[2] * y.shape()[3]);
            assert_eq!(v, xs[plane * h * w + i as usize], "{p:?} output {o}");
        }
    }
}

pub fn pool_errors<B: Backend>(be: &B) {
    let x3 = up(be, &test_tensor(&[2, 4, 4], 1, 1.0));
    let p22 = Pool2dParams::new(2, 2);
    assert_shape_err(be.max_pool2d(&x3, p22), "max_pool2d", "rank-3 input");
    assert_shape_err(be.avg_pool2d(&x3, p22), "avg_pool2d", "rank-3 input");
    let x = up(be, &test_tensor(&[1, 1, 3, 3], 1, 1.0));
    for p in [
        Pool2dParams::new(4, 1),
        Pool2dParams::new(2, 0),
        Pool2dParams::new(0, 1),
    ] {
        assert_param_err(be.max_pool2d(&x, p), "max_pool2d", &format!("{p:?}"));
        assert_param_err(be.avg_pool2d(&x, p), "avg_pool2d", &format!("{p:?}"));
    }
    let (y, idx) = be.max_pool2d(&x, Pool2dParams::new(2, 1)).must();
    // Index out of range for the stated input size (window (0, 1) has its argmax at index ≥ 1).
    assert_param_err(
        be.max_unpool2d(&y, &idx, (1, 1)),
        "max_unpool2d",
        "input 1x1",
    );
    // Values and indices of different shapes.
    let y2 = up(be, &test_tensor(&[1, 1, 2, 1], 3, 1.0));
    assert_shape_err(
        be.max_unpool2d(&y2, &idx, (3, 3)),
        "max_unpool2d",
        "[1,1,2,1] values",
    );
    // Adjoint with a gradient whose size does not match the stated input.
    let gy = up(be, &test_tensor(&[1, 1, 2, 2], 4, 1.0));
    assert_shape_err(
        be.avg_pool2d_adjoint(&gy, (6, 6), p22),
        "avg_pool2d_adjoint",
        "2x2 gradient for a 6x6 input",
    );
    assert_refused(
        be.avg_pool2d_adjoint(&gy, (4, 4), Pool2dParams::new(0, 2)),
        "avg_pool2d_adjoint",
        "zero window",
    );
}

pub fn gather_is_the_adjoint_of_unpool_and_its_gradient_checks<B: Backend>(be: &B) {
    for (shape, p) in [
        ([2, 3, 8, 8], Pool2dParams::new(2, 2)),
        ([1, 2, 7, 5], Pool2dParams::new(3, 2)),
        ([2, 1, 6, 6], Pool2dParams::new(2, 1)),
    ] {
        let z = test_tensor(&shape, 1, 1.0);
        let dz = up(be, &z);
        let (y, idx) = be.max_pool2d(&dz, p).must();
        let y = down(be, &y);
        let s = test_tensor(y.shape(), 2, 1.0);
        let g = down(be, &be.pool_gather(&dz, &idx).must());
        // At the switches of z itself, gathering z is max pooling.
        assert_eq!(g, y);
        let u = down(
            be,
            &be.max_unpool2d(&up(be, &s), &idx, (shape[2], shape[3]))
                .must(),
        );
        let (lhs, rhs) = (ip(&g, &s), ip(&z, &u));
        assert!(
            (lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
        // d/dz <s, gather(z, idx)> = unpool(s, idx) at fixed switches.
        let f = |t: &Tensor| ip(&s, &down(be, &be.pool_gather(&up(be, t), &idx).must()));
        let r = check_gradient(f, &z, &u, 1e-2, 200);
        assert!(r.ok(1e-3), "{r:?}");
    }
}

pub fn gather_bad_shapes_are_errors<B: Backend>(be: &B) {
    let z = up(be, &test_tensor(&[1, 2, 4, 4], 1, 1.0));
    let (_, idx) = be.max_pool2d(&z, Pool2dParams::new(2, 2)).must();
    let other_channels = up(be, &test_tensor(&[1, 3, 4, 4], 1, 1.0));
    assert_refused(
        be.pool_gather(&other_channels, &idx),
        "pool_gather",
        "3 channels",
    );
    let rank3 = up(be, &test_tensor(&[2, 4, 4], 1, 1.0));
    assert_refused(be.pool_gather(&rank3, &idx), "pool_gather", "rank 3");
    // Indices beyond a smaller plane.
    let small = up(be, &test_tensor(&[1, 2, 1, 1], 1, 1.0));
    assert_refused(be.pool_gather(&small, &idx), "pool_gather", "1x1 planes");
}
