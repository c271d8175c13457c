//! Conformance of the fused conv-synapse reads (`conv2d_pooled`, `conv2d_pooled_input_grad`):
//! equal to the plain ops they fuse on the same backend (a backend that overrides them must
//! keep their meaning), the adjoint identity at fixed switches, and their errors.

use super::refs::{Must, assert_close, down, ip, switches, up};
use crate::gradcheck::test_tensor;
use crate::{Backend, Conv2dParams, Pool2dParams, Pooling};

/// (input [N,C,H,W], O, kernel, conv params, pooling).
type FusedCase = ([usize; 4], usize, usize, Conv2dParams, Pooling);

fn cases() -> Vec<FusedCase> {
    let p2 = Pool2dParams::new(2, 2);
    vec![
        (
            [2, 3, 8, 8],
            5,
            3,
            Conv2dParams::new(1, 1),
            Pooling::Max(p2),
        ),
        (
            [2, 3, 8, 8],
            5,
            3,
            Conv2dParams::new(1, 1),
            Pooling::Avg(p2),
        ),
        // conv output 9x9: its last row and column lie in no window
        (
            [1, 2, 11, 11],
            4,
            3,
            Conv2dParams::new(1, 0),
            Pooling::Max(p2),
        ),
        (
            [1, 2, 11, 11],
            4,
            3,
            Conv2dParams::new(1, 0),
            Pooling::Avg(p2),
        ),
        (
            [1, 2, 13, 13],
            3,
            3,
            Conv2dParams::new(2, 1),
            Pooling::Max(p2),
        ),
        (
            [1, 2, 9, 9],
            3,
            3,
            Conv2dParams::new(1, 1),
            Pooling::Max(Pool2dParams::new(3, 2)),
        ),
        ([2, 3, 6, 6], 4, 3, Conv2dParams::new(1, 1), Pooling::None),
    ]
}

/// The plain ops' composition: pool(conv2d(x, w) + b) with the switches.
fn composed<B: Backend>(
    be: &B,
    x: &B::Tensor,
    w: &B::Tensor,
    b: Option<&B::Tensor>,
    p: Conv2dParams,
    pool: Pooling,
) -> (B::Tensor, Option<B::Index>) {
    let z = be.conv2d(x, w, b, p).must();
    match pool {
        Pooling::None => (z, None),
        Pooling::Max(pp) => {
            let (y, i) = be.max_pool2d(&z, pp).must();
            (y, Some(i))
        }
        Pooling::Avg(pp) => (be.avg_pool2d(&z, pp).must(), None),
    }
}

pub fn conv2d_pooled_equals_conv_then_pool<B: Backend>(be: &B) {
    for (i, (xs, o, k, p, pool)) in cases().into_iter().enumerate() {
        let s = i as u64;
        let x = up(be, &test_tensor(&xs, 100 + s, 1.0));
        let w = up(be, &test_tensor(&[o, xs[1], k, k], 200 + s, 0.5));
        let b = up(be, &test_tensor(&[o], 300 + s, 0.5));
        let (y, idx) = be.conv2d_pooled(&x, &w, Some(&b), p, pool).must();
        let (ry, ridx) = composed(be, &x, &w, Some(&b), p, pool);
        assert_close(
            &down(be, &y),
            &down(be, &ry),
            1e-5,
            &format!("case {i} values"),
        );
        assert_eq!(idx.is_some(), ridx.is_some(), "case {i}: switches");
        if let (Some(a), Some(r)) = (idx, ridx) {
            let zs = be.shape(&be.conv2d(&x, &w, None, p).must());
            assert_eq!(
                switches(be, &a, &zs),
                switches(be, &r, &zs),
                "case {i}: switches"
            );
        }
    }
}

pub fn conv2d_pooled_input_grad_equals_unpool_then_adjoint<B: Backend>(be: &B) {
    for (i, (xs, o, k, p, pool)) in cases().into_iter().enumerate() {
        let s = i as u64;
        let xh = test_tensor(&xs, 100 + s, 1.0);
        let x = up(be, &xh);
        let w = up(be, &test_tensor(&[o, xs[1], k, k], 200 + s, 0.5));
        let (y, idx) = be.conv2d_pooled(&x, &w, None, p, pool).must();
        let vh = test_tensor(&be.shape(&y), 400 + s, 1.0);
        let v = up(be, &vh);
        let conv_hw = p.output_hw("test", (xs[2], xs[3]), (k, k)).must();
        let in_hw = (xs[2], xs[3]);
        let g = be
            .conv2d_pooled_input_grad(&v, idx.as_ref(), &w, conv_hw, in_hw, p, pool)
            .must();
        let u = match (pool, &idx) {
            (Pooling::None, _) => be.reshape(&v, &be.shape(&v)).must(),
            (Pooling::Max(_), Some(ix)) => be.max_unpool2d(&v, ix, conv_hw).must(),
            (Pooling::Avg(pp), _) => be.avg_pool2d_adjoint(&v, conv_hw, pp).must(),
            (Pooling::Max(_), None) => panic!("case {i}: max pooling without switches"),
        };
        let r = be.conv2d_input_grad(&u, &w, in_hw, p).must();
        let (g, r) = (down(be, &g), down(be, &r));
        assert_close(&g, &r, 1e-5, &format!("case {i} transposed read"));
        assert!(g.iter().any(|v| v.abs() > 1e-3), "case {i}: zero adjoint");
        // At fixed switches the read is linear in x: ⟨read(x), v⟩ = ⟨x, readᵀ(v)⟩.
        let (lhs, rhs) = (ip(&down(be, &y), &vh), ip(&xh, &g));
        assert!(
            (lhs - rhs).abs() <= 1e-4 * (1.0 + lhs.abs()),
            "case {i}: adjoint identity {lhs} vs {rhs}"
        );
    }
}

pub fn fused_read_errors<B: Backend>(be: &B) {
    let p = Conv2dParams::new(1, 1);
    let pool = Pooling::Max(Pool2dParams::new(2, 2));
    let x = up(be, &test_tensor(&[1, 3, 8, 8], 1, 1.0));
    let w = up(be, &test_tensor(&[4, 3, 3, 3], 2, 1.0));
    let (_, idx) = be.conv2d_pooled(&x, &w, None, p, pool).must();
    // max pooling without its switches
    let v = up(be, &test_tensor(&[1, 4, 4, 4], 3, 1.0));
    assert!(
        be.conv2d_pooled_input_grad(&v, None, &w, (8, 8), (8, 8), p, pool)
            .is_err(),
        "max pooling without switches"
    );
    // v that is not the pooled output's shape
    let v = up(be, &test_tensor(&[1, 4, 3, 3], 4, 1.0));
    assert!(
        be.conv2d_pooled_input_grad(&v, idx.as_ref(), &w, (8, 8), (8, 8), p, pool)
            .is_err(),
        "pooled gradient of the wrong size"
    );
    // a weight whose channels do not fit the input
    let wbad = up(be, &test_tensor(&[4, 2, 3, 3], 5, 1.0));
    assert!(
        be.conv2d_pooled(&x, &wbad, None, p, pool).is_err(),
        "channel mismatch"
    );
}
