//! `epsim train` with a `[substrate]` section: EP training on a simulated substrate with EP's local
//! update rule ([`ep::subtrain`]), run by the shared epoch loop ([`super::epoch_loop`]; what is
//! particular to the substrate is in this module's trainer hooks).
//!
//! The model is initialized as a digital run (same seed → same initial weights), compiled with the
//! preset into a netlist, realized (programming, neuron spreads from `[substrate] seed`, default the
//! run's seed), and trained: every batch runs its free and nudged phases on the substrate and
//! updates the programmed devices (pulses for presets with an `[update]` device, e.g. `ecram`;
//! re-programming with programming noise otherwise). Every epoch logs the training accuracy (free
//! phase on the substrate), the test accuracy **on the substrate** (free phase, fresh read noise:
//! queries from 2⁴⁰ on), the device pulses (epoch and total) and the cost of a training step
//! (energy by part and latency, from the step's counted reads, its free-phase steps and its
//! pulses, with the preset's cost laws: `crate::cost`), and writes an atomic checkpoint:
//!
//! * the model = the effective (programmed) weights with the digital biases, so `epsim eval` works
//!   on it (digital, or `--substrate netlist:<preset>` which programs them again);
//! * the optimizer buffers and the counters of the digital run (`epsim.train`);
//! * the device state for an exact resume: `substrate.target.{i}` (what array i was last programmed
//!   to), `substrate.device.{i}` (pulsed devices' normalized weights) and the metadata
//!   `epsim.substrate` (α per array, update and pulse counters). Device-to-device parameters are
//!   not stored: they are re-drawn from the seed.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use ep::EpNet;
use ep::checkpoint::{TensorFile, model_from_file, model_to_file};
use ep::optim::Optimizer;
use ep::subtrain::SubstrateTrainer;
use sim::Stream;

use super::config::{TrainConfig, TrainOptions};
use super::epoch_loop::{
    BatchStats, EpochLog, EpochTotals, StepsPerImage, Trainer, capped_test_set, open_run,
    run_epochs,
};
use crate::classifier::load::HostModel;
use crate::classifier::substrate::{compile_model, load_preset, parse_tile};
use crate::data::{Batch, Dataset, Loader, Normalization};
use crate::device::Engine;

/// Metadata key of the substrate state in a checkpoint.
pub const SUBSTRATE_KEY: &str = "epsim.substrate";

/// Query numbers of evaluation reads start here (training batches use 0, 1, …).
const EVAL_QUERY: u64 = 1 << 40;

/// Counters and scales of the device state (`epsim.substrate` metadata).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SubstrateMeta {
    updates: u64,
    pulses: u64,
    alpha: Option<Vec<f32>>,
}

/// One line of `log.jsonl` of a substrate run: the digital fields plus the pulses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubstrateEpochLog {
    /// The common fields (test accuracy measured on the substrate).
    #[serde(flatten)]
    pub base: EpochLog,
    /// Device pulses applied this epoch.
    pub pulses: u64,
    /// Device pulses applied since the start of the run.
    pub pulses_total: u64,
    /// The preset trained on.
    pub substrate: String,
    /// Mean energy of a training step this epoch (free and nudged phases' reads, neurons and
    /// update pulses; the digital gradient and optimizer step not counted), J.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_per_step_j: Option<f64>,
    /// The same by part (DAC, array, ADC, neurons, pulses), J.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_per_step_parts_j: Option<std::collections::BTreeMap<String, f64>>,
    /// Mean latency of a training step's phases (physical time), s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_per_step_s: Option<f64>,
}

/// Accuracy of the trainer's free phase on the substrate over `data`, and its mean free-phase
/// steps per image.
fn evaluate_substrate<B: Engine>(
    be: &B,
    tr: &SubstrateTrainer<B>,
    data: &crate::data::Dataset,
    norm: &crate::data::Normalization,
    batch: usize,
    query0: u64,
    settle: &ep::Settle,
) -> Result<(f64, f64)> {
    let loader = Loader::new(data, batch, Stream::new(0, "eval"))
        .normalize(norm.clone())
        .map_err(|e| anyhow::anyhow!("normalization: {e}"))?;
    let (mut correct, mut steps) = (0usize, 0usize);
    for (k, b) in loader.epoch(0).enumerate() {
        let x = be.upload_owned(b.x)?;
        let (c, s) = tr.correct(be, &x, &b.y, query0 + k as u64, settle)?;
        correct += c;
        steps += s;
    }
    let n = data.len().max(1) as f64;
    Ok((correct as f64 / n, steps as f64 / n))
}

impl From<SubstrateEpochLog> for EpochLog {
    fn from(l: SubstrateEpochLog) -> Self {
        l.base
    }
}

