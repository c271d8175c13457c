//! Element maps (`Act`) with their gradients, binary ops, fills and the bias add along an axis
//! (`kernels/elementwise.wgsl`).

use std::sync::Arc;

use sim::{Act, Error, Result};

use super::{empty, f, launch, same_shape, shader, u};
use crate::context::{Bind, Ctx, groups_1d};
use crate::tensor::GpuTensor;

shader!(ELEMENTWISE, "elementwise.wgsl");

/// The kernel's code and bounds for an activation.
fn act_code(act: Act) -> (u32, f32, f32) {
    match act {
        Act::Identity => (0, 0.0, 0.0),
        Act::HardSigmoid => (1, 0.0, 0.0),
        Act::MyHardSig => (2, 0.0, 0.0),
        Act::MySigmoid => (3, 0.0, 0.0),
        Act::Relu => (4, 0.0, 0.0),
        Act::Gelu => (5, 0.0, 0.0),
        Act::Clamp { lo, hi } => (6, lo, hi),
    }
}

fn run(
    ctx: &Arc<Ctx>,
    op: &'static str,
    entry: &str,
    a: &GpuTensor,
    b: Option<&GpuTensor>,
    extra: &[u32],
) -> Result<GpuTensor> {
    if let Some(b) = b {
        same_shape(op, a, b)?;
    }
    let out = empty(ctx, &a.shape)?;
    let n = a.len();
    let mut p = vec![u(op, n)?];
    p.extend_from_slice(extra);
    let mut binds = vec![Bind::R(1, a.buffer())];
    if let Some(b) = b {
        binds.push(Bind::R(2, b.buffer()));
    }
    binds.push(Bind::W(3, out.buffer()));
    launch(ctx, ELEMENTWISE, entry, &p, &binds, groups_1d(n))?;
    Ok(out)
}

pub(crate) fn map(ctx: &Arc<Ctx>, x: &GpuTensor, act: Act) -> Result<GpuTensor> {
    act.check("map")?;
    let (c, lo, hi) = act_code(act);
    run(ctx, "map", "map", x, None, &[c, f(lo), f(hi)])
}

/// act(a + b) in one pass (`Backend::add_map`).
pub(crate) fn add_map(ctx: &Arc<Ctx>, a: &GpuTensor, b: &GpuTensor, act: Act) -> Result<GpuTensor> {
    // The errors of the add and the map it stands for (`Backend::add_map`'s default).
    same_shape("add", a, b)?;
    act.check("map")?;
    let (c, lo, hi) = act_code(act);
    run(ctx, "add_map", "add_map", a, Some(b), &[c, f(lo), f(hi)])
}

pub(crate) fn map_grad(
    ctx: &Arc<Ctx>,
    x: &GpuTensor,
    gy: &GpuTensor,
    act: Act,
) -> Result<GpuTensor> {
    act.check("map_grad")?;
    let (c, lo, hi) = act_code(act);
    run(ctx, "map_grad", "map_grad", x, Some(gy), &[c, f(lo), f(hi)])
}

/// alpha · a + beta · b.
pub(crate) fn lincomb(
    ctx: &Arc<Ctx>,
    op: &'static str,
    alpha: f32,
    a: &GpuTensor,
    beta: f32,
    b: &GpuTensor,
) -> Result<GpuTensor> {
    run(ctx, op, "lincomb", a, Some(b), &[f(alpha), f(beta)])
}

pub(crate) fn mul(ctx: &Arc<Ctx>, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
    run(ctx, "mul", "mul", a, Some(b), &[])
}

pub(crate) fn scale(ctx: &Arc<Ctx>, x: &GpuTensor, alpha: f32) -> Result<GpuTensor> {
    run(ctx, "scale", "scale", x, None, &[f(alpha)])
}

pub(crate) fn full(ctx: &Arc<Ctx>, shape: &[usize], value: f32) -> Result<GpuTensor> {
    let out = empty(ctx, shape)?;
    let n = out.len();
    launch(
        ctx,
        ELEMENTWISE,
        "fill",
        &[u("full", n)?, f(value)],
        &[Bind::W(3, out.buffer())],
        groups_1d(n),
    )?;
    Ok(out)
}

pub(crate) fn add_along(
    ctx: &Arc<Ctx>,
    x: &GpuTensor,
    b: &GpuTensor,
    axis: usize,
) -> Result<GpuTensor> {
    let op = "add_along";
    if axis >= x.shape.len() {
        return Err(Error::param(
            op,
            format!("axis {axis} out of range for shape {:?}", x.shape),
        ));
    }
    let len = x.shape[axis];
    if b.shape.len() != 1 || b.shape[0] != len {
        return Err(Error::shape(
            op,
            format!(
                "bias {:?} must be a vector of length {len} (axis {axis} of {:?})",
                b.shape, x.shape
            ),
        ));
    }
    let inner: usize = x.shape[axis + 1..].iter().product();
    let out = empty(ctx, &x.shape)?;
    let n = x.len();
    launch(
        ctx,
        ELEMENTWISE,
        "add_along",
        &[u(op, n)?, u(op, len)?, u(op, inner)?],
        &[
            Bind::R(1, x.buffer()),
            Bind::R(2, b.buffer()),
            Bind::W(3, out.buffer()),
        ],
        groups_1d(n),
    )?;
    Ok(out)
}
