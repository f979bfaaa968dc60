//! Fan-out through one shard without sockets: trie match, then one session delivery (PUBLISH
//! header encoded, payload shared) per subscriber, then the writer's take of each outbox.
//! Throughput is in deliveries.

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hashbrown::HashMap;
use shardmq_codec::{ByteStr, Properties, Protocol, QoS, SubscriptionOptions};
use shardmq_shard::mesh::ConnId;
use shardmq_shard::session::{Message, Outbox, Session, SessionLimits};
use shardmq_shard::trie::Trie;

struct Subscriber {
    session: Session,
    outbox: Outbox,
}

fn setup(
    subscribers: usize,
    qos: QoS,
) -> (Trie<HashMap<ConnId, SubscriptionOptions>>, Vec<Subscriber>) {
    let mut trie = Trie::new();
    let mut clients = Vec::with_capacity(subscribers);
    for n in 0..subscribers {
        let mut session = Session::new(
            ByteStr::from(format!("c{n}")),
            Protocol::V311,
            SessionLimits::default(),
        );
        let options = SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        };
        session.add_subscription(ByteStr::from("fan/out"), options);
        trie.get_or_insert_with("fan/out", HashMap::new)
            .insert(ConnId(n as u64), options);
        clients.push(Subscriber {
            session,
            outbox: Outbox::default(),
        });
    }
    // Unrelated filters, so the match walks a realistic trie.
    for n in 0..10_000 {
        trie.get_or_insert_with(&format!("device/{n}/telemetry"), HashMap::new);
    }
    (trie, clients)
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    for &subscribers in &[1_000usize, 10_000] {
        for (qos, label) in [(QoS::AtMostOnce, "qos0"), (QoS::AtLeastOnce, "qos1")] {
            for payload_len in [64usize, 1024] {
                let (trie, mut clients) = setup(subscribers, qos);
                let message = Arc::new(Message {
                    topic: ByteStr::from("fan/out"),
                    payload: Bytes::from(vec![0u8; payload_len]),
                    qos,
                    retain: false,
                    properties: Properties::default(),
                });
                let mut chunks = Vec::new();
                group.throughput(Throughput::Elements(subscribers as u64));
                let id = BenchmarkId::new(format!("{label}/{payload_len}B"), subscribers);
                group.bench_with_input(id, &subscribers, |b, _| {
                    b.iter(|| {
                        trie.for_each_match(black_box("fan/out"), |subs| {
                            for (conn, options) in subs {
                                let client = &mut clients[conn.0 as usize];
                                client.session.handle_delivery(
                                    &message,
                                    options.qos,
                                    false,
                                    &mut client.outbox,
                                );
                            }
                        });
                        for client in clients.iter_mut() {
                            client.outbox.take(&mut chunks);
                            chunks.clear();
                            // The subscriber acknowledges, keeping the window open.
                            while let Some(id) = client.session.oldest_inflight() {
                                client.session.handle_puback(id, &mut client.outbox);
                            }
                        }
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
