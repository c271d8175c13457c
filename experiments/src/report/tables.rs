//! The merged report's tables: one per attack (rows = model @ substrate [protocol], columns =
//! strengths, plus clean), corruptions × mean over severities and severities × mean over
//! corruptions, with the sanity checks computed over the merged records; and its markdown.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use anyhow::{Result, bail, ensure};
use std::path::Path;

use super::checks::{Check, iteration_checks, strength_checks};
use super::names::attack_family;
use crate::results::{AttackRow, CleanRow, CorruptionRow, Record};

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
    /// One cell per column: the mean over the row's seeds.
    pub cells: Vec<Option<f64>>,
    /// Per cell, the sample standard deviation over the row's seeds (None with one seed).
    pub spread: Vec<Option<f64>>,
    /// Distinct seeds of the row's records.
    pub seeds: usize,
    /// Images per cell (the largest count of the row's records).
    pub n: usize,
    /// Per cell, the mean L2 distance of the successful adversarial examples from their clean
    /// images, where the records carry it (C&W's distortion).
    pub l2: Vec<Option<f64>>,
}

/// A row of the summary table.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    /// Row label, as in the attack tables.
    pub label: String,
    /// Clean accuracy: of the evaluation's clean record where there is one (every image), else
    /// of its last attack record.
    pub clean: Option<f64>,
    /// Images of the clean accuracy.
    pub clean_n: usize,
    /// Mean robust accuracy over its (attack, ε > 0) cells.
    pub mean_robust: Option<f64>,
    /// Number of (attack, ε > 0) cells averaged.
    pub cells: usize,
    /// Images per attack (the largest of its attack records).
    pub n: usize,
}

/// One binomial standard deviation of an accuracy `p` measured on `n` images.
pub fn binomial_std(p: f64, n: usize) -> f64 {
    (p * (1.0 - p) / n.max(1) as f64).sqrt()
}

impl SummaryRow {
    /// One binomial standard deviation of an accuracy `p` on this row's `n` attacked images.
    pub fn binomial_std(&self, p: f64) -> f64 {
        binomial_std(p, self.n)
    }
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

/// A row of the cost table: a realized evaluation's cost per inference, counted from the reads
/// of its clean evaluation (mean over seeds).
#[derive(Debug, Clone, PartialEq)]
pub struct CostRow {
    /// Row label, as in the attack tables.
    pub label: String,
    /// Clean accuracy.
    pub clean: f64,
    /// Energy per inference, J.
    pub energy_j: f64,
    /// Latency per inference, s.
    pub latency_s: f64,
    /// Counted vector reads per inference.
    pub vector_reads: Option<f64>,
}

/// A row of the digital-vs-substrate table: one evaluation (clean, an attack at one strength, or
/// the corruptions' mean) of a model on the digital engine and on a realized substrate.
#[derive(Debug, Clone, PartialEq)]
pub struct SubstrateGap {
    /// The digital row's label (model, protocol, steps).
    pub model: String,
    /// The substrate.
    pub substrate: String,
    /// "clean", "corruptions (mean)" or the attack family.
    pub what: String,
    /// The strength as written ("" for clean and corruptions).
    pub eps_text: String,
    /// Accuracy on the digital engine.
    pub digital: f64,
    /// Accuracy on the substrate.
    pub on_substrate: f64,
}

/// The merged report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Digital vs substrate, for every evaluation run on both.
    pub substrate_gaps: Vec<SubstrateGap>,
    /// The cost per inference of the realized evaluations whose clean records carry one.
    pub costs: Vec<CostRow>,
    /// One row per evaluation (the paper's Table 1): clean accuracy and the mean robust accuracy
    /// over every attack and strength ε > 0 it was attacked with.
    pub summary: Vec<SummaryRow>,
    /// Attack tables in order of first appearance.
    pub attacks: Vec<AttackTable>,
    /// Corruption tables, if any corruption record was read.
    pub corruptions: Option<CorruptionTables>,
    /// Sanity checks.
    pub checks: Vec<Check>,
    /// Notes (replaced duplicates, skipped kinds).
    pub notes: Vec<String>,
}

