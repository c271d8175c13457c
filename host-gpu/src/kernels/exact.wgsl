// Exact sums in integer fixed point (prepended after math.wgsl to the reduction and norm
// kernels). Compensated float tricks (TwoSum, Kahan) do not survive shader compilers: without
// SPIR-V's NoContraction, which naga does not emit, Mesa rewrites (a + b) − a to b and drivers may
// reassociate. Integer additions are exact and associative, so the sums here are exact up to
// the truncation below, and independent of the summation order.
//
// A sum is a 128-bit two's-complement integer `acc` (vec4: x = low word) times 2^B. Summands are
// f32 values or exact products of two f32 values (up to 48 significant bits). Over a set of
// summands, `top` is an exponent above every summand's highest bit and B = top − 94: every
// summand fits below bit 94, and up to 2^32 of them below bit 126. Summand bits below 2^B are
// dropped (at most 2^-92 of the largest summand each). Infinities and NaN are carried as flags
// (1 = +∞, 2 = −∞, 4 = NaN) and give IEEE results (+∞ + −∞ = NaN).

const TOP_NONE: i32 = -100000;
const HEADROOM: i32 = 94;

struct Term {
    m: vec2<u32>, // the magnitude's significand as a 64-bit integer (x = low word)
    e: i32,       // the exponent of its lowest bit
    top: i32,     // an exponent above its highest bit; TOP_NONE for zero and non-finite
    neg: bool,
    special: u32, // 1 = +∞, 2 = −∞, 4 = NaN
}

fn term_f32(x: f32) -> Term {
    let b = bitcast<u32>(x);
    let ex = (b >> 23u) & 0xffu;
    var t: Term;
    t.neg = (b >> 31u) == 1u;
    t.special = 0u;
    t.m = vec2<u32>(0u, 0u);
    t.e = 0;
    t.top = TOP_NONE;
    if (ex == 255u) {
        if ((b & 0x7fffffu) != 0u) {
            t.special = 4u;
        } else {
            t.special = select(1u, 2u, t.neg);
        }
        return t;
    }
    var mant = b & 0x7fffffu;
    var e = -149;
    if (ex != 0u) {
        mant = mant | 0x800000u;
        e = i32(ex) - 150;
    }
    if (mant != 0u) {
        t.m = vec2<u32>(mant, 0u);
        t.e = e;
        t.top = e + 24;
    }
    return t;
}

// The exact product a · b as a term (IEEE rules for ∞ and NaN: ∞ · 0 = NaN).
fn term_prod(a: f32, b: f32) -> Term {
    let ta = term_f32(a);
    let tb = term_f32(b);
    var t: Term;
    t.neg = ta.neg != tb.neg;
    t.special = 0u;
    t.m = vec2<u32>(0u, 0u);
    t.e = 0;
    t.top = TOP_NONE;
    let za = ta.special == 0u && ta.top == TOP_NONE;
    let zb = tb.special == 0u && tb.top == TOP_NONE;
    if (ta.special == 4u || tb.special == 4u) {
        t.special = 4u;
    } else if (ta.special != 0u || tb.special != 0u) {
        t.special = select(select(1u, 2u, t.neg), 4u, za || zb);
    } else if (!za && !zb) {
        t.m = mul_wide(ta.m.x, tb.m.x);
        t.e = ta.e + tb.e;
        t.top = t.e + 48;
    }
    return t;
}

fn add128(a: vec4<u32>, b: vec4<u32>) -> vec4<u32> {
    let x = a.x + b.x;
    let c1 = select(0u, 1u, x < a.x);
    let y0 = a.y + b.y;
    let y = y0 + c1;
    let c2 = select(0u, 1u, y0 < a.y) + select(0u, 1u, y < y0);
    let z0 = a.z + b.z;
    let z = z0 + c2;
    let c3 = select(0u, 1u, z0 < a.z) + select(0u, 1u, z < z0);
    return vec4<u32>(x, y, z, a.w + b.w + c3);
}

fn neg128(a: vec4<u32>) -> vec4<u32> {
    return add128(~a, vec4<u32>(1u, 0u, 0u, 0u));
}

// m · 2^sh as a 128-bit integer (bits below 2^0 dropped; the caller keeps it below 2^128).
fn shl128(m: vec2<u32>, sh: i32) -> vec4<u32> {
    var v = m;
    var s = sh;
    if (s < 0) {
        let r = u32(-s);
        if (r >= 64u) {
            return vec4<u32>(0u);
        }
        if (r >= 32u) {
            v = vec2<u32>(v.y >> (r - 32u), 0u);
        } else if (r > 0u) {
            v = vec2<u32>((v.x >> r) | (v.y << (32u - r)), v.y >> r);
        }
        s = 0;
    }
    let q = u32(s) / 32u;
    let r = u32(s) % 32u;
    var t = vec3<u32>(v.x, v.y, 0u);
    if (r > 0u) {
        t = vec3<u32>(v.x << r, (v.y << r) | (v.x >> (32u - r)), v.y >> (32u - r));
    }
    switch q {
        case 0u: {
            return vec4<u32>(t.x, t.y, t.z, 0u);
        }
        case 1u: {
            return vec4<u32>(0u, t.x, t.y, t.z);
        }
        case 2u: {
            return vec4<u32>(0u, 0u, t.x, t.y);
        }
        default: {
            return vec4<u32>(0u, 0u, 0u, t.x);
        }
    }
}

