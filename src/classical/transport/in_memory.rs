//! In-process transport of one stream: a pair of unbounded crossbeam channels, without the
//! link's multiplexing and authentication. Used by the error-correction benchmark and unit
//! tests that run one protocol phase alone. Sends never block, so a party never waits on the peer's
//! progress to hand over a message. An optional one-way latency simulates a real link.

use super::Transport;
use crate::error::TransportError;
use crossbeam_channel::{Receiver, Sender, unbounded};
use std::time::{Duration, Instant};

/// One end of an in-memory transport.
pub struct InMemoryTransport {
    tx: Sender<(Instant, Vec<u8>)>,
    rx: Receiver<(Instant, Vec<u8>)>,
    latency: Duration,
}

/// Two connected ends.
pub fn pair() -> (InMemoryTransport, InMemoryTransport) {
    pair_with_latency(Duration::ZERO)
}

/// Two connected ends that deliver each frame `latency` after it was sent (frames sent back to
/// back still arrive back to back).
pub fn pair_with_latency(latency: Duration) -> (InMemoryTransport, InMemoryTransport) {
    let (a_tx, b_rx) = unbounded();
    let (b_tx, a_rx) = unbounded();
    (
        InMemoryTransport {
            tx: a_tx,
            rx: a_rx,
            latency,
        },
        InMemoryTransport {
            tx: b_tx,
            rx: b_rx,
            latency,
        },
    )
}

impl Transport for InMemoryTransport {
    fn send_with(
        &mut self,
        frame: Vec<u8>,
        _opts: super::SendOptions,
    ) -> Result<(), TransportError> {
        let due = Instant::now() + self.latency;
        self.tx
            .send((due, frame))
            .map_err(|_| TransportError::Closed)
    }
    fn recv(&mut self) -> Result<Vec<u8>, TransportError> {
        let (due, frame) = self.rx.recv().map_err(|_| TransportError::Closed)?;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        Ok(frame)
    }
}
