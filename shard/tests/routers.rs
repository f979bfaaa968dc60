//! Several shards' routers wired together in memory, driven through random interleavings of
//! connect / subscribe / unsubscribe / publish / disconnect / mesh delivery, as quinn-proto tests
//! two endpoints joined in memory. No glommio, no sockets, no clock: every mesh message waits in
//! a FIFO queue per (sender, receiver) pair until the test delivers it, in any order across pairs.
//!
//! Properties checked:
//! - every message published after a client saw its SUBACK (or the CONNACK that restored the
//!   subscription) reaches that client, if it is still connected once everything settled;
//! - one client id is connected once: when a connection sees its CONNACK, no other connection
//!   with that id is still open;
//! - a persistent session that moves between shards keeps every message it had queued (the
//!   test clients never acknowledge, so every QoS 1 message stays queued or in flight and is
//!   sent again to each new connection);
//! - a persistent session that moves while messages are on their way to its old place gets them
//!   too (the old place forwards until the move completes), and every forwarder ends;
//! - once settled, the shards' connection gauges match the connections the clients hold open;
//! - an offline session purged (as the admin API does: every shard asked) is gone: its id is
//!   released at its home shard, nothing more is queued for it, and the next connection with
//!   its id starts clean; a connected client is never purged;
//! - once settled, the home shards register exactly the ids that have a connection or an
//!   offline session, and the offline-session gauges count the latter;
//! - a shared subscription group with a member on every shard gets each message once, at one
//!   member, however the mesh interleaves, and a member that drops mid-stream hands what it
//!   held to the others (`shared_groups_deliver_each_message_to_one_member`).

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use hashbrown::{HashMap, HashSet};
use proptest::prelude::*;
use shardmq_codec::{
    topic, ByteStr, Decoder, Disconnect, Packet, PacketId, Properties, Protocol, Publish, QoS,
    ReasonCode, Subscribe, SubscribeFilter, SubscriptionOptions, Unsubscribe,
};
use shardmq_shard::control::Purge;
use shardmq_shard::mesh::{ConnId, ShardId, ShardMsg};
use shardmq_shard::router::{Handled, NewClient, Output, Router};
use shardmq_shard::stats::Stats;
use shardmq_shard::takeover::home_shard;
use shardmq_shard::ShardConfig;

const SHARDS: usize = 3;
const IDS: usize = 3;
const FILTERS: [&str; 5] = ["t/a", "t/+", "#", "t/b", "u/#"];
const TOPICS: [&str; 4] = ["t/a", "t/b", "u/x", "v"];

#[derive(Clone, Debug)]
enum Op {
    Connect {
        id: usize,
        shard: usize,
        persistent: bool,
        settle_first: bool,
    },
    Subscribe {
        id: usize,
        filter: usize,
        qos: u8,
    },
    Unsubscribe {
        id: usize,
        filter: usize,
    },
    Publish {
        id: usize,
        topic: usize,
        qos: u8,
    },
    Disconnect {
        id: usize,
        clean: bool,
    },
    Deliver {
        pick: usize,
    },
    Settle,
    Purge {
        id: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..IDS, 0..SHARDS, any::<bool>(), any::<bool>()).prop_map(
            |(id, shard, persistent, settle_first)| Op::Connect { id, shard, persistent, settle_first }
        ),
        3 => (0..IDS, 0..FILTERS.len(), 0..2u8)
            .prop_map(|(id, filter, qos)| Op::Subscribe { id, filter, qos }),
        1 => (0..IDS, 0..FILTERS.len()).prop_map(|(id, filter)| Op::Unsubscribe { id, filter }),
        4 => (0..IDS, 0..TOPICS.len(), 0..2u8)
            .prop_map(|(id, topic, qos)| Op::Publish { id, topic, qos }),
        1 => (0..IDS, any::<bool>()).prop_map(|(id, clean)| Op::Disconnect { id, clean }),
        8 => any::<usize>().prop_map(|pick| Op::Deliver { pick }),
        1 => Just(Op::Settle),
        1 => (0..IDS).prop_map(|id| Op::Purge { id }),
    ]
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum State {
    /// CONNECT handed to the router; no CONNACK yet.
    Connecting,
    /// Connected and idle.
    Online,
    /// A SUBSCRIBE waits for its SUBACK.
    Waiting,
    /// Closed (by the client or by the broker).
    Closed,
}

