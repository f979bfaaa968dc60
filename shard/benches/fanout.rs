//! Fan-out through one shard's real [`Router`] without sockets: the publish is matched against
//! the trie, one session delivery (PUBLISH header encoded, payload shared) is queued per
//! subscriber, then each outbox is taken as the writer takes it. Throughput is in deliveries.

use std::hint::black_box;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shardmq_codec::{
    ByteStr, Packet, PacketId, Properties, Protocol, QoS, Subscribe, SubscribeFilter,
    SubscriptionOptions,
};
use shardmq_shard::mesh::{ConnId, Owner, ShardId};
use shardmq_shard::router::{NewClient, Output, Router};
use shardmq_shard::session::Message;
use shardmq_shard::stats::Stats;
use shardmq_shard::ShardConfig;

/// The publisher's connection; subscribers are 1..=n.
const PUBLISHER: ConnId = ConnId(1_000_000);

fn connect(router: &mut Router, conn: ConnId) {
    let client_id = ByteStr::from(format!("c{}", conn.0));
    router
        .connect(conn, NewClient::plain(client_id, Protocol::V311, false))
        .expect("no will to refuse");
}

fn setup(subscribers: usize, qos: QoS) -> Router {
    let mut router = Router::new(
        ShardId(0),
        Arc::new(ShardConfig::default()),
        Rc::new(Stats::default()),
    );
    connect(&mut router, PUBLISHER);
    for n in 1..=subscribers as u64 {
        connect(&mut router, ConnId(n));
        let subscribe = Subscribe {
            packet_id: PacketId::new(1).expect("non-zero"),
            filters: vec![SubscribeFilter {
                filter: ByteStr::from("fan/out"),
                options: SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                },
            }],
            properties: Properties::default(),
        };
        router
            .handle_packet(ConnId(n), Packet::Subscribe(subscribe))
            .expect("valid SUBSCRIBE");
    }
    // Unrelated filters, so the match walks a realistic trie.
    for n in 0..10_000u64 {
        let conn = ConnId(2_000_000 + n);
        connect(&mut router, conn);
        let subscribe = Subscribe {
            packet_id: PacketId::new(1).expect("non-zero"),
            filters: vec![SubscribeFilter {
                filter: ByteStr::from(format!("device/{n}/telemetry")),
                options: SubscriptionOptions::default(),
            }],
            properties: Properties::default(),
        };
        router
            .handle_packet(conn, Packet::Subscribe(subscribe))
            .expect("valid SUBSCRIBE");
    }
    drain(&mut router, subscribers, &mut Vec::new(), &mut Vec::new());
    router
}

/// Takes every outbox as the writer does; the subscribers acknowledge, keeping the window open.
fn drain(
    router: &mut Router,
    subscribers: usize,
    outputs: &mut Vec<Output>,
    chunks: &mut Vec<Bytes>,
) {
    router.drain_outputs(outputs);
    outputs.clear();
    for n in 1..=subscribers as u64 {
        let session = router.session_mut(ConnId(n)).expect("connected");
        session.poll_transmit(chunks);
        chunks.clear();
        while let Some(id) = session.oldest_inflight() {
            session.handle_puback(id);
        }
    }
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    let origin = Owner {
        shard: ShardId(0),
        conn: PUBLISHER,
    };
    for &subscribers in &[1_000usize, 10_000] {
        for (qos, label) in [(QoS::AtMostOnce, "qos0"), (QoS::AtLeastOnce, "qos1")] {
            for payload_len in [64usize, 1024] {
                let mut router = setup(subscribers, qos);
                let message = Arc::new(Message {
                    topic: ByteStr::from("fan/out"),
                    payload: Bytes::from(vec![0u8; payload_len]),
                    qos,
                    retain: false,
                    properties: Properties::default(),
                    expires_at: None,
                });
                let mut outputs = Vec::new();
                let mut chunks = Vec::new();
                group.throughput(Throughput::Elements(subscribers as u64));
                let id = BenchmarkId::new(format!("{label}/{payload_len}B"), subscribers);
                group.bench_with_input(id, &subscribers, |b, _| {
                    b.iter(|| {
                        let fanout = router
                            .publish(Arc::clone(black_box(&message)), origin)
                            .expect("local subscribers");
                        assert_eq!(fanout.len(), subscribers);
                        router.deliver(&fanout, 0..fanout.len());
                        drain(&mut router, subscribers, &mut outputs, &mut chunks);
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
