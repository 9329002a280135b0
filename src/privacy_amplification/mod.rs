//! Privacy amplification by Toeplitz hashing (a universal₂ family: Carter, Wegman, JCSS 18
//! (1979); its use for quantum-proof extraction: Tomamichel, Schaffner, Smith, Renner,
//! IEEE TIT 57, 5524 (2011); Hayashi, Tsurumaru, PRA 93, 022310 (2016)).
//!
//! Definition (ARCHITECTURE.md §5): a seed `s` of n+m−1 bits maps an input `x` of n bits to
//! `y[i] = XOR_j s[i − j + n − 1] · x[j]`, i in 0..m, j in 0..n, i.e. `y[i]` is coefficient
//! i+n−1 of the GF(2)\[z\] product s(z)·x(z). [`ToeplitzPlan`] picks the algorithm by size:
//! a carry-less schoolbook product of the needed window (PCLMULQDQ) for small blocks and an
//! exact additive FFT over GF(2^64) ([`afft`]) for large ones; an exact number-theoretic
//! transform ([`ntt`], one bit per 31-bit residue, the method of the AIT QKD stack) is kept as
//! an independent cross-check and baseline. [`toeplitz_naive`] is the O(n·m) reference all of
//! them are tested against. All arithmetic is exact: there is no floating point anywhere.
//!
//! **Seeds.** By default Alice draws a fresh seed for every block, which is what the leftover
//! hash lemma (Tomamichel et al. 2011, Thm. 1) assumes. [`ToeplitzPlan::prepare_seed`] lets a
//! caller transform one seed once and hash many blocks with it ([`ToeplitzPlan::hash_prepared`]);
//! that saves one of the three transforms but hashes k blocks with the block-diagonal matrix
//! diag(T, …, T), which is *not* a universal₂ family on the concatenated input (two inputs
//! whose blocks differ by the same vector always collide), so the security statement then
//! needs an extra assumption (blocks independent given Eve's information, e.g. collective
//! attacks). The pipeline never reuses seeds; the option exists for benchmarks and research
//! set-ups that accept that assumption explicitly (`qkd bench pa --reuse-seed`).

pub mod afft;
pub mod ntt;

use crate::bits::{BitVec, words_for};
use crate::error::ConfigError;
use crate::kernels::Kernels;
use afft::Transform;
use ntt::NttPlan;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use zeroize::Zeroize;

/// Algorithms for the Toeplitz product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToeplitzAlgorithm {
    /// Carry-less schoolbook product of the output window.
    Direct,
    /// Exact NTT convolution mod 15·2^27 + 1 (one bit per residue; n + m − 1 ≤ 2^27).
    Ntt,
    /// Exact additive FFT over GF(2^64) (32 bits per element; n + m up to 2^34).
    AdditiveFft,
}

impl ToeplitzAlgorithm {
    /// Name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            ToeplitzAlgorithm::Direct => "direct",
            ToeplitzAlgorithm::Ntt => "ntt",
            ToeplitzAlgorithm::AdditiveFft => "additive_fft",
        }
    }

    /// Parse a name (`direct`, `ntt`, `additive-fft`/`afft`).
    pub fn parse(s: &str) -> Option<ToeplitzAlgorithm> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "direct" | "clmul" => Some(ToeplitzAlgorithm::Direct),
            "ntt" => Some(ToeplitzAlgorithm::Ntt),
            "additive_fft" | "afft" | "fft" => Some(ToeplitzAlgorithm::AdditiveFft),
            _ => None,
        }
    }
}

/// Above this many 64×64 carry-less products the additive FFT is faster (measured with
/// `cargo bench --bench toeplitz`, PERFORMANCE.md).
const DIRECT_MAX_CLMULS: u64 = 1 << 13;

/// Largest supported input: 2^30 bits (a 128 MiB block), far above the 2^27 that users ask for.
pub const MAX_INPUT_BITS: usize = 1 << 30;

/// Buffers reused across blocks of one size (the transforms need two arrays of 2^ℓ words).
/// They hold key-dependent values between the steps of a hash and are wiped after each use
/// and on drop.
#[derive(Default)]
pub struct ToeplitzScratch {
    a: Vec<u64>,
    b: Vec<u64>,
}

impl ToeplitzScratch {
    /// Empty scratch (allocated on first use).
    pub fn new() -> ToeplitzScratch {
        ToeplitzScratch::default()
    }

    /// Bytes currently held.
    pub fn bytes(&self) -> usize {
        8 * (self.a.capacity() + self.b.capacity())
    }
}

