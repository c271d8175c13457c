// Small helpers shared by the softmax, norm, reduction and random kernels (prepended after the
// prelude): NaN and finiteness tests on bits (whatever the driver assumes about NaN), Rust's
// NaN-ignoring max, an accurate logarithm and reciprocal square root, the item index of a grid
// of one workgroup per item, and the 64-bit product of two words (`mul_wide`, for the exact sums
// and Philox).

fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

fn is_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// f32 max that ignores NaN (as Rust's f32::max): NaN only when both are NaN.
fn max_ign(a: f32, b: f32) -> f32 {
    if (is_nan(a)) {
        return b;
    }
    if (is_nan(b)) {
        return a;
    }
    return select(b, a, a > b);
}

// Natural logarithm to about 1 ulp (Cephes logf, as sim::rng::fast_ln) for positive finite
// normal x; other inputs go to the builtin (NaN, 0, ∞, subnormals, negatives). The builtin may be
// 2^-21 off in absolute terms near 1 (Vulkan's bound), which Box–Muller would amplify.
fn ln_acc(x: f32) -> f32 {
    let bits = bitcast<u32>(x);
    if (!(x > 0.0) || !is_finite(x) || (bits & 0x7f800000u) == 0u) {
        return log(x);
    }
    var e = i32((bits >> 23u) & 0xffu) - 126;
    var m = bitcast<f32>((bits & 0x007fffffu) | 0x3f000000u); // [0.5, 1)
    if (m < 0.70710677) {
        e = e - 1;
        m = m + m - 1.0;
    } else {
        m = m - 1.0;
    }
    let ef = f32(e);
    let z = m * m;
    var y = 7.0376836e-2;
    y = y * m - 1.1514610e-1;
    y = y * m + 1.1676999e-1;
    y = y * m - 1.2420141e-1;
    y = y * m + 1.4249323e-1;
    y = y * m - 1.6668057e-1;
    y = y * m + 2.0000714e-1;
    y = y * m - 2.4999994e-1;
    y = y * m + 3.333333e-1;
    y = y * m * z;
    y = y + -2.1219444e-4 * ef;
    y = y + -0.5 * z;
    return (m + y) + 0.6933594 * ef;
}

// 1 / sqrt(x) with one Newton step on the builtin (which Vulkan lets be a few ulp off).
fn rsqrt_acc(x: f32) -> f32 {
    let y = inverseSqrt(x);
    let n = y * (1.5 - 0.5 * x * y * y);
    return select(y, n, x > 0.0 && is_finite(x) && is_finite(y));
}

// Index of the workgroup in a grid spread over x and y (`groups_items` on the host).
fn item_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// (low, high) words of a · b, from 16-bit halves (WGSL has no 64-bit integers).
fn mul_wide(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    let hi = a1 * b1 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
    return vec2<u32>(a * b, hi);
}
