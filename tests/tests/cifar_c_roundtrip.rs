//! `epsim corrupt --format npy` then evaluation through `cifar10c:DIR:<corruption>:<severity>`
//! gives the same accuracy, and the same logits, as evaluating the corrupted CIFAR binary files
//! (issue 16's bar), on a tiny EP-CNN.

use std::process::ExitCode;

use epsim_tests::{epsim, s, tiny_config, write_tiny_cifar};
use experiments::classifier::substrate::SubstrateSpec;
use experiments::data::Loader;
use experiments::eval::correct;
use experiments::study::target::Target;

/// A tiny EP-CNN trained for 2 epochs on synthetic quadrant data (so that accuracies are neither
/// 0 nor 1), and its 20-image test set: (checkpoint, `--data` spec).
fn trained_tiny(d: &std::path::Path) -> (std::path::PathBuf, String) {
    write_tiny_cifar(&d.join("train.bin"), 64, 1);
    write_tiny_cifar(&d.join("test.bin"), 20, 2);
    let cfg = tiny_config(&d.join("train.bin"), &d.join("test.bin"), 2);
    let cfg_path = d.join("cfg.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let run = d.join("run");
    let args = ["train", "--config", s(&cfg_path), "--out", s(&run)];
    assert_eq!(epsim(&args), ExitCode::SUCCESS);
    (
        run.join("checkpoint.safetensors"),
        format!("cifar10:{}:test", d.join("test.bin").display()),
    )
}

/// (correct, images, every logit in dataset order) of the model on dataset spec `data`.
fn accuracy(ckpt: &std::path::Path, data: &str) -> (usize, usize, Vec<f32>) {
    let t = Target {
        model: ckpt.to_path_buf(),
        spec: None,
        data: data.to_string(),
        t_predict: None,
        t_attack: None,
        settle: ep::Settle::default(),
        subset: None,
        batch_size: 7,
        substrate: SubstrateSpec::parse("digital", &[], "512x512").unwrap(),
        eot: None,
    };
    let l = t.load(&sim::Cpu, 0).unwrap();
    let mut logits = Vec::new();
    for b in Loader::new(&l.data, 7, sim::Stream::new(0, "eval")).epoch(0) {
        logits.extend(l.clf.logits(&b.x).unwrap().iter().copied());
    }
    (
        correct(l.clf.as_ref(), &l.data, 7).unwrap(),
        l.data.len(),
        logits,
    )
}

#[test]
fn npy_and_binary_copies_evaluate_alike() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ckpt, data) = trained_tiny(d);
    let (npy, bin) = (d.join("npy"), d.join("bin"));
    for (fmt, out) in [("npy", &npy), ("binary", &bin)] {
        let args = [
            "--seed",
            "3",
            "corrupt",
            "--data",
            &data,
            "--corruption",
            "fog,contrast,shot_noise",
            "--format",
            fmt,
            "--out",
            s(out),
        ];
        assert_eq!(epsim(&args), ExitCode::SUCCESS, "{args:?}");
    }
    let mut accs = Vec::new();
    let mut counts = Vec::new();
    for c in ["fog", "contrast", "shot_noise"] {
        for sev in 1..=5 {
            let a = accuracy(&ckpt, &format!("cifar10c:{}:{c}:{sev}", npy.display()));
            let b = accuracy(
                &ckpt,
                &format!("cifar10:{}", bin.join(format!("{c}_s{sev}.bin")).display()),
            );
            assert_eq!((a.0, a.1), (b.0, b.1), "{c} s{sev}: accuracy differs");
            assert!(a.2 == b.2, "{c} s{sev}: logits differ");
            assert_eq!(a.1, 20);
            accs.push(a.2);
            counts.push(a.0);
        }
    }
    // the corruptions change the logits (the comparison is not vacuous)
    let clean = accuracy(&ckpt, &data).2;
    assert!(accs.iter().all(|a| *a != clean));
    assert!(accs.windows(2).all(|w| w[0] != w[1]));
    let clean_correct = accuracy(&ckpt, &data).0;
    assert!(clean_correct > 0, "the trained model gets nothing right");
    assert!(counts.iter().any(|&c| c != clean_correct), "{counts:?}");
    // and the command evaluates the released layout
    let spec = format!("cifar10c:{}:fog:5", npy.display());
    assert_eq!(
        epsim(&["eval", "--model", s(&ckpt), "--data", &spec]),
        ExitCode::SUCCESS
    );
}

