//! Pooling and its adjoints on NCHW tensors (no padding, floor mode: PyTorch's defaults).
//!
//! Work is split by (n, c) plane; each plane is computed sequentially in row-major order, so results
//! do not depend on the rayon thread count.
use rayon::prelude::*;

use super::IndexTensor;
use super::elementwise::{PAR_MIN, flat, from_vec};
use crate::Tensor;
use crate::error::{Error, Result};
use crate::ops::Pool2dParams;

/// (N, C, H, W) of a 4-D tensor, or a shape error naming `op` and `what`.
fn nchw(op: &'static str, what: &str, t: &[usize]) -> Result<(usize, usize, usize, usize)> {
    match *t {
        [n, c, h, w] => Ok((n, c, h, w)),
        _ => Err(Error::shape(
            op,
            format!("{what} must be 4-D [N, C, H, W], got {t:?}"),
        )),
    }
}

/// Run `f(plane_index, out_plane)` over the planes of `out` (each `plane` long), in parallel when
/// `work` (the number of elements touched) is large.
fn per_plane<T: Send>(
    out: &mut [T],
    plane: usize,
    work: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    if plane == 0 {
        return;
    }
    if work >= PAR_MIN {
        out.par_chunks_mut(plane)
            .enumerate()
            .for_each(|(i, o)| f(i, o));
    } else {
        out.chunks_mut(plane).enumerate().for_each(|(i, o)| f(i, o));
    }
}

/// Max pooling with argmax indices: y[n,c,i,j] = max over the window at (i·sh, j·sw), idx the flat
/// index `h·W + w` of the winner in its input plane. The first maximum in row-major window order
/// wins; a NaN in the window propagates (as PyTorch's CPU kernel: a NaN replaces the running max,
/// so the index is the last NaN of the window).
pub fn max_pool2d(x: &Tensor, p: Pool2dParams) -> Result<(Tensor, IndexTensor)> {
    let (n, c, h, w) = nchw("max_pool2d", "input", x.shape())?;
    let (ho, wo) = p.output_hw("max_pool2d", (h, w))?;
    if h * w > u32::MAX as usize {
        return Err(Error::param(
            "max_pool2d",
            format!("plane of {h}x{w} too large for u32 indices"),
        ));
    }
    let xv = flat(x);
    let (kh, kw) = p.kernel;
    let (sh, sw) = p.stride;
    let plane_out = ho * wo;
    let mut out = vec![(0.0f32, 0u32); n * c * plane_out];
    per_plane(&mut out, plane_out, xv.len(), |pl, o| {
        let xp = &xv[pl * h * w..(pl + 1) * h * w];
        for i in 0..ho {
            for j in 0..wo {
                let (h0, w0) = (i * sh, j * sw);
                let mut best = f32::NEG_INFINITY;
                let mut arg = h0 * w + w0;
                for dh in 0..kh {
                    let row = (h0 + dh) * w;
                    for dw in 0..kw {
                        let k = row + w0 + dw;
                        let v = xp[k];
                        if v > best || v.is_nan() {
                            best = v;
                            arg = k;
                        }
                    }
                }
                o[i * wo + j] = (best, arg as u32);
            }
        }
    });
    let shape = [n, c, ho, wo];
    let y = from_vec(&shape, out.iter().map(|p| p.0).collect());
    let idx =
        IndexTensor::from_shape_vec(ndarray::IxDyn(&shape), out.iter().map(|p| p.1).collect())
            .expect("element count matches shape");
    Ok((y, idx))
}

