//! The bad-input regression suite: every way a user was seen to hurt themselves (issue
//! "Reliability"), each run through the real command line in-process and checked for its exit
//! code (2: usage error, 1: the command failed) and its message, which must name the file or
//! option at fault, say what is wrong, and read as sentences (no Rust Debug dump, no panic).
//! Where the case used to waste work, the test also shows that nothing ran (no output written).
//!
//! Cases: two runs into one `--out`; unknown keys in `[model]`, `[ep]` and `--spec`; unwritable
//! `--out`; plot formats; unknown attacks; corruptions on grayscale data; sizes of 0; `--plot`
//! without `--per-step`; flipped bytes, truncation and a wrong header in checkpoints; a changed
//! config on `--resume`; plot write errors; truncated datasets; shape mismatches; NaN weights and
//! inputs; a netlist's wrong `format_version`; bad `--set` values. The friction cases that are
//! behaviour rather than errors (records carry the commit, results go into new folders, numeric
//! suite ε) are here too.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use epsim_tests::{
    epsim, epsim_failure, s, tiny_cifar_ep_net, tiny_config, tiny_model_and_data, write_ep_model,
    write_tiny_cifar,
};

/// Run `epsim args`, which must fail with exit code `code` and a message that holds every one of
/// `needles` and reads as sentences: no Debug dump of an error value, no panic. The message.
fn fails(args: &[&str], code: i32, needles: &[&str]) -> String {
    let (got, msg) = epsim_failure(args);
    assert_eq!(got, code, "exit code of `epsim {}`:\n{msg}", args.join(" "));
    for n in needles {
        assert!(
            msg.contains(n),
            "`epsim {}`: the message does not say {n:?}:\n{msg}",
            args.join(" ")
        );
    }
    for dump in [
        "panicked",
        "internal error",
        "Os {",
        "kind: ",
        "Error(",
        "Some(",
        "\\n",
    ] {
        assert!(
            !msg.contains(dump),
            "`epsim {}`: the message holds a Debug dump ({dump:?}):\n{msg}",
            args.join(" ")
        );
    }
    msg
}

/// A tiny training setup in `d`: train.bin, test.bin and cfg.toml (`epochs` epochs); the config
/// path.
fn train_setup(d: &Path, epochs: usize) -> PathBuf {
    write_tiny_cifar(&d.join("train.bin"), 32, 1);
    write_tiny_cifar(&d.join("test.bin"), 16, 2);
    let cfg = d.join("cfg.toml");
    std::fs::write(
        &cfg,
        tiny_config(&d.join("train.bin"), &d.join("test.bin"), epochs),
    )
    .unwrap();
    cfg
}

/// A grayscale (1×8×8) EP model and an MNIST-layout test set of 12 images in `d`: (model, data).
fn grayscale_model_and_data(d: &Path) -> (PathBuf, String) {
    let mut spec = tiny_cifar_ep_net(false).spec;
    spec.input = [1, 8, 8];
    let net = ep::EpNet::init(&sim::Cpu, spec, &sim::Stream::new(7, "init"), None).unwrap();
    let model = d.join("gray.safetensors");
    write_ep_model(&net, &model);
    let dir = d.join("mnist");
    std::fs::create_dir_all(&dir).unwrap();
    let n = 12u32;
    let mut images = vec![0, 0, 8, 3];
    for v in [n, 8, 8] {
        images.extend_from_slice(&v.to_be_bytes());
    }
    images.extend((0..n * 64).map(|i| (i * 37 % 256) as u8));
    let mut labels = vec![0, 0, 8, 1];
    labels.extend_from_slice(&n.to_be_bytes());
    labels.extend((0..n).map(|i| (i % 10) as u8));
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), images).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), labels).unwrap();
    (model, format!("mnist:{}:test", dir.display()))
}

/// Owned arguments as the `&str` list the runners take.
fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

// ---- Runs, locks and resume -------------------------------------------------------------------

