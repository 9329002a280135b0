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
}

impl Default for CsvSpec {
    fn default() -> Self {
        CsvSpec {
            columns: vec![Column::Time, Column::Channel],
            time_unit: TimeUnit::Ticks,
            tick_ps: 1.0,
            channel_base: 0,
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

/// Decode one text file.
pub fn decode<R: Read>(r: &mut Counting<R>, d: &mut Decode<'_>, spec: &CsvSpec) -> Result<Tick> {
    let tick = spec.tick()?;
    let tick_s = tick.seconds();
    let mut line = String::new();
    let path = r.path().to_path_buf();
    let mut reader = std::io::BufReader::new(&mut *r);
    let (mut n, mut lineno, mut offset) = (0u64, 0u64, 0u64);
    let mut data_lines = 0u64;
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
        if fields.len() < spec.columns.len() {
            if first {
                continue;
            }
            return Err(bad(
                "columns",
                format!(
                    "{} fields, the spec has {}",
                    fields.len(),
                    spec.columns.len()
                ),
            ));
        }
        let mut rec = Record::detection(0, 0, 0);
        let mut header_line = false;
        for (col, f) in spec.columns.iter().zip(&fields) {
            match col {
                Column::Time => {
                    let t = match spec.time_unit {
                        TimeUnit::Ticks => f.parse::<i64>().ok(),
                        TimeUnit::Seconds(unit) => {
                            if let Ok(i) = f.parse::<i64>() {
                                Some((i as f64 * unit / tick_s).round() as i64)
                            } else {
                                f.parse::<f64>()
                                    .ok()
                                    .filter(|x| x.is_finite())
                                    .map(|x| (x * unit / tick_s).round() as i64)
                            }
                        }
                    };
                    match t {
                        Some(t) => rec.time = t,
                        None if first => header_line = true,
                        None => return Err(bad("time", format!("`{f}` is not a time"))),
                    }
                }
                Column::Channel => match f.parse::<i64>() {
                    Ok(c)
                        if c >= i64::from(spec.channel_base)
                            && c - i64::from(spec.channel_base) <= 0xFFFE =>
                    {
                        rec.channel = (c - i64::from(spec.channel_base)) as u16
                    }
                    _ if first => header_line = true,
                    _ => {
                        return Err(bad(
                            "channel",
                            format!("`{f}` is not a channel ≥ {}", spec.channel_base),
                        ));
                    }
                },
                Column::Kind => match kind(f) {
                    Some(k) => rec.kind = k,
                    None if first => header_line = true,
                    None => return Err(bad("kind", format!("`{f}` is not a record kind"))),
                },
                Column::Aux => match f.parse::<u32>() {
                    Ok(a) => rec.aux = a,
                    Err(_) if first => header_line = true,
                    Err(_) => return Err(bad("aux", format!("`{f}` is not a u32"))),
                },
                Column::Skip => {}
            }
        }
        if header_line {
            continue;
        }
        d.emit(rec, at)?;
        n += 1;
    }
    d.file.device_records = n;
    Ok(tick)
}
