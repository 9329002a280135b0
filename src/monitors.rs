//! Monitors that flag an eavesdropper's footprint in the statistics of a run, beyond the error
//! rate. Each is a one-sided test at [`SIGMA`] standard deviations against what an honest link
//! must show, so an honest run passes with probability ≈ 1 − 3·10⁻⁷ per test; an alarm aborts
//! the run (no key). The attack models they answer are in [`crate::sim::link::Attack`] and
//! `docs/attacks.md`.
//!
//! | monitor | honest invariant | attack it catches |
//! |---|---|---|
//! | `decoy_consistency` | signal/decoy gain ratio ≤ μ₁/μ₂ (the gain of a lossy channel is concave in μ) | photon-number splitting |
//! | `detector_balance` | clicks of the two detectors of a basis in the ratio of their calibrated efficiencies | efficiency-mismatch attacks that favour one value |
//! | `double_clicks` | cross-basis double clicks ≥ N·z̄·x̄ (independent Poisson splitting at Bob's passive beam splitter; Chebyshev's sum inequality over intensities) | detector blinding (classical trigger pulses click one detector) |
//! | `too_perfect_qber` | error rate ≥ ½·e_mis of the calibration | blinding, other classical control |
//! | `arrival_time` | per-detector timing spread and gate position as calibrated | time-shift, faked states |
//! | `watchdog` | Alice's watchdog clicks ≤ its dark counts | trojan horse |
//! | `chsh` (entanglement) | S significantly above 2 | intercept-resend on entangled pairs |

use crate::parameter_estimation::finite_key::DecoyCounts;
use crate::protocol::DecoyParams;
use serde::{Deserialize, Serialize};

/// Significance of every monitor (one-sided, in standard deviations).
pub const SIGMA: f64 = 5.0;

/// A monitor's finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    /// Monitor name.
    pub monitor: String,
    /// Deviation from the honest bound, in standard deviations.
    pub sigma: f64,
    /// What was seen against what an honest link shows.
    pub detail: String,
}

impl std::fmt::Display for Alarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({:.1} σ): {}", self.monitor, self.sigma, self.detail)
    }
}

/// Bob's receiver calibration (`calibration` in his log's metadata).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Dark-count probability per detector per slot.
    #[serde(default)]
    pub dark_count_prob: Option<f64>,
    /// Misalignment error probability.
    #[serde(default)]
    pub misalignment: Option<f64>,
    /// Relative efficiencies of the detectors Z0, Z1, X0, X1.
    #[serde(default)]
    pub detector_efficiency: Option<Vec<f64>>,
    /// RMS timing jitter in ps.
    #[serde(default)]
    pub jitter_ps: Option<f64>,
    /// Detector delays in ps.
    #[serde(default)]
    pub detector_delay_ps: Option<Vec<f64>>,
}

/// What one block offers the monitors.
#[derive(Debug, Clone)]
pub struct BlockStats<'a> {
    /// Source parameters.
    pub decoy: &'a DecoyParams,
    /// Sifted counts per intensity class.
    pub counts: &'a DecoyCounts,
    /// Key-basis sample: (bits, errors).
    pub sample: (u64, u64),
    /// Slots the block spans.
    pub slots: u64,
    /// Bob's clicks per detector (Z0, Z1, X0, X1).
    pub detector_clicks: [u64; 4],
    /// Slots with a Z click and with an X click.
    pub arm_slots: [u64; 2],
    /// Slots with clicks in both bases.
    pub cross_basis_clicks: u64,
}

fn alarm(monitor: &str, sigma: f64, detail: String) -> Alarm {
    Alarm {
        monitor: monitor.into(),
        sigma,
        detail,
    }
}

/// Run every block-level monitor.
pub fn check_block(s: &BlockStats<'_>, cal: &Calibration) -> Vec<Alarm> {
    let mut out = Vec::new();
    // Decoy consistency: gain ratio of signal to decoy against μ₁/μ₂.
    let d = s.decoy;
    let g: [f64; 2] = std::array::from_fn(|k| {
        (s.counts.n_key[k] + s.counts.n_test[k]) as f64 / d.probabilities[k]
    });
    let n: [u64; 2] = std::array::from_fn(|k| s.counts.n_key[k] + s.counts.n_test[k]);
    if n[0] >= 100 && n[1] >= 100 {
        let r = g[0] / g[1];
        let bound = d.intensities[0] / d.intensities[1];
        let sd = r * (1.0 / n[0] as f64 + 1.0 / n[1] as f64).sqrt();
        let z = (r - bound) / sd;
        if z > SIGMA {
            out.push(alarm(
                "decoy_consistency",
                z,
                format!(
                    "signal/decoy gain ratio {r:.3} exceeds μ₁/μ₂ = {bound:.3}: yields depend on the photon number (photon-number splitting)"
                ),
            ));
        }
    }
    // Detector balance within each basis, against the calibrated efficiency ratio.
    let eff = cal
        .detector_efficiency
        .clone()
        .filter(|e| e.len() == 4 && e.iter().all(|&x| x > 0.0))
        .unwrap_or_else(|| vec![1.0; 4]);
    for (b, name) in [(0usize, "Z"), (2, "X")] {
        let (c0, c1) = (s.detector_clicks[b] as f64, s.detector_clicks[b + 1] as f64);
        if c0 + c1 < 100.0 {
            continue;
        }
        let p0 = eff[b] / (eff[b] + eff[b + 1]);
        let z = (c0 - (c0 + c1) * p0).abs() / ((c0 + c1) * p0 * (1.0 - p0)).sqrt();
        if z > SIGMA {
            out.push(alarm(
                "detector_balance",
                z,
                format!(
                    "{name}-basis detectors clicked {c0:.0} : {c1:.0}, expected {:.3} : {:.3} from their efficiencies",
                    p0,
                    1.0 - p0
                ),
            ));
        }
    }
    // Cross-basis double clicks against the independent-splitting lower bound.
    if s.slots > 0 {
        let (z, x) = (
            s.arm_slots[0] as f64 / s.slots as f64,
            s.arm_slots[1] as f64 / s.slots as f64,
        );
        let expected = s.slots as f64 * z * x;
        let seen = s.cross_basis_clicks as f64;
        if expected >= 25.0 {
            let sd = expected.sqrt();
            let zs = (expected - seen) / sd;
            if zs > SIGMA {
                out.push(alarm(
                    "double_clicks",
                    zs,
                    format!(
                        "{seen:.0} cross-basis double clicks where an honest receiver shows at least {expected:.0} (blinded detectors?)"
                    ),
                ));
            }
        }
    }
    // Too perfect an error rate.
    if let Some(e) = cal.misalignment.filter(|e| *e > 0.0) {
        let bits = s.sample.0 + s.counts.test_total();
        let errors = (s.sample.1 + s.counts.test_errors()) as f64;
        let floor = 0.5 * e * bits as f64;
        if floor >= 25.0 {
            let z = (floor - errors) / floor.sqrt();
            if z > SIGMA {
                out.push(alarm(
                    "too_perfect_qber",
                    z,
                    format!(
                        "{errors:.0} errors in {bits} disclosed bits, below half the calibrated misalignment floor ({floor:.0})"
                    ),
                ));
            }
        }
    }
    out
}

