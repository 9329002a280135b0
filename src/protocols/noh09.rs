//! Counterfactual QKD (Noh, PRL 103, 230501 (2009)).
//!
//! **Scheme.** Alice sends single photons polarised H (bit 0) or V (bit 1) into a Michelson
//! interferometer: a beam splitter (reflectivity R) sends the photon to her own mirror (arm a) or
//! to Bob (arm b). Bob chooses a bit too; he blocks the polarisation of his bit (switching it to
//! his detector D3) and reflects the other back. Different bits: Bob reflects, the
//! interferometer is balanced and the photon always exits to D1. Equal bits: Bob blocks arm b:
//! with probability T = 1 − R the photon went to Bob and D3 clicks; otherwise it returns from arm
//! a and exits to D1 (probability R·R) or D2 (R·T). **Sifting rule:** only D2 clicks give key —
//! the photon never travelled to Bob, yet Alice learns that Bob's bit equals hers. With
//! interferometer visibility V < 1, different bits also reach D2 with probability (1 − V)/2·… and
//! make errors; dark counts add noise.
//!
//! **Security.** Yin, Li, Zhou, Han, Guo, PRA 82, 042335 (2010) prove Noh09 secure for ideal
//! single-photon sources in the asymptotic limit; no finite-key bound for lossy, noisy
//! implementations is available to this engine. Keys are therefore produced with the
//! BB84-shaped length n(1 − 2h(Q)) − λ_EC − tags − log₂(2/(ε_sec²ε_cor)) as an *illustration*
//! and reported with `security_proven = false`.

use super::{Bound, KeyReport, PartyLog, finish_keys, read_all, run_id_of, write_party_log};
use crate::bits::BitVec;
use crate::error::{AbortReason, ConfigError, Error, Result};
use crate::io::DetectionLog;
use crate::io::detection_log::{Record, RecordKind};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Channel ids: Alice's detectors D1, D2; Bob's D3; the per-slot bit choices are marker
/// records on channel [`CHOICE`] with the bit in `aux`.
pub const D1: u16 = 0;
/// D2 (the counterfactual port).
pub const D2: u16 = 1;
/// Bob's detector.
pub const D3: u16 = 0;
/// Choice records.
pub const CHOICE: u16 = 100;

/// Parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NohParams {
    /// Beam-splitter reflectivity R.
    pub reflectivity: f64,
    /// Interferometer visibility.
    pub visibility: f64,
    /// Transmittance of arm b to Bob and back (fiber and Bob's optics).
    pub arm_b_transmittance: f64,
    /// Detector efficiency.
    pub detector_efficiency: f64,
    /// Dark-count probability per detector per slot.
    pub dark_count_prob: f64,
}

impl Default for NohParams {
    fn default() -> Self {
        NohParams {
            reflectivity: 0.5,
            visibility: 0.98,
            arm_b_transmittance: 0.9,
            detector_efficiency: 0.6,
            dark_count_prob: 1e-6,
        }
    }
}

