//! Convolutions on the GPU: forward, input and weight adjoints as implicit GEMMs on the template of
//! `gemm.rs` (no im2col buffer: the loaders read the NCHW tensors with the patch indexing), and,
//! for 3x3 stride-1 layers, the Winograd F(2×2, 3×3) and F(4×4, 3×3) paths of `winograd.rs` where
//! [`ConvAlgo`] chooses them, with the EP forward read's pooling fused into the Winograd output
//! transform where its windows divide the tile ([`conv2d_pooled`]). The GEMM's rows and columns
//! are oriented so that the invocations of a workgroup store consecutive NCHW addresses (the
//! columns run over the spatial positions):
//!
//! * forward: `y[(n,oh,ow), o]` computed as its transpose, M = O, N = N·Ho·Wo, K = C·kh·kw,
//!   A = the weights `[O, K]`, B = the patches of x, bias in the epilogue;
//! * input adjoint: M = C, N = N·H·W, K = O·kh·kw, A = the weights read as `[C, K]`, B = gy at
//!   `(h + ph − i) / sh`. With a stride > 1 the input positions are split into sh·sw phases by
//!   `(h + ph) mod sh` (and likewise for w); each phase is one GEMM over the taps that reach it,
//!   so no work is spent on taps where the stride does not divide;
//! * weight adjoint: M = O, N = C·kh·kw, K = N·Ho·Wo, A = gy, B = the patches of x, split-K.
//!
//! The spatial geometry (H, W, Ho, Wo, kernel, stride, padding, phase) is baked into the generated
//! source as constants, so the index arithmetic divides by constants only; channel counts and the
//! batch stay runtime parameters. Each distinct geometry is one shader module (a CNN has a few).
//!
//! Known costs of the GEMM tile (64×64 by default, 128×128 with `GemmTile::T128`): a GEMM
//! dimension far below it leaves most of each tile idle (the input adjoint of a 3-channel first
//! layer has M = 3: ~20× the useful work at 64, ~40× at 128; in EP the image needs no gradient), and the input adjoint of a layer whose output is smaller than its
//! input (3x3, padding 0, 4x4 → 2x2) multiplies zero-padded taps (~4× there).
//!
//! Checks and errors are those of the CPU backend (`sim/src/cpu/conv.rs`), made before the
//! algorithm is chosen.

use std::sync::Arc;

use sim::{Conv2dParams, Error, Pooling, Result};

use super::empty;
use super::gemm::{
    BK, Dims, SPLIT_STORE, Variant, bindings, kfast, launch_gemm, reduce_splits, split_k,
};
use super::winograd::{self, Source, Tile};
use super::{pool, u};
use crate::context::{Bind, Ctx};
use crate::tensor::{GpuIndex, GpuTensor};

/// Which algorithm the GPU backend runs for the forward conv and the input adjoint (the weight
/// adjoint is always the direct implicit GEMM). Set with `Gpu::with_conv_algo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvAlgo {
    /// Winograd F(2×2, 3×3) where it is supported, the layer has ≥ [`WINOGRAD_MIN_CHANNELS`]
    /// channels in and out, and it needs ≥ 1.5× fewer multiplies than direct; else the direct
    /// implicit GEMM.
    #[default]
    Auto,
    /// The direct implicit GEMM everywhere.
    Direct,
    /// Winograd F(2×2, 3×3) wherever it is supported (3x3 kernels at stride 1, and padding ≤ 2
    /// for the input adjoint), else the direct implicit GEMM.
    Winograd2,
    /// Winograd F(4×4, 3×3) wherever it is supported, else the direct implicit GEMM. 4× fewer
    /// multiplies than direct, but not within the backends' 1e-4 parity on trained max-pooling
    /// EP nets: its larger rounding flips near-tied max-pool switches of clamped neurons, and the
    /// switched feedback moves states far (the shipped small CIFAR-10 EP-CNN:
    /// `winograd_f4_moves_the_shipped_cifar10_models_states` in `tests/tests/cli_device.rs`).
    /// For speed measurements and nets without such ties.
    Winograd4,
}

/// What [`ConvAlgo`]'s `FromStr` accepts, for help texts and errors.
pub const CONV_ALGO_VALUES: &str = "auto, direct, winograd2 or winograd4";

impl std::str::FromStr for ConvAlgo {
    type Err = String;

    /// `auto`, `direct`, `winograd2` or `winograd4` (what `Display` writes).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(ConvAlgo::Auto),
            "direct" => Ok(ConvAlgo::Direct),
            "winograd2" => Ok(ConvAlgo::Winograd2),
            "winograd4" => Ok(ConvAlgo::Winograd4),
            _ => Err(format!(
                "unknown GPU convolution algorithm {s:?}: expected {CONV_ALGO_VALUES}"
            )),
        }
    }
}

impl std::fmt::Display for ConvAlgo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConvAlgo::Auto => "auto",
            ConvAlgo::Direct => "direct",
            ConvAlgo::Winograd2 => "winograd2",
            ConvAlgo::Winograd4 => "winograd4",
        })
    }
}

