//! Decoy-state BB84: the sifting exchange of each party (Bob announces his detected slots and
//! bases, Alice answers with the basis match and the intensity classes; [`crate::sifting`] has
//! the algorithms) and the assessment of a block's estimation (Lim et al. 2014 bounds, the
//! error-rate aborts and the monitors of [`crate::monitors`]).

use crate::block::BlockReport;
use crate::classical::{Message, unexpected};
use crate::error::{AbortReason, Error, FormatError, ProtocolError, Result};
use crate::io::detection_log::{DetectorState, RecordKind};
use crate::io::header::FLAG_SLOT_ANNOTATED;
use crate::io::{DetectionLog, PrepLog};
use crate::monitors::{self, MonitorStatus};
use crate::parameter_estimation::finite_key::{self, DecoyCounts};
use crate::parameter_estimation::{Assessed, Estimation, MIN_ABORT_SAMPLE};
use crate::progress::Progress;
use crate::protocol::Role;
use crate::protocols::{KeyBound, Proof};
use crate::sifting::{
    AliceSymbols, BobDetections, ChunkInfo, ClassPlanes, PrepCursor, SiftContext, SiftRound,
    SiftingSide, sift_alice, sift_bob, squash_slot,
};
use std::sync::Arc;

/// Alice's side: answers Bob's announcements from her preparation log.
pub struct AliceSifting {
    cursor: PrepCursor,
    last_slot: Option<u64>,
}

impl AliceSifting {
    /// Alice's side over her preparation log (waited for while it grows, with `follow`).
    pub fn new(log: Arc<PrepLog>, follow: Option<crate::io::Follow>) -> Self {
        AliceSifting {
            cursor: PrepCursor::new(log, follow),
            last_slot: None,
        }
    }
}

impl SiftingSide for AliceSifting {
    fn round(&mut self, cx: &mut SiftContext<'_>) -> Result<SiftRound> {
        let (slots, bases, last) = match cx.channel.recv(cx.ledger)? {
            Message::SiftAnnounce { slots, bases, last } => (slots, bases, last),
            other => return Err(unexpected("SiftAnnounce", &other)),
        };
        if bases.len() != slots.len() {
            return Err(ProtocolError::Malformed(format!(
                "{} slots but {} bases",
                slots.len(),
                bases.len()
            ))
            .into());
        }
        check_increasing(&slots, &mut self.last_slot)?;
        let symbols = AliceSymbols::gather(&mut self.cursor, &slots)?;
        let (matched, reply, bits) = sift_alice(cx.kernels, &symbols, &bases);
        cx.channel.send(
            &Message::SiftReply {
                matched,
                int0: reply.int0,
                int1: reply.int1,
            },
            cx.ledger,
        )?;
        Ok(SiftRound {
            bits,
            info: ChunkInfo::of_slots(&slots),
            last,
        })
    }
}

/// Slots announced by the peer must increase strictly, within and across rounds.
pub(crate) fn check_increasing(slots: &[u64], last_slot: &mut Option<u64>) -> Result<()> {
    let increasing = slots.windows(2).all(|w| w[0] < w[1])
        && slots
            .first()
            .is_none_or(|&s| last_slot.is_none_or(|l| s > l));
    if !increasing {
        return Err(
            ProtocolError::Malformed("announced slots are not strictly increasing".into()).into(),
        );
    }
    if let Some(&l) = slots.last() {
        *last_slot = Some(l);
    }
    Ok(())
}

/// Bob's reading state over his slot-annotated detection log.
pub struct BobSifting {
    log: Arc<DetectionLog>,
    states: Vec<Option<DetectorState>>,
    block: usize,
    record: usize,
    group_slot: Option<u64>,
    group: Vec<DetectorState>,
    prev_slot: Option<i64>,
    reported_slot: u64,
    ignored_records: u64,
    /// The block whose checksum and records were verified.
    verified: Option<usize>,
    progress: Arc<dyn Progress + Send + Sync>,
    start_slot: u64,
    follow: Option<crate::io::Follow>,
    window: crate::sifting::Window<BobDetections>,
    /// Alice's basis at the last detection of the previous chunk (serial test across chunks).
    alice_last: Option<bool>,
}

