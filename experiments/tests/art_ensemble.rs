//! ART's AutoAttack ensemble (the seed paper's "AutoAttack"): ART's APGD checkpoints, the ensemble's
//! norm check (with a member that deliberately overshoots), the per-sample worst case, closed-form
//! robust sets on linear classifiers, predicted labels, determinism.

#![allow(clippy::needless_range_loop)]

use anyhow::Result;
use experiments::attacks::art_ensemble::{
    ArtAutoAttack, Restarted, art_checkpoints, run_ensemble, within_eps,
};
use experiments::attacks::{ApgdLoss, ArtApgd, Attack, AttackResult, Norm, Square};
use experiments::classifier::{Classifier, LossFn};
use ndarray::{Array2, Ix2, IxDyn};
use sim::{Stream, Tensor};

// ---------------------------------------------------------------- a linear test model

fn rows(x: &Tensor) -> Array2<f32> {
    let n = x.shape()[0];
    Array2::from_shape_vec((n, x.len() / n), x.iter().cloned().collect()).unwrap()
}

fn nchw(r: &Array2<f32>, s: [usize; 3]) -> Tensor {
    Tensor::from_shape_vec(
        IxDyn(&[r.nrows(), s[0], s[1], s[2]]),
        r.iter().cloned().collect(),
    )
    .unwrap()
}

const SHAPE: [usize; 3] = [3, 4, 4];
const D: usize = 48;

/// logits = W x + b on the flattened input; exact gradient.
struct Linear {
    w: Array2<f32>,
    b: Vec<f32>,
}

impl Linear {
    fn random(k: usize, seed: u64) -> Self {
        let s = Stream::new(seed, "linear");
        let w = Array2::from_shape_fn((k, D), |(i, j)| {
            s.normal((i * D + j) as u64) / (D as f32).sqrt()
        });
        let b = (0..k)
            .map(|i| -0.5 * w.row(i).sum() + 0.05 * s.child("b").normal(i as u64))
            .collect();
        Linear { w, b }
    }
    fn z(&self, x: &Tensor) -> Array2<f32> {
        let mut z = rows(x).dot(&self.w.t());
        for mut r in z.outer_iter_mut() {
            for (v, b) in r.iter_mut().zip(&self.b) {
                *v += b;
            }
        }
        z
    }
    fn predict(&self, x: &Tensor) -> Vec<usize> {
        self.z(x)
            .outer_iter()
            .map(|r| {
                let mut b = 0;
                for j in 0..r.len() {
                    if r[j] > r[b] {
                        b = j;
                    }
                }
                b
            })
            .collect()
    }
    /// Closed form: the smallest perturbation (in `norm`) that changes the prediction from `y`,
    /// min_j (z_y − z_j)/‖w_y − w_j‖_dual (no box: the test keeps points and ε inside it).
    fn distances(&self, x: &Tensor, y: &[usize], norm: Norm) -> Vec<f32> {
        let z = self.z(x);
        (0..y.len())
            .map(|i| {
                (0..self.w.nrows())
                    .filter(|&j| j != y[i])
                    .map(|j| {
                        let dw: Vec<f32> =
                            (0..D).map(|q| self.w[[y[i], q]] - self.w[[j, q]]).collect();
                        let dual = match norm {
                            Norm::Linf => dw.iter().map(|a| a.abs()).sum::<f32>(),
                            Norm::L2 => dw.iter().map(|a| a * a).sum::<f32>().sqrt(),
                        };
                        (z[[i, y[i]]] - z[[i, j]]) / dual
                    })
                    .fold(f32::INFINITY, f32::min)
            })
            .collect()
    }
}

impl Classifier for Linear {
    fn describe(&self) -> String {
        "linear".into()
    }
    fn num_classes(&self) -> usize {
        self.w.nrows()
    }
    fn input_shape(&self) -> [usize; 3] {
        SHAPE
    }
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.z(x).into_dyn())
    }
    fn loss_grad(&self, x: &Tensor, loss: LossFn<'_>) -> Result<(Tensor, Tensor)> {
        let z = self.z(x).into_dyn();
        let (_, g) = loss(&z)?;
        let g = g.into_dimensionality::<Ix2>()?;
        Ok((z, nchw(&g.dot(&self.w), SHAPE)))
    }
}

