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
//! **Sifting** ([`BobSifting`], [`AliceSifting`]): Bob announces his detected slots and
//! settings; Alice answers which of them she detected too and her settings there; each keeps
//! its own outcomes of the coincidences, sorted by [`Variant::pair_use`] into key and test bits.
//!
//! **Bounds** ([`assess`]). BBM92 with trusted devices: Tomamichel et al. 2012
//! ([`super::phase_error_entropy`]). E91: the device-independent rate
//! r = 1 − h(Q) − h((1 + √((S/2)² − 1))/2) of Acín, Brunner, Gisin, Massar, Pironio, Scarani,
//! PRL 98, 230501 (2007) (collective attacks, asymptotic), evaluated with S's finite-size lower
//! bound (Hoeffding per correlator, one-sided, union over the four terms:
//! δ_S = Σ √(2 ln(4/ε_S)/m_xy), ε_S = ε_sec/2) and the bits disclosed by error correction in
//! place of n·h(Q); key only from Alice 0 / Bob 0. That is not a finite-key device-independent
//! proof (which needs the entropy accumulation theorem, Arnon-Friedman et al., Nat. Commun. 9,
//! 459 (2018)), so such keys are reported as not security-proven. A block aborts when S's lower
//! bound is not above 2.

use super::{
    KeyBound, PartyLog, Proof, ProtocolKind, phase_error_entropy, run_id_of, tomamichel_mu,
    write_party_log,
};
use crate::bits::BitVec;
use crate::block::{BlockReport, ChshReport, PhaseErrorReport};
use crate::classical::{Message, unexpected};
use crate::error::{AbortReason, ConfigError, Error, FormatError, ProtocolError, Result};
use crate::io::DetectionLog;
use crate::io::detection_log::{Record, RecordCursor, RecordKind};
use crate::parameter_estimation::finite_key::binary_entropy;
use crate::parameter_estimation::{Assessed, Estimation, MIN_ABORT_SAMPLE};
use crate::progress::Progress;
use crate::sifting::{ChunkInfo, ClassPlanes, SiftContext, SiftRound, SiftedBits, SiftingSide};
use crate::sim::deviates::{poisson, unit};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// How a coincidence with settings (Alice's, Bob's) is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairUse {
    /// A key pair.
    Key,
    /// A test pair of class `c` (E91: correlator 0…3; BBM92: 0).
    Test(u8),
    /// Discarded.
    Discard,
}

impl Variant {
    /// The use of a coincidence. E91: key only from Alice 0 / Bob 0 (the settings Acín et al.
    /// 2007 cover: Alice's key setting is one of her CHSH settings); CHSH correlators (0, π/8),
    /// (0, −π/8), (π/4, π/8), (π/4, −π/8) are test classes 0…3; Alice's π/8 setting is
    /// discarded. BBM92: key from 0/0, test from π/4/π/4.
    pub fn pair_use(self, sa: u8, sb: u8) -> PairUse {
        match (self, sa, sb) {
            (_, 0, 0) => PairUse::Key,
            (Variant::E91, 0, 1) => PairUse::Test(0),
            (Variant::E91, 0, 2) => PairUse::Test(1),
            (Variant::E91, 2, 1) => PairUse::Test(2),
            (Variant::E91, 2, 2) => PairUse::Test(3),
            (Variant::Bbm92, 1, 1) => PairUse::Test(0),
            _ => PairUse::Discard,
        }
    }

    /// The variant of a protocol.
    pub fn of(p: ProtocolKind) -> Option<Variant> {
        match p {
            ProtocolKind::E91 => Some(Variant::E91),
            ProtocolKind::Bbm92 => Some(Variant::Bbm92),
            _ => None,
        }
    }
}

/// A party's detections of an entangled log, one per slot: (slot, setting, outcome).
struct Detections {
    cursor: RecordCursor,
    settings: u8,
    prev: Option<i64>,
    start_slot: u64,
}

