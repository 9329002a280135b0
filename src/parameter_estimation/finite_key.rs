//! Finite-key secret length of decoy-state BB84: Lim, Curty, Walenta, Xu, Zbinden, "Concise
//! security bounds for practical decoy-state quantum key distribution", PRA 89, 022307 (2014),
//! Eqs. (1)–(5) and Appendix B (see `reference/literature.md` §3.3).
//!
//! Lim et al. draw the key from their "X" basis and test with "Z". In this engine the key basis
//! is Z and the test basis X, so their X-quantities are called `key` here and their
//! Z-quantities `test`. With intensities μ₁ > μ₂ + μ₃, μ₂ > μ₃ ≥ 0 chosen with probabilities
//! p_k, and τ_n = Σ_k p_k e^(−μ_k) μ_k^n / n!:
//!
//! * Hoeffding-corrected counts (δ(n) = √(n/2 · ln(21/ε_sec))):
//!   n^±_{k} = e^(μ_k)/p_k · (n_{k} ± δ(n_total)), likewise m^±_{k} with the error totals;
//! * vacuum events (Eq. 2): s₀ ≥ τ₀ (μ₂ n⁻_{μ₃} − μ₃ n⁺_{μ₂}) / (μ₂ − μ₃);
//! * single-photon events (Eq. 3): s₁ ≥ τ₁ μ₁ [n⁻_{μ₂} − n⁺_{μ₃} − (μ₂² − μ₃²)/μ₁² (n⁺_{μ₁} − s₀/τ₀)]
//!   / [μ₁(μ₂ − μ₃) − μ₂² + μ₃²];
//! * single-photon errors in the test basis (Eq. 4): v₁ ≤ τ₁ (m⁺_{μ₂} − m⁻_{μ₃}) / (μ₂ − μ₃);
//! * phase error of the key's single-photon events (Eq. 5):
//!   φ ≤ v₁/s₁ᵗ + γ(ε_sec, v₁/s₁ᵗ, s₁ᵗ, s₁ᵏ), with
//!   γ(a, b, c, d) = √((c + d)(1 − b) b / (c d ln 2) · log₂((c + d)/(c d (1 − b) b) · 21²/a²));
//! * secret length (Eq. 1): ℓ = ⌊s₀ᵏ + s₁ᵏ (1 − h(φ)) − λ_EC − 6 log₂(21/ε_sec) − log₂(2/ε_cor)⌋.
//!
//! Engine conventions, all on the safe side of the bound:
//! * lower bounds below 0 are replaced by 0 (a count is never negative), φ is capped at ½;
//! * in γ the observed rate b is raised to at least 1/s₁ᵗ (γ grows with b there), so a run
//!   with no observed test errors is not credited with γ → 0;
//! * the term log₂(2/ε_cor) of Eq. (1) is the verification tag's length; the engine subtracts
//!   the tag bits it actually sent, or log₂(2/ε_cor) if that is larger;
//! * λ_EC is the ledger's count of every bit error correction disclosed, and bits of frames
//!   discarded after a failed verification are subtracted as well
//!   (H_min(A|E) ≥ H_min(AB|E) − log|B|).

use crate::protocol::{DecoyParams, INTENSITY_CLASSES};
use serde::{Deserialize, Serialize};

/// Binary entropy h(x) = −x log₂ x − (1 − x) log₂(1 − x) in bits, on the whole of [0, 1]
/// (symmetric about ½; 0 outside (0, 1)). Callers that need an error rate capped at ½ (phase
/// errors) cap it themselves.
pub fn binary_entropy(x: f64) -> f64 {
    if !(x > 0.0 && x < 1.0) {
        0.0
    } else {
        -x * x.log2() - (1.0 - x) * (1.0 - x).log2()
    }
}

/// Counts that enter the bound, from one block's sifted data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct DecoyCounts {
    /// Sifted key-basis bits per intensity class (the block's key bits).
    pub n_key: [u64; INTENSITY_CLASSES],
    /// Sifted test-basis bits per intensity class.
    pub n_test: [u64; INTENSITY_CLASSES],
    /// Test-basis errors per intensity class.
    pub m_test: [u64; INTENSITY_CLASSES],
}

