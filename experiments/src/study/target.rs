//! What an evaluation runs on: a model file realized on a substrate as a [`Classifier`], and the
//! images it is evaluated on.

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};

use crate::classifier::load::{is_baseline_file, load_baseline, load_model};
use crate::classifier::substrate::{SubstrateSpec, classifier};
use crate::classifier::{BaselineClassifier, Classifier, EpClassifier};
use crate::data::{Dataset, check_input_shape, load_eval_set};
use crate::device::Engine;

/// A model on a substrate, on a dataset (shared by `attack` and `robustness`).
#[derive(Debug, Clone)]
pub struct Target {
    /// Model file: EP checkpoint, PyTorch-style state dict + `spec`, or a baseline checkpoint.
    pub model: PathBuf,
    /// Model spec (TOML or JSON) for files without one.
    pub spec: Option<PathBuf>,
    /// Dataset spec; without a split the test split is used.
    pub data: String,
    /// Free-phase steps for predictions (default: the model's T1).
    pub t_predict: Option<usize>,
    /// Free-phase steps the gradient is taken through (default: T_predict).
    pub t_attack: Option<usize>,
    /// How predictions settle (default: plain iteration of T_predict steps).
    pub settle: ep::Settle,
    /// Use only the first N images (class-balanced).
    pub subset: Option<usize>,
    /// Batch size.
    pub batch_size: usize,
    /// The substrate the model is realized on.
    pub substrate: SubstrateSpec,
    /// Gradients averaged per attack step on stochastic substrates (default 1 on deterministic
    /// substrates, 10 on stochastic ones).
    pub eot: Option<usize>,
}

/// A loaded target: the images, the classifier and its free-phase steps (T_predict, T_attack;
/// 0 for baselines).
pub struct Loaded {
    /// The images (pixels in [0, 1]; the classifier normalizes inside).
    pub data: Dataset,
    /// The model on its substrate.
    pub clf: Box<dyn Classifier>,
    /// Free-phase steps of predictions.
    pub t_predict: usize,
    /// Free-phase steps of gradients.
    pub t_attack: usize,
}

impl Target {
    /// Load the dataset (subset) and the model as a classifier on its substrate, computing on
    /// `be`.
    pub fn load<B: Engine>(&self, be: &B, seed: u64) -> Result<Loaded> {
        let d = load_eval_set(&self.data, self.subset)?;
        let (clf, t_predict, t_attack) = self.classifier(be, seed)?;
        check_input_shape(&d, clf.input_shape(), &self.data)?;
        Ok(Loaded {
            data: d,
            clf,
            t_predict,
            t_attack,
        })
    }

    /// The model as a classifier on the substrate (realized from `seed`), with its (T_predict,
    /// T_attack); a baseline gives (0, 0) (on a device preset it is realized as a feed-forward
    /// network). It computes on `be`.
    pub fn classifier<B: Engine>(
        &self,
        be: &B,
        seed: u64,
    ) -> Result<(Box<dyn Classifier>, usize, usize)> {
        Ok(if is_baseline_file(&self.model)? {
            ensure!(
                self.settle.is_default(),
                "{}: settle/--tol apply to EP models only (a baseline has no free phase)",
                self.model.display()
            );
            let m = load_baseline(&self.model)?;
            let c: Box<dyn Classifier> = if self.substrate.is_digital() {
                Box::new(BaselineClassifier::new(be, std::borrow::Cow::Owned(m)))
            } else {
                crate::classifier::substrate::baseline_classifier(be, &m, &self.substrate, seed)
                    .with_context(|| {
                        format!("{} on {}", self.model.display(), self.substrate.label())
                    })?
            };
            (c, 0, 0)
        } else {
            self.ep_classifier(be, seed)?
        })
    }

    /// The EP model as a classifier on the substrate, with its (T_predict, T_attack), computing
    /// on `be`.
    pub fn ep_classifier<B: Engine>(
        &self,
        be: &B,
        seed: u64,
    ) -> Result<(Box<dyn Classifier>, usize, usize)> {
        let net = load_model(be, &self.model, self.spec.as_deref())?;
        let t_predict = self.t_predict.unwrap_or(net.spec.t1);
        let t_attack = self.t_attack.unwrap_or(t_predict);
        ensure!(
            t_predict >= 1 && t_attack >= 1,
            "free-phase steps must be ≥ 1"
        );
        let clf: Box<dyn Classifier> = if self.substrate.is_digital() {
            Box::new(EpClassifier::new(be, net, t_predict, t_attack).with_settle(self.settle))
        } else {
            ensure!(
                self.t_attack.is_none() || self.t_attack == self.t_predict,
                "--t-attack may differ from --t-predict only on the digital substrate"
            );
            classifier(
                be,
                Some(net),
                &self.substrate,
                seed,
                Some(t_predict),
                &self.settle,
            )?
        };
        Ok((clf, t_predict, t_attack))
    }
}