fn corruption_records(out: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["kind"] == "corruption")
        .collect()
}

#[test]
fn robustness_suite_reads_released_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ckpt, data) = trained_tiny(d);
    let npy = d.join("npy");
    let args = [
        "--seed",
        "4",
        "corrupt",
        "--data",
        &data,
        "--corruption",
        "fog,contrast",
        "--format",
        "npy",
        "--out",
        s(&npy),
    ];
    assert_eq!(epsim(&args), ExitCode::SUCCESS);
    let suite = |released: &str| {
        format!("[corruptions]\nnames = [\"fog\", \"contrast\"]\nseverities = [2, 5]\n{released}")
    };
    let run = |name: &str, text: &str, subset: Option<&str>| {
        let p = d.join(format!("{name}.toml"));
        std::fs::write(&p, text).unwrap();
        let out = d.join(name);
        let mut args = vec![
            "--seed",
            "4",
            "robustness",
            "--model",
            s(&ckpt),
            "--data",
            &data,
            "--suite",
            s(&p),
            "--out-dir",
            s(&out),
        ];
        if let Some(n) = subset {
            args.extend(["--subset", n]);
        }
        (epsim(&args), out)
    };
    // generated from the same seed vs read from the files (whole test set): the same accuracies
    let (rc, gen_out) = run("generated", &suite(""), None);
    assert_eq!(rc, ExitCode::SUCCESS);
    let released = format!("released = \"cifar10c:{}\"\n", npy.display());
    let (rc, rel_out) = run("released", &suite(&released), None);
    assert_eq!(rc, ExitCode::SUCCESS);
    let (g, r) = (corruption_records(&gen_out), corruption_records(&rel_out));
    assert_eq!(g.len(), 4);
    assert_eq!(r.len(), 4);
    for (g, r) in g.iter().zip(&r) {
        assert_eq!(g["corruption"], r["corruption"]);
        assert_eq!(g["severity"], r["severity"]);
        assert_eq!(g["accuracy"], r["accuracy"], "{g} vs {r}");
        assert_eq!(g["n"], r["n"]);
        assert!(g["note"].is_null());
        let want = format!(
            "released files cifar10c:{}:{}:{}",
            npy.display(),
            r["corruption"].as_str().unwrap(),
            r["severity"]
        );
        assert_eq!(r["note"], want.as_str());
    }
    let accs: Vec<f64> = g.iter().map(|r| r["accuracy"].as_f64().unwrap()).collect();
    assert!(accs.iter().any(|&a| a > 0.0), "{accs:?}");
    let report = std::fs::read_to_string(rel_out.join("report.md")).unwrap();
    // with --subset the same class-balanced images are taken from the files (labels checked);
    // generated corruptions draw per position in the subset, so only the released run is used
    let (rc, sub_out) = run("subset", &suite(&released), Some("12"));
    assert_eq!(rc, ExitCode::SUCCESS);
    let sub = corruption_records(&sub_out);
    assert_eq!(sub.len(), 4);
    assert!(sub.iter().all(|r| r["n"] == 8));
    assert!(
        report.contains("## Corruptions (accuracy; released files cifar10c:"),
        "{report}"
    );
    // files of another test set: an error naming the file
    let other = d.join("other");
    std::fs::create_dir_all(&other).unwrap();
    epsim_tests::write_tiny_cifar(&other.join("test.bin"), 12, 9);
    let other_data = format!("cifar10:{}", other.join("test.bin").display());
    let args = [
        "corrupt",
        "--data",
        &other_data,
        "--corruption",
        "fog",
        "--format",
        "npy",
        "--out",
        s(&other),
    ];
    assert_eq!(epsim(&args), ExitCode::SUCCESS);
    let text = format!(
        "[corruptions]\nnames = [\"fog\"]\nseverities = [1]\nreleased = \"cifar10c:{}\"\n",
        other.display()
    );
    assert_ne!(run("mismatch", &text, None).0, ExitCode::SUCCESS);
    // a released spec that names a corruption is refused when the suite is read
    let text = format!(
        "{}released = \"cifar10c:{}:fog\"\n",
        suite(""),
        npy.display()
    );
    assert_ne!(run("badspec", &text, None).0, ExitCode::SUCCESS);
}
