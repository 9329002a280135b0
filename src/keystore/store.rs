//! The durable key store: committed block keys, cut into 256-bit keys with IDs that are the
//! same at both sites, delivered at most once (docs/keys.md).
//!
//! One redb database per site, `STORE/keys.redb`: crash-safe (every write transaction is
//! fsynced before it returns), mode 0600, opened by one process at a time (the KME, or
//! `qkd keys`); sites hand their blocks over through the inbox ([`super::inbox`]), which every
//! opening of the store imports. Tables:
//!
//! | table | key → value |
//! |---|---|
//! | `available` | order → key ID, block, import time, 32 key bytes, BLAKE3 of them |
//! | `ids` | key ID → order |
//! | `pending` | delivered key ID → a grant being delivered by this (master) KME, waiting for the peer's reservation |
//! | `reserved` | delivered key ID → a grant the peer (master) KME gave its SAE, waiting for the slave SAE here |
//! | `delivered` | delivered key ID → to whom and when (a key ID is delivered at most once) |
//! | `blocks` | `RUN-BLOCK-TAG` → imported or voided, keys, time |
//! | `meta` | counters |
//!
//! **Key IDs** are UUIDs (version 8) derived from the run id, the block, the block's public
//! confirmation tag and the key's index in the block ([`key_id`]): both sites compute the same ID
//! for the same bits without talking, and a block distilled again after a rollback gets other
//! IDs. A key of more than 256 bits is several stored keys; its key ID is the first one's.
//!
//! A key leaves `available` in the same transaction that makes it part of a grant, and a grant
//! becomes `delivered` in one transaction; its bytes are zeroized in memory after use.

use crate::error::{Error, KeyStoreError, Result};
use crate::keystore::inbox::{self, InboxBlock};
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use uuid::Uuid;
use zeroize::Zeroize;

/// Bits of every stored key (the `key_size` of ETSI GS QKD 014).
pub const KEY_BITS: u32 = 256;
/// Bytes of every stored key.
pub const KEY_BYTES: usize = KEY_BITS as usize / 8;

const AVAILABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("available");
const IDS: TableDefinition<&[u8; 16], u64> = TableDefinition::new("ids");
const PENDING: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("pending");
const RESERVED: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("reserved");
const DELIVERED: TableDefinition<&[u8; 16], &str> = TableDefinition::new("delivered");
const BLOCKS: TableDefinition<&str, &str> = TableDefinition::new("blocks");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The ID of key `index` of the version `tag` of `block` of run `run_id`.
pub fn key_id(run_id: &str, block: u64, tag: u64, index: u32) -> Uuid {
    let mut h = blake3::Hasher::new();
    h.update(b"qkd-distill key id v1\0");
    h.update(run_id.as_bytes());
    h.update(&[0]);
    h.update(&block.to_le_bytes());
    h.update(&tag.to_le_bytes());
    h.update(&index.to_le_bytes());
    let mut b: [u8; 16] = h.finalize().as_bytes()[..16].try_into().expect("16 bytes");
    b[6] = (b[6] & 0x0f) | 0x80; // version 8
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 9562 variant
    Uuid::from_bytes(b)
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One stored 256-bit key, as held in a grant (bytes as hex, zeroized on drop).
#[derive(Clone, Serialize, Deserialize)]
pub struct Unit {
    /// Key ID.
    pub id: Uuid,
    /// `RUN-BLOCK-TAG` of its block.
    pub block: String,
    order: u64,
    imported_s: u64,
    hex: String,
}

impl Drop for Unit {
    fn drop(&mut self) {
        self.hex.zeroize();
    }
}

impl std::fmt::Debug for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Unit({}, redacted)", self.id)
    }
}

/// A delivered key being made: the key ID, who it is for and the stored keys it consists of.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Grant {
    /// Key ID of the delivered key (the first unit's).
    pub key_id: Uuid,
    /// Master SAE.
    pub master: String,
    /// Slave SAE.
    pub slave: String,
    /// Its stored keys, in order.
    pub units: Vec<Unit>,
    /// When it was made.
    pub created_s: u64,
}

impl Grant {
    /// The units as the peer is told them (IDs and blocks, no key bytes).
    pub fn unit_refs(&self) -> Vec<UnitRef> {
        self.units
            .iter()
            .map(|u| UnitRef {
                id: u.id,
                block: u.block.clone(),
            })
            .collect()
    }
}

/// A stored key named without its bytes (what KMEs tell each other).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UnitRef {
    /// Key ID.
    pub id: Uuid,
    /// `RUN-BLOCK-TAG` of its block.
    pub block: String,
}

/// A delivered key: ID and bytes (zeroized on drop).
pub struct DeliveredKey {
    /// Key ID.
    pub id: Uuid,
    /// Key bytes.
    pub bytes: Vec<u8>,
}

impl Drop for DeliveredKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl std::fmt::Debug for DeliveredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DeliveredKey({}, {} bytes, redacted)",
            self.id,
            self.bytes.len()
        )
    }
}

/// The answer to a reservation request: all reserved, or which keys are not here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReserveOutcome {
    /// The grants were reserved (all of them).
    pub reserved: bool,
    /// Keys whose blocks this site has not imported yet (they may come).
    pub missing: Vec<Uuid>,
    /// Keys that will never be available here (used, voided).
    pub gone: Vec<Uuid>,
}

