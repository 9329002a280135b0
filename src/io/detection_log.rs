//! The `.qdl` detection log: the file header ([`super::header`]) followed by checksummed blocks
//! of 16-byte records.
//!
//! Block layout (little-endian):
//!
//! | offset | type | field |
//! |---|---|---|
//! | 0 | `[u8; 4]` | `"QDBK"` |
//! | 4 | `u16` | encoding: 0 = REC16 |
//! | 6 | `u16` | block flags: bit1 records time-sorted |
//! | 8 | `u32` | n_records (≤ 2^20) |
//! | 12 | `u32` | payload_len = 16 · n_records |
//! | 16 | `i64` | first_time: ≤ every record time |
//! | 24 | `i64` | last_time: ≥ every record time |
//! | 32 | … | payload: n_records REC16 records |
//! | 32 + payload_len | `[u8; 32]` | BLAKE3 of bytes 0 .. 32 + payload_len of this block |
//!
//! After the last block, a 32-byte footer: `"QDND"`, `u32` 0, `u64` number of blocks, `u64`
//! number of records, first 8 bytes of BLAKE3 of the footer's first 24 bytes. A file without it
//! was cut short (possibly exactly at a block boundary) and is refused.
//!
//! REC16 record: `i64 time` (ticks; a slot index in slot-annotated files), `u16 channel`,
//! `u8 kind` ([`RecordKind`]), `u8 flags` (bit0: part of a simultaneous multi-detector click),
//! `u32 aux`. This follows `reference/formats.md` §9.2.

use super::atomic_file::AtomicFile;
use super::file_bytes::FileBytes;
use super::header::{FileHeader, FileKind, framing, parse_metadata};
use crate::error::{FormatError, Result};
use crate::protocol::Basis;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Block magic.
pub const BLOCK_MAGIC: [u8; 4] = *b"QDBK";
/// Block header size.
pub const BLOCK_HEADER_LEN: usize = 32;
/// Checksum size.
pub const CHECKSUM_LEN: usize = 32;
/// Record size.
pub const RECORD_LEN: usize = 16;
/// Most records in one block.
pub const MAX_BLOCK_RECORDS: usize = 1 << 20;
/// Record flag: this click is part of a multi-detector click in the same slot.
pub const RECORD_FLAG_MULTI: u8 = 1;
/// Block flag: records are sorted by time.
pub const BLOCK_FLAG_SORTED: u16 = 1 << 1;

/// Footer magic.
pub const FOOTER_MAGIC: [u8; 4] = *b"QDND";
/// Footer size.
pub const FOOTER_LEN: usize = 32;

fn footer_digest(head: &[u8]) -> [u8; 8] {
    blake3::hash(head).as_bytes()[..8].try_into().unwrap()
}

fn encode_footer(n_blocks: u64, n_records: u64) -> [u8; FOOTER_LEN] {
    let mut f = [0u8; FOOTER_LEN];
    f[..4].copy_from_slice(&FOOTER_MAGIC);
    f[8..16].copy_from_slice(&n_blocks.to_le_bytes());
    f[16..24].copy_from_slice(&n_records.to_le_bytes());
    let d = footer_digest(&f[..24]);
    f[24..].copy_from_slice(&d);
    f
}

fn check_footer(b: &[u8], offset: u64, blocks: &[BlockIndex], path: &Path) -> Result<()> {
    let p = || path.to_path_buf();
    if b.len() != FOOTER_LEN {
        return Err(FormatError::InvalidField {
            path: p(),
            offset,
            field: "footer",
            message: format!(
                "{} bytes after the footer magic, expected {FOOTER_LEN} in all",
                b.len()
            ),
        }
        .into());
    }
    if footer_digest(&b[..24])[..] != b[24..32] {
        return Err(FormatError::Checksum {
            path: p(),
            offset,
            what: "footer",
        }
        .into());
    }
    let n_blocks = u64::from_le_bytes(b[8..16].try_into().unwrap());
    let n_records = u64::from_le_bytes(b[16..24].try_into().unwrap());
    let have: u64 = blocks.iter().map(|x| u64::from(x.n_records)).sum();
    if n_blocks != blocks.len() as u64 || n_records != have {
        return Err(FormatError::InvalidField {
            path: p(),
            offset,
            field: "footer",
            message: format!("footer announces {n_blocks} blocks / {n_records} records, the file holds {} / {have}", blocks.len()),
        }
        .into());
    }
    Ok(())
}

