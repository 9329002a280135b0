//! The typed messages Alice and Bob exchange, their wire encoding, and what each discloses.
//!
//! Frame: `u8 version (= 1)`, `u8 tag`, payload (see [`super::wire`]). Every message states its
//! disclosure ([`Message::disclosures`]) so that the channel can enter it in the ledger.

use super::wire::{WireReader, WireWriter};
use crate::bits::BitVec;
use crate::error::ProtocolError;
use crate::ledger::Disclosure;

/// Wire format version of every frame (the first byte). Version 2: negotiated handshake,
/// per-class test errors of any protocol, entangled and post-selection sifting, key
/// confirmation.
pub const WIRE_VERSION: u8 = 2;
/// The lowest session protocol version this build speaks (negotiated in [`Message::Hello`]).
pub const PROTOCOL_VERSION_MIN: u16 = 2;
/// The highest session protocol version this build speaks.
pub const PROTOCOL_VERSION_MAX: u16 = 2;
/// Largest number of items in one list field (guards allocations from malformed input).
const MAX_ITEMS: usize = 1 << 28;
/// Largest number of test classes in an estimation reply.
const MAX_CLASSES: usize = 16;

/// One parity request: positions `[start, end)` of top-level block `block` of `frame` in
/// Cascade `pass` (see `error_correction::cascade` for how a pass orders positions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParityRange {
    /// Frame index within the block.
    pub frame: u32,
    /// Pass (0 = original order).
    pub pass: u16,
    /// Top-level block within the pass.
    pub block: u32,
    /// First position (in the pass's permuted order).
    pub start: u32,
    /// One past the last position.
    pub end: u32,
}

