//! End-to-end baseline training through the experiments driver: BP-CNN exact resume and reload,
//! ViT and AdvCNN runs, adversarial training raising PGD robust accuracy, config errors.

use std::borrow::Cow;
use std::path::Path;

use epsim_tests::write_tiny_cifar;
use experiments::attacks::{Attack, Norm, Pgd};
use experiments::classifier::{BaselineClassifier, Classifier};
use experiments::runs::TrainOptions;
use experiments::runs::bp as bp_run;
use experiments::runs::config::{AnyConfig, BaselineConfig};

fn data(dir: &Path, n_train: usize, n_test: usize) -> String {
    let train = dir.join("train.bin");
    let test = dir.join("test.bin");
    write_tiny_cifar(&train, n_train, 1);
    write_tiny_cifar(&test, n_test, 2);
    format!(
        r#"
[data]
train = "cifar10:{}:train"
test = "cifar10:{}:test"
mean = [0.4, 0.4, 0.4]
std = [0.3, 0.3, 0.3]
"#,
        train.display(),
        test.display()
    )
}

const CNN: &str = r#"
[model]
input = [3, 32, 32]
conv = [{ channels = 4, kernel = 3, stride = 2, padding = 1, pool = "max" },
        { channels = 6, kernel = 3, stride = 1, padding = 1, pool = "max" }]
fc = [16, 10]
"#;

fn cfg(kind: &str, data: &str, arch: &str, optim: &str, epochs: usize) -> BaselineConfig {
    let text = format!(
        "kind = \"{kind}\"\nname = \"t\"\nseed = 5\n{data}\n{arch}\n{optim}\n[train]\nepochs = {epochs}\nbatch_size = 16\n"
    );
    match AnyConfig::from_toml(&text, "t.toml").unwrap() {
        AnyConfig::Baseline(c) => c,
        AnyConfig::Ep(_) => panic!("parsed as EP"),
    }
}

const SGD: &str = r#"
[optim]
algorithm = { kind = "sgd", momentum = 0.9 }
lrs = [0.05]
wds = [5e-4]
schedule = { kind = "cosine", t_max = 3, eta_min = 0.001 }
"#;

fn tensors(path: &Path) -> Vec<(String, sim::Tensor)> {
    ep::checkpoint::TensorFile::from_bytes(&std::fs::read(path).unwrap())
        .unwrap()
        .tensors
}