/// Input and output channels [`ConvAlgo::Auto`] needs for Winograd. Chosen without a GPU
/// measurement (none was lent so far): the 16 GEMMs reduce over the input channels only, so
/// below two of the template's K steps (2 · 16) their tiles spend more time loading than
/// multiplying, and the transforms' extra passes over the activations are not repaid.
/// `scripts/gpu-bench.sh` times both algorithms on the paper's layers.
pub const WINOGRAD_MIN_CHANNELS: usize = 32;

impl ConvAlgo {
    /// The Winograd tile the conv of `g` (its input adjoint when `adjoint`) runs with, or `None`
    /// for the direct GEMM. Supported: 3x3 kernel, stride 1, every size non-zero, and for the
    /// adjoint a padding ≤ 2 (the transposed correlation pads by 2 − p). `Auto` takes F(2×2)
    /// where it also has ≥ [`WINOGRAD_MIN_CHANNELS`] channels in and out and 1.5× fewer
    /// multiplies than the direct GEMM (16 per 2×2 tile against 9 per position of the same
    /// output), which rules out outputs of one row or column.
    fn winograd_tile(self, g: &Geom, adjoint: bool) -> Option<Tile> {
        let sizes = [g.n, g.c, g.o, g.h, g.w, g.ho, g.wo];
        let fits = (g.kh, g.kw, g.sh, g.sw) == (3, 3, 1, 1)
            && sizes.iter().all(|&v| v > 0)
            && (!adjoint || (g.ph <= 2 && g.pw <= 2));
        let (k_in, m_out, hy, wy) = if adjoint {
            (g.o, g.c, g.h, g.w)
        } else {
            (g.c, g.o, g.ho, g.wo)
        };
        let tile = match self {
            ConvAlgo::Direct => return None,
            ConvAlgo::Winograd2 => Tile::F2,
            ConvAlgo::Winograd4 => Tile::F4,
            ConvAlgo::Auto => {
                if k_in < WINOGRAD_MIN_CHANNELS
                    || m_out < WINOGRAD_MIN_CHANNELS
                    || 3 * Tile::F2.mults(hy, wy) > 2 * 9 * hy * wy
                {
                    return None;
                }
                Tile::F2
            }
        };
        fits.then_some(tile)
    }
}

/// Shapes of one convolution (as the CPU backend's `Geom`).
#[derive(Debug, Clone, Copy)]
struct Geom {
    n: usize,
    c: usize,
    o: usize,
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
    fn new(
        (n, c, o): (usize, usize, usize),
        (h, w): (usize, usize),
        (kh, kw): (usize, usize),
        p: Conv2dParams,
        (ho, wo): (usize, usize),
    ) -> Self {
        Geom {
            n,
            c,
            o,
            h,
            w,
            kh,
            kw,
            sh: p.stride.0,
            sw: p.stride.1,
            ph: p.padding.0,
            pw: p.padding.1,
            ho,
            wo,
        }
    }

    /// The spatial geometry as WGSL constants, and a tag naming it.
    fn consts(&self) -> (String, String) {
        let c = format!(
            "const H: u32 = {h}u;\nconst W: u32 = {w}u;\nconst HO: u32 = {ho}u;\nconst WO: u32 = {wo}u;
const KH: u32 = {kh}u;\nconst KW: u32 = {kw}u;\nconst SH: u32 = {sh}u;\nconst SW: u32 = {sw}u;
const PH: i32 = {ph}i;\nconst PW: i32 = {pw}i;
const HW: u32 = H * W;\nconst HOWO: u32 = HO * WO;\nconst KHW: u32 = KH * KW;\n",
            h = self.h,
            w = self.w,
            ho = self.ho,
            wo = self.wo,
            kh = self.kh,
            kw = self.kw,
            sh = self.sh,
            sw = self.sw,
            ph = self.ph,
            pw = self.pw,
        );
        let tag = format!(
            "h{}w{}/k{}x{}/s{}x{}/p{}x{}",
            self.h, self.w, self.kh, self.kw, self.sh, self.sw, self.ph, self.pw
        );
        (c, tag)
    }

    /// Runtime parameter words of the conv variants: P[8] = C, P[9] = O.
    fn words(&self, op: &'static str) -> Result<[u32; 2]> {
        // Every flat index the kernels form stays below the largest tensor's element count.
        let x = self.n * self.c * self.h * self.w;
        let y = self.n * self.o * self.ho * self.wo;
        let wt = self.o * self.c * self.kh * self.kw;
        u(op, x.max(y).max(wt))?;
        Ok([u(op, self.c)?, u(op, self.o)?])
    }
}

fn dims4(op: &'static str, what: &str, t: &GpuTensor) -> Result<[usize; 4]> {
    match t.shape[..] {
        [a, b, c, d] => Ok([a, b, c, d]),
        ref s => Err(Error::shape(
            op,
            format!("{what} must have rank 4, got shape {s:?}"),
        )),
    }
}

