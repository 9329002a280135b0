//! The sifting source: Bob reads his detection log and announces detections chunk by chunk;
//! Alice answers from her preparation log. Both cut the sifted stream into blocks at the same
//! places (a block is closed once it holds `block_bits` key-basis bits; at the end of the run a
//! remainder smaller than one block joins the last block).

use super::StageIo;
use crate::block::{Block, BlockReport, SiftedKey};
use crate::classical::{Message, unexpected};
use crate::error::{Error, FormatError, ProtocolError, Result};
use crate::io::detection_log::{DetectorState, RecordKind};
use crate::io::header::FLAG_SLOT_ANNOTATED;
use crate::io::{DetectionLog, PrepLog};
use crate::ledger::LeakageLedger;
use crate::pipeline::Source;
use crate::progress::Progress;
use crate::sifting::{
    AliceSymbols, BobDetections, ClassPlanes, PrepCursor, SiftedBits, sift_alice, sift_bob,
    squash_slot,
};
use std::collections::VecDeque;
use std::sync::Arc;

/// Accumulates sifted chunks into blocks (same rule on both sides).
struct Accumulator {
    target: u64,
    current: Option<(SiftedBits, BlockReport, LeakageLedger)>,
    pending: Option<(SiftedBits, BlockReport, LeakageLedger)>,
    next_id: u64,
}

/// Counts of one chunk.
struct ChunkInfo {
    first_slot: u64,
    last_slot: u64,
    detections: u64,
    multi: u64,
    cross: u64,
    clicks: [u64; 4],
    arms: [u64; 2],
}

impl Accumulator {
    fn new(target: u64) -> Self {
        Accumulator {
            target,
            current: None,
            pending: None,
            next_id: 0,
        }
    }

    fn ledger(&mut self) -> &mut LeakageLedger {
        &mut self.current.get_or_insert_with(Default::default).2
    }

    fn add(&mut self, bits: &SiftedBits, info: &ChunkInfo) {
        let (acc, r, _) = self.current.get_or_insert_with(Default::default);
        if info.detections > 0 {
            if r.detections == 0 {
                r.first_slot = info.first_slot;
            }
            r.last_slot = info.last_slot;
        }
        r.detections += info.detections;
        r.multi_clicks += info.multi;
        r.cross_basis_clicks += info.cross;
        for i in 0..4 {
            r.detector_clicks[i] += info.clicks[i];
        }
        r.arm_slots[0] += info.arms[0];
        r.arm_slots[1] += info.arms[1];
        acc.extend_from(bits);
    }

    fn finish_block(
        &mut self,
        (bits, mut report, ledger): (SiftedBits, BlockReport, LeakageLedger),
    ) -> Block<SiftedKey> {
        report.id = self.next_id;
        report.sifted_key_bits = bits.key.len() as u64;
        report.sifted_test_bits = bits.test.len() as u64;
        self.next_id += 1;
        Block {
            id: report.id,
            key: SiftedKey { bits },
            ledger,
            report,
        }
    }

    fn cut(&mut self, last: bool, out: &mut VecDeque<Block<SiftedKey>>) {
        let full = self
            .current
            .as_ref()
            .is_some_and(|c| c.0.key.len() as u64 >= self.target);
        if full {
            if let Some(p) = self.pending.take() {
                let b = self.finish_block(p);
                out.push_back(b);
            }
            self.pending = self.current.take();
        }
        if last {
            if let Some(cur) = self.current.take().filter(|c| c.1.detections > 0) {
                match self.pending.as_mut() {
                    Some(p) => {
                        // A remainder smaller than one block joins the last block.
                        p.0.extend_from(&cur.0);
                        p.1.last_slot = cur.1.last_slot;
                        p.1.detections += cur.1.detections;
                        p.1.multi_clicks += cur.1.multi_clicks;
                        p.1.cross_basis_clicks += cur.1.cross_basis_clicks;
                        for i in 0..4 {
                            p.1.detector_clicks[i] += cur.1.detector_clicks[i];
                        }
                        p.1.arm_slots[0] += cur.1.arm_slots[0];
                        p.1.arm_slots[1] += cur.1.arm_slots[1];
                        p.2.add(&cur.2);
                    }
                    None => self.pending = Some(cur),
                }
            }
            if let Some(p) = self.pending.take() {
                let b = self.finish_block(p);
                out.push_back(b);
            }
        }
    }
}

