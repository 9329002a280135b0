//! Key delivery to applications: a key management entity (KME) serving the key store by
//! ETSI GS QKD 014 V1.1.1 over mutual TLS, coordinating with the peer KME of the link
//! (docs/keys.md), its client, and a throw-away PKI for tests and first steps.

pub mod api;
pub mod client;
pub mod load;
pub mod pki;
pub mod server;
pub mod tls;

pub use client::{KmeClient, KmeError};
pub use server::{KmeHandle, KmeOptions, KmeStats, start};
