//! The EP commands of the CLI end to end (in-process through `experiments::cli::main_with`):
//! train → eval (with the per-step plot) → settle (state dump) → a plain state dict with --spec.

use std::path::Path;
use std::process::ExitCode;

use epsim_tests::{epsim, s, tiny_config, write_tiny_cifar};

/// Tiny data + a config in `d`, trained for `epochs` through the CLI; returns the checkpoint.
fn trained_tiny(d: &Path, epochs: usize) -> std::path::PathBuf {
    write_tiny_cifar(&d.join("train.bin"), 64, 1);
    write_tiny_cifar(&d.join("test.bin"), 32, 2);
    std::fs::write(
        d.join("cfg.toml"),
        tiny_config(&d.join("train.bin"), &d.join("test.bin"), epochs),
    )
    .unwrap();
    let run = d.join("run");
    assert_eq!(
        epsim(&[
            "train",
            "--config",
            s(&d.join("cfg.toml")),
            "--out",
            s(&run)
        ]),
        ExitCode::SUCCESS
    );
    let ckpt = run.join("checkpoint.safetensors");
    assert!(ckpt.exists());
    ckpt
}

#[test]
fn train_eval_settle_and_state_dict() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ckpt = trained_tiny(d, 1);

    // eval --per-step writes a PNG plot.
    let plot = d.join("per_step.png");
    let data = format!("cifar10:{}:test", d.join("test.bin").display());
    assert_eq!(
        epsim(&[
            "eval",
            "--model",
            s(&ckpt),
            "--data",
            &data,
            "--per-step",
            "--steps",
            "4",
            "--plot",
            s(&plot)
        ]),
        ExitCode::SUCCESS
    );
    let png = std::fs::read(&plot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    // settle dumps every layer at the chosen steps; the dump equals the library's free phase.
    let net = experiments::classifier::load::load_model(&sim::Cpu, &ckpt, None).unwrap();
    let x = sim::gradcheck::test_tensor(&[2, 3, 32, 32], 5, 1.0);
    let xin = d.join("x.npy");
    ndarray_npy::write_npy(&xin, &x).unwrap();
    let dump = d.join("states.npz");
    assert_eq!(
        epsim(&[
            "settle",
            "--model",
            s(&ckpt),
            "--input",
            s(&xin),
            "--steps",
            "5",
            "--dump",
            s(&dump),
            "--at",
            "1,5"
        ]),
        ExitCode::SUCCESS
    );
    let mut npz = ndarray_npy::NpzReader::new(std::fs::File::open(&dump).unwrap()).unwrap();
    let mut names: Vec<String> = npz
        .names()
        .unwrap()
        .into_iter()
        .map(|n| n.trim_end_matches(".npy").to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "layer1_step1",
            "layer1_step5",
            "logits_step1",
            "logits_step5"
        ]
    );
    let l5: ndarray::ArrayD<f32> = npz
        .by_name("layer1_step5")
        .or_else(|_| npz.by_name("layer1_step5.npy"))
        .unwrap();
    let want = net.free_phase(&sim::Cpu, &x, 5).unwrap();
    assert_eq!(l5, want.layers[0]);

    // A plain state dict (no epsim metadata) loads with --spec, and fails clearly without it.
    let f = ep::checkpoint::TensorFile::from_bytes(&std::fs::read(&ckpt).unwrap()).unwrap();
    let plain = ep::checkpoint::TensorFile {
        tensors: f
            .tensors
            .into_iter()
            .filter(|(n, _)| n.starts_with("synapses."))
            .collect(),
        metadata: Default::default(),
    };
    let sd = d.join("state_dict.safetensors");
    std::fs::write(&sd, plain.to_bytes().unwrap()).unwrap();
    let spec_json = d.join("spec.json");
    std::fs::write(&spec_json, serde_json::to_string(&net.spec).unwrap()).unwrap();
    assert_eq!(
        epsim(&[
            "settle",
            "--model",
            s(&sd),
            "--spec",
            s(&spec_json),
            "--input",
            s(&xin),
            "--steps",
            "2"
        ]),
        ExitCode::SUCCESS
    );
    assert_eq!(
        epsim(&[
            "settle",
            "--model",
            s(&sd),
            "--input",
            s(&xin),
            "--steps",
            "2"
        ]),
        ExitCode::FAILURE
    );

    // Bad input: wrong input shape and out-of-range --at are errors, not panics.
    let bad = d.join("bad.npy");
    ndarray_npy::write_npy(&bad, &sim::gradcheck::test_tensor(&[2, 1, 28, 28], 1, 1.0)).unwrap();
    assert_eq!(
        epsim(&[
            "settle",
            "--model",
            s(&ckpt),
            "--input",
            s(&bad),
            "--steps",
            "2"
        ]),
        ExitCode::FAILURE
    );
    assert_eq!(
        epsim(&[
            "settle",
            "--model",
            s(&ckpt),
            "--input",
            s(&xin),
            "--steps",
            "2",
            "--at",
            "3"
        ]),
        ExitCode::FAILURE
    );
}

