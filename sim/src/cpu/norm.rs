//! Layer norm (last axis) and batch norm (per channel, axis 1) with their adjoints.
//!
//! Statistics are accumulated in f64 in a fixed order: per row (layer norm) or per channel (batch
//! norm) sequentially, and the parameter gradients of layer norm over fixed blocks of rows combined
//! in block order. Results therefore do not depend on the rayon thread count.
use rayon::prelude::*;

use super::elementwise::{CHUNK, PAR_MIN, flat, from_vec};
use crate::Tensor;
use crate::error::{Error, Result};

fn check_eps(op: &'static str, eps: f32) -> Result<()> {
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::param(
            op,
            format!("eps must be finite and ≥ 0, got {eps}"),
        ));
    }
    Ok(())
}

fn check_vec(op: &'static str, what: &str, t: &Tensor, len: usize, x: &Tensor) -> Result<()> {
    if t.ndim() != 1 || t.len() != len {
        return Err(Error::shape(
            op,
            format!(
                "{what} of shape {:?} does not fit input {:?} (expected [{len}])",
                t.shape(),
                x.shape()
            ),
        ));
    }
    Ok(())
}

/// (rows, D) of a layer-norm input, D = last axis > 0.
fn ln_dims(op: &'static str, x: &Tensor) -> Result<(usize, usize)> {
    match x.shape().last() {
        Some(&d) if d > 0 => Ok((x.len() / d, d)),
        _ => Err(Error::shape(
            op,
            format!(
                "input needs a non-empty last axis to normalize, got {:?}",
                x.shape()
            ),
        )),
    }
}

/// Run `f(row, out_row)` over rows of length `d` of `out` (in parallel when large).
fn for_rows(out: &mut [f32], d: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    if d == 0 {
        return;
    }
    if out.len() >= PAR_MIN {
        out.par_chunks_mut(d).enumerate().for_each(|(r, o)| f(r, o));
    } else {
        out.chunks_mut(d).enumerate().for_each(|(r, o)| f(r, o));
    }
}

/// Layer norm over the last axis: y = (x − mean) · rstd · gamma + beta with the biased variance,
/// rstd = 1 / sqrt(var + eps) (PyTorch `F.layer_norm`). Returns (y, mean, rstd), the statistics with
/// the leading shape of x.
pub fn layer_norm(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (rows, d) = ln_dims("layer_norm", x)?;
    check_vec("layer_norm", "gamma", gamma, d, x)?;
    check_vec("layer_norm", "beta", beta, d, x)?;
    check_eps("layer_norm", eps)?;
    let (xv, gv, bv) = (flat(x), flat(gamma), flat(beta));
    let mut stats = vec![(0.0f32, 0.0f32); rows];
    let stat = |r: usize| {
        let row = &xv[r * d..(r + 1) * d];
        let mut s = 0.0f64;
        for &v in row {
            s += v as f64;
        }
        let mean = s / d as f64;
        let mut q = 0.0f64;
        for &v in row {
            let c = v as f64 - mean;
            q += c * c;
        }
        let var = q / d as f64;
        (mean as f32, (1.0 / (var + eps as f64).sqrt()) as f32)
    };
    if x.len() >= PAR_MIN {
        stats
            .par_iter_mut()
            .enumerate()
            .for_each(|(r, s)| *s = stat(r));
    } else {
        stats.iter_mut().enumerate().for_each(|(r, s)| *s = stat(r));
    }
    let mut y = vec![0.0f32; x.len()];
    for_rows(&mut y, d, |r, o| {
        let (m, rs) = stats[r];
        let row = &xv[r * d..(r + 1) * d];
        for j in 0..d {
            o[j] = (row[j] - m) * rs * gv[j] + bv[j];
        }
    });
    let lead = &x.shape()[..x.ndim() - 1];
    Ok((
        from_vec(x.shape(), y),
        from_vec(lead, stats.iter().map(|s| s.0).collect()),
        from_vec(lead, stats.iter().map(|s| s.1).collect()),
    ))
}

