//! MQTT 3.1.1 behaviour of the real broker, observed by clients: publish/subscribe at every QoS,
//! wildcards, retained messages, wills, keep-alive, sessions, takeover, and crossing shards.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{connect_packet, wait_until, Broker, RawClient, QUIET, WAIT};
use shardmq_codec::{
    ByteStr, LastWill, Packet, PacketId, Protocol, PubAck, PubComp, PubRec, PubRel, QoS, ReasonCode,
};

fn id(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

#[test]
fn publish_subscribe_at_every_qos_with_downgrade() {
    let broker = Broker::start(&[]);
    for granted in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let mut sub = RawClient::connect(broker.addr, &format!("sub-{granted:?}"));
        let ack = sub.subscribe(&[("qos/test", granted)]);
        assert_eq!(ack.codes, vec![ReasonCode::granted(granted)]);
        let mut publisher = RawClient::connect(broker.addr, &format!("pub-{granted:?}"));
        for (n, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .into_iter()
            .enumerate()
        {
            publisher.publish_with_id(
                "qos/test",
                format!("m{n}").as_bytes(),
                qos,
                false,
                n as u16 + 1,
            );
            match qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => assert_eq!(
                    publisher.recv(WAIT),
                    Some(Packet::PubAck(PubAck::new(id(2))))
                ),
                QoS::ExactlyOnce => {
                    assert_eq!(
                        publisher.recv(WAIT),
                        Some(Packet::PubRec(PubRec::new(id(3))))
                    );
                    publisher.send(&Packet::PubRel(PubRel::new(id(3))));
                    assert_eq!(
                        publisher.recv(WAIT),
                        Some(Packet::PubComp(PubComp::new(id(3))))
                    );
                }
            }
            let got = sub.next_publish(WAIT).expect("delivery");
            assert_eq!(got.payload, Bytes::from(format!("m{n}")));
            assert_eq!(
                got.qos,
                qos.min(granted),
                "published {qos:?}, granted {granted:?}"
            );
            match got.qos {
                QoS::AtMostOnce => assert!(got.packet_id.is_none()),
                QoS::AtLeastOnce => sub.send(&Packet::PubAck(PubAck::new(got.packet_id.unwrap()))),
                QoS::ExactlyOnce => {
                    let pid = got.packet_id.unwrap();
                    sub.send(&Packet::PubRec(PubRec::new(pid)));
                    assert_eq!(sub.recv(WAIT), Some(Packet::PubRel(PubRel::new(pid))));
                    sub.send(&Packet::PubComp(PubComp::new(pid)));
                }
            }
        }
        assert!(
            sub.next_publish(QUIET).is_none(),
            "exactly one delivery each"
        );
    }
}

#[test]
fn wildcards_and_dollar_topics() {
    let broker = Broker::start(&[]);
    let mut plus = RawClient::connect(broker.addr, "plus");
    plus.subscribe(&[("sport/+/player1", QoS::AtMostOnce)]);
    let mut hash = RawClient::connect(broker.addr, "hash");
    hash.subscribe(&[("sport/#", QoS::AtMostOnce)]);
    let mut all = RawClient::connect(broker.addr, "all");
    all.subscribe(&[("#", QoS::AtMostOnce)]);
    let mut publisher = RawClient::connect(broker.addr, "publisher");

    publisher.publish("sport/tennis/player1", b"a", QoS::AtMostOnce, false);
    publisher.publish("sport", b"b", QoS::AtMostOnce, false);
    publisher.publish("$SYS/secret", b"c", QoS::AtMostOnce, false);
    publisher.publish("sport/tennis/player2", b"d", QoS::AtMostOnce, false);

    let topics = |client: &mut RawClient| {
        let mut seen = Vec::new();
        while let Some(p) = client.next_publish(QUIET) {
            seen.push(p.topic.to_string());
        }
        seen
    };
    assert_eq!(topics(&mut plus), vec!["sport/tennis/player1"]);
    assert_eq!(
        topics(&mut hash),
        vec!["sport/tennis/player1", "sport", "sport/tennis/player2"]
    );
    // `#` does not match topics beginning with `$` [MQTT-4.7.2-1].
    assert_eq!(
        topics(&mut all),
        vec!["sport/tennis/player1", "sport", "sport/tennis/player2"]
    );
}

