//! The training epoch loop shared by the EP ([`super::ep`]), backprop baseline
//! ([`super::bp`]) and substrate ([`super::substrate`]) drivers.
//!
//! A run lives in one directory: `checkpoint.safetensors` (model, optimizer buffers, the counters
//! and config of [`RunState`] under the metadata key `epsim.train`, plus whatever the driver adds)
//! and `log.jsonl` (one line per epoch). [`open_run`] starts a run fresh or, with `--resume`, from
//! its checkpoint (refusing a different config); the driver builds its [`Trainer`] (from the
//! checkpoint when there is one) and [`run_epochs`] does the rest: per epoch the learning-rate plan
//! ([`epoch_plan`]), the batches with a progress bar, the test evaluation, the log line, an atomic
//! checkpoint and the log rewritten atomically.
//!
//! Exact resume: every random draw of a run is keyed by (seed, stream name, epoch, index), the
//! trainer is handed the global batch index, and the checkpoint holds the parameters, the optimizer
//! buffers and the counters, so an interrupted run resumed from its last checkpoint gives the same
//! bits as an uninterrupted one. The log is cut back to the checkpoint's epoch on resume.
//!
//! What differs between drivers (the model, how a batch is trained, how the test set is evaluated,
//! the progress message, the printed epoch line, extra log fields and checkpoint entries) is in the
//! [`Trainer`] hooks.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use ep::checkpoint::{TRAIN_KEY, TensorFile};
use ep::optim::Optimizer;

use super::config::{LoopConfig, OptimConfig, RunConfig};
use crate::data::{Batch, Dataset, Loader};
use crate::files::{DirLock, write_atomic};

/// One line of `log.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochLog {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Learning rates used in this epoch.
    pub lrs: Vec<f32>,
    /// Free-phase training accuracy over the epoch's batches.
    pub train_acc: f64,
    /// Test accuracy (free phase of T1 steps).
    pub test_acc: f64,
    /// Training images seen this epoch.
    pub train_images: usize,
    /// Wall time of the training part (s).
    pub train_time_s: f64,
    /// Training throughput (images/s).
    pub train_img_per_s: f64,
    /// Wall time of the evaluation (s).
    pub eval_time_s: f64,
    /// EP with a settle to a tolerance: the mean steps of the dynamics per training image, free
    /// and nudged phases together, and per test image (free phase); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps_per_image: Option<StepsPerImage>,
}

/// Mean steps of the dynamics per image (see [`EpochLog::steps_per_image`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepsPerImage {
    /// Training: free and nudged phases.
    pub train: f64,
    /// Evaluation: the free phase.
    pub test: f64,
}

/// Counters stored in a training checkpoint (metadata `epsim.train`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState<C> {
    /// Epochs completed.
    pub epochs_done: usize,
    /// Training batches completed (global index of the next batch).
    pub batches_done: u64,
    /// Optimizer steps taken.
    pub optimizer_steps: u64,
    /// The config the run was started with (a resumed run must use the same; for AdvCNN: with its
    /// single ε).
    pub config: C,
}

/// Where a run starts: its files, its counters and, when resuming, its checkpoint.
pub struct RunStart<C> {
    /// `<out>/checkpoint.safetensors`.
    pub ckpt: PathBuf,
    /// `<out>/log.jsonl`.
    pub log: PathBuf,
    /// The counters to continue from (zero for a fresh run).
    pub state: RunState<C>,
    /// The checkpoint read on resume (the driver restores its model from it; [`run_epochs`] the
    /// optimizer).
    pub checkpoint: Option<TensorFile>,
    /// The run directory's lock, held until the run ends.
    pub lock: DirLock,
}

/// The epochs a training checkpoint has done (None when it is absent or not a training run's).
pub fn epochs_done(ckpt: &Path) -> Option<usize> {
    let bytes = std::fs::read(ckpt).ok()?;
    let f = TensorFile::from_bytes(&bytes).ok()?;
    let state: serde_json::Value = serde_json::from_str(f.metadata.get(TRAIN_KEY)?).ok()?;
    state["epochs_done"].as_u64().map(|e| e as usize)
}

