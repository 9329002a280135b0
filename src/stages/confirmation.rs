//! Key confirmation and commit of a block, by message: a block's key is committed (passed to
//! the key store) on a side only when both sides computed the same key and every frame it
//! depends on was authenticated in both directions.
//!
//! 1. Alice → Bob `KeyConfirm` (checkpoint: Bob's link verifies every frame Alice sent so far);
//! 2. Bob → Alice `KeyConfirmResult` (checkpoint: Alice's link verifies Bob's frames);
//! 3. Alice → Bob `KeyCommit` (checkpoint): Alice commits once she sent it, Bob once he read it.
//!
//! A session that breaks between 2 and 3 leaves the block committed at Alice only; the resumed
//! session rolls it back (both sides resume from the last block committed on both). With
//! `auth_refill_bits`, the first words of each committed key move into the authentication pool
//! (both sides, at the commit frame) before the rest is delivered.
//!
//! Alice hashes her block key with a fresh random 64-bit key of the polynomial hash over
//! GF(2^64) ([`crate::verification::tag`]) and one-time pads the tag with the last
//! [`CONFIRMATION_PAD_BYTES`] bytes of the amplified key, which leave the key: the tag is then
//! uniformly random and independent of the kept key, so it discloses nothing about it. Bob
//! computes the same and answers whether the tags agree. On agreement both commit the block;
//! otherwise both discard it (no key from it) and say so. Two different keys pass with
//! probability at most (d + 1)/2^64 for a d-word key.

use super::StageIo;
use crate::bits::BitVec;
use crate::block::{Block, BlockOutcome, ConfirmationReport, SecretKey};
use crate::classical::{Message, unexpected};
use crate::error::{Error, ProtocolError, Result};
use crate::pipeline::Stage;
use crate::protocol::Role;
use rand::Rng;

/// Bytes of every amplified block key used as the confirmation tag's one-time pad.
pub const CONFIRMATION_PAD_BYTES: usize = 8;

/// The key-confirmation stage of one party.
pub struct ConfirmationStage {
    io: StageIo,
}

impl ConfirmationStage {
    /// A stage talking over `io`.
    pub fn new(io: StageIo) -> Self {
        ConfirmationStage { io }
    }
}

impl Stage for ConfirmationStage {
    type In = Block<SecretKey>;
    type Out = Block<SecretKey>;

    fn name(&self) -> &'static str {
        "key_confirmation"
    }

    fn process(&mut self, mut block: Block<SecretKey>) -> Result<Block<SecretKey>> {
        // The amplified length is public and equal on both sides: both skip empty blocks.
        if block.key.as_bytes().len() <= CONFIRMATION_PAD_BYTES {
            return Ok(block.with_key(SecretKey::empty()));
        }
        let s = self.io.session.clone();
        let pad = block.key.split_off_tail(CONFIRMATION_PAD_BYTES);
        let pad = u64::from_le_bytes(pad.as_bytes().try_into().expect("8 pad bytes"));
        let bytes = block.key.as_bytes();
        let bits = BitVec::from_bytes_le(bytes, bytes.len() * 8);
        // Words of the key that refill the authentication pool: public length, same on both.
        let refill_words = match &s.auth {
            Some(_) => (s.settings.auth_refill_bits / 64).min((bytes.len() / 8 / 2) as u64) as u32,
            None => 0,
        };
        let refill = || -> Vec<u64> {
            bytes[..8 * refill_words as usize]
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect()
        };
        let id = block.id;
        let (ok, commit_tag) = match s.role {
            Role::Alice => {
                let hash_key = self.io.rng.next_u64();
                let tag = crate::verification::tag(&s.kernels, &bits, hash_key) ^ pad;
                self.io
                    .channel
                    .send(&Message::KeyConfirm { hash_key, tag }, &mut block.ledger)?;
                let ok = match self.io.channel.recv(&mut block.ledger)? {
                    Message::KeyConfirmResult { ok } => ok,
                    other => return Err(unexpected("KeyConfirmResult", &other)),
                };
                if ok && refill_words > 0 {
                    s.auth.as_ref().expect("pool").register_refill(id, refill());
                }
                let commit = Message::KeyCommit {
                    block: id,
                    commit: ok,
                    refill_words: if ok { refill_words } else { 0 },
                };
                self.io.channel.send(&commit, &mut block.ledger)?;
                (ok, hash_key)
            }
            Role::Bob => {
                let (hash_key, tag) = match self.io.channel.recv(&mut block.ledger)? {
                    Message::KeyConfirm { hash_key, tag } => (hash_key, tag),
                    other => return Err(unexpected("KeyConfirm", &other)),
                };
                let ok = crate::verification::tag(&s.kernels, &bits, hash_key) ^ pad == tag;
                if ok && refill_words > 0 {
                    // Registered before the answer: the link applies it when the commit arrives.
                    s.auth.as_ref().expect("pool").register_refill(id, refill());
                }
                self.io
                    .channel
                    .send(&Message::KeyConfirmResult { ok }, &mut block.ledger)?;
                match self.io.channel.recv(&mut block.ledger)? {
                    Message::KeyCommit {
                        block: b,
                        commit,
                        refill_words: r,
                    } if b == id && (!commit || (ok && r == refill_words)) => (commit, hash_key),
                    Message::KeyCommit { block: b, .. } => {
                        return Err(ProtocolError::Disagreement {
                            what: "block commit",
                            detail: format!(
                                "Alice's commit of block {b} does not match block {id} (confirmed: {ok}, refill {refill_words} words)"
                            ),
                        }
                        .into());
                    }
                    other => return Err(unexpected("KeyCommit", &other)),
                }
            }
        };
        drop(bits);
        let refilled = if ok { 64 * u64::from(refill_words) } else { 0 };
        block.report.confirmation = Some(ConfirmationReport {
            confirmed: ok,
            pad_bits: 8 * CONFIRMATION_PAD_BYTES as u64,
            auth_refill_bits: refilled,
            tag: commit_tag,
        });
        if refilled > 0 {
            // Those words now belong to the authentication pool, not to the delivered key.
            block.key.drop_front(8 * refill_words as usize);
        }
        if !ok {
            block.no_key(
                "key confirmation failed: Alice's and Bob's block keys differ although verification passed; the block is discarded on both sides",
            );
            return Ok(block.with_key(SecretKey::empty()));
        }
        block.report.secret_bits = 8 * block.key.as_bytes().len() as u64;
        block.report.outcome = BlockOutcome::Key;
        Ok(block)
    }

    fn on_error(&mut self, err: &Error) {
        self.io.abort_peer(err);
    }
}
