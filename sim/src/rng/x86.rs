//! Hand-written AVX-512 kernels for [`super::Stream::fill_normal_fast`]: Philox4x32-10 on 16
//! counters per 512-bit register (one 32-bit word of 16 blocks per register). The same integer
//! arithmetic as [`super::philox4x32`], so the same bits.

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
