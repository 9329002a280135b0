//! Every adapter on files written from the documented layouts.

use super::ptu::{PtuEvent, PtuWriter, header_bytes, rectype};
use super::*;
use crate::io::detection_log::DetectionLog;
use rand::{Rng, RngExt, SeedableRng};

struct Dir(PathBuf);
impl Dir {
    fn new(tag: &str) -> Dir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "qkd-import-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    fn join(&self, s: &str) -> PathBuf {
        self.0.join(s)
    }
}
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read_back(path: &Path) -> Vec<Record> {
    let log = DetectionLog::open(path).unwrap();
    log.verify_all().unwrap();
    let mut out = Vec::new();
    for b in 0..log.blocks().len() {
        out.extend(log.block(b).unwrap().iter());
    }
    out
}

fn run(dir: &Dir, bytes: &[u8], opts: &ImportOptions) -> (Result<ImportReport>, PathBuf) {
    let input = dir.join("in.bin");
    std::fs::write(&input, bytes).unwrap();
    let out = dir.join("out.qdl");
    let _ = std::fs::remove_file(&out);
    (import(&[input], opts, Some((&out, true))), out)
}

fn ptu_opts() -> ImportOptions {
    ImportOptions {
        format: ImportFormat::Ptu,
        ..Default::default()
    }
}

/// Events with long idle gaps (many wraps of the time field) and events at field boundaries.
fn t2_events(rng: &mut impl Rng, wrap: u64, sync: bool, markers: bool) -> Vec<(u64, PtuEvent)> {
    let mut t = 0u64;
    let mut out = Vec::new();
    for i in 0..3000u64 {
        t += match i % 500 {
            0 => wrap * rng.random_range(1..5000), // idle gap of thousands of wraps
            1 => wrap - (t % wrap),                // land exactly on a wrap boundary
            2 => wrap - 1 - (t % wrap),            // the last value before a wrap
            _ => rng.random_range(1..wrap / 3),
        };
        let e = match rng.random_range(0..10) {
            0 if sync => PtuEvent::Sync { time: t },
            1 if markers => PtuEvent::Marker {
                time: t,
                mask: rng.random_range(1..16),
            },
            _ => PtuEvent::Photon {
                channel: rng.random_range(0..4),
                time: t,
                dtime: 0,
            },
        };
        out.push((t, e));
    }
    out
}

fn write_ptu(
    rec_type: u32,
    gres: f64,
    res: f64,
    events: &[PtuEvent],
    single: bool,
    zero: bool,
) -> Vec<u8> {
    let mut w = PtuWriter::new(Vec::new(), rec_type);
    w.single_overflows = single;
    w.zero_means_one = zero;
    for &e in events {
        w.write(e).unwrap();
    }
    let records = w.records();
    let mut bytes = header_bytes(rec_type, gres, res, records);
    bytes.extend_from_slice(&w.into_inner());
    bytes
}

