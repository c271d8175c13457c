// The one GEMM template of the backend: C[z](m, n) = Σ_k A(z, m, k) · B(z, k, n) for a tile grid of
// 64×64 output blocks, one per workgroup of 16×16 invocations, each invocation accumulating a 4×4
// register block (rows ty + 16·i, columns tx + 16·j, so reads of the staged tiles and the final
// stores are consecutive across tx). K advances by BK = 16: every invocation loads 4 elements of the
// A tile (64 × 16) and 4 of the B tile (16 × 64) from global memory into registers, stores them in
// workgroup memory, and prefetches the next K block into registers while it computes on the staged
// one. Rows of the staged tiles are padded to 65 floats so that neither loading order conflicts
// on shared-memory banks. 2 · 16 · 65 · 4 = 8,320 bytes of workgroup memory.
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
//
// Split-K: the K range is cut into `splits` slices of `k_per_split` (a multiple of BK); slice s of
// batch z is grid z-index z·splits + s, and the epilogue writes it to its own partial-sum slot,
// reduced afterwards in slice order by `splitk.wgsl` (deterministic: no atomics anywhere).
//
// P: [0] M, [1] N, [2] K, [3] tiles along N, [4] tiles in all (M·N), [5] splits, [6] k_per_split,
//    [7] z offset (for batches beyond the 65,535 grid limit); the variant's words from 8 on.

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;
const LDS: u32 = 65u;

var<workgroup> AS: array<f32, 1040>; // [BK][LDS]: AS[kk * LDS + mm]
var<workgroup> BS: array<f32, 1040>; // [BK][LDS]: BS[kk * LDS + nn]

{{BINDINGS}}

{{CONSTS}}

{{A_LOADER}}

{{B_LOADER}}

{{EPILOGUE}}

// (row or column inside the tile, k inside the tile) of element r (0..4) loaded by invocation t.
fn tile_coord(t: u32, r: u32, kfast: bool) -> vec2<u32> {
    let e = t + 256u * r;
    if (kfast) {
        return vec2<u32>(e / BK, e % BK);
    }
    return vec2<u32>(e % BM, e / BM);
}

fn store_row(z: u32, s: u32, m: u32, n0: u32, v: vec4<f32>) {
    if (m >= pu(0u)) {
        return;
    }
    let n_len = pu(1u);
    for (var j = 0u; j < 4u; j++) {
        let n = n0 + 16u * j;
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

    // Where this invocation's loads land in the tiles, and the rows / columns they read.
    var a_slot: array<u32, 4>;
    var a_kk: array<u32, 4>;
    var a_ok: array<bool, 4>;
    var a_info: array<ARow, 4>;
    var b_slot: array<u32, 4>;
    var b_kk: array<u32, 4>;
    var b_ok: array<bool, 4>;
    var b_info: array<BCol, 4>;
    for (var r = 0u; r < 4u; r++) {
        let ca = tile_coord(t, r, A_KFAST);
        a_slot[r] = ca.y * LDS + ca.x;
        a_kk[r] = ca.y;
        a_ok[r] = m0 + ca.x < m_len;
        a_info[r] = a_row(z, min(m0 + ca.x, m_len - 1u));
        let cb = tile_coord(t, r, B_KFAST);
        b_slot[r] = cb.y * LDS + cb.x;
        b_kk[r] = cb.y;
        b_ok[r] = n0 + cb.x < n_len;
        b_info[r] = b_col(z, min(n0 + cb.x, n_len - 1u));
    }

    // Prologue: the first K block into registers.
    var ra: array<f32, 4>;
    var rb: array<f32, 4>;
    for (var r = 0u; r < 4u; r++) {
        let ka = kbeg + a_kk[r];
        var va = 0.0;
        if (a_ok[r] && ka < kend) {
            va = a_at(a_info[r], ka);
        }
        ra[r] = va;
        let kb = kbeg + b_kk[r];
        var vb = 0.0;
        if (b_ok[r] && kb < kend) {
            vb = b_at(b_info[r], kb);
        }
        rb[r] = vb;
    }

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let ty = lid.y;
    let tx = lid.x;
    for (var k0 = kbeg; k0 < kend; k0 += BK) {
        for (var r = 0u; r < 4u; r++) {
            AS[a_slot[r]] = ra[r];
            BS[b_slot[r]] = rb[r];
        }
        workgroupBarrier();
        // Prefetch the next K block while computing on the staged one.
        let kn = k0 + BK;
        if (kn < kend) {
            for (var r = 0u; r < 4u; r++) {
                let ka = kn + a_kk[r];
                var va = 0.0;
                if (a_ok[r] && ka < kend) {
                    va = a_at(a_info[r], ka);
                }
                ra[r] = va;
                let kb = kn + b_kk[r];
                var vb = 0.0;
                if (b_ok[r] && kb < kend) {
                    vb = b_at(b_info[r], kb);
                }
                rb[r] = vb;
            }
        }
        for (var kk = 0u; kk < BK; kk++) {
            let ao = kk * LDS + ty;
            let bo = kk * LDS + tx;
            let b = vec4<f32>(BS[bo], BS[bo + 16u], BS[bo + 32u], BS[bo + 48u]);
            acc0 += AS[ao] * b;
            acc1 += AS[ao + 16u] * b;
            acc2 += AS[ao + 32u] * b;
            acc3 += AS[ao + 48u] * b;
        }
        workgroupBarrier();
    }

    let m = m0 + ty;
    let n = n0 + tx;
    store_row(z, s, m, n, acc0);
    store_row(z, s, m + 16u, n, acc1);
    store_row(z, s, m + 32u, n, acc2);
    store_row(z, s, m + 48u, n, acc3);
}
