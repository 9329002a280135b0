//! Error correction (information reconciliation) behind the [`Reconciler`] trait.
//!
//! A reconciler runs one party's side of a protocol over the frames of one block, talking to
//! the peer through the block's classical channel; every disclosure is entered in the ledger by
//! the channel. Alice's frames are the reference; Bob's are corrected in place. A frame the
//! protocol knows it could not correct is [`FrameOutcome::Failed`] (counted and discarded, not an
//! error); residual errors the protocol cannot see are caught by verification.

pub mod cascade;
pub mod ldpc;
pub mod simulation;

use crate::bits::BitVec;
use crate::classical::ClassicalChannel;
use crate::error::Result;
use crate::kernels::Kernels;
use crate::ledger::LeakageLedger;
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

/// What Bob knows about a frame after reconciliation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameOutcome {
    /// The protocol finished; `flipped` bits were changed.
    Corrected {
        /// Bits Bob flipped.
        flipped: u64,
    },
    /// The protocol gave up on this frame.
    Failed,
}

/// Communication and work counts of one reconciliation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcStats {
    /// Request/answer round trips.
    pub round_trips: u64,
    /// Messages sent and received by this party.
    pub messages: u64,
    /// Decoder iterations summed over frames and attempts (LDPC, Bob).
    #[serde(default)]
    pub decoder_iterations: u64,
    /// Bits revealed by blind retries (LDPC).
    #[serde(default)]
    pub revealed_bits: u64,
}

/// What a reconciler needs besides the frames.
pub struct EcContext<'a> {
    /// Channel to the peer's reconciler for this block.
    pub channel: &'a mut ClassicalChannel,
    /// The block's ledger.
    pub ledger: &'a mut LeakageLedger,
    /// Kernels.
    pub kernels: &'a Kernels,
    /// Estimated error rate (from parameter estimation; public).
    pub qber_estimate: f64,
    /// This party's protocol randomness (Alice draws public seeds from it).
    pub rng: &'a mut ChaCha20Rng,
}

/// One party's side of a reconciliation protocol.
pub trait Reconciler: Send {
    /// Name for reports.
    fn name(&self) -> &'static str;
    /// How a block of `n` key bits at error rate `qber` is cut into frames (both parties call
    /// this with the same public arguments).
    fn frame_lengths(&self, n: usize, qber: f64) -> Vec<usize>;
    /// Alice's side: answer for her frames; returns which frames failed (known to both).
    fn reconcile_alice(
        &mut self,
        ctx: &mut EcContext<'_>,
        frames: &[BitVec],
    ) -> Result<(Vec<bool>, EcStats)>;
    /// Bob's side: correct his frames in place.
    fn reconcile_bob(
        &mut self,
        ctx: &mut EcContext<'_>,
        frames: &mut [BitVec],
    ) -> Result<(Vec<FrameOutcome>, EcStats)>;
}

/// Split `n` bits into frames of `frame_bits`; a last piece shorter than half a frame joins the
/// previous one. Returns the frame lengths.
pub fn frame_lengths(n: usize, frame_bits: usize) -> Vec<usize> {
    let frame_bits = frame_bits.max(1);
    if n == 0 {
        return vec![];
    }
    let mut v = vec![frame_bits; n / frame_bits];
    let rest = n % frame_bits;
    if rest > 0 {
        if rest < frame_bits / 2 && !v.is_empty() {
            *v.last_mut().unwrap() += rest;
        } else {
            v.push(rest);
        }
    }
    v
}

/// Reconciliation efficiency f = leaked / (n·h(Q)) (Elkouss et al. QIC 11 (2011) Eq. 2);
/// `None` when there were no errors.
pub fn efficiency(leaked_bits: u64, n: u64, qber: f64) -> Option<f64> {
    let h = crate::parameter_estimation::finite_key::binary_entropy(qber);
    if n == 0 || h <= 0.0 {
        None
    } else {
        Some(leaked_bits as f64 / (n as f64 * h))
    }
}
