//! In-process transport: a pair of unbounded crossbeam channels. Used for batch runs (both
//! parties in one process) and tests. Sends never block, so a party never waits on the peer's
//! progress to hand over a message.

use super::Transport;
use crate::error::TransportError;
use crossbeam_channel::{Receiver, Sender, unbounded};

/// One end of an in-memory transport.
pub struct InMemoryTransport {
    tx: Sender<Vec<u8>>,
    rx: Receiver<Vec<u8>>,
}

/// Two connected ends.
pub fn pair() -> (InMemoryTransport, InMemoryTransport) {
    let (a_tx, b_rx) = unbounded();
    let (b_tx, a_rx) = unbounded();
    (
        InMemoryTransport { tx: a_tx, rx: a_rx },
        InMemoryTransport { tx: b_tx, rx: b_rx },
    )
}

impl Transport for InMemoryTransport {
    fn send(&mut self, frame: Vec<u8>) -> Result<(), TransportError> {
        self.tx.send(frame).map_err(|_| TransportError::Closed)
    }
    fn recv(&mut self) -> Result<Vec<u8>, TransportError> {
        self.rx.recv().map_err(|_| TransportError::Closed)
    }
}
