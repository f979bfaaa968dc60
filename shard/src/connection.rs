//! The connection task: the one place where MQTT packets are read from a socket.
//!
//! Each accepted connection runs one task on its shard. It reads CONNECT, asks the control core,
//! hands the client to the [`Router`], and then feeds it every packet it decodes; what the router
//! answers is written by the [`writer`], mostly without this task. The task waits
//! only where the protocol makes the client wait: for the CONNACK, and for a SUBACK whose routes
//! peer shards are still acknowledging.
//!
//! Memory for idle connections stays small: reads land in one scratch buffer per shard and only
//! the bytes of an incomplete packet are kept per connection; an empty read buffer is released.
//! The handshake and the teardown run in boxed futures that exist only while they run.
//!
//! Timeouts are deadlines ([`ReadDeadline`]): CONNECT must be complete `connect_timeout` after
//! accept however its bytes arrive, and then a whole packet must arrive within 1.5 times the
//! keep-alive [MQTT-3.1.2-24]. Each socket read carries the time left as its timeout, so a
//! connection costs no timer of its own while data flows.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures_channel::oneshot;
use futures_lite::future::poll_fn;
use futures_lite::io::AsyncRead;
use glommio::net::TcpStream;
use glommio::timer::Timer;
use shardmq_codec::{
    ByteStr, ConnAck, Connect, DecodeError, Decoder, Disconnect, Packet, Properties, Protocol,
    ReasonCode,
};
use tracing::{info, trace};

use crate::control::{ConnectDecision, ConnectRequest};
use crate::deadline::{granted_keep_alive, ReadDeadline};
use crate::router::{CloseReason, Handled, Identity, NewClient, Router};
use crate::shard::Shard;
use crate::stats::Stats;
use crate::writer::{self, Socket};

/// How long a CONNECT waits for the control core's decision.
const AUTH_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a connection waits for other shards (its CONNACK, a SUBACK): a shard that does not
/// answer costs its clients this, never a hang.
const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// TCP keep-alive on accepted sockets, so a peer that vanished is found even when its MQTT
/// keep-alive is long: probes after this much silence, every 30 s, 4 of them.
const TCP_KEEPALIVE_IDLE: Duration = Duration::from_secs(120);

/// Packets a connection handles before it lets the shard's other tasks run: about one read
/// buffer of small PUBLISHes, so a burst still leaves in few large writes (the flusher runs when
/// this task yields) while a client that never stops sending cannot hold the shard.
const PACKETS_PER_TURN: u32 = 1024;

/// Size of the per-shard scratch buffer every socket read lands in.
pub const READ_SCRATCH: usize = 64 * 1024;

/// How a connection's reading ended.
#[derive(Debug)]
enum ReadError {
    /// The peer closed the connection (or the broker shut the read side).
    Closed,
    /// The deadline passed (CONNECT timeout or keep-alive expiry).
    TimedOut,
    /// A socket error.
    Io(io::Error),
    /// The peer sent a malformed packet.
    Decode(DecodeError),
}

/// Reads whole packets from the socket.
struct Reader {
    buf: BytesMut,
    decoder: Decoder,
    deadline: ReadDeadline,
    /// When the last read returned: the time every packet it completed arrived.
    filled_at: Instant,
}

