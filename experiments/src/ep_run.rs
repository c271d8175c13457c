//! Driving EP training and evaluation: the epoch loop over the data pipeline, per-epoch evaluation,
//! JSONL logs, atomic checkpoints every epoch and exact resume.
//!
//! Exact resume: every random draw of a run is keyed by (seed, stream name, epoch, index) — data
//! order, augmentation, β signs — and the checkpoint holds the parameters, the optimizer buffers and
//! the counters, so an interrupted run resumed from its last checkpoint gives the same bits as an
//! uninterrupted one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use ep::EpNet;
use ep::checkpoint::{TRAIN_KEY, TensorFile, model_from_file, model_to_file};
use ep::optim::Optimizer;
use ep::train::{argmax_rows, train_batch};
use sim::{Backend, Cpu, Stream};

use crate::data::{Augment, Dataset, DatasetSpec, Loader, Normalization, PaddingMode};
use crate::train_config::{DataConfig, TrainConfig};

/// Counters stored in a training checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs completed.
    pub epochs_done: usize,
    /// Training batches completed (global index of the next batch).
    pub batches_done: u64,
    /// Optimizer steps taken.
    pub optimizer_steps: u64,
    /// The config the run was started with (a resumed run must use the same).
    pub config: TrainConfig,
}

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
}

/// Options of `epsim train` beyond the config.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Output directory (default `runs/<name>`).
    pub out_dir: Option<PathBuf>,
    /// Continue from the run's checkpoint.
    pub resume: bool,
    /// Override the config's epoch count.
    pub epochs: Option<usize>,
    /// Override the config's batches-per-epoch cap.
    pub max_batches: Option<usize>,
    /// Override the seed.
    pub seed: Option<u64>,
    /// Stop after this many epochs of this invocation (used by tests to simulate an interruption).
    pub stop_after: Option<usize>,
}

