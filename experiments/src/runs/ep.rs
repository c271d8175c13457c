//! EP training of a digital model: the EP [`Trainer`] run by the shared epoch loop
//! ([`super::epoch_loop`]: per-epoch evaluation, JSONL logs, atomic checkpoints every epoch and
//! exact resume), and the checkpoint format of an EP run.
//!
//! Exact resume: every random draw of a run is keyed by (seed, stream name, epoch, index) — data
//! order, augmentation, β signs — and the checkpoint holds the parameters, the optimizer buffers and
//! the counters, so an interrupted run resumed from its last checkpoint gives the same bits as an
//! uninterrupted one.

use std::path::Path;

use anyhow::Result;

use ep::EpNet;
use ep::checkpoint::{TensorFile, model_from_file, model_to_file};
use ep::optim::Optimizer;
use ep::train::train_batch;
use sim::{Backend, Stream};

use super::config::{RunConfig, TrainConfig, TrainOptions};
use super::epoch_loop::{
    BatchStats, EpochLog, EpochTotals, RunState, StepsPerImage, Trainer, add_training_state,
    capped_test_set, open_run, run_epochs,
};
use crate::data::{Batch, Dataset, Normalization};
use crate::device::Engine;
use crate::eval::evaluate;
use crate::files::write_atomic;

/// Counters stored in a training checkpoint.
pub type TrainState = RunState<TrainConfig>;

/// A model as a tensor file (weights, biases, the spec in metadata), read back from its backend.
fn net_file<B: Backend>(be: &B, net: &EpNet<B>) -> Result<TensorFile> {
    let (ws, bs) = net.to_host(be)?;
    Ok(model_to_file(&net.spec, &ws, &bs)?)
}

/// Save a training checkpoint (model + optimizer + counters) atomically.
pub fn save_checkpoint<B: Backend>(
    be: &B,
    path: &Path,
    net: &EpNet<B>,
    opt: &Optimizer,
    state: &TrainState,
) -> Result<()> {
    let mut f = net_file(be, net)?;
    add_training_state(&mut f, opt, state)?;
    write_atomic(path, &f.to_bytes()?)
}

/// EP training of a digital model ([`train_batch`]), as driven by [`run_epochs`].
struct EpTrainer<'a, B: Engine> {
    be: &'a B,
    cfg: &'a TrainConfig,
    net: EpNet<B>,
    /// The optimizer as the epoch loop sees it (learning rates, step count, checkpointed
    /// buffers); its buffers are stale while `dev_opt` holds them.
    opt: Optimizer,
    /// The optimizer on the backend, made from `opt` at the first batch (after any restore) and
    /// copied back by `sync_optimizer`: batches never move parameters or buffers to the host.
    dev_opt: Option<Optimizer<B::Tensor>>,
    sign_stream: Stream,
    test_set: &'a Dataset,
    norm: Normalization,
    eval_bs: usize,
    /// Mean free-phase steps per image of the last evaluation.
    eval_steps: std::cell::Cell<f64>,
}

