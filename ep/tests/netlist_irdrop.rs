//! IR drop in the netlist substrate: every read of a tile is its resistive network's response
//! (`devices::irdrop`). Checked against an explicit per-tile nodal solve of both read directions,
//! the ideal limit (bitwise the digital path at 0 Ω) and the attenuation with wire resistance.

mod common;
use common::*;

use devices::cells::IdealCell;
use devices::irdrop::{Direction, IrDrop};
use devices::mapping::{ScaleMode, weights_to_targets};
use devices::{CellModel, Preset};
use ep::model::State;
use ep::substrate::{Realized, effective_weights};
use ep::{EpNet, Loss, ModelSpec};
use sim::netlist::{Netlist, Origin, TileSize, tiles};
use sim::{Act, Backend, Cpu, Stream, Tensor};

/// A 6-8-3 EP-MLP with identity neurons, so that one step is exactly its reads:
/// `s0 ← W0 x + b0 + W1ᵀ s1`, `s1 ← W1 s0 + b1`.
fn spec(act: Act) -> ModelSpec {
    ModelSpec {
        input: [1, 2, 3],
        conv: vec![],
        fc: vec![8, 3],
        act,
        softmax: false,
        loss: Loss::Mse,
        t1: 12,
        t2: 3,
        input_norm: None,
    }
}

/// Tiles smaller than the layers: W0 [8, 6] on 2×3 tiles of 4×3, W1 [3, 8] on 2 tiles.
const TILE: TileSize = TileSize { rows: 4, cols: 3 };

fn preset(ir: IrDrop, g_min_us: f64) -> Preset {
    let mut p = Preset::builtin("ideal").unwrap();
    p.cell = CellModel::Ideal(IdealCell {
        g_max_us: 25.0,
        g_min_us,
    });
    p.ir_drop = ir;
    p.validate().unwrap();
    p
}

fn rand_tensor(shape: &[usize], seed: u64, lo: f32, hi: f32) -> Tensor {
    let s = Stream::new(seed, "t");
    let n: usize = shape.iter().product();
    sim::tensor(
        shape,
        (0..n as u64)
            .map(|i| lo + (hi - lo) * s.uniform(i))
            .collect(),
    )
    .unwrap()
}

/// Forward read of layer matrix `w` ([out, inp]) on `x` by explicit nodal solves: per tile, the
/// G⁺ and G⁻ tiles (the ideal cell's targets, programmed per tile with one scale) solved with
/// `x` on the word lines, `(I⁺ − I⁻)/s`, summed over tiles. `transposed`: `v` ([out]) on the bit
/// lines, the word-line currents, giving a vector of `inp`.
fn nodal_read(
    w: &[f32],
    out: usize,
    inp: usize,
    x: &[f64],
    ir: &IrDrop,
    g_min_us: f64,
    transposed: bool,
) -> Vec<f64> {
    let mut y = vec![0.0f64; if transposed { inp } else { out }];
    for t in tiles(out, inp, TILE) {
        let (nr, nc) = (t.n_rows(), t.n_cols());
        let mut block = Vec::new();
        for o in t.cols.0..t.cols.1 {
            block.extend_from_slice(&w[o * inp + t.rows.0..o * inp + t.rows.1]);
        }
        let tg = weights_to_targets(&block, nc, nr, g_min_us, 25.0, ScaleMode::Layer).unwrap();
        let s = tg.scale_us[0];
        // tile layout [rows = inputs, cols = outputs], conductances as programmed (f32)
        let tile = |g: &[f64]| -> Vec<f64> {
            let mut v = vec![0.0; nr * nc];
            for bo in 0..nc {
                for bi in 0..nr {
                    v[bi * nc + bo] = g[bo * nr + bi] as f32 as f64;
                }
            }
            v
        };
        let (gp, gm) = (tile(&tg.g_pos_us), tile(&tg.g_neg_us));
        if transposed {
            let v: Vec<f64> = x[t.cols.0..t.cols.1].to_vec();
            let ip = ir
                .solve_nodal_dir(&gp, &v, nr, nc, Direction::Transposed)
                .unwrap();
            let im = ir
                .solve_nodal_dir(&gm, &v, nr, nc, Direction::Transposed)
                .unwrap();
            for bi in 0..nr {
                y[t.rows.0 + bi] += (ip.i_out_ua[bi] - im.i_out_ua[bi]) / s;
            }
        } else {
            let v: Vec<f64> = x[t.rows.0..t.rows.1].to_vec();
            let ip = ir.solve_nodal(&gp, &v, nr, nc).unwrap();
            let im = ir.solve_nodal(&gm, &v, nr, nc).unwrap();
            for bo in 0..nc {
                y[t.cols.0 + bo] += (ip.i_out_ua[bo] - im.i_out_ua[bo]) / s;
            }
        }
    }
    y
}

