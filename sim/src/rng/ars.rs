//! The counter-based generator behind [`super::Stream::normal_fast`] and
//! [`super::Stream::fill_normal_fast`]: ARS ("AES Random Stream", Salmon, Moraes, Dror, Shaw 2011,
//! "Parallel random numbers: as easy as 1, 2, 3"; the `ars4x32` generator of their Random123
//! library), a keyed AES-round permutation of a 128-bit counter, with 7 rounds (ARS-7). The block
//! function below reproduces Random123's ars4x32 known-answer vectors for 10 rounds (the only
//! round count whose vectors were checked, see the tests; 7 rounds is the same construction with
//! fewer rounds). How a [`super::Stream`] and an index map to counter and key is this crate's own.
//!
//! One block, for a 128-bit counter `ctr` and key `k` (both as two little-endian u64 halves; byte
//! `b` of the 16-byte AES state is byte `b` of `lo ‖ hi` in little-endian order, the layout of an
//! x86 `__m128i`):
//!
//! ```text
//! v  = ctr ⊕ k
//! k₁ = k + W, v = AESENC(v, k₁), … , k₆ = k₅ + W, v = AESENC(v, k₆)       (6 full rounds)
//! k₇ = k₆ + W, v = AESENCLAST(v, k₇)                                          (7th round)
//! ```
//!
//! with the Weyl increment `W = (lo 0x9E3779B97F4A7C15, hi 0xBB67AE8584CAA73B)` added per 64-bit
//! half (wrapping), `AESENC(s, r) = MixColumns(ShiftRows(SubBytes(s))) ⊕ r` and `AESENCLAST` the
//! same without MixColumns (FIPS-197 round functions, exactly what the x86 `aesenc`/`aesenclast`
//! instructions compute). Seven rounds is Random123's default for ARS; its authors found fewer
//! rounds (5) already Crush-resistant (TestU01 BigCrush), so 7 leaves a safety margin. The output
//! block is read as four little-endian u32 words.
//!
//! This module is the portable reference: a byte-wise software AES round (S-box computed from
//! its definition, ShiftRows, MixColumns), usable on any CPU and easy to port to a GPU, and the
//! same round table-driven on u32 columns for the portable generator path. The x86
//! module evaluates the same function with AES-NI (one block per instruction) or VAES (four).

/// Rounds of the generator (ARS-7).
pub const ARS_ROUNDS: usize = 7;
/// The Weyl increment of the round keys, low 64-bit half.
pub const WEYL_LO: u64 = 0x9E37_79B9_7F4A_7C15;
/// The Weyl increment of the round keys, high 64-bit half.
pub const WEYL_HI: u64 = 0xBB67_AE85_84CA_A73B;

/// Multiplication by x (= 2) in GF(2⁸) modulo the AES polynomial x⁸ + x⁴ + x³ + x + 1.
#[inline(always)]
const fn xtime(a: u8) -> u8 {
    (a << 1) ^ if a & 0x80 != 0 { 0x1b } else { 0 }
}

/// Product in GF(2⁸).
const fn gmul(mut a: u8, mut b: u8) -> u8 {
    let mut p = 0u8;
    while b != 0 {
        if b & 1 != 0 {
            p ^= a;
        }
        a = xtime(a);
        b >>= 1;
    }
    p
}

/// The AES S-box from its definition (FIPS-197 §5.1.1): the multiplicative inverse in GF(2⁸)
/// (0 ↦ 0) followed by the affine map b ⊕ rotl(b,1) ⊕ rotl(b,2) ⊕ rotl(b,3) ⊕ rotl(b,4) ⊕ 0x63.
const fn make_sbox() -> [u8; 256] {
    let mut s = [0u8; 256];
    let mut x = 0usize;
    while x < 256 {
        // x⁻¹ = x²⁵⁴ (x²⁵⁵ = 1 for x ≠ 0; 0²⁵⁴ = 0).
        let mut inv = 1u8;
        let mut k = 0;
        while k < 254 {
            inv = gmul(inv, x as u8);
            k += 1;
        }
        if x == 0 {
            inv = 0;
        }
        s[x] = inv
            ^ inv.rotate_left(1)
            ^ inv.rotate_left(2)
            ^ inv.rotate_left(3)
            ^ inv.rotate_left(4)
            ^ 0x63;
        x += 1;
    }
    s
}

/// The AES S-box.
pub static SBOX: [u8; 256] = make_sbox();

