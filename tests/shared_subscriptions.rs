//! Shared subscriptions (`$share/<group>/<filter>`, `$queue/<filter>`) and Subscription
//! Identifiers, observed by raw MQTT 3.1.1 and 5 clients of the real broker, with members placed
//! on both of its shards: one member of each group per message, the strategies, members that
//! drop mid-stream or are offline, and the rules of the specification (no retained messages,
//! No Local refused, invalid share names).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{connect_packet, Broker, RawClient, QUIET, WAIT};
use shardmq_codec::{
    ByteStr, Packet, PacketId, Properties, Protocol, PubAck, PubComp, PubRec, Publish, QoS,
    ReasonCode, SubAck, Subscribe, SubscribeFilter, SubscriptionOptions,
};

/// Connects `client_id` (clean or not, at `protocol`) until the broker placed it on `shard`.
fn connect_on(
    broker: &Broker,
    client_id: &str,
    shard: u64,
    protocol: Protocol,
    clean: bool,
) -> RawClient {
    for _ in 0..64 {
        let mut connect = connect_packet(client_id, clean);
        connect.protocol = protocol;
        if protocol.is_v5() && !clean {
            connect.properties.session_expiry_interval = Some(600);
        }
        let (client, ack) = RawClient::connect_with(broker.addr, connect);
        assert_eq!(ack.code, ReasonCode::Success);
        let placed = broker
            .client(client_id)
            .and_then(|details| details["shard"].as_u64());
        if placed == Some(shard) {
            return client;
        }
        client.disconnect();
    }
    panic!("{client_id} never landed on shard {shard}");
}

fn options(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        ..SubscriptionOptions::default()
    }
}

/// Subscribes to each filter with its options (and the Subscription Identifier, if any) and
/// returns the SUBACK.
fn subscribe_with(
    client: &mut RawClient,
    filters: &[(&str, SubscriptionOptions)],
    identifier: Option<u32>,
) -> SubAck {
    let mut properties = Properties::default();
    properties.subscription_identifiers.extend(identifier);
    client.send(&Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(7).unwrap(),
        filters: filters
            .iter()
            .map(|(filter, options)| SubscribeFilter {
                filter: ByteStr::from(*filter),
                options: *options,
            })
            .collect(),
        properties,
    }));
    loop {
        match client.recv(WAIT) {
            Some(Packet::SubAck(ack)) => return ack,
            Some(_) => continue,
            None => panic!("no SUBACK"),
        }
    }
}

fn join(client: &mut RawClient, filter: &str, qos: QoS) {
    let ack = subscribe_with(client, &[(filter, options(qos))], None);
    assert_eq!(ack.codes, [ReasonCode::granted(qos)], "{filter}");
}

/// Publishes `count` QoS `qos` messages `<tag>-<n>` to `topic`, with ids 1.., and for QoS 1
/// waits for every PUBACK (so each was routed before this returns).
fn publish_numbered(client: &mut RawClient, topic: &str, tag: &str, count: u16, qos: QoS) {
    for n in 1..=count {
        let payload = format!("{tag}-{n}");
        client.publish_with_id(topic, payload.as_bytes(), qos, false, n);
    }
    if qos == QoS::AtLeastOnce {
        let mut acked = 0;
        while acked < count {
            match client.recv(WAIT) {
                Some(Packet::PubAck(_)) => acked += 1,
                Some(_) => continue,
                None => panic!("{acked} of {count} PUBACKs"),
            }
        }
    }
}

/// Reads PUBLISHes (acknowledging QoS 1) until `quiet` passes with none; returns the payloads.
fn collect(client: &mut RawClient, quiet: Duration) -> Vec<String> {
    let mut payloads = Vec::new();
    while let Some(packet) = client.recv(quiet) {
        if let Packet::Publish(publish) = packet {
            if let (QoS::AtLeastOnce, Some(id)) = (publish.qos, publish.packet_id) {
                client.send(&Packet::PubAck(PubAck::new(id)));
            }
            payloads.push(String::from_utf8_lossy(&publish.payload).into_owned());
        }
    }
    payloads
}

