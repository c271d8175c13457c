//! On-substrate EP training (`ep::subtrain`): parity of one update with the digital trainer on the
//! ideal substrate, the pulsed device's applied change against the request and against the update
//! law of one pulse, and a tiny EP-MLP that learns on a pulsed (ECRAM) substrate.

// Several parallel arrays (weights, states, expected values) are indexed together.
#![allow(clippy::needless_range_loop)]

mod common;
use common::*;

use devices::Preset;
use devices::pulsed::PulsedCell;
use ep::optim::{OptimKind, Optimizer};
use ep::subtrain::{Devices, Rounding, SubstrateTrainer};
use ep::train::{EpConfig, train_batch};
use ep::{ConvLayer, EpNet, Loss, ModelSpec, Pool};
use sim::netlist::TileSize;
use sim::{Act, Backend, Cpu, Stream, Tensor};

fn mlp(loss: Loss, softmax: bool) -> ModelSpec {
    ModelSpec {
        input: [1, 4, 4],
        conv: vec![],
        fc: if softmax {
            vec![20, 12, 4]
        } else {
            vec![20, 4]
        },
        act: Act::MyHardSig,
        softmax,
        loss,
        t1: 20,
        t2: 6,
        input_norm: None,
    }
}

fn cnn() -> ModelSpec {
    ModelSpec {
        input: [1, 6, 6],
        conv: vec![ConvLayer {
            channels: 4,
            kernel: 3,
            stride: 1,
            padding: 1,
            pool: Pool::Max,
        }],
        fc: vec![4],
        act: Act::MyHardSig,
        softmax: true,
        loss: Loss::CrossEntropy,
        t1: 15,
        t2: 5,
        input_norm: None,
    }
}

/// max |a − b| / max |b|.
fn rel(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, v| m.max((*v as f64).abs()));
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()))
        / scale.max(1e-30)
}

fn sub(a: &Tensor, b: &Tensor) -> Vec<f32> {
    a.iter().zip(b.iter()).map(|(x, y)| x - y).collect()
}

/// (a) Ideal device, no noise: one substrate EP update (weights and biases) equals the digital
/// update of `ep::train::train_batch`, for symmetric and vanilla EP, MSE/softmax MLPs and a CNN
/// (conv ΔW summed over positions), with the arrays split over several tiles.
#[test]
fn ideal_substrate_update_equals_digital_ep_update() {
    let cases = [
        (mlp(Loss::Mse, false), true),
        (mlp(Loss::CrossEntropy, true), true),
        (mlp(Loss::Mse, false), false),
        (cnn(), true),
    ];
    let ideal = Preset::builtin("ideal").unwrap();
    for (ci, (spec, symmetric)) in cases.into_iter().enumerate() {
        let be = Cpu;
        let net0 = EpNet::init(
            &be,
            spec.clone(),
            &Stream::new(ci as u64, "init"),
            Some(1.5),
        )
        .unwrap();
        let x = be.upload(&input(&spec, 8, 50 + ci as u64)).unwrap();
        let labels: Vec<usize> = (0..8).map(|i| (i * 3 + ci) % 4).collect();
        let cfg = EpConfig {
            beta: 0.5,
            symmetric,
            // Vanilla EP with −β on an output saturated at 0 would not move the network at all.
            random_sign: symmetric,
            settle: Default::default(),
        };
        let lrs = vec![0.4; spec.n_synapses()];
        let kind = OptimKind::Sgd { momentum: 0.0 };
        let signs = Stream::new(9, "beta.sign");
        for batch in [0u64, 1] {
            // Digital reference.
            let mut dnet = net0.clone();
            let mut dopt =
                Optimizer::new(kind.clone(), lrs.clone(), vec![0.0; lrs.len()], 2).unwrap();
            train_batch(&be, &mut dnet, &mut dopt, &cfg, &x, &labels, &signs, batch).unwrap();
            let (w0, b0) = net0.to_host(&be).unwrap();
            let (w1, b1) = dnet.to_host(&be).unwrap();
            // Substrate.
            let l = netlist(&net0, &ideal, TileSize { rows: 7, cols: 5 });
            let mut tr = SubstrateTrainer::new(&be, l, 3, None, Rounding::Nearest).unwrap();
            assert!(matches!(tr.devices, Devices::Reprogram));
            let e0 = tr.effective_weights(&be).unwrap();
            let mut sopt =
                Optimizer::new(kind.clone(), lrs.clone(), vec![0.0; lrs.len()], 2).unwrap();
            tr.train_batch(&be, &mut sopt, &cfg, &x, &labels, &signs, batch)
                .unwrap();
            let e1 = tr.effective_weights(&be).unwrap();
            let (_, sb1) = tr.net().to_host(&be).unwrap();
            for i in 0..w0.len() {
                let dd = sub(&w1[i], &w0[i]);
                let ds = sub(&e1[i], &e0[i]);
                let mx = dd.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                assert!(mx > 1e-6, "case {ci} synapse {i}: trivial update {mx}");
                let r = rel(&ds, &dd);
                assert!(
                    r < 1e-5,
                    "case {ci} batch {batch} synapse {i}: ΔW rel err {r}"
                );
                let rb = rel(&sub(&sb1[i], &b0[i]), &sub(&b1[i], &b0[i]));
                assert!(
                    rb < 1e-5,
                    "case {ci} batch {batch} synapse {i}: Δb rel err {rb}"
                );
            }
            assert_eq!(tr.pulses, 0, "re-programming counts no pulses");
        }
    }
}

