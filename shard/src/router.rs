//! One shard's routing core, sans I/O: clients and their sessions, the local subscription trie,
//! the replicated route table, the retained index, and the inter-shard protocols (route add/ack,
//! client-id claim/takeover/handover/release).
//!
//! A [`Router`] never touches a socket, a ring, a task or a clock, like [`Session`] and like
//! quinn-proto's `Endpoint`. Inputs are method calls: a new client ([`Router::connect`]), a packet
//! from a connected client ([`Router::handle_packet`]), a message from a peer shard
//! ([`Router::handle_mesh`]), a command from outside ([`Router::kick`],
//! [`Router::purge_session`], [`Router::update_acls`]...). Outputs are [`Output`]s the driver
//! drains after each input ([`Router::drain_outputs`]): messages for peer shards, clients whose
//! session has bytes to send, connections to close, and clients whose pending CONNECT or
//! SUBSCRIBE completed. A publish returns its local deliveries as a [`FanOut`], which the driver
//! applies in slices ([`Router::deliver`]) so a fan-out to 100k subscribers yields to the
//! executor between slices.
//!
//! Routing (ARCHITECTURE.md, "One PUBLISH"): the local trie maps filters to this shard's
//! subscribers; the route table, replicated on every shard, maps filters to the shards that have
//! subscribers. A publish goes at most once to each interested shard, the message shared by
//! `Arc`. The first local subscriber to a filter sends `RouteAdd` to every peer (an
//! [`Announcement`]), and the SUBACK (or CONNACK, for restored and automatic subscriptions) waits
//! for every peer's `RouteAck`, so a message published anywhere after it is delivered. A second
//! subscriber to the same filter while the announcement is still unacknowledged waits for the
//! same acknowledgements: the route it relies on is not in place before. The client-id protocol is in [`crate::takeover`].

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use shardmq_codec::{
    topic, ByteStr, ConnAck, LastWill, Packet, Properties, Protocol, Publish, QoS, ReasonCode,
    RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe,
};

use crate::acl::SessionAcl;
use crate::config::{Limits, ShardConfig};
use crate::control::{ClientDetails, ClientFilter, ClientInfo, Purge};
use crate::deadline::granted_keep_alive;
use crate::hot_topics::HotTopics;
use crate::mesh::{ConnId, Owner, Routed, ShardId, ShardMsg, ShardSet};
use crate::retained::RetainedIndex;
use crate::session::{
    ClientLimits, Drops, Message, PublishVerdict, Returned, Session, Subscription, Via,
};
use crate::shared::{self, Counts, Group, GroupRoute, Groups, Member, Parsed, Pick, Rng, Strategy};
use crate::stats::Stats;
use crate::takeover::{home_shard, Handed, Registry, Step, TakeoverOutcome};
use crate::trie::Trie;
use tracing::info;

/// This shard's subscribers to one filter.
type Subscribers = HashMap<ConnId, Subscription>;

/// [`Target::identifier`] of a client matched by several subscriptions with identifiers: they
/// are in [`FanOut::identifiers`]. Above every valid identifier (at most 268,435,455).
const SEVERAL: u32 = u32::MAX;

/// The connection id the broker's own publications ($SYS) use as their origin.
pub const BROKER_CONN: ConnId = ConnId(0);

/// Who a client is, for listings and access control.
#[derive(Clone, Debug, Default)]
pub struct Identity {
    /// User name given at CONNECT.
    pub username: Option<ByteStr>,
    /// Remote address.
    pub peer: Option<SocketAddr>,
    /// Seconds since the Unix epoch when the connection was accepted.
    pub connected_since: u64,
}

/// A CONNECT the control core accepted: what the router needs to bring the client online.
#[derive(Debug)]
pub struct NewClient {
    /// Client id (assigned by the broker when the client sent none).
    pub client_id: ByteStr,
    /// Protocol level of the connection.
    pub protocol: Protocol,
    /// The client asked for a clean start.
    pub clean_start: bool,
    /// The session outlives the connection (3.1.1 clean session off, MQTT 5 session expiry).
    pub persistent: bool,
    /// MQTT 5 Session Expiry Interval of the CONNECT in seconds (absent: 0); `None` for MQTT 3.x,
    /// whose persistent sessions end by `persistent_client_expiration`.
    pub session_expiry: Option<u32>,
    /// The broker assigned the client id (MQTT 5 CONNACK says which).
    pub assigned: bool,
    /// MQTT 5 receive maximum of the client.
    pub receive_maximum: u16,
    /// MQTT 5 maximum packet size of the client (`u32::MAX` when it set none).
    pub maximum_packet_size: u32,
    /// Keep-alive the client asked for, in seconds.
    pub keep_alive: u16,
    /// Will message.
    pub will: Option<Box<LastWill>>,
    /// Who connected.
    pub identity: Identity,
    /// Access rules; `None` allows everything.
    pub acl: Option<Box<SessionAcl>>,
    /// Subscriptions made before the CONNACK, each still checked against `acl`.
    pub auto_subscribe: Vec<(String, QoS)>,
}

impl NewClient {
    /// A client with no will, no ACL (everything allowed) and no auto-subscriptions; a persistent
    /// one asks to resume its session (MQTT 3.1.1 clean session off).
    pub fn plain(client_id: ByteStr, protocol: Protocol, persistent: bool) -> Self {
        Self {
            client_id,
            protocol,
            clean_start: !persistent,
            persistent,
            session_expiry: (persistent && protocol.is_v5()).then_some(u32::MAX),
            assigned: false,
            receive_maximum: u16::MAX,
            maximum_packet_size: u32::MAX,
            keep_alive: 60,
            will: None,
            identity: Identity::default(),
            acl: None,
            auto_subscribe: Vec::new(),
        }
    }
}

/// What the router asks of the driver.
#[derive(Debug)]
pub enum Output {
    /// Send to a peer shard.
    Transmit(ShardId, ShardMsg),
    /// The client's session has bytes to send.
    Flush(ConnId),
    /// The connection must close, for this reason.
    Close(ConnId, CloseReason),
    /// The client's pending CONNECT (it is online now) or SUBSCRIBE completed.
    Ready(ConnId),
    /// Retained messages for a new subscription, too many to queue at once: deliver them in
    /// slices ([`Router::deliver_retained`]) as the client's outbox drains.
    Retained(RetainedBatch),
}

/// Why the broker closes a connection (the client's own ends are the connection task's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// A newer connection took over the client id.
    TakenOver,
    /// An operator disconnected the client.
    Kicked,
    /// The broker is shutting down.
    Shutdown,
    /// Writing to the client failed or timed out: it stopped reading, or vanished.
    WriteFailed,
}

/// Retained messages matching a new subscription, for one client.
#[derive(Debug)]
pub struct RetainedBatch {
    conn: ConnId,
    messages: Vec<(Arc<Message>, QoS)>,
}

