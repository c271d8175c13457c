//! The interface every robustness experiment is written against: a classifier of pixel-space images
//! that gives logits and the gradient of a loss with respect to its input. EP models (exact BPTT
//! through the unrolled free phase), the backprop baselines (tape) and the simulated substrates
//! (stochastic, with one noise draw per query) all implement it, so attacks never ask which model or
//! substrate they run on.

pub mod load;
pub mod substrate;

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Result, ensure};
use ep::Dynamics;
use sim::Tensor;

use crate::device::Engine;

/// A loss of the logits: per-sample values `[N]` and the gradient of their **sum** w.r.t. the logits.
pub type LossFn<'a> = &'a dyn Fn(&Tensor) -> Result<(Vec<f32>, Tensor)>;

/// A classifier of images in pixel space ([0, 1], NCHW); any normalization happens inside.
pub trait Classifier: Send + Sync {
    /// Short description for reports (model, substrate, steps).
    fn describe(&self) -> String;
    /// Number of classes.
    fn num_classes(&self) -> usize;
    /// Input shape [C, H, W].
    fn input_shape(&self) -> [usize; 3];
    /// Logits `[N, K]` for a batch `x` `[N, C, H, W]`.
    fn logits(&self, x: &Tensor) -> Result<Tensor>;
    /// Logits and d(Σ loss)/dx for a batch. For a stochastic classifier the gradient is that of one
    /// noise draw (attacks average several: EOT).
    fn loss_grad(&self, x: &Tensor, loss: LossFn<'_>) -> Result<(Tensor, Tensor)>;
    /// True when two queries of the same input can give different outputs (noisy substrates).
    fn stochastic(&self) -> bool {
        false
    }
    /// A realized substrate's cost model: its preset (the laws) and what the realization has
    /// counted so far (snapshots of it give the cost of a window: [`crate::cost::Counts::since`]);
    /// None for the digital engine and for realizations without a cost model.
    fn cost_counts(&self) -> Option<(&devices::Preset, crate::cost::Counts)> {
        None
    }
    /// Free-phase steps of the predictions made so far, summed over their images (an EP model:
    /// with a settle to a tolerance, the steps each image took); None without a free phase.
    fn free_phase_steps(&self) -> Option<u64> {
        None
    }
    /// The cost per inference of the `images` predictions made so far, as record fields
    /// (`energy_j`, `energy_parts_j`, `latency_s`, `vector_reads`, `free_phase_steps`; see the
    /// cost module); None without a cost model ([`Classifier::cost_counts`]).
    fn cost_fields(&self, images: u64) -> Option<Result<CostFields>> {
        let (preset, k) = self.cost_counts()?;
        Some(crate::cost::cost_of(preset, &k, images).map(|c| crate::cost::record_fields(&c, "")))
    }
}

/// Cost fields of a record (see [`Classifier::cost_fields`]).
pub type CostFields = serde_json::Map<String, serde_json::Value>;

/// Run `f`, which does `units` units of work on `clf` (it returns them beside its result:
/// predictions of images, or an attack on images), and give the cost per unit of what `clf`'s
/// realization counted meanwhile as record fields with `prefix` (see
/// [`crate::cost::record_fields`]); a classifier without a cost model gives only its free-phase
/// steps per unit (`free_phase_steps`, from [`Classifier::free_phase_steps`]) when it settles
/// to a tolerance, else no fields.
pub fn costed<T>(
    clf: &dyn Classifier,
    prefix: &str,
    f: impl FnOnce() -> Result<(T, u64)>,
) -> Result<(T, CostFields)> {
    let before = clf.cost_counts().map(|(_, k)| k);
    let steps_before = clf.free_phase_steps();
    let (out, units) = f()?;
    let fields = match (before, clf.cost_counts()) {
        (Some(b), Some((preset, k))) if units > 0 => {
            let c = crate::cost::cost_of(preset, &k.since(&b), units)?;
            crate::cost::record_fields(&c, prefix)
        }
        _ => match (steps_before, clf.free_phase_steps()) {
            (Some(b), Some(a)) if units > 0 => {
                let mut f = CostFields::new();
                let per = (a - b) as f64 / units as f64;
                f.insert(format!("{prefix}free_phase_steps"), per.into());
                f
            }
            _ => CostFields::new(),
        },
    };
    Ok((out, fields))
}

/// `rec` as a JSON object with `fields` (e.g. [`costed`]'s) added.
pub fn with_fields<T: serde::Serialize>(rec: &T, fields: CostFields) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(rec)?;
    v.as_object_mut()
        .ok_or_else(|| anyhow::anyhow!("a record is a JSON object"))?
        .extend(fields);
    Ok(v)
}

