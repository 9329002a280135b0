use super::*;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

fn bits(v: &[u8]) -> BitVec {
    BitVec::from_bools(&v.iter().map(|&b| b == 1).collect::<Vec<_>>())
}

/// Convert a seed in the convention of CQCL/cryptomite (T_ij = y[i−j] for i ≥ j,
/// y[m+n−1−(j−i)] for i < j) to ours (T_ij = s[i−j+n−1]).
fn from_cryptomite(y: &[u8], n: usize, m: usize) -> BitVec {
    let s: Vec<u8> = (0..n + m - 1)
        .map(|k| if k >= n - 1 { y[k - (n - 1)] } else { y[m + k] })
        .collect();
    bits(&s)
}

#[test]
fn published_test_vectors() {
    // Vectors from CQCL/cryptomite test/test_toeplitz.py, re-derived independently in
    // reference/literature.md §6.2 (used as data).
    type Case<'a> = (usize, usize, &'a [u8], &'a [u8], &'a [u8]);
    let cases: [Case; 3] = [
        (3, 2, &[1, 0, 0], &[1, 1, 1, 1], &[1, 1]),
        (
            6,
            4,
            &[1, 1, 0, 0, 0, 1],
            &[1, 1, 0, 1, 0, 1, 0, 0, 1],
            &[0, 1, 1, 1],
        ),
        (
            9,
            9,
            &[0, 1, 0, 0, 1, 1, 1, 1, 1],
            &[0, 1, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 1, 1],
            &[0, 0, 1, 0, 0, 1, 0, 1, 1],
        ),
    ];
    let k = Kernels::detect();
    for (n, m, x, y, z) in cases {
        let seed = from_cryptomite(y, n, m);
        let x = bits(x);
        assert_eq!(toeplitz_naive(&seed, &x, m), bits(z), "naive n={n} m={m}");
        for alg in [
            ToeplitzAlgorithm::Direct,
            ToeplitzAlgorithm::Ntt,
            ToeplitzAlgorithm::AdditiveFft,
        ] {
            let plan = ToeplitzPlan::with_algorithm(n, m, alg).unwrap();
            assert_eq!(plan.hash(&k, &seed, &x), bits(z), "{alg:?} n={n} m={m}");
        }
    }
}

fn random(rng: &mut impl Rng, n: usize) -> BitVec {
    BitVec::from_words((0..n.div_ceil(64)).map(|_| rng.next_u64()).collect(), n)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Every fast path equals the naive product at lengths around word boundaries.
    #[test]
    fn fast_paths_match_naive(n in 1usize..300, m_frac in 0.0f64..=1.0, seed in any::<u64>()) {
        let m = ((n as f64 * m_frac) as usize).clamp(1, n);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let x = random(&mut rng, n);
        let s = random(&mut rng, n + m - 1);
        let expect = toeplitz_naive(&s, &x, m);
        for k in Kernels::available() {
            for alg in [ToeplitzAlgorithm::Direct, ToeplitzAlgorithm::AdditiveFft] {
                let plan = ToeplitzPlan::with_algorithm(n, m, alg).unwrap();
                prop_assert_eq!(&plan.hash(&k, &s, &x), &expect, "{:?} {:?}", k, alg);
            }
        }
        prop_assert_eq!(ToeplitzPlan::with_algorithm(n, m, ToeplitzAlgorithm::Ntt).unwrap().hash(&Kernels::portable(), &s, &x), expect);
    }
}

/// Lengths around every switch: word and piece boundaries, the direct/FFT threshold
/// (`DIRECT_MAX_CLMULS`: n = m ≈ 4 100; n = 2m ≈ 6 700), and the transform-size steps of the additive FFT
/// (2^ℓ elements of 32 bits, with and without wrap-around).
#[test]
fn all_algorithms_agree_at_switch_sizes() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let mut sizes: Vec<(usize, usize)> = Vec::new();
    for &n in &[
        1usize, 31, 32, 33, 63, 64, 65, 127, 128, 129, 4095, 4096, 4097, 20_000,
    ] {
        for m in [1usize, n / 2 + 1, n] {
            sizes.push((n, m.clamp(1, n)));
        }
    }
    for n in [4_000usize, 4_100, 4_200, 6_600, 6_700, 6_800] {
        sizes.push((n, n));
        sizes.push((n, n / 2));
    }
    // Transform steps: a_len + b_len − 1 around 2^ℓ elements (ℓ = 9…14).
    for l in 9..=14u32 {
        let elems = 1usize << l;
        for delta in [-2isize, 0, 2] {
            let n = ((elems as isize + delta) as usize) * 32 / 2;
            sizes.push((n, n / 2));
            sizes.push((n, n - 1));
        }
    }
    let direct_vs = |k: &Kernels, n: usize, m: usize, rng: &mut rand_chacha::ChaCha8Rng| {
        let x = random(rng, n);
        let s = random(rng, n + m - 1);
        let d = ToeplitzPlan::with_algorithm(n, m, ToeplitzAlgorithm::Direct)
            .unwrap()
            .hash(k, &s, &x);
        for alg in [ToeplitzAlgorithm::AdditiveFft, ToeplitzAlgorithm::Ntt] {
            let plan = ToeplitzPlan::with_algorithm(n, m, alg).unwrap();
            assert_eq!(plan.hash(k, &s, &x), d, "{k:?} {alg:?} n={n} m={m}");
        }
        assert_eq!(ToeplitzPlan::new(n, m).unwrap().hash(k, &s, &x), d);
    };
    let k = Kernels::detect();
    for &(n, m) in &sizes {
        direct_vs(&k, n, m, &mut rng);
    }
    // The other ISA levels on a few of them.
    for k in Kernels::available() {
        for &(n, m) in sizes.iter().step_by(7) {
            direct_vs(&k, n, m, &mut rng);
        }
    }
    // The automatic choice switches from direct to the transform.
    assert_eq!(
        ToeplitzPlan::new(4096, 2048).unwrap().algorithm(),
        ToeplitzAlgorithm::Direct
    );
    assert_eq!(
        ToeplitzPlan::new(1 << 16, 1 << 15).unwrap().algorithm(),
        ToeplitzAlgorithm::AdditiveFft
    );
}

