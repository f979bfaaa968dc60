//! Every resource a client can make the broker hold is bounded, configurable and counted: each
//! test sets a limit low, makes a client cross it as an attacker would, and checks what the
//! client observes and the figure that counts it.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{connect_packet, Broker, RawClient, QUIET, WAIT};
use serde_json::Value;
use shardmq_codec::{
    ByteStr, Connect, Packet, PacketId, Properties, Protocol, Publish, QoS, ReasonCode, Subscribe,
    SubscribeFilter, SubscriptionOptions,
};

/// Waits until the broker-wide figure `name` is at least `at_least`; returns the statistics.
fn figure_reaches(broker: &Broker, name: &str, at_least: u64) -> Value {
    broker.wait_for_stats(name, |stats| {
        stats["total"][name].as_u64().unwrap_or(0) >= at_least
    })
}

fn v5(client_id: &str) -> Connect {
    Connect {
        protocol: Protocol::V500,
        ..connect_packet(client_id, true)
    }
}

/// Whether the broker closed `stream` within `timeout` (end of file or reset).
fn closed_by_broker(stream: &mut TcpStream, timeout: Duration) -> bool {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut byte = [0u8; 1024];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// CONNECT must be complete `connect_timeout` after accept however slowly its bytes arrive, and
/// the first packet is capped well below `max_packet_size`.
#[test]
fn connect_is_bounded_in_time_and_size() {
    let broker = Broker::start(&["--connect-timeout", "1", "--max-connect-size", "1024"]);
    // A valid CONNECT trickled a byte every 200 ms: the deadline is absolute.
    let mut bytes = bytes::BytesMut::new();
    shardmq_codec::encode(
        &Packet::Connect(Box::new(connect_packet("trickle", true))),
        Protocol::V311,
        &mut bytes,
    )
    .unwrap();
    let mut slow = TcpStream::connect(broker.addr).unwrap();
    let start = Instant::now();
    let mut closed_after = None;
    for byte in bytes.iter().take(bytes.len() - 1) {
        if slow.write_all(&[*byte]).is_err() {
            closed_after = Some(start.elapsed());
            break;
        }
        if closed_by_broker(&mut slow, Duration::from_millis(200)) {
            closed_after = Some(start.elapsed());
            break;
        }
    }
    let closed_after = closed_after.expect("the trickling client was closed");
    assert!(
        closed_after < Duration::from_secs(3),
        "closed after {closed_after:?}"
    );
    figure_reaches(&broker, "connect_timeouts", 1);

    // A CONNECT of 2 KiB (a long password) is over the first-packet limit.
    let mut big = connect_packet("big", true);
    big.username = Some(ByteStr::from("u"));
    big.password = Some(Bytes::from(vec![b'p'; 2048]));
    let (mut client, ack) = RawClient::try_connect(broker.addr, big);
    assert!(ack.is_none(), "no CONNACK for an oversized CONNECT");
    assert!(client.closed_within(WAIT));
    figure_reaches(&broker, "limit_connect_size", 1);
}

/// One address may have only so many connections between accept and CONNACK on a shard; other
/// addresses are not affected.
#[test]
fn connections_still_connecting_are_capped_per_address() {
    let broker = Broker::start(&[
        "--max-connecting-per-address",
        "5",
        "--connect-timeout",
        "30",
    ]);
    let mut silent: Vec<TcpStream> = (0..30)
        .map(|_| TcpStream::connect(broker.addr).unwrap())
        .collect();
    let figures = figure_reaches(&broker, "limit_connecting_per_address", 20);
    assert!(
        figures["total"]["limit_connecting_per_address"]
            .as_u64()
            .unwrap()
            <= 30
    );
    let mut closed = 0;
    for stream in &mut silent {
        closed += usize::from(closed_by_broker(stream, Duration::from_millis(50)));
    }
    assert!(
        closed >= 20,
        "at most 5 per shard (2 shards) stay: {closed} closed"
    );
    // Another address connects as usual.
    let other = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 0);
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::V4(other).into()).unwrap();
    socket.connect(&broker.addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    let mut client = RawClient::from_stream(stream);
    client.send(&Packet::Connect(Box::new(connect_packet(
        "elsewhere",
        true,
    ))));
    assert!(
        matches!(client.recv(WAIT), Some(Packet::ConnAck(ack)) if ack.code == ReasonCode::Success)
    );
}

