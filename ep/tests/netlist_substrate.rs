//! The netlist substrate against the digital engine: parity of `netlist:ideal` (states and logits
//! within 1e-5 relative, EP-MLP and EP-CNN, tiled arrays) and convergence to the ideal result as
//! each non-ideality goes to zero.

mod common;
use common::*;

use devices::cells::{PcmCell, RramCell};
use devices::{CellModel, DriftCompensation, Preset};
use ep::substrate::Realized;
use ep::{Dynamics, EpNet, Loss, ModelSpec};
use sim::netlist::{Netlist, TileSize};
use sim::{Act, Backend, Cpu, Tensor};

const SMALL: TileSize = TileSize { rows: 20, cols: 7 };

fn check_parity(spec: ModelSpec) {
    let be = Cpu;
    let net = model(spec, 3);
    let x = input(&net.spec, 4, 9);
    let steps = net.spec.t1;
    let digital = net.free_phase(&be, &x, steps).unwrap();
    let dl = net.logits(&be, &digital).unwrap();
    let r = Realized::new(
        &be,
        &netlist(&net, &Preset::builtin("ideal").unwrap(), SMALL),
        1,
    )
    .unwrap();
    assert!(!r.stochastic());
    let st = r.free_phase(&be, &x, steps, 0).unwrap();
    for (k, (a, b)) in st.layers.iter().zip(&digital.layers).enumerate() {
        let e = rel(a, b);
        assert!(e < 1e-5, "layer {k}: relative error {e}");
        // Non-trivial states: not all saturated or zero.
        assert!(
            b.iter().any(|v| *v > 0.05 && *v < 0.95),
            "layer {k} trivial"
        );
    }
    let e = rel(&r.logits(&be, &st, 0, steps as u64).unwrap(), &dl);
    assert!(e < 1e-5, "logits: relative error {e}");
}

#[test]
fn ideal_parity_mlp() {
    check_parity(mlp(Loss::Mse, false));
    check_parity(mlp(Loss::CrossEntropy, true));
    check_parity(mlp(Loss::CrossEntropy, false));
}

#[test]
fn ideal_parity_cnn() {
    check_parity(cnn());
}

/// Relative logit error of a preset's realization against the digital engine.
fn err(net: &EpNet<Cpu>, x: &Tensor, p: &Preset) -> f64 {
    let be = Cpu;
    let steps = net.spec.t1;
    let dl = net
        .logits(&be, &net.free_phase(&be, x, steps).unwrap())
        .unwrap();
    let r = Realized::new(&be, &netlist(net, p, SMALL), 5).unwrap();
    let st = r.free_phase(&be, x, steps, 0).unwrap();
    rel(&r.logits(&be, &st, 0, steps as u64).unwrap(), &dl)
}

fn ideal_with(f: impl Fn(&mut Preset)) -> Preset {
    let mut p = Preset::builtin("ideal").unwrap();
    f(&mut p);
    p.validate().unwrap();
    p
}

/// err(level) must fall steadily as the level goes to its ideal end, and end small.
fn converges(
    name: &str,
    net: &EpNet<Cpu>,
    x: &Tensor,
    levels: &[f64],
    make: &dyn Fn(f64) -> Preset,
) {
    let errs: Vec<f64> = levels.iter().map(|&l| err(net, x, &make(l))).collect();
    eprintln!("{name}: {levels:?} -> {errs:?}");
    assert!(
        errs[0] > 1e-4,
        "{name}: the non-ideality has no effect: {errs:?}"
    );
    for w in errs.windows(2) {
        assert!(w[1] < w[0] * 0.7, "{name}: no convergence: {errs:?}");
    }
    assert!(*errs.last().unwrap() < errs[0] * 0.02, "{name}: {errs:?}");
}

