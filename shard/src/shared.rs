//! Shared subscriptions (MQTT 5.0 §4.8.2, `$share/<group>/<filter>`, and EMQX's `$queue/<filter>`,
//! the group `$queue`), sans I/O: the names, the strategies, and the two tables a shard keeps.
//!
//! # Why two tables
//!
//! A message goes to exactly one member of each group, wherever the members are. No shard may
//! wait for another to decide, so the **publishing shard chooses the shard** and the **chosen
//! shard chooses the member**:
//!
//! - [`GroupRoute`], replicated on every shard like the route table: for each group on a filter,
//!   how many members each shard has, and how many of them are connected. Shards announce their
//!   counts (`ShardMsg::ShareCounts`) when they change; a shard's first member waits for every
//!   peer's acknowledgement, as a first ordinary subscriber does, so a message published anywhere
//!   after its SUBACK reaches the group.
//! - [`Group`], on the shard where the members are: the members (in the order they joined) and a
//!   cursor. It picks one that is connected, allowed to read the topic and has room for the
//!   message; with none, the message moves on to another shard that has connected members
//!   ([`Pick::tried`] keeps it from coming back), then to a member with no connection (its queue
//!   keeps it), and is dropped and counted only when the group has no member left at all.
//!
//! # Strategies
//!
//! The publishing shard weighs shards by their connected members, so every strategy spreads over
//! members, not shards: `round_robin` (a cursor per group on each publishing shard, and one per
//! group on each member's shard), `random`, `hash_clientid` and `hash_topic` (the same publisher,
//! or topic, reaches the same member while the group does not change), and `local`: a member on
//! the publishing shard when there is one, so the message crosses no ring and shares no cache
//! line with another core; round robin over the other shards otherwise.

use std::cell::Cell;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use hashbrown::HashMap;
use shardmq_codec::{ByteStr, SubscriptionOptions};

use crate::mesh::{ConnId, ShardId, ShardSet};

/// The group of `$queue/<filter>` subscriptions (EMQX's name for a single shared queue).
pub const QUEUE_GROUP: &str = "$queue";

/// What a subscription's filter names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// An ordinary filter.
    Plain,
    /// A shared subscription: the group, and the filter its members share.
    Shared {
        /// Share name.
        group: &'a str,
        /// The topic filter.
        filter: &'a str,
    },
    /// `$share/...` that is not a valid shared subscription (empty share name, a wildcard in
    /// it, or no filter) [MQTT-4.8.2-1, MQTT-4.8.2-2].
    Invalid,
}

/// Reads a subscription's filter: `$share/<group>/<filter>`, `$queue/<filter>` or a plain one.
/// The filter part is not validated here.
pub fn parse(full: &str) -> Parsed<'_> {
    if let Some(rest) = full.strip_prefix("$share/") {
        let Some((group, filter)) = rest.split_once('/') else {
            return Parsed::Invalid;
        };
        if group.is_empty() || group.contains(['+', '#']) || filter.is_empty() {
            return Parsed::Invalid;
        }
        Parsed::Shared { group, filter }
    } else if let Some(filter) = full.strip_prefix("$queue/") {
        if filter.is_empty() {
            return Parsed::Invalid;
        }
        Parsed::Shared {
            group: QUEUE_GROUP,
            filter,
        }
    } else {
        Parsed::Plain
    }
}

/// The topic filter a subscription matches with: the filter of a shared subscription, the
/// whole of any other. Access rules judge this one.
pub fn topic_filter(full: &str) -> &str {
    match parse(full) {
        Parsed::Shared { filter, .. } => filter,
        Parsed::Plain | Parsed::Invalid => full,
    }
}

/// How a group's member is chosen for each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Each member in turn.
    #[default]
    RoundRobin,
    /// A member at random.
    Random,
    /// The same publisher's messages to the same member.
    HashClientId,
    /// The same topic's messages to the same member.
    HashTopic,
    /// A member on the publishing shard when there is one.
    Local,
}

