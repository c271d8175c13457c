//! A study as cells: the plan (cell i = line i of `plan.jsonl`: model × substrate × seed ×
//! protocol × suite item, in that nesting), each cell run on its own and written atomically to
//! `cells/<i>.json` (so a killed study loses at most the cell in flight, and a cell that exists is
//! done), and the collection of every cell into `results.jsonl`, `report.md` and its plots.
//!
//! Every cell realizes its model afresh (a stochastic substrate's read noise is numbered by the
//! queries of its realization), so a cell's record depends on the study file and its own
//! coordinates only, not on which cells ran before it in the same process: a resumed study gives
//! the records of an uninterrupted one. On a deterministic substrate a cell's record is the one
//! `epsim robustness` writes for the same settings (same data order and attack seeds), plus `cell`
//! and `study`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::item::ItemRun;
use super::spec::{ModelEntry, StudySpec};
use super::suite::SuiteItem;
use super::target::Target;
use crate::data::{check_input_shape, load_eval_set};
use crate::device::Engine;
use crate::files::write_atomic;
use crate::results::{RecordContext, git_commit};

/// One cell of a study: one suite item (an attack at one strength under one protocol, or a
/// corruption at one severity) on one model, substrate and seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Position in the plan.
    pub index: usize,
    /// Model name (the study's `[[model]] name`).
    pub model: String,
    /// Substrate as the study writes it.
    pub substrate: String,
    /// Master seed.
    pub seed: u64,
    /// Protocol (`standard`, `advep`; `none` for corruptions).
    pub protocol: String,
    /// Suite item id: `pgd-linf@0.03`, `fog@s3`.
    pub item: String,
    /// A sweep cell's preset override `KEY=level` (after the model's `set`); empty for the suite's
    /// cells (and then not written, so plans without sweeps are unchanged).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<String>,
}

/// The cells of a study, in order.
pub fn plan(spec: &StudySpec, origin: &Path) -> Result<Vec<Cell>> {
    let items = spec.suite.items(origin)?;
    let mut cells = Vec::new();
    for m in &spec.models {
        for s in &m.substrates {
            for &seed in &spec.seeds {
                let mut push = |protocol: &str, item: &SuiteItem| {
                    cells.push(Cell {
                        index: cells.len(),
                        model: m.name.clone(),
                        substrate: s.clone(),
                        seed,
                        protocol: protocol.to_string(),
                        item: item.id(),
                        set: Vec::new(),
                    })
                };
                // The clean accuracy on every image (attacks may use fewer).
                push("none", &SuiteItem::Clean);
                for p in &spec.suite.protocols {
                    for it in items
                        .iter()
                        .filter(|i| matches!(i, SuiteItem::Attack { .. }))
                    {
                        push(p, it);
                    }
                }
                for it in items
                    .iter()
                    .filter(|i| matches!(i, SuiteItem::Corruption(..)))
                {
                    push("none", it);
                }
            }
        }
    }
    // The sweeps: every level × seed × item (attacks under the standard protocol).
    for sw in &spec.sweeps {
        let param = super::levels::SweepParam::parse(&sw.param)?;
        for i in 0..param.levels.len() {
            for &seed in &spec.seeds {
                for it in &sw.items {
                    let attack = items
                        .iter()
                        .any(|x| x.id() == *it && matches!(x, SuiteItem::Attack { .. }));
                    cells.push(Cell {
                        index: cells.len(),
                        model: sw.model.clone(),
                        substrate: sw.substrate.clone(),
                        seed,
                        protocol: if attack { "standard" } else { "none" }.into(),
                        item: it.clone(),
                        set: param.sets(&[], i),
                    });
                }
            }
        }
    }
    Ok(cells)
}

/// How `epsim study` runs.
#[derive(Debug, Clone, Default)]
pub struct StudyOptions {
    /// Keep the cells already done in the output directory (the plan must be unchanged).
    pub resume: bool,
    /// Run only these cells (no collection unless every cell is then done).
    pub only: Vec<usize>,
    /// Never collect, even when every cell is done (a task of a job array: `collect` runs once,
    /// after the array).
    pub no_collect: bool,
}

/// What a study run did.
#[derive(Debug, Clone)]
pub struct StudyOutcome {
    /// The output directory.
    pub out_dir: PathBuf,
    /// Cells in the plan.
    pub cells: usize,
    /// Cells run by this invocation.
    pub ran: usize,
    /// The report, when every cell is done.
    pub report: Option<crate::report::Written>,
}

