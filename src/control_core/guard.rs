//! Brute-force protection, kept on the control core, which sees every CONNECT.
//!
//! Two kinds of counters, with different powers, because a user name is chosen by whoever
//! connects while a source address is not:
//!
//! - **Per source address**: failures within the window ban the address for a while. Every
//!   CONNECT from a banned address is refused, whatever the credentials. A source is an IPv4
//!   address, or an IPv6 /64 (one host is commonly handed a whole /64, so banning one address of
//!   it would ban nothing); an IPv4-mapped IPv6 address counts as its IPv4 address.
//! - **Per user name**: failures only slow the refusals down (see [`LoginGuard::penalty`], at
//!   most [`MAX_PENALTY`]); a name is never banned. Banning names would let anyone lock a user
//!   out by failing on purpose with that user's name.
//!
//! A successful login clears that user name's counter only. The address's counter stays, so an
//! attacker who owns one account cannot wipe out the failures of his guesses by logging in to
//! it between them.
//!
//! An operator sees the bans in force ([`LoginGuard::bans`], the admin API's `GET
//! /api/v1/bans`) and may lift one ([`LoginGuard::lift`]), which forgets the source's failures
//! too, so its next failure does not ban it again at once.
//!
//! # Bounded memory
//!
//! The counters live in one table of at most a fixed number of entries (addresses and names
//! together, [`MAX_ENTRIES`] by default); when it is full, the least recently used entry makes
//! room, so memory stays bounded whatever an attacker sends. Names longer than
//! [`crate::auth::MAX_USERNAME_LEN`] are never used as keys (such logins are refused before
//! authentication), so an entry is a few hundred bytes at most. Eviction can forget a ban, but
//! only after that many newer addresses and names have been seen since the banned address last
//! tried. The slots holding a ban are also kept in a set of their own, so listing and counting
//! the bans in force costs a look at each ban, not at the whole table.
//!
//! Keys are hashed with the standard library's randomly keyed SipHash: user names are chosen
//! by clients, and a predictable hash would let them pile every name into one bucket.
//!
//! The guard reads no clock: callers pass `now`, so tests step time by hand.

use std::hash::{BuildHasher, Hash, RandomState};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use hashbrown::{HashSet, HashTable};

use crate::auth::MAX_USERNAME_LEN;

/// Entries kept at most by default (addresses and names together): about 40 MiB at worst
/// (names of the longest length), a few MiB for addresses.
pub const MAX_ENTRIES: usize = 100_000;

/// Longest a refusal is held back.
pub const MAX_PENALTY: Duration = Duration::from_secs(2);

/// Delay added to a refusal per earlier failure of the address or name.
const PENALTY_STEP: Duration = Duration::from_millis(200);

/// Limits of the guard.
#[derive(Clone, Copy, Debug)]
pub struct GuardLimits {
    /// Failures from one source within `window` that trigger a ban; 0 disables the guard (no
    /// bans and no delays).
    pub max_failures: u32,
    /// Window over which failures are counted.
    pub window: Duration,
    /// How long a ban lasts.
    pub ban: Duration,
}

impl Default for GuardLimits {
    fn default() -> Self {
        Self {
            max_failures: 10,
            window: Duration::from_secs(60),
            ban: Duration::from_secs(300),
        }
    }
}

/// A ban in force.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Ban {
    /// The banned source: an IPv4 address, or the first address of an IPv6 /64.
    pub source: IpAddr,
    /// When the ban ends.
    pub until: Instant,
    /// Failures counted against the source in the window that banned it.
    pub failures: u32,
}

/// Failure counts and bans per source address, failure counts per user name.
#[derive(Debug)]
pub struct LoginGuard {
    limits: GuardLimits,
    table: Table,
    /// Bans imposed since start.
    pub bans: u64,
}

impl LoginGuard {
    /// A guard with these limits and room for [`MAX_ENTRIES`].
    pub fn new(limits: GuardLimits) -> Self {
        Self::with_capacity(limits, MAX_ENTRIES)
    }

    /// A guard with these limits and room for `capacity` entries (at least one).
    pub fn with_capacity(limits: GuardLimits, capacity: usize) -> Self {
        Self {
            limits,
            table: Table::with_capacity(capacity.max(1)),
            bans: 0,
        }
    }

    /// Whether the source of `address` is banned now.
    pub fn is_banned(&mut self, address: Option<IpAddr>, now: Instant) -> bool {
        let Some(address) = address else {
            return false;
        };
        self.table
            .get(KeyRef::Source(source(address)))
            .and_then(|record| record.banned_until)
            .is_some_and(|until| now < until)
    }