/// A run directory belongs to one process: a second `train` into it exits 1 at once naming the
/// owner, and the first run's files are untouched; without `--resume` an existing run is never
/// replaced; with a changed config, `--resume` names the field that changed.
#[test]
fn a_run_directory_is_never_silently_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = train_setup(d, 1);
    let run = d.join("run");
    let train = |extra: &[&str]| {
        let mut v = vec!["train", "--config", s(&cfg), "--out", s(&run)];
        v.extend_from_slice(extra);
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    assert_eq!(epsim(&refs(&train(&[]))), ExitCode::SUCCESS);
    let (ckpt, log) = (run.join("checkpoint.safetensors"), run.join("log.jsonl"));
    let (c0, l0) = (read(&ckpt), read(&log));

    // Another process holds the directory (this test process: alive).
    let lock = experiments::files::DirLock::acquire(&run, "test").unwrap();
    fails(
        &refs(&train(&["--resume", "--epochs", "2"])),
        1,
        &["in use by another", s(&run), "process"],
    );
    drop(lock);
    assert_eq!((read(&ckpt), read(&log)), (c0.clone(), l0.clone()));

    // No --resume: refused, not replaced.
    fails(
        &refs(&train(&[])),
        1,
        &["exists", "--resume", "checkpoint.safetensors"],
    );
    // A changed config on --resume names the first field that differs, with both values.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("beta = 0.5", "beta = 0.25")).unwrap();
    fails(
        &refs(&train(&["--resume", "--epochs", "2"])),
        1,
        &["different config", "beta", "0.5", "0.25"],
    );
    assert_eq!((read(&ckpt), read(&log)), (c0, l0));
}

/// An `--out` that cannot be created fails before any batch (no log anywhere), for `train` and
/// `smoke`.
#[test]
fn an_unwritable_out_fails_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = train_setup(d, 1);
    let file = d.join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let out = file.join("run");
    fails(
        &["train", "--config", s(&cfg), "--out", s(&out)],
        1,
        &[s(&out)],
    );
    fails(&["smoke", "--out", s(&out)], 1, &[s(&out)]);
    assert_eq!(read(&file), b"not a folder");
}

// ---- Configs and specs ------------------------------------------------------------------------

/// Unknown keys in `[model]` and `[ep]` (where they used to be ignored: `symetric = false` trained
/// symmetric EP) are refused with a "did you mean", before any training.
#[test]
fn unknown_config_keys_are_refused_with_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = train_setup(d, 1);
    let text = std::fs::read_to_string(&cfg).unwrap();
    let out = d.join("run");
    for (bad, needles) in [
        (
            text.replace("beta = 0.5", "beta = 0.5\nsymetric = false"),
            ["symetric", "symmetric"],
        ),
        (text.replace("t2 = 3", "t2 = 3\nt_1 = 5"), ["t_1", "t1"]),
        (
            text.replace("epochs = ", "epoch = 1\nepochs = "),
            ["epoch", "epochs"],
        ),
    ] {
        std::fs::write(&cfg, bad).unwrap();
        let msg = fails(
            &["train", "--config", s(&cfg), "--out", s(&out)],
            1,
            &[s(&cfg), needles[0]],
        );
        assert!(
            msg.contains(&format!("did you mean `{}`", needles[1]))
                || msg.contains(&format!("did you mean {}", needles[1])),
            "{msg}"
        );
        assert!(!out.join("log.jsonl").exists());
    }
}

/// A `--spec` file with an unknown key is refused naming the key; the same spec without it works.
#[test]
fn a_spec_file_with_an_unknown_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, data) = tiny_model_and_data(dir.path(), true, 20);
    let f = ep::checkpoint::TensorFile::from_bytes(&read(&ckpt)).unwrap();
    let spec = f.metadata[ep::checkpoint::SPEC_KEY].clone();
    let p = dir.path().join("spec.json");
    std::fs::write(&p, spec.replacen('{', "{\"t_one\": 3, ", 1)).unwrap();
    fails(
        &[
            "eval",
            "--model",
            s(&ckpt),
            "--spec",
            s(&p),
            "--data",
            &data,
        ],
        1,
        &["spec.json", "t_one"],
    );
    std::fs::write(&p, &spec).unwrap();
    assert_eq!(
        epsim(&[
            "eval",
            "--model",
            s(&ckpt),
            "--spec",
            s(&p),
            "--data",
            &data
        ]),
        ExitCode::SUCCESS
    );
}

