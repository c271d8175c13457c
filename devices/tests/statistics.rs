//! Device statistics against their formulas. Every expected value below is computed from the
//! published formula written out in the test (not by the code under test); tolerances are 5 standard
//! errors of the estimator, with fixed seeds, so the tests are deterministic and can fail.

use devices::cells::{CellModel, PcmCell, RramCell};
use devices::neurons::HardSigmoid;
use devices::pulsed::PulsedCell;
use devices::{Fault, ScaleMode};
use sim::Stream;

fn mean_std(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    let v = x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (n - 1.0);
    (m, v.sqrt())
}

/// Weights `[1, x, x, ..., x]` (one output): the first maps to g_max, the others to x·g_max.
fn layer_at(x: f32, n: usize) -> Vec<f32> {
    let mut w = vec![x; n + 1];
    w[0] = 1.0;
    w
}

/// aihwkit PCMLikeNoiseModel: σ_prog = (0.26348 + 1.9650 x − 1.1731 x²)·g_max/25 µS.
#[test]
fn pcm_programming_noise_std_follows_polynomial() {
    let n = 20_000usize;
    for (g_max, x) in [
        (25.0, 0.1f64),
        (25.0, 0.4),
        (25.0, 0.75),
        (25.0, 1.0),
        (50.0, 0.5),
    ] {
        let cell = CellModel::Pcm(PcmCell {
            g_max_us: g_max,
            ..PcmCell::default()
        });
        let w = layer_at(x as f32, n);
        let arr = cell
            .program(&w, 1, n + 1, ScaleMode::Layer, Stream::new(7, "pcm-prog"))
            .unwrap();
        let g: Vec<f64> = arr.g_pos_us[1..].iter().map(|&v| v as f64).collect();
        let (m, s) = mean_std(&g);
        let target = x * g_max;
        let sigma = (0.26348 + 1.9650 * x - 1.1731 * x * x) * g_max / 25.0;
        let tol_s = 5.0 * sigma / (2.0 * n as f64).sqrt();
        let tol_m = 5.0 * sigma / (n as f64).sqrt();
        assert!(
            (s - sigma).abs() < tol_s,
            "g_max {g_max}, x {x}: std {s} vs σ_prog {sigma} (tol {tol_s})"
        );
        assert!(
            (m - target).abs() < tol_m,
            "x {x}: mean {m} vs target {target}"
        );
    }
}

fn phi(z: f64) -> f64 {
    0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)
}

/// ν = |μ + σ ξ| with μ = clamp(−0.0155 ln x + 0.0244, 0.049, 0.1), σ = clamp(−0.0125 ln x − 0.0059,
/// 0.008, 0.045); measured from the drift itself: ν = ln(G_prog / G(t)) / ln((t + t0)/t0).
#[test]
fn pcm_drift_exponent_distribution() {
    let n = 20_000usize;
    let t_inf = 86_400.0;
    let t0 = 20.0;
    for x in [0.02f64, 0.2, 0.8] {
        let cell = CellModel::Pcm(PcmCell {
            prog_noise_scale: 0.0,
            read_noise_scale: 0.0,
            ..PcmCell::default()
        });
        let w = layer_at(x as f32, n);
        let s = Stream::new(11, "pcm-drift");
        let arr = cell.program(&w, 1, n + 1, ScaleMode::Layer, s).unwrap();
        let now = cell.age(&arr, t_inf, s).unwrap();
        let l = ((t_inf + t0) / t0).ln();
        let nu: Vec<f64> = (1..=n)
            .map(|k| (arr.g_pos_us[k] as f64 / now.g_pos_us[k] as f64).ln() / l)
            .collect();
        let mu = (-0.0155 * x.ln() + 0.0244).clamp(0.049, 0.1);
        let sd = (-0.0125 * x.ln() - 0.0059).clamp(0.008, 0.045);
        // folded normal |N(μ, σ²)|
        let mean = sd * (2.0 / std::f64::consts::PI).sqrt() * (-mu * mu / (2.0 * sd * sd)).exp()
            + mu * (1.0 - 2.0 * phi(-mu / sd));
        let std = (mu * mu + sd * sd - mean * mean).sqrt();
        let (m, s) = mean_std(&nu);
        assert!(
            (m - mean).abs() < 5.0 * std / (n as f64).sqrt(),
            "x {x}: mean ν {m} vs {mean}"
        );
        assert!(
            (s - std).abs() < 6.0 * std / (2.0 * n as f64).sqrt(),
            "x {x}: std ν {s} vs {std}"
        );
    }
}

