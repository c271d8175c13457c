//! Corruptions degrade a trained model monotonically with severity (issue 5's "monotone
//! degradation with severity on a trained model"): a small BP-CNN (one conv layer, Adam, 4
//! epochs, ~6 s in release mode) is trained on the first 9,000 real CIFAR-10 test-batch images to
//! ~48 % on the other 1,000 (chance: 10 %); then 500 of those are evaluated under all 19
//! corruptions at severities 1..5 (~30 s).
//!
//! The data is the shared `test_batch.bin` (`$EPSIM_CIFAR10_DIR` or
//! `<repo>/../shared/datasets/cifar10`); the test fails, with instructions, when it is missing.

mod common;

use std::borrow::Cow;

use experiments::classifier::{BaselineClassifier, Classifier};
use experiments::corrupt::{Corruption, corrupt_batch_nchw, write_cifar_binary};
use experiments::runs::AnyConfig;
use experiments::runs::TrainOptions;
use experiments::runs::bp as bp_run;

/// Images held out from training (clean accuracy).
const HELD_OUT: usize = 1000;
/// Held-out images evaluated under the corruptions.
const EVAL: usize = 500;
/// Tolerance of "the mean accuracy over corruptions is non-increasing in severity": half a
/// percentage point, about one binomial standard deviation of a mean over 19 × 500 evaluations
/// (sqrt(0.25 / 9500) ≈ 0.005). The measured steps are 0.006–0.028.
const MEAN_TOL: f64 = 0.005;

fn accuracy(clf: &dyn Classifier, images: &[u8], labels: &[u16]) -> f64 {
    let per = 3 * 32 * 32;
    let mut correct = 0;
    for (xs, ys) in images.chunks(250 * per).zip(labels.chunks(250)) {
        let v: Vec<f32> = xs.iter().map(|&b| b as f32 / 255.0).collect();
        let x = sim::tensor(&[ys.len(), 3, 32, 32], v).unwrap();
        let pred = ep::train::argmax_rows(&clf.logits(&x).unwrap());
        correct += pred
            .iter()
            .zip(ys)
            .filter(|(p, y)| **p == **y as usize)
            .count();
    }
    correct as f64 / labels.len() as f64
}

#[test]
fn corruptions_degrade_a_trained_cnn_monotonically_with_severity() {
    let bin = common::cifar10_dir().join("test_batch.bin");
    let spec = format!("cifar10:{}", bin.display());
    let d = experiments::data::DatasetSpec::parse(&spec)
        .unwrap()
        .load()
        .unwrap_or_else(|e| panic!("cannot load {}: {e:#}", bin.display()))
        .remove(0);
    assert_eq!(
        d.shape,
        [10000, 3, 32, 32],
        "{} is not CIFAR-10",
        bin.display()
    );
    let per = 3072;
    let n_train = d.len() - HELD_OUT;
    let labels8: Vec<u8> = d.labels.iter().map(|&l| l as u8).collect();
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = (dir.path().join("train.bin"), dir.path().join("test.bin"));
    write_cifar_binary(&train, &labels8[..n_train], &d.images[..n_train * per]).unwrap();
    write_cifar_binary(&test, &labels8[n_train..], &d.images[n_train * per..]).unwrap();

    let t0 = std::time::Instant::now();
    let cfg = format!(
        r#"
kind = "bp_cnn"
name = "corruption-test"
seed = 1
[data]
train = "cifar10:{}:train"
test = "cifar10:{}:test"
mean = [0.49, 0.48, 0.45]
std = [0.25, 0.24, 0.26]
[model]
input = [3, 32, 32]
conv = [{{ channels = 16, kernel = 3, stride = 2, padding = 1, pool = "max" }}]
fc = [10]
[optim]
algorithm = {{ kind = "adam" }}
lrs = [0.002]
[train]
epochs = 4
batch_size = 64
"#,
        train.display(),
        test.display()
    );
    let AnyConfig::Baseline(c) = AnyConfig::from_toml(&cfg, "corruption-test.toml").unwrap() else {
        panic!("parsed as an EP config")
    };
    let run = dir.path().join("run");
    let logs = bp_run::train(
        &sim::Cpu,
        &c,
        &TrainOptions {
            out_dir: Some(run.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let model =
        experiments::classifier::load::load_baseline(&run.join("checkpoint.safetensors")).unwrap();
    let clf = BaselineClassifier::new(&sim::Cpu, Cow::Owned(model));
    let (imgs, labels) = (&d.images[n_train * per..], &d.labels[n_train..]);
    let clean = accuracy(&clf, imgs, labels);
    eprintln!(
        "trained in {:.1?}: test accuracy {clean:.4} (log {:?})",
        t0.elapsed(),
        logs.iter().map(|l| l.test_acc).collect::<Vec<_>>()
    );
    // Chance is 0.1; a 1,000-image accuracy of 0.35 is far above it.
    assert!(clean > 0.35, "the CNN did not learn: accuracy {clean}");
    let (imgs, labels) = (&imgs[..EVAL * per], &labels[..EVAL]);

    let t1 = std::time::Instant::now();
    let mut by_sev = [0.0f64; 5];
    let mut table = String::new();
    let mut failures = Vec::new();
    for &k in Corruption::all() {
        let mut accs = [0.0f64; 5];
        let tk = std::time::Instant::now();
        for s in 1..=5u32 {
            let x = corrupt_batch_nchw(imgs, 3, 32, 32, k, s, 7, 0).unwrap();
            accs[s as usize - 1] = accuracy(&clf, &x, labels);
            by_sev[s as usize - 1] += accs[s as usize - 1] / Corruption::all().len() as f64;
        }
        table += &format!("{:<18} {accs:.3?} {:.1?}\n", k.name(), tk.elapsed());
        let noise_or_blur = k.name().ends_with("_noise") || k.name().ends_with("_blur");
        // Noise and blur: severity 5 strictly below severity 1 (no tolerance; the run is
        // deterministic, and the measured gaps are 1–12 points).
        if noise_or_blur && accs[4] >= accs[0] {
            failures.push(format!(
                "{}: severity 5 ({:.4}) not below severity 1 ({:.4})",
                k.name(),
                accs[4],
                accs[0]
            ));
        }
    }
    eprintln!(
        "clean {clean:.3}; corruptions evaluated in {:.1?}:\n{table}mean by severity {by_sev:.4?}",
        t1.elapsed()
    );
    for w in 0..4 {
        if by_sev[w + 1] > by_sev[w] + MEAN_TOL {
            failures.push(format!(
                "mean accuracy rises from severity {} ({:.4}) to {} ({:.4})",
                w + 1,
                by_sev[w],
                w + 2,
                by_sev[w + 1]
            ));
        }
    }
    // And every severity is below clean accuracy on average.
    if by_sev[0] >= clean {
        failures.push(format!(
            "mean accuracy at severity 1 ({:.4}) is not below clean ({clean:.4})",
            by_sev[0]
        ));
    }
    assert!(failures.is_empty(), "{}\n{table}", failures.join("\n"));
}
