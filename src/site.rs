//! One site of a two-site deployment: a [`Party`] over an authenticated TCP link, running
//! session after session until its log is distilled.
//!
//! * **Durable progress.** The site's key file (`alice.key` / `bob.key`, mode 0600) grows by
//!   each committed block (written and fsynced before the commit is recorded); the state file
//!   next to it (`NAME.session.json`, written atomically) records the run and every committed
//!   block (id, last slot, bytes).
//! * **Resume.** A session that ends early (dropped connection, peer killed, this process
//!   killed and restarted) is followed by a new one that resumes from the last block committed
//!   on **both** sides: each side announces its next block in the link hello; after the session
//!   handshake has authenticated that, the side ahead rolls back the blocks the other never
//!   committed (its key file is truncated to the agreed point, the authentication pool's refills
//!   of those blocks dropped). No block is lost and none is delivered twice.
//! * **Stop.** A stop request (SIGINT/SIGTERM at either site) ends the announcements at the next
//!   chunk: the blocks in flight are finished and committed, and both sites exit 0 with what
//!   was committed; the run can be resumed later.
//! * **Faults.** The connecting side retries with backoff; the listening side waits for the
//!   peer again; both give up after `connect_timeout` without a peer, or after `max_sessions`
//!   sessions, with an error that says so. Security aborts (including authentication alarms)
//!   end the run: no retry.

use crate::block::{BlockOutcome, BlockReport, SecretKey};
use crate::classical::auth::{AuthPool, AuthReport};
use crate::classical::link::{LinkOptions, LinkSession, MuxLink};
use crate::classical::tcp;
use crate::config::DistillSettings;
use crate::engine::SecurityAccount;
use crate::error::{AbortReason, ConfigError, Error, FormatError, Result, TransportError};
use crate::kernels::Kernels;
use crate::keystore::KeySink;
use crate::ledger::LeakageLedger;
use crate::party::{Party, PartyConfig, PartyInput, Resume};
use crate::progress::Progress;
use crate::protocol::Role;
use crate::protocols::ProtocolKind;
use serde::{Deserialize, Serialize};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How a site reaches its peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Wait for the peer on this address.
    Listen(String),
    /// Connect to the peer at this address.
    Connect(String),
}

/// Options of a site.
#[derive(Debug, Clone)]
pub struct SiteOptions {
    /// Alice or Bob.
    pub role: Role,
    /// The site's log.
    pub log: PathBuf,
    /// Listen or connect.
    pub endpoint: Endpoint,
    /// This site's half of the pre-shared authentication key.
    pub auth_key: PathBuf,
    /// Directory of the key file and its state (and of the pipeline's work files).
    pub out_dir: PathBuf,
    /// Put the keys into this key store instead of a key file (docs/keys.md).
    pub store: Option<PathBuf>,
    /// Settings (negotiated with the peer).
    pub settings: DistillSettings,
    /// Deterministic protocol randomness (tests only; insecure).
    pub deterministic_seed: Option<u64>,
    /// Kernels.
    pub kernels: Kernels,
    /// Time synchronisation options (Bob's raw time tags).
    pub sync: crate::sync::SyncOptions,
    /// Start the run anew, replacing an earlier key file and state of this directory.
    pub fresh: bool,
    /// Give up after this long without reaching the peer.
    pub connect_timeout: Duration,
    /// Give up a session after this long without a frame from the peer.
    pub peer_timeout: Duration,
    /// Extra one-way delay of every received frame (latency measurements).
    pub link_delay: Duration,
    /// Largest number of sessions (the first one and the resumed ones).
    pub max_sessions: u32,
    /// Set to stop at the next block boundary (signals).
    pub stop: Arc<AtomicBool>,
}

/// One committed block, as the state file records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommittedBlock {
    /// Block id.
    pub block: u64,
    /// Last slot of the block.
    pub last_slot: u64,
    /// Key bytes.
    pub bytes: u64,
    /// The verification collision bound of the block.
    pub collision_bound: f64,
    /// The block's public confirmation tag (names this version of the block's key).
    #[serde(default)]
    pub tag: u64,
}

