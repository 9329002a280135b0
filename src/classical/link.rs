//! The link: every logical stream of a session multiplexed over one ordered, reliable *wire*
//! (a TCP connection between two sites, or an in-process pipe for batch runs), with every
//! frame passing through the authenticator ([`super::auth`]).
//!
//! **Link frame** (inside one wire frame):
//!
//! ```text
//! u8 kind (0 data, 1 keep-alive, 2 close, 3 hello) · u8 flags (1 checkpoint, 2 refill) · u64 seq ·
//! u32 stream · u32 payload length · [u64 refill block] · [u64 tag index] · payload · [16-byte tag]
//! ```
//!
//! Sequence numbers count every frame of a direction from 0 (the hello); a frame whose number
//! is not the next one (dropped, duplicated, reordered or injected) stops the link with an
//! authentication failure at once. Every frame enters the direction's transcript; a checkpoint
//! frame carries the Wegman–Carter tag of the transcript since the previous checkpoint and is
//! delivered (with everything before it) only once the tag verifies. The messages the protocol
//! relies on before committing anything — the session handshake, key confirmation, commit and
//! abort — are checkpoints (see [`super::Message::link_options`]).
//!
//! **Flow control.** Senders queue frames for one writer thread in a bounded queue (a slow wire
//! back-pressures the stages, memory stays bounded); one reader thread verifies and dispatches
//! frames to per-stream queues. The writer sends a keep-alive after `keepalive` of silence;
//! the reader gives up after `peer_timeout` without a frame, with an error that says so.

use super::auth::{AuthPool, AuthReport, Transcript, direction};
use super::transport::{SendOptions, Transport};
use super::{ClassicalChannel, FrameTap, Link};
use crate::error::{ConfigError, Error, ProtocolError, Result, TransportError};
use crate::kernels::Kernels;
use crate::protocol::Role;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Version of the link framing.
pub const LINK_VERSION: u16 = 1;
/// Largest wire frame accepted (a 2^30-bit block's Toeplitz seed is 192 MiB).
pub const MAX_WIRE_FRAME: usize = 256 << 20;
const KIND_DATA: u8 = 0;
const KIND_KEEPALIVE: u8 = 1;
const KIND_CLOSE: u8 = 2;
const KIND_HELLO: u8 = 3;
const KIND_STOP: u8 = 4;
const FLAG_CHECKPOINT: u8 = 1;
const FLAG_REFILL: u8 = 2;
const HEADER_LEN: usize = 1 + 1 + 8 + 4 + 4;
/// How long the writer or reader waits for a pool refill or the peer's hello.
const POOL_WAIT: Duration = Duration::from_secs(20);
/// How long a closing link reads on, waiting for the peer to end its side of the wire.
const LINGER: Duration = Duration::from_secs(3);
/// A closing link stops reading once the peer has been silent this long.
const LINGER_QUIET: Duration = Duration::from_millis(250);

/// Reads wire frames.
pub trait WireRead: Send + 'static {
    /// The next frame; `Ok(None)` at a clean end of the wire; an error after `timeout`
    /// without one.
    fn read_frame(
        &mut self,
        timeout: Duration,
    ) -> std::result::Result<Option<Vec<u8>>, TransportError>;
    /// Whether closing this wire with the peer's bytes unread loses what was sent (a TCP
    /// socket closed so is reset): the link then reads on until the peer ends its side.
    fn needs_graceful_close(&self) -> bool {
        false
    }
}

/// Writes wire frames.
pub trait WireWrite: Send + 'static {
    /// Write one frame.
    fn write_frame(&mut self, frame: &[u8]) -> std::result::Result<(), TransportError>;
    /// Close the wire (the peer's reader sees its end).
    fn shutdown(&mut self) {}
}

/// An in-process wire: two bounded queues of frames.
pub struct MemoryWire {
    rx: Option<Receiver<Vec<u8>>>,
    tx: Option<Sender<Vec<u8>>>,
}

impl MemoryWire {
    /// Two connected ends, each `(reader, writer)`.
    pub fn pair() -> ((MemoryWire, MemoryWire), (MemoryWire, MemoryWire)) {
        let (a_tx, b_rx) = bounded(256);
        let (b_tx, a_rx) = bounded(256);
        let end = |rx, tx| {
            (
                MemoryWire {
                    rx: Some(rx),
                    tx: None,
                },
                MemoryWire {
                    rx: None,
                    tx: Some(tx),
                },
            )
        };
        (end(a_rx, a_tx), end(b_rx, b_tx))
    }
}

