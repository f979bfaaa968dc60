//! Counters of one shard.
//!
//! The owning shard counts in plain `Cell`s, so the hot path pays no atomic operation. A few
//! times a second it copies them into its [`Published`] slot (atomics on their own cache line),
//! where the monitor and the admin API read them from other threads.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Whether a figure only grows (a counter) or goes up and down (a gauge).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Kind {
    /// Monotonic since start.
    Counter,
    /// Current level.
    Gauge,
}

macro_rules! figures {
    ($($kind:ident $name:ident: $doc:literal,)*) => {
        /// Figures of one shard, written only by that shard.
        #[derive(Debug, Default)]
        pub struct Stats {
            $(#[doc = $doc] pub $name: Cell<u64>,)*
        }

        /// A copy of one shard's figures at one moment.
        #[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
        pub struct Snapshot {
            $(#[doc = $doc] pub $name: u64,)*
        }

        /// One shard's figures as last published, readable from any thread.
        #[derive(Debug, Default)]
        pub struct Published {
            $($name: AtomicU64,)*
        }

        impl Stats {
            /// The current values.
            pub fn snapshot(&self) -> Snapshot {
                Snapshot { $($name: self.$name.get(),)* }
            }
        }

        impl Published {
            /// Publishes a snapshot (called by the owning shard).
            pub fn store(&self, snapshot: &Snapshot) {
                $(self.$name.store(snapshot.$name, Ordering::Relaxed);)*
            }

            /// The last published snapshot.
            pub fn load(&self) -> Snapshot {
                Snapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        impl Snapshot {
            /// Every figure: name, kind, value, and what it means.
            pub fn figures(&self) -> Vec<(&'static str, Kind, u64, &'static str)> {
                vec![$((stringify!($name), Kind::$kind, self.$name, $doc),)*]
            }

            /// The sum of two snapshots (totals over shards).
            pub fn sum(&self, other: &Snapshot) -> Snapshot {
                Snapshot { $($name: self.$name + other.$name,)* }
            }
        }
    };
}

figures! {
    Gauge connections: "Clients connected now.",
    Gauge sessions_offline: "Persistent sessions without a connection.",
    Gauge subscriptions: "Subscriptions held by this shard's clients.",
    Gauge retained: "Retained messages in this shard's index.",
    Counter connections_total: "Connections accepted since start.",
    Counter connections_refused: "Connections refused at accept (max_connections).",
    Counter accept_errors: "Accept failures other than descriptor exhaustion.",
    Counter fd_exhausted: "Accept failures for lack of file descriptors (EMFILE/ENFILE).",
    Counter protocol_errors: "Connections closed for malformed packets or protocol violations.",
    Counter connect_timeouts: "Connections closed for sending no CONNECT in time.",
    Counter keepalive_timeouts: "Connections closed for keep-alive expiry.",
    Counter takeovers: "Sessions taken over by a new connection with the same client id.",
    Counter messages_received: "PUBLISH packets accepted from clients (and wills).",
    Counter messages_delivered: "Deliveries queued to subscribers.",
    Counter bytes_received: "Bytes read from clients.",
    Counter bytes_sent: "Bytes written to clients.",
    Counter dropped_slow: "QoS 0 messages dropped because the subscriber could not keep up.",
    Counter dropped_queue_full: "Messages dropped because a session queue was full.",
    Counter dropped_too_large: "Messages discarded for a subscriber because the PUBLISH exceeded its MQTT 5 Maximum Packet Size.",
    Counter dropped_no_member: "Messages for a shared subscription group that had no member left to take them.",
    Counter shared_returned: "Messages a shared subscription member gave back (it disconnected or its session ended) for its group to deliver again.",
    Counter dropped_denied: "Publications refused by the ACL.",
    Counter mesh_dropped: "Inter-shard messages dropped because a ring was closed.",
    Counter wills_published: "Will messages published.",
    Counter write_timeouts: "Connections closed because the socket took no bytes within write_timeout.",
    Counter peer_timeouts: "Connections closed because another shard did not answer in time.",
    Counter sessions_expired: "Offline persistent sessions ended by their MQTT 5 Session Expiry Interval or persistent_client_expiration.",
    Counter messages_expired: "Messages dropped (queued, or retained) because their MQTT 5 Message Expiry Interval passed before delivery.",
    Counter sessions_purged: "Offline persistent sessions removed through the admin API.",
    Counter limit_connect_size: "CONNECTs refused for exceeding max_connect_size.",
    Counter limit_connecting_per_address: "Connections closed at accept: too many from one address still connecting.",
    Counter limit_identifier: "CONNECTs refused for a client id or user name over its maximum length.",
    Counter limit_subscriptions: "Subscriptions refused by max_subscriptions or max_subscribe_filters.",
    Counter limit_topic: "Publications and filters refused for exceeding max_topic_length or max_topic_levels.",
    Counter limit_retained: "Retained publications refused by max_retained_messages or max_retained_bytes.",
    Counter limit_offline_sessions: "Persistent sessions discarded at disconnect by max_offline_sessions.",
    Counter limit_outbox: "Times a client that does not read was paused until its outbox drained.",
}

impl Stats {
    /// Adds `n` to a counter.
    pub fn add(counter: &Cell<u64>, n: u64) {
        counter.set(counter.get() + n);
    }

    /// Subtracts `n` from a gauge.
    pub fn sub(gauge: &Cell<u64>, n: u64) {
        gauge.set(gauge.get().saturating_sub(n));
    }

    /// A PUBLISH was accepted for routing.
    pub fn publish_received(&self) {
        Self::add(&self.messages_received, 1);
    }

    /// `n` deliveries were queued to subscribers.
    pub fn add_delivered(&self, n: u64) {
        Self::add(&self.messages_delivered, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_and_sum() {
        let stats = Stats::default();
        stats.publish_received();
        stats.add_delivered(3);
        Stats::sub(&stats.connections, 1);
        let published = Published::default();
        published.store(&stats.snapshot());
        let snapshot = published.load();
        assert_eq!(
            (
                snapshot.messages_received,
                snapshot.messages_delivered,
                snapshot.connections
            ),
            (1, 3, 0)
        );
        let total = snapshot.sum(&snapshot);
        assert_eq!(total.messages_delivered, 6);
        let figures = total.figures();
        assert!(figures
            .iter()
            .any(|(name, kind, value, _)| *name == "messages_delivered"
                && *kind == Kind::Counter
                && *value == 6));
    }
}
