//! Conformance of data movement: upload/download, fills, reshape, permute, concat and slice
//! (exact: every value, NaNs and signed zeros included, comes back bit for bit).

use super::refs::{
    Cases, Must, assert_param_err, assert_refused, assert_shape_err, bits, down, ip, up, zeros,
};
use crate::gradcheck::test_tensor;
use crate::{Backend, Tensor, tensor};

/// Values that must survive every copy: signed zeros, infinities, a NaN, subnormals, extremes.
fn special_values(n: usize) -> Vec<f32> {
    let specials = [
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MIN_POSITIVE / 4.0,
        f32::MAX,
        f32::MIN,
        1.0,
        -2.5,
    ];
    (0..n)
        .map(|i| specials[i % specials.len()] * if i % 3 == 0 { 1.0 } else { 1.5 })
        .collect()
}

pub fn upload_download_roundtrip<B: Backend>(be: &B) {
    for shape in [
        vec![],
        vec![0, 3],
        vec![5],
        vec![2, 3, 4, 5],
        vec![3, 70_001],
    ] {
        let n: usize = shape.iter().product();
        let t = tensor(&shape, special_values(n)).unwrap();
        let d = up(be, &t);
        assert_eq!(be.shape(&d), shape, "shape of the uploaded {shape:?}");
        let back = down(be, &d);
        assert_eq!(back.shape(), shape.as_slice());
        assert_eq!(bits(&back), bits(&t), "roundtrip of {shape:?}");
        let owned = be.upload_owned(t.clone()).must();
        assert_eq!(
            bits(&be.host(&owned).must()),
            bits(&t),
            "upload_owned/host of {shape:?}"
        );
    }
    // A non-standard host layout uploads as its logical (row-major) values.
    let a = test_tensor(&[3, 4], 1, 1.0);
    let at = a.t().to_owned();
    assert_eq!(down(be, &up(be, &at)), at.as_standard_layout().into_owned());
}

pub fn zeros_and_full<B: Backend>(be: &B) {
    for shape in [vec![], vec![0], vec![7], vec![2, 3, 5], vec![4, 1, 66_000]] {
        let z = down(be, &be.zeros(&shape).must());
        assert_eq!(z.shape(), shape.as_slice());
        assert!(z.iter().all(|v| v.to_bits() == 0), "zeros {shape:?}");
        for value in [2.5f32, -1e30, f32::INFINITY, -0.0] {
            let f = down(be, &be.full(&shape, value).must());
            assert_eq!(f.shape(), shape.as_slice());
            assert!(
                f.iter().all(|v| v.to_bits() == value.to_bits()),
                "full({shape:?}, {value})"
            );
        }
        let f = down(be, &be.full(&shape, f32::NAN).must());
        assert!(f.iter().all(|v| v.is_nan()), "full({shape:?}, NaN)");
    }
}

pub fn reshape_keeps_data_and_checks_size<B: Backend>(be: &B) {
    let x = test_tensor(&[2, 3, 4], 1, 1.0);
    let d = up(be, &x);
    for shape in [vec![24], vec![4, 6], vec![1, 2, 12, 1], vec![2, 3, 4]] {
        let r = be.reshape(&d, &shape).must();
        assert_eq!(be.shape(&r), shape);
        let h = down(be, &r);
        assert_eq!(
            h.iter().copied().collect::<Vec<_>>(),
            x.iter().copied().collect::<Vec<_>>()
        );
    }
    // Reshaping a permuted tensor reads it in its new row-major order.
    let p = be.permute(&d, &[2, 0, 1]).must();
    let flat = down(be, &be.reshape(&p, &[24]).must());
    let want: Vec<f32> = x
        .view()
        .permuted_axes(vec![2, 0, 1])
        .iter()
        .copied()
        .collect();
    assert_eq!(flat.as_slice().unwrap(), want.as_slice());
    // The source is unchanged by the reshape.
    assert_eq!(down(be, &d), x);
    assert_shape_err(be.reshape(&d, &[5, 5]), "reshape", "24 elements to 25");
    assert_shape_err(be.reshape(&d, &[0]), "reshape", "24 elements to 0");
    let e = up(be, &zeros(&[0, 4]));
    assert_eq!(
        down(be, &be.reshape(&e, &[2, 0, 3]).must()).shape(),
        &[2, 0, 3]
    );
}

pub fn permute_matches_ndarray<B: Backend>(be: &B) {
    let mut cases = Cases::new("conformance.permute");
    for rank in 1..=5usize {
        for rep in 0..4 {
            let shape: Vec<usize> = (0..rank).map(|_| cases.range(1, 5)).collect();
            let mut axes: Vec<usize> = (0..rank).collect();
            if rep > 0 {
                for i in (1..rank).rev() {
                    let j = cases.range(0, i + 1);
                    axes.swap(i, j);
                }
            }
            let x = test_tensor(&shape, 10 * rank as u64 + rep, 1.0);
            let want = x
                .view()
                .permuted_axes(axes.clone())
                .as_standard_layout()
                .into_owned();
            let got = down(be, &be.permute(&up(be, &x), &axes).must());
            assert_eq!(got, want, "permute {shape:?} by {axes:?}");
        }
    }
    // A large one (several workgroups / chunks).
    let x = test_tensor(&[3, 7, 50, 40], 5, 1.0);
    let want = x
        .view()
        .permuted_axes(vec![2, 0, 3, 1])
        .as_standard_layout()
        .into_owned();
    assert_eq!(
        down(be, &be.permute(&up(be, &x), &[2, 0, 3, 1]).must()),
        want
    );
}

