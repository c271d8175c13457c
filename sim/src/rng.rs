//! Counter-based random streams (Philox4x32-10, Salmon et al. 2011).
//!
//! A [`Stream`] is derived from a master seed and a stream name ("init", "data.order",
//! "noise.read.layer2", ...). Draw `i` of a stream is a pure function of (seed, name, i): no state is
//! carried between draws, so results do not depend on the thread count, the batch split or the
//! backend (the GPU backend evaluates the same function). Different names give independent streams.
//!
//! Draws come from Philox4x32-10, except the bulk Gaussians of [`Stream::normal_fast`] /
//! [`Stream::fill_normal_fast`] (the analog substrate's read and ADC noise, hundreds of millions
//! per run), which come from ARS-7, an AES-round counter generator (Random123's ars4x32, see
//! [`ars`]): with VAES it costs a fraction of Philox per 128 bits. It is still a pure function of
//! (stream, index) and gives the same bits on every code path (VAES, AES-NI, portable software
//! AES).

pub mod ars;
#[cfg(target_arch = "x86_64")]
mod x86;

/// Philox 4x32 with 10 rounds: maps a 128-bit counter and a 64-bit key to 128 random bits.
#[inline]
pub fn philox4x32(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    const M0: u64 = 0xD251_1F53;
    const M1: u64 = 0xCD9E_8D57;
    const W0: u32 = 0x9E37_79B9;
    const W1: u32 = 0xBB67_AE85;
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(W0);
            k[1] = k[1].wrapping_add(W1);
        }
        let p0 = M0 * c[0] as u64;
        let p1 = M1 * c[2] as u64;
        c = [
            ((p1 >> 32) as u32) ^ c[1] ^ k[0],
            p1 as u32,
            ((p0 >> 32) as u32) ^ c[3] ^ k[1],
            p0 as u32,
        ];
    }
    c
}

/// 64-bit FNV-1a, used to turn stream names into keys.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// SplitMix64 finalizer: a bijective mixer of 64-bit words.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Domain tags in the counter's third word keep uniform, normal and integer draws of one stream apart.
const TAG_UNIFORM: u32 = 0x5500_0001;
const TAG_NORMAL: u32 = 0x5500_0002;
const TAG_U32: u32 = 0x5500_0003;
/// Tag in the counter of the bulk normal generator ([`ars`]), which has its own key space anyway.
const TAG_NORMAL_ARS: u32 = 0x5500_0004;
/// High half of the bulk normal generator's 128-bit key (the low half is the stream key): the
/// first 64 fraction bits of π.
const ARS_KEY_HI: u64 = 0x243F_6A88_85A3_08D3;

/// A named, seeded random stream. Cheap to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stream {
    key: [u32; 2],
    /// Extra counter word, for sub-streams (`Stream::sub`).
    lane: u32,
}

impl Stream {
    /// The stream `name` of master seed `seed`.
    pub fn new(seed: u64, name: &str) -> Self {
        let k = mix64(seed ^ mix64(fnv1a64(name.as_bytes())));
        Stream {
            key: [k as u32, (k >> 32) as u32],
            lane: 0,
        }
    }

    /// A child stream named `name` (e.g. one per layer or per epoch), independent of its parent.
    pub fn child(&self, name: &str) -> Self {
        let parent = (self.key[0] as u64) | ((self.key[1] as u64) << 32);
        Stream::new(parent ^ (self.lane as u64).rotate_left(17), name)
    }

    /// A child stream numbered `i` (e.g. epoch i, sample i).
    pub fn sub(&self, i: u64) -> Self {
        self.child(&format!("#{i}"))
    }

    /// The 64-bit Philox key (for backends that evaluate Philox themselves).
    pub fn key(&self) -> [u32; 2] {
        self.key
    }

    /// The lane word placed in the counter's fourth word.
    pub fn lane(&self) -> u32 {
        self.lane
    }

    #[inline]
    fn block(&self, i: u64, tag: u32) -> [u32; 4] {
        philox4x32([i as u32, (i >> 32) as u32, tag, self.lane], self.key)
    }

    /// Raw 32-bit draw `i`.
    #[inline]
    pub fn u32_at(&self, i: u64) -> u32 {
        self.block(i / 4, TAG_U32)[(i % 4) as usize]
    }

    /// Raw 64-bit draw `i`.
    #[inline]
    pub fn u64_at(&self, i: u64) -> u64 {
        let b = self.block(i / 2, TAG_U32 ^ 0x100);
        let j = (i % 2) as usize * 2;
        (b[j] as u64) | ((b[j + 1] as u64) << 32)
    }

    /// Uniform draw `i` in the open interval (0, 1): `(u >> 8) · 2⁻²⁴ + 2⁻²⁵`.
    #[inline]
    pub fn uniform(&self, i: u64) -> f32 {
        u32_to_unit(self.block(i / 4, TAG_UNIFORM)[(i % 4) as usize])
    }

    /// Standard normal draw `i` (Box–Muller on one Philox block: draws 4j..4j+3 share a block; lanes
    /// (0,1) give the cos/sin pair for draws 4j, 4j+1 and lanes (2,3) for 4j+2, 4j+3).
    #[inline]
    pub fn normal(&self, i: u64) -> f32 {
        let b = self.block(i / 4, TAG_NORMAL);
        let r = (i % 4) as usize;
        let pair = (r / 2) * 2;
        box_muller(b[pair], b[pair + 1], r % 2 == 1)
    }

    /// Uniform integer in `0..n` (n ≥ 1) from draw `i` (Lemire's multiply-shift on 64 bits; the bias is
    /// below 2⁻³² for every n < 2³²).
    #[inline]
    pub fn below(&self, i: u64, n: u64) -> u64 {
        assert!(n >= 1, "Stream::below needs n ≥ 1");
        ((self.u64_at(i) as u128 * n as u128) >> 64) as u64
    }

