//! `EPSIM_GPU_CONV` reaches the GPU backend of every command: the shipped small CIFAR-10 EP-CNN
//! (3x3 layers of 32-64-128 channels) settled by `epsim --device gpu settle --dump` with the
//! direct convolutions stays within 1e-4 of the CPU, and with Winograd F(4×4) moves past 1e-3
//! (its rounding flips near-tied max-pool switches: `cli_device.rs`), which only the variable
//! can have chosen; a bad value is an error naming it. A test binary of its own: the variable is
//! process-wide, and no other test may run while it is set.

use std::path::Path;

use epsim_tests::{dump_differences, epsim_failure, settle_dump};

#[test]
fn the_gpu_convolution_algorithm_is_taken_from_epsim_gpu_conv() {
    let var = experiments::device::GPU_CONV_ENV;
    let model = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/cifar10-small-epcnn-t60.safetensors")
        .display()
        .to_string();
    let model = ["--model", model.as_str()];
    let dir = tempfile::tempdir().unwrap();
    let x = sim::gradcheck::test_tensor(&[8, 3, 32, 32], 5, 1.0).mapv(|v| 0.5 + 0.5 * v);
    let input = dir.path().join("x.npy");
    ndarray_npy::write_npy(&input, &x).unwrap();
    let cpu = settle_dump(dir.path(), "cpu", &model, &input, 60);
    let worst = |algo: &str| {
        // SAFETY: this binary's only test; nothing else reads the environment meanwhile.
        unsafe { std::env::set_var(var, algo) };
        let gpu = settle_dump(dir.path(), "gpu", &model, &input, 60);
        dump_differences(&cpu, &gpu)
            .into_iter()
            .fold(0f32, |m, (_, d)| m.max(d))
    };
    let (direct, f4) = (worst("direct"), worst("winograd4"));
    eprintln!("{var}: direct {direct:e}, winograd4 {f4:e} of the CPU's scale");
    assert!(direct <= 1e-4, "direct: {direct}");
    assert!(f4 > 1e-3, "winograd4 did not reach the backend: {f4}");
    unsafe { std::env::set_var(var, "fast") };
    let (code, e) = epsim_failure(&[
        "--device",
        "gpu",
        "settle",
        model[0],
        model[1],
        "--input",
        input.to_str().unwrap(),
        "--steps",
        "2",
    ]);
    unsafe { std::env::remove_var(var) };
    assert_eq!(code, 1, "{e}");
    assert!(
        e.contains(var) && e.contains("\"fast\"") && e.contains("winograd4"),
        "{e}"
    );
}
