//! The op conformance suite (`sim::conformance`) on the CPU backend: every op check that any
//! backend must pass. CPU-only properties (thread-count independence, layouts, the Winograd and
//! vectorized fast paths, the f64 accumulation) are in the other test files.

sim::conformance_suite!(cpu, sim::Cpu);
