//! Hot topics: the running totals of publications per topic and subscribers per filter, and
//! their ranking as the admin API, `$SYS/broker/topics/hot` and `shardmq hot-topics` show it.
//!
//! The monitor folds the shards' per-second [`TopicCounts`] into a [`HotTable`]. The table is
//! bounded: past `capacity` entries it drops the lower-counted half, and the publications it drops
//! are added to `untracked`, so a topic explosion costs bounded memory and the ranking of the
//! busiest topics stays exact while they stay in the top half. Filters, when configured
//! ([`TopicFilter`]), are applied here rather than on the shards, so a publish costs the shard no
//! match.

use serde::{Deserialize, Serialize};
use shardmq_codec::topic;
use shardmq_shard::hot_topics::TopicCounts;

/// One ranked topic.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct TopicRank {
    /// Topic name.
    pub topic: String,
    /// Publications since start (while tracked).
    pub publishes: u64,
}

/// One ranked subscription filter.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct FilterRank {
    /// Subscription filter.
    pub filter: String,
    /// Subscribers now.
    pub subscribers: i64,
}

/// The ranking the admin API and `$SYS` show.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
pub struct Ranking {
    /// Busiest topics first.
    pub topics: Vec<TopicRank>,
    /// Most subscribed filters first.
    pub filters: Vec<FilterRank>,
    /// Publications counted in no ranked topic (over a shard's or the table's bound).
    pub untracked: u64,
}

/// Which topics the hot-topic statistics count: those matching one of the configured filters, or
/// every topic when none is configured.
#[derive(Clone, Debug, Default)]
pub struct TopicFilter(Vec<String>);

impl TopicFilter {
    /// Counts topics matching one of `filters` (every topic when empty).
    pub fn new(filters: Vec<String>) -> TopicFilter {
        TopicFilter(filters)
    }

    /// Whether publications to `name` are counted.
    pub fn topic(&self, name: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|f| topic::matches(name, f))
    }

    /// Whether subscribers of `filter` are counted: it is one of the configured filters or
    /// lies within one.
    pub fn filter(&self, filter: &str) -> bool {
        self.topic(filter) || self.0.iter().any(|f| f == filter)
    }
}

/// In-memory hot-topic totals; see the module doc.
#[derive(Debug)]
pub struct HotTable {
    capacity: usize,
    filter: TopicFilter,
    publishes: hashbrown::HashMap<String, u64>,
    subscribers: hashbrown::HashMap<String, i64>,
    untracked: u64,
}

impl HotTable {
    /// A table of at most `capacity` topics and as many filters, counting what `filter` allows.
    pub fn new(capacity: usize, filter: TopicFilter) -> HotTable {
        HotTable {
            capacity: capacity.max(2),
            filter,
            publishes: hashbrown::HashMap::new(),
            subscribers: hashbrown::HashMap::new(),
            untracked: 0,
        }
    }

    /// Publications counted in no ranked topic.
    pub fn untracked(&self) -> u64 {
        self.untracked
    }

    /// The `top` busiest topics and most subscribed filters.
    pub fn ranking(&self, top: usize) -> Ranking {
        let mut topics: Vec<TopicRank> = self
            .publishes
            .iter()
            .map(|(topic, n)| TopicRank {
                topic: topic.clone(),
                publishes: *n,
            })
            .collect();
        topics.sort_unstable_by(|a, b| b.publishes.cmp(&a.publishes).then(a.topic.cmp(&b.topic)));
        topics.truncate(top);
        let mut filters: Vec<FilterRank> = self
            .subscribers
            .iter()
            .map(|(filter, n)| FilterRank {
                filter: filter.clone(),
                subscribers: *n,
            })
            .collect();
        filters.sort_unstable_by(|a, b| {
            b.subscribers
                .cmp(&a.subscribers)
                .then(a.filter.cmp(&b.filter))
        });
        filters.truncate(top);
        Ranking {
            topics,
            filters,
            untracked: self.untracked,
        }
    }

