//! The device-parameter sweeps of a study (`[[sweep]]`, see [`super::spec::SweepEntry`]) in its
//! report: per sweep a table (rows: the swept items, accuracy in % averaged over the seeds; the
//! model's digital result beside the levels; the energy per inference of the clean cells) and a
//! figure of accuracy against the level, `sweep_<k>.png`. The cells' records are in
//! `sweeps.jsonl`; `epsim sweep` is the same sweep outside a study.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde_json::Value;

use super::levels::SweepParam;
use super::spec::StudySpec;
use crate::report::plot::{Series, line_chart};

/// A cell of the study, as the section reads it: its coordinates and its record.
#[derive(Debug, Clone, Copy)]
pub struct CellRecord<'a> {
    /// The model's study name.
    pub model: &'a str,
    /// The substrate as the study writes it.
    pub substrate: &'a str,
    /// The protocol (`none` for clean and corruption items).
    pub protocol: &'a str,
    /// The suite item id.
    pub item: &'a str,
    /// A sweep cell's `KEY=level` (empty for the suite's cells).
    pub set: &'a [String],
    /// The cell's record.
    pub record: &'a Value,
}

/// The mean of `v` (None when empty).
fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The report section of `spec`'s sweeps from the records of the suite's cells `main` and the
/// sweep cells `swept` (each with its cell), writing one figure per sweep into `out`; returns the
/// markdown and the number of figures.
pub fn section(
    spec: &StudySpec,
    main: &[CellRecord<'_>],
    swept: &[CellRecord<'_>],
    out: &Path,
) -> Result<(String, usize)> {
    let mut md = String::from(
        "## Device-parameter sweeps\n\nEach `[[sweep]]` of the study: the model realized at every \
         level of one preset parameter (its other overrides kept), accuracy in % (mean over the \
         seeds), the model's digital result beside it; energy per inference from the clean \
         cells. Records: `sweeps.jsonl`.\n\n",
    );
    let mut figures = 0;
    for (k, sw) in spec.sweeps.iter().enumerate() {
        let param = SweepParam::parse(&sw.param)?;
        let _ = writeln!(
            md,
            "### {} on `{}`: {}\n",
            sw.model, sw.substrate, param.key
        );
        let mut head = String::from("| item | digital |");
        let mut rule = String::from("| --- | --- |");
        for l in &param.levels {
            let _ = write!(head, " {}={l} |", param.key);
            rule += " --- |";
        }
        let _ = writeln!(md, "{head}\n{rule}");
        // accs[item][level] over seeds; energy[level] of the clean cells.
        let mut accs: BTreeMap<&str, Vec<Vec<f64>>> = BTreeMap::new();
        let mut energy: Vec<Vec<f64>> = vec![Vec::new(); param.levels.len()];
        for c in swept.iter().filter(|c| {
            c.model == sw.model
                && c.substrate == sw.substrate
                && sw.items.iter().any(|i| i == c.item)
        }) {
            let v = c.record;
            let Some(i) = param
                .levels
                .iter()
                .position(|l| c.set.first() == Some(&format!("{}={l}", param.key)))
            else {
                continue;
            };
            let acc = v["accuracy"].as_f64().unwrap_or(f64::NAN);
            accs.entry(c.item)
                .or_insert_with(|| vec![Vec::new(); param.levels.len()])[i]
                .push(acc);
            if c.item == "clean"
                && let Some(e) = v["energy_j"].as_f64()
            {
                energy[i].push(e);
            }
        }
        let pct = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{:.1}", 100.0 * v));
        let mut series = Vec::new();
        for item in &sw.items {
            let digital: Vec<f64> = main
                .iter()
                .filter(|c| c.model == sw.model && c.substrate == "digital" && c.item == item)
                .filter(|c| c.protocol == "standard" || c.protocol == "none")
                .filter_map(|c| c.record["accuracy"].as_f64())
                .collect();
            let per_level = accs.get(item.as_str());
            let _ = write!(md, "| {item} | {} |", pct(mean(&digital)));
            let mut points = Vec::new();
            for i in 0..param.levels.len() {
                let m = per_level.and_then(|v| mean(&v[i]));
                let _ = write!(md, " {} |", pct(m));
                let x = param.numeric.as_ref().map_or(i as f64, |n| n[i]);
                if let Some(m) = m {
                    points.push((x, 100.0 * m));
                }
            }
            md.push('\n');
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            if let (Some(d), Some(first), Some(last)) =
                (mean(&digital), points.first(), points.last())
            {
                series.push(Series {
                    label: format!("{item} (digital)"),
                    points: vec![(first.0, 100.0 * d), (last.0, 100.0 * d)],
                });
            }
            series.push(Series {
                label: format!("{item} on {}", sw.substrate),
                points,
            });
        }
        if energy.iter().any(|e| !e.is_empty()) {
            let _ = write!(md, "| energy per inference (nJ) | – |");
            for e in &energy {
                let _ = write!(
                    md,
                    " {} |",
                    mean(e).map_or("–".into(), |v| format!("{:.1}", v * 1e9))
                );
            }
            md.push('\n');
        }
        let name = format!("sweep_{}.png", k + 1);
        let x_label = match &param.numeric {
            Some(_) => param.key.clone(),
            None => format!(
                "{} (levels in order: {})",
                param.key,
                param.levels.join(", ")
            ),
        };
        line_chart(
            &out.join(&name),
            &format!(
                "{} on {}: accuracy vs {}",
                sw.model, sw.substrate, param.key
            ),
            &x_label,
            "accuracy (%)",
            &series,
            Some((0.0, 100.0)),
        )?;
        figures += 1;
        let _ = writeln!(md, "\n![{} sweep]({name})\n", param.key);
    }
    Ok((md, figures))
}
