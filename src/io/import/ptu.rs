//! PicoQuant PTU files (PicoHarp 300/330, HydraHarp 400 V1/V2, TimeHarp 260 N/P, MultiHarp
//! 150/160 and the "Generic" record types), T2 and T3.
//!
//! Layout from PicoQuant's "PicoQuant-Time-Tagged-File-Format-Demos" (`doc/apx_tttrrecords`,
//! `apx_tagtypes`, the Python and C demos), cross-checked against libtcspc and phconvert
//! (`reference/formats.md` §1): an 8-byte magic `PQTTTR`, an 8-byte version, tagged header
//! entries (32-byte name, i32 index, u32 type, 8-byte value, with a payload after array, string
//! and blob types) up to `Header_End`, then `TTResult_NumberOfRecords` little-endian u32
//! records.
//!
//! Channels: photon inputs keep the device's 0-based input numbers (PicoHarp 300 T3 numbers
//! its inputs 1–4 in the record; they become 0–3). The HydraHarp-family T2 sync input is
//! channel [`SYNC_CHANNEL`] with kind `sync`; external markers are channel [`MARKER_CHANNEL`]
//! with kind `marker`, the marker bitmask in `aux` and the low-resolution flag set. T3 times
//! are `sync_index · round(sync period / tick) + dtime · round(resolution / tick)` with the tick
//! the dtime resolution, and `aux` holds the low 32 bits of the sync index (exact, whatever
//! rounding the period needs).

use super::{Counting, Decode, Tick};
use crate::error::{FormatError, Result};
use crate::io::detection_log::{Record, RecordKind};
use std::io::{Read, Write};

/// Channel id of the HydraHarp-family T2 sync input.
pub const SYNC_CHANNEL: u16 = 64;
/// Channel id of external marker records.
pub const MARKER_CHANNEL: u16 = 65;
/// Record flag: low-resolution time (markers).
pub const FLAG_LOW_RES: u8 = 1 << 1;

/// Record types (`TTResultFormat_TTTRRecType`).
pub mod rectype {
    /// PicoHarp 300 T2.
    pub const PICOHARP_T2: u32 = 0x0001_0203;
    /// PicoHarp 300 T3.
    pub const PICOHARP_T3: u32 = 0x0001_0303;
    /// HydraHarp V1 T2.
    pub const HYDRAHARP1_T2: u32 = 0x0001_0204;
    /// HydraHarp V1 T3.
    pub const HYDRAHARP1_T3: u32 = 0x0001_0304;
    /// HydraHarp V2 T2.
    pub const HYDRAHARP2_T2: u32 = 0x0101_0204;
    /// HydraHarp V2 T3.
    pub const HYDRAHARP2_T3: u32 = 0x0101_0304;
    /// TimeHarp 260 N T2.
    pub const TIMEHARP260N_T2: u32 = 0x0001_0205;
    /// TimeHarp 260 N T3.
    pub const TIMEHARP260N_T3: u32 = 0x0001_0305;
    /// TimeHarp 260 P T2.
    pub const TIMEHARP260P_T2: u32 = 0x0001_0206;
    /// TimeHarp 260 P T3.
    pub const TIMEHARP260P_T3: u32 = 0x0001_0306;
    /// MultiHarp / PicoHarp 330 / Generic T2.
    pub const GENERIC_T2: u32 = 0x0001_0207;
    /// MultiHarp / PicoHarp 330 / Generic T3.
    pub const GENERIC_T3: u32 = 0x0001_0307;

    /// Every supported type.
    pub const ALL: [u32; 12] = [
        PICOHARP_T2,
        PICOHARP_T3,
        HYDRAHARP1_T2,
        HYDRAHARP1_T3,
        HYDRAHARP2_T2,
        HYDRAHARP2_T3,
        TIMEHARP260N_T2,
        TIMEHARP260N_T3,
        TIMEHARP260P_T2,
        TIMEHARP260P_T3,
        GENERIC_T2,
        GENERIC_T3,
    ];

    /// Whether `t` is a T3 type.
    pub fn is_t3(t: u32) -> bool {
        (t >> 8) & 0xff == 0x03
    }
}

