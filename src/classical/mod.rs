//! The classical channel between Alice and Bob: typed [`Message`]s over a [`Transport`], with
//! every disclosure entered in the block's [`LeakageLedger`].
//!
//! A run uses several independent logical channels ("streams"), one per protocol stage and per
//! worker, so that stages work on different blocks concurrently. A [`Link`] opens them by
//! number; both parties open the same numbers.
//!
//! Authentication of the channel (Wegman–Carter with pre-shared key) is not part of this
//! build: batch runs keep both parties in one process.

pub mod message;
pub mod transport;
pub mod wire;

pub use message::{Message, ParityRange};
pub use transport::Transport;

use crate::error::{AbortReason, Error, ProtocolError, Result};
use crate::ledger::LeakageLedger;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Traffic counters of one channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStats {
    /// Messages sent.
    pub messages_sent: u64,
    /// Messages received.
    pub messages_received: u64,
    /// Frame bytes sent.
    pub bytes_sent: u64,
    /// Frame bytes received.
    pub bytes_received: u64,
}

impl ChannelStats {
    /// Add another channel's counters.
    pub fn add(&mut self, o: &ChannelStats) {
        self.messages_sent += o.messages_sent;
        self.messages_received += o.messages_received;
        self.bytes_sent += o.bytes_sent;
        self.bytes_received += o.bytes_received;
    }
}

/// A typed, ledger-keeping channel to the peer.
pub struct ClassicalChannel {
    transport: Box<dyn Transport>,
    stats: ChannelStats,
}

impl ClassicalChannel {
    /// Wrap a transport.
    pub fn new(transport: Box<dyn Transport>) -> Self {
        ClassicalChannel {
            transport,
            stats: ChannelStats::default(),
        }
    }

    /// Traffic so far.
    pub fn stats(&self) -> ChannelStats {
        self.stats
    }

    /// Send `msg`, recording its disclosure in `ledger`.
    pub fn send(&mut self, msg: &Message, ledger: &mut LeakageLedger) -> Result<()> {
        for d in msg.disclosures() {
            ledger.record(d);
        }
        let frame = msg.encode();
        self.stats.messages_sent += 1;
        self.stats.bytes_sent += frame.len() as u64;
        self.transport.send(frame)?;
        Ok(())
    }

    /// Send a message that belongs to no block (session setup, aborts).
    pub fn send_unaccounted(&mut self, msg: &Message) -> Result<()> {
        self.send(msg, &mut LeakageLedger::default())
    }

    /// Receive the next message, recording its disclosure in `ledger`. An `Abort` from the peer
    /// becomes [`Error::Aborted`] (security) or [`ProtocolError::PeerFailed`].
    pub fn recv(&mut self, ledger: &mut LeakageLedger) -> Result<Message> {
        let frame = self.transport.recv()?;
        self.stats.messages_received += 1;
        self.stats.bytes_received += frame.len() as u64;
        let msg = Message::decode(&frame)?;
        if let Message::Abort { security, reason } = msg {
            return Err(if security {
                Error::Aborted(AbortReason::PeerAborted { message: reason })
            } else {
                ProtocolError::PeerFailed(reason).into()
            });
        }
        for d in msg.disclosures() {
            ledger.record(d);
        }
        Ok(msg)
    }

    /// Tell the peer this side stops (best effort: the peer may already be gone).
    pub fn abort(&mut self, err: &Error) {
        let msg = match err {
            Error::Aborted(r) => Message::Abort {
                security: true,
                reason: r.to_string(),
            },
            e => Message::Abort {
                security: false,
                reason: e.to_string(),
            },
        };
        let _ = self.transport.send(msg.encode());
    }
}

/// Build an "unexpected message" error.
pub fn unexpected(expected: &'static str, got: &Message) -> Error {
    ProtocolError::Unexpected {
        expected,
        got: got.name().to_string(),
    }
    .into()
}

/// Opens numbered logical channels to the peer.
pub trait Link: Send + Sync {
    /// Open stream `id` (each id at most once per party).
    fn open(&self, id: u32) -> Result<ClassicalChannel>;
}