/// Layer norm adjoint: (gx, ggamma, gbeta) from the saved (mean, rstd).
/// gx = rstd · (g − mean(g) − x̂ · mean(g ⊙ x̂)) with g = gy ⊙ gamma, x̂ = (x − mean) · rstd;
/// ggamma = Σ_rows gy ⊙ x̂; gbeta = Σ_rows gy.
pub fn layer_norm_grad(
    x: &Tensor,
    gamma: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    gy: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (rows, d) = ln_dims("layer_norm_grad", x)?;
    check_vec("layer_norm_grad", "gamma", gamma, d, x)?;
    if gy.shape() != x.shape() {
        return Err(Error::shape(
            "layer_norm_grad",
            format!(
                "gradient {:?} does not match input {:?}",
                gy.shape(),
                x.shape()
            ),
        ));
    }
    let lead = &x.shape()[..x.ndim() - 1];
    for (what, t) in [("mean", mean), ("rstd", rstd)] {
        if t.shape() != lead {
            return Err(Error::shape(
                "layer_norm_grad",
                format!(
                    "{what} of shape {:?} does not match the leading shape {lead:?} of input {:?}",
                    t.shape(),
                    x.shape()
                ),
            ));
        }
    }
    let (xv, gav, mv, rv, gyv) = (flat(x), flat(gamma), flat(mean), flat(rstd), flat(gy));
    let mut gx = vec![0.0f32; x.len()];
    for_rows(&mut gx, d, |r, o| {
        let (m, rs) = (mv[r], rv[r]);
        let xr = &xv[r * d..(r + 1) * d];
        let gr = &gyv[r * d..(r + 1) * d];
        let (mut a, mut b) = (0.0f64, 0.0f64);
        for j in 0..d {
            let g = (gr[j] * gav[j]) as f64;
            let xh = ((xr[j] - m) * rs) as f64;
            a += g;
            b += g * xh;
        }
        let a = (a / d as f64) as f32;
        let b = (b / d as f64) as f32;
        for j in 0..d {
            let xh = (xr[j] - m) * rs;
            o[j] = rs * (gr[j] * gav[j] - a - xh * b);
        }
    });
    // Parameter gradients: partial sums over fixed blocks of rows, combined in block order.
    let block = (CHUNK / d).max(1);
    let n_blocks = rows.div_ceil(block);
    let part = |bi: usize| {
        let mut acc = vec![0.0f64; 2 * d];
        for r in bi * block..((bi + 1) * block).min(rows) {
            let (m, rs) = (mv[r], rv[r]);
            for j in 0..d {
                let g = gyv[r * d + j];
                let xh = (xv[r * d + j] - m) * rs;
                acc[j] += (g * xh) as f64;
                acc[d + j] += g as f64;
            }
        }
        acc
    };
    let parts: Vec<Vec<f64>> = if x.len() >= PAR_MIN {
        (0..n_blocks).into_par_iter().map(part).collect()
    } else {
        (0..n_blocks).map(part).collect()
    };
    let mut tot = vec![0.0f64; 2 * d];
    for p in parts {
        for (t, v) in tot.iter_mut().zip(p) {
            *t += v;
        }
    }
    Ok((
        from_vec(x.shape(), gx),
        from_vec(&[d], tot[..d].iter().map(|&v| v as f32).collect()),
        from_vec(&[d], tot[d..].iter().map(|&v| v as f32).collect()),
    ))
}

/// (N, C, inner) of a batch-norm input [N, C, ...] (NCHW, or NC).
fn bn_dims(op: &'static str, x: &Tensor) -> Result<(usize, usize, usize)> {
    if x.ndim() < 2 {
        return Err(Error::shape(
            op,
            format!("input must be [N, C] or [N, C, H, W], got {:?}", x.shape()),
        ));
    }
    let s = x.shape();
    Ok((s[0], s[1], s[2..].iter().product()))
}

