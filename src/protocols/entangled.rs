//! Entanglement-based QKD: E91 (Ekert, PRL 67, 661 (1991)) and BBM92 (Bennett, Brassard,
//! Mermin, PRL 68, 557 (1992)).
//!
//! **Source model.** A pulsed source emits Poisson(μ) polarisation-entangled pairs |Φ⁺⟩ per
//! slot with visibility V (Werner state: V·|Φ⁺⟩⟨Φ⁺| + (1 − V)·𝟙/4). Each photon crosses its arm
//! (fiber loss, detector efficiency) and is measured in a linear-polarisation basis at angle
//! θ with two threshold detectors; for a pair detected on both sides the outcomes agree with
//! probability (1 + V·cos 2(θ_A − θ_B))/2. Several pairs in a slot and dark counts give
//! accidental coincidences; double clicks are squashed to a random outcome.
//!
//! **Settings.** E91: Alice {0, π/8, π/4}, Bob {0, π/8, −π/8}; equal angles give key, and
//! (0 or π/4) × (±π/8) the CHSH value S = E(0, π/8) + E(0, −π/8) + E(π/4, π/8) − E(π/4, −π/8)
//! = 2√2·V. BBM92: both {0, π/4} (the BB84 bases); 0/0 gives key, π/4/π/4 the phase error.
//!
//! **Bounds.** BBM92 with trusted devices: Tomamichel et al. 2012 ([`super::tomamichel_length`]).
//! E91: the device-independent rate r = 1 − h(Q) − h((1 + √((S/2)² − 1))/2) of Acín, Brunner,
//! Gisin, Massar, Pironio, Scarani, PRL 98, 230501 (2007) (collective attacks, asymptotic),
//! evaluated with S's finite-size lower bound (Hoeffding per correlator, one-sided, union over
//! the four terms: δ_S = Σ √(2 ln(4/ε)/m_xy)) and the bits disclosed by error correction in
//! place of n·h(Q). That is not a finite-key device-independent proof (which needs the entropy
//! accumulation theorem, Arnon-Friedman et al., Nat. Commun. 9, 459 (2018)), so such keys are
//! reported with `security_proven = false`. The run aborts when S's lower bound is not above 2.

use super::{
    Bound, KeyReport, PartyLog, finish_keys, read_all, run_id_of, tomamichel_length,
    write_party_log,
};
use crate::bits::BitVec;
use crate::error::{AbortReason, ConfigError, Error, Result};
use crate::io::DetectionLog;
use crate::io::detection_log::Record;
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;
use std::path::{Path, PathBuf};

/// E91 or BBM92.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// Ekert's three-setting protocol with a CHSH test.
    E91,
    /// The entanglement-based BB84 of Bennett, Brassard and Mermin.
    Bbm92,
}

impl Variant {
    /// Measurement angles (Alice's, Bob's).
    pub fn angles(self) -> (Vec<f64>, Vec<f64>) {
        match self {
            Variant::E91 => (
                vec![0.0, PI / 8.0, PI / 4.0],
                vec![0.0, PI / 8.0, -PI / 8.0],
            ),
            Variant::Bbm92 => (vec![0.0, PI / 4.0], vec![0.0, PI / 4.0]),
        }
    }

    /// Name in the metadata.
    pub fn name(self) -> &'static str {
        match self {
            Variant::E91 => "e91",
            Variant::Bbm92 => "bbm92",
        }
    }
}

/// Source and link parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntangledParams {
    /// Protocol.
    pub variant: Variant,
    /// Mean pairs per slot.
    pub pair_prob: f64,
    /// Visibility V of the entangled state.
    pub visibility: f64,
    /// Fiber from the source to Alice, km.
    pub distance_a_km: f64,
    /// Fiber from the source to Bob, km.
    pub distance_b_km: f64,
    /// Fiber loss dB/km.
    pub fiber_loss_db_per_km: f64,
    /// Detector efficiency (both sides).
    pub detector_efficiency: f64,
    /// Dark-count probability per detector per slot.
    pub dark_count_prob: f64,
    /// Fraction of Bob's photons an eavesdropper measures (in 0 or π/4) and resends.
    pub intercept_resend: f64,
}

