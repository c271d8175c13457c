//! Parity between two backends: the same EP network (one set of host parameters, built on each
//! backend with `EpNet::from_host`) and the same input give the same free-phase states (≤ 1e-4
//! absolute), logits, EP gradients and optimizer update of one training step, and BPTT gradients
//! (≤ 1e-4 relative to the largest entry of each tensor), on three networks: an EP-MLP, the
//! quick-start Fashion-MNIST EP-CNN (`configs/quickstart-epcnn.toml`, x[8,1,28,28]) and the
//! paper's CIFAR-10 EP-CNN (`ModelSpec::cifar10_reference`, 128-256-512-512, batch 2), each for a
//! few steps.
//!
//! The backends may sum in different orders, so results differ by rounding; tolerances are set
//! far above that (1e-6-ish) and far below what a wrong op gives. Max-pooling makes the dynamics
//! discontinuous where two entries of a window nearly tie; the fixtures keep inputs and
//! parameters on coarse dyadic grids so that the first synapse's read of the input (the largest
//! pooling) is exact on any backend, and run few steps, so that such ties stay improbable.

use sim::gradcheck::test_tensor;
use sim::{Act, Backend, Stream, Tensor};

use super::dynamics::ce_loss;
use super::{Must, down, up};
use crate::dynamics::Dynamics;
use crate::model::{EpNet, State, Target};
use crate::optim::{OptimKind, Optimizer};
use crate::spec::{ConvLayer, Loss, ModelSpec, Pool};
use crate::train::{EpConfig, train_batch};

/// Absolute tolerance on states.
const STATE_TOL: f64 = 1e-4;
/// Relative tolerance (to the largest entry) on logits, gradients and updates.
const REL_TOL: f64 = 1e-4;

/// A parity fixture: a network, a batch, and how many steps each phase runs.
struct Fixture {
    name: &'static str,
    spec: ModelSpec,
    batch: usize,
    /// Free-phase steps (and BPTT steps).
    steps: usize,
    /// Nudged-phase steps.
    t2: usize,
    /// Nudging strength.
    beta: f32,
}

/// `v` rounded to a multiple of 2⁻ᵇ.
fn grid(t: &Tensor, b: i32) -> Tensor {
    let s = 2f32.powi(b);
    t.mapv(|v| (v * s).round() / s)
}

