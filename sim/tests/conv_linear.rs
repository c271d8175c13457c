//! CPU-only tests of the convolutions and products: the `sgemm` kernel (not a backend op) against
//! a naive f64 product, operands in non-standard ndarray layouts, bit-for-bit independence of the
//! rayon thread count, and the `Backend` impl delegating to the free functions. The op semantics
//! every backend shares (parity with naive loops, gradients, adjoint identities, bad shapes) are in
//! `sim::conformance::{conv, linear}`, run on the CPU by `tests/conformance.rs`.

use sim::conformance::conv::{CASES, Case, case_tensors};
use sim::conformance::refs::{bits, naive_gemm};
use sim::cpu::{
    ConvAlgo, Gemm, conv2d, conv2d_input_grad, conv2d_input_grad_with, conv2d_weight_grad,
    conv2d_with, linear, linear_input_grad, linear_weight_grad, matmul, sgemm,
};
use sim::gradcheck::test_tensor;
use sim::{Backend, Cpu, Error};

// ---------------------------------------------------------------------------------------------
// sgemm

#[test]
fn sgemm_matches_naive_for_every_transpose_and_alpha_beta() {
    for &(m, n, k) in &[
        (1, 1, 1),
        (3, 5, 7),
        (17, 33, 9),
        (64, 48, 130),
        (5, 1, 300),
    ] {
        for ta in [false, true] {
            for tb in [false, true] {
                let a = test_tensor(&[m * k], 11, 1.0);
                let b = test_tensor(&[k * n], 12, 1.0);
                let c0 = test_tensor(&[m * n], 13, 1.0);
                let (alpha, beta) = (0.75f32, -0.5f32);
                let mut c = c0.as_slice().unwrap().to_vec();
                let g = Gemm {
                    m,
                    n,
                    k,
                    trans_a: ta,
                    trans_b: tb,
                };
                sgemm(
                    g,
                    alpha,
                    a.as_slice().unwrap(),
                    b.as_slice().unwrap(),
                    beta,
                    &mut c,
                )
                .unwrap();
                let (r, abs) = naive_gemm(
                    (m, n, k),
                    ta,
                    tb,
                    a.as_slice().unwrap(),
                    b.as_slice().unwrap(),
                );
                for i in 0..m * n {
                    let want = alpha as f64 * r[i] + beta as f64 * c0.as_slice().unwrap()[i] as f64;
                    let tol = 1e-5 * (abs[i] + c0.as_slice().unwrap()[i].abs() as f64) + 1e-6;
                    assert!(
                        (c[i] as f64 - want).abs() <= tol,
                        "{g:?}: c[{i}] = {} vs {want}",
                        c[i]
                    );
                }
            }
        }
    }
}

#[test]
fn sgemm_beta_zero_ignores_nan_in_c_and_k_zero_scales() {
    let a = vec![1.0f32; 6];
    let b = vec![2.0f32; 6];
    let mut c = vec![f32::NAN; 4];
    let g = Gemm {
        m: 2,
        n: 2,
        k: 3,
        trans_a: false,
        trans_b: false,
    };
    sgemm(g, 1.0, &a, &b, 0.0, &mut c).unwrap();
    assert_eq!(c, vec![6.0; 4]);
    let mut c = vec![3.0f32; 4];
    let g0 = Gemm { k: 0, ..g };
    sgemm(g0, 1.0, &[], &[], 0.5, &mut c).unwrap();
    assert_eq!(c, vec![1.5; 4]);
}

#[test]
fn sgemm_short_slices_are_errors() {
    let g = Gemm {
        m: 4,
        n: 3,
        k: 2,
        trans_a: false,
        trans_b: true,
    };
    let mut c = vec![0.0f32; 12];
    assert!(matches!(
        sgemm(g, 1.0, &[0.0; 7], &[0.0; 6], 0.0, &mut c),
        Err(Error::Shape { op: "sgemm", .. })
    ));
    assert!(sgemm(g, 1.0, &[0.0; 8], &[0.0; 5], 0.0, &mut c).is_err());
    assert!(sgemm(g, 1.0, &[0.0; 8], &[0.0; 6], 0.0, &mut c[..11]).is_err());
    let huge = Gemm {
        m: usize::MAX,
        n: 2,
        k: 2,
        trans_a: false,
        trans_b: false,
    };
    assert!(sgemm(huge, 1.0, &[], &[], 0.0, &mut c).is_err());
}

// ---------------------------------------------------------------------------------------------
// layouts

#[test]
fn conv2d_accepts_non_standard_layout() {
    let (x, w, b, p) = case_tensors(&CASES[0], 7);
    // Same values, stored transposed-then-permuted back (non-standard strides).
    let xt = x.clone().reversed_axes();
    let xt = xt.as_standard_layout().into_owned().reversed_axes();
    assert!(xt.as_slice().is_none());
    assert_eq!(
        conv2d(&xt, &w, Some(&b), p).unwrap(),
        conv2d(&x, &w, Some(&b), p).unwrap()
    );
}

// ---------------------------------------------------------------------------------------------
// thread-count independence

fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn results_do_not_depend_on_thread_count() {
    // Shapes large enough that `gemm` really splits work among threads, and that take both the
    // parallel-chunk and the serial-chunk paths of the convolutions.
    let conv_cases: &[Case] = &[
        (16, 32, 8, 8, 64, 3, 3, (1, 1), (1, 1)), // 2 forward chunks: serial path, pool GEMM
        (64, 16, 8, 8, 48, 3, 3, (1, 1), (1, 1)), // 8 chunks: parallel path
        (64, 64, 4, 4, 96, 3, 3, (1, 1), (0, 0)), // 2x2 output
        (24, 8, 9, 9, 16, 3, 3, (2, 2), (1, 1)),
    ];
    let run = || {
        let mut outs = vec![];
        for (ci, case) in conv_cases.iter().enumerate() {
            let (x, w, b, p) = case_tensors(case, 1000 + ci as u64);
            let y = conv2d(&x, &w, Some(&b), p).unwrap();
            let g = test_tensor(y.shape(), 1100 + ci as u64, 1.0);
            outs.push(bits(&y));
            outs.push(bits(
                &conv2d_input_grad(&g, &w, (x.shape()[2], x.shape()[3]), p).unwrap(),
            ));
            outs.push(bits(
                &conv2d_weight_grad(&x, &g, (w.shape()[2], w.shape()[3]), p).unwrap(),
            ));
        }
        // Winograd forward and input adjoint, forced: one chunk, several chunks with a partial
        // last one (9 tiles per sample → 57 samples per chunk), 5 chunks of 8 samples (chunks in
        // parallel with 1 thread, stages in parallel with 2 and 3), 13 chunks (chunks in
        // parallel for 1–3 threads), a 2x2 output, odd sizes.
        let wino_cases: &[Case] = &[
            (16, 32, 8, 8, 64, 3, 3, (1, 1), (1, 1)),
            (70, 8, 6, 5, 12, 3, 3, (1, 1), (1, 0)),
            (40, 6, 16, 16, 8, 3, 3, (1, 1), (1, 1)),
            (104, 3, 16, 16, 4, 3, 3, (1, 1), (1, 1)),
            (40, 48, 4, 4, 40, 3, 3, (1, 1), (0, 0)),
            (6, 20, 7, 9, 24, 3, 3, (1, 1), (2, 1)),
        ];
        for (ci, case) in wino_cases.iter().enumerate() {
            let (x, w, b, p) = case_tensors(case, 1200 + ci as u64);
            let y = conv2d_with(ConvAlgo::Winograd, &x, &w, Some(&b), p).unwrap();
            let g = test_tensor(y.shape(), 1300 + ci as u64, 1.0);
            let hw = (x.shape()[2], x.shape()[3]);
            outs.push(bits(&y));
            outs.push(bits(
                &conv2d_input_grad_with(ConvAlgo::Winograd, &g, &w, hw, p).unwrap(),
            ));
        }
        let a = test_tensor(&[300, 700], 1, 1.0);
        let b = test_tensor(&[500, 700], 2, 1.0);
        let mut c = vec![0.0f32; 300 * 500];
        let g = Gemm {
            m: 300,
            n: 500,
            k: 700,
            trans_a: false,
            trans_b: true,
        };
        sgemm(
            g,
            1.0,
            a.as_slice().unwrap(),
            b.as_slice().unwrap(),
            0.0,
            &mut c,
        )
        .unwrap();
        outs.push(c.iter().map(|v| v.to_bits()).collect());
        let x = test_tensor(&[128, 784], 3, 1.0);
        let w = test_tensor(&[500, 784], 4, 0.1);
        let bias = test_tensor(&[500], 5, 1.0);
        let y = linear(&x, &w, Some(&bias)).unwrap();
        outs.push(bits(&y));
        outs.push(bits(&linear_input_grad(&y, &w).unwrap()));
        outs.push(bits(&linear_weight_grad(&x, &y).unwrap()));
        let qa = test_tensor(&[3, 64, 96], 6, 1.0);
        let qb = test_tensor(&[3, 80, 96], 7, 1.0);
        outs.push(bits(&matmul(&qa, &qb, false, true).unwrap()));
        let qa = test_tensor(&[16, 32, 48], 8, 1.0);
        let qb = test_tensor(&[16, 32, 40], 9, 1.0);
        outs.push(bits(&matmul(&qa, &qb, true, false).unwrap()));
        outs
    };
    let one = in_pool(1, run);
    let two = in_pool(2, run);
    let three = in_pool(3, run);
    for (i, ((a, b), c)) in one.iter().zip(&two).zip(&three).enumerate() {
        assert!(a == b, "output {i} differs between 1 and 2 threads");
        assert!(a == c, "output {i} differs between 1 and 3 threads");
    }
}

#[test]
fn backend_trait_delegates() {
    let cpu = Cpu;
    let (x, w, b, p) = case_tensors(&CASES[2], 3);
    assert_eq!(
        cpu.conv2d(&x, &w, Some(&b), p).unwrap(),
        conv2d(&x, &w, Some(&b), p).unwrap()
    );
    let xl = test_tensor(&[4, 6], 1, 1.0);
    let wl = test_tensor(&[3, 6], 2, 1.0);
    assert_eq!(
        cpu.linear(&xl, &wl, None).unwrap(),
        linear(&xl, &wl, None).unwrap()
    );
}