/// A classical-channel message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Alice opens a session: the protocol versions she speaks, the protocol, her run id and
    /// number of slots, and her settings (JSON).
    Hello {
        /// Lowest session protocol version Alice speaks.
        version_min: u16,
        /// Highest session protocol version Alice speaks.
        version_max: u16,
        /// QKD protocol name (`bb84`, `e91`, `bbm92`, `noh09`).
        protocol: String,
        /// Run id of Alice's log.
        run_id: [u8; 8],
        /// Slots in Alice's log.
        total_slots: u64,
        /// Alice's session settings, JSON.
        settings: String,
    },
    /// Bob accepts the session: the version chosen, his run id, the block size both use (Bob
    /// resolves `auto` from his detection count) and whether his log needs time
    /// synchronisation first.
    HelloAck {
        /// Session protocol version chosen (within both ranges).
        version: u16,
        /// Run id of Bob's log.
        run_id: [u8; 8],
        /// Sifted key bits per block for this session.
        block_bits: u64,
        /// Bob's log holds raw time tags: synchronise before sifting.
        needs_sync: bool,
    },
    /// Bob announces detected slots (sorted) and the basis of each (bit 1 = X).
    SiftAnnounce {
        /// Detected slots.
        slots: Vec<u64>,
        /// Bob's basis per detected slot.
        bases: BitVec,
        /// No more detections follow.
        last: bool,
    },
    /// Alice answers: basis match per announced slot, and the intensity class of each match.
    SiftReply {
        /// Basis match per announced slot.
        matched: BitVec,
        /// Intensity class bit 0 per matched slot.
        int0: BitVec,
        /// Intensity class bit 1 per matched slot.
        int1: BitVec,
    },
    /// Alice starts parameter estimation of a block: sample seed, her sampled key bits and her
    /// test-basis bits.
    EstimationRequest {
        /// Seed of the sample positions.
        seed: [u8; 32],
        /// Sample size.
        sample_size: u64,
        /// Alice's bits at the sample positions.
        sample_bits: BitVec,
        /// Alice's test-basis bits.
        test_bits: BitVec,
    },
    /// Bob's counts: mismatches in the sample, and test errors per class (intensity classes
    /// of BB84, CHSH correlators of E91, the test basis of BBM92; none for Noh09).
    EstimationReply {
        /// Errors in the key-basis sample.
        sample_errors: u64,
        /// Test errors per class.
        test_errors: Vec<u64>,
    },
    /// Entangled protocols: Bob announces his detected slots (sorted) and the measurement
    /// setting of each (two bit planes, setting = bit0 | bit1 << 1).
    CoincidenceAnnounce {
        /// Detected slots.
        slots: Vec<u64>,
        /// Setting bit 0 per slot.
        setting0: BitVec,
        /// Setting bit 1 per slot.
        setting1: BitVec,
        /// No more detections follow.
        last: bool,
    },
    /// Alice answers: which announced slots she also detected, and her setting at each of them.
    CoincidenceReply {
        /// Coincidence per announced slot.
        matched: BitVec,
        /// Alice's setting bit 0 per coincidence.
        setting0: BitVec,
        /// Alice's setting bit 1 per coincidence.
        setting1: BitVec,
    },
    /// Post-selection (Noh09): Alice announces the slots whose detection pattern gives key.
    PostselectAnnounce {
        /// Announced slots.
        slots: Vec<u64>,
        /// No more slots follow.
        last: bool,
    },
    /// Bob answers which announced slots both keep.
    PostselectReply {
        /// Kept per announced slot.
        keep: BitVec,
    },
    /// Alice starts Cascade: permutation seed and the block-size schedule.
    CascadeStart {
        /// Seed of the per-pass permutations and BICONF subsets.
        seed: [u8; 32],
        /// Top-level block size of each regular pass.
        block_sizes: Vec<u32>,
        /// BICONF: stop after this many consecutive error-free rounds (0: no BICONF).
        biconf_clean_rounds: u32,
    },
    /// Bob asks for the parities of all top-level blocks of a pass in the frames marked.
    CascadeTopQuery {
        /// Pass index.
        pass: u16,
        /// One bit per frame.
        frames: BitVec,
    },
    /// Bob asks for the parities of arbitrary ranges.
    ParityQuery {
        /// The ranges.
        ranges: Vec<ParityRange>,
    },
    /// Alice's parities, one per requested block, in order.
    ParityReply {
        /// The parities.
        parities: BitVec,
    },
    /// Bob ends the reconciliation of the block.
    CascadeDone,
    /// Alice's LDPC syndromes for every frame of a block.
    LdpcSyndromes {
        /// Seed of the shortened bits' public values.
        seed: [u8; 32],
        /// Code name.
        code: String,
        /// Punctured positions per frame.
        punctured: u32,
        /// Shortened positions of each frame.
        shortened: Vec<u32>,
        /// One syndrome (m bits) per frame.
        syndromes: Vec<BitVec>,
    },
    /// Bob's decoding status: the frames not (yet) decoded.
    LdpcStatus {
        /// One bit per frame.
        failed: BitVec,
    },
    /// Alice reveals the next bits (blind reconciliation) of every failed frame, concatenated.
    LdpcReveal {
        /// Revealed values.
        values: BitVec,
    },
    /// Alice's verification: per frame, `r` random hash keys and `r` tags.
    VerifyTags {
        /// Keys, frame-major.
        keys: Vec<u64>,
        /// Tags, frame-major.
        tags: Vec<u64>,
    },
    /// Bob's verdict per frame.
    VerifyResult {
        /// True where the tags matched.
        ok: BitVec,
    },
    /// Alice's privacy-amplification choice: output length and Toeplitz seed.
    AmplifySeed {
        /// Input length n.
        input_bits: u64,
        /// Output length ℓ.
        output_bits: u64,
        /// Seed of n + ℓ − 1 bits.
        seed: BitVec,
    },
    /// Alice's key confirmation of a block: a 64-bit polynomial hash of the block's key under
    /// `hash_key`, one-time padded with the last 64 bits of the amplified key (which leave the
    /// key), so the tag reveals nothing about the key that is kept.
    KeyConfirm {
        /// Random hash key.
        hash_key: u64,
        /// Padded tag.
        tag: u64,
    },
    /// Bob's answer: his key gives the same tag (the block is committed on both sides) or not
    /// (discarded on both).
    KeyConfirmResult {
        /// Tags equal.
        ok: bool,
    },
    /// Alice's decision on a confirmed block: both commit it (and, with `refill_words`, both
    /// move that many words of its key into the authentication pool at this point of the frame
    /// order), or both discard it.
    KeyCommit {
        /// The block.
        block: u64,
        /// Commit (true) or discard.
        commit: bool,
        /// Words of the block's key that refill the authentication pool.
        refill_words: u32,
    },
    /// The sender stops the run.
    Abort {
        /// A security abort (no key) rather than a failure.
        security: bool,
        /// Why.
        reason: String,
    },
    /// Bob asks for Alice's symbols in a window of her slots to find the slot offset (time
    /// synchronisation of raw time tags). Slot numbers only, never timestamps.
    SyncRequest {
        /// First slot of the window (Alice's numbering).
        first_slot: u64,
        /// Slots in the window.
        slots: u64,
    },
    /// Alice's basis and value for every slot of the window; these slots leave the key.
    SyncWindow {
        /// First slot.
        first_slot: u64,
        /// Bases (1 = X).
        bases: BitVec,
        /// Values.
        values: BitVec,
    },
    /// Bob's result (for Alice's report): the slot offset found for each detector, as
    /// two's-complement u64.
    SyncDone {
        /// Offsets.
        offsets: Vec<u64>,
    },
}

