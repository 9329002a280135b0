//! Adapters from the files real rigs write to the native detection log (`.qdl`).
//!
//! Every adapter reads its input as a stream (a `Read`, never `Seek`), turns device records
//! into [`Record`]s with times in the device's own tick (unwrapping overflows and rollovers),
//! and hands them to an [`ImportSink`] that re-sorts within a bounded horizon, gathers the
//! import report and writes `.qdl` blocks as it goes: memory stays constant however large the
//! input. Layouts (and their sources) are in `reference/formats.md` §1–6 and in each module:
//!
//! * [`ptu`]: PicoQuant PTU, T2 and T3, for every record type;
//! * [`qcrypto`]: qcrypto / S-Fifteen raw timestamps (both word orders, 125 ps and 1/256 ns)
//!   and its type-1 and type-2 packet files;
//! * [`qutag`]: qutools quTAG binary (10-byte) and compressed (5-byte) files;
//! * [`swabian`]: Swabian Time Tagger 16-byte raw tags;
//! * [`text`]: generic CSV/text with a column spec.
//!
//! Channel ids follow the device's own input numbering, made 0-based; syncs, markers and
//! clock ticks get their own ids (see each adapter) and [`RecordKind`]s, and nothing is dropped
//! silently: overflows, gaps, missed events and dummy events are counted in the report.

pub mod ptu;
pub mod qcrypto;
pub mod qutag;
pub mod swabian;
pub mod text;

use crate::error::{ConfigError, FormatError, Result};
use crate::io::detection_log::{
    ChannelInfo, ChannelKind, DetectionLogWriter, DetectionMeta, DetectorState, Record, RecordKind,
};
use crate::io::header::{FLAG_TIME_SORTED, FileHeader, RunId};
use serde::Serialize;
use std::collections::{BTreeMap, BinaryHeap};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImportFormat {
    /// PicoQuant PTU (T2 or T3, any record type).
    Ptu,
    /// qcrypto raw 64-bit timestamps (`readevents -a1`).
    QcryptoRaw,
    /// qcrypto type-1 packet files (chopper2).
    QcryptoT1,
    /// qcrypto type-2 packet files (chopper).
    QcryptoT2,
    /// quTAG binary, 10-byte records.
    QutagBinary,
    /// quTAG compressed, 5-byte records.
    QutagCompressed,
    /// Swabian Time Tagger 16-byte tags.
    SwabianTag16,
    /// Generic text/CSV.
    Csv,
}

impl ImportFormat {
    /// Names accepted on the command line.
    pub const NAMES: &'static str =
        "ptu, qcrypto-raw, qcrypto-t1, qcrypto-t2, qutag-bin, qutag-compressed, swabian-tag16, csv";

    /// Parse a name.
    pub fn parse(s: &str) -> Result<ImportFormat, ConfigError> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "ptu" | "picoquant" => ImportFormat::Ptu,
            "qcrypto-raw" | "qcrypto" | "qcrypto-a1" => ImportFormat::QcryptoRaw,
            "qcrypto-t1" => ImportFormat::QcryptoT1,
            "qcrypto-t2" => ImportFormat::QcryptoT2,
            "qutag-bin" | "qutag" | "qutag-binary" => ImportFormat::QutagBinary,
            "qutag-compressed" => ImportFormat::QutagCompressed,
            "swabian-tag16" | "swabian" => ImportFormat::SwabianTag16,
            "csv" | "text" => ImportFormat::Csv,
            other => {
                return Err(ConfigError::invalid(
                    "format",
                    format!("unknown format `{other}` (known: {})", Self::NAMES),
                ));
            }
        })
    }

    /// The `source_format` written into the metadata.
    pub fn name(self) -> &'static str {
        match self {
            ImportFormat::Ptu => "ptu",
            ImportFormat::QcryptoRaw => "qcrypto-raw",
            ImportFormat::QcryptoT1 => "qcrypto-t1",
            ImportFormat::QcryptoT2 => "qcrypto-t2",
            ImportFormat::QutagBinary => "qutag-bin",
            ImportFormat::QutagCompressed => "qutag-compressed",
            ImportFormat::SwabianTag16 => "swabian-tag16",
            ImportFormat::Csv => "csv",
        }
    }
}

