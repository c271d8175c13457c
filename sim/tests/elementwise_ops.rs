//! CPU-only properties of the element maps, arithmetic, reductions, pooling, softmax family and
//! norms: bitwise identity with the scalar definitions, f64 accumulation, operands in
//! non-standard ndarray layouts, and bit-for-bit independence of the rayon thread count. The op
//! semantics every backend shares (values, gradients, errors) are in `sim::conformance`, run on the
//! CPU by `tests/conformance.rs`.

use sim::conformance::refs::bits;
use sim::cpu;
use sim::gradcheck::test_tensor;
use sim::{Act, Pool2dParams, Tensor, tensor};

/// Run `f` inside a rayon pool of `n` threads.
fn with_threads<T: Send>(n: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .unwrap()
        .install(f)
}

/// The CPU computes every element map with the scalar definition itself (`Act::f`, `Act::df`)
/// and axpy unfused, so its results are those bit for bit (the conformance suite allows a few
/// ulps), on tensors long enough for the vectorized and parallel paths.
#[test]
fn maps_and_axpy_are_bitwise_the_scalar_definitions() {
    let x = test_tensor(&[3, 70_001], 1, 1.5);
    let r = test_tensor(&[3, 70_001], 2, 1.0);
    for act in [
        Act::Identity,
        Act::HardSigmoid,
        Act::MyHardSig,
        Act::MySigmoid,
        Act::Relu,
        Act::Gelu,
        Act::Clamp { lo: -0.3, hi: 0.7 },
    ] {
        assert_eq!(
            bits(&cpu::map(&x, act).unwrap()),
            bits(&x.mapv(|v| act.f(v))),
            "map {act:?}"
        );
        let want: Tensor = ndarray::Zip::from(&x)
            .and(&r)
            .map_collect(|&x, &g| g * act.df(x));
        assert_eq!(
            bits(&cpu::map_grad(&x, &r, act).unwrap()),
            bits(&want),
            "map_grad {act:?}"
        );
    }
    let ax: Tensor = ndarray::Zip::from(&x)
        .and(&r)
        .map_collect(|&x, &y| 0.75 * x + y);
    assert_eq!(bits(&cpu::axpy(0.75, &x, &r).unwrap()), bits(&ax));
}

/// Sums accumulate in f64: Σ of 100 003 copies of 0.1 is the correctly rounded f32 of the exact
/// sum (the conformance suite asks 1e-6 relative of any backend).
#[test]
fn sums_accumulate_in_f64() {
    let n = 100_003usize;
    let t = tensor(&[n], vec![0.1; n]).unwrap();
    let want = (0.1f32 as f64 * n as f64) as f32;
    assert_eq!(cpu::sum_all(&t).unwrap(), want);
    let ones = tensor(&[n], vec![1.0; n]).unwrap();
    assert_eq!(cpu::dot(&t, &ones).unwrap(), want);
}

#[test]
fn arithmetic_accepts_non_standard_layout() {
    let a = test_tensor(&[3, 4], 1, 1.0);
    let at = a.t().to_owned(); // Fortran-order owned array
    let b = test_tensor(&[4, 3], 2, 1.0);
    let sum = cpu::add(&at, &b).unwrap();
    for i in 0..4 {
        for j in 0..3 {
            assert_eq!(sum[[i, j]], a[[j, i]] + b[[i, j]]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// thread-count independence (tensors large enough to take the parallel paths)

fn run_all(seed: u64) -> Vec<Vec<u32>> {
    let shape = [8, 16, 24, 24]; // 73 728 elements
    let x = test_tensor(&shape, seed, 1.0);
    let y = test_tensor(&shape, seed + 1, 1.0);
    let c16 = test_tensor(&[16], seed + 2, 1.0);
    let c24 = test_tensor(&[24], seed + 3, 1.0);
    let mut out = vec![];
    let scalar = |v: f32| vec![v.to_bits()];
    out.push(bits(&cpu::map(&x, Act::Gelu).unwrap()));
    out.push(bits(&cpu::map_grad(&x, &y, Act::MySigmoid).unwrap()));
    out.push(bits(&cpu::axpy(0.3, &x, &y).unwrap()));
    out.push(bits(&cpu::add_along(&x, &c16, 1).unwrap()));
    out.push(scalar(cpu::sum_all(&x).unwrap()));
    out.push(scalar(cpu::dot(&x, &y).unwrap()));
    for axis in 0..4 {
        out.push(bits(&cpu::sum_except(&x, axis).unwrap()));
    }
    let p = Pool2dParams::new(3, 2);
    let (mp, idx) = cpu::max_pool2d(&x, p).unwrap();
    out.push(bits(&mp));
    out.push(idx.iter().copied().collect());
    out.push(bits(&cpu::max_unpool2d(&mp, &idx, (24, 24)).unwrap()));
    let ap = cpu::avg_pool2d(&x, p).unwrap();
    out.push(bits(&ap));
    out.push(bits(&cpu::avg_pool2d_adjoint(&ap, (24, 24), p).unwrap()));
    out.push(bits(&cpu::softmax(&x).unwrap()));
    let ls = cpu::log_softmax(&x).unwrap();
    out.push(bits(&ls));
    out.push(bits(&cpu::log_softmax_grad(&ls, &y).unwrap()));
    let logits = x
        .clone()
        .into_shape_with_order(ndarray::IxDyn(&[3072, 24]))
        .unwrap();
    let labels: Vec<usize> = (0..3072).map(|i| (i * 7) % 24).collect();
    let (l, g) = cpu::cross_entropy(&logits, &labels).unwrap();
    out.push(scalar(l));
    out.push(bits(&g));
    let (lny, m, rs) = cpu::layer_norm(&x, &c24, &c24, 1e-5).unwrap();
    out.push(bits(&lny));
    let (a, b, c) = cpu::layer_norm_grad(&x, &c24, &m, &rs, &y).unwrap();
    out.extend([bits(&a), bits(&b), bits(&c)]);
    let (bny, bm, bv) = cpu::batch_norm_train(&x, &c16, &c16, 1e-5).unwrap();
    out.extend([bits(&bny), bits(&bm), bits(&bv)]);
    out.push(bits(
        &cpu::batch_norm_eval(&x, &c16, &c16, &bm, &bv, 1e-5).unwrap(),
    ));
    let (a, b, c) = cpu::batch_norm_grad(&x, &c16, &bm, &bv, 1e-5, &y).unwrap();
    out.extend([bits(&a), bits(&b), bits(&c)]);
    out
}

#[test]
fn results_are_bitwise_independent_of_thread_count() {
    let one = with_threads(1, || run_all(5));
    let two = with_threads(2, || run_all(5));
    let three = with_threads(3, || run_all(5));
    assert_eq!(one.len(), two.len());
    for (i, ((a, b), c)) in one.iter().zip(&two).zip(&three).enumerate() {
        assert!(
            a == b && a == c,
            "result {i} differs between 1, 2 and 3 threads"
        );
    }
}
