//! Test harness: runs the real `shardmq` binary on an ephemeral port and talks to it through
//! real clients. [`Broker`] reads the readiness line for the bound address, keeps the broker's
//! log (stderr, level info) for tests to wait on, reads figures from the admin API, and kills the
//! process (by PID) when dropped; [`RawClient`] speaks MQTT byte-exactly through the shared codec.
//! [`external`] holds the rule for tests that need programs from outside the workspace.
//!
//! Tests never sleep to let the broker catch up: they wait, with a deadline, for something they
//! can observe (a reply, a log line, a figure, a message).
#![allow(dead_code)]

pub mod external;
pub mod files;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde_json::Value;
use shardmq_codec::{
    encode, ByteStr, ConnAck, Connect, Decoder, LastWill, Packet, PacketId, Protocol, Publish, QoS,
    ReasonCode, SubAck, Subscribe, SubscribeFilter, SubscriptionOptions,
};

/// How long the broker may take to print its readiness line.
const START: Duration = Duration::from_secs(30);

/// A running broker process.
pub struct Broker {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<Vec<String>>>,
}

/// What [`Broker::start`] runs the broker with: two shards on 127.0.0.1:0, the admin API on
/// 127.0.0.1:0.
const BASE: [&str; 6] = [
    "--listen",
    "127.0.0.1:0",
    "--shards",
    "2",
    "--admin-listen",
    "127.0.0.1:0",
];

impl Broker {
    /// Starts the broker with [`BASE`] plus `args` (which may override any of these).
    pub fn start(args: &[&str]) -> Broker {
        Broker::start_with(&BASE, args)
    }

    /// Starts the broker with exactly `base` + `args`.
    pub fn start_with(base: &[&str], args: &[&str]) -> Broker {
        Broker::spawn(Command::new(env!("CARGO_BIN_EXE_shardmq")), base, args)
    }

    /// Starts the broker (default flags plus `args`) with its open-file limit set to `limit`.
    pub fn start_with_fd_limit(limit: u64, args: &[&str]) -> Broker {
        Broker::start_with_fd_limits(limit, limit, args)
    }