impl Message {
    /// Short name, for errors.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "Hello",
            Message::HelloAck { .. } => "HelloAck",
            Message::SiftAnnounce { .. } => "SiftAnnounce",
            Message::SiftReply { .. } => "SiftReply",
            Message::EstimationRequest { .. } => "EstimationRequest",
            Message::EstimationReply { .. } => "EstimationReply",
            Message::CoincidenceAnnounce { .. } => "CoincidenceAnnounce",
            Message::CoincidenceReply { .. } => "CoincidenceReply",
            Message::PostselectAnnounce { .. } => "PostselectAnnounce",
            Message::PostselectReply { .. } => "PostselectReply",
            Message::KeyConfirm { .. } => "KeyConfirm",
            Message::KeyConfirmResult { .. } => "KeyConfirmResult",
            Message::KeyCommit { .. } => "KeyCommit",
            Message::CascadeStart { .. } => "CascadeStart",
            Message::CascadeTopQuery { .. } => "CascadeTopQuery",
            Message::ParityQuery { .. } => "ParityQuery",
            Message::ParityReply { .. } => "ParityReply",
            Message::CascadeDone => "CascadeDone",
            Message::LdpcSyndromes { .. } => "LdpcSyndromes",
            Message::LdpcStatus { .. } => "LdpcStatus",
            Message::LdpcReveal { .. } => "LdpcReveal",
            Message::VerifyTags { .. } => "VerifyTags",
            Message::VerifyResult { .. } => "VerifyResult",
            Message::AmplifySeed { .. } => "AmplifySeed",
            Message::Abort { .. } => "Abort",
            Message::SyncRequest { .. } => "SyncRequest",
            Message::SyncWindow { .. } => "SyncWindow",
            Message::SyncDone { .. } => "SyncDone",
        }
    }

    /// How the link sends it: the messages the protocol relies on before it commits anything
    /// (session handshake, key confirmation and commit, aborts) are authentication
    /// checkpoints; a commit with a refill moves key into the authentication pool.
    pub fn link_options(&self) -> super::SendOptions {
        match self {
            Message::Hello { .. }
            | Message::HelloAck { .. }
            | Message::KeyConfirm { .. }
            | Message::KeyConfirmResult { .. }
            | Message::Abort { .. } => super::SendOptions {
                checkpoint: true,
                refill: None,
            },
            Message::KeyCommit {
                block,
                commit,
                refill_words,
            } => super::SendOptions {
                checkpoint: true,
                refill: (*commit && *refill_words > 0).then_some(*block),
            },
            _ => super::SendOptions::default(),
        }
    }

    /// What the message discloses, by ledger kind.
    pub fn disclosures(&self) -> Vec<Disclosure> {
        use Disclosure::*;
        match self {
            Message::Hello {
                protocol, settings, ..
            } => vec![Control(
                32 + 64 + 64 + 8 * (protocol.len() + settings.len()) as u64,
            )],
            Message::HelloAck { .. } => vec![Control(16 + 64 + 64 + 1)],
            // Slot indices and one basis bit per detection; the slot list itself is public
            // timing information, counted as sifting disclosure (one bit per slot is a lower
            // bound of no consequence: none of it depends on bit values).
            Message::SiftAnnounce { bases, .. } => vec![Sifting(bases.len() as u64), Control(1)],
            Message::SiftReply {
                matched,
                int0,
                int1,
            } => {
                vec![Sifting((matched.len() + int0.len() + int1.len()) as u64)]
            }
            Message::EstimationRequest {
                sample_bits,
                test_bits,
                ..
            } => vec![
                PublicRandomness(256),
                Control(64),
                QberSample(sample_bits.len() as u64),
                TestBasis(test_bits.len() as u64),
            ],
            // Error counts of the disclosed sample and test bits (neither is key).
            Message::EstimationReply { test_errors, .. } => {
                vec![Control(64 + 64 * test_errors.len() as u64)]
            }
            // Settings are chosen independently of the outcomes; the slot list is timing.
            Message::CoincidenceAnnounce {
                setting0, setting1, ..
            } => {
                vec![
                    Sifting((setting0.len() + setting1.len()) as u64),
                    Control(1),
                ]
            }
            Message::CoincidenceReply {
                matched,
                setting0,
                setting1,
            } => vec![Sifting(
                (matched.len() + setting0.len() + setting1.len()) as u64,
            )],
            // Which slots gave the key pattern (one bit per slot); not the bit values.
            Message::PostselectAnnounce { slots, .. } => {
                vec![Sifting(slots.len() as u64), Control(1)]
            }
            Message::PostselectReply { keep } => vec![Sifting(keep.len() as u64)],
            // One-time padded with 64 bits that leave the key; the hash key is public.
            Message::KeyConfirm { .. } => vec![PublicRandomness(64), Confirmation(64)],
            Message::KeyConfirmResult { .. } => vec![Control(1)],
            Message::KeyCommit { .. } => vec![Control(64 + 1 + 32)],
            Message::CascadeStart { block_sizes, .. } => {
                vec![
                    PublicRandomness(256),
                    Control(32 * block_sizes.len() as u64),
                ]
            }
            Message::CascadeTopQuery { .. } => vec![Control(16)],
            // Bob's queries are a function of the public seeds, Alice's parities and the error
            // parities Bob derives from them; that last part is charged with each reply below.
            Message::ParityQuery { ranges } => vec![Control(ranges.len() as u64)],
            // Alice's parities (λ_EC in the efficiency literature's convention), and for each
            // of them the one bit of Bob's error parity that his next messages reveal
            // (bisect or not, left or right): both are subtracted (docs/security.md).
            Message::ParityReply { parities } => vec![
                ErrorCorrection(parities.len() as u64),
                Reply(parities.len() as u64),
            ],
            Message::CascadeDone => vec![Control(1)],
            // m syndrome bits per frame disclose at most m − p bits about the key when the p
            // punctured columns are independent (untainted puncturing; see
            // `error_correction::ldpc::rate`).
            Message::LdpcSyndromes {
                code,
                punctured,
                shortened,
                syndromes,
                ..
            } => vec![
                ErrorCorrection(
                    syndromes
                        .iter()
                        .map(|s| (s.len() as u64).saturating_sub(u64::from(*punctured)))
                        .sum(),
                ),
                PublicRandomness(256),
                Control(8 * code.len() as u64 + 32 + 32 * shortened.len() as u64),
            ],
            // Whether Bob's decoder converged depends on his key: one bit per frame.
            Message::LdpcStatus { failed } => vec![Reply(failed.len() as u64)],
            Message::LdpcReveal { values } => vec![ErrorCorrection(values.len() as u64)],
            Message::VerifyTags { keys, tags } => {
                vec![
                    PublicRandomness(64 * keys.len() as u64),
                    Verification(64 * tags.len() as u64),
                ]
            }
            // Bob's verdict per frame depends on his key: one bit per frame.
            Message::VerifyResult { ok } => vec![Reply(ok.len() as u64)],
            Message::AmplifySeed { seed, .. } => {
                vec![Control(128), PublicRandomness(seed.len() as u64)]
            }
            Message::Abort { reason, .. } => vec![Control(8 + 8 * reason.len() as u64)],
            Message::SyncRequest { .. } => vec![Control(128)],
            // Alice's symbols of the window slots: disclosed and removed from the key.
            Message::SyncWindow { bases, values, .. } => {
                vec![Control(64), SyncSample((bases.len() + values.len()) as u64)]
            }
            Message::SyncDone { offsets } => vec![Control(64 * offsets.len() as u64)],
        }
    }

    /// Encode to a frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = WireWriter::new();
        w.u8(WIRE_VERSION);
        match self {
            Message::Hello {
                version_min,
                version_max,
                protocol,
                run_id,
                total_slots,
                settings,
            } => {
                w.u8(1);
                w.u16(*version_min);
                w.u16(*version_max);
                w.bytes(protocol.as_bytes());
                w.fixed(run_id);
                w.u64(*total_slots);
                w.bytes(settings.as_bytes());
            }
            Message::HelloAck {
                version,
                run_id,
                block_bits,
                needs_sync,
            } => {
                w.u8(2);
                w.u16(*version);
                w.fixed(run_id);
                w.u64(*block_bits);
                w.u8(u8::from(*needs_sync));
            }
            Message::SiftAnnounce { slots, bases, last } => {
                w.u8(3);
                w.sorted_u64s(slots);
                w.bits(bases);
                w.u8(u8::from(*last));
            }
            Message::SiftReply {
                matched,
                int0,
                int1,
            } => {
                w.u8(4);
                w.bits(matched);
                w.bits(int0);
                w.bits(int1);
            }
            Message::EstimationRequest {
                seed,
                sample_size,
                sample_bits,
                test_bits,
            } => {
                w.u8(5);
                w.fixed(seed);
                w.u64(*sample_size);
                w.bits(sample_bits);
                w.bits(test_bits);
            }
            Message::EstimationReply {
                sample_errors,
                test_errors,
            } => {
                w.u8(6);
                w.u64(*sample_errors);
                w.varint(test_errors.len() as u64);
                for e in test_errors {
                    w.u64(*e);
                }
            }
            Message::CoincidenceAnnounce {
                slots,
                setting0,
                setting1,
                last,
            } => {
                w.u8(20);
                w.sorted_u64s(slots);
                w.bits(setting0);
                w.bits(setting1);
                w.u8(u8::from(*last));
            }
            Message::CoincidenceReply {
                matched,
                setting0,
                setting1,
            } => {
                w.u8(21);
                w.bits(matched);
                w.bits(setting0);
                w.bits(setting1);
            }
            Message::PostselectAnnounce { slots, last } => {
                w.u8(22);
                w.sorted_u64s(slots);
                w.u8(u8::from(*last));
            }
            Message::PostselectReply { keep } => {
                w.u8(23);
                w.bits(keep);
            }
            Message::KeyConfirm { hash_key, tag } => {
                w.u8(24);
                w.u64(*hash_key);
                w.u64(*tag);
            }
            Message::KeyConfirmResult { ok } => {
                w.u8(25);
                w.u8(u8::from(*ok));
            }
            Message::KeyCommit {
                block,
                commit,
                refill_words,
            } => {
                w.u8(26);
                w.u64(*block);
                w.u8(u8::from(*commit));
                w.varint(u64::from(*refill_words));
            }
            Message::CascadeStart {
                seed,
                block_sizes,
                biconf_clean_rounds,
            } => {
                w.u8(7);
                w.fixed(seed);
                w.varint(block_sizes.len() as u64);
                for &b in block_sizes {
                    w.varint(u64::from(b));
                }
                w.varint(u64::from(*biconf_clean_rounds));
            }
            Message::CascadeTopQuery { pass, frames } => {
                w.u8(8);
                w.u16(*pass);
                w.bits(frames);
            }
            Message::ParityQuery { ranges } => {
                w.u8(9);
                w.varint(ranges.len() as u64);
                for r in ranges {
                    w.varint(u64::from(r.frame));
                    w.varint(u64::from(r.pass));
                    w.varint(u64::from(r.block));
                    w.varint(u64::from(r.start));
                    w.varint(u64::from(r.end - r.start));
                }
            }
            Message::ParityReply { parities } => {
                w.u8(10);
                w.bits(parities);
            }
            Message::CascadeDone => w.u8(11),
            Message::LdpcSyndromes {
                seed,
                code,
                punctured,
                shortened,
                syndromes,
            } => {
                w.u8(16);
                w.fixed(seed);
                w.bytes(code.as_bytes());
                w.varint(u64::from(*punctured));
                w.varint(shortened.len() as u64);
                for &s in shortened {
                    w.varint(u64::from(s));
                }
                w.varint(syndromes.len() as u64);
                for s in syndromes {
                    w.bits(s);
                }
            }
            Message::LdpcStatus { failed } => {
                w.u8(17);
                w.bits(failed);
            }
            Message::LdpcReveal { values } => {
                w.u8(18);
                w.bits(values);
            }
            Message::VerifyTags { keys, tags } => {
                w.u8(12);
                w.varint(keys.len() as u64);
                for &k in keys {
                    w.u64(k);
                }
                w.varint(tags.len() as u64);
                for &t in tags {
                    w.u64(t);
                }
            }
            Message::VerifyResult { ok } => {
                w.u8(13);
                w.bits(ok);
            }
            Message::AmplifySeed {
                input_bits,
                output_bits,
                seed,
            } => {
                w.u8(14);
                w.u64(*input_bits);
                w.u64(*output_bits);
                w.bits(seed);
            }
            Message::Abort { security, reason } => {
                w.u8(15);
                w.u8(u8::from(*security));
                w.bytes(reason.as_bytes());
            }
            Message::SyncRequest { first_slot, slots } => {
                w.u8(40);
                w.u64(*first_slot);
                w.u64(*slots);
            }
            Message::SyncWindow {
                first_slot,
                bases,
                values,
            } => {
                w.u8(41);
                w.u64(*first_slot);
                w.bits(bases);
                w.bits(values);
            }
            Message::SyncDone { offsets } => {
                w.u8(42);
                w.varint(offsets.len() as u64);
                for &o in offsets {
                    w.u64(o);
                }
            }
        }
        w.buf
    }

    /// Decode a frame.
    pub fn decode(frame: &[u8]) -> Result<Message, ProtocolError> {
        let mut r = WireReader::new(frame);
        let version = r.u8()?;
        if version != WIRE_VERSION {
            return Err(ProtocolError::Malformed(format!(
                "wire version {version}, expected {WIRE_VERSION}"
            )));
        }
        let tag = r.u8()?;
        let flag = |r: &mut WireReader| -> Result<bool, ProtocolError> {
            match r.u8()? {
                0 => Ok(false),
                1 => Ok(true),
                v => Err(ProtocolError::Malformed(format!("flag byte {v}"))),
            }
        };
        let string = |r: &mut WireReader| -> Result<String, ProtocolError> {
            String::from_utf8(r.bytes()?.to_vec())
                .map_err(|_| ProtocolError::Malformed("string is not UTF-8".into()))
        };
        let u32_of = |v: u64, what: &str| -> Result<u32, ProtocolError> {
            u32::try_from(v)
                .map_err(|_| ProtocolError::Malformed(format!("{what} {v} exceeds u32")))
        };
        let msg = match tag {
            1 => Message::Hello {
                version_min: r.u16()?,
                version_max: r.u16()?,
                protocol: string(&mut r)?,
                run_id: r.fixed()?,
                total_slots: r.u64()?,
                settings: string(&mut r)?,
            },
            2 => Message::HelloAck {
                version: r.u16()?,
                run_id: r.fixed()?,
                block_bits: r.u64()?,
                needs_sync: flag(&mut r)?,
            },
            3 => Message::SiftAnnounce {
                slots: r.sorted_u64s()?,
                bases: r.bits()?,
                last: flag(&mut r)?,
            },
            4 => Message::SiftReply {
                matched: r.bits()?,
                int0: r.bits()?,
                int1: r.bits()?,
            },
            5 => Message::EstimationRequest {
                seed: r.fixed()?,
                sample_size: r.u64()?,
                sample_bits: r.bits()?,
                test_bits: r.bits()?,
            },
            6 => {
                let sample_errors = r.u64()?;
                let n = r.len(MAX_CLASSES.min(r.remaining() / 8), "test classes")?;
                let test_errors = (0..n).map(|_| r.u64()).collect::<Result<Vec<_>, _>>()?;
                Message::EstimationReply {
                    sample_errors,
                    test_errors,
                }
            }
            20 => Message::CoincidenceAnnounce {
                slots: r.sorted_u64s()?,
                setting0: r.bits()?,
                setting1: r.bits()?,
                last: flag(&mut r)?,
            },
            21 => Message::CoincidenceReply {
                matched: r.bits()?,
                setting0: r.bits()?,
                setting1: r.bits()?,
            },
            22 => Message::PostselectAnnounce {
                slots: r.sorted_u64s()?,
                last: flag(&mut r)?,
            },
            23 => Message::PostselectReply { keep: r.bits()? },
            24 => Message::KeyConfirm {
                hash_key: r.u64()?,
                tag: r.u64()?,
            },
            25 => Message::KeyConfirmResult { ok: flag(&mut r)? },
            26 => Message::KeyCommit {
                block: r.u64()?,
                commit: flag(&mut r)?,
                refill_words: u32_of(r.varint()?, "refill words")?,
            },
            7 => {
                let seed = r.fixed()?;
                let n = r.len(MAX_ITEMS.min(r.remaining()), "block sizes")?;
                let mut block_sizes = Vec::with_capacity(n);
                for _ in 0..n {
                    block_sizes.push(u32_of(r.varint()?, "block size")?);
                }
                let biconf_clean_rounds = u32_of(r.varint()?, "BICONF rounds")?;
                Message::CascadeStart {
                    seed,
                    block_sizes,
                    biconf_clean_rounds,
                }
            }
            8 => Message::CascadeTopQuery {
                pass: r.u16()?,
                frames: r.bits()?,
            },
            9 => {
                let n = r.len(MAX_ITEMS.min(r.remaining()), "ranges")?;
                let mut ranges = Vec::with_capacity(n);
                for _ in 0..n {
                    let frame = u32_of(r.varint()?, "frame")?;
                    let pass = u16::try_from(r.varint()?)
                        .map_err(|_| ProtocolError::Malformed("pass exceeds u16".into()))?;
                    let block = u32_of(r.varint()?, "block")?;
                    let start = u32_of(r.varint()?, "start")?;
                    let len = r.varint()?;
                    let end = u32_of(u64::from(start).saturating_add(len), "end")?;
                    ranges.push(ParityRange {
                        frame,
                        pass,
                        block,
                        start,
                        end,
                    });
                }
                Message::ParityQuery { ranges }
            }
            10 => Message::ParityReply {
                parities: r.bits()?,
            },
            11 => Message::CascadeDone,
            16 => {
                let seed = r.fixed()?;
                let code = string(&mut r)?;
                let punctured = u32_of(r.varint()?, "punctured")?;
                let n = r.len(MAX_ITEMS.min(r.remaining()), "frames")?;
                let shortened = (0..n)
                    .map(|_| r.varint().and_then(|v| u32_of(v, "shortened")))
                    .collect::<Result<Vec<_>, _>>()?;
                let n = r.len(MAX_ITEMS.min(r.remaining()), "syndromes")?;
                let syndromes = (0..n).map(|_| r.bits()).collect::<Result<Vec<_>, _>>()?;
                Message::LdpcSyndromes {
                    seed,
                    code,
                    punctured,
                    shortened,
                    syndromes,
                }
            }
            17 => Message::LdpcStatus { failed: r.bits()? },
            18 => Message::LdpcReveal { values: r.bits()? },
            12 => {
                let n = r.len(MAX_ITEMS.min(r.remaining() / 8), "keys")?;
                let keys = (0..n).map(|_| r.u64()).collect::<Result<Vec<_>, _>>()?;
                let n = r.len(MAX_ITEMS.min(r.remaining() / 8), "tags")?;
                let tags = (0..n).map(|_| r.u64()).collect::<Result<Vec<_>, _>>()?;
                Message::VerifyTags { keys, tags }
            }
            13 => Message::VerifyResult { ok: r.bits()? },
            14 => Message::AmplifySeed {
                input_bits: r.u64()?,
                output_bits: r.u64()?,
                seed: r.bits()?,
            },
            15 => Message::Abort {
                security: flag(&mut r)?,
                reason: string(&mut r)?,
            },
            40 => Message::SyncRequest {
                first_slot: r.u64()?,
                slots: r.u64()?,
            },
            41 => Message::SyncWindow {
                first_slot: r.u64()?,
                bases: r.bits()?,
                values: r.bits()?,
            },
            42 => {
                let n = r.len(MAX_ITEMS.min(r.remaining() / 8), "offsets")?;
                let offsets = (0..n).map(|_| r.u64()).collect::<Result<Vec<_>, _>>()?;
                Message::SyncDone { offsets }
            }
            t => return Err(ProtocolError::Malformed(format!("unknown message tag {t}"))),
        };
        r.finish()?;
        Ok(msg)
    }
}
