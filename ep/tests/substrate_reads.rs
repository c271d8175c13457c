//! The converter-bearing crossbar reads of `netlist:<preset>` against naive per-vector references:
//! a conv array's transposed read digitizes each output position's K-vector before the col2im
//! sum; noise and bound management act per conv patch and per tile; tiling is transparent when the
//! converters are; results do not depend on the thread count.

mod common;
use common::*;

use devices::{Adc, BoundManagement, Dac, NoiseManagement, Preset};
use ep::substrate::{Realized, effective_weights};
use ep::{ConvLayer, EpNet, Loss, ModelSpec, Pool, State};
use sim::netlist::TileSize;
use sim::{Act, Backend, Cpu, Stream, Tensor};

/// Input [2, 6, 6] → conv 3 (k3, p1) → conv 4 (k3, p1) → fc 5, identity neurons, no pooling: a
/// step's output of layer 1 is (forward read of x by array 0) + (transposed read of s2 by array 1).
fn spec() -> ModelSpec {
    let conv = |channels| ConvLayer {
        channels,
        kernel: 3,
        stride: 1,
        padding: 1,
        pool: Pool::Identity,
    };
    ModelSpec {
        input: [2, 6, 6],
        conv: vec![conv(3), conv(4)],
        fc: vec![5],
        act: Act::Identity,
        softmax: false,
        loss: Loss::Mse,
        t1: 3,
        t2: 1,
        input_norm: None,
    }
}

/// The spec's network with random weights and zero biases.
fn net() -> EpNet<Cpu> {
    let be = Cpu;
    let n = EpNet::init(&be, spec(), &Stream::new(2, "init"), Some(2.0)).unwrap();
    let (w, b) = n.to_host(&be).unwrap();
    let b: Vec<Tensor> = b.iter().map(|t| Tensor::zeros(t.shape())).collect();
    EpNet::from_host(&be, spec(), &w, &b).unwrap()
}

fn random(shape: &[usize], seed: u64) -> Tensor {
    let s = Stream::new(seed, "t");
    let n: usize = shape.iter().product();
    sim::tensor(shape, (0..n as u64).map(|i| s.normal(i)).collect()).unwrap()
}

/// The ideal cell with the given converters (no noise anywhere).
fn converters(dac: Dac, adc: Adc) -> Preset {
    let mut p = Preset::builtin("ideal").unwrap();
    p.dac = dac;
    p.adc = adc;
    p.validate().unwrap();
    p
}

/// A DAC of `bits` over ±1 with abs-max noise management, noise-free.
fn dac(bits: u32) -> Dac {
    Dac {
        bits,
        bound: 1.0,
        noise_std: 0.0,
        noise_management: NoiseManagement::AbsMax,
        nm_thres: 0.0,
    }
}

/// A noise-free ADC of `bits` over ±`bound`.
fn adc(bits: u32, bound: f64, bm: BoundManagement) -> Adc {
    Adc {
        bits,
        bound,
        noise_std: 0.0,
        bound_management: bm,
        ..Adc::default()
    }
}

/// The converter curves: clip to ±bound, round to the nearest of the 2^bits − 1 levels (halves
/// away from zero); as written in the devices module doc, independently of the code under test.
fn quantize(x: f64, bits: u32, bound: f64) -> f64 {
    let x = x.clamp(-bound, bound);
    let step = 2.0 * bound / ((1u64 << bits) - 2) as f64;
    (x / step).round() * step
}

/// Ranges of `len` cut every `size`.
fn ranges(len: usize, size: usize) -> Vec<(usize, usize)> {
    (0..len)
        .step_by(size)
        .map(|a| (a, (a + size).min(len)))
        .collect()
}