/// One test client's connection.
struct Conn {
    shard: usize,
    conn: ConnId,
    id: usize,
    state: State,
    decoder: Decoder,
    received: HashSet<u64>,
    /// Filter → the time the subscription was confirmed on this connection.
    acked: HashMap<usize, u64>,
    /// Filter and QoS of the SUBSCRIBE waiting for its SUBACK.
    subscribing: Option<(usize, u8)>,
    /// The broker must answer with Session Present.
    expect_present: bool,
    /// The broker answered with Session Present.
    present: bool,
    persistent: bool,
}

/// What the test knows of one client id's session across connections.
#[derive(Default)]
struct Identity_ {
    /// The connection the latest CONNECT opened.
    current: Option<usize>,
    /// Filters the session holds, with their granted QoS.
    subscriptions: HashMap<usize, u8>,
    /// Whether every move of this session was made after the mesh settled, so nothing it had
    /// queued can have been in flight.
    chain_intact: bool,
    /// QoS 1 messages the session must still hold.
    owed: Vec<u64>,
    persistent: bool,
    /// A persistent session of this id reached its CONNACK and no clean start came since: the
    /// next persistent connection must find it (Session Present).
    session_confirmed: bool,
}

struct Published {
    payload: u64,
    topic: usize,
    time: u64,
}

struct World {
    routers: Vec<Router>,
    stats: Vec<Rc<Stats>>,
    links: HashMap<(usize, usize), VecDeque<ShardMsg>>,
    conns: Vec<Conn>,
    by_conn: HashMap<(usize, ConnId), usize>,
    ids: Vec<Identity_>,
    next_conn: u64,
    next_packet: u16,
    time: u64,
    published: Vec<Published>,
}

impl World {
    fn new() -> Self {
        let config = Arc::new(ShardConfig {
            shards: SHARDS,
            ..ShardConfig::default()
        });
        let stats: Vec<Rc<Stats>> = (0..SHARDS).map(|_| Rc::new(Stats::default())).collect();
        Self {
            routers: (0..SHARDS)
                .map(|s| Router::new(ShardId(s), Arc::clone(&config), Rc::clone(&stats[s])))
                .collect(),
            stats,
            links: HashMap::new(),
            conns: Vec::new(),
            by_conn: HashMap::new(),
            ids: (0..IDS).map(|_| Identity_::default()).collect(),
            next_conn: 1,
            next_packet: 1,
            time: 0,
            published: Vec::new(),
        }
    }

    fn packet_id(&mut self) -> PacketId {
        self.next_packet = self.next_packet.wrapping_add(1).max(1);
        PacketId::new(self.next_packet).expect("non-zero")
    }

    /// The client id's current connection, if it is idle and online.
    fn online(&self, id: usize) -> Option<usize> {
        self.ids[id]
            .current
            .filter(|&h| self.conns[h].state == State::Online)
    }