const TY_EMPTY8: u32 = 0xFFFF_0008;
const TY_BOOL8: u32 = 0x0000_0008;
const TY_INT8: u32 = 0x1000_0008;
const TY_BITSET64: u32 = 0x1100_0008;
const TY_COLOR8: u32 = 0x1200_0008;
const TY_FLOAT8: u32 = 0x2000_0008;
const TY_DATETIME: u32 = 0x2100_0008;
const TY_FLOAT8ARRAY: u32 = 0x2001_FFFF;
const TY_ANSISTRING: u32 = 0x4001_FFFF;
const TY_WIDESTRING: u32 = 0x4002_FFFF;
const TY_BLOB: u32 = 0xFFFF_FFFF;

/// The decoded header.
#[derive(Debug, Clone)]
pub struct PtuHeader {
    /// Record type.
    pub rec_type: u32,
    /// Records announced.
    pub records: u64,
    /// `MeasDesc_GlobalResolution` (s): the T2 unit, or the T3 sync period.
    pub global_resolution: f64,
    /// `MeasDesc_Resolution` (s): the T3 dtime unit.
    pub resolution: f64,
    /// Tick of the imported records.
    pub tick: Tick,
    /// T3: the sync period in ticks (rounded).
    pub sync_period_ticks: i64,
    /// Warning flags (`TTResult_MDescWarningFlags`).
    pub warning_flags: u64,
    /// The scalar tags, for the report.
    pub tags: serde_json::Map<String, serde_json::Value>,
    /// Offset of the first record.
    pub data_offset: u64,
}

/// Read the tagged header up to `Header_End`.
pub fn read_header<R: Read>(r: &mut Counting<R>) -> Result<PtuHeader> {
    let mut magic = [0u8; 16];
    r.need(&mut magic, "PTU magic and version")?;
    if &magic[..6] != b"PQTTTR" {
        return Err(FormatError::BadMagic {
            path: r.path().to_path_buf(),
            offset: 0,
            expected: "PQTTTR".into(),
            kind: "PicoQuant PTU (T2/T3)",
        }
        .into());
    }
    let mut tags = serde_json::Map::new();
    let (mut rec_type, mut records, mut gres, mut res, mut warn) = (None, None, None, None, 0u64);
    loop {
        let at = r.offset;
        let mut e = [0u8; 48];
        r.need(&mut e, "PTU tag entry")?;
        let ident_end = e[..32].iter().position(|&b| b == 0).unwrap_or(32);
        let ident = String::from_utf8_lossy(&e[..ident_end]).into_owned();
        let idx = i32::from_le_bytes(e[32..36].try_into().unwrap());
        let ty = u32::from_le_bytes(e[36..40].try_into().unwrap());
        let raw = u64::from_le_bytes(e[40..48].try_into().unwrap());
        let name = if idx >= 0 {
            format!("{ident}({idx})")
        } else {
            ident.clone()
        };
        let value: serde_json::Value = match ty {
            TY_EMPTY8 => serde_json::Value::Null,
            TY_BOOL8 => (raw != 0).into(),
            TY_INT8 | TY_BITSET64 | TY_COLOR8 => (raw as i64).into(),
            TY_FLOAT8 | TY_DATETIME => f64::from_bits(raw).into(),
            TY_FLOAT8ARRAY | TY_ANSISTRING | TY_WIDESTRING | TY_BLOB => {
                if raw > 1 << 26 {
                    return Err(r.invalid(
                        at + 40,
                        "Tag_Value",
                        format!("payload of {raw} bytes for tag {name}"),
                    ));
                }
                let mut payload = vec![0u8; raw as usize];
                r.need(&mut payload, "PTU tag payload")?;
                match ty {
                    TY_ANSISTRING => {
                        let end = payload
                            .iter()
                            .position(|&b| b == 0)
                            .unwrap_or(payload.len());
                        String::from_utf8_lossy(&payload[..end]).into_owned().into()
                    }
                    TY_WIDESTRING => {
                        let units: Vec<u16> = payload
                            .chunks_exact(2)
                            .map(|c| u16::from_le_bytes([c[0], c[1]]))
                            .take_while(|&u| u != 0)
                            .collect();
                        String::from_utf16_lossy(&units).into()
                    }
                    _ => serde_json::Value::Null,
                }
            }
            other => {
                return Err(r.invalid(
                    at + 36,
                    "Tag_TypeCode",
                    format!("unknown type code {other:#010x} of tag {name}"),
                ));
            }
        };
        match ident.as_str() {
            "TTResultFormat_TTTRRecType" => rec_type = Some(raw as u32),
            "TTResult_NumberOfRecords" => records = Some(raw as i64),
            "MeasDesc_GlobalResolution" => gres = Some(f64::from_bits(raw)),
            "MeasDesc_Resolution" => res = Some(f64::from_bits(raw)),
            "TTResult_MDescWarningFlags" => warn = raw,
            _ => {}
        }
        if ident == "Header_End" {
            break;
        }
        if !matches!(value, serde_json::Value::Null) && tags.len() < 400 {
            tags.insert(name, value);
        }
    }
    let path = r.path().to_path_buf();
    let missing = |tag: &'static str| -> crate::error::Error {
        FormatError::Metadata {
            path: path.clone(),
            offset: 16,
            message: format!("mandatory PTU tag {tag} missing"),
        }
        .into()
    };
    let rec_type = rec_type.ok_or_else(|| missing("TTResultFormat_TTTRRecType"))?;
    if !rectype::ALL.contains(&rec_type) {
        return Err(FormatError::Metadata {
            path,
            offset: 16,
            message: format!("record type {rec_type:#010x} is not a supported T2/T3 type"),
        }
        .into());
    }
    let records = records.ok_or_else(|| missing("TTResult_NumberOfRecords"))?;
    if records < 0 {
        return Err(missing("TTResult_NumberOfRecords (negative)"));
    }
    let gres = gres.ok_or_else(|| missing("MeasDesc_GlobalResolution"))?;
    let t3 = rectype::is_t3(rec_type);
    let (tick, period) = if t3 {
        let res = res.ok_or_else(|| missing("MeasDesc_Resolution"))?;
        let tick = Tick::from_seconds(res).ok_or_else(|| missing("MeasDesc_Resolution (> 0)"))?;
        let period = (gres / tick.seconds()).round() as i64;
        if period <= 0 {
            return Err(missing("MeasDesc_GlobalResolution (sync period > 0)"));
        }
        (tick, period)
    } else {
        let tick =
            Tick::from_seconds(gres).ok_or_else(|| missing("MeasDesc_GlobalResolution (> 0)"))?;
        (tick, 0)
    };
    Ok(PtuHeader {
        rec_type,
        records: records as u64,
        global_resolution: gres,
        resolution: res.unwrap_or(0.0),
        tick,
        sync_period_ticks: period,
        warning_flags: warn,
        tags,
        data_offset: r.offset,
    })
}

