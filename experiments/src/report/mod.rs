//! `epsim report`: merge the results.jsonl files of several runs (`epsim attack`, `epsim
//! robustness`) into the side-by-side layout of the study's tables: one table per attack (rows =
//! model / substrate / protocol, columns = strengths, cells = robust accuracy, plus a clean
//! column), one table of corruptions (cells = accuracy averaged over severities) and one by
//! severity (averaged over corruptions), a PNG plot per attack (accuracy vs ε, one line per row),
//! and the sanity checks of Carlini et al. (2019) computed over the merged records.
//!
//! Records are read leniently where the format grew over time (fields added later take
//! defaults), strictly where it matters: a line that is not JSON, or a record without its
//! accuracy, is an error naming the file and the line.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use serde::Deserialize;

/// Arguments of `epsim report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Results files (JSON Lines of `epsim attack` / `epsim robustness`), merged in this order.
    #[arg(long, num_args = 1.., required = true, value_name = "JSONL")]
    pub results: Vec<PathBuf>,
    /// Markdown report; the plots go next to it as `<stem>_<attack>.png`.
    #[arg(long, default_value = "report.md", value_name = "MD")]
    pub out: PathBuf,
    /// Row label of a model: `--label runs/ep/checkpoint.safetensors=EP-CNN` (the model path as
    /// recorded, or its file name or stem when that names one model). Default: the file stem.
    #[arg(long, value_name = "PATH=NAME")]
    pub label: Vec<String>,
}

fn digital() -> String {
    "digital".into()
}

fn standard() -> String {
    "standard".into()
}

/// One attack record (`epsim attack` / `epsim robustness`), as read back.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AttackRow {
    /// Model file.
    pub model: String,
    /// Substrate.
    #[serde(default = "digital")]
    pub substrate: String,
    /// Evaluation protocol.
    #[serde(default = "standard")]
    pub protocol: String,
    /// Attack name with its settings (e.g. `PGD-Linf eps=0.03 step=0.007 iters=10 restarts=1`).
    pub attack: String,
    /// Threat model ("linf", "l2").
    #[serde(default)]
    pub norm: String,
    /// Strength.
    pub eps: f64,
    /// The strength as given ("8/255").
    #[serde(default)]
    pub eps_text: String,
    /// Iterations or queries as asked (None: the attack's default).
    #[serde(default)]
    pub steps: Option<usize>,
    /// Free-phase steps of predictions.
    #[serde(default)]
    pub t_predict: usize,
    /// Free-phase steps of the gradient.
    #[serde(default)]
    pub t_attack: usize,
    /// Dataset spec.
    #[serde(default)]
    pub data: String,
    /// Images.
    pub n: usize,
    /// Clean accuracy.
    pub clean_accuracy: f64,
    /// Robust accuracy.
    pub robust_accuracy: f64,
}

/// One corruption record (`epsim robustness`), as read back.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CorruptionRow {
    /// Model file.
    pub model: String,
    /// Substrate.
    #[serde(default = "digital")]
    pub substrate: String,
    /// Corruption name.
    pub corruption: String,
    /// Severity 1..=5.
    pub severity: u32,
    /// Dataset spec.
    #[serde(default)]
    pub data: String,
    /// Images.
    pub n: usize,
    /// Accuracy.
    pub accuracy: f64,
}

/// A record of a results file.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// An attack at one strength.
    Attack(AttackRow),
    /// A corruption at one severity.
    Corruption(CorruptionRow),
    /// A record of another kind (kept out of the tables, counted in the report).
    Other(String),
}

/// Parse one line of a results file: `kind` "corruption" is a corruption record, no `kind` (or
/// "attack") an attack record, any other kind is [`Record::Other`].
pub fn parse_record(line: &str) -> Result<Record> {
    let v: serde_json::Value = serde_json::from_str(line).context("not valid JSON")?;
    ensure!(v.is_object(), "not a JSON object");
    let kind = match v.get("kind") {
        None => "attack".to_string(),
        Some(k) => k.as_str().context("\"kind\" is not a string")?.to_string(),
    };
    Ok(match kind.as_str() {
        "attack" => Record::Attack(serde_json::from_value(v).context("not a valid attack record")?),
        "corruption" => {
            Record::Corruption(serde_json::from_value(v).context("not a valid corruption record")?)
        }
        _ => Record::Other(kind),
    })
}

/// Read a results file: one record per non-blank line; errors name the file and the line.
pub fn read_results(path: &Path) -> Result<Vec<Record>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading results {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r = parse_record(line).with_context(|| format!("{}:{}", path.display(), i + 1))?;
        out.push(r);
    }
    Ok(out)
}

/// An attack record's own [`AttackRow`] (through its JSON form, so that it is read exactly as a
/// results file would be).
pub fn attack_row<T: serde::Serialize>(record: &T) -> Result<AttackRow> {
    match parse_record(&serde_json::to_string(record)?)? {
        Record::Attack(r) => Ok(r),
        _ => bail!("not an attack record"),
    }
}

/// The settings tokens of an attack name: `"PGD-Linf eps=0.1 iters=10"` →
/// ("PGD-Linf", [("eps", "0.1"), ("iters", "10")], rest) where rest holds the tokens without `=`
/// after the head (e.g. "(no random start)").
fn tokens(name: &str) -> (&str, Vec<(&str, &str)>, Vec<&str>) {
    let mut it = name.split_whitespace();
    let head = it.next().unwrap_or("");
    let (mut kv, mut rest) = (Vec::new(), Vec::new());
    for t in it {
        match t.split_once('=') {
            Some((k, v)) => kv.push((k, v)),
            None => rest.push(t),
        }
    }
    (head, kv, rest)
}

