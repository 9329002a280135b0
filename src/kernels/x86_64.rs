//! x86-64 kernels: POPCNT, PCLMULQDQ, BMI2 `pext`, AVX-512 VPOPCNTDQ.
//!
//! Every `#[target_feature]` function here is reached only through a safe wrapper stored in a
//! [`Kernels`] table built by [`kernels`], which checks the features first.

use super::{Isa, Kernels, portable};
use std::arch::x86_64::*;

/// Build the kernel table for `isa` if this CPU supports it.
pub(super) fn kernels(isa: Isa) -> Option<Kernels> {
    let v2 = is_x86_feature_detected!("popcnt")
        && is_x86_feature_detected!("pclmulqdq")
        && is_x86_feature_detected!("sse4.1");
    let v3 = v2
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("bmi1")
        && is_x86_feature_detected!("bmi2")
        && is_x86_feature_detected!("fma");
    let avx512 = v3
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vpopcntdq");
    // Compaction uses `pext` only where it runs in hardware.
    let compact: super::CompactFn = if pext_is_fast() {
        compact_bmi2
    } else {
        portable::compact
    };
    let mut k = Kernels {
        isa: Isa::X86V2,
        compact: portable::compact,
        popcount: popcount_popcnt,
        xor_popcount: xor_popcount_popcnt,
        and_popcount: and_popcount_popcnt,
        poly_hash: poly_hash_pclmul,
        clmul_window: clmul_window_pclmul,
        ntt_forward: super::ntt::forward,
        ntt_inverse: super::ntt::inverse,
        ntt_pointwise: super::ntt::pointwise,
    };
    match isa {
        Isa::Portable => Some(Kernels::portable()),
        Isa::X86V2 if v2 => Some(k),
        Isa::X86V3 if v3 => {
            k.isa = Isa::X86V3;
            k.compact = compact;
            k.ntt_forward = ntt_forward_avx2;
            k.ntt_inverse = ntt_inverse_avx2;
            k.ntt_pointwise = ntt_pointwise_avx2;
            Some(k)
        }
        Isa::X86Avx512 if avx512 => {
            k.isa = Isa::X86Avx512;
            k.compact = compact;
            k.ntt_forward = ntt_forward_avx512;
            k.ntt_inverse = ntt_inverse_avx512;
            k.ntt_pointwise = ntt_pointwise_avx512;
            k.popcount = popcount_avx512;
            k.xor_popcount = xor_popcount_avx512;
            k.and_popcount = and_popcount_avx512;
            Some(k)
        }
        _ => None,
    }
}

/// AMD family 17h (Zen 1/2) implements `pext` in microcode (~250 cycles); every Intel CPU with
/// BMI2 and AMD from Zen 3 (family 19h) on do it in one cycle. Use `pext` only where it is fast.
fn pext_is_fast() -> bool {
    // `cpuid` is available on every x86-64 CPU (safe intrinsic).
    let v = __cpuid(0);
    let f = __cpuid(1);
    let base = (f.eax >> 8) & 0xf;
    let ext = (f.eax >> 20) & 0xff;
    let family = if base == 0xf { base + ext } else { base };
    let vendor = [v.ebx, v.edx, v.ecx];
    let amd = vendor == [0x6874_7541, 0x6974_6e65, 0x444d_4163]; // "AuthenticAMD"
    !(amd && family < 0x19)
}

fn popcount_popcnt(words: &[u64]) -> u64 {
    // SAFETY: only stored in a table after `popcnt` was detected.
    unsafe { popcount_popcnt_impl(words) }
}

#[target_feature(enable = "popcnt")]
fn popcount_popcnt_impl(words: &[u64]) -> u64 {
    words.iter().map(|w| u64::from(w.count_ones())).sum()
}

fn xor_popcount_popcnt(a: &[u64], b: &[u64]) -> u64 {
    // SAFETY: only stored in a table after `popcnt` was detected.
    unsafe { xor_popcount_popcnt_impl(a, b) }
}

#[target_feature(enable = "popcnt")]
fn xor_popcount_popcnt_impl(a: &[u64], b: &[u64]) -> u64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| u64::from((x ^ y).count_ones()))
        .sum()
}

fn and_popcount_popcnt(a: &[u64], b: &[u64]) -> u64 {
    // SAFETY: only stored in a table after `popcnt` was detected.
    unsafe { and_popcount_popcnt_impl(a, b) }
}

