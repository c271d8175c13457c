//! First light: the infrastructure (adapter, pipelines, batching, read-back) on element ops.
use sim::{Act, Backend, Cpu};

#[test]
fn element_ops_match_cpu() {
    let gpu = host_gpu::Gpu::new(None).expect("GPU adapter");
    let cpu = Cpu;
    let x = sim::tensor(&[3, 70_000], (0..210_000).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect()).unwrap();
    let y = sim::tensor(&[3, 70_000], (0..210_000).map(|i| ((i * 13 % 97) as f32 - 40.0) / 11.0).collect()).unwrap();
    let (gx, gy) = (gpu.upload(&x).unwrap(), gpu.upload(&y).unwrap());
    for act in [Act::Identity, Act::HardSigmoid, Act::MyHardSig, Act::MySigmoid, Act::Relu, Act::Gelu, Act::Clamp { lo: -0.2, hi: 0.4 }] {
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
    let a = cpu.permute(&x.clone().into_shape_with_order(vec![3, 7, 100, 100]).unwrap(), &[2, 0, 3, 1]).unwrap();
    let gx4 = gpu.reshape(&gx, &[3, 7, 100, 100]).unwrap();
    let b = gpu.download(&gpu.permute(&gx4, &[2, 0, 3, 1]).unwrap()).unwrap();
    assert_eq!(a, b);
    let c = gpu.concat(&[&gx4, &gpu.slice(&gx4, 1, 2, 3).unwrap()], 1).unwrap();
    let cc = cpu.concat(&[&x.clone().into_shape_with_order(vec![3, 7, 100, 100]).unwrap(), &cpu.slice(&x.clone().into_shape_with_order(vec![3, 7, 100, 100]).unwrap(), 1, 2, 3).unwrap()], 1).unwrap();
    assert_eq!(gpu.download(&c).unwrap(), cc);
}
