//! Parameter estimation of a block: Alice discloses a random sample of key-basis bits and all
//! her test-basis bits; Bob answers with the error counts; both evaluate the finite-key bound
//! of Lim et al. on the same public numbers and reach the same decision.
//!
//! Abort rules: the run stops (security abort) when the sampled key-basis error rate or the
//! test-basis error rate exceeds `max_qber`, judged on at least [`MIN_ABORT_SAMPLE`] bits (on
//! fewer, the finite-key bound alone decides, and it yields no key from so little data). A block
//! whose bound leaves no room for key is dropped without an abort.

use super::StageIo;
use crate::bits::BitVec;
use crate::block::{Block, EstimatedKey, SiftedKey};
use crate::classical::{Message, unexpected};
use crate::error::{AbortReason, Error, ProtocolError, Result};
use crate::parameter_estimation::finite_key::{self, DecoyCounts};
use crate::parameter_estimation::qber::{QberEstimate, positions_mask, sample_positions};
use crate::pipeline::Stage;
use crate::protocol::Role;
use rand::Rng;

/// Fewest bits an error rate must rest on to trigger a security abort.
pub const MIN_ABORT_SAMPLE: u64 = 100;

/// The estimation stage of one party.
pub struct EstimationStage {
    io: StageIo,
}

impl EstimationStage {
    /// A stage talking over `io`.
    pub fn new(io: StageIo) -> Self {
        EstimationStage { io }
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
        let bits = &block.key.bits;
        let n = bits.key.len();
        let sample_size = ((n as f64) * s.settings.qber_sample_fraction).round() as usize;
        // Alice's request, or Bob's view of it.
        let (seed, sample_errors, test_errors) = match s.role {
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
                    } => (seed, sample_errors, test_errors),
                    other => return Err(unexpected("EstimationReply", &other)),
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
                let test_errors = bits.test_classes.count_per_class(k, &diff);
                self.io.channel.send(
                    &Message::EstimationReply {
                        sample_errors,
                        test_errors,
                    },
                    &mut block.ledger,
                )?;
                (seed, sample_errors, test_errors)
            }
        };
        if sample_errors > sample_size as u64
            || test_errors.iter().sum::<u64>() > bits.test.len() as u64
        {
            return Err(
                ProtocolError::Malformed("error counts exceed the sample sizes".into()).into(),
            );
        }
        // Both parties now hold the same public numbers.
        let positions = sample_positions(n, sample_size, &seed);
        let mut keep = positions_mask(n, &positions).not();
        keep.truncate(n);
        let key = bits.key.compacted(k, &keep);
        let classes = bits.key_classes.compacted(k, &keep);
        let counts = DecoyCounts {
            n_key: classes.class_sizes(k),
            n_test: bits.test_classes.class_sizes(k),
            m_test: test_errors,
        };
        let sample = QberEstimate {
            sample_bits: sample_size as u64,
            errors: sample_errors,
        };
        let test_qber = if counts.test_total() > 0 {
            counts.test_errors() as f64 / counts.test_total() as f64
        } else {
            0.0
        };
        let qber_estimate = if sample_size > 0 {
            sample.rate()
        } else {
            test_qber
        };
        let r = &mut block.report;
        r.qber_sample = Some(sample);
        r.qber_estimate = qber_estimate;
        r.test_qber = test_qber;
        r.decoy_counts = Some(counts);
        let max = s.settings.max_qber;
        let r = &block.report;
        if sample.sample_bits >= MIN_ABORT_SAMPLE && sample.rate() > max {
            return Err(Error::Aborted(AbortReason::QberTooHigh {
                block: block.id,
                estimated: sample.rate(),
                threshold: max,
            }));
        }
        if counts.test_total() >= MIN_ABORT_SAMPLE && test_qber > max {
            return Err(Error::Aborted(AbortReason::PhaseErrorTooHigh {
                block: block.id,
                estimated: test_qber,
                threshold: max,
            }));
        }
        // Bob holds every statistic the monitors need; an alarm aborts (Alice hears of it).
        if s.role == Role::Bob {
            let stats = crate::monitors::BlockStats {
                decoy: &s.decoy,
                counts: &counts,
                sample: (sample.sample_bits, sample.errors),
                slots: r.last_slot.saturating_sub(r.first_slot) + 1,
                detector_clicks: r.detector_clicks,
                arm_slots: r.arm_slots,
                cross_basis_clicks: r.cross_basis_clicks,
            };
            let mut alarms = if block.id == 0 {
                s.run_alarms.clone()
            } else {
                Vec::new()
            };
            alarms.extend(crate::monitors::check_block(&stats, &s.calibration));
            if !alarms.is_empty() {
                block.report.alarms = alarms.clone();
                return Err(Error::Aborted(AbortReason::MonitorAlarm {
                    block: block.id,
                    alarms,
                }));
            }
        }
        let r = &mut block.report;
        let bounds = finite_key::bounds(&s.decoy, &counts, s.settings.epsilon_sec);
        r.bounds = Some(bounds);
        let mut out = block.with_key(EstimatedKey {
            bits: key,
            classes,
            qber_estimate,
            bounds: Some(bounds),
        });
        if bounds.entropy_bound <= 0.0 {
            out.no_key(format!(
                "finite-key bound leaves no key (s1 = {:.0}, phase error ≤ {:.3}); too little data in the block",
                bounds.s1_key, bounds.phase_error_bound
            ));
            out.key.bits = BitVec::new();
        }
        Ok(out)
    }

    fn on_error(&mut self, err: &Error) {
        self.io.abort_peer(err);
    }
}