    fn apply(&mut self, op: Op) {
        self.time += 1;
        match op {
            Op::Connect {
                id,
                shard,
                persistent,
                settle_first,
            } => self.connect(id, shard, persistent, settle_first),
            Op::Subscribe { id, filter, qos } => {
                if self.ids[id].subscriptions.contains_key(&filter) {
                    // A new QoS for a filter already held applies to messages still in flight
                    // towards it: settle first, as for an unsubscribe.
                    self.settle();
                }
                let Some(h) = self.online(id) else { return };
                let subscribe = Subscribe {
                    packet_id: self.packet_id(),
                    filters: vec![SubscribeFilter {
                        filter: ByteStr::from(FILTERS[filter]),
                        options: SubscriptionOptions {
                            qos: QoS::from_u8(qos).expect("0 or 1"),
                            ..SubscriptionOptions::default()
                        },
                    }],
                    properties: Properties::default(),
                };
                self.conns[h].subscribing = Some((filter, qos));
                self.conns[h].state = State::Waiting;
                self.packet(h, Packet::Subscribe(subscribe));
            }
            Op::Unsubscribe { id, filter } => {
                let Some(h) = self.online(id) else { return };
                // Messages already routed to this filter arrive before it goes: this test asserts
                // delivery, not how an unsubscribe races a publish.
                self.settle();
                if self.conns[h].state != State::Online {
                    return;
                }
                self.conns[h].acked.remove(&filter);
                self.ids[id].subscriptions.remove(&filter);
                let unsubscribe = Unsubscribe {
                    packet_id: self.packet_id(),
                    filters: vec![ByteStr::from(FILTERS[filter])],
                    properties: Properties::default(),
                };
                self.packet(h, Packet::Unsubscribe(unsubscribe));
            }
            Op::Publish { id, topic, qos } => {
                let Some(h) = self.online(id) else { return };
                let payload = self.time;
                let qos = QoS::from_u8(qos).expect("0 or 1");
                let publish = Publish {
                    qos,
                    topic: ByteStr::from(TOPICS[topic]),
                    packet_id: (qos != QoS::AtMostOnce).then(|| self.packet_id()),
                    payload: Bytes::from(payload.to_be_bytes().to_vec()),
                    ..Publish::default()
                };
                self.published.push(Published {
                    payload,
                    topic,
                    time: self.time,
                });
                if qos == QoS::AtLeastOnce {
                    self.owe(topic, payload);
                }
                self.packet(h, Packet::Publish(publish));
            }
            Op::Disconnect { id, clean } => {
                let Some(h) = self.online(id) else { return };
                if clean {
                    let disconnect = Disconnect {
                        code: ReasonCode::Success,
                        properties: Properties::default(),
                    };
                    self.packet(h, Packet::Disconnect(disconnect));
                } else {
                    self.close(h, true);
                }
            }
            Op::Deliver { pick } => {
                let busy: Vec<(usize, usize)> = {
                    let mut busy: Vec<_> = self
                        .links
                        .iter()
                        .filter(|(_, queue)| !queue.is_empty())
                        .map(|(link, _)| *link)
                        .collect();
                    busy.sort_unstable();
                    busy
                };
                if !busy.is_empty() {
                    let link = busy[pick % busy.len()];
                    self.deliver(link);
                }
            }
            Op::Settle => self.settle(),
            Op::Purge { id } => {
                self.purge(id);
            }
        }
    }

    /// The admin API purges client-`id`'s offline session: every shard is asked, as
    /// `BrokerHandle::purge_session` asks them, and the first answer that says more wins.
    fn purge(&mut self, id: usize) -> Purge {
        let client_id = format!("client-{id}");
        let mut outcomes = Vec::new();
        for shard in 0..SHARDS {
            outcomes.push(self.routers[shard].purge_session(&client_id));
            self.pump(shard);
        }
        let open = self
            .conns
            .iter()
            .any(|c| c.id == id && c.state != State::Closed);
        assert!(
            open || !outcomes.contains(&Purge::Connected),
            "client-{id} has no connection, yet it is connected: {outcomes:?}"
        );
        assert!(
            outcomes.iter().filter(|o| **o == Purge::Purged).count() <= 1,
            "one offline session per id: {outcomes:?}"
        );
        if !outcomes.contains(&Purge::Purged) {
            return if outcomes.contains(&Purge::Connected) {
                Purge::Connected
            } else {
                Purge::Unknown
            };
        }
        // The session is gone: whatever connects next with this id starts clean.
        let identity = &mut self.ids[id];
        identity.session_confirmed = false;
        identity.subscriptions.clear();
        identity.owed.clear();
        identity.chain_intact = true;
        for conn in self.conns.iter_mut().filter(|c| c.id == id) {
            conn.expect_present = false;
        }
        Purge::Purged
    }

    /// Records that every intact persistent session subscribed to `topic` now owes `payload`.
    fn owe(&mut self, topic: usize, payload: u64) {
        for identity in &mut self.ids {
            if identity.current.is_none() || !identity.persistent {
                continue;
            }
            // QoS 0 subscriptions are not queued for an offline session.
            let subscribed = identity
                .subscriptions
                .iter()
                .any(|(&f, &qos)| qos > 0 && topic::matches(TOPICS[topic], FILTERS[f]));
            if identity.chain_intact && subscribed {
                identity.owed.push(payload);
            }
        }
    }