/// The output directory of a study.
pub fn out_dir(spec: &StudySpec) -> PathBuf {
    spec.out_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&spec.name))
}

/// Where cell `i` of a study writing to `out` is recorded.
pub fn cell_path(out: &Path, i: usize) -> PathBuf {
    out.join("cells").join(format!("{i:06}.json"))
}

/// Write the plan, or check it against the one written by an earlier run; finished cells of an
/// earlier run are kept only with `resume`.
fn write_or_check_plan(out: &Path, cells: &[Cell], resume: bool) -> Result<()> {
    let done = std::fs::read_dir(out.join("cells")).map_or(0, |d| d.count());
    ensure!(
        done == 0 || resume,
        "{} holds {done} finished cell(s) of an earlier run: pass --resume to keep them and run \
         the rest, or choose another out_dir",
        out.display()
    );
    let lines = cells
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<Vec<_>, _>>()?;
    super::manifest::check_or_write_plan(out, "study", &lines, true)
}

/// The model file of an entry: its checkpoint, or the checkpoint of its training config, trained
/// first (resumably, on `be`) into `<out>/models/<name>/` when absent.
fn model_file<B: Engine>(be: &B, m: &ModelEntry, out: &Path) -> Result<PathBuf> {
    if m.checkpoint.exists() {
        return Ok(m.checkpoint.clone());
    }
    let cfg = m
        .train
        .as_ref()
        .context("no checkpoint and no training config")?;
    let dir = out.join("models").join(&m.name);
    let text = std::fs::read_to_string(cfg)
        .with_context(|| format!("reading config {}", cfg.display()))?;
    let mut any = crate::runs::AnyConfig::from_toml(&text, &cfg.display().to_string())?;
    // An AdvCNN config trains one model per ε, each in eps-<ε>/: train the one this entry is.
    let ckpt = match &mut any {
        crate::runs::AnyConfig::Baseline(c) if c.adv.is_some() => {
            let adv = c.adv.as_mut().expect("checked");
            let eps = match (m.adv_eps, adv.eps.as_slice()) {
                (Some(e), list) if list.contains(&e) => e,
                (Some(e), list) => bail!(
                    "model {}: adv_eps = {e} is not one of the ε of {} ({list:?})",
                    m.name,
                    cfg.display()
                ),
                (None, [e]) => *e,
                (None, list) => bail!(
                    "model {}: {} trains one AdvCNN per ε ({list:?}); say which one this model \
                     is with adv_eps = <ε>",
                    m.name,
                    cfg.display()
                ),
            };
            adv.eps = vec![eps];
            dir.join(format!("eps-{eps}"))
                .join("checkpoint.safetensors")
        }
        _ => dir.join("checkpoint.safetensors"),
    };
    // A finished run is used as it is (array tasks read it at once; resuming would lock it).
    let epochs = m.train_epochs.unwrap_or(match &any {
        crate::runs::AnyConfig::Ep(c) => c.train.epochs,
        crate::runs::AnyConfig::Baseline(c) => c.train.epochs,
    });
    if crate::runs::epoch_loop::epochs_done(&ckpt).is_some_and(|e| e >= epochs) {
        return Ok(ckpt);
    }
    println!(
        "training model {} ({}) into {}",
        m.name,
        cfg.display(),
        dir.display()
    );
    crate::runs::train(
        be,
        &any,
        &crate::runs::TrainOptions {
            out_dir: Some(dir),
            resume: ckpt.exists(),
            epochs: m.train_epochs,
            ..Default::default()
        },
    )
    .with_context(|| format!("training model {}", m.name))?;
    Ok(ckpt)
}

/// Train (or finish training) every model of the study whose checkpoint is missing, as a run of
/// the study would before its cells; returns the number of models.
pub fn train_models<B: Engine>(be: &B, spec: &StudySpec) -> Result<usize> {
    let out = out_dir(spec);
    for m in &spec.models {
        model_file(be, m, &out)?;
    }
    Ok(spec.models.len())
}

