//! Host references and comparison helpers of the conformance suite: naive loops in f64 for
//! convolution, products, pooling and normalization (no backend involved), moving tensors to and
//! from the backend under test, reading max-pool switches through the backend, and the
//! comparisons the cases share.

use crate::gradcheck::GradCheck;
use crate::{Backend, Conv2dParams, Error, Pool2dParams, Result, Tensor, tensor};

// ---------------------------------------------------------------------------------------------
// moving data, unwrapping results

/// Unwrap an op result, panicking with the backend's message (e.g. "conv2d: not yet on the GPU
/// backend") rather than its `Debug` form.
pub trait Must<T> {
    /// The value, or a panic showing the error.
    fn must(self) -> T;
}

impl<T> Must<T> for Result<T> {
    #[track_caller]
    fn must(self) -> T {
        self.unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Upload a host tensor to the backend under test.
#[track_caller]
pub fn up<B: Backend>(be: &B, t: &Tensor) -> B::Tensor {
    be.upload(t).must()
}

/// Download a backend tensor to the host.
#[track_caller]
pub fn down<B: Backend>(be: &B, t: &B::Tensor) -> Tensor {
    be.download(t).must()
}

/// A host tensor of zeros.
pub fn zeros(shape: &[usize]) -> Tensor {
    Tensor::zeros(ndarray::IxDyn(shape))
}

/// The switches of a max pooling of an input of `x_shape` (`[N, C, H, W]`), read through the
/// backend: gathering the ramp `h·W + w` of every plane at the switches gives the indices (exact
/// in f32 for planes under 2²⁴ elements).
pub fn switches<B: Backend>(be: &B, idx: &B::Index, x_shape: &[usize]) -> Vec<u32> {
    let (h, w) = (x_shape[2], x_shape[3]);
    let planes = x_shape[0] * x_shape[1];
    let ramp: Vec<f32> = (0..planes)
        .flat_map(|_| (0..h * w).map(|i| i as f32))
        .collect();
    let ramp = up(be, &tensor(x_shape, ramp).expect("sizes agree"));
    down(be, &be.pool_gather(&ramp, idx).must())
        .iter()
        .map(|&v| v as u32)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// comparisons

/// ⟨r, t⟩ accumulated in f64.
pub fn ip(r: &Tensor, t: &Tensor) -> f64 {
    assert_eq!(r.shape(), t.shape(), "ip: shapes");
    r.iter()
        .zip(t.iter())
        .map(|(&a, &b)| a as f64 * b as f64)
        .sum()
}

/// Every element within `tol · (1 + |want|)`.
#[track_caller]
pub fn assert_close(got: &Tensor, want: &Tensor, tol: f32, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes");
    for (i, (&x, &y)) in got.iter().zip(want.iter()).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}: element {i}: {x} vs {y}"
        );
    }
}

/// Every element within f32 accumulation error of a reference given as (values, Σ|terms|):
/// |got − ref| ≤ 1e-5·Σ|terms| + 1e-6.
#[track_caller]
pub fn assert_close_to_ref(what: &str, got: &Tensor, reference: &(Vec<f64>, Vec<f64>)) {
    let (r, a) = reference;
    assert_eq!(got.len(), r.len(), "{what}: element count");
    for (i, (&g, (&rv, &av))) in got.iter().zip(r.iter().zip(a.iter())).enumerate() {
        let tol = 1e-5 * av + 1e-6;
        assert!(
            (g as f64 - rv).abs() <= tol,
            "{what}: element {i}: got {g}, reference {rv} (tol {tol})"
        );
    }
}

/// Bit patterns, for exact comparisons that treat NaNs as values. Every NaN maps to one pattern:
/// IEEE 754 leaves the sign and payload of an operation's NaN unspecified, and x86 makes a
/// generated NaN negative but keeps a propagated one's sign, so the same NaN-producing arithmetic
/// in two orders (or compiled by llvmpipe for another CPU) differs there and nowhere else.
pub fn bits(t: &Tensor) -> Vec<u32> {
    t.iter()
        .map(|v| {
            if v.is_nan() {
                f32::NAN.to_bits()
            } else {
                v.to_bits()
            }
        })
        .collect()
}

/// A gradient check that probed something and passed.
#[track_caller]
pub fn assert_grad_ok(name: &str, g: GradCheck, tol: f64) {
    assert!(g.probed > 0, "{name}: nothing probed");
    assert!(g.ok(tol), "{name}: gradient check failed: {g:?}");
}

/// True when `r` is a shape or parameter error of `op`.
pub fn is_err_of<T>(r: &Result<T>, op: &str) -> bool {
    match r {
        Err(Error::Shape { op: o, .. }) | Err(Error::Param { op: o, .. }) => *o == op,
        _ => false,
    }
}

