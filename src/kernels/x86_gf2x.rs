//! x86-64 kernels of the additive FFT over GF(2^64) (see [`super::gf2x`] for the transform and
//! its references): scalar PCLMULQDQ, and AVX-512 with VPCLMULQDQ (four 64×64 carry-less
//! products per instruction, two instructions per eight lanes).
//!
//! Every `#[target_feature]` function is reached only through a safe wrapper that a
//! [`super::Kernels`] table holds after the features were detected.

use super::gf2x::{chunk_forward_with, chunk_inverse_with};
use super::portable::reduce_gf64;
use std::arch::x86_64::*;

// ---------------------------------------------------------------------------------------------
// Scalar PCLMULQDQ.

#[inline]
#[target_feature(enable = "pclmulqdq,sse4.1")]
fn gf64_mul_pclmul(a: u64, b: u64) -> u64 {
    let p = _mm_clmulepi64_si128(
        _mm_set_epi64x(0, a as i64),
        _mm_set_epi64x(0, b as i64),
        0x00,
    );
    reduce_gf64(
        _mm_cvtsi128_si64(p) as u64,
        _mm_extract_epi64::<1>(p) as u64,
    )
}

#[inline]
#[target_feature(enable = "pclmulqdq,sse4.1")]
fn butterfly_forward_pclmul_impl(lo: &mut [u64], hi: &mut [u64], c: u64) {
    for (l, h) in lo.iter_mut().zip(hi.iter_mut()) {
        *l ^= gf64_mul_pclmul(*h, c);
        *h ^= *l;
    }
}

#[inline]
#[target_feature(enable = "pclmulqdq,sse4.1")]
fn butterfly_inverse_pclmul_impl(lo: &mut [u64], hi: &mut [u64], c: u64) {
    for (l, h) in lo.iter_mut().zip(hi.iter_mut()) {
        *h ^= *l;
        *l ^= gf64_mul_pclmul(*h, c);
    }
}

pub(super) fn butterfly_forward_pclmul(lo: &mut [u64], hi: &mut [u64], c: u64) {
    // SAFETY: only stored in a table after `pclmulqdq` and `sse4.1` were detected.
    unsafe { butterfly_forward_pclmul_impl(lo, hi, c) }
}

pub(super) fn butterfly_inverse_pclmul(lo: &mut [u64], hi: &mut [u64], c: u64) {
    // SAFETY: only stored in a table after `pclmulqdq` and `sse4.1` were detected.
    unsafe { butterfly_inverse_pclmul_impl(lo, hi, c) }
}

#[target_feature(enable = "pclmulqdq,sse4.1")]
fn chunk_forward_pclmul_impl(data: &mut [u64], tw: &[u64], base: &[u64]) {
    chunk_forward_with(data, tw, base, |l, h, c| {
        butterfly_forward_pclmul_impl(l, h, c)
    });
}

#[target_feature(enable = "pclmulqdq,sse4.1")]
fn chunk_inverse_pclmul_impl(data: &mut [u64], tw: &[u64], base: &[u64]) {
    chunk_inverse_with(data, tw, base, |l, h, c| {
        butterfly_inverse_pclmul_impl(l, h, c)
    });
}

pub(super) fn chunk_forward_pclmul(data: &mut [u64], tw: &[u64], base: &[u64]) {
    // SAFETY: only stored in a table after `pclmulqdq` and `sse4.1` were detected.
    unsafe { chunk_forward_pclmul_impl(data, tw, base) }
}

pub(super) fn chunk_inverse_pclmul(data: &mut [u64], tw: &[u64], base: &[u64]) {
    // SAFETY: only stored in a table after `pclmulqdq` and `sse4.1` were detected.
    unsafe { chunk_inverse_pclmul_impl(data, tw, base) }
}

#[target_feature(enable = "pclmulqdq,sse4.1")]
fn mul_slice_pclmul_impl(a: &mut [u64], b: &[u64]) {
    for (x, &y) in a.iter_mut().zip(b) {
        *x = gf64_mul_pclmul(*x, y);
    }
}

pub(super) fn mul_slice_pclmul(a: &mut [u64], b: &[u64]) {
    // SAFETY: only stored in a table after `pclmulqdq` and `sse4.1` were detected.
    unsafe { mul_slice_pclmul_impl(a, b) }
}

// ---------------------------------------------------------------------------------------------
// AVX-512 + VPCLMULQDQ.

