//! `epsim attack --save-examples`, suites with save_examples and several budgets of one attack
//! (the iterations/restarts sanity check), and `epsim report` merging the results of two models,
//! run through the binary on a small synthetic CIFAR-10 file and untrained BP-CNNs.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn epsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_epsim"))
        .args(["--quiet", "--threads", "1"])
        .args(args)
        .env_remove("EPSIM_LOG")
        .output()
        .expect("run epsim")
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "epsim failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An untrained small BP-CNN for 3x32x32 inputs, initialized from `seed`.
fn model(path: &Path, seed: u64) {
    let spec: ep::baselines::BaselineSpec = serde_json::from_str(
        r#"{"kind":"bp_cnn","input":[3,32,32],
            "conv":[{"channels":4,"kernel":3,"stride":2,"padding":1,"pool":"max"}],
            "fc":[10]}"#,
    )
    .unwrap();
    let m = ep::baselines::Baseline::init(spec, &sim::Stream::new(seed, "init")).unwrap();
    std::fs::write(path, m.to_file().unwrap().to_bytes().unwrap()).unwrap();
}

/// 12 synthetic CIFAR-10 records (labels 0..9, known pixels); returns the file.
fn data(dir: &Path) -> PathBuf {
    let mut bytes = Vec::new();
    for r in 0..12 {
        bytes.extend(cifar10_record((r % 10) as u8, r));
    }
    write(dir, "test.bin", &bytes)
}

