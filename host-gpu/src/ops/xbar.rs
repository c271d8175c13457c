//! The crossbar reads of analog substrates on the device (`kernels/xbar.wgsl`): the plan's
//! weights uploaded once (kept in the plan's backend slot); per input block, in block order, the
//! DAC of every input vector, the block's sums as GEMMs (the backend's tiled GEMM), and the noise,
//! ADC and bound management per (vector, tile); then one store in the read's layout with `wmax`
//! and the bias, and one read-back of the tally (six words). Reads the kernels cannot hold (an
//! empty block, a block slice or an output tile over 1,024 values, flat draw indices past 2³²)
//! run the CPU's host kernels on host copies. The GPU prepares no input read (`xbar_prepare` is
//! `None`): the first array's read of the input is made again at every step.

use std::sync::Arc;

use sim::analog::{Converter, ReadKind, ReadPlan, Tally, round_stream};
use sim::netlist::NoiseManagement;
use sim::{Error, Result, Stream};

use super::{elementwise as ew, empty, f, gemm, launch, u};
use crate::context::{Bind, Ctx, groups_1d};
use crate::tensor::GpuTensor;

/// The kernels: the prelude, the shared helpers (the accurate log), Philox, then `xbar.wgsl`.
const XBAR: super::Shader = super::Shader {
    name: "xbar.wgsl",
    body: concat!(
        include_str!("../kernels/math.wgsl"),
        "\n",
        include_str!("../kernels/philox.wgsl"),
        "\n",
        include_str!("../kernels/xbar.wgsl")
    ),
};

/// The largest block slice and output tile the kernel holds (`XMAX` of `xbar.wgsl`).
const XMAX: usize = 1024;

/// A plan's weights and per-read noise variances on the device: per input block `[n_out, nb]`
/// tensors (the operands of the block GEMMs, and of the re-reads).
struct DevicePlan {
    blocks: Vec<(GpuTensor, Option<GpuTensor>)>,
}

/// Whether the kernel can run this read of `rows` vectors through the input `blocks`.
fn fits(plan: &ReadPlan, blocks: &[(usize, usize)], rows: usize) -> bool {
    !blocks.is_empty()
        && blocks.iter().all(|&(lo, hi)| hi > lo && hi - lo <= XMAX)
        && plan.output_tiles().iter().all(|&(o0, o1)| o1 - o0 <= XMAX)
        && rows
            .checked_mul(plan.n_in().max(plan.n_out()))
            .is_some_and(|n| n < u32::MAX as usize - 8)
        && rows
            .checked_mul(plan.output_tiles().len())
            .is_some_and(|n| n < u32::MAX as usize)
}

/// The plan's device copy: the one in its slot when this device made it, else a new upload (kept
/// in the slot when it is empty).
fn device_plan(ctx: &Arc<Ctx>, plan: &ReadPlan) -> Result<Arc<DevicePlan>> {
    let owner = Arc::as_ptr(ctx) as usize;
    if let Some((o, copy)) = plan.backend_slot().get()
        && *o == owner
        && let Ok(d) = copy.clone().downcast::<DevicePlan>()
    {
        return Ok(d);
    }
    let n_out = plan.n_out();
    let upload = |v: &[f32], nb: usize| -> Result<GpuTensor> {
        Ok(GpuTensor {
            buf: Arc::new(ctx.alloc_init(bytemuck::cast_slice(v))?),
            shape: vec![n_out, nb],
        })
    };
    let mut blocks = Vec::new();
    for (b, &(lo, hi)) in plan.input_blocks().iter().enumerate() {
        let (wb, sb) = plan.block(b);
        blocks.push((
            upload(wb, hi - lo)?,
            sb.map(|v| upload(v, hi - lo)).transpose()?,
        ));
    }
    let d = Arc::new(DevicePlan { blocks });
    let _ = plan.backend_slot().set((owner, d.clone()));
    Ok(d)
}