/// EP training on the substrate ([`SubstrateTrainer`]), as driven by [`run_epochs`].
struct SubTrainer<'a, B: Engine> {
    be: &'a B,
    cfg: &'a TrainConfig,
    tr: SubstrateTrainer<B>,
    opt: Optimizer,
    sign_stream: Stream,
    test_set: &'a Dataset,
    norm: Normalization,
    eval_bs: usize,
    /// `netlist:<preset>` (the log's `substrate` field).
    substrate: String,
    /// Pulse count at the start of the epoch.
    pulses0: u64,
    /// The cost laws and the netlist's neuron count.
    preset: devices::Preset,
    neurons: u64,
    /// This epoch's training steps: (count, Σ energy by part, Σ latency).
    step_cost: (u64, [f64; 5], f64),
    /// Mean free-phase steps per image of the last evaluation.
    eval_steps: std::cell::Cell<f64>,
}

impl<B: Engine> Trainer for SubTrainer<'_, B> {
    type Log = SubstrateEpochLog;

    fn optimizer(&self) -> &Optimizer {
        &self.opt
    }

    fn optimizer_mut(&mut self) -> &mut Optimizer {
        &mut self.opt
    }

    fn start_epoch(&mut self, _epoch: usize) {
        self.pulses0 = self.tr.pulses;
        self.step_cost = (0, [0.0; 5], 0.0);
    }

    fn train_batch(&mut self, batch: Batch, index: u64) -> Result<BatchStats> {
        let be = self.be;
        let x = be.upload_owned(batch.x)?;
        let s = self.tr.train_batch(
            be,
            &mut self.opt,
            &self.cfg.ep,
            &x,
            &batch.y,
            &self.sign_stream,
            index,
        )?;
        let u = &self.tr.last_step;
        let k = crate::cost::Counts::new(u.uses.clone(), u.steps, self.neurons, u.spikes, u.pulses);
        let c = crate::cost::cost_of(&self.preset, &k, 1)?;
        let sc = &mut self.step_cost;
        sc.0 += 1;
        sc.1.iter_mut().zip(c.energy_j).for_each(|(a, e)| *a += e);
        sc.2 += c.latency_s;
        Ok(BatchStats {
            n: s.n,
            correct: s.correct,
            loss_sum: 0.0,
            steps_sum: s.sample_steps,
        })
    }

    fn batch_context(&self, epoch: usize, batch: usize) -> String {
        format!("epoch {} batch {} (substrate)", epoch + 1, batch + 1)
    }

    fn progress(&self, t: &EpochTotals) -> String {
        format!(
            "acc {:.3}  {} pulses",
            t.correct as f64 / t.seen as f64,
            self.tr.pulses - self.pulses0
        )
    }

    fn evaluate(&self, epoch: usize) -> Result<f64> {
        let eval_set = capped_test_set(self.test_set, self.cfg.train.max_batches, self.eval_bs);
        let q0 = EVAL_QUERY + (epoch as u64) * (1 << 24);
        let (acc, steps) = evaluate_substrate(
            self.be,
            &self.tr,
            &eval_set,
            &self.norm,
            self.eval_bs,
            q0,
            &self.cfg.ep.settle,
        )?;
        self.eval_steps.set(steps);
        Ok(acc)
    }

    fn epoch_log(&self, mut base: EpochLog, t: &EpochTotals) -> SubstrateEpochLog {
        if !self.cfg.ep.settle.is_default() {
            base.steps_per_image = Some(StepsPerImage {
                train: t.steps_sum as f64 / t.seen.max(1) as f64,
                test: self.eval_steps.get(),
            });
        }
        let (n, parts, lat) = self.step_cost;
        let per = |v: f64| (n > 0).then(|| v / n as f64);
        SubstrateEpochLog {
            base,
            pulses: self.tr.pulses - self.pulses0,
            pulses_total: self.tr.pulses,
            substrate: self.substrate.clone(),
            energy_per_step_j: per(parts.iter().sum()),
            energy_per_step_parts_j: (n > 0).then(|| {
                crate::cost::PARTS
                    .iter()
                    .zip(parts)
                    .map(|(k, e)| (k.to_string(), e / n as f64))
                    .collect()
            }),
            latency_per_step_s: per(lat),
        }
    }

    fn report(&self, log: &SubstrateEpochLog, _t: &EpochTotals, epochs: usize) {
        println!(
            "epoch {:>3}/{}  train acc {:.4}  test acc (substrate) {:.4}  pulses {} (total {})  {:.0} s",
            log.base.epoch,
            epochs,
            log.base.train_acc,
            log.base.test_acc,
            log.pulses,
            log.pulses_total,
            log.base.train_time_s + log.base.eval_time_s
        );
        if let (Some(e), Some(l)) = (log.energy_per_step_j, log.latency_per_step_s) {
            println!(
                "           per training step on the substrate: energy {e:.4e} J, latency {l:.4e} s"
            );
        }
    }

    /// The effective (programmed) weights with the digital biases.
    fn model_file(&self) -> Result<TensorFile> {
        let (ws, bs) = self.tr.net().to_host(self.be)?;
        Ok(model_to_file(&self.tr.net().spec, &ws, &bs)?)
    }

    /// The device state (see the module doc).
    fn extend_checkpoint(&self, f: &mut TensorFile) -> Result<()> {
        let tr = &self.tr;
        for (i, t) in tr.targets().iter().enumerate() {
            f.tensors.push((format!("substrate.target.{i}"), t.clone()));
        }
        let pulsed = tr.pulsed_state();
        if let Some((ws, _)) = &pulsed {
            for (i, (w, t)) in ws.iter().zip(tr.targets()).enumerate() {
                f.tensors.push((
                    format!("substrate.device.{i}"),
                    sim::tensor(t.shape(), w.clone())?,
                ));
            }
        }
        let meta = SubstrateMeta {
            updates: tr.updates,
            pulses: tr.pulses,
            alpha: pulsed.map(|p| p.1),
        };
        f.metadata
            .insert(SUBSTRATE_KEY.into(), serde_json::to_string(&meta)?);
        Ok(())
    }
}

