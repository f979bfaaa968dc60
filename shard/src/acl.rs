//! Access control: the rule model and the per-session matcher compiled from it.
//!
//! This module owns three plain data types that the control core builds from files or Redis and
//! hands to the shards behind an `Arc` (they are immutable once built):
//!
//! - [`AclRules`]: `topic` rules for anonymous clients, `topic` rules per user, and `pattern`
//!   rules for everyone, each a [`FilterTemplate`] with an [`Access`].
//! - [`Relations`]: who follows whom, for the `%f` (followee) and `%F` (friend: mutual follower)
//!   substitutions.
//! - [`AutoSubscribe`]: filter templates with a QoS, subscribed on a successful CONNECT.
//!
//! and [`SessionAcl`], the matcher one session owns on its shard. It is compiled once, when the
//! session connects (or when the control core reports that the rules or relations changed), by
//! expanding every substitution: `%u` becomes the username, `%c` the client id, and a rule with
//! `%f` / `%F` becomes one filter per followee / friend. The expanded filters go into a hash map
//! (filters without wildcards, usually nearly all of them) and a small level trie (filters with
//! `+` / `#`). A check is then one hash lookup plus a walk of that trie, and allocates nothing —
//! it runs on every PUBLISH and every delivery. The price is memory proportional to the expanded
//! rules: about 60 bytes per exact filter and 180 per wildcard one (the push-server rules
//! `/%u/chat` + `/%F/chat` for a user with 100 friends take about 6 KB); relations change rarely,
//! so recompiling on change is cheap.
//!
//! # Semantics
//!
//! - **Least privilege.** Nothing is allowed unless a rule allows it. A session without any
//!   matching rule can do nothing; only [`SessionAcl::allow_all`] (no ACL configured) allows all.
//! - **Which rules apply.** An anonymous client (no username) gets the `topic` rules written
//!   before the first `user` line plus the `pattern` rules that do not use `%u`. A client with a
//!   username gets that user's `topic` rules plus every `pattern` rule. (Mosquitto's `acl_file`.)
//! - **Deny wins.** A topic matched by any `deny` rule is refused, whatever allows it, and whether
//!   the deny rule is a user rule or a pattern. Mosquitto only puts denials first *within* each
//!   list and checks the user's list before the patterns, so there a user `topic` allow beats a
//!   `pattern deny`; here the deny always wins, which is what an operator writing it means.
//! - **Publish** ([`SessionAcl::can_publish`]): the topic must match a `write`/`readwrite` rule.
//! - **Receive** ([`SessionAcl::can_receive`], checked at delivery): the topic must match a
//!   `read`/`readwrite` rule.
//! - **Subscribe** ([`SessionAcl::can_subscribe`]): a filter is allowed when one `read` rule
//!   *covers* it — every topic the filter can match, that rule matches too — and no `deny` rule
//!   covers it (the subscription could never receive anything). A filter that merely overlaps a
//!   deny rule is allowed; the denied topics are then filtered out by `can_receive` at delivery.
//!   "Covers" is level by level: a rule `#` covers anything that remains (also nothing: `a/#`
//!   covers `a`); a rule `+` covers a filter level `+` or any literal, not `#`; a literal covers
//!   only the same literal; a rule starting with a wildcard never covers a filter whose first
//!   level starts with `$` [MQTT-4.7.2-1]. This is the test of libmosquitto's
//!   `mosquitto_sub_matches_acl`. Mosquitto 2.0's `acl_file` check itself lets every SUBSCRIBE
//!   through and checks `read` only at delivery; refusing at SUBSCRIBE tells the client early
//!   (SUBACK 0x87 / 0x80) and keeps useless subscriptions out of the route table.
//!
//! # Substitutions
//!
//! A substitution fills a whole level (`/%u/chat`, `user/%F/presence/+`); `a%u` is the literal
//! text `a%u`, as in Mosquitto. A template holds at most one `%f`/`%F` level, so one rule expands
//! to at most one filter per related user (no cross products). `topic` rules are expanded too
//! (Mosquitto expands only `pattern` lines), so a per-user rule may say `topic write /%F/chat`.
//!
//! A value that is empty or contains `+`, `#` or `/` would make a rule match topics it was not
//! written for, so it never fills an *allowing* rule or an auto-subscription: a client whose
//! username or client id contains them cannot match rules that use that substitution, and such a
//! related user is skipped. (Mosquitto refuses such a client every `pattern` rule, whether it
//! uses the value or not: 1.x for `+#/`, 2.0 for `+#`.) A *deny* rule instead takes the value
//! verbatim, which can only make it deny more: failing closed.

use std::fmt;

use hashbrown::HashMap;
use shardmq_codec::QoS;

/// What a rule grants, from the access word of a `topic` / `pattern` line.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum Access {
    /// `read`: subscribe and receive.
    Read,
    /// `write`: publish.
    Write,
    /// `readwrite` (the default when the word is omitted).
    ReadWrite,
    /// `deny`: neither, whatever other rules allow.
    Deny,
}

impl Access {
    /// The access for an ACL file keyword (`read`, `write`, `readwrite`, `deny`).
    pub fn from_keyword(word: &str) -> Option<Access> {
        match word {
            "read" => Some(Access::Read),
            "write" => Some(Access::Write),
            "readwrite" => Some(Access::ReadWrite),
            "deny" => Some(Access::Deny),
            _ => None,
        }
    }

