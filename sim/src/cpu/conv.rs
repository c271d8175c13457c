//! conv2d and its two adjoints by im2col + SGEMM, with a Winograd F(2×2, 3×3) path (module
//! `winograd`) for the forward conv and the input adjoint of 3x3 stride-1 layers ([`ConvAlgo`]).
//!
//! Layout: the batch is cut into chunks of `nb` samples (nb depends on the shapes only, never on the
//! thread count). A chunk's patches form one column matrix `col[K, nb·Ho·Wo]` (K = C·kh·kw, row
//! `(c, i, j)`, column `(sample, oh, ow)`), so that even 4x4 or 2x2 layers give GEMMs with hundreds
//! of columns. Then
//!
//! * forward: `out[O, cols] = W[O, K] · col`, scattered to NCHW with the bias;
//! * input adjoint: `dcol[K, cols] = Wᵀ · gy_chunk[O, cols]`, then col2im (scatter-add) into gx;
//! * weight adjoint: `gw[O, K] += gy_chunk · colᵀ`, chunk after chunk in batch order.
//!
//! With ≥ 16 input channels the patches are built channels-last instead: the input chunk is
//! transposed to NHWC, `colᵀ[cols, K]` has rows `(sample, oh, ow)` and columns `(i, j, c)`, and the
//! weights are reordered to OHWI; the GEMMs then use the transposed operands.
//!
//! Forward and input adjoint run chunks in parallel (one single-threaded GEMM each) when there are
//! enough of them, else chunk after chunk with the GEMM split over the pool. Every output element is
//! computed by the same arithmetic in either case, so results do not depend on the thread count.

use rayon::prelude::*;

use super::gemm::{Gemm, Par, sgemm_par};
use super::layout::transpose_blocks;
use super::scratch::with_scratch;
use super::winograd::{self, WinoGeom};
use crate::Tensor;
use crate::error::{Error, Result};
use crate::ops::Conv2dParams;

/// Columns per chunk aimed at by the forward and input-adjoint GEMMs.
const TARGET_COLS: usize = 512;
/// Columns per chunk aimed at by the weight-adjoint GEMMs (their reduction dimension).
const TARGET_COLS_WGRAD: usize = 4096;

/// Shapes of one convolution.
#[derive(Debug, Clone, Copy)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    ph: usize,
    pw: usize,
    ho: usize,
    wo: usize,
}

impl Geom {
    fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }
    fn hw_in(&self) -> usize {
        self.h * self.w
    }
    fn hw_out(&self) -> usize {
        self.ho * self.wo
    }
    /// Samples per chunk for a target number of GEMM columns.
    fn chunk(&self, target: usize) -> usize {
        target
            .div_ceil(self.hw_out().max(1))
            .clamp(1, self.n.max(1))
    }
    /// Output columns `ow` whose input column `ow·sw + j − pw` lies inside `0..w`: `lo..hi`.
    fn ow_range(&self, j: usize) -> (usize, usize) {
        valid_range(j, self.pw, self.sw, self.w, self.wo)
    }
    /// Output rows `oh` whose input row `oh·sh + i − ph` lies inside `0..h`: `lo..hi`.
    fn oh_range(&self, i: usize) -> (usize, usize) {
        valid_range(i, self.ph, self.sh, self.h, self.ho)
    }
}