#[test]
fn bpcnn_interrupted_and_resumed_equals_uninterrupted_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = data(dir.path(), 96, 32);
    d.push_str("crop_padding = 2\nhflip = true\n");
    let c = cfg("bp_cnn", &d, CNN, SGD, 3);
    let straight = dir.path().join("straight");
    let opts = |out: &Path| TrainOptions {
        out_dir: Some(out.to_path_buf()),
        ..Default::default()
    };
    let logs = bp_run::train(&sim::Cpu, &c, &opts(&straight)).unwrap();
    assert_eq!(logs.len(), 3);
    let split = dir.path().join("split");
    let first = bp_run::train(
        &sim::Cpu,
        &c,
        &TrainOptions {
            stop_after: Some(1),
            ..opts(&split)
        },
    )
    .unwrap();
    assert_eq!(first.len(), 1);
    let e = bp_run::train(&sim::Cpu, &c, &opts(&split)).unwrap_err();
    assert!(format!("{e:#}").contains("--resume"), "{e:#}");
    let rest = bp_run::train(
        &sim::Cpu,
        &c,
        &TrainOptions {
            resume: true,
            ..opts(&split)
        },
    )
    .unwrap();
    assert_eq!(rest.len(), 2);
    let a = tensors(&straight.join("checkpoint.safetensors"));
    let b = tensors(&split.join("checkpoint.safetensors"));
    let names: Vec<&str> = a.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "bn.0.running_mean",
        "bn.1.running_var",
        "conv.0.weight",
        "fc.1.bias",
        "optimizer.0.buf1",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert_eq!(a, b, "resumed run differs from the uninterrupted run");
    for (x, y) in logs.iter().zip(first.iter().chain(&rest)) {
        assert_eq!(x.test_acc, y.test_acc);
        assert_eq!(x.train_acc, y.train_acc);
    }
    let log = std::fs::read_to_string(split.join("log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 3);
    // Reload: same test accuracy; a different config refuses to resume.
    let m = experiments::classifier::load::load_baseline(&straight.join("checkpoint.safetensors"))
        .unwrap();
    assert_eq!(m.spec.kind(), "bp_cnn");
    let test = experiments::data::load_split(&c.data.test, "test").unwrap();
    let norm = c.data.normalization().unwrap();
    let acc = experiments::eval::evaluate_baseline(&sim::Cpu, &m, &test, &norm, 7).unwrap();
    assert_eq!(acc, logs[2].test_acc);
    assert!(
        logs[2].test_acc > 0.4,
        "BP-CNN did not learn (4 classes): {logs:?}"
    );
    let mut other = c.clone();
    other.seed = 6;
    let e = bp_run::train(
        &sim::Cpu,
        &other,
        &TrainOptions {
            resume: true,
            epochs: Some(4),
            ..opts(&split)
        },
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("different config"), "{e:#}");
}

#[test]
fn vit_trains_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = data(dir.path(), 64, 16);
    d.push_str("crop_padding = 2\nhflip = true\nrandaugment = { n = 2, magnitude = 9 }\n");
    let vit = "[vit]\ninput = [3, 32, 32]\nclasses = 10\npatch = 8\ndim = 16\ndepth = 1\nheads = 2\nmlp_dim = 32\n";
    let adam = "[optim]\nalgorithm = { kind = \"adam\" }\nlrs = [0.003]\n";
    let c = cfg("vit", &d, vit, adam, 2);
    let out = dir.path().join("vit");
    let logs = bp_run::train(
        &sim::Cpu,
        &c,
        &TrainOptions {
            out_dir: Some(out.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(logs.len(), 2);
    let m =
        experiments::classifier::load::load_baseline(&out.join("checkpoint.safetensors")).unwrap();
    assert_eq!(m.spec.kind(), "vit");
    assert!(m.params.iter().any(|(n, _)| n == "blocks.0.attn.q.weight"));
}

/// PGD-L∞ robust accuracy of a trained model on `n` test images.
fn robust_acc(model: &ep::baselines::Baseline, test: &Path, eps: f32) -> f64 {
    let ds =
        experiments::data::load_split(&format!("cifar10:{}:test", test.display()), "test").unwrap();
    let loader = experiments::data::Loader::new(&ds, 64, sim::Stream::new(0, "eval"));
    let clf = BaselineClassifier::new(&sim::Cpu, Cow::Borrowed(model));
    let pgd = Pgd::new(Norm::Linf, eps);
    let (mut robust, mut n) = (0usize, 0usize);
    for b in loader.epoch(0) {
        let r = pgd.run(&clf, &b.x, &b.y, 9).unwrap();
        let pred = ep::train::argmax_rows(&clf.logits(&r.x_adv).unwrap());
        robust += pred.iter().zip(&b.y).filter(|(p, l)| p == l).count();
        n += b.y.len();
    }
    robust as f64 / n as f64
}

#[test]
fn adversarial_training_raises_pgd_robust_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let d = data(dir.path(), 192, 64);
    let adam = "[optim]\nalgorithm = { kind = \"adam\" }\nlrs = [0.01]\n";
    let eps = 0.12;
    let plain = cfg("bp_cnn", &d, CNN, adam, 4);
    let adv_sec = format!("{CNN}\n[adv]\nnorm = \"Linf\"\neps = [{eps}]\nsteps = 5\n");
    let adv = cfg("adv_cnn", &d, &adv_sec, adam, 4);
    let out = dir.path().join("runs");
    let pl = bp_run::train(
        &sim::Cpu,
        &plain,
        &TrainOptions {
            out_dir: Some(out.join("plain")),
            ..Default::default()
        },
    )
    .unwrap();
    let al = bp_run::train(
        &sim::Cpu,
        &adv,
        &TrainOptions {
            out_dir: Some(out.join("adv")),
            ..Default::default()
        },
    )
    .unwrap();
    let mp =
        experiments::classifier::load::load_baseline(&out.join("plain/checkpoint.safetensors"))
            .unwrap();
    let ma = experiments::classifier::load::load_baseline(
        &out.join(format!("adv/eps-{eps}/checkpoint.safetensors")),
    )
    .unwrap();
    assert_eq!(ma.spec.kind(), "adv_cnn");
    assert_eq!(ma.spec.adv.as_ref().unwrap().eps, eps);
    let test = dir.path().join("test.bin");
    let (rp, ra) = (robust_acc(&mp, &test, eps), robust_acc(&ma, &test, eps));
    eprintln!(
        "plain: clean {:.3} robust {rp:.3}; adv: clean {:.3} robust {ra:.3}",
        pl.last().unwrap().test_acc,
        al.last().unwrap().test_acc
    );
    assert!(
        ra > rp + 0.2,
        "adversarial training did not help: plain {rp}, adv {ra}"
    );
    assert!(al.last().unwrap().test_acc > 0.6);
}

#[test]
fn bad_baseline_configs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = data(dir.path(), 8, 8);
    let parse = |t: String| {
        AnyConfig::from_toml(&t, "bad.toml")
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let head = |kind: &str| format!("kind = \"{kind}\"\nname = \"b\"\n{d}\n");
    let tail = format!("{SGD}\n[train]\nepochs = 1\nbatch_size = 4\n");
    let e = parse(format!("{}{tail}", head("bp_cnn")));
    assert!(e.contains("[model] is required"), "{e}");
    let e = parse(format!("{}{CNN}{tail}", head("adv_cnn")));
    assert!(e.contains("[adv] is required"), "{e}");
    let e = parse(format!(
        "{}{CNN}\n[adv]\nnorm = \"Linf\"\neps = []\nsteps = 3\n{tail}",
        head("adv_cnn")
    ));
    assert!(e.contains("eps"), "{e}");
    let e = parse(format!("{}{CNN}{tail}", head("resnet")));
    assert!(e.contains("kind must be"), "{e}");
    let e = parse(format!(
        "{}{}{tail}",
        head("bp_cnn"),
        CNN.replace("fc = [16, 10]", "fc = [16, 10]\nact = \"relu\"\nbogus = 1")
    ));
    assert!(e.contains("bogus"), "{e}");
    let e = parse(format!(
        "{}[vit]\ninput = [3, 32, 32]\nclasses = 10\npatch = 5\ndim = 8\ndepth = 1\nheads = 2\nmlp_dim = 8\n{tail}",
        head("vit")
    ));
    assert!(e.contains("patch"), "{e}");
    let e = parse(format!(
        "{}{CNN}{}",
        head("bp_cnn"),
        tail.replace("lrs = [0.05]", "lrs = [0.05, 0.1]")
    ));
    assert!(e.contains("exactly one learning rate"), "{e}");
    // `train --tol` applies to EP configs only.
    let cfg = dir.path().join("bp.toml");
    std::fs::write(&cfg, format!("{}{CNN}{tail}", head("bp_cnn"))).unwrap();
    let (code, msg) =
        epsim_tests::epsim_failure(&["train", "--config", epsim_tests::s(&cfg), "--tol", "1e-3"]);
    assert_ne!(code, 0);
    assert!(
        msg.contains("bp.toml") && msg.contains("EP configs"),
        "{msg}"
    );
}

#[test]
fn every_shipped_config_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut kinds = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let text = std::fs::read_to_string(&p).unwrap();
            match AnyConfig::from_toml(&text, &p.display().to_string()) {
                Ok(AnyConfig::Baseline(c)) => kinds.push(format!("{:?}", c.kind)),
                Ok(AnyConfig::Ep(_)) => kinds.push("Ep".into()),
                Err(e) => panic!("{e:#}"),
            }
        }
    }
    for k in ["BpCnn", "AdvCnn", "Vit", "Ep"] {
        assert!(kinds.iter().any(|x| x == k), "no {k} config in {kinds:?}");
    }
}