/// What a record denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// A detector click.
    Detection = 0,
    /// A sync or frame pulse.
    Sync = 1,
    /// A clock edge.
    Clock = 2,
    /// A marker input.
    Marker = 3,
    /// Start of a data gap (device overflow).
    GapBegin = 4,
    /// End of a data gap.
    GapEnd = 5,
    /// Count of missed events (in `aux`).
    MissedCount = 6,
    /// A device error.
    DeviceError = 7,
    /// Keep-alive / dummy record.
    Dummy = 8,
}

impl RecordKind {
    /// Decode a kind byte.
    pub fn from_u8(v: u8) -> Option<RecordKind> {
        use RecordKind::*;
        Some(match v {
            0 => Detection,
            1 => Sync,
            2 => Clock,
            3 => Marker,
            4 => GapBegin,
            5 => GapEnd,
            6 => MissedCount,
            7 => DeviceError,
            8 => Dummy,
            _ => return None,
        })
    }
}

/// One decoded record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Time in ticks (slot index for slot-annotated logs).
    pub time: i64,
    /// Channel id (see the metadata's channel list).
    pub channel: u16,
    /// Record kind.
    pub kind: RecordKind,
    /// Record flags.
    pub flags: u8,
    /// Auxiliary data.
    pub aux: u32,
}

impl Record {
    /// A detection on `channel` at `time`.
    pub fn detection(time: i64, channel: u16, flags: u8) -> Record {
        Record {
            time,
            channel,
            kind: RecordKind::Detection,
            flags,
            aux: 0,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.time.to_le_bytes());
        out.extend_from_slice(&self.channel.to_le_bytes());
        out.push(self.kind as u8);
        out.push(self.flags);
        out.extend_from_slice(&self.aux.to_le_bytes());
    }
}

/// Role of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// A single-photon detector.
    Detector,
    /// A sync / frame input.
    Sync,
    /// A clock input.
    Clock,
    /// A marker input.
    Marker,
}

/// The (basis, value) a detector's click announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetectorState {
    /// Measurement basis.
    pub basis: Basis,
    /// Bit value (0 or 1).
    pub value: u8,
}

/// One input channel of the recording device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelInfo {
    /// Channel id used in records.
    pub id: u16,
    /// Human name.
    pub name: String,
    /// Role.
    pub kind: ChannelKind,
    /// For detectors: the state a click announces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<DetectorState>,
}

/// Metadata of a detection log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectionMeta {
    /// `bob`, `alice`, `source` or `single`.
    pub role: String,
    /// Where the records came from (e.g. `qkd-distill/simulate`).
    pub source_format: String,
    /// The channels and, for detectors, the state each announces.
    pub channels: Vec<ChannelInfo>,
    /// Number of slots the run covers (slot-annotated logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_slots: Option<u64>,
    /// Other keys, preserved.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl DetectionMeta {
    /// The detector state of `channel`, if it is a detector with a state.
    pub fn detector_state(&self, channel: u16) -> Option<DetectorState> {
        self.channels
            .iter()
            .find(|c| c.id == channel && c.kind == ChannelKind::Detector)
            .and_then(|c| c.state)
    }
}

/// Location of one block in the file.
#[derive(Debug, Clone, Copy)]
pub struct BlockIndex {
    /// Byte offset of the block header.
    pub offset: u64,
    /// Records in the block.
    pub n_records: u32,
    /// Block flags.
    pub flags: u16,
    /// Lower bound of the record times.
    pub first_time: i64,
    /// Upper bound of the record times.
    pub last_time: i64,
}

