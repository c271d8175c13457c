//! The netlist substrate as a `Classifier`: `netlist:ideal` equals the digital EP classifier
//! (logits and input gradients), a physical preset is stochastic with one noise draw per query.

use experiments::classifier::substrate::{SubstrateSpec, classifier};
use experiments::classifier::{Classifier, EpClassifier, Normalize};
use sim::netlist::TileSize;
use sim::{Stream, Tensor};

fn pixels(n: usize) -> Tensor {
    let st = Stream::new(5, "px");
    Tensor::from_shape_fn(ndarray::IxDyn(&[n, 3, 32, 32]), |i| {
        st.uniform((((i[0] * 3 + i[1]) * 32 + i[2]) * 32 + i[3]) as u64)
    })
}

#[test]
fn netlist_classifier_ideal_equals_digital_and_physical_is_stochastic() {
    let net = epsim_tests::tiny_cifar_ep_net(true);
    let x = pixels(3);
    let digital = EpClassifier {
        be: sim::Cpu,
        net: net.clone(),
        norm: Normalize {
            mean: vec![0.4; 3],
            std: vec![0.3; 3],
        },
        t_predict: 6,
        t_attack: 6,
        settle: ep::Settle::default(),
        image_steps: Default::default(),
    };
    let tile = TileSize { rows: 16, cols: 4 };
    let spec = |preset: &str, overrides: &[String]| SubstrateSpec::Netlist {
        preset: preset.into(),
        overrides: overrides.to_vec(),
        tile,
    };
    let ideal = classifier(
        &sim::Cpu,
        Some(net.clone()),
        &spec("ideal", &[]),
        0,
        None,
        &ep::Settle::default(),
    )
    .unwrap();
    assert!(!ideal.stochastic());
    let a = digital.logits(&x).unwrap();
    let b = ideal.logits(&x).unwrap();
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(a.iter().zip(&b).all(|(p, q)| (p - q).abs() <= 1e-5 * scale));
    let loss = |l: &Tensor| -> anyhow::Result<(Vec<f32>, Tensor)> {
        Ok((
            l.sum_axis(ndarray::Axis(1)).iter().copied().collect(),
            Tensor::ones(l.raw_dim()),
        ))
    };
    let (_, ga) = digital.loss_grad(&x, &loss).unwrap();
    let (_, gb) = ideal.loss_grad(&x, &loss).unwrap();
    let gs = ga.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(gs > 0.0);
    assert!(ga.iter().zip(&gb).all(|(p, q)| (p - q).abs() <= 1e-4 * gs));

    let sets = vec![
        "read_noise_scale=0.5".to_string(),
        "t_inference=3600".to_string(),
    ];
    let pcm = classifier(
        &sim::Cpu,
        Some(net),
        &spec("pcm", &sets),
        0,
        None,
        &ep::Settle::default(),
    )
    .unwrap();
    assert!(pcm.stochastic());
    assert!(pcm.describe().contains("netlist:pcm"));
    let l1 = pcm.logits(&x).unwrap();
    let l2 = pcm.logits(&x).unwrap();
    assert_ne!(l1, l2, "one noise draw per query");
    let (_, g1) = pcm.loss_grad(&x, &loss).unwrap();
    let (_, g2) = pcm.loss_grad(&x, &loss).unwrap();
    assert_eq!(g1.shape(), x.shape());
    assert_ne!(g1, g2);
    assert!(
        classifier(
            &sim::Cpu,
            None,
            &spec("pcm", &[]),
            0,
            None,
            &ep::Settle::default()
        )
        .is_err()
    );
    assert!(SubstrateSpec::parse("analog", &[], "16x4").is_err());
    assert!(SubstrateSpec::parse("digital", &sets, "16x4").is_err());
    assert_eq!(
        SubstrateSpec::parse("netlist:pcm", &sets, "16x4").unwrap(),
        spec("pcm", &sets)
    );
    assert_eq!(
        spec("pcm", &sets).label(),
        "netlist:pcm --set read_noise_scale=0.5,t_inference=3600"
    );
}

/// A BP-CNN (batch norm, two max-pooled convs, a hidden fc layer) with non-trivial batch-norm
/// statistics, from seed 3.
fn tiny_bp_cnn() -> ep::baselines::Baseline {
    use ep::baselines::{Arch, Baseline, BaselineSpec, BpCnnSpec};
    let spec = BaselineSpec {
        arch: Arch::BpCnn(BpCnnSpec {
            input: [3, 32, 32],
            conv: vec![
                ep::ConvLayer {
                    channels: 4,
                    kernel: 3,
                    stride: 1,
                    padding: 1,
                    pool: ep::Pool::Max,
                },
                ep::ConvLayer {
                    channels: 6,
                    kernel: 3,
                    stride: 2,
                    padding: 1,
                    pool: ep::Pool::Max,
                },
            ],
            fc: vec![12, 10],
            act: sim::Act::Relu,
            bn_eps: 1e-5,
            bn_momentum: 0.1,
        }),
        input_norm: Some(ep::InputNorm {
            mean: vec![0.4; 3],
            std: vec![0.3; 3],
        }),
        adv: None,
    };
    let mut m = Baseline::init(spec, &Stream::new(3, "bp")).unwrap();
    // Batch-norm parameters and running statistics away from the identity.
    let st = Stream::new(4, "bn");
    let mut k = 0u64;
    for (name, t) in m.params.iter_mut().chain(m.buffers.iter_mut()) {
        if name.starts_with("bn.") {
            t.iter_mut().for_each(|v| {
                let u = st.uniform(k);
                k += 1;
                *v = if name.ends_with("running_var") || name.ends_with("weight") {
                    0.5 + u
                } else {
                    u - 0.5
                };
            });
        }
    }
    m
}

