//! A minimal SVG line plot (no plotting dependency): series of (x, y) points on linear or
//! logarithmic y axes, with optional horizontal reference lines.

use std::fmt::Write as _;

/// One data series.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// One panel.
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_y: bool,
    pub series: Vec<Series>,
    /// Horizontal reference lines (value, label).
    pub hlines: Vec<(f64, String)>,
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// Render panels side by side.
pub fn render(panels: &[Panel]) -> String {
    let (pw, ph) = (460.0, 340.0);
    let (ml, mr, mt, mb) = (64.0, 16.0, 36.0, 48.0);
    let width = pw * panels.len() as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{ph}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (pi, p) in panels.iter().enumerate() {
        let ox = pw * pi as f64;
        let ty = |v: f64| if p.log_y { v.max(1e-12).log10() } else { v };
        let pts: Vec<(f64, f64)> = p
            .series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(|&(x, y)| x.is_finite() && y.is_finite() && (!p.log_y || y > 0.0))
            .collect();
        let (mut x0, mut x1) = pts.iter().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| {
            (a.min(*x), b.max(*x))
        });
        let (mut y0, mut y1) = pts.iter().fold((f64::MAX, f64::MIN), |(a, b), (_, y)| {
            (a.min(ty(*y)), b.max(ty(*y)))
        });
        for (v, _) in &p.hlines {
            y0 = y0.min(ty(*v));
            y1 = y1.max(ty(*v));
        }
        if !x0.is_finite() || x0 >= x1 {
            (x0, x1) = (x0.min(0.0), x0.max(0.0) + 1.0);
        }
        if !y0.is_finite() || y0 >= y1 {
            (y0, y1) = (y0.min(0.0) - 0.5, y0.max(0.0) + 0.5);
        }
        let pad = (y1 - y0) * 0.08;
        let (y0, y1) = if p.log_y {
            (y0.floor(), y1.ceil())
        } else {
            (y0 - pad, y1 + pad)
        };
        let sx = |x: f64| ox + ml + (x - x0) / (x1 - x0) * (pw - ml - mr);
        let sy = |y: f64| mt + (1.0 - (ty(y) - y0) / (y1 - y0)) * (ph - mt - mb);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="20" text-anchor="middle" font-weight="bold">{}</text>"#,
            ox + pw / 2.0,
            esc(&p.title)
        );
        let _ = writeln!(
            s,
            r##"<rect x="{}" y="{mt}" width="{}" height="{}" fill="none" stroke="#444"/>"##,
            ox + ml,
            pw - ml - mr,
            ph - mt - mb
        );
        for i in 0..=4 {
            let xv = x0 + (x1 - x0) * i as f64 / 4.0;
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
                sx(xv),
                ph - mb + 16.0,
                fmt(xv)
            );
        }
        // y ticks: every decade on a log axis, five even steps otherwise.
        let ticks: Vec<f64> = if p.log_y {
            // At most ~12 decade labels.
            let step = (((y1 - y0) / 12.0).ceil() as i64).max(1);
            (y0 as i64..=y1 as i64)
                .step_by(step as usize)
                .map(|e| e as f64)
                .collect()
        } else {
            (0..=4).map(|i| y0 + (y1 - y0) * i as f64 / 4.0).collect()
        };
        for yv in ticks {
            let label = if p.log_y {
                format!("1e{}", yv as i64)
            } else {
                fmt(yv)
            };
            let yy = mt + (1.0 - (yv - y0) / (y1 - y0)) * (ph - mt - mb);
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{:.1}" text-anchor="end">{label}</text>"#,
                ox + ml - 6.0,
                yy + 4.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            ox + ml + (pw - ml - mr) / 2.0,
            ph - 10.0,
            esc(&p.x_label)
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" transform="rotate(-90 {} {})" text-anchor="middle">{}</text>"#,
            ox + 14.0,
            ph / 2.0,
            ox + 14.0,
            ph / 2.0,
            esc(&p.y_label)
        );
        for (v, label) in &p.hlines {
            let y = sy(*v);
            let _ = writeln!(
                s,
                r##"<line x1="{}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#888" stroke-dasharray="5,4"/>"##,
                ox + ml,
                ox + pw - mr
            );
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{:.1}" fill="#666" text-anchor="end">{}</text>"##,
                ox + pw - mr - 4.0,
                y - 4.0,
                esc(label)
            );
        }
        for (si, ser) in p.series.iter().enumerate() {
            let c = COLORS[si % COLORS.len()];
            let pts: Vec<String> = ser
                .points
                .iter()
                .filter(|&&(x, y)| x.is_finite() && y.is_finite() && (!p.log_y || y > 0.0))
                .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                .collect();
            if pts.len() > 1 {
                let _ = writeln!(
                    s,
                    r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
                    pts.join(" ")
                );
            }
            for pt in &pts {
                let (x, y) = pt.split_once(',').unwrap();
                let _ = writeln!(s, r#"<circle cx="{x}" cy="{y}" r="3" fill="{c}"/>"#);
            }
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" fill="{c}">{}</text>"#,
                ox + ml + 8.0,
                mt + 16.0 + 14.0 * si as f64,
                esc(&ser.label)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

fn fmt(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn esc(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
