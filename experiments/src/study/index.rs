//! The index contract of schedulers (`../shared/reference/distributed.md`), one implementation for
//! every grid of independent cells — a study ([`StudyGrid`]) and a device sweep
//! ([`super::sweep::SweepGrid`]), both [`Grid`]s: `plan` writes the immutable manifest
//! (`plan.jsonl`, cell i = line i, and `plan.json` with the hash of the grid's content, see
//! [`super::manifest`]), `count` gives its size, `run_cells` runs the cells of one array task
//! (index from the command line or the scheduler's variable, `K` cells per task), each cell written
//! atomically to `cells/<i>.json` and skipped when already done (so resubmitting failed indices is
//! safe), and `collect` merges the cells into `results.jsonl` and the report, or names the missing
//! and failed cells. A cell run here has the record a local run of the study or sweep writes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

use super::cells::{Cell, StudyOptions, cell_path, out_dir, plan, run_study};
use super::manifest::{Identity, check_existing, check_or_write, check_or_write_plan};
use super::spec::StudySpec;
use crate::device::Engine;
use crate::files::write_atomic;
use crate::report::Written;

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

/// A grid of independent cells under the index contract.
pub trait Grid {
    /// The `epsim` subcommand that runs it (`study`, `sweep`): in messages, and the array's
    /// sbatch file is `<kind>.sbatch`.
    fn kind(&self) -> &'static str;
    /// Where its manifest, cells, results and report go.
    fn out_dir(&self) -> PathBuf;
    /// The report's file name in [`Grid::out_dir`].
    fn report_file(&self) -> &'static str;
    /// What the manifest identifies it by.
    fn identity(&self) -> Result<Identity>;
    /// Its cells as `plan.jsonl`'s lines (cell i = line i), JSON objects without newlines.
    fn plan_lines(&self) -> Result<Vec<String>>;
    /// Run cell `i` and write `cells/<i>.json` atomically once it is done.
    fn run_cell<B: Engine>(&self, be: &B, i: usize) -> Result<()>;
    /// Merge the cells `done` (every cell, or the finished ones of a partial collection) into
    /// `results.jsonl` and the report.
    fn collect<B: Engine>(&self, be: &B, done: &[usize]) -> Result<Written>;
    /// The `epsim` arguments an array task runs it with (global options, the subcommand and its
    /// arguments, absolute paths), before `--run-cell`, `--collect` or `--train-only`.
    fn task_args(&self) -> Result<Vec<String>>;
}

/// A study file as a [`Grid`].
#[derive(Debug, Clone)]
pub struct StudyGrid {
    /// The study.
    pub spec: StudySpec,
    /// The file it was read from.
    pub file: PathBuf,
}

impl StudyGrid {
    /// The planned cells.
    pub fn cells(&self) -> Result<Vec<Cell>> {
        plan(&self.spec, &self.file)
    }
}

impl Grid for StudyGrid {
    fn kind(&self) -> &'static str {
        "study"
    }
    fn out_dir(&self) -> PathBuf {
        out_dir(&self.spec)
    }
    fn report_file(&self) -> &'static str {
        "report.md"
    }
    fn identity(&self) -> Result<Identity> {
        Identity::of_study(&self.file, &self.spec.name)
    }
    fn plan_lines(&self) -> Result<Vec<String>> {
        self.cells()?
            .iter()
            .map(|c| Ok(serde_json::to_string(c)?))
            .collect()
    }
    fn run_cell<B: Engine>(&self, be: &B, i: usize) -> Result<()> {
        let opts = StudyOptions {
            resume: true,
            only: vec![i],
            no_collect: true,
        };
        run_study(be, &self.spec, &self.file, &opts).map(|_| ())
    }
    fn collect<B: Engine>(&self, be: &B, done: &[usize]) -> Result<Written> {
        let cells: Vec<Cell> = self
            .cells()?
            .into_iter()
            .filter(|c| done.contains(&c.index))
            .collect();
        super::cells::collect(be, &self.spec, &cells, &self.out_dir())
    }
    fn task_args(&self) -> Result<Vec<String>> {
        let file = std::fs::canonicalize(&self.file)
            .with_context(|| format!("resolving {}", self.file.display()))?;
        Ok(vec!["study".into(), file.display().to_string()])
    }
}

