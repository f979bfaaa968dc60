//! The retained-message index: topic name → the retained message of that topic.
//!
//! # What it owns
//!
//! [`RetainedIndex<V>`] keeps one `V` per exact topic name and answers "which retained topics does
//! this filter match" ([`RetainedIndex::for_each_matching`]), which a SUBSCRIBE needs to send the
//! retained messages [MQTT-3.3.1-6]. Every shard keeps a full replica (DESIGN.md, Message flow,
//! step 4), so a wildcard subscribe is served from the shard's own memory; the payloads inside `V`
//! are shared `Bytes`, so a replica costs the index, not the messages. Runs on the owning shard
//! only: `&self`/`&mut self`, no locks (STYLE.md §3). Whether a zero-byte retained PUBLISH means
//! "remove" [MQTT-3.3.1-10] is the caller's business: it calls [`RetainedIndex::remove`].
//!
//! # Why it is shaped so
//!
//! - **A tree of topic levels, walked with the filter.** Here the stored keys are plain topic
//!   names and the query is the filter, the reverse of the subscription
//!   [`Trie`](crate::trie::Trie). A literal filter level is one lookup, `+` visits every child of
//!   one node, `#` every node below one; a filter never scans topics it cannot match. Topic names
//!   hold no wildcards, so a node is just a value and its children, with keys copied (STYLE.md
//!   §4). Children use the trie's storage (up to 8 in a `Vec`, more in a `hashbrown` map): 157
//!   heap bytes per `site/<s>/device/<d>/status` topic instead of 418 with a map in every node,
//!   and `#` queries about three times as fast (`benches/RESULTS.md`).
//! - **Topics are rebuilt, not stored.** The walk passes each matching topic to the callback as a
//!   `&str` rebuilt in one scratch `String`, instead of storing the full name beside each value:
//!   every shard holds a replica, so the saved bytes count N times. Queries run on SUBSCRIBE, not
//!   on the publish path, so the scratch string and the walk's `Vec` stack may allocate.
//! - **Deep input never overflows the stack.** A topic may have 32,768 levels, so no method
//!   recurses over levels: loops and explicit stacks, as in the trie, and a node's `Drop`
//!   dismantles its subtree with a loop.
//! - **Removal prunes** every node left without a value or child, and shrinks children storage
//!   once a quarter full, so churn of retained topics does not leak memory.

use std::fmt;

use crate::trie::{level_at, Levels, END, SEPARATOR};

/// Retained messages by exact topic name, queried with topic filters.
///
/// Runs on the owning shard only. See the [module docs](self) for its shape.
pub struct RetainedIndex<V> {
    root: Node<V>,
    /// Number of stored topics, kept so `len` is O(1).
    len: usize,
}

/// One topic level. The root stands for "before the first level" and never holds a value.
struct Node<V> {
    value: Option<V>,
    children: Levels<Node<V>>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Self {
            value: None,
            children: Levels::default(),
        }
    }
}

impl<V> Drop for Node<V> {
    /// Drops the subtree with a loop instead of one recursion per level (see the module docs).
    fn drop(&mut self) {
        if self.children.is_empty() {
            return;
        }
        let mut pending: Vec<Node<V>> = Vec::new();
        let mut next = detach_children(self, &mut pending);
        while let Some(mut node) = next.take().or_else(|| pending.pop()) {
            next = detach_children(&mut node, &mut pending);
            // `node` now has no children, so dropping it does not recurse.
        }
    }
}

/// Moves `node`'s children out: returns one and pushes the rest onto `pending`.
fn detach_children<V>(node: &mut Node<V>, pending: &mut Vec<Node<V>>) -> Option<Node<V>> {
    let mut children = node.children.take_values();
    let first = children.next();
    pending.extend(children);
    first
}

/// What a visited node does with the filter in [`RetainedIndex::for_each_matching`].
#[derive(Clone, Copy)]
enum Mode {
    /// Match the filter level starting at this byte offset against the node's children.
    Level(usize),
    /// The filter is consumed: the node's own topic matches.
    End,
    /// Below a `#`: the node and everything under it match.
    All,
}

