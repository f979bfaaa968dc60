//! Bad input and operations: malformed packets close only the offending connection, timeouts,
//! limits, configuration errors, signals, and interoperability with standard clients.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::external::{available, starts};
use common::{connect_packet, http, wait_until, Broker, RawClient, QUIET, WAIT};
use shardmq_codec::{Packet, QoS, ReasonCode};

/// A healthy subscriber that must keep working while others misbehave.
fn bystander(broker: &Broker) -> (RawClient, RawClient) {
    let mut sub = RawClient::connect(broker.addr, "bystander-sub");
    sub.subscribe(&[("health", QoS::AtMostOnce)]);
    let publisher = RawClient::connect(broker.addr, "bystander-pub");
    (sub, publisher)
}

fn still_healthy(sub: &mut RawClient, publisher: &mut RawClient) {
    publisher.publish("health", b"ok", QoS::AtMostOnce, false);
    assert_eq!(
        sub.next_publish(WAIT)
            .expect("bystander unaffected")
            .payload,
        Bytes::from("ok")
    );
}

#[test]
fn malformed_packets_close_only_that_connection() {
    let broker = Broker::start(&[]);
    let (mut sub, mut publisher) = bystander(&broker);
    let cases: &[(&str, &[u8])] = &[
        (
            "remaining length over 4 bytes",
            &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        ),
        (
            "reserved flags on SUBSCRIBE",
            &[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00],
        ),
        ("QoS 3 publish", &[0x36, 0x05, 0x00, 0x01, b'a', 0x00, 0x01]),
        ("wildcard in topic name", &[0x30, 0x03, 0x00, 0x01, b'#']),
        ("invalid UTF-8 topic", &[0x30, 0x04, 0x00, 0x02, 0xC3, 0x28]),
        ("packet type 0", &[0x00, 0x00]),
        ("SUBSCRIBE without filters", &[0x82, 0x02, 0x00, 0x01]),
        (
            "second CONNECT",
            &[
                0x10, 0x0C, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x00,
            ],
        ),
        ("server-only packet", &[0x20, 0x02, 0x00, 0x00]),
    ];
    for (name, bytes) in cases {
        let mut client = RawClient::connect(broker.addr, "offender");
        client.send_raw(bytes);
        assert!(client.closed_within(WAIT), "{name}: connection closed");
        still_healthy(&mut sub, &mut publisher);
    }
}

#[test]
fn first_packet_must_be_connect_and_in_time() {
    let broker = Broker::start(&["--connect-timeout", "1"]);
    let (mut sub, mut publisher) = bystander(&broker);

    let mut early = RawClient::open(broker.addr);
    early.send(&Packet::PingReq);
    assert!(
        early.closed_within(WAIT),
        "PINGREQ before CONNECT closes [MQTT-3.1.0-1]"
    );

    let mut idle = RawClient::open(broker.addr);
    assert!(
        !idle.closed_within(Duration::from_millis(300)),
        "still open before the timeout"
    );
    assert!(
        idle.closed_within(Duration::from_secs(4)),
        "closed after connect_timeout"
    );

    let mut garbage = RawClient::open(broker.addr);
    garbage.send_raw(b"GET / HTTP/1.1\r\n\r\n");
    assert!(garbage.closed_within(WAIT));
    still_healthy(&mut sub, &mut publisher);
}

#[test]
fn unsupported_protocol_level_gets_return_code_1() {
    let broker = Broker::start(&[]);
    let mut client = RawClient::open(broker.addr);
    // CONNECT "MQTT" level 9.
    client.send_raw(&[
        0x10, 0x0E, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x09, 0x02, 0x00, 0x3C, 0x00, 0x02, b'i',
        b'd',
    ]);
    match client.recv(WAIT) {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.code.to_v3_connack(), 1),
        other => panic!("expected CONNACK 1, got {other:?}"),
    }
    assert!(client.closed_within(WAIT));
}

