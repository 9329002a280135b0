//! Every ISA path against the portable oracle.

use super::*;
use proptest::prelude::*;

fn words(len: usize) -> impl Strategy<Value = Vec<u64>> {
    proptest::collection::vec(any::<u64>(), len..=len)
}

fn pair() -> impl Strategy<Value = (Vec<u64>, Vec<u64>)> {
    (0usize..40).prop_flat_map(|n| (words(n), words(n)))
}

#[test]
fn portable_is_always_available_and_detect_respects_env_names() {
    assert_eq!(Kernels::portable().isa(), Isa::Portable);
    assert!(
        Kernels::available()
            .iter()
            .any(|k| k.isa() == Isa::Portable)
    );
    for isa in Isa::ALL {
        assert_eq!(Isa::parse(isa.name()), Some(isa));
    }
    assert_eq!(Isa::parse("bogus"), None);
}

#[test]
fn gf64_field_axioms_on_samples() {
    use portable::gf64_mul;
    let xs = [
        0u64,
        1,
        2,
        3,
        0x8000_0000_0000_0000,
        u64::MAX,
        0x1234_5678_9abc_def0,
    ];
    for &a in &xs {
        assert_eq!(gf64_mul(a, 1), a);
        assert_eq!(gf64_mul(a, 0), 0);
        for &b in &xs {
            assert_eq!(gf64_mul(a, b), gf64_mul(b, a));
            for &c in &xs {
                assert_eq!(gf64_mul(a, b ^ c), gf64_mul(a, b) ^ gf64_mul(a, c));
                assert_eq!(gf64_mul(gf64_mul(a, b), c), gf64_mul(a, gf64_mul(b, c)));
            }
        }
    }
    // z^63 · z = z^64 = z^4 + z^3 + z + 1.
    assert_eq!(gf64_mul(1 << 63, 2), 0b11011);
    // The multiplicative group has order 2^64 - 1: a^(2^64-1) = 1 for a != 0.
    let a = 0xdead_beef_0bad_f00du64;
    let (mut r, mut base, mut e) = (1u64, a, u64::MAX);
    while e > 0 {
        if e & 1 == 1 {
            r = gf64_mul(r, base);
        }
        base = gf64_mul(base, base);
        e >>= 1;
    }
    assert_eq!(r, 1);
}

fn naive_compact(src: &[u64], mask: &[u64]) -> Vec<bool> {
    let mut out = vec![];
    for (w, m) in src.iter().zip(mask) {
        for b in 0..64 {
            if (m >> b) & 1 == 1 {
                out.push((w >> b) & 1 == 1);
            }
        }
    }
    out
}

proptest! {
    #[test]
    fn compact_matches_naive_on_every_isa((src, mask) in pair(), start in 0usize..200, prefix in any::<u64>()) {
        let expect = naive_compact(&src, &mask);
        for k in Kernels::available() {
            let mut dst = vec![0u64; (start + expect.len()) / 64 + 2];
            // A prefix of arbitrary bits before `start` must be preserved.
            for b in 0..start {
                if (prefix >> (b % 64)) & 1 == 1 {
                    dst[b / 64] |= 1 << (b % 64);
                }
            }
            let before = dst.clone();
            let end = k.compact(&src, &mask, &mut dst, start);
            prop_assert_eq!(end, start + expect.len(), "isa {}", k.isa());
            for b in 0..start {
                prop_assert_eq!((dst[b / 64] >> (b % 64)) & 1, (before[b / 64] >> (b % 64)) & 1);
            }
            for (i, &e) in expect.iter().enumerate() {
                let p = start + i;
                prop_assert_eq!((dst[p / 64] >> (p % 64)) & 1 == 1, e, "isa {} bit {}", k.isa(), i);
            }
            for p in end..dst.len() * 64 {
                prop_assert_eq!((dst[p / 64] >> (p % 64)) & 1, 0, "isa {} dirty tail", k.isa());
            }
        }
    }

    #[test]
    fn expand_inverts_compact_on_every_isa((src, mask) in pair()) {
        let n = mask.iter().map(|m| m.count_ones() as usize).sum::<usize>();
        for k in Kernels::available() {
            let mut dst = vec![0u64; mask.len()];
            k.expand(&src, &mask, &mut dst);
            // Only masked positions are set, and compacting them gives back src's first n bits.
            for (d, m) in dst.iter().zip(&mask) {
                prop_assert_eq!(d & !m, 0);
            }
            let mut back = vec![0u64; n / 64 + 2];
            prop_assert_eq!(k.compact(&dst, &mask, &mut back, 0), n);
            for i in 0..n {
                prop_assert_eq!((back[i / 64] >> (i % 64)) & 1, (src[i / 64] >> (i % 64)) & 1, "isa {} bit {}", k.isa(), i);
            }
        }
    }

    #[test]
    fn popcounts_match_portable((a, b) in pair()) {
        let p = Kernels::portable();
        for k in Kernels::available() {
            prop_assert_eq!(k.popcount(&a), p.popcount(&a));
            prop_assert_eq!(k.xor_popcount(&a, &b), p.xor_popcount(&a, &b));
            prop_assert_eq!(k.and_popcount(&a, &b), p.and_popcount(&a, &b));
        }
    }

    #[test]
    fn poly_hash_matches_portable(a in proptest::collection::vec(any::<u64>(), 0..50), key in any::<u64>(), acc in any::<u64>()) {
        let p = Kernels::portable();
        for k in Kernels::available() {
            prop_assert_eq!(k.poly_hash(&a, key, acc), p.poly_hash(&a, key, acc));
        }
    }

    #[test]
    fn clmul_window_matches_bitwise_product(
        a in proptest::collection::vec(any::<u64>(), 0..12),
        b in proptest::collection::vec(any::<u64>(), 0..12),
        lo in 0usize..26, len in 0usize..26,
    ) {
        // Bit-by-bit reference of the full product.
        let mut full = vec![0u64; a.len() + b.len() + 1];
        for i in 0..a.len() * 64 {
            if (a[i / 64] >> (i % 64)) & 1 == 1 {
                for j in 0..b.len() * 64 {
                    if (b[j / 64] >> (j % 64)) & 1 == 1 {
                        full[(i + j) / 64] ^= 1 << ((i + j) % 64);
                    }
                }
            }
        }
        for k in Kernels::available() {
            let mut out = vec![0xffff_ffffu64; len];
            k.clmul_window(&a, &b, &mut out, lo);
            for (w, &o) in out.iter().enumerate() {
                let expect = full.get(lo + w).copied().unwrap_or(0);
                prop_assert_eq!(o, expect, "isa {} word {}", k.isa(), lo + w);
            }
        }
    }
}