/// Per model: the distinct free-phase settings and datasets its attack records use. (Image
/// counts do not split rows: a suite may attack fewer images with a costly attack; the tables show
/// the images of every row.)
type Variants = HashMap<String, (Vec<(usize, usize)>, Vec<String>)>;

fn variants(rows: &[&AttackRow]) -> Variants {
    let mut v: Variants = HashMap::new();
    for r in rows {
        let e = v.entry(r.model.clone()).or_default();
        if !e.0.contains(&(r.t_predict, r.t_attack)) {
            e.0.push((r.t_predict, r.t_attack));
        }
        if !e.1.contains(&r.data) {
            e.1.push(r.data.clone());
        }
    }
    v
}

/// The row of an attack record: the model's label, then the substrate and protocol where not
/// digital / standard, the free-phase steps where T_attack ≠ T_predict or the model was evaluated
/// with several, and the dataset where the model was evaluated on several.
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
        let _ = write!(s, " (on {})", r.data);
    }
    s
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The sample standard deviation of `v` (None below two values).
fn sample_std(v: &[f64]) -> Option<f64> {
    let m = mean(v)?;
    (v.len() >= 2)
        .then(|| (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64).sqrt())
}

/// Values of points grouped by seed: per seed the mean of its values, then over the seeds the
/// mean and (with several seeds) the sample standard deviation.
fn over_seeds<T>(
    pts: impl IntoIterator<Item = T>,
    seed: impl Fn(&T) -> u64,
    value: impl Fn(&T) -> f64,
) -> (Option<f64>, Option<f64>) {
    let mut by: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for p in pts {
        by.entry(seed(&p)).or_default().push(value(&p));
    }
    let per: Vec<f64> = by.values().filter_map(|v| mean(v)).collect();
    (mean(&per), sample_std(&per))
}

