//! `qkd sync`: time synchronisation of raw time tags, standalone.

use super::output::{print_json, write_json};
use clap::Args;
use qkd_distill::error::{ConfigError, Error, Result};
use qkd_distill::io::detection_log::RecordKind;
use qkd_distill::io::{DetectionLog, PrepLog};
use qkd_distill::sync::SyncOptions;
use qkd_distill::sync::two_sided::{TwoSidedOptions, synchronise as two_sided};
use std::path::PathBuf;

#[derive(Args)]
pub struct SyncArgs {
    /// Alice's preparation log (.qpl; prepare and measure) or her raw time tags (.qdl; two
    /// time-tagging sides).
    #[arg(long)]
    pub alice: PathBuf,
    /// Bob's raw time tags (.qdl).
    #[arg(long)]
    pub bob: PathBuf,
    /// Prepare and measure: write Bob's slot-annotated log here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Largest slot offset searched each way (prepare and measure).
    #[arg(long, default_value_t = SyncOptions::default().max_offset_slots)]
    pub max_offset_slots: u64,
    /// Slots of Alice's disclosed window (default: from the detection rate).
    #[arg(long)]
    pub window_slots: Option<u64>,
    /// Nominal slot period in ps (default: the log's slot_clock).
    #[arg(long)]
    pub slot_period_ps: Option<f64>,
    /// Two sides: coincidence window half-width in ps.
    #[arg(long, default_value_t = TwoSidedOptions::default().coincidence_ps)]
    pub coincidence_ps: f64,
    /// Write the report as JSON.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Replace existing --out or --report files.
    #[arg(long)]
    pub force: bool,
}

fn is_prep_log(p: &PathBuf) -> Result<bool> {
    let mut magic = [0u8; 8];
    use std::io::Read;
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|e| Error::io(p, e))?;
    Ok(&magic[1..4] == b"QPL")
}

pub fn run(a: SyncArgs) -> Result<u8> {
    qkd_distill::io::OutputPlan::new(a.force)
        .input(&a.alice)
        .input(&a.bob)
        .output_opt(a.out.as_deref(), "--out")
        .output_opt(a.report.as_deref(), "--report")
        .check()?;
    let emit = |v: &serde_json::Value| -> Result<()> {
        if let Some(p) = &a.report {
            write_json(p, v)?;
        }
        if a.json {
            print_json(v);
        }
        Ok(())
    };
    if is_prep_log(&a.alice)? {
        let out = a.out.clone().ok_or_else(|| {
            ConfigError::invalid(
                "out",
                "prepare and measure: give --out for the synchronised log",
            )
        })?;
        let prep = PrepLog::open(&a.alice)?;
        let det = DetectionLog::open(&a.bob)?;
        let opts = SyncOptions {
            max_offset_slots: a.max_offset_slots,
            window_slots: a.window_slots,
            period_ps: a.slot_period_ps,
            ..SyncOptions::default()
        };
        let (r, ledger) = qkd_distill::engine::synchronise(&prep, &det, &opts, &out, None)?;
        if !a.json {
            println!(
                "clock from {}: period {:.6} ps ({:+.4} ppm), offset {:.1} ps, residual {:.1} ps",
                r.clock_source, r.period_ps, r.drift_ppm, r.clock_offset_ps, r.clock_residual_ps
            );
            for d in &r.detectors {
                println!(
                    "  detector {} ({}): gate {:.1} ± {:.1} ps, jitter {:.1} ps, efficiency {:.4}, offset {} slots, {:.1} σ",
                    d.channel,
                    d.state,
                    d.gate_center_ps,
                    d.gate_half_width_ps,
                    d.jitter_ps,
                    d.gate_efficiency,
                    d.offset_slots,
                    d.significance
                );
            }
            println!(
                "  window [{}, +{}) disclosed ({} bits); {} of {} detections written to {}",
                r.window_first_slot,
                r.window_slots,
                ledger.sync_sample_bits,
                r.detections_out,
                r.detections_in,
                out.display()
            );
        }
        emit(&serde_json::to_value(&r).expect("report serializes"))?;
    } else {
        let times = |p: &PathBuf| -> Result<Vec<i64>> {
            let log = DetectionLog::open(p)?;
            let ps = log.header().tick_seconds() * 1e12;
            let mut v = Vec::new();
            for b in 0..log.blocks().len() {
                for r in log.block(b)?.iter() {
                    if r.kind == RecordKind::Detection {
                        v.push((r.time as f64 * ps) as i64);
                    }
                }
            }
            v.sort_unstable();
            Ok(v)
        };
        let (ta, tb) = (times(&a.alice)?, times(&a.bob)?);
        let opts = TwoSidedOptions {
            coincidence_ps: a.coincidence_ps,
            ..TwoSidedOptions::default()
        };
        let r = two_sided(&ta, &tb, &opts)?;
        if !a.json {
            println!(
                "offset {:.1} ps, drift {:+.4} ppm (peaks {:.1} σ coarse, {:.1} σ fine); {} coincidences, {} accidentals, jitter {:.1} ps",
                r.offset_ps,
                r.drift_ppm,
                r.significance[0],
                r.significance[1],
                r.coincidences,
                r.accidentals,
                r.jitter_ps
            );
        }
        emit(&serde_json::to_value(&r).expect("report serializes"))?;
    }
    Ok(0)
}
