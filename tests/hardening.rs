//! A hostile client against the real binary: ways around the ACL (wills, retained messages,
//! another user's session, publications before the CONNACK). Each test fails on a broker that
//! lets the attack through.

mod common;

use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use common::files::Files;
use common::{connect_packet, login, Broker, RawClient, QUIET, WAIT};
use shardmq_codec::{ByteStr, LastWill, Packet, Protocol, QoS, ReasonCode};

fn with_credentials(client_id: &str, clean: bool, user: &str) -> shardmq_codec::Connect {
    let mut connect = connect_packet(client_id, clean);
    connect.username = Some(ByteStr::from(user));
    connect.password = Some(Bytes::from_static(b"pw"));
    connect
}

fn will(topic: &str) -> LastWill {
    LastWill {
        topic: ByteStr::from(topic),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: true,
        properties: Default::default(),
    }
}

fn sighup(broker: &Broker) {
    // SAFETY: signalling our own child by PID.
    unsafe {
        libc::kill(broker.pid() as i32, libc::SIGHUP);
    }
}

/// A will is a publication: its topic is checked when the CONNECT is authorised (3.1.1 return
/// code 5, MQTT 5 reason 0x87) and again when it is published, as rules may have changed.
#[test]
fn wills_obey_the_acl_at_connect_and_at_publication() {
    let files = Files::new("will");
    let passwd = files.passwords(&[("alice", "pw"), ("watch", "pw")]);
    let acl = files.write(
        "acl",
        "user alice\ntopic readwrite alice/#\nuser watch\ntopic read #\n",
    );
    let broker = Broker::start(&["--password-file", &passwd, "--acl-file", &acl]);
    let (mut watch, _) = login(&broker, "watch", Some("watch"), Some("pw"));
    assert_eq!(
        watch.subscribe(&[("#", QoS::AtMostOnce)]).codes,
        vec![ReasonCode::Success]
    );

    for protocol in [Protocol::V311, Protocol::V500] {
        let mut connect = with_credentials("alice-1", true, "alice");
        connect.protocol = protocol;
        connect.will = Some(will("bob/status"));
        let (_, ack) = RawClient::connect_with(broker.addr, connect);
        assert_eq!(ack.code, ReasonCode::NotAuthorized, "{protocol:?}");
        if protocol == Protocol::V311 {
            assert_eq!(ack.code.to_v3_connack(), 5);
        }
    }

    // Allowed at CONNECT; the rule is gone by the time the connection drops.
    let mut connect = with_credentials("alice-2", true, "alice");
    connect.will = Some(will("alice/status"));
    let (alice, ack) = RawClient::connect_with(broker.addr, connect);
    assert_eq!(ack.code, ReasonCode::Success);
    files.write(
        "acl",
        "user alice\ntopic read alice/#\nuser watch\ntopic read #\n",
    );
    sighup(&broker);
    assert!(
        broker
            .wait_for_log(&["access rules reloaded"], WAIT)
            .is_some(),
        "{:?}",
        broker.log()
    );
    alice.stream.shutdown(Shutdown::Both).unwrap();
    // A will published despite the revoked write would reach the watcher within this window.
    assert!(
        watch.next_publish(QUIET * 3).is_none(),
        "no will, no retain"
    );
    let (mut late, _) = login(&broker, "watch-2", Some("watch"), Some("pw"));
    late.subscribe(&[("alice/#", QoS::AtMostOnce)]);
    assert!(late.next_publish(QUIET).is_none(), "nothing was retained");
}

