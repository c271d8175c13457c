//! Layer norm and batch norm with their adjoints (`kernels/norm.wgsl`; the per-channel sums of
//! batch norm and the parameter gradients of layer norm are the reductions of `reduce`).
//! Formulas, checks and error kinds mirror `sim/src/cpu/norm.rs`; the sums it does in f64 are
//! exact here and rounded once, so means and variances are the CPU's to the last bit but in
//! near-ties, and the rest agrees to a few f32 ulps.

use std::sync::{Arc, Mutex, Weak};

use sim::{Error, Result};

use super::reduce::{Summand, channel_sums};
use super::{Shader, empty, f, launch, u};
use crate::context::{Bind, Ctx, PoolBuf, groups_1d, groups_items};
use crate::tensor::GpuTensor;

/// The norm kernels: the prelude, the shared helpers, the exact sums, then `norm.wgsl`.
const NORM: Shader = Shader {
    name: "norm.wgsl",
    body: concat!(
        include_str!("../kernels/math.wgsl"),
        "\n",
        include_str!("../kernels/exact.wgsl"),
        "\n",
        include_str!("../kernels/norm.wgsl")
    ),
};

type T3 = (GpuTensor, GpuTensor, GpuTensor);

fn check_eps(op: &'static str, eps: f32) -> Result<()> {
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::param(
            op,
            format!("eps must be finite and ≥ 0, got {eps}"),
        ));
    }
    Ok(())
}

fn check_vec(op: &'static str, what: &str, t: &GpuTensor, len: usize, x: &GpuTensor) -> Result<()> {
    if t.shape.len() != 1 || t.len() != len {
        return Err(Error::shape(
            op,
            format!(
                "{what} of shape {:?} does not fit input {:?} (expected [{len}])",
                t.shape, x.shape
            ),
        ));
    }
    Ok(())
}

/// (rows, D) of a layer-norm input, D = last axis > 0; the element count fits in 32 bits.
fn ln_dims(op: &'static str, x: &GpuTensor) -> Result<(usize, usize)> {
    match x.shape.last() {
        Some(&d) if d > 0 => {
            u(op, x.len())?;
            Ok((x.len() / d, d))
        }
        _ => Err(Error::shape(
            op,
            format!(
                "input needs a non-empty last axis to normalize, got {:?}",
                x.shape
            ),
        )),
    }
}

/// (N, C, inner) of a batch-norm input [N, C, ...]; the element count fits in 32 bits.
fn bn_dims(op: &'static str, x: &GpuTensor) -> Result<(usize, usize, usize)> {
    if x.shape.len() < 2 {
        return Err(Error::shape(
            op,
            format!("input must be [N, C] or [N, C, H, W], got {:?}", x.shape),
        ));
    }
    u(op, x.len())?;
    let s = &x.shape;
    Ok((s[0], s[1], s[2..].iter().product()))
}

pub(crate) fn layer_norm(
    ctx: &Arc<Ctx>,
    x: &GpuTensor,
    gamma: &GpuTensor,
    beta: &GpuTensor,
    eps: f32,
) -> Result<T3> {
    let op = "layer_norm";
    let (rows, d) = ln_dims(op, x)?;
    check_vec(op, "gamma", gamma, d, x)?;
    check_vec(op, "beta", beta, d, x)?;
    check_eps(op, eps)?;
    let lead = &x.shape[..x.shape.len() - 1];
    let (y, mean, rstd) = (empty(ctx, &x.shape)?, empty(ctx, lead)?, empty(ctx, lead)?);
    launch(
        ctx,
        NORM,
        "ln_fwd",
        &[u(op, rows)?, u(op, d)?, f(eps)],
        &[
            Bind::R(1, x.buffer()),
            Bind::R(2, gamma.buffer()),
            Bind::R(3, beta.buffer()),
            Bind::W(7, y.buffer()),
            Bind::W(8, mean.buffer()),
            Bind::W(9, rstd.buffer()),
        ],
        groups_items(rows),
    )?;
    Ok((y, mean, rstd))
}

