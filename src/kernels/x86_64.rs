//! x86-64 kernels: POPCNT, PCLMULQDQ, BMI2 `pext`, AVX-512 VPOPCNTDQ.
//!
//! Every `#[target_feature]` function here is reached only through a safe wrapper stored in a
//! [`Kernels`] table built by [`kernels`], which checks the features first.

use super::x86_gf2x as gf2x;
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
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vbmi")
        && is_x86_feature_detected!("avx512vpopcntdq");
    // Compaction uses `pext` only where it runs in hardware.
    let compact: super::CompactFn = if pext_is_fast() {
        compact_bmi2
    } else {
        portable::compact
    };
    let expand: super::ExpandFn = if pext_is_fast() {
        expand_bmi2
    } else {
        portable::expand
    };
    let mut k = Kernels {
        isa: Isa::X86V2,
        compact: portable::compact,
        expand: portable::expand,
        popcount: popcount_popcnt,
        xor_popcount: xor_popcount_popcnt,
        and_popcount: and_popcount_popcnt,
        poly_hash: poly_hash_pclmul,
        clmul_window: clmul_window_pclmul,
        ntt_forward: super::ntt::forward,
        ntt_inverse: super::ntt::inverse,
        ntt_pointwise: super::ntt::pointwise,
        nms_decode: super::ldpc::nms_decode,
        afft_butterfly_forward: gf2x::butterfly_forward_pclmul,
        afft_butterfly_inverse: gf2x::butterfly_inverse_pclmul,
        afft_chunk_forward: gf2x::chunk_forward_pclmul,
        afft_chunk_inverse: gf2x::chunk_inverse_pclmul,
        gf64_mul_slice: gf2x::mul_slice_pclmul,
        xor_slice: super::gf2x::xor_slice,
    };
    match isa {
        Isa::Portable => Some(Kernels::portable()),
        Isa::X86V2 if v2 => Some(k),
        Isa::X86V3 if v3 => {
            k.isa = Isa::X86V3;
            k.compact = compact;
            k.expand = expand;
            k.ntt_forward = ntt_forward_avx2;
            k.ntt_inverse = ntt_inverse_avx2;
            k.ntt_pointwise = ntt_pointwise_avx2;
            Some(k)
        }
        Isa::X86Avx512 if avx512 => {
            k.isa = Isa::X86Avx512;
            k.compact = compact;
            k.expand = expand;
            k.ntt_forward = ntt_forward_avx512;
            k.ntt_inverse = ntt_inverse_avx512;
            k.ntt_pointwise = ntt_pointwise_avx512;
            k.nms_decode = nms_decode_avx512;
            k.popcount = popcount_avx512;
            k.xor_popcount = xor_popcount_avx512;
            k.and_popcount = and_popcount_avx512;
            k.xor_slice = gf2x::xor_slice_avx512;
            if is_x86_feature_detected!("vpclmulqdq") {
                k.afft_butterfly_forward = gf2x::butterfly_forward_avx512;
                k.afft_butterfly_inverse = gf2x::butterfly_inverse_avx512;
                k.afft_chunk_forward = gf2x::chunk_forward_avx512;
                k.afft_chunk_inverse = gf2x::chunk_inverse_avx512;
                k.gf64_mul_slice = gf2x::mul_slice_avx512;
            }
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

fn expand_bmi2(src: &[u64], mask: &[u64], dst: &mut [u64]) {
    // SAFETY: only stored in a table after `bmi2` and `popcnt` were detected.
    unsafe { expand_bmi2_impl(src, mask, dst) }
}

#[target_feature(enable = "bmi2,popcnt")]
fn expand_bmi2_impl(src: &[u64], mask: &[u64], dst: &mut [u64]) {
    let mut pos = 0usize;
    for (d, &m) in dst.iter_mut().zip(mask) {
        let c = m.count_ones() as usize;
        // The next c bits of src, starting at bit `pos`.
        let (w, o) = (pos / 64, pos % 64);
        let mut bits = if c == 0 { 0 } else { src[w] >> o };
        if o != 0 && o + c > 64 {
            bits |= src[w + 1] << (64 - o);
        }
        *d = _pdep_u64(bits, m);
        pos += c;
    }
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

// Layered NMS decoder, AVX-512 BW + VBMI: the 64 rows of a base row in one register; the
// circulant shift is `vpermb` with a rotation index.

pub(super) fn nms_decode_avx512(
    layout: &super::ldpc::QcLayout,
    syndrome: &[u64],
    params: super::ldpc::NmsParams,
    s: &mut super::ldpc::NmsScratch,
) -> super::ldpc::NmsOutcome {
    // SAFETY: only stored in a table after `avx512f`, `avx512bw` and `avx512vbmi` were detected.
    unsafe { nms_decode_avx512_impl(layout, syndrome, params, s) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
#[allow(clippy::needless_range_loop)]
fn nms_decode_avx512_impl(
    layout: &super::ldpc::QcLayout,
    syndrome: &[u64],
    params: super::ldpc::NmsParams,
    s: &mut super::ldpc::NmsScratch,
) -> super::ldpc::NmsOutcome {
    use super::ldpc::{NmsOutcome, StallGuard, Z, unsatisfied_checks};
    // Rotation indices: fwd[sh][t] = (t + sh) mod 64, inv[sh][t] = (t − sh) mod 64.
    let mut fwd = [[0u8; Z]; Z];
    let mut inv = [[0u8; Z]; Z];
    for sh in 0..Z {
        for t in 0..Z {
            fwd[sh][t] = ((t + sh) % Z) as u8;
            inv[sh][t] = ((t + Z - sh) % Z) as u8;
        }
    }
    let nb = layout.nb;
    let hard_from_app = |app: &[i8], hard: &mut [u64]| {
        for c in 0..nb {
            // SAFETY: app has nb·64 bytes.
            let v = unsafe { _mm512_loadu_si512(app.as_ptr().add(c * Z).cast()) };
            hard[c] = _mm512_movepi8_mask(v);
        }
    };
    hard_from_app(&s.app, &mut s.hard);
    if unsatisfied_checks(layout, syndrome, &s.hard) == 0 {
        return NmsOutcome {
            iterations: 0,
            converged: true,
        };
    }
    let mut guard = StallGuard::new();
    let k = params.alpha_shift.min(8);
    let c127 = _mm512_set1_epi8(127);
    let offset = _mm512_set1_epi8(params.offset as i8);
    let low_mask = _mm512_set1_epi8((0xffu16 >> k) as u8 as i8);
    let kcount = _mm_cvtsi32_si128(k as i32);
    let zero = _mm512_setzero_si512();
    let app = s.app.as_mut_ptr();
    let msg = s.msg.as_mut_ptr();
    let tmp = s.tmp.as_mut_ptr();
    let tables = super::ldpc::spa_tables();
    for it in 1..=params.max_iterations {
        for r in 0..layout.mb() {
            let (a, b) = (layout.row_ptr[r] as usize, layout.row_ptr[r + 1] as usize);
            if params.rule == super::ldpc::CheckRule::Spa {
                // SAFETY: same buffers and bounds as below.
                unsafe {
                    spa_row_avx512(layout, syndrome[r], a, b, app, msg, tmp, &fwd, &inv, tables)
                };
                continue;
            }
            let mut sign: u64 = syndrome[r];
            let mut min1 = c127;
            let mut min2 = c127;
            let mut idx = zero;
            for (j, e) in (a..b).enumerate() {
                let c = layout.cols[e] as usize;
                let sh = layout.shifts[e] as usize;
                // SAFETY: c < nb, e < entries, j < max row degree: all within the buffers that
                // `NmsScratch::reset` sized; the index tables are 64 bytes each.
                unsafe {
                    let rot = _mm512_loadu_si512(fwd[sh].as_ptr().cast());
                    let av =
                        _mm512_permutexvar_epi8(rot, _mm512_loadu_si512(app.add(c * Z).cast()));
                    let q = _mm512_subs_epi8(av, _mm512_loadu_si512(msg.add(e * Z).cast()));
                    _mm512_storeu_si512(tmp.add(j * Z).cast(), q);
                    sign ^= _mm512_movepi8_mask(q);
                    let aq = _mm512_min_epu8(_mm512_abs_epi8(q), c127);
                    let lt = _mm512_cmplt_epu8_mask(aq, min1);
                    min2 = _mm512_min_epu8(min2, _mm512_max_epu8(min1, aq));
                    min1 = _mm512_min_epu8(min1, aq);
                    idx = _mm512_mask_blend_epi8(lt, idx, _mm512_set1_epi8(j as i8));
                }
            }
            let a1 = _mm512_subs_epu8(min1, offset);
            let a2 = _mm512_subs_epu8(min2, offset);
            let m1 = _mm512_sub_epi8(a1, _mm512_and_si512(_mm512_srl_epi16(a1, kcount), low_mask));
            let m2 = _mm512_sub_epi8(a2, _mm512_and_si512(_mm512_srl_epi16(a2, kcount), low_mask));
            for (j, e) in (a..b).enumerate() {
                let c = layout.cols[e] as usize;
                let sh = layout.shifts[e] as usize;
                // SAFETY: as above.
                unsafe {
                    let q = _mm512_loadu_si512(tmp.add(j * Z).cast());
                    let is_min = _mm512_cmpeq_epi8_mask(idx, _mm512_set1_epi8(j as i8));
                    let mag = _mm512_mask_blend_epi8(is_min, m1, m2);
                    let neg = sign ^ _mm512_movepi8_mask(q);
                    let r_new = _mm512_mask_sub_epi8(mag, neg, zero, mag);
                    _mm512_storeu_si512(msg.add(e * Z).cast(), r_new);
                    let new_app = _mm512_adds_epi8(q, r_new);
                    let back = _mm512_loadu_si512(inv[sh].as_ptr().cast());
                    _mm512_storeu_si512(
                        app.add(c * Z).cast(),
                        _mm512_permutexvar_epi8(back, new_app),
                    );
                }
            }
        }
        hard_from_app(&s.app, &mut s.hard);
        let unsatisfied = unsatisfied_checks(layout, syndrome, &s.hard);
        if unsatisfied == 0 {
            return NmsOutcome {
                iterations: it,
                converged: true,
            };
        }
        if guard.stalled(unsatisfied) {
            return NmsOutcome {
                iterations: it,
                converged: false,
            };
        }
    }
    NmsOutcome {
        iterations: params.max_iterations,
        converged: false,
    }
}

/// One row of the φ-domain sum-product rule, 64 lanes.
///
/// # Safety
/// AVX-512 F/BW/VBMI must be available; `app`, `msg`, `tmp` must hold the buffers sized by
/// `NmsScratch::reset` for `layout`, and `a..b` must be a row of `layout`.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
#[allow(clippy::too_many_arguments)]
unsafe fn spa_row_avx512(
    layout: &super::ldpc::QcLayout,
    syndrome: u64,
    a: usize,
    b: usize,
    app: *mut i8,
    msg: *mut i8,
    tmp: *mut i8,
    fwd: &[[u8; 64]; 64],
    inv: &[[u8; 64]; 64],
    tables: &super::ldpc::SpaTables,
) {
    const Z: usize = 64;
    // SAFETY (whole body): the caller guarantees the buffer sizes; tables are 128/256 bytes.
    unsafe {
        let phi_lo = _mm512_loadu_si512(tables.phi.as_ptr().cast());
        let phi_hi = _mm512_loadu_si512(tables.phi.as_ptr().add(64).cast());
        let inv0 = _mm512_loadu_si512(tables.inv.as_ptr().cast());
        let inv1 = _mm512_loadu_si512(tables.inv.as_ptr().add(64).cast());
        let inv2 = _mm512_loadu_si512(tables.inv.as_ptr().add(128).cast());
        let inv3 = _mm512_loadu_si512(tables.inv.as_ptr().add(192).cast());
        let c127 = _mm512_set1_epi8(127);
        let zero = _mm512_setzero_si512();
        let phi_of = |q: __m512i| -> __m512i {
            let aq = _mm512_min_epu8(_mm512_abs_epi8(q), c127);
            _mm512_permutex2var_epi8(phi_lo, aq, phi_hi)
        };
        let widen = |v: __m512i| -> (__m512i, __m512i) {
            (
                _mm512_cvtepu8_epi16(_mm512_castsi512_si256(v)),
                _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64::<1>(v)),
            )
        };
        let mut sign = syndrome;
        let (mut sum_lo, mut sum_hi) = (zero, zero);
        for (j, e) in (a..b).enumerate() {
            let c = layout.cols[e] as usize;
            let sh = layout.shifts[e] as usize;
            let rot = _mm512_loadu_si512(fwd[sh].as_ptr().cast());
            let av = _mm512_permutexvar_epi8(rot, _mm512_loadu_si512(app.add(c * Z).cast()));
            let q = _mm512_subs_epi8(av, _mm512_loadu_si512(msg.add(e * Z).cast()));
            _mm512_storeu_si512(tmp.add(j * Z).cast(), q);
            sign ^= _mm512_movepi8_mask(q);
            let (lo, hi) = widen(phi_of(q));
            sum_lo = _mm512_adds_epu16(sum_lo, lo);
            sum_hi = _mm512_adds_epu16(sum_hi, hi);
        }
        for (j, e) in (a..b).enumerate() {
            let c = layout.cols[e] as usize;
            let sh = layout.shifts[e] as usize;
            let q = _mm512_loadu_si512(tmp.add(j * Z).cast());
            let (lo, hi) = widen(phi_of(q));
            let y_lo = _mm512_cvtusepi16_epi8(_mm512_subs_epu16(sum_lo, lo));
            let y_hi = _mm512_cvtusepi16_epi8(_mm512_subs_epu16(sum_hi, hi));
            let y = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(y_lo), y_hi);
            let m_low = _mm512_permutex2var_epi8(inv0, y, inv1);
            let m_high = _mm512_permutex2var_epi8(inv2, y, inv3);
            let mag = _mm512_mask_blend_epi8(_mm512_movepi8_mask(y), m_low, m_high);
            let neg = sign ^ _mm512_movepi8_mask(q);
            let r_new = _mm512_mask_sub_epi8(mag, neg, zero, mag);
            _mm512_storeu_si512(msg.add(e * Z).cast(), r_new);
            let new_app = _mm512_adds_epi8(q, r_new);
            let back = _mm512_loadu_si512(inv[sh].as_ptr().cast());
            _mm512_storeu_si512(
                app.add(c * Z).cast(),
                _mm512_permutexvar_epi8(back, new_app),
            );
        }
    }
}