/// Reads from every client until `expected` payloads arrived in all, or `WAIT` passed with
/// nothing new; then for a short while more, so duplicates would show. Returns each client's.
fn collect_all(clients: &mut [&mut RawClient], expected: usize) -> Vec<Vec<String>> {
    let mut got: Vec<Vec<String>> = vec![Vec::new(); clients.len()];
    let mut last_progress = Instant::now();
    loop {
        let total: usize = got.iter().map(Vec::len).sum();
        if total >= expected || last_progress.elapsed() > WAIT {
            break;
        }
        for (index, client) in clients.iter_mut().enumerate() {
            let more = collect(client, Duration::from_millis(50));
            if !more.is_empty() {
                last_progress = Instant::now();
            }
            got[index].extend(more);
        }
    }
    for (index, client) in clients.iter_mut().enumerate() {
        got[index].extend(collect(client, QUIET));
    }
    got
}

fn numbered(tag: &str, count: u16) -> BTreeSet<String> {
    (1..=count).map(|n| format!("{tag}-{n}")).collect()
}

/// Asserts that the members together received every expected payload exactly once.
fn exactly_once(received: &[Vec<String>], expected: &BTreeSet<String>) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for payload in received.iter().flatten() {
        *seen.entry(payload).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let got: BTreeSet<String> = seen.keys().map(|p| p.to_string()).collect();
    let missing: Vec<_> = expected.difference(&got).collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");
    assert_eq!(got.len(), expected.len(), "unexpected payloads: {got:?}");
}

#[test]
fn each_group_gets_each_message_once_whatever_the_shard_or_protocol() {
    let broker = Broker::start(&[]);
    // Group "workers": an MQTT 5 member on shard 0 and an MQTT 3.1.1 member on shard 1.
    let mut a = connect_on(&broker, "worker-a", 0, Protocol::V500, true);
    let mut b = connect_on(&broker, "worker-b", 1, Protocol::V311, true);
    join(&mut a, "$share/workers/jobs/+", QoS::AtLeastOnce);
    join(&mut b, "$share/workers/jobs/+", QoS::AtLeastOnce);
    // Group "audit" with one member, and an ordinary subscriber: each gets everything.
    let mut audit = connect_on(&broker, "auditor", 1, Protocol::V500, true);
    join(&mut audit, "$share/audit/jobs/#", QoS::AtLeastOnce);
    let mut plain = connect_on(&broker, "watcher", 0, Protocol::V311, true);
    join(&mut plain, "jobs/+", QoS::AtLeastOnce);

    let mut p0 = connect_on(&broker, "producer-0", 0, Protocol::V311, true);
    let mut p1 = connect_on(&broker, "producer-1", 1, Protocol::V500, true);
    publish_numbered(&mut p0, "jobs/x", "p0", 100, QoS::AtLeastOnce);
    publish_numbered(&mut p1, "jobs/y", "p1", 100, QoS::AtLeastOnce);

    let expected: BTreeSet<String> = numbered("p0", 100)
        .union(&numbered("p1", 100))
        .cloned()
        .collect();
    let workers = collect_all(&mut [&mut a, &mut b], 200);
    exactly_once(&workers, &expected);
    assert!(
        workers.iter().all(|got| got.len() >= 50),
        "round robin spreads over both members: {} and {}",
        workers[0].len(),
        workers[1].len()
    );
    let audited = collect_all(&mut [&mut audit], 200);
    exactly_once(&audited, &expected);
    let watched = collect_all(&mut [&mut plain], 200);
    exactly_once(&watched, &expected);
}

