//! The `epsim` command line: argument types (clap derive), global set-up (logging, thread pool)
//! and dispatch to library functions. `main.rs` only calls [`main_with`].
//!
//! To add a subcommand: add a variant to [`Command`] with its `Args` struct and a match arm in
//! [`run`] that calls a library function.

use crate::data::{self, DatasetSpec};
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

const DATA_SPEC_HELP: &str = "\
DATASET SPECS
  KIND:PATH[:SPLIT]             cifar10:/data/cifar-10-batches-bin:test
                                cifar100:/data/cifar-100-binary.tar.gz
                                mnist:/data/mnist:train
                                folder:/data/cifar10-jpeg.zip:test
  fashion-mnist[:DIR][:SPLIT]   DIR defaults to $EPSIM_FASHION_MNIST_DIR, else
                                /usr/share/datasets/fashion-mnist
                                (apt-get install -y dataset-fashion-mnist)
  PATH[:SPLIT]                  kind detected from the path

  KIND: cifar10, cifar100 (official binary: one .bin file, the extracted directory or the
        .tar.gz), fashion-mnist (alias fmnist), mnist (directory of the four IDX files, raw or
        .gz), folder (directory or zip of SPLIT/CLASS/*.jpg|png; classes sorted by name unless a
        batches.meta.txt or classes.txt gives the order).
  SPLIT: train or test (folders: any split folder name); without it every split found is loaded.
  Detection: IDX files -> mnist (fashion-mnist if the path says \"fashion\"); data_batch_*.bin,
        test_batch.bin or cifar-10-batches-bin/ -> cifar10; train.bin, test.bin or
        cifar-100-binary/ -> cifar100; other directories and zips -> folder; .tar.gz -> cifar100
        if its name contains 100, else cifar10; other files -> CIFAR binary by record size.";

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
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect datasets: summary statistics, preview grids.
    #[command(subcommand, after_long_help = DATA_SPEC_HELP)]
    Data(DataCommand),
    /// Train a model from a TOML config (checkpoint every epoch, exact --resume).
    Train(crate::cli_ep::TrainArgs),
    /// Evaluate a model by its free phase; --per-step gives accuracy vs step with a plot.
    #[command(after_long_help = DATA_SPEC_HELP)]
    Eval(crate::cli_ep::EvalArgs),
    /// Run the free phase on given inputs and dump every layer's state (cross-checks with other
    /// implementations).
    Settle(crate::cli_ep::SettleArgs),
    /// The quick-start smoke run: data summaries, a short EP training, reload and evaluation.
    Smoke(crate::cli_ep::SmokeArgs),
    /// Attack a model at several strengths; appends one JSON line per strength to results.jsonl.
    #[command(after_long_help = DATA_SPEC_HELP)]
    Attack(crate::cli_rob::AttackArgs),
    /// Run a robustness suite (attacks × strengths, corruptions × severities): results.jsonl,
    /// report.md with tables and sanity checks.
    #[command(after_long_help = DATA_SPEC_HELP)]
    Robustness(crate::cli_rob::RobustnessArgs),
    /// Sweep one device parameter: a robustness suite on digital and at every level × substrate
    /// seed; results.jsonl, sweep.md (mean ± std), accuracy-vs-level plots.
    #[command(after_long_help = DATA_SPEC_HELP)]
    Sweep(crate::cli_sweep::SweepArgs),
    /// Write CIFAR-10-C style corrupted copies of a dataset (official binary layout).
    #[command(after_long_help = DATA_SPEC_HELP)]
    Corrupt(crate::cli_rob::CorruptArgs),
    /// Merge results.jsonl files of several runs into side-by-side tables (one per attack, models
    /// as rows, strengths as columns; corruptions), plots per attack and sanity checks.
    Report(crate::report::ReportArgs),
    /// Netlists: validate a file.
    #[command(subcommand)]
    Netlist(crate::cli_hw::NetlistCommand),
    /// Compile a model and a device preset into a netlist (JSON).
    Compile(crate::cli_hw::CompileArgs),
    /// Export chip programming targets: manifest.json + per-tile conductances (µS) as .npy.
    Export(crate::cli_hw::ExportArgs),
}

/// `epsim data ...`
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Print source, counts per split, image shape, classes with per-class counts, and the
    /// per-channel mean/std of pixels scaled to [0, 1].
    #[command(after_long_help = DATA_SPEC_HELP)]
    Info(InfoArgs),
    /// Write a PNG grid of images of a split.
    #[command(after_long_help = DATA_SPEC_HELP)]
    Preview(PreviewArgs),
}

/// Arguments of `epsim data info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Dataset spec, e.g. cifar10:/data/test_batch.bin or fashion-mnist (see --help).
    #[arg(value_name = "SPEC")]
    pub spec: DatasetSpec,
    /// Print JSON (one object per split) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `epsim data preview`.
#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// Dataset spec (see --help). With several splits, the first is drawn unless SPEC names one.
    #[arg(value_name = "SPEC")]
    pub spec: DatasetSpec,
    /// Output PNG file.
    #[arg(short, long, value_name = "PNG")]
    pub output: PathBuf,
    /// Grid rows.
    #[arg(long, default_value_t = 8)]
    pub rows: usize,
    /// Grid columns.
    #[arg(long, default_value_t = 8)]
    pub cols: usize,
    /// Index of the first image.
    #[arg(long, default_value_t = 0)]
    pub start: usize,
    /// Pixel magnification.
    #[arg(long, default_value_t = 2)]
    pub scale: usize,
    /// Draw a random sample (from --seed) instead of consecutive images.
    #[arg(long)]
    pub shuffle: bool,
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
    data::set_quiet(cli.quiet);
    init_threads(cli.threads)?;
    match cli.command {
        Command::Data(DataCommand::Info(a)) => data_info(&a),
        Command::Data(DataCommand::Preview(a)) => data_preview(&a, cli.seed.unwrap_or(0)),
        Command::Train(a) => crate::cli_ep::train(&a, cli.seed),
        Command::Eval(a) if a.substrate != "digital" => {
            crate::cli_hw::eval_substrate(&a, cli.seed.unwrap_or(0))
        }
        Command::Eval(a) => {
            anyhow::ensure!(a.set.is_empty(), "--set applies to netlist substrates only");
            crate::cli_ep::eval(&a)
        }
        Command::Settle(a) => crate::cli_ep::settle(&a),
        Command::Smoke(a) => crate::cli_ep::smoke(&a, cli.seed),
        Command::Attack(a) => crate::cli_rob::attack(&a, cli.seed.unwrap_or(0)),
        Command::Corrupt(a) => crate::cli_rob::corrupt(&a, cli.seed.unwrap_or(0)),
        Command::Robustness(a) => crate::cli_rob::robustness(&a, cli.seed.unwrap_or(0)),
        Command::Report(a) => crate::report::run(&a),
        Command::Sweep(a) => crate::cli_sweep::sweep(&a, cli.seed.unwrap_or(0)),
        Command::Netlist(crate::cli_hw::NetlistCommand::Check(a)) => {
            crate::cli_hw::check(&a, cli.seed.unwrap_or(0))
        }
        Command::Compile(a) => crate::cli_hw::compile(&a),
        Command::Export(a) => crate::cli_hw::export(&a),
    }
}

fn load(spec: &DatasetSpec) -> Result<Vec<data::Dataset>> {
    let t = std::time::Instant::now();
    let ds = spec
        .load()
        .with_context(|| format!("cannot load dataset '{spec}'"))?;
    tracing::info!(
        "loaded {} ({} images) in {:.2?}",
        spec,
        ds.iter().map(|d| d.len()).sum::<usize>(),
        t.elapsed()
    );
    Ok(ds)
}

/// `epsim data info`.
pub fn data_info(a: &InfoArgs) -> Result<()> {
    let ds = load(&a.spec)?;
    let sums: Vec<_> = ds.iter().map(data::report::summarize).collect();
    let text = if a.json {
        serde_json::to_string_pretty(&sums)? + "\n"
    } else {
        data::report::format_text(&sums)
    };
    print_stdout(&text)
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

/// `epsim data preview`.
pub fn data_preview(a: &PreviewArgs, seed: u64) -> Result<()> {
    let ds = load(&a.spec)?;
    let d = ds.first().context("no split loaded")?;
    let d = if a.shuffle {
        let perm = sim::Stream::new(seed, "data.preview").permutation(d.len());
        d.select(&perm[..d.len().min(a.start + a.rows * a.cols)])
    } else {
        d.clone()
    };
    let n = data::report::write_grid(&d, a.start, a.rows, a.cols, a.scale, &a.output)?;
    tracing::info!(
        "wrote {} images of {} {} to {}",
        n,
        d.name,
        d.split,
        a.output.display()
    );
    Ok(())
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
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}
