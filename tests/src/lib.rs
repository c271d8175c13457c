//! # epsim-tests — cross-crate integration tests
//!
//! Role: parity across realizations, end-to-end CLI runs, bad-input suites. The tests live in
//! `tests/tests/`; this library holds shared fixtures.
//!
//! Dependencies: every other crate.

use std::path::Path;
use std::process::ExitCode;

/// Run the `epsim` command line in-process with `--quiet` and these arguments.
pub fn epsim(args: &[&str]) -> ExitCode {
    let mut v = vec!["epsim", "--quiet"];
    v.extend_from_slice(args);
    experiments::cli::main_with(v)
}

/// Run the `epsim` command line in-process (with `--quiet`) where it must fail: its exit code
/// (2: usage error, 1: the command failed) and the message it prints on stderr.
pub fn epsim_failure(args: &[&str]) -> (i32, String) {
    let mut v = vec!["epsim", "--quiet"];
    v.extend_from_slice(args);
    match experiments::cli::try_main(v) {
        Ok(()) => panic!("`epsim {}` succeeded", args.join(" ")),
        Err(f) => (f.code(), f.message()),
    }
}

/// `epsim --device DEVICE settle MODEL_ARGS --input INPUT --steps STEPS --at 1,10,STEPS --dump`
/// into `dir` (a file per device and model-argument count): the dumped arrays, sorted by name.
pub fn settle_dump(
    dir: &Path,
    device: &str,
    model: &[&str],
    input: &Path,
    steps: usize,
) -> Vec<(String, ndarray::ArrayD<f32>)> {
    let steps = steps.to_string();
    let at = format!("1,10,{steps}");
    let f = dir.join(format!("{}-{}.npz", device.replace(':', "-"), model.len()));
    let mut args = vec!["--device", device, "settle"];
    args.extend_from_slice(model);
    args.extend_from_slice(&[
        "--input",
        s(input),
        "--steps",
        &steps,
        "--at",
        &at,
        "--dump",
        s(&f),
    ]);
    assert_eq!(epsim(&args), ExitCode::SUCCESS, "epsim {}", args.join(" "));
    let mut z = ndarray_npy::NpzReader::new(std::fs::File::open(&f).expect("the dump"))
        .expect("an npz dump");
    let mut arrays = Vec::new();
    for name in z.names().expect("npz names") {
        let a: ndarray::ArrayD<f32> = z.by_name(&name).expect("an f32 array");
        arrays.push((name, a));
    }
    arrays.sort_by(|a, b| a.0.cmp(&b.0));
    arrays
}

/// Per array of two [`settle_dump`]s (same names): its name and max |a − b| / max(|a|, 1e-6).
pub fn dump_differences(
    a: &[(String, ndarray::ArrayD<f32>)],
    b: &[(String, ndarray::ArrayD<f32>)],
) -> Vec<(String, f32)> {
    assert_eq!(a.len(), b.len(), "dumps of different arrays");
    a.iter()
        .zip(b)
        .map(|((n, x), (m, y))| {
            assert_eq!(n, m, "dumps of different arrays");
            let scale = x.iter().fold(1e-6f32, |s, v| s.max(v.abs()));
            let diff = x.iter().zip(y).fold(0f32, |d, (p, q)| d.max((p - q).abs()));
            (n.clone(), diff / scale)
        })
        .collect()
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary path")
}

/// Write a small synthetic dataset in the official CIFAR-10 binary layout (1 label byte + 3072
/// pixel bytes per record): `n` images whose class (0..4) is the brightest image quadrant, with
/// seeded noise, so that a tiny model can learn it.
pub fn write_tiny_cifar(path: &Path, n: usize, seed: u64) {
    let s = sim::Stream::new(seed, "tiny-cifar");
    let mut bytes = Vec::with_capacity(n * 3073);
    for i in 0..n {
        let label = s.below(i as u64, 4) as u8;
        bytes.push(label);
        for c in 0..3 {
            for r in 0..32 {
                for col in 0..32 {
                    let q = (r >= 16) as u8 * 2 + (col >= 16) as u8;
                    let base = if q == label { 180.0 } else { 60.0 };
                    let j = (((i * 3 + c) * 32 + r) * 32 + col) as u64;
                    let v = (base + 40.0 * s.normal(1 << 40 | j)).clamp(0.0, 255.0);
                    bytes.push(v as u8);
                }
            }
        }
    }
    std::fs::write(path, bytes).expect("write tiny cifar");
}