/// n images with values uniform in [lo, hi].
fn images(n: usize, lo: f32, hi: f32, seed: u64) -> Tensor {
    let s = Stream::new(seed, "images");
    let r = Array2::from_shape_fn((n, D), |(i, j)| {
        lo + (hi - lo) * s.uniform((i * D + j) as u64)
    });
    nchw(&r, SHAPE)
}

/// A member that moves each point straight to the nearest linear boundary of `lin` and beyond, to
/// exactly `factor`·ε in L∞ (the worst-case L∞ direction −sign(w_y − w_j*)), without any norm check
/// of its own: it reports success whenever the label changed.
struct Overshoot<'a> {
    lin: &'a Linear,
    eps: f32,
    factor: f32,
}

impl Attack for Overshoot<'_> {
    fn name(&self) -> String {
        format!("overshoot x{}", self.factor)
    }
    fn run_indexed(
        &self,
        _clf: &dyn Classifier,
        x: &Tensor,
        y: &[usize],
        _ids: &[u64],
        _seed: u64,
    ) -> Result<AttackResult> {
        let x0 = rows(x);
        let z = self.lin.z(x);
        let mut adv = x0.clone();
        for i in 0..y.len() {
            // nearest class in L∞
            let k = self.lin.w.nrows();
            let (mut best, mut bj) = (f32::INFINITY, 0);
            for j in (0..k).filter(|&j| j != y[i]) {
                let dual: f32 = (0..D)
                    .map(|q| (self.lin.w[[y[i], q]] - self.lin.w[[j, q]]).abs())
                    .sum();
                let dist = (z[[i, y[i]]] - z[[i, j]]) / dual;
                if dist < best {
                    best = dist;
                    bj = j;
                }
            }
            for q in 0..D {
                let s = (self.lin.w[[y[i], q]] - self.lin.w[[bj, q]]).signum();
                adv[[i, q]] = x0[[i, q]] - self.factor * self.eps * s;
            }
        }
        let pred = self.lin.predict(&nchw(&adv, SHAPE));
        let norms = (0..y.len())
            .map(|i| {
                (0..D)
                    .map(|q| (adv[[i, q]] - x0[[i, q]]).abs())
                    .fold(0.0, f32::max)
            })
            .collect();
        Ok(AttackResult {
            x_adv: nchw(&adv, SHAPE),
            success: (0..y.len()).map(|i| pred[i] != y[i]).collect(),
            norms,
            labels: y.to_vec(),
            queries: 0,
            grads: 0,
        })
    }
}

/// A member that never changes anything.
struct Nothing;

impl Attack for Nothing {
    fn name(&self) -> String {
        "nothing".into()
    }
    fn run_indexed(
        &self,
        _clf: &dyn Classifier,
        x: &Tensor,
        y: &[usize],
        _ids: &[u64],
        _seed: u64,
    ) -> Result<AttackResult> {
        Ok(AttackResult {
            x_adv: x.clone(),
            success: vec![false; y.len()],
            norms: vec![0.0; y.len()],
            labels: y.to_vec(),
            queries: 0,
            grads: 0,
        })
    }
}

fn ids(n: usize) -> Vec<u64> {
    (0..n as u64).collect()
}

// ---------------------------------------------------------------- tests

#[test]
fn art_apgd_checkpoints_are_arts_float_rounded_list() {
    // p = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 (next 1.05 > 1); in binary floating
    // point p₃ = 0.5700000000000001, so ceil(100·p₃) = 58, not 57, and for 10 iterations
    // p₄ = 0.7000000000000001 gives ceil(7.000000000000001) = 8 (Python's math.ceil agrees).
    assert_eq!(
        art_checkpoints(100),
        vec![0, 22, 41, 58, 70, 80, 87, 93, 99]
    );
    assert_eq!(art_checkpoints(10), vec![0, 3, 5, 6, 8, 8, 9, 10, 10]);
    assert_eq!(art_checkpoints(20), vec![0, 5, 9, 12, 15, 16, 18, 19, 20]);
}

