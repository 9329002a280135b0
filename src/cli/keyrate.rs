//! `qkd keyrate`: secret-key rate against distance for a described device.

use super::output::{rate, write_json};
use super::simulate::DeviceArgs;
use super::svg;
use clap::Args;
use qkd_distill::error::{ConfigError, Result};
use qkd_distill::keyrate::{DataSize, Optimized, RateSettings, sweep};
use qkd_distill::sim::link::LinkParams;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Args)]
pub struct KeyrateArgs {
    /// Fiber lengths in km.
    #[arg(long, value_delimiter = ',', default_values_t = [0.0, 25.0, 50.0, 75.0, 100.0, 125.0, 150.0, 175.0, 200.0])]
    pub distance_km: Vec<f64>,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Error-correction efficiency f (λ_EC = f·n·h(E)).
    #[arg(long, default_value_t = 1.16)]
    pub f_ec: f64,
    /// Pulses N for the finite-key bound (omit both this and --sifted-bits for asymptotic only).
    #[arg(long, conflicts_with = "sifted_bits")]
    pub pulses: Option<f64>,
    /// Sifted key-basis bits n_X per block for the finite-key bound (N follows per distance).
    #[arg(long)]
    pub sifted_bits: Option<f64>,
    /// Secrecy parameter ε_sec.
    #[arg(long, default_value_t = 1e-10)]
    pub epsilon_sec: f64,
    /// Correctness parameter ε_cor.
    #[arg(long, default_value_t = 1e-15)]
    pub epsilon_cor: f64,
    /// Security per key bit κ: use ε_sec = κ·ℓ instead of a fixed ε_sec.
    #[arg(long)]
    pub kappa: Option<f64>,
    /// Fraction of key bits disclosed to estimate the error rate (as `distill --qber-sample`).
    #[arg(long, default_value_t = 0.0)]
    pub qber_sample: f64,
    /// Optimise μ₁, μ₂, their probabilities and the basis choice at every distance.
    #[arg(long)]
    pub optimize: bool,
    /// A published parameter set that replaces the device and security flags: lim2014
    /// (Lim et al., PRA 89, 022307 (2014), Fig. 1).
    #[arg(long)]
    pub preset: Option<String>,
    /// Write the table as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Plot the rates against distance (SVG).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Replace existing --json or --plot files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Serialize)]
struct Report<'a> {
    link: &'a LinkParams,
    settings: &'a RateSettings,
    optimized: bool,
    rows: Vec<Row>,
}

#[derive(Serialize)]
struct Row {
    distance_km: f64,
    channel_transmittance: f64,
    qber_key: f64,
    qber_test: f64,
    pulses: Option<f64>,
    /// Bits per pulse.
    infinite_decoy: f64,
    asymptotic_decoy: f64,
    finite_key: Option<f64>,
    plob: f64,
    /// Bits per second.
    infinite_decoy_bps: f64,
    asymptotic_decoy_bps: f64,
    finite_key_bps: Option<f64>,
    plob_bps: f64,
    intensities: [f64; 3],
    probabilities: [f64; 3],
    prob_key_basis: f64,
}

fn row(o: &Optimized) -> Row {
    let p = &o.point;
    Row {
        distance_km: p.distance_km,
        channel_transmittance: p.channel_transmittance,
        qber_key: p.qber_key,
        qber_test: p.qber_test,
        pulses: p.pulses,
        infinite_decoy: p.infinite_decoy,
        asymptotic_decoy: p.asymptotic_decoy,
        finite_key: p.finite_key,
        plob: p.plob,
        infinite_decoy_bps: p.per_second(p.infinite_decoy),
        asymptotic_decoy_bps: p.per_second(p.asymptotic_decoy),
        finite_key_bps: p.finite_key.map(|f| p.per_second(f)),
        plob_bps: p.per_second(p.plob),
        intensities: o.decoy.intensities,
        probabilities: o.decoy.probabilities,
        prob_key_basis: o.decoy.prob_key_basis,
    }
}

