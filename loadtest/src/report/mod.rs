//! The result of a run: [`Report`] holds every figure with stable field names (documented in
//! `loadtest/README.md`) and is what `<name>.json` contains. From it come the human summary, the
//! HdrHistogram percentile files (`.hgrm`), the HTML plot and `compare`.
//!
//! Latencies are in milliseconds in the JSON; each [`Latency`] also carries its full histogram
//! (nanoseconds, HdrHistogram V2 serialization, base64), so any other figure can be computed
//! later from the JSON alone, and the `.hgrm` and `.html` files are drawn from it.

mod compare;
mod hgrm;
mod html;
pub(crate) mod series;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

pub use compare::compare;
pub use hgrm::{parse_percentiles, write_percentiles, PercentileRow, Percentiles};
pub use series::{Phase, Point};

use crate::stats::{decode_histogram, encode_histogram};

/// Version of the JSON layout; bumped when a field changes meaning or goes away.
pub const SCHEMA_VERSION: u32 = 2;

/// Exit status of a run that completed with figures that are a measurement.
pub const EXIT_OK: u8 = 0;
/// Exit status of an error before or around the run (bad scenario, no broker, files).
pub const EXIT_ERROR: u8 = 1;
/// Exit status of a run that ended early: interrupted, timed out, drain time ran out, a worker
/// failed. What was measured until then is in the report.
pub const EXIT_INCOMPLETE: u8 = 2;
/// Exit status of a run whose figures are not a measurement ([`Report::failures`] not empty),
/// however it ended.
pub const EXIT_FAILED: u8 = 3;

/// The prefix of subscribe failures among `connections.failures`; the others are connect
/// failures.
pub(crate) const SUBSCRIBE_FAILURE: &str = "subscribe: ";

/// Everything one run measured.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema: u32,
    /// `shardmq-loadtest <version>`.
    pub tool: String,
    /// The scenario's name.
    pub name: String,
    /// `conn`, `fanout`, `fanin`, `pairs` or `mixed`.
    pub scenario: String,
    /// Wall-clock start, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// How the run ended.
    pub outcome: Outcome,
    /// Errors from worker processes.
    pub errors: Vec<String>,
    /// Why the figures are not a measurement of the broker's performance, one line each:
    /// clients that could not connect or subscribe, nothing delivered though deliveries were
    /// expected (see [`Report::judge`]). Not empty: the binary exits with [`EXIT_FAILED`].
    #[serde(default)]
    pub failures: Vec<String>,
    /// What a reader must know to read the figures right, one line each (a broker that was not
    /// freshly started). Warnings do not change the exit status.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// What was asked for.
    pub setup: Setup,
    /// Connection figures.
    pub connections: Connections,
    /// Message figures.
    pub messages: Messages,
    /// The broker's memory and CPU, when its pid was given.
    pub broker: Option<BrokerUsage>,
    /// The load generator's own CPU use: is it the bottleneck?
    pub loadtest: LoadtestUsage,
    /// The run over time: about one point a second, one at every phase change, one at the start
    /// and one at the end.
    #[serde(default)]
    pub series: Vec<Point>,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every phase ran and every expected delivery arrived.
    Complete,
    /// Publishing finished but some deliveries or acknowledgements had not arrived when the
    /// drain time ran out.
    DrainTimeout,
    /// Stopped by Ctrl-C.
    Interrupted,
    /// Stopped by `limits.timeout`.
    Timeout,
    /// A worker failed.
    Failed,
}

impl Outcome {
    /// The snake_case name used in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::DrainTimeout => "drain_timeout",
            Outcome::Interrupted => "interrupted",
            Outcome::Timeout => "timeout",
            Outcome::Failed => "failed",
        }
    }
}

/// The scenario's main settings, for the reader of a report.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
pub struct Setup {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// MQTT protocol level (3, 4 or 5).
    pub protocol: u8,
    /// Default QoS.
    pub qos: u8,
    /// Default payload size.
    pub payload_bytes: usize,
    /// Connections in the workload.
    pub connections: u64,
    /// Publishing clients.
    pub publishers: u64,
    /// Subscribing clients.
    pub subscribers: u64,
    /// Default messages per publisher (0: until the duration).
    pub messages_per_publisher: u64,
    /// Default messages per second per publisher (0: unlimited).
    pub publish_rate: f64,
    /// QoS 1/2 inflight window per publisher.
    pub inflight: u16,
    /// Keep alive in seconds.
    pub keepalive_s: u16,
    /// Clean session / clean start.
    pub clean: bool,
    /// Source addresses used (0: the kernel's choice).
    pub src_ips: u32,
    /// Connections per second asked for (0: unlimited).
    pub connect_rate: f64,
    /// Load generator processes that held connections.
    pub workers: u32,
    /// Runtime threads per such process.
    pub threads_per_worker: usize,
}

