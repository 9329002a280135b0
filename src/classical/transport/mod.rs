//! Transports carry opaque frames between the two parties.

pub mod in_memory;

use crate::error::TransportError;

/// A bidirectional, ordered, reliable frame transport.
pub trait Transport: Send {
    /// Send one frame.
    fn send(&mut self, frame: Vec<u8>) -> Result<(), TransportError>;
    /// Receive the next frame (blocking).
    fn recv(&mut self) -> Result<Vec<u8>, TransportError>;
}