/// One step of the realized 6-8-3 network with IR drop equals the explicit per-tile nodal solves
/// of its forward reads (W0·x, W1·s0) and its transposed read (W1ᵀ·s1), with transparent
/// converters, on several tiles per array and a nonzero g_min (whose offsets no longer cancel).
#[test]
fn one_step_equals_per_tile_nodal_solves() {
    let be = Cpu;
    let net = EpNet::init(&be, spec(Act::Identity), &Stream::new(5, "init"), Some(2.0)).unwrap();
    let (ws, bs) = net.to_host(&be).unwrap();
    let ir = IrDrop {
        r_wire_ohm: 40.0,
        r_driver_ohm: 300.0,
        r_sense_ohm: 500.0,
        iterations: 1,
    };
    let g_min = 2.0;
    let r = Realized::new(&be, &netlist(&net, &preset(ir.clone(), g_min), TILE), 1).unwrap();
    assert!(!r.stochastic());
    let n = 3;
    let x = rand_tensor(&[n, 1, 2, 3], 1, 0.0, 1.0);
    let s0 = rand_tensor(&[n, 8], 2, -1.0, 1.0);
    let s1 = rand_tensor(&[n, 3], 3, -1.0, 1.0);
    let st = State {
        layers: vec![s0.clone(), s1.clone()],
    };
    let next = r.step(&be, &x, &st, &r.query_stream(0), 0).unwrap();
    let (y0, y1) = (
        be.download(&next.layers[0]).unwrap(),
        be.download(&next.layers[1]).unwrap(),
    );
    let f = |t: &Tensor, k: usize, m: usize| -> Vec<f64> {
        t.iter().skip(k * m).take(m).map(|&v| v as f64).collect()
    };
    let w0: Vec<f32> = ws[0].iter().copied().collect();
    let w1: Vec<f32> = ws[1].iter().copied().collect();
    let (b0, b1) = (f(&bs[0], 0, 8), f(&bs[1], 0, 3));
    let mut worst = 0.0f64;
    let mut effect = 0.0f64;
    for k in 0..n {
        let xk = f(&x, k, 6);
        let (s0k, s1k) = (f(&s0, k, 8), f(&s1, k, 3));
        let fwd0 = nodal_read(&w0, 8, 6, &xk, &ir, g_min, false);
        let back1 = nodal_read(&w1, 3, 8, &s1k, &ir, g_min, true);
        let fwd1 = nodal_read(&w1, 3, 8, &s0k, &ir, g_min, false);
        let want0: Vec<f64> = (0..8).map(|o| fwd0[o] + b0[o] + back1[o]).collect();
        let want1: Vec<f64> = (0..3).map(|o| fwd1[o] + b1[o]).collect();
        for (got, want) in [(f(&y0, k, 8), want0), (f(&y1, k, 3), want1)] {
            let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for (a, b) in got.iter().zip(&want) {
                worst = worst.max((a - b).abs() / scale);
            }
        }
        // the same reads without IR drop, to make sure the effect is not negligible
        let ideal = nodal_read(
            &w1,
            3,
            8,
            &s0k,
            &IrDrop {
                r_wire_ohm: 1e-9,
                r_driver_ohm: 1e-9,
                r_sense_ohm: 1e-9,
                iterations: 1,
            },
            g_min,
            false,
        );
        let scale = ideal.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (a, b) in fwd1.iter().zip(&ideal) {
            effect = effect.max((a - b).abs() / scale);
        }
    }
    eprintln!("worst relative error {worst:.2e}, IR-drop effect {effect:.3}");
    assert!(effect > 0.01, "IR drop effect too small to test: {effect}");
    assert!(worst < 2e-5, "relative error {worst}");
}

