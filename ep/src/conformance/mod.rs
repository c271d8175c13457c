//! The EP conformance suite: the checks of the EP dynamics, BPTT, the GDU property and learning,
//! written once over [`sim::Backend`] and run on each backend by
//! [`conformance_suite!`](crate::conformance_suite), plus parity checks between two backends run
//! by [`parity_suite!`](crate::parity_suite).
//!
//! Single-backend cases are `pub fn name<B: Backend>(be: &B)` ([`dynamics`], [`learning`]): inputs
//! and parameters are built on the host, uploaded with `be.upload`, and results downloaded with
//! `be.download` and compared with finite differences through the backend, the tape's reverse
//! mode on the same backend, and each other (GDU: symmetric EP against BPTT). Two-backend cases
//! are `pub fn name<A: Backend, B: Backend>(a: &A, b: &B)` ([`parity`]): the same network
//! (`EpNet::from_host` of one set of host parameters) on both, compared state by state.
//!
//! ```text
//! ep::conformance_suite!(cpu, sim::Cpu);
//! ep::parity_suite!(cpu_vs_gpu, sim::Cpu, gpu());
//! ```
//!
//! Each expands to a module of `#[test]`s, one per case, evaluating the backend expressions anew
//! in every test. The case lists live in one macro each; [`CASES`] and [`PARITY_CASES`] are the
//! same lists as strings, checked by a unit test against the `pub fn`s of the case modules.

pub mod dynamics;
pub mod learning;
pub mod parity;
pub mod settle;

use sim::{Backend, Tensor};

/// Instantiate the EP conformance suite for one backend: `ep::conformance_suite!(name, expr)`
/// expands to `mod name` holding one `#[test]` per case of [`crate::conformance`] (grouped by
/// module), each building the backend with `expr`.
#[macro_export]
macro_rules! conformance_suite {
    ($name:ident, $backend:expr $(,)?) => {
        $crate::__ep_conformance_cases!(__ep_conformance_tests, [$name, $backend]);
    };
}

/// Instantiate the parity cases for a pair of backends: `ep::parity_suite!(name, a, b)` expands
/// to `mod name` holding one `#[test]` per case of [`crate::conformance::parity`], each comparing
/// backend `b` against backend `a`.
#[macro_export]
macro_rules! parity_suite {
    ($name:ident, $a:expr, $b:expr $(,)?) => {
        $crate::__ep_parity_cases!(__ep_parity_tests, [$name, $a, $b]);
    };
}

/// The one list of single-backend EP cases, handed to `$callback` after `$args`.
#[doc(hidden)]
#[macro_export]
macro_rules! __ep_conformance_cases {
    ($callback:ident, $args:tt) => {
        $crate::$callback! {
            $args
            dynamics {
                equations_of_motion_are_the_gradient_of_phi,
                phi_param_grads_match_finite_differences,
                bptt_matches_finite_differences,
                bptt_matches_the_tape,
                gdu_symmetric_ep_matches_bptt,
                divergence_names_step_and_layer,
            }
            learning {
                ep_mlp_learns_a_separable_task,
                ep_cnn_with_softmax_readout_learns_and_is_deterministic,
            }
            settle {
                settle_plain_is_relax_bit_for_bit,
                settle_anderson_reaches_the_plain_fixed_point_in_fewer_steps,
                settle_gdu_holds_at_the_anderson_equilibrium,
                settle_gradients_are_the_equilibrium_gradient,
                settle_a_sample_does_not_depend_on_its_batch,
            }
        }
    };
}

/// The one list of two-backend parity cases, handed to `$callback` after `$args`.
#[doc(hidden)]
#[macro_export]
macro_rules! __ep_parity_cases {
    ($callback:ident, $args:tt) => {
        $crate::$callback! {
            $args
            parity {
                parity_ep_mlp,
                parity_fmnist_ep_cnn,
                parity_cifar10_paper_ep_cnn,
            }
        }
    };
}

/// Expand a single-backend case list into tests.
#[doc(hidden)]
#[macro_export]
macro_rules! __ep_conformance_tests {
    ([$name:ident, $backend:expr] $($family:ident { $($case:ident),* $(,)? })*) => {
        /// The EP conformance suite (`ep::conformance`) on one backend.
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(
                mod $family {
                    #[allow(unused_imports)]
                    use super::*;
                    $(
                        #[test]
                        fn $case() {
                            let be = $backend;
                            $crate::conformance::$family::$case(&be);
                        }
                    )*
                }
            )*
        }
    };
}

/// Expand a two-backend case list into tests.
#[doc(hidden)]
#[macro_export]
macro_rules! __ep_parity_tests {
    ([$name:ident, $a:expr, $b:expr] $($family:ident { $($case:ident),* $(,)? })*) => {
        /// The EP parity cases (`ep::conformance::parity`) on one pair of backends.
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(
                mod $family {
                    #[allow(unused_imports)]
                    use super::*;
                    $(
                        #[test]
                        fn $case() {
                            let a = $a;
                            let b = $b;
                            $crate::conformance::$family::$case(&a, &b);
                        }
                    )*
                }
            )*
        }
    };
}

/// Expand a case list into a slice of `"family::case"` names.
#[doc(hidden)]
#[macro_export]
macro_rules! __ep_conformance_names {
    ([] $($family:ident { $($case:ident),* $(,)? })*) => {
        &[$($(concat!(stringify!($family), "::", stringify!($case))),*),*]
    };
}

/// Every single-backend case as `"family::case"`.
pub const CASES: &[&str] = crate::__ep_conformance_cases!(__ep_conformance_names, []);

/// Every parity case as `"family::case"`.
pub const PARITY_CASES: &[&str] = crate::__ep_parity_cases!(__ep_conformance_names, []);

/// Unwrap a result, panicking with the error's message (e.g. an op a backend lacks).
pub(crate) trait Must<T> {
    fn must(self) -> T;
}

impl<T> Must<T> for sim::Result<T> {
    #[track_caller]
    fn must(self) -> T {
        self.unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Upload a host tensor.
#[track_caller]
pub(crate) fn up<B: Backend>(be: &B, t: &Tensor) -> B::Tensor {
    be.upload(t).must()
}

/// Download a backend tensor.
#[track_caller]
pub(crate) fn down<B: Backend>(be: &B, t: &B::Tensor) -> Tensor {
    be.download(t).must()
}

#[cfg(test)]
mod tests {
    const SOURCES: &[(&str, &str)] = &[
        ("dynamics", include_str!("dynamics.rs")),
        ("learning", include_str!("learning.rs")),
        ("parity", include_str!("parity.rs")),
        ("settle", include_str!("settle.rs")),
    ];

    #[test]
    fn every_case_body_is_listed_once_and_every_listed_case_exists() {
        let mut bodies = Vec::new();
        for (family, src) in SOURCES {
            for line in src.lines() {
                if let Some(rest) = line.strip_prefix("pub fn ")
                    && let Some((name, sig)) = rest.split_once('<')
                    && (sig.starts_with("B: Backend>(be: &B)")
                        || sig.starts_with("A: Backend, B: Backend>(a: &A, b: &B)"))
                {
                    bodies.push(format!("{family}::{name}"));
                }
            }
        }
        let mut listed: Vec<String> = super::CASES
            .iter()
            .chain(super::PARITY_CASES)
            .map(|s| s.to_string())
            .collect();
        let n = listed.len();
        listed.sort();
        listed.dedup();
        assert_eq!(listed.len(), n, "a case is listed twice");
        bodies.sort();
        assert_eq!(listed, bodies, "the case lists differ from the case bodies");
    }
}