/// Forward: M = O, N = N·Ho·Wo, K = C·kh·kw. A = w (row o is contiguous in k), B = the patches
/// (consecutive n are consecutive output columns ow, so the B tile loads along n).
fn conv_fwd_variant(g: &Geom, bias: bool) -> Variant {
    let (consts, tag) = g.consts();
    let plus_bias = if bias { " + BIAS[m]" } else { "" };
    Variant {
        name: format!("gemm/conv_fwd/{tag}/bias{}", bias as u8),
        bindings: bindings(bias),
        consts: consts + &kfast(true, false),
        a_loader: "struct ARow { base: u32 }
fn a_row(z: u32, m: u32) -> ARow { return ARow(m * pu(2u)); }
fn a_at(r: ARow, k: u32) -> f32 { return SA[r.base + k]; }"
            .into(),
        b_loader: "struct BCol { base: u32, ih0: i32, iw0: i32 }
fn b_col(z: u32, n: u32) -> BCol {
    let nb = n / HOWO;
    let p = n % HOWO;
    return BCol(nb * pu(8u) * HW, i32((p / WO) * SH) - PH, i32((p % WO) * SW) - PW);
}
fn b_at(c: BCol, k: u32) -> f32 {
    let ci = k / KHW;
    let tap = k % KHW;
    let ih = c.ih0 + i32(tap / KW);
    let iw = c.iw0 + i32(tap % KW);
    if (u32(ih) >= H || u32(iw) >= W) {
        return 0.0;
    }
    return SB[c.base + ci * HW + u32(ih) * W + u32(iw)];
}"
        .into(),
        epilogue: format!(
            "fn store(z: u32, s: u32, m: u32, n: u32, v: f32) {{
    let nb = n / HOWO;
    OUT[(nb * pu(9u) + m) * HOWO + n % HOWO] = v{plus_bias};
}}"
        ),
    }
}

/// One stride phase of the input adjoint: the input positions h ≡ h0 (mod sh), w ≡ w0 (mod sw),
/// reached only by the taps i = rh + iq·sh, j = rw + jq·sw (rh = (h0 + ph) mod sh).
#[derive(Debug, Clone, Copy)]
struct Phase {
    rh: usize,
    rw: usize,
    h0: usize,
    w0: usize,
    /// Input rows / columns of the phase.
    nh: usize,
    nw: usize,
    /// Taps of the phase per kernel axis.
    kh: usize,
    kw: usize,
}

impl Phase {
    fn all(g: &Geom) -> Vec<Phase> {
        let axis = |r: usize, s: usize, p: usize, len: usize, k: usize| {
            let first = (r + s - p % s) % s;
            let count = if first < len {
                (len - first).div_ceil(s)
            } else {
                0
            };
            let taps = if r < k { (k - r).div_ceil(s) } else { 0 };
            (first, count, taps)
        };
        let mut out = Vec::new();
        for rh in 0..g.sh {
            let (h0, nh, kh) = axis(rh, g.sh, g.ph, g.h, g.kh);
            for rw in 0..g.sw {
                let (w0, nw, kw) = axis(rw, g.sw, g.pw, g.w, g.kw);
                out.push(Phase {
                    rh,
                    rw,
                    h0,
                    w0,
                    nh,
                    nw,
                    kh,
                    kw,
                });
            }
        }
        out
    }
}

/// A pooling undone inside the input adjoint's B loader ([`conv2d_pooled_input_grad`]): the
/// gradient arrives at the pooled grid `[N, O, HP, WP]` and each conv-output position (oh, ow)
/// reads its window (oh / PK, ow / PK), so the unpooled tensor is never written. Only for
/// non-overlapping windows (stride = window), where each position lies in at most one window.
#[derive(Debug, Clone, Copy)]
struct Unpool {
    /// Window (= stride).
    k: usize,
    /// Pooled grid.
    hp: usize,
    wp: usize,
    /// Max pooling (read at the switch) or average (spread evenly).
    max: bool,
}

/// Binding of the max-pool switches in the fused input adjoint.
const UNPOOL_BINDING: &str = "@group(0) @binding(5) var<storage, read> IDX: array<u32>;\n";

impl Unpool {
    fn tag(&self) -> String {
        format!("/unpool{}{}", if self.max { "max" } else { "avg" }, self.k)
    }

    fn consts(&self) -> String {
        format!(
            "const PK: u32 = {k}u;\nconst HP: u32 = {hp}u;\nconst WP: u32 = {wp}u;\nconst HPWP: u32 = {hpwp}u;\n",
            k = self.k,
            hp = self.hp,
            wp = self.wp,
            hpwp = (self.hp * self.wp).max(1),
        )
    }