/// Connection figures.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
pub struct Connections {
    /// Clients that tried to connect (connected + failed).
    pub attempted: u64,
    /// Clients that got a successful CONNACK.
    pub connected: u64,
    /// Clients that did not (TCP, CONNACK or time-out).
    pub failed: u64,
    /// Failures (connect and subscribe) by reason.
    pub failures: BTreeMap<String, u64>,
    /// Subscribers whose SUBACK granted every filter.
    pub subscribed: u64,
    /// Subscribers refused or timed out at SUBSCRIBE.
    pub subscribe_failed: u64,
    /// Established connections lost before the run ended them.
    pub dropped: u64,
    /// Losses by reason.
    pub drops: BTreeMap<String, u64>,
    /// Seconds from the first connection attempt until every client had connected or failed;
    /// `None` when the run ended before that.
    pub ramp_s: Option<f64>,
    /// `connected / ramp_s`.
    pub connects_per_s: Option<f64>,
    /// CONNECT → CONNACK.
    pub connect_latency: Latency,
    /// SUBSCRIBE → SUBACK.
    pub subscribe_latency: Latency,
}

/// Message figures.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
pub struct Messages {
    /// PUBLISH packets sent.
    pub published: u64,
    /// Seconds from the first to the last publication; `None` without publications.
    pub publish_s: Option<f64>,
    /// `published / publish_s`.
    pub publishes_per_s: Option<f64>,
    /// QoS 1/2 publications acknowledged (PUBACK / PUBCOMP).
    pub acked: u64,
    /// Publications the broker refused (MQTT 5 reason code >= 0x80).
    pub rejected: u64,
    /// QoS 1/2 publications neither acknowledged nor refused by the end.
    pub unacked: u64,
    /// Deliveries the subscribers should get: for each subscriber, the messages sent by every
    /// publisher whose topic its filters match. `null` when the run stopped before publishing
    /// was over.
    pub expected: Option<u64>,
    /// PUBLISH packets subscribers received, duplicates and strays included.
    pub received: u64,
    /// Expected messages received at least once.
    pub delivered: u64,
    /// `expected - delivered`.
    pub lost: Option<u64>,
    /// Second and later receipts of one message by one subscriber.
    pub duplicates: u64,
    /// Receipts of messages no subscriber expected (other topics, earlier runs, no header).
    pub unexpected: u64,
    /// Every expected delivery and acknowledgement arrived before the drain time ran out.
    pub drain_complete: bool,
    /// Milliseconds from the first publication to the last delivery.
    pub time_to_last_delivery_ms: Option<f64>,
    /// `delivered / time from the first publication to the last delivery`.
    pub deliveries_per_s: Option<f64>,
    /// Publication → receipt, per delivery.
    pub latency: Latency,
    /// Publication → PUBACK (QoS 1) or PUBCOMP (QoS 2), per acknowledged publication.
    pub ack_latency: Latency,
}

/// The broker's resource use, from `/proc/PID`.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
pub struct BrokerUsage {
    /// The broker's pid.
    pub pid: u32,
    /// VmRSS before the first connection.
    pub rss_before_bytes: Option<u64>,
    /// VmRSS when every client had connected.
    pub rss_connected_bytes: Option<u64>,
    /// VmRSS at the end of the hold, before clients disconnect.
    pub rss_end_bytes: Option<u64>,
    /// The largest VmRSS sampled during the run (see [`Report::series`]).
    #[serde(default)]
    pub rss_max_bytes: Option<u64>,
    /// `(rss_end - rss_before) / connected`.
    pub rss_per_connection_bytes: Option<f64>,
    /// User + system CPU seconds over the run.
    pub cpu_s: Option<f64>,
    /// `cpu_s / wall_s` in percent of one core.
    pub cpu_percent: Option<f64>,
}

/// The load generator's resource use, every process summed.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
pub struct LoadtestUsage {
    /// Seconds from start to report.
    pub wall_s: f64,
    /// User CPU seconds.
    pub user_s: f64,
    /// System CPU seconds.
    pub system_s: f64,
    /// `(user_s + system_s) / wall_s` in percent of one core.
    pub cpu_percent: f64,
    /// CPUs available; `cpu_percent` near `100 × cores` means the load generator was saturated.
    pub cores: usize,
    /// Processes (the coordinator and its workers).
    pub processes: u32,
    /// Largest peak RSS of any of them.
    pub max_rss_bytes: u64,
}