impl Strategy {
    /// Every strategy's configuration name.
    pub const NAMES: [&'static str; 5] = [
        "round_robin",
        "random",
        "hash_clientid",
        "hash_topic",
        "local",
    ];

    /// Its configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::Random => "random",
            Strategy::HashClientId => "hash_clientid",
            Strategy::HashTopic => "hash_topic",
            Strategy::Local => "local",
        }
    }

    /// Whether the member follows from the message's key alone (the hash strategies), rather
    /// than from the member shard's own cursor.
    fn keyed(self) -> bool {
        matches!(self, Strategy::HashClientId | Strategy::HashTopic)
    }
}

impl FromStr for Strategy {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Ok(match name {
            "round_robin" => Strategy::RoundRobin,
            "random" => Strategy::Random,
            "hash_clientid" => Strategy::HashClientId,
            "hash_topic" => Strategy::HashTopic,
            "local" => Strategy::Local,
            _ => {
                return Err(format!(
                    "unknown shared subscription strategy {name:?} (expected one of {})",
                    Strategy::NAMES.join(", ")
                ))
            }
        })
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The strategy of every group: one for all, and exceptions by share name.
#[derive(Debug, Clone, Default)]
pub struct Strategies {
    /// The strategy of groups not named in `groups`.
    pub default: Strategy,
    /// Share name → strategy.
    pub groups: std::collections::HashMap<String, Strategy>,
}

impl Strategies {
    /// The strategy of `group`.
    pub fn of(&self, group: &str) -> Strategy {
        self.groups.get(group).copied().unwrap_or(self.default)
    }
}

/// A shard's member counts for one group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Members whose client is connected.
    pub online: u32,
    /// All members, with or without a connection.
    pub total: u32,
}

/// One group on one filter, as every shard sees it: each shard's member counts.
#[derive(Debug)]
pub struct GroupRoute {
    /// `$share/<group>/<filter>` as subscribed, to name the group in messages between shards.
    pub key: ByteStr,
    /// Member counts by shard.
    counts: Vec<Counts>,
    /// This shard's round-robin position over the group's members.
    cursor: Cell<u64>,
}

impl GroupRoute {
    /// A group with no member yet, on a broker of `shards` shards.
    pub fn new(key: ByteStr, shards: usize) -> Self {
        Self {
            key,
            counts: vec![Counts::default(); shards],
            cursor: Cell::new(0),
        }
    }

    /// Sets `shard`'s counts.
    pub fn set(&mut self, shard: ShardId, counts: Counts) {
        if let Some(slot) = self.counts.get_mut(shard.0) {
            *slot = counts;
        }
    }

    /// `shard`'s counts.
    pub fn get(&self, shard: ShardId) -> Counts {
        self.counts.get(shard.0).copied().unwrap_or_default()
    }

    /// Whether no shard has a member.
    pub fn is_empty(&self) -> bool {
        self.counts.iter().all(|counts| counts.total == 0)
    }

    /// The next round-robin key.
    pub fn next_turn(&self) -> u64 {
        let turn = self.cursor.get();
        self.cursor.set(turn.wrapping_add(1));
        turn
    }

    /// The shard that delivers a message to this group, leaving out `skip`: chosen by `key`
    /// (a turn, a random number or a hash) weighted by connected members, or by all members
    /// when `online` is false. `local` prefers `me`.
    pub fn choose(
        &self,
        strategy: Strategy,
        me: ShardId,
        key: u64,
        skip: ShardSet,
        online: bool,
    ) -> Option<ShardId> {
        let weight = |shard: usize| {
            if skip.contains(ShardId(shard)) {
                return 0;
            }
            let counts = self.counts[shard];
            u64::from(if online { counts.online } else { counts.total })
        };
        if strategy == Strategy::Local && me.0 < self.counts.len() && weight(me.0) > 0 {
            return Some(me);
        }
        let sum: u64 = (0..self.counts.len()).map(weight).sum();
        if sum == 0 {
            return None;
        }
        let mut at = key % sum;
        for shard in 0..self.counts.len() {
            let weight = weight(shard);
            if at < weight {
                return Some(ShardId(shard));
            }
            at -= weight;
        }
        None
    }
}