/// `read #` with `deny secret/#`: a subscription to `#` gets the retained messages the rules let
/// it read, and not `secret/x`.
#[test]
fn retained_messages_pass_the_read_check() {
    let files = Files::new("retained");
    let passwd = files.passwords(&[("r", "pw"), ("w", "pw"), ("all", "pw")]);
    let acl = files.write(
        "acl",
        "user r\ntopic read #\ntopic deny secret/#\nuser w\ntopic write #\nuser all\ntopic read #\n",
    );
    let broker = Broker::start(&["--password-file", &passwd, "--acl-file", &acl]);
    let (mut w, _) = login(&broker, "w", Some("w"), Some("pw"));
    w.publish("secret/x", b"classified", QoS::AtLeastOnce, true);
    w.publish("public/y", b"hello", QoS::AtLeastOnce, true);
    // A user who may read everything sees both: both are stored.
    let (mut all, _) = login(&broker, "all", Some("all"), Some("pw"));
    all.subscribe(&[("#", QoS::AtMostOnce)]);
    let mut stored: Vec<String> = (0..2)
        .map(|_| all.next_publish(WAIT).expect("retained").topic.to_string())
        .collect();
    stored.sort();
    assert_eq!(stored, ["public/y", "secret/x"]);
    let (mut r, _) = login(&broker, "r", Some("r"), Some("pw"));
    assert_eq!(
        r.subscribe(&[("#", QoS::AtMostOnce)]).codes,
        vec![ReasonCode::Success]
    );
    let first = r.next_publish(WAIT).expect("the readable retained message");
    assert_eq!(first.topic.as_str(), "public/y");
    assert!(r.next_publish(QUIET).is_none(), "secret/x was withheld");
}

/// User B connecting with user A's client id (clean session off) must not inherit A's
/// subscriptions or queued messages: the session starts clean.
#[test]
fn another_user_cannot_resume_a_session() {
    let files = Files::new("owner");
    let passwd = files.passwords(&[("alice", "pw"), ("bob", "pw"), ("pub", "pw")]);
    let acl = files.write(
        "acl",
        "user alice\ntopic readwrite #\nuser bob\ntopic readwrite #\nuser pub\ntopic write #\n",
    );
    let broker = Broker::start(&["--password-file", &passwd, "--acl-file", &acl]);
    let (mut alice, ack) =
        RawClient::connect_with(broker.addr, with_credentials("shared", false, "alice"));
    assert_eq!(ack.code, ReasonCode::Success);
    alice.subscribe(&[("a/#", QoS::AtLeastOnce)]);
    alice.disconnect();
    let (mut publisher, _) = login(&broker, "pub", Some("pub"), Some("pw"));
    publisher.publish("a/1", b"for alice", QoS::AtLeastOnce, false);
    // Acknowledged: the message sits in alice's offline session.
    assert!(matches!(publisher.recv(WAIT), Some(Packet::PubAck(_))));

    let (mut bob, ack) =
        RawClient::connect_with(broker.addr, with_credentials("shared", false, "bob"));
    assert_eq!(ack.code, ReasonCode::Success);
    assert!(!ack.session_present, "bob starts clean");
    assert!(
        bob.next_publish(QUIET).is_none(),
        "alice's queue is not bob's"
    );
    publisher.publish("a/2", b"later", QoS::AtLeastOnce, false);
    assert!(
        bob.next_publish(QUIET).is_none(),
        "nor are her subscriptions"
    );
    bob.disconnect();

    // Bob's session, in turn, is not alice's.
    let (_, ack) = RawClient::connect_with(broker.addr, with_credentials("shared", false, "alice"));
    assert!(!ack.session_present);
}

/// What a resumed session kept is checked against the rules in force when it is resumed.
#[test]
fn a_resumed_session_is_rechecked_against_current_rules() {
    let files = Files::new("recheck");
    let passwd = files.passwords(&[("alice", "pw"), ("pub", "pw")]);
    let acl = files.write(
        "acl",
        "user alice\ntopic readwrite news/#\nuser pub\ntopic write #\n",
    );
    let broker = Broker::start(&["--password-file", &passwd, "--acl-file", &acl]);
    let (mut alice, _) =
        RawClient::connect_with(broker.addr, with_credentials("alice", false, "alice"));
    alice.subscribe(&[("news/#", QoS::AtLeastOnce)]);
    alice.disconnect();
    let (mut publisher, _) = login(&broker, "pub", Some("pub"), Some("pw"));
    publisher.publish("news/1", b"queued", QoS::AtLeastOnce, false);
    assert!(matches!(publisher.recv(WAIT), Some(Packet::PubAck(_))));

    files.write(
        "acl",
        "user alice\ntopic readwrite sport/#\nuser pub\ntopic write #\n",
    );
    sighup(&broker);
    assert!(broker
        .wait_for_log(&["access rules reloaded"], WAIT)
        .is_some());
    let (mut alice, ack) =
        RawClient::connect_with(broker.addr, with_credentials("alice", false, "alice"));
    assert!(ack.session_present);
    assert!(
        alice.next_publish(QUIET).is_none(),
        "the queued news/1 is no longer readable"
    );
    publisher.publish("news/2", b"after", QoS::AtLeastOnce, false);
    assert!(
        alice.next_publish(QUIET).is_none(),
        "the news/# subscription was not restored"
    );
}

