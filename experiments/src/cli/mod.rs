//! The `epsim` command line: argument types (clap derive), global set-up (logging, thread pool)
//! and dispatch to library functions. `main.rs` only calls [`main_with`].
//!
//! To add a subcommand: add a variant to [`Command`] with its `Args` struct and a match arm in
//! [`run`] that calls a library function.

pub mod args;
pub mod attack;
pub mod cost;
pub mod data;
pub mod eval;
pub mod hw;
pub mod index;
pub mod report;
pub mod study;
pub mod sweep;
pub mod train;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use args::DATA_SPEC_HELP;

/// epsim: energy-based networks trained with Equilibrium Propagation, and the analog hardware
/// they run on.
#[derive(Debug, Parser)]
#[command(
    name = "epsim",
    version,
    about = "Equilibrium Propagation networks and the analog hardware they run on",
    long_about = "epsim trains energy-based neural networks with Equilibrium Propagation, \
                  simulates them on models of analog hardware (crossbars of physical devices, \
                  analog or spiking neurons), and measures their robustness.\n\n\
                  Every random choice derives from --seed: the same seed gives the same result \
                  whatever --threads is.",
    after_long_help = DATA_SPEC_HELP,
    propagate_version = true
)]
pub struct Cli {
    /// Master seed of every random stream (data order, augmentation, init, noise, ...); default 0,
    /// or the config's seed for `train`.
    #[arg(long, global = true, value_name = "U64")]
    pub seed: Option<u64>,
    /// Worker threads (rayon global pool); default: all cores. Results do not depend on it.
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,
    /// More log output (-v: debug, -vv: trace). EPSIM_LOG (e.g. EPSIM_LOG=experiments=debug)
    /// overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors; no progress bars.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Compute device: cpu (default), gpu (the first GPU adapter, discrete GPUs first) or gpu:N
    /// (wgpu on Vulkan; the adapter in use is named on stderr). Used by the commands that compute —
    /// train and smoke, eval, settle, attack, robustness, sweep, study, netlist check --realize —
    /// and, for train and study, over the file's `device`; data, corrupt, report, compile and
    /// export accept and ignore it. On compile, export and sweep any other value is the device
    /// preset (as --preset). The GPU's convolutions: EPSIM_GPU_CONV=auto (default: Winograd
    /// F(2×2) on 3x3 stride-1 layers with ≥ 32 channels in and out, direct elsewhere), direct,
    /// winograd2 or winograd4 (4× fewer multiplies, but outside the 1e-4 CPU parity on trained
    /// max-pooling nets).
    #[arg(long, global = true, value_name = "cpu|gpu[:N]")]
    pub device: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect datasets: summary statistics, preview grids.
    #[command(subcommand, after_long_help = DATA_SPEC_HELP)]
    Data(data::DataCommand),
    /// Train a model from a TOML config (checkpoint every epoch, exact --resume).
    Train(train::TrainArgs),
    /// Evaluate a model by its free phase; --per-step gives accuracy vs step with a plot.
    #[command(after_long_help = DATA_SPEC_HELP)]
    Eval(eval::EvalArgs),
    /// Run the free phase on given inputs and dump every layer's state (cross-checks with other
    /// implementations).
    Settle(eval::SettleArgs),
    /// The quick-start smoke run: data summaries, a short EP training, reload and evaluation.
    Smoke(train::SmokeArgs),
    /// Attack a model at several strengths; appends one JSON line per strength to results.jsonl.
    #[command(after_long_help = DATA_SPEC_HELP)]
    Attack(attack::AttackArgs),
    /// Run a robustness suite (attacks × strengths, corruptions × severities): results.jsonl,
    /// report.md with tables and sanity checks.
    #[command(after_long_help = DATA_SPEC_HELP)]
    Robustness(attack::RobustnessArgs),
    /// Sweep one device parameter: a robustness suite on digital and at every level × substrate
    /// seed; results.jsonl, sweep.md (mean ± std), accuracy-vs-level plots.
    #[command(after_long_help = DATA_SPEC_HELP)]
    Sweep(sweep::SweepArgs),
    /// Write CIFAR-10-C style corrupted copies of a dataset (CIFAR-10 binary files, or with
    /// --format npy the released CIFAR-10-C layout).
    #[command(after_long_help = DATA_SPEC_HELP)]
    Corrupt(attack::CorruptArgs),
    /// Run a whole study from a TOML file (models × substrates × seeds × protocols × attacks and
    /// corruptions) as resumable cells; results.jsonl, report.md with the summary table, plots.
    #[command(after_long_help = DATA_SPEC_HELP)]
    Study(study::StudyArgs),
    /// Merge results.jsonl files of several runs into side-by-side tables (one per attack, models
    /// as rows, strengths as columns; corruptions), plots per attack and sanity checks.
    Report(report::ReportArgs),
    /// Netlists: validate a file.
    #[command(subcommand)]
    Netlist(hw::NetlistCommand),
    /// Compile a model and a device preset into a netlist (JSON).
    Compile(hw::CompileArgs),
    /// Energy, latency and area per inference of a model on a device preset, counted from a run
    /// (DAC / array / ADC / neurons / pulses).
    Cost(cost::CostArgs),
    /// Export chip programming targets: manifest.json + per-tile conductances (µS) as .npy.
    Export(hw::ExportArgs),
}

