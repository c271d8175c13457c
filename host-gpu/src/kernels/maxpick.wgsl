// The max-pooling comparison shared by pool.wgsl's max_pool and winograd.wgsl's fused pooling
// (prepended to both): the rule of sim/src/cpu/pool.rs on f32 bits, so ties and NaN go the CPU's
// way whatever the driver does with NaN or subnormals.

fn is_nan_bits(b: u32) -> bool {
    return (b & 0x7fffffffu) > 0x7f800000u;
}

// An order key of f32 bits: x < y as floats ⟺ key(x) < key(y), with −0 and +0 equal.
fn order_key(b: u32) -> u32 {
    if ((b & 0x7fffffffu) == 0u) {
        return 0x80000000u;
    }
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

// Whether value v replaces the window's best so far (start: −∞, bits 0xff800000, at the window's
// first position): when greater, or when NaN (then the last NaN of the window wins).
fn max_takes(v: u32, best: u32, best_nan: bool) -> bool {
    return is_nan_bits(v) || (!best_nan && order_key(v) > order_key(best));
}
