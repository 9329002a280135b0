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
//! **Sifting** ([`AliceSifting`], [`BobSifting`]): Alice announces the slots where only D2
//! clicked; Bob answers which of them he keeps (his D3 stayed dark); each keeps its own bit
//! choice of those slots.
//!
//! **Security.** Yin, Li, Zhou, Han, Guo, PRA 82, 042335 (2010) prove Noh09 secure for ideal
//! single-photon sources in the asymptotic limit; no finite-key bound for lossy, noisy
//! implementations is available to this engine. Keys are therefore produced with the
//! BB84-shaped length of [`Proof::Noh09Illustrative`] (phase error assumed equal to the sampled
//! bit error rate) as an *illustration*, and every report says they are not security-proven.

use super::{
    KeyBound, PartyLog, Proof, phase_error_entropy, run_id_of, tomamichel_mu, write_party_log,
};
use crate::bits::BitVec;
use crate::block::{BlockReport, PhaseErrorReport};
use crate::classical::{Message, unexpected};
use crate::error::{ConfigError, Error, FormatError, ProtocolError, Result};
use crate::io::DetectionLog;
use crate::io::detection_log::{Record, RecordCursor, RecordKind};
use crate::parameter_estimation::{Assessed, Estimation};
use crate::progress::Progress;
use crate::sifting::{ChunkInfo, ClassPlanes, SiftContext, SiftRound, SiftedBits, SiftingSide};
use crate::sim::deviates::unit;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

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

/// One slot of a Noh09 log: the party's bit choice and which of its detectors clicked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    slot: u64,
    bit: bool,
    /// Clicks of detector channels 0 and 1 (Alice: D1, D2; Bob: D3, unused).
    clicks: [bool; 2],
}

/// Reads a Noh09 log slot by slot (a choice marker and the detections of each slot).
struct Slots {
    cursor: RecordCursor,
    prev: Option<u64>,
}

impl Slots {
    fn new(log: Arc<DetectionLog>, follow: Option<crate::io::Follow>) -> Self {
        Slots {
            cursor: RecordCursor::following(log, follow),
            prev: None,
        }
    }

    /// The next slot at or after `start`.
    fn next_from(&mut self, start: u64) -> Result<Option<Slot>> {
        loop {
            match self.next()? {
                Some(s) if s.slot < start => continue,
                other => return Ok(other),
            }
        }
    }

    fn next(&mut self) -> Result<Option<Slot>> {
        let mut cur: Option<Slot> = None;
        while let Some((r, off)) = self.cursor.peek()? {
            if r.time < 0 {
                return Err(self.bad(off, "slot", format!("negative slot {}", r.time)));
            }
            let t = r.time as u64;
            if let Some(c) = cur
                && t != c.slot
            {
                break;
            }
            self.cursor.next_record()?;
            if cur.is_none() {
                if self.prev.is_some_and(|p| t <= p) {
                    return Err(self.bad(
                        off,
                        "slot",
                        format!("slot {t} is not after the previous slot"),
                    ));
                }
                // A slot starts with its choice marker.
                if !(r.kind == RecordKind::Marker && r.channel == CHOICE) {
                    return Err(self.bad(
                        off,
                        "kind",
                        format!("slot {t} has no bit-choice marker before its detections"),
                    ));
                }
                cur = Some(Slot {
                    slot: t,
                    bit: r.aux == 1,
                    clicks: [false; 2],
                });
                continue;
            }
            let c = cur.as_mut().expect("slot started");
            match (r.kind, r.channel) {
                (RecordKind::Detection, ch @ (0 | 1)) => c.clicks[ch as usize] = true,
                (RecordKind::Marker, CHOICE) => {
                    return Err(self.bad(off, "kind", format!("two bit choices in slot {t}")));
                }
                _ => {}
            }
        }
        if let Some(c) = cur {
            self.prev = Some(c.slot);
        }
        Ok(cur)
    }

    fn bad(&self, offset: u64, field: &'static str, message: String) -> Error {
        FormatError::InvalidField {
            path: self.cursor.log().path().to_path_buf(),
            offset,
            field,
            message,
        }
        .into()
    }
}

/// Alice's side: announces the slots where only D2 clicked (the counterfactual events).
pub struct AliceSifting {
    slots: Slots,
    progress: Arc<dyn Progress + Send + Sync>,
    reported: u64,
    start_slot: u64,
    window: crate::sifting::Window<(Vec<u64>, BitVec)>,
}

impl AliceSifting {
    /// Alice's side over her log, from `start_slot` (a resumed run).
    pub fn new(
        log: Arc<DetectionLog>,
        progress: Arc<dyn Progress + Send + Sync>,
        start_slot: u64,
        follow: Option<crate::io::Follow>,
    ) -> Self {
        progress.start("distill", super::entangled::slots_of(&log));
        AliceSifting {
            slots: Slots::new(log, follow),
            progress,
            reported: 0,
            start_slot,
            window: Default::default(),
        }
    }
}

impl SiftingSide for AliceSifting {
    fn round(&mut self, cx: &mut SiftContext<'_>) -> Result<SiftRound> {
        let mut window = std::mem::take(&mut self.window);
        let next = window.next(cx, |cx, ledger| self.announce(cx, ledger));
        self.window = window;
        let ((slots, bits), last) = next?;
        let keep = match cx.channel.recv(cx.ledger)? {
            Message::PostselectReply { keep } if keep.len() == slots.len() => keep,
            Message::PostselectReply { keep } => {
                return Err(ProtocolError::Disagreement {
                    what: "post-selection",
                    detail: format!("{} slots announced, {} answers", slots.len(), keep.len()),
                }
                .into());
            }
            other => return Err(unexpected("PostselectReply", &other)),
        };
        if let Some(&l) = slots.last()
            && l + 1 > self.reported
        {
            self.progress.inc(l + 1 - self.reported);
            self.reported = l + 1;
        }
        if last {
            self.progress.finish();
        }
        Ok(SiftRound {
            bits: key_bits(cx, &bits, &keep),
            info: ChunkInfo::of_slots(&slots),
            last,
        })
    }
}