/// Outputs `o` in `0..out_len` whose input index `o·stride + k − pad` lies inside `0..in_len`,
/// as a range `lo..hi` (empty when none).
fn valid_range(
    k: usize,
    pad: usize,
    stride: usize,
    in_len: usize,
    out_len: usize,
) -> (usize, usize) {
    let lo = if k >= pad {
        0
    } else {
        (pad - k).div_ceil(stride)
    };
    let hi = if in_len + pad > k {
        ((in_len - 1 + pad - k) / stride + 1).min(out_len)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// Zero a short slice with a plain loop (these are 0–2 elements of padding; no memset call).
#[inline(always)]
fn zero(d: &mut [f32]) {
    for v in d {
        *v = 0.0;
    }
}

fn dims4(op: &'static str, what: &str, t: &Tensor) -> Result<[usize; 4]> {
    match t.shape() {
        &[a, b, c, d] => Ok([a, b, c, d]),
        s => Err(Error::shape(
            op,
            format!("{what} must have rank 4, got shape {s:?}"),
        )),
    }
}

fn check_bias(op: &'static str, b: Option<&Tensor>, o: usize) -> Result<()> {
    if let Some(b) = b
        && b.shape() != [o]
    {
        return Err(Error::shape(
            op,
            format!(
                "bias must have shape [{o}] (out channels), got {:?}",
                b.shape()
            ),
        ));
    }
    Ok(())
}

fn contiguous(t: &Tensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(t.iter().copied().collect()),
    }
}

fn to_tensor(shape: &[usize], v: Vec<f32>) -> Tensor {
    Tensor::from_shape_vec(ndarray::IxDyn(shape), v).expect("sizes agree")
}

/// Whether a layer uses the channels-last patch layout. NCHW im2col copies runs of `Wo` floats (2 at
/// a 2x2 output), channels-last patches copy runs of `C` floats; with ≥ 16 channels the latter is
/// faster at every EP-CNN layer (measured 1-thread: 0.83-0.92 → 0.85-0.98 of SGEMM speed), at the
/// price of transposing the input chunk and the weights.
fn channels_last(g: &Geom) -> bool {
    g.c >= 16
}

/// `[nb, C, HW]` → `[nb, HW, C]`.
fn to_nhwc(x: &[f32], c: usize, hw: usize, out: &mut [f32]) {
    transpose_blocks(x, c, hw, out);
}

/// `[nb, HW, C]` → `[nb, C, HW]`.
fn from_nhwc(xt: &[f32], c: usize, hw: usize, out: &mut [f32]) {
    transpose_blocks(xt, hw, c, out);
}

/// OIHW weights `[O, C, kh, kw]` → `[O, kh, kw, C]` (matching the channels-last patches).
fn weights_to_ohwi(g: &Geom, w: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; w.len()];
    transpose_blocks(w, g.c, g.kh * g.kw, &mut out);
    out
}

/// `[O, kh, kw, C]` → OIHW `[O, C, kh, kw]`.
fn weights_from_ohwi(g: &Geom, wr: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; wr.len()];
    transpose_blocks(wr, g.kh * g.kw, g.c, &mut out);
    out
}

/// Input row/column of output index `o` and kernel index `k`, if inside `0..len`.
#[inline]
fn in_idx(o: usize, k: usize, stride: usize, pad: usize, len: usize) -> Option<usize> {
    (o * stride + k).checked_sub(pad).filter(|&r| r < len)
}

/// Channels-last patches: `colt[(s, oh, ow), (i, j, c)]` from `xt` (`[nb, H, W, C]`), parallel over
/// samples.
fn im2row(g: &Geom, xt: &[f32], nb: usize, colt: &mut [f32]) {
    let (c, k, hwo) = (g.c, g.k(), g.hw_out());
    if k * hwo == 0 {
        return;
    }
    colt[..nb * hwo * k]
        .par_chunks_mut(hwo * k)
        .zip(xt.par_chunks(g.hw_in() * c))
        .for_each(|(rows, x)| {
            for oh in 0..g.ho {
                for ow in 0..g.wo {
                    let row = &mut rows[(oh * g.wo + ow) * k..][..k];
                    for i in 0..g.kh {
                        let ih = in_idx(oh, i, g.sh, g.ph, g.h);
                        for j in 0..g.kw {
                            let seg = &mut row[(i * g.kw + j) * c..][..c];
                            match (ih, in_idx(ow, j, g.sw, g.pw, g.w)) {
                                (Some(ih), Some(iw)) => {
                                    seg.copy_from_slice(&x[(ih * g.w + iw) * c..][..c])
                                }
                                _ => seg.fill(0.0),
                            }
                        }
                    }
                }
            }
        });
}