/// A latency distribution, in milliseconds. Every figure is `None` (`null` in the JSON) when the
/// distribution has no samples: an empty histogram has no minimum, mean or percentile, and a 0
/// would read as a measurement.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Smallest.
    pub min_ms: Option<f64>,
    /// Mean.
    pub mean_ms: Option<f64>,
    /// Standard deviation.
    pub stddev_ms: Option<f64>,
    /// Median.
    pub p50_ms: Option<f64>,
    /// 90th percentile.
    pub p90_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// 99.9th percentile.
    pub p99_9_ms: Option<f64>,
    /// 99.99th percentile.
    pub p99_99_ms: Option<f64>,
    /// Largest.
    pub max_ms: Option<f64>,
    /// The histogram in nanoseconds: HdrHistogram V2 serialization, base64.
    pub histogram: String,
}

const NS_PER_MS: f64 = 1e6;

impl Latency {
    /// The summary of `histogram` (nanoseconds).
    pub fn from_histogram(histogram: &Histogram<u64>) -> Self {
        let defined = !histogram.is_empty();
        let ms = |ns: f64| defined.then_some(ns / NS_PER_MS);
        let at = |quantile: f64| ms(histogram.value_at_quantile(quantile) as f64);
        Self {
            count: histogram.len(),
            min_ms: ms(histogram.min() as f64),
            mean_ms: ms(histogram.mean()),
            stddev_ms: ms(histogram.stdev()),
            p50_ms: at(0.5),
            p90_ms: at(0.9),
            p99_ms: at(0.99),
            p99_9_ms: at(0.999),
            p99_99_ms: at(0.9999),
            max_ms: ms(histogram.max() as f64),
            histogram: encode_histogram(histogram),
        }
    }

    /// The histogram this summary was made from.
    pub fn histogram(&self) -> anyhow::Result<Histogram<u64>> {
        decode_histogram(&self.histogram)
    }

    /// The figures of the summary tables, in their order: p50, p90, p99, p99.9, p99.99, max,
    /// mean.
    pub fn table_figures(&self) -> [Option<f64>; 7] {
        [
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.p99_9_ms,
            self.p99_99_ms,
            self.max_ms,
            self.mean_ms,
        ]
    }
}

