//! Sifting compaction, popcount and the verification hash on every available ISA; the portable
//! kernel is the same-run baseline.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use qkd_distill::kernels::Kernels;
use rand::{Rng, SeedableRng};
use std::hint::black_box;

fn data(words: usize, seed: u64) -> Vec<u64> {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..words).map(|_| r.next_u64()).collect()
}

fn bench(c: &mut Criterion) {
    let words = 1 << 16; // 4 Mbit per operand
    let src = data(words, 1);
    let mask = data(words, 2);
    let mut dst = vec![0u64; words + 2];
    let mut g = c.benchmark_group("sift_compact");
    g.throughput(Throughput::Elements((words * 64) as u64));
    for k in Kernels::available() {
        g.bench_function(k.isa().name(), |b| {
            b.iter(|| {
                dst.fill(0);
                black_box(k.compact(black_box(&src), black_box(&mask), &mut dst, 0))
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("xor_popcount");
    g.throughput(Throughput::Elements((words * 64) as u64));
    for k in Kernels::available() {
        g.bench_function(k.isa().name(), |b| {
            b.iter(|| black_box(k.xor_popcount(black_box(&src), black_box(&mask))))
        });
    }
    g.finish();
    let frame = data(1024, 3); // a 2^16-bit frame
    let mut g = c.benchmark_group("verification_hash");
    g.throughput(Throughput::Elements(1024 * 64));
    for k in Kernels::available() {
        g.bench_function(k.isa().name(), |b| {
            b.iter(|| black_box(k.poly_hash(black_box(&frame), 0x1234_5678_9abc_def1, 0)))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = bench
}
criterion_main!(benches);