impl Reader {
    async fn next_packet(&mut self, shard: &Shard, socket: &Socket) -> Result<Packet, ReadError> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(packet)) => {
                    self.deadline.handle_packet(self.filled_at);
                    if self.buf.is_empty() {
                        // Drop this handle on the read allocation; decoded frames keep what they use.
                        self.buf = BytesMut::new();
                    }
                    return Ok(packet);
                }
                Ok(None) => {}
                Err(err) => return Err(ReadError::Decode(err)),
            }
            let n = self.fill(shard, socket).await?;
            Stats::add(&shard.stats().bytes_received, n as u64);
        }
    }

    /// Reads what the socket has into the scratch buffer, then appends it to `buf`.
    async fn fill(&mut self, shard: &Shard, socket: &Socket) -> Result<usize, ReadError> {
        let timeout = match self.deadline.remaining(Instant::now()) {
            Some(left) if left.is_zero() => return Err(ReadError::TimedOut),
            timeout => timeout,
        };
        // Only a zero duration is refused, and that case returned above.
        let _ = socket.stream().borrow().set_read_timeout(timeout);
        let buf = &mut self.buf;
        let n = poll_fn(|cx| {
            let mut scratch = shard.read_scratch.borrow_mut();
            let mut stream = socket.stream().borrow_mut();
            match Pin::new(&mut *stream).poll_read(cx, &mut scratch[..]) {
                Poll::Ready(Ok(n)) => {
                    buf.extend_from_slice(&scratch[..n]);
                    Poll::Ready(Ok(n))
                }
                Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
        .map_err(|err| match err.kind() {
            io::ErrorKind::TimedOut => ReadError::TimedOut,
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => ReadError::Closed,
            _ => ReadError::Io(err),
        })?;
        self.filled_at = Instant::now();
        if n == 0 {
            return Err(ReadError::Closed);
        }
        Ok(n)
    }
}

/// How the connection ended, deciding whether the will is published.
#[derive(Debug)]
enum End {
    /// DISCONNECT received: no will [MQTT-3.14.4-3] (unless MQTT 5 asked for it).
    Disconnect { publish_will: bool },
    /// A packet that could not be decoded [MQTT-3.1.2-8: the will is sent].
    Malformed(DecodeError),
    /// A protocol violation: closed with this reason code (the will is sent).
    Violation(ReasonCode),
    /// No packet within 1.5 times the keep-alive.
    KeepAlive,
    /// The network connection was lost.
    Lost(Option<io::Error>),
    /// Closed by the broker (takeover, kick, shutdown, a write that failed).
    Closed(Option<CloseReason>),
}

impl End {
    fn publishes_will(&self) -> bool {
        match self {
            End::Disconnect { publish_will } => *publish_will,
            End::Malformed(_) | End::Violation(_) | End::KeepAlive | End::Lost(_) => true,
            // A client that stopped reading, or vanished, lost its connection.
            End::Closed(reason) => *reason == Some(CloseReason::WriteFailed),
        }
    }

    /// The MQTT 5 DISCONNECT the broker sends before closing, if any.
    fn disconnect_code(&self) -> Option<ReasonCode> {
        match self {
            End::Malformed(err) => Some(err.reason_code()),
            End::Violation(code) => Some(*code),
            End::KeepAlive => Some(ReasonCode::KeepAliveTimeout),
            _ => None,
        }
    }

    /// The reason the disconnection's log line gives.
    fn describe(&self) -> String {
        match self {
            End::Disconnect {
                publish_will: false,
            } => "client sent DISCONNECT".into(),
            End::Disconnect { publish_will: true } => {
                "client sent DISCONNECT asking for its will".into()
            }
            End::Malformed(err) => format!("protocol error: {err}"),
            End::Violation(code) => format!("protocol error: {code:?}"),
            End::KeepAlive => "keep-alive timeout".into(),
            End::Lost(None) => "connection closed by the client".into(),
            End::Lost(Some(err)) => format!("connection lost: {err}"),
            End::Closed(Some(CloseReason::TakenOver)) => {
                "taken over by a new connection with the same client id".into()
            }
            End::Closed(Some(CloseReason::Kicked)) => "disconnected by an operator".into(),
            End::Closed(Some(CloseReason::Shutdown)) => "broker shutting down".into(),
            End::Closed(Some(CloseReason::WriteFailed)) => {
                "could not be written to in time (not reading, or gone)".into()
            }
            End::Closed(None) => "closed by the broker".into(),
        }
    }
}

/// A place among the connections of one address that are between accept and CONNACK on this
/// shard, given back when the handshake ends.
struct Connecting {
    shard: Rc<Shard>,
    address: Option<IpAddr>,
}

impl Connecting {
    /// `None` (counted) when the address already has `max_connecting_per_address` here.
    fn start(shard: &Rc<Shard>, peer: Option<SocketAddr>) -> Option<Connecting> {
        let address = peer.map(|peer| peer.ip());
        if let Some(address) = address {
            let mut counts = shard.connecting.borrow_mut();
            let count = counts.entry(address).or_insert(0);
            if *count >= shard.config().limits.max_connecting_per_address {
                Stats::add(&shard.stats().limit_connecting_per_address, 1);
                return None;
            }
            *count += 1;
        }
        Some(Connecting {
            shard: Rc::clone(shard),
            address,
        })
    }
}

impl Drop for Connecting {
    fn drop(&mut self) {
        let Some(address) = self.address else { return };
        let mut counts = self.shard.connecting.borrow_mut();
        if let Some(count) = counts.get_mut(&address) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&address);
            }
        }
    }
}

