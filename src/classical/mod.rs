//! The classical channel between Alice and Bob: typed [`Message`]s over a [`Transport`], with
//! every disclosure entered in the block's [`LeakageLedger`].
//!
//! A run uses several independent logical channels ("streams"), one per protocol stage and per
//! worker, so that stages work on different blocks concurrently. A [`Link`] opens them by
//! number; both parties open the same numbers.
//!
//! The [`link`] multiplexes the streams over one wire (TCP between two sites, an in-process
//! pipe for batch runs) and passes every frame through the Wegman–Carter authenticator of
//! [`auth`].

pub mod auth;
pub mod faults;
pub mod link;
pub mod message;
pub mod tcp;
pub mod transport;
pub mod wire;

pub use link::{LinkOptions, MuxLink, in_memory_pair};
pub use message::{Message, ParityRange};
pub use transport::{SendOptions, Transport};

use crate::error::{AbortReason, Error, ProtocolError, Result};
use crate::ledger::LeakageLedger;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

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
        self.transport.send_with(frame, msg.link_options())?;
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
            let e = if security {
                Error::Aborted(AbortReason::PeerAborted { message: reason })
            } else {
                ProtocolError::PeerFailed(reason).into()
            };
            return Err(classify_error(e, 0));
        }
        for d in msg.disclosures() {
            ledger.record(d);
        }
        Ok(msg)
    }

    /// Tell the peer this side stops (best effort: the peer may already be gone). A failure
    /// on unauthenticated frames is reported as the authentication alarm it may be.
    pub fn abort(&mut self, err: &Error) {
        let unverified = self.transport.unverified_frames();
        let classified;
        let err = match err {
            Error::Protocol(p) if unverified > 0 => {
                classified = classify_error(Error::Protocol(clone_protocol(p)), unverified);
                &classified
            }
            e => e,
        };
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
        if let Message::Abort { reason, .. } = &msg {
            self.transport.note_abort(reason);
        }
        let _ = self.transport.send_with(msg.encode(), msg.link_options());
    }
}

/// An authentication failure of the link is a security abort with an alarm; so is the peer's
/// report of one, and a protocol failure while `unverified` frames received since the last
/// checkpoint are not yet authenticated (they may have been modified; nothing derived from
/// them is committed).
pub fn classify_error(e: Error, unverified: u64) -> Error {
    match e {
        Error::Transport(crate::error::TransportError::AuthenticationFailed(detail)) => {
            Error::Aborted(AbortReason::AuthenticationFailed { detail })
        }
        Error::Aborted(AbortReason::PeerAborted { message }) if message.starts_with(AUTH_ALARM) => {
            Error::Aborted(AbortReason::AuthenticationFailed {
                detail: format!("the peer reports: {message}"),
            })
        }
        Error::Protocol(
            ref p @ (ProtocolError::Malformed(_)
            | ProtocolError::Unexpected { .. }
            | ProtocolError::Disagreement { .. }
            | ProtocolError::PeerFailed(_)),
        ) if unverified > 0 => Error::Aborted(AbortReason::AuthenticationFailed {
            detail: format!(
                "{unverified} frames since the last verified checkpoint could not be checked before this failure: {p}"
            ),
        }),
        e => e,
    }
}

/// How the report of an authentication failure begins (see [`AbortReason`]'s display).
pub const AUTH_ALARM: &str = "ALARM: the classical channel failed authentication";

/// Build an "unexpected message" error.
pub fn unexpected(expected: &'static str, got: &Message) -> Error {
    ProtocolError::Unexpected {
        expected,
        got: got.name().to_string(),
    }
    .into()
}

fn clone_protocol(p: &ProtocolError) -> ProtocolError {
    match p {
        ProtocolError::Malformed(s) => ProtocolError::Malformed(s.clone()),
        ProtocolError::Unexpected { expected, got } => ProtocolError::Unexpected {
            expected,
            got: got.clone(),
        },
        ProtocolError::Disagreement { what, detail } => ProtocolError::Disagreement {
            what,
            detail: detail.clone(),
        },
        ProtocolError::PeerFailed(s) => ProtocolError::PeerFailed(s.clone()),
    }
}

/// Opens numbered logical channels to the peer.
pub trait Link: Send + Sync {
    /// Open stream `id` (each id at most once per party).
    fn open(&self, id: u32) -> Result<ClassicalChannel>;
    /// The authentication pool, if the link authenticates.
    fn auth_pool(&self) -> Option<Arc<auth::AuthPool>> {
        None
    }
    /// Frames received since the last verified checkpoint (not yet authenticated).
    fn unverified_frames(&self) -> u64 {
        0
    }
    /// The authentication report of this session.
    fn auth_report(&self) -> Option<auth::AuthReport> {
        None
    }
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

#[cfg(test)]
mod tests;
