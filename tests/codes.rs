//! The stored codes in data/codes are exactly what the construction produces (regenerate with
//! `qkd codes generate --out-dir data/codes` after changing the construction).

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
            "data/codes/{name} is stale: run `qkd codes generate --out-dir data/codes`"
        );
        assert!(
            catalog::FILES
                .iter()
                .any(|(f, text)| *f == name && *text == stored),
            "{name} not compiled in"
        );
    }
}
