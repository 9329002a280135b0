//! Protocols beyond decoy-state BB84: entanglement-based E91 and BBM92 ([`entangled`]),
//! counterfactual QKD of Noh ([`noh09`]) and Kak's three-stage protocol ([`kak3`]).
//!
//! Their simulators write slot-annotated `.qdl` logs for both parties (metadata `protocol`);
//! `qkd distill` recognises them and runs the protocol's own sifting and estimation, then the
//! shared back end of [`finish_keys`]: Cascade reconciliation, polynomial-hash verification,
//! Toeplitz privacy amplification to the protocol's bound, key files written like BB84 keys.

pub mod entangled;
pub mod kak3;
pub mod noh09;

use crate::bits::BitVec;
use crate::error::{ConfigError, Result};
use crate::error_correction::cascade::Cascade;
use crate::error_correction::simulation::run_pair;
use crate::io::detection_log::{ChannelInfo, ChannelKind, DetectionLog, DetectionMeta, Record};
use crate::io::header::{FLAG_SLOT_ANNOTATED, FLAG_TIME_SORTED, FileHeader, RunId};
use crate::io::{AtomicFile, DetectionLogWriter};
use crate::kernels::Kernels;
use crate::ledger::LeakageLedger;
use crate::privacy_amplification::ToeplitzPlan;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Which protocol a log belongs to (its metadata `protocol`).
pub fn protocol_of(meta: &DetectionMeta) -> Option<String> {
    meta.extra
        .get("protocol")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

/// What a party's log of an alternative protocol says about itself.
pub(crate) struct PartyLog<'a> {
    pub role: &'a str,
    pub protocol: &'a str,
    pub channels: Vec<(u16, String)>,
    pub extra: serde_json::Value,
    pub run_id: RunId,
}

/// Write one party's records as a slot-annotated log.
pub(crate) fn write_party_log(
    path: &Path,
    spec: PartyLog<'_>,
    records: &[Record],
    overwrite: bool,
) -> Result<PathBuf> {
    let PartyLog {
        role,
        protocol,
        channels,
        extra,
        run_id,
    } = spec;
    let mut meta = DetectionMeta {
        role: role.into(),
        source_format: format!("qkd-distill/simulate {protocol}"),
        channels: channels
            .into_iter()
            .map(|(id, name)| ChannelInfo {
                id,
                name,
                kind: ChannelKind::Detector,
                state: None,
            })
            .collect(),
        total_slots: None,
        extra: serde_json::Map::new(),
    };
    meta.extra.insert("protocol".into(), protocol.into());
    if let serde_json::Value::Object(m) = extra {
        meta.extra.extend(m);
    }
    let header = FileHeader {
        version: (1, 0),
        flags: FLAG_SLOT_ANNOTATED | FLAG_TIME_SORTED,
        tick_num: 1,
        tick_den: 1_000_000_000,
        origin_unix_ns: i64::MIN,
        run_id,
        metadata_json: serde_json::to_string(&meta).expect("metadata serializes"),
        header_len: 0,
    };
    let mut w = DetectionLogWriter::create(path, &header, overwrite)?;
    w.write_records(records)?;
    w.finish()
}

/// Write `link.json` (the simulation summary) into `out`.
pub(crate) fn write_summary(out: &Path, overwrite: bool, summary: &impl Serialize) -> Result<()> {
    let mut f = AtomicFile::create(&out.join("link.json"), overwrite, false)?;
    f.write_all(
        serde_json::to_string_pretty(summary)
            .expect("serializes")
            .as_bytes(),
    )?;
    f.commit()?;
    Ok(())
}

/// All records of a log.
pub(crate) fn read_all(log: &DetectionLog) -> Result<Vec<Record>> {
    let mut v = Vec::new();
    for b in 0..log.blocks().len() {
        v.extend(log.block(b)?.iter());
    }
    Ok(v)
}

