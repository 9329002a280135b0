//! Monitor thresholds against honest statistics sampled from the link model, at 1 000 seeds.

use super::*;
use crate::protocol::Basis;
use crate::sim::link::{self, LinkParams};
use rand::{Rng, SeedableRng};

fn poisson(rng: &mut impl Rng, lambda: f64) -> u64 {
    // Normal approximation is fine for the large means here; exact inversion for small ones.
    if lambda > 50.0 {
        let u1: f64 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let u2: f64 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let z = (-2.0 * u1.max(1e-300).ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        return (lambda + z * lambda.sqrt()).round().max(0.0) as u64;
    }
    let (mut k, mut p) = (0u64, (-lambda).exp());
    let mut cdf = p;
    let u: f64 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    while u > cdf {
        k += 1;
        p *= lambda / k as f64;
        cdf += p;
    }
    k
}

/// One honest block's statistics drawn from the model of [`link`].
fn honest_block(
    p: &LinkParams,
    slots: u64,
    rng: &mut impl Rng,
) -> (DecoyCounts, (u64, u64), [u64; 4], [u64; 2], u64) {
    let e = link::expectation(p);
    let n = slots as f64;
    let mut c = DecoyCounts::default();
    for k in 0..3 {
        c.n_key[k] = poisson(rng, n * e.sifted_key_per_class[k]);
        c.n_test[k] = poisson(rng, n * e.sifted_test_per_class[k]);
        c.m_test[k] = poisson(rng, n * e.errors_test_per_class[k]);
    }
    let sample_bits = (0.01 * c.key_total() as f64) as u64;
    let sample_errors = poisson(rng, sample_bits as f64 * e.qber_key_overall);
    // Per-slot click probabilities by arm, and both arms, averaged over Alice's choices.
    let (mut pz, mut px, mut pzx, mut det) = (0.0, 0.0, 0.0, [0.0f64; 4]);
    for k in 0..3 {
        for (basis, wb) in [
            (Basis::Z, p.decoy.prob_key_basis),
            (Basis::X, 1.0 - p.decoy.prob_key_basis),
        ] {
            for v in 0..2u8 {
                let w = p.decoy.probabilities[k] * wb * 0.5;
                let pats = link::click_pattern_probabilities(p, p.decoy.intensities[k], basis, v);
                for (pat, &pr) in pats.iter().enumerate() {
                    let (z, x) = (pat & 3 != 0, pat & 12 != 0);
                    pz += w * pr * f64::from(u8::from(z));
                    px += w * pr * f64::from(u8::from(x));
                    pzx += w * pr * f64::from(u8::from(z && x));
                    for (d, dd) in det.iter_mut().enumerate() {
                        if pat >> d & 1 == 1 {
                            *dd += w * pr;
                        }
                    }
                }
            }
        }
    }
    let clicks = std::array::from_fn(|d| poisson(rng, n * det[d]));
    let arms = [poisson(rng, n * pz), poisson(rng, n * px)];
    (
        c,
        (sample_bits, sample_errors),
        clicks,
        arms,
        poisson(rng, n * pzx),
    )
}

#[test]
fn no_monitor_fires_on_honest_links_at_1000_seeds() {
    let cal = Calibration {
        dark_count_prob: Some(1e-7),
        misalignment: Some(0.01),
        detector_efficiency: Some(vec![0.6; 4]),
        jitter_ps: None,
        detector_delay_ps: None,
    };
    let mut alarms = 0;
    let mut seeds = 0;
    for (i, km) in [5.0, 25.0, 50.0, 100.0].into_iter().enumerate() {
        let p = LinkParams {
            distance_km: km,
            ..LinkParams::default()
        };
        for seed in 0..250u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed * 4 + i as u64);
            let (counts, sample, clicks, arms, cross) = honest_block(&p, 1 << 26, &mut rng);
            let s = BlockStats {
                decoy: &p.decoy,
                counts: &counts,
                sample,
                slots: 1 << 26,
                detector_clicks: clicks,
                arm_slots: arms,
                cross_basis_clicks: cross,
            };
            let a = check_block(&s, &cal);
            assert!(a.alarms.is_empty(), "{km} km seed {seed}: {a:?}");
            // Every block monitor says whether it ran; the decoy test always has the data.
            assert_eq!(a.status.len(), BLOCK_MONITORS.len());
            assert_eq!(a.status[0].state, MonitorState::Ran, "{:?}", a.status);
            alarms += a.alarms.len();
            seeds += 1;
        }
    }
    assert_eq!((alarms, seeds), (0, 1000));
}

