//! Backpropagation through time of the free phase, by a hand-written adjoint of the equations of
//! motion (no tape), with state checkpointing so that memory grows with √T rather than T.
//!
//! Used for attacks (d loss / d input through T unrolled steps, attacking at any step t ≤ T1) and
//! for the GDU check (the EP update against the BPTT gradient). Pooling switches are held fixed
//! inside a step (the derivative of argmax is zero almost everywhere), as autograd does.

use sim::{Backend, Error, Result};

use crate::model::{EpNet, Grads, State};
use crate::spec::Pool;

/// Gradients of a loss of the output after T free-phase steps.
#[derive(Debug)]
pub struct Bptt<B: Backend> {
    /// The loss value returned by the loss function.
    pub loss: f32,
    /// The logits at step T.
    pub logits: B::Tensor,
    /// d loss / d x.
    pub dx: B::Tensor,
    /// d loss / d θ per synapse (None when not requested).
    pub dparams: Option<Grads<B>>,
}

fn acc<B: Backend>(be: &B, slot: &mut Option<B::Tensor>, v: B::Tensor) -> Result<()> {
    *slot = Some(match slot.take() {
        None => v,
        Some(a) => be.add(&a, &v)?,
    });
    Ok(())
}

fn flat<B: Backend>(be: &B, t: &B::Tensor) -> Result<B::Tensor> {
    let s = be.shape(t);
    if s.len() == 2 {
        Ok(t.clone())
    } else {
        be.reshape(t, &[s[0], s[1..].iter().product()])
    }
}

impl<B: Backend> EpNet<B> {
    /// BPTT through `steps` free-phase steps from the zero state. `loss_grad(logits)` returns the
    /// loss and its gradient w.r.t. the logits. States are checkpointed every `checkpoint_every`
    /// steps (0 = ⌈√steps⌉) and recomputed segment by segment on the way back.
    pub fn free_phase_bptt(
        &self,
        be: &B,
        x: &B::Tensor,
        steps: usize,
        checkpoint_every: usize,
        want_params: bool,
        mut loss_grad: impl FnMut(&B::Tensor) -> Result<(f32, B::Tensor)>,
    ) -> Result<Bptt<B>> {
        let n_batch = self.check_input(be, x)?;
        let c = if checkpoint_every == 0 {
            ((steps as f64).sqrt().ceil() as usize).max(1)
        } else {
            checkpoint_every
        };
        let mut ckpts = Vec::new();
        let mut st = self.zero_state(be, n_batch)?;
        let input = self.read_input(be, x)?;
        for t in 0..steps {
            if t % c == 0 {
                ckpts.push(st.clone());
            }
            st = self.step_with(be, x, &st, None, Some(&input))?;
            self.check_state(be, &st, t + 1)?;
        }
        let logits = self.logits(be, &st)?;
        let (loss, dlogits) = loss_grad(&logits)?;
        if be.shape(&dlogits) != be.shape(&logits) {
            return Err(Error::shape(
                "bptt",
                format!(
                    "loss gradient {:?} does not match logits {:?}",
                    be.shape(&dlogits),
                    be.shape(&logits)
                ),
            ));
        }
        let n = st.layers.len();
        let ns = self.spec.n_synapses();
        let mut dw: Vec<Option<B::Tensor>> = vec![None; ns];
        let mut db: Vec<Option<B::Tensor>> = vec![None; ns];
        let mut g: Vec<Option<B::Tensor>> = vec![None; n];
        if self.spec.softmax {
            let r = ns - 1;
            let last = &st.layers[n - 1];
            let back = be.linear_input_grad(&dlogits, &self.weights[r])?;
            g[n - 1] = Some(be.reshape(&back, &be.shape(last))?);
            if want_params {
                dw[r] = Some(be.linear_weight_grad(&flat(be, last)?, &dlogits)?);
                db[r] = Some(be.sum_except(&dlogits, 1)?);
            }
        } else {
            g[n - 1] = Some(dlogits);
        }
        let mut dx: Option<B::Tensor> = None;
        for (j, ck) in ckpts.iter().enumerate().rev() {
            let t0 = j * c;
            let t1 = (t0 + c).min(steps);
            let mut seg = vec![ck.clone()];
            for _ in t0 + 1..t1 {
                let next =
                    self.step_with(be, x, seg.last().expect("segment"), None, Some(&input))?;
                seg.push(next);
            }
            for s in seg.iter().rev() {
                g = self.step_adjoint(
                    be,
                    x,
                    &input,
                    s,
                    &g,
                    &mut dx,
                    want_params.then_some((&mut dw, &mut db)),
                )?;
            }
        }
        let dx = match dx {
            Some(d) => d,
            None => be.zeros(&be.shape(x))?,
        };
        let dparams = if want_params {
            let mut out = Vec::with_capacity(ns);
            for (i, (w, b)) in dw.into_iter().zip(db).enumerate() {
                let ws = &self.geom.weight_shapes[i];
                out.push((
                    w.map_or_else(|| be.zeros(ws), Ok)?,
                    b.map_or_else(|| be.zeros(&ws[..1]), Ok)?,
                ));
            }
            Some(out)
        } else {
            None
        };
        Ok(Bptt {
            loss,
            logits,
            dx,
            dparams,
        })
    }

