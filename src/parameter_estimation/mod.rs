//! Parameter estimation: the error rate of the key basis from a disclosed random sample, the
//! test-basis statistics per intensity class, and the finite-key bound they feed.

pub mod finite_key;
pub mod qber;

use crate::config::DistillSettings;
use crate::monitors::Calibration;
use crate::protocol::{DecoyParams, Role};
use crate::protocols::KeyBound;
use qber::QberEstimate;

/// Fewest bits an error rate must rest on to trigger a security abort (on fewer, the
/// finite-key bound alone decides, and it yields no key from so little data).
pub const MIN_ABORT_SAMPLE: u64 = 100;

/// The public numbers of one block's estimation, the same on both sides once the estimation
/// exchange is over: what every protocol's assessment works from.
#[derive(Debug, Clone)]
pub struct Estimation<'a> {
    /// This party.
    pub role: Role,
    /// Block number.
    pub block: u64,
    /// Session settings.
    pub settings: &'a DistillSettings,
    /// Decoy-state source parameters (BB84).
    pub decoy: Option<&'a DecoyParams>,
    /// Bob's receiver calibration (Bob's BB84 side).
    pub calibration: Option<&'a Calibration>,
    /// Key bits left after the sample was removed.
    pub key_bits: u64,
    /// Of which per class (intensity classes of BB84; all in class 0 otherwise).
    pub key_class_sizes: [u64; 3],
    /// Test bits per class (the protocol's test classes).
    pub test_sizes: Vec<u64>,
    /// Test errors per class.
    pub test_errors: Vec<u64>,
    /// The disclosed key sample.
    pub sample: QberEstimate,
}

/// A protocol's verdict on a block: its length bound, and the error rate error correction is
/// configured with.
#[derive(Debug, Clone, Copy)]
pub struct Assessed {
    /// The bound.
    pub bound: KeyBound,
    /// Public error-rate estimate for error correction.
    pub qber_for_ec: f64,
}