/// Decode one PTU file into `d`.
pub fn decode<R: Read>(r: &mut Counting<R>, d: &mut Decode<'_>) -> Result<Tick> {
    let h = read_header(r)?;
    let t3 = rectype::is_t3(h.rec_type);
    d.file
        .details
        .insert("record_type".into(), format!("{:#010x}", h.rec_type).into());
    d.file
        .details
        .insert("mode".into(), if t3 { "T3" } else { "T2" }.into());
    d.file
        .details
        .insert("records_announced".into(), h.records.into());
    d.file
        .details
        .insert("global_resolution_s".into(), h.global_resolution.into());
    if t3 {
        d.file
            .details
            .insert("resolution_s".into(), h.resolution.into());
        d.file
            .details
            .insert("sync_period_ticks".into(), h.sync_period_ticks.into());
        let err = (h.sync_period_ticks as f64 * h.tick.seconds() / h.global_resolution - 1.0) * 1e6;
        d.file
            .details
            .insert("sync_period_rounding_ppm".into(), err.into());
        d.file.details.insert("t3_sync_indexed".into(), true.into());
    }
    d.file
        .details
        .insert("tags".into(), serde_json::Value::Object(h.tags.clone()));
    if h.warning_flags & 0x080 != 0 {
        d.sink.report.warnings.push(format!(
            "{}: the device flagged EventsDropped (TTResult_MDescWarningFlags = {:#x})",
            r.path().display(),
            h.warning_flags
        ));
    }
    let mut buf = vec![0u8; 1 << 16];
    let mut decoder = RecordDecoder::new(h.rec_type, h.sync_period_ticks);
    let mut seen = 0u64;
    loop {
        let at = r.offset;
        let n = r.read_records(&mut buf, 4, "PTU record")?;
        if n == 0 {
            break;
        }
        for (i, c) in buf[..n].chunks_exact(4).enumerate() {
            if seen == h.records {
                return Err(r.invalid(
                    at + 4 * i as u64,
                    "records",
                    format!("data beyond the {} records the header announces", h.records),
                ));
            }
            seen += 1;
            let rec = u32::from_le_bytes(c.try_into().unwrap());
            if let Some(out) = decoder.decode(rec) {
                d.emit(out, at + 4 * i as u64)?;
            }
        }
    }
    if seen < h.records {
        return Err(FormatError::Truncated {
            path: r.path().to_path_buf(),
            offset: r.offset,
            what: "PTU records (TTResult_NumberOfRecords)",
            needed: 4 * (h.records - seen),
            available: 0,
        }
        .into());
    }
    d.file.device_records = seen;
    d.sink.report.overflows += decoder.overflows;
    Ok(h.tick)
}

