//! Max pooling with argmax indices, unpooling, gather at the indices, average pooling and its
//! adjoint (`kernels/pool.wgsl`), NCHW without padding in floor mode, as
//! `sim/src/cpu/pool.rs` and `gather.rs`: the same window order, ties, NaN rule and checks. The
//! max rule lives in `kernels/maxpick.wgsl`, shared with the pooling fused into the Winograd
//! conv (`winograd.rs`).
//!
//! The adjoints (`max_unpool2d`, `avg_pool2d_adjoint`) are gathers, one invocation per input
//! position adding the windows that hold it in row-major window order: deterministic, no
//! atomics, and the CPU's scatter order, so the same bits. Indices carry the pooling that made
//! them ([`GpuIndex::pool`]), which bounds the windows to visit; uploaded indices are matched
//! against every output of their plane. Index range checks use [`GpuIndex::bound`] and read the
//! indices back only when the bound does not settle them.

use std::sync::Arc;

use sim::{Error, Pool2dParams, Result};

use super::{Shader, empty, empty_index, f, launch, u};
use crate::context::{Bind, Ctx, groups_1d};
use crate::tensor::{GpuIndex, GpuTensor};

/// The pooling kernels: the prelude, the max-pooling comparison, then `pool.wgsl`.
const POOL: Shader = Shader {
    name: "pool.wgsl",
    body: concat!(
        include_str!("../kernels/maxpick.wgsl"),
        "\n",
        include_str!("../kernels/pool.wgsl")
    ),
};

/// (N, C, H, W) of a 4-D shape, or a shape error naming `op` and `what`.
fn nchw(op: &'static str, what: &str, t: &[usize]) -> Result<(usize, usize, usize, usize)> {
    match *t {
        [n, c, h, w] => Ok((n, c, h, w)),
        _ => Err(Error::shape(
            op,
            format!("{what} must be 4-D [N, C, H, W], got {t:?}"),
        )),
    }
}

/// The window words [kh, kw, sh, sw] for an input of (h, w). A stride larger than the input
/// only ever multiplies window index 0, so it is capped at the input size to fit in 32 bits.
fn window_words(op: &'static str, p: Pool2dParams, (h, w): (usize, usize)) -> Result<[u32; 4]> {
    Ok([
        u(op, p.kernel.0)?,
        u(op, p.kernel.1)?,
        u(op, p.stride.0.min(h.max(1)))?,
        u(op, p.stride.1.min(w.max(1)))?,
    ])
}

/// The first index of `idx` at or beyond `plane` (reads the indices back), if any.
fn first_out_of_range(ctx: &Arc<Ctx>, idx: &GpuIndex, plane: usize) -> Result<Option<u32>> {
    if idx.bound <= plane as u64 {
        return Ok(None);
    }
    let bytes = ctx.read(idx.buffer(), 4 * idx.len() as u64)?;
    let vals: Vec<u32> = bytemuck::pod_collect_to_vec(&bytes);
    Ok(vals.into_iter().find(|&i| i as usize >= plane))
}

/// The (unwritten) switches of a max pooling with `p` of `(h, w)` planes into `shape`
/// `[N, C, Ho, Wo]`, with their bound and pooling set for the kernel that writes them.
pub(crate) fn pooled_index(
    ctx: &Arc<Ctx>,
    shape: &[usize; 4],
    p: Pool2dParams,
    (h, w): (usize, usize),
) -> Result<GpuIndex> {
    let mut idx = empty_index(ctx, shape)?;
    let [_, _, ho, wo] = *shape;
    // The last position of the last window, plus one: every argmax is below it.
    let last = ((ho - 1) * p.stride.0 + p.kernel.0 - 1) * w + (wo - 1) * p.stride.1 + p.kernel.1;
    idx.bound = if shape.contains(&0) { 0 } else { last as u64 };
    idx.pool = Some((p, (h, w)));
    Ok(idx)
}

pub(crate) fn max_pool2d(
    ctx: &Arc<Ctx>,
    x: &GpuTensor,
    p: Pool2dParams,
) -> Result<(GpuTensor, GpuIndex)> {
    let op = "max_pool2d";
    let (n, c, h, w) = nchw(op, "input", &x.shape)?;
    let (ho, wo) = p.output_hw(op, (h, w))?;
    if h * w > u32::MAX as usize {
        return Err(Error::param(
            op,
            format!("plane of {h}x{w} too large for u32 indices"),
        ));
    }
    u(op, x.len())?;
    let n_out = n * c * ho * wo;
    let shape = [n, c, ho, wo];
    let y = empty(ctx, &shape)?;
    let idx = pooled_index(ctx, &shape, p, (h, w))?;
    let mut words = vec![u(op, n_out)?, u(op, h)?, u(op, w)?, u(op, ho)?, u(op, wo)?];
    words.extend(window_words(op, p, (h, w))?);
    launch(
        ctx,
        POOL,
        "max_pool",
        &words,
        &[
            Bind::R(1, x.buffer()),
            Bind::W(3, y.buffer()),
            Bind::W(4, idx.buffer()),
        ],
        groups_1d(n_out),
    )?;
    Ok((y, idx))
}

