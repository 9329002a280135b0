//! Error types, one enum per domain (see ARCHITECTURE.md §2). A leaf module: it depends on
//! nothing else in the crate, so every module can use it without import cycles.
//!
//! A *security abort* is not an error: it is an [`AbortReason`] carried in the run's outcome, so
//! that the binary can distinguish "run completed, no key" (exit 1) from "could not run" (exit 2).

use std::path::PathBuf;

/// Errors in reading or validating an on-disk format (`.qdl`, `.qpl`, key and seed files).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The file does not start with the expected magic bytes.
    #[error("{path}: offset {offset}: bad magic (expected {expected}); not a {kind} file")]
    BadMagic {
        path: PathBuf,
        offset: u64,
        expected: String,
        kind: &'static str,
    },
    /// The file ends before a structure it announces.
    #[error(
        "{path}: offset {offset}: truncated: {what} needs {needed} bytes, only {available} left"
    )]
    Truncated {
        path: PathBuf,
        offset: u64,
        what: &'static str,
        needed: u64,
        available: u64,
    },
    /// A checksum did not match: the bytes were corrupted.
    #[error("{path}: offset {offset}: checksum mismatch in {what} (file corrupted)")]
    Checksum {
        path: PathBuf,
        offset: u64,
        what: &'static str,
    },
    /// A field holds a value the format does not allow.
    #[error("{path}: offset {offset}: invalid field `{field}`: {message}")]
    InvalidField {
        path: PathBuf,
        offset: u64,
        field: &'static str,
        message: String,
    },
    /// The format version is newer than this reader.
    #[error("{path}: unsupported format version {major}.{minor} (this build reads {supported}.x)")]
    UnsupportedVersion {
        path: PathBuf,
        major: u16,
        minor: u16,
        supported: u16,
    },
    /// The JSON metadata block could not be parsed.
    #[error("{path}: offset {offset}: metadata JSON: {message}")]
    Metadata {
        path: PathBuf,
        offset: u64,
        message: String,
    },
}

/// Errors in the configuration of a run (bad parameters).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A parameter is outside its allowed range.
    #[error("invalid parameter `{name}`: {message}")]
    Invalid { name: &'static str, message: String },
    /// Two inputs do not belong together.
    #[error("{0}")]
    Mismatch(String),
}

impl ConfigError {
    /// Shorthand for [`ConfigError::Invalid`].
    pub fn invalid(name: &'static str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            name,
            message: message.into(),
        }
    }
}

/// Errors of the key store and of key delivery (the KME maps them to HTTP status codes).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyStoreError {
    /// Not enough key, or the peer KME cannot be reached: try again later (HTTP 503).
    #[error("{0}")]
    Unavailable(String),
    /// The request cannot be served as asked: an unknown or used key ID, keys of other SAEs
    /// (HTTP 400).
    #[error("{0}")]
    Refused(String),
    /// The store's database failed or holds something it should not (HTTP 503).
    #[error("{path}: key store: {message}")]
    Database { path: PathBuf, message: String },
}

/// Errors of the classical Alice⇄Bob channel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The peer hung up (its side of the run ended, usually because it failed).
    #[error("classical channel closed by the peer")]
    Closed,
    /// I/O on a network transport failed.
    #[error("classical channel I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A frame failed authentication (modified, injected, replayed, reordered or dropped).
    #[error("authentication failed: {0}")]
    AuthenticationFailed(String),
    /// The authentication key pool has no pad left for the next tag.
    #[error("authentication key exhausted: {0}")]
    AuthenticationExhausted(String),
    /// The peer sent nothing for too long, or could not be reached.
    #[error("classical channel timeout: {0}")]
    Timeout(String),
}

