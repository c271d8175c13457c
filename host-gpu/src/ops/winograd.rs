//! Winograd F(2×2, 3×3) convolution on the GPU (`kernels/winograd.wgsl`) for 3x3 stride-1 layers:
//! the forward conv and the input adjoint (a correlation of the output gradient with the kernel
//! rotated by 180° and the channels swapped, padded by 2 − p), optionally reading the gradient
//! through a non-overlapping max or average unpooling, as the EP feedback of a pooled conv synapse
//! does (the unpooled tensor is never written).
//!
//! Four dispatches: the weight transform `U[16, M, K]`, the input transform `V[16, K, T]` of the
//! T = N·⌈HY/2⌉·⌈WY/2⌉ output tiles, one batched GEMM of the template (`gemm::dense`, batch 16:
//! `U_ξ · V_ξ`) and the output transform with the bias. 16 multiplies per 2×2 output tile and
//! channel pair against 36 for the direct implicit GEMM (2.25× fewer), for two extra passes over
//! 16/4 of the input and output activations and the transformed weights. Every sum has a fixed
//! order, so results are the same bits on every run; they differ from the direct path's only by
//! rounding (the transforms add, subtract and halve).

use std::sync::Arc;

use sim::Result;

use super::gemm::{Dims, dense};
use super::{empty, launch, shader, u};
use crate::context::{Bind, Ctx, groups_1d};
use crate::tensor::{GpuIndex, GpuTensor};

shader!(WINOGRAD, "winograd.wgsl");

/// Where the input transform reads: the source tensor itself, or a pooled gradient unpooled on the
/// fly (windows `k` = stride, pooled grid `hp`×`wp`; max unpooling with its switches).
pub(crate) enum Source<'a> {
    Plain(&'a GpuTensor),
    Unpool {
        v: &'a GpuTensor,
        idx: Option<&'a GpuIndex>,
        k: usize,
        hp: usize,
        wp: usize,
    },
}

/// Shapes of one Winograd convolution: `n` samples, `k` input channels of `hin`×`win` (after any
/// unpooling) padded by `pad` (rows, columns), `m` output channels of `hy`×`wy`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub(crate) n: usize,
    pub(crate) k: usize,
    pub(crate) m: usize,
    pub(crate) hin: usize,
    pub(crate) win: usize,
    pub(crate) pad: (usize, usize),
    pub(crate) hy: usize,
    pub(crate) wy: usize,
}

/// Multiplies of the Winograd path per sample and channel pair for an `hy`×`wy` output.
pub(crate) fn mults(hy: usize, wy: usize) -> usize {
    16 * hy.div_ceil(2) * wy.div_ceil(2)
}

/// y `[n, m, hy, wy]` = the 3x3 correlation of the source with `w`, padded by `s.pad`, plus the
/// bias. `w` is `[m, k, 3, 3]` (forward) or, with `transposed`, `[k, m, 3, 3]` read rotated by
/// 180° (the input adjoint). The caller has checked the shapes and that every size is non-zero.
pub(crate) fn conv3x3(
    ctx: &Arc<Ctx>,
    op: &'static str,
    src: Source<'_>,
    w: &GpuTensor,
    transposed: bool,
    bias: Option<&GpuTensor>,
    s: Shape,
) -> Result<GpuTensor> {
    let (th, tw) = (s.hy.div_ceil(2), s.wy.div_ceil(2));
    let t = s.n * th * tw;
    // Every flat index of the transforms stays below 16 times the larger transformed tensor.
    u(op, 16 * (s.m * s.k).max(s.k * t).max(s.m * t))?;

    let uw = empty(ctx, &[16, s.m, s.k])?;
    launch(
        ctx,
        WINOGRAD,
        "wino_weights",
        &[
            u(op, s.m)?,
            u(op, s.k)?,
            transposed as u32,
            u(op, s.m * s.k)?,
        ],
        &[Bind::R(1, w.buffer()), Bind::W(3, uw.buffer())],
        groups_1d(s.m * s.k),
    )?;

    let v = empty(ctx, &[16, s.k, t])?;
    let (x, idx, mode, (pk, hp, wp)) = match src {
        Source::Plain(x) => (x, None, 0, (1, 0, 0)),
        Source::Unpool { v, idx, k, hp, wp } => {
            (v, idx, if idx.is_some() { 1 } else { 2 }, (k, hp, wp))
        }
    };
    launch(
        ctx,
        WINOGRAD,
        "wino_input",
        &[
            u(op, s.k)?,
            u(op, t)?,
            u(op, s.hin)?,
            u(op, s.win)?,
            u(op, th)?,
            u(op, tw)?,
            u(op, s.pad.0)?,
            mode,
            u(op, pk)?,
            u(op, hp)?,
            u(op, wp)?,
            u(op, s.k * t)?,
            u(op, s.pad.1)?,
        ],
        &[
            Bind::R(1, x.buffer()),
            // Without switches the kernel reads none: bind the source in their place.
            Bind::R(2, idx.map_or(x.buffer(), |i| i.buffer())),
            Bind::W(3, v.buffer()),
        ],
        groups_1d(s.k * t),
    )?;

    let d = Dims {
        m: s.m,
        n: t,
        k: s.k,
        batch: 16,
    };
    let prod = dense(ctx, op, &uw, &v, None, (false, false), d, &[16, s.m, t])?;
    drop((uw, v));

    let y = empty(ctx, &[s.n, s.m, s.hy, s.wy])?;
    launch(
        ctx,
        WINOGRAD,
        "wino_output",
        &[
            u(op, s.m)?,
            u(op, t)?,
            u(op, s.hy)?,
            u(op, s.wy)?,
            u(op, th)?,
            u(op, tw)?,
            bias.is_some() as u32,
            u(op, s.m * t)?,
        ],
        &[
            Bind::R(1, prod.buffer()),
            Bind::W(3, y.buffer()),
            // Without a bias the kernel reads none: bind the product in its place.
            Bind::R(4, bias.map_or(prod.buffer(), |b| b.buffer())),
        ],
        groups_1d(s.m * t),
    )?;
    Ok(y)
}