/// Options of an import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The format.
    pub format: ImportFormat,
    /// qcrypto raw word order.
    pub word_order: qcrypto::WordOrder,
    /// qcrypto time resolution.
    pub qcrypto_resolution: qcrypto::Resolution,
    /// quTAG / CSV time base in picoseconds per unit.
    pub timebase_ps: f64,
    /// CSV column spec and time unit.
    pub csv: text::CsvSpec,
    /// Largest tolerated inversion of record times, in picoseconds; later records that are
    /// more out of order are an error (never sorted silently).
    pub resort_horizon_ps: f64,
    /// Detector states by channel id (for distilling), e.g. 0 → Z0.
    pub detectors: Vec<(u16, DetectorState)>,
    /// A channel to treat as Alice's sync/frame input (its detections become sync records).
    pub sync_channel: Option<u16>,
    /// Metadata `role`.
    pub role: String,
    /// Extra metadata (e.g. the slot clock of a prepare-and-measure rig).
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// Run id (to pair with Alice's preparation log); random when `None`.
    pub run_id: Option<RunId>,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            format: ImportFormat::Ptu,
            word_order: qcrypto::WordOrder::Auto,
            qcrypto_resolution: qcrypto::Resolution::Ps125,
            timebase_ps: 1.0,
            csv: text::CsvSpec::default(),
            resort_horizon_ps: 1e6,
            detectors: Vec::new(),
            sync_channel: None,
            role: "bob".into(),
            extra: serde_json::Map::new(),
            run_id: None,
        }
    }
}

/// A rational tick in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tick {
    /// Numerator.
    pub num: u64,
    /// Denominator.
    pub den: u64,
}

impl Tick {
    /// Picoseconds.
    pub const PS: Tick = Tick {
        num: 1,
        den: 1_000_000_000_000,
    };

    /// The nearest tick in whole femtoseconds to `seconds` (device resolutions are whole
    /// femtoseconds: 1, 4, 5, 25, 80, 250 ps …), reduced.
    pub fn from_seconds(seconds: f64) -> Option<Tick> {
        if !(seconds > 0.0 && seconds < 1.0) {
            return None;
        }
        let fs = (seconds * 1e15).round() as u64;
        if fs == 0 {
            return None;
        }
        let den = 1_000_000_000_000_000u64;
        let g = gcd(fs, den);
        Some(Tick {
            num: fs / g,
            den: den / g,
        })
    }

    /// Seconds.
    pub fn seconds(self) -> f64 {
        self.num as f64 / self.den as f64
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// A stream that counts the bytes it has read, for error offsets.
pub struct Counting<R> {
    inner: R,
    /// Bytes consumed so far.
    pub offset: u64,
    path: PathBuf,
}

impl<R: Read> Counting<R> {
    /// Wrap `inner`, which reads `path`.
    pub fn new(inner: R, path: &Path) -> Self {
        Counting {
            inner,
            offset: 0,
            path: path.to_path_buf(),
        }
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fill `buf` completely. Returns `Ok(false)` at a clean end of input (nothing read) and a
    /// truncation error naming `what` if the input ends inside `buf`.
    pub fn read_full(&mut self, buf: &mut [u8], what: &'static str) -> Result<bool> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(crate::error::Error::io(&self.path, e)),
            }
        }
        let start = self.offset;
        self.offset += got as u64;
        if got == 0 {
            return Ok(false);
        }
        if got < buf.len() {
            return Err(FormatError::Truncated {
                path: self.path.clone(),
                offset: start,
                what,
                needed: buf.len() as u64,
                available: got as u64,
            }
            .into());
        }
        Ok(true)
    }

    /// Fill `buf` completely or fail (end of input included).
    pub fn need(&mut self, buf: &mut [u8], what: &'static str) -> Result<()> {
        let at = self.offset;
        if self.read_full(buf, what)? {
            Ok(())
        } else {
            Err(FormatError::Truncated {
                path: self.path.clone(),
                offset: at,
                what,
                needed: buf.len() as u64,
                available: 0,
            }
            .into())
        }
    }

    /// Read up to `buf.len()` bytes of whole `unit`-byte records; returns the bytes read (a
    /// multiple of `unit`, 0 at the end). A partial record at the end is a truncation error.
    pub fn read_records(
        &mut self,
        buf: &mut [u8],
        unit: usize,
        what: &'static str,
    ) -> Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(crate::error::Error::io(&self.path, e)),
            }
        }
        let start = self.offset;
        self.offset += got as u64;
        if got % unit != 0 {
            return Err(FormatError::Truncated {
                path: self.path.clone(),
                offset: start + (got - got % unit) as u64,
                what,
                needed: unit as u64,
                available: (got % unit) as u64,
            }
            .into());
        }
        Ok(got)
    }

    /// An invalid-field error at `offset`.
    pub fn invalid(
        &self,
        offset: u64,
        field: &'static str,
        message: impl Into<String>,
    ) -> crate::error::Error {
        FormatError::InvalidField {
            path: self.path.clone(),
            offset,
            field,
            message: message.into(),
        }
        .into()
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// What one input file contributed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FileSummary {
    /// Path.
    pub path: PathBuf,
    /// Bytes read.
    pub bytes: u64,
    /// Device records decoded.
    pub device_records: u64,
    /// Format details (record type, word order, resolution …).
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// Counts per channel and kind.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelCount {
    /// Channel id.
    pub channel: u16,
    /// Record kind.
    pub kind: RecordKind,
    /// Records.
    pub count: u64,
    /// Mean rate over the time span (per second).
    pub rate_hz: f64,
}

