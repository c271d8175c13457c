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

pub mod checks;
pub mod examples;
pub mod names;
pub mod plot;
pub mod protocol_gap;
pub mod tables;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};

use crate::results::{Record, read_results};
use checks::Status;
use tables::{build, model_labels, slug};

/// What [`write_report`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// The markdown report.
    pub markdown: String,
    /// The sanity checks' warnings.
    pub warnings: Vec<String>,
    /// Plots written beside the report.
    pub plots: usize,
}

/// `epsim report`: read and merge the results files (in order), write the markdown report `out`
/// and one PNG plot per attack next to it. `labels`: `PATH=NAME` row labels (see
/// [`tables::model_labels`]).
pub fn write_report(results: &[PathBuf], out: &Path, labels: &[String]) -> Result<Written> {
    let mut records = Vec::new();
    let mut sources = Vec::new();
    for p in results {
        let r = read_results(p)?;
        sources.push(format!("`{}` ({} records)", p.display(), r.len()));
        records.extend(r);
    }
    ensure!(
        !records.is_empty(),
        "no records in {}",
        results
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
            Record::Clean(x) => &x.model,
            Record::Other(_) => continue,
        };
        if !models.contains(m) {
            models.push(m.clone());
        }
    }
    let labels = model_labels(&models, labels)?;
    let report = build(&records, &labels);
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".into());
    let mut plots = Vec::new();
    for t in &report.attacks {
        let name = format!("{stem}_{}.png", slug(&t.attack));
        let series: Vec<plot::Series> = t
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
                plot::Series {
                    label: r.label.clone(),
                    points: pts,
                }
            })
            .collect();
        plot::line_chart(
            &dir.join(&name),
            &t.attack,
            t.strength,
            "accuracy (%)",
            &series,
            Some((0.0, 100.0)),
        )?;
        plots.push(Some(name));
    }
    let mut md = report.to_markdown(&sources, &plots);
    if let Some(c) = &report.corruptions {
        // The paper's Fig. 2: accuracy vs severity per model (severity 0 = clean).
        let name = format!("{stem}_corruptions.png");
        let series: Vec<plot::Series> = c
            .by_severity
            .iter()
            .map(|r| plot::Series {
                label: r.label.clone(),
                points: r
                    .clean
                    .map(|v| (0.0, 100.0 * v))
                    .into_iter()
                    .chain(
                        c.severities
                            .iter()
                            .zip(&r.cells)
                            .filter_map(|(s, v)| v.map(|v| (f64::from(*s), 100.0 * v))),
                    )
                    .collect(),
            })
            .collect();
        plot::line_chart(
            &dir.join(&name),
            "corruptions: accuracy vs severity (0 = clean), mean over corruptions",
            "severity",
            "accuracy (%)",
            &series,
            Some((0.0, 100.0)),
        )?;
        // Under the corruption tables, before the checks.
        md = md.replacen(
            "## Sanity checks\n",
            &format!("![corruptions by severity]({name})\n\n## Sanity checks\n"),
            1,
        );
        plots.push(Some(name));
    }
    if !report.costs.is_empty() {
        let name = format!("{stem}_energy.png");
        energy_chart(&dir.join(&name), &report)?;
        // Under the cost table (before the next section).
        if let Some(at) = md.find("## Cost per inference") {
            let end = md[at..].find("\n## ").map_or(md.len(), |k| at + k + 1);
            md.insert_str(end, &format!("![accuracy vs energy]({name})\n\n"));
        }
        plots.push(Some(name));
    }
    std::fs::write(out, &md).with_context(|| format!("writing {}", out.display()))?;
    Ok(Written {
        warnings: report
            .checks
            .iter()
            .filter(|c| c.status == Status::Warn)
            .map(|c| c.message.clone())
            .collect(),
        markdown: md,
        plots: plots.len(),
    })
}

/// Accuracy against energy per inference of every realized substrate of the report: one series
/// per row, from its mean robust accuracy (lower marker, where it was attacked) to its clean
/// accuracy (upper marker) at its energy.
fn energy_chart(path: &Path, report: &tables::Report) -> Result<()> {
    let series: Vec<plot::Series> = report
        .costs
        .iter()
        .map(|c| {
            let robust = report
                .summary
                .iter()
                .find(|r| r.label == c.label)
                .and_then(|r| r.mean_robust);
            let e = c.energy_j * 1e9;
            plot::Series {
                label: c.label.clone(),
                points: robust
                    .map(|r| (e, 100.0 * r))
                    .into_iter()
                    .chain([(e, 100.0 * c.clean)])
                    .collect(),
            }
        })
        .collect();
    plot::line_chart(
        path,
        "accuracy vs energy per inference (upper: clean; lower: mean robust)",
        "energy per inference (nJ)",
        "accuracy (%)",
        &series,
        Some((0.0, 100.0)),
    )
}
