//! `epsim robustness`: a suite on one target — every attack × strength under every protocol of the
//! suite, then the corruptions × severities — with every record appended to results.jsonl, and
//! report.md: the tables, the protocol gap (with both protocols) and the sanity checks.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};

use super::attack::{attack_norm, attack_strength_examples};
use super::suite::{Suite, SuiteAttack, SuiteCorruptions};
use super::target::Target;
use crate::classifier::{Classifier, costed, with_fields};
use crate::corrupt::Corruption;
use crate::data::Dataset;
use crate::device::Engine;
use crate::eval::correct;
use crate::files::JsonlAppender;
use crate::report::checks::{Status, SuiteRow, iteration_checks, suite_warnings};
use crate::report::protocol_gap::{GapRow, gap_section};
use crate::results::{AttackRow, CorruptionRecord, RecordContext, attack_row, git_commit};

/// `epsim robustness`: a suite file run on a target into an output directory.
#[derive(Debug, Clone)]
pub struct RobustnessRun {
    /// Model, substrate and data.
    pub target: Target,
    /// Suite file (TOML).
    pub suite: PathBuf,
    /// Output directory: results.jsonl (appended) and report.md.
    pub out_dir: PathBuf,
}

/// What the attack part of a run gathers for the report.
#[derive(Default)]
struct AttackPart {
    /// The attacks' table rows of report.md.
    md: String,
    /// (row name, norm, ε, robust accuracy) for the sanity checks.
    rows: Vec<SuiteRow>,
    /// The records as `epsim report` reads them, for its iterations/restarts check.
    checked: Vec<AttackRow>,
    /// Per (attack, ε, protocol) for the protocol gap.
    gap: Vec<GapRow>,
}

impl RobustnessRun {
    /// Run the suite on `be`: see the module doc.
    pub fn run<B: Engine>(&self, be: &B, seed: u64) -> Result<()> {
        let suite = Suite::read(&self.suite)?;
        suite.check(&self.suite)?;
        suite.check_no_transfer(&self.suite, "epsim robustness")?;
        let t = &self.target;
        let l = t.load(be, seed)?;
        let (d, clf) = (&l.data, l.clf.as_ref());
        // Checked before any attack runs.
        if suite.corruptions.is_some() {
            SuiteCorruptions::check_data(&self.suite, &t.data, d.shape[1])?;
        }
        // The standard protocol takes gradients through the dynamics that is evaluated: with
        // --t-attack ≠ T_predict (the paper's truncation, for advep) its runs use T_predict.
        let honest = if l.t_attack != l.t_predict && suite.protocols.iter().any(|p| p == "standard")
        {
            let t = Target {
                t_attack: None,
                ..t.clone()
            };
            Some(t.ep_classifier(be, seed)?.0)
        } else {
            None
        };
        std::fs::create_dir_all(&self.out_dir)
            .with_context(|| format!("creating {}", self.out_dir.display()))?;
        let results = self.out_dir.join("results.jsonl");
        let mut out = JsonlAppender::open(&results)?;
        let cx = RecordContext {
            model: t.model.display().to_string(),
            substrate: t.substrate.label(),
            seed,
            data: t.data.clone(),
            n: d.len(),
            commit: git_commit(),
            settle: t.settle,
        };
        let n = d.len();
        let mut report = format!(
            "# Robustness report\n\nmodel `{}`, substrate `{}`, data `{}` ({n} images), seed {seed}, T_predict {}, T_attack {}{}, protocols {}, commit {}\n\n",
            cx.model,
            cx.substrate,
            cx.data,
            l.t_predict,
            l.t_attack,
            if honest.is_some() {
                " (standard protocol: T_predict)"
            } else {
                ""
            },
            suite.protocols.join(", "),
            cx.commit
        );
        let (right, cost) = costed(clf, "", || Ok((correct(clf, d, t.batch_size)?, n as u64)))?;
        let clean_acc = right as f64 / n.max(1) as f64;
        report += &format!("Clean accuracy: {clean_acc:.4}\n\n");
        let num = |k: &str| cost.get(k).and_then(serde_json::Value::as_f64);
        if let (Some(e), Some(l)) = (num("energy_j"), num("latency_s")) {
            report += &format!(
                "Cost per inference on this substrate (from the clean run's reads): energy \
                 {e:.4e} J, latency {l:.4e} s (`epsim cost` gives the breakdown). Attack records \
                 carry the energy each attack spent per attacked image (`attack_energy_j`), \
                 corruption records the cost per inference of their run.\n\n"
            );
        }
        let part = self.attacks(&suite, &l, honest.as_deref(), &cx, &mut out, seed)?;
        report += &part.md;
        let (gap_md, mut warnings) = gap_section(&part.gap);
        report += &gap_md;
        warnings.extend(suite_warnings(&part.rows, clf.stochastic(), n));
        if let Some(c) = &suite.corruptions {
            report += &self.corruptions(c, d, clf, &cx, &mut out)?;
        }
        let mut passed = Vec::new();
        for c in iteration_checks(&part.checked) {
            match c.status {
                Status::Warn => warnings.push(c.to_string()),
                Status::Pass => passed.push(c),
            }
        }
        report += "\n## Sanity checks\n\n";
        for c in &passed {
            report += &format!("- {c}\n");
        }
        if warnings.is_empty() {
            report += "All passed: robust accuracy never rises with ε beyond noise; no large-ε or black-box-vs-white-box anomaly.\n";
        }
        for w in &warnings {
            report += &format!("- {w}\n");
            eprintln!("warning: {w}");
        }
        let rp = self.out_dir.join("report.md");
        std::fs::write(&rp, &report).with_context(|| format!("writing {}", rp.display()))?;
        println!("{report}");
        println!(
            "results appended to {}; report in {}",
            results.display(),
            rp.display()
        );
        Ok(())
    }

