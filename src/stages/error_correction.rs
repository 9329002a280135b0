//! Error correction of a block: its key is cut into frames, and the configured [`Reconciler`]
//! runs over them, in `ec_lanes` groups at the same time.

use super::StageIo;
use crate::bits::BitVec;
use crate::block::{Block, CorrectedKey, EcReport, EstimatedKey};
use crate::config::DistillSettings;
use crate::config::ReconciliationMethod;
use crate::error::{Error, Result};
use crate::error_correction::cascade::Cascade;
use crate::error_correction::ldpc::{LdpcReconciler, LdpcSettings};
use crate::error_correction::{EcContext, EcStats, FrameOutcome, Reconciler, efficiency};
use crate::ledger::LeakageLedger;
use crate::pipeline::Stage;
use crate::protocol::Role;

/// The error-correction stage (one worker) of one party: the frames of a block are split
/// into contiguous groups, one per lane, reconciled at the same time, each lane over its own
/// channel with its own ledger (added to the block's ledger when all lanes are done).
pub struct ErrorCorrectionStage {
    lanes: Vec<Lane>,
}

/// One lane: a channel to the peer's lane and a reconciler.
struct Lane {
    io: StageIo,
    reconciler: Box<dyn Reconciler>,
}

/// What one lane did with its group of frames.
struct LaneResult {
    ledger: LeakageLedger,
    stats: EcStats,
    outcomes: Vec<FrameOutcome>,
    failed: Vec<bool>,
}

fn reconciler(s: &DistillSettings) -> Box<dyn Reconciler> {
    match s.reconciliation {
        ReconciliationMethod::Cascade => Box::new(Cascade {
            frame_bits: s.ec_frame_bits as usize,
            variant: s.cascade_variant,
        }),
        ReconciliationMethod::Ldpc => Box::new(LdpcReconciler {
            settings: LdpcSettings {
                code_bits: s.ldpc_code_bits as usize,
                efficiency: s.ldpc_efficiency,
                max_retries: s.ldpc_retries,
                ..LdpcSettings::default()
            },
        }),
    }
}

/// Contiguous groups of `n` frames for `lanes` lanes (the first groups one longer), empty
/// groups dropped: the same on both sides.
fn lane_groups(n: usize, lanes: usize) -> Vec<std::ops::Range<usize>> {
    let lanes = lanes.clamp(1, n.max(1));
    let (q, r) = (n / lanes, n % lanes);
    let mut at = 0;
    (0..lanes)
        .map(|l| {
            let len = q + usize::from(l < r);
            at += len;
            at - len..at
        })
        .filter(|g| !g.is_empty())
        .collect()
}

impl ErrorCorrectionStage {
    /// A worker with one lane per channel in `ios` (at least one).
    pub fn new(ios: Vec<StageIo>) -> Self {
        assert!(!ios.is_empty(), "an EC worker needs a lane");
        let lanes = ios
            .into_iter()
            .map(|io| Lane {
                reconciler: reconciler(&io.session.settings),
                io,
            })
            .collect();
        ErrorCorrectionStage { lanes }
    }

    fn reconciler(&self) -> &dyn Reconciler {
        self.lanes[0].reconciler.as_ref()
    }
}

impl Lane {
    /// Reconcile `frames` (this lane's group) at the block's estimated error rate.
    fn run(&mut self, frames: &mut [BitVec], qber_estimate: f64) -> Result<LaneResult> {
        let s = self.io.session.clone();
        let mut ledger = LeakageLedger::default();
        let mut ctx = EcContext {
            channel: &mut self.io.channel,
            ledger: &mut ledger,
            kernels: &s.kernels,
            qber_estimate,
            rng: &mut self.io.rng,
        };
        let (outcomes, failed, stats) = match s.role {
            Role::Alice => {
                let (failed, stats) = self.reconciler.reconcile_alice(&mut ctx, frames)?;
                (vec![], failed, stats)
            }
            Role::Bob => {
                let (outcomes, stats) = self.reconciler.reconcile_bob(&mut ctx, frames)?;
                let failed = outcomes
                    .iter()
                    .map(|o| matches!(o, FrameOutcome::Failed))
                    .collect();
                (outcomes, failed, stats)
            }
        };
        Ok(LaneResult {
            ledger,
            stats,
            outcomes,
            failed,
        })
    }
}