/// The number of distinct seeds among `seeds`.
fn distinct(seeds: impl IntoIterator<Item = u64>) -> usize {
    seeds
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len()
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
    // Attack tables: (family) → rows (label) → (eps, seed) → (robust, clean); later records
    // replace earlier ones at the same cell and seed; the seeds of a cell are averaged.
    let mut tables: Vec<AttackTable> = Vec::new();
    let var = variants(&attacks);
    let mut dups = 0;
    // Per row label: the largest image count of its records and its first record.
    let mut images: Vec<(String, usize, &AttackRow)> = Vec::new();
    // Per table: rows (label) → points (ε, ε text, robust, clean, images, mean L2 of the fooled,
    // seed).
    type Cells = Vec<(
        String,
        Vec<(f64, String, f64, f64, usize, Option<f64>, u64)>,
    )>;
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
        match images.iter_mut().find(|x| x.0 == label) {
            Some(x) => x.1 = x.1.max(r.n),
            None => images.push((label.clone(), r.n, r)),
        }
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
        let new = (
            r.eps,
            text,
            r.robust_accuracy,
            r.clean_accuracy,
            r.n,
            r.mean_l2_fooled,
            r.seed,
        );
        match pts.iter_mut().find(|p| p.0 == r.eps && p.6 == r.seed) {
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
            .map(|(label, pts)| {
                let (cells, spread) = cols
                    .iter()
                    .map(|c| over_seeds(pts.iter().filter(|p| p.0 == c.0), |p| p.6, |p| p.2))
                    .unzip();
                // The clean accuracy of each seed's last record, averaged over the seeds.
                let last: BTreeMap<u64, f64> = pts.iter().map(|p| (p.6, p.3)).collect();
                TableRow {
                    label: label.clone(),
                    clean: mean(&last.values().copied().collect::<Vec<_>>()),
                    cells,
                    spread,
                    seeds: last.len(),
                    n: pts.iter().map(|p| p.4).max().unwrap_or(0),
                    l2: cols
                        .iter()
                        .map(|c| {
                            let v: Vec<f64> = pts
                                .iter()
                                .filter(|p| p.0 == c.0)
                                .filter_map(|p| p.5)
                                .collect();
                            mean(&v)
                        })
                        .collect(),
                }
            })
            .collect();
        t.columns = cols;
    }
    // Clean accuracy records (a study's clean cells): per seed the last one of a model, substrate
    // and data (and image count, when given), averaged over the seeds, as (accuracy, images).
    let cleans: Vec<&CleanRow> = records
        .iter()
        .filter_map(|r| match r {
            Record::Clean(c) => Some(c),
            _ => None,
        })
        .collect();
    let clean_record = |model: &str, substrate: &str, data: &str, n: Option<usize>| {
        let last: BTreeMap<u64, (f64, usize)> = cleans
            .iter()
            .filter(|c| {
                c.model == model
                    && c.substrate == substrate
                    && c.data == data
                    && n.is_none_or(|n| c.n == n)
            })
            .map(|c| (c.seed, (c.accuracy, c.n)))
            .collect();
        let accs: Vec<f64> = last.values().map(|v| v.0).collect();
        Some((mean(&accs)?, last.values().map(|v| v.1).max()?))
    };
    let summary: Vec<SummaryRow> = images
        .iter()
        .map(|(label, n, first)| {
            let mut clean = None;
            let mut robust = Vec::new();
            for t in &tables {
                for row in t.rows.iter().filter(|r| &r.label == label) {
                    clean = row.clean.or(clean);
                    for (c, v) in t.columns.iter().zip(&row.cells) {
                        if let (true, Some(v)) = (c.0 > 0.0, v) {
                            robust.push(*v);
                        }
                    }
                }
            }
            // The clean accuracy on all the evaluation's images where a clean record has it.
            let (clean, clean_n) =
                match clean_record(&first.model, &first.substrate, &first.data, None) {
                    Some((a, m)) => (Some(a), m),
                    None => (clean, *n),
                };
            SummaryRow {
                label: label.clone(),
                clean,
                clean_n,
                mean_robust: mean(&robust),
                cells: robust.len(),
                n: *n,
            }
        })
        .collect();
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
        // Per row: label, its first record, (corruption, severity, accuracy, seed).
        type Point = (String, u32, f64, u64);
        type Row<'r> = (String, &'r CorruptionRow, Vec<Point>);
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
                .find(|p| p.0 == c.corruption && p.1 == c.severity && p.3 == c.seed)
            {
                Some(p) => {
                    dups += 1;
                    p.2 = c.accuracy;
                }
                None => pts.push((c.corruption.clone(), c.severity, c.accuracy, c.seed)),
            }
        }
        // Columns in the library's order where known, then the others as read.
        let order: Vec<&str> = crate::corrupt::Corruption::all()
            .iter()
            .map(|c| c.name())
            .collect();
        names.sort_by_key(|n| order.iter().position(|o| o == n).unwrap_or(usize::MAX));
        sevs.sort_unstable();
        // Clean accuracy of the same model, substrate and images: from a clean record, else from
        // an attack record, if any.
        let clean_of = |c: &CorruptionRow| {
            clean_record(&c.model, &c.substrate, &c.data, Some(c.n))
                .map(|k| k.0)
                .or_else(|| {
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
                })
        };
        let by_corruption = rows
            .iter()
            .map(|(label, first, pts)| {
                let stat = |f: &dyn Fn(&Point) -> bool| {
                    over_seeds(pts.iter().filter(|p| f(p)), |p| p.3, |p| p.2)
                };
                let (mut cells, mut spread): (Vec<_>, Vec<_>) =
                    names.iter().map(|n| stat(&|p| &p.0 == n)).unzip();
                let (m, sd) = stat(&|_| true);
                cells.push(m);
                spread.push(sd);
                TableRow {
                    label: label.clone(),
                    clean: clean_of(first),
                    l2: vec![None; cells.len()],
                    cells,
                    spread,
                    seeds: distinct(pts.iter().map(|p| p.3)),
                    n: first.n,
                }
            })
            .collect();
        let by_severity = rows
            .iter()
            .map(|(label, first, pts)| {
                let (cells, spread) = sevs
                    .iter()
                    .map(|s| over_seeds(pts.iter().filter(|p| p.1 == *s), |p| p.3, |p| p.2))
                    .unzip();
                TableRow {
                    label: label.clone(),
                    clean: clean_of(first),
                    cells,
                    spread,
                    seeds: distinct(pts.iter().map(|p| p.3)),
                    n: first.n,
                    l2: vec![None; sevs.len()],
                }
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
            "{dups} record(s) repeat an earlier cell (same row, attack or corruption, strength, seed): the later record is shown"
        ));
    }
    let costs = cost_rows(&cleans, labels);
    let substrate_gaps = substrate_gaps(&attacks, labels, &var, &tables, &summary, &corruptions);
    let owned: Vec<AttackRow> = attacks.iter().map(|r| (*r).clone()).collect();
    let mut checks = strength_checks(&owned);
    checks.extend(iteration_checks(&owned));
    Report {
        substrate_gaps,
        costs,
        summary,
        attacks: tables,
        corruptions,
        checks,
        notes,
    }
}