#[test]
fn watchdog_counts_against_dark_counts() {
    let m = |counts: u64| {
        serde_json::json!({"watchdog": {"slots": 1e8, "counts": counts, "dark_prob": 1e-8}})
            .as_object()
            .unwrap()
            .clone()
    };
    let p = Path::new("alice.qpl");
    let w = |meta| check_watchdog(p, &meta).unwrap();
    assert!(w(m(1)).alarms.is_empty());
    assert!(w(m(6)).alarms.is_empty());
    assert_eq!(w(m(40)).alarms[0].monitor, "watchdog");
    let none = w(serde_json::Map::new());
    assert!(none.alarms.is_empty());
    assert_eq!(none.status[0].state, MonitorState::Skipped);
    // A malformed entry is an error naming the file and the field, not a silent skip.
    let bad = serde_json::json!({"watchdog": {"slots": 1e8, "counts": "many", "dark_prob": 1e-8}});
    let e = check_watchdog(p, bad.as_object().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("alice.qpl") && e.contains("watchdog.counts"),
        "{e}"
    );
}

#[test]
fn a_calibration_that_does_not_parse_is_an_error_naming_file_and_field() {
    let p = Path::new("bob.qdl");
    let meta = |v: serde_json::Value| {
        serde_json::json!({ "calibration": v })
            .as_object()
            .unwrap()
            .clone()
    };
    // Before: any parse failure silently became the default calibration (monitors off).
    for (v, field) in [
        (serde_json::json!({"misalignment": "0.01"}), "calibration"),
        (
            serde_json::json!({"misalignment": 2.0}),
            "calibration.misalignment",
        ),
        (
            serde_json::json!({"detector_efficiency": [0.5, 0.5]}),
            "calibration.detector_efficiency",
        ),
        (serde_json::json!({"jitter": 30}), "calibration"),
    ] {
        let e = Calibration::from_meta(p, &meta(v)).unwrap_err().to_string();
        assert!(e.contains("bob.qdl") && e.contains(field), "{e}");
    }
    assert_eq!(
        Calibration::from_meta(p, &serde_json::Map::new()).unwrap(),
        None
    );
    let ok = Calibration::from_meta(
        p,
        &meta(serde_json::json!({"misalignment": 0.01, "jitter_ps": null})),
    )
    .unwrap()
    .unwrap();
    assert_eq!(ok.misalignment, Some(0.01));
}

#[test]
fn block_monitors_say_why_they_skip() {
    let d = DecoyParams::default();
    let c = DecoyCounts::default();
    let s = BlockStats {
        decoy: &d,
        counts: &c,
        sample: (0, 0),
        slots: 1000,
        detector_clicks: [0; 4],
        arm_slots: [0; 2],
        cross_basis_clicks: 0,
    };
    let r = check_block(&s, &Calibration::default());
    assert_eq!(r.status.len(), BLOCK_MONITORS.len());
    assert!(
        r.status
            .iter()
            .all(|m| m.state == MonitorState::Skipped && m.reason.is_some())
    );
    let sum = summarize(&r.status);
    assert!(sum.iter().all(|m| m.skipped == 1 && m.ran == 0));
}

#[test]
fn pulse_timing_counts_against_the_jitter_tail() {
    let m = |counts: u64| {
        serde_json::json!({"pulse_timing": {"slots": 1e8, "counts": counts, "false_prob": 1e-7}})
            .as_object()
            .unwrap()
            .clone()
    };
    let p = Path::new("alice.qpl");
    let t = |meta| check_pulse_timing(p, &meta).unwrap();
    assert!(t(m(10)).alarms.is_empty());
    assert!(t(m(28)).alarms.is_empty());
    assert_eq!(t(m(200)).alarms[0].monitor, "pulse_timing");
    let none = t(serde_json::Map::new());
    assert_eq!(none.status[0].state, MonitorState::Skipped);
    let bad = serde_json::json!({"pulse_timing": {"slots": 1e8, "counts": 3, "false_prob": -1}});
    let e = check_pulse_timing(p, bad.as_object().unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("pulse_timing.false_prob"), "{e}");
}
