//! One rule for every file a command writes, checked before any work starts.
//!
//! * An existing file is never replaced without `--force`.
//! * No output is ever one of the command's inputs (same path, hard link or symlink: compared
//!   by device and inode on Unix, by canonical path elsewhere), not even with `--force`.
//! * No two outputs of one command are the same file (e.g. `--report` onto a key file).
//!
//! Commands declare their inputs and outputs in an [`OutputPlan`] and call
//! [`OutputPlan::check`] first; the files are then written with
//! [`AtomicFile`](super::AtomicFile) (or [`write_atomic`]), so that a failure leaves the old
//! file, or none, never a truncated one.

use crate::error::{ConfigError, Error, Result};
use std::path::{Path, PathBuf};

/// The identity of an existing file: (device, inode) on Unix, the canonical path elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FileId {
    #[cfg(unix)]
    Inode(u64, u64),
    #[cfg_attr(unix, allow(dead_code))]
    Canonical(PathBuf),
}

fn file_id(path: &Path) -> Option<FileId> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some(FileId::Inode(meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        std::fs::canonicalize(path).ok().map(FileId::Canonical)
    }
}

/// A path as it will be written: its parent canonicalised (when it exists) and its name, so
/// that `dir/../dir/x` and `dir/x` compare equal before either exists.
fn normalised(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_os_string());
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    match (std::fs::canonicalize(&parent), name) {
        (Ok(p), Some(n)) => p.join(n),
        _ => path.to_path_buf(),
    }
}

/// The inputs and outputs of one command.
#[derive(Debug, Default)]
pub struct OutputPlan {
    force: bool,
    inputs: Vec<PathBuf>,
    outputs: Vec<(PathBuf, String)>,
}

impl OutputPlan {
    /// A plan; `force` allows replacing existing outputs (never inputs).
    pub fn new(force: bool) -> OutputPlan {
        OutputPlan {
            force,
            ..Default::default()
        }
    }

    /// Declare a file the command reads.
    pub fn input(&mut self, path: &Path) -> &mut Self {
        self.inputs.push(path.to_path_buf());
        self
    }

    /// Declare a file the command writes; `what` names it in errors (e.g. "--report").
    pub fn output(&mut self, path: &Path, what: &str) -> &mut Self {
        self.outputs.push((path.to_path_buf(), what.to_string()));
        self
    }

    /// Declare an optional output.
    pub fn output_opt(&mut self, path: Option<&Path>, what: &str) -> &mut Self {
        if let Some(p) = path {
            self.output(p, what);
        }
        self
    }

    /// Check the rule for every declared output.
    pub fn check(&self) -> Result<()> {
        let inputs: Vec<(&PathBuf, Option<FileId>, PathBuf)> = self
            .inputs
            .iter()
            .map(|p| (p, file_id(p), normalised(p)))
            .collect();
        let mut seen: Vec<(PathBuf, Option<FileId>, &str)> = vec![];
        for (out, what) in &self.outputs {
            let id = file_id(out);
            let norm = normalised(out);
            for (inp, iid, inorm) in &inputs {
                if (id.is_some() && id == *iid) || norm == *inorm {
                    return Err(refuse(format!(
                        "{what} {} is also an input of this command ({}); refusing to write onto it",
                        out.display(),
                        inp.display()
                    )));
                }
            }
            for (prev, pid, pwhat) in &seen {
                if (id.is_some() && id == *pid) || norm == *prev {
                    return Err(refuse(format!(
                        "{what} and {pwhat} are the same file ({}); give them different paths",
                        out.display()
                    )));
                }
            }
            if let Ok(m) = std::fs::symlink_metadata(out) {
                if m.is_dir() {
                    return Err(refuse(format!(
                        "{what} {} is a directory; give a file path",
                        out.display()
                    )));
                }
                if !self.force {
                    return Err(refuse(format!(
                        "{what} {} already exists; refusing to overwrite it (use --force to replace it)",
                        out.display()
                    )));
                }
            }
            seen.push((norm, id, what));
        }
        Ok(())
    }
}

fn refuse(msg: String) -> Error {
    ConfigError::Mismatch(msg).into()
}

/// Write `bytes` to `path` atomically (temporary file, fsync, rename, directory fsync): the
/// file is either the old one or the complete new one. The caller has checked the plan.
pub fn write_atomic(path: &Path, bytes: &[u8], secret: bool) -> Result<()> {
    let mut f = super::AtomicFile::create(path, true, secret)?;
    f.write_all(bytes)?;
    f.commit()?;
    Ok(())
}

/// Create the directory `dir` (and its parents) for outputs, remembering which levels this
/// call created so that [`CreatedDirs::remove_if_empty`] can clean up after a failure.
pub struct CreatedDirs {
    created: Vec<PathBuf>,
}

impl CreatedDirs {
    /// Create `dir` and any missing parents.
    pub fn create(dir: &Path) -> Result<CreatedDirs> {
        let mut missing = vec![];
        let mut p = Some(dir);
        while let Some(d) = p {
            if d.as_os_str().is_empty() || d.exists() {
                break;
            }
            missing.push(d.to_path_buf());
            p = d.parent();
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(CreatedDirs { created: missing })
    }

    /// Remove the directories this call created, innermost first, where they are empty.
    pub fn remove_if_empty(&self) {
        for d in &self.created {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("qkd-outputs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn refuses_existing_inputs_and_duplicates() {
        let d = tmp("rules");
        let input = d.join("in.qdl");
        std::fs::write(&input, b"x").unwrap();
        let out = d.join("out.csv");
        // A fresh output is fine.
        OutputPlan::new(false)
            .input(&input)
            .output(&out, "--out")
            .check()
            .unwrap();
        // Onto its input: refused even with --force, also through another spelling.
        std::fs::create_dir_all(d.join("x")).unwrap();
        for force in [false, true] {
            let e = OutputPlan::new(force)
                .input(&input)
                .output(&d.join("x/../in.qdl"), "--out")
                .check()
                .unwrap_err()
                .to_string();
            assert!(e.contains("also an input"), "{e}");
        }
        // A hard link to the input is the input.
        #[cfg(unix)]
        {
            std::fs::hard_link(&input, d.join("link.qdl")).unwrap();
            let e = OutputPlan::new(true)
                .input(&input)
                .output(&d.join("link.qdl"), "--report")
                .check()
                .unwrap_err()
                .to_string();
            assert!(e.contains("also an input"), "{e}");
        }
        // Two outputs on one path.
        let e = OutputPlan::new(true)
            .output(&out, "--out")
            .output(&out, "--report")
            .check()
            .unwrap_err()
            .to_string();
        assert!(e.contains("same file"), "{e}");
        // An existing output needs --force.
        std::fs::write(&out, b"old").unwrap();
        let e = OutputPlan::new(false)
            .output(&out, "--out")
            .check()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--force"), "{e}");
        OutputPlan::new(true).output(&out, "--out").check().unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"old");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn created_dirs_are_removed_only_when_empty() {
        let d = tmp("dirs");
        let deep = d.join("a/b/c");
        let c = CreatedDirs::create(&deep).unwrap();
        c.remove_if_empty();
        assert!(!d.join("a").exists());
        let c = CreatedDirs::create(&deep).unwrap();
        std::fs::write(deep.join("f"), b"1").unwrap();
        c.remove_if_empty();
        assert!(deep.join("f").exists());
        let _ = std::fs::remove_dir_all(&d);
    }
}
