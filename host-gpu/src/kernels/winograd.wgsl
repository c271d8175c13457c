// Winograd F(m×m, 3×3) transforms (Lavin & Gray 2016) for m = 2 and m = 4; `ops/winograd.rs`
// fills the matrices of the chosen m in (the line in double braces below) and runs the three
// kernels around one batched GEMM of the GEMM template. With α = m + 2:
//
//   U[ξ][o][k] = (G g_ok Gᵀ)_ξ            wino_weights  (g: the 3x3 kernel from input k to output o)
//   V[ξ][k][t] = (Bᵀ d_kt B)_ξ            wino_input    (d: the α×α input patch of tile t)
//   M_ξ = U_ξ · V_ξ                       α² GEMMs, [O, K] · [K, T]
//   Y(tile t of output o) = Aᵀ M_t A (+ bias[o])   wino_output, or pooled: wino_output_pool
//
// with ξ = α·a + b (row a, column b of the α×α transform) and the tiles t = (n·TH + ty)·TW + tx
// numbered so that consecutive invocations write consecutive t (coalesced V and M accesses).
// The transforms are written as small matrix products over the constant matrices; loops have
// constant bounds, so the shader compiler unrolls them and drops the zero terms.
//
// Constants from the generator: M_T (m), ALPHA, AA (α²), BT (Bᵀ, α×α), GM (G, α×3), AT (Aᵀ, m×α),
// all row-major.
//
// Bindings: 1 = source (weights, input or the GEMM's result), 2 = max-pool switches (wino_input),
// 3 = output, 4 = bias (wino_output), 5 = the output's max-pool switches (wino_output_pool).
@group(0) @binding(1) var<storage, read> SRC: array<f32>;
@group(0) @binding(2) var<storage, read> IDX: array<u32>;
@group(0) @binding(3) var<storage, read_write> DST: array<f32>;
@group(0) @binding(4) var<storage, read> BIAS: array<f32>;
@group(0) @binding(5) var<storage, read_write> OIDX: array<u32>;

{{MATRICES}}

// Weights. P: [0] O, [1] K, [2] transposed (0/1), [3] O·K.
// Forward (0): w is [O, K, 3, 3] and g_ok = w[o, k].
// Input adjoint (1): w is [K, O, 3, 3] and g_ok = w[k, o] rotated by 180°, the kernel of the
// transposed convolution written as a correlation.
@compute @workgroup_size(256)
fn wino_weights(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    let ok = pu(3u);
    if (i >= ok) { return; }
    let o = i / pu(1u);
    let k = i % pu(1u);
    var g: array<f32, 9>;
    if (pu(2u) == 0u) {
        let base = (o * pu(1u) + k) * 9u;
        for (var j = 0u; j < 9u; j++) { g[j] = SRC[base + j]; }
    } else {
        let base = (k * pu(0u) + o) * 9u;
        for (var j = 0u; j < 9u; j++) { g[j] = SRC[base + 8u - j]; }
    }
    // t = G g (α×3), then G g Gᵀ (α×α).
    var t: array<f32, ALPHA * 3u>;
    for (var a = 0u; a < ALPHA; a++) {
        for (var j = 0u; j < 3u; j++) {
            var s = 0.0;
            for (var l = 0u; l < 3u; l++) { s += GM[a * 3u + l] * g[l * 3u + j]; }
            t[a * 3u + j] = s;
        }
    }
    for (var a = 0u; a < ALPHA; a++) {
        for (var b = 0u; b < ALPHA; b++) {
            var s = 0.0;
            for (var l = 0u; l < 3u; l++) { s += t[a * 3u + l] * GM[b * 3u + l]; }
            DST[(a * ALPHA + b) * ok + i] = s;
        }
    }
}

