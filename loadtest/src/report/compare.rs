//! `shardmq-loadtest compare A.json B.json`: two runs side by side, with B/A for every figure, so
//! a release can be held against the previous one, or shardmq against another broker measured in
//! the same session (only ratios from one session mean much on a shared machine). A figure one run
//! does not define (`null` in its JSON) shows as `-`, with no ratio; each run's verdict lines
//! (`FAILED`, `INCOMPLETE`, `WARNING`) follow the table, so a ratio is never read without them.

use std::fmt::Write as _;

use super::Report;

type Figure = fn(&Report) -> Option<f64>;

/// The figures compared, in order.
const FIGURES: &[(&str, Figure)] = &[
    ("connections connected", |r| {
        Some(r.connections.connected as f64)
    }),
    ("connections failed", |r| Some(r.connections.failed as f64)),
    ("connections dropped", |r| {
        Some(r.connections.dropped as f64)
    }),
    ("connects/s", |r| r.connections.connects_per_s),
    ("connect p50 ms", |r| r.connections.connect_latency.p50_ms),
    ("connect p99 ms", |r| r.connections.connect_latency.p99_ms),
    ("connect max ms", |r| r.connections.connect_latency.max_ms),
    ("published", |r| Some(r.messages.published as f64)),
    ("publishes/s", |r| r.messages.publishes_per_s),
    ("delivered", |r| Some(r.messages.delivered as f64)),
    ("lost", |r| r.messages.lost.map(|lost| lost as f64)),
    ("duplicates", |r| Some(r.messages.duplicates as f64)),
    ("deliveries/s", |r| r.messages.deliveries_per_s),
    ("last delivery ms", |r| r.messages.time_to_last_delivery_ms),
    ("delivery p50 ms", |r| r.messages.latency.p50_ms),
    ("delivery p90 ms", |r| r.messages.latency.p90_ms),
    ("delivery p99 ms", |r| r.messages.latency.p99_ms),
    ("delivery p99.9 ms", |r| r.messages.latency.p99_9_ms),
    ("delivery p99.99 ms", |r| r.messages.latency.p99_99_ms),
    ("delivery max ms", |r| r.messages.latency.max_ms),
    ("ack p50 ms", |r| r.messages.ack_latency.p50_ms),
    ("ack p99 ms", |r| r.messages.ack_latency.p99_ms),
    ("broker RSS/connection B", |r| {
        r.broker.as_ref().and_then(|b| b.rss_per_connection_bytes)
    }),
    ("broker CPU %", |r| {
        r.broker.as_ref().and_then(|b| b.cpu_percent)
    }),
    ("loadtest CPU %", |r| Some(r.loadtest.cpu_percent)),
];

/// The side-by-side table of `a` and `b`.
pub fn compare(a: &Report, b: &Report) -> String {
    let mut out = String::new();
    let row = |out: &mut String, label: &str, a: &str, b: &str, ratio: &str| {
        let _ = writeln!(out, "{label:<26}{a:>22}{b:>22}{ratio:>10}");
    };
    row(&mut out, "", "A", "B", "B/A");
    row(&mut out, "name", &clip(&a.name), &clip(&b.name), "");
    row(&mut out, "scenario", &a.scenario, &b.scenario, "");
    row(
        &mut out,
        "outcome",
        a.outcome.as_str(),
        b.outcome.as_str(),
        "",
    );
    row(
        &mut out,
        "broker",
        &clip(&format!("{}:{}", a.setup.host, a.setup.port)),
        &clip(&format!("{}:{}", b.setup.host, b.setup.port)),
        "",
    );
    row(
        &mut out,
        "connections",
        &a.setup.connections.to_string(),
        &b.setup.connections.to_string(),
        "",
    );
    row(
        &mut out,
        "qos / payload B",
        &format!("{} / {}", a.setup.qos, a.setup.payload_bytes),
        &format!("{} / {}", b.setup.qos, b.setup.payload_bytes),
        "",
    );
    for (label, figure) in FIGURES {
        let (x, y) = (figure(a), figure(b));
        if x.is_none() && y.is_none() {
            continue;
        }
        let ratio = match (x, y) {
            (Some(x), Some(y)) if x != 0.0 => format!("{:.2}", y / x),
            _ => "-".into(),
        };
        row(&mut out, label, &number(x), &number(y), &ratio);
    }
    for (which, report) in [("A", a), ("B", b)] {
        for line in report.verdict() {
            let _ = writeln!(out, "{which} {line}");
        }
    }
    out
}

/// A cell that fits the column.
fn clip(text: &str) -> String {
    let count = text.chars().count();
    if count <= 21 {
        text.to_owned()
    } else {
        let tail: String = text.chars().skip(count - 20).collect();
        format!("…{tail}")
    }
}

fn number(value: Option<f64>) -> String {
    match value {
        None => "-".into(),
        Some(value) if value.fract() == 0.0 && value.abs() < 1e15 => format!("{value:.0}"),
        Some(value) => format!("{value:.3}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample;
    use crate::report::Latency;
    use crate::stats::new_histogram;

    #[test]
    fn side_by_side_with_ratios() {
        let a = sample("mosquitto", 1);
        let b = sample("shardmq", 2);
        let table = compare(&a, &b);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].trim_end().ends_with("B/A"));
        let line = |label: &str| -> Vec<String> {
            let line = lines
                .iter()
                .find(|line| line.starts_with(label))
                .unwrap_or_else(|| panic!("{label} missing:\n{table}"));
            line[label.len()..]
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(line("name"), ["mosquitto", "shardmq"]);
        assert_eq!(line("delivered"), ["1000", "1000", "1.00"]);
        assert_eq!(line("last delivery ms"), ["12.500", "25", "2.00"]);
        assert_eq!(line("deliveries/s"), ["80000", "40000", "0.50"]);
        assert_eq!(line("lost"), ["0", "0", "-"]);
        let p99 = line("delivery p99 ms");
        let ratio: f64 = p99[2].parse().unwrap();
        assert!((ratio - 2.0).abs() < 0.01, "{p99:?}");
        // Latencies neither run measured are left out.
        assert!(!table.contains("ack p50"));
    }

    #[test]
    fn undefined_figures_are_dashes() {
        let mut a = sample("conn-only", 1);
        a.messages.latency = Latency::from_histogram(&new_histogram());
        a.messages.deliveries_per_s = None;
        let b = sample("full", 1);
        let table = compare(&a, &b);
        for label in ["delivery p50 ms", "delivery max ms", "deliveries/s"] {
            let line = table
                .lines()
                .find(|line| line.starts_with(label))
                .unwrap_or_else(|| panic!("{label} missing:\n{table}"));
            let cells: Vec<&str> = line[label.len()..].split_whitespace().collect();
            assert_eq!(cells[0], "-", "{line}");
            assert_eq!(cells[2], "-", "{line}");
            assert!(cells[1].parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn verdicts_follow_the_table() {
        let a = sample("a", 1);
        let mut b = sample("b", 1);
        b.failures = vec!["no message was delivered (1000 expected)".into()];
        let table = compare(&a, &b);
        assert!(
            table.ends_with("B FAILED: no message was delivered (1000 expected)\n"),
            "{table}"
        );
        assert!(!table.contains("\nA "), "{table}");
    }

    #[test]
    fn long_names_are_clipped() {
        assert_eq!(clip("short"), "short");
        assert_eq!(clip("a-very-long-run-name-indeed").chars().count(), 21);
    }
}