/// Adjoint of [`im2row`]: add `dcolt[(s, oh, ow), (i, j, c)]` into `gxt` (`[nb, H, W, C]`), parallel
/// over samples, each in the fixed order (oh, ow, i, j).
fn row2im(g: &Geom, dcolt: &[f32], nb: usize, gxt: &mut [f32]) {
    let (c, k, hwo) = (g.c, g.k(), g.hw_out());
    if k * hwo == 0 || g.hw_in() * c == 0 {
        return;
    }
    gxt[..nb * g.hw_in() * c]
        .par_chunks_mut(g.hw_in() * c)
        .zip(dcolt.par_chunks(hwo * k))
        .for_each(|(gx, rows)| {
            gx.fill(0.0);
            for oh in 0..g.ho {
                for ow in 0..g.wo {
                    let row = &rows[(oh * g.wo + ow) * k..][..k];
                    for i in 0..g.kh {
                        let Some(ih) = in_idx(oh, i, g.sh, g.ph, g.h) else {
                            continue;
                        };
                        for j in 0..g.kw {
                            let Some(iw) = in_idx(ow, j, g.sw, g.pw, g.w) else {
                                continue;
                            };
                            let seg = &row[(i * g.kw + j) * c..][..c];
                            let d = &mut gx[(ih * g.w + iw) * c..][..c];
                            d.iter_mut().zip(seg).for_each(|(a, b)| *a += *b);
                        }
                    }
                }
            }
        });
}