#[test]
fn ptu_t2_every_record_type_imports_exactly() {
    let dir = Dir::new("ptu2");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let types = [
        (rectype::PICOHARP_T2, 210_698_240u64, 4e-12),
        (rectype::HYDRAHARP1_T2, 33_552_000, 1e-12),
        (rectype::HYDRAHARP2_T2, 33_554_432, 1e-12),
        (rectype::TIMEHARP260N_T2, 33_554_432, 25e-12),
        (rectype::TIMEHARP260P_T2, 33_554_432, 250e-12),
        (rectype::GENERIC_T2, 33_554_432, 5e-12),
    ];
    for (rt, wrap, gres) in types {
        for (single, zero) in [(false, false), (true, false), (true, true)] {
            let hh = rt != rectype::PICOHARP_T2;
            let evs = t2_events(&mut rng, wrap, hh, true);
            let bytes = write_ptu(
                rt,
                gres,
                gres,
                &evs.iter().map(|e| e.1).collect::<Vec<_>>(),
                single,
                zero,
            );
            let (report, out) = run(&dir, &bytes, &ptu_opts());
            let report = report.unwrap_or_else(|e| panic!("{rt:#x}: {e}"));
            assert!(report.overflows > 0);
            assert_eq!(report.tick, Tick::from_seconds(gres).unwrap());
            let got = read_back(&out);
            assert_eq!(got.len(), evs.len(), "{rt:#x}");
            for ((t, e), r) in evs.iter().zip(&got) {
                match *e {
                    PtuEvent::Photon { channel, .. } => {
                        assert_eq!(
                            (r.time, r.channel, r.kind),
                            (*t as i64, channel, RecordKind::Detection),
                            "{rt:#x}"
                        );
                    }
                    PtuEvent::Sync { .. } => {
                        assert_eq!(
                            (r.time, r.channel, r.kind),
                            (*t as i64, ptu::SYNC_CHANNEL, RecordKind::Sync)
                        );
                    }
                    PtuEvent::Marker { mask, .. } => {
                        assert_eq!(
                            (r.channel, r.kind, r.aux),
                            (ptu::MARKER_CHANNEL, RecordKind::Marker, u32::from(mask))
                        );
                        // Marker times are low-resolution (PicoHarp T2 keeps the mask in the
                        // time tag's low bits).
                        assert!((r.time - *t as i64).abs() < 16, "{rt:#x}");
                    }
                }
            }
        }
    }
}

#[test]
fn ptu_t3_every_record_type_imports_exactly() {
    let dir = Dir::new("ptu3");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    for rt in [
        rectype::PICOHARP_T3,
        rectype::HYDRAHARP1_T3,
        rectype::HYDRAHARP2_T3,
        rectype::TIMEHARP260N_T3,
        rectype::TIMEHARP260P_T3,
        rectype::GENERIC_T3,
    ] {
        let wrap: u64 = if rt == rectype::PICOHARP_T3 {
            65_536
        } else {
            1024
        };
        let max_dtime: u16 = if rt == rectype::PICOHARP_T3 {
            4095
        } else {
            32767
        };
        let (gres, res) = (12.5e-9, 1e-12); // 80 MHz sync, 1 ps bins
        for (single, zero) in [(false, false), (true, true)] {
            let mut sync = 0u64;
            let mut evs = Vec::new();
            for i in 0..2000u64 {
                sync += match i % 400 {
                    0 => wrap * rng.random_range(1..3000),
                    1 => wrap - sync % wrap,
                    _ => rng.random_range(0..wrap / 2),
                };
                let e = if i % 37 == 5 {
                    PtuEvent::Marker {
                        time: sync,
                        mask: rng.random_range(1..16),
                    }
                } else {
                    PtuEvent::Photon {
                        channel: rng.random_range(0..4),
                        time: sync,
                        dtime: rng.random_range(0..=max_dtime),
                    }
                };
                evs.push(e);
            }
            let bytes = write_ptu(rt, gres, res, &evs, single, zero);
            let (report, out) = run(&dir, &bytes, &ptu_opts());
            let report = report.unwrap_or_else(|e| panic!("{rt:#x}: {e}"));
            assert_eq!(report.tick, Tick::PS);
            let got = read_back(&out);
            assert_eq!(got.len(), evs.len());
            // Records come out time-sorted; a marker shares its sync with photons, so compare
            // as multisets of (time, channel, kind, aux).
            let mut expect: Vec<(i64, u16, RecordKind, u32)> = evs
                .iter()
                .map(|e| match *e {
                    PtuEvent::Photon {
                        channel,
                        time,
                        dtime,
                    } => (
                        time as i64 * 12_500 + i64::from(dtime),
                        channel,
                        RecordKind::Detection,
                        time as u32,
                    ),
                    PtuEvent::Marker { time, mask } => (
                        time as i64 * 12_500,
                        ptu::MARKER_CHANNEL,
                        RecordKind::Marker,
                        u32::from(mask),
                    ),
                    PtuEvent::Sync { .. } => unreachable!(),
                })
                .collect();
            let mut have: Vec<_> = got
                .iter()
                .map(|r| (r.time, r.channel, r.kind, r.aux))
                .collect();
            expect.sort_by_key(|e| (e.0, e.1, e.3));
            have.sort_by_key(|e| (e.0, e.1, e.3));
            assert_eq!(have, expect, "{rt:#x}");
        }
    }
}

