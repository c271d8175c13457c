// The one GEMM template of the backend: C[z](m, n) = Σ_k A(z, m, k) · B(z, k, n) for a tile grid of
// BM×BN output blocks, one per workgroup of 16×16 invocations. Two tiles (`GemmTile` in
// `ops/gemm.rs`, which generates the TILE, ACC_* placeholders):
//   64×64, BK = 16: invocation (tx, ty) accumulates the 4×4 register block of rows 4·ty … 4·ty + 3
//     and columns 4·tx … 4·tx + 3;
//   128×128, BK = 8: it accumulates four such blocks, at rows 4·ty + 64·i and columns 4·tx + 64·j
//     (i, j ∈ {0, 1}): 64 multiply-adds per four 16-byte shared-memory reads instead of 16 per two.
// Either way a row's stores are consecutive, and so are those of the 16 tx, and every output sums
// its k in the same order, so both tiles give the same bits (split-K aside, which depends on the
// tile count). K advances by BK: every invocation loads 4 elements of the A tile (BM × BK) and 4
// of the B tile (BK × BN) from global memory into registers (one vec4 slot of each tile: 4 rows or
// columns at one k), stores them in workgroup memory, and prefetches the next K block into
// registers while it computes on the staged one. The staged tiles are k-major arrays of vec4, so
// each step of the inner product reads whole vec4s; tile rows are padded by 4 floats so that the
// 16-byte stores of invocations loading along k fall on distinct banks. Workgroup memory:
// 2 · 16 · 68 · 4 = 8,704 bytes (64×64) or 2 · 8 · 132 · 4 = 8,448 bytes (128×128).
//
// `ops/gemm.rs` fills the placeholders (each name below in double braces, on a line of its own)
// per op variant:
//   BINDINGS  the operand bindings (1 = A source, 2 = B source, 3 = bias, 4 = output)
//   CONSTS    the variant's baked constants, and A_KFAST / B_KFAST: whether consecutive
//             invocations load consecutive k (true) or consecutive m / n (false) of the tile,
//             chosen to match the operand's contiguous axis in memory (coalesced loads)
//   A_LOADER  struct ARow; fn a_row(z, m) -> ARow (per row, computed once before the K loop);
//             fn a_at(row, k) -> f32 (called for m < M, k < K only; zero padding inside)
//   B_LOADER  struct BCol; fn b_col(z, n) -> BCol; fn b_at(col, k) -> f32 (likewise)
//   EPILOGUE  fn store(z, s, m, n, v) writing the finished sum (bias, layout, split slot)
// and per tile:
//   TILE      BM, BN, BK, QN (vec4 slots across a tile row: BM / 4), LDS4 (QN + 1, the padded
//             row stride in vec4) and the two staged tiles AS, BS ([BK][LDS4] vec4: element
//             (mm, kk) of the A tile is AS[kk · LDS4 + mm / 4][mm % 4], likewise BS)
//   ACC_DECL  the accumulators, one vec4 per row of each 4×4 block
//   ACC_FMA   one k of the inner product: the vec4 reads of AS and BS and the multiply-adds
//   ACC_STORE the accumulators' stores through store_row
//
// Split-K: the K range is cut into `splits` slices of `k_per_split` (a multiple of 16), slice s
// of batch z is grid z-index z·splits + s, and the epilogue writes it to its own partial-sum slot,
// reduced afterwards in slice order by `splitk.wgsl` (deterministic: no atomics anywhere).
//
// P: [0] M, [1] N, [2] K, [3] tiles along N, [4] tiles in all (M·N), [5] splits, [6] k_per_split,
//    [7] z offset (for batches beyond the 65,535 grid limit); the variant's words from 8 on.

{{TILE}}

{{BINDINGS}}

{{CONSTS}}

{{A_LOADER}}

{{B_LOADER}}

{{EPILOGUE}}

