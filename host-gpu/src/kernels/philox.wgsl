// Philox4x32-10 as sim::rng (no bindings; included after math.wgsl, whose `mul_wide` it uses,
// by the kernels that draw), the uniform of a word and sin/cos of turns, from which the kernels
// build Stream::normal's Box–Muller draws.

fn philox(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var rnd = 0u; rnd < 10u; rnd++) {
        if (rnd > 0u) {
            k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
        }
        let p0 = mul_wide(0xD2511F53u, c.x);
        let p1 = mul_wide(0xCD9E8D57u, c.z);
        c = vec4<u32>(p1.y ^ c.y ^ k.x, p1.x, p0.y ^ c.w ^ k.y, p0.x);
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
