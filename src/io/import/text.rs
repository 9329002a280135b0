//! Generic text / CSV time tags: one event per line, columns given by a spec such as
//! `time,channel` or `channel,skip,time,kind`. Delimiters `,`, `;`, tab or spaces; lines
//! starting with `#` and a non-numeric first line (a header) are skipped. Times are integers
//! in `--time-unit` (ticks of `tick_ps`, or ps/ns/µs/s) or decimals in s/ns/µs. Kinds are names
//! (`detection`, `sync`, `marker`, …) or the native numbers; `channel_base` 1 makes
//! 1-based channel columns (quTAG ASCII) 0-based.

use super::{Counting, Decode, Tick};
use crate::error::{ConfigError, Result};
use crate::io::detection_log::{Record, RecordKind};
use std::io::{BufRead, Read};

/// A column of the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// Event time.
    Time,
    /// Channel number.
    Channel,
    /// Record kind.
    Kind,
    /// Auxiliary value.
    Aux,
    /// Ignored.
    Skip,
}

/// The time unit of the time column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimeUnit {
    /// Integer ticks of `tick_ps`.
    Ticks,
    /// Seconds times this factor (1e-12 ps, 1e-9 ns, 1e-6 µs, 1 s).
    Seconds(f64),
}

/// The column spec.
#[derive(Debug, Clone)]
pub struct CsvSpec {
    /// Columns in order.
    pub columns: Vec<Column>,
    /// Unit of the time column.
    pub time_unit: TimeUnit,
    /// Tick of the imported records in picoseconds.
    pub tick_ps: f64,
    /// Subtract this from channel numbers (1 for 1-based files).
    pub channel_base: u16,
    /// Take the columns from a header line of names when the file has one (the columns were
    /// not given explicitly): `time_ps`/`time`, `channel`, `kind`, `aux`; others are skipped.
    /// This reads `qkd export` output as it is written.
    pub columns_from_header: bool,
}

impl Default for CsvSpec {
    fn default() -> Self {
        CsvSpec {
            columns: vec![Column::Time, Column::Channel],
            time_unit: TimeUnit::Ticks,
            tick_ps: 1.0,
            channel_base: 0,
            columns_from_header: true,
        }
    }
}

impl CsvSpec {
    /// Parse `time,channel[,kind][,aux|skip…]`.
    pub fn parse_columns(s: &str) -> Result<Vec<Column>, ConfigError> {
        let cols: Vec<Column> = s
            .split(',')
            .map(|c| match c.trim() {
                "time" | "t" => Ok(Column::Time),
                "channel" | "ch" => Ok(Column::Channel),
                "kind" => Ok(Column::Kind),
                "aux" => Ok(Column::Aux),
                "skip" | "_" | "" => Ok(Column::Skip),
                other => Err(ConfigError::invalid(
                    "columns",
                    format!("unknown column `{other}` (time, channel, kind, aux, skip)"),
                )),
            })
            .collect::<Result<_, _>>()?;
        let count = |c: Column| cols.iter().filter(|&&x| x == c).count();
        if count(Column::Time) != 1
            || count(Column::Channel) != 1
            || count(Column::Kind) > 1
            || count(Column::Aux) > 1
        {
            return Err(ConfigError::invalid(
                "columns",
                "need exactly one time and one channel column",
            ));
        }
        Ok(cols)
    }

    /// Parse a time unit name.
    pub fn parse_unit(s: &str) -> Result<TimeUnit, ConfigError> {
        Ok(match s {
            "ticks" => TimeUnit::Ticks,
            "ps" => TimeUnit::Seconds(1e-12),
            "ns" => TimeUnit::Seconds(1e-9),
            "us" | "µs" => TimeUnit::Seconds(1e-6),
            "s" => TimeUnit::Seconds(1.0),
            other => {
                return Err(ConfigError::invalid(
                    "time-unit",
                    format!("`{other}` (ticks, ps, ns, us, s)"),
                ));
            }
        })
    }

    /// The records' tick.
    pub fn tick(&self) -> Result<Tick> {
        Tick::from_seconds(self.tick_ps * 1e-12)
            .ok_or_else(|| ConfigError::invalid("tick-ps", format!("{}", self.tick_ps)).into())
    }
}

fn kind(s: &str) -> Option<RecordKind> {
    if let Ok(v) = s.parse::<u8>() {
        return RecordKind::from_u8(v);
    }
    Some(match s.to_ascii_lowercase().as_str() {
        "detection" | "photon" | "d" => RecordKind::Detection,
        "sync" | "frame" => RecordKind::Sync,
        "clock" => RecordKind::Clock,
        "marker" => RecordKind::Marker,
        "gap_begin" => RecordKind::GapBegin,
        "gap_end" => RecordKind::GapEnd,
        "missed_count" => RecordKind::MissedCount,
        "device_error" => RecordKind::DeviceError,
        "dummy" => RecordKind::Dummy,
        _ => return None,
    })
}

