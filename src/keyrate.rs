//! Secret-key rate of decoy-state BB84 against distance, for a described device, with the
//! same formulas as the simulator and the engine.
//!
//! The link model is [`crate::sim::link`] (Lo, Ma, Chen, PRL 94, 230504 (2005); Ma, Qi, Zhao,
//! Lo, PRA 72, 012326 (2005), extended to a passive four-detector receiver with squashing):
//! [`crate::sim::link::expectation`] gives the expected sifted counts and errors per intensity
//! and basis. Three bounds are evaluated on them, per pulse:
//!
//! * **infinite decoy** (GLLP with exact yields: Gottesman, Lo, Lütkenhaus, Preskill, QIC 4,
//!   325 (2004); Lo, Ma, Chen 2005): s₀ + s₁(1 − h(e₁ᵗ)) − λ_EC, with the vacuum and
//!   single-photon contributions and the single-photon test-basis error rate e₁ᵗ computed from
//!   the model's Fock-state yields ([`crate::sim::link::fock_pattern_probabilities`]);
//! * **asymptotic three-intensity decoy**: the estimators of Lim, Curty, Walenta, Xu, Zbinden,
//!   PRA 89, 022307 (2014), Eqs. (2)–(4), on expected counts without statistical fluctuations;
//! * **finite key** at N pulses (or n_X sifted key-basis bits): Lim et al. Eqs. (1)–(5) on the
//!   expected counts of N pulses, evaluated by [`crate::parameter_estimation::finite_key::bounds`]
//!   — the function the engine applies to every block.
//!
//! λ_EC = f·n_X·h(E_X) here (a model: the engine subtracts the bits actually disclosed), and the
//! verification term is log₂(2/ε_cor). The PLOB bound −log₂(1 − η_ch) of the channel
//! (Pirandola, Laurenza, Ottaviani, Banchi, Nat. Commun. 8, 15043 (2017)) is given for
//! comparison, with η_ch the fiber transmittance alone.

use crate::error::ConfigError;
use crate::parameter_estimation::finite_key::{self, DecoyCounts, binary_entropy};
use crate::protocol::{Basis, DecoyParams};
use crate::sim::link::{self, LinkParams};
use serde::{Deserialize, Serialize};

/// How much data the finite-key bound sees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSize {
    /// Only the asymptotic bounds.
    Asymptotic,
    /// N pulses sent.
    Pulses(f64),
    /// n_X sifted key-basis bits (N follows from the sifting rate at each distance).
    SiftedBits(f64),
}

/// What the analysis assumes beyond the link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateSettings {
    /// Error-correction efficiency f (λ_EC = f·n·h(E)).
    pub f_ec: f64,
    /// Secrecy parameter.
    pub epsilon_sec: f64,
    /// Correctness parameter.
    pub epsilon_cor: f64,
    /// Fraction of key-basis bits disclosed for the error estimate (removed from the key).
    pub qber_sample_fraction: f64,
    /// Data size of the finite-key bound.
    pub data: DataSize,
    /// When set, ε_sec = κ·ℓ (a fixed security per key bit, as in Lim et al.'s figures with
    /// κ = 10⁻¹⁵), found by fixed-point iteration; otherwise ε_sec is `epsilon_sec`.
    #[serde(default)]
    pub epsilon_sec_per_bit: Option<f64>,
}

impl Default for RateSettings {
    fn default() -> Self {
        RateSettings {
            f_ec: 1.16,
            epsilon_sec: 1e-10,
            epsilon_cor: 1e-15,
            qber_sample_fraction: 0.0,
            data: DataSize::Asymptotic,
            epsilon_sec_per_bit: None,
        }
    }
}

