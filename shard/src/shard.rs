//! One shard's driver: moves work between its [`Router`], the mesh rings, the sockets and the
//! timers. Decisions are the router's; this module only carries them out.
//!
//! A [`Shard`] lives on one executor and is shared by its tasks through `Rc`. Its router sits in
//! a `RefCell` that is borrowed for one input at a time and never across an `.await`; after each
//! input the driver carries out the router's [`Output`]s (`Shard::dispatch`).
//!
//! **Mesh sends never wait.** A message for a peer is put straight into its ring when the ring
//! has room and nothing is queued before it; otherwise it joins that peer's backlog, which one
//! sender task per peer drains in order. So the mesh receivers and the router never block on a
//! full ring (two shards whose rings are both full cannot wait on each other), and messages from
//! one shard to another keep their order. Back-pressure moves to the edge: a connection task
//! that published waits ([`Shard::mesh_room`]) before reading its next packet while any backlog
//! is above the ring's capacity.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future::poll_fn;
use glommio::channels::channel_mesh::Senders;
use glommio::{GlommioError, ResourceType};
use hashbrown::HashMap;

use crate::config::ShardConfig;
use crate::control::{Authenticator, ShardCommand};
use crate::mesh::{ConnId, Owner, ShardId, ShardMsg};
use crate::router::{FanOut, Output, RetainedBatch, Router, BROKER_CONN, RETAINED_SLICE};
use crate::stats::Stats;
use crate::throttle::Throttle;
use crate::writer::{self, FlushQueue, Socket};

/// Deliveries between two yields to the executor during a large fan-out.
const FANOUT_BATCH: usize = 512;

/// Connections that fail before they are online (malformed or missing CONNECT, refusals) log at
/// most this many lines a second per shard: a scanner or a misconfigured fleet cannot flood the log.
const HANDSHAKE_LOG_BURST: u32 = 20;

/// One peer's messages that did not fit its ring yet, in order.
#[derive(Debug, Default)]
struct Backlog {
    queue: RefCell<VecDeque<ShardMsg>>,
    /// A sender task is draining the queue (it may hold a message it is still sending).
    draining: Cell<bool>,
}