/// The import report (`qkd import --report`).
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// Format.
    pub format: ImportFormat,
    /// Inputs in order.
    pub files: Vec<FileSummary>,
    /// Time unit of the records.
    pub tick: Tick,
    /// Records written.
    pub records: u64,
    /// Counts per channel and kind.
    pub channels: Vec<ChannelCount>,
    /// Device overflow records (wrap-arounds of the time counter).
    pub overflows: u64,
    /// Gap intervals (device buffer overflows, lost data).
    pub gaps: u64,
    /// Events the device reported as missed.
    pub missed_events: u64,
    /// Dummy / keep-alive events dropped.
    pub dummies: u64,
    /// Records that arrived earlier than one already seen (re-sorted within the horizon).
    pub out_of_order: u64,
    /// The largest such inversion, in ticks.
    pub max_out_of_order_ticks: i64,
    /// First and last record time (ticks).
    pub first_time: Option<i64>,
    /// Last record time.
    pub last_time: Option<i64>,
    /// Time span in seconds.
    pub span_s: f64,
    /// The largest time step between consecutive records, in seconds (an idle gap).
    pub longest_idle_s: f64,
    /// Warnings (device flags, unusual values).
    pub warnings: Vec<String>,
    /// Peak resident memory of the process at the end of the import (Linux `VmHWM`), bytes.
    pub peak_rss_bytes: Option<u64>,
}

/// The process's peak resident set size (Linux; `None` elsewhere).
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Receives decoded records: re-sorts within a bounded horizon, counts, and writes blocks.
pub struct ImportSink {
    writer: Option<DetectionLogWriter>,
    heap: BinaryHeap<std::cmp::Reverse<(i64, u64, RecordKey)>>,
    seq: u64,
    horizon: i64,
    max_seen: Option<i64>,
    last_out: Option<i64>,
    out: Vec<Record>,
    counts: BTreeMap<(u16, u8), u64>,
    /// Report being filled.
    pub report: ImportReport,
    sync_channel: Option<u16>,
    /// Byte offset and path of the record being pushed (for errors).
    pub position: (PathBuf, u64),
}

/// A record as a heap key (ordered by time, then arrival).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct RecordKey {
    channel: u16,
    kind: u8,
    flags: u8,
    aux: u32,
}

const FLUSH_RECORDS: usize = 1 << 18;

impl ImportSink {
    fn new(
        writer: Option<DetectionLogWriter>,
        format: ImportFormat,
        tick: Tick,
        horizon_ps: f64,
        sync_channel: Option<u16>,
    ) -> ImportSink {
        let horizon = (horizon_ps * 1e-12 / tick.seconds()).ceil().max(0.0) as i64;
        ImportSink {
            writer,
            heap: BinaryHeap::new(),
            seq: 0,
            horizon,
            max_seen: None,
            last_out: None,
            out: Vec::with_capacity(FLUSH_RECORDS),
            counts: BTreeMap::new(),
            report: ImportReport {
                format,
                files: Vec::new(),
                tick,
                records: 0,
                channels: Vec::new(),
                overflows: 0,
                gaps: 0,
                missed_events: 0,
                dummies: 0,
                out_of_order: 0,
                max_out_of_order_ticks: 0,
                first_time: None,
                last_time: None,
                span_s: 0.0,
                longest_idle_s: 0.0,
                warnings: Vec::new(),
                peak_rss_bytes: None,
            },
            sync_channel,
            position: (PathBuf::new(), 0),
        }
    }

