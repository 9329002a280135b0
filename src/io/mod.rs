//! Input and output of the engine's files.
//!
//! * [`detection_log`]: the `.qdl` detection log (Bob's detector clicks, or any time-tag stream);
//! * [`prep_log`]: the `.qpl` preparation log (Alice's per-slot basis, value and intensity);
//! * [`header`]: the 64-byte header with JSON metadata both share;
//! * [`file_bytes`]: memory-mapped input with a `read()` fallback;
//! * [`atomic_file`]: output written to a temporary name and renamed on success, so that an
//!   interrupted write never replaces or corrupts what was stored before;
//! * [`outputs`]: the rule every command's outputs follow (no overwrite without `--force`,
//!   never onto an input), checked before any work starts;
//! * [`lock`]: exclusive locks on output folders and key stores.
//!
//! The byte layouts are specified in `docs/formats.md`.

pub mod atomic_file;
pub mod detection_log;
pub mod file_bytes;
pub mod header;
pub mod import;
pub mod lock;
pub mod map_guard;
pub mod outputs;
pub mod prep_log;

pub use atomic_file::AtomicFile;
pub use lock::DirLock;
pub use outputs::{OutputPlan, write_atomic};

/// How a reader waits for a log that is still being written (`--follow`).
#[derive(Debug, Clone)]
pub struct Follow {
    /// Stop waiting (and end as if the log ended) once set.
    pub stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// How often to look for new blocks.
    pub poll: std::time::Duration,
}

impl Follow {
    /// True once a stop was requested.
    pub fn stopped(&self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::Relaxed)
    }
    /// Wait one poll interval.
    pub fn wait(&self) {
        std::thread::sleep(self.poll);
    }
}
pub use detection_log::{DetectionLog, DetectionLogWriter, Record, RecordKind};
pub use file_bytes::FileBytes;
pub use header::{FileHeader, FileKind, RunId};
pub use prep_log::{PrepLog, PrepLogWriter, Symbol};
