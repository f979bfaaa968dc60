//! The subscription trie: MQTT topic filters → one value per filter.
//!
//! # What it owns
//!
//! [`Trie<V>`] stores one `V` per topic filter and answers "which stored filters match this
//! topic name" ([`Trie::for_each_match`]). The broker keeps two per shard (DESIGN.md, Message
//! flow): the **route table**, a replica of every filter subscribed anywhere with `V` = the set of
//! shards holding it, and the **local trie** with `V` = this shard's subscribers. Each runs on the
//! owning shard only, so every method takes `&self`/`&mut self`: no locks, no `Rc`, no interior
//! mutability (STYLE.md §3).
//!
//! # Why it is shaped so
//!
//! - **One node per level, wildcards in their own slots.** A node holds the value of the filter
//!   ending there, its literal children by level, and two dedicated wildcard slots: `plus` (the
//!   child for a `+` level) and `hash` (the value of the filter ending in `/#`). Matching a topic
//!   level is one lookup plus two pointer checks; wildcards are never hashed. `#` may only be the
//!   last level [MQTT-4.7.1-2], so its slot holds a value, not a node.
//! - **Few children in a `Vec`, many in a `hashbrown` map** (`Levels`). Most nodes have one
//!   child (`device/<id>` → `telemetry`), and the smallest hash table has 4 buckets, so a map in
//!   every node cost 460 heap bytes per `device/<id>/telemetry` filter; up to 8 children in a
//!   `Vec` compared by string, and a boxed `HashMap<Box<str>, Node>` past that, cost 163 and
//!   match about twice as fast (`benches/RESULTS.md`). The route table is replicated on every
//!   shard, so these bytes count once per core.
//! - **Keys are copied.** Levels are stored as `Box<str>` copied from the filter, never as slices
//!   of a network buffer: a small key held for the life of a subscription would pin its whole read
//!   buffer (STYLE.md §4, nats-server `sublist.go`).
//! - **Deep input never overflows the stack.** A valid filter or topic may have up to 32,768
//!   levels (65,535 bytes of `/`), and both come from the network. So nothing here recurses over
//!   levels: insert and lookup walk a loop, matching keeps its pending `+` branches on a small
//!   explicit stack, removal walks twice instead of unwinding a recursion, and a node's `Drop`
//!   dismantles its subtree with a loop.
//! - **No allocation while matching.** [`Trie::for_each_match`] reads levels by byte offset and
//!   keeps up to 16 pending branches in an array on the stack; only a walk with more branch points
//!   pending at once (a literal and a `+` child at each of 16 levels) spills to the heap.
//! - **Removal prunes.** [`Trie::remove`] drops every node left without a value or child, and
//!   children storage shrinks once a quarter full, so memory follows the live filters under
//!   subscribe/unsubscribe churn rather than their high-water mark.
//! - **No match cache.** nats-server caches topic → result because its sublist sits behind a
//!   lock. Here a match costs 60–90 ns on a core-local structure; a cache hit measured 18 ns, but
//!   fleet and chat topics (`device/<id>/...`, one per client) rarely repeat, a miss adds the
//!   cache's own hashing and insertion, and every subscribe and unsubscribe, thousands a second
//!   at connect time, would invalidate it. The publishes that do repeat a topic are fan-outs, where
//!   delivering to the subscribers costs far more than the match.
//!
//! Filters are expected to be valid (`shardmq_codec::topic::valid_filter`, checked by the codec).
//! Every method is still total on any string: a `#` that is not the last level, or a level such
//! as `a+`, is stored as an ordinary literal level, which no valid topic name can equal, so such a
//! filter is kept and listed but matches nothing.

use std::fmt;
use std::mem;

use hashbrown::HashMap;

/// Topic level separator (MQTT 3.1.1 §4.7.1.1).
pub(crate) const SEPARATOR: char = '/';

/// Position meaning "every level has been consumed" in walks that read levels by byte offset.
pub(crate) const END: usize = usize::MAX;

/// How many pending match branches [`Trie::for_each_match`] keeps on the stack before spilling
/// to the heap.
const INLINE_PENDING: usize = 16;

/// A map from MQTT topic filters to one value each, matched against topic names.
///
/// Runs on the owning shard only. See the [module docs](self) for its shape.
pub struct Trie<V> {
    root: Node<V>,
    /// Number of stored filters (values), kept so `len` is O(1).
    len: usize,
}

/// One topic level. The root stands for "before the first level" and never holds a value of its
/// own (a filter has at least one level).
struct Node<V> {
    /// The value of the filter that ends at this level.
    value: Option<V>,
    /// The value of the filter `<this level>/#` (or `#` at the root).
    hash: Option<V>,
    /// The `+` child; boxed so a leaf stays small.
    plus: Option<Box<Node<V>>>,
    /// Literal children by level.
    children: Levels<Node<V>>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Self {
            value: None,
            hash: None,
            plus: None,
            children: Levels::default(),
        }
    }
}

impl<V> Node<V> {
    /// Number of outgoing edges (literal children and `+`).
    fn edges(&self) -> usize {
        self.children.len() + usize::from(self.plus.is_some())
    }