#[test]
fn the_norm_check_is_arts_relative_tolerance() {
    // (1 − 1e−4)·‖δ‖ ≤ ε, plus 2⁻²² (≈ 2.4e−7) for f32 rounding in L∞, 2⁻²²·√48 ≈ 1.65e−6 in L2.
    assert!(within_eps(Norm::Linf, 0.1, 0.1, D));
    assert!(within_eps(Norm::Linf, 0.1 * (1.0 + 5e-5), 0.1, D));
    assert!(!within_eps(Norm::Linf, 0.1 * (1.0 + 2e-4), 0.1, D));
    assert!(!within_eps(Norm::Linf, 0.101, 0.1, D));
    assert!(within_eps(Norm::Linf, 1e-4 + 2e-7, 1e-4, D));
    assert!(!within_eps(Norm::Linf, 1e-4 + 1e-6, 1e-4, D));
    assert!(within_eps(Norm::L2, 0.5 * (1.0 + 5e-5), 0.5, D));
    assert!(!within_eps(Norm::L2, 0.5 * (1.0 + 2e-4), 0.5, D));
    assert!(!within_eps(Norm::L2, f64::NAN, 0.5, D));
}

#[test]
fn an_overshooting_member_is_rejected_and_an_exact_one_accepted() {
    let lin = Linear::random(10, 5);
    let x = images(24, 0.3, 0.7, 3);
    let y = lin.predict(&x);
    let dist = lin.distances(&x, &y, Norm::Linf);
    // ε above every point's distance: a member moving exactly ε toward the nearest boundary breaks
    // every point; the same member overshooting by 1 % breaks none (all rejected by the norm check).
    let eps = dist.iter().cloned().fold(0.0, f32::max) * 1.2;
    assert!(eps < 0.3, "the test keeps to the box ({eps})");
    for (factor, want_robust) in [(1.0f32, 0usize), (1.01, 24)] {
        let m: Vec<Box<dyn Attack + '_>> = vec![Box::new(Overshoot {
            lin: &lin,
            eps,
            factor,
        })];
        let rep = run_ensemble(&m, &lin, &x, &y, &ids(24), 0, Norm::Linf, eps, false).unwrap();
        let n_rob = rep.robust.iter().filter(|&&r| r).count();
        assert_eq!(n_rob, want_robust, "factor {factor}");
        assert_eq!(rep.per_attack[0].1, 24 - want_robust);
        if want_robust == 24 {
            // Rejected candidates are not kept: x_adv is the clean image.
            assert_eq!(rep.x_adv, x);
            assert!(rep.broken_by.iter().all(|b| b.is_none()));
        }
    }
}

#[test]
fn per_sample_worst_case_over_members() {
    let lin = Linear::random(10, 6);
    let x = images(20, 0.3, 0.7, 4);
    let y = lin.predict(&x);
    let dist = lin.distances(&x, &y, Norm::Linf);
    let mut sorted = dist.clone();
    sorted.sort_by(f32::total_cmp);
    let eps = 0.5 * (sorted[9] + sorted[10]);
    // The exact member breaks exactly the points with dist < ε; put it after a member that does
    // nothing and before an overshooting one (rejected): the union is the closed-form set.
    let m: Vec<Box<dyn Attack + '_>> = vec![
        Box::new(Nothing),
        Box::new(Overshoot {
            lin: &lin,
            eps,
            factor: 1.0,
        }),
        Box::new(Overshoot {
            lin: &lin,
            eps,
            factor: 1.5,
        }),
    ];
    let rep = run_ensemble(&m, &lin, &x, &y, &ids(20), 0, Norm::Linf, eps, false).unwrap();
    for i in 0..20 {
        assert_eq!(
            rep.robust[i],
            dist[i] > eps,
            "sample {i}: dist {} eps {eps}",
            dist[i]
        );
    }
    assert_eq!(rep.robust_accuracy, 0.5);
    assert_eq!(
        rep.per_attack.iter().map(|p| p.1).collect::<Vec<_>>(),
        vec![0, 10, 0]
    );
}