impl WireRead for MemoryWire {
    fn read_frame(
        &mut self,
        timeout: Duration,
    ) -> std::result::Result<Option<Vec<u8>>, TransportError> {
        let rx = self.rx.as_ref().ok_or(TransportError::Closed)?;
        match rx.recv_timeout(timeout) {
            Ok(f) => Ok(Some(f)),
            Err(RecvTimeoutError::Disconnected) => Ok(None),
            Err(RecvTimeoutError::Timeout) => Err(TransportError::Timeout(format!(
                "the peer sent nothing for {:.0} s",
                timeout.as_secs_f64()
            ))),
        }
    }
}

impl WireWrite for MemoryWire {
    fn write_frame(&mut self, frame: &[u8]) -> std::result::Result<(), TransportError> {
        let tx = self.tx.as_ref().ok_or(TransportError::Closed)?;
        tx.send(frame.to_vec()).map_err(|_| TransportError::Closed)
    }
    fn shutdown(&mut self) {
        self.tx = None;
    }
}

/// What a party tells the peer when the link starts (authenticated by the first checkpoint).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkSession {
    /// Run id of the party's log (zero when unknown).
    pub run_id: [u8; 8],
    /// The block after the last one this party committed in earlier sessions of the run (0
    /// for a fresh run).
    pub next_block: u64,
}

/// How a link runs.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    /// This party.
    pub role: Role,
    /// Kernels (for the transcript hash).
    pub kernels: Kernels,
    /// Extra one-way delay of every received frame (latency tests; zero normally).
    pub delay: Duration,
    /// A keep-alive frame after this much silence.
    pub keepalive: Duration,
    /// Give up after this long without a frame from the peer.
    pub peer_timeout: Duration,
    /// Frames queued for the writer before senders block.
    pub send_queue: usize,
    /// What to tell the peer about this party's session.
    pub session: LinkSession,
    /// Observer of every sent message frame (audits).
    pub frame_tap: Option<FrameTap>,
    /// Set when the peer asks to stop at the next block boundary.
    pub stop: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl LinkOptions {
    /// Defaults for `role`: no delay, keep-alive every 2 s, 60 s peer timeout.
    pub fn new(role: Role) -> LinkOptions {
        LinkOptions {
            role,
            kernels: Kernels::detect(),
            delay: Duration::ZERO,
            keepalive: Duration::from_secs(2),
            peer_timeout: Duration::from_secs(60),
            send_queue: 64,
            session: LinkSession::default(),
            frame_tap: None,
            stop: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Hello {
    version: u16,
    role: u8,
    pool_id: [u8; 16],
    next_tag: [u64; 2],
    pool_words: u64,
    session: LinkSession,
}

impl Hello {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(2 + 1 + 16 + 16 + 8 + 16);
        v.extend_from_slice(&self.version.to_le_bytes());
        v.push(self.role);
        v.extend_from_slice(&self.pool_id);
        for t in self.next_tag {
            v.extend_from_slice(&t.to_le_bytes());
        }
        v.extend_from_slice(&self.pool_words.to_le_bytes());
        v.extend_from_slice(&self.session.run_id);
        v.extend_from_slice(&self.session.next_block.to_le_bytes());
        v
    }
    fn decode(b: &[u8]) -> Option<Hello> {
        if b.len() != 2 + 1 + 16 + 16 + 8 + 16 {
            return None;
        }
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8"));
        Some(Hello {
            version: u16::from_le_bytes([b[0], b[1]]),
            role: b[2],
            pool_id: b[3..19].try_into().ok()?,
            next_tag: [u64_at(19), u64_at(27)],
            pool_words: u64_at(35),
            session: LinkSession {
                run_id: b[43..51].try_into().ok()?,
                next_block: u64_at(51),
            },
        })
    }
}

/// A parsed link frame.
struct LinkFrame {
    kind: u8,
    flags: u8,
    seq: u64,
    stream: u32,
    refill: Option<u64>,
    tag_index: Option<u64>,
    payload: Vec<u8>,
    tag: Option<[u64; 2]>,
}

fn header_words(
    kind: u8,
    flags: u8,
    seq: u64,
    stream: u32,
    len: usize,
    refill: Option<u64>,
) -> [u64; 4] {
    [
        u64::from(kind) | u64::from(flags) << 8 | u64::from(stream) << 32,
        seq,
        len as u64,
        refill.unwrap_or(u64::MAX),
    ]
}

fn encode_frame(f: &LinkFrame) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN + 16 + f.payload.len() + 16);
    v.push(f.kind);
    v.push(f.flags);
    v.extend_from_slice(&f.seq.to_le_bytes());
    v.extend_from_slice(&f.stream.to_le_bytes());
    v.extend_from_slice(&(f.payload.len() as u32).to_le_bytes());
    if let Some(b) = f.refill {
        v.extend_from_slice(&b.to_le_bytes());
    }
    if let Some(j) = f.tag_index {
        v.extend_from_slice(&j.to_le_bytes());
    }
    v.extend_from_slice(&f.payload);
    if let Some(t) = f.tag {
        v.extend_from_slice(&t[0].to_le_bytes());
        v.extend_from_slice(&t[1].to_le_bytes());
    }
    v
}

