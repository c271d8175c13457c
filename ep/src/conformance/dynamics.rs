//! EP dynamics against independent computations, on one backend: the equations of motion are the
//! gradient of Φ, ∂Φ/∂θ matches finite differences of Φ, BPTT matches finite differences of the
//! unrolled loss and the tape's reverse mode through the same steps, the GDU property (symmetric
//! EP ≈ BPTT), and divergence errors.
//!
//! Finite differences use h = 1e-3: Φ is piecewise linear through max pooling, and a larger step
//! crosses pooling switches (slope changes of O(1)); the 1e-2 relative tolerance sits above the
//! f32 noise floor of Φ (its terms are accumulated in f64) and far below the O(1) errors a wrong
//! formula gives.

// Several parallel arrays (weights, states, expected values) are indexed together.
#![allow(clippy::needless_range_loop)]

use sim::gradcheck::{check_gradient, test_tensor};
use sim::{Act, Backend, Stream, Tensor};

use super::{Must, down, up};
use crate::dynamics::Dynamics;
use crate::model::{EpNet, State, Target};
use crate::spec::{ConvLayer, Loss, ModelSpec, Pool};

/// A two-conv EP-CNN on 2×8×8 inputs (conv 4 k3 p1, conv 5 k3 p0, fc 6-3) with the given pooling,
/// activation, readout and loss.
pub fn small_cnn(pool: Pool, act: Act, softmax: bool, loss: Loss) -> ModelSpec {
    ModelSpec {
        input: [2, 8, 8],
        conv: vec![
            ConvLayer {
                channels: 4,
                kernel: 3,
                stride: 1,
                padding: 1,
                pool,
            },
            ConvLayer {
                channels: 5,
                kernel: 3,
                stride: 1,
                padding: 0,
                pool,
            },
        ],
        fc: vec![6, 3],
        act,
        softmax,
        loss,
        t1: 12,
        t2: 6,
        input_norm: None,
    }
}

/// A state with every neuron in (0.1, 0.9), seeded.
fn random_state<B: Backend>(be: &B, net: &EpNet<B>, n: usize, seed: u64) -> State<B> {
    let layers = net
        .geom
        .layer_shapes
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let mut shape = vec![n];
            shape.extend_from_slice(s);
            up(
                be,
                &test_tensor(&shape, seed + k as u64, 1.0).mapv(|v| 0.5 + 0.4 * v.tanh()),
            )
        })
        .collect();
    State { layers }
}

fn specs() -> Vec<ModelSpec> {
    vec![
        small_cnn(Pool::Max, Act::MyHardSig, true, Loss::CrossEntropy),
        small_cnn(Pool::Avg, Act::MySigmoid, false, Loss::Mse),
        small_cnn(Pool::Identity, Act::HardSigmoid, false, Loss::CrossEntropy),
        ModelSpec {
            input: [1, 4, 4],
            conv: vec![],
            fc: vec![7, 5, 3],
            act: Act::MyHardSig,
            softmax: false,
            loss: Loss::Mse,
            t1: 10,
            t2: 4,
            input_norm: None,
        },
    ]
}

fn input<B: Backend>(be: &B, spec: &ModelSpec, n: usize, seed: u64) -> (Tensor, B::Tensor) {
    let x = test_tensor(&[n, spec.input[0], spec.input[1], spec.input[2]], seed, 1.0);
    let d = up(be, &x);
    (x, d)
}

/// The pre-activation of every layer is ∂Φ/∂s_k, the nudge included.
pub fn equations_of_motion_are_the_gradient_of_phi<B: Backend>(be: &B) {
    for (si, spec) in specs().into_iter().enumerate() {
        let net = EpNet::init(be, spec.clone(), &Stream::new(si as u64, "init"), None).must();
        let (_, x) = input(be, &spec, 2, 50 + si as u64);
        let st = random_state(be, &net, 2, 60 + 10 * si as u64);
        let target = Target::new(be, &[1, 2], 3).must();
        for beta in [0.0f32, 0.7] {
            let nudge = Some((beta, &target));
            // a_k from one step with the identity activation = the raw pre-activations.
            let mut lin = net.clone();
            lin.spec.act = Act::Identity;
            let next = lin.step(be, &x, &st, nudge).must();
            for k in 0..st.layers.len() {
                let f = |t: &Tensor| {
                    let mut s2 = st.clone();
                    s2.layers[k] = up(be, t);
                    net.phi(be, &x, &s2, nudge).must()
                };
                let r = check_gradient(
                    f,
                    &down(be, &st.layers[k]),
                    &down(be, &next.layers[k]),
                    1e-3,
                    60,
                );
                assert!(r.ok(1e-2), "spec {si} β={beta} layer {k}: {r:?}");
            }
        }
    }
}