/// Bob's reading state.
pub struct BobInput {
    log: Arc<DetectionLog>,
    states: Vec<Option<DetectorState>>,
    block: usize,
    record: usize,
    group_slot: Option<u64>,
    group: Vec<DetectorState>,
    prev_slot: Option<i64>,
    reported_slot: u64,
    ignored_records: u64,
    progress: Arc<dyn Progress + Send + Sync>,
}

enum Side {
    Alice {
        cursor: PrepCursor,
        last_slot: Option<u64>,
    },
    Bob(Box<BobInput>),
}

/// The sifting source of one party.
pub struct SiftingSource {
    io: StageIo,
    side: Side,
    acc: Accumulator,
    ready: VecDeque<Block<SiftedKey>>,
    done: bool,
}

impl SiftingSource {
    /// Alice's source over her preparation log.
    pub fn alice(io: StageIo, log: Arc<PrepLog>) -> Self {
        let target = io.session.settings.block_bits;
        SiftingSource {
            io,
            side: Side::Alice {
                cursor: PrepCursor::new(log),
                last_slot: None,
            },
            acc: Accumulator::new(target),
            ready: VecDeque::new(),
            done: false,
        }
    }

    /// Bob's source over his detection log. Fails if the log is not slot-annotated or its
    /// detector map is incomplete.
    pub fn bob(
        io: StageIo,
        log: Arc<DetectionLog>,
        progress: Arc<dyn Progress + Send + Sync>,
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
        let target = io.session.settings.block_bits;
        let total = log.meta().total_slots.unwrap_or(0);
        progress.start("distill", total);
        let input = BobInput {
            log,
            states,
            block: 0,
            record: 0,
            group_slot: None,
            group: Vec::new(),
            prev_slot: None,
            reported_slot: 0,
            ignored_records: 0,
            progress,
        };
        Ok(SiftingSource {
            io,
            side: Side::Bob(Box::new(input)),
            acc: Accumulator::new(target),
            ready: VecDeque::new(),
            done: false,
        })
    }

    fn bob_round(&mut self) -> Result<()> {
        let Side::Bob(input) = &mut self.side else {
            unreachable!()
        };
        let chunk = self.io.session.settings.sift_chunk;
        let (det, last) = input.fill_chunk(chunk, &mut self.io.rng)?;
        let info = ChunkInfo {
            first_slot: det.slots.first().copied().unwrap_or(0),
            last_slot: det.slots.last().copied().unwrap_or(0),
            detections: det.len() as u64,
            multi: det.multi_clicks,
            cross: det.cross_basis_clicks,
            clicks: det.detector_clicks,
            arms: det.arm_slots,
        };
        let ledger = self.acc.ledger();
        let msg = Message::SiftAnnounce {
            slots: det.slots.clone(),
            bases: det.basis.clone(),
            last,
        };
        self.io.channel.send(&msg, ledger)?;
        let (matched, int0, int1) = match self.io.channel.recv(ledger)? {
            Message::SiftReply {
                matched,
                int0,
                int1,
            } => (matched, int0, int1),
            other => return Err(unexpected("SiftReply", &other)),
        };
        let bits = sift_bob(
            &self.io.session.kernels,
            &det,
            &matched,
            &ClassPlanes { int0, int1 },
        )?;
        self.acc.add(&bits, &info);
        self.acc.cut(last, &mut self.ready);
        if last {
            self.done = true;
            let Side::Bob(input) = &mut self.side else {
                unreachable!()
            };
            input.progress.finish();
        }
        Ok(())
    }

