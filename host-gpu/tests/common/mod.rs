//! What the GPU op tests share: one device for the whole test binary (opened once), seeded random
//! tensors, upload/download, and the CPU-vs-GPU closeness check.

use std::sync::OnceLock;

use host_gpu::{Gpu, GpuTensor};
use sim::{Backend, Stream, Tensor};

/// The first adapter (lavapipe in CI), shared by the tests of one binary.
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| Gpu::new(None).expect("a GPU adapter (lavapipe in CI)"))
}

/// Uniform values in (−1, 1) from a fixed seed: `2·Stream::new(seed, "test").uniform(i) − 1`.
pub fn rand(shape: &[usize], seed: u64) -> Tensor {
    let s = Stream::new(seed, "test");
    let n: usize = shape.iter().product();
    sim::tensor(
        shape,
        (0..n as u64).map(|i| 2.0 * s.uniform(i) - 1.0).collect(),
    )
    .unwrap()
}

pub fn up(t: &Tensor) -> GpuTensor {
    gpu().upload(t).unwrap()
}

pub fn down(t: &GpuTensor) -> Tensor {
    gpu().download(t).unwrap()
}

/// Same shape, finite, and max |got − want| ≤ 1e-4 · max |want| (summation order and rounding are
/// the only differences).
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(want.iter())
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        err <= 1e-4 * scale.max(1e-30) || (scale == 0.0 && err == 0.0),
        "{what}: max error {err} against max |want| {scale}"
    );
    assert!(got.iter().all(|v| v.is_finite()), "{what}: non-finite");
}
