//! One shard's broker state and the inter-shard protocols: routing, retained replication, and
//! client-id ownership with session takeover.
//!
//! A [`Shard`] lives on one executor and is shared by its tasks through `Rc`; its state sits in a
//! `RefCell` that is never borrowed across an `.await`. Connection tasks call into it for every
//! PUBLISH and SUBSCRIBE; one receiver task per peer shard feeds it the peer's [`ShardMsg`]s.
//!
//! Routing (DESIGN.md, Message flow): the local trie maps filters to this shard's subscribers; the
//! route table, replicated on every shard, maps filters to the shards that have subscribers. A
//! publish goes at most once to each interested shard, the message shared by `Arc`. The first
//! local subscriber to a filter broadcasts `RouteAdd` and waits for every peer's `RouteAck`
//! before its SUBACK, so a message published anywhere after the SUBACK is delivered.
//!
//! The receiver tasks never wait on a full ring: replies are sent from detached tasks, so two
//! shards whose rings are both full cannot wait on each other.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;

use glommio::channels::channel_mesh::Senders;
use hashbrown::HashMap;
use shardmq_codec::{ByteStr, LastWill, QoS, SubscriptionOptions};

use crate::acl::SessionAcl;
use crate::config::ShardConfig;
use crate::control::{Authenticator, ClientInfo, ShardCommand};
use crate::hot_topics::HotTopics;
use crate::mesh::{ConnId, Owner, Routed, ShardId, ShardMsg, ShardSet};
use crate::registry::{home_shard, Registry};
use crate::retained::RetainedIndex;
use crate::session::{Drops, Message, Outbox, Session};
use crate::stats::Stats;
use crate::sync::{Countdown, Slot};
use crate::trie::Trie;

/// This shard's subscribers to one filter.
type Subscribers = HashMap<ConnId, SubscriptionOptions>;

/// Deliveries between two yields to the executor during a large fan-out.
const FANOUT_BATCH: usize = 512;

/// Where a client is in its life on this shard.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Phase {
    /// CONNECT received; claiming the id and possibly waiting for a session handover.
    Connecting,
    /// CONNACK sent; packets flow.
    Online,
    /// A persistent session with no connection.
    Offline,
}

/// A client on this shard: its session, its outbox, and how to reach its writer.
#[derive(Debug)]
pub struct Client {
    /// The id of this connection (or offline session) on the shard.
    pub conn: ConnId,
    /// The client id.
    pub client_id: ByteStr,
    /// True when the session ends with the connection (3.1.1 clean session).
    pub clean: bool,
    /// The MQTT state.
    pub session: RefCell<Session>,
    /// Encoded bytes for the writer.
    pub outbox: RefCell<Outbox>,
    /// Will message, dropped on a clean DISCONNECT (boxed: most clients have none).
    pub will: RefCell<Option<Box<LastWill>>>,
    /// Who connected, from where, since when.
    pub identity: Identity,
    /// Access rules compiled for this session; `None` allows everything.
    pub acl: RefCell<Option<Box<SessionAcl>>>,
    phase: Cell<Phase>,
    superseded_by: Cell<Option<Owner>>,
    close_requested: Cell<bool>,
    /// Starts a writer task; set by the connection while it has a socket.
    spawn_writer: RefCell<Option<WriterSpawner>>,
    writer_running: Cell<bool>,
    /// The running writer's waker while it waits for bytes.
    writer_parked: RefCell<Option<Waker>>,
    /// Asks a parked writer to end (the connection has been idle; see `Shard::retire_writers`).
    writer_retire: Cell<bool>,
    /// The shard's idle-sweep tick at the writer's last send.
    writer_active_tick: Cell<u32>,
    /// Queued for the shard's flusher.
    flush_scheduled: Cell<bool>,
    /// Waits for the writer to finish (the connection closing).
    writer_done: RefCell<Option<Waker>>,
    fd: Cell<Option<i32>>,
}

/// What the connection is asked to do for its writing.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum WriterAction {
    /// Queue the client for the shard's flusher, which sends its outbox without a task of its own.
    Schedule,
    /// Start a writer task (the socket did not take everything at once).
    Spawn,
}

/// Schedules flushes and starts writer tasks for one client's socket.
struct WriterSpawner(Box<dyn Fn(WriterAction)>);

