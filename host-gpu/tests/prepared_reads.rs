//! The GPU keeps prepared crossbar reads on the device: the first array's read of a fixed input
//! through a noise-free DAC is prepared (its values are checked against the plain read by the
//! conformance suite's `xbar` family), a noisy DAC or a transposed read is not, and a read
//! prepared elsewhere (by the CPU backend) or for another plan is refused with an error.

use sim::analog::{ConvGeom, Converter, Io, ReadKind, ReadPlan};
use sim::netlist::NoiseManagement;
use sim::{Backend, Cpu, Stream};

fn gpu() -> host_gpu::Gpu {
    host_gpu::Gpu::new(None).unwrap_or_else(|e| panic!("{e}"))
}

/// A plan of `n_in` inputs, `n_out` outputs, the input blocks given, one output tile, a 5-bit DAC
/// with noise `dac_noise` and a noisy 6-bit ADC.
fn plan(n_in: usize, n_out: usize, ins: &[(usize, usize)], dac_noise: f64) -> ReadPlan {
    let levels = |bits: u32, bound: f64| Some(2.0 * bound / ((1u64 << bits) - 2) as f64);
    ReadPlan::new(
        n_in,
        n_out,
        ins,
        &[(0, n_out)],
        |o, k| ((o * 3 + k) % 7) as f32 / 7.0 - 0.4,
        None,
        Some(Converter::new(1.0, levels(5, 1.0), dac_noise)),
        Some(Converter::new(2.5, levels(6, 2.5), 0.05)),
        Io {
            nm: NoiseManagement::AbsMax,
            nm_thres: 0.0,
            last_r: 4,
        },
    )
    .unwrap()
}

#[test]
fn the_gpu_prepares_input_reads_of_a_noise_free_dac_only() {
    let be = gpu();
    let s = Stream::new(1, "prepare");
    let x = Cpu.randn(&[6, 8], &s, 0).unwrap();
    let xg = be.upload(&x).unwrap();
    let p = plan(8, 5, &[(0, 8)], 0.0);
    let pre = be
        .xbar_prepare(&p, &xg, ReadKind::Dense, &s)
        .unwrap()
        .expect("a noise-free DAC's read is prepared on the GPU");
    assert_eq!((pre.vectors(), pre.kind()), (6, ReadKind::Dense));
    let (y, _) = be.xbar_read_prepared(&p, &pre, 1.0, None, &s, 2).unwrap();
    assert_eq!(be.shape(&y), [6, 5]);
    // A noisy DAC draws at every step: nothing to prepare.
    let noisy = plan(8, 5, &[(0, 8)], 0.05);
    assert!(
        be.xbar_prepare(&noisy, &xg, ReadKind::Dense, &s)
            .unwrap()
            .is_none()
    );
    // Neither is a transposed read.
    let g = ConvGeom {
        n: 1,
        c: 2,
        h: 3,
        w: 3,
        kh: 2,
        kw: 2,
        stride: (1, 1),
        pad: (0, 0),
        ho: 2,
        wo: 2,
    };
    let pt = plan(3, g.k(), &[(0, 3)], 0.0);
    let u = be
        .upload(&Cpu.randn(&[1, 3, 2, 2], &s, 100).unwrap())
        .unwrap();
    assert!(
        be.xbar_prepare(&pt, &u, ReadKind::ConvTransposed(g), &s)
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_read_prepared_elsewhere_or_for_another_plan_is_refused() {
    let be = gpu();
    let s = Stream::new(2, "prepare");
    let x = Cpu.randn(&[4, 8], &s, 0).unwrap();
    let p = plan(8, 5, &[(0, 8)], 0.0);
    // Prepared by the CPU backend, read on the GPU.
    let on_cpu = Cpu
        .xbar_prepare(&p, &x, ReadKind::Dense, &s)
        .unwrap()
        .expect("the CPU prepares it");
    let e = be
        .xbar_read_prepared(&p, &on_cpu, 1.0, None, &s, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("another backend"), "{e}");
    // Prepared on the GPU, read on the CPU.
    let on_gpu = be
        .xbar_prepare(&p, &be.upload(&x).unwrap(), ReadKind::Dense, &s)
        .unwrap()
        .expect("the GPU prepares it");
    let e = Cpu
        .xbar_read_prepared(&p, &on_gpu, 1.0, None, &s, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("another backend"), "{e}");
    // Prepared for one block, read with a plan of two.
    let two = plan(8, 5, &[(0, 4), (4, 8)], 0.0);
    let e = be
        .xbar_read_prepared(&two, &on_gpu, 1.0, None, &s, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("blocks"), "{e}");
}