impl Report {
    /// Reads a report written by [`Report::write_files`].
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing report {}", path.display()))
    }

    /// The latencies worth a file and a curve: (file suffix, title, distribution). The first is
    /// the run's main one: deliveries, or connects for a `conn` run.
    pub fn latencies(&self) -> Vec<(&'static str, &'static str, &Latency)> {
        let mut all = vec![
            ("delivery", "publish → delivery", &self.messages.latency),
            (
                "connect",
                "CONNECT → CONNACK",
                &self.connections.connect_latency,
            ),
            (
                "subscribe",
                "SUBSCRIBE → SUBACK",
                &self.connections.subscribe_latency,
            ),
            (
                "ack",
                "publish → PUBACK/PUBCOMP",
                &self.messages.ack_latency,
            ),
        ];
        if self.scenario == "conn" || self.messages.latency.count == 0 {
            all.swap(0, 1);
        }
        all.retain(|(_, _, latency)| latency.count > 0);
        all
    }

    /// Writes `<name>.json`, `<name>.hgrm` (the main latency), `<name>.<kind>.hgrm` for the
    /// others and `<name>.html` into `dir`, returning the paths written.
    pub fn write_files(&self, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut written = Vec::new();
        let mut write = |file: String, contents: &str| -> anyhow::Result<()> {
            let path = dir.join(file);
            std::fs::write(&path, contents)
                .with_context(|| format!("writing {}", path.display()))?;
            written.push(path);
            Ok(())
        };
        write(
            format!("{}.json", self.name),
            &(serde_json::to_string_pretty(self)? + "\n"),
        )?;
        let mut curves = Vec::new();
        for (n, (kind, title, latency)) in self.latencies().into_iter().enumerate() {
            let histogram = latency.histogram()?;
            let mut text = String::new();
            write_percentiles(&histogram, NS_PER_MS, 5, &mut text);
            let file = if n == 0 {
                format!("{}.hgrm", self.name)
            } else {
                format!("{}.{kind}.hgrm", self.name)
            };
            write(file, &text)?;
            curves.push((title, histogram));
        }
        write(format!("{}.html", self.name), &html::render(self, &curves))?;
        Ok(written)
    }

    /// What went wrong, one line each. Empty means the run completed, every client connected
    /// (and subscribed) and stayed connected, every expected message arrived exactly once and
    /// nothing else arrived, and every QoS 1/2 publication was acknowledged: what a test of a
    /// broker asserts.
    pub fn problems(&self) -> Vec<String> {
        let c = &self.connections;
        let m = &self.messages;
        let mut problems: Vec<String> = self.errors.clone();
        if self.outcome != Outcome::Complete {
            problems.push(format!("outcome {}", self.outcome.as_str()));
        }
        let counts = [
            (c.failed, "connections failed"),
            (c.subscribe_failed, "subscriptions failed"),
            (c.dropped, "connections dropped"),
            (m.lost.unwrap_or(0), "messages lost"),
            (m.duplicates, "duplicate deliveries"),
            (m.unexpected, "unexpected deliveries"),
            (m.rejected, "publications rejected"),
            (m.unacked, "publications unacknowledged"),
        ];
        problems.extend(
            counts
                .iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, what)| format!("{n} {what}")),
        );
        if m.expected.is_none() && self.setup.publishers > 0 {
            problems.push("expected deliveries unknown".into());
        }
        problems
    }

    /// Fills [`Report::failures`] and [`Report::warnings`] from the figures; called once the
    /// figures are final.
    pub fn judge(&mut self) {
        self.warnings = self
            .broker
            .as_ref()
            .and_then(|broker| {
                series::broker_warning(broker, &self.series, self.connections.connected)
            })
            .into_iter()
            .collect();
        let c = &self.connections;
        let m = &self.messages;
        let mut failures = Vec::new();
        if c.failed > 0 {
            let reasons = c
                .failures
                .iter()
                .filter(|(reason, _)| !reason.starts_with(SUBSCRIBE_FAILURE))
                .map(|(reason, &n)| (reason.as_str(), n));
            failures.push(format!(
                "{} of {} clients could not connect ({})",
                c.failed,
                self.setup.connections,
                reason_list(reasons)
            ));
        }
        if c.subscribe_failed > 0 {
            let reasons = c.failures.iter().filter_map(|(reason, &n)| {
                reason
                    .strip_prefix(SUBSCRIBE_FAILURE)
                    .map(|reason| (reason, n))
            });
            failures.push(format!(
                "{} of {} subscribers could not subscribe ({})",
                c.subscribe_failed,
                self.setup.subscribers,
                reason_list(reasons)
            ));
        }
        if let Some(expected) = m.expected.filter(|&expected| expected > 0) {
            if m.delivered == 0 {
                failures.push(format!("no message was delivered ({expected} expected)"));
            }
        }
        self.failures = failures;
    }

    /// The binary's exit status for this run: [`EXIT_FAILED`] when there are failures,
    /// [`EXIT_INCOMPLETE`] when the run did not complete, [`EXIT_OK`] otherwise.
    pub fn exit_code(&self) -> u8 {
        if !self.failures.is_empty() {
            EXIT_FAILED
        } else if self.outcome != Outcome::Complete {
            EXIT_INCOMPLETE
        } else {
            EXIT_OK
        }
    }

    /// What must be read before the figures, one line each: `FAILED: ` for every failure,
    /// `INCOMPLETE: ` when the run ended early, `WARNING: ` for every warning. Empty for a
    /// complete, valid run. The summary and the HTML page start with these.
    pub fn verdict(&self) -> Vec<String> {
        let m = &self.messages;
        let mut lines: Vec<String> = self
            .failures
            .iter()
            .map(|failure| format!("FAILED: {failure}"))
            .collect();
        let incomplete = match self.outcome {
            Outcome::Complete => None,
            Outcome::DrainTimeout => {
                let mut missing = Vec::new();
                if let (Some(lost), Some(expected)) = (m.lost.filter(|&lost| lost > 0), m.expected)
                {
                    missing.push(format!("{lost} of {expected} deliveries"));
                }
                if m.unacked > 0 {
                    missing.push(format!("{} acknowledgements", m.unacked));
                }
                Some(format!(
                    "the drain time ran out with {} missing",
                    if missing.is_empty() {
                        "deliveries".into()
                    } else {
                        missing.join(" and ")
                    }
                ))
            }
            Outcome::Interrupted => {
                Some("interrupted; the figures cover the run until then".into())
            }
            Outcome::Timeout => Some(
                "the run reached its time limit (--timeout); the figures cover the run until then"
                    .into(),
            ),
            Outcome::Failed => Some("a worker failed (see the errors)".into()),
        };
        lines.extend(incomplete.map(|text| format!("INCOMPLETE: {text}")));
        lines.extend(
            self.warnings
                .iter()
                .map(|warning| format!("WARNING: {warning}")),
        );
        lines
    }

    /// The human summary printed at the end of a run.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        self.write_summary(&mut out);
        out
    }

    fn write_summary(&self, out: &mut String) {
        let s = &self.setup;
        let c = &self.connections;
        let m = &self.messages;
        let protocol = match s.protocol {
            3 => "MQTT 3.1",
            4 => "MQTT 3.1.1",
            _ => "MQTT 5.0",
        };
        for line in self.verdict() {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(
            out,
            "shardmq-loadtest {} {:?}: {}",
            self.scenario,
            self.name,
            self.outcome.as_str()
        );
        let _ = writeln!(
            out,
            "  broker {}:{} {protocol}, QoS {}, {} B payload; {} connections ({} publishers, {} subscribers); {} process{} x {} thread{}",
            s.host,
            s.port,
            s.qos,
            s.payload_bytes,
            s.connections,
            s.publishers,
            s.subscribers,
            s.workers,
            if s.workers == 1 { "" } else { "es" },
            s.threads_per_worker,
            if s.threads_per_worker == 1 { "" } else { "s" },
        );
        for error in &self.errors {
            let _ = writeln!(out, "  error: {error}");
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "connections  {}/{} connected, {} failed, {} dropped; ramp {} s{}",
            c.connected,
            c.attempted,
            c.failed,
            c.dropped,
            figure(c.ramp_s, 1.0, 3),
            c.connects_per_s
                .map(|rate| format!(" ({rate:.0}/s)"))
                .unwrap_or_default(),
        );
        for (reason, n) in c.failures.iter().chain(&c.drops) {
            let _ = writeln!(out, "             {n} x {reason}");
        }
        if s.subscribers > 0 {
            let _ = writeln!(
                out,
                "subscribe    {} ok, {} failed",
                c.subscribed, c.subscribe_failed
            );
        }
        if s.publishers > 0 {
            let _ = writeln!(
                out,
                "messages     {} published{}, {} expected, {} delivered, {} lost, {} duplicates, {} unexpected{}",
                m.published,
                m.publishes_per_s.map(|rate| format!(" ({rate:.0}/s)")).unwrap_or_default(),
                optional(m.expected),
                m.delivered,
                optional(m.lost),
                m.duplicates,
                m.unexpected,
                [("rejected", m.rejected), ("unacknowledged", m.unacked)]
                    .iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(what, n)| format!(", {n} {what}"))
                    .collect::<String>(),
            );
            if let Some(ms) = m.time_to_last_delivery_ms {
                let _ = writeln!(
                    out,
                    "             last delivery {ms:.3} ms after the first publish; {} deliveries/s",
                    m.deliveries_per_s.map_or("-".into(), |rate| format!("{rate:.0}")),
                );
            }
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<24}{:>9}{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}",
            "latency", "count", "p50", "p90", "p99", "p99.9", "p99.99", "max", "mean"
        );
        for (kind, _, latency) in self.latencies() {
            let values = latency.table_figures();
            let _ = write!(out, "{:<21}ms{:>10}", kind, latency.count);
            for value in values {
                let _ = write!(out, "{:>11}", figure(value, 1.0, 3));
            }
            let _ = write!(out, "\n{:<21}µs{:>10}", "", "");
            for value in values {
                let _ = write!(out, "{:>11}", figure(value, 1e3, 1));
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(out);
        if let Some(b) = &self.broker {
            let _ = writeln!(
                out,
                "broker       pid {}: RSS {} -> {}, at most {} ({} per connection); CPU {} ({} of a core)",
                b.pid,
                optional_bytes(b.rss_before_bytes),
                optional_bytes(b.rss_end_bytes),
                optional_bytes(b.rss_max_bytes),
                b.rss_per_connection_bytes.map_or("-".into(), bytes_text),
                b.cpu_s.map_or("-".into(), |s| format!("{s:.2} s")),
                b.cpu_percent.map_or("-".into(), |p| format!("{p:.0}%")),
            );
        }
        let l = &self.loadtest;
        let _ = writeln!(
            out,
            "loadtest     CPU {:.2} s user + {:.2} s system in {:.2} s = {:.0}% of a core ({} cores, {} process{}); max RSS {}",
            l.user_s,
            l.system_s,
            l.wall_s,
            l.cpu_percent,
            l.cores,
            l.processes,
            if l.processes == 1 { "" } else { "es" },
            bytes_text(l.max_rss_bytes as f64),
        );
    }
}