/// Counts forward queries and gradient evaluations of a classifier (per image).
pub struct Counted<'a, C: Classifier + ?Sized> {
    /// The wrapped classifier.
    pub inner: &'a C,
    /// Images passed through `logits`.
    pub queries: AtomicU64,
    /// Images passed through `loss_grad`.
    pub grads: AtomicU64,
}

impl<'a, C: Classifier + ?Sized> Counted<'a, C> {
    /// Wrap `inner` with zeroed counters.
    pub fn new(inner: &'a C) -> Self {
        Counted {
            inner,
            queries: AtomicU64::new(0),
            grads: AtomicU64::new(0),
        }
    }
}

impl<C: Classifier + ?Sized> Classifier for Counted<'_, C> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
    fn input_shape(&self) -> [usize; 3] {
        self.inner.input_shape()
    }
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        self.queries
            .fetch_add(x.shape()[0] as u64, Ordering::Relaxed);
        self.inner.logits(x)
    }
    fn loss_grad(&self, x: &Tensor, loss: LossFn<'_>) -> Result<(Tensor, Tensor)> {
        self.grads.fetch_add(x.shape()[0] as u64, Ordering::Relaxed);
        self.inner.loss_grad(x, loss)
    }
    fn stochastic(&self) -> bool {
        self.inner.stochastic()
    }
    fn cost_counts(&self) -> Option<(&devices::Preset, crate::cost::Counts)> {
        self.inner.cost_counts()
    }
    fn free_phase_steps(&self) -> Option<u64> {
        self.inner.free_phase_steps()
    }
}

/// Per-channel normalization x ↦ (x − mean) / std applied inside a model.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalize {
    /// Mean per channel.
    pub mean: Vec<f32>,
    /// Std per channel.
    pub std: Vec<f32>,
}

impl Normalize {
    /// The input normalization an EP model carries in its spec (identity when it has none).
    pub fn of_model(spec: &ep::ModelSpec) -> Self {
        let c = spec.input[0];
        match &spec.input_norm {
            Some(n) => Normalize {
                mean: n.mean.clone(),
                std: n.std.clone(),
            },
            None => Normalize {
                mean: vec![0.0; c],
                std: vec![1.0; c],
            },
        }
    }

    /// Apply to an NCHW batch.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ensure!(
            x.ndim() == 4 && x.shape()[1] == self.mean.len(),
            "normalize: expected [N, {}, H, W], got {:?}",
            self.mean.len(),
            x.shape()
        );
        let mut y = x.clone();
        for (c, mut plane) in y.axis_iter_mut(ndarray::Axis(1)).enumerate() {
            let (m, s) = (self.mean[c], self.std[c]);
            plane.mapv_inplace(|v| (v - m) / s);
        }
        Ok(y)
    }
    /// Chain rule back through the normalization: dL/dx = dL/dx̂ / std.
    pub fn backward(&self, g: &Tensor) -> Tensor {
        let mut y = g.clone();
        for (c, mut plane) in y.axis_iter_mut(ndarray::Axis(1)).enumerate() {
            let s = self.std[c];
            plane.mapv_inplace(|v| v / s);
        }
        y
    }
}

