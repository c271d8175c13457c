//! The crossbar reads of analog substrates on the device (`kernels/xbar.wgsl`): the plan's
//! weights uploaded once (kept in the plan's backend slot); per input block, in block order, the
//! DAC of every input vector, the block's sums as GEMMs (the backend's tiled GEMM), and the noise,
//! ADC and bound management per (vector, tile); then one store in the read's layout with `wmax`
//! and the bias, and one read-back of the tally (six words). Reads the kernels cannot hold (an
//! empty block, a block slice or an output tile over 1,024 values, flat draw indices past 2³²)
//! run the CPU's host kernels on host copies. A read of fixed inputs through a noise-free DAC can
//! be prepared (`xbar_prepare`): its round 0 (DAC and block GEMMs) is kept on the device, and each
//! step runs only the noise, ADC, bound management and store.

use std::sync::Arc;

use sim::analog::{Converter, Prepared, ReadKind, ReadPlan, Tally, round_stream};
use sim::netlist::NoiseManagement;
use sim::{Error, Result, Stream};

use super::{elementwise as ew, empty, f, gemm, launch, u};
use crate::context::{Bind, Ctx, groups_1d, groups_items};
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

/// Whether the kernel can run this read of `rows` vectors (every input block and output tile).
fn fits(plan: &ReadPlan, rows: usize) -> bool {
    plan.input_blocks().len() > 0
        && plan
            .input_blocks()
            .all(|(lo, hi)| hi > lo && hi - lo <= XMAX)
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
    for (b, (lo, hi)) in plan.input_blocks().enumerate() {
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

/// One input block's round-0 results on the device: the noise-management scales, Σ x² of the
/// converted inputs, the pre-ADC sums and their per-read noise variances.
struct Round0 {
    alpha: GpuTensor,
    ss: GpuTensor,
    y: GpuTensor,
    v: Option<GpuTensor>,
}

/// A read of fixed inputs prepared on the device (see [`prepare`]): the input and every block's
/// round-0 results.
struct DevicePrepared {
    x: GpuTensor,
    blocks: Vec<Round0>,
    /// The context that made it (its buffers are that device's).
    owner: usize,
}

/// What a read's kernels take, the same for every block.
struct ReadSetup<'a> {
    ctx: &'a Arc<Ctx>,
    plan: &'a ReadPlan,
    dp: Arc<DevicePlan>,
    x: &'a GpuTensor,
    kind: ReadKind,
    rows: usize,
}

impl ReadSetup<'_> {
    /// The parameter words of block `b` at step `t` of stream `s` (their layout is `xbar.wgsl`'s
    /// `P`).
    fn params(&self, b: usize, s: &Stream, t: u64) -> Result<Vec<u32>> {
        let op = "xbar_read";
        let plan = self.plan;
        let (lo, hi) = plan.input_block(b);
        let io = plan.io();
        let (dac, adc) = plan.converters();
        let tiles = plan.output_tiles();
        let rounds = io.last_r.max(1).trailing_zeros() as u64 + 1;
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
        let mut p = vec![
            u(op, self.rows)?,
            u(op, plan.n_in())?,
            u(op, plan.n_out())?,
            u(op, lo)?,
            u(op, hi - lo)?,
            u(op, tiles.len())?,
            u32::from(b == 0),
            kind_word(self.kind),
        ];
        p.extend_from_slice(&geometry_words(self.kind)?);
        p.extend_from_slice(&[nm, f(io.nm_thres as f32)]);
        p.extend_from_slice(&converter_words(dac));
        p.extend_from_slice(&converter_words(adc));
        let s2 = self.dp.blocks[b].1.is_some();
        p.extend_from_slice(&[f(sat), u(op, io.last_r as usize)?, u32::from(s2)]);
        debug_assert_eq!(p.len(), 37);
        for &(o0, o1) in tiles {
            p.extend_from_slice(&[u(op, o0)?, u(op, o1)?]);
        }
        let noise_parent = s.child("adc");
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
        Ok(p)
    }

    /// Round 0 of block `b` (parameters `p`): every vector through its DAC, then the block's sums
    /// (and the per-read noise variances) as GEMMs.
    fn round0(&self, b: usize, p: &[u32]) -> Result<Round0> {
        let (lo, hi) = self.plan.input_block(b);
        let (wb, s2b) = &self.dp.blocks[b];
        let xq = empty(self.ctx, &[self.rows, hi - lo])?;
        let alpha = empty(self.ctx, &[self.rows])?;
        let ss = empty(self.ctx, &[self.rows])?;
        launch(
            self.ctx,
            XBAR,
            "dac_rows",
            p,
            &[
                Bind::R(1, self.x.buffer()),
                Bind::W(10, alpha.buffer()),
                Bind::W(11, ss.buffer()),
                Bind::W(12, xq.buffer()),
            ],
            groups_items(self.rows),
        )?;
        let y = gemm::matmul(self.ctx, &xq, wb, false, true)?;
        let v = match s2b {
            Some(s2b) => Some(gemm::matmul(
                self.ctx,
                &ew::mul(self.ctx, &xq, &xq)?,
                s2b,
                false,
                true,
            )?),
            None => None,
        };
        Ok(Round0 { alpha, ss, y, v })
    }

    /// Noise, ADC and bound management of block `b` (parameters `p`) per (vector, tile) from its
    /// round-0 results, into `acc` (written by block 0, added by later ones) and the tally.
    fn finish(
        &self,
        b: usize,
        p: &[u32],
        r: &Round0,
        acc: &GpuTensor,
        tally: &GpuTensor,
    ) -> Result<()> {
        let (wb, s2b) = &self.dp.blocks[b];
        launch(
            self.ctx,
            XBAR,
            "adc_tiles",
            p,
            &[
                Bind::R(1, self.x.buffer()),
                Bind::R(2, wb.buffer()),
                Bind::R(3, s2b.as_ref().unwrap_or(wb).buffer()),
                Bind::W(4, acc.buffer()),
                Bind::W(5, tally.buffer()),
                Bind::R(8, r.y.buffer()),
                Bind::R(9, r.v.as_ref().unwrap_or(&r.y).buffer()),
                Bind::W(10, r.alpha.buffer()),
                Bind::W(11, r.ss.buffer()),
            ],
            groups_items(self.rows * self.plan.output_tiles().len()),
        )
    }

    /// The read at step `t`: every block finished in block order (round 0 from `prepared`, else
    /// computed here), then the store with `wmax` and the bias, and the tally read back.
    fn read(
        &self,
        prepared: Option<&[Round0]>,
        wmax: f32,
        bias: Option<&GpuTensor>,
        s: &Stream,
        t: u64,
    ) -> Result<(GpuTensor, Tally)> {
        let op = "xbar_read";
        let (ctx, plan) = (self.ctx, self.plan);
        let out = empty(ctx, &plan.out_shape(self.kind, self.rows))?;
        if self.rows == 0 || plan.n_out() == 0 {
            return Ok((out, Tally::default()));
        }
        let acc = empty(ctx, &[self.rows, plan.n_out()])?;
        let tally = ctx.alloc_init(&[0u8; 24])?;
        let tally = GpuTensor {
            buf: Arc::new(tally),
            shape: vec![6],
        };
        for b in 0..plan.input_blocks().len() {
            let p = self.params(b, s, t)?;
            match prepared {
                Some(r) => self.finish(b, &p, &r[b], &acc, &tally)?,
                None => self.finish(b, &p, &self.round0(b, &p)?, &acc, &tally)?,
            }
        }
        let total = out.len();
        let kind_word = kind_word(self.kind);
        let mut p = vec![u(op, total)?, u(op, plan.n_out())?, kind_word];
        p.extend_from_slice(&geometry_words(self.kind)?);
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
        Ok((out, tally))
    }
}

