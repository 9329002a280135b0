//! Synchronisation of two time-tagging sides (entanglement-based QKD): time offset by FFT
//! cross-correlation at two resolutions (qcrypto `pfind`: histograms modulo 2^q bins, the
//! coarse peak unwraps the fine one), frequency offset from an early and a late window
//! (S-Fifteen `fpfind`), then coincidence matching with a first-order tracking servo and an
//! accidental-coincidence window (qcrypto `costream`). `reference/formats.md` §5.4, §9.4.

use crate::error::{ConfigError, Result};
use rustfft::FftPlanner;
use rustfft::num_complex::Complex;
use serde::{Deserialize, Serialize};

/// Options (times in ps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TwoSidedOptions {
    /// log2 of the histogram length.
    pub buffer_log2: u32,
    /// Fine resolution.
    pub fine_ps: f64,
    /// Coarse resolution (must be < 2^q · fine so that it unwraps the fine result).
    pub coarse_ps: f64,
    /// Length of the early and late windows.
    pub window_s: f64,
    /// Coincidence window half-width.
    pub coincidence_ps: f64,
    /// Least significance (σ) of a correlation peak.
    pub min_significance: f64,
}

impl Default for TwoSidedOptions {
    fn default() -> Self {
        TwoSidedOptions {
            buffer_log2: 17,
            fine_ps: 256.0,
            coarse_ps: 65_536.0,
            window_s: 0.05,
            coincidence_ps: 1000.0,
            min_significance: 6.0,
        }
    }
}

/// The result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TwoSidedReport {
    /// t_B − t_A at the start of the data, in ps.
    pub offset_ps: f64,
    /// B's clock rate relative to A's, in ppm.
    pub drift_ppm: f64,
    /// Significance of the coarse and fine correlation peaks (early window).
    pub significance: [f64; 2],
    /// Coincidences found.
    pub coincidences: u64,
    /// Coincidences in a window shifted by 20 widths (accidentals).
    pub accidentals: u64,
    /// RMS of the coincidence residuals in ps (combined timing jitter).
    pub jitter_ps: f64,
    /// Matched (index in A, index in B) pairs.
    #[serde(skip)]
    pub pairs: Vec<(usize, usize)>,
}

/// Offset of `b` against `a` (ps) from histograms modulo 2^q at resolution `r`: the value in
/// [−2^q·r/2, 2^q·r/2) and the peak significance.
fn correlate(a: &[i64], b: &[i64], q: u32, r: f64) -> (f64, f64) {
    let n = 1usize << q;
    let mut planner = FftPlanner::<f64>::new();
    let fft = planner.plan_fft_forward(n);
    let ifft = planner.plan_fft_inverse(n);
    let hist = |v: &[i64]| {
        let mut h = vec![Complex::new(0.0, 0.0); n];
        for &t in v {
            let bin = (t as f64 / r).floor() as i64;
            h[bin.rem_euclid(n as i64) as usize].re += 1.0;
        }
        h
    };
    let (mut ha, mut hb) = (hist(a), hist(b));
    fft.process(&mut ha);
    fft.process(&mut hb);
    for (x, y) in hb.iter_mut().zip(&ha) {
        *x *= y.conj();
    }
    ifft.process(&mut hb);
    let c: Vec<f64> = hb.iter().map(|z| z.re).collect();
    let (k, &peak) = c
        .iter()
        .enumerate()
        .max_by(|x, y| x.1.total_cmp(y.1))
        .expect("non-empty");
    let mean = c.iter().sum::<f64>() / n as f64;
    let sd = (c.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64)
        .sqrt()
        .max(1e-12);
    let k = if k >= n / 2 {
        k as i64 - n as i64
    } else {
        k as i64
    };
    (k as f64 * r, (peak - mean) / sd)
}

/// Offset at two resolutions.
fn offset(a: &[i64], b: &[i64], o: &TwoSidedOptions) -> (f64, [f64; 2]) {
    let (coarse, sc) = correlate(a, b, o.buffer_log2, o.coarse_ps);
    let (fine, sf) = correlate(a, b, o.buffer_log2, o.fine_ps);
    let span = (1u64 << o.buffer_log2) as f64 * o.fine_ps;
    let mut d = (fine - coarse).rem_euclid(span);
    if d >= span / 2.0 {
        d -= span;
    }
    (coarse + d, [sc, sf])
}

/// Events of `v` (sorted) in [from, from + len).
fn window(v: &[i64], from: i64, len: i64) -> &[i64] {
    let lo = v.partition_point(|&t| t < from);
    let hi = v.partition_point(|&t| t < from + len);
    &v[lo..hi]
}

