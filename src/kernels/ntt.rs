//! Number-theoretic transform arithmetic modulo the prime p = 15·2^27 + 1 = 2013265921
//! (Pollard, "The fast Fourier transform in a finite field", Math. Comp. 25 (1971)).
//!
//! Values are in Montgomery form with R = 2^32 (Montgomery, Math. Comp. 44 (1985)). The forward
//! transform is decimation-in-frequency (Gentleman–Sande: natural order in, bit-reversed out),
//! the inverse decimation-in-time (Cooley–Tukey: bit-reversed in, natural out), so a
//! convolution needs no bit-reversal pass. Twiddle tables are laid out per stage: entries
//! `[h, 2h)` hold the `h` twiddles of the stage whose butterflies span `h` (see
//! `privacy_amplification::ntt`).
//!
//! The `*_body` functions are written once and compiled per ISA: here for any target, and in
//! `x86_64.rs` under `#[target_feature(enable = "avx2")]` / AVX-512, where LLVM vectorises the
//! same loops with wider registers. The portable path is the oracle.

/// The prime modulus.
pub const P: u32 = 2_013_265_921;
/// −P⁻¹ mod 2^32.
pub const P_NEG_INV: u32 = {
    let mut inv: u32 = 1;
    let mut i = 0;
    while i < 5 {
        inv = inv.wrapping_mul(2u32.wrapping_sub(P.wrapping_mul(inv)));
        i += 1;
    }
    inv.wrapping_neg()
};
/// R² mod P.
pub const R2: u32 = {
    let r = (1u64 << 32) % P as u64;
    ((r * r) % P as u64) as u32
};

/// Montgomery reduction of t < P·2^32: t·R⁻¹ mod P.
#[inline(always)]
pub fn reduce(t: u64) -> u32 {
    let m = (t as u32).wrapping_mul(P_NEG_INV);
    let u = ((t + u64::from(m) * u64::from(P)) >> 32) as u32;
    if u >= P { u - P } else { u }
}

/// Montgomery product a·b·R⁻¹ mod P.
#[inline(always)]
pub fn mul(a: u32, b: u32) -> u32 {
    reduce(u64::from(a) * u64::from(b))
}

#[inline(always)]
fn add(a: u32, b: u32) -> u32 {
    let s = a + b; // < 2^32 since P < 2^31
    if s >= P { s - P } else { s }
}

#[inline(always)]
fn sub(a: u32, b: u32) -> u32 {
    let d = a.wrapping_sub(b);
    if a >= b { d } else { d.wrapping_add(P) }
}

/// Into Montgomery form.
#[inline]
pub fn to_mont(x: u32) -> u32 {
    mul(x, R2)
}

/// Out of Montgomery form.
#[inline]
pub fn from_mont(x: u32) -> u32 {
    reduce(u64::from(x))
}

/// Forward DIF transform body.
#[inline(always)]
pub fn forward_body(a: &mut [u32], tw: &[u32]) {
    let mut h = a.len() / 2;
    while h >= 1 {
        let t = &tw[h..2 * h];
        for blk in a.chunks_exact_mut(2 * h) {
            let (lo, hi) = blk.split_at_mut(h);
            for ((x, y), &w) in lo.iter_mut().zip(hi.iter_mut()).zip(t) {
                let (u, v) = (*x, *y);
                *x = add(u, v);
                *y = mul(sub(u, v), w);
            }
        }
        h /= 2;
    }
}

/// Inverse DIT transform body, then multiplication by the plain-form `len_inv` (which also
/// leaves Montgomery form).
#[inline(always)]
pub fn inverse_body(a: &mut [u32], tw: &[u32], len_inv: u32) {
    let mut h = 1usize;
    while h < a.len() {
        let t = &tw[h..2 * h];
        for blk in a.chunks_exact_mut(2 * h) {
            let (lo, hi) = blk.split_at_mut(h);
            for ((x, y), &w) in lo.iter_mut().zip(hi.iter_mut()).zip(t) {
                let u = *x;
                let v = mul(*y, w);
                *x = add(u, v);
                *y = sub(u, v);
            }
        }
        h *= 2;
    }
    for x in a.iter_mut() {
        *x = mul(*x, len_inv);
    }
}

/// Pointwise product body.
#[inline(always)]
pub fn pointwise_body(a: &mut [u32], b: &[u32]) {
    for (x, &y) in a.iter_mut().zip(b) {
        *x = mul(*x, y);
    }
}

/// Forward transform (portable).
pub fn forward(a: &mut [u32], tw: &[u32]) {
    forward_body(a, tw)
}

/// Inverse transform with scaling (portable).
pub fn inverse(a: &mut [u32], tw: &[u32], len_inv: u32) {
    inverse_body(a, tw, len_inv)
}

/// Pointwise product (portable).
pub fn pointwise(a: &mut [u32], b: &[u32]) {
    pointwise_body(a, b)
}
