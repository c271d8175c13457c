//! Baselines: finite-difference gradient checks of every layer through the whole models (conv +
//! batch norm in training and evaluation mode, attention, layer norm, GELU, patch embedding, class
//! token, position embeddings), running statistics, checkpoint round trip, bad input, and the
//! overfit test (each model memorizes 256 random images with random labels to > 95% training
//! accuracy).

use ep::baselines::{Arch, Baseline, BaselineSpec, BpCnnSpec, VitSpec};
use ep::optim::{OptimKind, Optimizer};
use ep::spec::{ConvLayer, Pool};
use sim::gradcheck::{check_gradient, test_tensor};
use sim::tape::Tape;
use sim::{Cpu, Stream, Tensor};

fn cnn(pools: [Pool; 2]) -> BaselineSpec {
    BaselineSpec {
        arch: Arch::BpCnn(BpCnnSpec {
            input: [2, 8, 8],
            conv: vec![
                ConvLayer {
                    channels: 3,
                    kernel: 3,
                    stride: 1,
                    padding: 1,
                    pool: pools[0],
                },
                ConvLayer {
                    channels: 4,
                    kernel: 3,
                    stride: 1,
                    padding: 0,
                    pool: pools[1],
                },
            ],
            fc: vec![6, 3],
            act: sim::Act::Relu,
            bn_eps: 1e-5,
            bn_momentum: 0.1,
        }),
        input_norm: None,
        adv: None,
    }
}

fn vit() -> BaselineSpec {
    BaselineSpec {
        arch: Arch::Vit(VitSpec {
            input: [2, 8, 8],
            classes: 3,
            patch: 4,
            dim: 8,
            depth: 2,
            heads: 2,
            mlp_dim: 12,
            ln_eps: 1e-6,
        }),
        input_norm: None,
        adv: None,
    }
}

/// Loss ⟨r, logits⟩ + CE(logits) of a model, with the model in training or evaluation mode.
fn loss_of(m: &Baseline, x: &Tensor, labels: &[usize], train: bool) -> f64 {
    let cpu = Cpu;
    let t = Tape::new(&cpu);
    let xv = t.constant(x.clone());
    let (y, _, _) = m.forward(&t, xv, train, false).unwrap();
    let r = t.constant(test_tensor(&t.shape(y).unwrap(), 77, 1.0));
    let l = t
        .add(t.dot(y, r).unwrap(), t.cross_entropy(y, labels).unwrap())
        .unwrap();
    t.scalar(l).unwrap() as f64
}

/// Gradient check of every parameter and of the input.
fn gradcheck_model(name: &str, m: &Baseline, train: bool, h: f64, tol: f64) {
    let cpu = Cpu;
    let x = test_tensor(&[4, 2, 8, 8], 5, 1.0);
    let labels = [0, 2, 1, 2];
    let t = Tape::new(&cpu);
    let xv = t.leaf(x.clone());
    let (y, pv, _) = m.forward(&t, xv, train, true).unwrap();
    let r = t.constant(test_tensor(&t.shape(y).unwrap(), 77, 1.0));
    let l = t
        .add(t.dot(y, r).unwrap(), t.cross_entropy(y, &labels).unwrap())
        .unwrap();
    let g = t.backward(l).unwrap();
    for (k, (pname, p)) in m.params.iter().enumerate() {
        let an = g
            .get(pv[k])
            .unwrap_or_else(|| panic!("{name}: no gradient for {pname}"));
        let f = |q: &Tensor| {
            let mut mm = m.clone();
            mm.params[k].1 = q.clone();
            loss_of(&mm, &x, &labels, train)
        };
        let res = check_gradient(f, p, an, h, 24);
        assert!(
            res.ok(tol),
            "{name}: {pname} {:?} fails: {res:?}",
            p.shape()
        );
    }
    let an = g.get(xv).expect("input gradient");
    let res = check_gradient(|q| loss_of(m, q, &labels, train), &x, an, h, 60);
    assert!(res.ok(tol), "{name}: input fails: {res:?}");
}