#[target_feature(enable = "popcnt")]
fn and_popcount_popcnt_impl(a: &[u64], b: &[u64]) -> u64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| u64::from((x & y).count_ones()))
        .sum()
}

fn compact_bmi2(src: &[u64], mask: &[u64], dst: &mut [u64], pos: usize) -> usize {
    // SAFETY: only stored in a table after `bmi2` and `popcnt` were detected.
    unsafe { compact_bmi2_impl(src, mask, dst, pos) }
}

#[target_feature(enable = "bmi2,popcnt")]
fn compact_bmi2_impl(src: &[u64], mask: &[u64], dst: &mut [u64], pos: usize) -> usize {
    let mut word = pos / 64;
    let mut fill = (pos % 64) as u32;
    let mut acc = if fill == 0 { 0 } else { dst[word] };
    for (&w, &m) in src.iter().zip(mask) {
        let v = _pext_u64(w, m);
        let c = m.count_ones();
        acc |= v << fill; // fill < 64 always
        if fill + c >= 64 {
            dst[word] = acc;
            word += 1;
            // Bits of v that did not fit; (v >> 64) would be UB-free in intrinsics but not in
            // Rust shifts, so fill == 0 is handled separately.
            acc = if fill == 0 { 0 } else { v >> (64 - fill) };
            fill = fill + c - 64;
        } else {
            fill += c;
        }
    }
    if fill > 0 {
        dst[word] = acc;
    }
    word * 64 + fill as usize
}

fn popcount_avx512(words: &[u64]) -> u64 {
    // SAFETY: only stored in a table after `avx512f` and `avx512vpopcntdq` were detected.
    unsafe { popcount_avx512_impl(words, None, 0) }
}

fn xor_popcount_avx512(a: &[u64], b: &[u64]) -> u64 {
    // SAFETY: as above.
    unsafe { popcount_avx512_impl(a, Some(b), 0) }
}

fn and_popcount_avx512(a: &[u64], b: &[u64]) -> u64 {
    // SAFETY: as above.
    unsafe { popcount_avx512_impl(a, Some(b), 1) }
}

/// Popcount of `a` (op ignored), `a ^ b` (op 0) or `a & b` (op 1), eight words at a time.
#[target_feature(enable = "avx512f,avx512vpopcntdq,popcnt")]
fn popcount_avx512_impl(a: &[u64], b: Option<&[u64]>, op: u8) -> u64 {
    let n = b.map_or(a.len(), |b| a.len().min(b.len()));
    let chunks = n / 8;
    let mut total = _mm512_setzero_si512();
    for i in 0..chunks {
        // SAFETY: i*8+8 <= n <= a.len() (and b.len()); unaligned loads are allowed.
        let va = unsafe { _mm512_loadu_si512(a.as_ptr().add(i * 8).cast()) };
        let v = match b {
            None => va,
            Some(b) => {
                let vb = unsafe { _mm512_loadu_si512(b.as_ptr().add(i * 8).cast()) };
                if op == 0 {
                    _mm512_xor_si512(va, vb)
                } else {
                    _mm512_and_si512(va, vb)
                }
            }
        };
        total = _mm512_add_epi64(total, _mm512_popcnt_epi64(v));
    }
    let mut sum = _mm512_reduce_add_epi64(total) as u64;
    for i in chunks * 8..n {
        let w = match b {
            None => a[i],
            Some(b) if op == 0 => a[i] ^ b[i],
            Some(b) => a[i] & b[i],
        };
        sum += u64::from(w.count_ones());
    }
    sum
}

#[inline]
#[target_feature(enable = "pclmulqdq,sse4.1")]
fn clmul64_pclmul(a: u64, b: u64) -> (u64, u64) {
    let p = _mm_clmulepi64_si128(
        _mm_set_epi64x(0, a as i64),
        _mm_set_epi64x(0, b as i64),
        0x00,
    );
    (
        _mm_cvtsi128_si64(p) as u64,
        _mm_extract_epi64::<1>(p) as u64,
    )
}

fn poly_hash_pclmul(words: &[u64], key: u64, acc: u64) -> u64 {
    // SAFETY: only stored in a table after `pclmulqdq` and `sse4.1` were detected.
    unsafe { poly_hash_pclmul_impl(words, key, acc) }
}

