//! Thin adapters: an algorithm module + the classical channel + kernels → a pipeline stage.
//! Every stage exists for both roles; Alice's and Bob's instances of a stage talk over their own
//! logical channel ([`StreamId`]) and process the same blocks in the same order.

pub mod amplification;
pub mod confirmation;
pub mod error_correction;
pub mod estimation;
pub mod sifting;
pub mod verification;

use crate::classical::{ChannelStats, ClassicalChannel};
use crate::config::DistillSettings;
use crate::error::Error;
use crate::kernels::Kernels;
use crate::protocol::{DecoyParams, Role};
use crate::protocols::ProtocolKind;
use rand_chacha::ChaCha20Rng;
use std::sync::{Arc, Mutex};

/// Logical channel numbers.
pub struct StreamId;

impl StreamId {
    /// Session handshake.
    pub const HANDSHAKE: u32 = 0;
    /// Sifting.
    pub const SIFTING: u32 = 1;
    /// Parameter estimation.
    pub const ESTIMATION: u32 = 2;
    /// Verification.
    pub const VERIFICATION: u32 = 3;
    /// Privacy amplification.
    pub const AMPLIFICATION: u32 = 4;
    /// Time synchronisation of raw time tags.
    pub const SYNC: u32 = 5;
    /// Key confirmation.
    pub const CONFIRMATION: u32 = 6;
    /// Error-correction worker `w` (lane 0).
    pub fn error_correction(w: usize) -> u32 {
        Self::error_correction_lane(w, 0)
    }
    /// Lane `lane` of error-correction worker `w` (w < 64, lane < 16).
    pub fn error_correction_lane(w: usize, lane: usize) -> u32 {
        100 + 64 * lane as u32 + w as u32
    }
}

/// What every stage of a party shares.
#[derive(Debug, Clone)]
pub struct Session {
    /// This party.
    pub role: Role,
    /// The protocol.
    pub protocol: ProtocolKind,
    /// Shared settings (as agreed in the handshake).
    pub settings: DistillSettings,
    /// Decoy-state source parameters (BB84: from Alice's log, sent to Bob in the handshake).
    pub decoy: Option<DecoyParams>,
    /// Kernels.
    pub kernels: Kernels,
    /// Deterministic protocol randomness for tests (insecure), or `None` for the OS CSPRNG.
    pub deterministic_seed: Option<u64>,
    /// Bob's receiver calibration (for the block monitors; Bob's BB84 log only).
    pub calibration: Option<crate::monitors::Calibration>,
    /// Alarms this party raised before the blocks (Alice's watchdog, Bob's arrival times);
    /// they abort the first block.
    pub run_alarms: Vec<crate::monitors::Alarm>,
    /// The link's authentication pool (refilled from committed keys).
    pub auth: Option<Arc<crate::classical::auth::AuthPool>>,
    /// Where this session resumes a run.
    pub resume: crate::party::Resume,
    /// Stop at the next block boundary.
    pub stop: Arc<std::sync::atomic::AtomicBool>,
}

/// A stage's connection to its peer and its randomness.
pub struct StageIo {
    /// The session.
    pub session: Arc<Session>,
    /// Channel to the peer's instance of this stage.
    pub channel: ClassicalChannel,
    /// Protocol randomness.
    pub rng: ChaCha20Rng,
    /// Where the channel's traffic counters go when the stage ends.
    pub traffic: Arc<Mutex<ChannelStats>>,
}

impl Drop for StageIo {
    fn drop(&mut self) {
        self.traffic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(&self.channel.stats());
    }
}

impl StageIo {
    /// Tell the peer that this stage stops because of `err`.
    pub fn abort_peer(&mut self, err: &Error) {
        // A peer that already stopped needs no notice, and an abort the peer announced must not
        // be echoed back.
        if !err.is_secondary()
            && !matches!(
                err,
                Error::Aborted(crate::error::AbortReason::PeerAborted { .. })
            )
        {
            self.channel.abort(err);
        }
    }
}
