//! The index contract of a study, for schedulers (`../shared/reference/distributed.md`): `plan`
//! writes the immutable manifest (`plan.jsonl`, cell i = line i, and `plan.json` with the hash of
//! the study's content, see [`super::manifest`]), `count` gives its size, `run_cells` runs the cells of one array task (index
//! from the command line or the scheduler's variable, `K` cells per task), each cell written
//! atomically and skipped when already done (so resubmitting failed indices is safe), and
//! `collect` merges the cells into `results.jsonl` and the report, or names the missing and failed
//! cells. The cells themselves are [`super::cells`]'s: a cell run here has the record a local
//! `epsim study` writes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use super::cells::{Cell, StudyOptions, cell_path, out_dir, plan, run_study};
use super::manifest::{check_or_write, meta_path, study_hash};
use super::spec::StudySpec;
use crate::device::Engine;
use crate::files::write_atomic;

/// The variables a scheduler passes an array task's index in, in the order they are tried:
/// Slurm, Kubernetes Indexed Jobs, PBS, SGE and LSF (the last two count from 1: pass an offset
/// of 1).
pub const INDEX_VARS: [&str; 5] = [
    "SLURM_ARRAY_TASK_ID",
    "JOB_COMPLETION_INDEX",
    "PBS_ARRAY_INDEX",
    "SGE_TASK_ID",
    "LSB_JOBINDEX",
];

/// Test hook: cells listed here (comma-separated indices) fail when run, as a crashed cell would.
pub const FAIL_CELLS_VAR: &str = "EPSIM_FAIL_CELLS";

fn failed_path(out: &Path, i: usize) -> PathBuf {
    out.join("failed").join(format!("{i:06}.txt"))
}

/// Write the manifest of `spec` (read from `study`) into its output directory, or check the one
/// there: a manifest of another study file (another hash) or another plan is refused. Returns
/// the output directory and the cells.
pub fn write_plan(spec: &StudySpec, study: &Path) -> Result<(PathBuf, Vec<Cell>)> {
    let cells = plan(spec, study)?;
    let out = out_dir(spec);
    check_or_write(study, &spec.name, &out, cells.len())?;
    let mut text = String::new();
    for c in &cells {
        text += &serde_json::to_string(c)?;
        text.push('\n');
    }
    let path = out.join("plan.jsonl");
    match std::fs::read_to_string(&path) {
        Ok(old) if old == text => {}
        Ok(_) => bail!(
            "{}: the study changed since this plan was written; choose another out_dir, or \
             remove {} to start over",
            path.display(),
            out.display()
        ),
        Err(_) => write_atomic(&path, text.as_bytes())?,
    }
    Ok((out, cells))
}

/// The manifest written by [`write_plan`], checked against the study file (same hash).
pub fn read_plan(spec: &StudySpec, study: &Path) -> Result<(PathBuf, Vec<Cell>)> {
    let out = out_dir(spec);
    let meta = meta_path(&out);
    let text = std::fs::read_to_string(&meta).with_context(|| {
        format!(
            "no manifest {}: run `epsim study {} --plan` first",
            meta.display(),
            study.display()
        )
    })?;
    let m: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a plan manifest", meta.display()))?;
    let hash = study_hash(study)?;
    ensure!(
        m["study_hash"] == hash.as_str(),
        "{} was planned from another version of {} (hash {}, now {hash}): the study file \
         changed after planning",
        meta.display(),
        study.display(),
        m["study_hash"]
    );
    let path = out.join("plan.jsonl");
    let cells = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .lines()
        .map(|l| serde_json::from_str::<Cell>(l).with_context(|| format!("{}", path.display())))
        .collect::<Result<Vec<_>>>()?;
    Ok((out, cells))
}

/// The index of this array task: `explicit` if given, else the first of [`INDEX_VARS`] set,
/// minus `offset`.
pub fn task_index(explicit: Option<usize>, offset: usize) -> Result<usize> {
    let (raw, from) = match explicit {
        Some(i) => (i, "--index".to_string()),
        None => {
            let (var, v) = INDEX_VARS
                .iter()
                .find_map(|v| std::env::var(v).ok().map(|x| (*v, x)))
                .with_context(|| {
                    format!("no --index and none of {} is set", INDEX_VARS.join(", "))
                })?;
            let i = v
                .trim()
                .parse::<usize>()
                .with_context(|| format!("{var}={v:?} is not an index"))?;
            (i, var.to_string())
        }
    };
    raw.checked_sub(offset)
        .with_context(|| format!("{from} = {raw} is below --index-offset {offset}"))
}

/// Array tasks for `cells` cells at `k` cells per task.
pub fn task_count(cells: usize, k: usize) -> usize {
    cells.div_ceil(k.max(1))
}

/// The cells of array task `task` at `k` cells per task (task t holds cells t·k .. t·k + k).
pub fn task_cells(task: usize, k: usize, cells: usize) -> Result<Vec<usize>> {
    ensure!(k >= 1, "--points-per-task must be ≥ 1");
    let n = task_count(cells, k);
    ensure!(
        task < n,
        "task {task} is out of range: {cells} cells at {k} per task make {n} tasks (0..{n})"
    );
    Ok((task * k..((task + 1) * k).min(cells)).collect())
}