    /// Fill `out` with uniform draws `offset..offset+len`.
    pub fn fill_uniform(&self, offset: u64, out: &mut [f32]) {
        for (j, v) in out.iter_mut().enumerate() {
            *v = self.uniform(offset + j as u64);
        }
    }

    /// Fill `out` with normal draws `offset..offset+len`.
    pub fn fill_normal(&self, offset: u64, out: &mut [f32]) {
        for (j, v) in out.iter_mut().enumerate() {
            *v = self.normal(offset + j as u64);
        }
    }

    /// Counter block `blk` of the bulk normal generator ([`ars`]): counter (lo `blk`, hi
    /// `TAG_NORMAL_ARS | lane << 32`), key (lo the 64-bit stream key, hi [`ARS_KEY_HI`]).
    #[inline]
    fn ars_args(&self, blk: u64) -> ([u64; 2], [u64; 2]) {
        (
            [blk, TAG_NORMAL_ARS as u64 | (self.lane as u64) << 32],
            [self.key[0] as u64 | (self.key[1] as u64) << 32, ARS_KEY_HI],
        )
    }

    /// Block `blk` of the bulk normal generator on `path` (the same bits on every path).
    #[inline]
    fn normal_fast_block_on(&self, path: NormalPath, blk: u64) -> [u32; 4] {
        let (ctr, key) = self.ars_args(blk);
        match path {
            NormalPath::Portable => ars::ars_block_soft(ctr, key),
            // SAFETY: the caller checked `path.available()` (AES-NI).
            #[cfg(target_arch = "x86_64")]
            _ => unsafe { x86::ars_block_aesni(ctr, key) },
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!(),
        }
    }

    /// Standard normal draw `i` of the bulk generator (see [`Stream::fill_normal_fast`]).
    ///
    /// Draws `4j .. 4j + 4` come from block `j` of the AES-round counter generator ARS-7 (see
    /// [`ars`]; not Philox, so not the draws of [`Stream::normal`]): words (0, 1) give
    /// the Box–Muller (cos, sin) pair of draws 4j, 4j + 1 and words (2, 3) that of 4j + 2, 4j + 3,
    /// evaluated with the fast f32 [`box_muller_fma`] (fused multiply-adds: an FMA instruction
    /// where compiled for one, libm's exact `fmaf` otherwise; the same bits). Uses AES-NI where
    /// the CPU has it and the portable software AES round otherwise (the same bits).
    #[inline]
    pub fn normal_fast(&self, i: u64) -> f32 {
        let path = if NormalPath::AesNi.available() {
            NormalPath::AesNi
        } else {
            NormalPath::Portable
        };
        let b = self.normal_fast_block_on(path, i / 4);
        let r = (i % 4) as usize;
        let pair = (r / 2) * 2;
        let (c, s) = box_muller_fma(b[pair], b[pair + 1]);
        if r % 2 == 1 { s } else { c }
    }

    /// Fill `out` with the bulk normal draws `offset..offset+len`: element `j` is exactly
    /// [`Stream::normal_fast`]`(offset + j)` (a pure function of the stream and the index, so any
    /// split of a range over threads gives the same values, and every code path gives the same
    /// bits). Groups of 128 generator blocks (512 draws), then of 32 (128 draws, the last one
    /// possibly partial), are evaluated at once: with VAES (4 AES blocks per instruction) and
    /// AVX-512 Box–Muller where the CPU has them, else AES-NI with AVX2, else the portable
    /// software AES round (much slower: about 20 M draws/s).
    pub fn fill_normal_fast(&self, offset: u64, out: &mut [f32]) {
        self.fill_normal_fast_on(NormalPath::best(), offset, out)
    }

