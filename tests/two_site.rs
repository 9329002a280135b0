//! Two `qkd` processes over TCP on 127.0.0.1: identical keys, tampering caught, wrong and
//! exhausted keys refused, kill and restart resumes, growing logs, flat memory. Every process
//! and every loop here is bounded in time; nothing but the loopback address is used.

mod common;

use common::{Scratch, short_link, simulate};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const QKD: &str = env!("CARGO_BIN_EXE_qkd");

/// A free port on 127.0.0.1 (bound and released; the processes bind it right after).
fn port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Common arguments: short timeouts so that a failing test ends quickly.
fn site_args(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec![];
    for (flag, default) in [("--connect-timeout-s", "20"), ("--peer-timeout-s", "15")] {
        if !extra.contains(&flag) {
            v.extend([flag.to_string(), default.to_string()]);
        }
    }
    if !extra.contains(&"--pa-block-bits") {
        v.extend(["--pa-block-bits".to_string(), "2^21".to_string()]);
    }
    v.extend(extra.iter().map(|x| x.to_string()));
    v
}

fn alice(dir: &Path, listen: &str, out: &str, auth: &str, extra: &[&str]) -> Child {
    Command::new(QKD)
        .args(["alice", "--listen", listen, "--prep"])
        .arg(dir.join("alice.qpl"))
        .arg("--auth-key")
        .arg(dir.join(auth))
        .arg("--out")
        .arg(dir.join(out))
        .arg("--report")
        .arg(dir.join(format!("{out}-alice.json")))
        .args(site_args(extra))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn bob(dir: &Path, connect: &str, out: &str, auth: &str, extra: &[&str]) -> Child {
    Command::new(QKD)
        .args(["bob", "--connect", connect, "--detections"])
        .arg(dir.join("bob.qdl"))
        .arg("--auth-key")
        .arg(dir.join(auth))
        .arg("--out")
        .arg(dir.join(out))
        .arg("--report")
        .arg(dir.join(format!("{out}-bob.json")))
        .args(site_args(extra))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait for a child at most `limit`, killing it after that.
fn finish(mut c: Child, limit: Duration) -> Output {
    let t = Instant::now();
    while t.elapsed() < limit {
        if c.try_wait().unwrap().is_some() {
            return c.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let o = c.wait_with_output().unwrap();
    panic!(
        "process ran past {limit:?}: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn auth_key(dir: &Path, bits: &str, a: &str, b: &str) {
    let o = Command::new(QKD)
        .args(["auth-key", "--bits", bits, "--out"])
        .arg(dir.join(a))
        .arg("--out-peer")
        .arg(dir.join(b))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const LIMIT: Duration = Duration::from_secs(90);

#[test]
fn two_processes_give_the_keys_of_distill() {
    let d = Scratch::new("two-site");
    simulate(d.path(), 60_000_000, 3, &short_link());
    auth_key(d.path(), "65536", "a.auth", "b.auth");
    let addr = format!("127.0.0.1:{}", port());
    let det = [
        "--insecure-deterministic-rng",
        "5",
        "--auth-refill-bits",
        "0",
    ];
    let a = alice(d.path(), &addr, "A", "a.auth", &det);
    let b = bob(d.path(), &addr, "B", "b.auth", &det);
    let (ob, oa) = (finish(b, LIMIT), finish(a, LIMIT));
    assert_eq!(oa.status.code(), Some(0), "{}", text(&oa));
    assert_eq!(ob.status.code(), Some(0), "{}", text(&ob));
    let ka = std::fs::read(d.join("A/alice.key")).unwrap();
    assert_eq!(ka, std::fs::read(d.join("B/bob.key")).unwrap());
    assert!(ka.len() > 10_000);
    // The batch run of the same logs with the same test seed gives the same bytes.
    let o = Command::new(QKD)
        .args(["distill", "--alice"])
        .arg(d.join("alice.qpl"))
        .arg("--bob")
        .arg(d.join("bob.qdl"))
        .arg("--out")
        .arg(d.join("D"))
        .args([
            "--pa-block-bits",
            "2^21",
            "--insecure-deterministic-rng",
            "5",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(ka, std::fs::read(d.join("D/alice.key")).unwrap());
    // The reports: authentication accounted, ε composed over the blocks.
    let r = json(&d.join("B-bob.json"));
    let auth = &r["sessions"][0]["authentication"];
    assert!(auth["tags_verified"].as_u64().unwrap() >= 3);
    assert!(auth["pad_bits_consumed"].as_u64().unwrap() >= 3 * 128);
    assert!(r["security"]["epsilon_auth"].as_f64().unwrap() > 0.0);
    assert_eq!(r["committed_blocks"], 2);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(d.join("A/alice.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(m & 0o777, 0o600);
    }
}

/// Which frame of Alice → Bob the proxy damages, and how.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Flip,
    Drop,
    Duplicate,
    Reorder,
}

/// A proxy on 127.0.0.1 between Bob (who connects to it) and Alice: forwards both directions,
/// applying `fault` to wire frame `at` of Alice → Bob. Ends when either side closes.
fn proxy(
    listen: TcpListener,
    alice: String,
    fault: Fault,
    at: usize,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        listen.set_nonblocking(false).unwrap();
        let (from_bob, _) = listen.accept().unwrap();
        let to_alice = TcpStream::connect(&alice).unwrap();
        let (mut b_r, mut a_w) = (from_bob.try_clone().unwrap(), to_alice.try_clone().unwrap());
        // Bob → Alice: unchanged.
        let up = std::thread::spawn(move || {
            let _ = std::io::copy(&mut b_r, &mut a_w);
            let _ = a_w.shutdown(std::net::Shutdown::Write);
        });
        // Alice → Bob: frame by frame.
        let (mut a_r, mut b_w) = (to_alice, from_bob);
        let mut held: Option<Vec<u8>> = None;
        let mut i = 0usize;
        loop {
            let mut len = [0u8; 4];
            if a_r.read_exact(&mut len).is_err() {
                break;
            }
            let mut f = vec![0u8; u32::from_le_bytes(len) as usize];
            if a_r.read_exact(&mut f).is_err() {
                break;
            }
            let mut out: Vec<Vec<u8>> = vec![];
            if i == at {
                match fault {
                    Fault::Flip => {
                        let k = f.len() - 1;
                        f[k] ^= 0x10;
                        out.push(f);
                    }
                    Fault::Drop => {}
                    Fault::Duplicate => {
                        out.push(f.clone());
                        out.push(f);
                    }
                    Fault::Reorder => held = Some(f),
                }
            } else {
                out.push(f);
                if let Some(h) = held.take() {
                    out.push(h);
                }
            }
            i += 1;
            for f in out {
                let mut w = (f.len() as u32).to_le_bytes().to_vec();
                w.extend_from_slice(&f);
                if b_w.write_all(&w).is_err() {
                    break;
                }
            }
        }
        let _ = b_w.shutdown(std::net::Shutdown::Write);
        let _ = up.join();
    })
}

#[test]
fn a_tampered_frame_aborts_both_sides_with_an_authentication_alarm() {
    let d = Scratch::new("tamper");
    simulate(d.path(), 30_000_000, 4, &short_link());
    auth_key(d.path(), "65536", "a.auth", "b.auth");
    for (k, fault) in [Fault::Flip, Fault::Drop, Fault::Duplicate, Fault::Reorder]
        .into_iter()
        .enumerate()
    {
        let alice_addr = format!("127.0.0.1:{}", port());
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy_addr = l.local_addr().unwrap().to_string();
        let out = format!("T{k}");
        let a = alice(
            d.path(),
            &alice_addr,
            &out,
            "a.auth",
            &["--max-sessions", "1", "--force"],
        );
        std::thread::sleep(Duration::from_millis(200));
        let p = proxy(l, alice_addr, fault, 4);
        let b = bob(
            d.path(),
            &proxy_addr,
            &out,
            "b.auth",
            &["--max-sessions", "1", "--force"],
        );
        let (ob, oa) = (finish(b, LIMIT), finish(a, LIMIT));
        let _ = p.join();
        for (who, o, file) in [("bob", &ob, "bob.key"), ("alice", &oa, "alice.key")] {
            assert_eq!(o.status.code(), Some(1), "{fault:?} {who}: {}", text(o));
            let r = json(&d.path().join(format!("{out}-{who}.json")));
            assert_eq!(
                r["abort"]["kind"], "authentication_failed",
                "{fault:?} {who}: {r}"
            );
            assert!(text(o).contains("ALARM"), "{fault:?} {who}: {}", text(o));
            // No key bits from the affected block (the only one).
            let key = std::fs::read(d.join(&out).join(file)).unwrap_or_default();
            assert!(key.is_empty(), "{fault:?} {who}: {} key bytes", key.len());
        }
    }
}

#[test]
fn wrong_and_exhausted_authentication_keys_are_refused() {
    let d = Scratch::new("badkey");
    simulate(d.path(), 30_000_000, 4, &short_link());
    auth_key(d.path(), "65536", "a.auth", "b.auth");
    auth_key(d.path(), "65536", "x.auth", "y.auth");
    // Halves of two different pools: refused before any exchange.
    let addr = format!("127.0.0.1:{}", port());
    let a = alice(d.path(), &addr, "W", "a.auth", &["--max-sessions", "1"]);
    let b = bob(d.path(), &addr, "W", "y.auth", &["--max-sessions", "1"]);
    let (ob, oa) = (finish(b, LIMIT), finish(a, LIMIT));
    for o in [&oa, &ob] {
        assert_eq!(o.status.code(), Some(2), "{}", text(o));
        assert!(text(o).contains("not a pair"), "{}", text(o));
    }
    // The right pool id but other bits (a forged key file): the first tag fails.
    let mut forged = std::fs::read(d.join("b.auth")).unwrap();
    forged[40] ^= 1; // a hash key
    std::fs::write(d.join("f.auth"), &forged).unwrap();
    std::fs::copy(d.join("b.auth.state"), d.join("f.auth.state")).unwrap();
    let addr = format!("127.0.0.1:{}", port());
    let a = alice(d.path(), &addr, "F", "a.auth", &["--max-sessions", "1"]);
    let b = bob(d.path(), &addr, "F", "f.auth", &["--max-sessions", "1"]);
    let (ob, oa) = (finish(b, LIMIT), finish(a, LIMIT));
    for o in [&oa, &ob] {
        assert_eq!(o.status.code(), Some(1), "{}", text(o));
        assert!(text(o).contains("authentication"), "{}", text(o));
    }
    // An exhausted pool (512 bits: 4 tags a direction, no refill) stops cleanly, saying how to
    // refill it.
    auth_key(d.path(), "512", "s.auth", "t.auth");
    let addr = format!("127.0.0.1:{}", port());
    let small = [
        "--max-sessions",
        "1",
        "--auth-refill-bits",
        "0",
        "--pa-block-bits",
        "2^20",
    ];
    let a = alice(d.path(), &addr, "E", "s.auth", &small);
    let b = bob(d.path(), &addr, "E", "t.auth", &small);
    let (ob, oa) = (finish(b, LIMIT), finish(a, LIMIT));
    let both = text(&oa) + &text(&ob);
    assert!(
        both.contains("used up") && both.contains("qkd auth-key"),
        "{both}"
    );
    assert_ne!(oa.status.code(), Some(0));
}

#[test]
fn a_killed_site_resumes_without_lost_or_duplicated_blocks() {
    let d = Scratch::new("resume");
    simulate(d.path(), 120_000_000, 6, &short_link());
    auth_key(d.path(), "65536", "a.auth", "b.auth");
    for victim in ["bob", "alice"] {
        let addr = format!("127.0.0.1:{}", port());
        let out = format!("R-{victim}");
        // A slowed link so that the kill lands in the middle of the run.
        let slow = ["--link-delay-ms", "4"];
        let mut a = Some(alice(d.path(), &addr, &out, "a.auth", &slow));
        std::thread::sleep(Duration::from_millis(150));
        let mut b = Some(bob(d.path(), &addr, &out, "b.auth", &slow));
        // Wait (bounded) for the victim's first committed block, then SIGKILL it.
        let state = d.join(&out).join(format!("{victim}.session.json"));
        let t = Instant::now();
        loop {
            let n = std::fs::read(&state)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .map_or(0, |v| v["blocks"].as_array().map_or(0, Vec::len));
            if n >= 1 {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(60), "no block committed");
            std::thread::sleep(Duration::from_millis(10));
        }
        let slot = if victim == "bob" { &mut b } else { &mut a };
        let mut c = slot.take().unwrap();
        c.kill().unwrap();
        let _ = c.wait();
        // Restart it: the session resumes from the last block committed on both sides.
        *slot = Some(if victim == "bob" {
            bob(d.path(), &addr, &out, "b.auth", &slow)
        } else {
            alice(d.path(), &addr, &out, "a.auth", &slow)
        });
        let ob = finish(b.take().unwrap(), LIMIT);
        let oa = finish(a.take().unwrap(), LIMIT);
        assert_eq!(ob.status.code(), Some(0), "{victim}: {}", text(&ob));
        assert_eq!(oa.status.code(), Some(0), "{victim}: {}", text(&oa));
        let ka = std::fs::read(d.join(&out).join("alice.key")).unwrap();
        assert_eq!(
            ka,
            std::fs::read(d.join(&out).join("bob.key")).unwrap(),
            "{victim}"
        );
        let ids = |who: &str| -> Vec<u64> {
            json(&d.join(&out).join(format!("{who}.session.json")))["blocks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["block"].as_u64().unwrap())
                .collect()
        };
        let (ia, ib) = (ids("alice"), ids("bob"));
        assert_eq!(ia, ib, "{victim}");
        assert!(ia.windows(2).all(|w| w[0] < w[1]), "{victim}: {ia:?}");
        let sessions = json(&d.path().join(format!(
            "{out}-{}.json",
            if victim == "bob" { "alice" } else { "bob" }
        )))["sessions"]
            .as_array()
            .unwrap()
            .len();
        assert!(
            sessions >= 2,
            "{victim}: the survivor resumed in a new session"
        );
        // Every block the run has is in the keys: the resumed session started after the
        // committed ones and went to the end.
        let total: u64 = json(&d.join(&out).join("alice.session.json"))["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["bytes"].as_u64().unwrap())
            .sum();
        assert_eq!(total, ka.len() as u64);
        assert!(ia.len() >= 3, "{victim}: {ia:?}");
    }
}

/// Copy `from` into `to` in `pieces` parts, `pause` apart (a rig writing its log as it goes).
fn feed(from: PathBuf, to: PathBuf, pieces: usize, pause: Duration) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let data = std::fs::read(&from).unwrap();
        let mut f = std::fs::File::create(&to).unwrap();
        for i in 0..pieces {
            let (a, b) = (data.len() * i / pieces, data.len() * (i + 1) / pieces);
            f.write_all(&data[a..b]).unwrap();
            f.flush().unwrap();
            std::thread::sleep(pause);
        }
    })
}

#[test]
fn a_growing_log_fed_in_pieces_gives_the_key_of_the_whole_file() {
    let d = Scratch::new("follow");
    simulate(d.path(), 80_000_000, 4, &short_link());
    auth_key(d.path(), "65536", "a.auth", "b.auth");
    let opts = ["--follow", "--insecure-deterministic-rng", "5"];
    // The whole files.
    let addr = format!("127.0.0.1:{}", port());
    let a = alice(d.path(), &addr, "W", "a.auth", &opts);
    let b = bob(d.path(), &addr, "W", "b.auth", &opts);
    let (ob, oa) = (finish(b, LIMIT), finish(a, LIMIT));
    assert!(
        oa.status.success() && ob.status.success(),
        "{}{}",
        text(&oa),
        text(&ob)
    );
    // The same files, growing while both sites read them.
    let g = d.join("grow");
    std::fs::create_dir_all(&g).unwrap();
    let fa = feed(
        d.join("alice.qpl"),
        g.join("alice.qpl"),
        20,
        Duration::from_millis(100),
    );
    let fb = feed(
        d.join("bob.qdl"),
        g.join("bob.qdl"),
        20,
        Duration::from_millis(100),
    );
    let t = Instant::now();
    while !(g.join("alice.qpl").exists() && g.join("bob.qdl").exists()) {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    let addr = format!("127.0.0.1:{}", port());
    let a = alice(&g, &addr, "G", "../a.auth", &opts);
    let b = bob(&g, &addr, "G", "../b.auth", &opts);
    let (ob, oa) = (finish(b, LIMIT), finish(a, LIMIT));
    fa.join().unwrap();
    fb.join().unwrap();
    assert!(
        oa.status.success() && ob.status.success(),
        "{}{}",
        text(&oa),
        text(&ob)
    );
    let whole = std::fs::read(d.join("W/alice.key")).unwrap();
    assert!(!whole.is_empty());
    assert_eq!(whole, std::fs::read(g.join("G/alice.key")).unwrap());
    assert_eq!(whole, std::fs::read(g.join("G/bob.key")).unwrap());
}

#[test]
fn memory_stays_flat_over_a_run_ten_times_longer() {
    let rss = |pulses: u64, tag: &str| -> (u64, u64) {
        let d = Scratch::new(tag);
        simulate(d.path(), pulses, 8, &short_link());
        auth_key(d.path(), "65536", "a.auth", "b.auth");
        let addr = format!("127.0.0.1:{}", port());
        let a = alice(d.path(), &addr, "M", "a.auth", &[]);
        let b = bob(d.path(), &addr, "M", "b.auth", &[]);
        let (ob, oa) = (finish(b, LIMIT), finish(a, LIMIT));
        assert!(
            oa.status.success() && ob.status.success(),
            "{}{}",
            text(&oa),
            text(&ob)
        );
        let peak = |who: &str| {
            json(&d.path().join(format!("M-{who}.json")))["peak_rss_bytes"]
                .as_u64()
                .unwrap()
        };
        (peak("alice"), peak("bob"))
    };
    let (a1, b1) = rss(20_000_000, "mem-short");
    let (a10, b10) = rss(200_000_000, "mem-long");
    // Same block size (2^21 bits): ten times the blocks, the same memory (within 30 % + 32 MB;
    // the logs are 10× larger).
    for (short, long, who) in [(a1, a10, "alice"), (b1, b10, "bob")] {
        assert!(
            long as f64 <= 1.3 * short as f64 + 32e6,
            "{who}: {short} B at 2·10^7 pulses, {long} B at 2·10^8"
        );
    }
}

#[test]
fn a_peer_that_never_answers_times_out_with_an_error() {
    let d = Scratch::new("silent");
    simulate(d.path(), 2_000_000, 4, &short_link());
    auth_key(d.path(), "65536", "a.auth", "b.auth");
    // Something on 127.0.0.1 that accepts the connection and never speaks.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let holder = std::thread::spawn(move || {
        let (c, _) = silent.accept().unwrap();
        std::thread::sleep(Duration::from_secs(6));
        drop(c);
    });
    let quick = ["--max-sessions", "1", "--peer-timeout-s", "2"];
    let t = Instant::now();
    let o = finish(bob(d.path(), &addr, "S", "b.auth", &quick), LIMIT);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("sent nothing"), "{}", text(&o));
    assert!(t.elapsed() < Duration::from_secs(30));
    holder.join().unwrap();
    // Nobody listening: connecting gives up after its timeout, saying so.
    let closed = format!("127.0.0.1:{}", port());
    let o = finish(
        bob(
            d.path(),
            &closed,
            "S2",
            "b.auth",
            &["--connect-timeout-s", "1"],
        ),
        LIMIT,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("could not reach the peer"),
        "{}",
        text(&o)
    );
}

#[test]
fn sigterm_at_one_site_stops_both_at_a_block_boundary_and_the_run_resumes() {
    let d = Scratch::new("sigterm");
    simulate(d.path(), 120_000_000, 6, &short_link());
    auth_key(d.path(), "65536", "a.auth", "b.auth");
    let addr = format!("127.0.0.1:{}", port());
    let slow = ["--link-delay-ms", "4"];
    let a = alice(d.path(), &addr, "S", "a.auth", &slow);
    let b = bob(d.path(), &addr, "S", "b.auth", &slow);
    // Once Alice committed a block, SIGTERM her.
    let state = d.join("S/alice.session.json");
    let t = Instant::now();
    while std::fs::read(&state)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_none_or(|v| v["blocks"].as_array().is_none_or(Vec::is_empty))
    {
        assert!(t.elapsed() < Duration::from_secs(60), "no block committed");
        std::thread::sleep(Duration::from_millis(10));
    }
    let ok = Command::new("kill")
        .args(["-TERM", &a.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let (ob, oa) = (finish(b, LIMIT), finish(a, LIMIT));
    assert_eq!(oa.status.code(), Some(0), "{}", text(&oa));
    assert_eq!(ob.status.code(), Some(0), "{}", text(&ob));
    for who in ["alice", "bob"] {
        let r = json(&d.path().join(format!("S-{who}.json")));
        assert_eq!(r["outcome"], "stopped", "{who}: {r}");
    }
    let (ka, kb) = (
        std::fs::read(d.join("S/alice.key")).unwrap(),
        std::fs::read(d.join("S/bob.key")).unwrap(),
    );
    assert_eq!(ka, kb);
    assert!(!ka.is_empty());
    // Started again, both resume where they stopped and finish the run.
    let a = alice(d.path(), &addr, "S", "a.auth", &[]);
    let b = bob(d.path(), &addr, "S", "b.auth", &[]);
    let (ob, oa) = (finish(b, LIMIT), finish(a, LIMIT));
    assert!(
        oa.status.success() && ob.status.success(),
        "{}{}",
        text(&oa),
        text(&ob)
    );
    let r = json(&d.path().join("S-bob.json"));
    assert_eq!(r["outcome"], "key");
    assert!(r["sessions"][0]["resumed_at_block"].as_u64().unwrap() >= 1);
    assert_eq!(json(&d.join("S/bob.session.json"))["complete"], true);
    // The committed key is kept; the rest of the log (if any is left after the stop point)
    // adds to it.
    let ka2 = std::fs::read(d.join("S/alice.key")).unwrap();
    assert_eq!(ka2, std::fs::read(d.join("S/bob.key")).unwrap());
    assert!(ka2.starts_with(&ka));
}