impl DecoyCounts {
    /// Total sifted key bits.
    pub fn key_total(&self) -> u64 {
        self.n_key.iter().sum()
    }
    /// Total test-basis bits.
    pub fn test_total(&self) -> u64 {
        self.n_test.iter().sum()
    }
    /// Total test-basis errors.
    pub fn test_errors(&self) -> u64 {
        self.m_test.iter().sum()
    }
}

/// The bounds of Lim et al. evaluated on one block, before error correction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FiniteKeyBounds {
    /// s₀ lower bound in the key basis.
    pub s0_key: f64,
    /// s₁ lower bound in the key basis.
    pub s1_key: f64,
    /// s₀ lower bound in the test basis.
    pub s0_test: f64,
    /// s₁ lower bound in the test basis.
    pub s1_test: f64,
    /// v₁ upper bound (single-photon errors in the test basis).
    pub v1_test: f64,
    /// Observed single-photon test error rate v₁/s₁ᵗ (before the γ correction).
    pub phase_error_observed: f64,
    /// Phase-error upper bound φ (≤ ½).
    pub phase_error_bound: f64,
    /// 6 log₂(21/ε_sec).
    pub security_cost: f64,
    /// s₀ᵏ + s₁ᵏ(1 − h(φ)) − 6 log₂(21/ε_sec): the extractable length before λ_EC and verification.
    pub entropy_bound: f64,
}

/// τ_n = Σ_k p_k e^(−μ_k) μ_k^n / n!.
pub fn tau(d: &DecoyParams, n: u32) -> f64 {
    let fact: f64 = (1..=n).map(f64::from).product();
    (0..INTENSITY_CLASSES)
        .map(|k| {
            d.probabilities[k] * (-d.intensities[k]).exp() * d.intensities[k].powi(n as i32) / fact
        })
        .sum()
}

/// Hoeffding-corrected counts n^±_k = e^(μ_k)/p_k (n_k ± δ), δ = √(total/2 · ln(21/ε_sec)).
fn corrected(d: &DecoyParams, counts: &[u64; 3], eps_sec: f64) -> ([f64; 3], [f64; 3]) {
    let total: u64 = counts.iter().sum();
    let delta = (total as f64 / 2.0 * (21.0 / eps_sec).ln()).sqrt();
    let f = |k: usize, s: f64| {
        (d.intensities[k]).exp() / d.probabilities[k] * (counts[k] as f64 + s * delta)
    };
    (
        std::array::from_fn(|k| f(k, -1.0)),
        std::array::from_fn(|k| f(k, 1.0)),
    )
}

/// Lower bounds (s₀, s₁) for one basis from its per-class counts (Lim et al. Eqs. 2–3).
pub fn vacuum_and_single_photon(d: &DecoyParams, counts: &[u64; 3], eps_sec: f64) -> (f64, f64) {
    let [m1, m2, m3] = d.intensities;
    let (lo, hi) = corrected(d, counts, eps_sec);
    let tau0 = tau(d, 0);
    let tau1 = tau(d, 1);
    let s0 = (tau0 * (m2 * lo[2] - m3 * hi[1]) / (m2 - m3)).max(0.0);
    let s1 = tau1 * m1 * (lo[1] - hi[2] - (m2 * m2 - m3 * m3) / (m1 * m1) * (hi[0] - s0 / tau0))
        / (m1 * (m2 - m3) - m2 * m2 + m3 * m3);
    (s0, s1.max(0.0))
}

/// γ(a, b, c, d) of Lim et al. Eq. (5).
pub fn gamma(a: f64, b: f64, c: f64, d: f64) -> f64 {
    let bb = b * (1.0 - b);
    let inner = (c + d) / (c * d * bb) * (21.0 * 21.0) / (a * a);
    ((c + d) * bb / (c * d * std::f64::consts::LN_2) * inner.log2())
        .max(0.0)
        .sqrt()
}

