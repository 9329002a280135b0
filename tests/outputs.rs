//! What commands write: never over an input or an existing file without `--force`, never a
//! key pair from two runs, never a report that disagrees with the keys and the exit code,
//! and clear errors for the inputs found to panic or pass silently (issue 13).

mod common;

use common::{Scratch, short_link, simulate};
use std::path::Path;
use std::process::{Command, Output, Stdio};

const QKD: &str = env!("CARGO_BIN_EXE_qkd");

fn qkd(args: &[&str]) -> Output {
    Command::new(QKD).args(args).output().expect("running qkd")
}

fn p(x: &Path) -> &str {
    x.to_str().unwrap()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn distill_args<'a>(d: &'a Scratch, out: &'a str) -> Vec<String> {
    vec![
        "distill".into(),
        "--alice".into(),
        d.join("alice.qpl").to_string_lossy().into_owned(),
        "--bob".into(),
        d.join("bob.qdl").to_string_lossy().into_owned(),
        "--out".into(),
        d.join(out).to_string_lossy().into_owned(),
        "--insecure-deterministic-rng".into(),
        "3".into(),
    ]
}

fn run(args: &[String]) -> Output {
    Command::new(QKD).args(args).output().unwrap()
}

/// Defect 1: a second distill into a folder in use is refused; two at once never splice.
#[test]
fn a_key_folder_in_use_is_refused_and_parallel_runs_never_splice() {
    let d = Scratch::new("lock");
    simulate(d.path(), 20_000_000, 5, &short_link());
    // The reference key of this run.
    let o = run(&distill_args(&d, "ref"));
    assert!(o.status.success(), "{}", err(&o));
    let reference = std::fs::read(d.join("ref/alice.key")).unwrap();
    // A folder locked by another process (here: this one) is refused, nothing written.
    let held = qkd_distill::io::DirLock::acquire(&d.join("busy"), "test").unwrap();
    let o = run(&distill_args(&d, "busy"));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err(&o).contains("in use by another qkd process"),
        "{}",
        err(&o)
    );
    assert!(!d.join("busy/alice.key").exists());
    drop(held);
    // Four at once into one folder: the ones that ran wrote the reference pair; the others
    // were refused (in use, or the keys already existed); never a mixed pair.
    let mut args = distill_args(&d, "same");
    args.push("--force".into());
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(QKD)
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ok = 0;
    for c in children {
        let o = c.wait_with_output().unwrap();
        match o.status.code() {
            Some(0) => ok += 1,
            Some(2) => assert!(err(&o).contains("in use"), "{}", err(&o)),
            other => panic!("exit {other:?}: {}", err(&o)),
        }
    }
    assert!(ok >= 1);
    let a = std::fs::read(d.join("same/alice.key")).unwrap();
    let b = std::fs::read(d.join("same/bob.key")).unwrap();
    assert_eq!(a, reference);
    assert_eq!(b, reference);
    let leftovers: Vec<_> = std::fs::read_dir(d.join("same"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial") || n == ".keys.commit")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Defect 2: a crash inside the pair commit is completed by the next run; a crash before it
/// leaves no key, and the next run removes the temporary files.
#[test]
fn an_interrupted_pair_commit_is_completed_or_cleaned_by_the_next_run() {
    let d = Scratch::new("pair");
    simulate(d.path(), 20_000_000, 5, &short_link());
    let o = run(&distill_args(&d, "keys"));
    assert!(o.status.success(), "{}", err(&o));
    let key = std::fs::read(d.join("keys/alice.key")).unwrap();
    // The state a kill between the two renames leaves: alice.key renamed, bob.key not yet,
    // the commit record present.
    let k = d.join("keys");
    std::fs::rename(k.join("bob.key"), k.join("bob.key.partial")).unwrap();
    let record = serde_json::json!({"files": [
        [k.join("alice.key.partial"), k.join("alice.key"), key.len()],
        [k.join("bob.key.partial"), k.join("bob.key"), key.len()],
    ]});
    std::fs::write(k.join(".keys.commit"), record.to_string()).unwrap();
    // The next run completes it first, then refuses to overwrite the committed pair.
    let o = run(&distill_args(&d, "keys"));
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("already exists"), "{}", err(&o));
    assert_eq!(std::fs::read(k.join("bob.key")).unwrap(), key);
    assert!(!k.join(".keys.commit").exists());
    // A kill before the record: only partial files; the next run removes them and succeeds.
    std::fs::remove_file(k.join("alice.key")).unwrap();
    std::fs::rename(k.join("bob.key"), k.join("bob.key.partial")).unwrap();
    std::fs::write(k.join("alice.key.partial"), b"half").unwrap();
    let o = run(&distill_args(&d, "keys"));
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(std::fs::read(k.join("alice.key")).unwrap(), key);
    assert_eq!(std::fs::read(k.join("bob.key")).unwrap(), key);
    assert!(!k.join("alice.key.partial").exists());
    assert!(String::from_utf8_lossy(&o.stdout).contains("removed"));
}

/// Defects 3 and 4: outputs never land on inputs or keys, never replace files without
/// --force, and a report that cannot be written leaves no keys (exit 2).
#[test]
fn outputs_never_overwrite_inputs_keys_or_files_without_force() {
    let d = Scratch::new("rules");
    simulate(d.path(), 20_000_000, 5, &short_link());
    let qdl = d.join("bob.qdl");
    let before = std::fs::read(&qdl).unwrap();
    // export onto its own input.
    for extra in [&[][..], &["--force"][..]] {
        let mut args = vec!["export", p(&qdl), "--out", p(&qdl)];
        args.extend_from_slice(extra);
        let o = qkd(&args);
        assert_eq!(o.status.code(), Some(2));
        assert!(err(&o).contains("also an input"), "{}", err(&o));
    }
    assert_eq!(std::fs::read(&qdl).unwrap(), before);
    // --report onto Alice's log, or onto a key of the same run.
    let mut a = distill_args(&d, "k");
    a.extend(["--report".into(), p(&d.join("alice.qpl")).into()]);
    let o = run(&a);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("also an input"), "{}", err(&o));
    let mut a = distill_args(&d, "k");
    a.extend([
        "--report".into(),
        p(&d.join("k/alice.key")).into(),
        "--force".into(),
    ]);
    let o = run(&a);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("same file"), "{}", err(&o));
    assert!(
        !d.join("k").exists(),
        "no folder left behind after an error"
    );
    // A report that cannot be written: exit 2, and no keys (the keys and the report are one
    // commit).
    let mut a = distill_args(&d, "k");
    a.extend(["--report".into(), p(&d.join("missing-dir/r.json")).into()]);
    let o = run(&a);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(!d.join("k/alice.key").exists() && !d.join("k/bob.key").exists());
    // Existing files are refused without --force, by every writer.
    let existing = d.join("existing");
    std::fs::write(&existing, b"keep me").unwrap();
    let e = p(&existing);
    let qpl = d.join("alice.qpl");
    let cases: Vec<Vec<&str>> = vec![
        vec!["export", p(&qdl), "--out", e],
        vec!["codes", "export", "qc-r0.80-n16384", "--out", e],
        vec!["keyrate", "--distance-km", "10", "--plot", e],
        vec!["keyrate", "--distance-km", "10", "--json", e],
        vec![
            "bench",
            "ec",
            "--qber",
            "0.02",
            "--frames",
            "2",
            "--block-bits",
            "16384",
            "--csv",
            e,
        ],
        vec!["simulate", "--pulses", "1000", "--out", p(d.path())],
        vec!["sync", "--alice", p(&qpl), "--bob", p(&qdl), "--out", e],
    ];
    for c in &cases {
        let o = qkd(c);
        assert_eq!(o.status.code(), Some(2), "{c:?}: {}", err(&o));
        assert!(err(&o).contains("--force"), "{c:?}: {}", err(&o));
        assert_eq!(std::fs::read(&existing).unwrap(), b"keep me", "{c:?}");
    }
    // demo --dir onto an earlier demo's keys.
    let demo = d.join("demo");
    let args = [
        "demo",
        "--pulses",
        "20000000",
        "--distance-km",
        "5",
        "--dir",
        p(&demo),
    ];
    let o = qkd(&args);
    assert!(o.status.success(), "{}", err(&o));
    let k = std::fs::read(demo.join("keys/alice.key")).unwrap();
    let o = qkd(&args);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("--force"), "{}", err(&o));
    assert_eq!(std::fs::read(demo.join("keys/alice.key")).unwrap(), k);
}