#[test]
fn advcnn_family_resumes_exactly() {
    // Two ε in one config; interrupt the first run after one epoch, resume: same bits (PGD random
    // starts are keyed by seed, batch counter and image index).
    let dir = tempfile::tempdir().unwrap();
    let d = data(dir.path(), 48, 16);
    let adv_sec = format!("{CNN}\n[adv]\nnorm = \"L2\"\neps = [0.5, 1.0]\nsteps = 3\n");
    let c = cfg("adv_cnn", &d, &adv_sec, SGD, 2);
    let opts = |out: &Path| TrainOptions {
        out_dir: Some(out.to_path_buf()),
        ..Default::default()
    };
    let straight = dir.path().join("straight");
    assert_eq!(
        bp_run::train(&sim::Cpu, &c, &opts(&straight))
            .unwrap()
            .len(),
        4
    );
    let split = dir.path().join("split");
    // stop_after counts epochs per run: one epoch of each ε, then resume both.
    let first = bp_run::train(
        &sim::Cpu,
        &c,
        &TrainOptions {
            stop_after: Some(1),
            ..opts(&split)
        },
    )
    .unwrap();
    assert_eq!(first.len(), 2);
    let rest = bp_run::train(
        &sim::Cpu,
        &c,
        &TrainOptions {
            resume: true,
            ..opts(&split)
        },
    )
    .unwrap();
    assert_eq!(rest.len(), 2);
    for eps in ["0.5", "1"] {
        let a = tensors(&straight.join(format!("eps-{eps}/checkpoint.safetensors")));
        let b = tensors(&split.join(format!("eps-{eps}/checkpoint.safetensors")));
        assert_eq!(a, b, "ε = {eps}: resumed run differs");
    }
    let m0 = experiments::classifier::load::load_baseline(
        &straight.join("eps-0.5/checkpoint.safetensors"),
    )
    .unwrap();
    let m1 = experiments::classifier::load::load_baseline(
        &straight.join("eps-1/checkpoint.safetensors"),
    )
    .unwrap();
    assert_eq!(m1.spec.adv.as_ref().unwrap().norm, "L2");
    assert_ne!(m0.params, m1.params, "the two ε trained the same model");
}