/// Reduce eight 128-bit products (low halves `lo`, high halves `hi`) modulo
/// z^64 + z^4 + z^3 + z + 1, as [`reduce_gf64`] does for one.
#[inline]
#[target_feature(enable = "avx512f")]
fn reduce8(lo: __m512i, hi: __m512i) -> __m512i {
    const XOR3: i32 = 0x96;
    let t = _mm512_ternarylogic_epi64::<XOR3>(
        hi,
        _mm512_slli_epi64::<1>(hi),
        _mm512_slli_epi64::<3>(hi),
    );
    let t = _mm512_ternarylogic_epi64::<XOR3>(t, _mm512_slli_epi64::<4>(hi), lo);
    let o = _mm512_ternarylogic_epi64::<XOR3>(
        _mm512_srli_epi64::<63>(hi),
        _mm512_srli_epi64::<61>(hi),
        _mm512_srli_epi64::<60>(hi),
    );
    let r = _mm512_ternarylogic_epi64::<XOR3>(t, o, _mm512_slli_epi64::<1>(o));
    _mm512_ternarylogic_epi64::<XOR3>(r, _mm512_slli_epi64::<3>(o), _mm512_slli_epi64::<4>(o))
}

/// Lane-wise GF(2^64) product of eight elements.
#[inline]
#[target_feature(enable = "avx512f,vpclmulqdq")]
fn mul8(x: __m512i, c: __m512i) -> __m512i {
    let p0 = _mm512_clmulepi64_epi128::<0x00>(x, c);
    let p1 = _mm512_clmulepi64_epi128::<0x11>(x, c);
    reduce8(_mm512_unpacklo_epi64(p0, p1), _mm512_unpackhi_epi64(p0, p1))
}

#[inline]
#[target_feature(enable = "avx512f")]
fn load8(s: &[u64], at: usize) -> __m512i {
    debug_assert!(at + 8 <= s.len());
    // SAFETY: `at + 8 <= s.len()` (checked by every caller's loop bounds).
    unsafe { _mm512_loadu_si512(s.as_ptr().add(at).cast()) }
}

#[inline]
#[target_feature(enable = "avx512f")]
fn store8(s: &mut [u64], at: usize, v: __m512i) {
    debug_assert!(at + 8 <= s.len());
    // SAFETY: `at + 8 <= s.len()` (checked by every caller's loop bounds).
    unsafe { _mm512_storeu_si512(s.as_mut_ptr().add(at).cast(), v) }
}

/// Load the first `count` (≤ 8) entries of `s[at..]`; the other lanes are zero.
#[inline]
#[target_feature(enable = "avx512f")]
fn load_partial(s: &[u64], at: usize, count: usize) -> __m512i {
    assert!(count <= 8 && at + count <= s.len());
    let mask: __mmask8 = ((1u32 << count) - 1) as u8;
    // SAFETY: masked-off lanes are not read; the unmasked ones are in bounds (asserted).
    unsafe { _mm512_maskz_loadu_epi64(mask, s.as_ptr().add(at).cast()) }
}

#[inline]
#[target_feature(enable = "avx512f,vpclmulqdq")]
fn butterfly_forward_avx512_impl(lo: &mut [u64], hi: &mut [u64], c: u64) {
    let n = lo.len().min(hi.len());
    let cv = _mm512_set1_epi64(c as i64);
    let mut t = 0;
    while t + 8 <= n {
        let h = load8(hi, t);
        let l = _mm512_xor_si512(load8(lo, t), mul8(h, cv));
        store8(lo, t, l);
        store8(hi, t, _mm512_xor_si512(h, l));
        t += 8;
    }
    butterfly_forward_pclmul_impl(&mut lo[t..n], &mut hi[t..n], c);
}

#[inline]
#[target_feature(enable = "avx512f,vpclmulqdq")]
fn butterfly_inverse_avx512_impl(lo: &mut [u64], hi: &mut [u64], c: u64) {
    let n = lo.len().min(hi.len());
    let cv = _mm512_set1_epi64(c as i64);
    let mut t = 0;
    while t + 8 <= n {
        let l = load8(lo, t);
        let h = _mm512_xor_si512(load8(hi, t), l);
        store8(hi, t, h);
        store8(lo, t, _mm512_xor_si512(l, mul8(h, cv)));
        t += 8;
    }
    butterfly_inverse_pclmul_impl(&mut lo[t..n], &mut hi[t..n], c);
}

pub(super) fn butterfly_forward_avx512(lo: &mut [u64], hi: &mut [u64], c: u64) {
    // SAFETY: only stored in a table after `avx512f`, `vpclmulqdq`, `pclmulqdq` and `sse4.1`
    // were detected.
    unsafe { butterfly_forward_avx512_impl(lo, hi, c) }
}

pub(super) fn butterfly_inverse_avx512(lo: &mut [u64], hi: &mut [u64], c: u64) {
    // SAFETY: as for `butterfly_forward_avx512`.
    unsafe { butterfly_inverse_avx512_impl(lo, hi, c) }
}

