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
//! | `pulse_timing` (Alice, two-way systems) | incoming pulses inside her modulation window | phase remapping (pulses shifted onto the modulator's edge) |
//! | `arrival_time` | per-detector timing spread and gate position as calibrated | time-shift, faked states |
//! | `watchdog` | Alice's watchdog clicks ≤ its dark counts | trojan horse |
//! | `chsh` (entanglement) | S significantly above 2 | intercept-resend on entangled pairs |
//! | `alice_rng` (Alice, local) | her basis, value and intensity choices over all slots at their nominal frequencies, no serial correlation ([`randomness`]) | biased, sticky or periodic generator |
//! | `announced_bases` (Bob) | Alice's disclosed bases at the detections at P(Z), no serial correlation | biased or correlated basis generator at Alice |

use crate::error::{FormatError, Result};
use crate::parameter_estimation::finite_key::DecoyCounts;
use crate::protocol::DecoyParams;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Significance of every monitor (one-sided, in standard deviations).
pub const SIGMA: f64 = 5.0;

pub use crate::error::Alarm;

/// Whether a monitor ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MonitorState {
    /// It tested the data.
    Ran,
    /// It could not test the data (the reason says why).
    Skipped,
}

/// One monitor's status for one block (or for the run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorStatus {
    /// Monitor name.
    pub monitor: String,
    /// Ran or skipped.
    pub state: MonitorState,
    /// Why it was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl MonitorStatus {
    /// `monitor` ran.
    pub fn ran(monitor: &str) -> Self {
        MonitorStatus {
            monitor: monitor.into(),
            state: MonitorState::Ran,
            reason: None,
        }
    }
    /// `monitor` was skipped because of `why`.
    pub fn skipped(monitor: &str, why: impl Into<String>) -> Self {
        MonitorStatus {
            monitor: monitor.into(),
            state: MonitorState::Skipped,
            reason: Some(why.into()),
        }
    }
}

/// What a set of monitors found: alarms, and which of them ran.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MonitorRun {
    /// Alarms raised.
    pub alarms: Vec<Alarm>,
    /// Status of every monitor of the set.
    pub status: Vec<MonitorStatus>,
}

impl MonitorRun {
    fn ran(&mut self, monitor: &str) {
        self.status.push(MonitorStatus::ran(monitor));
    }
    fn skipped(&mut self, monitor: &str, why: impl Into<String>) {
        self.status.push(MonitorStatus::skipped(monitor, why));
    }
}

/// A run's summary of one monitor over its blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorSummary {
    /// Monitor name.
    pub monitor: String,
    /// Ran on at least one block (or on the run).
    pub state: MonitorState,
    /// Blocks (or runs) it tested.
    pub ran: u64,
    /// Blocks (or runs) it skipped.
    pub skipped: u64,
    /// The distinct reasons for skipping.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// Merge statuses (of many blocks and of the run) into one line per monitor, in order of
/// first appearance.
pub fn summarize(statuses: &[MonitorStatus]) -> Vec<MonitorSummary> {
    let mut out: Vec<MonitorSummary> = Vec::new();
    for s in statuses {
        let i = match out.iter().position(|m| m.monitor == s.monitor) {
            Some(i) => i,
            None => {
                out.push(MonitorSummary {
                    monitor: s.monitor.clone(),
                    state: MonitorState::Skipped,
                    ran: 0,
                    skipped: 0,
                    reasons: vec![],
                });
                out.len() - 1
            }
        };
        let m = &mut out[i];
        match s.state {
            MonitorState::Ran => {
                m.ran += 1;
                m.state = MonitorState::Ran;
            }
            MonitorState::Skipped => {
                m.skipped += 1;
                if let Some(r) = &s.reason
                    && !m.reasons.contains(r)
                {
                    m.reasons.push(r.clone());
                }
            }
        }
    }
    out
}

/// Bob's receiver calibration (`calibration` in his log's metadata).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