/// An open detection log.
pub struct DetectionLog {
    bytes: FileBytes,
    header: FileHeader,
    meta: DetectionMeta,
    blocks: Vec<BlockIndex>,
    finished: bool,
}

impl DetectionLog {
    /// Open and index `path`. Framing (magics, lengths, truncation) is checked here; block
    /// checksums are checked when a block is read ([`DetectionLog::block`]) or by
    /// [`DetectionLog::verify_all`].
    pub fn open(path: &Path) -> Result<DetectionLog> {
        Self::open_with(path, false)
    }

    /// Open a log that may still be growing (a rig writing blocks as it goes): an incomplete
    /// last block and a missing footer are not errors; only complete blocks are indexed and
    /// [`DetectionLog::is_finished`] says whether the footer was seen. Open it again to see
    /// the blocks written since.
    pub fn open_growing(path: &Path) -> Result<DetectionLog> {
        Self::open_with(path, true)
    }

    /// The footer was seen: the log is complete.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn open_with(path: &Path, growing: bool) -> Result<DetectionLog> {
        Self::parse(FileBytes::open(path)?, path, growing)
    }

    /// Parse a complete log held in memory (`name` labels errors); the fuzz targets' entry.
    pub fn from_bytes(bytes: Vec<u8>, name: &Path) -> Result<DetectionLog> {
        Self::parse(FileBytes::from_vec(name, bytes), name, false)
    }

    fn parse(bytes: FileBytes, path: &Path, growing: bool) -> Result<DetectionLog> {
        let header = FileHeader::decode(&bytes, FileKind::DetectionLog, path)?;
        let meta: DetectionMeta = parse_metadata(&header, path)?;
        let mut blocks = Vec::new();
        let mut off = header.header_len;
        let p = || path.to_path_buf();
        let mut footer_seen = false;
        while off < bytes.len() {
            if bytes[off..].starts_with(&FOOTER_MAGIC) {
                check_footer(&bytes[off..], off as u64, &blocks, path)?;
                footer_seen = true;
                break;
            }
            if growing && bytes.len() - off < BLOCK_HEADER_LEN.max(FOOTER_LEN) {
                break; // the next block (or the footer) is still being written
            }
            framing::need(&bytes, off, BLOCK_HEADER_LEN, "block header", path)?;
            framing::block_magic(&bytes, off, &BLOCK_MAGIC, "detection log block", path)?;
            let b = &bytes[off..];
            let encoding = u16::from_le_bytes([b[4], b[5]]);
            let flags = u16::from_le_bytes([b[6], b[7]]);
            let n = u32::from_le_bytes(b[8..12].try_into().unwrap());
            let plen = u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize;
            if encoding != 0 {
                return Err(FormatError::InvalidField {
                    path: p(),
                    offset: off as u64 + 4,
                    field: "block encoding",
                    message: format!("{encoding} is not supported (0 = REC16)"),
                }
                .into());
            }
            if n as usize > MAX_BLOCK_RECORDS || plen != n as usize * RECORD_LEN {
                return Err(FormatError::InvalidField {
                    path: p(),
                    offset: off as u64 + 8,
                    field: "n_records/payload_len",
                    message: format!("{n} records do not fit payload_len {plen}"),
                }
                .into());
            }
            let total = BLOCK_HEADER_LEN + plen + CHECKSUM_LEN;
            if growing && bytes.len() - off < total {
                break;
            }
            framing::need(&bytes, off, total, "block payload and checksum", path)?;
            blocks.push(BlockIndex {
                offset: off as u64,
                n_records: n,
                flags,
                first_time: i64::from_le_bytes(b[16..24].try_into().unwrap()),
                last_time: i64::from_le_bytes(b[24..32].try_into().unwrap()),
            });
            off += total;
        }
        if !footer_seen && !growing {
            return Err(FormatError::Truncated {
                path: p(),
                offset: off as u64,
                what: "end-of-log footer (the file was cut short)",
                needed: FOOTER_LEN as u64,
                available: 0,
            }
            .into());
        }
        Ok(DetectionLog {
            bytes,
            header,
            meta,
            blocks,
            finished: footer_seen,
        })
    }

    /// Let the kernel drop the mapped pages of block `i` (its records were consumed), so that
    /// a long run's resident memory stays flat. A no-op for logs read into memory.
    pub fn release(&self, i: usize) {
        if let Some(b) = self.blocks.get(i) {
            let len = BLOCK_HEADER_LEN + b.n_records as usize * RECORD_LEN + CHECKSUM_LEN;
            self.bytes.release(b.offset as usize, len);
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.bytes.path()
    }

    /// The header.
    pub fn header(&self) -> &FileHeader {
        &self.header
    }

    /// The metadata.
    pub fn meta(&self) -> &DetectionMeta {
        &self.meta
    }

    /// The block index.
    pub fn blocks(&self) -> &[BlockIndex] {
        &self.blocks
    }

    /// Total records in all blocks.
    pub fn total_records(&self) -> u64 {
        self.blocks.iter().map(|b| u64::from(b.n_records)).sum()
    }

    /// True when the file is memory-mapped.
    pub fn is_mapped(&self) -> bool {
        self.bytes.is_mapped()
    }

    /// The records of block `i`, after verifying its checksum and record fields.
    pub fn block(&self, i: usize) -> Result<Records<'_>> {
        let bi = self.blocks[i];
        let off = bi.offset as usize;
        let plen = bi.n_records as usize * RECORD_LEN;
        framing::block_checksum(
            &self.bytes,
            off,
            BLOCK_HEADER_LEN + plen,
            "detection block",
            self.path(),
        )?;
        let body = &self.bytes[off..off + BLOCK_HEADER_LEN + plen];
        let recs = Records {
            bytes: &body[BLOCK_HEADER_LEN..],
        };
        let sorted = bi.flags & BLOCK_FLAG_SORTED != 0;
        let mut prev = i64::MIN;
        for (k, chunk) in recs.bytes.chunks_exact(RECORD_LEN).enumerate() {
            let rec_off = (off + BLOCK_HEADER_LEN + k * RECORD_LEN) as u64;
            let t = i64::from_le_bytes(chunk[..8].try_into().unwrap());
            let bad = |field: &'static str, message: String| -> crate::error::Error {
                FormatError::InvalidField {
                    path: self.path().to_path_buf(),
                    offset: rec_off,
                    field,
                    message,
                }
                .into()
            };
            if RecordKind::from_u8(chunk[10]).is_none() {
                return Err(bad("record kind", format!("unknown kind {}", chunk[10])));
            }
            if t < bi.first_time || t > bi.last_time {
                return Err(bad(
                    "record time",
                    format!(
                        "{t} outside the block's [{}, {}]",
                        bi.first_time, bi.last_time
                    ),
                ));
            }
            if sorted && t < prev {
                return Err(bad(
                    "record time",
                    format!("{t} before the previous {prev} in a sorted block"),
                ));
            }
            prev = t;
        }
        Ok(recs)
    }

    /// The records of block `i` without verification (for readers that verified it once with
    /// [`DetectionLog::block`]).
    pub fn block_trusted(&self, i: usize) -> Records<'_> {
        let bi = self.blocks[i];
        let off = bi.offset as usize + BLOCK_HEADER_LEN;
        Records {
            bytes: &self.bytes[off..off + bi.n_records as usize * RECORD_LEN],
        }
    }

    /// Byte offset of record `r` of block `b`.
    pub fn record_offset(&self, b: usize, r: usize) -> u64 {
        self.blocks[b].offset + (BLOCK_HEADER_LEN + r * RECORD_LEN) as u64
    }

    /// Verify every block.
    pub fn verify_all(&self) -> Result<()> {
        for i in 0..self.blocks.len() {
            self.block(i)?;
        }
        Ok(())
    }
}