/// im2col of the rows `(c, i, j)` for `c` in `c_range` of `nb` samples `x` (`[nb, C, H, W]`) into
/// `col` (those rows only, each `ld = nb·Ho·Wo` long).
fn im2col(g: &Geom, x: &[f32], nb: usize, c_range: std::ops::Range<usize>, col: &mut [f32]) {
    let (hwo, wo) = (g.hw_out(), g.wo);
    let ld = nb * hwo;
    let mut row = 0;
    for c in c_range {
        for i in 0..g.kh {
            let (oh_lo, oh_hi) = g.oh_range(i);
            for j in 0..g.kw {
                let (lo, hi) = g.ow_range(j);
                let dst_row = &mut col[row * ld..(row + 1) * ld];
                row += 1;
                for s in 0..nb {
                    let plane = &x[(s * g.c + c) * g.hw_in()..][..g.hw_in()];
                    let dst = &mut dst_row[s * hwo..(s + 1) * hwo];
                    dst[..oh_lo * wo].fill(0.0);
                    dst[oh_hi * wo..].fill(0.0);
                    for oh in oh_lo..oh_hi {
                        let ih = oh * g.sh + i - g.ph;
                        let d = &mut dst[oh * wo..(oh + 1) * wo];
                        let src = &plane[ih * g.w..(ih + 1) * g.w];
                        zero(&mut d[..lo]);
                        zero(&mut d[hi..]);
                        if hi > lo {
                            if g.sw == 1 {
                                let s0 = lo + j - g.pw;
                                for (dv, sv) in d[lo..hi].iter_mut().zip(&src[s0..s0 + (hi - lo)]) {
                                    *dv = *sv;
                                }
                            } else {
                                for (ow, v) in d[lo..hi].iter_mut().enumerate() {
                                    *v = src[(ow + lo) * g.sw + j - g.pw];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// col2im for one input plane: add the rows `(c, i, j)` of the column matrix `col[K, nb·Ho·Wo]`
/// belonging to sample `s` into `plane` (`[H, W]`, not cleared here). Rows are visited in the fixed
/// order (i, j), so the sums are deterministic.
fn col2im_plane(g: &Geom, col: &[f32], nb: usize, s: usize, c: usize, plane: &mut [f32]) {
    let hwo = g.hw_out();
    let ld = nb * hwo;
    for i in 0..g.kh {
        let (oh_lo, oh_hi) = g.oh_range(i);
        for j in 0..g.kw {
            let (lo, hi) = g.ow_range(j);
            if hi == lo {
                continue;
            }
            let r = (c * g.kh + i) * g.kw + j;
            let src_row = &col[r * ld + s * hwo..][..hwo];
            for oh in oh_lo..oh_hi {
                let ih = oh * g.sh + i - g.ph;
                let d = &mut plane[ih * g.w..(ih + 1) * g.w];
                let src = &src_row[oh * g.wo..(oh + 1) * g.wo];
                if g.sw == 1 {
                    let s0 = lo + j - g.pw;
                    for (dv, sv) in d[s0..s0 + (hi - lo)].iter_mut().zip(&src[lo..hi]) {
                        *dv += *sv;
                    }
                } else {
                    for ow in lo..hi {
                        d[ow * g.sw + j - g.pw] += src[ow];
                    }
                }
            }
        }
    }
}

/// im2col of a whole chunk, parallel over input channels (each writes its own kh·kw rows).
fn im2col_par(g: &Geom, x: &[f32], nb: usize, col: &mut [f32]) {
    let rows_len = g.kh * g.kw * nb * g.hw_out();
    if rows_len == 0 {
        return;
    }
    col.par_chunks_mut(rows_len)
        .enumerate()
        .for_each(|(c, rows)| im2col(g, x, nb, c..c + 1, rows));
}

/// Gather `nb` samples of `t` (`[N, R, Ho·Wo]`, starting at sample `n0`) into `dst[R, nb·Ho·Wo]`.
fn gather_rows(t: &[f32], n0: usize, nb: usize, r: usize, hwo: usize, dst: &mut [f32]) {
    let cols = nb * hwo;
    if cols == 0 {
        return;
    }
    dst.par_chunks_mut(cols).enumerate().for_each(|(ri, row)| {
        for s in 0..nb {
            row[s * hwo..(s + 1) * hwo].copy_from_slice(&t[((n0 + s) * r + ri) * hwo..][..hwo]);
        }
    });
}

/// Run `f(chunk_index, first_sample, samples, out_chunk, par)` over the chunks of `out` (each chunk
/// `nb` samples of `per_sample` elements): in parallel with single-threaded GEMMs when there are
/// enough chunks for the pool, else in order with pool-parallel GEMMs.
fn for_chunks(
    out: &mut [f32],
    per_sample: usize,
    n: usize,
    nb: usize,
    f: impl Fn(usize, usize, &mut [f32], Par) -> Result<()> + Sync,
) -> Result<()> {
    if n == 0 || per_sample == 0 {
        return Ok(());
    }
    let n_chunks = n.div_ceil(nb);
    if n_chunks >= 4 * rayon::current_num_threads() {
        out.par_chunks_mut(nb * per_sample)
            .enumerate()
            .try_for_each(|(ci, o)| f(ci * nb, o.len() / per_sample, o, Par::Seq))
    } else {
        out.chunks_mut(nb * per_sample)
            .enumerate()
            .try_for_each(|(ci, o)| f(ci * nb, o.len() / per_sample, o, Par::Pool))
    }
}

/// Which algorithm [`conv2d_with`] and [`conv2d_input_grad_with`] use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvAlgo {
    /// Winograd where it is supported and pays off (see [`winograd_pays`]), else im2col. What
    /// [`conv2d`] and [`conv2d_input_grad`] use.
    #[default]
    Auto,
    /// im2col + SGEMM (any kernel, stride and padding).
    Im2col,
    /// Winograd F(2×2, 3×3): 3x3 kernels at stride 1 only (and padding ≤ 2 for the input
    /// adjoint); other shapes give [`Error::Param`].
    Winograd,
}

/// Minimum input and output channel counts for [`ConvAlgo::Auto`] to take the Winograd path.
///
/// Measured at batch 128, 3x3 pad 1, 2 threads on the (shared, loaded) 2-core dev machine,
/// im2col / Winograd time in the same process: 16 → 16 channels at 16x16 ≈ 1.0×; 32 → 32 at
/// 16x16 1.1–1.8× forward but 1.05× adjoint; 32 → 64 at 32x32 1.0× forward and 0.87× adjoint;
/// 64 → 64 at 8x8, 16x16 and 32x32 1.15–1.45×; ≥ 128 channels 1.4–2×. With few channels the
/// GEMMs' reduction (the input channels) is too short for them to run near peak, and the
/// transforms' memory traffic is not repaid. The bench `conv_algo_ab` repeats the comparison.
pub const WINOGRAD_MIN_CHANNELS: usize = 64;

/// Whether [`ConvAlgo::Auto`] uses Winograd for a 3x3 stride-1 conv with `c_in` → `c_out` channels
/// whose Winograd output is `wino_hw` and whose direct (im2col) work is `direct_positions`
/// output positions per sample and channel pair: both channel counts ≥ [`WINOGRAD_MIN_CHANNELS`]
/// and at least 1.5× fewer multiplies (16 per 2×2 tile against 9 per position), the margin paying
/// for the transforms. For the forward conv the two outputs are the same; for the input adjoint the
/// Winograd output is the forward *input* while im2col works on the forward output, so e.g. the
/// 2x2-output layer's adjoint (4x4 Winograd output: 64 multiplies against 36) stays on im2col.
pub fn winograd_pays(
    c_in: usize,
    c_out: usize,
    wino_hw: (usize, usize),
    direct_positions: usize,
) -> bool {
    c_in >= WINOGRAD_MIN_CHANNELS
        && c_out >= WINOGRAD_MIN_CHANNELS
        && 3 * super::winograd::winograd_mults(wino_hw.0, wino_hw.1) <= 2 * 9 * direct_positions
}

/// y[N,O,Ho,Wo] = conv2d(x[N,C,H,W], w[O,C,kh,kw]) + b[O], with [`ConvAlgo::Auto`].
pub fn conv2d(x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: Conv2dParams) -> Result<Tensor> {
    conv2d_with(ConvAlgo::Auto, x, w, b, p)
}

/// [`conv2d`] with an explicit algorithm. Shapes are checked first, whatever the algorithm.
pub fn conv2d_with(
    algo: ConvAlgo,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: Conv2dParams,
) -> Result<Tensor> {
    const OP: &str = "conv2d";
    let [n, c, h, wd] = dims4(OP, "input x [N,C,H,W]", x)?;
    let [o, cw, kh, kw] = dims4(OP, "weight w [O,C,kh,kw]", w)?;
    if cw != c {
        return Err(Error::shape(
            OP,
            format!(
                "input has {c} channels (x {:?}) but weight expects {cw} (w {:?})",
                x.shape(),
                w.shape()
            ),
        ));
    }
    check_bias(OP, b, o)?;
    let (ho, wo) = p.output_hw(OP, (h, wd), (kh, kw))?;
    let g = Geom {
        n,
        c,
        h,
        w: wd,
        kh,
        kw,
        sh: p.stride.0,
        sw: p.stride.1,
        ph: p.padding.0,
        pw: p.padding.1,
        ho,
        wo,
    };
    let xs = contiguous(x);
    let ws = contiguous(w);
    let bias: Option<Vec<f32>> = b.map(|b| b.iter().copied().collect());
    let wino_ok = (kh, kw) == (3, 3) && p.stride == (1, 1);
    let use_wino = match algo {
        ConvAlgo::Im2col => false,
        ConvAlgo::Winograd if !wino_ok => {
            return Err(Error::param(
                OP,
                format!(
                    "Winograd needs a 3x3 kernel at stride 1, got {:?}, {p:?}",
                    (kh, kw)
                ),
            ));
        }
        ConvAlgo::Winograd => true,
        ConvAlgo::Auto => wino_ok && winograd_pays(c, o, (ho, wo), ho * wo),
    };
    if use_wino {
        let wg = WinoGeom {
            n,
            c,
            h,
            w: wd,
            o,
            ph: g.ph,
            pw: g.pw,
            ho,
            wo,
        };
        let y = winograd::conv3x3(&wg, &xs, &ws, false, bias.as_deref())?;
        return Ok(to_tensor(&[n, o, ho, wo], y));
    }
    let (k, hwo) = (g.k(), g.hw_out());
    let mut y = vec![0.0f32; n * o * hwo];
    let nb = g.chunk(TARGET_COLS);
    let cl = channels_last(&g);
    let ws: std::borrow::Cow<'_, [f32]> = if cl {
        weights_to_ohwi(&g, &ws).into()
    } else {
        ws
    };
    for_chunks(&mut y, o * hwo, n, nb, |n0, m, ychunk, par| {
        let cols = m * hwo;
        // One sample per chunk: the GEMM output [O, Ho·Wo] is already that sample's NCHW block.
        let direct = m == 1;
        let lx = if cl { m * c * g.hw_in() } else { 0 };
        with_scratch(
            k * cols,
            if direct { 0 } else { o * cols },
            lx,
            |col, out, xt| {
                let xchunk = &xs[n0 * c * g.hw_in()..(n0 + m) * c * g.hw_in()];
                if cl {
                    // col holds the transposed patch matrix [cols, K] (rows (s, oh, ow)).
                    to_nhwc(xchunk, c, g.hw_in(), xt);
                    im2row(&g, xt, m, col);
                } else {
                    im2col_par(&g, xchunk, m, col);
                }
                let gm = Gemm {
                    m: o,
                    n: cols,
                    k,
                    trans_a: false,
                    trans_b: cl,
                };
                if direct {
                    sgemm_par(gm, 1.0, &ws, col, 0.0, ychunk, par)?;
                    if let Some(bv) = &bias {
                        for (dst, bo) in ychunk.chunks_mut(hwo).zip(bv) {
                            dst.iter_mut().for_each(|d| *d += bo);
                        }
                    }
                    return Ok(());
                }
                sgemm_par(gm, 1.0, &ws, col, 0.0, out, par)?;
                let out = &*out;
                ychunk
                    .par_chunks_mut(hwo)
                    .enumerate()
                    .for_each(|(so, dst)| {
                        let (s, oc) = (so / o, so % o);
                        let src = &out[oc * cols + s * hwo..][..hwo];
                        match &bias {
                            Some(bv) => {
                                let bo = bv[oc];
                                dst.iter_mut().zip(src).for_each(|(d, v)| *d = v + bo);
                            }
                            None => dst.copy_from_slice(src),
                        }
                    });
                Ok(())
            },
        )
    })?;
    Ok(to_tensor(&[n, o, ho, wo], y))
}

/// Transposed convolution (input adjoint): gx[N,C,H,W] = convᵀ(gy[N,O,Ho,Wo]) with w[O,C,kh,kw];
/// `input_hw` is (H, W) of the forward input. Uses [`ConvAlgo::Auto`].
pub fn conv2d_input_grad(
    gy: &Tensor,
    w: &Tensor,
    input_hw: (usize, usize),
    p: Conv2dParams,
) -> Result<Tensor> {
    conv2d_input_grad_with(ConvAlgo::Auto, gy, w, input_hw, p)
}

/// [`conv2d_input_grad`] with an explicit algorithm. Shapes are checked first, whatever the
/// algorithm. For 3x3 stride 1 and padding p ≤ 2 the adjoint is the 3x3 stride-1 convolution of gy
/// with the kernel rotated by 180° and in/out channels swapped, at padding 2 − p; the Winograd path
/// computes that.
pub fn conv2d_input_grad_with(
    algo: ConvAlgo,
    gy: &Tensor,
    w: &Tensor,
    input_hw: (usize, usize),
    p: Conv2dParams,
) -> Result<Tensor> {
    const OP: &str = "conv2d_input_grad";
    let [n, og, gho, gwo] = dims4(OP, "output gradient gy [N,O,Ho,Wo]", gy)?;
    let [o, c, kh, kw] = dims4(OP, "weight w [O,C,kh,kw]", w)?;
    if og != o {
        return Err(Error::shape(
            OP,
            format!(
                "gy has {og} channels (gy {:?}) but weight has {o} outputs (w {:?})",
                gy.shape(),
                w.shape()
            ),
        ));
    }
    let (h, wd) = input_hw;
    let (ho, wo) = p.output_hw(OP, (h, wd), (kh, kw))?;
    if (gho, gwo) != (ho, wo) {
        return Err(Error::shape(
            OP,
            format!(
                "gy spatial size {:?} (gy {:?}) differs from the forward output {:?} of input {input_hw:?}, kernel {:?}, {p:?}",
                (gho, gwo),
                gy.shape(),
                (ho, wo),
                (kh, kw)
            ),
        ));
    }
    let g = Geom {
        n,
        c,
        h,
        w: wd,
        kh,
        kw,
        sh: p.stride.0,
        sw: p.stride.1,
        ph: p.padding.0,
        pw: p.padding.1,
        ho,
        wo,
    };
    let gys = contiguous(gy);
    let ws = contiguous(w);
    let wino_ok = (kh, kw) == (3, 3) && p.stride == (1, 1) && p.padding.0 <= 2 && p.padding.1 <= 2;
    let use_wino = match algo {
        ConvAlgo::Im2col => false,
        ConvAlgo::Winograd if !wino_ok => {
            return Err(Error::param(
                OP,
                format!(
                    "Winograd needs a 3x3 kernel at stride 1 and padding ≤ 2, got {:?}, {p:?}",
                    (kh, kw)
                ),
            ));
        }
        ConvAlgo::Winograd => true,
        ConvAlgo::Auto => wino_ok && winograd_pays(o, c, (h, wd), ho * wo),
    };
    if use_wino {
        // gx = conv(gy, rot180(w) with channels swapped), padding 2 − p: output (H, W).
        let wg = WinoGeom {
            n,
            c: o,
            h: ho,
            w: wo,
            o: c,
            ph: 2 - p.padding.0,
            pw: 2 - p.padding.1,
            ho: h,
            wo: wd,
        };
        let gx = winograd::conv3x3(&wg, &gys, &ws, true, None)?;
        return Ok(to_tensor(&[n, c, h, wd], gx));
    }
    let (k, hwo) = (g.k(), g.hw_out());
    let mut gx = vec![0.0f32; n * c * g.hw_in()];
    let nb = g.chunk(TARGET_COLS);
    let cl = channels_last(&g);
    let ws: std::borrow::Cow<'_, [f32]> = if cl {
        weights_to_ohwi(&g, &ws).into()
    } else {
        ws
    };
    for_chunks(&mut gx, c * g.hw_in(), n, nb, |n0, m, gxchunk, par| {
        let cols = m * hwo;
        // One sample per chunk: gy[n] is already the [O, Ho·Wo] matrix, no gather needed.
        let direct = m == 1;
        let lx = if cl { m * c * g.hw_in() } else { 0 };
        with_scratch(
            k * cols,
            if direct { 0 } else { o * cols },
            lx,
            |dcol, gyc, gxt| {
                let gyc: &[f32] = if direct {
                    &gys[n0 * o * hwo..(n0 + 1) * o * hwo]
                } else {
                    gather_rows(&gys, n0, m, o, hwo, gyc);
                    gyc
                };
                if cl {
                    // dcolᵀ[cols, K] = gy_chunkᵀ · W (OHWI), then scatter-add channels-last.
                    let gm = Gemm {
                        m: cols,
                        n: k,
                        k: o,
                        trans_a: true,
                        trans_b: false,
                    };
                    sgemm_par(gm, 1.0, gyc, &ws, 0.0, dcol, par)?;
                    row2im(&g, dcol, m, gxt);
                    from_nhwc(gxt, c, g.hw_in(), gxchunk);
                    return Ok(());
                }
                let gm = Gemm {
                    m: k,
                    n: cols,
                    k: o,
                    trans_a: true,
                    trans_b: false,
                };
                sgemm_par(gm, 1.0, &ws, gyc, 0.0, dcol, par)?;
                let dcol = &*dcol;
                gxchunk
                    .par_chunks_mut(g.hw_in())
                    .enumerate()
                    .for_each(|(sc, plane)| col2im_plane(&g, dcol, m, sc / c, sc % c, plane));
                Ok(())
            },
        )
    })?;
    Ok(to_tensor(&[n, c, h, wd], gx))
}

/// Weight adjoint: gw[O,C,kh,kw] = Σ over samples and output positions of gy ⊗ patches(x).
pub fn conv2d_weight_grad(
    x: &Tensor,
    gy: &Tensor,
    kernel_hw: (usize, usize),
    p: Conv2dParams,
) -> Result<Tensor> {
    const OP: &str = "conv2d_weight_grad";
    let [n, c, h, wd] = dims4(OP, "input x [N,C,H,W]", x)?;
    let [ng, o, gho, gwo] = dims4(OP, "output gradient gy [N,O,Ho,Wo]", gy)?;
    let (kh, kw) = kernel_hw;
    let (ho, wo) = p.output_hw(OP, (h, wd), (kh, kw))?;
    if ng != n || (gho, gwo) != (ho, wo) {
        return Err(Error::shape(
            OP,
            format!(
                "gy {:?} does not fit input x {:?} with kernel {kernel_hw:?}, {p:?} (expected [{n}, O, {ho}, {wo}])",
                gy.shape(),
                x.shape()
            ),
        ));
    }
    let g = Geom {
        n,
        c,
        h,
        w: wd,
        kh,
        kw,
        sh: p.stride.0,
        sw: p.stride.1,
        ph: p.padding.0,
        pw: p.padding.1,
        ho,
        wo,
    };
    let xs = contiguous(x);
    let gys = contiguous(gy);
    let (k, hwo) = (g.k(), g.hw_out());
    let mut gw = vec![0.0f32; o * k];
    if n == 0 || hwo == 0 {
        return Ok(to_tensor(&[o, c, kh, kw], gw));
    }
    let nb = g.chunk(TARGET_COLS_WGRAD);
    let cl = channels_last(&g);
    let mut col_buf = vec![0.0f32; k * nb * hwo];
    let mut gy_buf = vec![0.0f32; o * nb * hwo];
    let mut xt_buf = vec![0.0f32; if cl { nb * c * g.hw_in() } else { 0 }];
    let mut n0 = 0;
    while n0 < n {
        let m = nb.min(n - n0);
        let cols = m * hwo;
        let (col, gyc) = (&mut col_buf[..k * cols], &mut gy_buf[..o * cols]);
        let xchunk = &xs[n0 * c * g.hw_in()..(n0 + m) * c * g.hw_in()];
        if cl {
            // col holds [cols, K] channels-last patches; gw is accumulated as [O, kh, kw, C].
            let xt = &mut xt_buf[..m * c * g.hw_in()];
            to_nhwc(xchunk, c, g.hw_in(), xt);
            im2row(&g, xt, m, col);
        } else {
            im2col_par(&g, xchunk, m, col);
        }
        gather_rows(&gys, n0, m, o, hwo, gyc);
        let gm = Gemm {
            m: o,
            n: k,
            k: cols,
            trans_a: false,
            trans_b: !cl,
        };
        let beta = if n0 == 0 { 0.0 } else { 1.0 };
        sgemm_par(gm, 1.0, gyc, col, beta, &mut gw, Par::Pool)?;
        n0 += m;
    }
    if cl {
        gw = weights_from_ohwi(&g, &gw);
    }
    Ok(to_tensor(&[o, c, kh, kw], gw))
}
