//! Assembles the two parties' pipelines and runs a batch distillation: Alice's preparation log
//! and Bob's detection log in, two identical key files and a report out.
//!
//! Each party runs on its own threads and owns only its own data; they talk only through the
//! classical channel (here the in-process [`InMemoryLink`]). The same `run_party` would serve
//! a party on its own machine over a network link.

use crate::block::{BlockOutcome, BlockReport};
use crate::classical::{ChannelStats, FrameTap, InMemoryLink, Link, Message, unexpected};
use crate::config::DistillSettings;
use crate::error::{AbortReason, ConfigError, Error, ProtocolError, Result};
use crate::io::{DetectionLog, PrepLog, RunId};
use crate::kernels::Kernels;
use crate::keystore::KeySink;
use crate::ledger::LeakageLedger;
use crate::pipeline::{Pipeline, StageMetrics, pick_error};
use crate::progress::Progress;
use crate::protocol::{DecoyParams, Role};
use crate::rng::protocol_rng;
use crate::stages::amplification::AmplificationStage;
use crate::stages::error_correction::ErrorCorrectionStage;
use crate::stages::estimation::EstimationStage;
use crate::stages::sifting::SiftingSource;
use crate::stages::verification::VerificationStage;
use crate::stages::{Session, StageIo, StreamId};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Options of a batch run.
#[derive(Debug, Clone)]
pub struct DistillOptions {
    /// Shared settings.
    pub settings: DistillSettings,
    /// Directory for `alice.key` and `bob.key`.
    pub out_dir: PathBuf,
    /// Replace existing key files.
    pub overwrite: bool,
    /// Deterministic protocol randomness (tests only; insecure).
    pub deterministic_seed: Option<u64>,
    /// Kernels.
    pub kernels: Kernels,
    /// Observer of every classical-channel frame (audits; `None` in normal runs).
    pub frame_tap: Option<FrameTap>,
    /// Time synchronisation of raw time tags.
    pub sync: crate::sync::SyncOptions,
}

/// Removes a temporary file when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Synchronise Bob's raw time tags against Alice's preparation log: both parties run their
/// side ([`crate::sync::alice_sync`], [`crate::sync::bob_sync`]) over an in-process classical
/// channel; Bob writes the slot-annotated log `out`. Returns the report and the disclosure.
pub fn synchronise(
    prep: &PrepLog,
    det: &DetectionLog,
    opts: &crate::sync::SyncOptions,
    out: &Path,
    tap: Option<FrameTap>,
) -> Result<(crate::sync::SyncReport, LeakageLedger)> {
    let (la, lb) = InMemoryLink::pair_tapped(tap);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| -> Result<LeakageLedger> {
            let mut ch = la.open(StreamId::SYNC)?;
            let mut l = LeakageLedger::default();
            crate::sync::alice_sync(&mut ch, &mut l, prep)?;
            Ok(l)
        });
        let b = s.spawn(|| -> Result<(crate::sync::SyncReport, LeakageLedger)> {
            let mut ch = lb.open(StreamId::SYNC)?;
            let mut l = LeakageLedger::default();
            let r = crate::sync::bob_sync(&mut ch, &mut l, det, prep.total_slots(), opts, out)?;
            Ok((r, l))
        });
        (
            a.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            b.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
        )
    });
    // Bob's error explains Alice's closed channel, so report it first.
    let (report, ledger) = b?;
    a?;
    Ok((report, ledger))
}

/// The security statement of a run, term by term (docs/security.md lists the same terms).
///
/// The keys are ε-secure with ε = ε_sec + ε_cor (composable definition of Tomamichel,
/// Lim, Gisin, Renner, Nat. Commun. 3, 634 (2012)); ε_sec itself is the sum of the 21 terms
/// of Lim, Curty, Walenta, Xu, Zbinden, PRA 89, 022307 (2014), App. B, each set to ε_sec/21.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecurityAccount {
    /// Secrecy ε_sec.
    pub epsilon_sec: f64,
    /// Correctness ε_cor.
    pub epsilon_cor: f64,
    /// ε_sec + ε_cor.
    pub epsilon_total: f64,
    /// Each of the 21 terms of Lim et al.'s composition ε_sec = 2(2α₁ + α₂ + α₃) + ν +
    /// 10ε₁ + 2ε₂ (Hoeffding bounds of the decoy counts, the sampling bound of the phase
    /// error, the smoothing and the leftover-hash term), all set to ε_sec/21.
    pub epsilon_per_term: f64,
    /// Bits charged for them: 6·log₂(21/ε_sec) per block.
    pub security_cost_bits_per_block: f64,
    /// Verification: the largest per-block bound on a wrong frame passing the tags (must be
    /// ≤ ε_cor).
    pub verification_collision_bound_max: f64,
    /// The formula for each block's length.
    pub bound: String,
    /// What is subtracted from each block (the ledger kinds `error_correction` and
    /// `verification`, plus the bits of discarded frames) and what is not.
    pub subtracted: Vec<String>,
    /// Disclosed but not subtracted, with the reason.
    pub not_subtracted: Vec<String>,
}

