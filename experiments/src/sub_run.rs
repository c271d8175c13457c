//! `epsim train` with a `[substrate]` section: EP training on a simulated substrate with EP's local
//! update rule ([`ep::subtrain`]).
//!
//! The model is initialized as a digital run (same seed → same initial weights), compiled with the
//! preset into a netlist, realized (programming, neuron spreads from `[substrate] seed`, default the
//! run's seed), and trained: every batch runs its free and nudged phases on the substrate and
//! updates the programmed devices (pulses for presets with an `[update]` device, e.g. `ecram`;
//! re-programming with programming noise otherwise). Every epoch logs the training accuracy (free
//! phase on the substrate), the test accuracy **on the substrate** (free phase, fresh read noise:
//! queries from 2⁴⁰ on) and the device pulses (epoch and total), and writes an atomic checkpoint:
//!
//! * the model = the effective (programmed) weights with the digital biases, so `epsim eval` works
//!   on it (digital, or `--substrate netlist:<preset>` which programs them again);
//! * the optimizer buffers and the counters of the digital run (`epsim.train`);
//! * the device state for an exact resume: `substrate.target.{i}` (what array i was last programmed
//!   to), `substrate.device.{i}` (pulsed devices' normalized weights) and the metadata
//!   `epsim.substrate` (α per array, update and pulse counters). Device-to-device parameters are
//!   not stored: they are re-drawn from the seed.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use ep::EpNet;
use ep::checkpoint::{TRAIN_KEY, TensorFile, model_from_file, model_to_file};
use ep::optim::Optimizer;
use ep::subtrain::{Rounding, SubstrateTrainer};
use sim::{Backend, Cpu, Stream};

use crate::data::Loader;
use crate::ep_run::{
    EpochLog, TrainOptions, TrainState, balanced_subset, load_data, normalization, push_optimizer,
    restore_optimizer, retained_log_lines, write_atomic,
};
use crate::substrate::{compile_model, load_preset, parse_tile};
use crate::train_config::TrainConfig;

/// Metadata key of the substrate state in a checkpoint.
pub const SUBSTRATE_KEY: &str = "epsim.substrate";

/// Query numbers of evaluation reads start here (training batches use 0, 1, …).
const EVAL_QUERY: u64 = 1 << 40;

fn stochastic() -> Rounding {
    Rounding::Stochastic
}

fn default_tile() -> String {
    "512x512".into()
}

/// The `[substrate]` section of a training config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubstrateConfig {
    /// Device preset: a built-in name (`ecram`, `pcm`, `rram`, `ideal`), a preset TOML file, or
    /// either prefixed with `netlist:`.
    pub preset: String,
    /// Preset overrides `key=value` (as `epsim eval --set`).
    #[serde(default)]
    pub set: Vec<String>,
    /// Physical array size `RxC`.
    #[serde(default = "default_tile")]
    pub tile: String,
    /// Pulse-count rounding of pulsed devices: "stochastic" (default) or "nearest".
    #[serde(default = "stochastic")]
    pub rounding: Rounding,
    /// Seed of the realization (programming, device variations, read noise); default: the run's.
    #[serde(default)]
    pub seed: Option<u64>,
}

impl SubstrateConfig {
    /// The preset name or file without a `netlist:` prefix.
    pub fn preset_name(&self) -> &str {
        self.preset.strip_prefix("netlist:").unwrap_or(&self.preset)
    }
}

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
}

/// Accuracy of the trainer's free phase on the substrate over `data`.
fn evaluate_substrate(
    tr: &SubstrateTrainer<Cpu>,
    data: &crate::data::Dataset,
    norm: &crate::data::Normalization,
    batch: usize,
    query0: u64,
) -> Result<f64> {
    let be = Cpu;
    let loader = Loader::new(data, batch, Stream::new(0, "eval"))
        .normalize(norm.clone())
        .map_err(|e| anyhow::anyhow!("normalization: {e}"))?;
    let mut correct = 0usize;
    for (k, b) in loader.epoch(0).enumerate() {
        let x = be.upload(&b.x)?;
        correct += tr.correct(&be, &x, &b.y, query0 + k as u64)?;
    }
    Ok(correct as f64 / data.len().max(1) as f64)
}