    /// How long to hold back the refusal of a login that just failed: nothing for a first
    /// failure, then [`PENALTY_STEP`] per earlier failure of the address or of the name, at
    /// most [`MAX_PENALTY`].
    pub fn penalty(&mut self, address: Option<IpAddr>, username: Option<&str>) -> Duration {
        let by_source = address.map_or(0, |address| self.failures(KeyRef::Source(source(address))));
        let by_name = username
            .filter(|name| name.len() <= MAX_USERNAME_LEN)
            .map_or(0, |name| self.failures(KeyRef::User(name)));
        let worst = by_source.max(by_name);
        (PENALTY_STEP * worst.saturating_sub(1)).min(MAX_PENALTY)
    }

    /// A failed login: counts against the source (which may be banned for it) and the name.
    /// Returns the ban this failure imposed, if it did.
    pub fn record_failure(
        &mut self,
        address: Option<IpAddr>,
        username: Option<&str>,
        now: Instant,
    ) -> Option<Ban> {
        if self.limits.max_failures == 0 {
            return None;
        }
        let limits = self.limits;
        let mut banned = None;
        if let Some(address) = address {
            let source = source(address);
            let slot = self.table.entry_slot(KeyRef::Source(source), now);
            let record = &mut self.table.nodes[slot as usize].record;
            let failures = record.count(limits, now);
            if failures >= limits.max_failures {
                let until = now + limits.ban;
                record.banned_until = Some(until);
                self.table.banned.insert(slot);
                self.bans += 1;
                banned = Some(Ban {
                    source,
                    until,
                    failures,
                });
            }
        }
        if let Some(name) = username.filter(|name| name.len() <= MAX_USERNAME_LEN) {
            self.table.entry(KeyRef::User(name), now).count(limits, now);
        }
        banned
    }

    /// The bans in force at `now`, soonest to end first. Forgets the ones that ended.
    pub fn bans(&mut self, now: Instant) -> Vec<Ban> {
        self.sweep_bans(now);
        let mut bans: Vec<Ban> = self
            .table
            .banned
            .iter()
            .filter_map(|&slot| {
                let node = &self.table.nodes[slot as usize];
                match (&node.key, node.record.banned_until) {
                    (Key::Source(source), Some(until)) => Some(Ban {
                        source: *source,
                        until,
                        failures: node.record.failures,
                    }),
                    _ => None,
                }
            })
            .collect();
        bans.sort_unstable_by_key(|ban| (ban.until, ban.source));
        bans
    }

    /// How many sources are banned at `now`. Forgets the bans that ended.
    pub fn active_bans(&mut self, now: Instant) -> usize {
        self.sweep_bans(now);
        self.table.banned.len()
    }

    /// Lifts the ban in force on the source of `address` (any address of a banned IPv6 /64),
    /// forgetting the source's failures with it; false if it is not banned at `now`.
    pub fn lift(&mut self, address: IpAddr, now: Instant) -> bool {
        let key = KeyRef::Source(source(address));
        let banned = self
            .table
            .find(key)
            .and_then(|slot| self.table.nodes[slot as usize].record.banned_until)
            .is_some_and(|until| now < until);
        if banned {
            self.table.remove(key);
        }
        banned
    }

    /// Drops from the set of banned slots those whose ban ended (or was reset by a new window).
    fn sweep_bans(&mut self, now: Instant) {
        let nodes = &self.table.nodes;
        self.table.banned.retain(|&slot| {
            nodes[slot as usize]
                .record
                .banned_until
                .is_some_and(|until| now < until)
        });
    }

    /// A successful login: clears the failures counted against this user name, and nothing
    /// else (see the module doc).
    pub fn record_success(&mut self, username: Option<&str>) {
        if let Some(name) = username {
            self.table.remove(KeyRef::User(name));
        }
    }

    /// Entries held (addresses and names).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.len()
    }

    fn failures(&mut self, key: KeyRef<'_>) -> u32 {
        self.table.get(key).map_or(0, |record| record.failures)
    }
}