/// ∂Φ/∂θ (the EP update's ingredient) matches finite differences of Φ in the parameters.
pub fn phi_param_grads_match_finite_differences<B: Backend>(be: &B) {
    for (si, spec) in specs().into_iter().enumerate() {
        let net = EpNet::init(be, spec.clone(), &Stream::new(si as u64, "init"), None).must();
        let (_, x) = input(be, &spec, 2, 70 + si as u64);
        let st = random_state(be, &net, 2, 80 + 10 * si as u64);
        let target = Target::new(be, &[0, 2], 3).must();
        let beta = 0.5;
        let grads = net.phi_param_grads(be, &x, &st, beta, Some(&target)).must();
        for (i, (gw, gb)) in grads.iter().enumerate() {
            let fw = |t: &Tensor| {
                let mut m = net.clone();
                m.weights[i] = up(be, t);
                m.phi(be, &x, &st, Some((beta, &target))).must()
            };
            let r = check_gradient(fw, &down(be, &net.weights[i]), &down(be, gw), 1e-3, 40);
            assert!(r.ok(1e-2), "spec {si} weight {i}: {r:?}");
            let fb = |t: &Tensor| {
                let mut m = net.clone();
                m.biases[i] = up(be, t);
                m.phi(be, &x, &st, Some((beta, &target))).must()
            };
            let r = check_gradient(fb, &down(be, &net.biases[i]), &down(be, gb), 1e-3, 40);
            assert!(r.ok(1e-2), "spec {si} bias {i}: {r:?}");
        }
    }
}

/// The mean cross-entropy of the logits and its gradient, on the backend.
pub fn ce_loss<'a, B: Backend>(
    be: &'a B,
    labels: &'a [usize],
) -> impl FnMut(&B::Tensor) -> sim::Result<(f32, B::Tensor)> + 'a {
    move |logits: &B::Tensor| be.cross_entropy(logits, labels)
}

fn unrolled_loss<B: Backend>(
    be: &B,
    net: &EpNet<B>,
    x: &B::Tensor,
    steps: usize,
    labels: &[usize],
) -> f64 {
    let st = net.free_phase(be, x, steps).must();
    be.cross_entropy(&net.logits(be, &st).must(), labels)
        .must()
        .0 as f64
}

/// d loss / d x and d loss / d θ through T unrolled steps match finite differences, with several
/// checkpoint spacings giving identical results.
pub fn bptt_matches_finite_differences<B: Backend>(be: &B) {
    let spec = ModelSpec {
        t1: 7,
        ..small_cnn(Pool::Max, Act::MySigmoid, true, Loss::CrossEntropy)
    };
    let net = EpNet::init(be, spec.clone(), &Stream::new(3, "init"), Some(2.0)).must();
    let (xh, x) = input(be, &spec, 2, 91);
    let labels = [2usize, 0];
    let b = net
        .free_phase_bptt(be, &x, 7, 0, true, ce_loss(be, &labels))
        .must();
    let dx = down(be, &b.dx);
    let r = check_gradient(
        |t: &Tensor| unrolled_loss(be, &net, &up(be, t), 7, &labels),
        &xh,
        &dx,
        1e-3,
        60,
    );
    assert!(r.ok(1e-2), "dx: {r:?}");
    let dp = b.dparams.as_ref().expect("parameter gradients");
    for i in 0..net.weights.len() {
        let f = |t: &Tensor| {
            let mut m = net.clone();
            m.weights[i] = up(be, t);
            unrolled_loss(be, &m, &x, 7, &labels)
        };
        let r = check_gradient(f, &down(be, &net.weights[i]), &down(be, &dp[i].0), 1e-3, 30);
        assert!(r.ok(1e-2), "dW{i}: {r:?}");
        let f = |t: &Tensor| {
            let mut m = net.clone();
            m.biases[i] = up(be, t);
            unrolled_loss(be, &m, &x, 7, &labels)
        };
        let r = check_gradient(f, &down(be, &net.biases[i]), &down(be, &dp[i].1), 1e-3, 30);
        assert!(r.ok(1e-2), "db{i}: {r:?}");
    }
    for c in [1, 3, 7, 100] {
        let b2 = net
            .free_phase_bptt(be, &x, 7, c, true, ce_loss(be, &labels))
            .must();
        assert_eq!(down(be, &b2.dx), dx, "checkpoint spacing {c} changed dx");
    }
}

/// Cosine similarity in f64.
pub(crate) fn cosine(a: &Tensor, b: &Tensor) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b.iter()) {
        ab += x as f64 * y as f64;
        aa += x as f64 * x as f64;
        bb += y as f64 * y as f64;
    }
    ab / (aa.sqrt() * bb.sqrt()).max(1e-30)
}