    fn alice_round(&mut self) -> Result<()> {
        let k = self.io.session.kernels;
        let ledger = self.acc.ledger();
        let (slots, bases, last) = match self.io.channel.recv(ledger)? {
            Message::SiftAnnounce { slots, bases, last } => (slots, bases, last),
            other => return Err(unexpected("SiftAnnounce", &other)),
        };
        let Side::Alice { cursor, last_slot } = &mut self.side else {
            unreachable!()
        };
        if bases.len() != slots.len() {
            return Err(ProtocolError::Malformed(format!(
                "{} slots but {} bases",
                slots.len(),
                bases.len()
            ))
            .into());
        }
        let increasing = slots.windows(2).all(|w| w[0] < w[1])
            && slots
                .first()
                .is_none_or(|&s| last_slot.is_none_or(|l| s > l));
        if !increasing {
            return Err(ProtocolError::Malformed(
                "announced slots are not strictly increasing".into(),
            )
            .into());
        }
        if let Some(&l) = slots.last() {
            *last_slot = Some(l);
        }
        let symbols = AliceSymbols::gather(cursor, &slots)?;
        let (matched, reply, bits) = sift_alice(&k, &symbols, &bases);
        let ledger = self.acc.ledger();
        self.io.channel.send(
            &Message::SiftReply {
                matched,
                int0: reply.int0,
                int1: reply.int1,
            },
            ledger,
        )?;
        let info = ChunkInfo {
            first_slot: slots.first().copied().unwrap_or(0),
            last_slot: slots.last().copied().unwrap_or(0),
            detections: slots.len() as u64,
            multi: 0,
            cross: 0,
            clicks: [0; 4],
            arms: [0; 2],
        };
        self.acc.add(&bits, &info);
        self.acc.cut(last, &mut self.ready);
        self.done = last;
        Ok(())
    }
}

impl BobInput {
    /// Squashed detections of up to `chunk` slots; `true` when the log is exhausted.
    fn fill_chunk(
        &mut self,
        chunk: usize,
        rng: &mut rand_chacha::ChaCha20Rng,
    ) -> Result<(BobDetections, bool)> {
        let mut det = BobDetections::default();
        let total_slots = self.log.meta().total_slots;
        let log = self.log.clone();
        while self.block < log.blocks().len() {
            let recs = log.block(self.block)?;
            let base =
                log.blocks()[self.block].offset + crate::io::detection_log::BLOCK_HEADER_LEN as u64;
            while self.record < recs.len() {
                if det.len() >= chunk {
                    self.report_progress();
                    return Ok((det, false));
                }
                let i = self.record;
                self.record += 1;
                let r = recs.get(i);
                if r.kind != RecordKind::Detection {
                    self.ignored_records += 1;
                    continue;
                }
                let offset = base + (i * crate::io::detection_log::RECORD_LEN) as u64;
                let bad = |field: &'static str, message: String| -> Error {
                    FormatError::InvalidField {
                        path: log.path().to_path_buf(),
                        offset,
                        field,
                        message,
                    }
                    .into()
                };
                let state = self.states.get(r.channel as usize).copied().flatten().ok_or_else(|| {
                    bad("channel", format!("detection on channel {} which has no (basis, value) in the metadata", r.channel))
                })?;
                if r.time < 0 || total_slots.is_some_and(|t| r.time as u64 >= t) {
                    return Err(bad(
                        "slot",
                        format!(
                            "slot {} outside the run's {} slots",
                            r.time,
                            total_slots.unwrap_or(0)
                        ),
                    ));
                }
                if self.prev_slot.is_some_and(|p| r.time < p) {
                    return Err(bad(
                        "slot",
                        format!(
                            "slot {} after slot {}: detections must be sorted",
                            r.time,
                            self.prev_slot.unwrap()
                        ),
                    ));
                }
                self.prev_slot = Some(r.time);
                let slot = r.time as u64;
                if self.group_slot != Some(slot) {
                    self.flush_group(&mut det, rng);
                    self.group_slot = Some(slot);
                }
                self.group.push(state);
            }
            self.block += 1;
            self.record = 0;
        }
        self.flush_group(&mut det, rng);
        self.report_progress();
        Ok((det, true))
    }

    fn flush_group(&mut self, det: &mut BobDetections, rng: &mut rand_chacha::ChaCha20Rng) {
        if self.group_slot.is_some() {
            det.count_clicks(&self.group);
        }
        if let Some(slot) = self.group_slot.take()
            && let Some(s) = squash_slot(&self.group, rng)
        {
            det.push(slot, s);
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

impl Source for SiftingSource {
    type Out = Block<SiftedKey>;

    fn name(&self) -> &'static str {
        "sifting"
    }

    fn next(&mut self) -> Result<Option<Block<SiftedKey>>> {
        loop {
            if let Some(b) = self.ready.pop_front() {
                return Ok(Some(b));
            }
            if self.done {
                return Ok(None);
            }
            match self.side {
                Side::Alice { .. } => self.alice_round()?,
                Side::Bob(_) => self.bob_round()?,
            }
        }
    }

    fn on_error(&mut self, err: &Error) {
        self.io.abort_peer(err);
    }
}