    /// The child one level down for `level`, if any.
    fn child(&self, level: &str) -> Option<&Node<V>> {
        if level == "+" {
            self.plus.as_deref()
        } else {
            self.children.get(level)
        }
    }

    /// The mutable child one level down for `level`, if any.
    fn child_mut(&mut self, level: &str) -> Option<&mut Node<V>> {
        if level == "+" {
            self.plus.as_deref_mut()
        } else {
            self.children.get_mut(level)
        }
    }

    /// The child one level down for `level`, created empty if absent. The key is copied.
    fn child_or_insert(&mut self, level: &str) -> &mut Node<V> {
        if level == "+" {
            self.plus.get_or_insert_with(Box::default)
        } else {
            self.children.get_or_insert_default(level)
        }
    }

    /// Detaches the child for `level` and returns it.
    fn take_child(&mut self, level: &str) -> Option<Node<V>> {
        if level == "+" {
            self.plus.take().map(|node| *node)
        } else {
            self.children.remove(level)
        }
    }
}

impl<V> Drop for Node<V> {
    /// Drops the subtree with a loop: the derived drop would recurse once per level, and a valid
    /// filter may be 32,768 levels deep. A chain (what removal prunes) needs no heap; a wide
    /// subtree keeps its pending siblings in a `Vec`.
    fn drop(&mut self) {
        if self.plus.is_none() && self.children.is_empty() {
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
    let mut children = node
        .children
        .take_values()
        .chain(node.plus.take().map(|plus| *plus));
    let first = children.next();
    pending.extend(children);
    first
}

/// Up to this many children a node keeps them in a `Vec`; past it, in a hash map.
const FEW: usize = 8;

/// The literal children of a node, by level. Shared with the retained index.
///
/// Most nodes of a real trie have one child (`device/<id>` → `telemetry`), and the smallest
/// `hashbrown` table holds 4 buckets, so a map in every node costs about four entries per entry:
/// 460 heap bytes per `device/<id>/telemetry` filter, against 162 this way (`benches/RESULTS.md`).
/// So up to [`FEW`] children sit in a `Vec` grown 1, 2, 4, 8 and are found by comparing strings,
/// which at that size beats hashing; past [`FEW`] a `hashbrown::HashMap` takes over, boxed so a
/// small node stays one `Vec` wide. A map that falls to half of [`FEW`] turns back into a `Vec`
/// (the gap keeps a node at the boundary from converting on every insert/remove), and both shrink
/// once a quarter full, so memory tracks the live children, not their high-water mark.
pub(crate) enum Levels<N> {
    Few(Vec<(Box<str>, N)>),
    Many(Box<HashMap<Box<str>, N>>),
}

impl<N> Default for Levels<N> {
    fn default() -> Self {
        Self::Few(Vec::new())
    }
}

impl<N> Levels<N> {
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Few(few) => few.len(),
            Self::Many(map) => map.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn get(&self, level: &str) -> Option<&N> {
        self.get_key_value(level).map(|(_, node)| node)
    }

    /// The stored key and child for `level`.
    pub(crate) fn get_key_value(&self, level: &str) -> Option<(&str, &N)> {
        match self {
            Self::Few(few) => few
                .iter()
                .find(|(key, _)| **key == *level)
                .map(|(key, node)| (&**key, node)),
            Self::Many(map) => map.get_key_value(level).map(|(key, node)| (&**key, node)),
        }
    }

    pub(crate) fn get_mut(&mut self, level: &str) -> Option<&mut N> {
        match self {
            Self::Few(few) => few
                .iter_mut()
                .find(|(key, _)| **key == *level)
                .map(|(_, node)| node),
            Self::Many(map) => map.get_mut(level),
        }
    }

    /// The child for `level`, inserted as `N::default()` (with a copied key) if absent.
    pub(crate) fn get_or_insert_default(&mut self, level: &str) -> &mut N
    where
        N: Default,
    {
        if let Self::Few(few) = self {
            if few.len() >= FEW && !few.iter().any(|(key, _)| **key == *level) {
                let map = mem::take(few).into_iter().collect();
                *self = Self::Many(Box::new(map));
            }
        }
        match self {
            Self::Few(few) => {
                let index = match few.iter().position(|(key, _)| **key == *level) {
                    Some(index) => index,
                    None => {
                        if few.len() == few.capacity() {
                            few.reserve_exact(few.len().max(1));
                        }
                        few.push((level.into(), N::default()));
                        few.len() - 1
                    }
                };
                &mut few[index].1
            }
            Self::Many(map) => map.entry_ref(level).or_default(),
        }
    }

    /// Removes and returns the child for `level`, shrinking the storage as described above.
    pub(crate) fn remove(&mut self, level: &str) -> Option<N> {
        match self {
            Self::Few(few) => {
                let index = few.iter().position(|(key, _)| **key == *level)?;
                let (_, node) = few.swap_remove(index);
                if few.is_empty() {
                    *few = Vec::new();
                } else if few.len() * 4 <= few.capacity() {
                    few.shrink_to(few.len() * 2);
                }
                Some(node)
            }
            Self::Many(map) => {
                let node = map.remove(level)?;
                if map.len() <= FEW / 2 {
                    let few = mem::take(&mut **map).into_iter().collect();
                    *self = Self::Few(few);
                } else if map.len() * 4 < map.capacity() {
                    map.shrink_to(map.len() * 2);
                }
                Some(node)
            }
        }
    }

    /// Every `(level, child)`, in unspecified order.
    pub(crate) fn iter(&self) -> LevelsIter<'_, N> {
        match self {
            Self::Few(few) => LevelsIter::Few(few.iter()),
            Self::Many(map) => LevelsIter::Many(map.iter()),
        }
    }

    /// Moves every child out, leaving `self` empty.
    pub(crate) fn take_values(&mut self) -> impl Iterator<Item = N> {
        let (few, many) = match mem::take(self) {
            Self::Few(few) => (Some(few), None),
            Self::Many(map) => (None, Some(*map)),
        };
        let few = few.into_iter().flatten().map(|(_, node)| node);
        few.chain(many.into_iter().flatten().map(|(_, node)| node))
    }
}

impl<N: fmt::Debug> fmt::Debug for Levels<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Iterator of [`Levels::iter`].
pub(crate) enum LevelsIter<'a, N> {
    Few(std::slice::Iter<'a, (Box<str>, N)>),
    Many(hashbrown::hash_map::Iter<'a, Box<str>, N>),
}

impl<'a, N> Iterator for LevelsIter<'a, N> {
    type Item = (&'a str, &'a N);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::Few(few) => few.next().map(|(key, node)| (&**key, node)),
            Self::Many(map) => map.next().map(|(key, node)| (&**key, node)),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Self::Few(few) => few.size_hint(),
            Self::Many(map) => map.size_hint(),
        }
    }
}

