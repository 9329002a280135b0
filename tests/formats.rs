//! Native formats: round trips, and bad input that must give a clear error naming the file and
//! offset (truncation, flipped bytes, wrong magic).

mod common;

use common::{Scratch, flip_byte, simulate};
use proptest::prelude::*;
use qkd_distill::io::detection_log::{ChannelInfo, ChannelKind, DetectionMeta, DetectorState};
use qkd_distill::io::header::{FLAG_SECRET, FLAG_SLOT_ANNOTATED, FileHeader};
use qkd_distill::io::prep_log::{PrepMeta, SlotPlanes};
use qkd_distill::io::{
    DetectionLog, DetectionLogWriter, PrepLog, PrepLogWriter, Record, RecordKind, RunId, Symbol,
};
use qkd_distill::protocol::{Basis, DecoyParams};
use qkd_distill::sim::link::LinkParams;
use std::path::Path;

fn header(meta: String, flags: u32) -> FileHeader {
    FileHeader {
        version: (1, 0),
        flags,
        tick_num: 1,
        tick_den: 1_000_000_000,
        origin_unix_ns: 1_700_000_000_000_000_000,
        run_id: RunId(*b"testrun!"),
        metadata_json: meta,
        header_len: 0,
    }
}

fn det_meta() -> String {
    let m = DetectionMeta {
        role: "bob".into(),
        source_format: "test".into(),
        channels: vec![
            ChannelInfo {
                id: 0,
                name: "H".into(),
                kind: ChannelKind::Detector,
                state: Some(DetectorState {
                    basis: Basis::Z,
                    value: 0,
                }),
            },
            ChannelInfo {
                id: 7,
                name: "sync".into(),
                kind: ChannelKind::Sync,
                state: None,
            },
        ],
        total_slots: None,
        extra: Default::default(),
    };
    serde_json::to_string(&m).unwrap()
}

