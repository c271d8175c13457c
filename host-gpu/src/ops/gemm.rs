//! The one GEMM template of the backend (`kernels/gemm.wgsl`), whose operand loaders and epilogue
//! are generated per op variant ([`Variant`]), and the ops that are plain (batched) GEMMs: linear
//! layers, their adjoints and batched matmul, which share the dense variant (strided operands,
//! transpose flags, optional bias, batch along the grid's z). Split-K partial sums are reduced by
//! `kernels/splitk.wgsl`; [`split_k`] depends on the shapes only, and every sum runs in a fixed
//! order, so the results are the same bits on every run. The convolutions build their own variants
//! of the template in `conv.rs`. Checks and errors are those of the CPU backend
//! (`sim/src/cpu/linear.rs`).

use std::sync::Arc;

use sim::{Error, Result};

use super::{empty, launch, shader, u};
use crate::context::{Bind, Ctx, groups_1d};
use crate::tensor::GpuTensor;
pub(crate) use crate::tile::GemmTile;

shader!(SPLITK, "splitk.wgsl");

/// The GEMM template; see the placeholders it documents.
const TEMPLATE: &str = include_str!("../kernels/gemm.wgsl");
/// The granularity of K slices (split-K slices and launches start at multiples of it): the
/// largest K step of the [`GemmTile`]s.
pub(crate) const BK: usize = 16;

/// The template's placeholders for `tile`: (TILE, ACC_DECL, ACC_FMA, ACC_STORE), written out
/// for every register block (accumulator `acc_R_J` is row R of the invocation's rows, columns
/// block J).
fn tile_code(tile: GemmTile) -> [(&'static str, String); 4] {
    let (b, qn, bk) = (tile.blocks(), tile.size() / 4, tile.bk());
    let lds4 = qn + 1;
    let consts = format!(
        "const BM: u32 = {m}u;\nconst BN: u32 = {m}u;\nconst BK: u32 = {bk}u;\n\
         const QN: u32 = {qn}u;\nconst LDS4: u32 = {lds4}u;\n\
         var<workgroup> AS: array<vec4<f32>, {n}>;\nvar<workgroup> BS: array<vec4<f32>, {n}>;",
        m = tile.size(),
        n = bk * lds4,
    );
    let (mut decl, mut fma, mut store) = (String::new(), String::new(), String::new());
    for i in 0..b {
        fma.push_str(&format!("let a{i} = AS[kk * LDS4 + ty + {}u];\n", 16 * i));
    }
    for j in 0..b {
        fma.push_str(&format!("let b{j} = BS[kk * LDS4 + tx + {}u];\n", 16 * j));
    }
    for i in 0..b {
        for (r, lane) in ["x", "y", "z", "w"].iter().enumerate() {
            let row = 4 * i + r;
            for j in 0..b {
                decl.push_str(&format!("var acc_{row}_{j} = vec4<f32>(0.0);\n"));
                fma.push_str(&format!("acc_{row}_{j} += a{i}.{lane} * b{j};\n"));
                store.push_str(&format!(
                    "store_row(z, s, m0 + 4u * ty + {}u, n0 + 4u * tx + {}u, acc_{row}_{j});\n",
                    64 * i + r,
                    64 * j
                ));
            }
        }
    }
    [
        ("TILE", consts),
        ("ACC_DECL", decl),
        ("ACC_FMA", fma),
        ("ACC_STORE", store),
    ]
}

/// Split-K aims at this many workgroups in all (a few waves of an H100's 132 SMs)...
const SPLIT_TARGET_GROUPS: usize = 1024;
/// ...but gives every slice at least this much of K...
const SPLIT_MIN_K: usize = 256;
/// ...and keeps the partial sums under this many floats (64 MiB).
const SPLIT_MAX_SCRATCH: usize = 16 << 20;
/// Grid limit per dimension that every device supports.
const MAX_GROUPS: usize = 65_535;

/// One instance of the template: the WGSL that fills each placeholder, and the module name
/// (distinct for distinct sources, since the context caches modules by name).
pub(crate) struct Variant {
    pub(crate) name: String,
    pub(crate) bindings: String,
    pub(crate) consts: String,
    pub(crate) a_loader: String,
    pub(crate) b_loader: String,
    pub(crate) epilogue: String,
}

impl Variant {
    /// The full source for `tile`: prelude + template with the placeholders filled.
    pub(crate) fn source(&self, tile: GemmTile) -> String {
        let mut body = TEMPLATE
            .replace("{{BINDINGS}}", &self.bindings)
            .replace("{{CONSTS}}", &self.consts)
            .replace("{{A_LOADER}}", &self.a_loader)
            .replace("{{B_LOADER}}", &self.b_loader)
            .replace("{{EPILOGUE}}", &self.epilogue);
        for (key, code) in tile_code(tile) {
            body = body.replace(&format!("{{{{{key}}}}}"), &code);
        }
        debug_assert!(
            !body.contains("{{"),
            "unfilled placeholder in {}",
            self.name
        );
        format!("{}\n{}", include_str!("../kernels/prelude.wgsl"), body)
    }
}

/// Operand bindings: 1 = A source, 2 = B source, 3 = bias (when used), 4 = output.
pub(crate) fn bindings(bias: bool) -> String {
    let mut s = String::from(
        "@group(0) @binding(1) var<storage, read> SA: array<f32>;\n\
         @group(0) @binding(2) var<storage, read> SB: array<f32>;\n\
         @group(0) @binding(4) var<storage, read_write> OUT: array<f32>;\n",
    );
    if bias {
        s.push_str("@group(0) @binding(3) var<storage, read> BIAS: array<f32>;\n");
    }
    s
}

/// Loading orders of the two tiles (see `A_KFAST` in the template).
pub(crate) fn kfast(a: bool, b: bool) -> String {
    format!("const A_KFAST: bool = {a};\nconst B_KFAST: bool = {b};\n")
}

/// Epilogue writing `[Z, splits, M, N]` row-major: with one slice, that is the `[Z, M, N]` output
/// itself; with more, the partial sums for [`SPLITK`].
pub(crate) const SPLIT_STORE: &str = "fn store(z: u32, s: u32, m: u32, n: u32, v: f32) {
    OUT[((z * pu(5u) + s) * pu(0u) + m) * pu(1u) + n] = v;
}";

