//! One party's whole pipeline over any [`Link`]: the session handshake, time synchronisation
//! of raw time tags, the run-level monitors of its own data, then the stages
//!
//! ```text
//! sifting ─► estimation ─► error correction (workers) ─► verification ─► amplification ─► key confirmation ─► KeySink
//! ```
//!
//! each talking to the peer's instance over its own logical stream. A party owns only its own
//! log and learns about the peer's only what crosses the link. A batch `qkd distill` is two
//! parties over the in-memory link ([`crate::engine::distill`]); two sites are the same parties
//! over TCP.

pub mod handshake;

use crate::block::{Block, BlockReport, SecretKey};
use crate::classical::{ChannelStats, Link};
use crate::config::DistillSettings;
use crate::error::{ConfigError, Error, Result};
use crate::io::header::{FLAG_SLOT_ANNOTATED, FileKind};
use crate::io::{DetectionLog, PrepLog, RunId};
use crate::kernels::Kernels;
use crate::keystore::KeySink;
use crate::ledger::LeakageLedger;
use crate::monitors::{self, Calibration, MonitorStatus};
use crate::pipeline::{Pipeline, StageMetrics, pick_error};
use crate::progress::Progress;
use crate::protocol::{DecoyParams, Role};
use crate::protocols::{self, ProtocolKind, entangled, noh09};
use crate::rng::protocol_rng;
use crate::sifting::SiftingSide;
use crate::stages::amplification::AmplificationStage;
use crate::stages::confirmation::ConfirmationStage;
use crate::stages::error_correction::ErrorCorrectionStage;
use crate::stages::estimation::EstimationStage;
use crate::stages::sifting::SiftingSource;
use crate::stages::verification::VerificationStage;
use crate::stages::{Session, StageIo, StreamId};
pub use handshake::Agreed;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

/// A party's input log.
#[derive(Clone)]
pub enum PartyInput {
    /// Alice's decoy-state BB84 preparation log (`.qpl`).
    Preparation(Arc<PrepLog>),
    /// A detection log (`.qdl`): Bob's BB84 log, or either party's log of an entangled or
    /// Noh09 run.
    Detections(Arc<DetectionLog>),
}

impl PartyInput {
    /// Open a log that may still be growing (`--follow`): only its complete blocks are read
    /// now; the sifting waits for the rest.
    pub fn open_growing(path: &Path) -> Result<PartyInput> {
        Ok(match Self::open_magic(path)? {
            true => PartyInput::Preparation(Arc::new(PrepLog::open_growing(path)?)),
            false => PartyInput::Detections(Arc::new(DetectionLog::open_growing(path)?)),
        })
    }

