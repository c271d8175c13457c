// Counter-based draws exactly as sim::rng::Stream: Philox4x32-10 on the counter
// (block lo, block hi, tag, lane) with the stream's 64-bit key; draw i is word i % 4 of block
// i / 4. One invocation per block writes the (up to) four draws of its block that fall in
// offset .. offset + n. WGSL has no 64-bit integers: the block number is carried in two words
// and the 32×32 → 64-bit products are built from 16-bit halves.
//
// Uniform: (u >> 8)·2⁻²⁴ + 2⁻²⁵ (exact steps, the same bits as the CPU). Normal: Box–Muller on
// word pairs (0, 1) and (2, 3) (cos for the even draw, sin for the odd), with an accurate log and
// sin/cos of turns (math.wgsl's ln_acc and sincos_turns below: within a few 1e-7 of the CPU's
// libm, whatever the driver's builtins).
@group(0) @binding(1) var<storage, read_write> OUT: array<f32>;

// (hi, lo) words of a · b.
fn mul_wide(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    let hi = p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b);
}

fn philox(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var rnd = 0u; rnd < 10u; rnd++) {
        if (rnd > 0u) {
            k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
        }
        let p0 = mul_wide(0xD2511F53u, c.x);
        let p1 = mul_wide(0xCD9E8D57u, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    }
    return c;
}

fn unit(u: u32) -> f32 {
    return f32(u >> 8u) * (1.0 / 16777216.0) + (1.0 / 33554432.0);
}

// (cos 2πu, sin 2πu): exact reduction to the nearest quarter turn, Cephes polynomials on
// [−π/4, π/4] (as sim::rng::fast_sincos_turns).
fn sincos_turns(u: f32) -> vec2<f32> {
    let y = u * 4.0;
    let qf = round(y);
    let q = u32(qf);
    let t = (y - qf) * 1.5707964;
    let z = t * t;
    let s = ((-1.9515296e-4 * z + 8.332161e-3) * z - 1.6666655e-1) * z * t + t;
    let c = ((2.4433157e-5 * z - 1.3887316e-3) * z + 4.1666646e-2) * z * z - 0.5 * z + 1.0;
    var cq = select(c, -s, (q & 1u) != 0u);
    var sq = select(s, c, (q & 1u) != 0u);
    if ((q & 2u) != 0u) {
        cq = -cq;
        sq = -sq;
    }
    return vec2<f32>(cq, sq);
}

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