    /// Starts the broker (default flags plus `args`) with these soft and hard open-file limits.
    pub fn start_with_fd_limits(soft: u64, hard: u64, args: &[&str]) -> Broker {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(env!("CARGO_BIN_EXE_shardmq"));
        // SAFETY: only setrlimit, which is async-signal-safe, runs between fork and exec.
        unsafe {
            command.pre_exec(move || {
                let rlimit = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Broker::spawn(command, &BASE, args)
    }

    /// Starts the broker as [`Broker::start`] does, without `RUST_LOG`: its own `log_level`
    /// decides what it logs.
    pub fn start_without_rust_log(args: &[&str]) -> Broker {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shardmq"));
        command.env_remove("RUST_LOG");
        Broker::spawn(command, &BASE, args)
    }

    fn spawn(mut command: Command, base: &[&str], args: &[&str]) -> Broker {
        if !command.get_envs().any(|(key, _)| key == "RUST_LOG") {
            command.env("RUST_LOG", "info");
        }
        let mut child = command
            .args(base)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start shardmq");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        // The first stdout line is the readiness line; the rest are kept for `admin`.
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let (ready_tx, ready_rx) = mpsc::channel();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            let mut ready = Some(ready_tx);
            for line in stdout.lines().map_while(Result::ok) {
                match ready.take() {
                    Some(ready) => {
                        let _ = ready.send(line);
                    }
                    None => sink.lock().unwrap().push(line),
                }
            }
        });
        let line = match ready_rx.recv_timeout(START) {
            Ok(line) => line,
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "no readiness line within {START:?} ({err}); log: {:?}",
                    log.lock().unwrap()
                );
            }
        };
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| {
                panic!(
                    "no readiness line: {line:?}; log: {:?}",
                    log.lock().unwrap()
                )
            })
            .parse()
            .expect("address");
        Broker {
            child,
            addr,
            log,
            stdout: lines,
        }
    }

    /// The admin API's address, from its readiness line (`shardmq admin: listening on ADDR`).
    pub fn admin(&self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found = self.stdout.lock().unwrap().iter().find_map(|line| {
                line.strip_prefix("shardmq admin: listening on ")
                    .map(|addr| addr.trim().parse().expect("admin address"))
            });
            if let Some(addr) = found {
                return addr;
            }
            assert!(Instant::now() < deadline, "no admin readiness line");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Number of log lines containing `needle`.
    pub fn log_lines(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains(needle))
            .count()
    }

    /// The broker's stderr so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a log line contains every one of `needles`.
    pub fn wait_for_log(&self, needles: &[&str], timeout: Duration) -> Option<String> {
        self.wait_for_nth_log(needles, 1, timeout)
    }

    /// Waits until `n` log lines contain every one of `needles`, and returns the `n`-th; `None`
    /// if there are fewer when `timeout` has passed.
    pub fn wait_for_nth_log(
        &self,
        needles: &[&str],
        n: usize,
        timeout: Duration,
    ) -> Option<String> {
        assert!(n > 0, "lines are counted from 1");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self
                .log()
                .into_iter()
                .filter(|l| needles.iter().all(|needle| l.contains(needle)))
                .nth(n - 1)
            {
                return Some(line);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the control core has logged new access rules for the `n`-th time (a log
    /// line containing every one of `needles`, such as [`RULES_RELOADED`]); panics with the log
    /// after `timeout`. The control core writes that line only once every shard confirmed it
    /// applied the rules to its sessions.
    pub fn wait_for_rules(&self, needles: &[&str], n: usize, timeout: Duration) {
        if self.wait_for_nth_log(needles, n, timeout).is_none() {
            panic!(
                "no log line #{n} with {needles:?} within {timeout:?}: {:#?}",
                self.log()
            );
        }
    }

    /// `GET path` on the admin API (no token), as JSON; panics unless the status is 200.
    pub fn admin_json(&self, path: &str) -> Value {
        let (status, body) = http(self.admin(), "GET", path, None);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).expect("JSON")
    }

    /// Every client and offline session, as the admin API lists them (`/api/v1/clients`),
    /// sorted by client id.
    pub fn clients(&self) -> Vec<Value> {
        let listing = self.admin_json("/api/v1/clients?per_page=1000");
        let clients = listing["clients"].as_array().expect("clients").clone();
        assert_eq!(listing["total"], clients.len(), "one page holds them all");
        clients
    }

    /// The admin API's entry for `client_id`, if the broker holds that client.
    pub fn client(&self, client_id: &str) -> Option<Value> {
        self.clients()
            .into_iter()
            .find(|client| client["client_id"] == client_id)
    }

    /// Polls `/api/v1/stats` until `ready` holds for it, and returns it. The figures there are
    /// refreshed about once a second.
    pub fn wait_for_stats(&self, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let stats = self.admin_json("/api/v1/stats");
            if ready(&stats) {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {stats}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts the broker as [`Broker::start`] does, but with one shard (every client on it).
    pub fn start_one_shard(args: &[&str]) -> Broker {
        let mut base = BASE;
        base[3] = "1";
        Broker::start_with(&base, args)
    }

    /// Starts the broker as [`Broker::start`] does, with these environment variables.
    pub fn start_with_env(env: &[(&str, &str)], args: &[&str]) -> Broker {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shardmq"));
        command.envs(env.iter().copied());
        Broker::spawn(command, &BASE, args)
    }

    /// The exit status, if the broker ends by itself within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        // SAFETY: signalling our own child by PID.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.wait_exit(Duration::from_secs(10))
            .expect("broker did not exit after SIGTERM")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An MQTT client over a plain socket, built on the shared codec.
pub struct RawClient {
    pub stream: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
    pub protocol: Protocol,
}

/// A CONNECT with the given id and session flag, keep-alive 60 s.
pub fn connect_packet(client_id: &str, clean: bool) -> Connect {
    Connect {
        protocol: Protocol::V311,
        clean_start: clean,
        keep_alive: 60,
        client_id: ByteStr::from(client_id),
        ..Connect::default()
    }
}

impl RawClient {
    /// Opens a TCP connection without sending anything.
    pub fn open(addr: SocketAddr) -> RawClient {
        RawClient::from_stream(TcpStream::connect(addr).expect("connect"))
    }

    /// A client on a connection opened elsewhere (from another source address, say).
    pub fn from_stream(stream: TcpStream) -> RawClient {
        stream.set_nodelay(true).unwrap();
        RawClient {
            stream,
            buf: BytesMut::new(),
            decoder: Decoder::with_protocol(1 << 24, Protocol::V311),
            protocol: Protocol::V311,
        }
    }

    /// Connects and returns the CONNACK.
    pub fn connect_with(addr: SocketAddr, connect: Connect) -> (RawClient, ConnAck) {
        let (client, ack) = RawClient::try_connect(addr, connect);
        (client, ack.expect("CONNACK"))
    }

    /// Connects; the CONNACK is `None` if the broker closed the connection without one.
    pub fn try_connect(addr: SocketAddr, connect: Connect) -> (RawClient, Option<ConnAck>) {
        let mut client = RawClient::open(addr);
        client.protocol = connect.protocol;
        client.decoder = Decoder::with_protocol(1 << 24, connect.protocol);
        client.send(&Packet::Connect(Box::new(connect)));
        match client.recv(Duration::from_secs(5)) {
            Some(Packet::ConnAck(ack)) => (client, Some(ack)),
            None => (client, None),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Connects with a clean session and asserts success.
    pub fn connect(addr: SocketAddr, client_id: &str) -> RawClient {
        let (client, ack) = RawClient::connect_with(addr, connect_packet(client_id, true));
        assert_eq!(ack.code, shardmq_codec::ReasonCode::Success);
        client
    }

    /// Connects with a will and a clean session.
    pub fn connect_with_will(
        addr: SocketAddr,
        client_id: &str,
        will: LastWill,
        keep_alive: u16,
    ) -> RawClient {
        let mut connect = connect_packet(client_id, true);
        connect.will = Some(will);
        connect.keep_alive = keep_alive;
        let (client, ack) = RawClient::connect_with(addr, connect);
        assert_eq!(ack.code, shardmq_codec::ReasonCode::Success);
        client
    }

    /// Sends a packet.
    pub fn send(&mut self, packet: &Packet) {
        let mut buf = BytesMut::new();
        encode(packet, self.protocol, &mut buf).expect("encode");
        self.stream.write_all(&buf).expect("send");
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send raw");
    }

    /// The next packet within `timeout`, or `None` on timeout or close.
    pub fn recv(&mut self, timeout: Duration) -> Option<Packet> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(packet) = self
                .decoder
                .decode(&mut self.buf)
                .expect("broker sent a valid packet")
            {
                return Some(packet);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return None,
            }
        }
    }

    /// True if the broker closes the connection within `timeout` (packets before the close are
    /// skipped).
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(err)
                    if matches!(
                        err.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
    }

    /// Subscribes and returns the SUBACK.
    pub fn subscribe(&mut self, filters: &[(&str, QoS)]) -> SubAck {
        let packet_id = PacketId::new(1).unwrap();
        let filters = filters
            .iter()
            .map(|(filter, qos)| SubscribeFilter {
                filter: ByteStr::from(*filter),
                options: SubscriptionOptions {
                    qos: *qos,
                    ..SubscriptionOptions::default()
                },
            })
            .collect();
        self.send(&Packet::Subscribe(Subscribe {
            packet_id,
            filters,
            properties: Default::default(),
        }));
        loop {
            match self.recv(Duration::from_secs(5)) {
                Some(Packet::SubAck(ack)) => return ack,
                Some(_) => continue,
                None => panic!("no SUBACK"),
            }
        }
    }

    /// Publishes (packet id 1 for QoS > 0) without waiting for acknowledgements.
    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool) {
        self.publish_with_id(topic, payload, qos, retain, 1);
    }

    /// Publishes with a given packet id.
    pub fn publish_with_id(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
        id: u16,
    ) {
        let packet_id = (qos != QoS::AtMostOnce).then(|| PacketId::new(id).unwrap());
        self.send(&Packet::Publish(Publish {
            qos,
            retain,
            topic: ByteStr::from(topic),
            packet_id,
            payload: bytes::Bytes::copy_from_slice(payload),
            ..Publish::default()
        }));
    }

    /// The next PUBLISH within `timeout`, skipping other packets.
    pub fn next_publish(&mut self, timeout: Duration) -> Option<Publish> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.recv(left)? {
                Packet::Publish(publish) => return Some(publish),
                _ => continue,
            }
        }
    }

    /// Subscribes to `topic` until its retained message arrives, and returns that message;
    /// panics after [`WAIT`]. Once it has arrived, the replica of the retained index on this
    /// client's shard holds it, and every retained message its publisher sent before it: each
    /// shard applies retained updates from another shard in the order they were published.
    pub fn wait_for_retained(&mut self, topic: &str, qos: QoS) -> Publish {
        let deadline = Instant::now() + WAIT;
        loop {
            self.subscribe(&[(topic, qos)]);
            // Retained messages follow the SUBACK at once; a (re)subscription sends them again.
            if let Some(publish) = self.next_publish(Duration::from_millis(100)) {
                return publish;
            }
            assert!(
                Instant::now() < deadline,
                "no retained message on {topic} within {WAIT:?}"
            );
        }
    }

    /// Sends DISCONNECT and closes.
    pub fn disconnect(mut self) {
        self.send(&Packet::Disconnect(Default::default()));
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        let _ = self.closed_within(Duration::from_secs(2));
    }
}

/// Short timeout for "nothing arrives".
pub const QUIET: Duration = Duration::from_millis(300);
/// Timeout for something that must arrive.
pub const WAIT: Duration = Duration::from_secs(5);

/// What the control core logs once new access rules (SIGHUP, or a Redis invalidation such as
/// `PUBLISH shardmq:invalidate ...`) are applied by every shard to the sessions they concern,
/// with `sessions=N` and `refresh=All` or `refresh=Users([...])`.
pub const RULES_RELOADED: &str = "access rules reloaded";

/// Calls `done` until it returns true, a few times a second; panics naming `what` once
/// `timeout` has passed.
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One HTTP/1.1 request (`Connection: close`); the status code and body.
pub fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to admin");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: test\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    parse_response(&response)
}