/// Reads a log's records in order, verifying each block's checksum once when it is entered.
pub struct RecordCursor {
    log: std::sync::Arc<DetectionLog>,
    block: usize,
    record: usize,
    verified: Option<usize>,
    follow: Option<super::Follow>,
}

impl RecordCursor {
    /// A cursor at the first record of `log`.
    pub fn new(log: std::sync::Arc<DetectionLog>) -> Self {
        Self::following(log, None)
    }

    /// A cursor that, with `follow`, waits for a log still being written (until its footer,
    /// or a stop request).
    pub fn following(log: std::sync::Arc<DetectionLog>, follow: Option<super::Follow>) -> Self {
        RecordCursor {
            log,
            block: 0,
            record: 0,
            verified: None,
            follow,
        }
    }

    /// The log.
    pub fn log(&self) -> &DetectionLog {
        &self.log
    }

    /// The next record and its byte offset, without consuming it.
    pub fn peek(&mut self) -> Result<Option<(Record, u64)>> {
        loop {
            while self.block < self.log.blocks().len() {
                if self.verified != Some(self.block) {
                    self.log.block(self.block)?;
                    self.verified = Some(self.block);
                }
                let recs = self.log.block_trusted(self.block);
                if self.record < recs.len() {
                    let off = self.log.record_offset(self.block, self.record);
                    return Ok(Some((recs.get(self.record), off)));
                }
                self.log.release(self.block);
                self.block += 1;
                self.record = 0;
            }
            match &self.follow {
                Some(f) if !self.log.is_finished() && !f.stopped() => {
                    f.wait();
                    self.log = std::sync::Arc::new(DetectionLog::open_growing(self.log.path())?);
                }
                _ => return Ok(None),
            }
        }
    }

