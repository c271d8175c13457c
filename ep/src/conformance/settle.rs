//! Settling ([`crate::settle`]) on one backend: plain iteration without a tolerance is `relax`
//! bit for bit; plain iteration with a tolerance and Anderson acceleration reach the fixed point
//! of a long plain run within 1e-4 (max abs), Anderson in fewer steps; the symmetric EP update at
//! the Anderson equilibria keeps the GDU property; gradients through a settle with a tolerance are
//! the equilibrium gradient (long BPTT, finite differences); a sample's settle does not depend on
//! its batch.

use sim::gradcheck::test_tensor;
use sim::{Act, Backend, Stream, Tensor};

use super::dynamics::{ce_loss, cosine, small_cnn};
use super::{Must, down, up};
use crate::dynamics::Dynamics;
use crate::model::{EpNet, State, Target};
use crate::settle::{Settle, Settler, free_phase_bptt_with, sample_max_abs_diff};
use crate::spec::{Loss, ModelSpec, Pool};

/// The test networks: the max-pool EP-CNN with softmax readout and an EP-MLP.
fn nets() -> Vec<(&'static str, ModelSpec)> {
    vec![
        (
            "cnn",
            small_cnn(Pool::Max, Act::MyHardSig, true, Loss::CrossEntropy),
        ),
        (
            "mlp",
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
        ),
    ]
}

fn state_diff<B: Backend>(be: &B, a: &State<B>, b: &State<B>) -> f32 {
    sample_max_abs_diff(be, a, b)
        .must()
        .into_iter()
        .fold(0f32, f32::max)
}

/// Mean cross-entropy of `[N, K]` logits against `labels`, in f64 on the host.
fn host_ce(logits: &Tensor, labels: &[usize]) -> f64 {
    let k = logits.shape()[1];
    let v = logits.as_slice().expect("standard layout");
    let rows = v.chunks(k).zip(labels).map(|(r, &l)| {
        let m = r.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
        let z: f64 = r.iter().map(|&x| (x as f64 - m).exp()).sum();
        m + z.ln() - r[l] as f64
    });
    rows.sum::<f64>() / labels.len() as f64
}

fn host_diff(a: &[Tensor], b: &[Tensor]) -> f32 {
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y.iter()).map(|(u, v)| (u - v).abs()))
        .fold(0f32, f32::max)
}

/// Plain iteration without a tolerance is `relax`, bit for bit, and reports its step count.
pub fn settle_plain_is_relax_bit_for_bit<B: Backend>(be: &B) {
    for (name, spec) in nets() {
        let net = EpNet::init(be, spec.clone(), &Stream::new(7, "init"), None).must();
        let x = up(
            be,
            &test_tensor(&[3, spec.input[0], spec.input[1], spec.input[2]], 9, 1.0),
        );
        let a = net.free_phase(be, &x, 17).must();
        let b = net.free_phase_with(be, &x, 17, &Settle::default()).must();
        assert_eq!(b.steps, 17, "{name}");
        let ha: Vec<Tensor> = a.layers.iter().map(|l| down(be, l)).collect();
        let hb: Vec<Tensor> = b.state.layers.iter().map(|l| down(be, l)).collect();
        assert_eq!(ha, hb, "{name}: plain settle differs from relax");
    }
}

