//! LDPC reconciliation (one-way, syndrome based, rate adaptive, blind).

pub mod catalog;
pub mod code;
pub mod construction;
pub mod decoder;
pub mod protocol;
pub mod rate;

pub use protocol::{LdpcReconciler, LdpcSettings};

use crate::bits::BitVec;
use crate::kernels::Kernels;
use crate::kernels::ldpc::{NmsOutcome, NmsParams, NmsScratch, QcLayout};
use code::{QcCode, Z};
use rate::{AdaptationPattern, FrameLayout};

/// A code ready for use: the QC description, its decoder layout and adaptation pattern.
#[derive(Debug, Clone)]
pub struct LdpcCode {
    /// The code.
    pub code: QcCode,
    /// Decoder layout.
    pub layout: QcLayout,
    /// Puncturing/shortening positions.
    pub pattern: AdaptationPattern,
}

impl LdpcCode {
    /// Prepare `code` for use.
    pub fn new(code: QcCode) -> LdpcCode {
        let layout = layout_of(&code);
        let pattern = AdaptationPattern::new(&code, 0x5eed_0000 ^ code.n() as u64);
        LdpcCode {
            code,
            layout,
            pattern,
        }
    }

    /// Puncturing p and shortening s for error rate `q` such that the first attempt has
    /// efficiency `f_start` and revealing all p punctured bits (blind retries) reaches `f_max`:
    /// m − p = f_start·h(q)·k and m = f_max·h(q)·k with k = n − p − s key bits, i.e.
    /// p = (f_max − f_start)·m/f_max (capped at the untainted capacity). If that leaves too few
    /// key positions, only as much puncturing as reaches `f_start`. `None` when the code cannot
    /// reach `f_start`.
    pub fn adaptation(&self, q: f64, f_start: f64, f_max: f64) -> Option<(usize, usize)> {
        let (n, m) = (self.code.n() as f64, self.code.m() as f64);
        let h = crate::parameter_estimation::finite_key::binary_entropy(q);
        if h <= 0.0 || f_start <= 0.0 {
            return None;
        }
        let f_max = f_max.max(f_start);
        let p = ((f_max - f_start) * m / f_max)
            .floor()
            .min(self.pattern.max_punctured() as f64);
        let k = (m - p) / (f_start * h);
        let s = n - p - k;
        if (0.0..=0.5 * n).contains(&s) {
            return Some((p as usize, s.floor() as usize));
        }
        if s < 0.0 {
            // The code's rate is too low for f_start with that much puncturing in reserve:
            // puncture just enough to reach f_start (less room for retries).
            let fh = f_start * h;
            let p = ((m - fh * n) / (1.0 - fh)).ceil();
            if p >= 0.0 && p <= self.pattern.max_punctured() as f64 {
                return Some((p as usize, 0));
            }
        }
        None
    }
}

/// The decoder layout of a QC code.
pub fn layout_of(code: &QcCode) -> QcLayout {
    let mut row_ptr = vec![0u32];
    let mut cols = Vec::new();
    let mut shifts = Vec::new();
    for row in &code.rows {
        for &(c, s) in row {
            cols.push(c);
            shifts.push(s);
        }
        row_ptr.push(cols.len() as u32);
    }
    QcLayout {
        nb: code.nb,
        row_ptr,
        cols,
        shifts,
    }
}

/// Syndrome of the codeword whose column block c is `x[c]` (bit t = variable c·64 + t).
pub fn syndrome_words(layout: &QcLayout, x: &[u64]) -> Vec<u64> {
    (0..layout.mb())
        .map(|r| {
            let (a, b) = (layout.row_ptr[r] as usize, layout.row_ptr[r + 1] as usize);
            (a..b).fold(0u64, |p, e| {
                p ^ x[layout.cols[e] as usize].rotate_right(u32::from(layout.shifts[e]))
            })
        })
        .collect()
}

/// Assemble a codeword: key bits at the key positions, shortened and punctured values at theirs
/// (each list deposited in increasing position order with the `pdep` kernel).
pub fn assemble(
    k: &Kernels,
    layout: &FrameLayout,
    key: &BitVec,
    shortened: &BitVec,
    punctured: &BitVec,
) -> Vec<u64> {
    assert_eq!(key.len(), layout.key.len());
    assert_eq!(shortened.len(), layout.shortened.len());
    assert_eq!(punctured.len(), layout.punctured.len());
    let words = layout.key_mask.len();
    let mut x = vec![0u64; words];
    let mut part = vec![0u64; words];
    for (bits, mask) in [
        (key, &layout.key_mask),
        (shortened, &layout.short_mask),
        (punctured, &layout.punct_mask),
    ] {
        if bits.is_empty() {
            continue;
        }
        k.expand(bits.words(), mask, &mut part);
        for (a, b) in x.iter_mut().zip(&part) {
            *a |= b;
        }
    }
    x
}

/// Bob's 8-bit LLRs: ±`llr` from his key bits, exact for shortened bits, 0 for punctured.
pub fn bob_llrs(
    k: &Kernels,
    layout: &FrameLayout,
    key: &BitVec,
    shortened: &BitVec,
    llr: i8,
) -> Vec<i8> {
    let words = layout.key_mask.len();
    let (mut y, mut sv) = (vec![0u64; words], vec![0u64; words]);
    k.expand(key.words(), &layout.key_mask, &mut y);
    if !shortened.is_empty() {
        k.expand(shortened.words(), &layout.short_mask, &mut sv);
    }
    let mut out = vec![0i8; words * Z];
    for w in 0..words {
        let (km, sm, yw, sw) = (layout.key_mask[w], layout.short_mask[w], y[w], sv[w]);
        for (t, o) in out[w * Z..(w + 1) * Z].iter_mut().enumerate() {
            let (is_key, is_short) = ((km >> t) & 1 == 1, (sm >> t) & 1 == 1);
            let neg = if is_key {
                (yw >> t) & 1 == 1
            } else {
                (sw >> t) & 1 == 1
            };
            let mag = if is_key {
                llr
            } else if is_short {
                decoder::KNOWN_LLR
            } else {
                0
            };
            *o = if neg { -mag } else { mag };
        }
    }
    out
}

/// Read the key bits out of decoded column words (`pext` with the key mask).
pub fn extract_key(k: &Kernels, layout: &FrameLayout, words: &[u64]) -> BitVec {
    let mut out = BitVec::with_capacity(layout.key.len());
    out.extend_compacted(k, words, &layout.key_mask);
    out
}

/// Decode one frame with the fast kernel; returns the outcome (decisions in `scratch.hard`).
pub fn decode(
    k: &Kernels,
    code: &LdpcCode,
    llrs: &[i8],
    syndrome: &[u64],
    params: NmsParams,
    scratch: &mut NmsScratch,
) -> NmsOutcome {
    scratch.reset(&code.layout, llrs);
    k.nms_decode(&code.layout, syndrome, params, scratch)
}

#[cfg(test)]
mod tests;
