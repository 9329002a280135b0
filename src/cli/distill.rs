//! `qkd distill`.

use super::output::{TermProgress, print_json, rate, thousands};
use clap::Args;
use qkd_distill::config::{DistillSettings, ReconciliationMethod};
use qkd_distill::engine::{DistillOptions, DistillReport, RunOutcome, distill};
use qkd_distill::error::Result;
use qkd_distill::kernels::Kernels;
use qkd_distill::monitors::MonitorState;
use qkd_distill::protocols::ProtocolKind;
use std::path::PathBuf;
use std::sync::Arc;

/// Settings of the distillation (shared by `distill` and `demo`).
#[derive(Args, Clone, Debug)]
pub struct SettingsArgs {
    /// Sifted key bits per block: the unit of the finite-key bound and of privacy
    /// amplification (1024 … 2^30), or `auto` (the whole input as one block, rounded up to a
    /// power of two between 2^20 and 2^27 bits; larger inputs are cut into 2^27-bit blocks).
    #[arg(long, visible_alias = "block-bits", default_value = "auto", value_parser = parse_block_bits)]
    pub pa_block_bits: u64,
    /// Error-correction frame length in bits.
    #[arg(long, default_value_t = DistillSettings::default().ec_frame_bits)]
    pub ec_frame_bits: u64,
    /// Reconciliation protocol: cascade or ldpc.
    #[arg(long, default_value = "cascade")]
    pub reconciliation: String,
    /// Cascade variant: original, biconf, yan, opt3, opt4, opt7, opt8.
    #[arg(long, default_value = "original")]
    pub cascade_variant: String,
    /// LDPC code length (16384, 65536 or 102400).
    #[arg(long, default_value_t = DistillSettings::default().ldpc_code_bits)]
    pub ldpc_code_bits: u64,
    /// LDPC: efficiency of the first attempt.
    #[arg(long, default_value_t = DistillSettings::default().ldpc_efficiency)]
    pub ldpc_efficiency: f64,
    /// LDPC: blind retries.
    #[arg(long, default_value_t = DistillSettings::default().ldpc_retries)]
    pub ldpc_retries: u32,
    /// Secrecy parameter ε_sec.
    #[arg(long, default_value_t = 1e-10)]
    pub epsilon_sec: f64,
    /// Correctness parameter ε_cor.
    #[arg(long, default_value_t = 1e-15)]
    pub epsilon_cor: f64,
    /// Abort when the estimated error rate exceeds this.
    #[arg(long, default_value_t = 0.11)]
    pub max_qber: f64,
    /// Fraction of sifted key bits disclosed to estimate the error rate (0: use the test basis).
    #[arg(long, default_value_t = 0.01)]
    pub qber_sample: f64,
    /// Error-correction workers (blocks reconciled in parallel).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Error-correction lanes per worker: the frames of one block are reconciled in this many
    /// groups at the same time (1..=16).
    #[arg(long, default_value_t = 2)]
    pub ec_lanes: usize,
    /// Insecure: derive all protocol randomness from this seed (reproducible tests only).
    #[arg(long, value_name = "SEED")]
    pub insecure_deterministic_rng: Option<u64>,
}

/// `auto` → 0 (resolved by the engine), otherwise a bit count (`2^24` and `16M` accepted).
fn parse_block_bits(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    if t == "auto" {
        return Ok(0);
    }
    if let Some(e) = t.strip_prefix("2^") {
        return e
            .parse::<u32>()
            .ok()
            .filter(|&e| e < 63)
            .map(|e| 1u64 << e)
            .ok_or_else(|| format!("bad power of two `{s}`"));
    }
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t.as_str(), 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|v| v.checked_mul(mult))
        .ok_or_else(|| format!("expected a number of bits, 2^N, or auto; got `{s}`"))
}