#[test]
fn overlapping_subscriptions_deliver_once_at_highest_qos() {
    let broker = Broker::start(&[]);
    let mut sub = RawClient::connect(broker.addr, "overlap");
    sub.subscribe(&[
        ("a/#", QoS::AtMostOnce),
        ("a/+", QoS::AtLeastOnce),
        ("a/b", QoS::AtMostOnce),
    ]);
    let mut publisher = RawClient::connect(broker.addr, "p");
    publisher.publish("a/b", b"x", QoS::AtLeastOnce, false);
    let got = sub.next_publish(WAIT).unwrap();
    assert_eq!(got.qos, QoS::AtLeastOnce);
    assert!(sub.next_publish(QUIET).is_none());
}

#[test]
fn retained_set_replace_clear() {
    let broker = Broker::start(&[]);
    let mut publisher = RawClient::connect(broker.addr, "retainer");
    publisher.publish("status/door", b"open", QoS::AtMostOnce, true);
    publisher.publish("status/door", b"closed", QoS::AtLeastOnce, true);
    assert!(matches!(publisher.recv(WAIT), Some(Packet::PubAck(_))));
    publisher.publish("status/window", b"open", QoS::AtMostOnce, true);
    publisher.publish("status/light", b"on", QoS::AtMostOnce, true);
    publisher.publish("status/light", b"", QoS::AtMostOnce, true);
    // Published last, outside `status/+`: a subscriber that gets it knows its shard's retained
    // index has every update above.
    publisher.publish("sync/retained", b"last", QoS::AtMostOnce, true);

    // Several subscribers, so the retained index of both shards is exercised.
    for n in 0..4 {
        let mut sub = RawClient::connect(broker.addr, &format!("late-{n}"));
        sub.wait_for_retained("sync/retained", QoS::AtMostOnce);
        sub.subscribe(&[("status/+", QoS::AtLeastOnce)]);
        let mut got = Vec::new();
        while let Some(p) = sub.next_publish(QUIET) {
            assert!(p.retain, "retained messages carry RETAIN on subscribe");
            got.push((p.topic.to_string(), p.payload.clone(), p.qos));
        }
        got.sort();
        assert_eq!(
            got,
            vec![
                (
                    "status/door".into(),
                    Bytes::from("closed"),
                    QoS::AtLeastOnce
                ),
                ("status/window".into(), Bytes::from("open"), QoS::AtMostOnce),
            ]
        );
    }
    // A live subscriber receives a retained publish without the RETAIN flag [MQTT-3.3.1-9].
    let mut live = RawClient::connect(broker.addr, "live");
    live.subscribe(&[("live/x", QoS::AtMostOnce)]);
    publisher.publish("live/x", b"1", QoS::AtMostOnce, true);
    assert!(!live.next_publish(WAIT).unwrap().retain);
}

fn will(topic: &str) -> LastWill {
    LastWill {
        topic: ByteStr::from(topic),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    }
}

#[test]
fn will_is_published_on_connection_loss_not_on_disconnect() {
    let broker = Broker::start(&[]);
    let mut watcher = RawClient::connect(broker.addr, "watcher");
    watcher.subscribe(&[("wills/#", QoS::AtLeastOnce)]);

    let polite = RawClient::connect_with_will(broker.addr, "polite", will("wills/polite"), 60);
    polite.disconnect();
    assert!(
        watcher.next_publish(QUIET).is_none(),
        "no will after DISCONNECT"
    );

    let rude = RawClient::connect_with_will(broker.addr, "rude", will("wills/rude"), 60);
    drop(rude); // socket closed without DISCONNECT
    let got = watcher
        .next_publish(WAIT)
        .expect("will after connection loss");
    assert_eq!(got.topic.as_str(), "wills/rude");
    assert_eq!(got.qos, QoS::AtLeastOnce);

    let mut violator =
        RawClient::connect_with_will(broker.addr, "violator", will("wills/violator"), 60);
    violator.send_raw(&[0xF0, 0x00]); // AUTH is not a 3.1.1 packet
    assert!(violator.closed_within(WAIT));
    assert_eq!(
        watcher.next_publish(WAIT).unwrap().topic.as_str(),
        "wills/violator"
    );
}

#[test]
fn retained_will() {
    let broker = Broker::start(&[]);
    let mut w = will("wills/retained");
    w.retain = true;
    let client = RawClient::connect_with_will(broker.addr, "dies", w, 60);
    drop(client);
    // Once the will is counted it is in the retained index, so a subscription made from now on
    // receives it as a retained message, not as a live one.
    broker.wait_for_stats("the will to be published", |stats| {
        stats["total"]["wills_published"] == 1
    });
    let mut late = RawClient::connect(broker.addr, "late");
    let got = late.wait_for_retained("wills/retained", QoS::AtLeastOnce);
    assert!(got.retain);
}

