//! EP learns, on one backend: a small EP-MLP and a small EP-CNN trained with symmetric EP on a
//! synthetic, linearly separable task reach high training accuracy, and training is
//! deterministic for a seed.

use sim::{Act, Backend, Stream, Tensor};

use super::{Must, up};
use crate::model::EpNet;
use crate::optim::{OptimKind, Optimizer};
use crate::spec::{ConvLayer, Loss, ModelSpec, Pool};
use crate::train::{EpConfig, predict, train_batch};

/// Inputs whose class is decided by which quarter of the image is brightest (4 classes), plus
/// noise.
pub fn synthetic(n: usize, c: usize, hw: usize, seed: u64) -> (Tensor, Vec<usize>) {
    let s = Stream::new(seed, "synthetic");
    let mut x = vec![0f32; n * c * hw * hw];
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let label = s.below(i as u64, 4) as usize;
        y.push(label);
        for ch in 0..c {
            for r in 0..hw {
                for col in 0..hw {
                    let q = (r >= hw / 2) as usize * 2 + (col >= hw / 2) as usize;
                    let j = ((i * c + ch) * hw + r) * hw + col;
                    x[j] =
                        if q == label { 1.0 } else { 0.0 } + 0.3 * s.normal(1_000_000 + j as u64);
                }
            }
        }
    }
    (sim::tensor(&[n, c, hw, hw], x).must(), y)
}

/// Train `spec` for `epochs` on 64 synthetic samples in batches of 16 (SGD with momentum,
/// symmetric EP with random-sign β); the training accuracy and the network.
fn train<B: Backend>(
    be: &B,
    spec: ModelSpec,
    lrs: Vec<f32>,
    epochs: usize,
    seed: u64,
) -> (f64, EpNet<B>) {
    let (x, y) = synthetic(64, spec.input[0], spec.input[1], 7);
    let mut net = EpNet::init(be, spec, &Stream::new(seed, "init"), None).must();
    let n = lrs.len();
    let mut opt = Optimizer::new(OptimKind::Sgd { momentum: 0.9 }, lrs, vec![0.0; n], 2)
        .must()
        .to_backend(be)
        .must();
    let cfg = EpConfig {
        beta: 0.5,
        symmetric: true,
        random_sign: true,
        settle: Default::default(),
    };
    let signs = Stream::new(seed, "sign");
    let bs = 16;
    let batches: Vec<B::Tensor> = (0..64 / bs)
        .map(|b| {
            let xb = x
                .slice(ndarray::s![b * bs..(b + 1) * bs, .., .., ..])
                .to_owned()
                .into_dyn();
            up(be, &xb)
        })
        .collect();
    let mut k = 0;
    for _ in 0..epochs {
        for (b, xb) in batches.iter().enumerate() {
            train_batch(
                be,
                &mut net,
                &mut opt,
                &cfg,
                xb,
                &y[b * bs..(b + 1) * bs],
                &signs,
                k,
            )
            .must();
            k += 1;
        }
    }
    let (pred, _) = predict(be, &net, &up(be, &x), net.spec.t1).must();
    let acc = pred.iter().zip(&y).filter(|(p, l)| p == l).count() as f64 / y.len() as f64;
    (acc, net)
}

pub fn ep_mlp_learns_a_separable_task<B: Backend>(be: &B) {
    let spec = ModelSpec {
        input: [1, 6, 6],
        conv: vec![],
        fc: vec![32, 4],
        act: Act::MyHardSig,
        softmax: false,
        loss: Loss::Mse,
        t1: 20,
        t2: 6,
        input_norm: None,
    };
    let (acc, _) = train(be, spec, vec![0.1, 0.05], 15, 1);
    assert!(acc >= 0.9, "EP-MLP training accuracy {acc}");
}

pub fn ep_cnn_with_softmax_readout_learns_and_is_deterministic<B: Backend>(be: &B) {
    let spec = ModelSpec {
        input: [1, 8, 8],
        conv: vec![ConvLayer {
            channels: 8,
            kernel: 3,
            stride: 1,
            padding: 1,
            pool: Pool::Max,
        }],
        fc: vec![4],
        act: Act::MyHardSig,
        softmax: true,
        loss: Loss::CrossEntropy,
        t1: 15,
        t2: 5,
        input_norm: None,
    };
    let (acc, a) = train(be, spec.clone(), vec![0.1, 0.05], 10, 2);
    assert!(acc >= 0.9, "EP-CNN training accuracy {acc}");
    let (_, b) = train(be, spec, vec![0.1, 0.05], 10, 2);
    assert_eq!(
        a.to_host(be).must(),
        b.to_host(be).must(),
        "same seed gave different weights"
    );
}