/// Panic unless `r` is a shape or parameter error of `op`, showing what came instead.
#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(r: Result<T>, op: &str, what: &str) {
    match &r {
        Err(Error::Shape { op: o, .. }) | Err(Error::Param { op: o, .. }) if *o == op => {}
        Err(e) => panic!("{what}: expected a shape or parameter error of {op}, got: {e}"),
        Ok(v) => panic!("{what}: expected a shape or parameter error of {op}, got Ok({v:?})"),
    }
}

/// Panic unless `r` is a shape error of `op`.
#[track_caller]
pub fn assert_shape_err<T: std::fmt::Debug>(r: Result<T>, op: &str, what: &str) {
    match &r {
        Err(Error::Shape { op: o, .. }) if *o == op => {}
        Err(e) => panic!("{what}: expected a shape error of {op}, got: {e}"),
        Ok(v) => panic!("{what}: expected a shape error of {op}, got Ok({v:?})"),
    }
}

/// Panic unless `r` is a parameter error of `op`.
#[track_caller]
pub fn assert_param_err<T: std::fmt::Debug>(r: Result<T>, op: &str, what: &str) {
    match &r {
        Err(Error::Param { op: o, .. }) if *o == op => {}
        Err(e) => panic!("{what}: expected a parameter error of {op}, got: {e}"),
        Ok(v) => panic!("{what}: expected a parameter error of {op}, got Ok({v:?})"),
    }
}

/// A seeded stream of small random case parameters (the suite's replacement for proptest).
pub struct Cases(crate::Stream, u64);

impl Cases {
    /// Draws for the case family `name`.
    pub fn new(name: &str) -> Self {
        Cases(crate::Stream::new(0xC0F0, name), 0)
    }
    /// A draw in `lo..hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        self.1 += 1;
        lo + self.0.below(self.1, (hi - lo) as u64) as usize
    }
    /// A fair coin.
    pub fn flip(&mut self) -> bool {
        self.range(0, 2) == 1
    }
    /// A uniform draw in `lo..hi`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        self.1 += 1;
        lo + (hi - lo) * self.0.uniform(self.1)
    }
}

// ---------------------------------------------------------------------------------------------
// pooling

/// Naive max pool: first maximum in row-major window order wins. Returns values and indices.
pub fn naive_max_pool(x: &Tensor, p: Pool2dParams) -> (Tensor, Vec<u32>) {
    let s = x.shape();
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    let ho = (h - p.kernel.0) / p.stride.0 + 1;
    let wo = (w - p.kernel.1) / p.stride.1 + 1;
    let mut y = zeros(&[n, c, ho, wo]);
    let mut idx = vec![];
    for b in 0..n {
        for ch in 0..c {
            for i in 0..ho {
                for j in 0..wo {
                    let mut best = x[[b, ch, i * p.stride.0, j * p.stride.1]];
                    let mut arg = (i * p.stride.0) * w + j * p.stride.1;
                    for dh in 0..p.kernel.0 {
                        for dw in 0..p.kernel.1 {
                            let (hh, ww) = (i * p.stride.0 + dh, j * p.stride.1 + dw);
                            if x[[b, ch, hh, ww]] > best {
                                best = x[[b, ch, hh, ww]];
                                arg = hh * w + ww;
                            }
                        }
                    }
                    y[[b, ch, i, j]] = best;
                    idx.push(arg as u32);
                }
            }
        }
    }
    (y, idx)
}

/// Naive average pool (f64 window sums).
pub fn naive_avg_pool(x: &Tensor, p: Pool2dParams) -> Tensor {
    let s = x.shape();
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    let ho = (h - p.kernel.0) / p.stride.0 + 1;
    let wo = (w - p.kernel.1) / p.stride.1 + 1;
    let mut y = zeros(&[n, c, ho, wo]);
    for b in 0..n {
        for ch in 0..c {
            for i in 0..ho {
                for j in 0..wo {
                    let mut s = 0.0f64;
                    for dh in 0..p.kernel.0 {
                        for dw in 0..p.kernel.1 {
                            s += x[[b, ch, i * p.stride.0 + dh, j * p.stride.1 + dw]] as f64;
                        }
                    }
                    y[[b, ch, i, j]] = (s / (p.kernel.0 * p.kernel.1) as f64) as f32;
                }
            }
        }
    }
    y
}

/// Distinct values (a shuffled grid spaced 0.05 apart) so that max-pool argmaxes never flip under a
/// finite-difference step of 1e-2.
pub fn distinct_tensor(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let perm = crate::Stream::new(seed, "test.distinct").permutation(n);
    tensor(
        shape,
        perm.iter()
            .map(|&p| (p as f32 - n as f32 / 2.0) * 0.05)
            .collect(),
    )
    .expect("sizes agree")
}

// ---------------------------------------------------------------------------------------------
// convolution and products (values and Σ|terms| per output element, for error bounds)

