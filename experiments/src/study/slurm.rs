//! A planned grid (a study or a sweep) as a Slurm job array: the `.sbatch` files written beside the
//! results (kept, so a user can edit and resubmit them: `sbatch --array=3,17 study.sbatch`), the
//! array and its `collect` job (`--dependency=afterany`) submitted with `sbatch`, and an optional
//! wait for both that checks every cell. A study with models still to train gets a training job
//! first (`epsim study --train-only`), and the array starts only once it succeeded
//! (`--dependency=afterok`). Each task runs `epsim <grid> --run-cell --points-per-task K` (the
//! index contract of [`super::index`]) in the directory the grid was submitted from.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use super::index::{Grid, pending, task_count, write_plan};
use crate::files::write_atomic;

/// How the array is submitted.
#[derive(Debug, Clone, Default)]
pub struct SlurmOptions {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time` (Slurm's formats: `MM`, `HH:MM:SS`, `D-HH`).
    pub time: Option<String>,
    /// `--cpus-per-task` (the tasks' thread count).
    pub cpus_per_task: Option<usize>,
    /// `--gres` (e.g. `gpu:1`).
    pub gres: Option<String>,
    /// At most this many tasks at once (`--array=0-N%K`).
    pub max_parallel: Option<usize>,
    /// Cells per task.
    pub points_per_task: usize,
    /// `--device` given on the command line, passed on to every task (else the study file's).
    pub device: Option<String>,
    /// Some model must be trained first: submit a training job the array depends on.
    pub train_first: bool,
}

/// The submitted jobs.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The training job's id, when the study trains models first.
    pub train: Option<String>,
    /// The array job's id.
    pub array: String,
    /// The collect job's id.
    pub collect: String,
    /// The array's sbatch file.
    pub sbatch: PathBuf,
}

/// `s` as one shell word: as it is when it holds only safe characters, else single-quoted.
fn quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_./:=,@+-%".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The sbatch files of a grid of `kind` (`study`, `sweep`) named `name` with `cells` cells in
/// `out`, running `exe` with the grid's task arguments `args` from the directory `cwd` (absolute
/// paths): `(array, collect, training job if o.train_first)`.
pub fn sbatch_files(
    kind: &str,
    name: &str,
    exe: &Path,
    args: &[String],
    (cwd, out): (&Path, &Path),
    cells: usize,
    o: &SlurmOptions,
) -> (String, String, Option<String>) {
    let k = o.points_per_task.max(1);
    let tasks = task_count(cells, k);
    let dev = o
        .device
        .as_ref()
        .map_or(String::new(), |d| format!(" --device {}", quote(d)));
    let logs = out.join("slurm");
    let run = format!(
        "{}{dev} {}",
        quote(&exe.display().to_string()),
        args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
    );
    let mut head = String::from("#!/bin/bash\n");
    head += &format!("#SBATCH --chdir={}\n", cwd.display());
    let mut opt = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            head += &format!("#SBATCH --{k}={v}\n");
        }
    };
    opt("partition", o.partition.clone());
    opt("time", o.time.clone());
    opt("cpus-per-task", o.cpus_per_task.map(|c| c.to_string()));
    let common = head.clone();
    let mut array = common.clone();
    array += &format!("#SBATCH --job-name=epsim-{name}\n");
    array += &format!(
        "#SBATCH --array=0-{}{}\n",
        tasks.saturating_sub(1),
        o.max_parallel.map(|m| format!("%{m}")).unwrap_or_default()
    );
    array += &format!("#SBATCH --output={}/%A_%a.log\n", logs.display());
    if let Some(g) = &o.gres {
        array += &format!("#SBATCH --gres={g}\n");
    }
    array += &format!(
        "# {cells} cells, {k} per task. Finished cells are skipped, so failed tasks can be \
         resubmitted:\n#   sbatch --array=3,17 {}\nexec {run} --run-cell --points-per-task {k}\n",
        out.join(format!("{kind}.sbatch")).display(),
    );
    let train = o.train_first.then(|| {
        let mut t = common.clone();
        t += &format!("#SBATCH --job-name=epsim-{name}-train\n");
        t += &format!("#SBATCH --output={}/train_%j.log\n", logs.display());
        if let Some(g) = &o.gres {
            t += &format!("#SBATCH --gres={g}\n");
        }
        t += &format!(
            "# Trains the study's models whose checkpoints are missing; the array starts once this \
             succeeded.\nexec {run} --train-only\n"
        );
        t
    });
    let mut collect = common;
    collect += &format!("#SBATCH --job-name=epsim-{name}-collect\n");
    collect += &format!("#SBATCH --output={}/collect_%j.log\n", logs.display());
    collect += &format!("exec {run} --collect\n");
    (array, collect, train)
}

fn sbatch(args: &[&str]) -> Result<String> {
    let o = Command::new("sbatch")
        .arg("--parsable")
        .args(args)
        .output()
        .context("running sbatch (is Slurm installed? scripts/slurm-local.sh up starts one)")?;
    ensure!(
        o.status.success(),
        "sbatch {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr).trim()
    );
    let id = String::from_utf8_lossy(&o.stdout);
    let id = id.trim().split(';').next().unwrap_or_default().to_string();
    ensure!(!id.is_empty(), "sbatch printed no job id");
    Ok(id)
}

/// Write the sbatch files of `g` (planned in `out`, `cells` cells, named `name`) into `out` and
/// submit the array (after the training job if any), then the collect job after it.
fn submit<G: Grid>(
    g: &G,
    name: &str,
    out: &Path,
    cells: usize,
    o: &SlurmOptions,
) -> Result<Submitted> {
    let exe = std::env::current_exe().context("locating the epsim executable")?;
    let cwd = std::env::current_dir().context("reading the working directory")?;
    let out = std::path::absolute(out).context("resolving the output directory")?;
    std::fs::create_dir_all(out.join("slurm"))?;
    let kind = g.kind();
    let (array, collect, train) =
        sbatch_files(kind, name, &exe, &g.task_args()?, (&cwd, &out), cells, o);
    let a_path = out.join(format!("{kind}.sbatch"));
    let c_path = out.join("collect.sbatch");
    write_atomic(&a_path, array.as_bytes())?;
    write_atomic(&c_path, collect.as_bytes())?;
    let a_str = a_path.to_str().context("non-UTF-8 path")?;
    let (train, array) = match train {
        Some(t) => {
            let t_path = out.join("train.sbatch");
            write_atomic(&t_path, t.as_bytes())?;
            let id = sbatch(&[t_path.to_str().context("non-UTF-8 path")?])?;
            let array = sbatch(&[&format!("--dependency=afterok:{id}"), a_str])?;
            (Some(id), array)
        }
        None => (None, sbatch(&[a_str])?),
    };
    let collect = sbatch(&[
        &format!("--dependency=afterany:{array}"),
        c_path.to_str().context("non-UTF-8 path")?,
    ])?;
    Ok(Submitted {
        train,
        array,
        collect,
        sbatch: a_path,
    })
}

/// `--slurm`: plan `g` (named `name`), submit it, print the job ids and how to watch them; with
/// `wait`, block until the jobs are over and fail naming every cell not done.
pub fn run<G: Grid>(g: &G, name: &str, o: &SlurmOptions, wait_for_it: bool) -> Result<()> {
    let (out, cells) = write_plan(g)?;
    // A results file from an earlier collection is written again by this one's collect job.
    let results = out.join("results.jsonl");
    if results.exists() {
        std::fs::remove_file(&results)
            .with_context(|| format!("removing the old {}", results.display()))?;
    }
    let s = submit(g, name, &out, cells, o)?;
    if let Some(t) = &s.train {
        println!(
            "training job {t} ({}): the array starts once it succeeded",
            out.join("train.sbatch").display()
        );
    }
    println!(
        "submitted {cells} cells: array job {} ({}), collect job {}\nwatch: squeue -j {},{}   \
         logs: {}",
        s.array,
        s.sbatch.display(),
        s.collect,
        s.array,
        s.collect,
        out.join("slurm").display()
    );
    if !wait_for_it {
        return Ok(());
    }
    let mut jobs = vec![s.array.as_str(), s.collect.as_str()];
    jobs.extend(s.train.as_deref());
    wait(&jobs)?;
    let (missing, failed) = pending(&out, cells);
    ensure!(
        missing.is_empty(),
        "{} of {cells} cells are not done: missing {missing:?}, failed {:?} (see {}); resubmit \
         with sbatch --array=... {}",
        missing.len(),
        failed.iter().map(|f| f.0).collect::<Vec<_>>(),
        out.join("failed").display(),
        s.sbatch.display()
    );
    check_collected(&results, &out.join("slurm"), &s.collect)?;
    println!("all {cells} cells done; results: {}", results.display());
    Ok(())
}

/// Block until none of `jobs` is pending or running.
/// A job whose dependency failed (e.g. the array after a failed training job) never starts: it is
/// cancelled, with the others, and the wait fails naming it.
pub fn wait(jobs: &[&str]) -> Result<()> {
    let ids = jobs.join(",");
    loop {
        let o = Command::new("squeue")
            .args(["-h", "-o", "%i %r", "-j", &ids])
            .output()
            .context("running squeue")?;
        // squeue refuses ids it has already purged: those jobs are over.
        if !o.status.success() || o.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&o.stdout);
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("DependencyNeverSatisfied"))
        {
            let _ = Command::new("scancel").args(jobs).status();
            bail!(
                "job {} can never start: a job it depends on failed (its log is in the slurm/ \
                 folder); the jobs {ids} were cancelled",
                line.split_whitespace().next().unwrap_or("?")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Fail unless `results` was written by the collect job (whose log is named).
fn check_collected(results: &Path, logs: &Path, collect: &str) -> Result<()> {
    if !results.exists() {
        bail!(
            "the collect job {collect} wrote no {} (see {})",
            results.display(),
            logs.join(format!("collect_{collect}.log")).display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_device_reaches_every_task_and_the_collect_job() {
        let mut o = SlurmOptions {
            partition: None,
            time: None,
            cpus_per_task: Some(4),
            gres: None,
            max_parallel: None,
            points_per_task: 2,
            device: Some("gpu:1".into()),
            train_first: false,
        };
        let (p, out) = (Path::new("/e/epsim"), Path::new("/o"));
        let args = ["study".to_string(), "/my study.toml".into()];
        let at = (Path::new("/w"), out);
        let (array, collect, train) = sbatch_files("study", "t", p, &args, at, 5, &o);
        assert!(train.is_none());
        assert!(array.contains("#SBATCH --array=0-2\n"), "{array}");
        assert!(
            array.contains("exec /e/epsim --device gpu:1 study '/my study.toml' --run-cell"),
            "{array}"
        );
        assert!(
            collect.contains("exec /e/epsim --device gpu:1 study '/my study.toml' --collect"),
            "{collect}"
        );
        // Without the flag the tasks use the study file's device.
        o.device = None;
        let (array, _, _) = sbatch_files("study", "t", p, &args, at, 5, &o);
        assert!(!array.contains("--device"), "{array}");
        // Tasks run where the grid was submitted (relative paths in it stay right).
        assert!(array.contains("#SBATCH --chdir=/w\n"), "{array}");
    }

    #[test]
    fn a_study_with_models_to_train_gets_a_training_job() {
        let o = SlurmOptions {
            cpus_per_task: Some(8),
            gres: Some("gpu:1".into()),
            points_per_task: 1,
            train_first: true,
            ..Default::default()
        };
        let (p, out) = (Path::new("/e/epsim"), Path::new("/o"));
        let args = ["study".to_string(), "/s.toml".into()];
        let (array, _, train) = sbatch_files("study", "t", p, &args, (Path::new("/w"), out), 3, &o);
        let train = train.expect("a training job");
        assert!(
            train.ends_with("exec /e/epsim study /s.toml --train-only\n"),
            "{train}"
        );
        for line in [
            "#SBATCH --cpus-per-task=8\n",
            "#SBATCH --gres=gpu:1\n",
            "train_%j.log",
        ] {
            assert!(train.contains(line), "{line}: {train}");
        }
        assert!(array.contains("--run-cell"), "{array}");
    }
}
