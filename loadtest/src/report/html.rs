//! `<name>.html`: the verdict first (failures, an early end, warnings such as a broker that was not
//! fresh), then latency by percentile, drawn the way HdrHistogram's plotter draws it — the x axis
//! is `1/(1-percentile)` on a log scale, so 90%, 99%, 99.9%... are evenly spaced and the tail gets
//! as much room as the median — and beside it the run over time, what capacity planners size
//! hosts with: connections, deliveries and publications per second, the broker's RSS and CPU,
//! each on the run's phases drawn as bands. Then the figures. One self-contained file: inline SVG
//! and a little CSS, no scripts, nothing fetched, so it opens anywhere (and mails well).

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use super::hgrm::percentile_steps;
use super::{bytes_text, Phase, Point, Report};

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 520.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
];

/// The page for `report`, one percentile curve per (title, histogram in ns).
pub(crate) fn render(report: &Report, curves: &[(&str, Histogram<u64>)]) -> String {
    let mut html = String::new();
    let title = format!("{} — {}", report.name, report.scenario);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>\
         body{{font-family:sans-serif;margin:2em;color:#222}}svg{{font-size:12px;max-width:100%;height:auto}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{padding:.2em .8em;text-align:right;border-bottom:1px solid #ddd}}\
         th:first-child,td:first-child{{text-align:left}}\
         .charts{{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}}figure{{margin:0}}\
         figcaption{{font-weight:bold;margin:.3em 0}}\
         .verdict{{padding:.5em 1em;margin:.4em 0;border-left:6px solid;font-weight:bold}}\
         .failed{{background:#fde2e1;border-color:#c62828}}.incomplete{{background:#fff0d9;border-color:#ef6c00}}\
         .warning{{background:#fff8c5;border-color:#b58900}}</style></head><body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );
    for line in report.verdict() {
        let class = match line.split(':').next() {
            Some("FAILED") => "failed",
            Some("INCOMPLETE") => "incomplete",
            _ => "warning",
        };
        let _ = writeln!(html, "<p class=\"verdict {class}\">{}</p>", escape(&line));
    }
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
    if let Some(b) = &report.broker {
        let bytes =
            |value: Option<u64>| value.map_or("–".into(), |bytes| bytes_text(bytes as f64));
        let _ = writeln!(
            html,
            "<p>broker pid {}: RSS {} at the start, {} at most, {} before disconnecting · {} per \
             connection · CPU {} ({} of one core)</p>",
            b.pid,
            bytes(b.rss_before_bytes),
            bytes(b.rss_max_bytes),
            bytes(b.rss_end_bytes),
            b.rss_per_connection_bytes.map_or("–".into(), bytes_text),
            b.cpu_s.map_or("–".into(), |s| format!("{s:.2} s")),
            b.cpu_percent.map_or("–".into(), |p| format!("{p:.0}%")),
        );
    }
    html.push_str("<div class=\"charts\">\n<figure><figcaption>latency by percentile</figcaption>");
    html.push_str(&percentile_chart(curves));
    html.push_str("</figure>\n");
    for (id, caption, svg) in time_charts(report) {
        let _ = writeln!(
            html,
            "<figure id=\"{id}\"><figcaption>{}</figcaption>{svg}</figure>",
            escape(caption)
        );
    }
    html.push_str("</div>\n");
    html.push_str("<table><tr><th>latency (ms)</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>p99.99</th><th>max</th><th>mean</th></tr>\n");
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

/// Latency by percentile, one curve per (title, histogram in ns).
fn percentile_chart(curves: &[(&str, Histogram<u64>)]) -> String {
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
        r#"<svg id="chart-percentiles" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="latency by percentile">"#
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
    svg
}

/// One line of a time chart: its legend and (seconds, value) points; `None` leaves a gap.
struct Line {
    label: &'static str,
    points: Vec<(f64, Option<f64>)>,
}

impl Line {
    fn new(label: &'static str, series: &[Point], value: impl Fn(&Point) -> Option<f64>) -> Self {
        Self {
            label,
            points: series
                .iter()
                .map(|point| (point.t_s, value(point)))
                .collect(),
        }
    }

    fn has_values(&self) -> bool {
        self.points.iter().any(|(_, value)| value.is_some())
    }
}

/// The charts over time that have something to show: (element id, caption, SVG).
fn time_charts(report: &Report) -> Vec<(&'static str, &'static str, String)> {
    let series = &report.series;
    let mut connections = vec![Line::new("open", series, |p| Some(p.connections as f64))];
    if series.iter().any(|point| point.connect_failed > 0) {
        connections.push(Line::new("could not connect", series, |p| {
            Some(p.connect_failed as f64)
        }));
    }
    let mut rates = Vec::new();
    if report.setup.subscribers > 0 && report.setup.publishers > 0 {
        rates.push(Line::new("deliveries/s", series, |p| p.deliveries_per_s));
    }
    if report.setup.publishers > 0 {
        rates.push(Line::new("publishes/s", series, |p| p.publishes_per_s));
    }
    let charts = [
        ("chart-connections", "connections over time", connections),
        ("chart-deliveries", "messages per second over time", rates),
        (
            "chart-broker-rss",
            "broker RSS (MiB) over time",
            vec![Line::new("RSS", series, |p| {
                p.broker_rss_bytes
                    .map(|bytes| bytes as f64 / (1 << 20) as f64)
            })],
        ),
        (
            "chart-broker-cpu",
            "broker CPU (% of one core) over time",
            vec![Line::new("CPU", series, |p| p.broker_cpu_percent)],
        ),
    ];
    charts
        .into_iter()
        .filter(|(_, _, lines)| lines.iter().any(Line::has_values))
        .map(|(id, caption, lines)| (id, caption, time_chart(caption, series, &lines)))
        .collect()
}

const CHART_WIDTH: f64 = 470.0;
const CHART_HEIGHT: f64 = 260.0;
const CHART_LEFT: f64 = 64.0;
const CHART_RIGHT: f64 = 12.0;
const CHART_TOP: f64 = 22.0;
const CHART_BOTTOM: f64 = 40.0;
/// Background of each phase, in the order of [`Phase`].
const PHASE_FILLS: [&str; 6] = [
    "#eef3fb", "#eaf6f0", "#fbf3e6", "#f5eefa", "#f2f2f2", "#fbeeee",
];

/// Lines over the run's seconds, on the phases drawn as bands behind them.
fn time_chart(label: &str, series: &[Point], lines: &[Line]) -> String {
    let (t_end, t_step) = nice_axis(series.last().map_or(0.0, |point| point.t_s));
    let (top, step) = nice_axis(
        lines
            .iter()
            .flat_map(|line| line.points.iter().filter_map(|&(_, value)| value))
            .fold(0.0, f64::max),
    );
    let plot_w = CHART_WIDTH - CHART_LEFT - CHART_RIGHT;
    let plot_h = CHART_HEIGHT - CHART_TOP - CHART_BOTTOM;
    let x_at = |t: f64| CHART_LEFT + t / t_end * plot_w;
    let y_at = |v: f64| CHART_TOP + plot_h - v / top * plot_h;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" width="{CHART_WIDTH}" height="{CHART_HEIGHT}" role="img" aria-label="{}"><rect x="{CHART_LEFT}" y="{CHART_TOP}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#999"/>"##,
        escape(label)
    );
    for (from, to, phase) in phase_bands(series) {
        let (x0, x1) = (x_at(from), x_at(to));
        let _ = write!(
            svg,
            r#"<rect x="{x0:.1}" y="{CHART_TOP}" width="{:.1}" height="{plot_h}" fill="{}"><title>{}</title></rect>"#,
            (x1 - x0).max(0.5),
            PHASE_FILLS[phase as usize],
            phase.as_str()
        );
        if x1 - x0 >= 56.0 {
            let _ = write!(
                svg,
                r##"<text x="{:.1}" y="{:.1}" fill="#777" font-size="10">{}</text>"##,
                x0 + 3.0,
                CHART_TOP + 11.0,
                phase.as_str()
            );
        }
    }
    for tick in 0..=(t_end / t_step).round() as u32 {
        let t = t_step * f64::from(tick);
        let x = x_at(t);
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" y1="{CHART_TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            CHART_TOP + plot_h,
            CHART_TOP + plot_h + 16.0,
            trim_number(t),
        );
    }
    for tick in 0..=(top / step).round() as u32 {
        let value = step * f64::from(tick);
        let y = y_at(value);
        let _ = write!(
            svg,
            r##"<line x1="{CHART_LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            CHART_LEFT + plot_w,
            CHART_LEFT - 5.0,
            y + 4.0,
            short_number(value)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds</text>"#,
        CHART_LEFT + plot_w / 2.0,
        CHART_HEIGHT - 6.0
    );
    for (n, line) in lines.iter().enumerate() {
        let color = COLORS[n % COLORS.len()];
        let mut path = String::new();
        let mut gap = true;
        for &(t, value) in &line.points {
            match value {
                Some(value) => {
                    let _ = write!(
                        path,
                        "{}{:.1} {:.1} ",
                        if gap { "M" } else { "L" },
                        x_at(t),
                        y_at(value)
                    );
                    gap = false;
                }
                None => gap = true,
            }
        }
        let _ = write!(
            svg,
            r#"<path class="series" d="{}" fill="none" stroke="{color}" stroke-width="2"><title>{}</title></path>"#,
            path.trim_end(),
            line.label
        );
        for &(t, value) in &line.points {
            if let Some(value) = value {
                let _ = write!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{color}"><title>{} s: {}</title></circle>"#,
                    x_at(t),
                    y_at(value),
                    trim_number(t),
                    short_number(value)
                );
            }
        }
        let _ = write!(
            svg,
            r#"<rect x="{:.1}" y="6" width="12" height="4" fill="{color}"/><text x="{:.1}" y="12">{}</text>"#,
            CHART_LEFT + 150.0 * n as f64,
            CHART_LEFT + 16.0 + 150.0 * n as f64,
            line.label
        );
    }
    svg.push_str("</svg>");
    svg
}

/// (from, to, phase) for each stretch of the run spent in one phase, from the points' phases.
fn phase_bands(series: &[Point]) -> Vec<(f64, f64, Phase)> {
    let mut bands: Vec<(f64, f64, Phase)> = Vec::new();
    for point in series {
        match bands.last_mut() {
            Some(band) if band.2 == point.phase => band.1 = point.t_s,
            Some(band) => {
                band.1 = point.t_s;
                bands.push((point.t_s, point.t_s, point.phase));
            }
            None => bands.push((point.t_s, point.t_s, point.phase)),
        }
    }
    bands
}

/// (end, step) of an axis from 0 that holds `max`: a round step (1, 2 or 5 times a power of ten)
/// of which at most five reach past `max`.
fn nice_axis(max: f64) -> (f64, f64) {
    let step = nice_ceiling(max / 5.0);
    ((max / step).ceil().max(1.0) * step, step)
}

/// A value with at most three significant digits and a k/M/G suffix: axis labels.
fn short_number(value: f64) -> String {
    let (scaled, suffix) = match value.abs() {
        v if v >= 1e9 => (value / 1e9, "G"),
        v if v >= 1e6 => (value / 1e6, "M"),
        v if v >= 1e4 => (value / 1e3, "k"),
        _ => (value, ""),
    };
    format!("{}{suffix}", trim_number((scaled * 100.0).round() / 100.0))
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
    fn page_draws_the_run_over_time() {
        let report = crate::report::tests::sample("run", 1);
        let html = render(&report, &[]);
        for id in [
            "chart-percentiles",
            "chart-connections",
            "chart-deliveries",
            "chart-broker-rss",
            "chart-broker-cpu",
        ] {
            assert!(html.contains(&format!("id=\"{id}\"")), "{id} missing");
        }
        assert!(html.contains("<title>deliveries/s</title>"));
        for phase in [
            "connecting",
            "publishing",
            "draining",
            "holding",
            "finishing",
        ] {
            assert!(
                html.contains(&format!("<title>{phase}</title>")),
                "{phase} band"
            );
        }
        assert_eq!(
            html.matches("<path class=\"series\"").count(),
            1 + 2 + 1 + 1
        );
        assert!(
            !html.contains("http://") && !html.contains("https://") && !html.contains("<script")
        );
        assert!(!html.contains("NaN") && !html.contains("inf"));
    }

    #[test]
    fn page_leaves_out_charts_without_data() {
        let mut report = crate::report::tests::sample("conn", 1);
        report.scenario = "conn".into();
        report.setup.publishers = 0;
        report.setup.subscribers = 0;
        report.broker = None;
        for point in &mut report.series {
            point.broker_rss_bytes = None;
            point.broker_cpu_percent = None;
        }
        let html = render(&report, &[]);
        assert!(html.contains("id=\"chart-connections\""));
        for id in ["chart-deliveries", "chart-broker-rss", "chart-broker-cpu"] {
            assert!(!html.contains(id), "{id} drawn without data");
        }
    }

    #[test]
    fn verdict_comes_before_the_figures() {
        let mut report = crate::report::tests::sample("run", 1);
        report.failures = vec!["3 of 101 clients could not connect (connection refused)".into()];
        report.warnings = vec!["the broker's RSS fell <during> the run".into()];
        let html = render(&report, &[]);
        let failed = html
            .find("<p class=\"verdict failed\">FAILED: 3 of 101 clients could not connect")
            .expect("failure shown");
        let warning = html
            .find("<p class=\"verdict warning\">WARNING: the broker's RSS fell &lt;during&gt; the run")
            .expect("warning shown");
        let figures = html.find("<div class=\"charts\">").unwrap();
        assert!(failed < warning && warning < figures);
    }

    #[test]
    fn bands_follow_the_phases() {
        let report = crate::report::tests::sample("run", 1);
        assert_eq!(
            phase_bands(&report.series),
            [
                (0.0, 0.05, Phase::Connecting),
                (0.05, 2.0, Phase::Publishing),
                (2.0, 2.5, Phase::Draining),
                (2.5, 3.0, Phase::Holding),
                (3.0, 3.0, Phase::Finishing),
            ]
        );
        assert_eq!(nice_axis(3.07), (4.0, 1.0));
        assert_eq!(nice_axis(21.0), (25.0, 5.0));
        assert_eq!(nice_axis(0.0), (1.0, 1.0));
        assert_eq!(nice_axis(41_212.0), (50_000.0, 10_000.0));
        assert_eq!(short_number(1500.0), "1500");
        assert_eq!(short_number(25_000.0), "25k");
        assert_eq!(short_number(1_234_567.0), "1.23M");
        assert_eq!(short_number(0.5), "0.5");
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
