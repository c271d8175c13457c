//! The rate-coded integrate-and-fire neuron against its definition: the closed-form count equals
//! the tick-by-tick simulation, the random phase is unbiased stochastic rounding within one tick,
//! the leaky neuron follows the LIF rate curve, and the preset's `[neuron]` spiking keys.
//! Expected values are written out here (hand-computed counts, σ by its formula, the LIF formula),
//! not taken from the code under test.

use devices::Preset;
use devices::neurons::{HardSigmoid, IntegrateFire, NeuronKind, SpikePhase, unit_linear};
use sim::{Act, Stream};

fn lif(window: u32, threshold: f64, leak: f64, phase: SpikePhase) -> IntegrateFire {
    IntegrateFire {
        window,
        threshold,
        leak,
        phase,
    }
}

#[test]
fn hand_worked_counts() {
    // W = 4, c = 0.3 from 0.5: 0.8, 1.1 → spike (0.1), 0.4, 0.7: one spike.
    let n = lif(4, 1.0, 0.0, SpikePhase::Zero);
    assert_eq!(n.spikes(0.3, 0.5), 1);
    assert_eq!(n.spikes_ticks(0.3, 0.5), 1);
    // Saturation: at most one spike per tick; negative current never fires.
    assert_eq!(n.spikes(3.0, 0.9), 4);
    assert_eq!(n.spikes(-0.2, 0.99), 0);
    // Leak 0.5, c = 0.6 from 0: 0.6, 0.9, 1.05 → spike (0.05), 0.625: one spike (IF would give 2).
    let l = lif(4, 1.0, 0.5, SpikePhase::Zero);
    assert_eq!(l.spikes(0.6, 0.0), 1);
    assert_eq!(n.spikes(0.6, 0.0), 2);
    // Threshold 2: c = 0.5 over 8 ticks from 1.0 → ⌊(1 + 4)/2⌋ = 2.
    assert_eq!(lif(8, 2.0, 0.0, SpikePhase::Zero).spikes(0.5, 1.0), 2);
    assert_eq!(lif(8, 2.0, 0.0, SpikePhase::Zero).spikes_ticks(0.5, 1.0), 2);
}

/// On dyadic values every sum is exact, so the closed form must equal the tick simulation exactly,
/// including the boundary cases where the potential lands on the threshold.
#[test]
fn closed_form_equals_tick_simulation_exactly_on_dyadic_values() {
    let mut boundary = 0;
    for w in [1u32, 2, 4, 8, 16, 64] {
        for th in [0.5, 1.0, 2.0] {
            let n = lif(w, th, 0.0, SpikePhase::Zero);
            for k in -8i64..=(5 * w as i64 + 8) {
                let c = th * k as f64 / (4.0 * w as f64);
                for m in 0..64 {
                    let u0 = th * m as f64 / 64.0;
                    let a = n.spikes(c, u0);
                    let b = n.spikes_ticks(c, u0);
                    assert_eq!(a, b, "W {w} θ {th} c {c} u0 {u0}");
                    if ((u0 + c * w as f64) / th).fract() == 0.0 {
                        boundary += 1;
                    }
                }
            }
        }
    }
    assert!(boundary > 100, "boundary cases exercised: {boundary}");
}

/// On arbitrary values the two may differ only where the potential is within rounding of the
/// threshold.
#[test]
fn closed_form_equals_tick_simulation_on_random_values() {
    let s = Stream::new(11, "spiking.closed_form");
    let mut differ = 0;
    for i in 0..100_000u64 {
        let w = 1 + s.below(4 * i, 200) as u32;
        let th = 0.25 + 2.0 * s.uniform(4 * i + 1) as f64;
        let c = th * (1.6 * s.uniform(4 * i + 2) as f64 - 0.3);
        let u0 = th * s.uniform(4 * i + 3) as f64;
        let n = lif(w, th, 0.0, SpikePhase::Random);
        let (a, b) = (n.spikes(c, u0), n.spikes_ticks(c, u0));
        if a != b {
            let x = (u0 + c * w as f64) / th;
            assert!(
                (x - x.round()).abs() < 1e-9 * w as f64 && a.abs_diff(b) == 1,
                "W {w} θ {th} c {c} u0 {u0}: {a} vs {b}"
            );
            differ += 1;
        }
    }
    assert!(differ < 10, "{differ} boundary disagreements");
}

