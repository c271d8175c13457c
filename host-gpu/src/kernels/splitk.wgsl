// Reduction of the split-K partial sums of the GEMM template (`gemm.wgsl`): the partials of batch z
// are `splits` consecutive [M, N] blocks; each output element is their sum in slice order, so the
// result is the same bits on every run.
// Bindings: 1 = partials [Z, splits, M·N], 3 = output [Z, M·N].
@group(0) @binding(1) var<storage, read> PART: array<f32>;
@group(0) @binding(3) var<storage, read_write> OUT: array<f32>;

// P: [n = Z·M·N, M·N, splits]
@compute @workgroup_size(256)
fn splitk_sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= pu(0u)) { return; }
    let mn = pu(1u);
    let splits = pu(2u);
    let z = i / mn;
    let r = i % mn;
    var base = z * splits * mn + r;
    var acc = 0.0;
    for (var s = 0u; s < splits; s++) {
        acc += PART[base];
        base += mn;
    }
    OUT[i] = acc;
}

@group(0) @binding(2) var<storage, read> BIAS: array<f32>;

// The same sum plus a bias along the last axis (linear with a split K).  P: [n, M·N, splits, N]
@compute @workgroup_size(256)
fn splitk_sum_bias(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= pu(0u)) { return; }
    let mn = pu(1u);
    let splits = pu(2u);
    let z = i / mn;
    let r = i % mn;
    var base = z * splits * mn + r;
    var acc = 0.0;
    for (var s = 0u; s < splits; s++) {
        acc += PART[base];
        base += mn;
    }
    OUT[i] = acc + BIAS[r % pu(3u)];
}
