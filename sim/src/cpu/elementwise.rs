//! Element maps, arithmetic and reductions.
//!
//! Elementwise ops are split into fixed-size chunks processed in parallel (each element's value does
//! not depend on the split). Reductions accumulate in f64 inside fixed-size chunks and combine the
//! chunk partials sequentially in chunk order, so results are bit-for-bit identical for every rayon
//! thread count.
use std::borrow::Cow;

use rayon::prelude::*;

use crate::Tensor;
use crate::error::{Error, Result};
use crate::ops::Act;

/// Elements per parallel chunk (fixed, so chunk boundaries never depend on the thread count).
pub(crate) const CHUNK: usize = 1 << 14;
/// Below this many elements work runs on the calling thread (same arithmetic, no rayon overhead).
pub(crate) const PAR_MIN: usize = 1 << 15;

/// The elements of `t` in row-major order (borrowed when `t` is in standard layout).
pub(crate) fn flat(t: &Tensor) -> Cow<'_, [f32]> {
    match t.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(t.iter().copied().collect()),
    }
}

/// Build a tensor of `shape` from row-major data whose length is known to match.
pub(crate) fn from_vec(shape: &[usize], v: Vec<f32>) -> Tensor {
    Tensor::from_shape_vec(ndarray::IxDyn(shape), v).expect("element count matches shape")
}

/// Error unless `a` and `b` have the same shape.
pub(crate) fn same_shape(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.shape() != b.shape() {
        return Err(Error::shape(
            op,
            format!("operands differ: {:?} vs {:?}", a.shape(), b.shape()),
        ));
    }
    Ok(())
}

/// out[i] = f(i-th element of xs) computed chunkwise (in parallel for large inputs).
fn unary(x: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    let body = |(o, i): (&mut [f32], &[f32])| {
        for (o, &i) in o.iter_mut().zip(i) {
            *o = f(i);
        }
    };
    if x.len() >= PAR_MIN {
        out.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(body);
    } else {
        out.chunks_mut(CHUNK).zip(x.chunks(CHUNK)).for_each(body);
    }
    out
}

/// out[i] = f(a[i], b[i]) chunkwise.
fn binary(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    debug_assert_eq!(a.len(), b.len());
    let mut out = vec![0.0f32; a.len()];
    let body = |((o, a), b): ((&mut [f32], &[f32]), &[f32])| {
        for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
            *o = f(a, b);
        }
    };
    if a.len() >= PAR_MIN {
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK))
            .zip(b.par_chunks(CHUNK))
            .for_each(body);
    } else {
        out.chunks_mut(CHUNK)
            .zip(a.chunks(CHUNK))
            .zip(b.chunks(CHUNK))
            .for_each(body);
    }
    out
}

/// Σ_i f(i) over `0..n`, accumulated in f64 within fixed chunks of `CHUNK` indices, the chunk
/// partials then added sequentially in chunk order (thread-count independent).
pub(crate) fn chunked_sum(n: usize, f: impl Fn(usize) -> f64 + Sync) -> f64 {
    let chunks = n.div_ceil(CHUNK);
    let part = |c: usize| {
        let mut s = 0.0f64;
        for i in c * CHUNK..((c + 1) * CHUNK).min(n) {
            s += f(i);
        }
        s
    };
    let partials: Vec<f64> = if n >= PAR_MIN {
        (0..chunks).into_par_iter().map(part).collect()
    } else {
        (0..chunks).map(part).collect()
    };
    partials.into_iter().fold(0.0f64, |acc, p| acc + p)
}

/// act(x) elementwise.
pub fn map(x: &Tensor, act: Act) -> Result<Tensor> {
    act.check("map")?;
    Ok(from_vec(x.shape(), unary(&flat(x), |v| act.f(v))))
}

/// act(a + b) in one pass (`Backend::add_map`): the f32 sum, then the map, as `add` then `map`,
/// with their errors.
pub fn add_map(a: &Tensor, b: &Tensor, act: Act) -> Result<Tensor> {
    same_shape("add", a, b)?;
    act.check("map")?;
    Ok(from_vec(
        a.shape(),
        binary(&flat(a), &flat(b), |x, y| act.f(x + y)),
    ))
}

/// gy ⊙ act'(x).
pub fn map_grad(x: &Tensor, gy: &Tensor, act: Act) -> Result<Tensor> {
    same_shape("map_grad", x, gy)?;
    act.check("map_grad")?;
    Ok(from_vec(
        x.shape(),
        binary(&flat(x), &flat(gy), |x, g| g * act.df(x)),
    ))
}

/// a + b (same shape).
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    same_shape("add", a, b)?;
    Ok(from_vec(
        a.shape(),
        binary(&flat(a), &flat(b), |a, b| a + b),
    ))
}

/// a − b (same shape).
pub fn sub(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    same_shape("sub", a, b)?;
    Ok(from_vec(
        a.shape(),
        binary(&flat(a), &flat(b), |a, b| a - b),
    ))
}

/// a ⊙ b (same shape).
pub fn mul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    same_shape("mul", a, b)?;
    Ok(from_vec(
        a.shape(),
        binary(&flat(a), &flat(b), |a, b| a * b),
    ))
}