    /// The next record and its byte offset.
    pub fn next_record(&mut self) -> Result<Option<(Record, u64)>> {
        let r = self.peek()?;
        if r.is_some() {
            self.record += 1;
        }
        Ok(r)
    }
}

/// The records of one verified block.
#[derive(Clone, Copy)]
pub struct Records<'a> {
    bytes: &'a [u8],
}

impl<'a> Records<'a> {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.bytes.len() / RECORD_LEN
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The records' bytes, [`RECORD_LEN`] each: time (i64 LE), channel (u16 LE), kind, flags,
    /// aux (u32 LE).
    #[inline]
    pub fn raw(&self) -> &'a [u8] {
        self.bytes
    }

    /// Record `i` (kinds were validated when the block was read).
    #[inline]
    pub fn get(&self, i: usize) -> Record {
        let c = &self.bytes[i * RECORD_LEN..(i + 1) * RECORD_LEN];
        Record {
            time: i64::from_le_bytes(c[..8].try_into().unwrap()),
            channel: u16::from_le_bytes([c[8], c[9]]),
            kind: RecordKind::from_u8(c[10]).unwrap_or(RecordKind::Dummy),
            flags: c[11],
            aux: u32::from_le_bytes(c[12..16].try_into().unwrap()),
        }
    }

    /// Iterate over the records.
    pub fn iter(&self) -> impl Iterator<Item = Record> + 'a {
        let this = *self;
        (0..this.len()).map(move |i| this.get(i))
    }
}

/// Pad JSON text with spaces to `len` bytes.
fn pad_to(s: &mut String, len: usize) {
    while s.len() < len {
        s.push(' ');
    }
}

/// Writes a detection log block by block.
pub struct DetectionLogWriter {
    file: AtomicFile,
    buf: Vec<u8>,
    records: u64,
    blocks: u64,
    /// Bytes reserved for the metadata JSON when the header is completed at the end.
    reserved_meta: Option<usize>,
}

