//! `qkd import` (rig files → `.qdl`) and `qkd export` (`.qdl` → CSV).

use super::output::{print_json, thousands, write_json};
use clap::Args;
use qkd_distill::error::{ConfigError, Error, Result};
use qkd_distill::io::detection_log::{DetectionLog, DetectorState};
use qkd_distill::io::import::{ImportFormat, ImportOptions, ImportReport, import, qcrypto, text};
use qkd_distill::io::{PrepLog, RunId};
use qkd_distill::protocol::Basis;
use std::io::Write;
use std::path::PathBuf;

/// How to read a rig's files (shared by `import` and `distill --bob-format`).
#[derive(Args, Clone, Debug)]
pub struct ImportFormatArgs {
    /// Input format: ptu, qcrypto-raw, qcrypto-t1, qcrypto-t2, qutag-bin, qutag-compressed,
    /// swabian-tag16, csv.
    #[arg(long = "format", value_name = "FORMAT")]
    pub format: Option<String>,
    /// Detector map: CHANNEL=STATE,… with STATE one of Z0, Z1, X0, X1 (or H, V, D, A).
    #[arg(long, value_delimiter = ',')]
    pub detectors: Vec<String>,
    /// A channel that carries Alice's sync/frame pulses.
    #[arg(long)]
    pub sync_channel: Option<u16>,
    /// Nominal slot (pulse) period of the rig in ps, for time synchronisation.
    #[arg(long)]
    pub slot_period_ps: Option<f64>,
    /// Slots between two sync pulses.
    #[arg(long)]
    pub sync_period_slots: Option<u64>,
    /// qcrypto word order: auto, legacy (high word first), native.
    #[arg(long, default_value = "auto")]
    pub word_order: String,
    /// qcrypto resolution: 125ps or 4ps.
    #[arg(long, default_value = "125ps")]
    pub resolution: String,
    /// quTAG time base in ps per unit.
    #[arg(long, default_value_t = 1.0)]
    pub timebase_ps: f64,
    /// CSV columns, e.g. time,channel or channel,skip,time,kind (default: from a header line
    /// of column names, as `qkd export` writes it; time,channel without one).
    #[arg(long)]
    pub columns: Option<String>,
    /// CSV time unit: ticks, ps, ns, us, s.
    #[arg(long, default_value = "ticks")]
    pub time_unit: String,
    /// CSV tick in ps.
    #[arg(long, default_value_t = 1.0)]
    pub tick_ps: f64,
    /// CSV channel numbering starts at 1.
    #[arg(long)]
    pub one_based: bool,
    /// Largest tolerated inversion of event times in ps (re-sorted); more is an error.
    #[arg(long, default_value_t = 1e6)]
    pub resort_horizon_ps: f64,
    /// Run id to give the log (16 hex digits), to pair it with Alice's log.
    #[arg(long, conflicts_with = "pair_with")]
    pub run_id: Option<String>,
    /// Take the run id from this preparation log.
    #[arg(long)]
    pub pair_with: Option<PathBuf>,
}

fn state(s: &str) -> Option<DetectorState> {
    let (basis, value) = match s.trim().to_ascii_uppercase().as_str() {
        "Z0" | "H" => (Basis::Z, 0),
        "Z1" | "V" => (Basis::Z, 1),
        "X0" | "D" | "P" => (Basis::X, 0),
        "X1" | "A" | "M" => (Basis::X, 1),
        _ => return None,
    };
    Some(DetectorState { basis, value })
}

