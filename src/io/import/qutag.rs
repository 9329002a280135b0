//! qutools quTAG / quTAU files (`tdcbase.h`, the quTAU manual, ETA's parser;
//! `reference/formats.md` §3).
//!
//! * **Binary**: the magic `87 B3 91 FA`, a 40-byte header (private; skipped), then 10-byte
//!   records: u64 time in time-base units and u16 channel, little-endian, channels 0-based.
//! * **Compressed**: the same header, then 5-byte records read as a 40-bit little-endian integer:
//!   bits 0–36 time (wrapping every 2^37 units; unwrapped here), bits 37–39 channel.
//!
//! Channel 100 + n is marker input n (kind `marker`), 104 the millisecond tick (kind `clock`).
//! Each channel is time-ordered but the merged stream is not (inversions of ~86 ns were seen in
//! ETA's sample), so the import's bounded re-sort applies.

use super::{Counting, Decode, Tick};
use crate::error::{FormatError, Result};
use crate::io::detection_log::{Record, RecordKind};
use std::io::Read;

/// The first bytes of a quTAG binary or compressed file.
pub const MAGIC: [u8; 4] = [0x87, 0xB3, 0x91, 0xFA];
/// Header length.
pub const HEADER_LEN: usize = 40;

fn kind_of(channel: u16) -> RecordKind {
    match channel {
        104 => RecordKind::Clock,
        100..=103 | 105..=131 => RecordKind::Marker,
        _ => RecordKind::Detection,
    }
}

/// Decode one file (binary or compressed) with time base `tick`.
pub fn decode<R: Read>(
    r: &mut Counting<R>,
    d: &mut Decode<'_>,
    compressed: bool,
    tick: Tick,
) -> Result<Tick> {
    let mut h = [0u8; HEADER_LEN];
    r.need(&mut h, "quTAG header")?;
    if h[..4] != MAGIC {
        return Err(FormatError::BadMagic {
            path: r.path().to_path_buf(),
            offset: 0,
            expected: "87 B3 91 FA".into(),
            kind: "quTAG binary/compressed",
        }
        .into());
    }
    let unit = if compressed { 5 } else { 10 };
    let mut buf = vec![0u8; unit * 8192];
    let (mut n, mut wraps, mut last) = (0u64, 0i64, 0u64);
    loop {
        let at = r.offset;
        let got = r.read_records(&mut buf, unit, "quTAG record")?;
        if got == 0 {
            break;
        }
        for (i, c) in buf[..got].chunks_exact(unit).enumerate() {
            let (time, channel) = if compressed {
                let mut b = [0u8; 8];
                b[..5].copy_from_slice(c);
                let v = u64::from_le_bytes(b);
                let t = v & ((1 << 37) - 1);
                // The 37-bit counter wraps; a drop of more than half its range is a wrap.
                if n > 0 && t < last && last - t > 1 << 36 {
                    wraps += 1;
                    d.sink.report.overflows += 1;
                }
                last = t;
                ((wraps << 37) + t as i64, ((v >> 37) & 7) as u16)
            } else {
                let t = u64::from_le_bytes(c[..8].try_into().unwrap());
                if t > i64::MAX as u64 {
                    return Err(r.invalid(
                        at + (unit * i) as u64,
                        "timestamp",
                        format!("{t} exceeds 2^63"),
                    ));
                }
                (t as i64, u16::from_le_bytes([c[8], c[9]]))
            };
            d.emit(
                Record {
                    time,
                    channel,
                    kind: kind_of(channel),
                    flags: 0,
                    aux: 0,
                },
                at + (unit * i) as u64,
            )?;
            n += 1;
        }
    }
    d.file.device_records = n;
    d.file
        .details
        .insert("compressed".into(), compressed.into());
    Ok(tick)
}
