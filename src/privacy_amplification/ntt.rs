//! Number-theoretic transform modulo the prime p = 15·2^27 + 1 = 2013265921 (generator 31),
//! for exact cyclic convolutions of length up to 2^27 (Pollard, "The fast Fourier transform in
//! a finite field", Math. Comp. 25 (1971); butterflies as in Cooley–Tukey / Gentleman–Sande).
//!
//! Arithmetic is in Montgomery form with R = 2^32 (Montgomery, Math. Comp. 44 (1985)). The
//! forward transform is decimation-in-frequency (natural order in, bit-reversed out), the
//! inverse is decimation-in-time (bit-reversed in, natural out), so no bit-reversal pass is
//! needed for a convolution. A product of two 0/1 sequences has coefficients ≤ min(len) < p,
//! so the convolution is exact.

/// The prime modulus.
pub const P: u32 = 2_013_265_921;
/// A generator of the multiplicative group mod P.
const G: u32 = 31;
/// Largest supported transform length.
pub const MAX_LOG_LEN: u32 = 27;
/// −P⁻¹ mod 2^32.
const P_NEG_INV: u32 = {
    // Newton iteration for P⁻¹ mod 2^32.
    let mut inv: u32 = 1;
    let mut i = 0;
    while i < 5 {
        inv = inv.wrapping_mul(2u32.wrapping_sub(P.wrapping_mul(inv)));
        i += 1;
    }
    inv.wrapping_neg()
};
/// R² mod P, to enter Montgomery form.
const R2: u32 = {
    let r = (1u64 << 32) % P as u64;
    ((r * r) % P as u64) as u32
};

#[inline(always)]
fn reduce(t: u64) -> u32 {
    let m = (t as u32).wrapping_mul(P_NEG_INV);
    let u = ((t + u64::from(m) * u64::from(P)) >> 32) as u32;
    if u >= P { u - P } else { u }
}

#[inline(always)]
fn mul(a: u32, b: u32) -> u32 {
    reduce(u64::from(a) * u64::from(b))
}

#[inline(always)]
fn add(a: u32, b: u32) -> u32 {
    let s = a + b; // < 2^32 since P < 2^31
    if s >= P { s - P } else { s }
}

