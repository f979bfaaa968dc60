//! Cost of one ACL check for a user with 100 friends, compiled matcher against a naive loop.
//!
//! Rules: `pattern read /%u/chat`, `pattern write /%F/chat`, `pattern write
//! user/%F/presence/+` (100 wildcard filters), `pattern deny /%F/chat/admin`, and a few of the
//! user's own `topic` rules. `SessionAcl` checks are hash lookup + trie walk; `naive` loops over
//! every expanded filter with `shardmq_codec::topic::matches`, the obvious implementation.
//! Inputs are fixed; one iteration is one check.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardmq_codec::topic::matches;
use shardmq_shard::acl::{Access, AclRule, AclRules, FilterTemplate, SessionAcl};

const USER: &str = "u0.example.com";
const FRIENDS: usize = 100;

fn rule(access: Access, filter: &str) -> AclRule {
    AclRule::new(
        access,
        FilterTemplate::parse(filter).expect("bench filters are valid"),
    )
}

fn rules() -> AclRules {
    let mut rules = AclRules::new();
    rules.push_pattern(rule(Access::Read, "/%u/chat"));
    rules.push_pattern(rule(Access::Write, "/%F/chat"));
    rules.push_pattern(rule(Access::Write, "user/%F/presence/+"));
    rules.push_pattern(rule(Access::Deny, "/%F/chat/admin"));
    rules.push_user(USER, rule(Access::Read, "news/#"));
    rules.push_user(USER, rule(Access::Deny, "news/internal/#"));
    rules.push_user(USER, rule(Access::ReadWrite, "rooms/+/members/%u"));
    rules.push_user(USER, rule(Access::Write, "devices/%c/state"));
    rules
}

fn friends() -> Vec<String> {
    (0..FRIENDS)
        .map(|i| format!("friend{i}.example.com"))
        .collect()
}

/// The same rules expanded by hand, for the naive evaluator.
fn naive_rules(friends: &[&str]) -> Vec<(Access, String)> {
    let mut out = vec![
        (Access::Read, format!("/{USER}/chat")),
        (Access::Read, "news/#".to_string()),
        (Access::Deny, "news/internal/#".to_string()),
        (Access::ReadWrite, format!("rooms/+/members/{USER}")),
        (Access::Write, "devices/phone-1/state".to_string()),
    ];
    for friend in friends {
        out.push((Access::Write, format!("/{friend}/chat")));
        out.push((Access::Write, format!("user/{friend}/presence/+")));
        out.push((Access::Deny, format!("/{friend}/chat/admin")));
    }
    out
}

fn naive_can_publish(rules: &[(Access, String)], topic: &str) -> bool {
    let mut allowed = false;
    for (access, filter) in rules {
        if matches(topic, filter) {
            match access {
                Access::Deny => return false,
                Access::Write | Access::ReadWrite => allowed = true,
                Access::Read => {}
            }
        }
    }
    allowed
}

fn bench_acl(c: &mut Criterion) {
    let rules = rules();
    let owned = friends();
    let friends: Vec<&str> = owned.iter().map(String::as_str).collect();
    let acl = SessionAcl::compile(&rules, Some(USER), "phone-1", &friends, &friends);
    let naive = naive_rules(&friends);

    let cases: &[(&str, &str, bool)] = &[
        (
            "publish_friend_chat_allowed",
            "/friend57.example.com/chat",
            true,
        ),
        (
            "publish_friend_presence_allowed",
            "user/friend57.example.com/presence/online",
            true,
        ),
        (
            "publish_stranger_chat_denied",
            "/stranger.example.com/chat",
            false,
        ),
        (
            "publish_deny_rule_denied",
            "/friend57.example.com/chat/admin",
            false,
        ),
        (
            "publish_deep_unmatched_denied",
            "news/world/europe/today/1",
            false,
        ),
    ];
    for (_, topic, allowed) in cases {
        assert_eq!(acl.can_publish(topic), *allowed, "{topic}");
        assert_eq!(naive_can_publish(&naive, topic), *allowed, "{topic}");
    }

    let mut group = c.benchmark_group("acl");
    group.throughput(Throughput::Elements(1));
    for (name, topic, _) in cases {
        group.bench_function(format!("session/{name}"), |b| {
            b.iter(|| acl.can_publish(black_box(topic)))
        });
        group.bench_function(format!("naive/{name}"), |b| {
            b.iter(|| naive_can_publish(&naive, black_box(topic)))
        });
    }
    group.bench_function("session/receive_own_chat_allowed", |b| {
        b.iter(|| acl.can_receive(black_box("/u0.example.com/chat")))
    });
    group.bench_function("session/subscribe_news_plus_allowed", |b| {
        b.iter(|| acl.can_subscribe(black_box("news/+/today")))
    });
    group.bench_function("session/compile_100_friends", |b| {
        b.iter(|| SessionAcl::compile(black_box(&rules), Some(USER), "phone-1", &friends, &friends))
    });
    group.finish();
}

criterion_group!(benches, bench_acl);
criterion_main!(benches);
