//! Kak's three-stage protocol (Kak, Found. Phys. Lett. 19, 293 (2006)): Alice sends her bit as
//! a polarisation x ∈ {0, π/2} rotated by her secret angle θ_A; Bob adds his rotation θ_B and
//! returns it; Alice removes θ_A and sends it back; Bob removes θ_B and reads x. The three
//! transits carry x + θ_A, x + θ_A + θ_B and x + θ_B, so an eavesdropper who measures the
//! polarisation angle of each transit obtains x = t₁ − t₂ + t₃.
//!
//! With single photons she cannot measure an unknown angle (one photon yields one bit of a
//! basis measurement), and her guess is barely better than chance; with multi-photon pulses
//! (which the protocol needs against loss) she taps a few photons of each transit, estimates
//! the angles by polarimetry and reads the message. This module simulates that attack and
//! reports Eve's probability of guessing x against the mean photon number. It is not key
//! distribution: `qkd distill` refuses its logs.

use super::{PartyLog, run_id_of, write_party_log};
use crate::error::{ConfigError, Error, Result};
use crate::io::detection_log::{Record, RecordKind};
use crate::sim::deviates::{poisson, unit};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;
use std::path::Path;

/// Eve's success at one mean photon number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kak3Point {
    /// Mean photons per transit.
    pub mean_photons: f64,
    /// Fraction of each transit Eve taps.
    pub tap_fraction: f64,
    /// Probability that Eve's guess of x is right.
    pub eve_success: f64,
    /// Bob's error rate (Eve's tapping is passive here).
    pub bob_error: f64,
}

/// Eve's estimate of a polarisation angle from `m` tapped photons: half of them measured in
/// H/V, half in D/A; angle = ½·atan2(2p_D − 1, 2p_H − 1). With no photon: a uniform guess.
fn estimate(angle: f64, m: u32, rng: &mut ChaCha8Rng) -> f64 {
    if m == 0 {
        return unit(rng) * PI;
    }
    let (mut h, mut nh, mut dd, mut nd) = (0u32, 0u32, 0u32, 0u32);
    for i in 0..m {
        if i % 2 == 0 {
            nh += 1;
            h += u32::from(unit(rng) < angle.cos().powi(2));
        } else {
            nd += 1;
            dd += u32::from(unit(rng) < (angle - PI / 4.0).cos().powi(2));
        }
    }
    let ch = if nh > 0 {
        2.0 * f64::from(h) / f64::from(nh) - 1.0
    } else {
        0.0
    };
    let cd = if nd > 0 {
        2.0 * f64::from(dd) / f64::from(nd) - 1.0
    } else {
        0.0
    };
    0.5 * cd.atan2(ch)
}

/// Simulate `trials` messages at each mean photon number.
pub fn simulate(
    means: &[f64],
    tap_fraction: f64,
    trials: u64,
    seed: u64,
    out: &Path,
    overwrite: bool,
) -> Result<Vec<Kak3Point>> {
    if !(0.0..=1.0).contains(&tap_fraction) {
        return Err(ConfigError::invalid("tap fraction", format!("{tap_fraction}")).into());
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut points = Vec::new();
    let mut msgs = Vec::new();
    for &mu in means {
        let (mut ok, mut bob_err) = (0u64, 0u64);
        for t in 0..trials {
            let x = if unit(&mut rng) < 0.5 { 0.0 } else { PI / 2.0 };
            let (ta, tb) = (unit(&mut rng) * PI, unit(&mut rng) * PI);
            let transits = [x + ta, x + ta + tb, x + tb];
            let est: Vec<f64> = transits
                .iter()
                .map(|&ang| estimate(ang, poisson(&mut rng, mu * tap_fraction), &mut rng))
                .collect();
            let guess = (est[0] - est[1] + est[2]).rem_euclid(PI);
            let guess_bit = (guess - PI / 2.0).abs() < PI / 4.0;
            ok += u64::from(guess_bit == (x > 0.0));
            // Bob reads x exactly when a photon survives (ideal optics).
            bob_err += 0;
            if mu == means[0] {
                msgs.push(Record {
                    time: t as i64,
                    channel: 0,
                    kind: RecordKind::Marker,
                    flags: 0,
                    aux: u32::from(x > 0.0),
                });
            }
        }
        points.push(Kak3Point {
            mean_photons: mu,
            tap_fraction,
            eve_success: ok as f64 / trials as f64,
            bob_error: bob_err as f64 / trials as f64,
        });
    }
    let run_id = run_id_of("kak3", seed, trials);
    let extra = serde_json::json!({"kak3": &points});
    write_party_log(
        &out.join("alice.qdl"),
        PartyLog {
            role: "alice",
            protocol: "kak3",
            channels: vec![(0, "message".into())],
            extra: extra.clone(),
            run_id,
        },
        &msgs,
        overwrite,
    )?;
    write_party_log(
        &out.join("bob.qdl"),
        PartyLog {
            role: "bob",
            protocol: "kak3",
            channels: vec![(0, "message".into())],
            extra,
            run_id,
        },
        &msgs,
        overwrite,
    )?;
    super::write_summary(
        out,
        overwrite,
        &serde_json::json!({"protocol": "kak3", "points": &points}),
    )?;
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_photon_pulses_leak_the_message_single_photons_do_not() {
        let d = std::env::temp_dir().join(format!("qkd-kak-{}", std::process::id()));
        let pts = simulate(&[0.1, 1.0, 100.0, 10_000.0], 0.1, 20_000, 1, &d, true).unwrap();
        // μ·f = 0.01: almost never a tapped photon — a coin toss.
        assert!((pts[0].eve_success - 0.5).abs() < 0.03, "{pts:?}");
        // Thousands of photons per transit: Eve reads the message.
        assert!(pts[3].eve_success > 0.97, "{pts:?}");
        assert!(pts[2].eve_success > pts[1].eve_success);
        let _ = std::fs::remove_dir_all(&d);
    }
}
