//! One MQTT client: its own task reads, a second task writes.
//!
//! The **reader** (the client's task) connects, then loops: wait for readability, read what is
//! there into the connection's buffer, decode every complete packet, act on each (record a
//! delivery, queue an acknowledgement, free an inflight slot), record the whole batch in the
//! thread's stats shard and wake the writer once. The handshake (CONNACK, then SUBACK) is the first
//! stage of the same loop.
//!
//! The **writer** owns the socket's write half and is the only task that writes. Whatever the
//! reader queues (PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE) and whatever this client publishes go
//! into one buffer that is written with one `write_all`, so a burst of acknowledgements or a batch
//! of publications costs one system call. The reader and writer share only a small mutex-guarded
//! [`ConnState`] (the outgoing buffer and the inflight window); the writer swaps its buffer with
//! the shared one instead of copying. Steady traffic allocates nothing per message: decoded
//! topics and payloads are slices of the read buffer, whose space is reused once they are dropped.
//! A connection that goes quiet releases its read buffer and allocates one again at its next read.
//!
//! Publications carry the measurement header of [`crate::payload`]; the writer encodes each PUBLISH
//! header with [`Publish::encode_header`] and appends the payload in place.

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use shardmq_codec::{
    encode, ByteStr, ConnAck, Connect, Decoder, Disconnect, Packet, PacketId, Properties, PubAck,
    PubComp, PubRec, PubRel, Publish, QoS, ReasonCode, SubAck, Subscribe, SubscribeFilter,
    SubscriptionOptions,
};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Notify, Semaphore, SemaphorePermit};
use tokio::time::{sleep_until, Instant};

use crate::payload::Stamp;
use crate::plan::{GroupPlan, Plan, PublishPlan};
use crate::report::SUBSCRIBE_FAILURE;
use crate::stats::{lock, Batch, Counters, Receipt, Stats, Tracker};
use crate::sys::{self, Epoch};

/// The phases of a run, in order. Every task watches the current one.
#[derive(Clone, Copy, Debug, Eq, Ord, PartialEq, PartialOrd)]
pub(crate) enum Phase {
    /// Clients connect and subscribe.
    Connect,
    /// Publishers publish (and everyone keeps receiving through the drain).
    Publish,
    /// Clients send DISCONNECT and close.
    Finish,
    /// Interrupted: close as fast as possible.
    Stop,
}

/// Reads per readiness notification before the reader looks at the phase again.
const READS_PER_WAKE: usize = 16;
/// Free space to have in the read buffer before a read.
const READ_CHUNK: usize = 4096;
/// A read shorter than this that empties the buffer releases it: idle connections hold no buffer.
const SMALL_READ: usize = 512;
/// Publications encoded per writer turn, so acknowledgements are not starved.
const PUBLISH_BATCH: usize = 64;

/// What every client of one worker shares.
pub(crate) struct Shared {
    pub plan: Arc<Plan>,
    pub epoch: Epoch,
    pub run_tag: u32,
    pub stats: Arc<Stats>,
    pub phase: watch::Receiver<Phase>,
    pub addr: SocketAddr,
    pub src_ips: u32,
    pub max_packet_size: usize,
    pub session_expiry: u32,
    pub inflight: u16,
    pub publish_duration: Duration,
    pub connect_timeout: Duration,
    /// Client `g` starts connecting at `ramp_start + g × connect_interval`.
    pub ramp_start: Instant,
    pub connect_interval: Option<Duration>,
    pub connect_slots: Semaphore,
    pub handshakes_left: AtomicU32,
    pub handshakes_done: Notify,
    pub publishers_left: AtomicU32,
    pub publishers_done: Notify,
    /// (rank, messages sent) of every publisher that has finished.
    pub sent: Mutex<Vec<(u32, u64)>>,
}

impl Shared {
    fn connect_failed(&self, reason: String) {
        self.stats.with(|shard| {
            shard.counters.connect_failed += 1;
            *shard.connect_failures.entry(reason).or_default() += 1;
        });
    }

