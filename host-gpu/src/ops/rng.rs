//! Counter-based random draws on the device (`kernels/rng.wgsl`): Philox4x32-10 evaluated
//! exactly as `sim::rng::Stream` (the stream's key and lane and the 64-bit draw offset passed as
//! 32-bit words), so element i is `stream.uniform(offset + i)` bit for bit, and
//! `stream.normal(offset + i)` to a few 1e-7 (the log and sin/cos are polynomials here, libm on
//! the CPU).

use std::sync::Arc;

use sim::{Error, Result, Stream};

use super::{Shader, empty, launch};
use crate::context::{Bind, Ctx, groups_1d};
use crate::tensor::GpuTensor;

/// The random kernels: the prelude, the shared helpers (the accurate log), Philox, then
/// `rng.wgsl`.
const RNG: Shader = Shader {
    name: "rng.wgsl",
    body: concat!(
        include_str!("../kernels/math.wgsl"),
        "\n",
        include_str!("../kernels/philox.wgsl"),
        "\n",
        include_str!("../kernels/rng.wgsl")
    ),
};

fn draw(
    ctx: &Arc<Ctx>,
    op: &'static str,
    shape: &[usize],
    stream: &Stream,
    offset: u64,
    normal: bool,
) -> Result<GpuTensor> {
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            Error::Other(format!(
                "{op}: shape {shape:?} has more elements than the GPU kernels' 32-bit indexing allows"
            ))
        })?;
    let out = empty(ctx, shape)?;
    let head = offset % 4;
    let block = offset / 4;
    let blocks = (head + u64::from(n)).div_ceil(4);
    let [k0, k1] = stream.key();
    launch(
        ctx,
        RNG,
        "draw",
        &[
            n,
            k0,
            k1,
            stream.lane(),
            block as u32,
            (block >> 32) as u32,
            head as u32,
            u32::from(normal),
            blocks as u32,
        ],
        &[Bind::W(1, out.buffer())],
        groups_1d(blocks as usize),
    )?;
    Ok(out)
}

/// Standard normal draws: element i is `stream.normal(offset + i)`.
pub(crate) fn randn(
    ctx: &Arc<Ctx>,
    shape: &[usize],
    stream: &Stream,
    offset: u64,
) -> Result<GpuTensor> {
    draw(ctx, "randn", shape, stream, offset, true)
}

/// Uniform (0, 1) draws: element i is `stream.uniform(offset + i)`, bit for bit.
pub(crate) fn rand(
    ctx: &Arc<Ctx>,
    shape: &[usize],
    stream: &Stream,
    offset: u64,
) -> Result<GpuTensor> {
    draw(ctx, "rand", shape, stream, offset, false)
}