    /// Wait, up to `timeout` or until `stop` is set, until a log that a rig is starting to
    /// write holds at least its complete header (magic, fixed fields and metadata), so that
    /// [`PartyInput::open_growing`] does not mistake a file just created for a bad one. A file
    /// that does not start like a log ends the wait at once (the open then names the error).
    pub fn wait_for_header(
        path: &Path,
        timeout: std::time::Duration,
        stop: &std::sync::atomic::AtomicBool,
    ) {
        use std::io::Read;
        let t = std::time::Instant::now();
        let kinds = [FileKind::PrepLog.magic(), FileKind::DetectionLog.magic()];
        loop {
            let mut head = [0u8; 64];
            let mut n = 0;
            if let Ok(mut f) = std::fs::File::open(path) {
                while n < head.len() {
                    match f.read(&mut head[n..]) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                }
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                let magic_so_far = kinds.iter().any(|m| m[..n.min(8)] == head[..n.min(8)]);
                if !magic_so_far {
                    return;
                }
                if n == 64 {
                    let header_len = u32::from_le_bytes(head[12..16].try_into().unwrap()) as u64;
                    if len >= header_len {
                        return;
                    }
                }
            }
            if t.elapsed() >= timeout || stop.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    fn open_magic(path: &Path) -> Result<bool> {
        use std::io::Read;
        let mut magic = [0u8; 8];
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let n = f.read(&mut magic).map_err(|e| Error::io(path, e))?;
        Ok(n == 8 && magic == FileKind::PrepLog.magic())
    }

    /// Open a log, by its magic bytes.
    pub fn open(path: &Path) -> Result<PartyInput> {
        use std::io::Read;
        let mut magic = [0u8; 8];
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let n = f.read(&mut magic).map_err(|e| Error::io(path, e))?;
        if n == 8 && magic == FileKind::PrepLog.magic() {
            Ok(PartyInput::Preparation(Arc::new(PrepLog::open(path)?)))
        } else {
            Ok(PartyInput::Detections(Arc::new(DetectionLog::open(path)?)))
        }
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        match self {
            PartyInput::Preparation(l) => l.path(),
            PartyInput::Detections(l) => l.path(),
        }
    }

    /// The log's run id.
    pub fn run_id(&self) -> RunId {
        match self {
            PartyInput::Preparation(l) => l.header().run_id,
            PartyInput::Detections(l) => l.header().run_id,
        }
    }

    /// The protocol the log belongs to.
    pub fn protocol(&self) -> Result<ProtocolKind> {
        match self {
            PartyInput::Preparation(_) => Ok(ProtocolKind::Bb84),
            PartyInput::Detections(l) => ProtocolKind::of_detection_log(l.path(), l.meta()),
        }
    }

    /// The run's slots, when the log says.
    pub fn total_slots(&self) -> Option<u64> {
        match self {
            PartyInput::Preparation(l) => Some(l.total_slots()),
            PartyInput::Detections(l) => l.meta().total_slots.or_else(|| {
                l.meta()
                    .extra
                    .get("slots")
                    .and_then(serde_json::Value::as_u64)
            }),
        }
    }

    /// Decoy-state source parameters (Alice's BB84 log).
    pub fn decoy(&self) -> Option<&DecoyParams> {
        match self {
            PartyInput::Preparation(l) => Some(&l.meta().decoy),
            PartyInput::Detections(_) => None,
        }
    }

    /// Records in a detection log (0 for a preparation log).
    pub fn detection_records(&self) -> u64 {
        match self {
            PartyInput::Preparation(_) => 0,
            PartyInput::Detections(l) => l.total_records(),
        }
    }

    /// A BB84 receiver's log of raw time tags, which is synchronised before sifting.
    pub fn needs_sync(&self) -> bool {
        matches!(self, PartyInput::Detections(l)
            if l.header().flags & FLAG_SLOT_ANNOTATED == 0
                && matches!(self.protocol(), Ok(ProtocolKind::Bb84)))
    }
}

/// Where a session resumes a run: the first block it produces and the first slot it reads
/// (after the last slot of the last block committed on both sides).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// Block id of the session's first block.
    pub first_block: u64,
    /// First slot to sift.
    pub start_slot: u64,
}

/// How a party runs.
#[derive(Debug, Clone)]
pub struct PartyConfig {
    /// Alice or Bob.
    pub role: Role,
    /// Settings (both parties' must agree; `block_bits` 0 = auto, resolved in the handshake).
    pub settings: DistillSettings,
    /// Deterministic protocol randomness (tests only; insecure).
    pub deterministic_seed: Option<u64>,
    /// Kernels.
    pub kernels: Kernels,
    /// Time synchronisation of raw time tags (Bob).
    pub sync: crate::sync::SyncOptions,
    /// Directory for this party's temporary files (the synchronised log).
    pub work_dir: PathBuf,
    /// Where the session resumes the run (both parties must say the same).
    pub resume: Resume,
    /// Set to stop at the next block boundary.
    pub stop: Arc<AtomicBool>,
}

impl PartyConfig {
    /// A fresh run for `role` with `settings`, the detected kernels and OS randomness.
    pub fn new(role: Role, settings: DistillSettings, work_dir: PathBuf) -> PartyConfig {
        PartyConfig {
            role,
            settings,
            deterministic_seed: None,
            kernels: Kernels::detect(),
            sync: Default::default(),
            work_dir,
            resume: Resume::default(),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// What a party reports after its run (its own view; Bob's includes the corrected error
/// counts).
#[derive(Debug)]
pub struct PartyResult {
    /// The party.
    pub role: Role,
    /// The protocol.
    pub protocol: ProtocolKind,
    /// What the handshake agreed (None if it failed).
    pub agreed: Option<Agreed>,
    /// Every block, in order.
    pub blocks: Vec<BlockReport>,
    /// Secret bits passed to the key sink.
    pub secret_bits: u64,
    /// Stage metrics.
    pub metrics: Vec<StageMetrics>,
    /// Classical-channel traffic of the stages (the handshake excluded).
    pub traffic: ChannelStats,
    /// Time synchronisation (Bob, raw time tags).
    pub sync: Option<crate::sync::SyncReport>,
    /// Disclosure of the synchronisation.
    pub sync_ledger: LeakageLedger,
    /// Run-level monitors of this party's own data (watchdog, arrival times).
    pub monitors: Vec<MonitorStatus>,
    /// Warnings for the user.
    pub warnings: Vec<String>,
    /// Authentication of the link in this session.
    pub auth: Option<crate::classical::auth::AuthReport>,
    /// Why the run stopped, if it did not complete (a security abort is
    /// [`Error::Aborted`]).
    pub error: Option<Error>,
}

/// A party's result and its key sink back.
pub struct PartyRun<S> {
    /// The result.
    pub result: PartyResult,
    /// The sink (None if the run failed before the pipeline started).
    pub sink: Option<S>,
}

/// One party.
pub struct Party {
    config: PartyConfig,
    input: PartyInput,
    protocol: ProtocolKind,
}

/// Removes a temporary file when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Party {
    /// A party of `config.role` over `input`. Refuses a log that does not fit the role.
    pub fn new(input: PartyInput, config: PartyConfig) -> Result<Party> {
        config.settings.validate()?;
        let protocol = input.protocol()?;
        let role = config.role;
        let wrong = |what: &str| -> Error {
            ConfigError::invalid(
                role.name(),
                format!(
                    "{}: {what} where {}'s log was expected",
                    input.path().display(),
                    role.name()
                ),
            )
            .into()
        };
        match (&input, protocol, role) {
            (PartyInput::Preparation(_), _, Role::Bob) => {
                return Err(wrong("Alice's preparation log (.qpl)"));
            }
            (PartyInput::Detections(_), ProtocolKind::Bb84, Role::Alice) => {
                return Err(wrong(
                    "a BB84 receiver's detection log (.qdl), not a preparation log (.qpl) or an entangled/counterfactual run",
                ));
            }
            (PartyInput::Detections(l), p, _)
                if p != ProtocolKind::Bb84 && l.meta().role != role.name() =>
            {
                return Err(wrong(&format!("the {} log of {}", p.name(), l.meta().role)));
            }
            _ => {}
        }
        Ok(Party {
            config,
            input,
            protocol,
        })
    }

    /// The protocol.
    pub fn protocol(&self) -> ProtocolKind {
        self.protocol
    }

    /// The input log.
    pub fn input(&self) -> &PartyInput {
        &self.input
    }

    /// Run the party over `link`, putting confirmed block keys into `sink`.
    pub fn run<S: KeySink>(
        &self,
        link: Arc<dyn Link>,
        sink: S,
        progress: Arc<dyn Progress + Send + Sync>,
    ) -> PartyRun<S> {
        let traffic = Arc::new(Mutex::new(ChannelStats::default()));
        let mut result = PartyResult {
            role: self.config.role,
            protocol: self.protocol,
            agreed: None,
            blocks: vec![],
            secret_bits: 0,
            metrics: vec![],
            traffic: ChannelStats::default(),
            sync: None,
            sync_ledger: LeakageLedger::default(),
            monitors: vec![],
            warnings: vec![],
            auth: None,
            error: None,
        };
        let mut sink = Some(sink);
        if let Err(e) = self.run_inner(link.clone(), &mut sink, progress, &traffic, &mut result) {
            result.error = Some(classify_error(e, link.as_ref()));
        }
        result.auth = link.auth_report();
        result.traffic = *traffic.lock().unwrap_or_else(|e| e.into_inner());
        PartyRun { result, sink }
    }

    fn handshake(&self, link: &dyn Link) -> Result<Agreed> {
        let mut ch = link.open(StreamId::HANDSHAKE)?;
        let s = &self.config.settings;
        let r = self.config.resume;
        match self.config.role {
            Role::Alice => handshake::alice(&mut ch, &self.input, self.protocol, s, r),
            Role::Bob => handshake::bob(&mut ch, &self.input, self.protocol, s, r),
        }
    }

    /// Synchronise Bob's raw time tags against Alice's slots (both sides run their part over
    /// the SYNC stream); Bob's synchronised log is written to the work directory.
    fn synchronise(
        &self,
        link: &dyn Link,
        agreed: &Agreed,
        result: &mut PartyResult,
    ) -> Result<Option<(Arc<DetectionLog>, RemoveOnDrop)>> {
        if !agreed.needs_sync {
            return Ok(None);
        }
        let mut ch = link.open(StreamId::SYNC)?;
        match &self.input {
            PartyInput::Preparation(prep) => {
                crate::sync::alice_sync(&mut ch, &mut result.sync_ledger, prep)?;
                Ok(None)
            }
            PartyInput::Detections(det) => {
                std::fs::create_dir_all(&self.config.work_dir)
                    .map_err(|e| Error::io(&self.config.work_dir, e))?;
                let path = self.config.work_dir.join(format!(
                    ".synced-{}-{}.qdl",
                    det.header().run_id,
                    std::process::id()
                ));
                let guard = RemoveOnDrop(path.clone());
                let r = crate::sync::bob_sync(
                    &mut ch,
                    &mut result.sync_ledger,
                    det,
                    agreed.total_slots,
                    &self.config.sync,
                    &path,
                )?;
                result.sync = Some(r);
                Ok(Some((Arc::new(DetectionLog::open(&path)?), guard)))
            }
        }
    }

    /// The monitors this party runs on its own data before the blocks; returns their alarms
    /// and Bob's receiver calibration.
    fn run_monitors(
        &self,
        result: &mut PartyResult,
        follow: bool,
    ) -> Result<(Vec<crate::error::Alarm>, Option<Calibration>)> {
        if self.protocol != ProtocolKind::Bb84 {
            return Ok((vec![], None));
        }
        match &self.input {
            PartyInput::Preparation(prep) => {
                let mut m = monitors::check_watchdog(prep.path(), &prep.meta().extra)?;
                let timing = monitors::check_pulse_timing(prep.path(), &prep.meta().extra)?;
                m.alarms.extend(timing.alarms);
                m.status.extend(timing.status);
                let rng = if follow {
                    monitors::MonitorRun {
                        alarms: vec![],
                        status: vec![MonitorStatus::skipped(
                            "alice_rng",
                            "the preparation log is still being written (--follow); Bob's announced_bases test runs on every block",
                        )],
                    }
                } else {
                    monitors::check_preparation_randomness(prep, &self.config.kernels)
                };
                m.alarms.extend(rng.alarms);
                m.status.extend(rng.status);
                result.monitors.extend(m.status);
                Ok((m.alarms, None))
            }
            PartyInput::Detections(det) => {
                let cal = Calibration::from_meta(det.path(), &det.meta().extra)?;
                if cal.is_none() {
                    result.warnings.push(format!(
                        "{} has no receiver calibration: the calibrated monitors (detector_balance, too_perfect_qber, arrival_time) cannot run",
                        det.path().display()
                    ));
                }
                let m = match &result.sync {
                    Some(sync) => monitors::check_arrival_times(sync, cal.as_ref()),
                    None => {
                        result.warnings.push(format!(
                            "efficiency-mismatch monitors cannot run: {}",
                            monitors::NO_TIMING
                        ));
                        monitors::MonitorRun {
                            alarms: vec![],
                            status: vec![MonitorStatus::skipped(
                                "arrival_time",
                                monitors::NO_TIMING,
                            )],
                        }
                    }
                };
                result.monitors.extend(m.status);
                Ok((m.alarms, cal))
            }
        }
    }

    fn sifting_side(
        &self,
        synced: Option<&Arc<DetectionLog>>,
        progress: Arc<dyn Progress + Send + Sync>,
        follow: Option<crate::io::Follow>,
    ) -> Result<Box<dyn SiftingSide>> {
        let role = self.config.role;
        let start = self.config.resume.start_slot;
        let f = follow.clone();
        Ok(match (&self.input, self.protocol) {
            (PartyInput::Preparation(prep), _) => {
                Box::new(protocols::bb84::AliceSifting::new(prep.clone(), f))
            }
            (PartyInput::Detections(det), ProtocolKind::Bb84) => {
                let log = synced.unwrap_or(det).clone();
                Box::new(protocols::bb84::BobSifting::new(log, progress, start, f)?)
            }
            (PartyInput::Detections(det), p @ (ProtocolKind::E91 | ProtocolKind::Bbm92)) => {
                let v = entangled::Variant::of(p).expect("entangled protocol");
                match role {
                    Role::Alice => Box::new(entangled::AliceSifting::new(det.clone(), v, f)?),
                    Role::Bob => Box::new(entangled::BobSifting::new(
                        det.clone(),
                        v,
                        progress,
                        start,
                        f,
                    )?),
                }
            }
            (PartyInput::Detections(det), ProtocolKind::Noh09) => match role {
                Role::Alice => Box::new(noh09::AliceSifting::new(det.clone(), progress, start, f)),
                Role::Bob => Box::new(noh09::BobSifting::new(det.clone(), f)),
            },
        })
    }

    fn run_inner<S: KeySink>(
        &self,
        link: Arc<dyn Link>,
        sink: &mut Option<S>,
        progress: Arc<dyn Progress + Send + Sync>,
        traffic: &Arc<Mutex<ChannelStats>>,
        result: &mut PartyResult,
    ) -> Result<()> {
        let role = self.config.role;
        let agreed = self.handshake(link.as_ref())?;
        result.agreed = Some(agreed.clone());
        // The peer's resume point is authenticated now: discard what was committed here but
        // not there, in the key sink and in the authentication pool.
        let first = self.config.resume.first_block;
        if let Some(pool) = link.auth_pool() {
            pool.set_run(&self.input.run_id().to_string());
            pool.rollback_refills(first)?;
        }
        sink.as_mut().expect("sink present").rollback(first)?;
        let synced = self.synchronise(link.as_ref(), &agreed, result)?;
        let (run_alarms, calibration) = self.run_monitors(result, agreed.settings.follow)?;
        let session = Arc::new(Session {
            role,
            protocol: self.protocol,
            settings: agreed.settings.clone(),
            decoy: agreed.decoy.clone(),
            kernels: self.config.kernels,
            deterministic_seed: self.config.deterministic_seed,
            calibration,
            run_alarms,
            auth: link.auth_pool(),
            resume: self.config.resume,
            stop: self.config.stop.clone(),
        });
        // A resumed session must not repeat a deterministic stream (test mode only).
        let seed = self
            .config
            .deterministic_seed
            .map(|s| s.wrapping_add(first.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        let io = |stream: u32| -> Result<StageIo> {
            Ok(StageIo {
                session: session.clone(),
                channel: link.open(stream)?,
                rng: protocol_rng(seed, role, u64::from(stream))?,
                traffic: traffic.clone(),
            })
        };
        let follow = agreed.settings.follow.then(|| crate::io::Follow {
            stop: self.config.stop.clone(),
            poll: std::time::Duration::from_millis(100),
        });
        let side = self.sifting_side(synced.as_ref().map(|(l, _)| l), progress, follow)?;
        let source = SiftingSource::new(io(StreamId::SIFTING)?, side);
        let estimation = EstimationStage::new(io(StreamId::ESTIMATION)?);
        let workers = (0..agreed.settings.ec_workers)
            .map(|w| {
                (0..agreed.settings.ec_lanes)
                    .map(|l| io(StreamId::error_correction_lane(w, l)))
                    .collect::<Result<Vec<_>>>()
                    .map(ErrorCorrectionStage::new)
            })
            .collect::<Result<Vec<_>>>()?;
        let verification = VerificationStage::new(io(StreamId::VERIFICATION)?);
        let amplification = AmplificationStage::new(io(StreamId::AMPLIFICATION)?);
        let confirmation = ConfirmationStage::new(io(StreamId::CONFIRMATION)?);
        let mut p = Pipeline::new(agreed.settings.queue_capacity).starting_at(first);
        let f = p.source(source);
        let f = p.stage(f, estimation);
        let f = p.pool(f, workers);
        let f = p.stage(f, verification);
        let f = p.stage(f, amplification);
        let f = p.stage(f, confirmation);
        let state = Collected {
            sink: sink.take().expect("sink present"),
            blocks: vec![],
            secret_bits: 0,
        };
        let handle = p.sink(f, "key_store", state, Collected::push);
        let (state, sink_result) = handle
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        let joined = p.join();
        result.blocks = state.blocks;
        result.secret_bits = state.secret_bits;
        *sink = Some(state.sink);
        let mut errors: Vec<Error> = vec![];
        if let Err(e) = sink_result {
            errors.push(e);
        }
        match joined {
            Ok(m) => result.metrics = m,
            Err(e) => errors.push(e),
        }
        drop(synced);
        pick_error(errors)
    }
}

/// See [`crate::classical::classify_error`].
pub fn classify_error(e: Error, link: &dyn Link) -> Error {
    crate::classical::classify_error(e, link.unverified_frames())
}

/// The key-store end of a party's pipeline: confirmed keys to the sink, every block's report
/// kept.
struct Collected<S> {
    sink: S,
    blocks: Vec<BlockReport>,
    secret_bits: u64,
}

impl<S: KeySink> Collected<S> {
    fn push(&mut self, block: Block<SecretKey>) -> Result<()> {
        let bytes = block.key.as_bytes().len() as u64;
        let mut report = block.report.clone();
        report.ledger = block.ledger;
        if bytes > 0 {
            self.sink.append(&report, &block.key)?;
            self.secret_bits += 8 * bytes;
        }
        self.blocks.push(report);
        Ok(())
    }
}