impl Detections {
    fn new(
        log: Arc<DetectionLog>,
        start_slot: u64,
        follow: Option<crate::io::Follow>,
    ) -> Result<Self> {
        let settings = log
            .meta()
            .extra
            .get("angles")
            .and_then(|v| v.as_array())
            .map(|a| a.len())
            .filter(|&n| (1..=4).contains(&n))
            .ok_or_else(|| FormatError::Metadata {
                path: log.path().to_path_buf(),
                offset: 64,
                message: "field `angles`: one to four measurement angles are required".into(),
            })? as u8;
        Ok(Detections {
            cursor: RecordCursor::following(log, follow),
            settings,
            prev: None,
            start_slot,
        })
    }

    /// The next detection.
    fn next(&mut self) -> Result<Option<(u64, u8, bool)>> {
        loop {
            let Some((r, off)) = self.cursor.next_record()? else {
                return Ok(None);
            };
            if r.kind != RecordKind::Detection {
                continue;
            }
            let bad = |field: &'static str, message: String| -> Error {
                FormatError::InvalidField {
                    path: self.cursor.log().path().to_path_buf(),
                    offset: off,
                    field,
                    message,
                }
                .into()
            };
            if r.time < 0 {
                return Err(bad("slot", format!("negative slot {}", r.time)));
            }
            if self.prev.is_some_and(|p| r.time <= p) {
                return Err(bad(
                    "slot",
                    format!(
                        "slot {} after slot {}: one squashed detection per slot, in order",
                        r.time,
                        self.prev.unwrap_or(0)
                    ),
                ));
            }
            let setting = r.channel / 2;
            if setting >= u16::from(self.settings) {
                return Err(bad(
                    "channel",
                    format!(
                        "channel {} is setting {setting}, but the log has {} settings",
                        r.channel, self.settings
                    ),
                ));
            }
            self.prev = Some(r.time);
            if (r.time as u64) < self.start_slot {
                continue; // committed in an earlier session
            }
            return Ok(Some((r.time as u64, setting as u8, r.channel % 2 == 1)));
        }
    }
}

/// Sort one party's outcomes of coincidences into key and test bits.
fn classify(variant: Variant, pairs: impl Iterator<Item = (u8, u8, bool)>) -> SiftedBits {
    let mut out = SiftedBits::default();
    for (sa, sb, outcome) in pairs {
        match variant.pair_use(sa, sb) {
            PairUse::Key => {
                out.key.push(outcome);
                out.key_classes.push(0);
            }
            PairUse::Test(c) => {
                out.test.push(outcome);
                out.test_classes.push(c);
            }
            PairUse::Discard => {}
        }
    }
    out
}

fn planes(settings: &[u8]) -> (BitVec, BitVec) {
    let mut p = ClassPlanes::default();
    for &s in settings {
        p.push(s);
    }
    (p.int0, p.int1)
}

/// Bob's side: announces his detected slots and settings, chunk by chunk.
pub struct BobSifting {
    det: Detections,
    variant: Variant,
    progress: Arc<dyn Progress + Send + Sync>,
    reported: u64,
    window: crate::sifting::Window<Chunk>,
}

impl BobSifting {
    /// Bob's side over his log.
    pub fn new(
        log: Arc<DetectionLog>,
        variant: Variant,
        progress: Arc<dyn Progress + Send + Sync>,
        start_slot: u64,
        follow: Option<crate::io::Follow>,
    ) -> Result<Self> {
        progress.start("distill", slots_of(&log));
        Ok(BobSifting {
            det: Detections::new(log, start_slot, follow)?,
            variant,
            progress,
            reported: 0,
            window: Default::default(),
        })
    }
}

/// The slots of an entangled run (metadata `slots`).
pub fn slots_of(log: &DetectionLog) -> u64 {
    log.meta()
        .extra
        .get("slots")
        .and_then(|v| v.as_u64())
        .unwrap_or(0)
}