impl RetainedBatch {
    /// The client.
    pub fn conn(&self) -> ConnId {
        self.conn
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// True when there is nothing to deliver.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

/// Messages a session moving between shards remembers to deliver once (see `Client::arrived`).
const MOVE_DEDUPE: usize = 65_536;

/// Retained messages queued with the SUBACK; more go out in slices of this size.
pub const RETAINED_SLICE: usize = 256;

/// What became of a packet.
#[derive(Debug)]
pub enum Handled {
    /// Done; replies, if any, are in the session.
    Done,
    /// The reply waits for peer shards: read nothing more until [`Output::Ready`].
    Wait,
    /// A publish to deliver to this shard's subscribers.
    FanOut(FanOut),
    /// The client disconnected cleanly.
    Disconnect {
        /// MQTT 5 "disconnect with will message".
        publish_will: bool,
    },
}

/// Local deliveries of one message, applied by [`Router::deliver`] in slices.
#[derive(Debug)]
pub struct FanOut {
    message: Arc<Message>,
    targets: Vec<Target>,
    /// The Subscription Identifiers of targets matched by several subscriptions with one.
    identifiers: Vec<(ConnId, Vec<u32>)>,
}

impl FanOut {
    /// Number of subscribers to deliver to.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// True when nobody here receives it.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

#[derive(Clone, Copy, Debug)]
struct Target {
    conn: ConnId,
    qos: QoS,
    retain: bool,
    /// The matching subscription's MQTT 5 Subscription Identifier: 0 none, [`SEVERAL`].
    identifier: u32,
}

/// What the delivery to `target` carries besides the message; `several` holds the identifiers
/// of targets marked [`SEVERAL`].
fn via_for(target: &Target, several: &[(ConnId, Vec<u32>)]) -> Option<Box<Via>> {
    match target.identifier {
        0 => None,
        SEVERAL => several
            .iter()
            .find(|(conn, _)| *conn == target.conn)
            .map(|(_, identifiers)| {
                Box::new(Via {
                    identifiers: identifiers.clone(),
                    shared: None,
                })
            }),
        identifier => Via::of(identifier, None),
    }
}

/// Where a client is in its life on this shard.
#[derive(Debug)]
enum Phase {
    /// CONNECT accepted; taking the id and restoring the session (see [`takeover`]).
    Connecting(Box<Handshake>),
    /// CONNACK sent; packets flow.
    Online,
    /// A persistent session with no connection.
    Offline,
}

/// What a connecting client keeps until its CONNACK.
#[derive(Debug)]
struct Handshake {
    step: Step,
    clean_start: bool,
    assigned: bool,
    receive_maximum: u16,
    maximum_packet_size: u32,
    keep_alive: u16,
    session_present: bool,
    /// The MQTT 5 Session Expiry Interval the CONNECT asked for, when the broker granted less:
    /// the CONNACK says what was granted.
    expiry_lowered: bool,
    auto_subscribe: Vec<(String, QoS)>,
    /// A newer connection claimed the id meanwhile: hand the session to it instead.
    superseded_by: Option<Owner>,
}

/// A SUBSCRIBE whose SUBACK waits for route acknowledgements.
#[derive(Debug)]
struct PendingSubAck {
    suback: SubAck,
    retained: Vec<(ByteStr, QoS)>,
}

/// A client on this shard.
#[derive(Debug)]
struct Client {
    client_id: ByteStr,
    /// The session ends with the connection.
    clean: bool,
    /// The CONNECT asked for a clean start (shown by the admin API).
    clean_start: bool,
    /// Keep-alive the CONNECT asked for, in seconds (shown by the admin API).
    keep_alive: u16,
    session: Session,
    will: Option<Box<LastWill>>,
    identity: Identity,
    acl: Option<Box<SessionAcl>>,
    phase: Phase,
    /// Route announcements the pending CONNECT or SUBSCRIBE still waits for.
    awaiting_acks: usize,
    pending_suback: Option<Box<PendingSubAck>>,
    /// MQTT 5 topic aliases the client set (they live as long as the connection).
    aliases: HashMap<u16, ByteStr>,
    /// When an offline session lost its connection (shown by the admin API).
    offline_since: Option<Instant>,
    /// MQTT 5: the Session Expiry Interval granted, in seconds (0xFFFFFFFF: never), changed by a
    /// DISCONNECT; `None` for MQTT 3.x.
    session_expiry: Option<u32>,
    /// MQTT 5: the CONNECT asked for a Session Expiry Interval of 0, which a DISCONNECT may not
    /// raise [MQTT-3.14.2-2].
    connected_without_expiry: bool,
    /// When the offline session ends (its Session Expiry Interval, or for MQTT 3.x
    /// `persistent_client_expiration`); `None` keeps it.
    expires_at: Option<Instant>,
    /// When the will held for the offline session is published (MQTT 5 Will Delay Interval); a
    /// new connection with the same client id first cancels it [MQTT-3.1.3-9].
    will_at: Option<Instant>,
    /// The session's drop total at the last [`Router::drop_reports`].
    reported_drops: u64,
    /// The forwarder at the session's previous place, until it says `ForwardEnd`: deliveries
    /// forwarded from it are this session's.
    upstream: Option<Owner>,
    /// While forwarded deliveries may come: the messages that arrived (by address; held, so an
    /// address is not reused meanwhile). A message routed both here and to the old place arrives
    /// twice, once forwarded; it is delivered once.
    arrived: Option<Box<HashMap<usize, Arc<Message>>>>,
    /// Requests the access rules refused since the connection began (see [`LOGGED_DENIALS`]).
    denials: u32,
}

/// Refused requests a connection logs one by one; later ones are only counted, and the count is
/// in its disconnection line, so a client cannot fill the log.
const LOGGED_DENIALS: u32 = 3;

/// Who a connection's client was, for its last log line.
#[derive(Debug, Clone)]
pub struct Departure {
    /// Client id.
    pub client_id: ByteStr,
    /// User name given at CONNECT.
    pub username: Option<ByteStr>,
    /// Remote address.
    pub peer: Option<SocketAddr>,
    /// Requests the access rules refused during the connection.
    pub denials: u32,
}

/// A filter's first local subscriber, announced to the peers (`RouteAdd`): the clients whose
/// SUBACK or CONNACK waits for the route to be in place everywhere.
#[derive(Debug)]
struct Announcement {
    filter: ByteStr,
    acks_left: usize,
    waiters: Vec<ConnId>,
}

/// What one delivery did to a client.
struct Delivered {
    /// What its session dropped.
    drops: Drops,
    /// Its outbox went from empty to not: the driver must send it.
    flush: bool,
}

/// A session that moved away (see [`Router::leave_forwarder`]): what still reaches this shard for
/// it is forwarded to its new owner until the move completes.
#[derive(Debug)]
struct Forward {
    to: Owner,
    /// Its filters, still in the local trie under the old connection id.
    filters: Vec<ByteStr>,
    /// The forwarder before this one, until it says `ForwardEnd`.
    upstream: Option<Owner>,
    /// After `Moved`: the peers whose `Drained` is still awaited.
    draining: Option<usize>,
}

impl Client {
    fn departure(&self) -> Departure {
        Departure {
            client_id: self.client_id.clone(),
            username: self.identity.username.clone(),
            peer: self.identity.peer,
            denials: self.denials,
        }
    }

    /// Counts a request the access rules refused, and logs the first few of each connection.
    fn denied(&mut self, action: &'static str, topic: &str) {
        self.denials = self.denials.saturating_add(1);
        if self.denials <= LOGGED_DENIALS {
            info!(
                client_id = %self.client_id,
                username = self.identity.username.as_deref().unwrap_or(""),
                address = ?self.identity.peer,
                action,
                topic,
                "denied by the access rules"
            );
        }
    }

    fn is_connected(&self) -> bool {
        !matches!(self.phase, Phase::Offline)
    }

    fn can_publish(&self, topic: &str) -> bool {
        self.acl.as_ref().is_none_or(|acl| acl.can_publish(topic))
    }

    fn can_subscribe(&self, filter: &str) -> bool {
        self.acl
            .as_ref()
            .is_none_or(|acl| acl.can_subscribe(filter))
    }

    fn can_receive(&self, topic: &str) -> bool {
        self.acl.as_ref().is_none_or(|acl| acl.can_receive(topic))
    }

    /// Hands a routed message to the session, once (see `arrived`); `None` if it already
    /// arrived by the other path of a move.
    /// `now` is the router's time, against which the session judges message expiry.
    fn deliver(
        &mut self,
        message: &Arc<Message>,
        qos: QoS,
        retain: bool,
        via: Option<Box<Via>>,
        now: Option<Instant>,
    ) -> Option<Delivered> {
        if self.arrived_before(message) {
            return None;
        }
        if let Some(now) = now {
            self.session.handle_time(now);
        }
        let before = self.session.pending_bytes();
        if self.session.handle_delivery_via(message, qos, retain, via) {
            self.remember_arrival(message);
        }
        Some(Delivered {
            drops: self.session.take_drops(),
            flush: before == 0 && self.session.pending_bytes() > 0,
        })
    }

    /// Whether `message` was already taken by this session while it moves (see `arrived`).
    fn arrived_before(&self, message: &Arc<Message>) -> bool {
        self.arrived
            .as_ref()
            .is_some_and(|arrived| arrived.contains_key(&(Arc::as_ptr(message) as usize)))
    }

    /// The session took `message`: while it moves, remember it (up to `MOVE_DEDUPE` messages).
    fn remember_arrival(&mut self, message: &Arc<Message>) {
        if self.upstream.is_none() {
            return;
        }
        let arrived = self.arrived.get_or_insert_with(Default::default);
        if arrived.len() < MOVE_DEDUPE {
            arrived.insert(Arc::as_ptr(message) as usize, Arc::clone(message));
        }
    }

    /// The will as a message to publish, if the client's rules (which may have changed since
    /// its CONNECT) still let it publish there; counted.
    fn take_will(&mut self, stats: &Stats, now: Option<Instant>) -> Option<Arc<Message>> {
        self.will_at = None;
        let will = self.will.take()?;
        if !self.can_publish(&will.topic) {
            Stats::add(&stats.dropped_denied, 1);
            return None;
        }
        let will = *will;
        let mut properties = will.properties;
        if properties.will_delay_interval.is_some() {
            properties.will_delay_interval = None;
        }
        Stats::add(&stats.wills_published, 1);
        Some(Arc::new(Message {
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            retain: will.retain,
            expires_at: expiry_from(&properties, now),
            properties,
        }))
    }

    fn connecting(&mut self) -> Option<&mut Handshake> {
        match &mut self.phase {
            Phase::Connecting(handshake) => Some(handshake),
            _ => None,
        }
    }
}

/// One shard's routing core: see the module doc.
#[derive(Debug)]
pub struct Router {
    id: ShardId,
    config: Arc<ShardConfig>,
    stats: Rc<Stats>,
    hot_topics: HotTopics,
    /// Boxed: a client is a few hundred bytes, and a table of them inline would keep up to as
    /// much again in spare capacity per connection.
    clients: HashMap<ConnId, Box<Client>>,
    /// Client id → its connection (or offline session) on this shard.
    by_client_id: HashMap<ByteStr, ConnId>,
    subscriptions: Trie<Subscribers>,
    routes: Trie<ShardSet>,
    /// Shared subscription groups: this shard's members, by filter and share name.
    groups: Trie<Groups<Group>>,
    /// Shared subscription groups everywhere: each shard's member counts, by filter and share
    /// name (replicated like `routes`).
    group_routes: Trie<Groups<GroupRoute>>,
    /// For the `random` strategy.
    rng: Rng,
    retained: RetainedIndex<Arc<Message>>,
    registry: Registry,
    /// Payload bytes of the retained messages.
    retained_bytes: usize,
    /// Sessions that moved away, by their old connection id here.
    forwards: HashMap<ConnId, Forward>,
    /// Route announcements still waiting for peers' acknowledgements, by token.
    announcements: HashMap<u64, Announcement>,
    /// The token of the unacknowledged announcement of each filter.
    announcing: HashMap<ByteStr, u64>,
    next_announcement: u64,
    /// Drops of sessions that ended before the sweep reported them.
    final_drop_reports: Vec<(ByteStr, Option<ByteStr>, u64)>,
    /// Connections closed by a takeover whose tasks have not ended yet: who they were.
    departed: HashMap<ConnId, Departure>,
    /// Deadlines of offline sessions (`expires_at`, `will_at`), earliest first. An entry whose
    /// client moved, reconnected or ended is stale and skipped when it comes due; the heap is
    /// rebuilt when stale entries outnumber the live ones.
    timers: BinaryHeap<Reverse<(Instant, ConnId)>>,
    /// Wills of sessions that ended, published by the next [`Router::handle_timeout`].
    wills_due: Vec<(Arc<Message>, Owner)>,
    /// The latest time an input carried ([`Router::advance`]): message expiry is counted from
    /// it, and sessions judge expiry by it. `None` before the first.
    now: Option<Instant>,
    outputs: Vec<Output>,
}

impl Router {
    /// An empty router for shard `id`, counting into `stats`.
    pub fn new(id: ShardId, config: Arc<ShardConfig>, stats: Rc<Stats>) -> Self {
        Self {
            id,
            hot_topics: HotTopics::new(config.hot_topics_max),
            config,
            stats,
            clients: HashMap::new(),
            by_client_id: HashMap::new(),
            subscriptions: Trie::new(),
            routes: Trie::new(),
            groups: Trie::new(),
            group_routes: Trie::new(),
            rng: Rng::new(0x9e37_79b9_7f4a_7c15 ^ id.0 as u64),
            retained: RetainedIndex::new(),
            registry: Registry::default(),
            retained_bytes: 0,
            forwards: HashMap::new(),
            announcements: HashMap::new(),
            announcing: HashMap::new(),
            next_announcement: 0,
            departed: HashMap::new(),
            final_drop_reports: Vec::new(),
            timers: BinaryHeap::new(),
            wills_due: Vec::new(),
            now: None,
            outputs: Vec::new(),
        }
    }

    /// The time is `now`: the inputs that follow happen then. The router reads no clock; the
    /// connection task advances it before each packet, and the shard's timer at least every
    /// tick (so a delivery that came through the mesh is judged at most a tick late).
    pub fn advance(&mut self, now: Instant) {
        self.now = Some(self.now.map_or(now, |before| before.max(now)));
    }

    /// This shard's id.
    pub fn id(&self) -> ShardId {
        self.id
    }

    /// The counters this router writes.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Per-topic counts for the hot-topic statistics.
    pub fn hot_topics_mut(&mut self) -> &mut HotTopics {
        &mut self.hot_topics
    }

    /// Moves the outputs produced so far into `into`, in order.
    pub fn drain_outputs(&mut self, into: &mut Vec<Output>) {
        into.append(&mut self.outputs);
    }

    /// The session of `conn`, if it is here.
    pub fn session_mut(&mut self, conn: ConnId) -> Option<&mut Session> {
        self.clients
            .get_mut(&conn)
            .map(|client| &mut client.session)
    }

    /// Whether `conn` is still registered here (not taken over).
    pub fn owns(&self, conn: ConnId) -> bool {
        self.clients.contains_key(&conn)
    }

    /// Sessions that moved away and are still forwarded from here.
    pub fn forwarding(&self) -> usize {
        self.forwards.len()
    }

    /// Client ids whose home is this shard that have an owner: a connection, or an offline
    /// session, somewhere.
    pub fn registered(&self) -> usize {
        self.registry.len()
    }

    /// Whether `conn` is online (its CONNACK sent).
    pub fn is_online(&self, conn: ConnId) -> bool {
        self.clients
            .get(&conn)
            .is_some_and(|client| matches!(client.phase, Phase::Online))
    }

    fn peers(&self) -> impl Iterator<Item = ShardId> {
        let me = self.id;
        (0..self.config.shards)
            .map(ShardId)
            .filter(move |s| *s != me)
    }

    fn transmit(&mut self, to: ShardId, msg: ShardMsg) {
        self.outputs.push(Output::Transmit(to, msg));
    }

    fn flush_if_pending(&mut self, conn: ConnId) {
        if self
            .clients
            .get(&conn)
            .is_some_and(|client| client.session.pending_bytes() > 0)
        {
            self.outputs.push(Output::Flush(conn));
        }
    }

    // ----- clients ---------------------------------------------------------------------------

    /// Whether a CONNECT is within the limits on identifiers, checked before the control core is
    /// asked: a client id or user name over its maximum length is refused.
    pub fn admissible(&self, new: &NewClient) -> Result<(), ReasonCode> {
        let limits = &self.config.limits;
        let refusal = if new.client_id.len() > limits.max_client_id_length {
            ReasonCode::ClientIdentifierNotValid
        } else if new
            .identity
            .username
            .as_ref()
            .is_some_and(|name| name.len() > limits.max_username_length)
        {
            ReasonCode::BadUserNameOrPassword
        } else {
            return Ok(());
        };
        Stats::add(&self.stats.limit_identifier, 1);
        Err(refusal)
    }

    /// A client whose CONNECT the control core accepted: claims its id and, once the previous
    /// owner (if any) handed its session over and every subscription is routed, sends CONNACK and
    /// outputs [`Output::Ready`] (or [`Output::Close`] if a newer connection took the id first).
    ///
    /// Refuses (registering nothing) a will whose topic the client may not publish to: a will is
    /// a publication, and a client must not be able to publish through its disconnection what
    /// it could not publish itself.
    pub fn connect(&mut self, conn: ConnId, new: NewClient) -> Result<(), ReasonCode> {
        if let Some(will) = &new.will {
            let allowed = new
                .acl
                .as_ref()
                .is_none_or(|acl| acl.can_publish(&will.topic));
            if !allowed {
                Stats::add(&self.stats.dropped_denied, 1);
                return Err(ReasonCode::NotAuthorized);
            }
        }
        let session = Session::connecting(
            new.client_id.clone(),
            new.identity.username.clone(),
            new.protocol,
            self.config.session,
        );
        // MQTT 5: the broker grants at most `max_session_expiry` [MQTT-3.2.2-3 ff.]; a session
        // granted 0 ends with its connection.
        let session_expiry = new
            .session_expiry
            .map(|asked| asked.min(self.config.limits.max_session_expiry));
        let client = Client {
            client_id: new.client_id.clone(),
            clean: !new.persistent || session_expiry == Some(0),
            clean_start: new.clean_start,
            keep_alive: new.keep_alive,
            session,
            will: new.will,
            identity: new.identity,
            acl: new.acl,
            phase: Phase::Connecting(Box::new(Handshake {
                step: Step::Claiming,
                clean_start: new.clean_start,
                assigned: new.assigned,
                receive_maximum: new.receive_maximum,
                maximum_packet_size: new.maximum_packet_size,
                keep_alive: new.keep_alive,
                session_present: false,
                expiry_lowered: session_expiry != new.session_expiry,
                auto_subscribe: new.auto_subscribe,
                superseded_by: None,
            })),
            awaiting_acks: 0,
            pending_suback: None,
            aliases: HashMap::new(),
            offline_since: None,
            session_expiry,
            connected_without_expiry: new.session_expiry == Some(0),
            expires_at: None,
            will_at: None,
            reported_drops: 0,
            upstream: None,
            arrived: None,
            denials: 0,
        };
        self.clients.insert(conn, Box::new(client));
        self.by_client_id.insert(new.client_id.clone(), conn);
        Stats::add(&self.stats.connections, 1);
        Stats::add(&self.stats.connections_total, 1);
        let me = self.owner(conn);
        let home = home_shard(&new.client_id, self.config.shards);
        if home == self.id {
            let previous = self.registry.claim(&new.client_id, me);
            self.claimed(conn, previous);
        } else {
            self.transmit(
                home,
                ShardMsg::Claim {
                    client_id: new.client_id,
                    claimant: me,
                },
            );
        }
        Ok(())
    }

    fn owner(&self, conn: ConnId) -> Owner {
        Owner {
            shard: self.id,
            conn,
        }
    }

    /// The home shard answered the claim of `conn`.
    fn claimed(&mut self, conn: ConnId, previous: Option<Owner>) {
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        let Some(handshake) = client.connecting() else {
            return;
        };
        let clean_start = handshake.clean_start;
        match previous {
            None => self.session_arrived(conn, Handed::nothing()),
            Some(previous) if previous.shard == self.id => {
                handshake.step = Step::AwaitingHandover;
                let by = self.owner(conn);
                if let TakeoverOutcome::HandOver(handed) =
                    self.take_over(previous.conn, by, clean_start)
                {
                    self.session_arrived(conn, handed);
                }
            }
            Some(previous) => {
                handshake.step = Step::AwaitingHandover;
                let by = self.owner(conn);
                self.transmit(
                    previous.shard,
                    ShardMsg::Takeover {
                        previous: previous.conn,
                        by,
                        clean_start,
                    },
                );
            }
        }
    }

    /// Takes over `previous` on this shard on behalf of `by`.
    fn take_over(
        &mut self,
        previous: ConnId,
        by: Owner,
        clean_start: bool,
    ) -> TakeoverOutcome<Box<Session>> {
        let Some(client) = self.clients.get_mut(&previous) else {
            return TakeoverOutcome::HandOver(Handed::nothing());
        };
        if let Some(handshake) = client.connecting() {
            handshake.superseded_by = Some(by);
            return TakeoverOutcome::Deferred;
        }
        let client = self.remove_client(previous);
        Stats::add(&self.stats.takeovers, 1);
        match client.phase {
            Phase::Offline => Stats::sub(&self.stats.sessions_offline, 1),
            _ => self.close_taken_over(previous, &client),
        }
        if client.clean || clean_start {
            self.drop_subscriptions(previous, &client.session);
            if let Some(upstream) = client.upstream {
                self.send_moved(upstream);
            }
            return TakeoverOutcome::HandOver(Handed::nothing());
        }
        TakeoverOutcome::HandOver(self.leave_forwarder(previous, client, by))
    }

    /// `conn` leaves with its session for `to`: its subscriptions stay in the trie (and so the
    /// routes to this shard) as a forwarder until `to` is online with routes of its own, so a
    /// message published while the session moves reaches it here and is forwarded.
    fn leave_forwarder(
        &mut self,
        conn: ConnId,
        mut client: Box<Client>,
        to: Owner,
    ) -> Handed<Box<Session>> {
        let filters = client.session.subscriptions().keys().cloned().collect();
        self.forwards.insert(
            conn,
            Forward {
                to,
                filters,
                upstream: client.upstream,
                draining: None,
            },
        );
        Handed {
            session: Some(Box::new(client.session.take_state())),
            forwarder: Some(self.owner(conn)),
        }
    }

    fn hand_over(&mut self, to: Owner, handed: Handed<Box<Session>>) {
        if to.shard == self.id {
            self.session_arrived(to.conn, handed);
        } else {
            self.transmit(
                to.shard,
                ShardMsg::Handover {
                    conn: to.conn,
                    session: handed.session,
                    forwarder: handed.forwarder,
                },
            );
        }
    }

    /// The session to resume (if any) reached the connecting client `conn`.
    fn session_arrived(&mut self, conn: ConnId, handed: Handed<Box<Session>>) {
        let Some(client) = self.clients.get_mut(&conn) else {
            if let Some(forwarder) = handed.forwarder {
                self.send_moved(forwarder);
            }
            return;
        };
        let Phase::Connecting(handshake) = &mut client.phase else {
            return;
        };
        if let Some(next) = handshake.superseded_by {
            // A newer connection claimed the id while this one was connecting: pass it on,
            // relaying what the forwarder (if any) still sends here.
            let client = self.remove_client(conn);
            self.close_taken_over(conn, &client);
            let forwarder = handed.forwarder.map(|upstream| {
                let relay = Forward {
                    to: next,
                    filters: Vec::new(),
                    upstream: Some(upstream),
                    draining: None,
                };
                self.forwards.insert(conn, relay);
                self.owner(conn)
            });
            let session = handed.session;
            self.hand_over(next, Handed { session, forwarder });
            return;
        }
        let session = handed.session;
        handshake.step = Step::Subscribing;
        let auto_subscribe = std::mem::take(&mut handshake.auto_subscribe);
        // A session belongs to the user who created it: another user's connection with the same
        // client id starts clean, as if it had asked to.
        let resumable = session.filter(|session| {
            !handshake.clean_start && session.owner() == client.identity.username.as_ref()
        });
        let unwanted_forwarder = handed.forwarder.filter(|_| resumable.is_none());
        if let Some(session) = resumable {
            // The broker had a session for this id and the client did not ask to start clean:
            // Session Present, whatever this connection's own expiry [MQTT-3.2.2-3].
            handshake.session_present = true;
            client.upstream = handed.forwarder;
            client.session = *session;
            client.session.handle_connecting();
            // What the session kept is checked against the rules of the connection resuming it.
            let acl = client.acl.as_deref();
            client.session.retain_allowed(
                |filter| acl.is_none_or(|acl| acl.can_subscribe(shared::topic_filter(filter))),
                |topic| acl.is_none_or(|acl| acl.can_receive(topic)),
            );
        }
        let mut filters: Vec<(ByteStr, Subscription)> = client
            .session
            .subscriptions()
            .iter()
            .map(|(filter, subscription)| (filter.clone(), *subscription))
            .collect();
        if let Some(forwarder) = unwanted_forwarder {
            // Not resumed (a clean start, or another user's session): nothing of it is wanted.
            self.send_moved(forwarder);
        }
        let Some(client) = self.clients.get(&conn) else {
            return;
        };
        // Auto-subscriptions are routed everywhere before the CONNACK, so nothing published
        // after it is missed; each is still subject to the ACL.
        for (filter, qos) in auto_subscribe {
            if topic::valid_filter(&filter) && client.can_subscribe(&filter) {
                let options = SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                };
                let subscription = Subscription {
                    options,
                    identifier: 0,
                };
                filters.push((ByteStr::copy_from_str(&filter), subscription));
            }
        }
        for (filter, subscription) in filters {
            self.subscribe(conn, filter, subscription);
        }
        self.maybe_complete(conn);
    }

    /// Completes what `conn` waits for once no route acknowledgement is outstanding.
    fn maybe_complete(&mut self, conn: ConnId) {
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        if client.awaiting_acks > 0 {
            return;
        }
        if let Some(pending) = client.pending_suback.take() {
            self.finish_subscribe(conn, *pending);
            self.outputs.push(Output::Ready(conn));
        } else if matches!(client.phase, Phase::Connecting(_)) {
            self.go_online(conn);
        }
    }

    /// Sends CONNACK, unless a newer connection superseded this one while it was connecting
    /// (then its session is handed on and the connection closed).
    fn go_online(&mut self, conn: ConnId) {
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        let Phase::Connecting(handshake) = std::mem::replace(&mut client.phase, Phase::Online)
        else {
            return;
        };
        if let Some(next) = handshake.superseded_by {
            let client = self.remove_client(conn);
            self.close_taken_over(conn, &client);
            let handed = if client.clean {
                self.drop_subscriptions(conn, &client.session);
                if let Some(upstream) = client.upstream {
                    self.send_moved(upstream);
                }
                Handed::nothing()
            } else {
                self.leave_forwarder(conn, client, next)
            };
            self.hand_over(next, handed);
            return;
        }
        if let Some(upstream) = client.upstream {
            // This session's routes are in place everywhere: the old place may stop forwarding.
            self.send_moved(upstream);
        }
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        let protocol = client.session.protocol();
        let mut properties = Properties::default();
        if protocol.is_v5() {
            if handshake.assigned {
                properties.assigned_client_identifier = Some(client.client_id.clone());
            }
            properties.topic_alias_maximum = Some(self.config.limits.max_topic_aliases);
            let granted =
                granted_keep_alive(handshake.keep_alive, self.config.limits.max_keepalive);
            if granted != handshake.keep_alive {
                properties.server_keep_alive = Some(granted);
            }
            properties.maximum_packet_size = u32::try_from(self.config.max_packet_size).ok();
            if handshake.expiry_lowered {
                properties.session_expiry_interval = client.session_expiry;
            }
            let receive_maximum = self.config.session.receive_maximum;
            // Absent means 65,535 (§3.2.2.3.3).
            properties.receive_maximum = (receive_maximum < u16::MAX).then_some(receive_maximum);
        }
        if let Some(now) = self.now {
            client.session.handle_time(now);
        }
        client.session.send(&Packet::ConnAck(ConnAck {
            session_present: handshake.session_present,
            code: ReasonCode::Success,
            properties,
        }));
        let limits = ClientLimits {
            receive_maximum: handshake.receive_maximum,
            maximum_packet_size: handshake.maximum_packet_size,
        };
        if handshake.session_present {
            client.session.handle_resumed(protocol, limits);
        } else {
            client.session.handle_connected(limits);
        }
        let drops = client.session.take_drops();
        self.count_drops(drops);
        self.outputs.push(Output::Flush(conn));
        self.outputs.push(Output::Ready(conn));
    }

    /// Closes the connection of a client a newer connection took the id from; what its last
    /// log line names stays until the connection task ends ([`Router::departure`]).
    fn close_taken_over(&mut self, conn: ConnId, client: &Client) {
        self.departed.insert(conn, client.departure());
        self.outputs
            .push(Output::Close(conn, CloseReason::TakenOver));
    }

    /// Who the client on `conn` was, for the connection's last log line; its count of denied
    /// requests starts again.
    pub fn departure(&mut self, conn: ConnId) -> Option<Departure> {
        if let Some(departure) = self.departed.remove(&conn) {
            return Some(departure);
        }
        let client = self.clients.get_mut(&conn)?;
        let departure = client.departure();
        client.denials = 0;
        Some(departure)
    }

    fn remove_client(&mut self, conn: ConnId) -> Box<Client> {
        let client = self
            .clients
            .remove(&conn)
            .expect("remove_client is called for a registered client");
        if self.by_client_id.get(&client.client_id) == Some(&conn) {
            self.by_client_id.remove(&client.client_id);
        }
        Stats::sub(&self.stats.connections, u64::from(client.is_connected()));
        client
    }

    /// The will of `conn`, published as the connection ends abnormally (or by MQTT 5 request) at
    /// `now`, if the client's rules (which may have changed since its CONNECT) still let it
    /// publish there.
    ///
    /// MQTT 5 Will Delay Interval: when the session outlives the connection, the will is held
    /// for the lesser of its delay and the session's expiry (`None` is returned); it is published
    /// by [`Router::handle_timeout`] when the delay has passed or the session ends, whichever
    /// comes first, and dropped if the client id connects again meanwhile [MQTT-3.1.3-9].
    pub fn publish_will(&mut self, conn: ConnId, now: Instant) -> Option<FanOut> {
        self.advance(now);
        let client = self.clients.get_mut(&conn)?;
        let delay = client.will.as_ref()?.properties.will_delay_interval;
        let delay = match (delay, client.session_expiry) {
            (Some(delay), Some(expiry)) if !client.clean => delay.min(expiry),
            _ => 0,
        };
        if delay > 0 && matches!(client.phase, Phase::Online) {
            if let Some(at) = now.checked_add(Duration::from_secs(delay.into())) {
                client.will_at = Some(at);
                self.timers.push(Reverse((at, conn)));
                return None;
            }
        }
        let message = client.take_will(&self.stats, self.now)?;
        self.publish(message, self.owner(conn))
    }

    /// The connection of `conn` ended at `now`. A clean session is discarded and the id
    /// released; a persistent one stays, offline, collecting messages for its next connection,
    /// until its Session Expiry Interval (MQTT 5) or `persistent_client_expiration` (MQTT 3.x)
    /// has passed, unless this shard already keeps its share of `max_offline_sessions`.
    pub fn disconnected(&mut self, conn: ConnId, now: Instant) {
        self.advance(now);
        let offline_cap = self
            .config
            .limits
            .max_offline_sessions
            .div_ceil(self.config.shards);
        let full = self.stats.sessions_offline.get() as usize >= offline_cap;
        self.departed.remove(&conn);
        let Some(client) = self.clients.get_mut(&conn) else {
            return; // taken over: the new owner has everything
        };
        if client.will_at.is_none() {
            client.will = None;
        }
        let keep = !client.clean && matches!(client.phase, Phase::Online);
        if keep && full {
            Stats::add(&self.stats.limit_offline_sessions, 1);
        }
        if keep && !full {
            client.phase = Phase::Offline;
            client.aliases = HashMap::new();
            client.offline_since = Some(now);
            client.expires_at = match client.session_expiry {
                Some(u32::MAX) => None,
                Some(seconds) => now.checked_add(Duration::from_secs(seconds.into())),
                None => self
                    .config
                    .limits
                    .persistent_client_expiration
                    .and_then(|expiration| now.checked_add(expiration)),
            };
            if let Some(at) = client.expires_at {
                self.timers.push(Reverse((at, conn)));
            }
            client.session.handle_disconnected();
            let returned = client.session.take_shared(false);
            let groups: Vec<ByteStr> = client
                .session
                .subscriptions()
                .keys()
                .filter(|filter| matches!(shared::parse(filter), Parsed::Shared { .. }))
                .cloned()
                .collect();
            Stats::sub(&self.stats.connections, 1);
            Stats::add(&self.stats.sessions_offline, 1);
            // Its groups count it offline now, and what it held goes to the others.
            for key in &groups {
                self.group_changed(key, None);
            }
            self.return_to_groups(returned, self.owner(conn));
        } else {
            self.end_session(conn);
        }
    }

    /// Removes `conn` and its session for good, releasing its client id. A will still held
    /// for the session is published now (by the next [`Router::handle_timeout`]): the session
    /// ended before its delay [MQTT-3.1.3-9].
    fn end_session(&mut self, conn: ConnId) {
        let mut client = self.remove_client(conn);
        let unreported = client.session.dropped_total() - client.reported_drops;
        if unreported > 0 {
            // Its drops are reported with the next sweep's, although the session is gone.
            self.final_drop_reports.push((
                client.client_id.clone(),
                client.identity.username.clone(),
                unreported,
            ));
        }
        if matches!(client.phase, Phase::Offline) {
            Stats::sub(&self.stats.sessions_offline, 1);
        }
        if client.will_at.is_some() {
            if let Some(will) = client.take_will(&self.stats, self.now) {
                self.wills_due.push((will, self.owner(conn)));
            }
        }
        if let Some(upstream) = client.upstream {
            self.send_moved(upstream);
        }
        let returned = client.session.take_shared(true);
        self.drop_subscriptions(conn, &client.session);
        let owner = self.owner(conn);
        self.return_to_groups(returned, owner);
        self.release(client.client_id, owner);
    }

    /// Ends the offline sessions whose expiry (MQTT 5 Session Expiry Interval, MQTT 3.x
    /// `persistent_client_expiration`) has come at `now`: their subscriptions and routes go and
    /// their client id is released. Wills whose delay has passed (or whose session ended) are
    /// made due. Returns how many sessions ended.
    pub fn expire_sessions(&mut self, now: Instant) -> usize {
        self.advance(now);
        let mut expired = 0;
        while let Some(&Reverse((at, conn))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(client) = self.clients.get_mut(&conn) else {
                continue; // stale: the session moved or ended
            };
            if !matches!(client.phase, Phase::Offline) {
                continue;
            }
            if client.will_at.is_some_and(|will_at| will_at <= now) {
                client.will_at = None;
                if let Some(will) = client.take_will(&self.stats, self.now) {
                    self.wills_due.push((will, self.owner(conn)));
                }
            }
            let Some(client) = self.clients.get(&conn) else {
                continue;
            };
            if client
                .expires_at
                .is_some_and(|expires_at| expires_at <= now)
            {
                self.end_session(conn);
                expired += 1;
            }
        }
        if self.timers.len() > 1024 && self.timers.len() > 2 * self.clients.len() {
            // Mostly stale (sessions resumed before their deadlines): keep the live ones.
            self.timers = self
                .clients
                .iter()
                .filter(|(_, client)| matches!(client.phase, Phase::Offline))
                .flat_map(|(conn, client)| {
                    [client.expires_at, client.will_at]
                        .into_iter()
                        .flatten()
                        .map(|at| Reverse((at, *conn)))
                })
                .collect();
        }
        Stats::add(&self.stats.sessions_expired, expired as u64);
        expired
    }

    /// The earliest deadline of an offline session or a held will, for the driver's timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// The time is `now`: ends expired sessions ([`Router::expire_sessions`]) and publishes the
    /// wills that are due. Returns the wills' local deliveries, for the driver to apply.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<FanOut> {
        self.advance(now);
        self.expire_sessions(now);
        let mut fanouts = Vec::new();
        for (will, origin) in std::mem::take(&mut self.wills_due) {
            if let Some(fanout) = self.publish(will, origin) {
                fanouts.push(fanout);
            }
        }
        fanouts
    }

    fn release(&mut self, client_id: ByteStr, owner: Owner) {
        let home = home_shard(&client_id, self.config.shards);
        if home == self.id {
            self.registry.release(&client_id, owner);
        } else {
            self.transmit(home, ShardMsg::Release { client_id, owner });
        }
    }

    // ----- packets from connected clients ----------------------------------------------------

    /// A packet from the online client `conn`. An error is a protocol violation: close the
    /// connection with that reason code.
    pub fn handle_packet(&mut self, conn: ConnId, packet: Packet) -> Result<Handled, ReasonCode> {
        let Some(client) = self.clients.get_mut(&conn) else {
            return Ok(Handled::Done);
        };
        if let Some(now) = self.now {
            client.session.handle_time(now);
        }
        let handled = match packet {
            Packet::Publish(publish) => return self.handle_publish(conn, publish),
            Packet::PubAck(ack) => {
                client.session.handle_puback(ack.packet_id);
                Handled::Done
            }
            Packet::PubRec(rec) => {
                client.session.handle_pubrec(&rec);
                Handled::Done
            }
            Packet::PubRel(rel) => {
                client.session.handle_pubrel(rel.packet_id);
                Handled::Done
            }
            Packet::PubComp(comp) => {
                client.session.handle_pubcomp(comp.packet_id);
                Handled::Done
            }
            Packet::Subscribe(subscribe) => {
                // No Local on a shared subscription is a Protocol Error [MQTT-3.8.3-4].
                let no_local_shared = subscribe.filters.iter().any(|request| {
                    request.options.no_local
                        && matches!(shared::parse(&request.filter), Parsed::Shared { .. })
                });
                if no_local_shared && client.session.protocol().is_v5() {
                    return Err(ReasonCode::ProtocolError);
                }
                self.handle_subscribe(conn, subscribe)
            }
            Packet::Unsubscribe(unsubscribe) => self.handle_unsubscribe(conn, unsubscribe),
            Packet::PingReq => {
                client.session.send(&Packet::PingResp);
                Handled::Done
            }
            Packet::Disconnect(disconnect) => {
                if let Some(expiry) = disconnect.properties.session_expiry_interval {
                    if client.session.protocol().is_v5() {
                        // A session that was to end with its connection cannot be made to
                        // outlive it now [MQTT-3.14.2-2].
                        if client.connected_without_expiry && expiry != 0 {
                            return Err(ReasonCode::ProtocolError);
                        }
                        let granted = expiry.min(self.config.limits.max_session_expiry);
                        client.session_expiry = Some(granted);
                        client.clean = granted == 0;
                    }
                }
                Handled::Disconnect {
                    publish_will: disconnect.code == ReasonCode::DisconnectWithWillMessage,
                }
            }
            // A second CONNECT is a protocol violation [MQTT-3.1.0-2]; server-to-client packets
            // and (without enhanced authentication) AUTH are too.
            Packet::Connect(_)
            | Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp
            | Packet::Auth(_) => return Err(ReasonCode::ProtocolError),
        };
        if let Some(client) = self.clients.get_mut(&conn) {
            // Acknowledgements release queued messages, some of which may have expired.
            let drops = client.session.take_drops();
            self.count_drops(drops);
        }
        self.flush_if_pending(conn);
        Ok(handled)
    }

    fn handle_publish(
        &mut self,
        conn: ConnId,
        mut publish: Publish,
    ) -> Result<Handled, ReasonCode> {
        let Some(client) = self.clients.get_mut(&conn) else {
            return Ok(Handled::Done);
        };
        // Properties are read before any write: writing allocates the property block.
        if let Some(alias) = publish.properties.topic_alias {
            publish.properties.topic_alias = None;
            // MQTT 5 topic alias (§3.3.2.3.4): a topic sets the alias, an empty topic uses it.
            if alias == 0 || alias > self.config.limits.max_topic_aliases {
                return Err(ReasonCode::TopicAliasInvalid);
            }
            if publish.topic.is_empty() {
                publish.topic = client
                    .aliases
                    .get(&alias)
                    .cloned()
                    .ok_or(ReasonCode::ProtocolError)?;
            } else {
                client
                    .aliases
                    .insert(alias, ByteStr::copy_from_str(&publish.topic));
            }
        }
        if publish.topic.is_empty() {
            return Err(ReasonCode::TopicNameInvalid);
        }
        let retained_fits =
            !publish.retain || self.retained_fits(&publish.topic, publish.payload.len());
        let Some(client) = self.clients.get_mut(&conn) else {
            return Ok(Handled::Done);
        };
        let refusal = if !within(&self.config.limits, &publish.topic) {
            Some((ReasonCode::TopicNameInvalid, &self.stats.limit_topic))
        } else if !client.can_publish(&publish.topic) {
            client.denied("publish", &publish.topic);
            Some((ReasonCode::NotAuthorized, &self.stats.dropped_denied))
        } else if !retained_fits {
            Some((ReasonCode::QuotaExceeded, &self.stats.limit_retained))
        } else {
            None
        };
        if let Some((code, counter)) = refusal {
            // 3.1.1 has no refusal: a QoS 1/2 publish is acknowledged and dropped; MQTT 5 says why.
            Stats::add(counter, 1);
            client.session.acknowledge_refused(&publish, code);
            self.flush_if_pending(conn);
            return Ok(Handled::Done);
        }
        let verdict = client
            .session
            .handle_publish(&publish)
            .map_err(|violation| violation.0)?;
        self.flush_if_pending(conn);
        if verdict == PublishVerdict::Duplicate {
            return Ok(Handled::Done);
        }
        let mut properties = std::mem::take(&mut publish.properties);
        if !properties.subscription_identifiers.is_empty() {
            properties.subscription_identifiers.clear();
        }
        let message = Arc::new(Message {
            topic: publish.topic,
            payload: publish.payload,
            qos: publish.qos,
            retain: publish.retain,
            expires_at: expiry_from(&properties, self.now),
            properties,
        });
        Ok(match self.publish(message, self.owner(conn)) {
            Some(fanout) => Handled::FanOut(fanout),
            None => Handled::Done,
        })
    }

    fn handle_subscribe(&mut self, conn: ConnId, subscribe: Subscribe) -> Handled {
        let Some(client) = self.clients.get(&conn) else {
            return Handled::Done;
        };
        let v5 = client.session.protocol().is_v5();
        // MQTT 3.1.1 has one failure code, 0x80.
        let refused = |code| {
            if v5 {
                code
            } else {
                ReasonCode::UnspecifiedError
            }
        };
        let config = Arc::clone(&self.config);
        let limits = &config.limits;
        // A SUBSCRIBE carries at most one Subscription Identifier, for all its filters.
        let identifier = subscribe
            .properties
            .subscription_identifiers
            .first()
            .copied()
            .filter(|_| v5)
            .unwrap_or(0);
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        let mut retained = Vec::new();
        // A filter repeated with the same options in one SUBSCRIBE is handled once.
        let mut seen: HashMap<(&str, SubscriptionOptions), ReasonCode> = HashMap::new();
        for (index, request) in subscribe.filters.iter().enumerate() {
            // The same filter again right after itself (the shape of a flood) costs a compare.
            if index > 0 && subscribe.filters[index - 1] == *request {
                codes.push(codes[index - 1]);
                continue;
            }
            let Some(client) = self.clients.get(&conn) else {
                break;
            };
            let filter = request.filter.as_str();
            if let Some(code) = seen.get(&(filter, request.options)) {
                codes.push(*code);
                continue;
            }
            let parsed = shared::parse(filter);
            let matches_with = shared::topic_filter(filter);
            let mut denied = false;
            let code = if index >= limits.max_subscribe_filters {
                Stats::add(&self.stats.limit_subscriptions, 1);
                refused(ReasonCode::QuotaExceeded)
            } else if parsed == Parsed::Invalid || !topic::valid_filter(matches_with) {
                refused(ReasonCode::TopicFilterInvalid)
            } else if !within(limits, filter) {
                Stats::add(&self.stats.limit_topic, 1);
                refused(ReasonCode::TopicFilterInvalid)
            } else if !client.can_subscribe(matches_with) {
                denied = true;
                refused(ReasonCode::NotAuthorized)
            } else if !client.session.subscriptions().contains_key(filter)
                && client.session.subscriptions().len() >= limits.max_subscriptions
            {
                Stats::add(&self.stats.limit_subscriptions, 1);
                refused(ReasonCode::QuotaExceeded)
            } else {
                ReasonCode::Success
            };
            if code != ReasonCode::Success {
                if denied {
                    if let Some(client) = self.clients.get_mut(&conn) {
                        client.denied("subscribe", filter);
                    }
                }
                seen.insert((filter, request.options), code);
                codes.push(code);
                continue;
            }
            let mut options = request.options;
            options.qos = options.qos.min(QoS::ExactlyOnce);
            let filter = ByteStr::copy_from_str(filter);
            let existed = client.session.subscriptions().contains_key(&filter);
            let subscription = Subscription {
                options,
                identifier,
            };
            self.subscribe(conn, filter.clone(), subscription);
            seen.insert(
                (request.filter.as_str(), request.options),
                ReasonCode::granted(options.qos),
            );
            codes.push(ReasonCode::granted(options.qos));
            // Retained messages are not sent for a shared subscription [MQTT-3.8.4-4 note, §4.8.2].
            let send_retained = parsed == Parsed::Plain
                && match options.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendIfNew => !existed,
                    RetainHandling::DoNotSend => false,
                };
            if send_retained {
                retained.push((filter, options.qos));
            }
        }
        let pending = PendingSubAck {
            suback: SubAck {
                packet_id: subscribe.packet_id,
                codes,
                properties: Properties::default(),
            },
            retained,
        };
        let Some(client) = self.clients.get_mut(&conn) else {
            return Handled::Done;
        };
        if client.awaiting_acks > 0 {
            client.pending_suback = Some(Box::new(pending));
            return Handled::Wait;
        }
        self.finish_subscribe(conn, pending);
        Handled::Done
    }