    /// The B loader's read of the unpooled gradient at (o, oh, ow).
    fn read(&self) -> &'static str {
        if self.max {
            "    let qh = u32(oh) / PK;
    let qw = u32(ow) / PK;
    if (qh >= HP || qw >= WP) {
        return 0.0;
    }
    let j = c.base + o * HPWP + qh * WP + qw;
    if (IDX[j] != u32(oh) * WO + u32(ow)) {
        return 0.0;
    }
    return SB[j];"
        } else {
            "    let qh = u32(oh) / PK;
    let qw = u32(ow) / PK;
    if (qh >= HP || qw >= WP) {
        return 0.0;
    }
    return SB[c.base + o * HPWP + qh * WP + qw] / f32(PK * PK);"
        }
    }
}

/// Input adjoint, one phase: M = C, N = N·nh·nw, K = O·kh'·kw'. A(c, (o, iq, jq)) = w[o, c, i, j],
/// B((o, iq, jq), (n, hq, wq)) = gy[n, o, oh0 + hq − iq, ow0 + wq − jq] (zero outside), where
/// oh0 = (h0 + ph − rh) / sh is exact by the choice of h0.
fn conv_dgrad_variant(g: &Geom, ph: &Phase, unpool: Option<&Unpool>) -> Variant {
    let (consts, tag) = g.consts();
    let phase = format!(
        "const RH: u32 = {rh}u;\nconst RW: u32 = {rw}u;\nconst H0: u32 = {h0}u;\nconst W0: u32 = {w0}u;
const NWP: u32 = {nw}u;\nconst NHWP: u32 = {nhw}u;\nconst KWP: u32 = {kw}u;\nconst KHWP: u32 = {khw}u;
const OH0: u32 = {oh0}u;\nconst OW0: u32 = {ow0}u;\n",
        rh = ph.rh,
        rw = ph.rw,
        h0 = ph.h0,
        w0 = ph.w0,
        // Divisors: a phase without taps or positions never calls the code that divides by them.
        nw = ph.nw.max(1),
        nhw = (ph.nh * ph.nw).max(1),
        kw = ph.kw.max(1),
        khw = (ph.kh * ph.kw).max(1),
        oh0 = (ph.h0 + g.ph - ph.rh) / g.sh,
        ow0 = (ph.w0 + g.pw - ph.rw) / g.sw,
    );
    Variant {
        name: format!(
            "gemm/conv_dgrad/{tag}/r{}x{}{}",
            ph.rh,
            ph.rw,
            unpool.map_or(String::new(), Unpool::tag)
        ),
        bindings: bindings(false) + unpool.map_or("", |_| UNPOOL_BINDING),
        consts: consts
            + &phase
            + &kfast(true, false)
            + &unpool.map_or(String::new(), Unpool::consts),
        a_loader: "struct ARow { base: u32 }
fn a_row(z: u32, m: u32) -> ARow { return ARow(m * KHW); }
fn a_at(r: ARow, k: u32) -> f32 {
    let o = k / KHWP;
    let tq = k % KHWP;
    let i = RH + (tq / KWP) * SH;
    let j = RW + (tq % KWP) * SW;
    return SA[r.base + o * pu(8u) * KHW + i * KW + j];
}"
        .into(),
        b_loader: format!(
            "struct BCol {{ base: u32, oh: i32, ow: i32 }}
fn b_col(z: u32, n: u32) -> BCol {{
    let nb = n / NHWP;
    let q = n % NHWP;
    return BCol(nb * pu(9u) * {plane}, i32(OH0 + q / NWP), i32(OW0 + q % NWP));
}}
fn b_at(c: BCol, k: u32) -> f32 {{
    let o = k / KHWP;
    let tq = k % KHWP;
    let oh = c.oh - i32(tq / KWP);
    let ow = c.ow - i32(tq % KWP);
    if (u32(oh) >= HO || u32(ow) >= WO) {{
        return 0.0;
    }}
{read}
}}",
            plane = if unpool.is_some() { "HPWP" } else { "HOWO" },
            read = unpool.map_or(
                "    return SB[c.base + o * HOWO + u32(oh) * WO + u32(ow)];",
                Unpool::read
            ),
        ),
        epilogue: "fn store(z: u32, s: u32, m: u32, n: u32, v: f32) {
    let nb = n / NHWP;
    let q = n % NHWP;
    let h = H0 + (q / NWP) * SH;
    let w = W0 + (q % NWP) * SW;
    OUT[(nb * pu(8u) + m) * HW + h * W + w] = v;
}"
        .into(),
    }
}

