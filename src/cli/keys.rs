//! `qkd keys`, `qkd kme`, `qkd encrypt`, `qkd decrypt`, `qkd pki`: keys to applications.

use super::output::{print_json, thousands, write_json};
use clap::{Args, Subcommand};
use qkd_distill::error::{ConfigError, Error, Result};
use qkd_distill::keystore::KeyStore;
use qkd_distill::keyuse::{self, Mode};
use qkd_distill::kme::{self, KmeClient, KmeOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

#[derive(Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Keys available, in grants, delivered; blocks; oldest and newest key.
    Status(StoreArgs),
    /// The available keys' IDs, oldest first.
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Take keys out of the store into a raw file (consumed: they are never delivered again).
    Export {
        #[command(flatten)]
        store: StoreArgs,
        /// Keys (256 bits each) to export.
        #[arg(long)]
        count: usize,
        /// The raw key file (mode 0600; key i is bytes 32i..32i+32).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args)]
pub struct StoreArgs {
    /// The key store directory.
    #[arg(long)]
    pub store: PathBuf,
    /// Print JSON instead of the summary.
    #[arg(long)]
    pub json: bool,
}

fn when(t: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{} s ago", now.saturating_sub(t))
}

pub fn run_keys(a: KeysArgs) -> Result<u8> {
    match a.command {
        KeysCommand::Status(s) => {
            let store = KeyStore::open(&s.store)?;
            let st = store.status()?;
            if s.json {
                print_json(&st);
                return Ok(0);
            }
            println!("key store {}", st.path.display());
            println!(
                "  available         {} keys of {} bits ({} bits)",
                thousands(st.available_keys),
                st.key_bits,
                thousands(st.available_bits)
            );
            println!(
                "  consumed          {} key IDs delivered; {} keys in grants being delivered here, {} reserved for slave SAEs here",
                thousands(st.delivered_key_ids),
                thousands(st.pending_keys),
                thousands(st.reserved_keys)
            );
            println!(
                "  blocks            {} imported, {} rolled back, {} file(s) waiting in the inbox",
                st.blocks, st.voided_blocks, st.inbox_files
            );
            if let (Some(o), Some(n)) = (&st.oldest, &st.newest) {
                println!("  oldest key        block {} (stored {})", o.0, when(o.1));
                println!("  newest key        block {} (stored {})", n.0, when(n.1));
            }
            Ok(0)
        }
        KeysCommand::List { store, limit } => {
            let s = KeyStore::open(&store.store)?;
            let l = s.list(limit)?;
            if store.json {
                print_json(&l);
            } else {
                for k in &l {
                    println!("{}  block {}", k.key_id, k.block);
                }
            }
            Ok(0)
        }
        KeysCommand::Export { store, count, out } => {
            qkd_distill::io::OutputPlan::new(false)
                .input(&store.store.join("keys.redb"))
                .output(&out, "--out")
                .check()?;
            let s = KeyStore::open(&store.store)?;
            // The file first (nothing consumed if it cannot be created), then the keys.
            let mut f = qkd_distill::io::AtomicFile::create(&out, false, true)?;
            let keys = s.export(count)?;
            for k in &keys {
                f.write_all(&k.bytes)?;
            }
            f.commit()?;
            let ids: Vec<String> = keys.iter().map(|k| k.id.to_string()).collect();
            if store.json {
                print_json(&serde_json::json!({"file": out, "key_bits": 256, "key_IDs": ids}));
            } else {
                println!(
                    "exported {} key(s) of 256 bits to {} (consumed from {}){}",
                    keys.len(),
                    out.display(),
                    store.store.display(),
                    if keys.len() < count {
                        format!("; only {} were available", keys.len())
                    } else {
                        String::new()
                    }
                );
                for id in &ids {
                    println!("  {id}");
                }
            }
            Ok(0)
        }
    }
}

#[derive(Args)]
pub struct KmeArgs {
    /// The key store this KME serves.
    #[arg(long)]
    pub store: PathBuf,
    /// Listen on ADDR (host:port).
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// This KME's certificate (PEM), also presented to the peer KME.
    #[arg(long)]
    pub tls_cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long)]
    pub tls_key: PathBuf,
    /// The CA that issues the SAEs' and the peer KME's certificates (PEM).
    #[arg(long)]
    pub client_ca: PathBuf,
    /// An SAE served here: the subject CN of its client certificate (repeat for several).
    #[arg(long = "sae", required = true)]
    pub saes: Vec<String>,
    /// The peer KME of the link (host:port).
    #[arg(long, value_name = "ADDR")]
    pub peer: Option<String>,
    /// The peer KME's ID: the subject CN of its certificate.
    #[arg(long)]
    pub peer_id: Option<String>,
    /// This KME's ID (default: its certificate's subject CN).
    #[arg(long)]
    pub kme_id: Option<String>,
    /// Largest number of keys per request.
    #[arg(long, default_value_t = 128)]
    pub max_key_per_request: u32,
    /// Largest key size in bits (a multiple of 256).
    #[arg(long, default_value_t = 8192)]
    pub max_key_size: u32,
    /// Write the counters as JSON to this file when the KME stops.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Replace an existing --report file.
    #[arg(long)]
    pub force: bool,
}

