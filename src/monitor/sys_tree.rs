//! The `$SYS` topic tree: which topics the monitor publishes and what they carry.
//!
//! Names follow Mosquitto where it has one (`$SYS/broker/clients/connected`,
//! `$SYS/broker/load/messages/received/1min`...), so existing dashboards work; shardmq's own
//! figures sit beside them: `$SYS/broker/dropped/<reason>`, `$SYS/broker/shard/<n>/<figure>` for
//! every figure a shard publishes (names as in `shardmq_shard::stats`), `$SYS/broker/topics/hot`
//! and `$SYS/system/...` for the host. Payloads are plain text: integers, and two decimals for
//! rates, as Mosquitto prints them.
//!
//! [`SysTree`] remembers what it last published and publishes only topics whose payload changed
//! (every topic the first time): the messages are retained, so a subscriber arriving later still
//! sees every value, and an idle broker sends next to nothing.

use std::collections::HashMap;

use shardmq_shard::stats::Snapshot;

use crate::status::figures::{Figures, Load, LoadAverage};
use crate::status::hot::Ranking;
use crate::status::system::SystemRates;

/// Everything one `$SYS` publication shows.
pub struct SysInput<'a> {
    /// Seconds since the broker started.
    pub uptime: u64,
    /// Shard and broker figures.
    pub figures: &'a Figures,
    /// Most clients connected at once since start.
    pub clients_maximum: u64,
    /// Broker load averages.
    pub load: &'a Load,
    /// Per-shard load averages.
    pub shard_load: &'a [Load],
    /// Hot topics.
    pub hot: &'a Ranking,
    /// Host figures since the last publication.
    pub system: &'a SystemRates,
}

/// The `$SYS` topics with their payloads.
pub fn topics(input: &SysInput<'_>) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(64 + input.figures.shards.len() * 32);
    let mut put = |topic: String, value: String| out.push((topic, value));
    let total = &input.figures.total;
    let broker = |name: &str| format!("$SYS/broker/{name}");
    put(
        broker("version"),
        format!("shardmq version {}", env!("CARGO_PKG_VERSION")),
    );
    put(broker("uptime"), format!("{} seconds", input.uptime));
    put(broker("clients/connected"), total.connections.to_string());
    put(
        broker("clients/disconnected"),
        total.sessions_offline.to_string(),
    );
    put(
        broker("clients/total"),
        (total.connections + total.sessions_offline).to_string(),
    );
    put(broker("clients/maximum"), input.clients_maximum.to_string());
    put(
        broker("messages/received"),
        total.messages_received.to_string(),
    );
    put(
        broker("messages/sent"),
        total.messages_delivered.to_string(),
    );
    put(broker("messages/stored"), total.retained.to_string());
    put(broker("bytes/received"), total.bytes_received.to_string());
    put(broker("bytes/sent"), total.bytes_sent.to_string());
    put(
        broker("subscriptions/count"),
        total.subscriptions.to_string(),
    );
    put(
        broker("retained messages/count"),
        total.retained.to_string(),
    );
    for (name, value) in [
        ("slow", total.dropped_slow),
        ("queue_full", total.dropped_queue_full),
        ("denied", total.dropped_denied),
        ("mesh", total.mesh_dropped),
        ("total", Figures::dropped(total)),
    ] {
        put(broker(&format!("dropped/{name}")), value.to_string());
    }
    load_topics(&broker("load"), input.load, &mut put);
    for (shard, figures) in input.figures.shards.iter().enumerate() {
        let prefix = broker(&format!("shard/{shard}"));
        shard_topics(&prefix, figures, &mut put);
        if let Some(load) = input.shard_load.get(shard) {
            load_topics(&format!("{prefix}/load"), load, &mut put);
        }
    }
    put(
        broker("topics/hot"),
        serde_json::to_string(&input.hot.topics).unwrap_or_default(),
    );

    let system = input.system;
    let host = |name: &str| format!("$SYS/system/{name}");
    put(host("cpu/percent"), format!("{:.2}", system.cpu_percent));
    put(host("load/1min"), format!("{:.2}", system.load_1min));
    put(host("memory/used"), system.memory.used.to_string());
    put(host("memory/total"), system.memory.total.to_string());
    put(host("disk/free"), system.disk.free.to_string());
    put(host("disk/total"), system.disk.total.to_string());
    put(
        host("network/received"),
        format!("{:.2}", system.network_received_per_second),
    );
    put(
        host("network/sent"),
        format!("{:.2}", system.network_sent_per_second),
    );
    for interface in &system.interfaces {
        let name = interface.name.replace(['/', '+', '#'], "_");
        put(
            host(&format!("network/interface/{name}/received")),
            format!("{:.2}", interface.received_per_second),
        );
        put(
            host(&format!("network/interface/{name}/sent")),
            format!("{:.2}", interface.sent_per_second),
        );
    }
    out
}

