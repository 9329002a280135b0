//! A load client of two KMEs: concurrent master SAEs fetch keys at one KME (`enc_keys`) and
//! their slave SAEs the same keys at the other (`dec_keys`), for a bounded time; checks that no
//! key is delivered twice and that both sides got the same bytes (`qkd bench kme`, tests).

use super::client::KmeClient;
use crate::error::Result;
use serde::Serialize;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One side of the load: a KME and the SAE identity used there.
#[derive(Debug, Clone)]
pub struct Target {
    /// KME URL.
    pub url: String,
    /// SAE certificate.
    pub cert: PathBuf,
    /// SAE key.
    pub key: PathBuf,
    /// CA of the KME's certificate.
    pub ca: PathBuf,
    /// This SAE's ID (its certificate's CN).
    pub sae: String,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Requests measured.
    pub requests: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

fn latency(mut v: Vec<f64>) -> Latency {
    if v.is_empty() {
        return Latency::default();
    }
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    Latency {
        requests: v.len() as u64,
        p50_ms: q(0.5),
        p99_ms: q(0.99),
        max_ms: *v.last().expect("non-empty"),
    }
}

/// What a load run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    /// Concurrent clients (master/slave SAE pairs).
    pub clients: usize,
    /// Seconds of load.
    pub elapsed_s: f64,
    /// Keys per request.
    pub number: u32,
    /// Bits per key.
    pub size: u32,
    /// Keys delivered at both KMEs with the same bytes.
    pub keys: u64,
    /// Key bits per second (delivered at both ends).
    pub key_bits_per_s: f64,
    /// `enc_keys` round trips per second (all clients).
    pub enc_requests_per_s: f64,
    /// `enc_keys` latency (master KME, including its reservation at the peer).
    pub enc_keys: Latency,
    /// `dec_keys` latency (slave KME).
    pub dec_keys: Latency,
    /// `enc_keys` answered 503 (no key left).
    pub enc_unavailable: u64,
    /// Other failed requests (with a sample message).
    pub errors: u64,
    /// A failure message, if any.
    pub first_error: Option<String>,
    /// Key IDs delivered twice at the master side (must be 0).
    pub duplicate_key_ids: u64,
    /// Keys whose bytes differ between the two KMEs (must be 0).
    pub mismatched_keys: u64,
    /// The key IDs delivered (for the caller's checks).
    #[serde(skip)]
    pub key_ids: Vec<String>,
}