// acc + term at base B.
fn acc_add(acc: vec4<u32>, t: Term, base: i32) -> vec4<u32> {
    if (t.top == TOP_NONE) {
        return acc;
    }
    let v = shl128(t.m, t.e - base);
    return add128(acc, select(v, neg128(v), t.neg));
}

// Arithmetic shift right of a signed 128-bit integer by k (rounding toward −∞).
fn sar128(a: vec4<u32>, k: u32) -> vec4<u32> {
    let sign = select(0u, 0xffffffffu, (a.w >> 31u) == 1u);
    if (k >= 128u) {
        return vec4<u32>(sign);
    }
    var w = array<u32, 8>(a.x, a.y, a.z, a.w, sign, sign, sign, sign);
    let q = k / 32u;
    let r = k % 32u;
    var out = vec4<u32>(0u);
    for (var i = 0u; i < 4u; i++) {
        let lo = w[i + q];
        let hi = w[i + q + 1u];
        out[i] = select((lo >> r) | (hi << (32u - r)), lo, r == 0u);
    }
    return out;
}

// Bits k .. k + 31 of a non-negative 128-bit integer (k may be negative: zeros shifted in).
fn window(a: vec4<u32>, k: i32) -> u32 {
    if (k <= -32 || k >= 128) {
        return 0u;
    }
    if (k < 0) {
        return a.x << u32(-k);
    }
    var w = array<u32, 5>(a.x, a.y, a.z, a.w, 0u);
    let q = u32(k) / 32u;
    let r = u32(k) % 32u;
    return select((w[q] >> r) | (w[q + 1u] << (32u - r)), w[q], r == 0u);
}

// Whether any of the lowest n bits of a is set (0 ≤ n ≤ 128).
fn low_nonzero(a: vec4<u32>, n: i32) -> bool {
    var w = array<u32, 4>(a.x, a.y, a.z, a.w);
    var nz = false;
    for (var i = 0; i < 4; i++) {
        let lo = 32 * i;
        if (n >= lo + 32) {
            nz = nz || w[i] != 0u;
        } else if (n > lo) {
            nz = nz || (w[i] & ((1u << u32(n - lo)) - 1u)) != 0u;
        }
    }
    return nz;
}

fn lead_bit(a: vec4<u32>) -> i32 {
    if (a.w != 0u) {
        return 96 + i32(firstLeadingBit(a.w));
    }
    if (a.z != 0u) {
        return 64 + i32(firstLeadingBit(a.z));
    }
    if (a.y != 0u) {
        return 32 + i32(firstLeadingBit(a.y));
    }
    if (a.x != 0u) {
        return i32(firstLeadingBit(a.x));
    }
    return -1;
}

struct Rounded {
    bits: u32, // |RN(mag · 2^B)| as f32 bits (round to nearest, ties to even)
    mant: u32, // its significand
    k: i32,    // the bit of mag holding the significand's lowest bit
}

// Round mag · 2^B (mag ≥ 0) to f32; `sticky` tells that the exact value has more nonzero bits
// below mag's lowest one (a division remainder).
fn round_mag(mag: vec4<u32>, base: i32, sticky: bool) -> Rounded {
    var r: Rounded;
    r.bits = 0u;
    r.mant = 0u;
    r.k = 0;
    let p = lead_bit(mag);
    if (p < 0) {
        return r;
    }
    let e = p + base;
    if (e > 127) {
        r.bits = 0x7f800000u;
        return r;
    }
    let k = max(e - 23, -149) - base;
    var mant = window(mag, k);
    if (k >= 1) {
        let half = (window(mag, k - 1) & 1u) == 1u;
        if (half && (sticky || low_nonzero(mag, k - 1) || (mant & 1u) == 1u)) {
            mant = mant + 1u;
        }
    }
    r.bits = (u32(max(e + 126, 0)) << 23u) + mant;
    r.mant = mant;
    r.k = k;
    return r;
}

