//! MQTT 5 flow control and per-connection properties of the real broker, observed by raw MQTT 5
//! clients: Receive Maximum in both directions, Maximum Packet Size in both directions, and
//! client-to-server topic aliases.

mod common;

use bytes::Bytes;
use common::{connect_packet, http, Broker, RawClient, QUIET, WAIT};
use shardmq_codec::{
    ByteStr, ConnAck, Packet, PacketId, Protocol, PubAck, PubComp, PubRec, PubRel, Publish, QoS,
    ReasonCode,
};

fn id(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

/// Connects an MQTT 5 client with a clean start; `configure` sets CONNECT properties.
fn connect_v5(
    broker: &Broker,
    client_id: &str,
    configure: impl FnOnce(&mut shardmq_codec::Connect),
) -> (RawClient, ConnAck) {
    let mut connect = connect_packet(client_id, true);
    connect.protocol = Protocol::V500;
    configure(&mut connect);
    let (client, ack) = RawClient::connect_with(broker.addr, connect);
    assert_eq!(ack.code, ReasonCode::Success);
    (client, ack)
}

/// The next packet that is not a PUBLISH, skipping PUBLISHes.
fn next_control(client: &mut RawClient) -> Option<Packet> {
    loop {
        match client.recv(WAIT)? {
            Packet::Publish(_) => continue,
            other => return Some(other),
        }
    }
}

/// Expects a DISCONNECT with `code`, then the connection closed.
fn expect_disconnect(client: &mut RawClient, code: ReasonCode) {
    match next_control(client) {
        Some(Packet::Disconnect(disconnect)) => assert_eq!(disconnect.code, code),
        other => panic!("expected DISCONNECT {code:?}, got {other:?}"),
    }
    assert!(client.closed_within(WAIT));
}

fn publish_v5(topic: &str, payload: &[u8], qos: QoS, packet_id: u16) -> Publish {
    Publish {
        qos,
        topic: ByteStr::from(topic),
        packet_id: (qos != QoS::AtMostOnce).then(|| id(packet_id)),
        payload: Bytes::copy_from_slice(payload),
        ..Publish::default()
    }
}

#[test]
fn connack_announces_the_brokers_limits() {
    let broker = Broker::start(&[
        "--receive-maximum",
        "3",
        "--max-packet-size",
        "4096",
        "--max-topic-aliases",
        "5",
    ]);
    let (_client, ack) = connect_v5(&broker, "limits", |_| {});
    assert_eq!(ack.properties.receive_maximum, Some(3));
    assert_eq!(ack.properties.maximum_packet_size, Some(4096));
    assert_eq!(ack.properties.topic_alias_maximum, Some(5));
    // The default Receive Maximum is the protocol's: the property is absent.
    let default = Broker::start(&[]);
    let (_client, ack) = connect_v5(&default, "limits", |_| {});
    assert_eq!(ack.properties.receive_maximum, None);
}

#[test]
fn a_client_beyond_the_brokers_receive_maximum_is_disconnected_with_0x93() {
    let broker = Broker::start(&["--receive-maximum", "3"]);
    let (mut client, _) = connect_v5(&broker, "flooder", |_| {});
    for n in 1..=3 {
        client.send(&Packet::Publish(publish_v5(
            "flow/in",
            b"x",
            QoS::ExactlyOnce,
            n,
        )));
        assert_eq!(client.recv(WAIT), Some(Packet::PubRec(PubRec::new(id(n)))));
    }
    // Completing one flow makes room for one more.
    client.send(&Packet::PubRel(PubRel::new(id(1))));
    assert_eq!(
        client.recv(WAIT),
        Some(Packet::PubComp(PubComp::new(id(1))))
    );
    client.send(&Packet::Publish(publish_v5(
        "flow/in",
        b"x",
        QoS::ExactlyOnce,
        4,
    )));
    assert_eq!(client.recv(WAIT), Some(Packet::PubRec(PubRec::new(id(4)))));
    // QoS 1 is acknowledged at once and does not count.
    client.send(&Packet::Publish(publish_v5(
        "flow/in",
        b"x",
        QoS::AtLeastOnce,
        9,
    )));
    assert_eq!(client.recv(WAIT), Some(Packet::PubAck(PubAck::new(id(9)))));
    // A fourth unreleased QoS 2 message [MQTT-3.3.4-7].
    client.send(&Packet::Publish(publish_v5(
        "flow/in",
        b"x",
        QoS::ExactlyOnce,
        5,
    )));
    expect_disconnect(&mut client, ReasonCode::ReceiveMaximumExceeded);
}

#[test]
fn the_clients_receive_maximum_bounds_what_the_broker_sends_unacknowledged() {
    let broker = Broker::start_one_shard(&[]);
    let (mut sub, _) = connect_v5(&broker, "slow-acker", |connect| {
        connect.properties.receive_maximum = Some(2);
    });
    sub.subscribe(&[("flow/out", QoS::AtLeastOnce)]);
    let (mut publisher, _) = connect_v5(&broker, "producer", |_| {});
    for n in 1..=5u16 {
        publisher.send(&Packet::Publish(publish_v5(
            "flow/out",
            &[n as u8],
            QoS::AtLeastOnce,
            n,
        )));
    }
    let first = sub.next_publish(WAIT).expect("first");
    let second = sub.next_publish(WAIT).expect("second");
    assert_eq!(sub.next_publish(QUIET), None, "a third waits for an ack");
    sub.send(&Packet::PubAck(PubAck::new(first.packet_id.unwrap())));
    let third = sub.next_publish(WAIT).expect("third after an ack");
    assert_eq!(sub.next_publish(QUIET), None);
    assert_eq!(
        [&first, &second, &third].map(|p| p.payload[0]),
        [1, 2, 3],
        "in order"
    );
    sub.send(&Packet::PubAck(PubAck::new(second.packet_id.unwrap())));
    sub.send(&Packet::PubAck(PubAck::new(third.packet_id.unwrap())));
    assert_eq!(sub.next_publish(WAIT).expect("fourth").payload[0], 4);
    assert_eq!(sub.next_publish(WAIT).expect("fifth").payload[0], 5);
}

#[test]
fn a_message_too_large_for_a_subscriber_is_dropped_for_it_and_counted() {
    let broker = Broker::start(&[]);
    let (mut small, _) = connect_v5(&broker, "small-reader", |connect| {
        connect.properties.maximum_packet_size = Some(100);
    });
    small.subscribe(&[("size/#", QoS::AtLeastOnce)]);
    let mut large = RawClient::connect(broker.addr, "large-reader");
    large.subscribe(&[("size/#", QoS::AtLeastOnce)]);
    let mut publisher = RawClient::connect(broker.addr, "sizer");
    publisher.publish_with_id("size/big", &[1u8; 200], QoS::AtLeastOnce, false, 1);
    publisher.publish_with_id("size/small", b"fits", QoS::AtLeastOnce, false, 2);
    // The subscriber without a limit gets both; the other only the small one [MQTT-3.1.2-25].
    let got = large.next_publish(WAIT).expect("big");
    assert_eq!(got.payload.len(), 200);
    assert_eq!(large.next_publish(WAIT).expect("small").payload, "fits");
    let got = small.next_publish(WAIT).expect("small");
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("size/small", &b"fits"[..])
    );
    assert_eq!(small.next_publish(QUIET), None);
    broker.wait_for_stats("dropped_too_large", |stats| {
        stats["total"]["dropped_too_large"].as_u64() == Some(1)
    });
    let (status, metrics) = http(broker.admin(), "GET", "/metrics", None);
    assert_eq!(status, 200);
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("shardmq_dropped_too_large") && line.ends_with(" 1")),
        "{metrics}"
    );
}

