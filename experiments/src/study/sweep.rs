//! `epsim sweep`: a robustness suite on the digital substrate and on a device preset at several
//! levels of one parameter, each level realized from several substrate seeds; results.jsonl,
//! sweep.md (mean ± std per level, cost per level with its Pareto front) and one accuracy-vs-level
//! plot per suite item. Run here in one process, or as cells under the index contract of
//! schedulers ([`SweepGrid`], one run of the suite per cell), both through the same code.
//!
//! Seeds: attacks and corruptions use the master seed (`--seed`) in every run, so differences
//! between runs come from the substrate only; the `k`-th substrate realization (programming noise,
//! device-to-device spreads, read-noise streams) uses seed `--seed + k`. A run with substrate seed
//! `s` at level `v` is therefore the same substrate as
//! `epsim eval --substrate netlist:<preset> --set <base>,<param>=<v> --seed s`.
//!
//! Resume: results.jsonl is appended one line per suite item as each run finishes. An existing
//! non-empty results.jsonl is refused unless `--resume` is given; with it, the runs whose every
//! item is recorded (and whose records match this sweep: parameter, model, image count) are kept
//! and skipped, a partly recorded run is dropped (its lines removed, atomically) and redone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use ep::substrate::feedforward::Layout;
use serde_json::{Value, json};
use sim::netlist::{Loaded, TileSize};

use super::cells::cell_path;
use super::index::Grid;
use super::item::ItemRun;
use super::levels::SweepParam;
use super::manifest::{Identity, canonical_toml, fnv_hex};
use super::suite::{SuiteCorruptions, SuiteItem, read_suite};
use crate::classifier::BaselineClassifier;
use crate::classifier::Classifier;
use crate::classifier::load::{HostModel, is_baseline_file, load_baseline, load_model};
use crate::classifier::substrate::{
    NetlistClassifier, SubstrateSpec, classifier, compile_model, feed_forward_host, load_preset,
};
use crate::data::{Dataset, check_input_shape, load_eval_set};
use crate::device::Engine;
use crate::files::{JsonlAppender, write_atomic};
use crate::report::{Written, plot};
use crate::results::{RecordContext, git_commit};

/// `epsim sweep`: the sweep's settings (see the module doc).
#[derive(Debug, Clone)]
pub struct Sweep {
    /// EP model file (checkpoint, or a state dict + `spec`).
    pub model: PathBuf,
    /// Model spec (TOML or JSON) for files without one.
    pub spec: Option<PathBuf>,
    /// Dataset spec; without a split the test split is used.
    pub data: String,
    /// Device preset: a built-in name or a preset TOML file.
    pub preset: String,
    /// The swept parameter and its levels, `KEY=V1,V2,...`.
    pub param: String,
    /// Overrides applied at every level before the swept value.
    pub set: Vec<String>,
    /// Suite file (TOML).
    pub suite: PathBuf,
    /// Substrate realizations per level (seeds `seed`, `seed + 1`, ...).
    pub substrate_seeds: usize,
    /// Output directory: results.jsonl, sweep.md, one PNG per suite item.
    pub out_dir: PathBuf,
    /// Continue an interrupted sweep in `out_dir`.
    pub resume: bool,
    /// Free-phase steps for predictions and gradients (default: the model's T1).
    pub t_predict: Option<usize>,
    /// How an EP model's predictions settle (default plain T_predict steps; then the cap).
    pub settle: ep::Settle,
    /// Use only the first N images (class-balanced).
    pub subset: Option<usize>,
    /// Batch size.
    pub batch_size: usize,
    /// Physical array size.
    pub tile: TileSize,
    /// Gradients averaged per attack step on stochastic substrates (EOT).
    pub eot: Option<usize>,
}

/// What is fixed across the runs of a sweep.
struct Ctx<'a> {
    a: &'a Sweep,
    items: &'a [SuiteItem],
    corruptions: Option<&'a SuiteCorruptions>,
    d: &'a Dataset,
    seed: u64,
    commit: String,
    t_predict: usize,
}