#[target_feature(enable = "pclmulqdq,sse4.1")]
fn poly_hash_pclmul_impl(words: &[u64], key: u64, mut acc: u64) -> u64 {
    for &w in words {
        let (lo, hi) = clmul64_pclmul(acc ^ w, key);
        acc = portable::reduce_gf64(lo, hi);
    }
    acc
}

fn clmul_window_pclmul(a: &[u64], b: &[u64], out: &mut [u64], lo_word: usize) {
    // SAFETY: only stored in a table after `pclmulqdq` and `sse4.1` were detected.
    unsafe { clmul_window_pclmul_impl(a, b, out, lo_word) }
}

#[target_feature(enable = "pclmulqdq,sse4.1")]
fn clmul_window_pclmul_impl(a: &[u64], b: &[u64], out: &mut [u64], lo_word: usize) {
    out.fill(0);
    let hi_word = lo_word + out.len();
    // Keep the window bounds outside the inner loop: for a[i], the partner words b[j] whose
    // product touches the window are j in [lo_word - i - 1, hi_word - i).
    for (i, &x) in a.iter().enumerate() {
        if x == 0 {
            continue;
        }
        let j_lo = lo_word.saturating_sub(i + 1);
        let j_hi = hi_word.saturating_sub(i).min(b.len());
        if j_lo >= j_hi {
            continue;
        }
        let xa = _mm_set_epi64x(0, x as i64);
        for (j, &y) in b.iter().enumerate().take(j_hi).skip(j_lo) {
            let p = _mm_clmulepi64_si128(xa, _mm_set_epi64x(0, y as i64), 0x00);
            let (l, h) = (
                _mm_cvtsi128_si64(p) as u64,
                _mm_extract_epi64::<1>(p) as u64,
            );
            let k = i + j;
            if k >= lo_word {
                out[k - lo_word] ^= l;
            }
            if k + 1 < hi_word {
                out[k + 1 - lo_word] ^= h;
            }
        }
    }
}

// NTT: the portable loops of `super::ntt`, compiled with wider vectors (auto-vectorised).

fn ntt_forward_avx2(a: &mut [u32], tw: &[u32]) {
    // SAFETY: only stored in a table after `avx2` was detected.
    unsafe { ntt_forward_avx2_impl(a, tw) }
}
#[target_feature(enable = "avx2")]
fn ntt_forward_avx2_impl(a: &mut [u32], tw: &[u32]) {
    super::ntt::forward_body(a, tw)
}
fn ntt_inverse_avx2(a: &mut [u32], tw: &[u32], s: u32) {
    // SAFETY: as above.
    unsafe { ntt_inverse_avx2_impl(a, tw, s) }
}
#[target_feature(enable = "avx2")]
fn ntt_inverse_avx2_impl(a: &mut [u32], tw: &[u32], s: u32) {
    super::ntt::inverse_body(a, tw, s)
}
fn ntt_pointwise_avx2(a: &mut [u32], b: &[u32]) {
    // SAFETY: as above.
    unsafe { ntt_pointwise_avx2_impl(a, b) }
}
#[target_feature(enable = "avx2")]
fn ntt_pointwise_avx2_impl(a: &mut [u32], b: &[u32]) {
    super::ntt::pointwise_body(a, b)
}

fn ntt_forward_avx512(a: &mut [u32], tw: &[u32]) {
    // SAFETY: only stored in a table after `avx512f` was detected.
    unsafe { ntt_forward_avx512_impl(a, tw) }
}
#[target_feature(enable = "avx512f,avx512vl,avx2")]
fn ntt_forward_avx512_impl(a: &mut [u32], tw: &[u32]) {
    super::ntt::forward_body(a, tw)
}
fn ntt_inverse_avx512(a: &mut [u32], tw: &[u32], s: u32) {
    // SAFETY: as above.
    unsafe { ntt_inverse_avx512_impl(a, tw, s) }
}
#[target_feature(enable = "avx512f,avx512vl,avx2")]
fn ntt_inverse_avx512_impl(a: &mut [u32], tw: &[u32], s: u32) {
    super::ntt::inverse_body(a, tw, s)
}
fn ntt_pointwise_avx512(a: &mut [u32], b: &[u32]) {
    // SAFETY: as above.
    unsafe { ntt_pointwise_avx512_impl(a, b) }
}
#[target_feature(enable = "avx512f,avx512vl,avx2")]
fn ntt_pointwise_avx512_impl(a: &mut [u32], b: &[u32]) {
    super::ntt::pointwise_body(a, b)
}
