//! Exclusive locks on output folders and key stores.
//!
//! A command that writes key files into a folder (or blocks into a key store) holds an
//! exclusive advisory lock on `FOLDER/.qkd.lock` for as long as it writes there; a second
//! command on the same folder is refused at once with a message naming the folder and the
//! process holding it. The operating system releases the lock when the process ends, however
//! it ends (no stale locks after a crash or SIGKILL).

use crate::error::{ConfigError, Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The name of the lock file inside a locked folder.
pub const LOCK_FILE: &str = ".qkd.lock";

/// An exclusive lock on a folder, held until dropped.
#[derive(Debug)]
pub struct DirLock {
    path: PathBuf,
    _file: File,
}

impl DirLock {
    /// Lock `dir` (created if missing) for `what` (e.g. "distill"); refused if it is held.
    pub fn acquire(dir: &Path, what: &str) -> Result<DirLock> {
        Self::acquire_as(dir, LOCK_FILE, what)
    }

    /// Lock `dir` under the lock file `name` (one lock per writer role, e.g. `.alice.lock`
    /// when Alice's and Bob's sites share a folder).
    pub fn acquire_as(dir: &Path, name: &str, what: &str) -> Result<DirLock> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(name);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(ConfigError::Mismatch(format!(
                    "{} is in use by another qkd process{}; refusing to write there at the same time",
                    dir.display(),
                    if holder.is_empty() {
                        String::new()
                    } else {
                        format!(" ({holder})")
                    }
                ))
                .into());
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        // Who holds it, for the message a second process prints (not relied on for safety).
        let _ = file.set_len(0);
        let _ = file.seek(SeekFrom::Start(0));
        let _ = writeln!(file, "pid {}, {what}", std::process::id());
        Ok(DirLock { path, _file: file })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let d = std::env::temp_dir().join(format!("qkd-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let a = DirLock::acquire(&d, "distill").unwrap();
        let e = DirLock::acquire(&d, "distill").unwrap_err().to_string();
        assert!(e.contains("in use by another qkd process"), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        drop(a);
        DirLock::acquire(&d, "distill").unwrap();
        let _ = std::fs::remove_dir_all(&d);
    }
}