impl Ctx<'_> {
    /// The record context of a run on `substrate`.
    fn record_context(&self, substrate: &str) -> RecordContext {
        RecordContext {
            model: self.a.model.display().to_string(),
            substrate: substrate.to_string(),
            seed: self.seed,
            data: self.a.data.clone(),
            n: self.d.len(),
            commit: self.commit.clone(),
            settle: self.a.settle,
        }
    }
}

/// Run the whole suite on one classifier: one (item id, accuracy, record) per item, in order (the
/// clean item first, so its record's cost fields count its reads only).
fn run_suite(
    c: &Ctx<'_>,
    clf: &dyn Classifier,
    substrate: &str,
) -> Result<Vec<(String, f64, Value)>> {
    let cx = c.record_context(substrate);
    let run = ItemRun {
        clf,
        data: c.d,
        subset: c.a.subset,
        batch_size: c.a.batch_size,
        eot: c.a.eot,
        corruptions: c.corruptions,
        cx: &cx,
        t_predict: c.t_predict,
        t_attack: c.t_predict,
        source: None,
    };
    c.items
        .iter()
        .map(|item| {
            let (acc, v) = run.run(item, "standard")?;
            Ok((item.id(), acc, v))
        })
        .collect()
}

/// A run of the sweep: `None` for the digital reference, else (level as given, substrate seed).
type RunKey = Option<(String, u64)>;
/// The complete runs of a results file: per run its (item, accuracy, record).
type RunRecords = BTreeMap<RunKey, Vec<(String, f64, Value)>>;

/// The completely recorded runs of an earlier invocation in `path` (see the module doc): per run
/// its (item, accuracy, record) in suite order. `path` is rewritten atomically without the lines of
/// incomplete runs.
fn previous_runs(
    path: &Path,
    param: &SweepParam,
    items: &[SuiteItem],
    model: &str,
    n: usize,
) -> Result<RunRecords> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let ids: Vec<String> = items.iter().map(|i| i.id()).collect();
    let mut runs: RunRecords = BTreeMap::new();
    // The lines as written (re-serializing parsed floats need not give the same digits).
    let mut raw: BTreeMap<RunKey, Vec<&str>> = BTreeMap::new();
    for (ln, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{} line {}", path.display(), ln + 1);
        let v: Value = serde_json::from_str(line).with_context(|| format!("{}: not JSON", at()))?;
        let field = |k: &str| {
            v.get(k)
                .with_context(|| format!("{}: no field {k:?} (not a sweep record?)", at()))
        };
        let key = field("sweep_param")?;
        ensure!(
            key == &json!(param.key),
            "{}: the sweep there is over {key}, not {:?}; choose another --out-dir",
            at(),
            param.key
        );
        ensure!(
            field("model")? == &json!(model) && field("n")? == &json!(n),
            "{}: recorded for model {} on {} images, this sweep is {model} on {n}; choose another \
             --out-dir",
            at(),
            field("model")?,
            field("n")?
        );
        let item = field("item")?
            .as_str()
            .with_context(|| format!("{}: item is not a string", at()))?
            .to_string();
        let acc = field("accuracy")?
            .as_f64()
            .with_context(|| format!("{}: accuracy is not a number", at()))?;
        let run: RunKey = match (field("level_text")?, field("substrate_seed")?) {
            (Value::Null, Value::Null) => None,
            (Value::String(l), s) => Some((
                l.clone(),
                s.as_u64()
                    .with_context(|| format!("{}: bad substrate_seed {s}", at()))?,
            )),
            (l, s) => anyhow::bail!("{}: bad level {l} / substrate seed {s}", at()),
        };
        raw.entry(run.clone()).or_default().push(line);
        runs.entry(run).or_default().push((item, acc, v));
    }
    // Keep a run only when it holds exactly the suite's items, in order.
    runs.retain(|_, recs| recs.iter().map(|r| &r.0).eq(ids.iter()));
    let mut kept = String::new();
    for key in runs.keys() {
        for line in &raw[key] {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    if kept != text {
        let tmp = path.with_extension("jsonl.tmp");
        std::fs::write(&tmp, &kept).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    }
    Ok(runs)
}

/// Mean and sample standard deviation (0 for a single value).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (m, 0.0);
    }
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
    (m, var.sqrt())
}

