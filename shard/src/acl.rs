//! The per-session access matcher: [`SessionAcl`], checked on every PUBLISH, every delivery and
//! every SUBSCRIBE of one session.
//!
//! # What it owns, and what it does not
//!
//! A `SessionAcl` holds concrete topic filters, each with an [`Access`], and answers "may this
//! session publish to / receive from / subscribe to this". Where those filters come from — the
//! `acl_file` rules, who they apply to, and the `%u` `%c` `%f` `%F` substitutions that turn one rule
//! into a filter per related user — is the rule model of the control core, in the broker binary
//! (`src/access`). The control core expands the rules of a client on its own thread when the
//! client connects (or when its rules or relations change), builds the matcher with
//! [`SessionAclBuilder`], and ships it to the session's shard; so a `SessionAcl` is `Send`, and
//! nothing here knows about users or rules.
//!
//! # Shape
//!
//! - **Exact filters** (no `+` or `#` level: usually nearly all of them, such as `/%F/chat` for
//!   each friend) sit in a hash map. Building folds into each the flags of the wildcard filters
//!   that match it, so a topic found there is decided by that one lookup of the whole topic: the
//!   common case, a message to a friend and its delivery.
//! - **Wildcard filters** sit in a small level trie whose nodes live in one `Vec` and whose
//!   literal children use the route table's level storage ([`crate::trie`]'s `Levels`). The
//!   trie is walked with an explicit stack, never by recursion, because its depth is not bounded
//!   by the configuration: a deny rule filled with a client id takes the id verbatim, `/` and
//!   all, so a client chooses how deep its own filter is (up to 32,768 levels). It is not the
//!   route table's [`crate::trie::Trie`] itself: that one owns its nodes as a tree, which costs
//!   allocations per level to build and a walk to drop, while a matcher is built at every
//!   CONNECT and dropped on the shard. Built on `Trie<u8>`, the bench's matcher (305 filters)
//!   took about four times the instructions to drop and a fifth more per check that hits no
//!   exact filter (valgrind instruction counts); this one is dropped as one flat `Vec`.
//! - Both are immutable once built and shared behind an `Arc`: the control core sends a copy of a
//!   recompiled matcher to every shard (only the session's own keeps it), which costs a reference
//!   count each.
//! - A check allocates nothing (unless a walk has more than 8 branches pending at once). It runs
//!   on every PUBLISH and every delivery; building runs once per CONNECT and per rule change.
//!
//! # Semantics
//!
//! - **Least privilege.** Nothing is allowed unless a filter allows it. A matcher with no filter
//!   allows nothing; only [`SessionAcl::allow_all`] (no ACL configured) allows everything.
//! - **Deny wins.** A topic matched by any [`Access::Deny`] filter is refused, whatever allows it.
//! - **Publish** ([`SessionAcl::can_publish`]): the topic must match a `Write`/`ReadWrite` filter.
//! - **Receive** ([`SessionAcl::can_receive`], checked at delivery): the topic must match a
//!   `Read`/`ReadWrite` filter.
//! - **Subscribe** ([`SessionAcl::can_subscribe`]): a filter is allowed when one `Read`/`ReadWrite`
//!   filter *covers* it — every topic the filter can match, that one matches too — and no `Deny`
//!   filter covers it (the subscription could never receive anything). A filter that merely
//!   overlaps a deny is allowed; the denied topics are then filtered out by `can_receive` at
//!   delivery. "Covers" is level by level: `#` covers anything that remains (also nothing: `a/#`
//!   covers `a`); `+` covers a filter level `+` or any literal, not `#`; a literal covers only the
//!   same literal; a filter starting with a wildcard never covers one whose first level starts with
//!   `$` [MQTT-4.7.2-1]. This is the test of libmosquitto's `mosquitto_sub_matches_acl`.
//! - A `#` level ends a filter wherever it stands, as in `shardmq_codec::topic::matches`: only a
//!   deny filter filled with a value that holds `#` can have one before its last level, and so it
//!   denies more, never less.

use std::sync::Arc;

use hashbrown::HashMap;

use crate::trie::{Levels, END};

