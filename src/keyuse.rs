//! Using delivered keys: one-time pad and AES-256-GCM files (`qkd encrypt`, `qkd decrypt`),
//! with the keys fetched from a KME by ETSI GS QKD 014 (docs/keys.md).
//!
//! File layout (integers little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `QKDENC1\n` |
//! | 4 | header length h |
//! | h | header, JSON [`SealedHeader`]: mode, SAEs, key IDs, key bits used, nonce |
//! | n | ciphertext (n = plaintext length) |
//! | 16 | tag over magic, header and ciphertext |
//!
//! **One-time pad** (`otp`): the key IDs' keys, concatenated, are H (16 bytes) ‖ S (16 bytes) ‖
//! pad (n bytes). The ciphertext is plaintext ⊕ pad; the tag is GHASH_H(magic ‖ header,
//! ciphertext) ⊕ S, a one-time Wegman–Carter MAC: a forgery succeeds with probability at most
//! (ℓ + 1)/2^128 for ℓ 16-byte blocks, whatever the attacker's computing power (Wegman & Carter
//! 1981). Needs 8n + 256 key bits; key bits beyond them in the last key are discarded.
//!
//! **AES-256-GCM** (`aes-256-gcm`): one 256-bit key, a random 96-bit nonce (in the header), the
//! magic and header as associated data (aes-gcm crate). Computationally secure.
//!
//! Either way nothing is written unless the tag verifies, and each key is fetched from the KME
//! once (the KME never delivers a key twice).

use crate::error::{ConfigError, Error, FormatError, KeyStoreError, Result};
use crate::kme::KmeClient;
use crate::kme::api::KeyContainer;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::path::Path;
use zeroize::{Zeroize, Zeroizing};

const MAGIC: &[u8; 8] = b"QKDENC1\n";
const TAG: usize = 16;

/// How a file is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// One-time pad with a one-time MAC (information-theoretic).
    #[serde(rename = "otp")]
    Otp,
    /// AES-256-GCM.
    #[serde(rename = "aes-256-gcm")]
    Aes256Gcm,
}

impl Mode {
    /// Parse `otp` / `aes-256-gcm`.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "otp" => Some(Mode::Otp),
            "aes-256-gcm" | "aes" => Some(Mode::Aes256Gcm),
            _ => None,
        }
    }

    /// `otp` / `aes-256-gcm`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Otp => "otp",
            Mode::Aes256Gcm => "aes-256-gcm",
        }
    }

    /// Key bits a message of `n` bytes needs.
    pub fn key_bits(self, n: u64) -> u64 {
        match self {
            Mode::Otp => 8 * n + 256,
            Mode::Aes256Gcm => 256,
        }
    }
}

/// The header of a sealed file (field names as in ETSI GS QKD 014).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(non_snake_case)]
pub struct SealedHeader {
    /// Mode.
    pub mode: Mode,
    /// The SAE that fetched the keys by `enc_keys` (the decryptor's `dec_keys` names it).
    pub master_SAE_ID: String,
    /// The SAE that may decrypt.
    pub slave_SAE_ID: String,
    /// The keys, in the order they are used.
    pub key_IDs: Vec<String>,
    /// Key bits used (of the keys' total).
    pub key_bits_used: u64,
    /// Plaintext bytes.
    pub bytes: u64,
    /// AES-GCM nonce (hex); empty for the one-time pad.
    pub nonce: String,
}

fn ghash_tag(h: &[u8], s: &[u8], aad: &[u8], ct: &[u8]) -> [u8; 16] {
    use ghash::GHash;
    use ghash::universal_hash::{KeyInit, UniversalHash};
    let mut g = GHash::new(h.into());
    g.update_padded(aad);
    g.update_padded(ct);
    let mut lens = [0u8; 16];
    lens[..8].copy_from_slice(&(8 * aad.len() as u64).to_be_bytes());
    lens[8..].copy_from_slice(&(8 * ct.len() as u64).to_be_bytes());
    g.update(&[lens.into()]);
    let mut t: [u8; 16] = g.finalize().into();
    for (a, b) in t.iter_mut().zip(s) {
        *a ^= b;
    }
    t
}