/// Splits the topic level starting at byte `pos` off `topic`: returns it and the start of the
/// next level, or [`END`] if it was the last.
pub(crate) fn level_at(topic: &str, pos: usize) -> (&str, usize) {
    let rest = &topic[pos..];
    match rest.find(SEPARATOR) {
        Some(i) => (&rest[..i], pos + i + 1),
        None => (rest, END),
    }
}

/// The pending branches of one [`Trie::for_each_match`] walk: a LIFO stack that lives in an array
/// on the caller's stack and spills to a `Vec` (allocated only then) past [`INLINE_PENDING`].
struct Pending<'a, V> {
    inline: [Option<(&'a Node<V>, usize)>; INLINE_PENDING],
    inline_len: usize,
    spill: Vec<(&'a Node<V>, usize)>,
}

impl<'a, V> Pending<'a, V> {
    fn new() -> Self {
        Self {
            inline: [None; INLINE_PENDING],
            inline_len: 0,
            spill: Vec::new(),
        }
    }

    fn push(&mut self, entry: (&'a Node<V>, usize)) {
        if self.inline_len < INLINE_PENDING {
            self.inline[self.inline_len] = Some(entry);
            self.inline_len += 1;
        } else {
            self.spill.push(entry);
        }
    }

    fn pop(&mut self) -> Option<(&'a Node<V>, usize)> {
        // The spill only fills once the array is full, so it holds the most recent entries.
        if let Some(entry) = self.spill.pop() {
            return Some(entry);
        }
        if self.inline_len == 0 {
            return None;
        }
        self.inline_len -= 1;
        self.inline[self.inline_len].take()
    }
}

impl<V> Default for Trie<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> Trie<V> {
    /// An empty trie. Does not allocate.
    pub fn new() -> Self {
        Self {
            root: Node::default(),
            len: 0,
        }
    }

    /// Number of stored filters.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if no filter is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value stored for exactly `filter` (no wildcard matching: `a/+` finds only `a/+`).
    pub fn get(&self, filter: &str) -> Option<&V> {
        let mut node = &self.root;
        let mut levels = filter.split(SEPARATOR).peekable();
        while let Some(level) = levels.next() {
            if levels.peek().is_none() {
                return if level == "#" {
                    node.hash.as_ref()
                } else {
                    node.child(level)?.value.as_ref()
                };
            }
            node = node.child(level)?;
        }
        None // unreachable: `split` yields at least one level
    }

    /// The mutable value stored for exactly `filter`.
    pub fn get_mut(&mut self, filter: &str) -> Option<&mut V> {
        let mut node = &mut self.root;
        let mut levels = filter.split(SEPARATOR).peekable();
        while let Some(level) = levels.next() {
            if levels.peek().is_none() {
                return if level == "#" {
                    node.hash.as_mut()
                } else {
                    node.child_mut(level)?.value.as_mut()
                };
            }
            node = node.child_mut(level)?;
        }
        None // unreachable: `split` yields at least one level
    }

    /// True if a value is stored for exactly `filter`.
    pub fn contains(&self, filter: &str) -> bool {
        self.get(filter).is_some()
    }

    /// The value for `filter`, inserted from `make` first if absent (e.g. the first subscriber of
    /// a filter creates its subscriber set).
    pub fn get_or_insert_with(&mut self, filter: &str, make: impl FnOnce() -> V) -> &mut V {
        let slot = slot_or_insert(&mut self.root, filter);
        if slot.is_none() {
            self.len += 1;
        }
        slot.get_or_insert_with(make)
    }

    /// Stores `value` for `filter`; returns the value it replaced.
    pub fn insert(&mut self, filter: &str, value: V) -> Option<V> {
        let old = slot_or_insert(&mut self.root, filter).replace(value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes and returns the value for `filter`, pruning every node left empty.
    pub fn remove(&mut self, filter: &str) -> Option<V> {
        // First walk, read-only: check the value exists and find `keep`, the depth of the
        // deepest node on the path that still holds something once the value is gone. Everything
        // below it is a chain that only led to the value, and is cut off in one piece. Two walks
        // instead of a recursion, because a filter may be 32,768 levels deep.
        let levels = || filter.split(SEPARATOR);
        let depth = levels().count(); // levels on the path; the root is depth 0
        let hash = filter == "#" || filter.ends_with("/#");
        // With `/#` the value sits in the hash slot of the node one level up.
        let target_depth = if hash { depth - 1 } else { depth };
        let mut keep = 0;
        let mut node = &self.root;
        let mut steps = levels();
        for d in 0..target_depth {
            let level = steps.next()?;
            // `node` is at depth `d`: does it hold anything besides the edge we follow?
            if d == 0 || node.value.is_some() || node.hash.is_some() || node.edges() > 1 {
                keep = d;
            }
            node = node.child(level)?;
        }
        let (exists, others) = if hash {
            (
                node.hash.is_some(),
                node.value.is_some() || node.edges() > 0,
            )
        } else {
            (
                node.value.is_some(),
                node.hash.is_some() || node.edges() > 0,
            )
        };
        if !exists {
            return None;
        }
        if target_depth == 0 || others {
            keep = target_depth;
        }

        // Second walk, mutable: down to the kept node, where the dead chain (if any) is cut off
        // whole, then on inside the detached chain to the value.
        let mut steps = levels();
        let mut node = &mut self.root;
        for _ in 0..keep {
            node = node.child_mut(steps.next()?)?;
        }
        let mut detached = None;
        if keep < target_depth {
            node = detached.insert(node.take_child(steps.next()?)?);
            for _ in keep + 1..target_depth {
                node = node.child_mut(steps.next()?)?;
            }
        }
        let value = if hash {
            node.hash.take()
        } else {
            node.value.take()
        };
        if value.is_some() {
            self.len -= 1;
        }
        // `detached` drops here; `Node::drop` dismantles the chain without recursing.
        value
    }

    /// Calls `f` once for every stored filter that matches the topic name `topic`.
    ///
    /// MQTT 3.1.1 §4.7 / 5.0 §4.7: `+` matches exactly one level, `#` matches the rest including
    /// the parent level (`a/#` matches `a`, §4.7.1.2), empty levels are levels (`/+` matches
    /// `/a`), and a topic starting with `$` is not matched by a filter whose first level is `+` or
    /// `#` [MQTT-4.7.2-1]. Order is unspecified. Does not allocate unless the walk has more than
    /// 16 branches pending at once.
    pub fn for_each_match(&self, topic: &str, mut f: impl FnMut(&V)) {
        let dollar = topic.starts_with('$');
        let mut pending = Pending::new();
        let mut next = Some((&self.root, 0));
        // `pos` is the byte offset of the next topic level to consume, or `END`.
        while let Some((node, pos)) = next.take().or_else(|| pending.pop()) {
            if pos == END {
                if let Some(value) = &node.value {
                    f(value);
                }
                // `a/#` also matches `a` (§4.7.1.2).
                if let Some(value) = &node.hash {
                    f(value);
                }
                continue;
            }
            // Only the root is visited at position 0; its wildcards skip `$` topics.
            let wildcards = pos != 0 || !dollar;
            if wildcards {
                if let Some(value) = &node.hash {
                    f(value);
                }
            }
            let (level, after) = level_at(topic, pos);
            let literal = if node.children.is_empty() {
                None
            } else {
                node.children.get(level)
            };
            let plus = node.plus.as_deref().filter(|_| wildcards);
            match (literal, plus) {
                (Some(literal), Some(plus)) => {
                    pending.push((plus, after));
                    next = Some((literal, after));
                }
                (Some(child), None) | (None, Some(child)) => next = Some((child, after)),
                (None, None) => {}
            }
        }
    }

    /// Every stored `(filter, value)`, in unspecified order: for replicating the route table to a
    /// shard, or listing subscriptions. Allocates each filter string.
    pub fn iter(&self) -> impl Iterator<Item = (String, &V)> + '_ {
        Iter::new(&self.root)
    }

    /// Number of nodes below the root, for tests that check pruning.
    #[cfg(test)]
    fn node_count(&self) -> usize {
        let mut count = 0;
        let mut pending = vec![&self.root];
        while let Some(node) = pending.pop() {
            pending.extend(node.children.iter().map(|(_, child)| child));
            pending.extend(node.plus.as_deref());
            count += node.edges();
        }
        count
    }
}

/// The slot (`value`, or `hash` for a trailing `#`) for `filter` under `root`, creating the path.
fn slot_or_insert<'a, V>(root: &'a mut Node<V>, filter: &str) -> &'a mut Option<V> {
    let mut node = root;
    let mut levels = filter.split(SEPARATOR).peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        if last && level == "#" {
            return &mut node.hash;
        }
        node = node.child_or_insert(level);
        if last {
            return &mut node.value;
        }
    }
    // unreachable: `split` yields at least one level, and the last one returns above
    &mut node.value
}

/// A step of the [`Trie::iter`] walk. The walk keeps the filter of the current node in one
/// `String`: a step first cuts it back to `parent_len` bytes (the filter of the node that pushed
/// it, still intact because the stack is LIFO), then appends its own level.
enum Step<'a, V> {
    /// Visit a child node reached by `level` (`"+"` for the plus slot).
    Node {
        node: &'a Node<V>,
        level: &'a str,
        parent_len: usize,
        first_level: bool,
    },
    /// Yield the value of the hash slot of the node whose filter is `parent_len` bytes long.
    Hash {
        value: &'a V,
        parent_len: usize,
        first_level: bool,
    },
}

