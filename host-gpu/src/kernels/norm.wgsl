// Layer norm (one workgroup per row) and the element passes of batch norm (its per-channel sums
// come from reduce.wgsl). The formulas and their f32 roundings mirror sim/src/cpu/norm.rs; the
// sums it does in f64 are exact here (exact.wgsl), each pass over a row finding the top exponent
// of its summands first.
// Bindings by entry (inputs 1–6, outputs 7–9) are listed above each one.
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> GAMMA: array<f32>;
@group(0) @binding(3) var<storage, read> IN3: array<f32>;
@group(0) @binding(4) var<storage, read> IN4: array<f32>;
@group(0) @binding(5) var<storage, read> IN5: array<f32>;
@group(0) @binding(6) var<storage, read> STAT: array<f32>;
@group(0) @binding(7) var<storage, read_write> OUT: array<f32>;
@group(0) @binding(8) var<storage, read_write> OUT2: array<f32>;
@group(0) @binding(9) var<storage, read_write> OUT3: array<f32>;

// The summands of the layer-norm row sums: 0 x; 1 (x − μ)² with the float-float mean
// μ = m + v (the CPU centres with its f64 mean); 2 g = gy·gamma; 3 g·x̂ with x̂ = (x − m)·rs
// (v = rs; f32 values, as the CPU computes them; products exact).
fn ln_term(kind: u32, base: u32, j: u32, m: f32, v: f32) -> Term {
    let x = X[base + j];
    switch kind {
        case 0u: {
            return term_f32(x);
        }
        case 1u: {
            let c = (x - m) - v;
            return term_prod(c, c);
        }
        case 2u: {
            return term_f32(IN3[base + j] * GAMMA[j]);
        }
        default: {
            return term_prod(IN3[base + j] * GAMMA[j], (x - m) * v);
        }
    }
}

// Σ_j term / d over the row starting at `base` as a float-float (hi = RN of it); every
// invocation gets it. `m`, `v`: the mean and (kind 1) its low part or (kind 3) rstd.
fn row_mean(lid: u32, kind: u32, base: u32, d: u32, m: f32, v: f32) -> vec2<f32> {
    var top = TOP_NONE;
    var flags = 0u;
    for (var j = lid; j < d; j += WGN) {
        let t = ln_term(kind, base, j, m, v);
        top = max(top, t.top);
        flags = flags | t.special;
    }
    let tf = wg_top_flags(lid, top, flags);
    let b = bitcast<i32>(tf.x) - HEADROOM;
    var acc = vec4<u32>(0u);
    for (var j = lid; j < d; j += WGN) {
        acc = acc_add(acc, ln_term(kind, base, j, m, v), b);
    }
    return fixed_quot_pair(wg_add128(lid, acc), b, tf.y, d);
}

// 1/sqrt(var + eps), the sum rounded once (the CPU adds them in f64).
fn rstd_of(v: f32, eps: f32) -> f32 {
    let s = v + eps;
    // The rounding error of the sum (Fast2Sum on v, eps ≥ 0); it only refines the last bit, so
    // a compiler simplifying it to 0 costs an ulp, no more.
    let big = max(v, eps);
    let small = min(v, eps);
    let err = small - (s - big);
    let y = rsqrt_acc(s);
    return select(y, y - 0.5 * y * (err / s), s > 0.0 && is_finite(s) && is_finite(y));
}

// y = (x − mean)·rstd·gamma + beta per row, rstd = 1/sqrt(var + eps) with the biased variance.
// X, GAMMA, IN3 = beta → OUT = y, OUT2 = mean, OUT3 = rstd.  P: [rows, d, eps]
@compute @workgroup_size(256)
fn ln_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let r = item_index(wid, nwg);
    let d = pu(1u);
    if (r >= pu(0u)) {
        return;
    }
    let base = r * d;
    let mu = row_mean(lid, 0u, base, d, 0.0, 0.0);
    let m = mu.x;
    let vr = row_mean(lid, 1u, base, d, m, mu.y).x;
    let rs = rstd_of(vr, pf(2u));
    for (var j = lid; j < d; j += WGN) {
        OUT[base + j] = (X[base + j] - m) * rs * GAMMA[j] + IN3[j];
    }
    if (lid == 0u) {
        OUT2[r] = m;
        OUT3[r] = rs;
    }
}

// Layer-norm input adjoint per row, and the f32 products gy·x̂ the parameter gradient sums.
// X, GAMMA, IN3 = gy, IN4 = mean, IN5 = rstd → OUT = gx, OUT2 = gy·x̂.  P: [rows, d]
@compute @workgroup_size(256)
fn ln_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let r = item_index(wid, nwg);
    let d = pu(1u);
    if (r >= pu(0u)) {
        return;
    }
    let base = r * d;
    let m = IN4[r];
    let rs = IN5[r];
    let a = row_mean(lid, 2u, base, d, m, rs).x;
    let b = row_mean(lid, 3u, base, d, m, rs).x;
    for (var j = lid; j < d; j += WGN) {
        let gy = IN3[base + j];
        let xh = (X[base + j] - m) * rs;
        OUT[base + j] = rs * (gy * GAMMA[j] - a - xh * b);
        OUT2[base + j] = gy * xh;
    }
}

// Per-channel (mean, rstd) pairs from mean and variance: IN4 = mean, IN5 = var → OUT.
// P: [c, eps]
@compute @workgroup_size(256)
fn bn_stats(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = flat_index(gid, nwg);
    if (c >= pu(0u)) {
        return;
    }
    OUT[2u * c] = IN4[c];
    OUT[2u * c + 1u] = rstd_of(IN5[c], pf(1u));
}

// y = (x − mean_c)·rstd_c·gamma_c + beta_c.  X, GAMMA, IN3 = beta, STAT → OUT.
// P: [n, c, inner]
@compute @workgroup_size(256)
fn bn_apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= pu(0u)) {
        return;
    }
    let ch = (i / pu(2u)) % pu(1u);
    OUT[i] = (X[i] - STAT[2u * ch]) * STAT[2u * ch + 1u] * GAMMA[ch] + IN3[ch];
}

// gx = gamma_c·rstd_c·(gy − Σgy/M − x̂·Σ(gy·x̂)/M) with the rounded means IN4 = Σ gy / M,
// IN5 = Σ gy·x̂ / M per channel.  X, GAMMA, IN3 = gy, IN4, IN5, STAT → OUT.  P: [n, c, inner]
@compute @workgroup_size(256)
fn bn_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= pu(0u)) {
        return;
    }
    let ch = (i / pu(2u)) % pu(1u);
    let b = IN4[ch];
    let g = IN5[ch];
    let rs = STAT[2u * ch + 1u];
    let k = GAMMA[ch] * rs;
    let xh = (X[i] - STAT[2u * ch]) * rs;
    OUT[i] = k * (IN3[i] - b - xh * g);
}