#[test]
fn ptu_errors_name_file_and_offset() {
    let dir = Dir::new("ptubad");
    let evs: Vec<PtuEvent> = (0..100u64)
        .map(|i| PtuEvent::Photon {
            channel: 1,
            time: i * 1000,
            dtime: 0,
        })
        .collect();
    let good = write_ptu(rectype::HYDRAHARP2_T2, 1e-12, 1e-12, &evs, false, false);
    // Truncated data: fewer records than announced.
    let (r, _) = run(&dir, &good[..good.len() - 40], &ptu_opts());
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("in.bin") && e.contains("truncated") && e.contains("offset"),
        "{e}"
    );
    // A partial record.
    let (r, _) = run(&dir, &good[..good.len() - 2], &ptu_opts());
    assert!(r.unwrap_err().to_string().contains("PTU record"));
    // Bad magic.
    let mut bad = good.clone();
    bad[0] = b'X';
    let (r, _) = run(&dir, &bad, &ptu_opts());
    assert!(r.unwrap_err().to_string().contains("offset 0: bad magic"));
    // Header cut inside the tag list.
    let (r, _) = run(&dir, &good[..100], &ptu_opts());
    assert!(r.unwrap_err().to_string().contains("PTU tag entry"));
    // Unsupported record type.
    let bytes = header_bytes(0x0001_0299, 1e-12, 1e-12, 0);
    let (r, _) = run(&dir, &bytes, &ptu_opts());
    assert!(r.unwrap_err().to_string().contains("record type"));
    // Nothing is written on error.
    assert!(!dir.join("out.qdl").exists());
}

fn qcrypto_event(
    t: u64,
    pattern: u64,
    res: qcrypto::Resolution,
    order: qcrypto::WordOrder,
) -> [u8; 8] {
    let shift = if res == qcrypto::Resolution::Ps125 {
        15
    } else {
        10
    };
    let v = (t << shift) | pattern;
    let (hi, lo) = ((v >> 32) as u32, v as u32);
    let mut b = [0u8; 8];
    match order {
        qcrypto::WordOrder::Legacy => {
            b[..4].copy_from_slice(&hi.to_le_bytes());
            b[4..].copy_from_slice(&lo.to_le_bytes());
        }
        _ => b.copy_from_slice(&v.to_le_bytes()),
    }
    b
}

#[test]
fn qcrypto_raw_both_orders_and_resolutions() {
    let dir = Dir::new("qc");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    for res in [qcrypto::Resolution::Ps125, qcrypto::Resolution::Ps4] {
        for order in [qcrypto::WordOrder::Legacy, qcrypto::WordOrder::Native] {
            let bits = if res == qcrypto::Resolution::Ps125 {
                49
            } else {
                54
            };
            // Start near the rollover so that it is crossed.
            let mut t: u64 = (1u64 << bits) - 5_000_000;
            let mut bytes = Vec::new();
            let mut expect = Vec::new();
            let mut dummies = 0;
            for i in 0..5000 {
                t = (t + rng.random_range(1..4000u64)) % (1u64 << bits);
                if res == qcrypto::Resolution::Ps4 && i % 100 == 7 {
                    bytes.extend_from_slice(&qcrypto_event(t, 0x10, res, order));
                    dummies += 1;
                    continue;
                }
                let pattern = [1u64, 2, 4, 8, 6, 9][rng.random_range(0..6)];
                bytes.extend_from_slice(&qcrypto_event(t, pattern, res, order));
                expect.push(pattern);
            }
            for auto in [false, true] {
                let opts = ImportOptions {
                    format: ImportFormat::QcryptoRaw,
                    qcrypto_resolution: res,
                    word_order: if auto {
                        qcrypto::WordOrder::Auto
                    } else {
                        order
                    },
                    ..Default::default()
                };
                let (report, out) = run(&dir, &bytes, &opts);
                let report = report.unwrap();
                assert_eq!(report.dummies, dummies);
                assert_eq!(report.overflows, 1, "one rollover crossed");
                let got = read_back(&out);
                let clicks: usize = expect.iter().map(|p| p.count_ones() as usize).sum();
                assert_eq!(got.len(), clicks, "{res:?} {order:?} auto={auto}");
                assert!(got.windows(2).all(|w| w[0].time <= w[1].time));
                let multi = got.iter().filter(|r| r.flags & 1 == 1).count();
                assert_eq!(
                    multi,
                    expect.iter().filter(|p| p.count_ones() == 2).count() * 2
                );
            }
        }
    }
}

