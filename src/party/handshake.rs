//! The session handshake: Alice offers the protocol versions she speaks, the protocol, her
//! run id and slot count, her settings and (BB84) her source parameters; Bob checks each against
//! his own and refuses a mismatch with a message naming the setting, or accepts with the
//! version chosen, the block size both use (Bob resolves `auto` from his detection count) and
//! whether his log needs time synchronisation first.

use super::{PartyInput, Resume};
use crate::classical::message::{PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN};
use crate::classical::{ClassicalChannel, Message, unexpected};
use crate::config::DistillSettings;
use crate::error::{ConfigError, Error, ProtocolError, Result};
use crate::io::RunId;
use crate::ledger::LeakageLedger;
use crate::protocol::DecoyParams;
use crate::protocols::ProtocolKind;
use serde::{Deserialize, Serialize};

/// What both parties agreed on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agreed {
    /// Session protocol version.
    pub version: u16,
    /// The protocol.
    pub protocol: ProtocolKind,
    /// Settings, with the block size resolved.
    pub settings: DistillSettings,
    /// Decoy-state source parameters (BB84).
    pub decoy: Option<DecoyParams>,
    /// Bob's log holds raw time tags and is synchronised first.
    pub needs_sync: bool,
    /// Slots of the run.
    pub total_slots: u64,
}

#[derive(Serialize, Deserialize)]
struct HelloSettings {
    settings: DistillSettings,
    decoy: Option<DecoyParams>,
    #[serde(default)]
    resume: Resume,
}

/// The settings two parties disagree on, named: `name: Alice …, Bob …` for each.
pub fn settings_mismatch(alice: &DistillSettings, bob: &DistillSettings) -> Vec<String> {
    let (a, b) = (
        serde_json::to_value(alice).expect("settings serialize"),
        serde_json::to_value(bob).expect("settings serialize"),
    );
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return vec![];
    };
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, v)| {
            format!(
                "setting `{k}`: Alice {v}, Bob {}",
                b.get(k).unwrap_or(&serde_json::Value::Null)
            )
        })
        .collect()
}

/// Refuse the session: tell the peer why, and return the error.
fn refuse(ch: &mut ClassicalChannel, e: Error) -> Error {
    ch.abort(&e);
    e
}

/// Alice's side.
pub fn alice(
    ch: &mut ClassicalChannel,
    input: &PartyInput,
    protocol: ProtocolKind,
    settings: &DistillSettings,
    resume: Resume,
) -> Result<Agreed> {
    let decoy = input.decoy().cloned();
    let hello = HelloSettings {
        settings: settings.clone(),
        decoy: decoy.clone(),
        resume,
    };
    let run_id = input.run_id();
    let total_slots = input.total_slots().unwrap_or(0);
    ch.send_unaccounted(&Message::Hello {
        version_min: PROTOCOL_VERSION_MIN,
        version_max: PROTOCOL_VERSION_MAX,
        protocol: protocol.name().into(),
        run_id: run_id.0,
        total_slots,
        settings: serde_json::to_string(&hello).expect("settings serialize"),
    })?;
    match ch.recv(&mut LeakageLedger::default())? {
        Message::HelloAck {
            version,
            run_id: bob_run,
            block_bits,
            needs_sync,
        } => {
            if bob_run != run_id.0 {
                return Err(ConfigError::Mismatch(format!(
                    "Bob's log is from run {}, but {} is from run {run_id}; the logs do not belong together",
                    RunId(bob_run),
                    input.path().display(),
                ))
                .into());
            }
            if !(PROTOCOL_VERSION_MIN..=PROTOCOL_VERSION_MAX).contains(&version) {
                return Err(ProtocolError::Malformed(format!(
                    "Bob chose protocol version {version}, outside Alice's {PROTOCOL_VERSION_MIN}–{PROTOCOL_VERSION_MAX}"
                ))
                .into());
            }
            let mut settings = settings.clone();
            if settings.block_bits != 0 && settings.block_bits != block_bits {
                return Err(ProtocolError::Disagreement {
                    what: "block size",
                    detail: format!(
                        "Alice {} bits, Bob answered {block_bits}",
                        settings.block_bits
                    ),
                }
                .into());
            }
            settings.block_bits = block_bits;
            settings.validate()?;
            Ok(Agreed {
                version,
                protocol,
                settings,
                decoy,
                needs_sync,
                total_slots,
            })
        }
        other => Err(unexpected("HelloAck", &other)),
    }
}