/// Open the run in `out`: fresh when it has no checkpoint; else, with `resume`, read the
/// checkpoint and its counters (the config must equal `cfg` up to `[train] epochs` and the
/// device), without it an error. `what` names the state in errors ("training", "baseline training").
pub fn open_run<C: RunConfig>(
    cfg: &C,
    out: &Path,
    resume: bool,
    what: &str,
) -> Result<RunStart<C>> {
    let lock = DirLock::acquire(out, &format!("{what} run"))?;
    let ckpt = out.join("checkpoint.safetensors");
    let log = out.join("log.jsonl");
    if !ckpt.exists() {
        let state = RunState {
            epochs_done: 0,
            batches_done: 0,
            optimizer_steps: 0,
            config: cfg.clone(),
        };
        return Ok(RunStart {
            ckpt,
            log,
            state,
            checkpoint: None,
            lock,
        });
    }
    if !resume {
        bail!(
            "{} exists: pass --resume to continue that run, or choose another --out / name",
            ckpt.display()
        );
    }
    let bytes = std::fs::read(&ckpt).with_context(|| format!("reading {}", ckpt.display()))?;
    let f = TensorFile::from_bytes(&bytes).with_context(|| format!("{}", ckpt.display()))?;
    let state: RunState<C> =
        serde_json::from_str(f.metadata.get(TRAIN_KEY).with_context(|| {
            format!(
                "{}: not a training checkpoint (no {TRAIN_KEY})",
                ckpt.display()
            )
        })?)
        .with_context(|| format!("{}: bad {what} state", ckpt.display()))?;
    // Epochs may grow, and the device is not part of the run.
    let mut same = state.config.clone();
    same.train_loop_mut().epochs = cfg.train_loop().epochs;
    *same.device_mut() = cfg.device();
    if &same != cfg {
        let (was, now) = (serde_json::to_value(&same)?, serde_json::to_value(cfg)?);
        bail!(
            "{}: the checkpoint was made with a different config: {} (only [train] epochs may \
             change on resume)",
            ckpt.display(),
            first_difference(&was, &now, "")
        );
    }
    Ok(RunStart {
        ckpt,
        log,
        state,
        checkpoint: Some(f),
        lock,
    })
}

/// The first key path where two JSON values differ, with both values: `optim.lrs[0]: 0.05 in the
/// checkpoint, 0.07 now`.
fn first_difference(was: &serde_json::Value, now: &serde_json::Value, at: &str) -> String {
    use serde_json::Value;
    // Config numbers are mostly f32: print them as written (0.1, not 0.10000000149011612).
    let show = |v: &Value| match v.as_f64() {
        Some(x) if v.is_f64() && (x as f32) as f64 == x => format!("{}", x as f32),
        _ => v.to_string(),
    };
    match (was, now) {
        (Value::Object(a), Value::Object(b)) => {
            for k in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) if x == y => {}
                    (Some(x), Some(y)) => return first_difference(x, y, &path),
                    (x, y) => {
                        let opt = |v: Option<&Value>| v.map_or("absent".into(), show);
                        return format!("{path}: {} in the checkpoint, {} now", opt(x), opt(y));
                    }
                }
            }
            format!("{at}: differs")
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                if x != y {
                    return first_difference(x, y, &format!("{at}[{i}]"));
                }
            }
            format!("{at}: differs")
        }
        _ => format!("{at}: {} in the checkpoint, {} now", show(was), show(now)),
    }
}