/// Nothing may be sent before the CONNACK [MQTT-3.2.0-1], even while auto-subscriptions are
/// being routed and messages flow on their topic.
#[test]
fn nothing_precedes_the_connack() {
    let files = Files::new("connack");
    let acl = files.write("acl", "pattern readwrite #\n");
    let auto = files.write("auto", "flood/# 0\n");
    let broker = Broker::start(&[
        "--acl-file",
        &acl,
        "--auto-subscribe-file",
        &auto,
        "--allow-anonymous",
        "true",
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let stop = Arc::clone(&stop);
        let addr = broker.addr;
        std::thread::spawn(move || {
            let mut publisher = RawClient::connect(addr, "flooder");
            // The flooder is auto-subscribed too: it reads what it is sent, or the broker would
            // (rightly) pause and then close a client that never reads.
            let mut sink = publisher.stream.try_clone().unwrap();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while matches!(std::io::Read::read(&mut sink, &mut buf), Ok(n) if n > 0) {}
            });
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) && sent < 5_000_000 {
                publisher.publish("flood/x", b"x", QoS::AtMostOnce, false);
                sent += 1;
            }
        })
    };
    for n in 0..50 {
        let mut client = RawClient::open(broker.addr);
        client.send(&Packet::Connect(Box::new(connect_packet(
            &format!("c{n}"),
            true,
        ))));
        match client.recv(WAIT) {
            Some(Packet::ConnAck(ack)) => assert_eq!(ack.code, ReasonCode::Success),
            other => panic!("connection {n}: first packet {other:?}; {:?}", broker.log()),
        }
    }
    stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();
}

/// `$` topics are the broker's: a client may write one only where a rule names it explicitly, and
/// a client id or user name that starts with `$` or holds `+`, `#` or `/` never widens a `%c` or
/// `%u` rule.
#[test]
fn dollar_topics_and_odd_identifiers_do_not_widen_the_acl() {
    let files = Files::new("dollar");
    let acl = files.write(
        "acl",
        "pattern readwrite #\npattern read $SYS/#\npattern readwrite $app/events\n",
    );
    let broker = Broker::start(&["--acl-file", &acl, "--allow-anonymous", "true"]);
    let mut watcher = RawClient::connect(broker.addr, "watcher");
    let codes = watcher
        .subscribe(&[
            ("$SYS/broker/fake", QoS::AtMostOnce),
            ("$app/events", QoS::AtMostOnce),
        ])
        .codes;
    assert_eq!(codes, [ReasonCode::Success, ReasonCode::Success]);
    // `#` does not match `$` topics [MQTT-4.7.2-1], and `$SYS/#` is read-only.

    let mut client = RawClient::connect(broker.addr, "plain");
    client.publish("$SYS/broker/fake", b"forged", QoS::AtMostOnce, false);
    client.publish("$app/events", b"named", QoS::AtMostOnce, false);
    let got = watcher.next_publish(WAIT).expect("the named $ topic");
    assert_eq!(
        got.topic.as_str(),
        "$app/events",
        "no forged $SYS message first"
    );

    // Identifiers that would widen a `%c` or `%u` rule fill none of them.
    let acl = files.write(
        "acl2",
        "pattern readwrite own/%c/#\npattern readwrite %c/#\npattern readwrite $app/events\n",
    );
    let broker = Broker::start(&["--acl-file", &acl, "--allow-anonymous", "true"]);
    let refused = [ReasonCode::UnspecifiedError];
    let mut plus = RawClient::connect(broker.addr, "+");
    assert_eq!(
        plus.subscribe(&[("own/victim/x", QoS::AtMostOnce)]).codes,
        refused
    );
    assert_eq!(
        plus.subscribe(&[("victim/x", QoS::AtMostOnce)]).codes,
        refused
    );
    let mut slash = RawClient::connect(broker.addr, "a/b");
    assert_eq!(
        slash.subscribe(&[("own/a/b/x", QoS::AtMostOnce)]).codes,
        refused
    );
    let mut dollar = RawClient::connect(broker.addr, "$SYS");
    assert_eq!(
        dollar.subscribe(&[("$SYS/#", QoS::AtMostOnce)]).codes,
        refused
    );
    let mut watcher = RawClient::connect(broker.addr, "watcher2");
    watcher.subscribe(&[("$app/events", QoS::AtMostOnce)]);
    dollar.publish("$app/events", b"second", QoS::AtMostOnce, false);
    let got = watcher.next_publish(WAIT).expect("the named $ topic");
    assert_eq!(got.payload, Bytes::from_static(b"second"));
}