/// Digital vs substrate: for every attack record on a realized substrate whose digital twin (same
/// model, protocol, steps, attack and strength) is in the tables, both accuracies (the tables'
/// seed means); likewise the clean accuracy (summary) and the corruptions' mean.
fn substrate_gaps(
    attacks: &[&AttackRow],
    labels: &HashMap<String, String>,
    var: &Variants,
    tables: &[AttackTable],
    summary: &[SummaryRow],
    corruptions: &Option<CorruptionTables>,
) -> Vec<SubstrateGap> {
    let mut out: Vec<SubstrateGap> = Vec::new();
    let mut push = |g: SubstrateGap| {
        let same = |o: &SubstrateGap| {
            o.model == g.model
                && o.substrate == g.substrate
                && o.what == g.what
                && o.eps_text == g.eps_text
        };
        if !out.iter().any(same) {
            out.push(g);
        }
    };
    for r in attacks.iter().filter(|r| r.substrate != "digital") {
        let mut twin = (*r).clone();
        twin.substrate = "digital".into();
        let (on, dig) = (row_label(labels, var, r), row_label(labels, var, &twin));
        let fam = attack_family(&r.attack);
        let Some(t) = tables.iter().find(|t| t.attack == fam) else {
            continue;
        };
        let Some(j) = t.columns.iter().position(|c| c.0 == r.eps) else {
            continue;
        };
        let cell = |label: &str| {
            t.rows
                .iter()
                .find(|x| x.label == label)
                .and_then(|x| x.cells[j])
        };
        if let (Some(d), Some(s)) = (cell(&dig), cell(&on)) {
            let clean = |label: &str| {
                summary
                    .iter()
                    .find(|x| x.label == label)
                    .and_then(|x| x.clean)
            };
            // Clean accuracy does not depend on the protocol: one row per model, labelled as
            // the model's standard-protocol row.
            let mut std_twin = twin.clone();
            std_twin.protocol = "standard".into();
            let model = row_label(labels, var, &std_twin);
            if let (Some(cd), Some(cs)) = (clean(&dig), clean(&on)) {
                push(SubstrateGap {
                    model,
                    substrate: r.substrate.clone(),
                    what: "clean".into(),
                    eps_text: String::new(),
                    digital: cd,
                    on_substrate: cs,
                });
            }
            push(SubstrateGap {
                model: dig,
                substrate: r.substrate.clone(),
                what: fam,
                eps_text: t.columns[j].1.clone(),
                digital: d,
                on_substrate: s,
            });
        }
    }
    // Corruptions: rows are "model" and "model @ substrate".
    if let Some(c) = corruptions {
        for row in &c.by_corruption {
            let Some((model, substrate)) = row.label.split_once(" @ ") else {
                continue;
            };
            let digital = c.by_corruption.iter().find(|x| x.label == model);
            if let (Some(d), Some(Some(s))) = (
                digital.and_then(|x| x.cells.last().copied().flatten()),
                row.cells.last(),
            ) {
                push(SubstrateGap {
                    model: model.to_string(),
                    substrate: substrate.to_string(),
                    what: "corruptions (mean)".into(),
                    eps_text: String::new(),
                    digital: d,
                    on_substrate: *s,
                });
            }
        }
    }
    out
}

