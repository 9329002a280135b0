//! Whole-file input: memory-mapped (memmap2) when the file is large enough to benefit, with a
//! fallback to `read()` when mapping fails or is disabled (`QKD_NO_MMAP=1`).
//!
//! A file that another process truncates while it is mapped raises SIGBUS when the missing
//! pages are touched; [`super::map_guard`] turns that into an error naming the file and the
//! offset (exit code 2) instead of a silent crash. Growing files (`--follow`) are safe: they
//! are only appended to.

use crate::error::{Error, Result};
use std::fs::File;
use std::io::Read;
use std::ops::Deref;
use std::path::{Path, PathBuf};

/// Files smaller than this are read into memory; mapping them costs more than it saves.
pub const MMAP_THRESHOLD: u64 = 1 << 20;

enum Storage {
    /// A mapping and its slot in the SIGBUS guard.
    Mapped(memmap2::Mmap, Option<usize>),
    Owned(Vec<u8>),
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Storage::Mapped(_, Some(slot)) = self {
            super::map_guard::unregister(*slot);
        }
    }
}

/// The bytes of a file, mapped or read.
pub struct FileBytes {
    path: PathBuf,
    storage: Storage,
}

impl FileBytes {
    /// Open `path`, mapping it when it is at least [`MMAP_THRESHOLD`] bytes.
    pub fn open(path: &Path) -> Result<FileBytes> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let no_mmap = std::env::var_os("QKD_NO_MMAP").is_some_and(|v| v != "0");
        if len >= MMAP_THRESHOLD && !no_mmap {
            // SAFETY: the mapping is read-only and private to this process. The engine's rule
            // (module docs) is that input files are complete and not modified during a run;
            // modification by another process is outside what this program can guard against.
            if let Ok(map) = unsafe { memmap2::MmapOptions::new().map(&file) } {
                #[cfg(unix)]
                let _ = map.advise(memmap2::Advice::Sequential);
                let slot = super::map_guard::register(map.as_ptr() as usize, map.len(), path);
                return Ok(FileBytes {
                    path: path.to_path_buf(),
                    storage: Storage::Mapped(map, slot),
                });
            }
        }
        Self::read(path)
    }

    /// Bytes already in memory, labelled `path` in errors.
    pub fn from_vec(path: &Path, bytes: Vec<u8>) -> FileBytes {
        FileBytes {
            path: path.to_path_buf(),
            storage: Storage::Owned(bytes),
        }
    }

    /// Read `path` into memory without mapping.
    pub fn read(path: &Path) -> Result<FileBytes> {
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf).map_err(|e| Error::io(path, e))?;
        Ok(FileBytes {
            path: path.to_path_buf(),
            storage: Storage::Owned(buf),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when the bytes are memory-mapped.
    pub fn is_mapped(&self) -> bool {
        matches!(self.storage, Storage::Mapped(..))
    }

    /// Drop the resident pages of `[offset, offset + len)` of a mapping (they are read again
    /// from the file if touched later); no effect on bytes read into memory.
    pub fn release(&self, offset: usize, len: usize) {
        #[cfg(unix)]
        if let Storage::Mapped(m, _) = &self.storage {
            let page = 4096;
            let start = offset.div_ceil(page) * page;
            let end = ((offset + len) / page * page).min(m.len());
            if end > start {
                // SAFETY: a read-only private file mapping: dropped pages are faulted in again
                // from the file, so no data the program can observe changes.
                let _ = unsafe {
                    m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
                };
            }
        }
        #[cfg(not(unix))]
        let _ = (offset, len);
    }
}

impl Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.storage {
            Storage::Mapped(m, _) => m,
            Storage::Owned(v) => v,
        }
    }
}
