//! The client-id registry a home shard keeps.
//!
//! Client ids are unique across the broker. Each id has a home shard, `hash(client_id) % N`,
//! which alone decides who owns the id: claims are applied one at a time in arrival order, so two
//! connections racing with the same id are ordered, and the later one takes over from the
//! earlier (which, if it is still connecting, passes whatever it obtained on to the later one).

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
    #[cfg(test)]
    pub fn owner(&self, client_id: &str) -> Option<Owner> {
        self.owners.get(client_id).copied()
    }

    /// True when no id is registered here.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
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