#[test]
fn bpcnn_conv_bn_relu_pool_gradcheck_train_and_eval() {
    // GELU and avg pooling keep the function smooth so that finite differences never cross a kink
    // (ReLU and max pooling themselves are gradient-checked in sim's tape tests).
    let mut spec = cnn([Pool::Avg, Pool::Identity]);
    if let Arch::BpCnn(s) = &mut spec.arch {
        s.act = sim::Act::Gelu;
    }
    let mut m = Baseline::init(spec, &Stream::new(1, "init")).unwrap();
    // Non-trivial affine and running statistics.
    for (n, p) in m.params.iter_mut() {
        if n.starts_with("bn.") {
            *p = test_tensor(p.shape(), n.len() as u64, 0.3).mapv(|v| v + 1.0);
        }
    }
    for (i, (_, b)) in m.buffers.iter_mut().enumerate() {
        *b = test_tensor(b.shape(), 40 + i as u64, 0.2).mapv(|v| v.abs() + 0.5);
    }
    gradcheck_model("bp_cnn train", &m, true, 3e-3, 2e-2);
    gradcheck_model("bp_cnn eval", &m, false, 3e-3, 2e-2);
}

#[test]
fn vit_gradcheck_every_layer() {
    let mut m = Baseline::init(vit(), &Stream::new(2, "init")).unwrap();
    // Larger weights than the 0.02 init so that attention and GELU are far from linear.
    for (i, (n, p)) in m.params.iter_mut().enumerate() {
        if !n.contains("norm") {
            *p = test_tensor(p.shape(), 100 + i as u64, 0.4);
        }
    }
    gradcheck_model("vit", &m, false, 1e-2, 2e-2);
}

#[test]
fn running_statistics_follow_pytorch() {
    let spec = cnn([Pool::Identity, Pool::Identity]);
    let mut m = Baseline::init(spec, &Stream::new(3, "init")).unwrap();
    let x = test_tensor(&[4, 2, 8, 8], 9, 1.0);
    // The first BN layer sees conv0(x): compute its batch stats directly.
    let cpu = Cpu;
    let c = sim::cpu::conv2d(&x, &m.params[0].1, None, sim::Conv2dParams::new(1, 1)).unwrap();
    let (_, mean, var) = sim::cpu::batch_norm_train(
        &c,
        &Tensor::from_elem(ndarray::IxDyn(&[3]), 1.0),
        &Tensor::zeros(ndarray::IxDyn(&[3])),
        1e-5,
    )
    .unwrap();
    m.train_grads(&cpu, &x, &[0, 1, 2, 0]).unwrap();
    let count = (4 * 8 * 8) as f32;
    for ch in 0..3 {
        let rm = m.buffers[0].1[[ch]];
        let rv = m.buffers[1].1[[ch]];
        assert!((rm - 0.1 * mean[[ch]]).abs() < 1e-6, "{rm}");
        let want = 0.9 + 0.1 * var[[ch]] * count / (count - 1.0);
        assert!((rv - want).abs() < 1e-5, "{rv} vs {want}");
    }
    // Evaluation uses the running statistics: different from training-mode logits.
    let ev = m.logits(&cpu, &x).unwrap();
    let tr = m
        .clone()
        .train_grads(&cpu, &x, &[0, 1, 2, 0])
        .unwrap()
        .logits;
    assert!(ev.iter().zip(tr.iter()).any(|(a, b)| (a - b).abs() > 1e-3));
}

#[test]
fn checkpoint_roundtrip_and_bad_files() {
    for spec in [cnn([Pool::Max, Pool::Identity]), vit()] {
        let m = Baseline::init(spec, &Stream::new(4, "init")).unwrap();
        let f = m.to_file().unwrap();
        let bytes = f.to_bytes().unwrap();
        let back = Baseline::from_file(
            &ep::checkpoint::TensorFile::from_bytes(&bytes).unwrap(),
            None,
        )
        .unwrap();
        assert_eq!(back, m);
        let mut broken = f.clone();
        broken.tensors.remove(1);
        let e = Baseline::from_file(&broken, None).unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
    }
    let f = Baseline::init(cnn([Pool::Max, Pool::Max]), &Stream::new(4, "init"))
        .unwrap()
        .to_file()
        .unwrap();
    let j = &f.metadata["epsim.spec"];
    assert!(j.contains("\"kind\":\"bp_cnn\""), "{j}");
}