impl Sweep {
    /// Check the counts and the swept parameter (before any plan or run).
    pub fn check(&self) -> Result<()> {
        ensure!(self.substrate_seeds >= 1, "--substrate-seeds must be ≥ 1");
        ensure!(self.batch_size >= 1, "--batch-size must be ≥ 1");
        SweepParam::parse(&self.param)?;
        Ok(())
    }

    /// Run the sweep on `be`: see the module doc.
    pub fn run<B: Engine>(&self, be: &B, seed: u64) -> Result<()> {
        sweep(self, be, seed)
    }
}

/// A sweep's runs in order: the digital reference, then every level × substrate seed (the
/// order of results.jsonl, and the cells of [`SweepGrid`]).
fn run_keys(param: &SweepParam, a: &Sweep, seed: u64) -> Vec<RunKey> {
    let mut keys = vec![None];
    for l in &param.levels {
        for k in 0..a.substrate_seeds {
            keys.push(Some((l.clone(), seed.wrapping_add(k as u64))));
        }
    }
    keys
}

/// The swept model: an EP network, or a backprop baseline (realized as its feed-forward form).
enum Swept<B: Engine> {
    Ep(ep::EpNet<B>),
    /// The baseline, its feed-forward form (folded once) and what stays digital.
    Baseline(ep::baselines::Baseline, HostModel, Layout),
}

/// Everything a sweep's runs share, loaded and checked before the first (long) run.
struct Prepared<B: Engine> {
    suite: super::suite::Suite,
    items: Vec<SuiteItem>,
    param: SweepParam,
    presets: Vec<devices::Preset>,
    net: Swept<B>,
    d: Dataset,
    t_predict: usize,
    commit: String,
}

impl<B: Engine> Prepared<B> {
    fn load(a: &Sweep, be: &B) -> Result<Self> {
        let (suite, items) = read_suite(&a.suite)?;
        let param = SweepParam::parse(&a.param)?;
        a.check()?;
        let mut presets = Vec::with_capacity(param.levels.len());
        for (i, level) in param.levels.iter().enumerate() {
            let p = load_preset(&a.preset, &param.sets(&a.set, i))
                .with_context(|| format!("--param {}={level} (device {})", param.key, a.preset))?;
            presets.push(p);
        }
        let (net, input, t1) = if is_baseline_file(&a.model)? {
            ensure!(
                a.t_predict.is_none() && a.settle.is_default(),
                "--t-predict/--settle/--tol apply to EP models only ({} is a backprop baseline)",
                a.model.display()
            );
            let m = load_baseline(&a.model)?;
            // Refused here (a ViT, average pooling) rather than at the first level.
            let (host, layout) = feed_forward_host(&m)
                .with_context(|| format!("{}: realizing it on crossbars", a.model.display()))?;
            let input = m.spec.input();
            (Swept::Baseline(m, host, layout), input, 1)
        } else {
            let net = load_model(be, &a.model, a.spec.as_deref())?;
            let (input, t1) = (net.spec.input, net.spec.t1);
            (Swept::Ep(net), input, t1)
        };
        let d = load_eval_set(&a.data, a.subset)?;
        check_input_shape(&d, input, &a.data)?;
        if suite.corruptions.is_some() {
            super::suite::SuiteCorruptions::check_data(&a.suite, &a.data, d.shape[1])?;
        }
        let t_predict = a.t_predict.unwrap_or(t1);
        ensure!(t_predict >= 1, "--t-predict must be ≥ 1");
        Ok(Prepared {
            suite,
            items,
            param,
            presets,
            net,
            d,
            t_predict,
            commit: git_commit(),
        })
    }