/// The source a ban applies to: the IPv4 address, or the /64 of an IPv6 address.
pub fn source(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

#[derive(Clone, Copy, Debug)]
struct Record {
    /// Failures since `since`.
    failures: u32,
    since: Instant,
    /// Set on sources only.
    banned_until: Option<Instant>,
}

impl Record {
    fn new(now: Instant) -> Record {
        Record {
            failures: 0,
            since: now,
            banned_until: None,
        }
    }

    /// Counts one failure at `now` and returns the failures in the current window. A window
    /// that has passed, or a ban that has expired, starts the count afresh.
    fn count(&mut self, limits: GuardLimits, now: Instant) -> u32 {
        let ban_over = self.banned_until.is_some_and(|until| until <= now);
        if ban_over || now.saturating_duration_since(self.since) > limits.window {
            *self = Record::new(now);
        }
        self.failures = self.failures.saturating_add(1);
        self.failures
    }
}

/// A table key: what the guard counts failures of.
#[derive(Debug)]
enum Key {
    Source(IpAddr),
    User(Box<str>),
}

/// A borrowed [`Key`], to look names up without copying them. Hashes the same as its owned
/// form (the owned form is only ever hashed through this one).
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
enum KeyRef<'a> {
    Source(IpAddr),
    User(&'a str),
}

impl Key {
    fn borrowed(&self) -> KeyRef<'_> {
        match self {
            Key::Source(address) => KeyRef::Source(*address),
            Key::User(name) => KeyRef::User(name),
        }
    }
}

impl KeyRef<'_> {
    fn into_key(self) -> Key {
        match self {
            KeyRef::Source(address) => Key::Source(address),
            KeyRef::User(name) => Key::User(name.into()),
        }
    }
}

/// No slot: the end of the recency list.
const NIL: u32 = u32::MAX;

#[derive(Debug)]
struct Node {
    key: Key,
    record: Record,
    /// The next more recently used slot, or [`NIL`].
    newer: u32,
    /// The next less recently used slot, or [`NIL`].
    older: u32,
}

/// A hash table of at most `capacity` records with least-recently-used eviction.
///
/// The records sit in a slab (`nodes`) threaded by a doubly linked recency list; the index maps
/// a key's hash to its slot, so each key is stored once (in its node) and every operation is
/// O(1). The slab never grows past `capacity`: a full table reuses the least recently used
/// slot.
#[derive(Debug)]
struct Table {
    index: HashTable<u32>,
    hasher: RandomState,
    nodes: Vec<Node>,
    /// Slots freed by [`Table::remove`], reused before the slab grows.
    free: Vec<u32>,
    /// Slots whose record holds a ban (perhaps ended: see [`LoginGuard::bans`]).
    banned: HashSet<u32>,
    newest: u32,
    oldest: u32,
    capacity: usize,
}

impl Table {
    fn with_capacity(capacity: usize) -> Table {
        // Slot numbers are u32 with NIL reserved; the guard's capacities are far below.
        let capacity = capacity.min(NIL as usize);
        Table {
            index: HashTable::new(),
            hasher: RandomState::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            banned: HashSet::new(),
            newest: NIL,
            oldest: NIL,
            capacity,
        }
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn hash(hasher: &RandomState, key: KeyRef<'_>) -> u64 {
        hasher.hash_one(key)
    }

    fn find(&self, key: KeyRef<'_>) -> Option<u32> {
        let nodes = &self.nodes;
        self.index
            .find(Table::hash(&self.hasher, key), |&slot| {
                nodes[slot as usize].key.borrowed() == key
            })
            .copied()
    }

    /// The record of `key`, now the most recently used.
    fn get(&mut self, key: KeyRef<'_>) -> Option<&mut Record> {
        let slot = self.find(key)?;
        self.touch(slot);
        Some(&mut self.nodes[slot as usize].record)
    }

    /// The record of `key` (a fresh one if absent), now the most recently used; inserting into
    /// a full table first evicts the least recently used entry.
    fn entry(&mut self, key: KeyRef<'_>, now: Instant) -> &mut Record {
        let slot = self.entry_slot(key, now);
        &mut self.nodes[slot as usize].record
    }

    /// The slot of [`Table::entry`].
    fn entry_slot(&mut self, key: KeyRef<'_>, now: Instant) -> u32 {
        if let Some(slot) = self.find(key) {
            self.touch(slot);
            return slot;
        }
        if self.len() >= self.capacity {
            self.remove_slot(self.oldest);
        }
        let node = Node {
            key: key.into_key(),
            record: Record::new(now),
            newer: NIL,
            older: NIL,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.nodes[slot as usize] = node;
                slot
            }
            None => {
                self.nodes.push(node);
                // Fits: the slab never holds more than `capacity` ≤ NIL slots.
                (self.nodes.len() - 1) as u32
            }
        };
        let (hasher, nodes) = (&self.hasher, &self.nodes);
        self.index
            .insert_unique(Table::hash(hasher, key), slot, |&slot| {
                Table::hash(hasher, nodes[slot as usize].key.borrowed())
            });
        self.push_newest(slot);
        slot
    }

