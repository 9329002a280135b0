//! Toeplitz hashing: naive O(n·m) baseline, direct carry-less window product, exact NTT,
//! exact additive FFT over GF(2^64) (with scratch reuse, and with the portable kernels as a
//! same-run baseline).
//! m = n/2 (a typical compression). Throughput = input bits per second.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use qkd_distill::bits::BitVec;
use qkd_distill::kernels::Kernels;
use qkd_distill::privacy_amplification::{
    ToeplitzAlgorithm, ToeplitzPlan, ToeplitzScratch, toeplitz_naive,
};
use rand::{Rng, SeedableRng};
use std::hint::black_box;

fn random(n: usize, seed: u64) -> BitVec {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    BitVec::from_words((0..n.div_ceil(64)).map(|_| r.next_u64()).collect(), n)
}

fn bench(c: &mut Criterion) {
    let k = Kernels::detect();
    let mut g = c.benchmark_group("toeplitz");
    for log in [12usize, 14, 16, 18, 20, 22, 24] {
        let n = 1usize << log;
        let m = n / 2;
        let x = random(n, 1);
        let s = random(n + m - 1, 2);
        g.throughput(Throughput::Elements(n as u64));
        if log <= 12 {
            g.bench_with_input(BenchmarkId::new("naive", n), &n, |b, _| {
                b.iter(|| black_box(toeplitz_naive(&s, &x, m)))
            });
        }
        if log <= 18 {
            let plan = ToeplitzPlan::with_algorithm(n, m, ToeplitzAlgorithm::Direct).unwrap();
            g.bench_with_input(BenchmarkId::new("direct", n), &n, |b, _| {
                b.iter(|| black_box(plan.hash(&k, &s, &x)))
            });
        }
        {
            let plan = ToeplitzPlan::with_algorithm(n, m, ToeplitzAlgorithm::AdditiveFft).unwrap();
            let mut scratch = ToeplitzScratch::new();
            g.bench_with_input(BenchmarkId::new("additive_fft", n), &n, |b, _| {
                b.iter(|| black_box(plan.hash_with(&k, &s, &x, &mut scratch)))
            });
            if log == 20 {
                let p = Kernels::portable();
                g.bench_with_input(BenchmarkId::new("additive_fft_portable", n), &n, |b, _| {
                    b.iter(|| black_box(plan.hash_with(&p, &s, &x, &mut scratch)))
                });
            }
        }
        if (14..=22).contains(&log) {
            let plan = ToeplitzPlan::with_algorithm(n, m, ToeplitzAlgorithm::Ntt).unwrap();
            g.bench_with_input(BenchmarkId::new("ntt", n), &n, |b, _| {
                b.iter(|| black_box(plan.hash(&k, &s, &x)))
            });
            if log == 20 {
                // Same-run baseline: the portable (not explicitly vectorised) NTT butterflies.
                let p = Kernels::portable();
                g.bench_with_input(BenchmarkId::new("ntt_portable", n), &n, |b, _| {
                    b.iter(|| black_box(plan.hash(&p, &s, &x)))
                });
            }
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_millis(500));
    targets = bench
}
criterion_main!(benches);