#[test]
fn qcrypto_packet_files() {
    let dir = Dir::new("qcp");
    // Type 1: header + legacy events + terminator.
    let mut t1 = Vec::new();
    for v in [1u32, 0x1234, 3, 49, 4] {
        t1.extend_from_slice(&v.to_le_bytes());
    }
    for t in [100u64, 200, 300] {
        t1.extend_from_slice(&qcrypto_event(
            t,
            1,
            qcrypto::Resolution::Ps125,
            qcrypto::WordOrder::Legacy,
        ));
    }
    t1.extend_from_slice(&[0u8; 8]);
    let opts = ImportOptions {
        format: ImportFormat::QcryptoT1,
        ..Default::default()
    };
    let (r, out) = run(&dir, &t1, &opts);
    r.unwrap();
    assert_eq!(
        read_back(&out).iter().map(|r| r.time).collect::<Vec<_>>(),
        vec![100, 200, 300]
    );
    // Without the terminator: truncation.
    let (r, _) = run(&dir, &t1[..t1.len() - 8], &opts);
    assert!(r.unwrap_err().to_string().contains("terminator"));

    // Type 2: small and escaped (≥ 2^w) differences.
    let epoch = 0x0000_0abcu32;
    let base = u64::from(epoch) << 32;
    let events: Vec<(u64, u32)> = vec![
        (base + 2, 1),
        (base + 10, 0),
        (base + 10 + (1 << 20), 1),
        (base + 10 + (1 << 20) + 5, 0),
    ];
    let bytes = qcrypto::encode_t2(epoch, 17, 1, 1, &events);
    let opts = ImportOptions {
        format: ImportFormat::QcryptoT2,
        ..Default::default()
    };
    let (r, out) = run(&dir, &bytes, &opts);
    r.unwrap();
    let got: Vec<(i64, u32)> = read_back(&out).iter().map(|r| (r.time, r.aux)).collect();
    assert_eq!(
        got,
        events
            .iter()
            .map(|&(t, d)| (t as i64, d))
            .collect::<Vec<_>>()
    );
    let (r, _) = run(&dir, &bytes[..bytes.len() - 4], &opts);
    assert!(r.unwrap_err().to_string().contains("bit stream"));
}

