//! Hot-topic totals in Redis: the [`TopicSink`] used when `[redis] url` is set, so that every
//! broker sharing the Redis adds to one ranking.
//!
//! The monitor adds each shard's per-second counts to a pending batch, and once a second writes
//! the whole batch in one pipelined `MULTI`/`EXEC` round trip: never one round trip per message
//! or per topic. Keys (all under `shardmq:`):
//!
//! | key | type | content |
//! | --- | --- | --- |
//! | `shardmq:hot:publishes` | sorted set | topic → publications (ZINCRBY), the top `hot_topics_max` |
//! | `shardmq:hot:subscribers` | sorted set | filter → subscribers (ZINCRBY with ±1 changes), the top `hot_topics_max` |
//! | `shardmq:topic:publishes:<topic>` | string | publications to the topic (INCRBY); expires a day after its last change |
//! | `shardmq:topic:subscribers:<filter>` | string | subscribers of the filter (INCRBY/DECRBY); expires a day after its last change |
//! | `shardmq:hot:untracked` | string | publications counted under no ranked topic (INCRBY) |
//!
//! **Bounded key count.** A client publishing to millions of distinct topics must not leave
//! millions of keys behind. So the transaction that writes a batch also trims both sorted sets to
//! their `hot_topics_max` highest members (`ZREMRANGEBYRANK`), reading first, in the same
//! transaction, which members that removes (`ZRANGE` with the same range); filters whose
//! subscribers fell to zero leave as before (`ZREMRANGEBYSCORE`). When anything left, one more
//! transaction right after deletes those members' counters and adds the trimmed topics'
//! publications to `untracked` (if it fails, the next flush carries both), so the ranking plus `untracked` still sums to every publication
//! counted. Deleting the counters cannot share the first transaction (`MULTI` cannot act on its
//! own replies), so a trimmed topic that another broker publishes to between the two loses its
//! earlier count; it had just fallen off the bottom of the ranking. Every counter write also
//! refreshes the counter's expiry ([`COUNTER_TTL`]), so a counter left outside the rankings (the
//! broker stopped between the two transactions) goes away by itself.
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

/// Seconds a per-topic counter lives after its last write.
pub const COUNTER_TTL: u64 = 24 * 60 * 60;

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
    /// Counters of members trimmed from a ranking, to delete.
    stale: Vec<String>,
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
    /// filters) pending and ranked. Connects on the first flush.
    pub fn new(url: &str, capacity: usize, filter: TopicFilter) -> anyhow::Result<RedisTopics> {
        Ok(RedisTopics {
            client: redis::Client::open(url).context("invalid Redis URL ([redis] url)")?,
            connection: None,
            filter,
            capacity: capacity.max(1),
            publishes: hashbrown::HashMap::new(),
            subscribers: hashbrown::HashMap::new(),
            untracked: 0,
            stale: Vec::new(),
            backoff: Duration::from_secs(1),
            retry_at: Instant::now(),
        })
    }

    fn is_empty(&self) -> bool {
        self.publishes.is_empty()
            && self.subscribers.is_empty()
            && self.untracked == 0
            && self.stale.is_empty()
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
        let transaction = self.transaction();
        let Some(connection) = self.connection.as_mut() else {
            return Ok(());
        };
        let (trimmed, emptied, outranked): (Scored, Vec<String>, Vec<String>) = transaction
            .query(connection)
            .context("writing hot-topic counts to Redis")?;
        self.publishes.clear();
        self.subscribers.clear();
        self.untracked = 0;
        self.stale.clear();
        for (topic, publications) in trimmed {
            self.untracked += publications as u64;
            self.stale.push(publishes_key(&topic));
        }
        let filters = emptied.into_iter().chain(outranked);
        self.stale
            .extend(filters.map(|filter| subscribers_key(&filter)));
        Ok(())
    }

    /// The one transaction that writes the pending batch, deletes stale counters and trims the
    /// rankings. Its replies: the topics trimmed with their publications, the filters that fell
    /// to zero subscribers, and the filters trimmed.
    fn transaction(&self) -> redis::Pipeline {
        // Ranks 0 up to this one (counted from the top, -1 being the highest) are all but the
        // `capacity` highest.
        let beyond = -1 - i64::try_from(self.capacity).unwrap_or(i64::MAX - 1);
        let mut pipe = redis::pipe();
        pipe.atomic();
        if !self.stale.is_empty() {
            pipe.cmd("DEL").arg(&self.stale).ignore();
        }
        for (topic, n) in &self.publishes {
            let counter = publishes_key(topic);
            pipe.cmd("ZINCRBY")
                .arg(PUBLISHES)
                .arg(*n)
                .arg(topic)
                .ignore();
            pipe.cmd("INCRBY").arg(&counter).arg(*n).ignore();
            pipe.cmd("EXPIRE").arg(&counter).arg(COUNTER_TTL).ignore();
        }
        for (filter, delta) in &self.subscribers {
            let counter = subscribers_key(filter);
            pipe.cmd("ZINCRBY")
                .arg(SUBSCRIBERS)
                .arg(*delta)
                .arg(filter)
                .ignore();
            pipe.cmd("INCRBY").arg(&counter).arg(*delta).ignore();
            pipe.cmd("EXPIRE").arg(&counter).arg(COUNTER_TTL).ignore();
        }
        if self.untracked > 0 {
            pipe.cmd("INCRBY")
                .arg(UNTRACKED)
                .arg(self.untracked)
                .ignore();
        }
        pipe.cmd("ZRANGE")
            .arg(PUBLISHES)
            .arg(0)
            .arg(beyond)
            .arg("WITHSCORES");
        pipe.cmd("ZREMRANGEBYRANK")
            .arg(PUBLISHES)
            .arg(0)
            .arg(beyond)
            .ignore();
        // Filters nobody subscribes to any more leave the ranking.
        pipe.cmd("ZRANGEBYSCORE")
            .arg(SUBSCRIBERS)
            .arg("-inf")
            .arg(0);
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(SUBSCRIBERS)
            .arg("-inf")
            .arg(0)
            .ignore();
        pipe.cmd("ZRANGE").arg(SUBSCRIBERS).arg(0).arg(beyond);
        pipe.cmd("ZREMRANGEBYRANK")
            .arg(SUBSCRIBERS)
            .arg(0)
            .arg(beyond)
            .ignore();
        pipe
    }
}

