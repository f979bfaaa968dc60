//! Cost of one ACL check for a user with 100 friends, compiled matcher against a naive loop.
//!
//! The filters are those the control core expands from `pattern read /%u/chat`, `pattern write
//! /%F/chat`, `pattern write user/%F/presence/+` (100 wildcard filters), `pattern deny
//! /%F/chat/admin`, and a few of the user's own `topic` rules: 305 filters, 202 exact and 103 with
//! wildcards. `SessionAcl` checks are hash lookup + trie walk; `naive` loops over every filter
//! with `shardmq_codec::topic::matches`, the obvious implementation. Inputs are fixed; one
//! iteration is one check. `build_305_filters` builds the matcher from the expanded filters (the
//! expansion itself runs in the broker's control core, outside this crate).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardmq_codec::topic::matches;
use shardmq_shard::acl::{Access, SessionAcl};

const USER: &str = "u0.example.com";
const FRIENDS: usize = 100;

fn friends() -> Vec<String> {
    (0..FRIENDS)
        .map(|i| format!("friend{i}.example.com"))
        .collect()
}

/// The rules expanded for `USER` on client `phone-1`, as the control core expands them.
fn expanded(friends: &[&str]) -> Vec<(Access, String)> {
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
    let owned = friends();
    let friends: Vec<&str> = owned.iter().map(String::as_str).collect();
    let naive = expanded(&friends);
    let filters = || {
        naive
            .iter()
            .map(|(access, filter)| (*access, filter.as_str()))
    };
    let acl = SessionAcl::from_filters(filters());

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
    group.bench_function("session/build_305_filters", |b| {
        b.iter(|| SessionAcl::from_filters(black_box(filters())))
    });
    group.finish();
}

criterion_group!(benches, bench_acl);
criterion_main!(benches);
