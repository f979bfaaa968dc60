//! The router's MQTT 5 timers, sans I/O under a simulated clock: Session Expiry Interval (granted,
//! capped, changed by DISCONNECT, ending the session and releasing its id) and Will Delay
//! Interval (held, published after the delay or when the session ends, cancelled by a
//! reconnection). One shard: the client-id protocol across shards is `routers.rs`'s.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use shardmq_codec::{
    ByteStr, ConnAck, Decoder, Disconnect, LastWill, Packet, PacketId, Properties, Protocol, QoS,
    ReasonCode, Subscribe, SubscribeFilter, SubscriptionOptions,
};
use shardmq_shard::mesh::{ConnId, ShardId};
use shardmq_shard::router::{NewClient, Router};
use shardmq_shard::stats::Stats;
use shardmq_shard::ShardConfig;

fn router(max_session_expiry: u32) -> Router {
    let mut config = ShardConfig::default();
    config.limits.max_session_expiry = max_session_expiry;
    Router::new(ShardId(0), Arc::new(config), Rc::new(Stats::default()))
}

fn client(id: &str, clean_start: bool, expiry: u32, will: Option<(u32, &str)>) -> NewClient {
    let mut new = NewClient::plain(ByteStr::from(id), Protocol::V500, expiry > 0);
    new.clean_start = clean_start;
    new.session_expiry = Some(expiry);
    new.will = will.map(|(delay, topic)| {
        let mut properties = Properties::default();
        properties.will_delay_interval = Some(delay);
        Box::new(LastWill {
            topic: ByteStr::from(topic),
            payload: bytes::Bytes::from_static(b"gone"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties,
        })
    });
    new
}

fn packets(router: &mut Router, conn: ConnId) -> Vec<Packet> {
    let mut chunks = Vec::new();
    router
        .session_mut(conn)
        .expect("a session")
        .poll_transmit(&mut chunks);
    let mut buf = BytesMut::new();
    for chunk in chunks {
        buf.extend_from_slice(&chunk);
    }
    let mut decoder = Decoder::with_protocol(1 << 20, Protocol::V500);
    let mut packets = Vec::new();
    while let Some(packet) = decoder.decode(&mut buf).expect("valid output") {
        packets.push(packet);
    }
    packets
}

fn connect(router: &mut Router, conn: u64, new: NewClient) -> ConnAck {
    let conn = ConnId(conn);
    router.connect(conn, new).expect("accepted");
    router.drain_outputs(&mut Vec::new());
    match packets(router, conn).into_iter().next() {
        Some(Packet::ConnAck(ack)) => ack,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

fn subscribe(router: &mut Router, conn: u64, filter: &str) {
    let subscribe = Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        filters: vec![SubscribeFilter {
            filter: ByteStr::from(filter),
            options: SubscriptionOptions::default(),
        }],
        properties: Properties::default(),
    };
    router
        .handle_packet(ConnId(conn), Packet::Subscribe(subscribe))
        .expect("subscribed");
    router.drain_outputs(&mut Vec::new());
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn an_offline_session_ends_at_its_expiry_and_releases_its_id() {
    let mut router = router(u32::MAX);
    let t0 = Instant::now();
    let ack = connect(&mut router, 1, client("c", true, 10, None));
    assert!(!ack.session_present);
    assert_eq!(ack.properties.session_expiry_interval, None);
    subscribe(&mut router, 1, "t/#");
    router.disconnected(ConnId(1), t0);
    assert_eq!(router.registered(), 1);
    assert_eq!(router.poll_timeout(), Some(t0 + secs(10)));
    assert_eq!(router.expire_sessions(t0 + secs(9)), 0);
    assert_eq!(router.expire_sessions(t0 + secs(10)), 1);
    assert_eq!(router.registered(), 0, "the id is released");
    assert_eq!(router.stats().subscriptions.get(), 0);
    assert_eq!(router.stats().sessions_expired.get(), 1);
    let ack = connect(&mut router, 2, client("c", false, 10, None));
    assert!(!ack.session_present);
}

#[test]
fn a_resumed_session_is_present_and_its_old_deadline_is_stale() {
    let mut router = router(u32::MAX);
    let t0 = Instant::now();
    connect(&mut router, 1, client("c", true, 5, None));
    router.disconnected(ConnId(1), t0);
    // Expiry 0 on the resuming connection: the session is still present [MQTT-3.2.2-3].
    let ack = connect(&mut router, 2, client("c", false, 0, None));
    assert!(ack.session_present);
    assert_eq!(router.expire_sessions(t0 + secs(5)), 0);
    assert!(router.is_online(ConnId(2)));
}

#[test]
fn the_server_maximum_is_granted_and_told() {
    let mut router = router(5);
    let ack = connect(&mut router, 1, client("c", true, 100, None));
    assert_eq!(ack.properties.session_expiry_interval, Some(5));
    let t0 = Instant::now();
    router.disconnected(ConnId(1), t0);
    assert_eq!(router.expire_sessions(t0 + secs(5)), 1);
    // A "never" asked for is capped too.
    let ack = connect(&mut router, 2, client("d", true, u32::MAX, None));
    assert_eq!(ack.properties.session_expiry_interval, Some(5));
}

#[test]
fn a_disconnect_changes_the_expiry_but_may_not_raise_zero() {
    let mut router = router(u32::MAX);
    connect(&mut router, 1, client("zero", true, 0, None));
    let mut properties = Properties::default();
    properties.session_expiry_interval = Some(30);
    let raise = Disconnect {
        code: ReasonCode::Success,
        properties,
    };
    assert_eq!(
        router
            .handle_packet(ConnId(1), Packet::Disconnect(raise.clone()))
            .err(),
        Some(ReasonCode::ProtocolError)
    );
    connect(&mut router, 2, client("some", true, 3600, None));
    router
        .handle_packet(ConnId(2), Packet::Disconnect(raise))
        .expect("allowed");
    let t0 = Instant::now();
    router.disconnected(ConnId(2), t0);
    assert_eq!(router.poll_timeout(), Some(t0 + secs(30)));
}

#[test]
fn a_delayed_will_waits_for_its_delay() {
    let mut router = router(u32::MAX);
    connect(&mut router, 1, client("watch", true, 0, None));
    subscribe(&mut router, 1, "will/#");
    connect(&mut router, 2, client("c", true, 60, Some((5, "will/c"))));
    let t0 = Instant::now();
    assert!(router.publish_will(ConnId(2), t0).is_none(), "held");
    router.disconnected(ConnId(2), t0);
    assert!(router.handle_timeout(t0 + secs(4)).is_empty());
    let wills = router.handle_timeout(t0 + secs(5));
    assert_eq!(wills.len(), 1);
    assert_eq!(wills[0].len(), 1, "to the watcher");
    assert_eq!(router.stats().wills_published.get(), 1);
    assert!(router.handle_timeout(t0 + secs(6)).is_empty(), "once");
}

#[test]
fn a_reconnection_cancels_the_delayed_will() {
    let mut router = router(u32::MAX);
    connect(&mut router, 1, client("watch", true, 0, None));
    subscribe(&mut router, 1, "will/#");
    connect(&mut router, 2, client("c", true, 60, Some((5, "will/c"))));
    let t0 = Instant::now();
    assert!(router.publish_will(ConnId(2), t0).is_none());
    router.disconnected(ConnId(2), t0);
    let ack = connect(&mut router, 3, client("c", false, 60, None));
    assert!(ack.session_present);
    assert!(router.handle_timeout(t0 + secs(10)).is_empty());
    assert_eq!(router.stats().wills_published.get(), 0);
}

#[test]
fn a_delayed_will_goes_out_when_the_session_ends_first() {
    let mut router = router(u32::MAX);
    connect(&mut router, 1, client("watch", true, 0, None));
    subscribe(&mut router, 1, "will/#");
    connect(&mut router, 2, client("c", true, 2, Some((100, "will/c"))));
    let t0 = Instant::now();
    assert!(router.publish_will(ConnId(2), t0).is_none());
    router.disconnected(ConnId(2), t0);
    assert!(router.handle_timeout(t0 + secs(1)).is_empty());
    let wills = router.handle_timeout(t0 + secs(2));
    assert_eq!(wills.len(), 1);
    assert_eq!(
        router.registered(),
        1,
        "the session ended: only the watcher holds an id"
    );
    assert!(router.client_details("c", t0 + secs(2)).is_none());
}

#[test]
fn a_will_without_a_lasting_session_is_published_at_once() {
    let mut router = router(u32::MAX);
    connect(&mut router, 1, client("watch", true, 0, None));
    subscribe(&mut router, 1, "will/#");
    connect(&mut router, 2, client("c", true, 0, Some((100, "will/c"))));
    let fanout = router
        .publish_will(ConnId(2), Instant::now())
        .expect("published at once: the session ends with the connection");
    assert_eq!(fanout.len(), 1);
}
