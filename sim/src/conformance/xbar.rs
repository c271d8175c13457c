//! Conformance of the crossbar reads (`Backend::xbar_read`, `xbar_prepare`,
//! `xbar_read_prepared`): a noise-free dense read against a naive per-vector evaluation of its
//! definition (noise management per input block, DAC, the block's sums, ADC per output tile,
//! iterative bound management, the sum over blocks times `wmax` plus the bias); the conv reads
//! against the dense read of their unrolled vectors (im2row patches forward; the C_out vectors,
//! then col2im, transposed); the prepared read against the plain one (noise-free, and with noisy
//! reads step by step); a noisy read's per-output mean and variance against the CPU's (identical
//! statistics, not identical draws); bad shapes.

use super::refs::{Must, assert_shape_err, down, up};
use crate::analog::{ConvGeom, Converter, Io, ReadKind, ReadPlan};
use crate::netlist::NoiseManagement;
use crate::{Backend, Stream, Tensor, tensor};

/// Inputs per row, outputs, input blocks and output tiles of the test plans.
const N_IN: usize = 12;
const N_OUT: usize = 10;
const INS: [(usize, usize); 2] = [(0, 7), (7, 12)];
const OUTS: [(usize, usize); 2] = [(0, 4), (4, 10)];

/// The normalized weight from input `k` to output `o` (in [−1, 1], some large enough that bound
/// management re-reads).
fn weight(o: usize, k: usize) -> f32 {
    (((o * 7 + k * 5) % 13) as f32 - 6.0) / 6.0
}

/// A plan of `n_in` inputs and `n_out` outputs with the blocks and tiles given, a 5-bit DAC and a
/// 6-bit ADC of bound 2.5 (or `adc_bound`), abs-max noise management and bound management up to
/// r = 8; with `noisy`, DAC noise, ADC noise and per-read noise of variance 0.01 per input.
fn plan(
    n_in: usize,
    n_out: usize,
    ins: &[(usize, usize)],
    outs: &[(usize, usize)],
    noisy: bool,
) -> ReadPlan {
    plan_bounded(n_in, n_out, ins, outs, noisy, 2.5)
}

/// [`plan`] with the ADC's bound given.
fn plan_bounded(
    n_in: usize,
    n_out: usize,
    ins: &[(usize, usize)],
    outs: &[(usize, usize)],
    noisy: bool,
    adc_bound: f64,
) -> ReadPlan {
    let sd = if noisy { 0.05 } else { 0.0 };
    plan_noises(n_in, n_out, ins, outs, (sd, sd, noisy), adc_bound)
}

/// [`plan_bounded`] with the noises given: (DAC σ, ADC σ, per-read noise of variance 0.01 per
/// input or none).
fn plan_noises(
    n_in: usize,
    n_out: usize,
    ins: &[(usize, usize)],
    outs: &[(usize, usize)],
    (dac_sd, adc_sd, read): (f64, f64, bool),
    adc_bound: f64,
) -> ReadPlan {
    let levels = |bits: u32, bound: f64| Some(2.0 * bound / ((1u64 << bits) - 2) as f64);
    let s2 = |_o: usize, _k: usize| 0.01f32;
    ReadPlan::new(
        n_in,
        n_out,
        ins,
        outs,
        weight,
        read.then_some(&s2 as &dyn Fn(usize, usize) -> f32),
        Some(Converter::new(1.0, levels(5, 1.0), dac_sd)),
        Some(Converter::new(adc_bound, levels(6, adc_bound), adc_sd)),
        Io {
            nm: NoiseManagement::AbsMax,
            nm_thres: 0.0,
            last_r: 8,
        },
    )
    .must()
}

