//! The connection driver: the one place where MQTT meets a socket.
//!
//! Each connection runs two tasks on its shard. The reader decodes packets from the socket and
//! feeds them to the client's [`Session`] and the [`Shard`]; the writer drains the client's
//! outbox with vectored sends, so everything queued since the last send leaves in one system call.
//!
//! Memory for idle connections stays small: reads land in one scratch buffer per shard and only
//! the bytes of an incomplete packet are kept per connection; an empty read buffer is released.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures_channel::oneshot;
use futures_lite::future::poll_fn;
use futures_lite::io::AsyncRead;
use futures_lite::AsyncWrite;
use glommio::net::TcpStream;
use glommio::timer::Timer;
use hashbrown::HashMap;
use shardmq_codec::{
    topic, ByteStr, ConnAck, Connect, DecodeError, Decoder, Disconnect, LastWill, Packet,
    Properties, Protocol, Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe,
    SubscriptionOptions, UnsubAck, Unsubscribe,
};
use tracing::{debug, trace};

use crate::broker::{Client, Identity, Shard, WriterAction};
use crate::control::{ConnectDecision, ConnectRequest};
use crate::mesh::Owner;
use crate::session::{Message, PublishVerdict, Session};
use crate::stats::Stats;

/// Topic aliases a client may use towards the broker (MQTT 5 topic alias maximum in CONNACK).
const TOPIC_ALIAS_MAXIMUM: u16 = 64;

/// How long a CONNECT waits for the control core's decision.
const AUTH_TIMEOUT: Duration = Duration::from_secs(5);

/// Size of the per-shard scratch buffer every socket read lands in.
pub const READ_SCRATCH: usize = 64 * 1024;

/// Most buffers in one vectored send.
const MAX_IOVECS: usize = 64;

/// How a connection's reading ended.
#[derive(Debug)]
enum ReadError {
    /// The peer closed the connection (or the broker shut the read side).
    Closed,
    /// The read timed out (CONNECT timeout or keep-alive expiry).
    TimedOut,
    /// A socket error.
    Io(io::Error),
    /// The peer sent a malformed packet.
    Decode(DecodeError),
}

/// Reads whole packets from the socket.
struct Reader {
    stream: Rc<RefCell<TcpStream>>,
    buf: BytesMut,
    decoder: Decoder,
}

