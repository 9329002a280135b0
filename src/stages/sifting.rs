//! The sifting source of a party: drives its protocol's [`SiftingSide`] round by round and cuts
//! the sifted stream into blocks at the same places on both sides (a block is closed once it
//! holds `block_bits` key bits; at the end of the run a remainder smaller than one block joins
//! the last block).

use super::StageIo;
use crate::block::{Block, BlockReport, SiftedKey};
use crate::error::{Error, Result};
use crate::ledger::LeakageLedger;
use crate::pipeline::Source;
use crate::sifting::{ChunkInfo, SiftContext, SiftedBits, SiftingSide};
use std::collections::VecDeque;

/// Accumulates sifted chunks into blocks (same rule on both sides).
struct Accumulator {
    target: u64,
    current: Option<(SiftedBits, BlockReport, LeakageLedger)>,
    pending: Option<(SiftedBits, BlockReport, LeakageLedger)>,
    next_id: u64,
    /// Emit each block as soon as it is full (following a growing log).
    immediate: bool,
}

impl Accumulator {
    fn new(target: u64, first_id: u64, immediate: bool) -> Self {
        Accumulator {
            target,
            current: None,
            pending: None,
            next_id: first_id,
            immediate,
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
        r.announced_bases.merge(&info.announced);
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
        if self.immediate {
            // Following a growing log: a full block goes at once; the run's last, partial
            // block goes on its own.
            if let Some(cur) = self
                .current
                .take_if(|c| (full || last) && c.1.detections > 0)
            {
                let b = self.finish_block(cur);
                out.push_back(b);
            }
            return;
        }
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
                        p.1.announced_bases.merge(&cur.1.announced_bases);
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

/// The sifting source of one party.
pub struct SiftingSource {
    io: StageIo,
    side: Box<dyn SiftingSide>,
    acc: Accumulator,
    ready: VecDeque<Block<SiftedKey>>,
    done: bool,
}

impl SiftingSource {
    /// A source running `side` over `io`.
    pub fn new(io: StageIo, side: Box<dyn SiftingSide>) -> Self {
        let target = io.session.settings.block_bits;
        let first = io.session.resume.first_block;
        let immediate = io.session.settings.follow;
        SiftingSource {
            io,
            side,
            acc: Accumulator::new(target, first, immediate),
            ready: VecDeque::new(),
            done: false,
        }
    }

    fn round(&mut self) -> Result<()> {
        let session = self.io.session.clone();
        let mut cx = SiftContext {
            channel: &mut self.io.channel,
            ledger: self.acc.ledger(),
            rng: &mut self.io.rng,
            kernels: &session.kernels,
            settings: &session.settings,
            stop: &session.stop,
        };
        let r = self.side.round(&mut cx)?;
        self.acc.add(&r.bits, &r.info);
        self.acc.cut(r.last, &mut self.ready);
        self.done = r.last;
        Ok(())
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
            self.round()?;
        }
    }

    fn on_error(&mut self, err: &Error) {
        self.io.abort_peer(err);
    }
}
