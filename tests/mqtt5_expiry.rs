//! MQTT 5 sessions and messages over time, against the real binary: Session Expiry Interval
//! (ended sessions lose their subscriptions, a server maximum is told in the CONNACK, a
//! DISCONNECT may not raise 0), Message Expiry Interval (queued and retained messages), and Will
//! Delay Interval (cancelled by a reconnection, published after the delay or when the session
//! ends). The waits for an interval to pass are the point of these tests; each is short and
//! bounded, and everything else waits for something observable.

mod common;

use std::time::{Duration, Instant};

use common::{connect_packet, http, Broker, RawClient, QUIET, WAIT};
use shardmq_codec::{
    ByteStr, Connect, Disconnect, LastWill, Packet, PacketId, Properties, Protocol, Publish, QoS,
    ReasonCode,
};

/// An MQTT 5 CONNECT with this Session Expiry Interval (`None`: absent, i.e. 0).
fn v5(client_id: &str, clean_start: bool, expiry: Option<u32>) -> Connect {
    let mut connect = connect_packet(client_id, clean_start);
    connect.protocol = Protocol::V500;
    connect.properties.session_expiry_interval = expiry;
    connect
}

fn connect(broker: &Broker, connect: Connect) -> (RawClient, bool, Properties) {
    let (client, ack) = RawClient::connect_with(broker.addr, connect);
    assert_eq!(ack.code, ReasonCode::Success);
    (client, ack.session_present, ack.properties)
}

/// Publishes QoS 1 with a Message Expiry Interval and waits for the PUBACK: the message is
/// routed (and queued for offline sessions) once it is acknowledged.
fn publish_expiring(
    client: &mut RawClient,
    topic: &str,
    payload: &[u8],
    retain: bool,
    expiry: u32,
) {
    let mut properties = Properties::default();
    properties.message_expiry_interval = Some(expiry);
    client.send(&Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        retain,
        topic: ByteStr::from(topic),
        packet_id: PacketId::new(1),
        payload: bytes::Bytes::copy_from_slice(payload),
        properties,
        ..Publish::default()
    }));
    loop {
        match client.recv(WAIT) {
            Some(Packet::PubAck(ack)) => {
                assert_eq!(ack.code, ReasonCode::Success);
                return;
            }
            Some(_) => continue,
            None => panic!("no PUBACK"),
        }
    }
}

#[test]
fn session_expiry_ends_the_offline_session_and_its_subscriptions() {
    let broker = Broker::start(&[]);
    let (mut first, present, _) = connect(&broker, v5("sx", true, Some(2)));
    assert!(!present);
    first.subscribe(&[("sx/t", QoS::AtLeastOnce)]);
    first.disconnect();
    // Within the interval the session is there (on whichever shard the connection lands).
    let (again, present, _) = connect(&broker, v5("sx", false, Some(1)));
    assert!(present, "the session outlived its connection");
    again.disconnect();
    common::wait_until("the session to expire", WAIT, || {
        broker.client("sx").is_none()
    });
    broker.wait_for_stats("the expiry in the figures", |stats| {
        stats["total"]["sessions_expired"].as_u64().unwrap_or(0) >= 1
    });
    let (mut last, present, _) = connect(&broker, v5("sx", false, Some(60)));
    assert!(!present, "an expired session is not resumed");
    let mut publisher = RawClient::connect(broker.addr, "sx-pub");
    publisher.publish("sx/t", b"gone", QoS::AtMostOnce, false);
    assert!(
        last.next_publish(QUIET).is_none(),
        "the subscription ended with the session"
    );
}

#[test]
fn session_expiry_zero_ends_with_the_connection_and_never_resumes() {
    let broker = Broker::start(&[]);
    let (mut client, _, _) = connect(&broker, v5("sz", true, None));
    client.subscribe(&[("sz/t", QoS::AtLeastOnce)]);
    client.disconnect();
    let (_client, present, _) = connect(&broker, v5("sz", false, Some(10)));
    assert!(!present);
}