/// Write `bytes` to `path` atomically (temporary file in the same directory, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|s| s.to_str()).unwrap_or("file")
    ));
    {
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// Load one split of a dataset spec; when the spec names no split, take `default_split`.
pub fn load_split(spec: &str, default_split: &str) -> Result<Dataset> {
    let parsed =
        DatasetSpec::parse(spec).map_err(|e| anyhow::anyhow!("dataset spec {spec:?}: {e}"))?;
    let sets = parsed.load().with_context(|| format!("loading {spec}"))?;
    if parsed.split.is_none() && sets.len() == 1 {
        // A single file or split: that is the data, whatever its split is called.
        return Ok(sets.into_iter().next().expect("one split"));
    }
    let want = parsed
        .split
        .clone()
        .unwrap_or_else(|| default_split.to_string());
    let names: Vec<String> = sets.iter().map(|d| d.split.clone()).collect();
    sets.into_iter()
        .find(|d| d.split == want)
        .with_context(|| format!("{spec}: no split {want:?} (found: {})", names.join(", ")))
}

/// Keep the first `n` images of each class in turn until `n` images are taken (class-balanced).
pub fn balanced_subset(d: &Dataset, n: usize) -> Dataset {
    if n >= d.len() {
        return d.clone();
    }
    let k = d.classes.len().max(1);
    let per = n.div_ceil(k);
    let mut taken = vec![0usize; k];
    let mut idx = Vec::with_capacity(n);
    for (i, &l) in d.labels.iter().enumerate() {
        if idx.len() == n {
            break;
        }
        if taken[l as usize] < per {
            taken[l as usize] += 1;
            idx.push(i);
        }
    }
    subset(d, &idx)
}

/// The images at `idx`, in that order.
pub fn subset(d: &Dataset, idx: &[usize]) -> Dataset {
    let il = d.image_len();
    let mut images = Vec::with_capacity(idx.len() * il);
    for &i in idx {
        images.extend_from_slice(d.image(i));
    }
    Dataset {
        images,
        shape: [idx.len(), d.shape[1], d.shape[2], d.shape[3]],
        labels: idx.iter().map(|&i| d.labels[i]).collect(),
        coarse: d
            .coarse
            .as_ref()
            .map(|(l, n)| (idx.iter().map(|&i| l[i]).collect(), n.clone())),
        ..d.clone()
    }
}

/// Accuracy of a model's free phase of `steps` steps on a dataset, and, when `per_step`, the
/// accuracy after every step 1..=steps.
pub fn evaluate<B: Backend>(
    be: &B,
    net: &EpNet<B>,
    data: &Dataset,
    norm: &Normalization,
    batch: usize,
    steps: usize,
    per_step: bool,
) -> Result<(f64, Vec<f64>)> {
    let loader = Loader::new(data, batch, Stream::new(0, "eval"))
        .normalize(norm.clone())
        .map_err(|e| anyhow::anyhow!("normalization: {e}"))?;
    let mut correct = 0usize;
    let mut per = vec![0usize; if per_step { steps } else { 0 }];
    let pb = crate::data::progress(loader.num_batches() as u64, "eval");
    for b in loader.epoch(0) {
        let x = be.upload(&b.x)?;
        if per_step {
            let n = net.check_input(be, &x)?;
            let mut st = net.zero_state(be, n)?;
            for (t, slot) in per.iter_mut().enumerate() {
                st = net.step(be, &x, &st, None)?;
                net.check_state(be, &st, t + 1)?;
                let pred = argmax_rows(&be.download(&net.logits(be, &st)?)?);
                *slot += pred.iter().zip(&b.y).filter(|(p, l)| p == l).count();
            }
        } else {
            let st = net.free_phase(be, &x, steps)?;
            let pred = argmax_rows(&be.download(&net.logits(be, &st)?)?);
            correct += pred.iter().zip(&b.y).filter(|(p, l)| p == l).count();
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    let n = data.len().max(1) as f64;
    if per_step {
        let curve: Vec<f64> = per.iter().map(|&c| c as f64 / n).collect();
        Ok((curve.last().copied().unwrap_or(0.0), curve))
    } else {
        Ok((correct as f64 / n, vec![]))
    }
}

/// The input normalization of a `[data]` section.
pub fn normalization(data: &DataConfig) -> Result<Normalization> {
    Normalization::new(data.mean.clone(), data.std.clone())
        .map_err(|e| anyhow::anyhow!("[data] {e}"))
}

/// The training augmentation of a `[data]` section (None when it asks for none).
pub fn augment(data: &DataConfig) -> Option<Augment> {
    if data.crop_padding == 0 && !data.hflip {
        return None;
    }
    Some(Augment {
        crop_padding: data.crop_padding,
        padding_mode: if data.padding_mode == "zero" {
            PaddingMode::Zero
        } else {
            PaddingMode::Edge
        },
        hflip: data.hflip,
    })
}

/// The training loader of a `[data]` section: shuffled, with its augmentation and RandAugment
/// policy, batches of `batch`, order and draws from `stream` (normalization is the caller's: the
/// adversarial baselines attack raw pixels).
pub fn train_loader<'a>(
    data: &DataConfig,
    set: &'a Dataset,
    batch: usize,
    stream: Stream,
) -> Loader<'a> {
    Loader::new(set, batch, stream)
        .shuffle(true)
        .augment(augment(data))
        .randaugment(data.randaugment)
}

/// The train and test sets of a `[data]` section (subsets applied); errors when the images do not
/// have the model's `input` shape.
pub fn load_data(data: &DataConfig, input: [usize; 3]) -> Result<(Dataset, Dataset)> {
    let mut train_set = load_split(&data.train, "train")?;
    let mut test_set = load_split(&data.test, "test")?;
    if let Some(n) = data.train_subset {
        train_set = balanced_subset(&train_set, n);
    }
    if let Some(n) = data.test_subset {
        test_set = balanced_subset(&test_set, n);
    }
    if train_set.image_shape() != input {
        bail!(
            "the model expects inputs {input:?} but {} has images {:?}",
            data.train,
            train_set.image_shape()
        );
    }
    Ok((train_set, test_set))
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

/// Save a training checkpoint (model + optimizer + counters) atomically.
pub fn save_checkpoint(
    path: &Path,
    net: &EpNet<Cpu>,
    opt: &Optimizer,
    state: &TrainState,
) -> Result<()> {
    let be = Cpu;
    let (ws, bs) = net.to_host(&be)?;
    let mut f = model_to_file(&net.spec, &ws, &bs)?;
    push_optimizer(&mut f, opt);
    f.metadata
        .insert(TRAIN_KEY.into(), serde_json::to_string(state)?);
    write_atomic(path, &f.to_bytes()?)
}

/// Read a model file (safetensors; spec from metadata or from `spec_file`, TOML or JSON).
pub fn load_model(path: &Path, spec_file: Option<&Path>) -> Result<EpNet<Cpu>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading model {}", path.display()))?;
    let f = TensorFile::from_bytes(&bytes).with_context(|| format!("{}", path.display()))?;
    let spec = match spec_file {
        None => None,
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading spec {}", p.display()))?;
            let s: ep::ModelSpec = if p.extension().is_some_and(|e| e == "json") {
                serde_json::from_str(&text)
                    .with_context(|| format!("{}: invalid model spec", p.display()))?
            } else {
                toml::from_str(&text)
                    .with_context(|| format!("{}: invalid model spec", p.display()))?
            };
            Some(s)
        }
    };
    let (spec, ws, bs) =
        model_from_file(&f, spec).with_context(|| format!("{}", path.display()))?;
    EpNet::from_host(&Cpu, spec, &ws, &bs).with_context(|| format!("{}", path.display()))
}

