//! `epsim study STUDY.toml`: a whole robustness study from one file — models × substrates × seeds
//! × protocols × attacks and corruptions — as resumable cells, then results.jsonl, report.md and
//! plots; or one step of the index contract (`--plan`, `--count`, `--run-cell`, `--collect`), or
//! the whole study as a Slurm job array (`--slurm`). The work is in [`crate::study::cells`],
//! [`crate::study::index`] and [`crate::study::slurm`].

use std::path::PathBuf;

use anyhow::{Result, ensure};
use clap::Args;

use crate::device::Device;
use crate::study::cells::{StudyOptions, run_study};
use crate::study::index;
use crate::study::slurm::{self, SlurmOptions};
use crate::study::spec::StudySpec;

/// Arguments of `epsim study`.
#[derive(Debug, Args)]
pub struct StudyArgs {
    /// Study file (TOML): name, data, subset, seeds, device, [[model]] name/checkpoint/train/
    /// substrates/set/tile/t_predict/t_attack, and [suite] as for `epsim robustness` (protocols,
    /// [[suite.attack]], [suite.corruptions]). Example: configs/studies/quickstart.toml.
    #[arg(value_name = "STUDY.toml")]
    pub study: PathBuf,
    /// Continue an interrupted study: cells already written are kept (the plan must be the same).
    #[arg(long)]
    pub resume: bool,
    /// Run only these cells (indices of plan.jsonl, comma-separated); the report is written once
    /// every cell is done.
    #[arg(long, value_delimiter = ',', value_name = "I,J,..")]
    pub only: Vec<usize>,
    /// Write the manifest only (plan.jsonl: cell i = line i; plan.json: the study file's hash);
    /// a manifest of another study in the output directory is refused.
    #[arg(long, conflicts_with_all = ["count", "run_cell", "collect", "slurm"])]
    pub plan: bool,
    /// Print the number of array tasks (cells, or cells / --points-per-task rounded up).
    #[arg(long, conflicts_with_all = ["run_cell", "collect", "slurm"])]
    pub count: bool,
    /// Run the cells of one array task (planned with --plan): the index from --index, else from
    /// SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX, PBS_ARRAY_INDEX, SGE_TASK_ID or LSB_JOBINDEX.
    /// A cell already done is skipped; a failed one is named in failed/<i>.txt.
    #[arg(long, conflicts_with_all = ["collect", "slurm"])]
    pub run_cell: bool,
    /// The array task's index (with --run-cell).
    #[arg(long, value_name = "I", requires = "run_cell")]
    pub index: Option<usize>,
    /// Subtracted from the task index (1 for SGE and LSF, which count from 1).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub index_offset: usize,
    /// Cells per array task: task t runs cells t·K .. t·K + K − 1.
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub points_per_task: usize,
    /// Merge the cells into results.jsonl and report.md; fails naming every missing or failed
    /// cell.
    #[arg(long, conflicts_with = "slurm")]
    pub collect: bool,
    /// With --collect: write the report of the cells done so far (headed by the ones still
    /// missing) instead of failing; results.jsonl then holds the finished cells only.
    #[arg(long, requires = "collect")]
    pub partial: bool,
    /// Plan, then submit the cells as a Slurm job array (sbatch file kept beside the results as
    /// study.sbatch) and a collect job after it (--dependency=afterany); prints the job ids.
    #[arg(long)]
    pub slurm: bool,
    /// Slurm partition.
    #[arg(long, requires = "slurm", value_name = "P")]
    pub partition: Option<String>,
    /// Slurm time limit per task (MM, HH:MM:SS, D-HH).
    #[arg(long, requires = "slurm", value_name = "T")]
    pub time: Option<String>,
    /// CPUs per task (each task's threads: epsim reads SLURM_CPUS_PER_TASK).
    #[arg(long, requires = "slurm", value_name = "C")]
    pub cpus_per_task: Option<usize>,
    /// Generic resources per task, e.g. gpu:1.
    #[arg(long, requires = "slurm", value_name = "G")]
    pub gres: Option<String>,
    /// At most K array tasks at once.
    #[arg(long, requires = "slurm", value_name = "K")]
    pub max_parallel: Option<usize>,
    /// Wait for the array and the collect job; fail if any cell failed.
    #[arg(long, requires = "slurm")]
    pub wait: bool,
    /// Train the study's models whose checkpoints are missing (from their `train` configs, into
    /// <out_dir>/models/<name>/, resumably) and stop: the first job of `--slurm` when there is
    /// something to train.
    #[arg(long, conflicts_with_all = ["plan", "count", "run_cell", "collect", "slurm"])]
    pub train_only: bool,
}

