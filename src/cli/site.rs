//! `qkd auth-key`, `qkd alice`, `qkd bob`: the two sites of a deployment.

use super::distill::SettingsArgs;
use super::output::{TermProgress, print_json, thousands, write_json};
use clap::Args;
use qkd_distill::error::{ConfigError, Error, Result};
use qkd_distill::kernels::Kernels;
use qkd_distill::protocol::Role;
use qkd_distill::site::{Endpoint, SiteOptions, SiteOutcome, SiteReport, run_site};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

#[derive(Args)]
pub struct AuthKeyArgs {
    /// Pad bits of the pool (each authentication tag uses 128).
    #[arg(long, default_value_t = 1 << 20)]
    pub bits: u64,
    /// Alice's half.
    #[arg(long)]
    pub out: PathBuf,
    /// Bob's half (carry it to the other site by a trusted path).
    #[arg(long)]
    pub out_peer: PathBuf,
    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
}

pub fn run_auth_key(a: AuthKeyArgs) -> Result<u8> {
    let id = qkd_distill::classical::auth::generate_pair(a.bits, &a.out, &a.out_peer, a.force)?;
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    println!(
        "authentication key pool {hex}: {} pad bits ({} tags per direction) in {} (Alice) and {} (Bob), mode 0600",
        thousands(a.bits.div_ceil(256) * 256),
        thousands(a.bits.div_ceil(256)),
        a.out.display(),
        a.out_peer.display()
    );
    Ok(0)
}

/// Options of both sites.
#[derive(Args)]
pub struct SiteArgs {
    /// Wait for the peer on ADDR (host:port).
    #[arg(
        long,
        value_name = "ADDR",
        required_unless_present = "connect",
        conflicts_with = "connect"
    )]
    pub listen: Option<String>,
    /// Connect to the peer at ADDR (host:port).
    #[arg(long, value_name = "ADDR")]
    pub connect: Option<String>,
    /// This site's half of the pre-shared authentication key (`qkd auth-key`).
    #[arg(long)]
    pub auth_key: PathBuf,
    /// Directory for the key file (alice.key / bob.key) and its session state.
    #[arg(long, required_unless_present = "store")]
    pub out: Option<PathBuf>,
    /// Put the keys into this key store (for `qkd kme` and `qkd keys`) instead of a key file.
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Write the JSON report to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Print the JSON report on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Start the run anew, replacing an earlier key file and session state in --out.
    #[arg(long)]
    pub force: bool,
    /// Seconds to keep trying to reach the peer (connect with backoff, or wait for it).
    #[arg(long, default_value_t = 120.0)]
    pub connect_timeout_s: f64,
    /// Seconds without a frame from the peer before a session is given up.
    #[arg(long, default_value_t = 60.0)]
    pub peer_timeout_s: f64,
    /// Test option: delay every received frame by this many ms (one way; RTT = 2×).
    #[arg(long, default_value_t = 0.0)]
    pub link_delay_ms: f64,
    /// Largest number of sessions (the first and the resumed ones after dropped connections).
    #[arg(long, default_value_t = 100)]
    pub max_sessions: u32,
    /// Bits of each committed block key moved into the authentication pool (both sites must
    /// agree).
    #[arg(long, default_value_t = 1024)]
    pub auth_refill_bits: u64,
    /// The logs are still being written: wait for their next blocks (until the log is
    /// complete, or SIGINT/SIGTERM), distilling each block as soon as it is full (both sites).
    #[arg(long)]
    pub follow: bool,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

#[derive(Args)]
pub struct AliceArgs {
    /// Alice's log: the preparation log (.qpl), or her .qdl of an entangled/Noh09 run.
    #[arg(long, visible_alias = "log")]
    pub prep: PathBuf,
    #[command(flatten)]
    pub site: SiteArgs,
}