fn join(head: &str, kv: &[(&str, &str)], rest: &[&str]) -> String {
    let mut s = head.to_string();
    for (k, v) in kv {
        let _ = write!(s, " {k}={v}");
    }
    for r in rest {
        let _ = write!(s, " {r}");
    }
    s
}

/// The attack of a table: the name without its strength (`eps=`, `c=`) and the step size that
/// follows from it (`step=`). `"PGD-Linf eps=0.1 step=0.025 iters=10 restarts=1"` →
/// `"PGD-Linf iters=10 restarts=1"`.
pub fn attack_family(name: &str) -> String {
    let (head, kv, rest) = tokens(name);
    let kv: Vec<_> = kv
        .into_iter()
        .filter(|(k, _)| !matches!(*k, "eps" | "step" | "c"))
        .collect();
    join(head, &kv, &rest)
}

/// The attack without its budget, and the budget: (name without strength, step size, iterations
/// and restarts; iterations (`iters=`, `steps=` or `queries=`, else the record's `steps`),
/// restarts (`restarts=`, else 1)).
pub fn attack_budget(row: &AttackRow) -> (String, Option<usize>, usize) {
    let (head, kv, rest) = tokens(&row.attack);
    let mut iters = row.steps;
    let mut restarts = 1;
    let mut keep = Vec::new();
    for (k, v) in kv {
        match k {
            "iters" | "steps" | "queries" => iters = v.parse().ok().or(iters),
            "restarts" => restarts = v.parse().unwrap_or(1),
            "eps" | "step" | "c" => {}
            _ => keep.push((k, v)),
        }
    }
    (join(head, &keep, &rest), iters, restarts)
}

/// Two standard deviations of an accuracy `p` measured on `n` images (binomial), at least one
/// image: the noise band of the sanity checks.
pub fn noise_tolerance(p: f64, n: usize) -> f64 {
    let n = n.max(1) as f64;
    let p = p.clamp(0.0, 1.0);
    (2.0 * (p * (1.0 - p) / n).sqrt()).max(1.0 / n) + 1e-9
}

/// Outcome of one sanity check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// As expected.
    Pass,
    /// Suspicious: the evaluation may be wrong (gradient masking, too weak an attack).
    Warn,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
        })
    }
}

/// One sanity check result.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// PASS or WARN.
    pub status: Status,
    /// What was checked and what was found.
    pub message: String,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

/// The evaluation an attack record belongs to (model, substrate, protocol, free-phase steps,
/// images): records that differ only in the attack's settings are comparable.
fn setting(r: &AttackRow) -> (String, String, String, usize, usize, String, usize) {
    (
        r.model.clone(),
        r.substrate.clone(),
        r.protocol.clone(),
        r.t_predict,
        r.t_attack,
        r.data.clone(),
        r.n,
    )
}

/// "more PGD iterations or restarts never raise robust accuracy beyond noise": among records of
/// the same evaluation, attack and strength that differ in iterations and/or restarts, a budget
/// that is at least as large in both may not have a robust accuracy above the smaller one's plus
/// [`noise_tolerance`]. One check per such group (PASS listing the accuracies, or one WARN per
/// violating pair); groups with a single budget give none.
pub fn iteration_checks(rows: &[AttackRow]) -> Vec<Check> {
    // (iterations, restarts, robust accuracy, images).
    type Point = (Option<usize>, usize, f64, usize);
    // (evaluation, attack without budget, ε bits, norm), points, description.
    type Group = ((String, String, u64, String), Vec<Point>, String);
    let mut groups: Vec<Group> = Vec::new();
    for r in rows {
        let (base, iters, restarts) = attack_budget(r);
        let s = setting(r);
        let key = (
            format!("{s:?}"),
            base.clone(),
            r.eps.to_bits(),
            r.norm.clone(),
        );
        let p = (iters, restarts, r.robust_accuracy, r.n);
        let eps_text = if r.eps_text.is_empty() {
            format!("{}", r.eps)
        } else {
            r.eps_text.clone()
        };
        let what = format!("{base} at ε={eps_text} on {} ({})", r.model, r.substrate);
        match groups.iter_mut().find(|g| g.0 == key) {
            Some(g) => {
                // The same budget twice (a rerun): the later record replaces the earlier one.
                match g.1.iter_mut().find(|q| q.0 == p.0 && q.1 == p.1) {
                    Some(q) => *q = p,
                    None => g.1.push(p),
                }
            }
            None => groups.push((key, vec![p], what)),
        }
    }
    let mut out = Vec::new();
    for (_, mut pts, what) in groups {
        if pts.len() < 2 {
            continue;
        }
        pts.sort_by_key(|p| (p.0, p.1));
        let mut warned = false;
        for a in &pts {
            for b in &pts {
                let (Some(ia), Some(ib)) = (a.0, b.0) else {
                    continue;
                };
                let larger = ib >= ia && b.1 >= a.1 && (ib > ia || b.1 > a.1);
                if !larger {
                    continue;
                }
                let tol = noise_tolerance((a.2 + b.2) / 2.0, a.3.min(b.3));
                if b.2 > a.2 + tol {
                    warned = true;
                    out.push(Check {
                        status: Status::Warn,
                        message: format!(
                            "{what}: robust accuracy rises from {:.4} ({ia} iterations, {} restart(s)) to {:.4} ({ib} iterations, {} restart(s)), beyond the noise band ±{tol:.4}: the weaker attack's result is not trustworthy (randomness, gradient masking?)",
                            a.2, a.1, b.2, b.1
                        ),
                    });
                }
            }
        }
        if !warned {
            let list: Vec<String> = pts
                .iter()
                .map(|p| {
                    let it = p.0.map_or("default".to_string(), |i| i.to_string());
                    format!("{it} it × {} restart(s): {:.4}", p.1, p.2)
                })
                .collect();
            out.push(Check {
                status: Status::Pass,
                message: format!(
                    "{what}: more iterations/restarts never raise robust accuracy beyond noise ({})",
                    list.join(", ")
                ),
            });
        }
    }
    out
}

