//! Transports carry opaque frames between the two parties.

pub mod in_memory;

use crate::error::TransportError;

/// How the link treats a frame (see [`crate::classical::link`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendOptions {
    /// Carry an authentication tag over everything sent since the previous checkpoint; the
    /// peer delivers the frame only once the tag verifies.
    pub checkpoint: bool,
    /// Refill the authentication pool with the words registered for this block, at this point
    /// of the frame order, on both sides.
    pub refill: Option<u64>,
}

/// A bidirectional, ordered, reliable frame transport.
pub trait Transport: Send {
    /// Send one frame with link options.
    fn send_with(&mut self, frame: Vec<u8>, opts: SendOptions) -> Result<(), TransportError>;
    /// Send one frame.
    fn send(&mut self, frame: Vec<u8>) -> Result<(), TransportError> {
        self.send_with(frame, SendOptions::default())
    }
    /// Receive the next frame (blocking).
    fn recv(&mut self) -> Result<Vec<u8>, TransportError>;
    /// Frames received on the link since its last verified authentication checkpoint.
    fn unverified_frames(&self) -> u64 {
        0
    }
    /// Record why this party stops (the text of its abort message), for a transport that
    /// tells the peer when it closes: the reason then reaches the peer even where the peer
    /// waits on another stream than the one the abort message went to.
    fn note_abort(&mut self, _reason: &str) {}
}