    /// The keyword this access is written as.
    pub fn keyword(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::ReadWrite => "readwrite",
            Access::Deny => "deny",
        }
    }

    fn flags(self) -> u8 {
        match self {
            Access::Read => READ,
            Access::Write => WRITE,
            Access::ReadWrite => READ | WRITE,
            Access::Deny => DENY,
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

const READ: u8 = 1;
const WRITE: u8 = 2;
const DENY: u8 = 4;

/// Why a topic filter template was refused.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
pub enum TemplateError {
    /// Not a valid MQTT topic filter (empty, `#` not last, `+`/`#` inside a level, U+0000).
    #[error("invalid topic filter")]
    InvalidFilter,
    /// More than one `%f`/`%F` level: the rule would expand to a cross product of users.
    #[error("more than one %f/%F substitution in one filter")]
    MultipleRelations,
}

/// One level of a [`FilterTemplate`].
#[derive(Clone, Debug, Eq, PartialEq)]
enum Level {
    Literal(Box<str>),
    SingleWildcard,
    MultiWildcard,
    Username,
    ClientId,
    Followee,
    Friend,
}

/// Which relation a template's `%f` / `%F` level draws from.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Relation {
    Followee,
    Friend,
}

/// How [`FilterTemplate::expand`] treats a substitution value that is empty or holds `+#/`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Expansion {
    /// Allowing rules and auto-subscriptions: such a value does not fill the template.
    Allow,
    /// Deny rules: the value is used verbatim, which only widens the denial.
    Deny,
}

/// A topic filter whose levels may be the substitutions `%u` (username), `%c` (client id),
/// `%f` (each followee) or `%F` (each friend).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct FilterTemplate {
    text: Box<str>,
    levels: Box<[Level]>,
    relation: Option<Relation>,
    uses_username: bool,
    uses_client_id: bool,
}

impl FilterTemplate {
    /// Parses `text`: a valid topic filter in which a level that is exactly `%u`, `%c`, `%f` or
    /// `%F` is a substitution, with at most one `%f`/`%F` level.
    pub fn parse(text: &str) -> Result<FilterTemplate, TemplateError> {
        if !shardmq_codec::topic::valid_filter(text) {
            return Err(TemplateError::InvalidFilter);
        }
        let mut relation = None;
        let mut uses_username = false;
        let mut uses_client_id = false;
        let mut levels = Vec::new();
        for level in text.split('/') {
            let level = match level {
                "+" => Level::SingleWildcard,
                "#" => Level::MultiWildcard,
                "%u" => {
                    uses_username = true;
                    Level::Username
                }
                "%c" => {
                    uses_client_id = true;
                    Level::ClientId
                }
                "%f" | "%F" => {
                    if relation.is_some() {
                        return Err(TemplateError::MultipleRelations);
                    }
                    if level == "%f" {
                        relation = Some(Relation::Followee);
                        Level::Followee
                    } else {
                        relation = Some(Relation::Friend);
                        Level::Friend
                    }
                }
                literal => Level::Literal(literal.into()),
            };
            levels.push(level);
        }
        Ok(FilterTemplate {
            text: text.into(),
            levels: levels.into_boxed_slice(),
            relation,
            uses_username,
            uses_client_id,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True if the template uses `%u`, so it never applies to an anonymous client.
    pub fn uses_username(&self) -> bool {
        self.uses_username
    }

    /// True if the template has any substitution level.
    pub fn has_substitutions(&self) -> bool {
        self.uses_username || self.uses_client_id || self.relation.is_some()
    }

    /// Calls `out` with each concrete filter this template stands for, for `subject`.
    fn expand(&self, subject: &Subject<'_>, mode: Expansion, out: &mut dyn FnMut(String)) {
        let fills = |value: &str| mode == Expansion::Deny || usable(value);
        let username = match (self.uses_username, subject.username) {
            (false, _) => "",
            (true, None) => return,
            (true, Some(name)) if fills(name) => name,
            (true, Some(_)) => return,
        };
        let client_id = match self.uses_client_id {
            false => "",
            true if fills(subject.client_id) => subject.client_id,
            true => return,
        };
        let related: &[&str] = match self.relation {
            // One pass with no related user.
            None => &[""],
            Some(Relation::Followee) => subject.follows,
            Some(Relation::Friend) => subject.friends,
        };
        for &name in related {
            if self.relation.is_some() && !fills(name) {
                continue;
            }
            let mut filter = String::with_capacity(self.text.len() + name.len() + username.len());
            for (i, level) in self.levels.iter().enumerate() {
                if i > 0 {
                    filter.push('/');
                }
                filter.push_str(match level {
                    Level::Literal(text) => text,
                    Level::SingleWildcard => "+",
                    Level::MultiWildcard => "#",
                    Level::Username => username,
                    Level::ClientId => client_id,
                    Level::Followee | Level::Friend => name,
                });
            }
            out(filter);
        }
    }
}

impl fmt::Display for FilterTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// True if `value` may fill a substitution level of an allowing rule: it is one non-empty level
/// without wildcards, so the expanded filter matches exactly what the template says.
fn usable(value: &str) -> bool {
    !value.is_empty() && !value.contains(['+', '#', '/'])
}

/// The identity a template is expanded for.
struct Subject<'a> {
    username: Option<&'a str>,
    client_id: &'a str,
    follows: &'a [&'a str],
    friends: &'a [&'a str],
}

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

    /// What the rule grants.
    pub fn access(&self) -> Access {
        self.access
    }

    /// The filter the rule applies to.
    pub fn filter(&self) -> &FilterTemplate {
        &self.filter
    }
}

