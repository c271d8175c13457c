//! The backend conformance suite: every check of the op set written once, generic over
//! [`Backend`], and run on each backend by [`conformance_suite!`](crate::conformance_suite).
//!
//! Each case is a `pub fn name<B: Backend>(be: &B)` that uploads host inputs with `be.upload`, runs
//! the backend's ops, downloads the results with `be.download` and compares them with naive host
//! references ([`refs`]), hand-computed values, finite-difference gradients taken *through the
//! backend* ([`crate::gradcheck`] on a function that uploads, runs the op and downloads), adjoint
//! identities, and the errors bad shapes and parameters must give. A case panics on the first
//! failure, with the backend's own message when an op returns an error (e.g. an op a backend does
//! not implement).
//!
//! Instantiation (the pattern of burn's `testgen_all!` and candle's `test_device!`: the bodies once,
//! one `#[test]` per body and backend):
//!
//! ```text
//! sim::conformance_suite!(cpu, sim::Cpu);
//! ```
//!
//! expands to `mod cpu { mod elementwise { #[test] fn map_values_and_gradients() { .. } .. } .. }`,
//! each test evaluating the backend expression anew (use a function returning a cached clone for
//! a backend that is costly to open). The list of cases lives in one macro
//! (`__sim_conformance_cases!`); [`CASES`] is the same list as strings, and a unit test checks it
//! against the `pub fn`s of the case modules, so a body cannot be written and left out.
//!
//! Tolerances are those of any IEEE f32 backend: exact where the op is exact (data movement,
//! pooling, hand values on dyadic numbers), a few ulps for element maps with transcendental
//! functions, and a bound proportional to Σ|terms| for sums and products (any accumulation order).
//! Properties of one implementation (the CPU's bitwise thread-count independence, its f64
//! accumulation, its layouts and fast paths) stay in that backend's own tests.
//!
//! Layout: [`refs`] (host references and comparison helpers), then one module per op family:
//! [`layout`], [`elementwise`], [`reduce`], [`pool`], [`softmax`], [`norm`], [`conv`], [`linear`],
//! [`random`], [`fused`] (the fused conv-synapse reads), [`optim`] (the optimizer update),
//! [`xbar`] (the crossbar reads of analog substrates).

pub mod conv;
pub mod elementwise;
pub mod fused;
pub mod layout;
pub mod linear;
pub mod norm;
pub mod optim;
pub mod pool;
pub mod random;
pub mod reduce;
pub mod refs;
pub mod softmax;
pub mod xbar;

/// Instantiate the op conformance suite for one backend: `sim::conformance_suite!(name, expr)`
/// expands to `mod name` holding one `#[test]` per case (grouped in a module per op family), each
/// building the backend with `expr` (evaluated in the invoking module's scope) and running the case
/// body of [`crate::conformance`] on it.
#[macro_export]
macro_rules! conformance_suite {
    ($name:ident, $backend:expr $(,)?) => {
        $crate::__sim_conformance_cases!(__sim_conformance_tests, [$name, $backend]);
    };
}

/// Every case of the suite for backend type `$backend`, as an array of `("family::case", body)`
/// with `body: fn(&$backend)`: for harnesses that run the cases themselves (e.g. checking that
/// each case fails on a deliberately broken backend).
#[macro_export]
macro_rules! conformance_cases {
    ($backend:ty) => {
        $crate::__sim_conformance_cases!(__sim_conformance_table, [$backend])
    };
}

/// Expand the case list into an array of (name, body) for one backend type.
#[doc(hidden)]
#[macro_export]
macro_rules! __sim_conformance_table {
    ([$backend:ty] $($family:ident { $($case:ident),* $(,)? })*) => {
        [$($(
            (
                concat!(stringify!($family), "::", stringify!($case)),
                $crate::conformance::$family::$case::<$backend> as fn(&$backend),
            )
        ),*),*]
    };
}