#[test]
fn keepalive_expiry_closes_and_fires_will() {
    let broker = Broker::start(&[]);
    let mut watcher = RawClient::connect(broker.addr, "watcher");
    watcher.subscribe(&[("wills/#", QoS::AtMostOnce)]);
    let mut silent = RawClient::connect_with_will(broker.addr, "silent", will("wills/silent"), 1);
    // 1.5 × 1 s of silence closes it [MQTT-3.1.2-24]: not before the keep-alive has passed,
    // and well within 4 s.
    let connected = Instant::now();
    assert!(
        !silent.closed_within(Duration::from_secs(1)),
        "closed before one keep-alive period"
    );
    assert!(
        silent.closed_within(Duration::from_secs(4).saturating_sub(connected.elapsed())),
        "a silent client is closed after 1.5 keep-alive periods"
    );
    assert_eq!(
        watcher.next_publish(WAIT).unwrap().topic.as_str(),
        "wills/silent"
    );

    // A client that pings stays connected.
    let mut pinger = RawClient::connect_with_will(broker.addr, "pinger", will("wills/pinger"), 1);
    for _ in 0..4 {
        // The client's pace, under test: 600 ms of silence, within 1.5 keep-alive periods, must
        // not close the connection.
        assert!(
            !pinger.closed_within(Duration::from_millis(600)),
            "closed a client that pings in time"
        );
        pinger.send(&Packet::PingReq);
        assert_eq!(pinger.recv(WAIT), Some(Packet::PingResp));
    }
}

#[test]
fn persistent_session_receives_messages_queued_while_offline() {
    let broker = Broker::start(&[]);
    let (mut sub, ack) = RawClient::connect_with(broker.addr, connect_packet("durable", false));
    assert!(!ack.session_present);
    sub.subscribe(&[("inbox/durable", QoS::AtLeastOnce)]);
    sub.disconnect();

    let mut publisher = RawClient::connect(broker.addr, "sender");
    for n in 0..5u16 {
        publisher.publish_with_id(
            "inbox/durable",
            format!("{n}").as_bytes(),
            QoS::AtLeastOnce,
            false,
            n + 1,
        );
        assert!(matches!(publisher.recv(WAIT), Some(Packet::PubAck(_))));
    }
    publisher.publish("inbox/durable", b"qos0", QoS::AtMostOnce, false);
    // A last QoS 1 message behind the QoS 0 one, from the same publisher: once the offline
    // session holds it, the QoS 0 message before it has reached the session too.
    publisher.publish_with_id("inbox/durable", b"5", QoS::AtLeastOnce, false, 6);
    assert!(matches!(publisher.recv(WAIT), Some(Packet::PubAck(_))));
    wait_until("six messages queued offline", WAIT, || {
        broker
            .client("durable")
            .is_some_and(|client| client["queued"] == 6)
    });

    let (mut sub, ack) = RawClient::connect_with(broker.addr, connect_packet("durable", false));
    assert!(ack.session_present);
    for n in 0..6 {
        let got = sub.next_publish(WAIT).expect("queued message");
        assert_eq!(got.payload, Bytes::from(format!("{n}")));
        sub.send(&Packet::PubAck(PubAck::new(got.packet_id.unwrap())));
    }
    assert!(
        sub.next_publish(QUIET).is_none(),
        "QoS 0 is not queued offline by default"
    );

    // A clean session discards it.
    sub.disconnect();
    let (_clean, ack) = RawClient::connect_with(broker.addr, connect_packet("durable", true));
    assert!(!ack.session_present);
}

#[test]
fn unacknowledged_messages_are_resent_with_dup_on_reconnect() {
    let broker = Broker::start(&[]);
    let (mut sub, _) = RawClient::connect_with(broker.addr, connect_packet("forgetful", false));
    sub.subscribe(&[("resend", QoS::ExactlyOnce)]);
    let mut publisher = RawClient::connect(broker.addr, "sender");
    publisher.publish_with_id("resend", b"one", QoS::AtLeastOnce, false, 1);
    publisher.publish_with_id("resend", b"two", QoS::ExactlyOnce, false, 2);
    let first = sub.next_publish(WAIT).unwrap();
    let second = sub.next_publish(WAIT).unwrap();
    assert!(!first.dup && !second.dup);
    // Acknowledge the QoS 2 message half-way (PUBREC), leave the QoS 1 message unacknowledged.
    sub.send(&Packet::PubRec(PubRec::new(second.packet_id.unwrap())));
    assert!(matches!(sub.recv(WAIT), Some(Packet::PubRel(_))));
    drop(sub);
    // The broker has seen the connection go: the session is offline (no takeover).
    wait_until("the session to go offline", WAIT, || {
        broker
            .client("forgetful")
            .is_some_and(|client| client["connected"] == false)
    });

    let (mut sub, ack) = RawClient::connect_with(broker.addr, connect_packet("forgetful", false));
    assert!(ack.session_present);
    let again = sub.next_publish(WAIT).expect("QoS 1 resent");
    assert!(again.dup);
    assert_eq!(
        (again.packet_id, again.payload.clone()),
        (first.packet_id, Bytes::from("one"))
    );
    assert_eq!(
        sub.recv(WAIT),
        Some(Packet::PubRel(PubRel::new(second.packet_id.unwrap())))
    );
}