#[test]
fn malformed_configs_name_the_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = tiny_config(&d.join("train.bin"), &d.join("test.bin"), 1);
    for (bad, want) in [
        (base.replace("epochs = 1", "epochz = 1"), "epochz"),
        // [ep] and [model] are as strict as the other tables (a typo must not train symmetric EP).
        (
            base.replace("beta = 0.5", "beta = 0.5\nsymetric = false"),
            "unknown field `symetric`, expected one of `beta`, `symmetric`, `random_sign`, `settle`; did you mean `symmetric`?",
        ),
        (base.replace("t1 = 6", "t1 = 6\nt_one = 6"), "t_one"),
        (
            base.replace(
                "beta = 0.5",
                "beta = 0.5\nsettle = { method = \"anderson\" }",
            ),
            "tol",
        ),
        (
            base.replace(
                "beta = 0.5",
                "beta = 0.5\nsettle = { method = \"newton\", tol = 1e-3 }",
            ),
            "newton",
        ),
        (
            base.replace(
                "beta = 0.5",
                "beta = 0.5\nsettle = { method = \"plain\", max_steps = 50 }",
            ),
            "max_steps caps a settle with a tolerance",
        ),
        (
            base.replace(
                "beta = 0.5",
                "beta = 0.5\nsettle = { method = \"anderson\", tol = 1e-2 }",
            ),
            "never would",
        ),
        (base.replace("lrs = [0.05, 0.02]", "lrs = [0.05]"), "lrs"),
        (
            base.replace("std = [0.3, 0.3, 0.3]", "std = [0.3, 0.0, 0.3]"),
            "std",
        ),
    ] {
        let e = experiments::runs::TrainConfig::from_toml(&bad, "bad.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.toml") && e.contains(want), "{e}");
    }
}