/// Run `f` (BPTT through some dynamics on backend `be`) with `loss` of the host logits, summed
/// over the batch, as its loss on backend tensors; an error of `loss` comes back as it was (not as
/// the engine's error text).
pub(crate) fn with_host_loss<B: Engine, T>(
    be: &B,
    loss: LossFn<'_>,
    f: impl FnOnce(&mut dyn FnMut(&B::Tensor) -> sim::Result<(f32, B::Tensor)>) -> sim::Result<T>,
) -> Result<T> {
    let mut err: Option<anyhow::Error> = None;
    let r = f(&mut |logits| {
        let host = be.host(logits)?;
        match loss(&host) {
            Ok((vals, g)) => Ok((vals.iter().sum(), be.upload_owned(g)?)),
            Err(e) => {
                let msg = e.to_string();
                err = Some(e);
                Err(sim::Error::Other(msg))
            }
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    Ok(r?)
}

/// Input gradients of predictions settled to a tolerance, each image's through the steps its own
/// prediction took (the honest gradient of what is evaluated): `logits` (host) and `steps` are
/// the settled batch's; `loss` gives d loss/d logits; the images that stopped at step k are
/// differentiated together, `bptt(their rows of xn, k, their rows of d loss/d logits)` giving
/// their d loss/d xn. Returns d(Σ loss)/d xn on the host, rows in batch order.
pub(crate) fn per_image_steps_grad<B: Engine>(
    be: &B,
    xn: &B::Tensor,
    logits: &Tensor,
    steps: &[usize],
    loss: LossFn<'_>,
    mut bptt: impl FnMut(&B::Tensor, usize, B::Tensor) -> sim::Result<B::Tensor>,
) -> Result<Tensor> {
    use ndarray::Axis;
    let (_, dlogits) = loss(logits)?;
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, &k) in steps.iter().enumerate() {
        groups.entry(k).or_default().push(i);
    }
    let mut dx = Tensor::zeros(be.shape(xn));
    for (k, rows) in groups {
        let xg = be.take_rows(xn, &rows)?;
        let dg = be.upload_owned(dlogits.select(Axis(0), &rows))?;
        let g = be.download(&bptt(&xg, k, dg)?)?;
        for (j, &i) in rows.iter().enumerate() {
            dx.index_axis_mut(Axis(0), i)
                .assign(&g.index_axis(Axis(0), j));
        }
    }
    Ok(dx)
}

/// An EP network as a classifier: predictions from a free phase of `t_predict` steps; input
/// gradients by exact BPTT through a free phase of `t_attack` steps from the zero state (equal to
/// `t_predict` for an honest evaluation; the AdvEP protocol uses fewer).
pub struct EpClassifier<B: Engine> {
    /// The backend the network lives on.
    pub be: B,
    /// The network.
    pub net: ep::EpNet<B>,
    /// Normalization applied inside the model.
    pub norm: Normalize,
    /// Free-phase steps for predictions.
    pub t_predict: usize,
    /// Free-phase steps the gradient is taken through.
    pub t_attack: usize,
    /// How predictions settle (`t_predict`: the plain steps, or the cap).
    pub settle: ep::Settle,
    /// Free-phase steps of the predictions so far, summed over their images (reported only with
    /// a settle to a tolerance, where they vary).
    pub image_steps: AtomicU64,
}

impl<B: Engine> EpClassifier<B> {
    /// `net` on `be` with the normalization of its spec.
    pub fn new(be: &B, net: ep::EpNet<B>, t_predict: usize, t_attack: usize) -> Self {
        EpClassifier {
            be: be.clone(),
            norm: Normalize::of_model(&net.spec),
            net,
            t_predict,
            t_attack,
            settle: ep::Settle::default(),
            image_steps: AtomicU64::new(0),
        }
    }

    /// Settle predictions with `settle` (gradients: see [`Classifier::loss_grad`] of this type).
    pub fn with_settle(mut self, settle: ep::Settle) -> Self {
        self.settle = settle;
        self
    }
}

impl<B: Engine> Classifier for EpClassifier<B> {
    fn describe(&self) -> String {
        let how = if self.settle.is_default() {
            format!("T_predict {}", self.t_predict)
        } else {
            format!("settle {}", self.settle.describe(self.t_predict))
        };
        format!(
            "EP ({} synapses, {how}, T_attack {})",
            self.net.spec.n_synapses(),
            self.t_attack
        )
    }
    fn num_classes(&self) -> usize {
        self.net.spec.n_classes()
    }
    fn input_shape(&self) -> [usize; 3] {
        self.net.spec.input
    }
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let be = &self.be;
        let xn = be.upload_owned(self.norm.forward(x)?)?;
        let st = ep::Settler::free_phase_with(&self.net, be, &xn, self.t_predict, &self.settle)?;
        self.image_steps.fetch_add(
            st.per_sample_steps().sum::<usize>() as u64,
            Ordering::Relaxed,
        );
        Ok(be.download(&self.net.logits(be, &st.state)?)?)
    }
    fn free_phase_steps(&self) -> Option<u64> {
        (!self.settle.is_default()).then(|| self.image_steps.load(Ordering::Relaxed))
    }
    /// Gradients through `t_attack` plain steps; for predictions settled to a tolerance with
    /// `t_attack` = `t_predict` (the standard protocol), each image's through the steps its
    /// prediction took ([`per_image_steps_grad`]).
    fn loss_grad(&self, x: &Tensor, loss: LossFn<'_>) -> Result<(Tensor, Tensor)> {
        let be = &self.be;
        let xn = be.upload_owned(self.norm.forward(x)?)?;
        if !self.settle.is_default() && self.t_attack == self.t_predict {
            let st =
                ep::Settler::free_phase_with(&self.net, be, &xn, self.t_predict, &self.settle)?;
            let logits = be.download(&self.net.logits(be, &st.state)?)?;
            let steps: Vec<usize> = st.per_sample_steps().collect();
            let dx = per_image_steps_grad(be, &xn, &logits, &steps, loss, |xg, k, dg| {
                let b = self
                    .net
                    .free_phase_bptt(be, xg, k, 0, false, |_| Ok((0.0, dg.clone())))?;
                Ok(b.dx)
            })?;
            return Ok((logits, self.norm.backward(&dx)));
        }
        let b = with_host_loss(be, loss, |lg| {
            self.net
                .free_phase_bptt(be, &xn, self.t_attack, 0, false, lg)
        })?;
        let dx = be.download(&b.dx)?;
        Ok((be.download(&b.logits)?, self.norm.backward(&dx)))
    }
}

/// A backprop baseline (BP-CNN, AdvCNN, ViT) as a classifier: evaluation mode (batch norm with
/// running statistics), normalization inside, input gradients by the tape.
pub struct BaselineClassifier<'a, B: Engine> {
    /// The backend the model computes on.
    pub be: B,
    /// The model (borrowed during training, owned when loaded from a file).
    pub model: std::borrow::Cow<'a, ep::baselines::Baseline>,
    /// Normalization applied inside the model.
    pub norm: Normalize,
}

