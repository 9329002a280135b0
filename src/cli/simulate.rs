//! `qkd simulate`.

use super::output::{TermProgress, print_json, thousands, write_json};
use clap::Args;
use qkd_distill::error::{ConfigError, Result};
use qkd_distill::sim::link::{Attack, LinkParams};
use qkd_distill::sim::{RawTagParams, SimulationSummary, simulate_with};
use std::path::PathBuf;

/// The device: source, fiber and receiver (shared by `simulate`, `demo` and `keyrate`).
#[derive(Args, Clone, Debug)]
pub struct DeviceArgs {
    /// Fiber attenuation in dB/km.
    #[arg(long, default_value_t = 0.2)]
    pub fiber_loss: f64,
    /// Loss inside Bob's receiver in dB.
    #[arg(long, default_value_t = 1.0)]
    pub receiver_loss_db: f64,
    /// Detector efficiency.
    #[arg(long, default_value_t = 0.6)]
    pub detector_efficiency: f64,
    /// Dark-count probability per detector per slot.
    #[arg(long, default_value_t = 1e-7)]
    pub dark_count: f64,
    /// Misalignment error probability.
    #[arg(long, default_value_t = 0.01)]
    pub misalignment: f64,
    /// Afterpulse probability per click.
    #[arg(long, default_value_t = 0.0)]
    pub afterpulse: f64,
    /// Intensities μ1,μ2,μ3 (signal, decoy, weak decoy).
    #[arg(long, value_delimiter = ',', num_args = 3, default_values_t = [0.5, 0.2, 0.0002])]
    pub intensities: Vec<f64>,
    /// Probabilities of the three intensities.
    #[arg(long, value_delimiter = ',', num_args = 3, default_values_t = [0.4, 0.4, 0.2])]
    pub intensity_probs: Vec<f64>,
    /// Probability that Alice prepares in the key basis Z.
    #[arg(long, default_value_t = 0.85)]
    pub basis_prob: f64,
    /// Probability that Bob's passive splitter sends a photon to the Z detectors.
    #[arg(long, default_value_t = 0.85)]
    pub bob_basis_prob: f64,
    /// Pulse rate in Hz.
    #[arg(long, default_value_t = 1_000_000_000)]
    pub clock_rate: u64,
}

impl DeviceArgs {
    /// Link parameters at `distance_km` (not yet validated).
    pub fn link(&self, distance_km: f64) -> Result<LinkParams> {
        let mut p = LinkParams {
            distance_km,
            fiber_loss_db_per_km: self.fiber_loss,
            receiver_loss_db: self.receiver_loss_db,
            detector_efficiency: self.detector_efficiency,
            dark_count_prob: self.dark_count,
            misalignment: self.misalignment,
            afterpulse_prob: self.afterpulse,
            bob_prob_key_basis: self.bob_basis_prob,
            clock_rate_hz: self.clock_rate,
            ..Default::default()
        };
        let three = |v: &[f64], name: &'static str| -> Result<[f64; 3]> {
            v.try_into()
                .map_err(|_| ConfigError::invalid(name, "give three comma-separated values").into())
        };
        p.decoy.intensities = three(&self.intensities, "intensities")?;
        p.decoy.probabilities = three(&self.intensity_probs, "intensity-probs")?;
        p.decoy.prob_key_basis = self.basis_prob;
        Ok(p)
    }
}

/// Physical parameters of the simulated link (shared by `simulate` and `demo`).
#[derive(Args, Clone, Debug)]
pub struct LinkArgs {
    /// Fiber length in km.
    #[arg(long, default_value_t = 25.0)]
    pub distance_km: f64,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Eavesdropper: none, NAME or NAME:FRACTION, with NAME one of intercept-resend, pns, blinding,
    /// time-shift, faked-states, trojan-horse, rng-basis-bias, rng-value-bias, rng-correlated,
    /// rng-periodic, rng-known-basis, phase-remapping (with --two-way) (docs/attacks.md).
    #[arg(long, default_value = "none")]
    pub attack: String,
    /// A two-way (plug-and-play) phase-encoded system: Alice modulates pulses Bob sent her and
    /// monitors their arrival time (needed by --attack phase-remapping).
    #[arg(long)]
    pub two_way: bool,
}

