//! The optimizer update on host tensors: the one definition of the SGD and Adam arithmetic
//! ([`crate::ops::OptimStep`]), used by the CPU backend's `optim_update` and by host-side
//! optimizers (`ep::optim::Optimizer::step`).

use crate::Tensor;
use crate::error::{Error, Result};
use crate::ops::OptimStep;

/// Update `p` in place with gradient `g` and the buffers `buf1`, `buf2` (allocated here on the
/// first step, as PyTorch does lazily).
pub fn update(
    p: &mut Tensor,
    g: &Tensor,
    buf1: &mut Option<Tensor>,
    buf2: &mut Option<Tensor>,
    step: OptimStep,
) -> Result<()> {
    if p.shape() != g.shape() {
        return Err(Error::shape(
            "optim_update",
            format!("parameter {:?}, gradient {:?}", p.shape(), g.shape()),
        ));
    }
    for (what, b) in [("buf1", &*buf1), ("buf2", &*buf2)] {
        if let Some(b) = b
            && b.shape() != p.shape()
        {
            return Err(Error::shape(
                "optim_update",
                format!("parameter {:?}, {what} {:?}", p.shape(), b.shape()),
            ));
        }
    }
    let wd = match step {
        OptimStep::Sgd { wd, .. } | OptimStep::Adam { wd, .. } => wd,
    };
    let mut d = g.clone();
    if wd != 0.0 {
        d.zip_mut_with(p, |d, &p| *d += wd * p);
    }
    match step {
        OptimStep::Sgd { lr, momentum, .. } => {
            if momentum != 0.0 {
                let b = match buf1.take() {
                    None => d.clone(),
                    Some(mut b) => {
                        b.zip_mut_with(&d, |b, &d| *b = momentum * *b + d);
                        b
                    }
                };
                d = b.clone();
                *buf1 = Some(b);
            }
            p.zip_mut_with(&d, |p, &d| *p -= lr * d);
        }
        OptimStep::Adam {
            lr,
            beta1,
            beta2,
            eps,
            bc1,
            bc2,
            ..
        } => {
            let m = buf1.get_or_insert_with(|| Tensor::zeros(d.raw_dim()));
            m.zip_mut_with(&d, |m, &d| *m = beta1 * *m + (1.0 - beta1) * d);
            let v = buf2.get_or_insert_with(|| Tensor::zeros(d.raw_dim()));
            v.zip_mut_with(&d, |v, &d| *v = beta2 * *v + (1.0 - beta2) * d * d);
            let step = lr / bc1;
            let (m, v) = (buf1.as_ref().expect("set"), buf2.as_ref().expect("set"));
            ndarray::Zip::from(&mut *p)
                .and(m)
                .and(v)
                .for_each(|p, &m, &v| {
                    *p -= step * m / ((v / bc2).sqrt() + eps);
                });
        }
    }
    Ok(())
}