/// Arrival-time monitor on the synchronisation of raw time tags: each detector's timing spread
/// and its gate position relative to the first detector, against the calibration.
pub fn check_arrival_times(sync: &crate::sync::SyncReport, cal: &Calibration) -> Vec<Alarm> {
    let mut out = Vec::new();
    let Some(jitter) = cal.jitter_ps else {
        return out;
    };
    let period = sync.period_ps;
    let delays = cal.detector_delay_ps.clone().unwrap_or_default();
    let c0 = sync.detectors.first().map_or(0.0, |d| d.gate_center_ps);
    for (i, d) in sync.detectors.iter().enumerate() {
        // A Gaussian arrival-time distribution puts ≈ 6·10⁻⁵ of the clicks outside a ±4σ gate;
        // alarm beyond 1 % (clicks arriving where the calibrated detector never clicks).
        let outside = 1.0 - d.gate_efficiency;
        let n = (sync.detections_in as f64 / sync.detectors.len().max(1) as f64).max(1.0);
        if outside > 0.01 {
            let p0 = 1e-3;
            out.push(alarm(
                "arrival_time",
                (outside - p0) / (p0 * (1.0 - p0) / n).sqrt(),
                format!(
                    "detector {} ({}): {:.1} % of the clicks fall outside the calibrated arrival-time window (time-shifted or faked pulses?)",
                    d.channel,
                    d.state,
                    100.0 * outside
                ),
            ));
            continue;
        }
        // The spread estimate itself scatters by ≈ jitter/√(2n); allow a factor 1.5 plus 20 ps.
        let limit = 1.5 * jitter + 20.0;
        if d.jitter_ps > limit {
            let se = jitter / (2.0 * d.events_searched.max(1) as f64).sqrt();
            out.push(alarm(
                "arrival_time",
                (d.jitter_ps - jitter) / se.max(1e-9),
                format!(
                    "detector {} ({}): timing spread {:.0} ps against {:.0} ps calibrated (time-shifted pulses?)",
                    d.channel, d.state, d.jitter_ps, jitter
                ),
            ));
            continue;
        }
        if let (Some(&di), Some(&d0)) = (delays.get(i), delays.first()) {
            let mut rel = d.gate_center_ps - c0 - (di - d0);
            rel -= (rel / period).round() * period;
            let tol = (3.0 * jitter).max(50.0);
            if rel.abs() > tol {
                out.push(alarm(
                    "arrival_time",
                    rel.abs() / jitter.max(1.0),
                    format!(
                        "detector {} ({}): gate moved by {rel:.0} ps against the calibrated delays",
                        d.channel, d.state
                    ),
                ));
            }
        }
    }
    out
}

/// Alice's watchdog detector: clicks beyond its dark counts mean light entering her
/// transmitter from the fiber (trojan-horse probing).
pub fn check_watchdog(meta: &serde_json::Map<String, serde_json::Value>) -> Vec<Alarm> {
    let Some(w) = meta.get("watchdog") else {
        return Vec::new();
    };
    let slots = w.get("slots").and_then(|v| v.as_f64()).unwrap_or(0.0);
    let counts = w.get("counts").and_then(|v| v.as_f64()).unwrap_or(0.0);
    let dark = w.get("dark_prob").and_then(|v| v.as_f64()).unwrap_or(0.0);
    let expected = slots * dark;
    // Poisson: mean + 5 σ, and at least 5 counts (small means).
    let limit = expected + SIGMA * expected.sqrt() + 5.0;
    if counts > limit {
        vec![alarm(
            "watchdog",
            (counts - expected) / expected.max(1.0).sqrt(),
            format!(
                "Alice's watchdog detector clicked {counts:.0} times where its dark counts give {expected:.1} (light probing her transmitter: trojan horse)"
            ),
        )]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests;