#[test]
fn qutag_binary_and_compressed_with_resort() {
    let dir = Dir::new("qt");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    let mut events: Vec<(u64, u16)> = Vec::new();
    let mut t = (1u64 << 37) - 2_000_000; // crosses the compressed 37-bit wrap
    for _ in 0..4000 {
        t += rng.random_range(100..2000);
        events.push((t, rng.random_range(0..3)));
    }
    // Merge order is not time order: swap neighbours from different channels (≤ 4 ns).
    let mut arrival = events.clone();
    for i in (1..arrival.len()).step_by(7) {
        if arrival[i].1 != arrival[i - 1].1 && arrival[i].0 - arrival[i - 1].0 < 4000 {
            arrival.swap(i, i - 1);
        }
    }
    let mut bin = super::qutag::MAGIC.to_vec();
    bin.resize(super::qutag::HEADER_LEN, 0);
    let mut comp = bin.clone();
    for &(t, c) in &arrival {
        bin.extend_from_slice(&t.to_le_bytes());
        bin.extend_from_slice(&c.to_le_bytes());
        let v = (t & ((1 << 37) - 1)) | (u64::from(c) << 37);
        comp.extend_from_slice(&v.to_le_bytes()[..5]);
    }
    // A millisecond tick and a marker.
    for (fmt, bytes) in [
        (ImportFormat::QutagBinary, &bin),
        (ImportFormat::QutagCompressed, &comp),
    ] {
        let opts = ImportOptions {
            format: fmt,
            resort_horizon_ps: 10_000.0,
            ..Default::default()
        };
        let (r, out) = run(&dir, bytes, &opts);
        let report = r.unwrap();
        assert!(report.out_of_order > 0 && report.max_out_of_order_ticks < 4000);
        let got: Vec<(u64, u16)> = read_back(&out)
            .iter()
            .map(|r| (r.time as u64, r.channel))
            .collect();
        let base = if fmt == ImportFormat::QutagCompressed {
            events[0].0 - (events[0].0 & ((1 << 37) - 1))
        } else {
            0
        };
        let mut want = events.clone();
        want.sort();
        let got_abs: Vec<(u64, u16)> = got.iter().map(|&(t, c)| (t + base, c)).collect();
        assert_eq!(got_abs, want, "{fmt:?}");
        // With a horizon smaller than the inversions: a clear error, not a silent sort.
        let strict = ImportOptions {
            resort_horizon_ps: 0.0,
            ..opts.clone()
        };
        let (r, _) = run(&dir, bytes, &strict);
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("out of order") && e.contains("in.bin") && e.contains("offset"),
            "{e}"
        );
    }
    // Channel 104 is the millisecond tick, 101 a marker.
    let mut b = super::qutag::MAGIC.to_vec();
    b.resize(40, 0);
    for (t, c) in [(10u64, 104u16), (20, 101), (30, 2)] {
        b.extend_from_slice(&t.to_le_bytes());
        b.extend_from_slice(&c.to_le_bytes());
    }
    let (r, out) = run(
        &dir,
        &b,
        &ImportOptions {
            format: ImportFormat::QutagBinary,
            ..Default::default()
        },
    );
    r.unwrap();
    let kinds: Vec<RecordKind> = read_back(&out).iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        vec![RecordKind::Clock, RecordKind::Marker, RecordKind::Detection]
    );
    // Partial record and bad magic.
    let (r, _) = run(
        &dir,
        &bin[..bin.len() - 3],
        &ImportOptions {
            format: ImportFormat::QutagBinary,
            ..Default::default()
        },
    );
    assert!(r.unwrap_err().to_string().contains("quTAG record"));
    let (r, _) = run(
        &dir,
        &bin[4..],
        &ImportOptions {
            format: ImportFormat::QutagBinary,
            ..Default::default()
        },
    );
    assert!(r.unwrap_err().to_string().contains("bad magic"));
}