/// The parameter words of a converter at its offset: (present, bound, step, 1/step, quantizes,
/// noise); infinite bounds as the largest f32 (kernels may assume finite values).
fn converter_words(c: Option<Converter>) -> [u32; 6] {
    let fin = |v: f32| if v.is_finite() { v } else { f32::MAX };
    match c {
        None => [0, f(f32::MAX), f(1.0), f(1.0), 0, f(0.0)],
        Some(c) => [
            1,
            f(fin(c.q.bound)),
            f(c.q.step),
            f(c.q.inv_step),
            u32::from(c.q.quantize),
            f(c.noise),
        ],
    }
}

/// The geometry words of `kind` (zeros for a dense read).
fn geometry_words(kind: ReadKind) -> Result<[u32; 12]> {
    let g = match kind {
        ReadKind::Dense => return Ok([0; 12]),
        ReadKind::ConvForward(g) | ReadKind::ConvTransposed(g) => g,
    };
    let op = "xbar_read";
    Ok([
        u(op, g.n)?,
        u(op, g.c)?,
        u(op, g.h)?,
        u(op, g.w)?,
        u(op, g.kh)?,
        u(op, g.kw)?,
        u(op, g.stride.0)?,
        u(op, g.stride.1)?,
        u(op, g.pad.0)?,
        u(op, g.pad.1)?,
        u(op, g.ho)?,
        u(op, g.wo)?,
    ])
}

fn stream_words(s: &Stream) -> [u32; 3] {
    let [k0, k1] = s.key();
    [k0, k1, s.lane()]
}

/// Workgroups for `n` items of one workgroup each, spread over x and y.
fn groups_items(n: usize) -> [u32; 3] {
    if n <= 65_535 {
        [n as u32, 1, 1]
    } else {
        let y = n.div_ceil(65_535);
        [n.div_ceil(y) as u32, y as u32, 1]
    }
}

