//! Finite-difference gradient checks, used by the tests of every op, of the tape and of the models.
//!
//! `check_gradient(f, x, analytic)` compares an analytic gradient of a scalar function with central
//! differences computed in f64 around the f32 input. Public so that other crates' tests use the same
//! procedure.

use crate::Tensor;

/// Outcome of a gradient check.
#[derive(Debug, Clone)]
pub struct GradCheck {
    /// Largest |analytic − numeric| over the probed coordinates.
    pub max_abs_err: f64,
    /// Largest |analytic − numeric| / max(|analytic|, |numeric|, floor).
    pub max_rel_err: f64,
    /// Number of coordinates probed.
    pub probed: usize,
    /// Coordinate of the worst relative error.
    pub worst: usize,
}

impl GradCheck {
    /// True when every probed coordinate agrees within `tol` relative error (with absolute floor
    /// `tol` for near-zero gradients).
    pub fn ok(&self, tol: f64) -> bool {
        self.max_rel_err <= tol
    }
}

/// Compare `analytic` (same shape as `x`) with central differences of `f` at `x`, step `h`.
/// Probes at most `max_probes` coordinates spread evenly over the tensor (all if it is small).
/// `f` is evaluated in f32 by the op under test; the difference quotient is formed in f64.
pub fn check_gradient(
    mut f: impl FnMut(&Tensor) -> f64,
    x: &Tensor,
    analytic: &Tensor,
    h: f64,
    max_probes: usize,
) -> GradCheck {
    assert_eq!(
        x.shape(),
        analytic.shape(),
        "check_gradient: analytic gradient shape differs from x"
    );
    let n = x.len();
    let step = if n <= max_probes {
        1
    } else {
        n.div_ceil(max_probes)
    };
    let mut xp = x.clone();
    let flat_an: Vec<f32> = analytic.iter().copied().collect();
    let mut out = GradCheck {
        max_abs_err: 0.0,
        max_rel_err: 0.0,
        probed: 0,
        worst: 0,
    };
    let mut i = 0;
    while i < n {
        let orig = *xp.as_slice_mut().expect("standard layout").get(i).unwrap();
        xp.as_slice_mut().unwrap()[i] = (orig as f64 + h) as f32;
        let fp = f(&xp);
        xp.as_slice_mut().unwrap()[i] = (orig as f64 - h) as f32;
        let fm = f(&xp);
        xp.as_slice_mut().unwrap()[i] = orig;
        // Use the actually represented steps so that f32 rounding of x ± h does not bias the quotient.
        let hp = ((orig as f64 + h) as f32) as f64 - orig as f64;
        let hm = orig as f64 - ((orig as f64 - h) as f32) as f64;
        let num = (fp - fm) / (hp + hm);
        let an = flat_an[i] as f64;
        let abs = (an - num).abs();
        let rel = abs / an.abs().max(num.abs()).max(1e-2);
        if abs > out.max_abs_err {
            out.max_abs_err = abs;
        }
        if rel > out.max_rel_err {
            out.max_rel_err = rel;
            out.worst = i;
        }
        out.probed += 1;
        i += step;
    }
    out
}

/// A deterministic pseudo-random tensor for tests (normal draws scaled by `scale`).
pub fn test_tensor(shape: &[usize], seed: u64, scale: f32) -> Tensor {
    let s = crate::rng::Stream::new(seed, "gradcheck.test_tensor");
    let n: usize = shape.iter().product();
    let mut v = vec![0.0f32; n];
    s.fill_normal(0, &mut v);
    v.iter_mut().for_each(|e| *e *= scale);
    crate::tensor(shape, v).expect("sizes agree")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_a_wrong_gradient() {
        let x = test_tensor(&[3, 4], 1, 1.0);
        // f = Σ x², gradient 2x.
        let f = |t: &Tensor| t.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>();
        let good = x.mapv(|v| 2.0 * v);
        let bad = x.mapv(|v| 2.1 * v);
        assert!(check_gradient(f, &x, &good, 1e-2, 100).ok(1e-3));
        assert!(!check_gradient(f, &x, &bad, 1e-2, 100).ok(1e-3));
    }
}