/// A node waiting to be visited. The scratch topic is cut back to `parent_len` bytes and `level`
/// is appended (after a `/` unless the node is a first level) before the node is looked at.
struct Visit<'a, V> {
    node: &'a Node<V>,
    /// `None` for the root, which is not a level.
    level: Option<&'a str>,
    first_level: bool,
    parent_len: usize,
    mode: Mode,
}

impl<V> Default for RetainedIndex<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> RetainedIndex<V> {
    /// An empty index. Does not allocate.
    pub fn new() -> Self {
        Self {
            root: Node::default(),
            len: 0,
        }
    }

    /// Number of retained topics.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if no topic is retained.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The retained value of exactly `topic`.
    pub fn get(&self, topic: &str) -> Option<&V> {
        let mut node = &self.root;
        for level in topic.split(SEPARATOR) {
            node = node.children.get(level)?;
        }
        node.value.as_ref()
    }

    /// Retains `value` for `topic` (a topic name: its levels are taken literally); returns the
    /// value it replaced.
    pub fn set(&mut self, topic: &str, value: V) -> Option<V> {
        let mut node = &mut self.root;
        for level in topic.split(SEPARATOR) {
            node = node.children.get_or_insert_default(level);
        }
        let old = node.value.replace(value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes and returns the retained value of `topic`, pruning every node left empty.
    pub fn remove(&mut self, topic: &str) -> Option<V> {
        // First walk, read-only: check the value exists and find `keep`, the depth of the
        // deepest node that still holds something once it is gone; the chain below it is cut off
        // whole. Two walks instead of a recursion, because a topic may be 32,768 levels deep.
        let mut keep = 0;
        let mut depth = 0;
        let mut node = &self.root;
        for level in topic.split(SEPARATOR) {
            if node.value.is_some() || node.children.len() > 1 {
                keep = depth;
            }
            node = node.children.get(level)?;
            depth += 1;
        }
        node.value.as_ref()?;
        if !node.children.is_empty() {
            keep = depth;
        }

        // Second walk, mutable: to the kept node, cut the chain, and take the value at its end.
        let mut levels = topic.split(SEPARATOR);
        let mut node = &mut self.root;
        for _ in 0..keep {
            node = node.children.get_mut(levels.next()?)?;
        }
        let mut detached = None;
        if keep < depth {
            node = detached.insert(node.children.remove(levels.next()?)?);
            for level in levels {
                node = node.children.get_mut(level)?;
            }
        }
        let value = node.value.take();
        if value.is_some() {
            self.len -= 1;
        }
        // `detached` drops here; `Node::drop` dismantles the chain without recursing.
        value
    }

    /// Calls `f(topic, value)` for every retained topic that `filter` matches, in unspecified
    /// order.
    ///
    /// `+` matches one level, `#` the rest including the parent (`a/#` returns `a`, MQTT 3.1.1
    /// §4.7.1.2), empty levels are levels, and a filter whose first level is `+` or `#` does not
    /// return topics beginning with `$` [MQTT-4.7.2-1]. `filter` is expected valid; a `#`
    /// that is not last, or a level such as `a+`, is compared literally.
    pub fn for_each_matching(&self, filter: &str, f: impl FnMut(&str, &V)) {
        self.walk(Mode::Level(0), filter, f);
    }

    /// Calls `f(topic, value)` for every retained topic, `$` topics included, in unspecified
    /// order: for replicating the index to a shard, or listing it.
    pub fn for_each(&self, f: impl FnMut(&str, &V)) {
        self.walk(Mode::All, "", f);
    }

    /// The depth-first walk behind [`Self::for_each_matching`] and [`Self::for_each`], starting at
    /// the root in mode `start`.
    fn walk(&self, start: Mode, filter: &str, mut f: impl FnMut(&str, &V)) {
        let mut topic = String::new();
        let mut pending = vec![Visit {
            node: &self.root,
            level: None,
            first_level: false,
            parent_len: 0,
            mode: start,
        }];
        while let Some(visit) = pending.pop() {
            topic.truncate(visit.parent_len);
            if let Some(level) = visit.level {
                if !visit.first_level {
                    topic.push(SEPARATOR);
                }
                topic.push_str(level);
            }
            let (node, at_root, mode) = (visit.node, visit.level.is_none(), visit.mode);
            let parent_len = topic.len();
            // The node's children as visits. A wildcard filter level at the root skips `$`
            // topics [MQTT-4.7.2-1]; `for_each` starts `Mode::All` at the root and lists them.
            let children = |mode, skip_dollar: bool| {
                node.children
                    .iter()
                    .filter(move |(level, _)| !(skip_dollar && level.starts_with('$')))
                    .map(move |(level, child)| Visit {
                        node: child,
                        level: Some(level),
                        first_level: at_root,
                        parent_len,
                        mode,
                    })
            };
            match mode {
                Mode::End => {
                    if let Some(value) = &node.value {
                        f(&topic, value);
                    }
                }
                Mode::All => {
                    if let Some(value) = &node.value {
                        f(&topic, value);
                    }
                    pending.extend(children(Mode::All, false));
                }
                Mode::Level(pos) => {
                    let (level, after) = level_at(filter, pos);
                    let mode = if after == END {
                        Mode::End
                    } else {
                        Mode::Level(after)
                    };
                    match level {
                        "#" if after == END => {
                            // `a/#` also returns `a` (§4.7.1.2); the root holds no value.
                            if let Some(value) = &node.value {
                                f(&topic, value);
                            }
                            pending.extend(children(Mode::All, at_root));
                        }
                        "+" => pending.extend(children(mode, at_root)),
                        _ => {
                            if let Some((level, child)) = node.children.get_key_value(level) {
                                pending.push(Visit {
                                    node: child,
                                    level: Some(level),
                                    first_level: at_root,
                                    parent_len,
                                    mode,
                                });
                            }
                        }
                    }
                }
            }
        }
    }

    /// Number of nodes below the root, for tests that check pruning.
    #[cfg(test)]
    fn node_count(&self) -> usize {
        let mut count = 0;
        let mut pending = vec![&self.root];
        while let Some(node) = pending.pop() {
            count += node.children.len();
            pending.extend(node.children.iter().map(|(_, child)| child));
        }
        count
    }
}

impl<V: fmt::Debug> fmt::Debug for RetainedIndex<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        self.for_each(|topic, value| {
            map.entry(&topic, value);
        });
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::collection::vec;
    use proptest::prelude::*;
    use shardmq_codec::topic::{matches, valid_filter, valid_name};

    use super::*;
    use crate::trie::strategies::{filter, topic, NARROW, WIDE};

    /// An index whose value is the topic itself.
    fn index_of(topics: &[&str]) -> RetainedIndex<String> {
        let mut index = RetainedIndex::new();
        for topic in topics {
            index.set(topic, topic.to_string());
        }
        index
    }

    /// `(topic, value)` pairs returned for `filter`, sorted; duplicates kept.
    fn matching<V: Clone + Ord>(index: &RetainedIndex<V>, filter: &str) -> Vec<(String, V)> {
        let mut out = Vec::new();
        index.for_each_matching(filter, |topic, value| {
            out.push((topic.to_owned(), value.clone()))
        });
        out.sort();
        out
    }

    /// Asserts that `filter` returns exactly `expected` (each topic with its own value), and
    /// that the naive matcher agrees.
    fn assert_returns(index: &RetainedIndex<String>, filter: &str, expected: &[&str]) {
        let mut expected: Vec<(String, String)> = expected
            .iter()
            .map(|t| (t.to_string(), t.to_string()))
            .collect();
        expected.sort();
        assert_eq!(matching(index, filter), expected, "filter {filter:?}");
        let mut naive = Vec::new();
        index.for_each(|topic, value| {
            if matches(topic, filter) {
                naive.push((topic.to_owned(), value.clone()));
            }
        });
        naive.sort();
        assert_eq!(naive, expected, "naive, filter {filter:?}");
    }

    const SPEC_TOPICS: [&str; 10] = [
        "sport",
        "sport/",
        "sport/tennis",
        "sport/tennis/player1",
        "sport/tennis/player1/ranking",
        "sport/tennis/player1/score/wimbledon",
        "sport/tennis/player2",
        "/finance",
        "$SYS/monitor/Clients",
        "$SYS",
    ];

    #[test]
    fn spec_multi_level_wildcard() {
        // MQTT 3.1.1 §4.7.1.2
        let index = index_of(&SPEC_TOPICS);
        assert_returns(
            &index,
            "sport/tennis/player1/#",
            &[
                "sport/tennis/player1",
                "sport/tennis/player1/ranking",
                "sport/tennis/player1/score/wimbledon",
            ],
        );
        assert_returns(&index, "sport/#", &SPEC_TOPICS[..7]);
        assert_returns(&index, "#", &SPEC_TOPICS[..8]);
    }

    #[test]
    fn spec_single_level_wildcard() {
        // MQTT 3.1.1 §4.7.1.3
        let index = index_of(&SPEC_TOPICS);
        assert_returns(
            &index,
            "sport/tennis/+",
            &["sport/tennis/player1", "sport/tennis/player2"],
        );
        assert_returns(&index, "sport/+", &["sport/", "sport/tennis"]);
        assert_returns(&index, "+/+", &["sport/", "sport/tennis", "/finance"]);
        assert_returns(&index, "/+", &["/finance"]);
        assert_returns(&index, "+", &["sport"]);
        assert_returns(&index, "+/tennis/#", &SPEC_TOPICS[2..7]);
    }

    #[test]
    fn spec_dollar_topics() {
        // MQTT 3.1.1 §4.7.2 [MQTT-4.7.2-1]
        let index = index_of(&SPEC_TOPICS);
        assert_returns(&index, "+/monitor/Clients", &[]);
        assert_returns(&index, "$SYS/monitor/+", &["$SYS/monitor/Clients"]);
        assert_returns(&index, "$SYS/#", &["$SYS/monitor/Clients", "$SYS"]);
        assert_returns(&index, "$SYS", &["$SYS"]);
        // `$` only matters in the first level.
        let index = index_of(&["a/$x", "a/$x/b"]);
        assert_returns(&index, "a/+", &["a/$x"]);
        assert_returns(&index, "a/#", &["a/$x", "a/$x/b"]);
        assert_returns(&index, "+/+/+", &["a/$x/b"]);
    }

    #[test]
    fn exact_and_literal_filters() {
        let index = index_of(&["a", "a/b", "a//b", "/", "//"]);
        assert_returns(&index, "a/b", &["a/b"]);
        assert_returns(&index, "a/b/c", &[]);
        assert_returns(&index, "a/+/b", &["a//b"]);
        assert_returns(&index, "/", &["/"]);
        assert_returns(&index, "+/+", &["a/b", "/"]);
        assert_returns(&index, "/#", &["/", "//"]);
        assert_returns(&index, "b/#", &[]);
    }

    #[test]
    fn set_get_remove_and_len() {
        let mut index = RetainedIndex::new();
        assert!(index.is_empty());
        assert_eq!(index.set("a/b", 1), None);
        assert_eq!(index.set("a", 2), None);
        assert_eq!(index.set("a/b", 3), Some(1));
        assert_eq!(index.len(), 2);
        assert_eq!(index.get("a/b"), Some(&3));
        assert_eq!(index.get("a/c"), None);
        assert_eq!(index.get("a/b/c"), None);
        assert_eq!(index.remove("a/b/c"), None);
        assert_eq!(index.remove("a/b"), Some(3));
        assert_eq!(index.remove("a/b"), None);
        assert_eq!(index.node_count(), 1, "`a` keeps its value");
        assert_eq!(index.remove("a"), Some(2));
        assert_eq!((index.len(), index.node_count()), (0, 0));
        assert_eq!(format!("{:?}", index_of(&["x/y"])), r#"{"x/y": "x/y"}"#);
    }

    #[test]
    fn remove_prunes_only_dead_nodes() {
        let mut index = index_of(&["a/b/c/d", "a/b", "a/x"]);
        assert_eq!(index.node_count(), 5);
        assert_eq!(
            index.remove("a/b/c"),
            None,
            "a node on the path is no topic"
        );
        assert_eq!(index.remove("a/b/c/d").as_deref(), Some("a/b/c/d"));
        assert_eq!(index.node_count(), 3, "c and d pruned");
        assert_eq!(index.remove("a/b").as_deref(), Some("a/b"));
        assert_eq!(index.node_count(), 2, "b pruned, a still leads to x");
        assert_eq!(index.remove("a/x").as_deref(), Some("a/x"));
        assert_eq!(index.node_count(), 0);
        assert_returns(&index, "#", &[]);
    }

    #[test]
    fn deepest_topics_do_not_overflow_a_small_stack() {
        let run = || {
            let levels = 32_768;
            let deep = "/".repeat(levels - 1);
            let deep_x = format!("{deep}x");
            assert!(valid_name(&deep) && valid_name(&deep_x));
            let plus = vec!["+"; levels].join("/");
            assert!(valid_filter(&plus) && plus.len() <= 65_535);
            let mut index = index_of(&[&deep, &deep_x, "x"]);
            assert_eq!(matching(&index, "#").len(), 3);
            assert_eq!(matching(&index, &plus).len(), 2);
            assert_eq!(matching(&index, &deep_x).len(), 1);
            assert_eq!(index.remove(&deep_x).as_ref(), Some(&deep_x));
            assert_eq!(index.get(&deep), Some(&deep));
            drop(index); // dismantles the deep chain
        };
        std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(run)
            .unwrap()
            .join()
            .unwrap();
    }

    /// `ops` on topics from `pool` keep the index equal to a `BTreeMap` model: return values,
    /// `len`, `get`, `for_each`, `for_each_matching` against the naive matcher; and removing
    /// everything leaves no node.
    fn check(
        pool: &[String],
        ops: &[(bool, prop::sample::Index, u16)],
        filters: &[String],
    ) -> Result<(), TestCaseError> {
        let mut index = RetainedIndex::new();
        let mut model = BTreeMap::new();
        for (set, i, value) in ops {
            let topic = i.get(pool);
            if *set {
                prop_assert_eq!(
                    index.set(topic, *value),
                    model.insert(topic.clone(), *value)
                );
            } else {
                prop_assert_eq!(index.remove(topic), model.remove(topic));
            }
            prop_assert_eq!(index.len(), model.len());
        }
        for topic in pool {
            prop_assert_eq!(index.get(topic), model.get(topic));
        }
        let mut all = BTreeMap::new();
        index.for_each(|topic, value| {
            all.insert(topic.to_owned(), *value);
        });
        prop_assert_eq!(&all, &model);
        for filter in filters {
            let expected: Vec<(String, u16)> = model
                .iter()
                .filter(|(topic, _)| matches(topic, filter))
                .map(|(topic, value)| (topic.clone(), *value))
                .collect();
            prop_assert_eq!(matching(&index, filter), expected, "filter {:?}", filter);
        }
        let topics: BTreeSet<String> = model.keys().cloned().collect();
        for topic in &topics {
            prop_assert!(index.remove(topic).is_some());
        }
        prop_assert!(index.is_empty());
        prop_assert_eq!(index.node_count(), 0);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn prop_operations_and_queries_equal_model(
            pool in vec(topic(NARROW), 1..16),
            ops in vec((any::<bool>(), any::<prop::sample::Index>(), any::<u16>()), 0..200),
            filters in vec(filter(NARROW), 1..12),
        ) {
            check(&pool, &ops, &filters)?;
        }

        #[test]
        fn prop_operations_and_queries_equal_model_wide(
            pool in vec(topic(WIDE), 1..60),
            ops in vec((any::<bool>(), any::<prop::sample::Index>(), any::<u16>()), 0..300),
            filters in vec(filter(WIDE), 1..12),
        ) {
            check(&pool, &ops, &filters)?;
        }
    }
}