    /// Sends the SUBACK, then the retained messages matching the new filters with RETAIN set
    /// [MQTT-3.3.1-8].
    fn finish_subscribe(&mut self, conn: ConnId, pending: PendingSubAck) {
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        client.session.send(&Packet::SubAck(pending.suback));
        let mut messages = Vec::new();
        let mut expired = Vec::new();
        let now = self.now;
        for (filter, qos) in pending.retained {
            // The same per-topic read check as a live delivery: `read #` with `deny secret/#`
            // must not hand out the retained `secret/x`.
            self.retained.for_each_matching(&filter, |topic, message| {
                if matches!((message.expires_at, now), (Some(at), Some(now)) if at <= now) {
                    // Its Message Expiry Interval passed: no longer retained [MQTT-3.3.2-5].
                    expired.push(message.topic.clone());
                } else if client.can_receive(topic) {
                    messages.push((Arc::clone(message), qos));
                }
            });
        }
        expired.sort_unstable();
        expired.dedup();
        Stats::add(&self.stats.messages_expired, expired.len() as u64);
        for topic in expired {
            self.apply_retain(&topic, None);
        }
        let batch = RetainedBatch { conn, messages };
        self.deliver_retained(&batch, 0..batch.len().min(RETAINED_SLICE));
        if batch.len() > RETAINED_SLICE {
            self.outputs.push(Output::Retained(batch));
        }
        self.flush_if_pending(conn);
    }

