//! Parameter estimation of a block, for every protocol: Alice discloses a random sample of key
//! bits and all her test bits; Bob answers with the sample errors and the test errors per test
//! class (intensity classes for BB84, CHSH correlators for E91, the test basis for BBM92); both
//! then hold the same public numbers ([`Estimation`]) and the protocol's assessment
//! ([`crate::protocols`]) turns them into the same decision and bound on both sides.
//!
//! Abort rules: the sampled key error rate above `max_qber` (judged on at least
//! [`MIN_ABORT_SAMPLE`] bits) aborts every protocol; each protocol adds its own (test-basis
//! error rate and monitors for BB84, the Bell test for E91, the test-pair error rate for
//! BBM92). Alarms a party raised before the first block (Alice's watchdog, Bob's arrival times)
//! abort block 0. A block whose bound leaves no room for key is dropped without an abort.

use super::StageIo;
use crate::bits::BitVec;
use crate::block::{Block, EstimatedKey, SiftedKey};
use crate::classical::{Message, unexpected};
use crate::error::{AbortReason, Error, ProtocolError, Result};
use crate::parameter_estimation::qber::{QberEstimate, positions_mask, sample_positions};
use crate::parameter_estimation::{Assessed, Estimation, MIN_ABORT_SAMPLE};
use crate::pipeline::Stage;
use crate::protocol::Role;
use crate::protocols::{self, ProtocolKind};
use rand::Rng;

/// The estimation stage of one party.
pub struct EstimationStage {
    io: StageIo,
}

impl EstimationStage {
    /// A stage talking over `io`.
    pub fn new(io: StageIo) -> Self {
        EstimationStage { io }
    }

    /// The sample/test exchange: returns (sample seed, sample errors, test errors per class).
    fn exchange(
        &mut self,
        block: &mut Block<SiftedKey>,
        sample_size: usize,
    ) -> Result<([u8; 32], u64, Vec<u64>)> {
        let s = self.io.session.clone();
        let k = &s.kernels;
        let bits = &block.key.bits;
        let n = bits.key.len();
        let classes = s.protocol.test_classes();
        match s.role {
            Role::Alice => {
                let mut seed = [0u8; 32];
                self.io.rng.fill_bytes(&mut seed);
                let positions = sample_positions(n, sample_size, &seed);
                let sample_bits = bits.key.compacted(k, &positions_mask(n, &positions));
                let msg = Message::EstimationRequest {
                    seed,
                    sample_size: sample_size as u64,
                    sample_bits,
                    test_bits: bits.test.clone(),
                };
                self.io.channel.send(&msg, &mut block.ledger)?;
                match self.io.channel.recv(&mut block.ledger)? {
                    Message::EstimationReply {
                        sample_errors,
                        test_errors,
                    } if test_errors.len() == classes => Ok((seed, sample_errors, test_errors)),
                    Message::EstimationReply { test_errors, .. } => {
                        Err(ProtocolError::Disagreement {
                            what: "test classes",
                            detail: format!(
                                "Bob counted {} classes, {} has {classes}",
                                test_errors.len(),
                                s.protocol.name()
                            ),
                        }
                        .into())
                    }
                    other => Err(unexpected("EstimationReply", &other)),
                }
            }
            Role::Bob => {
                let (seed, size, alice_sample, alice_test) =
                    match self.io.channel.recv(&mut block.ledger)? {
                        Message::EstimationRequest {
                            seed,
                            sample_size,
                            sample_bits,
                            test_bits,
                        } => (seed, sample_size, sample_bits, test_bits),
                        other => return Err(unexpected("EstimationRequest", &other)),
                    };
                if size != sample_size as u64
                    || alice_sample.len() != sample_size
                    || alice_test.len() != bits.test.len()
                {
                    return Err(ProtocolError::Disagreement {
                        what: "estimation sample",
                        detail: format!(
                            "Alice sent {} sample bits (size {size}) and {} test bits; Bob expects {sample_size} and {}",
                            alice_sample.len(),
                            alice_test.len(),
                            bits.test.len()
                        ),
                    }
                    .into());
                }
                let positions = sample_positions(n, sample_size, &seed);
                let mine = bits.key.compacted(k, &positions_mask(n, &positions));
                let sample_errors = mine.hamming_distance(k, &alice_sample);
                let mut diff = alice_test;
                diff.xor_assign(&bits.test);
                let test_errors = bits.test_classes.count_per_class_n(k, &diff, classes);
                self.io.channel.send(
                    &Message::EstimationReply {
                        sample_errors,
                        test_errors: test_errors.clone(),
                    },
                    &mut block.ledger,
                )?;
                Ok((seed, sample_errors, test_errors))
            }
        }
    }
}