/// The one list of conformance cases, handed to `$callback` after `$args`.
#[doc(hidden)]
#[macro_export]
macro_rules! __sim_conformance_cases {
    ($callback:ident, $args:tt) => {
        $crate::$callback! {
            $args
            layout {
                upload_download_roundtrip,
                zeros_and_full,
                reshape_keeps_data_and_checks_size,
                permute_matches_ndarray,
                permute_errors,
                concat_and_slice_match_ndarray,
                concat_slice_adjoint_identity,
                concat_slice_errors,
                take_rows_matches_ndarray_and_errors,
                concurrent_use_from_threads,
            }
            elementwise {
                map_values_and_gradients,
                map_hand_values,
                map_non_finite_inputs_follow_the_scalar_definition,
                map_errors,
                add_map_equals_map_of_add,
                add_map_errors,
                arithmetic_parity_with_ndarray,
                arithmetic_shape_errors,
                mul_gradcheck,
                add_along_parity_and_bias_gradient,
                add_along_empty_tensors,
                add_along_errors,
            }
            reduce {
                reductions_hand_values,
                reductions_accurate_on_large_input,
                sum_except_parity,
                dot_and_sum_all_gradchecks,
                row_max_abs_diff_matches_host_and_errors,
            }
            pool {
                max_pool_parity_with_naive_reference,
                max_pool_hand_example_ties_and_nan,
                max_pool_2x2_wide_planes_follow_the_documented_rule,
                max_pool_gradcheck_via_unpool,
                max_unpool_scatter_adds_on_overlap,
                avg_pool_parity_hand_value_and_gradcheck,
                pooling_adjoint_identities_on_random_shapes,
                pool_errors,
                gather_is_the_adjoint_of_unpool_and_its_gradient_checks,
                gather_bad_shapes_are_errors,
            }
            softmax {
                softmax_hand_values_and_stability,
                softmax_rows_sum_to_one_on_random_shapes,
                softmax_family_gradchecks,
                cross_entropy_hand_value_gradient_and_errors,
                softmax_errors,
            }
            norm {
                layer_norm_hand_value_parity_and_stats,
                layer_norm_rows_have_zero_mean_unit_variance,
                layer_norm_gradchecks,
                layer_norm_errors,
                batch_norm_train_parity_nchw_and_nc,
                batch_norm_eval_hand_value,
                batch_norm_grad_gradchecks,
                batch_norm_errors,
            }
            conv {
                conv2d_matches_naive,
                conv2d_input_grad_matches_naive,
                conv2d_weight_grad_matches_naive,
                conv2d_known_values,
                conv2d_gradients_by_finite_differences,
                gradient_check_catches_a_wrong_adjoint,
                conv2d_adjoint_identities,
                conv2d_and_adjoints_match_naive_on_random_shapes,
                conv2d_bad_shapes_are_errors,
                conv2d_input_grad_bad_shapes_are_errors,
                conv2d_weight_grad_bad_shapes_are_errors,
                conv2d_empty_batch_and_channels,
            }
            linear {
                linear_and_adjoints_match_naive_for_any_leading_axes,
                linear_gradients_by_finite_differences,
                linear_bad_shapes_are_errors,
                matmul_matches_naive_for_every_transpose,
                matmul_matches_naive_on_random_shapes,
                matmul_gradients_by_finite_differences,
                matmul_bad_shapes_are_errors,
            }
            random {
                randn_and_rand_draw_the_stream,
            }
            fused {
                conv2d_pooled_equals_conv_then_pool,
                conv2d_pooled_input_grad_equals_unpool_then_adjoint,
                fused_read_errors,
            }
            optim {
                optim_update_follows_the_rules_over_two_steps,
                optim_update_shape_errors,
            }
            xbar {
                dense_read_matches_the_definition,
                conv_reads_are_the_dense_reads_of_their_vectors,
                prepared_noisy_reads_are_the_plain_reads,
                noisy_reads_have_the_cpus_statistics,
                xbar_read_errors,
            }
        }
    };
}

/// Expand the case list into `mod $name { mod $family { #[test] fn $case() .. } }`.
#[doc(hidden)]
#[macro_export]
macro_rules! __sim_conformance_tests {
    ([$name:ident, $backend:expr] $($family:ident { $($case:ident),* $(,)? })*) => {
        /// The op conformance suite (`sim::conformance`) on one backend.
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

/// Expand the case list into a slice of `"family::case"` names.
#[doc(hidden)]
#[macro_export]
macro_rules! __sim_conformance_names {
    ([] $($family:ident { $($case:ident),* $(,)? })*) => {
        &[$($(concat!(stringify!($family), "::", stringify!($case))),*),*]
    };
}

/// Every case of the suite as `"family::case"`, in the order the tests are generated.
pub const CASES: &[&str] = crate::__sim_conformance_cases!(__sim_conformance_names, []);

#[cfg(test)]
mod tests {
    /// Source of every case module, to check the case list against the bodies.
    const SOURCES: &[(&str, &str)] = &[
        ("conv", include_str!("conv.rs")),
        ("elementwise", include_str!("elementwise.rs")),
        ("fused", include_str!("fused.rs")),
        ("layout", include_str!("layout.rs")),
        ("linear", include_str!("linear.rs")),
        ("norm", include_str!("norm.rs")),
        ("optim", include_str!("optim.rs")),
        ("pool", include_str!("pool.rs")),
        ("random", include_str!("random.rs")),
        ("reduce", include_str!("reduce.rs")),
        ("softmax", include_str!("softmax.rs")),
        ("xbar", include_str!("xbar.rs")),
    ];

    #[test]
    fn every_case_body_is_listed_once_and_every_listed_case_exists() {
        let mut bodies = Vec::new();
        for (family, src) in SOURCES {
            for line in src.lines() {
                if let Some(rest) = line.strip_prefix("pub fn ")
                    && let Some((name, sig)) = rest.split_once('<')
                    && sig.starts_with("B: Backend>(be: &B)")
                {
                    bodies.push(format!("{family}::{name}"));
                }
            }
        }
        let mut listed: Vec<String> = super::CASES.iter().map(|s| s.to_string()).collect();
        let n = listed.len();
        listed.sort();
        listed.dedup();
        assert_eq!(listed.len(), n, "a case is listed twice");
        bodies.sort();
        assert_eq!(
            listed, bodies,
            "the case list of __sim_conformance_cases! differs from the case bodies"
        );
    }
}
