//! Protocol randomness: ChaCha20 seeded from the operating system's CSPRNG (`getrandom`), one
//! independent generator per stage and worker, for every protocol (sampling positions, hash
//! keys, Cascade permutations, Toeplitz seeds, confirmation keys). A failure of the OS random
//! source is an error, never a fixed or zero seed. For reproducible tests a deterministic seed
//! can be given instead; every report then withdraws ε and says the key is not secure.

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
        None => seeded_from(&mut rand::rngs::SysRng),
    }
}

/// A ChaCha20 generator seeded with 32 bytes of `source`; its failure is an error.
pub fn seeded_from<R: TryRng>(source: &mut R) -> Result<ChaCha20Rng>
where
    R::Error: std::fmt::Display,
{
    let mut seed = [0u8; 32];
    source.try_fill_bytes(&mut seed).map_err(|e| {
        Error::io(
            "OS random source",
            std::io::Error::other(format!(
                "cannot seed the protocol randomness: {e} (no key can be produced without it)"
            )),
        )
    })?;
    let rng = ChaCha20Rng::from_seed(seed);
    zeroize::Zeroize::zeroize(&mut seed);
    Ok(rng)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A random source that always fails.
    struct Broken;

    impl TryRng for Broken {
        type Error = std::io::Error;
        fn try_next_u32(&mut self) -> std::result::Result<u32, Self::Error> {
            Err(std::io::Error::other("entropy pool unavailable"))
        }
        fn try_next_u64(&mut self) -> std::result::Result<u64, Self::Error> {
            Err(std::io::Error::other("entropy pool unavailable"))
        }
        fn try_fill_bytes(&mut self, _: &mut [u8]) -> std::result::Result<(), Self::Error> {
            Err(std::io::Error::other("entropy pool unavailable"))
        }
    }

    #[test]
    fn a_failing_random_source_is_an_error() {
        let e = seeded_from(&mut Broken).unwrap_err().to_string();
        assert!(
            e.contains("OS random source") && e.contains("entropy pool unavailable"),
            "{e}"
        );
        // The OS source works here, and two generators differ.
        use rand::Rng;
        let (mut a, mut b) = (
            protocol_rng(None, Role::Alice, 1).unwrap(),
            protocol_rng(None, Role::Alice, 1).unwrap(),
        );
        assert_ne!(a.next_u64(), b.next_u64());
    }
}