/// Robust accuracy non-increasing in ε (beyond noise) along each attack curve, collapse to ≤ 5 %
/// at a large ε (L∞ ≥ 0.3, L2 ≥ 5; not for C&W, whose strength is a constant), and black-box
/// (Square) not stronger than a white-box attack at the same ε beyond noise. WARNs one by one,
/// PASSes as one summary line per check.
pub fn strength_checks(rows: &[AttackRow]) -> Vec<Check> {
    let mut out = Vec::new();
    // ε-monotonicity per curve.
    let mut curves: Vec<((String, String), Vec<&AttackRow>)> = Vec::new();
    for r in rows {
        let key = (format!("{:?}", setting(r)), attack_family(&r.attack));
        match curves.iter_mut().find(|c| c.0 == key) {
            Some(c) => c.1.push(r),
            None => curves.push((key, vec![r])),
        }
    }
    let mut ok = 0;
    for ((_, fam), mut pts) in curves.iter().cloned() {
        pts.sort_by(|a, b| a.eps.total_cmp(&b.eps));
        let mut bad = false;
        for w in pts.windows(2) {
            let tol = noise_tolerance(
                (w[0].robust_accuracy + w[1].robust_accuracy) / 2.0,
                w[0].n.min(w[1].n),
            );
            if w[1].eps > w[0].eps && w[1].robust_accuracy > w[0].robust_accuracy + tol {
                bad = true;
                out.push(Check {
                    status: Status::Warn,
                    message: format!(
                        "{fam} on {} ({}): robust accuracy rises from {:.4} at ε={} to {:.4} at ε={} beyond noise ±{tol:.4} (gradient masking or too few iterations?)",
                        w[0].model, w[0].substrate, w[0].robust_accuracy, w[0].eps, w[1].robust_accuracy, w[1].eps
                    ),
                });
            }
        }
        if !bad && pts.len() > 1 {
            ok += 1;
        }
    }
    if ok > 0 {
        out.push(Check {
            status: Status::Pass,
            message: format!(
                "robust accuracy non-increasing in ε within noise on {ok} attack curve(s)"
            ),
        });
    }
    // Collapse at large ε.
    let mut large = 0;
    for r in rows {
        let norm = r.norm.to_ascii_lowercase();
        let is_large = (norm == "linf" && r.eps >= 0.3) || (norm == "l2" && r.eps >= 5.0);
        if !is_large || r.attack.starts_with("CW") {
            continue;
        }
        large += 1;
        if r.robust_accuracy > 0.05 {
            large -= 1;
            out.push(Check {
                status: Status::Warn,
                message: format!(
                    "{} at ε={} on {} ({}): robust accuracy {:.4} does not fall to ~0 at a large ε: the attack is not working (gradient masking?)",
                    attack_family(&r.attack), r.eps, r.model, r.substrate, r.robust_accuracy
                ),
            });
        }
    }
    if large > 0 {
        out.push(Check {
            status: Status::Pass,
            message: format!("robust accuracy ≤ 0.05 at large ε in {large} record(s)"),
        });
    }
    // Black-box vs white-box.
    let mut pairs = 0;
    for b in rows.iter().filter(|r| r.attack.starts_with("Square")) {
        for w in rows.iter().filter(|r| {
            !r.attack.starts_with("Square")
                && !r.attack.starts_with("CW")
                && setting(r) == setting(b)
                && r.norm == b.norm
                && r.eps == b.eps
        }) {
            pairs += 1;
            let tol = noise_tolerance((b.robust_accuracy + w.robust_accuracy) / 2.0, b.n);
            if b.robust_accuracy + tol < w.robust_accuracy {
                pairs -= 1;
                out.push(Check {
                    status: Status::Warn,
                    message: format!(
                        "black-box {} ({:.4}) is stronger than white-box {} ({:.4}) at ε={} on {} ({}): white-box gradients may be masked",
                        attack_family(&b.attack), b.robust_accuracy, attack_family(&w.attack), w.robust_accuracy, b.eps, b.model, b.substrate
                    ),
                });
            }
        }
    }
    if pairs > 0 {
        out.push(Check {
            status: Status::Pass,
            message: format!(
                "black-box not stronger than white-box beyond noise in {pairs} pair(s)"
            ),
        });
    }
    out
}