    /// Every attack × strength under every protocol: records appended, table rows gathered.
    fn attacks(
        &self,
        suite: &Suite,
        l: &super::target::Loaded,
        honest: Option<&dyn Classifier>,
        cx: &RecordContext,
        out: &mut JsonlAppender,
        seed: u64,
    ) -> Result<AttackPart> {
        let t = &self.target;
        let d = &l.data;
        let results = self.out_dir.join("results.jsonl");
        let mut part = AttackPart::default();
        if !suite.attack.is_empty() {
            part.md += "## Attacks (robust accuracy)\n\n| attack | protocol | ε | robust accuracy | queries | gradients | time (s) |\n| --- | --- | --- | --- | --- | --- | --- |\n";
        }
        let pairs = suite
            .protocols
            .iter()
            .flat_map(|p| suite.attack.iter().map(move |at| (p, at)));
        for (protocol, at) in pairs {
            let SuiteAttack {
                name,
                steps,
                restarts,
                save_examples,
                subset,
                ..
            } = at;
            let (ad, cx) = &super::item::attacked_images(d, cx, *subset);
            let loader =
                crate::data::Loader::new(ad, t.batch_size, sim::Stream::new(seed, "attack.data"));
            let (clf, t_attack) = match (honest, protocol.as_str()) {
                (Some(h), "standard") => (h, l.t_predict),
                _ => (l.clf.as_ref(), l.t_attack),
            };
            for (e, eps) in super::protocol::expand_eps(&at.eps)? {
                let ((o, ex), cost) = costed(clf, "attack_", || {
                    let r = attack_strength_examples(
                        clf,
                        None,
                        &loader,
                        name,
                        eps as f32,
                        &e,
                        *steps,
                        *restarts,
                        t.eot,
                        seed,
                        protocol,
                        save_examples.unwrap_or(0),
                    )?;
                    Ok((r, ad.len() as u64))
                })?;
                if save_examples.is_some() {
                    crate::report::examples::save(&results, name, &e, &o.name, &ex, &d.classes)?;
                }
                let rec = o.record(cx, name, protocol, eps, &e, *steps, l.t_predict, t_attack);
                println!(
                    "{:<20} {:<8} {:>10} robust {:.4}",
                    name, protocol, e, rec.robust_accuracy
                );
                out.append(&with_fields(&rec, cost)?)?;
                part.checked.push(attack_row(&rec)?);
                part.md += &format!(
                    "| {} | {protocol} | {} | {:.4} | {} | {} | {:.1} |\n",
                    name, e, rec.robust_accuracy, rec.queries, rec.grads, rec.wall_s
                );
                // Sanity checks compare runs of one protocol: advep rows carry it in their name.
                let row_name = if protocol == "standard" {
                    name.clone()
                } else {
                    format!("{name} ({protocol})")
                };
                part.rows
                    .push((row_name, attack_norm(name), eps, rec.robust_accuracy));
                part.gap.push(GapRow {
                    attack: name.clone(),
                    eps_text: e.clone(),
                    eps,
                    protocol: protocol.clone(),
                    robust_accuracy: rec.robust_accuracy,
                });
            }
        }
        Ok(part)
    }

    /// Every corruption × severity: records appended; the table.
    fn corruptions(
        &self,
        c: &SuiteCorruptions,
        d: &Dataset,
        clf: &dyn Classifier,
        cx: &RecordContext,
        out: &mut JsonlAppender,
    ) -> Result<String> {
        // RGB data: checked by `run` before any attack.
        let t = &self.target;
        let kinds = Corruption::parse_list(&c.names).map_err(|e| anyhow::anyhow!("{e}"))?;
        let n = d.len();
        let mut md = match &c.released {
            Some(r) => format!("\n## Corruptions (accuracy; released files {r})\n\n| corruption |"),
            None => String::from("\n## Corruptions (accuracy)\n\n| corruption |"),
        };
        for s in &c.severities {
            md += &format!(" s{s} |");
        }
        md += " mean |\n| --- |";
        for _ in 0..=c.severities.len() {
            md += " --- |";
        }
        md += "\n";
        let pb =
            crate::progress::progress((kinds.len() * c.severities.len()) as u64, "corruptions");
        for k in &kinds {
            md += &format!("| {} |", k.name());
            let mut accs = Vec::new();
            for &sev in &c.severities {
                let t0 = Instant::now();
                let (cd, source) = c.images(*k, sev, d, t.subset, cx.seed)?;
                let (right, cost) = costed(clf, "", || {
                    Ok((correct(clf, &cd, t.batch_size)?, cd.len() as u64))
                })?;
                let acc = right as f64 / n.max(1) as f64;
                let mut rec = CorruptionRecord::new(cx, *k, sev, acc, t0);
                rec.note = source.map(|s| format!("released files {s}"));
                out.append(&with_fields(&rec, cost)?)?;
                md += &format!(" {acc:.4} |");
                accs.push(acc);
                pb.inc(1);
            }
            let mean = accs.iter().sum::<f64>() / accs.len().max(1) as f64;
            md += &format!(" {mean:.4} |\n");
        }
        pb.finish_and_clear();
        Ok(md)
    }
}