/// Weight adjoint: M = O, N = C·kh·kw, K = N·Ho·Wo. A(o, (n, p)) = gy[n, o, p],
/// B((n, oh, ow), (c, i, j)) = x[n, c, oh·sh − ph + i, ow·sw − pw + j]; both tiles load along k
/// (consecutive output positions). The output `[O, C·kh·kw]` is gw itself (or the split slots).
fn conv_wgrad_variant(g: &Geom) -> Variant {
    let (consts, tag) = g.consts();
    Variant {
        name: format!("gemm/conv_wgrad/{tag}"),
        bindings: bindings(false),
        consts: consts + &kfast(true, true),
        a_loader: "struct ARow { base: u32 }
fn a_row(z: u32, m: u32) -> ARow { return ARow(m * HOWO); }
fn a_at(r: ARow, k: u32) -> f32 {
    return SA[r.base + (k / HOWO) * pu(9u) * HOWO + k % HOWO];
}"
        .into(),
        b_loader: "struct BCol { base: u32, di: i32, dj: i32 }
fn b_col(z: u32, n: u32) -> BCol {
    let tap = n % KHW;
    return BCol((n / KHW) * HW, i32(tap / KW) - PH, i32(tap % KW) - PW);
}
fn b_at(c: BCol, k: u32) -> f32 {
    let nb = k / HOWO;
    let p = k % HOWO;
    let ih = i32((p / WO) * SH) + c.di;
    let iw = i32((p % WO) * SW) + c.dj;
    if (u32(ih) >= H || u32(iw) >= W) {
        return 0.0;
    }
    return SB[nb * pu(8u) * HW + c.base + u32(ih) * W + u32(iw)];
}"
        .into(),
        epilogue: SPLIT_STORE.into(),
    }
}

/// y[N,O,Ho,Wo] = conv2d(x[N,C,H,W], w[O,C,kh,kw]) + b[O].
pub(crate) fn conv2d(
    ctx: &Arc<Ctx>,
    algo: ConvAlgo,
    x: &GpuTensor,
    w: &GpuTensor,
    b: Option<&GpuTensor>,
    p: Conv2dParams,
) -> Result<GpuTensor> {
    conv2d_pooled(ctx, algo, x, w, b, p, Pooling::None).map(|(y, _)| y)
}

/// The forward read of a conv synapse, `pool(conv2d(x, w) + b)` with the max pooling's switches.
/// When the conv runs as Winograd and its tile [`fuses`](Tile::fuses) the pooling, the output
/// transform pools and the conv output is never written (a pass over it and a launch fewer);
/// otherwise the pooling op follows the conv. Errors are those of the conv, then the pooling.
pub(crate) fn conv2d_pooled(
    ctx: &Arc<Ctx>,
    algo: ConvAlgo,
    x: &GpuTensor,
    w: &GpuTensor,
    b: Option<&GpuTensor>,
    p: Conv2dParams,
    pool: Pooling,
) -> Result<(GpuTensor, Option<GpuIndex>)> {
    match (forward(ctx, algo, x, w, b, p, pool)?, pool) {
        (Forward::Pooled(y, idx), _) => Ok((y, idx)),
        (Forward::Conv(z), Pooling::None) => Ok((z, None)),
        (Forward::Conv(z), Pooling::Max(pp)) => {
            let (y, idx) = pool::max_pool2d(ctx, &z, pp)?;
            Ok((y, Some(idx)))
        }
        (Forward::Conv(z), Pooling::Avg(pp)) => Ok((pool::avg_pool2d(ctx, &z, pp)?, None)),
    }
}

/// What [`forward`] computed: the conv output, or its pooling fused into the conv.
enum Forward {
    Conv(GpuTensor),
    Pooled(GpuTensor, Option<GpuIndex>),
}

/// The forward conv after the shape checks, with `pool` fused where the Winograd tile allows it.
fn forward(
    ctx: &Arc<Ctx>,
    algo: ConvAlgo,
    x: &GpuTensor,
    w: &GpuTensor,
    b: Option<&GpuTensor>,
    p: Conv2dParams,
    pool: Pooling,
) -> Result<Forward> {
    const OP: &str = "conv2d";
    let [n, c, h, wd] = dims4(OP, "input x [N,C,H,W]", x)?;
    let [o, cw, kh, kw] = dims4(OP, "weight w [O,C,kh,kw]", w)?;
    if cw != c {
        return Err(Error::shape(
            OP,
            format!(
                "input has {c} channels (x {:?}) but weight expects {cw} (w {:?})",
                x.shape, w.shape
            ),
        ));
    }
    if let Some(b) = b
        && b.shape != [o]
    {
        return Err(Error::shape(
            OP,
            format!(
                "bias must have shape [{o}] (out channels), got {:?}",
                b.shape
            ),
        ));
    }
    let (ho, wo) = p.output_hw(OP, (h, wd), (kh, kw))?;
    let g = Geom::new((n, c, o), (h, wd), (kh, kw), p, (ho, wo));
    let words = g.words(OP)?;
    if let Some(tile) = algo.winograd_tile(&g, false) {
        let s = winograd::Shape {
            tile,
            n,
            k: c,
            m: o,
            hin: h,
            win: wd,
            pad: p.padding,
            hy: ho,
            wy: wo,
        };
        // Fused only where the composed pooling would not fail: its errors come from pool.rs.
        let fused = if tile.fuses(pool, (ho, wo)) {
            pool
        } else {
            Pooling::None
        };
        let (y, idx) = winograd::conv3x3(
            ctx,
            OP,
            Source::Plain(x),
            w,
            false,
            b,
            s,
            fused,
            winograd::CHUNK_BYTES,
        )?;
        return Ok(if fused == Pooling::None {
            Forward::Conv(y)
        } else {
            Forward::Pooled(y, idx)
        });
    }
    let out = empty(ctx, &[n, o, ho, wo])?;
    let d = Dims {
        m: o,
        n: n * ho * wo,
        k: c * kh * kw,
        batch: 1,
    };
    let mut binds = vec![
        Bind::R(1, w.buffer()),
        Bind::R(2, x.buffer()),
        Bind::W(4, out.buffer()),
    ];
    if let Some(b) = b {
        binds.push(Bind::R(3, b.buffer()));
    }
    let kps = d.k.max(1).next_multiple_of(BK);
    launch_gemm(
        ctx,
        OP,
        &conv_fwd_variant(&g, b.is_some()),
        d,
        (1, kps),
        &words,
        &binds,
    )?;
    Ok(Forward::Conv(out))
}