    fn connect(&mut self, id: usize, shard: usize, persistent: bool, settle_first: bool) {
        if settle_first {
            self.settle();
        }
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let identity = &mut self.ids[id];
        let resumes = persistent && identity.persistent;
        // Claims of racing connections reach the home shard in any order: expect Session Present
        // only of a connection that had the id to itself.
        let racing = self
            .conns
            .iter()
            .any(|c| c.id == id && c.state == State::Connecting);
        for conn in self.conns.iter_mut().filter(|c| c.id == id) {
            conn.expect_present = false;
        }
        let identity = &mut self.ids[id];
        let expect_present = persistent && identity.session_confirmed && !racing;
        if !persistent {
            identity.session_confirmed = false;
        }
        identity.chain_intact = if resumes {
            identity.chain_intact
        } else {
            identity.owed.clear();
            true
        };
        identity.persistent = persistent;
        let h = self.conns.len();
        self.conns.push(Conn {
            shard,
            conn,
            id,
            state: State::Connecting,
            decoder: Decoder::with_protocol(1 << 20, Protocol::V311),
            received: HashSet::new(),
            acked: HashMap::new(),
            subscribing: None,
            expect_present,
            present: false,
            persistent,
        });
        self.by_conn.insert((shard, conn), h);
        self.ids[id].current = Some(h);
        let client_id = ByteStr::from(format!("client-{id}"));
        self.routers[shard]
            .connect(
                conn,
                NewClient::plain(client_id, Protocol::V311, persistent),
            )
            .expect("no will to refuse");
        self.pump(shard);
    }

    /// A packet from connection `h`, as its connection task would hand it over.
    fn packet(&mut self, h: usize, packet: Packet) {
        let (shard, conn) = (self.conns[h].shard, self.conns[h].conn);
        match self.routers[shard].handle_packet(conn, packet) {
            Ok(Handled::Done | Handled::Wait) => {}
            Ok(Handled::FanOut(fanout)) => self.routers[shard].deliver(&fanout, 0..fanout.len()),
            Ok(Handled::Disconnect { .. }) => {
                self.pump(shard);
                self.close(h, false);
                return;
            }
            Err(code) => panic!("valid packet refused: {code:?}"),
        }
        self.pump(shard);
    }

    /// Connection `h` ends, as the connection task's teardown does.
    fn close(&mut self, h: usize, abnormal: bool) {
        let (shard, conn) = (self.conns[h].shard, self.conns[h].conn);
        if self.conns[h].state == State::Closed {
            return;
        }
        self.conns[h].state = State::Closed;
        if abnormal {
            if let Some(fanout) = self.routers[shard].publish_will(conn, Instant::now()) {
                self.routers[shard].deliver(&fanout, 0..fanout.len());
            }
        }
        self.routers[shard].disconnected(conn, Instant::now());
        let identity = &mut self.ids[self.conns[h].id];
        if identity.current == Some(h) && !identity.persistent {
            identity.subscriptions.clear();
        }
        self.pump(shard);
    }

    fn deliver(&mut self, link: (usize, usize)) {
        let Some(msg) = self.links.get_mut(&link).and_then(VecDeque::pop_front) else {
            return;
        };
        let to = link.1;
        if let Some(fanout) = self.routers[to].handle_mesh(msg) {
            self.routers[to].deliver(&fanout, 0..fanout.len());
        }
        self.pump(to);
    }

    fn settle(&mut self) {
        for _ in 0..1_000_000 {
            let Some(link) = self
                .links
                .iter()
                .find(|(_, queue)| !queue.is_empty())
                .map(|(link, _)| *link)
            else {
                return;
            };
            self.deliver(link);
        }
        panic!("the mesh never settled");
    }

    /// Carries out router `shard`'s outputs and reads what its clients were sent.
    fn pump(&mut self, shard: usize) {
        let mut outputs = Vec::new();
        self.routers[shard].drain_outputs(&mut outputs);
        for output in outputs {
            match output {
                Output::Transmit(to, msg) => {
                    self.links.entry((shard, to.0)).or_default().push_back(msg)
                }
                Output::Flush(_) => {}
                Output::Retained(batch) => {
                    self.routers[shard].deliver_retained(&batch, 0..batch.len());
                }
                Output::Close(conn, _) => {
                    let h = self.by_conn[&(shard, conn)];
                    self.read(h);
                    self.close(h, false);
                }
                Output::Ready(conn) => {
                    let h = self.by_conn[&(shard, conn)];
                    self.read(h);
                    if self.conns[h].state == State::Connecting
                        && !self.routers[shard].is_online(conn)
                    {
                        // Taken over before its CONNACK: the connection task gives up.
                        self.close(h, false);
                    }
                }
            }
        }
        let open: Vec<usize> = self
            .by_conn
            .iter()
            .filter(|((s, _), &h)| *s == shard && self.conns[h].state != State::Closed)
            .map(|(_, &h)| h)
            .collect();
        for h in open {
            self.read(h);
        }
    }

