//! The `.qpl` preparation log: what Alice sent in every slot (basis, bit value, intensity
//! class), as bit planes in checksummed slot blocks after the common header
//! ([`super::header`], with the secret flag set: the file holds the raw key).
//!
//! Block layout (little-endian):
//!
//! | offset | type | field |
//! |---|---|---|
//! | 0 | `[u8; 4]` | `"QPBK"` |
//! | 4 | `u16` | layout: 0 = bit planes |
//! | 6 | `u16` | n_planes = 4 |
//! | 8 | `u64` | first_slot (= previous block's first_slot + n_slots; the first block starts at 0) |
//! | 16 | `u32` | n_slots (≥ 1) |
//! | 20 | `u32` | payload_len = n_planes · 8 · ⌈n_slots / 64⌉ |
//! | 24 | … | planes: basis, value, intensity bit 0, intensity bit 1 |
//! | 24 + payload_len | `[u8; 32]` | BLAKE3 of bytes 0 .. 24 + payload_len of this block |
//!
//! Each plane is ⌈n_slots/64⌉ little-endian `u64` words; bit `i` of a plane (bit `i mod 8` of
//! byte `i / 8`) belongs to slot `first_slot + i`; padding bits are zero. Basis bit 0 = Z,
//! 1 = X; the intensity class is `bit0 | bit1 << 1` and indexes the metadata's intensity list
//! (class 3 is invalid). Bit planes rather than the packed 4-bit symbols proposed in
//! `reference/formats.md` §9.2 keep the engine's single LSB-first bit order and let sifting
//! operate on whole words.

use super::atomic_file::AtomicFile;
use super::file_bytes::FileBytes;
use super::header::{FileHeader, FileKind, framing, parse_metadata};
use crate::bits::{BitVec, words_for};
use crate::error::{FormatError, Result};
use crate::protocol::{Basis, DecoyParams};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Block magic.
pub const BLOCK_MAGIC: [u8; 4] = *b"QPBK";
/// Block header size.
pub const BLOCK_HEADER_LEN: usize = 24;
/// Checksum size.
pub const CHECKSUM_LEN: usize = 32;
/// Planes per block.
pub const N_PLANES: usize = 4;
/// Default slots per block written by [`PrepLogWriter`].
pub const DEFAULT_BLOCK_SLOTS: usize = 1 << 20;

/// What Alice prepared in one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Symbol {
    /// Preparation basis.
    pub basis: Basis,
    /// Bit value.
    pub value: bool,
    /// Intensity class (0 = signal, 1 = decoy, 2 = weak decoy).
    pub intensity: u8,
}

/// Metadata of a preparation log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrepMeta {
    /// Always `alice`.
    pub role: String,
    /// Producer (e.g. `qkd-distill/simulate`).
    pub source_format: String,
    /// Protocol name, `decoy-bb84`.
    pub protocol: String,
    /// Decoy-state parameters of the source.
    pub decoy: DecoyParams,
    /// Number of slots.
    pub total_slots: u64,
    /// Plane order, for readers in other languages.
    #[serde(default)]
    pub planes: Vec<String>,
    /// Other keys, preserved.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Location of one slot block.
#[derive(Debug, Clone, Copy)]
pub struct SlotBlockIndex {
    /// Byte offset of the block header.
    pub offset: u64,
    /// First slot.
    pub first_slot: u64,
    /// Number of slots.
    pub n_slots: u32,
}

/// An open preparation log.
pub struct PrepLog {
    bytes: FileBytes,
    header: FileHeader,
    meta: PrepMeta,
    blocks: Vec<SlotBlockIndex>,
    finished: bool,
}

impl PrepLog {
    /// Open and index `path` (framing checked; checksums checked on access).
    pub fn open(path: &Path) -> Result<PrepLog> {
        Self::open_with(path, false)
    }

    /// Open a log that may still be growing: an incomplete last block is not an error, only
    /// complete blocks are indexed, and [`PrepLog::is_finished`] says whether the blocks cover
    /// the `total_slots` the metadata announces (0 while a rig does not know it yet).
    pub fn open_growing(path: &Path) -> Result<PrepLog> {
        Self::open_with(path, true)
    }

    /// The blocks cover the announced slots: the log is complete.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Let the kernel drop the mapped pages of block `i` (consumed).
    pub fn release(&self, i: usize) {
        if let Some(b) = self.blocks.get(i) {
            let len =
                BLOCK_HEADER_LEN + N_PLANES * 8 * words_for(b.n_slots as usize) + CHECKSUM_LEN;
            self.bytes.release(b.offset as usize, len);
        }
    }