#[test]
fn oversized_packet_is_refused_before_it_is_buffered() {
    let broker = Broker::start(&["--max-packet-size", "1024"]);
    let (mut sub, mut publisher) = bystander(&broker);
    let mut big = RawClient::connect(broker.addr, "big");
    // Announce 1 MiB and send only the header: the broker must not wait for the body.
    big.send_raw(&[0x30, 0x80, 0x80, 0x40]);
    assert!(big.closed_within(WAIT));
    let mut fits = RawClient::connect(broker.addr, "fits");
    fits.publish("health", &[b'x'; 900], QoS::AtMostOnce, false);
    assert_eq!(sub.next_publish(WAIT).unwrap().payload.len(), 900);
    still_healthy(&mut sub, &mut publisher);
}

#[test]
fn max_connections_refuses_extra_clients() {
    let broker = Broker::start(&["--max-connections", "3"]);
    let _a = RawClient::connect(broker.addr, "a");
    let _b = RawClient::connect(broker.addr, "b");
    let _c = RawClient::connect(broker.addr, "c");
    let mut extra = RawClient::open(broker.addr);
    extra.send(&Packet::Connect(Box::new(connect_packet("d", true))));
    assert!(extra.recv(WAIT).is_none(), "no CONNACK beyond the limit");
}

#[test]
fn slow_consumer_is_bounded_and_others_keep_flowing() {
    let broker = Broker::start(&["--max-outbox-bytes", "65536"]);
    // A subscriber that never reads: once the kernel's socket buffers and its 64 KiB outbox are
    // full, its QoS 0 messages are dropped instead of holding anything else up.
    let mut stalled = RawClient::connect(broker.addr, "stalled");
    stalled.subscribe(&[("flood", QoS::AtMostOnce)]);
    let mut healthy = RawClient::connect(broker.addr, "healthy");
    healthy.subscribe(&[("flood", QoS::AtMostOnce)]);
    let mut publisher = RawClient::connect(broker.addr, "flooder");
    let payload = vec![7u8; 4096];
    // 16 MiB in all, in lock-step batches the healthy subscriber can keep up with.
    for batch in 0..400 {
        for _ in 0..10 {
            publisher.publish("flood", &payload, QoS::AtMostOnce, false);
        }
        for n in 0..10 {
            assert!(
                healthy.next_publish(WAIT).is_some(),
                "batch {batch}, message {n}: healthy subscriber starved"
            );
        }
    }
    // The stalled client is still connected, and catches up on what its buffers held.
    let mut drained = 0;
    while stalled.next_publish(QUIET).is_some() {
        drained += 1;
    }
    assert!(
        drained > 0 && drained < 3000,
        "stalled subscriber got {drained}: bounded, not everything"
    );
}

#[test]
fn sigterm_closes_connections_and_exits_zero() {
    let broker = Broker::start(&[]);
    let mut client = RawClient::connect(broker.addr, "c");
    let status = broker.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert!(client.closed_within(WAIT));
}

