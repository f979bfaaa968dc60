//! `<name>.html`: latency by percentile, drawn the way HdrHistogram's plotter draws it — the x axis
//! is `1/(1-percentile)` on a log scale, so 90%, 99%, 99.9%... are evenly spaced and the tail gets
//! as much room as the median — with the report's figures beside it. One self-contained file: an
//! inline SVG and a little CSS, no scripts, nothing fetched, so it opens anywhere (and mails well).

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use super::hgrm::percentile_steps;
use super::Report;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 520.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
];

/// The page for `report`, one curve per (title, histogram in ns).
pub(crate) fn render(report: &Report, curves: &[(&str, Histogram<u64>)]) -> String {
    let series: Vec<(&str, Vec<(f64, f64)>)> = curves
        .iter()
        .map(|(title, histogram)| (*title, points(histogram)))
        .collect();
    let decades = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|&(x, _)| x))
        .fold(2.0f64, f64::max)
        .ceil()
        .min(7.0);
    let top_ms = nice_ceiling(
        series
            .iter()
            .flat_map(|(_, points)| points.iter().map(|&(_, y)| y))
            .fold(0.0, f64::max),
    );

    let mut svg = String::new();
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x_at = |x: f64| LEFT + x / decades * plot_w;
    let y_at = |y: f64| TOP + plot_h - y / top_ms * plot_h;
    let _ = write!(
        svg,
        r#"<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="latency by percentile">"#
    );
    let _ = write!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#999"/>"##
    );
    for decade in 0..=decades as u32 {
        let x = x_at(f64::from(decade));
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0,
            percentile_label(decade)
        );
    }
    for tick in 0..=5 {
        let value = top_ms * f64::from(tick) / 5.0;
        let y = y_at(value);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            trim_number(value)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text><text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">latency (ms)</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 12.0,
        TOP + plot_h / 2.0
    );
    for (n, (title, points)) in series.iter().enumerate() {
        let path: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", x_at(x), y_at(y)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"><title>{}</title></polyline>"#,
            COLORS[n % COLORS.len()],
            path.join(" "),
            escape(title)
        );
    }
    let _ = write!(
        svg,
        r##"<rect x="{:.1}" y="{:.1}" width="230" height="{:.1}" fill="#fff" fill-opacity="0.85" stroke="#ccc"/>"##,
        LEFT + 8.0,
        TOP + 6.0,
        8.0 + 20.0 * series.len() as f64
    );
    for (n, (title, _)) in series.iter().enumerate() {
        let legend_y = TOP + 22.0 + 20.0 * n as f64;
        let _ = write!(
            svg,
            r#"<rect x="{:.1}" y="{:.1}" width="14" height="4" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            LEFT + 14.0,
            legend_y - 6.0,
            COLORS[n % COLORS.len()],
            LEFT + 34.0,
            legend_y,
            escape(title)
        );
    }
    svg.push_str("</svg>");

    let mut html = String::new();
    let title = format!(
        "{} — {} latency by percentile",
        report.name, report.scenario
    );
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>\
         body{{font-family:sans-serif;margin:2em;color:#222}}svg{{font-size:12px;max-width:100%;height:auto}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{padding:.2em .8em;text-align:right;border-bottom:1px solid #ddd}}\
         th:first-child,td:first-child{{text-align:left}}</style></head><body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );
    let s = &report.setup;
    let m = &report.messages;
    let c = &report.connections;
    let _ = write!(
        html,
        "<p>{}:{} · MQTT level {} · QoS {} · {} B payload · {} connections ({} connected, {} failed) · \
         {} publishers · {} subscribers · outcome <b>{}</b></p>\n<p>{} published · {} delivered · {} lost · \
         {} duplicates{}{}</p>\n",
        escape(&s.host),
        s.port,
        s.protocol,
        s.qos,
        s.payload_bytes,
        s.connections,
        c.connected,
        c.failed,
        s.publishers,
        s.subscribers,
        report.outcome.as_str(),
        m.published,
        m.delivered,
        m.lost.map_or("?".into(), |lost| lost.to_string()),
        m.duplicates,
        m.time_to_last_delivery_ms
            .map(|ms| format!(" · last delivery {ms:.3} ms after the first publish"))
            .unwrap_or_default(),
        m.deliveries_per_s.map(|rate| format!(" · {rate:.0} deliveries/s")).unwrap_or_default(),
    );
    html.push_str(&svg);
    html.push_str("\n<table><tr><th>latency (ms)</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>p99.99</th><th>max</th><th>mean</th></tr>\n");
    for (kind, _, latency) in report.latencies() {
        let _ = write!(html, "<tr><td>{kind}</td><td>{}</td>", latency.count);
        for value in latency.table_figures() {
            let _ = write!(
                html,
                "<td>{}</td>",
                value.map_or("–".into(), |ms| format!("{ms:.3}"))
            );
        }
        html.push_str("</tr>\n");
    }
    let l = &report.loadtest;
    let _ = write!(
        html,
        "</table>\n<p>load generator CPU {:.0}% of one core over {:.2} s ({} cores, {} processes)</p>\n</body></html>\n",
        l.cpu_percent, l.wall_s, l.cores, l.processes
    );
    html
}

/// (log10(1/(1-percentile)), value in ms) for each step of the percentile iterator, the rows of
/// the `.hgrm` file but the last (whose x is infinite).
fn points(histogram: &Histogram<u64>) -> Vec<(f64, f64)> {
    percentile_steps(histogram, 5)
        .into_iter()
        .filter(|step| step.percentile < 100.0)
        .map(|step| {
            (
                (100.0 / (100.0 - step.percentile)).log10(),
                step.value as f64 / 1e6,
            )
        })
        .collect()
}

fn percentile_label(decade: u32) -> String {
    match decade {
        0 => "0%".into(),
        1 => "90%".into(),
        n => format!("99.{}%", "9".repeat(n as usize - 2)).replace("99.%", "99%"),
    }
}

/// A round number at or above `value` (1, 2 or 5 times a power of ten).
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|&nice| nice >= value)
        .unwrap_or(10.0 * power)
}

fn trim_number(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
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
    fn axis_labels() {
        let labels: Vec<String> = (0..=5).map(percentile_label).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]);
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(1.3), 2.0);
        assert_eq!(nice_ceiling(37.0), 50.0);
        assert_eq!(trim_number(2.5), "2.5");
        assert_eq!(escape("<a&\"b\">"), "&lt;a&amp;&quot;b&quot;&gt;");
    }

    #[test]
    fn page_has_one_curve_per_histogram() {
        let report = crate::report::tests::sample("r<1>", 1);
        let curves: Vec<(&str, Histogram<u64>)> = report
            .latencies()
            .into_iter()
            .map(|(_, title, latency)| (title, latency.histogram().unwrap()))
            .collect();
        let html = render(&report, &curves);
        assert_eq!(html.matches("<polyline").count(), curves.len());
        assert!(html.contains("r&lt;1&gt;"));
        assert!(html.contains("99.9%"));
    }

    #[test]
    fn page_without_samples_has_no_curve_and_no_nan() {
        let mut report = crate::report::tests::sample("empty", 1);
        let empty = crate::report::Latency::from_histogram(&crate::stats::new_histogram());
        report.messages.latency = empty.clone();
        report.connections.connect_latency = empty;
        assert!(report.latencies().is_empty());
        let html = render(&report, &[]);
        assert_eq!(html.matches("<polyline").count(), 0);
        assert!(!html.contains("NaN") && !html.contains("inf"), "{html}");
    }
}
