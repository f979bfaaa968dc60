//! Messages between shards.
//!
//! Shards share nothing; everything one shard asks of another travels as a [`ShardMsg`] through
//! the full mesh of bounded SPSC rings built at start-up (glommio `channel_mesh`). A ring is FIFO,
//! so messages from one shard to another arrive in the order they were sent: a publisher's
//! messages keep their order, and a `RouteRemove` never overtakes the `RouteAdd` before it.

use std::sync::Arc;

use shardmq_codec::{ByteStr, QoS};

use crate::session::{Message, Session, Via};
use crate::shared::{Counts, Pick};

/// Index of a shard (its executor's place in the mesh).
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct ShardId(pub usize);

/// Identifies a client connection (or offline session) on its shard; never reused by a shard.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct ConnId(pub u64);

/// Where a client id lives: the shard and the connection on it.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub struct Owner {
    /// The shard holding the session.
    pub shard: ShardId,
    /// The connection (or offline session) on that shard.
    pub conn: ConnId,
}

/// A set of shards, as a bit set: the route table stores one per filter.
///
/// 128 bits bound a broker to 128 shards, which [`ShardSet::MAX_SHARDS`] names and start-up checks.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct ShardSet(u128);

impl ShardSet {
    /// Most shards a broker may run.
    pub const MAX_SHARDS: usize = 128;

    /// Adds a shard.
    pub fn insert(&mut self, shard: ShardId) {
        self.0 |= 1 << shard.0;
    }

    /// Removes a shard.
    pub fn remove(&mut self, shard: ShardId) {
        self.0 &= !(1 << shard.0);
    }

    /// Whether the set holds `shard`.
    pub fn contains(self, shard: ShardId) -> bool {
        self.0 & (1 << shard.0) != 0
    }

    /// True when no shard is in the set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Union.
    pub fn union(self, other: ShardSet) -> ShardSet {
        ShardSet(self.0 | other.0)
    }

    /// The shards in ascending order.
    pub fn iter(self) -> impl Iterator<Item = ShardId> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let shard = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            Some(ShardId(shard))
        })
    }
}

/// A publish routed to another shard.
#[derive(Clone, Debug)]
pub struct Routed {
    /// The message, shared with every other destination.
    pub message: Arc<Message>,
    /// The publishing connection, for MQTT 5 no-local subscriptions.
    pub origin: Owner,
    /// Deliver to the shard's ordinary subscribers (false when it only carries `shared`).
    pub plain: bool,
    /// Shared subscription groups the receiving shard delivers to (one member each).
    pub shared: Vec<Pick>,
}

/// A message between shards.
#[derive(Debug)]
pub enum ShardMsg {
    /// Deliver to local subscribers whose filters match.
    Publish(Routed),
    /// `from` has its first local subscriber to `filter`: add it to the route table and
    /// acknowledge with `RouteAck { token }`.
    RouteAdd {
        /// The filter.
        filter: ByteStr,
        /// The shard that subscribed.
        from: ShardId,
        /// Echoed in the acknowledgement.
        token: u64,
    },
    /// A `RouteAdd` was applied.
    RouteAck {
        /// The token of the `RouteAdd`.
        token: u64,
    },
    /// `from` has no local subscriber to `filter` any more.
    RouteRemove {
        /// The filter.
        filter: ByteStr,
        /// The shard that unsubscribed.
        from: ShardId,
    },
    /// `from` now has `counts` members in the shared subscription group `key`
    /// (`$share/<group>/<filter>`); with a token (its first member), acknowledge with
    /// `RouteAck { token }`.
    ShareCounts {
        /// `$share/<group>/<filter>`.
        key: ByteStr,
        /// The shard whose members changed.
        from: ShardId,
        /// Its members now.
        counts: Counts,
        /// Echoed in the acknowledgement, when one is awaited.
        token: Option<u64>,
    },
    /// Set (or with `None`, clear) the retained message of `topic` in the shard's index.
    Retain {
        /// The topic.
        topic: ByteStr,
        /// The retained message, or `None` to clear it.
        message: Option<Arc<Message>>,
    },
    /// To the client id's home shard: `claimant` connects with `client_id`.
    Claim {
        /// The client id.
        client_id: ByteStr,
        /// The new connection.
        claimant: Owner,
    },
    /// From the home shard to the claimant: who held the id before, if anyone.
    Claimed {
        /// The claimant's connection.
        conn: ConnId,
        /// The previous owner.
        previous: Option<Owner>,
    },
    /// To the previous owner's shard: close `previous` and hand its session to `by`.
    Takeover {
        /// The connection (or offline session) being taken over.
        previous: ConnId,
        /// The new connection.
        by: Owner,
        /// The new connection asked for a clean session: discard the state instead.
        clean_start: bool,
    },
    /// To the new owner: the session state (if it persists) of the connection taken over.
    Handover {
        /// The new connection.
        conn: ConnId,
        /// The session state, or `None` when there is none to resume.
        session: Option<Box<Session>>,
        /// The previous owner, which keeps the session's routes and forwards what still reaches
        /// it until the move completes (`Moved`).
        forwarder: Option<Owner>,
    },
    /// From a forwarder (`from`) to the session's new owner `conn`: a delivery that reached the
    /// old place.
    Forward {
        /// The new owner's connection.
        conn: ConnId,
        /// The forwarder, which the new owner must be expecting.
        from: Owner,
        /// The message.
        message: Arc<Message>,
        /// QoS granted by the subscription that matched.
        qos: QoS,
        /// RETAIN flag to deliver with.
        retain: bool,
        /// What the delivery carries besides (Subscription Identifiers).
        via: Option<Box<Via>>,
    },
    /// To a forwarder: the session it forwards to is online with its own routes in place.
    Moved {
        /// The forwarder.
        previous: ConnId,
    },
    /// To every peer: reply `Drained` once everything sent here before is handled.
    Drain {
        /// Echoed.
        token: u64,
        /// Who asks.
        from: ShardId,
    },
    /// A `Drain` was handled.
    Drained {
        /// The token of the `Drain`.
        token: u64,
    },
    /// From a forwarder to the session's new owner: nothing more will be forwarded.
    ForwardEnd {
        /// The new owner's connection.
        conn: ConnId,
        /// The forwarder that ended.
        from: Owner,
    },
    /// To the home shard: `owner` ended and left no session; forget it if it is still the owner.
    Release {
        /// The client id.
        client_id: ByteStr,
        /// The owner that ended.
        owner: Owner,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_set() {
        let mut set = ShardSet::default();
        assert!(set.is_empty());
        set.insert(ShardId(0));
        set.insert(ShardId(5));
        set.insert(ShardId(127));
        assert!(set.contains(ShardId(5)));
        assert_eq!(set.iter().map(|s| s.0).collect::<Vec<_>>(), vec![0, 5, 127]);
        set.remove(ShardId(5));
        assert!(!set.contains(ShardId(5)));
        let other = {
            let mut s = ShardSet::default();
            s.insert(ShardId(1));
            s
        };
        assert_eq!(set.union(other).iter().count(), 3);
    }
}
