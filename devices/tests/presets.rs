//! Presets: parsing, errors that name the field, overrides, the ideal limit, determinism.

use devices::cells::{CellModel, IdealCell};
use devices::irdrop::ideal_currents;
use devices::{Preset, ScaleMode};
use sim::Stream;

#[test]
fn builtin_presets_parse_validate_and_round_trip() {
    for name in Preset::builtin_names() {
        let p = Preset::builtin(name).unwrap();
        assert_eq!(p.name, name);
        if name != "ideal" {
            assert!(!p.sources.is_empty(), "{name} cites no sources");
        }
        let text = p.to_toml().unwrap();
        let q = Preset::from_toml(&text, "round-trip").unwrap();
        assert_eq!(p, q, "{name} does not round-trip");
    }
    let e = Preset::builtin("nope").unwrap_err().to_string();
    assert!(
        e.contains("nope") && e.contains("pcm") && e.contains("ecram"),
        "{e}"
    );
}

#[test]
fn pcm_preset_holds_the_aihwkit_coefficients() {
    let p = Preset::builtin("pcm").unwrap();
    let CellModel::Pcm(c) = &p.cell else {
        panic!("pcm preset is not a pcm cell")
    };
    assert_eq!(c.prog_coeff_us, [0.26348, 1.9650, -1.1731]);
    assert_eq!(c.g_max_us, 25.0);
    assert_eq!(c.t0_s, 20.0);
    assert_eq!(c.t_read_s, 250e-9);
    assert_eq!(
        (
            c.drift_nu_mean.slope,
            c.drift_nu_mean.intercept,
            c.drift_nu_mean.min,
            c.drift_nu_mean.max
        ),
        (-0.0155, 0.0244, 0.049, 0.1)
    );
    assert_eq!(
        (
            c.drift_nu_std.slope,
            c.drift_nu_std.intercept,
            c.drift_nu_std.min,
            c.drift_nu_std.max
        ),
        (-0.0125, -0.0059, 0.008, 0.045)
    );
    assert_eq!(
        (c.read_noise_q0, c.read_noise_exponent, c.read_noise_q_max),
        (0.0088, 0.65, 0.2)
    );
    assert_eq!(
        (
            p.dac.bits,
            p.dac.bound,
            p.adc.bits,
            p.adc.bound,
            p.adc.noise_std
        ),
        (7, 1.0, 9, 12.0, 0.06)
    );
    // aihwkit IOParameters(): ABS_MAX noise management, ITERATIVE bound management.
    assert_eq!(
        (p.dac.noise_management, p.dac.nm_thres),
        (devices::NoiseManagement::AbsMax, 0.0)
    );
    assert_eq!(
        (
            p.adc.bound_management,
            p.adc.max_bm_factor,
            p.adc.max_bm_res
        ),
        (devices::BoundManagement::Iterative, 1000, 0.25)
    );
    // the serde defaults are the same numbers as the file
    let minimal = Preset::from_toml("name = \"m\"\n[cell]\nkind = \"pcm\"\n", "minimal").unwrap();
    assert_eq!(&minimal.cell, &p.cell);
    assert_eq!(minimal.adc, p.adc);
    assert_eq!(minimal.dac, p.dac);
}