/// Defect 5: a mapped log truncated under the process is an error naming it (exit 2).
#[test]
fn a_log_truncated_while_mapped_exits_2_naming_it() {
    if let Ok(path) = std::env::var("QKD_TEST_TRUNCATE_CHILD") {
        // The child: map the file, truncate it, touch the lost pages.
        let path = std::path::PathBuf::from(path);
        let bytes = qkd_distill::io::FileBytes::open(&path).unwrap();
        assert!(bytes.is_mapped());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(4096)
            .unwrap();
        let sum: u64 = bytes.iter().map(|&b| b as u64).sum();
        panic!("read {sum} without a fault");
    }
    let d = Scratch::new("sigbus");
    let f = d.join("big.qdl");
    std::fs::write(&f, vec![7u8; 8 << 20]).unwrap();
    let o = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_log_truncated_while_mapped_exits_2_naming_it",
            "--nocapture",
        ])
        .env("QKD_TEST_TRUNCATE_CHILD", &f)
        .output()
        .unwrap();
    let e = err(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains(p(&f)) && e.contains("truncated"), "{e}");
}

/// Defect 6: the smaller ones.
#[test]
fn small_defects_give_clear_errors() {
    let d = Scratch::new("small");
    // amplify reads only the seed bits it needs (a device never ends).
    std::fs::write(d.join("in.bin"), vec![0x5au8; 4096]).unwrap();
    let o = qkd(&[
        "amplify",
        "--input",
        p(&d.join("in.bin")),
        "--seed",
        "/dev/urandom",
        "--output-bits",
        "1000",
        "--out",
        p(&d.join("out.bin")),
    ]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(std::fs::read(d.join("out.bin")).unwrap().len(), 125);
    // bench pa with an empty input.
    let o = qkd(&["bench", "pa", "--input-bits", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("input-bits"), "{}", err(&o));
    // keyrate arguments.
    for bad in [
        &["--pulses", "1.5"][..],
        &["--kappa=-1"][..],
        &["--sifted-bits", "1e20"][..],
        &["--epsilon-sec", "2"][..],
    ] {
        let mut a = vec!["keyrate", "--distance-km", "10"];
        a.extend_from_slice(bad);
        let o = qkd(&a);
        assert_eq!(o.status.code(), Some(2), "{bad:?}");
        assert!(
            err(&o).contains("invalid parameter"),
            "{bad:?}: {}",
            err(&o)
        );
    }
    // A closed stdout ends the command quietly, not with a panic.
    let mut c = Command::new(QKD)
        .args(["codes", "list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(c.stdout.take());
    let o = c.wait_with_output().unwrap();
    assert!(!err(&o).contains("panicked"), "{}", err(&o));
    assert_ne!(o.status.code(), Some(101));
}

fn import(d: &Scratch, name: &str, bytes: &[u8], fmt: &[&str]) -> Output {
    let f = d.join(name);
    std::fs::write(&f, bytes).unwrap();
    let out = d.join(&format!("{name}.qdl"));
    let mut a = vec!["import", p(&f), "--out", p(&out), "--force"];
    a.extend_from_slice(fmt);
    qkd(&a)
}

#[test]
fn imports_refuse_what_they_used_to_pass_silently() {
    let d = Scratch::new("imports");
    let csv = ["--format", "csv"];
    let case = |name: &str, bytes: &[u8], fmt: &[&str], needle: &str| {
        let o = import(&d, name, bytes, fmt);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", err(&o));
        assert!(err(&o).contains(needle), "{name}: {}", err(&o));
        assert!(!d.join(&format!("{name}.qdl")).exists(), "{name}");
        assert!(!d.join(&format!("{name}.qdl.partial")).exists(), "{name}");
    };
    // An unparseable first line with numbers in it is data, not a header.
    case("first.csv", b"10,x\n20,1\n", &csv, "offset 0");
    // --one-based: a channel 0 on the first line is an error, not a skipped header.
    case(
        "onebased.csv",
        b"1,0\n2,1\n",
        &["--format", "csv", "--one-based"],
        "channel",
    );
    // Times beyond 64-bit ticks.
    case(
        "huge.csv",
        b"1e30,1\n",
        &["--format", "csv", "--time-unit", "s"],
        "fits 64-bit",
    );
    // A channel mapped twice.
    case(
        "dup.csv",
        b"1,1\n2,1\n",
        &["--format", "csv", "--detectors", "1=Z0,1=Z1"],
        "mapped twice",
    );
    // Empty inputs.
    case("empty.csv", b"", &csv, "no events");
    case("empty.raw", b"", &["--format", "qcrypto-raw"], "no events");
    case(
        "empty.bin",
        b"",
        &["--format", "swabian-tag16"],
        "no events",
    );
    // qcrypto type-2 with an epoch ≥ 2^31.
    let t2 = qkd_distill::io::import::qcrypto::encode_t2(
        0x8000_0000,
        17,
        4,
        1,
        &[(0x8000_0000 << 32 | 10, 1)],
    );
    case("epoch.t2", &t2, &["--format", "qcrypto-t2"], "epoch");
    // A slot period of 0.
    case(
        "period.csv",
        b"1,1\n",
        &["--format", "csv", "--slot-period-ps", "0"],
        "slot-period-ps",
    );
}

/// `qkd export` output is read back by the default `import --format csv`.
#[test]
fn export_round_trips_through_the_default_csv_import() {
    let d = Scratch::new("roundtrip");
    simulate(d.path(), 2_000_000, 5, &short_link());
    let csv = d.join("bob.csv");
    let o = qkd(&["export", p(&d.join("bob.qdl")), "--out", p(&csv)]);
    assert!(o.status.success(), "{}", err(&o));
    let back = d.join("back.qdl");
    let o = qkd(&[
        "import",
        p(&csv),
        "--format",
        "csv",
        "--out",
        p(&back),
        "--json",
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let csv2 = d.join("back.csv");
    let o = qkd(&["export", p(&back), "--out", p(&csv2)]);
    assert!(o.status.success(), "{}", err(&o));
    // The same events: the time in ps, the channel and the kind of every record.
    let rows = |f: &Path| -> Vec<String> {
        std::fs::read_to_string(f)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| {
                let c: Vec<&str> = l.split(',').collect();
                format!("{},{},{}", c[1], c[2], c[3])
            })
            .collect()
    };
    let (a, b) = (rows(&csv), rows(&csv2));
    assert!(a.len() > 1000);
    assert_eq!(a, b);
}
