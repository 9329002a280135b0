//! Portable kernels of the additive FFT over GF(2^64) used for long GF(2)\[z\] products
//! (Toeplitz hashing, see `privacy_amplification::afft`).
//!
//! The transform is the one of Lin, Chung and Han, "Novel polynomial basis and its application
//! to Reed–Solomon erasure codes", FOCS 2014 (arXiv:1404.3458), with a Cantor basis of
//! GF(2^64) as in Chen, Cheng, Kuo, Li and Yang, "Faster multiplication for long binary
//! polynomials", arXiv:1708.09746 (2017). One layer `i` splits blocks of 2^(i+1) coefficients
//! into halves `lo`, `hi` and applies the butterfly
//!
//! ```text
//! forward:  lo ← lo + c·hi;  hi ← hi + lo        inverse:  hi ← hi + lo;  lo ← lo + c·hi
//! ```
//!
//! with one constant `c` per block. Field elements are `u64` in the polynomial basis of
//! GF(2)\[z\]/(z^64 + z^4 + z^3 + z + 1) ([`super::portable::gf64_mul`]).
//!
//! These loops are the reference for the PCLMULQDQ and AVX-512 VPCLMULQDQ versions in
//! `x86_64.rs`; `kernels::tests` compares them bit for bit.

use super::portable::reduce_gf64;

/// Multiplication by a fixed element `c`, with a 16-entry table of `c·v` (v < 16) so that a
/// product costs 16 table look-ups instead of 64 conditional shifts.
#[derive(Clone, Copy)]
pub struct ConstMul {
    table: [u128; 16],
}

impl ConstMul {
    /// Tables for `c`.
    #[inline]
    pub fn new(c: u64) -> ConstMul {
        let mut table = [0u128; 16];
        let c = u128::from(c);
        for (v, t) in table.iter_mut().enumerate() {
            let mut acc = 0u128;
            for b in 0..4 {
                if v >> b & 1 == 1 {
                    acc ^= c << b;
                }
            }
            *t = acc;
        }
        ConstMul { table }
    }

    /// `c·x` in GF(2^64).
    #[inline]
    pub fn mul(&self, x: u64) -> u64 {
        let mut acc = 0u128;
        for k in 0..16 {
            acc ^= self.table[((x >> (4 * k)) & 15) as usize] << (4 * k);
        }
        reduce_gf64(acc as u64, (acc >> 64) as u64)
    }
}

/// Forward butterflies `lo[t] ← lo[t] + c·hi[t]; hi[t] ← hi[t] + lo[t]`.
pub fn afft_butterfly_forward(lo: &mut [u64], hi: &mut [u64], c: u64) {
    let m = ConstMul::new(c);
    for (l, h) in lo.iter_mut().zip(hi.iter_mut()) {
        *l ^= m.mul(*h);
        *h ^= *l;
    }
}

/// Inverse butterflies `hi[t] ← hi[t] + lo[t]; lo[t] ← lo[t] + c·hi[t]`.
pub fn afft_butterfly_inverse(lo: &mut [u64], hi: &mut [u64], c: u64) {
    let m = ConstMul::new(c);
    for (l, h) in lo.iter_mut().zip(hi.iter_mut()) {
        *h ^= *l;
        *l ^= m.mul(*h);
    }
}

/// All layers of a chunk of 2^L coefficients, top layer first: layer `i` (block size 2^(i+1))
/// uses the constant `tw[k] ^ base[i]` for its block `k`. `tw` needs `len/2` entries, `base`
/// L entries.
pub fn afft_chunk_forward(data: &mut [u64], tw: &[u64], base: &[u64]) {
    chunk_forward_with(data, tw, base, afft_butterfly_forward);
}

/// Inverse of [`afft_chunk_forward`]: layers bottom first, inverse butterflies.
pub fn afft_chunk_inverse(data: &mut [u64], tw: &[u64], base: &[u64]) {
    chunk_inverse_with(data, tw, base, afft_butterfly_inverse);
}

/// Number of layers of a chunk (`len` a power of two ≥ 2).
#[inline]
pub fn chunk_layers(len: usize) -> usize {
    debug_assert!(len.is_power_of_two() && len >= 2);
    len.trailing_zeros() as usize
}

/// The layer loop of [`afft_chunk_forward`] around any butterfly kernel.
#[inline(always)]
pub fn chunk_forward_with(
    data: &mut [u64],
    tw: &[u64],
    base: &[u64],
    butterfly: impl Fn(&mut [u64], &mut [u64], u64),
) {
    let layers = chunk_layers(data.len());
    for i in (0..layers).rev() {
        let h = 1usize << i;
        for (k, block) in data.chunks_exact_mut(2 * h).enumerate() {
            let (lo, hi) = block.split_at_mut(h);
            butterfly(lo, hi, tw[k] ^ base[i]);
        }
    }
}

/// The layer loop of [`afft_chunk_inverse`] around any inverse butterfly kernel.
#[inline(always)]
pub fn chunk_inverse_with(
    data: &mut [u64],
    tw: &[u64],
    base: &[u64],
    butterfly: impl Fn(&mut [u64], &mut [u64], u64),
) {
    let layers = chunk_layers(data.len());
    for (i, &b) in base.iter().enumerate().take(layers) {
        let h = 1usize << i;
        for (k, block) in data.chunks_exact_mut(2 * h).enumerate() {
            let (lo, hi) = block.split_at_mut(h);
            butterfly(lo, hi, tw[k] ^ b);
        }
    }
}

/// Pointwise product `a[t] ← a[t]·b[t]` in GF(2^64).
pub fn gf64_mul_slice(a: &mut [u64], b: &[u64]) {
    for (x, &y) in a.iter_mut().zip(b) {
        *x = super::portable::gf64_mul(*x, y);
    }
}

/// `dst[t] ^= src[t]`.
pub fn xor_slice(dst: &mut [u64], src: &[u64]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d ^= s;
    }
}
