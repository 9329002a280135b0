//! `qkd bench distill`: the whole path on simulated links (a dense one and a 25 km one by
//! default): per-stage busy time, sifted and secret key rates, slots per second, next to the
//! floor of the path measured in the same run (opening and checksumming the two logs alone).

use super::distill::SettingsArgs;
use super::output::{TempDir, TermProgress, rate, thousands, write_json};
use super::simulate::DeviceArgs;
use clap::Args;
use qkd_distill::engine::{DistillOptions, DistillReport, distill};
use qkd_distill::error::{ConfigError, Error, Result};
use qkd_distill::io::{DetectionLog, OutputPlan, PrepLog};
use qkd_distill::kernels::Kernels;
use qkd_distill::pipeline::StageMetrics;
use qkd_distill::sim::simulate_decoy_bb84;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

#[derive(Args)]
pub struct DistillBenchArgs {
    /// Pulses (slots) simulated per link.
    #[arg(long, default_value_t = 100_000_000)]
    pub pulses: u64,
    /// Fiber lengths of the links to measure, km (0 is the dense link).
    #[arg(long, value_delimiter = ',', default_values_t = [0.0, 25.0])]
    pub distances_km: Vec<f64>,
    /// Simulation seed.
    #[arg(long, default_value_t = 3)]
    pub seed: u64,
    /// Timed distills per link (medians are reported).
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Keep the simulated logs here (default: a temporary folder, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Write the rows as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Replace an existing --json file or logs in --dir.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

/// One stage's median busy time over the repeats.
#[derive(Serialize, Clone)]
struct StageRow {
    party: &'static str,
    name: String,
    workers: usize,
    /// Processing time summed over the stage's workers, median over the repeats, seconds.
    busy_s: f64,
    /// Share of the run's median wall time (can exceed 1 for a stage with several workers).
    busy_over_elapsed: f64,
}

#[derive(Serialize, Clone)]
struct LinkRow {
    distance_km: f64,
    slots: u64,
    detections: u64,
    sifted_bits: u64,
    secret_bits: u64,
    outcome: String,
    repeats: usize,
    /// Wall time of each distill, seconds.
    elapsed_s: Vec<f64>,
    elapsed_median_s: f64,
    sifted_bits_per_s: f64,
    secret_bits_per_s: f64,
    slots_per_s: f64,
    /// Slots over the larger of the two parties' sifting busy times (median).
    sifting_slots_per_busy_s: f64,
    /// Bytes of the two logs.
    input_bytes: u64,
    /// The floor: opening both logs and verifying every block checksum, one thread, warm
    /// page cache (median of the repeats).
    read_floor_median_s: f64,
    read_floor_bytes_per_s: f64,
    /// Median distill wall time over the read floor.
    elapsed_over_read_floor: f64,
    stages: Vec<StageRow>,
}

#[derive(Serialize)]
struct BenchReport {
    tool: String,
    isa: String,
    threads: usize,
    ec_lanes: usize,
    reconciliation: String,
    links: Vec<LinkRow>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => 0.5 * (s[n / 2 - 1] + s[n / 2]),
    }
}

/// Open both logs and verify every block checksum: what any run must do to its input.
fn read_floor(alice: &Path, bob: &Path) -> Result<f64> {
    let t = Instant::now();
    PrepLog::open(alice)?.verify_all()?;
    DetectionLog::open(bob)?.verify_all()?;
    Ok(t.elapsed().as_secs_f64())
}

fn file_len(p: &Path) -> Result<u64> {
    std::fs::metadata(p)
        .map(|m| m.len())
        .map_err(|e| Error::io(p, e))
}

/// Median busy time per stage of each party over the repeats.
fn stage_rows(reports: &[DistillReport], elapsed: f64) -> Vec<StageRow> {
    let first = &reports[0].stages;
    let mut rows = Vec::new();
    for (party, stages) in [("alice", &first.alice), ("bob", &first.bob)] {
        for (i, s) in stages.iter().enumerate() {
            let busy: Vec<f64> = reports
                .iter()
                .filter_map(|r| {
                    let list: &Vec<StageMetrics> = if party == "alice" {
                        &r.stages.alice
                    } else {
                        &r.stages.bob
                    };
                    list.get(i).map(|m| m.busy_s)
                })
                .collect();
            let busy_s = median(&busy);
            rows.push(StageRow {
                party,
                name: s.name.clone(),
                workers: s.workers,
                busy_s,
                busy_over_elapsed: busy_s / elapsed,
            });
        }
    }
    rows
}

fn sifting_busy(reports: &[DistillReport]) -> f64 {
    let per_run: Vec<f64> = reports
        .iter()
        .map(|r| {
            r.stages
                .alice
                .iter()
                .chain(&r.stages.bob)
                .filter(|m| m.name.starts_with("sift"))
                .map(|m| m.busy_s)
                .fold(0.0, f64::max)
        })
        .collect();
    median(&per_run)
}

fn bench_link(
    a: &DistillBenchArgs,
    distance_km: f64,
    root: &Path,
    overwrite_logs: bool,
    progress: &Arc<TermProgress>,
) -> Result<LinkRow> {
    let params = a.device.link(distance_km)?;
    params.validate()?;
    let dir = root.join(format!("link-{distance_km}km"));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let sim = simulate_decoy_bb84(
        &params,
        a.pulses,
        a.seed,
        &dir,
        overwrite_logs,
        progress.as_ref(),
    )?;
    let (alice, bob) = (sim.files.alice.clone(), sim.files.bob.clone());
    let input_bytes = file_len(&alice)? + file_len(&bob)?;
    let settings = a.settings.settings()?;
    let mut reports = Vec::with_capacity(a.repeat);
    let mut floors = Vec::with_capacity(a.repeat);
    for run in 0..a.repeat {
        floors.push(read_floor(&alice, &bob)?);
        let keys = dir.join(format!("keys-{run}"));
        let _keys_gone = TempDir(keys.clone());
        let opts = DistillOptions {
            settings: settings.clone(),
            out_dir: keys,
            overwrite: true,
            deterministic_seed: a.settings.insecure_deterministic_rng,
            kernels: Kernels::detect(),
            frame_tap: None,
            sync: Default::default(),
            store: None,
            report: None,
        };
        reports.push(distill(&alice, &bob, &opts, progress.clone())?);
    }
    let elapsed_s: Vec<f64> = reports.iter().map(|r| r.elapsed_s).collect();
    let elapsed = median(&elapsed_s);
    let floor = median(&floors);
    let last = reports.last().expect("at least one repeat");
    let sifting = sifting_busy(&reports);
    Ok(LinkRow {
        distance_km,
        slots: a.pulses,
        detections: last.detections,
        sifted_bits: last.sifted_bits,
        secret_bits: last.secret_bits,
        outcome: format!("{:?}", last.outcome).to_lowercase(),
        repeats: a.repeat,
        elapsed_median_s: elapsed,
        sifted_bits_per_s: last.sifted_bits as f64 / elapsed,
        secret_bits_per_s: last.secret_bits as f64 / elapsed,
        slots_per_s: a.pulses as f64 / elapsed,
        sifting_slots_per_busy_s: a.pulses as f64 / sifting,
        input_bytes,
        read_floor_median_s: floor,
        read_floor_bytes_per_s: input_bytes as f64 / floor,
        elapsed_over_read_floor: elapsed / floor,
        stages: stage_rows(&reports, elapsed),
        elapsed_s,
    })
}

fn print_row(r: &LinkRow) {
    println!(
        "{} km: {} slots, {} detections, {} sifted → {} secret bits ({})",
        r.distance_km,
        thousands(r.slots),
        thousands(r.detections),
        thousands(r.sifted_bits),
        thousands(r.secret_bits),
        r.outcome
    );
    println!(
        "  distill      median {:.3} s of {} runs: sifted {}, secret {}, {:.3e} slots/s",
        r.elapsed_median_s,
        r.repeats,
        rate(r.sifted_bits_per_s),
        rate(r.secret_bits_per_s),
        r.slots_per_s
    );
    println!(
        "  read floor   {:.3} s ({:.2} GB/s over {} bytes): distill = {:.1}× the floor",
        r.read_floor_median_s,
        r.read_floor_bytes_per_s / 1e9,
        thousands(r.input_bytes),
        r.elapsed_over_read_floor
    );
    println!(
        "  sifting      {:.3e} slots per busy second",
        r.sifting_slots_per_busy_s
    );
    for s in &r.stages {
        println!(
            "  {:<6}{:<22} busy {:>7.3} s ({:>5.1} % of wall, {} worker{})",
            s.party,
            s.name,
            s.busy_s,
            100.0 * s.busy_over_elapsed,
            s.workers,
            if s.workers == 1 { "" } else { "s" }
        );
    }
}

pub fn run(a: DistillBenchArgs) -> Result<u8> {
    if a.repeat == 0 {
        return Err(ConfigError::invalid("repeat", "at least one timed distill").into());
    }
    if a.distances_km.is_empty() {
        return Err(ConfigError::invalid("distances-km", "at least one link").into());
    }
    let mut plan = OutputPlan::new(a.force);
    plan.output_opt(a.json.as_deref(), "--json");
    if let Some(d) = &a.dir {
        for km in &a.distances_km {
            let link = d.join(format!("link-{km}km"));
            plan.output(&link.join("alice.qpl"), "Alice's log")
                .output(&link.join("bob.qdl"), "Bob's log")
                .output(&link.join("link.json"), "link.json");
        }
    }
    plan.check()?;
    let settings = a.settings.settings()?;
    let (root, _cleanup) = match &a.dir {
        Some(d) => (d.clone(), None),
        None => {
            let d = std::env::temp_dir().join(format!("qkd-bench-distill-{}", std::process::id()));
            (d.clone(), Some(TempDir(d)))
        }
    };
    let progress = Arc::new(TermProgress::new(false));
    let mut links = Vec::new();
    for &km in &a.distances_km {
        let row = bench_link(&a, km, &root, a.force || a.dir.is_none(), &progress)?;
        print_row(&row);
        links.push(row);
    }
    let report = BenchReport {
        tool: format!("qkd-distill {}", env!("CARGO_PKG_VERSION")),
        isa: Kernels::detect().isa().to_string(),
        threads: settings.ec_workers,
        ec_lanes: settings.ec_lanes,
        reconciliation: a.settings.reconciliation.clone(),
        links,
    };
    if let Some(p) = &a.json {
        write_json(p, &report)?;
    }
    let no_key = report.links.iter().any(|l| l.outcome != "key");
    Ok(u8::from(no_key))
}
