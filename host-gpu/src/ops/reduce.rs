//! Deterministic reductions (`kernels/reduce.wgsl`, on the exact fixed-point sums of
//! `kernels/exact.wgsl`): the sum of all elements and the dot product as device scalars, the sum
//! over every axis but one, and the per-channel sums the norms and the cross-entropy build on.
//!
//! Every sum is exact in 128-bit fixed point (summand bits below 2⁻⁹² of the largest summand
//! dropped; products of f32 values exact), then rounded once to f32, so it agrees with the CPU's
//! f64 accumulation to the last bit but in near-ties; being exact, it does not depend on the
//! order at all. The work is split by sizes alone: segments of each channel reduced by one
//! workgroup each, then the segments of a channel aligned and added by a second pass. Compensated
//! float tricks (TwoSum, Kahan) are not used: shader compilers may simplify them away.

use std::sync::Arc;

use sim::{Error, Result};

use super::{Shader, empty, launch, same_shape, u};
use crate::context::{Bind, Ctx, groups_1d, groups_items};
use crate::tensor::GpuTensor;

/// The reduction kernels: the prelude, the shared helpers, the exact sums, then `reduce.wgsl`.
const REDUCE: Shader = Shader {
    name: "reduce.wgsl",
    body: concat!(
        include_str!("../kernels/math.wgsl"),
        "\n",
        include_str!("../kernels/exact.wgsl"),
        "\n",
        include_str!("../kernels/reduce.wgsl")
    ),
};

/// Elements one workgroup adds at least (8 per invocation) before a channel is split further.
const SEG_MIN: usize = 2048;
/// Most workgroups of the first pass (over all channels) when channels are split (the second
/// pass leaves room for 4096 partials per channel).
const MAX_PARTS: usize = 2048;
/// Words per partial sum: the 128-bit integer, its base exponent, the non-finite flags.
const PART_WORDS: usize = 6;
/// Up to this many segments per channel the second pass adds them in one invocation.
const SEQ_MAX: usize = 8;

/// What each element of a channel contributes to its sum.
pub(crate) enum Summand<'a> {
    /// a[k].
    Value(&'a GpuTensor),
    /// a[k] · b[k].
    Product(&'a GpuTensor, &'a GpuTensor),
    /// (a[k] − μ_c)² with the float-float channel means `[2·len]` (hi, lo per channel, as
    /// [`ChannelSums::quot_pair`]).
    SquaredDeviation(&'a GpuTensor, &'a GpuTensor),
    /// gy[k] · (x[k] − mean_c) · rstd_c (the f32 product x̂ as the CPU computes it) with
    /// `stats` `[2·len]` holding (mean, rstd) per channel.
    GradTimesXhat {
        gy: &'a GpuTensor,
        x: &'a GpuTensor,
        stats: &'a GpuTensor,
    },
}

/// The results of [`channel_sums`], each rounded once from the exact sum.
pub(crate) struct ChannelSums {
    /// The sums `[len]`.
    pub(crate) sum: GpuTensor,
    /// The sums divided by the count `div` `[len]`.
    pub(crate) quot: GpuTensor,
    /// The quotients as float-floats `[2·len]`: hi (= `quot`), lo (the rest, rounded).
    pub(crate) quot_pair: GpuTensor,
}

/// Per-channel sums of a tensor viewed as `[outer, len, inner]` (channel c: the elements
/// `(o·len + c)·inner + i`), also divided by the count `div` (≥ 1). The caller checked that the
/// tensors hold `outer·len·inner` elements and that the count fits in 32 bits.
pub(crate) fn channel_sums(
    ctx: &Arc<Ctx>,
    op: &'static str,
    summand: Summand<'_>,
    (outer, len, inner): (usize, usize, usize),
    div: usize,
) -> Result<ChannelSums> {
    let m = outer * inner;
    let sums = ChannelSums {
        sum: empty(ctx, &[len])?,
        quot: empty(ctx, &[len])?,
        quot_pair: empty(ctx, &[2 * len])?,
    };
    if len == 0 {
        return Ok(sums);
    }
    // Segments per channel: at least SEG_MIN elements each, at most MAX_PARTS workgroups in all
    // (at least one segment per channel); the segment length a multiple of the workgroup.
    let cap = (MAX_PARTS / len).max(1);
    let want = m.div_ceil(SEG_MIN).clamp(1, cap);
    let seg = m.div_ceil(want).div_ceil(256).max(1) * 256;
    let nseg = m.div_ceil(seg).max(1);
    let parts = empty(ctx, &[PART_WORDS * len * nseg])?;
    let (mode, a, b, cv) = match summand {
        Summand::Value(a) => (0, a, a, a),
        Summand::Product(a, b) => (1, a, b, a),
        Summand::SquaredDeviation(a, mu) => (2, a, a, mu),
        Summand::GradTimesXhat { gy, x, stats } => (3, gy, x, stats),
    };
    let items = len * nseg;
    launch(
        ctx,
        REDUCE,
        "part",
        &[
            u(op, m)?,
            u(op, len)?,
            u(op, inner.max(1))?,
            u(op, nseg)?,
            u(op, seg)?,
            mode,
        ],
        &[
            Bind::R(1, a.buffer()),
            Bind::R(2, b.buffer()),
            Bind::R(3, cv.buffer()),
            Bind::W(4, parts.buffer()),
        ],
        groups_items(items),
    )?;
    let (entry, groups) = if nseg <= SEQ_MAX {
        ("finish_seq", groups_1d(len))
    } else {
        ("finish_wg", groups_items(len))
    };
    launch(
        ctx,
        REDUCE,
        entry,
        &[u(op, len)?, u(op, nseg)?, u(op, div.max(1))?],
        &[
            Bind::W(4, parts.buffer()),
            Bind::W(5, sums.sum.buffer()),
            Bind::W(6, sums.quot.buffer()),
            Bind::W(7, sums.quot_pair.buffer()),
        ],
        groups,
    )?;
    Ok(sums)
}

/// The all-elements reduction behind `sum_all` and `dot`: a `[]` device scalar.
fn total(ctx: &Arc<Ctx>, op: &'static str, summand: Summand<'_>, n: usize) -> Result<GpuTensor> {
    u(op, n)?;
    let sums = channel_sums(ctx, op, summand, (1, 1, n), 1)?;
    Ok(GpuTensor {
        buf: sums.sum.buf,
        shape: vec![],
    })
}

/// Σ x as a device scalar (shape `[]`); 0 for an empty tensor.
pub(crate) fn sum_all(ctx: &Arc<Ctx>, x: &GpuTensor) -> Result<GpuTensor> {
    total(ctx, "sum_all", Summand::Value(x), x.len())
}

/// Σ a ⊙ b as a device scalar (shape `[]`).
pub(crate) fn dot(ctx: &Arc<Ctx>, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
    same_shape("dot", a, b)?;
    total(ctx, "dot", Summand::Product(a, b), a.len())
}

/// Sum over every axis except `axis`: a vector of length `x.shape[axis]`.
pub(crate) fn sum_except(ctx: &Arc<Ctx>, x: &GpuTensor, axis: usize) -> Result<GpuTensor> {
    let op = "sum_except";
    if axis >= x.shape.len() {
        return Err(Error::param(
            op,
            format!("axis {axis} out of range for shape {:?}", x.shape),
        ));
    }
    u(op, x.len())?;
    let outer: usize = x.shape[..axis].iter().product();
    let inner: usize = x.shape[axis + 1..].iter().product();
    let sums = channel_sums(ctx, op, Summand::Value(x), (outer, x.shape[axis], inner), 1)?;
    Ok(sums.sum)
}
