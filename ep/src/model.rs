//! EP networks (EP-MLP, EP-CNN) on any [`Backend`]: parameters, the exact synapse reads (forward,
//! feedback and their pooling), readout, the nudge, and the partial derivatives of the primitive
//! function Φ with respect to the parameters (the ingredients of the EP update). The dynamics
//! (step, free and nudged phases, BPTT) are written once over these reads in `crate::dynamics`.
//!
//! Φ(x, s) = Σ_k ⟨s_k, P_k(conv_k(s_{k−1}))⟩ + Σ_fc ⟨s_j, W_j s_{j−1} + b_j⟩ − β ℓ(s, y). One step of
//! the dynamics sets every layer at once (synchronously, as the reference code) to
//! s_k ← σ(∂Φ/∂s_k), computed from the exact equations of motion: the forward term
//! P_k(conv_k(s_{k−1})) plus the feedback term conv_{k+1}ᵀ(P_{k+1}ᵀ(s_{k+1})), where P_{k+1}ᵀ routes
//! through the argmax of the pooling of the current step. No tape is involved.

use sim::{Backend, Conv2dParams, Error, Result, Stream, Tensor};

use crate::spec::{Geometry, Loss, ModelSpec, Pool};

/// An EP network: its spec and its parameters on backend `B` (weights in PyTorch layouts).
#[derive(Debug)]
pub struct EpNet<B: Backend> {
    /// Architecture and dynamics.
    pub spec: ModelSpec,
    /// Shapes derived from the spec.
    pub geom: Geometry,
    /// `synapses.{i}.weight`: OIHW for conv, `[out, in]` for linear.
    pub weights: Vec<B::Tensor>,
    /// `synapses.{i}.bias`.
    pub biases: Vec<B::Tensor>,
}

/// Neuron states s_1..s_n (each with the batch axis first).
#[derive(Debug)]
pub struct State<B: Backend> {
    /// One tensor per neuron layer.
    pub layers: Vec<B::Tensor>,
}

/// The nudging target of a batch: labels and their one-hot encoding on the backend.
#[derive(Debug)]
pub struct Target<B: Backend> {
    /// Integer labels.
    pub labels: Vec<usize>,
    /// One-hot [N, classes].
    pub onehot: B::Tensor,
}

impl<B: Backend> Target<B> {
    /// Build a target for `labels` with `classes` classes; errors on out-of-range labels.
    pub fn new(be: &B, labels: &[usize], classes: usize) -> Result<Self> {
        let mut oh = vec![0.0f32; labels.len() * classes];
        for (i, &l) in labels.iter().enumerate() {
            if l >= classes {
                return Err(Error::param(
                    "target",
                    format!("label {l} of sample {i} out of range (classes: {classes})"),
                ));
            }
            oh[i * classes + l] = 1.0;
        }
        Ok(Target {
            labels: labels.to_vec(),
            onehot: be.upload(&sim::tensor(&[labels.len(), classes], oh)?)?,
        })
    }
}

impl<B: Backend> Clone for EpNet<B> {
    fn clone(&self) -> Self {
        EpNet {
            spec: self.spec.clone(),
            geom: self.geom.clone(),
            weights: self.weights.clone(),
            biases: self.biases.clone(),
        }
    }
}

impl<B: Backend> Clone for State<B> {
    fn clone(&self) -> Self {
        State {
            layers: self.layers.clone(),
        }
    }
}

impl<B: Backend> Clone for Target<B> {
    fn clone(&self) -> Self {
        Target {
            labels: self.labels.clone(),
            onehot: self.onehot.clone(),
        }
    }
}

/// Σ a·b accumulated in f64.
fn dot64(a: &Tensor, b: &Tensor) -> f64 {
    a.iter()
        .zip(b.iter())
        .map(|(&x, &y)| x as f64 * y as f64)
        .sum()
}

/// Per-synapse (weight, bias) gradients.
pub type Grads<B> = Vec<(<B as Backend>::Tensor, <B as Backend>::Tensor)>;