    fn publisher_finished(&self, rank: u32, sent: u64) {
        lock(&self.sent).push((rank, sent));
        if self.publishers_left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.publishers_done.notify_one();
        }
    }
}

/// Runs client `global` until the run finishes or its connection ends.
pub(crate) async fn run(shared: Arc<Shared>, global: u32, expected: Option<Arc<[u32]>>) {
    let (group_index, index) = shared.plan.locate(global);
    let group = &shared.plan.groups[group_index];
    let mut handshake = HandshakeGuard {
        shared: &shared,
        done: false,
    };
    let publisher = group
        .publish
        .as_ref()
        .map(|plan| Publisher::new(shared.clone(), group.qos, plan, index, global));
    let mut phase = shared.phase.clone();

    if let Some(interval) = shared.connect_interval {
        let at = shared.ramp_start + interval * global;
        if until_finished(&mut phase, sleep_until(at)).await.is_none() {
            return;
        }
    }
    let permit = match until_finished(&mut phase, shared.connect_slots.acquire()).await {
        Some(Ok(permit)) => permit,
        // The semaphore is never closed; a closed one means the worker is going away.
        Some(Err(_)) | None => return,
    };
    let deadline = Instant::now() + shared.connect_timeout;
    let stream = match until_finished(
        &mut phase,
        tokio::time::timeout_at(deadline, open(&shared, global)),
    )
    .await
    {
        None => return,
        Some(Err(_elapsed)) => return shared.connect_failed("timeout".into()),
        Some(Ok(Err(err))) => return shared.connect_failed(io_reason(&err)),
        Some(Ok(Ok(stream))) => stream,
    };

    let (rd, wr) = stream.into_split();
    let conn = Arc::new(Conn::new(shared.inflight));
    let connect = connect_packet(&shared, group, index, global);
    let sent_ns = shared.epoch.now_ns();
    if conn
        .with(|state| {
            encode(
                &Packet::Connect(Box::new(connect)),
                shared.plan.protocol,
                &mut state.out,
            )
        })
        .is_err()
    {
        return shared.connect_failed("CONNECT does not encode".into());
    }
    let writer = tokio::spawn(write_loop(
        shared.clone(),
        conn.clone(),
        wr,
        group.keepalive,
        publisher,
    ));

    let mut reader = Reader {
        shared: &shared,
        conn: &conn,
        group,
        index,
        global,
        stage: Stage::ConnAck { sent_ns },
        permit: Some(permit),
        tracker: expected.map(|expected| Tracker::new(shared.run_tag, expected)),
        batch: Batch::new(),
        now_ns: sent_ns,
        wake_writer: false,
    };
    let end = reader.run(&rd, deadline, &mut handshake).await;
    reader.finish(end, &conn);
    drop(reader);
    handshake.done();
    let _ = writer.await;
}

/// Runs `future` unless the run finishes first.
async fn until_finished<F: std::future::Future>(
    phase: &mut watch::Receiver<Phase>,
    future: F,
) -> Option<F::Output> {
    tokio::select! {
        out = future => Some(out),
        _ = phase.wait_for(|phase| *phase >= Phase::Finish) => None,
    }
}

