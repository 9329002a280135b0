//! Privacy amplification of a block: both parties compute ℓ from the block's bound and ledger
//! ([`finite_key::secret_length`]), rounded down to whole bytes; Alice draws a fresh Toeplitz seed
//! of n + ℓ − 1 bits and sends it; both hash. The last [`CONFIRMATION_PAD_BYTES`] bytes of the
//! result are the one-time pad of key confirmation and never reach the key store, so a block
//! needs ℓ ≥ 72 bits to yield key.

use super::StageIo;
use crate::bits::BitVec;
use crate::block::{AmplificationReport, Block, SecretKey, VerifiedKey};
use crate::classical::{Message, unexpected};
use crate::error::{Error, ProtocolError, Result};
use crate::parameter_estimation::finite_key;
use crate::pipeline::Stage;
use crate::privacy_amplification::{ToeplitzPlan, ToeplitzScratch};
use crate::protocol::Role;
use crate::stages::confirmation::CONFIRMATION_PAD_BYTES;
use rand::Rng;

/// The privacy-amplification stage of one party.
pub struct AmplificationStage {
    io: StageIo,
    /// Transform buffers reused from block to block (wiped after every hash).
    scratch: ToeplitzScratch,
}

impl AmplificationStage {
    /// A stage talking over `io`.
    pub fn new(io: StageIo) -> Self {
        AmplificationStage {
            io,
            scratch: ToeplitzScratch::new(),
        }
    }
}

impl Stage for AmplificationStage {
    type In = Block<VerifiedKey>;
    type Out = Block<SecretKey>;

    fn name(&self) -> &'static str {
        "privacy_amplification"
    }

    fn process(&mut self, mut block: Block<VerifiedKey>) -> Result<Block<SecretKey>> {
        let s = self.io.session.clone();
        let n = block.key.bits().len();
        let bound_bits = match block.key.bound() {
            Some(b) if n > 0 && !block.is_dropped() => finite_key::secret_length(
                b.entropy_bound,
                block.ledger.error_correction_charged(),
                block.ledger.verification_bits,
                block.key.discarded_bits(),
                s.settings.epsilon_cor,
            )
            .min(n as u64),
            _ => 0,
        };
        let m = (bound_bits - bound_bits % 8) as usize;
        if m <= 8 * CONFIRMATION_PAD_BYTES {
            if !block.is_dropped() {
                block.no_key(format!(
                    "secret length {bound_bits} after subtracting {} disclosed bits (key confirmation needs more than {} bits)",
                    block.ledger.subtracted() + block.key.discarded_bits(),
                    8 * CONFIRMATION_PAD_BYTES
                ));
            }
            return Ok(block.with_key(SecretKey::empty()));
        }
        let plan = ToeplitzPlan::new(n, m)?;
        let seed = match s.role {
            Role::Alice => {
                let mut words: Vec<u64> = (0..plan.seed_bits().div_ceil(64))
                    .map(|_| self.io.rng.next_u64())
                    .collect();
                let seed = BitVec::from_words(std::mem::take(&mut words), plan.seed_bits());
                let msg = Message::AmplifySeed {
                    input_bits: n as u64,
                    output_bits: m as u64,
                    seed,
                };
                self.io.channel.send(&msg, &mut block.ledger)?;
                let Message::AmplifySeed { seed, .. } = msg else {
                    unreachable!()
                };
                seed
            }
            Role::Bob => match self.io.channel.recv(&mut block.ledger)? {
                Message::AmplifySeed {
                    input_bits,
                    output_bits,
                    seed,
                } => {
                    if input_bits != n as u64
                        || output_bits != m as u64
                        || seed.len() != plan.seed_bits()
                    {
                        return Err(ProtocolError::Disagreement {
                            what: "secret length",
                            detail: format!(
                                "Alice: {input_bits} → {output_bits} bits; Bob: {n} → {m} bits"
                            ),
                        }
                        .into());
                    }
                    seed
                }
                other => return Err(unexpected("AmplifySeed", &other)),
            },
        };
        let key = plan.hash_with(&s.kernels, &seed, block.key.bits(), &mut self.scratch);
        block.report.amplification = Some(AmplificationReport {
            input_bits: n as u64,
            bound_bits,
            output_bits: m as u64,
            algorithm: plan.algorithm(),
        });
        Ok(block.with_key(SecretKey::new(&key)))
    }

    fn on_error(&mut self, err: &Error) {
        self.io.abort_peer(err);
    }
}
