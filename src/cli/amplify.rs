//! `qkd amplify`: Toeplitz hashing of a file with a seed file.
//!
//! The input's n = 8 × (size in bytes) bits (bit i = bit i mod 8 of byte i/8) are hashed to M
//! bits with the first n + M − 1 bits of the seed file, exactly as defined in ARCHITECTURE.md §5;
//! the output is ⌈M/8⌉ bytes (unused high bits of the last byte zero), written with mode 0600.

use super::output::{print_json, rate, write_json};
use clap::Args;
use qkd_distill::bits::BitVec;
use qkd_distill::error::{ConfigError, Error, Result};
use qkd_distill::io::AtomicFile;
use qkd_distill::kernels::Kernels;
use qkd_distill::privacy_amplification::{ToeplitzAlgorithm, ToeplitzPlan};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct AmplifyArgs {
    /// Input file (the key to compress).
    #[arg(long)]
    pub input: PathBuf,
    /// Seed file (uniformly random bits; the first n + M − 1 are used).
    #[arg(long)]
    pub seed: PathBuf,
    /// Output length M in bits (1 ≤ M ≤ n).
    #[arg(long)]
    pub output_bits: usize,
    /// Output file.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
    /// Print a JSON report.
    #[arg(long)]
    pub json: bool,
    /// Write a JSON report to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

#[derive(Serialize)]
struct AmplifyReport {
    input: PathBuf,
    seed: PathBuf,
    output: PathBuf,
    input_bits: usize,
    output_bits: usize,
    seed_bits_used: usize,
    algorithm: ToeplitzAlgorithm,
    elapsed_s: f64,
    throughput_bps: f64,
    isa: String,
}

pub fn run(a: AmplifyArgs) -> Result<u8> {
    qkd_distill::io::OutputPlan::new(a.force)
        .input(&a.input)
        .input(&a.seed)
        .output(&a.out, "--out")
        .output_opt(a.report.as_deref(), "--report")
        .check()?;
    let input = std::fs::read(&a.input).map_err(|e| Error::io(&a.input, e))?;
    let n = input.len() * 8;
    if n == 0 {
        return Err(
            ConfigError::invalid("input", format!("{} is empty", a.input.display())).into(),
        );
    }
    let plan = ToeplitzPlan::new(n, a.output_bits)?;
    let need = plan.seed_bits();
    // Read only the n + M − 1 bits needed: the seed may be a device (/dev/urandom) or a huge
    // file.
    let seed_bytes = read_prefix(&a.seed, need.div_ceil(8))?;
    if seed_bytes.len() * 8 < need {
        return Err(ConfigError::invalid(
            "seed",
            format!(
                "{} holds {} bits, but hashing {n} bits to {} needs n + M − 1 = {need} seed bits",
                a.seed.display(),
                seed_bytes.len() * 8,
                a.output_bits
            ),
        )
        .into());
    }
    let x = BitVec::from_bytes_le(&input, n);
    let s = BitVec::from_bytes_le(&seed_bytes[..need.div_ceil(8)], need);
    let k = Kernels::detect();
    let t = Instant::now();
    let y = plan.hash(&k, &s, &x);
    let elapsed = t.elapsed().as_secs_f64();
    let mut f = AtomicFile::create(&a.out, a.force, true)?;
    f.write_all(&y.to_bytes_le())?;
    f.commit()?;
    let report = AmplifyReport {
        input: a.input.clone(),
        seed: a.seed.clone(),
        output: a.out.clone(),
        input_bits: n,
        output_bits: a.output_bits,
        seed_bits_used: need,
        algorithm: plan.algorithm(),
        elapsed_s: elapsed,
        throughput_bps: n as f64 / elapsed.max(1e-9),
        isa: k.isa().to_string(),
    };
    if let Some(r) = &a.report {
        write_json(r, &report)?;
    }
    if a.json {
        print_json(&report);
    } else {
        println!(
            "hashed {n} bits to {} bits with {:?} in {:.3} s ({}); wrote {}",
            a.output_bits,
            report.algorithm,
            elapsed,
            rate(report.throughput_bps),
            a.out.display()
        );
    }
    Ok(0)
}

/// At most `n` bytes from the start of `path` (fewer if it is shorter).
fn read_prefix(path: &std::path::Path, n: usize) -> Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = Vec::with_capacity(n.min(1 << 30));
    f.take(n as u64)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(path, e))?;
    Ok(buf)
}
