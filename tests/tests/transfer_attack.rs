//! Transfer attacks (`epsim attack --transfer-from`): crafted on one substrate, counted on
//! another. From the digital model onto itself a transfer equals the white-box attack exactly;
//! onto `netlist:ideal` (the digital model up to the conductance round trip) it stays within one
//! image of it; a bad source substrate is refused before any attack.

use std::process::ExitCode;

use epsim_tests::{epsim, epsim_failure, s};

fn records(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_transfer_onto_the_source_equals_the_white_box_attack() {
    let dir = tempfile::tempdir().unwrap();
    // The shipped quick-start EP-CNN on 40 Fashion-MNIST test images.
    let ckpt = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/quickstart-epcnn.safetensors");
    let data = "fashion-mnist:test".to_string();
    let out = dir.path().join("r.jsonl");
    let run = |extra: &[&str]| {
        let mut v = vec![
            "attack",
            "--model",
            s(&ckpt),
            "--data",
            &data,
            "--attack",
            "pgd-linf",
            "--eps",
            "0.02,0.1",
            "--steps",
            "3",
            "--subset",
            "40",
            "--out",
            s(&out),
        ];
        v.extend_from_slice(extra);
        assert_eq!(epsim(&v), ExitCode::SUCCESS, "{v:?}");
    };
    run(&[]);
    run(&["--transfer-from", "digital"]);
    run(&["--substrate", "netlist:ideal", "--transfer-from", "digital"]);
    let r = records(&out);
    assert_eq!(r.len(), 6);
    assert!(r[0]["clean_accuracy"].as_f64().unwrap() > 0.5, "{}", r[0]);
    let acc = |i: usize, k: &str| r[i][k].as_f64().unwrap();
    for e in 0..2 {
        let (white, same, ideal) = (e, 2 + e, 4 + e);
        assert!(
            r[same]["attack"]
                .as_str()
                .unwrap()
                .contains("transfer from"),
            "{}",
            r[same]
        );
        assert_eq!(acc(same, "robust_accuracy"), acc(white, "robust_accuracy"));
        assert_eq!(acc(same, "clean_accuracy"), acc(white, "clean_accuracy"));
        assert_eq!(r[ideal]["substrate"], "netlist:ideal", "{}", r[ideal]);
        assert!(
            (acc(ideal, "robust_accuracy") - acc(white, "robust_accuracy")).abs() <= 0.05,
            "{} vs {}",
            r[ideal],
            r[white]
        );
    }
    // The attack is strong enough to matter: at ε = 0.1 it fools some image.
    assert!(
        acc(1, "robust_accuracy") < acc(1, "clean_accuracy"),
        "{}",
        r[1]
    );
    let (code, msg) = epsim_failure(&[
        "attack",
        "--model",
        s(&ckpt),
        "--data",
        &data,
        "--attack",
        "pgd-linf",
        "--eps",
        "0.1",
        "--transfer-from",
        "analog",
        "--out",
        s(&dir.path().join("bad.jsonl")),
    ]);
    assert_eq!(code, 1, "{msg}");
    assert!(
        msg.contains("--transfer-from") && msg.contains("analog"),
        "{msg}"
    );
    assert!(!dir.path().join("bad.jsonl").exists());
}

/// A study's suite may hold transfer attacks (`transfer_from = "digital"`): each is its own cell
/// (item id `…~digital`), equal to the white-box cell on the digital substrate and within a few
/// images of it on `netlist:ideal`; `epsim robustness` refuses such a suite by name.
#[test]
fn transfer_attacks_in_a_study_are_cells_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/quickstart-epcnn.safetensors");
    let out = d.join("out");
    let attacks = "[[suite.attack]]\nname = \"pgd-linf\"\neps = [\"0.05\"]\nsteps = 3\n\n\
                   [[suite.attack]]\nname = \"pgd-linf\"\neps = [\"0.05\"]\nsteps = 3\n\
                   transfer_from = \"digital\"\n";
    let study = d.join("s.toml");
    std::fs::write(
        &study,
        format!(
            "name = \"t\"\nout_dir = \"{}\"\ndata = \"fashion-mnist:test\"\nsubset = 40\n\
             batch_size = 20\n[[model]]\nname = \"EP\"\ncheckpoint = \"{}\"\n\
             substrates = [\"digital\", \"netlist:ideal\"]\n[suite]\nprotocols = [\"standard\"]\n\
             {attacks}",
            out.display(),
            model.display()
        ),
    )
    .unwrap();
    assert_eq!(epsim(&["study", s(&study)]), ExitCode::SUCCESS);
    let recs = records(&out.join("results.jsonl"));
    let find = |sub: &str, transfer: bool| {
        recs.iter()
            .find(|r| {
                r["kind"] == "attack"
                    && r["substrate"] == sub
                    && r["attack"].as_str().unwrap().contains("transfer from") == transfer
            })
            .unwrap_or_else(|| panic!("no {sub} transfer={transfer} record"))
    };
    let acc = |r: &serde_json::Value| r["robust_accuracy"].as_f64().unwrap();
    let white = find("digital", false);
    assert_eq!(acc(find("digital", true)), acc(white));
    assert!((acc(find("netlist:ideal", true)) - acc(white)).abs() <= 0.05);
    let plan = std::fs::read_to_string(out.join("plan.jsonl")).unwrap();
    assert!(plan.contains("pgd-linf@0.05~digital"), "{plan}");
    // epsim robustness does not run transfer attacks: refused before any work.
    let suite = d.join("suite.toml");
    std::fs::write(&suite, attacks.replace("suite.attack", "attack")).unwrap();
    let (code, msg) = epsim_failure(&[
        "robustness",
        "--model",
        s(&model),
        "--data",
        "fashion-mnist:test",
        "--subset",
        "20",
        "--suite",
        s(&suite),
        "--out-dir",
        s(&d.join("rob")),
    ]);
    assert_eq!(code, 1, "{msg}");
    assert!(
        msg.contains("transfer_from") && msg.contains("suite.toml"),
        "{msg}"
    );
    assert!(!d.join("rob").exists());
}