#[test]
fn attack_cli_runs_on_a_baseline_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let d = data(dir.path(), 64, 32);
    let c = cfg("bp_cnn", &d, CNN, SGD, 1);
    let out = dir.path().join("run");
    bp_run::train(
        &sim::Cpu,
        &c,
        &TrainOptions {
            out_dir: Some(out.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let ckpt = out.join("checkpoint.safetensors");
    let res = dir.path().join("r.jsonl");
    let data = format!("cifar10:{}", dir.path().join("test.bin").display());
    let code = experiments::cli::main_with([
        "epsim",
        "--quiet",
        "attack",
        "--model",
        ckpt.to_str().unwrap(),
        "--data",
        &data,
        "--attack",
        "pgd-linf",
        "--eps",
        "0,0.5",
        "--steps",
        "5",
        "--out",
        res.to_str().unwrap(),
    ]);
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let recs: Vec<serde_json::Value> = std::fs::read_to_string(&res)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["robust_accuracy"], recs[0]["clean_accuracy"]);
    assert_eq!(
        recs[1]["robust_accuracy"].as_f64().unwrap(),
        0.0,
        "{}",
        recs[1]
    );
    // eval loads it too.
    let code = experiments::cli::main_with([
        "epsim",
        "--quiet",
        "eval",
        "--model",
        ckpt.to_str().unwrap(),
        "--data",
        &data,
    ]);
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    // On a device preset the baseline is realized as its feed-forward form (batch norm folded):
    // on `netlist:ideal` the attack gives the digital records.
    let res2 = dir.path().join("r2.jsonl");
    let code = experiments::cli::main_with([
        "epsim",
        "--quiet",
        "attack",
        "--model",
        ckpt.to_str().unwrap(),
        "--data",
        &data,
        "--attack",
        "pgd-linf",
        "--eps",
        "0,0.5",
        "--steps",
        "5",
        "--substrate",
        "netlist:ideal",
        "--out",
        res2.to_str().unwrap(),
    ]);
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let recs2: Vec<serde_json::Value> = std::fs::read_to_string(&res2)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs2.len(), 2);
    assert_eq!(recs2[0]["substrate"], "netlist:ideal");
    for (a, b) in recs.iter().zip(&recs2) {
        assert_eq!(a["clean_accuracy"], b["clean_accuracy"], "{a}\n{b}");
        assert_eq!(a["robust_accuracy"], b["robust_accuracy"], "{a}\n{b}");
    }
    // eval realizes it too.
    let code = experiments::cli::main_with([
        "epsim",
        "--quiet",
        "eval",
        "--model",
        ckpt.to_str().unwrap(),
        "--data",
        &data,
        "--substrate",
        "netlist:pcm",
    ]);
    assert_eq!(code, std::process::ExitCode::SUCCESS);
}
