//! Gather at pooling switches: the adjoint of max-unpooling.

use rayon::prelude::*;

use super::IndexTensor;
use crate::Tensor;
use crate::error::{Error, Result};

/// y[n,c,i,j] = x[n,c,idx[n,c,i,j]] for x [N,C,H,W] and idx [N,C,Ho,Wo] (flat in-plane indices).
pub fn pool_gather(x: &Tensor, idx: &IndexTensor) -> Result<Tensor> {
    if x.ndim() != 4 || idx.ndim() != 4 || x.shape()[..2] != idx.shape()[..2] {
        return Err(Error::shape(
            "pool_gather",
            format!(
                "x {:?} and indices {:?} must be [N,C,H,W] and [N,C,Ho,Wo]",
                x.shape(),
                idx.shape()
            ),
        ));
    }
    let plane = x.shape()[2] * x.shape()[3];
    let oplane = idx.shape()[2] * idx.shape()[3];
    let xs = x.as_standard_layout();
    let is = idx.as_standard_layout();
    let xs = xs.as_slice().expect("standard layout");
    let is = is.as_slice().expect("standard layout");
    if let Some(&bad) = is.iter().find(|&&i| i as usize >= plane) {
        return Err(Error::param(
            "pool_gather",
            format!(
                "index {bad} outside the {}x{} input plane",
                x.shape()[2],
                x.shape()[3]
            ),
        ));
    }
    let mut out = vec![0.0f32; is.len()];
    if oplane > 0 {
        out.par_chunks_mut(oplane)
            .zip(is.par_chunks(oplane))
            .enumerate()
            .for_each(|(p, (o, ix))| {
                let xp = &xs[p * plane..(p + 1) * plane];
                for (v, &i) in o.iter_mut().zip(ix) {
                    *v = xp[i as usize];
                }
            });
    }
    Ok(Tensor::from_shape_vec(idx.raw_dim(), out).expect("sizes agree"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathers_and_checks() {
        let x = crate::tensor(&[1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let idx = IndexTensor::from_shape_vec(ndarray::IxDyn(&[1, 1, 1, 2]), vec![3, 1]).unwrap();
        let y = pool_gather(&x, &idx).unwrap();
        assert_eq!(y.as_slice().unwrap(), &[4.0, 2.0]);
        let bad = IndexTensor::from_shape_vec(ndarray::IxDyn(&[1, 1, 1, 1]), vec![4]).unwrap();
        assert!(pool_gather(&x, &bad).is_err());
        let wrong = IndexTensor::from_shape_vec(ndarray::IxDyn(&[1, 2, 1, 1]), vec![0, 0]).unwrap();
        assert!(pool_gather(&x, &wrong).is_err());
    }
}