/// Iterator of [`Trie::iter`]: a depth-first walk with an explicit stack and one path buffer,
/// so a deep filter costs its length once, not once per level.
struct Iter<'a, V> {
    filter: String,
    pending: Vec<Step<'a, V>>,
}

impl<'a, V> Iter<'a, V> {
    fn new(root: &'a Node<V>) -> Self {
        let mut iter = Self {
            filter: String::new(),
            pending: Vec::new(),
        };
        iter.expand(root, true);
        iter
    }

    /// Pushes the steps for `node`'s children and hash slot; `self.filter` is `node`'s filter.
    fn expand(&mut self, node: &'a Node<V>, root: bool) {
        let parent_len = self.filter.len();
        let child = |(level, node): (&'a str, &'a Node<V>)| Step::Node {
            node,
            level,
            parent_len,
            first_level: root,
        };
        self.pending.extend(
            node.children
                .iter()
                .chain(node.plus.as_deref().map(|plus| ("+", plus)))
                .map(child),
        );
        if let Some(value) = &node.hash {
            self.pending.push(Step::Hash {
                value,
                parent_len,
                first_level: root,
            });
        }
    }

    /// Cuts the filter back to `parent_len` and appends `level`.
    fn descend(&mut self, parent_len: usize, first_level: bool, level: &str) {
        self.filter.truncate(parent_len);
        if !first_level {
            self.filter.push(SEPARATOR);
        }
        self.filter.push_str(level);
    }
}

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = (String, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.pending.pop()? {
                Step::Hash {
                    value,
                    parent_len,
                    first_level,
                } => {
                    self.descend(parent_len, first_level, "#");
                    return Some((self.filter.clone(), value));
                }
                Step::Node {
                    node,
                    level,
                    parent_len,
                    first_level,
                } => {
                    self.descend(parent_len, first_level, level);
                    self.expand(node, false);
                    if let Some(value) = &node.value {
                        return Some((self.filter.clone(), value));
                    }
                }
            }
        }
    }
}

