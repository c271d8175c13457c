//! The optimizer update on the device (`kernels/optim.wgsl`): SGD with momentum and Adam, the
//! rules of `sim::OptimStep`, so training keeps parameters and buffers on the GPU.

use std::sync::Arc;

use sim::backend::OptimOut;
use sim::{Error, OptimStep, Result};

use super::{empty, f, launch, same_shape, shader, u};
use crate::context::{Bind, Ctx, groups_1d};
use crate::tensor::GpuTensor;

shader!(OPTIM, "optim.wgsl");

pub(crate) fn update(
    ctx: &Arc<Ctx>,
    p: &GpuTensor,
    g: &GpuTensor,
    buf1: Option<&GpuTensor>,
    buf2: Option<&GpuTensor>,
    step: OptimStep,
) -> Result<OptimOut<GpuTensor>> {
    let op = "optim_update";
    same_shape(op, p, g)?;
    for b in [buf1, buf2].into_iter().flatten() {
        same_shape(op, p, b)?;
    }
    let n = p.len();
    let out = empty(ctx, &p.shape)?;
    match step {
        OptimStep::Sgd { lr, wd, momentum } => {
            // The kernel references binding 3 and 6 whatever the branch: bind the gradient as the
            // absent input buffer and a one-element scratch as the unused output.
            let b1 = if momentum != 0.0 {
                empty(ctx, &p.shape)?
            } else {
                empty(ctx, &[1])?
            };
            let b1_in = buf1.filter(|_| momentum != 0.0).unwrap_or(g);
            let binds = [
                Bind::R(1, p.buffer()),
                Bind::R(2, g.buffer()),
                Bind::R(3, b1_in.buffer()),
                Bind::W(5, out.buffer()),
                Bind::W(6, b1.buffer()),
            ];
            let has = u32::from(buf1.is_some() && momentum != 0.0);
            launch(
                ctx,
                OPTIM,
                "sgd",
                &[u(op, n)?, f(lr), f(wd), f(momentum), has],
                &binds,
                groups_1d(n),
            )?;
            Ok((out, (momentum != 0.0).then_some(b1), buf2.cloned()))
        }
        OptimStep::Adam {
            lr,
            wd,
            beta1,
            beta2,
            eps,
            bc1,
            bc2,
        } => {
            let (m, v) = (empty(ctx, &p.shape)?, empty(ctx, &p.shape)?);
            let (has, m_in, v_in) = match (buf1, buf2) {
                (Some(a), Some(b)) => (1, a, b),
                (None, None) => (0, g, g),
                _ => {
                    return Err(Error::param(
                        op,
                        "Adam needs both moment buffers or neither",
                    ));
                }
            };
            let mut binds = vec![
                Bind::R(1, p.buffer()),
                Bind::R(2, g.buffer()),
                Bind::R(3, m_in.buffer()),
                Bind::R(4, v_in.buffer()),
            ];
            binds.extend([
                Bind::W(5, out.buffer()),
                Bind::W(6, m.buffer()),
                Bind::W(7, v.buffer()),
            ]);
            launch(
                ctx,
                OPTIM,
                "adam",
                &[
                    u(op, n)?,
                    f(lr),
                    f(wd),
                    f(beta1),
                    f(beta2),
                    f(eps),
                    f(bc1),
                    f(bc2),
                    has,
                ],
                &binds,
                groups_1d(n),
            )?;
            Ok((out, Some(m), Some(v)))
        }
    }
}