thread_local! {
    static FAULT_AFTER_LOG: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Fault injection for tests: make [`run_epochs`] on this thread fail right after writing the log
/// of epoch `epoch` (1-based) and before its checkpoint, as a kill there would; `None` to clear.
#[doc(hidden)]
pub fn inject_fault_after_log(epoch: Option<usize>) {
    FAULT_AFTER_LOG.with(|f| f.set(epoch));
}

/// What one training batch gave.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchStats {
    /// Images.
    pub n: usize,
    /// Correctly classified images (training prediction).
    pub correct: usize,
    /// Sum of the per-image losses (0 where the trainer has no loss).
    pub loss_sum: f64,
    /// Steps of the dynamics summed over the images and phases (0 where there are none).
    pub steps_sum: usize,
}

/// The running totals of an epoch.
#[derive(Debug, Clone, Copy, Default)]
pub struct EpochTotals {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Images trained on.
    pub seen: usize,
    /// Correct training predictions.
    pub correct: usize,
    /// Sum of the losses.
    pub loss_sum: f64,
    /// Steps of the dynamics summed over the images and phases.
    pub steps_sum: usize,
    /// Wall time since the epoch started (s).
    pub elapsed_s: f64,
}

/// The model-specific part of a training run, driven by [`run_epochs`].
pub trait Trainer {
    /// One line of `log.jsonl` (the common [`EpochLog`] plus any fields of the driver).
    type Log: Serialize + Into<EpochLog>;

    /// The optimizer (the loop sets its learning rates per epoch, restores and saves its buffers).
    fn optimizer(&self) -> &Optimizer;
    /// The optimizer, mutable.
    fn optimizer_mut(&mut self) -> &mut Optimizer;
    /// Bring [`Trainer::optimizer`] up to date with optimizer state kept elsewhere (on the
    /// backend) before it is checkpointed; the default keeps none elsewhere.
    fn sync_optimizer(&mut self) -> Result<()> {
        Ok(())
    }
    /// Called before the first batch of every epoch (0-based).
    fn start_epoch(&mut self, _epoch: usize) {}
    /// Train on one batch; `index` is the global batch index (the key of its random draws).
    fn train_batch(&mut self, batch: Batch, index: u64) -> Result<BatchStats>;
    /// The context of an error in batch `batch` (0-based) of `epoch` (0-based).
    fn batch_context(&self, epoch: usize, batch: usize) -> String {
        format!("epoch {} batch {}", epoch + 1, batch + 1)
    }
    /// The progress-bar message after a batch.
    fn progress(&self, t: &EpochTotals) -> String {
        format!(
            "acc {:.3}  {:.1} img/s",
            t.correct as f64 / t.seen as f64,
            t.seen as f64 / t.elapsed_s
        )
    }
    /// Test accuracy after `epoch` (0-based).
    fn evaluate(&self, epoch: usize) -> Result<f64>;
    /// The log line of an epoch from its common fields.
    fn epoch_log(&self, base: EpochLog, t: &EpochTotals) -> Self::Log;
    /// Print the summary line of an epoch (of `epochs`).
    fn report(&self, log: &Self::Log, t: &EpochTotals, epochs: usize);
    /// The model part of the checkpoint (the loop adds the optimizer buffers and the counters).
    fn model_file(&self) -> Result<TensorFile>;
    /// Add the driver's own entries to a checkpoint (after the optimizer and the counters).
    fn extend_checkpoint(&self, _f: &mut TensorFile) -> Result<()> {
        Ok(())
    }
}

/// Add an optimizer's buffers to a checkpoint (`optimizer.{j}.buf1|buf2`).
pub fn push_optimizer(f: &mut TensorFile, opt: &Optimizer) {
    for (j, (b1, b2)) in opt.buf1.iter().zip(&opt.buf2).enumerate() {
        if let Some(t) = b1 {
            f.tensors.push((format!("optimizer.{j}.buf1"), t.clone()));
        }
        if let Some(t) = b2 {
            f.tensors.push((format!("optimizer.{j}.buf2"), t.clone()));
        }
    }
}

