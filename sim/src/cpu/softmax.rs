//! Softmax family over the last axis. Rows are independent and each is computed sequentially
//! (max, then Σ exp in f64), so results do not depend on the rayon thread count.
use rayon::prelude::*;

use super::elementwise::{PAR_MIN, flat, from_vec, same_shape};
use crate::Tensor;
use crate::error::{Error, Result};

/// Length of the last axis, or an error for a 0-d tensor.
fn last_axis(op: &'static str, x: &Tensor) -> Result<usize> {
    match x.shape().last() {
        Some(&k) => Ok(k),
        None => Err(Error::shape(
            op,
            "needs at least one axis (the softmax axis), got a 0-d tensor".to_string(),
        )),
    }
}

/// Apply `f(row_in, row_out)` to every row of length `k`.
fn rows(x: &[f32], k: usize, f: impl Fn(&[f32], &mut [f32]) + Sync + Send) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    if k == 0 {
        return out;
    }
    if x.len() >= PAR_MIN {
        out.par_chunks_mut(k)
            .zip(x.par_chunks(k))
            .for_each(|(o, i)| f(i, o));
    } else {
        out.chunks_mut(k)
            .zip(x.chunks(k))
            .for_each(|(o, i)| f(i, o));
    }
    out
}

/// (max, log Σ exp(x − max)) of one row. NaN anywhere gives a NaN result (propagated).
#[inline]
fn row_stats(r: &[f32]) -> (f32, f32) {
    let m = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut s = 0.0f64;
    for &v in r {
        s += ((v - m).exp()) as f64;
    }
    (m, (s.ln()) as f32)
}

/// Softmax over the last axis (max-subtracted: exp(x − max) / Σ exp(x − max)).
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    let k = last_axis("softmax", x)?;
    let out = rows(&flat(x), k, |r, o| {
        let (m, lse) = row_stats(r);
        for (o, &v) in o.iter_mut().zip(r) {
            *o = (v - m - lse).exp();
        }
    });
    Ok(from_vec(x.shape(), out))
}

/// Log-softmax over the last axis: x − max − log Σ exp(x − max).
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let k = last_axis("log_softmax", x)?;
    let out = rows(&flat(x), k, |r, o| {
        let (m, lse) = row_stats(r);
        for (o, &v) in o.iter_mut().zip(r) {
            *o = v - m - lse;
        }
    });
    Ok(from_vec(x.shape(), out))
}

/// Adjoint of log-softmax given its output y: gx = gy − exp(y) · Σ gy (per row).
pub fn log_softmax_grad(y: &Tensor, gy: &Tensor) -> Result<Tensor> {
    same_shape("log_softmax_grad", y, gy)?;
    let k = last_axis("log_softmax_grad", y)?;
    let yv = flat(y);
    let gv = flat(gy);
    // Rows of y and gy side by side: process row r from both slices.
    let row = |r: usize, o: &mut [f32]| {
        let ys = &yv[r * k..(r + 1) * k];
        let gs = &gv[r * k..(r + 1) * k];
        let mut s = 0.0f64;
        for &g in gs {
            s += g as f64;
        }
        let s = s as f32;
        for ((o, &y), &g) in o.iter_mut().zip(ys).zip(gs) {
            *o = g - y.exp() * s;
        }
    };
    let mut out = vec![0.0f32; yv.len()];
    if k > 0 {
        if yv.len() >= PAR_MIN {
            out.par_chunks_mut(k)
                .enumerate()
                .for_each(|(r, o)| row(r, o));
        } else {
            out.chunks_mut(k).enumerate().for_each(|(r, o)| row(r, o));
        }
    }
    Ok(from_vec(y.shape(), out))
}

/// Mean cross-entropy of logits[N, K] against integer labels (PyTorch `F.cross_entropy`, mean
/// reduction) and its gradient w.r.t. the logits: (softmax − onehot) / N.
pub fn cross_entropy(logits: &Tensor, labels: &[usize]) -> Result<(f32, Tensor)> {
    let (n, k) = match *logits.shape() {
        [n, k] => (n, k),
        _ => {
            return Err(Error::shape(
                "cross_entropy",
                format!("logits must be 2-D [N, K], got {:?}", logits.shape()),
            ));
        }
    };
    if labels.len() != n {
        return Err(Error::shape(
            "cross_entropy",
            format!(
                "{} labels for logits of shape {:?} (need {n})",
                labels.len(),
                logits.shape()
            ),
        ));
    }
    if n == 0 || k == 0 {
        return Err(Error::shape(
            "cross_entropy",
            format!("empty batch or no classes: logits {:?}", logits.shape()),
        ));
    }
    if let Some((i, &l)) = labels.iter().enumerate().find(|&(_, &l)| l >= k) {
        return Err(Error::param(
            "cross_entropy",
            format!("label {l} at position {i} out of range for {k} classes"),
        ));
    }
    let lv = flat(logits);
    let inv_n = 1.0 / n as f32;
    let mut grad = vec![0.0f32; n * k];
    let mut nll = vec![0.0f32; n];
    let body = |(r, (g, l)): (usize, (&mut [f32], &mut f32))| {
        let row = &lv[r * k..(r + 1) * k];
        let (m, lse) = row_stats(row);
        for (j, (g, &v)) in g.iter_mut().zip(row).enumerate() {
            let p = (v - m - lse).exp();
            *g = (p - if j == labels[r] { 1.0 } else { 0.0 }) * inv_n;
        }
        *l = -(row[labels[r]] - m - lse);
    };
    if n * k >= PAR_MIN {
        grad.par_chunks_mut(k)
            .zip(nll.par_iter_mut())
            .enumerate()
            .for_each(body);
    } else {
        grad.chunks_mut(k)
            .zip(nll.iter_mut())
            .enumerate()
            .for_each(body);
    }
    let total = nll.iter().fold(0.0f64, |acc, &l| acc + l as f64);
    Ok(((total / n as f64) as f32, from_vec(&[n, k], grad)))
}
