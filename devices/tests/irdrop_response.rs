//! IR-drop response matrices: `m · V` against the reference nodal solve of the same circuit, in
//! both read directions, the ideal limit and the attenuation with growing wire resistance.

use devices::irdrop::{Direction, IrDrop, ideal_currents};
use sim::Stream;

fn matvec(m: &[f64], n_out: usize, n_in: usize, v: &[f64]) -> Vec<f64> {
    (0..n_out)
        .map(|o| (0..n_in).map(|i| m[o * n_in + i] * v[i]).sum())
        .collect()
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

/// A random tile `rows×cols` (2..=8 each) with conductances in [0, 25] µS and resistances spanning
/// mild to strong IR drop (`scale` multiplies them).
fn random_tile(s: &Stream, t: u64, scale: f64) -> (usize, usize, Vec<f64>, IrDrop) {
    let s = s.sub(t);
    let rows = 2 + s.below(0, 7) as usize;
    let cols = 2 + s.below(1, 7) as usize;
    let g: Vec<f64> = (0..rows * cols)
        .map(|k| 25.0 * s.uniform(100 + k as u64) as f64)
        .collect();
    let p = IrDrop {
        r_wire_ohm: scale * (0.5 + 20.0 * s.uniform(2) as f64),
        r_driver_ohm: scale * (10.0 + 500.0 * s.uniform(3) as f64),
        r_sense_ohm: scale * (10.0 + 500.0 * s.uniform(4) as f64),
        iterations: 1,
    };
    (rows, cols, g, p)
}

fn random_inputs(s: &Stream, t: u64, n: usize, k: u64) -> Vec<f64> {
    let s = s.sub(t).child("v").sub(k);
    (0..n)
        .map(|i| 0.2 * (2.0 * s.uniform(i as u64) as f64 - 1.0))
        .collect()
}

/// For random small tiles and random inputs, `m · V` equals the nodal solve's output currents
/// within 1e-9 relative, forward and transposed; including tiles whose resistances are so large
/// that the fixed-point approximation's contraction bound ε exceeds 1.
#[test]
fn response_matrix_matches_nodal_solve_both_directions() {
    let s = Stream::new(7, "resp-tiles");
    let mut worst = 0.0f64;
    let mut max_eps = 0.0f64;
    let mut max_effect = 0.0f64;
    for t in 0..40u64 {
        let scale = if t < 30 { 1.0 } else { 40.0 };
        let (rows, cols, g, p) = random_tile(&s, t, scale);
        max_eps = max_eps.max(p.contraction(25.0, rows, cols));
        for dir in [Direction::Forward, Direction::Transposed] {
            let r = p.response_matrix(&g, rows, cols, dir).unwrap();
            let (n_out, n_in) = match dir {
                Direction::Forward => (cols, rows),
                Direction::Transposed => (rows, cols),
            };
            assert_eq!((r.n_out, r.n_in), (n_out, n_in));
            assert!(r.sweeps > 0);
            for k in 0..3 {
                let v = random_inputs(&s, t, n_in, k);
                let nodal = p.solve_nodal_dir(&g, &v, rows, cols, dir).unwrap();
                let got = matvec(&r.m_us, n_out, n_in, &v);
                let scale = max_abs(&nodal.i_out_ua).max(1e-12);
                for (o, (a, b)) in got.iter().zip(&nodal.i_out_ua).enumerate() {
                    let rel = (a - b).abs() / scale;
                    worst = worst.max(rel);
                    assert!(
                        rel < 1e-9,
                        "tile {t} {dir:?} output {o}: response {a} vs nodal {b} (rel {rel:e})"
                    );
                }
                // the IR drop is not negligible on these tiles
                let ideal = match dir {
                    Direction::Forward => ideal_currents(&g, &v, rows, cols),
                    Direction::Transposed => (0..rows)
                        .map(|rr| (0..cols).map(|c| g[rr * cols + c] * v[c]).sum())
                        .collect(),
                };
                let d = ideal
                    .iter()
                    .zip(&nodal.i_out_ua)
                    .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
                max_effect = max_effect.max(d / max_abs(&ideal).max(1e-12));
            }
        }
    }
    eprintln!(
        "worst relative error {worst:.2e}; max ε {max_eps:.2}; max IR effect {max_effect:.3}"
    );
    assert!(
        max_eps > 1.0,
        "stressed tiles should exceed ε = 1, got {max_eps}"
    );
    assert!(
        max_effect > 0.1,
        "IR drop effect too small to test: {max_effect}"
    );
}

/// The transposed response is a different circuit: it is not the transpose of the forward one.
#[test]
fn transposed_response_differs_from_forward_transpose() {
    let s = Stream::new(8, "resp-asym");
    let (rows, cols, g, p) = random_tile(&s, 0, 4.0);
    let f = p
        .response_matrix(&g, rows, cols, Direction::Forward)
        .unwrap();
    let b = p
        .response_matrix(&g, rows, cols, Direction::Transposed)
        .unwrap();
    let mut d = 0.0f64;
    for r in 0..rows {
        for c in 0..cols {
            d = d.max((f.m_us[c * rows + r] - b.m_us[r * cols + c]).abs());
        }
    }
    assert!(
        d > 1e-3 * max_abs(&g),
        "forward ≈ transposedᵀ: max difference {d}"
    );
}

/// Zero driver and sense resistances (the presets' `--set ir_drop.r_wire_ohm=…` case): the nodal
/// solve needs positive ones, so check against the fast fixed-point approximation iterated to
/// convergence (a different algorithm that handles zeros exactly); transposed via 1e-7 Ω.
#[test]
fn response_matrix_with_zero_driver_and_sense() {
    let s = Stream::new(9, "resp-zero-ends");
    for t in 0..10u64 {
        let (rows, cols, g, mut p) = random_tile(&s, t, 0.1);
        p.r_driver_ohm = 0.0;
        p.r_sense_ohm = 0.0;
        let r = p
            .response_matrix(&g, rows, cols, Direction::Forward)
            .unwrap();
        let many = IrDrop {
            iterations: 2000,
            ..p.clone()
        };
        assert!(many.contraction(25.0, rows, cols) < 0.9);
        let v = random_inputs(&s, t, rows, 0);
        let a = many.solve_approx(&g, &v, rows, cols).unwrap();
        let got = matvec(&r.m_us, cols, rows, &v);
        let scale = max_abs(&a.i_out_ua);
        for (x, y) in got.iter().zip(&a.i_out_ua) {
            assert!((x - y).abs() < 1e-9 * scale, "tile {t}: {x} vs {y}");
        }
        let tiny = IrDrop {
            r_driver_ohm: 1e-7,
            r_sense_ohm: 1e-7,
            ..p.clone()
        };
        let rt = p
            .response_matrix(&g, rows, cols, Direction::Transposed)
            .unwrap();
        let vt = random_inputs(&s, t, cols, 1);
        let n = tiny
            .solve_nodal_dir(&g, &vt, rows, cols, Direction::Transposed)
            .unwrap();
        let got = matvec(&rt.m_us, rows, cols, &vt);
        let scale = max_abs(&n.i_out_ua);
        for (x, y) in got.iter().zip(&n.i_out_ua) {
            assert!(
                (x - y).abs() < 1e-6 * scale,
                "tile {t} transposed: {x} vs {y}"
            );
        }
    }
}

/// All resistances 0: the response is the conductance matrix itself, bitwise, in both directions;
/// tiny resistances approach it.
#[test]
fn response_matrix_ideal_limit() {
    let s = Stream::new(10, "resp-ideal");
    let (rows, cols, g, p) = random_tile(&s, 0, 1.0);
    let zero = IrDrop::default();
    let f = zero
        .response_matrix(&g, rows, cols, Direction::Forward)
        .unwrap();
    let b = zero
        .response_matrix(&g, rows, cols, Direction::Transposed)
        .unwrap();
    for r in 0..rows {
        for c in 0..cols {
            assert_eq!(f.m_us[c * rows + r], g[r * cols + c]);
            assert_eq!(b.m_us[r * cols + c], g[r * cols + c]);
        }
    }
    let mut last = f64::INFINITY;
    for k in [1e-2, 1e-4, 1e-6] {
        let q = IrDrop {
            r_wire_ohm: p.r_wire_ohm * k,
            r_driver_ohm: p.r_driver_ohm * k,
            r_sense_ohm: p.r_sense_ohm * k,
            ..p.clone()
        };
        let mut d = 0.0f64;
        for dir in [Direction::Forward, Direction::Transposed] {
            let m = q.response_matrix(&g, rows, cols, dir).unwrap();
            let z = zero.response_matrix(&g, rows, cols, dir).unwrap();
            d = m
                .m_us
                .iter()
                .zip(&z.m_us)
                .fold(d, |d, (a, b)| d.max((a - b).abs()));
        }
        assert!(d < last, "scale {k}: {d} not below {last}");
        last = d;
    }
    assert!(
        last < 1e-6 * 25.0,
        "1e-6 × resistances: max difference {last}"
    );
}

/// IR drop attenuates: with positive inputs on a tile of positive conductances the mean |output|
/// shrinks strictly as the wire resistance grows, in both directions.
#[test]
fn growing_wire_resistance_attenuates_outputs() {
    let s = Stream::new(11, "resp-mono");
    let (rows, cols) = (16usize, 12usize);
    let g: Vec<f64> = (0..rows * cols)
        .map(|k| 1.0 + 24.0 * s.uniform(k as u64) as f64)
        .collect();
    for dir in [Direction::Forward, Direction::Transposed] {
        let n_in = if dir == Direction::Forward {
            rows
        } else {
            cols
        };
        let n_out = rows + cols - n_in;
        let v: Vec<f64> = (0..n_in)
            .map(|i| 0.05 + 0.2 * s.child("v").uniform(i as u64) as f64)
            .collect();
        let mut last = f64::INFINITY;
        for r_wire in [0.0, 0.5, 2.0, 5.0, 20.0, 100.0] {
            let p = IrDrop {
                r_wire_ohm: r_wire,
                r_driver_ohm: 50.0,
                r_sense_ohm: 50.0,
                iterations: 1,
            };
            let m = p.response_matrix(&g, rows, cols, dir).unwrap();
            let out = matvec(&m.m_us, n_out, n_in, &v);
            let mean = out.iter().map(|x| x.abs()).sum::<f64>() / n_out as f64;
            assert!(
                mean < last,
                "{dir:?} r_wire {r_wire}: mean |I| {mean} ≥ {last}"
            );
            last = mean;
        }
    }
}

/// Bad input gives an error, not a panic.
#[test]
fn response_matrix_rejects_bad_input() {
    let p = IrDrop {
        r_wire_ohm: 1.0,
        ..IrDrop::default()
    };
    assert!(
        p.response_matrix(&[1.0; 5], 2, 3, Direction::Forward)
            .is_err()
    );
    assert!(
        p.response_matrix(&[1.0, -1.0, 1.0, 1.0], 2, 2, Direction::Forward)
            .is_err()
    );
    assert!(p.response_matrix(&[], 0, 2, Direction::Transposed).is_err());
    let bad = IrDrop {
        r_wire_ohm: -1.0,
        ..IrDrop::default()
    };
    assert!(
        bad.response_matrix(&[1.0; 4], 2, 2, Direction::Forward)
            .is_err()
    );
}

/// A network whose relaxation cannot reach the tolerance in [`MAX_SWEEPS`] sweeps (wires far more
/// resistive than the cells: the far nodes float) gives an error with advice, not a wrong matrix.
#[test]
fn non_converging_solve_is_an_error() {
    let p = IrDrop {
        r_wire_ohm: 1e12,
        r_driver_ohm: 1.0,
        r_sense_ohm: 1.0,
        iterations: 1,
    };
    let g = [25.0, 20.0, 15.0, 10.0, 5.0, 1.0];
    let e = p
        .response_matrix(&g, 2, 3, Direction::Forward)
        .expect_err("should not converge")
        .to_string();
    assert!(
        e.contains("did not converge") && e.contains("smaller tiles"),
        "{e}"
    );
}

/// The response does not depend on the thread count (the unit inputs are solved in groups whose
/// results are independent of the scheduling).
#[test]
fn response_matrix_is_thread_count_independent() {
    let s = Stream::new(13, "resp-threads");
    let (rows, cols) = (37usize, 11usize);
    let g: Vec<f64> = (0..rows * cols)
        .map(|k| 25.0 * s.uniform(k as u64) as f64)
        .collect();
    let p = IrDrop {
        r_wire_ohm: 2.0,
        r_driver_ohm: 30.0,
        r_sense_ohm: 0.0,
        iterations: 1,
    };
    let run = |threads: usize, dir: Direction| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| p.response_matrix(&g, rows, cols, dir).unwrap())
    };
    for dir in [Direction::Forward, Direction::Transposed] {
        assert_eq!(run(1, dir), run(4, dir), "{dir:?}");
    }
}
