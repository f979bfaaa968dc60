//! Client-id ownership and session takeover, as a state machine with no I/O.
//!
//! Client ids are unique across the broker. Each id has a home shard, `hash(client_id) % N`,
//! which alone decides who owns the id: claims are applied one at a time in arrival order, so two
//! connections racing with the same id are ordered, and the later one takes over from the earlier.
//!
//! The [`Router`](crate::router::Router) of each shard drives the sequence below; this module
//! holds its parts that are plain data: the home shard's [`Registry`] and the [`Step`] a
//! connecting client is at. Every arrow is one [`ShardMsg`](crate::mesh::ShardMsg) through the
//! mesh (or a direct call when both ends are the same shard).
//!
//! ```text
//!  new connection C           home shard H               previous owner P's shard
//!  (shard S)                  (registry)
//!  ── Claiming ──
//!     Claim{id, C} ─────────►  previous = claim(id, C)
//!     ◄──────────────────────  Claimed{C, previous}
//!  previous = None: go to Subscribing with no session
//!  ── AwaitingHandover ──
//!     Takeover{P, by C, clean_start} ──────────────────►  P online or offline: P is removed and
//!                                                         its connection closed. A session that
//!                                                         persists is taken, and P's
//!                                                         subscriptions stay in the trie as a
//!                                                         forwarder (P's routes stay valid);
//!                                                         otherwise they are dropped
//!     ◄──────────────────────────────────────────────────  Handover{C, session, forwarder P}
//!     ◄─────────────────────────────────────────────────── Forward{C, from P, message}...
//!                                                         P still connecting: P is marked
//!                                                         superseded by C and hands over when
//!                                                         its own session arrives (below)
//!  ── Subscribing ──
//!     the session's subscriptions and the auto-subscriptions go into S's trie; RouteAdd to
//!     every shard for each filter new to S; once every RouteAck is in: CONNACK, online.
//!     Moved{P} ──────────────────────────────────────────►  Drain to every peer; once every
//!                                                          Drained is back, nothing routed to P
//!                                                          is on its way: drop P's
//!                                                          subscriptions (RouteRemove)
//!     ◄─────────────────────────────────────────────────── ForwardEnd{C, from P}
//!  superseded meanwhile by D: C never goes online; its session (what it obtained) is handed
//!  over to D, and C is closed without a CONNACK; C relays forwards to D until its own
//!  upstream ends, and D's Moved reaches P through C.
//!
//!  C ends without a session to keep:  Release{id, C} ───► forgotten only if C still owns id
//! ```
//!
//! Invariants (checked by the in-memory tests in `shard/tests/routers.rs`): one id is connected
//! at most once at any moment a client can observe (the previous connection is closed before
//! the new one's CONNACK); a persistent session that moves keeps every queued and in-flight
//! message, and every message published while it moves; every forwarder ends.

use std::hash::BuildHasher;

use hashbrown::HashMap;
use shardmq_codec::ByteStr;

use crate::mesh::{Owner, ShardId};

/// The home shard of `client_id` among `shards`. Stable for the life of the process.
pub fn home_shard(client_id: &str, shards: usize) -> ShardId {
    // A fixed-key hasher: every shard must compute the same home for the same id.
    let hash =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .hash_one(client_id);
    ShardId((hash % shards.max(1) as u64) as usize)
}

/// Owners of the client ids whose home is this shard.
#[derive(Debug, Default)]
pub struct Registry {
    owners: HashMap<ByteStr, Owner>,
}

impl Registry {
    /// `claimant` connects with `client_id`; returns the previous owner, which must be taken over.
    pub fn claim(&mut self, client_id: &ByteStr, claimant: Owner) -> Option<Owner> {
        self.owners.insert(client_id.clone(), claimant)
    }

    /// `owner` ended without a session to keep; forgets the id only if `owner` still holds it
    /// (a newer claim may already have replaced it).
    pub fn release(&mut self, client_id: &str, owner: Owner) -> bool {
        if self.owners.get(client_id) == Some(&owner) {
            self.owners.remove(client_id);
            true
        } else {
            false
        }
    }

    /// The current owner of `client_id`.
    pub fn owner(&self, client_id: &str) -> Option<Owner> {
        self.owners.get(client_id).copied()
    }

    /// Ids registered here.
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    /// True when no id is registered here.
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }
}

/// Where a connecting client is in taking its id (see the module doc).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Step {
    /// Waiting for the home shard's `Claimed`.
    Claiming,
    /// Waiting for the previous owner's `Handover`.
    AwaitingHandover,
    /// Session in hand; its subscriptions wait for every shard's `RouteAck`.
    Subscribing,
}

/// What the previous owner's shard does with a `Takeover`.
#[derive(Debug)]
pub enum TakeoverOutcome<S> {
    /// The previous owner is gone from this shard; hand this to the new owner.
    HandOver(Handed<S>),
    /// The previous owner is still connecting: it hands over once its own session arrives.
    Deferred,
}

/// What a new owner receives: the session to resume, if any, and the forwarder that keeps the
/// session's routes at its old place until the new owner's own are in place.
#[derive(Debug)]
pub struct Handed<S> {
    /// The session state, if it persists.
    pub session: Option<S>,
    /// The previous owner, forwarding until it receives `Moved`.
    pub forwarder: Option<Owner>,
}

impl<S> Handed<S> {
    /// Nothing to resume, nothing forwarded.
    pub fn nothing() -> Self {
        Self {
            session: None,
            forwarder: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::ConnId;

    fn owner(shard: usize, conn: u64) -> Owner {
        Owner {
            shard: ShardId(shard),
            conn: ConnId(conn),
        }
    }

    #[test]
    fn home_shard_is_stable_and_in_range() {
        for n in 1..8 {
            let home = home_shard("client-42", n);
            assert!(home.0 < n);
            assert_eq!(home, home_shard("client-42", n));
        }
    }

    #[test]
    fn claims_are_ordered_and_release_is_guarded() {
        let mut registry = Registry::default();
        let id = ByteStr::from("c");
        assert_eq!(registry.claim(&id, owner(0, 1)), None);
        assert_eq!(registry.claim(&id, owner(1, 7)), Some(owner(0, 1)));
        // The first connection ends after being taken over: its release must not drop the new owner.
        assert!(!registry.release("c", owner(0, 1)));
        assert_eq!(registry.owner("c"), Some(owner(1, 7)));
        assert!(registry.release("c", owner(1, 7)));
        assert!(registry.is_empty());
    }
}