fn shard_topics(prefix: &str, figures: &Snapshot, put: &mut impl FnMut(String, String)) {
    for (name, _, value, _) in figures.figures() {
        put(format!("{prefix}/{name}"), value.to_string());
    }
}

fn load_topics(prefix: &str, load: &Load, put: &mut impl FnMut(String, String)) {
    let series: [(&str, &LoadAverage); 5] = [
        ("messages/received", &load.messages_received),
        ("messages/sent", &load.messages_sent),
        ("bytes/received", &load.bytes_received),
        ("bytes/sent", &load.bytes_sent),
        ("connections", &load.connections),
    ];
    for (name, average) in series {
        for (window, value) in [
            ("1min", average.one),
            ("5min", average.five),
            ("15min", average.fifteen),
        ] {
            put(format!("{prefix}/{name}/{window}"), format!("{value:.2}"));
        }
    }
}

/// The last payload published per topic; see the module doc.
#[derive(Debug, Default)]
pub struct SysTree {
    published: HashMap<String, String>,
}

impl SysTree {
    /// The topics of `current` whose payload differs from what was last published.
    pub fn changed(&self, current: Vec<(String, String)>) -> Vec<(String, String)> {
        current
            .into_iter()
            .filter(|(topic, payload)| self.published.get(topic) != Some(payload))
            .collect()
    }

    /// Records that `topic` now carries `payload`.
    pub fn mark_published(&mut self, topic: String, payload: String) {
        self.published.insert(topic, payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input_topics(figures: &Figures) -> Vec<(String, String)> {
        let load = Load::default();
        topics(&SysInput {
            uptime: 7,
            figures,
            clients_maximum: 3,
            load: &load,
            shard_load: &[load, load],
            hot: &Ranking::default(),
            system: &SystemRates::default(),
        })
    }

    #[test]
    fn mosquitto_names_and_shard_figures() {
        let shard = Snapshot {
            connections: 2,
            sessions_offline: 1,
            messages_received: 5,
            ..Snapshot::default()
        };
        let figures = Figures::new(vec![shard, shard]);
        let topics: HashMap<String, String> = input_topics(&figures).into_iter().collect();
        assert_eq!(topics["$SYS/broker/uptime"], "7 seconds");
        assert_eq!(topics["$SYS/broker/clients/connected"], "4");
        assert_eq!(topics["$SYS/broker/clients/disconnected"], "2");
        assert_eq!(topics["$SYS/broker/clients/total"], "6");
        assert_eq!(topics["$SYS/broker/messages/received"], "10");
        assert_eq!(topics["$SYS/broker/shard/1/messages_received"], "5");
        assert_eq!(topics["$SYS/broker/load/messages/received/15min"], "0.00");
        assert_eq!(topics["$SYS/broker/topics/hot"], "[]");
        assert!(topics.contains_key("$SYS/system/cpu/percent"));
        for topic in topics.keys() {
            assert!(shardmq_codec::topic::valid_name(topic), "{topic}");
        }
    }

    #[test]
    fn publishes_only_changes() {
        let figures = Figures::default();
        let mut tree = SysTree::default();
        let first = tree.changed(input_topics(&figures));
        assert!(!first.is_empty());
        for (topic, payload) in first {
            tree.mark_published(topic, payload);
        }
        assert!(tree.changed(input_topics(&figures)).is_empty());
    }
}