/// Rabin's irreducibility test for f = z^64 + z^4 + z^3 + z + 1: f is irreducible over GF(2)
/// iff z^(2^64) ≡ z (mod f) and gcd(z^(2^32) − z, f) = 1 (64 has the single prime factor 2).
/// Irreducibility is what makes the verification hash ε-universal.
#[test]
fn gf64_modulus_is_irreducible() {
    use portable::gf64_mul;
    let z = 2u64;
    let mut x = z;
    let mut at32 = 0;
    for i in 1..=64 {
        x = gf64_mul(x, x);
        if i == 32 {
            at32 = x;
        }
    }
    assert_eq!(x, z, "z^(2^64) != z mod f");
    // gcd over GF(2)[z] with u128 polynomials.
    fn deg(p: u128) -> i32 {
        127 - p.leading_zeros() as i32
    }
    let (mut a, mut b) = ((1u128 << 64) | 0b11011, u128::from(at32 ^ z));
    while b != 0 {
        while deg(a) >= deg(b) && a != 0 {
            a ^= b << (deg(a) - deg(b));
        }
        std::mem::swap(&mut a, &mut b);
    }
    assert_eq!(a, 1, "gcd(z^(2^32) - z, f) != 1");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Additive-FFT kernels of every ISA against the portable loops: butterflies (with tails
    /// shorter than a vector), whole chunks (including the in-register bottom layers),
    /// pointwise products and XOR.
    #[test]
    fn gf2x_kernels_match_portable_on_every_isa(
        len_log in 1u32..8,
        tail in 0usize..9,
        seed in any::<u64>(),
    ) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let len = 1usize << len_log;
        let data: Vec<u64> = (0..len).map(|_| rng.next_u64()).collect();
        let tw: Vec<u64> = (0..len / 2).map(|_| rng.next_u64()).collect();
        let base: Vec<u64> = (0..len_log).map(|_| rng.next_u64()).collect();
        let lo: Vec<u64> = (0..8 + tail).map(|_| rng.next_u64()).collect();
        let hi: Vec<u64> = (0..8 + tail).map(|_| rng.next_u64()).collect();
        let c = rng.next_u64();
        let p = Kernels::portable();
        let run = |k: &Kernels| {
            let mut out = Vec::new();
            let (mut l, mut h) = (lo.clone(), hi.clone());
            k.afft_butterfly_forward(&mut l, &mut h, c);
            out.push(l.clone());
            out.push(h.clone());
            k.afft_butterfly_inverse(&mut l, &mut h, c);
            out.push(l.clone());
            let mut d = data.clone();
            k.afft_chunk_forward(&mut d, &tw, &base);
            out.push(d.clone());
            k.afft_chunk_inverse(&mut d, &tw, &base);
            out.push(d.clone());
            let mut m = lo.clone();
            k.gf64_mul_slice(&mut m, &hi);
            out.push(m);
            let mut x = lo.clone();
            k.xor_slice(&mut x, &hi);
            out.push(x);
            out
        };
        let expect = run(&p);
        prop_assert_eq!(&expect[2], &lo, "inverse butterfly undoes forward");
        prop_assert_eq!(&expect[4], &data, "inverse chunk undoes forward");
        for k in Kernels::available() {
            prop_assert_eq!(&run(&k), &expect, "isa {}", k.isa());
        }
    }
}
