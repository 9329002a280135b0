//! Statistical tests of the random choices a QKD run depends on: a manipulated or broken
//! random number generator (the survey's "forcing insecure keys through the RNG") leaves a
//! bias or a correlation in the strings it produced.
//!
//! The tests follow NIST SP 800-22 Rev. 1a (Rukhin et al., 2010): the **frequency (monobit)
//! test** (§2.1), here against the *nominal* probability of the choice rather than ½ (Alice's
//! basis and intensity choices are biased by design), and the **runs test** (§2.3) generalised
//! to a **serial-correlation test at lag L**: the number of positions i with x_i ≠ x_{i+L}. For
//! independent Bernoulli(p) bits, each term has mean q = 2p(1−p), and a term is correlated only
//! with the terms L before and L after it (they share one bit), so over m = n − L terms
//!
//! `E(D_L) = m·q`,   `Var(D_L) = m·q(1−q) + 2(m−L)·(p(1−p) − q²)`.
//!
//! L = 1 is the runs test. The serial tests use the string's own frequency p̂, so they test
//! independence whatever the bias (with the variance conditional on p̂, [`serial_z_counts`]);
//! the frequency test tests the bias. Each statistic is
//! compared two-sided at [`super::SIGMA`] standard deviations (nominal false-alarm rate
//! 5.7·10⁻⁷ per test).
//!
//! Two places run them:
//! * **Alice, locally, on her secret choices** ([`PrepRandomness`], monitor `alice_rng`):
//!   every slot of her preparation log — basis and value planes (frequency, and serial tests
//!   at the lags of [`LAGS`]) and the intensity classes (frequency of each class). Nothing is
//!   disclosed: she tests her own data.
//! * **Bob, on what Alice disclosed** ([`AnnouncedBases`], monitor `announced_bases`): the
//!   basis-match answers reveal Alice's basis at every detected slot; Bob tests their frequency
//!   against the agreed P(Z) and their serial correlation between consecutive detections. Bob
//!   does not have to trust Alice's equipment for this one.
//!
//! What no statistical test can catch: a generator whose output looks random but that Eve
//! can predict (a seeded PRNG whose seed she knows, a leaked or recorded random stream). The
//! proofs assume the choices are private and uniform in the stated probabilities; the reports
//! state that assumption, and `docs/attacks.md` says which attack models it.

use super::{Alarm, MonitorRun, MonitorStatus, SIGMA, alarm};
use crate::kernels::Kernels;
use crate::protocol::DecoyParams;

/// Lags of Alice's serial tests, in slots: 1–8 (a generator that repeats or alternates
/// locally) and 64·4^j (word-aligned periods up to 2^20 slots, e.g. a short-period PRNG).
pub const LAGS: [usize; 15] = [
    1, 2, 3, 4, 5, 6, 7, 8, 64, 256, 1024, 4096, 16_384, 65_536, 262_144,
];

/// z-score of `ones` ones in `n` independent Bernoulli(`p`) trials.
pub fn frequency_z(ones: u64, n: u64, p: f64) -> f64 {
    if n == 0 || !(0.0..=1.0).contains(&p) {
        return 0.0;
    }
    let var = n as f64 * p * (1.0 - p);
    if var <= 0.0 {
        // A choice the source never makes (or always makes): any deviation is infinite.
        let expected = n as f64 * p;
        return if (ones as f64 - expected).abs() < 0.5 {
            0.0
        } else {
            f64::INFINITY
        };
    }
    (ones as f64 - n as f64 * p) / var.sqrt()
}

/// z-score of `d` disagreements x_i ≠ x_{i+lag} over a string of `n` bits whose frequency
/// of ones is `p` (the string's own), conditional on that frequency: see
/// [`serial_z_counts`].
pub fn serial_z(d: u64, n: u64, lag: u64, p: f64) -> f64 {
    if n <= lag {
        return 0.0;
    }
    serial_z_counts(d, n - lag, n.saturating_sub(2 * lag), n, p)
}