/// The naive noise-free read of one input vector `x` by `p` (see the module doc), in f32 with
/// the sums in f64 (so within float rounding of any backend's), the number of (block, tile)
/// vector reads (an all-zero block slice is not driven) and of them re-reads.
fn naive_vector(p: &ReadPlan, x: &[f32]) -> (Vec<f32>, u64, u64) {
    let dac = p.dac.expect("test plans have a DAC");
    let adc = p.adc.expect("test plans have an ADC");
    let mut acc = vec![0.0f64; p.n_out];
    let (mut reads, mut rereads) = (0, 0);
    for blk in &p.blocks {
        let xs = &x[blk.lo..blk.hi];
        let alpha = xs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        if alpha == 0.0 {
            continue;
        }
        let nb = blk.hi - blk.lo;
        for &(o0, o1) in &p.outs {
            let mut red = 1u64;
            loop {
                reads += 1;
                let xq: Vec<f32> = xs
                    .iter()
                    .map(|v| dac.q.convert(v / (alpha * red as f32)))
                    .collect();
                let y: Vec<f32> = (o0..o1)
                    .map(|o| {
                        let w = &blk.w[o * nb..(o + 1) * nb];
                        w.iter()
                            .zip(&xq)
                            .map(|(w, x)| f64::from(w * x))
                            .sum::<f64>() as f32
                    })
                    .collect();
                let sat = y.iter().any(|v| v.abs() > adc.bound);
                if !sat || red >= p.io.last_r {
                    for (o, v) in (o0..o1).zip(&y) {
                        acc[o] += f64::from(adc.q.convert(*v)) * red as f64 * f64::from(alpha);
                    }
                    break;
                }
                red *= 2;
                rereads += 1;
            }
        }
    }
    (acc.iter().map(|&v| v as f32).collect(), reads, rereads)
}

/// Rows of a test input: values in [−1.5, 1.5] from the seed, every fifth row all zero in its
/// first block (a vector that reads exactly zero there).
fn rows(m: usize, n_in: usize, seed: u64) -> Vec<f32> {
    let s = Stream::new(seed, "conformance.xbar");
    (0..m * n_in)
        .map(|i| {
            let (r, k) = (i / n_in, i % n_in);
            if r % 5 == 0 && k < INS[0].1 {
                0.0
            } else {
                1.5 * (2.0 * s.uniform(i as u64) - 1.0)
            }
        })
        .collect()
}

/// `got` within float rounding of `want`, except where a value sat within rounding of a
/// converter's decision threshold: up to 1 % of the values may differ by at most `level`.
#[track_caller]
fn assert_read_close(got: &Tensor, want: &[f32], level: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: sizes");
    let mut off = 0;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let d = (g - w).abs();
        if d > 1e-4 * (1.0 + w.abs()) {
            assert!(d <= level * 1.001, "{what}: element {i}: {g} vs {w}");
            off += 1;
        }
    }
    assert!(
        off * 100 <= want.len(),
        "{what}: {off} of {} values off by a level",
        want.len()
    );
}

