//! A batch distillation: two [`Party`]s, Alice and Bob, each on its own threads over the
//! in-process link ([`crate::classical::in_memory_pair`]), each owning only its own log; two
//! key files and a report out.
//! The report is assembled from the two parties' own results (public counts, never key bits).

use crate::block::{BlockOutcome, BlockReport};
use crate::classical::auth::AuthReport;
use crate::classical::{ChannelStats, FrameTap, Link, in_memory_pair};
use crate::config::DistillSettings;
use crate::error::{AbortReason, Alarm, ConfigError, Error, ProtocolError, Result};
use crate::kernels::Kernels;
use crate::keystore::{KeyFile, commit_pair, recover_pair};
use crate::ledger::LeakageLedger;
use crate::monitors::MonitorSummary;
use crate::party::{Party, PartyConfig, PartyInput, PartyResult, PartyRun};
use crate::pipeline::{StageMetrics, pick_error};
use crate::progress::Progress;
use crate::protocol::{DecoyParams, Role};
use crate::protocols::{Proof, ProofStatement, ProtocolKind};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
    /// Put the keys into the key stores `STORE/alice` and `STORE/bob` (docs/keys.md) instead
    /// of key files; they enter the stores only when the run completed.
    pub store: Option<PathBuf>,
    /// Write the JSON report here, committed together with the keys.
    pub report: Option<PathBuf>,
}

/// Where a batch party's key goes until the run is known to have completed.
pub enum BatchSink {
    /// A key file (`.partial` until committed).
    File(KeyFile),
    /// A key store's staging folder.
    Store(crate::keystore::StoreInbox),
}

impl BatchSink {
    fn commit(self) -> Result<()> {
        match self {
            BatchSink::File(f) => f.commit().map(|_| ()),
            BatchSink::Store(s) => s.commit(),
        }
    }
}

impl crate::keystore::KeySink for BatchSink {
    fn append(&mut self, block: &BlockReport, key: &crate::block::SecretKey) -> Result<()> {
        match self {
            BatchSink::File(f) => f.append(block, key),
            BatchSink::Store(s) => s.append(block, key),
        }
    }
}

/// The security statement of a run, term by term (docs/security.md lists the same terms).
///
/// Each block's key is ε_sec-secret and ε_cor-correct per its proof; by composability
/// (Portmann, Renner; Tomamichel et al. 2012) the key file of B blocks is B·ε_sec-secret and
/// B·ε_cor-correct. Run-level values are these sums; per-block values are labelled as such.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecurityAccount {
    /// The proof the lengths rest on, its assumptions and what it does not cover.
    pub proof: ProofStatement,
    /// The key is secure by a proven bound with private randomness (false for an unproven
    /// protocol, or when protocol randomness was deterministic).
    pub secure: bool,
    /// Why ε is withdrawn (deterministic randomness), if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<String>,
    /// Blocks whose keys are in the key file.
    pub blocks_with_key: u64,
    /// Secrecy of the run's key: blocks_with_key · ε_sec per block (None when withdrawn).
    pub epsilon_sec: Option<f64>,
    /// Correctness of the run's key: blocks_with_key · ε_cor per block (None when withdrawn).
    pub epsilon_cor: Option<f64>,
    /// ε_sec + ε_cor + ε_auth of the run (None when withdrawn).
    pub epsilon_total: Option<f64>,
    /// ε_auth: the sum over every authentication tag verified in the run (both directions)
    /// of its forgery bound ((L + 1)/2^64)² (docs/security.md).
    #[serde(default)]
    pub epsilon_auth: f64,
    /// ε_sec of each block's key.
    pub epsilon_sec_per_block: f64,
    /// ε_cor of each block's key.
    pub epsilon_cor_per_block: f64,
    /// The smallest term of the block's ε_sec composition (Lim et al.: ε_sec/21).
    pub epsilon_per_term: f64,
    /// Bits charged per block for the ε terms (Lim: 6·log₂(21/ε_sec); others:
    /// 2·log₂(1/ε_sec)).
    pub security_cost_bits_per_block: f64,
    /// Verification: the sum over the key's blocks of the bound on a wrong frame passing the
    /// tags (each block's is ≤ ε_cor).
    pub verification_collision_bound: f64,
    /// The formula for each block's length.
    pub bound: String,
    /// What is subtracted from each block.
    pub subtracted: Vec<String>,
    /// Disclosed but not subtracted, with the reason.
    pub not_subtracted: Vec<String>,
}