/// Run every parity check of `fx` on backend `b` against backend `a`.
fn check<A: Backend, B: Backend>(a: &A, b: &B, fx: Fixture) {
    let name = fx.name;
    let spec = ModelSpec {
        t1: fx.steps,
        t2: fx.t2,
        ..fx.spec
    };
    // Host parameters on coarse grids (2⁻¹⁰ for weights and biases, 2⁻⁴ for the input, |x| ≤ 4):
    // every product of the first synapse is a multiple of 2⁻¹⁴ below 1 and its sums (at most 784
    // terms, below 2⁷) are exact in f32 in any order, so the input read and its pooling switches
    // agree bit for bit between backends. The biases of the conv synapses after the first are
    // made ≤ 0: from the zero state, step 1 sets those layers to σ(b), constant over the image, so
    // at step 2 every interior window of the next pooling is an exact tie, which the backends may
    // break differently (a Winograd convolution rounds the four outputs of a tile differently);
    // with σ(b) = 0 the value routed through those switches is zero and the tie is harmless.
    let init = EpNet::init(a, spec.clone(), &Stream::new(11, name), None).must();
    let (ws, bs) = init.to_host(a).must();
    let ws: Vec<Tensor> = ws.iter().map(|w| grid(w, 10)).collect();
    let bs: Vec<Tensor> = bs
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let b = grid(b, 10);
            if i > 0 && i < spec.conv.len() {
                b.mapv(|v| -v.abs())
            } else {
                b
            }
        })
        .collect();
    let na = EpNet::from_host(a, spec.clone(), &ws, &bs).must();
    let nb = EpNet::from_host(b, spec.clone(), &ws, &bs).must();
    let [c, h, w] = spec.input;
    let n = fx.batch;
    let xh = grid(
        &test_tensor(&[n, c, h, w], 12, 1.0).mapv(|v| v.clamp(-4.0, 4.0)),
        4,
    );
    let (xa, xb) = (up(a, &xh), up(b, &xh));
    let labels: Vec<usize> = (0..n).map(|i| (3 * i + 1) % spec.n_classes()).collect();
    let (ta, tb) = (
        Target::new(a, &labels, spec.n_classes()).must(),
        Target::new(b, &labels, spec.n_classes()).must(),
    );
    let states = |what: &str, sa: &State<A>, sb: &State<B>| {
        for (k, (la, lb)) in sa.layers.iter().zip(&sb.layers).enumerate() {
            let (la, lb) = (down(a, la), down(b, lb));
            // The fixture exercises the neurons: some inside the linear range of σ.
            assert!(
                la.iter().any(|&v| v > 0.0 && v < 1.0),
                "{name}: layer {} of the {what} is saturated or silent on {}",
                k + 1,
                a.name()
            );
            let err = max_abs_diff(&la, &lb);
            assert!(
                err <= STATE_TOL,
                "{name}: {what}, layer {}: {} differs from {} by {err:.2e} (max abs)",
                k + 1,
                b.name(),
                a.name()
            );
        }
    };

    // Free-phase states after a few steps, and the logits.
    let sa = na.free_phase(a, &xa, fx.steps).must();
    let sb = nb.free_phase(b, &xb, fx.steps).must();
    states(&format!("free phase after {} steps", fx.steps), &sa, &sb);
    let (ga, gb) = (
        down(a, &na.logits(a, &sa).must()),
        down(b, &nb.logits(b, &sb).must()),
    );
    assert_rel(name, "logits", &gb, &ga, 1.0, a, b);

    // One EP training step: the nudged phases ±β from the free state, the symmetric estimate
    // (∂Φ/∂θ(s⁺) − ∂Φ/∂θ(s⁻)) / 2βN, and the optimizer's update. The estimate is a difference of
    // two nearly equal sums, so its error is measured against the size of those sums: a backend
    // that rounds each ∂Φ/∂θ to 1e-7 of its size moves the difference by up to ~1e-7 of that
    // size, which is ~1e-3 of the difference itself after a few nudged steps.
    let beta = fx.beta;
    let pa = na
        .relax(a, &xa, sa.clone(), fx.t2, Some((beta, &ta)))
        .must();
    let ma = na
        .relax(a, &xa, sa.clone(), fx.t2, Some((-beta, &ta)))
        .must();
    let pb = nb
        .relax(b, &xb, sb.clone(), fx.t2, Some((beta, &tb)))
        .must();
    let mb = nb
        .relax(b, &xb, sb.clone(), fx.t2, Some((-beta, &tb)))
        .must();
    states(&format!("+β phase after {} steps", fx.t2), &pa, &pb);
    states(&format!("−β phase after {} steps", fx.t2), &ma, &mb);
    let eg_a = na.ep_grads(a, &xa, (&pa, beta), (&ma, -beta), &ta).must();
    let eg_b = nb.ep_grads(b, &xb, (&pb, beta), (&mb, -beta), &tb).must();
    let terms = na.phi_param_grads(a, &xa, &pa, beta, Some(&ta)).must();
    let term_scale = |t: &A::Tensor| max_abs(&down(a, t)) / (2.0 * beta as f64 * n as f64);
    let mut scales = Vec::new();
    for (i, (((wa, ba), (wb, bb)), (tw, tb))) in eg_a.iter().zip(&eg_b).zip(&terms).enumerate() {
        let (wa, wb) = (down(a, wa), down(b, wb));
        assert!(
            wa.iter().any(|&v| v != 0.0),
            "{name}: the EP gradient of synapse {i} is zero on {} (too few nudged steps?)",
            a.name()
        );
        let (sw, sb) = (term_scale(tw), term_scale(tb));
        assert_rel(
            name,
            &format!("EP gradient of synapses.{i}.weight"),
            &wb,
            &wa,
            sw,
            a,
            b,
        );
        let (ba, bb) = (down(a, ba), down(b, bb));
        assert_rel(
            name,
            &format!("EP gradient of synapses.{i}.bias"),
            &bb,
            &ba,
            sb,
            a,
            b,
        );
        scales.push((sw, sb));
    }
    let ns = spec.n_synapses();
    let lr = 0.05;
    let cfg = EpConfig {
        beta,
        symmetric: true,
        random_sign: true,
        settle: Default::default(),
    };
    let sign = Stream::new(13, "parity.sign");
    let opt = || {
        Optimizer::new(
            OptimKind::Sgd { momentum: 0.9 },
            vec![lr; ns],
            vec![1e-4; ns],
            2,
        )
        .must()
    };
    let (mut ua, mut ub) = (na.clone(), nb.clone());
    // One batch: a second would compare gradients taken at already-different weights (the
    // buffers' reuse is the op suite's `optim` case).
    let (mut oa, mut ob) = (opt().to_backend(a).must(), opt().to_backend(b).must());
    train_batch(a, &mut ua, &mut oa, &cfg, &xa, &labels, &sign, 0).must();
    train_batch(b, &mut ub, &mut ob, &cfg, &xb, &labels, &sign, 0).must();
    let (uwa, uba) = ua.to_host(a).must();
    let (uwb, ubb) = ub.to_host(b).must();
    for (i, &(sw, sb)) in scales.iter().enumerate() {
        for (what, new_a, new_b, old, scale) in [
            ("weight", &uwa[i], &uwb[i], &ws[i], sw),
            ("bias", &uba[i], &ubb[i], &bs[i], sb),
        ] {
            let (da, db) = (new_a - old, new_b - old);
            let what = format!("update of synapses.{i}.{what}");
            assert_rel(name, &what, &db, &da, lr as f64 * scale, a, b);
        }
    }

    // BPTT through the free phase: loss, d/dx and d/dθ.
    let ra = na
        .free_phase_bptt(a, &xa, fx.steps, 0, true, ce_loss(a, &labels))
        .must();
    let rb = nb
        .free_phase_bptt(b, &xb, fx.steps, 0, true, ce_loss(b, &labels))
        .must();
    let loss_err = ((ra.loss - rb.loss) as f64).abs() / (ra.loss as f64).abs().max(1e-30);
    assert!(
        loss_err <= REL_TOL,
        "{name}: BPTT loss {} on {} vs {} on {}",
        rb.loss,
        b.name(),
        ra.loss,
        a.name()
    );
    let dxa = down(a, &ra.dx);
    assert!(
        dxa.iter().any(|&v| v != 0.0),
        "{name}: the loss after {} steps does not depend on x (too few steps?)",
        fx.steps
    );
    assert_rel(name, "BPTT d/dx", &down(b, &rb.dx), &dxa, 0.0, a, b);
    let (pa, pb) = (
        ra.dparams.expect("parameter gradients"),
        rb.dparams.expect("parameter gradients"),
    );
    for (i, ((wa, ba), (wb, bb))) in pa.iter().zip(&pb).enumerate() {
        let what = format!("BPTT d/d synapses.{i}.weight");
        assert_rel(name, &what, &down(b, wb), &down(a, wa), 0.0, a, b);
        let what = format!("BPTT d/d synapses.{i}.bias");
        assert_rel(name, &what, &down(b, bb), &down(a, ba), 0.0, a, b);
    }
}