impl BobSifting {
    /// Bob's side over his detection log. Fails if the log is not slot-annotated or its
    /// detector map is incomplete.
    /// Sifting starts at `start_slot` (a resumed run); with `follow`, a log still being
    /// written is waited for.
    pub fn new(
        log: Arc<DetectionLog>,
        progress: Arc<dyn Progress + Send + Sync>,
        start_slot: u64,
        follow: Option<crate::io::Follow>,
    ) -> Result<Self> {
        let path = log.path().to_path_buf();
        if log.header().flags & FLAG_SLOT_ANNOTATED == 0 {
            return Err(FormatError::InvalidField {
                path,
                offset: 16,
                field: "flags",
                message: "the log holds raw time tags, not slot-annotated detections; time synchronisation is needed first".into(),
            }
            .into());
        }
        let max = log
            .meta()
            .channels
            .iter()
            .map(|c| c.id as usize)
            .max()
            .unwrap_or(0);
        let mut states = vec![None; max + 1];
        for c in &log.meta().channels {
            states[c.id as usize] = log.meta().detector_state(c.id);
        }
        if states.iter().all(Option::is_none) {
            return Err(FormatError::Metadata {
                path,
                offset: 64,
                message: "no detector channel has a (basis, value) state".into(),
            }
            .into());
        }
        let total = log.meta().total_slots.unwrap_or(0);
        progress.start("distill", total);
        Ok(BobSifting {
            log,
            states,
            block: 0,
            record: 0,
            group_slot: None,
            group: Vec::new(),
            prev_slot: None,
            reported_slot: 0,
            ignored_records: 0,
            verified: None,
            progress,
            start_slot,
            follow,
            window: Default::default(),
            alice_last: None,
        })
    }
}

impl SiftingSide for BobSifting {
    fn round(&mut self, cx: &mut SiftContext<'_>) -> Result<SiftRound> {
        let mut window = std::mem::take(&mut self.window);
        let next = window.next(cx, |cx, ledger| self.announce(cx, ledger));
        self.window = window;
        let (det, last) = next?;
        let mut info = ChunkInfo {
            multi: det.multi_clicks,
            cross: det.cross_basis_clicks,
            clicks: det.detector_clicks,
            arms: det.arm_slots,
            ..ChunkInfo::of_slots(&det.slots)
        };
        let (matched, int0, int1) = match cx.channel.recv(cx.ledger)? {
            Message::SiftReply {
                matched,
                int0,
                int1,
            } => (matched, int0, int1),
            other => return Err(unexpected("SiftReply", &other)),
        };
        let bits = sift_bob(cx.kernels, &det, &matched, &ClassPlanes { int0, int1 })?;
        info.announced.last = self.alice_last;
        info.announced.add(
            cx.kernels,
            det.basis.words(),
            matched.words(),
            det.slots.len(),
        );
        self.alice_last = info.announced.last;
        if last {
            self.progress.finish();
        }
        Ok(SiftRound { bits, info, last })
    }
}

impl BobSifting {
    /// Read the next chunk and announce it.
    fn announce(
        &mut self,
        cx: &mut SiftContext<'_>,
        ledger: &mut crate::ledger::LeakageLedger,
    ) -> Result<(BobDetections, bool)> {
        // A stop request ends the announcements at this chunk boundary, as if the log ended.
        let (det, last) = if cx.stop.load(std::sync::atomic::Ordering::Relaxed) {
            (BobDetections::default(), true)
        } else {
            self.fill_chunk(cx.settings.sift_chunk, cx.rng)?
        };
        let msg = Message::SiftAnnounce {
            slots: det.slots.clone(),
            bases: det.basis.clone(),
            last,
        };
        cx.channel.send(&msg, ledger)?;
        Ok((det, last))
    }
}

