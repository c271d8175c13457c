//! The `epsim` command-line tool; everything lives in [`experiments::cli`].

fn main() -> std::process::ExitCode {
    experiments::cli::main_with(std::env::args_os())
}