    /// Delivers the retained messages of `batch` in `range`, with RETAIN set [MQTT-3.3.1-8].
    pub fn deliver_retained(&mut self, batch: &RetainedBatch, range: Range<usize>) {
        let Some(client) = self.clients.get_mut(&batch.conn) else {
            return;
        };
        if let Some(now) = self.now {
            client.session.handle_time(now);
        }
        for (message, qos) in &batch.messages[range] {
            client.session.handle_delivery(message, *qos, true);
        }
        let drops = client.session.take_drops();
        self.count_drops(drops);
        self.flush_if_pending(batch.conn);
    }

    fn handle_unsubscribe(&mut self, conn: ConnId, unsubscribe: Unsubscribe) -> Handled {
        let mut codes = Vec::with_capacity(unsubscribe.filters.len());
        for filter in &unsubscribe.filters {
            codes.push(if self.unsubscribe(conn, filter) {
                ReasonCode::Success
            } else {
                ReasonCode::NoSubscriptionExisted
            });
        }
        let Some(client) = self.clients.get_mut(&conn) else {
            return Handled::Done;
        };
        if !client.session.protocol().is_v5() {
            codes.clear();
        }
        client.session.send(&Packet::UnsubAck(UnsubAck {
            packet_id: unsubscribe.packet_id,
            codes,
            properties: Properties::default(),
        }));
        Handled::Done
    }