/// One AES encryption round on a 16-byte state (column-major: byte `r + 4c` is row r, column c):
/// SubBytes, ShiftRows, MixColumns unless `last`, then xor with the round key — the operation of
/// x86 `aesenc` (`last = false`) and `aesenclast` (`last = true`).
#[inline]
pub fn aes_round(state: [u8; 16], round_key: [u8; 16], last: bool) -> [u8; 16] {
    let mut t = [0u8; 16];
    // SubBytes and ShiftRows: row r rotates left by r columns.
    for c in 0..4 {
        for r in 0..4 {
            t[r + 4 * c] = SBOX[state[r + 4 * ((c + r) % 4)] as usize];
        }
    }
    if !last {
        for c in 0..4 {
            let [a0, a1, a2, a3] = [t[4 * c], t[4 * c + 1], t[4 * c + 2], t[4 * c + 3]];
            let all = a0 ^ a1 ^ a2 ^ a3;
            // bᵢ = 2aᵢ ⊕ 3aᵢ₊₁ ⊕ aᵢ₊₂ ⊕ aᵢ₊₃ = aᵢ ⊕ all ⊕ 2(aᵢ ⊕ aᵢ₊₁).
            t[4 * c] = a0 ^ all ^ xtime(a0 ^ a1);
            t[4 * c + 1] = a1 ^ all ^ xtime(a1 ^ a2);
            t[4 * c + 2] = a2 ^ all ^ xtime(a2 ^ a3);
            t[4 * c + 3] = a3 ^ all ^ xtime(a3 ^ a0);
        }
    }
    for (b, k) in t.iter_mut().zip(round_key) {
        *b ^= k;
    }
    t
}

/// 16 state bytes of a (lo, hi) pair of u64 (little-endian, the `__m128i` layout).
#[inline]
pub fn to_bytes(v: [u64; 2]) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&v[0].to_le_bytes());
    b[8..].copy_from_slice(&v[1].to_le_bytes());
    b
}

/// One generator block (see the module docs) with the portable software AES round: four u32
/// words. Evaluated with [`aes_round_words`] (table-driven, the same bits as [`aes_round`]).
pub fn ars_block_soft(ctr: [u64; 2], key: [u64; 2]) -> [u32; 4] {
    let words = |v: [u64; 2]| {
        [
            v[0] as u32,
            (v[0] >> 32) as u32,
            v[1] as u32,
            (v[1] >> 32) as u32,
        ]
    };
    let mut k = key;
    let mut v = words([ctr[0] ^ key[0], ctr[1] ^ key[1]]);
    for r in 1..=ARS_ROUNDS {
        k = [k[0].wrapping_add(WEYL_LO), k[1].wrapping_add(WEYL_HI)];
        v = aes_round_words(v, words(k), r == ARS_ROUNDS);
    }
    v
}

/// MixColumns contribution of an S-box output from row 0 of a column: bytes (2·S, S, S, 3·S) of
/// rows 0..3 as a little-endian u32; rows 1, 2, 3 use it rotated left by 8, 16, 24 bits.
const fn make_te0() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let sb = SBOX[i];
        let (s1, s2) = (sb as u32, xtime(sb) as u32);
        t[i] = s2 | (s1 << 8) | (s1 << 16) | ((s2 ^ s1) << 24);
        i += 1;
    }
    t
}

static TE0: [u32; 256] = make_te0();

/// [`aes_round`] on the state as four little-endian u32 columns (column c = bytes 4c..4c + 3)
/// with the usual table of SubBytes∘MixColumns (one 1 KiB table, rotated per row): 16 look-ups
/// and xors per round instead of the byte-wise MixColumns. The same function, so the same bits
/// (tested against [`aes_round`]).
#[inline]
pub fn aes_round_words(state: [u32; 4], round_key: [u32; 4], last: bool) -> [u32; 4] {
    // Byte r of column (c + r) mod 4: the ShiftRows source of row r in output column c.
    let b = |c: usize, r: usize| ((state[(c + r) % 4] >> (8 * r)) & 0xff) as usize;
    std::array::from_fn(|c| {
        let v = if last {
            (SBOX[b(c, 0)] as u32)
                | (SBOX[b(c, 1)] as u32) << 8
                | (SBOX[b(c, 2)] as u32) << 16
                | (SBOX[b(c, 3)] as u32) << 24
        } else {
            TE0[b(c, 0)]
                ^ TE0[b(c, 1)].rotate_left(8)
                ^ TE0[b(c, 2)].rotate_left(16)
                ^ TE0[b(c, 3)].rotate_left(24)
        };
        v ^ round_key[c]
    })
}

/// [`ars_block_soft`] with `rounds` ≥ 1 rounds (the last one without MixColumns) instead of
/// [`ARS_ROUNDS`]; for known-answer tests of other round counts.
pub fn ars_block_soft_rounds(ctr: [u64; 2], key: [u64; 2], rounds: usize) -> [u32; 4] {
    assert!(rounds >= 1, "ARS needs at least one round");
    let mut k = key;
    let mut v = to_bytes([ctr[0] ^ key[0], ctr[1] ^ key[1]]);
    for r in 1..=rounds {
        k = [k[0].wrapping_add(WEYL_LO), k[1].wrapping_add(WEYL_HI)];
        v = aes_round(v, to_bytes(k), r == rounds);
    }
    std::array::from_fn(|w| {
        u32::from_le_bytes([v[4 * w], v[4 * w + 1], v[4 * w + 2], v[4 * w + 3]])
    })
}
