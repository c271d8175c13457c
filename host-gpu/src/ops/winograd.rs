//! Winograd F(m×m, 3×3) convolution on the GPU, m = 2 or 4 ([`Tile`]; `kernels/winograd.wgsl`, one
//! template whose transform matrices are generated here), for 3x3 stride-1 layers: the forward conv
//! and the input adjoint (a correlation of the output gradient with the kernel rotated by 180° and
//! the channels swapped, padded by 2 − p), optionally reading the gradient through a
//! non-overlapping max or average unpooling, as the EP feedback of a pooled conv synapse does (the
//! unpooled tensor is never written).
//!
//! Four dispatches, with α = m + 2: the weight transform `U[α², M, K]`, the input transform
//! `V[α², K, T]` of the T = N·⌈HY/m⌉·⌈WY/m⌉ output tiles, one batched GEMM of the template
//! (`gemm::dense`, batch α²: `U_ξ · V_ξ`) and the output transform with the bias. The weight
//! transform runs once per weight tensor, tile and direction: `U` is kept with the weights' buffer
//! (`PoolBuf::derived`), so every later conv with the same weights (the steps of a free phase, an
//! attack's iterations) is three dispatches. The forward read of a pooled conv synapse
//! (`conv2d_pooled`) can pool in the output transform (`wino_output_pool`) when its windows
//! divide the tile (2×2 windows in F(2×2) tiles): each invocation pools the windows of its own
//! tile with the pooling kernels' rule, and the conv output is never written. Per m×m output
//! tile and channel pair that is α² multiplies against 9·m² for the direct implicit GEMM: F(2×2)
//! 16 against 36 (2.25× fewer), F(4×4) 36 against 144 (4× fewer), for extra passes over α²/m² of
//! the input and output activations (4× for F(2×2), 2.25× for F(4×4)) and the transformed weights.
//! Rounding: F(2×2)'s transforms only add, subtract and halve (about the direct sum's error);
//! F(4×4)'s use ±1, ±2, ±4, ±5, ±8 and 1/4, 1/6, 1/12, 1/24 and round more. Per op that stays
//! within 1e-4 of the output's scale (`tests/winograd.rs`), but in EP dynamics it flips near-tied
//! max-pool switches (`tests/tests/cli_device.rs`), so only F(2×2) is chosen by default
//! (`ConvAlgo`). Every sum has a fixed order, so results are the same bits on every run.

use std::sync::Arc;

use sim::{Pool2dParams, Pooling, Result};

use super::gemm::{Dims, dense};
use super::pool::pooled_index;
use super::{empty, empty_index, f, u};
use crate::context::{Bind, Ctx, groups_1d};
use crate::tensor::{GpuIndex, GpuTensor};

/// Most bytes of one transformed-input or product tensor (the rest of the batch waits for the next
/// chunk of samples); lower where the device's storage bindings are smaller. What the convs pass
/// to [`conv3x3`]; the tests pass smaller chunks.
pub(crate) const CHUNK_BYTES: u64 = 128 << 20;

/// The transform template; `{{MATRICES}}` is filled per [`Tile`].
const TEMPLATE: &str = include_str!("../kernels/winograd.wgsl");

/// Output tile of the Winograd algorithm: F(2×2, 3×3) or F(4×4, 3×3) (Lavin & Gray 2016, the
/// interpolation points 0, ±1 and 0, ±1, ±2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tile {
    F2,
    F4,
}

/// F(2×2, 3×3): Bᵀ (4×4), G (4×3), Aᵀ (2×4), row-major.
const F2_BT: [f32; 16] = [
    1., 0., -1., 0., 0., 1., 1., 0., 0., -1., 1., 0., 0., 1., 0., -1.,
];
const F2_G: [f32; 12] = [1., 0., 0., 0.5, 0.5, 0.5, 0.5, -0.5, 0.5, 0., 0., 1.];
const F2_AT: [f32; 8] = [1., 1., 1., 0., 0., 1., -1., -1.];
/// F(4×4, 3×3): Bᵀ (6×6), G (6×3, with 1/6, 1/12, 1/24 written as divisions), Aᵀ (4×6).
const F4_BT: [f32; 36] = [
    4., 0., -5., 0., 1., 0., //
    0., -4., -4., 1., 1., 0., //
    0., 4., -4., -1., 1., 0., //
    0., -2., -1., 2., 1., 0., //
    0., 2., -1., -2., 1., 0., //
    0., 4., 0., -5., 0., 1.,
];
const F4_G: [&str; 18] = [
    "0.25",
    "0.0",
    "0.0", //
    "-1.0 / 6.0",
    "-1.0 / 6.0",
    "-1.0 / 6.0", //
    "-1.0 / 6.0",
    "1.0 / 6.0",
    "-1.0 / 6.0", //
    "1.0 / 24.0",
    "1.0 / 12.0",
    "1.0 / 6.0", //
    "1.0 / 24.0",
    "-1.0 / 12.0",
    "1.0 / 6.0", //
    "0.0",
    "0.0",
    "1.0",
];
const F4_AT: [f32; 24] = [
    1., 1., 1., 1., 1., 0., //
    0., 1., -1., 2., -2., 0., //
    0., 1., 1., 4., 4., 0., //
    0., 1., -1., 8., -8., 1.,
];

