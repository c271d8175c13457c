// Per-channel sums, exact in 128-bit fixed point (exact.wgsl), in two passes:
//   `part`   one workgroup per (channel c, segment s): the workgroup finds the top exponent of the
//            segment's summands, then each invocation adds the elements s·seg + t + 256·j and the
//            workgroup adds the 256 integers; writes PART[6·(c·S + s) ..] = (acc, B, flags).
//   `finish_wg` (one workgroup per channel) / `finish_seq` (one invocation per channel, for few
//            segments) align the S partials of a channel to a common base and add them; write
//            OUT[c] = RN(sum), QUOT[c] = RN(sum / div) (div a count ≥ 1) and the float-float
//            quotient QPAIR[2c], QPAIR[2c + 1] = (hi, lo).
// Channel c of a tensor viewed as [outer, len, inner] holds the m = outer·inner elements
// e = o·inner + i at (o·len + c)·inner + i.
//
// Summands (`mode`): 0 A[k]; 1 A[k]·B[k]; 2 (A[k] − μ_c)² with μ_c = CV[2c] + CV[2c+1] (a
// float-float mean, as the CPU centres with its f64 mean; a compiler that reassociated
// (x − hi) − lo would centre on the f32 mean hi, which only matters when |mean| ≫ spread);
// 3 A[k]·x̂ with x̂ = (B[k] − CV[2c])·CV[2c+1] (f32, as the CPU's batch norm). Products are
// exact, as the CPU's f64 products of f32 values.
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read> CV: array<f32>;
@group(0) @binding(4) var<storage, read_write> PART: array<u32>;
@group(0) @binding(5) var<storage, read_write> OUT: array<f32>;
@group(0) @binding(6) var<storage, read_write> QUOT: array<f32>;
@group(0) @binding(7) var<storage, read_write> QPAIR: array<f32>;

fn summand(mode: u32, k: u32, c: u32) -> Term {
    switch mode {
        case 0u: {
            return term_f32(A[k]);
        }
        case 1u: {
            return term_prod(A[k], B[k]);
        }
        case 2u: {
            let d = (A[k] - CV[2u * c]) - CV[2u * c + 1u];
            return term_prod(d, d);
        }
        default: {
            return term_prod(A[k], (B[k] - CV[2u * c]) * CV[2u * c + 1u]);
        }
    }
}

// P: [m, len, inner, S, seg, mode]
@compute @workgroup_size(256)
fn part(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let m = pu(0u);
    let len = pu(1u);
    let inner = pu(2u);
    let nseg = pu(3u);
    let seg = pu(4u);
    let mode = pu(5u);
    let item = item_index(wid, nwg);
    if (item >= len * nseg) {
        return;
    }
    let c = item / nseg;
    let s = item % nseg;
    let start = s * seg;
    let end = start + min(seg, m - min(start, m));
    var top = TOP_NONE;
    var flags = 0u;
    for (var e = start + lid; e < end; e += WGN) {
        var k = e;
        if (len != 1u) {
            let o = e / inner;
            k = (o * len + c) * inner + (e - o * inner);
        }
        let t = summand(mode, k, c);
        top = max(top, t.top);
        flags = flags | t.special;
    }
    let tf = wg_top_flags(lid, top, flags);
    let base = bitcast<i32>(tf.x) - HEADROOM;
    var acc = vec4<u32>(0u);
    for (var e = start + lid; e < end; e += WGN) {
        var k = e;
        if (len != 1u) {
            let o = e / inner;
            k = (o * len + c) * inner + (e - o * inner);
        }
        acc = acc_add(acc, summand(mode, k, c), base);
    }
    let tot = wg_add128(lid, acc);
    if (lid == 0u) {
        let j = 6u * item;
        PART[j] = tot.x;
        PART[j + 1u] = tot.y;
        PART[j + 2u] = tot.z;
        PART[j + 3u] = tot.w;
        PART[j + 4u] = bitcast<u32>(base);
        PART[j + 5u] = tf.y;
    }
}

// Partial s of channel c shifted to the base `base`.
fn aligned(c: u32, nseg: u32, s: u32, base: i32) -> vec4<u32> {
    let j = 6u * (c * nseg + s);
    let a = vec4<u32>(PART[j], PART[j + 1u], PART[j + 2u], PART[j + 3u]);
    return sar128(a, u32(base - bitcast<i32>(PART[j + 4u])));
}

fn write_result(c: u32, acc: vec4<u32>, base: i32, flags: u32) {
    OUT[c] = fixed_quot(acc, base, flags, 1u);
    let q = fixed_quot_pair(acc, base, flags, pu(2u));
    QUOT[c] = q.x;
    QPAIR[2u * c] = q.x;
    QPAIR[2u * c + 1u] = q.y;
}

// Up to 4096 partials: 12 more bits of headroom over the largest partial's base.
const PART_HEADROOM: i32 = 12;

// P: [len, S, div]
@compute @workgroup_size(256)
fn finish_wg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let len = pu(0u);
    let nseg = pu(1u);
    let c = item_index(wid, nwg);
    if (c >= len) {
        return;
    }
    var top = TOP_NONE;
    var flags = 0u;
    for (var s = lid; s < nseg; s += WGN) {
        let j = 6u * (c * nseg + s);
        top = max(top, bitcast<i32>(PART[j + 4u]));
        flags = flags | PART[j + 5u];
    }
    let tf = wg_top_flags(lid, top, flags);
    let base = bitcast<i32>(tf.x) + PART_HEADROOM;
    var acc = vec4<u32>(0u);
    for (var s = lid; s < nseg; s += WGN) {
        acc = add128(acc, aligned(c, nseg, s, base));
    }
    let tot = wg_add128(lid, acc);
    if (lid == 0u) {
        write_result(c, tot, base, tf.y);
    }
}

// P: [len, S, div]
@compute @workgroup_size(256)
fn finish_seq(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = flat_index(gid, nwg);
    let len = pu(0u);
    let nseg = pu(1u);
    if (c >= len) {
        return;
    }
    var top = TOP_NONE;
    var flags = 0u;
    for (var s = 0u; s < nseg; s++) {
        let j = 6u * (c * nseg + s);
        top = max(top, bitcast<i32>(PART[j + 4u]));
        flags = flags | PART[j + 5u];
    }
    let base = top + PART_HEADROOM;
    var acc = vec4<u32>(0u);
    for (var s = 0u; s < nseg; s++) {
        acc = add128(acc, aligned(c, nseg, s, base));
    }
    write_result(c, acc, base, flags);
}