impl SecurityAccount {
    /// The account for `settings`, the proof, the blocks of a run and whether its randomness
    /// was deterministic.
    pub fn new(
        settings: &DistillSettings,
        proof: Proof,
        blocks: &[BlockReport],
        deterministic: bool,
    ) -> SecurityAccount {
        let eps = settings.epsilon_sec;
        let statement = proof.statement();
        let with_key: Vec<&BlockReport> = blocks
            .iter()
            .filter(|b| b.outcome == BlockOutcome::Key)
            .collect();
        let n = with_key.len() as u64;
        let withdrawn = deterministic.then(|| {
            "protocol randomness was deterministic (--insecure-deterministic-rng): the samples, hash keys and Toeplitz seeds are predictable, so no ε holds and the key is NOT secure".to_string()
        });
        let composed = |per_block: f64| (!deterministic).then_some(n as f64 * per_block);
        let (per_term, cost) = match proof {
            Proof::Lim2014 => (eps / 21.0, 6.0 * (21.0 / eps).log2()),
            Proof::Tomamichel2012 => (eps / 4.0, 2.0 * (1.0 / eps).log2()),
            Proof::Acin2007 => (eps / 2.0, 2.0 * (1.0 / eps).log2()),
            Proof::Noh09Illustrative => (0.0, 2.0 * (1.0 / eps).log2()),
        };
        SecurityAccount {
            secure: statement.security_proven && !deterministic,
            bound: statement.formula.clone(),
            proof: statement,
            withdrawn,
            blocks_with_key: n,
            epsilon_sec: composed(eps),
            epsilon_cor: composed(settings.epsilon_cor),
            epsilon_total: composed(eps + settings.epsilon_cor),
            epsilon_auth: 0.0,
            epsilon_sec_per_block: eps,
            epsilon_cor_per_block: settings.epsilon_cor,
            epsilon_per_term: per_term,
            security_cost_bits_per_block: cost,
            verification_collision_bound: with_key
                .iter()
                .filter_map(|b| b.verification.as_ref().map(|v| v.collision_bound))
                .sum(),
            subtracted: vec![
                "error_correction: Cascade parity answers (Alice's), LDPC syndromes (minus punctured bits), revealed bits".into(),
                "reply: Bob's key-dependent answers, one bit each: the error parity of every Cascade parity Alice answered (revealed by his next query), LDPC decoding status per frame and round, verification verdicts per frame".into(),
                "verification: 64-bit hash tags, at least log₂(2/ε_cor)".into(),
                "discarded frames: bits of frames whose tags failed".into(),
            ],
            not_subtracted: vec![
                "sifting: slots, bases / settings, intensity classes, post-selected slots (independent of the bit values)".into(),
                "test_basis: test bits (not key bits; they give the phase error or S)".into(),
                "qber_sample: key bits disclosed and removed from the key".into(),
                "sync_sample: Alice's symbols of the synchronisation window (those slots leave the key)".into(),
                "confirmation: key-confirmation tags, one-time padded with 64 key bits that leave the key".into(),
                "public_randomness: seeds of permutations, samples, hash keys, Toeplitz matrices (independent of the key)".into(),
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

/// Both parties' authentication reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Authentication {
    /// Alice's.
    pub alice: Option<AuthReport>,
    /// Bob's.
    pub bob: Option<AuthReport>,
}

/// The JSON report of `qkd distill`, the same for every protocol.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DistillReport {
    /// Producer and version.
    pub tool: String,
    /// The protocol.
    pub protocol: ProtocolKind,
    /// Run id of the logs.
    pub run_id: String,
    /// Alice's log.
    pub alice_log: PathBuf,
    /// Bob's log.
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
    pub alarms: Vec<Alarm>,
    /// Every monitor of the run, ran or skipped (with why).
    pub monitors: Vec<MonitorSummary>,
    /// Warnings for the user (monitors that cannot run, insecure randomness, …).
    pub warnings: Vec<String>,
    /// Slots in the run.
    pub total_slots: u64,
    /// Detected (announced) slots.
    pub detections: u64,
    /// Sifted key bits.
    pub sifted_bits: u64,
    /// Error rate of the reconciled bits (errors corrected / bits), or the estimate if nothing
    /// was reconciled.
    pub qber: f64,
    /// Bits subtracted for disclosure (error correction, replies, verification), all blocks.
    pub leaked_bits: u64,
    /// Secret key bits produced (per party).
    pub secret_bits: u64,
    /// Secrecy of the run's key, composed over its blocks (None when ε is withdrawn).
    pub epsilon_sec: Option<f64>,
    /// Correctness of the run's key, composed over its blocks (None when withdrawn).
    pub epsilon_cor: Option<f64>,
    /// Secrecy parameter of each block's key.
    pub epsilon_sec_per_block: f64,
    /// Correctness parameter of each block's key.
    pub epsilon_cor_per_block: f64,
    /// The key is secure by a proven bound with private randomness.
    pub secure: bool,
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
    /// Disclosure over all blocks (and the synchronisation), by kind.
    pub ledger: LeakageLedger,
    /// Settings (as agreed in the handshake).
    pub settings: DistillSettings,
    /// Decoy-state source parameters used by the bound (BB84).
    pub decoy: Option<DecoyParams>,
    /// Kernel ISA.
    pub isa: String,
    /// Protocol randomness was deterministic (insecure test mode).
    pub deterministic_rng: bool,
    /// Classical-channel traffic sent by Alice and by Bob.
    pub channel: ChannelStats,
    /// Every ε term of the security statement and every subtracted kind of disclosure
    /// (docs/security.md), and the proof.
    pub security: SecurityAccount,
    /// Time synchronisation of raw time tags (when Bob's log was not slot-annotated).
    pub sync: Option<crate::sync::SyncReport>,
    /// Authentication of the classical channel, each party's view (tags, pad bits consumed
    /// and refilled, pool level, ε of the tags it verified).
    pub authentication: Authentication,
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

/// Synchronise Bob's raw time tags against Alice's preparation log on their own (`qkd sync`):
/// both parties run their side ([`crate::sync::alice_sync`], [`crate::sync::bob_sync`]) over
/// an in-process classical channel; Bob writes the slot-annotated log `out`. Returns the report
/// and the disclosure.
pub fn synchronise(
    prep: &crate::io::PrepLog,
    det: &crate::io::DetectionLog,
    opts: &crate::sync::SyncOptions,
    out: &Path,
    tap: Option<FrameTap>,
) -> Result<(crate::sync::SyncReport, LeakageLedger)> {
    use crate::stages::StreamId;
    let (la, lb) = in_memory_pair(64, None, tap)?;
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

/// The two parties' logs, opened, and the protocol they share.
fn open_inputs(alice_log: &Path, bob_log: &Path) -> Result<(PartyInput, PartyInput)> {
    let a = PartyInput::open(alice_log)?;
    let b = PartyInput::open(bob_log)?;
    let (pa, pb) = (a.protocol()?, b.protocol()?);
    if pa != pb {
        return Err(ConfigError::Mismatch(format!(
            "{} is a {} log but {} is a {} log; the logs do not belong together",
            alice_log.display(),
            pa.name(),
            bob_log.display(),
            pb.name()
        ))
        .into());
    }
    if a.run_id() != b.run_id() {
        return Err(ConfigError::Mismatch(format!(
            "mismatched logs: {} is from run {} but {} is from run {}",
            alice_log.display(),
            a.run_id(),
            bob_log.display(),
            b.run_id()
        ))
        .into());
    }
    Ok((a, b))
}

/// The key files of a run, refusing existing ones unless they may be replaced.
fn key_files(opts: &DistillOptions) -> Result<KeyFiles> {
    if let Some(store) = &opts.store {
        return Ok(KeyFiles {
            alice: store.join("alice"),
            bob: store.join("bob"),
        });
    }
    std::fs::create_dir_all(&opts.out_dir).map_err(|e| Error::io(&opts.out_dir, e))?;
    Ok(KeyFiles {
        alice: opts.out_dir.join("alice.key"),
        bob: opts.out_dir.join("bob.key"),
    })
}

/// Every file a batch run writes, checked against the rule of [`crate::io::outputs`] before
/// any work starts.
fn check_outputs(alice_log: &Path, bob_log: &Path, opts: &DistillOptions) -> Result<()> {
    let mut plan = crate::io::OutputPlan::new(opts.overwrite);
    plan.input(alice_log).input(bob_log);
    if opts.store.is_none() {
        plan.output(&opts.out_dir.join("alice.key"), "Alice's key")
            .output(&opts.out_dir.join("bob.key"), "Bob's key");
    }
    plan.output_opt(opts.report.as_deref(), "--report");
    plan.check()
}

/// Run both parties, each on its own thread, over an in-memory link.
fn run_parties(
    alice: &Party,
    bob: &Party,
    files: &KeyFiles,
    opts: &DistillOptions,
    progress: Arc<dyn Progress + Send + Sync>,
) -> Result<(PartyRun<BatchSink>, PartyRun<BatchSink>)> {
    let (sink_a, sink_b) = match &opts.store {
        Some(_) => {
            let run = alice.input().run_id().to_string();
            let protocol = alice.input().protocol()?;
            (
                BatchSink::Store(crate::keystore::StoreInbox::staged(
                    &files.alice,
                    crate::protocol::Role::Alice,
                    &run,
                    protocol,
                )?),
                BatchSink::Store(crate::keystore::StoreInbox::staged(
                    &files.bob,
                    crate::protocol::Role::Bob,
                    &run,
                    protocol,
                )?),
            )
        }
        None => (
            BatchSink::File(KeyFile::create(&files.alice, opts.overwrite)?),
            BatchSink::File(KeyFile::create(&files.bob, opts.overwrite)?),
        ),
    };
    // The in-process link authenticates like a TCP link between sites, with an ephemeral
    // pool: a few tags per block and direction.
    let blocks = bob.input().detection_records() / opts.settings.block_bits.max(1 << 10) + 16;
    let (la, lb) = in_memory_pair(
        (16 * blocks).min(1 << 24) as usize,
        opts.deterministic_seed,
        opts.frame_tap.clone(),
    )?;
    let (la, lb): (Arc<dyn Link>, Arc<dyn Link>) = (Arc::new(la), Arc::new(lb));
    let runs = std::thread::scope(|s| {
        let pa = progress.clone();
        let a = s.spawn(move || alice.run(la, sink_a, pa));
        let b = s.spawn(move || bob.run(lb, sink_b, progress));
        (
            a.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            b.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
        )
    });
    Ok(runs)
}

/// A security abort is the run's answer even if the other side saw only a closed channel;
/// otherwise the most informative error.
fn abort_or_error(alice: &mut PartyResult, bob: &mut PartyResult) -> Result<Option<AbortReason>> {
    let mut abort = None;
    let mut errors = vec![];
    for e in [alice.error.take(), bob.error.take()].into_iter().flatten() {
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
    Ok(abort)
}

/// The parties' public per-block outcomes must agree (their keys were confirmed by message,
/// block by block; this compares only lengths and outcomes).
fn check_agreement(alice: &PartyResult, bob: &PartyResult) -> Result<()> {
    let lengths = |r: &PartyResult| -> Vec<(u64, u64)> {
        r.blocks.iter().map(|b| (b.id, b.secret_bits)).collect()
    };
    if lengths(alice) != lengths(bob) || alice.secret_bits != bob.secret_bits {
        return Err(ProtocolError::Disagreement {
            what: "final keys",
            detail: format!(
                "Alice committed {} bits in {} blocks, Bob {} bits in {}; no key files written",
                alice.secret_bits,
                alice.blocks.len(),
                bob.secret_bits,
                bob.blocks.len()
            ),
        }
        .into());
    }
    Ok(())
}

/// The run's error rate: corrected errors over reconciled bits, or the blocks' estimates.
fn run_qber(blocks: &[BlockReport]) -> f64 {
    let (ec_bits, ec_errors) = blocks
        .iter()
        .filter_map(|b| b.error_correction.as_ref())
        .fold((0u64, 0u64), |(n, e), r| {
            (n + r.bits, e + r.corrected_errors.unwrap_or(0))
        });
    if ec_bits > 0 {
        return ec_errors as f64 / ec_bits as f64;
    }
    let w: u64 = blocks.iter().map(|b| b.sifted_key_bits).sum();
    if w == 0 {
        return 0.0;
    }
    blocks
        .iter()
        .map(|b| b.qber_estimate * b.sifted_key_bits as f64)
        .sum::<f64>()
        / w as f64
}

/// Why a run that completed produced no key.
fn no_key_reason(blocks: &[BlockReport]) -> String {
    if blocks.is_empty() {
        return "no key: the logs hold no sifted detections".to_string();
    }
    let reasons: Vec<String> = blocks
        .iter()
        .filter_map(|b| match &b.outcome {
            BlockOutcome::NoKey { reason } => Some(format!("block {}: {reason}", b.id)),
            _ => None,
        })
        .collect();
    format!("no key: {}", reasons.join("; "))
}

/// Run a batch distillation of `alice_log` and `bob_log`: decoy-state BB84 (Alice's `.qpl`,
/// Bob's `.qdl`, slot-annotated or raw time tags) or an entangled or Noh09 run (both `.qdl`).
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
    let (a_in, b_in) = open_inputs(alice_log, bob_log)?;
    let protocol = a_in.protocol()?;
    let guard = OutputGuard::acquire(opts)?;
    check_outputs(alice_log, bob_log, opts)?;
    let files = key_files(opts)?;
    let config = |role| PartyConfig {
        role,
        settings: opts.settings.clone(),
        deterministic_seed: opts.deterministic_seed,
        kernels: opts.kernels,
        sync: opts.sync.clone(),
        work_dir: opts.out_dir.clone(),
        resume: Default::default(),
        stop: Default::default(),
    };
    let alice = Party::new(a_in, config(Role::Alice))?;
    let bob = Party::new(b_in, config(Role::Bob))?;
    let (a_run, b_run) = run_parties(&alice, &bob, &files, opts, progress.clone())?;
    progress.finish();
    let (mut a, mut b) = (a_run.result, b_run.result);
    let abort = abort_or_error(&mut a, &mut b)?;
    if abort.is_none() {
        check_agreement(&a, &b)?;
    }
    let agreed = b.agreed.clone().or_else(|| a.agreed.clone());
    let settings = agreed
        .as_ref()
        .map_or_else(|| opts.settings.clone(), |x| x.settings.clone());
    let blocks = if abort.is_some() {
        vec![]
    } else {
        b.blocks.clone()
    };
    let mut ledger = b.sync_ledger;
    for blk in &blocks {
        ledger.add(&blk.ledger);
    }
    let blocks_ok = blocks
        .iter()
        .filter(|b| b.outcome == BlockOutcome::Key)
        .count() as u64;
    let secret = if abort.is_none() { a.secret_bits } else { 0 };
    let (outcome, reason, key_files) = match &abort {
        Some(r) => (RunOutcome::Aborted, Some(r.to_string()), None),
        None if secret == 0 => (RunOutcome::NoKey, Some(no_key_reason(&blocks)), None),
        None => (RunOutcome::Key, None, Some(files.clone())),
    };
    let is_key = outcome == RunOutcome::Key;
    let mut rep = report(Finished {
        protocol,
        run_id: alice.input().run_id().to_string(),
        logs: (alice_log.to_path_buf(), bob_log.to_path_buf()),
        alice: a,
        bob: b,
        agreed,
        settings,
        blocks,
        ledger,
        abort,
        outcome,
        reason,
        key_files,
        secret,
        blocks_ok,
        elapsed: start.elapsed().as_secs_f64(),
        opts,
    });
    rep.warnings.extend(guard.notes.iter().cloned());
    // The report is written with the keys, in one commit: the keys, the report and the exit
    // code tell the same story (a failure to write either leaves neither).
    let report_file = match &opts.report {
        Some(p) => {
            let text = serde_json::to_string_pretty(&rep).expect("report serializes") + "\n";
            let mut f = crate::io::AtomicFile::create(p, true, false)?;
            f.write_all(text.as_bytes())?;
            Some(f.prepare()?)
        }
        None => None,
    };
    if is_key {
        // Commit both only when both completed and every block was confirmed on both sides.
        commit_sinks(
            a_run.sink.expect("Alice's key file"),
            b_run.sink.expect("Bob's key file"),
            report_file,
        )?;
    } else if let Some(f) = report_file {
        f.commit()?;
    }
    Ok(rep)
}

/// Commit both parties' keys together (key files: one pair commit, [`commit_pair`]).
fn commit_sinks(
    a: BatchSink,
    b: BatchSink,
    report: Option<crate::io::atomic_file::PreparedFile>,
) -> Result<()> {
    match (a, b) {
        (BatchSink::File(a), BatchSink::File(b)) => {
            commit_pair(a, b, report.into_iter().collect()).map(|_| ())
        }
        (a, b) => {
            a.commit()?;
            b.commit()?;
            if let Some(r) = report {
                r.commit()?;
            }
            Ok(())
        }
    }
}

/// The output folders of a batch run, locked for the run (`.qkd.lock`), and recovered from a
/// crash of an earlier run before anything is checked or written.
struct OutputGuard {
    _locks: Vec<crate::io::DirLock>,
    created: Option<(PathBuf, crate::io::outputs::CreatedDirs)>,
    notes: Vec<String>,
}

impl OutputGuard {
    fn acquire(opts: &DistillOptions) -> Result<OutputGuard> {
        let mut notes = vec![];
        let (dirs, created) = match &opts.store {
            Some(s) => (vec![s.join("alice"), s.join("bob")], None),
            None => {
                let c = crate::io::outputs::CreatedDirs::create(&opts.out_dir)?;
                (vec![opts.out_dir.clone()], Some((opts.out_dir.clone(), c)))
            }
        };
        let mut locks = vec![];
        for d in &dirs {
            locks.push(crate::io::DirLock::acquire(d, "distill")?);
        }
        if opts.store.is_none() {
            let r = recover_pair(&opts.out_dir, &["alice.key", "bob.key"])?;
            for p in &r.completed {
                notes.push(format!(
                    "{}: completed the commit of a key pair that an earlier run was interrupted in",
                    p.display()
                ));
            }
            for p in &r.removed {
                notes.push(format!(
                    "{}: removed (the temporary key file of an earlier run that never finished)",
                    p.display()
                ));
            }
        }
        Ok(OutputGuard {
            _locks: locks,
            created,
            notes,
        })
    }
}

impl Drop for OutputGuard {
    /// A run that wrote nothing leaves no empty folder behind (the lock file is removed with
    /// a folder this run created; an existing folder keeps it).
    fn drop(&mut self) {
        if let Some((dir, c)) = self.created.take() {
            let only_lock = std::fs::read_dir(&dir).is_ok_and(|it| {
                it.filter_map(|e| e.ok())
                    .all(|e| e.file_name() == crate::io::lock::LOCK_FILE)
            });
            if only_lock {
                let _ = std::fs::remove_file(dir.join(crate::io::lock::LOCK_FILE));
                c.remove_if_empty();
            }
        }
    }
}

/// Everything a finished run's report is made of.
struct Finished<'a> {
    protocol: ProtocolKind,
    run_id: String,
    logs: (PathBuf, PathBuf),
    alice: PartyResult,
    bob: PartyResult,
    agreed: Option<crate::party::Agreed>,
    settings: DistillSettings,
    blocks: Vec<BlockReport>,
    ledger: LeakageLedger,
    abort: Option<AbortReason>,
    outcome: RunOutcome,
    reason: Option<String>,
    key_files: Option<KeyFiles>,
    secret: u64,
    blocks_ok: u64,
    elapsed: f64,
    opts: &'a DistillOptions,
}

/// The report of a finished run: the security account, warnings and monitors of both parties,
/// and the totals.
fn report(f: Finished<'_>) -> DistillReport {
    let Finished {
        protocol,
        run_id,
        logs: (alice_log, bob_log),
        alice: a,
        bob: b,
        agreed,
        settings,
        blocks,
        ledger,
        abort,
        outcome,
        reason,
        key_files,
        secret,
        blocks_ok,
        elapsed,
        opts,
    } = f;
    let deterministic = opts.deterministic_seed.is_some();
    let mut security = SecurityAccount::new(&settings, protocol.proof(), &blocks, deterministic);
    security.epsilon_auth = [&a.auth, &b.auth]
        .iter()
        .filter_map(|r| r.as_ref().map(|r| r.epsilon))
        .sum();
    if let Some(t) = security.epsilon_total.as_mut() {
        *t += security.epsilon_auth;
    }
    let mut warnings = a.warnings.clone();
    warnings.extend(b.warnings.iter().cloned());
    if let Some(w) = &security.withdrawn {
        warnings.push(w.clone());
    }
    if !security.proof.security_proven {
        warnings.push(format!(
            "NOT security-proven: {} ({})",
            security
                .proof
                .not_covered
                .first()
                .cloned()
                .unwrap_or_default(),
            security.proof.reference
        ));
    }
    let mut statuses = a.monitors.clone();
    statuses.extend(b.monitors.iter().cloned());
    for blk in &blocks {
        statuses.extend(blk.monitors.iter().cloned());
    }
    let sifted_bits: u64 = blocks.iter().map(|b| b.sifted_key_bits).sum();
    let mut channel = a.traffic;
    channel.add(&b.traffic);
    DistillReport {
        tool: format!("qkd-distill {}", env!("CARGO_PKG_VERSION")),
        protocol,
        run_id,
        alice_log,
        bob_log,
        outcome,
        aborted: outcome == RunOutcome::Aborted,
        abort_reason: reason,
        alarms: match &abort {
            Some(AbortReason::MonitorAlarm { alarms, .. }) => alarms.clone(),
            _ => Vec::new(),
        },
        abort,
        monitors: crate::monitors::summarize(&statuses),
        warnings,
        total_slots: agreed.as_ref().map_or(0, |x| x.total_slots),
        detections: blocks.iter().map(|b| b.detections).sum(),
        sifted_bits,
        qber: run_qber(&blocks),
        leaked_bits: ledger.subtracted(),
        secret_bits: secret,
        epsilon_sec: security.epsilon_sec,
        epsilon_cor: security.epsilon_cor,
        epsilon_sec_per_block: settings.epsilon_sec,
        epsilon_cor_per_block: settings.epsilon_cor,
        secure: security.secure && outcome == RunOutcome::Key,
        blocks_ok,
        blocks_failed: blocks.len() as u64 - blocks_ok,
        elapsed_s: elapsed,
        sifted_bits_per_s: sifted_bits as f64 / elapsed.max(1e-9),
        secret_bits_per_s: secret as f64 / elapsed.max(1e-9),
        key_files,
        ledger,
        decoy: agreed.as_ref().and_then(|x| x.decoy.clone()),
        settings,
        isa: opts.kernels.isa().to_string(),
        deterministic_rng: deterministic,
        channel,
        security,
        sync: b.sync.clone(),
        authentication: Authentication {
            alice: a.auth.clone(),
            bob: b.auth.clone(),
        },
        blocks,
        stages: PartyMetrics {
            alice: a.metrics,
            bob: b.metrics,
        },
    }
}
