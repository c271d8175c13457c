// The crossbar read of one input block (entries `dac_rows`, then the block GEMMs of ops/gemm, then
// `adc_tiles`; one round per block, in block order) and the store of the summed outputs in the
// read's layout (entry `store`); the semantics are sim::analog / sim::cpu::xbar's. `dac_rows`: one
// workgroup per input vector gathers its block slice (a dense row, a conv patch, or a position's
// C_out vector), takes the noise-management scale α and converts x/α through the DAC with its
// noise. The GEMMs give the tile sums and the per-read noise variances. `adc_tiles`: one workgroup
// per (input vector, output tile) adds the per-read noise and the ADC noise in one Gaussian,
// converts, and, while a converted output saturates and r < last_r, re-reads the vector alone with
// r doubled (iterative bound management: its own DAC, sums and draws, in the workgroup). The
// converted outputs times r·α go to ACC[row, o] (written by the first block, added by the others).
// Draws are Philox normals of the same streams and indices as the CPU's (identical law, not
// identical bits).
//
// W and S2 are the block's weights and per-read noise variances, output-major: [n_out, nb].
//
// P (dac_rows, adc_tiles): [0] rows, [1] n_in, [2] n_out, [3] lo, [4] nb, [5] tiles, [6] first, [7] kind
// (0 dense, 1 conv forward, 2 conv transposed), [8..20) geometry n c h w kh kw sh sw ph pw ho wo,
// [20] nm (0 none, 1 abs-max, 2 constant), [21] nm_thres (f32), [22] has DAC, [23..28) DAC bound,
// step, 1/step, quantizes, noise, [28] has ADC, [29..34) ADC bound, step, 1/step, quantizes,
// noise, [34] saturation bound, [35] last_r, [36] has s2, [37..) tiles (o0, o1), then per
// bound-management round (log2 last_r + 1 of them) the DAC stream and the noise stream (key0,
// key1, lane each).
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> W: array<f32>;
@group(0) @binding(3) var<storage, read> S2: array<f32>;
@group(0) @binding(4) var<storage, read_write> ACC: array<f32>;
@group(0) @binding(5) var<storage, read_write> TALLY: array<atomic<u32>>;

const XWG: u32 = 64u;
// The largest block slice and output tile a workgroup holds (larger reads run on the host).
const XMAX: u32 = 1024u;

var<workgroup> XS: array<f32, 1024>;
var<workgroup> XQ: array<f32, 1024>;
var<workgroup> QS: array<f32, 1024>;
var<workgroup> RED: array<f32, 64>;
// Normal draws of the round, by position in the block slice (DAC) or the tile (before the ADC).
var<workgroup> NZ: array<f32, 1024>;

// Draws first .. first + count (count ≤ XMAX) of the stream (key, lane) into NZ[0..count): one
// Philox block gives four normals, so the workgroup evaluates each block once.
fn fill_normals(key: vec2<u32>, lane: u32, first: u32, count: u32, lid: u32) {
    workgroupBarrier();
    let b0 = first >> 2u;
    let b1 = (first + count + 3u) >> 2u;
    for (var blk = b0 + lid; blk < b1; blk += XWG) {
        let b = philox(vec4<u32>(blk, 0u, 0x55000002u, lane), key);
        let r0 = sqrt(-2.0 * ln_acc(unit(b.x)));
        let r1 = sqrt(-2.0 * ln_acc(unit(b.z)));
        let cs0 = sincos_turns(unit(b.y));
        let cs1 = sincos_turns(unit(b.w));
        let v = vec4<f32>(r0 * cs0.x, r0 * cs0.y, r1 * cs1.x, r1 * cs1.y);
        for (var j = 0u; j < 4u; j++) {
            let i = blk * 4u + j;
            if (i >= first && i < first + count) {
                NZ[i - first] = v[j];
            }
        }
    }
    workgroupBarrier();
}