/// The status code and body of a whole HTTP/1.1 response.
pub fn parse_response(response: &str) -> (u16, String) {
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, body.to_owned())
}

/// Connects with a clean session and these credentials; the client and the CONNACK code.
pub fn login(
    broker: &Broker,
    client_id: &str,
    user: Option<&str>,
    password: Option<&str>,
) -> (RawClient, ReasonCode) {
    let mut connect = connect_packet(client_id, true);
    connect.username = user.map(ByteStr::from);
    connect.password = password.map(|p| bytes::Bytes::copy_from_slice(p.as_bytes()));
    let (client, ack) = RawClient::connect_with(broker.addr, connect);
    (client, ack.code)
}

/// The users of the original push-server scenario: `T1` and `YXQ` follow each other, `X`
/// follows `YXQ` only. Passwords are `pw1`, `pw2`, `pw3`.
pub const T1: &str = "t1.qq.com";
/// See [`T1`].
pub const YXQ: &str = "yxq_anis.163.com";
/// See [`T1`].
pub const X: &str = "x.sina.com";

/// The original system's functional test, against a broker whose backend (files or Redis) holds
/// the push-server data (auto-subscribe `/%u/chat 1`, `pattern read /%u/chat`,
/// `pattern write /%F/chat`): friends receive each other's chat without subscribing; a one-way
/// follower may neither write to nor read another's chat.
pub fn check_push_server_chat(broker: &Broker) {
    let (mut yxq, code) = login(broker, "yxq-phone", Some(YXQ), Some("pw2"));
    assert_eq!(code, ReasonCode::Success);
    let (mut t1, code) = login(broker, "t1-phone", Some(T1), Some("pw1"));
    assert_eq!(code, ReasonCode::Success);
    let (mut stranger, code) = login(broker, "x-phone", Some(X), Some("pw3"));
    assert_eq!(code, ReasonCode::Success);

    t1.publish_with_id(
        &format!("/{YXQ}/chat"),
        b"hello friend",
        QoS::AtLeastOnce,
        false,
        1,
    );
    assert!(matches!(t1.recv(WAIT), Some(Packet::PubAck(_))));
    let got = yxq
        .next_publish(WAIT)
        .expect("auto-subscribed chat delivers");
    assert_eq!(
        (got.payload.clone(), got.qos),
        (bytes::Bytes::from("hello friend"), QoS::AtLeastOnce)
    );
    yxq.send(&Packet::PubAck(shardmq_codec::PubAck::new(
        got.packet_id.unwrap(),
    )));

    // x follows yxq but is not followed back: %F does not include it. The QoS 1 publish is
    // acknowledged (3.1.1 has no refusal) and dropped.
    stranger.publish_with_id(&format!("/{YXQ}/chat"), b"spam", QoS::AtLeastOnce, false, 1);
    assert!(matches!(stranger.recv(WAIT), Some(Packet::PubAck(_))));
    assert!(
        yxq.next_publish(QUIET).is_none(),
        "a non-friend's message is not delivered"
    );

    // Nobody may read another user's chat.
    let ack = stranger.subscribe(&[(&format!("/{YXQ}/chat"), QoS::AtLeastOnce)]);
    assert_eq!(
        ack.codes,
        vec![ReasonCode::UnspecifiedError],
        "0x80 for a refused filter"
    );
}