/// A member of a group on this shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Its connection (or offline session).
    pub conn: ConnId,
    /// Its subscription's options.
    pub options: SubscriptionOptions,
    /// Its MQTT 5 Subscription Identifier (0: none).
    pub identifier: u32,
}

/// This shard's members of one group on one filter.
#[derive(Debug, Default)]
pub struct Group {
    members: Vec<Member>,
    cursor: usize,
}

impl Group {
    /// Adds or updates a member; returns true if it is new.
    pub fn join(&mut self, member: Member) -> bool {
        match self.members.iter_mut().find(|m| m.conn == member.conn) {
            Some(existing) => {
                *existing = member;
                false
            }
            None => {
                self.members.push(member);
                true
            }
        }
    }

    /// Removes a member; returns whether it was one.
    pub fn leave(&mut self, conn: ConnId) -> bool {
        let Some(index) = self.members.iter().position(|m| m.conn == conn) else {
            return false;
        };
        self.members.remove(index);
        true
    }

    /// Whether the group has no member here.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The members, in the order they joined.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The first member from this message's starting place on that `accepts`: the hash
    /// strategies start at `key`, the others where the group's cursor is (which moves on).
    pub fn pick(
        &mut self,
        strategy: Strategy,
        key: u64,
        mut accepts: impl FnMut(&Member) -> bool,
    ) -> Option<Member> {
        let len = self.members.len();
        if len == 0 {
            return None;
        }
        let start = if strategy.keyed() {
            (key % len as u64) as usize
        } else {
            let start = self.cursor % len;
            self.cursor = start + 1;
            start
        };
        (0..len)
            .map(|offset| self.members[(start + offset) % len])
            .find(|member| accepts(member))
    }
}

/// A message on its way to one group, between shards.
#[derive(Debug, Clone)]
pub struct Pick {
    /// `$share/<group>/<filter>`.
    pub key: ByteStr,
    /// The strategy's key for the message (a hash, a turn, a random number).
    pub hash: u64,
    /// Shards that found no member able to take it.
    pub tried: ShardSet,
}

/// The filter-level table of groups: share name → value.
pub type Groups<V> = HashMap<ByteStr, V>;

