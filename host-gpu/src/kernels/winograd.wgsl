// Winograd F(2×2, 3×3) transforms (Lavin & Gray 2016), the same algebra as the CPU backend's
// `sim/src/cpu/winograd.rs`; `ops/winograd.rs` runs them around one batched GEMM of the template:
//
//   U[ξ][m][k] = (G g_mk Gᵀ)_ξ            wino_weights  (g: the 3x3 kernel from output m to input k)
//   V[ξ][k][t] = (Bᵀ d_kt B)_ξ            wino_input    (d: the 4×4 input patch of tile t)
//   M_ξ = U_ξ · V_ξ                       16 GEMMs, [M, K] · [K, T]
//   Y(tile t of output m) = Aᵀ M_t A (+ bias[m])   wino_output
//
// with ξ = 4·a + b (row a, column b of the 4×4 transform) and the tiles t = (n·TH + ty)·TW + tx
// numbered so that consecutive invocations write consecutive t (coalesced V and M accesses).
//
//      ⎡1  0 −1  0⎤        ⎡1    0    0 ⎤
// Bᵀ = ⎢0  1  1  0⎥    G = ⎢1/2  1/2  1/2⎥    Aᵀ = ⎡1 1  1  0⎤
//      ⎢0 −1  1  0⎥        ⎢1/2 −1/2  1/2⎥         ⎣0 1 −1 −1⎦
//      ⎣0  1  0 −1⎦        ⎣0    0    1 ⎦
//
// Bindings: 1 = source (weights, input or the GEMM's result), 2 = max-pool switches (wino_input),
// 3 = output, 4 = bias (wino_output).
@group(0) @binding(1) var<storage, read> SRC: array<f32>;
@group(0) @binding(2) var<storage, read> IDX: array<u32>;
@group(0) @binding(3) var<storage, read_write> DST: array<f32>;
@group(0) @binding(4) var<storage, read> BIAS: array<f32>;

// G g Gᵀ of one row-major 3x3 kernel g, as 16 values (row-major 4×4).
fn g_transform(g: array<f32, 9>) -> array<f32, 16> {
    // t = G g: 4 rows of 3.
    var t: array<f32, 12>;
    for (var j = 0u; j < 3u; j++) {
        let g0 = g[j];
        let g1 = g[3u + j];
        let g2 = g[6u + j];
        t[j] = g0;
        t[3u + j] = 0.5 * (g0 + g1 + g2);
        t[6u + j] = 0.5 * (g0 - g1 + g2);
        t[9u + j] = g2;
    }
    // u = t Gᵀ: each row of t transformed the same way.
    var u: array<f32, 16>;
    for (var i = 0u; i < 4u; i++) {
        let a = t[3u * i];
        let b = t[3u * i + 1u];
        let c = t[3u * i + 2u];
        u[4u * i] = a;
        u[4u * i + 1u] = 0.5 * (a + b + c);
        u[4u * i + 2u] = 0.5 * (a - b + c);
        u[4u * i + 3u] = c;
    }
    return u;
}

