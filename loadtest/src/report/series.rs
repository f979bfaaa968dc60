//! The run over time: [`Phase`] names where a run is, [`Point`] is one sample of the time series
//! that `series[]` in the JSON holds and the HTML report draws. The coordinator records
//! [`Sample`]s; [`points`] turns them into rates, and [`broker_warnings`] reads from them whether
//! the broker's memory figures can be trusted.

use serde::{Deserialize, Serialize};

use super::{bytes_text, BrokerUsage};
use crate::stats::Counters;

/// Where a run is. The phases follow one another in this order; a run that is stopped skips to
/// [`Phase::Finishing`].
#[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Clients open connections (TCP, CONNECT/CONNACK, and SUBSCRIBE right after the CONNACK).
    Connecting,
    /// Every client has connected or failed; subscribers still wait for SUBACKs.
    Subscribing,
    /// Publishers publish.
    Publishing,
    /// Every publisher is done; waiting for the last deliveries and acknowledgements.
    Draining,
    /// Every connection is kept open for the hold time.
    Holding,
    /// Clients disconnect.
    Finishing,
}

impl Phase {
    /// The snake_case name used in the JSON and on the progress line.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connecting => "connecting",
            Phase::Subscribing => "subscribing",
            Phase::Publishing => "publishing",
            Phase::Draining => "draining",
            Phase::Holding => "holding",
            Phase::Finishing => "finishing",
        }
    }
}

/// One sample of the run, taken about once a second, at every phase change, at the start and at
/// the end. Counts are totals since the start; rates are over the time since the previous point.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
pub struct Point {
    /// Seconds since the run started.
    pub t_s: f64,
    /// The phase the run is in from this point on.
    pub phase: Phase,
    /// Connections open: connected and not yet closed.
    pub connections: u64,
    /// Clients that could not connect, so far.
    pub connect_failed: u64,
    /// PUBLISH packets sent, so far.
    pub published: u64,
    /// Expected messages received at least once, so far.
    pub delivered: u64,
    /// Connections established per second since the previous point.
    pub connects_per_s: Option<f64>,
    /// Publications per second since the previous point.
    pub publishes_per_s: Option<f64>,
    /// Deliveries (first receipts) per second since the previous point.
    pub deliveries_per_s: Option<f64>,
    /// The broker's VmRSS, with `--broker-pid`.
    pub broker_rss_bytes: Option<u64>,
    /// The broker's CPU use since the previous point in percent of one core, with `--broker-pid`.
    pub broker_cpu_percent: Option<f64>,
}

/// What the coordinator records at each point: counters summed over the workers' latest
/// reports, and the broker's `/proc` figures.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    pub t_s: f64,
    pub phase: Phase,
    pub counters: Counters,
    pub broker_rss: Option<u64>,
    pub broker_cpu_ns: Option<u64>,
}

/// The shortest time a rate is measured over. Points come about once a second and at every phase
/// change, which may be milliseconds apart; the broker's CPU time counts in 10 ms clock ticks, so
/// over a few milliseconds one tick reads as hundreds of percent. Half a second keeps that error
/// within 2% of a core.
pub(crate) const MIN_RATE_SPAN_S: f64 = 0.5;

/// The points of `samples` (in time order). A point's rates are over the time since the latest
/// earlier sample at least [`MIN_RATE_SPAN_S`] before it; in the first half second there is none.
pub(crate) fn points(samples: &[Sample]) -> Vec<Point> {
    let mut base = 0;
    samples
        .iter()
        .enumerate()
        .map(|(n, sample)| {
            while base + 1 < n && sample.t_s - samples[base + 1].t_s >= MIN_RATE_SPAN_S {
                base += 1;
            }
            let from = Some(&samples[base])
                .filter(|from| n > 0 && sample.t_s - from.t_s >= MIN_RATE_SPAN_S);
            let rate = |count: fn(&Counters) -> u64| {
                from.map(|from| {
                    count(&sample.counters).saturating_sub(count(&from.counters)) as f64
                        / (sample.t_s - from.t_s)
                })
            };
            let broker_cpu_percent = from.and_then(|from| {
                let cpu_ns = sample.broker_cpu_ns?.saturating_sub(from.broker_cpu_ns?);
                Some(100.0 * cpu_ns as f64 / 1e9 / (sample.t_s - from.t_s))
            });
            Point {
                t_s: sample.t_s,
                phase: sample.phase,
                connections: sample.counters.open(),
                connect_failed: sample.counters.connect_failed,
                published: sample.counters.published,
                delivered: sample.counters.unique,
                connects_per_s: rate(|c| c.connected),
                publishes_per_s: rate(|c| c.published),
                deliveries_per_s: rate(|c| c.unique),
                broker_rss_bytes: sample.broker_rss,
                broker_cpu_percent,
            }
        })
        .collect()
}