fn err(text: &str) -> String {
    Preset::from_toml(text, "test.toml")
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_presets_name_the_field() {
    let e = err("name = \"x\"\n[cell]\nkind = \"pcm\"\ng_max_uS = 25.0\n");
    assert!(e.contains("g_max_uS") && e.contains("test.toml"), "{e}");
    let e = err("name = \"x\"\ncolour = 1\n[cell]\nkind = \"ideal\"\n");
    assert!(e.contains("colour"), "{e}");
    let e = err("name = \"x\"\n[cell]\nkind = \"pcm\"\ng_max_us = -25.0\n");
    assert!(e.contains("g_max_us") && e.contains("-25"), "{e}");
    let e = err("name = \"x\"\n[cell]\nkind = \"rram\"\nstuck_on_prob = 1.5\n");
    assert!(e.contains("stuck_on_prob"), "{e}");
    let e = err("name = \"x\"\n[cell]\nkind = \"memristor\"\n");
    assert!(e.contains("memristor"), "{e}");
    let e = err("name = \"x\"\n[cell]\nkind = \"ideal\"\n[adc]\nbits = 1\n");
    assert!(e.contains("adc") && e.contains("bits"), "{e}");
    let e = err("name = \"x\"\n[cell]\nkind = \"ideal\"\n[update]\nw_min = 0.5\n");
    assert!(e.contains("w_min"), "{e}");
    let e = err("name = \"x\"\n[cell]\nkind = \"ideal\"\n[neuron]\nlo = 2.0\n");
    assert!(e.contains("lo"), "{e}");
    let e = err("name = \"x\"\n[cell]\nkind = \"ideal\"\n[ir_drop]\nr_wire_ohm = -1.0\n");
    assert!(e.contains("r_wire_ohm"), "{e}");
    let e = err("name = \"x\"\n[cell]\nkind = \"pcm\"\nprog_coeff_us = [-1.0, 0.0, 0.0]\n");
    assert!(e.contains("prog_coeff_us"), "{e}");
    let e = err("name = \"x\"\n");
    assert!(e.contains("cell"), "{e}");
}

#[test]
fn overrides() {
    let mut p = Preset::builtin("pcm").unwrap();
    p.set("read_noise_scale", 0.5).unwrap();
    let CellModel::Pcm(c) = &p.cell else { panic!() };
    assert_eq!(c.read_noise_scale, 0.5);
    p.set("adc.bits", 6.0).unwrap();
    assert_eq!(p.adc.bits, 6);
    p.set_str("t_inference_s", "86400").unwrap();
    assert_eq!(p.inference.t_inference_s, 86400.0);
    p.set_str("mapping.scale", "output").unwrap();
    assert_eq!(p.mapping.scale, ScaleMode::Output);
    p.set_str("drift_compensation", "\"per_output\"").unwrap();
    assert_eq!(
        p.inference.drift_compensation,
        devices::DriftCompensation::PerOutput
    );
    p.set_str("bound_management", "none").unwrap();
    assert_eq!(p.adc.bound_management, devices::BoundManagement::None);
    p.set_str("dac.noise_management", "constant").unwrap();
    assert_eq!(p.dac.noise_management, devices::NoiseManagement::Constant);
    let before = p.clone();
    let e = p
        .set_str("noise_management", "loud")
        .unwrap_err()
        .to_string();
    assert!(e.contains("noise_management") && e.contains("loud"), "{e}");
    let e = p.set("max_bm_factor", 0.0).unwrap_err().to_string();
    assert!(e.contains("max_bm_factor"), "{e}");
    let e = p.set("bogus_knob", 1.0).unwrap_err().to_string();
    assert!(
        e.contains("bogus_knob") && e.contains("valid keys") && e.contains("adc.bits"),
        "{e}"
    );
    let e = p.set("bits", 4.0).unwrap_err().to_string();
    assert!(
        e.contains("ambiguous") && e.contains("dac.bits") && e.contains("adc.bits"),
        "{e}"
    );
    let e = p.set("adc.bits", 6.5).unwrap_err().to_string();
    assert!(e.contains("adc.bits"), "{e}");
    let e = p.set("prog_noise_scale", -1.0).unwrap_err().to_string();
    assert!(e.contains("prog_noise_scale"), "{e}");
    let e = p
        .set_str("mapping.scale", "diagonal")
        .unwrap_err()
        .to_string();
    assert!(e.contains("diagonal"), "{e}");
    assert_eq!(p, before, "a failed set must leave the preset unchanged");
    let keys = p.keys().unwrap();
    assert!(keys.iter().any(|k| k == "cell.drift_nu_mean.slope"));
}

fn weights(seed: u64, n: usize) -> Vec<f32> {
    let s = Stream::new(seed, "w");
    (0..n as u64).map(|i| 0.2 * s.normal(i)).collect()
}

/// Everything the preset does to a layer, in order: program, age, compensate, read, DAC, ADC,
/// neurons, IR drop, pulsed updates.
type Outputs = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f64>, Vec<f32>);