    // ----- subscriptions ---------------------------------------------------------------------

    /// Adds a subscription of `conn` on this shard; a filter (or shared group) new to the shard
    /// is announced to every peer, and `conn` waits for their acknowledgements.
    fn subscribe(&mut self, conn: ConnId, filter: ByteStr, subscription: Subscription) {
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        client
            .session
            .add_subscription(filter.clone(), subscription);
        if let Parsed::Shared {
            group,
            filter: topic_filter,
        } = shared::parse(&filter)
        {
            let member = Member {
                conn,
                options: subscription.options,
                identifier: subscription.identifier,
            };
            let joined = self
                .groups
                .get_or_insert_with(topic_filter, Groups::new)
                .entry(ByteStr::copy_from_str(group))
                .or_default()
                .join(member);
            if joined {
                Stats::add(&self.stats.subscriptions, 1);
                self.hot_topics.record_subscribers(topic_filter, 1);
            }
            self.group_changed(&filter, Some(conn));
            return;
        }
        let subscribers = self
            .subscriptions
            .get_or_insert_with(&filter, Subscribers::new);
        let first = subscribers.is_empty();
        if subscribers.insert(conn, subscription).is_none() {
            Stats::add(&self.stats.subscriptions, 1);
            self.hot_topics.record_subscribers(&filter, 1);
        }
        if !first {
            // The route may still be on its way to the peers: wait for it as its announcer does.
            self.await_announcement(&filter, conn);
            return;
        }
        self.routes
            .get_or_insert_with(&filter, ShardSet::default)
            .insert(self.id);
        let from = self.id;
        self.announce(filter.clone(), conn, |token| ShardMsg::RouteAdd {
            filter: filter.clone(),
            from,
            token,
        });
    }

