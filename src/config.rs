//! Settings of a distillation run. Alice sends hers to Bob in the session handshake; Bob
//! refuses to run with different settings.

use crate::error::ConfigError;
use serde::{Deserialize, Serialize};

/// Reconciliation protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ReconciliationMethod {
    /// Cascade, original four passes (Brassard–Salvail 1993).
    #[default]
    Cascade,
    /// Rate-adaptive QC-LDPC with blind retries.
    Ldpc,
}

impl ReconciliationMethod {
    /// Parse a CLI name.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        match s {
            "cascade" => Ok(ReconciliationMethod::Cascade),
            "ldpc" => Ok(ReconciliationMethod::Ldpc),
            other => Err(ConfigError::invalid(
                "reconciliation",
                format!("unknown method `{other}` (known: cascade, ldpc)"),
            )),
        }
    }
}

/// Settings that both parties must share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillSettings {
    /// Target sifted key-basis bits per block (the finite-key and privacy-amplification unit).
    /// Blocks hold at least this many bits; a remainder smaller than one block joins the last.
    /// 0 means "choose from the input" ([`auto_block_bits`]), resolved before a run starts.
    pub block_bits: u64,
    /// Error-correction frame length (Cascade).
    pub ec_frame_bits: u64,
    /// Cascade variant.
    #[serde(default)]
    pub cascade_variant: crate::error_correction::cascade::CascadeVariant,
    /// LDPC code length (a catalog length).
    #[serde(default = "default_ldpc_code_bits")]
    pub ldpc_code_bits: u64,
    /// Efficiency the first LDPC attempt aims at.
    #[serde(default = "default_ldpc_efficiency")]
    pub ldpc_efficiency: f64,
    /// Blind LDPC retries.
    #[serde(default = "default_ldpc_retries")]
    pub ldpc_retries: u32,
    /// Reconciliation protocol.
    pub reconciliation: ReconciliationMethod,
    /// Secrecy parameter ε_sec.
    pub epsilon_sec: f64,
    /// Correctness parameter ε_cor.
    pub epsilon_cor: f64,
    /// Abort when the estimated key-basis or test-basis error rate exceeds this.
    pub max_qber: f64,
    /// Fraction of sifted key bits disclosed to estimate the error rate (0: use the test basis).
    pub qber_sample_fraction: f64,
    /// Error-correction workers (blocks in flight).
    pub ec_workers: usize,
    /// Lanes of one error-correction worker: the frames of a block are split into this many
    /// contiguous groups, reconciled at the same time over their own channels (both cores
    /// work on one block).
    #[serde(default = "default_ec_lanes")]
    pub ec_lanes: usize,
    /// Detections per sifting round.
    pub sift_chunk: usize,
    /// Sifting announcements kept in flight ahead of the replies (hides the round-trip time).
    #[serde(default = "default_sift_window")]
    pub sift_window: usize,
    /// Capacity of the queues between stages, in blocks.
    pub queue_capacity: usize,
    /// Bits of every committed block key moved into the authentication pool before delivery
    /// (0: none; two-site sessions refill their pre-shared pool this way).
    #[serde(default)]
    pub auth_refill_bits: u64,
    /// The logs may still be growing: wait for their next blocks (until the log's end, or a
    /// stop request), and distill every block as soon as it is full (the last, partial block
    /// of the run is distilled on its own instead of joining the one before).
    #[serde(default)]
    pub follow: bool,
}

/// Largest block: the largest Toeplitz input ([`crate::privacy_amplification::MAX_INPUT_BITS`]).
pub const MAX_BLOCK_BITS: u64 = 1 << 30;

/// The block size chosen when none is given, from the expected number of sifted key-basis
/// bits in the input: the whole input as one block (the next power of two above it, since a
/// remainder smaller than a block joins the last one), between 2^20 and 2^27 bits. Larger
/// blocks shrink the finite-size penalty (at 2 % QBER the secret fraction is ≈ 0.56 of the
/// asymptotic value at 10^6 bits and ≈ 0.67 at 10^8, Lim et al. 2014) and the additive-FFT
/// Toeplitz hash handles 2^27-bit blocks in ≈ 1 s per core (PERFORMANCE.md); inputs beyond
/// 2^27 sifted bits are cut into 2^27-bit blocks so that memory and latency stay bounded.
pub fn auto_block_bits(expected_sifted_bits: u64) -> u64 {
    expected_sifted_bits
        .max(1)
        .next_power_of_two()
        .clamp(1 << 20, 1 << 27)
}