fn run(p: &Preset, seed: u64) -> Outputs {
    let (out, inp) = (16, 24);
    let w = weights(1, out * inp);
    let s = Stream::new(seed, "dev");
    let arr = p
        .cell
        .program(&w, out, inp, p.mapping.scale, s.child("layer0"))
        .unwrap();
    let now = p
        .cell
        .age(&arr, p.inference.t_inference_s, s.child("layer0"))
        .unwrap();
    let f = p
        .cell
        .compensation(&arr, &now, p.inference.drift_compensation)
        .unwrap();
    let read = p.cell.read(&now, 3, s.child("layer0"));
    let w_eff = arr.weights(&read.g_pos_us, &read.g_neg_us, &f).unwrap();
    let mut x: Vec<f32> = weights(2, 64).iter().map(|v| v * 4.0).collect();
    p.dac.convert(&mut x, 0, s.child("dac"));
    let mut y = weights(3, 64).iter().map(|v| v * 30.0).collect::<Vec<_>>();
    p.adc.convert(&mut y, 0, s.child("adc"));
    let neurons = p.neuron.instantiate(64, s.child("neurons")).unwrap();
    let mut z: Vec<f32> = weights(4, 64).iter().map(|v| v * 5.0).collect();
    neurons.apply(&mut z, 0, 0, s.child("neurons")).unwrap();
    let g: Vec<f64> = arr.g_pos_us.iter().map(|&v| v as f64).collect();
    let v: Vec<f64> = (0..out).map(|i| 0.1 * i as f64 / out as f64).collect();
    let i_out = p.ir_drop.solve_approx(&g, &v, out, inp).unwrap().i_out_ua;
    let mut upd = Vec::new();
    if let Some(u) = &p.update {
        let mut a = u.instantiate(32, s.child("upd")).unwrap();
        let pulses: Vec<i32> = (0..32).map(|j| j - 16).collect();
        a.pulse(&pulses, 0, s.child("upd")).unwrap();
        upd = a.w;
    }
    (w_eff, x, y, z, i_out, upd)
}

/// As every non-ideality scale goes to 0, each preset becomes exactly the ideal device with the
/// same conductance range: same effective weights bit for bit, transparent converters, nominal
/// neurons, ideal MVM currents, and exactly n·dw_min pulse updates.
#[test]
fn every_preset_becomes_ideal_as_nonidealities_vanish() {
    for name in Preset::builtin_names() {
        let mut p = Preset::builtin(name).unwrap();
        p.scale_nonidealities(0.0).unwrap();
        let (g_min, g_max) = p.cell.g_range_us();
        let mut ideal = p.clone();
        ideal.cell = CellModel::Ideal(IdealCell {
            g_max_us: g_max,
            g_min_us: g_min,
        });
        let (w_eff, x, y, z, i_out, upd) = run(&p, 5);
        let (w_ideal, ..) = run(&ideal, 6);
        assert_eq!(w_eff, w_ideal, "{name}: weights differ from the ideal cell");
        let w = weights(1, 16 * 24);
        for (a, b) in w_eff.iter().zip(&w) {
            assert!(
                (a - b).abs() <= 1e-6 * 0.2 * 5.0,
                "{name}: mapping round trip {a} vs {b}"
            );
        }
        let x0: Vec<f32> = weights(2, 64).iter().map(|v| v * 4.0).collect();
        assert_eq!(x, x0, "{name}: DAC not transparent");
        let y0: Vec<f32> = weights(3, 64).iter().map(|v| v * 30.0).collect();
        assert_eq!(y, y0, "{name}: ADC not transparent");
        let n = &p.neuron;
        let z0: Vec<f32> = weights(4, 64)
            .iter()
            .map(|v| ((n.slope * (*v * 5.0) as f64 + n.bias).clamp(n.lo, n.hi)) as f32)
            .collect();
        assert_eq!(z, z0, "{name}: neurons not nominal");
        let s = Stream::new(5, "dev");
        let arr = p
            .cell
            .program(&w, 16, 24, p.mapping.scale, s.child("layer0"))
            .unwrap();
        let g: Vec<f64> = arr.g_pos_us.iter().map(|&v| v as f64).collect();
        let v: Vec<f64> = (0..16).map(|i| 0.1 * i as f64 / 16.0).collect();
        assert_eq!(
            i_out,
            ideal_currents(&g, &v, 16, 24),
            "{name}: IR drop not ideal"
        );
        if let Some(u) = &p.update {
            for (j, &wj) in upd.iter().enumerate() {
                let n = j as i32 - 16;
                let mut e = 0.0f32;
                for _ in 0..n.unsigned_abs() {
                    e += n.signum() as f32 * u.dw_min as f32;
                    e = e.clamp(u.w_min as f32, u.w_max as f32);
                }
                assert_eq!(wj, e, "{name}: update device {j} not ideal");
            }
        }
    }
}