/// A place in the broker-wide connection count, given back when the connection ends.
#[derive(Debug)]
pub struct ConnectionSlot(pub Arc<AtomicUsize>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one TCP connection accepted on `listener` until it closes.
pub fn serve(
    shard: Rc<Shard>,
    stream: TcpStream,
    listener: SocketAddr,
    slot: ConnectionSlot,
) -> impl Future<Output = ()> {
    let accepted = Instant::now();
    let peer = stream.peer_addr().ok();
    // Failures only cost latency or the detection of dead peers.
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(shard.config().limits.write_timeout));
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(TCP_KEEPALIVE_IDLE)
        .with_interval(Duration::from_secs(30))
        .with_retries(4);
    // SAFETY: the descriptor belongs to `stream`, open for the whole borrow.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    let _ = socket2::SockRef::from(&fd).set_tcp_keepalive(&keepalive);
    // Moved behind an `Rc` before the task's future is built, so the future holds a pointer
    // rather than the socket itself.
    let socket = Socket::new(shard.next_conn_id(), stream);
    drive(shard, socket, peer, listener, accepted, slot)
}

/// The connection task. Its own state is only what lives as long as the connection.
async fn drive(
    shard: Rc<Shard>,
    socket: Rc<Socket>,
    peer: Option<SocketAddr>,
    listener: SocketAddr,
    accepted: Instant,
    _slot: ConnectionSlot,
) {
    let Some(connecting) = Connecting::start(&shard, peer) else {
        // Too many connections from this address are still connecting: close at once.
        return;
    };
    let mut reader = Reader {
        buf: BytesMut::new(),
        // Until the client is authenticated, only a small first packet is buffered.
        decoder: Decoder::new(shard.config().limits.max_connect_size),
        deadline: ReadDeadline::connect(accepted, shard.config().connect_timeout),
        filled_at: accepted,
    };
    shard.add_socket(&socket);
    let online = Box::pin(handshake(&shard, &socket, peer, listener, &mut reader)).await;
    drop(connecting);
    if online {
        let end = read_loop(&shard, &socket, &mut reader).await;
        Box::pin(teardown(&shard, &socket, end)).await;
    }
    shard.remove_socket(socket.conn());
}

