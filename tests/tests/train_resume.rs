//! End-to-end EP training through the experiments driver: checkpoints, exact resume, reload.

use std::path::Path;

use epsim_tests::{tiny_config, write_tiny_cifar};
use experiments::runs::TrainConfig;
use experiments::runs::{AnyConfig, TrainOptions};

fn setup(dir: &Path, epochs: usize) -> TrainConfig {
    let train = dir.join("train.bin");
    let test = dir.join("test.bin");
    write_tiny_cifar(&train, 96, 1);
    write_tiny_cifar(&test, 32, 2);
    TrainConfig::from_toml(&tiny_config(&train, &test, epochs), "tiny.toml").unwrap()
}

fn weights(path: &Path) -> Vec<sim::Tensor> {
    let f = ep::checkpoint::TensorFile::from_bytes(&std::fs::read(path).unwrap()).unwrap();
    f.tensors.into_iter().map(|(_, t)| t).collect()
}

#[test]
fn interrupted_and_resumed_run_equals_uninterrupted_run_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path(), 3);
    let straight = dir.path().join("straight");
    let logs = experiments::runs::train(
        &sim::Cpu,
        &AnyConfig::Ep(cfg.clone()),
        &TrainOptions {
            out_dir: Some(straight.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(logs.len(), 3);

    let split = dir.path().join("split");
    let first = experiments::runs::train(
        &sim::Cpu,
        &AnyConfig::Ep(cfg.clone()),
        &TrainOptions {
            out_dir: Some(split.clone()),
            stop_after: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(first.len(), 1);
    // Without --resume an existing run is never overwritten.
    let e = experiments::runs::train(
        &sim::Cpu,
        &AnyConfig::Ep(cfg.clone()),
        &TrainOptions {
            out_dir: Some(split.clone()),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("--resume"), "{e:#}");
    let rest = experiments::runs::train(
        &sim::Cpu,
        &AnyConfig::Ep(cfg.clone()),
        &TrainOptions {
            out_dir: Some(split.clone()),
            resume: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(rest.len(), 2);

    let a = weights(&straight.join("checkpoint.safetensors"));
    let b = weights(&split.join("checkpoint.safetensors"));
    assert_eq!(a.len(), b.len());
    assert!(
        a.len() >= 4 + 4,
        "model + optimizer buffers expected, got {}",
        a.len()
    );
    assert_eq!(a, b, "resumed run differs from the uninterrupted run");
    for (x, y) in logs.iter().zip(first.iter().chain(rest.iter())) {
        assert_eq!(x.test_acc, y.test_acc);
        assert_eq!(x.train_acc, y.train_acc);
        assert_eq!(x.lrs, y.lrs);
    }
    // The log holds one line per epoch.
    let log = std::fs::read_to_string(split.join("log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 3, "{log}");
}

#[test]
fn resume_refuses_a_different_config_and_learning_happens() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path(), 4);
    let out = dir.path().join("run");
    let logs = experiments::runs::train(
        &sim::Cpu,
        &AnyConfig::Ep(cfg.clone()),
        &TrainOptions {
            out_dir: Some(out.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    // The task is easy: the model must beat chance (0.25 on 4 classes) clearly.
    assert!(
        logs.last().unwrap().test_acc >= 0.6,
        "test accuracy {:?}",
        logs.iter().map(|l| l.test_acc).collect::<Vec<_>>()
    );
    let mut other = cfg.clone();
    other.optim.lrs[0] = 0.07;
    let e = experiments::runs::train(
        &sim::Cpu,
        &AnyConfig::Ep(other),
        &TrainOptions {
            out_dir: Some(out.clone()),
            resume: true,
            epochs: Some(5),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("different config"), "{e:#}");
    // The checkpoint reloads as a model with the spec and the input normalization inside.
    let net = experiments::classifier::load::load_model(
        &sim::Cpu,
        &out.join("checkpoint.safetensors"),
        None,
    )
    .unwrap();
    assert_eq!(
        net.spec.input_norm.as_ref().unwrap().mean,
        vec![0.4, 0.4, 0.4]
    );
}

#[test]
fn corrupt_checkpoint_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.safetensors");
    std::fs::write(&p, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}").unwrap();
    let e = experiments::classifier::load::load_model(&sim::Cpu, &p, None).unwrap_err();
    assert!(format!("{e:#}").contains("bad.safetensors"), "{e:#}");
}