impl BobSifting {
    /// Squashed detections of up to `chunk` slots; `true` when the log is exhausted. Each block
    /// of the log is verified once (checksum and record fields), then scanned in place.
    fn fill_chunk(
        &mut self,
        chunk: usize,
        rng: &mut rand_chacha::ChaCha20Rng,
    ) -> Result<(BobDetections, bool)> {
        let mut det = BobDetections::with_capacity(chunk);
        loop {
            let log = self.log.clone();
            while self.block < log.blocks().len() {
                if self.verified != Some(self.block) {
                    log.block(self.block)?;
                    self.verified = Some(self.block);
                }
                if self.scan(&log, chunk, &mut det, rng)? {
                    self.report_progress();
                    return Ok((det, false));
                }
                log.release(self.block);
                self.block += 1;
                self.record = 0;
            }
            // A log still being written: wait for its next blocks (chunks stay full, so the
            // blocks are cut at the same places however the log arrives).
            match &self.follow {
                Some(f) if !log.is_finished() && !f.stopped() => {
                    f.wait();
                    self.log = Arc::new(DetectionLog::open_growing(log.path())?);
                }
                _ => break,
            }
        }
        self.flush_group(&mut det, rng);
        self.report_progress();
        Ok((det, true))
    }

    /// Scan the current (verified) block from the current record until `det` holds `chunk`
    /// detections (`true`) or the block ends (`false`). Clicks of one slot are grouped and
    /// squashed when the slot is complete.
    fn scan(
        &mut self,
        log: &DetectionLog,
        chunk: usize,
        det: &mut BobDetections,
        rng: &mut rand_chacha::ChaCha20Rng,
    ) -> Result<bool> {
        use crate::io::detection_log::RECORD_LEN;
        let raw = log.block_trusted(self.block).raw();
        let total_slots = log.meta().total_slots;
        let n = raw.len() / RECORD_LEN;
        while self.record < n {
            if det.len() >= chunk {
                return Ok(true);
            }
            let i = self.record;
            self.record += 1;
            let c = &raw[i * RECORD_LEN..(i + 1) * RECORD_LEN];
            if c[10] != RecordKind::Detection as u8 {
                self.ignored_records += 1;
                continue;
            }
            let time = i64::from_le_bytes(c[..8].try_into().expect("8 bytes"));
            let channel = u16::from_le_bytes([c[8], c[9]]);
            let state = self.states.get(channel as usize).copied().flatten();
            let in_run = time >= 0 && total_slots.is_none_or(|t| (time as u64) < t);
            let sorted = self.prev_slot.is_none_or(|p| time >= p);
            let (Some(state), true, true) = (state, in_run, sorted) else {
                return Err(self.bad_record(log, i, channel, time, state.is_none(), in_run));
            };
            self.prev_slot = Some(time);
            let slot = time as u64;
            if slot < self.start_slot {
                continue; // committed in an earlier session
            }
            if self.group_slot != Some(slot) {
                self.flush_group(det, rng);
                self.group_slot = Some(slot);
            }
            self.group.push(state);
        }
        Ok(false)
    }

    /// The error for record `i` of the current block, which failed a check of [`Self::scan`].
    fn bad_record(
        &self,
        log: &DetectionLog,
        i: usize,
        channel: u16,
        time: i64,
        no_state: bool,
        in_run: bool,
    ) -> Error {
        let (field, message) = if no_state {
            (
                "channel",
                format!(
                    "detection on channel {channel} which has no (basis, value) in the metadata"
                ),
            )
        } else if !in_run {
            (
                "slot",
                format!(
                    "slot {time} outside the run's {} slots",
                    log.meta().total_slots.unwrap_or(0)
                ),
            )
        } else {
            (
                "slot",
                format!(
                    "slot {time} after slot {}: detections must be sorted",
                    self.prev_slot.unwrap_or(0)
                ),
            )
        };
        FormatError::InvalidField {
            path: log.path().to_path_buf(),
            offset: log.record_offset(self.block, i),
            field,
            message,
        }
        .into()
    }