impl RateSettings {
    /// Check ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.f_ec >= 1.0 && self.f_ec <= 3.0) {
            return Err(ConfigError::invalid(
                "f",
                format!("{} not in [1, 3]", self.f_ec),
            ));
        }
        for (name, v) in [
            ("epsilon-sec", self.epsilon_sec),
            ("epsilon-cor", self.epsilon_cor),
        ] {
            if !(v > 0.0 && v < 1.0) {
                return Err(ConfigError::invalid(name, format!("{v} not in (0, 1)")));
            }
        }
        if !(0.0..0.5).contains(&self.qber_sample_fraction) {
            return Err(ConfigError::invalid(
                "qber-sample",
                format!("{} not in [0, 0.5)", self.qber_sample_fraction),
            ));
        }
        match self.data {
            DataSize::Pulses(n) | DataSize::SiftedBits(n) if !(n >= 1.0 && n.is_finite()) => Err(
                ConfigError::invalid("pulses", format!("{n} is not a count")),
            ),
            _ => Ok(()),
        }
    }
}

/// The rates at one distance, in secret bits per pulse (multiply by the clock rate for bit/s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RatePoint {
    /// Fiber length.
    pub distance_km: f64,
    /// Fiber transmittance η_ch = 10^(−αL/10).
    pub channel_transmittance: f64,
    /// Overall transmittance (fiber, receiver, detector).
    pub transmittance: f64,
    /// Expected key-basis QBER.
    pub qber_key: f64,
    /// Expected test-basis QBER.
    pub qber_test: f64,
    /// Sifted key-basis bits per pulse.
    pub sifted_key_per_pulse: f64,
    /// Infinite-decoy (GLLP) rate.
    pub infinite_decoy: f64,
    /// Asymptotic rate with the three intensities.
    pub asymptotic_decoy: f64,
    /// Finite-key rate (Lim et al. 2014) at `pulses`.
    pub finite_key: Option<f64>,
    /// Pulses N of the finite-key bound.
    pub pulses: Option<f64>,
    /// PLOB bound −log₂(1 − η_ch).
    pub plob: f64,
    /// Clock rate (pulses per second).
    pub clock_rate_hz: f64,
}

impl RatePoint {
    /// A rate in bit/s.
    pub fn per_second(&self, per_pulse: f64) -> f64 {
        per_pulse * self.clock_rate_hz
    }
}

/// PLOB bound of a pure-loss channel of transmittance η (bits per channel use).
pub fn plob(eta: f64) -> f64 {
    -(1.0 - eta).log2()
}

/// Vacuum and single-photon lower bounds (s₀, s₁) without fluctuations (Lim Eqs. 2–3 with
/// n^± = e^(μ_k)/p_k · n_k), per pulse, from per-class key (or test) rates `n`.
fn decoy_bounds(d: &DecoyParams, n: &[f64; 3]) -> (f64, f64) {
    let [m1, m2, m3] = d.intensities;
    let c: [f64; 3] = std::array::from_fn(|k| d.intensities[k].exp() / d.probabilities[k] * n[k]);
    let (tau0, tau1) = (finite_key::tau(d, 0), finite_key::tau(d, 1));
    let s0 = (tau0 * (m2 * c[2] - m3 * c[1]) / (m2 - m3)).max(0.0);
    let s1 = tau1 * m1 * (c[1] - c[2] - (m2 * m2 - m3 * m3) / (m1 * m1) * (c[0] - s0 / tau0))
        / (m1 * (m2 - m3) - m2 * m2 + m3 * m3);
    (s0, s1.max(0.0))
}