#[test]
fn each_nonideality_converges_to_ideal() {
    let net = model(mlp(Loss::Mse, false), 4);
    let x = input(&net.spec, 4, 2);
    let s = [1.0, 0.1, 0.01, 0.001];
    let pcm = |f: &dyn Fn(&mut PcmCell)| {
        let mut c = PcmCell {
            prog_noise_scale: 0.0,
            drift_scale: 0.0,
            read_noise_scale: 0.0,
            ..PcmCell::default()
        };
        f(&mut c);
        c
    };
    converges("pcm programming noise", &net, &x, &s, &|v| {
        ideal_with(|p| p.cell = CellModel::Pcm(pcm(&|c| c.prog_noise_scale = v)))
    });
    converges("pcm drift (uncompensated)", &net, &x, &s, &|v| {
        ideal_with(|p| {
            p.cell = CellModel::Pcm(pcm(&|c| c.drift_scale = v));
            p.inference.t_inference_s = 3600.0;
            p.inference.drift_compensation = DriftCompensation::None;
        })
    });
    converges("pcm accumulated 1/f noise", &net, &x, &s, &|v| {
        ideal_with(|p| {
            p.cell = CellModel::Pcm(pcm(&|c| c.read_noise_scale = v));
            p.inference.t_inference_s = 3600.0;
        })
    });
    converges("pcm per-read noise", &net, &x, &s, &|v| {
        ideal_with(|p| p.cell = CellModel::Pcm(pcm(&|c| c.per_read_noise_gmax_frac = 0.05 * v)))
    });
    let rram = |f: &dyn Fn(&mut RramCell)| {
        let mut c = RramCell {
            prog_noise_scale: 0.0,
            read_noise_scale: 0.0,
            ..RramCell::default()
        };
        f(&mut c);
        c
    };
    converges("rram programming noise", &net, &x, &s, &|v| {
        ideal_with(|p| p.cell = CellModel::Rram(rram(&|c| c.prog_noise_scale = v)))
    });
    converges("rram per-read noise", &net, &x, &s, &|v| {
        ideal_with(|p| {
            p.cell = CellModel::Rram(rram(&|c| {
                c.read_noise_scale = v;
                c.per_read_noise_gmax_frac = 0.05;
            }))
        })
    });
    converges(
        "rram stuck-at faults",
        &net,
        &x,
        &[0.1, 0.01, 0.001, 0.0001],
        &|v| {
            ideal_with(|p| {
                p.cell = CellModel::Rram(rram(&|c| {
                    c.stuck_off_prob = v;
                    c.stuck_on_prob = v;
                }))
            })
        },
    );
    converges("rram levels", &net, &x, &[4.0, 16.0, 256.0, 4096.0], &|v| {
        ideal_with(|p| p.cell = CellModel::Rram(rram(&|c| c.levels = v as u32)))
    });
    let bits = [4.0, 8.0, 12.0, 16.0];
    converges("dac bits", &net, &x, &bits, &|v| {
        ideal_with(|p| {
            p.dac.bits = v as u32;
            p.dac.bound = 1.0;
        })
    });
    converges("adc bits", &net, &x, &bits, &|v| {
        ideal_with(|p| {
            p.adc.bits = v as u32;
            p.adc.bound = 4.0;
        })
    });
    converges("dac noise", &net, &x, &s, &|v| {
        ideal_with(|p| p.dac.noise_std = 0.05 * v)
    });
    converges("adc noise", &net, &x, &s, &|v| {
        ideal_with(|p| p.adc.noise_std = 0.05 * v)
    });
    converges("neuron gain spread", &net, &x, &s, &|v| {
        ideal_with(|p| p.neuron.gain_dtod = 0.1 * v)
    });
    converges("neuron offset spread", &net, &x, &s, &|v| {
        ideal_with(|p| p.neuron.offset_dtod = 0.1 * v)
    });
    converges("neuron noise", &net, &x, &s, &|v| {
        ideal_with(|p| p.neuron.noise_std = 0.05 * v)
    });
}

#[test]
fn physical_presets_converge_to_ideal() {
    let net = model(cnn(), 6);
    let x = input(&net.spec, 3, 8);
    for name in ["pcm", "rram"] {
        let e: Vec<f64> = [1.0, 0.01, 0.0]
            .iter()
            .map(|&s| {
                let mut p = Preset::builtin(name).unwrap();
                p.scale_nonidealities(s).unwrap();
                err(&net, &x, &p)
            })
            .collect();
        eprintln!("{name}: scale 1, 0.01, 0 -> {e:?}");
        assert!(e[0] > 1e-3, "{name}: {e:?}");
        assert!(e[1] < e[0], "{name}: {e:?}");
        assert!(e[2] < 1e-5, "{name}: {e:?}");
    }
}