/// A backprop baseline realized on crossbars (its feed-forward form, batch norm folded): on
/// `netlist:ideal` its logits and input gradients equal the digital baseline's; on PCM it is
/// stochastic, carries a cost model, and stays close to the digital model; a ViT is refused.
#[test]
fn a_bp_cnn_on_crossbars_equals_its_digital_self_on_ideal() {
    use experiments::classifier::BaselineClassifier;
    use experiments::classifier::substrate::baseline_classifier;
    let m = tiny_bp_cnn();
    let x = pixels(4);
    let digital = BaselineClassifier::new(&sim::Cpu, std::borrow::Cow::Borrowed(&m));
    let spec = |preset: &str| SubstrateSpec::Netlist {
        preset: preset.into(),
        overrides: vec![],
        tile: TileSize { rows: 16, cols: 8 },
    };
    let ideal = baseline_classifier(&sim::Cpu, &m, &spec("ideal"), 0).unwrap();
    assert!(!ideal.stochastic());
    assert!(
        ideal.describe().starts_with("bp_cnn on netlist:ideal"),
        "{}",
        ideal.describe()
    );
    let a = digital.logits(&x).unwrap();
    let b = ideal.logits(&x).unwrap();
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(scale > 0.0);
    let worst = a
        .iter()
        .zip(&b)
        .fold(0f32, |w, (p, q)| w.max((p - q).abs()));
    assert!(
        worst <= 1e-5 * scale,
        "ideal vs digital logits: {worst} (scale {scale})"
    );
    let loss = |l: &Tensor| -> anyhow::Result<(Vec<f32>, Tensor)> {
        // A loss whose gradient differs per logit.
        let g = Tensor::from_shape_fn(l.raw_dim(), |i| 0.1 + (i[0] * 7 + i[1]) as f32 * 0.05);
        Ok((vec![0.0; l.shape()[0]], g))
    };
    let (_, ga) = digital.loss_grad(&x, &loss).unwrap();
    let (_, gb) = ideal.loss_grad(&x, &loss).unwrap();
    let gs = ga.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(gs > 0.0);
    let gworst = ga
        .iter()
        .zip(&gb)
        .fold(0f32, |w, (p, q)| w.max((p - q).abs()));
    assert!(
        gworst <= 1e-4 * gs,
        "ideal vs digital input gradients: {gworst} (scale {gs})"
    );

    let pcm = baseline_classifier(&sim::Cpu, &m, &spec("pcm"), 0).unwrap();
    assert!(pcm.stochastic());
    let (c1, c2) = (pcm.logits(&x).unwrap(), pcm.logits(&x).unwrap());
    assert!(c1.iter().all(|v| v.is_finite()));
    assert_ne!(c1, c2, "one noise draw per query");
    let dev = c1
        .iter()
        .zip(&a)
        .fold(0f32, |w, (p, q)| w.max((p - q).abs()));
    assert!(
        dev > 0.0 && dev < scale,
        "pcm vs digital: {dev} (scale {scale})"
    );
    let (_, gp) = pcm.loss_grad(&x, &loss).unwrap();
    assert!(gp.iter().all(|v| v.is_finite()) && gp.iter().any(|v| *v != 0.0));
    assert!(
        pcm.cost_fields(4).is_some(),
        "a realized baseline carries its cost model"
    );

    // The shipped quick-start BP-CNN on PCM classifies Fashion-MNIST about as well as digitally.
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/quickstart-bpcnn.safetensors");
    let q = experiments::classifier::load::load_baseline(&file).unwrap();
    let d = experiments::data::load_eval_set("fashion-mnist:test", Some(200)).unwrap();
    let acc = |c: &dyn Classifier| {
        experiments::eval::correct(c, &d, 100).unwrap() as f64 / d.len() as f64
    };
    let qd = acc(&BaselineClassifier::new(
        &sim::Cpu,
        std::borrow::Cow::Borrowed(&q),
    ));
    let qp = acc(baseline_classifier(&sim::Cpu, &q, &spec("pcm"), 0)
        .unwrap()
        .as_ref());
    assert!(qd > 0.7 && (qd - qp).abs() < 0.1, "digital {qd}, pcm {qp}");

    // Average pooling does not commute with the activation the read applies after it: refused.
    let mut avg = tiny_bp_cnn();
    if let ep::baselines::Arch::BpCnn(s) = &mut avg.spec.arch {
        s.conv[1].pool = ep::Pool::Avg;
    }
    let e = baseline_classifier(&sim::Cpu, &avg, &spec("pcm"), 0)
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("average pooling"), "{e:#}");
    // A ViT has no crossbar form.
    let vit = ep::baselines::Baseline::init(
        ep::baselines::BaselineSpec {
            arch: ep::baselines::Arch::Vit(
                serde_json::from_str(
                    r#"{"input":[3,32,32],"patch":8,"dim":8,"depth":1,"heads":2,"mlp_dim":16,"classes":10}"#,
                )
                .unwrap(),
            ),
            input_norm: None,
            adv: None,
        },
        &Stream::new(1, "vit"),
    )
    .unwrap();
    let e = baseline_classifier(&sim::Cpu, &vit, &spec("pcm"), 0)
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("attention"), "{e:#}");
}
