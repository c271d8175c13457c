//! `epsim train` with a `[substrate]` section (EP on the substrate, `experiments::runs::substrate`): the
//! log carries substrate accuracy, pulses and the cost of a training step, the checkpoint loads as a model (`epsim eval`), and an
//! interrupted run resumed from its checkpoint equals an uninterrupted one bit for bit, for a
//! pulsed (ecram) and a re-programmed (pcm) substrate.

use std::path::Path;

use epsim_tests::{tiny_config, write_tiny_cifar};
use experiments::runs::TrainConfig;
use experiments::runs::{AnyConfig, TrainOptions};

fn setup(dir: &Path, preset: &str) -> TrainConfig {
    let train = dir.join("train.bin");
    let test = dir.join("test.bin");
    write_tiny_cifar(&train, 64, 1);
    write_tiny_cifar(&test, 32, 2);
    let text = tiny_config(&train, &test, 3)
        + &format!("[substrate]\npreset = \"netlist:{preset}\"\ntile = \"16x16\"\n");
    TrainConfig::from_toml(&text, "tiny.toml").unwrap()
}

fn tensors(path: &Path) -> Vec<(String, sim::Tensor)> {
    let f = ep::checkpoint::TensorFile::from_bytes(&std::fs::read(path).unwrap()).unwrap();
    f.tensors
}

#[test]
fn substrate_run_logs_pulses_and_resumes_exactly() {
    for (preset, pulsed) in [("ecram", true), ("pcm", false)] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = setup(dir.path(), preset);
        let straight = dir.path().join("straight");
        let opts = |out: &Path, stop: Option<usize>, resume: bool| TrainOptions {
            out_dir: Some(out.to_path_buf()),
            stop_after: stop,
            resume,
            ..Default::default()
        };
        let logs = experiments::runs::train(
            &sim::Cpu,
            &AnyConfig::Ep(cfg.clone()),
            &opts(&straight, None, false),
        )
        .unwrap();
        assert_eq!(logs.len(), 3);
        let split = dir.path().join("split");
        assert_eq!(
            experiments::runs::train(
                &sim::Cpu,
                &AnyConfig::Ep(cfg.clone()),
                &opts(&split, Some(1), false)
            )
            .unwrap()
            .len(),
            1
        );
        assert_eq!(
            experiments::runs::train(
                &sim::Cpu,
                &AnyConfig::Ep(cfg.clone()),
                &opts(&split, None, true)
            )
            .unwrap()
            .len(),
            2
        );
        let a = tensors(&straight.join("checkpoint.safetensors"));
        let b = tensors(&split.join("checkpoint.safetensors"));
        assert_eq!(a.len(), b.len());
        for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
            assert_eq!(na, nb);
            let (va, vb): (Vec<u32>, Vec<u32>) = (
                ta.iter().map(|v| v.to_bits()).collect(),
                tb.iter().map(|v| v.to_bits()).collect(),
            );
            assert!(va == vb, "{preset}: {na} differs after resume");
        }
        assert_eq!(
            a.iter().any(|(n, _)| n.starts_with("substrate.device.")),
            pulsed,
            "{preset}: pulsed device state stored iff the preset has an update device"
        );
        let log = std::fs::read_to_string(straight.join("log.jsonl")).unwrap();
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        let total = lines[2]["pulses_total"].as_u64().unwrap();
        let sum: u64 = lines.iter().map(|l| l["pulses"].as_u64().unwrap()).sum();
        assert_eq!(total, sum);
        assert_eq!(total > 0, pulsed, "{preset}: pulses {total}");
        assert_eq!(lines[0]["substrate"], format!("netlist:{preset}"));
        // The cost of a training step (4 per epoch: 64 images, batch 16): its pulse part is the
        // epoch's pulses × the pulse energy of the preset's law over the 4 steps; the phases
        // read the substrate (DAC, array, ADC) and update neurons; the parts add up.
        let p = devices::Preset::builtin(preset).unwrap();
        let pulse_j = p.cost.pulse_energy(p.cell.g_range_us().1);
        for l in &lines {
            let parts = &l["energy_per_step_parts_j"];
            let part = |k: &str| parts[k].as_f64().unwrap_or_else(|| panic!("{k}: {l}"));
            let want = l["pulses"].as_f64().unwrap() * pulse_j / 4.0;
            assert!(
                (part("pulses") - want).abs() <= 1e-12 * want.max(1e-300),
                "{l}"
            );
            for k in ["DAC", "array", "ADC", "neurons"] {
                assert!(part(k) > 0.0, "{preset}: {k} {l}");
            }
            let sum: f64 = experiments::cost::PARTS.iter().map(|k| part(k)).sum();
            let e = l["energy_per_step_j"].as_f64().unwrap();
            assert!((e - sum).abs() <= 1e-12 * e, "{l}");
            assert!(l["latency_per_step_s"].as_f64().unwrap() > 0.0, "{l}");
        }
        // The checkpoint is a model `epsim eval` can load: the effective weights.
        let net = experiments::classifier::load::load_model(
            &sim::Cpu,
            &straight.join("checkpoint.safetensors"),
            None,
        )
        .unwrap();
        assert_eq!(net.spec, {
            let mut s = cfg.model.clone();
            s.input_norm = net.spec.input_norm.clone();
            s
        });
    }
}