#[test]
fn queue_subscriptions_are_one_shared_group() {
    let broker = Broker::start(&[]);
    let mut a = connect_on(&broker, "queue-a", 0, Protocol::V311, true);
    let mut b = connect_on(&broker, "queue-b", 1, Protocol::V311, true);
    join(&mut a, "$queue/tasks", QoS::AtLeastOnce);
    join(&mut b, "$queue/tasks", QoS::AtLeastOnce);
    let mut producer = RawClient::connect(broker.addr, "queue-producer");
    publish_numbered(&mut producer, "tasks", "t", 60, QoS::AtLeastOnce);
    let got = collect_all(&mut [&mut a, &mut b], 60);
    exactly_once(&got, &numbered("t", 60));
    assert!(got.iter().all(|payloads| !payloads.is_empty()));
}

/// Which member (0 or 1) received each of `count` messages from one publisher, with the given
/// strategy flags, the publisher on `publisher_shard`.
fn spread(args: &[&str], publisher_shard: u64, topics: &[&str], count: u16) -> [usize; 2] {
    let broker = Broker::start(args);
    let mut a = connect_on(&broker, "member-0", 0, Protocol::V500, true);
    let mut b = connect_on(&broker, "member-1", 1, Protocol::V500, true);
    join(&mut a, "$share/g/s/#", QoS::AtLeastOnce);
    join(&mut b, "$share/g/s/#", QoS::AtLeastOnce);
    let mut publisher = connect_on(&broker, "publisher", publisher_shard, Protocol::V500, true);
    let mut expected = BTreeSet::new();
    for topic in topics {
        let tag = topic.replace('/', "_");
        publish_numbered(&mut publisher, topic, &tag, count, QoS::AtLeastOnce);
        expected.extend(numbered(&tag, count));
    }
    let got = collect_all(&mut [&mut a, &mut b], expected.len());
    exactly_once(&got, &expected);
    [got[0].len(), got[1].len()]
}

#[test]
fn local_prefers_a_member_on_the_publishing_shard() {
    let local = ["--shared-subscription-strategy", "local"];
    assert_eq!(spread(&local, 0, &["s/1"], 50), [50, 0]);
    assert_eq!(spread(&local, 1, &["s/1"], 50), [0, 50]);
    // The same broker-wide default, named for the group only.
    let named = ["--shared-subscription-groups", "g=local"];
    assert_eq!(spread(&named, 1, &["s/1"], 50), [0, 50]);
}

#[test]
fn hash_strategies_keep_a_publisher_or_a_topic_on_one_member() {
    let by_client = spread(
        &["--shared-subscription-strategy", "hash_clientid"],
        0,
        &["s/1", "s/2", "s/3"],
        20,
    );
    assert!(
        by_client.contains(&60) && by_client.contains(&0),
        "{by_client:?}"
    );
    // Per topic: each topic's 20 messages go to one member.
    let broker = Broker::start(&["--shared-subscription-strategy", "hash_topic"]);
    let mut a = connect_on(&broker, "member-0", 0, Protocol::V500, true);
    let mut b = connect_on(&broker, "member-1", 1, Protocol::V500, true);
    join(&mut a, "$share/g/s/#", QoS::AtLeastOnce);
    join(&mut b, "$share/g/s/#", QoS::AtLeastOnce);
    let mut publisher = RawClient::connect(broker.addr, "publisher");
    let topics: Vec<String> = (0..8).map(|n| format!("s/{n}")).collect();
    let mut expected = BTreeSet::new();
    for (n, topic) in topics.iter().enumerate() {
        publish_numbered(
            &mut publisher,
            topic,
            &format!("s{n}"),
            10,
            QoS::AtLeastOnce,
        );
        expected.extend(numbered(&format!("s{n}"), 10));
    }
    let got = collect_all(&mut [&mut a, &mut b], expected.len());
    exactly_once(&got, &expected);
    for n in 0..8 {
        let prefix = format!("s{n}-");
        let per_member: Vec<usize> = got
            .iter()
            .map(|payloads| payloads.iter().filter(|p| p.starts_with(&prefix)).count())
            .collect();
        assert!(
            per_member.contains(&10),
            "topic s/{n} split: {per_member:?}"
        );
    }
}