/// Intermediate results of one synapse's forward read: the term handed to the next layer and, for
/// max pooling, the argmax indices the feedback term routes through.
pub struct Forward<B: Backend> {
    /// The read's output (after bias and pooling).
    pub pre: B::Tensor,
    /// The max-pooling switches, if the synapse max-pools.
    pub idx: Option<B::Index>,
}

impl<B: Backend> Clone for Forward<B> {
    fn clone(&self) -> Self {
        Forward {
            pre: self.pre.clone(),
            idx: self.idx.clone(),
        }
    }
}

/// The read of the input by the first synapse, P₁(conv₁(x)) (or W₁x + b₁): it does not depend on
/// the state, so a phase computes it once instead of at every step.
pub struct InputRead<B: Backend>(pub(crate) Forward<B>);

impl<B: Backend> EpNet<B> {
    /// Initialize as the reference: PyTorch's default `kaiming_uniform_(a=√5)` for weights, i.e.
    /// U(−1/√fan_in, 1/√fan_in), and the same bound for biases; both multiplied by `scale` when given
    /// (the reference's `--scale`). Draws come from `stream` (child `synapses.{i}.weight|bias`).
    pub fn init(be: &B, spec: ModelSpec, stream: &Stream, scale: Option<f32>) -> Result<Self> {
        let geom = spec.geometry()?;
        let mut weights = Vec::new();
        let mut biases = Vec::new();
        for (i, ws) in geom.weight_shapes.iter().enumerate() {
            let fan_in: usize = ws[1..].iter().product();
            let bound = 1.0 / (fan_in as f32).sqrt();
            let s = scale.unwrap_or(1.0);
            let draw = |name: String, shape: &[usize]| -> Result<B::Tensor> {
                let st = stream.child(&name);
                let n: usize = shape.iter().product();
                let v: Vec<f32> = (0..n as u64)
                    .map(|j| (2.0 * st.uniform(j) - 1.0) * bound * s)
                    .collect();
                be.upload(&sim::tensor(shape, v)?)
            };
            weights.push(draw(format!("synapses.{i}.weight"), ws)?);
            biases.push(draw(format!("synapses.{i}.bias"), &ws[..1])?);
        }
        Ok(EpNet {
            spec,
            geom,
            weights,
            biases,
        })
    }

    /// Build from host tensors (e.g. a checkpoint), checking every shape against the spec.
    pub fn from_host(
        be: &B,
        spec: ModelSpec,
        weights: &[Tensor],
        biases: &[Tensor],
    ) -> Result<Self> {
        let geom = spec.geometry()?;
        let n = geom.weight_shapes.len();
        if weights.len() != n || biases.len() != n {
            return Err(Error::shape(
                "model",
                format!(
                    "spec has {n} synapses, got {} weights and {} biases",
                    weights.len(),
                    biases.len()
                ),
            ));
        }
        for i in 0..n {
            if weights[i].shape() != geom.weight_shapes[i].as_slice() {
                return Err(Error::shape(
                    "model",
                    format!(
                        "synapses.{i}.weight has shape {:?}, spec expects {:?}",
                        weights[i].shape(),
                        geom.weight_shapes[i]
                    ),
                ));
            }
            if biases[i].shape() != &geom.weight_shapes[i][..1] {
                return Err(Error::shape(
                    "model",
                    format!(
                        "synapses.{i}.bias has shape {:?}, spec expects {:?}",
                        biases[i].shape(),
                        &geom.weight_shapes[i][..1]
                    ),
                ));
            }
            sim::check_finite(&format!("synapses.{i}.weight"), &weights[i])?;
            sim::check_finite(&format!("synapses.{i}.bias"), &biases[i])?;
        }
        Ok(EpNet {
            spec,
            geom,
            weights: weights
                .iter()
                .map(|w| be.upload(w))
                .collect::<Result<_>>()?,
            biases: biases.iter().map(|b| be.upload(b)).collect::<Result<_>>()?,
        })
    }