/// `y[i]` by the definition, with O(n/64) word operations: `x` reversed, ANDed with the
/// seed window `s[i .. i + n)`.
fn reference_bit(k: &Kernels, s: &BitVec, x_rev: &BitVec, i: usize) -> bool {
    let n = x_rev.len();
    let window = s.slice(i, i + n);
    k.and_popcount(window.words(), x_rev.words()) & 1 == 1
}

fn reversed(x: &BitVec) -> BitVec {
    let n = x.len();
    let mut r = BitVec::zeros(n);
    for j in 0..n {
        if x.get(j) {
            r.set(n - 1 - j, true);
        }
    }
    r
}

#[test]
fn block_of_2_pow_24_matches_the_definition_on_sampled_bits() {
    // The default algorithm at n = 2^24 (a 2^20-element transform, past the in-cache chunk
    // size, so every whole-array pass runs), against the definition on sampled output bits.
    let (n, m) = (1usize << 24, 1usize << 23);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
    let x = random(&mut rng, n);
    let s = random(&mut rng, n + m - 1);
    let plan = ToeplitzPlan::new(n, m).unwrap();
    assert_eq!(plan.algorithm(), ToeplitzAlgorithm::AdditiveFft);
    let k = Kernels::detect();
    let y = plan.hash(&k, &s, &x);
    let x_rev = reversed(&x);
    let mut samples: Vec<usize> = vec![0, 1, 63, 64, m / 2, m - 2, m - 1];
    samples.extend((0..40).map(|_| rng.random_range(0..m)));
    for i in samples {
        assert_eq!(y.get(i), reference_bit(&k, &s, &x_rev, i), "bit {i}");
    }
}

#[test]
fn large_block_ntt_matches_the_definition_on_sampled_bits() {
    let (n, m) = (1usize << 20, 1usize << 19);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(13);
    let x = random(&mut rng, n);
    let s = random(&mut rng, n + m - 1);
    let k = Kernels::detect();
    let plan = ToeplitzPlan::with_algorithm(n, m, ToeplitzAlgorithm::Ntt).unwrap();
    let y = plan.hash(&k, &s, &x);
    let x_rev = reversed(&x);
    for _ in 0..24 {
        let i = rng.random_range(0..m);
        assert_eq!(y.get(i), reference_bit(&k, &s, &x_rev, i), "bit {i}");
    }
}

#[test]
fn scratch_reuse_and_prepared_seeds_give_the_same_hash() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(14);
    let k = Kernels::detect();
    let mut scratch = ToeplitzScratch::new();
    for &(n, m) in &[
        (200_000usize, 90_000usize),
        (70_000, 70_000),
        (200_000, 90_000),
    ] {
        let plan = ToeplitzPlan::with_algorithm(n, m, ToeplitzAlgorithm::AdditiveFft).unwrap();
        let s = random(&mut rng, n + m - 1);
        let prepared = plan.prepare_seed(&k, &s).unwrap();
        for _ in 0..2 {
            let x = random(&mut rng, n);
            let fresh = plan.hash(&k, &s, &x);
            assert_eq!(plan.hash_with(&k, &s, &x, &mut scratch), fresh);
            assert_eq!(plan.hash_prepared(&k, &prepared, &x, &mut scratch), fresh);
        }
        assert!(scratch.bytes() > 0);
    }
    // Direct plans have nothing to prepare.
    let plan = ToeplitzPlan::with_algorithm(100, 50, ToeplitzAlgorithm::Direct).unwrap();
    assert!(plan.prepare_seed(&k, &random(&mut rng, 149)).is_none());
}

#[test]
fn plan_rejects_bad_sizes() {
    assert!(ToeplitzPlan::new(0, 1).is_err());
    assert!(ToeplitzPlan::new(10, 0).is_err());
    assert!(ToeplitzPlan::new(10, 11).is_err());
    assert!(ToeplitzPlan::with_algorithm(1 << 27, 2, ToeplitzAlgorithm::Ntt).is_err());
    assert!(ToeplitzPlan::new((1 << 30) + 1, 2).is_err());
    // The additive FFT covers 2^27 (a 2^23- or 2^24-element transform).
    let p = ToeplitzPlan::new(1 << 27, 1 << 26).unwrap();
    assert_eq!(p.algorithm(), ToeplitzAlgorithm::AdditiveFft);
    assert!(p.transform_log_len().unwrap() <= 24);
}

#[test]
fn algorithm_names_round_trip() {
    for a in [
        ToeplitzAlgorithm::Direct,
        ToeplitzAlgorithm::Ntt,
        ToeplitzAlgorithm::AdditiveFft,
    ] {
        assert_eq!(ToeplitzAlgorithm::parse(a.name()), Some(a));
    }
    assert_eq!(
        ToeplitzAlgorithm::parse("afft"),
        Some(ToeplitzAlgorithm::AdditiveFft)
    );
    assert_eq!(ToeplitzAlgorithm::parse("fast"), None);
}
