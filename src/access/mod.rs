//! The access rules, as the control core holds them: ACL rules, follow relations and
//! auto-subscriptions, and their expansion for one client into the concrete filters of its
//! session's matcher (`shardmq_shard::acl::SessionAcl`, which the shard checks on every message).
//!
//! The control core builds these from the files ([`crate::auth`] parses them) or from Redis, and
//! expands them on its own thread at CONNECT and whenever rules or relations change, so the
//! shards see only the result.
//!
//! - [`template`]: a filter template with `%u` `%c` `%f` `%F` levels, and its expansion.
//! - [`rules`]: `topic` and `pattern` rules, who they apply to, and their compilation.
//! - [`relations`]: who follows whom.
//! - [`auto_subscribe`]: filter templates subscribed at CONNECT.
//!
//! # Which rules apply
//!
//! An anonymous client (no username) gets the `topic` rules written before the first `user` line
//! plus the `pattern` rules that do not use `%u`. A client with a username gets that user's
//! `topic` rules plus every `pattern` rule (Mosquitto's `acl_file`). Nothing is allowed unless a
//! rule allows it, and a `deny` rule wins over any allowing one, user rule or pattern alike:
//! Mosquitto only puts denials first *within* each list and checks the user's list before the
//! patterns, so there a user `topic` allow beats a `pattern deny`; here the deny always wins,
//! which is what an operator writing it means. Publish needs `write`, delivery `read`, and a
//! SUBSCRIBE a `read` rule that covers the whole filter (the matcher's module doc has the
//! details). Mosquitto 2.0's `acl_file` check lets every SUBSCRIBE through and checks `read` only
//! at delivery; refusing at SUBSCRIBE tells the client early (SUBACK 0x87 / 0x80) and keeps
//! useless subscriptions out of the route table.
//!
//! # Substitutions
//!
//! A substitution fills a whole level (`/%u/chat`, `user/%F/presence/+`); `a%u` is the literal
//! text `a%u`, as in Mosquitto. `%u` is the username, `%c` the client id, `%f` each user the
//! client's user follows, `%F` each friend (a followee who follows back). A template holds at most
//! one `%f`/`%F` level, so one rule expands to at most one filter per related user (no cross
//! products). `topic` rules are expanded too (Mosquitto expands only `pattern` lines), so a
//! per-user rule may say `topic write /%F/chat`. Expanding costs memory proportional to the
//! expanded filters (the push-server rules `/%u/chat` + `/%F/chat` for a user with 100 friends are
//! 101 filters); relations change rarely, so recompiling on change is cheap.
//!
//! A value that is empty, contains `+`, `#` or `/`, or starts with `$` would make a rule match
//! topics it was not written for (`%c/#` for a client id `$SYS` is the broker's own tree), so it
//! never fills an *allowing* rule or an auto-subscription: a client whose
//! username or client id contains them cannot match rules that use that substitution, and such a
//! related user is skipped. (Mosquitto refuses such a client every `pattern` rule, whether it
//! uses the value or not: 1.x for `+#/`, 2.0 for `+#`.) A *deny* rule instead takes the value
//! verbatim, which can only make it deny more: failing closed.

pub mod auto_subscribe;
pub mod relations;
pub mod rules;
pub mod template;

pub use self::auto_subscribe::{AutoSubscribe, AutoSubscription};
pub use self::relations::Relations;
pub use self::rules::{AclRule, AclRules};
pub use self::template::{FilterTemplate, TemplateError};
