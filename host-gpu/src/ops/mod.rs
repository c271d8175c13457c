//! The op families of the GPU backend, one file each; `backend.rs` maps the `Backend` trait onto
//! them. Shared here: the shader registry (each `.wgsl` file with the common prelude), output
//! allocation and operand checks.

pub(crate) mod conv;
pub(crate) mod elementwise;
pub(crate) mod gemm;
pub(crate) mod layout;
pub(crate) mod norm;
pub(crate) mod optim;
pub(crate) mod pool;
pub(crate) mod reduce;
pub(crate) mod rng;
pub(crate) mod softmax;
pub(crate) mod winograd;
pub(crate) mod xbar;

use std::sync::Arc;

use sim::{Error, Result};

use crate::context::Ctx;
use crate::tensor::{GpuIndex, GpuTensor};

/// A WGSL source file of `src/kernels/`, compiled with the prelude prepended.
#[derive(Clone, Copy)]
pub(crate) struct Shader {
    pub(crate) name: &'static str,
    pub(crate) body: &'static str,
}

impl Shader {
    /// The full source: prelude + body.
    pub(crate) fn source(&self) -> String {
        format!("{}\n{}", include_str!("../kernels/prelude.wgsl"), self.body)
    }
}

/// Declare a shader constant for a file of `src/kernels/`.
macro_rules! shader {
    ($id:ident, $file:literal) => {
        pub(crate) const $id: $crate::ops::Shader = $crate::ops::Shader {
            name: $file,
            body: include_str!(concat!("../kernels/", $file)),
        };
    };
}
pub(crate) use shader;

/// Record one dispatch of `entry` in `shader`.
pub(crate) fn launch(
    ctx: &Ctx,
    shader: Shader,
    entry: &str,
    params: &[u32],
    binds: &[crate::context::Bind<'_>],
    groups: [u32; 3],
) -> Result<()> {
    ctx.dispatch(
        shader.name,
        &|| shader.source(),
        entry,
        params,
        binds,
        groups,
    )
}

/// An uninitialized f32 output tensor of `shape`.
pub(crate) fn empty(ctx: &Arc<Ctx>, shape: &[usize]) -> Result<GpuTensor> {
    let n: usize = shape.iter().product();
    Ok(GpuTensor {
        buf: Arc::new(ctx.alloc(4 * n as u64)?),
        shape: shape.to_vec(),
    })
}

/// An uninitialized u32 index tensor of `shape` (no bound known, no pooling: the writer sets
/// them).
pub(crate) fn empty_index(ctx: &Arc<Ctx>, shape: &[usize]) -> Result<GpuIndex> {
    let n: usize = shape.iter().product();
    Ok(GpuIndex {
        buf: Arc::new(ctx.alloc(4 * n as u64)?),
        shape: shape.to_vec(),
        bound: u64::MAX,
        pool: None,
    })
}

/// f32 parameter word.
pub(crate) fn f(x: f32) -> u32 {
    x.to_bits()
}

/// u32 parameter word from a size, or an error naming `op` when it does not fit in 32 bits.
pub(crate) fn u(op: &'static str, x: usize) -> Result<u32> {
    u32::try_from(x).map_err(|_| {
        Error::Other(format!(
            "{op}: size {x} exceeds the GPU kernels' 32-bit indexing"
        ))
    })
}

/// Error unless `a` and `b` have the same shape.
pub(crate) fn same_shape(op: &'static str, a: &GpuTensor, b: &GpuTensor) -> Result<()> {
    if a.shape != b.shape {
        return Err(Error::shape(
            op,
            format!("operands differ: {:?} vs {:?}", a.shape, b.shape),
        ));
    }
    Ok(())
}