fn prefix(header: &SealedHeader) -> Vec<u8> {
    let h = serde_json::to_vec(header).expect("header serializes");
    let mut out = Vec::with_capacity(12 + h.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(h.len() as u32).to_le_bytes());
    out.extend_from_slice(&h);
    out
}

/// Seal `plaintext` with `key` (at least `mode.key_bits(len)` bits) under `header`.
pub fn seal(header: &SealedHeader, key: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let need = header.mode.key_bits(plaintext.len() as u64).div_ceil(8) as usize;
    if key.len() < need {
        return Err(ConfigError::Mismatch(format!(
            "{} bytes need {need} key bytes in mode {:?}, got {}",
            plaintext.len(),
            header.mode,
            key.len()
        ))
        .into());
    }
    let mut out = prefix(header);
    let aad_len = out.len();
    match header.mode {
        Mode::Otp => {
            let (h, rest) = key.split_at(16);
            let (s, pad) = rest.split_at(16);
            out.extend(plaintext.iter().zip(pad).map(|(p, k)| p ^ k));
            let tag = ghash_tag(h, s, &out[..aad_len], &out[aad_len..]);
            out.extend_from_slice(&tag);
        }
        Mode::Aes256Gcm => {
            use aes_gcm::aead::{Aead, KeyInit, Payload};
            let nonce = nonce_bytes(&header.nonce)?;
            let cipher = aes_gcm::Aes256Gcm::new_from_slice(&key[..32]).expect("32-byte key");
            let ct = cipher
                .encrypt(
                    (&nonce).into(),
                    Payload {
                        msg: plaintext,
                        aad: &out,
                    },
                )
                .map_err(|_| ConfigError::Mismatch("AES-GCM encryption failed".into()))?;
            out.extend_from_slice(&ct);
        }
    }
    Ok(out)
}

fn nonce_bytes(hex: &str) -> Result<[u8; 12]> {
    let bad = || -> Error {
        ConfigError::invalid("nonce", format!("`{hex}` is not 24 hex digits")).into()
    };
    if hex.len() != 24 {
        return Err(bad());
    }
    let mut n = [0u8; 12];
    for (i, b) in n.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(n)
}

/// The header of a sealed file (to know which keys to fetch), and where it ends.
pub fn read_header(path: &Path, data: &[u8]) -> Result<(SealedHeader, usize)> {
    if data.len() < 12 || &data[..8] != MAGIC {
        return Err(FormatError::BadMagic {
            path: path.to_path_buf(),
            offset: 0,
            expected: "QKDENC1".into(),
            kind: "qkd encrypted",
        }
        .into());
    }
    let h = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes")) as usize;
    if data.len() < 12 + h + TAG {
        return Err(FormatError::Truncated {
            path: path.to_path_buf(),
            offset: 12,
            what: "header, ciphertext and tag",
            needed: (h + TAG) as u64,
            available: (data.len() - 12) as u64,
        }
        .into());
    }
    let header: SealedHeader =
        serde_json::from_slice(&data[12..12 + h]).map_err(|e| FormatError::Metadata {
            path: path.to_path_buf(),
            offset: 12,
            message: e.to_string(),
        })?;
    let n = data.len() - 12 - h - if header.mode == Mode::Otp { TAG } else { 0 };
    let expect = header.bytes as usize
        + if header.mode == Mode::Aes256Gcm {
            TAG
        } else {
            0
        };
    if n != expect {
        return Err(FormatError::InvalidField {
            path: path.to_path_buf(),
            offset: 12,
            field: "bytes",
            message: format!("the header says {} bytes, the file holds {n}", header.bytes),
        }
        .into());
    }
    Ok((header, 12 + h))
}