/// Evaluate the bounds for `link` (at its distance) and `s`.
pub fn evaluate(link: &LinkParams, s: &RateSettings) -> RatePoint {
    let d = &link.decoy;
    let e = link::expectation(link);
    let keep = 1.0 - s.qber_sample_fraction;
    let n_key: [f64; 3] = std::array::from_fn(|k| e.sifted_key_per_class[k] * keep);
    let n_key_total: f64 = n_key.iter().sum();
    let leak = s.f_ec * n_key_total * binary_entropy(e.qber_key_overall);

    // Infinite decoy: Fock-state yields of the model.
    let mut y_key = [0.0f64; 2];
    let (mut y1_test, mut e1_test) = (0.0, 0.0);
    for photons in 0..2u32 {
        for (basis, weight) in [
            (Basis::Z, d.prob_key_basis),
            (Basis::X, 1.0 - d.prob_key_basis),
        ] {
            for value in 0..2u8 {
                let out = link::squash_probabilities(&link::fock_pattern_probabilities(
                    link, photons, basis, value,
                ));
                let (right, wrong) = match basis {
                    Basis::Z => (value as usize, 1 - value as usize),
                    Basis::X => (2 + value as usize, 3 - value as usize),
                };
                let w = weight / 2.0;
                match basis {
                    Basis::Z => y_key[photons as usize] += w * (out[right] + out[wrong]),
                    Basis::X if photons == 1 => {
                        y1_test += w * (out[right] + out[wrong]);
                        e1_test += w * out[wrong];
                    }
                    Basis::X => {}
                }
            }
        }
    }
    let s0_inf = finite_key::tau(d, 0) * y_key[0] * keep;
    let s1_inf = finite_key::tau(d, 1) * y_key[1] * keep;
    let e1 = if y1_test > 0.0 {
        (e1_test / y1_test).min(0.5)
    } else {
        0.5
    };
    let infinite_decoy = (s0_inf + s1_inf * (1.0 - binary_entropy(e1)) - leak).max(0.0);

    // Asymptotic three-intensity estimators.
    let (s0, s1) = decoy_bounds(d, &n_key);
    let (_, s1_test) = decoy_bounds(d, &e.sifted_test_per_class);
    let [_, m2, m3] = d.intensities;
    let m: [f64; 3] = std::array::from_fn(|k| {
        d.intensities[k].exp() / d.probabilities[k] * e.errors_test_per_class[k]
    });
    let v1 = (finite_key::tau(d, 1) * (m[1] - m[2]) / (m2 - m3)).max(0.0);
    let phi = if s1_test > 0.0 {
        (v1 / s1_test).min(0.5)
    } else {
        0.5
    };
    let asymptotic_decoy = (s0 + s1 * (1.0 - binary_entropy(phi)) - leak).max(0.0);

    // Finite key at N pulses.
    let pulses = match s.data {
        DataSize::Asymptotic => None,
        DataSize::Pulses(n) => Some(n),
        DataSize::SiftedBits(n) if n_key_total > 0.0 => Some(n / n_key_total),
        DataSize::SiftedBits(_) => Some(f64::INFINITY),
    };
    let finite = pulses.map(|n| {
        if !n.is_finite() {
            return 0.0;
        }
        let count = |x: f64| (x * n).round().clamp(0.0, u64::MAX as f64) as u64;
        let c = DecoyCounts {
            n_key: std::array::from_fn(|k| count(n_key[k])),
            n_test: std::array::from_fn(|k| count(e.sifted_test_per_class[k])),
            m_test: std::array::from_fn(|k| count(e.errors_test_per_class[k])),
        };
        if c.key_total() == 0 || c.test_total() == 0 {
            return 0.0;
        }
        let length = |eps: f64| {
            let b = finite_key::bounds(d, &c, eps);
            (b.entropy_bound
                - s.f_ec * c.key_total() as f64 * binary_entropy(e.qber_key_overall)
                - (2.0 / s.epsilon_cor).log2())
            .max(0.0)
            .floor()
        };
        let mut l = length(s.epsilon_sec);
        if let Some(kappa) = s.epsilon_sec_per_bit {
            for _ in 0..6 {
                l = length((kappa * l.max(1.0)).min(0.5));
            }
        }
        l / n
    });
    let eta_ch = 10f64.powf(-link.distance_km * link.fiber_loss_db_per_km / 10.0);
    RatePoint {
        distance_km: link.distance_km,
        channel_transmittance: eta_ch,
        transmittance: link.transmittance(),
        qber_key: e.qber_key_overall,
        qber_test: e.qber_test_overall,
        sifted_key_per_pulse: n_key_total,
        infinite_decoy,
        asymptotic_decoy,
        finite_key: finite,
        pulses,
        plob: plob(eta_ch),
        clock_rate_hz: link.clock_rate_hz as f64,
    }
}