#[test]
fn random_spreads_over_members() {
    let got = spread(
        &["--shared-subscription-strategy", "random"],
        0,
        &["s/1"],
        200,
    );
    assert!(got[0] > 20 && got[1] > 20, "{got:?}");
}

#[test]
fn a_member_that_drops_mid_stream_hands_its_messages_to_the_group() {
    // A window of 5: the rest of what the slow member is given waits in its queue.
    let broker = Broker::start(&["--max-inflight-messages", "5"]);
    let mut slow = connect_on(&broker, "slow", 0, Protocol::V500, true);
    let mut fast = connect_on(&broker, "fast", 1, Protocol::V311, true);
    join(&mut slow, "$share/g/work", QoS::AtLeastOnce);
    join(&mut fast, "$share/g/work", QoS::AtLeastOnce);
    let mut producer = RawClient::connect(broker.addr, "producer");
    publish_numbered(&mut producer, "work", "w", 100, QoS::AtLeastOnce);
    // The slow member reads what it was sent and acknowledges nothing, then vanishes.
    let mut unacknowledged = Vec::new();
    while let Some(packet) = slow.recv(QUIET) {
        if let Packet::Publish(publish) = packet {
            unacknowledged.push(String::from_utf8_lossy(&publish.payload).into_owned());
        }
    }
    assert_eq!(
        unacknowledged.len(),
        5,
        "the window holds 5: {unacknowledged:?}"
    );
    drop(slow);
    let got = collect_all(&mut [&mut fast], 100);
    exactly_once(&got, &numbered("w", 100));
    let stats = broker.wait_for_stats("shared_returned", |stats| {
        stats["total"]["shared_returned"].as_u64() >= Some(5)
    });
    assert!(stats["total"]["dropped_no_member"].as_u64() == Some(0));
}

/// The QoS 2 PUBLISHes a client reads within `QUIET`, answered with PUBREC only when
/// `receive` says so (and every PUBREL with PUBCOMP): payload and packet id.
fn read_qos2(client: &mut RawClient, receive: impl Fn(&str) -> bool) -> Vec<(String, u16)> {
    let mut got = Vec::new();
    while let Some(packet) = client.recv(QUIET) {
        if let Packet::PubRel(rel) = &packet {
            client.send(&Packet::PubComp(PubComp::new(rel.packet_id)));
        }
        if let Packet::Publish(publish) = packet {
            let payload = String::from_utf8_lossy(&publish.payload).into_owned();
            let id = publish.packet_id.expect("QoS 2 has an id");
            if receive(&payload) {
                client.send(&Packet::PubRec(PubRec::new(id)));
            }
            got.push((payload, id.get()));
        }
    }
    got
}

#[test]
fn a_persistent_qos2_member_that_drops_keeps_what_it_was_sent_and_the_group_gets_the_rest() {
    let broker = Broker::start(&["--max-inflight-messages", "4"]);
    let mut a = connect_on(&broker, "qos2-a", 0, Protocol::V500, false);
    let mut b = connect_on(&broker, "qos2-b", 1, Protocol::V500, true);
    join(&mut a, "$share/g/exact", QoS::ExactlyOnce);
    join(&mut b, "$share/g/exact", QoS::ExactlyOnce);
    let mut producer = RawClient::connect(broker.addr, "producer");
    for n in 1..=40u16 {
        let payload = format!("e-{n}");
        producer.publish_with_id("exact", payload.as_bytes(), QoS::ExactlyOnce, false, n);
    }
    // Member a receives its first 4 (its window) and drops without answering any.
    let sent_to_a = read_qos2(&mut a, |_| false);
    assert_eq!(sent_to_a.len(), 4, "{sent_to_a:?}");
    drop(a);
    // Member b answers everything; the publisher's flow completes meanwhile (PUBREL is answered
    // by the broker, which has routed the message at PUBLISH).
    let mut at_b = Vec::new();
    let deadline = Instant::now() + WAIT;
    while at_b.len() + sent_to_a.len() < 40 && Instant::now() < deadline {
        at_b.extend(
            read_qos2(&mut b, |_| true)
                .into_iter()
                .map(|(payload, _)| payload),
        );
    }
    // a comes back: the 4 it was sent come again (DUP, same ids), nothing else.
    let mut connect = connect_packet("qos2-a", false);
    connect.protocol = Protocol::V500;
    connect.properties.session_expiry_interval = Some(600);
    let (mut a, ack) = RawClient::connect_with(broker.addr, connect);
    assert!(ack.session_present);
    let again = read_qos2(&mut a, |_| true);
    assert_eq!(
        again, sent_to_a,
        "the in-flight QoS 2 messages are resent, the same ones"
    );
    let at_a: Vec<String> = again.into_iter().map(|(payload, _)| payload).collect();
    exactly_once(&[at_a, at_b], &numbered("e", 40));
}