    fn flush_group(&mut self, det: &mut BobDetections, rng: &mut rand_chacha::ChaCha20Rng) {
        let Some(slot) = self.group_slot.take() else {
            self.group.clear();
            return;
        };
        if let [one] = self.group[..] {
            // A single click (the common case): no squashing randomness is drawn.
            det.push_single(slot, one);
        } else {
            det.count_clicks(&self.group);
            if let Some(s) = squash_slot(&self.group, rng) {
                det.push(slot, s);
            }
        }
        self.group.clear();
    }

    fn report_progress(&mut self) {
        if let Some(p) = self.prev_slot {
            let p = p as u64 + 1;
            if p > self.reported_slot {
                self.progress.inc(p - self.reported_slot);
                self.reported_slot = p;
            }
        }
    }
}

/// The assessment of a BB84 block: the test-basis abort, the block monitors (Bob's side, which
/// holds the click statistics) and the finite-key bound of Lim et al. 2014. Fills the report's
/// decoy counts, test error rate, bounds and monitor statuses.
pub fn assess(e: &Estimation<'_>, report: &mut BlockReport) -> Result<Assessed> {
    let decoy = e.decoy.ok_or_else(|| {
        ProtocolError::Malformed("decoy-state BB84 session without source parameters".into())
    })?;
    let three = |v: &[u64]| -> Result<[u64; 3]> {
        v.try_into().map_err(|_| {
            ProtocolError::Malformed(format!("{} test classes, BB84 has 3", v.len())).into()
        })
    };
    let counts = DecoyCounts {
        n_key: e.key_class_sizes,
        n_test: three(&e.test_sizes)?,
        m_test: three(&e.test_errors)?,
    };
    let test_qber = if counts.test_total() > 0 {
        counts.test_errors() as f64 / counts.test_total() as f64
    } else {
        0.0
    };
    report.decoy_counts = Some(counts);
    report.test_qber = test_qber;
    let max = e.settings.max_qber;
    if counts.test_total() >= MIN_ABORT_SAMPLE && test_qber > max {
        return Err(Error::Aborted(AbortReason::PhaseErrorTooHigh {
            block: e.block,
            estimated: test_qber,
            threshold: max,
        }));
    }
    if e.role == Role::Bob {
        let cal = e.calibration;
        let run = match cal {
            Some(cal) => {
                let stats = monitors::BlockStats {
                    decoy,
                    counts: &counts,
                    sample: (e.sample.sample_bits, e.sample.errors),
                    slots: report.last_slot.saturating_sub(report.first_slot) + 1,
                    detector_clicks: report.detector_clicks,
                    arm_slots: report.arm_slots,
                    cross_basis_clicks: report.cross_basis_clicks,
                };
                monitors::check_block(&stats, cal)
            }
            None => monitors::MonitorRun {
                alarms: vec![],
                status: monitors::BLOCK_MONITORS
                    .iter()
                    .map(|m| MonitorStatus::skipped(m, "no receiver calibration in Bob's log"))
                    .collect(),
            },
        };
        let mut run = run;
        report.announced_bases.evaluate(decoy, &mut run);
        report.monitors = run.status;
        if !run.alarms.is_empty() {
            report.alarms = run.alarms.clone();
            return Err(Error::Aborted(AbortReason::MonitorAlarm {
                block: e.block,
                alarms: run.alarms,
            }));
        }
    }
    let bounds = finite_key::bounds(decoy, &counts, e.settings.epsilon_sec);
    report.bounds = Some(bounds);
    Ok(Assessed {
        bound: KeyBound {
            proof: Proof::Lim2014,
            entropy_bound: bounds.entropy_bound,
        },
        qber_for_ec: if e.sample.sample_bits > 0 {
            e.sample.rate()
        } else {
            test_qber
        },
    })
}