/// The state file of a site's run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteState {
    /// Run id.
    pub run_id: String,
    /// Protocol.
    pub protocol: ProtocolKind,
    /// The whole log was distilled.
    pub complete: bool,
    /// Committed blocks, in order.
    pub blocks: Vec<CommittedBlock>,
}

impl SiteState {
    /// Bytes of key in the key file.
    pub fn key_bytes(&self) -> u64 {
        self.blocks.iter().map(|b| b.bytes).sum()
    }
    /// The block after the last committed one.
    pub fn next_block(&self) -> u64 {
        self.blocks.last().map_or(0, |b| b.block + 1)
    }
    /// Where a session resumes if both sides agree on `next_block`.
    pub fn resume_at(&self, next_block: u64) -> Resume {
        let last = self.blocks.iter().rev().find(|b| b.block < next_block);
        Resume {
            first_block: next_block,
            start_slot: last.map_or(0, |b| b.last_slot + 1),
        }
    }
}

/// A site's key file and its state: the key sink of every session of the run.
pub struct SiteKeyFile {
    path: PathBuf,
    state_path: PathBuf,
    file: std::fs::File,
    state: SiteState,
    _lock: crate::io::DirLock,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

impl SiteKeyFile {
    /// Open (resume) or create the key file of `role` in `dir` for the run `run_id`.
    pub fn open(
        dir: &Path,
        role: Role,
        run_id: &str,
        protocol: ProtocolKind,
        fresh: bool,
    ) -> Result<SiteKeyFile> {
        let lock = crate::io::DirLock::acquire_as(
            dir,
            &format!(".{}.lock", role.name()),
            &format!("{} site", role.name()),
        )?;
        let path = dir.join(format!("{}.key", role.name()));
        let state_path = dir.join(format!("{}.session.json", role.name()));
        let existing: Option<SiteState> = if state_path.exists() && !fresh {
            let text = std::fs::read(&state_path).map_err(io(&state_path))?;
            Some(
                serde_json::from_slice(&text).map_err(|e| FormatError::Metadata {
                    path: state_path.clone(),
                    offset: 0,
                    message: e.to_string(),
                })?,
            )
        } else {
            None
        };
        let state = match existing {
            Some(s) if s.run_id == run_id => s,
            Some(s) => {
                return Err(ConfigError::Mismatch(format!(
                    "{} holds the key of run {} (this log is run {run_id}); use another --out, or --force to start over and replace it",
                    dir.display(),
                    s.run_id
                ))
                .into());
            }
            None => {
                if path.exists() && !fresh {
                    return Err(ConfigError::Mismatch(format!(
                        "{} already exists and has no session state; refusing to overwrite it (use --force to replace it)",
                        path.display()
                    ))
                    .into());
                }
                SiteState {
                    run_id: run_id.to_string(),
                    protocol,
                    complete: false,
                    blocks: vec![],
                }
            }
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true).write(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts.open(&path).map_err(io(&path))?;
        // Bytes past the recorded state (a crash between the write and the state) are not
        // committed: cut them.
        file.set_len(state.key_bytes()).map_err(io(&path))?;
        file.sync_all().map_err(io(&path))?;
        let mut f = SiteKeyFile {
            path,
            state_path,
            file,
            state,
            _lock: lock,
        };
        f.persist()?;
        Ok(f)
    }

    /// The run's state.
    pub fn state(&self) -> &SiteState {
        &self.state
    }

    /// The key file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn persist(&mut self) -> Result<()> {
        let text = serde_json::to_vec_pretty(&self.state).expect("state serializes");
        let mut f = crate::io::AtomicFile::create(&self.state_path, true, true)?;
        f.write_all(&text)?;
        f.commit()?;
        Ok(())
    }