impl Calibration {
    /// The calibration in a log's metadata (`None` when the log has none). A calibration that
    /// does not parse is an error naming the file and the field: it is never replaced by
    /// defaults, which would turn the calibrated monitors off without notice.
    pub fn from_meta(
        path: &Path,
        meta: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Option<Calibration>> {
        let Some(v) = meta.get("calibration") else {
            return Ok(None);
        };
        let cal: Calibration =
            serde_json::from_value(v.clone()).map_err(|e| FormatError::Metadata {
                path: path.to_path_buf(),
                offset: 64,
                message: format!("field `calibration`: {e}"),
            })?;
        let bad = |field: &str, why: &str| -> crate::error::Error {
            FormatError::Metadata {
                path: path.to_path_buf(),
                offset: 64,
                message: format!("field `calibration.{field}`: {why}"),
            }
            .into()
        };
        let unit = |x: Option<f64>| x.is_none_or(|v| (0.0..=1.0).contains(&v));
        if !unit(cal.dark_count_prob) {
            return Err(bad("dark_count_prob", "must be a probability in [0, 1]"));
        }
        if !unit(cal.misalignment) {
            return Err(bad("misalignment", "must be a probability in [0, 1]"));
        }
        if let Some(e) = &cal.detector_efficiency
            && (e.len() != 4 || e.iter().any(|&x| !(x > 0.0 && x.is_finite())))
        {
            return Err(bad(
                "detector_efficiency",
                "must list four positive efficiencies (Z0, Z1, X0, X1)",
            ));
        }
        if cal.jitter_ps.is_some_and(|j| !(j > 0.0 && j.is_finite())) {
            return Err(bad("jitter_ps", "must be a positive number of ps"));
        }
        if let Some(d) = &cal.detector_delay_ps
            && d.iter().any(|x| !x.is_finite())
        {
            return Err(bad("detector_delay_ps", "must be finite numbers of ps"));
        }
        Ok(Some(cal))
    }
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

/// The block-level monitors, in the order [`check_block`] reports them.
pub const BLOCK_MONITORS: [&str; 4] = [
    "decoy_consistency",
    "detector_balance",
    "double_clicks",
    "too_perfect_qber",
];

/// Run every block-level monitor; each reports whether it ran.
pub fn check_block(s: &BlockStats<'_>, cal: &Calibration) -> MonitorRun {
    let mut run = MonitorRun::default();
    // Decoy consistency: gain ratio of signal to decoy against μ₁/μ₂.
    let d = s.decoy;
    let g: [f64; 2] = std::array::from_fn(|k| {
        (s.counts.n_key[k] + s.counts.n_test[k]) as f64 / d.probabilities[k]
    });
    let n: [u64; 2] = std::array::from_fn(|k| s.counts.n_key[k] + s.counts.n_test[k]);
    if n[0] < 100 || n[1] < 100 {
        run.skipped(
            "decoy_consistency",
            "fewer than 100 detections of the signal or the decoy intensity",
        );
    } else {
        run.status.push(MonitorStatus::ran("decoy_consistency"));
        let r = g[0] / g[1];
        let bound = d.intensities[0] / d.intensities[1];
        let sd = r * (1.0 / n[0] as f64 + 1.0 / n[1] as f64).sqrt();
        let z = (r - bound) / sd;
        if z > SIGMA {
            run.alarms.push(alarm(
                "decoy_consistency",
                z,
                format!(
                    "signal/decoy gain ratio {r:.3} exceeds μ₁/μ₂ = {bound:.3}: yields depend on the photon number (photon-number splitting)"
                ),
            ));
        }
    }
    // Detector balance within each basis, against the calibrated efficiency ratio.
    let clicks: u64 = s.detector_clicks.iter().sum();
    let eff = match &cal.detector_efficiency {
        None => {
            run.skipped(
                "detector_balance",
                "no calibrated detector efficiencies in Bob's log",
            );
            vec![]
        }
        Some(_) if clicks < 200 => {
            run.skipped("detector_balance", "fewer than 200 clicks");
            vec![]
        }
        Some(e) => {
            run.status.push(MonitorStatus::ran("detector_balance"));
            e.clone()
        }
    };
    for (b, name) in [(0usize, "Z"), (2, "X")] {
        let (c0, c1) = (s.detector_clicks[b] as f64, s.detector_clicks[b + 1] as f64);
        if eff.is_empty() || c0 + c1 < 100.0 {
            continue;
        }
        let p0 = eff[b] / (eff[b] + eff[b + 1]);
        let z = (c0 - (c0 + c1) * p0).abs() / ((c0 + c1) * p0 * (1.0 - p0)).sqrt();
        if z > SIGMA {
            run.alarms.push(alarm(
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
    let expected = if s.slots > 0 {
        s.slots as f64
            * (s.arm_slots[0] as f64 / s.slots as f64)
            * (s.arm_slots[1] as f64 / s.slots as f64)
    } else {
        0.0
    };
    if expected < 25.0 {
        run.skipped(
            "double_clicks",
            "fewer than 25 cross-basis double clicks expected in the block",
        );
    } else {
        run.status.push(MonitorStatus::ran("double_clicks"));
    }
    if s.slots > 0 {
        let seen = s.cross_basis_clicks as f64;
        if expected >= 25.0 {
            let sd = expected.sqrt();
            let zs = (expected - seen) / sd;
            if zs > SIGMA {
                run.alarms.push(alarm(
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
    match cal.misalignment.filter(|e| *e > 0.0) {
        None => run.skipped(
            "too_perfect_qber",
            "no calibrated misalignment error in Bob's log",
        ),
        Some(e) if 0.5 * e * ((s.sample.0 + s.counts.test_total()) as f64) < 25.0 => run.skipped(
            "too_perfect_qber",
            "fewer than 25 errors expected at half the calibrated misalignment",
        ),
        Some(_) => run.status.push(MonitorStatus::ran("too_perfect_qber")),
    }
    if let Some(e) = cal.misalignment.filter(|e| *e > 0.0) {
        let bits = s.sample.0 + s.counts.test_total();
        let errors = (s.sample.1 + s.counts.test_errors()) as f64;
        let floor = 0.5 * e * bits as f64;
        if floor >= 25.0 {
            let z = (floor - errors) / floor.sqrt();
            if z > SIGMA {
                run.alarms.push(alarm(
                    "too_perfect_qber",
                    z,
                    format!(
                        "{errors:.0} errors in {bits} disclosed bits, below half the calibrated misalignment floor ({floor:.0})"
                    ),
                ));
            }
        }
    }
    run
}

/// Why the arrival-time monitor cannot run on slot-annotated detections.
pub const NO_TIMING: &str = "Bob's log is slot-annotated: it carries no arrival times, so efficiency-mismatch attacks (time-shift, faked states) cannot be detected; distill raw time tags to run this monitor";

/// Arrival-time monitor on the synchronisation of raw time tags: each detector's timing spread
/// and its gate position relative to the first detector, against the calibration.
pub fn check_arrival_times(
    sync: &crate::sync::SyncReport,
    cal: Option<&Calibration>,
) -> MonitorRun {
    let mut run = MonitorRun::default();
    let Some(jitter) = cal.and_then(|c| c.jitter_ps) else {
        run.skipped("arrival_time", "no calibrated timing jitter in Bob's log");
        return run;
    };
    let cal = cal.expect("calibration with jitter");
    run.ran("arrival_time");
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
            run.alarms.push(alarm(
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
            run.alarms.push(alarm(
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
                run.alarms.push(alarm(
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
    run
}

/// A counter in Alice's log metadata (`meta[key]`: `slots`, `counts` and the per-slot
/// probability `rate_field` of an honest count) against its Poisson limit: mean + 5σ and at
/// least 5 counts. A missing entry skips `monitor` with `missing`; a malformed one is an error
/// naming the file and the field.
fn check_counter(
    path: &Path,
    meta: &serde_json::Map<String, serde_json::Value>,
    (key, rate_field, monitor): (&str, &str, &str),
    missing: &str,
    detail: impl Fn(f64, f64) -> String,
) -> Result<MonitorRun> {
    let mut run = MonitorRun::default();
    let Some(w) = meta.get(key) else {
        run.skipped(monitor, missing);
        return Ok(run);
    };
    let field = |name: &str| -> Result<f64> {
        w.get(name)
            .and_then(|v| v.as_f64())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| {
                FormatError::Metadata {
                    path: path.to_path_buf(),
                    offset: 64,
                    message: format!("field `{key}.{name}`: a non-negative number is required"),
                }
                .into()
            })
    };
    let (slots, counts, rate) = (field("slots")?, field("counts")?, field(rate_field)?);
    run.ran(monitor);
    let expected = slots * rate;
    let limit = expected + SIGMA * expected.sqrt() + 5.0;
    if counts > limit {
        run.alarms.push(alarm(
            monitor,
            (counts - expected) / expected.max(1.0).sqrt(),
            detail(counts, expected),
        ));
    }
    Ok(run)
}

/// Alice's watchdog detector (trojan-horse monitor) against its dark counts.
pub fn check_watchdog(
    path: &Path,
    meta: &serde_json::Map<String, serde_json::Value>,
) -> Result<MonitorRun> {
    check_counter(
        path,
        meta,
        ("watchdog", "dark_prob", "watchdog"),
        "no watchdog detector data in Alice's log",
        |counts, expected| {
            format!(
                "Alice's watchdog detector clicked {counts:.0} times where its dark counts give {expected:.1} (light probing her transmitter: trojan horse)"
            )
        },
    )
}

/// Two-way systems: Alice's monitor of the arrival time of the pulses Bob sends her, against
/// the honest jitter tail. Pulses outside her modulation window are what a phase-remapping
/// attack needs (the modulator's rising edge).
pub fn check_pulse_timing(
    path: &Path,
    meta: &serde_json::Map<String, serde_json::Value>,
) -> Result<MonitorRun> {
    check_counter(
        path,
        meta,
        ("pulse_timing", "false_prob", "pulse_timing"),
        "no incoming-pulse timing data in Alice's log (a one-way transmitter has no incoming pulses)",
        |counts, expected| {
            format!(
                "{counts:.0} incoming pulses reached Alice outside her modulation window where the timing jitter gives {expected:.1} (time-shifted pulses: phase remapping)"
            )
        },
    )
}

pub mod randomness;

/// Alice's local test of her random choices (monitor `alice_rng`, [`randomness`]) over every
/// slot of her preparation log; nothing is disclosed.
pub fn check_preparation_randomness(
    prep: &crate::io::PrepLog,
    k: &crate::kernels::Kernels,
) -> MonitorRun {
    use rayon::prelude::*;
    let counts = (0..prep.blocks().len())
        .into_par_iter()
        .map(|i| {
            let b = prep.block_trusted(i);
            let mut c = randomness::PrepRandomness::default();
            c.add_block(k, b.planes(), b.n_slots);
            // Drop the mapped pages again: memory stays flat whatever the log's length.
            prep.release(i);
            c
        })
        .reduce(randomness::PrepRandomness::default, |mut a, b| {
            a.merge(&b);
            a
        });
    counts.evaluate(&prep.meta().decoy)
}

#[cfg(test)]
mod tests;
