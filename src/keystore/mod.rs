//! Key storage: the final key of a run, block after block, in one file per party.
//!
//! The file is written as `NAME.partial` (mode 0600, unbuffered) and renamed into place only
//! when the run completed without a security abort and both parties' keys agree; otherwise
//! it is removed, so an aborted run leaves no key bits behind. An existing key file is never
//! overwritten unless asked. Keys are raw bytes: bit i of the key is bit i mod 8 of byte i/8.

use crate::block::{Block, BlockReport, SecretKey};
use crate::error::Result;
use crate::io::AtomicFile;
use std::path::{Path, PathBuf};

/// Collects a party's secret blocks.
pub struct KeySink {
    file: AtomicFile,
    digest: blake3::Hasher,
    /// Reports of all blocks, in order.
    pub reports: Vec<BlockReport>,
    /// Secret bits written.
    pub secret_bits: u64,
}

impl KeySink {
    /// Start writing the key file `path`.
    pub fn create(path: &Path, overwrite: bool) -> Result<KeySink> {
        Ok(KeySink {
            file: AtomicFile::create(path, overwrite, true)?,
            digest: blake3::Hasher::new(),
            reports: Vec::new(),
            secret_bits: 0,
        })
    }

    /// Append one block's key and keep its report.
    pub fn push(&mut self, block: Block<SecretKey>) -> Result<()> {
        let bytes = block.key.as_bytes();
        self.file.write_all(bytes)?;
        self.digest.update(bytes);
        self.secret_bits += bytes.len() as u64 * 8;
        let mut report = block.report.clone();
        report.ledger = block.ledger;
        self.reports.push(report);
        Ok(())
    }

    /// Digest of the key written so far (to compare the parties' keys without revealing them).
    pub fn digest(&self) -> [u8; 32] {
        *self.digest.finalize().as_bytes()
    }

    /// Make the key file visible.
    pub fn commit(self) -> Result<PathBuf> {
        self.file.commit()
    }

    /// The key file's final path.
    pub fn path(&self) -> &Path {
        self.file.target()
    }
}