    /// Mark the run complete.
    pub fn complete(&mut self) -> Result<()> {
        self.state.complete = true;
        self.persist()
    }
}

impl KeySink for SiteKeyFile {
    fn append(&mut self, block: &BlockReport, key: &SecretKey) -> Result<()> {
        let end = self.state.key_bytes();
        self.file
            .seek(SeekFrom::Start(end))
            .map_err(io(&self.path))?;
        self.file
            .write_all(key.as_bytes())
            .map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))?;
        self.state.blocks.push(CommittedBlock {
            block: block.id,
            last_slot: block.last_slot,
            bytes: key.as_bytes().len() as u64,
            collision_bound: block
                .verification
                .as_ref()
                .map_or(0.0, |v| v.collision_bound),
            tag: block.confirmation.as_ref().map_or(0, |c| c.tag),
        });
        self.persist()
    }

    fn rollback(&mut self, first_block: u64) -> Result<()> {
        let before = self.state.blocks.len();
        self.state.blocks.retain(|b| b.block < first_block);
        if self.state.blocks.len() == before {
            return Ok(());
        }
        // The state first: a crash then leaves bytes past it, which the next open cuts.
        self.persist()?;
        self.file
            .set_len(self.state.key_bytes())
            .map_err(io(&self.path))?;
        self.file.sync_all().map_err(io(&self.path))?;
        Ok(())
    }
}

/// Where a site's keys go: its key file, or a key store's inbox.
pub enum SiteSink {
    /// `ROLE.key` with its state file.
    File(SiteKeyFile),
    /// A key store.
    Store(crate::keystore::StoreInbox),
}

impl SiteSink {
    /// Open the sink of `opts` for the run.
    pub fn open(opts: &SiteOptions, run_id: &str, protocol: ProtocolKind) -> Result<SiteSink> {
        Ok(match &opts.store {
            Some(dir) => SiteSink::Store(crate::keystore::StoreInbox::open(
                dir, opts.role, run_id, protocol, opts.fresh,
            )?),
            None => SiteSink::File(SiteKeyFile::open(
                &opts.out_dir,
                opts.role,
                run_id,
                protocol,
                opts.fresh,
            )?),
        })
    }

    /// The run's progress.
    pub fn state(&self) -> &SiteState {
        match self {
            SiteSink::File(f) => f.state(),
            SiteSink::Store(s) => s.state(),
        }
    }

    /// Mark the run complete.
    pub fn complete(&mut self) -> Result<()> {
        match self {
            SiteSink::File(f) => f.complete(),
            SiteSink::Store(s) => s.complete(),
        }
    }

    /// The key file, or the store directory.
    pub fn path(&self) -> &Path {
        match self {
            SiteSink::File(f) => f.path(),
            SiteSink::Store(s) => s.store(),
        }
    }
}

impl KeySink for SiteSink {
    fn append(&mut self, block: &BlockReport, key: &SecretKey) -> Result<()> {
        match self {
            SiteSink::File(f) => f.append(block, key),
            SiteSink::Store(s) => s.append(block, key),
        }
    }

    fn rollback(&mut self, first_block: u64) -> Result<()> {
        match self {
            SiteSink::File(f) => f.rollback(first_block),
            SiteSink::Store(s) => s.rollback(first_block),
        }
    }
}

/// How a session ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionSummary {
    /// Session number (1, 2, …).
    pub session: u32,
    /// The block it resumed at.
    pub resumed_at_block: u64,
    /// Blocks it committed.
    pub blocks_committed: u64,
    /// Secret bits it committed.
    pub secret_bits: u64,
    /// `completed`, `stopped`, `aborted`, `error`, or why it broke off.
    pub end: String,
    /// Seconds.
    pub elapsed_s: f64,
    /// Authentication of its link.
    pub authentication: Option<AuthReport>,
    /// Stage metrics of this site's pipeline in the session.
    #[serde(default)]
    pub stages: Vec<crate::pipeline::StageMetrics>,
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteOutcome {
    /// The whole log was distilled; the key file holds the run's key.
    Key,
    /// Distilled, but no key.
    NoKey,
    /// Stopped on request; the committed blocks are in the key file, the run can be resumed.
    Stopped,
    /// Security abort.
    Aborted,
}