/// Run every lane on its group of `frames` (a lane's thread per group beyond the first).
fn run_lanes(
    lanes: &mut [Lane],
    frames: &mut [BitVec],
    qber_estimate: f64,
) -> Vec<Result<LaneResult>> {
    let groups = lane_groups(frames.len(), lanes.len());
    let mut parts: Vec<&mut [BitVec]> = Vec::with_capacity(groups.len());
    let mut rest = frames;
    for g in &groups {
        let (head, tail) = rest.split_at_mut(g.len());
        parts.push(head);
        rest = tail;
    }
    if parts.len() == 1 {
        return vec![lanes[0].run(parts.pop().expect("one group"), qber_estimate)];
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = lanes
            .iter_mut()
            .zip(parts)
            .map(|(lane, part)| {
                std::thread::Builder::new()
                    .name("qkd-ec-lane".into())
                    .spawn_scoped(scope, move || lane.run(part, qber_estimate))
                    .expect("spawning an EC lane")
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

impl Stage for ErrorCorrectionStage {
    type In = Block<EstimatedKey>;
    type Out = Block<CorrectedKey>;

    fn name(&self) -> &'static str {
        "error_correction"
    }

    fn process(&mut self, mut block: Block<EstimatedKey>) -> Result<Block<CorrectedKey>> {
        let bound = block.key.bound;
        if block.is_dropped() || block.key.bits.is_empty() {
            return Ok(block.with_key(CorrectedKey {
                frames: vec![],
                failed: vec![],
                bound,
            }));
        }
        let role = self.lanes[0].io.session.role;
        let key = std::mem::take(&mut block.key.bits);
        let mut frames: Vec<BitVec> = Vec::new();
        let mut at = 0;
        for len in self
            .reconciler()
            .frame_lengths(key.len(), block.key.qber_estimate)
        {
            frames.push(key.slice(at, at + len));
            at += len;
        }
        drop(key);
        let n: u64 = frames.iter().map(|f| f.len() as u64).sum();
        let before = block.ledger.error_correction_bits;
        let before_charged = block.ledger.error_correction_charged();
        let mut report = EcReport {
            method: self.reconciler().name().into(),
            frames: frames.len() as u64,
            bits: n,
            ..Default::default()
        };
        let results = run_lanes(&mut self.lanes, &mut frames, block.key.qber_estimate);
        let mut failed = Vec::with_capacity(frames.len());
        let mut flips = 0u64;
        for r in results {
            let r = r?;
            block.ledger.add(&r.ledger);
            let (a, b) = (report.stats, r.stats);
            report.stats = EcStats {
                round_trips: a.round_trips + b.round_trips,
                messages: a.messages + b.messages,
                decoder_iterations: a.decoder_iterations + b.decoder_iterations,
                revealed_bits: a.revealed_bits + b.revealed_bits,
            };
            failed.extend(r.failed);
            flips += r
                .outcomes
                .iter()
                .map(|o| match o {
                    FrameOutcome::Corrected { flipped } => *flipped,
                    FrameOutcome::Failed => 0,
                })
                .sum::<u64>();
        }
        if role == Role::Bob {
            let q = flips as f64 / n as f64;
            report.corrected_errors = Some(flips);
            report.qber = Some(q);
            report.efficiency = efficiency(block.ledger.error_correction_bits - before, n, q);
            report.efficiency_charged = efficiency(
                block.ledger.error_correction_charged() - before_charged,
                n,
                q,
            );
        }
        block.report.error_correction = Some(report);
        Ok(block.with_key(CorrectedKey {
            frames,
            failed,
            bound,
        }))
    }

    fn on_error(&mut self, err: &Error) {
        for lane in &mut self.lanes {
            lane.io.abort_peer(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lane_groups;

    #[test]
    fn lane_groups_cover_the_frames_in_order() {
        for n in 0..20 {
            for lanes in 1..6 {
                let g = lane_groups(n, lanes);
                assert!(g.len() <= lanes.max(1));
                let flat: Vec<usize> = g.iter().flat_map(|r| r.clone()).collect();
                assert_eq!(flat, (0..n).collect::<Vec<_>>());
                let (min, max) = (
                    g.iter().map(|r| r.len()).min().unwrap_or(0),
                    g.iter().map(|r| r.len()).max().unwrap_or(0),
                );
                assert!(max - min <= 1);
            }
        }
    }
}
