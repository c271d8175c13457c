//! x86 kernels of the random streams: the bulk normal generator ([`super::ars`]) with AES-NI and
//! VAES (the same bits as its software round).

use super::ars::{ARS_ROUNDS, WEYL_HI, WEYL_LO};
use std::arch::x86_64::*;

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