#[test]
fn noise_is_seeded_and_per_query() {
    let be = Cpu;
    let net = model(mlp(Loss::Mse, false), 1);
    let x = input(&net.spec, 2, 3);
    let l = netlist(&net, &Preset::builtin("rram").unwrap(), SMALL);
    let r = Realized::new(&be, &l, 11).unwrap();
    assert!(r.stochastic());
    let run = |r: &Realized<Cpu>, q| r.free_phase(&be, &x, 10, q).unwrap().layers[1].clone();
    assert_eq!(run(&r, 0), run(&r, 0));
    assert_ne!(run(&r, 0), run(&r, 1));
    let r2 = Realized::new(&be, &l, 11).unwrap();
    assert_eq!(run(&r, 3), run(&r2, 3));
    let r3 = Realized::new(&be, &l, 12).unwrap();
    assert_ne!(run(&r, 3), run(&r3, 3));
}

fn lossf(l: &Tensor) -> sim::Result<(f32, Tensor)> {
    let w = |i: usize| (i % 7) as f32 - 3.0;
    let s: f32 = l.iter().enumerate().map(|(i, v)| v * w(i)).sum();
    let g = Tensor::from_shape_fn(l.raw_dim(), |d| w(d[1] + d[0] * l.shape()[1]));
    Ok((s, g))
}

/// With deterministic reads and ideal neurons the realized BPTT must equal the digital engine's
/// BPTT of the programmed (effective) weights.
#[test]
fn bptt_equals_digital_bptt_of_programmed_weights() {
    let be = Cpu;
    let net = model(cnn(), 2);
    let x = input(&net.spec, 2, 5);
    let mut p = Preset::builtin("pcm").unwrap();
    p.dac = devices::Dac::ideal();
    p.adc = devices::Adc::ideal();
    let r = Realized::new(&be, &netlist(&net, &p, SMALL), 3).unwrap();
    let steps = 8;
    let ep::Bptt {
        loss: l1,
        logits: lg1,
        dx: dx1,
        ..
    } = r
        .query(0)
        .free_phase_bptt(&be, &x, steps, 0, false, lossf)
        .unwrap();
    let b = r
        .net
        .free_phase_bptt(&be, &x, steps, 0, false, lossf)
        .unwrap();
    assert!((l1 - b.loss).abs() <= 1e-5 * b.loss.abs().max(1.0));
    assert!(rel(&lg1, &b.logits) < 1e-6);
    assert!(rel(&dx1, &b.dx) < 1e-5, "{}", rel(&dx1, &b.dx));
    assert!(b.dx.iter().any(|v| v.abs() > 1e-3));
    // The programmed weights differ from the model's (PCM programming noise and drift).
    assert!(rel(&be.download(&r.net.weights[0]).unwrap(), &net.weights[0]) > 1e-3);
}

/// The one BPTT runs on every realization: with deterministic reads its parameter gradients
/// (and d/dx, at any checkpoint spacing) through a realization are the digital engine's on the
/// programmed weights.
#[test]
fn realized_bptt_parameter_gradients_equal_digital() {
    let be = Cpu;
    let net = model(cnn(), 4);
    let x = input(&net.spec, 2, 6);
    let mut p = Preset::builtin("pcm").unwrap();
    p.dac = devices::Dac::ideal();
    p.adc = devices::Adc::ideal();
    let r = Realized::new(&be, &netlist(&net, &p, SMALL), 5).unwrap();
    let steps = 7;
    let want = r
        .net
        .free_phase_bptt(&be, &x, steps, 0, true, lossf)
        .unwrap();
    for every in [0, 1, 3] {
        let got = r
            .query(1)
            .free_phase_bptt(&be, &x, steps, every, true, lossf)
            .unwrap();
        assert!(rel(&got.dx, &want.dx) < 1e-5, "dx, checkpoint {every}");
        let (gp, wp) = (got.dparams.unwrap(), want.dparams.as_ref().unwrap());
        assert_eq!(gp.len(), net.spec.n_synapses());
        for (i, ((gw, gb), (ww, wb))) in gp.iter().zip(wp).enumerate() {
            assert!(
                ww.iter().any(|v| v.abs() > 1e-4),
                "synapse {i}: trivial gradient"
            );
            assert!(
                rel(gw, ww) < 1e-5,
                "dW{i}, checkpoint {every}: {}",
                rel(gw, ww)
            );
            assert!(
                rel(gb, wb) < 1e-5,
                "db{i}, checkpoint {every}: {}",
                rel(gb, wb)
            );
        }
    }
}