#[test]
fn art_ensemble_matches_the_closed_form_robust_set_on_a_linear_model() {
    let lin = Linear::random(10, 5);
    let x = images(30, 0.3, 0.7, 3);
    let y = lin.predict(&x);
    for norm in [Norm::Linf, Norm::L2] {
        let dist = lin.distances(&x, &y, norm);
        let mut sorted = dist.clone();
        sorted.sort_by(f32::total_cmp);
        let eps = 0.5 * (sorted[14] + sorted[15]);
        let aa = ArtAutoAttack {
            apgd_iter: 30,
            apgd_restarts: 2,
            square_queries: 300,
            square_restarts: 1,
            ..ArtAutoAttack::paper(norm, eps)
        };
        let rep = aa.evaluate(&lin, &x, &y, &ids(30), 9).unwrap();
        let mut both = [0, 0];
        for i in 0..30 {
            // Hard bound: no valid perturbation crosses a linear boundary farther than ε.
            if dist[i] > eps {
                assert!(
                    rep.robust[i],
                    "{norm} sample {i}: dist {} > eps {eps}",
                    dist[i]
                );
            }
            // The attacks find every point clearly inside (3 % band excluded).
            if dist[i] < 0.97 * eps {
                assert!(
                    !rep.robust[i],
                    "{norm} sample {i}: dist {} eps {eps}",
                    dist[i]
                );
            }
            both[rep.robust[i] as usize] += 1;
        }
        assert!(both[0] >= 10 && both[1] >= 10, "{norm}: {both:?}");
        assert_eq!(rep.per_attack.len(), 4);
        // On a linear model ART's two APGD members alone find every broken point.
        assert_eq!(
            rep.per_attack[0].1 + rep.per_attack[1].1,
            both[0],
            "{norm}: {:?}",
            rep.per_attack
        );
        // Every broken point's adversarial is within ε and misclassified.
        let pred = lin.predict(&rep.x_adv);
        let (a, x0) = (rows(&rep.x_adv), rows(&x));
        for i in 0..30 {
            if !rep.robust[i] {
                assert_ne!(pred[i], y[i]);
                let d = &a.row(i) - &x0.row(i);
                assert!(within_eps(norm, norm.of(d.view()) as f64, eps as f64, D));
                assert!(a.row(i).iter().all(|v| (0.0..=1.0).contains(v)));
            }
        }
    }
}

#[test]
fn predicted_labels_attack_clean_errors_but_never_count_them_robust() {
    let lin = Linear::random(10, 7);
    let x = images(16, 0.3, 0.7, 5);
    let pred = lin.predict(&x);
    // True labels: the prediction for even samples, another class for odd ones (clean errors).
    let y: Vec<usize> = (0..16)
        .map(|i| {
            if i % 2 == 0 {
                pred[i]
            } else {
                (pred[i] + 1) % 10
            }
        })
        .collect();
    let eps = 1e-6; // far below every distance: no attack can succeed
    let aa = ArtAutoAttack {
        apgd_iter: 5,
        apgd_restarts: 1,
        square_queries: 20,
        square_restarts: 1,
        deepfool_iter: 5,
        ..ArtAutoAttack::paper(Norm::Linf, eps)
    };
    let rep = aa.evaluate(&lin, &x, &y, &ids(16), 1).unwrap();
    for i in 0..16 {
        assert_eq!(rep.robust[i], i % 2 == 0, "sample {i}");
    }
    assert_eq!(rep.clean_accuracy, 0.5);
    assert_eq!(rep.robust_accuracy, 0.5);
    // As an Attack it reports the predicted labels as the attacked ones.
    let r = aa.run(&lin, &x, &y, 1).unwrap();
    assert_eq!(r.labels, pred);
    // With the true labels (standard use) the attacked labels are the true ones.
    let r = ArtAutoAttack {
        use_predicted: false,
        ..aa.clone()
    }
    .run(&lin, &x, &y, 1)
    .unwrap();
    assert_eq!(r.labels, y);
}