impl Drop for ToeplitzScratch {
    fn drop(&mut self) {
        self.a.zeroize();
        self.b.zeroize();
    }
}

/// A seed whose transform was computed once (see the module notes on seed reuse).
pub struct PreparedSeed {
    evals: Vec<u64>,
}

/// A plan for hashing n bits to m bits.
pub struct ToeplitzPlan {
    n: usize,
    m: usize,
    algorithm: ToeplitzAlgorithm,
    ntt: Option<Arc<NttPlan>>,
    afft: Option<Arc<AfftToeplitz>>,
}

/// The geometry of an additive-FFT Toeplitz product.
struct AfftToeplitz {
    transform: Transform,
    /// Elements of the packed seed and input.
    a_len: usize,
    b_len: usize,
    /// First product element that contributes to the output.
    lo: usize,
}

/// Bits per GF(2^64) element in the packing (a product of two pieces has degree ≤ 62).
const PIECE: usize = 32;

impl ToeplitzPlan {
    /// Choose the algorithm for (n, m). Requires 1 ≤ m ≤ n ≤ [`MAX_INPUT_BITS`].
    pub fn new(n: usize, m: usize) -> Result<ToeplitzPlan, ConfigError> {
        let clmuls = (words_for(n + m) as u64) * (words_for(m) as u64 + 1);
        let alg = if clmuls <= DIRECT_MAX_CLMULS {
            ToeplitzAlgorithm::Direct
        } else {
            ToeplitzAlgorithm::AdditiveFft
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
        if n > MAX_INPUT_BITS {
            return Err(ConfigError::invalid(
                "input bits",
                format!("{n} exceeds the largest supported block of 2^30 bits"),
            ));
        }
        let mut plan = ToeplitzPlan {
            n,
            m,
            algorithm,
            ntt: None,
            afft: None,
        };
        match algorithm {
            ToeplitzAlgorithm::Direct => {}
            ToeplitzAlgorithm::Ntt => {
                let log = (n + m - 1).next_power_of_two().trailing_zeros().max(1);
                if log > ntt::MAX_LOG_LEN {
                    return Err(ConfigError::invalid(
                        "input bits",
                        format!(
                            "n + m − 1 = {} exceeds 2^{} (largest exact NTT); use the additive FFT",
                            n + m - 1,
                            ntt::MAX_LOG_LEN
                        ),
                    ));
                }
                plan.ntt = Some(Arc::new(NttPlan::new(log)));
            }
            ToeplitzAlgorithm::AdditiveFft => {
                let a_len = (n + m - 1).div_ceil(PIECE);
                let b_len = n.div_ceil(PIECE);
                let lo = ((n - 1) / PIECE).saturating_sub(1);
                let hi = (n + m - 2) / PIECE;
                let transform = Transform::for_window(a_len, b_len, lo, hi).ok_or_else(|| {
                    ConfigError::invalid("input bits", format!("{n} too large for the transform"))
                })?;
                plan.afft = Some(Arc::new(AfftToeplitz {
                    transform,
                    a_len,
                    b_len,
                    lo,
                }));
            }
        }
        Ok(plan)
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

    /// log2 of the transform length (NTT or additive FFT), if one is used.
    pub fn transform_log_len(&self) -> Option<u32> {
        match self.algorithm {
            ToeplitzAlgorithm::Direct => None,
            ToeplitzAlgorithm::Ntt => self.ntt.as_ref().map(|p| p.len().trailing_zeros()),
            ToeplitzAlgorithm::AdditiveFft => self.afft.as_ref().map(|p| p.transform.log_len()),
        }
    }

    /// Hash `x` (n bits) with `seed` (n + m − 1 bits).
    pub fn hash(&self, k: &Kernels, seed: &BitVec, x: &BitVec) -> BitVec {
        self.hash_with(k, seed, x, &mut ToeplitzScratch::new())
    }

    /// [`ToeplitzPlan::hash`] with caller-owned buffers, reused across blocks.
    pub fn hash_with(
        &self,
        k: &Kernels,
        seed: &BitVec,
        x: &BitVec,
        scratch: &mut ToeplitzScratch,
    ) -> BitVec {
        assert_eq!(x.len(), self.n, "Toeplitz input length");
        assert_eq!(seed.len(), self.seed_bits(), "Toeplitz seed length");
        match self.algorithm {
            ToeplitzAlgorithm::Direct => toeplitz_direct(k, seed, x, self.m),
            ToeplitzAlgorithm::Ntt => {
                toeplitz_ntt(k, self.ntt.as_ref().expect("NTT plan"), seed, x, self.m)
            }
            ToeplitzAlgorithm::AdditiveFft => {
                let p = self.afft.as_ref().expect("additive FFT plan");
                let len = p.transform.len();
                let ToeplitzScratch { a, b } = scratch;
                prepare_buffer(a, len);
                prepare_buffer(b, len);
                rayon::join(
                    || {
                        pack(seed, &mut a[..p.a_len]);
                        p.transform.to_novel(k, a);
                        p.transform.forward(k, a);
                    },
                    || {
                        pack(x, &mut b[..p.b_len]);
                        p.transform.to_novel(k, b);
                        p.transform.forward(k, b);
                    },
                );
                pointwise(k, a, b);
                b.zeroize();
                self.finish_afft(k, p, a)
            }
        }
    }

    /// Transform a seed once for [`ToeplitzPlan::hash_prepared`] (additive-FFT plans only;
    /// see the module notes: reusing a seed weakens the security statement).
    pub fn prepare_seed(&self, k: &Kernels, seed: &BitVec) -> Option<PreparedSeed> {
        assert_eq!(seed.len(), self.seed_bits(), "Toeplitz seed length");
        let p = self.afft.as_ref()?;
        let mut evals = vec![0u64; p.transform.len()];
        pack(seed, &mut evals[..p.a_len]);
        p.transform.to_novel(k, &mut evals);
        p.transform.forward(k, &mut evals);
        Some(PreparedSeed { evals })
    }

    /// Hash `x` with a seed transformed by [`ToeplitzPlan::prepare_seed`] of this plan.
    pub fn hash_prepared(
        &self,
        k: &Kernels,
        seed: &PreparedSeed,
        x: &BitVec,
        scratch: &mut ToeplitzScratch,
    ) -> BitVec {
        assert_eq!(x.len(), self.n, "Toeplitz input length");
        let p = self
            .afft
            .as_ref()
            .expect("hash_prepared needs an additive-FFT plan");
        assert_eq!(
            seed.evals.len(),
            p.transform.len(),
            "seed prepared for another plan"
        );
        let a = &mut scratch.a;
        prepare_buffer(a, p.transform.len());
        pack(x, &mut a[..p.b_len]);
        p.transform.to_novel(k, a);
        p.transform.forward(k, a);
        pointwise(k, a, &seed.evals);
        self.finish_afft(k, p, a)
    }

    /// Interpolate the product in `c`, extract the output window and wipe `c`.
    fn finish_afft(&self, k: &Kernels, p: &AfftToeplitz, c: &mut [u64]) -> BitVec {
        p.transform.inverse(k, c);
        p.transform.from_novel(k, c);
        // Output bit i is product bit n − 1 + i; product bit 32e + r (r < 32) is bit r of c[e]
        // XOR bit r + 32 of c[e − 1].
        let first = p.lo;
        let last = (self.n + self.m - 2) / PIECE;
        let mut words = vec![0u64; (last - first + 2).div_ceil(2)];
        for e in first..=last {
            let low = c[e] & 0xffff_ffff;
            let carry = if e > 0 { c[e - 1] >> 32 } else { 0 };
            let piece = low ^ carry;
            let at = e - first;
            words[at / 2] |= piece << (32 * (at % 2));
        }
        c.zeroize();
        let bits = BitVec::from_words(words.clone(), words.len() * 64);
        words.zeroize();
        let off = self.n - 1 - first * PIECE;
        bits.slice(off, off + self.m)
    }
}

/// Resize to `len` words of zeros (keeping the allocation).
fn prepare_buffer(v: &mut Vec<u64>, len: usize) {
    v.clear();
    v.resize(len, 0);
}

/// Cut a bit string into 32-bit pieces, one per element.
fn pack(bits: &BitVec, out: &mut [u64]) {
    for (e, o) in out.iter_mut().enumerate() {
        let w = bits.words()[e / 2];
        *o = (w >> (32 * (e % 2))) & 0xffff_ffff;
    }
}

/// `a ← a·b` element-wise, on both cores.
fn pointwise(k: &Kernels, a: &mut [u64], b: &[u64]) {
    a.par_chunks_mut(1 << 14)
        .zip(b.par_chunks(1 << 14))
        .for_each(|(x, y)| k.gf64_mul_slice(x, y));
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
    a.zeroize();
    y
}

#[cfg(test)]
mod tests;