/// Neuron gain and offset spreads enter the adjoint: check against finite differences of the
/// realized free phase (smooth activation).
#[test]
fn bptt_matches_finite_differences_with_neuron_spread() {
    let be = Cpu;
    let mut spec = mlp(Loss::Mse, false);
    spec.act = Act::MySigmoid;
    let net = model(spec, 2);
    let x = input(&net.spec, 2, 5);
    let mut p = Preset::builtin("ideal").unwrap();
    p.neuron.gain_dtod = 0.2;
    p.neuron.offset_dtod = 0.1;
    let r = Realized::new(&be, &netlist(&net, &p, SMALL), 3).unwrap();
    let steps = 6;
    let dx = r
        .query(0)
        .free_phase_bptt(&be, &x, steps, 0, false, lossf)
        .unwrap()
        .dx;
    let plain = net
        .free_phase_bptt(&be, &x, steps, 0, false, lossf)
        .unwrap()
        .dx;
    assert!(
        rel(&dx, &plain) > 1e-3,
        "the spreads must change the gradient"
    );
    let f = |x: &Tensor| -> f64 {
        let st = r.free_phase(&be, x, steps, 0).unwrap();
        let l = r.logits(&be, &st, 0, steps as u64).unwrap();
        lossf(&l).unwrap().0 as f64
    };
    let h = 1e-2f32;
    for i in (0..x.len()).step_by(7) {
        let mut xp = x.clone();
        let mut xm = x.clone();
        xp.as_slice_mut().unwrap()[i] += h;
        xm.as_slice_mut().unwrap()[i] -= h;
        let fd = (f(&xp) - f(&xm)) / (2.0 * h as f64);
        let g = dx.as_slice().unwrap()[i] as f64;
        assert!(
            (fd - g).abs() < 1e-2 * (1.0 + g.abs()),
            "x[{i}]: bptt {g}, finite difference {fd}"
        );
    }
}

/// The documented example (docs/netlist-example.json) realizes: its device entries (a preset with
/// overrides, inline parameters) are valid.
#[test]
fn documented_example_realizes() {
    use ndarray_npy::WriteNpyExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("net.json"),
        include_str!("../../docs/netlist-example.json"),
    )
    .unwrap();
    let w = sim::tensor(&[3, 8], (0..24).map(|i| (i as f32 - 12.0) / 20.0).collect()).unwrap();
    w.write_npy(std::fs::File::create(dir.path().join("syn1.weight.npy")).unwrap())
        .unwrap();
    let l = Netlist::read(&dir.path().join("net.json")).unwrap();
    let r = Realized::new(&Cpu, &l, 0).unwrap();
    assert!(r.stochastic());
    let x = Tensor::from_elem(ndarray::IxDyn(&[2, 1, 4, 4]), 0.3);
    let st = r.free_phase(&Cpu, &x, 5, 0).unwrap();
    assert_eq!(st.layers[1].shape(), &[2, 3]);
    assert_eq!(r.logits(&Cpu, &st, 0, 5).unwrap().shape(), &[2, 2]);
    // A device entry with an unknown preset or a bad override names its JSON path.
    let mut v: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/netlist-example.json")).unwrap();
    v["devices"]["dev"]["set"]["no_such_knob"] = serde_json::json!(1);
    std::fs::write(dir.path().join("bad.json"), v.to_string()).unwrap();
    let l = Netlist::read(&dir.path().join("bad.json")).unwrap();
    let e = Realized::new(&Cpu, &l, 0).err().unwrap();
    assert_eq!(e.path, "$.devices.dev.set.no_such_knob");
    assert!(e.file.ends_with("bad.json"), "{e}");
}

/// A noisy query gives the same bits on 1 and 2 threads (draws indexed by position, not order).
#[test]
fn noisy_results_do_not_depend_on_thread_count() {
    let net = model(cnn(), 9);
    let x = input(&net.spec, 3, 4);
    let l = netlist(&net, &Preset::builtin("pcm").unwrap(), SMALL);
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                let r = Realized::new(&Cpu, &l, 4).unwrap();
                let st = r.free_phase(&Cpu, &x, 6, 2).unwrap();
                let dx = r
                    .query(2)
                    .free_phase_bptt(&Cpu, &x, 6, 0, false, lossf)
                    .unwrap()
                    .dx;
                let lg = r.logits(&Cpu, &st, 2, 6).unwrap();
                (st.layers, lg, dx)
            })
    };
    assert_eq!(run(1), run(2));
}

