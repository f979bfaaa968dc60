//! ACL rules: the `topic` and `pattern` lines of an `acl_file` (or of the Redis lists), who they
//! apply to, and their compilation into one session's matcher ([`SessionAcl`], which the shard
//! checks). The rules that apply are described in the module doc of [`crate::access`].

use hashbrown::HashMap;
use shardmq_shard::acl::{Access, SessionAcl, SessionAclBuilder};

use super::template::{Expansion, FilterTemplate, Subject};

/// One `topic` or `pattern` line: an access and the filter it applies to.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct AclRule {
    access: Access,
    filter: FilterTemplate,
}

impl AclRule {
    /// A rule granting (or, for [`Access::Deny`], refusing) `access` on `filter`.
    pub fn new(access: Access, filter: FilterTemplate) -> AclRule {
        AclRule { access, filter }
    }
}

/// A whole rule set, as parsed from an `acl_file` (or loaded from Redis). Immutable once built;
/// share it behind an `Arc`.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct AclRules {
    anonymous: Vec<AclRule>,
    users: HashMap<Box<str>, Vec<AclRule>>,
    patterns: Vec<AclRule>,
}

impl AclRules {
    /// An empty rule set: it allows nothing.
    pub fn new() -> AclRules {
        AclRules::default()
    }

    /// Adds a `topic` rule for anonymous clients (one written before any `user` line).
    pub fn push_anonymous(&mut self, rule: AclRule) {
        self.anonymous.push(rule);
    }

    /// Adds a `topic` rule for `username`.
    pub fn push_user(&mut self, username: &str, rule: AclRule) {
        self.users.entry_ref(username).or_default().push(rule);
    }

    /// Adds a `pattern` rule, which applies to every client.
    pub fn push_pattern(&mut self, rule: AclRule) {
        self.patterns.push(rule);
    }

    /// The `topic` rules for anonymous clients.
    pub fn anonymous(&self) -> &[AclRule] {
        &self.anonymous
    }

    /// The `topic` rules for `username` (empty if the user has none).
    pub fn user(&self, username: &str) -> &[AclRule] {
        self.users.get(username).map_or(&[], Vec::as_slice)
    }

    /// The `pattern` rules.
    pub fn patterns(&self) -> &[AclRule] {
        &self.patterns
    }

    /// Compiles the rules that apply to a client into its session's matcher: `username`
    /// (`None` for anonymous), `client_id`, and the users it follows (`follows`, for `%f`) and
    /// its friends (`friends`, for `%F`), usually [`Relations::follows`] and
    /// [`Relations::friends`] of the username.
    ///
    /// [`Relations::follows`]: super::Relations::follows
    /// [`Relations::friends`]: super::Relations::friends
    pub fn compile(
        &self,
        username: Option<&str>,
        client_id: &str,
        follows: &[&str],
        friends: &[&str],
    ) -> SessionAcl {
        let subject = Subject {
            username,
            client_id,
            follows,
            friends,
        };
        let mut acl = SessionAclBuilder::new();
        for rule in self.applicable(username) {
            let mode = match rule.access {
                Access::Deny => Expansion::Deny,
                _ => Expansion::Allow,
            };
            rule.filter
                .expand(&subject, mode, &mut |filter| acl.add(rule.access, filter));
        }
        acl.build()
    }