/// Row labels of the models: `overrides` (`PATH=NAME`, PATH being a recorded model path, or the
/// file name or stem of exactly one), else the file stem, or `parent/stem` where two model paths
/// share a stem.
pub fn model_labels(models: &[String], overrides: &[String]) -> Result<HashMap<String, String>> {
    let stem = |m: &str| {
        Path::new(m)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| m.to_string())
    };
    let mut out = HashMap::new();
    for m in models {
        let s = stem(m);
        let clash = models.iter().any(|o| o != m && stem(o) == s);
        let label = if clash {
            match Path::new(m).parent().and_then(|p| p.file_name()) {
                Some(p) => format!("{}/{s}", p.to_string_lossy()),
                None => m.clone(),
            }
        } else {
            s
        };
        out.insert(m.clone(), label);
    }
    for o in overrides {
        let Some((path, name)) = o.rsplit_once('=') else {
            bail!("--label {o:?}: expected PATH=NAME");
        };
        ensure!(
            !path.is_empty() && !name.is_empty(),
            "--label {o:?}: expected PATH=NAME"
        );
        let target = if models.iter().any(|m| m == path) {
            path.to_string()
        } else {
            let hits: Vec<&String> = models
                .iter()
                .filter(|m| {
                    let p = Path::new(m.as_str());
                    p.file_name().is_some_and(|f| f == path)
                        || p.file_stem().is_some_and(|f| f == path)
                })
                .collect();
            match hits.as_slice() {
                [one] => (*one).clone(),
                [] => bail!(
                    "--label {o:?}: no record has model {path:?} (models: {})",
                    models.join(", ")
                ),
                _ => bail!(
                    "--label {o:?}: {path:?} names several models ({}); give the full path",
                    hits.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        };
        out.insert(target, name.to_string());
    }
    Ok(out)
}

/// A table row: its label and cells (accuracies in [0, 1], None where missing).
#[derive(Debug, Clone, PartialEq)]
pub struct TableRow {
    /// Row label (model, plus substrate / protocol / free-phase steps where not the default).
    pub label: String,
    /// Clean accuracy.
    pub clean: Option<f64>,
    /// One cell per column.
    pub cells: Vec<Option<f64>>,
}

/// One attack's table: rows = evaluations, columns = strengths.
#[derive(Debug, Clone, PartialEq)]
pub struct AttackTable {
    /// The attack without its strength ([`attack_family`]).
    pub attack: String,
    /// "ε", or "c" for fixed-constant C&W.
    pub strength: &'static str,
    /// Column strengths (ascending) and their texts.
    pub columns: Vec<(f64, String)>,
    /// Rows in order of first appearance.
    pub rows: Vec<TableRow>,
}

/// The corruption tables.
#[derive(Debug, Clone, PartialEq)]
pub struct CorruptionTables {
    /// Corruption names (columns of the first table).
    pub names: Vec<String>,
    /// Severities (columns of the second table).
    pub severities: Vec<u32>,
    /// Per row: accuracy per corruption averaged over its severities; the last cell is the mean
    /// over all (corruption, severity) records of the row.
    pub by_corruption: Vec<TableRow>,
    /// Per row: accuracy per severity averaged over the corruptions.
    pub by_severity: Vec<TableRow>,
}

/// The merged report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Attack tables in order of first appearance.
    pub attacks: Vec<AttackTable>,
    /// Corruption tables, if any corruption record was read.
    pub corruptions: Option<CorruptionTables>,
    /// Sanity checks.
    pub checks: Vec<Check>,
    /// Notes (replaced duplicates, skipped kinds).
    pub notes: Vec<String>,
}

/// Per model: the distinct free-phase settings and image sets its attack records use.
type Variants = HashMap<String, (Vec<(usize, usize)>, Vec<(String, usize)>)>;

fn variants(rows: &[&AttackRow]) -> Variants {
    let mut v: Variants = HashMap::new();
    for r in rows {
        let e = v.entry(r.model.clone()).or_default();
        if !e.0.contains(&(r.t_predict, r.t_attack)) {
            e.0.push((r.t_predict, r.t_attack));
        }
        if !e.1.contains(&(r.data.clone(), r.n)) {
            e.1.push((r.data.clone(), r.n));
        }
    }
    v
}

