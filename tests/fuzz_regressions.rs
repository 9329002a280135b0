//! The fuzz targets' inputs as tests: every file of `fuzz/corpus/TARGET/` (the committed seed
//! corpora) and of `fuzz/regressions/TARGET/` (inputs that once crashed a target) goes
//! through the target's function in `qkd_distill::fuzzing`, which must not panic.
//!
//! `cargo test --test fuzz_regressions -- --ignored write_seed_corpora` rebuilds the seed
//! corpora from simulated runs and the encoders.

mod common;

use qkd_distill::fuzzing::TARGETS;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

#[test]
fn corpora_and_regressions_run_clean() {
    let mut n = 0;
    for (name, f) in TARGETS {
        for kind in ["corpus", "regressions"] {
            let dir = fuzz_dir().join(kind).join(name);
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd {
                let p = e.unwrap().path();
                let bytes = std::fs::read(&p).unwrap();
                f(&bytes);
                n += 1;
            }
        }
    }
    assert!(n >= TARGETS.len(), "every target has seeds ({n} files)");
}

fn put(target: &str, name: &str, bytes: &[u8]) {
    let d = fuzz_dir().join("corpus").join(target);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(name), bytes).unwrap();
}

#[test]
#[ignore]
fn write_seed_corpora() {
    use qkd_distill::classical::Link;
    use qkd_distill::classical::faults::{FaultPlan, faulty_pair};
    use std::sync::{Arc, Mutex};
    let d = common::Scratch::new("corpus");
    // Small logs of a simulated run.
    common::simulate(d.path(), 20_000, 3, &common::short_link());
    put(
        "qpl",
        "sim.qpl",
        &std::fs::read(d.join("alice.qpl")).unwrap(),
    );
    put("qdl", "sim.qdl", &std::fs::read(d.join("bob.qdl")).unwrap());
    // Time-tagger inputs: the first byte picks the format (see fuzzing::import).
    let t2 = qkd_distill::io::import::qcrypto::encode_t2(3, 17, 4, 1, &[(3 << 32 | 10, 1)]);
    put("import", "qcrypto-t2", &[&[3u8][..], &t2].concat());
    put(
        "import",
        "csv",
        b"\x07time_ps,channel,kind\n10,1,detection\n20,2,sync\n",
    );
    put("import", "swabian", &[&[6u8][..], &[0u8; 32]].concat());
    put(
        "import",
        "qcrypto-raw",
        &[1u8, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8],
    );
    // Codes.
    let code = qkd_distill::error_correction::ldpc::catalog::by_name("qc-r0.80-n16384").unwrap();
    put("qc", "r080.qc", code.code.to_text().as_bytes());
    put(
        "alist",
        "tiny.alist",
        b"4 2\n2 3\n2 2 2 2\n3 3\n1 2\n1 2\n1 2\n2 0\n1 2 3\n1 2 4\n",
    );
    // Messages and link frames of a real session (both directions).
    let rec = Arc::new(Mutex::new(Vec::new()));
    let plan = || FaultPlan {
        record: Some(rec.clone()),
        ..Default::default()
    };
    let (la, lb, _, _) = faulty_pair(
        1 << 12,
        Some(1),
        plan(),
        plan(),
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let messages = Arc::new(Mutex::new(Vec::new()));
    {
        use qkd_distill::config::DistillSettings;
        use qkd_distill::party::{Party, PartyConfig, PartyInput};
        use qkd_distill::progress::NoProgress;
        use qkd_distill::protocol::Role;
        common::simulate(d.path(), 2_000_000, 3, &common::short_link());
        let party = |role: Role, log: &str| {
            let mut c = PartyConfig::new(role, DistillSettings::default(), d.join("w"));
            c.deterministic_seed = Some(1);
            Party::new(PartyInput::open(&d.join(log)).unwrap(), c).unwrap()
        };
        let (a, b) = (party(Role::Alice, "alice.qpl"), party(Role::Bob, "bob.qdl"));
        let (la, lb): (Arc<dyn Link>, Arc<dyn Link>) = (Arc::new(la), Arc::new(lb));
        let sink = || qkd_distill::keystore::KeyFile::create(&d.join("k"), true).unwrap();
        std::thread::scope(|s| {
            let ka = sink();
            let ha = s.spawn(move || a.run(la, ka, Arc::new(NoProgress)));
            let _ = b.run(lb, sink(), Arc::new(NoProgress));
            let _ = ha.join();
        });
    }
    let frames = rec.lock().unwrap().clone();
    assert!(frames.len() > 10);
    let mut stream = Vec::new();
    for (i, f) in frames.iter().enumerate().take(64) {
        put("link_frame", &format!("frame{i:03}"), f);
        stream.extend_from_slice(&(f.len() as u32).to_le_bytes());
        stream.extend_from_slice(f);
        // The message inside a data frame (after the 18-byte header and optional words).
        if f.len() > 18 {
            messages.lock().unwrap().push(f[18..].to_vec());
        }
    }
    put("tcp_stream", "session", &stream);
    for (i, m) in messages.lock().unwrap().iter().enumerate().take(64) {
        put("message", &format!("msg{i:03}"), m);
    }
    // ETSI GS QKD 014 requests: kind << 1 | post, query NUL body.
    put("etsi_request", "enc_get", b"\x00number=2&size=256\x00");
    put(
        "etsi_request",
        "enc_post",
        b"\x01\x00{\"number\":2,\"size\":256}",
    );
    put(
        "etsi_request",
        "dec_post",
        b"\x03\x00{\"key_IDs\":[{\"key_ID\":\"bc490419-7d60-487f-adc1-4ddcc177c139\"}]}",
    );
    put(
        "etsi_request",
        "dec_get",
        b"\x02key_ID=bc490419-7d60-487f-adc1-4ddcc177c139\x00",
    );
    put(
        "etsi_request",
        "reserve",
        b"\x05\x00{\"master_SAE_ID\":\"a\",\"slave_SAE_ID\":\"b\",\"keys\":[]}",
    );
    put("etsi_request", "release", b"\x07\x00{\"key_IDs\":[]}");
}
