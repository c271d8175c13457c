//! Conformance of the random ops: `randn` and `rand` draw element i as the stream's draw
//! `offset + i` (so every backend draws the same numbers), independently of the shape.

use super::refs::{Must, down};
use crate::{Backend, Stream};

pub fn randn_and_rand_draw_the_stream<B: Backend>(be: &B) {
    let s = Stream::new(7, "conformance.random");
    for (shape, offset) in [
        (vec![5], 0u64),
        (vec![3, 7], 13),
        (vec![2, 3, 50, 41], 1 << 33),
        (vec![0, 4], 5),
    ] {
        let n: usize = shape.iter().product();
        let u = down(be, &be.rand(&shape, &s, offset).must());
        assert_eq!(u.shape(), shape.as_slice());
        for (i, &v) in u.iter().enumerate() {
            let want = s.uniform(offset + i as u64);
            assert_eq!(v, want, "rand {shape:?} offset {offset}: element {i}");
            assert!(v > 0.0 && v < 1.0);
        }
        let z = down(be, &be.randn(&shape, &s, offset).must());
        assert_eq!(z.shape(), shape.as_slice());
        // Box–Muller through log, sqrt and cos: a few ulps of each on any backend.
        for (i, &v) in z.iter().enumerate() {
            let want = s.normal(offset + i as u64);
            assert!(
                (v - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "randn {shape:?} offset {offset}: element {i}: {v} vs {want}"
            );
        }
        // The same draws under another shape of the same size.
        if n > 0 {
            let flat = down(be, &be.rand(&[n], &s, offset).must());
            assert_eq!(flat.as_slice().unwrap(), u.as_slice().unwrap());
        }
    }
    // Different streams and offsets draw different numbers.
    let a = down(be, &be.randn(&[64], &s, 0).must());
    let b = down(be, &be.randn(&[64], &s.child("other"), 0).must());
    let c = down(be, &be.randn(&[64], &s, 64).must());
    assert_ne!(a, b);
    assert_ne!(a, c);
}
