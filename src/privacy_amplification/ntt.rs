//! NTT plans for exact cyclic convolutions of length up to 2^27 modulo
//! p = 15·2^27 + 1 (generator 31); the butterflies live in [`crate::kernels::ntt`]. A product of
//! two 0/1 sequences has coefficients ≤ min(lengths) < p, so the convolution is exact.

use crate::kernels::Kernels;
use crate::kernels::ntt::{P, mul, to_mont};

/// A generator of the multiplicative group mod P.
const G: u32 = 31;
/// Largest supported transform length (2^27 divides P − 1).
pub const MAX_LOG_LEN: u32 = 27;

pub use crate::kernels::ntt::{from_mont, to_mont as into_mont};

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
    pub fn forward(&self, k: &Kernels, a: &mut [u32]) {
        assert_eq!(a.len(), self.len());
        k.ntt_forward(a, &self.fwd);
    }

    /// In-place inverse transform (bit-reversed input, natural output), including the 1/L
    /// scaling and the exit from Montgomery form: the output is plain integers mod P.
    pub fn inverse(&self, k: &Kernels, a: &mut [u32]) {
        assert_eq!(a.len(), self.len());
        k.ntt_inverse(a, &self.inv, self.len_inv);
    }

    /// Pointwise product `a ← a·b` (Montgomery form).
    pub fn pointwise(k: &Kernels, a: &mut [u32], b: &[u32]) {
        k.ntt_pointwise(a, b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::ntt::P_NEG_INV;

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
    fn cyclic_convolution_matches_schoolbook_on_every_isa() {
        for k in Kernels::available() {
            for log in 1..=9 {
                let plan = NttPlan::new(log);
                let n = plan.len();
                let a: Vec<u32> = (0..n).map(|i| ((i * 7919 + 13) % 1000) as u32).collect();
                let b: Vec<u32> = (0..n).map(|i| ((i * 104729 + 7) % 977) as u32).collect();
                let mut expect = vec![0u64; n];
                for i in 0..n {
                    for j in 0..n {
                        expect[(i + j) % n] = (expect[(i + j) % n]
                            + u64::from(a[i]) * u64::from(b[j]))
                            % u64::from(P);
                    }
                }
                let mut fa: Vec<u32> = a.iter().map(|&x| to_mont(x)).collect();
                let mut fb: Vec<u32> = b.iter().map(|&x| to_mont(x)).collect();
                plan.forward(&k, &mut fa);
                plan.forward(&k, &mut fb);
                NttPlan::pointwise(&k, &mut fa, &fb);
                plan.inverse(&k, &mut fa);
                let got: Vec<u64> = fa.iter().map(|&x| u64::from(x)).collect();
                assert_eq!(got, expect, "isa {} length 2^{log}", k.isa());
            }
        }
    }
}