impl ImportFormatArgs {
    /// The import options.
    pub fn options(&self) -> Result<ImportOptions> {
        let format = ImportFormat::parse(self.format.as_deref().ok_or_else(|| {
            ConfigError::invalid("format", format!("give --format ({})", ImportFormat::NAMES))
        })?)?;
        let detectors = self
            .detectors
            .iter()
            .map(|d| {
                let (c, s) = d.split_once('=').ok_or_else(|| {
                    ConfigError::invalid("detectors", format!("`{d}` is not CHANNEL=STATE"))
                })?;
                let c: u16 = c.trim().parse().map_err(|_| {
                    ConfigError::invalid("detectors", format!("`{c}` is not a channel number"))
                })?;
                let s = state(s).ok_or_else(|| {
                    ConfigError::invalid("detectors", format!("`{s}` is not Z0, Z1, X0 or X1"))
                })?;
                Ok((c, s))
            })
            .collect::<Result<Vec<_>>>()?;
        for (i, (c, _)) in detectors.iter().enumerate() {
            if detectors[..i].iter().any(|(d, _)| d == c) {
                return Err(ConfigError::invalid(
                    "detectors",
                    format!("channel {c} is mapped twice"),
                )
                .into());
            }
        }
        if let Some(p) = self.slot_period_ps
            && !(p.is_finite() && p > 0.0)
        {
            return Err(ConfigError::invalid(
                "slot-period-ps",
                format!("{p}: the slot period must be a positive number of ps"),
            )
            .into());
        }
        if self.sync_period_slots == Some(0) {
            return Err(ConfigError::invalid("sync-period-slots", "must be ≥ 1").into());
        }
        let mut extra = serde_json::Map::new();
        if self.slot_period_ps.is_some() || self.sync_period_slots.is_some() {
            extra.insert(
                "slot_clock".into(),
                serde_json::json!({
                    "period_ps": self.slot_period_ps,
                    "sync_channel": self.sync_channel,
                    "sync_period_slots": self.sync_period_slots,
                }),
            );
        }
        let run_id = match (&self.run_id, &self.pair_with) {
            (Some(s), _) => Some(RunId::parse(s).ok_or_else(|| {
                ConfigError::invalid("run-id", format!("`{s}` is not 16 hex digits"))
            })?),
            (None, Some(p)) => Some(PrepLog::open(p)?.header().run_id),
            (None, None) => None,
        };
        Ok(ImportOptions {
            format,
            word_order: match self.word_order.as_str() {
                "auto" => qcrypto::WordOrder::Auto,
                "legacy" => qcrypto::WordOrder::Legacy,
                "native" => qcrypto::WordOrder::Native,
                o => return Err(ConfigError::invalid("word-order", format!("`{o}`")).into()),
            },
            qcrypto_resolution: match self.resolution.as_str() {
                "125ps" => qcrypto::Resolution::Ps125,
                "4ps" => qcrypto::Resolution::Ps4,
                o => return Err(ConfigError::invalid("resolution", format!("`{o}`")).into()),
            },
            timebase_ps: self.timebase_ps,
            csv: text::CsvSpec {
                columns: text::CsvSpec::parse_columns(
                    self.columns.as_deref().unwrap_or("time,channel"),
                )?,
                time_unit: text::CsvSpec::parse_unit(&self.time_unit)?,
                tick_ps: self.tick_ps,
                channel_base: u16::from(self.one_based),
                columns_from_header: self.columns.is_none(),
            },
            resort_horizon_ps: self.resort_horizon_ps,
            detectors,
            sync_channel: self.sync_channel,
            role: "bob".into(),
            extra,
            run_id,
        })
    }
}

#[derive(Args)]
pub struct ImportArgs {
    /// Input files (concatenated in order).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    #[command(flatten)]
    pub fmt: ImportFormatArgs,
    /// Output `.qdl` (omit to only check the input and print the report).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace an existing output.
    #[arg(long)]
    pub force: bool,
    /// Write the import report as JSON.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Print the report as JSON instead of the summary.
    #[arg(long)]
    pub json: bool,
}