/// Decode a link frame as the reader does; a frame that decodes encodes back to the same
/// bytes. For the fuzz targets: returns whether the frame decoded; panics only if the round
/// trip fails (a bug).
pub fn check_link_frame(b: &[u8]) -> bool {
    match decode_frame(b) {
        Some(f) => {
            assert_eq!(encode_frame(&f), b, "link frame round trip");
            true
        }
        None => false,
    }
}

fn decode_frame(b: &[u8]) -> Option<LinkFrame> {
    if b.len() < HEADER_LEN {
        return None;
    }
    let (kind, flags) = (b[0], b[1]);
    if kind > KIND_STOP || flags & !(FLAG_CHECKPOINT | FLAG_REFILL) != 0 {
        return None;
    }
    let seq = u64::from_le_bytes(b[2..10].try_into().ok()?);
    let stream = u32::from_le_bytes(b[10..14].try_into().ok()?);
    let len = u32::from_le_bytes(b[14..18].try_into().ok()?) as usize;
    let mut at = HEADER_LEN;
    let take_u64 = |at: &mut usize| -> Option<u64> {
        let v = u64::from_le_bytes(b.get(*at..*at + 8)?.try_into().ok()?);
        *at += 8;
        Some(v)
    };
    let refill = if flags & FLAG_REFILL != 0 {
        Some(take_u64(&mut at)?)
    } else {
        None
    };
    let tag_index = if flags & FLAG_CHECKPOINT != 0 {
        Some(take_u64(&mut at)?)
    } else {
        None
    };
    let payload = b.get(at..at.checked_add(len)?)?.to_vec();
    at += len;
    let tag = if flags & FLAG_CHECKPOINT != 0 {
        let t0 = take_u64(&mut at)?;
        let t1 = take_u64(&mut at)?;
        Some([t0, t1])
    } else {
        None
    };
    (at == b.len()).then_some(LinkFrame {
        kind,
        flags,
        seq,
        stream,
        refill,
        tag_index,
        payload,
        tag,
    })
}

enum Outgoing {
    Frame {
        stream: u32,
        payload: Vec<u8>,
        opts: SendOptions,
        /// For a checkpoint: told once the frame is tagged and written (or failed), so that the
        /// sender never acts on a commit that did not leave.
        done: Option<Sender<std::result::Result<(), TransportError>>>,
    },
    Stop,
}

/// A stream's inbound queue: the reader thread's end (dropped when the link fails) and the
/// stream's end (taken when the stream is opened).
type Queue = (Option<Sender<Vec<u8>>>, Option<Receiver<Vec<u8>>>);

/// Streams of a link: inbound queues, and why the link ended.
struct Streams {
    inbound: HashMap<u32, Queue>,
    failure: Option<TransportError>,
    /// Why this party stops, when it aborted (sent in the close frame).
    abort: Option<String>,
    /// Frames received since the last verified checkpoint.
    unverified: u64,
}

struct Shared {
    streams: Mutex<Streams>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Streams> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// End the link with `err` (the first reason wins): every stream's receiver sees it.
    fn fail(&self, err: TransportError) {
        let mut s = self.lock();
        if s.failure.is_none() {
            s.failure = Some(err);
        }
        for e in s.inbound.values_mut() {
            e.0 = None;
        }
    }

    fn failure(&self) -> TransportError {
        clone_failure(self.lock().failure.as_ref())
    }

