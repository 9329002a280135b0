//! Information-theoretic authentication of the classical channel (Wegman–Carter).
//!
//! **Construction.** Each direction of a link (Alice→Bob, Bob→Alice) keeps a running
//! transcript of every link frame it sends (receives): sequence number, stream, flags, length
//! and payload, as 64-bit words. At a *checkpoint* frame the sender appends the tag
//!
//! ```text
//! t = (P_k1(T) ⊕ r1, P_k2(T) ⊕ r2),   P_k(T) = Horner evaluation of T (and its length) at k over GF(2^64)
//! ```
//!
//! where T is the transcript since the previous checkpoint, (k1, k2) the direction's hash keys
//! (recycled) and (r1, r2) 128 fresh bits of the pre-shared pool (consumed). The receiver
//! recomputes the tag over what it received and accepts the checkpoint frame (and with it
//! every frame before it) only if they agree. The polynomial hash is ε-almost-XOR-universal
//! with ε = (L + 1)/2^64 for L words; two independent keys give ε² = ((L + 1)/2^64)², and the
//! one-time pad makes the family ε²-almost-strongly-universal, so a forged or modified
//! transcript passes with probability at most ((L + 1)/2^64)² per tag (Wegman, Carter, JCSS 22,
//! 265 (1981)); the hash keys may be reused because every tag is one-time padded (key
//! recycling: Portmann, IEEE TIT 60, 4383 (2014), arXiv:1202.1229), and ε composes additively
//! over the tags of a run. Frames between checkpoints are authenticated jointly at the next
//! checkpoint ("delayed authentication", as in AIT QKD R10; one tag per round, Kiktenko et al.,
//! arXiv:1903.10237); the protocol commits a block's key only after checkpoints in both
//! directions covered every frame that block depends on.
//!
//! **Key pool.** The pre-shared key (`qkd auth-key`) holds the four hash keys and the one-time
//! pad words, the same in Alice's and Bob's files. Tag j of direction d uses pad words
//! 4j + 2d and 4j + 2d + 1; the next tag index of each direction is persisted (fsync) *before*
//! its pad is used, so no pad bit is ever used twice, even across crashes. The pool is refilled
//! from distilled key: at each committed block both sides append the same words, at the same
//! point of the frame order (see `AuthPool::append_refill`). When the pad runs out the link
//! stops with a message saying how to refill it.

use crate::error::{ConfigError, Error, FormatError, Result};
use crate::kernels::Kernels;
use crate::protocol::Role;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};
use zeroize::Zeroize;

/// Magic bytes of an authentication key file.
pub const AUTH_MAGIC: [u8; 8] = *b"QKDAUTH\x01";
/// Bytes before the pad words: magic, pool id, role byte + padding, four hash keys.
pub const AUTH_HEADER_LEN: usize = 8 + 16 + 8 + 32;
/// Pad bits one tag consumes.
pub const TAG_PAD_BITS: u64 = 128;

/// A direction of the link: 0 = Alice→Bob, 1 = Bob→Alice.
pub fn direction(sender: Role) -> usize {
    match sender {
        Role::Alice => 0,
        Role::Bob => 1,
    }
}

/// A block's refill of the pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refill {
    /// The run of that block.
    #[serde(default)]
    pub run: String,
    /// The block whose key supplied the words.
    pub block: u64,
    /// Pool length (words) before the refill.
    pub from_word: u64,
    /// Words appended.
    pub words: u64,
}

/// The persistent state next to an authentication key file (`NAME.state`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PoolStateFile {
    pool_id: String,
    /// Pad words in the pool (the file may hold more after a crash; they are dropped).
    words: u64,
    /// Next tag index per direction.
    next_tag: [u64; 2],
    /// Refills, in order.
    refills: Vec<Refill>,
}

/// What the report says about authentication.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuthReport {
    /// The construction.
    pub construction: String,
    /// Pool id (public).
    pub pool_id: String,
    /// Tags this party sent.
    pub tags_sent: u64,
    /// Tags this party verified.
    pub tags_verified: u64,
    /// Pad bits consumed by this party's tags and by the peer's tags it verified.
    pub pad_bits_consumed: u64,
    /// Pad bits added from distilled key in this session.
    pub pad_bits_refilled: u64,
    /// Tags left in the pool for this party's direction.
    pub tags_left: u64,
    /// Pad bits left in the pool.
    pub pad_bits_left: u64,
    /// Σ over the tags this party verified of the forgery bound ((L + 1)/2^64)² (ε_auth of
    /// its receiving direction).
    pub epsilon: f64,
}

