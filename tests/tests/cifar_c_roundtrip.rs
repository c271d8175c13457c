//! `epsim corrupt --format npy` then evaluation through `cifar10c:DIR:<corruption>:<severity>`
//! gives the same accuracy, and the same logits, as evaluating the corrupted CIFAR binary files
//! (issue 16's bar), on a tiny EP-CNN.

use std::process::ExitCode;

use epsim_tests::{epsim, s, tiny_model_and_data};
use experiments::classifier::substrate::SubstrateSpec;
use experiments::data::Loader;
use experiments::eval::correct;
use experiments::study::target::Target;

/// (correct, images, every logit in dataset order) of the model on dataset spec `data`.
fn accuracy(ckpt: &std::path::Path, data: &str) -> (usize, usize, Vec<f32>) {
    let t = Target {
        model: ckpt.to_path_buf(),
        spec: None,
        data: data.to_string(),
        t_predict: None,
        t_attack: None,
        subset: None,
        batch_size: 7,
        substrate: SubstrateSpec::parse("digital", &[], "512x512").unwrap(),
        eot: None,
    };
    let l = t.load(0).unwrap();
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
    let (ckpt, data) = tiny_model_and_data(d, false, 20);
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
        }
    }
    // the corruptions change the logits (the comparison is not vacuous)
    let clean = accuracy(&ckpt, &data).2;
    assert!(accs.iter().all(|a| *a != clean));
    assert!(accs.windows(2).all(|w| w[0] != w[1]));
    // and the command evaluates the released layout
    let spec = format!("cifar10c:{}:fog:5", npy.display());
    assert_eq!(
        epsim(&["eval", "--model", s(&ckpt), "--data", &spec]),
        ExitCode::SUCCESS
    );
}