/// The cost table's rows: per (model label @ substrate) the last clean record of each seed that
/// carries a cost, averaged over the seeds.
fn cost_rows(cleans: &[&CleanRow], labels: &HashMap<String, String>) -> Vec<CostRow> {
    // label → seed → (clean, energy, latency, reads)
    type Costs = (f64, f64, f64, Option<f64>);
    type PerSeed = BTreeMap<u64, Costs>;
    let mut rows: Vec<(String, PerSeed)> = Vec::new();
    for c in cleans {
        let (Some(e), Some(t)) = (c.energy_j, c.latency_s) else {
            continue;
        };
        let mut label = labels.get(&c.model).cloned().unwrap_or(c.model.clone());
        if c.substrate != "digital" {
            let _ = write!(label, " @ {}", c.substrate);
        }
        let v = (c.accuracy, e, t, c.vector_reads);
        match rows.iter_mut().find(|r| r.0 == label) {
            Some(r) => {
                r.1.insert(c.seed, v);
            }
            None => rows.push((label, BTreeMap::from([(c.seed, v)]))),
        }
    }
    rows.into_iter()
        .map(|(label, per)| {
            let col = |f: &dyn Fn(&Costs) -> f64| {
                mean(&per.values().map(f).collect::<Vec<_>>()).unwrap_or(f64::NAN)
            };
            let reads: Vec<f64> = per.values().filter_map(|v| v.3).collect();
            CostRow {
                label,
                clean: col(&|v| v.0),
                energy_j: col(&|v| v.1),
                latency_s: col(&|v| v.2),
                vector_reads: mean(&reads),
            }
        })
        .collect()
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

/// The line under a table saying how many images its rows were measured on, with the binomial
/// standard deviation of an accuracy of 50 % on them (the largest).
fn images_line(rows: &[TableRow]) -> String {
    let mut ns: Vec<usize> = rows.iter().map(|r| r.n).filter(|&n| n > 0).collect();
    ns.sort_unstable();
    ns.dedup();
    match ns.as_slice() {
        [] => String::new(),
        [n] => format!(
            "\n{n} images per cell (one binomial standard deviation: ≤ {:.1} points).\n",
            100.0 * binomial_std(0.5, *n)
        ),
        _ => {
            let per: Vec<String> = rows
                .iter()
                .map(|r| format!("{} {}", r.label, r.n))
                .collect();
            format!("\nImages per cell: {}.\n", per.join(", "))
        }
    }
}

/// A markdown table of text cells: rows labelled as `rows`, one column per head.
fn text_table(first: &str, heads: &[String], rows: &[TableRow], cells: &[Vec<String>]) -> String {
    let mut s = format!("| {first} |");
    for h in heads {
        let _ = write!(s, " {h} |");
    }
    s += "\n| --- |";
    for _ in heads {
        s += " ---: |";
    }
    s += "\n";
    for (r, cs) in rows.iter().zip(cells) {
        let _ = write!(s, "| {} |", r.label);
        for c in cs {
            let _ = write!(s, " {c} |");
        }
        s += "\n";
    }
    s
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
        for (c, sd) in r.cells.iter().zip(&r.spread) {
            match (c, sd) {
                (Some(c), Some(sd)) => {
                    let _ = write!(s, " {:.1} ± {:.1} |", 100.0 * c, 100.0 * sd);
                }
                _ => {
                    let _ = write!(s, " {} |", pct(*c));
                }
            }
        }
        s += "\n";
    }
    if let Some(k) = rows.iter().map(|r| r.seeds).max().filter(|&k| k > 1) {
        let _ = write!(
            s,
            "\nRows of several seeds (up to {k}): mean ± sample standard deviation over the seeds \
             (clean: the mean).\n"
        );
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
        if !self.summary.is_empty() {
            s += "## Summary — mean robust accuracy over attacks and strengths (%)\n\n";
            s += "Mean over every attack and ε > 0 of the tables below; ± one binomial standard deviation of an accuracy at that value on its images (clean: every evaluated image; attacks: the most images an attack of the row used).\n\n";
            s += "| model | images | clean | mean robust | attack × ε cells |\n| --- | --- | --- | --- | --- |\n";
            for r in &self.summary {
                let pm = |v: Option<f64>, n: usize| match v {
                    Some(p) => format!("{:.1} ± {:.1}", 100.0 * p, 100.0 * binomial_std(p, n)),
                    None => "-".into(),
                };
                let images = if r.clean_n == r.n {
                    r.n.to_string()
                } else {
                    format!("{} (attacks ≤ {})", r.clean_n, r.n)
                };
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} |",
                    r.label,
                    images,
                    pm(r.clean, r.clean_n),
                    pm(r.mean_robust, r.n),
                    r.cells
                );
            }
            s += "\n";
        }
        if !self.substrate_gaps.is_empty() {
            s += "## Digital vs substrate — accuracy (%)\n\nThe same model, protocol, attack and strength on the digital engine and on each realized substrate; difference = substrate − digital in points. On a stochastic or quantized substrate a positive difference under a white-box attack is an upper bound on its robustness until a transfer attack from the digital model confirms it (`epsim attack --transfer-from digital`).\n\n| model | substrate | evaluation | ε | digital | substrate | difference |\n| --- | --- | --- | --- | --- | --- | --- |\n";
            for g in &self.substrate_gaps {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {:.1} | {:.1} | {:+.1} |",
                    g.model,
                    g.substrate,
                    g.what,
                    if g.eps_text.is_empty() {
                        "–"
                    } else {
                        &g.eps_text
                    },
                    100.0 * g.digital,
                    100.0 * g.on_substrate,
                    100.0 * (g.on_substrate - g.digital)
                );
            }
            s += "\n";
        }
        if !self.costs.is_empty() {
            s += "## Cost per inference\n\nEnergy and latency of one inference on each realized substrate, counted from the reads of its clean evaluation (laws and sources: docs/cost-model.md; `epsim cost` breaks them down by part). The digital engine has no cost model. Pareto: no other substrate here has both less energy and at least the clean accuracy.\n\n| model | clean | energy (nJ) | latency (µs) | vector reads | Pareto |\n| --- | --- | --- | --- | --- | --- |\n";
            let front = crate::cost::pareto_front(
                &self
                    .costs
                    .iter()
                    .map(|c| (c.energy_j, c.clean))
                    .collect::<Vec<_>>(),
            );
            for (i, c) in self.costs.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "| {} | {:.1} | {:.3} | {:.3} | {} | {} |",
                    c.label,
                    100.0 * c.clean,
                    c.energy_j * 1e9,
                    c.latency_s * 1e6,
                    c.vector_reads.map_or("–".into(), |r| format!("{r:.0}")),
                    if front.contains(&i) { "yes" } else { "" }
                );
            }
            s += "\n";
        }
        for (i, t) in self.attacks.iter().enumerate() {
            let _ = writeln!(s, "## {} — robust accuracy (%)\n", t.attack);
            let heads: Vec<String> = t
                .columns
                .iter()
                .map(|c| format!("{}={}", t.strength, c.1))
                .collect();
            s += &table_md("model", &heads, &t.rows, true);
            s += &images_line(&t.rows);
            if t.rows.iter().any(|r| r.l2.iter().any(Option::is_some)) {
                s += "\nMean L2 distance of the successful adversarial examples from their clean images:\n\n";
                let l2_rows: Vec<Vec<String>> = t
                    .rows
                    .iter()
                    .map(|r| {
                        r.l2.iter()
                            .map(|v| v.map_or("–".into(), |v| format!("{v:.3}")))
                            .collect()
                    })
                    .collect();
                s += &text_table("model", &heads, &t.rows, &l2_rows);
            }
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
            s += &images_line(&c.by_corruption);
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