/// Decodes the 32-bit records of one record type, keeping the overflow state.
pub struct RecordDecoder {
    rec_type: u32,
    sync_period: i64,
    /// Accumulated overflow (T2: time units; T3: sync counts).
    ofl: u64,
    /// Overflow records seen.
    pub overflows: u64,
}

impl RecordDecoder {
    /// A decoder for `rec_type` (T3: with the sync period in ticks).
    pub fn new(rec_type: u32, sync_period_ticks: i64) -> RecordDecoder {
        RecordDecoder {
            rec_type,
            sync_period: sync_period_ticks,
            ofl: 0,
            overflows: 0,
        }
    }

    fn t3_record(
        &self,
        nsync: u64,
        dtime: u64,
        channel: u16,
        kind: RecordKind,
        flags: u8,
        aux: u32,
    ) -> Record {
        let sync_index = self.ofl + nsync;
        Record {
            time: sync_index as i64 * self.sync_period + dtime as i64,
            channel,
            kind,
            flags,
            aux: if kind == RecordKind::Marker {
                aux
            } else {
                sync_index as u32
            },
        }
    }

    /// Decode one record; `None` for overflow records.
    pub fn decode(&mut self, rec: u32) -> Option<Record> {
        use rectype::*;
        let ev = |time: u64, channel: u16, kind: RecordKind, flags: u8, aux: u32| Record {
            time: time as i64,
            channel,
            kind,
            flags,
            aux,
        };
        match self.rec_type {
            PICOHARP_T2 => {
                const WRAP: u64 = 210_698_240;
                let ch = rec >> 28;
                let tt = u64::from(rec & 0x0FFF_FFFF);
                if ch == 0xF {
                    let markers = (tt & 0xF) as u32;
                    if markers == 0 {
                        self.ofl += WRAP;
                        self.overflows += 1;
                        None
                    } else {
                        Some(ev(
                            self.ofl + tt,
                            MARKER_CHANNEL,
                            RecordKind::Marker,
                            FLAG_LOW_RES,
                            markers,
                        ))
                    }
                } else {
                    Some(ev(self.ofl + tt, ch as u16, RecordKind::Detection, 0, 0))
                }
            }
            PICOHARP_T3 => {
                let ch = rec >> 28;
                let dtime = u64::from((rec >> 16) & 0xFFF);
                let nsync = u64::from(rec & 0xFFFF);
                if ch == 0xF {
                    if dtime == 0 {
                        self.ofl += 65_536;
                        self.overflows += 1;
                        None
                    } else {
                        Some(self.t3_record(
                            nsync,
                            0,
                            MARKER_CHANNEL,
                            RecordKind::Marker,
                            FLAG_LOW_RES,
                            dtime as u32,
                        ))
                    }
                } else {
                    // Inputs are numbered 1..4 in the record.
                    Some(self.t3_record(
                        nsync,
                        dtime,
                        (ch as u16).saturating_sub(1),
                        RecordKind::Detection,
                        0,
                        0,
                    ))
                }
            }
            t if is_t3(t) => {
                let special = rec >> 31 == 1;
                let ch = (rec >> 25) & 0x3F;
                let dtime = u64::from((rec >> 10) & 0x7FFF);
                let nsync = u64::from(rec & 0x3FF);
                if special {
                    if ch == 0x3F {
                        self.ofl += if t == HYDRAHARP1_T3 || nsync == 0 {
                            1024
                        } else {
                            1024 * nsync
                        };
                        self.overflows += 1;
                        None
                    } else {
                        Some(self.t3_record(
                            nsync,
                            0,
                            MARKER_CHANNEL,
                            RecordKind::Marker,
                            FLAG_LOW_RES,
                            ch,
                        ))
                    }
                } else {
                    Some(self.t3_record(nsync, dtime, ch as u16, RecordKind::Detection, 0, 0))
                }
            }
            t => {
                // HydraHarp-family T2.
                let special = rec >> 31 == 1;
                let ch = (rec >> 25) & 0x3F;
                let tt = u64::from(rec & 0x01FF_FFFF);
                if special {
                    if ch == 0x3F {
                        if t == HYDRAHARP1_T2 {
                            self.ofl += 33_552_000;
                        } else {
                            self.ofl += 33_554_432 * if tt == 0 { 1 } else { tt };
                        }
                        self.overflows += 1;
                        None
                    } else if ch == 0 {
                        Some(ev(self.ofl + tt, SYNC_CHANNEL, RecordKind::Sync, 0, 0))
                    } else {
                        Some(ev(
                            self.ofl + tt,
                            MARKER_CHANNEL,
                            RecordKind::Marker,
                            FLAG_LOW_RES,
                            ch,
                        ))
                    }
                } else {
                    Some(ev(self.ofl + tt, ch as u16, RecordKind::Detection, 0, 0))
                }
            }
        }
    }
}