/// The JSON report of `qkd alice` / `qkd bob`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SiteReport {
    /// Producer and version.
    pub tool: String,
    /// This site.
    pub role: Role,
    /// The protocol.
    pub protocol: ProtocolKind,
    /// Run id.
    pub run_id: String,
    /// The site's log.
    pub log: PathBuf,
    /// Outcome.
    pub outcome: SiteOutcome,
    /// True for a security abort.
    pub aborted: bool,
    /// Why the run aborted or produced no key.
    pub abort_reason: Option<String>,
    /// Structured abort reason.
    pub abort: Option<AbortReason>,
    /// The key file (or the key store directory, with `key_in_store`).
    pub key_file: PathBuf,
    /// The keys went into a key store (docs/keys.md), not a key file.
    #[serde(default)]
    pub key_in_store: bool,
    /// Blocks committed in the key file (all sessions).
    pub committed_blocks: u64,
    /// Secret bits in the key file (all sessions).
    pub secret_bits: u64,
    /// Secrecy of the key file: committed blocks · ε_sec (None when withdrawn).
    pub epsilon_sec: Option<f64>,
    /// Correctness of the key file: committed blocks · ε_cor (None when withdrawn).
    pub epsilon_cor: Option<f64>,
    /// Secure by a proven bound with private randomness.
    pub secure: bool,
    /// Deterministic protocol randomness (insecure test mode).
    pub deterministic_rng: bool,
    /// Sessions of this process.
    pub sessions: Vec<SessionSummary>,
    /// Disclosure of this process's sessions.
    pub ledger: LeakageLedger,
    /// Security statement over the committed blocks; `epsilon_auth` sums the tags verified.
    pub security: SecurityAccount,
    /// Settings.
    pub settings: DistillSettings,
    /// Warnings.
    pub warnings: Vec<String>,
    /// Blocks of this process's sessions (this site's view).
    pub blocks: Vec<BlockReport>,
    /// Wall time.
    pub elapsed_s: f64,
    /// Peak resident memory of the process (Linux), bytes.
    pub peak_rss_bytes: Option<u64>,
}

impl SiteReport {
    /// 0: key (or stopped with key committed); 1: no key or security abort.
    pub fn exit_code(&self) -> u8 {
        match self.outcome {
            SiteOutcome::Key => 0,
            SiteOutcome::Stopped => 0,
            SiteOutcome::NoKey | SiteOutcome::Aborted => 1,
        }
    }
}

/// Errors after which a new session is tried: the connection broke or went silent.
fn transient(e: &Error) -> bool {
    matches!(
        e,
        Error::Transport(
            TransportError::Closed | TransportError::Io(_) | TransportError::Timeout(_)
        )
    )
}

/// A connected wire to the peer.
fn connect(
    endpoint: &Endpoint,
    listener: &Option<tcp::Listener>,
    timeout: Duration,
) -> Result<std::net::TcpStream> {
    Ok(match (endpoint, listener) {
        (Endpoint::Listen(_), Some(l)) => l.accept(timeout)?,
        (Endpoint::Connect(addr), _) => tcp::connect(addr, timeout)?,
        (Endpoint::Listen(addr), None) => tcp::Listener::bind(addr)?.accept(timeout)?,
    })
}

