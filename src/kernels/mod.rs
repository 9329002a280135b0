//! All SIMD and all `unsafe` arithmetic of the engine, behind one value: [`Kernels`].
//!
//! The implementations are chosen **once** (at engine start) by runtime CPU-feature detection
//! (`is_x86_feature_detected!`), following the BLAKE3 `Platform` pattern: a table of safe
//! function pointers. `packed_simd_2` is not used because it does not build on stable Rust
//! (it needs `platform_intrinsics`, removed in 1.78); `std::simd` is still unstable. Instead each
//! fast path is written with `std::arch` intrinsics inside a `#[target_feature]` function and is
//! only reachable after the feature was detected.
//!
//! [`portable`] is the reference implementation and the test oracle for every ISA path: it is
//! always compiled, runs on any target (x86-64 without extensions, aarch64, …), and property
//! tests compare each detected path against it bit for bit.
//!
//! Set `QKD_ISA=portable` (or `x86-v2`, `x86-v3`, `avx512`) to force a path; an unavailable choice
//! falls back to the best available one below it.

pub mod gf2x;
pub mod ldpc;
pub mod ntt;
pub mod portable;
#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
mod x86_gf2x;

use std::fmt;

/// The instruction-set level a [`Kernels`] value uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Plain Rust, no target features: the reference path.
    Portable,
    /// x86-64 with POPCNT and PCLMULQDQ (carry-less multiply).
    X86V2,
    /// x86-64-v3: [`Isa::X86V2`] plus AVX2 (vectorised NTT) and BMI2 `pext` for bit compaction
    /// (`pext` only where it is fast in hardware).
    X86V3,
    /// [`Isa::X86V3`] plus AVX-512 F/BW/VL/VBMI/VPOPCNTDQ (popcounts, NTT, LDPC decoder).
    X86Avx512,
}

impl Isa {
    /// The name used by `QKD_ISA` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::X86V2 => "x86-v2",
            Isa::X86V3 => "x86-v3",
            Isa::X86Avx512 => "avx512",
        }
    }

    /// Parse a `QKD_ISA` value.
    pub fn parse(s: &str) -> Option<Isa> {
        match s.trim().to_ascii_lowercase().as_str() {
            "portable" | "generic" | "none" => Some(Isa::Portable),
            "x86-v2" | "popcnt" | "pclmul" => Some(Isa::X86V2),
            "bmi2" | "x86-v3" | "avx2" => Some(Isa::X86V3),
            "avx512" | "x86-v4" => Some(Isa::X86Avx512),
            _ => None,
        }
    }

    /// All levels, lowest first.
    pub const ALL: [Isa; 4] = [Isa::Portable, Isa::X86V2, Isa::X86V3, Isa::X86Avx512];
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Signature of the bit-compaction kernel: append the bits of `src` selected by `mask` to `dst`
/// starting at bit `dst_pos`; returns the new bit position. `dst` must be zero from `dst_pos` on
/// and long enough for `dst_pos + popcount(mask)` bits plus one spare word.
pub type CompactFn = fn(src: &[u64], mask: &[u64], dst: &mut [u64], dst_pos: usize) -> usize;
/// Deposit kernel (inverse of compaction, see [`portable::expand`]). `src` must hold at least
/// popcount(mask) bits.
pub type ExpandFn = fn(src: &[u64], mask: &[u64], dst: &mut [u64]);
/// Popcount of a word slice.
pub type PopcountFn = fn(&[u64]) -> u64;
/// Popcount of the XOR (or AND) of two equally long slices.
pub type BinaryPopcountFn = fn(&[u64], &[u64]) -> u64;
/// Polynomial hash over GF(2^64) (see [`portable::poly_hash_gf64`]).
pub type PolyHashFn = fn(words: &[u64], key: u64, acc: u64) -> u64;
/// Words `[lo_word, lo_word + out.len())` of the carry-less product `a·b` (GF(2)\[z\]).
pub type ClmulWindowFn = fn(a: &[u64], b: &[u64], out: &mut [u64], lo_word: usize);
/// Forward NTT (see [`ntt::forward`]).
pub type NttForwardFn = fn(a: &mut [u32], twiddles: &[u32]);
/// Inverse NTT (see [`ntt::inverse`]).
pub type NttInverseFn = fn(a: &mut [u32], twiddles: &[u32], len_inv: u32);
/// Pointwise Montgomery product (see [`ntt::pointwise`]).
pub type NttPointwiseFn = fn(a: &mut [u32], b: &[u32]);
/// Additive-FFT butterflies over a pair of slices with one constant (see [`gf2x`]).
pub type AfftButterflyFn = fn(lo: &mut [u64], hi: &mut [u64], c: u64);
/// All layers of an additive-FFT chunk (see [`gf2x::afft_chunk_forward`]).
pub type AfftChunkFn = fn(data: &mut [u64], tw: &[u64], base: &[u64]);
/// Pointwise GF(2^64) product `a ← a·b`.
pub type Gf64MulSliceFn = fn(a: &mut [u64], b: &[u64]);
/// `dst ← dst ⊕ src`.
pub type XorSliceFn = fn(dst: &mut [u64], src: &[u64]);
/// Layered min-sum decoding of a QC-LDPC frame (see [`ldpc::nms_decode`]).
pub type NmsDecodeFn =
    fn(&ldpc::QcLayout, &[u64], ldpc::NmsParams, &mut ldpc::NmsScratch) -> ldpc::NmsOutcome;

