//! Parity of the GPU pooling, reduction, softmax, norm and random ops with `sim::Cpu`: the same
//! values (bit for bit where the CPU's arithmetic is reproduced: pooling, unpooling, uniform
//! draws), the same ties, NaN rule and error kinds, on odd sizes, single rows, rows longer than a
//! workgroup, overlapping and strided windows and inputs of about a million elements.
//!
//! One device is shared by all tests (opened once); on lavapipe the file runs in seconds.

use std::sync::OnceLock;

use host_gpu::{Gpu, GpuTensor};
use sim::gradcheck::test_tensor;
use sim::{Backend, Cpu, Error, Pool2dParams, Stream, Tensor, tensor};

fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| Gpu::new(None).expect("a GPU adapter (lavapipe in CI)"))
}

fn up(t: &Tensor) -> GpuTensor {
    gpu().upload(t).unwrap()
}

fn down(t: &GpuTensor) -> Tensor {
    gpu().download(t).unwrap()
}

/// Same shape and the same bits (any NaN matches any NaN).
fn assert_bits(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes");
    for (i, (&g, &w)) in got.iter().zip(want.iter()).enumerate() {
        assert!(
            g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
            "{what}: element {i}: {g:e} vs {w:e}"
        );
    }
}

/// Same shape and |got − want| ≤ tol·(1 + |want|) everywhere (NaN where the CPU has NaN).
fn assert_close(got: &Tensor, want: &Tensor, tol: f32, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes");
    for (i, (&g, &w)) in got.iter().zip(want.iter()).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else {
            g == w || (g - w).abs() <= tol * (1.0 + w.abs())
        };
        assert!(ok, "{what}: element {i}: {g:e} vs {w:e}");
    }
}

/// The error kind and op of a result that must fail.
fn kind<T>(r: sim::Result<T>) -> (&'static str, &'static str) {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(Error::Shape { op, .. }) => ("shape", op),
        Err(Error::Param { op, .. }) => ("param", op),
        Err(Error::NonFinite { .. }) => ("nonfinite", ""),
        Err(Error::Other(m)) => panic!("unexpected Error::Other: {m}"),
    }
}

/// Both backends fail with the same kind of error naming the same op.
macro_rules! same_error {
    ($cpu:expr, $gpu:expr) => {{
        let c = kind($cpu);
        let g = kind($gpu);
        assert_eq!(g, c, "GPU error vs CPU error");
    }};
}

/// Values from a small set, so that windows hold ties.
fn tied(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let s = Stream::new(seed, "parity.tied");
    tensor(
        shape,
        (0..n).map(|i| s.below(i as u64, 4) as f32 - 1.0).collect(),
    )
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// pooling

/// (kernel, stride, input shape).
type PoolCase = ((usize, usize), (usize, usize), [usize; 4]);

const POOLS: [PoolCase; 9] = [
    ((2, 2), (2, 2), [2, 3, 6, 8]), // the EP-CNN's pooling, non-square input
    ((2, 2), (2, 2), [3, 5, 33, 35]), // odd sizes: the last row and column dropped
    ((3, 3), (2, 2), [1, 2, 7, 9]), // overlapping windows
    ((3, 3), (1, 1), [2, 2, 6, 7]), // heavily overlapping (stride 1)
    ((2, 3), (1, 2), [2, 2, 5, 7]), // non-square window, stride != kernel
    ((3, 2), (3, 1), [1, 3, 10, 6]), // rows dropped by the stride
    ((2, 2), (3, 4), [2, 2, 11, 13]), // stride > kernel: positions in no window
    ((1, 1), (1, 1), [1, 1, 3, 3]), // identity pooling
    ((4, 4), (2, 2), [16, 32, 16, 16]), // 131,072 inputs
];

fn params(k: (usize, usize), s: (usize, usize)) -> Pool2dParams {
    Pool2dParams {
        kernel: k,
        stride: s,
    }
}

#[test]
fn max_pool_unpool_gather_match_cpu_bit_for_bit() {
    let cpu = Cpu;
    for (seed, &(k, s, shape)) in POOLS.iter().enumerate() {
        let p = params(k, s);
        let hw = (shape[2], shape[3]);
        for (name, x) in [
            ("normal", test_tensor(&shape, seed as u64, 1.0)),
            ("tied", tied(&shape, seed as u64)),
        ] {
            let what = format!("{p:?} {shape:?} {name}");
            let (y, idx) = cpu.max_pool2d(&x, p).unwrap();
            let (gy, gidx) = gpu().max_pool2d(&up(&x), p).unwrap();
            assert_bits(&down(&gy), &y, &format!("max_pool {what}"));
            let want: Vec<u32> = idx.iter().copied().collect();
            assert_eq!(gpu().download_index(&gidx).unwrap(), want, "argmax {what}");
            // Unpooling (overlapping windows sum) and the gather, from the pooled indices and from
            // the same indices uploaded (no window information: every output is matched).
            let r = test_tensor(y.shape(), 100 + seed as u64, 1.0);
            let u = cpu.max_unpool2d(&r, &idx, hw).unwrap();
            let uploaded = gpu().upload_index(y.shape(), &want).unwrap();
            assert_bits(
                &down(&gpu().max_unpool2d(&up(&r), &gidx, hw).unwrap()),
                &u,
                &format!("max_unpool {what}"),
            );
            if x.len() <= 10_000 {
                assert_bits(
                    &down(&gpu().max_unpool2d(&up(&r), &uploaded, hw).unwrap()),
                    &u,
                    &format!("max_unpool (uploaded indices) {what}"),
                );
            }
            let z = test_tensor(&shape, 200 + seed as u64, 1.0);
            let g = cpu.pool_gather(&z, &idx).unwrap();
            assert_bits(
                &down(&gpu().pool_gather(&up(&z), &gidx).unwrap()),
                &g,
                &format!("pool_gather {what}"),
            );
        }
    }
}

#[test]
fn max_pool_ties_nan_and_infinities_follow_the_cpu_rule() {
    let cpu = Cpu;
    // The hand example of sim's tests: ties go to the first in row-major window order.
    #[rustfmt::skip]
    let x = tensor(&[1, 1, 4, 4], vec![
        1.0, 5.0, 2.0, 2.0,
        3.0, 4.0, 2.0, 2.0,
        -1.0, -2.0, 7.0, 0.0,
        -3.0, -1.0, 0.0, 7.0,
    ]).unwrap();
    let (gy, gi) = gpu().max_pool2d(&up(&x), Pool2dParams::new(2, 2)).unwrap();
    assert_eq!(down(&gy).as_slice().unwrap(), &[5.0, 2.0, -1.0, 7.0]);
    assert_eq!(gpu().download_index(&gi).unwrap(), vec![1, 2, 8, 10]);
    // NaN, ±∞, −0 against +0, in every window position, for 2×2/2 and overlapping 3×3/1.
    let specials = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -0.0,
        0.0,
        1.0,
        -1.0,
    ];
    let mut v = Vec::new();
    let st = Stream::new(7, "parity.specials");
    for i in 0..2 * 3 * 9 * 9 {
        v.push(specials[st.below(i, specials.len() as u64) as usize]);
    }
    let x = tensor(&[2, 3, 9, 9], v).unwrap();
    for p in [
        Pool2dParams::new(2, 2),
        Pool2dParams::new(3, 1),
        params((2, 3), (3, 2)),
    ] {
        let (y, idx) = cpu.max_pool2d(&x, p).unwrap();
        let (gy, gidx) = gpu().max_pool2d(&up(&x), p).unwrap();
        assert_bits(&down(&gy), &y, &format!("specials {p:?}"));
        assert_eq!(
            gpu().download_index(&gidx).unwrap(),
            idx.iter().copied().collect::<Vec<_>>(),
            "specials argmax {p:?}"
        );
    }
    // All −∞: the first position.
    let xi = Tensor::from_elem(ndarray::IxDyn(&[1, 1, 2, 2]), f32::NEG_INFINITY);
    let (_, ii) = gpu().max_pool2d(&up(&xi), Pool2dParams::new(2, 2)).unwrap();
    assert_eq!(gpu().download_index(&ii).unwrap(), vec![0]);
}