/// A one-layer linear network (64 inputs, 2 outputs, identity output neurons) with weights
/// row 0 = 1, row 1 = 0.2, realized on the ideal cell with `preset`'s converters; returns the
/// output of one step on `x` (one row of 64 values per sample) and the read counts.
fn one_read(preset: &Preset, tile: TileSize, x: &[Vec<f32>]) -> (Vec<Vec<f32>>, (u64, u64)) {
    let be = Cpu;
    let spec = ModelSpec {
        input: [1, 8, 8],
        conv: vec![],
        fc: vec![2],
        act: Act::MyHardSig,
        softmax: false,
        loss: Loss::CrossEntropy,
        t1: 1,
        t2: 1,
        input_norm: None,
    };
    let w = sim::tensor(
        &[2, 64],
        (0..128).map(|i| if i < 64 { 1.0 } else { 0.2 }).collect(),
    )
    .unwrap();
    let b = sim::tensor(&[2], vec![0.0, 0.0]).unwrap();
    let net = EpNet::from_host(&be, spec, &[w], &[b]).unwrap();
    let r = Realized::new(&be, &netlist(&net, preset, tile), 3).unwrap();
    let n = x.len();
    let xt = sim::tensor(&[n, 1, 8, 8], x.concat()).unwrap();
    let st = r.free_phase(&be, &xt, 1, 0).unwrap();
    let out = be.download(&st.layers[0]).unwrap();
    let rows = (0..n)
        .map(|k| (0..2).map(|j| out[[k, j]]).collect())
        .collect();
    (rows, r.read_counts())
}

/// The default 9-bit ADC over ±12 without noise, behind an ideal DAC, with bound management `bm`.
fn adc_only(bm: devices::BoundManagement, max_bm_factor: u32) -> Preset {
    ideal_with(|p| {
        p.dac = devices::Dac::ideal();
        p.adc = devices::Adc {
            noise_std: 0.0,
            bound_management: bm,
            max_bm_factor,
            ..devices::Adc::default()
        };
    })
}

/// The 9-bit ADC over ±12: clip, then round to the nearest of the steps of 24/510.
fn adc_formula(v: f64) -> f64 {
    let step = 24.0 / 510.0;
    (v.clamp(-12.0, 12.0) / step).round() * step
}

#[test]
fn bound_management_recovers_saturated_reads_and_counts_them() {
    use devices::BoundManagement::{Iterative, None as NoBm};
    let step = 24.0 / 510.0;
    // Sample 0: ideal outputs 32 and 6.4 (the first saturates the ±12 ADC); sample 1: 6.4 and 1.28.
    let x = vec![vec![0.5f32; 64], vec![0.1f32; 64]];
    let ideal = [[32.0, 6.4], [6.4, 1.28]];
    let one = TileSize { rows: 64, cols: 2 };
    let close = |got: f32, want: f64, tol: f64| (got as f64 - want).abs() <= tol + 1e-4;

    // Off: the ADC clips, exactly as the transfer curve says.
    let (y, counts) = one_read(&adc_only(NoBm, 1000), one, &x);
    for k in 0..2 {
        for j in 0..2 {
            let want = adc_formula(ideal[k][j]);
            assert!(
                close(y[k][j], want, 0.0),
                "off [{k}][{j}]: {} vs {want}",
                y[k][j]
            );
        }
    }
    assert!(close(y[0][0], 12.0, 0.0));
    assert_eq!(counts, (2, 0));

    // Iterative: sample 0 is re-read at r = 2 (16 > 12) and r = 4 (8 fits), its outputs are the
    // r = 4 conversions times 4: within 4 half-steps of the ideal values; sample 1 is read once.
    let (y, counts) = one_read(&adc_only(Iterative, 1000), one, &x);
    for j in 0..2 {
        let want = 4.0 * adc_formula(ideal[0][j] / 4.0);
        assert!(
            close(y[0][j], want, 0.0),
            "bm [0][{j}]: {} vs {want}",
            y[0][j]
        );
        assert!(close(y[0][j], ideal[0][j], 4.0 * step / 2.0));
        assert!(close(y[1][j], ideal[1][j], step / 2.0));
    }
    assert_eq!(counts, (4, 2), "sample 0: 3 reads, sample 1: 1 read");

    // max_bm_factor = 1: the loop stops after the read with r = 2 > 1, which still clips: 2·12.
    let (y, counts) = one_read(&adc_only(Iterative, 1), one, &x);
    assert!(close(y[0][0], 24.0, 0.0), "{}", y[0][0]);
    assert!(close(y[0][1], 2.0 * adc_formula(3.2), 0.0));
    assert_eq!(counts, (3, 1));

    // Two input blocks of 32 rows: partial sums 16 and 4 per block for sample 0, each re-read
    // once at r = 2 and converted separately; the sum is still within 2·2 half-steps.
    let two = TileSize { rows: 32, cols: 2 };
    let (y, counts) = one_read(&adc_only(Iterative, 1000), two, &x);
    for j in 0..2 {
        let want = 2.0 * 2.0 * adc_formula(ideal[0][j] / 4.0);
        assert!(
            close(y[0][j], want, 0.0),
            "blocks [0][{j}]: {} vs {want}",
            y[0][j]
        );
    }
    assert_eq!(counts, (6, 2), "2 blocks × (2 + 1) reads");
    // Off, each block clips on its own: 12 + 12.
    let (y, _) = one_read(&adc_only(NoBm, 1000), two, &x);
    assert!(close(y[0][0], 24.0, 0.0), "{}", y[0][0]);

    // The stopping rule: aihwkit's defaults allow reductions up to 32 with a 7-bit DAC.
    use devices::converters::bound_management_last_reduction as last;
    assert_eq!(last(1000, 0.25, 7), 32);
    assert_eq!(last(1000, 0.25, 0), 1024);
    assert_eq!(last(1, 0.25, 0), 2);
    assert_eq!(last(1000, 0.25, 4), 4);
}