    fn ctx<'a>(&'a self, a: &'a Sweep, seed: u64) -> Ctx<'a> {
        Ctx {
            a,
            items: &self.items,
            corruptions: self.suite.corruptions.as_ref(),
            d: &self.d,
            seed,
            commit: self.commit.clone(),
            t_predict: self.t_predict,
        }
    }

    /// Run `key` (see [`run_keys`]): the suite's records, tagged with the sweep's fields.
    /// `compiled` keeps the last level's compiled netlist for the next substrate seed.
    fn run(
        &self,
        be: &B,
        c: &Ctx<'_>,
        key: &RunKey,
        compiled: &mut Option<(usize, Loaded)>,
    ) -> Result<Vec<(String, f64, Value)>> {
        let a = c.a;
        let param = &self.param;
        let (recs, level, text, sseed) = match key {
            None => {
                let digital: Box<dyn Classifier> = match &self.net {
                    Swept::Ep(net) => classifier(
                        be,
                        Some(net.clone()),
                        &SubstrateSpec::Digital,
                        c.seed,
                        Some(self.t_predict),
                        &a.settle,
                    )?,
                    Swept::Baseline(m, ..) => {
                        Box::new(BaselineClassifier::new(be, std::borrow::Cow::Borrowed(m)))
                    }
                };
                let r = run_suite(c, digital.as_ref(), "digital")?;
                (r, Value::Null, Value::Null, Value::Null)
            }
            Some((level, sseed)) => {
                let i = param
                    .levels
                    .iter()
                    .position(|l| l == level)
                    .with_context(|| format!("{level} is not a level of {}", param.key))?;
                if compiled.as_ref().is_none_or(|(j, _)| *j != i) {
                    let l = match &self.net {
                        Swept::Ep(net) => {
                            compile_model(&HostModel::of_net(be, net)?, &self.presets[i], a.tile)?
                        }
                        Swept::Baseline(_, host, _) => {
                            compile_model(host, &self.presets[i], a.tile)?
                        }
                    };
                    *compiled = Some((i, l));
                }
                let l = &compiled.as_ref().expect("compiled above").1;
                let base = if a.set.is_empty() {
                    String::new()
                } else {
                    format!("{},", a.set.join(","))
                };
                let label = format!("netlist:{} --set {base}{}={level}", a.preset, param.key);
                let clf = match &self.net {
                    Swept::Ep(_) => {
                        NetlistClassifier::new(be, l, *sseed, &label, Some(self.t_predict))
                            .map(|c| c.with_settle(a.settle))
                    }
                    Swept::Baseline(m, _, layout) => NetlistClassifier::feed_forward(
                        be,
                        l,
                        layout.clone(),
                        m.spec.kind(),
                        *sseed,
                        &label,
                    ),
                }
                .with_context(|| format!("realizing {label} with substrate seed {sseed}"))?
                .with_cost(&self.presets[i], l);
                let r = run_suite(c, &clf, &label)?;
                tracing::info!("{}", clf.describe());
                (r, param.level_value(i), json!(level), json!(sseed))
            }
        };
        Ok(recs
            .into_iter()
            .map(|(item, acc, mut v)| {
                v["item"] = json!(item);
                v["sweep_param"] = json!(param.key);
                v["level"] = level.clone();
                v["level_text"] = text.clone();
                v["substrate_seed"] = sseed.clone();
                (item, acc, v)
            })
            .collect())
    }