    /// Sends what `message` makes of a token to every peer, and makes `waiter` wait for all
    /// their acknowledgements (`RouteAck`); `key` names the announcement for later waiters.
    fn announce(&mut self, key: ByteStr, waiter: ConnId, message: impl Fn(u64) -> ShardMsg) {
        let peers = self.config.shards - 1;
        if peers == 0 {
            return;
        }
        let Some(client) = self.clients.get_mut(&waiter) else {
            return;
        };
        client.awaiting_acks += 1;
        let token = self.next_announcement;
        self.next_announcement += 1;
        self.announcements.insert(
            token,
            Announcement {
                filter: key.clone(),
                acks_left: peers,
                waiters: vec![waiter],
            },
        );
        self.announcing.insert(key, token);
        for peer in self.peers().collect::<Vec<_>>() {
            self.transmit(peer, message(token));
        }
    }

    /// Makes `conn` wait too for the announcement of `key`, while one is unacknowledged.
    fn await_announcement(&mut self, key: &str, conn: ConnId) {
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        if let Some(announcement) = self
            .announcing
            .get(key)
            .and_then(|token| self.announcements.get_mut(token))
        {
            if !announcement.waiters.contains(&conn) {
                announcement.waiters.push(conn);
                client.awaiting_acks += 1;
            }
        }
    }

    /// This shard's members of the shared group `key` (`$share/<group>/<filter>`) changed (one
    /// joined, left, connected or went offline): updates the group's route and tells the peers
    /// the new counts. The first member here makes `waiter` (its subscriber) wait for the
    /// peers' acknowledgements.
    fn group_changed(&mut self, key: &ByteStr, waiter: Option<ConnId>) {
        let Parsed::Shared { group, filter } = shared::parse(key) else {
            return;
        };
        let clients = &self.clients;
        let counts = self
            .groups
            .get(filter)
            .and_then(|groups| groups.get(group))
            .map_or(Counts::default(), |group| {
                let online = group
                    .members()
                    .iter()
                    .filter(|m| clients.get(&m.conn).is_some_and(|c| c.is_connected()))
                    .count();
                Counts {
                    online: online as u32,
                    total: group.members().len() as u32,
                }
            });
        let before = self.apply_group_counts(key, self.id, counts);
        if counts.total == 0 {
            if let Some(groups) = self.groups.get_mut(filter) {
                groups.remove(group);
                if groups.is_empty() {
                    self.groups.remove(filter);
                }
            }
        }
        if before == counts {
            if let Some(waiter) = waiter {
                self.await_announcement(key, waiter);
            }
            return;
        }
        let from = self.id;
        match waiter.filter(|_| before.total == 0) {
            Some(waiter) => self.announce(key.clone(), waiter, |token| ShardMsg::ShareCounts {
                key: key.clone(),
                from,
                counts,
                token: Some(token),
            }),
            None => {
                for peer in self.peers().collect::<Vec<_>>() {
                    let key = key.clone();
                    let msg = ShardMsg::ShareCounts {
                        key,
                        from,
                        counts,
                        token: None,
                    };
                    self.transmit(peer, msg);
                }
            }
        }
    }

    /// Sets `shard`'s counts in the route of the shared group `key`; returns the counts before.
    fn apply_group_counts(&mut self, key: &ByteStr, shard: ShardId, counts: Counts) -> Counts {
        let Parsed::Shared { group, filter } = shared::parse(key) else {
            return Counts::default();
        };
        let shards = self.config.shards;
        let groups = self.group_routes.get_or_insert_with(filter, Groups::new);
        let route = groups
            .entry(ByteStr::copy_from_str(group))
            .or_insert_with(|| GroupRoute::new(key.clone(), shards));
        let before = route.get(shard);
        route.set(shard, counts);
        if route.is_empty() {
            groups.remove(group);
            if groups.is_empty() {
                self.group_routes.remove(filter);
            }
        }
        before
    }

    /// A peer applied the announcement `token`; once every peer has, its waiters go on.
    fn route_acknowledged(&mut self, token: u64) {
        let Some(announcement) = self.announcements.get_mut(&token) else {
            return;
        };
        announcement.acks_left -= 1;
        if announcement.acks_left > 0 {
            return;
        }
        let announcement = self
            .announcements
            .remove(&token)
            .expect("the announcement was just found");
        if self.announcing.get(&announcement.filter) == Some(&token) {
            self.announcing.remove(&announcement.filter);
        }
        for conn in announcement.waiters {
            if let Some(client) = self.clients.get_mut(&conn) {
                client.awaiting_acks = client.awaiting_acks.saturating_sub(1);
                self.maybe_complete(conn);
            }
        }
    }

    /// Removes a subscription of `conn`; returns whether it existed.
    fn unsubscribe(&mut self, conn: ConnId, filter: &str) -> bool {
        let existed = self
            .clients
            .get_mut(&conn)
            .is_some_and(|client| client.session.remove_subscription(filter));
        if existed {
            self.remove_subscriber(conn, filter);
        }
        existed
    }

    fn remove_subscriber(&mut self, conn: ConnId, filter: &str) {
        if let Parsed::Shared {
            group,
            filter: topic_filter,
        } = shared::parse(filter)
        {
            let left = self
                .groups
                .get_mut(topic_filter)
                .and_then(|groups| groups.get_mut(group))
                .is_some_and(|group| group.leave(conn));
            if left {
                Stats::sub(&self.stats.subscriptions, 1);
                self.hot_topics.record_subscribers(topic_filter, -1);
                self.group_changed(&ByteStr::copy_from_str(filter), None);
            }
            return;
        }
        let Some(subscribers) = self.subscriptions.get_mut(filter) else {
            return;
        };
        if subscribers.remove(&conn).is_none() {
            return;
        }
        let last = subscribers.is_empty();
        Stats::sub(&self.stats.subscriptions, 1);
        self.hot_topics.record_subscribers(filter, -1);
        if !last {
            return;
        }
        self.subscriptions.remove(filter);
        if let Some(shards) = self.routes.get_mut(filter) {
            shards.remove(self.id);
            if shards.is_empty() {
                self.routes.remove(filter);
            }
        }
        for peer in self.peers().collect::<Vec<_>>() {
            self.transmit(
                peer,
                ShardMsg::RouteRemove {
                    filter: ByteStr::copy_from_str(filter),
                    from: self.id,
                },
            );
        }
    }

    /// Removes every subscription of a client from the local trie (its session keeps its list).
    fn drop_subscriptions(&mut self, conn: ConnId, session: &Session) {
        for filter in session.subscriptions().keys() {
            self.remove_subscriber(conn, filter);
        }
    }

    // ----- publishing ------------------------------------------------------------------------

    /// Routes a message published by `origin` (a client here, or the broker itself as
    /// [`BROKER_CONN`]): updates the retained index everywhere if RETAIN is set, sends it once to
    /// every shard with matching subscribers, and returns this shard's deliveries.
    pub fn publish(&mut self, message: Arc<Message>, origin: Owner) -> Option<FanOut> {
        // The broker's own publications ($SYS) are not client traffic; Mosquitto leaves them out
        // of messages/received too.
        if origin.conn != BROKER_CONN {
            self.stats.publish_received();
            self.hot_topics.record_publish(&message.topic);
        }
        if message.retain {
            let retained = (!message.payload.is_empty()).then(|| Arc::clone(&message));
            self.apply_retain(&message.topic, retained.clone());
            for peer in self.peers().collect::<Vec<_>>() {
                let msg = ShardMsg::Retain {
                    topic: message.topic.clone(),
                    message: retained.clone(),
                };
                self.transmit(peer, msg);
            }
        }
        let mut targets = ShardSet::default();
        self.routes.for_each_match(&message.topic, |shards| {
            targets = targets.union(*shards);
        });
        let picks = self.pick_groups(&message, origin);
        let local = targets.contains(self.id);
        targets.remove(self.id);
        let mut peers = targets;
        for (shard, _) in &picks {
            peers.insert(*shard);
        }
        peers.remove(self.id);
        for peer in peers.iter() {
            let routed = Routed {
                message: Arc::clone(&message),
                origin,
                plain: targets.contains(peer),
                shared: picks
                    .iter()
                    .filter(|(shard, _)| *shard == peer)
                    .map(|(_, pick)| pick.clone())
                    .collect(),
            };
            self.transmit(peer, ShardMsg::Publish(routed));
        }
        for (shard, pick) in picks {
            if shard == self.id {
                self.deliver_to_group(&message, origin, pick);
            }
        }
        local.then(|| self.fan_out(message, origin))
    }

    /// For each shared group with a filter matching `message`: the shard that delivers it to
    /// one of its members, chosen by the group's strategy among the shards with connected
    /// members, or with any member when none is connected.
    fn pick_groups(&mut self, message: &Message, origin: Owner) -> Vec<(ShardId, Pick)> {
        let mut picks = Vec::new();
        if self.group_routes.is_empty() {
            return picks;
        }
        let strategies = &self.config.shared;
        let rng = &mut self.rng;
        let publisher = (origin.shard == self.id)
            .then(|| self.clients.get(&origin.conn))
            .flatten()
            .map(|client| client.client_id.as_str());
        let me = self.id;
        self.group_routes.for_each_match(&message.topic, |groups| {
            for (group, route) in groups {
                let strategy = strategies.of(group);
                let hash = match strategy {
                    Strategy::HashClientId => shared::stable_hash(publisher.unwrap_or("")),
                    Strategy::HashTopic => shared::stable_hash(message.topic.as_str()),
                    Strategy::Random => rng.next_u64(),
                    Strategy::RoundRobin | Strategy::Local => route.next_turn(),
                };
                let none = ShardSet::default();
                let shard = route
                    .choose(strategy, me, hash, none, true)
                    .or_else(|| route.choose(strategy, me, hash, none, false));
                if let Some(shard) = shard {
                    let key = route.key.clone();
                    picks.push((
                        shard,
                        Pick {
                            key,
                            hash,
                            tried: none,
                        },
                    ));
                }
            }
        });
        picks
    }