    /// [`Stream::fill_normal_fast`] on an explicit code path (for parity tests and benchmarks;
    /// every path gives the same bits). Panics if the CPU lacks the path's instructions.
    #[doc(hidden)]
    pub fn fill_normal_fast_on(&self, path: NormalPath, offset: u64, out: &mut [f32]) {
        assert!(
            path.available(),
            "{path:?} needs CPU features this machine lacks"
        );
        match path {
            NormalPath::Portable => self.fill_normal_fast_impl(NormalPath::Portable, offset, out),
            // SAFETY (both): `available` checked the CPU features.
            #[cfg(target_arch = "x86_64")]
            NormalPath::AesNi => unsafe { self.fill_normal_fast_aesni(offset, out) },
            #[cfg(target_arch = "x86_64")]
            NormalPath::Vaes512 => unsafe { self.fill_normal_fast_vaes(offset, out) },
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!(),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma,aes,vaes")]
    fn fill_normal_fast_vaes(&self, offset: u64, out: &mut [f32]) {
        self.fill_normal_fast_impl(NormalPath::Vaes512, offset, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,aes")]
    fn fill_normal_fast_aesni(&self, offset: u64, out: &mut [f32]) {
        self.fill_normal_fast_impl(NormalPath::AesNi, offset, out)
    }

    /// The draws of the `N / 4` blocks `blk ..` (N a multiple of 128) into `dst` (`dst[4j + w]` =
    /// draw w of block blk + j), the generator words going through `x`; `rk` (x86) holds the VAES
    /// round keys on the Vaes512 path.
    #[inline(always)]
    fn normal_fast_group<const N: usize>(
        &self,
        path: NormalPath,
        #[cfg(target_arch = "x86_64")] rk: Option<
            &[std::arch::x86_64::__m512i; ars::ARS_ROUNDS + 1],
        >,
        blk: u64,
        x: &mut [u32; N],
        dst: &mut [f32; N],
    ) {
        match path {
            #[cfg(target_arch = "x86_64")]
            NormalPath::Vaes512 => {
                for (h, xh) in x.chunks_exact_mut(128).enumerate() {
                    let (ctr, _) = self.ars_args(blk + 32 * h as u64);
                    // SAFETY: the Vaes512 path runs only where `available` checked VAES and
                    // AVX-512; `rk` is Some on this path.
                    unsafe { x86::ars_blocks_32_vaes(ctr, rk.unwrap(), xh.try_into().unwrap()) };
                }
            }
            _ => {
                for (j, xb) in x.chunks_exact_mut(4).enumerate() {
                    xb.copy_from_slice(&self.normal_fast_block_on(path, blk + j as u64));
                }
            }
        }
        for (d, u) in dst.chunks_exact_mut(2).zip(x.chunks_exact(2)) {
            let (c, s) = box_muller_fma(u[0], u[1]);
            d[0] = c;
            d[1] = s;
        }
    }

    /// The body of the fills: `path` is a constant after inlining into each entry point.
    #[inline(always)]
    fn fill_normal_fast_impl(&self, path: NormalPath, offset: u64, out: &mut [f32]) {
        const G: usize = 32;
        let mut i = offset;
        let mut pos = 0usize;
        let len = out.len();
        // Head: up to the next multiple of 4 (a block boundary).
        if !i.is_multiple_of(4) && pos < len {
            let b = self.normal_fast_block_on(path, i / 4);
            let (c0, s0) = box_muller_fma(b[0], b[1]);
            let (c1, s1) = box_muller_fma(b[2], b[3]);
            let v = [c0, s0, c1, s1];
            while pos < len && !i.is_multiple_of(4) {
                out[pos] = v[(i % 4) as usize];
                pos += 1;
                i += 1;
            }
        }
        #[cfg(target_arch = "x86_64")]
        let rk = if path == NormalPath::Vaes512 {
            let (_, key) = self.ars_args(0);
            // SAFETY: the Vaes512 path runs only where `available` checked VAES and AVX-512.
            Some(unsafe { x86::round_keys_512(key) })
        } else {
            None
        };
        // Body: groups of 128 blocks (512 draws; larger groups measured faster with VAES), then
        // groups of 32 blocks (128 draws); a last partial group of at least VEC_MIN draws is also
        // evaluated whole, into `tmp`, and its head copied.
        const VEC_MIN: usize = 16;
        let mut x = [0u32; 4 * 128];
        while len - pos >= 4 * 128 {
            let dst = (&mut out[pos..pos + 4 * 128]).try_into().unwrap();
            #[cfg(target_arch = "x86_64")]
            self.normal_fast_group::<512>(path, rk.as_ref(), i / 4, &mut x, dst);
            #[cfg(not(target_arch = "x86_64"))]
            self.normal_fast_group::<512>(path, i / 4, &mut x, dst);
            pos += 4 * 128;
            i += 4 * 128;
        }
        let mut tmp = [0.0f32; 4 * G];
        while len - pos >= VEC_MIN {
            let n = (len - pos).min(4 * G);
            let dst: &mut [f32; 4 * G] = if n == 4 * G {
                (&mut out[pos..pos + 4 * G]).try_into().unwrap()
            } else {
                &mut tmp
            };
            let xg = (&mut x[..4 * G]).try_into().unwrap();
            #[cfg(target_arch = "x86_64")]
            self.normal_fast_group::<{ 4 * G }>(path, rk.as_ref(), i / 4, xg, dst);
            #[cfg(not(target_arch = "x86_64"))]
            self.normal_fast_group::<{ 4 * G }>(path, i / 4, xg, dst);
            if n < 4 * G {
                out[pos..pos + n].copy_from_slice(&tmp[..n]);
            }
            pos += n;
            i += n as u64;
        }
        // Tail: block by block.
        while pos < len {
            let b = self.normal_fast_block_on(path, i / 4);
            let (c0, s0) = box_muller_fma(b[0], b[1]);
            let (c1, s1) = box_muller_fma(b[2], b[3]);
            for v in [c0, s0, c1, s1] {
                if pos == len {
                    break;
                }
                out[pos] = v;
                pos += 1;
                i += 1;
            }
        }
    }

    /// A seeded permutation of `0..n` (Fisher–Yates driven by draws of this stream).
    pub fn permutation(&self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for k in (1..n).rev() {
            let j = self.below(k as u64, k as u64 + 1) as usize;
            p.swap(k, j);
        }
        p
    }
}

/// A code path of [`Stream::fill_normal_fast`] (all give the same bits).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormalPath {
    /// The portable software AES round ([`ars::aes_round`]), baseline compilation.
    Portable,
    /// AES-NI, one block per instruction, Box–Muller compiled for AVX2 + FMA.
    AesNi,
    /// VAES on 512-bit registers (four blocks per instruction), Box–Muller compiled for AVX-512.
    Vaes512,
}

impl NormalPath {
    /// Every path.
    pub const ALL: [NormalPath; 3] = [NormalPath::Portable, NormalPath::AesNi, NormalPath::Vaes512];

    /// Whether this CPU can run the path.
    pub fn available(self) -> bool {
        match self {
            NormalPath::Portable => true,
            NormalPath::AesNi => crate::simd::has_aes_avx2(),
            NormalPath::Vaes512 => crate::simd::has_vaes_avx512(),
        }
    }

    /// The fastest path this CPU can run.
    pub fn best() -> NormalPath {
        *NormalPath::ALL
            .iter()
            .rev()
            .find(|p| p.available())
            .unwrap_or(&NormalPath::Portable)
    }
}

/// Map 32 random bits to (0, 1).
#[inline]
pub fn u32_to_unit(u: u32) -> f32 {
    (u >> 8) as f32 * (1.0 / 16_777_216.0) + (1.0 / 33_554_432.0)
}

/// Box–Muller: the cos (or sin) branch from two 32-bit words.
#[inline]
pub fn box_muller(a: u32, b: u32, sin_branch: bool) -> f32 {
    let u1 = u32_to_unit(a);
    let u2 = u32_to_unit(b);
    let r = (-2.0 * u1.ln()).sqrt();
    let t = std::f32::consts::TAU * u2;
    if sin_branch { r * t.sin() } else { r * t.cos() }
}

/// Natural logarithm of a positive, finite, normal f32 (Cephes `logf`: mantissa in
/// [√½, √2), degree-9 polynomial; about 1 ulp). Branch-free, so loops over it vectorize. No checks:
/// zero, negative, subnormal or non-finite inputs give unspecified values.
#[inline(always)]
pub fn fast_ln(x: f32) -> f32 {
    const SQRTHF: f32 = std::f32::consts::FRAC_1_SQRT_2;
    let bits = x.to_bits();
    let e = ((bits >> 23) & 0xff) as i32 - 126;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000); // [0.5, 1)
    let small = m < SQRTHF;
    let e = (e - small as i32) as f32;
    let m = if small { m + m - 1.0 } else { m - 1.0 };
    let z = m * m;
    let mut y = 7.037_683_6e-2f32;
    y = y * m - 1.151_461e-1;
    y = y * m + 1.167_699_9e-1;
    y = y * m - 1.242_014_1e-1;
    y = y * m + 1.424_932_3e-1;
    y = y * m - 1.666_805_8e-1;
    y = y * m + 2.000_071_4e-1;
    y = y * m - 2.499_999_4e-1;
    y = y * m + 3.333_333e-1;
    y = y * m * z;
    y += -2.121_944_4e-4 * e;
    y += -0.5 * z;
    (m + y) + 0.693_359_4 * e
}

/// (cos 2πu, sin 2πu) for u in [0, 1] (a fraction of a turn): exact reduction to the nearest
/// quarter turn and Cephes' minimax polynomials on [−π/4, π/4] (a few 1e-8 absolute error).
/// Branch-free.
#[inline(always)]
pub fn fast_sincos_turns(u: f32) -> (f32, f32) {
    let y = u * 4.0; // quarter turns, exact
    // Nearest quarter q by the 1.5·2²³ trick (ties to even; no float-to-int cast, so it
    // vectorizes): the low mantissa bits of `big` hold q, `big − 1.5·2²³` is q exactly.
    const MAGIC: f32 = 12_582_912.0;
    let big = y + MAGIC;
    let q = big.to_bits();
    let t = (y - (big - MAGIC)) * std::f32::consts::FRAC_PI_2; // [−π/4, π/4], reduction exact
    let z = t * t;
    let s = ((-1.951_529_6e-4f32 * z + 8.332_161e-3) * z - 1.666_665_5e-1) * z * t + t;
    let c = ((2.443_315_7e-5f32 * z - 1.388_731_6e-3) * z + 4.166_664_6e-2) * z * z - 0.5 * z + 1.0;
    // angle = q·π/2 + t: an odd quarter swaps cos and sin (cos → −sin), quarters 2 and 3 negate
    // both (selects on bits, so the loop vectorizes).
    const SIGN: u32 = 0x8000_0000;
    let odd = q & 1 != 0;
    let neg = if q & 2 != 0 { SIGN } else { 0 };
    let cq = if odd { s.to_bits() ^ SIGN } else { c.to_bits() } ^ neg;
    let sq = if odd { c.to_bits() } else { s.to_bits() } ^ neg;
    (f32::from_bits(cq), f32::from_bits(sq))
}

/// [`fast_ln`] with fused multiply-adds (`f32::mul_add`, one rounding each: the same bits with
/// an FMA instruction or libm's `fmaf`): the same Cephes polynomial, about 40 % fewer operations.
#[inline(always)]
pub fn fast_ln_fma(x: f32) -> f32 {
    const SQRTHF: f32 = std::f32::consts::FRAC_1_SQRT_2;
    let bits = x.to_bits();
    let e = ((bits >> 23) & 0xff) as i32 - 126;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000); // [0.5, 1)
    let small = m < SQRTHF;
    let e = (e - small as i32) as f32;
    let m = if small { m + m - 1.0 } else { m - 1.0 };
    let z = m * m;
    let mut y = 7.037_683_6e-2f32;
    y = y.mul_add(m, -1.151_461e-1);
    y = y.mul_add(m, 1.167_699_9e-1);
    y = y.mul_add(m, -1.242_014_1e-1);
    y = y.mul_add(m, 1.424_932_3e-1);
    y = y.mul_add(m, -1.666_805_8e-1);
    y = y.mul_add(m, 2.000_071_4e-1);
    y = y.mul_add(m, -2.499_999_4e-1);
    y = y.mul_add(m, 3.333_333e-1);
    y = (y * m) * z;
    y = e.mul_add(-2.121_944_4e-4, y);
    y = z.mul_add(-0.5, y);
    e.mul_add(0.693_359_4, m + y)
}

/// [`fast_sincos_turns`] with fused multiply-adds (the same reduction and polynomials).
#[inline(always)]
pub fn fast_sincos_turns_fma(u: f32) -> (f32, f32) {
    let y = u * 4.0;
    const MAGIC: f32 = 12_582_912.0;
    let big = y + MAGIC;
    let q = big.to_bits();
    let t = (y - (big - MAGIC)) * std::f32::consts::FRAC_PI_2;
    let z = t * t;
    let ps = (-1.951_529_6e-4f32)
        .mul_add(z, 8.332_161e-3)
        .mul_add(z, -1.666_665_5e-1);
    let s = (ps * z).mul_add(t, t);
    let pc = 2.443_315_7e-5f32
        .mul_add(z, -1.388_731_6e-3)
        .mul_add(z, 4.166_664_6e-2);
    let c = (pc * z).mul_add(z, z.mul_add(-0.5, 1.0));
    const SIGN: u32 = 0x8000_0000;
    let odd = q & 1 != 0;
    let neg = if q & 2 != 0 { SIGN } else { 0 };
    let cq = if odd { s.to_bits() ^ SIGN } else { c.to_bits() } ^ neg;
    let sq = if odd { c.to_bits() } else { s.to_bits() } ^ neg;
    (f32::from_bits(cq), f32::from_bits(sq))
}

/// Box–Muller pair (cos branch, sin branch) from two 32-bit words with [`fast_ln_fma`] and
/// [`fast_sincos_turns_fma`]; the words map to (0, 1) as in [`u32_to_unit`] (the product by 2⁻²⁴
/// is exact, so fusing it with the add gives the same value).
#[inline(always)]
pub fn box_muller_fma(a: u32, b: u32) -> (f32, f32) {
    const S: f32 = 1.0 / 16_777_216.0;
    const H: f32 = 1.0 / 33_554_432.0;
    let u1 = ((a >> 8) as f32).mul_add(S, H);
    let u2 = ((b >> 8) as f32).mul_add(S, H);
    let r = (-2.0 * fast_ln_fma(u1)).sqrt();
    let (c, s) = fast_sincos_turns_fma(u2);
    (r * c, r * s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_known_answer() {
        // Known-answer vectors of the Random123 distribution (kat_vectors, philox4x32 10 rounds).
        assert_eq!(
            philox4x32([0, 0, 0, 0], [0, 0]),
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
        assert_eq!(
            philox4x32([0xffffffff; 4], [0xffffffff, 0xffffffff]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32(
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0]
            ),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn same_seed_same_draws_and_names_separate_streams() {
        let a = Stream::new(7, "init");
        let b = Stream::new(7, "init");
        let c = Stream::new(7, "noise");
        let d = Stream::new(8, "init");
        let va: Vec<f32> = (0..64).map(|i| a.normal(i)).collect();
        let vb: Vec<f32> = (0..64).map(|i| b.normal(i)).collect();
        let vc: Vec<f32> = (0..64).map(|i| c.normal(i)).collect();
        let vd: Vec<f32> = (0..64).map(|i| d.normal(i)).collect();
        assert_eq!(va, vb);
        assert_ne!(va, vc);
        assert_ne!(va, vd);
        assert_ne!(a.sub(0), a.sub(1));
    }

    #[test]
    fn fill_is_independent_of_split() {
        let s = Stream::new(3, "x");
        let mut whole = vec![0.0; 1000];
        s.fill_normal(5, &mut whole);
        let mut parts = vec![0.0; 1000];
        let (p1, p2) = parts.split_at_mut(333);
        s.fill_normal(5, p1);
        s.fill_normal(5 + 333, p2);
        assert_eq!(whole, parts);
    }

    #[test]
    fn moments_of_uniform_and_normal() {
        let s = Stream::new(11, "moments");
        let n = 200_000u64;
        let (mut su, mut su2, mut sn, mut sn2, mut sn4) = (0f64, 0f64, 0f64, 0f64, 0f64);
        for i in 0..n {
            let u = s.uniform(i) as f64;
            assert!(u > 0.0 && u < 1.0);
            su += u;
            su2 += u * u;
            let z = s.normal(i) as f64;
            sn += z;
            sn2 += z * z;
            sn4 += z * z * z * z;
        }
        let nf = n as f64;
        assert!((su / nf - 0.5).abs() < 0.003);
        assert!((su2 / nf - 1.0 / 3.0).abs() < 0.003);
        assert!((sn / nf).abs() < 0.01);
        assert!((sn2 / nf - 1.0).abs() < 0.015);
        assert!((sn4 / nf - 3.0).abs() < 0.08);
    }

    #[test]
    fn fast_ln_and_sincos_are_accurate() {
        type Ln = fn(f32) -> f32;
        type Sc = fn(f32) -> (f32, f32);
        let variants: [(&str, Ln, Sc); 2] = [
            ("plain", fast_ln, fast_sincos_turns),
            ("fma", fast_ln_fma, fast_sincos_turns_fma),
        ];
        for (name, ln, sincos) in variants {
            // Over the inputs Box–Muller meets: every unit value (k + ½)·2⁻²⁴, sampled densely,
            // and values near 1 and near the smallest.
            let mut worst_ln = 0.0f64;
            let mut worst_sc = 0.0f64;
            for k in (0u32..1 << 24)
                .step_by(97)
                .chain(0..4096)
                .chain((1 << 24) - 4096..1 << 24)
            {
                let u = u32_to_unit(k << 8);
                let l = ln(u) as f64;
                let want = (u as f64).ln();
                worst_ln = worst_ln.max((l - want).abs() / want.abs().max(1e-30));
                let (c, s) = sincos(u);
                let a = std::f64::consts::TAU * u as f64;
                worst_sc = worst_sc.max((c as f64 - a.cos()).abs().max((s as f64 - a.sin()).abs()));
            }
            assert!(worst_ln < 4e-7, "{name}: ln relative error {worst_ln}");
            assert!(worst_sc < 3e-7, "{name}: sincos absolute error {worst_sc}");
            // Around the mantissa switch at √½ too.
            let h = std::f32::consts::FRAC_1_SQRT_2;
            for x in [
                1e-30f32,
                0.001,
                0.5,
                h.next_down(),
                h,
                h.next_up(),
                1.0,
                2.0,
                1e30,
            ] {
                let e = (ln(x) as f64 - (x as f64).ln()).abs();
                assert!(
                    e <= 1e-6 * (x as f64).ln().abs().max(1.0),
                    "{name}: ln({x}): {e}"
                );
            }
        }
        // The fused unit map equals u32_to_unit (the product by 2⁻²⁴ is exact).
        for a in [
            0u32,
            255,
            256,
            0x7fff_ff00,
            0xffff_ff00,
            0xffff_ffff,
            0x1234_5678,
        ] {
            let (c, _) = box_muller_fma(a, 0);
            let r = (-2.0 * fast_ln_fma(u32_to_unit(a))).sqrt();
            assert_eq!(c.to_bits(), r.to_bits(), "{a:#x}");
        }
    }

    /// S-box values of FIPS-197 Figure 7.
    #[test]
    fn aes_sbox_known_values() {
        assert_eq!(ars::SBOX[0x00], 0x63);
        assert_eq!(ars::SBOX[0x01], 0x7c);
        assert_eq!(ars::SBOX[0x53], 0xed);
        assert_eq!(ars::SBOX[0x10], 0xca);
        assert_eq!(ars::SBOX[0xff], 0x16);
        let mut seen = [false; 256];
        for &v in ars::SBOX.iter() {
            assert!(!seen[v as usize], "S-box not a permutation");
            seen[v as usize] = true;
        }
    }

    fn hex16(h: &str) -> [u8; 16] {
        std::array::from_fn(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
    }

    /// Full AES-128 (FIPS-197 key expansion, written here) built from `ars::aes_round`.
    fn aes128_encrypt(key: [u8; 16], pt: [u8; 16]) -> [u8; 16] {
        let mut w = [[0u8; 4]; 44];
        for i in 0..4 {
            w[i].copy_from_slice(&key[4 * i..4 * i + 4]);
        }
        let rcon = [0x01u8, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x1b, 0x36];
        for i in 4..44 {
            let mut t = w[i - 1];
            if i % 4 == 0 {
                t = [t[1], t[2], t[3], t[0]].map(|b| ars::SBOX[b as usize]);
                t[0] ^= rcon[i / 4 - 1];
            }
            w[i] = std::array::from_fn(|b| w[i - 4][b] ^ t[b]);
        }
        let rk = |r: usize| -> [u8; 16] { std::array::from_fn(|b| w[4 * r + b / 4][b % 4]) };
        let k0 = rk(0);
        let mut s: [u8; 16] = std::array::from_fn(|b| pt[b] ^ k0[b]);
        for r in 1..=10 {
            s = ars::aes_round(s, rk(r), r == 10);
        }
        s
    }

    /// The software AES round gives FIPS-197's AES-128 known answers (Appendix B and C.1).
    #[test]
    fn aes_round_fips197_known_answers() {
        assert_eq!(
            aes128_encrypt(
                hex16("2b7e151628aed2a6abf7158809cf4f3c"),
                hex16("3243f6a8885a308d313198a2e0370734")
            ),
            hex16("3925841d02dc09fbdc118597196a0b32")
        );
        assert_eq!(
            aes128_encrypt(
                hex16("000102030405060708090a0b0c0d0e0f"),
                hex16("00112233445566778899aabbccddeeff")
            ),
            hex16("69c4e0d86a7b0430d8cdb78070b4c55a")
        );
    }

    /// The block construction equals Random123's ARS: their ars4x32 known-answer vectors (for
    /// 10 rounds; words little-endian, word 0 lowest) through the software round.
    #[test]
    fn ars_construction_matches_random123_kat_vectors() {
        let w = |a: u32, b: u32| (a as u64) | (b as u64) << 32;
        assert_eq!(
            ars::ars_block_soft_rounds([0, 0], [0, 0], 10),
            [0x8d73ee19, 0x506401ef, 0x13c2dbe4, 0x0cbe9c0d]
        );
        assert_eq!(
            ars::ars_block_soft_rounds(
                [w(0x243f6a88, 0x85a308d3), w(0x13198a2e, 0x03707344)],
                [w(0xa4093822, 0x299f31d0), w(0x082efa98, 0xec4e6c89)],
                10
            ),
            [0xa516e7d6, 0x8357ad74, 0x5b59b3ec, 0x8763fff3]
        );
    }

    /// The table-driven round on u32 columns equals the byte-wise reference round (which the
    /// FIPS-197 answers check), and the portable block built on it equals the byte-wise block.
    #[test]
    fn table_round_matches_the_bytewise_round() {
        let rs = Stream::new(98, "aes-table");
        let words = |i: u64| -> [u32; 4] { std::array::from_fn(|k| rs.u32_at(4 * i + k as u64)) };
        let bytes =
            |w: [u32; 4]| -> [u8; 16] { std::array::from_fn(|b| w[b / 4].to_le_bytes()[b % 4]) };
        for t in 0..3000u64 {
            let (s, k) = (words(2 * t), words(2 * t + 1));
            for last in [false, true] {
                let want = ars::aes_round(bytes(s), bytes(k), last);
                assert_eq!(bytes(ars::aes_round_words(s, k, last)), want, "{t} {last}");
            }
            let c = [rs.u64_at(3 * t), rs.u64_at(3 * t + 1)];
            let key = [rs.u64_at(3 * t + 2), t];
            assert_eq!(
                ars::ars_block_soft(c, key),
                ars::ars_block_soft_rounds(c, key, ars::ARS_ROUNDS)
            );
        }
    }

    /// The software round equals the x86 `aesenc` / `aesenclast` instructions, and the software
    /// generator block equals the AES-NI one, on random inputs.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn aes_round_and_block_match_aesni() {
        use std::arch::x86_64::*;
        if !std::arch::is_x86_feature_detected!("aes") {
            eprintln!("skipped: no AES-NI");
            return;
        }
        #[target_feature(enable = "aes,sse2")]
        fn hw(s: [u8; 16], k: [u8; 16], last: bool) -> [u8; 16] {
            // SAFETY: 16-byte arrays, unaligned loads and stores.
            unsafe {
                let sv = _mm_loadu_si128(s.as_ptr().cast());
                let kv = _mm_loadu_si128(k.as_ptr().cast());
                let o = if last {
                    _mm_aesenclast_si128(sv, kv)
                } else {
                    _mm_aesenc_si128(sv, kv)
                };
                let mut r = [0u8; 16];
                _mm_storeu_si128(r.as_mut_ptr().cast(), o);
                r
            }
        }
        let rs = Stream::new(99, "aes-parity");
        let bytes = |i: u64| -> [u8; 16] {
            let w: [u32; 4] = std::array::from_fn(|k| rs.u32_at(4 * i + k as u64));
            std::array::from_fn(|b| w[b / 4].to_le_bytes()[b % 4])
        };
        let words = |i: u64| -> [u64; 2] { [rs.u64_at(2 * i), rs.u64_at(2 * i + 1)] };
        for t in 0..2000u64 {
            let (s, k) = (bytes(2 * t), bytes(2 * t + 1));
            for last in [false, true] {
                // SAFETY: AES-NI checked above.
                assert_eq!(
                    ars::aes_round(s, k, last),
                    unsafe { hw(s, k, last) },
                    "{t} {last}"
                );
            }
            let (c, k) = (words(10_000 + 2 * t), words(10_000 + 2 * t + 1));
            // SAFETY: AES-NI checked above.
            assert_eq!(ars::ars_block_soft(c, k), unsafe {
                x86::ars_block_aesni(c, k)
            });
        }
    }

    /// The bulk normals: every code path gives, for any offset and split, exactly
    /// `normal_fast(i)`, which is Box–Muller of the generator block's words (checked against an
    /// f64 evaluation from the software block); streams differ.
    #[test]
    fn fill_normal_fast_matches_reference_and_split_on_every_path() {
        let s = Stream::new(5, "fast").sub(3);
        let n = 3001;
        let mut reference = vec![0.0f32; n];
        for (j, v) in reference.iter_mut().enumerate() {
            let i = 7 + j as u64;
            *v = s.normal_fast(i);
            let (ctr, key) = s.ars_args(i / 4);
            let b = ars::ars_block_soft(ctr, key);
            let pair = (i % 4) as usize / 2 * 2;
            let u1 = u32_to_unit(b[pair]) as f64;
            let u2 = u32_to_unit(b[pair + 1]) as f64;
            let r = (-2.0 * u1.ln()).sqrt();
            let a = std::f64::consts::TAU * u2;
            let want = if i % 2 == 1 { r * a.sin() } else { r * a.cos() };
            assert!(
                (*v as f64 - want).abs() <= 2e-6 * r.max(1.0),
                "draw {i}: {v} vs {want}"
            );
        }
        let paths: Vec<NormalPath> = NormalPath::ALL
            .into_iter()
            .filter(|p| p.available())
            .collect();
        eprintln!("paths tested: {paths:?}");
        for &path in &paths {
            let mut whole = vec![0.0f32; n];
            s.fill_normal_fast_on(path, 7, &mut whole);
            for (j, (v, r)) in whole.iter().zip(&reference).enumerate() {
                assert_eq!(v.to_bits(), r.to_bits(), "{path:?} draw {}", 7 + j);
            }
            for cut in [0usize, 1, 3, 64, 65, 127, 128, 129, 1000, n] {
                for off in [7u64, 8] {
                    let mut a = vec![0.0f32; n];
                    let (p, q) = a.split_at_mut(cut);
                    s.fill_normal_fast_on(path, off, p);
                    s.fill_normal_fast_on(path, off + cut as u64, q);
                    let mut b = vec![0.0f32; n];
                    s.fill_normal_fast_on(path, off, &mut b);
                    assert_eq!(a, b, "{path:?} cut {cut} offset {off}");
                }
            }
        }
        // Huge offsets (counter words far from zero) agree across paths too.
        let far = u64::MAX / 2 - 1000;
        let mut a = vec![0.0f32; 700];
        s.fill_normal_fast_on(NormalPath::Portable, far, &mut a);
        for &path in &paths {
            let mut b = vec![0.0f32; 700];
            s.fill_normal_fast_on(path, far, &mut b);
            assert_eq!(a, b, "{path:?} at offset {far}");
        }
        let mut other = vec![0.0f32; n];
        Stream::new(5, "fast")
            .sub(4)
            .fill_normal_fast(7, &mut other);
        assert_ne!(reference, other);
        let mut lane = vec![0.0f32; n];
        Stream { lane: 1, ..s }.fill_normal_fast(7, &mut lane);
        assert_ne!(reference, lane);
    }

    /// Pearson correlation of two equally long samples.
    fn corr(a: &[f32], b: &[f32]) -> f64 {
        let n = a.len() as f64;
        let ma = a.iter().map(|&x| x as f64).sum::<f64>() / n;
        let mb = b.iter().map(|&x| x as f64).sum::<f64>() / n;
        let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
        for (&x, &y) in a.iter().zip(b) {
            let (x, y) = (x as f64 - ma, y as f64 - mb);
            sab += x * y;
            saa += x * x;
            sbb += y * y;
        }
        sab / (saa * sbb).sqrt()
    }

    /// No linear dependence between neighbouring draws (the cos/sin pair, the other pair of a
    /// block, the next block, the next 128-draw group), between sub-streams or between squared
    /// draws of a pair (a Box–Muller pair is independent, so even z₁² and z₂² are uncorrelated).
    #[test]
    fn fill_normal_fast_draws_are_uncorrelated() {
        let n = 1 << 19;
        let s = Stream::new(23, "corr");
        let mut v = vec![0.0f32; n + 128];
        s.fill_normal_fast(0, &mut v);
        // 5σ with σ ≈ 1/√m for m pairs.
        for lag in [1usize, 2, 3, 4, 5, 128] {
            let m = n / 2;
            let a: Vec<f32> = (0..m).map(|p| v[2 * p]).collect();
            let b: Vec<f32> = (0..m).map(|p| v[2 * p + lag]).collect();
            let r = corr(&a, &b);
            assert!(r.abs() < 5.0 / (m as f64).sqrt(), "lag {lag}: r = {r}");
        }
        let m = n / 2;
        let a: Vec<f32> = (0..m).map(|p| v[2 * p] * v[2 * p]).collect();
        let b: Vec<f32> = (0..m).map(|p| v[2 * p + 1] * v[2 * p + 1]).collect();
        let r = corr(&a, &b);
        assert!(
            r.abs() < 5.0 / (m as f64).sqrt(),
            "squares of a pair: r = {r}"
        );
        let mut w = vec![0.0f32; n];
        s.sub(1).fill_normal_fast(0, &mut w);
        let r = corr(&v[..n], &w);
        assert!(r.abs() < 5.0 / (n as f64).sqrt(), "sub-streams: r = {r}");
        // The check can fail: a sequence against itself shifted by a smoothing window.
        let sm: Vec<f32> = (0..n).map(|k| v[k] + v[k + 1]).collect();
        assert!(corr(&sm[..n - 1], &sm[1..]) > 0.4);
    }

    /// The standard normal CDF (erfc by Numerical Recipes' Chebyshev fit, |error| < 1.2e-7).
    fn phi(x: f64) -> f64 {
        let z = x.abs() / std::f64::consts::SQRT_2;
        let t = 1.0 / (1.0 + 0.5 * z);
        let r = t
            * (-z * z - 1.265_512_23
                + t * (1.000_023_68
                    + t * (0.374_091_96
                        + t * (0.096_784_18
                            + t * (-0.186_288_06
                                + t * (0.278_868_07
                                    + t * (-1.135_203_98
                                        + t * (1.488_515_87
                                            + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
                .exp();
        if x >= 0.0 { 1.0 - 0.5 * r } else { 0.5 * r }
    }

    #[test]
    fn fill_normal_fast_is_standard_normal() {
        let n = 400_000usize;
        let mut v = vec![0.0f32; n];
        Stream::new(17, "dist").fill_normal_fast(0, &mut v);
        let nf = n as f64;
        let m1 = v.iter().map(|&z| z as f64).sum::<f64>() / nf;
        let m2 = v.iter().map(|&z| (z as f64).powi(2)).sum::<f64>() / nf;
        let m3 = v.iter().map(|&z| (z as f64).powi(3)).sum::<f64>() / nf;
        let m4 = v.iter().map(|&z| (z as f64).powi(4)).sum::<f64>() / nf;
        // Standard errors: 1/√n, √2/√n, √15/√n, √96/√n; 5σ bounds.
        let se = 1.0 / nf.sqrt();
        assert!(m1.abs() < 5.0 * se, "mean {m1}");
        assert!((m2 - 1.0).abs() < 5.0 * 1.42 * se, "variance {m2}");
        assert!(m3.abs() < 5.0 * 3.88 * se, "skewness {m3}");
        assert!((m4 - 3.0).abs() < 5.0 * 9.8 * se, "kurtosis {m4}");
        // Kolmogorov–Smirnov against Φ: D·√n < 1.95 (p ≈ 0.001).
        let mut s: Vec<f64> = v.iter().map(|&z| z as f64).collect();
        s.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let d = s.iter().enumerate().fold(0.0f64, |d, (k, &z)| {
            let f = phi(z);
            d.max((f - k as f64 / nf).abs())
                .max(((k + 1) as f64 / nf - f).abs())
        });
        assert!(d * nf.sqrt() < 1.95, "KS statistic D√n = {}", d * nf.sqrt());
        // χ² on 40 equiprobable bins (39 degrees of freedom; 99.9 % quantile 72.1).
        let bins = 40;
        let mut counts = vec![0usize; bins];
        for &z in &s {
            counts[((phi(z) * bins as f64) as usize).min(bins - 1)] += 1;
        }
        let e = nf / bins as f64;
        let chi2: f64 = counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum();
        assert!(chi2 < 72.1, "chi² = {chi2}");
        // A wrong generator fails the same checks: uniforms scaled to variance 1.
        let u: Vec<f64> = (0..n as u64)
            .map(|i| (Stream::new(17, "dist").uniform(i) as f64 - 0.5) * 12f64.sqrt())
            .collect();
        let mut us = u.clone();
        us.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let du = us
            .iter()
            .enumerate()
            .fold(0.0f64, |d, (k, &z)| d.max((phi(z) - k as f64 / nf).abs()));
        assert!(du * nf.sqrt() > 1.95, "the KS check can fail");
    }

    #[test]
    fn permutation_is_a_permutation_and_seeded() {
        let s = Stream::new(1, "perm");
        let p = s.permutation(1000);
        let mut q = p.clone();
        q.sort();
        assert_eq!(q, (0..1000).collect::<Vec<_>>());
        assert_eq!(p, s.permutation(1000));
        assert_ne!(p, Stream::new(2, "perm").permutation(1000));
        for i in 0..1000 {
            assert!(s.below(i, 7) < 7);
        }
    }
}