#[test]
fn unpool_into_another_plane_and_hand_overlap() {
    let cpu = Cpu;
    // The centre wins all four 2×2 windows of a 3×3 plane: its gradient is the sum.
    let x = tensor(&[1, 1, 3, 3], vec![0., 0., 0., 0., 9., 0., 0., 0., 0.]).unwrap();
    let (_, gidx) = gpu().max_pool2d(&up(&x), Pool2dParams::new(2, 1)).unwrap();
    let g = tensor(&[1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let u = down(&gpu().max_unpool2d(&up(&g), &gidx, (3, 3)).unwrap());
    assert_eq!(
        u.as_slice().unwrap(),
        &[0., 0., 0., 0., 10., 0., 0., 0., 0.]
    );
    // Flat indices read in a larger plane than the pooled one (as the CPU does).
    let x = test_tensor(&[2, 2, 7, 9], 5, 1.0);
    let p = params((3, 3), (2, 2));
    let (y, idx) = cpu.max_pool2d(&x, p).unwrap();
    let (_, gidx) = gpu().max_pool2d(&up(&x), p).unwrap();
    for hw in [(8, 10), (9, 7), (7, 9)] {
        assert_bits(
            &down(&gpu().max_unpool2d(&up(&y), &gidx, hw).unwrap()),
            &cpu.max_unpool2d(&y, &idx, hw).unwrap(),
            &format!("unpool into {hw:?}"),
        );
    }
    // Arbitrary uploaded indices, repeated ones summing.
    let ids: Vec<u32> = (0..2 * 2 * 3 * 4).map(|i| (i * 7 % 5) as u32).collect();
    let cidx = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[2, 2, 3, 4]), ids.clone()).unwrap();
    let gi = gpu().upload_index(&[2, 2, 3, 4], &ids).unwrap();
    let r = test_tensor(&[2, 2, 3, 4], 9, 1.0);
    assert_bits(
        &down(&gpu().max_unpool2d(&up(&r), &gi, (2, 3)).unwrap()),
        &cpu.max_unpool2d(&r, &cidx, (2, 3)).unwrap(),
        "unpool uploaded",
    );
    let z = test_tensor(&[2, 2, 2, 3], 10, 1.0);
    assert_bits(
        &down(&gpu().pool_gather(&up(&z), &gi).unwrap()),
        &cpu.pool_gather(&z, &cidx).unwrap(),
        "gather uploaded",
    );
}

