//! Faults on the classical channel (issue 13): frames dropped, duplicated, reordered,
//! corrupted or delayed between the parties. Every damaging fault ends in a clean abort,
//! never in a wrong or mismatched key; delays change nothing.

mod common;

use common::{Scratch, short_link, simulate};
use qkd_distill::block::{BlockReport, SecretKey};
use qkd_distill::classical::Link;
use qkd_distill::classical::faults::{FaultPlan, faulty_pair};
use qkd_distill::config::DistillSettings;
use qkd_distill::keystore::KeySink;
use qkd_distill::party::{Party, PartyConfig, PartyInput};
use qkd_distill::progress::NoProgress;
use qkd_distill::protocol::Role;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Keys by block, as confirmed by both parties.
#[derive(Clone, Default)]
struct Keys(Arc<Mutex<Vec<BlockKey>>>);

/// (block id, key bytes).
type BlockKey = (u64, Vec<u8>);

/// Sets one kind of fault in a plan.
type SetFault = fn(&mut FaultPlan);

impl KeySink for Keys {
    fn append(&mut self, block: &BlockReport, key: &SecretKey) -> qkd_distill::error::Result<()> {
        self.0
            .lock()
            .unwrap()
            .push((block.id, key.as_bytes().to_vec()));
        Ok(())
    }
}

fn settings() -> DistillSettings {
    DistillSettings {
        block_bits: 1 << 21,
        ..DistillSettings::default()
    }
}

fn party(dir: &Path, role: Role, log: &str) -> Party {
    let mut c = PartyConfig::new(role, settings(), dir.join(format!("work-{}", role.name())));
    c.deterministic_seed = Some(11);
    Party::new(PartyInput::open(&dir.join(log)).unwrap(), c).unwrap()
}

struct Outcome {
    alice: (Option<String>, Vec<BlockKey>),
    bob: (Option<String>, Vec<BlockKey>),
    damaging: u64,
}

fn run(dir: &Path, to_bob: FaultPlan, to_alice: FaultPlan) -> Outcome {
    let (la, lb, cb, ca) =
        faulty_pair(1 << 16, Some(3), to_bob, to_alice, Duration::from_secs(3)).unwrap();
    let (a, b) = (
        party(dir, Role::Alice, "alice.qpl"),
        party(dir, Role::Bob, "bob.qdl"),
    );
    let (ka, kb) = (Keys::default(), Keys::default());
    let (la, lb): (Arc<dyn Link>, Arc<dyn Link>) = (Arc::new(la), Arc::new(lb));
    let (ra, rb) = std::thread::scope(|s| {
        let (ka, kb) = (ka.clone(), kb.clone());
        let ha = s.spawn(move || a.run(la, ka, Arc::new(NoProgress)).result);
        let hb = s.spawn(move || b.run(lb, kb, Arc::new(NoProgress)).result);
        (ha.join().unwrap(), hb.join().unwrap())
    });
    let keys = |k: &Keys| k.0.lock().unwrap().clone();
    Outcome {
        alice: (ra.error.map(|e| e.to_string()), keys(&ka)),
        bob: (rb.error.map(|e| e.to_string()), keys(&kb)),
        damaging: ca.damaging() + cb.damaging(),
    }
}

/// The blocks both parties stored are the same keys, block by block.
fn assert_no_mismatch(o: &Outcome, what: &str) {
    for (id, ka) in &o.alice.1 {
        if let Some((_, kb)) = o.bob.1.iter().find(|(i, _)| i == id) {
            assert_eq!(ka, kb, "{what}: block {id} differs");
        }
    }
}

#[test]
fn every_fault_aborts_cleanly_and_never_gives_a_wrong_key() {
    let d = Scratch::new("faults");
    simulate(d.path(), 130_000_000, 5, &short_link());
    let clean = run(d.path(), FaultPlan::default(), FaultPlan::default());
    assert!(clean.alice.0.is_none() && clean.bob.0.is_none());
    assert!(
        clean.alice.1.len() >= 3,
        "several blocks: {}",
        clean.alice.1.len()
    );
    assert_eq!(clean.alice.1, clean.bob.1);
    let kinds: [(&str, SetFault); 4] = [
        ("drop", |p| p.drop = 0.05),
        ("duplicate", |p| p.duplicate = 0.05),
        ("reorder", |p| p.reorder = 0.05),
        ("corrupt", |p| p.corrupt = 0.05),
    ];
    for (what, set) in kinds {
        for (seed, towards_bob) in [(1u64, true), (2, false), (3, true)] {
            let mut plan = FaultPlan {
                seed,
                after_frames: 5 + 20 * seed,
                ..Default::default()
            };
            set(&mut plan);
            let (tb, ta) = if towards_bob {
                (plan, FaultPlan::default())
            } else {
                (FaultPlan::default(), plan)
            };
            let t = Instant::now();
            let o = run(d.path(), tb, ta);
            let what = format!("{what} (seed {seed}, towards Bob {towards_bob})");
            assert!(o.damaging > 0, "{what}: no fault was injected");
            // The fault is detected: at least one party stops with an error, none runs on.
            assert!(
                o.alice.0.is_some() || o.bob.0.is_some(),
                "{what}: a damaged channel went unnoticed"
            );
            let errors = format!("{:?} {:?}", o.alice.0, o.bob.0);
            assert!(
                errors.contains("authentication")
                    || errors.contains("closed")
                    || errors.contains("timeout"),
                "{what}: {errors}"
            );
            // Whatever was stored before the fault is the reference key's prefix.
            assert_no_mismatch(&o, &what);
            for (id, k) in o.alice.1.iter().chain(&o.bob.1) {
                let r = clean.alice.1.iter().find(|(i, _)| i == id).unwrap();
                assert_eq!(&r.1, k, "{what}: block {id} is not the reference key");
            }
            assert!(t.elapsed() < Duration::from_secs(60), "{what}: bounded");
        }
    }
    // Delays alone change nothing.
    let slow = FaultPlan {
        seed: 9,
        delay_prob: 0.05,
        delay: Duration::from_millis(20),
        ..Default::default()
    };
    let o = run(d.path(), slow.clone(), FaultPlan { seed: 10, ..slow });
    assert!(o.alice.0.is_none() && o.bob.0.is_none(), "{:?}", o.bob.0);
    assert_eq!(o.alice.1, clean.alice.1);
    assert_eq!(o.bob.1, clean.bob.1);
}