/// Sizes of one (batched) GEMM launch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dims {
    pub(crate) m: usize,
    pub(crate) n: usize,
    pub(crate) k: usize,
    pub(crate) batch: usize,
}

/// (slices, K per slice) for a GEMM in output blocks of `tile`: enough slices for about
/// [`SPLIT_TARGET_GROUPS`] workgroups, each slice at least [`SPLIT_MIN_K`] long (a multiple of
/// BK) and the partial sums within [`SPLIT_MAX_SCRATCH`]. A function of the shapes and the tile
/// only.
pub(crate) fn split_k(d: Dims, tile: GemmTile) -> (usize, usize) {
    let t = tile.size();
    let tiles = d.m.div_ceil(t) * d.n.div_ceil(t) * d.batch;
    if d.k == 0 || tiles == 0 {
        return (1, BK);
    }
    let want = SPLIT_TARGET_GROUPS.div_ceil(tiles);
    let by_k = (d.k / SPLIT_MIN_K).max(1);
    let by_mem = (SPLIT_MAX_SCRATCH / (d.batch * d.m * d.n).max(1)).max(1);
    let s = want.min(by_k).min(by_mem).max(1);
    let kps = d.k.div_ceil(s).next_multiple_of(BK);
    (d.k.div_ceil(kps), kps)
}

