//! Driving the backprop baselines (BP-CNN, AdvCNN, ViT): the epoch loop over the same data pipeline
//! as EP, cross-entropy on the tape, SGD/Adam with a per-epoch schedule, per-epoch evaluation, JSONL
//! logs, atomic checkpoints every epoch and exact resume (parameters, batch-norm buffers, optimizer
//! buffers and counters are in the file; every random draw is keyed by seed, stream name, epoch
//! and index).
//!
//! AdvCNN: each training batch is replaced by PGD adversarial examples (the attacks' [`Pgd`],
//! cross-entropy on the true labels, box-clipped, one run) against the current model in evaluation
//! mode; the PGD random start is keyed by the seed of stream `adv.pgd` at the global batch index and
//! the dataset index of each image. Note that [`Pgd`] keeps, per image, the first iterate that
//! fools the model (else the iterate of highest loss), not necessarily the last. An `eps` list
//! trains one model per ε into `<out>/eps-<ε>/`.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use ep::baselines::{AdvTrained, Baseline, BaselineSpec};
use ep::checkpoint::{TRAIN_KEY, TensorFile};
use ep::optim::Optimizer;
use ep::train::argmax_rows;
use sim::{Cpu, Stream, Tensor};

use crate::attacks::{Objective, Pgd};
use crate::classifier::{BaselineClassifier, Normalize};
use crate::data::{Dataset, Loader, Normalization};
use crate::ep_run::{
    EpochLog, TrainOptions, load_data, normalization, push_optimizer, restore_optimizer,
    retained_log_lines, write_atomic,
};
use crate::train_config::{BaselineConfig, ModelKind};

/// Counters stored in a baseline training checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BpTrainState {
    /// Epochs completed.
    pub epochs_done: usize,
    /// Training batches completed (global index of the next batch).
    pub batches_done: u64,
    /// Optimizer steps taken.
    pub optimizer_steps: u64,
    /// The config of the run (for AdvCNN: with its single ε).
    pub config: BaselineConfig,
}

/// Read a baseline model file (safetensors with the spec in metadata).
pub fn load_baseline(path: &Path) -> Result<Baseline> {
    let bytes = std::fs::read(path).with_context(|| format!("reading model {}", path.display()))?;
    let f = TensorFile::from_bytes(&bytes).with_context(|| format!("{}", path.display()))?;
    Baseline::from_file(&f, None).with_context(|| format!("{}", path.display()))
}

/// Clean accuracy of a baseline (evaluation mode) on a dataset.
pub fn evaluate_baseline(
    model: &Baseline,
    data: &Dataset,
    norm: &Normalization,
    batch: usize,
) -> Result<f64> {
    let loader = Loader::new(data, batch, Stream::new(0, "eval"))
        .normalize(norm.clone())
        .map_err(|e| anyhow::anyhow!("normalization: {e}"))?;
    let mut correct = 0usize;
    let pb = crate::data::progress(loader.num_batches() as u64, "eval");
    for b in loader.epoch(0) {
        let pred = argmax_rows(&model.logits(&Cpu, &b.x)?);
        correct += pred.iter().zip(&b.y).filter(|(p, l)| p == l).count();
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(correct as f64 / data.len().max(1) as f64)
}

/// Train a baseline as the config says; for AdvCNN with several ε, one run per ε (in
/// `<out>/eps-<ε>/`). Returns the per-epoch logs of this invocation (all runs in order).
pub fn train(cfg: &BaselineConfig, opts: &TrainOptions) -> Result<Vec<EpochLog>> {
    let out = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&cfg.name));
    match (&cfg.kind, &cfg.adv) {
        (ModelKind::AdvCnn, Some(adv)) => {
            let mut logs = Vec::new();
            for &eps in &adv.eps {
                let mut one = cfg.clone();
                if let Some(a) = one.adv.as_mut() {
                    a.eps = vec![eps];
                }
                println!("adversarial training, {} ε = {eps}", adv.norm);
                logs.extend(train_one(&one, opts, &out.join(format!("eps-{eps}")))?);
            }
            Ok(logs)
        }
        _ => train_one(cfg, opts, &out),
    }
}

