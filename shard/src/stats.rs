//! Counters of one shard. Plain `Cell`s: only the owning shard writes them, and the monitor
//! reads a snapshot the shard takes itself, so the hot path pays no atomic operation.

use std::cell::Cell;

/// Counters of one shard since start.
#[derive(Debug, Default)]
#[allow(missing_docs)]
pub struct Stats {
    pub connections: Cell<u64>,
    pub connections_total: Cell<u64>,
    pub connections_refused: Cell<u64>,
    pub accept_errors: Cell<u64>,
    pub fd_exhausted: Cell<u64>,
    pub protocol_errors: Cell<u64>,
    pub connect_timeouts: Cell<u64>,
    pub keepalive_timeouts: Cell<u64>,
    pub takeovers: Cell<u64>,
    pub subscriptions: Cell<u64>,
    pub messages_received: Cell<u64>,
    pub messages_delivered: Cell<u64>,
    pub bytes_received: Cell<u64>,
    pub bytes_sent: Cell<u64>,
    pub dropped_slow: Cell<u64>,
    pub dropped_queue_full: Cell<u64>,
    pub mesh_dropped: Cell<u64>,
    pub wills_published: Cell<u64>,
}

impl Stats {
    /// A PUBLISH was accepted for routing.
    pub fn publish_received(&self) {
        self.messages_received.set(self.messages_received.get() + 1);
    }

    /// `n` deliveries were queued to subscribers.
    pub fn add_delivered(&self, n: u64) {
        self.messages_delivered.set(self.messages_delivered.get() + n);
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &Cell<u64>, n: u64) {
        counter.set(counter.get() + n);
    }
}