// A converter's curve (sim::analog::Curve::convert): clip to ±bound, round x/step to the nearest
// level (halves away from zero) when it quantizes.
fn convert(x: f32, at: u32) -> f32 {
    let b = pf(at);
    let xc = min(max(x, -b), b);
    if (pu(at + 3u) == 0u) {
        return xc;
    }
    let v = xc * pf(at + 2u);
    var r = round(v);
    if (abs(v - r) == 0.5) {
        r = v + select(-0.5, 0.5, v >= 0.0);
    }
    return r * pf(at + 1u);
}

// Element k of the block slice of input vector `row`.
fn slice_at(row: u32, k: u32) -> f32 {
    let kind = pu(7u);
    let kk = pu(3u) + k;
    if (kind == 0u) {
        return X[row * pu(1u) + kk];
    }
    let p = pu(18u) * pu(19u);
    let n = row / p;
    let pos = row % p;
    if (kind == 2u) {
        // The C_out vector of position pos: X is [n, n_in, ho, wo].
        return X[(n * pu(1u) + kk) * p + pos];
    }
    // The K-patch of position pos: X is [n, c, h, w], K ordered (c, i, j).
    let kh = pu(12u);
    let kw = pu(13u);
    let c = kk / (kh * kw);
    let i = (kk / kw) % kh;
    let j = kk % kw;
    let ih = i32((pos / pu(19u)) * pu(14u) + i) - i32(pu(16u));
    let iw = i32((pos % pu(19u)) * pu(15u) + j) - i32(pu(17u));
    if (ih < 0 || iw < 0 || ih >= i32(pu(10u)) || iw >= i32(pu(11u))) {
        return 0.0;
    }
    return X[((n * pu(9u) + c) * pu(10u) + u32(ih)) * pu(11u) + u32(iw)];
}

// Reduce RED over the workgroup: the sum (op 0) or the maximum (op 1); every invocation gets it.
fn reduce(lid: u32, v: f32, op: u32) -> f32 {
    workgroupBarrier();
    RED[lid] = v;
    workgroupBarrier();
    for (var s = XWG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            RED[lid] = select(RED[lid] + RED[lid + s], max(RED[lid], RED[lid + s]), op == 1u);
        }
        workgroupBarrier();
    }
    // A uniform value (the loops of bound management branch on it).
    return workgroupUniformLoad(&RED[0]);
}

// Add v to the 64-bit counter at words (at, at + 1).
fn tally(at: u32, v: u32) {
    if (v == 0u) {
        return;
    }
    let old = atomicAdd(&TALLY[at], v);
    if (old + v < old) {
        atomicAdd(&TALLY[at + 1u], 1u);
    }
}

// The block slice of input vector `row` into XS and its noise-management scale α (0: an all-zero
// slice, which reads exactly zero with a noise-free DAC). Uniform.
fn gather(row: u32, lid: u32) -> f32 {
    let nb = pu(4u);
    var amax = 0.0;
    for (var k = lid; k < nb; k += XWG) {
        let v = slice_at(row, k);
        XS[k] = v;
        amax = max(amax, abs(v));
    }
    amax = reduce(lid, amax, 1u);
    var alpha = 1.0;
    let nm = pu(20u);
    let thres = pf(21u);
    if (nm == 1u) {
        alpha = select(amax, min(amax, thres), thres > 0.0);
    } else if (nm == 2u) {
        alpha = select(1.0, thres, thres > 0.0);
    }
    if (nm != 0u && alpha == 0.0 && dac_noise() > 0.0) {
        alpha = 1.0;
    }
    return alpha;
}

fn dac_noise() -> f32 {
    return select(0.0, pf(27u), pu(22u) == 1u);
}

