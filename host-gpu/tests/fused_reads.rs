//! The GPU's fused conv-synapse reads (`conv2d_pooled`, `conv2d_pooled_input_grad`: unpooling
//! inside the input adjoint's GEMM loader) against the CPU backend's composition of the plain
//! ops, for max and average pooling, padded and unpadded, with conv outputs that pooling does not
//! cover entirely (odd sizes), strided convolutions, overlapping windows (composed on the GPU
//! too) and uploaded switches.

use sim::{Backend, Conv2dParams, Cpu, Pool2dParams, Pooling, Stream, Tensor};

fn gpu() -> host_gpu::Gpu {
    host_gpu::Gpu::new(None).unwrap_or_else(|e| panic!("{e}"))
}

fn rand(shape: &[usize], seed: u64) -> Tensor {
    Cpu.randn(shape, &Stream::new(seed, "fused"), 0).unwrap()
}

fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.shape(), b.shape());
    let scale = a.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b.iter())
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs() / scale))
}

/// (input [N,C,H,W], O, kernel, conv params, pooling)
type Case = ([usize; 4], usize, usize, Conv2dParams, Pooling);

fn cases() -> Vec<Case> {
    let p2 = Pool2dParams::new(2, 2);
    vec![
        (
            [2, 3, 12, 12],
            8,
            3,
            Conv2dParams::new(1, 1),
            Pooling::Max(p2),
        ),
        (
            [2, 3, 12, 12],
            8,
            3,
            Conv2dParams::new(1, 1),
            Pooling::Avg(p2),
        ),
        // conv output 11x11: the last row and column lie in no window
        (
            [2, 4, 13, 13],
            5,
            3,
            Conv2dParams::new(1, 0),
            Pooling::Max(p2),
        ),
        (
            [2, 4, 13, 13],
            5,
            3,
            Conv2dParams::new(1, 0),
            Pooling::Avg(p2),
        ),
        // strided convolution (several stride phases in the adjoint)
        (
            [1, 2, 15, 15],
            6,
            3,
            Conv2dParams::new(2, 1),
            Pooling::Max(p2),
        ),
        // 5x5 kernel, FMNIST-like
        (
            [2, 1, 28, 28],
            4,
            5,
            Conv2dParams::new(1, 0),
            Pooling::Max(p2),
        ),
        // overlapping windows: composed from max_unpool2d on the GPU as well
        (
            [1, 3, 11, 11],
            4,
            3,
            Conv2dParams::new(1, 1),
            Pooling::Max(Pool2dParams::new(3, 2)),
        ),
        ([2, 3, 8, 8], 4, 3, Conv2dParams::new(1, 1), Pooling::None),
    ]
}

#[test]
fn fused_reads_match_the_cpu_composition() {
    let g = gpu();
    for (i, (xs, o, k, p, pool)) in cases().into_iter().enumerate() {
        let x = rand(&xs, 10 + i as u64);
        let w = rand(&[o, xs[1], k, k], 20 + i as u64);
        let b = rand(&[o], 30 + i as u64);
        let (yc, ic) = Cpu.conv2d_pooled(&x, &w, Some(&b), p, pool).unwrap();
        let (gx, gw, gb) = (
            g.upload(&x).unwrap(),
            g.upload(&w).unwrap(),
            g.upload(&b).unwrap(),
        );
        let (yg, ig) = g.conv2d_pooled(&gx, &gw, Some(&gb), p, pool).unwrap();
        let e = max_rel(&yc, &g.download(&yg).unwrap());
        assert!(e < 1e-5, "case {i} forward: {e}");
        let conv_hw = p.output_hw("t", (xs[2], xs[3]), (k, k)).unwrap();
        let v = rand(yc.shape(), 40 + i as u64);
        let dc = Cpu
            .conv2d_pooled_input_grad(&v, ic.as_ref(), &w, conv_hw, (xs[2], xs[3]), p, pool)
            .unwrap();
        let gv = g.upload(&v).unwrap();
        let dg = g
            .conv2d_pooled_input_grad(&gv, ig.as_ref(), &gw, conv_hw, (xs[2], xs[3]), p, pool)
            .unwrap();
        let e = max_rel(&dc, &g.download(&dg).unwrap());
        assert!(e < 1e-5, "case {i} transposed read: {e}");
        assert!(
            dc.iter().any(|v| v.abs() > 1e-3),
            "case {i}: a zero adjoint proves nothing"
        );
        // Uploaded switches (not known to lie in their windows) take the composed path.
        if let Some(ic) = &ic {
            let iu = g.upload_index(ic.shape(), ic.as_slice().unwrap()).unwrap();
            let du = g
                .conv2d_pooled_input_grad(&gv, Some(&iu), &gw, conv_hw, (xs[2], xs[3]), p, pool)
                .unwrap();
            let e = max_rel(&dc, &g.download(&du).unwrap());
            assert!(e < 1e-5, "case {i} uploaded switches: {e}");
        }
    }
}

#[test]
fn fused_read_shape_errors() {
    let g = gpu();
    let p2 = Pooling::Max(Pool2dParams::new(2, 2));
    let w = g.upload(&rand(&[4, 3, 3, 3], 1)).unwrap();
    let x = g.upload(&rand(&[1, 3, 8, 8], 2)).unwrap();
    let (_, idx) = g
        .conv2d_pooled(&x, &w, None, Conv2dParams::new(1, 1), p2)
        .unwrap();
    // v of the wrong pooled size
    let v = g.upload(&rand(&[1, 4, 3, 3], 3)).unwrap();
    assert!(
        g.conv2d_pooled_input_grad(
            &v,
            idx.as_ref(),
            &w,
            (8, 8),
            (8, 8),
            Conv2dParams::new(1, 1),
            p2
        )
        .is_err()
    );
    // max pooling without switches
    let v = g.upload(&rand(&[1, 4, 4, 4], 3)).unwrap();
    assert!(
        g.conv2d_pooled_input_grad(&v, None, &w, (8, 8), (8, 8), Conv2dParams::new(1, 1), p2)
            .is_err()
    );
}