/// Bad `--set` values: an unknown key (with a suggestion), a value that is not a number, a value
/// out of its range; all before any compilation.
#[test]
fn bad_set_values_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, _) = tiny_model_and_data(dir.path(), false, 4);
    let out = dir.path().join("export");
    let export = |set: &str| {
        vec![
            "export".to_string(),
            "--model".into(),
            s(&ckpt).into(),
            "--preset".into(),
            "pcm".into(),
            "--set".into(),
            set.into(),
            "--out".into(),
            s(&out).into(),
        ]
    };
    fails(
        &refs(&export("read_noise_scal=0.5")),
        1,
        &["read_noise_scal", "read_noise_scale"],
    );
    fails(
        &refs(&export("read_noise_scale=abc")),
        1,
        &["read_noise_scale", "abc"],
    );
    fails(
        &refs(&export("read_noise_scale")),
        1,
        &["read_noise_scale", "key=value"],
    );
    assert!(!out.exists(), "nothing exported");
}

/// A netlist of a format this build does not know, and one naming a weight file that does not
/// exist, are refused naming the file and the field; the shipped example checks.
#[test]
fn netlists_with_a_wrong_format_version_or_a_missing_weight_file_are_refused() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/netlist-example.json");
    assert_eq!(epsim(&["netlist", "check", s(&example)]), ExitCode::SUCCESS);
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&example).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["format_version"] = serde_json::json!(7);
    let bad = dir.path().join("future.json");
    std::fs::write(&bad, v.to_string()).unwrap();
    fails(
        &["netlist", "check", s(&bad)],
        1,
        &["future.json", "format_version", "7"],
    );
    // The example's weight files are relative to it: copied alone, they are missing.
    let alone = dir.path().join("alone.json");
    std::fs::write(&alone, &text).unwrap();
    fails(&["netlist", "check", s(&alone)], 1, &["alone.json", ".npy"]);
}

// ---- Counts, plots and suites -----------------------------------------------------------------

/// Sizes of 0 and a plot option without the plot are usage errors (exit code 2).
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
        v
    };
    fails(&with(&["--subset", "0"]), 2, &["--subset", "must be ≥ 1"]);
    fails(
        &with(&["--batch-size", "0"]),
        2,
        &["--batch-size", "must be ≥ 1"],
    );
    fails(&with(&["--plot", "acc.png"]), 2, &["--plot", "--per-step"]);
    fails(
        &[
            "attack", "--model", "m", "--data", "d", "--attack", "pgd-linf", "--eps", "0.1",
            "--subset", "0",
        ],
        2,
        &["--subset", "must be ≥ 1"],
    );
}

/// A plot format that cannot be written fails before the evaluation; a plot into a folder that
/// cannot exist fails with a sentence naming the file, not a plotting library's Debug dump.
#[test]
fn plots_that_cannot_be_written_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, data) = tiny_model_and_data(dir.path(), true, 20);
    let eval_plot = |plot: &Path| {
        vec![
            "eval".to_string(),
            "--model".into(),
            s(&ckpt).into(),
            "--data".into(),
            data.clone(),
            "--per-step".into(),
            "--steps".into(),
            "3".into(),
            "--plot".into(),
            s(plot).into(),
        ]
    };
    let gif = dir.path().join("acc.gif");
    fails(&refs(&eval_plot(&gif)), 1, &["acc.gif", "png"]);
    assert!(!gif.exists());
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let under = file.join("acc.png");
    fails(&refs(&eval_plot(&under)), 1, &[s(&under)]);
}