// Weights. P: [0] M, [1] K, [2] transposed (0/1), [3] M·K.
// Forward (0): w is [O = M, C = K, 3, 3] and g_mk = w[m, k].
// Input adjoint (1): w is [O = K, C = M, 3, 3] and g_mk = w[k, m] rotated by 180°, the kernel of
// the transposed convolution written as a correlation.
@compute @workgroup_size(256)
fn wino_weights(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    let mk = pu(3u);
    if (i >= mk) { return; }
    let m = i / pu(1u);
    let k = i % pu(1u);
    var g: array<f32, 9>;
    if (pu(2u) == 0u) {
        let base = (m * pu(1u) + k) * 9u;
        for (var j = 0u; j < 9u; j++) { g[j] = SRC[base + j]; }
    } else {
        let base = (k * pu(0u) + m) * 9u;
        for (var j = 0u; j < 9u; j++) { g[j] = SRC[base + 8u - j]; }
    }
    let u = g_transform(g);
    for (var x = 0u; x < 16u; x++) { DST[x * mk + i] = u[x]; }
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

// Bᵀ d B of one 4×4 patch d (row-major), in place.
fn b_transform(d: ptr<function, array<f32, 16>>) {
    for (var j = 0u; j < 4u; j++) {
        let d0 = (*d)[j];
        let d1 = (*d)[4u + j];
        let d2 = (*d)[8u + j];
        let d3 = (*d)[12u + j];
        (*d)[j] = d0 - d2;
        (*d)[4u + j] = d1 + d2;
        (*d)[8u + j] = d2 - d1;
        (*d)[12u + j] = d1 - d3;
    }
    for (var i = 0u; i < 4u; i++) {
        let d0 = (*d)[4u * i];
        let d1 = (*d)[4u * i + 1u];
        let d2 = (*d)[4u * i + 2u];
        let d3 = (*d)[4u * i + 3u];
        (*d)[4u * i] = d0 - d2;
        (*d)[4u * i + 1u] = d1 + d2;
        (*d)[4u * i + 2u] = d2 - d1;
        (*d)[4u * i + 3u] = d1 - d3;
    }
}

// Input. The source has K channels of HIN×WIN (P[2], P[3]) per sample, zero-padded by PH (P[6])
// rows and PW (P[12]) columns on each side; tile (ty, tx) of the TH×TW tiles (P[4], P[5]) reads
// the patch whose top-left corner is (2·ty − PH, 2·tx − PW).
// P: [0] K, [1] T, [2] HIN, [3] WIN, [4] TH, [5] TW, [6] PH, [7] mode, [8] PK, [9] HP, [10] WP,
// [11] K·T, [12] PW.
@compute @workgroup_size(256)
fn wino_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    let kt = pu(11u);
    if (i >= kt) { return; }
    let tn = pu(1u);
    let k = i / tn;
    let t = i % tn;
    let tiles = pu(4u) * pu(5u);
    let n = t / tiles;
    let r = t % tiles;
    let h0 = i32(2u * (r / pu(5u))) - i32(pu(6u));
    let w0 = i32(2u * (r % pu(5u))) - i32(pu(12u));
    var plane: u32;
    if (pu(7u) == 0u) {
        plane = (n * pu(0u) + k) * pu(2u) * pu(3u);
    } else {
        plane = (n * pu(0u) + k) * pu(9u) * pu(10u);
    }
    var d: array<f32, 16>;
    for (var a = 0u; a < 4u; a++) {
        for (var b = 0u; b < 4u; b++) {
            d[4u * a + b] = source_at(plane, h0 + i32(a), w0 + i32(b));
        }
    }
    b_transform(&d);
    for (var x = 0u; x < 16u; x++) { DST[x * kt + i] = d[x]; }
}

// Output: SRC is the GEMMs' result [16][M][T]; y is [N, M, HY, WY] (P[2], P[3]) from the TH×TW
// tiles (P[4], P[5]) of each sample, the last row / column of a tile dropped past an odd edge.
// P: [0] M, [1] T, [2] HY, [3] WY, [4] TH, [5] TW, [6] bias (0/1), [7] M·T.
@compute @workgroup_size(256)
fn wino_output(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    let mt = pu(7u);
    if (i >= mt) { return; }
    let tn = pu(1u);
    let m = i / tn;
    let t = i % tn;
    var s: array<f32, 16>;
    for (var x = 0u; x < 16u; x++) { s[x] = SRC[x * mt + i]; }
    // Aᵀ s: 2 rows of 4.
    var r: array<f32, 8>;
    for (var j = 0u; j < 4u; j++) {
        r[j] = s[j] + s[4u + j] + s[8u + j];
        r[4u + j] = s[4u + j] - s[8u + j] - s[12u + j];
    }
    var bias = 0.0;
    if (pu(6u) == 1u) {
        bias = BIAS[m];
    }
    let tiles = pu(4u) * pu(5u);
    let n = t / tiles;
    let q = t % tiles;
    let hy = pu(2u);
    let wy = pu(3u);
    let oh = 2u * (q / pu(5u));
    let ow = 2u * (q % pu(5u));
    let base = (n * pu(0u) + m) * hy * wy;
    for (var a = 0u; a < 2u; a++) {
        let y0 = r[4u * a] + r[4u * a + 1u] + r[4u * a + 2u];
        let y1 = r[4u * a + 1u] - r[4u * a + 2u] - r[4u * a + 3u];
        let h = oh + a;
        if (h < hy) {
            DST[base + h * wy + ow] = y0 + bias;
            if (ow + 1u < wy) {
                DST[base + h * wy + ow + 1u] = y1 + bias;
            }
        }
    }
}