fn write_qdl(path: &Path, records: &[Record]) {
    let mut w =
        DetectionLogWriter::create(path, &header(det_meta(), FLAG_SLOT_ANNOTATED), true).unwrap();
    w.write_records(records).unwrap();
    w.finish().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn detection_log_round_trip(times in proptest::collection::vec(0i64..1_000_000, 0..3000), kinds in proptest::collection::vec(0u8..9, 3000)) {
        let dir = Scratch::new("qdlrt");
        let mut times = times;
        times.sort();
        let records: Vec<Record> = times.iter().zip(&kinds).enumerate().map(|(i, (&t, &k))| Record {
            time: t, channel: (i % 3) as u16, kind: RecordKind::from_u8(k).unwrap(), flags: (i % 2) as u8, aux: i as u32 * 7,
        }).collect();
        let p = dir.join("x.qdl");
        write_qdl(&p, &records);
        let log = DetectionLog::open(&p).unwrap();
        prop_assert_eq!(log.total_records(), records.len() as u64);
        prop_assert_eq!(log.header().run_id, RunId(*b"testrun!"));
        prop_assert_eq!(log.header().origin_unix_ns, 1_700_000_000_000_000_000);
        let back: Vec<Record> = (0..log.blocks().len()).flat_map(|i| log.block(i).unwrap().iter().collect::<Vec<_>>()).collect();
        prop_assert_eq!(back, records);
    }

    #[test]
    fn prep_log_round_trip(syms in proptest::collection::vec((any::<bool>(), any::<bool>(), 0u8..3), 1..2000), split in 1usize..2000) {
        let dir = Scratch::new("qplrt");
        let p = dir.join("a.qpl");
        let meta = PrepMeta { role: "alice".into(), source_format: "test".into(), protocol: "decoy-bb84".into(),
            decoy: DecoyParams::default(), total_slots: syms.len() as u64, planes: vec![], extra: Default::default() };
        let mut w = PrepLogWriter::create(&p, &header(serde_json::to_string(&meta).unwrap(), FLAG_SECRET), true).unwrap();
        let split = split.min(syms.len());
        for part in [&syms[..split], &syms[split..]] {
            if part.is_empty() { continue; }
            let mut planes = SlotPlanes::zeros(part.len());
            for (i, &(b, v, c)) in part.iter().enumerate() {
                planes.set(i, Symbol { basis: Basis::from_bit(b), value: v, intensity: c });
            }
            w.write_block(&planes).unwrap();
        }
        w.finish().unwrap();
        let log = PrepLog::open(&p).unwrap();
        for (slot, &(b, v, c)) in syms.iter().enumerate() {
            let blk = log.block(log.block_of_slot(slot as u64).unwrap()).unwrap();
            prop_assert_eq!(blk.symbol(slot as u64), Symbol { basis: Basis::from_bit(b), value: v, intensity: c });
        }
        prop_assert!(log.block_of_slot(syms.len() as u64).is_none());
    }

    /// Alice's packed gather of the symbols at increasing slots, across block boundaries,
    /// equals the per-slot reference.
    #[test]
    fn packed_gather_equals_the_per_slot_reference(syms in proptest::collection::vec((any::<bool>(), any::<bool>(), 0u8..3), 1..3000), cuts in proptest::collection::vec(1usize..700, 1..6), pick in proptest::collection::vec(any::<bool>(), 3000)) {
        use qkd_distill::sifting::{AliceSymbols, PrepCursor};
        let dir = Scratch::new("gather");
        let p = dir.join("a.qpl");
        let meta = PrepMeta { role: "alice".into(), source_format: "test".into(), protocol: "decoy-bb84".into(),
            decoy: DecoyParams::default(), total_slots: syms.len() as u64, planes: vec![], extra: Default::default() };
        let mut w = PrepLogWriter::create(&p, &header(serde_json::to_string(&meta).unwrap(), FLAG_SECRET), true).unwrap();
        let mut at = 0usize;
        for c in cuts.iter().copied().chain(std::iter::once(usize::MAX)) {
            let part = &syms[at..(at.saturating_add(c)).min(syms.len())];
            if part.is_empty() { break; }
            let mut planes = SlotPlanes::zeros(part.len());
            for (i, &(b, v, c)) in part.iter().enumerate() {
                planes.set(i, Symbol { basis: Basis::from_bit(b), value: v, intensity: c });
            }
            w.write_block(&planes).unwrap();
            at += part.len();
        }
        w.finish().unwrap();
        let log = std::sync::Arc::new(PrepLog::open(&p).unwrap());
        let slots: Vec<u64> = (0..syms.len() as u64).filter(|&s| pick[s as usize]).collect();
        let fast = AliceSymbols::gather(&mut PrepCursor::new(log.clone(), None), &slots).unwrap();
        let slow = AliceSymbols::gather_reference(&mut PrepCursor::new(log, None), &slots).unwrap();
        prop_assert_eq!(&fast.basis, &slow.basis);
        prop_assert_eq!(&fast.value, &slow.value);
        prop_assert_eq!(&fast.classes, &slow.classes);
        prop_assert_eq!(fast.basis.len(), slots.len());
    }
}