/// A whole rule set, as parsed from an `acl_file` (or loaded from Redis). Immutable once built;
/// share it behind an `Arc`.
#[derive(Clone, Debug, Default)]
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

    /// The users that have `topic` rules of their own.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(|name| &**name)
    }

    /// The `pattern` rules.
    pub fn patterns(&self) -> &[AclRule] {
        &self.patterns
    }

    /// True if there is no rule at all.
    pub fn is_empty(&self) -> bool {
        self.anonymous.is_empty() && self.users.is_empty() && self.patterns.is_empty()
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

    /// The number of users who follow anyone.
    pub fn len(&self) -> usize {
        self.follows.len()
    }

    /// True if nobody follows anyone.
    pub fn is_empty(&self) -> bool {
        self.follows.is_empty()
    }
}

/// One auto-subscribe line: a filter template and the QoS to subscribe with.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct AutoSubscription {
    filter: FilterTemplate,
    qos: QoS,
}

impl AutoSubscription {
    /// Subscribe to `filter` with `qos`.
    pub fn new(filter: FilterTemplate, qos: QoS) -> AutoSubscription {
        AutoSubscription { filter, qos }
    }

    /// The filter template.
    pub fn filter(&self) -> &FilterTemplate {
        &self.filter
    }

    /// The QoS subscribed with.
    pub fn qos(&self) -> QoS {
        self.qos
    }
}

/// The subscriptions made for a client on a successful CONNECT: lines for everyone, and lines
/// per user. Immutable once built; share it behind an `Arc`.
#[derive(Clone, Debug, Default)]
pub struct AutoSubscribe {
    everyone: Vec<AutoSubscription>,
    users: HashMap<Box<str>, Vec<AutoSubscription>>,
}

impl AutoSubscribe {
    /// No auto-subscriptions.
    pub fn new() -> AutoSubscribe {
        AutoSubscribe::default()
    }

    /// Adds a line that applies to every client.
    pub fn push_everyone(&mut self, subscription: AutoSubscription) {
        self.everyone.push(subscription);
    }

    /// Adds a line that applies to `username` only.
    pub fn push_user(&mut self, username: &str, subscription: AutoSubscription) {
        self.users
            .entry_ref(username)
            .or_default()
            .push(subscription);
    }

    /// The lines for every client.
    pub fn everyone(&self) -> &[AutoSubscription] {
        &self.everyone
    }

    /// The lines for `username` only (empty if none).
    pub fn user(&self, username: &str) -> &[AutoSubscription] {
        self.users.get(username).map_or(&[], Vec::as_slice)
    }

    /// True if there is no line at all.
    pub fn is_empty(&self) -> bool {
        self.everyone.is_empty() && self.users.is_empty()
    }

    /// The concrete `(filter, qos)` subscriptions for a client: the lines for everyone, then the
    /// user's own, with substitutions expanded (a `%f`/`%F` line gives one filter per related
    /// user). An anonymous client (`username` `None`) gets no line that uses `%u`; values that
    /// are empty or contain `+#/` fill nothing. A filter produced twice is subscribed once, with
    /// the highest QoS asked for, at its first position.
    ///
    /// These are not checked against the ACL here: the caller subscribes only the filters its
    /// [`SessionAcl::can_subscribe`] allows.
    pub fn expand(
        &self,
        username: Option<&str>,
        client_id: &str,
        follows: &[&str],
        friends: &[&str],
    ) -> Vec<(String, QoS)> {
        let subject = Subject {
            username,
            client_id,
            follows,
            friends,
        };
        let own = username.map_or(&[][..], |name| self.user(name));
        let mut out: Vec<(String, QoS)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for line in self.everyone.iter().chain(own) {
            line.filter.expand(
                &subject,
                Expansion::Allow,
                &mut |filter| match index.get(&filter) {
                    Some(&at) => out[at].1 = out[at].1.max(line.qos),
                    None => {
                        index.insert(filter.clone(), out.len());
                        out.push((filter, line.qos));
                    }
                },
            );
        }
        out
    }
}

/// The access rules of one session, compiled for its username, client id and relations.
///
/// Owned by the session on its shard; checks take `&self` and never allocate.
#[derive(Clone, Debug)]
pub struct SessionAcl {
    allow_all: bool,
    /// Expanded filters without a `+`/`#` level, each with the OR of its rules' flags.
    exact: HashMap<Box<str>, u8>,
    /// Expanded filters with a wildcard level.
    wildcards: FilterTrie,
}

