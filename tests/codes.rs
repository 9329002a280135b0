//! The stored codes in data/codes are exactly what the construction produces (regenerate with
//! `qkd codes generate --out-dir data/codes --force` after changing the construction).

use qkd_distill::error_correction::ldpc::catalog;

#[test]
fn stored_codes_are_up_to_date() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/codes");
    let generated = catalog::generate();
    assert_eq!(generated.len(), catalog::FILES.len());
    for code in generated {
        let name = format!("{}.qc", code.name);
        let stored =
            std::fs::read_to_string(dir.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            stored == code.to_text(),
            "data/codes/{name} is stale: run `qkd codes generate --out-dir data/codes --force`"
        );
        assert!(
            catalog::FILES
                .iter()
                .any(|(f, text)| *f == name && *text == stored),
            "{name} not compiled in"
        );
    }
}

#[test]
fn exported_alist_loads_in_an_independent_reader() {
    use qkd_distill::bits::BitVec;
    use std::process::Command;
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("python3 not available: skipping the independent alist check");
        return;
    }
    let dir = std::env::temp_dir().join(format!("qkd-alist-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let code = &catalog::of_length(16384)[3].code;
    let h = code.expand();
    let path = dir.join("code.alist");
    std::fs::write(&path, h.to_alist()).unwrap();
    let x = BitVec::from_words(
        (0..h.n() as u64 / 64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect(),
        h.n(),
    );
    let hex: String = x.to_bytes_le().iter().map(|b| format!("{b:02x}")).collect();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check_alist.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&path)
        .arg(&hex)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!("{} {} {}", h.n(), h.m(), h.edges())
    );
    let syn: String = h
        .syndrome(&x)
        .to_bytes_le()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        lines.next().unwrap(),
        syn,
        "the independent reader computes a different syndrome"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