/// Reads CONNECT, checks it, asks the control core, and waits until the router has the client
/// online (CONNACK queued). False when the connection is refused (and answered), lost, or taken
/// over before it was online.
async fn handshake(
    shard: &Rc<Shard>,
    socket: &Rc<Socket>,
    peer: Option<SocketAddr>,
    listener: SocketAddr,
    reader: &mut Reader,
) -> bool {
    let failed = |reason: &dyn std::fmt::Display| {
        handshake_failed(shard, peer, listener, reason);
    };
    let connect = match reader.next_packet(shard, socket).await {
        Ok(Packet::Connect(connect)) => connect,
        Ok(packet) => {
            // The first packet must be CONNECT [MQTT-3.1.0-1].
            Stats::add(&shard.stats().protocol_errors, 1);
            failed(&format_args!(
                "protocol error: first packet is {:?}, not CONNECT",
                packet.packet_type()
            ));
            return false;
        }
        Err(ReadError::Decode(err)) => {
            Stats::add(&shard.stats().protocol_errors, 1);
            if matches!(err, DecodeError::PacketTooLarge { .. }) {
                Stats::add(&shard.stats().limit_connect_size, 1);
            }
            failed(&format_args!("protocol error in CONNECT: {err}"));
            refuse_bad_connect(socket, &err).await;
            return false;
        }
        Err(ReadError::TimedOut) => {
            Stats::add(&shard.stats().connect_timeouts, 1);
            failed(&"no CONNECT within connect_timeout");
            return false;
        }
        Err(_) => return false,
    };
    let protocol = connect.protocol;
    reader.decoder.set_protocol(protocol);
    reader
        .decoder
        .set_max_packet_size(shard.config().max_packet_size);
    let keep_alive = granted_keep_alive(connect.keep_alive, shard.config().limits.max_keepalive);

    // Everything the connection needs from CONNECT is taken out here, so the packet (and its
    // properties) is not held for the life of the connection.
    let Some((mut new, password)) = accept_connect(shard, *connect, peer) else {
        failed(&"refused: client identifier not valid");
        refuse(socket, ReasonCode::ClientIdentifierNotValid, protocol).await;
        return false;
    };
    let refused = |code: ReasonCode| {
        handshake_failed(
            shard,
            peer,
            listener,
            &format_args!(
                "refused ({code:?}): client id {:?}, user name {:?}",
                clip(&new.client_id),
                new.identity.username.as_deref().map(clip)
            ),
        );
    };
    #[cfg(debug_assertions)]
    fault_injection(&new.client_id);
    if let Err(code) = shard.with_router(|router| router.admissible(&new)) {
        refused(code);
        refuse(socket, code, protocol).await;
        return false;
    }
    let decision = match authorize(shard, &new, password).await {
        Ok(decision) => decision,
        Err(code) => {
            // The control core logs why it refused a login, and throttles those lines itself.
            if code == ReasonCode::ServerUnavailable {
                refused(code);
            }
            refuse(socket, code, protocol).await;
            return false;
        }
    };
    new.acl = decision.acl;
    new.auto_subscribe = decision.auto_subscribe;
    let conn = socket.conn();
    let client_id = new.client_id.clone();
    let username = new.identity.username.clone();
    let clean_start = new.clean_start;
    if let Err(code) = shard.with_router(|router| router.connect(conn, new)) {
        handshake_failed(
            shard,
            peer,
            listener,
            &format_args!("refused ({code:?}): client id {client_id:?}: will topic not allowed"),
        );
        refuse(socket, code, protocol).await;
        return false;
    }
    let answered = socket.signalled_within(PEER_TIMEOUT).await;
    if !answered {
        Stats::add(&shard.stats().peer_timeouts, 1);
    }
    if !shard.with_router(|router| router.is_online(conn)) {
        // Taken over before the CONNACK (the router already handed the session on), or closed
        // by the broker while connecting.
        shard.with_router(|router| router.disconnected(conn, Instant::now()));
        return false;
    }
    writer::flush_now(shard, socket);
    reader.deadline = ReadDeadline::keep_alive(reader.filled_at, keep_alive);
    info!(
        client_id = %client_id,
        username = username.as_deref().unwrap_or(""),
        address = %display_peer(peer),
        listener = %listener,
        protocol = protocol.level(),
        keepalive = keep_alive,
        clean_start,
        shard = shard.id().0,
        conn = conn.0,
        "client connected"
    );
    true
}

/// Logs, throttled per shard, a connection that ended before it was online.
fn handshake_failed(
    shard: &Shard,
    peer: Option<SocketAddr>,
    listener: SocketAddr,
    reason: &dyn std::fmt::Display,
) {
    if let Some(suppressed) = shard.handshake_errors.borrow_mut().allow(Instant::now()) {
        info!(
            address = %display_peer(peer),
            listener = %listener,
            suppressed,
            "connection failed: {reason}"
        );
    }
}

/// A client-chosen string as a log line shows it: at most 64 characters.
fn clip(text: &str) -> &str {
    match text.char_indices().nth(64) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

fn display_peer(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "unknown".into(), |peer| peer.to_string())
}

/// Debug builds only (tests run them): a client id equal to `SHARDMQ_FAULT_PANIC_CLIENT_ID`
/// panics inside its connection's code, so a test can check what a panic does to the broker.
#[cfg(debug_assertions)]
fn fault_injection(client_id: &str) {
    if std::env::var_os("SHARDMQ_FAULT_PANIC_CLIENT_ID").is_some_and(|id| id == client_id) {
        panic!("fault injection: client id {client_id}");
    }
}

/// Answers CONNECT with a refusing CONNACK.
async fn refuse(socket: &Socket, code: ReasonCode, protocol: Protocol) {
    let connack = ConnAck {
        session_present: false,
        code,
        properties: Properties::default(),
    };
    write_packet(socket, &Packet::ConnAck(connack), protocol).await;
}