/// Open a sealed file with `key`; fails (and returns nothing) if it was tampered with.
pub fn open(path: &Path, data: &[u8], key: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let (header, start) = read_header(path, data)?;
    let need = header.mode.key_bits(header.bytes).div_ceil(8) as usize;
    if key.len() < need {
        return Err(ConfigError::Mismatch(format!(
            "the keys give {} bytes, {need} are needed",
            key.len()
        ))
        .into());
    }
    let tampered = || -> Error {
        FormatError::Checksum {
            path: path.to_path_buf(),
            offset: (data.len() - TAG) as u64,
            what: "authentication tag (the file was modified, or the keys are not its keys)",
        }
        .into()
    };
    match header.mode {
        Mode::Otp => {
            let (h, rest) = key.split_at(16);
            let (s, pad) = rest.split_at(16);
            let end = data.len() - TAG;
            let tag = ghash_tag(h, s, &data[..start], &data[start..end]);
            use subtle::ConstantTimeEq;
            if !bool::from(tag.ct_eq(&data[end..])) {
                return Err(tampered());
            }
            Ok(Zeroizing::new(
                data[start..end]
                    .iter()
                    .zip(pad)
                    .map(|(c, k)| c ^ k)
                    .collect(),
            ))
        }
        Mode::Aes256Gcm => {
            use aes_gcm::aead::{Aead, KeyInit, Payload};
            let nonce = nonce_bytes(&header.nonce)?;
            let cipher = aes_gcm::Aes256Gcm::new_from_slice(&key[..32]).expect("32-byte key");
            cipher
                .decrypt(
                    (&nonce).into(),
                    Payload {
                        msg: &data[start..],
                        aad: &data[..start],
                    },
                )
                .map(Zeroizing::new)
                .map_err(|_| tampered())
        }
    }
}

fn decode_keys(c: &KeyContainer) -> Result<(Vec<String>, Zeroizing<Vec<u8>>)> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut ids = Vec::new();
    let mut bytes = Zeroizing::new(Vec::new());
    for k in &c.keys {
        let mut b = b64.decode(&k.key).map_err(|e| {
            Error::from(KeyStoreError::Unavailable(format!(
                "key {}: bad Base64: {e}",
                k.key_ID
            )))
        })?;
        bytes.extend_from_slice(&b);
        b.zeroize();
        ids.push(k.key_ID.clone());
    }
    Ok((ids, bytes))
}

fn kme_err(e: crate::kme::KmeError) -> Error {
    KeyStoreError::Unavailable(e.to_string()).into()
}

/// Encrypt `plaintext` for `slave` with keys from the master SAE's KME.
pub fn encrypt(
    client: &KmeClient,
    master: &str,
    slave: &str,
    mode: Mode,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let bits = mode.key_bits(plaintext.len() as u64);
    let status = client.status(slave)?.map_err(kme_err)?;
    let unit = u64::from(status.min_key_size.max(256));
    let units = bits.div_ceil(unit);
    let per_key = (u64::from(status.max_key_size) / unit).max(1);
    let max_units = per_key * u64::from(status.max_key_per_request.max(1)) * 64;
    if units > max_units {
        return Err(ConfigError::Mismatch(format!(
            "{} bytes need {} key bits in mode {mode:?}; at most {} are fetched for one file",
            plaintext.len(),
            bits,
            max_units * unit
        ))
        .into());
    }
    if units > status.stored_key_count {
        return Err(KeyStoreError::Unavailable(format!(
            "{} bytes need {bits} key bits in mode {mode:?}; the KME has {} keys of {unit} bits for {slave}: refusing (a one-time pad needs as many key bits as message bits)",
            plaintext.len(),
            status.stored_key_count
        ))
        .into());
    }
    let mut ids = Vec::new();
    let mut key = Zeroizing::new(Vec::new());
    let mut left = units;
    while left > 0 {
        let size_units = per_key.min(left);
        let number = (left / size_units).min(u64::from(status.max_key_per_request.max(1)));
        let c = client
            .enc_keys(slave, number as u32, (size_units * unit) as u32)?
            .map_err(kme_err)?;
        let (i, k) = decode_keys(&c)?;
        ids.extend(i);
        key.extend_from_slice(&k);
        left -= number * size_units;
    }
    let nonce = if mode == Mode::Aes256Gcm {
        let n: [u8; 12] = rand::random();
        n.iter().map(|b| format!("{b:02x}")).collect()
    } else {
        String::new()
    };
    let header = SealedHeader {
        mode,
        master_SAE_ID: master.to_string(),
        slave_SAE_ID: slave.to_string(),
        key_IDs: ids,
        key_bits_used: bits,
        bytes: plaintext.len() as u64,
        nonce,
    };
    seal(&header, &key, plaintext)
}