    /// Decodes what connection `h` was sent.
    fn read(&mut self, h: usize) {
        let (shard, conn) = (self.conns[h].shard, self.conns[h].conn);
        let mut chunks = Vec::new();
        match self.routers[shard].session_mut(conn) {
            Some(session) => session.poll_transmit(&mut chunks),
            None => return,
        }
        let mut buf = BytesMut::new();
        for chunk in chunks {
            buf.extend_from_slice(&chunk);
        }
        while let Some(packet) = self.conns[h]
            .decoder
            .decode(&mut buf)
            .expect("valid output")
        {
            self.receive(h, packet);
        }
        assert!(buf.is_empty(), "whole packets only");
    }

    fn receive(&mut self, h: usize, packet: Packet) {
        let id = self.conns[h].id;
        match packet {
            Packet::ConnAck(connack) => {
                assert_eq!(self.conns[h].state, State::Connecting);
                for (other, conn) in self.conns.iter().enumerate() {
                    assert!(
                        other == h
                            || conn.id != id
                            || matches!(conn.state, State::Closed | State::Connecting),
                        "client-{id} connected twice"
                    );
                }
                assert!(
                    connack.session_present || !self.conns[h].expect_present,
                    "client-{id}'s persistent session was not resumed"
                );
                self.conns[h].state = State::Online;
                self.conns[h].present = connack.session_present;
                let identity = &mut self.ids[id];
                identity.session_confirmed = self.conns[h].persistent;
                if !connack.session_present {
                    identity.subscriptions.clear();
                    identity.owed.clear();
                    identity.chain_intact = true;
                }
                let now = self.time;
                let conn = &mut self.conns[h];
                conn.acked = identity.subscriptions.keys().map(|&f| (f, now)).collect();
            }
            Packet::SubAck(_) => {
                let conn = &mut self.conns[h];
                assert_eq!(conn.state, State::Waiting);
                conn.state = State::Online;
                let (filter, qos) = conn.subscribing.take().expect("a SUBSCRIBE was sent");
                // The shared group's subscription is checked by its own test, not tracked here.
                if filter < FILTERS.len() {
                    conn.acked.insert(filter, self.time);
                    self.ids[id].subscriptions.insert(filter, qos);
                }
            }
            Packet::Publish(publish) => {
                assert_ne!(
                    self.conns[h].state,
                    State::Connecting,
                    "PUBLISH before CONNACK [MQTT-3.2.0-1]"
                );
                let payload = u64::from_be_bytes(publish.payload[..].try_into().expect("8 bytes"));
                self.conns[h].received.insert(payload);
            }
            Packet::UnsubAck(_) | Packet::PubAck(_) => {}
            other => panic!("unexpected packet to a client: {other:?}"),
        }
    }

    fn check(&mut self) {
        self.settle();
        for conn in self.conns.iter().filter(|c| c.state == State::Online) {
            for message in &self.published {
                let subscribed = conn.acked.iter().any(|(&f, &since)| {
                    since < message.time && topic::matches(TOPICS[message.topic], FILTERS[f])
                });
                assert!(
                    !subscribed || conn.received.contains(&message.payload),
                    "client-{} missed message {} on {}",
                    conn.id,
                    message.payload,
                    TOPICS[message.topic]
                );
            }
        }
        for (id, identity) in self.ids.iter().enumerate() {
            let Some(h) = identity.current else { continue };
            let conn = &self.conns[h];
            if conn.state != State::Online || !identity.persistent || !identity.chain_intact {
                continue;
            }
            for payload in &identity.owed {
                assert!(
                    conn.received.contains(payload),
                    "client-{id}'s moved session lost message {payload}"
                );
            }
        }
        let open = self
            .conns
            .iter()
            .filter(|c| c.state != State::Closed)
            .count() as u64;
        let gauges: u64 = self.stats.iter().map(|s| s.connections.get()).sum();
        assert_eq!(gauges, open, "connection gauges match open connections");
        for router in &self.routers {
            assert_eq!(
                router.forwarding(),
                0,
                "every move completed and its forwarder ended"
            );
        }
        // An id is registered while a connection holds it or its persistent session waits
        // offline (its last connection was persistent and went online).
        let (mut held, mut offline) = (0, 0);
        for (id, identity) in self.ids.iter().enumerate() {
            let open = self
                .conns
                .iter()
                .any(|c| c.id == id && c.state != State::Closed);
            let waiting = !open && identity.persistent && identity.session_confirmed;
            held += usize::from(open || waiting);
            offline += u64::from(waiting);
        }
        let registered: usize = self.routers.iter().map(Router::registered).sum();
        assert_eq!(registered, held, "home shards register the ids held");
        let gauge: u64 = self.stats.iter().map(|s| s.sessions_offline.get()).sum();
        assert_eq!(gauge, offline, "offline sessions");
    }
}