#[test]
fn an_offline_member_does_not_swallow_messages_but_keeps_them_when_alone() {
    let broker = Broker::start(&[]);
    let mut away = connect_on(&broker, "away", 0, Protocol::V311, false);
    join(&mut away, "$share/g/news", QoS::AtLeastOnce);
    away.disconnect();
    let mut here = connect_on(&broker, "here", 1, Protocol::V311, true);
    join(&mut here, "$share/g/news", QoS::AtLeastOnce);
    let mut producer = RawClient::connect(broker.addr, "producer");
    publish_numbered(&mut producer, "news", "n", 30, QoS::AtLeastOnce);
    let got = collect_all(&mut [&mut here], 30);
    exactly_once(&got, &numbered("n", 30));
    // The connected member leaves; the offline one keeps what comes next.
    here.disconnect();
    publish_numbered(&mut producer, "news", "later", 10, QoS::AtLeastOnce);
    let (mut away, ack) = RawClient::connect_with(broker.addr, connect_packet("away", false));
    assert!(ack.session_present);
    let got = collect_all(&mut [&mut away], 10);
    exactly_once(&got, &numbered("later", 10));
}

#[test]
fn shared_subscriptions_follow_the_specification() {
    let broker = Broker::start(&[]);
    let mut publisher = RawClient::connect(broker.addr, "retainer");
    publisher.publish("state/door", b"open", QoS::AtLeastOnce, true);
    let mut plain = RawClient::connect(broker.addr, "checker");
    plain.wait_for_retained("state/door", QoS::AtMostOnce);

    let mut connect = connect_packet("v5", true);
    connect.protocol = Protocol::V500;
    let (mut client, ack) = RawClient::connect_with(broker.addr, connect);
    // Absent: shared subscriptions and identifiers are available (§3.2.2.3.13, 3.2.2.3.12).
    assert_eq!(ack.properties.shared_subscription_available, None);
    assert_eq!(ack.properties.subscription_identifier_available, None);
    // No retained message on a shared subscription [MQTT-3.8.4 / §4.8.2].
    join(&mut client, "$share/g/state/#", QoS::AtLeastOnce);
    assert!(
        client.next_publish(QUIET).is_none(),
        "a retained message came"
    );
    // Invalid share names.
    let bad = subscribe_with(
        &mut client,
        &[
            ("$share/g", options(QoS::AtMostOnce)),
            ("$share//x", options(QoS::AtMostOnce)),
            ("$share/a+b/x", options(QoS::AtMostOnce)),
            ("$share/g/x/#/y", options(QoS::AtMostOnce)),
        ],
        None,
    );
    assert_eq!(bad.codes, [ReasonCode::TopicFilterInvalid; 4]);
    // No Local on a shared subscription is a Protocol Error [MQTT-3.8.3-4].
    let no_local = SubscriptionOptions {
        no_local: true,
        ..options(QoS::AtMostOnce)
    };
    client.send(&Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(9).unwrap(),
        filters: vec![SubscribeFilter {
            filter: ByteStr::from("$share/g/x"),
            options: no_local,
        }],
        properties: Properties::default(),
    }));
    match client.recv(WAIT) {
        Some(Packet::Disconnect(disconnect)) => {
            assert_eq!(disconnect.code, ReasonCode::ProtocolError)
        }
        None => {}
        other => panic!("expected the connection to close, got {other:?}"),
    }
    assert!(client.closed_within(WAIT));
    // An MQTT 3.1.1 client may share too.
    let mut v3 = RawClient::connect(broker.addr, "v3");
    join(&mut v3, "$share/g/state/#", QoS::AtMostOnce);
    publisher.publish("state/window", b"closed", QoS::AtMostOnce, false);
    assert_eq!(
        v3.next_publish(WAIT).expect("delivered").payload,
        &b"closed"[..]
    );
}

