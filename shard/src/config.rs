//! Settings a shard runs with, resolved from the broker's configuration before start-up.

use std::net::SocketAddr;
use std::time::Duration;

use crate::session::SessionLimits;
use crate::shared::Strategies;

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
    /// What one client may hold or ask for.
    pub limits: Limits,
    /// How each shared subscription group picks its member.
    pub shared: Strategies,
}

/// Bounds on what one client (or one address) may make the broker hold. Each is counted in the
/// shard figures (`limit_*`, `write_timeouts`, `sessions_expired`) when it bites.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest first packet (CONNECT) accepted before the client is authenticated.
    pub max_connect_size: usize,
    /// Connections from one address that may be between accept and CONNACK on one shard.
    pub max_connecting_per_address: usize,
    /// A socket that takes no bytes for this long is closed (a peer that never reads).
    pub write_timeout: Duration,
    /// Largest keep-alive granted, in seconds; a client asking for 0 (none) or more gets this
    /// (MQTT 5: Server Keep Alive in the CONNACK).
    pub max_keepalive: u16,
    /// Subscriptions one session may hold.
    pub max_subscriptions: usize,
    /// Topic filters one SUBSCRIBE may carry; the rest are refused.
    pub max_subscribe_filters: usize,
    /// Retained messages the broker stores.
    pub max_retained_messages: usize,
    /// Total payload bytes of retained messages.
    pub max_retained_bytes: usize,
    /// Persistent sessions without a connection the broker keeps; beyond it a disconnecting
    /// persistent session is discarded.
    pub max_offline_sessions: usize,
    /// An offline persistent session of an MQTT 3.x client ends after this long (Mosquitto's
    /// `persistent_client_expiration`); `None` keeps it.
    pub persistent_client_expiration: Option<Duration>,
    /// Longest MQTT 5 Session Expiry Interval granted, in seconds (0xFFFFFFFF, never ending, is
    /// granted only when this is 0xFFFFFFFF too) [MQTT-3.2.2-3: the CONNACK says what was granted].
    pub max_session_expiry: u32,
    /// Longest topic name or filter, in bytes.
    pub max_topic_length: usize,
    /// Most levels in a topic name or filter.
    pub max_topic_levels: usize,
    /// Longest client id.
    pub max_client_id_length: usize,
    /// Longest user name.
    pub max_username_length: usize,
    /// MQTT 5 topic aliases a client may set towards the broker.
    pub max_topic_aliases: u16,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connect_size: 64 * 1024,
            max_connecting_per_address: 256,
            write_timeout: Duration::from_secs(30),
            max_keepalive: 65_535,
            max_subscriptions: 10_000,
            max_subscribe_filters: 256,
            max_retained_messages: 1_000_000,
            max_retained_bytes: 1 << 30,
            max_offline_sessions: 1_000_000,
            persistent_client_expiration: None,
            max_session_expiry: u32::MAX,
            max_topic_length: 4096,
            max_topic_levels: 128,
            max_client_id_length: 256,
            max_username_length: 256,
            max_topic_aliases: 64,
        }
    }
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
            limits: Limits::default(),
            shared: Strategies::default(),
        }
    }
}