    fn open_with(path: &Path, growing: bool) -> Result<PrepLog> {
        Self::parse(FileBytes::open(path)?, path, growing)
    }

    /// Parse a complete log held in memory (`name` labels errors); the fuzz targets' entry.
    pub fn from_bytes(bytes: Vec<u8>, name: &Path) -> Result<PrepLog> {
        Self::parse(FileBytes::from_vec(name, bytes), name, false)
    }

    fn parse(bytes: FileBytes, path: &Path, growing: bool) -> Result<PrepLog> {
        let header = FileHeader::decode(&bytes, FileKind::PrepLog, path)?;
        let meta: PrepMeta = parse_metadata(&header, path)?;
        let p = || path.to_path_buf();
        meta.decoy.validate().map_err(|e| FormatError::Metadata {
            path: p(),
            offset: super::header::HEADER_LEN as u64,
            message: e.to_string(),
        })?;
        let mut blocks = Vec::new();
        let mut off = header.header_len;
        let mut next_slot = 0u64;
        while off < bytes.len() {
            if growing && bytes.len() - off < BLOCK_HEADER_LEN {
                break;
            }
            framing::need(&bytes, off, BLOCK_HEADER_LEN, "slot block header", path)?;
            framing::block_magic(&bytes, off, &BLOCK_MAGIC, "preparation log block", path)?;
            let b = &bytes[off..];
            let layout = u16::from_le_bytes([b[4], b[5]]);
            let planes = u16::from_le_bytes([b[6], b[7]]) as usize;
            let first_slot = u64::from_le_bytes(b[8..16].try_into().unwrap());
            let n_slots = u32::from_le_bytes(b[16..20].try_into().unwrap());
            let plen = u32::from_le_bytes(b[20..24].try_into().unwrap()) as usize;
            let field = |o: u64, field: &'static str, message: String| -> crate::error::Error {
                FormatError::InvalidField {
                    path: p(),
                    offset: off as u64 + o,
                    field,
                    message,
                }
                .into()
            };
            if layout != 0 || planes != N_PLANES {
                return Err(field(
                    4,
                    "layout/n_planes",
                    format!("layout {layout} with {planes} planes is not supported (0 with 4)"),
                ));
            }
            if first_slot != next_slot {
                return Err(field(
                    8,
                    "first_slot",
                    format!("{first_slot}, expected {next_slot} (blocks must be contiguous)"),
                ));
            }
            if n_slots == 0 || plen != N_PLANES * 8 * words_for(n_slots as usize) {
                return Err(field(
                    16,
                    "n_slots/payload_len",
                    format!("{n_slots} slots do not fit payload_len {plen}"),
                ));
            }
            let total = BLOCK_HEADER_LEN + plen + CHECKSUM_LEN;
            if growing && bytes.len() - off < total {
                break;
            }
            framing::need(&bytes, off, total, "slot block payload and checksum", path)?;
            blocks.push(SlotBlockIndex {
                offset: off as u64,
                first_slot,
                n_slots,
            });
            next_slot += u64::from(n_slots);
            off += total;
        }
        let finished = next_slot == meta.total_slots && (meta.total_slots > 0 || !growing);
        if (!growing && !finished) || (meta.total_slots > 0 && next_slot > meta.total_slots) {
            return Err(FormatError::InvalidField {
                path: p(),
                offset: off as u64,
                field: "total_slots",
                message: format!(
                    "metadata announces {} slots but the blocks hold {next_slot} (file truncated?)",
                    meta.total_slots
                ),
            }
            .into());
        }
        Ok(PrepLog {
            bytes,
            header,
            meta,
            blocks,
            finished,
        })
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
    pub fn meta(&self) -> &PrepMeta {
        &self.meta
    }

    /// The block index.
    pub fn blocks(&self) -> &[SlotBlockIndex] {
        &self.blocks
    }

    /// Total slots.
    pub fn total_slots(&self) -> u64 {
        self.meta.total_slots
    }

    /// True when the file is memory-mapped.
    pub fn is_mapped(&self) -> bool {
        self.bytes.is_mapped()
    }