impl LinkArgs {
    /// Validated link parameters.
    pub fn params(&self) -> Result<LinkParams> {
        let mut p = self.device.link(self.distance_km)?;
        p.attack = Attack::parse(&self.attack)?;
        p.two_way = self.two_way;
        p.validate()?;
        Ok(p)
    }
}

#[derive(Args)]
pub struct SimulateArgs {
    /// Number of pulses (slots).
    #[arg(long, default_value_t = 100_000_000)]
    pub pulses: u64,
    /// Random seed (the same seed gives identical files).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the summary to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    #[command(flatten)]
    pub link: LinkArgs,
    /// Write Bob's detections as raw time tags (ps, Bob's clock) instead of slot indices.
    #[arg(long)]
    pub raw_timetags: bool,
    /// Raw tags: RMS timing jitter in ps.
    #[arg(long, default_value_t = 30.0, requires = "raw_timetags")]
    pub jitter_ps: f64,
    /// Raw tags: slots between Alice's sync pulses (0 = no sync channel).
    #[arg(long, default_value_t = 1000, requires = "raw_timetags")]
    pub sync_period_slots: u64,
    /// Raw tags: Bob's clock offset in µs.
    #[arg(long, default_value_t = 0.0, requires = "raw_timetags")]
    pub clock_offset_us: f64,
    /// Raw tags: Bob's clock rate error in ppm.
    #[arg(
        long,
        default_value_t = 0.0,
        requires = "raw_timetags",
        allow_hyphen_values = true
    )]
    pub clock_drift_ppm: f64,
    /// Raw tags: also write bob.ptu (PicoQuant Generic T2).
    #[arg(long, requires = "raw_timetags")]
    pub ptu: bool,
    /// Protocol: bb84 (decoy-state, default), e91, bbm92, noh09 (counterfactual), kak3
    /// (three-stage; not key distribution).
    #[arg(long, default_value = "bb84")]
    pub protocol: String,
    /// e91/bbm92: mean entangled pairs per slot.
    #[arg(long, default_value_t = 0.05)]
    pub pair_prob: f64,
    /// e91/bbm92/noh09: visibility of the entangled state / the interferometer.
    #[arg(long, default_value_t = 0.95)]
    pub visibility: f64,
    /// kak3: mean photon numbers per pulse to analyse.
    #[arg(long, value_delimiter = ',', default_values_t = [0.1, 1.0, 10.0, 100.0, 1000.0])]
    pub mean_photons: Vec<f64>,
    /// kak3: fraction of each transit the eavesdropper taps.
    #[arg(long, default_value_t = 0.1)]
    pub tap_fraction: f64,
}

fn run_other(a: &SimulateArgs) -> Result<u8> {
    use qkd_distill::protocols::{entangled, kak3, noh09};
    let dev = &a.link.device;
    let attack = Attack::parse(&a.link.attack)?;
    let summary: serde_json::Value = match a.protocol.as_str() {
        "e91" | "bbm92" => {
            let ir = match attack {
                Attack::None => 0.0,
                Attack::InterceptResend { fraction } => fraction,
                other => {
                    return Err(ConfigError::invalid(
                        "attack",
                        format!("{other:?}: entangled runs model intercept-resend only"),
                    )
                    .into());
                }
            };
            let p = entangled::EntangledParams {
                variant: if a.protocol == "e91" {
                    entangled::Variant::E91
                } else {
                    entangled::Variant::Bbm92
                },
                pair_prob: a.pair_prob,
                visibility: a.visibility,
                distance_a_km: a.link.distance_km / 2.0,
                distance_b_km: a.link.distance_km / 2.0,
                fiber_loss_db_per_km: dev.fiber_loss,
                detector_efficiency: dev.detector_efficiency,
                dark_count_prob: dev.dark_count,
                intercept_resend: ir,
            };
            serde_json::to_value(entangled::simulate(&p, a.pulses, a.seed, &a.out, a.force)?)
                .expect("serializes")
        }
        "noh09" => {
            if a.pulses > 50_000_000 {
                return Err(ConfigError::invalid(
                    "pulses",
                    "noh09 records every slot's choices: use at most 5·10^7 single-photon slots",
                )
                .into());
            }
            let p = noh09::NohParams {
                visibility: a.visibility,
                detector_efficiency: dev.detector_efficiency,
                dark_count_prob: dev.dark_count,
                ..Default::default()
            };
            noh09::simulate(&p, a.pulses, a.seed, &a.out, a.force)?
        }
        "kak3" => {
            let trials = a.pulses.min(1_000_000);
            let pts = kak3::simulate(
                &a.mean_photons,
                a.tap_fraction,
                trials,
                a.seed,
                &a.out,
                a.force,
            )?;
            if !a.json {
                println!(
                    "Kak three-stage protocol: eavesdropper tapping {} of each transit",
                    a.tap_fraction
                );
                for p in &pts {
                    println!(
                        "  mean photons {:>9.2}: Eve guesses the message right with probability {:.3}",
                        p.mean_photons, p.eve_success
                    );
                }
                println!("  (not key distribution: `qkd distill` refuses these logs)");
            }
            serde_json::json!({"protocol": "kak3", "points": pts})
        }
        other => {
            return Err(ConfigError::invalid(
                "protocol",
                format!(
                    "unknown protocol `{other}` ({})",
                    qkd_distill::protocols::PROTOCOLS
                ),
            )
            .into());
        }
    };
    if let Some(r) = &a.report {
        write_json(r, &summary)?;
    }
    if a.json {
        print_json(&summary);
    } else if a.protocol != "kak3" {
        println!(
            "simulated {} slots of {} into {}",
            thousands(a.pulses),
            a.protocol,
            a.out.display()
        );
    }
    Ok(0)
}