/// Train as the config says on its `[substrate]`; returns the per-epoch logs of this invocation.
/// `cfg` has its overrides applied and its input normalization filled in (by `ep_run::train`).
pub fn train(cfg: &TrainConfig, opts: &TrainOptions) -> Result<Vec<EpochLog>> {
    let sc = cfg
        .substrate
        .as_ref()
        .context("[substrate] section missing")?;
    let be = Cpu;
    let preset = load_preset(sc.preset_name(), &sc.set).context("[substrate] preset")?;
    let tile = parse_tile(&sc.tile).context("[substrate] tile")?;
    let seed = sc.seed.unwrap_or(cfg.seed);
    let out = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&cfg.name));
    let ckpt = out.join("checkpoint.safetensors");
    let log_path = out.join("log.jsonl");
    let (train_set, test_set) = load_data(&cfg.data, cfg.model.input)?;
    let norm = normalization(&cfg.data)?;
    let root = Stream::new(cfg.seed, "epsim.train");
    let new_opt = || {
        Optimizer::new(
            cfg.optim.algorithm.clone(),
            cfg.optim.lrs.clone(),
            cfg.wds(),
            2,
        )
    };

    let net = EpNet::init(&be, cfg.model.clone(), &root.child("init"), cfg.init_scale)?;
    let loaded = compile_model(&net, &preset, tile).context("[substrate] compiling the model")?;
    let mut tr = SubstrateTrainer::new(&be, loaded, seed, preset.update.clone(), sc.rounding)
        .context("[substrate] realizing the model")?;
    let mut opt = new_opt()?;
    let mut state = TrainState {
        epochs_done: 0,
        batches_done: 0,
        optimizer_steps: 0,
        config: cfg.clone(),
    };
    if ckpt.exists() {
        if !opts.resume {
            bail!(
                "{} exists: pass --resume to continue that run, or choose another --out / name",
                ckpt.display()
            );
        }
        let bytes = std::fs::read(&ckpt).with_context(|| format!("reading {}", ckpt.display()))?;
        let f = TensorFile::from_bytes(&bytes).with_context(|| format!("{}", ckpt.display()))?;
        let st: TrainState = serde_json::from_str(
            f.metadata
                .get(TRAIN_KEY)
                .with_context(|| format!("{}: not a training checkpoint", ckpt.display()))?,
        )
        .with_context(|| format!("{}: bad training state", ckpt.display()))?;
        let mut same = st.config.clone();
        same.train.epochs = cfg.train.epochs;
        if &same != cfg {
            bail!(
                "{}: the checkpoint was made with a different config (only [train] epochs may change on resume)",
                ckpt.display()
            );
        }
        let meta: SubstrateMeta = serde_json::from_str(
            f.metadata
                .get(SUBSTRATE_KEY)
                .with_context(|| format!("{}: no {SUBSTRATE_KEY} metadata", ckpt.display()))?,
        )
        .with_context(|| format!("{}: bad {SUBSTRATE_KEY}", ckpt.display()))?;
        let (_, _, bs) =
            model_from_file(&f, None).with_context(|| format!("{}", ckpt.display()))?;
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
                    .map(|i| {
                        get(format!("substrate.device.{i}")).map(|t| t.iter().copied().collect())
                    })
                    .collect::<Result<Vec<Vec<f32>>>>()?,
                al,
            )),
        };
        tr.restore(&be, targets, bs, pulsed, meta.updates, meta.pulses)
            .with_context(|| format!("{}: restoring the device state", ckpt.display()))?;
        restore_optimizer(&f, &mut opt, st.optimizer_steps);
        tracing::info!("resuming {} after epoch {}", cfg.name, st.epochs_done);
        state = st;
    }
    let mut log_lines = retained_log_lines(&log_path, state.epochs_done);
    let loader = crate::ep_run::train_loader(
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
        let pulses0 = tr.pulses;
        let (mut seen, mut correct) = (0usize, 0usize);
        for (bi, batch) in loader.epoch(epoch as u64).take(nb).enumerate() {
            let x = be.upload(&batch.x)?;
            let s = tr
                .train_batch(
                    &be,
                    &mut opt,
                    &cfg.ep,
                    &x,
                    &batch.y,
                    &sign_stream,
                    state.batches_done,
                )
                .with_context(|| format!("epoch {} batch {} (substrate)", epoch + 1, bi + 1))?;
            state.batches_done += 1;
            seen += s.n;
            correct += s.correct;
            pb.set_message(format!(
                "acc {:.3}  {} pulses",
                correct as f64 / seen as f64,
                tr.pulses - pulses0
            ));
            pb.inc(1);
        }
        pb.finish_and_clear();
        let train_time = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let capped;
        let eval_set = match cfg.train.max_batches {
            Some(m) if m * eval_bs < test_set.len() => {
                capped = balanced_subset(&test_set, m * eval_bs);
                &capped
            }
            _ => &test_set,
        };
        let q0 = EVAL_QUERY + (epoch as u64) * (1 << 24);
        let test_acc = evaluate_substrate(&tr, eval_set, &norm, eval_bs, q0)?;
        let log = SubstrateEpochLog {
            base: EpochLog {
                epoch: epoch + 1,
                lrs,
                train_acc: correct as f64 / seen.max(1) as f64,
                test_acc,
                train_images: seen,
                train_time_s: train_time,
                train_img_per_s: seen as f64 / train_time.max(1e-9),
                eval_time_s: t1.elapsed().as_secs_f64(),
            },
            pulses: tr.pulses - pulses0,
            pulses_total: tr.pulses,
            substrate: format!("netlist:{}", sc.preset_name()),
        };
        println!(
            "epoch {:>3}/{}  train acc {:.4}  test acc (substrate) {:.4}  pulses {} (total {})  {:.0} s",
            log.base.epoch,
            cfg.train.epochs,
            log.base.train_acc,
            log.base.test_acc,
            log.pulses,
            log.pulses_total,
            train_time + log.base.eval_time_s
        );
        state.epochs_done += 1;
        state.optimizer_steps = opt.steps;
        save_substrate_checkpoint(&ckpt, &tr, &opt, &state)?;
        log_lines.push(serde_json::to_string(&log)?);
        write_atomic(&log_path, (log_lines.join("\n") + "\n").as_bytes())?;
        logs.push(log.base);
        run_here += 1;
    }
    Ok(logs)
}

/// Write the checkpoint of a substrate run (see the module doc) atomically.
fn save_substrate_checkpoint(
    path: &std::path::Path,
    tr: &SubstrateTrainer<Cpu>,
    opt: &Optimizer,
    state: &TrainState,
) -> Result<()> {
    // The model part and the counters exactly as a digital checkpoint, then the device state.
    let (ws, bs) = tr.net().to_host(&Cpu)?;
    let mut f = model_to_file(&tr.net().spec, &ws, &bs)?;
    push_optimizer(&mut f, opt);
    f.metadata
        .insert(TRAIN_KEY.into(), serde_json::to_string(state)?);
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
    write_atomic(path, &f.to_bytes()?)
}