/// Opens the TCP connection, from source address `127.0.0.(1 + global % src_ips)` when the run
/// spreads source addresses.
async fn open(shared: &Shared, global: u32) -> io::Result<TcpStream> {
    let socket = match shared.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if shared.src_ips > 0 {
        let source = Ipv4Addr::from(u32::from(Ipv4Addr::LOCALHOST) + global % shared.src_ips);
        sys::set_bind_address_no_port(&socket)?;
        socket.bind(SocketAddr::new(source.into(), 0))?;
    }
    let stream = socket.connect(shared.addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn connect_packet(shared: &Shared, group: &GroupPlan, index: u32, global: u32) -> Connect {
    let protocol = shared.plan.protocol;
    let mut properties = Properties::default();
    if protocol.is_v5() && shared.session_expiry > 0 {
        properties.session_expiry_interval = Some(shared.session_expiry);
    }
    Connect {
        protocol,
        clean_start: group.clean,
        keep_alive: group.keepalive,
        client_id: ByteStr::from(group.client_id.render(index, global)),
        will: None,
        username: group
            .username
            .as_ref()
            .map(|t| ByteStr::from(t.render(index, global))),
        password: group
            .password
            .as_ref()
            .map(|t| Bytes::from(t.render(index, global))),
        properties,
    }
}

/// A short, stable name for an I/O failure, to count failures by reason.
fn io_reason(err: &io::Error) -> String {
    match (err.kind(), err.raw_os_error()) {
        (_, Some(libc::EMFILE | libc::ENFILE)) => "out of file descriptors".into(),
        (io::ErrorKind::ConnectionRefused, _) => "connection refused".into(),
        (io::ErrorKind::ConnectionReset, _) => "connection reset".into(),
        (io::ErrorKind::ConnectionAborted, _) => "connection aborted".into(),
        (io::ErrorKind::BrokenPipe, _) => "broken pipe".into(),
        (io::ErrorKind::TimedOut, _) => "timeout".into(),
        (io::ErrorKind::AddrNotAvailable, _) => "no local address or port available".into(),
        (kind, _) => format!("{kind:?}"),
    }
}

/// Counts the client's handshake as over (connected, refused or abandoned) exactly once, so the
/// worker knows when every client has had its turn.
struct HandshakeGuard<'a> {
    shared: &'a Shared,
    done: bool,
}

impl HandshakeGuard<'_> {
    fn done(&mut self) {
        if !std::mem::replace(&mut self.done, true)
            && self.shared.handshakes_left.fetch_sub(1, Ordering::AcqRel) == 1
        {
            self.shared.handshakes_done.notify_one();
        }
    }
}

impl Drop for HandshakeGuard<'_> {
    fn drop(&mut self) {
        self.done();
    }
}

/// The state the reader and the writer of one connection share.
struct Conn {
    state: Mutex<ConnState>,
    /// Wakes the writer: bytes queued, an inflight slot freed, or the connection closed.
    wake: Notify,
}

struct ConnState {
    /// Bytes the writer sends next.
    out: BytesMut,
    /// The connection is gone (the reader saw it end); the writer stops.
    closed: bool,
    /// Unacknowledged QoS 1/2 publications allowed at once.
    window: usize,
    /// (packet id, publish time in ns) of unacknowledged QoS 1/2 publications, oldest first.
    inflight: VecDeque<(u16, u64)>,
}

impl Conn {
    fn new(window: u16) -> Self {
        Self {
            state: Mutex::new(ConnState {
                out: BytesMut::new(),
                closed: false,
                window: window.into(),
                inflight: VecDeque::new(),
            }),
            wake: Notify::new(),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut ConnState) -> R) -> R {
        f(&mut lock(&self.state))
    }

    fn close(&self) {
        self.with(|state| state.closed = true);
        self.wake.notify_one();
    }
}

impl ConnState {
    /// Removes `id` from the inflight window, giving back its publish time.
    fn take_inflight(&mut self, id: PacketId) -> Option<u64> {
        let position = self
            .inflight
            .iter()
            .position(|&(inflight, _)| inflight == id.get())?;
        self.inflight.remove(position).map(|(_, sent_ns)| sent_ns)
    }
}

/// Where the handshake is.
#[derive(Clone, Copy)]
enum Stage {
    ConnAck { sent_ns: u64 },
    SubAck { sent_ns: u64 },
    Ready,
}

/// How the reader's loop ended.
enum End {
    /// The run told the client to finish.
    Finished,
    /// The connection ended or broke, for this reason.
    Closed(String),
}

