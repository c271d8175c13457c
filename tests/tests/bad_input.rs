//! Bad input caught before any work: counts of 0, a plot option without the plot, a plot format
//! that cannot be written, unknown keys in a model spec; and what a results record carries: the
//! commit of the code, a results file in a folder that does not exist yet; suites with an unknown
//! attack or corruptions on grayscale images fail before any attack runs; flipped bytes in a
//! checkpoint are refused naming the tensor.

use std::process::ExitCode;

use clap::Parser;
use epsim_tests::{epsim, s, tiny_model_and_data};
use experiments::cli::Cli;

fn usage_error(args: &[&str]) -> String {
    let mut v = vec!["epsim"];
    v.extend_from_slice(args);
    match Cli::try_parse_from(v) {
        Ok(_) => panic!("{args:?} parsed"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn zero_counts_and_a_plot_without_per_step_are_usage_errors() {
    let base = [
        "eval",
        "--model",
        "m.safetensors",
        "--data",
        "fashion-mnist",
    ];
    let with = |extra: &[&'static str]| {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        usage_error(&v)
    };
    assert!(with(&["--subset", "0"]).contains("must be ≥ 1"));
    assert!(with(&["--batch-size", "0"]).contains("must be ≥ 1"));
    assert!(with(&["--plot", "acc.png"]).contains("--per-step"));
    let atk = [
        "attack", "--model", "m", "--data", "d", "--attack", "pgd-linf", "--eps", "0.1",
    ];
    let mut v = atk.to_vec();
    v.extend_from_slice(&["--subset", "0"]);
    assert!(usage_error(&v).contains("must be ≥ 1"));
}

#[test]
fn a_plot_format_that_cannot_be_written_fails_before_the_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, data) = tiny_model_and_data(dir.path(), true, 20);
    let gif = dir.path().join("acc.gif");
    assert_eq!(
        epsim(&[
            "eval",
            "--model",
            s(&ckpt),
            "--data",
            &data,
            "--per-step",
            "--plot",
            s(&gif),
        ]),
        ExitCode::FAILURE
    );
    assert!(!gif.exists());
}

#[test]
fn a_spec_file_with_an_unknown_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, data) = tiny_model_and_data(dir.path(), true, 20);
    let f = ep::checkpoint::TensorFile::from_bytes(&std::fs::read(&ckpt).unwrap()).unwrap();
    let spec = f.metadata[ep::checkpoint::SPEC_KEY].clone();
    let bad = spec.replacen('{', "{\"t_one\": 3, ", 1);
    let p = dir.path().join("spec.json");
    std::fs::write(&p, &bad).unwrap();
    let e = experiments::classifier::load::load_model(&sim::Cpu, &ckpt, Some(&p)).unwrap_err();
    assert!(format!("{e:#}").contains("t_one"), "{e:#}");
    std::fs::write(&p, &spec).unwrap();
    experiments::classifier::load::load_model(&sim::Cpu, &ckpt, Some(&p)).unwrap();
    let _ = data;
}

#[test]
fn records_carry_the_commit_and_results_go_into_new_folders() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, data) = tiny_model_and_data(dir.path(), true, 20);
    let out = dir.path().join("new/folder/results.jsonl");
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
            "0.05",
            "--steps",
            "1",
            "--out",
            s(&out),
        ]),
        ExitCode::SUCCESS
    );
    let rec: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let commit = rec["commit"].as_str().unwrap();
    match head {
        // Built from a checkout: the commit it was built from (HEAD, unless HEAD moved since).
        Some(h) => assert!(
            commit.len() >= 12 && commit != "unknown",
            "commit {commit:?}, HEAD {h}"
        ),
        None => assert_eq!(commit, "unknown"),
    }
}

#[test]
fn suites_fail_before_any_attack_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, data) = tiny_model_and_data(dir.path(), true, 20);
    let suite = dir.path().join("s.toml");
    let out = dir.path().join("rob");
    let run = |text: &str| {
        std::fs::write(&suite, text).unwrap();
        epsim(&[
            "robustness",
            "--model",
            s(&ckpt),
            "--data",
            &data,
            "--suite",
            s(&suite),
            "--out-dir",
            s(&out),
        ])
    };
    let good = "[[attack]]\nname = \"pgd-linf\"\neps = [\"0.05\"]\nsteps = 1\n";
    assert_eq!(run(&good.replace("pgd-linf", "pgd-lnf")), ExitCode::FAILURE);
    assert_eq!(
        run(&good.replace("pgd-linf", "autoattack-fast-linf")),
        ExitCode::FAILURE
    );
    assert!(!out.exists(), "nothing ran");
    assert_eq!(run(good), ExitCode::SUCCESS);
}

/// 200 flipped bytes inside a checkpoint's tensor data: the load fails naming the tensor (the
/// per-tensor checksums every written file carries), where before it loaded silently.
#[test]
fn flipped_bytes_in_a_checkpoint_are_refused_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, data) = tiny_model_and_data(dir.path(), true, 20);
    let mut bytes = std::fs::read(&ckpt).unwrap();
    let n = bytes.len();
    for b in &mut bytes[n - 300..n - 100] {
        *b ^= 0xa5;
    }
    let bad = dir.path().join("flipped.safetensors");
    std::fs::write(&bad, &bytes).unwrap();
    let Err(e) = experiments::classifier::load::load_model(&sim::Cpu, &bad, None) else {
        panic!("a corrupt checkpoint loaded");
    };
    let msg = format!("{e:#}");
    assert!(
        msg.contains("corrupt") && msg.contains("tensor synapses."),
        "{msg}"
    );
    assert_eq!(
        epsim(&["eval", "--model", s(&bad), "--data", &data]),
        ExitCode::FAILURE
    );
    // The intact file still loads.
    assert!(experiments::classifier::load::load_model(&sim::Cpu, &ckpt, None).is_ok());
}