/// What a release did per key ID.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReleaseOutcome {
    /// Reservations undone (their keys are available again).
    pub released: Vec<Uuid>,
    /// Already delivered to the slave SAE: cannot be undone.
    pub delivered: Vec<Uuid>,
    /// Unknown here (never reserved): nothing to undo.
    pub unknown: Vec<Uuid>,
}

/// What an import of the inbox did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportReport {
    /// Blocks imported.
    pub blocks: u64,
    /// Keys imported.
    pub keys: u64,
    /// Key bits of imported blocks that do not fill a whole key (not stored).
    pub remainder_bits: u64,
    /// Block versions voided.
    pub voided_blocks: u64,
    /// Available keys removed by voids.
    pub voided_keys: u64,
    /// Warnings (keys of a voided block that had already left the store, skipped files).
    pub warnings: Vec<String>,
}

/// The store's counts (`qkd keys status`, the KME's status).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreStatus {
    /// The database file.
    pub path: PathBuf,
    /// Keys available.
    pub available_keys: u64,
    /// Available key bits.
    pub available_bits: u64,
    /// Keys in grants this KME is delivering (waiting for the peer).
    pub pending_keys: u64,
    /// Keys reserved for slave SAEs here (given to the master SAE at the peer).
    pub reserved_keys: u64,
    /// Key IDs delivered (to an SAE, or exported).
    pub delivered_key_ids: u64,
    /// Blocks imported.
    pub blocks: u64,
    /// Block versions voided.
    pub voided_blocks: u64,
    /// Block (`RUN-BLOCK-TAG`) of the oldest available key, and when it was stored.
    pub oldest: Option<(String, u64)>,
    /// Block of the newest available key, and when it was stored.
    pub newest: Option<(String, u64)>,
    /// Files waiting in the inbox (not yet imported).
    pub inbox_files: u64,
    /// Bits per key.
    pub key_bits: u32,
}

