//! The leakage ledger: every bit disclosed on the classical channel, by kind (docs/security.md
//! lists these kinds together with every ε term of the security statement).
//!
//! The classical channel records each message's disclosure here when it is sent *and* when it is
//! received ([`crate::classical::ClassicalChannel`]), so Alice's and Bob's ledgers of a block are
//! equal by construction and both derive the same secret length. Only the kinds that reveal
//! information about the kept key bits are subtracted from the key:
//!
//! | kind | what | subtracted |
//! |---|---|---|
//! | `sifting` | detected slots, bases, intensity classes | no: independent of the bit values |
//! | `test_basis` | test-basis bit values (for the phase-error estimate) | no: not key bits |
//! | `qber_sample` | key-basis bits disclosed for the error-rate estimate | no: removed from the key |
//! | `sync_sample` | Alice's symbols of the time-synchronisation window | no: those slots are removed from the key |
//! | `error_correction` | Cascade parities (Alice's answers), syndromes, revealed bits | **yes** (λ_EC) |
//! | `reply` | Bob's answers that depend on his key: one error-parity bit per Cascade parity (revealed by his next query), LDPC decoding status, verification verdicts | **yes** |
//! | `verification` | hash tags | **yes** |
//! | `confirmation` | key-confirmation tags, one-time padded with 64 key bits that leave the key | no: padded (the pad bits are removed) |
//! | `public_randomness` | seeds of permutations, samples, hash keys, Toeplitz matrices | no: independent of the key |
//! | `control` | counts, flags and acknowledgements computable from the above | no |

use serde::{Deserialize, Serialize};

/// One message's disclosure, in bits, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disclosure {
    /// Slots, bases, intensity classes.
    Sifting(u64),
    /// Test-basis bit values.
    TestBasis(u64),
    /// Key-basis bits disclosed and discarded.
    QberSample(u64),
    /// Symbols of the time-synchronisation window (slots removed from the key).
    SyncSample(u64),
    /// Error-correction information about the key (λ_EC).
    ErrorCorrection(u64),
    /// Bob's answers that depend on his key (error parities, decoding status, verdicts).
    Reply(u64),
    /// Verification tag bits.
    Verification(u64),
    /// Key-confirmation tags (one-time padded).
    Confirmation(u64),
    /// Random seeds independent of the key.
    PublicRandomness(u64),
    /// Control information (counts, flags, acknowledgements).
    Control(u64),
}

/// Bits disclosed per kind, for one block (or summed over a run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeakageLedger {
    /// Slots, bases and intensity classes.
    pub sifting_bits: u64,
    /// Test-basis bit values.
    pub test_basis_bits: u64,
    /// Key-basis bits disclosed for error estimation (removed from the key).
    pub qber_sample_bits: u64,
    /// Alice's symbols disclosed for time synchronisation (those slots leave the key).
    #[serde(default)]
    pub sync_sample_bits: u64,
    /// Error-correction disclosure λ_EC (subtracted).
    pub error_correction_bits: u64,
    /// Bob's key-dependent answers (subtracted).
    #[serde(default)]
    pub reply_bits: u64,
    /// Verification tags (subtracted).
    pub verification_bits: u64,
    /// Key-confirmation tags, one-time padded (not subtracted: the pad leaves the key).
    #[serde(default)]
    pub confirmation_bits: u64,
    /// Public random seeds.
    pub public_randomness_bits: u64,
    /// Control information.
    pub control_bits: u64,
}

impl LeakageLedger {
    /// Record one disclosure.
    pub fn record(&mut self, d: Disclosure) {
        match d {
            Disclosure::Sifting(n) => self.sifting_bits += n,
            Disclosure::TestBasis(n) => self.test_basis_bits += n,
            Disclosure::QberSample(n) => self.qber_sample_bits += n,
            Disclosure::SyncSample(n) => self.sync_sample_bits += n,
            Disclosure::ErrorCorrection(n) => self.error_correction_bits += n,
            Disclosure::Reply(n) => self.reply_bits += n,
            Disclosure::Verification(n) => self.verification_bits += n,
            Disclosure::Confirmation(n) => self.confirmation_bits += n,
            Disclosure::PublicRandomness(n) => self.public_randomness_bits += n,
            Disclosure::Control(n) => self.control_bits += n,
        }
    }

    /// The bits subtracted from the secret length: λ_EC (Alice's error-correction messages
    /// and Bob's key-dependent replies) + verification tags.
    pub fn subtracted(&self) -> u64 {
        self.error_correction_bits + self.reply_bits + self.verification_bits
    }

    /// λ_EC as charged: Alice's error-correction disclosure plus Bob's replies.
    pub fn error_correction_charged(&self) -> u64 {
        self.error_correction_bits + self.reply_bits
    }

    /// Every disclosed bit of every kind.
    pub fn total(&self) -> u64 {
        self.sifting_bits
            + self.test_basis_bits
            + self.qber_sample_bits
            + self.sync_sample_bits
            + self.error_correction_bits
            + self.reply_bits
            + self.verification_bits
            + self.confirmation_bits
            + self.public_randomness_bits
            + self.control_bits
    }

    /// Add another ledger (run totals).
    pub fn add(&mut self, o: &LeakageLedger) {
        self.sifting_bits += o.sifting_bits;
        self.test_basis_bits += o.test_basis_bits;
        self.qber_sample_bits += o.qber_sample_bits;
        self.sync_sample_bits += o.sync_sample_bits;
        self.error_correction_bits += o.error_correction_bits;
        self.reply_bits += o.reply_bits;
        self.verification_bits += o.verification_bits;
        self.confirmation_bits += o.confirmation_bits;
        self.public_randomness_bits += o.public_randomness_bits;
        self.control_bits += o.control_bits;
    }
}