    /// The planes of block `i` without checking its checksum (for blocks already verified).
    pub fn block_trusted(&self, i: usize) -> SlotBlock<'_> {
        let bi = self.blocks[i];
        let off = bi.offset as usize;
        let nw = words_for(bi.n_slots as usize);
        let payload =
            &self.bytes[off + BLOCK_HEADER_LEN..off + BLOCK_HEADER_LEN + N_PLANES * 8 * nw];
        let plane = |k: usize| &payload[k * 8 * nw..(k + 1) * 8 * nw];
        SlotBlock {
            first_slot: bi.first_slot,
            n_slots: bi.n_slots as usize,
            basis: plane(0),
            value: plane(1),
            int0: plane(2),
            int1: plane(3),
        }
    }

    /// The planes of block `i`, after verifying its checksum and the intensity classes.
    pub fn block(&self, i: usize) -> Result<SlotBlock<'_>> {
        let bi = self.blocks[i];
        let off = bi.offset as usize;
        let nw = words_for(bi.n_slots as usize);
        let plen = N_PLANES * 8 * nw;
        framing::block_checksum(
            &self.bytes,
            off,
            BLOCK_HEADER_LEN + plen,
            "slot block",
            self.path(),
        )?;
        let block = self.block_trusted(i);
        // Class 3 does not exist: both intensity bits set is corruption the checksum cannot
        // catch (a writer bug); padding bits must be zero.
        for w in 0..nw {
            let a = u64::from_le_bytes(block.int0[w * 8..w * 8 + 8].try_into().unwrap());
            let b = u64::from_le_bytes(block.int1[w * 8..w * 8 + 8].try_into().unwrap());
            if a & b != 0 {
                let slot = bi.first_slot + (w * 64) as u64 + (a & b).trailing_zeros() as u64;
                return Err(FormatError::InvalidField {
                    path: self.path().to_path_buf(),
                    offset: (off + BLOCK_HEADER_LEN + 2 * 8 * nw + w * 8) as u64,
                    field: "intensity class",
                    message: format!("slot {slot} has intensity class 3"),
                }
                .into());
            }
        }
        Ok(block)
    }

    /// Verify every block.
    pub fn verify_all(&self) -> Result<()> {
        for i in 0..self.blocks.len() {
            self.block(i)?;
        }
        Ok(())
    }

    /// Index of the block holding `slot`.
    pub fn block_of_slot(&self, slot: u64) -> Option<usize> {
        // The blocks indexed so far (a growing log may not cover its announced total yet).
        let end = self
            .blocks
            .last()
            .map_or(0, |b| b.first_slot + u64::from(b.n_slots));
        if slot >= end {
            return None;
        }
        let i = self.blocks.partition_point(|b| b.first_slot <= slot);
        Some(i - 1)
    }
}

/// One verified slot block.
#[derive(Clone, Copy)]
pub struct SlotBlock<'a> {
    /// First slot.
    pub first_slot: u64,
    /// Number of slots.
    pub n_slots: usize,
    basis: &'a [u8],
    value: &'a [u8],
    int0: &'a [u8],
    int1: &'a [u8],
}

impl SlotBlock<'_> {
    /// True when `slot` lies in this block.
    #[inline]
    pub fn contains(&self, slot: u64) -> bool {
        slot >= self.first_slot && slot < self.first_slot + self.n_slots as u64
    }

    /// The four bit planes of the block (basis, value, intensity bit 0, intensity bit 1), bit
    /// `slot − first_slot` of each.
    #[inline]
    pub fn planes(&self) -> [&[u8]; 4] {
        [self.basis, self.value, self.int0, self.int1]
    }

    /// The symbol of `slot` (which must lie in the block).
    #[inline]
    pub fn symbol(&self, slot: u64) -> Symbol {
        let i = (slot - self.first_slot) as usize;
        let bit = |p: &[u8]| (p[i / 8] >> (i % 8)) & 1;
        Symbol {
            basis: Basis::from_bit(bit(self.basis) == 1),
            value: bit(self.value) == 1,
            intensity: bit(self.int0) | (bit(self.int1) << 1),
        }
    }

    /// Number of slots per (basis, intensity class), for `inspect`.
    pub fn class_counts(&self) -> [[u64; 3]; 2] {
        let mut c = [[0u64; 3]; 2];
        for i in 0..self.n_slots {
            let s = self.symbol(self.first_slot + i as u64);
            c[s.basis.bit() as usize][s.intensity.min(2) as usize] += 1;
        }
        c
    }
}