fn train_one(cfg: &BaselineConfig, opts: &TrainOptions, out: &Path) -> Result<Vec<EpochLog>> {
    let mut cfg = cfg.clone();
    if let Some(e) = opts.epochs {
        cfg.train.epochs = e;
    }
    if let Some(m) = opts.max_batches {
        cfg.train.max_batches = Some(m);
    }
    if let Some(s) = opts.seed {
        cfg.seed = s;
    }
    cfg.validate()?;
    let be = Cpu;
    let ckpt = out.join("checkpoint.safetensors");
    let log_path = out.join("log.jsonl");
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
    let (train_set, test_set) = load_data(&cfg.data, spec.input())?;
    let norm = normalization(&cfg.data)?;
    let root = Stream::new(cfg.seed, "epsim.train");
    let new_opt = |n: usize| {
        Optimizer::new(
            cfg.optim.algorithm.clone(),
            cfg.optim.lrs.clone(),
            vec![cfg.wd()],
            n,
        )
    };

    let (mut model, mut opt, mut state) = if ckpt.exists() {
        if !opts.resume {
            bail!(
                "{} exists: pass --resume to continue that run, or choose another --out / name",
                ckpt.display()
            );
        }
        let bytes = std::fs::read(&ckpt).with_context(|| format!("reading {}", ckpt.display()))?;
        let f = TensorFile::from_bytes(&bytes).with_context(|| format!("{}", ckpt.display()))?;
        let st: BpTrainState =
            serde_json::from_str(f.metadata.get(TRAIN_KEY).with_context(|| {
                format!(
                    "{}: not a training checkpoint (no {TRAIN_KEY})",
                    ckpt.display()
                )
            })?)
            .with_context(|| format!("{}: bad baseline training state", ckpt.display()))?;
        let mut same = st.config.clone();
        same.train.epochs = cfg.train.epochs;
        if same != cfg {
            bail!(
                "{}: the checkpoint was made with a different config (only [train] epochs may change on resume)",
                ckpt.display()
            );
        }
        let model = Baseline::from_file(&f, None).with_context(|| format!("{}", ckpt.display()))?;
        let mut opt = new_opt(model.params.len())?;
        restore_optimizer(&f, &mut opt, st.optimizer_steps);
        tracing::info!("resuming {} after epoch {}", cfg.name, st.epochs_done);
        (model, opt, st)
    } else {
        let model = Baseline::init(spec, &root.child("init"))?;
        let opt = new_opt(model.params.len())?;
        (
            model,
            opt,
            BpTrainState {
                epochs_done: 0,
                batches_done: 0,
                optimizer_steps: 0,
                config: cfg.clone(),
            },
        )
    };
    let mut log_lines = retained_log_lines(&log_path, state.epochs_done);

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
    let mut loader = crate::ep_run::train_loader(
        &cfg.data,
        &train_set,
        cfg.train.batch_size,
        root.child("data"),
    );
    if adv.is_none() {
        loader = loader
            .normalize(norm.clone())
            .map_err(|e| anyhow::anyhow!("[data] normalization: {e}"))?;
    }
    let host_norm = Normalize {
        mean: cfg.data.mean.clone(),
        std: cfg.data.std.clone(),
    };
    let pgd_seeds = root.child("adv.pgd");
    let eval_bs = cfg.train.eval_batch_size.unwrap_or(cfg.train.batch_size);
    let mut logs = Vec::new();
    let mut run_here = 0;
    while state.epochs_done < cfg.train.epochs {
        if opts.stop_after.is_some_and(|s| run_here >= s) {
            break;
        }
        let epoch = state.epochs_done;
        let (lrs, nb, pb) = crate::ep_run::epoch_plan(&cfg.optim, &cfg.train, &loader, epoch);
        opt.lrs = lrs.clone();
        let t0 = Instant::now();
        let (mut seen, mut correct, mut loss_sum) = (0usize, 0usize, 0.0f64);
        for (bi, batch) in loader.epoch(epoch as u64).take(nb).enumerate() {
            let ctx = || format!("epoch {} batch {}", epoch + 1, bi + 1);
            let x: Tensor = match &adv {
                None => batch.x,
                Some(pgd) => {
                    let clf = BaselineClassifier::new(Cow::Borrowed(&model));
                    let ids: Vec<u64> = batch.indices.iter().map(|&i| i as u64).collect();
                    let seed = pgd_seeds.u64_at(state.batches_done);
                    let r = pgd
                        .attack(&clf, &batch.x, &batch.y, None, &ids, seed)
                        .with_context(ctx)?;
                    host_norm.forward(&r.x_adv)?
                }
            };
            let out = model.train_grads(&be, &x, &batch.y).with_context(ctx)?;
            for (g, (name, _)) in out.grads.iter().zip(&model.params) {
                sim::check_finite(&format!("gradient of {name} (diverged training?)"), g)
                    .with_context(ctx)?;
            }
            let mut ps = model.param_tensors();
            opt.step(&mut ps, &out.grads).with_context(ctx)?;
            model.set_params(ps)?;
            state.batches_done += 1;
            let pred = argmax_rows(&out.logits);
            seen += batch.y.len();
            correct += pred.iter().zip(&batch.y).filter(|(p, l)| p == l).count();
            loss_sum += out.loss as f64 * batch.y.len() as f64;
            pb.set_message(format!(
                "loss {:.3}  acc {:.3}  {:.1} img/s",
                loss_sum / seen as f64,
                correct as f64 / seen as f64,
                seen as f64 / t0.elapsed().as_secs_f64()
            ));
            pb.inc(1);
        }
        pb.finish_and_clear();
        let train_time = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let test_acc = evaluate_baseline(&model, &test_set, &norm, eval_bs)?;
        let log = EpochLog {
            epoch: epoch + 1,
            lrs,
            train_acc: correct as f64 / seen.max(1) as f64,
            test_acc,
            train_images: seen,
            train_time_s: train_time,
            train_img_per_s: seen as f64 / train_time.max(1e-9),
            eval_time_s: t1.elapsed().as_secs_f64(),
        };
        println!(
            "epoch {:>3}/{}  loss {:.4}  train acc {:.4}  test acc {:.4}  {:.1} img/s  {:.0} s",
            log.epoch,
            cfg.train.epochs,
            loss_sum / seen.max(1) as f64,
            log.train_acc,
            log.test_acc,
            log.train_img_per_s,
            train_time + log.eval_time_s
        );
        state.epochs_done += 1;
        state.optimizer_steps = opt.steps;
        let mut f = model.to_file()?;
        push_optimizer(&mut f, &opt);
        f.metadata
            .insert(TRAIN_KEY.into(), serde_json::to_string(&state)?);
        write_atomic(&ckpt, &f.to_bytes()?)?;
        log_lines.push(serde_json::to_string(&log)?);
        write_atomic(&log_path, (log_lines.join("\n") + "\n").as_bytes())?;
        logs.push(log);
        run_here += 1;
    }
    Ok(logs)
}
