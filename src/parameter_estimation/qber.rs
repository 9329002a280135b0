//! Error-rate estimation from a disclosed random sample of key-basis bits.
//!
//! Alice picks the sample positions with a fresh random seed after Bob's detections are fixed
//! (so the positions are independent of anything Eve did), discloses her bits there, and Bob
//! counts the mismatches. The sampled bits are removed from the key; the disclosure is entered
//! in the ledger as a parameter-estimation disclosure of discarded bits.

use crate::bits::BitVec;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

/// `k` distinct positions in `0..n`, sorted, derived from `seed` (Floyd's sampling algorithm,
/// Bentley & Floyd, CACM 30(9) 1987), so both parties derive the same set from the seed.
pub fn sample_positions(n: usize, k: usize, seed: &[u8; 32]) -> Vec<usize> {
    let k = k.min(n);
    let mut rng = ChaCha20Rng::from_seed(*seed);
    let mut chosen = std::collections::HashSet::with_capacity(k);
    for j in n - k..n {
        let t = rng.random_range(0..=j);
        if !chosen.insert(t) {
            chosen.insert(j);
        }
    }
    let mut v: Vec<usize> = chosen.into_iter().collect();
    v.sort_unstable();
    v
}

/// A mask of length `n` with the given positions set.
pub fn positions_mask(n: usize, positions: &[usize]) -> BitVec {
    let mut m = BitVec::zeros(n);
    for &p in positions {
        m.set(p, true);
    }
    m
}

/// An error-rate estimate from a sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QberEstimate {
    /// Bits compared.
    pub sample_bits: u64,
    /// Mismatches found.
    pub errors: u64,
}

impl QberEstimate {
    /// Point estimate errors / sample (0 for an empty sample).
    pub fn rate(&self) -> f64 {
        if self.sample_bits == 0 {
            0.0
        } else {
            self.errors as f64 / self.sample_bits as f64
        }
    }

    /// One-sided upper confidence bound: rate + √(ln(1/ε) / (2k)) (Hoeffding 1963).
    pub fn upper_bound(&self, eps: f64) -> f64 {
        if self.sample_bits == 0 {
            return 0.5;
        }
        (self.rate() + ((1.0 / eps).ln() / (2.0 * self.sample_bits as f64)).sqrt()).min(0.5)
    }
}