/// `Backend::xbar_read` on the GPU (see the module doc), or `None` for a read the kernel cannot
/// hold.
#[allow(clippy::too_many_arguments)]
pub(crate) fn read(
    ctx: &Arc<Ctx>,
    plan: &ReadPlan,
    x: &GpuTensor,
    kind: ReadKind,
    wmax: f32,
    bias: Option<&GpuTensor>,
    s: &Stream,
    t: u64,
) -> Result<Option<(GpuTensor, Tally)>> {
    let op = "xbar_read";
    let rows = plan.check_read(&x.shape, kind, bias.map(|b| b.shape.as_slice()))?;
    let blocks = plan.input_blocks();
    if !fits(plan, &blocks, rows) {
        return Ok(None);
    }
    let shape = plan.out_shape(kind, rows);
    let out = empty(ctx, &shape)?;
    if rows == 0 || plan.n_out() == 0 {
        return Ok(Some((out, Tally::default())));
    }
    let dp = device_plan(ctx, plan)?;
    let (n_in, n_out) = (plan.n_in(), plan.n_out());
    let acc = empty(ctx, &[rows, n_out])?;
    let tally = ctx.alloc_init(&[0u8; 24])?;
    let io = plan.io();
    let (dac, adc) = plan.converters();
    let tiles = plan.output_tiles();
    let rounds = io.last_r.max(1).trailing_zeros() as u64 + 1;
    let geom = geometry_words(kind)?;
    let kind_word = match kind {
        ReadKind::Dense => 0,
        ReadKind::ConvForward(_) => 1,
        ReadKind::ConvTransposed(_) => 2,
    };
    let nm = match io.nm {
        NoiseManagement::None => 0,
        NoiseManagement::AbsMax => 1,
        NoiseManagement::Constant => 2,
    };
    let sat = adc.map_or(f32::MAX, |a| {
        if a.bound.is_finite() {
            a.bound
        } else {
            f32::MAX
        }
    });
    let noise_parent = s.child("adc");
    for (b, &(lo, hi)) in blocks.iter().enumerate() {
        let (wb, s2b) = &dp.blocks[b];
        let nb = hi - lo;
        let mut p = vec![
            u(op, rows)?,
            u(op, n_in)?,
            u(op, n_out)?,
            u(op, lo)?,
            u(op, nb)?,
            u(op, tiles.len())?,
            u32::from(b == 0),
            kind_word,
        ];
        p.extend_from_slice(&geom);
        p.extend_from_slice(&[nm, f(io.nm_thres as f32)]);
        p.extend_from_slice(&converter_words(dac));
        p.extend_from_slice(&converter_words(adc));
        p.extend_from_slice(&[f(sat), u(op, io.last_r as usize)?, u32::from(s2b.is_some())]);
        debug_assert_eq!(p.len(), 37);
        for &(o0, o1) in tiles {
            p.extend_from_slice(&[u(op, o0)?, u(op, o1)?]);
        }
        for k in 0..rounds as u32 {
            p.extend_from_slice(&stream_words(&round_stream(s, "dac", b, k, t)));
            p.extend_from_slice(&stream_words(&round_stream(
                &noise_parent,
                "noise",
                b,
                k,
                t,
            )));
        }
        // Round 0: every vector through its DAC, then the block's sums (and the per-read noise
        // variances) as GEMMs, then noise, ADC and bound management per (vector, tile).
        let xq = empty(ctx, &[rows, nb])?;
        let alpha = empty(ctx, &[rows])?;
        let ss = empty(ctx, &[rows])?;
        launch(
            ctx,
            XBAR,
            "dac_rows",
            &p,
            &[
                Bind::R(1, x.buffer()),
                Bind::W(10, alpha.buffer()),
                Bind::W(11, ss.buffer()),
                Bind::W(12, xq.buffer()),
            ],
            groups_items(rows),
        )?;
        let y = gemm::matmul(ctx, &xq, wb, false, true)?;
        let v = match s2b {
            Some(s2b) => Some(gemm::matmul(
                ctx,
                &ew::mul(ctx, &xq, &xq)?,
                s2b,
                false,
                true,
            )?),
            None => None,
        };
        launch(
            ctx,
            XBAR,
            "adc_tiles",
            &p,
            &[
                Bind::R(1, x.buffer()),
                Bind::R(2, wb.buffer()),
                Bind::R(3, s2b.as_ref().unwrap_or(wb).buffer()),
                Bind::W(4, acc.buffer()),
                Bind::W(5, tally.buffer()),
                Bind::R(8, y.buffer()),
                Bind::R(9, v.as_ref().unwrap_or(&y).buffer()),
                Bind::W(10, alpha.buffer()),
                Bind::W(11, ss.buffer()),
            ],
            groups_items(rows * tiles.len()),
        )?;
    }
    let total = out.len();
    let mut p = vec![u(op, total)?, u(op, n_out)?, kind_word];
    p.extend_from_slice(&geom);
    p.extend_from_slice(&[f(wmax), u32::from(bias.is_some())]);
    // Without a bias the kernel's binding takes a one-value scratch (never read).
    let scratch = if bias.is_none() {
        Some(empty(ctx, &[1])?)
    } else {
        None
    };
    let bias_buf = bias
        .or(scratch.as_ref())
        .map_or(acc.buffer(), |b| b.buffer());
    launch(
        ctx,
        XBAR,
        "store",
        &p,
        &[
            Bind::W(4, acc.buffer()),
            Bind::R(6, bias_buf),
            Bind::W(7, out.buffer()),
        ],
        groups_1d(total),
    )?;
    let words: Vec<u32> = bytemuck::pod_collect_to_vec(&ctx.read(tally.buffer(), 24)?);
    let w64 = |i: usize| u64::from(words[i]) | (u64::from(words[i + 1]) << 32);
    let tally = Tally {
        reads: w64(0),
        rereads: w64(2),
        sumsq: w64(4),
    };
    if tally.reads < tally.rereads {
        return Err(Error::Other(format!("{op}: inconsistent tally {tally:?}")));
    }
    Ok(Some((out, tally)))
}