    /// Accept one record (in arrival order).
    pub fn push(&mut self, mut r: Record) -> Result<()> {
        if r.kind == RecordKind::Detection && Some(r.channel) == self.sync_channel {
            r.kind = RecordKind::Sync;
        }
        match r.kind {
            RecordKind::GapBegin => self.report.gaps += 1,
            RecordKind::MissedCount => self.report.missed_events += u64::from(r.aux),
            _ => {}
        }
        if let Some(m) = self.max_seen
            && r.time < m
        {
            self.report.out_of_order += 1;
            self.report.max_out_of_order_ticks = self
                .report
                .max_out_of_order_ticks
                .max(m.saturating_sub(r.time));
        }
        self.max_seen = Some(self.max_seen.map_or(r.time, |m| m.max(r.time)));
        self.heap.push(std::cmp::Reverse((
            r.time,
            self.seq,
            RecordKey {
                channel: r.channel,
                kind: r.kind as u8,
                flags: r.flags,
                aux: r.aux,
            },
        )));
        self.seq += 1;
        let limit = self.max_seen.unwrap().saturating_sub(self.horizon);
        while let Some(std::cmp::Reverse((t, _, _))) = self.heap.peek() {
            if *t > limit {
                break;
            }
            self.pop_one()?;
        }
        Ok(())
    }

    fn pop_one(&mut self) -> Result<()> {
        let std::cmp::Reverse((t, _, k)) = self.heap.pop().expect("non-empty heap");
        if let Some(last) = self.last_out {
            if t < last {
                let (path, offset) = self.position.clone();
                return Err(FormatError::InvalidField {
                    path,
                    offset,
                    field: "time",
                    message: format!(
                        "record out of order by {} ticks, more than the re-sort horizon of {} ticks (raise --resort-horizon-ps if the device really delivers so late)",
                        i128::from(last) - i128::from(t),
                        self.horizon
                    ),
                }
                .into());
            }
            let gap = (i128::from(t) - i128::from(last)) as f64 * self.report.tick.seconds();
            if gap > self.report.longest_idle_s {
                self.report.longest_idle_s = gap;
            }
        }
        self.last_out = Some(t);
        let kind = RecordKind::from_u8(k.kind).expect("valid kind");
        *self.counts.entry((k.channel, k.kind)).or_default() += 1;
        if self.report.first_time.is_none() {
            self.report.first_time = Some(t);
        }
        self.report.last_time = Some(t);
        self.report.records += 1;
        self.out.push(Record {
            time: t,
            channel: k.channel,
            kind,
            flags: k.flags,
            aux: k.aux,
        });
        if self.out.len() >= FLUSH_RECORDS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if let Some(w) = self.writer.as_mut() {
            w.write_records(&self.out)?;
        }
        self.out.clear();
        Ok(())
    }

    fn finish(mut self) -> Result<(Option<DetectionLogWriter>, ImportReport)> {
        while !self.heap.is_empty() {
            self.pop_one()?;
        }
        self.flush()?;
        let span_ticks = match (self.report.first_time, self.report.last_time) {
            (Some(a), Some(b)) => (i128::from(b) - i128::from(a)) as f64,
            _ => 0.0,
        };
        self.report.span_s = span_ticks * self.report.tick.seconds();
        let span = self.report.span_s;
        self.report.channels = self
            .counts
            .iter()
            .map(|(&(channel, kind), &count)| ChannelCount {
                channel,
                kind: RecordKind::from_u8(kind).expect("valid kind"),
                count,
                rate_hz: if span > 0.0 { count as f64 / span } else { 0.0 },
            })
            .collect();
        Ok((self.writer, self.report))
    }
}

