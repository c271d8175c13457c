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