    /// sweep.md and the plots from every run's records (in [`run_keys`] order).
    fn summarize(&self, c: &Ctx<'_>, runs: &RunRecords) -> Result<String> {
        let param = &self.param;
        let reference: BTreeMap<String, f64> = runs
            .get(&None)
            .context("the digital reference run is missing")?
            .iter()
            .map(|(item, acc, _)| (item.clone(), *acc))
            .collect();
        // accs[level][item] = accuracies over substrate seeds.
        let mut accs: Vec<BTreeMap<String, Vec<f64>>> = vec![BTreeMap::new(); param.levels.len()];
        // costs[level] = (energy J, latency s) per inference over substrate seeds (clean runs).
        let mut costs: Vec<Vec<(f64, f64)>> = vec![Vec::new(); param.levels.len()];
        for key in run_keys(param, c.a, c.seed).iter().skip(1) {
            let Some((level, _)) = key else { continue };
            let i = param
                .levels
                .iter()
                .position(|l| l == level)
                .expect("a level");
            let recs = runs
                .get(key)
                .with_context(|| format!("the run {key:?} is missing"))?;
            for (item, acc, v) in recs {
                if let (Some(e), Some(t)) = (v["energy_j"].as_f64(), v["latency_s"].as_f64()) {
                    costs[i].push((e, t));
                }
                accs[i].entry(item.clone()).or_default().push(*acc);
            }
        }
        write_outputs(c, param, &self.items, &reference, &accs, &costs)
    }
}

fn lines_of(recs: &[(String, f64, Value)]) -> Result<String> {
    let mut lines = String::new();
    for (_, _, v) in recs {
        lines.push_str(&serde_json::to_string(v)?);
        lines.push('\n');
    }
    Ok(lines)
}