/// A peer that never reads: its outbox stays bounded (reading from it pauses), the write
/// timeout ends the connection as a lost one (its will is published), and the log says why.
#[test]
fn a_client_that_never_reads_is_paused_then_closed() {
    let broker = Broker::start(&["--write-timeout", "1", "--max-outbox-bytes", "65536"]);
    let mut watcher = RawClient::connect(broker.addr, "watcher");
    watcher.subscribe(&[("wills/pinger", QoS::AtMostOnce)]);
    // A small receive window, so the PINGRESPs pile up at the broker rather than in this
    // socket's buffer.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&broker.addr.into()).unwrap();
    let mut pinger = RawClient::from_stream(socket.into());
    let mut connect = connect_packet("pinger", true);
    connect.will = Some(shardmq_codec::LastWill {
        topic: ByteStr::from("wills/pinger"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    });
    pinger.send(&Packet::Connect(Box::new(connect)));
    // Three million PINGREQs without reading one PINGRESP: more than the kernel's socket
    // buffers hold (4 MiB here), so replies pile up at the broker, which stops reading; this
    // write then ends in its own timeout.
    let pings = [0xC0u8, 0x00].repeat(3_000_000);
    pinger
        .stream
        .set_write_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let _ = pinger.stream.write_all(&pings);
    figure_reaches(&broker, "limit_outbox", 1);
    figure_reaches(&broker, "write_timeouts", 1);
    broker.wait_for_stats("the pinger gone", |stats| {
        stats["total"]["connections"].as_u64() == Some(1)
    });
    let will = watcher
        .next_publish(WAIT)
        .expect("the will of a lost connection");
    assert_eq!(&will.payload[..], b"gone");
    assert!(broker
        .wait_for_log(
            &[
                "client disconnected",
                "client_id=pinger",
                "could not be written to in time"
            ],
            WAIT
        )
        .is_some());
}

/// A kick takes effect on a client whose socket is full and who never reads.
#[test]
fn a_kick_closes_a_client_that_never_reads() {
    let broker = Broker::start(&["--write-timeout", "30"]);
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&broker.addr.into()).unwrap();
    let mut stuck = RawClient::from_stream(socket.into());
    stuck.send(&Packet::Connect(Box::new(connect_packet("stuck", true))));
    stuck.subscribe(&[("bulk", QoS::AtLeastOnce)]);
    let mut publisher = RawClient::connect(broker.addr, "bulk-publisher");
    // 40 × 256 KiB: the 32 in flight alone are more than the kernel's buffers hold (4 MiB
    // here), so the broker's writer waits on a full socket.
    let payload = vec![b'x'; 256 * 1024];
    for n in 0..40u16 {
        publisher.publish_with_id("bulk", &payload, QoS::AtLeastOnce, false, n + 1);
        assert!(matches!(publisher.recv(WAIT), Some(Packet::PubAck(_))));
    }
    let client = broker.client("stuck").expect("listed");
    assert!(client["queued"].as_u64().unwrap() > 0, "{client}");
    let kicked = Instant::now();
    let (status, _) = common::http(broker.admin(), "DELETE", "/api/v1/clients/stuck", None);
    assert_eq!(status, 204);
    broker.wait_for_stats("the stuck client gone", |stats| {
        stats["total"]["connections"].as_u64() == Some(1)
    });
    assert!(
        kicked.elapsed() < Duration::from_secs(10),
        "closed at once, not after the 30 s write timeout"
    );
}

/// Keep-alive 0 (none) and keep-alives above `max_keepalive` get the server's maximum; MQTT 5
/// clients are told in the CONNACK.
#[test]
fn keep_alive_is_capped_by_the_server() {
    let broker = Broker::start(&["--max-keepalive", "1"]);
    let mut connect = v5("five");
    connect.keep_alive = 0;
    let (_five, ack) = RawClient::connect_with(broker.addr, connect);
    assert_eq!(ack.properties.server_keep_alive, Some(1));

    let mut connect = connect_packet("three", true);
    connect.keep_alive = 0;
    let (mut three, ack) = RawClient::connect_with(broker.addr, connect);
    assert_eq!(ack.code, ReasonCode::Success);
    let start = Instant::now();
    assert!(three.closed_within(WAIT), "silent past 1.5 × 1 s");
    assert!(start.elapsed() >= Duration::from_millis(1000));
    figure_reaches(&broker, "keepalive_timeouts", 1);
}

