//! Blocks and their typestates.
//!
//! A block is the unit of the finite-key analysis: a contiguous range of slots whose sifted
//! key-basis bits are estimated, reconciled, verified and amplified together. Its key moves
//! through the typestates [`SiftedKey`] → [`EstimatedKey`] → [`CorrectedKey`] →
//! [`VerifiedKey`] → [`SecretKey`]; only the verification module can make a `VerifiedKey`, and
//! privacy amplification only accepts one, so amplifying an unverified key does not compile.
//! Every block carries its [`LeakageLedger`] and its [`BlockReport`]. A block that cannot yield
//! key (too little data, all frames failed) keeps flowing with an empty key, so that both
//! parties' pipelines stay in step and the report lists it.

use crate::bits::BitVec;
use crate::error_correction::EcStats;
use crate::ledger::LeakageLedger;
use crate::parameter_estimation::finite_key::{DecoyCounts, FiniteKeyBounds};
use crate::parameter_estimation::qber::QberEstimate;
use crate::pipeline::Item;
use crate::privacy_amplification::ToeplitzAlgorithm;
use crate::protocols::KeyBound;
use crate::sifting::{ClassPlanes, SiftedBits};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// A block in the pipeline.
pub struct Block<K> {
    /// Block number (0, 1, 2, …).
    pub id: u64,
    /// The key in its current state.
    pub key: K,
    /// Everything disclosed about this block.
    pub ledger: LeakageLedger,
    /// What happened to it.
    pub report: BlockReport,
}

/// Key data that reports its size.
pub trait KeyState: Send + 'static {
    /// Bits of key material held.
    fn bits(&self) -> u64;
}

impl<K: KeyState> Item for Block<K> {
    fn seq(&self) -> u64 {
        self.id
    }
    fn size_bits(&self) -> u64 {
        self.key.bits()
    }
}

/// After sifting: key-basis and test-basis bits with their intensity classes.
pub struct SiftedKey {
    /// The sifted bits.
    pub bits: SiftedBits,
}

impl KeyState for SiftedKey {
    fn bits(&self) -> u64 {
        self.bits.key.len() as u64
    }
}

/// After parameter estimation: the key bits left after removing the disclosed sample, and the
/// finite-key bounds. Empty when the block cannot yield key.
pub struct EstimatedKey {
    /// Remaining key-basis bits.
    pub bits: BitVec,
    /// Their intensity classes.
    pub classes: ClassPlanes,
    /// Error-rate estimate used to configure error correction.
    pub qber_estimate: f64,
    /// The block's bound (None if the block was dropped before it was computed).
    pub bound: Option<KeyBound>,
}

impl KeyState for EstimatedKey {
    fn bits(&self) -> u64 {
        self.bits.len() as u64
    }
}

/// After error correction: the frames (Bob's corrected) and which ones the protocol gave up on.
pub struct CorrectedKey {
    /// The frames.
    pub frames: Vec<BitVec>,
    /// Frames the reconciler reported as failed (discarded by verification).
    pub failed: Vec<bool>,
    /// Bound carried forward.
    pub bound: Option<KeyBound>,
}

impl KeyState for CorrectedKey {
    fn bits(&self) -> u64 {
        self.frames.iter().map(|f| f.len() as u64).sum()
    }
}

/// After verification: the concatenation of the frames whose tags matched.
pub struct VerifiedKey {
    bits: BitVec,
    discarded_bits: u64,
    bound: Option<KeyBound>,
}

impl VerifiedKey {
    /// Only the verification stage creates verified keys.
    pub(crate) fn new(bits: BitVec, discarded_bits: u64, bound: Option<KeyBound>) -> Self {
        VerifiedKey {
            bits,
            discarded_bits,
            bound,
        }
    }
    /// The verified bits.
    pub fn bits(&self) -> &BitVec {
        &self.bits
    }
    /// Bits of frames that failed and were discarded.
    pub fn discarded_bits(&self) -> u64 {
        self.discarded_bits
    }
    /// The block's bound.
    pub fn bound(&self) -> Option<&KeyBound> {
        self.bound.as_ref()
    }
}