/// Violations of the post-processing protocol by the peer (or by a corrupted channel).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A frame could not be decoded into a message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The peer sent a message that does not fit the current protocol step.
    #[error("unexpected message: expected {expected}, got {got}")]
    Unexpected { expected: &'static str, got: String },
    /// The two parties disagree about a public quantity they both computed.
    #[error("parties disagree on {what}: {detail}")]
    Disagreement { what: &'static str, detail: String },
    /// The peer aborted the run with an error (not a security abort).
    #[error("peer failed: {0}")]
    PeerFailed(String),
}

/// A monitor's finding.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Alarm {
    /// Monitor name.
    pub monitor: String,
    /// Deviation from the honest bound, in standard deviations.
    pub sigma: f64,
    /// What was seen against what an honest link shows.
    pub detail: String,
}

impl std::fmt::Display for Alarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({:.1} σ): {}", self.monitor, self.sigma, self.detail)
    }
}

/// Why a run (or a block) produced no key for security reasons. Never an error: the run
/// completed, decided there is no secret key, and says why.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AbortReason {
    /// The estimated key-basis error rate is above the configured threshold.
    QberTooHigh {
        block: u64,
        estimated: f64,
        threshold: f64,
    },
    /// The test-basis (phase) error rate is above the configured threshold.
    PhaseErrorTooHigh {
        block: u64,
        estimated: f64,
        threshold: f64,
    },
    /// A monitor found an eavesdropper's footprint (see [`crate::monitors`]).
    MonitorAlarm { block: u64, alarms: Vec<Alarm> },
    /// The CHSH value is not significantly above 2 (entanglement-based runs).
    BellTestFailed { s_value: f64, lower_bound: f64 },
    /// The peer announced a security abort.
    PeerAborted { message: String },
    /// A classical-channel frame failed authentication.
    AuthenticationFailed { detail: String },
}

impl std::fmt::Display for AbortReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AbortReason::QberTooHigh {
                block,
                estimated,
                threshold,
            } => write!(
                f,
                "block {block}: estimated QBER {:.2} % exceeds the threshold {:.2} % (possible eavesdropping)",
                estimated * 100.0,
                threshold * 100.0
            ),
            AbortReason::PhaseErrorTooHigh {
                block,
                estimated,
                threshold,
            } => write!(
                f,
                "block {block}: test-basis (phase) error rate {:.2} % exceeds the threshold {:.2} % (possible eavesdropping)",
                estimated * 100.0,
                threshold * 100.0
            ),
            AbortReason::MonitorAlarm { block, alarms } => {
                write!(f, "block {block}: monitor alarm (possible eavesdropping): ")?;
                for (i, a) in alarms.iter().enumerate() {
                    if i > 0 {
                        write!(f, "; ")?;
                    }
                    write!(f, "{a}")?;
                }
                Ok(())
            }
            AbortReason::BellTestFailed {
                s_value,
                lower_bound,
            } => write!(
                f,
                "Bell test failed: CHSH S = {s_value:.4}, lower confidence bound {lower_bound:.4} is not above 2 (no entanglement can be certified)"
            ),
            AbortReason::PeerAborted { message } => write!(f, "peer aborted: {message}"),
            AbortReason::AuthenticationFailed { detail } => write!(
                f,
                "ALARM: the classical channel failed authentication ({detail}): a frame was modified, injected, replayed, reordered or dropped, or the pre-shared keys differ; no key from the affected blocks"
            ),
        }
    }
}

/// The library's error type: everything that stops a run from completing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad input file.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Classical channel failure.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Protocol violation.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// Key store or key delivery.
    #[error(transparent)]
    Store(#[from] KeyStoreError),
    /// File-system error, with the path it concerns.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A security abort travelling through the pipeline as control flow (see [`AbortReason`]).
    /// The engine turns it into an aborted outcome, never into an error exit.
    #[error("security abort: {0}")]
    Aborted(AbortReason),
}

impl Error {
    /// An I/O error attached to a path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// True when this error is only a consequence of the peer (or another stage) stopping, so a
    /// more informative root cause should be reported instead.
    pub fn is_secondary(&self) -> bool {
        matches!(self, Error::Transport(TransportError::Closed))
    }
}

/// Result alias for the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;
