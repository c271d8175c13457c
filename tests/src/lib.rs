//! # epsim-tests — cross-crate integration tests
//!
//! Role: parity across realizations, end-to-end CLI runs, bad-input suites. The tests live in
//! `tests/tests/`; this library holds shared fixtures.
//!
//! Dependencies: every other crate.