/// One shard: see the module doc.
pub struct Shard {
    id: ShardId,
    config: Arc<ShardConfig>,
    router: RefCell<Router>,
    stats: Rc<Stats>,
    mesh: Senders<ShardMsg>,
    backlogs: Vec<Backlog>,
    /// Connection tasks waiting for the backlogs to shrink.
    mesh_waiters: RefCell<Vec<Waker>>,
    sockets: RefCell<HashMap<ConnId, Rc<Socket>>>,
    flush_queue: FlushQueue,
    outputs: RefCell<Vec<Output>>,
    next_conn: Cell<u64>,
    sweep_tick: Cell<u32>,
    /// Every socket read of this shard lands here first (see `connection`).
    pub read_scratch: RefCell<Box<[u8]>>,
    /// Where CONNECTs go for a decision; `None` accepts every client with no ACL.
    pub authenticator: Option<Authenticator>,
    /// Connections per address between accept and CONNACK (see `connection`).
    pub(crate) connecting: RefCell<HashMap<IpAddr, usize>>,
    /// Log lines about connections that failed before CONNECT (see `connection`).
    pub(crate) handshake_errors: RefCell<Throttle>,
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
        let stats = Rc::new(Stats::default());
        Rc::new(Self {
            id,
            router: RefCell::new(Router::new(id, Arc::clone(&config), Rc::clone(&stats))),
            stats,
            mesh,
            backlogs: (0..config.shards).map(|_| Backlog::default()).collect(),
            mesh_waiters: RefCell::new(Vec::new()),
            sockets: RefCell::new(HashMap::new()),
            flush_queue: FlushQueue::default(),
            outputs: RefCell::new(Vec::new()),
            // Connection 0 is the broker itself (`BROKER_CONN`).
            next_conn: Cell::new(BROKER_CONN.0 + 1),
            sweep_tick: Cell::new(0),
            read_scratch: RefCell::new(vec![0; scratch].into_boxed_slice()),
            authenticator,
            connecting: RefCell::new(HashMap::new()),
            handshake_errors: RefCell::new(Throttle::new(
                Duration::from_secs(1),
                HANDSHAKE_LOG_BURST,
            )),
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

    /// This shard's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> ConnId {
        let id = self.next_conn.get();
        self.next_conn.set(id + 1);
        ConnId(id)
    }

    /// Gives one input to the router and carries out what it asks.
    pub fn with_router<T>(self: &Rc<Self>, input: impl FnOnce(&mut Router) -> T) -> T {
        let result = input(&mut self.router.borrow_mut());
        self.dispatch();
        result
    }

    /// Carries out the router's outputs.
    fn dispatch(self: &Rc<Self>) {
        let mut outputs = std::mem::take(&mut *self.outputs.borrow_mut());
        self.router.borrow_mut().drain_outputs(&mut outputs);
        for output in outputs.drain(..) {
            match output {
                Output::Transmit(to, msg) => self.transmit(to, msg),
                Output::Flush(conn) => {
                    if let Some(socket) = self.socket(conn) {
                        socket.wake(self);
                    }
                }
                Output::Close(conn, reason) => {
                    if let Some(socket) = self.socket(conn) {
                        socket.close_for(reason);
                    }
                }
                Output::Ready(conn) => {
                    if let Some(socket) = self.socket(conn) {
                        socket.signal();
                    }
                }
                Output::Retained(batch) => {
                    if let Some(socket) = self.socket(batch.conn()) {
                        let shard = Rc::clone(self);
                        glommio::spawn_local(async move {
                            shard.send_retained(&socket, batch).await;
                        })
                        .detach();
                    }
                }
            }
        }
        *self.outputs.borrow_mut() = outputs;
    }

    // ----- sockets ---------------------------------------------------------------------------

    fn socket(&self, conn: ConnId) -> Option<Rc<Socket>> {
        self.sockets.borrow().get(&conn).cloned()
    }

    /// Registers the socket of a new connection.
    pub fn add_socket(&self, socket: &Rc<Socket>) {
        self.sockets
            .borrow_mut()
            .insert(socket.conn(), Rc::clone(socket));
    }

    /// Forgets the socket of a connection that ended.
    pub fn remove_socket(&self, conn: ConnId) {
        self.sockets.borrow_mut().remove(&conn);
    }

    pub(crate) fn flush_queue(&self) -> &FlushQueue {
        &self.flush_queue
    }

    pub(crate) fn pending_bytes(&self, conn: ConnId) -> usize {
        self.router
            .borrow_mut()
            .session_mut(conn)
            .map_or(0, |session| session.pending_bytes())
    }

    pub(crate) fn poll_transmit(&self, conn: ConnId, into: &mut Vec<Bytes>) {
        if let Some(session) = self.router.borrow_mut().session_mut(conn) {
            session.poll_transmit(into);
        }
    }

    pub(crate) fn restore_transmit(&self, conn: ConnId, chunks: Vec<Bytes>) {
        if let Some(session) = self.router.borrow_mut().session_mut(conn) {
            session.restore_transmit(chunks);
        }
    }

    /// Moves queued messages of `conn` into its window after a send; wakes its writer if that
    /// gave it bytes to send.
    pub(crate) fn release_queued(self: &Rc<Self>, conn: ConnId) {
        if self.router.borrow_mut().release_queued(conn) {
            if let Some(socket) = self.socket(conn) {
                socket.wake(self);
            }
        }
    }

    /// The current idle-sweep tick.
    pub fn sweep_tick(&self) -> u32 {
        self.sweep_tick.get()
    }

    /// Advances the idle sweep: writers parked since the previous sweep or earlier end.
    pub fn retire_writers(&self) {
        let tick = self.sweep_tick.get().wrapping_add(1);
        self.sweep_tick.set(tick);
        writer::retire_idle(self.sockets.borrow().values(), tick);
    }

    /// Asks every connection to close (shutdown).
    pub fn close_all(self: &Rc<Self>) {
        self.with_router(Router::close_all);
    }

    // ----- publishing ------------------------------------------------------------------------

    /// Delivers a fan-out that fits one slice at once, without a future; returns a larger one,
    /// for [`Shard::fan_out`].
    pub fn fan_out_now(self: &Rc<Self>, fanout: FanOut) -> Option<FanOut> {
        if fanout.len() > FANOUT_BATCH {
            return Some(fanout);
        }
        self.with_router(|router| router.deliver(&fanout, 0..fanout.len()));
        None
    }

    /// Delivers a fan-out in slices, yielding to the executor between them.
    pub async fn fan_out(self: &Rc<Self>, fanout: FanOut) {
        let len = fanout.len();
        let mut start = 0;
        while start < len {
            let end = (start + FANOUT_BATCH).min(len);
            self.with_router(|router| router.deliver(&fanout, start..end));
            start = end;
            if start < len {
                glommio::yield_if_needed().await;
            }
        }
    }

    /// Delivers a large batch of retained messages a slice at a time, each slice once the
    /// client's outbox is below its bound, so one SUBSCRIBE over many retained messages neither
    /// holds the shard nor fills memory.
    async fn send_retained(self: &Rc<Self>, socket: &Rc<Socket>, batch: RetainedBatch) {
        let mut start = RETAINED_SLICE;
        while start < batch.len() && !socket.is_closed() {
            if self.pending_bytes(socket.conn()) > self.config.session.max_outbox_bytes {
                writer::flush_now(self, socket);
                socket.writer_idle().await;
                continue;
            }
            let end = (start + RETAINED_SLICE).min(batch.len());
            self.with_router(|router| router.deliver_retained(&batch, start..end));
            start = end;
            futures_lite::future::yield_now().await;
        }
    }

    // ----- the mesh --------------------------------------------------------------------------

    fn transmit(self: &Rc<Self>, to: ShardId, msg: ShardMsg) {
        let backlog = &self.backlogs[to.0];
        let msg = if !backlog.draining.get() {
            match self.mesh.try_send_to(to.0, msg) {
                Ok(()) => return,
                Err(GlommioError::WouldBlock(ResourceType::Channel(msg))) => msg,
                Err(_) => {
                    // A closed ring: the broker is shutting down.
                    Stats::add(&self.stats.mesh_dropped, 1);
                    return;
                }
            }
        } else {
            msg
        };
        backlog.queue.borrow_mut().push_back(msg);
        if !backlog.draining.replace(true) {
            let shard = Rc::clone(self);
            glommio::spawn_local(async move { shard.drain_backlog(to).await }).detach();
        }
    }

    /// Sends a peer's backlog in order, waiting for ring space; ends when the backlog is empty
    /// (new messages then go straight into the ring again).
    async fn drain_backlog(self: Rc<Self>, to: ShardId) {
        let backlog = &self.backlogs[to.0];
        loop {
            let Some(msg) = backlog.queue.borrow_mut().pop_front() else {
                break;
            };
            if self.mesh.send_to(to.0, msg).await.is_err() {
                // A closed ring: the broker is shutting down.
                Stats::add(&self.stats.mesh_dropped, 1);
            }
            if backlog.queue.borrow().len() < self.config.mesh_capacity {
                for waker in self.mesh_waiters.borrow_mut().drain(..) {
                    waker.wake();
                }
            }
        }
        backlog.draining.set(false);
    }

    /// Whether any peer's backlog is at or above the ring capacity (see the module doc).
    pub fn mesh_full(&self) -> bool {
        self.backlogs
            .iter()
            .any(|backlog| backlog.queue.borrow().len() >= self.config.mesh_capacity)
    }

    /// Waits while [`Shard::mesh_full`].
    pub async fn mesh_room(&self) {
        poll_fn(|cx| {
            if self.mesh_full() {
                self.mesh_waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
    }

    /// Applies one message from a peer shard.
    pub async fn handle_mesh(self: &Rc<Self>, msg: ShardMsg) {
        let fanout = self.with_router(|router| router.handle_mesh(msg));
        if let Some(large) = fanout.and_then(|fanout| self.fan_out_now(fanout)) {
            self.fan_out(large).await;
        }
    }

    // ----- commands --------------------------------------------------------------------------

    /// Carries out a command from outside the shards.
    pub async fn handle_command(self: &Rc<Self>, command: ShardCommand) {
        match command {
            ShardCommand::Publish(message) => {
                let origin = Owner {
                    shard: self.id,
                    conn: BROKER_CONN,
                };
                if let Some(fanout) = self.with_router(|router| router.publish(message, origin)) {
                    self.fan_out(fanout).await;
                }
            }
            ShardCommand::Kick { client_id, reply } => {
                let _ = reply.try_send(self.with_router(|router| router.kick(&client_id)));
            }
            ShardCommand::ListClients { filter, reply } => {
                let _ = reply.try_send(self.router.borrow().client_infos(&filter));
            }
            ShardCommand::Client { client_id, reply } => {
                let details = self
                    .router
                    .borrow()
                    .client_details(&client_id, Instant::now());
                let _ = reply.try_send(details);
            }
            ShardCommand::PurgeSession { client_id, reply } => {
                let _ = reply.try_send(self.with_router(|router| router.purge_session(&client_id)));
            }
            ShardCommand::UpdateAcls { updates, reply } => {
                let updated = self.with_router(|router| router.update_acls(updates));
                let _ = reply.try_send(updated);
            }
        }
    }
}