struct Reader<'a> {
    shared: &'a Shared,
    conn: &'a Conn,
    group: &'a GroupPlan,
    index: u32,
    global: u32,
    stage: Stage,
    /// The connect slot, held until the handshake is over.
    permit: Option<SemaphorePermit<'a>>,
    tracker: Option<Tracker>,
    batch: Batch,
    /// Receive time of the current read, in ns since the epoch.
    now_ns: u64,
    wake_writer: bool,
}

impl Reader<'_> {
    async fn run(
        &mut self,
        rd: &OwnedReadHalf,
        deadline: Instant,
        handshake: &mut HandshakeGuard<'_>,
    ) -> End {
        let mut phase = self.shared.phase.clone();
        let mut buf = BytesMut::new();
        let mut decoder =
            Decoder::with_protocol(self.shared.max_packet_size, self.shared.plan.protocol);
        loop {
            let handshaking = !matches!(self.stage, Stage::Ready);
            tokio::select! {
                ready = rd.readable() => {
                    if let Err(err) = ready {
                        return End::Closed(io_reason(&err));
                    }
                }
                changed = phase.changed() => {
                    if changed.is_err() || *phase.borrow() >= Phase::Finish {
                        return End::Finished;
                    }
                    continue;
                }
                _ = sleep_until(deadline), if handshaking => {
                    return End::Closed("timeout".into());
                }
            }
            for _ in 0..READS_PER_WAKE {
                buf.reserve(READ_CHUNK);
                let spare = buf.capacity() - buf.len();
                let read = match rd.try_read_buf(&mut buf) {
                    Ok(0) => return End::Closed("closed by broker".into()),
                    Ok(read) => read,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(err) => return End::Closed(io_reason(&err)),
                };
                self.now_ns = self.shared.epoch.now_ns();
                let decoded = loop {
                    match decoder.decode(&mut buf) {
                        Ok(Some(packet)) => {
                            if let Err(end) = self.handle(packet) {
                                break Err(end);
                            }
                        }
                        Ok(None) => break Ok(()),
                        Err(err) => break Err(End::Closed(format!("malformed packet: {err}"))),
                    }
                };
                self.flush();
                if matches!(self.stage, Stage::Ready) {
                    handshake.done();
                }
                if let Err(end) = decoded {
                    return end;
                }
                if buf.is_empty() && read < SMALL_READ {
                    buf = BytesMut::new();
                }
                if read < spare {
                    break;
                }
            }
        }
    }

    /// Records the batch and wakes the writer if anything was queued for it.
    fn flush(&mut self) {
        self.batch.flush(&self.shared.stats);
        if std::mem::take(&mut self.wake_writer) {
            self.conn.wake.notify_one();
        }
    }

    fn handle(&mut self, packet: Packet) -> Result<(), End> {
        match packet {
            Packet::Publish(publish) => self.on_publish(publish),
            Packet::PubAck(ack) => {
                self.on_ack(ack.packet_id, ack.code);
                Ok(())
            }
            Packet::PubRec(rec) if rec.code.is_error() => {
                self.on_ack(rec.packet_id, rec.code);
                Ok(())
            }
            Packet::PubRec(rec) => self.send(&Packet::PubRel(PubRel::new(rec.packet_id))),
            Packet::PubComp(comp) => {
                self.on_ack(comp.packet_id, comp.code);
                Ok(())
            }
            Packet::PubRel(rel) => self.send(&Packet::PubComp(PubComp::new(rel.packet_id))),
            Packet::ConnAck(connack) => self.on_connack(connack),
            Packet::SubAck(suback) => self.on_suback(suback),
            Packet::PingResp => Ok(()),
            Packet::Disconnect(Disconnect { code, .. }) => {
                Err(End::Closed(format!("DISCONNECT from broker ({code:?})")))
            }
            other => Err(End::Closed(format!(
                "unexpected {:?} from broker",
                other.packet_type()
            ))),
        }
    }

    /// Queues `packet` for the writer.
    fn send(&mut self, packet: &Packet) -> Result<(), End> {
        let protocol = self.shared.plan.protocol;
        self.conn
            .with(|state| encode(packet, protocol, &mut state.out))
            .map_err(|err| End::Closed(format!("encode: {err}")))?;
        self.wake_writer = true;
        Ok(())
    }

    fn on_connack(&mut self, connack: ConnAck) -> Result<(), End> {
        let Stage::ConnAck { sent_ns } = self.stage else {
            return Err(End::Closed("unexpected CONNACK".into()));
        };
        if connack.code.is_error() {
            return Err(End::Closed(format!("CONNACK {:?}", connack.code)));
        }
        let latency = self.now_ns.saturating_sub(sent_ns).max(1);
        self.shared.stats.with(|shard| {
            shard.connect.saturating_record(latency);
            shard.counters.connected += 1;
        });
        if let Some(max) = connack.properties.receive_maximum {
            self.conn
                .with(|state| state.window = state.window.min(max.into()));
        }
        if self.group.subscribe.is_empty() {
            self.ready();
            return Ok(());
        }
        let options = SubscriptionOptions {
            qos: self.group.qos,
            ..SubscriptionOptions::default()
        };
        let filters = self
            .group
            .subscribe
            .iter()
            .map(|template| SubscribeFilter {
                filter: ByteStr::from(template.render(self.index, self.global)),
                options,
            })
            .collect();
        let packet_id = PacketId::new(1).ok_or_else(|| End::Closed("packet id".into()))?;
        self.send(&Packet::Subscribe(Subscribe {
            packet_id,
            filters,
            properties: Properties::default(),
        }))?;
        self.stage = Stage::SubAck {
            sent_ns: self.now_ns,
        };
        Ok(())
    }

    fn on_suback(&mut self, suback: SubAck) -> Result<(), End> {
        let Stage::SubAck { sent_ns } = self.stage else {
            return Err(End::Closed("unexpected SUBACK".into()));
        };
        let refused = suback.codes.iter().any(|code| code.is_error());
        let latency = self.now_ns.saturating_sub(sent_ns).max(1);
        self.shared.stats.with(|shard| {
            shard.subscribe.saturating_record(latency);
            if refused {
                shard.counters.subscribe_failed += 1;
                *shard
                    .connect_failures
                    .entry(format!("{SUBSCRIBE_FAILURE}SUBACK refused"))
                    .or_default() += 1;
            } else {
                shard.counters.subscribed += 1;
            }
        });
        self.ready();
        Ok(())
    }

    fn ready(&mut self) {
        self.stage = Stage::Ready;
        self.permit = None;
    }

    fn on_publish(&mut self, publish: Publish) -> Result<(), End> {
        if matches!(self.stage, Stage::ConnAck { .. }) {
            return Err(End::Closed("PUBLISH before CONNACK".into()));
        }
        self.batch.counters().received += 1;
        let receipt = match (Stamp::read(&publish.payload), &mut self.tracker) {
            (Some(stamp), Some(tracker)) => match tracker.receive(&stamp) {
                Receipt::First => {
                    self.batch
                        .delivery(&self.shared.stats, stamp.sent_ns, self.now_ns);
                    Receipt::First
                }
                other => other,
            },
            _ => Receipt::Unexpected,
        };
        match receipt {
            Receipt::First => {}
            Receipt::Duplicate => self.batch.counters().duplicates += 1,
            Receipt::Unexpected => self.batch.counters().unexpected += 1,
        }
        match (publish.qos, publish.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => self.send(&Packet::PubAck(PubAck::new(id))),
            (QoS::ExactlyOnce, Some(id)) => self.send(&Packet::PubRec(PubRec::new(id))),
            _ => Ok(()),
        }
    }

    /// A PUBACK, a PUBCOMP or a refusing PUBREC for one of this client's publications.
    fn on_ack(&mut self, id: PacketId, code: ReasonCode) {
        let Some(sent_ns) = self.conn.with(|state| state.take_inflight(id)) else {
            return;
        };
        if code.is_error() {
            self.batch.counters().rejected += 1;
        } else {
            self.batch
                .ack(&self.shared.stats, self.now_ns.saturating_sub(sent_ns));
        }
        self.wake_writer = true;
    }

    /// Counts how the connection ended.
    fn finish(&mut self, end: End, conn: &Conn) {
        self.flush();
        if !matches!(self.stage, Stage::ConnAck { .. }) {
            self.shared.stats.with(|shard| shard.counters.closed += 1);
        }
        let End::Closed(reason) = end else { return };
        conn.close();
        match self.stage {
            Stage::ConnAck { .. } => self.shared.connect_failed(reason),
            Stage::SubAck { .. } => self.shared.stats.with(|shard| {
                shard.counters.subscribe_failed += 1;
                *shard
                    .connect_failures
                    .entry(format!("{SUBSCRIBE_FAILURE}{reason}"))
                    .or_default() += 1;
            }),
            Stage::Ready if *self.shared.phase.borrow() < Phase::Finish => {
                self.shared.stats.with(|shard| {
                    shard.counters.dropped += 1;
                    *shard.drops.entry(reason).or_default() += 1;
                });
            }
            Stage::Ready => {}
        }
    }
}