    fn remove(&mut self, key: KeyRef<'_>) {
        if let Some(slot) = self.find(key) {
            self.remove_slot(slot);
        }
    }

    /// Removes the entry in `slot`, which is in use.
    fn remove_slot(&mut self, slot: u32) {
        let hash = Table::hash(&self.hasher, self.nodes[slot as usize].key.borrowed());
        if let Ok(found) = self.index.find_entry(hash, |&held| held == slot) {
            found.remove();
        }
        self.unlink(slot);
        self.banned.remove(&slot);
        // The key's memory (a name) goes now; the slot waits for reuse.
        self.nodes[slot as usize].key = Key::Source(IpAddr::from([0, 0, 0, 0]));
        self.free.push(slot);
    }

    fn touch(&mut self, slot: u32) {
        if self.newest != slot {
            self.unlink(slot);
            self.push_newest(slot);
        }
    }

    fn unlink(&mut self, slot: u32) {
        let Node { newer, older, .. } = self.nodes[slot as usize];
        match newer {
            NIL => self.newest = older,
            newer => self.nodes[newer as usize].older = older,
        }
        match older {
            NIL => self.oldest = newer,
            older => self.nodes[older as usize].newer = newer,
        }
    }

    fn push_newest(&mut self, slot: u32) {
        let node = &mut self.nodes[slot as usize];
        node.newer = NIL;
        node.older = self.newest;
        match self.newest {
            NIL => self.oldest = slot,
            newest => self.nodes[newest as usize].newer = slot,
        }
        self.newest = slot;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_failures: u32) -> GuardLimits {
        GuardLimits {
            max_failures,
            window: Duration::from_secs(10),
            ban: Duration::from_secs(30),
        }
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().expect("address"))
    }

    #[test]
    fn failures_ban_the_source_not_the_name() {
        let mut guard = LoginGuard::new(limits(3));
        let (attacker, victim) = (ip("127.0.0.2"), ip("127.0.0.3"));
        let t0 = Instant::now();
        for _ in 0..2 {
            guard.record_failure(attacker, Some("victim"), t0);
        }
        assert!(!guard.is_banned(attacker, t0));
        guard.record_failure(attacker, Some("victim"), t0);
        assert!(guard.is_banned(attacker, t0), "the attacker's address");
        assert!(!guard.is_banned(victim, t0), "not the victim's");
        assert_eq!(guard.bans, 1);
        // The victim's own failures are slowed by the name's count, and never banned.
        for _ in 0..20 {
            guard.record_failure(victim, Some("victim"), t0);
            assert!(guard.penalty(victim, Some("victim")) <= MAX_PENALTY);
        }
        assert_eq!(guard.penalty(victim, Some("victim")), MAX_PENALTY);
        assert!(
            guard.is_banned(victim, t0),
            "the victim's address failed 20 times"
        );
        assert!(!guard.is_banned(ip("127.0.0.4"), t0), "nobody else");
        assert!(!guard.is_banned(None, t0));
        // Bans end.
        assert!(!guard.is_banned(attacker, t0 + Duration::from_secs(31)));
    }

    #[test]
    fn bans_are_listed_counted_and_lifted() {
        let mut guard = LoginGuard::new(limits(2));
        let t0 = Instant::now();
        let (a, b) = (ip("192.0.2.1"), ip("2001:db8:1:2::7"));
        assert_eq!(guard.record_failure(a, Some("x"), t0), None);
        let ban = guard.record_failure(a, Some("x"), t0).expect("banned");
        assert_eq!(ban.source, a.unwrap());
        assert_eq!((ban.until, ban.failures), (t0 + Duration::from_secs(30), 2));
        let later = t0 + Duration::from_secs(5);
        guard.record_failure(b, None, later);
        guard.record_failure(b, None, later);
        let bans = guard.bans(later);
        assert_eq!(bans.len(), 2);
        assert_eq!(bans[0], ban, "soonest to end first");
        assert_eq!(bans[1].source, ip("2001:db8:1:2::").unwrap(), "the /64");
        assert_eq!(guard.active_bans(later), 2);

        assert!(
            guard.lift(ip("2001:db8:1:2::99").unwrap(), later),
            "any address of the /64"
        );
        assert!(
            !guard.lift(ip("2001:db8:1:2::99").unwrap(), later),
            "lifted already"
        );
        assert!(!guard.is_banned(b, later));
        assert_eq!(
            guard.record_failure(b, None, later),
            None,
            "its failures were forgotten with the ban"
        );
        assert!(
            !guard.lift(ip("198.51.100.1").unwrap(), later),
            "never banned"
        );

        // An ended ban is neither listed nor counted, nor lifted.
        let after = t0 + Duration::from_secs(31);
        assert_eq!(guard.active_bans(after), 0);
        assert!(guard.bans(after).is_empty());
        assert!(!guard.lift(a.unwrap(), after));
        assert_eq!(guard.bans, 2);
    }

    #[test]
    fn an_evicted_ban_leaves_the_list() {
        let mut guard = LoginGuard::with_capacity(limits(1), 2);
        let t0 = Instant::now();
        guard.record_failure(ip("192.0.2.1"), None, t0);
        assert_eq!(guard.active_bans(t0), 1);
        guard.record_failure(ip("192.0.2.2"), None, t0);
        guard.record_failure(ip("192.0.2.3"), None, t0); // evicts 192.0.2.1
        let bans: Vec<IpAddr> = guard.bans(t0).iter().map(|ban| ban.source).collect();
        assert_eq!(bans, [ip("192.0.2.2").unwrap(), ip("192.0.2.3").unwrap()]);
        assert_eq!(guard.table.banned.len(), 2);
    }

    #[test]
    fn penalty_grows_per_failure_of_the_address_or_the_name() {
        let mut guard = LoginGuard::new(limits(100));
        let t0 = Instant::now();
        assert_eq!(guard.penalty(ip("10.0.0.1"), Some("bob")), Duration::ZERO);
        guard.record_failure(ip("10.0.0.1"), Some("bob"), t0);
        assert_eq!(guard.penalty(ip("10.0.0.1"), Some("bob")), Duration::ZERO);
        for n in 2..=4u32 {
            guard.record_failure(ip(&format!("10.0.0.{n}")), Some("bob"), t0);
        }
        assert_eq!(
            guard.penalty(ip("10.0.0.9"), Some("bob")),
            PENALTY_STEP * 3,
            "four failures of the name"
        );
        assert_eq!(guard.penalty(ip("10.0.0.1"), Some("alice")), Duration::ZERO);
    }

    #[test]
    fn success_clears_only_the_name() {
        let mut guard = LoginGuard::new(limits(3));
        let attacker = ip("127.0.0.2");
        let t0 = Instant::now();
        guard.record_failure(attacker, Some("victim"), t0);
        guard.record_failure(attacker, Some("victim"), t0);
        // The attacker logs in to an account of his own: his address keeps its count.
        guard.record_success(Some("mallory"));
        guard.record_failure(attacker, Some("victim"), t0);
        assert!(guard.is_banned(attacker, t0));
        // The victim logs in: the name's count goes, the attacker's ban stays.
        assert_eq!(guard.penalty(None, Some("victim")), PENALTY_STEP * 2);
        guard.record_success(Some("victim"));
        assert_eq!(guard.penalty(None, Some("victim")), Duration::ZERO);
        assert!(guard.is_banned(attacker, t0));
    }

    #[test]
    fn windows_and_bans_expire() {
        let mut guard = LoginGuard::new(limits(2));
        let address = ip("192.0.2.1");
        let t0 = Instant::now();
        guard.record_failure(address, Some("a"), t0);
        let later = t0 + Duration::from_secs(11);
        guard.record_failure(address, Some("a"), later);
        assert!(!guard.is_banned(address, later), "window restarted");
        guard.record_failure(address, Some("a"), later);
        assert!(guard.is_banned(address, later));
        let after = later + Duration::from_secs(30);
        assert!(!guard.is_banned(address, after));
        guard.record_failure(address, Some("a"), after);
        assert!(
            !guard.is_banned(address, after),
            "the count starts afresh after a ban"
        );
    }

    #[test]
    fn zero_max_failures_disables_the_guard() {
        let mut guard = LoginGuard::new(limits(0));
        let t0 = Instant::now();
        for _ in 0..50 {
            guard.record_failure(ip("127.0.0.2"), Some("x"), t0);
        }
        assert!(!guard.is_banned(ip("127.0.0.2"), t0));
        assert_eq!(guard.penalty(ip("127.0.0.2"), Some("x")), Duration::ZERO);
        assert_eq!(guard.len(), 0);
    }

    #[test]
    fn ipv6_sources_are_slash_64s_and_mapped_addresses_are_ipv4() {
        let mut guard = LoginGuard::new(limits(2));
        let t0 = Instant::now();
        guard.record_failure(ip("2001:db8:1:2::1"), None, t0);
        guard.record_failure(ip("2001:db8:1:2:ffff::9"), None, t0);
        assert!(guard.is_banned(ip("2001:db8:1:2::42"), t0), "same /64");
        assert!(!guard.is_banned(ip("2001:db8:1:3::1"), t0), "next /64");
        guard.record_failure(ip("::ffff:192.0.2.7"), None, t0);
        guard.record_failure(ip("192.0.2.7"), None, t0);
        assert!(guard.is_banned(ip("192.0.2.7"), t0));
    }

    #[test]
    fn overlong_names_are_never_keys() {
        let mut guard = LoginGuard::new(limits(5));
        let t0 = Instant::now();
        let long = "n".repeat(MAX_USERNAME_LEN + 1);
        guard.record_failure(None, Some(&long), t0);
        assert_eq!(guard.len(), 0);
        let longest = "n".repeat(MAX_USERNAME_LEN);
        guard.record_failure(None, Some(&longest), t0);
        assert_eq!(guard.len(), 1);
    }

    #[test]
    fn the_table_is_capped_and_forgets_the_least_recently_used() {
        const CAP: usize = 1000;
        let mut guard = LoginGuard::with_capacity(limits(3), CAP);
        let t0 = Instant::now();
        let name = |n: usize| format!("{n:0>width$}", width = MAX_USERNAME_LEN);
        // Ten times the capacity in distinct names of the longest length, plus addresses.
        for n in 0..10 * CAP {
            guard.record_failure(None, Some(&name(n)), t0);
            assert!(guard.len() <= CAP);
        }
        assert_eq!(guard.len(), CAP);
        assert!(
            guard.table.nodes.len() <= CAP,
            "the slab never grows past the cap"
        );
        let held: usize = guard
            .table
            .nodes
            .iter()
            .map(|node| match &node.key {
                Key::User(name) => name.len(),
                Key::Source(_) => 0,
            })
            .sum();
        assert_eq!(held, CAP * MAX_USERNAME_LEN, "only the kept names are held");
        // The newest CAP names are kept, the older ones went.
        assert!(guard
            .table
            .find(KeyRef::User(&name(10 * CAP - CAP)))
            .is_some());
        assert!(guard
            .table
            .find(KeyRef::User(&name(10 * CAP - CAP - 1)))
            .is_none());
        assert!(guard.table.find(KeyRef::User(&name(0))).is_none());

        // A banned address that keeps trying is used recently: a flood of three times the
        // capacity in new addresses evicts idle entries, not its ban. An idle ban goes.
        let (attacker, idle) = (ip("198.51.100.1"), ip("198.51.100.2"));
        for _ in 0..3 {
            guard.record_failure(attacker, None, t0);
            guard.record_failure(idle, None, t0);
        }
        for n in 0..3 * CAP {
            guard.record_failure(ip(&format!("203.0.{}.{}", n / 256, n % 256)), None, t0);
            if n % (CAP / 2) == 0 {
                assert!(guard.is_banned(attacker, t0), "after {n}");
            }
        }
        assert!(guard.is_banned(attacker, t0));
        assert!(!guard.is_banned(idle, t0), "evicted");
        assert_eq!(guard.len(), CAP);
        assert!(guard.table.nodes.len() <= CAP);
    }

    #[test]
    fn removal_and_reuse_keep_the_recency_list_whole() {
        let mut guard = LoginGuard::with_capacity(limits(100), 3);
        let t0 = Instant::now();
        for name in ["a", "b", "c"] {
            guard.record_failure(None, Some(name), t0);
        }
        guard.record_success(Some("b"));
        assert_eq!(guard.len(), 2);
        guard.record_failure(None, Some("d"), t0); // reuses b's slot
        guard.record_failure(None, Some("a"), t0); // a is now the newest
        guard.record_failure(None, Some("e"), t0); // evicts c, the oldest
        let mut names = Vec::new();
        let mut slot = guard.table.newest;
        while slot != NIL {
            let node = &guard.table.nodes[slot as usize];
            if let Key::User(name) = &node.key {
                names.push(name.to_string());
            }
            slot = node.older;
        }
        assert_eq!(names, ["e", "a", "d"]);
        assert_eq!(guard.penalty(None, Some("a")), PENALTY_STEP);
    }
}