/// Run cells `indices` of the planned study, each on its own: a cell already done is skipped, a
/// failing cell is recorded in `failed/<i>.txt` (removed when it later succeeds) and the others
/// still run. Errors naming the failed cells.
pub fn run_cells<B: Engine>(
    be: &B,
    spec: &StudySpec,
    study: &Path,
    indices: &[usize],
) -> Result<()> {
    let (out, cells) = read_plan(spec, study)?;
    let fail: Vec<usize> = std::env::var(FAIL_CELLS_VAR)
        .unwrap_or_default()
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut failed = Vec::new();
    for &i in indices {
        ensure!(
            i < cells.len(),
            "cell {i}: the plan has {} cells",
            cells.len()
        );
        if cell_path(&out, i).exists() {
            println!("cell {i}: done already");
            continue;
        }
        let r = if fail.contains(&i) {
            Err(anyhow::anyhow!("failed on purpose ({FAIL_CELLS_VAR})"))
        } else {
            let opts = StudyOptions {
                resume: true,
                only: vec![i],
                no_collect: true,
            };
            run_study(be, spec, study, &opts).map(|_| ())
        };
        match r {
            Ok(()) => {
                let _ = std::fs::remove_file(failed_path(&out, i));
                println!("cell {i}: done");
            }
            Err(e) => {
                let text = format!("{e:#}\n");
                eprintln!("cell {i} failed: {text}");
                write_atomic(&failed_path(&out, i), text.as_bytes())?;
                failed.push(i);
            }
        }
    }
    ensure!(
        failed.is_empty(),
        "cell(s) {failed:?} failed (see {})",
        out.join("failed").display()
    );
    Ok(())
}

/// The cells of a planned study that are not done: `(missing, failed)`, failed ones (with their
/// error's first line) also listed in `missing`.
pub fn pending(out: &Path, cells: usize) -> (Vec<usize>, Vec<(usize, String)>) {
    let missing: Vec<usize> = (0..cells)
        .filter(|&i| !cell_path(out, i).exists())
        .collect();
    let failed = missing
        .iter()
        .filter_map(|&i| {
            std::fs::read_to_string(failed_path(out, i))
                .ok()
                .map(|t| (i, t.lines().next().unwrap_or_default().to_string()))
        })
        .collect();
    (missing, failed)
}

/// Merge the cells of the planned study into `results.jsonl` and the report; an error naming
/// every missing cell (and why the failed ones failed) when any is not done.
pub fn collect_study<B: Engine>(
    be: &B,
    spec: &StudySpec,
    study: &Path,
    partial: bool,
) -> Result<crate::report::Written> {
    let (out, cells) = read_plan(spec, study)?;
    let (missing, failed) = pending(&out, cells.len());
    if partial && !missing.is_empty() {
        let done: Vec<Cell> = cells
            .iter()
            .filter(|c| !missing.contains(&c.index))
            .cloned()
            .collect();
        ensure!(
            !done.is_empty(),
            "{}: no cell is done yet: nothing to collect",
            out.display()
        );
        let mut w = super::cells::collect(be, spec, &done, &out)?;
        let head = format!(
            "> **Partial report**: {} of {} cells done; not done yet: cells {}{}. Every table \
             below holds the finished cells only (`epsim study {} --collect --partial`).\n\n",
            done.len(),
            cells.len(),
            ranges(&missing),
            if failed.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} failed: see {})",
                    failed.len(),
                    out.join("failed").display()
                )
            },
            study.display()
        );
        w.markdown = head + &w.markdown;
        write_atomic(&out.join("report.md"), w.markdown.as_bytes())?;
        return Ok(w);
    }
    if !missing.is_empty() {
        let mut msg = format!(
            "{} of {} cells are not done: missing {missing:?}",
            missing.len(),
            cells.len()
        );
        for (i, why) in &failed {
            msg += &format!("\n  cell {i} failed: {why}");
        }
        msg += &format!(
            "\nrerun them (e.g. epsim study {} --run-cell --index I, or sbatch --array=... \
             {}), then collect again",
            study.display(),
            out.join("study.sbatch").display()
        );
        bail!(msg);
    }
    super::cells::collect(be, spec, &cells, &out)
}

/// Sorted indices as ranges: `0-3, 7, 9-10`.
pub fn ranges(ix: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ix.len() {
        let mut j = i;
        while j + 1 < ix.len() && ix[j + 1] == ix[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            ix[i].to_string()
        } else {
            format!("{}-{}", ix[i], ix[j])
        });
        i = j + 1;
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn ranges_fold_runs_of_indices() {
        assert_eq!(super::ranges(&[0, 1, 2, 6, 8, 9, 10, 11]), "0-2, 6, 8-11");
        assert_eq!(super::ranges(&[5]), "5");
        assert_eq!(super::ranges(&[]), "");
    }
}
