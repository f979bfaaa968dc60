//! Where the shards' hot-topic counts go: every destination is a [`TopicSink`]. The live table
//! behind the admin API and `$SYS/broker/topics/hot` ([`Shared`]) is one; with Redis configured,
//! [`super::hot_redis::RedisTopics`] (pipelined INCRBY/ZINCRBY once a second) is another. Sinks
//! run on the monitor thread, never on a shard.

use std::sync::Arc;

use shardmq_shard::hot_topics::TopicCounts;

use crate::status::Shared;

/// Where the monitor sends the shards' hot-topic counts.
pub trait TopicSink: Send {
    /// Takes one shard's counts for one interval.
    fn add(&mut self, counts: &TopicCounts);

    /// Ends one monitor tick: a batching sink writes what it gathered.
    fn flush(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

impl TopicSink for Arc<Shared> {
    fn add(&mut self, counts: &TopicCounts) {
        self.add_topic_counts(counts);
    }
}
