//! `qkd bench ec`: reconciliation over simulated BSC noise, one row per method and QBER
//! (`qkd bench pa` lives in `bench_pa.rs`, `qkd bench distill` in `bench_distill.rs`).

use super::output::{TermProgress, rate, write_json};
use super::svg;
use clap::{Args, Subcommand};
use qkd_distill::error::{ConfigError, Result};
use qkd_distill::error_correction::cascade::Cascade;
use qkd_distill::error_correction::cascade::CascadeVariant;
use qkd_distill::error_correction::ldpc::{LdpcReconciler, LdpcSettings, catalog};
use qkd_distill::error_correction::simulation::{bsc_frames, run_pair_with_latency};
use qkd_distill::error_correction::{Reconciler, efficiency};
use qkd_distill::kernels::Kernels;
use qkd_distill::parameter_estimation::finite_key::binary_entropy;
use qkd_distill::progress::Progress;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Error correction: efficiency, frame error rate and throughput per QBER.
    Ec(EcArgs),
    /// Privacy amplification: Toeplitz hashing throughput per block size and algorithm.
    Pa(super::bench_pa::PaArgs),
    /// Key delivery: two KMEs under concurrent ETSI GS QKD 014 clients (latency, throughput,
    /// no key twice).
    Kme(super::keys::BenchKmeArgs),
    /// The whole path: simulate a dense and a 25 km link, distill each, and report per-stage
    /// busy time, key rates and slots/s next to the floor (reading the logs alone).
    Distill(Box<super::bench_distill::DistillBenchArgs>),
}

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Args)]
pub struct EcArgs {
    /// cascade, ldpc, ldpc-reference or all (every method and Cascade variant).
    #[arg(long, default_value = "ldpc")]
    pub method: String,
    /// Cascade variant(s): original, biconf, yan, opt3, opt4, opt7, opt8, or all.
    #[arg(long, value_delimiter = ',', default_value = "original")]
    pub variant: Vec<String>,
    /// Simulated round-trip time of the classical channel in milliseconds.
    #[arg(long, default_value_t = 0.0)]
    pub rtt_ms: f64,
    /// Error rates to simulate.
    #[arg(long, value_delimiter = ',', default_values_t = [0.01, 0.02, 0.03, 0.05, 0.08])]
    pub qber: Vec<f64>,
    /// Frame length: the LDPC code length (16384, 65536 or 102400) or the Cascade frame.
    #[arg(long, default_value_t = 102_400)]
    pub block_bits: usize,
    /// Frames per QBER.
    #[arg(long, default_value_t = 100)]
    pub frames: usize,
    /// Decoder threads (LDPC).
    #[arg(long)]
    pub threads: Option<usize>,
    /// LDPC: efficiency of the first attempt.
    #[arg(long, default_value_t = LdpcSettings::default().efficiency)]
    pub ldpc_efficiency: f64,
    /// LDPC: blind retries.
    #[arg(long, default_value_t = LdpcSettings::default().max_retries)]
    pub ldpc_retries: u32,
    /// Noise seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the rows as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the rows as CSV.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Plot efficiency and FER against QBER (SVG).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Replace existing --json, --csv or --plot files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Serialize, Clone)]
struct Row {
    method: String,
    variant: String,
    qber: f64,
    qber_actual: f64,
    block_bits: usize,
    frames: usize,
    /// Leaked bits over all frames, failed frames counted as fully disclosed, over n·h(QBER).
    efficiency: f64,
    /// Leaked bits over the successful frames only, over their n·h(QBER).
    efficiency_successful: Option<f64>,
    /// Frames failed or left with residual errors (undetected by the code, caught by
    /// verification), over all frames.
    fer: f64,
    /// Frames among those that the protocol reported corrected but that still differ.
    undetected_errors: usize,
    throughput_bps: f64,
    threads: usize,
    rtt_ms: f64,
    iterations_mean: f64,
    round_trips_mean: f64,
    messages_mean: f64,
    revealed_bits_mean: f64,
    isa: String,
}

/// The columns of `bench ec --csv`, in the order of [`csv_row`].
const CSV_HEADER: &str = "method,variant,qber,qber_actual,block_bits,frames,efficiency,efficiency_successful,fer,undetected_errors,throughput_bps,threads,rtt_ms,iterations_mean,round_trips_mean,messages_mean,revealed_bits_mean,isa";

/// A CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One row of `bench ec --csv`: a field per column of [`CSV_HEADER`].
fn csv_row(r: &Row) -> String {
    [
        csv_field(&r.method),
        csv_field(&r.variant),
        r.qber.to_string(),
        r.qber_actual.to_string(),
        r.block_bits.to_string(),
        r.frames.to_string(),
        r.efficiency.to_string(),
        r.efficiency_successful
            .map_or(String::new(), |x| x.to_string()),
        r.fer.to_string(),
        r.undetected_errors.to_string(),
        r.throughput_bps.to_string(),
        r.threads.to_string(),
        r.rtt_ms.to_string(),
        r.iterations_mean.to_string(),
        r.round_trips_mean.to_string(),
        r.messages_mean.to_string(),
        r.revealed_bits_mean.to_string(),
        csv_field(&r.isa),
    ]
    .join(",")
}

fn cascade_variants(names: &[String], all: bool) -> Result<Vec<CascadeVariant>> {
    if all || names.iter().any(|n| n == "all") {
        return Ok(CascadeVariant::ALL.to_vec());
    }
    names
        .iter()
        .map(|n| {
            CascadeVariant::parse(n).ok_or_else(|| {
                ConfigError::invalid("variant", format!("unknown Cascade variant `{n}`")).into()
            })
        })
        .collect()
}

fn methods(m: &str) -> Result<Vec<&'static str>> {
    match m {
        "ldpc" => Ok(vec!["ldpc"]),
        "ldpc-reference" => Ok(vec!["ldpc-reference"]),
        "cascade" => Ok(vec!["cascade"]),
        "all" => Ok(vec!["cascade", "ldpc", "ldpc-reference"]),
        other => Err(ConfigError::invalid(
            "method",
            format!("`{other}` (cascade, ldpc, ldpc-reference, all)"),
        )
        .into()),
    }
}

