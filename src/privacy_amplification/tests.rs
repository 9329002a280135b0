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
        for alg in [ToeplitzAlgorithm::Direct, ToeplitzAlgorithm::Ntt] {
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
    /// Direct and NTT equal the naive product at lengths around word boundaries.
    #[test]
    fn fast_paths_match_naive(n in 1usize..300, m_frac in 0.0f64..=1.0, seed in any::<u64>()) {
        let m = ((n as f64 * m_frac) as usize).clamp(1, n);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let x = random(&mut rng, n);
        let s = random(&mut rng, n + m - 1);
        let expect = toeplitz_naive(&s, &x, m);
        for k in Kernels::available() {
            prop_assert_eq!(&ToeplitzPlan::with_algorithm(n, m, ToeplitzAlgorithm::Direct).unwrap().hash(&k, &s, &x), &expect);
        }
        prop_assert_eq!(ToeplitzPlan::with_algorithm(n, m, ToeplitzAlgorithm::Ntt).unwrap().hash(&Kernels::portable(), &s, &x), expect);
    }
}

#[test]
fn boundary_sizes_direct_vs_ntt() {
    let k = Kernels::detect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    for &n in &[1usize, 63, 64, 65, 127, 128, 129, 4095, 4096, 4097, 20_000] {
        for &m in &[1usize, n / 2 + 1, n] {
            let m = m.clamp(1, n);
            let x = random(&mut rng, n);
            let s = random(&mut rng, n + m - 1);
            let d = ToeplitzPlan::with_algorithm(n, m, ToeplitzAlgorithm::Direct)
                .unwrap()
                .hash(&k, &s, &x);
            let t = ToeplitzPlan::with_algorithm(n, m, ToeplitzAlgorithm::Ntt)
                .unwrap()
                .hash(&k, &s, &x);
            assert_eq!(d, t, "n={n} m={m}");
        }
    }
}

#[test]
fn large_block_ntt_matches_direct_on_sampled_bits() {
    // 2^20 input bits: NTT output compared with the naive formula on sampled output bits.
    let (n, m) = (1usize << 20, 1usize << 19);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
    let x = random(&mut rng, n);
    let s = random(&mut rng, n + m - 1);
    let plan = ToeplitzPlan::new(n, m).unwrap();
    assert_eq!(plan.algorithm(), ToeplitzAlgorithm::Ntt);
    let y = plan.hash(&Kernels::detect(), &s, &x);
    for _ in 0..24 {
        let i = rng.random_range(0..m);
        let mut acc = false;
        for j in 0..n {
            acc ^= s.get(i + n - 1 - j) & x.get(j);
        }
        assert_eq!(y.get(i), acc, "bit {i}");
    }
}

#[test]
fn plan_rejects_bad_sizes() {
    assert!(ToeplitzPlan::new(0, 1).is_err());
    assert!(ToeplitzPlan::new(10, 0).is_err());
    assert!(ToeplitzPlan::new(10, 11).is_err());
    assert!(ToeplitzPlan::with_algorithm(1 << 27, 2, ToeplitzAlgorithm::Ntt).is_err());
}