struct Inner {
    hash_keys: [u64; 4],
    words: Vec<u64>,
    next_tag: [u64; 2],
    refills: Vec<Refill>,
    /// Refills registered by the receiving side ahead of the frame that applies them.
    pending: HashMap<u64, Vec<u64>>,
    report: AuthReport,
    /// Pad words usable for tags.
    usable_words: u64,
    /// The run whose blocks refill the pool now.
    run: String,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.words.zeroize();
        self.hash_keys.zeroize();
        for v in self.pending.values_mut() {
            v.zeroize();
        }
    }
}

/// A party's view of the pre-shared authentication key pool.
pub struct AuthPool {
    inner: Mutex<Inner>,
    grown: Condvar,
    pool_id: [u8; 16],
    role: Role,
    file: Option<PathBuf>,
}

impl std::fmt::Debug for AuthPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthPool({}, redacted)", hex(&self.pool_id))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn state_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".state");
    path.with_file_name(name)
}

/// Write `bytes` to `path` atomically (temporary file, fsync, rename), mode 0600.
fn write_secret_file(path: &Path, bytes: &[u8], overwrite: bool) -> Result<()> {
    let mut f = crate::io::AtomicFile::create(path, overwrite, true)?;
    f.write_all(bytes)?;
    f.commit()?;
    Ok(())
}

/// Create a pair of authentication key files holding the same `bits` of pad (rounded up to a
/// multiple of 256) and the same four hash keys, from the OS random source. Refuses to
/// overwrite unless asked.
pub fn generate_pair(bits: u64, alice: &Path, bob: &Path, overwrite: bool) -> Result<[u8; 16]> {
    if !(4 * TAG_PAD_BITS..=1 << 34).contains(&bits) {
        return Err(ConfigError::invalid(
            "bits",
            format!("{bits}: an authentication pool needs 512 … 2^34 bits"),
        )
        .into());
    }
    for p in [alice, bob] {
        if !overwrite && (p.exists() || state_path(p).exists()) {
            return Err(ConfigError::Mismatch(format!(
                "{} already exists; refusing to overwrite it (use --force to replace it)",
                p.display()
            ))
            .into());
        }
    }
    let words = bits.div_ceil(256) * 4;
    let mut rng = crate::rng::seeded_from(&mut rand::rngs::SysRng)?;
    let mut id = [0u8; 16];
    rand::Rng::fill_bytes(&mut rng, &mut id);
    let mut body = Vec::with_capacity(AUTH_HEADER_LEN + 8 * words as usize);
    for (role, path) in [(b'A', alice), (b'B', bob)] {
        body.clear();
        body.extend_from_slice(&AUTH_MAGIC);
        body.extend_from_slice(&id);
        body.push(role);
        body.extend_from_slice(&[0u8; 7]);
        body.resize(AUTH_HEADER_LEN + 8 * words as usize, 0);
        write_secret_file(path, &body, overwrite)?;
    }
    // Fill the keys and pad once, then copy them into both files.
    let mut secret = vec![0u8; 32 + 8 * words as usize];
    rand::Rng::fill_bytes(&mut rng, &mut secret);
    for path in [alice, bob] {
        let mut bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        bytes[32..].copy_from_slice(&secret);
        write_secret_file(path, &bytes, true)?;
        bytes.zeroize();
        let state = PoolStateFile {
            pool_id: hex(&id),
            words,
            next_tag: [0, 0],
            refills: vec![],
        };
        let text = serde_json::to_vec_pretty(&state).expect("state serializes");
        write_secret_file(&state_path(path), &text, true)?;
    }
    secret.zeroize();
    Ok(id)
}