/// Transposed convolution (input adjoint): gx[N,C,H,W] = convᵀ(gy[N,O,Ho,Wo]) with w[O,C,kh,kw].
pub(crate) fn conv2d_input_grad(
    ctx: &Arc<Ctx>,
    algo: ConvAlgo,
    gy: &GpuTensor,
    w: &GpuTensor,
    input_hw: (usize, usize),
    p: Conv2dParams,
) -> Result<GpuTensor> {
    const OP: &str = "conv2d_input_grad";
    let [n, og, gho, gwo] = dims4(OP, "output gradient gy [N,O,Ho,Wo]", gy)?;
    let [o, c, kh, kw] = dims4(OP, "weight w [O,C,kh,kw]", w)?;
    if og != o {
        return Err(Error::shape(
            OP,
            format!(
                "gy has {og} channels (gy {:?}) but weight has {o} outputs (w {:?})",
                gy.shape, w.shape
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
                gy.shape,
                (ho, wo),
                (kh, kw)
            ),
        ));
    }
    let g = Geom::new((n, c, o), (h, wd), (kh, kw), p, (ho, wo));
    dgrad(ctx, algo, OP, &g, w, gy, None)
}

/// The input adjoint's GEMMs, one per stride phase, reading `gy` (or, with `unpool`, the pooled
/// gradient and its switches `idx`).
fn dgrad(
    ctx: &Arc<Ctx>,
    algo: ConvAlgo,
    op: &'static str,
    g: &Geom,
    w: &GpuTensor,
    gy: &GpuTensor,
    unpool: Option<(&Unpool, Option<&GpuIndex>)>,
) -> Result<GpuTensor> {
    let words = g.words(op)?;
    if let Some(tile) = algo.winograd_tile(g, true) {
        let src = match unpool {
            None => Source::Plain(gy),
            Some((un, idx)) => Source::Unpool {
                v: gy,
                idx,
                k: un.k,
                hp: un.hp,
                wp: un.wp,
            },
        };
        let s = winograd::Shape {
            tile,
            n: g.n,
            k: g.o,
            m: g.c,
            hin: g.ho,
            win: g.wo,
            pad: (2 - g.ph, 2 - g.pw),
            hy: g.h,
            wy: g.w,
        };
        let (gx, _) = winograd::conv3x3(
            ctx,
            op,
            src,
            w,
            true,
            None,
            s,
            Pooling::None,
            winograd::CHUNK_BYTES,
        )?;
        return Ok(gx);
    }
    let out = empty(ctx, &[g.n, g.c, g.h, g.w])?;
    let mut binds = vec![
        Bind::R(1, w.buffer()),
        Bind::R(2, gy.buffer()),
        Bind::W(4, out.buffer()),
    ];
    if let Some((_, idx)) = unpool {
        // Average unpooling reads no switches: bind the gradient in their place.
        binds.push(Bind::R(5, idx.map_or(gy.buffer(), |i| i.buffer())));
    }
    for ph in Phase::all(g) {
        let d = Dims {
            m: g.c,
            n: g.n * ph.nh * ph.nw,
            k: g.o * ph.kh * ph.kw,
            batch: 1,
        };
        if d.m * d.n == 0 {
            continue;
        }
        let kps = d.k.max(1).next_multiple_of(BK);
        launch_gemm(
            ctx,
            op,
            &conv_dgrad_variant(g, &ph, unpool.map(|u| u.0)),
            d,
            (1, kps),
            &words,
            &binds,
        )?;
    }
    Ok(out)
}