impl<B: Engine> Trainer for EpTrainer<'_, B> {
    type Log = EpochLog;

    fn optimizer(&self) -> &Optimizer {
        &self.opt
    }

    fn optimizer_mut(&mut self) -> &mut Optimizer {
        &mut self.opt
    }

    fn sync_optimizer(&mut self) -> Result<()> {
        if let Some(d) = &self.dev_opt {
            let h = d.to_host(self.be)?;
            self.opt.buf1 = h.buf1;
            self.opt.buf2 = h.buf2;
            self.opt.steps = h.steps;
        }
        Ok(())
    }

    fn train_batch(&mut self, batch: Batch, index: u64) -> Result<BatchStats> {
        let be = self.be;
        let x = be.upload_owned(batch.x)?;
        let dev = match &mut self.dev_opt {
            Some(d) => d,
            None => self.dev_opt.insert(self.opt.to_backend(be)?),
        };
        dev.lrs.clone_from(&self.opt.lrs);
        let s = train_batch(
            be,
            &mut self.net,
            dev,
            &self.cfg.ep,
            &x,
            &batch.y,
            &self.sign_stream,
            index,
        )?;
        Ok(BatchStats {
            n: s.n,
            correct: s.correct,
            loss_sum: 0.0,
            steps_sum: s.sample_steps,
        })
    }

    fn evaluate(&self, _epoch: usize) -> Result<f64> {
        // With a batch cap (smoke runs of big configs) the evaluation is capped the same way.
        let eval_set = capped_test_set(self.test_set, self.cfg.train.max_batches, self.eval_bs);
        let e = evaluate(
            self.be,
            &self.net,
            &eval_set,
            &self.norm,
            self.eval_bs,
            self.cfg.model.t1,
            &self.cfg.ep.settle,
            false,
        )?;
        self.eval_steps.set(e.steps_per_image);
        Ok(e.accuracy)
    }

    fn epoch_log(&self, mut base: EpochLog, t: &EpochTotals) -> EpochLog {
        if !self.cfg.ep.settle.is_default() {
            base.steps_per_image = Some(StepsPerImage {
                train: t.steps_sum as f64 / t.seen.max(1) as f64,
                test: self.eval_steps.get(),
            });
        }
        base
    }

    fn report(&self, log: &EpochLog, _t: &EpochTotals, epochs: usize) {
        tracing::debug!(
            "epoch {}/{}: train acc {:.4}, test acc {:.4}, {:.1} img/s, {:.0} s",
            log.epoch,
            epochs,
            log.train_acc,
            log.test_acc,
            log.train_img_per_s,
            log.train_time_s + log.eval_time_s
        );
        let steps = log.steps_per_image.map_or(String::new(), |s| {
            format!("  steps/image {:.1} train, {:.1} test", s.train, s.test)
        });
        println!(
            "epoch {:>3}/{}  train acc {:.4}  test acc {:.4}  {:.1} img/s  {:.0} s{steps}",
            log.epoch,
            epochs,
            log.train_acc,
            log.test_acc,
            log.train_img_per_s,
            log.train_time_s + log.eval_time_s
        );
    }

    fn model_file(&self) -> Result<TensorFile> {
        net_file(self.be, &self.net)
    }
}

/// An EP config as it is trained: the command-line overrides applied, checked, and the input
/// normalization of `[data]` written into the model spec (so the checkpoint carries it).
pub fn prepare(cfg: &TrainConfig, opts: &TrainOptions) -> Result<TrainConfig> {
    let mut cfg = cfg.with_overrides(opts);
    cfg.validate()?;
    cfg.model.input_norm = Some(ep::InputNorm {
        mean: cfg.data.mean.clone(),
        std: cfg.data.std.clone(),
    });
    Ok(cfg)
}

/// Train a digital EP model on `be` as the (prepared, see [`prepare`]) config says; returns the
/// per-epoch logs of this invocation.
pub fn train<B: Engine>(be: &B, cfg: &TrainConfig, opts: &TrainOptions) -> Result<Vec<EpochLog>> {
    let out = opts.out_dir(&cfg.name);
    let (train_set, test_set) = cfg.data.load(cfg.model.input)?;
    let norm = cfg.data.normalization()?;
    let root = Stream::new(cfg.seed, "epsim.train");

    let start = open_run(cfg, &out, opts.resume, "training")?;
    let net = match &start.checkpoint {
        Some(f) => {
            let (spec, ws, bs) = model_from_file(f, None)?;
            EpNet::from_host(be, spec, &ws, &bs)?
        }
        None => EpNet::init(be, cfg.model.clone(), &root.child("init"), cfg.init_scale)?,
    };
    let opt = Optimizer::new(
        cfg.optim.algorithm.clone(),
        cfg.optim.lrs.clone(),
        cfg.wds(),
        2,
    )?;
    let loader = cfg
        .data
        .train_loader(&train_set, cfg.train.batch_size, root.child("data"))
        .normalize(norm.clone())
        .map_err(|e| anyhow::anyhow!("[data] normalization: {e}"))?;
    let mut trainer = EpTrainer {
        be,
        cfg,
        net,
        opt,
        dev_opt: None,
        sign_stream: root.child("beta.sign"),
        test_set: &test_set,
        norm,
        eval_bs: cfg.train.eval_batch_size.unwrap_or(cfg.train.batch_size),
        eval_steps: std::cell::Cell::new(0.0),
    };
    run_epochs(&mut trainer, cfg, &loader, start, opts.stop_after)
}
