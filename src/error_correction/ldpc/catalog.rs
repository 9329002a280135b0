//! The built-in codes: QC-LDPC codes of rates 0.5 … 0.9 (Elkouss et al. 2009 distributions) at
//! lengths 2^14, 2^16 and 102 400, stored in `data/codes/*.qc` and compiled in. They are
//! regenerated bit for bit by [`generate`] (`qkd codes generate`); `tests/codes.rs` fails if a
//! stored file is stale.

use super::LdpcCode;
use super::code::QcCode;
use super::construction::build;
use std::path::Path;
use std::sync::OnceLock;

/// Rates of the catalog.
pub const RATES: [f64; 5] = [0.5, 0.6, 0.7, 0.8, 0.9];
/// Base widths of the catalog (n = nb·64).
pub const BASE_COLUMNS: [usize; 3] = [256, 1024, 1600];
/// Construction seed.
pub const SEED: u64 = 1;

macro_rules! code_files {
    ($($name:literal),* $(,)?) => {
        /// (file name, contents) of the stored codes.
        pub const FILES: &[(&str, &str)] = &[$(($name, include_str!(concat!("../../../data/codes/", $name)))),*];
    };
}

code_files!(
    "qc-r0.50-n16384.qc",
    "qc-r0.60-n16384.qc",
    "qc-r0.70-n16384.qc",
    "qc-r0.80-n16384.qc",
    "qc-r0.90-n16384.qc",
    "qc-r0.50-n65536.qc",
    "qc-r0.60-n65536.qc",
    "qc-r0.70-n65536.qc",
    "qc-r0.80-n65536.qc",
    "qc-r0.90-n65536.qc",
    "qc-r0.50-n102400.qc",
    "qc-r0.60-n102400.qc",
    "qc-r0.70-n102400.qc",
    "qc-r0.80-n102400.qc",
    "qc-r0.90-n102400.qc",
);

/// File name of a catalog code.
pub fn file_name(rate: f64, nb: usize) -> String {
    format!("qc-r{rate:.2}-n{}.qc", nb * super::code::Z)
}

/// Build every catalog code from scratch.
pub fn generate() -> Vec<QcCode> {
    let mut v = Vec::new();
    for &nb in &BASE_COLUMNS {
        for &rate in &RATES {
            v.push(build(rate, nb, SEED).expect("catalog rates have distributions"));
        }
    }
    v
}

/// All catalog codes, parsed once.
pub fn all() -> &'static [LdpcCode] {
    static CODES: OnceLock<Vec<LdpcCode>> = OnceLock::new();
    CODES.get_or_init(|| {
        FILES
            .iter()
            .map(|(name, text)| {
                let code = QcCode::from_text(text, Path::new(name)).expect("built-in code parses");
                LdpcCode::new(code)
            })
            .collect()
    })
}

/// Catalog codes of length `n`, by increasing rate.
pub fn of_length(n: usize) -> Vec<&'static LdpcCode> {
    let mut v: Vec<&LdpcCode> = all().iter().filter(|c| c.code.n() == n).collect();
    v.sort_by(|a, b| a.code.rate().total_cmp(&b.code.rate()));
    v
}

/// A catalog code by name.
pub fn by_name(name: &str) -> Option<&'static LdpcCode> {
    all()
        .iter()
        .find(|c| c.code.name == name || c.code.name == name.trim_end_matches(".qc"))
}

/// Code lengths available.
pub fn lengths() -> Vec<usize> {
    BASE_COLUMNS.iter().map(|nb| nb * super::code::Z).collect()
}
