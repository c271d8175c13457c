//! The seed paper's (AdvEP) PGD protocol against a hand-computed trace, and T_attack ≠ T_predict.

use experiments::attacks::{Attack, Norm, Pgd};
use experiments::classifier::{Classifier, LossFn};
use sim::Tensor;

/// Two classes on a 1x1x2 image: z₀ = x_a − x_b − 0.5, z₁ = 0.
struct Lin;

impl Classifier for Lin {
    fn describe(&self) -> String {
        "linear".into()
    }
    fn num_classes(&self) -> usize {
        2
    }
    fn input_shape(&self) -> [usize; 3] {
        [1, 1, 2]
    }
    fn logits(&self, x: &Tensor) -> anyhow::Result<Tensor> {
        let n = x.shape()[0];
        let v: Vec<f32> = (0..n)
            .flat_map(|i| [x[[i, 0, 0, 0]] - x[[i, 0, 0, 1]] - 0.5, 0.0])
            .collect();
        Ok(sim::tensor(&[n, 2], v)?)
    }
    fn loss_grad(&self, x: &Tensor, loss: LossFn<'_>) -> anyhow::Result<(Tensor, Tensor)> {
        let z = self.logits(x)?;
        let (_, g) = loss(&z)?;
        let n = x.shape()[0];
        let mut dx = Tensor::zeros(x.raw_dim());
        for i in 0..n {
            dx[[i, 0, 0, 0]] = g[[i, 0]];
            dx[[i, 0, 0, 1]] = -g[[i, 0]];
        }
        Ok((z, dx))
    }
}

#[test]
fn advep_pgd_follows_the_hand_computed_trace() {
    // x₀ = (0.99, 0.6): z₀ = −0.11 < 0, so the model predicts class 1 while the true label is 0.
    // The paper's PGD attacks the *predicted* label 1: d CE(z, 1)/dx = p₀ (1, −1), so each L∞ step
    // adds α (+1, −1) with α = 2.5 ε / 20 = 0.025 for ε = 0.2, with no random start and no [0, 1] box:
    //   x₁ = (1.015, 0.575)  (x_a leaves the box), z₀ = −0.06: not fooled;
    //   x₂ = (1.040, 0.550), z₀ = −0.01: not fooled, highest loss → returned.
    let x = sim::tensor(&[1, 1, 1, 2], vec![0.99, 0.6]).unwrap();
    let mut pgd = Pgd::paper(Norm::Linf, 0.2);
    pgd.iters = 2;
    let r = pgd.run(&Lin, &x, &[0], 7).unwrap();
    let got = [r.x_adv[[0, 0, 0, 0]], r.x_adv[[0, 0, 0, 1]]];
    assert!(
        (got[0] - 1.04).abs() < 1e-6 && (got[1] - 0.55).abs() < 1e-6,
        "{got:?}"
    );
    assert_eq!(
        r.labels,
        vec![1],
        "the paper's PGD attacks the predicted label"
    );
    assert!(!r.success[0]);
    // The standard protocol attacks the true label 0, which the model already gets wrong: the point
    // counts as broken at once and is returned unchanged.
    let mut std_pgd = Pgd::new(Norm::Linf, 0.2);
    std_pgd.iters = 2;
    let r = std_pgd.run(&Lin, &x, &[0], 7).unwrap();
    assert!(r.success[0]);
    assert_eq!(r.x_adv, x);
    // With label 1 the standard protocol keeps to the [0, 1] box: x_a stops at 1.
    let r = std_pgd.run(&Lin, &x, &[1], 7).unwrap();
    assert!(r.x_adv[[0, 0, 0, 0]] <= 1.0, "{:?}", r.x_adv);
}