impl SessionAcl {
    /// Compiles the rules that apply to a client: `username` (`None` for anonymous),
    /// `client_id`, and the users it follows (`follows`, for `%f`) and its friends (`friends`,
    /// for `%F`), usually [`Relations::follows`] and [`Relations::friends`] of the username.
    pub fn compile(
        rules: &AclRules,
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
        let mut acl = SessionAcl {
            allow_all: false,
            exact: HashMap::new(),
            wildcards: FilterTrie::new(),
        };
        for rule in rules.applicable(username) {
            let (mode, flags) = match rule.access {
                Access::Deny => (Expansion::Deny, DENY),
                access => (Expansion::Allow, access.flags()),
            };
            rule.filter
                .expand(&subject, mode, &mut |filter| acl.insert(filter, flags));
        }
        acl.exact.shrink_to_fit();
        acl.wildcards.shrink_to_fit();
        acl
    }

    /// A matcher that allows everything: for a broker run without any ACL.
    pub fn allow_all() -> SessionAcl {
        SessionAcl {
            allow_all: true,
            exact: HashMap::new(),
            wildcards: FilterTrie::new(),
        }
    }

    /// A matcher that allows nothing.
    pub fn deny_all() -> SessionAcl {
        SessionAcl {
            allow_all: false,
            exact: HashMap::new(),
            wildcards: FilterTrie::new(),
        }
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
        let mut flags = 0;
        if !has_wildcard_level(filter) {
            // A filter with a wildcard level matches many topics, an exact rule only one, so
            // exact rules can only cover exact filters.
            flags |= self.exact.get(filter).copied().unwrap_or(0);
        }
        self.wildcards.cover_flags(filter, &mut flags);
        allows(flags, READ)
    }

    /// The number of expanded filters, for memory accounting and tests (a wildcard filter
    /// produced twice counts twice).
    pub fn filter_count(&self) -> usize {
        self.exact.len() + self.wildcards.filters
    }

    /// The OR of the flags of every expanded filter matching `topic`.
    fn topic_flags(&self, topic: &str) -> u8 {
        let mut flags = self.exact.get(topic).copied().unwrap_or(0);
        self.wildcards.match_flags(topic, &mut flags);
        flags
    }

    fn insert(&mut self, filter: String, flags: u8) {
        if has_wildcard_level(&filter) {
            self.wildcards.insert(&filter, flags);
        } else {
            *self.exact.entry(filter.into_boxed_str()).or_insert(0) |= flags;
        }
    }
}

/// True if `flags` grant `wanted` and no deny rule matched.
fn allows(flags: u8, wanted: u8) -> bool {
    flags & DENY == 0 && flags & wanted != 0
}

/// True if a level of `filter` is exactly `+` or `#`.
fn has_wildcard_level(filter: &str) -> bool {
    filter.split('/').any(|level| level == "+" || level == "#")
}

/// A level trie of wildcard filters, each node carrying the OR of the flags of the filters that
/// end there (`flags`) and of the filters that end there followed by `/#` (`multi`).
///
/// Nodes live in one `Vec` (empty until the first wildcard filter, so most sessions allocate
/// nothing here) and refer to each other by index. See [`Children`] for how a node finds its
/// literal children.
/// Walks recurse once per trie level, so their depth is bounded by the deepest configured
/// filter, never by the topic a client sends.
#[derive(Clone, Debug)]
struct FilterTrie {
    nodes: Vec<Node>,
    filters: usize,
}

#[derive(Clone, Debug, Default)]
struct Node {
    literal: Children,
    /// The `+` child, or [`ROOT`] (never a child) for none.
    single: u32,
    flags: u8,
    multi: u8,
}

const ROOT: u32 = 0;

impl Node {
    fn single_child(&self) -> Option<u32> {
        (self.single != ROOT).then_some(self.single)
    }
}

/// The literal children of a trie node: a short list scanned in order while there are at most
/// [`FEW_CHILDREN`], a hash map beyond. Most nodes have one child (`presence` under each friend
/// in `user/%F/presence/+`), where a table per node doubled the trie's memory; a node fanning out
/// to 100 friends keeps its O(1) lookup.
#[derive(Clone, Debug)]
enum Children {
    Few(Vec<(Box<str>, u32)>),
    Many(Box<HashMap<Box<str>, u32>>),
}

const FEW_CHILDREN: usize = 8;

impl Default for Children {
    fn default() -> Children {
        Children::Few(Vec::new())
    }
}

impl Children {
    fn get(&self, level: &str) -> Option<u32> {
        match self {
            Children::Few(list) => list
                .iter()
                .find(|(name, _)| **name == *level)
                .map(|&(_, child)| child),
            Children::Many(map) => map.get(level).copied(),
        }
    }

    fn insert(&mut self, level: &str, child: u32) {
        match self {
            Children::Few(list) if list.len() < FEW_CHILDREN => list.push((level.into(), child)),
            Children::Few(list) => {
                let mut map: HashMap<Box<str>, u32> = list.drain(..).collect();
                map.insert(level.into(), child);
                *self = Children::Many(Box::new(map));
            }
            Children::Many(map) => {
                map.insert(level.into(), child);
            }
        }
    }

    fn shrink_to_fit(&mut self) {
        match self {
            Children::Few(list) => list.shrink_to_fit(),
            Children::Many(map) => map.shrink_to_fit(),
        }
    }
}

impl FilterTrie {
    fn new() -> FilterTrie {
        FilterTrie {
            nodes: Vec::new(),
            filters: 0,
        }
    }

    fn shrink_to_fit(&mut self) {
        self.nodes.shrink_to_fit();
        for node in &mut self.nodes {
            node.literal.shrink_to_fit();
        }
    }

    fn is_empty(&self) -> bool {
        self.filters == 0
    }