/// One managed read of one vector `v` on the matrix `w[out][in]` (normalized by `wmax`): per input
/// block abs-max noise management, DAC, per output tile ADC with iterative bound management up to
/// reduction `last_r` (1 = off); returns the outputs in weight units and (reads, re-reads).
#[allow(clippy::too_many_arguments)]
fn naive_read(
    v: &[f64],
    w: &dyn Fn(usize, usize) -> f64,
    n_out: usize,
    wmax: f64,
    in_blocks: &[(usize, usize)],
    out_tiles: &[(usize, usize)],
    d: (u32, f64),
    a: (u32, f64),
    last_r: u64,
) -> (Vec<f64>, u64, u64) {
    let mut out = vec![0.0; n_out];
    let (mut reads, mut rereads) = (0, 0);
    for &(lo, hi) in in_blocks {
        let alpha = v[lo..hi].iter().fold(0.0f64, |m, x| m.max(x.abs()));
        if alpha == 0.0 {
            continue;
        }
        for &(o0, o1) in out_tiles {
            let mut r = 1u64;
            loop {
                reads += 1;
                if r > 1 {
                    rereads += 1;
                }
                let xq: Vec<f64> = (lo..hi)
                    .map(|k| quantize(v[k] / (alpha * r as f64), d.0, d.1))
                    .collect();
                let ys: Vec<f64> = (o0..o1)
                    .map(|o| (lo..hi).map(|k| w(o, k) / wmax * xq[k - lo]).sum())
                    .collect();
                let sat = ys.iter().any(|y| y.abs() > a.1);
                if !sat || r >= last_r {
                    for (o, y) in (o0..o1).zip(&ys) {
                        out[o] += quantize(*y, a.0, a.1) * alpha * r as f64 * wmax;
                    }
                    break;
                }
                r *= 2;
            }
        }
    }
    (out, reads, rereads)
}

/// The layer-1 output of one step from `st` on input `x`.
fn layer1(r: &Realized<Cpu>, x: &Tensor, st: &State<Cpu>) -> Tensor {
    let q = r.query_stream(0);
    let next = r.step(&Cpu, x, st, &q, 0).unwrap();
    Cpu.download(&next.layers[0]).unwrap()
}

fn state(n: usize, s2: Tensor) -> State<Cpu> {
    State {
        layers: vec![
            Tensor::zeros(vec![n, 3, 6, 6]),
            s2,
            Tensor::zeros(vec![n, 5]),
        ],
    }
}

/// Conv patch element (c, i, j) of output position (oh, ow) in a 6x6 input with padding 1.
fn at(oh: usize, ow: usize, i: usize, j: usize) -> Option<(usize, usize)> {
    let ih = (oh + i).checked_sub(1).filter(|&v| v < 6)?;
    let iw = (ow + j).checked_sub(1).filter(|&v| v < 6)?;
    Some((ih, iw))
}