/// The files `simulate` writes, checked before it starts.
fn check_outputs(a: &SimulateArgs) -> Result<()> {
    let mut plan = qkd_distill::io::OutputPlan::new(a.force);
    let alice = if a.protocol == "bb84" {
        "alice.qpl"
    } else {
        "alice.qdl"
    };
    plan.output(&a.out.join(alice), "Alice's log")
        .output(&a.out.join("bob.qdl"), "Bob's log")
        .output(&a.out.join("link.json"), "link.json");
    if a.ptu {
        plan.output(&a.out.join("bob.ptu"), "bob.ptu");
    }
    plan.output_opt(a.report.as_deref(), "--report").check()
}

pub fn run(a: SimulateArgs) -> Result<u8> {
    check_outputs(&a)?;
    if a.protocol != "bb84" {
        return run_other(&a);
    }
    let params = a.link.params()?;
    let progress = TermProgress::new(a.json);
    let raw = a.raw_timetags.then(|| RawTagParams {
        jitter_ps: a.jitter_ps,
        sync_period_slots: a.sync_period_slots,
        clock_offset_ps: a.clock_offset_us * 1e6,
        clock_drift_ppm: a.clock_drift_ppm,
        ptu: a.ptu,
        ..RawTagParams::default()
    });
    let s = simulate_with(
        &params,
        a.pulses,
        a.seed,
        &a.out,
        a.force,
        &progress,
        raw.as_ref(),
    )?;
    if let Some(r) = &a.report {
        write_json(r, &s)?;
    }
    if a.json {
        print_json(&s);
    } else {
        print_summary(&s);
    }
    Ok(0)
}

pub fn print_summary(s: &SimulationSummary) {
    let p = &s.params;
    println!(
        "simulated {} pulses over {} km (seed {}, run {})",
        thousands(s.pulses),
        p.distance_km,
        s.seed,
        s.run_id
    );
    println!("  transmittance     {:.4e}", s.expected.transmittance);
    println!(
        "  detections        {} slots ({} multi-click)",
        thousands(s.counts.detected_slots),
        thousands(s.counts.multi_click_slots)
    );
    println!(
        "  expected QBER     {:.2} % key basis, {:.2} % test basis",
        100.0 * s.expected.qber_key_overall,
        100.0 * s.expected.qber_test_overall
    );
    if s.counts.attacked_pulses > 0 {
        println!(
            "  eavesdropper      {:?} on {} pulses",
            p.attack,
            thousands(s.counts.attacked_pulses)
        );
    }
    if let Some(r) = &s.raw_timetags {
        println!(
            "  raw time tags     jitter {} ps, clock offset {} µs, drift {} ppm, sync every {} slots",
            r.jitter_ps,
            r.clock_offset_ps / 1e6,
            r.clock_drift_ppm,
            r.sync_period_slots
        );
    }
    println!(
        "  files             {}, {}, {}",
        s.files.alice.display(),
        s.files.bob.display(),
        s.files.link.display()
    );
}