fn at4(t: &Tensor, i: [usize; 4]) -> f64 {
    t[[i[0], i[1], i[2], i[3]].as_slice()] as f64
}

/// Direct-loop convolution.
pub fn naive_conv(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: Conv2dParams,
) -> (Vec<f64>, Vec<f64>) {
    let (n, c, h, wd) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (o, kh, kw) = (w.shape()[0], w.shape()[2], w.shape()[3]);
    let ho = (h + 2 * p.padding.0 - kh) / p.stride.0 + 1;
    let wo = (wd + 2 * p.padding.1 - kw) / p.stride.1 + 1;
    let mut y = vec![0.0; n * o * ho * wo];
    let mut a = vec![0.0; n * o * ho * wo];
    for s in 0..n {
        for oc in 0..o {
            for oh in 0..ho {
                for ow in 0..wo {
                    let mut acc = b.map_or(0.0, |b| b[[oc].as_slice()] as f64);
                    let mut aacc = acc.abs();
                    for ci in 0..c {
                        for i in 0..kh {
                            for j in 0..kw {
                                let ih = (oh * p.stride.0 + i) as isize - p.padding.0 as isize;
                                let iw = (ow * p.stride.1 + j) as isize - p.padding.1 as isize;
                                if ih < 0 || iw < 0 || ih >= h as isize || iw >= wd as isize {
                                    continue;
                                }
                                let t = at4(x, [s, ci, ih as usize, iw as usize])
                                    * at4(w, [oc, ci, i, j]);
                                acc += t;
                                aacc += t.abs();
                            }
                        }
                    }
                    let idx = ((s * o + oc) * ho + oh) * wo + ow;
                    y[idx] = acc;
                    a[idx] = aacc;
                }
            }
        }
    }
    (y, a)
}

/// Direct-loop transposed convolution (scatter of every gy element through the kernel).
pub fn naive_conv_input_grad(
    gy: &Tensor,
    w: &Tensor,
    hw: (usize, usize),
    p: Conv2dParams,
) -> (Vec<f64>, Vec<f64>) {
    let (n, o, ho, wo) = (gy.shape()[0], gy.shape()[1], gy.shape()[2], gy.shape()[3]);
    let (c, kh, kw) = (w.shape()[1], w.shape()[2], w.shape()[3]);
    let (h, wd) = hw;
    let mut gx = vec![0.0; n * c * h * wd];
    let mut a = vec![0.0; n * c * h * wd];
    for s in 0..n {
        for oc in 0..o {
            for oh in 0..ho {
                for ow in 0..wo {
                    for ci in 0..c {
                        for i in 0..kh {
                            for j in 0..kw {
                                let ih = (oh * p.stride.0 + i) as isize - p.padding.0 as isize;
                                let iw = (ow * p.stride.1 + j) as isize - p.padding.1 as isize;
                                if ih < 0 || iw < 0 || ih >= h as isize || iw >= wd as isize {
                                    continue;
                                }
                                let idx = ((s * c + ci) * h + ih as usize) * wd + iw as usize;
                                let t = at4(gy, [s, oc, oh, ow]) * at4(w, [oc, ci, i, j]);
                                gx[idx] += t;
                                a[idx] += t.abs();
                            }
                        }
                    }
                }
            }
        }
    }
    (gx, a)
}

/// Direct-loop weight adjoint of the convolution.
pub fn naive_conv_weight_grad(
    x: &Tensor,
    gy: &Tensor,
    khw: (usize, usize),
    p: Conv2dParams,
) -> (Vec<f64>, Vec<f64>) {
    let (n, c, h, wd) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (o, ho, wo) = (gy.shape()[1], gy.shape()[2], gy.shape()[3]);
    let (kh, kw) = khw;
    let mut gw = vec![0.0; o * c * kh * kw];
    let mut a = vec![0.0; o * c * kh * kw];
    for oc in 0..o {
        for ci in 0..c {
            for i in 0..kh {
                for j in 0..kw {
                    let idx = ((oc * c + ci) * kh + i) * kw + j;
                    for s in 0..n {
                        for oh in 0..ho {
                            for ow in 0..wo {
                                let ih = (oh * p.stride.0 + i) as isize - p.padding.0 as isize;
                                let iw = (ow * p.stride.1 + j) as isize - p.padding.1 as isize;
                                if ih < 0 || iw < 0 || ih >= h as isize || iw >= wd as isize {
                                    continue;
                                }
                                let t = at4(gy, [s, oc, oh, ow])
                                    * at4(x, [s, ci, ih as usize, iw as usize]);
                                gw[idx] += t;
                                a[idx] += t.abs();
                            }
                        }
                    }
                }
            }
        }
    }
    (gw, a)
}