#[test]
fn incoming_qos2_duplicate_is_delivered_once() {
    let broker = Broker::start(&[]);
    let mut sub = RawClient::connect(broker.addr, "sub");
    sub.subscribe(&[("exactly", QoS::ExactlyOnce)]);
    let mut publisher = RawClient::connect(broker.addr, "pub");
    publisher.publish_with_id("exactly", b"x", QoS::ExactlyOnce, false, 9);
    assert_eq!(
        publisher.recv(WAIT),
        Some(Packet::PubRec(PubRec::new(id(9))))
    );
    // The publisher resends (DUP) before releasing: no second delivery [MQTT-4.3.3-2].
    publisher.publish_with_id("exactly", b"x", QoS::ExactlyOnce, false, 9);
    assert_eq!(
        publisher.recv(WAIT),
        Some(Packet::PubRec(PubRec::new(id(9))))
    );
    publisher.send(&Packet::PubRel(PubRel::new(id(9))));
    assert_eq!(
        publisher.recv(WAIT),
        Some(Packet::PubComp(PubComp::new(id(9))))
    );
    assert!(sub.next_publish(WAIT).is_some());
    assert!(sub.next_publish(QUIET).is_none());
}

#[test]
fn inflight_window_holds_the_rest_until_acknowledged() {
    let broker = Broker::start(&["--max-inflight-messages", "4"]);
    let mut sub = RawClient::connect(broker.addr, "slow");
    sub.subscribe(&[("window", QoS::AtLeastOnce)]);
    let mut publisher = RawClient::connect(broker.addr, "fast");
    for n in 0..10u16 {
        publisher.publish_with_id("window", b"m", QoS::AtLeastOnce, false, n + 1);
    }
    let mut first = Vec::new();
    while let Some(p) = sub.next_publish(QUIET) {
        first.push(p.packet_id.unwrap());
    }
    assert_eq!(first.len(), 4, "window of 4");
    for pid in first {
        sub.send(&Packet::PubAck(PubAck::new(pid)));
    }
    let mut rest = 0;
    while let Some(p) = sub.next_publish(QUIET) {
        sub.send(&Packet::PubAck(PubAck::new(p.packet_id.unwrap())));
        rest += 1;
    }
    assert_eq!(rest, 6);
}

#[test]
fn takeover_moves_a_persistent_session_between_connections() {
    let broker = Broker::start(&[]);
    // Many attempts so the two connections land on different shards at least sometimes; the
    // assertions hold either way.
    for round in 0..6 {
        let client_id = format!("roaming-{round}");
        let (mut first, _) =
            RawClient::connect_with(broker.addr, connect_packet(&client_id, false));
        first.subscribe(&[("roam/#", QoS::AtLeastOnce)]);
        let (mut second, ack) =
            RawClient::connect_with(broker.addr, connect_packet(&client_id, false));
        assert!(
            ack.session_present,
            "the session moved to the new connection"
        );
        assert!(
            first.closed_within(WAIT),
            "the old connection is closed [MQTT-3.1.4-2]"
        );
        let mut publisher = RawClient::connect(broker.addr, &format!("pub-{round}"));
        publisher.publish("roam/x", b"after takeover", QoS::AtLeastOnce, false);
        let got = second
            .next_publish(WAIT)
            .expect("subscription moved with the session");
        assert_eq!(got.payload, Bytes::from("after takeover"));
        assert!(second.next_publish(QUIET).is_none(), "delivered once");
    }
}

