// Counter-based draws exactly as sim::rng::Stream: Philox4x32-10 on the counter
// (block lo, block hi, tag, lane) with the stream's 64-bit key; draw i is word i % 4 of block
// i / 4. One invocation per block writes the (up to) four draws of its block that fall in
// offset .. offset + n. WGSL has no 64-bit integers: the block number is carried in two words
// and the 32×32 → 64-bit products are built from 16-bit halves.
//
// Uniform: (u >> 8)·2⁻²⁴ + 2⁻²⁵ (exact steps, the same bits as the CPU). Normal: Box–Muller on
// word pairs (0, 1) and (2, 3) (cos for the even draw, sin for the odd), with an accurate log and
// sin/cos of turns (math.wgsl's ln_acc and philox.wgsl's sincos_turns: within a few 1e-7 of the
// CPU's libm, whatever the driver's builtins).
@group(0) @binding(1) var<storage, read_write> OUT: array<f32>;

// P: [n, key0, key1, lane, block_lo, block_hi, head, normal, blocks]
// Invocation t < blocks evaluates block (block_hi, block_lo) + t; its draw r is element
// 4t + r − head (32-bit arithmetic: tensors this kernel can fill hold far fewer than 2³² − 4
// elements, the device's storage bindings being smaller).
@compute @workgroup_size(256)
fn draw(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    let n = pu(0u);
    let head = pu(6u);
    if (t >= pu(8u)) {
        return;
    }
    let lo = pu(4u) + t;
    let hi = pu(5u) + select(0u, 1u, lo < t);
    let normal = pu(7u) == 1u;
    let tag = select(0x55000001u, 0x55000002u, normal);
    let b = philox(vec4<u32>(lo, hi, tag, pu(3u)), vec2<u32>(pu(1u), pu(2u)));
    var v = vec4<f32>(unit(b.x), unit(b.y), unit(b.z), unit(b.w));
    if (normal) {
        let r0 = sqrt(-2.0 * ln_acc(v.x));
        let r1 = sqrt(-2.0 * ln_acc(v.z));
        let cs0 = sincos_turns(v.y);
        let cs1 = sincos_turns(v.w);
        v = vec4<f32>(r0 * cs0.x, r0 * cs0.y, r1 * cs1.x, r1 * cs1.y);
    }
    for (var r = 0u; r < 4u; r++) {
        let j = 4u * t + r;
        if (j >= head && j - head < n) {
            OUT[j - head] = v[r];
        }
    }
}