// One value of the (unpooled) source plane: plain (P[7] = 0), max-unpooled (1: SRC holds the pooled
// values and IDX the switches, at the pooled grid HP×WP, P[9], P[10], of windows P[8]) or
// average-unpooled (2). `plane` is the base of channel (n, k) in SRC (pooled grid when unpooling).
fn source_at(plane: u32, ih: i32, iw: i32) -> f32 {
    let hin = pu(2u);
    let win = pu(3u);
    if (u32(ih) >= hin || u32(iw) >= win) {
        return 0.0;
    }
    let mode = pu(7u);
    if (mode == 0u) {
        return SRC[plane + u32(ih) * win + u32(iw)];
    }
    let pk = pu(8u);
    let qh = u32(ih) / pk;
    let qw = u32(iw) / pk;
    if (qh >= pu(9u) || qw >= pu(10u)) {
        return 0.0;
    }
    let j = plane + qh * pu(10u) + qw;
    if (mode == 1u) {
        if (IDX[j] != u32(ih) * win + u32(iw)) {
            return 0.0;
        }
        return SRC[j];
    }
    return SRC[j] / f32(pk * pk);
}

// Input. The source has K channels of HIN×WIN (P[2], P[3]) per sample, zero-padded by PH (P[6])
// rows and PW (P[12]) columns on each side; tile (ty, tx) of the TH×TW tiles (P[4], P[5]) reads
// the patch whose top-left corner is (m·ty − PH, m·tx − PW).
// P: [0] K, [1] T, [2] HIN, [3] WIN, [4] TH, [5] TW, [6] PH, [7] mode, [8] PK, [9] HP, [10] WP,
// [11] K·T, [12] PW, [13] N0: the tiles are those of samples N0 … N0 + T / (TH·TW) − 1 (a chunk
// of the batch).
@compute @workgroup_size(256)
fn wino_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    let kt = pu(11u);
    if (i >= kt) { return; }
    let tn = pu(1u);
    let k = i / tn;
    let t = i % tn;
    let tiles = pu(4u) * pu(5u);
    let n = pu(13u) + t / tiles;
    let r = t % tiles;
    let h0 = i32(M_T * (r / pu(5u))) - i32(pu(6u));
    let w0 = i32(M_T * (r % pu(5u))) - i32(pu(12u));
    var plane: u32;
    if (pu(7u) == 0u) {
        plane = (n * pu(0u) + k) * pu(2u) * pu(3u);
    } else {
        plane = (n * pu(0u) + k) * pu(9u) * pu(10u);
    }
    var d: array<f32, AA>;
    for (var a = 0u; a < ALPHA; a++) {
        for (var b = 0u; b < ALPHA; b++) {
            d[a * ALPHA + b] = source_at(plane, h0 + i32(a), w0 + i32(b));
        }
    }
    // e = Bᵀ d, then Bᵀ d B.
    var e: array<f32, AA>;
    for (var a = 0u; a < ALPHA; a++) {
        for (var b = 0u; b < ALPHA; b++) {
            var s = 0.0;
            for (var l = 0u; l < ALPHA; l++) { s += BT[a * ALPHA + l] * d[l * ALPHA + b]; }
            e[a * ALPHA + b] = s;
        }
    }
    for (var a = 0u; a < ALPHA; a++) {
        for (var b = 0u; b < ALPHA; b++) {
            var s = 0.0;
            for (var l = 0u; l < ALPHA; l++) { s += e[a * ALPHA + l] * BT[b * ALPHA + l]; }
            DST[(a * ALPHA + b) * kt + i] = s;
        }
    }
}

// The m×m output tile of invocation i (channel o = i / T, tile t = i % T) with the bias, row-major,
// rows and columns past the edge included: SRC is the GEMMs' result [α²][O][T].
// P: [0] O, [1] T, [6] bias (0/1), [7] O·T.
fn out_tile(i: u32) -> array<f32, M_T * M_T> {
    let ot = pu(7u);
    let o = i / pu(1u);
    var s: array<f32, AA>;
    for (var x = 0u; x < AA; x++) { s[x] = SRC[x * ot + i]; }
    // r = Aᵀ s (m×α).
    var r: array<f32, M_T * ALPHA>;
    for (var a = 0u; a < M_T; a++) {
        for (var b = 0u; b < ALPHA; b++) {
            var v = 0.0;
            for (var l = 0u; l < ALPHA; l++) { v += AT[a * ALPHA + l] * s[l * ALPHA + b]; }
            r[a * ALPHA + b] = v;
        }
    }
    var bias = 0.0;
    if (pu(6u) == 1u) {
        bias = BIAS[o];
    }
    var y: array<f32, M_T * M_T>;
    for (var a = 0u; a < M_T; a++) {
        for (var b = 0u; b < M_T; b++) {
            var v = 0.0;
            for (var l = 0u; l < ALPHA; l++) { v += r[a * ALPHA + l] * AT[b * ALPHA + l]; }
            y[a * M_T + b] = v + bias;
        }
    }
    return y;
}