/// Run `clients` concurrent SAE pairs against `master` (enc_keys) and `slave` (dec_keys) for
/// `duration` (or until the master KME has no key left).
pub fn run(
    master: &Target,
    slave: &Target,
    clients: usize,
    duration: Duration,
    number: u32,
    size: u32,
) -> Result<LoadReport> {
    let seen = Mutex::new(HashSet::new());
    let all = Mutex::new((Vec::new(), Vec::new(), LoadReport::default()));
    let start = Instant::now();
    let deadline = start + duration;
    std::thread::scope(|s| -> Result<()> {
        let mut handles = Vec::new();
        for _ in 0..clients {
            let (seen, all) = (&seen, &all);
            handles.push(s.spawn(move || -> Result<()> {
                let a = KmeClient::new(&master.url, &master.cert, &master.key, &master.ca)?;
                let b = KmeClient::new(&slave.url, &slave.cert, &slave.key, &slave.ca)?;
                let (mut enc, mut dec, mut rep) = (Vec::new(), Vec::new(), LoadReport::default());
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let got = match a.enc_keys(&slave.sae, number, size) {
                        Ok(Ok(c)) => c,
                        Ok(Err(e)) if e.status == 503 => {
                            rep.enc_unavailable += 1;
                            break;
                        }
                        Ok(Err(e)) => {
                            rep.errors += 1;
                            rep.first_error.get_or_insert(e.to_string());
                            continue;
                        }
                        Err(e) => {
                            rep.errors += 1;
                            rep.first_error.get_or_insert(e.to_string());
                            continue;
                        }
                    };
                    enc.push(t.elapsed().as_secs_f64() * 1e3);
                    let ids: Vec<String> = got.keys.iter().map(|k| k.key_ID.clone()).collect();
                    {
                        let mut s = seen.lock().expect("lock");
                        for id in &ids {
                            if !s.insert(id.clone()) {
                                rep.duplicate_key_ids += 1;
                            }
                        }
                    }
                    let t = Instant::now();
                    match b.dec_keys(&master.sae, &ids) {
                        Ok(Ok(c)) => {
                            dec.push(t.elapsed().as_secs_f64() * 1e3);
                            for (x, y) in got.keys.iter().zip(&c.keys) {
                                if x.key_ID != y.key_ID || x.key != y.key {
                                    rep.mismatched_keys += 1;
                                } else {
                                    rep.keys += 1;
                                }
                            }
                            rep.key_ids.extend(ids);
                        }
                        Ok(Err(e)) => {
                            rep.errors += 1;
                            rep.first_error.get_or_insert(e.to_string());
                        }
                        Err(e) => {
                            rep.errors += 1;
                            rep.first_error.get_or_insert(e.to_string());
                        }
                    }
                }
                let mut g = all.lock().expect("lock");
                g.0.extend(enc);
                g.1.extend(dec);
                let r = &mut g.2;
                r.keys += rep.keys;
                r.enc_unavailable += rep.enc_unavailable;
                r.errors += rep.errors;
                r.duplicate_key_ids += rep.duplicate_key_ids;
                r.mismatched_keys += rep.mismatched_keys;
                if r.first_error.is_none() {
                    r.first_error = rep.first_error;
                }
                r.key_ids.extend(rep.key_ids);
                Ok(())
            }));
        }
        for h in handles {
            h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?;
        }
        Ok(())
    })?;
    let elapsed = start.elapsed().as_secs_f64();
    let (enc, dec, mut rep) = all.into_inner().expect("lock");
    rep.clients = clients;
    rep.elapsed_s = elapsed;
    rep.number = number;
    rep.size = size;
    rep.key_bits_per_s = rep.keys as f64 * f64::from(size) / elapsed;
    rep.enc_requests_per_s = enc.len() as f64 / elapsed;
    rep.enc_keys = latency(enc);
    rep.dec_keys = latency(dec);
    Ok(rep)
}

/// Fill the stores `a` and `b` with `blocks` blocks of `bytes` identical random bytes each, as
/// if both sites had committed them (benchmarks of the KME only: these are not QKD keys).
pub fn fill_synthetic(
    a: &std::path::Path,
    b: &std::path::Path,
    run_id: &str,
    blocks: u64,
    bytes: usize,
) -> Result<()> {
    use crate::block::{BlockReport, ConfirmationReport, SecretKey};
    use crate::keystore::{KeySink, StoreInbox};
    use crate::protocol::Role;
    use crate::protocols::ProtocolKind;
    let mut sa = StoreInbox::open(a, Role::Alice, run_id, ProtocolKind::Bb84, false)?;
    let mut sb = StoreInbox::open(b, Role::Bob, run_id, ProtocolKind::Bb84, false)?;
    let start = sa.state().next_block();
    for block in start..start + blocks {
        let mut raw = vec![0u8; bytes];
        rand::fill(&mut raw[..]);
        let key = SecretKey::new(&crate::bits::BitVec::from_bytes_le(&raw, 8 * bytes));
        zeroize::Zeroize::zeroize(&mut raw);
        let report = BlockReport {
            id: block,
            last_slot: block,
            confirmation: Some(ConfirmationReport {
                confirmed: true,
                pad_bits: 64,
                auth_refill_bits: 0,
                tag: rand::random(),
            }),
            ..Default::default()
        };
        sa.append(&report, &key)?;
        sb.append(&report, &key)?;
    }
    Ok(())
}
