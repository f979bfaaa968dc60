//! Hot-topic statistics kept by one shard: per-topic publish counts and per-filter subscriber
//! count changes, accumulated locally and drained once a second by the shard for the monitor
//! (which aggregates them in memory or flushes them to Redis in one pipelined batch).
//!
//! The map is bounded ([`HotTopics::new`]'s `max_topics`): once full, topics not yet tracked in
//! this interval are counted only in `untracked`, so a topic explosion cannot eat memory.
//!
//! Topics and filters beginning with `$` are the broker's own (`$SYS/...`, published by the
//! monitor itself) and are not counted: they would rank the monitor, not the users. Which user
//! topics count (the `hot_topics_filters` setting) is decided by the monitor, off the shard, so a
//! publish costs the shard one map update and no filter match.

use hashbrown::HashMap;

/// Counts gathered by one shard in one interval.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct TopicCounts {
    /// Publications per topic.
    pub publishes: Vec<(String, u64)>,
    /// Change in subscriber count per filter (subscribe +1, unsubscribe or clean disconnect −1).
    pub subscribers: Vec<(String, i64)>,
    /// Publications to topics that did not fit in the map this interval.
    pub untracked: u64,
}

/// Shard-local accumulator; see the module doc.
#[derive(Debug)]
pub struct HotTopics {
    enabled: bool,
    max_topics: usize,
    publishes: HashMap<Box<str>, u64>,
    subscribers: HashMap<Box<str>, i64>,
    untracked: u64,
}

impl HotTopics {
    /// An accumulator tracking at most `max_topics` topics per interval; disabled when 0.
    pub fn new(max_topics: usize) -> Self {
        Self {
            enabled: max_topics > 0,
            max_topics,
            publishes: HashMap::new(),
            subscribers: HashMap::new(),
            untracked: 0,
        }
    }

    /// Counts one publication to `topic`.
    pub fn record_publish(&mut self, topic: &str) {
        if !self.enabled || topic.starts_with('$') {
            return;
        }
        if let Some(count) = self.publishes.get_mut(topic) {
            *count += 1;
        } else if self.publishes.len() < self.max_topics {
            self.publishes.insert(topic.into(), 1);
        } else {
            self.untracked += 1;
        }
    }

    /// Counts a subscriber gained (`delta` = 1) or lost (−1) on `filter`.
    pub fn record_subscribers(&mut self, filter: &str, delta: i64) {
        if !self.enabled || filter.starts_with('$') {
            return;
        }
        if let Some(count) = self.subscribers.get_mut(filter) {
            *count += delta;
        } else if self.subscribers.len() < self.max_topics {
            self.subscribers.insert(filter.into(), delta);
        }
    }

    /// Takes this interval's counts, leaving the accumulator empty.
    pub fn drain(&mut self) -> TopicCounts {
        TopicCounts {
            publishes: self
                .publishes
                .drain()
                .map(|(topic, n)| (topic.into(), n))
                .collect(),
            subscribers: self
                .subscribers
                .drain()
                .filter(|(_, n)| *n != 0)
                .map(|(f, n)| (f.into(), n))
                .collect(),
            untracked: std::mem::take(&mut self.untracked),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_bounds() {
        let mut hot = HotTopics::new(2);
        hot.record_publish("a");
        hot.record_publish("a");
        hot.record_publish("b");
        hot.record_publish("c");
        hot.record_subscribers("f/#", 1);
        hot.record_subscribers("f/#", 1);
        hot.record_subscribers("g", 1);
        hot.record_subscribers("g", -1);
        let mut counts = hot.drain();
        counts.publishes.sort();
        assert_eq!(counts.publishes, vec![("a".into(), 2), ("b".into(), 1)]);
        assert_eq!(counts.untracked, 1);
        assert_eq!(counts.subscribers, vec![("f/#".into(), 2)]);
        assert_eq!(hot.drain(), TopicCounts::default());
    }

    #[test]
    fn broker_topics_are_not_counted() {
        let mut hot = HotTopics::new(10);
        hot.record_publish("$SYS/broker/uptime");
        hot.record_subscribers("$SYS/#", 1);
        assert_eq!(hot.drain(), TopicCounts::default());
    }

    #[test]
    fn disabled_counts_nothing() {
        let mut hot = HotTopics::new(0);
        hot.record_publish("a");
        assert_eq!(hot.drain(), TopicCounts::default());
    }
}
