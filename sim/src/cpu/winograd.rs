//! Winograd F(2×2, 3×3) convolution (Lavin & Gray 2016) for 3x3, stride-1 layers.
//!
//! Each output is cut into 2×2 tiles; the tile at (ty, tx) needs the 4×4 input patch whose top-left
//! corner is input (2·ty − ph, 2·tx − pw) (zero outside the input; tiles past an odd output edge
//! are computed on zeros and their extra row/column dropped). With
//!
//! ```text
//!      ⎡1  0 −1  0⎤        ⎡1    0    0 ⎤
//! Bᵀ = ⎢0  1  1  0⎥    G = ⎢1/2  1/2  1/2⎥    Aᵀ = ⎡1 1  1  0⎤
//!      ⎢0 −1  1  0⎥        ⎢1/2 −1/2  1/2⎥         ⎣0 1 −1 −1⎦
//!      ⎣0  1  0 −1⎦        ⎣0    0    1 ⎦
//! ```
//!
//! one output tile of channel o is `Y = Aᵀ [Σ_c (G g_oc Gᵀ) ⊙ (Bᵀ d_c B)] A` (cross-correlation, as
//! conv2d). Written per transform coordinate ξ ∈ 0..16 the channel sum is a GEMM:
//!
//! * weights: `U[o][ξ][c] = (G g_oc Gᵀ)_ξ` (once per call);
//! * input, per chunk of m samples: `V[c][ξ][t] = (Bᵀ d_ct B)_ξ` for its T = m · tiles tiles,
//!   numbered t = p·m + s (tile position p, sample s) so that the transforms run m lanes wide;
//! * 16 GEMMs `M_ξ[O, T] = U_ξ[O, C] · V_ξ[C, T]` (strided views of U and V);
//! * output: `Y = Aᵀ M A` per tile, plus the bias.
//!
//! That is 16 multiplies per tile and channel pair against 36 for direct convolution (2.25× fewer),
//! at the price of the transforms (linear in the activations) and f32 rounding slightly above the
//! direct sum's (the transforms only add, subtract and halve; F(2, 3) is well conditioned).
//!
//! Determinism: chunks are whole samples with a size depending only on the shapes. With enough
//! chunks for the pool they run in parallel, each on one thread; otherwise one after the other,
//! each stage parallel over independent outputs (input channels for the input transform, the 16
//! single-threaded GEMMs, blocks of output channels for the output transform). Either way every
//! output element is the same arithmetic, whatever the rayon thread count.

use rayon::prelude::*;

use super::gemm::{Gemm, Par, sgemm_ld};
use crate::error::Result;

/// Tiles per chunk aimed at: the `n` of the 16 GEMMs.
const TARGET_TILES: usize = 512;
/// Upper bound of a chunk's scratch (V and M), in bytes (at least one sample per chunk).
const SCRATCH_BYTES: usize = 32 << 20;
/// Gap (floats, one cache line) added to the distance between the 16 rows of V of one channel and
/// between the 16 planes of M. Without it the transforms, which touch the 16 ξ at once, hit 16
/// addresses a power of two apart that compete for the same cache sets (measured: the output
/// transform of the 8x8 layer ran ~2x slower).
const GAP: usize = 16;
/// Samples per chunk at least (memory permitting): the transforms' SIMD lanes.
const MIN_SAMPLES: usize = 8;
/// Output channels per task of the output transform.
const OC_BLOCK: usize = 8;

/// Shapes of one Winograd convolution: x `[n, c, h, w]` → y `[n, o, ho, wo]`, 3x3 kernel,
/// stride 1, zero padding (ph, pw).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WinoGeom {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub ph: usize,
    pub pw: usize,
    pub ho: usize,
    pub wo: usize,
}