#[test]
fn config_errors_name_file_line_and_key() {
    let dir = std::env::temp_dir().join(format!("shardmq-test-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "shards = 2\nlisten = [\"127.0.0.1:0\"]\nmax_inflight = 5\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_shardmq"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("line 3") && stderr.contains("max_inflight"),
        "{stderr}"
    );

    std::fs::write(&path, "listen = [\"127.0.0.1:99999\"]\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_shardmq"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 1") && stderr.contains("listen"),
        "{stderr}"
    );
}

#[test]
fn config_file_is_used_and_flags_override_it() {
    let dir = std::env::temp_dir().join(format!("shardmq-test-config-ok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ok.toml");
    std::fs::write(
        &path,
        "listen = [\"127.0.0.1:0\"]\nshards = 1\nmax_inflight_messages = 2\n",
    )
    .unwrap();
    let broker = Broker::start_with(&["--config", path.to_str().unwrap(), "--shards", "2"], &[]);
    assert!(
        broker
            .wait_for_log(&["shard started", "shard=1"], WAIT)
            .is_some(),
        "flag overrides file"
    );
    let mut sub = RawClient::connect(broker.addr, "s");
    sub.subscribe(&[("w", QoS::AtLeastOnce)]);
    let mut publisher = RawClient::connect(broker.addr, "p");
    for n in 1..=5 {
        publisher.publish_with_id("w", b"x", QoS::AtLeastOnce, false, n);
    }
    let mut got = 0;
    while sub.next_publish(QUIET).is_some() {
        got += 1;
    }
    assert_eq!(got, 2, "max_inflight_messages from the file applies");
}

/// Whether the mosquitto clients can run (see [`available`]).
fn mosquitto_clients() -> bool {
    available(
        "mosquitto_sub and mosquitto_pub",
        starts("mosquitto_sub", &["--help"]) && starts("mosquitto_pub", &["--help"]),
        "apt-get install mosquitto-clients",
    )
}

/// A `mosquitto_sub` printing its debug lines too, line-buffered (`stdbuf -oL`), so the test sees
/// when the broker acknowledged the subscription.
struct MosquittoSub {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl MosquittoSub {
    /// Starts `mosquitto_sub -d` with `args`, and waits until it has received its SUBACK.
    fn subscribed(args: &[&str]) -> MosquittoSub {
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub", "-d"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start mosquitto_sub");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        let mut sub = MosquittoSub {
            child,
            lines,
            seen: Vec::new(),
        };
        let deadline = Instant::now() + WAIT;
        while !sub
            .seen
            .iter()
            .any(|line| line.ends_with(" received SUBACK"))
        {
            let left = deadline.saturating_duration_since(Instant::now());
            match sub.lines.recv_timeout(left) {
                Ok(line) => sub.seen.push(line),
                Err(_) => panic!("mosquitto_sub got no SUBACK: {:?}", sub.seen),
            }
        }
        sub
    }

    /// Waits for it to exit (after `-C` messages, or `-W` seconds) and returns what it printed
    /// for the messages, without its debug lines.
    fn messages(mut self) -> Vec<String> {
        self.child.wait().expect("mosquitto_sub exits");
        self.seen.extend(self.lines.iter());
        std::mem::take(&mut self.seen)
            .into_iter()
            .filter(|line| !line.starts_with("Client ") && !line.starts_with("Subscribed (mid"))
            .collect()
    }
}

impl Drop for MosquittoSub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn mosquitto_clients_interoperate() {
    if !mosquitto_clients() {
        return;
    }
    let broker = Broker::start(&[]);
    let port = broker.addr.port().to_string();
    let sub = MosquittoSub::subscribed(&[
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        "interop/#",
        "-q",
        "2",
        "-C",
        "3",
        "-W",
        "10",
        "-v",
        "-V",
        "mqttv311",
    ]);
    for (qos, msg) in [("0", "zero"), ("1", "one"), ("2", "two")] {
        let status = Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-t",
                &format!("interop/{qos}"),
                "-q",
                qos,
                "-m",
                msg,
            ])
            .status()
            .unwrap();
        assert!(status.success());
    }
    assert_eq!(
        sub.messages(),
        vec!["interop/0 zero", "interop/1 one", "interop/2 two"]
    );

    // MQTT 5 client too.
    let sub5 = MosquittoSub::subscribed(&[
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        "v5/t",
        "-q",
        "1",
        "-C",
        "1",
        "-W",
        "10",
        "-V",
        "mqttv5",
    ]);
    let status = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "v5/t",
            "-q",
            "1",
            "-m",
            "hello5",
            "-V",
            "mqttv5",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(sub5.messages(), vec!["hello5"]);
}

#[test]
fn rumqttc_interoperates() {
    use rumqttc::{Client, Event, MqttOptions, Packet as RPacket, QoS as RQoS};
    let broker = Broker::start(&[]);
    let mut options = MqttOptions::new("rumqttc-sub", "127.0.0.1", broker.addr.port());
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut connection) = Client::new(options, 100);
    client.subscribe("rumqttc/#", RQoS::AtLeastOnce).unwrap();
    let mut publisher_options = MqttOptions::new("rumqttc-pub", "127.0.0.1", broker.addr.port());
    publisher_options.set_keep_alive(Duration::from_secs(5));
    let (publisher, mut publisher_connection) = Client::new(publisher_options, 100);
    let pump = std::thread::spawn(move || {
        for event in publisher_connection.iter().take(40) {
            if event.is_err() {
                break;
            }
        }
    });
    let mut subscribed = false;
    let mut received = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for event in connection.iter() {
        assert!(std::time::Instant::now() < deadline, "timed out");
        match event {
            Ok(Event::Incoming(RPacket::SubAck(_))) if !subscribed => {
                subscribed = true;
                for n in 0..10 {
                    publisher
                        .publish("rumqttc/x", RQoS::AtLeastOnce, false, vec![n])
                        .unwrap();
                }
            }
            Ok(Event::Incoming(RPacket::Publish(p))) => {
                received.push(p.payload[0]);
                if received.len() == 10 {
                    break;
                }
            }
            Ok(_) => {}
            Err(err) => panic!("rumqttc error: {err}"),
        }
    }
    assert_eq!(received, (0..10).collect::<Vec<u8>>());
    let _ = publisher.disconnect();
    let _ = pump.join();
    let _ = ReasonCode::Success;
}

