//! Spiking neurons on the netlist substrate: as the window grows the free phase converges to the
//! analog one (error ~ 1/window), the spike counter counts what the rates imply, results are
//! seeded and independent of the thread count, and bad spiking parameters are errors naming the
//! JSON path.

mod common;
use common::*;

use devices::Preset;
use devices::neurons::SpikePhase;
use ep::compile::{CompileOptions, compile};
use ep::substrate::Realized;
use ep::{Dynamics, EpNet, Loss, ModelSpec};
use sim::netlist::{Loaded, Netlist, NeuronKind, Origin, TileSize};
use sim::{Act, Backend, Cpu, Tensor};

const SMALL: TileSize = TileSize { rows: 20, cols: 7 };

fn netlist(net: &EpNet<Cpu>, preset: &Preset) -> Loaded {
    common::netlist(net, preset, SMALL)
}

fn spiking(window: u32, phase: &str, extra: &[(&str, &str)]) -> Preset {
    let mut p = Preset::builtin("ideal").unwrap();
    p.set_str("neuron.kind", "spiking").unwrap();
    p.set_str("neuron.window", &window.to_string()).unwrap();
    p.set_str("neuron.phase", phase).unwrap();
    for (k, v) in extra {
        p.set_str(k, v).unwrap();
    }
    p
}

/// RMS difference of all states (every layer) of two free phases.
fn rms(a: &[Tensor], b: &[Tensor]) -> f64 {
    let (mut s, mut n) = (0.0, 0usize);
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.shape(), y.shape());
        for (u, v) in x.iter().zip(y.iter()) {
            s += ((u - v) as f64).powi(2);
            n += 1;
        }
    }
    (s / n as f64).sqrt()
}

fn converges_with_window(spec: ModelSpec) {
    let be = Cpu;
    let net = model(spec, 3);
    let x = input(&net.spec, 4, 9);
    let steps = net.spec.t1;
    let analog = Realized::new(&be, &netlist(&net, &Preset::builtin("ideal").unwrap()), 1)
        .unwrap()
        .free_phase(&be, &x, steps, 0)
        .unwrap();
    let windows = [4u32, 16, 64, 256, 1024];
    let errs: Vec<f64> = windows
        .iter()
        .map(|&w| {
            let r = Realized::new(&be, &netlist(&net, &spiking(w, "random", &[])), 1).unwrap();
            assert!(r.stochastic());
            // Mean over a few queries (independent phases).
            let e: f64 = (0..3)
                .map(|q| {
                    rms(
                        &r.free_phase(&be, &x, steps, q).unwrap().layers,
                        &analog.layers,
                    )
                })
                .sum();
            e / 3.0
        })
        .collect();
    eprintln!(
        "{:?}: windows {windows:?} -> RMS state error {errs:?}",
        net.spec.fc
    );
    assert!(errs[0] > 0.02, "spiking has no effect: {errs:?}");
    // ~1/W: every 4x longer window cuts the error to about a quarter (1/√W would give a half).
    for e in errs.windows(2) {
        assert!(e[1] < 0.35 * e[0], "no 1/W convergence: {errs:?}");
    }
    assert!(errs[4] < 0.02 * errs[0], "{errs:?}");
    // A very long deterministic (round-to-nearest) window is the analog network.
    let r = Realized::new(&be, &netlist(&net, &spiking(1 << 16, "half", &[])), 1).unwrap();
    assert!(!r.stochastic());
    let st = r.free_phase(&be, &x, steps, 0).unwrap();
    let e = rms(&st.layers, &analog.layers);
    assert!(e < 1e-3, "window 65536: {e}");
}

#[test]
fn free_phase_converges_to_analog_mlp() {
    converges_with_window(common::mlp(Loss::CrossEntropy, true));
}

#[test]
fn free_phase_converges_to_analog_cnn() {
    converges_with_window(cnn());
}

#[test]
fn outputs_are_rates_and_spikes_are_counted() {
    let be = Cpu;
    let net = model(cnn(), 5);
    let x = input(&net.spec, 3, 2);
    let w = 8u32;
    let l = netlist(&net, &spiking(w, "random", &[("neuron.noise_std", "0.02")]));
    for p in &l.netlist.populations {
        assert_eq!(p.neuron.kind, NeuronKind::Spiking);
        assert_eq!(p.neuron.window, Some(w));
        assert_eq!(p.neuron.phase, Some(SpikePhase::Random));
    }
    let r = Realized::new(&be, &l, 7).unwrap();
    let st = r.free_phase(&be, &x, 5, 0).unwrap();
    assert!(r.spike_counts().iter().all(|&c| c > 0));
    let before = r.spike_counts();
    let q = r.query_stream(1);
    let next = r.step(&be, &x, &st, &q, 0).unwrap();
    let after = r.spike_counts();
    for (k, y) in next.layers.iter().enumerate() {
        let h = be.download(y).unwrap();
        let mut total = 0.0f64;
        for &v in h.iter() {
            let n = v as f64 * w as f64;
            assert!((n - n.round()).abs() < 1e-4 && (0.0..=w as f64).contains(&n));
            total += n.round();
        }
        assert_eq!((after[k] - before[k]) as f64, total, "population {k}");
    }
    // An analog realization counts nothing.
    let a = Realized::new(&be, &netlist(&net, &Preset::builtin("ideal").unwrap()), 7).unwrap();
    a.free_phase(&be, &x, 3, 0).unwrap();
    assert!(a.spike_counts().iter().all(|&c| c == 0));
}