/// Against a 3000-step plain run (checked converged: one more step moves no neuron by more than
/// 1e-6), plain iteration with tol 1e-6 stops early and Anderson (m = 5) reaches the same fixed
/// point within 1e-4 max abs, free and nudged (warm-started from the free equilibrium), in fewer
/// steps than plain-with-tol: measured on the CPU with the default settle (mixing from a change
/// of 1e-3 on), CNN 67 → 33 steps (2.0x, asserted ≥ 1.6x), MLP 18 → 13 (1.4x, asserted ≥ 1.2x;
/// its plain iteration contracts fast already). Mixing from the first step (start = ∞) took the
/// CNN 18 steps (3.7x), but leaves the plain fixed point's basin on the trained model (see
/// `crate::settle`).
pub fn settle_anderson_reaches_the_plain_fixed_point_in_fewer_steps<B: Backend>(be: &B) {
    for ((name, spec), min_ratio) in nets().into_iter().zip([1.6f32, 1.2]) {
        let net = EpNet::init(be, spec.clone(), &Stream::new(11, "init"), Some(1.5)).must();
        let n = 4;
        let x = up(
            be,
            &test_tensor(&[n, spec.input[0], spec.input[1], spec.input[2]], 13, 1.0),
        );
        let target = Target::new(be, &[0, 1, 2, 1], 3).must();
        let reference = net.free_phase(be, &x, 3000).must();
        let more = net.relax(be, &x, reference.clone(), 1, None).must();
        let d = state_diff(be, &reference, &more);
        assert!(
            d < 1e-6,
            "{name}: the plain reference has not converged ({d:e})"
        );
        let plain = net
            .free_phase_with(be, &x, 3000, &Settle::plain_tol(1e-6))
            .must();
        let and = net
            .free_phase_with(be, &x, 3000, &Settle::anderson(1e-6))
            .must();
        assert!(
            plain.converged() && and.converged(),
            "{name}: not converged"
        );
        let dp = state_diff(be, &plain.state, &reference);
        let da = state_diff(be, &and.state, &reference);
        eprintln!(
            "{} {name} free: plain-tol {} steps (diff {dp:.1e}), anderson {} steps (diff {da:.1e})",
            be.name(),
            plain.steps,
            and.steps
        );
        assert!(
            plain.steps < 3000,
            "{name}: plain with tol did not stop early"
        );
        assert!(
            dp <= 1e-4,
            "{name}: plain-tol is {dp:e} from the fixed point"
        );
        assert!(
            da <= 1e-4,
            "{name}: anderson is {da:e} from the fixed point"
        );
        assert!(
            and.steps as f32 * min_ratio <= plain.steps as f32,
            "{name}: anderson took {} steps, plain {} (want a ratio ≥ {min_ratio})",
            and.steps,
            plain.steps
        );
        // Nudged phase from the free equilibrium, with the same solver.
        let nudge = Some((0.3, &target));
        let nref = net.relax(be, &x, reference.clone(), 3000, nudge).must();
        let nand = net
            .relax_with(be, &x, and.state, 3000, nudge, &Settle::anderson(1e-6))
            .must();
        let dn = state_diff(be, &nand.state, &nref);
        eprintln!(
            "{} {name} nudged: anderson {} steps (diff {dn:.1e})",
            be.name(),
            nand.steps
        );
        assert!(nand.converged() && dn <= 1e-4, "{name}: nudged {dn:e}");
        let hr: Vec<Tensor> = nref.layers.iter().map(|l| down(be, l)).collect();
        let ha: Vec<Tensor> = nand.state.layers.iter().map(|l| down(be, l)).collect();
        assert!(host_diff(&hr, &ha) <= 1e-4);
        for l in &ha {
            assert!(
                l.iter().all(|v| (0.0..=1.0).contains(v)),
                "{name}: a state left σ's range"
            );
        }
    }
}

/// GDU at the Anderson equilibria: the symmetric EP update from free and ±β nudged phases settled
/// by Anderson matches the BPTT gradient through a long plain free phase (cos ≥ 0.99 per layer).
pub fn settle_gdu_holds_at_the_anderson_equilibrium<B: Backend>(be: &B) {
    let spec = ModelSpec {
        t1: 60,
        t2: 40,
        ..small_cnn(Pool::Max, Act::MyHardSig, true, Loss::CrossEntropy)
    };
    let net = EpNet::init(be, spec.clone(), &Stream::new(5, "init"), None).must();
    let x = up(be, &test_tensor(&[4, 2, 8, 8], 93, 1.0));
    let labels = [0usize, 1, 2, 1];
    let target = Target::new(be, &labels, 3).must();
    let bptt = net
        .free_phase_bptt(be, &x, spec.t1, 0, true, ce_loss(be, &labels))
        .must();
    let bp = bptt.dparams.expect("parameter gradients");
    let s = Settle::anderson(1e-6);
    let free = net.free_phase_with(be, &x, 500, &s).must();
    assert!(free.converged());
    let beta = 0.2;
    let plus = net
        .relax_with(be, &x, free.state.clone(), 500, Some((beta, &target)), &s)
        .must();
    let minus = net
        .relax_with(be, &x, free.state.clone(), 500, Some((-beta, &target)), &s)
        .must();
    assert!(plus.converged() && minus.converged());
    let sym = net
        .ep_grads(be, &x, (&plus.state, beta), (&minus.state, -beta), &target)
        .must();
    let mut report = format!(
        "steps: free {}, +β {}, −β {}\n",
        free.steps, plus.steps, minus.steps
    );
    for i in 0..bp.len() {
        let c = cosine(&down(be, &sym[i].0), &down(be, &bp[i].0));
        report += &format!("layer {i}: cos(sym anderson, bptt) = {c:.5}\n");
        assert!(c >= 0.99, "{report}");
    }
    eprintln!("{} {report}", be.name());
}