fn sweep<B: Engine>(a: &Sweep, be: &B, seed: u64) -> Result<()> {
    // Validate everything before the first (long) run.
    let p = Prepared::load(a, be)?;
    std::fs::create_dir_all(&a.out_dir)
        .with_context(|| format!("creating {}", a.out_dir.display()))?;
    let results = a.out_dir.join("results.jsonl");
    let mut previous = if a.resume {
        previous_runs(
            &results,
            &p.param,
            &p.items,
            &a.model.display().to_string(),
            p.d.len(),
        )?
    } else {
        ensure!(
            std::fs::metadata(&results).map_or(true, |m| m.len() == 0),
            "{} exists: pass --resume to continue that sweep, or choose another --out-dir",
            results.display()
        );
        BTreeMap::new()
    };
    if !previous.is_empty() {
        println!(
            "resuming: {} of the sweep's runs are already recorded in {}",
            previous.len(),
            results.display()
        );
    }
    let mut out = JsonlAppender::open(&results)?;
    let ctx = p.ctx(a, seed);
    let keys = run_keys(&p.param, a, seed);
    let pb = crate::progress::progress(keys.len() as u64, "sweep runs");
    let mut compiled = None;
    let mut runs = RunRecords::new();
    for key in keys {
        let recs = match previous.remove(&key) {
            Some(r) => r,
            None => {
                let r = p.run(be, &ctx, &key, &mut compiled)?;
                // One run's records, appended together once the run is complete.
                out.append_raw(&lines_of(&r)?)?;
                r
            }
        };
        runs.insert(key, recs);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let table = p.summarize(&ctx, &runs)?;
    println!("{table}");
    println!(
        "results in {}; table in {}; plots in {}",
        results.display(),
        a.out_dir.join("sweep.md").display(),
        a.out_dir.display()
    );
    Ok(())
}

/// A sweep (with its master seed) as a [`Grid`] of the index contract: cell 0 is the digital
/// reference, cell 1 + i·S + k is level i at substrate seed `seed + k` (S substrate seeds), each
/// cell one run of the whole suite; `collect` writes the results.jsonl and sweep.md a local
/// `epsim sweep` writes.
#[derive(Debug, Clone)]
pub struct SweepGrid {
    /// The sweep.
    pub sweep: Sweep,
    /// Its master seed (`--seed`).
    pub seed: u64,
}

impl SweepGrid {
    fn keys(&self) -> Result<Vec<RunKey>> {
        Ok(run_keys(
            &SweepParam::parse(&self.sweep.param)?,
            &self.sweep,
            self.seed,
        ))
    }
}

impl Grid for SweepGrid {
    fn kind(&self) -> &'static str {
        "sweep"
    }
    fn out_dir(&self) -> PathBuf {
        self.sweep.out_dir.clone()
    }
    fn report_file(&self) -> &'static str {
        "sweep.md"
    }
    fn identity(&self) -> Result<Identity> {
        let args = self.task_args()?;
        let mut content = args.join("\n");
        content += "\n";
        content += &canonical_toml(&self.sweep.suite, "suite")?;
        if Path::new(&self.sweep.preset).is_file() {
            content += &canonical_toml(Path::new(&self.sweep.preset), "device preset")?;
        }
        Ok(Identity {
            kind: "sweep",
            name: self.sweep.out_dir.display().to_string(),
            source: format!("epsim {}", args.join(" ")),
            hash: fnv_hex(&content),
        })
    }
    fn plan_lines(&self) -> Result<Vec<String>> {
        self.keys()?
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let (level, sseed) = match k {
                    None => (Value::Null, Value::Null),
                    Some((l, s)) => (json!(l), json!(s)),
                };
                Ok(serde_json::to_string(
                    &json!({"index": i, "level": level, "substrate_seed": sseed}),
                )?)
            })
            .collect()
    }
    fn run_cell<B: Engine>(&self, be: &B, i: usize) -> Result<()> {
        let keys = self.keys()?;
        let key = keys
            .get(i)
            .with_context(|| format!("cell {i}: the sweep has {} cells", keys.len()))?;
        let p = Prepared::load(&self.sweep, be)?;
        let ctx = p.ctx(&self.sweep, self.seed);
        let recs = p.run(be, &ctx, key, &mut None)?;
        write_atomic(
            &cell_path(&self.sweep.out_dir, i),
            lines_of(&recs)?.as_bytes(),
        )
    }
    fn collect<B: Engine>(&self, be: &B, done: &[usize]) -> Result<Written> {
        let keys = self.keys()?;
        ensure!(
            done.len() == keys.len(),
            "a sweep is collected once every cell is done ({} of {})",
            done.len(),
            keys.len()
        );
        let p = Prepared::load(&self.sweep, be)?;
        let ctx = p.ctx(&self.sweep, self.seed);
        let ids: Vec<String> = p.items.iter().map(|i| i.id()).collect();
        let mut text = String::new();
        let mut runs = RunRecords::new();
        for (i, key) in keys.into_iter().enumerate() {
            let path = cell_path(&self.sweep.out_dir, i);
            let cell = std::fs::read_to_string(&path)
                .with_context(|| format!("reading cell {}", path.display()))?;
            let mut recs = Vec::new();
            for line in cell.lines() {
                let v: Value = serde_json::from_str(line)
                    .with_context(|| format!("{}: not a sweep record", path.display()))?;
                let item = v["item"].as_str().unwrap_or_default().to_string();
                let acc = v["accuracy"]
                    .as_f64()
                    .with_context(|| format!("{}: a record without accuracy", path.display()))?;
                recs.push((item, acc, v));
            }
            ensure!(
                recs.iter().map(|r| &r.0).eq(ids.iter()),
                "{}: its records are not the suite's items {ids:?}",
                path.display()
            );
            text += &cell;
            runs.insert(key, recs);
        }
        write_atomic(&self.sweep.out_dir.join("results.jsonl"), text.as_bytes())?;
        let markdown = p.summarize(&ctx, &runs)?;
        let plots = p.items.len() + usize::from(markdown.contains("(energy.png)"));
        Ok(Written {
            markdown,
            warnings: Vec::new(),
            plots,
        })
    }
    fn task_args(&self) -> Result<Vec<String>> {
        let a = &self.sweep;
        let mut v: Vec<String> = vec!["--seed".into(), self.seed.to_string(), "sweep".into()];
        let mut opt = |k: &str, val: String| {
            v.push(format!("--{k}"));
            v.push(val);
        };
        opt("model", a.model.display().to_string());
        if let Some(s) = &a.spec {
            opt("spec", s.display().to_string());
        }
        opt("data", a.data.clone());
        if let Some(n) = a.subset {
            opt("subset", n.to_string());
        }
        opt("preset", a.preset.clone());
        opt("param", a.param.clone());
        opt("suite", a.suite.display().to_string());
        opt("substrate-seeds", a.substrate_seeds.to_string());
        opt("out-dir", a.out_dir.display().to_string());
        if let Some(t) = a.t_predict {
            opt("t-predict", t.to_string());
        }
        for (k, val) in a.settle.flags() {
            opt(k, val);
        }
        opt("batch-size", a.batch_size.to_string());
        for s in &a.set {
            opt("set", s.clone());
        }
        opt("tile", format!("{}x{}", a.tile.rows, a.tile.cols));
        if let Some(e) = a.eot {
            opt("eot", e.to_string());
        }
        Ok(v)
    }
}