/// Run a study on `be`: plan, run the cells not done yet, collect (see the module doc).
pub fn run_study<B: Engine>(
    be: &B,
    spec: &StudySpec,
    origin: &Path,
    opts: &StudyOptions,
) -> Result<StudyOutcome> {
    let cells = plan(spec, origin)?;
    for &i in &opts.only {
        ensure!(
            i < cells.len(),
            "--only {i}: the study has {} cells (0..{})",
            cells.len(),
            cells.len()
        );
    }
    let out = out_dir(spec);
    std::fs::create_dir_all(out.join("cells"))
        .with_context(|| format!("creating {}", out.display()))?;
    write_or_check_plan(&out, &cells, opts.resume || !opts.only.is_empty())?;
    super::manifest::check_or_write(
        &super::manifest::Identity::of_study(origin, &spec.name)?,
        &out,
        cells.len(),
    )?;
    let items: BTreeMap<String, SuiteItem> = spec
        .suite
        .items(origin)?
        .into_iter()
        .map(|i| (i.id(), i))
        .collect();
    let todo: Vec<&Cell> = cells
        .iter()
        .filter(|c| opts.only.is_empty() || opts.only.contains(&c.index))
        .filter(|c| !cell_path(&out, c.index).exists())
        .collect();
    if !opts.no_collect || !todo.is_empty() {
        println!(
            "study {}: {} cells, {} to run, output in {}",
            spec.name,
            cells.len(),
            todo.len(),
            out.display()
        );
    }
    let data = if todo.is_empty() {
        None
    } else {
        Some(load_eval_set(&spec.data, spec.subset)?)
    };
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    let commit = git_commit();
    let pb = crate::progress::progress(todo.len() as u64, "study cells");
    for c in &todo {
        let m = spec
            .models
            .iter()
            .find(|m| m.name == c.model)
            .expect("planned from the spec");
        let file = match files.get(&m.name) {
            Some(f) => f.clone(),
            None => {
                let f = model_file(be, m, &out)?;
                files.insert(m.name.clone(), f.clone());
                f
            }
        };
        let d = data.as_ref().expect("loaded when there are cells to run");
        let substrate = m.substrate_with(&c.substrate, &c.set)?;
        // The standard protocol takes gradients through the dynamics that is evaluated.
        let target = Target {
            settle: m.settle,
            model: file.clone(),
            spec: None,
            data: spec.data.clone(),
            t_predict: m.t_predict,
            t_attack: if c.protocol == "advep" {
                m.t_attack
            } else {
                None
            },
            subset: spec.subset,
            batch_size: spec.batch_size,
            substrate: substrate.clone(),
            eot: spec.eot,
        };
        let (clf, tp, ta) = target
            .classifier(be, c.seed)
            .with_context(|| format!("model {} on {}", c.model, c.substrate))?;
        check_input_shape(d, clf.input_shape(), &spec.data)?;
        // A transfer attack's source: the same model on the item's transfer_from substrate.
        let item = &items[&c.item];
        let source = match item {
            SuiteItem::Attack {
                transfer_from: Some(src),
                ..
            } => {
                let mut st = target.clone();
                st.substrate = crate::classifier::substrate::SubstrateSpec::transfer_source(src)?;
                Some(
                    st.classifier(be, c.seed)
                        .with_context(|| format!("model {} on {src}", c.model))?
                        .0,
                )
            }
            _ => None,
        };
        let cx = RecordContext {
            model: file.display().to_string(),
            substrate: substrate.label(),
            seed: c.seed,
            data: spec.data.clone(),
            n: d.len(),
            commit: commit.clone(),
            settle: m.settle,
        };
        let run = ItemRun {
            clf: clf.as_ref(),
            data: d,
            subset: spec.subset,
            batch_size: spec.batch_size,
            eot: spec.eot,
            corruptions: spec.suite.corruptions.as_ref(),
            cx: &cx,
            t_predict: tp,
            t_attack: ta,
            source: source.as_deref(),
        };
        let (_, mut rec) = run.run(item, &c.protocol)?;
        rec["cell"] = json!(c.index);
        rec["study"] = json!(spec.name);
        if let Some((key, level)) = c.set.first().and_then(|s| s.split_once('=')) {
            // A sweep cell: the swept parameter and its level (a number when it is one).
            rec["sweep_param"] = json!(key);
            rec["level_text"] = json!(level);
            rec["level"] = level
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .map_or(json!(level), |x| json!(x));
        }
        let line = serde_json::to_string(&rec)? + "\n";
        write_atomic(&cell_path(&out, c.index), line.as_bytes())?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    let missing: Vec<usize> = cells
        .iter()
        .filter(|c| !cell_path(&out, c.index).exists())
        .map(|c| c.index)
        .collect();
    let report = if opts.no_collect {
        None
    } else if missing.is_empty() {
        Some(collect(be, spec, &cells, &out)?)
    } else {
        println!(
            "{} of {} cells are not done yet (e.g. {:?}); run again (with --resume) to finish",
            missing.len(),
            cells.len(),
            &missing[..missing.len().min(8)]
        );
        None
    };
    Ok(StudyOutcome {
        out_dir: out,
        cells: cells.len(),
        ran: todo.len(),
        report,
    })
}

/// Merge every cell into `results.jsonl` (plan order; the sweep cells into `sweeps.jsonl`) and
/// write `report.md` with its plots, the models labelled by their study names (the settling figure
/// computed on `be`), and the sweeps' section.
pub fn collect<B: Engine>(
    be: &B,
    spec: &StudySpec,
    cells: &[Cell],
    out: &Path,
) -> Result<crate::report::Written> {
    let mut text = String::new();
    let mut sweep_text = String::new();
    let mut labels: Vec<String> = Vec::new();
    let (mut main, mut swept) = (Vec::new(), Vec::new());
    for c in cells {
        let p = cell_path(out, c.index);
        let line =
            std::fs::read_to_string(&p).with_context(|| format!("reading cell {}", p.display()))?;
        let v: Value = serde_json::from_str(line.trim())
            .with_context(|| format!("{}: not a cell record", p.display()))?;
        if !c.set.is_empty() {
            sweep_text += line.trim();
            sweep_text.push('\n');
            swept.push((c.clone(), v));
            continue;
        }
        let model = v["model"].as_str().unwrap_or_default().to_string();
        let label = format!("{model}={}", c.model);
        if !labels.contains(&label) {
            labels.push(label);
        }
        text += line.trim();
        text.push('\n');
        main.push((c.clone(), v));
    }
    let results = out.join("results.jsonl");
    write_atomic(&results, text.as_bytes())?;
    let report_md = out.join("report.md");
    let mut written = crate::report::write_report(&[results], &report_md, &labels)?;
    // The figures of the models of the collected cells (a partial collection leaves out the
    // models not run yet, so none is trained here): every model's adversarial examples, the EP
    // models' settling, trajectories and T_attack figures.
    let mut all: Vec<super::figures::NamedModel> = Vec::new();
    let mut models = Vec::new();
    for m in spec
        .models
        .iter()
        .filter(|m| main.iter().any(|(c, _)| c.model == m.name))
    {
        let file = model_file(be, m, out)?;
        if !crate::classifier::load::is_baseline_file(&file)? {
            models.push(super::figures::EpModel {
                name: m.name.clone(),
                file: file.clone(),
                t_predict: m.t_predict,
            });
        }
        all.push((m.name.clone(), file, m.t_predict, m.settle));
    }
    if !models.is_empty() || (!all.is_empty() && spec.example_images > 0) {
        let d = load_eval_set(&spec.data, spec.subset)?;
        let seed = spec.seeds.first().copied().unwrap_or(0);
        let (suite, bs) = (&spec.suite, spec.batch_size);
        let mut sections = Vec::new();
        if !models.is_empty() {
            sections.push(super::figures::settling(be, &models, &d, bs, out)?);
            sections.push(super::figures::trajectories(be, &models, &d, bs, out)?);
            let n = spec.t_attack_images;
            sections.push(super::figures::t_attack(
                be, &models, suite, &d, n, bs, seed, out,
            )?);
        }
        let n = spec.example_images;
        sections.push(super::figures::examples(
            be, &all, suite, &d, n, bs, seed, out,
        )?);
        for section in sections.into_iter().filter(|s| !s.is_empty()) {
            written.markdown += &section;
            written.plots += 1;
        }
    }
    if !swept.is_empty() {
        write_atomic(&out.join("sweeps.jsonl"), sweep_text.as_bytes())?;
        let (section, figures) =
            super::sweep_cells::section(spec, &records_view(&main), &records_view(&swept), out)?;
        written.markdown += &section;
        written.plots += figures;
    }
    write_atomic(&report_md, written.markdown.as_bytes())?;
    Ok(written)
}

/// Cells with their records as [`super::sweep_cells::CellRecord`]s.
fn records_view(cells: &[(Cell, Value)]) -> Vec<super::sweep_cells::CellRecord<'_>> {
    cells
        .iter()
        .map(|(c, v)| super::sweep_cells::CellRecord {
            model: &c.model,
            substrate: &c.substrate,
            protocol: &c.protocol,
            item: &c.item,
            set: &c.set,
            record: v,
        })
        .collect()
}
