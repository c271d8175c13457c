//! The two evaluation protocols end to end through the CLI on a tiny EP-CNN trained in-test: a
//! 2-protocol robustness suite writes a "Protocol gap" table whose numbers are the JSONL records';
//! `--eps paper-linf` expands to the paper's grid; `autoattack-linf --protocol advep` runs ART's
//! ensemble. Also the shipped configs against the reference specs: the paper config's input
//! normalization, and the Fashion-MNIST config's model as `ModelSpec::fmnist_reference` (what the
//! benches time).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use epsim_tests::{epsim, s, tiny_config, write_tiny_cifar};

fn trained_tiny(d: &Path) -> PathBuf {
    write_tiny_cifar(&d.join("train.bin"), 64, 1);
    write_tiny_cifar(&d.join("test.bin"), 32, 2);
    std::fs::write(
        d.join("cfg.toml"),
        tiny_config(&d.join("train.bin"), &d.join("test.bin"), 2),
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
    run.join("checkpoint.safetensors")
}

fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn two_protocol_suite_reports_the_gap_from_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ckpt = trained_tiny(d);
    let data = format!("cifar10:{}", d.join("test.bin").display());
    let suite = d.join("suite.toml");
    std::fs::write(
        &suite,
        r#"
protocols = ["advep", "standard"]

[[attack]]
name = "pgd-linf"
eps = ["0", "0.003", "1/2"]
steps = 5

[[attack]]
name = "square-linf"
eps = ["0.003"]
steps = 40

[corruptions]
names = ["brightness"]
severities = [2]
"#,
    )
    .unwrap();
    let out = d.join("rob");
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
    let recs = records(&out.join("results.jsonl"));
    assert_eq!(
        recs.len(),
        2 * 4 + 1,
        "4 attack records per protocol, 1 corruption"
    );
    for (i, r) in recs.iter().enumerate() {
        let want = match i {
            0..=3 => "advep",
            4..=7 => "standard",
            _ => "none",
        };
        assert_eq!(r["protocol"], want, "record {i}: {r}");
    }
    // The advep PGD attacks the predicted labels with 2.5ε/20 steps: at ε = 0 nothing changes.
    assert_eq!(recs[0]["robust_accuracy"], recs[0]["clean_accuracy"]);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("## Protocol gap"), "{report}");
    assert!(report.contains("protocols advep, standard"), "{report}");
    // Every attack × ε has one gap row whose numbers are the two records'.
    let gap = report.split("## Protocol gap").nth(1).unwrap();
    let gap = gap.split("\n## ").next().unwrap();
    let (mut n_rows, mut n_large) = (0, 0);
    for adv in recs.iter().filter(|r| r["protocol"] == "advep") {
        let std_rec = recs
            .iter()
            .find(|r| {
                r["protocol"] == "standard"
                    && r["eps"] == adv["eps"]
                    && r["norm"] == adv["norm"]
                    && r["steps"] == adv["steps"]
            })
            .unwrap();
        let attack = if adv["steps"] == 5 {
            "pgd-linf"
        } else {
            "square-linf"
        };
        let eps = adv["eps_text"].as_str().unwrap();
        let row = gap
            .lines()
            .find(|l| l.starts_with(&format!("| {attack} | {eps} |")))
            .unwrap_or_else(|| panic!("no gap row for {attack} {eps}:\n{gap}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let a = adv["robust_accuracy"].as_f64().unwrap();
        let b = std_rec["robust_accuracy"].as_f64().unwrap();
        assert_eq!(cells[3], format!("{a:.4}"), "{row}");
        assert_eq!(cells[4], format!("{b:.4}"), "{row}");
        let g: f64 = cells[5].parse().unwrap();
        assert!((g - 100.0 * (a - b)).abs() <= 0.05 + 1e-9, "{row}");
        n_rows += 1;
        n_large += (100.0 * (a - b) > experiments::report::protocol_gap::GAP_WARN_POINTS) as usize;
    }
    assert_eq!(n_rows, 4);
    // Each gap above the threshold is one warning in the sanity checks.
    assert_eq!(
        report
            .matches("does not survive an honest evaluation")
            .count(),
        n_large,
        "{report}"
    );
    let half = |p: &str| {
        recs.iter()
            .find(|r| r["protocol"] == p && r["eps_text"] == "1/2")
            .unwrap()["robust_accuracy"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(half("standard"), 0.0);
    // The attacks table names each row's protocol.
    assert!(report.contains("| pgd-linf | advep | 0.003 |"), "{report}");
    assert!(
        report.contains("| pgd-linf | standard | 0.003 |"),
        "{report}"
    );

    // With --t-attack (the paper's truncated gradient) only advep uses it: the standard protocol
    // takes gradients through the evaluated dynamics (T_attack = T_predict = t1 = 6).
    let suite2 = d.join("suite2.toml");
    std::fs::write(
        &suite2,
        "protocols = [\"advep\", \"standard\"]\n[[attack]]\nname = \"pgd-linf\"\neps = [\"0.003\"]\nsteps = 2\n",
    )
    .unwrap();
    let out2 = d.join("rob2");
    assert_eq!(
        epsim(&[
            "robustness",
            "--model",
            s(&ckpt),
            "--data",
            &data,
            "--t-attack",
            "2",
            "--suite",
            s(&suite2),
            "--out-dir",
            s(&out2)
        ]),
        ExitCode::SUCCESS
    );
    let recs2 = records(&out2.join("results.jsonl"));
    assert_eq!(recs2.len(), 2);
    assert_eq!(recs2[0]["protocol"], "advep");
    assert_eq!(recs2[0]["t_attack"], 2);
    assert_eq!(recs2[1]["protocol"], "standard");
    assert_eq!(recs2[1]["t_attack"], 6);
    assert_eq!(recs2[1]["t_predict"], 6);

    // Bad protocol lists are clear errors naming the file.
    for bad in [
        "protocols = [\"advep\", \"honest\"]\n[[attack]]\nname = \"pgd-linf\"\neps = [\"0\"]\n",
        "protocols = [\"advep\", \"advep\"]\n[[attack]]\nname = \"pgd-linf\"\neps = [\"0\"]\n",
        "protocols = []\n[[attack]]\nname = \"pgd-linf\"\neps = [\"0\"]\n",
    ] {
        std::fs::write(&suite, bad).unwrap();
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
            ExitCode::FAILURE,
            "{bad}"
        );
    }
}

#[test]
fn paper_eps_presets_and_the_art_ensemble_run_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ckpt = trained_tiny(d);
    let data = format!("cifar10:{}", d.join("test.bin").display());
    let res = d.join("r.jsonl");
    let attack = |extra: &[&str]| {
        let mut v = vec![
            "attack",
            "--model",
            s(&ckpt),
            "--data",
            &data,
            "--subset",
            "8",
            "--out",
            s(&res),
        ];
        v.extend_from_slice(extra);
        epsim(&v)
    };
    // --eps paper-linf: the 11 values of the paper's PGD grid.
    assert_eq!(
        attack(&[
            "--attack",
            "pgd-linf",
            "--protocol",
            "advep",
            "--steps",
            "1",
            "--eps",
            "paper-linf"
        ]),
        ExitCode::SUCCESS
    );
    let recs = records(&res);
    let eps: Vec<f64> = recs.iter().map(|r| r["eps"].as_f64().unwrap()).collect();
    let want = [
        1e-4, 2.1544e-4, 4.6416e-4, 1e-3, 2.1544e-3, 4.6416e-3, 0.01, 0.021544, 0.031, 0.046416,
        0.1,
    ];
    assert_eq!(eps.len(), want.len());
    for (g, w) in eps.iter().zip(want) {
        assert!((g / w - 1.0).abs() < 1e-4, "{eps:?}");
    }
    assert!(recs.iter().all(|r| r["protocol"] == "advep"));
    std::fs::remove_file(&res).unwrap();

    // autoattack-linf under advep is ART's ensemble; at ε = 1/2 it breaks every point.
    assert_eq!(
        attack(&[
            "--attack",
            "autoattack-linf",
            "--protocol",
            "advep",
            "--eps",
            "1/2"
        ]),
        ExitCode::SUCCESS
    );
    let r = &records(&res)[0];
    assert!(
        r["attack"]
            .as_str()
            .unwrap()
            .starts_with("ART-AutoAttack-Linf"),
        "{r}"
    );
    assert_eq!(r["protocol"], "advep");
    assert_eq!(r["robust_accuracy"].as_f64().unwrap(), 0.0, "{r}");
    // There is no 'rand' AutoAttack under advep, and unknown presets are errors.
    assert_eq!(
        attack(&[
            "--attack",
            "autoattack-rand-linf",
            "--protocol",
            "advep",
            "--eps",
            "0.1"
        ]),
        ExitCode::FAILURE
    );
    assert_eq!(
        attack(&["--attack", "pgd-linf", "--eps", "paper-linf2"]),
        ExitCode::FAILURE
    );
}

#[test]
fn the_paper_config_normalizes_with_three_times_the_cifar_std() {
    // advep's inputs are [0, 1] pixels; lanl/AdvEP normalizes inside the model (ART preprocessing)
    // with mean (0.4914, 0.4822, 0.4465) and std 3×(0.2023, 0.1994, 0.2010) = (0.6069, 0.5982,
    // 0.6030). epsim puts [data] mean/std into the model spec, so attacks see the same model.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/cifar10-epcnn-paper.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let cfg = experiments::runs::TrainConfig::from_toml(&text, s(&path)).unwrap();
    let close = |a: &[f32], b: [f32; 3]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
    assert!(
        close(&cfg.data.mean, [0.4914, 0.4822, 0.4465]),
        "{:?}",
        cfg.data.mean
    );
    assert!(
        close(&cfg.data.std, [0.6069, 0.5982, 0.6030]),
        "{:?}",
        cfg.data.std
    );
    assert!(
        cfg.model.input_norm.is_none(),
        "filled from [data] at training"
    );
}

#[test]
fn the_shipped_protocol_suite_parses_and_expands() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/suites/paper-protocols.toml");
    let suite: experiments::study::suite::Suite =
        toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(suite.protocols, ["advep", "standard"]);
    let n: usize = suite
        .attack
        .iter()
        .map(|a| {
            experiments::study::protocol::expand_eps(&a.eps)
                .unwrap()
                .len()
        })
        .sum();
    // PGD 11 + 11, Square 8 + 9, AutoAttack 9 + 10 strengths.
    assert_eq!(n, 58);
}

#[test]
fn the_fashion_mnist_reference_spec_is_the_shipped_configs_model() {
    // The benches time `ModelSpec::fmnist_reference()` as the model of configs/fmnist-epcnn.toml.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/fmnist-epcnn.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let cfg = experiments::runs::TrainConfig::from_toml(&text, s(&path)).unwrap();
    assert_eq!(cfg.model, ep::ModelSpec::fmnist_reference());
}