fn quiet_cell(dw_min: f64) -> PulsedCell {
    PulsedCell {
        dw_min,
        dw_min_dtod: 0.0,
        dw_min_std: 0.0,
        up_down: 0.0,
        up_down_dtod: 0.0,
        w_max: 1.0,
        w_min: -1.0,
        w_max_dtod: 0.0,
        w_min_dtod: 0.0,
        gamma_up: 0.0,
        gamma_down: 0.0,
        gamma_up_dtod: 0.0,
        gamma_down_dtod: 0.0,
        mult_noise: true,
        mean_bound_reference: true,
        max_pulses: 100_000,
    }
}

/// Requested weight changes of every array: a deterministic pattern of both signs, of size
/// `scale` × the array's abs-max weight.
fn requests(ws: &[Tensor], scale: f32) -> Vec<Tensor> {
    let s = Stream::new(4, "dw");
    ws.iter()
        .enumerate()
        .map(|(i, w)| {
            let m = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let st = s.sub(i as u64);
            sim::tensor(
                w.shape(),
                (0..w.len() as u64)
                    .map(|j| (2.0 * st.uniform(j) - 1.0) * scale * m)
                    .collect(),
            )
            .unwrap()
        })
        .collect()
}

/// (b) A noise-free constant-step pulsed device: the applied change is within dw_min/2 (nearest)
/// or dw_min (stochastic rounding) of the request in every cell, so it converges to the request
/// as dw_min → 0; the pulse count is Σ|round(ΔW/(α dw_min))|.
#[test]
fn pulsed_applied_update_converges_to_request() {
    let be = Cpu;
    let spec = mlp(Loss::Mse, false);
    let net = EpNet::init(&be, spec, &Stream::new(1, "init"), None).unwrap();
    let ideal = Preset::builtin("ideal").unwrap();
    let mut last = f64::INFINITY;
    for dw_min in [1e-2, 1e-3, 1e-4] {
        for rounding in [Rounding::Nearest, Rounding::Stochastic] {
            let l = netlist(&net, &ideal, TileSize::default());
            let mut tr =
                SubstrateTrainer::new(&be, l, 5, Some(quiet_cell(dw_min)), rounding).unwrap();
            let Devices::Pulsed { arrays, alpha, .. } = &tr.devices else {
                panic!("pulsed expected")
            };
            let w0: Vec<Vec<f32>> = arrays.iter().map(|a| a.w.clone()).collect();
            let alpha = alpha.clone();
            let e0 = tr.effective_weights(&be).unwrap();
            let req = requests(&e0, 0.1);
            let (_, b) = tr.net().to_host(&be).unwrap();
            let pulses = tr.apply(&be, &req, b).unwrap();
            let Devices::Pulsed { arrays, .. } = &tr.devices else {
                unreachable!()
            };
            let mut worst = 0.0f64;
            let mut want_pulses = 0u64;
            for i in 0..arrays.len() {
                for (j, r) in req[i].iter().enumerate() {
                    let applied = (arrays[i].w[j] - w0[i][j]) as f64;
                    let want = *r as f64 / alpha[i] as f64;
                    let err = (applied - want).abs();
                    let bound = match rounding {
                        Rounding::Nearest => 0.5 * dw_min,
                        Rounding::Stochastic => dw_min,
                    };
                    // f32 state: each of the n pulses may round by half an ulp (≤ 6e-8 for |w| < 1).
                    let n = (want / dw_min).abs() + 1.0;
                    assert!(
                        err <= bound + n * 6e-8,
                        "dw_min {dw_min} {rounding:?}: array {i} cell {j} applied {applied} want {want}"
                    );
                    worst = worst.max(err);
                    if rounding == Rounding::Nearest {
                        want_pulses += (want / dw_min).round().abs() as u64;
                    }
                }
            }
            if rounding == Rounding::Nearest {
                assert_eq!(pulses, want_pulses);
                assert!(
                    worst < last,
                    "error must shrink with dw_min: {worst} vs {last}"
                );
                last = worst;
            }
            println!(
                "dw_min {dw_min:e} {rounding:?}: max |applied − requested| = {worst:.3e} (normalized units), {pulses} pulses"
            );
        }
    }
    assert!(last < 1e-4);
}