    fn queue(&self, stream: u32) -> Option<Sender<Vec<u8>>> {
        let mut s = self.lock();
        if s.failure.is_some() {
            return None;
        }
        let e = s.inbound.entry(stream).or_insert_with(|| {
            let (tx, rx) = bounded(4096);
            (Some(tx), Some(rx))
        });
        e.0.clone()
    }
}

fn clone_failure(f: Option<&TransportError>) -> TransportError {
    match f {
        None | Some(TransportError::Closed) => TransportError::Closed,
        Some(TransportError::Io(e)) => {
            TransportError::Io(std::io::Error::new(e.kind(), e.to_string()))
        }
        Some(TransportError::AuthenticationFailed(s)) => {
            TransportError::AuthenticationFailed(s.clone())
        }
        Some(TransportError::AuthenticationExhausted(s)) => {
            TransportError::AuthenticationExhausted(s.clone())
        }
        Some(TransportError::Timeout(s)) => TransportError::Timeout(s.clone()),
    }
}

/// One stream's end.
struct StreamTransport {
    stream: u32,
    out: Sender<Outgoing>,
    inbound: Receiver<Vec<u8>>,
    shared: Arc<Shared>,
    tap: Option<(FrameTap, usize)>,
}

impl Transport for StreamTransport {
    fn send_with(
        &mut self,
        frame: Vec<u8>,
        opts: SendOptions,
    ) -> std::result::Result<(), TransportError> {
        if let Some((tap, side)) = &self.tap {
            (tap.0)(*side, self.stream, &frame);
        }
        if self.shared.lock().failure.is_some() {
            return Err(self.shared.failure());
        }
        let (done, wait) = if opts.checkpoint {
            let (tx, rx) = bounded(1);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        self.out
            .send(Outgoing::Frame {
                stream: self.stream,
                payload: frame,
                opts,
                done,
            })
            .map_err(|_| self.shared.failure())?;
        match wait {
            Some(rx) => rx.recv().unwrap_or_else(|_| Err(self.shared.failure())),
            None => Ok(()),
        }
    }
    fn recv(&mut self) -> std::result::Result<Vec<u8>, TransportError> {
        self.inbound.recv().map_err(|_| self.shared.failure())
    }
    fn unverified_frames(&self) -> u64 {
        self.shared.lock().unverified
    }
    fn note_abort(&mut self, reason: &str) {
        self.shared
            .lock()
            .abort
            .get_or_insert_with(|| reason.to_string());
    }
}

/// An authenticated, multiplexed link over a wire.
pub struct MuxLink {
    shared: Arc<Shared>,
    out: Option<Sender<Outgoing>>,
    pool: Arc<AuthPool>,
    peer: LinkSession,
    role: Role,
    tap: Option<FrameTap>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// Set where the wire needs a graceful close (see [`WireRead::needs_graceful_close`]).
    reader_ended: Option<Receiver<()>>,
}

impl MuxLink {
    /// Start a link: send this party's hello, read the peer's, check that they belong together
    /// (roles, versions, the same key pool), align the pool's tag counters, and start the
    /// writer and reader threads.
    pub fn establish(
        mut read: Box<dyn WireRead>,
        mut write: Box<dyn WireWrite>,
        pool: Arc<AuthPool>,
        opts: LinkOptions,
    ) -> Result<MuxLink> {
        let (next_tag, pool_words) = pool.counters();
        let mine = Hello {
            version: LINK_VERSION,
            role: direction(opts.role) as u8,
            pool_id: pool.pool_id(),
            next_tag,
            pool_words,
            session: opts.session.clone(),
        };
        let out_dir = direction(opts.role);
        let in_dir = 1 - out_dir;
        let k = opts.kernels;
        let mut out_t = Transcript::default();
        let mut in_t = Transcript::default();
        let hello_frame = LinkFrame {
            kind: KIND_HELLO,
            flags: 0,
            seq: 0,
            stream: 0,
            refill: None,
            tag_index: None,
            payload: mine.encode(),
            tag: None,
        };
        out_t.absorb(
            &k,
            pool.hash_keys(out_dir),
            &header_words(KIND_HELLO, 0, 0, 0, hello_frame.payload.len(), None),
            &hello_frame.payload,
        );
        write.write_frame(&encode_frame(&hello_frame))?;
        let wait = opts.peer_timeout.min(Duration::from_secs(30));
        let peer_frame = read.read_frame(wait)?.ok_or(TransportError::Closed)?;
        let f = decode_frame(&peer_frame)
            .filter(|f| f.kind == KIND_HELLO && f.seq == 0 && f.flags == 0)
            .ok_or_else(|| {
                TransportError::AuthenticationFailed(
                    "the peer's first frame is not a link hello (not a qkd peer, or a wrong port?)"
                        .into(),
                )
            })?;
        let peer = Hello::decode(&f.payload)
            .ok_or_else(|| TransportError::AuthenticationFailed("malformed link hello".into()))?;
        in_t.absorb(
            &k,
            pool.hash_keys(in_dir),
            &header_words(KIND_HELLO, 0, 0, 0, f.payload.len(), None),
            &f.payload,
        );
        if peer.version != LINK_VERSION {
            return Err(ProtocolError::Disagreement {
                what: "link version",
                detail: format!("peer {}, this build {LINK_VERSION}", peer.version),
            }
            .into());
        }
        if peer.role as usize != in_dir {
            return Err(ConfigError::Mismatch(format!(
                "both ends are {}: one site must run `qkd alice`, the other `qkd bob`",
                opts.role.name()
            ))
            .into());
        }
        if peer.pool_id != pool.pool_id() {
            return Err(ConfigError::Mismatch(
                "the two sites' authentication keys are not a pair (different pool ids): give each site its half of the same `qkd auth-key` output".into(),
            )
            .into());
        }
        pool.sync_counters(peer.next_tag)?;
        let shared = Arc::new(Shared {
            streams: Mutex::new(Streams {
                inbound: HashMap::new(),
                failure: None,
                abort: None,
                unverified: 0,
            }),
        });
        let (out_tx, out_rx) = bounded::<Outgoing>(opts.send_queue.max(1));
        let writer = {
            let (shared, pool, opts) = (shared.clone(), pool.clone(), opts.clone());
            std::thread::Builder::new()
                .name("qkd-link-writer".into())
                .spawn(move || writer_loop(write, out_rx, out_t, shared, pool, opts))
                .expect("spawning the link writer")
        };
        let linger = read.needs_graceful_close();
        if !opts.delay.is_zero() {
            read = delayed(read, opts.delay, opts.peer_timeout);
        }
        let (reader_done, reader_ended) = bounded::<()>(1);
        {
            let (shared, pool, opts) = (shared.clone(), pool.clone(), opts.clone());
            std::thread::Builder::new()
                .name("qkd-link-reader".into())
                .spawn(move || {
                    reader_loop(&mut *read, in_t, shared, pool, opts);
                    drain(&mut *read, LINGER);
                    let _ = reader_done.send(());
                })
                .expect("spawning the link reader");
        }
        Ok(MuxLink {
            shared,
            out: Some(out_tx),
            pool,
            peer: peer.session,
            role: opts.role,
            tap: opts.frame_tap.clone(),
            writer: Some(writer),
            reader_ended: linger.then_some(reader_ended),
        })
    }