#[test]
fn transposed_conv_read_digitizes_each_position_before_col2im() {
    let net = net();
    let n = 2;
    // 5-bit DAC, 6-bit ADC over ±2: coarse enough that digitizing the sum would differ.
    let (d, a) = ((5, 1.0), (6, 2.0));
    let p = converters(dac(d.0), adc(a.0, a.1, BoundManagement::None));
    // Array 1: K = 3·9 = 27 rows, 4 columns; tiles of 10 rows × 3 columns: row tiles (sensed
    // ranges of the transposed read) 0..10, 10..20, 20..27, column blocks (its inputs) 0..3, 3..4.
    let tile = TileSize { rows: 10, cols: 3 };
    let r = Realized::new(&Cpu, &netlist(&net, &p, tile), 1).unwrap();
    let we = effective_weights(&r, &Cpu).unwrap();
    let w1 = &we[1]; // [4, 3, 3, 3]
    let wmax = w1.iter().fold(0.0f64, |m, v| m.max((*v as f64).abs()));
    let s2 = random(&[n, 4, 6, 6], 7);
    // x = 0: the forward read of array 0 reads all-zero patches, exactly zero.
    let x = Tensor::zeros(vec![n, 2, 6, 6]);
    let got = layer1(&r, &x, &state(n, s2.clone()));
    let wk = |o: usize, k: usize| w1[[o, k / 9, (k % 9) / 3, k % 3]] as f64;
    let mut want = vec![0.0f64; n * 3 * 36];
    let mut sum_then_adc = vec![0.0f64; n * 3 * 36];
    for s in 0..n {
        for oh in 0..6 {
            for ow in 0..6 {
                let v: Vec<f64> = (0..4).map(|o| s2[[s, o, oh, ow]] as f64).collect();
                // The transposed read: outputs indexed by k, inputs by o.
                let (y, _, _) = naive_read(
                    &v,
                    &|k, o| wk(o, k),
                    27,
                    wmax,
                    &ranges(4, 3),
                    &ranges(27, 10),
                    d,
                    a,
                    1,
                );
                for (k, yk) in y.iter().enumerate() {
                    let (c, i, j) = (k / 9, (k % 9) / 3, k % 3);
                    if let Some((ih, iw)) = at(oh, ow, i, j) {
                        want[((s * 3 + c) * 6 + ih) * 6 + iw] += yk;
                        // The old scheme's sum of unconverted products (for the can-fail check).
                        let exact: f64 = (0..4).map(|o| wk(o, k) * v[o]).sum();
                        sum_then_adc[((s * 3 + c) * 6 + ih) * 6 + iw] += exact;
                    }
                }
            }
        }
    }
    let mut worst = 0.0f64;
    for (g, w) in got.iter().zip(&want) {
        worst = worst.max((*g as f64 - w).abs());
    }
    assert!(worst < 1e-4, "per-position reference: max error {worst}");
    // Digitizing after the col2im sum is measurably different (the test can fail).
    let mut diff = 0.0f64;
    for (g, w) in got.iter().zip(&sum_then_adc) {
        diff = diff.max((*g as f64 - quantize(*w / wmax, a.0, a.1) * wmax).abs());
    }
    assert!(diff > 0.01, "post-sum ADC indistinguishable: {diff}");
}

#[test]
fn forward_conv_read_manages_each_patch_and_tile() {
    let net = net();
    let n = 3;
    // 6-bit DAC, 8-bit ADC over ±0.6 with iterative bound management: many patches saturate.
    let (d, a) = ((6, 1.0), (8, 0.6));
    let last_r = devices::converters::bound_management_last_reduction(1000, 0.25, d.0);
    let p = converters(dac(d.0), adc(a.0, a.1, BoundManagement::Iterative));
    // Array 0: K = 2·9 = 18 rows, 3 columns; tiles 10 rows × 2 columns: row blocks 0..10, 10..18,
    // output tiles 0..2, 2..3.
    let tile = TileSize { rows: 10, cols: 2 };
    let r = Realized::new(&Cpu, &netlist(&net, &p, tile), 1).unwrap();
    let we = effective_weights(&r, &Cpu).unwrap();
    let w0 = &we[0]; // [3, 2, 3, 3]
    let wmax = w0.iter().fold(0.0f64, |m, v| m.max((*v as f64).abs()));
    let mut x = random(&[n, 2, 6, 6], 8);
    // Inputs of very different magnitudes per region, so that one scale per sample would differ.
    for s in 0..n {
        for h in 0..3 {
            for w in 0..6 {
                x[[s, 0, h, w]] *= 0.05;
                x[[s, 1, h, w]] *= 0.05;
            }
        }
    }
    let got = layer1(&r, &x, &state(n, Tensor::zeros(vec![n, 4, 6, 6])));
    let wk = |o: usize, k: usize| w0[[o, k / 9, (k % 9) / 3, k % 3]] as f64;
    let (mut reads, mut rereads) = (0, 0);
    let mut worst = 0.0f64;
    let mut per_sample_diff = 0.0f64;
    for s in 0..n {
        let amax = x
            .index_axis(ndarray::Axis(0), s)
            .iter()
            .fold(0.0f64, |m, v| m.max((*v as f64).abs()));
        for oh in 0..6 {
            for ow in 0..6 {
                let mut v = vec![0.0f64; 18];
                for (k, vk) in v.iter_mut().enumerate() {
                    let (c, i, j) = (k / 9, (k % 9) / 3, k % 3);
                    if let Some((ih, iw)) = at(oh, ow, i, j) {
                        *vk = x[[s, c, ih, iw]] as f64;
                    }
                }
                let (y, rd, rr) = naive_read(
                    &v,
                    &wk,
                    3,
                    wmax,
                    &ranges(18, 10),
                    &ranges(3, 2),
                    d,
                    a,
                    last_r,
                );
                reads += rd;
                rereads += rr;
                for (o, yo) in y.iter().enumerate() {
                    worst = worst.max((got[[s, o, oh, ow]] as f64 - yo).abs());
                    // One α per sample over the whole image (the old scheme), without bound
                    // management: a different result.
                    let exact: f64 = (0..18).map(|k| wk(o, k) * v[k]).sum();
                    let dq: f64 = (0..18)
                        .map(|k| wk(o, k) / wmax * quantize(v[k] / amax, d.0, d.1))
                        .sum();
                    let old = quantize(dq, a.0, a.1) * amax * wmax;
                    per_sample_diff = per_sample_diff.max((old - exact).abs() - (yo - exact).abs());
                }
            }
        }
    }
    assert!(worst < 1e-4, "per-patch reference: max error {worst}");
    assert_eq!(r.read_counts(), (reads, rereads), "vector reads, re-reads");
    assert!(rereads > 10, "bound management was exercised: {rereads}");
    assert!(
        per_sample_diff > 0.01,
        "per-sample scaling indistinguishable"
    );
}