// The part of the tiles that invocation t loads at every K step: 4 consecutive rows (or columns)
// 4·q … 4·q + 3 at one k = kk of the tile, i.e. the vec4 slot kk·LDS4 + q (QN · BK = 256 slots,
// one per invocation). Returns (q, kk): with `kfast`, consecutive invocations take consecutive k
// (the operand is contiguous along k), else consecutive q (contiguous along m or n).
fn tile_part(t: u32, kfast: bool) -> vec2<u32> {
    if (kfast) {
        return vec2<u32>(t / BK, t % BK);
    }
    return vec2<u32>(t % QN, t / QN);
}

fn store_row(z: u32, s: u32, m: u32, n0: u32, v: vec4<f32>) {
    if (m >= pu(0u)) {
        return;
    }
    let n_len = pu(1u);
    for (var j = 0u; j < 4u; j++) {
        let n = n0 + j;
        if (n < n_len) {
            store(z, s, m, n, v[j]);
        }
    }
}

@compute @workgroup_size(16, 16)
fn gemm(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let m_len = pu(0u);
    let n_len = pu(1u);
    let k_len = pu(2u);
    let tiles_n = pu(3u);
    let tile = wg.x + wg.y * nwg.x;
    if (tile >= pu(4u)) {
        return;
    }
    let m0 = (tile / tiles_n) * BM;
    let n0 = (tile % tiles_n) * BN;
    let splits = pu(5u);
    let z = wg.z / splits + pu(7u);
    let s = wg.z % splits;
    let kbeg = s * pu(6u);
    let kend = min(k_len, kbeg + pu(6u));

    // This invocation's slots in the tiles, and the rows / columns it reads (computed once).
    let pa = tile_part(t, A_KFAST);
    let pb = tile_part(t, B_KFAST);
    let a_slot = pa.y * LDS4 + pa.x;
    let b_slot = pb.y * LDS4 + pb.x;
    var a_ok: array<bool, 4>;
    var a_info: array<ARow, 4>;
    var b_ok: array<bool, 4>;
    var b_info: array<BCol, 4>;
    for (var r = 0u; r < 4u; r++) {
        let m = m0 + 4u * pa.x + r;
        a_ok[r] = m < m_len;
        a_info[r] = a_row(z, min(m, m_len - 1u));
        let n = n0 + 4u * pb.x + r;
        b_ok[r] = n < n_len;
        b_info[r] = b_col(z, min(n, n_len - 1u));
    }

    // Prologue: the first K block into registers.
    var ra = vec4<f32>(0.0);
    var rb = vec4<f32>(0.0);
    let ka0 = kbeg + pa.y;
    let kb0 = kbeg + pb.y;
    for (var r = 0u; r < 4u; r++) {
        var va = 0.0;
        if (a_ok[r] && ka0 < kend) {
            va = a_at(a_info[r], ka0);
        }
        ra[r] = va;
        var vb = 0.0;
        if (b_ok[r] && kb0 < kend) {
            vb = b_at(b_info[r], kb0);
        }
        rb[r] = vb;
    }

    {{ACC_DECL}}
    let ty = lid.y;
    let tx = lid.x;
    for (var k0 = kbeg; k0 < kend; k0 += BK) {
        AS[a_slot] = ra;
        BS[b_slot] = rb;
        workgroupBarrier();
        // Prefetch the next K block while computing on the staged one.
        let kn = k0 + BK;
        if (kn < kend) {
            let ka = kn + pa.y;
            let kb = kn + pb.y;
            for (var r = 0u; r < 4u; r++) {
                var va = 0.0;
                if (a_ok[r] && ka < kend) {
                    va = a_at(a_info[r], ka);
                }
                ra[r] = va;
                var vb = 0.0;
                if (b_ok[r] && kb < kend) {
                    vb = b_at(b_info[r], kb);
                }
                rb[r] = vb;
            }
        }
        for (var kk = 0u; kk < BK; kk++) {
            {{ACC_FMA}}
        }
        workgroupBarrier();
    }

    {{ACC_STORE}}
}
