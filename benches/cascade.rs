//! Cascade variants on BSC noise, both parties in one process over the in-memory channel
//! (two threads). Throughput = reconciled bits per second of wall time.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use qkd_distill::error_correction::cascade::{Cascade, CascadeVariant};
use qkd_distill::error_correction::simulation::{bsc_frames, run_pair};
use qkd_distill::kernels::Kernels;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("cascade");
    let frames = 64;
    for (variant, n) in [
        (CascadeVariant::Original, 10_000usize),
        (CascadeVariant::Biconf, 10_000),
        (CascadeVariant::Opt7, 1 << 16),
    ] {
        for &q in &[0.01, 0.02, 0.05] {
            let (a, b, _) = bsc_frames(&vec![n; frames], q, 7);
            g.throughput(Throughput::Elements((n * frames) as u64));
            g.bench_with_input(
                BenchmarkId::new(format!("{}_n{n}", variant.name()), format!("q{q}")),
                &q,
                |bench, &q| {
                    bench.iter_batched(
                        || b.clone(),
                        |mut b| {
                            let mk = || {
                                Box::new(Cascade {
                                    variant,
                                    frame_bits: n,
                                })
                                    as Box<dyn qkd_distill::error_correction::Reconciler>
                            };
                            run_pair(mk(), mk(), &a, &mut b, q, Kernels::detect()).unwrap()
                        },
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
