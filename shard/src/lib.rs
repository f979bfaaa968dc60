//! `shardmq-shard`: one core's engine.
//!
//! The pure parts know nothing of sockets or clocks: the subscription [`trie`], the [`retained`]
//! index, the per-client [`session`] state machine, the per-session [`acl`] matcher, the client-id
//! [`registry`] and the [`mesh`] messages. Three modules touch glommio: [`broker`] (one shard's
//! state and the inter-shard protocols), [`connection`] (the socket driver) and [`runtime`]
//! (start-up, listeners, shutdown).
#![warn(missing_docs)]

pub mod acl;
pub mod broker;
pub mod config;
pub mod connection;
pub mod control;
pub mod hot_topics;
pub mod mesh;
pub mod registry;
pub mod retained;
pub mod runtime;
pub mod session;
pub mod stats;
pub mod sync;
pub mod trie;

pub use config::ShardConfig;
pub use control::BrokerHandle;
pub use runtime::Broker;
pub use session::SessionLimits;
