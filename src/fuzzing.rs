//! Entry points of the cargo-fuzz targets (`fuzz/fuzz_targets/`), one per parser or decoder
//! of untrusted bytes. Each takes arbitrary bytes, must never panic, hang or allocate without
//! bound, and checks what can be checked about an accepted input (a round trip, a
//! consistent index). They are ordinary functions so that the regression tests run every
//! crash the fuzzer found (`tests/fuzz_regressions.rs`).

use std::path::Path;

const NAME: &str = "<fuzz input>";

/// A `.qdl` detection log: framing, then every block's checksum and records.
pub fn qdl(bytes: &[u8]) {
    if let Ok(log) = crate::io::DetectionLog::from_bytes(bytes.to_vec(), Path::new(NAME)) {
        let total: u64 = log.blocks().iter().map(|b| u64::from(b.n_records)).sum();
        assert_eq!(total, log.total_records());
        for i in 0..log.blocks().len() {
            if let Ok(r) = log.block(i) {
                let _ = r.iter().count();
            }
        }
        let _ = log.verify_all();
    }
}

/// A `.qpl` preparation log.
pub fn qpl(bytes: &[u8]) {
    if let Ok(log) = crate::io::PrepLog::from_bytes(bytes.to_vec(), Path::new(NAME)) {
        for i in 0..log.blocks().len() {
            let _ = log.block(i);
        }
        let _ = log.verify_all();
    }
}

/// One input of a time tagger's format; the first byte picks the format.
pub fn import(bytes: &[u8]) {
    use crate::io::import::{ImportFormat, ImportOptions};
    let Some((&which, data)) = bytes.split_first() else {
        return;
    };
    let formats = [
        "ptu",
        "qcrypto-raw",
        "qcrypto-t1",
        "qcrypto-t2",
        "qutag-bin",
        "qutag-compressed",
        "swabian-tag16",
        "csv",
    ];
    let Ok(format) = ImportFormat::parse(formats[which as usize % formats.len()]) else {
        return;
    };
    let opts = ImportOptions {
        format,
        ..Default::default()
    };
    let _ = crate::io::import::check_bytes(data, &opts, Path::new(NAME));
}

/// An alist parity-check matrix.
pub fn alist(bytes: &[u8]) {
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = crate::error_correction::ldpc::code::ParityCheckMatrix::from_alist(
            text,
            Path::new(NAME),
        );
    }
}

/// A quasi-cyclic `.qc` code; an accepted code writes back to text that parses the same.
pub fn qc(bytes: &[u8]) {
    use crate::error_correction::ldpc::code::QcCode;
    if let Ok(text) = std::str::from_utf8(bytes)
        && let Ok(c) = QcCode::from_text(text, Path::new(NAME))
    {
        let again = QcCode::from_text(&c.to_text(), Path::new(NAME)).expect("round trip");
        assert_eq!(again.to_text(), c.to_text());
    }
}

/// A protocol message (every message of every phase, the session handshake included): an
/// accepted message encodes to bytes that decode to the same message.
pub fn message(bytes: &[u8]) {
    use crate::classical::Message;
    if let Ok(m) = Message::decode(bytes) {
        let again = Message::decode(&m.encode()).expect("re-encoded message decodes");
        assert_eq!(again, m);
    }
}

/// A link frame (inside one wire frame).
pub fn link_frame(bytes: &[u8]) {
    let _ = crate::classical::link::check_link_frame(bytes);
}

/// The TCP wire: length-prefixed frames, each then decoded as a link frame.
pub fn tcp_stream(bytes: &[u8]) {
    for f in crate::classical::tcp::frames_of(bytes) {
        let _ = crate::classical::link::check_link_frame(&f);
    }
}

/// An ETSI GS QKD 014 request (and the KME-to-KME requests): the first byte picks the
/// request and the method, the rest is split at the first NUL into query and body.
pub fn etsi_request(bytes: &[u8]) {
    let Some((&which, rest)) = bytes.split_first() else {
        return;
    };
    let (query, body) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (std::str::from_utf8(&rest[..i]).ok(), &rest[i + 1..]),
        None => (None, rest),
    };
    let _ = crate::kme::server::parse_request_for_fuzzing(which >> 1, which & 1 == 1, query, body);
}

/// A fuzz target's function.
pub type Target = fn(&[u8]);

/// Every target, by name (for the regression tests and `qkd`-less replays).
pub const TARGETS: &[(&str, Target)] = &[
    ("qdl", qdl),
    ("qpl", qpl),
    ("import", import),
    ("alist", alist),
    ("qc", qc),
    ("message", message),
    ("link_frame", link_frame),
    ("tcp_stream", tcp_stream),
    ("etsi_request", etsi_request),
];