/// Everything an adapter needs: the sink and its file summary.
pub struct Decode<'a> {
    /// The sink.
    pub sink: &'a mut ImportSink,
    /// The summary of the current file.
    pub file: FileSummary,
}

impl Decode<'_> {
    /// Emit a record decoded at byte `offset`.
    #[inline]
    pub fn emit(&mut self, r: Record, offset: u64) -> Result<()> {
        self.sink.position.1 = offset;
        self.sink.push(r)
    }
}

/// The tick of `format` for the first input (PTU reads it from the header; the others from the
/// options).
fn probe_tick(path: &Path, opts: &ImportOptions) -> Result<Tick> {
    match opts.format {
        ImportFormat::Ptu => {
            let f = std::fs::File::open(path).map_err(|e| crate::error::Error::io(path, e))?;
            let mut r = Counting::new(std::io::BufReader::new(f), path);
            Ok(ptu::read_header(&mut r)?.tick)
        }
        ImportFormat::QcryptoRaw | ImportFormat::QcryptoT1 => Ok(opts.qcrypto_resolution.tick()),
        ImportFormat::QcryptoT2 => Ok(qcrypto::Resolution::Ps125.tick()),
        ImportFormat::QutagBinary | ImportFormat::QutagCompressed | ImportFormat::SwabianTag16 => {
            if opts.format == ImportFormat::SwabianTag16 {
                Ok(Tick::PS)
            } else {
                Tick::from_seconds(opts.timebase_ps * 1e-12).ok_or_else(|| {
                    ConfigError::invalid("timebase-ps", format!("{}", opts.timebase_ps)).into()
                })
            }
        }
        ImportFormat::Csv => opts.csv.tick(),
    }
}

/// Decode one input with the decoder of `opts.format`.
fn decode_one<R: std::io::Read>(
    r: &mut Counting<R>,
    d: &mut Decode<'_>,
    opts: &ImportOptions,
    tick: Tick,
) -> Result<Tick> {
    match opts.format {
        ImportFormat::Ptu => ptu::decode(r, d),
        ImportFormat::QcryptoRaw => qcrypto::decode_raw(r, d, opts),
        ImportFormat::QcryptoT1 => qcrypto::decode_t1(r, d, opts),
        ImportFormat::QcryptoT2 => qcrypto::decode_t2(r, d),
        ImportFormat::QutagBinary => qutag::decode(r, d, false, tick),
        ImportFormat::QutagCompressed => qutag::decode(r, d, true, tick),
        ImportFormat::SwabianTag16 => swabian::decode(r, d),
        ImportFormat::Csv => text::decode(r, d, &opts.csv),
    }
}

/// Decode `bytes` as one input file of `opts.format` without writing anything; the fuzz
/// targets' entry (`name` labels errors).
pub fn check_bytes(bytes: &[u8], opts: &ImportOptions, name: &Path) -> Result<ImportReport> {
    let tick = match opts.format {
        ImportFormat::Ptu => {
            let mut r = Counting::new(bytes, name);
            ptu::read_header(&mut r)?.tick
        }
        _ => probe_tick(name, opts)?,
    };
    let mut sink = ImportSink::new(
        None,
        opts.format,
        tick,
        opts.resort_horizon_ps,
        opts.sync_channel,
    );
    decode_input(&mut sink, bytes, name, opts, tick)?;
    Ok(sink.finish()?.1)
}

/// Decode one input into `sink`, adding its summary to the report; returns the input's tick.
fn decode_input<R: std::io::Read>(
    sink: &mut ImportSink,
    input: R,
    path: &Path,
    opts: &ImportOptions,
    tick: Tick,
) -> Result<Tick> {
    let mut r = Counting::new(input, path);
    sink.position = (path.to_path_buf(), 0);
    let mut d = Decode {
        sink,
        file: FileSummary {
            path: path.to_path_buf(),
            ..Default::default()
        },
    };
    let file_tick = decode_one(&mut r, &mut d, opts, tick)?;
    let mut summary = d.file;
    summary.bytes = r.offset;
    sink.report.files.push(summary);
    Ok(file_tick)
}