impl Tile {
    /// Output rows (and columns) per tile.
    pub(crate) fn size(self) -> usize {
        match self {
            Tile::F2 => 2,
            Tile::F4 => 4,
        }
    }

    /// Transform size α = m + 2.
    pub(crate) fn alpha(self) -> usize {
        self.size() + 2
    }

    /// Multiplies per sample and channel pair for an `hy`×`wy` output.
    pub(crate) fn mults(self, hy: usize, wy: usize) -> usize {
        self.alpha().pow(2) * hy.div_ceil(self.size()) * wy.div_ceil(self.size())
    }

    fn name(self) -> &'static str {
        match self {
            Tile::F2 => "winograd.wgsl/f2",
            Tile::F4 => "winograd.wgsl/f4",
        }
    }

    /// The WGSL constants of the template: M_T, ALPHA, AA, BT, GM, AT.
    fn matrices(self) -> String {
        fn arr(name: &str, v: &[String]) -> String {
            format!(
                "const {name} = array<f32, {}>({});\n",
                v.len(),
                v.join(", ")
            )
        }
        let lits = |v: &[f32]| v.iter().map(|x| format!("{x:?}")).collect::<Vec<_>>();
        let (bt, g, at) = match self {
            Tile::F2 => (lits(&F2_BT), lits(&F2_G), lits(&F2_AT)),
            Tile::F4 => (
                lits(&F4_BT),
                F4_G.iter().map(|s| s.to_string()).collect(),
                lits(&F4_AT),
            ),
        };
        let a = self.alpha();
        format!(
            "const M_T: u32 = {m}u;\nconst ALPHA: u32 = {a}u;\nconst AA: u32 = {aa}u;\n{}{}{}",
            arr("BT", &bt),
            arr("GM", &g),
            arr("AT", &at),
            m = self.size(),
            aa = a * a,
        )
    }

    /// The full source: prelude + the max-pooling comparison + template with the matrices
    /// filled in.
    fn source(self) -> String {
        format!(
            "{}\n{}\n{}",
            include_str!("../kernels/prelude.wgsl"),
            include_str!("../kernels/maxpick.wgsl"),
            TEMPLATE.replace("{{MATRICES}}", &self.matrices())
        )
    }

    /// Whether `pool` of an `hy`×`wy` output can be fused into this tile's output transform: max
    /// or average pooling whose stride equals its window and whose window divides the tile (so
    /// every window lies in one tile), at least one window per plane.
    pub(crate) fn fuses(self, pool: Pooling, (hy, wy): (usize, usize)) -> bool {
        let fits = |p: Pool2dParams| {
            let (kh, kw) = p.kernel;
            // A zero window divides no tile (only 0 is a multiple of 0).
            p.stride == p.kernel
                && self.size().is_multiple_of(kh)
                && self.size().is_multiple_of(kw)
                && kh <= hy
                && kw <= wy
        };
        match pool {
            Pooling::Max(p) | Pooling::Avg(p) => fits(p),
            Pooling::None => false,
        }
    }

    /// Record one dispatch of `entry` of this tile's module.
    fn launch(self, ctx: &Ctx, entry: &str, p: &[u32], binds: &[Bind<'_>], n: usize) -> Result<()> {
        ctx.dispatch(
            self.name(),
            &|| self.source(),
            entry,
            p,
            binds,
            groups_1d(n),
        )
    }
}

/// Where the input transform reads: the source tensor itself, or a pooled gradient unpooled on the
/// fly (windows `k` = stride, pooled grid `hp`×`wp`; max unpooling with its switches).
pub(crate) enum Source<'a> {
    Plain(&'a GpuTensor),
    Unpool {
        v: &'a GpuTensor,
        idx: Option<&'a GpuIndex>,
        k: usize,
        hp: usize,
        wp: usize,
    },
}

/// Shapes of one Winograd convolution: `n` samples, `k` input channels of `hin`×`win` (after any
/// unpooling) padded by `pad` (rows, columns), `m` output channels of `hy`×`wy`, and the tile.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub(crate) tile: Tile,
    pub(crate) n: usize,
    pub(crate) k: usize,
    pub(crate) m: usize,
    pub(crate) hin: usize,
    pub(crate) win: usize,
    pub(crate) pad: (usize, usize),
    pub(crate) hy: usize,
    pub(crate) wy: usize,
}