fn max_abs(t: &Tensor) -> f64 {
    t.iter().fold(0f64, |m, &v| m.max((v as f64).abs()))
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b.iter())
        .fold(0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()))
}

/// `got` (from backend `b`) within [`REL_TOL`] of `want` (from backend `a`), relative to the
/// larger of the largest |want| and `scale`; exactly equal when both are zero.
#[track_caller]
fn assert_rel<A: Backend, B: Backend>(
    name: &str,
    what: &str,
    got: &Tensor,
    want: &Tensor,
    scale: f64,
    a: &A,
    b: &B,
) {
    assert_eq!(got.shape(), want.shape(), "{name}: {what}: shapes");
    assert!(
        got.iter().all(|v| v.is_finite()),
        "{name}: {what}: non-finite values on {}",
        b.name()
    );
    let scale = max_abs(want).max(scale);
    let err = max_abs_diff(got, want);
    assert!(
        if scale == 0.0 {
            got == want
        } else {
            err <= REL_TOL * scale
        },
        "{name}: {what}: {} differs from {} by {:.2e} of the reference scale {scale:.3e}",
        b.name(),
        a.name(),
        err / scale
    );
}

/// An EP-MLP 784-64-32-10 with a softmax readout, 8 free and 4 nudged steps on a batch of 8.
pub fn parity_ep_mlp<A: Backend, B: Backend>(a: &A, b: &B) {
    check(
        a,
        b,
        Fixture {
            name: "EP-MLP 784-64-32-10",
            spec: ModelSpec {
                input: [1, 28, 28],
                conv: vec![],
                fc: vec![64, 32, 10],
                act: Act::MyHardSig,
                softmax: true,
                loss: Loss::CrossEntropy,
                t1: 0,
                t2: 0,
                input_norm: None,
            },
            batch: 8,
            steps: 8,
            t2: 4,
            beta: 0.5,
        },
    );
}

/// The quick-start Fashion-MNIST EP-CNN (`configs/quickstart-epcnn.toml`: conv 16 k5, conv 32
/// k5, max pools, fc 10 softmax readout), 5 free and 3 nudged steps on x[8,1,28,28].
pub fn parity_fmnist_ep_cnn<A: Backend, B: Backend>(a: &A, b: &B) {
    let conv = |channels| ConvLayer {
        channels,
        kernel: 5,
        stride: 1,
        padding: 0,
        pool: Pool::Max,
    };
    check(
        a,
        b,
        Fixture {
            name: "quick-start Fashion-MNIST EP-CNN 16-32",
            spec: ModelSpec {
                input: [1, 28, 28],
                conv: vec![conv(16), conv(32)],
                fc: vec![10],
                act: Act::MyHardSig,
                softmax: true,
                loss: Loss::CrossEntropy,
                t1: 0,
                t2: 0,
                input_norm: None,
            },
            batch: 8,
            steps: 5,
            t2: 3,
            beta: 0.5,
        },
    );
}

/// The paper's CIFAR-10 EP-CNN (128-256-512-512 3×3 convs, four max pools, softmax readout),
/// 6 free steps (the input reaches the readout at step 4) and 4 nudged steps (the nudge reaches
/// the first layer at step 4), on a batch of 2.
pub fn parity_cifar10_paper_ep_cnn<A: Backend, B: Backend>(a: &A, b: &B) {
    check(
        a,
        b,
        Fixture {
            name: "CIFAR-10 paper EP-CNN 128-256-512-512",
            spec: ModelSpec {
                input_norm: None,
                ..ModelSpec::cifar10_reference()
            },
            batch: 2,
            steps: 6,
            t2: 4,
            beta: 1.0,
        },
    );
}