#[test]
fn avg_pool_and_adjoint_match_cpu() {
    let cpu = Cpu;
    for (seed, &(k, s, shape)) in POOLS.iter().enumerate() {
        let p = params(k, s);
        let x = test_tensor(&shape, 300 + seed as u64, 1.0);
        let y = cpu.avg_pool2d(&x, p).unwrap();
        assert_close(
            &down(&gpu().avg_pool2d(&up(&x), p).unwrap()),
            &y,
            1e-6,
            &format!("avg_pool {p:?}"),
        );
        let r = test_tensor(y.shape(), 400 + seed as u64, 1.0);
        let hw = (shape[2], shape[3]);
        assert_close(
            &down(&gpu().avg_pool2d_adjoint(&up(&r), hw, p).unwrap()),
            &cpu.avg_pool2d_adjoint(&r, hw, p).unwrap(),
            1e-6,
            &format!("avg_pool_adjoint {p:?}"),
        );
    }
    let x = tensor(&[1, 1, 2, 4], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]).unwrap();
    let y = down(&gpu().avg_pool2d(&up(&x), Pool2dParams::new(2, 2)).unwrap());
    assert_eq!(y.as_slice().unwrap(), &[3.5, 5.5]);
    let g = down(
        &gpu()
            .avg_pool2d_adjoint(&up(&y), (2, 4), Pool2dParams::new(2, 2))
            .unwrap(),
    );
    assert_eq!(
        g.as_slice().unwrap(),
        &[0.875, 0.875, 1.375, 1.375, 0.875, 0.875, 1.375, 1.375]
    );
}

#[test]
fn pool_errors_match_cpu() {
    let cpu = Cpu;
    let x3 = test_tensor(&[2, 4, 4], 1, 1.0);
    same_error!(
        cpu.max_pool2d(&x3, Pool2dParams::new(2, 2)),
        gpu().max_pool2d(&up(&x3), Pool2dParams::new(2, 2))
    );
    same_error!(
        cpu.avg_pool2d(&x3, Pool2dParams::new(2, 2)),
        gpu().avg_pool2d(&up(&x3), Pool2dParams::new(2, 2))
    );
    let x = test_tensor(&[1, 1, 3, 3], 1, 1.0);
    for p in [
        Pool2dParams::new(4, 1),
        Pool2dParams::new(2, 0),
        Pool2dParams::new(0, 1),
    ] {
        same_error!(cpu.max_pool2d(&x, p), gpu().max_pool2d(&up(&x), p));
        same_error!(cpu.avg_pool2d(&x, p), gpu().avg_pool2d(&up(&x), p));
    }
    let (y, idx) = cpu.max_pool2d(&x, Pool2dParams::new(2, 1)).unwrap();
    let (gy, gidx) = gpu().max_pool2d(&up(&x), Pool2dParams::new(2, 1)).unwrap();
    // Indices out of range of the stated plane: from the pooling, and uploaded.
    same_error!(
        cpu.max_unpool2d(&y, &idx, (1, 1)),
        gpu().max_unpool2d(&gy, &gidx, (1, 1))
    );
    let ids: Vec<u32> = idx.iter().copied().collect();
    let gi = gpu().upload_index(&[1, 1, 2, 2], &ids).unwrap();
    same_error!(
        cpu.max_unpool2d(&y, &idx, (1, 2)),
        gpu().max_unpool2d(&gy, &gi, (1, 2))
    );
    let small = test_tensor(&[1, 1, 1, 2], 2, 1.0);
    same_error!(
        cpu.pool_gather(&small, &idx),
        gpu().pool_gather(&up(&small), &gidx)
    );
    same_error!(
        cpu.pool_gather(&small, &idx),
        gpu().pool_gather(&up(&small), &gi)
    );
    // A plane smaller than the pooled one, yet every actual index inside it: no error (the
    // indices' bound does not settle it, so they are read back).
    let corner = tensor(&[1, 1, 3, 3], vec![9., 0., 0., 0., 0., 0., 0., 0., 0.]).unwrap();
    let (_, idx_c) = cpu.max_pool2d(&corner, Pool2dParams::new(3, 1)).unwrap();
    let (_, gidx_c) = gpu()
        .max_pool2d(&up(&corner), Pool2dParams::new(3, 1))
        .unwrap();
    let one = tensor(&[1, 1, 1, 1], vec![2.5]).unwrap();
    let want = cpu.max_unpool2d(&one, &idx_c, (1, 1)).unwrap();
    assert_bits(
        &down(&gpu().max_unpool2d(&up(&one), &gidx_c, (1, 1)).unwrap()),
        &want,
        "unpool into a smaller plane",
    );
    let z1 = tensor(&[1, 1, 1, 1], vec![4.0]).unwrap();
    let want = cpu.pool_gather(&z1, &idx_c).unwrap();
    assert_bits(
        &down(&gpu().pool_gather(&up(&z1), &gidx_c).unwrap()),
        &want,
        "gather from a smaller plane",
    );
    // Values and indices of different shapes.
    let y2 = test_tensor(&[1, 1, 2, 1], 3, 1.0);
    same_error!(
        cpu.max_unpool2d(&y2, &idx, (3, 3)),
        gpu().max_unpool2d(&up(&y2), &gidx, (3, 3))
    );
    same_error!(
        cpu.pool_gather(&x3, &idx),
        gpu().pool_gather(&up(&x3), &gidx)
    );
    let gy4 = test_tensor(&[1, 1, 2, 2], 4, 1.0);
    same_error!(
        cpu.avg_pool2d_adjoint(&gy4, (6, 6), Pool2dParams::new(2, 2)),
        gpu().avg_pool2d_adjoint(&up(&gy4), (6, 6), Pool2dParams::new(2, 2))
    );
}

// ---------------------------------------------------------------------------------------------
// reductions

