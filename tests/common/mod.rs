//! Test harness: runs the real `shardmq` binary on an ephemeral port and talks to it through
//! real clients. [`Broker`] reads the readiness line for the bound address and kills the process
//! (by PID) when dropped; [`RawClient`] speaks MQTT byte-exactly through the shared codec.
#![allow(dead_code)]

pub mod files;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use shardmq_codec::{
    encode, ByteStr, ConnAck, Connect, Decoder, LastWill, Packet, PacketId, Protocol, Publish, QoS,
    ReasonCode, SubAck, Subscribe, SubscribeFilter, SubscriptionOptions,
};

/// A running broker process.
pub struct Broker {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl Broker {
    /// Starts the broker with two shards on 127.0.0.1:0, the admin API on 127.0.0.1:0, plus
    /// `args` (which may override any of these).
    pub fn start(args: &[&str]) -> Broker {
        Broker::start_with(
            &[
                "--listen",
                "127.0.0.1:0",
                "--shards",
                "2",
                "--admin-listen",
                "127.0.0.1:0",
            ],
            args,
        )
    }

    /// Starts the broker with exactly `base` + `args`.
    pub fn start_with(base: &[&str], args: &[&str]) -> Broker {
        Broker::spawn(Command::new(env!("CARGO_BIN_EXE_shardmq")), base, args)
    }

    /// Starts the broker (default flags plus `args`) with its open-file limit set to `limit`.
    pub fn start_with_fd_limit(limit: u64, args: &[&str]) -> Broker {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(env!("CARGO_BIN_EXE_shardmq"));
        // SAFETY: only setrlimit, which is async-signal-safe, runs between fork and exec.
        unsafe {
            command.pre_exec(move || {
                let rlimit = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Broker::spawn(
            command,
            &[
                "--listen",
                "127.0.0.1:0",
                "--shards",
                "2",
                "--admin-listen",
                "127.0.0.1:0",
            ],
            args,
        )
    }

    fn spawn(mut command: Command, base: &[&str], args: &[&str]) -> Broker {
        let mut child = command
            .args(base)
            .args(args)
            .env("RUST_LOG", "info,shardmq_shard::connection=debug")
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
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("readiness line");
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
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
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
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(line) = self
                .log()
                .into_iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return Some(line);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        // SAFETY: signalling our own child by PID.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "broker did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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
        let stream = TcpStream::connect(addr).expect("connect");
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
        let stream = TcpStream::from(socket);
        stream.set_nodelay(true).unwrap();
        RawClient {
            stream,
            buf: BytesMut::new(),
            decoder: Decoder::with_protocol(1 << 24, Protocol::V311),
            protocol: Protocol::V311,
        }
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