/// The parameter set of Lim, Curty, Walenta, Xu, Zbinden, PRA 89, 022307 (2014), Fig. 1:
/// η_Bob = 10 %, p_dc = 6×10⁻⁷, p_ap = 4 %, e_mis = 0.5 %, f = 1.16, μ₃ = 2×10⁻⁴,
/// 0.2 dB/km, ε_cor = 10⁻¹⁵, ε_sec = κ·ℓ with κ = 10⁻¹⁵, every other parameter optimised.
pub fn lim2014() -> (LinkParams, RateSettings) {
    (
        LinkParams {
            fiber_loss_db_per_km: 0.2,
            receiver_loss_db: 0.0,
            detector_efficiency: 0.1,
            dark_count_prob: 6e-7,
            misalignment: 5e-3,
            afterpulse_prob: 0.04,
            ..LinkParams::default()
        },
        RateSettings {
            f_ec: 1.16,
            epsilon_sec: 1e-10,
            epsilon_cor: 1e-15,
            qber_sample_fraction: 0.0,
            data: DataSize::Asymptotic,
            epsilon_sec_per_bit: Some(1e-15),
        },
    )
}

/// Source parameters chosen by [`optimize`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Optimized {
    /// The point at the optimum.
    pub point: RatePoint,
    /// Intensities, probabilities and basis choice at the optimum.
    pub decoy: DecoyParams,
}

/// The rate being optimised: finite key when a data size is given, else asymptotic decoy.
fn objective(p: &RatePoint) -> f64 {
    p.finite_key.unwrap_or(p.asymptotic_decoy)
}

/// Choose μ₁, μ₂, their probabilities and the basis probability (Alice's and Bob's, kept
/// equal) to maximise the rate, with μ₃ fixed, as Lim et al. do for their figures. Nelder–Mead
/// on an unconstrained parametrisation (μ₂ = μ₃ + e^a, μ₁ = μ₂ + μ₃ + e^b, probabilities by
/// softmax, q = ½ + ½·σ(c)), restarted from the given parameters and a few standard points.
pub fn optimize(link: &LinkParams, s: &RateSettings) -> Optimized {
    let mu3 = link.decoy.intensities[2];
    // Box constraints keep the estimators well conditioned: μ₂ − μ₃ ≥ 0.005,
    // μ₁ − μ₂ − μ₃ ≥ 0.01, μ₁ ≤ 2, every p_k ≥ 0.01, q ≤ 0.99.
    let decode = |x: &[f64; 5]| -> DecoyParams {
        let mu2 = mu3 + 0.005 + x[0].exp().min(1.0);
        let mu1 = (mu2 + mu3 + 0.01 + x[1].exp()).min(2.0);
        let (e2, e3) = (x[2].clamp(-30.0, 30.0).exp(), x[3].clamp(-30.0, 30.0).exp());
        let z = 1.0 + e2 + e3;
        let raw = [1.0 / z, e2 / z, e3 / z];
        let floor: [f64; 3] = std::array::from_fn(|k| raw[k].max(0.01));
        let sum: f64 = floor.iter().sum();
        DecoyParams {
            intensities: [mu1, mu2, mu3],
            probabilities: std::array::from_fn(|k| floor[k] / sum),
            prob_key_basis: (0.5 + 0.5 / (1.0 + (-x[4]).exp())).min(0.99),
        }
    };
    let encode = |d: &DecoyParams| -> [f64; 5] {
        let [mu1, mu2, _] = d.intensities;
        let q = d.prob_key_basis.clamp(0.5 + 1e-6, 1.0 - 1e-6);
        [
            (mu2 - mu3 - 0.005).max(1e-6).ln(),
            (mu1 - mu2 - mu3 - 0.01).max(1e-6).ln(),
            (d.probabilities[1] / d.probabilities[0]).ln(),
            (d.probabilities[2] / d.probabilities[0]).ln(),
            (2.0 * q - 1.0).ln() - (2.0 - 2.0 * q).ln(),
        ]
    };
    let eval = |x: &[f64; 5]| -> (f64, RatePoint, DecoyParams) {
        let d = decode(x);
        let mut l = link.clone();
        l.bob_prob_key_basis = d.prob_key_basis;
        l.decoy = d.clone();
        let p = evaluate(&l, s);
        let v = objective(&p);
        (if v.is_finite() { v } else { 0.0 }, p, d)
    };
    let starts = [
        encode(&link.decoy),
        encode(&DecoyParams {
            intensities: [0.5, 0.1, mu3],
            probabilities: [0.6, 0.3, 0.1],
            prob_key_basis: 0.9,
        }),
        encode(&DecoyParams {
            intensities: [0.7, 0.25, mu3],
            probabilities: [0.5, 0.3, 0.2],
            prob_key_basis: 0.75,
        }),
    ];
    let mut best = eval(&starts[0]);
    for start in starts {
        let (x, _) = nelder_mead(|x| -eval(x).0, start, 0.6, 600);
        let cand = eval(&x);
        if cand.0 > best.0 {
            best = cand;
        }
    }
    Optimized {
        point: best.1,
        decoy: best.2,
    }
}