/// Set up logging on stderr: level from -v/--quiet, overridden by `EPSIM_LOG` (env-filter syntax).
pub fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let level = if quiet {
        "error"
    } else {
        match verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    let filter = EnvFilter::try_from_env("EPSIM_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(verbose > 0)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .try_init();
}

/// Build the global rayon pool with `threads` workers (all cores if `None` or 0).
pub fn init_threads(threads: Option<usize>) -> Result<()> {
    let n = threads.unwrap_or(0);
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
    {
        // A second command in the same process (tests, embedding) finds the pool built: fine
        // unless it asks for a different size.
        if n != 0 && rayon::current_num_threads() != n {
            return Err(anyhow::Error::new(e).context(format!(
                "cannot build the thread pool with {n} threads (it already has {})",
                rayon::current_num_threads()
            )));
        }
    }
    tracing::debug!(threads = rayon::current_num_threads(), "thread pool ready");
    Ok(())
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    init_logging(cli.verbose, cli.quiet);
    crate::progress::set_quiet(cli.quiet);
    // A Slurm task uses the CPUs it was given unless --threads says otherwise.
    let slurm_cpus = std::env::var("SLURM_CPUS_PER_TASK")
        .ok()
        .and_then(|v| v.trim().parse().ok());
    init_threads(cli.threads.or(slurm_cpus))?;
    let seed = cli.seed.unwrap_or(0);
    let takes_preset = matches!(
        cli.command,
        Command::Compile(_) | Command::Export(_) | Command::Sweep(_) | Command::Cost(_)
    );
    let flag = args::DeviceFlag::parse(cli.device.as_deref(), takes_preset)?;
    let device = flag.device();
    match cli.command {
        Command::Data(data::DataCommand::Info(a)) => data::info(&a),
        Command::Data(data::DataCommand::Preview(a)) => data::preview(&a, seed),
        Command::Train(a) => train::train(&a, cli.seed, flag.compute),
        Command::Eval(a) => crate::with_backend!(device, be => eval::eval(be, &a, seed)),
        Command::Settle(a) => crate::with_backend!(device, be => eval::settle(be, &a)),
        Command::Smoke(a) => crate::with_backend!(device, be => train::smoke(be, &a, cli.seed)),
        Command::Attack(a) => crate::with_backend!(device, be => attack::attack(be, &a, seed)),
        Command::Corrupt(a) => attack::corrupt(&a, seed),
        Command::Robustness(a) => {
            crate::with_backend!(device, be => attack::robustness(be, &a, seed))
        }
        Command::Report(a) => report::report(&a),
        Command::Study(a) => study::study(&a, flag.compute),
        Command::Sweep(a) => {
            let preset = flag.preset(a.preset.as_deref())?;
            sweep::sweep(&a, preset, seed, flag.compute)
        }
        Command::Netlist(hw::NetlistCommand::Check(a)) => hw::check(&a, seed, device),
        Command::Compile(a) => hw::compile(&a, flag.preset(a.preset.as_deref())?),
        Command::Export(a) => hw::export(&a, flag.preset(a.preset.as_deref())?),
        Command::Cost(a) => {
            let preset = flag.preset(a.preset.as_deref())?;
            crate::with_backend!(device, be => cost::cost(be, &a, preset, seed))
        }
    }
}

/// Print to stdout; a closed pipe (`epsim ... | head`) is not an error.
pub fn print_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to stdout")
        }
        _ => Ok(()),
    }
}

/// A command line that did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// The arguments did not parse (exit code 2), or `--help`/`--version` was asked for (0).
    Usage(clap::Error),
    /// The command ran and failed (exit code 1).
    Run(anyhow::Error),
}

impl Failure {
    /// The process exit code this failure ends with.
    pub fn code(&self) -> i32 {
        match self {
            Failure::Usage(e) => e.exit_code(),
            Failure::Run(_) => 1,
        }
    }

    /// The message printed on stderr: clap's usage message, or `error: ...` followed by one
    /// `caused by:` line per underlying cause.
    pub fn message(&self) -> String {
        match self {
            Failure::Usage(e) => e.render().to_string(),
            Failure::Run(e) => {
                let mut m = format!("error: {e}\n");
                for cause in e.chain().skip(1) {
                    m.push_str(&format!("  caused by: {cause}\n"));
                }
                m
            }
        }
    }
}

/// Parse `args` (the program name first) and run them.
pub fn try_main<I, T>(args: I) -> Result<(), Failure>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::try_parse_from(args).map_err(Failure::Usage)?;
    run(cli).map_err(Failure::Run)
}

/// Parse the process arguments, run, and turn an error into `error: ...` on stderr and exit
/// code 1 (usage errors: clap's message and exit code 2).
pub fn main_with<I, T>(args: I) -> std::process::ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    // A bug that panics should still not print a backtrace at the user.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error (a bug in epsim): {info}");
    }));
    match try_main(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => e.exit(),
        Err(f @ Failure::Run(_)) => {
            eprint!("{}", f.message());
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap's own consistency checks over every subcommand (unique argument ids across flattened
    /// groups, valid defaults, conflicts naming existing arguments).
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