#[test]
fn a_packet_above_the_brokers_maximum_packet_size_closes_the_connection() {
    let broker = Broker::start(&["--max-packet-size", "256"]);
    let (mut client, ack) = connect_v5(&broker, "oversize", |_| {});
    assert_eq!(ack.properties.maximum_packet_size, Some(256));
    client.send(&Packet::Publish(publish_v5(
        "size/in",
        &[0u8; 300],
        QoS::AtMostOnce,
        0,
    )));
    expect_disconnect(&mut client, ReasonCode::PacketTooLarge);
}

#[test]
fn topic_aliases_from_the_client() {
    let broker = Broker::start(&["--max-topic-aliases", "4"]);
    let mut sub = RawClient::connect(broker.addr, "alias-reader");
    sub.subscribe(&[("alias/#", QoS::AtMostOnce)]);
    let (mut publisher, ack) = connect_v5(&broker, "aliaser", |_| {});
    assert_eq!(ack.properties.topic_alias_maximum, Some(4));
    let mut set = publish_v5("alias/one", b"1", QoS::AtMostOnce, 0);
    set.properties.topic_alias = Some(4);
    publisher.send(&Packet::Publish(set));
    // An alias-only PUBLISH: empty topic, the alias set above.
    let mut by_alias = publish_v5("", b"2", QoS::AtLeastOnce, 7);
    by_alias.properties.topic_alias = Some(4);
    publisher.send(&Packet::Publish(by_alias.clone()));
    assert_eq!(
        publisher.recv(WAIT),
        Some(Packet::PubAck(PubAck::new(id(7))))
    );
    // Re-pointing the alias.
    let mut reset = publish_v5("alias/two", b"3", QoS::AtMostOnce, 0);
    reset.properties.topic_alias = Some(4);
    publisher.send(&Packet::Publish(reset));
    by_alias.payload = Bytes::from_static(b"4");
    by_alias.packet_id = Some(id(8));
    publisher.send(&Packet::Publish(by_alias));
    let received: Vec<(String, Bytes)> = (0..4)
        .map(|_| {
            let p = sub.next_publish(WAIT).expect("aliased message");
            (p.topic.to_string(), p.payload)
        })
        .collect();
    assert_eq!(
        received,
        vec![
            ("alias/one".into(), Bytes::from_static(b"1")),
            ("alias/one".into(), Bytes::from_static(b"2")),
            ("alias/two".into(), Bytes::from_static(b"3")),
            ("alias/two".into(), Bytes::from_static(b"4")),
        ]
    );
    // Alias 0 and one above the Topic Alias Maximum are errors: 0x94 [MQTT-3.3.2-8, -9].
    for alias in [0, 5] {
        let (mut bad, _) = connect_v5(&broker, "bad-aliaser", |_| {});
        let mut publish = publish_v5("alias/x", b"x", QoS::AtMostOnce, 0);
        publish.properties.topic_alias = Some(alias);
        bad.send(&Packet::Publish(publish));
        expect_disconnect(&mut bad, ReasonCode::TopicAliasInvalid);
    }
    // An alias never set, with an empty topic: a protocol error.
    let (mut unknown, _) = connect_v5(&broker, "unknown-alias", |_| {});
    let mut publish = publish_v5("", b"x", QoS::AtMostOnce, 0);
    publish.properties.topic_alias = Some(2);
    unknown.send(&Packet::Publish(publish));
    expect_disconnect(&mut unknown, ReasonCode::ProtocolError);
    // Aliases live as long as the connection: a new one starts without them.
    let (mut again, _) = connect_v5(&broker, "aliaser", |_| {});
    let mut publish = publish_v5("", b"x", QoS::AtMostOnce, 0);
    publish.properties.topic_alias = Some(4);
    again.send(&Packet::Publish(publish));
    expect_disconnect(&mut again, ReasonCode::ProtocolError);
    assert_eq!(sub.next_publish(QUIET), None);
}

