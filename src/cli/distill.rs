//! `qkd distill`.

use super::output::{TermProgress, print_json, rate, thousands, write_json};
use clap::Args;
use qkd_distill::config::{DistillSettings, ReconciliationMethod};
use qkd_distill::engine::{DistillOptions, DistillReport, RunOutcome, distill};
use qkd_distill::error::Result;
use qkd_distill::kernels::Kernels;
use std::path::PathBuf;
use std::sync::Arc;

/// Settings of the distillation (shared by `distill` and `demo`).
#[derive(Args, Clone, Debug)]
pub struct SettingsArgs {
    /// Sifted key bits per block: the unit of the finite-key bound and of privacy
    /// amplification (1024 … 2^30), or `auto` (from the input size: 2^20 … 2^27 bits, at least
    /// two blocks when the data allows).
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
    #[arg(long)]
    pub out: PathBuf,
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

/// Entanglement-based, counterfactual and three-stage runs: Alice's file is a `.qdl` log.
fn run_other(a: &DistillArgs) -> Result<Option<u8>> {
    use qkd_distill::protocols::{entangled, noh09};
    let mut magic = [0u8; 8];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(&a.alice)
            .map_err(|e| qkd_distill::error::Error::io(&a.alice, e))?;
        if f.read_exact(&mut magic).is_err() || &magic[1..4] != b"QDL" {
            return Ok(None);
        }
    }
    let log = qkd_distill::io::DetectionLog::open(&a.alice)?;
    let proto = qkd_distill::protocols::protocol_of(log.meta()).unwrap_or_default();
    let s = a.settings.settings()?;
    let seed = a.settings.insecure_deterministic_rng.unwrap_or_else(|| {
        let mut b = [0u8; 8];
        let _ = getrandom_fill(&mut b);
        u64::from_le_bytes(b)
    });
    let (value, abort, bits): (serde_json::Value, Option<String>, u64) = match proto.as_str() {
        "e91" | "bbm92" => {
            let r = entangled::distill(
                &a.alice,
                &a.bob,
                s.epsilon_sec,
                s.epsilon_cor,
                &a.out,
                a.force,
                seed,
            )?;
            if !a.json {
                println!(
                    "distilled {} run: {} coincidences, {} key pairs",
                    r.protocol, r.coincidences, r.key_pairs
                );
                if let Some(c) = &r.chsh {
                    println!(
                        "  CHSH              S = {:.4} ± {:.4} (lower bound {:.4}, ε = {:.1e})",
                        c.s, c.delta, c.lower_bound, c.epsilon
                    );
                }
                if let Some(e) = r.phase_error {
                    println!(
                        "  phase error       {:.2} % on {} test pairs",
                        100.0 * e,
                        r.test_pairs
                    );
                }
            }
            let bits = written_bits(r.key.as_ref(), r.key_files.is_some());
            (
                serde_json::to_value(&r).expect("serializes"),
                r.abort.as_ref().map(|x| x.to_string()),
                bits,
            )
        }
        "noh09" => {
            let r = noh09::distill(
                &a.alice,
                &a.bob,
                s.epsilon_sec,
                s.epsilon_cor,
                &a.out,
                a.force,
                seed,
            )?;
            if !a.json {
                println!(
                    "distilled noh09 run: {} counterfactual (D2) events",
                    r.d2_events
                );
                println!("  WARNING           {}", r.security);
            }
            let bits = written_bits(r.key.as_ref(), r.key_files.is_some());
            (
                serde_json::to_value(&r).expect("serializes"),
                r.abort.as_ref().map(|x| x.to_string()),
                bits,
            )
        }
        "kak3" => return Err(qkd_distill::protocols::refuse_kak3(&a.alice)),
        other => {
            return Err(qkd_distill::error::ConfigError::invalid(
                "alice",
                format!(
                    "{}: a detection log ({other}) where a preparation log (.qpl) or an entangled/counterfactual run was expected",
                    a.alice.display()
                ),
            )
            .into());
        }
    };
    if let Some(p) = &a.report {
        write_json(p, &value)?;
    }
    if a.json {
        print_json(&value);
    } else if let Some(k) = value.get("key").filter(|k| !k.is_null()) {
        println!(
            "  key               {} secret bits (QBER {:.2} %, {} bits disclosed by Cascade); bound: {}",
            k["secret_bits"],
            100.0 * k["qber"].as_f64().unwrap_or(0.0),
            k["error_correction_bits"],
            k["bound"].as_str().unwrap_or("")
        );
    }
    Ok(Some(match abort {
        Some(reason) => {
            if !a.json {
                println!("  ABORTED           {reason} — no key bits were produced");
            }
            1
        }
        None if bits > 0 => 0,
        None => 1,
    }))
}