fn identifiers(publish: &Publish) -> BTreeSet<u32> {
    publish
        .properties
        .subscription_identifiers
        .iter()
        .copied()
        .collect()
}

#[test]
fn subscription_identifiers_come_with_every_matching_publish() {
    let broker = Broker::start(&[]);
    let mut connect = connect_packet("ids", true);
    connect.protocol = Protocol::V500;
    let (mut client, _) = RawClient::connect_with(broker.addr, connect.clone());
    let ack = subscribe_with(&mut client, &[("a/+", options(QoS::AtLeastOnce))], Some(7));
    assert_eq!(ack.codes, [ReasonCode::GrantedQoS1]);
    subscribe_with(
        &mut client,
        &[("a/#", options(QoS::AtMostOnce))],
        Some(268_435_455),
    );
    subscribe_with(&mut client, &[("a/b", options(QoS::AtMostOnce))], None);
    subscribe_with(
        &mut client,
        &[("$share/g/a/b", options(QoS::AtMostOnce))],
        Some(42),
    );
    // The publisher on the other shard, an MQTT 3.1.1 client.
    let client_shard = broker.client("ids").unwrap()["shard"].as_u64().unwrap();
    let mut publisher = connect_on(&broker, "pub", 1 - client_shard, Protocol::V311, true);
    publisher.publish("a/b", b"three", QoS::AtLeastOnce, false);
    // One copy for the three overlapping subscriptions, with both identifiers, and one for the
    // shared subscription with its own.
    let mut copies: Vec<BTreeSet<u32>> = Vec::new();
    while let Some(publish) = client.next_publish(QUIET * 2) {
        if let Some(id) = publish.packet_id {
            client.send(&Packet::PubAck(PubAck::new(id)));
        }
        copies.push(identifiers(&publish));
    }
    copies.sort();
    assert_eq!(
        copies,
        [BTreeSet::from([7, 268_435_455]), BTreeSet::from([42])]
    );
    publisher.publish("a/c", b"two", QoS::AtMostOnce, false);
    let publish = client.next_publish(WAIT).unwrap();
    assert_eq!(identifiers(&publish), BTreeSet::from([7, 268_435_455]));
    // Subscribing again without an identifier removes it.
    subscribe_with(&mut client, &[("a/#", options(QoS::AtMostOnce))], None);
    publisher.publish("a/c", b"one", QoS::AtMostOnce, false);
    assert_eq!(
        identifiers(&client.next_publish(WAIT).unwrap()),
        BTreeSet::from([7])
    );
    // They survive a session resumed on another connection (queued while offline).
    connect.clean_start = false;
    connect.client_id = ByteStr::from("ids-persistent");
    connect.properties.session_expiry_interval = Some(600);
    let (mut persistent, _) = RawClient::connect_with(broker.addr, connect.clone());
    subscribe_with(
        &mut persistent,
        &[("q/#", options(QoS::AtLeastOnce))],
        Some(5),
    );
    persistent.disconnect();
    publisher.publish("q/1", b"queued", QoS::AtLeastOnce, false);
    let (mut persistent, ack) = RawClient::connect_with(broker.addr, connect);
    assert!(ack.session_present);
    let publish = persistent.next_publish(WAIT).expect("the queued message");
    assert_eq!(identifiers(&publish), BTreeSet::from([5]));
}
