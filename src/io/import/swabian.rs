//! Swabian Instruments Time Tagger raw tags (the `Tag` struct of the streaming API, the legacy
//! `Dump` files: header-less 16-byte records; `reference/formats.md` §2):
//! u8 type (0 time tag, 1 error, 2 overflow begin, 3 overflow end, 4 missed events), u8
//! reserved, u16 missed-event count, i32 channel, i64 time in ps, little-endian.
//!
//! Channels: rising edges are numbered from 1 and become ids 0, 1, …; falling edges (negative
//! numbers) become 0x8000 + (|n| − 1). Overflow intervals become gap-begin/gap-end records and
//! missed events a missed-count record, so lost data is never silent.

use super::{Counting, Decode, Tick};
use crate::error::Result;
use crate::io::detection_log::{Record, RecordKind};
use std::io::Read;

/// Channel id of Swabian channel number `n` (≠ 0).
pub fn channel_id(n: i32) -> Option<u16> {
    match n {
        1..=0x7FFF => Some((n - 1) as u16),
        -0x7FFF..=-1 => Some(0x8000 + (-n - 1) as u16),
        _ => None,
    }
}

/// Decode one file.
pub fn decode<R: Read>(r: &mut Counting<R>, d: &mut Decode<'_>) -> Result<Tick> {
    let mut buf = vec![0u8; 16 * 8192];
    let mut n = 0u64;
    loop {
        let at = r.offset;
        let got = r.read_records(&mut buf, 16, "Swabian 16-byte tag")?;
        if got == 0 {
            break;
        }
        for (i, c) in buf[..got].chunks_exact(16).enumerate() {
            let off = at + 16 * i as u64;
            let ty = c[0];
            let missed = u16::from_le_bytes([c[2], c[3]]);
            let ch = i32::from_le_bytes(c[4..8].try_into().unwrap());
            let time = i64::from_le_bytes(c[8..16].try_into().unwrap());
            let kind = match ty {
                0 => RecordKind::Detection,
                1 => RecordKind::DeviceError,
                2 => RecordKind::GapBegin,
                3 => RecordKind::GapEnd,
                4 => RecordKind::MissedCount,
                other => return Err(r.invalid(off, "type", format!("tag type {other} (0–4)"))),
            };
            let channel = if kind == RecordKind::Detection || kind == RecordKind::MissedCount {
                channel_id(ch)
                    .ok_or_else(|| r.invalid(off + 4, "channel", format!("channel {ch}")))?
            } else {
                0xFFFF
            };
            d.emit(
                Record {
                    time,
                    channel,
                    kind,
                    flags: 0,
                    aux: if kind == RecordKind::MissedCount {
                        u32::from(missed)
                    } else {
                        0
                    },
                },
                off,
            )?;
            n += 1;
        }
    }
    d.file.device_records = n;
    Ok(Tick::PS)
}