pub fn run_kme(a: KmeArgs) -> Result<u8> {
    qkd_distill::io::OutputPlan::new(a.force)
        .input(&a.store.join("keys.redb"))
        .input(&a.tls_cert)
        .input(&a.tls_key)
        .input(&a.client_ca)
        .output_opt(a.report.as_deref(), "--report")
        .check()?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| Error::io("signal handler", e))?;
    }
    let mut o = KmeOptions::new(a.store, a.listen, a.tls_cert, a.tls_key, a.client_ca);
    o.saes = a.saes;
    o.peer = a.peer;
    o.peer_id = a.peer_id;
    o.kme_id = a.kme_id;
    o.max_key_per_request = a.max_key_per_request;
    o.max_key_size = a.max_key_size;
    o.stop = stop;
    let saes = o.saes.join(", ");
    let peer = o
        .peer
        .as_ref()
        .map(|p| format!("; peer KME {} at {p}", o.peer_id.as_deref().unwrap_or("?")))
        .unwrap_or_default();
    let store = o.store.clone();
    let mut h = kme::start(o)?;
    println!(
        "KME {} listening on https://{} for SAE(s) {saes}{peer}; store {}",
        h.id,
        h.addr,
        store.display()
    );
    let stats = h.join()?;
    eprintln!(
        "KME {} stopped: {} requests, {} key IDs to master SAEs, {} to slave SAEs, {} refused, {} failed",
        h.id,
        stats.requests,
        stats.delivered_as_master,
        stats.delivered_as_slave,
        stats.refused,
        stats.failed
    );
    if let Some(p) = &a.report {
        write_json(p, &stats)?;
    }
    Ok(0)
}

/// How an SAE reaches its KME.
#[derive(Args)]
pub struct SaeArgs {
    /// The KME (https://host:port).
    #[arg(long)]
    pub kme: String,
    /// This SAE's certificate (PEM; its subject CN is the SAE ID).
    #[arg(long)]
    pub cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long)]
    pub key: PathBuf,
    /// The CA of the KME's certificate (PEM).
    #[arg(long)]
    pub ca: PathBuf,
}

impl SaeArgs {
    fn client(&self) -> Result<KmeClient> {
        KmeClient::new(&self.kme, &self.cert, &self.key, &self.ca)
    }

    fn sae_id(&self) -> Result<String> {
        let c = kme::tls::load_certs(&self.cert)?;
        kme::tls::common_name(&c[0]).ok_or_else(|| {
            ConfigError::Mismatch(format!(
                "{}: no subject CN (the SAE ID)",
                self.cert.display()
            ))
            .into()
        })
    }
}