/// Restore an optimizer's buffers and step count from a checkpoint.
pub fn restore_optimizer(f: &TensorFile, opt: &mut Optimizer, steps: u64) {
    for j in 0..opt.buf1.len() {
        opt.buf1[j] = f.get(&format!("optimizer.{j}.buf1")).cloned();
        opt.buf2[j] = f.get(&format!("optimizer.{j}.buf2")).cloned();
    }
    opt.steps = steps;
}

/// Make a model file a training checkpoint: the optimizer buffers and the counters.
pub fn add_training_state<C: Serialize>(
    f: &mut TensorFile,
    opt: &Optimizer,
    state: &RunState<C>,
) -> Result<()> {
    push_optimizer(f, opt);
    f.metadata
        .insert(TRAIN_KEY.into(), serde_json::to_string(state)?);
    Ok(())
}

/// The lines of `log.jsonl` up to epoch `epochs_done` (the log stays consistent with the
/// checkpoint a run resumes from).
pub fn retained_log_lines(log_path: &Path, epochs_done: usize) -> Vec<String> {
    let mut log_lines: Vec<String> = std::fs::read_to_string(log_path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect();
    log_lines.retain(|l| {
        serde_json::from_str::<EpochLog>(l)
            .map(|e| e.epoch <= epochs_done)
            .unwrap_or(false)
    });
    log_lines
}

/// The set-up of one epoch: the scheduled learning rate of every group, the number of batches
/// (capped by `[train] max_batches`) and the progress bar.
pub fn epoch_plan(
    optim: &OptimConfig,
    train: &LoopConfig,
    loader: &Loader<'_>,
    epoch: usize,
) -> (Vec<f32>, usize, indicatif::ProgressBar) {
    let lrs = optim
        .lrs
        .iter()
        .map(|&l| optim.schedule.lr(l, epoch))
        .collect();
    let nb = train
        .max_batches
        .map_or(loader.num_batches(), |m| m.min(loader.num_batches()));
    let pb = crate::progress::progress(nb as u64, &format!("epoch {}/{}", epoch + 1, train.epochs));
    (lrs, nb, pb)
}

/// The test set an epoch is evaluated on: with a batch cap (smoke runs of big configs) the first
/// `max_batches · eval_batch` images, class-balanced; else all of it.
pub fn capped_test_set<'a>(
    test_set: &'a Dataset,
    max_batches: Option<usize>,
    eval_batch: usize,
) -> Cow<'a, Dataset> {
    match max_batches {
        Some(m) if m * eval_batch < test_set.len() => {
            Cow::Owned(crate::data::balanced_subset(test_set, m * eval_batch))
        }
        _ => Cow::Borrowed(test_set),
    }
}

