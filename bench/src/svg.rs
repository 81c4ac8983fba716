//! A chart of a run: throughput and latency per workload and target.
//!
//! One group of horizontal bars per workload, one bar per target. The left
//! panel shows throughput (MB/s, or req/s for metadata workloads), scaled
//! to the fastest target of the group; the right panel shows p99 latency
//! with a tick at p50, scaled to the slowest. Hand-written SVG, no fonts
//! or scripts beyond the viewer's default sans-serif.

use std::fmt::Write as _;

use crate::report::Row;
use crate::units::format_micros;

const WIDTH: f64 = 1020.0;
const LABEL_W: f64 = 270.0;
const PANEL_W: f64 = 350.0;
const GAP: f64 = 20.0;
const BAR_H: f64 = 16.0;
const GROUP_GAP: f64 = 14.0;
const TOP: f64 = 56.0;
const COLOURS: [&str; 6] = [
    "#2f6db5", "#d9822b", "#3a9a52", "#b53f3f", "#7a55b5", "#6b6b6b",
];

/// Draws the chart for `rows` (grouped by workload, in order).
pub fn chart(rows: &[Row], targets: &[String], title: &str) -> String {
    let mut groups: Vec<Vec<&Row>> = Vec::new();
    for row in rows {
        match groups.last_mut() {
            Some(g) if g[0].workload_index == row.workload_index => g.push(row),
            _ => groups.push(vec![row]),
        }
    }

    let bars: usize = groups.iter().map(Vec::len).sum();
    let height = TOP + bars as f64 * (BAR_H + 2.0) + groups.len() as f64 * GROUP_GAP + 40.0;
    let left = LABEL_W;
    let right = LABEL_W + PANEL_W + GAP;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="8" y="18" font-size="14" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let _ = writeln!(
        svg,
        r#"<text x="{left}" y="40" font-weight="bold">throughput, higher is better</text>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{right}" y="40" font-weight="bold">latency p99 (tick at p50), lower is better</text>"#
    );

    // Legend, one swatch per target.
    let mut x = WIDTH - 8.0;
    for (i, name) in targets.iter().enumerate().rev() {
        x -= 8.0 * name.chars().count() as f64 + 24.0;
        let colour = COLOURS[i % COLOURS.len()];
        let _ = writeln!(
            svg,
            r#"<rect x="{x:.0}" y="8" width="12" height="12" fill="{colour}"/><text x="{:.0}" y="18">{}</text>"#,
            x + 16.0,
            escape(name)
        );
    }

    let mut y = TOP;
    for group in &groups {
        let best = group.iter().map(|r| r.throughput()).fold(0.0, f64::max);
        let slowest = group.iter().map(|r| r.median.p99_us).fold(0.0, f64::max);
        let group_h = group.len() as f64 * (BAR_H + 2.0);
        let _ = writeln!(
            svg,
            r#"<text x="8" y="{:.0}">{}</text>"#,
            y + group_h / 2.0 + 4.0,
            escape(&group[0].workload)
        );

        for row in group {
            let index = targets.iter().position(|t| *t == row.target).unwrap_or(0);
            let colour = COLOURS[index % COLOURS.len()];
            let bar_w = PANEL_W - 130.0;

            let tput = row.throughput();
            let w = if best > 0.0 { tput / best * bar_w } else { 0.0 };
            let unit = if row.bytes_bound { "MB/s" } else { "req/s" };
            let ratio = if index == 0 {
                String::new()
            } else {
                format!(" (x{:.2})", row.ratio_to_first.throughput)
            };
            let _ = writeln!(
                svg,
                r#"<rect x="{left}" y="{y:.0}" width="{w:.1}" height="{BAR_H}" fill="{colour}"/><text x="{:.1}" y="{:.0}">{tput:.1} {unit}{ratio}</text>"#,
                left + w + 4.0,
                y + BAR_H - 4.0
            );

            let p99 = row.median.p99_us;
            let p50 = row.median.p50_us;
            let w = if slowest > 0.0 {
                p99 / slowest * bar_w
            } else {
                0.0
            };
            let tick = if slowest > 0.0 {
                p50 / slowest * bar_w
            } else {
                0.0
            };
            let _ = writeln!(
                svg,
                r#"<rect x="{right}" y="{y:.0}" width="{w:.1}" height="{BAR_H}" fill="{colour}" fill-opacity="0.75"/><rect x="{:.1}" y="{y:.0}" width="2" height="{BAR_H}" fill="black"/><text x="{:.1}" y="{:.0}">{} / {}</text>"#,
                right + tick,
                right + w + 4.0,
                y + BAR_H - 4.0,
                format_micros(p99),
                format_micros(p50)
            );
            if row.error_count() > 0 || row.setup_error.is_some() {
                let _ = writeln!(
                    svg,
                    r#"<text x="{:.0}" y="{:.0}" fill="red" font-weight="bold">errors</text>"#,
                    WIDTH - 50.0,
                    y + BAR_H - 4.0
                );
            }
            y += BAR_H + 2.0;
        }
        y += GROUP_GAP;
    }

    let _ = writeln!(svg, "</svg>");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped() {
        assert_eq!(escape("a<b>&\"c\""), "a&lt;b&gt;&amp;&quot;c&quot;");
    }

    #[test]
    fn empty_run_still_draws_a_valid_frame() {
        let svg = chart(&[], &["a".into()], "t");
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
