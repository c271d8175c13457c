// Softmax family over the last axis: one workgroup per row of length k (any length: each
// invocation walks the row with stride 256), workgroup reductions in a fixed tree for the max
// (NaN ignored, as Rust's f32::max) and for the sums. The sums are f32 (the CPU's are f64):
// Σ exp(x − max) has positive terms, so its relative error stays a few 1e-7.
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> G: array<f32>;
@group(0) @binding(3) var<storage, read> LABEL: array<u32>;
@group(0) @binding(4) var<storage, read_write> OUT: array<f32>;
@group(0) @binding(5) var<storage, read_write> NLL: array<f32>;

const WGN: u32 = 256u;
var<workgroup> WF: array<f32, 256>;

// Sum of one value per invocation by a fixed tree; every invocation gets it.
fn wg_sum(lid: u32, v: f32) -> f32 {
    WF[lid] = v;
    workgroupBarrier();
    for (var s = WGN / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            WF[lid] = WF[lid] + WF[lid + s];
        }
        workgroupBarrier();
    }
    let r = WF[0];
    workgroupBarrier();
    return r;
}

// NaN-ignoring maximum of one value per invocation; every invocation gets it.
fn wg_max(lid: u32, v: f32) -> f32 {
    WF[lid] = v;
    workgroupBarrier();
    for (var s = WGN / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            WF[lid] = max_ign(WF[lid], WF[lid + s]);
        }
        workgroupBarrier();
    }
    let r = WF[0];
    workgroupBarrier();
    return r;
}

// (max, log Σ exp(x − max)) of the row starting at `base`, as the CPU's row_stats: a NaN in the
// row makes the sum, hence every output, NaN.
fn row_stats(lid: u32, base: u32, k: u32) -> vec2<f32> {
    var m = bitcast<f32>(0xff800000u); // −∞
    for (var j = lid; j < k; j += WGN) {
        m = max_ign(m, X[base + j]);
    }
    m = wg_max(lid, m);
    var s = 0.0;
    for (var j = lid; j < k; j += WGN) {
        s += exp(X[base + j] - m);
    }
    return vec2<f32>(m, ln_acc(wg_sum(lid, s)));
}

// softmax (mode 0) or log-softmax (mode 1).  P: [rows, k, mode]
@compute @workgroup_size(256)
fn rows_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let r = item_index(wid, nwg);
    let k = pu(1u);
    if (r >= pu(0u)) {
        return;
    }
    let base = r * k;
    let st = row_stats(lid, base, k);
    let log_out = pu(2u) == 1u;
    for (var j = lid; j < k; j += WGN) {
        let v = X[base + j] - st.x - st.y;
        OUT[base + j] = select(exp(v), v, log_out);
    }
}

// gx = gy − exp(y) · Σ gy per row (y = log-softmax output in X, gy in G).  P: [rows, k]
@compute @workgroup_size(256)
fn log_softmax_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let r = item_index(wid, nwg);
    let k = pu(1u);
    if (r >= pu(0u)) {
        return;
    }
    let base = r * k;
    var s = 0.0;
    for (var j = lid; j < k; j += WGN) {
        s += G[base + j];
    }
    let tot = wg_sum(lid, s);
    for (var j = lid; j < k; j += WGN) {
        OUT[base + j] = G[base + j] - exp(X[base + j]) * tot;
    }
}

// Cross-entropy rows: OUT = (softmax − onehot) · inv_n, NLL[r] = −log_softmax[r, label].
// P: [rows, k, inv_n]
@compute @workgroup_size(256)
fn cross_entropy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let r = item_index(wid, nwg);
    let k = pu(1u);
    if (r >= pu(0u)) {
        return;
    }
    let base = r * k;
    let st = row_stats(lid, base, k);
    let inv_n = pf(2u);
    let label = LABEL[r];
    for (var j = lid; j < k; j += WGN) {
        let p = exp(X[base + j] - st.x - st.y);
        OUT[base + j] = (p - select(0.0, 1.0, j == label)) * inv_n;
    }
    if (lid == 0u) {
        NLL[r] = -(X[base + label] - st.x - st.y);
    }
}