#[derive(Args)]
pub struct BobArgs {
    /// Bob's detection log (.qdl), or a time tagger's file with --format.
    #[arg(long, visible_alias = "log")]
    pub detections: PathBuf,
    #[command(flatten)]
    pub format: super::import::ImportFormatArgs,
    #[command(flatten)]
    pub site: SiteArgs,
}

/// The first SIGINT/SIGTERM asks both sites to stop at the next block boundary; a second one
/// ends the process at once (the key file and its state stay consistent).
fn stop_on_signals() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let e = |e: std::io::Error| Error::io("signal handler", e);
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone()).map_err(e)?;
        signal_hook::flag::register(sig, stop.clone()).map_err(e)?;
    }
    Ok(stop)
}

impl SiteArgs {
    /// The directory of the key file or, with a store, of the site's work files.
    fn out_dir(&self) -> PathBuf {
        match (&self.out, &self.store) {
            (Some(o), _) => o.clone(),
            (None, Some(s)) => s.join("work"),
            (None, None) => PathBuf::from("."),
        }
    }
}

/// The outputs of a site, checked before it starts. The report of an earlier session of a
/// site (a run being resumed) may be replaced by the new one: it is the same run's report.
fn check_outputs(log: &Path, a: &SiteArgs) -> Result<()> {
    let earlier_report = a.report.as_deref().is_some_and(|p| {
        std::fs::read(p)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|v| v.get("sessions").is_some() && v.get("committed_blocks").is_some())
    });
    let mut plan = qkd_distill::io::OutputPlan::new(a.force || earlier_report);
    plan.input(log).input(&a.auth_key);
    plan.output_opt(a.report.as_deref(), "--report");
    plan.check()?;
    // The key files are not in the plan (a site appends to its own key file when resuming),
    // but the report must not land on them.
    if let Some(r) = &a.report {
        let out = a.out_dir();
        qkd_distill::io::OutputPlan::new(true)
            .input(&out.join("alice.key"))
            .input(&out.join("bob.key"))
            .output(r, "--report")
            .check()?;
    }
    Ok(())
}

fn options(role: Role, log: PathBuf, a: &SiteArgs) -> Result<SiteOptions> {
    check_outputs(&log, a)?;
    let mut settings = a.settings.settings()?;
    settings.auth_refill_bits = a.auth_refill_bits;
    settings.follow = a.follow;
    let endpoint = match (&a.listen, &a.connect) {
        (Some(l), None) => Endpoint::Listen(l.clone()),
        (None, Some(c)) => Endpoint::Connect(c.clone()),
        _ => return Err(ConfigError::invalid("listen/connect", "give exactly one").into()),
    };
    let secs = |name: &'static str, v: f64| -> Result<Duration> {
        if (0.0..1e7).contains(&v) {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(ConfigError::invalid(name, format!("{v} s")).into())
        }
    };
    Ok(SiteOptions {
        role,
        log,
        endpoint,
        auth_key: a.auth_key.clone(),
        out_dir: a.out_dir(),
        store: a.store.clone(),
        settings,
        deterministic_seed: a.settings.insecure_deterministic_rng,
        kernels: Kernels::detect(),
        sync: Default::default(),
        fresh: a.force,
        connect_timeout: secs("connect-timeout-s", a.connect_timeout_s)?,
        peer_timeout: secs("peer-timeout-s", a.peer_timeout_s)?.max(Duration::from_millis(200)),
        link_delay: secs("link-delay-ms", a.link_delay_ms / 1000.0)?,
        max_sessions: a.max_sessions.max(1),
        stop: stop_on_signals()?,
    })
}

fn finish(r: &SiteReport, a: &SiteArgs) -> Result<u8> {
    if let Some(p) = &a.report {
        write_json(p, r)?;
    }
    if a.json {
        print_json(r);
    } else {
        print_summary(r);
    }
    Ok(r.exit_code())
}