pub(crate) fn layer_norm_grad(
    ctx: &Arc<Ctx>,
    x: &GpuTensor,
    gamma: &GpuTensor,
    mean: &GpuTensor,
    rstd: &GpuTensor,
    gy: &GpuTensor,
) -> Result<T3> {
    let op = "layer_norm_grad";
    let (rows, d) = ln_dims(op, x)?;
    check_vec(op, "gamma", gamma, d, x)?;
    if gy.shape != x.shape {
        return Err(Error::shape(
            op,
            format!("gradient {:?} does not match input {:?}", gy.shape, x.shape),
        ));
    }
    let lead = &x.shape[..x.shape.len() - 1];
    for (what, t) in [("mean", mean), ("rstd", rstd)] {
        if t.shape != lead {
            return Err(Error::shape(
                op,
                format!(
                    "{what} of shape {:?} does not match the leading shape {lead:?} of input {:?}",
                    t.shape, x.shape
                ),
            ));
        }
    }
    let gx = empty(ctx, &x.shape)?;
    let prod = empty(ctx, &x.shape)?;
    launch(
        ctx,
        NORM,
        "ln_bwd",
        &[u(op, rows)?, u(op, d)?],
        &[
            Bind::R(1, x.buffer()),
            Bind::R(2, gamma.buffer()),
            Bind::R(3, gy.buffer()),
            Bind::R(4, mean.buffer()),
            Bind::R(5, rstd.buffer()),
            Bind::W(7, gx.buffer()),
            Bind::W(8, prod.buffer()),
        ],
        groups_items(rows),
    )?;
    let ggamma = channel_sums(ctx, op, Summand::Value(&prod), (rows, d, 1), 1)?.sum;
    let gbeta = channel_sums(ctx, op, Summand::Value(gy), (rows, d, 1), 1)?.sum;
    Ok((gx, ggamma, gbeta))
}

/// Interleaved (mean, rstd) per channel, rstd = 1 / sqrt(var + eps).
fn bn_stats(
    ctx: &Arc<Ctx>,
    op: &'static str,
    mean: &GpuTensor,
    var: &GpuTensor,
    eps: f32,
) -> Result<GpuTensor> {
    let c = mean.len();
    let stat = empty(ctx, &[2 * c])?;
    launch(
        ctx,
        NORM,
        "bn_stats",
        &[u(op, c)?, f(eps)],
        &[
            Bind::R(4, mean.buffer()),
            Bind::R(5, var.buffer()),
            Bind::W(7, stat.buffer()),
        ],
        groups_1d(c),
    )?;
    Ok(stat)
}

/// y = (x − mean)·rstd·gamma + beta per channel.
fn bn_apply(
    ctx: &Arc<Ctx>,
    op: &'static str,
    x: &GpuTensor,
    gamma: &GpuTensor,
    beta: &GpuTensor,
    stat: &GpuTensor,
    (c, inner): (usize, usize),
) -> Result<GpuTensor> {
    let y = empty(ctx, &x.shape)?;
    let n = x.len();
    launch(
        ctx,
        NORM,
        "bn_apply",
        &[u(op, n)?, u(op, c.max(1))?, u(op, inner.max(1))?],
        &[
            Bind::R(1, x.buffer()),
            Bind::R(2, gamma.buffer()),
            Bind::R(3, beta.buffer()),
            Bind::R(6, stat.buffer()),
            Bind::W(7, y.buffer()),
        ],
        groups_1d(n),
    )?;
    Ok(y)
}

pub(crate) fn batch_norm_train(
    ctx: &Arc<Ctx>,
    x: &GpuTensor,
    gamma: &GpuTensor,
    beta: &GpuTensor,
    eps: f32,
) -> Result<T3> {
    let op = "batch_norm_train";
    let dims @ (n, c, inner) = bn_dims(op, x)?;
    check_vec(op, "gamma", gamma, c, x)?;
    check_vec(op, "beta", beta, c, x)?;
    check_eps(op, eps)?;
    let m = n * inner;
    if m < 2 {
        return Err(Error::shape(
            op,
            format!(
                "expected more than 1 value per channel in training, got input {:?}",
                x.shape
            ),
        ));
    }
    let mean = channel_sums(ctx, op, Summand::Value(x), dims, m)?;
    let var = channel_sums(
        ctx,
        op,
        Summand::SquaredDeviation(x, &mean.quot_pair),
        dims,
        m,
    )?
    .quot;
    let mean = mean.quot;
    let stat = bn_stats(ctx, op, &mean, &var, eps)?;
    let y = bn_apply(ctx, op, x, gamma, beta, &stat, (c, inner))?;
    Ok((y, mean, var))
}