    /// What the peer said about its session.
    pub fn peer_session(&self) -> &LinkSession {
        &self.peer
    }

    /// The authentication pool.
    pub fn pool(&self) -> &Arc<AuthPool> {
        &self.pool
    }

    /// Ask the peer to stop at the next block boundary (a signal at this site).
    pub fn request_stop(&self) {
        if let Some(out) = &self.out {
            let _ = out.send(Outgoing::Stop);
        }
    }
}

impl Drop for MuxLink {
    fn drop(&mut self) {
        // The writer sends what is queued, then a close frame, then ends the wire. On a wire
        // that needs it the reader reads on until the peer ends its side too (bounded by
        // `LINGER`): a socket closed with unread bytes is reset, and a reset can discard the
        // close frame, and with it the reason (an authentication alarm) the peer was about to
        // read.
        self.out = None;
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        if let Some(ended) = &self.reader_ended {
            let _ = ended.recv_timeout(LINGER + Duration::from_millis(500));
        }
    }
}

impl Link for MuxLink {
    fn open(&self, id: u32) -> Result<ClassicalChannel> {
        let out = self.out.clone().ok_or(TransportError::Closed)?;
        let inbound = {
            let mut s = self.shared.lock();
            let failed = s.failure.is_some();
            let e = s.inbound.entry(id).or_insert_with(|| {
                let (tx, rx) = bounded(4096);
                (if failed { None } else { Some(tx) }, Some(rx))
            });
            e.1.take()
                .ok_or_else(|| ProtocolError::Malformed(format!("stream {id} opened twice")))?
        };
        Ok(ClassicalChannel::new(Box::new(StreamTransport {
            stream: id,
            out,
            inbound,
            shared: self.shared.clone(),
            tap: self.tap.clone().map(|t| (t, direction(self.role))),
        })))
    }