impl SecurityAccount {
    /// The account for `settings` and the blocks of a run.
    pub fn new(settings: &DistillSettings, blocks: &[BlockReport]) -> SecurityAccount {
        let eps = settings.epsilon_sec;
        SecurityAccount {
            epsilon_sec: eps,
            epsilon_cor: settings.epsilon_cor,
            epsilon_total: eps + settings.epsilon_cor,
            epsilon_per_term: eps / 21.0,
            security_cost_bits_per_block: 6.0 * (21.0 / eps).log2(),
            verification_collision_bound_max: blocks
                .iter()
                .filter_map(|b| b.verification.as_ref().map(|v| v.collision_bound))
                .fold(0.0, f64::max),
            bound: "ℓ = ⌊s₀ + s₁(1 − h(φ)) − 6 log₂(21/ε_sec) − λ_EC − max(tag bits, \
                    log₂(2/ε_cor)) − discarded⌋, rounded down to whole bytes \
                    (Lim et al. 2014, Eq. 1)"
                .into(),
            subtracted: vec![
                "error_correction: Cascade parity answers, LDPC syndromes (minus punctured \
                 bits), revealed bits"
                    .into(),
                "verification: 64-bit hash tags, at least log₂(2/ε_cor)".into(),
                "discarded frames: bits of frames whose tags failed".into(),
            ],
            not_subtracted: vec![
                "sifting: slots, bases, intensity classes (independent of bit values)".into(),
                "test_basis: test-basis bits (not key bits; they give φ)".into(),
                "qber_sample: key-basis bits disclosed and removed from the key".into(),
                "public_randomness: seeds of permutations, samples, hash keys, Toeplitz \
                 matrices (independent of the key)"
                    .into(),
                "control: counts, flags, acknowledgements computable from the above".into(),
            ],
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Key files written.
    Key,
    /// Completed without a security problem, but no key (too little data).
    NoKey,
    /// Security abort: no key.
    Aborted,
}

/// The paths of the key files.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFiles {
    /// Alice's key.
    pub alice: PathBuf,
    /// Bob's key.
    pub bob: PathBuf,
}

/// Per-party stage metrics.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PartyMetrics {
    /// Alice's stages.
    pub alice: Vec<StageMetrics>,
    /// Bob's stages.
    pub bob: Vec<StageMetrics>,
}

/// The JSON report of `qkd distill`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DistillReport {
    /// Producer and version.
    pub tool: String,
    /// Run id of the logs.
    pub run_id: String,
    /// Alice's preparation log.
    pub alice_log: PathBuf,
    /// Bob's detection log.
    pub bob_log: PathBuf,
    /// Outcome.
    pub outcome: RunOutcome,
    /// True for a security abort.
    pub aborted: bool,
    /// Why the run aborted or produced no key.
    pub abort_reason: Option<String>,
    /// Structured abort reason.
    pub abort: Option<AbortReason>,
    /// Monitor alarms (an alarm aborts the run; see [`crate::monitors`]).
    pub alarms: Vec<crate::monitors::Alarm>,
    /// Slots in the run.
    pub total_slots: u64,
    /// Detected slots.
    pub detections: u64,
    /// Sifted key-basis bits.
    pub sifted_bits: u64,
    /// Error rate of the reconciled bits (errors corrected / bits), or the estimate if nothing
    /// was reconciled.
    pub qber: f64,
    /// Bits subtracted for disclosure (error correction + verification), all blocks.
    pub leaked_bits: u64,
    /// Secret key bits produced (per party).
    pub secret_bits: u64,
    /// Secrecy parameter per block key.
    pub epsilon_sec: f64,
    /// Correctness parameter per block key.
    pub epsilon_cor: f64,
    /// Blocks that produced key.
    pub blocks_ok: u64,
    /// Blocks that did not.
    pub blocks_failed: u64,
    /// Wall time of the run.
    pub elapsed_s: f64,
    /// Sifted key bits per second of wall time.
    pub sifted_bits_per_s: f64,
    /// Secret key bits per second of wall time.
    pub secret_bits_per_s: f64,
    /// Key files (only when a key was produced).
    pub key_files: Option<KeyFiles>,
    /// Disclosure over all blocks, by kind.
    pub ledger: LeakageLedger,
    /// Settings.
    pub settings: DistillSettings,
    /// Source parameters used by the bound.
    pub decoy: DecoyParams,
    /// Kernel ISA.
    pub isa: String,
    /// Protocol randomness was deterministic (insecure test mode).
    pub deterministic_rng: bool,
    /// Classical-channel traffic sent by Alice and by Bob.
    pub channel: ChannelStats,
    /// Every ε term of the security statement and every subtracted kind of disclosure
    /// (docs/security.md).
    pub security: SecurityAccount,
    /// Time synchronisation of raw time tags (when Bob's log was not slot-annotated).
    pub sync: Option<crate::sync::SyncReport>,
    /// Per-block details (Bob's view, which includes the corrected error counts).
    pub blocks: Vec<BlockReport>,
    /// Per-stage metrics.
    pub stages: PartyMetrics,
}

