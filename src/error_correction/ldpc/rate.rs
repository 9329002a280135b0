//! Rate adaptation by puncturing and shortening (Elkouss, Martinez-Mateo, Martin, "Information
//! reconciliation for quantum key distribution", QIC 11, 226 (2011); Martinez-Mateo, Elkouss,
//! Martin, "Blind reconciliation", QIC 12, 791 (2012)).
//!
//! A frame of code length n holds `p` punctured positions (filled by Alice with secret random
//! bits, unknown to Bob: LLR 0) and `s` shortened ones (filled with public pseudo-random bits:
//! exact LLR); the other k = n − p − s positions carry key bits, so the rate is
//! R = (R₀ − σ)/(1 − π − σ) with π = p/n, σ = s/n. The syndrome of m bits then discloses at most m − p bits about the key when
//! the punctured columns of H are linearly independent — guaranteed here because punctured
//! positions are taken from *untainted* column blocks (no two share a base row: Elkouss,
//! Martinez-Mateo, Martin, "Untainted puncturing for irregular LDPC codes", ITW 2012), so their
//! columns have disjoint supports. Revealing a punctured bit (blind reconciliation) turns it
//! into a shortened one and discloses one more bit.

use super::code::{QcCode, Z};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// The fixed position lists of a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdaptationPattern {
    /// Code length.
    pub n: usize,
    /// Positions that may be punctured, in puncturing order (untainted column blocks, lowest
    /// degree first).
    pub puncturable: Vec<u32>,
    /// All other positions in a seeded random order: shortened positions are taken from the front.
    pub shortenable: Vec<u32>,
}

impl AdaptationPattern {
    /// Patterns for `code`; `seed` orders the shortening positions.
    pub fn new(code: &QcCode, seed: u64) -> AdaptationPattern {
        let n = code.n();
        let degrees = code.column_degrees();
        // Untainted column blocks, greedily by increasing degree.
        let mut order: Vec<usize> = (0..code.nb).collect();
        order.sort_by_key(|&c| (degrees[c], c));
        let mut rows_of_col: Vec<Vec<usize>> = vec![Vec::new(); code.nb];
        for (r, row) in code.rows.iter().enumerate() {
            for &(c, _) in row {
                rows_of_col[c as usize].push(r);
            }
        }
        let mut row_used = vec![false; code.mb];
        let mut blocks = Vec::new();
        for c in order {
            if rows_of_col[c].iter().all(|&r| !row_used[r]) {
                for &r in &rows_of_col[c] {
                    row_used[r] = true;
                }
                blocks.push(c);
            }
        }
        // Keep puncturing to at most a fifth of the checks: beyond that decoding collapses.
        blocks.truncate((code.mb / 5).max(1));
        let puncturable: Vec<u32> = blocks
            .iter()
            .flat_map(|&c| (0..Z).map(move |t| (c * Z + t) as u32))
            .collect();
        let taken: std::collections::HashSet<u32> = puncturable.iter().copied().collect();
        let mut shortenable: Vec<u32> = (0..n as u32).filter(|i| !taken.contains(i)).collect();
        shortenable.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        AdaptationPattern {
            n,
            puncturable,
            shortenable,
        }
    }

    /// Largest number of punctured positions.
    pub fn max_punctured(&self) -> usize {
        self.puncturable.len()
    }

    /// The layout of a frame with `p` punctured and `s` shortened positions; the remaining
    /// positions carry key bits.
    pub fn layout(&self, p: usize, s: usize) -> FrameLayout {
        assert!(p <= self.puncturable.len() && s <= self.shortenable.len());
        let punctured: Vec<u32> = self.puncturable[..p].to_vec();
        let shortened: Vec<u32> = self.shortenable[..s].to_vec();
        let mut is_adapt = vec![false; self.n];
        for &i in punctured.iter().chain(&shortened) {
            is_adapt[i as usize] = true;
        }
        let key: Vec<u32> = (0..self.n as u32)
            .filter(|&i| !is_adapt[i as usize])
            .collect();
        let mask = |positions: &[u32]| {
            let mut m = vec![0u64; self.n.div_ceil(64)];
            for &i in positions {
                m[i as usize / 64] |= 1 << (i % 64);
            }
            m
        };
        FrameLayout {
            key_mask: mask(&key),
            short_mask: mask(&shortened),
            punct_mask: mask(&punctured),
            punctured,
            shortened,
            key,
        }
    }
}

/// Where each kind of bit sits in one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameLayout {
    /// Punctured positions (secret random, LLR 0); blind reveals take them from the end.
    pub punctured: Vec<u32>,
    /// Shortened positions (public pseudo-random values).
    pub shortened: Vec<u32>,
    /// Key positions, in key-bit order (increasing).
    pub key: Vec<u32>,
    /// Key positions as a bit mask over the codeword (key bit i sits at the i-th set bit).
    pub key_mask: Vec<u64>,
    /// Shortened positions as a mask (shortened value j sits at the j-th set bit).
    pub short_mask: Vec<u64>,
    /// Punctured positions as a mask (punctured value j sits at the j-th set bit).
    pub punct_mask: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use super::super::construction::build;
    use super::*;

    #[test]
    fn punctured_columns_are_untainted_and_layouts_partition_the_code() {
        let code = build(0.8, 256, 3).unwrap();
        let pat = AdaptationPattern::new(&code, 9);
        assert!(
            pat.max_punctured() >= code.n() / 50,
            "only {} puncturable",
            pat.max_punctured()
        );
        // No two punctured columns share a row of the expanded matrix.
        let h = code.expand();
        let mut row_owner = vec![u32::MAX; h.m()];
        for &c in &pat.puncturable {
            for &r in h.col(c as usize) {
                assert_eq!(
                    row_owner[r as usize],
                    u32::MAX,
                    "row {r} shared by punctured columns"
                );
                row_owner[r as usize] = c;
            }
        }
        for (p, s) in [(0, 0), (1, 5000), (100, 7), (pat.max_punctured(), 3000)] {
            let l = pat.layout(p, s);
            assert_eq!(l.punctured.len(), p);
            assert_eq!(l.shortened.len(), s);
            assert_eq!(l.key.len(), code.n() - p - s);
            let mut all: Vec<u32> = l
                .punctured
                .iter()
                .chain(&l.shortened)
                .chain(&l.key)
                .copied()
                .collect();
            all.sort_unstable();
            assert_eq!(all, (0..code.n() as u32).collect::<Vec<_>>());
        }
    }
}