/// (b) With up/down asymmetry and a nonlinear step (γ), a request of exactly one step per cell
/// gives one pulse whose change follows aihwkit's LinearStep law, computed here independently:
/// up: Δ = (1 + min(β,0)) dw_min (1 − γ_up w / w_max); down: Δ = −(1 − max(β,0)) dw_min (1 − γ_down
/// w / w_min).
#[test]
fn asymmetric_pulse_matches_device_formula() {
    let be = Cpu;
    let spec = mlp(Loss::Mse, false);
    let net = EpNet::init(&be, spec, &Stream::new(2, "init"), None).unwrap();
    let ideal = Preset::builtin("ideal").unwrap();
    for up_down in [0.3, -0.2] {
        let (dw_min, gu, gd, wmax, wmin) = (0.01, 0.6, 0.4, 0.8, -1.2);
        let cell = PulsedCell {
            up_down,
            gamma_up: gu,
            gamma_down: gd,
            w_max: wmax,
            w_min: wmin,
            ..quiet_cell(dw_min)
        };
        let l = netlist(&net, &ideal, TileSize::default());
        let mut tr = SubstrateTrainer::new(&be, l, 6, Some(cell), Rounding::Nearest).unwrap();
        let Devices::Pulsed { arrays, alpha, .. } = &tr.devices else {
            panic!()
        };
        let w0: Vec<Vec<f32>> = arrays.iter().map(|a| a.w.clone()).collect();
        let alpha = alpha.clone();
        let req: Vec<Tensor> = w0
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let n = w.len();
                let v = (0..n)
                    .map(|j| if j % 3 == 0 { -1.0 } else { 1.0 } * dw_min as f32 * alpha[i])
                    .collect();
                sim::tensor(tr.loaded.weights[i].shape(), v).unwrap()
            })
            .collect();
        let (_, b) = tr.net().to_host(&be).unwrap();
        let pulses = tr.apply(&be, &req, b).unwrap();
        let total: usize = w0.iter().map(|w| w.len()).sum();
        assert_eq!(pulses, total as u64, "one pulse per device");
        let Devices::Pulsed { arrays, .. } = &tr.devices else {
            unreachable!()
        };
        for i in 0..arrays.len() {
            for j in 0..w0[i].len() {
                let w = w0[i][j] as f64;
                let want = if j % 3 == 0 {
                    -(1.0 - up_down.max(0.0)) * dw_min * (1.0 - gd * w / wmin)
                } else {
                    (1.0 + up_down.min(0.0)) * dw_min * (1.0 - gu * w / wmax)
                };
                let got = (arrays[i].w[j] - w0[i][j]) as f64;
                assert!(
                    (got - want).abs() < 1e-4 * dw_min,
                    "up_down {up_down}: array {i} cell {j} at w={w}: Δ {got} vs formula {want}"
                );
            }
        }
        // The effective weights are α·w_n (ideal read-out cell).
        let e = tr.effective_weights(&be).unwrap();
        for i in 0..arrays.len() {
            let want: Vec<f32> = arrays[i].w.iter().map(|v| v * alpha[i]).collect();
            assert!(rel(e[i].as_slice().unwrap(), &want) < 1e-6);
        }
    }
}