/// On-substrate EP with `[ep] settle` to a tolerance: the noisy free and nudged phases stop per
/// image (noise drawn per step taken), so training and test images take fewer than T1 + 2·T2
/// and T1 steps (in some epoch: the noise may keep them moving by more than the tolerance),
/// both logged; an interrupted run still resumes bit for bit.
#[test]
fn substrate_run_settles_to_a_tolerance_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = setup(dir.path(), "pcm");
    cfg.ep.settle = ep::Settle::plain_tol(0.1);
    let run = |out: &Path, stop: Option<usize>, resume: bool| {
        let opts = TrainOptions {
            out_dir: Some(out.to_path_buf()),
            stop_after: stop,
            resume,
            ..Default::default()
        };
        experiments::runs::train(&sim::Cpu, &AnyConfig::Ep(cfg.clone()), &opts).unwrap()
    };
    let straight = dir.path().join("straight");
    run(&straight, None, false);
    let log = std::fs::read_to_string(straight.join("log.jsonl")).unwrap();
    let mut tests = vec![];
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let (train, test) = (
            v["steps_per_image"]["train"].as_f64().unwrap(),
            v["steps_per_image"]["test"].as_f64().unwrap(),
        );
        // T1 = 6, T2 = 3 (two nudged phases); the read noise may keep an image moving by more
        // than the tolerance until the cap.
        assert!(train > 0.0 && train <= 12.0, "{line}");
        assert!(test > 0.0 && test <= 6.0, "{line}");
        tests.push((train, test));
    }
    assert!(
        tests.iter().any(|&(a, b)| a < 12.0 && b < 6.0),
        "no image stopped early: {tests:?}"
    );
    let split = dir.path().join("split");
    run(&split, Some(1), false);
    run(&split, None, true);
    assert_eq!(
        tensors(&straight.join("checkpoint.safetensors")),
        tensors(&split.join("checkpoint.safetensors"))
    );
}

/// EP on the substrate runs on the GPU backend (crossbar reads on the device; lavapipe where there
/// is no GPU): both presets train one epoch and log their substrate; the reads' draws differ from
/// the CPU's, so the pulses of the pulsed preset are compared with the CPU run's in size, not bits.
#[test]
fn substrate_training_runs_on_the_gpu() {
    use experiments::device::Device;
    for (preset, pulsed) in [("ecram", true), ("pcm", false)] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = setup(dir.path(), preset);
        cfg.train.epochs = 1;
        let run = |device: Device| -> serde_json::Value {
            let out = dir.path().join(device.to_string());
            let opts = TrainOptions {
                out_dir: Some(out.clone()),
                ..Default::default()
            };
            let train = || -> anyhow::Result<usize> {
                experiments::with_backend!(device, be => {
                    Ok(experiments::runs::train(be, &AnyConfig::Ep(cfg.clone()), &opts)?.len())
                })
            };
            assert_eq!(train().unwrap_or_else(|e| panic!("{e:#}")), 1);
            assert!(out.join("checkpoint.safetensors").exists());
            let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
            serde_json::from_str(log.lines().next().unwrap()).unwrap()
        };
        let (gpu, cpu) = (run(Device::Gpu(None)), run(Device::Cpu));
        assert_eq!(gpu["substrate"], format!("netlist:{preset}"));
        let (pg, pc) = (
            gpu["pulses"].as_u64().unwrap() as f64,
            cpu["pulses"].as_u64().unwrap() as f64,
        );
        assert_eq!(pg > 0.0, pulsed, "{preset}: {gpu}");
        assert!(
            (pg - pc).abs() <= 0.2 * pc,
            "{preset}: pulses gpu {pg}, cpu {pc}"
        );
    }
}