/// The floating-point baseline: one attempt per frame of the exact sum-product decoder
/// (flooding, f64) on the expanded matrix, with the plan of the LDPC protocol at this QBER.
/// Single-threaded; throughput counts decoding only.
fn reference_row(a: &EcArgs, ldpc: &LdpcSettings, q: f64, kernels: Kernels) -> Result<Row> {
    use qkd_distill::bits::BitVec;
    use qkd_distill::error_correction::ldpc::decoder::{channel_llr, sum_product};
    use qkd_distill::error_correction::ldpc::{assemble, syndrome_words};
    let plan = ldpc.plan(q)?;
    let code = plan.code;
    let h = code.code.expand();
    let layout = code.pattern.layout(plan.punctured, plan.shortened);
    let (alice, bob, errors) = bsc_frames(&vec![plan.key_bits; a.frames], q, a.seed ^ q.to_bits());
    let (mut failed, mut undetected, mut iterations, mut time) = (0usize, 0usize, 0u64, 0f64);
    let l = channel_llr(q);
    for (x_key, y_key) in alice.iter().zip(&bob) {
        let sv = BitVec::zeros(plan.shortened);
        let pv = BitVec::zeros(plan.punctured);
        let x = assemble(&kernels, &layout, x_key, &sv, &pv);
        let syn = BitVec::from_words(syndrome_words(&code.layout, &x), code.code.m());
        let mut llr = vec![0f64; code.code.n()];
        for (i, &pos) in layout.key.iter().enumerate() {
            llr[pos as usize] = if y_key.get(i) { -l } else { l };
        }
        for &pos in &layout.shortened {
            llr[pos as usize] = 50.0; // known zero
        }
        let t = std::time::Instant::now();
        let (xh, it, ok) = sum_product(&h, &llr, &syn, ldpc.decoder.max_iterations);
        time += t.elapsed().as_secs_f64();
        iterations += u64::from(it);
        if !ok {
            failed += 1;
        } else if xh.words() != &x[..] {
            // Passed the syndrome check with a wrong word: failed all the same.
            undetected += 1;
            failed += 1;
        }
    }
    let total = plan.key_bits * a.frames;
    let q_actual = errors as f64 / total as f64;
    let leak = (code.code.m() - plan.punctured) as f64 * a.frames as f64;
    let hq = binary_entropy(q_actual);
    Ok(Row {
        method: "ldpc-reference".into(),
        variant: "float sum-product, flooding, one attempt".into(),
        qber: q,
        qber_actual: q_actual,
        block_bits: a.block_bits,
        frames: a.frames,
        efficiency: (leak + (failed * plan.key_bits) as f64) / (total as f64 * hq),
        efficiency_successful: Some(leak / (total as f64 * hq)),
        fer: failed as f64 / a.frames as f64,
        undetected_errors: undetected,
        throughput_bps: total as f64 / time,
        threads: 1,
        rtt_ms: 0.0,
        iterations_mean: iterations as f64 / a.frames as f64,
        round_trips_mean: 0.0,
        messages_mean: 1.0,
        revealed_bits_mean: 0.0,
        isa: "scalar f64".into(),
    })
}

