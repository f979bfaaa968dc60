//! Follow relations: who follows whom, for the `%f` (followee) and `%F` (friend: mutual follower)
//! substitutions. Read from the `relations_file`; with Redis, each user's follow set is read at
//! CONNECT instead and the control core asks who follows back.

use hashbrown::HashMap;

/// Who follows whom. `%f` expands to the users a user follows, `%F` to their friends: the users
/// they follow who follow them back. Immutable once built; share it behind an `Arc`.
#[derive(Clone, Debug, Default)]
pub struct Relations {
    /// Each list is sorted and free of duplicates, so lookups are binary searches and the
    /// expansion order is stable.
    follows: HashMap<Box<str>, Vec<Box<str>>>,
}

impl Relations {
    /// No relations.
    pub fn new() -> Relations {
        Relations::default()
    }

    /// Records that `user` follows `followee` (idempotent).
    pub fn add_follow(&mut self, user: &str, followee: &str) {
        let list = self.follows.entry_ref(user).or_default();
        if let Err(at) = list.binary_search_by(|name| (**name).cmp(followee)) {
            list.insert(at, followee.into());
        }
    }

    /// True if `user` follows `followee`.
    pub fn is_following(&self, user: &str, followee: &str) -> bool {
        self.follows
            .get(user)
            .is_some_and(|list| list.binary_search_by(|name| (**name).cmp(followee)).is_ok())
    }

    /// The users `user` follows, sorted.
    pub fn follows(&self, user: &str) -> Vec<&str> {
        self.follows
            .get(user)
            .map_or_else(Vec::new, |list| list.iter().map(|name| &**name).collect())
    }

    /// The users who follow `user` and whom `user` follows, sorted.
    pub fn friends(&self, user: &str) -> Vec<&str> {
        self.follows.get(user).map_or_else(Vec::new, |list| {
            list.iter()
                .map(|name| &**name)
                .filter(|&followee| self.is_following(followee, user))
                .collect()
        })
    }
}