/// Accumulated 1/f noise: relative deviation std = Q_s sqrt(ln((t + t_read)/(2 t_read))),
/// t = t_inference + 20 s, t_read = 250 ns, Q_s = min(0.0088 / max(x^0.65, 1e-3), 0.2).
#[test]
fn pcm_read_noise_grows_with_log_time() {
    let n = 20_000usize;
    let mut last = 0.0;
    for t_inf in [0.0f64, 1.0, 3600.0, 30.0 * 86_400.0] {
        for x in [0.1f64, 0.5, 1.0] {
            let cell = CellModel::Pcm(PcmCell {
                prog_noise_scale: 0.0,
                drift_scale: 0.0,
                ..PcmCell::default()
            });
            let w = layer_at(x as f32, n);
            let s = Stream::new(5, "pcm-read");
            let arr = cell.program(&w, 1, n + 1, ScaleMode::Layer, s).unwrap();
            let now = cell.age(&arr, t_inf, s).unwrap();
            let rel: Vec<f64> = (1..=n)
                .map(|k| now.g_pos_us[k] as f64 / arr.g_pos_us[k] as f64 - 1.0)
                .collect();
            let t = t_inf + 20.0;
            let q = (0.0088 / x.powf(0.65).max(1e-3)).min(0.2);
            let sigma = q * ((t + 250e-9) / (2.0 * 250e-9)).ln().sqrt();
            let (m, s) = mean_std(&rel);
            assert!(
                (s - sigma).abs() < 5.0 * sigma / (2.0 * n as f64).sqrt(),
                "t {t_inf}, x {x}: std {s} vs {sigma}"
            );
            assert!(m.abs() < 5.0 * sigma / (n as f64).sqrt(), "mean {m}");
            if x == 0.5 {
                assert!(sigma > last);
                last = sigma;
            }
        }
    }
}

#[test]
fn pcm_q_s_is_clipped_for_small_conductances() {
    let c = PcmCell::default();
    assert_eq!(c.q_s(0.0), 0.2);
    assert!((c.q_s(25.0) - 0.0088).abs() < 1e-15);
}

/// Drift compensation (global): the mean |w| after compensation equals the mean |w| right after
/// programming.
#[test]
fn pcm_global_drift_compensation_restores_mean_abs_weight() {
    let cell = CellModel::Pcm(PcmCell::default());
    let s = Stream::new(3, "comp");
    let w: Vec<f32> = (0..4096).map(|i| s.normal(i) * 0.3).collect();
    let arr = cell.program(&w, 64, 64, ScaleMode::Layer, s).unwrap();
    let now = cell.age(&arr, 1e6, s).unwrap();
    let w0 = arr.weights(&arr.g_pos_us, &arr.g_neg_us, &[1.0]).unwrap();
    let raw = arr.weights(&now.g_pos_us, &now.g_neg_us, &[1.0]).unwrap();
    let f = cell
        .compensation(&arr, &now, devices::DriftCompensation::Global)
        .unwrap();
    let wt = arr.weights(&now.g_pos_us, &now.g_neg_us, &f).unwrap();
    let mabs = |v: &[f32]| v.iter().map(|x| x.abs() as f64).sum::<f64>() / v.len() as f64;
    assert!(mabs(&raw) < 0.8 * mabs(&w0), "drift should shrink weights");
    assert!((mabs(&wt) / mabs(&w0) - 1.0).abs() < 1e-5);
    let fo = cell
        .compensation(&arr, &now, devices::DriftCompensation::PerOutput)
        .unwrap();
    assert_eq!(fo.len(), 64);
    let wo = arr.weights(&now.g_pos_us, &now.g_neg_us, &fo).unwrap();
    for o in 0..64 {
        let r = o * 64..(o + 1) * 64;
        assert!((mabs(&wo[r.clone()]) / mabs(&w0[r]) - 1.0).abs() < 1e-5);
    }
}