/// Max unpooling: scatter-add y[N,C,Ho,Wo] into a zero [N,C,H,W] tensor at the argmax positions
/// `idx` (the adjoint of `max_pool2d`). Entries of a plane are added in row-major order of y.
pub fn max_unpool2d(y: &Tensor, idx: &IndexTensor, input_hw: (usize, usize)) -> Result<Tensor> {
    let (n, c, ho, wo) = nchw("max_unpool2d", "values", y.shape())?;
    if idx.shape() != y.shape() {
        return Err(Error::shape(
            "max_unpool2d",
            format!(
                "indices of shape {:?} do not match values of shape {:?}",
                idx.shape(),
                y.shape()
            ),
        ));
    }
    let (h, w) = input_hw;
    let plane = h * w;
    if let Some(bad) = idx.iter().find(|&&i| i as usize >= plane) {
        return Err(Error::param(
            "max_unpool2d",
            format!("index {bad} out of range for an input plane of {h}x{w}"),
        ));
    }
    let yv = flat(y);
    let iv: Vec<u32> = idx.iter().copied().collect();
    let plane_in = ho * wo;
    let mut out = vec![0.0f32; n * c * plane];
    per_plane(&mut out, plane, n * c * plane, |pl, o| {
        let ys = &yv[pl * plane_in..(pl + 1) * plane_in];
        let is = &iv[pl * plane_in..(pl + 1) * plane_in];
        for (&v, &i) in ys.iter().zip(is) {
            o[i as usize] += v;
        }
    });
    Ok(from_vec(&[n, c, h, w], out))
}

/// Average pooling: the mean of each kh×kw window (sum in row-major order, then divided by kh·kw).
pub fn avg_pool2d(x: &Tensor, p: Pool2dParams) -> Result<Tensor> {
    let (n, c, h, w) = nchw("avg_pool2d", "input", x.shape())?;
    let (ho, wo) = p.output_hw("avg_pool2d", (h, w))?;
    let xv = flat(x);
    let (kh, kw) = p.kernel;
    let (sh, sw) = p.stride;
    let count = (kh * kw) as f32;
    let plane_out = ho * wo;
    let mut out = vec![0.0f32; n * c * plane_out];
    per_plane(&mut out, plane_out, xv.len(), |pl, o| {
        let xp = &xv[pl * h * w..(pl + 1) * h * w];
        for i in 0..ho {
            for j in 0..wo {
                let (h0, w0) = (i * sh, j * sw);
                let mut s = 0.0f32;
                for dh in 0..kh {
                    let row = (h0 + dh) * w + w0;
                    for &v in &xp[row..row + kw] {
                        s += v;
                    }
                }
                o[i * wo + j] = s / count;
            }
        }
    });
    Ok(from_vec(&[n, c, ho, wo], out))
}

/// Adjoint of average pooling: each gy[n,c,i,j] / (kh·kw) is added to every input position of its
/// window (windows visited in row-major order).
pub fn avg_pool2d_adjoint(
    gy: &Tensor,
    input_hw: (usize, usize),
    p: Pool2dParams,
) -> Result<Tensor> {
    let (n, c, ho, wo) = nchw("avg_pool2d_adjoint", "gradient", gy.shape())?;
    let (h, w) = input_hw;
    let expect = p.output_hw("avg_pool2d_adjoint", (h, w))?;
    if expect != (ho, wo) {
        return Err(Error::shape(
            "avg_pool2d_adjoint",
            format!(
                "gradient {:?} has spatial size {:?} but input {:?} with {:?} pools to {:?}",
                gy.shape(),
                (ho, wo),
                input_hw,
                p,
                expect
            ),
        ));
    }
    let gv = flat(gy);
    let (kh, kw) = p.kernel;
    let (sh, sw) = p.stride;
    let count = (kh * kw) as f32;
    let plane_in = ho * wo;
    let mut out = vec![0.0f32; n * c * h * w];
    per_plane(&mut out, h * w, n * c * h * w, |pl, o| {
        let gp = &gv[pl * plane_in..(pl + 1) * plane_in];
        for i in 0..ho {
            for j in 0..wo {
                let g = gp[i * wo + j] / count;
                let (h0, w0) = (i * sh, j * sw);
                for dh in 0..kh {
                    let row = (h0 + dh) * w + w0;
                    for e in &mut o[row..row + kw] {
                        *e += g;
                    }
                }
            }
        }
    });
    Ok(from_vec(&[n, c, h, w], out))
}