/// The kernels chosen for this machine: a table of safe function pointers.
#[derive(Clone, Copy)]
pub struct Kernels {
    isa: Isa,
    compact: CompactFn,
    expand: ExpandFn,
    popcount: PopcountFn,
    xor_popcount: BinaryPopcountFn,
    and_popcount: BinaryPopcountFn,
    poly_hash: PolyHashFn,
    clmul_window: ClmulWindowFn,
    ntt_forward: NttForwardFn,
    ntt_inverse: NttInverseFn,
    ntt_pointwise: NttPointwiseFn,
    nms_decode: NmsDecodeFn,
    afft_butterfly_forward: AfftButterflyFn,
    afft_butterfly_inverse: AfftButterflyFn,
    afft_chunk_forward: AfftChunkFn,
    afft_chunk_inverse: AfftChunkFn,
    gf64_mul_slice: Gf64MulSliceFn,
    xor_slice: XorSliceFn,
}

impl fmt::Debug for Kernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kernels").field("isa", &self.isa).finish()
    }
}

impl Kernels {
    /// The reference implementation (always available).
    pub fn portable() -> Kernels {
        Kernels {
            isa: Isa::Portable,
            compact: portable::compact,
            expand: portable::expand,
            popcount: portable::popcount,
            xor_popcount: portable::xor_popcount,
            and_popcount: portable::and_popcount,
            poly_hash: portable::poly_hash_gf64,
            clmul_window: portable::clmul_window,
            ntt_forward: ntt::forward,
            ntt_inverse: ntt::inverse,
            ntt_pointwise: ntt::pointwise,
            nms_decode: ldpc::nms_decode,
            afft_butterfly_forward: gf2x::afft_butterfly_forward,
            afft_butterfly_inverse: gf2x::afft_butterfly_inverse,
            afft_chunk_forward: gf2x::afft_chunk_forward,
            afft_chunk_inverse: gf2x::afft_chunk_inverse,
            gf64_mul_slice: gf2x::gf64_mul_slice,
            xor_slice: gf2x::xor_slice,
        }
    }

    /// The kernels for `isa`, or `None` when this CPU lacks a feature it needs.
    pub fn for_isa(isa: Isa) -> Option<Kernels> {
        match isa {
            Isa::Portable => Some(Kernels::portable()),
            #[cfg(target_arch = "x86_64")]
            other => x86_64::kernels(other),
            #[cfg(not(target_arch = "x86_64"))]
            _ => None,
        }
    }

    /// The best kernels this CPU supports, unless `QKD_ISA` asks for a lower level.
    pub fn detect() -> Kernels {
        let requested = std::env::var("QKD_ISA").ok().and_then(|v| Isa::parse(&v));
        let ceiling = requested.unwrap_or(Isa::X86Avx512);
        Isa::ALL
            .iter()
            .rev()
            .filter(|&&isa| isa <= ceiling)
            .find_map(|&isa| Kernels::for_isa(isa))
            .unwrap_or_else(Kernels::portable)
    }

    /// Every ISA level available on this machine (for tests and benchmarks).
    pub fn available() -> Vec<Kernels> {
        Isa::ALL
            .iter()
            .filter_map(|&isa| Kernels::for_isa(isa))
            .collect()
    }

    /// The ISA level in use.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Append the bits of `src` where `mask` is set to `dst` at bit `dst_pos` (see [`CompactFn`]).
    #[inline]
    pub fn compact(&self, src: &[u64], mask: &[u64], dst: &mut [u64], dst_pos: usize) -> usize {
        debug_assert_eq!(src.len(), mask.len());
        (self.compact)(src, mask, dst, dst_pos)
    }

    /// Deposit the bits of `src` at the positions set in `mask` (see [`ExpandFn`]).
    #[inline]
    pub fn expand(&self, src: &[u64], mask: &[u64], dst: &mut [u64]) {
        debug_assert_eq!(mask.len(), dst.len());
        (self.expand)(src, mask, dst)
    }

    /// Number of set bits.
    #[inline]
    pub fn popcount(&self, words: &[u64]) -> u64 {
        (self.popcount)(words)
    }