/// Stuck-at faults are Bernoulli per device: counts within 5 binomial standard deviations; stuck
/// devices sit at g_min / g_max exactly.
#[test]
fn rram_fault_rates() {
    let (p_off, p_on) = (0.0175, 0.0904);
    let cell = RramCell {
        stuck_off_prob: p_off,
        stuck_on_prob: p_on,
        ..RramCell::default()
    };
    let g_min = (225.0f64 / 4.5) as f32;
    let model = CellModel::Rram(cell);
    let s = Stream::new(9, "faults");
    let w: Vec<f32> = (0..50_000).map(|i| s.uniform(i) * 2.0 - 1.0).collect();
    let arr = model.program(&w, 100, 500, ScaleMode::Layer, s).unwrap();
    let faults: Vec<Fault> = arr
        .fault_pos
        .iter()
        .chain(&arr.fault_neg)
        .copied()
        .collect();
    let g: Vec<f32> = arr.g_pos_us.iter().chain(&arr.g_neg_us).copied().collect();
    let n = faults.len() as f64;
    for (kind, p) in [(Fault::StuckOff, p_off), (Fault::StuckOn, p_on)] {
        let count = faults.iter().filter(|&&f| f == kind).count() as f64;
        let sd = (n * p * (1.0 - p)).sqrt();
        assert!(
            (count - n * p).abs() < 5.0 * sd,
            "{kind:?}: {count} of {n}, expected {}",
            n * p
        );
    }
    for (f, g) in faults.iter().zip(&g) {
        match f {
            Fault::StuckOff => assert_eq!(*g, g_min),
            Fault::StuckOn => assert_eq!(*g, 225.0),
            Fault::None => {}
        }
    }
}

/// RRAM programming noise σ = max(4.782321 − 0.009107 G, 0) µS (Milo et al. 2021 fit), and levels.
#[test]
fn rram_programming_noise_and_levels() {
    let n = 20_000usize;
    let model = CellModel::Rram(RramCell::default());
    let w = layer_at(0.5, n);
    let arr = model
        .program(&w, 1, n + 1, ScaleMode::Layer, Stream::new(1, "rram"))
        .unwrap();
    let g_min = 225.0 / 4.5;
    let target = g_min + 0.5 * (225.0 - g_min);
    let sigma = 4.782321 - 0.009107 * target;
    let g: Vec<f64> = arr.g_pos_us[1..].iter().map(|&v| v as f64).collect();
    let (m, s) = mean_std(&g);
    assert!(
        (s - sigma).abs() < 5.0 * sigma / (2.0 * n as f64).sqrt(),
        "std {s} vs {sigma}"
    );
    assert!((m - target).abs() < 5.0 * sigma / (n as f64).sqrt());

    let levels = 8u32;
    let model = CellModel::Rram(RramCell {
        levels,
        prog_noise_scale: 0.0,
        ..RramCell::default()
    });
    let st = Stream::new(2, "lv");
    let w: Vec<f32> = (0..2000).map(|i| st.uniform(i) * 2.0 - 1.0).collect();
    let arr = model.program(&w, 20, 100, ScaleMode::Layer, st).unwrap();
    let step = (225.0 - g_min) / (levels - 1) as f64;
    for (k, (&g, &t)) in arr.g_pos_us.iter().zip(&arr.targets.g_pos_us).enumerate() {
        let lv = (g as f64 - g_min) / step;
        assert!(
            (lv - lv.round()).abs() < 1e-4,
            "device {k}: {g} is not a level"
        );
        assert!(
            (g as f64 - t).abs() <= step / 2.0 + 1e-4,
            "device {k}: not the nearest level"
        );
    }
}