/// The kind's word in the kernels' parameters.
fn kind_word(kind: ReadKind) -> u32 {
    match kind {
        ReadKind::Dense => 0,
        ReadKind::ConvForward(_) => 1,
        ReadKind::ConvTransposed(_) => 2,
    }
}

/// The setup of a read of `x`, or `None` for a read the kernel cannot hold.
fn setup<'a>(
    ctx: &'a Arc<Ctx>,
    plan: &'a ReadPlan,
    x: &'a GpuTensor,
    kind: ReadKind,
    bias: Option<&GpuTensor>,
) -> Result<Option<ReadSetup<'a>>> {
    let rows = plan.check_read(&x.shape, kind, bias.map(|b| b.shape.as_slice()))?;
    if !fits(plan, rows) {
        return Ok(None);
    }
    Ok(Some(ReadSetup {
        ctx,
        plan,
        dp: device_plan(ctx, plan)?,
        x,
        kind,
        rows,
    }))
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
    match setup(ctx, plan, x, kind, bias)? {
        Some(r) => r.read(None, wmax, bias, s, t).map(Some),
        None => Ok(None),
    }
}

/// `Backend::xbar_prepare` on the GPU: every block's round 0 of the fixed input `x`, kept on the
/// device with `x` (the re-reads of bound management read it again); `None` for a noisy DAC, a
/// transposed read, or a read the kernel cannot hold (read plainly, on the host, every step).
pub(crate) fn prepare(
    ctx: &Arc<Ctx>,
    plan: &ReadPlan,
    x: &GpuTensor,
    kind: ReadKind,
    s: &Stream,
) -> Result<Option<Prepared>> {
    if !plan.preparable(kind) {
        return Ok(None);
    }
    let Some(r) = setup(ctx, plan, x, kind, None)? else {
        return Ok(None);
    };
    // The DAC is noise-free, so round 0 does not depend on the step.
    let blocks = (0..plan.input_blocks().len())
        .map(|b| r.round0(b, &r.params(b, s, 0)?))
        .collect::<Result<Vec<_>>>()?;
    let d = DevicePrepared {
        x: x.clone(),
        blocks,
        owner: Arc::as_ptr(ctx) as usize,
    };
    Ok(Some(Prepared::from_backend(r.rows, kind, d)))
}

/// `Backend::xbar_read_prepared` on the GPU, of a read [`prepare`]d on this device.
#[allow(clippy::too_many_arguments)]
pub(crate) fn read_prepared(
    ctx: &Arc<Ctx>,
    plan: &ReadPlan,
    prepared: &Prepared,
    wmax: f32,
    bias: Option<&GpuTensor>,
    s: &Stream,
    t: u64,
) -> Result<(GpuTensor, Tally)> {
    let d = prepared
        .backend_data::<DevicePrepared>()
        .filter(|d| d.owner == Arc::as_ptr(ctx) as usize)
        .ok_or_else(|| {
            Error::Other("xbar_read_prepared: a read prepared by another backend or device".into())
        })?;
    let r = setup(ctx, plan, &d.x, prepared.kind(), bias)?.ok_or_else(|| {
        Error::Other("xbar_read_prepared: the plan no longer fits the device kernels".into())
    })?;
    if r.rows != prepared.vectors() || d.blocks.len() != plan.input_blocks().len() {
        return Err(Error::shape(
            "xbar_read_prepared",
            format!(
                "prepared for {} vectors and {} blocks; the plan reads {} and has {}",
                prepared.vectors(),
                d.blocks.len(),
                r.rows,
                plan.input_blocks().len()
            ),
        ));
    }
    r.read(Some(&d.blocks), wmax, bias, s, t)
}
