//! `shardmq-shard`: one core's engine.
//!
//! The pure parts — the subscription [`trie`], the [`retained`] index, the per-session [`acl`]
//! matcher — know nothing of sockets or clocks. The connection driver is the one module that
//! touches glommio.
#![warn(missing_docs)]

pub mod acl;
pub mod retained;
pub mod trie;
