//! Attack tests: closed-form optima on linear classifiers, hand-computed losses, black-box success on a
//! small ReLU MLP, determinism, EOT variance reduction, input validation.

#![allow(clippy::needless_range_loop)]

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use experiments::attacks::losses::{
    LossOut, cross_entropy, cw_f6, dlr, dlr_targeted, margin, margin_prob,
};
use experiments::attacks::{
    Apgd, ApgdLoss, ApgdT, Attack, AutoAttack, CarliniWagnerL2, DeepFool, FabT, Norm, Pgd, Square,
    apgd, eot_gradient, square,
};
use experiments::classifier::{Classifier, Counted, LossFn};
use ndarray::{Array2, Ix2, IxDyn};
use sim::{Stream, Tensor};

// ---------------------------------------------------------------- test models

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

/// logits = W x + b on the flattened input; exact gradient.
struct Linear {
    w: Array2<f32>,
    b: Vec<f32>,
    shape: [usize; 3],
}

impl Linear {
    fn random(k: usize, shape: [usize; 3], seed: u64) -> Self {
        let d = shape.iter().product::<usize>();
        let s = Stream::new(seed, "linear");
        let w = Array2::from_shape_fn((k, d), |(i, j)| {
            s.normal((i * d + j) as u64) / (d as f32).sqrt()
        });
        // centred: f_k(0.5·1) ≈ 0, so that the classes share the input cube
        let b = (0..k)
            .map(|i| -0.5 * w.row(i).sum() + 0.05 * s.child("b").normal(i as u64))
            .collect();
        Linear { w, b, shape }
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
}

impl Classifier for Linear {
    fn describe(&self) -> String {
        "linear".into()
    }
    fn num_classes(&self) -> usize {
        self.w.nrows()
    }
    fn input_shape(&self) -> [usize; 3] {
        self.shape
    }
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.z(x).into_dyn())
    }
    fn loss_grad(&self, x: &Tensor, loss: LossFn<'_>) -> Result<(Tensor, Tensor)> {
        let z = self.z(x).into_dyn();
        let (_, g) = loss(&z)?;
        let g = g.into_dimensionality::<Ix2>()?;
        Ok((z, nchw(&g.dot(&self.w), self.shape)))
    }
}

/// Two-layer ReLU MLP with random weights.
struct Mlp {
    w1: Array2<f32>,
    b1: Vec<f32>,
    w2: Array2<f32>,
    shape: [usize; 3],
}

impl Mlp {
    fn random(hidden: usize, k: usize, shape: [usize; 3], seed: u64) -> Self {
        let d = shape.iter().product::<usize>();
        let s = Stream::new(seed, "mlp");
        let w1 = Array2::from_shape_fn((hidden, d), |(i, j)| {
            s.child("w1").normal((i * d + j) as u64) * (2.0 / d as f32).sqrt()
        });
        let b1 = (0..hidden)
            .map(|i| -0.5 * s.child("b1").uniform(i as u64))
            .collect();
        let w2 = Array2::from_shape_fn((k, hidden), |(i, j)| {
            s.child("w2").normal((i * hidden + j) as u64) * (2.0 / hidden as f32).sqrt()
        });
        Mlp { w1, b1, w2, shape }
    }
    fn hidden(&self, x: &Tensor) -> Array2<f32> {
        let mut h = rows(x).dot(&self.w1.t());
        for mut r in h.outer_iter_mut() {
            for (v, b) in r.iter_mut().zip(&self.b1) {
                *v = (*v + b).max(0.0);
            }
        }
        h
    }
}

impl Classifier for Mlp {
    fn describe(&self) -> String {
        "mlp".into()
    }
    fn num_classes(&self) -> usize {
        self.w2.nrows()
    }
    fn input_shape(&self) -> [usize; 3] {
        self.shape
    }
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.hidden(x).dot(&self.w2.t()).into_dyn())
    }
    fn loss_grad(&self, x: &Tensor, loss: LossFn<'_>) -> Result<(Tensor, Tensor)> {
        let h = self.hidden(x);
        let z = h.dot(&self.w2.t()).into_dyn();
        let (_, g) = loss(&z)?;
        let g = g.into_dimensionality::<Ix2>()?;
        let mut gh = g.dot(&self.w2);
        gh.zip_mut_with(&h, |a, &hv| {
            if hv <= 0.0 {
                *a = 0.0
            }
        });
        Ok((z, nchw(&gh.dot(&self.w1), self.shape)))
    }
}

/// A linear classifier whose logits get fresh Gaussian noise on every call (seeded by a call counter).
struct NoisyLinear {
    lin: Linear,
    sigma: f32,
    calls: AtomicU64,
}

impl NoisyLinear {
    fn noisy(&self, x: &Tensor) -> Array2<f32> {
        let c = self.calls.fetch_add(1, Ordering::Relaxed);
        let s = Stream::new(7, "noise").sub(c);
        let mut z = self.lin.z(x);
        let k = z.ncols();
        for ((i, j), v) in z.indexed_iter_mut() {
            *v += self.sigma * s.normal((i * k + j) as u64);
        }
        z
    }
}

