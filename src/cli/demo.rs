//! `qkd demo`: simulate a link and distill it, with progress and a readable summary.

use super::distill::{SettingsArgs, print_summary};
use super::output::{TempDir, TermProgress, print_json};
use super::simulate::LinkArgs;
use clap::Args;
use qkd_distill::engine::{DistillOptions, distill};
use qkd_distill::error::{Error, Result};
use qkd_distill::kernels::Kernels;
use qkd_distill::sim::simulate_decoy_bb84;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args)]
pub struct DemoArgs {
    /// Number of pulses to simulate.
    #[arg(long, default_value_t = 100_000_000)]
    pub pulses: u64,
    /// Simulation seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Keep the simulated logs and keys in this directory (default: a temporary directory
    /// that is removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Write the JSON report to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Print the JSON report instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// With --dir: replace the logs and keys of an earlier demo there.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub link: LinkArgs,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

pub fn run(a: DemoArgs) -> Result<u8> {
    let params = a.link.params()?;
    let settings = a.settings.settings()?;
    let (dir, _guard) = match &a.dir {
        Some(d) => {
            qkd_distill::io::OutputPlan::new(a.force)
                .output(&d.join("alice.qpl"), "Alice's log")
                .output(&d.join("bob.qdl"), "Bob's log")
                .output(&d.join("link.json"), "link.json")
                .output(&d.join("keys").join("alice.key"), "Alice's key")
                .output(&d.join("keys").join("bob.key"), "Bob's key")
                .output_opt(a.report.as_deref(), "--report")
                .check()?;
            (d.clone(), None)
        }
        None => {
            let d =
                std::env::temp_dir().join(format!("qkd-demo-{}-{}", std::process::id(), a.seed));
            std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
            (d.clone(), Some(TempDir(d)))
        }
    };
    let progress = Arc::new(TermProgress::new(a.json));
    if !a.json {
        println!(
            "qkd-distill demo: decoy-state BB84 over {} km of fiber, {} pulses",
            params.distance_km, a.pulses
        );
    }
    let sim = simulate_decoy_bb84(
        &params,
        a.pulses,
        a.seed,
        &dir,
        a.force || a.dir.is_none(),
        progress.as_ref(),
    )?;
    if !a.json {
        super::simulate::print_summary(&sim);
        println!();
    }
    let opts = DistillOptions {
        settings,
        out_dir: dir.join("keys"),
        overwrite: a.force || a.dir.is_none(),
        deterministic_seed: a.settings.insecure_deterministic_rng,
        kernels: Kernels::detect(),
        frame_tap: None,
        sync: Default::default(),
        store: None,
        report: a.report.clone(),
    };
    let report = distill(&sim.files.alice, &sim.files.bob, &opts, progress)?;
    if a.json {
        print_json(&report);
    } else {
        print_summary(&report);
        if let Some(k) = &report.key_files {
            let digest = |p: &std::path::Path| {
                std::fs::read(p)
                    .map(|b| blake3::hash(&b))
                    .map_err(|e| Error::io(p, e))
            };
            let same = digest(&k.alice)? == digest(&k.bob)?;
            println!(
                "  result            Alice and Bob hold {} identical secret bits (files compared: {})",
                super::output::thousands(report.secret_bits),
                if same { "equal" } else { "DIFFERENT" }
            );
        }
        if a.dir.is_none() {
            println!(
                "  (logs and keys were in a temporary directory, now removed; use --dir DIR to keep them)"
            );
        }
    }
    Ok(report.exit_code())
}