#[cfg(unix)]
#[test]
fn prep_logs_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Scratch::new("perm");
    simulate(dir.path(), 1000, 1, &LinkParams::default());
    let mode = std::fs::metadata(dir.join("alice.qpl"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

fn err_of<T>(r: qkd_distill::error::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn flipped_bytes_are_caught_with_file_and_offset() {
    let dir = Scratch::new("flip");
    simulate(dir.path(), 3_000_000, 1, &LinkParams::default());
    let qdl = dir.join("bob.qdl");
    let log = DetectionLog::open(&qdl).unwrap();
    let b1 = log.blocks()[0].offset;
    drop(log);
    // A byte inside the first block's records.
    flip_byte(&qdl, b1 + 32 + 16 * 5 + 3);
    let log = DetectionLog::open(&qdl).unwrap();
    let msg = err_of(log.verify_all());
    assert!(
        msg.contains("bob.qdl")
            && msg.contains(&format!("offset {b1}"))
            && msg.contains("checksum"),
        "{msg}"
    );
    // In the metadata: the header checksum fails.
    let qpl = dir.join("alice.qpl");
    flip_byte(&qpl, 70);
    let msg = err_of(PrepLog::open(&qpl));
    assert!(
        msg.contains("alice.qpl") && msg.contains("offset 0") && msg.contains("checksum"),
        "{msg}"
    );
}

#[test]
fn truncation_is_caught_at_every_boundary() {
    let dir = Scratch::new("trunc");
    simulate(dir.path(), 1_500_000, 2, &LinkParams::default());
    for name in ["bob.qdl", "alice.qpl"] {
        let full = std::fs::read(dir.join(name)).unwrap();
        for cut in [
            0usize,
            5,
            40,
            64,
            100,
            full.len() / 2,
            full.len() - 33,
            full.len() - 1,
        ] {
            let p = dir.join(&format!("cut-{cut}-{name}"));
            std::fs::write(&p, &full[..cut]).unwrap();
            let msg = if name.ends_with("qdl") {
                err_of(DetectionLog::open(&p).and_then(|l| l.verify_all()))
            } else {
                err_of(PrepLog::open(&p).and_then(|l| l.verify_all()))
            };
            assert!(msg.contains(&format!("cut-{cut}-{name}")), "{msg}");
            assert!(
                msg.contains("offset") || msg.contains("truncated"),
                "cut {cut}: {msg}"
            );
        }
    }
}

#[test]
fn a_detection_log_cut_at_a_block_boundary_is_refused() {
    let dir = Scratch::new("cutblock");
    simulate(dir.path(), 3_000_000, 2, &LinkParams::default());
    let p = dir.join("bob.qdl");
    let log = DetectionLog::open(&p).unwrap();
    assert!(log.blocks().len() >= 2);
    let cut = log.blocks()[1].offset as usize;
    drop(log);
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..cut]).unwrap();
    let msg = err_of(DetectionLog::open(&p));
    assert!(
        msg.contains("bob.qdl") && msg.contains(&format!("offset {cut}")) && msg.contains("footer"),
        "{msg}"
    );
}

#[test]
fn wrong_magic_and_swapped_files_are_named() {
    let dir = Scratch::new("magic");
    simulate(dir.path(), 1000, 1, &LinkParams::default());
    let msg = err_of(DetectionLog::open(&dir.join("alice.qpl")));
    assert!(
        msg.contains("alice.qpl") && msg.contains("bad magic") && msg.contains("preparation log"),
        "{msg}"
    );
    std::fs::write(
        dir.join("junk.qdl"),
        b"hello world, not a log at all, definitely more than 64 bytes long!!",
    )
    .unwrap();
    let msg = err_of(DetectionLog::open(&dir.join("junk.qdl")));
    assert!(
        msg.contains("junk.qdl") && msg.contains("offset 0"),
        "{msg}"
    );
}

#[test]
fn records_out_of_their_block_range_are_refused() {
    // Hand-craft a block whose record time lies outside [first_time, last_time].
    let dir = Scratch::new("range");
    let p = dir.join("x.qdl");
    write_qdl(
        &p,
        &[Record::detection(5, 0, 0), Record::detection(9, 0, 0)],
    );
    let mut b = std::fs::read(&p).unwrap();
    let log = DetectionLog::open(&p).unwrap();
    let off = log.blocks()[0].offset as usize;
    drop(log);
    // last_time := 6, then fix the checksum so that only the range check can catch it.
    b[off + 24..off + 32].copy_from_slice(&6i64.to_le_bytes());
    let end = off + 32 + 32;
    let sum = blake3::hash(&b[off..end]);
    b[end..end + 32].copy_from_slice(sum.as_bytes());
    std::fs::write(&p, &b).unwrap();
    let msg = err_of(DetectionLog::open(&p).unwrap().verify_all());
    assert!(
        msg.contains(&format!("offset {}", off + 32 + 16)) && msg.contains("record time"),
        "{msg}"
    );
}