impl Classifier for NoisyLinear {
    fn describe(&self) -> String {
        "noisy linear".into()
    }
    fn num_classes(&self) -> usize {
        self.lin.num_classes()
    }
    fn input_shape(&self) -> [usize; 3] {
        self.lin.shape
    }
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.noisy(x).into_dyn())
    }
    fn loss_grad(&self, x: &Tensor, loss: LossFn<'_>) -> Result<(Tensor, Tensor)> {
        let z = self.noisy(x).into_dyn();
        let (_, g) = loss(&z)?;
        let g = g.into_dimensionality::<Ix2>()?;
        Ok((z, nchw(&g.dot(&self.lin.w), self.lin.shape)))
    }
    fn stochastic(&self) -> bool {
        true
    }
}

/// n images with values uniform in [lo, hi].
fn images(n: usize, shape: [usize; 3], lo: f32, hi: f32, seed: u64) -> Tensor {
    let d = shape.iter().product::<usize>();
    let s = Stream::new(seed, "images");
    let r = Array2::from_shape_fn((n, d), |(i, j)| {
        lo + (hi - lo) * s.uniform((i * d + j) as u64)
    });
    nchw(&r, shape)
}

fn predict(clf: &dyn Classifier, x: &Tensor) -> Vec<usize> {
    let z = clf.logits(x).unwrap().into_dimensionality::<Ix2>().unwrap();
    z.outer_iter()
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

const SHAPE: [usize; 3] = [3, 4, 4];

/// Binary linear model: f(x) = z_1 − z_0 = v·x + c; returns (model, v, c).
fn binary() -> (Linear, Vec<f32>, f32) {
    let lin = Linear::random(2, SHAPE, 11);
    let v: Vec<f32> = (0..lin.w.ncols())
        .map(|j| lin.w[[1, j]] - lin.w[[0, j]])
        .collect();
    let c = lin.b[1] - lin.b[0];
    (lin, v, c)
}

fn dot(a: &[f32], b: ndarray::ArrayView1<f32>) -> f32 {
    a.iter().zip(b.iter()).map(|(p, q)| p * q).sum()
}

fn l1(v: &[f32]) -> f32 {
    v.iter().map(|a| a.abs()).sum()
}

fn l2(v: &[f32]) -> f32 {
    v.iter().map(|a| a * a).sum::<f32>().sqrt()
}

/// |f(x)| per sample and the labels (the model's predictions).
fn binary_margins(v: &[f32], c: f32, x: &Tensor) -> (Vec<f32>, Vec<usize>) {
    let r = rows(x);
    let f: Vec<f32> = r.outer_iter().map(|row| dot(v, row) + c).collect();
    (
        f.iter().map(|a| a.abs()).collect(),
        f.iter().map(|&a| (a > 0.0) as usize).collect(),
    )
}

// ---------------------------------------------------------------- losses

fn close(a: f32, b: f64, tol: f64) -> bool {
    ((a as f64) - b).abs() <= tol
}

#[test]
fn losses_match_hand_computed_values() {
    let z = Tensor::from_shape_vec(IxDyn(&[1, 4]), vec![2.0, 5.0, 1.0, 0.0]).unwrap();
    // CE: log(e² + e⁵ + e + 1) − 2 = 3.0721724
    let (v, g) = cross_entropy(&z, &[0]).unwrap();
    assert!(close(v[0], 3.0721724, 1e-5), "CE {}", v[0]);
    let p = [0.04632042, 0.93037047, 0.01704033, 0.00626879];
    let expect = [p[0] - 1.0, p[1], p[2], p[3]];
    for j in 0..4 {
        assert!(close(g[[0, j]], expect[j], 1e-6), "CE grad {j}");
    }
    // margin: 2 − 5 = −3 (y = 0); 5 − 2 = 3 (y = 1)
    let (v, g) = margin(&z, &[0]).unwrap();
    assert_eq!(v[0], -3.0);
    assert_eq!(
        g.iter().cloned().collect::<Vec<_>>(),
        vec![1.0, -1.0, 0.0, 0.0]
    );
    assert_eq!(margin(&z, &[1]).unwrap().0[0], 3.0);
    // margin on probabilities: p0 − p1 = −0.88405005
    assert!(close(
        margin_prob(&z, &[0]).unwrap().0[0],
        -0.88405005,
        1e-6
    ));
    // DLR: −(2 − 5)/(5 − 1) = 0.75 (y = 0); −(5 − 2)/(5 − 1) = −0.75 (y = 1)
    assert!(close(dlr(&z, &[0]).unwrap().0[0], 0.75, 1e-6));
    assert!(close(dlr(&z, &[1]).unwrap().0[0], -0.75, 1e-6));
    // targeted DLR (y = 0, t = 2): −(2 − 1)/(5 − ½(1 + 0)) = −2/9
    assert!(close(
        dlr_targeted(&z, &[0], &[2]).unwrap().0[0],
        -2.0 / 9.0,
        1e-6
    ));
    // C&W f6: untargeted y = 1, κ = 0.5: max(0, 5 − 2 + 0.5) = 3.5, gradient −1 at the runner-up, +1 at y
    let (v, g) = cw_f6(&z, &[1], 0.5, false).unwrap();
    assert!(close(v[0], 3.5, 1e-6));
    assert_eq!(
        g.iter().cloned().collect::<Vec<_>>(),
        vec![-1.0, 1.0, 0.0, 0.0]
    );
    // already misclassified (y = 0): max(0, 2 − 5 + 0.5) = 0, zero gradient
    let (v, g) = cw_f6(&z, &[0], 0.5, false).unwrap();
    assert_eq!(v[0], 0.0);
    assert!(g.iter().all(|&a| a == 0.0));
    // targeted t = 2, κ = 1: max(0, 5 − 1 + 1) = 5
    assert!(close(cw_f6(&z, &[2], 1.0, true).unwrap().0[0], 5.0, 1e-6));
    // negative logits: the "other" max must not pick the true class (torchattacks bug #184)
    let zn = Tensor::from_shape_vec(IxDyn(&[1, 3]), vec![-1.0, -3.0, -2.0]).unwrap();
    assert!(close(cw_f6(&zn, &[0], 0.0, false).unwrap().0[0], 1.0, 1e-6));
}

fn fd_check(f: &dyn Fn(&Tensor) -> LossOut, z: &[f32]) {
    let k = z.len();
    let zt = Tensor::from_shape_vec(IxDyn(&[1, k]), z.to_vec()).unwrap();
    let (_, g) = f(&zt);
    for j in 0..k {
        let h = 1e-3f32;
        let mut zp = zt.clone();
        zp[[0, j]] += h;
        let mut zm = zt.clone();
        zm[[0, j]] -= h;
        let num = (f(&zp).0[0] as f64 - f(&zm).0[0] as f64) / (2.0 * h as f64);
        assert!(
            (num - g[[0, j]] as f64).abs() < 2e-3,
            "grad[{j}]: analytic {} numeric {num}",
            g[[0, j]]
        );
    }
}

#[test]
fn loss_gradients_match_finite_differences() {
    let z = [0.3f32, 1.7, -0.4, 0.9, 0.1];
    fd_check(&|t| cross_entropy(t, &[2]).unwrap(), &z);
    fd_check(&|t| dlr(t, &[2]).unwrap(), &z);
    fd_check(&|t| dlr(t, &[1]).unwrap(), &z);
    fd_check(&|t| dlr_targeted(t, &[2], &[4]).unwrap(), &z);
    fd_check(&|t| margin_prob(t, &[3]).unwrap(), &z);
    fd_check(&|t| cw_f6(t, &[1], 0.2, false).unwrap(), &z);
}

#[test]
fn losses_reject_bad_input() {
    let z = Tensor::from_shape_vec(IxDyn(&[1, 3]), vec![1.0, 2.0, 3.0]).unwrap();
    assert!(cross_entropy(&z, &[3]).is_err());
    assert!(cross_entropy(&z, &[0, 1]).is_err());
    assert!(
        dlr_targeted(&z, &[0], &[1]).is_err(),
        "targeted DLR needs 4 classes"
    );
    assert!(cw_f6(&z, &[0], -1.0, false).is_err());
}

// ---------------------------------------------------------------- closed-form optima

#[test]
fn pgd_and_apgd_reach_the_linear_optimum_linf() {
    let (lin, v, c) = binary();
    let x = images(24, SHAPE, 0.3, 0.7, 1);
    let (m, y) = binary_margins(&v, c, &x);
    let (v1, eps) = (l1(&v), 0.02f32);
    let pgd = Pgd::new(Norm::Linf, eps);
    let apgd = Apgd {
        n_iter: 20,
        ..Apgd::new(Norm::Linf, eps, ApgdLoss::Ce)
    };
    for (name, res) in [
        ("pgd", pgd.run(&lin, &x, &y, 3).unwrap()),
        ("apgd", apgd.run(&lin, &x, &y, 3).unwrap()),
    ] {
        let (m_adv, _) = binary_margins(&v, c, &res.x_adv);
        let pred = predict(&lin, &res.x_adv);
        let mut n_robust = 0;
        for i in 0..y.len() {
            let dist = m[i] / v1; // closed-form minimal L∞ perturbation
            if (dist / eps - 1.0).abs() < 0.01 {
                continue;
            }
            assert_eq!(
                res.success[i],
                dist < eps,
                "{name} sample {i}: dist {dist} eps {eps}"
            );
            if dist > eps {
                n_robust += 1;
                // optimum of the margin over the ball: |f| − ε‖v‖₁
                let opt = m[i] - eps * v1;
                assert!(
                    (m_adv[i] - opt).abs() < 1e-4 * (1.0 + m[i]),
                    "{name} sample {i}: margin {} optimum {opt}",
                    m_adv[i]
                );
                assert_eq!(pred[i], y[i]);
            }
            assert!(res.norms[i] <= eps * (1.0 + 1e-5));
        }
        assert!(
            n_robust > 3 && n_robust < y.len() - 3,
            "test needs both cases ({n_robust})"
        );
    }
}

#[test]
fn pgd_and_apgd_reach_the_linear_optimum_l2() {
    let (lin, v, c) = binary();
    let x = images(24, SHAPE, 0.3, 0.7, 2);
    let (m, y) = binary_margins(&v, c, &x);
    let (v2, eps) = (l2(&v), 0.12f32);
    let pgd = Pgd {
        iters: 100,
        step: eps / 8.0,
        ..Pgd::new(Norm::L2, eps)
    };
    let apgd = Apgd {
        n_iter: 50,
        ..Apgd::new(Norm::L2, eps, ApgdLoss::Ce)
    };
    for (name, res) in [
        ("pgd", pgd.run(&lin, &x, &y, 3).unwrap()),
        ("apgd", apgd.run(&lin, &x, &y, 3).unwrap()),
    ] {
        let (m_adv, _) = binary_margins(&v, c, &res.x_adv);
        let mut n_robust = 0;
        for i in 0..y.len() {
            let dist = m[i] / v2; // closed-form minimal L2 perturbation
            if (dist / eps - 1.0).abs() < 0.01 {
                continue;
            }
            assert_eq!(
                res.success[i],
                dist < eps,
                "{name} sample {i}: dist {dist} eps {eps}"
            );
            if dist > eps {
                n_robust += 1;
                let opt = m[i] - eps * v2;
                assert!(
                    (m_adv[i] - opt).abs() < 1e-3 * eps * v2,
                    "{name} sample {i}: margin {} optimum {opt}",
                    m_adv[i]
                );
            }
            assert!(res.norms[i] <= eps * (1.0 + 1e-4));
        }
        assert!(
            n_robust > 3 && n_robust < y.len() - 3,
            "test needs both cases ({n_robust})"
        );
    }
}

/// Multi-class linear model: a point is non-robust iff ε ≥ min_j (z_y − z_j)/‖w_y − w_j‖_dual.
fn multiclass_distances(lin: &Linear, x: &Tensor, y: &[usize], norm: Norm) -> Vec<f32> {
    let z = lin.z(x);
    let k = lin.w.nrows();
    (0..y.len())
        .map(|i| {
            (0..k)
                .filter(|&j| j != y[i])
                .map(|j| {
                    let dw: Vec<f32> = (0..lin.w.ncols())
                        .map(|q| lin.w[[y[i], q]] - lin.w[[j, q]])
                        .collect();
                    let dual = match norm {
                        Norm::Linf => l1(&dw),
                        Norm::L2 => l2(&dw),
                    };
                    (z[[i, y[i]]] - z[[i, j]]) / dual
                })
                .fold(f32::INFINITY, f32::min)
        })
        .collect()
}

#[test]
fn autoattack_matches_the_closed_form_robust_set_on_a_linear_model() {
    let lin = Linear::random(10, SHAPE, 5);
    let x = images(30, SHAPE, 0.3, 0.7, 3);
    let y = predict(&lin, &x);
    for norm in [Norm::Linf, Norm::L2] {
        let dist = multiclass_distances(&lin, &x, &y, norm);
        let mut sorted = dist.clone();
        sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let eps = 0.5 * (sorted[14] + sorted[15]);
        let aa = AutoAttack {
            n_iter: 30,
            square_queries: 300,
            ..AutoAttack::standard(norm, eps)
        };
        let rep = aa
            .evaluate(&lin, &x, &y, &(0..30).collect::<Vec<u64>>(), 9)
            .unwrap();
        let mut both = [0, 0];
        for i in 0..y.len() {
            if (dist[i] / eps - 1.0).abs() < 0.03 {
                continue;
            }
            assert_eq!(
                rep.robust[i],
                dist[i] > eps,
                "{norm} sample {i}: dist {} eps {eps}",
                dist[i]
            );
            both[rep.robust[i] as usize] += 1;
        }
        assert!(
            both[0] >= 3 && both[1] >= 3,
            "{norm}: test needs both cases {both:?}"
        );
        let n_rob = rep.robust.iter().filter(|&&r| r).count();
        assert!((rep.robust_accuracy - n_rob as f32 / 30.0).abs() < 1e-6);
        assert_eq!(rep.clean_accuracy, 1.0);
    }
}

#[test]
fn apgd_targeted_breaks_every_linear_point_outside_its_distance() {
    let lin = Linear::random(10, SHAPE, 6);
    let x = images(20, SHAPE, 0.3, 0.7, 4);
    let y = predict(&lin, &x);
    let dist = multiclass_distances(&lin, &x, &y, Norm::Linf);
    let mut sorted = dist.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let eps = 0.5 * (sorted[9] + sorted[10]);
    let res = ApgdT {
        n_iter: 30,
        ..ApgdT::new(Norm::Linf, eps)
    }
    .run(&lin, &x, &y, 1)
    .unwrap();
    for i in 0..y.len() {
        if (dist[i] / eps - 1.0).abs() > 0.02 {
            assert_eq!(res.success[i], dist[i] < eps, "sample {i}");
        }
    }
}

#[test]
fn deepfool_finds_the_minimal_perturbation_of_a_linear_binary_classifier() {
    let (lin, v, c) = binary();
    let x = images(16, SHAPE, 0.3, 0.7, 5);
    let (m, y) = binary_margins(&v, c, &x);
    for (norm, dual) in [(Norm::L2, l2(&v)), (Norm::Linf, l1(&v))] {
        let df = DeepFool {
            clip: false,
            ..DeepFool::new(norm)
        };
        let res = df.run(&lin, &x, &y, 0).unwrap();
        for i in 0..y.len() {
            assert!(res.success[i], "{norm} sample {i}");
            let opt = m[i] / dual;
            let ratio = res.norms[i] / opt;
            // one linear step: (|f| + 1e−4)/‖v‖·(1 + overshoot)
            assert!(
                ratio >= 1.0 && ratio <= 1.02 * (1.0 + 1e-4 * dual / m[i]) + 1e-4,
                "{norm} sample {i}: ratio {ratio}"
            );
        }
    }
}

#[test]
fn carlini_wagner_finds_a_near_minimal_l2_perturbation() {
    let (lin, v, c) = binary();
    let x = images(8, SHAPE, 0.3, 0.7, 6);
    let (m, y) = binary_margins(&v, c, &x);
    let cw = CarliniWagnerL2 {
        steps: 300,
        lr: 0.01,
        binary_search_steps: 9,
        initial_const: 0.1,
        ..Default::default()
    };
    let res = cw.run(&lin, &x, &y, 0).unwrap();
    for i in 0..y.len() {
        assert!(res.success[i], "sample {i}");
        let opt = m[i] / l2(&v);
        let ratio = res.norms[i] / opt;
        assert!(
            (0.999..1.1).contains(&ratio),
            "sample {i}: norm {} optimum {opt}",
            res.norms[i]
        );
    }
}

// ---------------------------------------------------------------- MLP: black box, monotonicity, sanity

fn mlp_setup(n: usize) -> (Mlp, Tensor, Vec<usize>) {
    let mlp = Mlp::random(32, 10, [3, 8, 8], 21);
    let x = images(n, [3, 8, 8], 0.0, 1.0, 8);
    let y = predict(&mlp, &x);
    (mlp, x, y)
}

#[test]
fn square_fools_an_undefended_mlp_within_budget() {
    let (mlp, x, y) = mlp_setup(20);
    for (norm, eps, budget) in [(Norm::Linf, 0.1f32, 5000usize), (Norm::L2, 2.0, 5000)] {
        let reference = Apgd {
            n_iter: 50,
            ..Apgd::new(norm, eps, ApgdLoss::Ce)
        }
        .run(&mlp, &x, &y, 0)
        .unwrap();
        let sq = Square {
            n_queries: budget,
            ..Square::new(norm, eps)
        };
        let res = sq.run(&mlp, &x, &y, 0).unwrap();
        assert_eq!(res.grads, 0, "Square is gradient-free");
        assert!(
            res.queries <= (20 * (budget + 1)) as u64,
            "queries {}",
            res.queries
        );
        let ns = res.success.iter().filter(|&&s| s).count();
        let nr = reference.success.iter().filter(|&&s| s).count();
        eprintln!(
            "{norm}: square {ns}/20, apgd {nr}/20, queries {}",
            res.queries
        );
        assert!(ns >= 18, "{norm}: Square fooled only {ns}/20 (APGD {nr})");
        for i in 0..20 {
            assert!(
                res.norms[i] <= eps * (1.0 + 1e-4),
                "{norm} norm {}",
                res.norms[i]
            );
            let xr = rows(&res.x_adv);
            assert!(xr.iter().all(|&a| (0.0..=1.0).contains(&a)));
            if res.success[i] {
                assert_ne!(predict(&mlp, &res.x_adv)[i], y[i]);
            }
        }
    }
}

#[test]
fn success_grows_with_eps_and_reaches_all_points_at_large_eps() {
    let (mlp, x, y) = mlp_setup(20);
    let mut prev = 0;
    for eps in [0.005f32, 0.01, 0.02, 0.04, 0.5] {
        let res = Apgd {
            n_iter: 30,
            ..Apgd::new(Norm::Linf, eps, ApgdLoss::Ce)
        }
        .run(&mlp, &x, &y, 0)
        .unwrap();
        let ns = res.success.iter().filter(|&&s| s).count();
        eprintln!("eps {eps}: {ns}/20");
        assert!(ns >= prev, "success fell from {prev} to {ns} at eps {eps}");
        prev = ns;
    }
    assert_eq!(prev, 20, "at eps 0.5 every point must fall");
}

#[test]
fn carlini_wagner_fixed_c_success_grows_with_c() {
    let (mlp, x, y) = mlp_setup(12);
    let mut prev = 0;
    let mut last_norm = 0.0;
    for c in [0.005f32, 0.01, 0.1, 1.0, 100.0] {
        let res = CarliniWagnerL2::fixed_c(c, 100)
            .run(&mlp, &x, &y, 0)
            .unwrap();
        let ns = res.success.iter().filter(|&&s| s).count();
        let mean_norm: f32 = res.norms.iter().sum::<f32>() / 12.0;
        eprintln!("c {c}: {ns}/12, mean L2 {mean_norm}");
        assert!(ns >= prev, "success fell from {prev} to {ns} at c {c}");
        for i in 0..12 {
            if !res.success[i] {
                assert_eq!(res.norms[i], 0.0, "failures return the clean image");
            }
        }
        prev = ns;
        last_norm = mean_norm;
    }
    assert!(prev >= 10 && last_norm > 0.0);
}

#[test]
fn autoattack_is_the_pointwise_worst_case() {
    let (mlp, x, y) = mlp_setup(16);
    let eps = 0.02;
    let aa = AutoAttack {
        n_iter: 20,
        square_queries: 200,
        ..AutoAttack::standard(Norm::Linf, eps)
    };
    let ids: Vec<u64> = (0..16).collect();
    let rep = aa.evaluate(&mlp, &x, &y, &ids, 4).unwrap();
    let ce = Apgd {
        n_iter: 20,
        ..Apgd::new(Norm::Linf, eps, ApgdLoss::Ce)
    }
    .run(&mlp, &x, &y, 4)
    .unwrap();
    for i in 0..16 {
        if ce.success[i] {
            assert!(
                !rep.robust[i],
                "sample {i}: APGD-CE broke it, AA must count it"
            );
        }
        if !rep.robust[i] {
            assert_ne!(predict(&mlp, &rep.x_adv)[i], y[i]);
            assert!(
                rows(&rep.x_adv)
                    .row(i)
                    .iter()
                    .zip(rows(&x).row(i).iter())
                    .all(|(a, b)| (a - b).abs() <= eps * 1.0001)
            );
        }
    }
    let broken: usize = rep.per_attack.iter().map(|p| p.1).sum();
    assert_eq!(broken, rep.robust.iter().filter(|&&r| !r).count());
    assert_eq!(rep.per_attack.len(), 4);
}

// ---------------------------------------------------------------- determinism, EOT, schedules

#[test]
fn attacks_are_deterministic_per_seed_and_independent_of_the_batch_split() {
    let (mlp, x, y) = mlp_setup(10);
    let atk = Apgd {
        n_iter: 10,
        ..Apgd::new(Norm::Linf, 0.01, ApgdLoss::Ce)
    };
    let a = atk.run(&mlp, &x, &y, 5).unwrap();
    let b = atk.run(&mlp, &x, &y, 5).unwrap();
    let c = atk.run(&mlp, &x, &y, 6).unwrap();
    assert_eq!(a.x_adv, b.x_adv);
    assert_ne!(a.x_adv, c.x_adv);
    // split into two batches, keeping the sample ids
    let xr = rows(&x);
    let lo = nchw(&xr.slice(ndarray::s![..4, ..]).to_owned(), [3, 8, 8]);
    let hi = nchw(&xr.slice(ndarray::s![4.., ..]).to_owned(), [3, 8, 8]);
    let r1 = atk
        .run_indexed(&mlp, &lo, &y[..4], &[0, 1, 2, 3], 5)
        .unwrap();
    let r2 = atk
        .run_indexed(&mlp, &hi, &y[4..], &[4, 5, 6, 7, 8, 9], 5)
        .unwrap();
    let joined: Vec<f32> = r1.x_adv.iter().chain(r2.x_adv.iter()).cloned().collect();
    assert_eq!(joined, a.x_adv.iter().cloned().collect::<Vec<_>>());
    for sq in [
        Square {
            n_queries: 50,
            ..Square::new(Norm::Linf, 0.03)
        },
        Square {
            n_queries: 50,
            ..Square::new(Norm::L2, 0.5)
        },
    ] {
        let s1 = sq.run(&mlp, &x, &y, 1).unwrap();
        let s2 = sq
            .run_indexed(&mlp, &hi, &y[4..], &[4, 5, 6, 7, 8, 9], 1)
            .unwrap();
        let tail: Vec<f32> = rows(&s1.x_adv)
            .slice(ndarray::s![4.., ..])
            .iter()
            .cloned()
            .collect();
        assert_eq!(tail, s2.x_adv.iter().cloned().collect::<Vec<_>>());
    }
    let p1 = Pgd::new(Norm::L2, 0.3).run(&mlp, &x, &y, 2).unwrap();
    let p2 = Pgd::new(Norm::L2, 0.3).run(&mlp, &x, &y, 2).unwrap();
    assert_eq!(p1.x_adv, p2.x_adv);
}

#[test]
fn eot_reduces_gradient_variance_on_a_stochastic_classifier() {
    let noisy = NoisyLinear {
        lin: Linear::random(3, SHAPE, 12),
        sigma: 1.0,
        calls: AtomicU64::new(0),
    };
    assert!(noisy.stochastic());
    let x = images(1, SHAPE, 0.3, 0.7, 9);
    let y = [0usize];
    let loss = |z: &Tensor| cross_entropy(z, &y);
    let variance = |eot: usize| -> f64 {
        let g: Vec<Vec<f32>> = (0..40)
            .map(|_| {
                eot_gradient(&noisy, &x, &loss, eot)
                    .unwrap()
                    .1
                    .iter()
                    .cloned()
                    .collect()
            })
            .collect();
        let d = g[0].len();
        (0..d)
            .map(|j| {
                let mean = g.iter().map(|r| r[j] as f64).sum::<f64>() / g.len() as f64;
                g.iter().map(|r| (r[j] as f64 - mean).powi(2)).sum::<f64>() / (g.len() - 1) as f64
            })
            .sum::<f64>()
    };
    let (v1, v16) = (variance(1), variance(16));
    eprintln!("gradient variance: EOT 1 {v1}, EOT 16 {v16}");
    assert!(v1 > 0.0);
    assert!(
        v16 < 0.2 * v1,
        "EOT 16 should cut the variance ~16× ({v1} → {v16})"
    );
    // A deterministic classifier is queried once whatever eot_iter says.
    let lin = Linear::random(3, SHAPE, 12);
    let cnt = Counted::new(&lin);
    eot_gradient(&cnt, &x, &loss, 16).unwrap();
    assert_eq!(cnt.grads.load(Ordering::Relaxed), 1);
    // The 'rand' AutoAttack runs on the stochastic model and uses 20 draws per gradient.
    let cnt = Counted::new(&noisy);
    let xs = images(4, SHAPE, 0.3, 0.7, 10);
    let ys = predict(&noisy.lin, &xs);
    let aa = AutoAttack {
        n_iter: 5,
        ..AutoAttack::rand(Norm::Linf, 0.01)
    };
    let rep = aa.evaluate(&cnt, &xs, &ys, &[0, 1, 2, 3], 0).unwrap();
    assert_eq!(rep.per_attack.len(), 2);
    assert!(
        rep.grads > 0 && rep.grads.is_multiple_of(20),
        "grads {}",
        rep.grads
    );
    // Square with EOT acceptance: every candidate is queried eot_iter times (after one clean check).
    let sq = Square {
        n_queries: 10,
        eot_iter: 5,
        ..Square::new(Norm::Linf, 0.01)
    };
    let res = sq.run(&noisy, &xs, &ys, 0).unwrap();
    assert_eq!(res.grads, 0);
    assert!(
        res.queries > 4 && (res.queries - 4).is_multiple_of(5),
        "queries {}",
        res.queries
    );
}

#[test]
fn apgd_checkpoints_and_square_schedule_follow_the_references() {
    assert_eq!(apgd::checkpoints(100), vec![21, 40, 56, 69, 79, 86, 92, 98]);
    assert_eq!(
        apgd::checkpoints(20),
        vec![3, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]
    );
    // L∞ window sides on 32×32 under AutoAttack (p_init 0.8, raw schedule): 29, 20, 14, 10, 7, 5, 4, 3
    let sides: Vec<usize> = [0usize, 20, 100, 300, 700, 1500, 3000, 4500]
        .iter()
        .map(|&it| {
            ((square::p_selection(0.8, it, 5000, false) as f64 * 1024.0)
                .sqrt()
                .round()) as usize
        })
        .collect();
    assert_eq!(sides, vec![29, 20, 14, 10, 7, 5, 4, 3]);
    // rescaled schedule: iteration 500 of 1000 ↔ 5000 of 10 000 → p_init/128
    assert_eq!(square::p_selection(0.8, 500, 1000, true), 0.8 / 128.0);
    // pseudo-Gaussian rectangles 1×3: [¼, 1¼, ¼] normalized
    let r = square::pseudo_gaussian_pert_rectangles(1, 3);
    let n = (2.0 * 0.0625f64 + 1.5625).sqrt();
    for (a, b) in r.iter().zip([0.25 / n, 1.25 / n, 0.25 / n]) {
        assert!((a - b).abs() < 1e-12);
    }
}

// ---------------------------------------------------------------- input validation

#[test]
fn attacks_reject_bad_input() {
    let (lin, _, _) = binary();
    let x = images(4, SHAPE, 0.3, 0.7, 1);
    let y = predict(&lin, &x);
    assert!(Pgd::new(Norm::Linf, -0.1).run(&lin, &x, &y, 0).is_err());
    assert!(
        Apgd::new(Norm::L2, f32::NAN, ApgdLoss::Ce)
            .run(&lin, &x, &y, 0)
            .is_err()
    );
    assert!(Square::new(Norm::Linf, -1.0).run(&lin, &x, &y, 0).is_err());
    assert!(
        Pgd::new(Norm::Linf, 0.1)
            .run(&lin, &x, &[0, 1, 5, 0], 0)
            .is_err(),
        "label out of range"
    );
    assert!(
        Pgd::new(Norm::Linf, 0.1).run(&lin, &x, &y[..3], 0).is_err(),
        "label count"
    );
    let bad = images(4, [1, 4, 4], 0.0, 1.0, 1);
    assert!(
        Square::new(Norm::L2, 0.1).run(&lin, &bad, &y, 0).is_err(),
        "shape mismatch"
    );
    assert!(DeepFool::new(Norm::L2).run(&lin, &bad, &y, 0).is_err());
    assert!(
        CarliniWagnerL2::fixed_c(-1.0, 10)
            .run(&lin, &x, &y, 0)
            .is_err()
    );
    assert!("L3".parse::<Norm>().is_err());
    assert_eq!("linf".parse::<Norm>().unwrap(), Norm::Linf);
    assert!(
        Pgd::new(Norm::Linf, 0.1)
            .attack(&lin, &x, &y, Some(&[0, 1]), &[0, 1, 2, 3], 0)
            .is_err(),
        "targets"
    );
    assert!(
        ApgdT::new(Norm::Linf, 0.1).run(&lin, &x, &y, 0).is_err(),
        "APGD-T needs 4 classes"
    );
    assert!(
        AutoAttack::standard(Norm::Linf, 0.1)
            .run(&lin, &x, &y, 0)
            .is_err(),
        "AA standard needs 4 classes"
    );
}

#[test]
fn targeted_pgd_reaches_the_target_and_predicted_labels_mode_works() {
    let lin = Linear::random(10, SHAPE, 5);
    let x = images(10, SHAPE, 0.3, 0.7, 3);
    let y = predict(&lin, &x);
    let t: Vec<usize> = y.iter().map(|&l| (l + 1) % 10).collect();
    let pgd = Pgd {
        iters: 50,
        loss: experiments::attacks::Objective::Margin,
        ..Pgd::new(Norm::Linf, 0.3)
    };
    let res = pgd
        .attack(&lin, &x, &y, Some(&t), &(0..10).collect::<Vec<u64>>(), 0)
        .unwrap();
    let pred = predict(&lin, &res.x_adv);
    for i in 0..10 {
        assert!(res.success[i]);
        assert_eq!(pred[i], t[i]);
    }
    // Paper mode: predicted labels, no random start, no box; labels given are ignored for the attack.
    let wrong: Vec<usize> = y.iter().map(|&l| (l + 3) % 10).collect();
    let res = Pgd::paper(Norm::Linf, 0.3)
        .run(&lin, &x, &wrong, 0)
        .unwrap();
    assert_eq!(res.labels, y);
    assert!(res.success.iter().all(|&s| s));
}

#[test]
fn fab_projection_is_exact_and_fab_t_finds_the_minimal_linear_perturbation() {
    use experiments::attacks::fab::project_hyperplane_box;
    use ndarray::arr1;
    let chk = |got: ndarray::Array1<f32>, want: [f32; 3]| {
        for j in 0..3 {
            assert!((got[j] - want[j]).abs() < 1e-5, "{got:?} vs {want:?}");
        }
    };
    let (p, w) = (arr1(&[0.5f32, 0.5, 0.5]), arr1(&[1.0f32, 2.0, -2.0]));
    // box inactive: L2 d = c·w/‖w‖² ; L∞ d = c/‖w‖₁·sign(w)
    chk(
        project_hyperplane_box(Norm::L2, p.view(), w.view(), 0.9, true),
        [0.1, 0.2, -0.2],
    );
    chk(
        project_hyperplane_box(Norm::Linf, p.view(), w.view(), 0.9, true),
        [0.18, 0.18, -0.18],
    );
    chk(
        project_hyperplane_box(Norm::Linf, p.view(), w.view(), -0.9, true),
        [-0.18, -0.18, 0.18],
    );
    // box active on the first coordinate (room 0.05): both give [0.05, 0.25, 0]
    let (p, w) = (arr1(&[0.95f32, 0.5, 0.5]), arr1(&[1.0f32, 1.0, 0.0]));
    chk(
        project_hyperplane_box(Norm::L2, p.view(), w.view(), 0.3, true),
        [0.05, 0.25, 0.0],
    );
    chk(
        project_hyperplane_box(Norm::Linf, p.view(), w.view(), 0.3, true),
        [0.05, 0.25, 0.0],
    );
    // without the box the first coordinate is free again
    chk(
        project_hyperplane_box(Norm::L2, p.view(), w.view(), 0.3, false),
        [0.15, 0.15, 0.0],
    );

    let (lin, v, c) = binary();
    let x = images(12, SHAPE, 0.3, 0.7, 7);
    let (m, y) = binary_margins(&v, c, &x);
    for (norm, dual) in [(Norm::L2, l2(&v)), (Norm::Linf, l1(&v))] {
        let fab = FabT {
            n_iter: 20,
            ..FabT::new(norm, 10.0)
        };
        let res = fab.run(&lin, &x, &y, 0).unwrap();
        for i in 0..y.len() {
            assert!(res.success[i], "{norm} sample {i}");
            let ratio = res.norms[i] / (m[i] / dual);
            assert!(
                (0.999..1.02).contains(&ratio),
                "{norm} sample {i}: ratio {ratio}"
            );
        }
        // with ε below every point's distance nothing counts
        let min_d = m.iter().cloned().fold(f32::INFINITY, f32::min) / dual;
        let res = FabT {
            n_iter: 20,
            ..FabT::new(norm, 0.9 * min_d)
        }
        .run(&lin, &x, &y, 0)
        .unwrap();
        assert!(res.success.iter().all(|&s| !s));
    }
}

#[test]
fn attacks_run_on_an_ep_classifier() {
    use experiments::classifier::{EpClassifier, Normalize};
    let spec = ep::ModelSpec {
        input: [1, 6, 6],
        conv: vec![],
        fc: vec![16, 4],
        act: sim::Act::MyHardSig,
        softmax: false,
        loss: ep::Loss::Mse,
        t1: 20,
        t2: 6,
        input_norm: None,
    };
    let net = ep::EpNet::init(&sim::Cpu, spec, &Stream::new(3, "init"), None).unwrap();
    let clf = EpClassifier {
        be: sim::Cpu,
        net,
        norm: Normalize {
            mean: vec![0.5],
            std: vec![0.25],
        },
        t_predict: 20,
        t_attack: 20,
        settle: ep::Settle::default(),
        image_steps: Default::default(),
    };
    let x = images(6, [1, 6, 6], 0.0, 1.0, 2);
    let y = predict(&clf, &x);
    // The input gradient the attacks use agrees with a finite difference of the loss along it.
    let loss = |z: &Tensor| cross_entropy(z, &y);
    let (_, g) = eot_gradient(&clf, &x, &loss, 1).unwrap();
    let gn = g.iter().map(|a| a * a).sum::<f32>().sqrt();
    assert!(gn > 0.0, "zero input gradient");
    let h = 1e-3 / gn;
    let ce = |t: &Tensor| -> f64 {
        cross_entropy(&clf.logits(t).unwrap(), &y)
            .unwrap()
            .0
            .iter()
            .map(|&v| v as f64)
            .sum()
    };
    let fd = (ce(&(&x + &(&g * h))) - ce(&(&x - &(&g * h)))) / (2.0 * h as f64);
    assert!(
        (fd - (gn as f64).powi(2)).abs() < 0.05 * (gn as f64).powi(2),
        "fd {fd} vs |g|² {}",
        gn * gn
    );
    // APGD runs through the EP dynamics: bounded, boxed, verified, counted. (An untrained EP net
    // saturates its outputs at 0, so "every point falls at large ε" does not hold for it.)
    let eps = 0.1;
    let res = Apgd {
        n_iter: 10,
        ..Apgd::new(Norm::Linf, eps, ApgdLoss::Ce)
    }
    .run(&clf, &x, &y, 0)
    .unwrap();
    let pred = predict(&clf, &res.x_adv);
    for i in 0..6 {
        assert!(res.norms[i] <= eps * (1.0 + 1e-5));
        assert_eq!(res.success[i], pred[i] != y[i]);
    }
    assert!(rows(&res.x_adv).iter().all(|&a| (0.0..=1.0).contains(&a)));
    // one restart: (n_iter + 1) gradients per clean-correct point
    assert_eq!(res.grads, 6 * 11);
}