impl WinoGeom {
    /// Tile rows.
    fn th(&self) -> usize {
        self.ho.div_ceil(2)
    }
    /// Tile columns.
    fn tw(&self) -> usize {
        self.wo.div_ceil(2)
    }
    /// Tiles per sample.
    fn tiles(&self) -> usize {
        self.th() * self.tw()
    }
    /// Samples per chunk (a function of the shapes only).
    fn chunk(&self) -> usize {
        let tps = self.tiles().max(1);
        // At least MIN_SAMPLES samples: the transforms are vectorized across samples.
        let by_tiles = TARGET_TILES.div_ceil(tps).max(MIN_SAMPLES);
        let per_sample = 16 * (self.c + self.o) * tps * std::mem::size_of::<f32>();
        let by_mem = (SCRATCH_BYTES / per_sample.max(1)).max(1);
        by_tiles.min(by_mem).clamp(1, self.n.max(1))
    }
}

/// Multiplications per output channel pair and sample of the Winograd path (16 per 2×2 tile); to
/// be compared with 9 per output position of direct convolution.
pub(crate) fn winograd_mults(ho: usize, wo: usize) -> usize {
    16 * ho.div_ceil(2) * wo.div_ceil(2)
}

/// Runs `$body` (an expression using the arguments) compiled for AVX2 when the CPU has it, else
/// for the baseline target. The transforms only add, subtract and halve, IEEE operations whose
/// results do not depend on the vector width, so both versions give the same bits.
macro_rules! avx2_dispatch {
    ($name:ident, ($($arg:ident : $ty:ty),* $(,)?), $body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn $name($($arg: $ty),*) {
                $body
            }
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2 (checked just above).
                return unsafe { $name($($arg),*) };
            }
        }
        $body
    }};
}

/// `G g Gᵀ` of 16 3x3 kernels at once (structure of arrays: `g[k][b]` is element k = 3·i + j of
/// kernel b), as `u[ξ][b]`, ξ = 4·i + j. Written lane-wise so that it vectorizes over b.
#[inline(always)]
fn kernel_tiles(g: &[[f32; 16]; 9], u: &mut [[f32; 16]; 16]) {
    // G g (4×3): rows g0, (g0 + g1 + g2)/2, (g0 − g1 + g2)/2, g2 of the kernel's rows.
    let mut a = [[[0.0f32; 16]; 3]; 4];
    for j in 0..3 {
        for b in 0..16 {
            let (g0, g1, g2) = (g[j][b], g[3 + j][b], g[6 + j][b]);
            a[0][j][b] = g0;
            a[1][j][b] = 0.5 * (g0 + g1 + g2);
            a[2][j][b] = 0.5 * (g0 - g1 + g2);
            a[3][j][b] = g2;
        }
    }
    // (G g) Gᵀ (4×4): the same combination along each row.
    for (i, r) in a.iter().enumerate() {
        for b in 0..16 {
            let (a0, a1, a2) = (r[0][b], r[1][b], r[2][b]);
            u[4 * i][b] = a0;
            u[4 * i + 1][b] = 0.5 * (a0 + a1 + a2);
            u[4 * i + 2][b] = 0.5 * (a0 - a1 + a2);
            u[4 * i + 3][b] = a2;
        }
    }
}

/// Weight transform of output channel `oc`: `uo[ξ·in_ch + ic] = (G g Gᵀ)_ξ` of kernel (oc, ic),
/// 16 input channels at a time (so that each of the 16 rows gets 16 contiguous values; rows in_ch
/// apart touched one value at a time would compete for cache sets).
#[inline(always)]
fn transform_weights_oc(
    w: &[f32],
    out_ch: usize,
    in_ch: usize,
    flip: bool,
    oc: usize,
    uo: &mut [f32],
) {
    let mut g = [[0.0f32; 16]; 9];
    let mut u = [[0.0f32; 16]; 16];
    for ic0 in (0..in_ch).step_by(16) {
        let nblk = 16.min(in_ch - ic0);
        for b in 0..nblk {
            let ic = ic0 + b;
            if flip {
                let src = &w[(ic * out_ch + oc) * 9..][..9];
                for (k, gk) in g.iter_mut().enumerate() {
                    gk[b] = src[8 - k];
                }
            } else {
                let src = &w[(oc * in_ch + ic) * 9..][..9];
                for (k, gk) in g.iter_mut().enumerate() {
                    gk[b] = src[k];
                }
            }
        }
        kernel_tiles(&g, &mut u);
        for (xi, ux) in u.iter().enumerate() {
            uo[xi * in_ch + ic0..][..nblk].copy_from_slice(&ux[..nblk]);
        }
    }
}

