//! Verification of reconciled frames with an ε-universal polynomial hash over GF(2^64)
//! (Wegman, Carter, J. Comput. Syst. Sci. 22, 265 (1981); the polynomial construction of
//! Bierbrauer, Johansson, Kabatianskii, Smeets, CRYPTO '93).
//!
//! For a frame of `d` 64-bit words (LSB-first packing, last word zero-padded) followed by its
//! bit length, the tag under key `k` is the Horner evaluation `acc ← (acc ⊕ w)·k` in
//! GF(2)\[z\]/(z^64 + z^4 + z^3 + z + 1). Two different frames of equal length collide for at
//! most `d + 1` of the 2^64 keys, so with `r` independent uniformly random keys per frame the
//! collision probability is at most ((d + 1)/2^64)^r. Alice draws fresh keys for every frame
//! after error correction and sends keys and tags; Bob compares. The number of keys per frame is
//! the smallest `r` with frames · ((d + 1)/2^64)^r ≤ ε_cor, so the block's keys are ε_cor-correct.
//! Tag bits go into the ledger and are subtracted from the key; keys are public randomness.

use crate::bits::BitVec;
use crate::kernels::Kernels;

/// Tag of `bits` under `key`.
pub fn tag(k: &Kernels, bits: &BitVec, key: u64) -> u64 {
    let acc = k.poly_hash(bits.words(), key, 0);
    k.poly_hash(&[bits.len() as u64], key, acc)
}

/// Keys (and 64-bit tags) per frame so that `frames` frames of at most `max_frame_bits` bits are
/// verified with total collision probability ≤ `eps_cor`.
pub fn keys_per_frame(frames: usize, max_frame_bits: usize, eps_cor: f64) -> usize {
    if frames == 0 {
        return 0;
    }
    let d = max_frame_bits.div_ceil(64) as f64 + 1.0;
    let per_key = 64.0 - d.log2(); // −log₂ of the per-key collision bound
    let need = (frames as f64).log2() - eps_cor.log2(); // −log₂(eps_cor / frames)
    (need / per_key).ceil().max(1.0) as usize
}

/// Collision-probability bound for the block with `r` keys per frame.
pub fn collision_bound(frames: usize, max_frame_bits: usize, r: usize) -> f64 {
    let d = max_frame_bits.div_ceil(64) as f64 + 1.0;
    frames as f64 * (d / 2f64.powi(64)).powi(r as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_separate_frames_and_lengths() {
        let k = Kernels::detect();
        let a = BitVec::from_bools(&[true, false, true]);
        let mut b = a.clone();
        b.flip(1);
        let key = 0x9e37_79b9_7f4a_7c15;
        assert_ne!(tag(&k, &a, key), tag(&k, &b, key));
        // Same words, different length: the length word separates them.
        let c = BitVec::from_bools(&[true, false, true, false]);
        assert_ne!(tag(&k, &a, key), tag(&k, &c, key));
        assert_eq!(tag(&k, &a, key), tag(&Kernels::portable(), &a, key));
    }

    #[test]
    fn key_count_meets_epsilon() {
        // 2^16-bit frames: d = 1025, per key ≈ 2^-54.
        assert_eq!(keys_per_frame(1, 1 << 16, 1e-15), 1);
        assert_eq!(keys_per_frame(100, 1 << 16, 1e-15), 2);
        assert_eq!(keys_per_frame(10, 1 << 16, 1e-30), 2);
        for (f, n, e) in [
            (1, 1 << 16, 1e-15),
            (100, 1 << 16, 1e-15),
            (40, 1 << 22, 1e-20),
        ] {
            let r = keys_per_frame(f, n, e);
            assert!(collision_bound(f, n, r) <= e);
            assert!(r == 1 || collision_bound(f, n, r - 1) > e);
        }
    }

    #[test]
    fn a_single_flip_is_caught_by_almost_every_key() {
        // Empirical check of universality on a small frame: no collisions among many keys.
        let k = Kernels::detect();
        let a = BitVec::from_words(
            vec![0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210, 0x55],
            150,
        );
        let mut b = a.clone();
        b.flip(149);
        let collisions = (1..20_000u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .filter(|&key| tag(&k, &a, key) == tag(&k, &b, key))
            .count();
        assert_eq!(collisions, 0);
    }
}
