//! Hot-topic totals in Redis: the [`TopicSink`] used when `[redis] url` is set, so that every
//! broker sharing the Redis adds to one ranking.
//!
//! The monitor adds each shard's per-second counts to a pending batch, and once a second writes
//! the whole batch in one pipelined `MULTI`/`EXEC` round trip: never one round trip per message
//! or per topic. Keys (all under `shardmq:`):
//!
//! | key | type | content |
//! | --- | --- | --- |
//! | `shardmq:hot:publishes` | sorted set | topic → publications (ZINCRBY) |
//! | `shardmq:hot:subscribers` | sorted set | filter → subscribers (ZINCRBY with ±1 changes) |
//! | `shardmq:topic:publishes:<topic>` | string | publications to the topic (INCRBY) |
//! | `shardmq:topic:subscribers:<filter>` | string | subscribers of the filter (INCRBY/DECRBY) |
//! | `shardmq:hot:untracked` | string | publications over the shards' tracking bound (INCRBY) |
//!
//! While Redis is unreachable the batch keeps growing, bounded like the shards' maps (topics
//! beyond the bound only add to `untracked`), and reconnection is tried with a back-off, so a
//! Redis outage costs the monitor at most one connect timeout per attempt and the shards nothing.
//! A batch whose `EXEC` reply is lost with the connection is sent again: counts are at least once.

use std::time::{Duration, Instant};

use anyhow::Context;
use shardmq_shard::hot_topics::TopicCounts;

use super::hot::TopicSink;
use crate::status::hot::{FilterRank, Ranking, TopicFilter, TopicRank};

/// Sorted set of topics by publications.
pub const PUBLISHES: &str = "shardmq:hot:publishes";
/// Sorted set of filters by subscribers.
pub const SUBSCRIBERS: &str = "shardmq:hot:subscribers";
/// Publications counted under no topic.
pub const UNTRACKED: &str = "shardmq:hot:untracked";

/// Time allowed to connect, and for each reply.
const IO_TIMEOUT: Duration = Duration::from_secs(1);

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The Redis sink; see the module doc.
pub struct RedisTopics {
    client: redis::Client,
    connection: Option<redis::Connection>,
    filter: TopicFilter,
    capacity: usize,
    publishes: hashbrown::HashMap<String, u64>,
    subscribers: hashbrown::HashMap<String, i64>,
    untracked: u64,
    backoff: Duration,
    retry_at: Instant,
}

impl std::fmt::Debug for RedisTopics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTopics")
            .field("server", &self.client.get_connection_info().addr())
            .field("pending", &(self.publishes.len() + self.subscribers.len()))
            .finish()
    }
}

impl RedisTopics {
    /// A sink writing to the Redis at `url`, keeping at most `capacity` topics (and as many
    /// filters) pending. Connects on the first flush.
    pub fn new(url: &str, capacity: usize, filter: TopicFilter) -> anyhow::Result<RedisTopics> {
        Ok(RedisTopics {
            client: redis::Client::open(url).context("invalid Redis URL ([redis] url)")?,
            connection: None,
            filter,
            capacity: capacity.max(1),
            publishes: hashbrown::HashMap::new(),
            subscribers: hashbrown::HashMap::new(),
            untracked: 0,
            backoff: Duration::from_secs(1),
            retry_at: Instant::now(),
        })
    }

    fn is_empty(&self) -> bool {
        self.publishes.is_empty() && self.subscribers.is_empty() && self.untracked == 0
    }