/// Record the template's `gemm` entry of `v` (in the device's [`GemmTile`]) over `d` with
/// `splits` slices of `kps`, the variant's parameter words `extra` and operand bindings `binds`.
pub(crate) fn launch_gemm(
    ctx: &Ctx,
    op: &'static str,
    v: &Variant,
    d: Dims,
    (splits, kps): (usize, usize),
    extra: &[u32],
    binds: &[Bind<'_>],
) -> Result<()> {
    let tile = ctx.gemm_tile;
    let tiles_n = d.n.div_ceil(tile.size());
    let tiles = d.m.div_ceil(tile.size()) * tiles_n;
    if tiles == 0 || d.batch == 0 {
        return Ok(());
    }
    let gy = tiles.div_ceil(MAX_GROUPS);
    let gx = tiles.div_ceil(gy);
    let per = (MAX_GROUPS / splits).max(1);
    let mut z0 = 0;
    while z0 < d.batch {
        let zb = per.min(d.batch - z0);
        let mut p = vec![
            u(op, d.m)?,
            u(op, d.n)?,
            u(op, d.k)?,
            u(op, tiles_n)?,
            u(op, tiles)?,
            u(op, splits)?,
            u(op, kps)?,
            u(op, z0)?,
        ];
        p.extend_from_slice(extra);
        let src = || v.source(tile);
        ctx.dispatch(
            &format!("{}/tile{}", v.name, tile.size()),
            &src,
            "gemm",
            &p,
            binds,
            [u(op, gx)?, u(op, gy)?, u(op, zb * splits)?],
        )?;
        z0 += zb;
    }
    Ok(())
}

// ---- dense: linear, its adjoints, matmul --------------------------------------------------------

/// `C[z] = op(A[z]) · op(B[z])` (+ bias along N): A stored `[M, K]` (`[K, M]` if `ta`), B stored
/// `[K, N]` (`[N, K]` if `tb`). P[8], P[9]: batch strides of A and B.
fn dense_variant(ta: bool, tb: bool, bias: bool) -> Variant {
    let (a_m, a_k) = if ta {
        ("1u", "pu(0u)")
    } else {
        ("pu(2u)", "1u")
    };
    let (b_n, b_k) = if tb {
        ("pu(2u)", "1u")
    } else {
        ("1u", "pu(1u)")
    };
    Variant {
        name: format!(
            "gemm/dense/ta{}/tb{}/bias{}",
            ta as u8, tb as u8, bias as u8
        ),
        bindings: bindings(bias),
        consts: kfast(!ta, tb),
        a_loader: format!(
            "struct ARow {{ base: u32 }}
fn a_row(z: u32, m: u32) -> ARow {{ return ARow(z * pu(8u) + m * {a_m}); }}
fn a_at(r: ARow, k: u32) -> f32 {{ return SA[r.base + k * {a_k}]; }}"
        ),
        b_loader: format!(
            "struct BCol {{ base: u32 }}
fn b_col(z: u32, n: u32) -> BCol {{ return BCol(z * pu(9u) + n * {b_n}); }}
fn b_at(c: BCol, k: u32) -> f32 {{ return SB[c.base + k * {b_k}]; }}"
        ),
        epilogue: if bias {
            "fn store(z: u32, s: u32, m: u32, n: u32, v: f32) {
    OUT[(z * pu(0u) + m) * pu(1u) + n] = v + BIAS[n];
}"
            .into()
        } else {
            SPLIT_STORE.into()
        },
    }
}

/// `out[z] = op(a[z]) · op(b[z])` (+ bias) into a fresh tensor of `shape` (its elements are the
/// `[batch, M, N]` result), split along K where the output alone gives too few workgroups.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dense(
    ctx: &Arc<Ctx>,
    op: &'static str,
    a: &GpuTensor,
    b: &GpuTensor,
    bias: Option<&GpuTensor>,
    (ta, tb): (bool, bool),
    d: Dims,
    shape: &[usize],
) -> Result<GpuTensor> {
    let out = empty(ctx, shape)?;
    let (splits, kps) = split_k(d, ctx.gemm_tile);
    let strides = [u(op, d.m * d.k)?, u(op, d.k * d.n)?];
    if splits == 1 {
        let v = dense_variant(ta, tb, bias.is_some());
        let mut binds = vec![
            Bind::R(1, a.buffer()),
            Bind::R(2, b.buffer()),
            Bind::W(4, out.buffer()),
        ];
        if let Some(bias) = bias {
            binds.push(Bind::R(3, bias.buffer()));
        }
        launch_gemm(ctx, op, &v, d, (1, kps), &strides, &binds)?;
        return Ok(out);
    }
    let part = empty(ctx, &[d.batch * splits * d.m * d.n])?;
    let v = dense_variant(ta, tb, false);
    let binds = [
        Bind::R(1, a.buffer()),
        Bind::R(2, b.buffer()),
        Bind::W(4, part.buffer()),
    ];
    launch_gemm(ctx, op, &v, d, (splits, kps), &strides, &binds)?;
    reduce_splits(ctx, op, &part, splits, d, bias, &out)?;
    Ok(out)
}

