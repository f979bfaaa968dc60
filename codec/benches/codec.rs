//! Codec benchmarks: decode and encode of the packets a broker handles most.
//!
//! Decoding runs over a read buffer holding `BATCH` packets back to back, the way a shard finds
//! them after a large read; each packet is dropped as it comes out, so the time includes the
//! reference counts of the topic and payload slices. Encoding writes into a reused buffer.
//! Every group reports packets/s (`Throughput::Elements`); the PUBLISH groups have a bytes/s
//! twin. Inputs are fixed, so runs compare.
//!
//! `cargo bench -p shardmq-codec --bench codec -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use shardmq_codec::{
    encode, ByteStr, Connect, Decoder, LastWill, Packet, PacketId, Properties, Protocol, Publish,
    QoS, Subscribe, SubscribeFilter, SubscriptionOptions,
};

/// Packets per decode iteration.
const BATCH: usize = 1_000;

const SIZES: [usize; 3] = [16, 256, 4096];

fn publish(payload: usize, protocol: Protocol) -> Publish {
    Publish {
        qos: QoS::AtMostOnce,
        topic: ByteStr::from_static("devices/d0042/telemetry"),
        payload: Bytes::from((0..payload).map(|i| i as u8).collect::<Vec<u8>>()),
        properties: if protocol.is_v5() {
            Properties::from(shardmq_codec::PropertyValues {
                message_expiry_interval: Some(60),
                ..shardmq_codec::PropertyValues::default()
            })
        } else {
            Properties::default()
        },
        ..Publish::default()
    }
}

fn connect() -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: Protocol::V311,
        clean_start: true,
        keep_alive: 60,
        client_id: ByteStr::from_static("client-0000042"),
        will: Some(LastWill {
            topic: ByteStr::from_static("devices/d0042/status"),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties::default(),
        }),
        username: Some(ByteStr::from_static("device")),
        password: Some(Bytes::from_static(b"secret-password")),
        properties: Properties::default(),
    }))
}

fn subscribe() -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(7).expect("non-zero"),
        filters: (0..10)
            .map(|i| SubscribeFilter {
                filter: ByteStr::from(format!("chat/room{i}/+/messages")),
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..Default::default()
                },
            })
            .collect(),
        properties: Properties::default(),
    })
}

fn encoded(packet: &Packet, protocol: Protocol) -> Vec<u8> {
    let mut dst = BytesMut::new();
    encode(packet, protocol, &mut dst).expect("encodes");
    dst.to_vec()
}

/// `BATCH` copies of `packet` back to back.
fn stream(packet: &[u8]) -> Vec<u8> {
    packet.repeat(BATCH)
}

/// Decodes every packet of `input` (fresh copy per iteration, copied outside the timing).
fn bench_decode(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    input: &[u8],
    protocol: Option<Protocol>,
) {
    c.bench_function(name, |b| {
        b.iter_batched(
            || BytesMut::from(input),
            |mut buf| {
                let mut decoder = match protocol {
                    Some(protocol) => Decoder::with_protocol(usize::MAX, protocol),
                    None => Decoder::new(usize::MAX),
                };
                while let Some(packet) = decoder.decode(&mut buf).expect("valid") {
                    black_box(packet);
                    // CONNECT batches restart at the "waiting for CONNECT" state.
                    if protocol.is_none() {
                        decoder = Decoder::new(usize::MAX);
                    }
                }
            },
            BatchSize::LargeInput,
        )
    });
}

fn publish_decode(c: &mut Criterion) {
    for (protocol, label) in [(Protocol::V311, "v311"), (Protocol::V500, "v500")] {
        let mut group = c.benchmark_group(format!("publish_decode_{label}"));
        for size in SIZES {
            let packet = encoded(&Packet::Publish(publish(size, protocol)), protocol);
            let input = stream(&packet);
            group.throughput(Throughput::Elements(BATCH as u64));
            bench_decode(&mut group, &format!("{size}B"), &input, Some(protocol));
            if protocol == Protocol::V311 {
                group.throughput(Throughput::Bytes(input.len() as u64));
                bench_decode(
                    &mut group,
                    &format!("{size}B_bytes"),
                    &input,
                    Some(protocol),
                );
            }
        }
        group.finish();
    }
}

fn publish_encode(c: &mut Criterion) {
    for (protocol, label) in [(Protocol::V311, "v311"), (Protocol::V500, "v500")] {
        let mut group = c.benchmark_group(format!("publish_encode_{label}"));
        for size in SIZES {
            let packet = Packet::Publish(publish(size, protocol));
            let len = encoded(&packet, protocol).len();
            let mut dst = BytesMut::with_capacity(len);
            let mut run = |b: &mut criterion::Bencher<'_>| {
                b.iter(|| {
                    dst.clear();
                    encode(black_box(&packet), protocol, &mut dst).expect("encodes");
                    black_box(&dst);
                })
            };
            group.throughput(Throughput::Elements(1));
            group.bench_function(format!("{size}B"), &mut run);
            if protocol == Protocol::V311 {
                group.throughput(Throughput::Bytes(len as u64));
                group.bench_function(format!("{size}B_bytes"), &mut run);
            }
        }
        group.finish();
    }
}

fn publish_encode_header(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish_encode_header");
    group.throughput(Throughput::Elements(1));
    for (protocol, label) in [(Protocol::V311, "v311"), (Protocol::V500, "v500")] {
        let publish = publish(4096, protocol);
        let mut dst = BytesMut::with_capacity(64);
        group.bench_function(label, |b| {
            b.iter(|| {
                dst.clear();
                black_box(&publish)
                    .encode_header(protocol, &mut dst)
                    .expect("encodes");
                black_box(&dst);
            })
        });
    }
    group.finish();
}

fn control_packets(c: &mut Criterion) {
    for (name, packet, waiting) in [
        ("connect_v311", connect(), true),
        ("subscribe_10_filters_v311", subscribe(), false),
    ] {
        let bytes = encoded(&packet, Protocol::V311);
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(BATCH as u64));
        let protocol = if waiting { None } else { Some(Protocol::V311) };
        bench_decode(&mut group, "decode", &stream(&bytes), protocol);
        group.throughput(Throughput::Elements(1));
        let mut dst = BytesMut::with_capacity(bytes.len());
        group.bench_function("encode", |b| {
            b.iter(|| {
                dst.clear();
                encode(black_box(&packet), Protocol::V311, &mut dst).expect("encodes");
                black_box(&dst);
            })
        });
        group.finish();
    }
}

criterion_group!(
    benches,
    publish_decode,
    publish_encode,
    publish_encode_header,
    control_packets
);
criterion_main!(benches);