/// Decode `inputs` (concatenated in order) with `opts`, writing `out` if given. Returns the
/// report. With `out = None` the input is only checked and counted.
pub fn import(
    inputs: &[PathBuf],
    opts: &ImportOptions,
    out: Option<(&Path, bool)>,
) -> Result<ImportReport> {
    if inputs.is_empty() {
        return Err(ConfigError::invalid("input", "no input files").into());
    }
    let tick = probe_tick(&inputs[0], opts)?;
    let base_meta = DetectionMeta {
        role: opts.role.clone(),
        source_format: format!("import/{}", opts.format.name()),
        channels: Vec::new(),
        total_slots: None,
        extra: opts.extra.clone(),
    };
    let header = FileHeader {
        version: (1, 0),
        flags: FLAG_TIME_SORTED,
        tick_num: tick.num,
        tick_den: tick.den,
        origin_unix_ns: i64::MIN,
        run_id: opts.run_id.unwrap_or_else(RunId::random),
        metadata_json: serde_json::to_string(&base_meta).expect("metadata serializes"),
        header_len: 0,
    };
    let writer = match out {
        Some((path, overwrite)) => Some(DetectionLogWriter::create_reserved(
            path,
            &header,
            overwrite,
            1 << 16,
        )?),
        None => None,
    };
    let mut sink = ImportSink::new(
        writer,
        opts.format,
        tick,
        opts.resort_horizon_ps,
        opts.sync_channel,
    );
    for path in inputs {
        let f = std::fs::File::open(path).map_err(|e| crate::error::Error::io(path, e))?;
        let input = std::io::BufReader::with_capacity(1 << 20, f);
        let file_tick = decode_input(&mut sink, input, path, opts, tick)?;
        if file_tick != tick {
            return Err(ConfigError::invalid(
                "input",
                format!(
                    "{}: time unit {}/{} s differs from the first input's {}/{} s",
                    path.display(),
                    file_tick.num,
                    file_tick.den,
                    tick.num,
                    tick.den
                ),
            )
            .into());
        }
    }
    let (writer, mut report) = sink.finish()?;
    if report.records == 0 {
        // An empty input is a mistake (a wrong file, a capture that never started), not a log.
        return Err(ConfigError::invalid(
            "input",
            format!(
                "{}: no events in the input ({} bytes); nothing to import",
                inputs
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                report.files.iter().map(|f| f.bytes).sum::<u64>()
            ),
        )
        .into());
    }
    report.peak_rss_bytes = peak_rss_bytes();
    if let Some(w) = writer {
        let mut channels: Vec<ChannelInfo> = Vec::new();
        let mut seen: Vec<(u16, RecordKind)> = report
            .channels
            .iter()
            .map(|c| (c.channel, c.kind))
            .collect();
        seen.dedup_by_key(|c| c.0);
        for (id, kind) in seen {
            let state = opts.detectors.iter().find(|d| d.0 == id).map(|d| d.1);
            let ckind = match kind {
                RecordKind::Sync => ChannelKind::Sync,
                RecordKind::Clock => ChannelKind::Clock,
                RecordKind::Marker => ChannelKind::Marker,
                _ => ChannelKind::Detector,
            };
            channels.push(ChannelInfo {
                id,
                name: match ckind {
                    ChannelKind::Sync => format!("sync{id}"),
                    ChannelKind::Clock => format!("clock{id}"),
                    ChannelKind::Marker => format!("marker{id}"),
                    ChannelKind::Detector => format!("in{id}"),
                },
                kind: ckind,
                state,
            });
        }
        for (id, state) in &opts.detectors {
            if !channels.iter().any(|c| c.id == *id) {
                channels.push(ChannelInfo {
                    id: *id,
                    name: format!("in{id}"),
                    kind: ChannelKind::Detector,
                    state: Some(*state),
                });
            }
        }
        let mut meta = base_meta;
        meta.channels = channels;
        meta.extra.insert(
            "import".into(),
            serde_json::json!({
                "files": report.files.iter().map(|f| serde_json::json!({
                    "name": f.path.file_name().map(|n| n.to_string_lossy().into_owned()),
                    "bytes": f.bytes,
                    "details": f.details,
                })).collect::<Vec<_>>(),
                "records": report.records,
                "out_of_order": report.out_of_order,
                "gaps": report.gaps,
            }),
        );
        let header = FileHeader {
            metadata_json: serde_json::to_string(&meta).expect("metadata serializes"),
            ..header
        };
        w.finish_with_header(&header)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests;
