//! Driving EP training and evaluation: data loading and evaluation helpers, and the EP [`Trainer`]
//! run by the shared epoch loop ([`crate::epoch_loop`]: per-epoch evaluation, JSONL logs, atomic
//! checkpoints every epoch and exact resume).
//!
//! Exact resume: every random draw of a run is keyed by (seed, stream name, epoch, index) — data
//! order, augmentation, β signs — and the checkpoint holds the parameters, the optimizer buffers and
//! the counters, so an interrupted run resumed from its last checkpoint gives the same bits as an
//! uninterrupted one.

use std::path::Path;

use anyhow::{Context, Result, bail};

use ep::EpNet;
use ep::checkpoint::{TensorFile, model_from_file, model_to_file};
use ep::optim::Optimizer;
use ep::train::{argmax_rows, train_batch};
use sim::{Backend, Cpu, Stream};

use crate::data::{Augment, Batch, Dataset, DatasetSpec, Loader, Normalization, PaddingMode};
use crate::epoch_loop::{
    BatchStats, EpochTotals, RunConfig, RunState, Trainer, add_training_state, capped_test_set,
    open_run, run_epochs,
};
pub use crate::epoch_loop::{
    EpochLog, TrainOptions, epoch_plan, push_optimizer, restore_optimizer, retained_log_lines,
    write_atomic,
};
use crate::train_config::{DataConfig, TrainConfig};

/// Counters stored in a training checkpoint.
pub type TrainState = RunState<TrainConfig>;

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

/// A model as a tensor file (weights, biases, the spec in metadata).
fn net_file(net: &EpNet<Cpu>) -> Result<TensorFile> {
    let (ws, bs) = net.to_host(&Cpu)?;
    Ok(model_to_file(&net.spec, &ws, &bs)?)
}

/// Save a training checkpoint (model + optimizer + counters) atomically.
pub fn save_checkpoint(
    path: &Path,
    net: &EpNet<Cpu>,
    opt: &Optimizer,
    state: &TrainState,
) -> Result<()> {
    let mut f = net_file(net)?;
    add_training_state(&mut f, opt, state)?;
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

/// EP training of a digital model ([`train_batch`]), as driven by [`run_epochs`].
struct EpTrainer<'a> {
    cfg: &'a TrainConfig,
    net: EpNet<Cpu>,
    opt: Optimizer,
    sign_stream: Stream,
    test_set: &'a Dataset,
    norm: Normalization,
    eval_bs: usize,
}

impl Trainer for EpTrainer<'_> {
    type Log = EpochLog;

    fn optimizer(&self) -> &Optimizer {
        &self.opt
    }

    fn optimizer_mut(&mut self) -> &mut Optimizer {
        &mut self.opt
    }

    fn train_batch(&mut self, batch: Batch, index: u64) -> Result<BatchStats> {
        let be = Cpu;
        let x = be.upload(&batch.x)?;
        let s = train_batch(
            &be,
            &mut self.net,
            &mut self.opt,
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
        })
    }

    fn evaluate(&self, _epoch: usize) -> Result<f64> {
        // With a batch cap (smoke runs of big configs) the evaluation is capped the same way.
        let eval_set = capped_test_set(self.test_set, self.cfg.train.max_batches, self.eval_bs);
        let (acc, _) = evaluate(
            &Cpu,
            &self.net,
            &eval_set,
            &self.norm,
            self.eval_bs,
            self.cfg.model.t1,
            false,
        )?;
        Ok(acc)
    }

    fn epoch_log(&self, base: EpochLog, _t: &EpochTotals) -> EpochLog {
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
        println!(
            "epoch {:>3}/{}  train acc {:.4}  test acc {:.4}  {:.1} img/s  {:.0} s",
            log.epoch,
            epochs,
            log.train_acc,
            log.test_acc,
            log.train_img_per_s,
            log.train_time_s + log.eval_time_s
        );
    }

    fn model_file(&self) -> Result<TensorFile> {
        net_file(&self.net)
    }
}

/// Train an EP model as the config says; returns the per-epoch logs of this invocation.
pub fn train(cfg: &TrainConfig, opts: &TrainOptions) -> Result<Vec<EpochLog>> {
    let mut cfg = cfg.with_overrides(opts);
    cfg.validate()?;
    cfg.model.input_norm = Some(ep::InputNorm {
        mean: cfg.data.mean.clone(),
        std: cfg.data.std.clone(),
    });
    if cfg.substrate.is_some() {
        return crate::sub_run::train(&cfg, opts);
    }
    let be = Cpu;
    let out = opts.out_dir(&cfg.name);
    let (train_set, test_set) = load_data(&cfg.data, cfg.model.input)?;
    let norm = normalization(&cfg.data)?;
    let root = Stream::new(cfg.seed, "epsim.train");

    let start = open_run(&cfg, &out, opts.resume, "training")?;
    let net = match &start.checkpoint {
        Some(f) => {
            let (spec, ws, bs) = model_from_file(f, None)?;
            EpNet::from_host(&be, spec, &ws, &bs)?
        }
        None => EpNet::init(&be, cfg.model.clone(), &root.child("init"), cfg.init_scale)?,
    };
    let opt = Optimizer::new(
        cfg.optim.algorithm.clone(),
        cfg.optim.lrs.clone(),
        cfg.wds(),
        2,
    )?;
    let loader = train_loader(
        &cfg.data,
        &train_set,
        cfg.train.batch_size,
        root.child("data"),
    )
    .normalize(norm.clone())
    .map_err(|e| anyhow::anyhow!("[data] normalization: {e}"))?;
    let mut trainer = EpTrainer {
        cfg: &cfg,
        net,
        opt,
        sign_stream: root.child("beta.sign"),
        test_set: &test_set,
        norm,
        eval_bs: cfg.train.eval_batch_size.unwrap_or(cfg.train.batch_size),
    };
    run_epochs(&mut trainer, &cfg, &loader, start, opts.stop_after)
}
