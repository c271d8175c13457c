//! Layout ops: concatenation and slicing along one axis (the ViT's class token and its read-out).
//! Each is the other's adjoint: the gradient of a concatenation is the slices of the output
//! gradient, and the gradient of a slice is the output gradient padded with zeros (a concatenation).
//! And the blocked transpose the CPU kernels change their layouts with ([`transpose_blocks`]).

use rayon::prelude::*;

use crate::Tensor;
use crate::error::{Error, Result};

/// Concatenate `xs` along `axis`; every other axis must agree. Like `torch.cat(xs, dim=axis)`.
pub fn concat(xs: &[&Tensor], axis: usize) -> Result<Tensor> {
    let first = xs
        .first()
        .ok_or_else(|| Error::param("concat", "needs at least one tensor"))?;
    let nd = first.ndim();
    if axis >= nd {
        return Err(Error::param(
            "concat",
            format!(
                "axis {axis} out of range for rank {nd} (shape {:?})",
                first.shape()
            ),
        ));
    }
    let mut total = 0usize;
    for (i, x) in xs.iter().enumerate() {
        let ok = x.ndim() == nd
            && x.shape()
                .iter()
                .zip(first.shape())
                .enumerate()
                .all(|(a, (s, f))| a == axis || s == f);
        if !ok {
            return Err(Error::shape(
                "concat",
                format!(
                    "tensor {i} has shape {:?}, tensor 0 has {:?}; all axes but {axis} must agree",
                    x.shape(),
                    first.shape()
                ),
            ));
        }
        total += x.shape()[axis];
    }
    let outer: usize = first.shape()[..axis].iter().product();
    let inner: usize = first.shape()[axis + 1..].iter().product();
    let mut out = Vec::with_capacity(outer * total * inner);
    let slices: Vec<std::borrow::Cow<'_, [f32]>> = xs
        .iter()
        .map(|x| match x.as_slice() {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => std::borrow::Cow::Owned(x.iter().copied().collect()),
        })
        .collect();
    for o in 0..outer {
        for (x, s) in xs.iter().zip(&slices) {
            let run = x.shape()[axis] * inner;
            out.extend_from_slice(&s[o * run..(o + 1) * run]);
        }
    }
    let mut shape = first.shape().to_vec();
    shape[axis] = total;
    crate::tensor(&shape, out)
}

/// The `len` entries of `x` along `axis` starting at `start`, like `x.narrow(axis, start, len)`
/// (materialized).
pub fn slice(x: &Tensor, axis: usize, start: usize, len: usize) -> Result<Tensor> {
    if axis >= x.ndim() {
        return Err(Error::param(
            "slice",
            format!("axis {axis} out of range for shape {:?}", x.shape()),
        ));
    }
    let n = x.shape()[axis];
    if start.checked_add(len).is_none_or(|e| e > n) {
        return Err(Error::param(
            "slice",
            format!(
                "range {start}..{} exceeds axis {axis} of length {n} (shape {:?})",
                start.saturating_add(len),
                x.shape()
            ),
        ));
    }
    let outer: usize = x.shape()[..axis].iter().product();
    let inner: usize = x.shape()[axis + 1..].iter().product();
    let src: std::borrow::Cow<'_, [f32]> = match x.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(x.iter().copied().collect()),
    };
    let mut out = Vec::with_capacity(outer * len * inner);
    for o in 0..outer {
        let base = (o * n + start) * inner;
        out.extend_from_slice(&src[base..base + len * inner]);
    }
    let mut shape = x.shape().to_vec();
    shape[axis] = len;
    crate::tensor(&shape, out)
}

/// Transposes each `[rows, cols]` block of `src` into the `[cols, rows]` block of `dst` at the
/// same place, blocks in parallel: NCHW ↔ NHWC per sample and OIHW ↔ OHWI per output channel
/// (`conv.rs`), `[N, C, P]` → `[N·P, C]` (`xbar/layout.rs`). The inner loop walks `src` in order
/// and `dst` with a stride, without index arithmetic per element.
pub(crate) fn transpose_blocks(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    if rows * cols == 0 {
        return;
    }
    dst.par_chunks_mut(rows * cols)
        .zip(src.par_chunks(rows * cols))
        .for_each(|(d, s)| {
            for (i, row) in s.chunks_exact(cols).enumerate() {
                for (dv, sv) in d[i..].iter_mut().step_by(rows).zip(row) {
                    *dv = *sv;
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_then_slice_roundtrips() {
        let a = crate::tensor(&[2, 1, 3], (0..6).map(|v| v as f32).collect()).unwrap();
        let b = crate::tensor(&[2, 2, 3], (10..22).map(|v| v as f32).collect()).unwrap();
        let c = concat(&[&a, &b], 1).unwrap();
        assert_eq!(c.shape(), &[2, 3, 3]);
        assert_eq!(
            c.iter().copied().collect::<Vec<_>>(),
            vec![
                0., 1., 2., 10., 11., 12., 13., 14., 15., 3., 4., 5., 16., 17., 18., 19., 20., 21.
            ]
        );
        assert_eq!(slice(&c, 1, 0, 1).unwrap(), a);
        assert_eq!(slice(&c, 1, 1, 2).unwrap(), b);
    }

    #[test]
    fn bad_shapes_are_errors() {
        let a = Tensor::zeros(ndarray::IxDyn(&[2, 3]));
        let b = Tensor::zeros(ndarray::IxDyn(&[3, 3]));
        assert!(concat(&[], 0).is_err());
        assert!(
            concat(&[&a, &b], 1)
                .unwrap_err()
                .to_string()
                .contains("must agree")
        );
        assert!(concat(&[&a, &b], 0).is_ok());
        assert!(concat(&[&a], 2).is_err());
        assert!(
            slice(&a, 1, 2, 2)
                .unwrap_err()
                .to_string()
                .contains("exceeds")
        );
        assert!(slice(&a, 2, 0, 1).is_err());
        assert!(slice(&a, 1, usize::MAX, 2).is_err());
    }
}
