//! The JSON data formats of ETSI GS QKD 014 V1.1.1 (§6), and of the KME-to-KME protocol of
//! this implementation (docs/keys.md). Field names are the specification's.

#![allow(non_snake_case)]

use crate::keystore::store::{ReleaseOutcome, ReserveOutcome, UnitRef};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroize;

/// `Status` (ETSI GS QKD 014 §6.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// KME ID of the KME answering.
    pub source_KME_ID: String,
    /// KME ID of the peer KME.
    pub target_KME_ID: String,
    /// SAE ID of the calling master SAE.
    pub master_SAE_ID: String,
    /// SAE ID of the slave SAE.
    pub slave_SAE_ID: String,
    /// Default key size in bits.
    pub key_size: u32,
    /// Keys of `key_size` bits available.
    pub stored_key_count: u64,
    /// Keys this KME can hold.
    pub max_key_count: u64,
    /// Largest `number` of a request.
    pub max_key_per_request: u32,
    /// Largest `size` in bits.
    pub max_key_size: u32,
    /// Smallest `size` in bits.
    pub min_key_size: u32,
    /// Additional slave SAEs a request may name (0: none supported).
    pub max_SAE_ID_count: u32,
    /// Extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_extension: Option<Value>,
}

/// `Key request` (§6.2), the body of POST `enc_keys`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRequest {
    /// Number of keys (default 1).
    #[serde(default)]
    pub number: Option<u32>,
    /// Size of each key in bits (default `key_size`).
    #[serde(default)]
    pub size: Option<u32>,
    /// More slave SAEs to share the keys with (not supported: must be absent or empty).
    #[serde(default)]
    pub additional_slave_SAE_IDs: Option<Vec<String>>,
    /// Extensions the KME must understand (none are: must be absent or empty).
    #[serde(default)]
    pub extension_mandatory: Option<Vec<Value>>,
    /// Extensions the KME may ignore.
    #[serde(default)]
    pub extension_optional: Option<Vec<Value>>,
}

/// One key of a `Key container` (§6.3).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyEntry {
    /// Key ID (a UUID).
    pub key_ID: String,
    /// Extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ID_extension: Option<Value>,
    /// The key, Base64 (RFC 4648).
    pub key: String,
    /// Extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_extension: Option<Value>,
}

impl Drop for KeyEntry {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyEntry({}, redacted)", self.key_ID)
    }
}

/// `Key container` (§6.3): the answer of `enc_keys` and `dec_keys`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyContainer {
    /// The keys.
    pub keys: Vec<KeyEntry>,
    /// Extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_container_extension: Option<Value>,
}

/// One key ID of a `Key IDs` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyIdEntry {
    /// Key ID.
    pub key_ID: String,
    /// Extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ID_extension: Option<Value>,
}

/// `Key IDs` (§6.4), the body of POST `dec_keys`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyIds {
    /// The key IDs.
    pub key_IDs: Vec<KeyIdEntry>,
    /// Extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_IDs_extension: Option<Value>,
}

/// `Error` (§6.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub message: String,
    /// Details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Vec<Value>>,
}

/// KME-to-KME: what a KME says about itself (`GET /kme/v1/info`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Its KME ID.
    pub kme_ID: String,
    /// The SAEs it serves.
    pub SAE_IDs: Vec<String>,
    /// Keys available in its store.
    pub stored_key_count: u64,
}

/// KME-to-KME: one grant of the master KME (key ID and its stored keys, no key bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerGrant {
    /// The delivered key's ID.
    pub key_ID: String,
    /// Its stored keys.
    pub units: Vec<UnitRef>,
}

/// KME-to-KME: `POST /kme/v1/reserve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReserveRequest {
    /// The master SAE (at the requesting KME).
    pub master_SAE_ID: String,
    /// The slave SAE (at the answering KME).
    pub slave_SAE_ID: String,
    /// The grants.
    pub keys: Vec<PeerGrant>,
}

/// KME-to-KME: the answer to a reservation.
pub type ReserveResponse = ReserveOutcome;

/// KME-to-KME: `POST /kme/v1/release`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseRequest {
    /// Key IDs whose reservations the master KME did not deliver.
    pub key_IDs: Vec<String>,
}

/// KME-to-KME: the answer to a release.
pub type ReleaseResponse = ReleaseOutcome;