/// Evaluate the bounds for one block.
pub fn bounds(d: &DecoyParams, c: &DecoyCounts, eps_sec: f64) -> FiniteKeyBounds {
    let [_, m2, m3] = d.intensities;
    let (s0_key, s1_key) = vacuum_and_single_photon(d, &c.n_key, eps_sec);
    let (s0_test, s1_test) = vacuum_and_single_photon(d, &c.n_test, eps_sec);
    let (mlo, mhi) = corrected(d, &c.m_test, eps_sec);
    let v1_test = (tau(d, 1) * (mhi[1] - mlo[2]) / (m2 - m3)).max(0.0);
    let (observed, phase) = if s1_test >= 1.0 && s1_key >= 1.0 {
        let b = (v1_test / s1_test).min(0.5);
        let b_gamma = b.max(1.0 / s1_test).min(0.5);
        (b, (b + gamma(eps_sec, b_gamma, s1_test, s1_key)).min(0.5))
    } else {
        (0.5, 0.5)
    };
    let security_cost = 6.0 * (21.0 / eps_sec).log2();
    let entropy_bound = s0_key + s1_key * (1.0 - binary_entropy(phase)) - security_cost;
    FiniteKeyBounds {
        s0_key,
        s1_key,
        s0_test,
        s1_test,
        v1_test,
        phase_error_observed: observed,
        phase_error_bound: phase,
        security_cost,
        entropy_bound,
    }
}

/// The verification term subtracted from the key: the tag bits sent, at least log₂(2/ε_cor).
pub fn verification_cost(tag_bits: u64, eps_cor: f64) -> f64 {
    (tag_bits as f64).max((2.0 / eps_cor).log2())
}