impl DistillReport {
    /// Exit status: 0 key, 1 no key or abort.
    pub fn exit_code(&self) -> u8 {
        match self.outcome {
            RunOutcome::Key => 0,
            RunOutcome::NoKey | RunOutcome::Aborted => 1,
        }
    }
}

enum PartyInput {
    Alice(Arc<PrepLog>),
    Bob(Arc<DetectionLog>),
}

struct PartyResult {
    sink: Option<KeySink>,
    metrics: Vec<StageMetrics>,
    traffic: ChannelStats,
    error: Option<Error>,
    decoy: Option<DecoyParams>,
}

#[derive(Serialize, Deserialize)]
struct HelloSettings {
    settings: DistillSettings,
    decoy: DecoyParams,
}

fn handshake(
    input: &PartyInput,
    link: &dyn Link,
    settings: &DistillSettings,
) -> Result<DecoyParams> {
    let mut ch = link.open(StreamId::HANDSHAKE)?;
    match input {
        PartyInput::Alice(log) => {
            let hello = HelloSettings {
                settings: settings.clone(),
                decoy: log.meta().decoy.clone(),
            };
            let msg = Message::Hello {
                run_id: log.header().run_id.0,
                total_slots: log.total_slots(),
                settings: serde_json::to_string(&hello).expect("settings serialize"),
            };
            ch.send_unaccounted(&msg)?;
            match ch.recv(&mut LeakageLedger::default())? {
                Message::HelloAck { run_id } if run_id == log.header().run_id.0 => Ok(hello.decoy),
                Message::HelloAck { run_id } => Err(ConfigError::Mismatch(format!(
                    "Bob's detection log is from run {}, but {} is from run {}",
                    RunId(run_id),
                    log.path().display(),
                    log.header().run_id
                ))
                .into()),
                other => Err(unexpected("HelloAck", &other)),
            }
        }
        PartyInput::Bob(log) => {
            let (run_id, total_slots, text) = match ch.recv(&mut LeakageLedger::default())? {
                Message::Hello {
                    run_id,
                    total_slots,
                    settings,
                } => (run_id, total_slots, settings),
                other => return Err(unexpected("Hello", &other)),
            };
            let refuse = |ch: &mut crate::classical::ClassicalChannel, e: Error| -> Error {
                ch.abort(&e);
                e
            };
            if run_id != log.header().run_id.0 {
                let e = ConfigError::Mismatch(format!(
                    "{} is from run {}, but Alice's preparation log is from run {}; the logs do not belong together",
                    log.path().display(),
                    log.header().run_id,
                    RunId(run_id)
                ))
                .into();
                return Err(refuse(&mut ch, e));
            }
            if let Some(t) = log.meta().total_slots
                && t != total_slots
            {
                let e = ConfigError::Mismatch(format!(
                    "{} covers {t} slots, Alice's log {total_slots}",
                    log.path().display()
                ))
                .into();
                return Err(refuse(&mut ch, e));
            }
            let hello: HelloSettings = serde_json::from_str(&text)
                .map_err(|e| ProtocolError::Malformed(format!("Hello settings: {e}")))?;
            if &hello.settings != settings {
                let e = ProtocolError::Disagreement {
                    what: "session settings",
                    detail: format!("Alice {:?}, Bob {:?}", hello.settings, settings),
                }
                .into();
                return Err(refuse(&mut ch, e));
            }
            hello.decoy.validate()?;
            ch.send_unaccounted(&Message::HelloAck {
                run_id: log.header().run_id.0,
            })?;
            Ok(hello.decoy)
        }
    }
}