/// An available key as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listed {
    /// Key ID.
    pub key_id: Uuid,
    /// Its block.
    pub block: String,
    /// When it was stored (Unix seconds).
    pub stored_unix_s: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct BlockEntry {
    stem: String,
    keys: u32,
    bytes: u64,
    void: bool,
    unix_s: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DeliveryRecord {
    to: String,
    role: String,
    unix_s: u64,
    keys: u32,
}

/// A site's key store.
pub struct KeyStore {
    db: Database,
    dir: PathBuf,
    path: PathBuf,
}

fn decode_record(path: &Path, order: u64, v: &[u8]) -> Result<(Uuid, String, u64, Vec<u8>)> {
    let corrupt = |m: String| -> Error {
        KeyStoreError::Database {
            path: path.to_path_buf(),
            message: m,
        }
        .into()
    };
    let n = v.get(16).copied().unwrap_or(0) as usize;
    if v.len() != 17 + n + 8 + KEY_BYTES + 32 {
        return Err(corrupt(format!("key record {order} has {} bytes", v.len())));
    }
    let body = v.len() - 32;
    if blake3::hash(&v[..body]).as_bytes() != &v[body..] {
        return Err(corrupt(format!(
            "key record {order} does not match its checksum (corrupted)"
        )));
    }
    let id = Uuid::from_slice(&v[..16]).expect("16 bytes");
    let stem = String::from_utf8_lossy(&v[17..17 + n]).into_owned();
    let t = u64::from_le_bytes(v[17 + n..25 + n].try_into().expect("8 bytes"));
    Ok((id, stem, t, v[25 + n..body].to_vec()))
}

fn encode_record(id: &Uuid, stem: &str, t: u64, bytes: &[u8]) -> Vec<u8> {
    let stem = &stem.as_bytes()[..stem.len().min(255)];
    let mut v = Vec::with_capacity(17 + stem.len() + 8 + KEY_BYTES + 32);
    v.extend_from_slice(id.as_bytes());
    v.push(stem.len() as u8);
    v.extend_from_slice(stem);
    v.extend_from_slice(&t.to_le_bytes());
    v.extend_from_slice(bytes);
    let h = blake3::hash(&v);
    v.extend_from_slice(h.as_bytes());
    v
}

fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 * bytes.len());
    for b in bytes {
        s.push(char::from_digit(u32::from(b >> 4), 16).expect("digit"));
        s.push(char::from_digit(u32::from(b & 15), 16).expect("digit"));
    }
    s
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl KeyStore {
    /// Open (or create) the store in `dir` and import its inbox.
    pub fn open(dir: &Path) -> Result<KeyStore> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io(dir, e))?;
        }
        let path = dir.join("keys.redb");
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::from(KeyStoreError::Unavailable(
                format!(
                    "{} is open in another process (a KME or `qkd keys`): one process at a time; use that process's interface",
                    path.display()
                ),
            )),
            e => KeyStoreError::Database {
                path: path.clone(),
                message: e.to_string(),
            }
            .into(),
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| Error::io(&path, e))?;
        }
        let store = KeyStore {
            db,
            dir: dir.to_path_buf(),
            path,
        };
        let w = store.begin()?;
        store.tables_exist(&w)?;
        store.commit(w)?;
        store.import()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        KeyStoreError::Database {
            path: self.path.clone(),
            message: e.to_string(),
        }
        .into()
    }

    fn begin(&self) -> Result<WriteTransaction> {
        self.db.begin_write().map_err(|e| self.err(e))
    }

    fn commit(&self, w: WriteTransaction) -> Result<()> {
        // Durability::Immediate (redb's default): fsynced when this returns.
        w.commit().map_err(|e| self.err(e))
    }

    fn tables_exist(&self, w: &WriteTransaction) -> Result<()> {
        w.open_table(AVAILABLE).map_err(|e| self.err(e))?;
        w.open_table(IDS).map_err(|e| self.err(e))?;
        w.open_table(PENDING).map_err(|e| self.err(e))?;
        w.open_table(RESERVED).map_err(|e| self.err(e))?;
        w.open_table(DELIVERED).map_err(|e| self.err(e))?;
        w.open_table(BLOCKS).map_err(|e| self.err(e))?;
        w.open_table(META).map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Import the inbox: new blocks become available keys, voids remove what is left of the
    /// block versions they name. Each file is removed after its transaction committed; a file
    /// that cannot be read is left in place and named in a warning.
    pub fn import(&self) -> Result<ImportReport> {
        let mut rep = ImportReport::default();
        for file in inbox::inbox_files(&self.dir)? {
            let is_void = file.extension().and_then(|e| e.to_str()) == Some("void");
            let r = if is_void {
                inbox::read_void(&file).and_then(|v| {
                    self.apply_void(&inbox::stem(&v.run_id, v.block, v.tag), &mut rep)
                })
            } else {
                inbox::read_block(&file).and_then(|b| self.import_block(&b, &mut rep))
            };
            match r {
                Ok(()) => {
                    std::fs::remove_file(&file).map_err(|e| Error::io(&file, e))?;
                }
                Err(e @ Error::Format(_)) => rep.warnings.push(format!("skipped: {e}")),
                Err(e) => return Err(e),
            }
        }
        Ok(rep)
    }

    fn import_block(&self, b: &InboxBlock, rep: &mut ImportReport) -> Result<()> {
        let h = &b.header;
        let stem = h.stem();
        let w = self.begin()?;
        {
            let mut blocks = w.open_table(BLOCKS).map_err(|e| self.err(e))?;
            if blocks
                .get(stem.as_str())
                .map_err(|e| self.err(e))?
                .is_some()
            {
                // Imported before (a crash before the file was removed), or voided first.
                return Ok(());
            }
            let mut avail = w.open_table(AVAILABLE).map_err(|e| self.err(e))?;
            let mut ids = w.open_table(IDS).map_err(|e| self.err(e))?;
            let mut meta = w.open_table(META).map_err(|e| self.err(e))?;
            let mut order = meta
                .get("next_order")
                .map_err(|e| self.err(e))?
                .map_or(0, |v| v.value());
            let t = now_s();
            let mut n = 0u32;
            for (i, unit) in b.key.chunks_exact(KEY_BYTES).enumerate() {
                let id = key_id(&h.run_id, h.block, h.tag, i as u32);
                let mut rec = encode_record(&id, &stem, t, unit);
                avail
                    .insert(order, rec.as_slice())
                    .map_err(|e| self.err(e))?;
                rec.zeroize();
                ids.insert(id.as_bytes(), order).map_err(|e| self.err(e))?;
                order += 1;
                n += 1;
            }
            meta.insert("next_order", order).map_err(|e| self.err(e))?;
            let entry = BlockEntry {
                stem: stem.clone(),
                keys: n,
                bytes: h.bytes,
                void: false,
                unix_s: t,
            };
            blocks
                .insert(
                    stem.as_str(),
                    serde_json::to_string(&entry).expect("serializes").as_str(),
                )
                .map_err(|e| self.err(e))?;
            rep.blocks += 1;
            rep.keys += u64::from(n);
            rep.remainder_bits += 8 * (b.key.len() % KEY_BYTES) as u64;
        }
        self.commit(w)
    }

    fn apply_void(&self, stem: &str, rep: &mut ImportReport) -> Result<()> {
        let w = self.begin()?;
        {
            let mut blocks = w.open_table(BLOCKS).map_err(|e| self.err(e))?;
            let old: Option<BlockEntry> = blocks
                .get(stem)
                .map_err(|e| self.err(e))?
                .map(|v| serde_json::from_str(v.value()).map_err(|e| self.err(e)))
                .transpose()?;
            if old.as_ref().is_some_and(|o| o.void) {
                return Ok(());
            }
            let (run, block, tag) = parse_stem(stem).ok_or_else(|| self.err("bad block name"))?;
            let mut avail = w.open_table(AVAILABLE).map_err(|e| self.err(e))?;
            let mut ids = w.open_table(IDS).map_err(|e| self.err(e))?;
            let keys = old.as_ref().map_or(0, |o| o.keys);
            let mut used = 0;
            for i in 0..keys {
                let id = key_id(&run, block, tag, i);
                let order = ids.remove(id.as_bytes()).map_err(|e| self.err(e))?;
                match order {
                    Some(o) => {
                        let o = o.value();
                        avail.remove(o).map_err(|e| self.err(e))?;
                        rep.voided_keys += 1;
                    }
                    None => used += 1,
                }
            }
            if used > 0 {
                rep.warnings.push(format!(
                    "block {stem} was rolled back but {used} of its keys had already left the store (exported or in a grant the peer refuses)"
                ));
            }
            let entry = BlockEntry {
                stem: stem.to_string(),
                keys,
                bytes: old.map_or(0, |o| o.bytes),
                void: true,
                unix_s: now_s(),
            };
            blocks
                .insert(
                    stem,
                    serde_json::to_string(&entry).expect("serializes").as_str(),
                )
                .map_err(|e| self.err(e))?;
            rep.voided_blocks += 1;
        }
        self.commit(w)
    }

    /// Counts.
    pub fn status(&self) -> Result<StoreStatus> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let avail = r.open_table(AVAILABLE).map_err(|e| self.err(e))?;
        let ends = |x: Option<(redb::AccessGuard<u64>, redb::AccessGuard<&[u8]>)>| -> Result<Option<(String, u64)>> {
            Ok(match x {
                None => None,
                Some((k, v)) => {
                    let (_, stem, t, mut bytes) = decode_record(&self.path, k.value(), v.value())?;
                    bytes.zeroize();
                    Some((stem, t))
                }
            })
        };
        let oldest = ends(avail.first().map_err(|e| self.err(e))?)?;
        let newest = ends(avail.last().map_err(|e| self.err(e))?)?;
        let count_units = |table: TableDefinition<&[u8; 16], &[u8]>| -> Result<u64> {
            let t = r.open_table(table).map_err(|e| self.err(e))?;
            let mut n = 0;
            for x in t.iter().map_err(|e| self.err(e))? {
                let (_, v) = x.map_err(|e| self.err(e))?;
                let g: Grant = serde_json::from_slice(v.value()).map_err(|e| self.err(e))?;
                n += g.units.len() as u64;
            }
            Ok(n)
        };
        let blocks = r.open_table(BLOCKS).map_err(|e| self.err(e))?;
        let (mut imported, mut voided) = (0, 0);
        for x in blocks.iter().map_err(|e| self.err(e))? {
            let (_, v) = x.map_err(|e| self.err(e))?;
            let e: BlockEntry = serde_json::from_str(v.value()).map_err(|e| self.err(e))?;
            if e.void {
                voided += 1;
            } else {
                imported += 1;
            }
        }
        let available_keys = avail.len().map_err(|e| self.err(e))?;
        Ok(StoreStatus {
            path: self.path.clone(),
            available_keys,
            available_bits: available_keys * u64::from(KEY_BITS),
            pending_keys: count_units(PENDING)?,
            reserved_keys: count_units(RESERVED)?,
            delivered_key_ids: r
                .open_table(DELIVERED)
                .map_err(|e| self.err(e))?
                .len()
                .map_err(|e| self.err(e))?,
            blocks: imported,
            voided_blocks: voided,
            oldest,
            newest,
            inbox_files: inbox::inbox_files(&self.dir)?.len() as u64,
            key_bits: KEY_BITS,
        })
    }

    /// Available keys (fast count).
    pub fn available(&self) -> Result<u64> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let avail = r.open_table(AVAILABLE).map_err(|e| self.err(e))?;
        avail.len().map_err(|e| self.err(e))
    }

    /// The available keys, oldest first, at most `limit`.
    pub fn list(&self, limit: usize) -> Result<Vec<Listed>> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let avail = r.open_table(AVAILABLE).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for x in avail.iter().map_err(|e| self.err(e))?.take(limit) {
            let (k, v) = x.map_err(|e| self.err(e))?;
            let (id, block, t, mut bytes) = decode_record(&self.path, k.value(), v.value())?;
            bytes.zeroize();
            out.push(Listed {
                key_id: id,
                block,
                stored_unix_s: t,
            });
        }
        Ok(out)
    }

    /// Master side, step 1: take `number` keys of `units_per_key` stored keys each for
    /// `master`→`slave` out of `available` into `pending`, in one transaction. `oldest` picks
    /// from the oldest end (else the newest); keys in `skip` are passed over. Fails, changing
    /// nothing, if too few keys are available.
    pub fn begin_grants(
        &self,
        master: &str,
        slave: &str,
        number: usize,
        units_per_key: usize,
        oldest: bool,
        skip: &HashSet<Uuid>,
    ) -> Result<Vec<Grant>> {
        let need = number * units_per_key;
        let w = self.begin()?;
        let mut grants = Vec::with_capacity(number);
        {
            let mut avail = w.open_table(AVAILABLE).map_err(|e| self.err(e))?;
            let mut picked = Vec::with_capacity(need);
            {
                let it = avail.iter().map_err(|e| self.err(e))?;
                let it: Box<dyn Iterator<Item = _>> = if oldest {
                    Box::new(it)
                } else {
                    Box::new(it.rev())
                };
                for x in it {
                    if picked.len() == need {
                        break;
                    }
                    let (k, v) = x.map_err(|e| self.err(e))?;
                    let (id, block, t, mut bytes) =
                        decode_record(&self.path, k.value(), v.value())?;
                    if !skip.contains(&id) {
                        picked.push(Unit {
                            id,
                            block,
                            order: k.value(),
                            imported_s: t,
                            hex: to_hex(&bytes),
                        });
                    }
                    bytes.zeroize();
                }
            }
            if picked.len() < need {
                return Err(KeyStoreError::Unavailable(format!(
                    "not enough key: {number} key(s) of {} bits need {need} stored keys, {} available",
                    units_per_key * KEY_BITS as usize,
                    picked.len()
                ))
                .into());
            }
            if !oldest {
                picked.reverse();
            }
            let mut ids = w.open_table(IDS).map_err(|e| self.err(e))?;
            let mut pending = w.open_table(PENDING).map_err(|e| self.err(e))?;
            let t = now_s();
            for chunk in picked.chunks(units_per_key) {
                for u in chunk {
                    avail.remove(u.order).map_err(|e| self.err(e))?;
                    ids.remove(u.id.as_bytes()).map_err(|e| self.err(e))?;
                }
                let g = Grant {
                    key_id: chunk[0].id,
                    master: master.into(),
                    slave: slave.into(),
                    units: chunk.to_vec(),
                    created_s: t,
                };
                let mut text = serde_json::to_vec(&g).expect("serializes");
                pending
                    .insert(g.key_id.as_bytes(), text.as_slice())
                    .map_err(|e| self.err(e))?;
                text.zeroize();
                grants.push(g);
            }
        }
        self.commit(w)?;
        Ok(grants)
    }

    /// Master side, step 3: the grants `key_ids` (reserved at the peer) are delivered to their
    /// master SAE: recorded as delivered, their bytes returned, in one transaction.
    pub fn finish_grants(&self, key_ids: &[Uuid]) -> Result<Vec<DeliveredKey>> {
        let w = self.begin()?;
        let mut out = Vec::with_capacity(key_ids.len());
        {
            let mut pending = w.open_table(PENDING).map_err(|e| self.err(e))?;
            let mut delivered = w.open_table(DELIVERED).map_err(|e| self.err(e))?;
            for id in key_ids {
                let g: Grant = match pending.remove(id.as_bytes()).map_err(|e| self.err(e))? {
                    Some(v) => serde_json::from_slice(v.value()).map_err(|e| self.err(e))?,
                    None => {
                        return Err(KeyStoreError::Refused(format!(
                            "key {id} is not being delivered here"
                        ))
                        .into());
                    }
                };
                out.push(self.grant_key(&g)?);
                let rec = DeliveryRecord {
                    to: g.master.clone(),
                    role: "master".into(),
                    unix_s: now_s(),
                    keys: g.units.len() as u32,
                };
                delivered
                    .insert(
                        id.as_bytes(),
                        serde_json::to_string(&rec).expect("serializes").as_str(),
                    )
                    .map_err(|e| self.err(e))?;
            }
        }
        self.commit(w)?;
        Ok(out)
    }

    fn grant_key(&self, g: &Grant) -> Result<DeliveredKey> {
        let mut bytes = Vec::with_capacity(g.units.len() * KEY_BYTES);
        for u in &g.units {
            let mut b = from_hex(&u.hex).ok_or_else(|| self.err("bad key bytes in a grant"))?;
            bytes.extend_from_slice(&b);
            b.zeroize();
        }
        Ok(DeliveredKey {
            id: g.key_id,
            bytes,
        })
    }

    /// Master side, undo step 1: the grants `key_ids` go back to `available` (their keys in
    /// `discard` are dropped instead: the peer will never have them).
    pub fn abandon_grants(&self, key_ids: &[Uuid], discard: &HashSet<Uuid>) -> Result<u64> {
        let w = self.begin()?;
        let mut dropped = 0;
        {
            let mut pending = w.open_table(PENDING).map_err(|e| self.err(e))?;
            let mut avail = w.open_table(AVAILABLE).map_err(|e| self.err(e))?;
            let mut ids = w.open_table(IDS).map_err(|e| self.err(e))?;
            for id in key_ids {
                let Some(g) = pending.remove(id.as_bytes()).map_err(|e| self.err(e))? else {
                    continue;
                };
                let g: Grant = serde_json::from_slice(g.value()).map_err(|e| self.err(e))?;
                dropped += self.restore_units(&g, &mut avail, &mut ids, discard)?;
            }
        }
        self.commit(w)?;
        Ok(dropped)
    }

    fn restore_units(
        &self,
        g: &Grant,
        avail: &mut redb::Table<u64, &[u8]>,
        ids: &mut redb::Table<&[u8; 16], u64>,
        discard: &HashSet<Uuid>,
    ) -> Result<u64> {
        let mut dropped = 0;
        for u in &g.units {
            if discard.contains(&u.id) {
                dropped += 1;
                continue;
            }
            let mut b = from_hex(&u.hex).ok_or_else(|| self.err("bad key bytes in a grant"))?;
            let mut rec = encode_record(&u.id, &u.block, u.imported_s, &b);
            b.zeroize();
            avail
                .insert(u.order, rec.as_slice())
                .map_err(|e| self.err(e))?;
            rec.zeroize();
            ids.insert(u.id.as_bytes(), u.order)
                .map_err(|e| self.err(e))?;
        }
        Ok(dropped)
    }

    /// Grants this (master) KME started and did not finish (the peer's reservation is
    /// uncertain): for recovery.
    pub fn pending(&self) -> Result<Vec<Grant>> {
        self.grants_in(PENDING)
    }

    fn grants_in(&self, table: TableDefinition<&[u8; 16], &[u8]>) -> Result<Vec<Grant>> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(table).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for x in t.iter().map_err(|e| self.err(e))? {
            let (_, v) = x.map_err(|e| self.err(e))?;
            out.push(serde_json::from_slice(v.value()).map_err(|e| self.err(e))?);
        }
        Ok(out)
    }

    /// Slave side: reserve the peer's grants (IDs and units, no bytes) for its slave SAE, all or
    /// none, in one transaction. A grant reserved before with the same units is fine (the
    /// master's retry).
    pub fn reserve(
        &self,
        master: &str,
        slave: &str,
        grants: &[(Uuid, Vec<UnitRef>)],
    ) -> Result<ReserveOutcome> {
        let w = self.begin()?;
        let mut outcome = ReserveOutcome::default();
        {
            let mut reserved = w.open_table(RESERVED).map_err(|e| self.err(e))?;
            let delivered = w.open_table(DELIVERED).map_err(|e| self.err(e))?;
            let blocks = w.open_table(BLOCKS).map_err(|e| self.err(e))?;
            let mut avail = w.open_table(AVAILABLE).map_err(|e| self.err(e))?;
            let mut ids = w.open_table(IDS).map_err(|e| self.err(e))?;
            let mut todo = Vec::new();
            for (key, units) in grants {
                if units.first().map(|u| u.id) != Some(*key) {
                    return Err(KeyStoreError::Refused(format!(
                        "key {key}: a key's ID is the ID of its first stored key"
                    ))
                    .into());
                }
                if let Some(v) = reserved.get(key.as_bytes()).map_err(|e| self.err(e))? {
                    let g: Grant = serde_json::from_slice(v.value()).map_err(|e| self.err(e))?;
                    if g.unit_refs() == *units && g.master == master && g.slave == slave {
                        continue;
                    }
                    return Err(KeyStoreError::Refused(format!(
                        "key {key} is reserved here for another request"
                    ))
                    .into());
                }
                if delivered
                    .get(key.as_bytes())
                    .map_err(|e| self.err(e))?
                    .is_some()
                {
                    outcome.gone.extend(units.iter().map(|u| u.id));
                    continue;
                }
                for u in units {
                    match ids.get(u.id.as_bytes()).map_err(|e| self.err(e))? {
                        Some(_) => {}
                        None => {
                            let known = blocks
                                .get(u.block.as_str())
                                .map_err(|e| self.err(e))?
                                .is_some();
                            if known {
                                outcome.gone.push(u.id);
                            } else {
                                outcome.missing.push(u.id);
                            }
                        }
                    }
                }
                todo.push((key, units));
            }
            if !outcome.gone.is_empty() || !outcome.missing.is_empty() {
                return Ok(outcome);
            }
            let t = now_s();
            for (key, units) in todo {
                let mut g = Grant {
                    key_id: *key,
                    master: master.into(),
                    slave: slave.into(),
                    units: Vec::with_capacity(units.len()),
                    created_s: t,
                };
                for u in units {
                    let order = ids
                        .remove(u.id.as_bytes())
                        .map_err(|e| self.err(e))?
                        .expect("checked above")
                        .value();
                    let v = avail
                        .remove(order)
                        .map_err(|e| self.err(e))?
                        .ok_or_else(|| self.err(format!("key {} has no record", u.id)))?;
                    let (id, block, imported_s, mut bytes) =
                        decode_record(&self.path, order, v.value())?;
                    drop(v);
                    if id != u.id {
                        return Err(self.err(format!("key {} has the record of {id}", u.id)));
                    }
                    if block != u.block {
                        return Err(KeyStoreError::Refused(format!(
                            "key {id} belongs to block {block} here, not {}",
                            u.block
                        ))
                        .into());
                    }
                    g.units.push(Unit {
                        id,
                        block,
                        order,
                        imported_s,
                        hex: to_hex(&bytes),
                    });
                    bytes.zeroize();
                }
                let mut text = serde_json::to_vec(&g).expect("serializes");
                reserved
                    .insert(key.as_bytes(), text.as_slice())
                    .map_err(|e| self.err(e))?;
                text.zeroize();
            }
            outcome.reserved = true;
        }
        self.commit(w)?;
        Ok(outcome)
    }

    /// Slave side: undo reservations the master did not deliver (its recovery). A reservation
    /// already delivered to the slave SAE stays delivered.
    pub fn release(&self, key_ids: &[Uuid]) -> Result<ReleaseOutcome> {
        let w = self.begin()?;
        let mut out = ReleaseOutcome::default();
        {
            let mut reserved = w.open_table(RESERVED).map_err(|e| self.err(e))?;
            let delivered = w.open_table(DELIVERED).map_err(|e| self.err(e))?;
            let mut avail = w.open_table(AVAILABLE).map_err(|e| self.err(e))?;
            let mut ids = w.open_table(IDS).map_err(|e| self.err(e))?;
            for id in key_ids {
                if let Some(v) = reserved.remove(id.as_bytes()).map_err(|e| self.err(e))? {
                    let g: Grant = serde_json::from_slice(v.value()).map_err(|e| self.err(e))?;
                    drop(v);
                    self.restore_units(&g, &mut avail, &mut ids, &HashSet::new())?;
                    out.released.push(*id);
                } else if delivered
                    .get(id.as_bytes())
                    .map_err(|e| self.err(e))?
                    .is_some()
                {
                    out.delivered.push(*id);
                } else {
                    out.unknown.push(*id);
                }
            }
        }
        self.commit(w)?;
        Ok(out)
    }

    /// Master side, after the peer said a pending grant was delivered to its slave SAE: record
    /// it as delivered here too, without giving it to anyone (the bytes are dropped).
    pub fn settle_delivered(&self, key_ids: &[Uuid]) -> Result<()> {
        let w = self.begin()?;
        {
            let mut pending = w.open_table(PENDING).map_err(|e| self.err(e))?;
            let mut delivered = w.open_table(DELIVERED).map_err(|e| self.err(e))?;
            for id in key_ids {
                if let Some(v) = pending.remove(id.as_bytes()).map_err(|e| self.err(e))? {
                    let g: Grant = serde_json::from_slice(v.value()).map_err(|e| self.err(e))?;
                    let rec = DeliveryRecord {
                        to: format!("(withheld: the peer delivered it to {})", g.slave),
                        role: "master".into(),
                        unix_s: now_s(),
                        keys: g.units.len() as u32,
                    };
                    delivered
                        .insert(
                            id.as_bytes(),
                            serde_json::to_string(&rec).expect("serializes").as_str(),
                        )
                        .map_err(|e| self.err(e))?;
                }
            }
        }
        self.commit(w)
    }

    /// Slave side: deliver the reserved keys `ids` of `master` to `slave`, each at most once, all
    /// or none. Errors name the key: unknown, delivered before, or reserved for other SAEs.
    pub fn deliver_reserved(
        &self,
        key_ids: &[Uuid],
        master: &str,
        slave: &str,
    ) -> Result<Vec<DeliveredKey>> {
        let w = self.begin()?;
        let mut out = Vec::with_capacity(key_ids.len());
        {
            let mut reserved = w.open_table(RESERVED).map_err(|e| self.err(e))?;
            let mut delivered = w.open_table(DELIVERED).map_err(|e| self.err(e))?;
            let mut seen = HashSet::new();
            for id in key_ids {
                if !seen.insert(*id) {
                    return Err(
                        KeyStoreError::Refused(format!("key_ID {id} is asked for twice")).into(),
                    );
                }
                let Some(v) = reserved.remove(id.as_bytes()).map_err(|e| self.err(e))? else {
                    let was = delivered
                        .get(id.as_bytes())
                        .map_err(|e| self.err(e))?
                        .is_some();
                    return Err(KeyStoreError::Refused(if was {
                        format!("key_ID {id} was delivered before (a key is delivered once)")
                    } else {
                        format!(
                            "key_ID {id} is unknown here (not given to master SAE {master} for {slave})"
                        )
                    })
                    .into());
                };
                let g: Grant = serde_json::from_slice(v.value()).map_err(|e| self.err(e))?;
                drop(v);
                if g.master != master || g.slave != slave {
                    return Err(KeyStoreError::Refused(format!(
                        "key_ID {id} is unknown here (not given to master SAE {master} for {slave})"
                    ))
                    .into());
                }
                out.push(self.grant_key(&g)?);
                let rec = DeliveryRecord {
                    to: slave.into(),
                    role: "slave".into(),
                    unix_s: now_s(),
                    keys: g.units.len() as u32,
                };
                delivered
                    .insert(
                        id.as_bytes(),
                        serde_json::to_string(&rec).expect("serializes").as_str(),
                    )
                    .map_err(|e| self.err(e))?;
            }
        }
        self.commit(w)?;
        Ok(out)
    }

    /// Take up to `n` available keys out of the store (oldest first), recorded as delivered to
    /// `export`. The peer's copies of them can no longer be delivered (its KME learns so from
    /// this one and drops them).
    pub fn export(&self, n: usize) -> Result<Vec<DeliveredKey>> {
        let n = n.min(self.available()? as usize);
        if n == 0 {
            return Ok(vec![]);
        }
        let grants = self.begin_grants("export", "export", n, 1, true, &HashSet::new())?;
        let ids: Vec<Uuid> = grants.iter().map(|g| g.key_id).collect();
        self.finish_grants(&ids)
    }
}