    /// Delivers `message` to one member of the shared group `pick` names: a connected member
    /// here that may read the topic and has room for it; else another shard with connected
    /// members not tried yet; else a member here without a connection (its queue keeps it) or
    /// one that moved (forwarded); else any shard with a member. Dropped and counted when the
    /// group has no member left.
    fn deliver_to_group(&mut self, message: &Arc<Message>, origin: Owner, mut pick: Pick) {
        let Parsed::Shared { group, filter } = shared::parse(&pick.key) else {
            return;
        };
        let strategy = self.config.shared.of(group);
        let clients = &self.clients;
        let topic = message.topic.as_str();
        let ready = self
            .groups
            .get_mut(filter)
            .and_then(|groups| groups.get_mut(group))
            .and_then(|group| {
                group.pick(strategy, pick.hash, |member| {
                    let qos = member.options.qos.min(message.qos);
                    clients.get(&member.conn).is_some_and(|client| {
                        client.can_receive(topic)
                            && client.session.has_room(qos, message.payload.len())
                    })
                })
            });
        if let Some(member) = ready {
            self.deliver_member(message, member, &pick.key);
            return;
        }
        pick.tried.insert(self.id);
        if self.pass_on(message, origin, &pick, true) {
            return;
        }
        let clients = &self.clients;
        let forwards = &self.forwards;
        let members = self
            .groups
            .get_mut(filter)
            .and_then(|groups| groups.get_mut(group));
        let fallback = members.and_then(|group| {
            group.pick(strategy, pick.hash, |member| {
                match clients.get(&member.conn) {
                    Some(client) => client.can_receive(topic),
                    None => forwards.contains_key(&member.conn),
                }
            })
        });
        match fallback {
            Some(member) if self.clients.contains_key(&member.conn) => {
                self.deliver_member(message, member, &pick.key);
            }
            Some(member) => {
                let retain = member.options.retain_as_published && message.retain;
                self.forward(member.conn, message, member.options.qos, retain, None);
            }
            None => {
                if !self.pass_on(message, origin, &pick, false) {
                    Stats::add(&self.stats.dropped_no_member, 1);
                }
            }
        }
    }

    /// Sends `message` for the group of `pick` to a shard not tried yet that has connected
    /// members (`online`) or any; false if there is none.
    fn pass_on(
        &mut self,
        message: &Arc<Message>,
        origin: Owner,
        pick: &Pick,
        online: bool,
    ) -> bool {
        let Parsed::Shared { group, filter } = shared::parse(&pick.key) else {
            return false;
        };
        let strategy = self.config.shared.of(group);
        let shard = self
            .group_routes
            .get(filter)
            .and_then(|groups| groups.get(group))
            .and_then(|route| route.choose(strategy, self.id, pick.hash, pick.tried, online));
        let Some(shard) = shard else {
            return false;
        };
        let routed = Routed {
            message: Arc::clone(message),
            origin,
            plain: false,
            shared: vec![pick.clone()],
        };
        self.transmit(shard, ShardMsg::Publish(routed));
        true
    }

    /// Delivers `message` to the group member `member` (a client here).
    fn deliver_member(&mut self, message: &Arc<Message>, member: Member, key: &ByteStr) {
        let now = self.now;
        let Some(client) = self.clients.get_mut(&member.conn) else {
            return;
        };
        let retain = member.options.retain_as_published && message.retain;
        let via = Via::of(member.identifier, Some(key.clone()));
        let Some(delivered) = client.deliver(message, member.options.qos, retain, via, now) else {
            return;
        };
        if delivered.flush {
            self.outputs.push(Output::Flush(member.conn));
        }
        self.count_drops(delivered.drops);
        self.stats.add_delivered(1);
    }

    /// Delivers again, each to its group, the messages a member gave back.
    fn return_to_groups(&mut self, returned: Vec<Returned>, origin: Owner) {
        Stats::add(&self.stats.shared_returned, returned.len() as u64);
        for Returned { message, shared } in returned {
            let hash = self.rng.next_u64();
            let pick = Pick {
                key: shared,
                hash,
                tried: ShardSet::default(),
            };
            self.deliver_to_group(&message, origin, pick);
        }
    }

    /// Whether storing a retained payload of `len` bytes on `topic` stays within
    /// `max_retained_messages` and `max_retained_bytes` (an empty payload clears, always fits).
    fn retained_fits(&self, topic: &str, len: usize) -> bool {
        if len == 0 {
            return true;
        }
        let limits = &self.config.limits;
        let replaced = self.retained.get(topic).map(|m| m.payload.len());
        let count = self.retained.len() + usize::from(replaced.is_none());
        let bytes = self.retained_bytes - replaced.unwrap_or(0) + len;
        count <= limits.max_retained_messages && bytes <= limits.max_retained_bytes
    }

    fn apply_retain(&mut self, topic: &str, message: Option<Arc<Message>>) {
        let added = message.as_ref().map_or(0, |m| m.payload.len());
        let replaced = match message {
            Some(message) => self.retained.set(topic, message),
            None => self.retained.remove(topic),
        };
        self.retained_bytes = self.retained_bytes + added - replaced.map_or(0, |m| m.payload.len());
        self.stats.retained.set(self.retained.len() as u64);
    }

    /// This shard's subscribers to `message`. A client matched by several filters receives the
    /// message once, at the highest granted QoS [MQTT-3.3.5-1].
    fn fan_out(&mut self, message: Arc<Message>, origin: Owner) -> FanOut {
        let mut targets: Vec<Target> = Vec::new();
        let mut forwarded: Vec<Target> = Vec::new();
        let mut matched = 0usize;
        self.subscriptions
            .for_each_match(&message.topic, |subscribers| {
                matched += 1;
                for (conn, subscription) in subscribers {
                    let options = subscription.options;
                    if options.no_local && origin == self.owner(*conn) {
                        continue;
                    }
                    let target = Target {
                        conn: *conn,
                        qos: options.qos,
                        retain: options.retain_as_published && message.retain,
                        identifier: subscription.identifier,
                    };
                    let Some(client) = self.clients.get(conn) else {
                        if self.forwards.contains_key(conn) {
                            forwarded.push(target);
                        }
                        continue;
                    };
                    if client.can_receive(&message.topic) {
                        targets.push(target);
                    }
                }
            });
        // Overlapping subscriptions of one session: one delivery, at their highest QoS, with
        // every matching Subscription Identifier [MQTT-3.3.4-4]. A moved session's forwarded
        // copy too, or the once-only check at its new place would keep whichever copy came
        // first, perhaps the QoS 0 one.
        let (identifiers, forwarded_identifiers) = if matched > 1 {
            (
                merge_overlapping(&mut targets),
                merge_overlapping(&mut forwarded),
            )
        } else {
            Default::default()
        };
        for target in forwarded {
            let via = via_for(&target, &forwarded_identifiers);
            self.forward(target.conn, &message, target.qos, target.retain, via);
        }
        FanOut {
            message,
            targets,
            identifiers,
        }
    }

    // ----- sessions that move ----------------------------------------------------------------
    //
    // A persistent session taken over by a connection on another shard (or this one) keeps its
    // routes here until its new owner is online with routes of its own: `leave_forwarder` keeps
    // its subscriptions in the trie under the old connection id, and deliveries to them are
    // forwarded (`Forward`). The new owner sends `Moved` once online; the forwarder then asks
    // every peer to `Drain` (whatever a peer routed here before it learnt the new routes arrives
    // before its `Drained`), and only then drops the subscriptions and tells the new owner
    // `ForwardEnd`. A connection superseded while connecting relays forwards to its successor
    // the same way, with no subscriptions of its own.

    /// Forwards a delivery for the moved session `conn` to its new owner.
    fn forward(
        &mut self,
        conn: ConnId,
        message: &Arc<Message>,
        qos: QoS,
        retain: bool,
        via: Option<Box<Via>>,
    ) {
        let Some(forward) = self.forwards.get(&conn) else {
            return;
        };
        let (to, from) = (forward.to, self.owner(conn));
        if to.shard == self.id {
            self.receive_forward(to.conn, from, message, qos, retain, via);
        } else {
            let message = Arc::clone(message);
            self.transmit(
                to.shard,
                ShardMsg::Forward {
                    conn: to.conn,
                    from,
                    message,
                    qos,
                    retain,
                    via,
                },
            );
        }
    }

    /// A forwarded delivery for `conn`: its session's if `from` is the forwarder it expects,
    /// relayed if `conn` itself moved on.
    fn receive_forward(
        &mut self,
        conn: ConnId,
        from: Owner,
        message: &Arc<Message>,
        qos: QoS,
        retain: bool,
        via: Option<Box<Via>>,
    ) {
        let now = self.now;
        if let Some(client) = self.clients.get_mut(&conn) {
            if client.upstream != Some(from) || !client.can_receive(&message.topic) {
                return;
            }
            let Some(delivered) = client.deliver(message, qos, retain, via, now) else {
                return;
            };
            if delivered.flush {
                self.outputs.push(Output::Flush(conn));
            }
            self.count_drops(delivered.drops);
            self.stats.add_delivered(1);
        } else if self
            .forwards
            .get(&conn)
            .is_some_and(|forward| forward.upstream == Some(from))
        {
            self.forward(conn, message, qos, retain, via);
        }
    }

    /// Tells the forwarder `forwarder` that its session's new owner is online.
    fn send_moved(&mut self, forwarder: Owner) {
        if forwarder.shard == self.id {
            self.handle_moved(forwarder.conn);
        } else {
            let msg = ShardMsg::Moved {
                previous: forwarder.conn,
            };
            self.transmit(forwarder.shard, msg);
        }
    }

    fn handle_moved(&mut self, conn: ConnId) {
        let peers = self.config.shards - 1;
        let Some(forward) = self.forwards.get_mut(&conn) else {
            return;
        };
        if forward.draining.is_some() {
            return;
        }
        forward.draining = Some(peers);
        // The forwarder before this one may stop too.
        if let Some(upstream) = forward.upstream {
            self.send_moved(upstream);
        }
        let from = self.id;
        for peer in self.peers().collect::<Vec<_>>() {
            self.transmit(
                peer,
                ShardMsg::Drain {
                    token: conn.0,
                    from,
                },
            );
        }
        self.finish_forward(conn);
    }

    /// Drops the forwarder `conn` once it is drained and nothing comes from upstream any more.
    fn finish_forward(&mut self, conn: ConnId) {
        let done = self
            .forwards
            .get(&conn)
            .is_some_and(|f| f.draining == Some(0) && f.upstream.is_none());
        if !done {
            return;
        }
        let Some(forward) = self.forwards.remove(&conn) else {
            return;
        };
        for filter in &forward.filters {
            self.remove_subscriber(conn, filter);
        }
        let from = self.owner(conn);
        if forward.to.shard == self.id {
            self.handle_forward_end(forward.to.conn, from);
        } else {
            let msg = ShardMsg::ForwardEnd {
                conn: forward.to.conn,
                from,
            };
            self.transmit(forward.to.shard, msg);
        }
    }

    fn handle_forward_end(&mut self, conn: ConnId, from: Owner) {
        if let Some(client) = self.clients.get_mut(&conn) {
            if client.upstream == Some(from) {
                client.upstream = None;
                client.arrived = None;
            }
        } else if let Some(forward) = self.forwards.get_mut(&conn) {
            if forward.upstream == Some(from) {
                forward.upstream = None;
                self.finish_forward(conn);
            }
        }
    }