impl<'a, B: Engine> BaselineClassifier<'a, B> {
    /// Wrap a model computing on `be`; the normalization comes from its spec (identity when it
    /// has none).
    pub fn new(be: &B, model: std::borrow::Cow<'a, ep::baselines::Baseline>) -> Self {
        let c = model.spec.input()[0];
        let norm = match &model.spec.input_norm {
            Some(n) => Normalize {
                mean: n.mean.clone(),
                std: n.std.clone(),
            },
            None => Normalize {
                mean: vec![0.0; c],
                std: vec![1.0; c],
            },
        };
        BaselineClassifier {
            be: be.clone(),
            model,
            norm,
        }
    }
}

impl<B: Engine> Classifier for BaselineClassifier<'_, B> {
    fn describe(&self) -> String {
        match &self.model.spec.adv {
            Some(a) => format!("{} (PGD-{} ε={})", self.model.spec.kind(), a.norm, a.eps),
            None => self.model.spec.kind().to_string(),
        }
    }
    fn num_classes(&self) -> usize {
        self.model.spec.n_classes()
    }
    fn input_shape(&self) -> [usize; 3] {
        self.model.spec.input()
    }
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.model.logits(&self.be, &self.norm.forward(x)?)?)
    }
    fn loss_grad(&self, x: &Tensor, loss: LossFn<'_>) -> Result<(Tensor, Tensor)> {
        let xn = self.norm.forward(x)?;
        let mut err: Option<anyhow::Error> = None;
        let r = self
            .model
            .input_grad(&self.be, &xn, |logits| match loss(logits) {
                Ok((_, g)) => Ok(g),
                Err(e) => {
                    let msg = e.to_string();
                    err = Some(e);
                    Err(sim::Error::Other(msg))
                }
            });
        if let Some(e) = err {
            return Err(e);
        }
        let (logits, dx) = r?;
        Ok((logits, self.norm.backward(&dx)))
    }
}
