//! Load-robust companion of `benches/ops.rs`: the speed of each EP-CNN conv op (batch 128) as a
//! fraction of SGEMM speed, measured by *interleaving* the two in one process (0.4 s of conv, then
//! 0.4 s of sgemm 512x512x2304, five times; median of the five ratios). On a shared 2-vCPU VM,
//! whose speed drifts by up to 2x over seconds, this ratio is much steadier than comparing divan
//! medians taken minutes apart.
//!
//! `cargo run --release -p sim --example conv_vs_sgemm` (thread count: `RAYON_NUM_THREADS`).
//! Optional argument: only ops whose name contains it (`fwd`, `igrad`, `wgrad`).

use std::time::Instant;

use sim::Conv2dParams;
use sim::cpu::{Gemm, conv2d, conv2d_input_grad, conv2d_weight_grad, sgemm};
use sim::gradcheck::test_tensor;

/// Run `f` repeatedly for at least `min_s` seconds; (elapsed seconds, calls).
fn timed(mut f: impl FnMut(), min_s: f64) -> (f64, usize) {
    let t0 = Instant::now();
    let mut n = 0;
    while t0.elapsed().as_secs_f64() < min_s {
        f();
        n += 1;
    }
    (t0.elapsed().as_secs_f64(), n)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    v[v.len() / 2]
}

fn main() {
    let filter = std::env::args().nth(1).unwrap_or_default();
    let (m, n, k) = (512, 512, 2304);
    let a = test_tensor(&[m * k], 1, 1.0);
    let bm = test_tensor(&[k * n], 2, 1.0);
    let mut cm = vec![0.0f32; m * n];
    let g = Gemm {
        m,
        n,
        k,
        trans_a: false,
        trans_b: false,
    };
    let gemm_flops = 2.0 * (m * n * k) as f64;
    let mut reference = || {
        sgemm(
            g,
            1.0,
            a.as_slice().unwrap(),
            bm.as_slice().unwrap(),
            0.0,
            &mut cm,
        )
        .unwrap()
    };
    println!(
        "threads: {}; reference: sgemm {m}x{n}x{k}",
        rayon::current_num_threads()
    );
    println!("| layer | op | conv GFLOP/s | sgemm GFLOP/s | ratio (median of 5) |");
    println!("|---|---|---|---|---|");
    let layers = [
        ("conv1 3->128 @32 p1", 3usize, 128usize, 32usize, 1usize),
        ("conv2 128->256 @16 p1", 128, 256, 16, 1),
        ("conv3 256->512 @8 p1", 256, 512, 8, 1),
        ("conv4 512->512 @4 p0", 512, 512, 4, 0),
    ];
    for (name, c, o, hw, pad) in layers {
        let batch = 128;
        let p = Conv2dParams::new(1, pad);
        let ho = hw + 2 * pad - 2;
        let x = test_tensor(&[batch, c, hw, hw], 1, 1.0);
        let w = test_tensor(&[o, c, 3, 3], 2, 0.05);
        let b = test_tensor(&[o], 3, 0.1);
        let gy = test_tensor(&[batch, o, ho, ho], 4, 1.0);
        let flops = 2.0 * (batch * o * ho * ho * c * 9) as f64;
        for op in ["fwd", "igrad", "wgrad"] {
            if !op.contains(filter.as_str()) {
                continue;
            }
            let (mut ratios, mut conv_g, mut ref_g) = (vec![], vec![], vec![]);
            for _ in 0..5 {
                let (t, calls) = timed(
                    || match op {
                        "fwd" => drop(conv2d(&x, &w, Some(&b), p).unwrap()),
                        "igrad" => drop(conv2d_input_grad(&gy, &w, (hw, hw), p).unwrap()),
                        _ => drop(conv2d_weight_grad(&x, &gy, (3, 3), p).unwrap()),
                    },
                    0.4,
                );
                let (tr, calls_r) = timed(&mut reference, 0.4);
                let cg = flops * calls as f64 / t / 1e9;
                let rg = gemm_flops * calls_r as f64 / tr / 1e9;
                ratios.push(cg / rg);
                conv_g.push(cg);
                ref_g.push(rg);
            }
            println!(
                "| {name} | {op} | {:.0} | {:.0} | {:.2} |",
                median(conv_g),
                median(ref_g),
                median(ratios)
            );
        }
    }
}
