//! The SVG line charts of a run (`latency.svg`, `memory.svg`), drawn by hand: one polyline per
//! series, linear or logarithmic y axis.

use std::fmt::Write as _;

const COLORS: [&str; 8] = [
    "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#7f7f7f", "#9467bd", "#8c564b", "#17becf",
];

/// A line chart as SVG: one polyline per series, a linear x axis from 0, and a y axis linear
/// from 0 or (`log_y`) logarithmic over whole decades.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    log_y: bool,
) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 440.0, 70.0, 150.0, 40.0, 50.0);
    let pts = series.iter().flat_map(|(_, p)| p.iter());
    let xmax = pts.clone().map(|p| p.0).fold(0.0, f64::max).max(1e-9) * 1.05;
    let ys = pts.map(|p| p.1).filter(|v| *v > 0.0);
    let (ylo, yhi) = if log_y {
        let lo = ys.clone().fold(f64::INFINITY, f64::min);
        let hi = ys.fold(0.0, f64::max);
        let lo = if lo.is_finite() {
            lo.log10().floor()
        } else {
            0.0
        };
        (lo, hi.max(1e-9).log10().ceil().max(lo + 1.0))
    } else {
        (0.0, ys.fold(0.0, f64::max).max(1e-9) * 1.1)
    };
    let (pw, ph) = (w - left - right, h - top - bottom);
    let x = |v: f64| left + v / xmax * pw;
    let y = |v: f64| {
        let v = if log_y { v.max(1e-9).log10() } else { v };
        top + ph - (v - ylo) / (yhi - ylo) * ph
    };
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        w / 2.0,
        esc(title)
    );
    let _ = write!(
        s,
        r#"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/>"#,
        top + ph,
        left + pw,
        top + ph,
        top + ph
    );
    for i in 0..=5 {
        let xv = xmax / 5.0 * i as f64;
        let yv = if log_y {
            10f64.powf(ylo + (yhi - ylo) / 5.0 * i as f64)
        } else {
            yhi / 5.0 * i as f64
        };
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle">{}</text><text x="{}" y="{}" text-anchor="end">{}</text><line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="#eee"/>"##,
            x(xv),
            top + ph + 18.0,
            tick(xv),
            left - 6.0,
            y(yv) + 4.0,
            tick(yv),
            y(yv),
            left + pw,
            y(yv)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        left + pw / 2.0,
        h - 10.0,
        esc(x_label)
    );
    let _ = write!(
        s,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{}</text>"#,
        top + ph / 2.0,
        top + ph / 2.0,
        esc(y_label)
    );
    for (k, (name, p)) in series.iter().enumerate() {
        let c = COLORS[k % COLORS.len()];
        let d: Vec<String> = p
            .iter()
            .map(|(a, b)| format!("{:.1},{:.1}", x(*a), y(*b)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
            d.join(" ")
        );
        for (a, b) in p {
            let _ = write!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{c}"/>"#,
                x(*a),
                y(*b)
            );
        }
        let ly = top + 14.0 + 20.0 * k as f64;
        let _ = write!(
            s,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{c}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            left + pw + 12.0,
            left + pw + 36.0,
            left + pw + 42.0,
            ly + 4.0,
            esc(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn tick(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