impl Reader {
    async fn next_packet(&mut self, shard: &Shard) -> Result<Packet, ReadError> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(packet)) => {
                    if self.buf.is_empty() {
                        // Drop this handle on the read allocation; decoded frames keep what they use.
                        self.buf = BytesMut::new();
                    }
                    return Ok(packet);
                }
                Ok(None) => {}
                Err(err) => return Err(ReadError::Decode(err)),
            }
            let n = self.fill(shard).await?;
            Stats::add(&shard.stats.bytes_received, n as u64);
        }
    }

    /// Reads what the socket has into the scratch buffer, then appends it to `buf`.
    async fn fill(&mut self, shard: &Shard) -> Result<usize, ReadError> {
        let stream = &self.stream;
        let buf = &mut self.buf;
        let n = poll_fn(|cx| {
            let mut scratch = shard.read_scratch.borrow_mut();
            let mut stream = stream.borrow_mut();
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
        if n == 0 {
            return Err(ReadError::Closed);
        }
        Ok(n)
    }
}

/// Why the connection ended, deciding whether the will is published.
#[derive(Debug, Eq, PartialEq)]
enum End {
    /// DISCONNECT received: no will [MQTT-3.14.4-3] (unless MQTT 5 asked for it).
    Clean { publish_will: bool },
    /// Anything else: network error, timeout, protocol violation [MQTT-3.1.2-8].
    Abnormal,
    /// Closed by the broker (takeover, kick, shutdown).
    Closed,
}

/// A place in the broker-wide connection count, given back when the connection ends.
#[derive(Debug)]
pub struct ConnectionSlot(pub Arc<AtomicUsize>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one accepted TCP connection until it closes.
pub fn serve(
    shard: Rc<Shard>,
    stream: TcpStream,
    slot: ConnectionSlot,
) -> impl Future<Output = ()> {
    let fd = stream.as_raw_fd();
    let peer = stream.peer_addr().ok();
    // Timeouts are set explicitly below; failure to set one only affects idle detection.
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(shard.config().connect_timeout));
    // Moved behind an `Rc` before the task's future is built, so the future holds a pointer
    // rather than the socket itself.
    drive(shard, Rc::new(RefCell::new(stream)), fd, peer, slot)
}

/// The connection task. Its own state is only what lives as long as the connection; the
/// CONNECT handshake and the teardown run in boxed futures that exist only while they run, so
/// the task of an idle connection stays small.
async fn drive(
    shard: Rc<Shard>,
    stream: Rc<RefCell<TcpStream>>,
    fd: i32,
    peer: Option<SocketAddr>,
    _slot: ConnectionSlot,
) {
    let mut reader = Reader {
        stream: Rc::clone(&stream),
        buf: BytesMut::new(),
        decoder: Decoder::new(shard.config().max_packet_size),
    };
    let Some((client, accepted)) =
        Box::pin(handshake(&shard, &stream, fd, peer, &mut reader)).await
    else {
        return;
    };
    let end = run_connected(&shard, &client, &stream, fd, &mut reader, accepted).await;

    debug!(client_id = %client.client_id, shard = shard.id().0, ?end, "client disconnected");
    if end == End::Abnormal || end == (End::Clean { publish_will: true }) {
        Box::pin(publish_will(&shard, &client)).await;
    }
    Box::pin(shard.disconnected(&client)).await;
    Stats::sub(&shard.stats.connections, 1);
}

/// Reads CONNECT, checks it, asks the control core, and registers the client. `None` when the
/// connection is refused (and answered) or lost.
async fn handshake(
    shard: &Rc<Shard>,
    stream: &Rc<RefCell<TcpStream>>,
    fd: i32,
    peer: Option<SocketAddr>,
    reader: &mut Reader,
) -> Option<(Rc<Client>, Box<Accepted>)> {
    let connect = match reader.next_packet(shard).await {
        Ok(Packet::Connect(connect)) => connect,
        Ok(_) => {
            // The first packet must be CONNECT [MQTT-3.1.0-1].
            Stats::add(&shard.stats.protocol_errors, 1);
            return None;
        }
        Err(ReadError::Decode(err)) => {
            Stats::add(&shard.stats.protocol_errors, 1);
            refuse_bad_connect(stream, fd, &err).await;
            return None;
        }
        Err(ReadError::TimedOut) => {
            Stats::add(&shard.stats.connect_timeouts, 1);
            return None;
        }
        Err(_) => return None,
    };
    let protocol = connect.protocol;
    reader.decoder.set_protocol(protocol);

    // Everything the connection needs from CONNECT is taken out here, so the packet (and its
    // properties) is not held for the life of the connection.
    let Some(mut accepted) = accept_connect(shard, *connect) else {
        refuse(stream, fd, ReasonCode::ClientIdentifierNotValid, protocol).await;
        return None;
    };
    let decision = match authorize(shard, &mut accepted, peer).await {
        Ok(decision) => decision,
        Err(code) => {
            refuse(stream, fd, code, protocol).await;
            return None;
        }
    };
    accepted.auto_subscribe = decision.auto_subscribe;

    let conn = shard.next_conn_id();
    let session = Session::new(accepted.client_id.clone(), protocol, shard.config().session);
    let identity = Identity {
        username: accepted.username.clone(),
        peer,
        connected_since: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let will = accepted.will.take();
    let client = Rc::new(Client::new(
        conn,
        session,
        !accepted.persistent,
        will,
        identity,
        fd,
    ));
    *client.acl.borrow_mut() = decision.acl;
    shard.add_client(Rc::clone(&client));
    Stats::add(&shard.stats.connections, 1);
    Stats::add(&shard.stats.connections_total, 1);
    Some((client, Box::new(accepted)))
}

/// Answers CONNECT with a refusing CONNACK.
async fn refuse(stream: &Rc<RefCell<TcpStream>>, fd: i32, code: ReasonCode, protocol: Protocol) {
    let connack = ConnAck {
        session_present: false,
        code,
        properties: Properties::default(),
    };
    write_packet(stream, fd, &Packet::ConnAck(connack), protocol).await;
}

/// What a connection keeps of its CONNECT.
struct Accepted {
    protocol: Protocol,
    client_id: ByteStr,
    assigned: bool,
    clean_start: bool,
    persistent: bool,
    keep_alive: u16,
    receive_maximum: u16,
    will: Option<Box<LastWill>>,
    username: Option<ByteStr>,
    password: Option<Bytes>,
    auto_subscribe: Vec<(String, QoS)>,
}

/// Checks the client id rules of CONNECT; `None` refuses with "identifier rejected".
fn accept_connect(shard: &Shard, connect: Connect) -> Option<Accepted> {
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
    Some(Accepted {
        protocol: connect.protocol,
        client_id,
        assigned,
        clean_start: connect.clean_start,
        persistent,
        keep_alive: connect.keep_alive,
        receive_maximum: connect.properties.receive_maximum.unwrap_or(u16::MAX),
        will,
        username: connect.username.as_deref().map(ByteStr::copy_from_str),
        password: connect.password,
        auto_subscribe: Vec::new(),
    })
}

/// Asks the control core (when there is one) whether this client may connect; the password
/// leaves the connection here. A control core that does not answer in time refuses with
/// "server unavailable", never a hang.
async fn authorize(
    shard: &Shard,
    accepted: &mut Accepted,
    peer: Option<SocketAddr>,
) -> Result<ConnectDecision, ReasonCode> {
    let password = accepted.password.take();
    let Some(authenticator) = &shard.authenticator else {
        return Ok(ConnectDecision {
            code: ReasonCode::Success,
            acl: None,
            auto_subscribe: Vec::new(),
        });
    };
    let (reply, answer) = oneshot::channel();
    let request = ConnectRequest {
        client_id: accepted.client_id.to_string(),
        username: accepted.username.as_ref().map(ToString::to_string),
        password,
        peer,
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
async fn refuse_bad_connect(stream: &Rc<RefCell<TcpStream>>, fd: i32, err: &DecodeError) {
    if let DecodeError::UnsupportedProtocolLevel(level) = err {
        // [MQTT-3.1.2-2]: return code 0x01 and close. Answer in the client's own dialect when
        // it is one we know the shape of.
        let protocol = if *level == 5 {
            Protocol::V500
        } else {
            Protocol::V311
        };
        let connack = ConnAck {
            session_present: false,
            code: ReasonCode::UnsupportedProtocolVersion,
            properties: Properties::default(),
        };
        write_packet(stream, fd, &Packet::ConnAck(connack), protocol).await;
    }
}

async fn run_connected(
    shard: &Rc<Shard>,
    client: &Rc<Client>,
    stream: &Rc<RefCell<TcpStream>>,
    fd: i32,
    reader: &mut Reader,
    accepted: Box<Accepted>,
) -> End {
    let protocol = accepted.protocol;
    let keep_alive = accepted.keep_alive;
    let spawner = {
        let shard = Rc::clone(shard);
        let client = Rc::downgrade(client);
        let stream = Rc::clone(stream);
        move |action| match action {
            WriterAction::Schedule => shard.schedule_flush(client.clone()),
            WriterAction::Spawn => {
                if let Some(client) = client.upgrade() {
                    glommio::spawn_local(write_loop(
                        Rc::clone(&shard),
                        client,
                        Rc::clone(&stream),
                        fd,
                    ))
                    .detach();
                }
            }
        }
    };
    client.set_writer_spawner(Box::new(spawner));

    let end = match Box::pin(connect_session(shard, client, accepted)).await {
        true => {
            let keep_alive =
                (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
            let _ = stream.borrow().set_read_timeout(keep_alive);
            debug!(client_id = %client.client_id, shard = shard.id().0, ?protocol, "client connected");
            read_loop(shard, client, reader, protocol).await
        }
        false => ReadEnd::Closed,
    };
    if let Some(code) = disconnect_code(&end) {
        if protocol.is_v5() {
            let disconnect = Disconnect {
                code,
                properties: Properties::default(),
            };
            client
                .outbox
                .borrow_mut()
                .push_packet(&Packet::Disconnect(disconnect), protocol);
        }
    }
    client.request_close();
    // Whatever is still queued (a final DISCONNECT, acknowledgements) goes out before the socket
    // closes: sent now, or by a writer that this waits for.
    flush_now(shard, client);
    client.writer_idle().await;
    end_of(end)
}

fn disconnect_code(end: &ReadEnd) -> Option<ReasonCode> {
    match end {
        ReadEnd::Violation(code) => Some(*code),
        ReadEnd::KeepAlive => Some(ReasonCode::KeepAliveTimeout),
        _ => None,
    }
}

fn end_of(end: ReadEnd) -> End {
    match end {
        ReadEnd::Disconnect { publish_will } => End::Clean { publish_will },
        ReadEnd::Closed => End::Closed,
        _ => End::Abnormal,
    }
}

/// How the read loop ended.
#[derive(Debug)]
enum ReadEnd {
    Disconnect { publish_will: bool },
    Violation(ReasonCode),
    KeepAlive,
    Lost,
    Closed,
}

/// Claims the id, resumes or starts the session and sends CONNACK. False when the connection
/// was superseded meanwhile and must close.
async fn connect_session(shard: &Rc<Shard>, client: &Rc<Client>, accepted: Box<Accepted>) -> bool {
    let protocol = accepted.protocol;
    let Some(previous) = shard.claim(client, accepted.clean_start).await else {
        return false;
    };
    let receive_maximum = accepted.receive_maximum;
    let resumed = previous.filter(|_| !accepted.clean_start);
    let session_present = resumed.is_some() && accepted.persistent;
    if let Some(session) = resumed {
        *client.session.borrow_mut() = *session;
        shard.restore_subscriptions(client).await;
    }
    // Auto-subscriptions are in place on every shard before the CONNACK, so nothing published
    // after it is missed; each is still subject to the ACL.
    for (filter, qos) in &accepted.auto_subscribe {
        if topic::valid_filter(filter) && client.can_subscribe(filter) {
            let options = SubscriptionOptions {
                qos: *qos,
                ..SubscriptionOptions::default()
            };
            shard
                .subscribe(client, &ByteStr::copy_from_str(filter), options)
                .await;
        }
    }
    if !shard.go_online(client).await {
        return false;
    }
    let mut properties = Properties::default();
    if protocol.is_v5() {
        if accepted.assigned {
            properties.assigned_client_identifier = Some(client.client_id.clone());
        }
        properties.topic_alias_maximum = Some(TOPIC_ALIAS_MAXIMUM);
        properties.maximum_packet_size = u32::try_from(shard.config().max_packet_size).ok();
        properties.subscription_identifier_available = Some(0);
        properties.shared_subscription_available = Some(0);
    }
    let connack = ConnAck {
        session_present,
        code: ReasonCode::Success,
        properties,
    };
    let mut outbox = client.outbox.borrow_mut();
    outbox.push_packet(&Packet::ConnAck(connack), protocol);
    let mut session = client.session.borrow_mut();
    if session_present {
        session.handle_resumed(protocol, receive_maximum, &mut outbox);
    } else {
        session.set_receive_maximum(receive_maximum);
    }
    drop(session);
    drop(outbox);
    flush_now(shard, client);
    true
}

async fn read_loop(
    shard: &Rc<Shard>,
    client: &Rc<Client>,
    reader: &mut Reader,
    protocol: Protocol,
) -> ReadEnd {
    let mut aliases: HashMap<u16, ByteStr> = HashMap::new();
    loop {
        let packet = match reader.next_packet(shard).await {
            Ok(packet) => packet,
            Err(_) if client.close_requested() => return ReadEnd::Closed,
            Err(ReadError::Closed) => return ReadEnd::Lost,
            Err(ReadError::Io(err)) => {
                debug!(client_id = %client.client_id, error = %err, "socket error");
                return ReadEnd::Lost;
            }
            Err(ReadError::TimedOut) => {
                Stats::add(&shard.stats.keepalive_timeouts, 1);
                return ReadEnd::KeepAlive;
            }
            Err(ReadError::Decode(err)) => {
                Stats::add(&shard.stats.protocol_errors, 1);
                debug!(client_id = %client.client_id, error = %err, "malformed packet");
                return ReadEnd::Violation(err.reason_code());
            }
        };
        trace!(client_id = %client.client_id, packet = ?packet.packet_type(), "packet");
        let result = match packet {
            // Boxed, like every rare or large step, so an idle connection's future stays small.
            Packet::Publish(publish) => {
                Box::pin(handle_publish(shard, client, publish, &mut aliases)).await
            }
            Packet::PubAck(ack) => {
                client
                    .session
                    .borrow_mut()
                    .handle_puback(ack.packet_id, &mut client.outbox.borrow_mut());
                Ok(())
            }
            Packet::PubRec(rec) => {
                client
                    .session
                    .borrow_mut()
                    .handle_pubrec(&rec, &mut client.outbox.borrow_mut());
                Ok(())
            }
            Packet::PubRel(rel) => {
                client
                    .session
                    .borrow_mut()
                    .handle_pubrel(rel.packet_id, &mut client.outbox.borrow_mut());
                Ok(())
            }
            Packet::PubComp(comp) => {
                client
                    .session
                    .borrow_mut()
                    .handle_pubcomp(comp.packet_id, &mut client.outbox.borrow_mut());
                Ok(())
            }
            Packet::Subscribe(subscribe) => {
                Box::pin(handle_subscribe(shard, client, subscribe, protocol)).await;
                Ok(())
            }
            Packet::Unsubscribe(unsubscribe) => {
                Box::pin(handle_unsubscribe(shard, client, unsubscribe, protocol)).await;
                Ok(())
            }
            Packet::PingReq => {
                client
                    .outbox
                    .borrow_mut()
                    .push_packet(&Packet::PingResp, protocol);
                Ok(())
            }
            Packet::Disconnect(disconnect) => {
                let publish_will = disconnect.code == ReasonCode::DisconnectWithWillMessage;
                return ReadEnd::Disconnect { publish_will };
            }
            // A second CONNECT is a protocol violation [MQTT-3.1.0-2]; server-to-client packets
            // and (without enhanced authentication) AUTH are too.
            Packet::Connect(_)
            | Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp
            | Packet::Auth(_) => Err(ReasonCode::ProtocolError),
        };
        if let Err(code) = result {
            Stats::add(&shard.stats.protocol_errors, 1);
            return ReadEnd::Violation(code);
        }
        if reader.buf.is_empty() {
            // Every packet read so far is handled: send the replies now, as one write.
            flush_now(shard, client);
        } else if !client.outbox.borrow().is_empty() {
            client.wake_writer();
        }
    }
}

async fn handle_publish(
    shard: &Rc<Shard>,
    client: &Rc<Client>,
    mut publish: Publish,
    aliases: &mut HashMap<u16, ByteStr>,
) -> Result<(), ReasonCode> {
    // Properties are read before any write: writing allocates the property block.
    if let Some(alias) = publish.properties.topic_alias {
        publish.properties.topic_alias = None;
        // MQTT 5 topic alias (§3.3.2.3.4): a topic sets the alias, an empty topic uses it.
        if alias == 0 || alias > TOPIC_ALIAS_MAXIMUM {
            return Err(ReasonCode::TopicAliasInvalid);
        }
        if publish.topic.is_empty() {
            publish.topic = aliases
                .get(&alias)
                .cloned()
                .ok_or(ReasonCode::ProtocolError)?;
        } else {
            aliases.insert(alias, ByteStr::copy_from_str(&publish.topic));
        }
    }
    if publish.topic.is_empty() {
        return Err(ReasonCode::TopicNameInvalid);
    }
    if !client.can_publish(&publish.topic) {
        // 3.1.1 has no refusal: a QoS 1/2 publish is acknowledged and dropped; MQTT 5 says why.
        Stats::add(&shard.stats.dropped_denied, 1);
        client.session.borrow_mut().acknowledge_refused(
            &publish,
            ReasonCode::NotAuthorized,
            &mut client.outbox.borrow_mut(),
        );
        return Ok(());
    }
    let verdict = {
        let mut outbox = client.outbox.borrow_mut();
        let verdict = client
            .session
            .borrow_mut()
            .handle_publish(&publish, &mut outbox);
        verdict.map_err(|violation| violation.0)?
    };
    if verdict == PublishVerdict::Duplicate {
        return Ok(());
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
        properties,
    });
    let origin = Owner {
        shard: shard.id(),
        conn: client.conn,
    };
    shard.publish(message, origin).await;
    Ok(())
}

async fn handle_subscribe(
    shard: &Rc<Shard>,
    client: &Rc<Client>,
    subscribe: Subscribe,
    protocol: Protocol,
) {
    let mut codes = Vec::with_capacity(subscribe.filters.len());
    let mut retained = Vec::new();
    for request in &subscribe.filters {
        let filter = request.filter.as_str();
        if !topic::valid_filter(filter) {
            codes.push(ReasonCode::TopicFilterInvalid);
            continue;
        }
        if protocol.is_v5() && filter.starts_with("$share/") {
            codes.push(ReasonCode::SharedSubscriptionsNotSupported);
            continue;
        }
        if !client.can_subscribe(filter) {
            codes.push(if protocol.is_v5() {
                ReasonCode::NotAuthorized
            } else {
                ReasonCode::UnspecifiedError
            });
            continue;
        }
        let mut options = request.options;
        options.qos = options.qos.min(QoS::ExactlyOnce);
        let filter = ByteStr::copy_from_str(filter);
        let existed = client
            .session
            .borrow()
            .subscriptions()
            .contains_key(&filter);
        shard.subscribe(client, &filter, options).await;
        codes.push(ReasonCode::granted(options.qos));
        let send_retained = match options.retain_handling {
            RetainHandling::SendAtSubscribe => true,
            RetainHandling::SendIfNew => !existed,
            RetainHandling::DoNotSend => false,
        };
        if send_retained {
            retained.push((filter, options.qos));
        }
    }
    let suback = SubAck {
        packet_id: subscribe.packet_id,
        codes,
        properties: Properties::default(),
    };
    client
        .outbox
        .borrow_mut()
        .push_packet(&Packet::SubAck(suback), protocol);
    for (filter, qos) in retained {
        shard.send_retained(client, &filter, qos);
    }
}

async fn handle_unsubscribe(
    shard: &Rc<Shard>,
    client: &Rc<Client>,
    unsubscribe: Unsubscribe,
    protocol: Protocol,
) {
    let mut codes = Vec::with_capacity(unsubscribe.filters.len());
    for filter in &unsubscribe.filters {
        let existed = shard.unsubscribe(client, filter).await;
        codes.push(if existed {
            ReasonCode::Success
        } else {
            ReasonCode::NoSubscriptionExisted
        });
    }
    if !protocol.is_v5() {
        codes.clear();
    }
    let unsuback = UnsubAck {
        packet_id: unsubscribe.packet_id,
        codes,
        properties: Properties::default(),
    };
    client
        .outbox
        .borrow_mut()
        .push_packet(&Packet::UnsubAck(unsuback), protocol);
}

async fn publish_will(shard: &Rc<Shard>, client: &Rc<Client>) {
    let Some(will) = client.will.borrow_mut().take() else {
        return;
    };
    if !shard.owns(client.conn) {
        return;
    }
    let will = *will;
    let mut properties = will.properties;
    if properties.will_delay_interval.is_some() {
        properties.will_delay_interval = None;
    }
    let message = Arc::new(Message {
        topic: ByteStr::copy_from_str(&will.topic),
        payload: will.payload,
        qos: will.qos,
        retain: will.retain,
        properties,
    });
    Stats::add(&shard.stats.wills_published, 1);
    shard
        .publish(
            message,
            Owner {
                shard: shard.id(),
                conn: client.conn,
            },
        )
        .await;
}

/// Drains the client's outbox into the socket, waiting for more between sends, until the
/// connection closes or the shard retires the writer of an idle connection
/// ([`Client::wake_writer`] starts a new one when there is more to write).
async fn write_loop(shard: Rc<Shard>, client: Rc<Client>, stream: Rc<RefCell<TcpStream>>, fd: i32) {
    let mut chunks: Vec<Bytes> = Vec::new();
    loop {
        client.outbox.borrow_mut().take(&mut chunks);
        if chunks.is_empty() {
            if client.writer_wait().await {
                continue;
            }
            break;
        }
        match write_all(&stream, fd, &chunks).await {
            Ok(written) => Stats::add(&shard.stats.bytes_sent, written as u64),
            Err(_) => {
                client.outbox.borrow_mut().clear();
                client.writer_finished();
                client.request_close();
                return;
            }
        }
        client.writer_sent(shard.sweep_tick());
        chunks.clear();
        // Acknowledgements may have opened the inflight window while this send was under way.
        let mut outbox = client.outbox.borrow_mut();
        client.session.borrow_mut().release_queued(&mut outbox);
    }
    client.writer_finished();
}

/// Writes every chunk, as few system calls as the socket allows: a non-blocking `sendmsg` with
/// up to [`MAX_IOVECS`] buffers, and, when the socket is full, glommio's write of the current
/// chunk, which waits for the socket to drain.
async fn write_all(
    stream: &Rc<RefCell<TcpStream>>,
    fd: i32,
    chunks: &[Bytes],
) -> io::Result<usize> {
    let total: usize = chunks.iter().map(Bytes::len).sum();
    let mut index = 0;
    let mut offset = 0;
    while index < chunks.len() {
        let sent = match send_vectored(fd, &chunks[index..], offset) {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                let chunk = &chunks[index][offset..];
                poll_fn(|cx| Pin::new(&mut *stream.borrow_mut()).poll_write(cx, chunk)).await?
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => 0,
            Err(err) => return Err(err),
        };
        let mut left = sent;
        while left > 0 && index < chunks.len() {
            let available = chunks[index].len() - offset;
            if left >= available {
                left -= available;
                index += 1;
                offset = 0;
            } else {
                offset += left;
                left = 0;
            }
        }
    }
    Ok(total)
}

fn send_vectored(fd: i32, chunks: &[Bytes], offset: usize) -> io::Result<usize> {
    let mut iovecs = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_IOVECS];
    let mut count = 0;
    for (i, chunk) in chunks.iter().take(MAX_IOVECS).enumerate() {
        let bytes = if i == 0 { &chunk[offset..] } else { &chunk[..] };
        iovecs[count] = libc::iovec {
            iov_base: bytes.as_ptr() as *mut libc::c_void,
            iov_len: bytes.len(),
        };
        count += 1;
    }
    // SAFETY: a zeroed msghdr is valid; it points at `count` initialised iovecs that borrow
    // `chunks`, which outlive the call.
    let sent = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = iovecs.as_mut_ptr();
        msg.msg_iovlen = count;
        libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// Sends the client's outbox at once, without a writer task, when no writer runs and the socket
/// takes it all; whatever it does not take is left to a writer. Used for the replies of the
/// handshake and of requests (CONNACK, SUBACK, UNSUBACK, PINGRESP), so a connection that only
/// connects, subscribes and pings never needs a writer task.
fn flush_now(shard: &Shard, client: &Client) {
    let Some(fd) = client.fd().filter(|_| !client.writer_running()) else {
        client.wake_writer();
        return;
    };
    let mut chunks = Vec::new();
    client.outbox.borrow_mut().take(&mut chunks);
    if chunks.is_empty() {
        return;
    }
    let mut sent = send_vectored(fd, &chunks, 0).unwrap_or(0);
    Stats::add(&shard.stats.bytes_sent, sent as u64);
    let mut rest = Vec::new();
    for chunk in chunks {
        if sent >= chunk.len() {
            sent -= chunk.len();
        } else {
            rest.push(chunk.slice(sent..));
            sent = 0;
        }
    }
    if !rest.is_empty() {
        client.outbox.borrow_mut().restore_front(rest);
        client.start_writer();
    }
}

/// The shard's flusher: sends the outboxes of clients that have something to send and no writer
/// task, each in one write, right after the burst of work that filled them. Only a socket that
/// does not take everything at once gets a writer task of its own.
pub async fn flusher(shard: Rc<Shard>) {
    let mut batch = Vec::new();
    loop {
        shard.flush_batch(&mut batch).await;
        for (index, client) in batch.drain(..).enumerate() {
            let Some(client) = client.upgrade() else {
                continue;
            };
            if client.take_flush_scheduled() {
                flush_now(&shard, &client);
            }
            if index % 512 == 511 {
                glommio::yield_if_needed().await;
            }
        }
    }
}

/// Writes one packet directly (used before a client exists, e.g. a refusing CONNACK).
async fn write_packet(
    stream: &Rc<RefCell<TcpStream>>,
    fd: i32,
    packet: &Packet,
    protocol: Protocol,
) {
    let mut buf = BytesMut::new();
    if shardmq_codec::encode(packet, protocol, &mut buf).is_ok() {
        let _ = write_all(stream, fd, &[buf.freeze()]).await;
    }
}
