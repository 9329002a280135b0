//! Error correction of a block: its key is cut into frames, and the configured [`Reconciler`]
//! runs over all of them at once.

use super::StageIo;
use crate::bits::BitVec;
use crate::block::{Block, CorrectedKey, EcReport, EstimatedKey};
use crate::config::ReconciliationMethod;
use crate::error::{Error, Result};
use crate::error_correction::cascade::Cascade;
use crate::error_correction::ldpc::{LdpcReconciler, LdpcSettings};
use crate::error_correction::{EcContext, FrameOutcome, Reconciler, efficiency};
use crate::pipeline::Stage;
use crate::protocol::Role;

/// The error-correction stage (one worker) of one party.
pub struct ErrorCorrectionStage {
    io: StageIo,
    reconciler: Box<dyn Reconciler>,
}

impl ErrorCorrectionStage {
    /// A worker talking over `io`.
    pub fn new(io: StageIo) -> Self {
        let reconciler: Box<dyn Reconciler> = match io.session.settings.reconciliation {
            ReconciliationMethod::Cascade => Box::new(Cascade {
                frame_bits: io.session.settings.ec_frame_bits as usize,
                variant: io.session.settings.cascade_variant,
            }),
            ReconciliationMethod::Ldpc => Box::new(LdpcReconciler {
                settings: LdpcSettings {
                    code_bits: io.session.settings.ldpc_code_bits as usize,
                    efficiency: io.session.settings.ldpc_efficiency,
                    max_retries: io.session.settings.ldpc_retries,
                    ..LdpcSettings::default()
                },
            }),
        };
        ErrorCorrectionStage { io, reconciler }
    }
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
        let s = self.io.session.clone();
        let key = std::mem::take(&mut block.key.bits);
        let mut frames: Vec<BitVec> = Vec::new();
        let mut at = 0;
        for len in self
            .reconciler
            .frame_lengths(key.len(), block.key.qber_estimate)
        {
            frames.push(key.slice(at, at + len));
            at += len;
        }
        drop(key);
        let n: u64 = frames.iter().map(|f| f.len() as u64).sum();
        let before = block.ledger.error_correction_bits;
        let before_charged = block.ledger.error_correction_charged();
        let mut ctx = EcContext {
            channel: &mut self.io.channel,
            ledger: &mut block.ledger,
            kernels: &s.kernels,
            qber_estimate: block.key.qber_estimate,
            rng: &mut self.io.rng,
        };
        let mut report = EcReport {
            method: self.reconciler.name().into(),
            frames: frames.len() as u64,
            bits: n,
            ..Default::default()
        };
        let failed = match s.role {
            Role::Alice => {
                let (failed, stats) = self.reconciler.reconcile_alice(&mut ctx, &frames)?;
                report.stats = stats;
                failed
            }
            Role::Bob => {
                let (outcomes, stats) = self.reconciler.reconcile_bob(&mut ctx, &mut frames)?;
                report.stats = stats;
                let flips: u64 = outcomes
                    .iter()
                    .map(|o| {
                        if let FrameOutcome::Corrected { flipped } = o {
                            *flipped
                        } else {
                            0
                        }
                    })
                    .sum();
                let q = flips as f64 / n as f64;
                report.corrected_errors = Some(flips);
                report.qber = Some(q);
                report.efficiency = efficiency(block.ledger.error_correction_bits - before, n, q);
                report.efficiency_charged = efficiency(
                    block.ledger.error_correction_charged() - before_charged,
                    n,
                    q,
                );
                outcomes
                    .iter()
                    .map(|o| matches!(o, FrameOutcome::Failed))
                    .collect()
            }
        };
        block.report.error_correction = Some(report);
        Ok(block.with_key(CorrectedKey {
            frames,
            failed,
            bound,
        }))
    }

    fn on_error(&mut self, err: &Error) {
        self.io.abort_peer(err);
    }
}
