//! `epsim study --slurm --wait` on a real single-node Slurm (brought up by
//! `scripts/slurm-local.sh up`, torn down afterwards even when the test fails, unless it was
//! already running): the tiny study (16 cells) as a job array with one cell forced to fail, which
//! `--wait` reports (non-zero exit, the cell named) and `collect` refuses; the failed index
//! resubmitted with the kept `study.sbatch`; then the collected results.jsonl equals a local run's
//! records cell by cell; a tiny sweep (5 cells) the same way, against a local `epsim sweep`; a
//! study whose model is trained first runs a training job before its array, and an untrainable
//! one fails --wait instead of waiting forever. This test fails when
//! Slurm cannot be started; set EPSIM_SLURM_TEST=0 to
//! skip it (with a notice) on machines without root or apt.

use std::path::{Path, PathBuf};
use std::process::Command;

use epsim_tests::{
    tiny_cifar_ep_net, tiny_config, tiny_study_text, write_ep_model, write_tiny_cifar,
};
use experiments::study::cells::{StudyOptions, run_study};
use experiments::study::spec::StudySpec;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The newest modification time of the files under `dir` (recursively).
fn newest(dir: &Path) -> std::time::SystemTime {
    let mut t = std::time::SystemTime::UNIX_EPOCH;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let m = if p.is_dir() {
            newest(&p)
        } else {
            e.metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::SystemTime::UNIX_EPOCH)
        };
        t = t.max(m);
    }
    t
}

/// The epsim executable beside this test's profile directory, built by cargo when it is absent
/// or older than a source file of the workspace (a stale binary from an older build would test
/// old code; `cargo test --workspace` builds a fresh one, which is used as it is).
fn epsim_exe() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().unwrap().parent().unwrap();
    let bin = profile.join("epsim");
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
    let sources = ["sim", "devices", "ep", "host-gpu", "experiments"]
        .iter()
        .map(|c| newest(&repo().join(c).join("src")))
        .max()
        .unwrap();
    if built.is_none_or(|b| b < sources) {
        let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        c.args(["build", "-p", "experiments", "--bin", "epsim"]);
        if profile.file_name().is_some_and(|n| n == "release") {
            c.arg("--release");
        }
        assert!(c.status().unwrap().success(), "building epsim failed");
    }
    bin
}

fn slurm_script(arg: &str) -> std::process::Output {
    Command::new("bash")
        .arg(repo().join("scripts/slurm-local.sh"))
        .arg(arg)
        .output()
        .expect("running scripts/slurm-local.sh")
}

/// Stops the Slurm this test started, however the test ends.
struct Down(bool);
impl Drop for Down {
    fn drop(&mut self) {
        if self.0 {
            let _ = slurm_script("down");
        }
    }
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            // Timing, and the commit the executables were built at (the epsim binary may be
            // older than this test's build), are provenance, not results.
            for k in ["wall_s", "commit"] {
                v.as_object_mut().unwrap().remove(k);
            }
            v
        })
        .collect()
}

