// Element maps and their gradients, binary ops, fills and the bias add along an axis.
// Bindings: 1 = a, 2 = b, 3 = out.
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> OUT: array<f32>;

// Activation codes (match `ops::elementwise::act_code`): 0 identity, 1 hard_sigmoid,
// 2 my_hard_sig, 3 my_sigmoid, 4 relu, 5 gelu, 6 clamp(lo, hi).
fn erf_approx(x: f32) -> f32 {
    // erf through the Numerical Recipes Chebyshev fit of erfc (fractional error < 1.2e-7);
    // the CPU uses libm's erff, so GELU agrees to a few ulps, well inside the parity bars.
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
        t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
        t * (-0.82215223 + t * 0.17087277)))))))));
    return select(r - 1.0, 1.0 - r, x >= 0.0);
}

// NaN test on the bits: float comparisons with NaN may be folded away by shader compilers.
fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

// The scalar definitions of sim::Act::f, NaN included (WGSL's clamp/min/max leave NaN
// undefined): the hard sigmoids pass NaN through (as Rust's f32::clamp), relu maps it to 0 and
// clamp to lo (as f32::max then f32::min).
fn act_f(code: u32, x: f32, lo: f32, hi: f32) -> f32 {
    if (is_nan(x)) {
        switch code {
            case 4u: { return 0.0; }
            case 6u: { return lo; }
            default: { return x; }
        }
    }
    switch code {
        case 0u: { return x; }
        case 1u: { return (1.0 + clamp(2.0 * x - 1.0, -1.0, 1.0)) * 0.5; }
        case 2u: { return (1.0 + clamp(x - 1.0, -1.0, 1.0)) * 0.5; }
        case 3u: { return 1.0 / (1.0 + exp(-4.0 * (x - 0.5))); }
        case 4u: { return select(0.0, x, x > 0.0); }
        case 5u: { return 0.5 * x * (1.0 + erf_approx(x * 0.70710678)); }
        default: { return min(max(x, lo), hi); }
    }
}

fn act_df(code: u32, x: f32, lo: f32, hi: f32) -> f32 {
    switch code {
        case 0u: { return 1.0; }
        case 1u: { return select(0.0, 1.0, x > 0.0 && x < 1.0); }
        case 2u: { return select(0.0, 0.5, x > 0.0 && x < 2.0); }
        case 3u: { let s = 1.0 / (1.0 + exp(-4.0 * (x - 0.5))); return 4.0 * s * (1.0 - s); }
        case 4u: { return select(0.0, 1.0, x > 0.0); }
        case 5u: {
            let cdf = 0.5 * (1.0 + erf_approx(x * 0.70710678));
            let pdf = exp(-0.5 * x * x) * 0.3989423;
            return cdf + x * pdf;
        }
        default: { return select(0.0, 1.0, x > lo && x < hi); }
    }
}

// P: [n, code, lo, hi]
@compute @workgroup_size(256)
fn map(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= pu(0u)) { return; }
    OUT[i] = act_f(pu(1u), A[i], pf(2u), pf(3u));
}

// out = act(a + b), the sum rounded to f32 first, as add then map.  P: [n, code, lo, hi]
@compute @workgroup_size(256)
fn add_map(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= pu(0u)) { return; }
    OUT[i] = act_f(pu(1u), A[i] + B[i], pf(2u), pf(3u));
}

// out = b * act'(a).  P: [n, code, lo, hi]
@compute @workgroup_size(256)
fn map_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= pu(0u)) { return; }
    OUT[i] = B[i] * act_df(pu(1u), A[i], pf(2u), pf(3u));
}

// out = alpha * a + beta * b (beta = 1: axpy and add; -1: sub).  P: [n, alpha, beta]
@compute @workgroup_size(256)
fn lincomb(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= pu(0u)) { return; }
    let alpha = pf(1u);
    let beta = pf(2u);
    if (alpha == 1.0 && beta == 1.0) {
        OUT[i] = A[i] + B[i];
    } else if (alpha == 1.0 && beta == -1.0) {
        OUT[i] = A[i] - B[i];
    } else {
        OUT[i] = alpha * A[i] + beta * B[i];
    }
}

// out = alpha * a.  P: [n, alpha]
@compute @workgroup_size(256)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= pu(0u)) { return; }
    OUT[i] = pf(1u) * A[i];
}

// out = a * b.  P: [n]
@compute @workgroup_size(256)
fn mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= pu(0u)) { return; }
    OUT[i] = A[i] * B[i];
}

// out = value.  P: [n, value]
@compute @workgroup_size(256)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= pu(0u)) { return; }
    OUT[i] = pf(1u);
}

// out[o, j, r] = a[o, j, r] + b[j] (x viewed as [outer, len, inner]).  P: [n, len, inner]
@compute @workgroup_size(256)
fn add_along(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= pu(0u)) { return; }
    let j = (i / pu(2u)) % pu(1u);
    OUT[i] = A[i] + B[j];
}
