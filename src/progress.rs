//! Progress reporting seam: the library reports, the binary draws (indicatif on a terminal,
//! nothing when piped). Implementations must be cheap and thread-safe.

/// Receives progress of long work.
pub trait Progress: Sync {
    /// A phase named `phase` starts with `total` units of work.
    fn start(&self, phase: &str, total: u64);
    /// `n` more units are done.
    fn inc(&self, n: u64);
    /// The phase is over.
    fn finish(&self);
}

/// Progress that shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: u64) {}
    fn inc(&self, _: u64) {}
    fn finish(&self) {}
}