    fn write(&mut self) -> anyhow::Result<()> {
        if self.connection.is_none() {
            let connection = self
                .client
                .get_connection_with_timeout(IO_TIMEOUT)
                .context("connecting to Redis for hot topics")?;
            connection.set_read_timeout(Some(IO_TIMEOUT))?;
            connection.set_write_timeout(Some(IO_TIMEOUT))?;
            self.connection = Some(connection);
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (topic, n) in &self.publishes {
            pipe.cmd("ZINCRBY")
                .arg(PUBLISHES)
                .arg(*n)
                .arg(topic)
                .ignore();
            pipe.cmd("INCRBY")
                .arg(format!("shardmq:topic:publishes:{topic}"))
                .arg(*n)
                .ignore();
        }
        for (filter, delta) in &self.subscribers {
            pipe.cmd("ZINCRBY")
                .arg(SUBSCRIBERS)
                .arg(*delta)
                .arg(filter)
                .ignore();
            pipe.cmd("INCRBY")
                .arg(format!("shardmq:topic:subscribers:{filter}"))
                .arg(*delta)
                .ignore();
        }
        if !self.subscribers.is_empty() {
            // Filters nobody subscribes to any more leave the ranking.
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(SUBSCRIBERS)
                .arg("-inf")
                .arg(0)
                .ignore();
        }
        if self.untracked > 0 {
            pipe.cmd("INCRBY")
                .arg(UNTRACKED)
                .arg(self.untracked)
                .ignore();
        }
        let Some(connection) = self.connection.as_mut() else {
            return Ok(());
        };
        pipe.query::<()>(connection)
            .context("writing hot-topic counts to Redis")
    }
}

impl TopicSink for RedisTopics {
    fn add(&mut self, counts: &TopicCounts) {
        self.untracked += counts.untracked;
        for (topic, n) in &counts.publishes {
            if !self.filter.topic(topic) {
                continue;
            }
            if let Some(total) = self.publishes.get_mut(topic.as_str()) {
                *total += n;
            } else if self.publishes.len() < self.capacity {
                self.publishes.insert(topic.clone(), *n);
            } else {
                self.untracked += n;
            }
        }
        for (filter, delta) in &counts.subscribers {
            if !self.filter.filter(filter) {
                continue;
            }
            if let Some(total) = self.subscribers.get_mut(filter.as_str()) {
                *total += delta;
            } else if self.subscribers.len() < self.capacity {
                self.subscribers.insert(filter.clone(), *delta);
            }
        }
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if self.is_empty() || Instant::now() < self.retry_at {
            return Ok(());
        }
        match self.write() {
            Ok(()) => {
                self.publishes.clear();
                self.subscribers.clear();
                self.untracked = 0;
                self.backoff = Duration::from_secs(1);
                Ok(())
            }
            Err(err) => {
                self.connection = None;
                self.retry_at = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                Err(err)
            }
        }
    }
}

/// Reads the `top` topics and filters from Redis (the `hot-topics --redis` command).
pub fn ranking(url: &str, top: usize) -> anyhow::Result<Ranking> {
    if top == 0 {
        return Ok(Ranking::default());
    }
    let client = redis::Client::open(url).context("invalid Redis URL")?;
    let mut connection = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .context("connecting to Redis")?;
    let last = isize::try_from(top).unwrap_or(isize::MAX) - 1;
    type Scored = Vec<(String, f64)>;
    let (topics, filters, untracked): (Scored, Scored, Option<u64>) = redis::pipe()
        .cmd("ZREVRANGE")
        .arg(PUBLISHES)
        .arg(0)
        .arg(last)
        .arg("WITHSCORES")
        .cmd("ZREVRANGEBYSCORE")
        .arg(SUBSCRIBERS)
        .arg("+inf")
        .arg("(0")
        .arg("WITHSCORES")
        .arg("LIMIT")
        .arg(0)
        .arg(top)
        .cmd("GET")
        .arg(UNTRACKED)
        .query(&mut connection)
        .context("reading the hot-topic ranking from Redis")?;
    Ok(Ranking {
        topics: topics
            .into_iter()
            .map(|(topic, n)| TopicRank {
                topic,
                publishes: n as u64,
            })
            .collect(),
        filters: filters
            .into_iter()
            .map(|(filter, n)| FilterRank {
                filter,
                subscribers: n as i64,
            })
            .collect(),
        untracked: untracked.unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_bounded_and_kept_while_redis_is_down() {
        // Port 1 on loopback: nothing listens, so every flush fails fast.
        let mut sink = RedisTopics::new("redis://127.0.0.1:1/", 2, TopicFilter::default()).unwrap();
        let counts = TopicCounts {
            publishes: vec![("a".into(), 2), ("b".into(), 1), ("c".into(), 5)],
            subscribers: vec![("f/#".into(), 1)],
            untracked: 1,
        };
        sink.add(&counts);
        sink.add(&counts);
        assert!(sink.flush().is_err());
        assert_eq!(sink.publishes.len(), 2);
        assert_eq!(sink.publishes["a"], 4);
        assert_eq!(sink.untracked, 2 + 10);
        assert_eq!(sink.subscribers["f/#"], 2);
        // Within the back-off nothing is attempted, and nothing is lost.
        assert!(sink.flush().is_ok());
        assert_eq!(sink.publishes["b"], 2);
    }
}
