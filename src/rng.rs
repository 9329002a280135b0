//! Protocol randomness: ChaCha20 seeded from the operating system's CSPRNG (`getrandom`), one
//! independent generator per stage and worker. For reproducible tests a deterministic seed can
//! be given instead; reports flag such runs, which are not secure.

use crate::error::{Error, Result};
use crate::protocol::Role;
use rand::{SeedableRng, TryRng};
use rand_chacha::ChaCha20Rng;

/// A generator for `role`'s stage `stream`.
pub fn protocol_rng(deterministic: Option<u64>, role: Role, stream: u64) -> Result<ChaCha20Rng> {
    match deterministic {
        Some(seed) => {
            let mut h = blake3::Hasher::new();
            h.update(b"qkd-distill deterministic protocol rng v1");
            h.update(&seed.to_le_bytes());
            h.update(role.name().as_bytes());
            h.update(&stream.to_le_bytes());
            Ok(ChaCha20Rng::from_seed(*h.finalize().as_bytes()))
        }
        None => {
            let mut seed = [0u8; 32];
            rand::rngs::SysRng
                .try_fill_bytes(&mut seed)
                .map_err(|e| Error::io("OS random source", std::io::Error::other(e.to_string())))?;
            let rng = ChaCha20Rng::from_seed(seed);
            zeroize::Zeroize::zeroize(&mut seed);
            Ok(rng)
        }
    }
}