/// Checks the client id rules of CONNECT; `None` refuses with "identifier rejected". Returns the
/// client for the router and the password for the control core.
fn accept_connect(
    shard: &Shard,
    connect: Connect,
    peer: Option<SocketAddr>,
) -> Option<(NewClient, Option<Bytes>)> {
    let v5 = connect.protocol.is_v5();
    let persistent = if v5 {
        connect.properties.session_expiry_interval.unwrap_or(0) > 0
    } else {
        !connect.clean_start
    };
    let mut assigned = false;
    let client_id = if connect.client_id.is_empty() {
        // A zero-length id needs a clean session in 3.1.1 [MQTT-3.1.3-7, MQTT-3.1.3-8]; 3.1
        // requires an id; MQTT 5 always assigns one [MQTT-3.1.3-6].
        if connect.protocol == Protocol::V310 || (!v5 && !connect.clean_start) {
            return None;
        }
        assigned = true;
        ByteStr::from(format!(
            "shardmq-{}-{}",
            shard.id().0,
            shard.next_conn_id().0
        ))
    } else {
        // Long-lived key: copy it out of the read buffer.
        ByteStr::copy_from_str(&connect.client_id)
    };
    let will = connect.will.map(|mut will| {
        will.topic = ByteStr::copy_from_str(&will.topic);
        will.payload = Bytes::copy_from_slice(&will.payload);
        Box::new(will)
    });
    let identity = Identity {
        username: connect.username.as_deref().map(ByteStr::copy_from_str),
        peer,
        connected_since: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let new = NewClient {
        client_id,
        protocol: connect.protocol,
        clean_start: connect.clean_start,
        persistent,
        session_expiry: v5.then(|| connect.properties.session_expiry_interval.unwrap_or(0)),
        assigned,
        receive_maximum: connect.properties.receive_maximum.unwrap_or(u16::MAX),
        maximum_packet_size: connect.properties.maximum_packet_size.unwrap_or(u32::MAX),
        keep_alive: connect.keep_alive,
        will,
        identity,
        acl: None,
        auto_subscribe: Vec::new(),
    };
    Some((new, connect.password))
}

/// Asks the control core (when there is one) whether this client may connect; the password
/// leaves the connection here. A control core that does not answer in time refuses with
/// "server unavailable", never a hang.
async fn authorize(
    shard: &Shard,
    new: &NewClient,
    password: Option<Bytes>,
) -> Result<ConnectDecision, ReasonCode> {
    let Some(authenticator) = &shard.authenticator else {
        return Ok(ConnectDecision {
            code: ReasonCode::Success,
            acl: None,
            auto_subscribe: Vec::new(),
        });
    };
    let (reply, answer) = oneshot::channel();
    let request = ConnectRequest {
        client_id: new.client_id.to_string(),
        username: new.identity.username.as_ref().map(ToString::to_string),
        password,
        peer: new.identity.peer,
        reply,
    };
    if authenticator.try_send(request).is_err() {
        return Err(ReasonCode::ServerUnavailable);
    }
    let timeout = async {
        Timer::new(AUTH_TIMEOUT).await;
        Err(oneshot::Canceled)
    };
    match futures_lite::future::or(answer, timeout).await {
        Ok(decision) if decision.code == ReasonCode::Success => Ok(decision),
        Ok(decision) => Err(decision.code),
        Err(_) => Err(ReasonCode::ServerUnavailable),
    }
}

/// Answers a CONNECT the decoder refused with the matching CONNACK, when there is one.
async fn refuse_bad_connect(socket: &Socket, err: &DecodeError) {
    if let DecodeError::UnsupportedProtocolLevel(level) = err {
        // [MQTT-3.1.2-2]: return code 0x01 and close. Answer in the client's own dialect when
        // it is one we know the shape of.
        let protocol = if *level == 5 {
            Protocol::V500
        } else {
            Protocol::V311
        };
        refuse(socket, ReasonCode::UnsupportedProtocolVersion, protocol).await;
    }
}

/// Feeds the router every packet until the connection ends.
async fn read_loop(shard: &Rc<Shard>, socket: &Rc<Socket>, reader: &mut Reader) -> End {
    let conn = socket.conn();
    let mut handled = 0u32;
    loop {
        let turn_over = handled % PACKETS_PER_TURN == 0;
        if turn_over && shard.pending_bytes(conn) > shard.config().session.max_outbox_bytes {
            // The client sends but does not read what it is sent: read nothing more from it
            // until its outbox drains; a socket that stays full ends in the write timeout.
            Stats::add(&shard.stats().limit_outbox, 1);
            writer::flush_now(shard, socket);
            socket.writer_idle().await;
            if socket.is_closed() {
                return End::Closed(socket.closed_by());
            }
        }
        let packet = match reader.next_packet(shard, socket).await {
            Ok(packet) => packet,
            Err(_) if socket.is_closed() => return End::Closed(socket.closed_by()),
            Err(ReadError::Closed) => return End::Lost(None),
            Err(ReadError::Io(err)) => return End::Lost(Some(err)),
            Err(ReadError::TimedOut) => {
                Stats::add(&shard.stats().keepalive_timeouts, 1);
                return End::KeepAlive;
            }
            Err(ReadError::Decode(err)) => {
                Stats::add(&shard.stats().protocol_errors, 1);
                return End::Malformed(err);
            }
        };
        trace!(conn = conn.0, packet = ?packet.packet_type(), "packet");
        let now = Instant::now();
        match shard.with_router(|router| {
            router.advance(now);
            router.handle_packet(conn, packet)
        }) {
            Ok(Handled::Done) => {}
            Ok(Handled::Wait) => {
                if !socket.signalled_within(PEER_TIMEOUT).await {
                    Stats::add(&shard.stats().peer_timeouts, 1);
                    return End::Violation(ReasonCode::ServerBusy);
                }
                if socket.is_closed() {
                    return End::Closed(socket.closed_by());
                }
            }
            Ok(Handled::FanOut(fanout)) => {
                if let Some(large) = shard.fan_out_now(fanout) {
                    Box::pin(shard.fan_out(large)).await;
                }
                if shard.mesh_full() {
                    shard.mesh_room().await;
                }
            }
            Ok(Handled::Disconnect { publish_will }) => return End::Disconnect { publish_will },
            Err(code) => {
                Stats::add(&shard.stats().protocol_errors, 1);
                return End::Violation(code);
            }
        }
        if reader.buf.is_empty() {
            // Every packet read so far is handled: send the replies now, as one write.
            writer::flush_now(shard, socket);
        } else if shard.pending_bytes(conn) > 0 {
            socket.wake(shard);
        }
        // A socket that always has data makes every read complete at once: without a yield, one
        // flooding client would hold its shard, and every protocol that waits on that shard.
        handled = handled.wrapping_add(1);
        if turn_over {
            futures_lite::future::yield_now().await;
        }
    }
}

/// Ends a connection that was online: unless the broker closed it, a last DISCONNECT (MQTT 5)
/// and everything still queued go out before the socket closes (bounded by the write timeout);
/// then the will, then the session goes offline or away.
async fn teardown(shard: &Rc<Shard>, socket: &Rc<Socket>, end: End) {
    let conn = socket.conn();
    if let Some(departure) = shard.with_router(|router| router.departure(conn)) {
        info!(
            client_id = %departure.client_id,
            username = departure.username.as_deref().unwrap_or(""),
            address = %display_peer(departure.peer),
            reason = end.describe().as_str(),
            denied = departure.denials,
            shard = shard.id().0,
            conn = conn.0,
            "client disconnected"
        );
    }
    if let Some(code) = end.disconnect_code() {
        shard.with_router(|router| {
            if let Some(session) = router.session_mut(conn) {
                if session.protocol().is_v5() {
                    session.send(&Packet::Disconnect(Disconnect {
                        code,
                        properties: Properties::default(),
                    }));
                }
            }
        });
    }
    if matches!(end, End::Closed(_)) {
        // Taken over, kicked or shut down: the broker is done with this socket, and a peer that
        // does not read must not delay that by a write timeout.
        socket.abort();
    } else {
        socket.close();
    }
    writer::flush_now(shard, socket);
    // The writer ends by itself within the write timeout; this bound holds even if it did not.
    let drained = futures_lite::future::or(
        async {
            socket.writer_idle().await;
            true
        },
        async {
            Timer::new(shard.config().limits.write_timeout).await;
            false
        },
    );
    if !drained.await {
        socket.abort();
        socket.writer_idle().await;
    }
    if end.publishes_will() {
        let now = Instant::now();
        if let Some(fanout) = shard.with_router(|router| router.publish_will(conn, now)) {
            shard.fan_out(fanout).await;
        }
    }
    shard.with_router(|router: &mut Router| router.disconnected(conn, Instant::now()));
}

/// Writes one packet directly (used before a client exists, e.g. a refusing CONNACK).
async fn write_packet(socket: &Socket, packet: &Packet, protocol: Protocol) {
    let mut buf = BytesMut::new();
    if shardmq_codec::encode(packet, protocol, &mut buf).is_ok() {
        writer::write_once(socket, buf.freeze()).await;
    }
}