/// Sessions that must all lose a revoked `read` (3,000, as an operator's reload would reach).
pub const REVOKED_SESSIONS: usize = 3000;

/// [`REVOKED_SESSIONS`] clients subscribed to `news/#` and `probe/#`; `revoke` changes the rules
/// so that `news/#` may no longer be read (and `probe/#` still may) and returns once the broker
/// logged that the new rules are applied. Then not one client receives `news/x`: each reads
/// until the `probe/x` published after it, which the same publisher's order puts behind it.
pub fn check_revocation_reaches_every_session(
    login: impl Fn(&str) -> RawClient,
    revoke: impl FnOnce(),
) {
    let mut clients: Vec<RawClient> = (0..REVOKED_SESSIONS)
        .map(|n| {
            let mut client = login(&format!("reader-{n}"));
            let codes = client
                .subscribe(&[("news/#", QoS::AtMostOnce), ("probe/#", QoS::AtMostOnce)])
                .codes;
            assert_eq!(codes, [ReasonCode::Success, ReasonCode::Success]);
            client
        })
        .collect();
    revoke();
    let mut publisher = login("publisher");
    publisher.publish("news/x", b"revoked", QoS::AtMostOnce, false);
    publisher.publish("probe/x", b"probe", QoS::AtMostOnce, false);
    for (n, client) in clients.iter_mut().enumerate() {
        let first = client.next_publish(WAIT).expect("the probe arrives");
        assert_eq!(
            first.topic.as_str(),
            "probe/x",
            "reader-{n} still received news/x"
        );
    }
}
impl RawClient {
    /// Opens a TCP connection from the loopback address `source` (any of 127.0.0.0/8 reaches a
    /// broker on 127.0.0.1 under Linux), so that one test can play clients on distinct
    /// addresses.
    pub fn open_from(addr: SocketAddr, source: std::net::IpAddr) -> RawClient {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .expect("socket");
        socket
            .bind(&SocketAddr::new(source, 0).into())
            .expect("bind the source address");
        socket.connect_timeout(&addr.into(), WAIT).expect("connect");
        RawClient::from_stream(TcpStream::from(socket))
    }
}

/// Logs in (MQTT 3.1.1, clean session) from the loopback address `source` with a user name and
/// password; the client and the CONNACK's 3.1.1 return code, `None` if the broker sent none
/// within [`WAIT`].
pub fn login_from(
    broker: &Broker,
    source: &str,
    client_id: &str,
    user: &str,
    password: &[u8],
) -> (RawClient, Option<u8>) {
    let mut client = RawClient::open_from(broker.addr, source.parse().expect("source address"));
    let mut connect = connect_packet(client_id, true);
    connect.username = Some(ByteStr::from(user));
    connect.password = Some(bytes::Bytes::copy_from_slice(password));
    client.send(&Packet::Connect(Box::new(connect)));
    let code = match client.recv(WAIT) {
        Some(Packet::ConnAck(ack)) => Some(ack.code.to_v3_connack()),
        None => None,
        other => panic!("expected CONNACK, got {other:?}"),
    };
    (client, code)
}

/// Runs the broker with `args`, expecting it to refuse to start: waits (bounded) for it to exit
/// and returns its stderr; panics if it keeps running or exits with success.
pub fn refused_start(args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardmq"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start shardmq");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the broker started with {args:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert!(!status.success(), "{stderr}");
    stderr
}