/// `f(ch)` for every channel (in parallel when `big`), collected in channel order.
fn per_channel<T: Send>(c: usize, big: bool, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    if big {
        (0..c).into_par_iter().map(f).collect()
    } else {
        (0..c).map(f).collect()
    }
}

/// Visit the flat indices of channel `ch` of an [N, C, inner] tensor in (n, inner) order.
#[inline]
fn channel_elems((n, c, inner): (usize, usize, usize), ch: usize, mut f: impl FnMut(usize)) {
    for b in 0..n {
        let base = (b * c + ch) * inner;
        for i in base..base + inner {
            f(i);
        }
    }
}

/// Apply `f(channel, plane_in_offset, out_plane)` to every (n, c) plane of length `inner`.
fn per_nc_plane(
    out: &mut [f32],
    c: usize,
    inner: usize,
    f: impl Fn(usize, usize, &mut [f32]) + Sync + Send,
) {
    if inner == 0 || c == 0 {
        return;
    }
    let body = |(pl, o): (usize, &mut [f32])| f(pl % c, pl * inner, o);
    if out.len() >= PAR_MIN {
        out.par_chunks_mut(inner).enumerate().for_each(body);
    } else {
        out.chunks_mut(inner).enumerate().for_each(body);
    }
}

/// Batch norm with batch statistics over (N, H, W) per channel (PyTorch `F.batch_norm` in training
/// mode): y = (x − mean) / sqrt(var + eps) · gamma + beta, with the biased batch variance. Returns
/// (y, mean, var). Like PyTorch, refuses a channel with a single value.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
) -> Result<(Tensor, Tensor, Tensor)> {
    let dims @ (n, c, inner) = bn_dims("batch_norm_train", x)?;
    check_vec("batch_norm_train", "gamma", gamma, c, x)?;
    check_vec("batch_norm_train", "beta", beta, c, x)?;
    check_eps("batch_norm_train", eps)?;
    let m = n * inner;
    if m < 2 {
        return Err(Error::shape(
            "batch_norm_train",
            format!(
                "expected more than 1 value per channel in training, got input {:?}",
                x.shape()
            ),
        ));
    }
    let xv = flat(x);
    let big = x.len() >= PAR_MIN;
    let stats: Vec<(f32, f32)> = per_channel(c, big, |ch| {
        let mut s = 0.0f64;
        channel_elems(dims, ch, |i| s += xv[i] as f64);
        let mean = s / m as f64;
        let mut q = 0.0f64;
        channel_elems(dims, ch, |i| {
            let d = xv[i] as f64 - mean;
            q += d * d;
        });
        (mean as f32, (q / m as f64) as f32)
    });
    let mean: Vec<f32> = stats.iter().map(|s| s.0).collect();
    let var: Vec<f32> = stats.iter().map(|s| s.1).collect();
    let y = bn_apply(
        &xv,
        x.shape(),
        c,
        inner,
        &flat(gamma),
        &flat(beta),
        &mean,
        &var,
        eps,
    );
    Ok((y, from_vec(&[c], mean), from_vec(&[c], var)))
}

#[allow(clippy::too_many_arguments)]
fn bn_apply(
    xv: &[f32],
    shape: &[usize],
    c: usize,
    inner: usize,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
) -> Tensor {
    let rstd: Vec<f32> = var
        .iter()
        .map(|&v| (1.0 / (v as f64 + eps as f64).sqrt()) as f32)
        .collect();
    let mut y = vec![0.0f32; xv.len()];
    per_nc_plane(&mut y, c, inner, |ch, off, o| {
        let (m, rs, g, b) = (mean[ch], rstd[ch], gamma[ch], beta[ch]);
        for (o, &v) in o.iter_mut().zip(&xv[off..off + inner]) {
            *o = (v - m) * rs * g + b;
        }
    });
    from_vec(shape, y)
}