/// What a filter grants: the access word of an ACL rule.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum Access {
    /// Subscribe and receive.
    Read,
    /// Publish.
    Write,
    /// Both.
    ReadWrite,
    /// Neither, whatever other filters allow.
    Deny,
}

impl Access {
    fn flags(self) -> u8 {
        match self {
            Access::Read => READ,
            Access::Write => WRITE,
            Access::ReadWrite => READ | WRITE,
            Access::Deny => DENY,
        }
    }
}

const READ: u8 = 1;
const WRITE: u8 = 2;
const DENY: u8 = 4;

/// The access rules of one session, as concrete filters.
///
/// Owned by the session on its shard; checks take `&self` and never allocate. The filters are
/// immutable once built and shared behind an `Arc`, so the copy sent to every shard when rules
/// change costs a reference count, not a rebuild.
#[derive(Clone, Debug)]
pub struct SessionAcl {
    allow_all: bool,
    /// `None`: no filter at all.
    filters: Option<Arc<Filters>>,
}

#[derive(Debug, Default)]
struct Filters {
    /// Filters without a `+`/`#` level. Each holds the OR of the flags of every filter that
    /// matches it as a topic, wildcard ones included (see [`SessionAclBuilder::build`]), so a
    /// topic found here needs no trie walk.
    exact: HashMap<Box<str>, u8>,
    /// Filters with a wildcard level.
    wildcards: FilterTrie,
}

impl SessionAcl {
    /// A matcher that allows everything: for a broker run without any ACL.
    pub fn allow_all() -> SessionAcl {
        SessionAcl {
            allow_all: true,
            filters: None,
        }
    }

    /// A matcher that allows nothing.
    pub fn deny_all() -> SessionAcl {
        SessionAcl {
            allow_all: false,
            filters: None,
        }
    }

    /// A matcher of these filters (see [`SessionAclBuilder`]).
    pub fn from_filters<F: AsRef<str>>(
        filters: impl IntoIterator<Item = (Access, F)>,
    ) -> SessionAcl {
        let mut builder = SessionAclBuilder::new();
        for (access, filter) in filters {
            builder.add(access, filter.as_ref());
        }
        builder.build()
    }

    /// True if this client may publish to `topic` (a valid topic name, checked by the codec).
    pub fn can_publish(&self, topic: &str) -> bool {
        self.allow_all || allows(self.topic_flags(topic), WRITE)
    }

    /// True if a message on `topic` may be delivered to this client.
    pub fn can_receive(&self, topic: &str) -> bool {
        self.allow_all || allows(self.topic_flags(topic), READ)
    }

    /// True if this client may subscribe to `filter` (a valid topic filter, checked by the
    /// codec; for a shared subscription pass the filter without its `$share/<group>/` prefix).
    /// See the module doc for the "covers" rule.
    pub fn can_subscribe(&self, filter: &str) -> bool {
        if self.allow_all {
            return true;
        }
        let Some(filters) = &self.filters else {
            return false;
        };
        // A filter with a wildcard level matches many topics, an exact one only one, so exact
        // filters can only cover exact filters. An exact filter found in the map already holds
        // the flags of the wildcard filters that cover it (those matching it as a topic).
        let exact = match has_wildcard_level(filter) {
            false => filters.exact.get(filter).copied(),
            true => None,
        };
        let flags = exact.unwrap_or_else(|| filters.wildcards.walk(filter, Walk::Cover));
        allows(flags, READ)
    }

    /// The number of distinct filters, for memory accounting and tests.
    pub fn filter_count(&self) -> usize {
        self.filters
            .as_ref()
            .map_or(0, |f| f.exact.len() + f.wildcards.filters)
    }

    /// The OR of the flags of every filter matching the topic name `topic`.
    fn topic_flags(&self, topic: &str) -> u8 {
        let Some(filters) = &self.filters else {
            return 0;
        };
        match filters.exact.get(topic) {
            Some(&flags) => flags,
            None => filters.wildcards.walk(topic, Walk::Match),
        }
    }
}

/// Builds a [`SessionAcl`] one filter at a time, as the control core expands a client's rules.
#[derive(Debug, Default)]
pub struct SessionAclBuilder {
    filters: Filters,
}