pub fn dense_read_matches_the_definition<B: Backend>(be: &B) {
    let p = plan(N_IN, N_OUT, &INS, &OUTS, false);
    let m = 60;
    let x = rows(m, N_IN, 1);
    let (wmax, bias) = (
        0.75f32,
        (0..N_OUT).map(|o| o as f32 * 0.1).collect::<Vec<_>>(),
    );
    let mut want = Vec::new();
    let (mut reads, mut rereads) = (0, 0);
    for r in 0..m {
        let (v, n, nr) = naive_vector(&p, &x[r * N_IN..(r + 1) * N_IN]);
        reads += n;
        rereads += nr;
        want.extend(v.iter().zip(&bias).map(|(v, b)| v * wmax + b));
    }
    assert!(rereads > 0, "the test input makes bound management re-read");
    let xt = up(be, &tensor(&[m, N_IN], x.clone()).must());
    let bt = up(be, &tensor(&[N_OUT], bias).must());
    let s = Stream::new(3, "read");
    // One ADC level of the largest reduction, in output units.
    let level = p.adc.unwrap().q.step * 8.0 * 1.5 * wmax;
    let (y, tally) = be
        .xbar_read(&p, &xt, ReadKind::Dense, wmax, Some(&bt), &s, 0)
        .must();
    let y = down(be, &y);
    assert_eq!(y.shape(), [m, N_OUT]);
    assert_read_close(&y, &want, level, "dense read");
    // Every (row, block, tile) vector with a nonzero block slice is read, and re-read where its
    // conversion saturates (a sum within rounding of the bound may decide otherwise).
    assert_eq!(tally.reads - tally.rereads, reads - rereads, "{tally:?}");
    assert!(
        tally.rereads.abs_diff(rereads) * 100 <= rereads,
        "{tally:?} vs {rereads}"
    );
    // Without a bias: v·wmax. The prepared read gives the plain read.
    let (y0, _) = be
        .xbar_read(&p, &xt, ReadKind::Dense, wmax, None, &s, 0)
        .must();
    let nb: Vec<f32> = want
        .chunks(N_OUT)
        .flat_map(|r| r.iter().enumerate().map(|(o, v)| v - o as f32 * 0.1))
        .collect();
    assert_read_close(&down(be, &y0), &nb, level, "dense read without bias");
    if let Some(pre) = be.xbar_prepare(&p, &xt, ReadKind::Dense, &s).must() {
        for t in [0, 5] {
            let (a, ta) = be
                .xbar_read_prepared(&p, &pre, wmax, Some(&bt), &s, t)
                .must();
            let (b, tb) = be
                .xbar_read(&p, &xt, ReadKind::Dense, wmax, Some(&bt), &s, t)
                .must();
            assert_eq!(down(be, &a), down(be, &b), "prepared read, step {t}");
            assert_eq!(ta, tb, "prepared read's tally, step {t}");
        }
    }
}

/// The patch of output position (oh, ow) inside the input: (patch index in (c, i, j) order, c,
/// ih, iw) for every kernel tap that falls inside (zero padding elsewhere).
fn patch(g: &ConvGeom, oh: usize, ow: usize) -> Vec<(usize, usize, usize, usize)> {
    let mut taps = Vec::new();
    for c in 0..g.c {
        for i in 0..g.kh {
            for j in 0..g.kw {
                let ih = (oh * g.stride.0 + i)
                    .checked_sub(g.pad.0)
                    .filter(|&v| v < g.h);
                let iw = (ow * g.stride.1 + j)
                    .checked_sub(g.pad.1)
                    .filter(|&v| v < g.w);
                if let (Some(ih), Some(iw)) = (ih, iw) {
                    taps.push(((c * g.kh + i) * g.kw + j, c, ih, iw));
                }
            }
        }
    }
    taps
}

/// The patches of `x` (`[n, c, h, w]`) for `g`, as rows `[n·p, K]` (OIHW order, zero padding).
fn im2row(x: &Tensor, g: &ConvGeom) -> Vec<f32> {
    let mut out = vec![0.0; g.n * g.p() * g.k()];
    for n in 0..g.n {
        for (pos, (oh, ow)) in (0..g.ho)
            .flat_map(|a| (0..g.wo).map(move |b| (a, b)))
            .enumerate()
        {
            let row = &mut out[(n * g.p() + pos) * g.k()..][..g.k()];
            for (kk, c, ih, iw) in patch(g, oh, ow) {
                row[kk] = x[[n, c, ih, iw]];
            }
        }
    }
    out
}

/// The conv geometry of the conv cases: 2 samples of 2×5×4, a 3×2 kernel, stride (1, 2), padding
/// (1, 1).
fn conv_geom() -> ConvGeom {
    ConvGeom {
        n: 2,
        c: 2,
        h: 5,
        w: 4,
        kh: 3,
        kw: 2,
        stride: (1, 2),
        pad: (1, 1),
        ho: 5,
        wo: 3,
    }
}