#[test]
fn noise_management_scales_inputs_into_the_dac_range() {
    use devices::NoiseManagement::{AbsMax, None as NoNm};
    // 7-bit DAC over ±1 (steps of 1/63), ideal ADC.
    let dac_only = |nm| {
        ideal_with(|p| {
            p.adc = devices::Adc::ideal();
            p.dac = devices::Dac {
                noise_management: nm,
                ..devices::Dac::default()
            };
        })
    };
    let one = TileSize { rows: 64, cols: 2 };
    let x = vec![vec![3.0f32; 64], vec![0.5f32; 64]];
    let close = |got: f32, want: f64| (got as f64 - want).abs() <= 1e-4 * want.abs().max(1.0);
    // Without: 3 clips to 1; 0.5 rounds to 32/63 (31.5 steps, halves away from zero).
    let (y, _) = one_read(&dac_only(NoNm), one, &x);
    assert!(close(y[0][0], 64.0) && close(y[0][1], 12.8), "{y:?}");
    assert!(close(y[1][0], 64.0 * 32.0 / 63.0), "{y:?}");
    // abs_max: each sample is divided by its abs-max (3, 0.5), lands on the DAC level 1 and the
    // result is scaled back: exact.
    let (y, _) = one_read(&dac_only(AbsMax), one, &x);
    assert!(close(y[0][0], 192.0) && close(y[0][1], 38.4), "{y:?}");
    assert!(close(y[1][0], 32.0) && close(y[1][1], 6.4), "{y:?}");

    // An all-zero input reads exactly zero under abs_max, despite the ADC noise.
    let noisy_adc = |nm| {
        ideal_with(|p| {
            p.dac = devices::Dac {
                noise_management: nm,
                ..devices::Dac::ideal()
            };
            p.adc = devices::Adc {
                noise_std: 0.06,
                ..devices::Adc::ideal()
            };
        })
    };
    let zero = vec![vec![0.0f32; 64]];
    let (y, _) = one_read(&noisy_adc(AbsMax), one, &zero);
    assert_eq!(y[0], vec![0.0, 0.0]);
    let (y, _) = one_read(&noisy_adc(NoNm), one, &zero);
    assert!(
        y[0].iter().any(|v| *v != 0.0),
        "the ADC noise is there without it"
    );
    use devices::converters::noise_management_scale as scale;
    assert_eq!(scale(AbsMax, 0.0, &[0.5, -2.0, 1.0]), 2.0);
    assert_eq!(scale(AbsMax, 1.5, &[0.5, -2.0, 1.0]), 1.5);
    assert_eq!(scale(NoNm, 0.0, &[0.5, -2.0]), 1.0);
    assert_eq!(scale(devices::NoiseManagement::Constant, 0.0, &[5.0]), 1.0);
    assert_eq!(scale(devices::NoiseManagement::Constant, 4.0, &[5.0]), 4.0);
}
