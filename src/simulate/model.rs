//! What both modes of `driftless simulate` share: the seeded generator, the random writes,
//! the merge model and the fate of a write.

/// SplitMix64: a tiny, fixed, portable generator, so that a seed gives the same scenario on
/// every machine and every Rust version (the standard library's hashers promise neither).
#[derive(Debug, Clone)]
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n` > 0).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// True with probability `pct` percent.
    pub(super) fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}
