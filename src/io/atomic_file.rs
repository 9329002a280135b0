//! Write-then-rename output files.
//!
//! Data goes to `NAME.partial` in the same directory; [`AtomicFile::commit`] syncs and renames it
//! into place. Dropping an uncommitted file removes the partial file. With `overwrite = false`
//! an existing target is refused up front, so nothing stored before is ever lost.

use crate::error::{ConfigError, Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// An output file that appears under its name only once complete.
pub struct AtomicFile {
    target: PathBuf,
    partial: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Create `target` (via `target.partial`). `secret` files get mode 0600 on Unix.
    pub fn create(target: &Path, overwrite: bool, secret: bool) -> Result<AtomicFile> {
        if !overwrite && target.exists() {
            return Err(ConfigError::Mismatch(format!(
                "{} already exists; refusing to overwrite it (use --force to replace it)",
                target.display()
            ))
            .into());
        }
        let mut name = target.file_name().unwrap_or_default().to_os_string();
        name.push(".partial");
        let partial = target.with_file_name(name);
        let mut opts = OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(if secret { 0o600 } else { 0o644 });
        }
        #[cfg(not(unix))]
        let _ = secret;
        let file = opts.open(&partial).map_err(|e| Error::io(&partial, e))?;
        #[cfg(unix)]
        if secret {
            // The mode above applies only to newly created files; enforce it on a stale one too.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| Error::io(&partial, e))?;
        }
        // Secret data is written unbuffered so that no copy lingers in a heap buffer.
        let capacity = if secret { 0 } else { 1 << 20 };
        Ok(AtomicFile {
            target: target.to_path_buf(),
            partial,
            writer: Some(BufWriter::with_capacity(capacity, file)),
        })
    }

    /// The final path.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Write all of `buf`.
    pub fn write_all(&mut self, buf: &[u8]) -> Result<()> {
        let w = self.writer.as_mut().expect("AtomicFile used after commit");
        w.write_all(buf).map_err(|e| Error::io(&self.partial, e))
    }

    /// Overwrite bytes already written at `offset` (e.g. a header completed at the end of a
    /// streaming write), then continue appending at the end.
    pub fn rewrite_at(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        let w = self.writer.as_mut().expect("AtomicFile used after commit");
        let io = |e| Error::io(&self.partial, e);
        w.flush().map_err(io)?;
        let f = w.get_mut();
        let end = f.seek(SeekFrom::End(0)).map_err(io)?;
        f.seek(SeekFrom::Start(offset)).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.seek(SeekFrom::Start(end)).map_err(io)?;
        Ok(())
    }

    /// Flush, sync and rename into place.
    pub fn commit(self) -> Result<PathBuf> {
        self.prepare()?.commit()
    }

    /// Flush and sync the data under the temporary name, without renaming it yet (the first
    /// half of a commit of several files together).
    pub fn prepare(mut self) -> Result<PreparedFile> {
        let w = self.writer.take().expect("AtomicFile committed twice");
        let file = w
            .into_inner()
            .map_err(|e| Error::io(&self.partial, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&self.partial, e))?;
        drop(file);
        Ok(PreparedFile {
            target: std::mem::take(&mut self.target),
            partial: std::mem::take(&mut self.partial),
            armed: true,
        })
    }
}

/// A complete, synced file under its temporary name, waiting to be renamed into place.
/// Dropped without [`PreparedFile::commit`], it is removed.
pub struct PreparedFile {
    target: PathBuf,
    partial: PathBuf,
    armed: bool,
}

impl PreparedFile {
    /// The temporary name.
    pub fn partial(&self) -> &Path {
        &self.partial
    }

    /// The final name.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Rename into place and make the rename durable.
    pub fn commit(mut self) -> Result<PathBuf> {
        std::fs::rename(&self.partial, &self.target).map_err(|e| Error::io(&self.target, e))?;
        self.armed = false;
        sync_parent(&self.target)?;
        Ok(self.target.clone())
    }
}

impl Drop for PreparedFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// Make a rename or creation in `path`'s directory durable (Unix: fsync the directory).
pub fn sync_parent(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}