/// The set-up of one epoch shared by the EP and baseline drivers: the scheduled learning rate of
/// every group, the number of batches (capped by `[train] max_batches`) and the progress bar.
pub fn epoch_plan(
    optim: &crate::train_config::OptimConfig,
    train: &crate::train_config::LoopConfig,
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
    let pb = crate::data::progress(nb as u64, &format!("epoch {}/{}", epoch + 1, train.epochs));
    (lrs, nb, pb)
}

/// Train an EP model as the config says; returns the per-epoch logs of this invocation.
pub fn train(cfg: &TrainConfig, opts: &TrainOptions) -> Result<Vec<EpochLog>> {
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
    cfg.model.input_norm = Some(ep::InputNorm {
        mean: cfg.data.mean.clone(),
        std: cfg.data.std.clone(),
    });
    if cfg.substrate.is_some() {
        return crate::sub_run::train(&cfg, opts);
    }
    let be = Cpu;
    let out = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&cfg.name));
    let ckpt = out.join("checkpoint.safetensors");
    let log_path = out.join("log.jsonl");

    let (train_set, test_set) = load_data(&cfg.data, cfg.model.input)?;
    let norm = normalization(&cfg.data)?;
    let root = Stream::new(cfg.seed, "epsim.train");

    let (mut net, mut opt, mut state) = if ckpt.exists() {
        if !opts.resume {
            bail!(
                "{} exists: pass --resume to continue that run, or choose another --out / name",
                ckpt.display()
            );
        }
        let bytes = std::fs::read(&ckpt).with_context(|| format!("reading {}", ckpt.display()))?;
        let f = TensorFile::from_bytes(&bytes).with_context(|| format!("{}", ckpt.display()))?;
        let st: TrainState =
            serde_json::from_str(f.metadata.get(TRAIN_KEY).with_context(|| {
                format!(
                    "{}: not a training checkpoint (no {TRAIN_KEY})",
                    ckpt.display()
                )
            })?)
            .with_context(|| format!("{}: bad training state", ckpt.display()))?;
        let mut same = st.config.clone();
        same.train.epochs = cfg.train.epochs;
        if same != cfg {
            bail!(
                "{}: the checkpoint was made with a different config (only [train] epochs may change on resume)",
                ckpt.display()
            );
        }
        let (spec, ws, bs) = model_from_file(&f, None)?;
        let net = EpNet::from_host(&be, spec, &ws, &bs)?;
        let mut opt = Optimizer::new(
            cfg.optim.algorithm.clone(),
            cfg.optim.lrs.clone(),
            cfg.wds(),
            2,
        )?;
        restore_optimizer(&f, &mut opt, st.optimizer_steps);
        tracing::info!("resuming {} after epoch {}", cfg.name, st.epochs_done);
        (net, opt, st)
    } else {
        let net = EpNet::init(&be, cfg.model.clone(), &root.child("init"), cfg.init_scale)?;
        let opt = Optimizer::new(
            cfg.optim.algorithm.clone(),
            cfg.optim.lrs.clone(),
            cfg.wds(),
            2,
        )?;
        (
            net,
            opt,
            TrainState {
                epochs_done: 0,
                batches_done: 0,
                optimizer_steps: 0,
                config: cfg.clone(),
            },
        )
    };
    // Keep the log consistent with the checkpoint: drop lines of epochs after it.
    let mut log_lines = retained_log_lines(&log_path, state.epochs_done);

    let loader = train_loader(
        &cfg.data,
        &train_set,
        cfg.train.batch_size,
        root.child("data"),
    )
    .normalize(norm.clone())
    .map_err(|e| anyhow::anyhow!("[data] normalization: {e}"))?;
    let sign_stream = root.child("beta.sign");
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
        let (mut seen, mut correct) = (0usize, 0usize);
        for (bi, batch) in loader.epoch(epoch as u64).take(nb).enumerate() {
            let x = be.upload(&batch.x)?;
            let s = train_batch(
                &be,
                &mut net,
                &mut opt,
                &cfg.ep,
                &x,
                &batch.y,
                &sign_stream,
                state.batches_done,
            )
            .with_context(|| format!("epoch {} batch {}", epoch + 1, bi + 1))?;
            state.batches_done += 1;
            seen += s.n;
            correct += s.correct;
            pb.set_message(format!(
                "acc {:.3}  {:.1} img/s",
                correct as f64 / seen as f64,
                seen as f64 / t0.elapsed().as_secs_f64()
            ));
            pb.inc(1);
        }
        pb.finish_and_clear();
        let train_time = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        // With a batch cap (smoke runs of big configs) the evaluation is capped the same way.
        let capped;
        let eval_set = match cfg.train.max_batches {
            Some(m) if m * eval_bs < test_set.len() => {
                capped = balanced_subset(&test_set, m * eval_bs);
                &capped
            }
            _ => &test_set,
        };
        let (test_acc, _) = evaluate(&be, &net, eval_set, &norm, eval_bs, cfg.model.t1, false)?;
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
        tracing::debug!(
            "epoch {}/{}: train acc {:.4}, test acc {:.4}, {:.1} img/s, {:.0} s",
            log.epoch,
            cfg.train.epochs,
            log.train_acc,
            log.test_acc,
            log.train_img_per_s,
            train_time + log.eval_time_s
        );
        println!(
            "epoch {:>3}/{}  train acc {:.4}  test acc {:.4}  {:.1} img/s  {:.0} s",
            log.epoch,
            cfg.train.epochs,
            log.train_acc,
            log.test_acc,
            log.train_img_per_s,
            train_time + log.eval_time_s
        );
        state.epochs_done += 1;
        state.optimizer_steps = opt.steps;
        save_checkpoint(&ckpt, &net, &opt, &state)?;
        log_lines.push(serde_json::to_string(&log)?);
        write_atomic(&log_path, (log_lines.join("\n") + "\n").as_bytes())?;
        logs.push(log);
        run_here += 1;
    }
    Ok(logs)
}
