//! One row of the status history: what the monitor appends to Postgres every
//! `monitor.interval` and `shardmq status` prints back. The table's schema and the SQL stay with
//! the writer (`crate::monitor::history`); the row is here because both sides read it.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::figures::Figures;
use super::system::SystemRates;

/// One status row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatusRow {
    /// When the row was taken, in seconds since the Unix epoch.
    pub time: f64,
    /// Clients connected.
    pub clients: i64,
    /// Persistent sessions without a connection.
    pub sessions_offline: i64,
    /// Subscriptions.
    pub subscriptions: i64,
    /// Retained messages.
    pub retained: i64,
    /// Client publications received per second over the interval.
    pub messages_in_per_second: f64,
    /// Deliveries per second.
    pub messages_out_per_second: f64,
    /// Bytes read from clients per second.
    pub bytes_in_per_second: f64,
    /// Bytes written to clients per second.
    pub bytes_out_per_second: f64,
    /// Messages dropped during the interval, for any reason.
    pub dropped: i64,
    /// Host CPU busy over the interval, percent.
    pub cpu_percent: f64,
    /// Host memory in use, bytes.
    pub memory_used: i64,
    /// Host memory, bytes.
    pub memory_total: i64,
    /// Free space of the data directory's file system, bytes.
    pub disk_free: i64,
    /// Host bytes received per second (every interface but loopback).
    pub network_in_per_second: f64,
    /// Host bytes sent per second.
    pub network_out_per_second: f64,
    /// Per-shard figures: a JSON array of objects, one per shard.
    pub shards: String,
}

impl StatusRow {
    /// The row for the `seconds` from `before` to `after`, with the host's figures over the same
    /// interval, taken now.
    pub fn between(
        before: &Figures,
        after: &Figures,
        seconds: f64,
        system: &SystemRates,
    ) -> StatusRow {
        let per_second = |a: u64, b: u64| {
            if seconds > 0.0 {
                b.saturating_sub(a) as f64 / seconds
            } else {
                0.0
            }
        };
        let (b, a) = (&before.total, &after.total);
        let shards: Vec<Value> = after.shards_json().into_iter().map(Value::Object).collect();
        let signed = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        StatusRow {
            time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            clients: signed(a.connections),
            sessions_offline: signed(a.sessions_offline),
            subscriptions: signed(a.subscriptions),
            retained: signed(a.retained),
            messages_in_per_second: per_second(b.messages_received, a.messages_received),
            messages_out_per_second: per_second(b.messages_delivered, a.messages_delivered),
            bytes_in_per_second: per_second(b.bytes_received, a.bytes_received),
            bytes_out_per_second: per_second(b.bytes_sent, a.bytes_sent),
            dropped: signed(Figures::dropped(a).saturating_sub(Figures::dropped(b))),
            cpu_percent: system.cpu_percent,
            memory_used: signed(system.memory.used),
            memory_total: signed(system.memory.total),
            disk_free: signed(system.disk.free),
            network_in_per_second: system.network_received_per_second,
            network_out_per_second: system.network_sent_per_second,
            shards: Value::Array(shards).to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use shardmq_shard::stats::Snapshot;

    use super::*;

    #[test]
    fn status_row_rates_and_shards() {
        let before = Figures::new(vec![Snapshot::default()]);
        let after = Figures::new(vec![Snapshot {
            connections: 3,
            messages_received: 20,
            dropped_slow: 4,
            ..Snapshot::default()
        }]);
        let row = StatusRow::between(&before, &after, 2.0, &SystemRates::default());
        assert_eq!(row.clients, 3);
        assert_eq!(row.messages_in_per_second, 10.0);
        assert_eq!(row.dropped, 4);
        let shards: serde_json::Value = serde_json::from_str(&row.shards).unwrap();
        assert_eq!(shards[0]["shard"], 0);
        assert_eq!(shards[0]["messages_received"], 20);
    }
}