/// Minimise `f` from `x0` with the Nelder–Mead simplex (standard coefficients 1, 2, ½, ½).
fn nelder_mead(
    f: impl Fn(&[f64; 5]) -> f64,
    x0: [f64; 5],
    step: f64,
    iters: usize,
) -> ([f64; 5], f64) {
    const N: usize = 5;
    let mut pts: Vec<([f64; N], f64)> = (0..=N)
        .map(|i| {
            let mut x = x0;
            if i > 0 {
                x[i - 1] += step;
            }
            (x, f(&x))
        })
        .collect();
    for _ in 0..iters {
        pts.sort_by(|a, b| a.1.total_cmp(&b.1));
        if (pts[N].1 - pts[0].1).abs() <= 1e-12 * pts[0].1.abs().max(1e-300) {
            break;
        }
        let mut c = [0.0; N];
        for p in &pts[..N] {
            for (cj, xj) in c.iter_mut().zip(p.0) {
                *cj += xj / N as f64;
            }
        }
        let along =
            |t: f64| -> [f64; N] { std::array::from_fn(|j| c[j] + t * (pts[N].0[j] - c[j])) };
        let xr = along(-1.0);
        let fr = f(&xr);
        if fr < pts[0].1 {
            let xe = along(-2.0);
            let fe = f(&xe);
            pts[N] = if fe < fr { (xe, fe) } else { (xr, fr) };
        } else if fr < pts[N - 1].1 {
            pts[N] = (xr, fr);
        } else {
            let xc = along(0.5);
            let fc = f(&xc);
            if fc < pts[N].1 {
                pts[N] = (xc, fc);
            } else {
                let x0 = pts[0].0;
                for p in pts.iter_mut().skip(1) {
                    p.0 = std::array::from_fn(|j| x0[j] + 0.5 * (p.0[j] - x0[j]));
                    p.1 = f(&p.0);
                }
            }
        }
    }
    pts.sort_by(|a, b| a.1.total_cmp(&b.1));
    (pts[0].0, pts[0].1)
}

