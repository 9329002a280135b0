//! Command-line interface (binary only; the library never sees clap).

mod amplify;
mod bench;
mod bench_distill;
mod bench_pa;
mod codes;
mod demo;
mod distill;
mod import;
mod inspect;
mod keyrate;
mod keys;
mod output;
mod simulate;
mod site;
mod svg;
mod sync;

use clap::{Parser, Subcommand};
use qkd_distill::error::Result;

/// qkd-distill: classical post-processing for quantum key distribution.
#[derive(Parser)]
#[command(name = "qkd", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate a 25 km decoy-state BB84 link and distill keys end to end.
    Demo(demo::DemoArgs),
    /// Simulate a decoy-state BB84 link: writes alice.qpl, bob.qdl and link.json.
    Simulate(simulate::SimulateArgs),
    /// Distill identical secret keys from Alice's preparation log and Bob's detection log.
    Distill(distill::DistillArgs),
    /// Show the header, metadata and statistics of a .qdl or .qpl file and verify its checksums.
    Inspect(inspect::InspectArgs),
    /// Toeplitz-hash a file (privacy amplification of an arbitrary bit string).
    Amplify(amplify::AmplifyArgs),
    /// Benchmarks: error correction (`ec`), privacy amplification (`pa`), key delivery (`kme`)
    /// and the whole path (`distill`).
    Bench(bench::BenchArgs),
    /// The built-in LDPC codes: list, inspect, export/import alist, regenerate.
    Codes(codes::CodesArgs),
    /// Convert a time tagger's files (PTU, qcrypto, quTAG, Swabian, CSV) to a `.qdl` log.
    Import(import::ImportArgs),
    /// Time synchronisation of raw time tags (prepare and measure, or two time-tagging sides).
    Sync(sync::SyncArgs),
    /// Write a `.qdl` log as CSV (time_ticks,time_ps,channel,kind).
    Export(import::ExportArgs),
    /// Secret-key rate against distance for a device (decoy BB84: GLLP, Lim et al. 2014, PLOB).
    Keyrate(keyrate::KeyrateArgs),
    /// Create the pre-shared authentication key of two sites: the same pool in two files.
    AuthKey(site::AuthKeyArgs),
    /// Run Alice's site: her log, over an authenticated TCP link to Bob's site.
    Alice(site::AliceArgs),
    /// Run Bob's site: his detections, over an authenticated TCP link to Alice's site.
    Bob(site::BobArgs),
    /// A key store: status, list, export.
    Keys(keys::KeysArgs),
    /// Serve a key store to applications by ETSI GS QKD 014 over mutual TLS.
    Kme(keys::KmeArgs),
    /// Encrypt a file with keys from a KME (one-time pad or AES-256-GCM).
    Encrypt(keys::EncryptArgs),
    /// Decrypt a file with keys from a KME.
    Decrypt(keys::DecryptArgs),
    /// Create a throw-away PKI (CA and certificates for KMEs and SAEs) for tests.
    Pki(keys::PkiArgs),
}

/// Parse the command line and run; returns the exit code.
pub fn run() -> Result<u8> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Simulate(a) => simulate::run(a),
        Command::Distill(a) => distill::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Amplify(a) => amplify::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Codes(a) => codes::run(a),
        Command::Keyrate(a) => keyrate::run(a),
        Command::Import(a) => import::run_import(a),
        Command::Export(a) => import::run_export(a),
        Command::Sync(a) => sync::run(a),
        Command::AuthKey(a) => site::run_auth_key(a),
        Command::Alice(a) => site::run_alice(a),
        Command::Bob(a) => site::run_bob(a),
        Command::Keys(a) => keys::run_keys(a),
        Command::Kme(a) => keys::run_kme(a),
        Command::Encrypt(a) => keys::run_encrypt(a),
        Command::Decrypt(a) => keys::run_decrypt(a),
        Command::Pki(a) => keys::run_pki(a),
    }
}