impl<V: fmt::Debug> fmt::Debug for Trie<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::collection::vec;
    use proptest::prelude::*;
    use shardmq_codec::topic::{matches, valid_filter};

    use super::strategies::{filter, topic, NARROW, WIDE};
    use super::*;

    /// A trie whose value is the filter itself, so a match names its filter.
    fn trie_of(filters: &[&str]) -> Trie<String> {
        let mut trie = Trie::new();
        for filter in filters {
            trie.insert(filter, filter.to_string());
        }
        trie
    }

    /// The matched filters, sorted, duplicates kept (a filter must match at most once).
    fn matched<V: Clone + Ord>(trie: &Trie<V>, topic: &str) -> Vec<V> {
        let mut out = Vec::new();
        trie.for_each_match(topic, |value| out.push(value.clone()));
        out.sort();
        out
    }

    /// Asserts that `topic` matches exactly `expected` among the filters of `trie`, and that the
    /// naive matcher agrees.
    fn assert_matches(trie: &Trie<String>, topic: &str, expected: &[&str]) {
        let mut expected: Vec<String> = expected.iter().map(|f| f.to_string()).collect();
        expected.sort();
        assert_eq!(matched(trie, topic), expected, "topic {topic:?}");
        let naive: Vec<String> = trie
            .iter()
            .map(|(filter, _)| filter)
            .filter(|filter| matches(topic, filter))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(naive, expected, "naive, topic {topic:?}");
    }

    #[test]
    fn spec_multi_level_wildcard() {
        // MQTT 3.1.1 §4.7.1.2
        let trie = trie_of(&["sport/tennis/player1/#", "sport/#", "#", "sport/tennis/#"]);
        let all = ["sport/tennis/player1/#", "sport/#", "#", "sport/tennis/#"];
        assert_matches(&trie, "sport/tennis/player1", &all);
        assert_matches(&trie, "sport/tennis/player1/ranking", &all);
        assert_matches(&trie, "sport/tennis/player1/score/wimbledon", &all);
        assert_matches(&trie, "sport", &["sport/#", "#"]);
        assert_matches(&trie, "sport/", &["sport/#", "#"]);
        assert_matches(&trie, "other", &["#"]);
    }

    #[test]
    fn spec_single_level_wildcard() {
        // MQTT 3.1.1 §4.7.1.3
        let trie = trie_of(&["sport/tennis/+", "sport/+", "+", "+/+", "/+", "+/tennis/#"]);
        assert_matches(
            &trie,
            "sport/tennis/player1",
            &["sport/tennis/+", "+/tennis/#"],
        );
        assert_matches(
            &trie,
            "sport/tennis/player2",
            &["sport/tennis/+", "+/tennis/#"],
        );
        assert_matches(&trie, "sport/tennis/player1/ranking", &["+/tennis/#"]);
        assert_matches(&trie, "sport", &["+"]);
        assert_matches(&trie, "sport/", &["sport/+", "+/+"]);
        assert_matches(&trie, "/finance", &["+/+", "/+"]);
        assert_matches(&trie, "sport/tennis", &["sport/+", "+/+", "+/tennis/#"]);
    }

    #[test]
    fn spec_dollar_topics() {
        // MQTT 3.1.1 §4.7.2 [MQTT-4.7.2-1]
        let filters = [
            "#",
            "+/monitor/Clients",
            "$SYS/#",
            "$SYS/monitor/+",
            "+/+/+",
            "+",
            "a/+",
            "a/#",
        ];
        let trie = trie_of(&filters);
        assert_matches(&trie, "$SYS/monitor/Clients", &["$SYS/#", "$SYS/monitor/+"]);
        assert_matches(&trie, "$SYS", &["$SYS/#"]);
        assert_matches(
            &trie,
            "x/monitor/Clients",
            &["#", "+/monitor/Clients", "+/+/+"],
        );
        // `$` only matters in the first level.
        assert_matches(&trie, "a/$x", &["#", "a/+", "a/#"]);
        assert_matches(&trie, "$", &[]);
    }

    #[test]
    fn empty_levels_are_levels() {
        let trie = trie_of(&["/", "//", "+/+", "/#", "+", "a//b", "a/+/b"]);
        assert_matches(&trie, "/", &["/", "+/+", "/#"]);
        assert_matches(&trie, "//", &["//", "/#"]);
        assert_matches(&trie, "a//b", &["a//b", "a/+/b"]);
        assert_matches(&trie, "a", &["+"]);
    }

    #[test]
    fn get_insert_replace_and_len() {
        let mut trie = Trie::new();
        assert!(trie.is_empty());
        assert_eq!(trie.insert("a/+", 1), None);
        assert_eq!(trie.insert("a/#", 2), None);
        assert_eq!(trie.insert("a", 3), None);
        assert_eq!(trie.insert("a/+", 4), Some(1));
        assert_eq!(trie.len(), 3);
        assert_eq!(trie.get("a/+"), Some(&4));
        assert_eq!(trie.get("a/#"), Some(&2));
        assert_eq!(trie.get("a/b"), None, "get is exact, not a match");
        assert_eq!(trie.get("a/+/c"), None);
        assert!(trie.contains("a"));
        *trie.get_mut("a/#").unwrap() += 10;
        assert_eq!(trie.get("a/#"), Some(&12));
        assert_eq!(trie.get_mut("b"), None);
        *trie.get_or_insert_with("a", || unreachable!()) += 1;
        assert_eq!(trie.get("a"), Some(&4));
        assert_eq!(*trie.get_or_insert_with("b/#", || 7), 7);
        assert_eq!(trie.len(), 4);
    }

    #[test]
    fn remove_prunes_only_dead_nodes() {
        let mut trie = trie_of(&["a/b/c", "a/b", "a/+/#", "#", "a/b/c/d/e"]);
        let nodes = trie.node_count();
        assert_eq!(trie.remove("a/b/c/x"), None);
        assert_eq!(
            trie.remove("a/b/c/d"),
            None,
            "a node on the path is no filter"
        );
        assert_eq!(trie.node_count(), nodes);
        assert_eq!(trie.remove("a/b/c/d/e").as_deref(), Some("a/b/c/d/e"));
        assert_eq!(trie.node_count(), nodes - 2, "d and e pruned, c kept");
        assert_eq!(trie.remove("a/b").as_deref(), Some("a/b"));
        assert_eq!(trie.node_count(), nodes - 2, "b still leads to c");
        assert_eq!(trie.remove("a/+/#").as_deref(), Some("a/+/#"));
        assert_eq!(trie.node_count(), nodes - 3, "the + node pruned");
        assert_eq!(trie.remove("#").as_deref(), Some("#"));
        assert_eq!(trie.remove("a/b/c").as_deref(), Some("a/b/c"));
        assert_eq!(trie.remove("a/b/c"), None);
        assert_eq!((trie.len(), trie.node_count()), (0, 0));
        assert_matches(&trie, "a/b/c", &[]);
    }

    #[test]
    fn iter_lists_every_filter() {
        let filters = [
            "#", "+", "/", "/#", "a//b", "a/+/#", "+/+", "$SYS/#", "a", "a/#",
        ];
        let trie = trie_of(&filters);
        let listed: BTreeMap<String, String> = trie.iter().map(|(f, v)| (f, v.clone())).collect();
        let expected: BTreeMap<String, String> = filters
            .iter()
            .map(|f| (f.to_string(), f.to_string()))
            .collect();
        assert_eq!(listed, expected);
        assert_eq!(trie.iter().count(), trie.len());
        assert_eq!(format!("{:?}", trie_of(&["a/#"])), r#"{"a/#": "a/#"}"#);
    }

    #[test]
    fn invalid_filters_are_kept_but_match_nothing() {
        let filters = ["a/#/b", "a+", "#/a", "a/b#"];
        let mut trie = trie_of(&filters);
        for filter in filters {
            assert!(!valid_filter(filter));
            assert_eq!(trie.get(filter).map(String::as_str), Some(filter));
        }
        assert_eq!(trie.iter().count(), filters.len());
        for topic in ["a/x/b", "a", "a/b", "x/a", "a/b/c"] {
            // (The naive matcher is only defined for valid filters, so it is not asked here.)
            assert_eq!(matched(&trie, topic), Vec::<String>::new(), "{topic}");
        }
        for filter in filters {
            assert!(trie.remove(filter).is_some());
        }
        assert_eq!(trie.node_count(), 0);
    }

    #[test]
    fn many_branch_points_spill_to_the_heap() {
        // Filter k is k empty levels then `+` levels: on the all-empty topic, the walk has a
        // literal and a `+` branch at each of 40 levels, more than `INLINE_PENDING`.
        const LEVELS: usize = 60;
        let filters: Vec<String> = (0..=40)
            .map(|k| {
                let mut levels = vec![""; k];
                levels.resize(LEVELS, "+");
                levels.join("/")
            })
            .collect();
        let refs: Vec<&str> = filters.iter().map(String::as_str).collect();
        let trie = trie_of(&refs);
        let topic = "/".repeat(LEVELS - 1);
        assert_matches(&trie, &topic, &refs);
    }

    #[test]
    fn deepest_filters_do_not_overflow_a_small_stack() {
        // 65,535-byte filters and topics have up to 32,768 levels; nothing may recurse per level.
        let run = || {
            let levels = 32_768;
            let exact = "/".repeat(levels - 1);
            let plus = vec!["+"; levels].join("/");
            let hash = format!("{}/#", "/".repeat(levels - 2));
            let deep_topic = format!("x{exact}");
            for filter in [&exact, &plus, &hash] {
                assert!(valid_filter(filter) && filter.len() <= 65_535);
            }
            let mut trie = trie_of(&[&exact, &plus, &hash, "x/#"]);
            assert_eq!(matched(&trie, &exact).len(), 3);
            assert_eq!(matched(&trie, &deep_topic), [plus.as_str(), "x/#"]);
            assert_eq!(trie.iter().count(), 4);
            assert_eq!(trie.remove(&exact).as_ref(), Some(&exact));
            assert_eq!(trie.remove(&hash).as_ref(), Some(&hash));
            assert_eq!(trie.get(&plus), Some(&plus));
            drop(trie); // dismantles the `+` chain
        };
        std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(run)
            .unwrap()
            .join()
            .unwrap();
    }

    /// Trie operations on filters picked from a pool, so they collide often.
    #[derive(Clone, Debug)]
    enum Op {
        Insert(prop::sample::Index, u16),
        GetOrInsert(prop::sample::Index, u16),
        Remove(prop::sample::Index),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (any::<prop::sample::Index>(), any::<u16>()).prop_map(|(i, v)| Op::Insert(i, v)),
            (any::<prop::sample::Index>(), any::<u16>()).prop_map(|(i, v)| Op::GetOrInsert(i, v)),
            any::<prop::sample::Index>().prop_map(Op::Remove),
        ]
    }

    /// `for_each_match` returns exactly what the naive matcher finds among `filters`.
    fn check_matches(filters: &[String], topics: &[String]) -> Result<(), TestCaseError> {
        let refs: Vec<&str> = filters.iter().map(String::as_str).collect();
        let trie = trie_of(&refs);
        let distinct: BTreeSet<&String> = filters.iter().collect();
        prop_assert_eq!(trie.len(), distinct.len());
        for topic in topics {
            let expected: Vec<String> = distinct
                .iter()
                .filter(|filter| matches(topic, filter))
                .map(|filter| filter.to_string())
                .collect();
            prop_assert_eq!(matched(&trie, topic), expected, "topic {:?}", topic);
        }
        Ok(())
    }

    /// `ops` on filters from `pool` keep the trie equal to a `BTreeMap` model: return values,
    /// `len`, `get`, `iter`, matching; and removing everything leaves no node.
    fn check_operations(
        pool: &[String],
        ops: &[Op],
        topics: &[String],
    ) -> Result<(), TestCaseError> {
        let mut trie = Trie::new();
        let mut model = BTreeMap::new();
        for op in ops {
            match op {
                Op::Insert(i, v) => {
                    let filter = i.get(pool);
                    prop_assert_eq!(trie.insert(filter, *v), model.insert(filter.clone(), *v));
                }
                Op::GetOrInsert(i, v) => {
                    let filter = i.get(pool);
                    let got = *trie.get_or_insert_with(filter, || *v);
                    prop_assert_eq!(got, *model.entry(filter.clone()).or_insert(*v));
                }
                Op::Remove(i) => {
                    let filter = i.get(pool);
                    prop_assert_eq!(trie.remove(filter), model.remove(filter));
                }
            }
            prop_assert_eq!(trie.len(), model.len());
        }
        let listed: BTreeMap<String, u16> = trie.iter().map(|(f, v)| (f, *v)).collect();
        prop_assert_eq!(&listed, &model);
        for filter in pool {
            prop_assert_eq!(trie.get(filter), model.get(filter));
        }
        for topic in topics {
            let mut expected: Vec<u16> = model
                .iter()
                .filter(|(filter, _)| matches(topic, filter))
                .map(|(_, v)| *v)
                .collect();
            expected.sort();
            prop_assert_eq!(matched(&trie, topic), expected, "topic {:?}", topic);
        }
        for filter in model.keys() {
            prop_assert!(trie.remove(filter).is_some());
        }
        prop_assert!(trie.is_empty());
        prop_assert_eq!(trie.node_count(), 0);
        prop_assert_eq!(trie.iter().count(), 0);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn prop_matches_equal_naive(
            filters in vec(filter(NARROW), 0..40),
            topics in vec(topic(NARROW), 1..20),
        ) {
            check_matches(&filters, &topics)?;
        }

        #[test]
        fn prop_matches_equal_naive_wide(
            filters in vec(filter(WIDE), 0..80),
            topics in vec(topic(WIDE), 1..20),
        ) {
            check_matches(&filters, &topics)?;
        }

        #[test]
        fn prop_operations_equal_model(
            pool in vec(filter(NARROW), 1..12),
            ops in vec(op(), 0..200),
            topics in vec(topic(NARROW), 1..10),
        ) {
            check_operations(&pool, &ops, &topics)?;
        }

        #[test]
        fn prop_operations_equal_model_wide(
            pool in vec(filter(WIDE), 1..40),
            ops in vec(op(), 0..300),
            topics in vec(topic(WIDE), 1..10),
        ) {
            check_operations(&pool, &ops, &topics)?;
        }

        #[test]
        fn prop_levels_equal_model(
            ops in vec((any::<bool>(), 0..24u8, any::<u16>()), 0..300),
        ) {
            let mut levels = Levels::default();
            let mut model = BTreeMap::new();
            for (insert, key, value) in ops {
                let key = key.to_string();
                if insert {
                    *levels.get_or_insert_default(&key) = value;
                    model.insert(key, value);
                } else {
                    prop_assert_eq!(levels.remove(&key), model.remove(&key));
                }
                prop_assert_eq!(levels.len(), model.len());
                match &levels {
                    Levels::Few(few) => {
                        prop_assert!(few.len() <= FEW);
                        prop_assert!(few.capacity() < 4 * few.len() || few.capacity() == 0);
                    }
                    Levels::Many(map) => prop_assert!(map.len() > FEW / 2),
                }
            }
            let listed: BTreeMap<String, u16> =
                levels.iter().map(|(key, value)| (key.to_owned(), *value)).collect();
            prop_assert_eq!(&listed, &model);
            for key in model.keys() {
                prop_assert_eq!(levels.get(key), model.get(key));
            }
        }
    }
}