#[test]
fn bad_specs_and_inputs_are_errors() {
    let cpu = Cpu;
    let mut bad = vit();
    if let Arch::Vit(v) = &mut bad.arch {
        v.patch = 3;
    }
    assert!(
        Baseline::init(bad, &Stream::new(0, "i"))
            .unwrap_err()
            .to_string()
            .contains("patch")
    );
    let mut bad = vit();
    if let Arch::Vit(v) = &mut bad.arch {
        v.heads = 3;
    }
    assert!(Baseline::init(bad, &Stream::new(0, "i")).is_err());
    let mut bad = cnn([Pool::Max, Pool::Max]);
    if let Arch::BpCnn(s) = &mut bad.arch {
        s.input = [2, 4, 4];
    }
    assert!(
        Baseline::init(bad, &Stream::new(0, "i"))
            .unwrap_err()
            .to_string()
            .contains("conv[")
    );
    // Sizes whose products overflow usize are errors, not panics or wrapped shapes.
    let huge = 1usize << 33;
    let mut bad = cnn([Pool::Identity, Pool::Identity]);
    if let Arch::BpCnn(s) = &mut bad.arch {
        s.input = [1, huge, huge];
        s.conv.truncate(1);
        s.conv[0].kernel = 1;
        s.conv[0].padding = 0;
    }
    let e = Baseline::init(bad, &Stream::new(0, "i")).unwrap_err();
    assert!(e.to_string().contains("too large"), "{e}");
    let mut bad = vit();
    if let Arch::Vit(v) = &mut bad.arch {
        v.input = [1, huge, huge];
        v.patch = 1;
    }
    let e = Baseline::init(bad, &Stream::new(0, "i")).unwrap_err();
    assert!(e.to_string().contains("too many"), "{e}");
    for spec in [cnn([Pool::Max, Pool::Identity]), vit()] {
        let mut m = Baseline::init(spec, &Stream::new(0, "i")).unwrap();
        let x = test_tensor(&[2, 3, 8, 8], 1, 1.0);
        assert!(
            m.logits(&cpu, &x)
                .unwrap_err()
                .to_string()
                .contains("expected input")
        );
        let x = test_tensor(&[2, 2, 8, 8], 1, 1.0);
        assert!(m.train_grads(&cpu, &x, &[0]).is_err());
        assert!(m.train_grads(&cpu, &x, &[0, 7]).is_err());
    }
}

/// 256 random images (pixels N(0, 1)) with random labels among 4 classes.
fn random_task(c: usize, hw: usize) -> (Tensor, Vec<usize>) {
    let x = test_tensor(&[256, c, hw, hw], 11, 1.0);
    let s = Stream::new(12, "labels");
    (x, (0..256).map(|i| s.below(i, 4) as usize).collect())
}

fn overfit(mut m: Baseline, opt: OptimKind, lr: f32, epochs: usize) -> f64 {
    let cpu = Cpu;
    let (x, y) = random_task(m.spec.input()[0], m.spec.input()[1]);
    let mut o = Optimizer::new(opt, vec![lr], vec![0.0], m.params.len()).unwrap();
    let order = Stream::new(13, "order");
    let bs = 32;
    for e in 0..epochs {
        let perm = order.sub(e as u64).permutation(256);
        for b in perm.chunks(bs) {
            let xb = ndarray::concatenate(
                ndarray::Axis(0),
                &b.iter()
                    .map(|&i| {
                        x.index_axis(ndarray::Axis(0), i)
                            .insert_axis(ndarray::Axis(0))
                    })
                    .collect::<Vec<_>>(),
            )
            .unwrap();
            let yb: Vec<usize> = b.iter().map(|&i| y[i]).collect();
            let out = m.train_grads(&cpu, &xb, &yb).unwrap();
            let mut ps = m.param_tensors();
            o.step(&mut ps, &out.grads).unwrap();
            m.set_params(ps).unwrap();
        }
    }
    // Training accuracy in evaluation mode (running statistics), as a deployed model predicts.
    let logits = m.logits(&cpu, &x).unwrap();
    let pred = ep::train::argmax_rows(&logits);
    pred.iter().zip(&y).filter(|(p, l)| p == l).count() as f64 / 256.0
}

#[test]
fn bpcnn_overfits_256_images() {
    let mut spec = cnn([Pool::Max, Pool::Identity]);
    if let Arch::BpCnn(s) = &mut spec.arch {
        s.conv[0].channels = 16;
        s.conv[1].channels = 16;
        s.fc = vec![64, 4];
    }
    let m = Baseline::init(spec, &Stream::new(5, "init")).unwrap();
    let acc = overfit(m, OptimKind::Sgd { momentum: 0.9 }, 0.05, 30);
    assert!(acc > 0.95, "BP-CNN training accuracy {acc}");
}

#[test]
fn vit_overfits_256_images() {
    let mut spec = vit();
    if let Arch::Vit(v) = &mut spec.arch {
        v.classes = 4;
        v.dim = 32;
        v.mlp_dim = 64;
        v.heads = 4;
    }
    let m = Baseline::init(spec, &Stream::new(6, "init")).unwrap();
    let acc = overfit(
        m,
        OptimKind::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        },
        3e-3,
        80,
    );
    assert!(acc > 0.95, "ViT training accuracy {acc}");
}