/// A stable 64-bit hash of `value` (the same on every shard).
pub fn stable_hash(value: impl Hash) -> u64 {
    // Fixed keys (SipHash with zero keys): every shard, and every run, maps a client id or
    // topic to the same member.
    let mut hasher = std::hash::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// A small, fast generator for the `random` strategy (xorshift64*), seeded per shard.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is replaced).
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_parsed_per_spec() {
        assert_eq!(parse("a/b"), Parsed::Plain);
        assert_eq!(
            parse("$share/g/a/+"),
            Parsed::Shared {
                group: "g",
                filter: "a/+"
            }
        );
        assert_eq!(
            parse("$queue/a/#"),
            Parsed::Shared {
                group: QUEUE_GROUP,
                filter: "a/#"
            }
        );
        for invalid in [
            "$share/g",
            "$share//a",
            "$share/g+/a",
            "$share/#/a",
            "$share/g/",
            "$queue/",
        ] {
            assert_eq!(parse(invalid), Parsed::Invalid, "{invalid}");
        }
        assert_eq!(parse("$shared/g/a"), Parsed::Plain);
    }

    #[test]
    fn strategies_round_trip_their_names() {
        for name in Strategy::NAMES {
            assert_eq!(name.parse::<Strategy>().unwrap().name(), name);
        }
        let err = "fastest".parse::<Strategy>().unwrap_err();
        assert!(err.contains("round_robin"), "{err}");
    }

    fn route(counts: &[(u32, u32)]) -> GroupRoute {
        let mut route = GroupRoute::new(ByteStr::from("$share/g/t"), counts.len());
        for (shard, (online, total)) in counts.iter().enumerate() {
            route.set(
                ShardId(shard),
                Counts {
                    online: *online,
                    total: *total,
                },
            );
        }
        route
    }

    #[test]
    fn shards_are_weighted_by_connected_members() {
        let route = route(&[(1, 1), (3, 3)]);
        let chosen: Vec<usize> = (0..8)
            .map(|key| {
                route
                    .choose(
                        Strategy::RoundRobin,
                        ShardId(0),
                        key,
                        ShardSet::default(),
                        true,
                    )
                    .unwrap()
                    .0
            })
            .collect();
        assert_eq!(chosen, [0, 1, 1, 1, 0, 1, 1, 1]);
    }

    #[test]
    fn local_prefers_the_publishing_shard_then_the_others() {
        let route = route(&[(1, 1), (2, 2)]);
        let none = ShardSet::default();
        assert_eq!(
            route.choose(Strategy::Local, ShardId(1), 0, none, true),
            Some(ShardId(1))
        );
        assert_eq!(
            route.choose(Strategy::Local, ShardId(0), 0, none, true),
            Some(ShardId(0))
        );
        let mut skip = ShardSet::default();
        skip.insert(ShardId(0));
        assert_eq!(
            route.choose(Strategy::Local, ShardId(0), 0, skip, true),
            Some(ShardId(1))
        );
    }

    #[test]
    fn offline_members_count_only_when_asked() {
        let route = route(&[(0, 2), (0, 0)]);
        let none = ShardSet::default();
        assert_eq!(
            route.choose(Strategy::Random, ShardId(1), 7, none, true),
            None
        );
        assert_eq!(
            route.choose(Strategy::Random, ShardId(1), 7, none, false),
            Some(ShardId(0))
        );
        let mut skip = ShardSet::default();
        skip.insert(ShardId(0));
        assert_eq!(
            route.choose(Strategy::Random, ShardId(1), 7, skip, false),
            None
        );
    }

    fn member(conn: u64) -> Member {
        Member {
            conn: ConnId(conn),
            options: SubscriptionOptions::default(),
            identifier: 0,
        }
    }

    #[test]
    fn round_robin_takes_turns_and_skips_who_cannot_take_it() {
        let mut group = Group::default();
        for conn in 1..=3 {
            assert!(group.join(member(conn)));
        }
        assert!(!group.join(member(2)));
        let picks: Vec<u64> = (0..4)
            .map(|_| {
                group
                    .pick(Strategy::RoundRobin, 0, |_| true)
                    .unwrap()
                    .conn
                    .0
            })
            .collect();
        assert_eq!(picks, [1, 2, 3, 1]);
        let pick = group.pick(Strategy::RoundRobin, 0, |m| m.conn.0 != 2);
        assert_eq!(
            pick.unwrap().conn.0,
            3,
            "member 2 is skipped, its turn goes on"
        );
        assert_eq!(group.pick(Strategy::RoundRobin, 0, |_| false), None);
        assert!(group.leave(ConnId(1)));
        assert!(!group.leave(ConnId(1)));
        assert_eq!(group.members().len(), 2);
    }

    #[test]
    fn hash_strategies_keep_a_key_on_one_member() {
        let mut group = Group::default();
        for conn in 1..=4 {
            group.join(member(conn));
        }
        let key = stable_hash("sensor-17");
        let first = group.pick(Strategy::HashClientId, key, |_| true).unwrap();
        for _ in 0..5 {
            assert_eq!(
                group.pick(Strategy::HashClientId, key, |_| true),
                Some(first)
            );
        }
        assert_eq!(stable_hash("sensor-17"), key, "the hash is stable");
    }

    #[test]
    fn random_numbers_vary() {
        let mut rng = Rng::new(42);
        let numbers: hashbrown::HashSet<u64> = (0..100).map(|_| rng.next_u64()).collect();
        assert_eq!(numbers.len(), 100);
    }
}
