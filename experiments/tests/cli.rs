//! The `epsim` binary, run as a user would.

mod common;
use common::*;
use std::process::{Command, Output};

fn epsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_epsim"))
        .args(args)
        .env_remove("EPSIM_LOG")
        .output()
        .expect("run epsim")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn help_explains() {
    let o = epsim(&["--help"]);
    assert!(o.status.success());
    let s = text(&o.stdout);
    for want in [
        "Equilibrium Propagation",
        "--seed",
        "--threads",
        "--verbose",
        "--quiet",
        "data",
        "DATASET SPECS",
        "fashion-mnist",
    ] {
        assert!(s.contains(want), "--help lacks {want}:\n{s}");
    }
    let o = epsim(&["data", "info", "--help"]);
    assert!(o.status.success());
    assert!(text(&o.stdout).contains("cifar10:"), "{}", text(&o.stdout));
}

#[test]
fn data_info_on_test_batch_bin() {
    let dir = cifar10_dir();
    let bin = dir.join("test_batch.bin");
    let o = epsim(&["--threads", "1", "data", "info", bin.to_str().unwrap()]);
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));
    let s = text(&o.stdout);
    assert!(s.contains("images:   10000"), "{s}");
    assert!(s.contains("3x32x32"), "{s}");
    for c in [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ] {
        assert!(s.contains(c), "no class {c} in:\n{s}");
    }
    // the known CIFAR-10 test-set red mean, 0.4942 (JPEG leaves the 4th decimal within 1e-3)
    let mean_line = s
        .lines()
        .find(|l| l.starts_with("mean:"))
        .expect("mean line");
    let r: f64 = mean_line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!((r - 0.4942).abs() < 1e-3, "{mean_line}");
}

#[test]
fn data_info_json() {
    let t = tempfile::tempdir().unwrap();
    let mut b = Vec::new();
    for (r, l) in [3u8, 3, 7].iter().enumerate() {
        b.extend(cifar10_record(*l, r));
    }
    let f = write(t.path(), "x.bin", &b);
    let o = epsim(&[
        "-q",
        "data",
        "info",
        "--json",
        &format!("cifar10:{}:test", f.display()),
    ]);
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["count"], 3);
    assert_eq!(v[0]["split"], "test");
    assert_eq!(v[0]["class_counts"][3], 2);
    assert_eq!(v[0]["class_counts"][7], 1);
    assert_eq!(v[0]["classes"][7], "horse");
}