/// The transposed read of a pooled conv synapse, `conv2d_input_grad(poolᵀ(v))`, with the
/// unpooling done inside the GEMM's loader; `None` when the pooling's windows overlap (the
/// caller then composes the two ops). `v` is `[N, O, HP, WP]`, `conv_hw` the convolution's output
/// size, `idx` the max-pool switches (as `max_pool2d` returns them).
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d_pooled_input_grad(
    ctx: &Arc<Ctx>,
    algo: ConvAlgo,
    v: &GpuTensor,
    idx: Option<&GpuIndex>,
    w: &GpuTensor,
    conv_hw: (usize, usize),
    input_hw: (usize, usize),
    p: Conv2dParams,
    pool: Pooling,
) -> Result<Option<GpuTensor>> {
    const OP: &str = "conv2d_pooled_input_grad";
    let (pp, max) = match pool {
        Pooling::Max(pp) => (pp, true),
        Pooling::Avg(pp) => (pp, false),
        Pooling::None => return Ok(None),
    };
    if pp.kernel != pp.stride || pp.kernel.0 != pp.kernel.1 {
        return Ok(None);
    }
    let [n, ov, hp, wp] = dims4(OP, "pooled gradient v [N,O,HP,WP]", v)?;
    let [o, c, kh, kw] = dims4(OP, "weight w [O,C,kh,kw]", w)?;
    let (h, wd) = input_hw;
    let (ho, wo) = p.output_hw(OP, (h, wd), (kh, kw))?;
    let (php, pwp) = pp.output_hw(OP, (ho, wo))?;
    if ov != o || (ho, wo) != conv_hw || (hp, wp) != (php, pwp) {
        return Err(Error::shape(
            OP,
            format!(
                "v {:?} does not fit weight {:?}, input {input_hw:?}, conv output {conv_hw:?} pooled by {pp:?}",
                v.shape, w.shape
            ),
        ));
    }
    let idx = match (max, idx) {
        (true, Some(i))
            if i.shape == v.shape && i.pool.is_some_and(|(q, hw)| q == pp && hw == conv_hw) =>
        {
            Some(i)
        }
        (true, Some(_)) => return Ok(None),
        (true, None) => return Err(Error::param(OP, "max pooling needs its switches")),
        (false, _) => None,
    };
    let g = Geom::new((n, c, o), (h, wd), (kh, kw), p, (ho, wo));
    let un = Unpool {
        k: pp.kernel.0,
        hp,
        wp,
        max,
    };
    dgrad(ctx, algo, OP, &g, w, v, Some((&un, idx))).map(Some)
}