/// `epsim study` on `device` (default: the study's `device`, else the CPU): run, then print the
/// summary table and where the report is.
pub fn study(a: &StudyArgs, device: Option<Device>) -> Result<()> {
    let spec = StudySpec::read(&a.study)?;
    let device_flag = device;
    let device = Device::pick(device, spec.device);
    ensure!(a.points_per_task >= 1, "--points-per-task must be ≥ 1");
    if a.plan || a.count {
        let (out, cells) = index::write_plan(&spec, &a.study)?;
        if a.count {
            println!("{}", index::task_count(cells.len(), a.points_per_task));
        } else {
            println!("{} cells planned in {}", cells.len(), out.display());
        }
        return Ok(());
    }
    if a.run_cell {
        let (_, cells) = index::read_plan(&spec, &a.study)?;
        let task = index::task_index(a.index, a.index_offset)?;
        let todo = index::task_cells(task, a.points_per_task, cells.len())?;
        return crate::with_backend!(device, be => index::run_cells(be, &spec, &a.study, &todo));
    }
    if a.collect {
        let r = crate::with_backend!(device, be => index::collect_study(be, &spec, &a.study, a.partial))?;
        return summarize(&r, &index::read_plan(&spec, &a.study)?.0);
    }
    if a.slurm {
        return submit(a, &spec, device_flag);
    }
    if a.train_only {
        let n = crate::with_backend!(device, be => crate::study::cells::train_models(be, &spec))?;
        println!("{n} model(s) ready for study {}", spec.name);
        return Ok(());
    }
    let opts = StudyOptions {
        resume: a.resume,
        only: a.only.clone(),
        no_collect: false,
    };
    let o = crate::with_backend!(device, be => run_study(be, &spec, &a.study, &opts))?;
    if let Some(r) = &o.report {
        summarize(r, &o.out_dir)?;
        println!("{} cells ({} run now)", o.cells, o.ran);
    }
    Ok(())
}

fn summarize(r: &crate::report::Written, out: &std::path::Path) -> Result<()> {
    if let Some(summary) = r.markdown.split("\n## ").find(|s| s.starts_with("Summary")) {
        println!("\n## {}", summary.trim_end());
    }
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    println!("\nreport: {}", out.join("report.md").display());
    Ok(())
}

/// `--slurm`: plan, submit, and with `--wait` wait and check every cell.
fn submit(a: &StudyArgs, spec: &StudySpec, device: Option<Device>) -> Result<()> {
    // Models to train are trained by a job of their own, before the array (which depends on it).
    for m in spec.models.iter().filter(|m| !m.checkpoint.exists()) {
        anyhow::ensure!(
            m.train.is_some(),
            "model {}: its checkpoint {} does not exist and it has no `train` config",
            m.name,
            m.checkpoint.display()
        );
    }
    let train_first = spec.models.iter().any(|m| !m.checkpoint.exists());
    let (out, cells) = index::write_plan(spec, &a.study)?;
    let results = out.join("results.jsonl");
    if results.exists() {
        std::fs::remove_file(&results)?;
    }
    let o = SlurmOptions {
        partition: a.partition.clone(),
        time: a.time.clone(),
        cpus_per_task: a.cpus_per_task,
        gres: a.gres.clone(),
        max_parallel: a.max_parallel,
        points_per_task: a.points_per_task,
        device: device.map(|d| d.to_string()),
        train_first,
    };
    let s = slurm::submit(&spec.name, &a.study, &out, cells.len(), &o)?;
    if let Some(t) = &s.train {
        println!(
            "training job {t} ({}): the array starts once it succeeded",
            out.join("train.sbatch").display()
        );
    }
    println!(
        "submitted {} cells: array job {} ({}), collect job {}\nwatch: squeue -j {},{}   logs: \
         {}",
        cells.len(),
        s.array,
        s.sbatch.display(),
        s.collect,
        s.array,
        s.collect,
        out.join("slurm").display()
    );
    if !a.wait {
        return Ok(());
    }
    let mut jobs = vec![s.array.as_str(), s.collect.as_str()];
    jobs.extend(s.train.as_deref());
    slurm::wait(&jobs)?;
    let (missing, failed) = index::pending(&out, cells.len());
    ensure!(
        missing.is_empty(),
        "{} of {} cells are not done: missing {missing:?}, failed {:?} (see {}); resubmit with \
         sbatch --array=... {}",
        missing.len(),
        cells.len(),
        failed.iter().map(|f| f.0).collect::<Vec<_>>(),
        out.join("failed").display(),
        s.sbatch.display()
    );
    slurm::check_collected(&results, &out.join("slurm"), &s.collect)?;
    println!(
        "all {} cells done; results: {}",
        cells.len(),
        results.display()
    );
    Ok(())
}
