//! Driving the backprop baselines (BP-CNN, AdvCNN, ViT): the shared epoch loop
//! ([`super::epoch_loop`]) over the same data pipeline as EP, cross-entropy on the tape, SGD/Adam
//! with a per-epoch schedule, per-epoch evaluation, JSONL logs, atomic checkpoints every epoch and
//! exact resume (parameters, batch-norm buffers, optimizer buffers and counters are in the file;
//! every random draw is keyed by seed, stream name, epoch and index).
//!
//! AdvCNN: each training batch is replaced by PGD adversarial examples (the attacks' [`Pgd`],
//! cross-entropy on the true labels, box-clipped, one run) against the current model in evaluation
//! mode; the PGD random start is keyed by the seed of stream `adv.pgd` at the global batch index and
//! the dataset index of each image. Note that [`Pgd`] keeps, per image, the first iterate that
//! fools the model (else the iterate of highest loss), not necessarily the last. An `eps` list
//! trains one model per ε into `<out>/eps-<ε>/`.

use std::borrow::Cow;
use std::path::Path;

use anyhow::{Context, Result};

use ep::baselines::{AdvTrained, Baseline, BaselineSpec};
use ep::checkpoint::TensorFile;
use ep::optim::Optimizer;
use ep::train::argmax_rows;
use sim::{Stream, Tensor};

use super::config::{BaselineConfig, ModelKind, RunConfig, TrainOptions};
use super::epoch_loop::{
    BatchStats, EpochLog, EpochTotals, RunState, Trainer, open_run, run_epochs,
};
use crate::attacks::{Objective, Pgd};
use crate::classifier::{BaselineClassifier, Normalize};
use crate::data::{Batch, Dataset, Normalization};
use crate::device::Engine;

/// Counters stored in a baseline training checkpoint (the config: for AdvCNN with its single ε).
pub type BpTrainState = RunState<BaselineConfig>;

/// Train a baseline as the config says; for AdvCNN with several ε, one run per ε (in
/// `<out>/eps-<ε>/`), computing on `be`. Returns the per-epoch logs of this invocation (all runs
/// in order).
pub fn train<B: Engine>(
    be: &B,
    cfg: &BaselineConfig,
    opts: &TrainOptions,
) -> Result<Vec<EpochLog>> {
    let out = opts.out_dir(&cfg.name);
    match (&cfg.kind, &cfg.adv) {
        (ModelKind::AdvCnn, Some(adv)) => {
            let mut logs = Vec::new();
            for &eps in &adv.eps {
                let mut one = cfg.clone();
                if let Some(a) = one.adv.as_mut() {
                    a.eps = vec![eps];
                }
                println!("adversarial training, {} ε = {eps}", adv.norm);
                logs.extend(train_one(be, &one, opts, &out.join(format!("eps-{eps}")))?);
            }
            Ok(logs)
        }
        _ => train_one(be, cfg, opts, &out),
    }
}

/// Backprop training of a baseline (on PGD examples for AdvCNN), as driven by [`run_epochs`].
struct BpTrainer<'a, B: Engine> {
    be: &'a B,
    model: Baseline,
    opt: Optimizer,
    /// The training attack of AdvCNN (images in pixel space, normalized after the attack).
    adv: Option<Pgd>,
    host_norm: Normalize,
    pgd_seeds: Stream,
    test_set: &'a Dataset,
    norm: Normalization,
    eval_bs: usize,
    /// `[train] max_batches`: also caps the test set (as for EP).
    max_batches: Option<usize>,
}

