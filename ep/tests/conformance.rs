//! The EP conformance suite (`ep::conformance`) on the CPU backend: the dynamics, BPTT, GDU and
//! learning checks every backend must pass. Parity between two backends
//! (`ep::conformance::parity`) runs where a second backend exists (`host-gpu/tests`).

ep::conformance_suite!(cpu, sim::Cpu);