/// GDU (Ernoult et al. 2019): with a converged free phase, the symmetric EP estimate with small β
/// matches the BPTT gradient of the loss (cosine ≥ 0.99 per layer), and better than vanilla EP
/// (whose estimate has an O(β) bias, against O(β²) for the symmetric one; β = 0.2 makes that
/// visible).
pub fn gdu_symmetric_ep_matches_bptt<B: Backend>(be: &B) {
    let spec = ModelSpec {
        t1: 60,
        t2: 40,
        ..small_cnn(Pool::Max, Act::MyHardSig, true, Loss::CrossEntropy)
    };
    let net = EpNet::init(be, spec.clone(), &Stream::new(5, "init"), None).must();
    let (_, x) = input(be, &spec, 4, 93);
    let labels = [0usize, 1, 2, 1];
    let target = Target::new(be, &labels, 3).must();
    let bptt = net
        .free_phase_bptt(be, &x, spec.t1, 0, true, ce_loss(be, &labels))
        .must();
    let bp = bptt.dparams.expect("parameter gradients");
    let free = net.free_phase(be, &x, spec.t1).must();
    let beta = 0.2;
    let plus = net
        .relax(be, &x, free.clone(), spec.t2, Some((beta, &target)))
        .must();
    let minus = net
        .relax(be, &x, free.clone(), spec.t2, Some((-beta, &target)))
        .must();
    let sym = net
        .ep_grads(be, &x, (&plus, beta), (&minus, -beta), &target)
        .must();
    let van = net
        .ep_grads(be, &x, (&free, 0.0), (&plus, beta), &target)
        .must();
    let mut report = String::new();
    let (mut sum_sym, mut sum_van) = (0.0, 0.0);
    for i in 0..bp.len() {
        let bpi = down(be, &bp[i].0);
        let cs = cosine(&down(be, &sym[i].0), &bpi);
        let cv = cosine(&down(be, &van[i].0), &bpi);
        sum_sym += cs;
        sum_van += cv;
        report += &format!("layer {i}: cos(sym, bptt) = {cs:.5}, cos(vanilla, bptt) = {cv:.5}\n");
        assert!(cs >= 0.99, "{report}");
        assert!(
            cs >= cv,
            "symmetric EP not closer to BPTT than vanilla EP:\n{report}"
        );
    }
    assert!(
        sum_sym >= sum_van,
        "symmetric not closer than vanilla:\n{report}"
    );
    eprintln!("{} {report}", be.name());
}

/// A NaN in the weights makes the free phase stop with an error naming the step and the layer.
pub fn divergence_names_step_and_layer<B: Backend>(be: &B) {
    let spec = small_cnn(Pool::Max, Act::MyHardSig, true, Loss::CrossEntropy);
    let mut net = EpNet::init(be, spec.clone(), &Stream::new(1, "init"), None).must();
    let mut b2 = down(be, &net.biases[2]);
    b2[[1]] = f32::NAN;
    net.biases[2] = up(be, &b2);
    let (_, x) = input(be, &spec, 2, 3);
    let e = match net.free_phase(be, &x, 5) {
        Ok(_) => panic!("a NaN bias gave a finite free phase on {}", be.name()),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("step 1") && e.contains("layer 3"), "{e}");
}