/// The row of an attack record: the model's label, then the substrate and protocol where not
/// digital / standard, the free-phase steps where T_attack ≠ T_predict or the model was evaluated
/// with several, and the images where the model was evaluated on several sets.
fn row_label(labels: &HashMap<String, String>, var: &Variants, r: &AttackRow) -> String {
    let mut s = labels.get(&r.model).cloned().unwrap_or(r.model.clone());
    if r.substrate != "digital" {
        let _ = write!(s, " @ {}", r.substrate);
    }
    if r.protocol != "standard" {
        let _ = write!(s, " [{}]", r.protocol);
    }
    let (ts, sets) = var.get(&r.model).cloned().unwrap_or_default();
    if r.t_attack != r.t_predict {
        let _ = write!(s, " (T_attack {}, T_predict {})", r.t_attack, r.t_predict);
    } else if ts.len() > 1 {
        let _ = write!(s, " (T {})", r.t_predict);
    }
    if sets.len() > 1 {
        let _ = write!(s, " ({} images of {})", r.n, r.data);
    }
    s
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Build the tables and checks from merged records, labelling models with `labels` (see
/// [`model_labels`]).
pub fn build(records: &[Record], labels: &HashMap<String, String>) -> Report {
    let attacks: Vec<&AttackRow> = records
        .iter()
        .filter_map(|r| match r {
            Record::Attack(a) => Some(a),
            _ => None,
        })
        .collect();
    let mut notes = Vec::new();
    let mut skipped: BTreeMap<&str, usize> = BTreeMap::new();
    for r in records {
        if let Record::Other(k) = r {
            *skipped.entry(k).or_default() += 1;
        }
    }
    for (k, n) in skipped {
        notes.push(format!(
            "{n} record(s) of kind {k:?} are not part of these tables"
        ));
    }
    // Attack tables: (family) → rows (label) → eps → (robust, clean); later records replace
    // earlier ones at the same cell.
    let mut tables: Vec<AttackTable> = Vec::new();
    let var = variants(&attacks);
    let mut dups = 0;
    type Cells = Vec<(String, Vec<(f64, String, f64, f64)>)>;
    let mut cells: Vec<Cells> = Vec::new();
    for r in &attacks {
        let fam = attack_family(&r.attack);
        let ti = match tables.iter().position(|t| t.attack == fam) {
            Some(i) => i,
            None => {
                tables.push(AttackTable {
                    strength: if fam.starts_with("CW") { "c" } else { "ε" },
                    attack: fam,
                    columns: Vec::new(),
                    rows: Vec::new(),
                });
                cells.push(Vec::new());
                tables.len() - 1
            }
        };
        let label = row_label(labels, &var, r);
        let rows = &mut cells[ti];
        let ri = match rows.iter().position(|x| x.0 == label) {
            Some(i) => i,
            None => {
                rows.push((label, Vec::new()));
                rows.len() - 1
            }
        };
        let text = if r.eps_text.is_empty() {
            format!("{}", r.eps)
        } else {
            r.eps_text.clone()
        };
        let pts = &mut rows[ri].1;
        let new = (r.eps, text, r.robust_accuracy, r.clean_accuracy);
        match pts.iter_mut().find(|p| p.0 == r.eps) {
            Some(p) => {
                dups += 1;
                *p = new;
            }
            None => pts.push(new),
        }
    }
    for (t, rows) in tables.iter_mut().zip(&cells) {
        let mut cols: Vec<(f64, String)> = Vec::new();
        for (_, pts) in rows {
            for p in pts {
                if !cols.iter().any(|c| c.0 == p.0) {
                    cols.push((p.0, p.1.clone()));
                }
            }
        }
        cols.sort_by(|a, b| a.0.total_cmp(&b.0));
        t.rows = rows
            .iter()
            .map(|(label, pts)| TableRow {
                label: label.clone(),
                clean: pts.last().map(|p| p.3),
                cells: cols
                    .iter()
                    .map(|c| pts.iter().find(|p| p.0 == c.0).map(|p| p.2))
                    .collect(),
            })
            .collect();
        t.columns = cols;
    }
    // Corruptions: row (model label + substrate) → (name, severity) → accuracy.
    let corr: Vec<&CorruptionRow> = records
        .iter()
        .filter_map(|r| match r {
            Record::Corruption(c) => Some(c),
            _ => None,
        })
        .collect();
    let corruptions = (!corr.is_empty()).then(|| {
        let mut names: Vec<String> = Vec::new();
        let mut sevs: Vec<u32> = Vec::new();
        // Per row: label, its first record, (corruption, severity, accuracy).
        type Row<'r> = (String, &'r CorruptionRow, Vec<(String, u32, f64)>);
        let mut rows: Vec<Row> = Vec::new();
        for c in &corr {
            if !names.contains(&c.corruption) {
                names.push(c.corruption.clone());
            }
            if !sevs.contains(&c.severity) {
                sevs.push(c.severity);
            }
            let mut label = labels.get(&c.model).cloned().unwrap_or(c.model.clone());
            if c.substrate != "digital" {
                let _ = write!(label, " @ {}", c.substrate);
            }
            let ri = match rows.iter().position(|x| x.0 == label) {
                Some(i) => i,
                None => {
                    rows.push((label, c, Vec::new()));
                    rows.len() - 1
                }
            };
            let pts = &mut rows[ri].2;
            match pts
                .iter_mut()
                .find(|p| p.0 == c.corruption && p.1 == c.severity)
            {
                Some(p) => {
                    dups += 1;
                    p.2 = c.accuracy;
                }
                None => pts.push((c.corruption.clone(), c.severity, c.accuracy)),
            }
        }
        // Columns in the library's order where known, then the others as read.
        let order: Vec<&str> = crate::corrupt::Corruption::all()
            .iter()
            .map(|c| c.name())
            .collect();
        names.sort_by_key(|n| order.iter().position(|o| o == n).unwrap_or(usize::MAX));
        sevs.sort_unstable();
        // Clean accuracy of the same model, substrate and images from an attack record, if any.
        let clean_of = |c: &CorruptionRow| {
            attacks
                .iter()
                .rev()
                .find(|a| {
                    a.model == c.model
                        && a.substrate == c.substrate
                        && a.data == c.data
                        && a.n == c.n
                })
                .map(|a| a.clean_accuracy)
        };
        let by_corruption = rows
            .iter()
            .map(|(label, first, pts)| {
                let mut cells: Vec<Option<f64>> = names
                    .iter()
                    .map(|n| {
                        let v: Vec<f64> = pts.iter().filter(|p| &p.0 == n).map(|p| p.2).collect();
                        mean(&v)
                    })
                    .collect();
                cells.push(mean(&pts.iter().map(|p| p.2).collect::<Vec<_>>()));
                TableRow {
                    label: label.clone(),
                    clean: clean_of(first),
                    cells,
                }
            })
            .collect();
        let by_severity = rows
            .iter()
            .map(|(label, first, pts)| TableRow {
                label: label.clone(),
                clean: clean_of(first),
                cells: sevs
                    .iter()
                    .map(|s| {
                        let v: Vec<f64> = pts.iter().filter(|p| p.1 == *s).map(|p| p.2).collect();
                        mean(&v)
                    })
                    .collect(),
            })
            .collect();
        CorruptionTables {
            names,
            severities: sevs,
            by_corruption,
            by_severity,
        }
    });
    if dups > 0 {
        notes.push(format!(
            "{dups} record(s) repeat an earlier cell (same row, attack or corruption, strength): the later record is shown"
        ));
    }
    let owned: Vec<AttackRow> = attacks.iter().map(|r| (*r).clone()).collect();
    let mut checks = strength_checks(&owned);
    checks.extend(iteration_checks(&owned));
    Report {
        attacks: tables,
        corruptions,
        checks,
        notes,
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or("–".to_string(), |a| format!("{:.1}", 100.0 * a))
}

/// A file-name-safe version of an attack name: lowercase, runs of other characters → `-`.
pub fn slug(s: &str) -> String {
    let mut o = String::new();
    for ch in s.chars() {
        if ch.is_ascii_alphanumeric() {
            o.push(ch.to_ascii_lowercase());
        } else if ch == '.' {
            o.push('p');
        } else if !o.ends_with('-') {
            o.push('-');
        }
    }
    o.trim_matches('-').to_string()
}

fn table_md(first: &str, heads: &[String], rows: &[TableRow], clean: bool) -> String {
    let mut s = format!("| {first} |");
    if clean {
        s += " clean |";
    }
    for h in heads {
        let _ = write!(s, " {h} |");
    }
    s += "\n| --- |";
    for _ in 0..heads.len() + clean as usize {
        s += " ---: |";
    }
    s += "\n";
    for r in rows {
        let _ = write!(s, "| {} |", r.label);
        if clean {
            let _ = write!(s, " {} |", pct(r.clean));
        }
        for c in &r.cells {
            let _ = write!(s, " {} |", pct(*c));
        }
        s += "\n";
    }
    s
}

impl Report {
    /// The report in markdown; `plots[i]`, when given, is the file name of attack table i's plot.
    pub fn to_markdown(&self, sources: &[String], plots: &[Option<String>]) -> String {
        let mut s = String::from("# Robustness report\n\n");
        if !sources.is_empty() {
            let _ = writeln!(s, "Merged from {}.\n", sources.join(", "));
        }
        s += "Accuracies in %. Rows: model (file stem or --label) @ substrate [protocol] where not digital/standard.\n\n";
        for (i, t) in self.attacks.iter().enumerate() {
            let _ = writeln!(s, "## {} — robust accuracy (%)\n", t.attack);
            let heads: Vec<String> = t
                .columns
                .iter()
                .map(|c| format!("{}={}", t.strength, c.1))
                .collect();
            s += &table_md("model", &heads, &t.rows, true);
            if let Some(Some(p)) = plots.get(i) {
                let _ = writeln!(s, "\n![{}]({p})", t.attack);
            }
            s += "\n";
        }
        if let Some(c) = &self.corruptions {
            s += "## Corruptions — accuracy (%), mean over severities\n\n";
            let mut heads = c.names.clone();
            heads.push("mean".into());
            s += &table_md("model", &heads, &c.by_corruption, true);
            s += "\n## Corruptions by severity — accuracy (%), mean over corruptions\n\n";
            let heads: Vec<String> = c.severities.iter().map(|v| format!("s{v}")).collect();
            s += &table_md("model", &heads, &c.by_severity, true);
            s += "\n";
        }
        s += "## Sanity checks\n\n";
        if self.checks.is_empty() {
            s += "None applicable (a check needs several strengths, budgets or attacks of one evaluation).\n";
        }
        for c in &self.checks {
            let _ = writeln!(s, "- {c}");
        }
        if !self.notes.is_empty() {
            s += "\n## Notes\n\n";
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }
}

/// `epsim report`: read and merge the results files, write the markdown report and one PNG plot
/// per attack next to it, print the report.
pub fn run(a: &ReportArgs) -> Result<()> {
    let mut records = Vec::new();
    let mut sources = Vec::new();
    for p in &a.results {
        let r = read_results(p)?;
        sources.push(format!("`{}` ({} records)", p.display(), r.len()));
        records.extend(r);
    }
    ensure!(
        !records.is_empty(),
        "no records in {}",
        a.results
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut models: Vec<String> = Vec::new();
    for r in &records {
        let m = match r {
            Record::Attack(x) => &x.model,
            Record::Corruption(x) => &x.model,
            Record::Other(_) => continue,
        };
        if !models.contains(m) {
            models.push(m.clone());
        }
    }
    let labels = model_labels(&models, &a.label)?;
    let report = build(&records, &labels);
    let dir = match a.out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let stem = a
        .out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".into());
    let mut plots = Vec::new();
    for t in &report.attacks {
        let name = format!("{stem}_{}.png", slug(&t.attack));
        let series: Vec<crate::plot::Series> = t
            .rows
            .iter()
            .map(|r| {
                let mut pts: Vec<(f64, f64)> = Vec::new();
                if let Some(c) = r.clean
                    && !t.columns.iter().any(|c| c.0 == 0.0)
                {
                    pts.push((0.0, 100.0 * c));
                }
                pts.extend(
                    t.columns
                        .iter()
                        .zip(&r.cells)
                        .filter_map(|(c, v)| v.map(|v| (c.0, 100.0 * v))),
                );
                crate::plot::Series {
                    label: r.label.clone(),
                    points: pts,
                }
            })
            .collect();
        crate::plot::line_chart(
            &dir.join(&name),
            &t.attack,
            t.strength,
            "accuracy (%)",
            &series,
            Some((0.0, 100.0)),
        )?;
        plots.push(Some(name));
    }
    let md = report.to_markdown(&sources, &plots);
    std::fs::write(&a.out, &md).with_context(|| format!("writing {}", a.out.display()))?;
    crate::cli::print_stdout(&md)?;
    for c in report.checks.iter().filter(|c| c.status == Status::Warn) {
        eprintln!("warning: {}", c.message);
    }
    eprintln!(
        "report in {} ({} plot(s) beside it)",
        a.out.display(),
        plots.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atk(
        model: &str,
        attack: &str,
        eps: f64,
        text: &str,
        n: usize,
        clean: f64,
        rob: f64,
    ) -> String {
        format!(
            r#"{{"model":"{model}","substrate":"digital","protocol":"standard","attack":"{attack}","norm":"linf","eps":{eps},"eps_text":"{text}","steps":null,"t_predict":5,"t_attack":5,"seed":0,"data":"d","n":{n},"clean_accuracy":{clean},"robust_accuracy":{rob},"queries":1,"grads":1,"wall_s":0.1,"commit":"x"}}"#
        )
    }

    fn corr(model: &str, name: &str, sev: u32, acc: f64) -> String {
        format!(
            r#"{{"kind":"corruption","model":"{model}","substrate":"digital","corruption":"{name}","severity":{sev},"seed":0,"data":"d","n":100,"accuracy":{acc},"wall_s":0.1,"commit":"x","note":null}}"#
        )
    }

    fn row(attack: &str, eps: f64, n: usize, rob: f64) -> AttackRow {
        match parse_record(&atk("m.st", attack, eps, "", n, 0.9, rob)).unwrap() {
            Record::Attack(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn family_and_budget_are_parsed_from_the_name() {
        assert_eq!(
            attack_family("PGD-Linf eps=0.1 step=0.025 iters=10 restarts=1"),
            "PGD-Linf iters=10 restarts=1"
        );
        assert_eq!(
            attack_family("PGD-Linf eps=0.1 step=0.0125 iters=20 restarts=1 (no random start)"),
            "PGD-Linf iters=20 restarts=1 (no random start)"
        );
        assert_eq!(
            attack_family("CW-L2 c=0.5 kappa=0 steps=100"),
            "CW-L2 kappa=0 steps=100"
        );
        let r = row(
            "PGD-Linf eps=0.1 step=0.025 iters=40 restarts=3",
            0.1,
            10,
            0.5,
        );
        assert_eq!(attack_budget(&r), ("PGD-Linf".to_string(), Some(40), 3));
        let r = row("Square-Linf eps=0.1 queries=500 p_init=0.8", 0.1, 10, 0.5);
        assert_eq!(
            attack_budget(&r),
            ("Square-Linf p_init=0.8".to_string(), Some(500), 1)
        );
    }

    #[test]
    fn noise_tolerance_is_two_binomial_std_at_least_one_image() {
        // p = 0.5, n = 100: 2·sqrt(0.25/100) = 0.1.
        assert!((noise_tolerance(0.5, 100) - 0.1).abs() < 1e-6);
        // p = 0: the floor of one image.
        assert!((noise_tolerance(0.0, 50) - 0.02).abs() < 1e-6);
    }

    #[test]
    fn iteration_check_passes_within_noise_and_warns_beyond() {
        // n = 400, p ≈ 0.4: tolerance 2·sqrt(0.24/400) ≈ 0.049. 10 → 50 iterations lowers the
        // accuracy, 1 → 5 restarts raises it by 0.03 (< 0.049): PASS.
        let ok = vec![
            row(
                "PGD-Linf eps=0.03 step=0.01 iters=10 restarts=1",
                0.03,
                400,
                0.42,
            ),
            row(
                "PGD-Linf eps=0.03 step=0.01 iters=50 restarts=1",
                0.03,
                400,
                0.38,
            ),
            row(
                "PGD-Linf eps=0.03 step=0.01 iters=50 restarts=5",
                0.03,
                400,
                0.41,
            ),
        ];
        let c = iteration_checks(&ok);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].status, Status::Pass, "{c:?}");
        assert!(c[0].message.contains("0.4200"), "{}", c[0].message);
        // 50 iterations give 0.55 > 0.42 + 0.049: WARN (and only that pair, not 10 vs 10).
        let bad = vec![
            row(
                "PGD-Linf eps=0.03 step=0.01 iters=10 restarts=1",
                0.03,
                400,
                0.42,
            ),
            row(
                "PGD-Linf eps=0.03 step=0.01 iters=50 restarts=1",
                0.03,
                400,
                0.55,
            ),
        ];
        let c = iteration_checks(&bad);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].status, Status::Warn);
        assert!(c[0].message.contains("0.4200") && c[0].message.contains("0.5500"));
        // Different ε are different groups: no check at all with one budget each.
        let other = vec![
            row(
                "PGD-Linf eps=0.03 step=0.01 iters=10 restarts=1",
                0.03,
                400,
                0.42,
            ),
            row(
                "PGD-Linf eps=0.06 step=0.01 iters=50 restarts=1",
                0.06,
                400,
                0.55,
            ),
        ];
        assert!(iteration_checks(&other).is_empty());
        // Incomparable budgets (more iterations, fewer restarts) are not checked against each other.
        let cross = vec![
            row(
                "PGD-Linf eps=0.03 step=0.01 iters=10 restarts=5",
                0.03,
                400,
                0.20,
            ),
            row(
                "PGD-Linf eps=0.03 step=0.01 iters=50 restarts=1",
                0.03,
                400,
                0.60,
            ),
        ];
        let c = iteration_checks(&cross);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].status, Status::Pass);
    }

    #[test]
    fn strength_checks_flag_rises_and_missing_collapse() {
        let pgd = "PGD-Linf eps=E step=0.01 iters=10 restarts=1";
        let rows = vec![
            row(pgd, 0.0, 100, 0.80),
            row(pgd, 0.03, 100, 0.30),
            // Rises by 0.25 > 2·sqrt(0.1775·0.8225/100) ≈ 0.076.
            row(pgd, 0.06, 100, 0.55),
            // Large ε, not collapsed.
            row(pgd, 0.5, 100, 0.20),
        ];
        let c = strength_checks(&rows);
        let warns: Vec<&Check> = c.iter().filter(|c| c.status == Status::Warn).collect();
        assert_eq!(warns.len(), 2, "{c:?}");
        assert!(warns[0].message.contains("rises"));
        assert!(warns[1].message.contains("large ε"));
        let good = vec![row(pgd, 0.0, 100, 0.8), row(pgd, 0.5, 100, 0.0)];
        let c = strength_checks(&good);
        assert!(c.iter().all(|c| c.status == Status::Pass), "{c:?}");
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn tables_put_models_side_by_side() {
        let pgd = "PGD-Linf eps=E step=0.01 iters=10 restarts=1";
        let lines = [
            atk(
                "runs/ep/checkpoint.safetensors",
                pgd,
                0.0,
                "0",
                100,
                0.9,
                0.9,
            ),
            atk(
                "runs/ep/checkpoint.safetensors",
                pgd,
                8.0 / 255.0,
                "8/255",
                100,
                0.9,
                0.4,
            ),
            atk(
                "runs/bp/bp.safetensors",
                pgd,
                8.0 / 255.0,
                "8/255",
                100,
                0.8,
                0.1,
            ),
            atk(
                "runs/bp/bp.safetensors",
                pgd,
                2.0 / 255.0,
                "2/255",
                100,
                0.8,
                0.5,
            ),
            // A rerun of the same cell: replaces the 0.1.
            atk(
                "runs/bp/bp.safetensors",
                pgd,
                8.0 / 255.0,
                "8/255",
                100,
                0.8,
                0.2,
            ),
            corr("runs/ep/checkpoint.safetensors", "gaussian_noise", 1, 0.8),
            corr("runs/ep/checkpoint.safetensors", "gaussian_noise", 5, 0.4),
            corr("runs/ep/checkpoint.safetensors", "defocus_blur", 1, 0.7),
            corr("runs/ep/checkpoint.safetensors", "defocus_blur", 5, 0.5),
            r#"{"kind":"protocol_gap","x":1}"#.to_string(),
            // The same model with other free-phase steps: a row of its own.
            atk(
                "runs/bp/bp.safetensors",
                pgd,
                2.0 / 255.0,
                "2/255",
                100,
                0.8,
                0.45,
            )
            .replace(
                "\"t_predict\":5,\"t_attack\":5",
                "\"t_predict\":9,\"t_attack\":9",
            ),
        ];
        let recs: Vec<Record> = lines.iter().map(|l| parse_record(l).unwrap()).collect();
        let models = vec![
            "runs/ep/checkpoint.safetensors".to_string(),
            "runs/bp/bp.safetensors".to_string(),
        ];
        let labels = model_labels(&models, &["checkpoint=EP-CNN".to_string()]).unwrap();
        let r = build(&recs, &labels);
        assert_eq!(r.attacks.len(), 1);
        let t = &r.attacks[0];
        assert_eq!(t.attack, "PGD-Linf iters=10 restarts=1");
        let cols: Vec<&str> = t.columns.iter().map(|c| c.1.as_str()).collect();
        assert_eq!(cols, ["0", "2/255", "8/255"]);
        assert_eq!(t.rows.len(), 3);
        assert_eq!(t.rows[0].label, "EP-CNN");
        assert_eq!(t.rows[0].cells, vec![Some(0.9), None, Some(0.4)]);
        assert_eq!(t.rows[1].label, "bp (T 5)");
        assert_eq!(t.rows[1].clean, Some(0.8));
        assert_eq!(t.rows[1].cells, vec![None, Some(0.5), Some(0.2)]);
        assert_eq!(t.rows[2].label, "bp (T 9)");
        assert_eq!(t.rows[2].cells, vec![None, Some(0.45), None]);
        let c = r.corruptions.as_ref().unwrap();
        // Library order: noise before blur.
        assert_eq!(c.names, ["gaussian_noise", "defocus_blur"]);
        assert_eq!(c.severities, [1, 5]);
        let row = &c.by_corruption[0];
        assert_eq!(row.label, "EP-CNN");
        // (0.8 + 0.4)/2, (0.7 + 0.5)/2, mean of all four = 0.6.
        for (got, want) in row.cells.iter().zip([0.6, 0.6, 0.6]) {
            assert!((got.unwrap() - want).abs() < 1e-12);
        }
        // Same model and data as an attack record: its clean accuracy.
        assert_eq!(row.clean, Some(0.9));
        let s = &c.by_severity[0].cells;
        assert!((s[0].unwrap() - 0.75).abs() < 1e-12 && (s[1].unwrap() - 0.45).abs() < 1e-12);
        assert_eq!(r.notes.len(), 2, "{:?}", r.notes);
        let md = r.to_markdown(&[], &[Some("p.png".into())]);
        assert!(md.contains("| EP-CNN | 90.0 | 90.0 | – | 40.0 |"), "{md}");
        assert!(md.contains("| bp (T 5) | 80.0 | – | 50.0 | 20.0 |"), "{md}");
        assert!(
            md.contains("| EP-CNN | 90.0 | 60.0 | 60.0 | 60.0 |"),
            "{md}"
        );
        assert!(md.contains("| EP-CNN | 90.0 | 75.0 | 45.0 |"), "{md}");
        assert!(
            md.contains("![PGD-Linf iters=10 restarts=1](p.png)"),
            "{md}"
        );
    }

    #[test]
    fn labels_default_to_stems_and_disambiguate() {
        let models = vec![
            "a/model.st".to_string(),
            "b/model.st".to_string(),
            "c/x.st".into(),
        ];
        let l = model_labels(&models, &[]).unwrap();
        assert_eq!(l["a/model.st"], "a/model");
        assert_eq!(l["b/model.st"], "b/model");
        assert_eq!(l["c/x.st"], "x");
        let l = model_labels(&models, &["b/model.st=BP".into(), "x.st=ViT".into()]).unwrap();
        assert_eq!(l["b/model.st"], "BP");
        assert_eq!(l["c/x.st"], "ViT");
        let e = model_labels(&models, &["model=M".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("several models"), "{e}");
        let e = model_labels(&models, &["nope=M".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("no record has model \"nope\""), "{e}");
        let e = model_labels(&models, &["noequals".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("PATH=NAME"), "{e}");
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.jsonl");
        let good = atk("m", "PGD-Linf eps=0.1", 0.1, "0.1", 10, 0.5, 0.2);
        std::fs::write(&p, format!("{good}\n\n{{\"model\": 3\n")).unwrap();
        let e = format!("{:#}", read_results(&p).unwrap_err());
        assert!(e.contains(&format!("{}:3", p.display())), "{e}");
        assert!(e.contains("not valid JSON"), "{e}");
        // Valid JSON but no accuracy: also an error, naming line 2.
        std::fs::write(
            &p,
            format!("{good}\n{{\"model\":\"m\",\"attack\":\"a\"}}\n"),
        )
        .unwrap();
        let e = format!("{:#}", read_results(&p).unwrap_err());
        assert!(e.contains(&format!("{}:2", p.display())), "{e}");
        assert!(e.contains("not a valid attack record"), "{e}");
        std::fs::write(&p, format!("{good}\n")).unwrap();
        assert_eq!(read_results(&p).unwrap().len(), 1);
    }
}
