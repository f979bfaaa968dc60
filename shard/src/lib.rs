//! `shardmq-shard`: one core's engine.
//!
//! Pure parts, which know nothing of sockets, tasks or clocks (inputs are method calls, outputs
//! are returned or drained): the [`router`] (one shard's clients, subscriptions, routes and
//! retained messages, and the inter-shard protocols), the client-id [`takeover`] state machine,
//! the per-client [`session`] state machine, [`shared`] subscription groups, the subscription [`trie`], the [`retained`] index,
//! the per-session [`acl`] matcher, the connection [`deadline`]s and the [`mesh`] messages.
//!
//! Driver parts, which carry the pure parts' decisions out on glommio: [`shard`] (one shard's
//! executor side: router, rings, sockets), [`connection`] (the task reading one socket),
//! [`writer`] (everything that writes to sockets), [`listen`] (the listening addresses, claimed
//! by one process) and [`broker`] (start-up of every shard, shutdown). [`control`] is the
//! shards' interface to other threads; [`throttle`] keeps repeated log lines to a few.
#![warn(missing_docs)]

pub mod acl;
pub mod broker;
pub mod config;
pub mod connection;
pub mod control;
pub mod deadline;
pub mod hot_topics;
pub mod listen;
pub mod mesh;
pub mod retained;
pub mod router;
pub mod session;
pub mod shard;
pub mod shared;
pub mod stats;
pub mod takeover;
pub mod throttle;
pub mod trie;
pub mod writer;

pub use broker::Broker;
pub use config::ShardConfig;
pub use control::BrokerHandle;
pub use session::SessionLimits;