#[derive(Args)]
pub struct EncryptArgs {
    #[command(flatten)]
    pub sae: SaeArgs,
    /// The SAE that will decrypt (the slave SAE at the other KME).
    #[arg(long)]
    pub slave: String,
    /// `otp` (one-time pad with a one-time MAC: as many key bits as message bits, plus 256) or
    /// `aes-256-gcm` (one 256-bit key).
    #[arg(long, default_value = "aes-256-gcm")]
    pub mode: String,
    /// The file to encrypt.
    pub input: PathBuf,
    /// The encrypted file.
    pub output: PathBuf,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct DecryptArgs {
    #[command(flatten)]
    pub sae: SaeArgs,
    /// The master SAE that encrypted (default: the one named in the file).
    #[arg(long)]
    pub master: Option<String>,
    /// The encrypted file.
    pub input: PathBuf,
    /// The decrypted file (written only if the file is authentic).
    pub output: PathBuf,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// An encrypted or decrypted file is never written over an existing file or its input.
fn refuse_existing(input: &Path, output: &Path) -> Result<()> {
    qkd_distill::io::OutputPlan::new(false)
        .input(input)
        .output(output, "the output")
        .check()
}

pub fn run_encrypt(a: EncryptArgs) -> Result<u8> {
    let mode = Mode::parse(&a.mode)
        .ok_or_else(|| ConfigError::invalid("mode", format!("`{}`: otp or aes-256-gcm", a.mode)))?;
    refuse_existing(&a.input, &a.output)?;
    let data = read(&a.input)?;
    let master = a.sae.sae_id()?;
    let sealed = keyuse::encrypt(&a.sae.client()?, &master, &a.slave, mode, &data)?;
    let mut f = qkd_distill::io::AtomicFile::create(&a.output, false, false)?;
    f.write_all(&sealed)?;
    f.commit()?;
    let (h, _) = keyuse::read_header(&a.output, &sealed)?;
    if a.json {
        print_json(&h);
    } else {
        println!(
            "encrypted {} bytes ({}) for {} with {} key(s) ({} key bits) from {}: {}",
            thousands(h.bytes),
            h.mode.name(),
            h.slave_SAE_ID,
            h.key_IDs.len(),
            thousands(h.key_bits_used),
            a.sae.kme,
            a.output.display()
        );
    }
    Ok(0)
}

pub fn run_decrypt(a: DecryptArgs) -> Result<u8> {
    refuse_existing(&a.input, &a.output)?;
    let data = read(&a.input)?;
    let plain = keyuse::decrypt(&a.sae.client()?, &a.input, &data, a.master.as_deref())?;
    let mut f = qkd_distill::io::AtomicFile::create(&a.output, false, true)?;
    f.write_all(&plain)?;
    f.commit()?;
    let (h, _) = keyuse::read_header(&a.input, &data)?;
    if a.json {
        print_json(&h);
    } else {
        println!(
            "decrypted {} bytes ({}, authentic) from {} with {} key(s) from {}: {}",
            thousands(h.bytes),
            h.mode.name(),
            h.master_SAE_ID,
            h.key_IDs.len(),
            a.sae.kme,
            a.output.display()
        );
    }
    Ok(0)
}

#[derive(Args)]
pub struct PkiArgs {
    /// Directory for ca.crt, ca.key and NAME.crt / NAME.key.
    #[arg(long)]
    pub out: PathBuf,
    /// Subject CN of the CA.
    #[arg(long, default_value = "qkd-distill test CA")]
    pub ca_name: String,
    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
    /// The KME and SAE IDs to issue certificates for.
    #[arg(required = true)]
    pub names: Vec<String>,
}

pub fn run_pki(a: PkiArgs) -> Result<u8> {
    let p = kme::pki::create(&a.out, &a.names, &a.ca_name, a.force)?;
    println!(
        "test PKI in {}: CA {} and certificates for {} (keys mode 0600; for tests only)",
        a.out.display(),
        p.ca.display(),
        a.names.join(", ")
    );
    Ok(0)
}

#[derive(Args)]
pub struct BenchKmeArgs {
    /// Concurrent SAE pairs.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Keys per enc_keys request.
    #[arg(long, default_value_t = 1)]
    pub number: u32,
    /// Bits per key.
    #[arg(long, default_value_t = 256)]
    pub size: u32,
    /// Keys of 256 bits in each store at the start.
    #[arg(long, default_value_t = 200_000)]
    pub keys: u64,
    /// Working directory (default: a temporary one, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Write the JSON report to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Replace an existing --report file.
    #[arg(long)]
    pub force: bool,
}

/// Two KMEs in this process over stores filled with identical synthetic keys, and the load
/// client against them; then the stores are checked.
pub fn run_bench_kme(a: BenchKmeArgs) -> Result<u8> {
    qkd_distill::io::OutputPlan::new(a.force)
        .output_opt(a.report.as_deref(), "--report")
        .check()?;
    let tmp = a.dir.is_none();
    let dir = a.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("qkd-bench-kme-{}", std::process::id()))
    });
    if dir.exists() && tmp {
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    let names: Vec<String> = ["kme-a", "kme-b", "sae-a", "sae-b"]
        .map(String::from)
        .to_vec();
    let pki = dir.join("pki");
    kme::pki::create(&pki, &names, "bench CA", true)?;
    let (sa, sb) = (dir.join("store-a"), dir.join("store-b"));
    let per_block = 1024u64; // keys per synthetic block
    kme::load::fill_synthetic(
        &sa,
        &sb,
        "bench",
        a.keys.div_ceil(per_block),
        (per_block * 32) as usize,
    )?;
    // Baseline in the same run: the store alone (no TLS, no HTTP, no peer), one key per
    // delivery as the master does it (two fsynced transactions), single-threaded.
    let (ba, bb) = (dir.join("base-a"), dir.join("base-b"));
    kme::load::fill_synthetic(&ba, &bb, "base", 2, (per_block * 32) as usize)?;
    let base = KeyStore::open(&ba)?;
    let mut base_ms = Vec::new();
    let t0 = std::time::Instant::now();
    while base_ms.len() < 2000 && t0.elapsed() < Duration::from_secs(5) {
        let t = std::time::Instant::now();
        base.export(1)?;
        base_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let base_per_s = base_ms.len() as f64 / t0.elapsed().as_secs_f64();
    base_ms.sort_by(f64::total_cmp);
    let base_p50 = base_ms[base_ms.len() / 2];
    drop(base);
    let free = || -> Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| Error::io("127.0.0.1:0", e))?
            .port())
    };
    let (pa, pb) = (free()?, free()?);
    let f = |n: &str, ext: &str| pki.join(format!("{n}.{ext}"));
    let opts = |store: &Path, me: &str, sae: &str, port: u16, peer: &str, peer_port: u16| {
        let mut o = KmeOptions::new(
            store.to_path_buf(),
            format!("127.0.0.1:{port}"),
            f(me, "crt"),
            f(me, "key"),
            pki.join("ca.crt"),
        );
        o.saes = vec![sae.to_string()];
        o.peer = Some(format!("127.0.0.1:{peer_port}"));
        o.peer_id = Some(peer.to_string());
        o
    };
    let ka = kme::start(opts(&sa, "kme-a", "sae-a", pa, "kme-b", pb))?;
    let kb = kme::start(opts(&sb, "kme-b", "sae-b", pb, "kme-a", pa))?;
    let target = |port: u16, sae: &str| kme::load::Target {
        url: format!("https://127.0.0.1:{port}"),
        cert: f(sae, "crt"),
        key: f(sae, "key"),
        ca: pki.join("ca.crt"),
        sae: sae.to_string(),
    };
    let rep = kme::load::run(
        &target(pa, "sae-a"),
        &target(pb, "sae-b"),
        a.clients,
        Duration::from_secs_f64(a.seconds.clamp(0.1, 3600.0)),
        a.number,
        a.size,
    )?;
    ka.stop()?;
    kb.stop()?;
    let (st_a, st_b) = (
        KeyStore::open(&sa)?.status()?,
        KeyStore::open(&sb)?.status()?,
    );
    let stored = a.keys.div_ceil(per_block) * per_block;
    let units = u64::from(a.size / 256);
    let ok = rep.duplicate_key_ids == 0
        && rep.mismatched_keys == 0
        && st_a.available_keys + st_a.delivered_key_ids * units == stored
        && st_b.available_keys + st_b.delivered_key_ids * units == stored
        && st_a.pending_keys == 0
        && st_b.reserved_keys == 0;
    let json = serde_json::json!({
        "load": rep,
        "store_a": st_a,
        "store_b": st_b,
        "keys_at_start": stored,
        "baseline_store_alone": {"deliveries_per_s": base_per_s, "p50_ms": base_p50, "note": "one key per delivery (begin + finish grant, two fsynced redb transactions), one thread, no TLS/HTTP/peer"},
        "consistent": ok,
        "note": "synthetic keys (identical random bytes in both stores): this measures the KMEs, not the distillation",
    });
    if let Some(p) = &a.report {
        write_json(p, &json)?;
    }
    if a.json {
        print_json(&json);
    } else {
        println!(
            "KME load: {} clients × {:.1} s, {} key(s) of {} bits per request: {} keys delivered at both KMEs ({:.0} key bits/s, {:.0} enc_keys/s)",
            rep.clients,
            rep.elapsed_s,
            rep.number,
            rep.size,
            thousands(rep.keys),
            rep.key_bits_per_s,
            rep.enc_requests_per_s
        );
        println!(
            "  enc_keys (master KME, with its reservation at the peer)  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            rep.enc_keys.p50_ms, rep.enc_keys.p99_ms, rep.enc_keys.max_ms
        );
        println!(
            "  dec_keys (slave KME)                                     p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            rep.dec_keys.p50_ms, rep.dec_keys.p99_ms, rep.dec_keys.max_ms
        );
        println!(
            "  baseline, the store alone (one thread, no TLS/HTTP/peer): {:.0} deliveries/s, p50 {:.2} ms",
            base_per_s, base_p50
        );
        println!(
            "  no key twice: {}; same bytes at both: {}; stores consistent (available + delivered = stored, nothing left pending): {}; errors {}{}",
            rep.duplicate_key_ids == 0,
            rep.mismatched_keys == 0,
            ok,
            rep.errors,
            rep.first_error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }
    if tmp {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(if ok && rep.errors == 0 { 0 } else { 2 })
}