#[test]
fn attack_and_corrupt_commands_write_their_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ckpt = trained_tiny(d, 2);
    let res = d.join("results.jsonl");
    let data = format!("cifar10:{}", d.join("test.bin").display());
    assert_eq!(
        epsim(&[
            "attack",
            "--model",
            s(&ckpt),
            "--data",
            &data,
            "--attack",
            "pgd-linf",
            "--eps",
            "0,1/2",
            "--steps",
            "10",
            "--out",
            s(&res)
        ]),
        ExitCode::SUCCESS
    );
    let recs: Vec<serde_json::Value> = std::fs::read_to_string(&res)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 2);
    // ε = 0 changes nothing; ε = 0.5 in L∞ (half the pixel range) breaks every point.
    assert_eq!(recs[0]["robust_accuracy"], recs[0]["clean_accuracy"]);
    assert_eq!(
        recs[1]["robust_accuracy"].as_f64().unwrap(),
        0.0,
        "{}",
        recs[1]
    );
    assert_eq!(recs[1]["eps"].as_f64().unwrap(), 0.5);
    for key in [
        "model",
        "attack",
        "norm",
        "seed",
        "n",
        "queries",
        "grads",
        "wall_s",
        "commit",
        "protocol",
        "substrate",
    ] {
        assert!(
            recs[1].get(key).is_some(),
            "record lacks {key}: {}",
            recs[1]
        );
    }
    // The same attack on the ideal netlist substrate gives the digital clean accuracy.
    let res_hw = d.join("results_hw.jsonl");
    assert_eq!(
        epsim(&[
            "attack",
            "--model",
            s(&ckpt),
            "--data",
            &data,
            "--attack",
            "pgd-linf",
            "--eps",
            "0",
            "--steps",
            "2",
            "--substrate",
            "netlist:ideal",
            "--tile",
            "64x64",
            "--out",
            s(&res_hw)
        ]),
        ExitCode::SUCCESS
    );
    let hw: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&res_hw)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(hw["clean_accuracy"], recs[0]["clean_accuracy"], "{hw}");
    assert_eq!(hw["substrate"], "netlist:ideal");
    // Unknown attacks are clear errors.
    assert_eq!(
        epsim(&[
            "attack",
            "--model",
            s(&ckpt),
            "--data",
            &data,
            "--attack",
            "pgd-l3",
            "--eps",
            "0.1",
            "--out",
            s(&res)
        ]),
        ExitCode::FAILURE
    );

    // corrupt writes official-layout files that load back with the same labels.
    let out = d.join("cc");
    assert_eq!(
        epsim(&[
            "corrupt",
            "--data",
            &data,
            "--corruption",
            "brightness",
            "--severity",
            "3",
            "--out",
            s(&out)
        ]),
        ExitCode::SUCCESS
    );
    let f = out.join("brightness_s3.bin");
    let clean = std::fs::read(d.join("test.bin")).unwrap();
    let corr = std::fs::read(&f).unwrap();
    assert_eq!(clean.len(), corr.len());
    assert_ne!(clean, corr);
    for r in 0..32 {
        assert_eq!(clean[r * 3073], corr[r * 3073], "label of record {r}");
    }
}