impl SiftingSide for BobSifting {
    fn round(&mut self, cx: &mut SiftContext<'_>) -> Result<SiftRound> {
        let mut window = std::mem::take(&mut self.window);
        let next = window.next(cx, |cx, ledger| self.announce(cx, ledger));
        self.window = window;
        let ((slots, settings, outcomes), last) = next?;
        let (matched, a0, a1) = match cx.channel.recv(cx.ledger)? {
            Message::CoincidenceReply {
                matched,
                setting0,
                setting1,
            } => (matched, setting0, setting1),
            other => return Err(unexpected("CoincidenceReply", &other)),
        };
        let n_match = matched.count_ones(cx.kernels) as usize;
        if matched.len() != slots.len() || a0.len() != n_match || a1.len() != n_match {
            return Err(ProtocolError::Disagreement {
                what: "coincidences",
                detail: format!(
                    "{} slots announced, {} match bits, {} settings for {n_match} coincidences",
                    slots.len(),
                    matched.len(),
                    a0.len()
                ),
            }
            .into());
        }
        let alice = ClassPlanes { int0: a0, int1: a1 };
        let mut j = 0;
        let pairs = (0..slots.len()).filter(|&i| matched.get(i)).map(|i| {
            let sa = alice.get(j);
            j += 1;
            (sa, settings[i], outcomes[i])
        });
        let bits = classify(self.variant, pairs);
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
            bits,
            info: ChunkInfo::of_slots(&slots),
            last,
        })
    }
}

/// One announced chunk: slots, Bob's settings and his outcomes.
type Chunk = (Vec<u64>, Vec<u8>, Vec<bool>);

impl BobSifting {
    /// Read the next chunk of detections and announce it.
    fn announce(
        &mut self,
        cx: &mut SiftContext<'_>,
        ledger: &mut crate::ledger::LeakageLedger,
    ) -> Result<(Chunk, bool)> {
        let (mut slots, mut settings, mut outcomes) = (Vec::new(), Vec::new(), Vec::new());
        let stopping = cx.stop.load(std::sync::atomic::Ordering::Relaxed);
        let mut last = true;
        while let Some((slot, setting, outcome)) = if stopping { None } else { self.det.next()? } {
            slots.push(slot);
            settings.push(setting);
            outcomes.push(outcome);
            if slots.len() >= cx.settings.sift_chunk {
                last = false;
                break;
            }
        }
        let (setting0, setting1) = planes(&settings);
        cx.channel.send(
            &Message::CoincidenceAnnounce {
                slots: slots.clone(),
                setting0,
                setting1,
                last,
            },
            ledger,
        )?;
        Ok(((slots, settings, outcomes), last))
    }
}

/// Alice's side: answers which announced slots she detected too, and her settings there.
pub struct AliceSifting {
    det: Detections,
    variant: Variant,
    pending: Option<(u64, u8, bool)>,
    last_slot: Option<u64>,
}

impl AliceSifting {
    /// Alice's side over her log.
    pub fn new(
        log: Arc<DetectionLog>,
        variant: Variant,
        follow: Option<crate::io::Follow>,
    ) -> Result<Self> {
        Ok(AliceSifting {
            det: Detections::new(log, 0, follow)?,
            variant,
            pending: None,
            last_slot: None,
        })
    }

    /// Alice's detection at `slot`, if any (slots asked in increasing order).
    fn at(&mut self, slot: u64) -> Result<Option<(u8, bool)>> {
        loop {
            let d = match self.pending.take() {
                Some(d) => d,
                None => match self.det.next()? {
                    Some(d) => d,
                    None => return Ok(None),
                },
            };
            match d.0.cmp(&slot) {
                std::cmp::Ordering::Less => continue,
                std::cmp::Ordering::Equal => return Ok(Some((d.1, d.2))),
                std::cmp::Ordering::Greater => {
                    self.pending = Some(d);
                    return Ok(None);
                }
            }
        }
    }
}