/// `out[z] = Σ_s part[z, s]` (+ bias along N), in slice order.
pub(crate) fn reduce_splits(
    ctx: &Ctx,
    op: &'static str,
    part: &GpuTensor,
    splits: usize,
    d: Dims,
    bias: Option<&GpuTensor>,
    out: &GpuTensor,
) -> Result<()> {
    let total = d.batch * d.m * d.n;
    let mut p = vec![u(op, total)?, u(op, d.m * d.n)?, u(op, splits)?];
    let mut binds = vec![Bind::R(1, part.buffer()), Bind::W(3, out.buffer())];
    let entry = match bias {
        Some(b) => {
            p.push(u(op, d.n.max(1))?);
            binds.push(Bind::R(2, b.buffer()));
            "splitk_sum_bias"
        }
        None => "splitk_sum",
    };
    launch(ctx, SPLITK, entry, &p, &binds, groups_1d(total))
}

/// `[out, in]` of a rank-2 weight.
fn weight_dims(op: &'static str, w: &GpuTensor) -> Result<(usize, usize)> {
    match w.shape[..] {
        [o, i] => Ok((o, i)),
        ref s => Err(Error::shape(
            op,
            format!("weight must have rank 2 [out, in], got shape {s:?}"),
        )),
    }
}

/// Split `[..., last]` into (rows = product of the leading axes, last).
fn rows_last(op: &'static str, what: &str, t: &GpuTensor) -> Result<(usize, usize)> {
    match t.shape.split_last() {
        Some((&last, lead)) => Ok((lead.iter().product(), last)),
        None => Err(Error::shape(
            op,
            format!("{what} must have rank ≥ 1, got a scalar"),
        )),
    }
}

/// y[..., out] = x[..., in]·wᵀ + b.
pub(crate) fn linear(
    ctx: &Arc<Ctx>,
    x: &GpuTensor,
    w: &GpuTensor,
    b: Option<&GpuTensor>,
) -> Result<GpuTensor> {
    const OP: &str = "linear";
    let (out, inp) = weight_dims(OP, w)?;
    let (rows, xin) = rows_last(OP, "input x [..., in]", x)?;
    if xin != inp {
        return Err(Error::shape(
            OP,
            format!(
                "input x {:?} has last axis {xin} but weight {:?} expects in = {inp}",
                x.shape, w.shape
            ),
        ));
    }
    if let Some(b) = b
        && b.shape != [out]
    {
        return Err(Error::shape(
            OP,
            format!("bias must have shape [{out}], got {:?}", b.shape),
        ));
    }
    let mut shape = x.shape.clone();
    *shape.last_mut().expect("rank ≥ 1") = out;
    let d = Dims {
        m: rows,
        n: out,
        k: inp,
        batch: 1,
    };
    dense(ctx, OP, x, w, b, (false, true), d, &shape)
}

/// gx[..., in] = gy[..., out]·w.
pub(crate) fn linear_input_grad(
    ctx: &Arc<Ctx>,
    gy: &GpuTensor,
    w: &GpuTensor,
) -> Result<GpuTensor> {
    const OP: &str = "linear_input_grad";
    let (out, inp) = weight_dims(OP, w)?;
    let (rows, gout) = rows_last(OP, "output gradient gy [..., out]", gy)?;
    if gout != out {
        return Err(Error::shape(
            OP,
            format!(
                "gy {:?} has last axis {gout} but weight {:?} has out = {out}",
                gy.shape, w.shape
            ),
        ));
    }
    let mut shape = gy.shape.clone();
    *shape.last_mut().expect("rank ≥ 1") = inp;
    let d = Dims {
        m: rows,
        n: inp,
        k: out,
        batch: 1,
    };
    dense(ctx, OP, gy, w, None, (false, false), d, &shape)
}