/// A 16-8-3 EP-MLP (seed 1, weights ×3, so that its dynamics take a while to settle) and the
/// classifier of it with these steps and settle (pixels fed as they are).
fn mlp_classifier(
    t_predict: usize,
    t_attack: usize,
    settle: ep::Settle,
) -> (
    ep::EpNet<sim::Cpu>,
    experiments::classifier::EpClassifier<sim::Cpu>,
) {
    use experiments::classifier::{EpClassifier, Normalize};
    let spec = ep::ModelSpec {
        input: [1, 4, 4],
        conv: vec![],
        fc: vec![8, 3],
        act: sim::Act::MySigmoid,
        softmax: false,
        loss: ep::Loss::Mse,
        t1: t_predict,
        t2: 3,
        input_norm: None,
    };
    let net = ep::EpNet::init(&sim::Cpu, spec, &sim::Stream::new(1, "init"), Some(3.0)).unwrap();
    let clf = EpClassifier {
        be: sim::Cpu,
        net: net.clone(),
        norm: Normalize {
            mean: vec![0.0],
            std: vec![1.0],
        },
        t_predict,
        t_attack,
        settle,
        image_steps: Default::default(),
    };
    (net, clf)
}

#[test]
fn t_attack_and_t_predict_are_honoured() {
    let be = sim::Cpu;
    let (net, clf) = mlp_classifier(10, 3, ep::Settle::default());
    let x = sim::gradcheck::test_tensor(&[2, 1, 4, 4], 2, 1.0).mapv(|v| v.abs().min(1.0));
    let at = |t: usize| {
        net.logits(&be, &net.free_phase(&be, &x, t).unwrap())
            .unwrap()
    };
    assert_eq!(clf.logits(&x).unwrap(), at(10));
    let zero_loss = |z: &Tensor| Ok((vec![0.0; z.shape()[0]], Tensor::zeros(z.raw_dim())));
    let (z, _) = clf.loss_grad(&x, &zero_loss).unwrap();
    assert_eq!(z, at(3), "the gradient pass must run T_attack steps");
    assert_ne!(
        at(3),
        at(10),
        "the test needs dynamics that have not settled by step 3"
    );
}

/// Predictions settled to a tolerance (standard protocol, T_attack = T_predict): each image's
/// input gradient is BPTT through the steps its own prediction took, image by image equal to that
/// image alone differentiated through its step count; the images stop at different steps, and
/// the gradient differs from BPTT through the cap.
#[test]
fn a_settled_prediction_is_differentiated_through_its_own_steps() {
    use ep::{Dynamics, Settler};
    let be = sim::Cpu;
    let settle = ep::Settle::plain_tol(1e-3);
    let (net, clf) = mlp_classifier(30, 30, settle);
    let n = 6;
    let mut x = sim::gradcheck::test_tensor(&[n, 1, 4, 4], 2, 1.0).mapv(|v| v.abs().min(1.0));
    for (i, mut row) in x.outer_iter_mut().enumerate() {
        row.mapv_inplace(|v| v * [0.05f32, 1.0, 0.3, 0.7, 0.1, 0.5][i]);
    }
    // A loss linear in the logits: d loss / d logits = w per row.
    let w = sim::gradcheck::test_tensor(&[n, 3], 5, 1.0);
    let wl = w.clone();
    let lin = move |z: &Tensor| -> anyhow::Result<(Vec<f32>, Tensor)> {
        Ok((vec![0.0; z.shape()[0]], wl.clone()))
    };
    let (_, dx) = clf.loss_grad(&x, &lin).unwrap();
    let mut steps = vec![];
    for i in 0..n {
        let xi = x.select(ndarray::Axis(0), &[i]);
        let k = net
            .free_phase_with(&be, &xi, 30, &settle)
            .unwrap()
            .per_sample_steps()
            .next()
            .unwrap();
        steps.push(k);
        let wi = w.select(ndarray::Axis(0), &[i]);
        let b = net
            .free_phase_bptt(&be, &xi, k, 0, false, |_| Ok((0.0, wi.clone())))
            .unwrap();
        let got = dx.select(ndarray::Axis(0), &[i]);
        let d = got
            .iter()
            .zip(b.dx.iter())
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            d <= 1e-5,
            "image {i} (stops at {k}): {d:e} from its own BPTT"
        );
    }
    let mut distinct = steps.clone();
    distinct.sort();
    distinct.dedup();
    assert!(
        distinct.len() >= 2,
        "one stop step for all images: {steps:?}"
    );
    let cap = net
        .free_phase_bptt(&be, &x, 30, 0, false, |_| Ok((0.0, w.clone())))
        .unwrap();
    let d = dx
        .iter()
        .zip(cap.dx.iter())
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(d > 1e-4, "the gradient equals BPTT through the cap ({d:e})");
}