/// alpha·x.
pub fn scale(x: &Tensor, alpha: f32) -> Result<Tensor> {
    Ok(from_vec(x.shape(), unary(&flat(x), |v| alpha * v)))
}

/// alpha·x + y (same shape).
pub fn axpy(alpha: f32, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    same_shape("axpy", x, y)?;
    Ok(from_vec(
        x.shape(),
        binary(&flat(x), &flat(y), |x, y| alpha * x + y),
    ))
}

/// Check that `axis` is an axis of `x` and return (outer, len, inner) sizes around it.
fn split_at_axis(op: &'static str, x: &Tensor, axis: usize) -> Result<(usize, usize, usize)> {
    if axis >= x.ndim() {
        return Err(Error::param(
            op,
            format!("axis {axis} out of range for shape {:?}", x.shape()),
        ));
    }
    let s = x.shape();
    Ok((
        s[..axis].iter().product(),
        s[axis],
        s[axis + 1..].iter().product(),
    ))
}

/// x + b broadcast along `axis` (b is 1-D of length `x.shape[axis]`).
pub fn add_along(x: &Tensor, b: &Tensor, axis: usize) -> Result<Tensor> {
    let (_, len, inner) = split_at_axis("add_along", x, axis)?;
    if b.ndim() != 1 || b.len() != len {
        return Err(Error::shape(
            "add_along",
            format!(
                "bias of shape {:?} does not fit axis {axis} of {:?} (expected [{len}])",
                b.shape(),
                x.shape()
            ),
        ));
    }
    let bv = flat(b);
    let xv = flat(x);
    let bv: &[f32] = &bv;
    let n = xv.len();
    let mut out = vec![0.0f32; n];
    // Within a chunk, walk the (bias index, inner index) pair incrementally instead of dividing
    // per element. (A non-empty x has inner ≥ 1 and len ≥ 1.)
    let body = |(c, o): (usize, &mut [f32])| {
        let start = c * CHUNK;
        let (mut bi, mut ii) = ((start / inner) % len, start % inner);
        for (o, &x) in o.iter_mut().zip(&xv[start..]) {
            *o = x + bv[bi];
            ii += 1;
            if ii == inner {
                ii = 0;
                bi += 1;
                if bi == len {
                    bi = 0;
                }
            }
        }
    };
    if n >= PAR_MIN {
        out.par_chunks_mut(CHUNK).enumerate().for_each(body);
    } else {
        out.chunks_mut(CHUNK).enumerate().for_each(body);
    }
    Ok(from_vec(x.shape(), out))
}

/// Σ x (f64 accumulation in fixed chunks; thread-count independent).
pub fn sum_all(x: &Tensor) -> Result<f32> {
    let v = flat(x);
    Ok(chunked_sum(v.len(), |i| v[i] as f64) as f32)
}

/// Σ a ⊙ b over all elements (same shape).
pub fn dot(a: &Tensor, b: &Tensor) -> Result<f32> {
    same_shape("dot", a, b)?;
    let (a, b) = (flat(a), flat(b));
    Ok(chunked_sum(a.len(), |i| a[i] as f64 * b[i] as f64) as f32)
}

/// Per row along axis 0: max |a − b| over the row (NaN when a difference is NaN); the
/// `Backend::row_max_abs_diff` of the CPU, one pass without temporaries.
pub fn row_max_abs_diff(a: &Tensor, b: &Tensor) -> Result<Vec<f32>> {
    same_shape("row_max_abs_diff", a, b)?;
    let Some(&n) = a.shape().first() else {
        return Err(Error::shape(
            "row_max_abs_diff",
            "operands need a batch axis (rank ≥ 1)",
        ));
    };
    let (a, b) = (flat(a), flat(b));
    let rest = a.len().checked_div(n).unwrap_or(0);
    let row = |i: usize| {
        let r = i * rest..(i + 1) * rest;
        // Comparisons instead of f32::max (which vectorizes poorly); a NaN is flagged apart.
        let (mut m, mut nan) = (0f32, false);
        for (&x, &y) in a[r.clone()].iter().zip(&b[r]) {
            let d = (x - y).abs();
            nan |= d.is_nan();
            m = if d > m { d } else { m };
        }
        if nan { f32::NAN } else { m }
    };
    Ok(if n * rest >= 1 << 16 {
        (0..n).into_par_iter().map(row).collect()
    } else {
        (0..n).map(row).collect()
    })
}

/// Sum over every axis except `axis`: a vector of length `x.shape[axis]`. Each entry is accumulated
/// in f64 in row-major order of the remaining axes (one entry per task, so the order is fixed).
pub fn sum_except(x: &Tensor, axis: usize) -> Result<Tensor> {
    let (outer, len, inner) = split_at_axis("sum_except", x, axis)?;
    let v = flat(x);
    let entry = |c: usize| {
        let mut s = 0.0f64;
        for o in 0..outer {
            let base = (o * len + c) * inner;
            for &e in &v[base..base + inner] {
                s += e as f64;
            }
        }
        s as f32
    };
    let out: Vec<f32> = if v.len() >= PAR_MIN {
        (0..len).into_par_iter().map(entry).collect()
    } else {
        (0..len).map(entry).collect()
    };
    Ok(from_vec(&[len], out))
}