/// The writer task: see the module doc.
async fn write_loop(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    mut wr: OwnedWriteHalf,
    keepalive: u16,
    mut publisher: Option<Publisher>,
) {
    let protocol = shared.plan.protocol;
    let mut phase = shared.phase.clone();
    let mut out = BytesMut::new();
    let ping_every = (keepalive > 0).then(|| Duration::from_secs(keepalive.into()) / 2);
    let mut last_write = Instant::now();
    loop {
        let current = *phase.borrow_and_update();
        let closed = conn.with(|state| {
            std::mem::swap(&mut state.out, &mut out);
            if let (Phase::Publish, false, Some(publisher)) =
                (current, state.closed, &mut publisher)
            {
                publisher.fill(state, &mut out);
            }
            state.closed
        });
        if current >= Phase::Finish {
            if let Some(publisher) = &mut publisher {
                publisher.finish();
            }
            if !closed
                && encode(
                    &Packet::Disconnect(Disconnect::default()),
                    protocol,
                    &mut out,
                )
                .is_ok()
            {
                let grace = Duration::from_secs(if current == Phase::Stop { 1 } else { 5 });
                let _ = tokio::time::timeout(grace, async {
                    wr.write_all(&out).await?;
                    wr.shutdown().await
                })
                .await;
            }
            return;
        }
        if closed {
            return;
        }
        if !out.is_empty() {
            let written = tokio::select! {
                written = wr.write_all(&out) => written,
                // A write the broker does not take before the run ends is abandoned.
                _ = phase.wait_for(|phase| *phase >= Phase::Finish) => return,
            };
            if written.is_err() {
                conn.close();
                return;
            }
            out.clear();
            last_write = Instant::now();
            continue;
        }
        let publish_at = publisher
            .as_ref()
            .and_then(|publisher| publisher.wake_at(current));
        let ping_at = ping_every.map(|every| last_write + every);
        tokio::select! {
            _ = conn.wake.notified() => {}
            changed = phase.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = sleep_until_some(publish_at) => {}
            _ = sleep_until_some(ping_at) => {
                let _ = conn.with(|state| encode(&Packet::PingReq, protocol, &mut state.out));
            }
        }
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Messages a publisher may send at most: the sequence number is 32 bits.
const MAX_MESSAGES: u64 = 1 << 32;

/// One client's publishing schedule and counts. Reports its count to the worker exactly once:
/// when done, when the run ends, or when dropped (a publisher that never connected sent 0).
struct Publisher {
    shared: Arc<Shared>,
    rank: u32,
    topic: ByteStr,
    qos: QoS,
    retain: bool,
    payload_len: usize,
    /// A payload-sized placeholder: `encode_header` sizes the packet from it, and the real
    /// payload is then appended in place.
    placeholder: Bytes,
    limit: u64,
    interval_ns: Option<f64>,
    sent: u64,
    next_id: u16,
    /// When publishing began, as an instant and as ns since the epoch.
    start: Option<(Instant, u64)>,
    done: bool,
}

impl Publisher {
    fn new(shared: Arc<Shared>, qos: QoS, plan: &PublishPlan, index: u32, global: u32) -> Self {
        Self {
            rank: plan.first_rank + index,
            topic: ByteStr::from(plan.topic.render(index, global)),
            qos,
            retain: plan.retain,
            payload_len: plan.payload,
            placeholder: Bytes::from(vec![0; plan.payload]),
            limit: if plan.messages == 0 {
                MAX_MESSAGES
            } else {
                plan.messages.min(MAX_MESSAGES)
            },
            interval_ns: (plan.rate > 0.0).then(|| 1e9 / plan.rate),
            sent: 0,
            next_id: 1,
            start: None,
            done: false,
            shared,
        }
    }

    /// Encodes the publications that are due and fit in the inflight window into `out`.
    fn fill(&mut self, state: &mut ConnState, out: &mut BytesMut) {
        if self.done {
            return;
        }
        let epoch = self.shared.epoch;
        let (_, start_ns) = *self
            .start
            .get_or_insert_with(|| (Instant::now(), epoch.now_ns()));
        let mut now_ns = epoch.now_ns();
        if now_ns.saturating_sub(start_ns) >= self.shared.publish_duration.as_nanos() as u64 {
            return self.finish();
        }
        let mut counters = Counters::default();
        for _ in 0..PUBLISH_BATCH {
            if self.sent >= self.limit {
                self.finish();
                break;
            }
            if let Some(interval) = self.interval_ns {
                if start_ns + (self.sent as f64 * interval) as u64 > now_ns {
                    break;
                }
            }
            let packet_id = if self.qos == QoS::AtMostOnce {
                None
            } else {
                let id = self.next_id;
                // Ids are handed out in order, so only the oldest inflight one can still hold `id`.
                if state.inflight.len() >= state.window
                    || state
                        .inflight
                        .front()
                        .is_some_and(|&(oldest, _)| oldest == id)
                {
                    break;
                }
                self.next_id = id.checked_add(1).unwrap_or(1);
                PacketId::new(id)
            };
            let publish = Publish {
                dup: false,
                qos: self.qos,
                retain: self.retain,
                topic: self.topic.clone(),
                packet_id,
                properties: Properties::default(),
                payload: self.placeholder.clone(),
            };
            if publish
                .encode_header(self.shared.plan.protocol, out)
                .is_err()
            {
                self.finish();
                break;
            }
            now_ns = epoch.now_ns();
            if let Some(id) = packet_id {
                state.inflight.push_back((id.get(), now_ns));
            }
            let stamp = Stamp {
                run_tag: self.shared.run_tag,
                publisher: self.rank,
                sent_ns: now_ns,
                seq: self.sent as u32,
            };
            stamp.write(self.payload_len, out);
            self.sent += 1;
            counters.published += 1;
            counters.needs_ack += u64::from(packet_id.is_some());
            counters.first_publish_ns = counters.first_publish_ns.or(Some(now_ns));
            counters.last_publish_ns = Some(now_ns);
        }
        if counters.published > 0 {
            self.shared
                .stats
                .with(|shard| shard.counters.add(&counters));
        }
    }

    /// When the writer should look at this publisher again without being woken.
    fn wake_at(&self, phase: Phase) -> Option<Instant> {
        if self.done || phase != Phase::Publish {
            return None;
        }
        let (start, _) = self.start?;
        let end = start + self.shared.publish_duration;
        Some(match self.interval_ns {
            Some(interval) => {
                (start + Duration::from_nanos((self.sent as f64 * interval) as u64)).min(end)
            }
            None => end,
        })
    }

    fn finish(&mut self) {
        if !std::mem::replace(&mut self.done, true) {
            self.shared.publisher_finished(self.rank, self.sent);
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.finish();
    }
}
