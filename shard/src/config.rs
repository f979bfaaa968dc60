//! Settings a shard runs with, resolved from the broker's configuration before start-up.

use std::net::SocketAddr;
use std::time::Duration;

use crate::session::SessionLimits;

/// Everything a shard needs to know; shared read-only by all shards.
#[derive(Clone, Debug)]
pub struct ShardConfig {
    /// TCP listeners every shard binds with `SO_REUSEPORT` (ports already resolved, never 0).
    pub listen: Vec<SocketAddr>,
    /// Number of shards.
    pub shards: usize,
    /// Largest packet accepted from a client, fixed header included.
    pub max_packet_size: usize,
    /// A connection that sends no CONNECT within this time is closed.
    pub connect_timeout: Duration,
    /// Most connections the whole broker holds; more are refused at accept.
    pub max_connections: usize,
    /// Per-session limits.
    pub session: SessionLimits,
    /// Capacity of each inter-shard ring, in messages.
    pub mesh_capacity: usize,
    /// Time allowed for closing connections at shutdown.
    pub shutdown_grace: Duration,
    /// Topics tracked per shard per interval for hot-topic statistics; 0 disables them.
    pub hot_topics_max: usize,
}

impl Default for ShardConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            shards: 1,
            max_packet_size: shardmq_codec::DEFAULT_MAX_PACKET_SIZE,
            connect_timeout: Duration::from_secs(10),
            max_connections: 1_000_000,
            session: SessionLimits::default(),
            mesh_capacity: 4096,
            shutdown_grace: Duration::from_secs(3),
            hot_topics_max: 10_000,
        }
    }
}
