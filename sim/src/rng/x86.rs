//! x86 kernels of the random streams: the bulk normal generator ([`super::ars`]) with AES-NI and
//! VAES (the same bits as its software round), and, kept for A/B benchmarks of the former Philox
//! bulk normals, a hand-written AVX-512 Philox4x32-10 (the same integer arithmetic as
//! [`super::philox4x32`], so the same bits).

use super::ars::{ARS_ROUNDS, WEYL_HI, WEYL_LO};
use std::arch::x86_64::*;

const M0: i32 = 0xD251_1F53u32 as i32;
const M1: i32 = 0xCD9E_8D57u32 as i32;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox4x32-10 on the 32 blocks `blk .. blk + 32` (counter `(block lo, block hi, tag, lane)`,
/// `key`), written to `c[word][j]` (the layout of `philox4x32_lanes`).
///
/// Each 64-bit lane holds one 32-bit word of one block in its low half (8 blocks per register, 4
/// groups): `_mm512_mul_epu32` gives the full 64-bit product whose low half is the product's low
/// word in place, and one shift brings its high word down. The high halves of the lanes carry
/// garbage that never reaches a low half (only xors and the multiplier's low-half reads follow).
#[inline]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
pub(super) fn philox_blocks_32(
    blk: u64,
    tag: u32,
    lane: u32,
    key: [u32; 2],
    c: &mut [[u32; 32]; 4],
) {
    const G: usize = 4;
    let m0 = _mm512_set1_epi64(M0 as u32 as i64);
    let m1 = _mm512_set1_epi64(M1 as u32 as i64);
    let t = _mm512_set1_epi64(tag as i64);
    let l = _mm512_set1_epi64(lane as i64);
    let iota = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
    let mut s = [[iota; 4]; G];
    for (g, sg) in s.iter_mut().enumerate() {
        let b = _mm512_add_epi64(
            _mm512_set1_epi64(blk.wrapping_add(8 * g as u64) as i64),
            iota,
        );
        *sg = [b, _mm512_srli_epi64::<32>(b), t, l];
    }
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(W0);
            k[1] = k[1].wrapping_add(W1);
        }
        let k0 = _mm512_set1_epi64(k[0] as i64);
        let k1 = _mm512_set1_epi64(k[1] as i64);
        for sg in s.iter_mut() {
            let [c0, c1, c2, c3] = *sg;
            let p0 = _mm512_mul_epu32(c0, m0);
            let p1 = _mm512_mul_epu32(c2, m1);
            let n0 = _mm512_ternarylogic_epi64::<0x96>(_mm512_srli_epi64::<32>(p1), c1, k0);
            let n2 = _mm512_ternarylogic_epi64::<0x96>(_mm512_srli_epi64::<32>(p0), c3, k1);
            *sg = [n0, p1, n2, p0];
        }
    }
    for (g, sg) in s.iter().enumerate() {
        for (w, cw) in c.iter_mut().enumerate() {
            // SAFETY: cw holds 32 u32; this stores 8 of them at 8g.
            unsafe {
                _mm256_storeu_si256(
                    cw.as_mut_ptr().add(8 * g).cast(),
                    _mm512_cvtepi64_epi32(sg[w]),
                )
            };
        }
    }
}

/// One block of the bulk normal generator ([`super::ars`]) with AES-NI.
#[inline]
#[target_feature(enable = "aes,sse2")]
pub(super) fn ars_block_aesni(ctr: [u64; 2], key: [u64; 2]) -> [u32; 4] {
    let w = _mm_set_epi64x(WEYL_HI as i64, WEYL_LO as i64);
    let mut k = _mm_set_epi64x(key[1] as i64, key[0] as i64);
    let mut v = _mm_xor_si128(_mm_set_epi64x(ctr[1] as i64, ctr[0] as i64), k);
    for _ in 1..ARS_ROUNDS {
        k = _mm_add_epi64(k, w);
        v = _mm_aesenc_si128(v, k);
    }
    k = _mm_add_epi64(k, w);
    v = _mm_aesenclast_si128(v, k);
    let mut o = [0u32; 4];
    // SAFETY: o holds 16 bytes.
    unsafe { _mm_storeu_si128(o.as_mut_ptr().cast(), v) };
    o
}

/// The whitening key and the round keys k₁ … k₇ of `key`, each broadcast to four 128-bit lanes.
#[inline]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma,aes,vaes")]
pub(super) fn round_keys_512(key: [u64; 2]) -> [__m512i; ARS_ROUNDS + 1] {
    let w = _mm512_broadcast_i32x4(_mm_set_epi64x(WEYL_HI as i64, WEYL_LO as i64));
    let mut k = _mm512_broadcast_i32x4(_mm_set_epi64x(key[1] as i64, key[0] as i64));
    let mut r = [k; ARS_ROUNDS + 1];
    for rk in r.iter_mut().skip(1) {
        k = _mm512_add_epi64(k, w);
        *rk = k;
    }
    r
}

/// The 32 blocks with counters `(ctr[0] + j, ctr[1])`, j < 32, of the bulk normal generator with
/// VAES (four blocks per 512-bit register, eight registers in flight); `x[4j + w]` = word w of
/// block j. `rk` from [`round_keys_512`].
#[inline]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma,aes,vaes")]
pub(super) fn ars_blocks_32_vaes(
    ctr: [u64; 2],
    rk: &[__m512i; ARS_ROUNDS + 1],
    x: &mut [u32; 128],
) {
    let (lo, hi) = (ctr[0] as i64, ctr[1] as i64);
    let base = _mm512_setr_epi64(lo, hi, lo, hi, lo, hi, lo, hi);
    let mut v: [__m512i; 8] = std::array::from_fn(|g| {
        let j = 4 * g as i64;
        let inc = _mm512_setr_epi64(j, 0, j + 1, 0, j + 2, 0, j + 3, 0);
        _mm512_xor_si512(_mm512_add_epi64(base, inc), rk[0])
    });
    for r in rk.iter().take(ARS_ROUNDS).skip(1) {
        for vg in v.iter_mut() {
            *vg = _mm512_aesenc_epi128(*vg, *r);
        }
    }
    for (g, vg) in v.iter().enumerate() {
        let o = _mm512_aesenclast_epi128(*vg, rk[ARS_ROUNDS]);
        // SAFETY: x holds 128 u32; this stores 16 of them at 16g.
        unsafe { _mm512_storeu_si512(x.as_mut_ptr().add(16 * g).cast(), o) };
    }
}