impl Stage for EstimationStage {
    type In = Block<SiftedKey>;
    type Out = Block<EstimatedKey>;

    fn name(&self) -> &'static str {
        "parameter_estimation"
    }

    fn process(&mut self, mut block: Block<SiftedKey>) -> Result<Block<EstimatedKey>> {
        let s = self.io.session.clone();
        let k = &s.kernels;
        if block.id == 0 && !s.run_alarms.is_empty() {
            block.report.alarms = s.run_alarms.clone();
            return Err(Error::Aborted(AbortReason::MonitorAlarm {
                block: 0,
                alarms: s.run_alarms.clone(),
            }));
        }
        let n = block.key.bits.key.len();
        let sample_size = ((n as f64) * s.settings.qber_sample_fraction).round() as usize;
        let (seed, sample_errors, test_errors) = self.exchange(&mut block, sample_size)?;
        let bits = &block.key.bits;
        let classes = s.protocol.test_classes();
        let test_sizes =
            bits.test_classes
                .count_per_class_n(k, &BitVec::ones(bits.test.len()), classes);
        if sample_errors > sample_size as u64
            || test_errors.iter().zip(&test_sizes).any(|(e, n)| e > n)
            || test_sizes.iter().sum::<u64>() != bits.test.len() as u64
        {
            return Err(ProtocolError::Malformed(
                "error counts exceed the sample sizes (or test bits outside the test classes)"
                    .into(),
            )
            .into());
        }
        // Both parties now hold the same public numbers.
        let positions = sample_positions(n, sample_size, &seed);
        let mut keep = positions_mask(n, &positions).not();
        keep.truncate(n);
        let key = bits.key.compacted(k, &keep);
        let classes_kept = bits.key_classes.compacted(k, &keep);
        let sample = QberEstimate {
            sample_bits: sample_size as u64,
            errors: sample_errors,
        };
        block.report.qber_sample = Some(sample);
        let max = s.settings.max_qber;
        if sample.sample_bits >= MIN_ABORT_SAMPLE && sample.rate() > max {
            return Err(Error::Aborted(AbortReason::QberTooHigh {
                block: block.id,
                estimated: sample.rate(),
                threshold: max,
            }));
        }
        let e = Estimation {
            role: s.role,
            block: block.id,
            settings: &s.settings,
            decoy: s.decoy.as_ref(),
            calibration: s.calibration.as_ref(),
            key_bits: key.len() as u64,
            key_class_sizes: classes_kept.class_sizes(k),
            test_sizes,
            test_errors,
            sample,
        };
        let Assessed { bound, qber_for_ec } = match s.protocol {
            ProtocolKind::Bb84 => protocols::bb84::assess(&e, &mut block.report)?,
            ProtocolKind::E91 | ProtocolKind::Bbm92 => {
                protocols::entangled::assess(s.protocol, &e, &mut block.report)?
            }
            ProtocolKind::Noh09 => protocols::noh09::assess(&e, &mut block.report)?,
        };
        block.report.qber_estimate = qber_for_ec;
        block.report.key_bound = Some(bound);
        let mut out = block.with_key(EstimatedKey {
            bits: key,
            classes: classes_kept,
            qber_estimate: qber_for_ec,
            bound: Some(bound),
        });
        if bound.entropy_bound <= 0.0 {
            out.no_key(format!(
                "the {:?} bound leaves no key ({:.0} bits before error correction); too little data in the block",
                bound.proof, bound.entropy_bound
            ));
            out.key.bits = BitVec::new();
        }
        Ok(out)
    }

    fn on_error(&mut self, err: &Error) {
        self.io.abort_peer(err);
    }
}