    fn auth_pool(&self) -> Option<Arc<AuthPool>> {
        Some(self.pool.clone())
    }

    fn unverified_frames(&self) -> u64 {
        self.shared.lock().unverified
    }

    fn auth_report(&self) -> Option<AuthReport> {
        Some(self.pool.report())
    }
}

fn writer_loop(
    mut wire: Box<dyn WireWrite>,
    rx: Receiver<Outgoing>,
    mut t: Transcript,
    shared: Arc<Shared>,
    pool: Arc<AuthPool>,
    opts: LinkOptions,
) {
    let dir = direction(opts.role);
    let keys = pool.hash_keys(dir);
    let k = opts.kernels;
    let mut seq = 0u64;
    let mut send = |kind: u8,
                    stream: u32,
                    payload: Vec<u8>,
                    o: SendOptions|
     -> std::result::Result<(), TransportError> {
        seq += 1;
        if let Some(b) = o.refill {
            // The sender of a commit appends its refill before the frame: every later tag of
            // either direction may use the new pad, on both sides.
            pool.append_refill(b, POOL_WAIT)
                .map_err(|e| TransportError::AuthenticationExhausted(e.to_string()))?;
        }
        let mut flags = 0;
        if o.checkpoint {
            flags |= FLAG_CHECKPOINT;
        }
        if o.refill.is_some() {
            flags |= FLAG_REFILL;
        }
        t.absorb(
            &k,
            keys,
            &header_words(kind, flags, seq, stream, payload.len(), o.refill),
            &payload,
        );
        let (tag_index, tag) = if o.checkpoint {
            let (h, words) = t.finish(&k, keys);
            let (j, pad, _) = pool.reserve(dir, POOL_WAIT).map_err(|e| match e {
                Error::Transport(t) => t,
                e => TransportError::AuthenticationExhausted(e.to_string()),
            })?;
            pool.count_tag(true, words);
            (Some(j), Some([h[0] ^ pad[0], h[1] ^ pad[1]]))
        } else {
            (None, None)
        };
        let frame = LinkFrame {
            kind,
            flags,
            seq,
            stream,
            refill: o.refill,
            tag_index,
            payload,
            tag,
        };
        wire.write_frame(&encode_frame(&frame))
    };
    loop {
        let r = match rx.recv_timeout(opts.keepalive) {
            Ok(Outgoing::Frame {
                stream,
                payload,
                opts,
                done,
            }) => {
                let r = send(KIND_DATA, stream, payload, opts);
                if let Some(d) = done {
                    let _ = d.send(match &r {
                        Ok(()) => Ok(()),
                        Err(e) => Err(clone_failure(Some(e))),
                    });
                }
                r
            }
            Ok(Outgoing::Stop) => send(KIND_STOP, 0, vec![], SendOptions::default()),
            Err(RecvTimeoutError::Timeout) => {
                send(KIND_KEEPALIVE, 0, vec![], SendOptions::default())
            }
            Err(RecvTimeoutError::Disconnected) => {
                // Closing is a checkpoint: the peer learns that nothing was cut off.
                let reason = {
                    let s = shared.lock();
                    match (s.failure.as_ref(), s.abort.as_ref()) {
                        (Some(e), _) => e.to_string().into_bytes(),
                        (None, Some(why)) => why.clone().into_bytes(),
                        (None, None) => Vec::new(),
                    }
                };
                let _ = send(
                    KIND_CLOSE,
                    0,
                    reason,
                    SendOptions {
                        checkpoint: true,
                        refill: None,
                    },
                );
                wire.shutdown();
                return;
            }
        };
        if let Err(e) = r {
            shared.fail(e);
            wire.shutdown();
            // Drain so that senders do not block on a full queue.
            while rx.recv().is_ok() {}
            return;
        }
    }
}

/// Read and discard the peer's frames until its end of the wire, an error, a quiet spell of
/// `LINGER_QUIET` (nothing is left unread), or `linger` in all.
fn drain(wire: &mut dyn WireRead, linger: Duration) {
    let deadline = Instant::now() + linger;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !matches!(wire.read_frame(left.min(LINGER_QUIET)), Ok(Some(_))) {
            return;
        }
    }
}

