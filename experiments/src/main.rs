//! The `epsim` command-line tool; everything lives in [`experiments::cli`].

fn main() -> std::process::ExitCode {
    // Large tensors are allocated at every step: keep freed blocks for reuse (see sim::alloc).
    // EPSIM_SYSTEM_ALLOC=1 leaves the C allocator as it is.
    if std::env::var_os("EPSIM_SYSTEM_ALLOC").is_none() {
        sim::alloc::keep_freed_memory();
    }
    experiments::cli::main_with(std::env::args_os())
}