/// Members with their scores, as `ZRANGE ... WITHSCORES` replies.
type Scored = Vec<(String, f64)>;

fn publishes_key(topic: &str) -> String {
    format!("shardmq:topic:publishes:{topic}")
}

fn subscribers_key(filter: &str) -> String {
    format!("shardmq:topic:subscribers:{filter}")
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

    /// Writes the batch; when that trimmed a ranking, a second transaction at once deletes the
    /// trimmed members' counters and counts their publications as untracked.
    fn flush(&mut self) -> anyhow::Result<()> {
        for _ in 0..2 {
            if self.is_empty() || Instant::now() < self.retry_at {
                return Ok(());
            }
            if let Err(err) = self.write() {
                self.connection = None;
                self.retry_at = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                return Err(err);
            }
            self.backoff = Duration::from_secs(1);
        }
        Ok(())
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

    #[test]
    fn one_transaction_writes_expires_and_trims() {
        let mut sink = RedisTopics::new("redis://127.0.0.1:1/", 2, TopicFilter::default()).unwrap();
        sink.add(&TopicCounts {
            publishes: vec![("a/b".into(), 2)],
            subscribers: vec![("f/#".into(), 1)],
            untracked: 0,
        });
        sink.stale.push("shardmq:topic:publishes:gone".into());
        let packed = sink.transaction().get_packed_pipeline();
        let commands = String::from_utf8_lossy(&packed);
        let position = |needle: &str| {
            commands
                .find(needle)
                .unwrap_or_else(|| panic!("{needle} in {commands:?}"))
        };
        // MULTI first, the stale counters deleted before anything is counted, each counter
        // given its expiry, both rankings trimmed to the two highest (ranks 0 to -3), EXEC last.
        assert!(position("MULTI") < position("DEL"));
        assert!(position("shardmq:topic:publishes:gone") < position("INCRBY"));
        assert_eq!(commands.matches("EXPIRE").count(), 2);
        assert!(commands.contains("$5\r\n86400\r\n"));
        assert_eq!(commands.matches("ZREMRANGEBYRANK").count(), 2);
        assert!(commands
            .contains("ZREMRANGEBYRANK\r\n$21\r\nshardmq:hot:publishes\r\n$1\r\n0\r\n$2\r\n-3"));
        assert!(position("ZREMRANGEBYRANK") < position("EXEC"));
    }
}