/// A training config (TOML) for a tiny EP-CNN on the files written by [`write_tiny_cifar`].
pub fn tiny_config(train: &Path, test: &Path, epochs: usize) -> String {
    format!(
        r#"
name = "tiny"
seed = 3
[data]
train = "cifar10:{}:train"
test = "cifar10:{}:test"
mean = [0.4, 0.4, 0.4]
std = [0.3, 0.3, 0.3]
crop_padding = 2
padding_mode = "edge"
hflip = true
[model]
input = [3, 32, 32]
conv = [{{ channels = 4, kernel = 3, stride = 2, padding = 1, pool = "max" }}]
fc = [10]
act = "my_hard_sig"
softmax = true
loss = "cross_entropy"
t1 = 6
t2 = 3
[ep]
beta = 0.5
[optim]
algorithm = {{ kind = "sgd", momentum = 0.9 }}
lrs = [0.05, 0.02]
wds = [1e-4, 1e-4]
schedule = {{ kind = "cosine", t_max = 4, eta_min = 0.001 }}
[train]
epochs = {epochs}
batch_size = 16
"#,
        train.display(),
        test.display()
    )
}

/// A tiny EP-CNN on 3x32x32 inputs (one conv of 4 channels, stride 2, max pool, fc 10, softmax
/// readout; T1 6, T2 3) from seed 7, with an input normalization when `normalized`.
pub fn tiny_cifar_ep_net(normalized: bool) -> ep::EpNet<sim::Cpu> {
    use ep::{ConvLayer, Loss, ModelSpec, Pool};
    let spec = ModelSpec {
        input: [3, 32, 32],
        conv: vec![ConvLayer {
            channels: 4,
            kernel: 3,
            stride: 2,
            padding: 1,
            pool: Pool::Max,
        }],
        fc: vec![10],
        act: sim::Act::MyHardSig,
        softmax: true,
        loss: Loss::CrossEntropy,
        t1: 6,
        t2: 3,
        input_norm: normalized.then(|| ep::InputNorm {
            mean: vec![0.4; 3],
            std: vec![0.3; 3],
        }),
    };
    ep::EpNet::init(&sim::Cpu, spec, &sim::Stream::new(7, "init"), Some(2.0)).unwrap()
}

/// Write `net` as an epsim model file (safetensors with the spec) at `path`.
pub fn write_ep_model(net: &ep::EpNet<sim::Cpu>, path: &Path) {
    let (w, b) = net.to_host(&sim::Cpu).unwrap();
    let f = ep::checkpoint::model_to_file(&net.spec, &w, &b).unwrap();
    std::fs::write(path, f.to_bytes().unwrap()).unwrap();
}

/// A tiny EP-CNN checkpoint (`m.safetensors`, [`tiny_cifar_ep_net`]) and a tiny CIFAR-10 test file of
/// `n` images (seed 2) in `dir`: (checkpoint path, `--data` argument).
pub fn tiny_model_and_data(dir: &Path, normalized: bool, n: usize) -> (std::path::PathBuf, String) {
    let ckpt = dir.join("m.safetensors");
    write_ep_model(&tiny_cifar_ep_net(normalized), &ckpt);
    write_tiny_cifar(&dir.join("test.bin"), n, 2);
    (
        ckpt,
        format!("cifar10:{}:test", dir.join("test.bin").display()),
    )
}

/// The tiny study of the study tests: 2 models (`a.safetensors`, `b.safetensors` in `d`) × 2
/// substrates × seed 3 × PGD-L∞ at the ε list `eps` (e.g. `"0.02", "0.1"`) + contrast at
/// severity 4, on 16 images of `d/test.bin`, writing to `out`.
pub fn tiny_study_text(d: &Path, out: &Path, eps: &str) -> String {
    format!(
        r#"name = "tiny"
out_dir = "{}"
data = "cifar10:{}:test"
subset = 40
batch_size = 10
seeds = [3]

[[model]]
name = "EP-A"
checkpoint = "a.safetensors"
substrates = ["digital", "netlist:pcm"]
set = ["read_noise_scale=2"]
tile = "16x8"

[[model]]
name = "EP-B"
checkpoint = "b.safetensors"
substrates = ["digital", "netlist:ideal"]

[suite]
protocols = ["standard"]
[[suite.attack]]
name = "pgd-linf"
eps = [{eps}]
steps = 3
[suite.corruptions]
names = ["contrast"]
severities = [4]
"#,
        out.display(),
        d.join("test.bin").display()
    )
}