impl SettingsArgs {
    pub fn settings(&self) -> Result<DistillSettings> {
        let s = DistillSettings {
            block_bits: self.pa_block_bits,
            ec_frame_bits: self.ec_frame_bits,
            cascade_variant: qkd_distill::error_correction::cascade::CascadeVariant::parse(
                &self.cascade_variant,
            )
            .ok_or_else(|| {
                qkd_distill::error::ConfigError::invalid(
                    "cascade-variant",
                    format!(
                        "unknown variant `{}` (original, biconf, yan, opt3, opt4, opt7, opt8)",
                        self.cascade_variant
                    ),
                )
            })?,
            ldpc_code_bits: self.ldpc_code_bits,
            ldpc_efficiency: self.ldpc_efficiency,
            ldpc_retries: self.ldpc_retries,
            reconciliation: ReconciliationMethod::parse(&self.reconciliation)?,
            epsilon_sec: self.epsilon_sec,
            epsilon_cor: self.epsilon_cor,
            max_qber: self.max_qber,
            qber_sample_fraction: self.qber_sample,
            ec_workers: self.threads,
            ec_lanes: self.ec_lanes,
            ..Default::default()
        };
        s.validate()?;
        Ok(s)
    }
}

#[derive(Args)]
pub struct DistillArgs {
    /// Alice's preparation log (.qpl).
    #[arg(long)]
    pub alice: PathBuf,
    /// Bob's detection log (.qdl).
    #[arg(long)]
    pub bob: PathBuf,
    /// Directory for alice.key and bob.key.
    #[arg(long, required_unless_present = "store")]
    pub out: Option<PathBuf>,
    /// Put the keys into the key stores DIR/alice and DIR/bob (for `qkd kme` and `qkd keys`)
    /// instead of key files.
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Write the JSON report to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Print the JSON report on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Replace existing key files.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Bob's input is a time tagger's file in this format (imported on the fly; see
    /// `qkd import` for the format options).
    #[command(flatten)]
    pub bob_format: super::import::ImportFormatArgs,
    /// Time synchronisation: largest slot offset searched each way.
    #[arg(long, default_value_t = qkd_distill::sync::SyncOptions::default().max_offset_slots)]
    pub max_offset_slots: u64,
    /// Time synchronisation: slots of Alice's disclosed window (default: from the rate).
    #[arg(long)]
    pub sync_window_slots: Option<u64>,
}

pub fn run(a: DistillArgs) -> Result<u8> {
    let out = a
        .out
        .clone()
        .or_else(|| a.store.clone())
        .unwrap_or_else(|| PathBuf::from("."));
    let opts = DistillOptions {
        settings: a.settings.settings()?,
        out_dir: out.clone(),
        overwrite: a.force,
        deterministic_seed: a.settings.insecure_deterministic_rng,
        kernels: Kernels::detect(),
        frame_tap: None,
        sync: qkd_distill::sync::SyncOptions {
            max_offset_slots: a.max_offset_slots,
            window_slots: a.sync_window_slots,
            period_ps: a.bob_format.slot_period_ps,
            ..Default::default()
        },
        store: a.store.clone(),
        report: a.report.clone(),
    };
    let progress = Arc::new(TermProgress::new(a.json));
    // A time tagger's file: import it next to the keys first (paired with Alice's run).
    let mut bob = a.bob.clone();
    let mut _imported = None;
    if a.bob_format.format.is_some() {
        let mut io = a.bob_format.options()?;
        io.run_id = Some(qkd_distill::io::PrepLog::open(&a.alice)?.header().run_id);
        std::fs::create_dir_all(&out).map_err(|e| qkd_distill::error::Error::io(&out, e))?;
        let path = out.join(".bob-import.qdl");
        qkd_distill::io::import::import(std::slice::from_ref(&a.bob), &io, Some((&path, true)))?;
        _imported = Some(TempFile(path.clone()));
        bob = path;
    }
    let report = distill(&a.alice, &bob, &opts, progress)?;
    if a.json {
        print_json(&report);
    } else {
        print_summary(&report);
    }
    Ok(report.exit_code())
}

/// Removed on drop.
pub struct TempFile(pub PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn print_summary(r: &DistillReport) {
    let pct = |x: f64| format!("{:.2} %", 100.0 * x);
    println!(
        "distilled {} run {} ({} slots)",
        r.protocol.name(),
        r.run_id,
        thousands(r.total_slots)
    );
    println!("  detections        {}", thousands(r.detections));
    println!(
        "  block size        {} sifted bits (finite-key and privacy-amplification unit)",
        thousands(r.settings.block_bits)
    );
    println!("  sifted key bits   {}", thousands(r.sifted_bits));
    let tested: f64 = r.blocks.iter().map(|b| b.sifted_test_bits as f64).sum();
    if r.protocol == ProtocolKind::Bb84 {
        let test_qber = r
            .blocks
            .iter()
            .map(|b| b.test_qber * b.sifted_test_bits as f64)
            .sum::<f64>()
            / tested.max(1.0);
        println!(
            "  QBER              {} key basis (corrected), {} test basis",
            pct(r.qber),
            pct(test_qber)
        );
    } else {
        println!("  QBER              {} (corrected)", pct(r.qber));
    }
    for b in &r.blocks {
        if let Some(c) = &b.chsh {
            println!(
                "  CHSH (block {})    S = {:.4} ± {:.4} (lower bound {:.4}, ε = {:.1e})",
                b.id, c.s, c.delta, c.lower_bound, c.epsilon
            );
        }
        if let Some(p) = &b.phase_error {
            println!(
                "  phase error       {} on {} bits (bound {} with μ = {:.4})",
                pct(p.observed),
                thousands(p.bits),
                pct(p.bound),
                p.mu
            );
        }
    }
    let f: Vec<(f64, f64)> = r
        .blocks
        .iter()
        .filter_map(|b| {
            let e = b.error_correction.as_ref()?;
            Some((e.efficiency?, e.efficiency_charged?))
        })
        .collect();
    let method = r
        .blocks
        .iter()
        .find_map(|b| b.error_correction.as_ref().map(|e| e.method.clone()))
        .unwrap_or_else(|| r.settings.reconciliation_name().to_string());
    let f_txt = if f.is_empty() {
        String::new()
    } else {
        let n = f.len() as f64;
        format!(
            ", {method} f = {:.3} (Alice's messages), {:.3} charged",
            f.iter().map(|x| x.0).sum::<f64>() / n,
            f.iter().map(|x| x.1).sum::<f64>() / n
        )
    };
    println!(
        "  disclosed         {} bits subtracted (error correction {}, Bob's replies {}, verification {}{f_txt})",
        thousands(r.leaked_bits),
        thousands(r.ledger.error_correction_bits),
        thousands(r.ledger.reply_bits),
        thousands(r.ledger.verification_bits)
    );
    println!(
        "  blocks            {} with key, {} without",
        r.blocks_ok, r.blocks_failed
    );
    println!(
        "  time              {:.2} s ({} sifted)",
        r.elapsed_s,
        rate(r.sifted_bits_per_s)
    );
    let eps = |x: Option<f64>| x.map_or_else(|| "withdrawn".to_string(), |v| format!("{v:e}"));
    match r.outcome {
        RunOutcome::Key => {
            println!(
                "  secret key        {} bits ({:.1} % of sifted), ε_sec = {}, ε_cor = {} for the {} block(s) ({:e} / {:e} per block)",
                thousands(r.secret_bits),
                100.0 * r.secret_bits as f64 / r.sifted_bits.max(1) as f64,
                eps(r.epsilon_sec),
                eps(r.epsilon_cor),
                r.blocks_ok,
                r.epsilon_sec_per_block,
                r.epsilon_cor_per_block
            );
            if let Some(k) = &r.key_files {
                let store = k.alice.file_name().is_some_and(|n| n == "alice")
                    && k.alice.join("inbox").is_dir();
                println!(
                    "  {}  {} and {} (confirmed block by block, {} bytes each)",
                    if store {
                        "key stores      "
                    } else {
                        "key files       "
                    },
                    k.alice.display(),
                    k.bob.display(),
                    thousands(r.secret_bits / 8)
                );
            }
        }
        RunOutcome::NoKey => println!(
            "  NO KEY            {}",
            r.abort_reason.as_deref().unwrap_or("")
        ),
        RunOutcome::Aborted => println!(
            "  ABORTED           {} — no key bits were produced",
            r.abort_reason.as_deref().unwrap_or("")
        ),
    }
    println!("  proof             {}", r.security.proof.reference);
    for a in &r.alarms {
        println!("  ALARM             {a}");
    }
    let skipped: Vec<&str> = r
        .monitors
        .iter()
        .filter(|m| m.state == MonitorState::Skipped)
        .map(|m| m.monitor.as_str())
        .collect();
    if !skipped.is_empty() {
        println!(
            "  monitors skipped  {} (see the report's `monitors`)",
            skipped.join(", ")
        );
    }
    for w in &r.warnings {
        println!("  WARNING           {w}");
    }
}