impl AuthPool {
    /// Load `path` for `role` (the file must be that role's half of the pair).
    pub fn load(path: &Path, role: Role) -> Result<AuthPool> {
        let mut bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let bad = |offset: u64, field: &'static str, message: String| -> Error {
            FormatError::InvalidField {
                path: path.to_path_buf(),
                offset,
                field,
                message,
            }
            .into()
        };
        if bytes.len() < AUTH_HEADER_LEN || bytes[..8] != AUTH_MAGIC {
            return Err(FormatError::BadMagic {
                path: path.to_path_buf(),
                offset: 0,
                expected: "QKDAUTH\\x01".into(),
                kind: "authentication key",
            }
            .into());
        }
        let want = if role == Role::Alice { b'A' } else { b'B' };
        if bytes[24] != want {
            return Err(bad(
                24,
                "role",
                format!(
                    "this is {}'s half of the key pair; {} needs the other file (--out-peer of `qkd auth-key`)",
                    if bytes[24] == b'A' { "Alice" } else { "Bob" },
                    role.name()
                ),
            ));
        }
        let pool_id: [u8; 16] = bytes[8..24].try_into().expect("16 bytes");
        let sp = state_path(path);
        let state: PoolStateFile = serde_json::from_slice(
            &std::fs::read(&sp).map_err(|e| Error::io(&sp, e))?,
        )
        .map_err(|e| FormatError::Metadata {
            path: sp.clone(),
            offset: 0,
            message: e.to_string(),
        })?;
        if state.pool_id != hex(&pool_id) {
            return Err(bad(
                8,
                "pool id",
                format!("{} belongs to another pool", sp.display()),
            ));
        }
        let have = ((bytes.len() - AUTH_HEADER_LEN) / 8) as u64;
        if have < state.words {
            return Err(bad(
                bytes.len() as u64,
                "pad",
                format!(
                    "{have} pad words, the state file records {} (file truncated?)",
                    state.words
                ),
            ));
        }
        let word = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        let hash_keys = [word(32), word(40), word(48), word(56)];
        let words: Vec<u64> = (0..state.words as usize)
            .map(|i| word(AUTH_HEADER_LEN + 8 * i))
            .collect();
        bytes.zeroize();
        let report = AuthReport {
            construction: "Wegman–Carter: two polynomial hashes over GF(2^64) with recycled keys, one-time padded with 128 pool bits per tag".into(),
            pool_id: hex(&pool_id),
            ..Default::default()
        };
        let usable = words.len() as u64;
        Ok(AuthPool {
            inner: Mutex::new(Inner {
                hash_keys,
                words,
                next_tag: state.next_tag,
                refills: state.refills,
                pending: HashMap::new(),
                report,
                usable_words: usable,
                run: String::new(),
            }),
            grown: Condvar::new(),
            pool_id,
            role,
            file: Some(path.to_path_buf()),
        })
    }

    /// Two in-memory pools holding the same `words` of pad and hash keys (for a batch run of
    /// both parties in one process, which authenticates its in-memory link the same way).
    pub fn ephemeral_pair(words: usize, seed: Option<u64>) -> Result<(AuthPool, AuthPool)> {
        let mut rng = match seed {
            Some(s) => rand::SeedableRng::from_seed(*blake3::hash(&s.to_le_bytes()).as_bytes()),
            None => crate::rng::seeded_from(&mut rand::rngs::SysRng)?,
        };
        let rng: &mut rand_chacha::ChaCha20Rng = &mut rng;
        let mut id = [0u8; 16];
        rand::Rng::fill_bytes(rng, &mut id);
        let hash_keys: [u64; 4] = std::array::from_fn(|_| rand::Rng::next_u64(rng));
        let pad: Vec<u64> = (0..words.div_ceil(4) * 4)
            .map(|_| rand::Rng::next_u64(rng))
            .collect();
        let make = |role| {
            AuthPool {
            inner: Mutex::new(Inner {
                hash_keys,
                words: pad.clone(),
                next_tag: [0, 0],
                refills: vec![],
                pending: HashMap::new(),
                report: AuthReport {
                    construction: "Wegman–Carter: two polynomial hashes over GF(2^64) with recycled keys, one-time padded with 128 pool bits per tag (ephemeral in-process pool)".into(),
                    pool_id: hex(&id),
                    ..Default::default()
                },
                usable_words: pad.len() as u64,
                run: String::new(),
            }),
            grown: Condvar::new(),
            pool_id: id,
            role,
            file: None,
        }
        };
        Ok((make(Role::Alice), make(Role::Bob)))
    }

    /// The pool id (the same in both halves).
    pub fn pool_id(&self) -> [u8; 16] {
        self.pool_id
    }

    /// The party this half belongs to.
    pub fn role(&self) -> Role {
        self.role
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Next tag index of each direction, and the pool length in words.
    pub fn counters(&self) -> ([u64; 2], u64) {
        let g = self.lock();
        (g.next_tag, g.words.len() as u64)
    }

    /// Tags left for direction `dir`.
    pub fn tags_left(&self, dir: usize) -> u64 {
        let g = self.lock();
        (g.usable_words / 4).saturating_sub(g.next_tag[dir])
    }

    /// Advance both directions' tag counters to at least `peer` (after a crash one side may
    /// have reserved pads the other never saw; they are skipped, never reused).
    pub fn sync_counters(&self, peer: [u64; 2]) -> Result<()> {
        let mut g = self.lock();
        for (mine, theirs) in g.next_tag.iter_mut().zip(peer) {
            *mine = (*mine).max(theirs);
        }
        self.persist(&g)
    }

    /// The run whose committed blocks refill the pool from now on.
    pub fn set_run(&self, run: &str) {
        self.lock().run = run.to_string();
    }

    /// Drop the refills of the current run's blocks ≥ `first_rolled_back` (those blocks were
    /// not committed on both sides); pad words of dropped refills that were already used stay
    /// used (tag counters never go back).
    pub fn rollback_refills(&self, first_rolled_back: u64) -> Result<u64> {
        let mut g = self.lock();
        let run = g.run.clone();
        let Some(i) = g
            .refills
            .iter()
            .position(|r| r.run == run && r.block >= first_rolled_back)
        else {
            return Ok(0);
        };
        let cut = g.refills[i].from_word as usize;
        let dropped = (g.words.len() - cut) as u64;
        g.words[cut..].zeroize();
        g.words.truncate(cut);
        g.refills.truncate(i);
        g.usable_words = g.usable_words.min(cut as u64);
        self.persist(&g)?;
        Ok(dropped)
    }

    /// The last block of the current run that refilled the pool.
    pub fn last_refill_block(&self) -> Option<u64> {
        let g = self.lock();
        g.refills
            .iter()
            .rev()
            .find(|r| r.run == g.run)
            .map(|r| r.block)
    }

    fn persist(&self, g: &Inner) -> Result<()> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let state = PoolStateFile {
            pool_id: hex(&self.pool_id),
            words: g.words.len() as u64,
            next_tag: g.next_tag,
            refills: g.refills.clone(),
        };
        let text = serde_json::to_vec_pretty(&state).expect("state serializes");
        write_secret_file(&state_path(path), &text, true)
    }

    /// Reserve the pad of the next tag of direction `dir` (persisted before it is returned);
    /// waits up to `wait` for a refill when the pool is empty. Returns (tag index, pad, hash
    /// keys).
    pub(crate) fn reserve(&self, dir: usize, wait: Duration) -> Result<(u64, [u64; 2], [u64; 2])> {
        let deadline = Instant::now() + wait;
        let mut g = self.lock();
        loop {
            let j = g.next_tag[dir];
            let w = (4 * j + 2 * dir as u64) as usize;
            if (w + 2) as u64 <= g.usable_words {
                g.next_tag[dir] = j + 1;
                self.persist(&g)?;
                let pad = [g.words[w], g.words[w + 1]];
                g.report.pad_bits_consumed += TAG_PAD_BITS;
                let keys = [g.hash_keys[2 * dir], g.hash_keys[2 * dir + 1]];
                return Ok((j, pad, keys));
            }
            // Only a refill on its way (registered, applied at the next commit frame) is worth
            // waiting for.
            let now = Instant::now();
            if now >= deadline || g.pending.is_empty() {
                return Err(exhausted(&self.file, g.usable_words));
            }
            g = self
                .grown
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The pad of tag `j` of direction `dir` (the receiver's side: it must be the next one).
    pub(crate) fn pad_for(
        &self,
        dir: usize,
        j: u64,
        wait: Duration,
    ) -> Result<([u64; 2], [u64; 2])> {
        let deadline = Instant::now() + wait;
        let mut g = self.lock();
        loop {
            let w = (4 * j + 2 * dir as u64) as usize;
            if (w + 2) as u64 <= g.usable_words {
                g.next_tag[dir] = g.next_tag[dir].max(j + 1);
                self.persist(&g)?;
                g.report.pad_bits_consumed += TAG_PAD_BITS;
                return Ok((
                    [g.words[w], g.words[w + 1]],
                    [g.hash_keys[2 * dir], g.hash_keys[2 * dir + 1]],
                ));
            }
            let now = Instant::now();
            if now >= deadline || g.pending.is_empty() {
                return Err(exhausted(&self.file, g.usable_words));
            }
            g = self
                .grown
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The hash keys of direction `dir`.
    pub(crate) fn hash_keys(&self, dir: usize) -> [u64; 2] {
        let g = self.lock();
        [g.hash_keys[2 * dir], g.hash_keys[2 * dir + 1]]
    }

    /// Register the refill words of `block` ahead of the frame that applies it (the side that
    /// receives that frame).
    pub fn register_refill(&self, block: u64, words: Vec<u64>) {
        self.lock().pending.insert(block, words);
        self.grown.notify_all();
    }

    /// Append the refill of `block`: the registered words (waiting up to `wait` for them).
    /// Both sides call this at the same point of the frame order: the sender of the commit
    /// frame before sending it, the receiver when it reads it.
    pub(crate) fn append_refill(&self, block: u64, wait: Duration) -> Result<()> {
        let deadline = Instant::now() + wait;
        let mut g = self.lock();
        let mut words = loop {
            if let Some(w) = g.pending.remove(&block) {
                break w;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(crate::error::ProtocolError::Malformed(format!(
                    "no refill of the authentication pool registered for block {block}"
                ))
                .into());
            }
            g = self
                .grown
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        let run = g.run.clone();
        if g.refills.iter().any(|r| r.run == run && r.block >= block) {
            words.zeroize();
            return Ok(()); // already applied (resumed session)
        }
        let from = g.words.len() as u64;
        g.refills.push(Refill {
            run,
            block,
            from_word: from,
            words: words.len() as u64,
        });
        g.report.pad_bits_refilled += 64 * words.len() as u64;
        if let Some(path) = &self.file {
            use std::io::Write;
            let mut bytes = Vec::with_capacity(8 * words.len());
            for w in &words {
                bytes.extend_from_slice(&w.to_le_bytes());
            }
            // Words beyond the recorded length (a crash after an append) are overwritten.
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| Error::io(path, e))?;
            std::io::Seek::seek(
                &mut f,
                std::io::SeekFrom::Start((AUTH_HEADER_LEN + 8 * from as usize) as u64),
            )
            .map_err(|e| Error::io(path, e))?;
            f.write_all(&bytes).map_err(|e| Error::io(path, e))?;
            f.sync_all().map_err(|e| Error::io(path, e))?;
            bytes.zeroize();
        }
        g.words.extend_from_slice(&words);
        g.usable_words = g.words.len() as u64;
        words.zeroize();
        self.persist(&g)?;
        drop(g);
        self.grown.notify_all();
        Ok(())
    }

    /// Record a verified tag (and its forgery bound) or a sent one.
    pub(crate) fn count_tag(&self, sent: bool, words: u64) {
        let mut g = self.lock();
        if sent {
            g.report.tags_sent += 1;
        } else {
            // A forgery matters where the tag is verified: the bound counts there.
            g.report.tags_verified += 1;
            let e = (words as f64 + 1.0) / 2f64.powi(64);
            g.report.epsilon += e * e;
        }
    }

    /// The report for this session.
    pub fn report(&self) -> AuthReport {
        let g = self.lock();
        let mut r = g.report.clone();
        let dir = direction(self.role);
        r.tags_left = (g.usable_words / 4).saturating_sub(g.next_tag[dir]);
        let used = 4 * g.next_tag[0].max(g.next_tag[1]);
        r.pad_bits_left = 64 * g.usable_words.saturating_sub(used);
        r
    }
}

fn exhausted(file: &Option<PathBuf>, words: u64) -> Error {
    crate::error::TransportError::AuthenticationExhausted(match file {
        Some(p) => format!(
            "the authentication key pool {} is used up ({} pad bits in all); create a fresh pair with `qkd auth-key --bits N --out A --out-peer B` and carry one file to each site, or keep more distilled key in the pool with a larger `--auth-refill-bits`",
            p.display(),
            64 * words
        ),
        None => "the in-process authentication pool is used up".into(),
    })
    .into()
}

/// A running transcript of one direction: two Horner accumulators over GF(2^64).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Transcript {
    acc: [u64; 2],
    words: u64,
}

impl Transcript {
    /// Absorb `header` words and then `payload` bytes (little-endian words, zero-padded; the
    /// header carries the payload length, so the encoding is injective).
    pub(crate) fn absorb(&mut self, k: &Kernels, keys: [u64; 2], header: &[u64], payload: &[u8]) {
        for (acc, key) in self.acc.iter_mut().zip(keys) {
            *acc = k.poly_hash(header, key, *acc);
        }
        self.words += header.len() as u64;
        let mut buf = [0u64; 256];
        for chunk in payload.chunks(8 * buf.len()) {
            let n = chunk.len().div_ceil(8);
            for (j, w) in buf[..n].iter_mut().enumerate() {
                let s = &chunk[8 * j..chunk.len().min(8 * j + 8)];
                let mut b = [0u8; 8];
                b[..s.len()].copy_from_slice(s);
                *w = u64::from_le_bytes(b);
            }
            for (acc, key) in self.acc.iter_mut().zip(keys) {
                *acc = k.poly_hash(&buf[..n], key, *acc);
            }
            self.words += n as u64;
        }
    }

    /// The two hashes of everything absorbed, closed with the word count; resets the
    /// transcript. Returns (hashes, words covered).
    pub(crate) fn finish(&mut self, k: &Kernels, keys: [u64; 2]) -> ([u64; 2], u64) {
        let words = self.words;
        let h = [
            k.poly_hash(&[words], keys[0], self.acc[0]),
            k.poly_hash(&[words], keys[1], self.acc[1]),
        ];
        *self = Transcript::default();
        (h, words)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("qkd-auth-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn key_pairs_match_and_pads_are_never_reused() {
        let d = scratch("pair");
        let (a, b) = (d.join("a.auth"), d.join("b.auth"));
        generate_pair(2048, &a, &b, false).unwrap();
        // Never overwritten without asking.
        assert!(generate_pair(2048, &a, &b, false).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for p in [&a, &b] {
                let m = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
                assert_eq!(m, 0o600);
            }
        }
        let pa = AuthPool::load(&a, Role::Alice).unwrap();
        let pb = AuthPool::load(&b, Role::Bob).unwrap();
        assert!(
            AuthPool::load(&a, Role::Bob).is_err(),
            "the wrong half is refused"
        );
        assert_eq!(pa.pool_id(), pb.pool_id());
        let (j, pad, keys) = pa.reserve(0, Duration::ZERO).unwrap();
        let (pad_b, keys_b) = pb.pad_for(0, j, Duration::ZERO).unwrap();
        assert_eq!((pad, keys), (pad_b, keys_b));
        // The reservation is durable: a reload continues after it.
        drop(pa);
        let pa = AuthPool::load(&a, Role::Alice).unwrap();
        let (j2, pad2, _) = pa.reserve(0, Duration::ZERO).unwrap();
        assert_eq!(j2, j + 1);
        assert_ne!(pad2, pad);
        // 2048 bits = 32 words = 8 tags per direction; then the pool is exhausted.
        for _ in 2..8 {
            pa.reserve(0, Duration::ZERO).unwrap();
        }
        let e = pa.reserve(0, Duration::ZERO).unwrap_err().to_string();
        assert!(e.contains("used up") && e.contains("qkd auth-key"), "{e}");
        // A refill appended on both sides extends both.
        pa.set_run("r");
        pb.set_run("r");
        pa.register_refill(0, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        pb.register_refill(0, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        pa.append_refill(0, Duration::ZERO).unwrap();
        pb.append_refill(0, Duration::ZERO).unwrap();
        let (j, pad, _) = pa.reserve(0, Duration::ZERO).unwrap();
        assert_eq!(pb.pad_for(0, j, Duration::ZERO).unwrap().0, pad);
        assert_eq!(pa.report().pad_bits_refilled, 512);
        // Rolled back refills leave the pool as before, durably.
        assert_eq!(pb.rollback_refills(0).unwrap(), 8);
        drop(pb);
        let pb = AuthPool::load(&b, Role::Bob).unwrap();
        assert_eq!(pb.counters().1, 32);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn transcripts_differ_on_any_change() {
        let k = Kernels::detect();
        let keys = [0x1234_5678_9abc_def1, 0x0fed_cba9_8765_4321];
        // As the link does: the header ends with the payload length.
        let hash = |header: &[u64], payload: &[u8]| {
            let mut h = header.to_vec();
            h.push(payload.len() as u64);
            let mut t = Transcript::default();
            t.absorb(&k, keys, &h, payload);
            t.finish(&k, keys).0
        };
        let base = hash(&[1, 2, 3], b"hello world");
        assert_ne!(base, hash(&[1, 2, 3], b"hello worle"));
        assert_ne!(base, hash(&[1, 2, 4], b"hello world"));
        assert_ne!(base, hash(&[1, 2, 3], b"hello world\0"));
        assert_eq!(base, hash(&[1, 2, 3], b"hello world"));
    }
}