/// Gradients through a settle with a tolerance are the implicit-function (equilibrium) gradient:
/// equal to BPTT through a long (500-step) plain free phase that reaches the same fixed point (dx within 1e-3
/// of its largest entry, parameter gradients cos ≥ 0.999), and to central finite differences of
/// the loss at the fixed point along a random direction (the closest of steps 3e-4, 1e-3 and 3e-3 within 2 %), for plain-to-tolerance and
/// Anderson; a fixed plain settle is `free_phase_bptt`; an adjoint that cannot converge in the
/// cap is an error.
pub fn settle_gradients_are_the_equilibrium_gradient<B: Backend>(be: &B) {
    for (name, spec) in nets() {
        let net = EpNet::init(be, spec.clone(), &Stream::new(11, "init"), Some(1.5)).must();
        let n = 3;
        let shape = [n, spec.input[0], spec.input[1], spec.input[2]];
        let xh = test_tensor(&shape, 13, 1.0);
        let x = up(be, &xh);
        let labels = [0usize, 2, 1];
        let long = net
            .free_phase_bptt(be, &x, 500, 0, true, ce_loss(be, &labels))
            .must();
        let ldx = down(be, &long.dx);
        let scale = ldx.iter().fold(0f32, |m, v| m.max(v.abs()));
        for settle in [Settle::plain_tol(1e-6), Settle::anderson(1e-6)] {
            let what = format!("{name} {settle:?}");
            let g = free_phase_bptt_with(&net, be, &x, 500, 0, true, &settle, ce_loss(be, &labels))
                .must();
            let d = host_diff(&[down(be, &g.dx)], std::slice::from_ref(&ldx));
            assert!(
                d <= 1e-3 * scale,
                "{what}: dx is {d:e} from long BPTT's (scale {scale:e})"
            );
            assert!(
                (g.loss - long.loss).abs() <= 1e-5 * long.loss.abs().max(1.0),
                "{what}"
            );
            let (gp, lp) = (g.dparams.as_ref().unwrap(), long.dparams.as_ref().unwrap());
            for (i, ((gw, gb), (lw, lb))) in gp.iter().zip(lp).enumerate() {
                let cw = cosine(&down(be, gw), &down(be, lw));
                let cb = cosine(&down(be, gb), &down(be, lb));
                assert!(
                    cw >= 0.999 && cb >= 0.999,
                    "{what}: synapse {i} cos {cw} {cb}"
                );
            }
            // Central differences of the loss at the fixed point along a random direction.
            let dir = test_tensor(&shape, 29, 1.0);
            let loss_at = |eps: f32| {
                let xs = up(be, &(&xh + &(&dir * eps)));
                let st = net.free_phase_with(be, &xs, 500, &settle).must();
                let logits = down(be, &net.logits(be, &st.state).must());
                host_ce(&logits, &labels)
            };
            // Steps of 3e-4 to 3e-3: the network is piecewise linear (hard sigmoid, max-pool
            // switches), so larger steps cross kinks (7 % off on the CNN at 1e-2), and smaller
            // ones drown in the f32 states' rounding; the closest of the three is compared.
            let fd: Vec<f64> = [3e-4f32, 1e-3, 3e-3]
                .iter()
                .map(|&e| (loss_at(e) - loss_at(-e)) / (2.0 * e as f64))
                .collect();
            let an: f64 = down(be, &g.dx)
                .iter()
                .zip(dir.iter())
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum();
            let err = fd
                .iter()
                .map(|f| (f - an).abs())
                .fold(f64::INFINITY, f64::min);
            assert!(
                err <= 0.02 * an.abs().max(1e-3),
                "{what}: finite differences {fd:?}, equilibrium gradient {an:e}"
            );
            eprintln!(
                "{} {what}: fd {fd:?}, implicit {an:.5e}, |dx − bptt| {d:.1e}",
                be.name()
            );
        }
        // A fixed plain settle is BPTT through its steps.
        let a = free_phase_bptt_with(
            &net,
            be,
            &x,
            10,
            0,
            false,
            &Settle::default(),
            ce_loss(be, &labels),
        )
        .must();
        let b = net
            .free_phase_bptt(be, &x, 10, 0, false, ce_loss(be, &labels))
            .must();
        assert_eq!(down(be, &a.dx), down(be, &b.dx), "{name}");
        // One adjoint iteration cannot reach 1e-6.
        let s = Settle::Plain {
            tol: Some(1e-6),
            max_steps: Some(1),
        };
        let e = free_phase_bptt_with(&net, be, &x, 10, 0, false, &s, ce_loss(be, &labels))
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("did not converge"), "{name}: {e}");
    }
}