    /// Adjoint of one free step s → s' at state `s`: given ḡ = dL/ds' (None = zero), returns dL/ds,
    /// adds dL/dx into `dx` and, when asked, dL/dθ into `params`.
    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    fn step_adjoint(
        &self,
        be: &B,
        x: &B::Tensor,
        input: &crate::model::InputRead<B>,
        s: &State<B>,
        gbar: &[Option<B::Tensor>],
        dx: &mut Option<B::Tensor>,
        mut params: Option<(&mut Vec<Option<B::Tensor>>, &mut Vec<Option<B::Tensor>>)>,
    ) -> Result<Vec<Option<B::Tensor>>> {
        let n = s.layers.len();
        let (pre, fwds) = self.step_pre(be, x, s, None, Some(input))?;
        // ā_k = ḡ_k ⊙ σ'(a_k)
        let mut abar: Vec<Option<B::Tensor>> = Vec::with_capacity(n);
        for k in 0..n {
            abar.push(match &gbar[k] {
                None => None,
                Some(gk) => Some(if self.layer_is_linear(k, n) {
                    gk.clone()
                } else {
                    be.map_grad(&pre[k], gk, self.spec.act)?
                }),
            });
        }
        let mut out: Vec<Option<B::Tensor>> = vec![None; n];
        for i in 0..n {
            let Some(a) = &abar[i] else { continue };
            // Forward term of a_i: F_i(in_i), in_i = x (i = 0) or s_{i−1}.
            let in_shape = if i == 0 {
                be.shape(x)
            } else {
                be.shape(&s.layers[i - 1])
            };
            let d_in = self.feedback(be, a, &fwds[i], i, &in_shape)?;
            if i == 0 {
                acc(be, dx, d_in)?;
            } else {
                acc(be, &mut out[i - 1], d_in)?;
            }
            if let Some((dw, db)) = params.as_mut() {
                let inp = self.syn_input(be, x, s, i)?;
                if i < self.n_conv() {
                    let u = self.pool_adjoint(be, a, &fwds[i], i)?;
                    let k = self.spec.conv[i].kernel;
                    acc(
                        be,
                        &mut dw[i],
                        be.conv2d_weight_grad(&inp, &u, (k, k), self.conv_params(i))?,
                    )?;
                    acc(be, &mut db[i], be.sum_except(&u, 1)?)?;
                } else {
                    acc(be, &mut dw[i], be.linear_weight_grad(&inp, a)?)?;
                    acc(be, &mut db[i], be.sum_except(a, 1)?)?;
                }
            }
            // Feedback term of a_i: B_{i+1}(s_{i+1}) = synapse_{i+1}ᵀ applied to s_{i+1}.
            if i + 1 < n {
                let j = i + 1;
                if j < self.n_conv() {
                    let z = be.conv2d(a, &self.weights[j], None, self.conv_params(j))?;
                    let gathered = match self.spec.conv[j].pool {
                        Pool::Max => {
                            be.pool_gather(&z, fwds[j].idx.as_ref().expect("max pool indices"))?
                        }
                        Pool::Avg => {
                            be.avg_pool2d(&z, self.spec.conv[j].pool.params().expect("avg"))?
                        }
                        Pool::Identity => z,
                    };
                    acc(be, &mut out[j], gathered)?;
                    if let Some((dw, _)) = params.as_mut() {
                        let u = self.pool_adjoint(be, &s.layers[j], &fwds[j], j)?;
                        let k = self.spec.conv[j].kernel;
                        acc(
                            be,
                            &mut dw[j],
                            be.conv2d_weight_grad(a, &u, (k, k), self.conv_params(j))?,
                        )?;
                    }
                } else {
                    let fa = flat(be, a)?;
                    acc(be, &mut out[j], be.linear(&fa, &self.weights[j], None)?)?;
                    if let Some((dw, _)) = params.as_mut() {
                        acc(be, &mut dw[j], be.linear_weight_grad(&fa, &s.layers[j])?)?;
                    }
                }
            }
        }
        Ok(out)
    }
}