    /// Delivers `fanout` to its subscribers in `range` (the driver yields between slices).
    pub fn deliver(&mut self, fanout: &FanOut, range: Range<usize>) {
        let mut drops = Drops::default();
        let mut delivered = 0;
        let now = self.now;
        for target in &fanout.targets[range] {
            let Some(client) = self.clients.get_mut(&target.conn) else {
                continue;
            };
            let via = via_for(target, &fanout.identifiers);
            let Some(outcome) =
                client.deliver(&fanout.message, target.qos, target.retain, via, now)
            else {
                continue;
            };
            drops.add(outcome.drops);
            delivered += 1;
            if outcome.flush {
                self.outputs.push(Output::Flush(target.conn));
            }
        }
        self.count_drops(drops);
        self.stats.add_delivered(delivered);
    }

    fn count_drops(&self, drops: Drops) {
        Stats::add(&self.stats.dropped_slow, drops.slow_qos0);
        Stats::add(&self.stats.dropped_queue_full, drops.queue_full);
        Stats::add(&self.stats.messages_expired, drops.expired);
        Stats::add(&self.stats.dropped_too_large, drops.too_large);
    }

    /// The writer sent what `conn` had queued: acknowledgements may have opened the inflight
    /// window meanwhile, so queued messages move into it.
    /// Returns whether the session has bytes to send.
    pub fn release_queued(&mut self, conn: ConnId) -> bool {
        let Some(client) = self.clients.get_mut(&conn) else {
            return false;
        };
        if let Some(now) = self.now {
            client.session.handle_time(now);
        }
        client.session.release_queued();
        let pending = client.session.pending_bytes() > 0;
        let drops = client.session.take_drops();
        self.count_drops(drops);
        pending
    }

    // ----- the mesh --------------------------------------------------------------------------

    /// A message from a peer shard. A publish returns this shard's deliveries.
    pub fn handle_mesh(&mut self, msg: ShardMsg) -> Option<FanOut> {
        match msg {
            ShardMsg::Publish(routed) => {
                for pick in routed.shared {
                    self.deliver_to_group(&routed.message, routed.origin, pick);
                }
                return routed
                    .plain
                    .then(|| self.fan_out(routed.message, routed.origin));
            }
            ShardMsg::ShareCounts {
                key,
                from,
                counts,
                token,
            } => {
                self.apply_group_counts(&key, from, counts);
                if let Some(token) = token {
                    self.transmit(from, ShardMsg::RouteAck { token });
                }
            }
            ShardMsg::RouteAdd {
                filter,
                from,
                token,
            } => {
                self.routes
                    .get_or_insert_with(&filter, ShardSet::default)
                    .insert(from);
                self.transmit(from, ShardMsg::RouteAck { token });
            }
            ShardMsg::RouteAck { token } => self.route_acknowledged(token),
            ShardMsg::RouteRemove { filter, from } => {
                if let Some(shards) = self.routes.get_mut(&filter) {
                    shards.remove(from);
                    if shards.is_empty() {
                        self.routes.remove(&filter);
                    }
                }
            }
            ShardMsg::Retain { topic, message } => self.apply_retain(&topic, message),
            ShardMsg::Claim {
                client_id,
                claimant,
            } => {
                let previous = self.registry.claim(&client_id, claimant);
                self.transmit(
                    claimant.shard,
                    ShardMsg::Claimed {
                        conn: claimant.conn,
                        previous,
                    },
                );
            }
            ShardMsg::Claimed { conn, previous } => self.claimed(conn, previous),
            ShardMsg::Takeover {
                previous,
                by,
                clean_start,
            } => {
                if let TakeoverOutcome::HandOver(handed) = self.take_over(previous, by, clean_start)
                {
                    self.hand_over(by, handed);
                }
            }
            ShardMsg::Handover {
                conn,
                session,
                forwarder,
            } => self.session_arrived(conn, Handed { session, forwarder }),
            ShardMsg::Forward {
                conn,
                from,
                message,
                qos,
                retain,
                via,
            } => self.receive_forward(conn, from, &message, qos, retain, via),
            ShardMsg::Moved { previous } => self.handle_moved(previous),
            ShardMsg::Drain { token, from } => self.transmit(from, ShardMsg::Drained { token }),
            ShardMsg::Drained { token } => {
                let conn = ConnId(token);
                if let Some(forward) = self.forwards.get_mut(&conn) {
                    forward.draining = forward.draining.map(|left| left.saturating_sub(1));
                    self.finish_forward(conn);
                }
            }
            ShardMsg::ForwardEnd { conn, from } => self.handle_forward_end(conn, from),
            ShardMsg::Release { client_id, owner } => {
                self.registry.release(&client_id, owner);
            }
        }
        None
    }

    // ----- commands --------------------------------------------------------------------------

    /// Disconnects the client with this id if it is connected here; a persistent session stays.
    pub fn kick(&mut self, client_id: &str) -> bool {
        let Some(&conn) = self.by_client_id.get(client_id) else {
            return false;
        };
        if !self.is_online(conn) {
            return false;
        }
        self.outputs.push(Output::Close(conn, CloseReason::Kicked));
        true
    }

    /// Replaces the access rules of the sessions named and removes the subscriptions the new
    /// rules no longer allow. Returns how many sessions on this shard were updated.
    pub fn update_acls(&mut self, updates: Vec<(ByteStr, Box<SessionAcl>)>) -> usize {
        let mut updated = 0;
        for (client_id, acl) in updates {
            let Some(&conn) = self.by_client_id.get(&client_id) else {
                continue;
            };
            let Some(client) = self.clients.get_mut(&conn) else {
                continue;
            };
            let revoked: Vec<ByteStr> = client
                .session
                .subscriptions()
                .keys()
                .filter(|filter| !acl.can_subscribe(shared::topic_filter(filter)))
                .cloned()
                .collect();
            client.acl = Some(acl);
            for filter in revoked {
                self.unsubscribe(conn, &filter);
            }
            updated += 1;
        }
        updated
    }

    /// Removes the offline session of `client_id` (its subscriptions, routes and queue) and
    /// releases the id at its home shard, as if it had expired. A connected or connecting
    /// client is left alone ([`Purge::Connected`]): kicking is [`Router::kick`].
    pub fn purge_session(&mut self, client_id: &str) -> Purge {
        let Some(&conn) = self.by_client_id.get(client_id) else {
            return Purge::Unknown;
        };
        match self.clients.get(&conn).map(|client| &client.phase) {
            Some(Phase::Offline) => {
                self.end_session(conn);
                Stats::add(&self.stats.sessions_purged, 1);
                Purge::Purged
            }
            Some(_) => Purge::Connected,
            None => Purge::Unknown,
        }
    }

    /// This shard's clients that `filter` admits, for the admin API.
    pub fn client_infos(&self, filter: &ClientFilter) -> Vec<ClientInfo> {
        self.clients
            .values()
            .filter(|client| filter.admits(&client.client_id, client.identity.username.as_deref()))
            .map(|client| self.client_info(client))
            .collect()
    }

    /// The client or offline session of `client_id` on this shard at `now`, for the admin API.
    pub fn client_details(&self, client_id: &str, now: Instant) -> Option<ClientDetails> {
        let client = self.clients.get(self.by_client_id.get(client_id)?)?;
        let offline_for = client
            .offline_since
            .filter(|_| matches!(client.phase, Phase::Offline))
            .map(|since| now.saturating_duration_since(since));
        let expires_in = client
            .expires_at
            .filter(|_| matches!(client.phase, Phase::Offline))
            .map(|at| at.saturating_duration_since(now).as_secs());
        let mut subscriptions: Vec<(String, SubscriptionOptions)> = client
            .session
            .subscriptions()
            .iter()
            .map(|(filter, subscription)| (filter.to_string(), subscription.options))
            .collect();
        subscriptions.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Some(ClientDetails {
            info: self.client_info(client),
            protocol: client.session.protocol(),
            keep_alive: granted_keep_alive(client.keep_alive, self.config.limits.max_keepalive),
            clean_start: client.clean_start,
            persistent: !client.clean,
            subscriptions,
            queued_bytes: client.session.queued_bytes(),
            offline_seconds: offline_for.map(|offline_for| offline_for.as_secs()),
            expires_in,
        })
    }

    fn client_info(&self, client: &Client) -> ClientInfo {
        ClientInfo {
            client_id: client.client_id.to_string(),
            username: client.identity.username.as_ref().map(ToString::to_string),
            peer: client.identity.peer,
            shard: self.id.0,
            connected_since: client.identity.connected_since,
            subscriptions: client.session.subscriptions().len(),
            connected: client.is_connected(),
            queued: client.session.queued_len(),
            inflight: client.session.inflight_len(),
            dropped: client.session.dropped_total(),
        }
    }

    /// The clients whose sessions dropped messages since the last call, with how many: the
    /// driver logs them once per sweep, so a flood of drops is one line per client, not one per
    /// message.
    pub fn drop_reports(&mut self) -> Vec<(ByteStr, Option<ByteStr>, u64)> {
        let mut reports = std::mem::take(&mut self.final_drop_reports);
        for client in self.clients.values_mut() {
            let total = client.session.dropped_total();
            if total > client.reported_drops {
                reports.push((
                    client.client_id.clone(),
                    client.identity.username.clone(),
                    total - client.reported_drops,
                ));
                client.reported_drops = total;
            }
        }
        reports
    }

    /// Asks every connection to close (shutdown).
    pub fn close_all(&mut self) {
        for (conn, client) in &self.clients {
            if client.is_connected() {
                self.outputs
                    .push(Output::Close(*conn, CloseReason::Shutdown));
            }
        }
    }
}

/// Merges the targets of one connection into one, at the highest QoS any of them asks for.
/// Returns the Subscription Identifiers of connections matched by several subscriptions with
/// one (their target's identifier becomes [`SEVERAL`]).
fn merge_overlapping(targets: &mut Vec<Target>) -> Vec<(ConnId, Vec<u32>)> {
    targets.sort_by_key(|target| target.conn);
    let mut several: Vec<(ConnId, Vec<u32>)> = Vec::new();
    targets.dedup_by(|later, kept| {
        if later.conn != kept.conn {
            return false;
        }
        kept.qos = kept.qos.max(later.qos);
        kept.retain |= later.retain;
        match (kept.identifier, later.identifier) {
            (_, 0) => {}
            (0, identifier) => kept.identifier = identifier,
            (SEVERAL, identifier) => {
                if let Some((_, identifiers)) = several.last_mut() {
                    identifiers.push(identifier);
                }
            }
            (first, identifier) => {
                kept.identifier = SEVERAL;
                several.push((kept.conn, vec![first, identifier]));
            }
        }
        true
    });
    several
}

/// When a message published at `now` with these properties expires (MQTT 5 Message Expiry
/// Interval); `None` never.
fn expiry_from(properties: &Properties, now: Option<Instant>) -> Option<Instant> {
    let interval = properties.message_expiry_interval?;
    now?.checked_add(Duration::from_secs(interval.into()))
}

/// Whether a topic name or filter is within `max_topic_length` and `max_topic_levels`.
fn within(limits: &Limits, topic: &str) -> bool {
    topic.len() <= limits.max_topic_length
        && topic.bytes().filter(|b| *b == b'/').count() < limits.max_topic_levels
}