// Lane indices for `_mm512_permutex2var_epi64` (0–7: first operand, 8–15: second) that move
// a group of 16 coefficients between the layouts of the bottom three layers: `A`, `B` are the
// coefficients in order, `Lk`/`Hk` the lower/upper halves of the blocks of layer k.
const AB_TO_L2: [i64; 8] = [0, 1, 2, 3, 8, 9, 10, 11];
const AB_TO_H2: [i64; 8] = [4, 5, 6, 7, 12, 13, 14, 15];
const L2_TO_L1: [i64; 8] = [0, 1, 8, 9, 4, 5, 12, 13];
const L2_TO_H1: [i64; 8] = [2, 3, 10, 11, 6, 7, 14, 15];
const L1_TO_L0: [i64; 8] = [0, 8, 2, 10, 4, 12, 6, 14];
const L1_TO_H0: [i64; 8] = [1, 9, 3, 11, 5, 13, 7, 15];
const L0_TO_A: [i64; 8] = [0, 8, 1, 9, 2, 10, 3, 11];
const L0_TO_B: [i64; 8] = [4, 12, 5, 13, 6, 14, 7, 15];
const AB_TO_L0: [i64; 8] = [0, 2, 4, 6, 8, 10, 12, 14];
const AB_TO_H0: [i64; 8] = [1, 3, 5, 7, 9, 11, 13, 15];
const BCAST2: [i64; 8] = [0, 0, 0, 0, 1, 1, 1, 1];
const BCAST4: [i64; 8] = [0, 0, 1, 1, 2, 2, 3, 3];