#[test]
fn reductions_are_exact_where_the_cpu_is() {
    let g = gpu();
    let a = tensor(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let b = tensor(&[2, 2], vec![0.5, -1.0, 2.0, 0.25]).unwrap();
    assert_eq!(g.sum_all(&up(&a)).unwrap(), 10.0);
    assert_eq!(g.dot(&up(&a), &up(&b)).unwrap(), 0.5 - 2.0 + 6.0 + 1.0);
    assert_eq!(
        down(&g.sum_except(&up(&a), 0).unwrap()).as_slice().unwrap(),
        &[3.0, 7.0]
    );
    assert_eq!(
        down(&g.sum_except(&up(&a), 1).unwrap()).as_slice().unwrap(),
        &[4.0, 6.0]
    );
    let e = Tensor::zeros(ndarray::IxDyn(&[0, 3]));
    assert_eq!(g.sum_all(&up(&e)).unwrap(), 0.0);
    assert_eq!(
        down(&g.sum_except(&up(&e), 1).unwrap()).as_slice().unwrap(),
        &[0.0; 3]
    );
    let scalar = tensor(&[], vec![2.5]).unwrap();
    assert_eq!(g.sum_all(&up(&scalar)).unwrap(), 2.5);
    // The CPU test's large inputs: integer sums exact, many 0.1s correctly rounded.
    let n = 100_003usize;
    let x = tensor(&[n], (0..n).map(|i| (i % 7) as f32).collect()).unwrap();
    let exact: u64 = (0..n).map(|i| (i % 7) as u64).sum();
    let ones = tensor(&[n], vec![1.0; n]).unwrap();
    assert_eq!(g.sum_all(&up(&x)).unwrap(), exact as f32);
    assert_eq!(g.dot(&up(&x), &up(&ones)).unwrap(), exact as f32);
    let t = tensor(&[n], vec![0.1; n]).unwrap();
    assert_eq!(
        g.sum_all(&up(&t)).unwrap(),
        (0.1f32 as f64 * n as f64) as f32
    );
    // Cancellation: 1e8 + (1 + 1 + ...) − 1e8 needs more than f32 accumulators.
    let m = 1 << 20;
    let mut v = vec![1.0f32; m];
    v[0] = 1e8;
    v[m - 1] = -1e8;
    let c = tensor(&[m], v).unwrap();
    assert_eq!(g.sum_all(&up(&c)).unwrap(), Cpu.sum_all(&c).unwrap());
    assert_eq!(g.sum_all(&up(&c)).unwrap(), (m - 2) as f32);
    // One rounding of the exact sum, ties to even, the bits below the halfway point counted.
    let two24 = 16_777_216.0f32;
    for (v, want) in [
        (vec![two24, 1.0], two24),
        (vec![two24, 3.0], two24 + 4.0),
        (vec![two24, 1.0, 2f32.powi(-20)], two24 + 2.0),
        (
            vec![1.0, two24, -1.0, 1.0, 2f32.powi(-30), -two24],
            1.0 + 2f32.powi(-30),
        ),
    ] {
        let t = tensor(&[v.len()], v.clone()).unwrap();
        assert_eq!(Cpu.sum_all(&t).unwrap(), want, "CPU {v:?}");
        assert_eq!(g.sum_all(&up(&t)).unwrap(), want, "{v:?}");
        let ones = tensor(&[v.len()], vec![1.0; v.len()]).unwrap();
        assert_eq!(g.dot(&up(&t), &up(&ones)).unwrap(), want, "dot {v:?}");
    }
    // Non-finite values propagate as on the CPU.
    let inf = tensor(&[3], vec![1.0, f32::INFINITY, 2.0]).unwrap();
    assert_eq!(g.sum_all(&up(&inf)).unwrap(), f32::INFINITY);
    let nan = tensor(
        &[600],
        (0..600)
            .map(|i| if i == 599 { f32::NAN } else { 1.0 })
            .collect(),
    )
    .unwrap();
    assert!(g.sum_all(&up(&nan)).unwrap().is_nan());
}

#[test]
fn reductions_match_cpu_on_many_sizes() {
    let (cpu, g) = (Cpu, gpu());
    for (i, n) in [1usize, 7, 255, 256, 257, 2047, 2049, 65_537, 1_000_003]
        .into_iter()
        .enumerate()
    {
        let a = test_tensor(&[n], 500 + i as u64, 3.0);
        let b = test_tensor(&[n], 600 + i as u64, 1.0);
        let (ga, gb) = (up(&a), up(&b));
        let (s, gs) = (cpu.sum_all(&a).unwrap(), g.sum_all(&ga).unwrap());
        assert!(
            (s - gs).abs() <= 1e-6 * (1.0 + s.abs()),
            "sum_all n={n}: {gs} vs {s}"
        );
        let (d, gd) = (cpu.dot(&a, &b).unwrap(), g.dot(&ga, &gb).unwrap());
        assert!(
            (d - gd).abs() <= 1e-6 * (1.0 + d.abs()),
            "dot n={n}: {gd} vs {d}"
        );
        // Deterministic: the same bits again.
        assert_eq!(g.sum_all(&ga).unwrap().to_bits(), gs.to_bits());
        // The device scalar is a 0-d tensor.
        assert_eq!(g.sum_all_device(&ga).unwrap().shape(), &[] as &[usize]);
    }
    for shape in [
        vec![3, 4, 5, 2],
        vec![1000, 37],
        vec![2, 70_000],
        vec![7, 1, 300],
        vec![64, 16, 33, 17],
        vec![5],
    ] {
        let x = test_tensor(&shape, shape.len() as u64, 1.0);
        let gx = up(&x);
        for axis in 0..shape.len() {
            assert_close(
                &down(&g.sum_except(&gx, axis).unwrap()),
                &cpu.sum_except(&x, axis).unwrap(),
                1e-6,
                &format!("sum_except {shape:?} axis {axis}"),
            );
        }
    }
}

#[test]
fn reduction_errors_match_cpu() {
    let (cpu, g) = (Cpu, gpu());
    let a = test_tensor(&[2, 3], 1, 1.0);
    let b = test_tensor(&[3, 2], 2, 1.0);
    same_error!(cpu.dot(&a, &b), g.dot(&up(&a), &up(&b)));
    same_error!(cpu.sum_except(&a, 2), g.sum_except(&up(&a), 2));
}

// ---------------------------------------------------------------------------------------------
// softmax family

#[test]
fn softmax_family_matches_cpu() {
    let (cpu, g) = (Cpu, gpu());
    for (i, shape) in [
        vec![1, 10],
        vec![7, 300],
        vec![3, 2, 5],
        vec![1000, 10],
        vec![2, 1],
        vec![4, 1025],
        vec![1, 70_000],
        vec![66_000, 2],
        vec![5, 0],
    ]
    .into_iter()
    .enumerate()
    {
        let x = test_tensor(&shape, 700 + i as u64, 4.0);
        let gx = up(&x);
        let what = format!("{shape:?}");
        assert_close(
            &down(&g.softmax(&gx).unwrap()),
            &cpu.softmax(&x).unwrap(),
            1e-5,
            &format!("softmax {what}"),
        );
        let y = cpu.log_softmax(&x).unwrap();
        let gyl = g.log_softmax(&gx).unwrap();
        assert_close(&down(&gyl), &y, 1e-5, &format!("log_softmax {what}"));
        let r = test_tensor(&shape, 800 + i as u64, 1.0);
        assert_close(
            &down(&g.log_softmax_grad(&up(&y), &up(&r)).unwrap()),
            &cpu.log_softmax_grad(&y, &r).unwrap(),
            1e-5,
            &format!("log_softmax_grad {what}"),
        );
    }
    // Stability and NaN: large logits, very negative ones, a NaN in one row only.
    let ln2 = std::f32::consts::LN_2;
    let x = tensor(
        &[3, 3],
        vec![
            0.0,
            ln2,
            1000.0,
            1000.0,
            1000.0,
            -1000.0,
            0.0,
            f32::NAN,
            1.0,
        ],
    )
    .unwrap();
    assert_close(
        &down(&g.softmax(&up(&x)).unwrap()),
        &cpu.softmax(&x).unwrap(),
        1e-6,
        "softmax special",
    );
    assert_close(
        &down(&g.log_softmax(&up(&x)).unwrap()),
        &cpu.log_softmax(&x).unwrap(),
        1e-6,
        "log_softmax special",
    );
    let s = down(&g.softmax(&up(&x)).unwrap());
    assert!(s.as_slice().unwrap()[6..].iter().all(|v| v.is_nan()));
    assert!(s.as_slice().unwrap()[..6].iter().all(|v| v.is_finite()));
}

#[test]
fn cross_entropy_matches_cpu() {
    let (cpu, g) = (Cpu, gpu());
    let z = Tensor::zeros(ndarray::IxDyn(&[2, 4]));
    let (loss, grad) = g.cross_entropy(&up(&z), &[1, 3]).unwrap();
    assert!((loss - 4.0f32.ln()).abs() < 1e-6);
    assert_close(
        &down(&grad),
        &cpu.cross_entropy(&z, &[1, 3]).unwrap().1,
        1e-7,
        "uniform logits",
    );
    for (i, (n, k)) in [(5, 7), (1, 2), (128, 10), (3, 600), (4097, 3)]
        .into_iter()
        .enumerate()
    {
        let x = test_tensor(&[n, k], 900 + i as u64, 3.0);
        let st = Stream::new(i as u64, "parity.labels");
        let labels: Vec<usize> = (0..n)
            .map(|j| st.below(j as u64, k as u64) as usize)
            .collect();
        let (cl, cg) = cpu.cross_entropy(&x, &labels).unwrap();
        let (gl, gg) = g.cross_entropy(&up(&x), &labels).unwrap();
        assert!(
            (cl - gl).abs() <= 1e-6 * (1.0 + cl.abs()),
            "loss {n}x{k}: {gl} vs {cl}"
        );
        assert_close(&down(&gg), &cg, 1e-6, &format!("dlogits {n}x{k}"));
    }
}

#[test]
fn softmax_errors_match_cpu() {
    let (cpu, g) = (Cpu, gpu());
    let s = Tensor::zeros(ndarray::IxDyn(&[]));
    same_error!(cpu.softmax(&s), g.softmax(&up(&s)));
    same_error!(cpu.log_softmax(&s), g.log_softmax(&up(&s)));
    let a = test_tensor(&[2, 3], 1, 1.0);
    let b = test_tensor(&[3, 2], 1, 1.0);
    same_error!(
        cpu.log_softmax_grad(&a, &b),
        g.log_softmax_grad(&up(&a), &up(&b))
    );
    let x = test_tensor(&[5, 7], 3, 2.0);
    same_error!(
        cpu.cross_entropy(&x, &[0, 1, 2, 3, 7]),
        g.cross_entropy(&up(&x), &[0, 1, 2, 3, 7])
    );
    same_error!(
        cpu.cross_entropy(&x, &[0, 1]),
        g.cross_entropy(&up(&x), &[0, 1])
    );
    let x3 = test_tensor(&[2, 3, 4], 1, 1.0);
    same_error!(
        cpu.cross_entropy(&x3, &[0, 1]),
        g.cross_entropy(&up(&x3), &[0, 1])
    );
    let empty = Tensor::zeros(ndarray::IxDyn(&[0, 3]));
    same_error!(
        cpu.cross_entropy(&empty, &[]),
        g.cross_entropy(&up(&empty), &[])
    );
}

// ---------------------------------------------------------------------------------------------
// norms

#[test]
fn layer_norm_matches_cpu() {
    let (cpu, g) = (Cpu, gpu());
    for (i, shape) in [
        vec![4, 7],
        vec![3, 2, 300],
        vec![1, 1000],
        vec![5, 1],
        vec![64, 257],
        vec![0, 4],
    ]
    .into_iter()
    .enumerate()
    {
        let d = *shape.last().unwrap();
        // An offset far larger than the spread: the variance needs an accurate mean.
        let x = test_tensor(&shape, 1000 + i as u64, 0.01).mapv(|v| v + 100.0);
        let gamma = test_tensor(&[d], 1100 + i as u64, 1.0);
        let beta = test_tensor(&[d], 1200 + i as u64, 1.0);
        let what = format!("{shape:?}");
        let (y, m, rs) = cpu.layer_norm(&x, &gamma, &beta, 1e-5).unwrap();
        let (gy_, gm, grs) = g
            .layer_norm(&up(&x), &up(&gamma), &up(&beta), 1e-5)
            .unwrap();
        assert_close(&down(&gy_), &y, 1e-4, &format!("layer_norm y {what}"));
        assert_close(&down(&gm), &m, 1e-6, &format!("layer_norm mean {what}"));
        assert_close(&down(&grs), &rs, 1e-4, &format!("layer_norm rstd {what}"));
        let gy = test_tensor(&shape, 1300 + i as u64, 1.0);
        let (gx, gg, gb) = cpu.layer_norm_grad(&x, &gamma, &m, &rs, &gy).unwrap();
        let (ggx, ggg, ggb) = g
            .layer_norm_grad(&up(&x), &up(&gamma), &up(&m), &up(&rs), &up(&gy))
            .unwrap();
        assert_close(&down(&ggx), &gx, 1e-4, &format!("layer_norm gx {what}"));
        assert_close(&down(&ggg), &gg, 1e-4, &format!("layer_norm ggamma {what}"));
        assert_close(&down(&ggb), &gb, 1e-6, &format!("layer_norm gbeta {what}"));
    }
    // PyTorch's F.layer_norm([1, 2, 3], eps = 0) = [−√1.5, 0, √1.5].
    let x = tensor(&[1, 3], vec![1.0, 2.0, 3.0]).unwrap();
    let (one, zero) = (
        tensor(&[3], vec![1.0; 3]).unwrap(),
        tensor(&[3], vec![0.0; 3]).unwrap(),
    );
    let (y, _, _) = g.layer_norm(&up(&x), &up(&one), &up(&zero), 0.0).unwrap();
    let want = tensor(&[1, 3], vec![-1.5f32.sqrt(), 0.0, 1.5f32.sqrt()]).unwrap();
    assert_close(&down(&y), &want, 1e-6, "layer_norm hand value");
}

#[test]
fn batch_norm_matches_cpu() {
    let (cpu, g) = (Cpu, gpu());
    for (i, shape) in [
        vec![2, 3, 4, 5],
        vec![8, 16],
        vec![1, 2, 3000],
        vec![32, 8, 16, 16],
        vec![3, 1, 1, 1],
    ]
    .into_iter()
    .enumerate()
    {
        let c = shape[1];
        let x = test_tensor(&shape, 2000 + i as u64, 0.5).mapv(|v| v - 30.0);
        let gamma = test_tensor(&[c], 2100 + i as u64, 1.0);
        let beta = test_tensor(&[c], 2200 + i as u64, 1.0);
        let what = format!("{shape:?}");
        let (y, m, v) = cpu.batch_norm_train(&x, &gamma, &beta, 1e-5).unwrap();
        let (gy_, gm, gv) = g
            .batch_norm_train(&up(&x), &up(&gamma), &up(&beta), 1e-5)
            .unwrap();
        assert_close(&down(&gy_), &y, 1e-4, &format!("batch_norm_train y {what}"));
        assert_close(
            &down(&gm),
            &m,
            1e-6,
            &format!("batch_norm_train mean {what}"),
        );
        assert_close(
            &down(&gv),
            &v,
            1e-5,
            &format!("batch_norm_train var {what}"),
        );
        let ye = cpu
            .batch_norm_eval(&x, &gamma, &beta, &m, &v, 1e-3)
            .unwrap();
        let gye = g
            .batch_norm_eval(&up(&x), &up(&gamma), &up(&beta), &up(&m), &up(&v), 1e-3)
            .unwrap();
        assert_close(&down(&gye), &ye, 1e-4, &format!("batch_norm_eval {what}"));
        let gy = test_tensor(&shape, 2300 + i as u64, 1.0);
        let (gx, gg, gb) = cpu.batch_norm_grad(&x, &gamma, &m, &v, 1e-5, &gy).unwrap();
        let (ggx, ggg, ggb) = g
            .batch_norm_grad(&up(&x), &up(&gamma), &up(&m), &up(&v), 1e-5, &up(&gy))
            .unwrap();
        assert_close(&down(&ggx), &gx, 1e-4, &format!("batch_norm gx {what}"));
        assert_close(&down(&ggg), &gg, 1e-4, &format!("batch_norm ggamma {what}"));
        assert_close(&down(&ggb), &gb, 1e-5, &format!("batch_norm gbeta {what}"));
    }
}

#[test]
fn norms_of_ill_conditioned_inputs_match_cpu() {
    let (cpu, g) = (Cpu, gpu());
    // The mean of 2²⁴ and 2²⁴ + 2 is a tie (rounded to even, 2²⁴); the variance is taken about
    // the exact mean (1), not the rounded one (which would give 2).
    let x = tensor(&[2, 1], vec![16_777_216.0, 16_777_218.0]).unwrap();
    let one = tensor(&[1], vec![1.0]).unwrap();
    let (_, m, v) = g
        .batch_norm_train(&up(&x), &up(&one), &up(&one), 0.0)
        .unwrap();
    assert_eq!(down(&m).as_slice().unwrap(), &[16_777_216.0]);
    assert_eq!(down(&v).as_slice().unwrap(), &[1.0]);
    let (_, cm, cv) = cpu.batch_norm_train(&x, &one, &one, 0.0).unwrap();
    assert_eq!((cm[[0]], cv[[0]]), (16_777_216.0, 1.0));
    let xr = x
        .clone()
        .into_shape_with_order(ndarray::IxDyn(&[1, 2]))
        .unwrap();
    let two = tensor(&[2], vec![1.0, 1.0]).unwrap();
    let (_, m, rs) = g.layer_norm(&up(&xr), &up(&two), &up(&two), 0.0).unwrap();
    assert_eq!(down(&m).as_slice().unwrap(), &[16_777_216.0]);
    assert_eq!(down(&rs).as_slice().unwrap(), &[1.0]);
    // An offset 10⁶ times the spread: the statistics need exact sums and the exact mean.
    for (i, shape) in [vec![16, 4, 9, 9], vec![6, 1000]].into_iter().enumerate() {
        let c = shape[1];
        let x = test_tensor(&shape, 3000 + i as u64, 0.01).mapv(|v| v + 1e4);
        let gamma = test_tensor(&[c], 3100 + i as u64, 1.0);
        let beta = test_tensor(&[c], 3200 + i as u64, 1.0);
        let (y, m, v) = cpu.batch_norm_train(&x, &gamma, &beta, 1e-8).unwrap();
        let (gy_, gm, gv) = g
            .batch_norm_train(&up(&x), &up(&gamma), &up(&beta), 1e-8)
            .unwrap();
        assert_bits(&down(&gm), &m, &format!("batch_norm mean {shape:?}"));
        assert_close(&down(&gv), &v, 1e-5, &format!("batch_norm var {shape:?}"));
        assert_close(&down(&gy_), &y, 1e-4, &format!("batch_norm y {shape:?}"));
        let lead = shape[..shape.len() - 1].iter().product::<usize>();
        let d = *shape.last().unwrap();
        let x2 = x
            .clone()
            .into_shape_with_order(ndarray::IxDyn(&[lead, d]))
            .unwrap();
        let gd = test_tensor(&[d], 3300 + i as u64, 1.0);
        let (y, m, rs) = cpu.layer_norm(&x2, &gd, &gd, 1e-8).unwrap();
        let (gy_, gm, grs) = g.layer_norm(&up(&x2), &up(&gd), &up(&gd), 1e-8).unwrap();
        assert_bits(&down(&gm), &m, &format!("layer_norm mean {shape:?}"));
        assert_close(
            &down(&grs),
            &rs,
            1e-5,
            &format!("layer_norm rstd {shape:?}"),
        );
        assert_close(&down(&gy_), &y, 1e-4, &format!("layer_norm y {shape:?}"));
    }
}

#[test]
fn norm_errors_match_cpu() {
    let (cpu, g) = (Cpu, gpu());
    let x = test_tensor(&[2, 4], 1, 1.0);
    let g4 = test_tensor(&[4], 2, 1.0);
    let g3 = test_tensor(&[3], 2, 1.0);
    let (ux, u4, u3) = (up(&x), up(&g4), up(&g3));
    same_error!(
        cpu.layer_norm(&x, &g3, &g4, 1e-5),
        g.layer_norm(&ux, &u3, &u4, 1e-5)
    );
    same_error!(
        cpu.layer_norm(&x, &g4, &g3, 1e-5),
        g.layer_norm(&ux, &u4, &u3, 1e-5)
    );
    same_error!(
        cpu.layer_norm(&x, &g4, &g4, -1.0),
        g.layer_norm(&ux, &u4, &u4, -1.0)
    );
    let s = Tensor::zeros(ndarray::IxDyn(&[]));
    same_error!(
        cpu.layer_norm(&s, &g4, &g4, 1e-5),
        g.layer_norm(&up(&s), &u4, &u4, 1e-5)
    );
    let z = Tensor::zeros(ndarray::IxDyn(&[3, 0]));
    same_error!(
        cpu.layer_norm(&z, &g4, &g4, 1e-5),
        g.layer_norm(&up(&z), &u4, &u4, 1e-5)
    );
    let (_, m, rs) = cpu.layer_norm(&x, &g4, &g4, 1e-5).unwrap();
    let gy = test_tensor(&[4, 2], 3, 1.0);
    same_error!(
        cpu.layer_norm_grad(&x, &g4, &m, &rs, &gy),
        g.layer_norm_grad(&ux, &u4, &up(&m), &up(&rs), &up(&gy))
    );
    let gy = test_tensor(&[2, 4], 3, 1.0);
    let m12 = m
        .clone()
        .into_shape_with_order(ndarray::IxDyn(&[1, 2]))
        .unwrap();
    same_error!(
        cpu.layer_norm_grad(&x, &g4, &m12, &rs, &gy),
        g.layer_norm_grad(&ux, &u4, &up(&m12), &up(&rs), &up(&gy))
    );

    let x = test_tensor(&[2, 3, 2, 2], 1, 1.0);
    let g2 = test_tensor(&[2], 2, 1.0);
    let ux = up(&x);
    let u2 = up(&g2);
    same_error!(
        cpu.batch_norm_train(&x, &g2, &g3, 1e-5),
        g.batch_norm_train(&ux, &u2, &u3, 1e-5)
    );
    same_error!(
        cpu.batch_norm_train(&x, &g3, &g3, f32::NAN),
        g.batch_norm_train(&ux, &u3, &u3, f32::NAN)
    );
    let x1 = test_tensor(&[3], 1, 1.0);
    same_error!(
        cpu.batch_norm_train(&x1, &g3, &g3, 1e-5),
        g.batch_norm_train(&up(&x1), &u3, &u3, 1e-5)
    );
    let single = test_tensor(&[1, 3], 1, 1.0);
    same_error!(
        cpu.batch_norm_train(&single, &g3, &g3, 1e-5),
        g.batch_norm_train(&up(&single), &u3, &u3, 1e-5)
    );
    // Variances are checked on the values: negative or NaN is refused, every time.
    for bad in [vec![1.0, -1.0, 1.0], vec![1.0, 1.0, f32::NAN]] {
        let v = tensor(&[3], bad).unwrap();
        let uv = up(&v);
        for _ in 0..2 {
            same_error!(
                cpu.batch_norm_eval(&x, &g3, &g3, &g3, &v, 1e-5),
                g.batch_norm_eval(&ux, &u3, &u3, &u3, &uv, 1e-5)
            );
        }
    }
    let ok = up(&tensor(&[3], vec![1.0, 0.0, 2.0]).unwrap());
    for _ in 0..2 {
        g.batch_norm_eval(&ux, &u3, &u3, &u3, &ok, 1e-5).unwrap();
    }
    same_error!(
        cpu.batch_norm_eval(&x, &g3, &g3, &g2, &g3, 1e-5),
        g.batch_norm_eval(&ux, &u3, &u3, &u2, &u3, 1e-5)
    );
    let gy = test_tensor(&[2, 3, 2, 1], 1, 1.0);
    let ones = tensor(&[3], vec![1.0; 3]).unwrap();
    same_error!(
        cpu.batch_norm_grad(&x, &g3, &g3, &ones, 1e-5, &gy),
        g.batch_norm_grad(&ux, &u3, &u3, &up(&ones), 1e-5, &up(&gy))
    );
    let e = Tensor::zeros(ndarray::IxDyn(&[0, 3]));
    same_error!(
        cpu.batch_norm_grad(&e, &g3, &g3, &ones, 1e-5, &e),
        g.batch_norm_grad(&up(&e), &u3, &u3, &up(&ones), 1e-5, &up(&e))
    );
}

// ---------------------------------------------------------------------------------------------
// random draws

#[test]
fn uniform_draws_are_the_cpu_bits_and_normals_agree() {
    let g = gpu();
    let streams = [
        Stream::new(1, "parity.rng"),
        Stream::new(42, "noise").sub(3),
    ];
    let offsets = [
        0u64,
        1,
        3,
        (1 << 32) - 5,
        (1 << 32) - 1,
        1 << 32,
        (1 << 40) + 2,
        u64::MAX - 1_000,
    ];
    for (si, st) in streams.iter().enumerate() {
        for &off in &offsets {
            for shape in [vec![1], vec![7], vec![5, 3, 2], vec![1001]] {
                let n: usize = shape.iter().product();
                let u = down(&g.rand(&shape, st, off).unwrap());
                let want: Vec<f32> = (0..n as u64)
                    .map(|i| st.uniform(off.wrapping_add(i)))
                    .collect();
                let got: Vec<u32> = u.iter().map(|v| v.to_bits()).collect();
                let want: Vec<u32> = want.iter().map(|v| v.to_bits()).collect();
                assert_eq!(got, want, "rand stream {si} offset {off} shape {shape:?}");
                let z = down(&g.randn(&shape, st, off).unwrap());
                for (i, &v) in z.iter().enumerate() {
                    let w = st.normal(off.wrapping_add(i as u64));
                    assert!(
                        (v - w).abs() <= 1e-5,
                        "randn stream {si} offset {off} #{i}: {v} vs {w}"
                    );
                }
            }
        }
    }
    // A million draws against the CPU backend (whose chunks split the same function).
    let st = streams[0];
    let shape = [1000, 1000];
    let off = (1 << 32) - 77;
    let (cu, gu) = (
        Cpu.rand(&shape, &st, off).unwrap(),
        down(&g.rand(&shape, &st, off).unwrap()),
    );
    assert_bits(&gu, &cu, "rand 1e6");
    let (cz, gz) = (
        Cpu.randn(&shape, &st, off).unwrap(),
        down(&g.randn(&shape, &st, off).unwrap()),
    );
    assert_close(&gz, &cz, 1e-5, "randn 1e6");
    let worst = gz
        .iter()
        .zip(cz.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-5, "randn worst difference {worst}");
}

#[test]
fn draws_beyond_32_bit_indexing_are_refused() {
    let st = Stream::new(1, "parity.rng");
    for shape in [vec![1 << 16, 1 << 16], vec![usize::MAX, 2]] {
        assert!(
            matches!(gpu().rand(&shape, &st, 0), Err(Error::Other(_))),
            "{shape:?}"
        );
        assert!(
            matches!(gpu().randn(&shape, &st, 0), Err(Error::Other(_))),
            "{shape:?}"
        );
    }
}
