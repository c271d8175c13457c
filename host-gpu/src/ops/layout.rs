//! Data movement: reshape (shares the buffer), permute, concat and slice
//! (`kernels/layout.wgsl`).

use std::sync::Arc;

use sim::{Error, Result};

use super::{empty, launch, shader, u};
use crate::context::{Bind, Ctx, groups_1d};
use crate::tensor::GpuTensor;

shader!(LAYOUT, "layout.wgsl");

/// Most axes `permute` handles.
const MAX_RANK: usize = 8;

pub(crate) fn reshape(t: &GpuTensor, shape: &[usize]) -> Result<GpuTensor> {
    let n: usize = shape.iter().product();
    if n != t.len() {
        return Err(Error::shape(
            "reshape",
            format!(
                "cannot reshape {:?} ({} elements) to {shape:?} ({n} elements)",
                t.shape,
                t.len()
            ),
        ));
    }
    Ok(GpuTensor {
        buf: t.buf.clone(),
        shape: shape.to_vec(),
    })
}

pub(crate) fn permute(ctx: &Arc<Ctx>, t: &GpuTensor, axes: &[usize]) -> Result<GpuTensor> {
    let op = "permute";
    let r = t.shape.len();
    let mut seen = vec![false; r];
    if axes.len() != r
        || axes
            .iter()
            .any(|&a| a >= r || std::mem::replace(&mut seen[a], true))
    {
        return Err(Error::param(
            op,
            format!(
                "axes {axes:?} are not a permutation of 0..{r} (shape {:?})",
                t.shape
            ),
        ));
    }
    if r > MAX_RANK {
        return Err(Error::param(
            op,
            format!("rank {r} exceeds the GPU kernel's {MAX_RANK}"),
        ));
    }
    let mut strides = vec![1usize; r];
    for k in (0..r.saturating_sub(1)).rev() {
        strides[k] = strides[k + 1] * t.shape[k + 1];
    }
    let out_shape: Vec<usize> = axes.iter().map(|&a| t.shape[a]).collect();
    let out = empty(ctx, &out_shape)?;
    let n = t.len();
    let mut p = vec![0u32; 2 + 2 * MAX_RANK];
    p[0] = u(op, n)?;
    p[1] = r as u32;
    for (k, &a) in axes.iter().enumerate() {
        p[2 + k] = u(op, out_shape[k])?;
        p[2 + MAX_RANK + k] = u(op, strides[a])?;
    }
    launch(
        ctx,
        LAYOUT,
        "permute",
        &p,
        &[Bind::R(1, t.buffer()), Bind::W(3, out.buffer())],
        groups_1d(n),
    )?;
    Ok(out)
}

/// Copy the block `[outer, len, inner]` of `x` (axis length `xlen`, from `xoff`) into `y` (axis
/// length `ylen`, at `yoff`).
#[allow(clippy::too_many_arguments)]
fn block_copy(
    ctx: &Arc<Ctx>,
    op: &'static str,
    x: &GpuTensor,
    y: &GpuTensor,
    outer: usize,
    len: usize,
    inner: usize,
    (xlen, xoff): (usize, usize),
    (ylen, yoff): (usize, usize),
) -> Result<()> {
    let n = outer * len * inner;
    launch(
        ctx,
        LAYOUT,
        "block_copy",
        &[
            u(op, n)?,
            u(op, len)?,
            u(op, inner.max(1))?,
            u(op, xlen)?,
            u(op, xoff)?,
            u(op, ylen)?,
            u(op, yoff)?,
        ],
        &[Bind::R(1, x.buffer()), Bind::W(3, y.buffer())],
        groups_1d(n),
    )
}

pub(crate) fn concat(ctx: &Arc<Ctx>, xs: &[&GpuTensor], axis: usize) -> Result<GpuTensor> {
    let op = "concat";
    let Some(first) = xs.first() else {
        return Err(Error::param(op, "no tensors to concatenate"));
    };
    if axis >= first.shape.len() {
        return Err(Error::param(
            op,
            format!("axis {axis} out of range for shape {:?}", first.shape),
        ));
    }
    for x in xs {
        let ok = x.shape.len() == first.shape.len()
            && x.shape
                .iter()
                .zip(&first.shape)
                .enumerate()
                .all(|(k, (a, b))| k == axis || a == b);
        if !ok {
            return Err(Error::shape(
                op,
                format!(
                    "shapes {:?} differ outside axis {axis}",
                    xs.iter().map(|x| x.shape.clone()).collect::<Vec<_>>()
                ),
            ));
        }
    }
    let total: usize = xs.iter().map(|x| x.shape[axis]).sum();
    let mut shape = first.shape.clone();
    shape[axis] = total;
    let out = empty(ctx, &shape)?;
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let mut off = 0;
    for x in xs {
        let len = x.shape[axis];
        block_copy(ctx, op, x, &out, outer, len, inner, (len, 0), (total, off))?;
        off += len;
    }
    Ok(out)
}

pub(crate) fn slice(
    ctx: &Arc<Ctx>,
    x: &GpuTensor,
    axis: usize,
    start: usize,
    len: usize,
) -> Result<GpuTensor> {
    let op = "slice";
    if axis >= x.shape.len() {
        return Err(Error::param(
            op,
            format!("axis {axis} out of range for shape {:?}", x.shape),
        ));
    }
    if start.checked_add(len).is_none_or(|end| end > x.shape[axis]) {
        return Err(Error::param(
            op,
            format!(
                "entries {start}..{start}+{len} of axis {axis} do not fit shape {:?}",
                x.shape
            ),
        ));
    }
    let mut shape = x.shape.clone();
    shape[axis] = len;
    let out = empty(ctx, &shape)?;
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    block_copy(
        ctx,
        op,
        x,
        &out,
        outer,
        len,
        inner,
        (x.shape[axis], start),
        (len, 0),
    )?;
    Ok(out)
}