    /// Adds `filter`. A `#` level ends the filter wherever it stands, as in
    /// [`shardmq_codec::topic::matches`] (only deny expansions can put one elsewhere than last).
    fn insert(&mut self, filter: &str, flags: u8) {
        if self.nodes.is_empty() {
            self.nodes.push(Node::default());
        }
        self.filters += 1;
        let mut at = ROOT;
        for level in filter.split('/') {
            if level == "#" {
                self.nodes[at as usize].multi |= flags;
                return;
            }
            let node = &self.nodes[at as usize];
            at = if level == "+" {
                match node.single_child() {
                    Some(child) => child,
                    None => {
                        let child = self.push_node();
                        self.nodes[at as usize].single = child;
                        child
                    }
                }
            } else {
                match node.literal.get(level) {
                    Some(child) => child,
                    None => {
                        let child = self.push_node();
                        self.nodes[at as usize].literal.insert(level, child);
                        child
                    }
                }
            };
        }
        self.nodes[at as usize].flags |= flags;
    }

    fn push_node(&mut self) -> u32 {
        // Index of the new node. A session's trie has a node per level of its few hundred
        // filters; reaching u32::MAX nodes would take over 100 GiB, so the cast cannot truncate.
        let index = self.nodes.len() as u32;
        self.nodes.push(Node::default());
        index
    }

    fn node(&self, at: u32) -> &Node {
        &self.nodes[at as usize]
    }

    /// ORs into `acc` the flags of every filter matching the topic name `topic`.
    fn match_flags(&self, topic: &str, acc: &mut u8) {
        if self.is_empty() {
            return;
        }
        // [MQTT-4.7.2-1]: a topic starting with `$` is not matched by a filter starting with a
        // wildcard.
        let dollar = topic.starts_with('$');
        self.match_from(ROOT, topic.split('/'), dollar, acc);
    }

    fn match_from(
        &self,
        at: u32,
        mut levels: std::str::Split<'_, char>,
        dollar: bool,
        acc: &mut u8,
    ) {
        let node = self.node(at);
        if !dollar {
            // `<here>/#` matches this level and anything after it, also nothing.
            *acc |= node.multi;
        }
        match levels.next() {
            None => *acc |= node.flags,
            Some(level) => {
                if let Some(child) = node.literal.get(level) {
                    self.match_from(child, levels.clone(), false, acc);
                }
                if let (Some(child), false) = (node.single_child(), dollar) {
                    self.match_from(child, levels, false, acc);
                }
            }
        }
    }

    /// ORs into `acc` the flags of every filter that covers the topic filter `filter`.
    fn cover_flags(&self, filter: &str, acc: &mut u8) {
        if self.is_empty() {
            return;
        }
        let dollar = filter.starts_with('$');
        self.cover_from(ROOT, filter.split('/'), dollar, acc);
    }