// Where invocation i's output tile lies: channel o of sample n, top-left output (oh, ow).
// P: [1] T, [4] TH, [5] TW, [8] N0.
struct TileAt { o: u32, n: u32, oh: u32, ow: u32 }
fn tile_at(i: u32) -> TileAt {
    let tn = pu(1u);
    let t = i % tn;
    let tiles = pu(4u) * pu(5u);
    let q = t % tiles;
    return TileAt(i / tn, pu(8u) + t / tiles, M_T * (q / pu(5u)), M_T * (q % pu(5u)));
}

// Output: y is [N, O, HY, WY] (P[2], P[3]) from the TH×TW tiles (P[4], P[5]) of each sample, a
// tile's rows and columns past the edge dropped.
// P: [0] O, [1] T, [2] HY, [3] WY, [4] TH, [5] TW, [6] bias (0/1), [7] O·T, [8] N0 (the chunk's
// first sample, as in wino_input).
@compute @workgroup_size(256)
fn wino_output(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= pu(7u)) { return; }
    let y = out_tile(i);
    let at = tile_at(i);
    let hy = pu(2u);
    let wy = pu(3u);
    let base = (at.n * pu(0u) + at.o) * hy * wy;
    for (var a = 0u; a < M_T; a++) {
        let h = at.oh + a;
        if (h >= hy) { break; }
        for (var b = 0u; b < M_T; b++) {
            let w = at.ow + b;
            if (w >= wy) { break; }
            DST[base + h * wy + w] = y[a * M_T + b];
        }
    }
}

// Output with the pooling of the conv synapse fused: the windows KH×KW (P[10], P[11], stride =
// window, no padding, floor mode) divide the tile, so each lies in one tile and is pooled from the
// tile's values without the conv output being written. DST is the pooled [N, O, HO, WO] (P[12],
// P[13]); max pooling (P[9] = 1) writes its switches to OIDX (the flat index in the HY×WY plane)
// with the rule of pool.wgsl's max_pool, average pooling (2) divides the row-major window sum by
// P[14] (KH·KW as f32) as its avg_pool does. P[0..9] as in wino_output.
@compute @workgroup_size(256)
fn wino_output_pool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= pu(7u)) { return; }
    let y = out_tile(i);
    let at = tile_at(i);
    let wy = pu(3u);
    let kh = pu(10u);
    let kw = pu(11u);
    let ho = pu(12u);
    let wo = pu(13u);
    let oh = at.oh;
    let ow = at.ow;
    let base = (at.n * pu(0u) + at.o) * ho * wo;
    for (var a = 0u; a < M_T; a += kh) {
        let ph = (oh + a) / kh;
        if (ph >= ho) { break; }
        for (var b = 0u; b < M_T; b += kw) {
            let pw = (ow + b) / kw;
            if (pw >= wo) { break; }
            if (pu(9u) == 1u) {
                var best = 0xff800000u;
                var best_nan = false;
                var arg = (oh + a) * wy + ow + b;
                for (var dh = 0u; dh < kh; dh++) {
                    for (var dw = 0u; dw < kw; dw++) {
                        let v = bitcast<u32>(y[(a + dh) * M_T + b + dw]);
                        if (max_takes(v, best, best_nan)) {
                            best = v;
                            best_nan = is_nan_bits(v);
                            arg = (oh + a + dh) * wy + ow + b + dw;
                        }
                    }
                }
                DST[base + ph * wo + pw] = bitcast<f32>(best);
                OIDX[base + ph * wo + pw] = arg;
            } else {
                var s = 0.0;
                for (var dh = 0u; dh < kh; dh++) {
                    for (var dw = 0u; dw < kw; dw++) {
                        s += y[(a + dh) * M_T + b + dw];
                    }
                }
                DST[base + ph * wo + pw] = s / pf(14u);
            }
        }
    }
}