// The DAC of XS/(α·red) into XQ with the draws of round `rnd`; returns Σ XQ² (uniform).
fn dac(row: u32, alpha: f32, red: u32, rnd: u32, lid: u32) -> f32 {
    let nb = pu(4u);
    let at = 37u + 2u * pu(5u) + 6u * rnd;
    let scale = alpha * f32(red);
    let sigma = dac_noise();
    if (sigma > 0.0) {
        fill_normals(vec2<u32>(pu(at), pu(at + 1u)), pu(at + 2u), row * pu(1u) + pu(3u), nb, lid);
    }
    var ss = 0.0;
    for (var k = lid; k < nb; k += XWG) {
        var v = XS[k] / scale;
        if (pu(22u) == 1u) {
            if (sigma > 0.0) {
                v = v + sigma * NZ[k];
            }
            v = convert(v, 23u);
        }
        XQ[k] = v;
        ss += v * v;
    }
    return reduce(lid, ss, 0u);
}

// One read's Σ x² in the tally's fixed point.
fn fixed_sumsq(ss: f32) -> u32 {
    return u32(round(min(ss * 65536.0, 4.0e9)));
}

// P: see the top; the dispatch's items are the input vectors (rows).
@group(0) @binding(10) var<storage, read_write> ALPHA: array<f32>;
@group(0) @binding(11) var<storage, read_write> SS: array<f32>;
@group(0) @binding(12) var<storage, read_write> XQO: array<f32>;

// Round 0's DAC of every input vector: XQO [rows, nb] (zeros for a vector that reads zero), its
// scale α (ALPHA) and Σ x² (SS), for the block GEMMs that follow.
@compute @workgroup_size(64)
fn dac_rows(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = item_index(wg, nwg);
    if (row >= pu(0u)) {
        return;
    }
    let nb = pu(4u);
    let alpha = gather(row, lid);
    var ss = 0.0;
    if (alpha == 0.0) {
        for (var k = lid; k < nb; k += XWG) {
            XQ[k] = 0.0;
        }
    } else {
        ss = dac(row, alpha, 1u, 0u, lid);
    }
    workgroupBarrier();
    for (var k = lid; k < nb; k += XWG) {
        XQO[row * nb + k] = XQ[k];
    }
    if (lid == 0u) {
        ALPHA[row] = alpha;
        SS[row] = ss;
    }
}

// The pre-ADC sums of round 0 (the block GEMMs of XQO: Y = XQO·Wᵀ, V = (XQO²)·S2ᵀ), [rows, n_out].
@group(0) @binding(8) var<storage, read> Y: array<f32>;
@group(0) @binding(9) var<storage, read> V: array<f32>;

// Per (input vector, output tile): noise and ADC of round 0's sums, then while a converted output
// saturates and r < last_r, the vector re-read alone with r doubled (its own DAC, sums and
// draws); the converted outputs times r·α into ACC.
@compute @workgroup_size(64)
fn adc_tiles(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let item = item_index(wg, nwg);
    let tiles = pu(5u);
    if (item >= pu(0u) * tiles) {
        return;
    }
    let row = item / tiles;
    let tile = item % tiles;
    let o0 = pu(37u + 2u * tile);
    let o1 = pu(38u + 2u * tile);
    let nb = pu(4u);
    let n_out = pu(2u);
    let first = pu(6u) == 1u;
    let streams = 37u + 2u * tiles;
    // α ≥ 0 is the same for every invocation; the reduction makes it uniform.
    var alpha = reduce(lid, ALPHA[row], 1u);
    if (alpha == 0.0) {
        if (first) {
            for (var o = o0 + lid; o < o1; o += XWG) {
                ACC[row * n_out + o] = 0.0;
            }
        }
        return;
    }
    let has_adc = pu(28u) == 1u;
    let adc_noise = select(0.0, pf(33u), has_adc);
    let has_s2 = pu(36u) == 1u;
    let noisy = adc_noise > 0.0 || has_s2;
    let last_r = pu(35u);
    var red = 1u;
    var rnd = 0u;
    var sumsq = fixed_sumsq(SS[row]);
    loop {
        let at = streams + 6u * rnd;
        if (noisy) {
            fill_normals(vec2<u32>(pu(at + 3u), pu(at + 4u)), pu(at + 5u), row * n_out + o0, o1 - o0, lid);
        }
        var peak = 0.0;
        for (var o = o0 + lid; o < o1; o += XWG) {
            var y = 0.0;
            var var_ = 0.0;
            if (rnd == 0u) {
                y = Y[row * n_out + o];
                if (has_s2) {
                    var_ = V[row * n_out + o];
                }
            } else {
                // A re-read: the block's weights [n_out, nb] on its own reduced inputs.
                for (var k = 0u; k < nb; k++) {
                    let x = XQ[k];
                    y += W[o * nb + k] * x;
                    if (has_s2) {
                        var_ += S2[o * nb + k] * x * x;
                    }
                }
            }
            var p = y;
            if (noisy) {
                let sd = select(adc_noise, sqrt(max(var_, 0.0) + adc_noise * adc_noise), has_s2);
                p = y + sd * NZ[o - o0];
            }
            peak = max(peak, abs(p));
            QS[o - o0] = select(p, convert(p, 29u), has_adc);
        }
        peak = reduce(lid, peak, 1u);
        let sat = has_adc && last_r > 1u && peak > pf(34u);
        if (!sat || red >= last_r) {
            break;
        }
        if (rnd == 0u) {
            alpha = gather(row, lid);
        }
        red = red * 2u;
        rnd += 1u;
        sumsq += fixed_sumsq(dac(row, alpha, red, rnd, lid));
    }
    let r = f32(red);
    for (var o = o0 + lid; o < o1; o += XWG) {
        let v = (QS[o - o0] * r) * alpha;
        let at = row * n_out + o;
        ACC[at] = select(ACC[at] + v, v, first);
    }
    if (lid == 0u) {
        tally(0u, rnd + 1u);
        tally(2u, rnd);
        tally(4u, sumsq);
    }
}