/// Decrypt a sealed file with keys from the slave SAE's KME (fetched by the header's key IDs;
/// `master` overrides the header's master SAE).
pub fn decrypt(
    client: &KmeClient,
    path: &Path,
    data: &[u8],
    master: Option<&str>,
) -> Result<Zeroizing<Vec<u8>>> {
    let (header, _) = read_header(path, data)?;
    let master = master.unwrap_or(&header.master_SAE_ID);
    let mut key = Zeroizing::new(Vec::new());
    for chunk in header.key_IDs.chunks(64) {
        let c = client.dec_keys(master, chunk)?.map_err(kme_err)?;
        let (ids, k) = decode_keys(&c)?;
        if ids != chunk {
            return Err(KeyStoreError::Unavailable(format!(
                "the KME answered keys {ids:?} for {chunk:?}"
            ))
            .into());
        }
        key.extend_from_slice(&k);
    }
    open(path, data, &key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(mode: Mode, n: usize) -> SealedHeader {
        SealedHeader {
            mode,
            master_SAE_ID: "a".into(),
            slave_SAE_ID: "b".into(),
            key_IDs: vec!["k".into()],
            key_bits_used: mode.key_bits(n as u64),
            bytes: n as u64,
            nonce: if mode == Mode::Otp {
                String::new()
            } else {
                "00112233445566778899aabb".into()
            },
        }
    }

    #[test]
    fn both_modes_round_trip_and_detect_tampering() {
        let p = Path::new("msg.qenc");
        let msg: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let key: Vec<u8> = (0..2000u32).map(|i| (i * 13 + 5) as u8).collect();
        for mode in [Mode::Otp, Mode::Aes256Gcm] {
            let h = header(mode, msg.len());
            let sealed = seal(&h, &key, &msg).unwrap();
            assert_eq!(&open(p, &sealed, &key).unwrap()[..], &msg[..]);
            assert_ne!(&sealed[sealed.len() - 1016..sealed.len() - 16], &msg[..]);
            for i in [20, sealed.len() / 2, sealed.len() - 1] {
                let mut bad = sealed.clone();
                bad[i] ^= 4;
                assert!(open(p, &bad, &key).is_err(), "{mode:?} byte {i}");
            }
            let mut wrong = key.clone();
            wrong[40] ^= 1;
            if mode == Mode::Otp {
                // A pad byte flipped changes the plaintext, which the tag does not cover…
                // …but the MAC keys do: flip one of those instead.
                wrong[40] ^= 1;
                wrong[3] ^= 1;
            } else {
                wrong[40] ^= 1;
                wrong[0] ^= 1;
            }
            assert!(open(p, &sealed, &wrong).is_err(), "{mode:?} wrong key");
        }
        // The one-time pad refuses a key shorter than the message.
        assert!(seal(&header(Mode::Otp, 1000), &key[..1000], &msg).is_err());
    }
}