/// Train from `start` until `[train] epochs` of `cfg` are done (or `stop_after` epochs of this
/// invocation): per epoch the batches of `loader` (epoch `e` draws order and augmentation of data
/// epoch `e`), the evaluation, the log line, the checkpoint. Returns the logs of this invocation.
pub fn run_epochs<T: Trainer, C: RunConfig>(
    trainer: &mut T,
    cfg: &C,
    loader: &Loader<'_>,
    start: RunStart<C>,
    stop_after: Option<usize>,
) -> Result<Vec<EpochLog>> {
    let RunStart {
        ckpt,
        log: log_path,
        mut state,
        checkpoint,
        lock: _lock,
    } = start;
    if let Some(f) = &checkpoint {
        restore_optimizer(f, trainer.optimizer_mut(), state.optimizer_steps);
        tracing::info!("resuming {} after epoch {}", cfg.name(), state.epochs_done);
    }
    drop(checkpoint);
    // Keep the log consistent with the checkpoint: drop lines of epochs after it.
    let mut log_lines = retained_log_lines(&log_path, state.epochs_done);
    let epochs = cfg.train_loop().epochs;
    let mut logs = Vec::new();
    let mut run_here = 0;
    while state.epochs_done < epochs {
        if stop_after.is_some_and(|s| run_here >= s) {
            break;
        }
        let epoch = state.epochs_done;
        let (lrs, nb, pb) = epoch_plan(cfg.optim(), cfg.train_loop(), loader, epoch);
        trainer.optimizer_mut().lrs = lrs.clone();
        trainer.start_epoch(epoch);
        let t0 = Instant::now();
        let mut tot = EpochTotals {
            epoch,
            ..Default::default()
        };
        for (bi, batch) in loader.epoch(epoch as u64).take(nb).enumerate() {
            let s = trainer
                .train_batch(batch, state.batches_done)
                .with_context(|| trainer.batch_context(epoch, bi))?;
            state.batches_done += 1;
            tot.seen += s.n;
            tot.correct += s.correct;
            tot.loss_sum += s.loss_sum;
            tot.steps_sum += s.steps_sum;
            tot.elapsed_s = t0.elapsed().as_secs_f64();
            pb.set_message(trainer.progress(&tot));
            pb.inc(1);
        }
        pb.finish_and_clear();
        let train_time = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let test_acc = trainer.evaluate(epoch)?;
        let base = EpochLog {
            epoch: epoch + 1,
            lrs,
            train_acc: tot.correct as f64 / tot.seen.max(1) as f64,
            test_acc,
            train_images: tot.seen,
            train_time_s: train_time,
            train_img_per_s: tot.seen as f64 / train_time.max(1e-9),
            eval_time_s: t1.elapsed().as_secs_f64(),
            steps_per_image: None,
        };
        let log = trainer.epoch_log(base, &tot);
        trainer.report(&log, &tot, epochs);
        state.epochs_done += 1;
        trainer.sync_optimizer()?;
        state.optimizer_steps = trainer.optimizer().steps;
        let mut f = trainer.model_file()?;
        add_training_state(&mut f, trainer.optimizer(), &state)?;
        trainer.extend_checkpoint(&mut f)?;
        // The log first, then the checkpoint: a kill between the two leaves a log line of an epoch
        // after the checkpoint, which resuming drops and redoes (never a checkpoint without its
        // log line).
        log_lines.push(serde_json::to_string(&log)?);
        write_atomic(&log_path, (log_lines.join("\n") + "\n").as_bytes())?;
        if FAULT_AFTER_LOG.with(|f| f.get()) == Some(state.epochs_done) {
            bail!(
                "injected fault after the log of epoch {}",
                state.epochs_done
            );
        }
        write_atomic(&ckpt, &f.to_bytes()?)?;
        logs.push(log.into());
        run_here += 1;
    }
    Ok(logs)
}

#[cfg(test)]
mod tests {
    use super::super::config::{TrainOptions, run_config};
    use super::*;
    use sim::{Stream, Tensor};