/// The cost section of sweep.md (energy and latency per inference per level, from the clean
/// runs' counted reads, beside the clean accuracy) and the accuracy-vs-energy plot `energy.png`
/// with its Pareto front (the levels no other level beats on both energy and accuracy). Empty
/// when the records carry no cost (results of an older epsim).
fn cost_section(
    c: &Ctx<'_>,
    param: &SweepParam,
    costs: &[Vec<(f64, f64)>],
    clean: &dyn Fn(usize) -> Result<(f64, f64)>,
) -> Result<String> {
    if costs.iter().any(|v| v.is_empty()) {
        return Ok(String::new());
    }
    let mut md = format!(
        "\n## Cost per inference on `{}`\n\nEnergy and latency of one inference ({} free-phase \
         steps), counted from the reads of the clean run (mean over substrate seeds; \
         `epsim cost` gives the breakdown by part, docs/cost-model.md the laws).\n\n\
         | level | energy (nJ) | latency (µs) | clean accuracy | Pareto |\n| --- | --- | --- | --- | --- |\n",
        c.a.preset, c.t_predict
    );
    let mut pts = Vec::with_capacity(costs.len());
    for (i, v) in costs.iter().enumerate() {
        let n = v.len() as f64;
        let e = v.iter().map(|p| p.0).sum::<f64>() / n;
        let t = v.iter().map(|p| p.1).sum::<f64>() / n;
        pts.push((e, t, clean(i)?.0));
    }
    let front = crate::cost::pareto_front(&pts.iter().map(|p| (p.0, p.2)).collect::<Vec<_>>());
    for (i, (e, t, acc)) in pts.iter().enumerate() {
        md += &format!(
            "| {}={} | {:.3} | {:.3} | {acc:.4} | {} |\n",
            param.key,
            param.levels[i],
            e * 1e9,
            t * 1e6,
            if front.contains(&i) { "yes" } else { "" }
        );
    }
    let mut all: Vec<(f64, f64)> = pts.iter().map(|p| (p.0 * 1e9, p.2)).collect();
    all.sort_by(|p, q| p.0.total_cmp(&q.0));
    let mut best: Vec<(f64, f64)> = front.iter().map(|&i| (pts[i].0 * 1e9, pts[i].2)).collect();
    best.sort_by(|p, q| p.0.total_cmp(&q.0));
    plot::line_chart(
        &c.a.out_dir.join("energy.png"),
        &format!(
            "clean accuracy vs energy per inference ({} on {})",
            param.key, c.a.preset
        ),
        "energy per inference (nJ)",
        "clean accuracy",
        &[
            plot::Series {
                label: format!("levels of {}", param.key),
                points: all,
            },
            plot::Series {
                label: "Pareto front".into(),
                points: best,
            },
        ],
        Some((0.0, 1.0)),
    )?;
    md += "\nPlot: [accuracy vs energy](energy.png)\n";
    Ok(md)
}

