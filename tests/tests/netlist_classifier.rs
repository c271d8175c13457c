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
    };
    let tile = TileSize { rows: 16, cols: 4 };
    let spec = |preset: &str, overrides: &[String]| SubstrateSpec::Netlist {
        preset: preset.into(),
        overrides: overrides.to_vec(),
        tile,
    };
    let ideal = classifier(&sim::Cpu, Some(net.clone()), &spec("ideal", &[]), 0, None).unwrap();
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
    let pcm = classifier(&sim::Cpu, Some(net), &spec("pcm", &sets), 0, None).unwrap();
    assert!(pcm.stochastic());
    assert!(pcm.describe().contains("netlist:pcm"));
    let l1 = pcm.logits(&x).unwrap();
    let l2 = pcm.logits(&x).unwrap();
    assert_ne!(l1, l2, "one noise draw per query");
    let (_, g1) = pcm.loss_grad(&x, &loss).unwrap();
    let (_, g2) = pcm.loss_grad(&x, &loss).unwrap();
    assert_eq!(g1.shape(), x.shape());
    assert_ne!(g1, g2);
    assert!(classifier(&sim::Cpu, None, &spec("pcm", &[]), 0, None).is_err());
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