/// Batch norm with given (running) statistics: y = (x − mean) / sqrt(var + eps) · gamma + beta.
pub fn batch_norm_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    eps: f32,
) -> Result<Tensor> {
    let (_, c, inner) = bn_dims("batch_norm_eval", x)?;
    check_vec("batch_norm_eval", "gamma", gamma, c, x)?;
    check_vec("batch_norm_eval", "beta", beta, c, x)?;
    check_vec("batch_norm_eval", "mean", mean, c, x)?;
    check_vec("batch_norm_eval", "var", var, c, x)?;
    check_eps("batch_norm_eval", eps)?;
    if let Some(v) = var.iter().find(|&&v| v.is_nan() || v < 0.0) {
        return Err(Error::param(
            "batch_norm_eval",
            format!("variance must be ≥ 0, got {v}"),
        ));
    }
    Ok(bn_apply(
        &flat(x),
        x.shape(),
        c,
        inner,
        &flat(gamma),
        &flat(beta),
        &flat(mean),
        &flat(var),
        eps,
    ))
}

/// Adjoint of `batch_norm_train` through the batch statistics: with M = N·H·W, x̂ = (x − mean)·rstd,
/// gbeta = Σ gy, ggamma = Σ gy ⊙ x̂ (per channel) and
/// gx = gamma · rstd · (gy − gbeta / M − x̂ · ggamma / M).
pub fn batch_norm_grad(
    x: &Tensor,
    gamma: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    eps: f32,
    gy: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let dims @ (n, c, inner) = bn_dims("batch_norm_grad", x)?;
    check_vec("batch_norm_grad", "gamma", gamma, c, x)?;
    check_vec("batch_norm_grad", "mean", mean, c, x)?;
    check_vec("batch_norm_grad", "var", var, c, x)?;
    check_eps("batch_norm_grad", eps)?;
    if gy.shape() != x.shape() {
        return Err(Error::shape(
            "batch_norm_grad",
            format!(
                "gradient {:?} does not match input {:?}",
                gy.shape(),
                x.shape()
            ),
        ));
    }
    let m = n * inner;
    if m == 0 {
        return Err(Error::shape(
            "batch_norm_grad",
            format!("empty input {:?}", x.shape()),
        ));
    }
    let (xv, gav, mv, vv, gyv) = (flat(x), flat(gamma), flat(mean), flat(var), flat(gy));
    let rstd: Vec<f32> = vv
        .iter()
        .map(|&v| (1.0 / (v as f64 + eps as f64).sqrt()) as f32)
        .collect();
    let sums: Vec<(f64, f64)> = per_channel(c, x.len() >= PAR_MIN, |ch| {
        let (mut sb, mut sg) = (0.0f64, 0.0f64);
        channel_elems(dims, ch, |i| {
            let g = gyv[i] as f64;
            sb += g;
            sg += g * ((xv[i] - mv[ch]) * rstd[ch]) as f64;
        });
        (sb, sg)
    });
    let mut gx = vec![0.0f32; x.len()];
    per_nc_plane(&mut gx, c, inner, |ch, off, o| {
        let rs = rstd[ch];
        let k = gav[ch] * rs;
        let b = (sums[ch].0 / m as f64) as f32;
        let g = (sums[ch].1 / m as f64) as f32;
        for ((o, &xi), &gi) in o
            .iter_mut()
            .zip(&xv[off..off + inner])
            .zip(&gyv[off..off + inner])
        {
            let xh = (xi - mv[ch]) * rs;
            *o = k * (gi - b - xh * g);
        }
    });
    Ok((
        from_vec(x.shape(), gx),
        from_vec(&[c], sums.iter().map(|s| s.1 as f32).collect()),
        from_vec(&[c], sums.iter().map(|s| s.0 as f32).collect()),
    ))
}
