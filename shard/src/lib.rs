//! `shardmq-shard`: one core's engine.
#![warn(missing_docs)]