/// Write sweep.md and the plots; returns the markdown.
fn write_outputs(
    c: &Ctx<'_>,
    param: &SweepParam,
    items: &[SuiteItem],
    reference: &BTreeMap<String, f64>,
    accs: &[BTreeMap<String, Vec<f64>>],
    costs: &[Vec<(f64, f64)>],
) -> Result<String> {
    let a = c.a;
    let stat = |i: usize, id: &str| -> Result<(f64, f64)> {
        let v = accs[i]
            .get(id)
            .with_context(|| format!("no result for {id} at level {}", param.levels[i]))?;
        Ok(mean_std(v))
    };
    let mut md = format!(
        "# Sweep of `{}` on `{}`\n\nmodel `{}`, data `{}` ({} images), base overrides `{}`, seed {}, \
         {} substrate seed(s) per level ({}..={}), {}, commit {}\n\n\
         Accuracy: digital (one run) and mean ± sample standard deviation over the substrate \
         seeds per level; attacks give robust accuracy.\n\n| item | digital |",
        param.key,
        a.preset,
        a.model.display(),
        a.data,
        c.d.len(),
        if a.set.is_empty() {
            "-".to_string()
        } else {
            a.set.join(",")
        },
        c.seed,
        a.substrate_seeds,
        c.seed,
        c.seed.wrapping_add(a.substrate_seeds as u64 - 1),
        if a.settle.is_default() {
            format!("T_predict {}", c.t_predict)
        } else {
            format!("settle {}", a.settle.describe(c.t_predict))
        },
        c.commit
    );
    for l in &param.levels {
        md += &format!(" {}={l} |", param.key);
    }
    md += "\n| --- | --- |";
    for _ in &param.levels {
        md += " --- |";
    }
    md += "\n";
    for item in items {
        let id = item.id();
        let r = reference
            .get(&id)
            .with_context(|| format!("no digital result for {id}"))?;
        md += &format!("| {id} | {r:.4} |");
        for i in 0..param.levels.len() {
            let (m, s) = stat(i, &id)?;
            // One substrate seed has no spread to show.
            md += &if a.substrate_seeds > 1 {
                format!(" {m:.4} ± {s:.4} |")
            } else {
                format!(" {m:.4} |")
            };
        }
        md += "\n";
    }
    md += "\nPlots (accuracy vs level, error bars ±1 std, digital dashed):";
    for item in items {
        let id = item.id();
        let file = format!("{}.png", item.file_stem());
        let (xs, ticks): (Vec<f64>, Option<Vec<String>>) = match &param.numeric {
            Some(v) => (v.clone(), None),
            None => (
                (0..param.levels.len()).map(|i| i as f64).collect(),
                Some(param.levels.clone()),
            ),
        };
        let mut points = Vec::with_capacity(xs.len());
        for (i, &x) in xs.iter().enumerate() {
            let (m, s) = stat(i, &id)?;
            points.push((x, m, s));
        }
        if param.numeric.is_some() {
            points.sort_by(|p, q| p.0.total_cmp(&q.0));
        }
        let chart = plot::ErrorBarChart {
            title: format!("{id} on {}", a.preset),
            x_label: param.key.clone(),
            y_label: match item {
                SuiteItem::Attack { .. } => "robust accuracy".into(),
                _ => "accuracy".into(),
            },
            label: format!(
                "netlist:{} (mean ± std, {} seed(s))",
                a.preset, a.substrate_seeds
            ),
            points,
            x_ticks: ticks,
            reference: Some(("digital".into(), reference[&id])),
            y_range: Some((0.0, 1.0)),
        };
        chart.draw(&c.a.out_dir.join(&file))?;
        md += &format!(" [{id}]({file})");
    }
    md += "\n";
    md += &cost_section(c, param, costs, &|i| stat(i, "clean"))?;
    write_atomic(&a.out_dir.join("sweep.md"), md.as_bytes())?;
    Ok(md)
}