#[test]
fn a_resumed_session_resends_only_as_far_as_the_new_receive_maximum() {
    let broker = Broker::start_one_shard(&[]);
    let persistent = |connect: &mut shardmq_codec::Connect, receive_maximum: u16| {
        connect.clean_start = false;
        connect.properties.session_expiry_interval = Some(300);
        connect.properties.receive_maximum = Some(receive_maximum);
    };
    let (mut sub, _) = connect_v5(&broker, "resumer", |c| persistent(c, 10));
    sub.subscribe(&[("resume/t", QoS::AtLeastOnce)]);
    let mut publisher = RawClient::connect(broker.addr, "resume-pub");
    for n in 1..=5u16 {
        publisher.publish_with_id("resume/t", &[n as u8], QoS::AtLeastOnce, false, n);
    }
    for n in 1..=5u8 {
        assert_eq!(
            sub.next_publish(WAIT).expect("first delivery").payload[0],
            n
        );
    }
    // Gone without acknowledging anything.
    drop(sub);
    let mut connect = connect_packet("resumer", false);
    connect.protocol = Protocol::V500;
    persistent(&mut connect, 2);
    let (mut sub, ack) = RawClient::connect_with(broker.addr, connect);
    assert!(ack.session_present);
    let resent: Vec<Publish> = (0..2)
        .map(|_| sub.next_publish(WAIT).expect("resent"))
        .collect();
    assert!(resent.iter().all(|p| p.dup));
    assert_eq!(
        resent.iter().map(|p| p.payload[0]).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(sub.next_publish(QUIET), None, "the rest are held");
    for p in &resent {
        sub.send(&Packet::PubAck(PubAck::new(p.packet_id.unwrap())));
    }
    let rest: Vec<u8> = (0..3)
        .map(|_| {
            let p = sub.next_publish(WAIT).expect("held resend");
            assert!(p.dup);
            sub.send(&Packet::PubAck(PubAck::new(p.packet_id.unwrap())));
            p.payload[0]
        })
        .collect();
    assert_eq!(rest, [3, 4, 5]);
    assert_eq!(sub.next_publish(QUIET), None);
}