/// A run id derived from the simulation inputs.
pub(crate) fn run_id_of(tag: &str, seed: u64, slots: u64) -> RunId {
    let mut h = blake3::Hasher::new();
    h.update(tag.as_bytes());
    h.update(&seed.to_le_bytes());
    h.update(&slots.to_le_bytes());
    RunId(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"))
}

/// The back end's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyReport {
    /// Sifted key bits entering reconciliation.
    pub sifted_bits: u64,
    /// Bit errors Cascade corrected.
    pub corrected_errors: u64,
    /// Error rate of the sifted key (from the corrections).
    pub qber: f64,
    /// Bits disclosed by Cascade.
    pub error_correction_bits: u64,
    /// Verification tag bits.
    pub verification_bits: u64,
    /// Bits of frames discarded after verification.
    pub discarded_bits: u64,
    /// ℓ from the protocol's bound.
    pub bound_bits: u64,
    /// Key written (ℓ rounded down to bytes).
    pub secret_bits: u64,
    /// The bound used.
    pub bound: String,
    /// Whether the bound is a proven security statement.
    pub security_proven: bool,
}

/// A protocol's key-length bound: ℓ from (kept bits, bits subtracted = λ_EC + tags +
/// discarded).
pub struct Bound<F: Fn(u64, u64) -> f64> {
    /// The formula, for the report.
    pub name: String,
    /// Whether it is a proven security statement.
    pub proven: bool,
    /// ℓ.
    pub length: F,
}

/// Cascade, verification and privacy amplification of two sifted keys to `bound`. Returns the
/// two final keys (equal unless verification let a wrong frame through, with probability
/// ≤ ε_cor) and the report.
pub fn finish_keys<F: Fn(u64, u64) -> f64>(
    alice: &BitVec,
    bob: &BitVec,
    qber_estimate: f64,
    eps_cor: f64,
    seed: u64,
    bound: Bound<F>,
) -> Result<(BitVec, BitVec, KeyReport)> {
    let Bound {
        name: bound,
        proven: security_proven,
        length,
    } = bound;
    let k = Kernels::detect();
    let frame = 1usize << 14;
    let frames: Vec<BitVec> = (0..alice.len().div_ceil(frame))
        .map(|i| alice.slice(i * frame, ((i + 1) * frame).min(alice.len())))
        .collect();
    let mut bob_frames: Vec<BitVec> = (0..bob.len().div_ceil(frame))
        .map(|i| bob.slice(i * frame, ((i + 1) * frame).min(bob.len())))
        .collect();
    let before: Vec<u64> = frames
        .iter()
        .zip(&bob_frames)
        .map(|(a, b)| a.hamming_distance(&k, b))
        .collect();
    let casc = |_: ()| -> Box<dyn crate::error_correction::Reconciler> {
        Box::new(Cascade {
            frame_bits: frame,
            ..Default::default()
        })
    };
    let run = run_pair(
        casc(()),
        casc(()),
        &frames,
        &mut bob_frames,
        qber_estimate.clamp(0.005, 0.25),
        k,
    )?;
    let leak = run.alice_ledger.error_correction_bits;
    // Verification: two 64-bit polynomial-hash tags per frame under fresh keys.
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let mut ledger = LeakageLedger::default();
    let (mut a_key, mut b_key) = (BitVec::new(), BitVec::new());
    let mut discarded = 0u64;
    let r = crate::verification::keys_per_frame(frames.len(), frame, eps_cor).max(1);
    for (i, (a, b)) in frames.iter().zip(&bob_frames).enumerate() {
        let ok = !run.failed[i]
            && (0..r).all(|_| {
                let key: u64 = rng.random();
                crate::verification::tag(&k, a, key) == crate::verification::tag(&k, b, key)
            });
        ledger.verification_bits += 64 * r as u64;
        if ok {
            a_key.extend_from(a);
            b_key.extend_from(b);
        } else {
            discarded += a.len() as u64;
        }
    }
    let n = a_key.len() as u64;
    let subtracted = leak + ledger.verification_bits + discarded;
    let l = length(n, subtracted).floor().max(0.0).min(n as f64) as u64;
    let m = (l - l % 8) as usize;
    let (fa, fb) = if m > 0 {
        let plan = ToeplitzPlan::new(n as usize, m)?;
        let seed_bits = BitVec::from_words(
            (0..plan.seed_bits().div_ceil(64))
                .map(|_| rng.random())
                .collect(),
            plan.seed_bits(),
        );
        (
            plan.hash(&k, &seed_bits, &a_key),
            plan.hash(&k, &seed_bits, &b_key),
        )
    } else {
        (BitVec::new(), BitVec::new())
    };
    let corrected: u64 = before.iter().sum();
    Ok((
        fa,
        fb,
        KeyReport {
            sifted_bits: alice.len() as u64,
            corrected_errors: corrected,
            qber: if alice.is_empty() {
                0.0
            } else {
                corrected as f64 / alice.len() as f64
            },
            error_correction_bits: leak,
            verification_bits: ledger.verification_bits,
            discarded_bits: discarded,
            bound_bits: l,
            secret_bits: m as u64,
            bound,
            security_proven,
        },
    ))
}

