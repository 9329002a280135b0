//! Progress bars, JSON output and number formatting.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use qkd_distill::error::Result;
use qkd_distill::progress::Progress;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Progress on stderr when it is a terminal; silent otherwise.
pub struct TermProgress {
    bar: Mutex<Option<ProgressBar>>,
    enabled: bool,
}

impl TermProgress {
    /// Enabled only when stderr is a terminal and `quiet` is false.
    pub fn new(quiet: bool) -> Self {
        TermProgress {
            bar: Mutex::new(None),
            enabled: !quiet && std::io::stderr().is_terminal(),
        }
    }
}

impl Progress for TermProgress {
    fn start(&self, phase: &str, total: u64) {
        if !self.enabled {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{prefix:>10} [{bar:40}] {percent:>3}% {human_pos}/{human_len} slots ({per_sec}, eta {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(phase.to_string());
        if let Some(old) = self
            .bar
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(bar)
        {
            old.finish_and_clear();
        }
    }
    fn inc(&self, n: u64) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            b.inc(n);
        }
    }
    fn finish(&self) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            b.finish_and_clear();
        }
    }
}

/// A directory removed (with what is in it) when this is dropped.
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Write `value` as pretty JSON to `path`, atomically (the complete report or the old file,
/// never a truncated one). The command checked the path with its output plan first.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("report serializes");
    qkd_distill::io::write_atomic(path, (text + "\n").as_bytes(), false)
}

/// Print `value` as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("report serializes")
    );
}

/// 1234567 → "1,234,567".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bits per second as "12.3 Mbit/s".
pub fn rate(bits_per_s: f64) -> String {
    let (v, u) = if bits_per_s >= 1e9 {
        (bits_per_s / 1e9, "Gbit/s")
    } else if bits_per_s >= 1e6 {
        (bits_per_s / 1e6, "Mbit/s")
    } else if bits_per_s >= 1e3 {
        (bits_per_s / 1e3, "kbit/s")
    } else {
        (bits_per_s, "bit/s")
    };
    format!("{v:.2} {u}")
}