pub fn print_summary(r: &SiteReport) {
    println!(
        "{} site, {} run {}: {} session(s)",
        r.role.name(),
        r.protocol.name(),
        r.run_id,
        r.sessions.len()
    );
    for s in &r.sessions {
        println!(
            "  session {}        from block {}: {} block(s), {} bits committed, {:.2} s — {}",
            s.session,
            s.resumed_at_block,
            s.blocks_committed,
            thousands(s.secret_bits),
            s.elapsed_s,
            s.end
        );
        if let Some(a) = &s.authentication {
            println!(
                "  authentication    {} tags sent, {} verified, {} pad bits used, {} refilled, {} left",
                a.tags_sent,
                a.tags_verified,
                thousands(a.pad_bits_consumed),
                thousands(a.pad_bits_refilled),
                thousands(a.pad_bits_left)
            );
        }
    }
    let eps = |x: Option<f64>| x.map_or_else(|| "withdrawn".to_string(), |v| format!("{v:e}"));
    match r.outcome {
        SiteOutcome::Key | SiteOutcome::Stopped => println!(
            "  {}  {}: {} bits in {} block(s), ε_sec = {}, ε_cor = {}, ε_auth = {:.1e}{}",
            if r.key_in_store {
                "key store       "
            } else {
                "key file        "
            },
            r.key_file.display(),
            thousands(r.secret_bits),
            r.committed_blocks,
            eps(r.epsilon_sec),
            eps(r.epsilon_cor),
            r.security.epsilon_auth,
            if r.outcome == SiteOutcome::Stopped {
                " (stopped; run again to resume)"
            } else {
                ""
            }
        ),
        SiteOutcome::NoKey => println!(
            "  NO KEY            {}",
            r.abort_reason.as_deref().unwrap_or("")
        ),
        SiteOutcome::Aborted => println!(
            "  ABORTED           {} — no key bits from the affected blocks",
            r.abort_reason.as_deref().unwrap_or("")
        ),
    }
    for w in &r.warnings {
        println!("  WARNING           {w}");
    }
}

pub fn run_alice(a: AliceArgs) -> Result<u8> {
    let o = options(Role::Alice, a.prep.clone(), &a.site)?;
    let r = run_site(&o, Arc::new(TermProgress::new(a.site.json)))?;
    finish(&r, &a.site)
}

pub fn run_bob(a: BobArgs) -> Result<u8> {
    let mut log = a.detections.clone();
    let mut _imported = None;
    let mut _spooled = None;
    let mut input = a.detections.clone();
    if a.detections.as_os_str() == "-" {
        // A rig's stream on standard input: spooled to a file in constant memory until the
        // stream ends, then imported and distilled (raw time tags are synchronised over the
        // whole capture; there is no live synchronisation yet).
        if a.format.format.is_none() {
            return Err(ConfigError::invalid(
                "detections",
                "standard input needs --format (one of the import formats)",
            )
            .into());
        }
        let out = a.site.out_dir();
        std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
        let path = out.join(".bob-stdin.raw");
        let mut f = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
        std::io::copy(&mut std::io::stdin().lock(), &mut f)
            .map_err(|e| Error::io("standard input", e))?;
        _spooled = Some(super::distill::TempFile(path.clone()));
        input = path;
    }
    if a.format.format.is_some() {
        // A time tagger's file: imported next to the key first (its run id from --run-id).
        let io = a.format.options()?;
        if io.run_id.is_none() {
            return Err(ConfigError::invalid(
                "run-id",
                "a time tagger's file has no run id: give Alice's with --run-id",
            )
            .into());
        }
        let out = a.site.out_dir();
        std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
        let path = out.join(".bob-import.qdl");
        qkd_distill::io::import::import(std::slice::from_ref(&input), &io, Some((&path, true)))?;
        _imported = Some(super::distill::TempFile(path.clone()));
        log = path;
    }
    let o = options(Role::Bob, log, &a.site)?;
    let r = run_site(&o, Arc::new(TermProgress::new(a.site.json)))?;
    finish(&r, &a.site)
}