/// An unknown attack name is refused with a suggestion, on `attack` and in a suite, before any
/// attack runs; a suite with numeric ε works.
#[test]
fn unknown_attacks_fail_before_any_attack_runs_and_numeric_eps_works() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, data) = tiny_model_and_data(dir.path(), true, 20);
    let out = dir.path().join("atk/results.jsonl");
    fails(
        &[
            "attack",
            "--model",
            s(&ckpt),
            "--data",
            &data,
            "--attack",
            "pgd-lnf",
            "--eps",
            "0.05",
            "--out",
            s(&out),
        ],
        1,
        &["pgd-lnf", "did you mean `pgd-linf`"],
    );
    assert!(!out.exists());
    let suite = dir.path().join("s.toml");
    let rob = dir.path().join("rob");
    let robustness = vec![
        "robustness",
        "--model",
        s(&ckpt),
        "--data",
        &data,
        "--suite",
        s(&suite),
        "--out-dir",
        s(&rob),
    ];
    let good = "[[attack]]\nname = \"pgd-linf\"\neps = [0.05]\nsteps = 1\n";
    std::fs::write(&suite, good.replace("pgd-linf", "pgd-lnf")).unwrap();
    fails(
        &robustness,
        1,
        &["s.toml", "pgd-lnf", "did you mean `pgd-linf`"],
    );
    std::fs::write(&suite, good.replace("pgd-linf", "autoattack-fast-linf")).unwrap();
    fails(&robustness, 1, &["autoattack-fast-linf"]);
    assert!(!rob.exists(), "nothing ran");
    std::fs::write(&suite, good).unwrap();
    assert_eq!(epsim(&robustness), ExitCode::SUCCESS);
}

/// Corruptions on grayscale data (refused before this session) run as three equal channels,
/// keeping the first: every corruption of the suite gives a record.
#[test]
fn corruptions_on_grayscale_data_run_through_equal_channels() {
    let dir = tempfile::tempdir().unwrap();
    let (model, data) = grayscale_model_and_data(dir.path());
    let suite = dir.path().join("s.toml");
    std::fs::write(
        &suite,
        "[[attack]]\nname = \"pgd-linf\"\neps = [\"0.05\"]\nsteps = 1\n\
         [corruptions]\nnames = [\"all\"]\nseverities = [1]\n",
    )
    .unwrap();
    let rob = dir.path().join("rob");
    assert_eq!(
        epsim(&[
            "robustness",
            "--model",
            s(&model),
            "--data",
            &data,
            "--suite",
            s(&suite),
            "--out-dir",
            s(&rob),
        ]),
        ExitCode::SUCCESS
    );
    let corruptions = std::fs::read_to_string(rob.join("results.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"corruption\""))
        .count();
    assert_eq!(corruptions, 19);
}

// ---- Checkpoints ------------------------------------------------------------------------------

/// Flipped bytes inside a checkpoint's tensor data (they used to load silently), a truncated
/// checkpoint and a file that is not safetensors: each refused naming the file (and the tensor).
#[test]
fn corrupt_checkpoints_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, data) = tiny_model_and_data(dir.path(), true, 20);
    let bytes = read(&ckpt);
    let eval = |m: &Path| fails(&["eval", "--model", s(m), "--data", &data], 1, &[s(m)]);

    let mut flipped = bytes.clone();
    let n = flipped.len();
    for b in &mut flipped[n - 300..n - 100] {
        *b ^= 0xa5;
    }
    let p = dir.path().join("flipped.safetensors");
    std::fs::write(&p, &flipped).unwrap();
    let msg = eval(&p);
    assert!(
        msg.contains("corrupt") && msg.contains("synapses."),
        "{msg}"
    );

    let p = dir.path().join("truncated.safetensors");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    eval(&p);

    let p = dir.path().join("not-safetensors.safetensors");
    std::fs::write(&p, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}").unwrap();
    eval(&p);

    let p = dir.path().join("empty.safetensors");
    std::fs::write(&p, b"").unwrap();
    eval(&p);

    fails(
        &[
            "eval",
            "--model",
            s(&dir.path().join("missing.safetensors")),
            "--data",
            &data,
        ],
        1,
        &["missing.safetensors"],
    );
}