pub fn conv_reads_are_the_dense_reads_of_their_vectors<B: Backend>(be: &B) {
    let g = conv_geom();
    let (k, co) = (g.k(), 5);
    let s = Stream::new(4, "conv");
    let wmax = 1.25f32;
    // Forward: K inputs (the patch) to C_out outputs.
    let pf = plan(k, co, &[(0, 7), (7, k)], &[(0, 2), (2, co)], false);
    let x = tensor(&[g.n, g.c, g.h, g.w], rows(1, g.n * g.c * g.h * g.w, 5)).must();
    let bias: Vec<f32> = (0..co).map(|o| 0.2 - o as f32 * 0.05).collect();
    let patches = im2row(&x, &g);
    let mut want = vec![0.0f32; g.n * co * g.p()];
    for r in 0..g.n * g.p() {
        let (v, _, _) = naive_vector(&pf, &patches[r * k..(r + 1) * k]);
        let (n, pos) = (r / g.p(), r % g.p());
        for o in 0..co {
            want[(n * co + o) * g.p() + pos] = v[o] * wmax + bias[o];
        }
    }
    let level = pf.adc.unwrap().q.step * 8.0 * 1.5 * wmax;
    let xt = up(be, &x);
    let bt = up(be, &tensor(&[co], bias).must());
    let kind = ReadKind::ConvForward(g);
    let (y, _) = be.xbar_read(&pf, &xt, kind, wmax, Some(&bt), &s, 2).must();
    let y = down(be, &y);
    assert_eq!(y.shape(), [g.n, co, g.ho, g.wo]);
    assert_read_close(&y, &want, level, "conv forward read");
    if let Some(pre) = be.xbar_prepare(&pf, &xt, kind, &s).must() {
        let (a, ta) = be
            .xbar_read_prepared(&pf, &pre, wmax, Some(&bt), &s, 2)
            .must();
        let (b, tb) = be.xbar_read(&pf, &xt, kind, wmax, Some(&bt), &s, 2).must();
        assert_eq!(down(be, &a), down(be, &b), "prepared conv read");
        assert_eq!(ta, tb);
    }
    // Transposed: C_out inputs (one position's vector) to K outputs, summed onto the grid.
    let pt = plan(co, k, &[(0, 2), (2, co)], &[(0, 7), (7, k)], false);
    let u = tensor(&[g.n, co, g.ho, g.wo], rows(1, g.n * co * g.p(), 6)).must();
    let mut want = Tensor::zeros(ndarray::IxDyn(&[g.n, g.c, g.h, g.w]));
    for n in 0..g.n {
        for (oh, ow) in (0..g.ho).flat_map(|a| (0..g.wo).map(move |b| (a, b))) {
            let v: Vec<f32> = (0..co).map(|o| u[[n, o, oh, ow]]).collect();
            let (kv, _, _) = naive_vector(&pt, &v);
            for (kk, c, ih, iw) in patch(&g, oh, ow) {
                want[[n, c, ih, iw]] += kv[kk] * wmax;
            }
        }
    }
    let want: Vec<f32> = want.iter().copied().collect();
    let level = pt.adc.unwrap().q.step * 8.0 * 1.5 * wmax * 6.0;
    let ut = up(be, &u);
    let kind = ReadKind::ConvTransposed(g);
    let (gx, _) = be.xbar_read(&pt, &ut, kind, wmax, None, &s, 2).must();
    let gx = down(be, &gx);
    assert_eq!(gx.shape(), [g.n, g.c, g.h, g.w]);
    assert_read_close(&gx, &want, level, "conv transposed read");
}