impl KeyState for VerifiedKey {
    fn bits(&self) -> u64 {
        self.bits.len() as u64
    }
}

/// The final secret key of a block. Zeroized on drop; never printed.
pub struct SecretKey {
    bytes: Vec<u8>,
}

impl SecretKey {
    /// Only privacy amplification creates secret keys.
    pub(crate) fn new(bits: &BitVec) -> Self {
        debug_assert_eq!(bits.len() % 8, 0);
        SecretKey {
            bytes: bits.to_bytes_le(),
        }
    }
    /// Remove the first `n` bytes (moved into the authentication pool), zeroizing them.
    pub(crate) fn drop_front(&mut self, n: usize) {
        let n = n.min(self.bytes.len());
        self.bytes[..n].zeroize();
        self.bytes.drain(..n);
    }
    /// Split off the last `n` bytes (key confirmation's one-time pad), leaving the rest.
    pub(crate) fn split_off_tail(&mut self, n: usize) -> SecretKey {
        let at = self.bytes.len().saturating_sub(n);
        SecretKey {
            bytes: self.bytes.split_off(at),
        }
    }
    /// An empty key.
    pub fn empty() -> Self {
        SecretKey { bytes: Vec::new() }
    }
    /// The key bytes (bit i of the key is bit i%8 of byte i/8).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({} bytes, redacted)", self.bytes.len())
    }
}

impl KeyState for SecretKey {
    fn bits(&self) -> u64 {
        self.bytes.len() as u64 * 8
    }
}

/// Error-correction summary of a block.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EcReport {
    /// Method name.
    pub method: String,
    /// Frames.
    pub frames: u64,
    /// Bits reconciled.
    pub bits: u64,
    /// Communication counts.
    pub stats: EcStats,
    /// Bits Bob flipped (Bob only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corrected_errors: Option<u64>,
    /// corrected_errors / bits (Bob only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qber: Option<f64>,
    /// Reconciliation efficiency f = λ_EC / (n·h(qber)) with λ_EC Alice's disclosure only,
    /// the efficiency literature's convention (comparable with published figures; Bob only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub efficiency: Option<f64>,
    /// The efficiency of what is charged against the key: Alice's disclosure plus Bob's
    /// key-dependent replies (Bob only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub efficiency_charged: Option<f64>,
}

/// Verification summary of a block.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct VerificationReport {
    /// Frames checked.
    pub frames: u64,
    /// Frames whose tags matched.
    pub frames_ok: u64,
    /// Hash keys (64-bit tags) per frame.
    pub keys_per_frame: u64,
    /// Bound on the probability that a wrong frame passed.
    pub collision_bound: f64,
    /// Bits of discarded frames.
    pub discarded_bits: u64,
}

/// The CHSH test of an E91 block (Bob's and Alice's view alike: computed from public counts).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ChshReport {
    /// S = E(a₀,b₁) + E(a₀,b₂) + E(a₂,b₁) − E(a₂,b₂) (settings Alice 0, π/4; Bob π/8, −π/8).
    pub s: f64,
    /// One-sided lower confidence bound S − δ_S.
    pub lower_bound: f64,
    /// δ_S = Σ √(2 ln(4/ε_S)/m_xy).
    pub delta: f64,
    /// ε_S.
    pub epsilon: f64,
    /// Correlators and their pair counts.
    pub correlators: [(f64, u64); 4],
}

/// A phase-error estimate from test pairs or a sample (BBM92, Noh09).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PhaseErrorReport {
    /// Bits it rests on.
    pub bits: u64,
    /// Errors among them.
    pub errors: u64,
    /// errors / bits.
    pub observed: f64,
    /// μ of Tomamichel et al. 2012.
    pub mu: f64,
    /// min(observed + μ, ½).
    pub bound: f64,
}

/// Key-confirmation summary of a block.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ConfirmationReport {
    /// Both sides' tags agreed: the block was committed on both sides.
    pub confirmed: bool,
    /// Key bits used as the tag's one-time pad (removed from the key).
    pub pad_bits: u64,
    /// Key bits moved into the authentication pool before delivery.
    #[serde(default)]
    pub auth_refill_bits: u64,
    /// The confirmation's public, fresh hash key: both sides know it, and a block distilled
    /// again (after a rollback) gets another one, so key IDs derived from it name one version
    /// of the block's bits only.
    #[serde(default)]
    pub tag: u64,
}