pub fn permute_errors<B: Backend>(be: &B) {
    let x = up(be, &test_tensor(&[2, 3, 4], 1, 1.0));
    assert_refused(be.permute(&x, &[0, 1]), "permute", "too few axes");
    assert_refused(be.permute(&x, &[0, 1, 2, 3]), "permute", "too many axes");
    assert_refused(be.permute(&x, &[0, 1, 1]), "permute", "repeated axis");
    assert_refused(be.permute(&x, &[0, 1, 3]), "permute", "axis out of range");
}

pub fn concat_and_slice_match_ndarray<B: Backend>(be: &B) {
    // Hand example: [2,1,3] ++ [2,2,3] along axis 1.
    let a = tensor(&[2, 1, 3], (0..6).map(|v| v as f32).collect()).unwrap();
    let b = tensor(&[2, 2, 3], (10..22).map(|v| v as f32).collect()).unwrap();
    let (da, db) = (up(be, &a), up(be, &b));
    let c = be.concat(&[&da, &db], 1).must();
    assert_eq!(be.shape(&c), vec![2, 3, 3]);
    assert_eq!(
        down(be, &c).iter().copied().collect::<Vec<_>>(),
        vec![
            0., 1., 2., 10., 11., 12., 13., 14., 15., 3., 4., 5., 16., 17., 18., 19., 20., 21.
        ]
    );
    assert_eq!(down(be, &be.slice(&c, 1, 0, 1).must()), a);
    assert_eq!(down(be, &be.slice(&c, 1, 1, 2).must()), b);
    // Every axis of a rank-4 tensor, three parts of different lengths, against ndarray.
    let base = [3usize, 4, 5, 6];
    for axis in 0..4 {
        let parts: Vec<Tensor> = [1usize, 3, 2]
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                let mut s = base.to_vec();
                s[axis] = len;
                test_tensor(&s, 20 + 3 * axis as u64 + i as u64, 1.0)
            })
            .collect();
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        let want = ndarray::concatenate(ndarray::Axis(axis), &views).unwrap();
        let dev: Vec<B::Tensor> = parts.iter().map(|p| up(be, p)).collect();
        let refs: Vec<&B::Tensor> = dev.iter().collect();
        let got = be.concat(&refs, axis).must();
        assert_eq!(bits(&down(be, &got)), bits(&want), "concat axis {axis}");
        let total = want.shape()[axis];
        for (start, len) in [(0, total), (1, 2), (total - 1, 1), (2, 0), (0, 3)] {
            let want = want
                .slice_axis(
                    ndarray::Axis(axis),
                    ndarray::Slice::from(start..start + len),
                )
                .to_owned();
            let got = down(be, &be.slice(&got, axis, start, len).must());
            assert_eq!(got, want, "slice axis {axis} {start}..{}", start + len);
        }
    }
    // One tensor: a copy.
    assert_eq!(down(be, &be.concat(&[&da], 2).must()), a);
}

pub fn concat_slice_adjoint_identity<B: Backend>(be: &B) {
    // ⟨slice(x), g⟩ = ⟨x, concat(0, g, 0)⟩: the two ops are each other's adjoint.
    let x = test_tensor(&[2, 7, 3], 1, 1.0);
    let g = test_tensor(&[2, 3, 3], 2, 1.0);
    let s = down(be, &be.slice(&up(be, &x), 1, 2, 3).must());
    let (z0, z1) = (be.zeros(&[2, 2, 3]).must(), be.zeros(&[2, 2, 3]).must());
    let dg = up(be, &g);
    let padded = down(be, &be.concat(&[&z0, &dg, &z1], 1).must());
    let (lhs, rhs) = (ip(&s, &g), ip(&x, &padded));
    assert!(
        (lhs - rhs).abs() < 1e-9 * (1.0 + lhs.abs()),
        "{lhs} vs {rhs}"
    );
}