#[test]
fn art_apgd_and_restarted_square_are_deterministic_and_split_independent() {
    let lin = Linear::random(10, 8);
    let x = images(12, 0.2, 0.8, 6);
    let y = lin.predict(&x);
    let dist = lin.distances(&x, &y, Norm::L2);
    let mut sorted = dist.clone();
    sorted.sort_by(f32::total_cmp);
    let eps = sorted[6];
    let attacks: Vec<Box<dyn Attack>> = vec![
        Box::new(ArtApgd {
            max_iter: 10,
            nb_random_init: 2,
            ..ArtApgd::new(Norm::L2, eps, ApgdLoss::Dlr)
        }),
        Box::new(Restarted {
            attack: Square {
                n_queries: 50,
                ..Square::new(Norm::L2, eps)
            },
            restarts: 2,
            norm: Norm::L2,
        }),
    ];
    let all: Vec<u64> = (100..112).collect();
    for atk in &attacks {
        let a = atk.run_indexed(&lin, &x, &y, &all, 3).unwrap();
        let b = atk.run_indexed(&lin, &x, &y, &all, 3).unwrap();
        assert_eq!(a.x_adv, b.x_adv, "{}", atk.name());
        // Two halves with the same sample ids give the same rows.
        let xr = rows(&x);
        let mut halves = vec![];
        for part in [0..6usize, 6..12] {
            let idx: Vec<usize> = part.collect();
            let xs = nchw(&xr.select(ndarray::Axis(0), &idx), SHAPE);
            let ys: Vec<usize> = idx.iter().map(|&i| y[i]).collect();
            let is: Vec<u64> = idx.iter().map(|&i| all[i]).collect();
            halves.push(atk.run_indexed(&lin, &xs, &ys, &is, 3).unwrap());
        }
        let ar = rows(&a.x_adv);
        for (h, off) in halves.iter().zip([0, 6]) {
            let hr = rows(&h.x_adv);
            for r in 0..6 {
                assert_eq!(hr.row(r), ar.row(off + r), "{} row {}", atk.name(), off + r);
                assert_eq!(h.success[r], a.success[off + r]);
            }
        }
        // Perturbations stay in the ε-ball and the box.
        for i in 0..12 {
            assert!(a.norms[i] <= eps * (1.0 + 1e-4) + 1e-6, "{}", atk.name());
        }
    }
}

#[test]
fn bad_input_is_an_error() {
    let lin = Linear::random(10, 5);
    let x = images(2, 0.3, 0.7, 3);
    let y = lin.predict(&x);
    let bad = [
        ArtApgd {
            nb_random_init: 0,
            ..ArtApgd::new(Norm::Linf, 0.1, ApgdLoss::Ce)
        },
        ArtApgd {
            eps_step: 0.0,
            ..ArtApgd::new(Norm::Linf, 0.1, ApgdLoss::Ce)
        },
        ArtApgd::new(Norm::Linf, -0.1, ApgdLoss::Ce),
    ];
    for a in bad {
        assert!(a.run(&lin, &x, &y, 0).is_err(), "{a:?}");
    }
    assert!(
        ArtAutoAttack::paper(Norm::Linf, f32::NAN)
            .run(&lin, &x, &y, 0)
            .is_err()
    );
    assert!(
        ArtAutoAttack::paper(Norm::Linf, 0.1)
            .run(&lin, &x, &[0, 10], 0)
            .is_err(),
        "label out of range"
    );
}