/// Weight transform `U[oc][ξ][ic]` for the conv with `out_ch` outputs and `in_ch` inputs.
///
/// `w` is OIHW `[out_ch, in_ch, 3, 3]`, or with `flip` the kernel of the *input adjoint* of a conv
/// with weights `w[in_ch, out_ch, 3, 3]`: kernel (oc, ic) is `w[ic][oc]` rotated by 180°.
fn transform_weights(w: &[f32], out_ch: usize, in_ch: usize, flip: bool) -> Vec<f32> {
    let mut u = vec![0.0f32; out_ch * 16 * in_ch];
    if in_ch == 0 {
        return u;
    }
    u.par_chunks_mut(16 * in_ch)
        .enumerate()
        .for_each(|(oc, uo)| {
            avx2_dispatch!(
                weights_avx2,
                (w: &[f32], out_ch: usize, in_ch: usize, flip: bool, oc: usize, uo: &mut [f32]),
                transform_weights_oc(w, out_ch, in_ch, flip, oc, uo)
            )
        });
    u
}

/// Input transform of channel `ci` of a chunk of `m` samples (`x` holds the chunk, `[m, C, H, W]`):
/// writes `vc[ξ·ldv + t]` (16 rows ldv ≥ m · tiles apart) for every tile t = p·m + s of the chunk
/// (tile position p = ty·tw + tx, sample s). `buf` and `tmp` are scratch of
/// (2·th + 2)·(2·tw + 2)·m and 16·m elements.
#[allow(clippy::too_many_arguments)]
fn input_transform(
    g: &WinoGeom,
    x: &[f32],
    m: usize,
    ci: usize,
    vc: &mut [f32],
    ldv: usize,
    buf: &mut [f32],
    tmp: &mut [f32],
) {
    avx2_dispatch!(
        input_avx2,
        (
            g: &WinoGeom,
            x: &[f32],
            m: usize,
            ci: usize,
            vc: &mut [f32],
            ldv: usize,
            buf: &mut [f32],
            tmp: &mut [f32],
        ),
        input_transform_body(g, x, m, ci, vc, ldv, buf, tmp)
    )
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn input_transform_body(
    g: &WinoGeom,
    x: &[f32],
    m: usize,
    ci: usize,
    vc: &mut [f32],
    ldv: usize,
    buf: &mut [f32],
    tmp: &mut [f32],
) {
    let (th, tw) = (g.th(), g.tw());
    let (hp, wp) = (2 * th + 2, 2 * tw + 2);
    // The zero-padded planes of the m samples, sample innermost: buf[(pr·wp + pc)·m + s] holds
    // input (pr − ph, pc − pw) of sample s. The padded grid always covers the input
    // (hp ≥ h + 2·ph, wp ≥ w + 2·pw), so every arithmetic step below is m lanes wide.
    let buf = &mut buf[..hp * wp * m];
    buf.fill(0.0);
    for s in 0..m {
        let plane = &x[(s * g.c + ci) * g.h * g.w..][..g.h * g.w];
        for r in 0..g.h {
            let dst = &mut buf[((r + g.ph) * wp + g.pw) * m + s..];
            for (q, &v) in plane[r * g.w..][..g.w].iter().enumerate() {
                dst[q * m] = v;
            }
        }
    }
    let tmp = &mut tmp[..16 * m];
    for ty in 0..th {
        for tx in 0..tw {
            let p = ty * tw + tx;
            let d = |k: usize, l: usize| &buf[((2 * ty + k) * wp + 2 * tx + l) * m..][..m];
            // Bᵀ d: tmp[(4·l + i)·m + s] holds row i, column l.
            for (l, tl) in tmp.chunks_exact_mut(4 * m).enumerate() {
                let (d0, d1, d2, d3) = (d(0, l), d(1, l), d(2, l), d(3, l));
                let (t0, rest) = tl.split_at_mut(m);
                let (t1, rest) = rest.split_at_mut(m);
                let (t2, t3) = rest.split_at_mut(m);
                for s in 0..m {
                    t0[s] = d0[s] - d2[s];
                    t1[s] = d1[s] + d2[s];
                    t2[s] = d2[s] - d1[s];
                    t3[s] = d1[s] - d3[s];
                }
            }
            // (Bᵀ d) B: row i of V from the four columns of row i.
            let tmp = &*tmp;
            for i in 0..4 {
                let a = |l: usize| &tmp[(4 * l + i) * m..][..m];
                let (a0, a1, a2, a3) = (a(0), a(1), a(2), a(3));
                let (v0, rest) = vc[4 * i * ldv..].split_at_mut(ldv);
                let (v1, rest) = rest.split_at_mut(ldv);
                let (v2, v3) = rest.split_at_mut(ldv);
                let (v0, v1) = (&mut v0[p * m..][..m], &mut v1[p * m..][..m]);
                let (v2, v3) = (&mut v2[p * m..][..m], &mut v3[p * m..][..m]);
                for s in 0..m {
                    v0[s] = a0[s] - a2[s];
                    v1[s] = a1[s] + a2[s];
                    v2[s] = a2[s] - a1[s];
                    v3[s] = a1[s] - a3[s];
                }
            }
        }
    }
}

/// Output transform of channel `oc` for the m samples of a chunk: `Y = Aᵀ M A` per tile from
/// `mm[ξ·plane + oc·T + p·m + s]`, plus `bias`, into `yb[(oh·Wo + ow)·m + s]` (sample innermost;
/// the caller scatters it to the NCHW planes). `z` is scratch of 8·m elements.
#[allow(clippy::too_many_arguments)]
fn output_transform(
    g: &WinoGeom,
    mm: &[f32],
    t_all: usize,
    plane: usize,
    m: usize,
    oc: usize,
    bias: f32,
    yb: &mut [f32],
    z: &mut [f32],
) {
    avx2_dispatch!(
        output_avx2,
        (
            g: &WinoGeom,
            mm: &[f32],
            t_all: usize,
            plane: usize,
            m: usize,
            oc: usize,
            bias: f32,
            yb: &mut [f32],
            z: &mut [f32],
        ),
        output_transform_body(g, mm, t_all, plane, m, oc, bias, yb, z)
    )
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn output_transform_body(
    g: &WinoGeom,
    mm: &[f32],
    t_all: usize,
    plane: usize,
    m: usize,
    oc: usize,
    bias: f32,
    yb: &mut [f32],
    z: &mut [f32],
) {
    let (th, tw) = (g.th(), g.tw());
    let z = &mut z[..8 * m];
    for ty in 0..th {
        for tx in 0..tw {
            let base = oc * t_all + (ty * tw + tx) * m;
            let mrow = |xi: usize| &mm[xi * plane + base..][..m];
            // Z = Aᵀ M (2×4): z[(4·r + j)·m + s] holds row r, column j.
            {
                let (za, zb) = z.split_at_mut(4 * m);
                for (j, (za, zb)) in za
                    .chunks_exact_mut(m)
                    .zip(zb.chunks_exact_mut(m))
                    .enumerate()
                {
                    let (m0, m1, m2, m3) = (mrow(j), mrow(4 + j), mrow(8 + j), mrow(12 + j));
                    for s in 0..m {
                        za[s] = m0[s] + m1[s] + m2[s];
                        zb[s] = m1[s] - m2[s] - m3[s];
                    }
                }
            }
            // Y = Z A (2×2) plus the bias, cropped to the output.
            for r in 0..2 {
                let oh = 2 * ty + r;
                if oh >= g.ho {
                    break;
                }
                let zr = |j: usize| &z[(4 * r + j) * m..][..m];
                let (z0, z1, z2, z3) = (zr(0), zr(1), zr(2), zr(3));
                let ow = 2 * tx;
                let (ye, rest) = yb[(oh * g.wo + ow) * m..].split_at_mut(m);
                for s in 0..m {
                    ye[s] = (z0[s] + z1[s] + z2[s]) + bias;
                }
                if ow + 1 < g.wo {
                    let yo = &mut rest[..m];
                    for s in 0..m {
                        yo[s] = (z1[s] - z2[s] - z3[s]) + bias;
                    }
                }
            }
        }
    }
}

/// Winograd F(2×2, 3×3) convolution: y `[n, o, ho, wo]` from x `[n, c, h, w]` (contiguous NCHW).
///
/// Weights are OIHW `[o, c, 3, 3]`, or with `flip` the weights `[c, o, 3, 3]` of a forward conv
/// whose input adjoint this computes (kernel (oc, ic) = `w[ic][oc]` rotated by 180°). The caller
/// has checked the shapes (`ho = h + 2·ph − 2`, `wo = w + 2·pw − 2`, slices of the right lengths).
pub(crate) fn conv3x3(
    g: &WinoGeom,
    x: &[f32],
    w: &[f32],
    flip: bool,
    bias: Option<&[f32]>,
) -> Result<Vec<f32>> {
    let hwo = g.ho * g.wo;
    let mut y = vec![0.0f32; g.n * g.o * hwo];
    if y.is_empty() {
        return Ok(y);
    }
    if g.c == 0 {
        // No input channels: the bias alone.
        if let Some(b) = bias {
            y.par_chunks_mut(hwo)
                .enumerate()
                .for_each(|(so, p)| p.fill(b[so % g.o]));
        }
        return Ok(y);
    }
    let (c, o) = (g.c, g.o);
    let u = transform_weights(w, o, c, flip);
    let tps = g.tiles();
    let nb = g.chunk();
    let t_max = nb * tps;
    let n_chunks = g.n.div_ceil(nb);
    let chunk_len = nb * o * hwo;
    let run = |ci: usize, ychunk: &mut [f32], inner: bool| {
        let (lv, lm) = (16 * c * (t_max + GAP), 16 * (o * t_max + GAP));
        super::scratch::with_scratch(lv, lm, 0, |vbuf, mbuf, _| {
            run_chunk(g, &u, x, ci * nb, ychunk, vbuf, mbuf, bias, inner)
        })
    };
    if n_chunks >= 4 * rayon::current_num_threads() {
        // Enough chunks for the pool: one chunk per task, its stages sequential.
        y.par_chunks_mut(chunk_len)
            .enumerate()
            .try_for_each(|(ci, yc)| run(ci, yc, false))?;
    } else {
        // Few chunks: one after the other, each stage parallel.
        for (ci, yc) in y.chunks_mut(chunk_len).enumerate() {
            run(ci, yc, true)?;
        }
    }
    Ok(y)
}

/// `f(i, chunk_i, state)` over the `size`-long chunks of `data`, in parallel (one `init()` state
/// per rayon split) or in order (one state).
fn each_chunk<S, E: Send>(
    par: bool,
    data: &mut [f32],
    size: usize,
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, usize, &mut [f32]) -> std::result::Result<(), E> + Sync + Send,
) -> std::result::Result<(), E> {
    if par {
        data.par_chunks_mut(size)
            .enumerate()
            .try_for_each_init(&init, |st, (i, ch)| f(st, i, ch))
    } else {
        let mut st = init();
        data.chunks_mut(size)
            .enumerate()
            .try_for_each(|(i, ch)| f(&mut st, i, ch))
    }
}

/// One chunk of samples starting at `n0` (`ychunk` is its output `[m, O, Ho, Wo]`): input
/// transform into `vbuf`, the 16 GEMMs into `mbuf`, output transform. Each stage is parallel over
/// its independent outputs when `par`, else sequential; the arithmetic is the same either way.
#[allow(clippy::too_many_arguments)]
fn run_chunk(
    g: &WinoGeom,
    u: &[f32],
    x: &[f32],
    n0: usize,
    ychunk: &mut [f32],
    vbuf: &mut [f32],
    mbuf: &mut [f32],
    bias: Option<&[f32]>,
    par: bool,
) -> Result<()> {
    let (c, o, hwo, tps) = (g.c, g.o, g.ho * g.wo, g.tiles());
    let (wp, hp) = (2 * g.tw() + 2, 2 * g.th() + 2);
    let m = ychunk.len() / (o * hwo);
    let t_all = m * tps;
    // V[c][ξ][t]: rows ldv apart; M[ξ][o][t]: planes `plane` apart (see GAP).
    let (ldv, plane) = (t_all + GAP, o * t_all + GAP);
    let (v, mm) = (&mut vbuf[..16 * c * ldv], &mut mbuf[..16 * plane]);
    let xchunk = &x[n0 * c * g.h * g.w..(n0 + m) * c * g.h * g.w];
    each_chunk(
        par,
        v,
        16 * ldv,
        || (vec![0.0f32; hp * wp * m], vec![0.0f32; 16 * m]),
        |(pad, tmp), ch, vc| {
            input_transform(g, xchunk, m, ch, vc, ldv, pad, tmp);
            Ok::<(), crate::Error>(())
        },
    )?;
    let v = &*v;
    let gm = Gemm {
        m: o,
        n: t_all,
        k: c,
        trans_a: false,
        trans_b: false,
    };
    each_chunk(
        par,
        mm,
        plane,
        || (),
        |_, xi, mx| {
            sgemm_ld(
                gm,
                1.0,
                (&u[xi * c..], 16 * c),
                (&v[xi * ldv..], 16 * ldv),
                0.0,
                (mx, t_all),
                Par::Seq,
            )
        },
    )?;
    let mm = &*mm;
    // Output planes grouped by blocks of OC_BLOCK channels over the chunk's samples: a task
    // transforms one channel for all samples at once (M[ξ][oc][·] read as 16 sequential streams).
    let mut groups: Vec<Vec<&mut [f32]>> = (0..o.div_ceil(OC_BLOCK))
        .map(|_| Vec::with_capacity(m))
        .collect();
    for ys in ychunk.chunks_mut(o * hwo) {
        for (grp, part) in groups.iter_mut().zip(ys.chunks_mut(OC_BLOCK * hwo)) {
            grp.push(part);
        }
    }
    let out_group = |(z, yb): &mut (Vec<f32>, Vec<f32>), j: usize, grp: &mut Vec<&mut [f32]>| {
        for ol in 0..grp[0].len() / hwo {
            let oc = j * OC_BLOCK + ol;
            let b = bias.map_or(0.0, |b| b[oc]);
            output_transform(g, mm, t_all, plane, m, oc, b, yb, z);
            // yb[(pixel)·m + s] → plane (s, oc).
            for (s, ys) in grp.iter_mut().enumerate() {
                let yp = &mut ys[ol * hwo..][..hwo];
                for (d, v) in yp.iter_mut().zip(yb[s..].iter().step_by(m)) {
                    *d = *v;
                }
            }
        }
    };
    let init = || (vec![0.0f32; 8 * m], vec![0.0f32; hwo * m]);
    if par {
        groups
            .par_iter_mut()
            .enumerate()
            .for_each_init(init, |st, (j, grp)| out_group(st, j, grp));
    } else {
        let mut st = init();
        for (j, grp) in groups.iter_mut().enumerate() {
            out_group(&mut st, j, grp);
        }
    }
    Ok(())
}
