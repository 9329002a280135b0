//! The 64-byte file header shared by `.qdl` and `.qpl` files, followed by JSON metadata.
//!
//! Layout (all integers little-endian), after the native-format proposal of
//! `reference/formats.md` §9.2, with BLAKE3 in place of CRC32C:
//!
//! | offset | type | field |
//! |---|---|---|
//! | 0 | `[u8; 8]` | magic: `89 51 44 4C 0D 0A 1A 0A` (`\x89QDL\r\n\x1a\n`) or `89 51 50 4C 0D 0A 1A 0A` (`\x89QPL…`) |
//! | 8 | `u16`, `u16` | format version major = 1, minor = 0 |
//! | 12 | `u32` | header_len: 64 + metadata length padded to a multiple of 8; blocks start here |
//! | 16 | `u32` | flags: bit0 time-sorted, bit2 slot-annotated records, bit3 secret (preparation logs) |
//! | 20 | `u32` | metadata_len (bytes of JSON, before padding) |
//! | 24 | `u64` | tick numerator (seconds) |
//! | 32 | `u64` | tick denominator: one tick = num/den seconds |
//! | 40 | `i64` | origin_unix_ns: UTC time of tick 0 (`i64::MIN` = unknown) |
//! | 48 | `[u8; 8]` | run_id: random, shared by all files of one run |
//! | 56 | `[u8; 8]` | first 8 bytes of BLAKE3(bytes 0..56 ‖ metadata JSON) |
//! | 64 | … | metadata: UTF-8 JSON object, zero-padded to a multiple of 8 |

use crate::error::{FormatError, Result};
use std::path::Path;

/// Header size before the metadata.
pub const HEADER_LEN: usize = 64;
/// Major version this build reads and writes.
pub const VERSION_MAJOR: u16 = 1;
/// Minor version this build writes.
pub const VERSION_MINOR: u16 = 0;

/// Header flag: records are sorted by time.
pub const FLAG_TIME_SORTED: u32 = 1 << 0;
/// Header flag: record times are slot indices (tick = slot period).
pub const FLAG_SLOT_ANNOTATED: u32 = 1 << 2;
/// Header flag: the file holds secret data (Alice's preparation log).
pub const FLAG_SECRET: u32 = 1 << 3;

/// Which of the two native formats a header belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `.qdl` detection log.
    DetectionLog,
    /// `.qpl` preparation log.
    PrepLog,
}

impl FileKind {
    /// The 8 magic bytes.
    pub fn magic(self) -> [u8; 8] {
        match self {
            FileKind::DetectionLog => *b"\x89QDL\r\n\x1a\n",
            FileKind::PrepLog => *b"\x89QPL\r\n\x1a\n",
        }
    }

    /// Human name.
    pub fn name(self) -> &'static str {
        match self {
            FileKind::DetectionLog => "detection log (.qdl)",
            FileKind::PrepLog => "preparation log (.qpl)",
        }
    }
}

/// An 8-byte run identifier (shown as 16 hex digits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RunId(pub [u8; 8]);

impl RunId {
    /// A fresh random id (from the OS random source; a fixed fallback pattern is never used:
    /// failure to read it is unlikely enough that the time and process id suffice).
    pub fn random() -> RunId {
        use rand::TryRng;
        let mut b = [0u8; 8];
        if rand::rngs::SysRng.try_fill_bytes(&mut b).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            b = (t ^ (u64::from(std::process::id()) << 32)).to_le_bytes();
        }
        RunId(b)
    }

    /// Parse 16 hex digits.
    pub fn parse(s: &str) -> Option<RunId> {
        let s = s.trim();
        if s.len() != 16 {
            return None;
        }
        let mut b = [0u8; 8];
        for (i, byte) in b.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(RunId(b))
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RunId({self})")
    }
}

/// The decoded header (metadata kept as raw JSON text for the format-specific parser).
#[derive(Debug, Clone)]
pub struct FileHeader {
    /// Format version (major, minor).
    pub version: (u16, u16),
    /// Flags (see the `FLAG_*` constants).
    pub flags: u32,
    /// Tick numerator in seconds.
    pub tick_num: u64,
    /// Tick denominator.
    pub tick_den: u64,
    /// Unix time of tick 0 in ns, `i64::MIN` if unknown.
    pub origin_unix_ns: i64,
    /// Run identifier.
    pub run_id: RunId,
    /// Metadata JSON text.
    pub metadata_json: String,
    /// Offset of the first block.
    pub header_len: usize,
}

impl FileHeader {
    /// Serialize the header and padded metadata.
    pub fn encode(&self, kind: FileKind) -> Vec<u8> {
        let meta = self.metadata_json.as_bytes();
        let padded = meta.len().div_ceil(8) * 8;
        let mut out = Vec::with_capacity(HEADER_LEN + padded);
        out.extend_from_slice(&kind.magic());
        out.extend_from_slice(&VERSION_MAJOR.to_le_bytes());
        out.extend_from_slice(&VERSION_MINOR.to_le_bytes());
        out.extend_from_slice(&((HEADER_LEN + padded) as u32).to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.tick_num.to_le_bytes());
        out.extend_from_slice(&self.tick_den.to_le_bytes());
        out.extend_from_slice(&self.origin_unix_ns.to_le_bytes());
        out.extend_from_slice(&self.run_id.0);
        let mut h = blake3::Hasher::new();
        h.update(&out[..56]);
        h.update(meta);
        out.extend_from_slice(&h.finalize().as_bytes()[..8]);
        out.extend_from_slice(meta);
        out.resize(HEADER_LEN + padded, 0);
        out
    }

