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
//! * input, per chunk of samples: `V[c][ξ][t] = (Bᵀ d_ct B)_ξ` for its tiles t;
//! * 16 GEMMs `M_ξ[O, T] = U_ξ[O, C] · V_ξ[C, T]` (strided views of U and V);
//! * output: `Y = Aᵀ M A` per tile, plus the bias.
//!
//! That is 16 multiplies per tile and channel pair against 36 for direct convolution (2.25× fewer),
//! at the price of the transforms (linear in the activations) and f32 rounding slightly above the
//! direct sum's (the transforms only add, subtract and halve; F(2, 3) is well conditioned).
//!
//! Determinism: chunks are whole samples with a size depending only on the shapes; each chunk runs
//! its stages in order, each stage parallel over independent outputs (channels for the input
//! transform, the 16 single-threaded GEMMs, (sample, channel) planes for the output transform), so
//! every output element is the same arithmetic for any rayon thread count.

use rayon::prelude::*;

use super::gemm::{Gemm, Par, sgemm_ld};
use crate::error::Result;

/// Tiles per chunk aimed at: the `n` of the 16 GEMMs.
const TARGET_TILES: usize = 512;
/// Upper bound of a chunk's scratch (V and M), in bytes (at least one sample per chunk).
const SCRATCH_BYTES: usize = 32 << 20;

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
        let by_tiles = TARGET_TILES.div_ceil(tps);
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

/// `G g Gᵀ` of one 3x3 kernel `g` (row-major), as 16 values ξ = 4·i + j.
#[inline]
fn kernel_tile(g: &[f32; 9]) -> [f32; 16] {
    // G g (4×3): rows g0, (g0 + g1 + g2)/2, (g0 − g1 + g2)/2, g2 of the kernel's rows.
    let mut a = [[0.0f32; 3]; 4];
    for j in 0..3 {
        let (g0, g1, g2) = (g[j], g[3 + j], g[6 + j]);
        a[0][j] = g0;
        a[1][j] = 0.5 * (g0 + g1 + g2);
        a[2][j] = 0.5 * (g0 - g1 + g2);
        a[3][j] = g2;
    }
    // (G g) Gᵀ (4×4): the same combination along each row.
    let mut u = [0.0f32; 16];
    for (i, r) in a.iter().enumerate() {
        let (a0, a1, a2) = (r[0], r[1], r[2]);
        u[4 * i] = a0;
        u[4 * i + 1] = 0.5 * (a0 + a1 + a2);
        u[4 * i + 2] = 0.5 * (a0 - a1 + a2);
        u[4 * i + 3] = a2;
    }
    u
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
            for ic in 0..in_ch {
                let mut g = [0.0f32; 9];
                if flip {
                    let src = &w[(ic * out_ch + oc) * 9..][..9];
                    for (k, v) in g.iter_mut().enumerate() {
                        *v = src[8 - k];
                    }
                } else {
                    g.copy_from_slice(&w[(oc * in_ch + ic) * 9..][..9]);
                }
                for (xi, v) in kernel_tile(&g).into_iter().enumerate() {
                    uo[xi * in_ch + ic] = v;
                }
            }
        });
    u
}

/// Input transform of channel `ci` of a chunk of `m` samples (`x` holds the chunk, `[m, C, H, W]`):
/// writes `vc[ξ][t]` (`[16, T]`, T = m · tiles) for every tile t of the chunk. `pad` and `tmp` are
/// scratch of (2·th + 2)·(2·tw + 2) and 4·(2·tw + 2) elements.
fn input_transform(
    g: &WinoGeom,
    x: &[f32],
    m: usize,
    ci: usize,
    vc: &mut [f32],
    pad: &mut [f32],
    tmp: &mut [f32],
) {
    let (th, tw, tps) = (g.th(), g.tw(), g.tiles());
    let (hp, wp) = (2 * th + 2, 2 * tw + 2);
    let t_all = m * tps;
    for s in 0..m {
        // Zero-padded plane: input (r, q) at (r + ph, q + pw); the tile grid covers rows and
        // columns 0..hp, 0..wp of it.
        pad.fill(0.0);
        let plane = &x[(s * g.c + ci) * g.h * g.w..][..g.h * g.w];
        let cols = g.w.min(wp.saturating_sub(g.pw));
        for r in 0..g.h.min(hp.saturating_sub(g.ph)) {
            pad[(r + g.ph) * wp + g.pw..][..cols].copy_from_slice(&plane[r * g.w..][..cols]);
        }
        for ty in 0..th {
            let d = |k: usize| &pad[(2 * ty + k) * wp..][..wp];
            let (d0, d1, d2, d3) = (d(0), d(1), d(2), d(3));
            // Bᵀ d along the columns, for the whole row of tiles at once.
            let (t0, rest) = tmp.split_at_mut(wp);
            let (t1, rest) = rest.split_at_mut(wp);
            let (t2, t3) = rest.split_at_mut(wp);
            for q in 0..wp {
                t0[q] = d0[q] - d2[q];
                t1[q] = d1[q] + d2[q];
                t2[q] = d2[q] - d1[q];
                t3[q] = d1[q] - d3[q];
            }
            // (Bᵀ d) B along the rows, tile by tile.
            let base = s * tps + ty * tw;
            for (i, ti) in [&*t0, &*t1, &*t2, &*t3].into_iter().enumerate() {
                let (v0, rest) = vc[4 * i * t_all..(4 * i + 4) * t_all].split_at_mut(t_all);
                let (v1, rest) = rest.split_at_mut(t_all);
                let (v2, v3) = rest.split_at_mut(t_all);
                for tx in 0..tw {
                    let r = &ti[2 * tx..2 * tx + 4];
                    v0[base + tx] = r[0] - r[2];
                    v1[base + tx] = r[1] + r[2];
                    v2[base + tx] = r[2] - r[1];
                    v3[base + tx] = r[1] - r[3];
                }
            }
        }
    }
}