    /// The rules that apply to a client with `username` (`None`: anonymous), before expansion.
    fn applicable(&self, username: Option<&str>) -> impl Iterator<Item = &AclRule> {
        let own = match username {
            None => self.anonymous(),
            Some(name) => self.user(name),
        };
        own.iter().chain(&self.patterns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Relations;

    fn rule(access: Access, text: &str) -> AclRule {
        AclRule::new(access, FilterTemplate::parse(text).expect("valid template"))
    }

    fn user_acl(rules: &AclRules, user: &str) -> SessionAcl {
        rules.compile(Some(user), "client-1", &[], &[])
    }

    #[test]
    fn nothing_allowed_without_rules() {
        let acl = user_acl(&AclRules::new(), "alice");
        assert!(!acl.can_publish("a"));
        assert!(!acl.can_receive("a"));
        assert!(!acl.can_subscribe("#"));
        let none = SessionAcl::deny_all();
        assert!(!none.can_publish("a"));
        let all = SessionAcl::allow_all();
        assert!(all.can_publish("a") && all.can_receive("$SYS/x") && all.can_subscribe("#"));
    }

    #[test]
    fn user_rules_apply_only_to_that_user() {
        let mut rules = AclRules::new();
        rules.push_anonymous(rule(Access::ReadWrite, "public/#"));
        rules.push_user("alice", rule(Access::ReadWrite, "alice/#"));
        let bob = user_acl(&rules, "bob");
        assert!(!bob.can_publish("alice/x"));
        assert!(
            !bob.can_publish("public/x"),
            "anonymous rules are not everyone's"
        );
        let alice = user_acl(&rules, "alice");
        assert!(alice.can_publish("alice/x") && !alice.can_publish("public/x"));
    }

    #[test]
    fn anonymous_gets_anonymous_rules_and_patterns_without_username() {
        let mut rules = AclRules::new();
        rules.push_anonymous(rule(Access::Read, "public/#"));
        rules.push_pattern(rule(Access::ReadWrite, "clients/%c/#"));
        rules.push_pattern(rule(Access::ReadWrite, "users/%u/#"));
        rules.push_pattern(rule(Access::ReadWrite, "users/%u/%c"));
        let anon = rules.compile(None, "dev1", &[], &[]);
        assert!(anon.can_receive("public/x"));
        assert!(anon.can_publish("clients/dev1/status"));
        assert!(!anon.can_publish("clients/dev2/status"));
        assert!(!anon.can_publish("users/%u/x"));
        assert!(!anon.can_publish("users//x"));
        assert!(!anon.can_publish("users/dev1"));
        let named = rules.compile(Some("ann"), "dev1", &[], &[]);
        assert!(named.can_publish("users/ann/x") && named.can_publish("users/ann/dev1"));
        assert!(!named.can_receive("public/x"));
    }

    /// Which list a rule comes from does not matter: a `pattern deny` beats a user's own
    /// `topic` allow, where Mosquitto checks the user's list first and would allow.
    #[test]
    fn a_pattern_deny_beats_a_user_allow() {
        let mut rules = AclRules::new();
        rules.push_user("alice", rule(Access::ReadWrite, "a/#"));
        rules.push_user("alice", rule(Access::ReadWrite, "b/exact"));
        rules.push_pattern(rule(Access::Deny, "b/+"));
        rules.push_pattern(rule(Access::Deny, "a/%u"));
        let acl = user_acl(&rules, "alice");
        assert!(acl.can_publish("a/open") && acl.can_subscribe("a/+"));
        assert!(!acl.can_publish("b/exact") && !acl.can_subscribe("b/exact"));
        assert!(!acl.can_receive("a/alice") && !acl.can_subscribe("a/alice"));
    }

    #[test]
    fn username_and_client_id_substitution() {
        let mut rules = AclRules::new();
        rules.push_pattern(rule(Access::ReadWrite, "devices/%c/+"));
        rules.push_pattern(rule(Access::Read, "/%u/chat"));
        let acl = rules.compile(Some("ann"), "phone", &[], &[]);
        assert!(acl.can_publish("devices/phone/state"));
        assert!(!acl.can_publish("devices/tablet/state"));
        assert!(acl.can_receive("/ann/chat"));
        assert!(!acl.can_publish("/ann/chat"));
        assert!(!acl.can_receive("/bob/chat"));
        assert!(acl.can_subscribe("/ann/chat"));
        assert!(!acl.can_subscribe("/+/chat"));
    }

    #[test]
    fn dangerous_values_never_fill_allowing_rules() {
        let mut rules = AclRules::new();
        rules.push_pattern(rule(Access::ReadWrite, "users/%u/x"));
        rules.push_pattern(rule(Access::ReadWrite, "clients/%c"));
        for bad in ["+", "#", "a/b", "a+", "b#", ""] {
            let acl = rules.compile(Some(bad), bad, &[], &[]);
            assert_eq!(acl.filter_count(), 0, "{bad:?}");
            assert!(!acl.can_publish("users/a/b/x"), "{bad:?}");
            assert!(!acl.can_publish("users/anything/x"), "{bad:?}");
            assert!(!acl.can_publish("clients/a/b"), "{bad:?}");
        }
        // A good username still matches its rule when only the client id is bad.
        let acl = rules.compile(Some("ann"), "a/b", &[], &[]);
        assert!(acl.can_publish("users/ann/x"));
        assert!(!acl.can_publish("clients/a/b"));
    }

    #[test]
    fn dangerous_values_widen_deny_rules() {
        let mut rules = AclRules::new();
        rules.push_pattern(rule(Access::ReadWrite, "secret/#"));
        rules.push_pattern(rule(Access::Deny, "secret/%c"));
        let acl = rules.compile(Some("ann"), "a/b", &[], &[]);
        assert!(!acl.can_publish("secret/a/b"));
        assert!(acl.can_publish("secret/c"));
        let acl = rules.compile(Some("ann"), "+", &[], &[]);
        assert!(!acl.can_publish("secret/c"));
        assert!(acl.can_publish("secret/c/d"));
        let acl = rules.compile(Some("ann"), "#", &[], &[]);
        assert!(!acl.can_publish("secret/c/d") && !acl.can_publish("secret"));
    }

    #[test]
    fn followee_is_one_way_friend_is_mutual() {
        let mut relations = Relations::new();
        relations.add_follow("ann", "bob");
        relations.add_follow("bob", "ann");
        relations.add_follow("ann", "cat");
        relations.add_follow("ann", "cat");
        relations.add_follow("dan", "ann");
        assert_eq!(relations.follows("ann"), ["bob", "cat"]);
        assert_eq!(relations.friends("ann"), ["bob"]);
        assert_eq!(relations.friends("dan"), Vec::<&str>::new());
        assert!(relations.is_following("dan", "ann") && !relations.is_following("ann", "dan"));

        let mut rules = AclRules::new();
        rules.push_pattern(rule(Access::Write, "follow/%f/inbox"));
        rules.push_pattern(rule(Access::Write, "friend/%F/inbox"));
        let follows = relations.follows("ann");
        let friends = relations.friends("ann");
        let acl = rules.compile(Some("ann"), "c", &follows, &friends);
        assert!(acl.can_publish("follow/bob/inbox") && acl.can_publish("follow/cat/inbox"));
        assert!(acl.can_publish("friend/bob/inbox"));
        assert!(!acl.can_publish("friend/cat/inbox"));
        assert!(!acl.can_publish("follow/dan/inbox"));
        assert_eq!(acl.filter_count(), 3);
    }

    #[test]
    fn relation_names_with_wildcards_are_skipped_for_allow() {
        let mut rules = AclRules::new();
        rules.push_pattern(rule(Access::Write, "user/%F/presence/+"));
        let acl = rules.compile(Some("ann"), "c", &[], &["bob", "#", "x/y", ""]);
        assert_eq!(acl.filter_count(), 1);
        assert!(acl.can_publish("user/bob/presence/online"));
        assert!(!acl.can_publish("user/x/y/presence/online"));
        assert!(!acl.can_publish("user/zed/presence/online"));
    }

    /// The push-server example: mutual followers may write to each other's chat topic.
    #[test]
    fn push_server_example() {
        let mut relations = Relations::new();
        relations.add_follow("t1.qq.com", "yxq_anis.163.com");
        relations.add_follow("yxq_anis.163.com", "t1.qq.com");
        relations.add_follow("x.sina.com", "yxq_anis.163.com");
        let mut rules = AclRules::new();
        rules.push_pattern(rule(Access::Read, "/%u/chat"));
        rules.push_pattern(rule(Access::Write, "/%F/chat"));
        let compile = |user: &str| {
            let follows = relations.follows(user);
            let friends = relations.friends(user);
            rules.compile(Some(user), user, &follows, &friends)
        };
        let t1 = compile("t1.qq.com");
        assert!(t1.can_publish("/yxq_anis.163.com/chat"));
        assert!(t1.can_receive("/t1.qq.com/chat"));
        assert!(t1.can_subscribe("/t1.qq.com/chat"));
        assert!(
            !t1.can_publish("/t1.qq.com/chat"),
            "no write to one's own chat"
        );
        assert!(!t1.can_receive("/yxq_anis.163.com/chat"));
        let yxq = compile("yxq_anis.163.com");
        assert!(yxq.can_publish("/t1.qq.com/chat"));
        assert!(
            !yxq.can_publish("/x.sina.com/chat"),
            "x.sina.com follows one way"
        );
        let sina = compile("x.sina.com");
        assert!(!sina.can_publish("/yxq_anis.163.com/chat"));
        assert!(!sina.can_publish("/t1.qq.com/chat"));
        assert!(sina.can_receive("/x.sina.com/chat"));
    }
}