/// A prepared read of a noise-free DAC with noisy reads (ADC noise and per-read noise) is the
/// plain read at every step, draws included: dense and conv forward, steps 0 and 3, two input
/// blocks and two output tiles (a backend that keeps no prepared read has nothing to check).
pub fn prepared_noisy_reads_are_the_plain_reads<B: Backend>(be: &B) {
    let plan = |n_in: usize, n_out: usize, ins: &[(usize, usize)], outs: &[(usize, usize)]| {
        plan_noises(n_in, n_out, ins, outs, (0.0, 0.05, true), 2.5)
    };
    let g = conv_geom();
    let k = g.k();
    let dense = (
        plan(N_IN, N_OUT, &INS, &OUTS),
        tensor(&[40, N_IN], rows(40, N_IN, 9)).must(),
        ReadKind::Dense,
    );
    let conv = (
        plan(k, 5, &[(0, 7), (7, k)], &[(0, 2), (2, 5)]),
        tensor(&[g.n, g.c, g.h, g.w], rows(1, g.n * g.c * g.h * g.w, 10)).must(),
        ReadKind::ConvForward(g),
    );
    let s = Stream::new(12, "prepared");
    for (p, x, kind) in [dense, conv] {
        assert!(!p.pre_is_random());
        let xt = up(be, &x);
        let Some(pre) = be.xbar_prepare(&p, &xt, kind, &s).must() else {
            continue;
        };
        let mut differ = false;
        let mut last = None;
        for t in [0, 3] {
            let (a, ta) = be.xbar_read_prepared(&p, &pre, 1.5, None, &s, t).must();
            let (b, tb) = be.xbar_read(&p, &xt, kind, 1.5, None, &s, t).must();
            let (a, b) = (down(be, &a), down(be, &b));
            assert_eq!(a, b, "prepared read of {kind:?}, step {t}");
            assert_eq!(ta, tb, "prepared read's tally of {kind:?}, step {t}");
            differ |= last.as_ref().is_some_and(|l| *l != a);
            last = Some(a);
        }
        assert!(
            differ,
            "{kind:?}: the reads at steps 0 and 3 draw their own noise"
        );
    }
}

pub fn noisy_reads_have_the_cpus_statistics<B: Backend>(be: &B) {
    // One vector read 4000 times (rows differ only in their draws), with the ADC's bound at the
    // largest noise-free sum, so that about half of the reads of its tile saturate.
    let m = 4000;
    let one: Vec<f32> = (0..N_IN).map(|k| 0.9 - 0.13 * k as f32).collect();
    let clean = plan(N_IN, N_OUT, &INS, &OUTS, false);
    let peak = clean
        .blocks
        .iter()
        .flat_map(|blk| {
            let xs = &one[blk.lo..blk.hi];
            let alpha = xs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let xq: Vec<f32> = xs.iter().map(|v| v / alpha).collect();
            let nb = blk.hi - blk.lo;
            (0..N_OUT).map(move |o| {
                let w = &blk.w[o * nb..(o + 1) * nb];
                w.iter().zip(&xq).map(|(w, x)| w * x).sum::<f32>().abs()
            })
        })
        .fold(0.0f32, f32::max);
    let p = plan_bounded(N_IN, N_OUT, &INS, &OUTS, true, f64::from(peak));
    let x: Vec<f32> = one.iter().copied().cycle().take(m * N_IN).collect();
    let xt = tensor(&[m, N_IN], x).must();
    let s = Stream::new(8, "noisy");
    let (yb, tb) = be
        .xbar_read(&p, &up(be, &xt), ReadKind::Dense, 1.0, None, &s, 1)
        .must();
    let yb = down(be, &yb);
    let (yc, tc) = crate::Cpu
        .xbar_read(&p, &xt, ReadKind::Dense, 1.0, None, &s, 1)
        .must();
    let moments = |y: &Tensor, o: usize| {
        let v: Vec<f64> = (0..m).map(|r| f64::from(y[[r, o]])).collect();
        let mean = v.iter().sum::<f64>() / m as f64;
        let var = v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (m - 1) as f64;
        (mean, var)
    };
    for o in 0..N_OUT {
        let ((mb, vb), (mc, vc)) = (moments(&yb, o), moments(&yc, o));
        assert!(vc > 0.0, "output {o}: the CPU's read is noisy");
        let se = (2.0 * vc / m as f64).sqrt();
        assert!(
            (mb - mc).abs() < 5.0 * se,
            "output {o}: mean {mb} vs the CPU's {mc}"
        );
        let rel = 5.0 * (4.0 / m as f64).sqrt();
        assert!(
            (vb / vc - 1.0).abs() < rel,
            "output {o}: variance {vb} vs the CPU's {vc}"
        );
    }
    // Outputs draw their own noise: neighbouring outputs' covariance is the CPU's (the one of
    // their shared DAC noise and re-reads only).
    let cov = |y: &Tensor, a: usize, b: usize| {
        let ((ma, _), (mb, _)) = (moments(y, a), moments(y, b));
        (0..m)
            .map(|r| (f64::from(y[[r, a]]) - ma) * (f64::from(y[[r, b]]) - mb))
            .sum::<f64>()
            / (m - 1) as f64
    };
    for o in [0, 4, 7] {
        let (cb, cc) = (cov(&yb, o, o + 1), cov(&yc, o, o + 1));
        let (va, vb) = (moments(&yc, o).1, moments(&yc, o + 1).1);
        let se = (2.0 * va * vb / m as f64).sqrt();
        assert!(
            (cb - cc).abs() < 5.0 * se,
            "outputs {o}, {}: covariance {cb} vs the CPU's {cc}",
            o + 1
        );
    }
    // Bound management re-reads about as often.
    let (rb, rc) = (tb.rereads as f64, tc.rereads as f64);
    assert!(rc > 100.0, "the noisy read re-reads ({rc})");
    assert!(
        (rb - rc).abs() < 5.0 * (2.0 * rc).sqrt(),
        "re-reads {rb} vs the CPU's {rc}"
    );
}