// P (store): [0] count, [1] n_out, [2] kind, [3..15) geometry, [15] wmax (f32), [16] has bias.
// Output element t: dense [rows, n_out] and conv forward [n, n_out, ho, wo] as ACC·wmax + bias;
// conv transposed [n, c, h, w] as the sum over the patches covering it, times wmax.
@group(0) @binding(6) var<storage, read> BIAS: array<f32>;
@group(0) @binding(7) var<storage, read_write> OUT: array<f32>;

@compute @workgroup_size(256)
fn store(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = flat_index(gid, nwg);
    if (t >= pu(0u)) {
        return;
    }
    let n_out = pu(1u);
    let kind = pu(2u);
    let wmax = pf(15u);
    let has_bias = pu(16u) == 1u;
    if (kind == 0u) {
        let v = ACC[t] * wmax;
        OUT[t] = select(v, v + BIAS[t % n_out], has_bias);
        return;
    }
    let p = pu(13u) * pu(14u);
    if (kind == 1u) {
        let pos = t % p;
        let o = (t / p) % n_out;
        let n = t / (p * n_out);
        let v = ACC[(n * p + pos) * n_out + o] * wmax;
        OUT[t] = select(v, v + BIAS[o], has_bias);
        return;
    }
    // Transposed: t = ((n·c + ch)·h + ih)·w + iw.
    let c = pu(4u);
    let h = pu(5u);
    let w = pu(6u);
    let kh = pu(7u);
    let kw = pu(8u);
    let iw = t % w;
    let ih = (t / w) % h;
    let ch = (t / (w * h)) % c;
    let n = t / (w * h * c);
    var acc = 0.0;
    for (var i = 0u; i < kh; i++) {
        let a = i32(ih + pu(11u)) - i32(i);
        if (a < 0 || a % i32(pu(9u)) != 0) {
            continue;
        }
        let oh = u32(a) / pu(9u);
        if (oh >= pu(13u)) {
            continue;
        }
        for (var j = 0u; j < kw; j++) {
            let b = i32(iw + pu(12u)) - i32(j);
            if (b < 0 || b % i32(pu(10u)) != 0) {
                continue;
            }
            let ow = u32(b) / pu(10u);
            if (ow >= pu(14u)) {
                continue;
            }
            acc += ACC[(n * p + oh * pu(14u) + ow) * n_out + (ch * kh + i) * kw + j];
        }
    }
    OUT[t] = acc * wmax;
}