#[test]
fn concurrent_reconnects_with_one_id_leave_one_owner() {
    let broker = Broker::start(&[]);
    let addr = broker.addr;
    let handles: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                RawClient::try_connect(addr, connect_packet("contested", false))
            })
        })
        .collect();
    // A connection superseded while it was still connecting is closed without a CONNACK.
    let mut clients: Vec<RawClient> = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|(_, ack)| ack.is_some())
        .map(|(c, _)| c)
        .collect();
    // The broker closes every superseded connection: wait until at most one is left open.
    let deadline = Instant::now() + WAIT;
    let mut open: Vec<usize> = (0..clients.len()).collect();
    loop {
        open.retain(|i| !clients[*i].closed_within(Duration::from_millis(10)));
        if open.len() <= 1 || Instant::now() >= deadline {
            break;
        }
    }
    assert_eq!(open.len(), 1, "exactly one connection survives");
    let owner = &mut clients[open[0]];
    assert!(!owner.closed_within(QUIET), "the survivor stays connected");
    owner.subscribe(&[("contested/t", QoS::AtMostOnce)]);
    let mut publisher = RawClient::connect(addr, "pub");
    publisher.publish("contested/t", b"x", QoS::AtMostOnce, false);
    assert!(owner.next_publish(WAIT).is_some());
}

#[test]
fn delivery_crosses_shards() {
    let broker = Broker::start(&[]);
    let mut subscribers: Vec<RawClient> = (0..24)
        .map(|n| {
            let mut client = RawClient::connect(broker.addr, &format!("spread-{n}"));
            client.subscribe(&[("fan/out", QoS::AtLeastOnce)]);
            client
        })
        .collect();
    let shard0 = broker.wait_for_log(&["client connected", "shard=0"], WAIT);
    let shard1 = broker.wait_for_log(&["client connected", "shard=1"], WAIT);
    assert!(
        shard0.is_some() && shard1.is_some(),
        "connections on both shards: {:?}",
        broker.log()
    );
    let mut publisher = RawClient::connect(broker.addr, "origin");
    for n in 0..10u16 {
        publisher.publish_with_id("fan/out", &n.to_be_bytes(), QoS::AtLeastOnce, false, n + 1);
    }
    for sub in &mut subscribers {
        for n in 0..10u16 {
            let got = sub
                .next_publish(WAIT)
                .expect("every subscriber, every message");
            assert_eq!(
                got.payload.as_ref(),
                n.to_be_bytes(),
                "order per publisher preserved"
            );
            sub.send(&Packet::PubAck(PubAck::new(got.packet_id.unwrap())));
        }
    }
}

#[test]
fn unsubscribe_stops_delivery() {
    let broker = Broker::start(&[]);
    let mut sub = RawClient::connect(broker.addr, "u");
    sub.subscribe(&[("u/1", QoS::AtMostOnce)]);
    sub.send(&Packet::Unsubscribe(shardmq_codec::Unsubscribe {
        packet_id: id(5),
        filters: vec![ByteStr::from("u/1")],
        properties: Default::default(),
    }));
    match sub.recv(WAIT) {
        Some(Packet::UnsubAck(ack)) => assert_eq!(ack.packet_id, id(5)),
        other => panic!("{other:?}"),
    }
    let mut publisher = RawClient::connect(broker.addr, "p");
    publisher.publish("u/1", b"x", QoS::AtMostOnce, false);
    assert!(sub.next_publish(QUIET).is_none());
}

#[test]
fn zero_length_client_id() {
    let broker = Broker::start(&[]);
    let (_client, ack) = RawClient::connect_with(broker.addr, connect_packet("", true));
    assert_eq!(ack.code, ReasonCode::Success);
    let (mut refused, ack) = RawClient::connect_with(broker.addr, connect_packet("", false));
    assert_eq!(
        ack.code.to_v3_connack(),
        2,
        "identifier rejected [MQTT-3.1.3-8]"
    );
    assert!(refused.closed_within(WAIT));
    let mut v5 = connect_packet("", false);
    v5.protocol = Protocol::V500;
    v5.properties.session_expiry_interval = Some(60);
    let (_client, ack) = RawClient::connect_with(broker.addr, v5);
    assert_eq!(ack.code, ReasonCode::Success);
    assert!(ack.properties.assigned_client_identifier.is_some());
}

#[test]
fn mqtt_31_clients_connect() {
    let broker = Broker::start(&[]);
    let mut connect = connect_packet("old-client", true);
    connect.protocol = Protocol::V310;
    let (mut client, ack) = RawClient::connect_with(broker.addr, connect);
    assert_eq!(ack.code, ReasonCode::Success);
    client.subscribe(&[("legacy", QoS::AtLeastOnce)]);
    client.publish("legacy", b"hi", QoS::AtMostOnce, false);
    assert_eq!(
        client.next_publish(WAIT).unwrap().payload,
        Bytes::from("hi")
    );
}
