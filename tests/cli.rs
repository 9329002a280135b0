//! The `qkd` binary: commands, exit codes, JSON reports, error messages.

mod common;

use common::{Scratch, flip_byte};
use std::path::Path;
use std::process::{Command, Output};

fn qkd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qkd"))
        .args(args)
        .output()
        .expect("running qkd")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn simulate_distill_inspect_amplify() {
    let d = Scratch::new("cli");
    let run = d.join("run");
    let o = qkd(&[
        "simulate",
        "--pulses",
        "40000000",
        "--distance-km",
        "5",
        "--seed",
        "7",
        "--out",
        s(&run),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let link = json(&run.join("link.json"));
    assert_eq!(link["pulses"], 40_000_000);
    assert!(link["expected"]["qber_key_overall"].as_f64().unwrap() > 0.005);

    let report = run.join("report.json");
    let o = qkd(&[
        "distill",
        "--alice",
        s(&run.join("alice.qpl")),
        "--bob",
        s(&run.join("bob.qdl")),
        "--out",
        s(&run.join("keys")),
        "--report",
        s(&report),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("secret key"), "{stdout}");
    let r = json(&report);
    for field in [
        "sifted_bits",
        "qber",
        "leaked_bits",
        "secret_bits",
        "epsilon_sec",
        "epsilon_cor",
        "blocks_ok",
        "blocks_failed",
        "aborted",
        "abort_reason",
        "elapsed_s",
        "sifted_bits_per_s",
        "stages",
    ] {
        assert!(r.get(field).is_some(), "report lacks {field}");
    }
    assert_eq!(r["aborted"], false);
    assert_eq!(r["epsilon_sec"], 1e-10);
    let bits = r["secret_bits"].as_u64().unwrap();
    assert!(bits > 0);
    let a = std::fs::read(run.join("keys/alice.key")).unwrap();
    assert_eq!(a, std::fs::read(run.join("keys/bob.key")).unwrap());
    assert_eq!(a.len() as u64 * 8, bits);
    assert!(
        r["stages"]["alice"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "error_correction" && s["items"].as_u64() > Some(0))
    );
    // The key is never printed.
    assert!(!stdout.contains(&format!("{:02x}{:02x}{:02x}{:02x}", a[0], a[1], a[2], a[3])));

    // A second distill into the same directory refuses to overwrite the keys.
    let o = qkd(&[
        "distill",
        "--alice",
        s(&run.join("alice.qpl")),
        "--bob",
        s(&run.join("bob.qdl")),
        "--out",
        s(&run.join("keys")),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("refusing to overwrite"));
    assert_eq!(std::fs::read(run.join("keys/alice.key")).unwrap(), a);

    // inspect, text and JSON.
    let o = qkd(&["inspect", s(&run.join("bob.qdl"))]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("all blocks verified"));
    let o = qkd(&["inspect", s(&run.join("alice.qpl")), "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["preparation"]["slots"], 40_000_000);
    assert_eq!(v["header"]["run_id"], link["run_id"]);

    // amplify the key with a seed file.
    let seed: Vec<u8> = (0..a.len() * 2).map(|i| (i * 131 % 251) as u8).collect();
    std::fs::write(d.join("seed.bin"), &seed).unwrap();
    let out = d.join("out.bin");
    let o = qkd(&[
        "amplify",
        "--input",
        s(&run.join("keys/alice.key")),
        "--seed",
        s(&d.join("seed.bin")),
        "--output-bits",
        "1000",
        "--out",
        s(&out),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&out).unwrap().len(), 125);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["input_bits"].as_u64().unwrap(), a.len() as u64 * 8);
    assert_eq!(
        v["seed_bits_used"].as_u64().unwrap(),
        a.len() as u64 * 8 + 999
    );
}

#[test]
fn amplify_matches_the_definition_and_rejects_short_seeds() {
    let d = Scratch::new("amp");
    // 2 input bytes (n = 16), M = 5, seed of n + M - 1 = 20 bits (3 bytes).
    let input = [0b1010_0110u8, 0b0000_0001];
    let seed = [0b1100_1011u8, 0b0111_0001, 0b1010_0101];
    std::fs::write(d.join("in"), input).unwrap();
    std::fs::write(d.join("seed"), seed).unwrap();
    let o = qkd(&[
        "amplify",
        "--input",
        s(&d.join("in")),
        "--seed",
        s(&d.join("seed")),
        "--output-bits",
        "5",
        "--out",
        s(&d.join("out")),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bit = |b: &[u8], i: usize| (b[i / 8] >> (i % 8)) & 1;
    let (n, m) = (16, 5);
    let mut expect = 0u8;
    for i in 0..m {
        let mut acc = 0;
        for j in 0..n {
            acc ^= bit(&seed, i + n - 1 - j) & bit(&input, j);
        }
        expect |= acc << i;
    }
    assert_eq!(std::fs::read(d.join("out")).unwrap(), vec![expect]);
    // M = 10 needs 25 seed bits; the file holds 24.
    let o = qkd(&[
        "amplify",
        "--input",
        s(&d.join("in")),
        "--seed",
        s(&d.join("seed")),
        "--output-bits",
        "10",
        "--out",
        s(&d.join("out2")),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("seed") && err.contains("25"), "{err}");
    assert!(!d.join("out2").exists());
}

#[test]
fn full_eavesdropping_exits_1_without_keys() {
    let d = Scratch::new("clieve");
    let run = d.join("run");
    let o = qkd(&[
        "simulate",
        "--pulses",
        "5000000",
        "--distance-km",
        "5",
        "--attack",
        "intercept-resend:1.0",
        "--out",
        s(&run),
    ]);
    assert!(o.status.success());
    let o = qkd(&[
        "distill",
        "--alice",
        s(&run.join("alice.qpl")),
        "--bob",
        s(&run.join("bob.qdl")),
        "--out",
        s(&run.join("keys")),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["aborted"], true);
    assert_eq!(v["secret_bits"], 0);
    assert!(v["abort_reason"].as_str().unwrap().contains("QBER"));
    assert!(!run.join("keys/alice.key").exists() && !run.join("keys/bob.key").exists());
}

#[test]
fn a_flipped_byte_exits_2_naming_file_and_offset() {
    let d = Scratch::new("cliflip");
    let run = d.join("run");
    assert!(
        qkd(&["simulate", "--pulses", "3000000", "--out", s(&run)])
            .status
            .success()
    );
    let bob = run.join("bob.qdl");
    let len = std::fs::metadata(&bob).unwrap().len();
    flip_byte(&bob, len / 2);
    let o = qkd(&[
        "distill",
        "--alice",
        s(&run.join("alice.qpl")),
        "--bob",
        s(&bob),
        "--out",
        s(&run.join("keys")),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bob.qdl") && err.contains("offset"), "{err}");
    assert!(!run.join("keys/bob.key").exists());
    let o = qkd(&["inspect", s(&bob)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("checksum"));
}

#[test]
fn bad_arguments_exit_2() {
    let o = qkd(&[
        "distill",
        "--alice",
        "/nonexistent/a.qpl",
        "--bob",
        "/nonexistent/b.qdl",
        "--out",
        "/tmp/x",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/a.qpl"));
    let o = qkd(&[
        "simulate",
        "--pulses",
        "10",
        "--out",
        "/tmp/qkd-never",
        "--attack",
        "photon-cloning",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown attack"));
    let o = qkd(&["distill", "--epsilon-sec", "2"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn demo_runs_end_to_end() {
    let d = Scratch::new("demo");
    let report = d.join("demo.json");
    let o = qkd(&[
        "demo",
        "--pulses",
        "30000000",
        "--distance-km",
        "5",
        "--report",
        s(&report),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("identical secret bits") && out.contains("equal"),
        "{out}"
    );
    assert!(json(&report)["secret_bits"].as_u64().unwrap() > 0);
}

#[test]
fn pa_block_bits_sets_the_finite_key_unit() {
    let d = Scratch::new("pablock");
    let run = d.join("run");
    let o = qkd(&[
        "simulate",
        "--pulses",
        "60000000",
        "--distance-km",
        "5",
        "--seed",
        "9",
        "--out",
        s(&run),
    ]);
    assert!(o.status.success());
    let mut blocks = Vec::new();
    for (i, size) in ["auto", "2^21", "2M"].iter().enumerate() {
        let report = d.join(&format!("r{i}.json"));
        let o = qkd(&[
            "distill",
            "--alice",
            s(&run.join("alice.qpl")),
            "--bob",
            s(&run.join("bob.qdl")),
            "--out",
            s(&d.join(&format!("k{i}"))),
            "--pa-block-bits",
            size,
            "--report",
            s(&report),
        ]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let r = json(&report);
        blocks.push((
            r["settings"]["block_bits"].as_u64().unwrap(),
            r["blocks"].as_array().unwrap().len(),
            r["secret_bits"].as_u64().unwrap(),
        ));
        // Every ε term is in the report, and the run's ε is composed over the blocks of the key
        // file: B blocks are B·ε_sec-secret and B·ε_cor-correct.
        assert!(r["security"]["epsilon_per_term"].as_f64().unwrap() > 0.0);
        let with_key = r["blocks_ok"].as_u64().unwrap() as f64;
        assert_eq!(r["epsilon_sec_per_block"], 1e-10);
        assert_eq!(r["epsilon_sec"].as_f64().unwrap(), with_key * 1e-10);
        assert_eq!(r["epsilon_cor"].as_f64().unwrap(), with_key * 1e-15);
        assert_eq!(
            r["security"]["epsilon_sec"].as_f64().unwrap(),
            with_key * 1e-10
        );
        let per_block: f64 = r["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["outcome"]["status"] == "key")
            .map(|b| b["verification"]["collision_bound"].as_f64().unwrap())
            .sum();
        let run_bound = r["security"]["verification_collision_bound"]
            .as_f64()
            .unwrap();
        assert!(
            (run_bound - per_block).abs() <= 1e-12 * per_block,
            "{run_bound} {per_block}"
        );
    }
    // auto: the whole input (≈ 4 M sifted bits) is one block of the next power of two.
    assert_eq!(blocks[0].1, 1);
    assert!(blocks[0].0.is_power_of_two() && blocks[0].0 >= 1 << 20);
    // 2^21 and 2M are the same size and cut the input into blocks, each with its own
    // statistics: more finite-size cost, less key.
    assert_eq!(blocks[1].0, 1 << 21);
    assert_eq!(blocks[1].0, blocks[2].0);
    assert_eq!(blocks[1].1, 2);
    assert!(blocks[1].2 < blocks[0].2);
    // A two-block run's key is 2·10⁻¹⁰-secret (each block is 10⁻¹⁰).
    let r = json(&d.join("r1.json"));
    assert_eq!(r["blocks_ok"], 2);
    assert_eq!(r["epsilon_sec"], 2e-10);
    assert!(
        String::from_utf8_lossy(&qkd(&["distill", "--help"]).stdout)
            .contains("cut into 2^27-bit blocks")
    );
    // Nonsense is refused with the flag's name.
    let o = qkd(&[
        "distill",
        "--alice",
        "a",
        "--bob",
        "b",
        "--out",
        "c",
        "--pa-block-bits",
        "lots",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("pa-block-bits"));
}

#[test]
fn keyrate_prints_and_writes_rates_and_plot() {
    let d = Scratch::new("keyrate");
    let (j, svg) = (d.join("rate.json"), d.join("rate.svg"));
    let o = qkd(&[
        "keyrate",
        "--distance-km",
        "0,25,50,100,150",
        "--pulses",
        "1e11",
        "--json",
        s(&j),
        "--plot",
        s(&svg),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("PLOB"));
    let v = json(&j);
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    let mut last = f64::INFINITY;
    for r in &rows[1..] {
        let fin = r["finite_key"].as_f64().unwrap();
        let asym = r["asymptotic_decoy"].as_f64().unwrap();
        let plob = r["plob"].as_f64().unwrap();
        assert!(fin > 0.0 && fin <= asym && asym < plob, "{r}");
        assert!(fin < last);
        last = fin;
        let bps = r["finite_key_bps"].as_f64().unwrap();
        assert!((bps / (fin * 1e9) - 1.0).abs() < 1e-12);
    }
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.contains("PLOB"));
    // The Lim et al. preset with optimisation at one distance.
    let o = qkd(&[
        "keyrate",
        "--preset",
        "lim2014",
        "--distance-km",
        "100",
        "--sifted-bits",
        "1e9",
        "--optimize",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = qkd(&["keyrate", "--preset", "nope"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn bench_pa_writes_the_documented_fields() {
    let d = Scratch::new("benchpa");
    let j = d.join("pa.json");
    let o = qkd(&[
        "bench",
        "pa",
        "--input-bits",
        "4096,262144",
        "--reps",
        "1",
        "--threads",
        "1",
        "--json",
        s(&j),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = json(&j);
    let rows = v["rows"].as_array().unwrap();
    for field in [
        "input_bits",
        "output_bits",
        "throughput_bps",
        "threads",
        "algorithm",
    ] {
        assert!(rows.iter().all(|r| r.get(field).is_some()), "{field}");
    }
    let algs: Vec<&str> = rows
        .iter()
        .map(|r| r["algorithm"].as_str().unwrap())
        .collect();
    assert!(algs.contains(&"direct") && algs.contains(&"additive_fft") && algs.contains(&"ntt"));
    assert!(!v["speedup_vs_ntt"].as_array().unwrap().is_empty());
}

/// A Swabian tag file of `records` records (1 ps apart per channel pair), for the memory test.
fn write_swabian(path: &Path, records: u64) {
    use std::io::Write;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut rec = [0u8; 16];
    for i in 0..records {
        rec[4..8].copy_from_slice(&((i % 4) as i32 + 1).to_le_bytes());
        rec[8..16].copy_from_slice(&((i * 1000) as i64).to_le_bytes());
        w.write_all(&rec).unwrap();
    }
    w.flush().unwrap();
}

#[test]
fn import_streams_in_constant_memory_and_export_round_trips() {
    let d = Scratch::new("mem");
    let mut peaks = Vec::new();
    // 40 MB and 320 MB of input: the peak memory of the import must not grow with the input.
    for (i, records) in [2_500_000u64, 20_000_000].iter().enumerate() {
        let input = d.join(&format!("tags{i}.bin"));
        write_swabian(&input, *records);
        let (out, rep) = (
            d.join(&format!("tags{i}.qdl")),
            d.join(&format!("rep{i}.json")),
        );
        let o = qkd(&[
            "import",
            s(&input),
            "--format",
            "swabian-tag16",
            "--out",
            s(&out),
            "--report",
            s(&rep),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r = json(&rep);
        assert_eq!(r["records"].as_u64().unwrap(), *records);
        if let Some(p) = r["peak_rss_bytes"].as_u64() {
            peaks.push(p);
        }
        std::fs::remove_file(&input).unwrap();
        if i == 0 {
            // Export: header and the first records, device channel 1 → id 0.
            let o = qkd(&["export", s(&out)]);
            assert!(o.status.success());
            let text = String::from_utf8_lossy(&o.stdout);
            let mut lines = text.lines();
            assert_eq!(lines.next(), Some("time_ticks,time_ps,channel,kind"));
            assert_eq!(lines.next(), Some("0,0,0,detection"));
            assert_eq!(lines.next(), Some("1000,1000,1,detection"));
            assert_eq!(text.lines().count() as u64, records + 1);
        }
        std::fs::remove_file(&out).unwrap();
    }
    #[cfg(target_os = "linux")]
    {
        assert_eq!(peaks.len(), 2);
        assert!(
            peaks[1] < 200 << 20,
            "peak RSS {} MB on 320 MB of input",
            peaks[1] >> 20
        );
        assert!(
            peaks[1] < peaks[0] + (32 << 20),
            "memory grew with the input: {peaks:?}"
        );
    }
}

#[test]
fn import_errors_name_file_and_offset_and_sync_is_reported() {
    let d = Scratch::new("imperr");
    let bad = d.join("cut.bin");
    std::fs::write(&bad, [0u8; 16 * 3 + 5]).unwrap();
    let o = qkd(&[
        "import",
        s(&bad),
        "--format",
        "swabian-tag16",
        "--out",
        s(&d.join("x.qdl")),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("cut.bin") && e.contains("offset 48") && e.contains("truncated"),
        "{e}"
    );
    assert!(!d.join("x.qdl").exists());
    let o = qkd(&["import", s(&bad), "--format", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown format"));

    // A raw-tag simulation distills through the CLI with a sync section in the report.
    let run = d.join("raw");
    let o = qkd(&[
        "simulate",
        "--pulses",
        "20000000",
        "--distance-km",
        "5",
        "--raw-timetags",
        "--clock-offset-us",
        "50",
        "--clock-drift-ppm",
        "-3",
        "--out",
        s(&run),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rep = d.join("r.json");
    let o = qkd(&[
        "distill",
        "--alice",
        s(&run.join("alice.qpl")),
        "--bob",
        s(&run.join("bob.qdl")),
        "--out",
        s(&run.join("keys")),
        "--report",
        s(&rep),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r = json(&rep);
    assert!((r["sync"]["drift_ppm"].as_f64().unwrap() + 3.0).abs() < 0.02);
    assert!(r["ledger"]["sync_sample_bits"].as_u64().unwrap() > 0);
    let o = qkd(&[
        "sync",
        "--alice",
        s(&run.join("alice.qpl")),
        "--bob",
        s(&run.join("bob.qdl")),
        "--out",
        s(&d.join("synced.qdl")),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["clock_source"], "sync channel");
}

#[test]
fn other_protocols_simulate_and_distill() {
    let d = Scratch::new("protocols");
    let sim = |proto: &str, pulses: &str, extra: &[&str], dir: &Path| {
        let mut args = vec![
            "simulate",
            "--protocol",
            proto,
            "--pulses",
            pulses,
            "--out",
            s(dir),
        ];
        args.extend_from_slice(extra);
        let o = qkd(&args);
        assert!(
            o.status.success(),
            "{proto}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let distill = |dir: &Path, extra: &[&str]| {
        let rep = dir.join("r.json");
        let (a, b, k) = (dir.join("alice.qdl"), dir.join("bob.qdl"), dir.join("keys"));
        let mut args = vec![
            "distill",
            "--alice",
            s(&a),
            "--bob",
            s(&b),
            "--out",
            s(&k),
            "--report",
            s(&rep),
        ];
        args.extend_from_slice(extra);
        (qkd(&args), rep)
    };
    // The same top-level report as BB84, for every protocol.
    let fields = |r: &serde_json::Value| {
        for f in [
            "protocol",
            "sifted_bits",
            "secret_bits",
            "aborted",
            "abort_reason",
            "epsilon_sec",
            "ledger",
            "security",
            "blocks",
            "monitors",
            "warnings",
        ] {
            assert!(r.get(f).is_some(), "{f} missing");
        }
    };
    // BBM92: a key from the Tomamichel bound, identical on both sides.
    let b = d.join("bbm92");
    sim("bbm92", "20000000", &["--distance-km", "10"], &b);
    let (o, rep) = distill(&b, &[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r = json(&rep);
    fields(&r);
    assert_eq!(r["protocol"], "bbm92");
    assert!(r["secret_bits"].as_u64().unwrap() > 0);
    assert_eq!(r["security"]["proof"]["proof"], "tomamichel2012");
    assert_eq!(r["secure"], true);
    assert!(r["blocks"][0]["phase_error"]["bits"].as_u64().unwrap() > 10_000);
    assert_eq!(
        std::fs::read(b.join("keys/alice.key")).unwrap(),
        std::fs::read(b.join("keys/bob.key")).unwrap()
    );
    // Every distill option is honoured: a lower --max-qber aborts on the ≈ 3.8 % error rate
    // (of the key sample first, then of the test pairs).
    let (o, rep) = distill(&b, &["--max-qber", "0.02", "--force"]);
    assert_eq!(o.status.code(), Some(1));
    let kind = json(&rep)["abort"]["kind"].as_str().unwrap().to_string();
    assert!(
        kind == "qber_too_high" || kind == "phase_error_too_high",
        "{kind}"
    );
    let (o, rep) = distill(&b, &["--max-qber", "0.02", "--qber-sample", "0", "--force"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json(&rep)["abort"]["kind"], "phase_error_too_high");
    // E91 under intercept-resend: S ≤ 2, the Bell test aborts, exit 1, no key files.
    let e = d.join("e91");
    sim("e91", "5000000", &["--attack", "intercept-resend:1"], &e);
    let (o, rep) = distill(&e, &[]);
    assert_eq!(o.status.code(), Some(1));
    let r = json(&rep);
    fields(&r);
    assert_eq!(r["abort"]["kind"], "bell_test_failed");
    assert!(!e.join("keys/alice.key").exists());
    assert!(String::from_utf8_lossy(&o.stdout).contains("Bell test failed"));
    // Noh09: the counterfactual events feed the same back end; flagged as not proven.
    let n = d.join("noh");
    sim("noh09", "2000000", &["--visibility", "0.99"], &n);
    let (o, rep) = distill(&n, &["--qber-sample", "0.02"]);
    assert_eq!(o.status.code(), Some(0));
    let r = json(&rep);
    fields(&r);
    assert!(r["sifted_bits"].as_u64().unwrap() > 10_000);
    assert_eq!(r["security"]["proof"]["security_proven"], false);
    assert_eq!(r["secure"], false);
    assert!(String::from_utf8_lossy(&o.stdout).contains("NOT security-proven"));
    // Insecure deterministic randomness: flagged and ε withdrawn, for every protocol.
    let (o, rep) = distill(&n, &["--insecure-deterministic-rng", "3", "--force"]);
    assert_eq!(o.status.code(), Some(0));
    let r = json(&rep);
    assert_eq!(r["deterministic_rng"], true);
    assert!(r["epsilon_sec"].is_null() && r["security"]["epsilon_total"].is_null());
    assert!(String::from_utf8_lossy(&o.stdout).contains("NOT secure"));
    // Kak3: simulated, and refused by distill with a clear message.
    let k = d.join("kak");
    sim("kak3", "20000", &[], &k);
    let (o, _) = distill(&k, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not key distribution"));
}

/// `bench ec`: a frame left with residual errors counts as failed (FER and f), and the CSV
/// rows have the header's columns.
#[test]
fn bench_ec_counts_residual_errors_as_failures() {
    let d = Scratch::new("bench-ec");
    let (j, c) = (d.join("ec.json"), d.join("ec.csv"));
    let o = qkd(&[
        "bench",
        "ec",
        "--method",
        "cascade",
        "--variant",
        "yan,original",
        "--qber",
        "0.05,0.1",
        "--block-bits",
        "1024",
        "--frames",
        "400",
        "--json",
        s(&j),
        "--csv",
        s(&c),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = json(&j);
    let mut residual = 0;
    for r in rows.as_array().unwrap() {
        let frames = r["frames"].as_f64().unwrap();
        let und = r["undetected_errors"].as_u64().unwrap();
        residual += und;
        assert!(
            r["fer"].as_f64().unwrap() * frames >= und as f64 - 1e-9,
            "{r}"
        );
    }
    assert!(
        residual > 0,
        "small frames at 5–10 % leave some residual errors"
    );
    let text = std::fs::read_to_string(&c).unwrap();
    let mut lines = text.lines();
    let cols = lines.next().unwrap().split(',').count();
    assert!(lines.all(|l| l.split(',').count() == cols));
}

#[test]
fn bench_distill_reports_the_stages_rates_and_read_floor_of_a_distill() {
    let d = Scratch::new("bench-distill");
    let (logs, j) = (d.join("logs"), d.join("bench.json"));
    let o = qkd(&[
        "bench",
        "distill",
        "--pulses",
        "30000000",
        "--distances-km",
        "0",
        "--repeat",
        "2",
        "--insecure-deterministic-rng",
        "5",
        "--dir",
        s(&logs),
        "--json",
        s(&j),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("read floor") && out.contains("slots/s"),
        "{out}"
    );
    let report = json(&j);
    let link = &report["links"][0];
    assert_eq!(link["slots"], 30_000_000);
    assert_eq!(link["repeats"], 2);
    assert_eq!(link["elapsed_s"].as_array().unwrap().len(), 2);
    assert_eq!(link["outcome"], "key");
    let elapsed = link["elapsed_median_s"].as_f64().unwrap();
    let sifted = link["sifted_bits"].as_f64().unwrap();
    assert!((link["sifted_bits_per_s"].as_f64().unwrap() * elapsed - sifted).abs() < 1.0);
    assert!(link["read_floor_median_s"].as_f64().unwrap() > 0.0);
    let lens = std::fs::metadata(logs.join("link-0km/alice.qpl"))
        .unwrap()
        .len()
        + std::fs::metadata(logs.join("link-0km/bob.qdl"))
            .unwrap()
            .len();
    assert_eq!(link["input_bytes"].as_u64().unwrap(), lens);
    let stages = link["stages"].as_array().unwrap();
    for party in ["alice", "bob"] {
        for name in ["sifting", "error_correction", "privacy_amplification"] {
            assert!(
                stages
                    .iter()
                    .any(|s| s["party"] == party && s["name"] == name),
                "{party} {name}: {stages:?}"
            );
        }
    }
    // The bench distills what `qkd distill` distills: the same logs give the same key length
    // with the same deterministic protocol seed.
    let report_file = d.join("distill.json");
    let o = qkd(&[
        "distill",
        "--alice",
        s(&logs.join("link-0km/alice.qpl")),
        "--bob",
        s(&logs.join("link-0km/bob.qdl")),
        "--out",
        s(&d.join("keys")),
        "--insecure-deterministic-rng",
        "5",
        "--report",
        s(&report_file),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r = json(&report_file);
    assert_eq!(r["sifted_bits"], link["sifted_bits"]);
    assert_eq!(r["secret_bits"], link["secret_bits"]);
    // Its logs are outputs like any other: a second run into the same folder needs --force.
    let o = qkd(&[
        "bench",
        "distill",
        "--pulses",
        "1000000",
        "--distances-km",
        "0",
        "--dir",
        s(&logs),
    ]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("alice.qpl"));
}

#[test]
fn phase_remapping_needs_a_two_way_system() {
    let d = Scratch::new("remap-cli");
    let o = qkd(&[
        "simulate",
        "--pulses",
        "1000000",
        "--attack",
        "phase-remapping:0.5",
        "--out",
        s(&d.join("run")),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--two-way"));
    let o = qkd(&[
        "simulate",
        "--pulses",
        "1000000",
        "--attack",
        "phase-remapping:0.5",
        "--two-way",
        "--out",
        s(&d.join("run")),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let meta =
        String::from_utf8_lossy(&std::fs::read(d.join("run/alice.qpl")).unwrap()).to_string();
    assert!(meta.contains("pulse_timing"));
}