/// C[m,n] = op(A)·op(B) in f64 from row-major storage.
pub fn naive_gemm(
    (m, n, k): (usize, usize, usize),
    ta: bool,
    tb: bool,
    a: &[f32],
    b: &[f32],
) -> (Vec<f64>, Vec<f64>) {
    let mut c = vec![0.0; m * n];
    let mut abs = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            for p in 0..k {
                let av = if ta { a[p * m + i] } else { a[i * k + p] } as f64;
                let bv = if tb { b[j * k + p] } else { b[p * n + j] } as f64;
                c[i * n + j] += av * bv;
                abs[i * n + j] += (av * bv).abs();
            }
        }
    }
    (c, abs)
}

/// y[..., out] = x[..., in]·wᵀ + b.
pub fn naive_linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> (Vec<f64>, Vec<f64>) {
    let (out, inp) = (w.shape()[0], w.shape()[1]);
    let rows = x.len() / inp;
    let (mut y, mut a) = naive_gemm(
        (rows, out, inp),
        false,
        true,
        x.as_slice().expect("standard layout"),
        w.as_slice().expect("standard layout"),
    );
    if let Some(b) = b {
        for r in 0..rows {
            for o in 0..out {
                y[r * out + o] += b[[o].as_slice()] as f64;
                a[r * out + o] += (b[[o].as_slice()] as f64).abs();
            }
        }
    }
    (y, a)
}

/// Batched op(a)·op(b) over equal leading axes.
pub fn naive_matmul(a: &Tensor, b: &Tensor, ta: bool, tb: bool) -> (Vec<f64>, Vec<f64>) {
    let nd = a.ndim();
    let (ra, rb) = (&a.shape()[nd - 2..], &b.shape()[nd - 2..]);
    let (m, k) = if ta { (ra[1], ra[0]) } else { (ra[0], ra[1]) };
    let n = if tb { rb[0] } else { rb[1] };
    let batch: usize = a.shape()[..nd - 2].iter().product();
    let (asl, bsl) = (
        a.as_slice().expect("standard layout"),
        b.as_slice().expect("standard layout"),
    );
    let (mut c, mut abs) = (vec![], vec![]);
    for i in 0..batch {
        let (ci, ai) = naive_gemm(
            (m, n, k),
            ta,
            tb,
            &asl[i * m * k..(i + 1) * m * k],
            &bsl[i * k * n..(i + 1) * k * n],
        );
        c.extend(ci);
        abs.extend(ai);
    }
    (c, abs)
}

/// The shape `lead ++ [r, c]`, or `lead ++ [c, r]` when `trans`.
pub fn mm_shape(lead: &[usize], r: usize, c: usize, trans: bool) -> Vec<usize> {
    let mut s = lead.to_vec();
    if trans {
        s.extend([c, r]);
    } else {
        s.extend([r, c]);
    }
    s
}

// ---------------------------------------------------------------------------------------------
// normalization

/// Naive layer norm over the last axis (f64).
pub fn naive_layer_norm(x: &Tensor, g: &Tensor, b: &Tensor, eps: f64) -> Tensor {
    let d = *x.shape().last().expect("rank ≥ 1");
    let xs: Vec<f32> = x.iter().copied().collect();
    let mut out = vec![];
    for row in xs.chunks(d) {
        let m = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let v = row.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / d as f64;
        for (j, &e) in row.iter().enumerate() {
            out.push(((e as f64 - m) / (v + eps).sqrt() * g[j] as f64 + b[j] as f64) as f32);
        }
    }
    tensor(x.shape(), out).expect("sizes agree")
}

/// Naive batch norm over all axes but 1: (y, mean, biased var).
pub fn naive_batch_norm(
    x: &Tensor,
    g: &Tensor,
    b: &Tensor,
    eps: f64,
) -> (Tensor, Vec<f64>, Vec<f64>) {
    let c = x.shape()[1];
    let mut sum = vec![0.0f64; c];
    let mut cnt = vec![0usize; c];
    for (ix, &v) in x.indexed_iter() {
        sum[ix[1]] += v as f64;
        cnt[ix[1]] += 1;
    }
    let mean: Vec<f64> = sum.iter().zip(&cnt).map(|(s, &n)| s / n as f64).collect();
    let mut q = vec![0.0f64; c];
    for (ix, &v) in x.indexed_iter() {
        q[ix[1]] += (v as f64 - mean[ix[1]]).powi(2);
    }
    let var: Vec<f64> = q.iter().zip(&cnt).map(|(s, &n)| s / n as f64).collect();
    let mut y = x.clone();
    for (ix, v) in y.indexed_iter_mut() {
        let ch = ix[1];
        *v = ((*v as f64 - mean[ch]) / (var[ch] + eps).sqrt() * g[ch] as f64 + b[ch] as f64) as f32;
    }
    (y, mean, var)
}
