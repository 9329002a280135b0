//! `qkd bench pa`: Toeplitz privacy amplification throughput per block size and algorithm,
//! with baselines measured in the same run.

use super::output::{TermProgress, rate, thousands, write_json};
use clap::Args;
use qkd_distill::bits::BitVec;
use qkd_distill::error::{ConfigError, Result};
use qkd_distill::kernels::Kernels;
use qkd_distill::privacy_amplification::{ToeplitzAlgorithm, ToeplitzPlan, ToeplitzScratch};
use qkd_distill::progress::Progress;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct PaArgs {
    /// Input block sizes n in bits.
    #[arg(long, value_delimiter = ',', default_values_t = [1_048_576usize, 16_777_216, 134_217_728])]
    pub input_bits: Vec<usize>,
    /// Output length as a fraction of the input (m = ratio·n).
    #[arg(long, default_value_t = 0.5)]
    pub output_ratio: f64,
    /// auto (the plan's choice), direct, ntt, additive-fft, or all.
    #[arg(long, default_value = "auto")]
    pub algorithm: String,
    /// Thread counts to measure (default: 1 and all cores).
    #[arg(long, value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Timed repetitions per row (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Also time hashing with a seed transformed once (weakens the security statement; see
    /// the privacy_amplification module notes).
    #[arg(long)]
    pub reuse_seed: bool,
    /// Skip the baselines (NTT at every size it supports, direct at 2^20).
    #[arg(long)]
    pub no_baseline: bool,
    /// Write the rows as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Replace an existing --json file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Serialize, Clone)]
struct Row {
    input_bits: usize,
    output_bits: usize,
    algorithm: String,
    /// `true` for rows timed to compare against (not the engine's choice).
    baseline: bool,
    seed_reuse: bool,
    threads: usize,
    transform_log_len: Option<u32>,
    seconds_median: f64,
    seconds_min: f64,
    throughput_bps: f64,
    throughput_per_thread_bps: f64,
    isa: String,
}

#[derive(Serialize)]
struct Report {
    rows: Vec<Row>,
    /// Speed-up of the engine's choice over the NTT baseline at the same size and threads.
    speedup_vs_ntt: Vec<(usize, usize, f64)>,
    cpus: usize,
}

fn random_bits(rng: &mut impl Rng, n: usize) -> BitVec {
    BitVec::from_words((0..n.div_ceil(64)).map(|_| rng.next_u64()).collect(), n)
}

pub fn pa(a: PaArgs) -> Result<u8> {
    if !(a.output_ratio > 0.0 && a.output_ratio <= 1.0) || a.reps == 0 {
        return Err(
            ConfigError::invalid("output-ratio/reps", "need 0 < ratio ≤ 1, reps ≥ 1").into(),
        );
    }
    if let Some(&n) = a
        .input_bits
        .iter()
        .find(|&&n| n < 2 || ((n as f64 * a.output_ratio) as usize) < 1)
    {
        return Err(ConfigError::invalid(
            "input-bits",
            format!(
                "{n}: every input size needs at least 2 bits and an output of at least 1 bit (output ratio {})",
                a.output_ratio
            ),
        )
        .into());
    }
    if a.threads.contains(&0) {
        return Err(ConfigError::invalid("threads", "thread counts must be ≥ 1").into());
    }
    qkd_distill::io::OutputPlan::new(a.force)
        .output_opt(a.json.as_deref(), "--json")
        .check()?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if a.threads.is_empty() {
        let mut t = vec![1, cpus];
        t.dedup();
        t
    } else {
        a.threads.clone()
    };
    let choice: Vec<Option<ToeplitzAlgorithm>> = match a.algorithm.as_str() {
        "auto" => vec![None],
        "all" => vec![
            Some(ToeplitzAlgorithm::Direct),
            Some(ToeplitzAlgorithm::Ntt),
            Some(ToeplitzAlgorithm::AdditiveFft),
        ],
        other => vec![Some(ToeplitzAlgorithm::parse(other).ok_or_else(|| {
            ConfigError::invalid("algorithm", format!("unknown algorithm {other:?}"))
        })?)],
    };
    // (n, algorithm, baseline?, reuse?)
    let mut jobs: Vec<(usize, Option<ToeplitzAlgorithm>, bool, bool)> = Vec::new();
    for &n in &a.input_bits {
        for &c in &choice {
            jobs.push((n, c, false, false));
            if a.reuse_seed {
                jobs.push((n, c, false, true));
            }
        }
        let m = ((n as f64 * a.output_ratio) as usize).max(1);
        if !a.no_baseline && n + m - 1 <= 1 << 27 && !choice.contains(&Some(ToeplitzAlgorithm::Ntt))
        {
            jobs.push((n, Some(ToeplitzAlgorithm::Ntt), true, false));
        }
    }
    if !a.no_baseline && !choice.contains(&Some(ToeplitzAlgorithm::Direct)) {
        jobs.push((1 << 20, Some(ToeplitzAlgorithm::Direct), true, false));
    }
    let kernels = Kernels::detect();
    let bar = TermProgress::new(false);
    bar.start("bench pa", (jobs.len() * threads.len()) as u64);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut rows = Vec::new();
    for &(n, alg, baseline, reuse) in &jobs {
        let m = ((n as f64 * a.output_ratio) as usize).clamp(1, n);
        let plan = match alg {
            None => ToeplitzPlan::new(n, m)?,
            Some(alg) => ToeplitzPlan::with_algorithm(n, m, alg)?,
        };
        if reuse && plan.algorithm() != ToeplitzAlgorithm::AdditiveFft {
            bar.inc(threads.len() as u64);
            continue;
        }
        let x = random_bits(&mut rng, n);
        let seed = random_bits(&mut rng, n + m - 1);
        for &t in &threads {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .map_err(|e| ConfigError::invalid("threads", e.to_string()))?;
            let mut scratch = ToeplitzScratch::new();
            let prepared = if reuse {
                pool.install(|| plan.prepare_seed(&kernels, &seed))
            } else {
                None
            };
            let mut times = Vec::with_capacity(a.reps);
            // One untimed run warms the scratch buffers and the page tables.
            for rep in 0..=a.reps {
                let t0 = Instant::now();
                let y = pool.install(|| match &prepared {
                    Some(p) => plan.hash_prepared(&kernels, p, &x, &mut scratch),
                    None => plan.hash_with(&kernels, &seed, &x, &mut scratch),
                });
                let dt = t0.elapsed().as_secs_f64();
                std::hint::black_box(&y);
                if rep > 0 {
                    times.push(dt);
                }
            }
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            rows.push(Row {
                input_bits: n,
                output_bits: m,
                algorithm: plan.algorithm().name().into(),
                baseline,
                seed_reuse: reuse,
                threads: t,
                transform_log_len: plan.transform_log_len(),
                seconds_median: median,
                seconds_min: times[0],
                throughput_bps: n as f64 / median,
                throughput_per_thread_bps: n as f64 / median / t as f64,
                isa: kernels.isa().to_string(),
            });
            bar.inc(1);
        }
    }
    bar.finish();
    let mut speedup = Vec::new();
    for r in rows.iter().filter(|r| !r.baseline && !r.seed_reuse) {
        if let Some(b) = rows.iter().find(|b| {
            b.baseline
                && b.algorithm == "ntt"
                && b.input_bits == r.input_bits
                && b.threads == r.threads
        }) {
            speedup.push((r.input_bits, r.threads, b.seconds_median / r.seconds_median));
        }
    }
    println!(
        "{:>12} {:>12} {:<14} {:>7} {:>4} {:>10} {:>14} {:>16}",
        "input bits",
        "output bits",
        "algorithm",
        "threads",
        "2^ℓ",
        "median s",
        "throughput",
        "per thread"
    );
    for r in &rows {
        let mut name = r.algorithm.clone();
        if r.baseline {
            name += " (base)";
        }
        if r.seed_reuse {
            name += " (reuse)";
        }
        println!(
            "{:>12} {:>12} {:<14} {:>7} {:>4} {:>10.4} {:>14} {:>16}",
            thousands(r.input_bits as u64),
            thousands(r.output_bits as u64),
            name,
            r.threads,
            r.transform_log_len.map_or("-".into(), |l| l.to_string()),
            r.seconds_median,
            rate(r.throughput_bps),
            rate(r.throughput_per_thread_bps)
        );
    }
    for (n, t, s) in &speedup {
        println!("speed-up over the NTT baseline at n = {n}, {t} thread(s): {s:.1}×");
    }
    if let Some(p) = &a.json {
        write_json(
            p,
            &Report {
                rows,
                speedup_vs_ntt: speedup,
                cpus,
            },
        )?;
    }
    Ok(0)
}