// (quotient low, quotient high, remainder) of the 64-bit n by d ≥ 1 (restoring division).
fn div64(n: vec2<u32>, d: u32) -> vec3<u32> {
    var q = vec2<u32>(0u, 0u);
    var rem = 0u;
    for (var i = 63; i >= 0; i--) {
        let word = select(n.x, n.y, i >= 32);
        let bit = (word >> (u32(i) % 32u)) & 1u;
        let carry = rem >> 31u;
        rem = (rem << 1u) | bit;
        if (carry == 1u || rem >= d) {
            rem = rem - d;
            if (i >= 32) {
                q.y = q.y | (1u << (u32(i) - 32u));
            } else {
                q.x = q.x | (1u << u32(i));
            }
        }
    }
    return vec3<u32>(q.x, q.y, rem);
}

// RN(acc · 2^B / d) for the sum acc · 2^B with flags and a count d ≥ 1: one rounding of the exact
// quotient (ties to even), as the CPU's f64 division then rounding to f32 but in near-ties.
fn fixed_quot(acc: vec4<u32>, base: i32, flags: u32, d: u32) -> f32 {
    if ((flags & 4u) != 0u || (flags & 3u) == 3u) {
        return bitcast<f32>(0x7fc00000u);
    }
    if (flags != 0u) {
        return bitcast<f32>(select(0x7f800000u, 0xff800000u, flags == 2u));
    }
    let neg = (acc.w >> 31u) == 1u;
    let mag = select(acc, neg128(acc), neg);
    let sgn = select(0u, 0x80000000u, neg);
    if (d == 1u) {
        return bitcast<f32>(round_mag(mag, base, false).bits | sgn);
    }
    let p = lead_bit(mag);
    if (p < 0) {
        return 0.0;
    }
    // The top 59 bits of mag (lead bit at 58), so the quotient by d < 2^32 keeps ≥ 27 bits;
    // the bits shifted out and the remainder only matter as "more below".
    let sh = p - 58;
    var n = vec2<u32>(0u, 0u);
    var sticky = false;
    if (sh > 0) {
        n = vec2<u32>(window(mag, sh), window(mag, sh + 32));
        sticky = low_nonzero(mag, sh);
    } else {
        n = shl128(mag.xy, -sh).xy;
    }
    let qr = div64(n, d);
    let r = round_mag(vec4<u32>(qr.x, qr.y, 0u, 0u), base + sh, sticky || qr.z != 0u);
    return bitcast<f32>(r.bits | sgn);
}

// Left shift of a 128-bit integer by k < 128 (the caller keeps the result below 2^127).
fn lsh128(a: vec4<u32>, k: u32) -> vec4<u32> {
    var w = array<u32, 8>(0u, 0u, 0u, 0u, a.x, a.y, a.z, a.w);
    let q = k / 32u;
    let r = k % 32u;
    var out = vec4<u32>(0u);
    for (var i = 0u; i < 4u; i++) {
        let hi = w[4u + i - q];
        let lo = w[3u + i - q];
        out[i] = select((hi << r) | (lo >> (32u - r)), hi, r == 0u);
    }
    return out;
}

// (hi, lo) with hi = RN(q) and lo = RN(q − hi) for q = acc · 2^B / d: the remainder
// acc − hi·d is formed exactly, at a base low enough to hold hi·d's lowest bit.
fn fixed_quot_pair(acc: vec4<u32>, base: i32, flags: u32, d: u32) -> vec2<f32> {
    let hi = fixed_quot(acc, base, flags, d);
    if (!is_finite(hi) || hi == 0.0) {
        return vec2<f32>(hi, 0.0);
    }
    let t = term_f32(hi);
    let nb = min(base, t.e);
    let pv = shl128(mul_wide(t.m.x, d), t.e - nb);
    let rem = add128(lsh128(acc, u32(base - nb)), select(neg128(pv), pv, t.neg));
    return vec2<f32>(hi, fixed_quot(rem, nb, 0u, d));
}

const WGN: u32 = 256u;
var<workgroup> WQ: array<vec4<u32>, 256>;

// Sum of one 128-bit integer per invocation over the workgroup; every invocation gets it.
fn wg_add128(lid: u32, v: vec4<u32>) -> vec4<u32> {
    WQ[lid] = v;
    workgroupBarrier();
    for (var s = WGN / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            WQ[lid] = add128(WQ[lid], WQ[lid + s]);
        }
        workgroupBarrier();
    }
    let r = WQ[0];
    workgroupBarrier();
    return r;
}

// (max of top, OR of flags) over the workgroup; every invocation gets it.
fn wg_top_flags(lid: u32, top: i32, flags: u32) -> vec2<u32> {
    WQ[lid] = vec4<u32>(bitcast<u32>(top), flags, 0u, 0u);
    workgroupBarrier();
    for (var s = WGN / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            let a = WQ[lid];
            let b = WQ[lid + s];
            WQ[lid] = vec4<u32>(bitcast<u32>(max(bitcast<i32>(a.x), bitcast<i32>(b.x))), a.y | b.y, 0u, 0u);
        }
        workgroupBarrier();
    }
    let r = WQ[0].xy;
    workgroupBarrier();
    return r;
}