fn run_party(
    role: Role,
    input: PartyInput,
    link: Arc<dyn Link>,
    opts: &DistillOptions,
    key_path: PathBuf,
    progress: Arc<dyn Progress + Send + Sync>,
    run_alarms: &[crate::monitors::Alarm],
) -> PartyResult {
    let traffic = Arc::new(Mutex::new(ChannelStats::default()));
    let mut result = PartyResult {
        sink: None,
        metrics: vec![],
        traffic: ChannelStats::default(),
        error: None,
        decoy: None,
    };
    let run = || -> Result<(KeySink, Vec<StageMetrics>, DecoyParams)> {
        let decoy = handshake(&input, link.as_ref(), &opts.settings)?;
        let sink = KeySink::create(&key_path, opts.overwrite)?;
        let calibration = match &input {
            PartyInput::Bob(log) => log
                .meta()
                .extra
                .get("calibration")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default(),
            PartyInput::Alice(_) => Default::default(),
        };
        let session = Arc::new(Session {
            role,
            settings: opts.settings.clone(),
            decoy: decoy.clone(),
            kernels: opts.kernels,
            deterministic_seed: opts.deterministic_seed,
            calibration,
            run_alarms: run_alarms.to_vec(),
        });
        let io = |stream: u32| -> Result<StageIo> {
            Ok(StageIo {
                session: session.clone(),
                channel: link.open(stream)?,
                rng: protocol_rng(opts.deterministic_seed, role, u64::from(stream))?,
                traffic: traffic.clone(),
            })
        };
        let source = match &input {
            PartyInput::Alice(log) => SiftingSource::alice(io(StreamId::SIFTING)?, log.clone()),
            PartyInput::Bob(log) => {
                SiftingSource::bob(io(StreamId::SIFTING)?, log.clone(), progress.clone())?
            }
        };
        let estimation = EstimationStage::new(io(StreamId::ESTIMATION)?);
        let workers = (0..opts.settings.ec_workers)
            .map(|w| io(StreamId::error_correction(w)).map(ErrorCorrectionStage::new))
            .collect::<Result<Vec<_>>>()?;
        let verification = VerificationStage::new(io(StreamId::VERIFICATION)?);
        let amplification = AmplificationStage::new(io(StreamId::AMPLIFICATION)?);
        let mut p = Pipeline::new(opts.settings.queue_capacity);
        let f = p.source(source);
        let f = p.stage(f, estimation);
        let f = p.pool(f, workers);
        let f = p.stage(f, verification);
        let f = p.stage(f, amplification);
        let handle = p.sink(f, "key_store", sink, KeySink::push);
        let (sink, sink_result) = handle
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        let joined = p.join();
        let mut errors: Vec<Error> = vec![];
        if let Err(e) = sink_result {
            errors.push(e);
        }
        let metrics = match joined {
            Ok(m) => m,
            Err(e) => {
                errors.push(e);
                vec![]
            }
        };
        pick_error(errors)?;
        Ok((sink, metrics, decoy))
    };
    match run() {
        Ok((sink, metrics, decoy)) => {
            result.sink = Some(sink);
            result.metrics = metrics;
            result.decoy = Some(decoy);
        }
        Err(e) => result.error = Some(e),
    }
    result.traffic = *traffic.lock().unwrap_or_else(|e| e.into_inner());
    result
}