fn lossf(l: &Tensor) -> sim::Result<(f32, Tensor)> {
    let g = sim::tensor(l.shape(), l.iter().map(|v| 2.0 * v).collect()).unwrap();
    Ok((l.iter().map(|v| v * v).sum(), g))
}

/// Same seed and query: same bits, on 1 and 2 threads, free phase, spike counts and BPTT.
#[test]
fn seeded_and_independent_of_thread_count() {
    let net = model(cnn(), 9);
    let x = input(&net.spec, 3, 4);
    let l = netlist(
        &net,
        &spiking(
            16,
            "random",
            &[("neuron.noise_std", "0.02"), ("neuron.gain_dtod", "0.05")],
        ),
    );
    let run = |threads: usize, query: u64| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                let r = Realized::new(&Cpu, &l, 4).unwrap();
                let st = r.free_phase(&Cpu, &x, 6, query).unwrap();
                let counts = r.spike_counts();
                let dx = r
                    .query(query)
                    .free_phase_bptt(&Cpu, &x, 6, 0, false, lossf)
                    .unwrap()
                    .dx;
                (st.layers, counts, dx)
            })
    };
    let a = run(1, 2);
    assert_eq!(a, run(2, 2));
    assert_ne!(a.0, run(1, 3).0, "another query draws other phases");
}

/// BPTT with the straight-through surrogate approaches the analog gradient as the window grows.
#[test]
fn surrogate_gradient_approaches_the_analog_one() {
    let be = Cpu;
    let net = model(common::mlp(Loss::CrossEntropy, true), 4);
    let x = input(&net.spec, 2, 6);
    let grad = |p: &Preset| {
        let r = Realized::new(&be, &netlist(&net, p), 2).unwrap();
        r.query(0)
            .free_phase_bptt(&be, &x, 10, 0, false, lossf)
            .unwrap()
            .dx
    };
    let a = grad(&Preset::builtin("ideal").unwrap());
    let cos = |p: &Tensor| {
        let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
        for (u, v) in a.iter().zip(p.iter()) {
            ab += (*u as f64) * (*v as f64);
            aa += (*u as f64).powi(2);
            bb += (*v as f64).powi(2);
        }
        ab / (aa * bb).sqrt()
    };
    let c_long = cos(&grad(&spiking(1 << 14, "half", &[])));
    assert!(c_long > 0.999, "cosine {c_long}");
    assert!(a.iter().any(|v| v.abs() > 1e-4));
}

#[test]
fn bad_spiking_parameters_are_errors_at_their_path() {
    let net = model(common::mlp(Loss::CrossEntropy, true), 1);
    let l = netlist(&net, &spiking(8, "zero", &[]));
    let mut v: serde_json::Value = serde_json::from_str(&l.netlist.to_json()).unwrap();
    v["populations"][1]["neuron"]["leak"] = serde_json::json!(1.5);
    let e = Netlist::from_json(&v.to_string(), Origin::memory()).unwrap_err();
    assert_eq!(e.path, "$.populations[1].neuron.leak", "{e}");
    // Compiling a model whose activation no spike rate realizes is an error.
    let mut spec = common::mlp(Loss::CrossEntropy, true);
    spec.act = Act::MySigmoid;
    let net = model(spec, 1);
    let (w, b) = net.to_host(&Cpu).unwrap();
    let e = compile(
        &net.spec,
        &w,
        &b,
        &spiking(8, "zero", &[]),
        &CompileOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("spiking") && e.contains("MySigmoid"), "{e}");
    // A linear output layer stays analog.
    let mut spec = common::mlp(Loss::CrossEntropy, true);
    spec.softmax = false;
    let net = model(spec, 1);
    let l = netlist(&net, &spiking(8, "zero", &[]));
    let pops = &l.netlist.populations;
    assert_eq!(pops.last().unwrap().neuron.act, Act::Identity);
    assert_eq!(pops.last().unwrap().neuron.kind, NeuronKind::Analog);
    assert_eq!(pops[0].neuron.kind, NeuronKind::Spiking);
    Realized::new(&Cpu, &l, 0).unwrap();
}