impl DetectionLogWriter {
    /// Create `path` with `header` (its `metadata_json` must hold a [`DetectionMeta`]).
    pub fn create(path: &Path, header: &FileHeader, overwrite: bool) -> Result<DetectionLogWriter> {
        let mut file = AtomicFile::create(path, overwrite, false)?;
        file.write_all(&header.encode(FileKind::DetectionLog))?;
        Ok(DetectionLogWriter {
            file,
            buf: Vec::new(),
            records: 0,
            blocks: 0,
            reserved_meta: None,
        })
    }

    /// Like [`DetectionLogWriter::create`], but reserve `reserve` bytes for the metadata so that
    /// [`DetectionLogWriter::finish_with_header`] can replace the header once the stream has
    /// been read (e.g. the channel list and statistics of an import). The metadata JSON is
    /// padded with spaces, which JSON allows.
    pub fn create_reserved(
        path: &Path,
        header: &FileHeader,
        overwrite: bool,
        reserve: usize,
    ) -> Result<DetectionLogWriter> {
        let mut h = header.clone();
        let len = h.metadata_json.len().max(reserve);
        pad_to(&mut h.metadata_json, len);
        let mut w = Self::create(path, &h, overwrite)?;
        w.reserved_meta = Some(len);
        Ok(w)
    }

    /// Append records as one or more blocks (split at [`MAX_BLOCK_RECORDS`]).
    pub fn write_records(&mut self, records: &[Record]) -> Result<()> {
        for chunk in records.chunks(MAX_BLOCK_RECORDS) {
            self.write_block(chunk)?;
        }
        Ok(())
    }

    fn write_block(&mut self, records: &[Record]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let first = records.iter().map(|r| r.time).min().unwrap();
        let last = records.iter().map(|r| r.time).max().unwrap();
        let sorted = records.windows(2).all(|w| w[0].time <= w[1].time);
        let buf = &mut self.buf;
        buf.clear();
        buf.extend_from_slice(&BLOCK_MAGIC);
        buf.extend_from_slice(&0u16.to_le_bytes());
        buf.extend_from_slice(&(if sorted { BLOCK_FLAG_SORTED } else { 0 }).to_le_bytes());
        buf.extend_from_slice(&(records.len() as u32).to_le_bytes());
        buf.extend_from_slice(&((records.len() * RECORD_LEN) as u32).to_le_bytes());
        buf.extend_from_slice(&first.to_le_bytes());
        buf.extend_from_slice(&last.to_le_bytes());
        for r in records {
            r.encode(buf);
        }
        let sum = blake3::hash(buf);
        buf.extend_from_slice(sum.as_bytes());
        self.records += records.len() as u64;
        self.blocks += 1;
        let buf = std::mem::take(&mut self.buf);
        let r = self.file.write_all(&buf);
        self.buf = buf;
        r
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Replace the header (its metadata must fit the reserved size) and complete the file.
    pub fn finish_with_header(mut self, header: &FileHeader) -> Result<PathBuf> {
        let Some(len) = self.reserved_meta else {
            return Err(crate::error::ConfigError::invalid(
                "header",
                "finish_with_header needs a writer made by create_reserved",
            )
            .into());
        };
        if header.metadata_json.len() > len {
            return Err(crate::error::ConfigError::invalid(
                "metadata",
                format!(
                    "{} bytes of metadata exceed the {len} bytes reserved",
                    header.metadata_json.len()
                ),
            )
            .into());
        }
        let mut h = header.clone();
        pad_to(&mut h.metadata_json, len);
        self.file.rewrite_at(0, &h.encode(FileKind::DetectionLog))?;
        self.finish()
    }

    /// Write the footer and complete the file.
    pub fn finish(mut self) -> Result<PathBuf> {
        let f = encode_footer(self.blocks, self.records);
        self.file.write_all(&f)?;
        self.file.commit()
    }
}
