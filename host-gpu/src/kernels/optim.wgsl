// The optimizer update of one parameter tensor (sim::OptimStep; the host definition is
// sim/src/cpu/optim.rs). Bindings: 1 = p, 2 = g, 3 = buf1 in, 4 = buf2 in, 5 = p out,
// 6 = buf1 out, 7 = buf2 out.
@group(0) @binding(1) var<storage, read> PIN: array<f32>;
@group(0) @binding(2) var<storage, read> G: array<f32>;
@group(0) @binding(3) var<storage, read> B1IN: array<f32>;
@group(0) @binding(4) var<storage, read> B2IN: array<f32>;
@group(0) @binding(5) var<storage, read_write> POUT: array<f32>;
@group(0) @binding(6) var<storage, read_write> B1OUT: array<f32>;
@group(0) @binding(7) var<storage, read_write> B2OUT: array<f32>;

// SGD. P: [n, lr, wd, momentum, has_buf1]; without momentum binding 6 is unused.
@compute @workgroup_size(256)
fn sgd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= pu(0u)) { return; }
    let lr = pf(1u);
    let wd = pf(2u);
    let momentum = pf(3u);
    let p = PIN[i];
    var d = G[i];
    if (wd != 0.0) { d = d + wd * p; }
    if (momentum != 0.0) {
        var b = d;
        if (pu(4u) != 0u) { b = momentum * B1IN[i] + d; }
        B1OUT[i] = b;
        d = b;
    }
    POUT[i] = p - lr * d;
}

// Adam. P: [n, lr, wd, beta1, beta2, eps, bc1, bc2, has_bufs]
@compute @workgroup_size(256)
fn adam(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= pu(0u)) { return; }
    let lr = pf(1u);
    let wd = pf(2u);
    let beta1 = pf(3u);
    let beta2 = pf(4u);
    let eps = pf(5u);
    let bc1 = pf(6u);
    let bc2 = pf(7u);
    let p = PIN[i];
    var d = G[i];
    if (wd != 0.0) { d = d + wd * p; }
    var m = 0.0;
    var v = 0.0;
    if (pu(8u) != 0u) { m = B1IN[i]; v = B2IN[i]; }
    m = beta1 * m + (1.0 - beta1) * d;
    v = beta2 * v + (1.0 - beta2) * d * d;
    B1OUT[i] = m;
    B2OUT[i] = v;
    POUT[i] = p - (lr / bc1) * m / (sqrt(v / bc2) + eps);
}