/// Bit `i` of LSB-first words.
#[inline]
fn bit(words: &[u64], i: usize) -> u64 {
    (words[i / 64] >> (i % 64)) & 1
}

/// Disagreements x_i ≠ x_{i+lag} for i in 0..n−lag, bit by bit (the oracle of
/// [`lag_disagreements`]).
pub fn lag_disagreements_reference(words: &[u64], n: usize, lag: usize) -> u64 {
    (0..n.saturating_sub(lag))
        .map(|i| bit(words, i) ^ bit(words, i + lag))
        .sum()
}

/// The 64 bits starting at bit `start` (bits past the end read as 0).
#[inline]
fn window(words: &[u64], start: usize) -> u64 {
    let (w, s) = (start / 64, start % 64);
    let lo = words.get(w).copied().unwrap_or(0);
    if s == 0 {
        return lo;
    }
    let hi = words.get(w + 1).copied().unwrap_or(0);
    (lo >> s) | (hi << (64 - s))
}

/// Disagreements x_i ≠ x_{i+lag} for i in 0..n−lag: the string XORed with itself shifted by
/// `lag` (a word-aligned view, or a shifted copy in `scratch`), counted by the kernels' XOR
/// popcount.
pub fn lag_disagreements(
    k: &Kernels,
    words: &[u64],
    n: usize,
    lag: usize,
    scratch: &mut Vec<u64>,
) -> u64 {
    let m = n.saturating_sub(lag);
    if m == 0 {
        return 0;
    }
    let full = m / 64;
    let (q, s) = (lag / 64, lag % 64);
    let mut d = if s == 0 {
        k.xor_popcount(&words[..full], &words[q..q + full])
    } else {
        // Bit w·64 + lag + 63 < n for every full word w, so words q..q+full+1 exist.
        scratch.clear();
        scratch.extend(
            words[q..q + full]
                .iter()
                .zip(&words[q + 1..q + 1 + full])
                .map(|(lo, hi)| (lo >> s) | (hi << (64 - s))),
        );
        k.xor_popcount(&words[..full], scratch)
    };
    let rest = m % 64;
    if rest > 0 {
        let mask = (1u64 << rest) - 1;
        d += u64::from(((words[full] ^ window(words, full * 64 + lag)) & mask).count_ones());
    }
    d
}

/// Little-endian bytes of a plane as words, bits past `n` cleared.
fn plane_words(bytes: &[u8], n: usize) -> Vec<u64> {
    let mut words = vec![0u64; n.div_ceil(64)];
    for (i, chunk) in bytes[..n.div_ceil(8)].chunks(8).enumerate() {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        words[i] = u64::from_le_bytes(b);
    }
    if !n.is_multiple_of(64)
        && let Some(last) = words.last_mut()
    {
        *last &= (1u64 << (n % 64)) - 1;
    }
    words
}

/// Counts of Alice's choices over the blocks of her preparation log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrepRandomness {
    /// Slots counted.
    pub slots: u64,
    /// Slots prepared in X (basis bit 1).
    pub basis_x: u64,
    /// Slots with value 1.
    pub value_ones: u64,
    /// Slots per intensity class.
    pub classes: [u64; 3],
    /// Serial disagreements per lag of [`LAGS`], basis plane, and the positions they span.
    pub basis_lag: [u64; LAGS.len()],
    /// Serial disagreements per lag, value plane.
    pub value_lag: [u64; LAGS.len()],
    /// Positions (n − lag summed over blocks) behind each lag's count.
    pub lag_positions: [u64; LAGS.len()],
    /// Pairs of terms that share a bit (n − 2·lag summed over blocks), for the variance.
    pub lag_pairs: [u64; LAGS.len()],
}