fn reader_loop(
    wire: &mut dyn WireRead,
    mut t: Transcript,
    shared: Arc<Shared>,
    pool: Arc<AuthPool>,
    opts: LinkOptions,
) {
    let dir = 1 - direction(opts.role);
    let keys = pool.hash_keys(dir);
    let k = opts.kernels;
    let mut expected = 1u64;
    let auth_fail = |s: String| TransportError::AuthenticationFailed(s);
    loop {
        let raw = match wire.read_frame(opts.peer_timeout) {
            Ok(Some(f)) => f,
            Ok(None) => {
                shared.fail(TransportError::Closed);
                return;
            }
            Err(e) => {
                shared.fail(e);
                return;
            }
        };
        let Some(f) = decode_frame(&raw) else {
            shared.fail(auth_fail(format!(
                "frame {expected} is malformed ({} bytes)",
                raw.len()
            )));
            return;
        };
        if f.seq != expected {
            shared.fail(auth_fail(format!(
                "frame {} arrived where frame {expected} was due: a frame was dropped, duplicated, reordered or injected",
                f.seq
            )));
            return;
        }
        expected += 1;
        t.absorb(
            &k,
            keys,
            &header_words(f.kind, f.flags, f.seq, f.stream, f.payload.len(), f.refill),
            &f.payload,
        );
        if let Some(b) = f.refill
            && let Err(e) = pool.append_refill(b, POOL_WAIT)
        {
            shared.fail(TransportError::AuthenticationExhausted(e.to_string()));
            return;
        }
        if let (Some(j), Some(tag)) = (f.tag_index, f.tag) {
            let (h, words) = t.finish(&k, keys);
            let pad = match pool.pad_for(dir, j, POOL_WAIT) {
                Ok((pad, _)) => pad,
                Err(Error::Transport(e)) => {
                    shared.fail(e);
                    return;
                }
                Err(e) => {
                    shared.fail(TransportError::AuthenticationExhausted(e.to_string()));
                    return;
                }
            };
            if [h[0] ^ pad[0], h[1] ^ pad[1]] != tag {
                shared.fail(auth_fail(format!(
                    "the tag of frame {} does not verify: frames since the last checkpoint were modified or injected, or the two sites' authentication keys differ",
                    f.seq
                )));
                return;
            }
            pool.count_tag(false, words);
            shared.lock().unverified = 0;
        } else {
            shared.lock().unverified += 1;
        }
        match f.kind {
            KIND_DATA => {
                let Some(q) = shared.queue(f.stream) else {
                    return;
                };
                if q.send(f.payload).is_err() {
                    // The stream's reader is gone (its stage ended): drop the frame.
                }
            }
            KIND_STOP => {
                if let Some(stop) = &opts.stop {
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
            KIND_CLOSE => {
                let why = String::from_utf8_lossy(&f.payload).to_string();
                shared.fail(if why.is_empty() {
                    TransportError::Closed
                } else if why.contains("authentication") {
                    auth_fail(format!("the peer reports: {why}"))
                } else {
                    TransportError::Closed
                });
                return;
            }
            _ => {}
        }
    }
}

/// A wire whose frames are delivered `delay` after they arrived (latency tests): a thread
/// reads and timestamps every frame as it arrives, so frames in flight together are delayed
/// together, as on a long link.
/// A frame read from the wire (or the end, or an error) and when it arrived.
type Arrival = (
    Instant,
    std::result::Result<Option<Vec<u8>>, TransportError>,
);

struct DelayedWire {
    rx: Receiver<Arrival>,
    delay: Duration,
}

fn delayed(mut inner: Box<dyn WireRead>, delay: Duration, timeout: Duration) -> Box<dyn WireRead> {
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("qkd-link-delay".into())
        .spawn(move || {
            loop {
                let r = inner.read_frame(timeout);
                let end = !matches!(r, Ok(Some(_)));
                if tx.send((Instant::now(), r)).is_err() || end {
                    return;
                }
            }
        })
        .expect("spawning the delay thread");
    Box::new(DelayedWire { rx, delay })
}

impl WireRead for DelayedWire {
    fn read_frame(
        &mut self,
        timeout: Duration,
    ) -> std::result::Result<Option<Vec<u8>>, TransportError> {
        let (arrived, r) = match self.rx.recv_timeout(timeout + self.delay) {
            Ok(x) => x,
            Err(RecvTimeoutError::Disconnected) => return Ok(None),
            Err(RecvTimeoutError::Timeout) => {
                return Err(TransportError::Timeout(format!(
                    "the peer sent nothing for {:.0} s",
                    timeout.as_secs_f64()
                )));
            }
        };
        let due = arrived + self.delay;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        r
    }
}

/// Two parties' links over an in-process wire, authenticated with an ephemeral pool of
/// `pool_words` pad words (the same construction as between two sites).
pub fn in_memory_pair(
    pool_words: usize,
    seed: Option<u64>,
    tap: Option<FrameTap>,
) -> Result<(MuxLink, MuxLink)> {
    let (pa, pb) = AuthPool::ephemeral_pair(pool_words, seed)?;
    let ((ra, wa), (rb, wb)) = MemoryWire::pair();
    let opts = |role| LinkOptions {
        frame_tap: tap.clone(),
        ..LinkOptions::new(role)
    };
    let (oa, ob) = (opts(Role::Alice), opts(Role::Bob));
    let a = std::thread::spawn(move || {
        MuxLink::establish(Box::new(ra), Box::new(wa), Arc::new(pa), oa)
    });
    let b = MuxLink::establish(Box::new(rb), Box::new(wb), Arc::new(pb), ob)?;
    let a = a.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?;
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classical::Message;
    use crate::ledger::LeakageLedger;

    #[test]
    fn frames_round_trip_and_checkpoints_authenticate() {
        let (a, b) = in_memory_pair(1024, Some(1), None).unwrap();
        let mut ca = a.open(7).unwrap();
        let mut cb = b.open(7).unwrap();
        let mut l = LeakageLedger::default();
        for i in 0..50u64 {
            let m = Message::KeyConfirm {
                hash_key: i,
                tag: i * 3,
            };
            ca.send(&m, &mut l).unwrap();
            assert_eq!(cb.recv(&mut l).unwrap(), m);
        }
        // 50 checkpoints each way were tagged and verified.
        assert_eq!(a.pool().report().tags_sent, 50);
        assert_eq!(b.pool().report().tags_verified, 50);
        assert!(b.pool().report().epsilon < 1e-30);
    }

    #[test]
    fn an_authentication_abort_reaches_a_peer_waiting_on_another_stream() {
        let (a, b) = in_memory_pair(1024, Some(1), None).unwrap();
        let (mut a1, _a2) = (a.open(1).unwrap(), a.open(2).unwrap());
        let mut b2 = b.open(2).unwrap();
        let waiter = std::thread::spawn(move || {
            let mut l = LeakageLedger::default();
            b2.recv(&mut l)
        });
        // Alice aborts on stream 1 (say a message there failed to decode before its
        // checkpoint); Bob waits on stream 2 and must learn why, not just that she left.
        let e = Error::Aborted(crate::error::AbortReason::AuthenticationFailed {
            detail: "test".into(),
        });
        a1.abort(&e);
        drop((a1, _a2));
        drop(a);
        let got = waiter.join().unwrap().unwrap_err();
        let got = crate::classical::classify_error(got, 0);
        assert!(
            matches!(
                got,
                Error::Aborted(crate::error::AbortReason::AuthenticationFailed { .. })
            ),
            "{got}"
        );
    }

    #[test]
    fn frames_decode_strictly() {
        let f = LinkFrame {
            kind: KIND_DATA,
            flags: FLAG_CHECKPOINT | FLAG_REFILL,
            seq: 9,
            stream: 3,
            refill: Some(4),
            tag_index: Some(2),
            payload: b"abc".to_vec(),
            tag: Some([1, 2]),
        };
        let e = encode_frame(&f);
        let d = decode_frame(&e).unwrap();
        assert_eq!(
            (d.seq, d.stream, d.refill, d.tag_index, d.tag),
            (9, 3, Some(4), Some(2), Some([1, 2]))
        );
        for cut in 0..e.len() {
            assert!(decode_frame(&e[..cut]).is_none());
        }
        let mut longer = e.clone();
        longer.push(0);
        assert!(decode_frame(&longer).is_none());
    }
}