impl SiftingSide for AliceSifting {
    fn round(&mut self, cx: &mut SiftContext<'_>) -> Result<SiftRound> {
        let (slots, b0, b1, last) = match cx.channel.recv(cx.ledger)? {
            Message::CoincidenceAnnounce {
                slots,
                setting0,
                setting1,
                last,
            } => (slots, setting0, setting1, last),
            other => return Err(unexpected("CoincidenceAnnounce", &other)),
        };
        if b0.len() != slots.len() || b1.len() != slots.len() {
            return Err(ProtocolError::Malformed(format!(
                "{} slots but {} settings",
                slots.len(),
                b0.len()
            ))
            .into());
        }
        super::bb84::check_increasing(&slots, &mut self.last_slot)?;
        let bob = ClassPlanes { int0: b0, int1: b1 };
        let mut matched = BitVec::zeros(slots.len());
        let (mut mine, mut pairs) = (Vec::new(), Vec::new());
        for (i, &slot) in slots.iter().enumerate() {
            if let Some((sa, outcome)) = self.at(slot)? {
                matched.set(i, true);
                mine.push(sa);
                pairs.push((sa, bob.get(i), outcome));
            }
        }
        let (setting0, setting1) = planes(&mine);
        cx.channel.send(
            &Message::CoincidenceReply {
                matched,
                setting0,
                setting1,
            },
            cx.ledger,
        )?;
        Ok(SiftRound {
            bits: classify(self.variant, pairs.into_iter()),
            info: ChunkInfo::of_slots(&slots),
            last,
        })
    }
}

/// The CHSH value, its correlators and its one-sided lower bound from the test classes'
/// sizes and errors (E(x, y) = 1 − 2·errors/pairs).
pub fn chsh(sizes: &[u64], errors: &[u64], eps_s: f64) -> ChshReport {
    let corr: [(f64, u64); 4] = std::array::from_fn(|i| {
        let m = sizes.get(i).copied().unwrap_or(0);
        let e = errors.get(i).copied().unwrap_or(0);
        (
            if m > 0 {
                1.0 - 2.0 * e as f64 / m as f64
            } else {
                0.0
            },
            m,
        )
    });
    let s = corr[0].0 + corr[1].0 + corr[2].0 - corr[3].0;
    let delta: f64 = corr
        .iter()
        .map(|&(_, m)| {
            if m > 0 {
                (2.0 * (4.0 / eps_s).ln() / m as f64).sqrt()
            } else {
                f64::INFINITY
            }
        })
        .sum();
    ChshReport {
        s,
        lower_bound: s - delta,
        delta,
        epsilon: eps_s,
        correlators: corr,
    }
}

/// Eve's information per key bit in the device-independent bound of Acín et al. 2007:
/// h((1 + √((S/2)² − 1))/2), for 2 < S ≤ 2√2 (1 at S ≤ 2).
pub fn acin_eve_information(s: f64) -> f64 {
    if s <= 2.0 {
        return 1.0;
    }
    let s = s.min(2.0 * std::f64::consts::SQRT_2);
    binary_entropy((1.0 + ((s / 2.0).powi(2) - 1.0).max(0.0).sqrt()) / 2.0)
}

