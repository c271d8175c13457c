//! Fixtures shared by the substrate tests: small EP models, seeded inputs, and a model compiled
//! to a netlist on a preset (through JSON text, as a file would be).
#![allow(dead_code)]

use devices::Preset;
use ep::compile::{CompileOptions, compile};
use ep::{ConvLayer, EpNet, Loss, ModelSpec, Pool};
use sim::netlist::{Loaded, Netlist, Origin, TileSize};
use sim::{Act, Cpu, Stream, Tensor};

/// EP-MLP 36-24(-16)-10 on 1x6x6 inputs.
pub fn mlp(loss: Loss, softmax: bool) -> ModelSpec {
    ModelSpec {
        input: [1, 6, 6],
        conv: vec![],
        fc: if softmax {
            vec![24, 16, 10]
        } else {
            vec![24, 10]
        },
        act: Act::MyHardSig,
        softmax,
        loss,
        t1: 25,
        t2: 5,
        input_norm: None,
    }
}

/// EP-CNN 2x10x10 → conv 6 → conv 8 (k3, padding 1, max pools) → fc 10, softmax readout.
pub fn cnn() -> ModelSpec {
    ModelSpec {
        input: [2, 10, 10],
        conv: vec![
            ConvLayer {
                channels: 6,
                kernel: 3,
                stride: 1,
                padding: 1,
                pool: Pool::Max,
            },
            ConvLayer {
                channels: 8,
                kernel: 3,
                stride: 1,
                padding: 1,
                pool: Pool::Max,
            },
        ],
        fc: vec![10],
        act: Act::MyHardSig,
        softmax: true,
        loss: Loss::CrossEntropy,
        t1: 20,
        t2: 5,
        input_norm: None,
    }
}

/// A model with weights large enough that the states are far from trivial.
pub fn model(spec: ModelSpec, seed: u64) -> EpNet<Cpu> {
    EpNet::init(&Cpu, spec, &Stream::new(seed, "init"), Some(2.0)).unwrap()
}

/// `n` inputs uniform in [0, 1) from `seed`.
pub fn input(spec: &ModelSpec, n: usize, seed: u64) -> Tensor {
    let [c, h, w] = spec.input;
    let s = Stream::new(seed, "x");
    sim::tensor(
        &[n, c, h, w],
        (0..(n * c * h * w) as u64).map(|i| s.uniform(i)).collect(),
    )
    .unwrap()
}

/// `net` compiled on `preset` with arrays of at most `tile` cells, loaded back from its JSON.
pub fn netlist(net: &EpNet<Cpu>, preset: &Preset, tile: TileSize) -> Loaded {
    let (w, b) = net.to_host(&Cpu).unwrap();
    let nl = compile(
        &net.spec,
        &w,
        &b,
        preset,
        &CompileOptions {
            tile,
            name: "test".into(),
        },
    )
    .unwrap();
    // Through JSON text, as a file would be.
    Netlist::from_json(&nl.to_json(), Origin::memory()).unwrap()
}

/// Largest absolute difference of `a` and `b` relative to the largest |b| (shapes must match).
pub fn rel(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let scale = b
        .iter()
        .fold(0.0f64, |m, v| m.max((*v as f64).abs()))
        .max(1e-12);
    a.iter()
        .zip(b.iter())
        .fold(0.0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()))
        / scale
}