impl Default for EntangledParams {
    fn default() -> Self {
        EntangledParams {
            variant: Variant::E91,
            pair_prob: 0.05,
            visibility: 0.95,
            distance_a_km: 5.0,
            distance_b_km: 5.0,
            fiber_loss_db_per_km: 0.2,
            detector_efficiency: 0.6,
            dark_count_prob: 1e-7,
            intercept_resend: 0.0,
        }
    }
}

impl EntangledParams {
    fn validate(&self) -> Result<()> {
        let p = |name: &'static str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::from(ConfigError::invalid(
                    name,
                    format!("{v} not in [0, 1]"),
                )))
            }
        };
        p("visibility", self.visibility)?;
        p("detector efficiency", self.detector_efficiency)?;
        p("dark count", self.dark_count_prob)?;
        p("attack fraction", self.intercept_resend)?;
        if !(self.pair_prob > 0.0 && self.pair_prob < 5.0) {
            return Err(ConfigError::invalid("pair-prob", format!("{}", self.pair_prob)).into());
        }
        Ok(())
    }

    fn arm(&self, km: f64) -> f64 {
        self.detector_efficiency * 10f64.powf(-km * self.fiber_loss_db_per_km / 10.0)
    }
}

/// What a simulation produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntangledSummary {
    /// Parameters.
    pub params: EntangledParams,
    /// Slots.
    pub slots: u64,
    /// Seed.
    pub seed: u64,
    /// Clicks on each side.
    pub clicks: [u64; 2],
    /// Slots with clicks on both sides.
    pub coincidences: u64,
    /// 2√2·V, the CHSH value of the state (E91).
    pub ideal_chsh: f64,
    /// Files written.
    pub files: Vec<PathBuf>,
}

fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn poisson(rng: &mut ChaCha8Rng, lambda: f64) -> u32 {
    let (mut k, mut p, u) = (0u32, (-lambda).exp(), unit(rng));
    let mut cdf = p;
    while u > cdf && k < 100 {
        k += 1;
        p *= lambda / f64::from(k);
        cdf += p;
    }
    k
}

/// Simulate `slots` slots; writes `alice.qdl`, `bob.qdl` and `link.json` into `out`.
pub fn simulate(
    p: &EntangledParams,
    slots: u64,
    seed: u64,
    out: &Path,
    overwrite: bool,
) -> Result<EntangledSummary> {
    p.validate()?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let (aa, ba) = p.variant.angles();
    let (eta_a, eta_b) = (p.arm(p.distance_a_km), p.arm(p.distance_b_km));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    let mut coinc = 0u64;
    for slot in 0..slots {
        let sa = rng.random_range(0..aa.len());
        let sb = rng.random_range(0..ba.len());
        let (ta, tb) = (aa[sa], ba[sb]);
        let mut clicks_a = [false; 2];
        let mut clicks_b = [false; 2];
        for _ in 0..poisson(&mut rng, p.pair_prob) {
            let (oa, ob) = if unit(&mut rng) < p.intercept_resend {
                // Eve measures Bob's photon in 0 or π/4 and resends her result.
                let te = if unit(&mut rng) < 0.5 { 0.0 } else { PI / 4.0 };
                let e = unit(&mut rng) < 0.5;
                let pa = (1.0 + p.visibility * (2.0 * (ta - te)).cos()) / 2.0;
                let pb = (1.0 + (2.0 * (tb - te)).cos()) / 2.0;
                (
                    if unit(&mut rng) < pa { e } else { !e },
                    if unit(&mut rng) < pb { e } else { !e },
                )
            } else {
                let oa = unit(&mut rng) < 0.5;
                let same = (1.0 + p.visibility * (2.0 * (ta - tb)).cos()) / 2.0;
                (oa, if unit(&mut rng) < same { oa } else { !oa })
            };
            if unit(&mut rng) < eta_a {
                clicks_a[usize::from(oa)] = true;
            }
            if unit(&mut rng) < eta_b {
                clicks_b[usize::from(ob)] = true;
            }
        }
        for c in clicks_a.iter_mut().chain(clicks_b.iter_mut()) {
            if unit(&mut rng) < p.dark_count_prob {
                *c = true;
            }
        }
        let squash = |c: [bool; 2], rng: &mut ChaCha8Rng| -> Option<u16> {
            match c {
                [false, false] => None,
                [true, false] => Some(0),
                [false, true] => Some(1),
                [true, true] => Some(u16::from(unit(rng) < 0.5)),
            }
        };
        let oa = squash(clicks_a, &mut rng);
        let ob = squash(clicks_b, &mut rng);
        if let Some(o) = oa {
            ra.push(Record::detection(slot as i64, sa as u16 * 2 + o, 0));
        }
        if let Some(o) = ob {
            rb.push(Record::detection(slot as i64, sb as u16 * 2 + o, 0));
        }
        coinc += u64::from(oa.is_some() && ob.is_some());
    }
    let run_id = run_id_of(p.variant.name(), seed, slots);
    let chans = |angles: &[f64]| -> Vec<(u16, String)> {
        angles
            .iter()
            .enumerate()
            .flat_map(|(i, a)| {
                (0..2).map(move |o| ((i * 2 + o) as u16, format!("θ={:.4} out={o}", a)))
            })
            .collect()
    };
    let extra = |angles: &[f64]| serde_json::json!({"angles": angles, "slots": slots});
    let fa = write_party_log(
        &out.join("alice.qdl"),
        PartyLog {
            role: "alice",
            protocol: p.variant.name(),
            channels: chans(&aa),
            extra: extra(&aa),
            run_id,
        },
        &ra,
        overwrite,
    )?;
    let fb = write_party_log(
        &out.join("bob.qdl"),
        PartyLog {
            role: "bob",
            protocol: p.variant.name(),
            channels: chans(&ba),
            extra: extra(&ba),
            run_id,
        },
        &rb,
        overwrite,
    )?;
    let summary = EntangledSummary {
        params: p.clone(),
        slots,
        seed,
        clicks: [ra.len() as u64, rb.len() as u64],
        coincidences: coinc,
        ideal_chsh: 2.0 * 2f64.sqrt() * p.visibility,
        files: vec![fa, fb, out.join("link.json")],
    };
    super::write_summary(out, overwrite, &summary)?;
    Ok(summary)
}

