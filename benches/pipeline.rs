//! The whole batch pipeline: distill a simulated 25 km run of 2·10^7 pulses (both parties,
//! all stages). Throughput = pulses per second.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use qkd_distill::config::DistillSettings;
use qkd_distill::engine::{DistillOptions, distill};
use qkd_distill::kernels::Kernels;
use qkd_distill::progress::NoProgress;
use qkd_distill::sim::link::LinkParams;
use qkd_distill::sim::simulate_decoy_bb84;
use std::sync::Arc;

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("qkd-bench-pipeline-{}", std::process::id()));
    let pulses = 20_000_000u64;
    let sim = simulate_decoy_bb84(
        &LinkParams {
            distance_km: 5.0,
            ..Default::default()
        },
        pulses,
        1,
        &dir,
        true,
        &NoProgress,
    )
    .unwrap();
    let opts = DistillOptions {
        settings: DistillSettings {
            block_bits: 1 << 19,
            ..Default::default()
        },
        out_dir: dir.join("keys"),
        overwrite: true,
        deterministic_seed: None,
        kernels: Kernels::detect(),
        frame_tap: None,
        sync: Default::default(),
        store: None,
        report: None,
    };
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(pulses));
    g.bench_function("distill_5km_2e7_pulses", |b| {
        b.iter(|| {
            distill(
                &sim.files.alice,
                &sim.files.bob,
                &opts,
                Arc::new(NoProgress),
            )
            .unwrap()
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(5)).warm_up_time(std::time::Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