/// 20,000 copies of `#` in one SUBSCRIBE over 2,000 retained messages: duplicates collapse, the
/// retained messages go out in slices, and another client's PINGRESP stays under 500 ms (a
/// frozen shard takes seconds; the margin is for a loaded test machine, not a speed target).
#[test]
fn one_subscribe_does_not_freeze_the_shard() {
    let broker = Broker::start_one_shard(&[]);
    let mut publisher = RawClient::connect(broker.addr, "retainer");
    for n in 0..2000u16 {
        publisher.publish(&format!("r/{n}"), b"retained", QoS::AtMostOnce, true);
    }
    broker.wait_for_stats("2000 retained", |stats| {
        stats["total"]["retained"].as_u64() == Some(2000)
    });
    let mut pinger = RawClient::connect(broker.addr, "pinger");
    let mut attacker = RawClient::connect(broker.addr, "attacker");
    let filters: Vec<SubscribeFilter> = (0..20_000)
        .map(|_| SubscribeFilter {
            filter: ByteStr::from("#"),
            options: SubscriptionOptions::default(),
        })
        .collect();
    attacker.send(&Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        filters,
        properties: Properties::default(),
    }));
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let sent = Instant::now();
        pinger.send(&Packet::PingReq);
        assert_eq!(pinger.recv(WAIT), Some(Packet::PingResp));
        slowest = slowest.max(sent.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(500),
        "PINGRESP took {slowest:?}"
    );
    // The SUBACK answers every filter.
    let suback = loop {
        match attacker.recv(WAIT) {
            Some(Packet::SubAck(suback)) => break suback,
            Some(_) => continue,
            None => panic!("no SUBACK"),
        }
    };
    assert_eq!(suback.codes.len(), 20_000);
    assert!(suback.codes.iter().all(|code| *code == ReasonCode::Success));
    let received = std::iter::from_fn(|| attacker.next_publish(QUIET)).count();
    assert_eq!(received, 2000, "each retained message once");
}

/// Filters per SUBSCRIBE and subscriptions per client.
#[test]
fn subscriptions_are_capped() {
    let broker = Broker::start(&["--max-subscribe-filters", "10", "--max-subscriptions", "12"]);
    let mut client = RawClient::connect(broker.addr, "greedy");
    let names: Vec<String> = (0..20).map(|n| format!("f/{n}")).collect();
    let filters: Vec<(&str, QoS)> = names
        .iter()
        .map(|f| (f.as_str(), QoS::AtMostOnce))
        .collect();
    let codes = client.subscribe(&filters).codes;
    assert!(codes[..10].iter().all(|c| *c == ReasonCode::Success));
    assert!(codes[10..]
        .iter()
        .all(|c| *c == ReasonCode::UnspecifiedError));
    let codes = client
        .subscribe(&[
            ("g/1", QoS::AtMostOnce),
            ("g/2", QoS::AtMostOnce),
            ("g/3", QoS::AtMostOnce),
        ])
        .codes;
    assert_eq!(
        codes,
        [
            ReasonCode::Success,
            ReasonCode::Success,
            ReasonCode::UnspecifiedError
        ],
        "12 subscriptions at most"
    );
    // Replacing an existing subscription is not a new one.
    assert_eq!(
        client.subscribe(&[("f/1", QoS::AtLeastOnce)]).codes,
        [ReasonCode::GrantedQoS1]
    );
    figure_reaches(&broker, "limit_subscriptions", 11);
}

/// Topic length and levels, client id and user name length, topic aliases.
#[test]
fn names_are_capped() {
    let broker = Broker::start(&[
        "--max-topic-levels",
        "3",
        "--max-topic-length",
        "64",
        "--max-client-id-length",
        "8",
        "--max-username-length",
        "8",
        "--max-topic-aliases",
        "2",
    ]);
    let (_, ack) = RawClient::connect_with(broker.addr, v5("much-too-long"));
    assert_eq!(ack.code, ReasonCode::ClientIdentifierNotValid);
    let (_, ack) = RawClient::connect_with(broker.addr, connect_packet("much-too-long", true));
    assert_eq!(ack.code.to_v3_connack(), 2);
    let mut connect = v5("named");
    connect.username = Some(ByteStr::from("a-very-long-user"));
    let (_, ack) = RawClient::connect_with(broker.addr, connect);
    assert_eq!(ack.code, ReasonCode::BadUserNameOrPassword);
    figure_reaches(&broker, "limit_identifier", 3);

    let (mut client, ack) = RawClient::connect_with(broker.addr, v5("c"));
    assert_eq!(ack.properties.topic_alias_maximum, Some(2));
    assert_eq!(
        client.subscribe(&[("a/b/c/d", QoS::AtMostOnce)]).codes,
        [ReasonCode::TopicFilterInvalid]
    );
    client.publish_with_id("a/b/c/d", b"deep", QoS::AtLeastOnce, false, 7);
    match client.recv(WAIT) {
        Some(Packet::PubAck(ack)) => assert_eq!(ack.code, ReasonCode::TopicNameInvalid),
        other => panic!("{other:?}"),
    }
    let long = "x".repeat(65);
    client.publish_with_id(&long, b"long", QoS::AtLeastOnce, false, 8);
    match client.recv(WAIT) {
        Some(Packet::PubAck(ack)) => assert_eq!(ack.code, ReasonCode::TopicNameInvalid),
        other => panic!("{other:?}"),
    }
    figure_reaches(&broker, "limit_topic", 3);
    let mut publish = Publish {
        topic: ByteStr::from("a"),
        payload: Bytes::from_static(b"x"),
        ..Publish::default()
    };
    publish.properties.topic_alias = Some(3);
    client.send(&Packet::Publish(publish));
    match client.recv(WAIT) {
        Some(Packet::Disconnect(disconnect)) => {
            assert_eq!(disconnect.code, ReasonCode::TopicAliasInvalid)
        }
        other => panic!("{other:?}"),
    }
}