/// The CHSH estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chsh {
    /// S.
    pub s: f64,
    /// Lower confidence bound S − δ_S.
    pub lower_bound: f64,
    /// δ_S.
    pub delta: f64,
    /// Correlators E(0,π/8), E(0,−π/8), E(π/4,π/8), E(π/4,−π/8) and their pair counts.
    pub correlators: [(f64, u64); 4],
    /// Confidence parameter of the bound.
    pub epsilon: f64,
}

/// The result of an entanglement-based distillation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntangledReport {
    /// Protocol.
    pub protocol: String,
    /// Slots with clicks on both sides.
    pub coincidences: u64,
    /// Key pairs (equal angles / the key basis).
    pub key_pairs: u64,
    /// The Bell test (E91).
    pub chsh: Option<Chsh>,
    /// Phase error from the test basis (BBM92).
    pub phase_error: Option<f64>,
    /// Test pairs (BBM92).
    pub test_pairs: u64,
    /// Key-pair sample disclosed for the error rate: (bits, errors).
    pub qber_sample: (u64, u64),
    /// Reconciliation, verification and amplification.
    pub key: Option<KeyReport>,
    /// Security abort.
    pub abort: Option<AbortReason>,
    /// Key files.
    pub key_files: Option<(PathBuf, PathBuf)>,
}

