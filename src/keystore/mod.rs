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

/// The commit record of a key pair (docs/keys.md): written, synced, before the first of the
/// renames; removed after the last.
pub const PAIR_RECORD: &str = ".keys.commit";

#[derive(serde::Serialize, serde::Deserialize)]
struct PairRecord {
    /// (temporary path, final path, bytes) of every file of the commit.
    files: Vec<(PathBuf, PathBuf, u64)>,
}

/// Make a path absolute (relative to the current directory), so that a commit record names
/// its files whatever directory the recovering process runs in.
fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| crate::error::Error::io(p, e))
}

/// Commit Alice's and Bob's key files together, with any other files of the run (its
/// report): all synced under their temporary names, a commit record written and synced in
/// the key folder, all renamed, the folders synced, the record removed. A crash before the
/// record leaves no key visible (the partial files are removed by the next run,
/// [`recover_pair`]); a crash after it leaves a record from which [`recover_pair`] completes
/// the renames. The two key files must be in one folder.
pub fn commit_pair(
    a: KeyFile,
    b: KeyFile,
    others: Vec<crate::io::atomic_file::PreparedFile>,
) -> Result<(PathBuf, PathBuf)> {
    let dir = a.path().parent().map(Path::to_path_buf).unwrap_or_default();
    if b.path().parent() != Some(dir.as_path()) {
        return Err(crate::error::ConfigError::Mismatch(format!(
            "the key files {} and {} must be in one folder",
            a.path().display(),
            b.path().display()
        ))
        .into());
    }
    let mut files = vec![a.file.prepare()?, b.file.prepare()?];
    files.extend(others);
    let mut record = PairRecord { files: vec![] };
    for f in &files {
        let len = std::fs::metadata(f.partial())
            .map(|m| m.len())
            .map_err(|e| crate::error::Error::io(f.partial(), e))?;
        record
            .files
            .push((absolute(f.partial())?, absolute(f.target())?, len));
    }
    let rec_path = dir.join(PAIR_RECORD);
    let text = serde_json::to_vec(&record).expect("record serializes");
    crate::io::write_atomic(&rec_path, &text, true)?;
    let mut targets = vec![];
    for f in files {
        targets.push(f.commit()?);
    }
    std::fs::remove_file(&rec_path).map_err(|e| crate::error::Error::io(&rec_path, e))?;
    crate::io::atomic_file::sync_parent(&rec_path)?;
    Ok((targets[0].clone(), targets[1].clone()))
}

/// What [`recover_pair`] found in a key folder.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PairRecovery {
    /// Files whose commit a crash interrupted, now completed.
    pub completed: Vec<PathBuf>,
    /// Temporary key files of a run that never committed, removed.
    pub removed: Vec<PathBuf>,
}

/// Bring a key folder to a committed state after a crash (call with the folder's lock held):
/// finish an interrupted pair commit, or remove the temporary files of a run that did not
/// reach its commit. `names` are the key files a run writes there (e.g. alice.key, bob.key).
pub fn recover_pair(dir: &Path, names: &[&str]) -> Result<PairRecovery> {
    use crate::error::{Error, FormatError};
    let mut out = PairRecovery::default();
    let rec_path = dir.join(PAIR_RECORD);
    if rec_path.exists() {
        let bytes = std::fs::read(&rec_path).map_err(|e| Error::io(&rec_path, e))?;
        let rec: PairRecord = serde_json::from_slice(&bytes).map_err(|e| {
            Error::from(FormatError::Metadata {
                path: rec_path.clone(),
                offset: 0,
                message: format!("key commit record: {e}"),
            })
        })?;
        for (p, t, len) in &rec.files {
            match std::fs::metadata(p) {
                Ok(m) if m.len() == *len => {
                    std::fs::rename(p, t).map_err(|e| Error::io(t, e))?;
                    crate::io::atomic_file::sync_parent(t)?;
                    out.completed.push(t.clone());
                }
                Ok(m) => {
                    return Err(FormatError::InvalidField {
                        path: p.clone(),
                        offset: m.len(),
                        field: "length",
                        message: format!(
                            "{} names it with {len} bytes; the interrupted key commit cannot be completed",
                            rec_path.display()
                        ),
                    }
                    .into());
                }
                // Already renamed before the crash.
                Err(_) if t.exists() => {}
                Err(e) => return Err(Error::io(p, e)),
            }
        }
        std::fs::remove_file(&rec_path).map_err(|e| Error::io(&rec_path, e))?;
        crate::io::atomic_file::sync_parent(&rec_path)?;
    } else {
        for n in names {
            let p = dir.join(format!("{n}.partial"));
            if p.exists() {
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
                out.removed.push(p);
            }
        }
    }
    Ok(out)
}

impl KeySink for KeyFile {
    fn append(&mut self, _block: &BlockReport, key: &SecretKey) -> Result<()> {
        let bytes = key.as_bytes();
        self.file.write_all(bytes)?;
        self.secret_bits += bytes.len() as u64 * 8;
        Ok(())
    }
}