    /// Parameters as host tensors, `(weights, biases)`.
    pub fn to_host(&self, be: &B) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
        Ok((
            self.weights
                .iter()
                .map(|w| be.download(w))
                .collect::<Result<_>>()?,
            self.biases
                .iter()
                .map(|b| be.download(b))
                .collect::<Result<_>>()?,
        ))
    }

    /// All-zero state for a batch of `n`.
    pub fn zero_state(&self, be: &B, n: usize) -> Result<State<B>> {
        let layers = self
            .geom
            .layer_shapes
            .iter()
            .map(|s| {
                let mut shape = vec![n];
                shape.extend_from_slice(s);
                be.zeros(&shape)
            })
            .collect::<Result<_>>()?;
        Ok(State { layers })
    }

    pub(crate) fn n_conv(&self) -> usize {
        self.spec.conv.len()
    }

    pub(crate) fn conv_params(&self, i: usize) -> Conv2dParams {
        let l = &self.spec.conv[i];
        Conv2dParams::new(l.stride, l.padding)
    }

    /// Check that `x` is a batch of inputs of the spec's shape; returns the batch size.
    pub fn check_input(&self, be: &B, x: &B::Tensor) -> Result<usize> {
        let s = be.shape(x);
        if s.len() != 4 || s[1..] != self.spec.input {
            return Err(Error::shape(
                "ep input",
                format!(
                    "expected [N, {}, {}, {}], got {s:?}",
                    self.spec.input[0], self.spec.input[1], self.spec.input[2]
                ),
            ));
        }
        Ok(s[0])
    }

    /// Input of synapse `i`: x for i = 0, else layer i (flattened for linear synapses).
    pub(crate) fn syn_input<'a>(
        &self,
        be: &B,
        x: &'a B::Tensor,
        st: &'a State<B>,
        i: usize,
    ) -> Result<std::borrow::Cow<'a, B::Tensor>> {
        let t = if i == 0 { x } else { &st.layers[i - 1] };
        if i < self.n_conv() {
            Ok(std::borrow::Cow::Borrowed(t))
        } else {
            let s = be.shape(t);
            if s.len() == 2 {
                Ok(std::borrow::Cow::Borrowed(t))
            } else {
                Ok(std::borrow::Cow::Owned(
                    be.reshape(t, &[s[0], s[1..].iter().product()])?,
                ))
            }
        }
    }

    /// Forward read of synapse `i` on its input.
    pub(crate) fn forward(&self, be: &B, inp: &B::Tensor, i: usize) -> Result<Forward<B>> {
        if i < self.n_conv() {
            let (pre, idx) = be.conv2d_pooled(
                inp,
                &self.weights[i],
                Some(&self.biases[i]),
                self.conv_params(i),
                self.spec.conv[i].pool.pooling(),
            )?;
            Ok(Forward { pre, idx })
        } else {
            Ok(Forward {
                pre: be.linear(inp, &self.weights[i], Some(&self.biases[i]))?,
                idx: None,
            })
        }
    }

    /// Pᵀ for conv synapse `i`: route `v` (shape of layer i+1) back to the conv output grid.
    pub(crate) fn pool_adjoint(
        &self,
        be: &B,
        v: &B::Tensor,
        fwd: &Forward<B>,
        i: usize,
    ) -> Result<B::Tensor> {
        let hw = self.geom.conv_out_hw[i];
        match self.spec.conv[i].pool {
            Pool::Max => be.max_unpool2d(v, fwd.idx.as_ref().expect("max pool indices"), hw),
            Pool::Avg => {
                be.avg_pool2d_adjoint(v, hw, self.spec.conv[i].pool.params().expect("avg pool"))
            }
            Pool::Identity => Ok(v.clone()),
        }
    }

    /// Feedback of synapse `i` into its input layer: (∂/∂input) ⟨v, synapse_i(input)⟩ for v of the
    /// shape of layer i+1, reshaped to the input layer's shape.
    pub(crate) fn feedback(
        &self,
        be: &B,
        v: &B::Tensor,
        fwd: &Forward<B>,
        i: usize,
        input_shape: &[usize],
    ) -> Result<B::Tensor> {
        if i < self.n_conv() {
            be.conv2d_pooled_input_grad(
                v,
                fwd.idx.as_ref(),
                &self.weights[i],
                self.geom.conv_out_hw[i],
                (input_shape[2], input_shape[3]),
                self.conv_params(i),
                self.spec.conv[i].pool.pooling(),
            )
        } else {
            let g = be.linear_input_grad(v, &self.weights[i])?;
            if input_shape.len() == 2 {
                Ok(g)
            } else {
                be.reshape(&g, input_shape)
            }
        }
    }

    /// −∂ℓ/∂(last layer), the direction the output is nudged in (per sample, not averaged):
    /// MSE: y − s; cross-entropy on the layer: y − softmax(s); softmax readout: Wᵀ(y − softmax(W s + b)).
    pub(crate) fn nudge_direction(
        &self,
        be: &B,
        st: &State<B>,
        target: &Target<B>,
    ) -> Result<B::Tensor> {
        let last = st.layers.last().expect("at least one layer");
        match (self.spec.softmax, self.spec.loss) {
            (false, Loss::Mse) => be.sub(&target.onehot, last),
            (false, Loss::CrossEntropy) => {
                let p = be.softmax(last)?;
                be.sub(&target.onehot, &p)
            }
            (true, _) => {
                let logits = self.logits(be, st)?;
                let p = be.softmax(&logits)?;
                let g = be.sub(&target.onehot, &p)?;
                let r = self.spec.n_synapses() - 1;
                let back = be.linear_input_grad(&g, &self.weights[r])?;
                let s = be.shape(last);
                if s.len() == 2 {
                    Ok(back)
                } else {
                    be.reshape(&back, &s)
                }
            }
        }
    }

    /// Whether layer `k` of `n` is linear (the reference: a cross-entropy cost without softmax
    /// readout makes the output layer linear).
    pub(crate) fn layer_is_linear(&self, k: usize, n: usize) -> bool {
        k + 1 == n && !self.spec.softmax && self.spec.loss == Loss::CrossEntropy
    }

    /// The first synapse's read of `x`, to be reused by every step of a phase.
    pub fn read_input(&self, be: &B, x: &B::Tensor) -> Result<InputRead<B>> {
        let empty = State { layers: vec![] };
        let inp = self.syn_input(be, x, &empty, 0)?;
        Ok(InputRead(self.forward(be, &inp, 0)?))
    }

    /// Error if any layer of `st` holds a NaN or infinity (one reduction per layer).
    pub fn check_state(&self, be: &B, st: &State<B>, step: usize) -> Result<()> {
        for (k, l) in st.layers.iter().enumerate() {
            let s = be.sum_all(l)?;
            if !s.is_finite() {
                return Err(Error::NonFinite {
                    what: format!("EP dynamics, step {step}, layer {} (1-based; 0 is the input)", k + 1),
                    detail: "the state diverged (NaN/Inf); check the input, the weights and the learning rates".into(),
                });
            }
        }
        Ok(())
    }

    /// The primitive function Φ(x, s) − β ℓ(s, y), summed over the batch (the bilinear terms are
    /// accumulated in f64 on the host). Used by tests and diagnostics: the dynamics never evaluate it.
    pub fn phi(
        &self,
        be: &B,
        x: &B::Tensor,
        st: &State<B>,
        nudge: Option<(f32, &Target<B>)>,
    ) -> Result<f64> {
        let n = st.layers.len();
        let mut phi = 0.0f64;
        for i in 0..n {
            let inp = self.syn_input(be, x, st, i)?;
            let f = self.forward(be, &inp, i)?;
            phi += dot64(&be.download(&f.pre)?, &be.download(&st.layers[i])?);
        }
        if let Some((beta, target)) = nudge {
            let nb = st.layers[0].clone();
            let batch = be.shape(&nb)[0] as f64;
            let last = st.layers.last().expect("layer");
            let loss = match (self.spec.softmax, self.spec.loss) {
                (false, Loss::Mse) => {
                    let d = be.download(&be.sub(last, &target.onehot)?)?;
                    0.5 * dot64(&d, &d)
                }
                (false, Loss::CrossEntropy) => {
                    be.cross_entropy(last, &target.labels)?.0 as f64 * batch
                }
                (true, _) => {
                    be.cross_entropy(&self.logits(be, st)?, &target.labels)?.0 as f64 * batch
                }
            };
            phi -= beta as f64 * loss;
        }
        Ok(phi)
    }

    /// ∂Φ/∂θ at state `st` (summed over the batch) for nudging strength `beta` (the readout's
    /// parameters only enter Φ through −β ℓ).
    pub fn phi_param_grads(
        &self,
        be: &B,
        x: &B::Tensor,
        st: &State<B>,
        beta: f32,
        target: Option<&Target<B>>,
    ) -> Result<Grads<B>> {
        let n = st.layers.len();
        let mut grads = Vec::with_capacity(self.spec.n_synapses());
        for i in 0..n {
            let inp = self.syn_input(be, x, st, i)?;
            let v = &st.layers[i];
            if i < self.n_conv() {
                let fwd = self.forward(be, &inp, i)?;
                let u = self.pool_adjoint(be, v, &fwd, i)?;
                let k = self.spec.conv[i].kernel;
                let gw = be.conv2d_weight_grad(&inp, &u, (k, k), self.conv_params(i))?;
                let gb = be.sum_except(&u, 1)?;
                grads.push((gw, gb));
            } else {
                grads.push((be.linear_weight_grad(&inp, v)?, be.sum_except(v, 1)?));
            }
        }
        if self.spec.softmax {
            let r = self.spec.n_synapses() - 1;
            let ws = &self.geom.weight_shapes[r];
            if beta == 0.0 {
                grads.push((be.zeros(ws)?, be.zeros(&ws[..1])?));
            } else {
                let target = target
                    .ok_or_else(|| Error::param("phi_param_grads", "β ≠ 0 needs a target"))?;
                let last = st.layers.last().expect("layer");
                let s = be.shape(last);
                let flat = if s.len() == 2 {
                    last.clone()
                } else {
                    be.reshape(last, &[s[0], s[1..].iter().product()])?
                };
                let logits = be.linear(&flat, &self.weights[r], Some(&self.biases[r]))?;
                let p = be.softmax(&logits)?;
                // −β ∂ℓ/∂W = β (y − p)ᵀ s.
                let g = be.scale(&be.sub(&target.onehot, &p)?, beta)?;
                grads.push((be.linear_weight_grad(&flat, &g)?, be.sum_except(&g, 1)?));
            }
        }
        Ok(grads)
    }

    /// The EP estimate of the loss gradient from two phases (s₁, β₁) and (s₂, β₂), as the reference
    /// `compute_syn_grads`: ∇θ ≈ (∂Φ/∂θ(s₂, β₂) − ∂Φ/∂θ(s₁, β₁)) / (β₁ − β₂), averaged over the batch.
    /// Symmetric EP: (s^{+β}, β) and (s^{−β}, −β); vanilla: (s⁰, 0) and (s^β, β).
    pub fn ep_grads(
        &self,
        be: &B,
        x: &B::Tensor,
        phase1: (&State<B>, f32),
        phase2: (&State<B>, f32),
        target: &Target<B>,
    ) -> Result<Grads<B>> {
        let (s1, b1) = phase1;
        let (s2, b2) = phase2;
        if b1 == b2 {
            return Err(Error::param(
                "ep_grads",
                format!("the two phases need different β, got {b1} and {b2}"),
            ));
        }
        let n = self.check_input(be, x)? as f32;
        let g1 = self.phi_param_grads(be, x, s1, b1, Some(target))?;
        let g2 = self.phi_param_grads(be, x, s2, b2, Some(target))?;
        let c = 1.0 / ((b1 - b2) * n);
        g1.into_iter()
            .zip(g2)
            .map(|((w1, bb1), (w2, bb2))| {
                Ok((
                    be.scale(&be.sub(&w2, &w1)?, c)?,
                    be.scale(&be.sub(&bb2, &bb1)?, c)?,
                ))
            })
            .collect()
    }
}
