//! linear (x·wᵀ + b over any leading axes), its adjoints, and batched matmul with transpose flags.
//! All products go through [`sgemm`](super::gemm::sgemm), whose results do not depend on the
//! thread count.

use rayon::prelude::*;

use super::gemm::{Gemm, Par, sgemm_par};
use crate::Tensor;
use crate::error::{Error, Result};

fn contiguous(t: &Tensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(t.iter().copied().collect()),
    }
}

fn to_tensor(shape: &[usize], v: Vec<f32>) -> Tensor {
    Tensor::from_shape_vec(ndarray::IxDyn(shape), v).expect("sizes agree")
}

/// `[out, in]` of a rank-2 weight.
fn weight_dims(op: &'static str, w: &Tensor) -> Result<(usize, usize)> {
    match w.shape() {
        &[o, i] => Ok((o, i)),
        s => Err(Error::shape(
            op,
            format!("weight must have rank 2 [out, in], got shape {s:?}"),
        )),
    }
}

/// Split `[..., last]` into (rows = product of the leading axes, last).
fn rows_last(op: &'static str, what: &str, t: &Tensor) -> Result<(usize, usize)> {
    match t.shape().split_last() {
        Some((&last, lead)) => Ok((lead.iter().product(), last)),
        None => Err(Error::shape(
            op,
            format!("{what} must have rank ≥ 1, got a scalar"),
        )),
    }
}

/// y[..., out] = x[..., in]·wᵀ + b.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    const OP: &str = "linear";
    let (out, inp) = weight_dims(OP, w)?;
    let (rows, xin) = rows_last(OP, "input x [..., in]", x)?;
    if xin != inp {
        return Err(Error::shape(
            OP,
            format!(
                "input x {:?} has last axis {xin} but weight {:?} expects in = {inp}",
                x.shape(),
                w.shape()
            ),
        ));
    }
    if let Some(b) = b
        && b.shape() != [out]
    {
        return Err(Error::shape(
            OP,
            format!("bias must have shape [{out}], got {:?}", b.shape()),
        ));
    }
    let mut y = vec![0.0f32; rows * out];
    let g = Gemm {
        m: rows,
        n: out,
        k: inp,
        trans_a: false,
        trans_b: true,
    };
    sgemm_par(
        g,
        1.0,
        &contiguous(x),
        &contiguous(w),
        0.0,
        &mut y,
        Par::Pool,
    )?;
    if let Some(b) = b
        && out > 0
    {
        let bv = contiguous(b);
        y.par_chunks_mut(out).for_each(|row| {
            row.iter_mut().zip(bv.iter()).for_each(|(v, bo)| *v += bo);
        });
    }
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("rank ≥ 1") = out;
    Ok(to_tensor(&shape, y))
}

/// gx[..., in] = gy[..., out]·w.
pub fn linear_input_grad(gy: &Tensor, w: &Tensor) -> Result<Tensor> {
    const OP: &str = "linear_input_grad";
    let (out, inp) = weight_dims(OP, w)?;
    let (rows, gout) = rows_last(OP, "output gradient gy [..., out]", gy)?;
    if gout != out {
        return Err(Error::shape(
            OP,
            format!(
                "gy {:?} has last axis {gout} but weight {:?} has out = {out}",
                gy.shape(),
                w.shape()
            ),
        ));
    }
    let mut gx = vec![0.0f32; rows * inp];
    let g = Gemm {
        m: rows,
        n: inp,
        k: out,
        trans_a: false,
        trans_b: false,
    };
    sgemm_par(
        g,
        1.0,
        &contiguous(gy),
        &contiguous(w),
        0.0,
        &mut gx,
        Par::Pool,
    )?;
    let mut shape = gy.shape().to_vec();
    *shape.last_mut().expect("rank ≥ 1") = inp;
    Ok(to_tensor(&shape, gx))
}

/// gw[out, in] = Σ gyᵀ·x over all leading axes.
pub fn linear_weight_grad(x: &Tensor, gy: &Tensor) -> Result<Tensor> {
    const OP: &str = "linear_weight_grad";
    let (rows, inp) = rows_last(OP, "input x [..., in]", x)?;
    let (_, out) = rows_last(OP, "output gradient gy [..., out]", gy)?;
    if x.shape()[..x.ndim() - 1] != gy.shape()[..gy.ndim() - 1] {
        return Err(Error::shape(
            OP,
            format!(
                "leading axes of x {:?} and gy {:?} differ",
                x.shape(),
                gy.shape()
            ),
        ));
    }
    let mut gw = vec![0.0f32; out * inp];
    let g = Gemm {
        m: out,
        n: inp,
        k: rows,
        trans_a: true,
        trans_b: false,
    };
    sgemm_par(
        g,
        1.0,
        &contiguous(gy),
        &contiguous(x),
        0.0,
        &mut gw,
        Par::Pool,
    )?;
    Ok(to_tensor(&[out, inp], gw))
}

/// Batched matrix product over equal leading axes: op(a)[..., M, K]·op(b)[..., K, N], where op
/// transposes the last two axes when its flag is set.
pub fn matmul(a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
    const OP: &str = "matmul";
    if a.ndim() < 2 || b.ndim() < 2 {
        return Err(Error::shape(
            OP,
            format!(
                "operands must have rank ≥ 2, got a {:?}, b {:?}",
                a.shape(),
                b.shape()
            ),
        ));
    }
    let (la, ra) = a.shape().split_at(a.ndim() - 2);
    let (lb, rb) = b.shape().split_at(b.ndim() - 2);
    if la != lb {
        return Err(Error::shape(
            OP,
            format!(
                "leading (batch) axes differ: a {:?}, b {:?}",
                a.shape(),
                b.shape()
            ),
        ));
    }
    let (m, ka) = if trans_a {
        (ra[1], ra[0])
    } else {
        (ra[0], ra[1])
    };
    let (kb, n) = if trans_b {
        (rb[1], rb[0])
    } else {
        (rb[0], rb[1])
    };
    if ka != kb {
        return Err(Error::shape(
            OP,
            format!(
                "inner sizes differ: op(a) is [{m}, {ka}] (a {:?}, trans_a {trans_a}), op(b) is [{kb}, {n}] (b {:?}, trans_b {trans_b})",
                a.shape(),
                b.shape()
            ),
        ));
    }
    let k = ka;
    let batch: usize = la.iter().product();
    let (asl, bsl) = (contiguous(a), contiguous(b));
    let mut c = vec![0.0f32; batch * m * n];
    let g = Gemm {
        m,
        n,
        k,
        trans_a,
        trans_b,
    };
    if m * n > 0 {
        let run = |i: usize, ci: &mut [f32], par: Par| {
            sgemm_par(
                g,
                1.0,
                &asl[i * m * k..(i + 1) * m * k],
                &bsl[i * k * n..(i + 1) * k * n],
                0.0,
                ci,
                par,
            )
        };
        if batch >= 2 * rayon::current_num_threads() {
            c.par_chunks_mut(m * n)
                .enumerate()
                .try_for_each(|(i, ci)| run(i, ci, Par::Seq))?;
        } else {
            c.chunks_mut(m * n)
                .enumerate()
                .try_for_each(|(i, ci)| run(i, ci, Par::Pool))?;
        }
    }
    let mut shape = la.to_vec();
    shape.extend([m, n]);
    Ok(to_tensor(&shape, c))
}
