//! A planned study as a Slurm job array: the `.sbatch` files written beside the results (kept, so
//! a user can edit and resubmit them: `sbatch --array=3,17 study.sbatch`), the array and its
//! `collect` job (`--dependency=afterany`) submitted with `sbatch`, and an optional wait for both.
//! Each task runs `epsim study STUDY --run-cell --points-per-task K` (the index contract of
//! [`super::index`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use super::index::task_count;
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
}

/// The submitted jobs.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The array job's id.
    pub array: String,
    /// The collect job's id.
    pub collect: String,
    /// The array's sbatch file.
    pub sbatch: PathBuf,
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The sbatch files of a study with `cells` cells in `out`, running `exe` on `study` (absolute
/// paths): `(array, collect)`.
pub fn sbatch_files(
    name: &str,
    exe: &Path,
    study: &Path,
    out: &Path,
    cells: usize,
    o: &SlurmOptions,
) -> (String, String) {
    let k = o.points_per_task.max(1);
    let tasks = task_count(cells, k);
    let dev = o
        .device
        .as_ref()
        .map_or(String::new(), |d| format!(" --device {}", quote(d)));
    let logs = out.join("slurm");
    let mut head = String::from("#!/bin/bash\n");
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
         resubmitted:\n#   sbatch --array=3,17 {}\nexec {}{dev} study {} --run-cell --points-per-task {k}\n",
        out.join("study.sbatch").display(),
        quote(&exe.display().to_string()),
        quote(&study.display().to_string())
    );
    let mut collect = common;
    collect += &format!("#SBATCH --job-name=epsim-{name}-collect\n");
    collect += &format!("#SBATCH --output={}/collect_%j.log\n", logs.display());
    collect += &format!(
        "exec {}{dev} study {} --collect\n",
        quote(&exe.display().to_string()),
        quote(&study.display().to_string())
    );
    (array, collect)
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

/// Write the sbatch files into `out` and submit the array, then the collect job after it.
pub fn submit(
    name: &str,
    study: &Path,
    out: &Path,
    cells: usize,
    o: &SlurmOptions,
) -> Result<Submitted> {
    let exe = std::env::current_exe().context("locating the epsim executable")?;
    let study =
        std::fs::canonicalize(study).with_context(|| format!("resolving {}", study.display()))?;
    let out = std::path::absolute(out).context("resolving the output directory")?;
    std::fs::create_dir_all(out.join("slurm"))?;
    let (array, collect) = sbatch_files(name, &exe, &study, &out, cells, o);
    let a_path = out.join("study.sbatch");
    let c_path = out.join("collect.sbatch");
    write_atomic(&a_path, array.as_bytes())?;
    write_atomic(&c_path, collect.as_bytes())?;
    let array = sbatch(&[a_path.to_str().context("non-UTF-8 path")?])?;
    let collect = sbatch(&[
        &format!("--dependency=afterany:{array}"),
        c_path.to_str().context("non-UTF-8 path")?,
    ])?;
    Ok(Submitted {
        array,
        collect,
        sbatch: a_path,
    })
}

/// Block until none of `jobs` is pending or running.
pub fn wait(jobs: &[&str]) -> Result<()> {
    let ids = jobs.join(",");
    loop {
        let o = Command::new("squeue")
            .args(["-h", "-o", "%i", "-j", &ids])
            .output()
            .context("running squeue")?;
        // squeue refuses ids it has already purged: those jobs are over.
        if !o.status.success() || o.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Fail unless `results` was written by the collect job (whose log is named).
pub fn check_collected(results: &Path, logs: &Path, collect: &str) -> Result<()> {
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
        };
        let (p, s, out) = (Path::new("/e/epsim"), Path::new("/s.toml"), Path::new("/o"));
        let (array, collect) = sbatch_files("t", p, s, out, 5, &o);
        assert!(array.contains("#SBATCH --array=0-2\n"), "{array}");
        assert!(
            array.contains("exec '/e/epsim' --device 'gpu:1' study '/s.toml' --run-cell"),
            "{array}"
        );
        assert!(
            collect.contains("exec '/e/epsim' --device 'gpu:1' study '/s.toml' --collect"),
            "{collect}"
        );
        // Without the flag the tasks use the study file's device.
        o.device = None;
        let (array, _) = sbatch_files("t", p, s, out, 5, &o);
        assert!(!array.contains("--device"), "{array}");
    }
}