#[inline]
#[target_feature(enable = "avx512f")]
fn perm2(a: __m512i, i: [i64; 8], b: __m512i) -> __m512i {
    // SAFETY: `i` is an 8-lane array; unaligned load of 64 bytes from it.
    let iv = unsafe { _mm512_loadu_si512(i.as_ptr().cast()) };
    _mm512_permutex2var_epi64(a, iv, b)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn perm1(i: [i64; 8], a: __m512i) -> __m512i {
    // SAFETY: `i` is an 8-lane array; unaligned load of 64 bytes from it.
    let iv = unsafe { _mm512_loadu_si512(i.as_ptr().cast()) };
    _mm512_permutexvar_epi64(iv, a)
}

/// The three bottom layers (block sizes 8, 4, 2) on groups of 16 coefficients, in registers.
#[inline]
#[target_feature(enable = "avx512f,vpclmulqdq")]
fn bottom3_forward(data: &mut [u64], tw: &[u64], base: &[u64]) {
    let b2 = _mm512_set1_epi64(base[2] as i64);
    let b1 = _mm512_set1_epi64(base[1] as i64);
    let b0 = _mm512_set1_epi64(base[0] as i64);
    let mut g = 0;
    while 16 * g + 16 <= data.len() {
        let a = load8(data, 16 * g);
        let b = load8(data, 16 * g + 8);
        // Layer 2: blocks 2g, 2g+1 of 8.
        let c2 = _mm512_xor_si512(perm1(BCAST2, load_partial(tw, 2 * g, 2)), b2);
        let l = perm2(a, AB_TO_L2, b);
        let h = perm2(a, AB_TO_H2, b);
        let l = _mm512_xor_si512(l, mul8(h, c2));
        let h = _mm512_xor_si512(h, l);
        // Layer 1: blocks 4g..4g+4 of 4.
        let c1 = _mm512_xor_si512(perm1(BCAST4, load_partial(tw, 4 * g, 4)), b1);
        let (l, h) = (perm2(l, L2_TO_L1, h), perm2(l, L2_TO_H1, h));
        let l = _mm512_xor_si512(l, mul8(h, c1));
        let h = _mm512_xor_si512(h, l);
        // Layer 0: blocks 8g..8g+8 of 2.
        let c0 = _mm512_xor_si512(load8(tw, 8 * g), b0);
        let (l, h) = (perm2(l, L1_TO_L0, h), perm2(l, L1_TO_H0, h));
        let l = _mm512_xor_si512(l, mul8(h, c0));
        let h = _mm512_xor_si512(h, l);
        store8(data, 16 * g, perm2(l, L0_TO_A, h));
        store8(data, 16 * g + 8, perm2(l, L0_TO_B, h));
        g += 1;
    }
}

/// Inverse of [`bottom3_forward`].
#[inline]
#[target_feature(enable = "avx512f,vpclmulqdq")]
fn bottom3_inverse(data: &mut [u64], tw: &[u64], base: &[u64]) {
    let b2 = _mm512_set1_epi64(base[2] as i64);
    let b1 = _mm512_set1_epi64(base[1] as i64);
    let b0 = _mm512_set1_epi64(base[0] as i64);
    let mut g = 0;
    while 16 * g + 16 <= data.len() {
        let a = load8(data, 16 * g);
        let b = load8(data, 16 * g + 8);
        // Layer 0.
        let c0 = _mm512_xor_si512(load8(tw, 8 * g), b0);
        let (l, h) = (perm2(a, AB_TO_L0, b), perm2(a, AB_TO_H0, b));
        let h = _mm512_xor_si512(h, l);
        let l = _mm512_xor_si512(l, mul8(h, c0));
        // Layer 1.
        let c1 = _mm512_xor_si512(perm1(BCAST4, load_partial(tw, 4 * g, 4)), b1);
        let (l, h) = (perm2(l, L1_TO_L0, h), perm2(l, L1_TO_H0, h));
        let h = _mm512_xor_si512(h, l);
        let l = _mm512_xor_si512(l, mul8(h, c1));
        // Layer 2.
        let c2 = _mm512_xor_si512(perm1(BCAST2, load_partial(tw, 2 * g, 2)), b2);
        let (l, h) = (perm2(l, L2_TO_L1, h), perm2(l, L2_TO_H1, h));
        let h = _mm512_xor_si512(h, l);
        let l = _mm512_xor_si512(l, mul8(h, c2));
        store8(data, 16 * g, perm2(l, AB_TO_L2, h));
        store8(data, 16 * g + 8, perm2(l, AB_TO_H2, h));
        g += 1;
    }
}

#[target_feature(enable = "avx512f,vpclmulqdq,pclmulqdq,sse4.1")]
fn chunk_forward_avx512_impl(data: &mut [u64], tw: &[u64], base: &[u64]) {
    let layers = super::gf2x::chunk_layers(data.len());
    if layers < 4 {
        chunk_forward_pclmul_impl(data, tw, base);
        return;
    }
    for i in (3..layers).rev() {
        let h = 1usize << i;
        for (k, block) in data.chunks_exact_mut(2 * h).enumerate() {
            let (lo, hi) = block.split_at_mut(h);
            butterfly_forward_avx512_impl(lo, hi, tw[k] ^ base[i]);
        }
    }
    bottom3_forward(data, tw, base);
}

#[target_feature(enable = "avx512f,vpclmulqdq,pclmulqdq,sse4.1")]
fn chunk_inverse_avx512_impl(data: &mut [u64], tw: &[u64], base: &[u64]) {
    let layers = super::gf2x::chunk_layers(data.len());
    if layers < 4 {
        chunk_inverse_pclmul_impl(data, tw, base);
        return;
    }
    bottom3_inverse(data, tw, base);
    for (i, &b) in base.iter().enumerate().take(layers).skip(3) {
        let h = 1usize << i;
        for (k, block) in data.chunks_exact_mut(2 * h).enumerate() {
            let (lo, hi) = block.split_at_mut(h);
            butterfly_inverse_avx512_impl(lo, hi, tw[k] ^ b);
        }
    }
}

pub(super) fn chunk_forward_avx512(data: &mut [u64], tw: &[u64], base: &[u64]) {
    // SAFETY: as for `butterfly_forward_avx512`.
    unsafe { chunk_forward_avx512_impl(data, tw, base) }
}

pub(super) fn chunk_inverse_avx512(data: &mut [u64], tw: &[u64], base: &[u64]) {
    // SAFETY: as for `butterfly_forward_avx512`.
    unsafe { chunk_inverse_avx512_impl(data, tw, base) }
}

#[target_feature(enable = "avx512f,vpclmulqdq,pclmulqdq,sse4.1")]
fn mul_slice_avx512_impl(a: &mut [u64], b: &[u64]) {
    let n = a.len().min(b.len());
    let mut t = 0;
    while t + 8 <= n {
        store8(a, t, mul8(load8(a, t), load8(b, t)));
        t += 8;
    }
    mul_slice_pclmul_impl(&mut a[t..n], &b[t..n]);
}

pub(super) fn mul_slice_avx512(a: &mut [u64], b: &[u64]) {
    // SAFETY: as for `butterfly_forward_avx512`.
    unsafe { mul_slice_avx512_impl(a, b) }
}

#[target_feature(enable = "avx512f")]
fn xor_slice_avx512_impl(dst: &mut [u64], src: &[u64]) {
    // Auto-vectorised with 512-bit registers.
    for (d, &s) in dst.iter_mut().zip(src) {
        *d ^= s;
    }
}

pub(super) fn xor_slice_avx512(dst: &mut [u64], src: &[u64]) {
    // SAFETY: only stored in a table after `avx512f` was detected.
    unsafe { xor_slice_avx512_impl(dst, src) }
}
