//! The reference's plasma fractal (diamond-square, after FLHerne/mapgen), the noise map under the
//! `fog` corruption.

use sim::rng::Stream;

/// The reference's `plasma_fractal` (diamond-square, after FLHerne/mapgen): a `size × size`
/// map (size a power of two), wibble starting at 100 and divided by `decay` per level,
/// `wibbledmean(a) = a/4 + wibble·U(−wibble, wibble)`, normalised to [0, 1]. The k-th call of
/// `wibbledmean` uses uniforms `k·size² + element` of `u`.
pub fn plasma_fractal(size: usize, decay: f64, u: &Stream) -> Vec<f64> {
    let n2 = (size * size) as u64;
    plasma_fractal_with(size, decay, |call, e| {
        u.uniform(call * n2 + e as u64) as f64
    })
}

/// [`plasma_fractal`] with injected uniforms: `u(call, element)` in [0, 1) for element `element`
/// (row-major) of the `call`-th `wibbledmean` array; the noise is `−wibble + 2·wibble·u` as numpy's
/// `uniform(−wibble, wibble)` computes it.
pub fn plasma_fractal_with(
    size: usize,
    decay: f64,
    mut u: impl FnMut(u64, usize) -> f64,
) -> Vec<f64> {
    assert!(size.is_power_of_two());
    let n = size;
    let mut m = vec![0.0f64; n * n];
    let mut step = n;
    let mut wibble = 100.0f64;
    let mut call = 0u64;
    let mut wmean = |a: &mut [f64], wibble: f64| {
        for (e, v) in a.iter_mut().enumerate() {
            let r = -wibble + 2.0 * wibble * u(call, e);
            *v = *v / 4.0 + wibble * r;
        }
        call += 1;
    };
    while step >= 2 {
        let half = step / 2;
        let g = n / step; // grid points per side
        let at = |m: &Vec<f64>, i: usize, j: usize| m[i * n + j];
        // fillsquares
        let mut sq = vec![0.0; g * g];
        for a in 0..g {
            for b in 0..g {
                // cornerref + roll(cornerref, −1, axis 0), then += roll(·, −1, axis 1)
                let c0 = at(&m, a * step, b * step) + at(&m, ((a + 1) % g) * step, b * step);
                let c1 = at(&m, a * step, ((b + 1) % g) * step)
                    + at(&m, ((a + 1) % g) * step, ((b + 1) % g) * step);
                sq[a * g + b] = c0 + c1;
            }
        }
        wmean(&mut sq, wibble);
        for a in 0..g {
            for b in 0..g {
                m[(a * step + half) * n + b * step + half] = sq[a * g + b];
            }
        }
        // filldiamonds
        let dr = |m: &Vec<f64>, a: usize, b: usize| m[(a * step + half) * n + b * step + half];
        let ul = |m: &Vec<f64>, a: usize, b: usize| m[(a * step) * n + b * step];
        let mut lt = vec![0.0; g * g];
        let mut tt = vec![0.0; g * g];
        for a in 0..g {
            for b in 0..g {
                let ldr = dr(&m, a, b) + dr(&m, (a + g - 1) % g, b);
                let lul = ul(&m, a, b) + ul(&m, a, (b + 1) % g);
                lt[a * g + b] = ldr + lul;
                let tdr = dr(&m, a, b) + dr(&m, a, (b + g - 1) % g);
                let tul = ul(&m, a, b) + ul(&m, (a + 1) % g, b);
                tt[a * g + b] = tdr + tul;
            }
        }
        wmean(&mut lt, wibble);
        for a in 0..g {
            for b in 0..g {
                m[(a * step) * n + b * step + half] = lt[a * g + b];
            }
        }
        wmean(&mut tt, wibble);
        for a in 0..g {
            for b in 0..g {
                m[(a * step + half) * n + b * step] = tt[a * g + b];
            }
        }
        step /= 2;
        wibble /= decay;
    }
    let mn = m.iter().cloned().fold(f64::INFINITY, f64::min);
    for v in m.iter_mut() {
        *v -= mn;
    }
    let mx = m.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if mx > 0.0 {
        for v in m.iter_mut() {
            *v /= mx;
        }
    }
    m
}