#[inline(always)]
fn sub(a: u32, b: u32) -> u32 {
    if a >= b { a - b } else { a + P - b }
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

fn pow_plain(mut b: u64, mut e: u64) -> u32 {
    let mut r = 1u64;
    b %= u64::from(P);
    while e > 0 {
        if e & 1 == 1 {
            r = r * b % u64::from(P);
        }
        b = b * b % u64::from(P);
        e >>= 1;
    }
    r as u32
}

/// Precomputed twiddles for transforms of one length.
pub struct NttPlan {
    log_len: u32,
    /// Forward twiddles: entries [h, 2h) hold ω_{2h}^j (Montgomery form).
    fwd: Vec<u32>,
    /// Inverse twiddles: ω_{2h}^{−j}.
    inv: Vec<u32>,
    /// L⁻¹ (plain form).
    len_inv: u32,
}

impl NttPlan {
    /// A plan for length 2^log_len (1 ≤ log_len ≤ 27).
    pub fn new(log_len: u32) -> NttPlan {
        assert!(
            (1..=MAX_LOG_LEN).contains(&log_len),
            "NTT length 2^{log_len} unsupported"
        );
        let len = 1usize << log_len;
        let mut fwd = vec![0u32; len];
        let mut inv = vec![0u32; len];
        let mut h = 1usize;
        while h < len {
            let w = pow_plain(u64::from(G), u64::from(P - 1) / (2 * h) as u64);
            let wi = pow_plain(u64::from(w), u64::from(P) - 2);
            let (wm, wim) = (to_mont(w), to_mont(wi));
            let (mut a, mut b) = (to_mont(1), to_mont(1));
            for j in 0..h {
                fwd[h + j] = a;
                inv[h + j] = b;
                a = mul(a, wm);
                b = mul(b, wim);
            }
            h *= 2;
        }
        let len_inv = pow_plain(len as u64, u64::from(P) - 2);
        NttPlan {
            log_len,
            fwd,
            inv,
            len_inv,
        }
    }

    /// Transform length.
    pub fn len(&self) -> usize {
        1 << self.log_len
    }

    /// Always false (plans have length ≥ 2).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// In-place forward transform (Montgomery-form input, bit-reversed output).
    pub fn forward(&self, a: &mut [u32]) {
        assert_eq!(a.len(), self.len());
        let mut h = a.len() / 2;
        while h >= 1 {
            let tw = &self.fwd[h..2 * h];
            for blk in a.chunks_exact_mut(2 * h) {
                let (lo, hi) = blk.split_at_mut(h);
                for ((x, y), &w) in lo.iter_mut().zip(hi.iter_mut()).zip(tw) {
                    let (u, v) = (*x, *y);
                    *x = add(u, v);
                    *y = mul(sub(u, v), w);
                }
            }
            h /= 2;
        }
    }

    /// In-place inverse transform (bit-reversed input, natural output), including the 1/L
    /// scaling and the exit from Montgomery form: the output is plain integers mod P.
    pub fn inverse(&self, a: &mut [u32]) {
        assert_eq!(a.len(), self.len());
        let mut h = 1usize;
        while h < a.len() {
            let tw = &self.inv[h..2 * h];
            for blk in a.chunks_exact_mut(2 * h) {
                let (lo, hi) = blk.split_at_mut(h);
                for ((x, y), &w) in lo.iter_mut().zip(hi.iter_mut()).zip(tw) {
                    let u = *x;
                    let v = mul(*y, w);
                    *x = add(u, v);
                    *y = sub(u, v);
                }
            }
            h *= 2;
        }
        let s = self.len_inv;
        for x in a.iter_mut() {
            *x = mul(*x, s);
        }
    }

    /// Pointwise product `a ← a·b` (Montgomery form).
    pub fn pointwise(a: &mut [u32], b: &[u32]) {
        for (x, &y) in a.iter_mut().zip(b) {
            *x = mul(*x, y);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants() {
        assert_eq!(P.wrapping_mul(P_NEG_INV.wrapping_neg()), 1);
        assert_eq!(from_mont(to_mont(12345)), 12345);
        assert_eq!(from_mont(mul(to_mont(P - 1), to_mont(P - 1))), 1);
        // 31 generates: 31^((P-1)/2) = −1 and 31^((P-1)/3), 31^((P-1)/5) ≠ 1 (P−1 = 2^27·3·5).
        assert_eq!(pow_plain(31, u64::from(P - 1) / 2), P - 1);
        assert_ne!(pow_plain(31, u64::from(P - 1) / 3), 1);
        assert_ne!(pow_plain(31, u64::from(P - 1) / 5), 1);
    }

    #[test]
    fn cyclic_convolution_matches_schoolbook() {
        for log in 1..=9 {
            let plan = NttPlan::new(log);
            let n = plan.len();
            let a: Vec<u32> = (0..n).map(|i| ((i * 7919 + 13) % 1000) as u32).collect();
            let b: Vec<u32> = (0..n).map(|i| ((i * 104729 + 7) % 977) as u32).collect();
            let mut expect = vec![0u64; n];
            for i in 0..n {
                for j in 0..n {
                    expect[(i + j) % n] =
                        (expect[(i + j) % n] + u64::from(a[i]) * u64::from(b[j])) % u64::from(P);
                }
            }
            let mut fa: Vec<u32> = a.iter().map(|&x| to_mont(x)).collect();
            let mut fb: Vec<u32> = b.iter().map(|&x| to_mont(x)).collect();
            plan.forward(&mut fa);
            plan.forward(&mut fb);
            NttPlan::pointwise(&mut fa, &fb);
            plan.inverse(&mut fa);
            let got: Vec<u64> = fa.iter().map(|&x| u64::from(x)).collect();
            assert_eq!(got, expect, "length 2^{log}");
        }
    }
}
