//! The broker's figures: per-shard snapshots, broker totals, Mosquitto-style load averages, and
//! the one JSON form of a snapshot that the admin API and the status history both write.
//!
//! Summing shards needs care for one figure: retained messages are replicated to every shard, so
//! the broker's count is one shard's, not the sum. (The `$SYS` messages the monitor publishes are
//! not counted as received at all: the shard leaves the broker's own publications out, as
//! Mosquitto does.)

use serde::Serialize;
use serde_json::{Map, Value};
use shardmq_shard::stats::Snapshot;

/// Figures of every shard and of the whole broker at one moment.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Figures {
    /// Each shard's figures, by shard id.
    pub shards: Vec<Snapshot>,
    /// The broker's figures.
    pub total: Snapshot,
}

impl Figures {
    /// Figures from the shards' snapshots. The retained index is replicated on every shard, so
    /// its count is taken once, not summed.
    pub fn new(shards: Vec<Snapshot>) -> Figures {
        let mut total = shards
            .iter()
            .fold(Snapshot::default(), |total, shard| total.sum(shard));
        total.retained = shards.iter().map(|s| s.retained).max().unwrap_or(0);
        Figures { shards, total }
    }

    /// Messages dropped for any reason (slow subscriber, full queue, too large for the
    /// subscriber, a shared group with no member, ACL, closed ring).
    pub fn dropped(snapshot: &Snapshot) -> u64 {
        snapshot.dropped_slow
            + snapshot.dropped_queue_full
            + snapshot.dropped_too_large
            + snapshot.dropped_no_member
            + snapshot.dropped_denied
            + snapshot.mesh_dropped
    }

    /// Each shard's figures as a JSON object with the shard's id under `"shard"`: the `shards` of
    /// `/api/v1/stats` (which adds each shard's `load`) and of a status history row.
    pub fn shards_json(&self) -> Vec<Map<String, Value>> {
        self.shards
            .iter()
            .enumerate()
            .map(|(shard, snapshot)| {
                let mut object = figures_json(snapshot);
                object.insert("shard".into(), shard.into());
                object
            })
            .collect()
    }
}

/// Every figure of `snapshot` as a JSON object, `{"<figure>": value, ...}`, named as in
/// `shardmq_shard::stats`, so a figure added to a shard appears here without an edit.
pub fn figures_json(snapshot: &Snapshot) -> Map<String, Value> {
    snapshot
        .figures()
        .into_iter()
        .map(|(name, _, value, _)| (name.to_owned(), value.into()))
        .collect()
}

/// Exponentially decayed per-minute rates over 1, 5 and 15 minutes, as Mosquitto computes its
/// `$SYS/broker/load/...` figures: each update moves the average toward the rate seen since the
/// last update by `1 - exp(-elapsed / window)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LoadAverage {
    /// Per-minute rate decayed over 1 minute.
    #[serde(rename = "1min")]
    pub one: f64,
    /// Over 5 minutes.
    #[serde(rename = "5min")]
    pub five: f64,
    /// Over 15 minutes.
    #[serde(rename = "15min")]
    pub fifteen: f64,
}

impl LoadAverage {
    /// Folds in `delta` events seen over the last `seconds`.
    pub fn update(&mut self, delta: u64, seconds: f64) {
        if seconds <= 0.0 {
            return;
        }
        let per_minute = delta as f64 * 60.0 / seconds;
        for (average, window) in [
            (&mut self.one, 60.0),
            (&mut self.five, 300.0),
            (&mut self.fifteen, 900.0),
        ] {
            let exponent = (-seconds / window).exp();
            *average = per_minute + exponent * (*average - per_minute);
        }
    }
}

/// The load averages the `$SYS` tree and the admin API show, for the broker or one shard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Load {
    /// Client publications received.
    pub messages_received: LoadAverage,
    /// Deliveries to subscribers.
    pub messages_sent: LoadAverage,
    /// Bytes read from clients.
    pub bytes_received: LoadAverage,
    /// Bytes written to clients.
    pub bytes_sent: LoadAverage,
    /// Connections accepted.
    pub connections: LoadAverage,
}

impl Load {
    /// Folds in the change from `before` to `after` over `seconds`.
    pub fn update(&mut self, before: &Snapshot, after: &Snapshot, seconds: f64) {
        let delta = |a: u64, b: u64| b.saturating_sub(a);
        self.messages_received.update(
            delta(before.messages_received, after.messages_received),
            seconds,
        );
        self.messages_sent.update(
            delta(before.messages_delivered, after.messages_delivered),
            seconds,
        );
        self.bytes_received
            .update(delta(before.bytes_received, after.bytes_received), seconds);
        self.bytes_sent
            .update(delta(before.bytes_sent, after.bytes_sent), seconds);
        self.connections.update(
            delta(before.connections_total, after.connections_total),
            seconds,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_count_retained_once() {
        let shard = Snapshot {
            retained: 5,
            messages_received: 10,
            connections: 2,
            ..Snapshot::default()
        };
        let figures = Figures::new(vec![shard, shard]);
        assert_eq!(figures.total.retained, 5);
        assert_eq!(figures.total.connections, 4);
        assert_eq!(figures.total.messages_received, 20);
    }

    #[test]
    fn shards_as_json() {
        let shard = Snapshot {
            messages_received: 20,
            ..Snapshot::default()
        };
        let shards = Figures::new(vec![Snapshot::default(), shard]).shards_json();
        assert_eq!(shards[1]["shard"], 1);
        assert_eq!(shards[1]["messages_received"], 20);
        assert_eq!(shards[0]["messages_received"], 0);
        assert_eq!(shards[0].len(), shard.figures().len() + 1);
    }

    #[test]
    fn load_average_converges_like_mosquitto() {
        let mut load = LoadAverage::default();
        load.update(60, 60.0);
        // One minute at 60/min: the 1-minute average covers 1 - e^-1 of the way.
        assert!((load.one - 60.0 * (1.0 - (-1.0f64).exp())).abs() < 1e-9);
        assert!(load.five < load.one && load.fifteen < load.five);
        for _ in 0..100 {
            load.update(10, 10.0);
        }
        assert!((load.one - 60.0).abs() < 1e-3);
        load.update(0, 0.0);
        assert!((load.one - 60.0).abs() < 1e-3);
    }
}