pub fn print_report(r: &ImportReport) {
    println!(
        "imported {} records from {} file(s) ({} bytes), tick {}/{} s",
        thousands(r.records),
        r.files.len(),
        thousands(r.files.iter().map(|f| f.bytes).sum()),
        r.tick.num,
        r.tick.den
    );
    println!(
        "  span {:.6} s, overflows {}, gaps {}, missed {}, dummies {}, out of order {} (max {} ticks), longest idle {:.6} s",
        r.span_s,
        r.overflows,
        r.gaps,
        r.missed_events,
        r.dummies,
        r.out_of_order,
        r.max_out_of_order_ticks,
        r.longest_idle_s
    );
    for c in &r.channels {
        println!(
            "  channel {:>5} {:<14} {:>14} records {:>14.1} /s",
            c.channel,
            format!("{:?}", c.kind).to_lowercase(),
            thousands(c.count),
            c.rate_hz
        );
    }
    for w in &r.warnings {
        println!("  warning: {w}");
    }
}

pub fn run_import(a: ImportArgs) -> Result<u8> {
    let mut plan = qkd_distill::io::OutputPlan::new(a.force);
    for i in &a.inputs {
        plan.input(i);
    }
    plan.output_opt(a.out.as_deref(), "--out")
        .output_opt(a.report.as_deref(), "--report")
        .check()?;
    let opts = a.fmt.options()?;
    let report = import(&a.inputs, &opts, a.out.as_deref().map(|p| (p, a.force)))?;
    if let Some(p) = &a.report {
        write_json(p, &report)?;
    }
    if a.json {
        print_json(&report);
    } else {
        print_report(&report);
        if let Some(o) = &a.out {
            println!("  wrote {}", o.display());
        }
    }
    Ok(0)
}

#[derive(Args)]
pub struct ExportArgs {
    /// The detection log.
    pub input: PathBuf,
    /// Output format (csv).
    #[arg(long, default_value = "csv")]
    pub format: String,
    /// Write here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace an existing --out file.
    #[arg(long)]
    pub force: bool,
}

pub fn run_export(a: ExportArgs) -> Result<u8> {
    match export(&a) {
        // A closed pipe (`qkd export … | head`) is not an error.
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        other => other,
    }
}

fn export(a: &ExportArgs) -> Result<u8> {
    if a.format != "csv" {
        return Err(ConfigError::invalid("format", format!("`{}` (only csv)", a.format)).into());
    }
    qkd_distill::io::OutputPlan::new(a.force)
        .input(&a.input)
        .output_opt(a.out.as_deref(), "--out")
        .check()?;
    let log = DetectionLog::open(&a.input)?;
    let h = log.header();
    let ps_per_tick = h.tick_num as f64 * 1e12 / h.tick_den as f64;
    // A file appears only complete (a failure leaves no partial CSV).
    let mut file = match &a.out {
        Some(p) => Some(qkd_distill::io::AtomicFile::create(p, true, false)?),
        None => None,
    };
    let sink: Box<dyn Write + '_> = match &mut file {
        Some(f) => Box::new(AtomicWriter(f)),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut w = std::io::BufWriter::with_capacity(1 << 20, sink);
    let target = a.out.clone().unwrap_or_else(|| PathBuf::from("stdout"));
    let io = |e: std::io::Error| Error::io(&target, e);
    writeln!(w, "time_ticks,time_ps,channel,kind").map_err(io)?;
    for b in 0..log.blocks().len() {
        for r in log.block(b)?.iter() {
            let kind = serde_json::to_value(r.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let ps = r.time as f64 * ps_per_tick;
            if ps_per_tick.fract() == 0.0 {
                writeln!(
                    w,
                    "{},{},{},{}",
                    r.time,
                    r.time as i128 * ps_per_tick as i128,
                    r.channel,
                    kind
                )
            } else {
                writeln!(w, "{},{ps:.3},{},{}", r.time, r.channel, kind)
            }
            .map_err(io)?;
        }
    }
    w.flush().map_err(io)?;
    drop(w);
    if let Some(f) = file {
        f.commit()?;
    }
    Ok(0)
}

/// `io::Write` over an [`AtomicFile`](qkd_distill::io::AtomicFile).
struct AtomicWriter<'a>(&'a mut qkd_distill::io::AtomicFile);

impl Write for AtomicWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .write_all(buf)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