#[test]
fn a_tiny_study_as_a_slurm_array_equals_the_local_run() {
    if std::env::var("EPSIM_SLURM_TEST").is_ok_and(|v| v == "0") {
        eprintln!("NOTICE: EPSIM_SLURM_TEST=0: the Slurm test is not run");
        return;
    }
    let was_up = Command::new("sinfo")
        .args(["-h", "-o", "%a"])
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    let _down = Down(!was_up);
    let up = slurm_script("up");
    assert!(
        up.status.success(),
        "could not start a local Slurm (scripts/slurm-local.sh up; needs root and apt, or set \
         EPSIM_SLURM_TEST=0 to skip): {}{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    let exe = epsim_exe();

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_ep_model(&tiny_cifar_ep_net(true), &d.join("a.safetensors"));
    write_ep_model(&tiny_cifar_ep_net(false), &d.join("b.safetensors"));
    write_tiny_cifar(&d.join("test.bin"), 80, 2);
    let (local, arr) = (d.join("local"), d.join("arr"));
    let study_local = d.join("local.toml");
    std::fs::write(
        &study_local,
        tiny_study_text(d, &local, "\"0.02\", \"0.1\""),
    )
    .unwrap();
    let study = d.join("arr.toml");
    std::fs::write(&study, tiny_study_text(d, &arr, "\"0.02\", \"0.1\"")).unwrap();

    // Cell 5 fails (a test hook, passed to the tasks through sbatch's exported environment).
    let o = Command::new(&exe)
        .args(["--quiet", "study"])
        .arg(&study)
        .args(["--slurm", "--cpus-per-task", "1", "--time", "5", "--wait"])
        .env("EPSIM_FAIL_CELLS", "5")
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(
        !o.status.success(),
        "a failed cell must fail --wait:\n{out}{err}"
    );
    assert!(
        out.contains("array job") && out.contains("collect job"),
        "{out}"
    );
    assert!(
        err.contains("missing [5]") && err.contains("failed [5]"),
        "{err}"
    );
    assert!(arr.join("study.sbatch").exists() && arr.join("failed/000005.txt").exists());
    assert!(
        !arr.join("results.jsonl").exists(),
        "collect ran on a partial study"
    );

    // Resubmit the failed index with the kept sbatch file; finished cells are not rerun.
    let s = Command::new("sbatch")
        .args(["--wait", "--array=5"])
        .arg(arr.join("study.sbatch"))
        .env_remove("EPSIM_FAIL_CELLS")
        .output()
        .unwrap();
    assert!(
        s.status.success(),
        "resubmitted cell failed: {}",
        String::from_utf8_lossy(&s.stderr)
    );
    assert!(!arr.join("failed/000005.txt").exists());
    let c = Command::new(&exe)
        .args(["--quiet", "study"])
        .arg(&study)
        .arg("--collect")
        .output()
        .unwrap();
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));

    let o = run_study(
        &sim::Cpu,
        &StudySpec::read(&study_local).unwrap(),
        &study_local,
        &StudyOptions::default(),
    )
    .unwrap();
    assert_eq!(o.cells, 16);
    let (got, want) = (
        records(&arr.join("results.jsonl")),
        records(&local.join("results.jsonl")),
    );
    assert_eq!(got.len(), 16);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "cell {i}");
    }

    // A tiny sweep (digital + 2 levels × 2 substrate seeds = 5 cells) the same way: cell 2 fails,
    // --wait names it, the kept sweep.sbatch reruns it, and the collection equals a local sweep.
    let suite = d.join("suite.toml");
    std::fs::write(
        &suite,
        "[[attack]]\nname = \"pgd-linf\"\neps = [\"0.05\"]\nsteps = 2\n",
    )
    .unwrap();
    let data = format!("cifar10:{}:test", d.join("test.bin").display());
    let sweep = |out: &Path, extra: &[&str], fail: &str| {
        Command::new(&exe)
            .args(["--quiet", "--seed", "3", "sweep", "--model"])
            .arg(d.join("a.safetensors"))
            .args(["--data", &data, "--subset", "16", "--preset", "pcm"])
            .args(["--param", "prog_noise_scale=0.5,2", "--suite"])
            .arg(&suite)
            .args([
                "--substrate-seeds",
                "2",
                "--tile",
                "16x8",
                "--batch-size",
                "8",
            ])
            .args(["--eot", "1", "--out-dir"])
            .arg(out)
            .args(extra)
            .env("EPSIM_FAIL_CELLS", fail)
            .output()
            .unwrap()
    };
    let (sw_local, sw_arr) = (d.join("sweep-local"), d.join("sweep-arr"));
    let o = sweep(&sw_local, &[], "");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let slurm_args = ["--slurm", "--cpus-per-task", "1", "--time", "5", "--wait"];
    let o = sweep(&sw_arr, &slurm_args, "2");
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(
        !o.status.success(),
        "a failed cell must fail --wait:\n{out}{err}"
    );
    assert!(out.contains("submitted 5 cells"), "{out}");
    assert!(
        err.contains("missing [2]") && err.contains("failed [2]"),
        "{err}"
    );
    assert!(
        !sw_arr.join("results.jsonl").exists(),
        "collect ran on a partial sweep"
    );
    let s = Command::new("sbatch")
        .args(["--wait", "--array=2"])
        .arg(sw_arr.join("sweep.sbatch"))
        .env_remove("EPSIM_FAIL_CELLS")
        .output()
        .unwrap();
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    let c = sweep(&sw_arr, &["--collect"], "");
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    let (got, want) = (
        records(&sw_arr.join("results.jsonl")),
        records(&sw_local.join("results.jsonl")),
    );
    assert_eq!(got.len(), 5 * 2, "5 runs × (clean + one attack)");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "sweep record {i}");
    }

    // A study whose model is trained first: the training job, then the array after it
    // (afterok). With a training config that cannot run, the array can never start: --wait
    // cancels it and fails saying so.
    write_tiny_cifar(&d.join("train.bin"), 32, 1);
    let cfg = d.join("cfg.toml");
    std::fs::write(
        &cfg,
        tiny_config(&d.join("train.bin"), &d.join("test.bin"), 1),
    )
    .unwrap();
    let trained_study = |name: &str, config: &Path| {
        let path = d.join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "name = \"{name}\"\nout_dir = \"{}\"\ndata = \"cifar10:{}:test\"\nsubset = 8\n\
                 batch_size = 8\n[[model]]\nname = \"EP\"\ncheckpoint = \"missing.safetensors\"\n\
                 train = \"{}\"\nsubstrates = [\"digital\"]\n[suite]\nprotocols = [\"standard\"]\n\
                 [[suite.attack]]\nname = \"pgd-linf\"\neps = [\"0.05\"]\nsteps = 2\n",
                d.join(name).display(),
                d.join("test.bin").display(),
                config.display()
            ),
        )
        .unwrap();
        Command::new(&exe)
            .args(["--quiet", "study"])
            .arg(&path)
            .args(["--slurm", "--cpus-per-task", "1", "--time", "5", "--wait"])
            .output()
            .unwrap()
    };
    let o = trained_study("trained", &cfg);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("training job"), "{out}");
    let t = d.join("trained");
    assert!(t.join("train.sbatch").exists());
    assert!(t.join("models/EP/checkpoint.safetensors").exists());
    assert_eq!(
        records(&t.join("results.jsonl")).len(),
        2,
        "clean + one attack"
    );
    let bad = d.join("bad-cfg.toml");
    std::fs::write(
        &bad,
        tiny_config(&d.join("no-such.bin"), &d.join("test.bin"), 1),
    )
    .unwrap();
    let o = trained_study("untrainable", &bad);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("can never start"), "{err}");
}
