//! The index contract's flags (`--plan`, `--count`, `--run-cell`, `--collect`, `--slurm` and
//! Slurm's options), shared by `epsim study` and `epsim sweep`, and the step each one runs on a
//! [`Grid`] (the work is in [`crate::study::index`] and [`crate::study::slurm`]).

use anyhow::{Result, ensure};
use clap::Args;

use crate::device::Device;
use crate::report::Written;
use crate::study::index::{self, Grid};
use crate::study::slurm::{self, SlurmOptions};

/// The index contract of schedulers, and Slurm job arrays.
#[derive(Debug, Clone, Args)]
pub struct IndexArgs {
    /// Write the manifest only (plan.jsonl: cell i = line i; plan.json: the hash of the study
    /// file or of the sweep's arguments and suite); another grid's manifest in the output
    /// directory is refused.
    #[arg(long, conflicts_with_all = ["count", "run_cell", "collect", "slurm"])]
    pub plan: bool,
    /// Print the number of array tasks (cells, or cells / --points-per-task rounded up); plans
    /// first when there is no manifest.
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
    /// Merge the cells into results.jsonl and the report; fails naming every missing or failed
    /// cell.
    #[arg(long, conflicts_with = "slurm")]
    pub collect: bool,
    /// Plan, then submit the cells as a Slurm job array (sbatch file kept beside the results as
    /// study.sbatch or sweep.sbatch) and a collect job after it (--dependency=afterany); prints
    /// the job ids.
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
}

/// What [`step`] did.
pub enum Stepped {
    /// No index-contract flag was given: run the grid locally.
    Local,
    /// A step that leaves nothing to print (plan, count, run-cell, Slurm).
    Done,
    /// `--collect`: the report written.
    Collected(Written),
}

/// Run the step of the index contract `a` asks for on `g` (named `name` in Slurm's job names),
/// computing on `device`; `partial`: a collection may leave cells out; `train_first`: a Slurm
/// submission runs a training job before the array.
pub fn step<G: Grid>(
    g: &G,
    name: &str,
    a: &IndexArgs,
    device: Option<Device>,
    partial: bool,
    train_first: bool,
) -> Result<Stepped> {
    ensure!(a.points_per_task >= 1, "--points-per-task must be ≥ 1");
    let compute = device.unwrap_or_default();
    if a.plan || a.count {
        let (out, cells) = index::write_plan(g)?;
        if a.count {
            println!("{}", index::task_count(cells, a.points_per_task));
        } else {
            println!("{cells} cells planned in {}", out.display());
        }
        return Ok(Stepped::Done);
    }
    if a.run_cell {
        let (_, cells) = index::read_plan(g)?;
        let task = index::task_index(a.index, a.index_offset)?;
        let todo = index::task_cells(task, a.points_per_task, cells)?;
        crate::with_backend!(compute, be => index::run_cells(be, g, &todo))?;
        return Ok(Stepped::Done);
    }
    if a.collect {
        let w = crate::with_backend!(compute, be => index::collect(be, g, partial))?;
        return Ok(Stepped::Collected(w));
    }
    if a.slurm {
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
        slurm::run(g, name, &o, a.wait)?;
        return Ok(Stepped::Done);
    }
    Ok(Stepped::Local)
}