/// The assessment of an entangled block. E91: the Bell test (abort unless S − δ_S > 2) and the
/// device-independent length of Acín et al. 2007; BBM92: the test-pair error rate (abort above
/// `max_qber`) and the length of Tomamichel et al. 2012.
pub fn assess(
    protocol: ProtocolKind,
    e: &Estimation<'_>,
    report: &mut BlockReport,
) -> Result<Assessed> {
    let variant = Variant::of(protocol).ok_or_else(|| {
        ProtocolError::Malformed(format!("{} is not an entangled protocol", protocol.name()))
    })?;
    let eps = e.settings.epsilon_sec;
    let sample_rate = (e.sample.sample_bits > 0).then(|| e.sample.rate());
    match variant {
        Variant::E91 => {
            let c = chsh(&e.test_sizes, &e.test_errors, eps / 2.0);
            report.test_qber = 0.0;
            report.chsh = Some(c.clone());
            if c.lower_bound <= 2.0 {
                return Err(Error::Aborted(AbortReason::BellTestFailed {
                    s_value: c.s,
                    lower_bound: c.lower_bound,
                }));
            }
            let eve = acin_eve_information(c.lower_bound);
            let entropy_bound = e.key_bits as f64 * (1.0 - eve) - 2.0 * (1.0 / eps).log2();
            // Without a sample, the error rate of a Werner state with this S.
            let from_s = ((1.0 - c.s / (2.0 * std::f64::consts::SQRT_2)) / 2.0).clamp(0.0, 0.5);
            Ok(Assessed {
                bound: KeyBound {
                    proof: Proof::Acin2007,
                    entropy_bound,
                },
                qber_for_ec: sample_rate.unwrap_or(from_s),
            })
        }
        Variant::Bbm92 => {
            let k = e.test_sizes.first().copied().unwrap_or(0);
            let errors = e.test_errors.first().copied().unwrap_or(0);
            let observed = if k > 0 { errors as f64 / k as f64 } else { 0.5 };
            report.test_qber = observed;
            if k >= MIN_ABORT_SAMPLE && observed > e.settings.max_qber {
                return Err(Error::Aborted(AbortReason::PhaseErrorTooHigh {
                    block: e.block,
                    estimated: observed,
                    threshold: e.settings.max_qber,
                }));
            }
            let mu = tomamichel_mu(e.key_bits, k, eps);
            let bound = (observed + mu).min(0.5);
            report.phase_error = Some(PhaseErrorReport {
                bits: k,
                errors,
                observed,
                mu,
                bound,
            });
            Ok(Assessed {
                bound: KeyBound {
                    proof: Proof::Tomamichel2012,
                    entropy_bound: phase_error_entropy(e.key_bits, bound, eps),
                },
                qber_for_ec: sample_rate.unwrap_or(observed),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_use_keys_only_covered_settings() {
        assert_eq!(Variant::E91.pair_use(0, 0), PairUse::Key);
        // Alice's π/8 setting is not one of her CHSH settings: never key.
        assert_eq!(Variant::E91.pair_use(1, 1), PairUse::Discard);
        assert_eq!(Variant::E91.pair_use(2, 2), PairUse::Test(3));
        assert_eq!(Variant::Bbm92.pair_use(1, 1), PairUse::Test(0));
        assert_eq!(Variant::Bbm92.pair_use(0, 1), PairUse::Discard);
    }

    #[test]
    fn acin_term_is_below_one_for_a_violation() {
        // S = 2√2: Eve knows nothing; S = 2.61 (V = 0.999, finite size): about 0.55 bits.
        assert!(acin_eve_information(2.0 * std::f64::consts::SQRT_2) < 1e-6);
        let x = (1.0 + ((2.61f64 / 2.0).powi(2) - 1.0).sqrt()) / 2.0;
        let h = -x * x.log2() - (1.0 - x) * (1.0 - x).log2();
        assert!(
            (acin_eve_information(2.61) - h).abs() < 1e-12 && h < 0.6,
            "{h}"
        );
        assert_eq!(acin_eve_information(1.9), 1.0);
    }

    #[test]
    fn chsh_of_ideal_correlators() {
        // E = ±1/√2 on 10^6 pairs each: S = 2√2, δ small.
        let m = 1_000_000u64;
        let e = |corr: f64| ((1.0 - corr) / 2.0 * m as f64).round() as u64;
        let r = 1.0 / std::f64::consts::SQRT_2;
        let c = chsh(&[m; 4], &[e(r), e(r), e(r), e(-r)], 1e-10);
        assert!(
            (c.s - 2.0 * std::f64::consts::SQRT_2).abs() < 1e-5,
            "{}",
            c.s
        );
        assert!(c.delta < 0.05 && c.lower_bound > 2.7);
    }
}
