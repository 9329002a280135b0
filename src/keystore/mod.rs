//! Key storage: where a party's pipeline puts each confirmed block key ([`KeySink`]).
//!
//! [`KeyFile`] is the batch store: the run's key, block after block, in one file per party,
//! written as `NAME.partial` (mode 0600, unbuffered) and renamed into place only when the run
//! completed without a security abort and both parties confirmed every block; otherwise it is
//! removed, so an aborted run leaves no key bits behind. An existing key file is never
//! overwritten unless asked. Keys are raw bytes: bit i of the key is bit i mod 8 of byte i/8.

pub mod inbox;
pub mod store;

pub use inbox::StoreInbox;
pub use store::KeyStore;

use crate::block::{BlockReport, SecretKey};
use crate::error::Result;
use crate::io::AtomicFile;
use std::path::{Path, PathBuf};

/// Where a party's confirmed block keys go. Called in block order, only for blocks with key,
/// only after both parties confirmed the block.
pub trait KeySink: Send + 'static {
    /// Store the key of `block` (its report says which block it is, where it ends in the run,
    /// and how it was verified).
    fn append(&mut self, block: &BlockReport, key: &SecretKey) -> Result<()>;
    /// Keep only the blocks before `first_block`: the later ones were committed here but not
    /// at the peer (a session that broke between the two commits), so they are discarded on
    /// resumption. Called only after the peer's resume point was authenticated.
    fn rollback(&mut self, first_block: u64) -> Result<()> {
        let _ = first_block;
        Ok(())
    }
}

/// A party's key file.
pub struct KeyFile {
    file: AtomicFile,
    secret_bits: u64,
}

impl KeyFile {
    /// Start writing the key file `path`.
    pub fn create(path: &Path, overwrite: bool) -> Result<KeyFile> {
        Ok(KeyFile {
            file: AtomicFile::create(path, overwrite, true)?,
            secret_bits: 0,
        })
    }

    /// Secret bits written so far.
    pub fn secret_bits(&self) -> u64 {
        self.secret_bits
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

impl KeySink for KeyFile {
    fn append(&mut self, _block: &BlockReport, key: &SecretKey) -> Result<()> {
        let bytes = key.as_bytes();
        self.file.write_all(bytes)?;
        self.secret_bits += bytes.len() as u64 * 8;
        Ok(())
    }
}
