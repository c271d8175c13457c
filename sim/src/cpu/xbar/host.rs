//! A crossbar read on host tensors, the default of every backend's
//! [`Backend::xbar_read`](crate::Backend::xbar_read) (and of the prepared read): the shapes
//! checked, the input rows built by runs (im2row of a conv input, the C_out vectors of a conv
//! state) and the outputs stored while in cache (the NCHW output with its scale and bias, or the
//! col2im sum of the transposed read), so that no `[N·P, K]` array is built.

use rayon::prelude::*;

use super::{Rows, nchw_to_rows_part, rows_to_chw_part, zeros};
use crate::analog::{ConvGeom, Pre, Prepared, PreparedData, ReadKind, ReadPlan, Tally};
use crate::error::{Error, Result};
use crate::{Stream, Tensor};

/// The standard-layout data of a host tensor.
fn data(t: &Tensor) -> &[f32] {
    t.as_slice().expect("host tensors are in standard layout")
}

/// The bias as a slice of `n` values (zeros without one).
fn bias_or_zeros(bias: Option<&Tensor>, n: usize) -> std::borrow::Cow<'_, [f32]> {
    match bias {
        Some(b) => std::borrow::Cow::Borrowed(data(b)),
        None => std::borrow::Cow::Owned(vec![0.0; n]),
    }
}

/// `v·wmax + bias` of every row of a dense read's outputs (`v·wmax` without a bias).
fn dense_out(
    mut acc: Vec<f32>,
    m: usize,
    n_out: usize,
    wmax: f32,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    match bias {
        Some(b) => {
            let b = data(b);
            for row in acc.chunks_mut(n_out.max(1)) {
                row.iter_mut().zip(b).for_each(|(v, b)| *v = *v * wmax + b);
            }
        }
        None => acc.iter_mut().for_each(|v| *v *= wmax),
    }
    crate::tensor(&[m, n_out], acc)
}

/// Where a conv forward read's input rows come from.
enum Src<'a> {
    /// Rows `[m, n_in]` and their deterministic half, prepared.
    Prepared(&'a [f32], &'a Pre),
    /// The NCHW input, unrolled by runs.
    Input(&'a [f32]),
}

/// The conv forward read of `g` into the NCHW output (`acc·wmax + bias`), from prepared rows or
/// from the input's im2row by runs.
fn conv_forward(
    plan: &ReadPlan,
    g: &ConvGeom,
    src: Src<'_>,
    wmax: f32,
    bias: Option<&Tensor>,
    s: &Stream,
    t: u64,
) -> Result<(Tensor, Tally)> {
    let b = bias_or_zeros(bias, plan.n_out);
    let sink = |i0: usize, acc: &[f32], og: &mut [f32]| rows_to_chw_part(acc, i0, og, wmax, &b);
    let mut z = zeros(g.n * plan.n_out * g.p());
    let tally = match src {
        Src::Prepared(rows, pre) => {
            plan.read_groups(Some(pre), Rows::All(rows), g.n, g.p(), s, t, &mut z, &sink)
        }
        Src::Input(xv) => {
            let fill = |r0: usize, buf: &mut [f32]| g.im2row_part(xv, r0, buf);
            plan.read_groups(None, Rows::Fill(&fill), g.n, g.p(), s, t, &mut z, &sink)
        }
    };
    Ok((crate::tensor(&[g.n, plan.n_out, g.ho, g.wo], z)?, tally))
}

/// [`Backend::xbar_read`](crate::Backend::xbar_read) on host tensors.
pub(crate) fn read(
    plan: &ReadPlan,
    x: &Tensor,
    kind: ReadKind,
    wmax: f32,
    bias: Option<&Tensor>,
    s: &Stream,
    t: u64,
) -> Result<(Tensor, Tally)> {
    let m = plan.check_read(x.shape(), kind, bias.map(|b| b.shape()))?;
    let xv = data(x);
    match kind {
        ReadKind::Dense => {
            let (acc, tally) = plan.read(xv, m, s, t);
            Ok((dense_out(acc, m, plan.n_out, wmax, bias)?, tally))
        }
        ReadKind::ConvForward(g) => conv_forward(plan, &g, Src::Input(xv), wmax, bias, s, t),
        ReadKind::ConvTransposed(g) => {
            // Per sample, runs of positions: their C_out vectors gathered from the NCHW state,
            // read, and their patch vectors summed onto the sample's grid while in cache.
            let (c, p) = (plan.n_in, g.p());
            let fill = |r0: usize, buf: &mut [f32]| nchw_to_rows_part(xv, c, p, r0, buf);
            let sink = |i0: usize, acc: &[f32], og: &mut [f32]| g.row2im_part(i0, acc, og);
            let mut gx = zeros(g.n * g.c * g.h * g.w);
            let tally = plan.read_groups(None, Rows::Fill(&fill), g.n, p, s, t, &mut gx, &sink);
            if wmax != 1.0 {
                gx.par_iter_mut().for_each(|v| *v *= wmax);
            }
            Ok((crate::tensor(&[g.n, g.c, g.h, g.w], gx)?, tally))
        }
    }
}

/// [`Backend::xbar_prepare`](crate::Backend::xbar_prepare) on a host tensor: `None` when the
/// plan's DAC is noisy or the read is transposed.
pub(crate) fn prepare(
    plan: &ReadPlan,
    x: &Tensor,
    kind: ReadKind,
    s: &Stream,
) -> Result<Option<Prepared>> {
    if !plan.preparable(kind) {
        return Ok(None);
    }
    let m = plan.check_read(x.shape(), kind, None)?;
    let rows = match kind {
        ReadKind::ConvForward(g) => g.im2row(data(x)),
        _ => data(x).to_vec(),
    };
    let pre = plan.pre(&rows, m, s, 0);
    Ok(Some(Prepared {
        m,
        kind,
        data: PreparedData::Host { rows, pre },
    }))
}

/// [`Backend::xbar_read_prepared`](crate::Backend::xbar_read_prepared) with host outputs.
pub(crate) fn read_prepared(
    plan: &ReadPlan,
    p: &Prepared,
    wmax: f32,
    bias: Option<&Tensor>,
    s: &Stream,
    t: u64,
) -> Result<(Tensor, Tally)> {
    if let Some(b) = bias
        && b.len() != plan.n_out
    {
        return Err(Error::shape(
            "xbar_read_prepared",
            format!("bias {:?} for {} outputs", b.shape(), plan.n_out),
        ));
    }
    let PreparedData::Host { rows, pre } = &p.data else {
        return Err(Error::Other(
            "xbar_read_prepared: a read prepared by another backend".into(),
        ));
    };
    if rows.len() != p.m * plan.n_in {
        return Err(Error::shape(
            "xbar_read_prepared",
            format!(
                "{} prepared values for {} rows of {} inputs",
                rows.len(),
                p.m,
                plan.n_in
            ),
        ));
    }
    match p.kind {
        ReadKind::ConvForward(g) => {
            conv_forward(plan, &g, Src::Prepared(rows, pre), wmax, bias, s, t)
        }
        _ => {
            let (acc, tally) = plan.finish(pre, rows, p.m, s, t);
            Ok((dense_out(acc, p.m, plan.n_out, wmax, bias)?, tally))
        }
    }
}
