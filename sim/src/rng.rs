//! Counter-based random streams (Philox4x32-10, Salmon et al. 2011).
//!
//! A [`Stream`] is derived from a master seed and a stream name ("init", "data.order",
//! "noise.read.layer2", ...). Draw `i` of a stream is a pure function of (seed, name, i): no state is
//! carried between draws, so results do not depend on the thread count, the batch split or the
//! backend (the GPU backend evaluates the same function). Different names give independent streams.

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
