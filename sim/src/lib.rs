//! # sim — the epsim engine
//!
//! Role: f32 tensors (ndarray, NCHW), the **closed set of primitive ops** each with its adjoint
//! ([`Backend`]), the CPU backend ([`cpu::Cpu`]: rayon + a fast GEMM), a small reverse-mode tape for
//! the backprop baselines ([`tape`]), and counter-based seeded random streams ([`rng`]).
//! [`conformance`] holds the op checks written once over [`Backend`], run on every backend by
//! [`conformance_suite!`].
//!
//! Dependencies: none of the other epsim crates. A backend never knows about models; everything
//! above (devices, ep, host-gpu, experiments) builds on this crate.

pub mod alloc;
pub mod analog;
pub mod backend;
pub mod conformance;
pub mod cpu;
pub mod error;
pub mod gradcheck;
pub mod netlist;
pub mod ops;
pub mod rng;
pub mod simd;
pub mod suggest;
pub mod tape;

pub use backend::Backend;
pub use cpu::Cpu;
pub use error::{Error, Result};
pub use ops::{Act, Conv2dParams, OptimStep, Pool2dParams, Pooling};
pub use rng::Stream;

/// Defines `pub fn built_with_overflow_checks() -> bool` in the invoking crate: whether that
/// crate's integer arithmetic traps on overflow as built. Each crate whose code parses a user's
/// file invokes it, and the fuzz targets assert it (`tests/tests/fuzz_parsers.rs`): a size that
/// wraps silently hides exactly the bugs fuzzing is for. The workspace's release profile turns
/// the checks on for those crates (`Cargo.toml`), so the one release test run fuzzes with them.
#[macro_export]
macro_rules! overflow_probe {
    () => {
        /// Whether this crate was built with overflow checks (see `sim::overflow_probe!`).
        #[doc(hidden)]
        pub fn built_with_overflow_checks() -> bool {
            // Not inlined: the addition is compiled here, with this crate's profile.
            #[inline(never)]
            fn add(a: u32, b: u32) -> u32 {
                a + b
            }
            let sum = || add(::std::hint::black_box(u32::MAX), ::std::hint::black_box(1));
            ::std::panic::catch_unwind(sum).is_err()
        }
    };
}

overflow_probe!();

/// A host tensor: dynamic-rank f32 ndarray in standard (row-major) layout, NCHW for images.
pub type Tensor = ndarray::ArrayD<f32>;

/// Build a host tensor from a shape and data, or an error if the sizes differ.
pub fn tensor(shape: &[usize], data: Vec<f32>) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    if n != data.len() {
        return Err(Error::shape(
            "tensor",
            format!(
                "shape {shape:?} holds {n} elements, data has {}",
                data.len()
            ),
        ));
    }
    Ok(Tensor::from_shape_vec(ndarray::IxDyn(shape), data).expect("sizes checked"))
}

/// Check that a tensor holds only finite values; the error names `what` and the first bad index.
pub fn check_finite(what: &str, t: &Tensor) -> Result<()> {
    if let Some((i, v)) = t.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::NonFinite {
            what: what.to_string(),
            detail: format!("element {i} (flat) is {v}"),
        });
    }
    Ok(())
}