    /// Keeps the higher-counted half of `map`, returning the sum of what it dropped.
    fn prune<V: Copy + Ord + Into<i128>>(map: &mut hashbrown::HashMap<String, V>) -> i128 {
        let mut counts: Vec<V> = map.values().copied().collect();
        let half = counts.len() / 2;
        let (_, threshold, _) = counts.select_nth_unstable_by(half, |a, b| b.cmp(a));
        let threshold = *threshold;
        let mut kept = 0;
        let mut dropped = 0i128;
        map.retain(|_, n| {
            if *n > threshold || (*n == threshold && kept < half) {
                kept += 1;
                true
            } else {
                dropped += (*n).into();
                false
            }
        });
        dropped
    }
}

impl HotTable {
    /// Adds one shard's counts for one interval.
    pub fn add(&mut self, counts: &TopicCounts) {
        self.untracked += counts.untracked;
        for (name, n) in &counts.publishes {
            if !self.filter.topic(name) {
                continue;
            }
            if let Some(total) = self.publishes.get_mut(name.as_str()) {
                *total += n;
                continue;
            }
            if self.publishes.len() >= self.capacity {
                let dropped = Self::prune(&mut self.publishes);
                self.untracked += u64::try_from(dropped).unwrap_or(u64::MAX);
            }
            self.publishes.insert(name.clone(), *n);
        }
        for (filter, delta) in &counts.subscribers {
            if !self.filter.filter(filter) {
                continue;
            }
            let now = self.subscribers.get(filter.as_str()).copied().unwrap_or(0) + delta;
            if now <= 0 {
                self.subscribers.remove(filter.as_str());
                continue;
            }
            if !self.subscribers.contains_key(filter.as_str())
                && self.subscribers.len() >= self.capacity
            {
                Self::prune(&mut self.subscribers);
            }
            self.subscribers.insert(filter.clone(), now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(publishes: &[(&str, u64)], subscribers: &[(&str, i64)]) -> TopicCounts {
        TopicCounts {
            publishes: publishes.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
            subscribers: subscribers
                .iter()
                .map(|(t, n)| (t.to_string(), *n))
                .collect(),
            untracked: 0,
        }
    }

    #[test]
    fn sums_shards_and_ranks() {
        let mut table = HotTable::new(100, TopicFilter::default());
        table.add(&counts(&[("a", 3), ("b", 5)], &[("f/#", 2)]));
        table.add(&counts(&[("a", 4)], &[("f/#", 1), ("g", 1)]));
        table.add(&counts(&[], &[("g", -1)]));
        let ranking = table.ranking(10);
        assert_eq!(
            ranking.topics,
            vec![
                TopicRank {
                    topic: "a".into(),
                    publishes: 7
                },
                TopicRank {
                    topic: "b".into(),
                    publishes: 5
                }
            ]
        );
        assert_eq!(
            ranking.filters,
            vec![FilterRank {
                filter: "f/#".into(),
                subscribers: 3
            }]
        );
        assert_eq!(table.ranking(1).topics.len(), 1);
    }

    #[test]
    fn bounded_keeps_the_busiest() {
        let mut table = HotTable::new(10, TopicFilter::default());
        table.add(&counts(&[("hot", 1000)], &[]));
        for i in 0..1000 {
            table.add(&counts(&[(&format!("cold/{i}"), 1)], &[]));
        }
        assert!(table.publishes.len() <= 10);
        let ranking = table.ranking(1);
        assert_eq!(ranking.topics[0].topic, "hot");
        let tracked: u64 = table.publishes.values().sum();
        assert_eq!(tracked + ranking.untracked, 2000);
    }

    #[test]
    fn filters_choose_what_is_counted() {
        let mut table = HotTable::new(10, TopicFilter::new(vec!["chat/#".into()]));
        table.add(&counts(
            &[("chat/room1", 2), ("device/1", 5)],
            &[("chat/#", 1), ("device/+", 1)],
        ));
        let ranking = table.ranking(10);
        assert_eq!(ranking.topics.len(), 1);
        assert_eq!(ranking.topics[0].topic, "chat/room1");
        assert_eq!(ranking.filters.len(), 1);
    }
}