/// An event to write into a PTU file (tests, simulator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PtuEvent {
    /// A photon on 0-based input `channel` at `time` (T2: time units; T3: sync index and
    /// dtime).
    Photon {
        /// Input.
        channel: u16,
        /// T2 time, or T3 sync index.
        time: u64,
        /// T3 dtime (0 for T2).
        dtime: u16,
    },
    /// A HydraHarp-family T2 sync.
    Sync {
        /// Time.
        time: u64,
    },
    /// Markers (bitmask 1..15).
    Marker {
        /// Time (T2) or sync index (T3).
        time: u64,
        /// Bitmask.
        mask: u8,
    },
}

/// Writes PTU files of any supported record type, overflow records included (PicoQuant's
/// documented layouts, used by the tests and by `qkd simulate --raw-timetags --ptu`). For the
/// record types with an overflow count it writes one combined overflow record per jump, and
/// can be told to use single ones.
pub struct PtuWriter<W: Write> {
    out: W,
    rec_type: u32,
    ofl: u64,
    /// Emit a single-overflow record per wrap even where counts are allowed.
    pub single_overflows: bool,
    /// Write an old-style 0 count for single overflows (means 1).
    pub zero_means_one: bool,
    records: u64,
}

/// The header of a PTU file with the given type and resolutions; `records` must be the
/// number of records that follow.
pub fn header_bytes(
    rec_type: u32,
    global_resolution: f64,
    resolution: f64,
    records: u64,
) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(b"PQTTTR\0\0");
    h.extend_from_slice(b"1.0.00\0\0");
    let mut tag = |name: &str, idx: i32, ty: u32, value: u64, payload: &[u8]| {
        let mut ident = [0u8; 32];
        ident[..name.len()].copy_from_slice(name.as_bytes());
        h.extend_from_slice(&ident);
        h.extend_from_slice(&idx.to_le_bytes());
        h.extend_from_slice(&ty.to_le_bytes());
        h.extend_from_slice(&value.to_le_bytes());
        h.extend_from_slice(payload);
    };
    let comment = b"qkd-distill test file\0\0\0";
    tag(
        "File_Comment",
        -1,
        TY_ANSISTRING,
        comment.len() as u64,
        comment,
    );
    tag(
        "Measurement_Mode",
        -1,
        TY_INT8,
        if rectype::is_t3(rec_type) { 3 } else { 2 },
        &[],
    );
    tag(
        "TTResultFormat_TTTRRecType",
        -1,
        TY_INT8,
        u64::from(rec_type),
        &[],
    );
    tag("TTResultFormat_BitsPerRecord", -1, TY_INT8, 32, &[]);
    tag(
        "MeasDesc_GlobalResolution",
        -1,
        TY_FLOAT8,
        global_resolution.to_bits(),
        &[],
    );
    tag(
        "MeasDesc_Resolution",
        -1,
        TY_FLOAT8,
        resolution.to_bits(),
        &[],
    );
    tag("HWInpChan_Offset", 0, TY_INT8, 0, &[]);
    tag("TTResult_NumberOfRecords", -1, TY_INT8, records, &[]);
    tag("Header_End", -1, TY_EMPTY8, 0, &[]);
    h
}