/// At 0 Ω the realization is bitwise the digital engine on its programmed weights (the exact
/// path); as all resistances → 0 the realized logits converge to it; `effective_weights` stays the
/// programmed weights whatever the IR drop.
#[test]
fn vanishing_resistances_converge_to_no_ir_drop() {
    let be = Cpu;
    let net = EpNet::init(
        &be,
        spec(Act::MyHardSig),
        &Stream::new(6, "init"),
        Some(2.0),
    )
    .unwrap();
    let x = rand_tensor(&[4, 1, 2, 3], 4, 0.0, 1.0);
    let steps = net.spec.t1;
    let zero = Realized::new(
        &be,
        &netlist(&net, &preset(IrDrop::default(), 0.0), TILE),
        1,
    )
    .unwrap();
    let programmed = effective_weights(&zero, &be).unwrap();
    let (_, bs) = net.to_host(&be).unwrap();
    let digital = EpNet::from_host(&be, net.spec.clone(), &programmed, &bs).unwrap();
    let dst = digital.free_phase(&be, &x, steps).unwrap();
    let zst = zero.free_phase(&be, &x, steps, 0).unwrap();
    for (a, b) in zst.layers.iter().zip(&dst.layers) {
        assert_eq!(
            be.download(a).unwrap(),
            be.download(b).unwrap(),
            "0 Ω is not bitwise the digital path"
        );
    }
    let dl = digital.logits(&be, &dst).unwrap();
    let base = IrDrop {
        r_wire_ohm: 20.0,
        r_driver_ohm: 200.0,
        r_sense_ohm: 200.0,
        iterations: 1,
    };
    let mut errs = Vec::new();
    for k in [1.0, 1e-1, 1e-2, 1e-3, 1e-6] {
        let ir = IrDrop {
            r_wire_ohm: base.r_wire_ohm * k,
            r_driver_ohm: base.r_driver_ohm * k,
            r_sense_ohm: base.r_sense_ohm * k,
            iterations: 1,
        };
        let r = Realized::new(&be, &netlist(&net, &preset(ir, 0.0), TILE), 1).unwrap();
        // export/inspection: the programmed weights, not the IR-dropped responses
        for (a, b) in effective_weights(&r, &be).unwrap().iter().zip(&programmed) {
            assert_eq!(a, b);
        }
        let st = r.free_phase(&be, &x, steps, 0).unwrap();
        errs.push(rel(&r.logits(&be, &st, 0, steps as u64).unwrap(), &dl));
    }
    eprintln!("logit error vs 0 Ω at resistance scales 1 … 1e-6: {errs:?}");
    assert!(errs[0] > 1e-3, "no effect: {errs:?}");
    for w in errs[..4].windows(2) {
        assert!(w[1] < w[0] * 0.3, "no convergence: {errs:?}");
    }
    assert!(errs[4] < 1e-5, "{errs:?}");
}

/// A device entry with negative resistances is refused with the JSON path of the field.
#[test]
fn bad_ir_drop_parameters_name_the_path() {
    let be = Cpu;
    let net = EpNet::init(&be, spec(Act::Identity), &Stream::new(5, "init"), Some(2.0)).unwrap();
    let l = netlist(
        &net,
        &preset(
            IrDrop {
                r_wire_ohm: 1.0,
                ..IrDrop::default()
            },
            0.0,
        ),
        TILE,
    );
    let mut v: serde_json::Value = serde_json::from_str(&l.netlist.to_json()).unwrap();
    let dev = v["devices"]
        .as_object_mut()
        .unwrap()
        .values_mut()
        .next()
        .unwrap();
    assert_eq!(dev["ir_drop"]["r_wire_ohm"], 1.0);
    dev["ir_drop"]["r_wire_ohm"] = serde_json::json!(-1.0);
    let l2 = Netlist::from_json(&v.to_string(), Origin::memory()).unwrap();
    let e = match Realized::new(&be, &l2, 1) {
        Ok(_) => panic!("negative wire resistance accepted"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("ir_drop") && e.contains("r_wire_ohm"), "{e}");
}

/// A tile whose IR-drop solve does not converge is refused with the array, the tile and advice.
#[test]
fn non_converging_tile_names_array_and_tile() {
    let be = Cpu;
    let net = EpNet::init(&be, spec(Act::Identity), &Stream::new(5, "init"), Some(2.0)).unwrap();
    let ir = IrDrop {
        r_wire_ohm: 1e12,
        r_driver_ohm: 1.0,
        r_sense_ohm: 1.0,
        iterations: 1,
    };
    let e = match Realized::new(&be, &netlist(&net, &preset(ir, 0.0), TILE), 1) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("$.arrays[0] (tile 0)")
            && e.contains("array `syn0`")
            && e.contains("smaller tiles"),
        "{e}"
    );
    eprintln!("{e}");
}