/// Synchronise two sorted streams of event times in ps.
pub fn synchronise(a: &[i64], b: &[i64], o: &TwoSidedOptions) -> Result<TwoSidedReport> {
    if a.len() < 100 || b.len() < 100 {
        return Err(ConfigError::invalid("events", "need at least 100 events on each side").into());
    }
    if o.coarse_ps >= (1u64 << o.buffer_log2) as f64 * o.fine_ps || o.fine_ps <= 0.0 {
        return Err(
            ConfigError::invalid("resolutions", "coarse must be in (0, 2^q · fine)").into(),
        );
    }
    let t0 = a[0].min(b[0]);
    let t1 = a[a.len() - 1].max(b[b.len() - 1]);
    let wlen = ((o.window_s * 1e12) as i64).min((t1 - t0) / 2).max(1);
    let ts = (t1 - t0) - wlen;
    // First pass at the coarse resolution only (drift smears the fine peak); then correct B by
    // the current (Δ, df) and refine both from early/late windows, as fpfind iterates.
    let (coarse0, sc) = correlate(
        window(a, t0, wlen),
        window(b, t0, i64::MAX / 4),
        o.buffer_log2,
        o.coarse_ps,
    );
    if sc < o.min_significance {
        return Err(ConfigError::invalid(
            "correlation",
            format!(
                "no significant coarse correlation peak ({sc:.1} σ; need {})",
                o.min_significance
            ),
        )
        .into());
    }
    let (mut delta, mut df) = (coarse0, 0.0f64);
    let mut sig = [sc, 0.0];
    for pass in 0..4 {
        let corrected: Vec<i64> = b
            .iter()
            .map(|&t| (t as f64 - delta - df * (t - t0) as f64) as i64)
            .collect();
        let fine_pass = pass > 0;
        let est = |from: i64| {
            let (wa, wb) = (window(a, from, wlen), window(&corrected, from, wlen));
            if fine_pass {
                offset(wa, wb, o)
            } else {
                let (c, s) = correlate(wa, wb, o.buffer_log2, o.coarse_ps);
                (c, [s, 0.0])
            }
        };
        let (e, se) = est(t0);
        let (l, _) = est(t0 + ts);
        delta += e;
        if ts > 0 {
            df += (l - e) / ts as f64;
        }
        if fine_pass {
            sig = se;
        }
    }
    if sig[1] < o.min_significance {
        return Err(ConfigError::invalid(
            "correlation",
            format!(
                "no significant fine correlation peak ({:.1} σ; need {})",
                sig[1], o.min_significance
            ),
        )
        .into());
    }
    let early = delta;
    // Coincidences with tracking: predicted t_B = t_A + Δ(t_A), Δ updated by the residuals.
    let w = o.coincidence_ps;
    let mut delta = early;
    let (mut pairs, mut acc, mut sum2) = (Vec::new(), 0u64, 0.0);
    let mut j = 0usize;
    let mut k = 0usize;
    for (i, &ta) in a.iter().enumerate() {
        let pred = ta as f64 + delta + df * (ta - t0) as f64;
        while j < b.len() && (b[j] as f64) < pred - w {
            j += 1;
        }
        if j < b.len() && (b[j] as f64 - pred).abs() <= w {
            let r = b[j] as f64 - pred;
            delta += r / 64.0;
            sum2 += r * r;
            pairs.push((i, j));
            j += 1;
        }
        let shifted = pred + 20.0 * w;
        while k < b.len() && (b[k] as f64) < shifted - w {
            k += 1;
        }
        if k < b.len() && (b[k] as f64 - shifted).abs() <= w {
            acc += 1;
        }
    }
    let n = pairs.len();
    // Final estimates from the matched pairs: t_B − t_A = Δ + df·(t_A − t0), least squares.
    let (mut offset_ps, mut drift) = (early, df);
    if n >= 16 {
        let m = n as f64;
        let (mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0);
        for &(i, j) in &pairs {
            let x = (a[i] - t0) as f64;
            let y = (b[j] - a[i]) as f64;
            sx += x;
            sy += y;
            sxx += x * x;
            sxy += x * y;
        }
        let var = sxx - sx * sx / m;
        if var > 0.0 {
            drift = (sxy - sx * sy / m) / var;
            offset_ps = (sy - drift * sx) / m;
        }
    }
    let _ = early;
    Ok(TwoSidedReport {
        offset_ps,
        drift_ppm: drift * 1e6,
        significance: sig,
        coincidences: n as u64,
        accidentals: acc,
        jitter_ps: if n > 0 { (sum2 / n as f64).sqrt() } else { 0.0 },
        pairs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    #[test]
    fn recovers_offset_drift_and_coincidences() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let (offset, drift) = (123_456_789.0f64, 7e-6);
        let mut a = Vec::new();
        let mut b = Vec::new();
        let mut t = 0.0f64;
        let mut pairs = 0u64;
        // 200 k pair emissions over ~0.2 s, 50 % detected on each side, plus noise.
        for _ in 0..200_000 {
            t += rng.random_range(0.0..2.0e6);
            let jitter = |r: &mut rand_chacha::ChaCha8Rng| r.random_range(-60.0..60.0);
            let da = rng.random_bool(0.5);
            let db = rng.random_bool(0.5);
            if da {
                a.push((t + jitter(&mut rng)) as i64);
            }
            if db {
                b.push((offset + (1.0 + drift) * t + jitter(&mut rng)) as i64);
            }
            pairs += u64::from(da && db);
            if rng.random_bool(0.2) {
                b.push((offset + (1.0 + drift) * t + rng.random_range(1e5..1e6)) as i64);
            }
        }
        a.sort_unstable();
        b.sort_unstable();
        let r = synchronise(&a, &b, &TwoSidedOptions::default()).unwrap();
        assert!(
            (r.offset_ps - offset).abs() < 50.0,
            "offset {}",
            r.offset_ps
        );
        assert!((r.drift_ppm - 7.0).abs() < 0.01, "drift {}", r.drift_ppm);
        assert!(
            r.coincidences as f64 > 0.97 * pairs as f64,
            "{} of {pairs}",
            r.coincidences
        );
        assert!(r.accidentals * 20 < r.coincidences);
        assert!(r.jitter_ps < 100.0);
        // Unrelated streams: no significant peak.
        let c: Vec<i64> = (0..50_000).map(|i| i * 4_000_003 + 17).collect();
        assert!(synchronise(&a, &c, &TwoSidedOptions::default()).is_err());
    }
}