#[test]
fn the_server_maximum_is_granted_and_told_in_the_connack() {
    let broker = Broker::start(&["--max-session-expiry", "1"]);
    let (client, _, properties) = connect(&broker, v5("cap", true, Some(3600)));
    assert_eq!(properties.session_expiry_interval, Some(1));
    client.disconnect();
    common::wait_until("the capped session to expire", WAIT, || {
        broker.client("cap").is_none()
    });
    let (_client, present, properties) = connect(&broker, v5("cap", false, Some(1)));
    assert!(!present);
    assert_eq!(
        properties.session_expiry_interval, None,
        "nothing lowered, nothing told"
    );
}

#[test]
fn a_disconnect_may_not_raise_a_zero_session_expiry() {
    let broker = Broker::start(&[]);
    let (mut client, _, _) = connect(&broker, v5("raise", true, None));
    let mut properties = Properties::default();
    properties.session_expiry_interval = Some(60);
    client.send(&Packet::Disconnect(Disconnect {
        code: ReasonCode::Success,
        properties,
    }));
    match client.recv(WAIT) {
        Some(Packet::Disconnect(disconnect)) => {
            assert_eq!(disconnect.code, ReasonCode::ProtocolError)
        }
        other => panic!("expected DISCONNECT 0x82, got {other:?}"),
    }
    let (_client, present, _) = connect(&broker, v5("raise", false, Some(60)));
    assert!(!present, "no session was kept");
}

#[test]
fn a_disconnect_sets_the_session_expiry() {
    let broker = Broker::start(&[]);
    let (mut client, _, _) = connect(&broker, v5("lower", true, Some(3600)));
    client.subscribe(&[("lower/t", QoS::AtLeastOnce)]);
    let mut properties = Properties::default();
    properties.session_expiry_interval = Some(0);
    client.send(&Packet::Disconnect(Disconnect {
        code: ReasonCode::Success,
        properties,
    }));
    assert!(client.closed_within(WAIT));
    common::wait_until("the session to end with its connection", WAIT, || {
        broker.client("lower").is_none()
    });
    let (_client, present, _) = connect(&broker, v5("lower", false, Some(60)));
    assert!(!present);
}

#[test]
fn queued_messages_expire_and_the_rest_carry_what_remains() {
    let broker = Broker::start(&[]);
    let (mut subscriber, _, _) = connect(&broker, v5("mx", true, Some(60)));
    subscriber.subscribe(&[("mx/#", QoS::AtLeastOnce)]);
    subscriber.disconnect();
    let (mut publisher, _, _) = connect(&broker, v5("mx-pub", true, None));
    publish_expiring(&mut publisher, "mx/short", b"short", false, 1);
    publish_expiring(&mut publisher, "mx/long", b"long", false, 60);
    let queued_at = Instant::now();
    // Past the short message's interval (its expiry is what is tested).
    std::thread::sleep(Duration::from_millis(1500));
    let (mut subscriber, present, _) = connect(&broker, v5("mx", false, Some(60)));
    assert!(present);
    let delivered = subscriber
        .next_publish(WAIT)
        .expect("the long-lived message");
    assert_eq!(delivered.topic.as_str(), "mx/long");
    let waited = queued_at.elapsed().as_secs() as u32;
    let remaining = delivered
        .properties
        .message_expiry_interval
        .expect("a remaining interval");
    assert!(
        remaining < 60 && remaining >= 60 - waited - 1,
        "remaining {remaining} after {waited} s"
    );
    assert!(
        subscriber.next_publish(QUIET).is_none(),
        "the expired message is not delivered"
    );
    broker.wait_for_stats("the expired message counted", |stats| {
        stats["total"]["messages_expired"].as_u64().unwrap_or(0) >= 1
    });
    let (status, metrics) = http(broker.admin(), "GET", "/metrics", None);
    assert_eq!(status, 200);
    assert!(metrics.contains("messages_expired"), "{metrics}");
}

#[test]
fn a_message_delivered_at_once_keeps_its_interval() {
    let broker = Broker::start(&[]);
    let (mut subscriber, _, _) = connect(&broker, v5("now", true, None));
    subscriber.subscribe(&[("now/t", QoS::AtLeastOnce)]);
    let (mut publisher, _, _) = connect(&broker, v5("now-pub", true, None));
    publish_expiring(&mut publisher, "now/t", b"x", false, 30);
    let delivered = subscriber.next_publish(WAIT).expect("delivered");
    assert_eq!(delivered.properties.message_expiry_interval, Some(30));
}