/// gw[out, in] = Σ gyᵀ·x over all leading axes.
pub(crate) fn linear_weight_grad(
    ctx: &Arc<Ctx>,
    x: &GpuTensor,
    gy: &GpuTensor,
) -> Result<GpuTensor> {
    const OP: &str = "linear_weight_grad";
    let (rows, inp) = rows_last(OP, "input x [..., in]", x)?;
    let (_, out) = rows_last(OP, "output gradient gy [..., out]", gy)?;
    if x.shape[..x.shape.len() - 1] != gy.shape[..gy.shape.len() - 1] {
        return Err(Error::shape(
            OP,
            format!(
                "leading axes of x {:?} and gy {:?} differ",
                x.shape, gy.shape
            ),
        ));
    }
    let d = Dims {
        m: out,
        n: inp,
        k: rows,
        batch: 1,
    };
    dense(ctx, OP, gy, x, None, (true, false), d, &[out, inp])
}

/// Batched matrix product over equal leading axes: op(a)[..., M, K]·op(b)[..., K, N].
pub(crate) fn matmul(
    ctx: &Arc<Ctx>,
    a: &GpuTensor,
    b: &GpuTensor,
    trans_a: bool,
    trans_b: bool,
) -> Result<GpuTensor> {
    const OP: &str = "matmul";
    if a.shape.len() < 2 || b.shape.len() < 2 {
        return Err(Error::shape(
            OP,
            format!(
                "operands must have rank ≥ 2, got a {:?}, b {:?}",
                a.shape, b.shape
            ),
        ));
    }
    let (la, ra) = a.shape.split_at(a.shape.len() - 2);
    let (lb, rb) = b.shape.split_at(b.shape.len() - 2);
    if la != lb {
        return Err(Error::shape(
            OP,
            format!(
                "leading (batch) axes differ: a {:?}, b {:?}",
                a.shape, b.shape
            ),
        ));
    }
    let (m, ka) = if trans_a {
        (ra[1], ra[0])
    } else {
        (ra[0], ra[1])
    };
    let (kb, n) = if trans_b {
        (rb[1], rb[0])
    } else {
        (rb[0], rb[1])
    };
    if ka != kb {
        return Err(Error::shape(
            OP,
            format!(
                "inner sizes differ: op(a) is [{m}, {ka}] (a {:?}, trans_a {trans_a}), op(b) is [{kb}, {n}] (b {:?}, trans_b {trans_b})",
                a.shape, b.shape
            ),
        ));
    }
    let mut shape = la.to_vec();
    shape.extend([m, n]);
    let d = Dims {
        m,
        n,
        k: ka,
        batch: la.iter().product(),
    };
    dense(ctx, OP, a, b, None, (trans_a, trans_b), d, &shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_variants_fill_every_placeholder() {
        for key in [
            "BINDINGS",
            "CONSTS",
            "A_LOADER",
            "B_LOADER",
            "EPILOGUE",
            "TILE",
            "ACC_DECL",
            "ACC_FMA",
            "ACC_STORE",
        ] {
            assert_eq!(
                TEMPLATE.matches(&format!("{{{{{key}}}}}")).count(),
                1,
                "{key}"
            );
        }
        for (ta, tb, b) in [
            (false, false, false),
            (true, true, true),
            (true, false, false),
        ] {
            let v = dense_variant(ta, tb, b);
            for tile in [GemmTile::T64, GemmTile::T128] {
                assert!(!v.source(tile).contains("{{"), "{} {tile:?}", v.name);
            }
        }
    }

    #[test]
    fn split_k_depends_on_shapes_and_bounds_slices() {
        let d = Dims {
            m: 128,
            n: 27,
            k: 128 * 1024,
            batch: 1,
        };
        for tile in [GemmTile::T64, GemmTile::T128] {
            let (s, kps) = split_k(d, tile);
            assert!(s > 1 && kps % BK == 0 && kps >= SPLIT_MIN_K && s * kps >= d.k);
            assert!((s - 1) * kps < d.k);
        }
        // Fewer, larger tiles: more slices for the same target.
        assert!(split_k(d, GemmTile::T128).0 >= split_k(d, GemmTile::T64).0);
        let d = Dims {
            m: 512,
            n: 4608,
            k: 64,
            batch: 1,
        };
        assert_eq!(split_k(d, GemmTile::T64).0, 1);
        assert_eq!(split_k(Dims { k: 0, ..d }, GemmTile::T128), (1, BK));
    }
}
