//! `pool_gather`, the adjoint of max-unpooling: adjoint identity, gradient check, bad shapes.

use sim::gradcheck::{check_gradient, test_tensor};
use sim::{Backend, Cpu, Pool2dParams, Tensor};

#[test]
fn gather_is_the_adjoint_of_unpool_and_its_gradient_checks() {
    let be = Cpu;
    for (shape, p) in [
        ([2, 3, 8, 8], Pool2dParams::new(2, 2)),
        ([1, 2, 7, 5], Pool2dParams::new(3, 2)),
        ([2, 1, 6, 6], Pool2dParams::new(2, 1)),
    ] {
        let z = test_tensor(&shape, 1, 1.0);
        let (y, idx) = be.max_pool2d(&z, p).unwrap();
        let s = test_tensor(y.shape(), 2, 1.0);
        let g = be.pool_gather(&z, &idx).unwrap();
        // At the switches of z itself, gathering z is max pooling.
        assert_eq!(g, y);
        let u = be.max_unpool2d(&s, &idx, (shape[2], shape[3])).unwrap();
        let lhs: f64 = g
            .iter()
            .zip(s.iter())
            .map(|(&a, &b)| a as f64 * b as f64)
            .sum();
        let rhs: f64 = z
            .iter()
            .zip(u.iter())
            .map(|(&a, &b)| a as f64 * b as f64)
            .sum();
        assert!(
            (lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
        // d/dz <s, gather(z, idx)> = unpool(s, idx) at fixed switches.
        let f = |t: &Tensor| {
            be.pool_gather(t, &idx)
                .unwrap()
                .iter()
                .zip(s.iter())
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>()
        };
        let r = check_gradient(f, &z, &u, 1e-2, 200);
        assert!(r.ok(1e-3), "{r:?}");
    }
}

#[test]
fn gather_bad_shapes_are_errors() {
    let be = Cpu;
    let z = test_tensor(&[1, 2, 4, 4], 1, 1.0);
    let (_, idx) = be.max_pool2d(&z, Pool2dParams::new(2, 2)).unwrap();
    assert!(
        be.pool_gather(&test_tensor(&[1, 3, 4, 4], 1, 1.0), &idx)
            .is_err()
    );
    assert!(
        be.pool_gather(&test_tensor(&[2, 4, 4], 1, 1.0), &idx)
            .is_err()
    );
    // Indices beyond a smaller plane.
    assert!(
        be.pool_gather(&test_tensor(&[1, 2, 1, 1], 1, 1.0), &idx)
            .is_err()
    );
}
