//! Cascade (original, batched) on BSC noise, both parties in one process over the in-memory
//! channel. Throughput = reconciled bits per second of wall time (both parties on 2 cores).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use qkd_distill::bits::BitVec;
use qkd_distill::classical::{ClassicalChannel, transport::in_memory};
use qkd_distill::error_correction::cascade::Cascade;
use qkd_distill::error_correction::{EcContext, Reconciler};
use qkd_distill::kernels::Kernels;
use qkd_distill::ledger::LeakageLedger;
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;

fn frames(n: usize, count: usize, q: f64, seed: u64) -> (Vec<BitVec>, Vec<BitVec>) {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let a: Vec<BitVec> = (0..count)
        .map(|_| BitVec::from_words((0..n.div_ceil(64)).map(|_| r.next_u64()).collect(), n))
        .collect();
    let b = a
        .iter()
        .map(|x| {
            let mut y = x.clone();
            for i in 0..n {
                if r.random_bool(q) {
                    y.flip(i);
                }
            }
            y
        })
        .collect();
    (a, b)
}

fn reconcile(a: &[BitVec], b: &mut [BitVec], q: f64) {
    let (ta, tb) = in_memory::pair();
    std::thread::scope(|s| {
        s.spawn(move || {
            let k = Kernels::detect();
            let mut ch = ClassicalChannel::new(Box::new(ta));
            let mut l = LeakageLedger::default();
            let mut rng = ChaCha20Rng::seed_from_u64(1);
            let mut ctx = EcContext {
                channel: &mut ch,
                ledger: &mut l,
                kernels: &k,
                qber_estimate: q,
                rng: &mut rng,
            };
            Cascade::default().reconcile_alice(&mut ctx, a).unwrap();
        });
        let k = Kernels::detect();
        let mut ch = ClassicalChannel::new(Box::new(tb));
        let mut l = LeakageLedger::default();
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let mut ctx = EcContext {
            channel: &mut ch,
            ledger: &mut l,
            kernels: &k,
            qber_estimate: q,
            rng: &mut rng,
        };
        Cascade::default().reconcile_bob(&mut ctx, b).unwrap();
    });
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("cascade_original");
    for &(n, count) in &[(10_000usize, 16usize), (1 << 16, 4)] {
        for &q in &[0.01, 0.02, 0.05] {
            let (a, b) = frames(n, count, q, 7);
            g.throughput(Throughput::Elements((n * count) as u64));
            g.bench_with_input(
                BenchmarkId::new(format!("n{n}"), format!("q{q}")),
                &q,
                |bench, &q| {
                    bench.iter_batched(
                        || b.clone(),
                        |mut b| reconcile(&a, &mut b, q),
                        criterion::BatchSize::LargeInput,
                    )
                },
            );
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