impl PrepRandomness {
    /// Count one block of `n` slots given its planes (basis, value, int0, int1) as
    /// little-endian bytes. Serial pairs do not cross block boundaries.
    pub fn add_block(&mut self, k: &Kernels, planes: [&[u8]; 4], n: usize) {
        let mut scratch = Vec::new();
        let [basis, value, int0, int1] = planes.map(|p| plane_words(p, n));
        let ones = |w: &[u64]| w.iter().map(|x| u64::from(x.count_ones())).sum::<u64>();
        self.slots += n as u64;
        self.basis_x += ones(&basis);
        self.value_ones += ones(&value);
        let (mut c1, mut c2) = (0u64, 0u64);
        for (a, b) in int0.iter().zip(&int1) {
            c1 += u64::from((a & !b).count_ones());
            c2 += u64::from((b & !a).count_ones());
        }
        self.classes[1] += c1;
        self.classes[2] += c2;
        self.classes[0] += n as u64 - c1 - c2;
        for (j, &lag) in LAGS.iter().enumerate() {
            if n <= lag {
                continue;
            }
            self.basis_lag[j] += lag_disagreements(k, &basis, n, lag, &mut scratch);
            self.value_lag[j] += lag_disagreements(k, &value, n, lag, &mut scratch);
            self.lag_positions[j] += (n - lag) as u64;
            self.lag_pairs[j] += n.saturating_sub(2 * lag) as u64;
        }
    }

    /// Add the counts of other blocks.
    pub fn merge(&mut self, o: &PrepRandomness) {
        self.slots += o.slots;
        self.basis_x += o.basis_x;
        self.value_ones += o.value_ones;
        for i in 0..3 {
            self.classes[i] += o.classes[i];
        }
        for j in 0..LAGS.len() {
            self.basis_lag[j] += o.basis_lag[j];
            self.value_lag[j] += o.value_lag[j];
            self.lag_positions[j] += o.lag_positions[j];
            self.lag_pairs[j] += o.lag_pairs[j];
        }
    }

    /// The monitor `alice_rng`: frequency tests against the source's nominal probabilities and
    /// serial tests at every lag; an alarm names the plane, the test and its z-score.
    pub fn evaluate(&self, decoy: &DecoyParams) -> MonitorRun {
        let mut run = MonitorRun::default();
        if self.slots < 10_000 {
            run.skipped("alice_rng", "fewer than 10 000 prepared slots");
            return run;
        }
        run.status.push(MonitorStatus::ran("alice_rng"));
        let n = self.slots;
        let mut tests: Vec<(String, f64)> = vec![
            (
                format!(
                    "basis frequency: {:.5} in X, nominal {:.5}",
                    self.basis_x as f64 / n as f64,
                    1.0 - decoy.prob_key_basis
                ),
                frequency_z(self.basis_x, n, 1.0 - decoy.prob_key_basis),
            ),
            (
                format!(
                    "value frequency: {:.5} ones, nominal 0.5",
                    self.value_ones as f64 / n as f64
                ),
                frequency_z(self.value_ones, n, 0.5),
            ),
        ];
        for k in 0..3 {
            tests.push((
                format!(
                    "intensity class {k} frequency: {:.5}, nominal {:.5}",
                    self.classes[k] as f64 / n as f64,
                    decoy.probabilities[k]
                ),
                frequency_z(self.classes[k], n, decoy.probabilities[k]),
            ));
        }
        let p_basis = self.basis_x as f64 / n as f64;
        let p_value = self.value_ones as f64 / n as f64;
        for (j, &lag) in LAGS.iter().enumerate() {
            let m = self.lag_positions[j];
            if m == 0 {
                continue;
            }
            for (plane, d, p) in [
                ("basis", self.basis_lag[j], p_basis),
                ("value", self.value_lag[j], p_value),
            ] {
                let z = serial_z_counts(d, m, self.lag_pairs[j], n, p);
                tests.push((
                    format!(
                        "{plane} serial correlation at lag {lag}: {:.5} of pairs differ, {:.5} expected",
                        d as f64 / m as f64,
                        2.0 * p * (1.0 - p)
                    ),
                    z,
                ));
            }
        }
        for (detail, z) in tests {
            if z.abs() > SIGMA {
                run.alarms.push(rng_alarm("alice_rng", z, detail));
            }
        }
        run
    }
}