    /// Parse and verify the header of a `kind` file.
    pub fn decode(bytes: &[u8], kind: FileKind, path: &Path) -> Result<FileHeader> {
        let p = || path.to_path_buf();
        if bytes.len() < 8 || bytes[..8] != kind.magic() {
            let other = match kind {
                FileKind::DetectionLog => FileKind::PrepLog,
                FileKind::PrepLog => FileKind::DetectionLog,
            };
            let hint = if bytes.len() >= 8 && bytes[..8] == other.magic() {
                format!(" (this is a {})", other.name())
            } else {
                String::new()
            };
            return Err(FormatError::BadMagic {
                path: p(),
                offset: 0,
                expected: format!("{:02x?}{hint}", kind.magic()),
                kind: kind.name(),
            }
            .into());
        }
        if bytes.len() < HEADER_LEN {
            return Err(FormatError::Truncated {
                path: p(),
                offset: 0,
                what: "file header",
                needed: HEADER_LEN as u64,
                available: bytes.len() as u64,
            }
            .into());
        }
        let u16_at = |o: usize| u16::from_le_bytes(bytes[o..o + 2].try_into().unwrap());
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap());
        let (major, minor) = (u16_at(8), u16_at(10));
        if major != VERSION_MAJOR {
            return Err(FormatError::UnsupportedVersion {
                path: p(),
                major,
                minor,
                supported: VERSION_MAJOR,
            }
            .into());
        }
        let header_len = u32_at(12) as usize;
        let meta_len = u32_at(20) as usize;
        if header_len < HEADER_LEN + meta_len
            || !header_len.is_multiple_of(8)
            || header_len > HEADER_LEN + meta_len + 7
        {
            return Err(FormatError::InvalidField {
                path: p(),
                offset: 12,
                field: "header_len",
                message: format!("{header_len} does not fit metadata_len {meta_len}"),
            }
            .into());
        }
        if bytes.len() < header_len {
            return Err(FormatError::Truncated {
                path: p(),
                offset: HEADER_LEN as u64,
                what: "metadata",
                needed: (header_len - HEADER_LEN) as u64,
                available: (bytes.len() - HEADER_LEN) as u64,
            }
            .into());
        }
        let meta = &bytes[HEADER_LEN..HEADER_LEN + meta_len];
        let mut h = blake3::Hasher::new();
        h.update(&bytes[..56]);
        h.update(meta);
        if h.finalize().as_bytes()[..8] != bytes[56..64] {
            return Err(FormatError::Checksum {
                path: p(),
                offset: 0,
                what: "file header and metadata",
            }
            .into());
        }
        let metadata_json = std::str::from_utf8(meta)
            .map_err(|e| FormatError::Metadata {
                path: p(),
                offset: HEADER_LEN as u64,
                message: e.to_string(),
            })?
            .to_string();
        let (tick_num, tick_den) = (u64_at(24), u64_at(32));
        if tick_num == 0 || tick_den == 0 {
            return Err(FormatError::InvalidField {
                path: p(),
                offset: 24,
                field: "tick",
                message: format!("tick {tick_num}/{tick_den} s must be positive"),
            }
            .into());
        }
        Ok(FileHeader {
            version: (major, minor),
            flags: u32_at(16),
            tick_num,
            tick_den,
            origin_unix_ns: u64_at(40) as i64,
            run_id: RunId(bytes[48..56].try_into().unwrap()),
            metadata_json,
            header_len,
        })
    }

    /// Tick length in seconds.
    pub fn tick_seconds(&self) -> f64 {
        self.tick_num as f64 / self.tick_den as f64
    }
}

/// Parse metadata JSON into `T`, naming the file on failure.
pub fn parse_metadata<T: serde::de::DeserializeOwned>(
    header: &FileHeader,
    path: &Path,
) -> Result<T> {
    serde_json::from_str(&header.metadata_json).map_err(|e| {
        FormatError::Metadata {
            path: path.to_path_buf(),
            offset: HEADER_LEN as u64,
            message: e.to_string(),
        }
        .into()
    })
}

/// Checks shared by the block framing of both formats.
pub(crate) mod framing {
    use crate::error::{FormatError, Result};
    use std::path::Path;

    /// Fail with `Truncated` unless `bytes[off..]` holds at least `needed` bytes.
    pub fn need(
        bytes: &[u8],
        off: usize,
        needed: usize,
        what: &'static str,
        path: &Path,
    ) -> Result<()> {
        let available = bytes.len().saturating_sub(off);
        if available < needed {
            return Err(FormatError::Truncated {
                path: path.to_path_buf(),
                offset: off as u64,
                what,
                needed: needed as u64,
                available: available as u64,
            }
            .into());
        }
        Ok(())
    }

    /// Fail with `BadMagic` unless the block at `off` starts with `magic`.
    pub fn block_magic(
        bytes: &[u8],
        off: usize,
        magic: &[u8; 4],
        kind: &'static str,
        path: &Path,
    ) -> Result<()> {
        if bytes[off..off + 4] != magic[..] {
            return Err(FormatError::BadMagic {
                path: path.to_path_buf(),
                offset: off as u64,
                expected: format!("block magic \"{}\"", String::from_utf8_lossy(magic)),
                kind,
            }
            .into());
        }
        Ok(())
    }

    /// Verify the 32-byte BLAKE3 checksum that follows `bytes[off..off + body_len]`.
    pub fn block_checksum(
        bytes: &[u8],
        off: usize,
        body_len: usize,
        what: &'static str,
        path: &Path,
    ) -> Result<()> {
        let body = &bytes[off..off + body_len];
        let sum = &bytes[off + body_len..off + body_len + 32];
        if blake3::hash(body).as_bytes() != sum {
            return Err(FormatError::Checksum {
                path: path.to_path_buf(),
                offset: off as u64,
                what,
            }
            .into());
        }
        Ok(())
    }
}
