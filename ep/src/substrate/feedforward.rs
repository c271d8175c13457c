//! A feed-forward network (a backprop baseline's [`FeedForward`](crate::baselines::FeedForward)
//! form) realized on a substrate: every synapse read once, in order, through the realization's
//! reads ([`SynapseReads::forward`]: tiles, converters, noise, bound management, IR drop; a conv
//! synapse's read includes its max pooling), the activation digital after each synapse but the
//! last. Gradients are straight-through: the forward values are the substrate's, the backward pass
//! differentiates the exact ops with the programmed weights at those values (each read is the
//! exact op plus a constant: its difference from the exact op).

use sim::tape::{Tape, Var};
use sim::{Act, Backend, Error, Result};

use super::Realized;
use crate::dynamics::SynapseReads;

/// What a feed-forward realization computes digitally between its synapses.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// The activation after every synapse but the last (non-decreasing: it follows the pooling).
    pub act: Act,
}

impl Layout {
    /// Check that `real` can be read as a feed-forward network
    /// ([`crate::baselines::feedforward::check_realizable`]).
    pub fn check<B: Backend>(&self, real: &Realized<B>) -> Result<()> {
        crate::baselines::feedforward::check_realizable(&real.net.spec, self.act)
    }

    /// Logits `[N, K]` of the normalized batch `x` on `real`, reading with query `query`'s noise.
    pub fn logits<B: Backend>(
        &self,
        real: &Realized<B>,
        be: &B,
        x: &B::Tensor,
        query: u64,
    ) -> Result<B::Tensor> {
        let reads = real.query(query);
        let n = real.net.spec.n_synapses();
        let n_conv = real.net.spec.conv.len();
        let mut h = x.clone();
        for i in 0..n {
            if i >= n_conv {
                let s = be.shape(&h);
                if s.len() != 2 {
                    h = be.reshape(&h, &[s[0], s[1..].iter().product()])?;
                }
            }
            let z = reads.forward(be, &h, i, 0, None)?.pre;
            if i + 1 == n {
                return Ok(z);
            }
            h = be.map(&z, self.act)?;
        }
        Err(Error::param("feed_forward", "a network without synapses"))
    }

    /// Logits of `x` on `real` (query `query`) and the straight-through gradient of a loss of
    /// them with respect to `x` (see the module doc); `dloss` maps the logits to d loss / d logits.
    pub fn input_grad<B: Backend>(
        &self,
        real: &Realized<B>,
        be: &B,
        x: &B::Tensor,
        query: u64,
        dloss: impl FnOnce(&B::Tensor) -> Result<B::Tensor>,
    ) -> Result<(B::Tensor, B::Tensor)> {
        let reads = real.query(query);
        let net = &real.net;
        let n = net.spec.n_synapses();
        let n_conv = net.spec.conv.len();
        let t = Tape::new(be);
        let xv = t.leaf(x.clone());
        let mut h: Var = xv;
        let mut out = None;
        for i in 0..n {
            if i >= n_conv {
                let s = t.shape(h)?;
                if s.len() != 2 {
                    h = t.reshape(h, &[s[0], s[1..].iter().product()])?;
                }
            }
            let sub = reads.forward(be, &t.value(h)?, i, 0, None)?.pre;
            let (w, b) = (
                t.constant(net.weights[i].clone()),
                t.constant(net.biases[i].clone()),
            );
            let exact = if i < n_conv {
                let z = t.conv2d(h, w, Some(b), net.conv_params(i))?;
                match net.spec.conv[i].pool.params() {
                    Some(p) => t.max_pool2d(z, p)?,
                    None => z,
                }
            } else {
                t.linear(h, w, Some(b))?
            };
            // The substrate's value, the exact op's gradient.
            let diff = be.sub(&sub, &t.value(exact)?)?;
            let z = t.add(exact, t.constant(diff))?;
            if i + 1 == n {
                out = Some(z);
                break;
            }
            h = t.map(z, self.act)?;
        }
        let y = out.ok_or_else(|| Error::param("feed_forward", "a network without synapses"))?;
        let logits = t.value(y)?;
        let g = dloss(&logits)?;
        let grads = t.backward_with(y, g)?;
        let dx = match grads.get(xv) {
            Some(d) => d.clone(),
            None => be.zeros(&be.shape(x))?,
        };
        Ok((logits, dx))
    }
}