/// Per-sample stopping drops finished samples from the batch: every sample of a batch whose
/// samples converge at different steps (inputs scaled 0.1–3) ends where it ends when settled
/// alone (within 1e-4 max abs, its stop step within one, for float ties at the tolerance), free
/// and nudged, plain and Anderson; the batch does less work than steps × samples.
pub fn settle_a_sample_does_not_depend_on_its_batch<B: Backend>(be: &B) {
    for (name, spec) in nets() {
        let net = EpNet::init(be, spec.clone(), &Stream::new(11, "init"), Some(1.5)).must();
        let n = 7;
        let per = spec.input.iter().product::<usize>();
        let mut xs = test_tensor(&[n, spec.input[0], spec.input[1], spec.input[2]], 17, 1.0);
        for (i, v) in xs.iter_mut().enumerate() {
            *v *= [0.1f32, 3.0, 0.5, 1.0, 2.0, 0.2, 1.5][i / per];
        }
        let labels = [0usize, 1, 2, 1, 0, 2, 2];
        let target = Target::new(be, &labels, 3).must();
        let x = up(be, &xs);
        for (sname, settle) in [
            ("plain", Settle::plain_tol(1e-5)),
            ("anderson", Settle::anderson(1e-5)),
        ] {
            for nudged in [false, true] {
                let nudge = nudged.then_some((0.4, &target));
                let zero = net.zero_state(be, n).must();
                let all = net.relax_with(be, &x, zero, 2000, nudge, &settle).must();
                let steps: Vec<usize> = all.per_sample_steps().collect();
                let what = format!("{name} {sname} nudged={nudged}");
                assert!(all.converged(), "{what}: {:?}", all.sample_steps);
                let mut distinct = steps.clone();
                distinct.sort();
                distinct.dedup();
                assert!(distinct.len() >= 2, "{what}: one stop step {steps:?}");
                assert!(
                    all.row_steps < n * all.steps,
                    "{what}: {} rows evaluated, {} × {n}",
                    all.row_steps,
                    all.steps
                );
                assert!(all.row_steps >= steps.iter().sum::<usize>(), "{what}");
                for i in 0..n {
                    let xi = up(
                        be,
                        &xs.slice_axis(ndarray::Axis(0), ndarray::Slice::from(i..i + 1))
                            .to_owned(),
                    );
                    let ti = Target::new(be, &labels[i..i + 1], 3).must();
                    let one = net
                        .relax_with(
                            be,
                            &xi,
                            net.zero_state(be, 1).must(),
                            2000,
                            nudged.then_some((0.4, &ti)),
                            &settle,
                        )
                        .must();
                    let k = one.per_sample_steps().next().unwrap();
                    assert!(
                        k.abs_diff(steps[i]) <= 1,
                        "{what}: sample {i} stops at {} in the batch, {k} alone",
                        steps[i]
                    );
                    let row: Vec<Tensor> = all
                        .state
                        .layers
                        .iter()
                        .map(|l| down(be, &be.take_rows(l, &[i]).must()))
                        .collect();
                    let alone: Vec<Tensor> = one.state.layers.iter().map(|l| down(be, l)).collect();
                    let d = host_diff(&row, &alone);
                    assert!(
                        d <= 1e-4,
                        "{what}: sample {i} is {d:e} from its settle alone"
                    );
                }
            }
        }
    }
}