impl SessionAclBuilder {
    /// No filter yet: built as is, it allows nothing.
    pub fn new() -> SessionAclBuilder {
        SessionAclBuilder::default()
    }

    /// Adds `filter` with `access`. A filter added twice keeps the OR of its accesses.
    pub fn add(&mut self, access: Access, filter: &str) {
        if has_wildcard_level(filter) {
            self.filters.wildcards.insert(filter, access.flags());
        } else {
            *self.filters.exact.entry_ref(filter).or_insert(0) |= access.flags();
        }
    }

    /// The matcher. Each exact filter takes in the flags of the wildcard filters that match it,
    /// one trie walk per exact filter here rather than one per check: most checks (a chat
    /// message to a friend, its delivery) hit an exact filter.
    pub fn build(self) -> SessionAcl {
        let mut filters = self.filters;
        if filters.exact.is_empty() && filters.wildcards.filters == 0 {
            return SessionAcl::deny_all();
        }
        let wildcards = &filters.wildcards;
        for (topic, flags) in filters.exact.iter_mut() {
            *flags |= wildcards.walk(topic, Walk::Match);
        }
        filters.exact.shrink_to_fit();
        filters.wildcards.nodes.shrink_to_fit();
        SessionAcl {
            allow_all: false,
            filters: Some(Arc::new(filters)),
        }
    }
}

/// True if `flags` grant `wanted` and no deny filter matched.
fn allows(flags: u8, wanted: u8) -> bool {
    flags & DENY == 0 && flags & wanted != 0
}

/// True if a level of `filter` is exactly `+` or `#`.
fn has_wildcard_level(filter: &str) -> bool {
    // Most filters hold neither character anywhere: no need to look at levels.
    filter.bytes().any(|byte| byte == b'+' || byte == b'#')
        && filter.split('/').any(|level| level == "+" || level == "#")
}

/// The wildcard filters as a level trie. Each node carries the OR of the flags of the filters
/// that end there (`flags`) and of the filters that end there followed by `/#` (`multi`).
///
/// Nodes live in one `Vec` and refer to each other by index (empty until the first wildcard
/// filter, so most sessions allocate nothing here): built once per session, walked on every
/// check, and dropped as one flat `Vec` on the shard. Literal children sit in the route table's
/// level storage ([`Levels`]: a short list, a hash map past a few), so a node fanning out to 100
/// friends keeps its O(1) lookup while the usual one-child node stays small.
#[derive(Debug, Default)]
struct FilterTrie {
    nodes: Vec<Node>,
    /// Filters inserted (a filter inserted twice counts once).
    filters: usize,
}

#[derive(Debug, Default)]
struct Node {
    literal: Levels<u32>,
    /// The `+` child, or [`ROOT`] (never a child) for none.
    plus: u32,
    flags: u8,
    multi: u8,
}

const ROOT: u32 = 0;

/// What [`FilterTrie::walk`] looks for.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Walk {
    /// Filters matching a topic name.
    Match,
    /// Filters covering a topic filter: its `+` is covered only by a `+` level (no literal level
    /// is `+`), its `#` only by a `#` (a `multi` flag, gathered before the level is read).
    Cover,
}

impl FilterTrie {
    /// Adds `filter`. A `#` level ends the filter wherever it stands, as in
    /// `shardmq_codec::topic::matches` (only deny expansions can put one elsewhere than last).
    fn insert(&mut self, filter: &str, flags: u8) {
        if self.nodes.is_empty() {
            self.nodes.push(Node::default());
        }
        let mut at = ROOT;
        for level in filter.split('/') {
            if level == "#" {
                self.count(at, true, flags);
                return;
            }
            let node = &self.nodes[at as usize];
            let child = match level {
                "+" => node.plus,
                literal => node.literal.get(literal).copied().unwrap_or(ROOT),
            };
            at = if child != ROOT {
                child
            } else {
                // A session's trie has a node per level of its few hundred filters; reaching
                // u32::MAX nodes would take over 100 GiB, so the index cannot truncate.
                let child = self.nodes.len() as u32;
                self.nodes.push(Node::default());
                let node = &mut self.nodes[at as usize];
                match level {
                    "+" => node.plus = child,
                    literal => *node.literal.get_or_insert_default(literal) = child,
                }
                child
            };
        }
        self.count(at, false, flags);
    }