pub fn concat_slice_errors<B: Backend>(be: &B) {
    let a = up(be, &zeros(&[2, 3]));
    let b = up(be, &zeros(&[3, 3]));
    assert_param_err(be.concat(&[], 0), "concat", "no tensors");
    assert_shape_err(be.concat(&[&a, &b], 1), "concat", "axis 0 differs");
    assert!(
        be.concat(&[&a, &b], 0).is_ok(),
        "concat along the differing axis"
    );
    assert_refused(be.concat(&[&a], 2), "concat", "axis out of range");
    let r3 = up(be, &zeros(&[2, 3, 1]));
    assert_shape_err(be.concat(&[&a, &r3], 1), "concat", "ranks differ");
    assert_param_err(be.slice(&a, 1, 2, 2), "slice", "range past the end");
    assert_refused(be.slice(&a, 2, 0, 1), "slice", "axis out of range");
    assert_param_err(
        be.slice(&a, 1, usize::MAX, 2),
        "slice",
        "start + len overflows",
    );
    // A zero-length slice is allowed.
    assert_eq!(be.shape(&be.slice(&a, 1, 3, 0).must()), vec![2, 0]);
}

/// `take_rows` against ndarray's `select` on axis 0 (any order, repeats, runs and single rows,
/// empty), bit for bit, and its errors.
pub fn take_rows_matches_ndarray_and_errors<B: Backend>(be: &B) {
    let x = tensor(&[6, 2, 3], special_values(36)).unwrap();
    let d = up(be, &x);
    for rows in [
        vec![0usize, 1, 2, 3, 4, 5],
        vec![5, 4, 3, 2, 1, 0],
        vec![1, 2, 4, 5],
        vec![3],
        vec![0, 0, 5, 2, 3, 2],
    ] {
        let want = x.select(ndarray::Axis(0), &rows);
        let got = down(be, &be.take_rows(&d, &rows).must());
        assert_eq!(got.shape(), want.shape(), "take_rows {rows:?}");
        assert_eq!(bits(&got), bits(&want), "take_rows {rows:?}");
    }
    let e = be.take_rows(&d, &[]).must();
    assert_eq!(be.shape(&e), vec![0, 2, 3]);
    assert_param_err(be.take_rows(&d, &[1, 6]), "take_rows", "row out of range");
    let scalar = up(be, &tensor(&[], vec![1.0]).unwrap());
    assert_param_err(be.take_rows(&scalar, &[0]), "take_rows", "no batch axis");
}

/// `Backend` is `Send + Sync`: four threads sharing one backend, each uploading, transforming
/// (element maps, arithmetic, permute, slice, concat) and downloading its own tensors many times,
/// get exactly what they would get alone.
pub fn concurrent_use_from_threads<B: Backend>(be: &B) {
    let work = |seed: u64| -> Vec<Vec<u32>> {
        let x = test_tensor(&[3, 5, 7, 9], seed, 1.0);
        let y = test_tensor(&[3, 5, 7, 9], seed + 100, 1.0);
        let mut out = Vec::new();
        for i in 0..100 {
            // Every intermediate read back, so that the threads' reads interleave with each
            // other's recorded work.
            let (dx, dy) = (up(be, &x), up(be, &y));
            let m = be.map(&dx, crate::Act::Relu).must();
            out.push(bits(&down(be, &m)));
            let s = be.add(&m, &dy).must();
            out.push(bits(&down(be, &s)));
            let p = be.permute(&s, &[3, 1, 0, 2]).must();
            out.push(bits(&down(be, &p)));
            let c = be
                .concat(
                    &[&be.slice(&p, 0, i % 5, 3).must(), &be.scale(&p, 0.5).must()],
                    0,
                )
                .must();
            out.push(bits(&down(be, &c)));
        }
        out
    };
    let alone: Vec<Vec<Vec<u32>>> = (0..4).map(work).collect();
    // Alone, the work gives the host's results.
    for (t, results) in alone.iter().enumerate() {
        let x = test_tensor(&[3, 5, 7, 9], t as u64, 1.0);
        let y = test_tensor(&[3, 5, 7, 9], t as u64 + 100, 1.0);
        let m = x.mapv(|v| v.max(0.0));
        let s = &m + &y;
        let p = s
            .view()
            .permuted_axes(vec![3, 1, 0, 2])
            .as_standard_layout()
            .into_owned();
        let half = p.mapv(|v| 0.5 * v);
        for (i, r) in results.iter().enumerate().take(20) {
            let start = (i / 4) % 5;
            let want = match i % 4 {
                0 => bits(&m),
                1 => bits(&s),
                2 => bits(&p),
                _ => {
                    let sl = p.slice_axis(ndarray::Axis(0), ndarray::Slice::from(start..start + 3));
                    bits(&ndarray::concatenate(ndarray::Axis(0), &[sl, half.view()]).unwrap())
                }
            };
            assert!(
                *r == want,
                "thread {t}'s work alone, result {i}: differs from the host"
            );
        }
    }
    let together: Vec<Vec<Vec<u32>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|t| s.spawn(move || work(t))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker thread panicked"))
            .collect()
    });
    for (t, (a, b)) in alone.iter().zip(&together).enumerate() {
        for (i, (ra, rb)) in a.iter().zip(b).enumerate() {
            assert!(
                ra == rb,
                "thread {t}, iteration {}, result {}: differs from the same work done alone",
                i / 4,
                i % 4
            );
        }
    }
}