/// Separable synthetic data: 4 class prototypes in [0, 1]^16 plus Gaussian noise.
fn blobs(n: usize, seed: u64) -> (Tensor, Vec<usize>) {
    let p = Stream::new(77, "prototypes");
    let s = Stream::new(seed, "blobs");
    let mut x = Vec::with_capacity(n * 16);
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % 4;
        for d in 0..16u64 {
            let proto = if p.uniform(c as u64 * 16 + d) > 0.5 {
                0.8
            } else {
                0.2
            };
            x.push(proto + 0.2 * s.normal((i as u64) * 16 + d));
        }
        y.push(c);
    }
    (sim::tensor(&[n, 1, 4, 4], x).unwrap(), y)
}

fn batch(x: &Tensor, y: &[usize], lo: usize, hi: usize) -> (Tensor, Vec<usize>) {
    let v = x.as_slice().unwrap()[lo * 16..hi * 16].to_vec();
    (
        sim::tensor(&[hi - lo, 1, 4, 4], v).unwrap(),
        y[lo..hi].to_vec(),
    )
}

/// (c) A tiny EP-MLP trained on the ECRAM preset (pulsed update device with all its variations,
/// noisy ADC, managed converters) learns the separable 4-class task well above chance (0.25).
#[test]
fn tiny_mlp_learns_on_pulsed_substrate() {
    let be = Cpu;
    let spec = mlp(Loss::Mse, false);
    let net = EpNet::init(&be, spec.clone(), &Stream::new(3, "init"), None).unwrap();
    let preset = Preset::builtin("ecram").unwrap();
    let cell = preset.update.clone().expect("ecram has an update device");
    let l = netlist(&net, &preset, TileSize::default());
    let mut tr = SubstrateTrainer::new(&be, l, 11, Some(cell), Rounding::Stochastic).unwrap();
    let (xtr, ytr) = blobs(320, 1);
    let (xte, yte) = blobs(200, 2);
    let xte_b = be.upload(&xte).unwrap();
    let cfg = EpConfig {
        beta: 0.5,
        symmetric: true,
        random_sign: true,
        settle: Default::default(),
    };
    let mut opt = Optimizer::new(
        OptimKind::Sgd { momentum: 0.0 },
        vec![0.8, 0.4],
        vec![0.0, 0.0],
        2,
    )
    .unwrap();
    let signs = Stream::new(11, "beta.sign");
    let acc0 = tr
        .correct(&be, &xte_b, &yte, 1 << 40, &ep::Settle::default())
        .unwrap()
        .0 as f64
        / 200.0;
    let bs = 16;
    let mut bi = 0u64;
    let mut accs = vec![];
    for epoch in 0..3 {
        let mut correct = 0;
        for k in 0..320 / bs {
            let (xb, yb) = batch(&xtr, &ytr, k * bs, (k + 1) * bs);
            let xb = be.upload(&xb).unwrap();
            correct += tr
                .train_batch(&be, &mut opt, &cfg, &xb, &yb, &signs, bi)
                .unwrap()
                .correct;
            bi += 1;
        }
        let acc = tr
            .correct(
                &be,
                &xte_b,
                &yte,
                (1 << 40) + 1 + epoch,
                &ep::Settle::default(),
            )
            .map(|c| c.0)
            .unwrap() as f64
            / 200.0;
        println!(
            "epoch {}: train acc {:.3}, test acc on substrate {:.3}, pulses so far {}",
            epoch + 1,
            correct as f64 / 320.0,
            acc,
            tr.pulses
        );
        accs.push(acc);
    }
    println!("test acc before training {acc0:.3}");
    assert!(tr.pulses > 0);
    let last = *accs.last().unwrap();
    assert!(
        last >= 0.9,
        "substrate training reached only {last} (chance 0.25)"
    );
}