/// Descriptors the process `pid` has open.
fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/PID/fd")
        .count()
}

#[test]
fn running_out_of_descriptors_backs_off_and_recovers() {
    // A limit far below the load: accepting fails with EMFILE until connections go away.
    const LIMIT: u64 = 96;
    let broker = Broker::start_with_fd_limit(LIMIT, &[]);
    let admin = broker.admin();
    let (mut sub, mut publisher) = bystander(&broker);
    let flood: Vec<std::net::TcpStream> = (0..150)
        .filter_map(|_| std::net::TcpStream::connect(broker.addr).ok())
        .collect();
    // The broker has accepted until every descriptor it may have is in use.
    wait_until("the broker to run out of descriptors", WAIT, || {
        open_descriptors(broker.pid()) as u64 >= LIMIT
    });
    still_healthy(&mut sub, &mut publisher);
    // Logged, as Mosquitto logs it, and throttled: a flood of failed accepts is a line or two.
    assert!(
        broker
            .wait_for_log(
                &["out of file descriptors", "raise the open-file limit"],
                WAIT
            )
            .is_some(),
        "{:#?}",
        broker.log()
    );
    assert!(broker.log_lines("out of file descriptors") <= 4);
    drop(flood);
    // The broker resumes accepting: a new client completes CONNECT.
    let deadline = std::time::Instant::now() + WAIT;
    let mut late = loop {
        let mut client = RawClient::open(broker.addr);
        client.send(&Packet::Connect(Box::new(connect_packet("late", true))));
        if let Some(Packet::ConnAck(ack)) = client.recv(Duration::from_secs(1)) {
            assert_eq!(ack.code, ReasonCode::Success);
            break client;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "broker never accepted again"
        );
    };
    late.subscribe(&[("health", QoS::AtMostOnce)]);
    still_healthy(&mut sub, &mut publisher);
    // Counted, and visible (the monitor refreshes its figures once a second).
    let figure = |metrics: &str, name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, metrics) = http(admin, "GET", "/metrics", None);
        if figure(&metrics, "shardmq_connections_total") >= 3 {
            assert!(figure(&metrics, "shardmq_fd_exhausted") > 0, "{metrics}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "figures never published: {metrics}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