proptest! {
    // 256 cases unless `PROPTEST_CASES` asks for more (thousands while changing the router).
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn routers_keep_their_promises(ops in proptest::collection::vec(op(), 1..150)) {
        let mut world = World::new();
        for op in ops {
            world.apply(op);
        }
        world.check();
    }
}

/// Eight connections race for one id across shards; exactly the last survives with the session.
#[test]
fn racing_connects_leave_one_owner_with_the_session() {
    let mut world = World::new();
    world.apply(Op::Connect {
        id: 0,
        shard: 0,
        persistent: true,
        settle_first: true,
    });
    world.settle();
    world.apply(Op::Subscribe {
        id: 0,
        filter: 0,
        qos: 1,
    });
    world.settle();
    world.apply(Op::Disconnect { id: 0, clean: true });
    world.apply(Op::Connect {
        id: 1,
        shard: 1,
        persistent: false,
        settle_first: true,
    });
    world.settle();
    for _ in 0..5 {
        world.apply(Op::Publish {
            id: 1,
            topic: 0,
            qos: 1,
        });
    }
    world.settle();
    for n in 0..8 {
        world.apply(Op::Connect {
            id: 0,
            shard: n % SHARDS,
            persistent: true,
            settle_first: false,
        });
    }
    world.settle();
    let open: Vec<&Conn> = world
        .conns
        .iter()
        .filter(|c| c.id == 0 && c.state != State::Closed)
        .collect();
    assert_eq!(open.len(), 1, "one connection holds the id");
    assert_eq!(open[0].state, State::Online);
    assert_eq!(
        open[0].received.len(),
        5,
        "the queued messages followed the session"
    );
    world.check();
}

/// An offline session purged as the admin API purges it is gone on every shard: the gauges
/// drop, the id is released at its home shard (a peer of the session's shard here), no shard
/// routes its filters any more, and the next persistent connection with its id starts clean
/// with nothing queued. A connected client is not purged.
#[test]
fn a_purged_offline_session_is_gone_everywhere() {
    let mut world = World::new();
    let shard = (home_shard("client-0", SHARDS).0 + 1) % SHARDS;
    world.apply(Op::Connect {
        id: 0,
        shard,
        persistent: true,
        settle_first: true,
    });
    world.settle();
    world.apply(Op::Subscribe {
        id: 0,
        filter: 0,
        qos: 1,
    });
    world.settle();
    assert_eq!(world.purge(0), Purge::Connected);
    world.apply(Op::Disconnect { id: 0, clean: true });
    world.settle();
    let total = |world: &World, figure: fn(&Stats) -> u64| -> u64 {
        world.stats.iter().map(|s| figure(s)).sum()
    };
    assert_eq!(total(&world, |s| s.sessions_offline.get()), 1);
    assert_eq!(total(&world, |s| s.subscriptions.get()), 1);

    assert_eq!(world.purge(0), Purge::Purged);
    world.settle();
    assert_eq!(world.purge(0), Purge::Unknown, "nothing is left to purge");
    assert_eq!(total(&world, |s| s.sessions_offline.get()), 0);
    assert_eq!(total(&world, |s| s.subscriptions.get()), 0);
    assert_eq!(total(&world, |s| s.sessions_purged.get()), 1);
    let registered: usize = world.routers.iter().map(Router::registered).sum();
    assert_eq!(registered, 0, "the id was released at its home shard");

    // A publication to the purged session's filter goes to no shard and is queued nowhere.
    let publisher_shard = (shard + 1) % SHARDS;
    world.apply(Op::Connect {
        id: 1,
        shard: publisher_shard,
        persistent: false,
        settle_first: true,
    });
    world.settle();
    world.apply(Op::Publish {
        id: 1,
        topic: 0,
        qos: 1,
    });
    let routed = world
        .links
        .iter()
        .filter(|((from, _), _)| *from == publisher_shard)
        .flat_map(|(_, queue)| queue)
        .any(|msg| matches!(msg, ShardMsg::Publish(_)));
    assert!(!routed, "no route is left to the purged session's shard");
    world.settle();

    world.apply(Op::Connect {
        id: 0,
        shard,
        persistent: true,
        settle_first: true,
    });
    world.settle();
    let h = world.ids[0].current.expect("a connection");
    let conn = &world.conns[h];
    assert_eq!(conn.state, State::Online);
    assert!(!conn.present, "Session Present 0 after the purge");
    assert!(conn.received.is_empty(), "nothing was queued");
    world.check();
}