impl std::fmt::Debug for WriterSpawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriterSpawner")
    }
}

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

impl Client {
    /// A client in the `Connecting` phase.
    pub fn new(
        conn: ConnId,
        session: Session,
        clean: bool,
        will: Option<Box<LastWill>>,
        identity: Identity,
        fd: i32,
    ) -> Self {
        Self {
            conn,
            client_id: session.client_id().clone(),
            clean,
            session: RefCell::new(session),
            outbox: RefCell::new(Outbox::default()),
            will: RefCell::new(will),
            identity,
            acl: RefCell::new(None),
            phase: Cell::new(Phase::Connecting),
            superseded_by: Cell::new(None),
            close_requested: Cell::new(false),
            spawn_writer: RefCell::new(None),
            writer_running: Cell::new(false),
            writer_parked: RefCell::new(None),
            writer_retire: Cell::new(false),
            writer_active_tick: Cell::new(0),
            flush_scheduled: Cell::new(false),
            writer_done: RefCell::new(None),
            fd: Cell::new(Some(fd)),
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase.get()
    }

    /// Whether the connection must close (taken over, kicked, shutting down).
    pub fn close_requested(&self) -> bool {
        self.close_requested.get()
    }

    /// Asks the connection to close: the writer flushes and stops, the reader is woken by a
    /// socket shutdown.
    pub fn request_close(&self) {
        self.close_requested.set(true);
        if let Some(fd) = self.fd.get() {
            // SAFETY: `fd` is this client's socket, open until the connection task clears it.
            unsafe {
                libc::shutdown(fd, libc::SHUT_RD);
            }
        }
        self.wake_writer();
    }

    /// The connection task has closed its socket.
    pub fn detach_socket(&self) {
        self.fd.set(None);
        self.spawn_writer.borrow_mut().take();
    }

    /// Installs how to start a writer task for this client's socket.
    ///
    /// A writer runs while the connection is busy and parks between sends; once the connection
    /// has been idle for a while the shard retires it ([`Shard::retire_writers`]), so an idle
    /// connection holds no writer task, which is much of what a million idle connections would
    /// otherwise cost. The next byte to send starts a new one.
    pub fn set_writer_spawner(&self, spawn: Box<dyn Fn(WriterAction)>) {
        *self.spawn_writer.borrow_mut() = Some(WriterSpawner(spawn));
    }

    /// Makes sure queued bytes get sent: a running writer is woken; otherwise the client is
    /// queued (once) for the shard's flusher, which sends right after the current burst of work,
    /// so everything queued meanwhile leaves in one write.
    pub fn wake_writer(&self) {
        if self.writer_running.get() {
            if let Some(waker) = self.writer_parked.borrow_mut().take() {
                waker.wake();
            }
            return;
        }
        if self.outbox.borrow().is_empty() || self.flush_scheduled.get() {
            return;
        }
        if let Some(spawn) = self.spawn_writer.borrow().as_ref() {
            self.flush_scheduled.set(true);
            (spawn.0)(WriterAction::Schedule);
        }
    }

    /// The flusher is handling this client now.
    pub fn take_flush_scheduled(&self) -> bool {
        self.flush_scheduled.replace(false)
    }

    /// Starts a writer task for what the socket did not take at once.
    pub fn start_writer(&self) {
        if self.writer_running.get() {
            return;
        }
        if let Some(spawn) = self.spawn_writer.borrow().as_ref() {
            self.writer_running.set(true);
            self.writer_retire.set(false);
            (spawn.0)(WriterAction::Spawn);
        }
    }

    /// The writer's wait for work: ready when bytes are queued, the connection closes, or the
    /// writer is retired (then `false`: end the task).
    pub fn writer_wait(&self) -> impl std::future::Future<Output = bool> + '_ {
        std::future::poll_fn(move |cx| {
            if !self.outbox.borrow().is_empty() {
                std::task::Poll::Ready(true)
            } else if self.close_requested.get() || self.writer_retire.get() {
                std::task::Poll::Ready(false)
            } else {
                *self.writer_parked.borrow_mut() = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        })
    }

    /// Whether a writer task is running for this client.
    pub fn writer_running(&self) -> bool {
        self.writer_running.get()
    }

    /// The client's socket, while it has one.
    pub fn fd(&self) -> Option<i32> {
        self.fd.get()
    }

    /// The writer sent something at sweep tick `tick`.
    pub fn writer_sent(&self, tick: u32) {
        self.writer_active_tick.set(tick);
    }

    /// Called by the writer task as it ends.
    pub fn writer_finished(&self) {
        self.writer_running.set(false);
        self.writer_parked.borrow_mut().take();
        if let Some(waker) = self.writer_done.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Waits until no writer runs (everything queued was written, or the socket failed).
    pub fn writer_idle(&self) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.writer_running.get() {
                *self.writer_done.borrow_mut() = Some(cx.waker().clone());
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
    }

    /// Whether the ACL lets this client publish to `topic`.
    pub fn can_publish(&self, topic: &str) -> bool {
        self.acl
            .borrow()
            .as_ref()
            .is_none_or(|acl| acl.can_publish(topic))
    }

    /// Whether the ACL lets this client subscribe to `filter`.
    pub fn can_subscribe(&self, filter: &str) -> bool {
        self.acl
            .borrow()
            .as_ref()
            .is_none_or(|acl| acl.can_subscribe(filter))
    }

    fn can_receive(&self, topic: &str) -> bool {
        self.acl
            .borrow()
            .as_ref()
            .is_none_or(|acl| acl.can_receive(topic))
    }

    /// Queues a delivery; returns what the session dropped doing so.
    fn deliver(&self, message: &Arc<Message>, granted: QoS, retain: bool) -> Drops {
        let mut outbox = self.outbox.borrow_mut();
        let drops = {
            let mut session = self.session.borrow_mut();
            session.handle_delivery(message, granted, retain, &mut outbox);
            session.take_drops()
        };
        if !outbox.is_empty() {
            drop(outbox);
            self.wake_writer();
        }
        drops
    }
}

#[derive(Default)]
struct State {
    subscriptions: Trie<Subscribers>,
    routes: Trie<ShardSet>,
    retained: RetainedIndex<Arc<Message>>,
    clients: HashMap<ConnId, Rc<Client>>,
    registry: Registry,
    claims: HashMap<ConnId, Rc<Slot<Option<Owner>>>>,
    handovers: HashMap<ConnId, Rc<Slot<Option<Box<Session>>>>>,
    route_acks: HashMap<u64, Rc<Countdown>>,
}

/// Result of taking over a client on this shard.
enum TakeoverResult {
    /// The session state to resume, if any.
    Done(Option<Box<Session>>),
    /// The client was still connecting; it will hand over when its own connect completes.
    Deferred,
}

/// One shard: see the module doc.
pub struct Shard {
    id: ShardId,
    config: Arc<ShardConfig>,
    mesh: Senders<ShardMsg>,
    state: RefCell<State>,
    next_conn: Cell<u64>,
    next_token: Cell<u64>,
    /// Counters of this shard.
    pub stats: Stats,
    /// Every socket read of this shard lands here first (see `connection`).
    pub read_scratch: RefCell<Box<[u8]>>,
    /// Per-topic counts for the hot-topic statistics.
    pub hot_topics: RefCell<HotTopics>,
    /// Where CONNECTs go for a decision; `None` accepts every client with no ACL.
    pub authenticator: Option<Authenticator>,
    sweep_tick: Cell<u32>,
    flush_queue: RefCell<Vec<std::rc::Weak<Client>>>,
    flusher: RefCell<Option<Waker>>,
}

impl Shard {
    /// A shard with an empty state, joined to the mesh.
    pub fn new(
        id: ShardId,
        config: Arc<ShardConfig>,
        mesh: Senders<ShardMsg>,
        scratch: usize,
        authenticator: Option<Authenticator>,
    ) -> Rc<Self> {
        Rc::new(Self {
            id,
            mesh,
            state: RefCell::new(State::default()),
            next_conn: Cell::new(1),
            next_token: Cell::new(1),
            stats: Stats::default(),
            read_scratch: RefCell::new(vec![0; scratch].into_boxed_slice()),
            hot_topics: RefCell::new(HotTopics::new(config.hot_topics_max)),
            authenticator,
            sweep_tick: Cell::new(0),
            flush_queue: RefCell::new(Vec::new()),
            flusher: RefCell::new(None),
            config,
        })
    }

    /// This shard's id.
    pub fn id(&self) -> ShardId {
        self.id
    }

    /// The configuration.
    pub fn config(&self) -> &ShardConfig {
        &self.config
    }

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> ConnId {
        let id = self.next_conn.get();
        self.next_conn.set(id + 1);
        ConnId(id)
    }

    fn next_token(&self) -> u64 {
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        token
    }

    fn peers(&self) -> impl Iterator<Item = ShardId> + '_ {
        (0..self.config.shards)
            .map(ShardId)
            .filter(move |s| *s != self.id)
    }

    /// Sends to a peer, waiting while its ring is full. A closed ring means the broker is
    /// shutting down; the message is dropped.
    async fn send(&self, to: ShardId, msg: ShardMsg) {
        if self.mesh.send_to(to.0, msg).await.is_err() {
            Stats::add(&self.stats.mesh_dropped, 1);
        }
    }

    /// Sends from a detached task: used by the mesh receivers, which must never wait on a ring.
    fn send_detached(self: &Rc<Self>, to: ShardId, msg: ShardMsg) {
        let shard = Rc::clone(self);
        glommio::spawn_local(async move { shard.send(to, msg).await }).detach();
    }

    // ----- publishing ----------------------------------------------------------------------

    /// Routes a message published by `origin` (a client on this shard, or the broker itself for
    /// wills): updates the retained index everywhere if RETAIN is set, then sends it once to every
    /// shard with matching subscribers.
    pub async fn publish(self: &Rc<Self>, message: Arc<Message>, origin: Owner) {
        // The broker's own publications ($SYS, through `ShardCommand::Publish` as connection 0)
        // are not client traffic; Mosquitto leaves them out of messages/received too.
        if origin.conn != ConnId(0) {
            self.stats.publish_received();
            self.hot_topics.borrow_mut().record_publish(&message.topic);
        }
        if message.retain {
            let retained = (!message.payload.is_empty()).then(|| Arc::clone(&message));
            self.apply_retain(&message.topic, retained.clone());
            for peer in self.peers() {
                let msg = ShardMsg::Retain {
                    topic: message.topic.clone(),
                    message: retained.clone(),
                };
                self.send(peer, msg).await;
            }
        }
        let mut targets = ShardSet::default();
        self.state
            .borrow()
            .routes
            .for_each_match(&message.topic, |shards| {
                targets = targets.union(*shards);
            });
        let local = targets.contains(self.id);
        targets.remove(self.id);
        for peer in targets.iter() {
            let routed = Routed {
                message: Arc::clone(&message),
                origin,
            };
            self.send(peer, ShardMsg::Publish(routed)).await;
        }
        if local {
            self.deliver_local(&message, origin).await;
        }
    }

    fn apply_retain(&self, topic: &str, message: Option<Arc<Message>>) {
        let mut state = self.state.borrow_mut();
        match message {
            Some(message) => {
                state.retained.set(topic, message);
            }
            None => {
                state.retained.remove(topic);
            }
        }
        self.stats.retained.set(state.retained.len() as u64);
    }

    /// Delivers to this shard's subscribers. A client matched by several filters receives the
    /// message once, at the highest granted QoS [MQTT-3.3.5-1].
    async fn deliver_local(&self, message: &Arc<Message>, origin: Owner) {
        let mut targets: Vec<(Rc<Client>, QoS, bool)> = Vec::new();
        {
            let state = self.state.borrow();
            let mut matched = 0usize;
            state
                .subscriptions
                .for_each_match(&message.topic, |subscribers| {
                    matched += 1;
                    for (conn, options) in subscribers {
                        if options.no_local && origin.shard == self.id && origin.conn == *conn {
                            continue;
                        }
                        let Some(client) = state.clients.get(conn) else {
                            continue;
                        };
                        if !client.can_receive(&message.topic) {
                            continue;
                        }
                        let retain = options.retain_as_published && message.retain;
                        targets.push((Rc::clone(client), options.qos, retain));
                    }
                });
            if matched > 1 {
                targets.sort_by_key(|(client, _, _)| client.conn);
                targets.dedup_by(|later, kept| {
                    if later.0.conn == kept.0.conn {
                        kept.1 = kept.1.max(later.1);
                        kept.2 |= later.2;
                        true
                    } else {
                        false
                    }
                });
            }
        }
        let mut drops = Drops::default();
        for (index, (client, qos, retain)) in targets.iter().enumerate() {
            drops.add(client.deliver(message, *qos, *retain));
            if index % FANOUT_BATCH == FANOUT_BATCH - 1 {
                glommio::yield_if_needed().await;
            }
        }
        self.count_drops(drops);
        self.stats.add_delivered(targets.len() as u64);
    }

    fn count_drops(&self, drops: Drops) {
        Stats::add(&self.stats.dropped_slow, drops.slow_qos0);
        Stats::add(&self.stats.dropped_queue_full, drops.queue_full);
    }

    // ----- subscriptions -------------------------------------------------------------------

    /// Adds a subscription of `client` on this shard. Returns once every shard routes the filter
    /// here, so the SUBACK that follows is truthful.
    pub async fn subscribe(
        self: &Rc<Self>,
        client: &Client,
        filter: &ByteStr,
        options: SubscriptionOptions,
    ) {
        client
            .session
            .borrow_mut()
            .add_subscription(filter.clone(), options);
        let first = {
            let mut state = self.state.borrow_mut();
            let subscribers = state
                .subscriptions
                .get_or_insert_with(filter, Subscribers::new);
            let first = subscribers.is_empty();
            subscribers.insert(client.conn, options);
            if first {
                state
                    .routes
                    .get_or_insert_with(filter, ShardSet::default)
                    .insert(self.id);
            }
            first
        };
        Stats::add(&self.stats.subscriptions, 1);
        self.hot_topics.borrow_mut().record_subscribers(filter, 1);
        if first && self.config.shards > 1 {
            let token = self.next_token();
            let acks = Countdown::new(self.config.shards - 1);
            self.state
                .borrow_mut()
                .route_acks
                .insert(token, Rc::clone(&acks));
            for peer in self.peers() {
                let msg = ShardMsg::RouteAdd {
                    filter: filter.clone(),
                    from: self.id,
                    token,
                };
                self.send(peer, msg).await;
            }
            acks.wait().await;
            self.state.borrow_mut().route_acks.remove(&token);
        }
    }

    /// Removes a subscription of `client`; returns whether it existed.
    pub async fn unsubscribe(&self, client: &Client, filter: &str) -> bool {
        let existed = client.session.borrow_mut().remove_subscription(filter);
        if existed {
            self.remove_subscriber(client.conn, filter).await;
        }
        existed
    }

    async fn remove_subscriber(&self, conn: ConnId, filter: &str) {
        let last = {
            let mut state = self.state.borrow_mut();
            let Some(subscribers) = state.subscriptions.get_mut(filter) else {
                return;
            };
            if subscribers.remove(&conn).is_none() {
                return;
            }
            let last = subscribers.is_empty();
            if last {
                state.subscriptions.remove(filter);
                if let Some(shards) = state.routes.get_mut(filter) {
                    shards.remove(self.id);
                    if shards.is_empty() {
                        state.routes.remove(filter);
                    }
                }
            }
            last
        };
        Stats::sub(&self.stats.subscriptions, 1);
        self.hot_topics.borrow_mut().record_subscribers(filter, -1);
        if last {
            for peer in self.peers() {
                let msg = ShardMsg::RouteRemove {
                    filter: ByteStr::copy_from_str(filter),
                    from: self.id,
                };
                self.send(peer, msg).await;
            }
        }
    }

    /// Removes every subscription of a client from the local trie (its session keeps its list).
    async fn drop_subscriptions(&self, client: &Client) {
        let filters: Vec<ByteStr> = client
            .session
            .borrow()
            .subscriptions()
            .keys()
            .cloned()
            .collect();
        for filter in filters {
            self.remove_subscriber(client.conn, &filter).await;
        }
    }

    /// Sends the retained messages matching `filter` to `client` with RETAIN set [MQTT-3.3.1-8].
    pub fn send_retained(&self, client: &Client, filter: &str, granted: QoS) {
        let mut matches = Vec::new();
        self.state
            .borrow()
            .retained
            .for_each_matching(filter, |_, message| {
                matches.push(Arc::clone(message));
            });
        let mut drops = Drops::default();
        for message in matches {
            drops.add(client.deliver(&message, granted, true));
        }
        self.count_drops(drops);
    }

    // ----- client ids, sessions, takeover --------------------------------------------------

    /// Registers a connecting client on this shard.
    pub fn add_client(&self, client: Rc<Client>) {
        self.state.borrow_mut().clients.insert(client.conn, client);
    }

    /// Claims the client id for `client` at its home shard, takes over the previous owner, and
    /// returns its session if one is to be resumed. `None` from the outer option means the client
    /// was itself taken over meanwhile and must close without CONNACK.
    pub async fn claim(
        self: &Rc<Self>,
        client: &Rc<Client>,
        clean_start: bool,
    ) -> Option<Option<Box<Session>>> {
        let me = Owner {
            shard: self.id,
            conn: client.conn,
        };
        let home = home_shard(&client.client_id, self.config.shards);
        let previous = if home == self.id {
            self.state
                .borrow_mut()
                .registry
                .claim(&client.client_id, me)
        } else {
            let slot = Slot::new();
            self.state
                .borrow_mut()
                .claims
                .insert(client.conn, Rc::clone(&slot));
            self.send(
                home,
                ShardMsg::Claim {
                    client_id: client.client_id.clone(),
                    claimant: me,
                },
            )
            .await;
            slot.wait().await
        };
        let session = match previous {
            None => None,
            Some(previous) if previous.shard == self.id => {
                match self.take_over(previous.conn, me, clean_start).await {
                    TakeoverResult::Done(session) => session,
                    TakeoverResult::Deferred => self.await_handover(client.conn).await,
                }
            }
            Some(previous) => {
                let slot = Slot::new();
                self.state
                    .borrow_mut()
                    .handovers
                    .insert(client.conn, Rc::clone(&slot));
                let msg = ShardMsg::Takeover {
                    previous: previous.conn,
                    by: me,
                    clean_start,
                };
                self.send(previous.shard, msg).await;
                slot.wait().await
            }
        };
        if let Some(next) = client.superseded_by.get() {
            // A newer connection claimed the id while this one was connecting: pass the session on.
            self.remove_client(client.conn);
            self.hand_over(next, session).await;
            return None;
        }
        Some(session)
    }

    async fn await_handover(&self, conn: ConnId) -> Option<Box<Session>> {
        let slot = Slot::new();
        self.state
            .borrow_mut()
            .handovers
            .insert(conn, Rc::clone(&slot));
        slot.wait().await
    }

    async fn hand_over(self: &Rc<Self>, to: Owner, session: Option<Box<Session>>) {
        if to.shard == self.id {
            let slot = self.state.borrow_mut().handovers.remove(&to.conn);
            if let Some(slot) = slot {
                slot.fill(session);
            }
        } else {
            self.send(
                to.shard,
                ShardMsg::Handover {
                    conn: to.conn,
                    session,
                },
            )
            .await;
        }
    }

    /// Takes over the client `previous` on this shard on behalf of `by`.
    async fn take_over(&self, previous: ConnId, by: Owner, clean_start: bool) -> TakeoverResult {
        let client = self.state.borrow().clients.get(&previous).cloned();
        let Some(client) = client else {
            return TakeoverResult::Done(None);
        };
        if client.phase() == Phase::Connecting {
            client.superseded_by.set(Some(by));
            return TakeoverResult::Deferred;
        }
        self.remove_client(previous);
        Stats::add(&self.stats.takeovers, 1);
        if client.phase() == Phase::Offline {
            Stats::sub(&self.stats.sessions_offline, 1);
        }
        client.request_close();
        self.drop_subscriptions(&client).await;
        let keep = !client.clean && !clean_start;
        let session = keep.then(|| Box::new(client.session.borrow_mut().take_state()));
        TakeoverResult::Done(session)
    }

    fn remove_client(&self, conn: ConnId) -> Option<Rc<Client>> {
        self.state.borrow_mut().clients.remove(&conn)
    }

    /// Whether `conn` is still registered here (not taken over).
    pub fn owns(&self, conn: ConnId) -> bool {
        self.state.borrow().clients.contains_key(&conn)
    }

    /// Resumes a handed-over session on `client`: restores its subscriptions in this shard's trie
    /// (routes applied everywhere before returning).
    pub async fn restore_subscriptions(self: &Rc<Self>, client: &Client) {
        let subscriptions: Vec<(ByteStr, SubscriptionOptions)> = client
            .session
            .borrow()
            .subscriptions()
            .iter()
            .map(|(filter, options)| (filter.clone(), *options))
            .collect();
        for (filter, options) in subscriptions {
            self.subscribe(client, &filter, options).await;
        }
    }

    /// Completes a connect: unless a newer connection superseded this one while it was
    /// connecting (then its session is handed on and `false` returned), the client goes online.
    pub async fn go_online(self: &Rc<Self>, client: &Rc<Client>) -> bool {
        let Some(next) = client.superseded_by.get() else {
            client.phase.set(Phase::Online);
            return true;
        };
        self.remove_client(client.conn);
        self.drop_subscriptions(client).await;
        let session = (!client.clean).then(|| Box::new(client.session.borrow_mut().take_state()));
        self.hand_over(next, session).await;
        false
    }

    /// The connection of `client` ended. A clean session is discarded and the id released; a
    /// persistent one stays, offline, collecting messages for its next connection.
    pub async fn disconnected(self: &Rc<Self>, client: &Rc<Client>) {
        client.detach_socket();
        client.outbox.borrow_mut().clear();
        if !self.owns(client.conn) {
            return; // taken over: the new owner has everything
        }
        if client.clean || client.phase() == Phase::Connecting {
            self.remove_client(client.conn);
            self.drop_subscriptions(client).await;
            let owner = Owner {
                shard: self.id,
                conn: client.conn,
            };
            self.release(client.client_id.clone(), owner).await;
        } else {
            client.phase.set(Phase::Offline);
            client.session.borrow_mut().handle_disconnected();
            Stats::add(&self.stats.sessions_offline, 1);
        }
    }

    async fn release(self: &Rc<Self>, client_id: ByteStr, owner: Owner) {
        let home = home_shard(&client_id, self.config.shards);
        if home == self.id {
            self.state.borrow_mut().registry.release(&client_id, owner);
        } else {
            self.send(home, ShardMsg::Release { client_id, owner })
                .await;
        }
    }

    /// Disconnects the client with this id if it is connected here; a persistent session stays.
    pub fn kick(&self, client_id: &str) -> bool {
        let client = self
            .state
            .borrow()
            .clients
            .values()
            .find(|client| client.client_id == client_id && client.phase() == Phase::Online)
            .cloned();
        match client {
            Some(client) => {
                client.request_close();
                true
            }
            None => false,
        }
    }

    /// Replaces a client's access rules and removes the subscriptions they no longer allow.
    async fn update_acl(&self, client_id: &str, acl: Box<SessionAcl>) {
        let client = self
            .state
            .borrow()
            .clients
            .values()
            .find(|c| c.client_id == client_id)
            .cloned();
        let Some(client) = client else { return };
        let revoked: Vec<ByteStr> = client
            .session
            .borrow()
            .subscriptions()
            .keys()
            .filter(|filter| !acl.can_subscribe(filter))
            .cloned()
            .collect();
        *client.acl.borrow_mut() = Some(acl);
        for filter in revoked {
            self.unsubscribe(&client, &filter).await;
        }
    }

    /// This shard's clients, for the admin API.
    pub fn client_infos(&self) -> Vec<ClientInfo> {
        self.state
            .borrow()
            .clients
            .values()
            .map(|client| ClientInfo {
                client_id: client.client_id.to_string(),
                username: client.identity.username.as_ref().map(ToString::to_string),
                peer: client.identity.peer,
                shard: self.id.0,
                connected_since: client.identity.connected_since,
                subscriptions: client.session.borrow().subscriptions().len(),
                connected: client.phase() != Phase::Offline,
            })
            .collect()
    }

    /// Carries out a command from outside the shards.
    pub async fn handle_command(self: &Rc<Self>, command: ShardCommand) {
        match command {
            ShardCommand::Publish(message) => {
                self.publish(
                    message,
                    Owner {
                        shard: self.id,
                        conn: ConnId(0),
                    },
                )
                .await;
            }
            ShardCommand::Kick { client_id, reply } => {
                let _ = reply.try_send(self.kick(&client_id));
            }
            ShardCommand::ListClients { reply } => {
                let _ = reply.try_send(self.client_infos());
            }
            ShardCommand::UpdateAcl { client_id, acl } => self.update_acl(&client_id, acl).await,
        }
    }

    /// Queues a client for the flusher task.
    pub fn schedule_flush(&self, client: std::rc::Weak<Client>) {
        self.flush_queue.borrow_mut().push(client);
        if let Some(waker) = self.flusher.borrow_mut().take() {
            waker.wake();
        }
    }

    /// The flusher's wait: the clients queued since it last ran.
    pub fn flush_batch<'a>(
        &'a self,
        into: &'a mut Vec<std::rc::Weak<Client>>,
    ) -> impl std::future::Future<Output = ()> + 'a {
        std::future::poll_fn(move |cx| {
            let mut queue = self.flush_queue.borrow_mut();
            if queue.is_empty() {
                *self.flusher.borrow_mut() = Some(cx.waker().clone());
                std::task::Poll::Pending
            } else {
                std::mem::swap(&mut *queue, into);
                std::task::Poll::Ready(())
            }
        })
    }

    /// The current idle-sweep tick.
    pub fn sweep_tick(&self) -> u32 {
        self.sweep_tick.get()
    }

    /// Advances the idle sweep: writers parked since the previous sweep or earlier end.
    pub fn retire_writers(&self) {
        let tick = self.sweep_tick.get().wrapping_add(1);
        self.sweep_tick.set(tick);
        for client in self.state.borrow().clients.values() {
            let parked = client.writer_parked.borrow().is_some();
            if parked && tick.wrapping_sub(client.writer_active_tick.get()) >= 2 {
                client.writer_retire.set(true);
                if let Some(waker) = client.writer_parked.borrow_mut().take() {
                    waker.wake();
                }
            }
        }
    }

    /// Asks every connected client to close (shutdown).
    pub fn close_all(&self) {
        let clients: Vec<Rc<Client>> = self.state.borrow().clients.values().cloned().collect();
        for client in clients {
            client.request_close();
        }
    }

    // ----- the mesh ------------------------------------------------------------------------

    /// Applies one message from a peer shard.
    pub async fn handle_mesh(self: &Rc<Self>, msg: ShardMsg) {
        match msg {
            ShardMsg::Publish(routed) => self.deliver_local(&routed.message, routed.origin).await,
            ShardMsg::RouteAdd {
                filter,
                from,
                token,
            } => {
                self.state
                    .borrow_mut()
                    .routes
                    .get_or_insert_with(&filter, ShardSet::default)
                    .insert(from);
                self.send_detached(from, ShardMsg::RouteAck { token });
            }
            ShardMsg::RouteAck { token } => {
                if let Some(acks) = self.state.borrow().route_acks.get(&token) {
                    acks.tick();
                }
            }
            ShardMsg::RouteRemove { filter, from } => {
                let mut state = self.state.borrow_mut();
                if let Some(shards) = state.routes.get_mut(&filter) {
                    shards.remove(from);
                    if shards.is_empty() {
                        state.routes.remove(&filter);
                    }
                }
            }
            ShardMsg::Retain { topic, message } => self.apply_retain(&topic, message),
            ShardMsg::Claim {
                client_id,
                claimant,
            } => {
                let previous = self.state.borrow_mut().registry.claim(&client_id, claimant);
                self.send_detached(
                    claimant.shard,
                    ShardMsg::Claimed {
                        conn: claimant.conn,
                        previous,
                    },
                );
            }
            ShardMsg::Claimed { conn, previous } => {
                let slot = self.state.borrow_mut().claims.remove(&conn);
                if let Some(slot) = slot {
                    slot.fill(previous);
                }
            }
            ShardMsg::Takeover {
                previous,
                by,
                clean_start,
            } => {
                let shard = Rc::clone(self);
                glommio::spawn_local(async move {
                    if let TakeoverResult::Done(session) =
                        shard.take_over(previous, by, clean_start).await
                    {
                        shard.hand_over(by, session).await;
                    }
                })
                .detach();
            }
            ShardMsg::Handover { conn, session } => {
                let slot = self.state.borrow_mut().handovers.remove(&conn);
                if let Some(slot) = slot {
                    slot.fill(session);
                }
            }
            ShardMsg::Release { client_id, owner } => {
                self.state.borrow_mut().registry.release(&client_id, owner);
            }
        }
    }
}