/// The same free phase written with the tape's generic reverse mode (forward reads, pooling with
/// switches, feedback convᵀ(Pᵀ(s)) and linear feedback as differentiable tape ops, T unrolled steps
/// from the zero state, softmax readout, cross-entropy), on the same backend: the loss and the
/// host gradients with respect to x and every weight and bias.
fn tape_unrolled_grads<B: Backend>(
    be: &B,
    net: &EpNet<B>,
    x: &B::Tensor,
    steps: usize,
    labels: &[usize],
) -> (f32, Tensor, Vec<(Tensor, Tensor)>) {
    use sim::tape::Tape;
    let spec = &net.spec;
    let t = Tape::new(be);
    let xv = t.leaf(x.clone());
    let ws: Vec<_> = net.weights.iter().map(|w| t.leaf(w.clone())).collect();
    let bs: Vec<_> = net.biases.iter().map(|b| t.leaf(b.clone())).collect();
    let n_batch = be.shape(x)[0];
    let n = net.geom.layer_shapes.len();
    let shape_of = |k: usize| {
        let mut s = vec![n_batch];
        s.extend_from_slice(&net.geom.layer_shapes[k]);
        s
    };
    let mut st: Vec<_> = (0..n)
        .map(|k| t.constant(be.zeros(&shape_of(k)).must()))
        .collect();
    let n_conv = spec.conv.len();
    for _ in 0..steps {
        // Forward reads of every synapse feeding a layer (with the pooling switches).
        let mut fwd = Vec::new();
        let mut idx = Vec::new();
        for i in 0..n {
            let inp = if i == 0 { xv } else { st[i - 1] };
            if i < n_conv {
                let c = &spec.conv[i];
                let p = sim::Conv2dParams::new(c.stride, c.padding);
                let z = t.conv2d(inp, ws[i], Some(bs[i]), p).must();
                match c.pool.params() {
                    Some(pp) => {
                        let (y, ix) = t.max_pool2d_indexed(z, pp).must();
                        fwd.push(y);
                        idx.push(Some(ix));
                    }
                    None => {
                        fwd.push(z);
                        idx.push(None);
                    }
                }
            } else {
                let s = t.shape(inp).must();
                let flat = t.reshape(inp, &[s[0], s[1..].iter().product()]).must();
                fwd.push(t.linear(flat, ws[i], Some(bs[i])).must());
                idx.push(None);
            }
        }
        let mut next = Vec::new();
        for k in 0..n {
            let mut a = fwd[k];
            if k + 1 < n {
                let i = k + 1;
                let in_shape = shape_of(k);
                let fb = if i < n_conv {
                    let c = &spec.conv[i];
                    let p = sim::Conv2dParams::new(c.stride, c.padding);
                    let u = match &idx[i] {
                        Some(ix) => t.max_unpool2d(st[i], ix, net.geom.conv_out_hw[i]).must(),
                        None => st[i],
                    };
                    t.conv2d_input_grad(u, ws[i], (in_shape[2], in_shape[3]), p)
                        .must()
                } else {
                    let g = t.linear_input_grad(st[i], ws[i]).must();
                    t.reshape(g, &in_shape).must()
                };
                a = t.add(a, fb).must();
            }
            next.push(t.map(a, spec.act).must());
        }
        st = next;
    }
    let r = net.weights.len() - 1;
    let s = t.shape(st[n - 1]).must();
    let flat = t
        .reshape(st[n - 1], &[s[0], s[1..].iter().product()])
        .must();
    let logits = t.linear(flat, ws[r], Some(bs[r])).must();
    let loss = t.cross_entropy(logits, labels).must();
    let l = t.scalar(loss).must();
    let g = t.backward(loss).must();
    let get = |v| down(be, g.get(v).expect("a gradient"));
    let dparams = ws
        .iter()
        .zip(&bs)
        .map(|(&w, &b)| (get(w), get(b)))
        .collect();
    (l, get(xv), dparams)
}

/// Largest |a − b| relative to the largest |b|.
pub(crate) fn rel_max_err(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let scale = b.iter().fold(0f64, |m, &v| m.max(v.abs() as f64));
    let err = a
        .iter()
        .zip(b.iter())
        .fold(0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()));
    err / scale.max(1e-30)
}

/// The hand-written BPTT adjoint equals the tape's reverse mode through the same T steps (input,
/// every weight and bias), on the max-pool CNN with softmax readout and on the MLP.
pub fn bptt_matches_the_tape<B: Backend>(be: &B) {
    for (name, spec, xshape) in [
        (
            "cnn",
            small_cnn(Pool::Max, Act::MySigmoid, true, Loss::CrossEntropy),
            vec![3, 2, 8, 8],
        ),
        (
            "mlp",
            ModelSpec {
                input: [1, 4, 4],
                conv: vec![],
                fc: vec![7, 5, 3],
                act: Act::MySigmoid,
                softmax: true,
                loss: Loss::CrossEntropy,
                t1: 9,
                t2: 3,
                input_norm: None,
            },
            vec![3, 1, 4, 4],
        ),
    ] {
        let net = EpNet::init(be, spec, &Stream::new(5, "init"), Some(2.0)).must();
        let x = up(be, &test_tensor(&xshape, 17, 1.0));
        let labels = [1usize, 2, 0];
        let steps = 9;
        let b = net
            .free_phase_bptt(be, &x, steps, 0, true, ce_loss(be, &labels))
            .must();
        let (loss, dx, dp) = tape_unrolled_grads(be, &net, &x, steps, &labels);
        assert!(
            (loss - b.loss).abs() <= 1e-5 * loss.abs().max(1.0),
            "{name}: loss {loss} vs {}",
            b.loss
        );
        let e = rel_max_err(&down(be, &b.dx), &dx);
        assert!(e < 1e-4, "{name}: dx differs from the tape by {e:.2e}");
        let hand = b.dparams.as_ref().expect("parameter gradients");
        for (i, ((w, bias), (tw, tb))) in hand.iter().zip(&dp).enumerate() {
            let e = rel_max_err(&down(be, w), tw);
            assert!(e < 1e-4, "{name}: dW{i} differs from the tape by {e:.2e}");
            let e = rel_max_err(&down(be, bias), tb);
            assert!(e < 1e-4, "{name}: db{i} differs from the tape by {e:.2e}");
        }
    }
}