/// The shared group every member of `shared_groups_deliver_each_message_to_one_member` joins
/// (its index in `Conn::subscribing` is past `FILTERS`).
const SHARED: &str = "$share/g/t/+";

#[derive(Clone, Debug)]
enum SharedOp {
    Publish { from: usize },
    Deliver { pick: usize },
    Drop { member: usize },
    Settle,
}

fn shared_op() -> impl Strategy<Value = SharedOp> {
    prop_oneof![
        4 => (0..IDS).prop_map(|from| SharedOp::Publish { from }),
        6 => any::<usize>().prop_map(|pick| SharedOp::Deliver { pick }),
        1 => (0..IDS).prop_map(|member| SharedOp::Drop { member }),
        1 => Just(SharedOp::Settle),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    /// One member on each shard, each also publishing to the group's topic at QoS 1, while mesh
    /// messages are delivered in any order; one member may drop abruptly mid-stream (its
    /// unacknowledged messages go back to the group: the test clients acknowledge nothing).
    /// Once settled, the members still connected have received every message exactly once
    /// between them.
    #[test]
    fn shared_groups_deliver_each_message_to_one_member(ops in proptest::collection::vec(shared_op(), 1..80)) {
        let mut world = World::new();
        for member in 0..IDS {
            world.apply(Op::Connect { id: member, shard: member % SHARDS, persistent: false, settle_first: true });
            world.settle();
            let h = world.ids[member].current.expect("connected");
            let subscribe = Subscribe {
                packet_id: world.packet_id(),
                filters: vec![SubscribeFilter {
                    filter: ByteStr::from(SHARED),
                    options: SubscriptionOptions { qos: QoS::AtLeastOnce, ..SubscriptionOptions::default() },
                }],
                properties: Properties::default(),
            };
            world.conns[h].subscribing = Some((FILTERS.len(), 1));
            world.conns[h].state = State::Waiting;
            world.packet(h, Packet::Subscribe(subscribe));
            world.settle();
            prop_assert_eq!(world.conns[h].state, State::Online, "SUBACK received");
        }
        let mut dropped = None;
        for op in ops {
            match op {
                SharedOp::Publish { from } => {
                    if Some(from) != dropped {
                        world.apply(Op::Publish { id: from, topic: 0, qos: 1 });
                    }
                }
                SharedOp::Deliver { pick } => world.apply(Op::Deliver { pick }),
                SharedOp::Drop { member } => {
                    if dropped.is_none() {
                        dropped = Some(member);
                        world.apply(Op::Disconnect { id: member, clean: false });
                    }
                }
                SharedOp::Settle => world.settle(),
            }
        }
        world.settle();
        let mut receipts: HashMap<u64, usize> = HashMap::new();
        for conn in world.conns.iter().filter(|c| c.state == State::Online) {
            for payload in &conn.received {
                *receipts.entry(*payload).or_default() += 1;
            }
        }
        for message in &world.published {
            prop_assert_eq!(
                receipts.get(&message.payload).copied().unwrap_or(0),
                1,
                "message {} reached the connected members once",
                message.payload
            );
        }
        let no_member: u64 = world.stats.iter().map(|s| s.dropped_no_member.get()).sum();
        prop_assert_eq!(no_member, 0);
    }
}
