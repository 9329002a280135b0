//! Verification of a block's frames (see [`crate::verification`]): Alice sends fresh random
//! hash keys and her tags, Bob compares and answers which frames match; frames that do not are
//! discarded by both.

use super::StageIo;
use crate::bits::BitVec;
use crate::block::{Block, CorrectedKey, VerificationReport, VerifiedKey};
use crate::classical::{Message, unexpected};
use crate::error::{Error, ProtocolError, Result};
use crate::pipeline::Stage;
use crate::protocol::Role;
use crate::verification::{collision_bound, keys_per_frame, tag};
use rand::Rng;

/// The verification stage of one party.
pub struct VerificationStage {
    io: StageIo,
}

impl VerificationStage {
    /// A stage talking over `io`.
    pub fn new(io: StageIo) -> Self {
        VerificationStage { io }
    }
}

impl Stage for VerificationStage {
    type In = Block<CorrectedKey>;
    type Out = Block<VerifiedKey>;

    fn name(&self) -> &'static str {
        "verification"
    }

    fn process(&mut self, mut block: Block<CorrectedKey>) -> Result<Block<VerifiedKey>> {
        let bound = block.key.bound;
        let frames = std::mem::take(&mut block.key.frames);
        if frames.is_empty() {
            return Ok(block.with_key(VerifiedKey::new(BitVec::new(), 0, bound)));
        }
        let s = self.io.session.clone();
        let k = &s.kernels;
        let max_len = frames.iter().map(BitVec::len).max().unwrap_or(0);
        let r = keys_per_frame(frames.len(), max_len, s.settings.epsilon_cor);
        let ok: BitVec = match s.role {
            Role::Alice => {
                let keys: Vec<u64> = (0..frames.len() * r)
                    .map(|_| self.io.rng.next_u64())
                    .collect();
                let tags: Vec<u64> = keys
                    .iter()
                    .enumerate()
                    .map(|(i, &key)| tag(k, &frames[i / r], key))
                    .collect();
                self.io
                    .channel
                    .send(&Message::VerifyTags { keys, tags }, &mut block.ledger)?;
                match self.io.channel.recv(&mut block.ledger)? {
                    Message::VerifyResult { ok } if ok.len() == frames.len() => ok,
                    Message::VerifyResult { ok } => {
                        return Err(ProtocolError::Malformed(format!(
                            "{} verdicts for {} frames",
                            ok.len(),
                            frames.len()
                        ))
                        .into());
                    }
                    other => return Err(unexpected("VerifyResult", &other)),
                }
            }
            Role::Bob => {
                let (keys, tags) = match self.io.channel.recv(&mut block.ledger)? {
                    Message::VerifyTags { keys, tags } => (keys, tags),
                    other => return Err(unexpected("VerifyTags", &other)),
                };
                if keys.len() != tags.len() || keys.len() != frames.len() * r {
                    return Err(ProtocolError::Disagreement {
                        what: "verification keys",
                        detail: format!(
                            "{} keys and {} tags for {} frames; {r} per frame required",
                            keys.len(),
                            tags.len(),
                            frames.len()
                        ),
                    }
                    .into());
                }
                let mut ok = BitVec::zeros(frames.len());
                for (f, frame) in frames.iter().enumerate() {
                    let good = !block.key.failed[f]
                        && (0..r).all(|j| tag(k, frame, keys[f * r + j]) == tags[f * r + j]);
                    ok.set(f, good);
                }
                self.io
                    .channel
                    .send(&Message::VerifyResult { ok: ok.clone() }, &mut block.ledger)?;
                ok
            }
        };
        let mut kept = BitVec::with_capacity(frames.iter().map(BitVec::len).sum());
        let mut discarded = 0u64;
        for (f, frame) in frames.iter().enumerate() {
            if ok.get(f) {
                kept.extend_from(frame);
            } else {
                discarded += frame.len() as u64;
            }
        }
        let frames_ok = ok.count_ones(k);
        block.report.verification = Some(VerificationReport {
            frames: frames.len() as u64,
            frames_ok,
            keys_per_frame: r as u64,
            collision_bound: collision_bound(frames.len(), max_len, r),
            discarded_bits: discarded,
        });
        let mut out = block.with_key(VerifiedKey::new(kept, discarded, bound));
        if frames_ok == 0 {
            out.no_key("every frame failed verification");
        }
        Ok(out)
    }

    fn on_error(&mut self, err: &Error) {
        self.io.abort_peer(err);
    }
}