/// A client id of 30,000 `+/` levels under `pattern deny secret/%c` is matched without deep
/// recursion: the broker keeps serving.
#[test]
fn a_deep_client_id_does_not_exhaust_the_stack() {
    let files = Files::new("deep");
    let acl = files.write("acl", "pattern deny secret/%c\npattern readwrite #\n");
    let broker = Broker::start(&[
        "--acl-file",
        &acl,
        "--allow-anonymous",
        "true",
        "--max-client-id-length",
        "65535",
        "--max-connect-size",
        "131072",
        "--max-topic-levels",
        "65535",
        "--max-topic-length",
        "65535",
    ]);
    let deep = "+/".repeat(30_000);
    let (mut client, ack) =
        RawClient::connect_with(broker.addr, connect_packet(&deep[..60_000], true));
    assert_eq!(ack.code, ReasonCode::Success);
    let topic = format!("secret/{}", "x/".repeat(20_000));
    client.publish_with_id(&topic, b"deep", QoS::AtLeastOnce, false, 1);
    assert!(matches!(client.recv(WAIT), Some(Packet::PubAck(_))));
    let mut probe = RawClient::connect(broker.addr, "probe");
    assert_eq!(
        probe.subscribe(&[("ok", QoS::AtMostOnce)]).codes,
        [ReasonCode::Success],
        "still serving"
    );
}

/// A persistent session taken over by a new connection, on whichever shard it lands, loses
/// nothing that was acknowledged to a publisher meanwhile: its old place keeps its routes and
/// forwards until the move completes.
#[test]
fn messages_published_while_a_session_moves_are_kept() {
    const MESSAGES: u16 = 20_000;
    let broker = Broker::start(&[]);
    let (mut mover, _) = RawClient::connect_with(broker.addr, connect_packet("mover", false));
    assert_eq!(
        mover.subscribe(&[("move/#", QoS::AtLeastOnce)]).codes,
        [ReasonCode::GrantedQoS1]
    );
    let addr = broker.addr;
    let publisher = std::thread::spawn(move || {
        let mut publisher = RawClient::connect(addr, "mover-feed");
        for n in 1..=MESSAGES {
            publisher.publish_with_id("move/x", &n.to_be_bytes(), QoS::AtLeastOnce, false, n);
            assert!(matches!(publisher.recv(WAIT), Some(Packet::PubAck(_))));
        }
    });
    let mut received = std::collections::HashSet::new();
    let take = |client: &mut RawClient, received: &mut std::collections::HashSet<u16>, wait| {
        while let Some(publish) = client.next_publish(wait) {
            received.insert(u16::from_be_bytes(publish.payload[..].try_into().unwrap()));
            client.send(&Packet::PubAck(shardmq_codec::PubAck::new(
                publish.packet_id.unwrap(),
            )));
            if received.len() % 50 == 0 {
                break;
            }
        }
    };
    // Take the session over again and again while the publisher runs.
    let mut moves = 0;
    while !publisher.is_finished() {
        moves += 1;
        take(&mut mover, &mut received, QUIET);
        let (next, ack) = RawClient::connect_with(broker.addr, connect_packet("mover", false));
        assert!(ack.session_present);
        mover = next;
    }
    publisher.join().unwrap();
    let deadline = std::time::Instant::now() + WAIT * 2;
    while received.len() < usize::from(MESSAGES) && std::time::Instant::now() < deadline {
        take(&mut mover, &mut received, QUIET);
    }
    assert_eq!(
        received.len(),
        usize::from(MESSAGES),
        "every acknowledged message arrived"
    );
    assert!(moves > 5, "the session moved {moves} times");
}