/// Privacy-amplification summary of a block.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AmplificationReport {
    /// Input length n.
    pub input_bits: u64,
    /// ℓ from the bound (before rounding to whole bytes).
    pub bound_bits: u64,
    /// Output length written (ℓ rounded down to a multiple of 8).
    pub output_bits: u64,
    /// Algorithm used.
    pub algorithm: ToeplitzAlgorithm,
}

/// Whether a block produced key.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum BlockOutcome {
    /// Still in progress (never in a final report).
    #[default]
    Pending,
    /// Secret key produced.
    Key,
    /// No key from this block.
    NoKey {
        /// Why.
        reason: String,
    },
}

/// Everything the report says about one block.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BlockReport {
    /// Block number.
    pub id: u64,
    /// First slot with a detection in the block.
    pub first_slot: u64,
    /// Last slot with a detection in the block.
    pub last_slot: u64,
    /// Detected slots announced.
    pub detections: u64,
    /// Of which multi-clicks.
    pub multi_clicks: u64,
    /// Of which clicks in both bases.
    pub cross_basis_clicks: u64,
    /// Clicks per detector state (Z0, Z1, X0, X1), before squashing (Bob).
    #[serde(default)]
    pub detector_clicks: [u64; 4],
    /// Slots with a click in the Z detectors and in the X detectors (Bob).
    #[serde(default)]
    pub arm_slots: [u64; 2],
    /// Alice's bases at the detections, as her basis-match answers disclosed them (Bob,
    /// BB84; the `announced_bases` monitor).
    #[serde(default)]
    pub announced_bases: crate::monitors::randomness::AnnouncedBases,
    /// Monitor alarms raised on this block.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<crate::monitors::Alarm>,
    /// Sifted key-basis bits.
    pub sifted_key_bits: u64,
    /// Sifted test-basis bits.
    pub sifted_test_bits: u64,
    /// Key-basis sample.
    pub qber_sample: Option<QberEstimate>,
    /// Error rate handed to error correction.
    pub qber_estimate: f64,
    /// Test-basis error rate (all intensities).
    pub test_qber: f64,
    /// Counts entering the finite-key bound.
    pub decoy_counts: Option<DecoyCounts>,
    /// The decoy-state bounds of Lim et al. (BB84).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounds: Option<FiniteKeyBounds>,
    /// The CHSH test (E91).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chsh: Option<ChshReport>,
    /// The phase-error estimate (BBM92, Noh09).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_error: Option<PhaseErrorReport>,
    /// The block's length bound and the proof it comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_bound: Option<KeyBound>,
    /// Status of the block monitors (Bob's side).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub monitors: Vec<crate::monitors::MonitorStatus>,
    /// Error correction.
    pub error_correction: Option<EcReport>,
    /// Verification.
    pub verification: Option<VerificationReport>,
    /// Privacy amplification.
    pub amplification: Option<AmplificationReport>,
    /// Key confirmation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<ConfirmationReport>,
    /// Disclosure by kind.
    pub ledger: LeakageLedger,
    /// Secret bits written.
    pub secret_bits: u64,
    /// Outcome.
    pub outcome: BlockOutcome,
}

impl<K> Block<K> {
    /// The same block with its key replaced (typestate transition).
    pub fn with_key<L>(self, key: L) -> Block<L> {
        Block {
            id: self.id,
            key,
            ledger: self.ledger,
            report: self.report,
        }
    }

    /// Mark the block as producing no key.
    pub fn no_key(&mut self, reason: impl Into<String>) {
        if !matches!(self.report.outcome, BlockOutcome::NoKey { .. }) {
            self.report.outcome = BlockOutcome::NoKey {
                reason: reason.into(),
            };
        }
    }

    /// True when an earlier stage decided this block yields nothing.
    pub fn is_dropped(&self) -> bool {
        matches!(self.report.outcome, BlockOutcome::NoKey { .. })
    }
}