/// σ of `my_hard_sig` written out: clamp(z/2, 0, 1).
fn my_hard_sig(z: f64) -> f64 {
    (z / 2.0).clamp(0.0, 1.0)
}

#[test]
fn random_phase_is_unbiased_within_one_tick() {
    let (s_lin, b_lin) = unit_linear(Act::MyHardSig).unwrap();
    assert_eq!((s_lin, b_lin), (0.5, 0.0));
    let st = Stream::new(5, "spiking.phase");
    let draws = 20_000u64;
    for w in [1u32, 4, 16, 64] {
        let n = lif(w, 1.0, 0.0, SpikePhase::Random);
        for j in 0..=80 {
            let z = -1.0 + 0.05 * j as f64;
            let sig = my_hard_sig(z);
            let ps = st.sub(w as u64).sub(j);
            let mut sum = 0.0;
            for i in 0..draws {
                let y = n.rate(n.spikes(s_lin * z + b_lin, n.initial_potential(&ps, i))) as f64;
                assert!(
                    (y - sig).abs() < 1.0 / w as f64,
                    "W {w} z {z}: y {y} vs σ {sig}"
                );
                sum += y;
            }
            let mean = sum / draws as f64;
            // y takes ⌊σW⌋/W or ⌈σW⌉/W: Bernoulli with p = frac(σW).
            let p = (sig * w as f64).fract();
            let se = (p * (1.0 - p)).sqrt() / w as f64 / (draws as f64).sqrt();
            assert!(
                (mean - sig).abs() < 5.0 * se + 1e-6,
                "W {w} z {z}: mean {mean} vs σ {sig} (se {se})"
            );
        }
    }
}

#[test]
fn deterministic_phases_round_down_and_to_nearest() {
    let st = Stream::new(5, "unused");
    for w in [3u32, 16] {
        let zero = lif(w, 1.0, 0.0, SpikePhase::Zero);
        let half = lif(w, 1.0, 0.0, SpikePhase::Half);
        for j in 0..=40 {
            // Values of σ·W away from the rounding boundaries.
            let x = j as f64 * 0.37 + 0.05;
            let c = x / w as f64;
            let want_down = x.floor().min(w as f64);
            let want_near = x.round().min(w as f64);
            assert_eq!(
                zero.spikes(c, zero.initial_potential(&st, j)) as f64,
                want_down
            );
            assert_eq!(
                half.spikes(c, half.initial_potential(&st, j)) as f64,
                want_near
            );
        }
    }
}

/// Leaky IF: silent below c = λθ, one spike per tick from c = θ, and in between the LIF rate curve
/// λ / ln(c / (c − λθ)).
#[test]
fn leaky_neuron_follows_the_lif_rate_curve() {
    let (lam, th, w) = (0.02, 1.0, 20_000u32);
    let n = lif(w, th, lam, SpikePhase::Random);
    let st = Stream::new(3, "spiking.leak");
    for i in 0..200 {
        let u0 = n.initial_potential(&st, i);
        assert_eq!(n.spikes(0.0199, u0), 0);
        assert_eq!(n.spikes(1.0, u0), w);
    }
    let z = lif(w, th, lam, SpikePhase::Zero);
    let mut last = 0;
    for k in 0..=100 {
        let c = k as f64 / 100.0;
        let cnt = z.spikes(c, 0.0);
        assert!(cnt >= last, "not monotone at c {c}");
        last = cnt;
        if c > 0.025 && c < 0.96 {
            let want = lam / (c / (c - lam * th)).ln();
            let got = z.rate(cnt) as f64;
            assert!(
                (got - want).abs() < 0.002,
                "c {c}: rate {got} vs LIF {want}"
            );
        }
    }
}