/// Restore the device state of `tr` from the checkpoint `f` (read from `ckpt`).
fn restore_devices<B: Engine>(
    be: &B,
    tr: &mut SubstrateTrainer<B>,
    f: &TensorFile,
    ckpt: &std::path::Path,
) -> Result<()> {
    let meta: SubstrateMeta = serde_json::from_str(
        f.metadata
            .get(SUBSTRATE_KEY)
            .with_context(|| format!("{}: no {SUBSTRATE_KEY} metadata", ckpt.display()))?,
    )
    .with_context(|| format!("{}: bad {SUBSTRATE_KEY}", ckpt.display()))?;
    let (_, _, bs) = model_from_file(f, None).with_context(|| format!("{}", ckpt.display()))?;
    let n = bs.len();
    let get = |name: String| {
        f.get(&name)
            .cloned()
            .with_context(|| format!("{}: missing tensor {name}", ckpt.display()))
    };
    let targets = (0..n)
        .map(|i| get(format!("substrate.target.{i}")))
        .collect::<Result<Vec<_>>>()?;
    let pulsed = match meta.alpha {
        None => None,
        Some(al) => Some((
            (0..n)
                .map(|i| get(format!("substrate.device.{i}")).map(|t| t.iter().copied().collect()))
                .collect::<Result<Vec<Vec<f32>>>>()?,
            al,
        )),
    };
    tr.restore(be, targets, bs, pulsed, meta.updates, meta.pulses)
        .with_context(|| format!("{}: restoring the device state", ckpt.display()))
}

/// Train as the config says on its `[substrate]`, the dynamics computing on `be`; returns the
/// per-epoch logs of this invocation. `cfg` is prepared ([`super::ep::prepare`]: overrides
/// applied, input normalization filled in).
pub fn train<B: Engine>(be: &B, cfg: &TrainConfig, opts: &TrainOptions) -> Result<Vec<EpochLog>> {
    let sc = cfg
        .substrate
        .as_ref()
        .context("[substrate] section missing")?;
    let preset = load_preset(sc.preset_name(), &sc.set).context("[substrate] preset")?;
    let tile = parse_tile(&sc.tile).context("[substrate] tile")?;
    let seed = sc.seed.unwrap_or(cfg.seed);
    let out = opts.out_dir(&cfg.name);
    let (train_set, test_set) = cfg.data.load(cfg.model.input)?;
    let norm = cfg.data.normalization()?;
    let root = Stream::new(cfg.seed, "epsim.train");

    let net = EpNet::init(be, cfg.model.clone(), &root.child("init"), cfg.init_scale)?;
    let loaded = compile_model(&HostModel::of_net(be, &net)?, &preset, tile)
        .context("[substrate] compiling the model")?;
    let neurons = crate::cost::neuron_count(&loaded.netlist);
    let mut tr = SubstrateTrainer::new(be, loaded, seed, preset.update.clone(), sc.rounding)
        .context("[substrate] realizing the model")?;
    let opt = Optimizer::new(
        cfg.optim.algorithm.clone(),
        cfg.optim.lrs.clone(),
        cfg.wds(),
        2,
    )?;
    let start = open_run(cfg, &out, opts.resume, "training")?;
    if let Some(f) = &start.checkpoint {
        restore_devices(be, &mut tr, f, &start.ckpt)?;
    }
    let loader = cfg
        .data
        .train_loader(&train_set, cfg.train.batch_size, root.child("data"))
        .normalize(norm.clone())
        .map_err(|e| anyhow::anyhow!("[data] normalization: {e}"))?;
    let mut trainer = SubTrainer {
        be,
        cfg,
        tr,
        opt,
        sign_stream: root.child("beta.sign"),
        test_set: &test_set,
        norm,
        eval_bs: cfg.train.eval_batch_size.unwrap_or(cfg.train.batch_size),
        substrate: format!("netlist:{}", sc.preset_name()),
        pulses0: 0,
        preset,
        neurons,
        step_cost: (0, [0.0; 5], 0.0),
        eval_steps: std::cell::Cell::new(0.0),
    };
    run_epochs(&mut trainer, cfg, &loader, start, opts.stop_after)
}