/// The two ends of every stream not yet opened by both sides, and which sides have closed.
#[derive(Default)]
struct Pending {
    ends: HashMap<
        u32,
        (
            Option<transport::in_memory::InMemoryTransport>,
            Option<transport::in_memory::InMemoryTransport>,
        ),
    >,
    closed: [bool; 2],
}

/// An observer of every frame put on the wire: `(side, stream, frame)` with side 0 for Alice
/// and 1 for Bob. Used by audits that count the disclosed bits independently of the ledger.
#[derive(Clone)]
pub struct FrameTap(pub Arc<FrameObserver>);

/// The function a [`FrameTap`] calls: `(side, stream, frame)`.
pub type FrameObserver = dyn Fn(usize, u32, &[u8]) + Send + Sync;

impl std::fmt::Debug for FrameTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameTap")
    }
}

/// A transport that shows every sent frame to a [`FrameTap`] before sending it.
struct TappedTransport {
    inner: Box<dyn Transport>,
    tap: FrameTap,
    side: usize,
    stream: u32,
}

impl Transport for TappedTransport {
    fn send(&mut self, frame: Vec<u8>) -> std::result::Result<(), crate::error::TransportError> {
        (self.tap.0)(self.side, self.stream, &frame);
        self.inner.send(frame)
    }
    fn recv(&mut self) -> std::result::Result<Vec<u8>, crate::error::TransportError> {
        self.inner.recv()
    }
}

/// One party's end of an in-process link.
pub struct InMemoryLink {
    side: usize,
    pending: Arc<Mutex<Pending>>,
    tap: Option<FrameTap>,
}

impl InMemoryLink {
    /// Two connected links (Alice's, Bob's).
    pub fn pair() -> (InMemoryLink, InMemoryLink) {
        Self::pair_tapped(None)
    }

    /// Two connected links whose sent frames are shown to `tap`.
    pub fn pair_tapped(tap: Option<FrameTap>) -> (InMemoryLink, InMemoryLink) {
        let pending = Arc::new(Mutex::new(Pending::default()));
        (
            InMemoryLink {
                side: 0,
                pending: pending.clone(),
                tap: tap.clone(),
            },
            InMemoryLink {
                side: 1,
                pending,
                tap,
            },
        )
    }
}

/// A party whose link end is dropped (its run ended, perhaps before it opened every stream)
/// closes the streams it never opened, so the peer waiting on one of them sees the channel
/// closed instead of waiting for ever.
impl Drop for InMemoryLink {
    fn drop(&mut self) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.closed[self.side] = true;
        let side = self.side;
        for e in p.ends.values_mut() {
            if side == 0 {
                e.0 = None;
            } else {
                e.1 = None;
            }
        }
    }
}

impl Link for InMemoryLink {
    fn open(&self, id: u32) -> Result<ClassicalChannel> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let peer_closed = p.closed[1 - self.side];
        let side = self.side;
        let entry = p.ends.entry(id).or_insert_with(|| {
            let (a, b) = transport::in_memory::pair();
            // The peer is gone: its end is dropped at once, so this end sees it closed.
            match (peer_closed, side) {
                (true, 0) => (Some(a), None),
                (true, _) => (None, Some(b)),
                _ => (Some(a), Some(b)),
            }
        });
        let end = if self.side == 0 {
            entry.0.take()
        } else {
            entry.1.take()
        };
        let end = match end {
            Some(e) => e,
            None if peer_closed => return Err(crate::error::TransportError::Closed.into()),
            None => {
                return Err(ProtocolError::Malformed(format!("stream {id} opened twice")).into());
            }
        };
        Ok(match &self.tap {
            None => ClassicalChannel::new(Box::new(end)),
            Some(tap) => ClassicalChannel::new(Box::new(TappedTransport {
                inner: Box::new(end),
                tap: tap.clone(),
                side: self.side,
                stream: id,
            })),
        })
    }
}

#[cfg(test)]
mod tests;