    /// Number of positions where `a` and `b` differ.
    #[inline]
    pub fn xor_popcount(&self, a: &[u64], b: &[u64]) -> u64 {
        assert_eq!(a.len(), b.len(), "xor_popcount: length mismatch");
        (self.xor_popcount)(a, b)
    }

    /// Number of positions set in both `a` and `b`.
    #[inline]
    pub fn and_popcount(&self, a: &[u64], b: &[u64]) -> u64 {
        assert_eq!(a.len(), b.len(), "and_popcount: length mismatch");
        (self.and_popcount)(a, b)
    }

    /// Horner evaluation over GF(2^64) (see [`portable::poly_hash_gf64`]).
    #[inline]
    pub fn poly_hash(&self, words: &[u64], key: u64, acc: u64) -> u64 {
        (self.poly_hash)(words, key, acc)
    }

    /// A window of the carry-less product of `a` and `b` (see [`ClmulWindowFn`]).
    #[inline]
    pub fn clmul_window(&self, a: &[u64], b: &[u64], out: &mut [u64], lo_word: usize) {
        (self.clmul_window)(a, b, out, lo_word)
    }

    /// In-place forward NTT (see [`ntt::forward`]).
    #[inline]
    pub fn ntt_forward(&self, a: &mut [u32], twiddles: &[u32]) {
        (self.ntt_forward)(a, twiddles)
    }

    /// In-place inverse NTT with scaling (see [`ntt::inverse`]).
    #[inline]
    pub fn ntt_inverse(&self, a: &mut [u32], twiddles: &[u32], len_inv: u32) {
        (self.ntt_inverse)(a, twiddles, len_inv)
    }

    /// Pointwise Montgomery product `a ← a·b` (see [`ntt::pointwise`]).
    #[inline]
    pub fn ntt_pointwise(&self, a: &mut [u32], b: &[u32]) {
        (self.ntt_pointwise)(a, b)
    }

    /// Decode one QC-LDPC frame (see [`ldpc::nms_decode`]).
    #[inline]
    pub fn nms_decode(
        &self,
        layout: &ldpc::QcLayout,
        syndrome: &[u64],
        params: ldpc::NmsParams,
        scratch: &mut ldpc::NmsScratch,
    ) -> ldpc::NmsOutcome {
        (self.nms_decode)(layout, syndrome, params, scratch)
    }

    /// Forward additive-FFT butterflies `lo ← lo + c·hi; hi ← hi + lo` (see [`gf2x`]).
    #[inline]
    pub fn afft_butterfly_forward(&self, lo: &mut [u64], hi: &mut [u64], c: u64) {
        assert_eq!(lo.len(), hi.len(), "butterfly halves");
        (self.afft_butterfly_forward)(lo, hi, c)
    }

    /// Inverse additive-FFT butterflies `hi ← hi + lo; lo ← lo + c·hi`.
    #[inline]
    pub fn afft_butterfly_inverse(&self, lo: &mut [u64], hi: &mut [u64], c: u64) {
        assert_eq!(lo.len(), hi.len(), "butterfly halves");
        (self.afft_butterfly_inverse)(lo, hi, c)
    }

    /// Every layer of one chunk, top first (see [`gf2x::afft_chunk_forward`]).
    #[inline]
    pub fn afft_chunk_forward(&self, data: &mut [u64], tw: &[u64], base: &[u64]) {
        check_chunk(data, tw, base);
        (self.afft_chunk_forward)(data, tw, base)
    }

    /// Inverse of [`Kernels::afft_chunk_forward`].
    #[inline]
    pub fn afft_chunk_inverse(&self, data: &mut [u64], tw: &[u64], base: &[u64]) {
        check_chunk(data, tw, base);
        (self.afft_chunk_inverse)(data, tw, base)
    }

    /// Pointwise product `a ← a·b` in GF(2^64).
    #[inline]
    pub fn gf64_mul_slice(&self, a: &mut [u64], b: &[u64]) {
        assert_eq!(a.len(), b.len(), "gf64_mul_slice: length mismatch");
        (self.gf64_mul_slice)(a, b)
    }

    /// `dst ← dst ⊕ src`.
    #[inline]
    pub fn xor_slice(&self, dst: &mut [u64], src: &[u64]) {
        assert_eq!(dst.len(), src.len(), "xor_slice: length mismatch");
        (self.xor_slice)(dst, src)
    }
}

fn check_chunk(data: &[u64], tw: &[u64], base: &[u64]) {
    assert!(
        data.len().is_power_of_two() && data.len() >= 2,
        "additive-FFT chunk length {} is not a power of two ≥ 2",
        data.len()
    );
    assert!(tw.len() >= data.len() / 2, "twiddle table too short");
    assert!(
        base.len() >= gf2x::chunk_layers(data.len()),
        "layer offsets too short"
    );
}

impl Default for Kernels {
    fn default() -> Self {
        Kernels::detect()
    }
}

#[cfg(test)]
mod tests;