pub fn run(a: KeyrateArgs) -> Result<u8> {
    if a.distance_km.is_empty() || a.distance_km.iter().any(|d| !(*d >= 0.0 && d.is_finite())) {
        return Err(ConfigError::invalid("distance-km", "give lengths ≥ 0").into());
    }
    let count = |name: &'static str, v: Option<f64>, max: f64| -> Result<()> {
        match v {
            Some(x) if !(x.is_finite() && x >= 1.0 && x.fract() == 0.0 && x <= max) => {
                Err(ConfigError::invalid(
                    name,
                    format!("{x}: give a whole number between 1 and {max:e}"),
                )
                .into())
            }
            _ => Ok(()),
        }
    };
    // Above 2^53 a count is no longer exact in f64 and the finite-key terms lose their
    // meaning (they fall below the rounding of the asymptotic term).
    count("pulses", a.pulses, 1e18)?;
    count("sifted-bits", a.sifted_bits, 2f64.powi(53))?;
    let unit = |name: &'static str, v: f64| -> Result<()> {
        if v.is_finite() && v > 0.0 && v < 1.0 {
            Ok(())
        } else {
            Err(ConfigError::invalid(name, format!("{v}: must be in (0, 1)")).into())
        }
    };
    unit("epsilon-sec", a.epsilon_sec)?;
    unit("epsilon-cor", a.epsilon_cor)?;
    if let Some(k) = a.kappa {
        unit("kappa", k)?;
    }
    if !(a.qber_sample.is_finite() && (0.0..1.0).contains(&a.qber_sample)) {
        return Err(ConfigError::invalid("qber-sample", "must be in [0, 1)").into());
    }
    if !(a.f_ec.is_finite() && a.f_ec >= 1.0) {
        return Err(ConfigError::invalid(
            "f-ec",
            format!("{}: the error-correction efficiency is ≥ 1", a.f_ec),
        )
        .into());
    }
    qkd_distill::io::OutputPlan::new(a.force)
        .output_opt(a.json.as_deref(), "--json")
        .output_opt(a.plot.as_deref(), "--plot")
        .check()?;
    let data = match (a.pulses, a.sifted_bits) {
        (Some(n), _) => DataSize::Pulses(n),
        (None, Some(n)) => DataSize::SiftedBits(n),
        (None, None) => DataSize::Asymptotic,
    };
    let (mut link, mut settings) = (
        a.device.link(0.0)?,
        RateSettings {
            f_ec: a.f_ec,
            epsilon_sec: a.epsilon_sec,
            epsilon_cor: a.epsilon_cor,
            qber_sample_fraction: a.qber_sample,
            data,
            epsilon_sec_per_bit: a.kappa,
        },
    );
    match a.preset.as_deref() {
        None => {}
        Some("lim2014") => {
            let clock = link.clock_rate_hz;
            let data = settings.data;
            (link, settings) = qkd_distill::keyrate::lim2014();
            link.clock_rate_hz = clock;
            settings.data = data;
        }
        Some(other) => {
            return Err(ConfigError::invalid(
                "preset",
                format!("unknown preset `{other}` (lim2014)"),
            )
            .into());
        }
    }
    link.validate()?;
    settings.validate()?;
    let points = sweep(&link, &settings, &a.distance_km, a.optimize);
    let rows: Vec<Row> = points.iter().map(row).collect();
    println!(
        "{:>7} {:>10} {:>7} {:>11} {:>11} {:>11} {:>11} {:>14} {:>14}",
        "km", "η channel", "QBER", "inf. decoy", "3-decoy", "finite", "PLOB", "finite/s", "PLOB/s"
    );
    for r in &rows {
        println!(
            "{:>7.1} {:>10.3e} {:>6.2}% {:>11.3e} {:>11.3e} {:>11} {:>11.3e} {:>14} {:>14}",
            r.distance_km,
            r.channel_transmittance,
            100.0 * r.qber_key,
            r.infinite_decoy,
            r.asymptotic_decoy,
            r.finite_key.map_or("-".into(), |f| format!("{f:.3e}")),
            r.plob,
            r.finite_key_bps
                .map_or_else(|| rate(r.asymptotic_decoy_bps), rate),
            rate(r.plob_bps)
        );
    }
    println!(
        "(secret bits per pulse; per second at {} Hz{})",
        link.clock_rate_hz,
        match settings.data {
            DataSize::Asymptotic => ", asymptotic 3-decoy rate in the finite/s column".to_string(),
            DataSize::Pulses(n) => format!(", finite key at N = {n:.3e} pulses"),
            DataSize::SiftedBits(n) => format!(", finite key at n_X = {n:.3e} sifted bits"),
        }
    );
    if let Some(p) = &a.json {
        write_json(
            p,
            &Report {
                link: &link,
                settings: &settings,
                optimized: a.optimize,
                rows,
            },
        )?;
    }
    if let Some(p) = &a.plot {
        let series = |label: &str, f: &dyn Fn(&Optimized) -> Option<f64>| svg::Series {
            label: label.into(),
            points: points
                .iter()
                .filter_map(|o| f(o).filter(|v| *v > 0.0).map(|v| (o.point.distance_km, v)))
                .collect(),
        };
        let mut s = vec![
            series("PLOB bound −log₂(1−η)", &|o| Some(o.point.plob)),
            series("infinite decoy (GLLP)", &|o| Some(o.point.infinite_decoy)),
            series("3-intensity decoy, asymptotic", &|o| {
                Some(o.point.asymptotic_decoy)
            }),
        ];
        if !matches!(settings.data, DataSize::Asymptotic) {
            s.push(series("finite key (Lim et al. 2014)", &|o| {
                o.point.finite_key
            }));
        }
        let doc = svg::render(&[svg::Panel {
            title: "Secret key rate of decoy-state BB84".into(),
            x_label: "fiber length (km)".into(),
            y_label: "secret bits per pulse".into(),
            log_y: true,
            series: s,
            hlines: vec![],
        }]);
        qkd_distill::io::write_atomic(p, doc.as_bytes(), false)?;
    }
    Ok(0)
}