/// z-score of `d` disagreements over `m` positions of strings of `n` bits in all, `pairs`
/// of the positions sharing a bit with another (n − 2L per string), at the observed frequency
/// `p`. The unconditional variance m·q(1−q) + 2·pairs·(p(1−p) − q²) of the module notes is
/// reduced by the part the number of ones explains, Cov(D, K)²/Var(K) = 4m²·p(1−p)(1−2p)²/n
/// (Cov(x_i ⊕ x_{i+L}, x_i) = p(1−p)(1−2p)), because p is estimated from the same bits; at
/// lag 1 this is the Wald–Wolfowitz runs variance 4n·p²(1−p)².
pub fn serial_z_counts(d: u64, m: u64, pairs: u64, n: u64, p: f64) -> f64 {
    if m == 0 || n == 0 {
        return 0.0;
    }
    let (m, a) = (m as f64, p * (1.0 - p));
    let q = 2.0 * a;
    let var = m * q * (1.0 - q) + 2.0 * pairs as f64 * (a - q * q)
        - 4.0 * m * m * a * (1.0 - 2.0 * p).powi(2) / n as f64;
    if var <= 0.0 {
        return 0.0;
    }
    (d as f64 - m * q) / var.sqrt()
}

fn rng_alarm(monitor: &str, z: f64, detail: String) -> Alarm {
    alarm(
        monitor,
        z.abs(),
        format!("{detail} ({z:+.1}σ): the random choices are biased or correlated"),
    )
}

/// Alice's bases at Bob's detected slots, as her basis-match answers disclose them, counted
/// over a block in detection order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AnnouncedBases {
    /// Detections counted.
    pub detections: u64,
    /// Of them, prepared in X.
    pub x: u64,
    /// Consecutive detections whose bases differ.
    pub changes: u64,
    /// Alice's basis at the last detection counted (continues the serial count across chunks).
    #[serde(skip)]
    pub last: Option<bool>,
}

impl AnnouncedBases {
    /// Count one chunk: Bob's bases (1 = X) and the match mask of Alice's answer, `n` bits.
    pub fn add(&mut self, k: &Kernels, bob_basis: &[u64], matched: &[u64], n: usize) {
        if n == 0 {
            return;
        }
        let words = n.div_ceil(64);
        let mut alice = Vec::with_capacity(words);
        for w in 0..words {
            alice.push(bob_basis[w] ^ !matched[w]);
        }
        if !n.is_multiple_of(64) {
            alice[words - 1] &= (1u64 << (n % 64)) - 1;
        }
        self.x += alice.iter().map(|w| u64::from(w.count_ones())).sum::<u64>();
        self.changes += lag_disagreements(k, &alice, n, 1, &mut Vec::new());
        let first = alice[0] & 1 == 1;
        if let Some(prev) = self.last {
            self.changes += u64::from(prev != first);
        }
        self.last = Some(bit(&alice, n - 1) == 1);
        self.detections += n as u64;
    }

    /// Add another block's counts (a remainder joining the last block).
    pub fn merge(&mut self, o: &AnnouncedBases) {
        self.detections += o.detections;
        self.x += o.x;
        self.changes += o.changes;
        if o.detections > 0 {
            self.last = o.last;
        }
    }