#[test]
fn retained_messages_expire() {
    let broker = Broker::start(&[]);
    let (mut publisher, _, _) = connect(&broker, v5("rx-pub", true, None));
    publish_expiring(&mut publisher, "rx/t", b"soon gone", true, 1);
    let retained_at = Instant::now();
    let (mut before, _, _) = connect(&broker, v5("rx-before", true, None));
    let retained = before.wait_for_retained("rx/t", QoS::AtLeastOnce);
    if retained_at.elapsed() < Duration::from_millis(900) {
        assert_eq!(retained.properties.message_expiry_interval, Some(1));
    }
    // Past the interval.
    std::thread::sleep(Duration::from_millis(1200).saturating_sub(retained_at.elapsed()));
    let (mut after, _, _) = connect(&broker, v5("rx-after", true, None));
    after.subscribe(&[("rx/t", QoS::AtLeastOnce)]);
    assert!(
        after.next_publish(QUIET).is_none(),
        "an expired retained message is not sent"
    );
    broker.wait_for_stats("the expired retained message counted", |stats| {
        stats["total"]["messages_expired"].as_u64().unwrap_or(0) >= 1
    });
}

fn will(topic: &str, delay: u32) -> LastWill {
    let mut properties = Properties::default();
    properties.will_delay_interval = Some(delay);
    LastWill {
        topic: ByteStr::from(topic),
        payload: bytes::Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties,
    }
}

/// Connects `client_id` with a will on `topic` and drops the connection without DISCONNECT.
fn connect_and_vanish(broker: &Broker, client_id: &str, topic: &str, delay: u32, expiry: u32) {
    let mut connect = v5(client_id, true, Some(expiry));
    connect.will = Some(will(topic, delay));
    let (client, _, _) = self::connect(broker, connect);
    drop(client);
}

fn watcher(broker: &Broker, name: &str, filter: &str) -> RawClient {
    let (mut watcher, _, _) = connect(broker, v5(name, true, None));
    watcher.subscribe(&[(filter, QoS::AtLeastOnce)]);
    watcher
}

#[test]
fn a_delayed_will_is_published_after_its_delay() {
    let broker = Broker::start(&[]);
    let mut watcher = watcher(&broker, "wd-watch", "wd/#");
    let lost_at = Instant::now();
    connect_and_vanish(&broker, "wd", "wd/1", 1, 60);
    assert!(
        watcher.next_publish(QUIET).is_none(),
        "not before its delay"
    );
    let published = watcher
        .next_publish(WAIT)
        .expect("the will after its delay");
    assert_eq!(published.topic.as_str(), "wd/1");
    assert!(lost_at.elapsed() >= Duration::from_millis(900));
    assert_eq!(published.properties.will_delay_interval, None);
}

#[test]
fn a_delayed_will_is_cancelled_by_a_reconnection() {
    let broker = Broker::start(&[]);
    let mut watcher = watcher(&broker, "wc-watch", "wc/#");
    connect_and_vanish(&broker, "wc", "wc/1", 1, 60);
    // The broker has seen the connection go (the will is held), then the client returns.
    common::wait_until("the session offline", WAIT, || {
        broker
            .client("wc")
            .is_some_and(|client| client["connected"] == false)
    });
    let (client, present, _) = connect(&broker, v5("wc", false, Some(60)));
    assert!(present);
    // Past the delay (and the shard timer's tick): the will stays unpublished.
    assert!(
        watcher.next_publish(Duration::from_millis(2000)).is_none(),
        "the reconnection cancelled the will"
    );
    drop(client);
}

#[test]
fn a_delayed_will_is_published_when_the_session_ends_first() {
    let broker = Broker::start(&[]);
    let mut watcher = watcher(&broker, "we-watch", "we/#");
    connect_and_vanish(&broker, "we", "we/1", 3600, 1);
    let published = watcher
        .next_publish(WAIT)
        .expect("the will when the session ends");
    assert_eq!(published.topic.as_str(), "we/1");
    common::wait_until("the session to end", WAIT, || broker.client("we").is_none());
}