impl AliceSifting {
    /// Read up to a chunk of D2-only slots and announce them.
    fn announce(
        &mut self,
        cx: &mut SiftContext<'_>,
        ledger: &mut crate::ledger::LeakageLedger,
    ) -> Result<((Vec<u64>, BitVec), bool)> {
        let (mut slots, mut bits) = (Vec::new(), BitVec::new());
        let stopping = cx.stop.load(std::sync::atomic::Ordering::Relaxed);
        let mut last = true;
        while let Some(s) = if stopping {
            None
        } else {
            self.slots.next_from(self.start_slot)?
        } {
            if s.clicks[D2 as usize] && !s.clicks[D1 as usize] {
                slots.push(s.slot);
                bits.push(s.bit);
                if slots.len() >= cx.settings.sift_chunk {
                    last = false;
                    break;
                }
            }
        }
        cx.channel.send(
            &Message::PostselectAnnounce {
                slots: slots.clone(),
                last,
            },
            ledger,
        )?;
        Ok(((slots, bits), last))
    }
}

fn key_bits(cx: &SiftContext<'_>, bits: &BitVec, keep: &BitVec) -> SiftedBits {
    let key = bits.compacted(cx.kernels, keep);
    SiftedBits {
        key_classes: ClassPlanes::zeros(key.len()),
        key,
        ..Default::default()
    }
}

/// Bob's side: keeps the announced slots where his detector D3 stayed dark.
pub struct BobSifting {
    slots: Slots,
    pending: Option<Slot>,
    last_slot: Option<u64>,
}

impl BobSifting {
    /// Bob's side over his log.
    pub fn new(log: Arc<DetectionLog>, follow: Option<crate::io::Follow>) -> Self {
        BobSifting {
            slots: Slots::new(log, follow),
            pending: None,
            last_slot: None,
        }
    }

    fn at(&mut self, slot: u64) -> Result<Option<Slot>> {
        loop {
            let s = match self.pending.take() {
                Some(s) => s,
                None => match self.slots.next()? {
                    Some(s) => s,
                    None => return Ok(None),
                },
            };
            match s.slot.cmp(&slot) {
                std::cmp::Ordering::Less => continue,
                std::cmp::Ordering::Equal => return Ok(Some(s)),
                std::cmp::Ordering::Greater => {
                    self.pending = Some(s);
                    return Ok(None);
                }
            }
        }
    }
}

impl SiftingSide for BobSifting {
    fn round(&mut self, cx: &mut SiftContext<'_>) -> Result<SiftRound> {
        let (slots, last) = match cx.channel.recv(cx.ledger)? {
            Message::PostselectAnnounce { slots, last } => (slots, last),
            other => return Err(unexpected("PostselectAnnounce", &other)),
        };
        super::bb84::check_increasing(&slots, &mut self.last_slot)?;
        let mut keep = BitVec::zeros(slots.len());
        let mut bits = BitVec::zeros(slots.len());
        for (i, &slot) in slots.iter().enumerate() {
            // A slot without Bob's record was not run on his side: not kept.
            if let Some(s) = self.at(slot)? {
                keep.set(i, !s.clicks[D3 as usize]);
                bits.set(i, s.bit);
            }
        }
        cx.channel
            .send(&Message::PostselectReply { keep: keep.clone() }, cx.ledger)?;
        Ok(SiftRound {
            bits: key_bits(cx, &bits, &keep),
            info: ChunkInfo::of_slots(&slots),
            last,
        })
    }
}

/// The assessment of a Noh09 block: the sampled error rate (the key's only estimate; the
/// sample is required) and the illustrative length of [`Proof::Noh09Illustrative`].
pub fn assess(e: &Estimation<'_>, report: &mut BlockReport) -> Result<Assessed> {
    let k = e.sample.sample_bits;
    let observed = if k > 0 { e.sample.rate() } else { 0.5 };
    let mu = tomamichel_mu(e.key_bits, k, e.settings.epsilon_sec);
    let bound = (observed + mu).min(0.5);
    report.phase_error = Some(PhaseErrorReport {
        bits: k,
        errors: e.sample.errors,
        observed,
        mu,
        bound,
    });
    Ok(Assessed {
        bound: KeyBound {
            proof: Proof::Noh09Illustrative,
            entropy_bound: if k > 0 {
                phase_error_entropy(e.key_bits, bound, e.settings.epsilon_sec)
            } else {
                -1.0
            },
        },
        qber_for_ec: observed.min(0.25),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simulation_counts_counterfactual_events() {
        let d = std::env::temp_dir().join(format!("qkd-noh-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let s = simulate(&NohParams::default(), 2_000_000, 1, &d, true).unwrap();
        // Counterfactual rate ≈ ½·R·T·η = 0.075 per photon, plus the visibility defect.
        let frac = s["clicks"]["D2"].as_u64().unwrap() as f64 / 2e6;
        assert!(
            (frac - 0.5 * 0.25 * 0.6 - 0.5 * 0.01 * 0.6).abs() < 0.01,
            "{frac}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
