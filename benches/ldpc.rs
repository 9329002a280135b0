//! One LDPC frame decoded by the 8-bit layered decoder on every ISA, and by the floating-point
//! sum-product reference (the same-run baseline). Throughput = key bits per second.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use qkd_distill::bits::BitVec;
use qkd_distill::error_correction::ldpc::decoder::{channel_llr, sum_product};
use qkd_distill::error_correction::ldpc::{
    LdpcSettings, assemble, bob_llrs, decode, syndrome_words,
};
use qkd_distill::error_correction::simulation::bsc_frames;
use qkd_distill::kernels::Kernels;
use qkd_distill::kernels::ldpc::NmsScratch;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("ldpc_decode");
    for (n, q) in [(16384usize, 0.03), (102_400, 0.03)] {
        let settings = LdpcSettings {
            code_bits: n,
            efficiency: 1.25,
            ..LdpcSettings::default()
        };
        let plan = settings.plan(q).unwrap();
        let code = plan.code;
        let layout = code.pattern.layout(plan.punctured, plan.shortened);
        let (a, b, _) = bsc_frames(&[plan.key_bits], q, 3);
        let k = Kernels::detect();
        let sv = BitVec::zeros(plan.shortened);
        let pv = BitVec::zeros(plan.punctured);
        let x = assemble(&k, &layout, &a[0], &sv, &pv);
        let syn = syndrome_words(&code.layout, &x);
        let llrs = bob_llrs(
            &k,
            &layout,
            &b[0],
            &sv,
            qkd_distill::error_correction::ldpc::decoder::quantized_llr(q),
        );
        g.throughput(Throughput::Elements(plan.key_bits as u64));
        for kern in Kernels::available() {
            let mut s = NmsScratch::default();
            g.bench_with_input(
                BenchmarkId::new(format!("layered_i8_{}", kern.isa()), n),
                &n,
                |bch, _| {
                    bch.iter(|| {
                        black_box(decode(&kern, code, &llrs, &syn, settings.decoder, &mut s))
                    })
                },
            );
        }
        if n == 16384 {
            let h = code.code.expand();
            let l = channel_llr(q);
            let fl: Vec<f64> = llrs
                .iter()
                .map(|&v| {
                    if v == 0 {
                        0.0
                    } else if v.unsigned_abs() == 127 {
                        50.0f64.copysign(f64::from(v))
                    } else {
                        l.copysign(f64::from(v))
                    }
                })
                .collect();
            let s = BitVec::from_words(syn.clone(), code.code.m());
            g.bench_with_input(
                BenchmarkId::new("reference_f64_flooding", n),
                &n,
                |bch, _| bch.iter(|| black_box(sum_product(&h, &fl, &s, 60))),
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