/// Soft bounds (γ = 1, own bound): from w0, n up pulses give w_max − (w_max − w0)(1 − dw/w_max)^n.
#[test]
fn pulsed_soft_bounds_closed_form() {
    let p = PulsedCell {
        dw_min: 0.01,
        dw_min_dtod: 0.0,
        dw_min_std: 0.0,
        w_max: 1.0,
        w_min: -1.0,
        w_max_dtod: 0.0,
        w_min_dtod: 0.0,
        gamma_up: 1.0,
        gamma_down: 1.0,
        mean_bound_reference: false,
        ..PulsedCell::default()
    };
    let s = Stream::new(4, "sb");
    let mut a = p.instantiate(1, s).unwrap();
    for n in 1..=300 {
        a.pulse(&[1], n, s).unwrap();
        let expect = 1.0 - (1.0f64 - 0.01).powi(n as i32);
        assert!(
            (a.w[0] as f64 - expect).abs() < 1e-5,
            "n {n}: {} vs {expect}",
            a.w[0]
        );
    }
    // down from the current value w_a: w_min + (w_a − w_min)(1 − dw/|w_min|)^n
    let wa = a.w[0] as f64;
    a.pulse(&[-50], 1000, s).unwrap();
    let expect = -1.0 + (wa + 1.0) * (1.0f64 - 0.01).powi(50);
    assert!((a.w[0] as f64 - expect).abs() < 1e-5);
}

/// Up/down asymmetry β > 0: up steps dw, down steps (1 − β) dw (aihwkit up_bias/down_bias).
#[test]
fn pulsed_asymmetry_and_hard_bounds() {
    let beta = 0.2;
    let p = PulsedCell {
        dw_min: 0.01,
        dw_min_dtod: 0.0,
        dw_min_std: 0.0,
        up_down: beta,
        w_max_dtod: 0.0,
        w_min_dtod: 0.0,
        ..PulsedCell::default()
    };
    let s = Stream::new(4, "asym");
    let mut a = p.instantiate(1, s).unwrap();
    a.pulse(&[10], 0, s).unwrap();
    a.pulse(&[-10], 1, s).unwrap();
    assert!((a.w[0] as f64 - 10.0 * 0.01 * beta).abs() < 1e-6);
    // constant steps clip at the hard bound w_max = 0.6
    a.pulse(&[1000], 2, s).unwrap();
    assert_eq!(a.w[0], 0.6);
}

/// Cycle-to-cycle: one pulse's step has std dw·dw_min_std; device-to-device: the mean step per
/// device has std dw·dw_min_dtod; bounds vary with std w_max·w_max_dtod.
#[test]
fn pulsed_c2c_and_d2d_variation() {
    let n = 20_000usize;
    let dw = 0.001;
    let p = PulsedCell {
        dw_min: dw,
        dw_min_dtod: 0.0,
        dw_min_std: 0.3,
        ..PulsedCell::default()
    };
    let s = Stream::new(8, "c2c");
    let mut a = p.instantiate(n, s).unwrap();
    a.pulse(&vec![1; n], 0, s).unwrap();
    let steps: Vec<f64> = a.w.iter().map(|&w| w as f64).collect();
    let (m, sd) = mean_std(&steps);
    let want = dw * 0.3;
    assert!(
        (sd - want).abs() < 5.0 * want / (2.0 * n as f64).sqrt(),
        "c2c std {sd} vs {want}"
    );
    assert!((m - dw).abs() < 5.0 * want / (n as f64).sqrt());

    let p = PulsedCell {
        dw_min: dw,
        dw_min_dtod: 0.2,
        dw_min_std: 0.0,
        w_max_dtod: 0.1,
        ..PulsedCell::default()
    };
    let mut a = p.instantiate(n, s).unwrap();
    a.pulse(&vec![1; n], 0, s).unwrap();
    let steps: Vec<f64> = a.w.iter().map(|&w| w as f64).collect();
    let (_, sd) = mean_std(&steps);
    let want = dw * 0.2;
    assert!(
        (sd - want).abs() < 5.0 * want / (2.0 * n as f64).sqrt(),
        "d2d std {sd} vs {want}"
    );
    let bounds: Vec<f64> = a.w_max.iter().map(|&w| w as f64).collect();
    let (mb, sb) = mean_std(&bounds);
    assert!((sb - 0.06).abs() < 5.0 * 0.06 / (2.0 * n as f64).sqrt());
    assert!((mb - 0.6).abs() < 5.0 * 0.06 / (n as f64).sqrt());
    // the same device under the same counter repeats; another counter differs
    let mut b1 = p.instantiate(4, s).unwrap();
    let mut b2 = b1.clone();
    let noisy = PulsedCell {
        dw_min_std: 0.3,
        ..p.clone()
    };
    let mut c1 = noisy.instantiate(4, s).unwrap();
    let mut c2 = c1.clone();
    b1.pulse(&[3, -2, 0, 5], 7, s).unwrap();
    b2.pulse(&[3, -2, 0, 5], 7, s).unwrap();
    assert_eq!(b1, b2);
    c1.pulse(&[3, -2, 0, 5], 7, s).unwrap();
    c2.pulse(&[3, -2, 0, 5], 8, s).unwrap();
    assert_ne!(c1.w, c2.w);
    assert_eq!(c1.pulses_for(&[0.0026, -0.0014, 0.0004]), vec![3, -1, 0]);
}

