//! The inbox of a key store: how a site's pipeline hands committed block keys to the store
//! while another process (the KME, `qkd keys`) holds the store's database (docs/keys.md).
//!
//! A site writes one file per committed block into `STORE/inbox/`:
//! `RUN-BLOCK-TAG.blk` (BLOCK as 16 decimal digits, TAG the block's public confirmation hash key
//! as 16 hex digits), created as `.partial` with mode 0600, fsynced, renamed into place and the
//! directory fsynced before the block counts as stored. A block rolled back on resumption gets a
//! `RUN-BLOCK-TAG.void` file: the store then removes whatever it imported of that version of the
//! block. The site's own progress (for resumption) is `STORE/runs/RUN.ROLE.json`.
//!
//! Block file layout (integers little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `QKDBLK1\n` |
//! | 4 | header length h |
//! | h | header, JSON [`BlockHeader`] |
//! | `bytes` | key bytes (bit i of the key is bit i mod 8 of byte i/8) |
//! | 32 | BLAKE3 of everything before it |

use crate::block::{BlockReport, SecretKey};
use crate::error::{ConfigError, Error, FormatError, Result};
use crate::io::atomic_file::sync_parent;
use crate::keystore::KeySink;
use crate::protocol::Role;
use crate::protocols::ProtocolKind;
use crate::site::{CommittedBlock, SiteState};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroize;

const MAGIC: &[u8; 8] = b"QKDBLK1\n";

/// The header of a block file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockHeader {
    /// Run id (hex).
    pub run_id: String,
    /// The site that wrote it.
    pub role: Role,
    /// Protocol.
    pub protocol: ProtocolKind,
    /// Block id.
    pub block: u64,
    /// The block's confirmation tag (public, fresh per distillation of the block).
    pub tag: u64,
    /// Last slot of the block.
    pub last_slot: u64,
    /// Key bytes that follow.
    pub bytes: u64,
    /// Verification collision bound of the block.
    pub collision_bound: f64,
}

impl BlockHeader {
    /// The file stem `RUN-BLOCK-TAG`.
    pub fn stem(&self) -> String {
        stem(&self.run_id, self.block, self.tag)
    }
}

/// `RUN-BLOCK-TAG`.
pub fn stem(run_id: &str, block: u64, tag: u64) -> String {
    format!("{run_id}-{block:016}-{tag:016x}")
}

/// A block read from the inbox (the key zeroized on drop).
pub struct InboxBlock {
    /// Header.
    pub header: BlockHeader,
    /// Key bytes.
    pub key: Vec<u8>,
}

impl Drop for InboxBlock {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

/// A void record: the version `tag` of `block` of `run_id` was rolled back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoidRecord {
    /// Run id.
    pub run_id: String,
    /// Block id.
    pub block: u64,
    /// The rolled-back version's tag.
    pub tag: u64,
    /// Why.
    pub reason: String,
}

/// The inbox directory of the store in `store`.
pub fn inbox_dir(store: &Path) -> PathBuf {
    store.join("inbox")
}

fn create_secret_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}

/// Write `bytes` as `path` durably: `.partial` (0600), fsync, rename, fsync the directory.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let partial = path.with_extension("partial");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&partial).map_err(|e| Error::io(&partial, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(&partial, e))?;
    drop(f);
    std::fs::rename(&partial, path).map_err(|e| Error::io(path, e))?;
    sync_parent(path)
}

/// Encode a block file.
pub fn encode_block(header: &BlockHeader, key: &[u8]) -> Vec<u8> {
    let h = serde_json::to_vec(header).expect("header serializes");
    let mut out = Vec::with_capacity(12 + h.len() + key.len() + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(h.len() as u32).to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(key);
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

/// Read and check a block file; errors name the file and the offset.
pub fn read_block(path: &Path) -> Result<InboxBlock> {
    let mut data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let r = decode_block(path, &data);
    data.zeroize();
    r
}

fn decode_block(path: &Path, data: &[u8]) -> Result<InboxBlock> {
    let bad = |offset: u64, message: String| -> Error {
        FormatError::Metadata {
            path: path.to_path_buf(),
            offset,
            message,
        }
        .into()
    };
    if data.len() < 8 || &data[..8] != MAGIC {
        return Err(FormatError::BadMagic {
            path: path.to_path_buf(),
            offset: 0,
            expected: "QKDBLK1".into(),
            kind: "qkd-distill block",
        }
        .into());
    }
    let truncated = |offset: usize, what: &'static str, needed: usize| -> Error {
        FormatError::Truncated {
            path: path.to_path_buf(),
            offset: offset as u64,
            what,
            needed: needed as u64,
            available: data.len().saturating_sub(offset) as u64,
        }
        .into()
    };
    if data.len() < 12 + 32 {
        return Err(truncated(8, "header length and checksum", 36));
    }
    let h = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes")) as usize;
    if 12 + h + 32 > data.len() {
        return Err(truncated(12, "header and checksum", h + 32));
    }
    let body = data.len() - 32;
    if blake3::hash(&data[..body]).as_bytes() != &data[body..] {
        return Err(FormatError::Checksum {
            path: path.to_path_buf(),
            offset: body as u64,
            what: "block file",
        }
        .into());
    }
    let header: BlockHeader =
        serde_json::from_slice(&data[12..12 + h]).map_err(|e| bad(12, format!("header: {e}")))?;
    let key = &data[12 + h..body];
    if key.len() as u64 != header.bytes {
        return Err(bad(
            (12 + h) as u64,
            format!(
                "the header says {} key bytes, the file holds {}",
                header.bytes,
                key.len()
            ),
        ));
    }
    let expect = header.stem();
    if path.file_stem().and_then(|s| s.to_str()) != Some(expect.as_str()) {
        return Err(bad(12, format!("the header names block file {expect}")));
    }
    Ok(InboxBlock {
        header,
        key: key.to_vec(),
    })
}

/// Read a void record.
pub fn read_void(path: &Path) -> Result<VoidRecord> {
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&text).map_err(|e| {
        FormatError::Metadata {
            path: path.to_path_buf(),
            offset: e.column() as u64,
            message: format!("void record: {e}"),
        }
        .into()
    })
}