/// Output transform of plane (sample s, channel oc) of a chunk: `Y = Aᵀ M A` per tile from
/// `mm[ξ][O][T]`, plus `bias`, into `y` (`[Ho, Wo]`). `z` is scratch of 8·tw elements.
fn output_transform(
    g: &WinoGeom,
    mm: &[f32],
    t_all: usize,
    s: usize,
    oc: usize,
    bias: f32,
    y: &mut [f32],
    z: &mut [f32],
) {
    let (th, tw, tps) = (g.th(), g.tw(), g.tiles());
    let plane = g.o * t_all;
    for ty in 0..th {
        let base = oc * t_all + s * tps + ty * tw;
        let mrow = |xi: usize| &mm[xi * plane + base..][..tw];
        // Z = Aᵀ M (2×4 per tile): z[4·r + j] holds row r, column j for every tile of the row.
        for j in 0..4 {
            let (m0, m1, m2, m3) = (mrow(j), mrow(4 + j), mrow(8 + j), mrow(12 + j));
            let (za, zb) = z.split_at_mut(4 * tw);
            let (za, zb) = (&mut za[j * tw..][..tw], &mut zb[j * tw..][..tw]);
            for tx in 0..tw {
                za[tx] = m0[tx] + m1[tx] + m2[tx];
                zb[tx] = m1[tx] - m2[tx] - m3[tx];
            }
        }
        // Y = Z A (2×2 per tile), cropped to the output.
        for r in 0..2 {
            let oh = 2 * ty + r;
            if oh >= g.ho {
                break;
            }
            let zr = &z[4 * r * tw..][..4 * tw];
            let (z0, z1, z2, z3) = (
                &zr[..tw],
                &zr[tw..2 * tw],
                &zr[2 * tw..3 * tw],
                &zr[3 * tw..],
            );
            let yr = &mut y[oh * g.wo..][..g.wo];
            for tx in 0..tw {
                yr[2 * tx] = (z0[tx] + z1[tx] + z2[tx]) + bias;
                if 2 * tx + 1 < g.wo {
                    yr[2 * tx + 1] = (z1[tx] - z2[tx] - z3[tx]) + bias;
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
    let (wp, hp) = (2 * g.tw() + 2, 2 * g.th() + 2);
    let t_max = nb * tps;
    super::conv::with_scratch(16 * c * t_max, 16 * o * t_max, 0, |vbuf, mbuf, _| {
        for (ci, ychunk) in y.chunks_mut(nb * o * hwo).enumerate() {
            let n0 = ci * nb;
            let m = ychunk.len() / (o * hwo);
            let t_all = m * tps;
            let (v, mm) = (&mut vbuf[..16 * c * t_all], &mut mbuf[..16 * o * t_all]);
            let xchunk = &x[n0 * c * g.h * g.w..(n0 + m) * c * g.h * g.w];
            v.par_chunks_mut(16 * t_all).enumerate().for_each_init(
                || (vec![0.0f32; hp * wp], vec![0.0f32; 4 * wp]),
                |(pad, tmp), (ch, vc)| input_transform(g, xchunk, m, ch, vc, pad, tmp),
            );
            let v = &*v;
            let u = &u;
            mm.par_chunks_mut(o * t_all)
                .enumerate()
                .try_for_each(|(xi, mx)| {
                    let gm = Gemm {
                        m: o,
                        n: t_all,
                        k: c,
                        trans_a: false,
                        trans_b: false,
                    };
                    sgemm_ld(
                        gm,
                        1.0,
                        (&u[xi * c..], 16 * c),
                        (&v[xi * t_all..], 16 * t_all),
                        0.0,
                        (mx, t_all),
                        Par::Seq,
                    )
                })?;
            let mm = &*mm;
            ychunk.par_chunks_mut(hwo).enumerate().for_each_init(
                || vec![0.0f32; 8 * g.tw()],
                |z, (so, yp)| {
                    let (s, oc) = (so / o, so % o);
                    let b = bias.map_or(0.0, |b| b[oc]);
                    output_transform(g, mm, t_all, s, oc, b, yp, z)
                },
            );
        }
        Ok(())
    })?;
    Ok(y)
}