    /// ORs `flags` into the filter ending at node `at` (followed by `/#` if `multi`).
    fn count(&mut self, at: u32, multi: bool, flags: u8) {
        let node = &mut self.nodes[at as usize];
        let slot = if multi {
            &mut node.multi
        } else {
            &mut node.flags
        };
        if *slot == 0 {
            self.filters += 1;
        }
        *slot |= flags;
    }

    /// The OR of the flags of every filter that matches (or covers) `text`.
    ///
    /// One loop with the pending branches (a literal and a `+` child both to follow) on an
    /// explicit stack: `text` comes from the client, and so may a filter's depth (see the module
    /// doc), so nothing here recurses once per level.
    fn walk(&self, text: &str, walk: Walk) -> u8 {
        if self.nodes.is_empty() {
            return 0;
        }
        // [MQTT-4.7.2-1]: a topic starting with `$` is not matched by a filter starting with a
        // wildcard.
        let dollar = text.starts_with('$');
        let mut flags = 0;
        // Made on the first branch: most walks follow one path.
        let mut pending: Option<Branches> = None;
        let mut next = Some((ROOT, 0));
        // `pos` is the byte offset of the next level of `text` to read, or `END`.
        while let Some((at, pos)) = next.take().or_else(|| pending.as_mut()?.pop()) {
            let node = &self.nodes[at as usize];
            let wildcards = at != ROOT || !dollar;
            if wildcards {
                // `<here>/#` matches (or covers) this level and anything after it, also nothing.
                flags |= node.multi;
            }
            if pos == END {
                flags |= node.flags;
                continue;
            }
            let (level, after) = split_level(text, pos);
            if walk == Walk::Cover && level == "#" {
                continue;
            }
            let literal = node.literal.get(level).copied();
            let plus = (wildcards && node.plus != ROOT).then_some(node.plus);
            next = match (literal, plus) {
                (Some(literal), Some(plus)) => {
                    pending.get_or_insert_default().push((plus, after));
                    Some((literal, after))
                }
                (Some(child), None) | (None, Some(child)) => Some((child, after)),
                (None, None) => None,
            };
        }
        flags
    }
}

/// The level of `text` starting at byte `pos`, and where the next one starts ([`END`] after the
/// last). A byte loop: levels are short, and this runs once per level of every check.
#[inline]
fn split_level(text: &str, pos: usize) -> (&str, usize) {
    let rest = &text[pos..];
    match rest.bytes().position(|byte| byte == b'/') {
        Some(length) => (&rest[..length], pos + length + 1),
        None => (rest, END),
    }
}

/// The branches a [`FilterTrie::walk`] has still to follow: a stack in an array on the caller's
/// stack, spilling to the heap only past [`INLINE_BRANCHES`] at once (a rule set with that many
/// `+` levels beside literal ones on one path).
#[derive(Default)]
struct Branches {
    inline: [(u32, usize); INLINE_BRANCHES],
    len: usize,
    spill: Vec<(u32, usize)>,
}

const INLINE_BRANCHES: usize = 8;

impl Branches {
    fn push(&mut self, branch: (u32, usize)) {
        match self.inline.get_mut(self.len) {
            Some(slot) => {
                *slot = branch;
                self.len += 1;
            }
            None => self.spill.push(branch),
        }
    }