/// Run this site until its log is distilled (or the run stops or aborts).
pub fn run_site(
    opts: &SiteOptions,
    progress: Arc<dyn Progress + Send + Sync>,
) -> Result<SiteReport> {
    let start = Instant::now();
    opts.settings.validate()?;
    let input = if opts.settings.follow {
        PartyInput::wait_for_header(&opts.log, opts.connect_timeout, &opts.stop);
        PartyInput::open_growing(&opts.log)?
    } else {
        PartyInput::open(&opts.log)?
    };
    let protocol = input.protocol()?;
    let run_id = input.run_id().to_string();
    let pool = Arc::new(AuthPool::load(&opts.auth_key, opts.role)?);
    let mut sink = SiteSink::open(opts, &run_id, protocol)?;
    let listener = match &opts.endpoint {
        Endpoint::Listen(a) => Some(tcp::Listener::bind(a)?),
        Endpoint::Connect(_) => None,
    };
    let mut sessions = Vec::new();
    let mut blocks: Vec<BlockReport> = Vec::new();
    let mut ledger = LeakageLedger::default();
    let mut warnings = Vec::new();
    let mut abort = None;
    let mut stopped = false;
    let mut agreed_settings = opts.settings.clone();
    let mut last_error = None;
    if sink.state().complete {
        warnings.push(format!(
            "run {run_id} was already distilled completely; nothing to do"
        ));
    }
    let mut n = 0u32;
    while !sink.state().complete && n < opts.max_sessions {
        n += 1;
        let t0 = Instant::now();
        let stream = match connect(&opts.endpoint, &listener, opts.connect_timeout) {
            Ok(s) => s,
            Err(e) => {
                last_error = Some(e);
                break;
            }
        };
        let (r, w) = tcp::wire(stream).map_err(|e| Error::from(TransportError::from(e)))?;
        let mine = sink.state().next_block();
        let link_opts = LinkOptions {
            kernels: opts.kernels,
            delay: opts.link_delay,
            peer_timeout: opts.peer_timeout,
            keepalive: (opts.peer_timeout / 4).max(Duration::from_millis(100)),
            session: LinkSession {
                run_id: input.run_id().0,
                next_block: mine,
            },
            stop: Some(opts.stop.clone()),
            ..LinkOptions::new(opts.role)
        };
        let link = match MuxLink::establish(Box::new(r), Box::new(w), pool.clone(), link_opts) {
            Ok(l) => l,
            Err(e) if transient(&e) => {
                sessions.push(summary(n, mine, 0, 0, format!("broke off: {e}"), t0, None));
                last_error = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        let peer = link.peer_session().clone();
        if peer.run_id != input.run_id().0 {
            return Err(ConfigError::Mismatch(format!(
                "the peer distills run {}, this site run {run_id}; the logs do not belong together",
                crate::io::RunId(peer.run_id)
            ))
            .into());
        }
        let resume = sink.state().resume_at(mine.min(peer.next_block));
        let config = PartyConfig {
            role: opts.role,
            settings: opts.settings.clone(),
            deterministic_seed: opts.deterministic_seed,
            kernels: opts.kernels,
            sync: opts.sync.clone(),
            work_dir: opts.out_dir.clone(),
            resume,
            stop: opts.stop.clone(),
        };
        let party = Party::new(input.clone(), config)?;
        let link = Arc::new(link);
        let stopper = spawn_stop_watch(opts.stop.clone(), link.clone());
        let before = sink.state().key_bytes();
        let run = party.run(
            link.clone() as Arc<dyn crate::classical::Link>,
            sink,
            progress.clone(),
        );
        stopper.store(true, Ordering::Relaxed);
        let auth = link.pool().report();
        drop(link);
        sink = run.sink.expect("the key file comes back");
        let res = run.result;
        if let Some(a) = &res.agreed {
            agreed_settings = a.settings.clone();
        }
        for b in &res.blocks {
            ledger.add(&b.ledger);
        }
        warnings.extend(res.warnings.iter().cloned());
        let committed: Vec<&BlockReport> = res
            .blocks
            .iter()
            .filter(|b| b.outcome == BlockOutcome::Key)
            .collect();
        let bits = 8 * sink.state().key_bytes().saturating_sub(before);
        let n_committed = committed.len() as u64;
        blocks.extend(res.blocks.iter().cloned());
        let stages = res.metrics.clone();
        let with_stages = |mut s: SessionSummary| {
            s.stages = stages.clone();
            s
        };
        match res.error {
            None => {
                if opts.stop.load(Ordering::Relaxed) {
                    stopped = true;
                } else {
                    sink.complete()?;
                }
                sessions.push(with_stages(summary(
                    n,
                    resume.first_block,
                    n_committed,
                    bits,
                    if stopped { "stopped" } else { "completed" }.into(),
                    t0,
                    Some(auth),
                )));
                break;
            }
            Some(Error::Aborted(r)) => {
                sessions.push(summary(
                    n,
                    resume.first_block,
                    n_committed,
                    bits,
                    format!("aborted: {r}"),
                    t0,
                    Some(auth),
                ));
                abort = Some(r);
                break;
            }
            Some(e) if transient(&e) && !opts.stop.load(Ordering::Relaxed) => {
                sessions.push(summary(
                    n,
                    resume.first_block,
                    n_committed,
                    bits,
                    format!("broke off: {e}"),
                    t0,
                    Some(auth),
                ));
                last_error = Some(e);
            }
            Some(e) if transient(&e) => {
                stopped = true;
                sessions.push(summary(
                    n,
                    resume.first_block,
                    n_committed,
                    bits,
                    "stopped".into(),
                    t0,
                    Some(auth),
                ));
                break;
            }
            Some(e) => return Err(e),
        }
    }
    let complete = sink.state().complete;
    if !complete && abort.is_none() && !stopped {
        return Err(last_error.unwrap_or_else(|| {
            TransportError::Timeout(format!(
                "the run did not finish in {} sessions",
                opts.max_sessions
            ))
            .into()
        }));
    }
    let state = sink.state().clone();
    let secret_bits = 8 * state.key_bytes();
    let deterministic = opts.deterministic_seed.is_some();
    let mut security =
        SecurityAccount::new(&agreed_settings, protocol.proof(), &blocks, deterministic);
    // The key file holds every committed block of the run, from all sessions.
    let nb = state.blocks.len() as u64;
    security.blocks_with_key = nb;
    if !deterministic {
        security.epsilon_sec = Some(nb as f64 * agreed_settings.epsilon_sec);
        security.epsilon_cor = Some(nb as f64 * agreed_settings.epsilon_cor);
    }
    security.verification_collision_bound = state.blocks.iter().map(|b| b.collision_bound).sum();
    security.epsilon_auth = sessions
        .iter()
        .filter_map(|s| s.authentication.as_ref().map(|a| a.epsilon))
        .sum();
    security.epsilon_total = (!deterministic).then_some({
        nb as f64 * (agreed_settings.epsilon_sec + agreed_settings.epsilon_cor)
            + security.epsilon_auth
    });
    if let Some(w) = &security.withdrawn {
        warnings.push(w.clone());
    }
    let outcome = if abort.is_some() {
        SiteOutcome::Aborted
    } else if stopped {
        SiteOutcome::Stopped
    } else if secret_bits > 0 {
        SiteOutcome::Key
    } else {
        SiteOutcome::NoKey
    };
    Ok(SiteReport {
        tool: format!("qkd-distill {}", env!("CARGO_PKG_VERSION")),
        role: opts.role,
        protocol,
        run_id,
        log: opts.log.clone(),
        outcome,
        aborted: abort.is_some(),
        abort_reason: abort.as_ref().map(|r| r.to_string()).or_else(|| {
            (outcome == SiteOutcome::NoKey).then(|| "no block yielded key".to_string())
        }),
        abort,
        key_file: sink.path().to_path_buf(),
        key_in_store: matches!(sink, SiteSink::Store(_)),
        committed_blocks: nb,
        secret_bits,
        epsilon_sec: security.epsilon_sec,
        epsilon_cor: security.epsilon_cor,
        secure: security.secure && outcome != SiteOutcome::Aborted,
        deterministic_rng: deterministic,
        sessions,
        ledger,
        security,
        settings: agreed_settings,
        warnings,
        blocks,
        elapsed_s: start.elapsed().as_secs_f64(),
        peak_rss_bytes: crate::io::import::peak_rss_bytes(),
    })
}

fn summary(
    session: u32,
    resumed_at_block: u64,
    blocks_committed: u64,
    secret_bits: u64,
    end: String,
    t0: Instant,
    authentication: Option<AuthReport>,
) -> SessionSummary {
    SessionSummary {
        session,
        resumed_at_block,
        blocks_committed,
        secret_bits,
        end,
        elapsed_s: t0.elapsed().as_secs_f64(),
        authentication,
        stages: vec![],
    }
}

/// Forward a local stop request to the peer once (the announcing side ends the run at the next
/// chunk). Returns the flag that ends the watcher.
fn spawn_stop_watch(stop: Arc<AtomicBool>, link: Arc<MuxLink>) -> Arc<AtomicBool> {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let link = Arc::downgrade(&link);
    std::thread::spawn(move || {
        while !d.load(Ordering::Relaxed) {
            if stop.load(Ordering::Relaxed) {
                if let Some(l) = link.upgrade() {
                    l.request_stop();
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    done
}