#[test]
fn save_examples_writes_the_figure_5_grid() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = d.join("bp.safetensors");
    model(&m, 1);
    let data = format!("cifar10:{}", s(&data(d)));
    let res = d.join("out/results.jsonl");
    std::fs::create_dir_all(res.parent().unwrap()).unwrap();
    ok(&epsim(&[
        "attack",
        "--model",
        s(&m),
        "--data",
        &data,
        "--attack",
        "pgd-linf",
        "--eps",
        "0,8/255",
        "--steps",
        "3",
        "--batch-size",
        "5",
        "--out",
        s(&res),
        "--save-examples",
        "4",
    ]));
    // 32x32 images: scale 4 (128 px cells); width max(3·128 + 4·6, 460) = 460, height
    // 6 + 20 + 4·(128 + 16 + 6) + 36 = 662.
    for (file, eps_levels) in [
        ("examples_pgd-linf_eps0.png", 0),
        ("examples_pgd-linf_eps8-255.png", 8),
    ] {
        let p = d.join("out").join(file);
        let img = image::open(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .to_rgb8();
        assert_eq!(img.dimensions(), (460, 662), "{file}");
        // Rows are the first 4 images in order (the first batch of 5 holds them); cell origins
        // (6 + col·134, 26 + row·150).
        for r in 0..4 {
            let (y0, xc, xa, xp) = (26 + r * 150, 6, 6 + 134, 6 + 2 * 134);
            for y in 0..128 {
                for x in 0..128 {
                    let p = (y / 4) * 32 + x / 4;
                    let clean = img.get_pixel((xc + x) as u32, (y0 + y) as u32).0;
                    let adv = img.get_pixel((xa + x) as u32, (y0 + y) as u32).0;
                    let pert = img.get_pixel((xp + x) as u32, (y0 + y) as u32).0;
                    for c in 0..3 {
                        // The clean cell is the image, exactly (nearest-neighbour upscaling).
                        assert_eq!(clean[c], px(r, c * 1024 + p), "{file} row {r} ({x},{y})");
                        // The adversarial cell is within ε of it (±8 levels at 8/255).
                        let diff = (adv[c] as i32 - clean[c] as i32).abs();
                        assert!(diff <= eps_levels, "{file} row {r}: |adv − clean| = {diff}");
                        if eps_levels == 0 {
                            // No perturbation: mid-gray, 0.5·255 rounded.
                            assert_eq!(pert[c], 128, "{file} row {r}");
                        }
                    }
                }
            }
        }
    }
    // N = 0 is refused with a clear message.
    let o = epsim(&[
        "attack",
        "--model",
        s(&m),
        "--data",
        &data,
        "--attack",
        "pgd-linf",
        "--eps",
        "0",
        "--out",
        s(&res),
        "--save-examples",
        "0",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--save-examples needs N ≥ 1"));
}

#[test]
fn suite_budgets_are_checked_and_report_merges_two_models() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = format!("cifar10:{}", s(&data(d)));
    let (a, b) = (d.join("ep_like.safetensors"), d.join("bp.safetensors"));
    model(&a, 1);
    model(&b, 2);
    std::fs::write(
        d.join("suite.toml"),
        r#"
[[attack]]
name = "pgd-linf"
eps = ["0", "8/255", "1/2"]
steps = 2
save_examples = 2
[[attack]]
name = "pgd-linf"
eps = ["8/255"]
steps = 6
restarts = 2
"#,
    )
    .unwrap();
    for (m, out) in [(&a, "ra"), (&b, "rb")] {
        ok(&epsim(&[
            "robustness",
            "--model",
            s(m),
            "--data",
            &data,
            "--suite",
            s(&d.join("suite.toml")),
            "--out-dir",
            s(&d.join(out)),
        ]));
    }
    let rep = std::fs::read_to_string(d.join("ra/report.md")).unwrap();
    // Two budgets of PGD at 8/255: the iterations/restarts check runs (PASS or WARN).
    assert!(
        rep.contains("iterations/restarts") || rep.contains("restart(s))"),
        "{rep}"
    );
    assert!(d.join("ra/examples_pgd-linf_eps8-255.png").is_file());
    assert!(d.join("ra/examples_pgd-linf_eps1-2.png").is_file());

    let md = d.join("merged/report.md");
    let (ra, rb) = (d.join("ra/results.jsonl"), d.join("rb/results.jsonl"));
    let o = epsim(&[
        "report",
        "--results",
        s(&ra),
        s(&rb),
        "--label",
        "ep_like=EP-CNN",
        "--label",
        &format!("{}=BP-CNN", s(&b)),
        "--out",
        s(&md),
    ]);
    ok(&o);
    let text = std::fs::read_to_string(&md).unwrap();
    // One table per attack setting; models side by side.
    assert!(
        text.contains("## PGD-Linf iters=2 restarts=1 — robust accuracy (%)"),
        "{text}"
    );
    assert!(
        text.contains("| model | clean | ε=0 | ε=8/255 | ε=1/2 |"),
        "{text}"
    );
    assert!(text.contains("| model | clean | ε=8/255 |"), "{text}");
    // Each row's ε = 0 cell equals its clean accuracy; at ε = 1/2 (L∞) PGD breaks everything.
    let recs: Vec<serde_json::Value> = std::fs::read_to_string(&ra)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let clean = 100.0 * recs[0]["clean_accuracy"].as_f64().unwrap();
    let row = format!("| EP-CNN | {clean:.1} | {clean:.1} | ");
    assert!(text.contains(&row), "{row} not in\n{text}");
    assert!(text.contains("| BP-CNN |"), "{text}");
    assert!(text.contains("## Sanity checks"), "{text}");
    for p in [
        "report_pgd-linf-iters-2-restarts-1.png",
        "report_pgd-linf-iters-6-restarts-2.png",
    ] {
        let img = image::open(d.join("merged").join(p)).unwrap();
        assert_eq!((img.width(), img.height()), (800, 500), "{p}");
    }

    // A malformed line: an error naming the file and the line, nothing written.
    let bad = d.join("bad.jsonl");
    let good_line = std::fs::read_to_string(&ra).unwrap();
    let good_line = good_line.lines().next().unwrap();
    std::fs::write(&bad, format!("{good_line}\n{{oops\n")).unwrap();
    let o = epsim(&[
        "report",
        "--results",
        s(&bad),
        "--out",
        s(&d.join("bad.md")),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("{}:2", s(&bad))), "{err}");
    assert!(!d.join("bad.md").exists());
    // An unknown --label path: a clear error.
    let o = epsim(&[
        "report",
        "--results",
        s(&ra),
        "--label",
        "nothere=X",
        "--out",
        s(&d.join("x.md")),
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no record has model \"nothere\""),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