pub fn run(a: BenchArgs) -> Result<u8> {
    match a.command {
        BenchCommand::Ec(e) => ec(e),
        BenchCommand::Pa(p) => super::bench_pa::pa(p),
        BenchCommand::Kme(k) => super::keys::run_bench_kme(k),
        BenchCommand::Distill(d) => super::bench_distill::run(*d),
    }
}

fn ec(a: EcArgs) -> Result<u8> {
    qkd_distill::io::OutputPlan::new(a.force)
        .output_opt(a.json.as_deref(), "--json")
        .output_opt(a.csv.as_deref(), "--csv")
        .output_opt(a.plot.as_deref(), "--plot")
        .check()?;
    let ms = methods(&a.method)?;
    if ms.iter().any(|m| m.starts_with("ldpc")) && !catalog::lengths().contains(&a.block_bits) {
        return Err(ConfigError::invalid(
            "block-bits",
            format!("LDPC code lengths are {:?}", catalog::lengths()),
        )
        .into());
    }
    if a.qber.iter().any(|q| !(*q > 0.0 && *q < 0.5)) || a.frames == 0 {
        return Err(ConfigError::invalid(
            "qber/frames",
            "QBERs must be in (0, 0.5) and frames ≥ 1",
        )
        .into());
    }
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| ConfigError::invalid("threads", e.to_string()))?;
    let kernels = Kernels::detect();
    let bar = TermProgress::new(false);
    let variants = cascade_variants(&a.variant, a.method == "all")?;
    let mut jobs: Vec<(&str, Option<CascadeVariant>)> = Vec::new();
    for &m in &ms {
        if m == "cascade" {
            jobs.extend(variants.iter().map(|v| (m, Some(*v))));
        } else {
            jobs.push((m, None));
        }
    }
    bar.start("bench ec", (jobs.len() * a.qber.len()) as u64);
    let mut rows = Vec::new();
    for &(method, variant) in &jobs {
        for &q in &a.qber {
            let ldpc = LdpcSettings {
                code_bits: a.block_bits,
                efficiency: a.ldpc_efficiency,
                max_retries: a.ldpc_retries,
                ..LdpcSettings::default()
            };
            if method == "ldpc-reference" {
                rows.push(reference_row(&a, &ldpc, q, kernels)?);
                bar.inc(1);
                continue;
            }
            let make = || -> Box<dyn Reconciler> {
                match method {
                    "ldpc" => Box::new(LdpcReconciler { settings: ldpc }),
                    _ => Box::new(Cascade {
                        frame_bits: a.block_bits,
                        variant: variant.unwrap_or_default(),
                    }),
                }
            };
            let lengths: Vec<usize> = match method {
                "ldpc" => vec![ldpc.plan(q)?.key_bits; a.frames],
                _ => vec![a.block_bits; a.frames],
            };
            let (alice, mut bob, errors) = bsc_frames(&lengths, q, a.seed ^ (q.to_bits()));
            let rtt = std::time::Duration::from_secs_f64(a.rtt_ms / 1000.0);
            let run = pool.install(|| {
                run_pair_with_latency(make(), make(), &alice, &mut bob, q, kernels, rtt / 2)
            })?;
            let total: usize = lengths.iter().sum();
            let q_actual = errors as f64 / total as f64;
            let leaked = run.alice_ledger.error_correction_bits;
            // A frame left with residual errors is a failed frame for the user comparing
            // methods (verification discards it): counted in the FER and in full in f.
            let failed: Vec<usize> = run
                .failed
                .iter()
                .enumerate()
                .filter(|&(i, f)| *f || alice[i] != bob[i])
                .map(|(i, _)| i)
                .collect();
            let failed_bits: usize = failed.iter().map(|&i| lengths[i]).sum();
            let h = binary_entropy(q_actual);
            let eff = (leaked as f64 + failed_bits as f64) / (total as f64 * h);
            let ok_bits = total - failed_bits;
            // Leak attributable to the successful frames: their share of the disclosure.
            let eff_ok = if failed.is_empty() {
                efficiency(leaked, total as u64, q_actual)
            } else {
                (ok_bits > 0)
                    .then(|| leaked as f64 * ok_bits as f64 / total as f64 / (ok_bits as f64 * h))
            };
            rows.push(Row {
                method: method.into(),
                variant: match method {
                    "ldpc" => format!("blind f0={} retries={}", a.ldpc_efficiency, a.ldpc_retries),
                    _ => variant.unwrap_or_default().name().into(),
                },
                qber: q,
                qber_actual: q_actual,
                block_bits: a.block_bits,
                frames: a.frames,
                efficiency: eff,
                efficiency_successful: eff_ok,
                fer: failed.len() as f64 / a.frames as f64,
                undetected_errors: run.undetected,
                throughput_bps: total as f64 / run.elapsed_s,
                threads,
                rtt_ms: a.rtt_ms,
                iterations_mean: run.stats.decoder_iterations as f64 / a.frames as f64,
                round_trips_mean: run.stats.round_trips as f64 / a.frames as f64,
                messages_mean: run.stats.messages as f64 / a.frames as f64,
                revealed_bits_mean: run.stats.revealed_bits as f64 / a.frames as f64,
                isa: kernels.isa().to_string(),
            });
            bar.inc(1);
        }
    }
    bar.finish();
    if let Some(p) = &a.json {
        write_json(p, &rows)?;
    }
    if let Some(p) = &a.csv {
        let mut t = String::from(CSV_HEADER);
        t.push('\n');
        for r in &rows {
            t += &csv_row(r);
            t.push('\n');
        }
        qkd_distill::io::write_atomic(p, t.as_bytes(), false)?;
    }
    if let Some(p) = &a.plot {
        let labels: Vec<String> = {
            let mut v: Vec<String> = rows
                .iter()
                .map(|r| format!("{} ({})", r.method, r.variant))
                .collect();
            v.dedup();
            v
        };
        let series = |f: &dyn Fn(&Row) -> f64| -> Vec<svg::Series> {
            labels
                .iter()
                .map(|l| svg::Series {
                    label: l.clone(),
                    points: rows
                        .iter()
                        .filter(|r| &format!("{} ({})", r.method, r.variant) == l)
                        .map(|r| (r.qber, f(r)))
                        .collect(),
                })
                .collect()
        };
        let doc = svg::render(&[
            svg::Panel {
                title: format!("Reconciliation efficiency, n = {}", a.block_bits),
                x_label: "QBER".into(),
                y_label: "f (failures fully disclosed)".into(),
                log_y: false,
                series: series(&|r| r.efficiency),
                hlines: vec![(1.0, "f = 1 (Shannon limit)".into())],
            },
            svg::Panel {
                title: "Frame error rate".into(),
                x_label: "QBER".into(),
                y_label: "FER".into(),
                log_y: true,
                series: series(&|r| r.fer.max(0.5 / a.frames as f64)),
                hlines: vec![(1e-3, "1e-3".into())],
            },
        ]);
        qkd_distill::io::write_atomic(p, doc.as_bytes(), false)?;
    }
    println!(
        "{:<15} {:>6} {:>8} {:>8} {:>9} {:>8} {:>6} {:>14} {:>8}",
        "method", "QBER", "n", "f", "f_ok", "FER", "undet", "throughput", "iter"
    );
    for r in &rows {
        println!(
            "{:<24} {:>6.3} {:>8} {:>8.4} {:>9} {:>8.4} {:>6} {:>14} {:>8.1}",
            if r.method == "cascade" {
                format!("cascade/{}", r.variant)
            } else {
                r.method.clone()
            },
            r.qber,
            r.block_bits,
            r.efficiency,
            r.efficiency_successful
                .map_or("-".into(), |x| format!("{x:.4}")),
            r.fer,
            r.undetected_errors,
            rate(r.throughput_bps),
            if r.method.starts_with("ldpc") {
                r.iterations_mean
            } else {
                r.round_trips_mean
            }
        );
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row has the header's columns, also when a text field holds a comma or a quote.
    #[test]
    fn csv_rows_have_the_header_columns() {
        let r = Row {
            method: "cascade".into(),
            variant: "opt(7, \"x\")".into(),
            qber: 0.02,
            qber_actual: 0.0201,
            block_bits: 16384,
            frames: 10,
            efficiency: 1.05,
            efficiency_successful: None,
            fer: 0.0,
            undetected_errors: 0,
            throughput_bps: 1e8,
            threads: 2,
            rtt_ms: 10.0,
            iterations_mean: 0.0,
            round_trips_mean: 40.0,
            messages_mean: 80.0,
            revealed_bits_mean: 3000.0,
            isa: "avx512".into(),
        };
        let parse = |line: &str| {
            let (mut fields, mut cur, mut quoted) = (vec![], String::new(), false);
            let mut it = line.chars().peekable();
            while let Some(c) = it.next() {
                match (c, quoted) {
                    ('"', true) if it.peek() == Some(&'"') => {
                        cur.push('"');
                        it.next();
                    }
                    ('"', _) => quoted = !quoted,
                    (',', false) => fields.push(std::mem::take(&mut cur)),
                    _ => cur.push(c),
                }
            }
            fields.push(cur);
            fields
        };
        let header = parse(CSV_HEADER);
        let row = parse(&csv_row(&r));
        assert_eq!(header.len(), row.len());
        let at = |name: &str| row[header.iter().position(|h| h == name).unwrap()].clone();
        assert_eq!(at("variant"), "opt(7, \"x\")");
        assert_eq!(at("rtt_ms"), "10");
        assert_eq!(at("isa"), "avx512");
    }
}