/// Neuron gain spread, offset spread and evaluation noise, each against its σ.
#[test]
fn neuron_spreads_and_noise() {
    let n = 20_000usize;
    let s = Stream::new(6, "neurons");
    let base = HardSigmoid {
        lo: -100.0,
        hi: 100.0,
        ..HardSigmoid::default()
    };
    let p = HardSigmoid {
        gain_dtod: 0.05,
        ..base.clone()
    };
    let arr = p.instantiate(n, s).unwrap();
    let mut x = vec![2.0f32; n];
    arr.apply(&mut x, 0, 0, s).unwrap();
    let g: Vec<f64> = x.iter().map(|&y| y as f64 / 2.0).collect();
    let (m, sd) = mean_std(&g);
    assert!((sd - 0.05).abs() < 5.0 * 0.05 / (2.0 * n as f64).sqrt());
    assert!((m - 1.0).abs() < 5.0 * 0.05 / (n as f64).sqrt());

    let p = HardSigmoid {
        offset_dtod: 0.02,
        slope: 0.5,
        bias: 0.5,
        ..base.clone()
    };
    let arr = p.instantiate(n, s).unwrap();
    let mut x = vec![0.0f32; n];
    arr.apply(&mut x, 0, 0, s).unwrap();
    let y: Vec<f64> = x.iter().map(|&y| y as f64).collect();
    let (m, sd) = mean_std(&y);
    let want = 0.5 * 0.02;
    assert!((sd - want).abs() < 5.0 * want / (2.0 * n as f64).sqrt());
    assert!((m - 0.5).abs() < 5.0 * want / (n as f64).sqrt());

    let p = HardSigmoid {
        noise_std: 0.03,
        ..base
    };
    let arr = p.instantiate(n, s).unwrap();
    let mut x1 = vec![0.25f32; n];
    let mut x2 = x1.clone();
    let mut x3 = x1.clone();
    arr.apply(&mut x1, 0, 1, s).unwrap();
    arr.apply(&mut x2, 0, 1, s).unwrap();
    arr.apply(&mut x3, 0, 2, s).unwrap();
    assert_eq!(x1, x2);
    assert_ne!(x1, x3);
    let d: Vec<f64> = x1.iter().map(|&y| y as f64 - 0.25).collect();
    let (_, sd) = mean_std(&d);
    assert!((sd - 0.03).abs() < 5.0 * 0.03 / (2.0 * n as f64).sqrt());
    // evaluating a slice uses the same per-neuron draws as the whole population
    let mut part = vec![0.25f32; 10];
    arr.apply(&mut part, 100, 1, s).unwrap();
    assert_eq!(&part[..], &x1[100..110]);
}

/// ADC output noise: std σ before quantization (here none), drawn per (counter, element).
#[test]
fn adc_output_noise_std() {
    let n = 20_000usize;
    let adc = devices::Adc {
        bits: 0,
        bound: f64::INFINITY,
        noise_std: 0.06,
        ..devices::Adc::ideal()
    };
    let mut y = vec![1.0f32; n];
    adc.convert(&mut y, 0, Stream::new(1, "adc"));
    let d: Vec<f64> = y.iter().map(|&v| v as f64 - 1.0).collect();
    let (m, sd) = mean_std(&d);
    assert!((sd - 0.06).abs() < 5.0 * 0.06 / (2.0 * n as f64).sqrt());
    assert!(m.abs() < 5.0 * 0.06 / (n as f64).sqrt());
}