    /// The monitor `announced_bases` against the agreed P(Z): frequency and serial
    /// correlation of consecutive detections.
    pub fn evaluate(&self, decoy: &DecoyParams, run: &mut MonitorRun) {
        const NAME: &str = "announced_bases";
        if self.detections < 1_000 {
            run.skipped(NAME, "fewer than 1 000 detections");
            return;
        }
        run.status.push(MonitorStatus::ran(NAME));
        let n = self.detections;
        let p_x = 1.0 - decoy.prob_key_basis;
        let z = frequency_z(self.x, n, p_x);
        if z.abs() > SIGMA {
            run.alarms.push(rng_alarm(
                NAME,
                z,
                format!(
                    "Alice's disclosed bases: {:.5} in X at {n} detections, nominal {p_x:.5}",
                    self.x as f64 / n as f64
                ),
            ));
        }
        let p = self.x as f64 / n as f64;
        let z = serial_z(self.changes, n, 1, p);
        if z.abs() > SIGMA {
            run.alarms.push(rng_alarm(
                NAME,
                z,
                format!(
                    "Alice's disclosed bases: {:.5} of consecutive detections change basis, {:.5} expected",
                    self.changes as f64 / (n - 1) as f64,
                    2.0 * p * (1.0 - p)
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{RngExt, SeedableRng};

    proptest! {
        #[test]
        fn fast_lag_count_equals_the_bitwise_reference(
            words in proptest::collection::vec(any::<u64>(), 0..12),
            cut in 0usize..64,
            lag in 1usize..200,
        ) {
            let n = (words.len() * 64).saturating_sub(cut);
            let mut w = words.clone();
            if !n.is_multiple_of(64) && let Some(l) = w.last_mut() {
                *l &= (1u64 << (n % 64)) - 1;
            }
            let reference = lag_disagreements_reference(&w, n, lag);
            for k in Kernels::available() {
                prop_assert_eq!(lag_disagreements(&k, &w, n, lag, &mut Vec::new()), reference, "{:?}", k.isa());
            }
        }

        #[test]
        fn announced_bases_count_like_a_bitwise_walk(
            chunks in proptest::collection::vec(proptest::collection::vec((any::<bool>(), any::<bool>()), 0..150), 1..5),
        ) {
            let mut fast = AnnouncedBases::default();
            let mut alice_all = Vec::new();
            for c in &chunks {
                let n = c.len();
                let mut bob = vec![0u64; n.div_ceil(64).max(1)];
                let mut m = vec![0u64; n.div_ceil(64).max(1)];
                for (i, &(b, mt)) in c.iter().enumerate() {
                    bob[i / 64] |= u64::from(b) << (i % 64);
                    m[i / 64] |= u64::from(mt) << (i % 64);
                    alice_all.push(if mt { b } else { !b });
                }
                fast.add(&Kernels::detect(), &bob, &m, n);
            }
            let changes = alice_all.windows(2).filter(|w| w[0] != w[1]).count() as u64;
            prop_assert_eq!(fast.detections, alice_all.len() as u64);
            prop_assert_eq!(fast.x, alice_all.iter().filter(|&&a| a).count() as u64);
            prop_assert_eq!(fast.changes, changes);
        }
    }

    #[test]
    fn disclosed_bases_flag_a_biased_or_sticky_basis_generator() {
        let decoy = DecoyParams::default();
        let k = Kernels::detect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let p_x = 1.0 - decoy.prob_key_basis;
        let run_of = |rng: &mut rand_chacha::ChaCha8Rng, p: f64, stick: f64| {
            let n = 400_000;
            let mut a = crate::bits::BitVec::zeros(n);
            let mut prev = false;
            for i in 0..n {
                let mut b = rng.random::<f64>() < p;
                if i > 0 && rng.random::<f64>() < stick {
                    b = prev;
                }
                prev = b;
                a.set(i, b);
            }
            // Bob's bases and the match mask that disclose these bases: any Bob basis works.
            let bob = crate::bits::BitVec::zeros(n);
            let matched = a.not();
            let mut d = AnnouncedBases::default();
            for c in (0..n).step_by(65_536) {
                let e = (c + 65_536).min(n);
                d.add(
                    &k,
                    bob.slice(c, e).words(),
                    matched.slice(c, e).words(),
                    e - c,
                );
            }
            let mut run = MonitorRun::default();
            d.evaluate(&decoy, &mut run);
            run
        };
        assert!(run_of(&mut rng, p_x, 0.0).alarms.is_empty());
        let biased = run_of(&mut rng, p_x + 0.01, 0.0);
        assert!(
            biased.alarms.iter().any(|a| a.detail.contains("in X")),
            "{biased:?}"
        );
        let sticky = run_of(&mut rng, p_x, 0.05);
        assert!(
            sticky
                .alarms
                .iter()
                .any(|a| a.detail.contains("change basis")),
            "{sticky:?}"
        );
    }

    #[test]
    fn serial_variance_matches_simulation() {
        // Biased iid bits: the z-scores of the serial test at several lags have mean ≈ 0 and
        // variance ≈ 1 over many strings (the variance formula is right, not just a bound).
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let (n, p) = (4096usize, 0.15f64);
        for lag in [1usize, 3, 64] {
            let zs: Vec<f64> = (0..400)
                .map(|_| {
                    let mut w = vec![0u64; n / 64];
                    for i in 0..n {
                        if rng.random::<f64>() < p {
                            w[i / 64] |= 1 << (i % 64);
                        }
                    }
                    let ones: u64 = w.iter().map(|x| u64::from(x.count_ones())).sum();
                    let ph = ones as f64 / n as f64;
                    let d = lag_disagreements(&Kernels::portable(), &w, n, lag, &mut Vec::new());
                    serial_z(d, n as u64, lag as u64, ph)
                })
                .collect();
            let mean = zs.iter().sum::<f64>() / zs.len() as f64;
            let var = zs.iter().map(|z| (z - mean).powi(2)).sum::<f64>() / zs.len() as f64;
            assert!(mean.abs() < 0.25, "lag {lag}: mean {mean}");
            assert!((0.75..1.3).contains(&var), "lag {lag}: variance {var}");
        }
    }

    #[test]
    fn a_sticky_or_biased_string_is_flagged_and_a_fair_one_is_not() {
        let decoy = DecoyParams::default();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let n = 1 << 18;
        let draw = |rng: &mut rand_chacha::ChaCha8Rng, stick: f64, p_x: f64| {
            let mut planes = vec![vec![0u8; n / 8]; 4];
            let mut prev = (false, false, 0usize);
            for i in 0..n {
                let (mut b, mut v) = (rng.random::<f64>() < p_x, rng.random::<bool>());
                let r: f64 = rng.random();
                let mut k = if r < decoy.probabilities[0] {
                    0
                } else if r < decoy.probabilities[0] + decoy.probabilities[1] {
                    1
                } else {
                    2
                };
                if i > 0 && rng.random::<f64>() < stick {
                    (b, v, k) = prev;
                }
                prev = (b, v, k);
                for (plane, on) in [(0, b), (1, v), (2, k & 1 == 1), (3, k == 2)] {
                    planes[plane][i / 8] |= u8::from(on) << (i % 8);
                }
            }
            let mut s = PrepRandomness::default();
            s.add_block(
                &Kernels::detect(),
                [&planes[0], &planes[1], &planes[2], &planes[3]],
                n,
            );
            s.evaluate(&decoy)
        };
        let fair = draw(&mut rng, 0.0, 1.0 - decoy.prob_key_basis);
        assert!(fair.alarms.is_empty(), "{:?}", fair.alarms);
        let sticky = draw(&mut rng, 0.05, 1.0 - decoy.prob_key_basis);
        assert!(
            sticky.alarms.iter().any(|a| a.detail.contains("lag 1")),
            "{:?}",
            sticky.alarms
        );
        let biased = draw(&mut rng, 0.0, 1.0 - decoy.prob_key_basis + 0.02);
        assert!(
            biased
                .alarms
                .iter()
                .any(|a| a.detail.contains("basis frequency")),
            "{:?}",
            biased.alarms
        );
    }
}