    fn cover_from(
        &self,
        at: u32,
        mut levels: std::str::Split<'_, char>,
        dollar: bool,
        acc: &mut u8,
    ) {
        let node = self.node(at);
        if !dollar {
            // A rule `<here>/#` covers whatever the filter has left, including `+` and `#`.
            *acc |= node.multi;
        }
        match levels.next() {
            None => *acc |= node.flags,
            // Only a rule `#` at this level covers the filter's `#`: handled above.
            Some("#") => {}
            Some("+") => {
                if let (Some(child), false) = (node.single_child(), dollar) {
                    self.cover_from(child, levels, false, acc);
                }
            }
            Some(level) => {
                if let Some(child) = node.literal.get(level) {
                    self.cover_from(child, levels.clone(), false, acc);
                }
                if let (Some(child), false) = (node.single_child(), dollar) {
                    self.cover_from(child, levels, false, acc);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use shardmq_codec::topic::matches;

    use super::*;

    fn template(text: &str) -> FilterTemplate {
        FilterTemplate::parse(text).expect("valid template")
    }

    fn rule(access: Access, text: &str) -> AclRule {
        AclRule::new(access, template(text))
    }

    fn user_acl(rules: &AclRules, user: &str) -> SessionAcl {
        SessionAcl::compile(rules, Some(user), "client-1", &[], &[])
    }

    #[test]
    fn template_parsing() {
        let t = template("/%u/chat");
        assert!(t.uses_username());
        assert!(t.has_substitutions());
        assert_eq!(t.as_str(), "/%u/chat");
        assert!(!template("a/+/#").has_substitutions());
        // Not a whole level: literal text, as in Mosquitto.
        assert!(!template("a%u/x").has_substitutions());
        assert!(!template("%username").has_substitutions());
        assert_eq!(FilterTemplate::parse(""), Err(TemplateError::InvalidFilter));
        assert_eq!(
            FilterTemplate::parse("a/#/b"),
            Err(TemplateError::InvalidFilter)
        );
        assert_eq!(
            FilterTemplate::parse("a+/b"),
            Err(TemplateError::InvalidFilter)
        );
        assert_eq!(
            FilterTemplate::parse("%f/%F"),
            Err(TemplateError::MultipleRelations)
        );
        assert_eq!(
            FilterTemplate::parse("%f/x/%f"),
            Err(TemplateError::MultipleRelations)
        );
    }

    #[test]
    fn access_keywords() {
        for access in [Access::Read, Access::Write, Access::ReadWrite, Access::Deny] {
            assert_eq!(Access::from_keyword(access.keyword()), Some(access));
        }
        assert_eq!(Access::from_keyword("READ"), None);
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
    fn read_write_readwrite() {
        let mut rules = AclRules::new();
        rules.push_user("alice", rule(Access::Read, "news/#"));
        rules.push_user("alice", rule(Access::Write, "inbox/+"));
        rules.push_user("alice", rule(Access::ReadWrite, "room/1"));
        let acl = user_acl(&rules, "alice");
        assert!(acl.can_receive("news/today") && !acl.can_publish("news/today"));
        assert!(acl.can_publish("inbox/bob") && !acl.can_receive("inbox/bob"));
        assert!(acl.can_publish("room/1") && acl.can_receive("room/1"));
        assert!(!acl.can_publish("room/2") && !acl.can_receive("room/2"));
        assert!(!acl.can_publish("inbox/bob/x"));
        assert!(acl.can_receive("news"), "`news/#` matches `news`");
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
        assert_eq!(rules.users().collect::<Vec<_>>(), ["alice"]);
    }

    #[test]
    fn anonymous_gets_anonymous_rules_and_patterns_without_username() {
        let mut rules = AclRules::new();
        rules.push_anonymous(rule(Access::Read, "public/#"));
        rules.push_pattern(rule(Access::ReadWrite, "clients/%c/#"));
        rules.push_pattern(rule(Access::ReadWrite, "users/%u/#"));
        rules.push_pattern(rule(Access::ReadWrite, "users/%u/%c"));
        let anon = SessionAcl::compile(&rules, None, "dev1", &[], &[]);
        assert!(anon.can_receive("public/x"));
        assert!(anon.can_publish("clients/dev1/status"));
        assert!(!anon.can_publish("clients/dev2/status"));
        assert!(!anon.can_publish("users/%u/x"));
        assert!(!anon.can_publish("users//x"));
        assert!(!anon.can_publish("users/dev1"));
        let named = SessionAcl::compile(&rules, Some("ann"), "dev1", &[], &[]);
        assert!(named.can_publish("users/ann/x") && named.can_publish("users/ann/dev1"));
        assert!(!named.can_receive("public/x"));
    }

    #[test]
    fn deny_wins_over_allow_everywhere() {
        let mut rules = AclRules::new();
        rules.push_user("alice", rule(Access::ReadWrite, "a/#"));
        rules.push_user("alice", rule(Access::Deny, "a/secret"));
        rules.push_user("alice", rule(Access::ReadWrite, "a/secret"));
        rules.push_user("alice", rule(Access::ReadWrite, "b/exact"));
        // A pattern deny beats a user allow too (Mosquitto would allow here).
        rules.push_pattern(rule(Access::Deny, "b/+"));
        let acl = user_acl(&rules, "alice");
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
    fn username_and_client_id_substitution() {
        let mut rules = AclRules::new();
        rules.push_pattern(rule(Access::ReadWrite, "devices/%c/+"));
        rules.push_pattern(rule(Access::Read, "/%u/chat"));
        let acl = SessionAcl::compile(&rules, Some("ann"), "phone", &[], &[]);
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
            let acl = SessionAcl::compile(&rules, Some(bad), bad, &[], &[]);
            assert_eq!(acl.filter_count(), 0, "{bad:?}");
            assert!(!acl.can_publish("users/a/b/x"), "{bad:?}");
            assert!(!acl.can_publish("users/anything/x"), "{bad:?}");
            assert!(!acl.can_publish("clients/a/b"), "{bad:?}");
        }
        // A good username still matches its rule when only the client id is bad.
        let acl = SessionAcl::compile(&rules, Some("ann"), "a/b", &[], &[]);
        assert!(acl.can_publish("users/ann/x"));
        assert!(!acl.can_publish("clients/a/b"));
    }

    #[test]
    fn dangerous_values_widen_deny_rules() {
        let mut rules = AclRules::new();
        rules.push_pattern(rule(Access::ReadWrite, "secret/#"));
        rules.push_pattern(rule(Access::Deny, "secret/%c"));
        let acl = SessionAcl::compile(&rules, Some("ann"), "a/b", &[], &[]);
        assert!(!acl.can_publish("secret/a/b"));
        assert!(acl.can_publish("secret/c"));
        let acl = SessionAcl::compile(&rules, Some("ann"), "+", &[], &[]);
        assert!(!acl.can_publish("secret/c"));
        assert!(acl.can_publish("secret/c/d"));
        let acl = SessionAcl::compile(&rules, Some("ann"), "#", &[], &[]);
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
        assert_eq!(relations.len(), 3);

        let mut rules = AclRules::new();
        rules.push_pattern(rule(Access::Write, "follow/%f/inbox"));
        rules.push_pattern(rule(Access::Write, "friend/%F/inbox"));
        let follows = relations.follows("ann");
        let friends = relations.friends("ann");
        let acl = SessionAcl::compile(&rules, Some("ann"), "c", &follows, &friends);
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
        let acl = SessionAcl::compile(&rules, Some("ann"), "c", &[], &["bob", "#", "x/y", ""]);
        assert_eq!(acl.filter_count(), 1);
        assert!(acl.can_publish("user/bob/presence/online"));
        assert!(!acl.can_publish("user/x/y/presence/online"));
        assert!(!acl.can_publish("user/zed/presence/online"));
    }

    #[test]
    fn wildcard_rules_over_many_friends() {
        // More friends than a node keeps in its short list: the node switches to a map.
        let names: Vec<String> = (0..3 * FEW_CHILDREN).map(|i| format!("f{i}")).collect();
        let friends: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut rules = AclRules::new();
        rules.push_pattern(rule(Access::Write, "user/%F/presence/+"));
        rules.push_pattern(rule(Access::Read, "user/%F/#"));
        rules.push_pattern(rule(Access::Deny, "user/%F/presence/secret"));
        let acl = SessionAcl::compile(&rules, Some("ann"), "c", &[], &friends);
        for friend in &friends {
            assert!(
                acl.can_publish(&format!("user/{friend}/presence/online")),
                "{friend}"
            );
            assert!(acl.can_receive(&format!("user/{friend}/x/y")), "{friend}");
            assert!(
                acl.can_subscribe(&format!("user/{friend}/presence/+")),
                "{friend}"
            );
            assert!(
                !acl.can_publish(&format!("user/{friend}/presence/secret")),
                "{friend}"
            );
            assert!(
                !acl.can_publish(&format!("user/{friend}/other/online")),
                "{friend}"
            );
        }
        assert!(!acl.can_publish("user/stranger/presence/online"));
        assert!(!acl.can_subscribe("user/+/presence/+"));
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
            SessionAcl::compile(&rules, Some(user), user, &follows, &friends)
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

    #[test]
    fn dollar_topics_need_dollar_rules() {
        let mut rules = AclRules::new();
        rules.push_user("ops", rule(Access::Read, "#"));
        rules.push_user("ops", rule(Access::Read, "+/status"));
        let acl = user_acl(&rules, "ops");
        assert!(acl.can_receive("a/b"));
        assert!(!acl.can_receive("$SYS/status"));
        assert!(!acl.can_subscribe("$SYS/#"));
        assert!(acl.can_subscribe("#") && acl.can_subscribe("+/status"));
        rules.push_user("ops", rule(Access::Read, "$SYS/#"));
        let acl = user_acl(&rules, "ops");
        assert!(acl.can_receive("$SYS/status") && acl.can_subscribe("$SYS/broker/+"));
    }

    #[test]
    fn subscribe_requires_a_covering_read_rule() {
        let mut rules = AclRules::new();
        rules.push_user("u", rule(Access::Read, "a/+/c"));
        rules.push_user("u", rule(Access::Read, "b/#"));
        rules.push_user("u", rule(Access::Read, "x/y"));
        rules.push_user("u", rule(Access::Read, "m/n"));
        rules.push_user("u", rule(Access::Read, "m/+/#"));
        rules.push_user("u", rule(Access::Write, "w/#"));
        let acl = user_acl(&rules, "u");
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
    fn auto_subscribe_expansion() {
        let mut auto = AutoSubscribe::new();
        auto.push_everyone(AutoSubscription::new(
            template("notices/all"),
            QoS::AtMostOnce,
        ));
        auto.push_everyone(AutoSubscription::new(
            template("/%u/chat"),
            QoS::AtLeastOnce,
        ));
        auto.push_everyone(AutoSubscription::new(
            template("user/%F/presence/+"),
            QoS::AtMostOnce,
        ));
        auto.push_user(
            "ann",
            AutoSubscription::new(template("notices/all"), QoS::ExactlyOnce),
        );
        auto.push_user(
            "ann",
            AutoSubscription::new(template("follow/%f/news"), QoS::AtMostOnce),
        );
        assert!(!auto.is_empty());
        let got = auto.expand(Some("ann"), "c1", &["bob", "cat", "a/b"], &["bob", "+"]);
        let want: Vec<(String, QoS)> = [
            ("notices/all", QoS::ExactlyOnce),
            ("/ann/chat", QoS::AtLeastOnce),
            ("user/bob/presence/+", QoS::AtMostOnce),
            ("follow/bob/news", QoS::AtMostOnce),
            ("follow/cat/news", QoS::AtMostOnce),
        ]
        .into_iter()
        .map(|(f, q)| (f.to_string(), q))
        .collect();
        assert_eq!(got, want);
        let anon = auto.expand(None, "c1", &[], &[]);
        assert_eq!(anon, [("notices/all".to_string(), QoS::AtMostOnce)]);
        let bad_user = auto.expand(Some("a/b"), "c1", &[], &[]);
        assert_eq!(bad_user, [("notices/all".to_string(), QoS::AtMostOnce)]);
    }

    // ---- property tests against a naive evaluator ----

    /// Expands `rules` for a subject the slow, obvious way.
    fn naive_expand(
        rules: &AclRules,
        username: Option<&str>,
        client_id: &str,
        follows: &[&str],
        friends: &[&str],
    ) -> Vec<(Access, String)> {
        let subject = Subject {
            username,
            client_id,
            follows,
            friends,
        };
        let mut out = Vec::new();
        for rule in rules.applicable(username) {
            let mode = match rule.access {
                Access::Deny => Expansion::Deny,
                _ => Expansion::Allow,
            };
            rule.filter
                .expand(&subject, mode, &mut |f| out.push((rule.access, f)));
        }
        out
    }

    fn naive_allows(expanded: &[(Access, String)], topic: &str, wanted: Access) -> bool {
        let hits = |access: Access| {
            expanded
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

    fn naive_can_subscribe(expanded: &[(Access, String)], filter: &str) -> bool {
        let covered = |pred: &dyn Fn(Access) -> bool| {
            expanded
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

    const NAMES: &[&str] = &["ann", "bob", "cat", "phone", "a/b", "+", "#", ""];

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::sample::select(vec!["a", "b", "", "$x", "ann", "bob"])
                .prop_map(str::to_string),
            1 => Just("+".to_string()),
            2 => prop::sample::select(vec!["%u", "%c", "%f", "%F"]).prop_map(str::to_string),
        ]
    }

    fn template_text() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(level(), 1..4),
            prop::bool::weighted(0.3),
        )
            .prop_map(|(levels, multi)| {
                let mut text = levels.join("/");
                if multi {
                    text.push_str("/#");
                }
                text
            })
    }

    fn access() -> impl Strategy<Value = Access> {
        prop::sample::select(vec![
            Access::Read,
            Access::Write,
            Access::ReadWrite,
            Access::Deny,
        ])
    }

    fn rule_set() -> impl Strategy<Value = AclRules> {
        prop::collection::vec((0..3u8, access(), template_text()), 0..12).prop_map(|lines| {
            let mut rules = AclRules::new();
            for (kind, access, text) in lines {
                // Generated templates may hold two relation levels; skip those.
                let Ok(filter) = FilterTemplate::parse(&text) else {
                    continue;
                };
                let rule = AclRule::new(access, filter);
                match kind {
                    0 => rules.push_anonymous(rule),
                    1 => rules.push_user("ann", rule),
                    _ => rules.push_pattern(rule),
                }
            }
            rules
        })
    }

    fn topic_name() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec!["a", "b", "", "$x", "ann", "bob", "cat", "phone"]),
            1..4,
        )
        .prop_map(|levels| levels.join("/"))
        .prop_filter("valid topic", |t| shardmq_codec::topic::valid_name(t))
    }

    fn sub_filter() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(
                prop::sample::select(vec!["a", "b", "", "$x", "ann", "bob", "+", "+"]),
                1..4,
            ),
            any::<bool>(),
        )
            .prop_map(|(levels, multi)| {
                let mut text = levels.join("/");
                if multi {
                    text.push_str("/#");
                }
                text
            })
    }

    fn subject() -> impl Strategy<
        Value = (
            Option<&'static str>,
            &'static str,
            Vec<&'static str>,
            Vec<&'static str>,
        ),
    > {
        (
            prop::option::of(prop::sample::select(NAMES.to_vec())),
            prop::sample::select(NAMES.to_vec()),
            prop::collection::vec(prop::sample::select(NAMES.to_vec()), 0..4),
            prop::collection::vec(prop::sample::select(NAMES.to_vec()), 0..4),
        )
    }

    proptest! {
        #[test]
        fn publish_and_receive_agree_with_naive(
            rules in rule_set(),
            (username, client_id, follows, friends) in subject(),
            topics in prop::collection::vec(topic_name(), 1..16),
        ) {
            let acl = SessionAcl::compile(&rules, username, client_id, &follows, &friends);
            let expanded = naive_expand(&rules, username, client_id, &follows, &friends);
            // Also topics made from the rules themselves, so that many checks hit a rule.
            let derived = expanded.iter().map(|(_, filter)| instantiate(filter));
            let topics: Vec<String> = topics.into_iter().chain(derived).collect();
            for topic in topics.iter().filter(|t| shardmq_codec::topic::valid_name(t)) {
                prop_assert_eq!(
                    acl.can_publish(topic),
                    naive_allows(&expanded, topic, Access::Write),
                    "publish {}", topic
                );
                prop_assert_eq!(
                    acl.can_receive(topic),
                    naive_allows(&expanded, topic, Access::Read),
                    "receive {}", topic
                );
            }
        }

        #[test]
        fn subscribe_agrees_with_naive(
            rules in rule_set(),
            (username, client_id, follows, friends) in subject(),
            filters in prop::collection::vec(sub_filter(), 1..16),
        ) {
            let acl = SessionAcl::compile(&rules, username, client_id, &follows, &friends);
            let expanded = naive_expand(&rules, username, client_id, &follows, &friends);
            let derived = expanded.iter().map(|(_, filter)| filter.clone());
            let filters: Vec<String> = filters.into_iter().chain(derived).collect();
            for filter in filters.iter().filter(|f| shardmq_codec::topic::valid_filter(f)) {
                prop_assert_eq!(
                    acl.can_subscribe(filter),
                    naive_can_subscribe(&expanded, filter),
                    "subscribe {}", filter
                );
            }
        }

        /// "Covers" is sound: every topic the filter matches, the rule matches.
        #[test]
        fn covering_rule_matches_every_topic_of_the_filter(
            rule in sub_filter(),
            filter in sub_filter(),
            topics in prop::collection::vec(topic_name(), 1..32),
        ) {
            if naive_covers(&rule, &filter) {
                for topic in topics.iter().filter(|t| matches(t, &filter)) {
                    prop_assert!(matches(topic, &rule), "{} covers {} but not {}", rule, filter, topic);
                }
            }
        }
    }
}