/// How to write the manifest of `g`, for messages.
fn plan_hint<G: Grid>(g: &G) -> String {
    match g.task_args() {
        Ok(a) => format!("epsim {} --plan", a.join(" ")),
        Err(_) => format!("epsim {} ... --plan", g.kind()),
    }
}

/// Write the manifest of `g` into its output directory, or check the one there: a manifest of
/// another grid (another hash) or another plan is refused. Returns the output directory and the
/// number of cells.
pub fn write_plan<G: Grid>(g: &G) -> Result<(PathBuf, usize)> {
    let lines = g.plan_lines()?;
    let out = g.out_dir();
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    check_or_write(&g.identity()?, &out, lines.len())?;
    check_or_write_plan(&out, g.kind(), &lines, true)?;
    Ok((out, lines.len()))
}

/// The manifest written by [`write_plan`], checked against `g` (same hash, same cells). Returns
/// the output directory and the number of cells.
pub fn read_plan<G: Grid>(g: &G) -> Result<(PathBuf, usize)> {
    let out = g.out_dir();
    check_existing(&g.identity()?, &out, &plan_hint(g))?;
    let lines = g.plan_lines()?;
    check_or_write_plan(&out, g.kind(), &lines, false)?;
    Ok((out, lines.len()))
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

/// Run cells `indices` of the planned grid, each on its own: a cell already done is skipped, a
/// failing cell is recorded in `failed/<i>.txt` (removed when it later succeeds) and the others
/// still run. Errors naming the failed cells.
pub fn run_cells<B: Engine, G: Grid>(be: &B, g: &G, indices: &[usize]) -> Result<()> {
    let (out, n) = read_plan(g)?;
    let fail: Vec<usize> = std::env::var(FAIL_CELLS_VAR)
        .unwrap_or_default()
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut failed = Vec::new();
    for &i in indices {
        ensure!(i < n, "cell {i}: the plan has {n} cells");
        if cell_path(&out, i).exists() {
            println!("cell {i}: done already");
            continue;
        }
        let r = if fail.contains(&i) {
            Err(anyhow::anyhow!("failed on purpose ({FAIL_CELLS_VAR})"))
        } else {
            g.run_cell(be, i)
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

/// The cells of a planned grid that are not done: `(missing, failed)`, failed ones (with their
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

/// Merge the cells of the planned grid into `results.jsonl` and the report; an error naming
/// every missing cell (and why the failed ones failed) when any is not done. `partial`: write
/// the report of the finished cells instead, headed by the ones still missing.
pub fn collect<B: Engine, G: Grid>(be: &B, g: &G, partial: bool) -> Result<Written> {
    let (out, n) = read_plan(g)?;
    let (missing, failed) = pending(&out, n);
    if partial && !missing.is_empty() {
        let done: Vec<usize> = (0..n).filter(|i| !missing.contains(i)).collect();
        ensure!(
            !done.is_empty(),
            "{}: no cell is done yet: nothing to collect",
            out.display()
        );
        let mut w = g.collect(be, &done)?;
        let head = format!(
            "> **Partial report**: {} of {n} cells done; not done yet: cells {}{}. Every table \
             below holds the finished cells only (`epsim {} --collect --partial`).\n\n",
            done.len(),
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
            g.task_args()?.join(" ")
        );
        w.markdown = head + &w.markdown;
        write_atomic(&out.join(g.report_file()), w.markdown.as_bytes())?;
        return Ok(w);
    }
    if !missing.is_empty() {
        let mut msg = format!(
            "{} of {n} cells are not done: missing {missing:?}",
            missing.len()
        );
        for (i, why) in &failed {
            msg += &format!("\n  cell {i} failed: {why}");
        }
        msg += &format!(
            "\nrerun them (e.g. epsim {} --run-cell --index I, or sbatch --array=... {}), then \
             collect again",
            g.task_args()?.join(" "),
            out.join(format!("{}.sbatch", g.kind())).display()
        );
        bail!(msg);
    }
    g.collect(be, &(0..n).collect::<Vec<_>>())
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