/// NaN weights are refused naming the tensor; a model whose shapes differ from its spec is
/// refused naming the tensor and both shapes.
#[test]
fn nan_weights_and_shape_mismatches_name_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, data) = tiny_model_and_data(dir.path(), true, 20);
    let net = tiny_cifar_ep_net(true);
    let (mut w, b) = net.to_host(&sim::Cpu).unwrap();
    *w[1].iter_mut().nth(3).unwrap() = f32::NAN;
    // model_to_file does not judge values: it writes what a foreign tool might have written.
    let f = ep::checkpoint::model_to_file(&net.spec, &w, &b).unwrap();
    let nan = dir.path().join("nan.safetensors");
    std::fs::write(&nan, f.to_bytes().unwrap()).unwrap();
    fails(
        &["eval", "--model", s(&nan), "--data", &data],
        1,
        &["nan.safetensors", "synapses.1.weight"],
    );

    // A spec with 8 channels for a checkpoint of 4.
    let f = ep::checkpoint::TensorFile::from_bytes(&read(&ckpt)).unwrap();
    let mut spec: serde_json::Value =
        serde_json::from_str(&f.metadata[ep::checkpoint::SPEC_KEY]).unwrap();
    spec["conv"][0]["channels"] = serde_json::json!(8);
    let p = dir.path().join("spec8.json");
    std::fs::write(&p, spec.to_string()).unwrap();
    fails(
        &[
            "eval",
            "--model",
            s(&ckpt),
            "--spec",
            s(&p),
            "--data",
            &data,
        ],
        1,
        &[
            "m.safetensors",
            "synapses.0.weight",
            "[4, 3, 3, 3]",
            "[8, 3, 3, 3]",
        ],
    );
}

/// NaN inputs given to `settle` are refused naming the file and the position.
#[test]
fn nan_inputs_are_refused() {
    use ndarray_npy::WriteNpyExt;
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, _) = tiny_model_and_data(dir.path(), true, 4);
    let mut x = ndarray::ArrayD::<f32>::zeros(vec![2, 3, 32, 32]);
    x[[1, 2, 5, 7]] = f32::NAN;
    let p = dir.path().join("x.npy");
    x.write_npy(std::fs::File::create(&p).unwrap()).unwrap();
    let out = dir.path().join("states.npz");
    fails(
        &[
            "settle",
            "--model",
            s(&ckpt),
            "--input",
            s(&p),
            "--steps",
            "3",
            "--dump",
            s(&out),
        ],
        1,
        &["x.npy", "NaN"],
    );
    assert!(!out.exists());
}

// ---- Datasets ---------------------------------------------------------------------------------

/// Truncated dataset files (a CIFAR-10 binary cut inside a record; IDX files shorter than their
/// header says) are refused naming the file and the sizes.
#[test]
fn truncated_datasets_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, data) = tiny_model_and_data(dir.path(), true, 6);
    let bin = dir.path().join("test.bin");
    let bytes = read(&bin);
    let cut = dir.path().join("cut.bin");
    std::fs::write(&cut, &bytes[..3073 * 4 + 1000]).unwrap();
    fails(
        &[
            "eval",
            "--model",
            s(&ckpt),
            "--data",
            &format!("cifar10:{}:test", cut.display()),
        ],
        1,
        &["cut.bin", "3073"],
    );
    let _ = data;

    let (model, data) = grayscale_model_and_data(dir.path());
    let images = dir.path().join("mnist/t10k-images-idx3-ubyte");
    let b = read(&images);
    std::fs::write(&images, &b[..b.len() - 100]).unwrap();
    fails(
        &["eval", "--model", s(&model), "--data", &data],
        1,
        &["t10k-images-idx3-ubyte"],
    );
}

// ---- Records ----------------------------------------------------------------------------------

/// Records carry the commit of the code; a results file may go into a folder that does not exist
/// yet (it is created).
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
    let text = std::fs::read_to_string(&out).unwrap();
    let rec: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
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