/// How far below its starting RSS a broker may dip before it counts as not fresh.
const RSS_DIP_TOLERANCE: u64 = 1 << 20;
/// Below this many bytes per connection over [`PLAUSIBLE_MIN_CONNECTIONS`] or more connections,
/// the broker did not allocate for them: it reused memory an earlier run left behind.
const PLAUSIBLE_MIN_BYTES_PER_CONNECTION: f64 = 64.0;
const PLAUSIBLE_MIN_CONNECTIONS: u64 = 1000;

/// The warning about the broker's memory figures, if any. A broker that was not freshly started
/// reuses memory freed after an earlier run: its RSS falls, or stays flat, while clients connect,
/// and its memory per connection reads negative or near zero.
pub(crate) fn broker_warning(
    broker: &BrokerUsage,
    series: &[Point],
    connected: u64,
) -> Option<String> {
    let before = broker.rss_before_bytes?;
    let per_connection = broker.rss_per_connection_bytes;
    let lowest = series
        .iter()
        .filter_map(|point| point.broker_rss_bytes)
        .min();
    let not_fresh = "the broker was probably not freshly started (it reused memory an earlier run \
                     freed), so memory per connection is not measured; restart the broker before \
                     measuring it";
    if per_connection.is_some_and(|bytes| bytes < 0.0) {
        Some(format!(
            "the broker's RSS fell during the run ({} at the start, {} before disconnecting): \
             {not_fresh}",
            bytes_text(before as f64),
            broker
                .rss_end_bytes
                .map_or("-".into(), |end| bytes_text(end as f64)),
        ))
    } else if let Some(lowest) = lowest.filter(|&lowest| lowest + RSS_DIP_TOLERANCE < before) {
        Some(format!(
            "the broker's RSS fell below its starting {} during the run (lowest {}): {not_fresh}",
            bytes_text(before as f64),
            bytes_text(lowest as f64),
        ))
    } else {
        per_connection
            .filter(|&bytes| {
                bytes < PLAUSIBLE_MIN_BYTES_PER_CONNECTION && connected >= PLAUSIBLE_MIN_CONNECTIONS
            })
            .map(|bytes| {
                format!(
                    "{} per connection over {connected} connections is implausibly low: \
                     {not_fresh}",
                    bytes_text(bytes)
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t_s: f64, phase: Phase, counters: Counters, rss: u64, cpu_ns: u64) -> Sample {
        Sample {
            t_s,
            phase,
            counters,
            broker_rss: Some(rss),
            broker_cpu_ns: Some(cpu_ns),
        }
    }

    #[test]
    fn rates_span_at_least_half_a_second() {
        let connected = Counters {
            connected: 100,
            subscribed: 99,
            ..Counters::default()
        };
        let publishing = Counters {
            published: 20,
            unique: 1980,
            ..connected
        };
        let finished = Counters {
            closed: 100,
            ..publishing
        };
        let samples = [
            sample(0.0, Phase::Connecting, Counters::default(), 10 << 20, 0),
            sample(0.1, Phase::Publishing, connected, 12 << 20, 10_000_000),
            sample(0.5, Phase::Publishing, connected, 12 << 20, 250_000_000),
            sample(1.5, Phase::Draining, publishing, 13 << 20, 1_250_000_000),
            sample(1.503, Phase::Holding, publishing, 13 << 20, 1_260_000_000),
            sample(2.0, Phase::Finishing, finished, 13 << 20, 1_300_000_000),
        ];
        let points = points(&samples);
        assert_eq!(points.len(), 6);
        // Nothing to measure a rate over in the first half second.
        for point in &points[..2] {
            assert_eq!(
                (
                    point.connects_per_s,
                    point.deliveries_per_s,
                    point.broker_cpu_percent
                ),
                (None, None, None)
            );
        }
        assert_eq!(points[1].connections, 100);
        assert_eq!(points[2].connects_per_s, Some(200.0));
        assert_eq!(points[2].broker_cpu_percent, Some(50.0));
        assert_eq!(points[3].deliveries_per_s, Some(1980.0));
        assert_eq!(points[3].publishes_per_s, Some(20.0));
        assert_eq!(points[3].broker_cpu_percent, Some(100.0));
        assert_eq!(points[3].broker_rss_bytes, Some(13 << 20));
        // 3 ms after the previous point: measured from the point a second before, so one CPU
        // clock tick does not read as 333% of a core.
        let cpu = points[4].broker_cpu_percent.unwrap();
        assert!((cpu - 101.0).abs() < 0.5, "{cpu}");
        assert_eq!(points[4].deliveries_per_s, Some(1980.0 / 1.003));
        // 0.5 s after 1.5: measured from there.
        assert_eq!(points[5].deliveries_per_s, Some(0.0));
        assert_eq!((points[5].connections, points[5].delivered), (0, 1980));
        assert_eq!(points[5].phase, Phase::Finishing);
    }

    fn usage(before: u64, end: u64, connected: u64) -> BrokerUsage {
        BrokerUsage {
            pid: 1,
            rss_before_bytes: Some(before),
            rss_connected_bytes: Some(end),
            rss_end_bytes: Some(end),
            rss_max_bytes: Some(end.max(before)),
            rss_per_connection_bytes: Some((end as f64 - before as f64) / connected as f64),
            cpu_s: None,
            cpu_percent: None,
        }
    }

    fn rss_series(values: &[u64]) -> Vec<Point> {
        let samples: Vec<Sample> = values
            .iter()
            .enumerate()
            .map(|(n, &rss)| sample(n as f64, Phase::Holding, Counters::default(), rss, 0))
            .collect();
        points(&samples)
    }

    #[test]
    fn a_fresh_broker_draws_no_warning() {
        const MIB: u64 = 1 << 20;
        let broker = usage(8 * MIB, 48 * MIB, 10_000);
        let series = rss_series(&[8 * MIB, 30 * MIB, 48 * MIB]);
        assert_eq!(broker_warning(&broker, &series, 10_000), None);
        // A small dip is allocator noise, not a used broker.
        let series = rss_series(&[8 * MIB, 8 * MIB - 4096, 48 * MIB]);
        assert_eq!(broker_warning(&broker, &series, 10_000), None);
        // Few connections may fit in memory the broker already had.
        let flat = usage(8 * MIB, 8 * MIB, 50);
        assert_eq!(broker_warning(&flat, &rss_series(&[8 * MIB]), 50), None);
        let unknown = BrokerUsage {
            rss_before_bytes: None,
            ..usage(0, 0, 1)
        };
        assert_eq!(broker_warning(&unknown, &[], 1), None);
    }

    #[test]
    fn a_broker_whose_rss_fell_was_not_fresh() {
        const MIB: u64 = 1 << 20;
        let fell = usage(200 * MIB, 150 * MIB, 10_000);
        let warning = broker_warning(&fell, &rss_series(&[200 * MIB, 150 * MIB]), 10_000).unwrap();
        assert!(
            warning.starts_with(
                "the broker's RSS fell during the run (200.0 MiB at the start, 150.0 MiB before disconnecting)"
            ),
            "{warning}"
        );
        assert!(warning.contains("not freshly started"), "{warning}");

        let dipped = usage(200 * MIB, 210 * MIB, 10_000);
        let series = rss_series(&[200 * MIB, 120 * MIB, 210 * MIB]);
        let warning = broker_warning(&dipped, &series, 10_000).unwrap();
        assert!(
            warning.starts_with(
                "the broker's RSS fell below its starting 200.0 MiB during the run (lowest 120.0 MiB)"
            ),
            "{warning}"
        );

        let flat = usage(200 * MIB, 200 * MIB + 40_000, 10_000);
        let warning = broker_warning(&flat, &rss_series(&[200 * MIB]), 10_000).unwrap();
        assert!(
            warning.starts_with("4 B per connection over 10000 connections is implausibly low"),
            "{warning}"
        );
    }
}