/// Retained messages, by count and by bytes: a new topic over the limit is refused (MQTT 5:
/// 0x97), replacing or clearing one still works.
#[test]
fn retained_messages_are_capped() {
    let broker = Broker::start(&[
        "--max-retained-messages",
        "2",
        "--max-retained-bytes",
        "100",
    ]);
    let (mut client, _) = RawClient::connect_with(broker.addr, v5("keeper"));
    let ack = |client: &mut RawClient, topic: &str, payload: &[u8], id: u16| {
        client.publish_with_id(topic, payload, QoS::AtLeastOnce, true, id);
        match client.recv(WAIT) {
            Some(Packet::PubAck(ack)) => ack.code,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(ack(&mut client, "r/1", b"one", 1), ReasonCode::Success);
    assert_eq!(ack(&mut client, "r/2", b"two", 2), ReasonCode::Success);
    assert_eq!(
        ack(&mut client, "r/3", b"three", 3),
        ReasonCode::QuotaExceeded
    );
    assert_eq!(
        ack(&mut client, "r/1", b"uno", 4),
        ReasonCode::Success,
        "replacing"
    );
    assert_eq!(
        ack(&mut client, "r/2", &[b'x'; 200], 5),
        ReasonCode::QuotaExceeded,
        "over the bytes"
    );
    assert_eq!(
        ack(&mut client, "r/2", b"", 6),
        ReasonCode::Success,
        "clearing"
    );
    assert_eq!(ack(&mut client, "r/3", b"three", 7), ReasonCode::Success);
    figure_reaches(&broker, "limit_retained", 2);
}

/// Offline sessions: a count cap, an expiry for 3.1.1 sessions, and a byte bound on each queue;
/// drops are listed per session in the admin API.
#[test]
fn offline_sessions_are_bounded() {
    let broker = Broker::start_one_shard(&[
        "--max-offline-sessions",
        "1",
        "--persistent-client-expiration",
        "1",
        "--max-queued-bytes",
        "1000",
    ]);
    let (mut first, _) = RawClient::connect_with(broker.addr, connect_packet("first", false));
    first.subscribe(&[("q/#", QoS::AtLeastOnce)]);
    first.disconnect();
    let (mut second, _) = RawClient::connect_with(broker.addr, connect_packet("second", false));
    second.subscribe(&[("q/#", QoS::AtLeastOnce)]);
    second.disconnect();
    figure_reaches(&broker, "limit_offline_sessions", 1);
    assert!(
        broker.client("second").is_none(),
        "the second offline session was discarded"
    );

    let mut publisher = RawClient::connect(broker.addr, "publisher");
    for n in 0..10u16 {
        publisher.publish_with_id("q/x", &[b'x'; 200], QoS::AtLeastOnce, false, n + 1);
        assert!(matches!(publisher.recv(WAIT), Some(Packet::PubAck(_))));
    }
    let listed = broker.client("first").expect("first is offline");
    assert_eq!(
        listed["queued"], 5,
        "1000 bytes hold five 200-byte messages"
    );
    assert_eq!(listed["dropped"], 5);
    // Drops are reported by the shard's sweep, every 5 s.
    broker
        .wait_for_log(&["messages dropped", "first"], WAIT * 3)
        .expect("a log line names the client");

    // Offline for more than a second: the sweep ends it.
    figure_reaches(&broker, "sessions_expired", 1);
    let (_, ack) = RawClient::connect_with(broker.addr, connect_packet("first", false));
    assert!(!ack.session_present);
}

/// A panic in one connection's code does not leave a hung broker: the process ends with a
/// non-zero status (for systemd to restart it).
#[test]
fn a_panic_ends_the_process() {
    let mut broker = Broker::start_with_env(&[("SHARDMQ_FAULT_PANIC_CLIENT_ID", "boom")], &[]);
    let (_, ack) = RawClient::try_connect(broker.addr, connect_packet("boom", true));
    assert!(ack.is_none());
    let status = broker.wait_exit(WAIT).expect("the broker exits");
    assert!(!status.success(), "{status:?}");
}
