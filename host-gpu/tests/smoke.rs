//! First light: the infrastructure (adapter, pipelines, batching, read-back) on element ops.
use sim::{Act, Backend, Cpu};

#[test]
fn element_ops_match_cpu() {
    let gpu = host_gpu::Gpu::new(None).expect("GPU adapter");
    let cpu = Cpu;
    let x = sim::tensor(
        &[3, 70_000],
        (0..210_000)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect(),
    )
    .unwrap();
    let y = sim::tensor(
        &[3, 70_000],
        (0..210_000)
            .map(|i| ((i * 13 % 97) as f32 - 40.0) / 11.0)
            .collect(),
    )
    .unwrap();
    let (gx, gy) = (gpu.upload(&x).unwrap(), gpu.upload(&y).unwrap());
    for act in [
        Act::Identity,
        Act::HardSigmoid,
        Act::MyHardSig,
        Act::MySigmoid,
        Act::Relu,
        Act::Gelu,
        Act::Clamp { lo: -0.2, hi: 0.4 },
    ] {
        let a = cpu.map(&x, act).unwrap();
        let b = gpu.download(&gpu.map(&gx, act).unwrap()).unwrap();
        let d = (&a - &b).mapv(f32::abs).fold(0.0f32, |m, v| m.max(*v));
        assert!(d < 1e-5, "{act:?}: {d}");
        let a = cpu.map_grad(&x, &y, act).unwrap();
        let b = gpu.download(&gpu.map_grad(&gx, &gy, act).unwrap()).unwrap();
        let d = (&a - &b).mapv(f32::abs).fold(0.0f32, |m, v| m.max(*v));
        assert!(d < 1e-5, "{act:?} grad: {d}");
    }
    let a = cpu.axpy(0.3, &x, &y).unwrap();
    let b = gpu.download(&gpu.axpy(0.3, &gx, &gy).unwrap()).unwrap();
    assert!((&a - &b).iter().all(|v| v.abs() < 1e-6));
    let a = cpu
        .permute(
            &x.clone()
                .into_shape_with_order(vec![3, 7, 100, 100])
                .unwrap(),
            &[2, 0, 3, 1],
        )
        .unwrap();
    let gx4 = gpu.reshape(&gx, &[3, 7, 100, 100]).unwrap();
    let b = gpu
        .download(&gpu.permute(&gx4, &[2, 0, 3, 1]).unwrap())
        .unwrap();
    assert_eq!(a, b);
    let c = gpu
        .concat(&[&gx4, &gpu.slice(&gx4, 1, 2, 3).unwrap()], 1)
        .unwrap();
    let cc = cpu
        .concat(
            &[
                &x.clone()
                    .into_shape_with_order(vec![3, 7, 100, 100])
                    .unwrap(),
                &cpu.slice(
                    &x.clone()
                        .into_shape_with_order(vec![3, 7, 100, 100])
                        .unwrap(),
                    1,
                    2,
                    3,
                )
                .unwrap(),
            ],
            1,
        )
        .unwrap();
    assert_eq!(gpu.download(&c).unwrap(), cc);
}

#[test]
fn optimizer_update_matches_cpu() {
    use sim::OptimStep;
    let gpu = host_gpu::Gpu::new(None).expect("GPU adapter");
    let cpu = Cpu;
    let s = sim::Stream::new(3, "optim");
    let mk = |o: u64| sim::tensor(&[7, 33], (0..231).map(|i| s.normal(o + i)).collect()).unwrap();
    let (p, g, g2) = (mk(0), mk(1000), mk(2000));
    let rules = [
        OptimStep::Sgd {
            lr: 0.1,
            wd: 0.0,
            momentum: 0.0,
        },
        OptimStep::Sgd {
            lr: 0.05,
            wd: 3e-4,
            momentum: 0.9,
        },
        OptimStep::Adam {
            lr: 1e-3,
            wd: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            bc1: 0.1,
            bc2: 0.001,
        },
    ];
    for rule in rules {
        // two steps, so the second uses the buffers the first produced
        let (p1, a1, b1) = cpu.optim_update(&p, &g, None, None, rule).unwrap();
        let (p2, _, _) = cpu
            .optim_update(&p1, &g2, a1.as_ref(), b1.as_ref(), rule)
            .unwrap();
        let (gp, gg, gg2) = (
            gpu.upload(&p).unwrap(),
            gpu.upload(&g).unwrap(),
            gpu.upload(&g2).unwrap(),
        );
        let (q1, c1, d1) = gpu.optim_update(&gp, &gg, None, None, rule).unwrap();
        let (q2, _, _) = gpu
            .optim_update(&q1, &gg2, c1.as_ref(), d1.as_ref(), rule)
            .unwrap();
        assert_eq!(a1.is_some(), c1.is_some(), "{rule:?}");
        assert_eq!(b1.is_some(), d1.is_some(), "{rule:?}");
        let q2 = gpu.download(&q2).unwrap();
        let d = (&p2 - &q2).mapv(f32::abs).fold(0.0f32, |m, v| m.max(*v));
        assert!(d < 1e-6, "{rule:?}: {d}");
        assert!(
            (&p2 - &p).iter().any(|v| v.abs() > 1e-5),
            "the update moved nothing"
        );
    }
}
