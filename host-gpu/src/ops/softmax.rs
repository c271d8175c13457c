//! Softmax, log-softmax, its adjoint and cross-entropy over the last axis
//! (`kernels/softmax.wgsl`): one workgroup per row, workgroup reductions for the row max and the
//! sums; the mean cross-entropy is the exact sum of the per-row losses (`reduce`) divided by N,
//! left on the device.

use std::sync::Arc;

use sim::{Error, Result};

use super::reduce::{Summand, channel_sums};
use super::{Shader, empty, f, launch, same_shape, u};
use crate::context::{Bind, Ctx, groups_items};
use crate::tensor::GpuTensor;

/// The softmax kernels: the prelude, the shared helpers, then `softmax.wgsl`.
const SOFTMAX: Shader = Shader {
    name: "softmax.wgsl",
    body: concat!(
        include_str!("../kernels/math.wgsl"),
        "\n",
        include_str!("../kernels/softmax.wgsl")
    ),
};

/// Length of the last axis, or an error for a 0-d tensor (as the CPU backend).
fn last_axis(op: &'static str, x: &GpuTensor) -> Result<usize> {
    match x.shape.last() {
        Some(&k) => Ok(k),
        None => Err(Error::shape(
            op,
            "needs at least one axis (the softmax axis), got a 0-d tensor".to_string(),
        )),
    }
}

fn rows_fwd(ctx: &Arc<Ctx>, op: &'static str, x: &GpuTensor, log: bool) -> Result<GpuTensor> {
    let k = last_axis(op, x)?;
    let n = x.len();
    u(op, n)?;
    let out = empty(ctx, &x.shape)?;
    if n == 0 {
        return Ok(out);
    }
    let rows = n / k;
    launch(
        ctx,
        SOFTMAX,
        "rows_fwd",
        &[u(op, rows)?, u(op, k)?, u32::from(log)],
        &[Bind::R(1, x.buffer()), Bind::W(4, out.buffer())],
        groups_items(rows),
    )?;
    Ok(out)
}

pub(crate) fn softmax(ctx: &Arc<Ctx>, x: &GpuTensor) -> Result<GpuTensor> {
    rows_fwd(ctx, "softmax", x, false)
}

pub(crate) fn log_softmax(ctx: &Arc<Ctx>, x: &GpuTensor) -> Result<GpuTensor> {
    rows_fwd(ctx, "log_softmax", x, true)
}

/// gx = gy − exp(y) · Σ gy per row, y the log-softmax output.
pub(crate) fn log_softmax_grad(ctx: &Arc<Ctx>, y: &GpuTensor, gy: &GpuTensor) -> Result<GpuTensor> {
    let op = "log_softmax_grad";
    same_shape(op, y, gy)?;
    let k = last_axis(op, y)?;
    let n = y.len();
    u(op, n)?;
    let out = empty(ctx, &y.shape)?;
    if n == 0 {
        return Ok(out);
    }
    let rows = n / k;
    launch(
        ctx,
        SOFTMAX,
        "log_softmax_grad",
        &[u(op, rows)?, u(op, k)?],
        &[
            Bind::R(1, y.buffer()),
            Bind::R(2, gy.buffer()),
            Bind::W(4, out.buffer()),
        ],
        groups_items(rows),
    )?;
    Ok(out)
}

/// Mean cross-entropy (device scalar, shape `[]`) and the gradient w.r.t. the logits. Every check
/// (shapes, an empty batch, labels < K) runs before any work is recorded.
pub(crate) fn cross_entropy(
    ctx: &Arc<Ctx>,
    logits: &GpuTensor,
    labels: &[usize],
) -> Result<(GpuTensor, GpuTensor)> {
    let op = "cross_entropy";
    let (n, k) = match *logits.shape.as_slice() {
        [n, k] => (n, k),
        _ => {
            return Err(Error::shape(
                op,
                format!("logits must be 2-D [N, K], got {:?}", logits.shape),
            ));
        }
    };
    if labels.len() != n {
        return Err(Error::shape(
            op,
            format!(
                "{} labels for logits of shape {:?} (need {n})",
                labels.len(),
                logits.shape
            ),
        ));
    }
    if n == 0 || k == 0 {
        return Err(Error::shape(
            op,
            format!("empty batch or no classes: logits {:?}", logits.shape),
        ));
    }
    if let Some((i, &l)) = labels.iter().enumerate().find(|&(_, &l)| l >= k) {
        return Err(Error::param(
            op,
            format!("label {l} at position {i} out of range for {k} classes"),
        ));
    }
    u(op, n * k)?;
    // Labels are < K, which fits in 32 bits since N·K does.
    let words: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
    let lab = ctx.alloc_init(bytemuck::cast_slice(&words))?;
    let grad = empty(ctx, &[n, k])?;
    let nll = empty(ctx, &[n])?;
    launch(
        ctx,
        SOFTMAX,
        "cross_entropy",
        &[u(op, n)?, u(op, k)?, f(1.0 / n as f32)],
        &[
            Bind::R(1, logits.buffer()),
            Bind::R(3, lab.buffer()),
            Bind::W(4, grad.buffer()),
            Bind::W(5, nll.buffer()),
        ],
        groups_items(n),
    )?;
    let loss = channel_sums(ctx, op, Summand::Value(&nll), (1, 1, n), n)?.quot;
    Ok((
        GpuTensor {
            buf: loss.buf,
            shape: vec![],
        },
        grad,
    ))
}