/// `RUN-BLOCK-TAG` → (run, block, tag).
pub fn parse_stem(stem: &str) -> Option<(String, u64, u64)> {
    let mut parts = stem.rsplitn(3, '-');
    let tag = u64::from_str_radix(parts.next()?, 16).ok()?;
    let block = parts.next()?.parse().ok()?;
    let run = parts.next()?.to_string();
    Some((run, block, tag))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{BlockReport, ConfirmationReport, SecretKey};
    use crate::keystore::KeySink;
    use crate::keystore::inbox::StoreInbox;
    use crate::protocol::Role;
    use crate::protocols::ProtocolKind;

    fn report(id: u64, last_slot: u64, tag: u64) -> BlockReport {
        BlockReport {
            id,
            last_slot,
            confirmation: Some(ConfirmationReport {
                confirmed: true,
                pad_bits: 64,
                auth_refill_bits: 0,
                tag,
            }),
            ..Default::default()
        }
    }

    fn key(bytes: &[u8]) -> SecretKey {
        SecretKey::new(&crate::bits::BitVec::from_bytes_le(bytes, bytes.len() * 8))
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("qkd-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// Key IDs and blocks of a listing: what two sites share (each store's own import time may
    /// differ by a second).
    fn ids(l: Vec<Listed>) -> Vec<(Uuid, String)> {
        l.into_iter().map(|k| (k.key_id, k.block)).collect()
    }

    #[test]
    fn keys_are_stored_durably_with_shared_ids_and_delivered_once() {
        let (da, db) = (dir("a"), dir("b"));
        let bytes: Vec<u8> = (0..100u8).collect(); // 3 whole keys + a remainder
        for (d, role) in [(&da, Role::Alice), (&db, Role::Bob)] {
            let mut s = StoreInbox::open(d, role, "run1", ProtocolKind::Bb84, false).unwrap();
            s.append(&report(0, 99, 7), &key(&bytes)).unwrap();
        }
        let a = KeyStore::open(&da).unwrap();
        let b = KeyStore::open(&db).unwrap();
        assert_eq!(a.status().unwrap().available_keys, 3);
        assert!(
            KeyStore::open(&da).is_err(),
            "one process (handle) at a time"
        );
        // Same IDs at both sites, without talking.
        let la = a.list(10).unwrap();
        assert_eq!(ids(la.clone()), ids(b.list(10).unwrap()));
        assert_eq!(la[1].key_id, key_id("run1", 0, 7, 1));
        assert_eq!(la[1].block, inbox::stem("run1", 0, 7));
        // Master A: two keys of 256 bits for B's SAE; B reserves them; A delivers.
        let g = a
            .begin_grants("A", "B", 2, 1, true, &HashSet::new())
            .unwrap();
        let req: Vec<(Uuid, Vec<UnitRef>)> = g.iter().map(|g| (g.key_id, g.unit_refs())).collect();
        assert!(b.reserve("A", "B", &req).unwrap().reserved);
        assert!(
            b.reserve("A", "B", &req).unwrap().reserved,
            "a retry is fine"
        );
        let ids: Vec<Uuid> = g.iter().map(|g| g.key_id).collect();
        let ka = a.finish_grants(&ids).unwrap();
        assert!(a.finish_grants(&ids).is_err(), "once");
        assert!(b.deliver_reserved(&ids, "A", "C").is_err(), "other SAEs");
        let kb = b.deliver_reserved(&ids, "A", "B").unwrap();
        assert_eq!(ka[0].bytes, bytes[..32]);
        assert_eq!(kb[1].bytes, bytes[32..64]);
        let e = b
            .deliver_reserved(&ids[..1], "A", "B")
            .unwrap_err()
            .to_string();
        assert!(e.contains("delivered before"), "{e}");
        // A 512-bit key needs 2 stored keys; 1 is left.
        assert!(
            a.begin_grants("A", "B", 1, 2, true, &HashSet::new())
                .is_err()
        );
        let st = a.status().unwrap();
        assert_eq!(
            (st.available_keys, st.delivered_key_ids, st.pending_keys),
            (1, 2, 0)
        );
        drop((a, b));
        // Reopened (a restart): the counts are durable.
        let a = KeyStore::open(&da).unwrap();
        assert_eq!(a.status().unwrap().available_keys, 1);
        for d in [da, db] {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    #[test]
    fn abandoned_and_released_grants_come_back_and_voids_remove_keys() {
        let (da, db) = (dir("c"), dir("d"));
        let mut sa = StoreInbox::open(&da, Role::Alice, "r", ProtocolKind::Bb84, false).unwrap();
        let mut sb = StoreInbox::open(&db, Role::Bob, "r", ProtocolKind::Bb84, false).unwrap();
        sa.append(&report(0, 10, 1), &key(&[1; 64])).unwrap();
        sb.append(&report(0, 10, 1), &key(&[1; 64])).unwrap();
        sa.append(&report(1, 20, 2), &key(&[2; 64])).unwrap();
        let a = KeyStore::open(&da).unwrap();
        let b = KeyStore::open(&db).unwrap();
        // Block 1 is not at B (yet): B says which keys are missing; A puts them back.
        let g = a
            .begin_grants("A", "B", 4, 1, true, &HashSet::new())
            .unwrap();
        let req: Vec<_> = g.iter().map(|g| (g.key_id, g.unit_refs())).collect();
        let out = b.reserve("A", "B", &req).unwrap();
        assert!(!out.reserved);
        assert_eq!(out.missing.len(), 2);
        let ids: Vec<Uuid> = g.iter().map(|g| g.key_id).collect();
        a.abandon_grants(&ids, &HashSet::new()).unwrap();
        assert_eq!(a.status().unwrap().available_keys, 4);
        // A grant reserved at B and then released comes back at B.
        let g = a
            .begin_grants("A", "B", 1, 1, true, &HashSet::new())
            .unwrap();
        let req: Vec<_> = g.iter().map(|g| (g.key_id, g.unit_refs())).collect();
        assert!(b.reserve("A", "B", &req).unwrap().reserved);
        assert_eq!(b.status().unwrap().available_keys, 1);
        let rel = b.release(&[g[0].key_id]).unwrap();
        assert_eq!(rel.released, vec![g[0].key_id]);
        assert_eq!(b.status().unwrap().available_keys, 2);
        a.abandon_grants(&[g[0].key_id], &HashSet::new()).unwrap();
        // The site rolls block 1 back: its keys leave A's store at the next import.
        sa.rollback(1).unwrap();
        drop(a);
        let a = KeyStore::open(&da).unwrap();
        let st = a.status().unwrap();
        assert_eq!((st.available_keys, st.voided_blocks), (2, 1));
        // The same keys under the same IDs (each store's own import time may differ by a
        // second).
        let ids =
            |l: Vec<Listed>| -> Vec<_> { l.into_iter().map(|k| (k.key_id, k.block)).collect() };
        assert_eq!(ids(a.list(10).unwrap()), ids(b.list(10).unwrap()));
        for d in [da, db] {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    #[test]
    fn stems_parse() {
        let s = inbox::stem("a1b2", 42, 0xdead);
        assert_eq!(parse_stem(&s), Some(("a1b2".into(), 42, 0xdead)));
        assert_eq!(parse_stem("x"), None);
    }
}