/// With converters that neither quantize nor clip in range (a 1e6 bound), every tiling gives the
/// same free phase as one big tile and as the digital engine (the host read path is linear).
#[test]
fn tiling_is_transparent_for_transparent_converters() {
    let net = net();
    let be = Cpu;
    let x = random(&[3, 2, 6, 6], 4);
    let p = converters(
        Dac {
            bits: 0,
            bound: f64::INFINITY,
            ..dac(0)
        },
        Adc {
            bits: 0,
            bound: 1e6,
            noise_std: 0.0,
            bound_management: BoundManagement::Iterative,
            ..Adc::default()
        },
    );
    let run = |tile: TileSize| {
        let r = Realized::new(&be, &netlist(&net, &p, tile), 1).unwrap();
        let st = r.free_phase(&be, &x, 3, 0).unwrap();
        assert!(r.read_counts().0 > 0, "host read path taken");
        st.layers
    };
    let big = run(TileSize {
        rows: 512,
        cols: 512,
    });
    let small = run(TileSize { rows: 4, cols: 2 });
    let digital = net.free_phase(&be, &x, 3).unwrap().layers;
    for k in 0..3 {
        let scale = digital[k].iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        for (name, l) in [("one tile", &big[k]), ("4x2 tiles", &small[k])] {
            let e = l
                .iter()
                .zip(digital[k].iter())
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                e < 1e-5 * scale,
                "{name}, layer {k}: error {e} (scale {scale})"
            );
        }
    }
}

/// Noisy reads (ADC noise, per-read device noise, bound management, a noisy DAC) give the same bits
/// on 1 and 2 threads, over several row chunks.
#[test]
fn noisy_reads_do_not_depend_on_thread_count() {
    let net = net();
    let x = random(&[9, 2, 6, 6], 5);
    for preset in ["pcm", "rram"] {
        let mut p = Preset::builtin(preset).unwrap();
        p.dac.noise_std = 0.01;
        p.adc.bound = 1.5;
        let l = netlist(&net, &p, TileSize { rows: 10, cols: 3 });
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    let r = Realized::new(&Cpu, &l, 4).unwrap();
                    let st = r.free_phase(&Cpu, &x, 3, 1).unwrap();
                    (st.layers, r.read_counts())
                })
        };
        let (a, b) = (run(1), run(2));
        assert!(a.1.1 > 0, "{preset}: bound management exercised");
        assert_eq!(a, b, "{preset}");
    }
}