#[test]
fn corrupt_file_gives_exit_code_1_and_names_the_file() {
    let t = tempfile::tempdir().unwrap();
    let mut b = cifar10_record(1, 0);
    b.extend(&cifar10_record(2, 1)[..500]);
    let f = write(t.path(), "broken_batch.bin", &b);
    let o = epsim(&["data", "info", &format!("cifar10:{}", f.display())]);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert!(e.starts_with("error: "), "{e}");
    assert!(
        e.contains("broken_batch.bin") && e.contains("offset 3073"),
        "{e}"
    );
    assert!(
        !e.contains("panicked") && !e.contains("RUST_BACKTRACE"),
        "{e}"
    );
    // a missing file too
    let o = epsim(&["data", "info", "cifar10:/nonexistent/x.bin"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("/nonexistent/x.bin"));
}

#[test]
fn bad_usage_is_not_a_panic() {
    let o = epsim(&["data", "info", "cifar10"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("needs a path"),
        "{}",
        text(&o.stderr)
    );
    let o = epsim(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn preview_writes_a_png_grid() {
    let t = tempfile::tempdir().unwrap();
    let mut b = Vec::new();
    for r in 0..5 {
        b.extend(cifar10_record(r as u8, r));
    }
    let f = write(t.path(), "x.bin", &b);
    let out = t.path().join("grid.png");
    let o = epsim(&[
        "data",
        "preview",
        &format!("cifar10:{}", f.display()),
        "-o",
        out.to_str().unwrap(),
        "--rows",
        "2",
        "--cols",
        "3",
        "--scale",
        "1",
    ]);
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));
    let img = image::open(&out).unwrap().to_rgb8();
    // 3 columns of 32+1 pixels plus a border: 100 wide; 2 rows: 67 high
    assert_eq!((img.width(), img.height()), (100, 67));
    // image 4 (second row, second column), pixel (0,0): red px(4,0), green px(4,1024), blue px(4,2048)
    let p = img.get_pixel(1 + 33, 1 + 33);
    assert_eq!(p.0, [px(4, 0), px(4, 1024), px(4, 2048)]);
}

/// With stderr not a terminal (a pipe here), long work still reports where it is: plain progress
/// lines (label, position, rate, ETA) instead of a bar; `--quiet` hides them.
#[test]
fn progress_is_plain_lines_when_stderr_is_not_a_terminal() {
    let bin = cifar10_dir().join("test_batch.bin");
    let out = tempfile::tempdir().unwrap();
    let run = |quiet: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_epsim"));
        if quiet {
            c.arg("--quiet");
        }
        c.args(["corrupt", "--data", bin.to_str().unwrap(), "--corruption"])
            .args(["contrast,brightness", "--severity", "1", "--out"])
            .arg(out.path())
            .env_remove("EPSIM_LOG")
            .env("EPSIM_PROGRESS_SECS", "0")
            .output()
            .expect("run epsim")
    };
    let o = run(false);
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));
    let err = text(&o.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("corrupt: ")).collect();
    assert!(!lines.is_empty(), "no progress line in:\n{err}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("/2 (") && l.contains("eta")),
        "{lines:?}"
    );
    assert!(
        !err.contains('\r') && !err.contains("\x1b["),
        "terminal codes in {err:?}"
    );
    let q = run(true);
    assert!(q.status.success());
    assert!(
        !text(&q.stderr).contains("corrupt: "),
        "{}",
        text(&q.stderr)
    );
}

/// `eval --substrate netlist:pcm` prints the cost per inference of its run, the total `epsim cost`
/// counts for the same realization, images and steps.
#[test]
fn eval_on_a_substrate_prints_the_cost_epsim_cost_counts() {
    let model = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/quickstart-epcnn.safetensors"
    );
    let data = ["--data", "fashion-mnist:test", "--subset", "20"];
    let mut ev = vec![
        "--threads",
        "1",
        "eval",
        "--model",
        model,
        "--substrate",
        "netlist:pcm",
    ];
    ev.extend_from_slice(&data);
    let e = epsim(&ev);
    assert!(e.status.success(), "{}", text(&e.stderr));
    let out = text(&e.stdout);
    let uj: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("cost per inference: "))
        .and_then(|l| l.split(" µJ").next())
        .unwrap_or_else(|| panic!("no cost line in\n{out}"))
        .parse()
        .unwrap();
    let mut co = vec![
        "--threads",
        "1",
        "cost",
        "--model",
        model,
        "--preset",
        "pcm",
    ];
    co.extend_from_slice(&data);
    let c = epsim(&co);
    assert!(c.status.success(), "{}", text(&c.stderr));
    let cout = text(&c.stdout);
    let total: f64 = cout
        .lines()
        .find_map(|l| l.trim().strip_prefix("total"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no total in\n{cout}"))
        .parse()
        .unwrap();
    assert!(
        (uj * 1e-6 - total).abs() <= 1e-3 * total,
        "eval {uj} µJ vs cost {total} J"
    );
    // The digital engine has no cost model: no cost line.
    let mut dg = vec!["--threads", "1", "eval", "--model", model];
    dg.extend_from_slice(&data);
    let d = epsim(&dg);
    assert!(
        !text(&d.stdout).contains("cost per inference"),
        "{}",
        text(&d.stdout)
    );
}