fn default_sift_window() -> usize {
    16
}
fn default_ec_lanes() -> usize {
    2
}
fn default_ldpc_code_bits() -> u64 {
    102_400
}
fn default_ldpc_efficiency() -> f64 {
    1.1
}
fn default_ldpc_retries() -> u32 {
    3
}

impl Default for DistillSettings {
    fn default() -> Self {
        DistillSettings {
            block_bits: 0,
            ec_frame_bits: 1 << 16,
            cascade_variant: Default::default(),
            ldpc_code_bits: default_ldpc_code_bits(),
            ldpc_efficiency: default_ldpc_efficiency(),
            ldpc_retries: default_ldpc_retries(),
            reconciliation: ReconciliationMethod::Cascade,
            epsilon_sec: 1e-10,
            epsilon_cor: 1e-15,
            max_qber: 0.11,
            qber_sample_fraction: 0.01,
            ec_workers: 2,
            ec_lanes: default_ec_lanes(),
            sift_chunk: 1 << 16,
            sift_window: default_sift_window(),
            queue_capacity: 2,
            auth_refill_bits: 0,
            follow: false,
        }
    }
}

impl DistillSettings {
    /// The reconciliation protocol's name.
    pub fn reconciliation_name(&self) -> &'static str {
        match self.reconciliation {
            ReconciliationMethod::Cascade => "Cascade",
            ReconciliationMethod::Ldpc => "LDPC",
        }
    }

    /// Check ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let unit = |name: &'static str, v: f64| {
            if v > 0.0 && v < 1.0 {
                Ok(())
            } else {
                Err(ConfigError::invalid(name, format!("{v} must be in (0, 1)")))
            }
        };
        unit("epsilon-sec", self.epsilon_sec)?;
        unit("epsilon-cor", self.epsilon_cor)?;
        if !(self.max_qber > 0.0 && self.max_qber <= 0.5) {
            return Err(ConfigError::invalid(
                "max-qber",
                format!("{} must be in (0, 0.5]", self.max_qber),
            ));
        }
        if !(0.0..0.5).contains(&self.qber_sample_fraction) {
            return Err(ConfigError::invalid(
                "qber-sample",
                format!("{} must be in [0, 0.5)", self.qber_sample_fraction),
            ));
        }
        if self.block_bits != 0 && !(1024..=MAX_BLOCK_BITS).contains(&self.block_bits) {
            return Err(ConfigError::invalid(
                "pa-block-bits",
                format!("{} must be in [1024, 2^30] (or auto)", self.block_bits),
            ));
        }
        if self.ec_frame_bits < 64 || self.ec_frame_bits > u32::MAX as u64 {
            return Err(ConfigError::invalid(
                "ec-frame-bits",
                format!("{} must be in [64, 2^32)", self.ec_frame_bits),
            ));
        }
        if !(1.0..=2.0).contains(&self.ldpc_efficiency) {
            return Err(ConfigError::invalid(
                "ldpc-efficiency",
                format!("{} must be in [1, 2]", self.ldpc_efficiency),
            ));
        }
        if self.reconciliation == ReconciliationMethod::Ldpc
            && !crate::error_correction::ldpc::catalog::lengths()
                .contains(&(self.ldpc_code_bits as usize))
        {
            return Err(ConfigError::invalid(
                "ldpc-code-bits",
                format!(
                    "{} is not a built-in code length {:?}",
                    self.ldpc_code_bits,
                    crate::error_correction::ldpc::catalog::lengths()
                ),
            ));
        }
        if self.ec_workers == 0 || self.ec_workers > 64 {
            return Err(ConfigError::invalid(
                "threads",
                format!("{} EC workers (1..=64)", self.ec_workers),
            ));
        }
        if self.ec_lanes == 0 || self.ec_lanes > 16 {
            return Err(ConfigError::invalid(
                "ec-lanes",
                format!("{} lanes per EC worker (1..=16)", self.ec_lanes),
            ));
        }
        if self.sift_chunk == 0 || self.queue_capacity == 0 {
            return Err(ConfigError::invalid("sift-chunk/queue", "must be ≥ 1"));
        }
        Ok(())
    }
}