/// Secret length ℓ = ⌊entropy_bound − λ_EC − verification − discarded⌋, or 0 when negative.
/// `entropy_bound` is the block's bound before disclosure (any protocol's
/// [`crate::protocols::KeyBound`]); `leak_ec` everything charged for error correction (Alice's
/// messages and Bob's key-dependent replies).
pub fn secret_length(
    entropy_bound: f64,
    leak_ec: u64,
    tag_bits: u64,
    discarded_bits: u64,
    eps_cor: f64,
) -> u64 {
    let l = entropy_bound
        - leak_ec as f64
        - verification_cost(tag_bits, eps_cor)
        - discarded_bits as f64;
    if l >= 1.0 { l.floor() as u64 } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A standard channel model (Lo, Ma, Chen 2005): Y_n = 1 − (1 − Y₀)(1 − η)^n,
    /// e_n Y_n = e₀Y₀ + e_d (Y_n − Y₀). Counts are the exact expectations for `pulses` pulses.
    fn model_counts(
        d: &DecoyParams,
        pulses: f64,
        eta: f64,
        y0: f64,
        e_d: f64,
    ) -> (DecoyCounts, f64, f64, f64) {
        let q = |mu: f64| 1.0 - (1.0 - y0) * (-eta * mu).exp();
        let eq = |mu: f64| 0.5 * y0 + e_d * (q(mu) - y0);
        let (pk, pt) = (
            d.prob_key_basis * d.prob_key_basis,
            (1.0 - d.prob_key_basis).powi(2),
        );
        let mut c = DecoyCounts::default();
        for k in 0..3 {
            let mu = d.intensities[k];
            c.n_key[k] = (pulses * pk * d.probabilities[k] * q(mu)).round() as u64;
            c.n_test[k] = (pulses * pt * d.probabilities[k] * q(mu)).round() as u64;
            c.m_test[k] = (pulses * pt * d.probabilities[k] * eq(mu)).round() as u64;
        }
        let y1 = 1.0 - (1.0 - y0) * (1.0 - eta);
        let s1_key_true = pulses * pk * tau(d, 1) * y1;
        let s0_key_true = pulses * pk * tau(d, 0) * y0;
        let e1 = (0.5 * y0 + e_d * (y1 - y0)) / y1;
        (c, s0_key_true, s1_key_true, e1)
    }

    #[test]
    fn entropy_values() {
        assert_eq!(binary_entropy(0.0), 0.0);
        assert_eq!(binary_entropy(0.5), 1.0);
        assert!((binary_entropy(0.11) - 0.4999).abs() < 1e-3);
        assert!((binary_entropy(0.02) - 0.1414).abs() < 1e-3);
        // The whole interval: h is symmetric about ½ (the device-independent E91 term
        // evaluates h above ½; a cap at ½ made that rate always 0).
        assert!((binary_entropy(0.9) - binary_entropy(0.1)).abs() < 1e-12);
        assert!((binary_entropy(0.9598) - 0.2432).abs() < 1e-3);
        assert_eq!(binary_entropy(1.0), 0.0);
    }

    #[test]
    fn bounds_are_valid_and_tight_with_large_statistics() {
        let d = DecoyParams::default();
        let (c, s0_true, s1_true, e1_true) = model_counts(&d, 1e15, 0.1, 1e-6, 0.01);
        let b = bounds(&d, &c, 1e-10);
        // Lower bounds below the truth, but close to it with 10^15 pulses.
        assert!(
            b.s0_key <= s0_true * 1.0001 && b.s1_key <= s1_true * 1.0001,
            "{b:?}"
        );
        assert!(
            b.s1_key > 0.9 * s1_true,
            "s1 {} vs true {s1_true}",
            b.s1_key
        );
        // The single-photon phase error bound is above the true e1 and close to it.
        assert!(
            b.phase_error_bound >= e1_true * 0.999,
            "{} vs {e1_true}",
            b.phase_error_bound
        );
        assert!(
            b.phase_error_bound < e1_true + 0.01,
            "{} vs {e1_true}",
            b.phase_error_bound
        );
    }

    #[test]
    fn finite_statistics_cost_key_and_errors_cost_more() {
        let d = DecoyParams::default();
        let rate = |pulses: f64, e_d: f64| {
            let (c, ..) = model_counts(&d, pulses, 0.1, 1e-6, e_d);
            bounds(&d, &c, 1e-10).entropy_bound / c.key_total() as f64
        };
        let (r8, r10, r12) = (rate(1e8, 0.01), rate(1e10, 0.01), rate(1e12, 0.01));
        assert!(r8 < r10 && r10 < r12, "{r8} {r10} {r12}");
        assert!(rate(1e10, 0.03) < r10);
        // Too little data: no key.
        assert!(rate(1e6, 0.01) <= 0.0);
    }

    #[test]
    fn secret_length_subtracts_every_disclosure() {
        let d = DecoyParams::default();
        let (c, ..) = model_counts(&d, 1e10, 0.1, 1e-6, 0.01);
        let b = bounds(&d, &c, 1e-10);
        let l0 = secret_length(b.entropy_bound, 0, 0, 0, 1e-15);
        // With no tag sent, the verification term is log2(2/ε_cor) ≈ 50.8 bits.
        assert_eq!(
            l0,
            (b.entropy_bound - (2.0f64 / 1e-15).log2()).floor() as u64
        );
        assert_eq!(
            secret_length(b.entropy_bound, 1000, 128, 64, 1e-15),
            (b.entropy_bound - 1192.0).floor() as u64
        );
        assert_eq!(secret_length(b.entropy_bound, u64::MAX / 2, 0, 0, 1e-15), 0);
    }
}

#[cfg(test)]
mod doc_tests {
    /// docs/security.md states the cost of the ε terms that the code computes (it said
    /// "≈ 231 bits" for 225.67).
    #[test]
    fn security_doc_states_the_computed_cost() {
        let doc = include_str!("../../docs/security.md");
        let cost = 6.0 * (21.0f64 / 1e-10).log2();
        assert!(
            doc.contains(&format!("{cost:.2} bits per block")),
            "{cost:.2}"
        );
        assert!(!doc.contains("231 bits"));
    }
}