#[test]
fn neuron_array_spiking_counts_its_spikes() {
    let p = HardSigmoid {
        kind: NeuronKind::Spiking,
        window: 8,
        slope: 0.5,
        noise_std: 0.05,
        ..HardSigmoid::default()
    };
    let n = 1000;
    let s = Stream::new(2, "neurons");
    let arr = p.instantiate(n, s).unwrap();
    let mut x: Vec<f32> = (0..n).map(|i| -0.5 + 3.0 * i as f32 / n as f32).collect();
    let x0 = x.clone();
    let spikes = arr.apply(&mut x, 0, 3, s).unwrap();
    let from_y: f64 = x.iter().map(|&y| y as f64 * 8.0).sum();
    assert_eq!(spikes as f64, from_y.round());
    assert!(
        x.iter()
            .all(|&y| (y * 8.0).fract() == 0.0 && (0.0..=1.0).contains(&y))
    );
    // Same step counter: same result; another step: new noise and phase.
    let mut again = x0.clone();
    assert_eq!(arr.apply(&mut again, 0, 3, s).unwrap(), spikes);
    assert_eq!(again, x);
    let mut other = x0.clone();
    arr.apply(&mut other, 0, 4, s).unwrap();
    assert_ne!(other, x);
    // Analog neurons fire nothing.
    let mut y = x0.clone();
    let analog = HardSigmoid {
        slope: 0.5,
        ..HardSigmoid::default()
    };
    assert_eq!(
        analog
            .instantiate(n, s)
            .unwrap()
            .apply(&mut y, 0, 3, s)
            .unwrap(),
        0
    );
}

#[test]
fn preset_neuron_kind_and_spiking_keys_are_settable() {
    let mut p = Preset::builtin("ideal").unwrap();
    assert_eq!(p.neuron.kind, NeuronKind::Analog);
    p.set_str("neuron.kind", "spiking").unwrap();
    p.set_str("neuron.window", "16").unwrap();
    p.set_str("leak", "0.05").unwrap();
    p.set_str("neuron.phase", "half").unwrap();
    assert_eq!(p.neuron.kind, NeuronKind::Spiking);
    assert_eq!(
        p.neuron.integrate_fire(),
        lif(16, 1.0, 0.05, SpikePhase::Half)
    );
    let before = p.clone();
    for (k, v, what) in [
        ("neuron.window", "0", "window"),
        ("neuron.leak", "1", "leak"),
        ("neuron.threshold", "-1", "threshold"),
        ("neuron.kind", "digital", "kind"),
        ("neuron.phase", "sometimes", "phase"),
    ] {
        let e = p.set_str(k, v).unwrap_err().to_string();
        assert!(e.contains(what), "{k}={v}: {e}");
        assert_eq!(p, before, "{k}={v} changed the preset");
    }
    // Scaling the non-idealities scales the leak; at 0 the neurons are analog again.
    let mut half = p.clone();
    half.scale_nonidealities(0.5).unwrap();
    assert_eq!(
        (half.neuron.kind, half.neuron.leak),
        (NeuronKind::Spiking, 0.025)
    );
    let mut off = p.clone();
    off.scale_nonidealities(0.0).unwrap();
    assert_eq!(
        (off.neuron.kind, off.neuron.leak),
        (NeuronKind::Analog, 0.0)
    );
    // The TOML round trip keeps the spiking table.
    let back = Preset::from_toml(&p.to_toml().unwrap(), "round trip").unwrap();
    assert_eq!(back, p);
}

/// With leak, `spikes` (tick recursion with its saturated short cuts) equals the recursion written
/// out here, over currents and phases inside, at and beyond both saturation edges.
#[test]
fn leaky_counts_equal_the_written_out_recursion() {
    for &(window, threshold, leak) in &[
        (16u32, 1.0f64, 0.1f64),
        (64, 1.0, 0.02),
        (8, 0.7, 0.5),
        (5, 1.3, 1.0),
    ] {
        let n = lif(window, threshold, leak, SpikePhase::Zero);
        for ci in -40..=60 {
            let c = threshold * ci as f64 / 40.0;
            for ui in -4..=12 {
                let u0 = threshold * ui as f64 / 10.0;
                let (mut u, mut k) = (u0, 0u32);
                for _ in 0..window {
                    u = (1.0 - leak) * u + c;
                    if u >= threshold {
                        k += 1;
                        u -= threshold;
                    }
                }
                assert_eq!(
                    n.spikes(c, u0),
                    k,
                    "W {window} θ {threshold} λ {leak} c {c} u0 {u0}"
                );
            }
        }
    }
}