/// Run a batch distillation of `alice_log` (`.qpl`) and `bob_log` (`.qdl`).
///
/// Returns the report for every completed run, including security aborts and runs without key;
/// returns an error when the run could not be carried out (bad input, I/O, protocol failure).
pub fn distill(
    alice_log: &Path,
    bob_log: &Path,
    opts: &DistillOptions,
    progress: Arc<dyn Progress + Send + Sync>,
) -> Result<DistillReport> {
    let start = Instant::now();
    opts.settings.validate()?;
    let prep = Arc::new(PrepLog::open(alice_log)?);
    let mut det = Arc::new(DetectionLog::open(bob_log)?);
    if prep.header().run_id != det.header().run_id {
        return Err(ConfigError::Mismatch(format!(
            "mismatched logs: {} is from run {} but {} is from run {}",
            alice_log.display(),
            prep.header().run_id,
            bob_log.display(),
            det.header().run_id
        ))
        .into());
    }
    // Resolve an automatic block size from the input: the expected sifted key-basis bits are
    // the detections where both chose the key basis, less the error-estimation sample.
    let mut resolved = opts.clone();
    if resolved.settings.block_bits == 0 {
        let p_key = prep.meta().decoy.prob_key_basis;
        let expected = det.total_records() as f64
            * p_key
            * p_key
            * (1.0 - resolved.settings.qber_sample_fraction);
        resolved.settings.block_bits = crate::config::auto_block_bits(expected as u64);
    }
    let opts = &resolved;
    std::fs::create_dir_all(&opts.out_dir).map_err(|e| Error::io(&opts.out_dir, e))?;
    let files = KeyFiles {
        alice: opts.out_dir.join("alice.key"),
        bob: opts.out_dir.join("bob.key"),
    };
    for f in [&files.alice, &files.bob] {
        if !opts.overwrite && f.exists() {
            return Err(ConfigError::Mismatch(format!(
                "{} already exists; refusing to overwrite it (use --force to replace it)",
                f.display()
            ))
            .into());
        }
    }
    // Raw time tags: synchronise first (Bob's detections → Alice's slots), into a temporary
    // slot-annotated log next to the keys that is removed when the run ends.
    let mut sync_report = None;
    let mut sync_ledger = LeakageLedger::default();
    let _synced_guard;
    let raw_calibration = det.meta().extra.get("calibration").cloned();
    if det.header().flags & crate::io::header::FLAG_SLOT_ANNOTATED == 0 {
        let path = opts
            .out_dir
            .join(format!(".synced-{}.qdl", det.header().run_id));
        _synced_guard = RemoveOnDrop(path.clone());
        let (r, l) = synchronise(&prep, &det, &opts.sync, &path, opts.frame_tap.clone())?;
        sync_report = Some(r);
        sync_ledger = l;
        det = Arc::new(DetectionLog::open(&path)?);
    }
    // Monitors on the run as a whole: Alice's watchdog and, for raw tags, the arrival times.
    let mut run_alarms = crate::monitors::check_watchdog(&prep.meta().extra);
    if let Some(r) = &sync_report {
        let cal: crate::monitors::Calibration = raw_calibration
            .clone()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        run_alarms.extend(crate::monitors::check_arrival_times(r, &cal));
    }
    let (la, lb) = InMemoryLink::pair_tapped(opts.frame_tap.clone());
    let (la, lb): (Arc<dyn Link>, Arc<dyn Link>) = (Arc::new(la), Arc::new(lb));
    let total_slots = prep.total_slots();
    let run_id = prep.header().run_id.to_string();
    let run_alarms = &run_alarms;
    let (alice, bob) = std::thread::scope(|s| {
        let a = {
            let progress = progress.clone();
            let path = files.alice.clone();
            let prep = prep.clone();
            s.spawn(move || {
                run_party(
                    Role::Alice,
                    PartyInput::Alice(prep),
                    la,
                    opts,
                    path,
                    progress,
                    run_alarms,
                )
            })
        };
        let b = {
            let progress = progress.clone();
            let path = files.bob.clone();
            let det = det.clone();
            s.spawn(move || {
                run_party(
                    Role::Bob,
                    PartyInput::Bob(det),
                    lb,
                    opts,
                    path,
                    progress,
                    run_alarms,
                )
            })
        };
        (
            a.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            b.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
        )
    });
    progress.finish();
    // Security aborts first: they are the answer even if the other side saw only a closed
    // channel. Then real errors.
    let mut abort = None;
    let mut errors = vec![];
    for e in [alice.error, bob.error].into_iter().flatten() {
        match e {
            Error::Aborted(AbortReason::PeerAborted { .. }) if abort.is_some() => {}
            Error::Aborted(r) => {
                if abort.is_none() || matches!(abort, Some(AbortReason::PeerAborted { .. })) {
                    abort = Some(r);
                }
            }
            e => errors.push(e),
        }
    }
    if abort.is_none() {
        pick_error(errors)?;
    }
    let decoy = alice
        .decoy
        .or(bob.decoy)
        .unwrap_or_else(|| prep.meta().decoy.clone());
    let (blocks, a_bits, b_bits, digests_match) = match (&alice.sink, &bob.sink) {
        (Some(a), Some(b)) => {
            let same_lengths = a
                .reports
                .iter()
                .map(|r| r.secret_bits)
                .eq(b.reports.iter().map(|r| r.secret_bits));
            (
                b.reports.clone(),
                a.secret_bits,
                b.secret_bits,
                same_lengths && a.digest() == b.digest(),
            )
        }
        _ => (vec![], 0, 0, true),
    };
    if abort.is_none() && !digests_match {
        return Err(ProtocolError::Disagreement {
            what: "final keys",
            detail: format!(
                "Alice's and Bob's keys differ ({a_bits} and {b_bits} bits); no key files written"
            ),
        }
        .into());
    }
    let mut ledger = sync_ledger;
    for b in &blocks {
        ledger.add(&b.ledger);
    }
    let sifted_bits: u64 = blocks.iter().map(|b| b.sifted_key_bits).sum();
    let detections: u64 = blocks.iter().map(|b| b.detections).sum();
    let (ec_bits, ec_errors) = blocks
        .iter()
        .filter_map(|b| b.error_correction.as_ref())
        .fold((0u64, 0u64), |(n, e), r| {
            (n + r.bits, e + r.corrected_errors.unwrap_or(0))
        });
    let qber = if ec_bits > 0 {
        ec_errors as f64 / ec_bits as f64
    } else {
        let w: u64 = blocks.iter().map(|b| b.sifted_key_bits).sum();
        if w > 0 {
            blocks
                .iter()
                .map(|b| b.qber_estimate * b.sifted_key_bits as f64)
                .sum::<f64>()
                / w as f64
        } else {
            0.0
        }
    };
    let blocks_ok = blocks
        .iter()
        .filter(|b| b.outcome == BlockOutcome::Key)
        .count() as u64;
    let (outcome, reason, key_files) = if let Some(r) = &abort {
        (RunOutcome::Aborted, Some(r.to_string()), None)
    } else if a_bits == 0 {
        let why = if blocks.is_empty() {
            "no key: the detection log holds no sifted detections".to_string()
        } else {
            let reasons: Vec<String> = blocks
                .iter()
                .filter_map(|b| match &b.outcome {
                    BlockOutcome::NoKey { reason } => Some(format!("block {}: {reason}", b.id)),
                    _ => None,
                })
                .collect();
            format!("no key: {}", reasons.join("; "))
        };
        (RunOutcome::NoKey, Some(why), None)
    } else {
        (RunOutcome::Key, None, Some(files.clone()))
    };
    if outcome == RunOutcome::Key {
        // Commit both only when both are complete and equal.
        alice.sink.expect("alice sink").commit()?;
        bob.sink.expect("bob sink").commit()?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut channel = alice.traffic;
    channel.add(&bob.traffic);
    Ok(DistillReport {
        tool: format!("qkd-distill {}", env!("CARGO_PKG_VERSION")),
        run_id,
        alice_log: alice_log.to_path_buf(),
        bob_log: bob_log.to_path_buf(),
        outcome,
        aborted: outcome == RunOutcome::Aborted,
        abort_reason: reason,
        alarms: match &abort {
            Some(AbortReason::MonitorAlarm { alarms, .. }) => alarms.clone(),
            _ => Vec::new(),
        },
        abort,
        total_slots,
        detections,
        sifted_bits,
        qber,
        leaked_bits: ledger.subtracted(),
        secret_bits: if outcome == RunOutcome::Key {
            a_bits
        } else {
            0
        },
        epsilon_sec: opts.settings.epsilon_sec,
        epsilon_cor: opts.settings.epsilon_cor,
        blocks_ok,
        blocks_failed: blocks.len() as u64 - blocks_ok,
        elapsed_s: elapsed,
        sifted_bits_per_s: sifted_bits as f64 / elapsed.max(1e-9),
        secret_bits_per_s: if outcome == RunOutcome::Key {
            a_bits as f64 / elapsed.max(1e-9)
        } else {
            0.0
        },
        key_files,
        ledger,
        settings: opts.settings.clone(),
        decoy,
        isa: opts.kernels.isa().to_string(),
        deterministic_rng: opts.deterministic_seed.is_some(),
        channel,
        security: SecurityAccount::new(&opts.settings, &blocks),
        sync: sync_report,
        blocks,
        stages: PartyMetrics {
            alice: alice.metrics,
            bob: bob.metrics,
        },
    })
}
