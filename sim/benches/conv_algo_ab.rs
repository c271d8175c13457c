//! Interleaved A/B timing of the conv algorithms on the CIFAR-10 EP-CNN layers (batch 128):
//! `cargo bench -p sim --bench conv_algo_ab [-- ROUNDS [FILTER]]`.
//!
//! Each round times one im2col call and one Winograd call of the same op back to back (the order
//! alternating between rounds), so that both see the same background load; it prints the median
//! time of each and the median of the per-round ratios im2col / Winograd (the speed-up). Meant for
//! a shared machine, where sequential benchmark groups see different loads. Thread count: rayon's
//! global pool.

use std::time::Instant;

use sim::Conv2dParams;
use sim::cpu::{ConvAlgo, conv2d_input_grad_with, conv2d_with};
use sim::gradcheck::test_tensor;

const BATCH: usize = 128;

/// (name, C, O, H=W, padding), 3x3 stride 1.
const LAYERS: &[(&str, usize, usize, usize, usize)] = &[
    ("conv2_128to256_16px", 128, 256, 16, 1),
    ("conv3_256to512_8px", 256, 512, 8, 1),
    ("conv4_512to512_4px_pad0", 512, 512, 4, 0),
];

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn time(f: &mut dyn FnMut()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e3
}

fn main() {
    if std::env::var_os("EPSIM_SYSTEM_ALLOC").is_none() {
        sim::alloc::keep_freed_memory();
    }
    // `cargo bench` passes `--bench`; take the first two plain arguments.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let rounds: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(9);
    let filter = args.get(1).cloned().unwrap_or_default();
    println!(
        "rounds {rounds}, threads {}; times in ms (median), speed-up = median of per-round im2col/winograd",
        rayon::current_num_threads()
    );
    println!(
        "{:<26} {:<11} {:>9} {:>9} {:>8}  eff. GFLOP/s im2col/wino",
        "layer", "op", "im2col", "winograd", "speedup"
    );
    for &(name, c, o, hw, pad) in LAYERS {
        if !name.contains(&filter) {
            continue;
        }
        let p = Conv2dParams::new(1, pad);
        let ho = hw + 2 * pad - 2;
        let x = test_tensor(&[BATCH, c, hw, hw], 1, 1.0);
        let w = test_tensor(&[o, c, 3, 3], 2, 0.05);
        let b = test_tensor(&[o], 3, 0.1);
        let gy = test_tensor(&[BATCH, o, ho, ho], 4, 1.0);
        let gflop = 2.0 * (BATCH * o * ho * ho * c * 9) as f64 * 1e-9;
        for op in ["forward", "input_grad"] {
            let run = |algo: ConvAlgo| {
                if op == "forward" {
                    std::hint::black_box(conv2d_with(algo, &x, &w, Some(&b), p).unwrap());
                } else {
                    std::hint::black_box(
                        conv2d_input_grad_with(algo, &gy, &w, (hw, hw), p).unwrap(),
                    );
                }
            };
            // Warm-up (scratch buffers, page faults) of both.
            run(ConvAlgo::Im2col);
            run(ConvAlgo::Winograd);
            let (mut ti, mut tw, mut ratio) = (vec![], vec![], vec![]);
            for r in 0..rounds {
                let (a, bb) = if r % 2 == 0 {
                    let a = time(&mut || run(ConvAlgo::Im2col));
                    (a, time(&mut || run(ConvAlgo::Winograd)))
                } else {
                    let bb = time(&mut || run(ConvAlgo::Winograd));
                    (time(&mut || run(ConvAlgo::Im2col)), bb)
                };
                ti.push(a);
                tw.push(bb);
                ratio.push(a / bb);
            }
            let (mi, mw, mr) = (median(&mut ti), median(&mut tw), median(&mut ratio));
            println!(
                "{name:<26} {op:<11} {mi:>9.1} {mw:>9.1} {mr:>7.2}x  {:.0}/{:.0}",
                gflop / mi * 1e3,
                gflop / mw * 1e3
            );
        }
    }
}