pub(crate) fn max_unpool2d(
    ctx: &Arc<Ctx>,
    y: &GpuTensor,
    idx: &GpuIndex,
    input_hw: (usize, usize),
) -> Result<GpuTensor> {
    let op = "max_unpool2d";
    let (n, c, ho, wo) = nchw(op, "values", &y.shape)?;
    if idx.shape != y.shape {
        return Err(Error::shape(
            op,
            format!(
                "indices of shape {:?} do not match values of shape {:?}",
                idx.shape, y.shape
            ),
        ));
    }
    let (h, w) = input_hw;
    let plane = h * w;
    let out = empty(ctx, &[n, c, h, w])?;
    // As the CPU: an empty input plane receives nothing and checks nothing.
    if plane == 0 {
        return Ok(out);
    }
    if let Some(bad) = first_out_of_range(ctx, idx, plane)? {
        return Err(Error::param(
            op,
            format!("index {bad} out of range for an input plane of {h}x{w}"),
        ));
    }
    u(op, y.len())?;
    let n_in = n * c * plane;
    let mut words = vec![u(op, n_in)?, u(op, plane)?, u(op, ho)?, u(op, wo)?];
    match idx.pool {
        Some((pp, (hp, wp))) => {
            words.push(1);
            words.extend(window_words(op, pp, (hp, wp))?);
            words.extend([u(op, wp)?, u(op, hp * wp)?]);
        }
        None => words.extend([0; 7]),
    }
    launch(
        ctx,
        POOL,
        "max_unpool",
        &words,
        &[
            Bind::R(1, y.buffer()),
            Bind::R(2, idx.buffer()),
            Bind::W(3, out.buffer()),
        ],
        groups_1d(n_in),
    )?;
    Ok(out)
}

pub(crate) fn pool_gather(ctx: &Arc<Ctx>, x: &GpuTensor, idx: &GpuIndex) -> Result<GpuTensor> {
    let op = "pool_gather";
    if x.shape.len() != 4 || idx.shape.len() != 4 || x.shape[..2] != idx.shape[..2] {
        return Err(Error::shape(
            op,
            format!(
                "x {:?} and indices {:?} must be [N,C,H,W] and [N,C,Ho,Wo]",
                x.shape, idx.shape
            ),
        ));
    }
    let plane = x.shape[2] * x.shape[3];
    let oplane = idx.shape[2] * idx.shape[3];
    if let Some(bad) = first_out_of_range(ctx, idx, plane)? {
        return Err(Error::param(
            op,
            format!(
                "index {bad} outside the {}x{} input plane",
                x.shape[2], x.shape[3]
            ),
        ));
    }
    u(op, x.len())?;
    let n_out = idx.len();
    let out = empty(ctx, &idx.shape)?;
    launch(
        ctx,
        POOL,
        "gather",
        &[u(op, n_out)?, u(op, plane)?, u(op, oplane)?],
        &[
            Bind::R(1, x.buffer()),
            Bind::R(2, idx.buffer()),
            Bind::W(3, out.buffer()),
        ],
        groups_1d(n_out),
    )?;
    Ok(out)
}

pub(crate) fn avg_pool2d(ctx: &Arc<Ctx>, x: &GpuTensor, p: Pool2dParams) -> Result<GpuTensor> {
    let op = "avg_pool2d";
    let (n, c, h, w) = nchw(op, "input", &x.shape)?;
    let (ho, wo) = p.output_hw(op, (h, w))?;
    u(op, x.len())?;
    let n_out = n * c * ho * wo;
    let out = empty(ctx, &[n, c, ho, wo])?;
    let mut words = vec![u(op, n_out)?, u(op, h)?, u(op, w)?, u(op, ho)?, u(op, wo)?];
    words.extend(window_words(op, p, (h, w))?);
    words.push(f((p.kernel.0 * p.kernel.1) as f32));
    launch(
        ctx,
        POOL,
        "avg_pool",
        &words,
        &[Bind::R(1, x.buffer()), Bind::W(3, out.buffer())],
        groups_1d(n_out),
    )?;
    Ok(out)
}

pub(crate) fn avg_pool2d_adjoint(
    ctx: &Arc<Ctx>,
    gy: &GpuTensor,
    input_hw: (usize, usize),
    p: Pool2dParams,
) -> Result<GpuTensor> {
    let op = "avg_pool2d_adjoint";
    let (n, c, ho, wo) = nchw(op, "gradient", &gy.shape)?;
    let (h, w) = input_hw;
    let expect = p.output_hw(op, (h, w))?;
    if expect != (ho, wo) {
        return Err(Error::shape(
            op,
            format!(
                "gradient {:?} has spatial size {:?} but input {:?} with {:?} pools to {:?}",
                gy.shape,
                (ho, wo),
                input_hw,
                p,
                expect
            ),
        ));
    }
    u(op, gy.len())?;
    let n_in = n * c * h * w;
    let out = empty(ctx, &[n, c, h, w])?;
    let mut words = vec![u(op, n_in)?, u(op, h)?, u(op, w)?, u(op, ho)?, u(op, wo)?];
    words.extend(window_words(op, p, (h, w))?);
    words.push(f((p.kernel.0 * p.kernel.1) as f32));
    launch(
        ctx,
        POOL,
        "avg_adjoint",
        &words,
        &[Bind::R(1, gy.buffer()), Bind::W(3, out.buffer())],
        groups_1d(n_in),
    )?;
    Ok(out)
}