pub fn xbar_read_errors<B: Backend>(be: &B) {
    let p = plan(N_IN, N_OUT, &INS, &OUTS, false);
    let s = Stream::new(1, "errors");
    let x = up(
        be,
        &tensor(&[3, N_IN + 1], vec![0.5; 3 * (N_IN + 1)]).must(),
    );
    let r = be.xbar_read(&p, &x, ReadKind::Dense, 1.0, None, &s, 0);
    assert_shape_err(r, "xbar_read", "a dense read of the wrong width");
    let x = up(be, &tensor(&[3, N_IN], vec![0.5; 3 * N_IN]).must());
    let b = up(be, &tensor(&[N_OUT + 2], vec![0.0; N_OUT + 2]).must());
    let r = be.xbar_read(&p, &x, ReadKind::Dense, 1.0, Some(&b), &s, 0);
    assert_shape_err(r, "xbar_read", "a bias of the wrong length");
    let g = ConvGeom {
        n: 3,
        c: 3,
        h: 2,
        w: 2,
        kh: 2,
        kw: 2,
        stride: (1, 1),
        pad: (0, 0),
        ho: 1,
        wo: 1,
    };
    // K = 12 inputs: the geometry fits the plan, the tensor does not.
    let r = be.xbar_read(&p, &x, ReadKind::ConvForward(g), 1.0, None, &s, 0);
    assert_shape_err(r, "xbar_read", "a conv forward read of a 2-d input");
    let pt = plan(N_OUT, N_IN, &[(0, N_OUT)], &[(0, N_IN)], false);
    let u = up(be, &tensor(&[3, N_OUT, 1, 1], vec![0.5; 3 * N_OUT]).must());
    let bt = up(be, &tensor(&[N_IN], vec![0.0; N_IN]).must());
    let r = be.xbar_read(&pt, &u, ReadKind::ConvTransposed(g), 1.0, Some(&bt), &s, 0);
    assert_shape_err(r, "xbar_read", "a transposed read with a bias");
    // A plan whose tiles do not partition its outputs is refused when made.
    let bad = ReadPlan::new(
        4,
        4,
        &[(0, 4)],
        &[(0, 3)],
        |_, _| 1.0,
        None,
        None,
        None,
        p.io,
    );
    assert!(bad.is_err(), "tiles 0..3 of 4 outputs");
}