impl<W: Write> PtuWriter<W> {
    /// A writer of records (write the header first with [`header_bytes`]).
    pub fn new(out: W, rec_type: u32) -> Self {
        PtuWriter {
            out,
            rec_type,
            ofl: 0,
            single_overflows: false,
            zero_means_one: false,
            records: 0,
        }
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    fn put(&mut self, rec: u32) -> std::io::Result<()> {
        self.records += 1;
        self.out.write_all(&rec.to_le_bytes())
    }

    /// (wrap period, largest field value) of the time field.
    fn wrap(&self) -> u64 {
        use rectype::*;
        match self.rec_type {
            PICOHARP_T2 => 210_698_240,
            PICOHARP_T3 => 65_536,
            HYDRAHARP1_T2 => 33_552_000,
            t if is_t3(t) => 1024,
            _ => 33_554_432,
        }
    }

    fn overflow_record(&self, count: u64) -> u32 {
        use rectype::*;
        match self.rec_type {
            PICOHARP_T2 => 0xF000_0000,
            PICOHARP_T3 => 0xF000_0000,
            HYDRAHARP1_T2 | HYDRAHARP1_T3 => 0xFE00_0000,
            _ => 0xFE00_0000 | count as u32,
        }
    }

    /// Advance the overflow counter so that `time` fits the field.
    fn reach(&mut self, time: u64) -> std::io::Result<u64> {
        use rectype::*;
        let wrap = self.wrap();
        assert!(time >= self.ofl, "PTU events must be written in time order");
        let mut jumps = (time - self.ofl) / wrap;
        let counted = !matches!(
            self.rec_type,
            PICOHARP_T2 | PICOHARP_T3 | HYDRAHARP1_T2 | HYDRAHARP1_T3
        );
        let max_count = if is_t3(self.rec_type) {
            1023
        } else {
            0x01FF_FFFF
        };
        while jumps > 0 {
            let n = if counted && !self.single_overflows {
                jumps.min(max_count)
            } else {
                1
            };
            let field = if n == 1 && self.zero_means_one { 0 } else { n };
            let rec = self.overflow_record(if counted { field } else { 0 });
            self.put(rec)?;
            self.ofl += n * wrap;
            jumps -= n;
        }
        Ok(time - self.ofl)
    }

    /// Write one event (in time order).
    pub fn write(&mut self, e: PtuEvent) -> std::io::Result<()> {
        use rectype::*;
        match e {
            PtuEvent::Photon {
                channel,
                time,
                dtime,
            } => {
                let f = self.reach(time)? as u32;
                let rec = match self.rec_type {
                    PICOHARP_T2 => (u32::from(channel) << 28) | f,
                    PICOHARP_T3 => ((u32::from(channel) + 1) << 28) | (u32::from(dtime) << 16) | f,
                    t if is_t3(t) => (u32::from(channel) << 25) | (u32::from(dtime) << 10) | f,
                    _ => (u32::from(channel) << 25) | f,
                };
                self.put(rec)
            }
            PtuEvent::Sync { time } => {
                let f = self.reach(time)? as u32;
                self.put(0x8000_0000 | f)
            }
            PtuEvent::Marker { time, mask } => {
                let f = self.reach(time)? as u32;
                let m = u32::from(mask & 0xF);
                let rec = match self.rec_type {
                    PICOHARP_T2 => 0xF000_0000 | (f & !0xF) | m,
                    PICOHARP_T3 => 0xF000_0000 | (m << 16) | f,
                    _ => 0x8000_0000 | (m << 25) | f,
                };
                self.put(rec)
            }
        }
    }

    /// The output.
    pub fn into_inner(self) -> W {
        self.out
    }

    /// The output, to drain it while writing on.
    pub fn inner_mut(&mut self) -> &mut W {
        &mut self.out
    }
}