#[test]
fn robustness_suite_writes_records_report_and_sanity_checks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ckpt = trained_tiny(d, 2);
    let suite = d.join("suite.toml");
    std::fs::write(
        &suite,
        r#"
[[attack]]
name = "pgd-linf"
eps = ["0", "1/2"]
steps = 5

[[attack]]
name = "square-linf"
eps = ["1/2"]
steps = 50

[corruptions]
names = ["brightness", "gaussian_noise"]
severities = [1, 5]
"#,
    )
    .unwrap();
    let out = d.join("rob");
    let data = format!("cifar10:{}", d.join("test.bin").display());
    assert_eq!(
        epsim(&[
            "robustness",
            "--model",
            s(&ckpt),
            "--data",
            &data,
            "--suite",
            s(&suite),
            "--out-dir",
            s(&out)
        ]),
        ExitCode::SUCCESS
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        3 + 4,
        "3 attack records and 4 corruption records"
    );
    assert_eq!(lines[3]["kind"], "corruption");
    for r in &lines[3..] {
        let acc = r["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc));
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for want in [
        "## Attacks",
        "## Corruptions",
        "## Sanity checks",
        "brightness",
        "square-linf",
    ] {
        assert!(report.contains(want), "report lacks {want}:\n{report}");
    }
    // A bad suite is a clear error naming the file.
    std::fs::write(&suite, "[[attack]]\nname = \"pgd-linf\"\neps = [\"x\"]\n").unwrap();
    assert_eq!(
        epsim(&[
            "robustness",
            "--model",
            s(&ckpt),
            "--data",
            &data,
            "--suite",
            s(&suite),
            "--out-dir",
            s(&out)
        ]),
        ExitCode::FAILURE
    );
}

/// Settling to a tolerance (issue 19) through the CLI: a training config's `[ep] settle` takes
/// fewer steps per image than T1 + 2·T2 and logs them; `eval --tol` and `--settle anderson` run;
/// the settle flags are checked (Anderson needs a tolerance, the per-step curve is plain
/// iteration's, baselines have no free phase).
#[test]
fn settle_to_a_tolerance_in_training_and_eval() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_tiny_cifar(&d.join("train.bin"), 64, 1);
    write_tiny_cifar(&d.join("test.bin"), 32, 2);
    let cfg = tiny_config(&d.join("train.bin"), &d.join("test.bin"), 1).replace(
        "beta = 0.5",
        "beta = 0.5\nsettle = { method = \"plain\", tol = 0.05 }",
    );
    let cfg_file = d.join("cfg.toml");
    std::fs::write(&cfg_file, cfg).unwrap();
    let run = d.join("run");
    let args = ["train", "--config", s(&cfg_file), "--out", s(&run)];
    assert_eq!(epsim(&args), ExitCode::SUCCESS);
    let log = std::fs::read_to_string(run.join("log.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    let train = line["steps_per_image"]["train"].as_f64().unwrap();
    let test = line["steps_per_image"]["test"].as_f64().unwrap();
    // T1 = 6, T2 = 3, two nudged phases: at most 12 steps per training image, 6 per test image.
    assert!(train > 0.0 && train < 12.0, "{line}");
    assert!(test > 0.0 && test < 6.0, "{line}");
    let ckpt = run.join("checkpoint.safetensors");
    // `train --tol` on the plain config is the same run as the config's settle.
    let plain = d.join("plain.toml");
    std::fs::write(
        &plain,
        tiny_config(&d.join("train.bin"), &d.join("test.bin"), 1),
    )
    .unwrap();
    let run2 = d.join("run2");
    let args = [
        "train",
        "--config",
        s(&plain),
        "--out",
        s(&run2),
        "--tol",
        "0.05",
    ];
    assert_eq!(epsim(&args), ExitCode::SUCCESS);
    let weights = |p: &Path| {
        let f = ep::checkpoint::TensorFile::from_bytes(&std::fs::read(p).unwrap()).unwrap();
        f.tensors
    };
    assert_eq!(
        weights(&ckpt),
        weights(&run2.join("checkpoint.safetensors"))
    );
    let data = format!("cifar10:{}:test", d.join("test.bin").display());
    let eval = |extra: &[&str]| {
        let mut a = vec!["eval", "--model", s(&ckpt), "--data", &data];
        a.extend_from_slice(extra);
        epsim(&a)
    };
    assert_eq!(
        eval(&["--tol", "1e-3", "--max-steps", "50"]),
        ExitCode::SUCCESS
    );
    assert_eq!(
        eval(&["--settle", "anderson", "--tol", "1e-4", "--max-steps", "50"]),
        ExitCode::SUCCESS
    );
    assert_eq!(
        eval(&[
            "--tol",
            "0.05",
            "--substrate",
            "netlist:pcm",
            "--tile",
            "16x16"
        ]),
        ExitCode::SUCCESS
    );
    assert_eq!(eval(&["--settle", "anderson"]), ExitCode::FAILURE);
    assert_eq!(
        eval(&["--settle", "newton", "--tol", "1e-3"]),
        ExitCode::FAILURE
    );
    assert_eq!(eval(&["--tol=-1"]), ExitCode::FAILURE);
    assert_eq!(eval(&["--tol", "1e-3", "--per-step"]), ExitCode::FAILURE);
    // Attack records name the settle of their predictions (and plain ones carry none).
    for (tol, named) in [(Some("0.05"), true), (None, false)] {
        let res = d.join(format!("attack-{named}.jsonl"));
        let mut a = vec![
            "attack",
            "--model",
            s(&ckpt),
            "--data",
            &data,
            "--attack",
            "pgd-linf",
            "--eps",
            "1/255",
            "--steps",
            "2",
            "--out",
            s(&res),
        ];
        if let Some(t) = tol {
            a.extend_from_slice(&["--tol", t]);
        }
        assert_eq!(epsim(&a), ExitCode::SUCCESS);
        let text = std::fs::read_to_string(&res).unwrap();
        let rec: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        if named {
            assert_eq!(rec["settle"]["method"], "plain", "{rec}");
            assert_eq!(rec["settle"]["tol"].as_f64().unwrap() as f32, 0.05, "{rec}");
            // The steps its predictions took, per attacked image.
            assert!(
                rec["attack_free_phase_steps"].as_f64().unwrap() > 0.0,
                "{rec}"
            );
        } else {
            assert!(rec.get("settle").is_none(), "{rec}");
            assert!(rec.get("attack_free_phase_steps").is_none(), "{rec}");
        }
    }
}