/// Distill Alice's and Bob's entanglement logs.
pub fn distill(
    alice: &Path,
    bob: &Path,
    eps_sec: f64,
    eps_cor: f64,
    out: &Path,
    overwrite: bool,
    seed: u64,
) -> Result<EntangledReport> {
    let (la, lb) = (DetectionLog::open(alice)?, DetectionLog::open(bob)?);
    if la.header().run_id != lb.header().run_id {
        return Err(ConfigError::Mismatch(format!(
            "mismatched logs: {} and {} are from different runs",
            alice.display(),
            bob.display()
        ))
        .into());
    }
    let proto = super::protocol_of(la.meta()).unwrap_or_default();
    let variant = match proto.as_str() {
        "e91" => Variant::E91,
        "bbm92" => Variant::Bbm92,
        other => {
            return Err(
                ConfigError::invalid("protocol", format!("{other} is not e91/bbm92")).into(),
            );
        }
    };
    let (ra, rb) = (read_all(&la)?, read_all(&lb)?);
    // Coincidences: merge by slot; the settings are announced (public), outcomes are kept.
    let mut pairs: Vec<(u16, bool, u16, bool)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < ra.len() && j < rb.len() {
        match ra[i].time.cmp(&rb[j].time) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                let (a, b) = (ra[i].channel, rb[j].channel);
                pairs.push((a / 2, a % 2 == 1, b / 2, b % 2 == 1));
                i += 1;
                j += 1;
            }
        }
    }
    let mut report = EntangledReport {
        protocol: proto.clone(),
        coincidences: pairs.len() as u64,
        key_pairs: 0,
        chsh: None,
        phase_error: None,
        test_pairs: 0,
        qber_sample: (0, 0),
        key: None,
        abort: None,
        key_files: None,
    };
    let (mut ka, mut kb) = (BitVec::new(), BitVec::new());
    let key_setting = |sa: u16, sb: u16| match variant {
        Variant::E91 => (sa == 0 && sb == 0) || (sa == 1 && sb == 1),
        Variant::Bbm92 => sa == 0 && sb == 0,
    };
    for &(sa, oa, sb, ob) in &pairs {
        if key_setting(sa, sb) {
            ka.push(oa);
            kb.push(ob);
        }
    }
    report.key_pairs = ka.len() as u64;
    let subtract_fixed = (2.0 / (eps_sec * eps_sec * eps_cor)).log2();
    type LengthFn = Box<dyn Fn(u64, u64) -> f64>;
    let (length, bound, proven): (LengthFn, String, bool) = match variant {
        Variant::E91 => {
            // CHSH from Alice {0, π/4} (settings 0, 2) × Bob {π/8, −π/8} (settings 1, 2).
            let mut c = [(0i64, 0u64); 4];
            for &(sa, oa, sb, ob) in &pairs {
                let idx = match (sa, sb) {
                    (0, 1) => 0,
                    (0, 2) => 1,
                    (2, 1) => 2,
                    (2, 2) => 3,
                    _ => continue,
                };
                c[idx].0 += if oa == ob { 1 } else { -1 };
                c[idx].1 += 1;
            }
            let e: [(f64, u64); 4] = std::array::from_fn(|k| {
                (
                    if c[k].1 > 0 {
                        c[k].0 as f64 / c[k].1 as f64
                    } else {
                        0.0
                    },
                    c[k].1,
                )
            });
            let s = e[0].0 + e[1].0 + e[2].0 - e[3].0;
            let eps = eps_sec / 21.0;
            let delta: f64 = e
                .iter()
                .map(|&(_, m)| {
                    if m > 0 {
                        (2.0 * (4.0 / eps).ln() / m as f64).sqrt()
                    } else {
                        f64::INFINITY
                    }
                })
                .sum();
            let lower = s - delta;
            report.chsh = Some(Chsh {
                s,
                lower_bound: lower,
                delta,
                correlators: e,
                epsilon: eps,
            });
            if lower <= 2.0 {
                report.abort = Some(AbortReason::BellTestFailed {
                    s_value: s,
                    lower_bound: lower,
                });
                return Ok(report);
            }
            let s_b = lower.min(2.0 * 2f64.sqrt());
            let eve = super::h((1.0 + ((s_b / 2.0).powi(2) - 1.0).max(0.0).sqrt()) / 2.0);
            (
                Box::new(move |n, sub| n as f64 * (1.0 - eve) - sub as f64 - subtract_fixed),
                "device-independent rate of Acín et al. 2007 (collective attacks, asymptotic) with the finite-size lower bound of S: n(1 − h((1+√((S₋/2)²−1))/2)) − λ_EC − tags − log₂(2/(ε_sec²ε_cor))".into(),
                false,
            )
        }
        Variant::Bbm92 => {
            let (mut k, mut err) = (0u64, 0u64);
            for &(sa, oa, sb, ob) in &pairs {
                if sa == 1 && sb == 1 {
                    k += 1;
                    err += u64::from(oa != ob);
                }
            }
            let e_ph = if k > 0 { err as f64 / k as f64 } else { 0.5 };
            report.test_pairs = k;
            report.phase_error = Some(e_ph);
            if e_ph > 0.11 && k >= 100 {
                report.abort = Some(AbortReason::PhaseErrorTooHigh {
                    block: 0,
                    estimated: e_ph,
                    threshold: 0.11,
                });
                return Ok(report);
            }
            (
                Box::new(move |n, sub| tomamichel_length(n, k, e_ph, sub, eps_sec, eps_cor)),
                "Tomamichel et al. 2012 (trusted devices): n(1 − h(e_ph + μ)) − λ_EC − tags − log₂(2/(ε_sec²ε_cor))".into(),
                true,
            )
        }
    };
    if ka.is_empty() {
        return Ok(report);
    }
    // Alice discloses a 2 % sample of the key pairs; it estimates the error rate (for Cascade
    // and the abort) and leaves the key.
    let (sn, se) = super::disclose_sample(&mut ka, &mut kb, 0.02, seed);
    report.qber_sample = (sn, se);
    let q_est = if sn > 0 { se as f64 / sn as f64 } else { 0.05 };
    if q_est > 0.11 {
        report.abort = Some(AbortReason::QberTooHigh {
            block: 0,
            estimated: q_est,
            threshold: 0.11,
        });
        return Ok(report);
    }
    let (fa, fb, kr) = finish_keys(
        &ka,
        &kb,
        q_est,
        eps_cor,
        seed,
        Bound {
            name: bound,
            proven,
            length,
        },
    )?;
    if kr.secret_bits > 0 {
        report.key_files = Some(super::write_keys(out, &fa, &fb, overwrite)?);
    }
    report.key = Some(kr);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("qkd-ent-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn chsh_matches_2_sqrt2_v_and_an_eavesdropper_breaks_it() {
        for v in [0.9, 0.98] {
            let d = dir(&format!("v{v}"));
            let p = EntangledParams {
                visibility: v,
                dark_count_prob: 1e-9,
                pair_prob: 0.02,
                ..Default::default()
            };
            simulate(&p, 10_000_000, 3, &d, true).unwrap();
            let r = distill(
                &d.join("alice.qdl"),
                &d.join("bob.qdl"),
                1e-10,
                1e-15,
                &d.join("k"),
                true,
                1,
            )
            .unwrap();
            let c = r.chsh.clone().unwrap();
            // Multi-pair accidentals (μ = 0.02) lower S slightly; allow 0.03 on top of δ_S.
            let ideal = 2.0 * 2f64.sqrt() * v;
            assert!(
                (c.s - ideal).abs() < c.delta + 0.03,
                "V={v}: S={} ideal {ideal} δ={}",
                c.s,
                c.delta
            );
            assert!(r.abort.is_none() && c.lower_bound > 2.0, "{:?}", r.abort);
            // The device-independent rate needs S well above 2 after its finite-size
            // correction (≈ 0.6 here with ~5 000 pairs per correlator): little or no key.
            let k = r.key.as_ref().unwrap();
            assert!(!k.security_proven && k.bound.starts_with("device-independent"));
            let _ = std::fs::remove_dir_all(&d);
        }
        let d = dir("eve");
        let p = EntangledParams {
            intercept_resend: 1.0,
            ..Default::default()
        };
        simulate(&p, 2_000_000, 4, &d, true).unwrap();
        let r = distill(
            &d.join("alice.qdl"),
            &d.join("bob.qdl"),
            1e-10,
            1e-15,
            &d.join("k"),
            true,
            1,
        )
        .unwrap();
        let c = r.chsh.unwrap();
        assert!(c.s <= 2.0 + c.delta, "S = {}", c.s);
        assert!(matches!(r.abort, Some(AbortReason::BellTestFailed { .. })));
        assert!(r.key_files.is_none());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn bbm92_distills_identical_keys_with_the_tomamichel_bound() {
        let d = dir("bbm92");
        let p = EntangledParams {
            variant: Variant::Bbm92,
            ..Default::default()
        };
        simulate(&p, 10_000_000, 5, &d, true).unwrap();
        let r = distill(
            &d.join("alice.qdl"),
            &d.join("bob.qdl"),
            1e-10,
            1e-15,
            &d.join("k"),
            true,
            2,
        )
        .unwrap();
        let k = r.key.unwrap();
        assert!(k.secret_bits > 8_000 && k.security_proven, "{k:?}");
        let (a, b) = r.key_files.unwrap();
        assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
        // Visibility 0.95: phase and bit error ≈ (1 − V)/2 = 2.5 %, plus multi-pair accidentals.
        assert!((r.phase_error.unwrap() - 0.03).abs() < 0.015);
        assert!((k.qber - 0.03).abs() < 0.015);
        let _ = std::fs::remove_dir_all(&d);
    }
}