/// Disclose a public random sample (each position with probability `fraction`, positions from
/// a ChaCha stream of `seed`) of the sifted keys to estimate their error rate; the sample leaves
/// both keys. Returns (sample bits, errors).
pub fn disclose_sample(a: &mut BitVec, b: &mut BitVec, fraction: f64, seed: u64) -> (u64, u64) {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed ^ 0x5a3b_1e5e);
    let (mut ka, mut kb) = (BitVec::new(), BitVec::new());
    let (mut n, mut e) = (0u64, 0u64);
    for i in 0..a.len() {
        if rng.random::<f64>() < fraction {
            n += 1;
            e += u64::from(a.get(i) != b.get(i));
        } else {
            ka.push(a.get(i));
            kb.push(b.get(i));
        }
    }
    *a = ka;
    *b = kb;
    (n, e)
}

/// Write both keys (mode 0600, atomically); refuses to overwrite unless asked.
pub fn write_keys(
    out: &Path,
    a: &BitVec,
    b: &BitVec,
    overwrite: bool,
) -> Result<(PathBuf, PathBuf)> {
    if a != b {
        return Err(crate::error::ProtocolError::Disagreement {
            what: "final keys",
            detail: "Alice's and Bob's keys differ; no key files written".into(),
        }
        .into());
    }
    std::fs::create_dir_all(out).map_err(|e| crate::error::Error::io(out, e))?;
    let write = |name: &str, k: &BitVec| -> Result<PathBuf> {
        let mut f = AtomicFile::create(&out.join(name), overwrite, true)?;
        f.write_all(&k.to_bytes_le())?;
        f.commit()
    };
    Ok((write("alice.key", a)?, write("bob.key", b)?))
}

/// Binary entropy.
pub fn h(x: f64) -> f64 {
    crate::parameter_estimation::finite_key::binary_entropy(x)
}

/// Tomamichel, Lim, Gisin, Renner, Nat. Commun. 3, 634 (2012), Eq. (2): the length from n key
/// bits, k test bits with observed phase error `e_ph`, and `subtracted` disclosed bits:
/// ℓ = n(1 − h(e_ph + μ)) − subtracted − log₂(2/(ε_sec²·ε_cor)),
/// μ = √((n+k)/(nk)·(k+1)/k·ln(4/ε_sec)).
pub fn tomamichel_length(
    n: u64,
    k: u64,
    e_ph: f64,
    subtracted: u64,
    eps_sec: f64,
    eps_cor: f64,
) -> f64 {
    if n == 0 || k == 0 {
        return 0.0;
    }
    let (nf, kf) = (n as f64, k as f64);
    let mu = ((nf + kf) / (nf * kf) * (kf + 1.0) / kf * (4.0 / eps_sec).ln()).sqrt();
    let e = (e_ph + mu).min(0.5);
    nf * (1.0 - h(e)) - subtracted as f64 - (2.0 / (eps_sec * eps_sec * eps_cor)).log2()
}

/// The names `qkd simulate --protocol` accepts.
pub const PROTOCOLS: &str = "bb84 (decoy), e91, bbm92, noh09, kak3";

/// Refuse what is not key distribution.
pub fn refuse_kak3(path: &Path) -> crate::error::Error {
    ConfigError::invalid(
        "protocol",
        format!(
            "{}: Kak's three-stage protocol is not key distribution: it carries a message by commuting rotations and, with the multi-photon pulses it needs in practice, an eavesdropper tapping the three transits reads the message (see `qkd simulate --protocol kak3`'s report); there is no key to distill",
            path.display()
        ),
    )
    .into()
}