/// The columns a header line of names gives, with the unit of its time column; `None` when
/// the line does not name a time and a channel column.
fn columns_of_header(fields: &[&str]) -> Option<(Vec<Column>, Option<TimeUnit>)> {
    let mut unit = None;
    let mut time_at = None;
    let mut cols: Vec<Column> = fields
        .iter()
        .map(|f| match f.trim().to_ascii_lowercase().as_str() {
            "channel" | "ch" => Column::Channel,
            "kind" => Column::Kind,
            "aux" => Column::Aux,
            _ => Column::Skip,
        })
        .collect();
    // Prefer a time in picoseconds (it does not depend on the exporting log's tick).
    for (i, f) in fields.iter().enumerate() {
        let f = f.trim().to_ascii_lowercase();
        let u = match f.as_str() {
            "time_ps" => Some(TimeUnit::Seconds(1e-12)),
            "time_ns" => Some(TimeUnit::Seconds(1e-9)),
            "time" | "t" | "time_ticks" => None,
            _ => continue,
        };
        if time_at.is_none() || (u.is_some() && unit.is_none()) {
            time_at = Some(i);
            unit = u;
        }
    }
    cols[time_at?] = Column::Time;
    let count = |c: Column| cols.iter().filter(|&&x| x == c).count();
    (count(Column::Channel) == 1 && count(Column::Kind) <= 1 && count(Column::Aux) <= 1)
        .then_some((cols, unit))
}

/// A time in `unit` converted to ticks of `tick_s`; `None` when it does not fit an i64.
fn to_ticks(x: f64, unit: f64, tick_s: f64) -> Option<i64> {
    let t = (x * unit / tick_s).round();
    (t.is_finite() && t.abs() < 9.2e18).then_some(t as i64)
}

/// Decode one text file.
pub fn decode<R: Read>(r: &mut Counting<R>, d: &mut Decode<'_>, spec: &CsvSpec) -> Result<Tick> {
    let tick = spec.tick()?;
    let tick_s = tick.seconds();
    let mut line = String::new();
    let path = r.path().to_path_buf();
    let mut reader = std::io::BufReader::new(&mut *r);
    let (mut n, mut lineno, mut offset) = (0u64, 0u64, 0u64);
    let mut data_lines = 0u64;
    let mut columns = spec.columns.clone();
    let mut time_unit = spec.time_unit;
    loop {
        line.clear();
        let got = reader
            .read_line(&mut line)
            .map_err(|e| crate::error::Error::io(&path, e))?;
        if got == 0 {
            break;
        }
        let at = offset;
        offset += got as u64;
        lineno += 1;
        let text = line.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        data_lines += 1;
        // The first non-comment line may be a header of column names.
        let first = data_lines == 1;
        let fields: Vec<&str> = text
            .split([',', ';', '\t', ' '])
            .filter(|f| !f.is_empty())
            .collect();
        let bad = |field: &'static str, msg: String| -> crate::error::Error {
            crate::error::FormatError::InvalidField {
                path: path.clone(),
                offset: at,
                field,
                message: format!("line {lineno}: {msg}"),
            }
            .into()
        };
        // A header is a first line of names only: no field of it is a number. Any other
        // line that does not parse is an error, the first one too.
        if first && fields.iter().all(|f| f.parse::<f64>().is_err()) {
            if spec.columns_from_header
                && let Some((cols, unit)) = columns_of_header(&fields)
            {
                columns = cols;
                if let Some(u) = unit {
                    time_unit = u;
                }
            }
            continue;
        }
        if fields.len() < columns.len() {
            return Err(bad(
                "columns",
                format!("{} fields, the spec has {}", fields.len(), columns.len()),
            ));
        }
        let mut rec = Record::detection(0, 0, 0);
        for (col, f) in columns.iter().zip(&fields) {
            match col {
                Column::Time => {
                    let t = match time_unit {
                        TimeUnit::Ticks => f.parse::<i64>().ok(),
                        TimeUnit::Seconds(unit) => match f.parse::<i64>() {
                            Ok(i) => to_ticks(i as f64, unit, tick_s),
                            Err(_) => f
                                .parse::<f64>()
                                .ok()
                                .and_then(|x| to_ticks(x, unit, tick_s)),
                        },
                    };
                    match t {
                        Some(t) => rec.time = t,
                        None => {
                            return Err(bad(
                                "time",
                                format!("`{f}` is not a time that fits 64-bit ticks"),
                            ));
                        }
                    }
                }
                Column::Channel => match f.parse::<i64>() {
                    Ok(c)
                        if c >= i64::from(spec.channel_base)
                            && c - i64::from(spec.channel_base) <= 0xFFFE =>
                    {
                        rec.channel = (c - i64::from(spec.channel_base)) as u16
                    }
                    _ => {
                        return Err(bad(
                            "channel",
                            format!(
                                "`{f}` is not a channel number ≥ {} (≤ {})",
                                spec.channel_base,
                                0xFFFE + u32::from(spec.channel_base)
                            ),
                        ));
                    }
                },
                Column::Kind => match kind(f) {
                    Some(k) => rec.kind = k,
                    None => return Err(bad("kind", format!("`{f}` is not a record kind"))),
                },
                Column::Aux => match f.parse::<u32>() {
                    Ok(a) => rec.aux = a,
                    Err(_) => return Err(bad("aux", format!("`{f}` is not a u32"))),
                },
                Column::Skip => {}
            }
        }
        d.emit(rec, at)?;
        n += 1;
    }
    d.file.device_records = n;
    Ok(tick)
}