/// Bob's side.
pub fn bob(
    ch: &mut ClassicalChannel,
    input: &PartyInput,
    protocol: ProtocolKind,
    settings: &DistillSettings,
    resume: Resume,
) -> Result<Agreed> {
    let (version_min, version_max, their_protocol, run_id, total_slots, text) =
        match ch.recv(&mut LeakageLedger::default())? {
            Message::Hello {
                version_min,
                version_max,
                protocol,
                run_id,
                total_slots,
                settings,
            } => (
                version_min,
                version_max,
                protocol,
                run_id,
                total_slots,
                settings,
            ),
            other => return Err(unexpected("Hello", &other)),
        };
    let version = version_max.min(PROTOCOL_VERSION_MAX);
    if version < version_min.max(PROTOCOL_VERSION_MIN) {
        let e = ProtocolError::Disagreement {
            what: "protocol version",
            detail: format!(
                "Alice speaks {version_min}–{version_max}, Bob {PROTOCOL_VERSION_MIN}–{PROTOCOL_VERSION_MAX}"
            ),
        };
        return Err(refuse(ch, e.into()));
    }
    if their_protocol != protocol.name() {
        let e = ConfigError::Mismatch(format!(
            "Alice runs {their_protocol}, but {} is a {} log; the logs do not belong together",
            input.path().display(),
            protocol.name()
        ));
        return Err(refuse(ch, e.into()));
    }
    let mine = input.run_id();
    if run_id != mine.0 {
        let e = ConfigError::Mismatch(format!(
            "{} is from run {mine}, but Alice's log is from run {}; the logs do not belong together",
            input.path().display(),
            RunId(run_id)
        ));
        return Err(refuse(ch, e.into()));
    }
    // A log still being written may not know its length yet (0).
    if let Some(t) = input.total_slots()
        && t != total_slots
        && t != 0
        && total_slots != 0
    {
        let e = ConfigError::Mismatch(format!(
            "{} covers {t} slots, Alice's log {total_slots}",
            input.path().display()
        ));
        return Err(refuse(ch, e.into()));
    }
    let hello: HelloSettings = match serde_json::from_str(&text) {
        Ok(h) => h,
        Err(e) => {
            let e = ProtocolError::Malformed(format!("Hello settings: {e}"));
            return Err(refuse(ch, e.into()));
        }
    };
    let diff = settings_mismatch(&hello.settings, settings);
    if !diff.is_empty() {
        let e = ProtocolError::Disagreement {
            what: "session settings",
            detail: diff.join("; "),
        };
        return Err(refuse(ch, e.into()));
    }
    if hello.resume != resume {
        let e = ProtocolError::Disagreement {
            what: "resume point",
            detail: format!(
                "Alice resumes at block {} (slot {}), Bob at block {} (slot {})",
                hello.resume.first_block,
                hello.resume.start_slot,
                resume.first_block,
                resume.start_slot
            ),
        };
        return Err(refuse(ch, e.into()));
    }
    let decoy = match (protocol, hello.decoy) {
        (ProtocolKind::Bb84, Some(d)) => {
            if let Err(e) = d.validate() {
                return Err(refuse(ch, e.into()));
            }
            Some(d)
        }
        (ProtocolKind::Bb84, None) => {
            let e = ProtocolError::Malformed("BB84 Hello without source parameters".into());
            return Err(refuse(ch, e.into()));
        }
        (_, _) => None,
    };
    let mut settings = settings.clone();
    if settings.block_bits == 0 {
        // The expected sifted key bits: detections where both chose the key basis, less the
        // sample (BB84); every detection, as an upper bound, for the other protocols.
        let records = input.detection_records() as f64;
        let expected = match &decoy {
            Some(d) => records * d.prob_key_basis * d.prob_key_basis,
            None => records,
        } * (1.0 - settings.qber_sample_fraction);
        settings.block_bits = crate::config::auto_block_bits(expected as u64);
    }
    let needs_sync = input.needs_sync();
    ch.send_unaccounted(&Message::HelloAck {
        version,
        run_id: mine.0,
        block_bits: settings.block_bits,
        needs_sync,
    })?;
    Ok(Agreed {
        version,
        protocol,
        settings,
        decoy,
        needs_sync,
        total_slots,
    })
}
