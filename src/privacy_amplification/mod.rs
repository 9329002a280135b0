//! Privacy amplification by Toeplitz hashing (a universal₂ family: Carter, Wegman, JCSS 18
//! (1979); its use for quantum-proof extraction: Tomamichel, Schaffner, Smith, Renner,
//! IEEE TIT 57, 5524 (2011); Hayashi, Tsurumaru, PRA 93, 022310 (2016)).
//!
//! Definition (ARCHITECTURE.md §5): a seed `s` of n+m−1 bits maps an input `x` of n bits to
//! `y[i] = XOR_j s[i − j + n − 1] · x[j]`, i in 0..m, j in 0..n, i.e. `y[i]` is coefficient
//! i+n−1 of the GF(2)\[z\] product s(z)·x(z). [`ToeplitzPlan`] picks the algorithm by size:
//! a carry-less schoolbook product of the needed window (PCLMULQDQ) for small blocks, an exact
//! number-theoretic transform ([`ntt`]) for large ones; [`toeplitz_naive`] is the O(n·m)
//! reference both are tested against. A fresh seed is drawn for every block.

pub mod ntt;

use crate::bits::{BitVec, words_for};
use crate::error::ConfigError;
use crate::kernels::Kernels;
use ntt::NttPlan;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Algorithms for the Toeplitz product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToeplitzAlgorithm {
    /// Carry-less schoolbook product of the output window.
    Direct,
    /// Exact NTT convolution mod 15·2^27 + 1.
    Ntt,
}

/// Above this many 64×64 carry-less products the NTT is faster (measured, PERFORMANCE.md).
const DIRECT_MAX_CLMULS: u64 = 1 << 21;

/// A plan for hashing n bits to m bits.
pub struct ToeplitzPlan {
    n: usize,
    m: usize,
    algorithm: ToeplitzAlgorithm,
    ntt: Option<Arc<NttPlan>>,
}

impl ToeplitzPlan {
    /// Choose the algorithm for (n, m). Requires 1 ≤ m ≤ n and n + m − 1 ≤ 2^27.
    pub fn new(n: usize, m: usize) -> Result<ToeplitzPlan, ConfigError> {
        let clmuls = (words_for(n + m) as u64) * (words_for(m) as u64 + 1);
        let alg = if clmuls <= DIRECT_MAX_CLMULS {
            ToeplitzAlgorithm::Direct
        } else {
            ToeplitzAlgorithm::Ntt
        };
        Self::with_algorithm(n, m, alg)
    }

    /// A plan with a fixed algorithm.
    pub fn with_algorithm(
        n: usize,
        m: usize,
        algorithm: ToeplitzAlgorithm,
    ) -> Result<ToeplitzPlan, ConfigError> {
        if n == 0 || m == 0 || m > n {
            return Err(ConfigError::invalid(
                "output bits",
                format!("need 1 ≤ m ≤ n, got n = {n}, m = {m}"),
            ));
        }
        let ntt = match algorithm {
            ToeplitzAlgorithm::Direct => None,
            ToeplitzAlgorithm::Ntt => {
                let log = (n + m - 1).next_power_of_two().trailing_zeros().max(1);
                if log > ntt::MAX_LOG_LEN {
                    return Err(ConfigError::invalid(
                        "input bits",
                        format!(
                            "n + m − 1 = {} exceeds 2^{} (largest exact NTT)",
                            n + m - 1,
                            ntt::MAX_LOG_LEN
                        ),
                    ));
                }
                Some(Arc::new(NttPlan::new(log)))
            }
        };
        Ok(ToeplitzPlan {
            n,
            m,
            algorithm,
            ntt,
        })
    }

    /// Input length n.
    pub fn input_bits(&self) -> usize {
        self.n
    }

    /// Output length m.
    pub fn output_bits(&self) -> usize {
        self.m
    }

    /// Seed length n + m − 1.
    pub fn seed_bits(&self) -> usize {
        self.n + self.m - 1
    }

    /// The algorithm in use.
    pub fn algorithm(&self) -> ToeplitzAlgorithm {
        self.algorithm
    }

    /// Hash `x` (n bits) with `seed` (n + m − 1 bits).
    pub fn hash(&self, k: &Kernels, seed: &BitVec, x: &BitVec) -> BitVec {
        assert_eq!(x.len(), self.n, "Toeplitz input length");
        assert_eq!(seed.len(), self.seed_bits(), "Toeplitz seed length");
        match self.algorithm {
            ToeplitzAlgorithm::Direct => toeplitz_direct(k, seed, x, self.m),
            ToeplitzAlgorithm::Ntt => {
                toeplitz_ntt(k, self.ntt.as_ref().expect("NTT plan"), seed, x, self.m)
            }
        }
    }
}

/// Reference: `y[i] = XOR_j s[i − j + n − 1]·x[j]`, bit by bit, O(n·m).
pub fn toeplitz_naive(seed: &BitVec, x: &BitVec, m: usize) -> BitVec {
    let n = x.len();
    assert_eq!(seed.len(), n + m - 1);
    let mut y = BitVec::zeros(m);
    for i in 0..m {
        let mut acc = false;
        for j in 0..n {
            acc ^= seed.get(i + n - 1 - j) & x.get(j);
        }
        y.set(i, acc);
    }
    y
}

/// Bits [n−1, n−1+m) of the carry-less product seed·x, computed on the needed words only.
pub fn toeplitz_direct(k: &Kernels, seed: &BitVec, x: &BitVec, m: usize) -> BitVec {
    let n = x.len();
    let lo_bit = n - 1;
    let lo_word = lo_bit / 64;
    let hi_word = (lo_bit + m - 1) / 64 + 1;
    let mut window = vec![0u64; hi_word - lo_word + 1];
    k.clmul_window(seed.words(), x.words(), &mut window, lo_word);
    let full = BitVec::from_words(window, (hi_word - lo_word + 1) * 64);
    full.slice(lo_bit % 64, lo_bit % 64 + m)
}

/// The same product by exact NTT convolution of 0/1 sequences.
pub fn toeplitz_ntt(k: &Kernels, plan: &NttPlan, seed: &BitVec, x: &BitVec, m: usize) -> BitVec {
    let n = x.len();
    let len = plan.len();
    assert!(n + m - 1 <= len);
    let one = ntt::into_mont(1);
    let spread = |bits: &BitVec| -> Vec<u32> {
        let mut v = vec![0u32; len];
        for (w, chunk) in bits.words().iter().zip(v.chunks_mut(64)) {
            let mut word = *w;
            while word != 0 {
                let t = word.trailing_zeros() as usize;
                chunk[t] = one;
                word &= word - 1;
            }
        }
        v
    };
    let (mut a, mut b) = rayon::join(
        || {
            let mut a = spread(seed);
            plan.forward(k, &mut a);
            a
        },
        || {
            let mut b = spread(x);
            plan.forward(k, &mut b);
            b
        },
    );
    NttPlan::pointwise(k, &mut a, &b);
    drop(std::mem::take(&mut b));
    plan.inverse(k, &mut a);
    let mut y = BitVec::zeros(m);
    for (wi, w) in y.words_mut().iter_mut().enumerate() {
        let base = n - 1 + wi * 64;
        let top = (m - wi * 64).min(64);
        let mut acc = 0u64;
        for t in 0..top {
            acc |= u64::from(a[base + t] & 1) << t;
        }
        *w = acc;
    }
    // The spread arrays held key bits.
    zeroize::Zeroize::zeroize(&mut a);
    y
}

#[cfg(test)]
mod tests;
