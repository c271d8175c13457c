// Data movement: axis permutation and block copies (concat / slice).
// Bindings: 1 = input, 3 = output.
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;

// Permute, rank <= 8. P: [n, rank, out_dims[8], in_strides_permuted[8]]: output element with
// multi-index (i_0..i_{r-1}) reads X[sum_k i_k * in_strides_permuted[k]].
@compute @workgroup_size(256)
fn permute(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= pu(0u)) { return; }
    let rank = pu(1u);
    var rem = i;
    var src = 0u;
    for (var k = 0u; k < rank; k++) {
        let ax = rank - 1u - k;
        let d = pu(2u + ax);
        src += (rem % d) * pu(10u + ax);
        rem = rem / d;
    }
    Y[i] = X[src];
}

// Y viewed as [outer, ylen, inner], X as [outer, xlen, inner]: for each element of the block
// [outer, len, inner], Y[o, yoff + j, r] = X[o, xoff + j, r].
// P: [n = outer*len*inner, len, inner, xlen, xoff, ylen, yoff]
@compute @workgroup_size(256)
fn block_copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= pu(0u)) { return; }
    let len = pu(1u);
    let inner = pu(2u);
    let r = i % inner;
    let j = (i / inner) % len;
    let o = i / (inner * len);
    Y[(o * pu(5u) + pu(6u) + j) * inner + r] = X[(o * pu(3u) + pu(4u) + j) * inner + r];
}
