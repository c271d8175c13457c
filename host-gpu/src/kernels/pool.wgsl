// Pooling on NCHW planes (no padding, floor mode), one invocation per output element. The
// adjoints are gathers: each input position adds the windows that hold it, in row-major window
// order (the order in which the CPU scatters), so no atomics and bit-for-bit the CPU's sums.
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> IDX: array<u32>;
@group(0) @binding(3) var<storage, read_write> OUT: array<f32>;
@group(0) @binding(4) var<storage, read_write> OIDX: array<u32>;

// The first window index whose window [i·s, i·s + k) holds position p, and the last one
// (inclusive; below the first when none does), over windows 0..count.
fn window_range(p: u32, k: u32, s: u32, count: u32) -> vec2<u32> {
    var lo = 0u;
    if (p >= k) {
        lo = (p - k) / s + 1u;
    }
    let hi = min(p / s, count - 1u);
    return vec2<u32>(lo, hi);
}

// P: [n_out, h, w, ho, wo, kh, kw, sh, sw]
@compute @workgroup_size(256)
fn max_pool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat_index(gid, nwg);
    if (o >= pu(0u)) {
        return;
    }
    let h = pu(1u);
    let w = pu(2u);
    let ho = pu(3u);
    let wo = pu(4u);
    let kh = pu(5u);
    let kw = pu(6u);
    let plane = o / (ho * wo);
    let r = o - plane * ho * wo;
    let h0 = (r / wo) * pu(7u);
    let w0 = (r % wo) * pu(8u);
    let base = plane * h * w;
    // best = −∞ at the window's first position (maxpick.wgsl's rule, as sim/src/cpu/pool.rs).
    var best = 0xff800000u;
    var best_nan = false;
    var arg = h0 * w + w0;
    for (var dh = 0u; dh < kh; dh++) {
        let row = (h0 + dh) * w + w0;
        for (var dw = 0u; dw < kw; dw++) {
            let k = row + dw;
            let v = bitcast<u32>(X[base + k]);
            if (max_takes(v, best, best_nan)) {
                best = v;
                best_nan = is_nan_bits(v);
                arg = k;
            }
        }
    }
    OUT[o] = bitcast<f32>(best);
    OIDX[o] = arg;
}

// Max unpooling as a gather: out[plane, p] = Σ y[plane, k] over k (row-major) with idx = p.
// mode 1: the indices come from a max pooling of a (hp, wp) plane with (kh, kw, sh, sw), so only
// the windows holding p (in that plane) can name it; mode 0: every k is tested.
// P: [n_in, h·w, ho, wo, mode, kh, kw, sh, sw, wp, hp·wp]
@compute @workgroup_size(256)
fn max_unpool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat_index(gid, nwg);
    if (o >= pu(0u)) {
        return;
    }
    let hw = pu(1u);
    let ho = pu(2u);
    let wo = pu(3u);
    let plane = o / hw;
    let p = o - plane * hw;
    let ybase = plane * ho * wo;
    if (ho == 0u || wo == 0u) {
        OUT[o] = 0.0;
        return;
    }
    var ir = vec2<u32>(0u, ho - 1u);
    var jr = vec2<u32>(0u, wo - 1u);
    if (pu(4u) == 1u) {
        if (p >= pu(10u)) {
            OUT[o] = 0.0;
            return;
        }
        let wp = pu(9u);
        ir = window_range(p / wp, pu(5u), pu(7u), ho);
        jr = window_range(p % wp, pu(6u), pu(8u), wo);
    }
    var acc = 0.0;
    for (var i = ir.x; i <= ir.y; i++) {
        for (var j = jr.x; j <= jr.y; j++) {
            let k = ybase + i * wo + j;
            if (IDX[k] == p) {
                acc += X[k];
            }
        }
    }
    OUT[o] = acc;
}

// out[i] = x[plane, idx[i]] (indices checked on the host).  P: [n_out, h·w, ho·wo]
@compute @workgroup_size(256)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat_index(gid, nwg);
    if (o >= pu(0u)) {
        return;
    }
    let hw = pu(1u);
    let plane = o / pu(2u);
    OUT[o] = X[plane * hw + min(IDX[o], hw - 1u)];
}

// Mean of each window: the sum in row-major order, then divided by kh·kw.
// P: [n_out, h, w, ho, wo, kh, kw, sh, sw, count]
@compute @workgroup_size(256)
fn avg_pool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat_index(gid, nwg);
    if (o >= pu(0u)) {
        return;
    }
    let h = pu(1u);
    let w = pu(2u);
    let ho = pu(3u);
    let wo = pu(4u);
    let kh = pu(5u);
    let kw = pu(6u);
    let plane = o / (ho * wo);
    let r = o - plane * ho * wo;
    let h0 = (r / wo) * pu(7u);
    let w0 = (r % wo) * pu(8u);
    let base = plane * h * w;
    var s = 0.0;
    for (var dh = 0u; dh < kh; dh++) {
        let row = base + (h0 + dh) * w + w0;
        for (var dw = 0u; dw < kw; dw++) {
            s += X[row + dw];
        }
    }
    OUT[o] = s / pf(9u);
}

// Adjoint of average pooling as a gather: each input position adds gy / (kh·kw) of the windows
// holding it, in row-major window order.  P: [n_in, h, w, ho, wo, kh, kw, sh, sw, count]
@compute @workgroup_size(256)
fn avg_adjoint(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat_index(gid, nwg);
    if (o >= pu(0u)) {
        return;
    }
    let h = pu(1u);
    let w = pu(2u);
    let ho = pu(3u);
    let wo = pu(4u);
    let plane = o / (h * w);
    let p = o - plane * h * w;
    let ir = window_range(p / w, pu(5u), pu(7u), ho);
    let jr = window_range(p % w, pu(6u), pu(8u), wo);
    let ybase = plane * ho * wo;
    let count = pf(9u);
    var acc = 0.0;
    for (var i = ir.x; i <= ir.y; i++) {
        for (var j = jr.x; j <= jr.y; j++) {
            acc += X[ybase + i * wo + j] / count;
        }
    }
    OUT[o] = acc;
}