/// Secret bits actually written (0 when no key file was made).
fn written_bits(key: Option<&qkd_distill::protocols::KeyReport>, written: bool) -> u64 {
    key.filter(|_| written).map_or(0, |k| k.secret_bits)
}

fn getrandom_fill(b: &mut [u8]) -> std::result::Result<(), ()> {
    use rand::TryRng;
    rand::rngs::SysRng.try_fill_bytes(b).map_err(|_| ())
}

pub fn run(a: DistillArgs) -> Result<u8> {
    if let Some(code) = run_other(&a)? {
        return Ok(code);
    }
    let opts = DistillOptions {
        settings: a.settings.settings()?,
        out_dir: a.out.clone(),
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
    };
    let progress = Arc::new(TermProgress::new(a.json));
    // A time tagger's file: import it next to the keys first (paired with Alice's run).
    let mut bob = a.bob.clone();
    let mut _imported = None;
    if a.bob_format.format.is_some() {
        let mut io = a.bob_format.options()?;
        io.run_id = Some(qkd_distill::io::PrepLog::open(&a.alice)?.header().run_id);
        std::fs::create_dir_all(&a.out).map_err(|e| qkd_distill::error::Error::io(&a.out, e))?;
        let path = a.out.join(".bob-import.qdl");
        qkd_distill::io::import::import(std::slice::from_ref(&a.bob), &io, Some((&path, true)))?;
        _imported = Some(TempFile(path.clone()));
        bob = path;
    }
    let report = distill(&a.alice, &bob, &opts, progress)?;
    if let Some(r) = &a.report {
        write_json(r, &report)?;
    }
    if a.json {
        print_json(&report);
    } else {
        print_summary(&report);
    }
    Ok(report.exit_code())
}

/// Removed on drop.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn print_summary(r: &DistillReport) {
    let pct = |x: f64| format!("{:.2} %", 100.0 * x);
    println!(
        "distilled run {} ({} slots)",
        r.run_id,
        thousands(r.total_slots)
    );
    println!("  detections        {}", thousands(r.detections));
    println!(
        "  block size        {} sifted bits (finite-key and privacy-amplification unit)",
        thousands(r.settings.block_bits)
    );
    println!("  sifted key bits   {}", thousands(r.sifted_bits));
    let test_qber = r
        .blocks
        .iter()
        .map(|b| b.test_qber * b.sifted_test_bits as f64)
        .sum::<f64>()
        / r.blocks
            .iter()
            .map(|b| b.sifted_test_bits as f64)
            .sum::<f64>()
            .max(1.0);
    println!(
        "  QBER              {} key basis (corrected), {} test basis",
        pct(r.qber),
        pct(test_qber)
    );
    let f: Vec<f64> = r
        .blocks
        .iter()
        .filter_map(|b| b.error_correction.as_ref().and_then(|e| e.efficiency))
        .collect();
    let f_txt = if f.is_empty() {
        String::new()
    } else {
        format!(
            ", Cascade f = {:.3}",
            f.iter().sum::<f64>() / f.len() as f64
        )
    };
    println!(
        "  disclosed         {} bits subtracted (error correction {}, verification {}{f_txt})",
        thousands(r.leaked_bits),
        thousands(r.ledger.error_correction_bits),
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
    match r.outcome {
        RunOutcome::Key => {
            println!(
                "  secret key        {} bits ({:.1} % of sifted), ε_sec = {:e}, ε_cor = {:e}",
                thousands(r.secret_bits),
                100.0 * r.secret_bits as f64 / r.sifted_bits.max(1) as f64,
                r.epsilon_sec,
                r.epsilon_cor
            );
            if let Some(k) = &r.key_files {
                println!(
                    "  key files         {} and {} (identical, {} bytes each)",
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
    for a in &r.alarms {
        println!("  ALARM             {a}");
    }
    if r.deterministic_rng {
        println!(
            "  WARNING           deterministic protocol randomness (--insecure-deterministic-rng): test use only"
        );
    }
}