/// Accumulates slot symbols into planes and writes them as blocks.
pub struct PrepLogWriter {
    file: AtomicFile,
    next_slot: u64,
}

/// The four planes of a block of slots being built.
#[derive(Default)]
pub struct SlotPlanes {
    /// Basis bits (1 = X).
    pub basis: BitVec,
    /// Value bits.
    pub value: BitVec,
    /// Intensity class bit 0.
    pub int0: BitVec,
    /// Intensity class bit 1.
    pub int1: BitVec,
}

impl SlotPlanes {
    /// Empty planes for `n` slots.
    pub fn zeros(n: usize) -> SlotPlanes {
        SlotPlanes {
            basis: BitVec::zeros(n),
            value: BitVec::zeros(n),
            int0: BitVec::zeros(n),
            int1: BitVec::zeros(n),
        }
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.basis.len()
    }

    /// True when no slots.
    pub fn is_empty(&self) -> bool {
        self.basis.is_empty()
    }

    /// Set slot `i`.
    pub fn set(&mut self, i: usize, s: Symbol) {
        self.basis.set(i, s.basis.bit());
        self.value.set(i, s.value);
        self.int0.set(i, s.intensity & 1 == 1);
        self.int1.set(i, s.intensity & 2 == 2);
    }
}

impl PrepLogWriter {
    /// Create `path` (mode 0600: it holds Alice's raw key).
    pub fn create(path: &Path, header: &FileHeader, overwrite: bool) -> Result<PrepLogWriter> {
        let mut file = AtomicFile::create(path, overwrite, true)?;
        file.write_all(&header.encode(FileKind::PrepLog))?;
        Ok(PrepLogWriter { file, next_slot: 0 })
    }

    /// Append one block holding the slots of `planes` (at most 2^32 − 1 slots).
    pub fn write_block(&mut self, planes: &SlotPlanes) -> Result<()> {
        let n = planes.len();
        assert!(n > 0 && n < u32::MAX as usize, "prep block size");
        let nw = words_for(n);
        let mut buf = Vec::with_capacity(BLOCK_HEADER_LEN + N_PLANES * 8 * nw + CHECKSUM_LEN);
        buf.extend_from_slice(&BLOCK_MAGIC);
        buf.extend_from_slice(&0u16.to_le_bytes());
        buf.extend_from_slice(&(N_PLANES as u16).to_le_bytes());
        buf.extend_from_slice(&self.next_slot.to_le_bytes());
        buf.extend_from_slice(&(n as u32).to_le_bytes());
        buf.extend_from_slice(&((N_PLANES * 8 * nw) as u32).to_le_bytes());
        for plane in [&planes.basis, &planes.value, &planes.int0, &planes.int1] {
            for w in plane.words() {
                buf.extend_from_slice(&w.to_le_bytes());
            }
        }
        let sum = blake3::hash(&buf);
        buf.extend_from_slice(sum.as_bytes());
        self.next_slot += n as u64;
        let r = self.file.write_all(&buf);
        zeroize::Zeroize::zeroize(&mut buf);
        r
    }

    /// Slots written so far.
    pub fn slots(&self) -> u64 {
        self.next_slot
    }

    /// Complete the file.
    pub fn finish(self) -> Result<PathBuf> {
        self.file.commit()
    }

    /// Like [`PrepLogWriter::create`] with `reserve` bytes kept for the metadata, so that
    /// [`PrepLogWriter::finish_with_header`] can complete it (e.g. with counts known only at
    /// the end).
    pub fn create_reserved(
        path: &Path,
        header: &FileHeader,
        overwrite: bool,
        reserve: usize,
    ) -> Result<PrepLogWriter> {
        let mut h = header.clone();
        while h.metadata_json.len() < reserve {
            h.metadata_json.push(' ');
        }
        Self::create(path, &h, overwrite)
    }

    /// Replace the header (metadata padded to the same length) and complete the file.
    pub fn finish_with_header(mut self, header: &FileHeader, reserve: usize) -> Result<PathBuf> {
        let mut h = header.clone();
        if h.metadata_json.len() > reserve {
            return Err(crate::error::ConfigError::invalid(
                "metadata",
                format!(
                    "{} bytes exceed the {reserve} reserved",
                    h.metadata_json.len()
                ),
            )
            .into());
        }
        while h.metadata_json.len() < reserve {
            h.metadata_json.push(' ');
        }
        self.file.rewrite_at(0, &h.encode(FileKind::PrepLog))?;
        self.file.commit()
    }
}