/// Variance tensors already read back and found free of negative values and NaN. Tensors are
/// immutable once written, so each is checked once (running statistics are reused batch after
/// batch). Weak references neither keep a buffer alive nor let a new tensor pass for a dropped
/// one: the allocation an entry points to cannot be reused while the entry holds it.
static CHECKED_VARS: Mutex<Vec<Weak<PoolBuf>>> = Mutex::new(Vec::new());

/// The CPU's check of `batch_norm_eval`: every variance ≥ 0 (reads `var` back once).
fn check_var(ctx: &Arc<Ctx>, op: &'static str, var: &GpuTensor) -> Result<()> {
    let w = Arc::downgrade(&var.buf);
    let known = |v: &Vec<Weak<PoolBuf>>| v.iter().any(|c| c.ptr_eq(&w));
    if known(&CHECKED_VARS.lock().expect("checked-vars lock")) {
        return Ok(());
    }
    let bytes = ctx.read(var.buffer(), 4 * var.len() as u64)?;
    let vals: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
    if let Some(v) = vals.iter().find(|&&v| v.is_nan() || v < 0.0) {
        return Err(Error::param(op, format!("variance must be ≥ 0, got {v}")));
    }
    let mut checked = CHECKED_VARS.lock().expect("checked-vars lock");
    checked.retain(|c| c.strong_count() > 0);
    if !known(&checked) {
        checked.push(w);
    }
    Ok(())
}

pub(crate) fn batch_norm_eval(
    ctx: &Arc<Ctx>,
    x: &GpuTensor,
    gamma: &GpuTensor,
    beta: &GpuTensor,
    mean: &GpuTensor,
    var: &GpuTensor,
    eps: f32,
) -> Result<GpuTensor> {
    let op = "batch_norm_eval";
    let (_, c, inner) = bn_dims(op, x)?;
    check_vec(op, "gamma", gamma, c, x)?;
    check_vec(op, "beta", beta, c, x)?;
    check_vec(op, "mean", mean, c, x)?;
    check_vec(op, "var", var, c, x)?;
    check_eps(op, eps)?;
    check_var(ctx, op, var)?;
    let stat = bn_stats(ctx, op, mean, var, eps)?;
    bn_apply(ctx, op, x, gamma, beta, &stat, (c, inner))
}

pub(crate) fn batch_norm_grad(
    ctx: &Arc<Ctx>,
    x: &GpuTensor,
    gamma: &GpuTensor,
    mean: &GpuTensor,
    var: &GpuTensor,
    eps: f32,
    gy: &GpuTensor,
) -> Result<T3> {
    let op = "batch_norm_grad";
    let dims @ (n, c, inner) = bn_dims(op, x)?;
    check_vec(op, "gamma", gamma, c, x)?;
    check_vec(op, "mean", mean, c, x)?;
    check_vec(op, "var", var, c, x)?;
    check_eps(op, eps)?;
    if gy.shape != x.shape {
        return Err(Error::shape(
            op,
            format!("gradient {:?} does not match input {:?}", gy.shape, x.shape),
        ));
    }
    let m = n * inner;
    if m == 0 {
        return Err(Error::shape(op, format!("empty input {:?}", x.shape)));
    }
    let stat = bn_stats(ctx, op, mean, var, eps)?;
    let sb = channel_sums(ctx, op, Summand::Value(gy), dims, m)?;
    let sg = channel_sums(
        ctx,
        op,
        Summand::GradTimesXhat {
            gy,
            x,
            stats: &stat,
        },
        dims,
        m,
    )?;
    let gx = empty(ctx, &x.shape)?;
    let len = x.len();
    launch(
        ctx,
        NORM,
        "bn_bwd",
        &[u(op, len)?, u(op, c.max(1))?, u(op, inner.max(1))?],
        &[
            Bind::R(1, x.buffer()),
            Bind::R(2, gamma.buffer()),
            Bind::R(3, gy.buffer()),
            Bind::R(4, sb.quot.buffer()),
            Bind::R(5, sg.quot.buffer()),
            Bind::R(6, stat.buffer()),
            Bind::W(7, gx.buffer()),
        ],
        groups_1d(len),
    )?;
    Ok((gx, sg.sum, sb.sum))
}