impl<B: Engine> Trainer for BpTrainer<'_, B> {
    type Log = EpochLog;

    fn optimizer(&self) -> &Optimizer {
        &self.opt
    }

    fn optimizer_mut(&mut self) -> &mut Optimizer {
        &mut self.opt
    }

    fn train_batch(&mut self, batch: Batch, index: u64) -> Result<BatchStats> {
        let x: Tensor = match &self.adv {
            None => batch.x,
            Some(pgd) => {
                let clf = BaselineClassifier::new(self.be, Cow::Borrowed(&self.model));
                let ids: Vec<u64> = batch.indices.iter().map(|&i| i as u64).collect();
                let seed = self.pgd_seeds.u64_at(index);
                let r = pgd.attack(&clf, &batch.x, &batch.y, None, &ids, seed)?;
                self.host_norm.forward(&r.x_adv)?
            }
        };
        let out = self.model.train_grads(self.be, &x, &batch.y)?;
        for (g, (name, _)) in out.grads.iter().zip(&self.model.params) {
            sim::check_finite(&format!("gradient of {name} (diverged training?)"), g)?;
        }
        let mut ps = self.model.param_tensors();
        self.opt.step(&mut ps, &out.grads)?;
        self.model.set_params(ps)?;
        let pred = argmax_rows(&out.logits);
        Ok(BatchStats {
            n: batch.y.len(),
            correct: pred.iter().zip(&batch.y).filter(|(p, l)| p == l).count(),
            loss_sum: out.loss as f64 * batch.y.len() as f64,
            steps_sum: 0,
        })
    }

    fn progress(&self, t: &EpochTotals) -> String {
        format!(
            "loss {:.3}  acc {:.3}  {:.1} img/s",
            t.loss_sum / t.seen as f64,
            t.correct as f64 / t.seen as f64,
            t.seen as f64 / t.elapsed_s
        )
    }

    fn evaluate(&self, _epoch: usize) -> Result<f64> {
        // With a batch cap (smoke runs of big configs) the evaluation is capped the same way.
        let eval_set =
            super::epoch_loop::capped_test_set(self.test_set, self.max_batches, self.eval_bs);
        crate::eval::evaluate_baseline(self.be, &self.model, &eval_set, &self.norm, self.eval_bs)
    }

    fn epoch_log(&self, base: EpochLog, _t: &EpochTotals) -> EpochLog {
        base
    }

    fn report(&self, log: &EpochLog, t: &EpochTotals, epochs: usize) {
        println!(
            "epoch {:>3}/{}  loss {:.4}  train acc {:.4}  test acc {:.4}  {:.1} img/s  {:.0} s",
            log.epoch,
            epochs,
            t.loss_sum / t.seen.max(1) as f64,
            log.train_acc,
            log.test_acc,
            log.train_img_per_s,
            log.train_time_s + log.eval_time_s
        );
    }

    fn model_file(&self) -> Result<TensorFile> {
        Ok(self.model.to_file()?)
    }
}

fn train_one<B: Engine>(
    be: &B,
    cfg: &BaselineConfig,
    opts: &TrainOptions,
    out: &Path,
) -> Result<Vec<EpochLog>> {
    let cfg = cfg.with_overrides(opts);
    cfg.validate()?;
    let spec = BaselineSpec {
        arch: cfg.arch()?,
        input_norm: Some(ep::InputNorm {
            mean: cfg.data.mean.clone(),
            std: cfg.data.std.clone(),
        }),
        adv: cfg.adv.as_ref().map(|a| AdvTrained {
            norm: a.norm.to_string(),
            eps: a.eps[0],
        }),
    };
    let (train_set, test_set) = cfg.data.load(spec.input())?;
    let norm = cfg.data.normalization()?;
    let root = Stream::new(cfg.seed, "epsim.train");

    let start = open_run(&cfg, out, opts.resume, "baseline training")?;
    let model = match &start.checkpoint {
        Some(f) => {
            Baseline::from_file(f, None).with_context(|| format!("{}", start.ckpt.display()))?
        }
        None => Baseline::init(spec, &root.child("init"))?,
    };
    let opt = Optimizer::new(
        cfg.optim.algorithm.clone(),
        cfg.optim.lrs.clone(),
        vec![cfg.wd()],
        model.params.len(),
    )?;

    // Adversarial training attacks pixel-space images; otherwise the loader normalizes.
    let adv = cfg.adv.as_ref().map(|a| Pgd {
        step: a.step_ratio.unwrap_or(2.5 / a.steps as f32) * a.eps[0],
        iters: a.steps,
        restarts: 1,
        random_start: a.random_start,
        loss: Objective::Ce,
        use_predicted: false,
        clip: true,
        eot_iter: 1,
        ..Pgd::new(a.norm, a.eps[0])
    });
    let mut loader = cfg
        .data
        .train_loader(&train_set, cfg.train.batch_size, root.child("data"));
    if adv.is_none() {
        loader = loader
            .normalize(norm.clone())
            .map_err(|e| anyhow::anyhow!("[data] normalization: {e}"))?;
    }
    let mut trainer = BpTrainer {
        be,
        model,
        opt,
        adv,
        host_norm: Normalize {
            mean: cfg.data.mean.clone(),
            std: cfg.data.std.clone(),
        },
        pgd_seeds: root.child("adv.pgd"),
        test_set: &test_set,
        norm,
        eval_bs: cfg.train.eval_batch_size.unwrap_or(cfg.train.batch_size),
        max_batches: cfg.train.max_batches,
    };
    run_epochs(&mut trainer, &cfg, &loader, start, opts.stop_after)
}