/// `value × scale` with `decimals` decimals, or `-` for a figure that is not defined.
fn figure(value: Option<f64>, scale: f64, decimals: usize) -> String {
    value.map_or("-".into(), |value| format!("{:.decimals$}", value * scale))
}

/// `reason` or `n reason, m reason, ...`, most frequent first, at most three.
fn reason_list<'a>(reasons: impl Iterator<Item = (&'a str, u64)>) -> String {
    let mut reasons: Vec<(&str, u64)> = reasons.collect();
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    match reasons.as_slice() {
        [] => "no reason recorded".into(),
        [(reason, _)] => (*reason).into(),
        more => {
            let mut list: Vec<String> = more
                .iter()
                .take(3)
                .map(|(reason, n)| format!("{n} {reason}"))
                .collect();
            if more.len() > 3 {
                list.push("...".into());
            }
            list.join(", ")
        }
    }
}

fn optional(value: Option<u64>) -> String {
    value.map_or("?".into(), |value| value.to_string())
}

fn optional_bytes(value: Option<u64>) -> String {
    value.map_or("-".into(), |bytes| bytes_text(bytes as f64))
}

/// `bytes` in B, KiB, MiB or GiB.
pub(crate) fn bytes_text(bytes: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::stats::new_histogram;

    /// A report with made-up figures for format tests.
    pub(crate) fn sample(name: &str, scale: u64) -> Report {
        let mut delivery = new_histogram();
        for n in 1..=1000u64 {
            delivery.record(n * 1_000 * scale).unwrap();
        }
        let mut connect = new_histogram();
        connect.record(250_000).unwrap();
        let empty = Latency::from_histogram(&new_histogram());
        Report {
            schema: SCHEMA_VERSION,
            tool: "shardmq-loadtest test".into(),
            name: name.into(),
            scenario: "fanout".into(),
            started_unix_ms: 1_700_000_000_000,
            outcome: Outcome::Complete,
            errors: Vec::new(),
            failures: Vec::new(),
            warnings: Vec::new(),
            setup: Setup {
                host: "127.0.0.1".into(),
                port: 1883,
                protocol: 4,
                qos: 1,
                payload_bytes: 64,
                connections: 101,
                publishers: 1,
                subscribers: 100,
                messages_per_publisher: 10,
                publish_rate: 0.0,
                inflight: 64,
                keepalive_s: 60,
                clean: true,
                src_ips: 0,
                connect_rate: 0.0,
                workers: 1,
                threads_per_worker: 2,
            },
            connections: Connections {
                attempted: 101,
                connected: 101,
                failed: 0,
                failures: BTreeMap::new(),
                subscribed: 100,
                subscribe_failed: 0,
                dropped: 0,
                drops: BTreeMap::new(),
                ramp_s: Some(0.05),
                connects_per_s: Some(2020.0),
                connect_latency: Latency::from_histogram(&connect),
                subscribe_latency: empty.clone(),
            },
            messages: Messages {
                published: 10,
                publish_s: Some(0.001),
                publishes_per_s: Some(10_000.0),
                acked: 10,
                rejected: 0,
                unacked: 0,
                expected: Some(1000),
                received: 1000,
                delivered: 1000,
                lost: Some(0),
                duplicates: 0,
                unexpected: 0,
                drain_complete: true,
                time_to_last_delivery_ms: Some(12.5 * scale as f64),
                deliveries_per_s: Some(80_000.0 / scale as f64),
                latency: Latency::from_histogram(&delivery),
                ack_latency: empty,
            },
            broker: Some(BrokerUsage {
                pid: 4242,
                rss_before_bytes: Some(1 << 20),
                rss_connected_bytes: Some(2 << 20),
                rss_end_bytes: Some(2 << 20),
                rss_max_bytes: Some(2 << 20),
                rss_per_connection_bytes: Some(10_382.0),
                cpu_s: Some(0.2),
                cpu_percent: Some(20.0),
            }),
            loadtest: LoadtestUsage {
                wall_s: 1.0,
                user_s: 0.25,
                system_s: 0.25,
                cpu_percent: 50.0,
                cores: 2,
                processes: 1,
                max_rss_bytes: 30 << 20,
            },
            series: sample_series(scale),
        }
    }

    /// Points of a 3-second run of the sample's shape.
    fn sample_series(scale: u64) -> Vec<Point> {
        let point = |t_s: f64, phase: Phase, connections: u64, delivered: u64| Point {
            t_s,
            phase,
            connections,
            connect_failed: 0,
            published: delivered / 100,
            delivered,
            connects_per_s: (t_s > 0.0).then(|| connections as f64 / t_s),
            publishes_per_s: (t_s > 0.0).then(|| 10.0 / scale as f64),
            deliveries_per_s: (t_s > 0.0).then(|| 1000.0 / scale as f64),
            broker_rss_bytes: Some((1 << 20) + connections * 10_382),
            broker_cpu_percent: (t_s > 0.0).then_some(20.0),
        };
        vec![
            point(0.0, Phase::Connecting, 0, 0),
            point(0.05, Phase::Publishing, 101, 0),
            point(1.0, Phase::Publishing, 101, 500),
            point(2.0, Phase::Draining, 101, 1000),
            point(2.5, Phase::Holding, 101, 1000),
            point(3.0, Phase::Finishing, 0, 1000),
        ]
    }

    #[test]
    fn json_round_trip_keeps_every_field() {
        let report = sample("run", 1);
        let json = serde_json::to_string_pretty(&report).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
        // Stable names a dashboard may rely on.
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        for pointer in [
            "/schema",
            "/outcome",
            "/setup/connections",
            "/connections/connect_latency/p99_ms",
            "/messages/latency/p99_9_ms",
            "/messages/lost",
            "/messages/deliveries_per_s",
            "/broker/rss_per_connection_bytes",
            "/broker/rss_max_bytes",
            "/loadtest/cpu_percent",
            "/failures",
            "/warnings",
            "/series/0/t_s",
            "/series/0/phase",
            "/series/2/deliveries_per_s",
            "/series/2/broker_rss_bytes",
            "/series/2/broker_cpu_percent",
        ] {
            assert!(value.pointer(pointer).is_some(), "{pointer} missing");
        }
        assert_eq!(value["outcome"], "complete");
        assert_eq!(value["series"][1]["phase"], "publishing");
        // The first point has no interval to measure a rate over.
        assert!(value["series"][0]["deliveries_per_s"].is_null());
    }

    #[test]
    fn empty_distributions_are_null_in_the_json() {
        let mut report = sample("run", 1);
        report.messages.publish_s = None;
        report.connections.ramp_s = None;
        let value = serde_json::to_value(&report).unwrap();
        // The sample's subscribe and ack distributions have no samples.
        for pointer in ["/connections/subscribe_latency", "/messages/ack_latency"] {
            let latency = value.pointer(pointer).unwrap().as_object().unwrap();
            assert_eq!(latency["count"], 0);
            let figures: Vec<&String> = latency.keys().filter(|key| key.ends_with("_ms")).collect();
            assert_eq!(figures.len(), 9, "{figures:?}");
            for field in figures {
                assert!(
                    latency[field].is_null(),
                    "{pointer}/{field}: {}",
                    latency[field]
                );
            }
        }
        for pointer in ["/messages/publish_s", "/connections/ramp_s"] {
            assert!(value.pointer(pointer).unwrap().is_null(), "{pointer}");
        }
        let back: Report = serde_json::from_value(value).unwrap();
        assert_eq!(back, report);

        let mut one = new_histogram();
        one.record(2_000_000).unwrap();
        let latency = Latency::from_histogram(&one);
        for figure in latency.table_figures().into_iter().chain([latency.min_ms]) {
            // Within HdrHistogram's 3 significant digits.
            assert!((figure.unwrap() - 2.0).abs() < 0.002, "{figure:?}");
        }
        assert_eq!(latency.stddev_ms, Some(0.0));
    }

    #[test]
    fn schema_1_reports_still_load() {
        // Schema 1 wrote 0 for the figures of an empty distribution.
        let mut value = serde_json::to_value(sample("old", 1)).unwrap();
        value["schema"] = 1.into();
        value["messages"]["ack_latency"]["p99_ms"] = 0.0.into();
        value["messages"]["publish_s"] = 0.0.into();
        for field in ["failures", "warnings", "series"] {
            value.as_object_mut().unwrap().remove(field);
        }
        value["broker"]
            .as_object_mut()
            .unwrap()
            .remove("rss_max_bytes");
        let report: Report = serde_json::from_value(value).unwrap();
        assert_eq!(report.messages.ack_latency.p99_ms, Some(0.0));
        assert!(report.series.is_empty() && report.failures.is_empty());
    }

    #[test]
    fn latency_summary_matches_histogram() {
        let report = sample("run", 1);
        let latency = &report.messages.latency;
        assert_eq!(latency.count, 1000);
        let near = |value: Option<f64>, want: f64| {
            assert!(
                (value.unwrap() - want).abs() < 0.001,
                "{value:?} is not {want}"
            );
        };
        near(latency.p50_ms, 0.5);
        near(latency.p99_ms, 0.99);
        near(latency.max_ms, 1.0);
        near(latency.min_ms, 0.001);
        assert_eq!(latency.histogram().unwrap().len(), 1000);
    }

    #[test]
    fn files_are_written_and_parse() {
        let dir = tempfile::tempdir().unwrap();
        let report = sample("run", 1);
        let written = report.write_files(dir.path()).unwrap();
        let names: Vec<_> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["run.json", "run.hgrm", "run.connect.hgrm", "run.html"]
        );
        assert_eq!(Report::load(&dir.path().join("run.json")).unwrap(), report);
        let hgrm = std::fs::read_to_string(dir.path().join("run.hgrm")).unwrap();
        assert_eq!(parse_percentiles(&hgrm).unwrap().total_count, 1000);
        let html = std::fs::read_to_string(dir.path().join("run.html")).unwrap();
        assert!(html.contains("<svg") && !html.contains("http://") && !html.contains("https://"));
    }

    #[test]
    fn summary_names_the_figures() {
        let summary = sample("run", 1).summary();
        for needle in [
            "fanout \"run\": complete",
            "1000 delivered, 0 lost",
            "p99.99",
            "µs",
            "per connection",
            "% of a core",
        ] {
            assert!(summary.contains(needle), "{needle:?} not in\n{summary}");
        }
    }

    #[test]
    fn problems_list_what_went_wrong() {
        let mut report = sample("run", 1);
        assert!(report.problems().is_empty());
        report.outcome = Outcome::DrainTimeout;
        report.messages.lost = Some(3);
        report.connections.dropped = 1;
        assert_eq!(
            report.problems(),
            [
                "outcome drain_timeout",
                "1 connections dropped",
                "3 messages lost"
            ]
        );
    }

    #[test]
    fn clients_that_could_not_connect_fail_the_run_first() {
        let mut report = sample("run", 1);
        report.setup.connections = 1000;
        let c = &mut report.connections;
        (c.attempted, c.connected, c.failed) = (1000, 688, 312);
        c.failures = BTreeMap::from([
            ("connection refused".to_owned(), 300),
            ("timeout".to_owned(), 12),
        ]);
        report.judge();
        assert_eq!(
            report.failures,
            ["312 of 1000 clients could not connect (300 connection refused, 12 timeout)"]
        );
        assert_eq!(report.exit_code(), EXIT_FAILED);
        let summary = report.summary();
        assert!(
            summary.starts_with(
                "FAILED: 312 of 1000 clients could not connect (300 connection refused, 12 timeout)\n\
                 shardmq-loadtest fanout"
            ),
            "{summary}"
        );

        report.connections.failures = BTreeMap::from([("connection refused".to_owned(), 312)]);
        report.judge();
        assert_eq!(
            report.failures,
            ["312 of 1000 clients could not connect (connection refused)"]
        );
    }

    #[test]
    fn subscribe_failures_are_told_apart() {
        let mut report = sample("run", 1);
        let c = &mut report.connections;
        (c.failed, c.subscribe_failed) = (1, 5);
        c.failures = BTreeMap::from([
            ("CONNACK NotAuthorized".to_owned(), 1),
            (format!("{SUBSCRIBE_FAILURE}SUBACK refused"), 4),
            (format!("{SUBSCRIBE_FAILURE}timeout"), 1),
        ]);
        report.judge();
        assert_eq!(
            report.failures,
            [
                "1 of 101 clients could not connect (CONNACK NotAuthorized)",
                "5 of 100 subscribers could not subscribe (4 SUBACK refused, 1 timeout)",
            ]
        );
    }

    #[test]
    fn nothing_delivered_fails_however_the_run_ended() {
        let mut report = sample("run", 1);
        report.outcome = Outcome::DrainTimeout;
        let m = &mut report.messages;
        (m.received, m.delivered, m.lost) = (0, 0, Some(1000));
        m.latency = Latency::from_histogram(&new_histogram());
        report.judge();
        assert_eq!(
            report.failures,
            ["no message was delivered (1000 expected)"]
        );
        assert_eq!(report.exit_code(), EXIT_FAILED);
        assert_eq!(
            report.verdict(),
            [
                "FAILED: no message was delivered (1000 expected)",
                "INCOMPLETE: the drain time ran out with 1000 of 1000 deliveries missing",
            ]
        );
        assert!(report
            .summary()
            .starts_with("FAILED: no message was delivered"));
    }

    #[test]
    fn exit_status_follows_outcome_and_failures() {
        let mut report = sample("run", 1);
        report.judge();
        assert_eq!(report.verdict(), Vec::<String>::new());
        assert_eq!(report.exit_code(), EXIT_OK);
        assert!(report.summary().starts_with("shardmq-loadtest fanout"));
        for outcome in [Outcome::Interrupted, Outcome::Timeout, Outcome::Failed] {
            report.outcome = outcome;
            assert_eq!(report.exit_code(), EXIT_INCOMPLETE, "{outcome:?}");
            assert!(report.verdict()[0].starts_with("INCOMPLETE: "));
        }
        report.outcome = Outcome::DrainTimeout;
        report.messages.lost = Some(0);
        report.messages.unacked = 3;
        assert_eq!(
            report.verdict(),
            ["INCOMPLETE: the drain time ran out with 3 acknowledgements missing"]
        );
        // Warnings come last and change nothing.
        report.outcome = Outcome::Complete;
        report.warnings = vec!["broker not fresh".into()];
        assert_eq!(report.verdict(), ["WARNING: broker not fresh"]);
        assert_eq!(report.exit_code(), EXIT_OK);
    }

    #[test]
    fn a_run_that_expects_no_delivery_does_not_fail_for_none() {
        let mut report = sample("conn", 1);
        report.scenario = "conn".into();
        report.setup.publishers = 0;
        report.setup.subscribers = 0;
        let m = &mut report.messages;
        (m.published, m.expected, m.delivered, m.lost) = (0, Some(0), 0, Some(0));
        report.judge();
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        // Stopped before the expectation was known: incomplete, not failed.
        report.outcome = Outcome::Interrupted;
        report.messages.expected = None;
        report.judge();
        assert_eq!(report.exit_code(), EXIT_INCOMPLETE);
    }

    #[test]
    fn byte_units() {
        assert_eq!(bytes_text(512.0), "512 B");
        assert_eq!(bytes_text(1536.0), "1.5 KiB");
        assert_eq!(bytes_text(3.0 * 1024.0 * 1024.0 * 1024.0), "3.0 GiB");
    }
}