/// y `[n, m, hy, wy]` = the 3x3 correlation of the source with `w`, padded by `s.pad`, plus the
/// bias, then `pool` (with the max pooling's switches): `Pooling::None`, or a pooling the tile
/// [`fuses`](Tile::fuses), done in the output transform so that the conv output is never
/// written. `w` is `[m, k, 3, 3]` (forward) or, with `transposed`, `[k, m, 3, 3]` read rotated by
/// 180° (the input adjoint). Samples run in chunks of at most `chunk_bytes` per transformed
/// tensor. The caller has checked the shapes (every flat index of the source, the weights and y
/// fits 32 bits) and that every size is non-zero.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv3x3(
    ctx: &Arc<Ctx>,
    op: &'static str,
    src: Source<'_>,
    w: &GpuTensor,
    transposed: bool,
    bias: Option<&GpuTensor>,
    s: Shape,
    pool: Pooling,
    chunk_bytes: u64,
) -> Result<(GpuTensor, Option<GpuIndex>)> {
    let tile = s.tile;
    let aa = tile.alpha().pow(2);
    let (th, tw) = (s.hy.div_ceil(tile.size()), s.wy.div_ceil(tile.size()));
    let tiles = th * tw;
    // Samples per chunk: the transformed input `[α², K, T]` and the product `[α², M, T]` of a
    // chunk stay within CHUNK_BYTES and the device's largest binding (at least one sample).
    let cap = chunk_bytes
        .min(ctx.limits.max_storage_buffer_binding_size)
        .min(ctx.limits.max_buffer_size);
    let per_sample = 4 * (aa * s.k.max(s.m) * tiles) as u64;
    let nb = usize::try_from(cap / per_sample.max(1))
        .unwrap_or(usize::MAX)
        .clamp(1, s.n);
    // Every flat index of the transformed tensors stays below α² times the larger of them.
    u(op, aa * (s.m * s.k).max(s.k.max(s.m) * nb * tiles))?;

    // The transformed weights depend on the weights alone: computed once per weight tensor and
    // kept with its buffer, so a free phase transforms each layer's weights once, not every step.
    let key = (
        "winograd weights",
        [
            tile.size() as u32,
            transposed as u32,
            u(op, s.m)?,
            u(op, s.k)?,
        ],
    );
    let uw = GpuTensor {
        buf: w.buf.derived(key, || {
            let uw = empty(ctx, &[aa, s.m, s.k])?;
            tile.launch(
                ctx,
                "wino_weights",
                &[
                    u(op, s.m)?,
                    u(op, s.k)?,
                    transposed as u32,
                    u(op, s.m * s.k)?,
                ],
                &[Bind::R(1, w.buffer()), Bind::W(3, uw.buffer())],
                s.m * s.k,
            )?;
            Ok(uw.buf)
        })?,
        shape: vec![aa, s.m, s.k],
    };
    let (x, idx, mode, (pk, hp, wp)) = match src {
        Source::Plain(x) => (x, None, 0, (1, 0, 0)),
        Source::Unpool { v, idx, k, hp, wp } => {
            (v, idx, if idx.is_some() { 1 } else { 2 }, (k, hp, wp))
        }
    };
    // The output, and for a fused pooling its switches and the words [mode, KH, KW, HO, WO,
    // KH·KW] of wino_output_pool.
    let (y, switches, pooled) = match pool {
        Pooling::None => (empty(ctx, &[s.n, s.m, s.hy, s.wy])?, None, None),
        Pooling::Max(pp) | Pooling::Avg(pp) => {
            debug_assert!(tile.fuses(pool, (s.hy, s.wy)), "{pool:?} not fusable");
            let (kh, kw) = pp.kernel;
            let shape = [s.n, s.m, s.hy / kh, s.wy / kw];
            let (mode, idx) = match pool {
                Pooling::Max(_) => (1, Some(pooled_index(ctx, &shape, pp, (s.hy, s.wy))?)),
                _ => (2, None),
            };
            let words = [
                mode,
                u(op, kh)?,
                u(op, kw)?,
                u(op, shape[2])?,
                u(op, shape[3])?,
                f((kh * kw) as f32),
            ];
            (empty(ctx, &shape)?, idx, Some(words))
        }
    };
    // Average pooling writes no switches: a one-element scratch takes their binding.
    let scratch = match (&pooled, &switches) {
        (Some(_), None) => Some(empty_index(ctx, &[1])?),
        _ => None,
    };
    // The words P[0..6] both transforms of the activations start with: channels, tiles T of the
    // chunk, the plane they read or write, and the tile grid.
    let head = |c: usize, t: usize, (h, w): (usize, usize)| -> Result<Vec<u32>> {
        [c, t, h, w, th, tw].iter().map(|&v| u(op, v)).collect()
    };
    let mut n0 = 0;
    while n0 < s.n {
        let t = nb.min(s.n - n0) * tiles;
        let v = empty(ctx, &[aa, s.k, t])?;
        let mut p = head(s.k, t, (s.hin, s.win))?;
        p.extend([
            u(op, s.pad.0)?,
            mode,
            u(op, pk)?,
            u(op, hp)?,
            u(op, wp)?,
            u(op, s.k * t)?,
            u(op, s.pad.1)?,
            u(op, n0)?,
        ]);
        tile.launch(
            ctx,
            "wino_input",
            &p,
            &[
                Bind::R(1, x.buffer()),
                // Without switches the kernel reads none: bind the source in their place.
                Bind::R(2, idx.map_or(x.buffer(), |i| i.buffer())),
                Bind::W(3, v.buffer()),
            ],
            s.k * t,
        )?;
        let d = Dims {
            m: s.m,
            n: t,
            k: s.k,
            batch: aa,
        };
        let prod = dense(ctx, op, &uw, &v, None, (false, false), d, &[aa, s.m, t])?;
        drop(v);
        let mut p = head(s.m, t, (s.hy, s.wy))?;
        p.extend([bias.is_some() as u32, u(op, s.m * t)?, u(op, n0)?]);
        let mut binds = vec![
            Bind::R(1, prod.buffer()),
            Bind::W(3, y.buffer()),
            // Without a bias the kernel reads none: bind the product in its place.
            Bind::R(4, bias.map_or(prod.buffer(), |b| b.buffer())),
        ];
        let entry = match pooled {
            None => "wino_output",
            Some(words) => {
                p.extend(words);
                let oidx = switches
                    .as_ref()
                    .or(scratch.as_ref())
                    .expect("switches or scratch");
                binds.push(Bind::W(5, oidx.buffer()));
                "wino_output_pool"
            }
        };
        tile.launch(ctx, entry, &p, &binds, s.m * t)?;
        n0 += nb;
    }
    Ok((y, switches))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Gpu;
    use sim::{Backend, Stream};

    /// Chunks of 1, 2 and 3 samples (of 5) give the one-chunk result, for both tiles, forward
    /// with bias and the input adjoint.
    #[test]
    fn chunks_of_samples_give_the_whole_batch_result() {
        let g = Gpu::new(None).expect("a GPU adapter (lavapipe in CI)");
        let r = |shape: &[usize], seed| {
            let t = sim::Cpu
                .rand(shape, &Stream::new(seed, "chunks"), 0)
                .unwrap();
            g.upload(&t).unwrap()
        };
        let (n, k, m, h, wd) = (5, 6, 7, 9, 10);
        let x = r(&[n, k, h, wd], 1);
        let w = r(&[m, k, 3, 3], 2);
        let b = r(&[m], 3);
        let gy = r(&[n, m, h, wd], 4);
        for tile in [Tile::F2, Tile::F4] {
            let per_sample = 4
                * tile.alpha().pow(2)
                * k.max(m)
                * h.div_ceil(tile.size())
                * wd.div_ceil(tile.size());
            let run = |cap: u64, adjoint: bool| {
                let s = Shape {
                    tile,
                    n,
                    k,
                    m,
                    hin: h,
                    win: wd,
                    pad: (1, 1),
                    hy: h,
                    wy: wd,
                };
                let y = if adjoint {
                    let s = Shape { k: m, m: k, ..s };
                    conv3x3(
                        g.ctx(),
                        "test",
                        Source::Plain(&gy),
                        &w,
                        true,
                        None,
                        s,
                        Pooling::None,
                        cap,
                    )
                } else {
                    conv3x3(
                        g.ctx(),
                        "test",
                        Source::Plain(&x),
                        &w,
                        false,
                        Some(&b),
                        s,
                        Pooling::None,
                        cap,
                    )
                };
                g.download(&y.unwrap().0).unwrap()
            };
            for adjoint in [false, true] {
                let whole = run(u64::MAX, adjoint);
                for samples in [1, 2, 3] {
                    let part = run((samples * per_sample) as u64, adjoint);
                    let err = whole
                        .iter()
                        .zip(part.iter())
                        .fold(0.0f32, |e, (a, b)| e.max((a - b).abs()));
                    assert!(
                        err <= 1e-5,
                        "{tile:?} adjoint {adjoint}, {samples} per chunk: {err}"
                    );
                }
            }
        }
    }
}