/// Small scales give small deviations (continuity towards the ideal device).
#[test]
fn pcm_deviation_shrinks_with_scale() {
    let w = weights(1, 16 * 24);
    let mut prev = f64::INFINITY;
    for s in [1.0, 0.1, 0.01] {
        let mut p = Preset::builtin("pcm").unwrap();
        p.scale_nonidealities(s).unwrap();
        let c = &p.cell;
        let we = c
            .weights_at(
                &w,
                16,
                24,
                ScaleMode::Layer,
                3600.0,
                p.inference.drift_compensation,
                Stream::new(1, "x"),
            )
            .unwrap();
        let err = we
            .iter()
            .zip(&w)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(err < prev, "scale {s}: error {err} not below {prev}");
        prev = err;
    }
    assert!(prev < 0.01, "{prev}");
}

#[test]
fn results_are_deterministic_per_seed_and_counter() {
    let p = Preset::builtin("rram").unwrap();
    assert_eq!(run(&p, 1), run(&p, 1));
    assert_ne!(run(&p, 1).0, run(&p, 2).0);
    let q = Preset::builtin("pcm").unwrap();
    assert_eq!(run(&q, 1), run(&q, 1));
    assert_ne!(run(&q, 1).0, run(&q, 2).0);
    // per-read noise: same counter repeats, another counter differs
    let w = weights(1, 64);
    let s = Stream::new(1, "r");
    let arr = p.cell.program(&w, 8, 8, ScaleMode::Layer, s).unwrap();
    let now = p.cell.age(&arr, 0.0, s).unwrap();
    assert_eq!(p.cell.read(&now, 1, s), p.cell.read(&now, 1, s));
    assert_ne!(p.cell.read(&now, 1, s), p.cell.read(&now, 2, s));
    // programming one layer does not depend on which rows are programmed alongside: the first
    // output of an 8×8 layer equals the first output of a 1×8 layer with the same scale.
    let mut w1 = w[..8].to_vec();
    w1.push(w.iter().fold(0.0f32, |m, v| m.max(v.abs())));
    let arr8 = p.cell.program(&w, 8, 8, ScaleMode::Layer, s).unwrap();
    let arr1 = p.cell.program(&w1, 1, 9, ScaleMode::Layer, s).unwrap();
    assert_eq!(arr1.targets.scale_us, arr8.targets.scale_us);
    assert_eq!(&arr1.g_pos_us[..8], &arr8.g_pos_us[..8]);
}

#[test]
fn conv_weight_tensors_map_one_column_per_output_channel() {
    let p = Preset::builtin("ideal").unwrap();
    let data = weights(7, 4 * 3 * 2 * 2);
    let t = sim::tensor(&[4, 3, 2, 2], data.clone()).unwrap();
    let s = Stream::new(1, "conv");
    let arr = p.cell.program_tensor(&t, ScaleMode::Output, s).unwrap();
    assert_eq!((arr.out, arr.inp), (4, 12));
    assert_eq!(arr.targets.scale_us.len(), 4);
    let back = arr
        .weights_tensor(&arr.g_pos_us, &arr.g_neg_us, &[1.0], &[4, 3, 2, 2])
        .unwrap();
    for (a, b) in back.iter().zip(&data) {
        assert!((a - b).abs() < 1e-6);
    }
    // each output channel's abs-max weight sits at g_max
    for o in 0..4 {
        let r = o * 12..(o + 1) * 12;
        let m = arr.g_pos_us[r.clone()]
            .iter()
            .chain(&arr.g_neg_us[r])
            .fold(0.0f32, |m, &g| m.max(g));
        assert!((m - 25.0).abs() < 1e-5, "channel {o}: max G {m}");
    }
    let bad = sim::tensor(&[5], vec![0.0; 5]).unwrap();
    assert!(p.cell.program_tensor(&bad, ScaleMode::Layer, s).is_err());
}