#[test]
fn swabian_tags_with_gaps_and_missed_events() {
    let dir = Dir::new("sw");
    let tag = |ty: u8, missed: u16, ch: i32, t: i64| {
        let mut b = vec![ty, 0];
        b.extend_from_slice(&missed.to_le_bytes());
        b.extend_from_slice(&ch.to_le_bytes());
        b.extend_from_slice(&t.to_le_bytes());
        b
    };
    let mut bytes = Vec::new();
    bytes.extend(tag(0, 0, 1, 100));
    bytes.extend(tag(0, 0, -2, 150));
    bytes.extend(tag(2, 0, 0, 200));
    bytes.extend(tag(3, 0, 0, 900));
    bytes.extend(tag(4, 37, 1, 900));
    bytes.extend(tag(0, 0, 3, 1000));
    let opts = ImportOptions {
        format: ImportFormat::SwabianTag16,
        ..Default::default()
    };
    let (r, out) = run(&dir, &bytes, &opts);
    let report = r.unwrap();
    assert_eq!((report.gaps, report.missed_events), (1, 37));
    let got: Vec<(i64, u16, RecordKind)> = read_back(&out)
        .iter()
        .map(|r| (r.time, r.channel, r.kind))
        .collect();
    assert_eq!(
        got,
        vec![
            (100, 0, RecordKind::Detection),
            (150, 0x8001, RecordKind::Detection),
            (200, 0xFFFF, RecordKind::GapBegin),
            (900, 0xFFFF, RecordKind::GapEnd),
            (900, 0, RecordKind::MissedCount),
            (1000, 2, RecordKind::Detection),
        ]
    );
    let mut bad = bytes.clone();
    bad[16] = 9;
    let (r, _) = run(&dir, &bad, &opts);
    assert!(r.unwrap_err().to_string().contains("offset 16"));
}

#[test]
fn csv_with_header_units_and_kinds() {
    let dir = Dir::new("csv");
    let text =
        "# exported by a lab script\ntime_ns;channel;kind\n1.5;1;detection\n2;2;sync\n3.25;1;0\n";
    let opts = ImportOptions {
        format: ImportFormat::Csv,
        csv: text::CsvSpec {
            columns: text::CsvSpec::parse_columns("time,channel,kind").unwrap(),
            time_unit: text::CsvSpec::parse_unit("ns").unwrap(),
            tick_ps: 1.0,
            channel_base: 1,
            columns_from_header: false,
        },
        ..Default::default()
    };
    let (r, out) = run(&dir, text.as_bytes(), &opts);
    r.unwrap();
    let got: Vec<(i64, u16, RecordKind)> = read_back(&out)
        .iter()
        .map(|r| (r.time, r.channel, r.kind))
        .collect();
    assert_eq!(
        got,
        vec![
            (1500, 0, RecordKind::Detection),
            (2000, 1, RecordKind::Sync),
            (3250, 0, RecordKind::Detection)
        ]
    );
    let (r, _) = run(&dir, format!("{text}4;x;detection\n").as_bytes(), &opts);
    let e = r.unwrap_err().to_string();
    assert!(e.contains("line 6") && e.contains("channel"), "{e}");
    assert!(text::CsvSpec::parse_columns("time,time").is_err());
}

#[test]
fn multiple_inputs_concatenate_and_the_detector_map_is_stored() {
    let dir = Dir::new("multi");
    let a = dir.join("a.csv");
    let b = dir.join("b.csv");
    std::fs::write(&a, "10,0\n20,1\n").unwrap();
    std::fs::write(&b, "30,0\n40,4\n").unwrap();
    let out = dir.join("m.qdl");
    let opts = ImportOptions {
        format: ImportFormat::Csv,
        detectors: vec![
            (
                0,
                DetectorState {
                    basis: crate::protocol::Basis::Z,
                    value: 0,
                },
            ),
            (
                1,
                DetectorState {
                    basis: crate::protocol::Basis::Z,
                    value: 1,
                },
            ),
        ],
        sync_channel: Some(4),
        ..Default::default()
    };
    let report = import(&[a, b], &opts, Some((&out, false))).unwrap();
    assert_eq!(report.files.len(), 2);
    assert_eq!(report.records, 4);
    let log = DetectionLog::open(&out).unwrap();
    assert!(log.meta().detector_state(1).is_some());
    let sync = log.meta().channels.iter().find(|c| c.id == 4).unwrap();
    assert_eq!(sync.kind, ChannelKind::Sync);
    let recs = read_back(&out);
    assert_eq!(recs[3].kind, RecordKind::Sync);
    // Refuses to overwrite.
    assert!(import(&[dir.join("a.csv")], &opts, Some((&out, false))).is_err());
}