fn unit(rng: &mut ChaCha8Rng) -> f64 {
    use rand::Rng;
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Simulate `slots` single-photon slots; writes `alice.qdl` and `bob.qdl` into `out`.
pub fn simulate(
    p: &NohParams,
    slots: u64,
    seed: u64,
    out: &Path,
    overwrite: bool,
) -> Result<serde_json::Value> {
    if !(0.0..=1.0).contains(&p.reflectivity) || !(0.0..=1.0).contains(&p.visibility) {
        return Err(
            ConfigError::invalid("noh09", "reflectivity and visibility must be in [0, 1]").into(),
        );
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (r, t) = (p.reflectivity, 1.0 - p.reflectivity);
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    let mut counts = [0u64; 3];
    for slot in 0..slots {
        let (a, b) = (unit(&mut rng) < 0.5, unit(&mut rng) < 0.5);
        let s = slot as i64;
        ra.push(Record {
            time: s,
            channel: CHOICE,
            kind: RecordKind::Marker,
            flags: 0,
            aux: u32::from(a),
        });
        rb.push(Record {
            time: s,
            channel: CHOICE,
            kind: RecordKind::Marker,
            flags: 0,
            aux: u32::from(b),
        });
        // Where the photon ends: 1 = D1, 2 = D2, 3 = D3, 0 = lost.
        let u = unit(&mut rng);
        let port = if a == b {
            // Bob blocks arm b.
            if u < t * p.arm_b_transmittance {
                3
            } else if u < t {
                0
            } else if unit(&mut rng) < r {
                1
            } else {
                2
            }
        } else {
            // Interference: all to D1 but for the visibility defect, which splits like a
            // distinguishable photon (half of it to D2).
            let a_arm = p.arm_b_transmittance.sqrt();
            let lost = t * (1.0 - a_arm * a_arm);
            if u < lost {
                0
            } else if unit(&mut rng) < (1.0 - p.visibility) / 2.0 {
                2
            } else {
                1
            }
        };
        let det = |rng: &mut ChaCha8Rng, hit: bool| {
            (hit && unit(rng) < p.detector_efficiency) || unit(rng) < p.dark_count_prob
        };
        let (d1, d2, d3) = (
            det(&mut rng, port == 1),
            det(&mut rng, port == 2),
            det(&mut rng, port == 3),
        );
        if d1 {
            ra.push(Record::detection(s, D1, 0));
            counts[0] += 1;
        }
        if d2 {
            ra.push(Record::detection(s, D2, 0));
            counts[1] += 1;
        }
        if d3 {
            rb.push(Record::detection(s, D3, 0));
            counts[2] += 1;
        }
    }
    let run_id = run_id_of("noh09", seed, slots);
    let extra = serde_json::json!({"noh09": p, "slots": slots});
    write_party_log(
        &out.join("alice.qdl"),
        PartyLog {
            role: "alice",
            protocol: "noh09",
            channels: vec![(D1, "D1".into()), (D2, "D2".into())],
            extra: extra.clone(),
            run_id,
        },
        &ra,
        overwrite,
    )?;
    write_party_log(
        &out.join("bob.qdl"),
        PartyLog {
            role: "bob",
            protocol: "noh09",
            channels: vec![(D3, "D3".into())],
            extra,
            run_id,
        },
        &rb,
        overwrite,
    )?;
    let summary = serde_json::json!({
        "protocol": "noh09", "params": p, "slots": slots, "seed": seed,
        "clicks": {"D1": counts[0], "D2": counts[1], "D3": counts[2]},
    });
    super::write_summary(out, overwrite, &summary)?;
    Ok(summary)
}

/// The result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NohReport {
    /// Slots with a D2 click only (Alice announces them).
    pub d2_events: u64,
    /// D1 and D3 clicks.
    pub d1_clicks: u64,
    /// Bob's clicks.
    pub d3_clicks: u64,
    /// Reconciliation and amplification.
    pub key: Option<KeyReport>,
    /// Abort.
    pub abort: Option<AbortReason>,
    /// Key files.
    pub key_files: Option<(PathBuf, PathBuf)>,
    /// The security statement.
    pub security: String,
}

/// Distill a Noh09 run.
pub fn distill(
    alice: &Path,
    bob: &Path,
    eps_sec: f64,
    eps_cor: f64,
    out: &Path,
    overwrite: bool,
    seed: u64,
) -> Result<NohReport> {
    let (la, lb) = (DetectionLog::open(alice)?, DetectionLog::open(bob)?);
    let (ra, rb) = (read_all(&la)?, read_all(&lb)?);
    // Alice announces the slots where only D2 clicked; both keep their bits there. Bob drops
    // those where his D3 clicked too.
    let mut choice_a = Vec::new();
    let (mut d2, mut d1) = (Vec::new(), 0u64);
    let mut slot_clicks: std::collections::BTreeMap<i64, (bool, bool)> = Default::default();
    for r in &ra {
        match (r.kind, r.channel) {
            (RecordKind::Marker, CHOICE) => choice_a.push((r.time, r.aux == 1)),
            (RecordKind::Detection, D1) => {
                d1 += 1;
                slot_clicks.entry(r.time).or_default().0 = true;
            }
            (RecordKind::Detection, D2) => {
                slot_clicks.entry(r.time).or_default().1 = true;
            }
            _ => {}
        }
    }
    for (&s, &(c1, c2)) in &slot_clicks {
        if c2 && !c1 {
            d2.push(s);
        }
    }
    let bits_a: std::collections::HashMap<i64, bool> = choice_a.into_iter().collect();
    let mut bits_b = std::collections::HashMap::new();
    let mut d3 = std::collections::HashSet::new();
    for r in &rb {
        match (r.kind, r.channel) {
            (RecordKind::Marker, CHOICE) => {
                bits_b.insert(r.time, r.aux == 1);
            }
            (RecordKind::Detection, D3) => {
                d3.insert(r.time);
            }
            _ => {}
        }
    }
    let (mut ka, mut kb) = (BitVec::new(), BitVec::new());
    for s in &d2 {
        if d3.contains(s) {
            continue;
        }
        if let (Some(&a), Some(&b)) = (bits_a.get(s), bits_b.get(s)) {
            ka.push(a);
            kb.push(b);
        }
    }
    let security = "NOT security-proven: Noh09 is proven secure only for ideal single photons, asymptotically (Yin et al., PRA 82, 042335 (2010)); the length n(1 − 2h(Q)) − λ_EC − tags − log₂(2/(ε_sec²ε_cor)) is an illustration".to_string();
    let mut report = NohReport {
        d2_events: d2.len() as u64,
        d1_clicks: d1,
        d3_clicks: d3.len() as u64,
        key: None,
        abort: None,
        key_files: None,
        security,
    };
    if ka.is_empty() {
        return Ok(report);
    }
    // A 2 % sample of the sifted bits, disclosed and removed, estimates the error rate.
    let (sn, se) = super::disclose_sample(&mut ka, &mut kb, 0.02, seed);
    let q = if sn > 0 { se as f64 / sn as f64 } else { 0.5 };
    if q > 0.11 {
        report.abort = Some(AbortReason::QberTooHigh {
            block: 0,
            estimated: q,
            threshold: 0.11,
        });
        return Ok(report);
    }
    let fixed = (2.0 / (eps_sec * eps_sec * eps_cor)).log2();
    let (fa, fb, kr) = finish_keys(
        &ka,
        &kb,
        q,
        eps_cor,
        seed,
        Bound {
            name: "n(1 − 2h(Q)) − λ_EC − tags − log₂(2/(ε_sec²ε_cor)) (illustrative, not proven)"
                .into(),
            proven: false,
            length: move |n, sub| n as f64 * (1.0 - 2.0 * super::h(q)) - sub as f64 - fixed,
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

    #[test]
    fn d2_events_share_the_bit_and_feed_the_back_end() {
        let d = std::env::temp_dir().join(format!("qkd-noh-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let s = simulate(&NohParams::default(), 2_000_000, 1, &d, true).unwrap();
        assert!(s["clicks"]["D2"].as_u64().unwrap() > 50_000);
        let r = distill(
            &d.join("alice.qdl"),
            &d.join("bob.qdl"),
            1e-10,
            1e-15,
            &d.join("k"),
            true,
            3,
        )
        .unwrap();
        // Counterfactual rate ≈ ½·R·T·η = 0.075 per photon, errors from the visibility defect.
        let frac = r.d2_events as f64 / 2e6;
        assert!(
            (frac - 0.5 * 0.25 * 0.6 - 0.5 * 0.01 * 0.6).abs() < 0.01,
            "{frac}"
        );
        let k = r.key.unwrap();
        assert!(
            !k.security_proven && k.secret_bits > 0 && k.qber < 0.05,
            "{k:?}"
        );
        assert!(r.security.starts_with("NOT security-proven"));
        let (a, b) = r.key_files.unwrap();
        assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
        let _ = std::fs::remove_dir_all(&d);
    }
}