    fn pop(&mut self) -> Option<(u32, usize)> {
        // The spill fills only once the array is full, so it holds the latest branches.
        self.spill.pop().or_else(|| {
            self.len = self.len.checked_sub(1)?;
            Some(self.inline[self.len])
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use shardmq_codec::topic::{matches, valid_filter, valid_name};

    use super::*;
    use crate::trie::strategies::{filter, topic, NARROW, WIDE};

    fn acl(filters: &[(Access, &str)]) -> SessionAcl {
        SessionAcl::from_filters(filters.iter().copied())
    }

    #[test]
    fn nothing_allowed_without_filters() {
        for none in [acl(&[]), SessionAcl::deny_all()] {
            assert!(!none.can_publish("a"));
            assert!(!none.can_receive("a"));
            assert!(!none.can_subscribe("#"));
        }
        let all = SessionAcl::allow_all();
        assert!(all.can_publish("a") && all.can_receive("$SYS/x") && all.can_subscribe("#"));
    }

    #[test]
    fn read_write_readwrite() {
        let acl = acl(&[
            (Access::Read, "news/#"),
            (Access::Write, "inbox/+"),
            (Access::ReadWrite, "room/1"),
        ]);
        assert!(acl.can_receive("news/today") && !acl.can_publish("news/today"));
        assert!(acl.can_publish("inbox/bob") && !acl.can_receive("inbox/bob"));
        assert!(acl.can_publish("room/1") && acl.can_receive("room/1"));
        assert!(!acl.can_publish("room/2") && !acl.can_receive("room/2"));
        assert!(!acl.can_publish("inbox/bob/x"));
        assert!(acl.can_receive("news"), "`news/#` matches `news`");
        assert_eq!(acl.filter_count(), 3);
    }

    #[test]
    fn deny_wins_over_allow_everywhere() {
        let acl = acl(&[
            (Access::ReadWrite, "a/#"),
            (Access::Deny, "a/secret"),
            (Access::ReadWrite, "a/secret"),
            (Access::ReadWrite, "b/exact"),
            (Access::Deny, "b/+"),
        ]);
        assert!(acl.can_publish("a/open") && acl.can_receive("a/open"));
        assert!(!acl.can_publish("a/secret") && !acl.can_receive("a/secret"));
        assert!(!acl.can_publish("b/exact") && !acl.can_receive("b/exact"));
        // Subscribing to a filter that only overlaps a deny is allowed; delivery filters.
        assert!(acl.can_subscribe("a/#") && acl.can_subscribe("a/+"));
        // A deny that covers the whole filter refuses it.
        assert!(!acl.can_subscribe("a/secret"));
        assert!(!acl.can_subscribe("b/exact"));
    }

    #[test]
    fn subscribe_requires_a_covering_read_filter() {
        let acl = acl(&[
            (Access::Read, "a/+/c"),
            (Access::Read, "b/#"),
            (Access::Read, "x/y"),
            (Access::Read, "m/n"),
            (Access::Read, "m/+/#"),
            (Access::Write, "w/#"),
        ]);
        for ok in [
            "a/b/c", "a/+/c", "b", "b/#", "b/+", "b/x/y/#", "x/y", "m/n", "m/k", "m/+", "m/k/#",
        ] {
            assert!(acl.can_subscribe(ok), "{ok}");
        }
        for no in [
            "a/#", "a/+/+", "a/b", "#", "+/+/c", "x/+", "x/#", "x", "m/#", "w/x", "w/#",
        ] {
            assert!(!acl.can_subscribe(no), "{no}");
        }
    }

    #[test]
    fn dollar_topics_need_dollar_filters() {
        let acl = acl(&[(Access::Read, "#"), (Access::Read, "+/status")]);
        assert!(acl.can_receive("a/b"));
        assert!(!acl.can_receive("$SYS/status"));
        assert!(!acl.can_subscribe("$SYS/#"));
        assert!(acl.can_subscribe("#") && acl.can_subscribe("+/status"));
        let acl = SessionAcl::from_filters([(Access::Read, "#"), (Access::Read, "$SYS/#")]);
        assert!(acl.can_receive("$SYS/status") && acl.can_subscribe("$SYS/broker/+"));
    }

    #[test]
    fn hash_ends_a_filter_wherever_it_stands() {
        // What a deny rule `secret/%c` becomes for the client id `a/#/b`.
        let acl = acl(&[
            (Access::ReadWrite, "secret/#"),
            (Access::Deny, "secret/a/#/b"),
        ]);
        assert!(!acl.can_publish("secret/a"));
        assert!(!acl.can_publish("secret/a/c/d"));
        assert!(acl.can_publish("secret/b"));
        assert!(!acl.can_subscribe("secret/a/+"));
        assert!(acl.can_subscribe("secret/b#/c"), "`b#` is a literal level");
    }

    #[test]
    fn many_siblings() {
        // More siblings than a node keeps in its short list: the level storage switches to a map.
        let names: Vec<String> = (0..30).map(|i| format!("f{i}")).collect();
        let mut filters = Vec::new();
        for name in &names {
            filters.push((Access::Write, format!("user/{name}/presence/+")));
            filters.push((Access::Read, format!("user/{name}/#")));
            filters.push((Access::Deny, format!("user/{name}/presence/secret")));
        }
        let acl = SessionAcl::from_filters(filters);
        for name in &names {
            assert!(acl.can_publish(&format!("user/{name}/presence/online")));
            assert!(acl.can_receive(&format!("user/{name}/x/y")));
            assert!(acl.can_subscribe(&format!("user/{name}/presence/+")));
            assert!(!acl.can_publish(&format!("user/{name}/presence/secret")));
            assert!(!acl.can_publish(&format!("user/{name}/other/online")));
        }
        assert!(!acl.can_publish("user/stranger/presence/online"));
        assert!(!acl.can_subscribe("user/+/presence/+"));
    }

    /// A client id of 30,000 levels fills a deny rule: checking, cloning and dropping its matcher
    /// must not recurse once per level (on a thread with a small stack, to be sure).
    #[test]
    fn deep_filters_need_no_deep_stack() {
        let deep = "a/".repeat(30_000);
        let run = move || {
            let acl = SessionAcl::from_filters([
                (Access::ReadWrite, "#".to_string()),
                (Access::Deny, format!("x/{deep}+")),
            ]);
            let topic = format!("x/{deep}b");
            assert!(!acl.can_publish(&topic));
            assert!(acl.can_publish(&format!("x/{deep}b/c")));
            assert!(!acl.can_subscribe(&topic));
            let copy = acl.clone();
            drop(acl);
            assert!(!copy.can_receive(&topic));
        };
        std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(run)
            .expect("thread")
            .join()
            .expect("no stack overflow");
    }

    #[test]
    fn shipped_across_threads() {
        fn send<T: Send>() {}
        send::<SessionAcl>();
    }

    // ---- property tests against naive evaluators ----

    fn naive_allows(filters: &[(Access, String)], topic: &str, wanted: Access) -> bool {
        let hits = |access: Access| {
            filters
                .iter()
                .any(|(a, filter)| *a == access && matches(topic, filter))
        };
        if hits(Access::Deny) {
            return false;
        }
        match wanted {
            Access::Write => hits(Access::Write) || hits(Access::ReadWrite),
            _ => hits(Access::Read) || hits(Access::ReadWrite),
        }
    }

    /// Level-by-level "rule covers filter", written independently of the trie.
    fn naive_covers(rule: &str, filter: &str) -> bool {
        if filter.starts_with('$') && rule.starts_with(['+', '#']) {
            return false;
        }
        let rule: Vec<&str> = rule.split('/').collect();
        let filter: Vec<&str> = filter.split('/').collect();
        for (i, r) in rule.iter().enumerate() {
            if *r == "#" {
                return true;
            }
            let Some(f) = filter.get(i) else {
                return false;
            };
            let ok = match *r {
                "+" => *f != "#",
                literal => literal == *f,
            };
            if !ok {
                return false;
            }
        }
        rule.len() == filter.len()
    }

    fn naive_can_subscribe(filters: &[(Access, String)], filter: &str) -> bool {
        let covered = |pred: &dyn Fn(Access) -> bool| {
            filters
                .iter()
                .any(|(a, rule)| pred(*a) && naive_covers(rule, filter))
        };
        !covered(&|a| a == Access::Deny)
            && covered(&|a| matches!(a, Access::Read | Access::ReadWrite))
    }

    /// A topic name matched by `filter`: `+` levels become `a`, a `#` level becomes `b/c`.
    fn instantiate(filter: &str) -> String {
        filter
            .split('/')
            .map(|level| match level {
                "+" => "a",
                "#" => "b/c",
                other => other,
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    fn access() -> impl Strategy<Value = Access> {
        prop::sample::select(vec![
            Access::Read,
            Access::Write,
            Access::ReadWrite,
            Access::Deny,
        ])
    }

    /// Filters as rules expand to: valid ones, and (as a deny filled with a value holding `/`,
    /// `+` or `#` can) two of them joined, which may put `#` before the last level.
    fn rule_filter(names: &'static [&'static str]) -> impl Strategy<Value = String> {
        prop_oneof![
            4 => filter(names),
            1 => (filter(names), filter(names)).prop_map(|(a, b)| format!("{a}/{b}")),
        ]
    }

    fn rules(names: &'static [&'static str]) -> impl Strategy<Value = Vec<(Access, String)>> {
        prop::collection::vec((access(), rule_filter(names)), 0..24)
    }

    proptest! {
        #[test]
        fn publish_and_receive_agree_with_naive(
            filters in rules(NARROW),
            topics in prop::collection::vec(topic(NARROW), 1..16),
        ) {
            let acl = SessionAcl::from_filters(filters.iter().map(|(a, f)| (*a, f)));
            // Also topics made from the filters themselves, so that many checks hit one.
            let derived = filters.iter().map(|(_, filter)| instantiate(filter));
            let topics: Vec<String> = topics.into_iter().chain(derived).collect();
            for topic in topics.iter().filter(|t| valid_name(t)) {
                prop_assert_eq!(
                    acl.can_publish(topic),
                    naive_allows(&filters, topic, Access::Write),
                    "publish {}", topic
                );
                prop_assert_eq!(
                    acl.can_receive(topic),
                    naive_allows(&filters, topic, Access::Read),
                    "receive {}", topic
                );
            }
        }

        #[test]
        fn subscribe_agrees_with_naive(
            filters in rules(NARROW),
            subscriptions in prop::collection::vec(filter(NARROW), 1..16),
        ) {
            let acl = SessionAcl::from_filters(filters.iter().map(|(a, f)| (*a, f)));
            let derived = filters.iter().map(|(_, filter)| filter.clone());
            let subscriptions: Vec<String> = subscriptions.into_iter().chain(derived).collect();
            for filter in subscriptions.iter().filter(|f| valid_filter(f)) {
                prop_assert_eq!(
                    acl.can_subscribe(filter),
                    naive_can_subscribe(&filters, filter),
                    "subscribe {}", filter
                );
            }
        }

        #[test]
        fn wide_rule_sets_agree_with_naive(
            filters in rules(WIDE),
            topics in prop::collection::vec(topic(WIDE), 1..16),
            subscriptions in prop::collection::vec(filter(WIDE), 1..16),
        ) {
            let acl = SessionAcl::from_filters(filters.iter().map(|(a, f)| (*a, f)));
            for topic in &topics {
                prop_assert_eq!(acl.can_publish(topic), naive_allows(&filters, topic, Access::Write));
            }
            for filter in &subscriptions {
                prop_assert_eq!(acl.can_subscribe(filter), naive_can_subscribe(&filters, filter));
            }
        }

        /// "Covers" is sound: every topic the filter matches, the rule matches.
        #[test]
        fn covering_rule_matches_every_topic_of_the_filter(
            rule in filter(NARROW),
            subscription in filter(NARROW),
            topics in prop::collection::vec(topic(NARROW), 1..32),
        ) {
            if naive_covers(&rule, &subscription) {
                for topic in topics.iter().filter(|t| matches(t, &subscription)) {
                    prop_assert!(matches(topic, &rule), "{} covers {} but not {}", rule, subscription, topic);
                }
            }
        }

        /// A clone answers as the original.
        #[test]
        fn clones_agree(
            filters in rules(NARROW),
            topics in prop::collection::vec(topic(NARROW), 1..16),
        ) {
            let acl = SessionAcl::from_filters(filters.iter().map(|(a, f)| (*a, f)));
            let copy = acl.clone();
            prop_assert_eq!(copy.filter_count(), acl.filter_count());
            for topic in &topics {
                prop_assert_eq!(copy.can_publish(topic), acl.can_publish(topic));
                prop_assert_eq!(copy.can_subscribe(topic), acl.can_subscribe(topic));
            }
        }
    }
}