/// Rates at each distance.
pub fn sweep(
    link: &LinkParams,
    s: &RateSettings,
    distances: &[f64],
    optimise: bool,
) -> Vec<Optimized> {
    distances
        .iter()
        .map(|&km| {
            let l = LinkParams {
                distance_km: km,
                ..link.clone()
            };
            if optimise {
                optimize(&l, s)
            } else {
                Optimized {
                    point: evaluate(&l, s),
                    decoy: l.decoy.clone(),
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plob_matches_the_published_capacity() {
        // Pirandola et al. 2017: −log₂(1 − η) ≈ 1.44 η for small η.
        assert!((plob(0.01) - 0.0145).abs() < 1e-4);
        assert!((plob(1e-4) / 1e-4 - 1.0 / std::f64::consts::LN_2).abs() < 1e-3);
    }

    #[test]
    fn bounds_are_ordered_and_vanish_with_distance() {
        let s = RateSettings {
            data: DataSize::Pulses(1e10),
            ..Default::default()
        };
        let mut last = f64::INFINITY;
        for km in [0.0, 25.0, 50.0, 100.0] {
            let p = evaluate(
                &LinkParams {
                    distance_km: km,
                    ..LinkParams::default()
                },
                &s,
            );
            // Infinite decoy ≥ three intensities ≥ finite key, and all below PLOB.
            assert!(p.infinite_decoy >= p.asymptotic_decoy * 0.999, "{p:?}");
            assert!(p.asymptotic_decoy >= p.finite_key.unwrap(), "{p:?}");
            assert!(p.infinite_decoy < p.plob, "{p:?}");
            assert!(p.asymptotic_decoy < last);
            last = p.asymptotic_decoy;
        }
        let far = evaluate(
            &LinkParams {
                distance_km: 400.0,
                ..LinkParams::default()
            },
            &s,
        );
        assert_eq!(far.finite_key, Some(0.0));
        assert_eq!(far.asymptotic_decoy, 0.0);
    }

    #[test]
    fn published_finite_key_gain_of_lim_2014() {
        // Lim et al. 2014 (text on Fig. 1, transcribed in reference/literature.md §3.3): at
        // 100 km a block of n_X = 10⁹ gives ≈ 1.75× the key rate of n_X = 10⁷. We obtain 1.65
        // with our receiver (passive basis choice, four detectors, squashing) in place of
        // theirs; the tolerance is 8 %, not the 2 % the figure would allow with the exact model.
        let (link, base) = lim2014();
        let at = |nx: f64| {
            let s = RateSettings {
                data: DataSize::SiftedBits(nx),
                ..base.clone()
            };
            optimize(
                &LinkParams {
                    distance_km: 100.0,
                    ..link.clone()
                },
                &s,
            )
            .point
            .finite_key
            .unwrap()
        };
        let ratio = at(1e9) / at(1e7);
        assert!((ratio / 1.75 - 1.0).abs() < 0.08, "ratio {ratio}");
        // Below the asymptotic rate of the same device.
        let asym = optimize(
            &LinkParams {
                distance_km: 100.0,
                ..link.clone()
            },
            &base,
        )
        .point
        .asymptotic_decoy;
        assert!(at(1e9) < asym && asym < 2.0 * at(1e9));
    }

    #[test]
    fn plob_values_of_the_reference_table() {
        // −log₂(1 − η) at 0.2 dB/km (reference/literature.md §5): 50 km 0.152, 100 km
        // 1.45×10⁻², 150 km 1.44×10⁻³ bits per use; within 2 %.
        for (km, expect) in [(50.0, 0.152), (100.0, 1.45e-2), (150.0, 1.44e-3)] {
            let p = evaluate(
                &LinkParams {
                    distance_km: km,
                    ..LinkParams::default()
                },
                &RateSettings::default(),
            );
            assert!((p.plob / expect - 1.0).abs() < 0.02, "{km} km: {}", p.plob);
        }
    }

    #[test]
    fn finite_key_approaches_the_asymptotic_rate() {
        let link = LinkParams::default();
        let at = |n: f64| {
            evaluate(
                &link,
                &RateSettings {
                    data: DataSize::Pulses(n),
                    ..Default::default()
                },
            )
        };
        let (a, b, c) = (at(1e9), at(1e11), at(1e14));
        let (fa, fb, fc) = (
            a.finite_key.unwrap(),
            b.finite_key.unwrap(),
            c.finite_key.unwrap(),
        );
        assert!(fa < fb && fb < fc && fc <= c.asymptotic_decoy);
        assert!(
            fc > 0.97 * c.asymptotic_decoy,
            "{fc} vs {}",
            c.asymptotic_decoy
        );
    }
}
