//! Run-time CPU feature checks for the few hot element loops compiled twice (baseline and AVX2).
//! Both builds perform the same IEEE operations in the same order (Rust never fuses a·b + c into an
//! FMA on its own), so results are bit-identical whichever runs.

/// Whether the CPU has AVX2 and FMA (cached by the standard library after the first call).
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Whether the CPU has AVX2 and FMA (never on other architectures).
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub fn has_avx2_fma() -> bool {
    false
}

/// Whether the CPU has AVX-512 F, VL and DQ (cached by the standard library after the first call).
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && has_avx2_fma()
}

/// Whether the CPU has AVX-512 (never on other architectures).
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub fn has_avx512() -> bool {
    false
}

/// Whether the CPU has AVX-512 F, VL, DQ and BW (and AVX2 + FMA).
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn has_avx512_bw() -> bool {
    has_avx512() && std::arch::is_x86_feature_detected!("avx512bw")
}

/// Whether the CPU has AVX-512 BW (never on other architectures).
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub fn has_avx512_bw() -> bool {
    false
}

/// Whether the CPU has AES-NI, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn has_aes_avx2() -> bool {
    std::arch::is_x86_feature_detected!("aes") && has_avx2_fma()
}

/// Whether the CPU has AES-NI (never on other architectures).
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub fn has_aes_avx2() -> bool {
    false
}

/// Whether the CPU has VAES, AES-NI and AVX-512 F/VL/DQ/BW.
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn has_vaes_avx512() -> bool {
    std::arch::is_x86_feature_detected!("vaes") && has_aes_avx2() && has_avx512_bw()
}

/// Whether the CPU has VAES (never on other architectures).
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub fn has_vaes_avx512() -> bool {
    false
}