/// Weight adjoint: gw[O,C,kh,kw] = Σ over samples and output positions of gy ⊗ patches(x),
/// split along the samples·positions axis.
pub(crate) fn conv2d_weight_grad(
    ctx: &Arc<Ctx>,
    x: &GpuTensor,
    gy: &GpuTensor,
    kernel_hw: (usize, usize),
    p: Conv2dParams,
) -> Result<GpuTensor> {
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
                gy.shape, x.shape
            ),
        ));
    }
    let g = Geom::new((n, c, o), (h, wd), (kh, kw), p, (ho, wo));
    let words = g.words(OP)?;
    let out = empty(ctx, &[o, c, kh, kw])?;
    let d = Dims {
        m: o,
        n: c * kh * kw,
        k: n * ho * wo,
        batch: 1,
    };
    let v = conv_wgrad_variant(&g);
    let (splits, kps) = split_k(d, ctx.gemm_tile);
    if splits == 1 {
        let binds = [
            Bind::R(1, gy.buffer()),
            Bind::R(2, x.buffer()),
            Bind::W(4, out.buffer()),
        ];
        launch_gemm(ctx, OP, &v, d, (1, kps), &words, &binds)?;
        return Ok(out);
    }
    let part = empty(ctx, &[splits * d.m * d.n])?;
    let binds = [
        Bind::R(1, gy.buffer()),
        Bind::R(2, x.buffer()),
        Bind::W(4, part.buffer()),
    ];
    launch_gemm(ctx, OP, &v, d, (splits, kps), &words, &binds)?;
    reduce_splits(ctx, OP, &part, splits, d, None, &out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gemm::GemmTile;

    #[test]
    fn conv_algorithms_parse_what_they_print_and_refuse_other_names() {
        let all = [
            ConvAlgo::Auto,
            ConvAlgo::Direct,
            ConvAlgo::Winograd2,
            ConvAlgo::Winograd4,
        ];
        for a in all {
            assert_eq!(a.to_string().parse::<ConvAlgo>(), Ok(a));
            assert!(CONV_ALGO_VALUES.contains(&a.to_string()), "{a}");
        }
        let names: std::collections::HashSet<_> = all.iter().map(|a| a.to_string()).collect();
        assert_eq!(names.len(), all.len());
        for bad in ["", "Auto", "winograd", "f4", "im2col"] {
            let e = bad.parse::<ConvAlgo>().unwrap_err();
            assert!(
                e.contains(&format!("{bad:?}")) && e.contains(CONV_ALGO_VALUES),
                "{e}"
            );
        }
    }

    #[test]
    fn winograd_is_chosen_where_supported_and_paying() {
        let geom = |c, o, hw: usize, k: usize, s: usize, p: usize| {
            let ho = (hw + 2 * p - k) / s + 1;
            Geom::new(
                (8, c, o),
                (hw, hw),
                (k, k),
                Conv2dParams::new(s, p),
                (ho, ho),
            )
        };
        use ConvAlgo::*;
        let (f2, f4) = (Some(Tile::F2), Some(Tile::F4));
        // The paper's CIFAR-10 layers: the 3-channel first layer stays direct under Auto; the
        // others take F(2×2).
        let first = geom(3, 128, 32, 3, 1, 1);
        assert_eq!(Auto.winograd_tile(&first, false), None);
        assert_eq!(Winograd2.winograd_tile(&first, false), f2);
        assert_eq!(Winograd4.winograd_tile(&first, false), f4);
        for (c, o, hw) in [(128, 256, 16), (256, 512, 8)] {
            let g = geom(c, o, hw, 3, 1, 1);
            assert_eq!(Auto.winograd_tile(&g, false), f2);
            assert_eq!(Auto.winograd_tile(&g, true), f2);
            assert_eq!(Winograd4.winograd_tile(&g, true), f4);
            assert_eq!(Direct.winograd_tile(&g, false), None);
            assert_eq!(Direct.winograd_tile(&g, true), None);
        }
        let last = geom(512, 512, 4, 3, 1, 0);
        assert_eq!(Auto.winograd_tile(&last, false), f2);
        assert_eq!(Auto.winograd_tile(&last, true), f2);
        // Channel thresholds, in and out (swapped for the adjoint).
        let m = WINOGRAD_MIN_CHANNELS;
        let g = geom(m - 1, m, 8, 3, 1, 1);
        assert_eq!(Auto.winograd_tile(&g, false), None);
        assert_eq!(Auto.winograd_tile(&g, true), None);
        let g = geom(m, m, 8, 3, 1, 1);
        assert_eq!(Auto.winograd_tile(&g, false), f2);
        assert_eq!(Auto.winograd_tile(&g, true), f2);
        // A 1x1 output: 16 multiplies against 9 does not pay; the forced algorithms still run it.
        let one = geom(64, 64, 1, 3, 1, 1);
        assert_eq!(Auto.winograd_tile(&one, false), None);
        assert_eq!(Winograd2.winograd_tile(&one, false), f2);
        // Unsupported: other kernels, strides; adjoint padding above 2; empty batch.
        for g in [geom(64, 64, 8, 5, 1, 2), geom(64, 64, 8, 3, 2, 1)] {
            for a in [Auto, Winograd2, Winograd4] {
                assert_eq!(a.winograd_tile(&g, false), None);
                assert_eq!(a.winograd_tile(&g, true), None);
            }
        }
        let wide = geom(64, 64, 8, 3, 1, 3);
        assert_eq!(Winograd4.winograd_tile(&wide, false), f4);
        assert_eq!(Winograd4.winograd_tile(&wide, true), None);
        let empty = Geom {
            n: 0,
            ..geom(64, 64, 8, 3, 1, 1)
        };
        assert_eq!(Winograd2.winograd_tile(&empty, false), None);
    }

    #[test]
    fn conv_variants_fill_every_placeholder() {
        let g = Geom::new((2, 3, 4), (7, 6), (3, 2), Conv2dParams::new(2, 1), (4, 4));
        let mut vs = vec![
            conv_fwd_variant(&g, true),
            conv_fwd_variant(&g, false),
            conv_wgrad_variant(&g),
        ];
        let un = Unpool {
            k: 2,
            hp: 2,
            wp: 2,
            max: true,
        };
        for ph in Phase::all(&g) {
            vs.push(conv_dgrad_variant(&g, &ph, None));
            vs.push(conv_dgrad_variant(&g, &ph, Some(&un)));
        }
        for v in &vs {
            assert!(!v.source(GemmTile::T128).contains("{{"), "{}", v.name);
        }
    }

    #[test]
    fn stride_phases_partition_positions_and_taps() {
        for (s, p, len, k) in [
            (1, 1, 5, 3),
            (2, 0, 7, 3),
            (2, 1, 8, 1),
            (3, 2, 10, 5),
            (2, 2, 1, 5),
        ] {
            let g = Geom::new(
                (1, 1, 1),
                (len, len),
                (k, k),
                Conv2dParams::new(s, p),
                (1, 1),
            );
            let phases = Phase::all(&g);
            assert_eq!(phases.len(), s * s);
            let mut rows = vec![0; len];
            let mut taps = 0;
            for ph in phases.iter().filter(|ph| ph.rw == 0) {
                for q in 0..ph.nh {
                    let h = ph.h0 + q * s;
                    assert_eq!((h + p) % s, ph.rh);
                    rows[h] += 1;
                }
                taps += ph.kh;
                // oh0 is exact: (h0 + p − rh) divisible by s.
                assert_eq!((ph.h0 + p - ph.rh) % s, 0);
            }
            assert!(rows.iter().all(|&r| r == 1), "{s} {p} {len} {k}: {rows:?}");
            assert_eq!(taps, k);
        }
    }
}