/// The inbox's files, in the order they are imported: by stem, a block before its void.
pub fn inbox_files(store: &Path) -> Result<Vec<PathBuf>> {
    let dir = inbox_dir(store);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(Error::io(&dir, e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let p = entry.map_err(|e| Error::io(&dir, e))?.path();
        if matches!(p.extension().and_then(|e| e.to_str()), Some("blk" | "void")) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// A site's key sink that writes into a store's inbox, with the site's progress.
pub struct StoreInbox {
    store: PathBuf,
    /// Where new block files go: the inbox, or a staging folder until [`StoreInbox::commit`].
    target: PathBuf,
    staged: bool,
    role: Role,
    state_path: Option<PathBuf>,
    state: SiteState,
    /// One writer per run and role (`runs/.RUN.ROLE.lock`).
    _lock: crate::io::DirLock,
}

fn run_lock(store: &Path, role: Role, run_id: &str) -> Result<crate::io::DirLock> {
    crate::io::DirLock::acquire_as(
        &store.join("runs"),
        &format!(".{run_id}.{}.lock", role.name()),
        &format!("{}'s keys of run {run_id}", role.name()),
    )
}

impl StoreInbox {
    /// The sink of a site's run `run_id` in the store `store`, resuming its progress. `fresh`
    /// starts the run anew: the blocks it stored before are voided (a run distilled twice
    /// from the same log would give keys that are not independent).
    pub fn open(
        store: &Path,
        role: Role,
        run_id: &str,
        protocol: ProtocolKind,
        fresh: bool,
    ) -> Result<StoreInbox> {
        create_secret_dir(store)?;
        let inbox = inbox_dir(store);
        create_secret_dir(&inbox)?;
        let runs = store.join("runs");
        create_secret_dir(&runs)?;
        let lock = run_lock(store, role, run_id)?;
        let state_path = runs.join(format!("{run_id}.{}.json", role.name()));
        let old: Option<SiteState> = if state_path.exists() {
            let text = std::fs::read(&state_path).map_err(|e| Error::io(&state_path, e))?;
            Some(
                serde_json::from_slice(&text).map_err(|e| FormatError::Metadata {
                    path: state_path.clone(),
                    offset: 0,
                    message: e.to_string(),
                })?,
            )
        } else {
            None
        };
        let mut sink = StoreInbox {
            store: store.to_path_buf(),
            target: inbox,
            staged: false,
            role,
            state_path: Some(state_path),
            state: SiteState {
                run_id: run_id.to_string(),
                protocol,
                complete: false,
                blocks: vec![],
            },
            _lock: lock,
        };
        match old {
            Some(s) if s.protocol != protocol => {
                return Err(ConfigError::Mismatch(format!(
                    "{} records run {run_id} as {}, the log says {}",
                    store.display(),
                    s.protocol.name(),
                    protocol.name()
                ))
                .into());
            }
            Some(s) if fresh => {
                sink.state = s;
                sink.void_from(0, "the run was started anew (--force)")?;
                sink.state.complete = false;
            }
            Some(s) => sink.state = s,
            None => {}
        }
        sink.persist()?;
        Ok(sink)
    }

    /// A sink for a batch run: block files are staged and only enter the inbox at
    /// [`StoreInbox::commit`] (a run that aborts leaves nothing in the store).
    pub fn staged(store: &Path, role: Role, run_id: &str, protocol: ProtocolKind) -> Result<Self> {
        create_secret_dir(store)?;
        create_secret_dir(&inbox_dir(store))?;
        create_secret_dir(&store.join("runs"))?;
        let lock = run_lock(store, role, run_id)?;
        let target = store.join(format!(".staging-{run_id}-{}", role.name()));
        if target.exists() {
            std::fs::remove_dir_all(&target).map_err(|e| Error::io(&target, e))?;
        }
        create_secret_dir(&target)?;
        Ok(StoreInbox {
            store: store.to_path_buf(),
            target,
            staged: true,
            role,
            state_path: None,
            state: SiteState {
                run_id: run_id.to_string(),
                protocol,
                complete: false,
                blocks: vec![],
            },
            _lock: lock,
        })
    }

    /// The store directory.
    pub fn store(&self) -> &Path {
        &self.store
    }

    /// The run's progress.
    pub fn state(&self) -> &SiteState {
        &self.state
    }

    /// Mark the run complete.
    pub fn complete(&mut self) -> Result<()> {
        self.state.complete = true;
        self.persist()
    }

    /// Move a staged run's block files into the inbox.
    pub fn commit(mut self) -> Result<()> {
        if !self.staged {
            return self.complete();
        }
        let inbox = inbox_dir(&self.store);
        let files = std::fs::read_dir(&self.target).map_err(|e| Error::io(&self.target, e))?;
        let mut names = Vec::new();
        for f in files {
            names.push(f.map_err(|e| Error::io(&self.target, e))?.file_name());
        }
        names.sort();
        for name in names {
            let dest = inbox.join(&name);
            std::fs::rename(self.target.join(&name), &dest).map_err(|e| Error::io(&dest, e))?;
        }
        sync_parent(&inbox.join("x"))?;
        std::fs::remove_dir(&self.target).map_err(|e| Error::io(&self.target, e))?;
        self.staged = false;
        Ok(())
    }

    fn persist(&self) -> Result<()> {
        let Some(path) = &self.state_path else {
            return Ok(());
        };
        let text = serde_json::to_vec_pretty(&self.state).expect("state serializes");
        write_durably(path, &text)
    }

    fn void_from(&mut self, first_block: u64, reason: &str) -> Result<()> {
        let gone: Vec<CommittedBlock> = self
            .state
            .blocks
            .iter()
            .filter(|b| b.block >= first_block)
            .cloned()
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        for b in &gone {
            let rec = VoidRecord {
                run_id: self.state.run_id.clone(),
                block: b.block,
                tag: b.tag,
                reason: reason.to_string(),
            };
            let path = self
                .target
                .join(format!("{}.void", stem(&rec.run_id, b.block, b.tag)));
            write_durably(&path, &serde_json::to_vec(&rec).expect("serializes"))?;
        }
        // The voids first: a crash then leaves the state with blocks the store ignores.
        self.state.blocks.retain(|b| b.block < first_block);
        self.persist()
    }
}

impl KeySink for StoreInbox {
    fn append(&mut self, block: &BlockReport, key: &SecretKey) -> Result<()> {
        let tag = block.confirmation.as_ref().map_or(0, |c| c.tag);
        let cb = CommittedBlock {
            block: block.id,
            last_slot: block.last_slot,
            bytes: key.as_bytes().len() as u64,
            collision_bound: block
                .verification
                .as_ref()
                .map_or(0.0, |v| v.collision_bound),
            tag,
        };
        let header = BlockHeader {
            run_id: self.state.run_id.clone(),
            role: self.role,
            protocol: self.state.protocol,
            block: block.id,
            tag,
            last_slot: block.last_slot,
            bytes: cb.bytes,
            collision_bound: cb.collision_bound,
        };
        let mut data = encode_block(&header, key.as_bytes());
        let path = self.target.join(format!("{}.blk", header.stem()));
        let r = write_durably(&path, &data);
        data.zeroize();
        r?;
        self.state.blocks.push(cb);
        self.persist()
    }

    fn rollback(&mut self, first_block: u64) -> Result<()> {
        self.void_from(
            first_block,
            "rolled back on resumption: the peer did not commit it",
        )
    }
}

impl Drop for StoreInbox {
    fn drop(&mut self) {
        if self.staged {
            let _ = std::fs::remove_dir_all(&self.target);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_files_round_trip_and_damage_is_named() {
        let d = std::env::temp_dir().join(format!("qkd-inbox-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let h = BlockHeader {
            run_id: "ab".into(),
            role: Role::Alice,
            protocol: ProtocolKind::Bb84,
            block: 3,
            tag: 0xfeed,
            last_slot: 99,
            bytes: 5,
            collision_bound: 1e-12,
        };
        let path = d.join(format!("{}.blk", h.stem()));
        let data = encode_block(&h, &[1, 2, 3, 4, 5]);
        write_durably(&path, &data).unwrap();
        let b = read_block(&path).unwrap();
        assert_eq!(
            (b.header.clone(), b.key.clone()),
            (h.clone(), vec![1, 2, 3, 4, 5])
        );
        for (i, what) in [
            (0usize, "magic"),
            (30, "block file"),
            (data.len() - 1, "block file"),
        ] {
            let mut bad = data.clone();
            bad[i] ^= 1;
            std::fs::write(&path, &bad).unwrap();
            let e = read_block(&path)
                .err()
                .expect("damage detected")
                .to_string();
            assert!(
                e.contains(&path.display().to_string()) && e.contains(what),
                "{e}"
            );
        }
        // A file renamed to another block's name is refused.
        let other = d.join(format!("{}.blk", stem("ab", 4, 0xfeed)));
        std::fs::write(&other, &data).unwrap();
        assert!(read_block(&other).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }
}
