//! The one pseudo-random generator of the pure crates: SplitMix64 (Steele, Lea and Flood,
//! "Fast splittable pseudorandom number generators", OOPSLA 2014). One `u64` of state, so a
//! detector that draws from it checkpoints it with the rest of its state, and the same seed
//! gives the same stream on every platform. The simulator draws from `rand_chacha` instead,
//! whose streams its scenarios are pinned to.

/// SplitMix64: seedable, serialisable, deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

    /// A generator whose state is `state` as it is (state 0 is a valid start).
    pub fn new(state: u64) -> Self {
        Self(state)
    }

    /// A generator for `seed`, its state spread first so that seeds 1, 2, 3 … start far apart.
    pub fn seeded(seed: u64) -> Self {
        Self(seed.wrapping_mul(Self::GAMMA) ^ 0xdead_beef)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(Self::GAMMA);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in (0, 1): never 0, so its logarithm is finite.
    pub fn open_unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Uniform in 0..n (n ≥ 1), by multiply-shift.
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// A standard normal (Box–Muller on two open-unit draws, the cosine of the pair).
    pub fn gaussian(&mut self) -> f64 {
        let u1 = self.open_unit();
        let u2 = self.open_unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_splitmix64s() {
        // The reference implementation's first outputs from state 0.
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        let mut r = SplitMix64::seeded(7);
        for _ in 0..10_000 {
            let (u, o) = (r.uniform(), r.open_unit());
            assert!((0.0..1.0).contains(&u) && o > 0.0 && o < 1.0);
            assert!(r.below(3) < 3);
            assert!(r.gaussian().is_finite());
        }
    }
}