/// Proptest strategies for topic names and filters, shared by the trie and retained-index tests.
#[cfg(test)]
pub(crate) mod strategies {
    use proptest::prelude::*;
    use shardmq_codec::topic::{valid_filter, valid_name};

    /// A few levels, with an empty one and a `$` one: filters and topics collide often.
    pub(crate) const NARROW: &[&str] = &["a", "b", "", "$x"];

    /// Enough distinct levels that nodes pass `FEW` children and switch to a map.
    pub(crate) const WIDE: &[&str] = &[
        "a", "b", "", "$x", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12",
        "13", "14", "15", "16", "17", "18", "19",
    ];

    /// A valid filter over `names`, with `+` anywhere and `#` last.
    pub(crate) fn filter(names: &'static [&'static str]) -> impl Strategy<Value = String> {
        let level = || prop::sample::select(names);
        let any_level = prop_oneof![4 => level(), 1 => Just("+")];
        let last = prop_oneof![4 => level(), 1 => Just("+"), 1 => Just("#")];
        (prop::collection::vec(any_level, 0..4), last)
            .prop_map(|(mut levels, last)| {
                levels.push(last);
                levels.join("/")
            })
            .prop_filter("valid filter", |filter| valid_filter(filter))
    }

    /// A valid topic name over `names`.
    pub(crate) fn topic(names: &'static [&'static str]) -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(names), 1..5)
            .prop_map(|levels| levels.join("/"))
            .prop_filter("valid topic name", |topic| valid_name(topic))
    }
}