    /// A config with only what the loop reads.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Cfg {
        name: String,
        seed: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device: Option<crate::device::Device>,
        optim: OptimConfig,
        train: LoopConfig,
    }

    run_config!(Cfg);

    fn cfg(epochs: usize) -> Cfg {
        toml::from_str(&format!(
            r#"
name = "mock"
seed = 1
[optim]
algorithm = {{ kind = "sgd", momentum = 0.9 }}
lrs = [0.1]
schedule = {{ kind = "cosine", t_max = 4, eta_min = 0.01 }}
[train]
epochs = {epochs}
batch_size = 4
"#
        ))
        .unwrap()
    }

    /// 10 images of 1×2×2, labels 0, 1, 2, 0, …
    fn data() -> Dataset {
        Dataset {
            name: "mock".into(),
            split: "train".into(),
            source: "memory".into(),
            images: (0..40u8).map(|v| v.wrapping_mul(37)).collect(),
            shape: [10, 1, 2, 2],
            labels: (0..10).map(|i| (i % 3) as u16).collect(),
            classes: vec!["a".into(), "b".into(), "c".into()],
            coarse: None,
        }
    }

    /// A "model" of two numbers moved by every batch's pixels and global index through the
    /// optimizer (momentum: its buffer must survive a resume).
    struct Mock {
        w: Tensor,
        opt: Optimizer,
        /// Global batch indices trained on, in order.
        seen: Vec<u64>,
    }

    impl Mock {
        fn new(c: &Cfg, start: &RunStart<Cfg>) -> Mock {
            let w = match &start.checkpoint {
                Some(f) => f.get("w").cloned().unwrap(),
                None => sim::tensor(&[2], vec![0.5, -0.5]).unwrap(),
            };
            let opt = Optimizer::new(c.optim.algorithm.clone(), c.optim.lrs.clone(), vec![0.0], 1)
                .unwrap();
            Mock {
                w,
                opt,
                seen: vec![],
            }
        }
    }

    impl Trainer for Mock {
        type Log = EpochLog;
        fn optimizer(&self) -> &Optimizer {
            &self.opt
        }
        fn optimizer_mut(&mut self) -> &mut Optimizer {
            &mut self.opt
        }
        fn train_batch(&mut self, batch: Batch, index: u64) -> Result<BatchStats> {
            self.seen.push(index);
            let s: f32 = batch.x.iter().sum();
            let g = sim::tensor(&[2], vec![s * 1e-3, index as f32 * 1e-2 - self.w[[1]]])?;
            let mut ps = vec![self.w.clone()];
            self.opt.step(&mut ps, &[g])?;
            self.w = ps.pop().unwrap();
            Ok(BatchStats {
                n: batch.y.len(),
                correct: batch.y.iter().filter(|&&l| l as u64 == index % 3).count(),
                loss_sum: 0.0,
                steps_sum: 0,
            })
        }
        fn evaluate(&self, _epoch: usize) -> Result<f64> {
            Ok(self.w[[0]].abs().fract() as f64)
        }
        fn epoch_log(&self, base: EpochLog, _t: &EpochTotals) -> EpochLog {
            base
        }
        fn report(&self, _log: &EpochLog, _t: &EpochTotals, _epochs: usize) {}
        fn model_file(&self) -> Result<TensorFile> {
            Ok(TensorFile {
                tensors: vec![("w".into(), self.w.clone())],
                metadata: Default::default(),
            })
        }
    }

    /// Run `c` in `out`; returns the logs and the batch indices trained on.
    fn go(c: &Cfg, out: &Path, resume: bool, stop: Option<usize>) -> (Vec<EpochLog>, Vec<u64>) {
        let d = data();
        let loader = Loader::new(&d, c.train.batch_size, Stream::new(c.seed, "data")).shuffle(true);
        let start = open_run(c, out, resume, "mock").unwrap();
        let mut m = Mock::new(c, &start);
        let logs = run_epochs(&mut m, c, &loader, start, stop).unwrap();
        (logs, m.seen)
    }

    /// Checkpoint tensors (bits) and counters.
    fn ckpt(out: &Path) -> (Vec<(String, Vec<u32>)>, RunState<Cfg>) {
        let f = TensorFile::from_bytes(&std::fs::read(out.join("checkpoint.safetensors")).unwrap())
            .unwrap();
        let st = serde_json::from_str(&f.metadata[TRAIN_KEY]).unwrap();
        let ts = f
            .tensors
            .into_iter()
            .map(|(n, t)| (n, t.iter().map(|v| v.to_bits()).collect()))
            .collect();
        (ts, st)
    }

    /// The log lines without the wall-time fields.
    fn log_lines(out: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(out.join("log.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                for k in ["train_time_s", "train_img_per_s", "eval_time_s"] {
                    v.as_object_mut().unwrap().remove(k).unwrap();
                }
                v
            })
            .collect()
    }

    #[test]
    fn stopped_and_resumed_run_equals_straight_run() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(4);
        let (straight, seen) = go(&c, &dir.path().join("a"), false, None);
        assert_eq!(straight.len(), 4);
        // 10 images in batches of 4: 3 batches an epoch, numbered globally.
        assert_eq!(seen, (0..12).collect::<Vec<u64>>());
        assert_eq!(straight[0].train_images, 10);
        let b = dir.path().join("b");
        let (l1, s1) = go(&c, &b, false, Some(1));
        let (l2, s2) = go(&c, &b, true, Some(2));
        let (l3, s3) = go(&c, &b, true, None);
        assert_eq!((l1.len(), l2.len(), l3.len()), (1, 2, 1));
        assert_eq!([s1, s2, s3].concat(), seen);
        let (ta, sa) = ckpt(&dir.path().join("a"));
        let (tb, sb) = ckpt(&b);
        assert_eq!(ta, tb, "resumed weights or optimizer buffers differ");
        assert!(ta.iter().any(|(n, _)| n == "optimizer.0.buf1"), "{ta:?}");
        assert_eq!(sa, sb);
        assert_eq!(
            (sa.epochs_done, sa.batches_done, sa.optimizer_steps),
            (4, 12, 12)
        );
        assert_eq!(log_lines(&dir.path().join("a")), log_lines(&b));
        for (x, y) in straight.iter().zip(l1.iter().chain(&l2).chain(&l3)) {
            assert_eq!((x.epoch, &x.lrs, x.test_acc), (y.epoch, &y.lrs, y.test_acc));
        }
        // The cosine schedule over 4 epochs: 0.1 at epoch 1, then lower every epoch.
        assert_eq!(straight[0].lrs, vec![0.1]);
        assert!(straight.windows(2).all(|w| w[1].lrs[0] < w[0].lrs[0]));
    }

    #[test]
    fn resume_cuts_the_log_back_to_the_checkpoint_and_may_add_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r");
        go(&cfg(2), &out, false, None);
        // A log line of an epoch after the checkpoint (and a torn line) is dropped on resume.
        let log = out.join("log.jsonl");
        let mut text = std::fs::read_to_string(&log).unwrap();
        let third = text
            .lines()
            .last()
            .unwrap()
            .replace("\"epoch\":2", "\"epoch\":3");
        text += &format!("{third}\n{{\"epoch\":4,\"lr\n");
        std::fs::write(&log, text).unwrap();
        // Only [train] epochs (and the device) may change on resume.
        let mut more = cfg(3);
        more.device = Some(crate::device::Device::Gpu(Some(1)));
        let (logs, seen) = go(&more, &out, true, None);
        assert_eq!(logs.len(), 1);
        assert_eq!(seen, vec![6, 7, 8]);
        let epochs: Vec<u64> = log_lines(&out)
            .iter()
            .map(|v| v["epoch"].as_u64().unwrap())
            .collect();
        assert_eq!(epochs, vec![1, 2, 3]);
        // Nothing left to do.
        assert!(go(&cfg(3), &out, true, None).0.is_empty());
    }

    #[test]
    fn open_run_errors_name_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("e");
        go(&cfg(1), &out, false, None);
        let err = |c: &Cfg| format!("{:#}", open_run(c, &out, true, "mock").err().unwrap());
        let e = format!(
            "{:#}",
            open_run(&cfg(1), &out, false, "mock").err().unwrap()
        );
        assert!(
            e.contains("checkpoint.safetensors") && e.contains("--resume"),
            "{e}"
        );
        let mut other = cfg(1);
        other.optim.lrs = vec![0.2];
        let e = err(&other);
        assert!(
            e.contains("checkpoint.safetensors") && e.contains("different config"),
            "{e}"
        );
        // The message names the field that changed, with both values.
        assert!(e.contains("optim.lrs[0]: 0.1"), "{e}");
        assert!(e.contains("0.2 now"), "{e}");
        let p = out.join("checkpoint.safetensors");
        let f = TensorFile {
            tensors: vec![("w".into(), sim::tensor(&[1], vec![0.0]).unwrap())],
            metadata: Default::default(),
        };
        std::fs::write(&p, f.to_bytes().unwrap()).unwrap();
        let e = err(&cfg(1));
        assert!(
            e.contains("checkpoint.safetensors: not a training checkpoint"),
            "{e}"
        );
        let mut f = f;
        f.metadata
            .insert(TRAIN_KEY.into(), "{\"epochs_done\": 1}".into());
        std::fs::write(&p, f.to_bytes().unwrap()).unwrap();
        let e = err(&cfg(1));
        assert!(e.contains("checkpoint.safetensors: bad mock state"), "{e}");
        std::fs::write(&p, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}").unwrap();
        let e = err(&cfg(1));
        assert!(e.contains("checkpoint.safetensors"), "{e}");
    }

    #[test]
    fn max_batches_caps_the_epoch_and_the_test_set() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(2);
        c.train.max_batches = Some(2);
        let (logs, seen) = go(&c, &dir.path().join("m"), false, None);
        assert_eq!(seen, vec![0, 1, 2, 3]);
        assert_eq!(logs[0].train_images, 8);
        let d = data();
        assert_eq!(capped_test_set(&d, Some(2), 4).len(), 8);
        assert_eq!(capped_test_set(&d, Some(3), 4).len(), 10);
        assert_eq!(capped_test_set(&d, None, 4).len(), 10);
        let opts = TrainOptions {
            epochs: Some(7),
            max_batches: Some(1),
            seed: Some(9),
            ..Default::default()
        };
        let o = cfg(2).with_overrides(&opts);
        assert_eq!(
            (o.train.epochs, o.train.max_batches, o.seed),
            (7, Some(1), 9)
        );
    }

    #[test]
    fn a_run_directory_belongs_to_one_process_and_a_stale_lock_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("l");
        let held = open_run(&cfg(1), &out, false, "mock").unwrap();
        let lock = out.join(".epsim.lock");
        assert!(lock.is_file());
        // A second run into the same directory, while the first holds it, is refused at once.
        let e = format!(
            "{:#}",
            open_run(&cfg(1), &out, false, "mock").err().unwrap()
        );
        assert!(
            e.contains("in use") && e.contains(&std::process::id().to_string()),
            "{e}"
        );
        drop(held);
        assert!(!lock.exists(), "the lock goes with the run");
        // A lock left by a process of this host that no longer exists (pids stop at 2^22).
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        std::fs::write(&lock, format!("4194305 {}", host.trim())).unwrap();
        let (logs, _) = go(&cfg(1), &out, false, None);
        assert_eq!(logs.len(), 1);
        // A lock of another host is never taken over.
        std::fs::write(&lock, "1 some-other-host").unwrap();
        let e = format!("{:#}", open_run(&cfg(1), &out, true, "mock").err().unwrap());
        assert!(e.contains("some-other-host"), "{e}");
    }

    #[test]
    fn a_kill_between_the_log_and_the_checkpoint_resumes_to_the_straight_run() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(3);
        go(&c, &dir.path().join("a"), false, None);
        let b = dir.path().join("b");
        let d = data();
        let loader = Loader::new(&d, c.train.batch_size, Stream::new(c.seed, "data")).shuffle(true);
        let start = open_run(&c, &b, false, "mock").unwrap();
        let mut m = Mock::new(&c, &start);
        inject_fault_after_log(Some(2));
        let e = run_epochs(&mut m, &c, &loader, start, None).unwrap_err();
        inject_fault_after_log(None);
        assert!(format!("{e}").contains("injected fault"), "{e}");
        // The log is one epoch ahead of the checkpoint, and the lock was released.
        assert_eq!(log_lines(&b).len(), 2);
        assert_eq!(ckpt(&b).1.epochs_done, 1);
        assert!(!b.join(".epsim.lock").exists());
        go(&c, &b, true, None);
        assert_eq!(log_lines(&b), log_lines(&dir.path().join("a")));
        assert_eq!(ckpt(&b), ckpt(&dir.path().join("a")));
    }
}
