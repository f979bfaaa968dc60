//! The admin API's operator endpoints against the real broker, with real MQTT clients: one
//! client in full (online and as an offline session), searching the client list, purging an
//! offline session, listing and lifting bans, the login figures in `/metrics` and
//! `/api/v1/stats` and the login log, and `shardmq top`.
//!
//! Login failures come from other loopback addresses ([`common::login_from`]), so a ban falls
//! on an address of the test's choosing.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::files::Files;
use common::{connect_packet, http, login_from, wait_until, Broker, RawClient, WAIT};
use rumqttc::{Client, Connection, Event, MqttOptions, Outgoing, Packet as MqttPacket};
use serde_json::Value;
use shardmq_codec::{ByteStr, Packet, QoS};

/// CONNACK return codes of MQTT 3.1.1 (a ban reads as "not authorized").
const ACCEPTED: Option<u8> = Some(0);
const BAD_CREDENTIALS: Option<u8> = Some(4);
const NOT_AUTHORIZED: Option<u8> = Some(5);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `GET path` on the admin API: status and JSON body.
fn get(broker: &Broker, path: &str) -> (u16, Value) {
    let (status, body) = http(broker.admin(), "GET", path, None);
    (status, serde_json::from_str(&body).expect("JSON"))
}

/// `DELETE path` on the admin API: status and body.
fn delete(broker: &Broker, path: &str) -> (u16, String) {
    http(broker.admin(), "DELETE", path, None)
}

/// The client ids of a listing.
fn ids(listing: &Value) -> Vec<&str> {
    listing["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .map(|client| client["client_id"].as_str().expect("client_id"))
        .collect()
}

/// Connects with a clean session as `user`.
fn connect_as(broker: &Broker, client_id: &str, user: &str) -> RawClient {
    let mut connect = connect_packet(client_id, true);
    connect.username = Some(ByteStr::from(user));
    let (client, ack) = RawClient::connect_with(broker.addr, connect);
    assert_eq!(ack.code, shardmq_codec::ReasonCode::Success);
    client
}

/// Publishes at QoS 1 and waits for the PUBACK.
fn publish_acked(client: &mut RawClient, topic: &str, payload: &[u8]) {
    client.publish(topic, payload, QoS::AtLeastOnce, false);
    loop {
        match client.recv(WAIT) {
            Some(Packet::PubAck(_)) => return,
            Some(_) => continue,
            None => panic!("no PUBACK for {topic}"),
        }
    }
}

#[test]
fn one_client_in_full_and_the_list_searched() {
    let broker = Broker::start(&["--persistent-client-expiration", "3600"]);
    let _sensor = connect_as(&broker, "sensor-1", "alice");
    let mut online = connect_as(&broker, "sensor-2", "alice");
    let _other = connect_as(&broker, "plant-1", "bob");
    let _anonymous = RawClient::connect(broker.addr, "sensor-3");
    let ack = online.subscribe(&[("b/#", QoS::AtLeastOnce), ("a/+", QoS::AtMostOnce)]);
    assert_eq!(ack.codes.len(), 2);

    // One client, online.
    let (status, details) = get(&broker, "/api/v1/clients/sensor-2");
    assert_eq!(status, 200, "{details}");
    assert_eq!(details["client_id"], "sensor-2");
    assert_eq!(details["username"], "alice");
    assert_eq!(
        details["address"],
        online.stream.local_addr().unwrap().to_string()
    );
    assert_eq!(details["protocol_level"], 4);
    assert_eq!(details["protocol"], "3.1.1");
    assert_eq!(details["keep_alive"], 60);
    assert_eq!(details["clean_start"], true);
    assert_eq!(details["persistent"], false);
    assert_eq!(details["connected"], true);
    assert!(details["connected_since"].as_u64().unwrap() > 1_600_000_000);
    assert!(details["offline_since"].is_null());
    assert!(details["session_expires_in"].is_null());
    assert!(details["shard"].as_u64().unwrap() < 2);
    let subscriptions = details["subscriptions"].as_array().expect("subscriptions");
    assert_eq!(subscriptions.len(), 2, "{details}");
    assert_eq!(subscriptions[0]["filter"], "a/+", "sorted by filter");
    assert_eq!(subscriptions[0]["qos"], 0);
    assert_eq!(subscriptions[1]["filter"], "b/#");
    assert_eq!(subscriptions[1]["qos"], 1);
    assert_eq!(subscriptions[1]["no_local"], false);
    assert_eq!(subscriptions[1]["retain_handling"], "send_at_subscribe");
    for figure in ["queued", "queued_bytes", "inflight", "dropped"] {
        assert_eq!(details[figure], 0, "{figure}: {details}");
    }

    // Unknown ids are a 404 with a JSON error; an id is percent-decoded.
    let (status, body) = get(&broker, "/api/v1/clients/nobody%20here");
    assert_eq!(status, 404);
    assert!(body["error"].is_string(), "{body}");

    // An offline persistent session with messages queued for it.
    let (mut keeper, ack) = RawClient::connect_with(broker.addr, connect_packet("keeper", false));
    assert!(!ack.session_present);
    keeper.subscribe(&[("q/#", QoS::AtLeastOnce)]);
    keeper.disconnect();
    wait_until("keeper offline", WAIT, || {
        broker
            .client("keeper")
            .is_some_and(|client| client["connected"] == false)
    });
    let mut publisher = RawClient::connect(broker.addr, "publisher");
    for payload in [&b"one"[..], b"two", b"three"] {
        publish_acked(&mut publisher, "q/x", payload);
    }
    let mut details = Value::Null;
    wait_until("three messages queued for keeper", WAIT, || {
        details = get(&broker, "/api/v1/clients/keeper").1;
        details["queued"] == 3
    });
    assert_eq!(details["queued_bytes"], 11, "{details}");
    assert_eq!(details["connected"], false);
    assert_eq!(details["persistent"], true);
    assert_eq!(details["clean_start"], false);
    let now = unix_now();
    let offline_since = details["offline_since"].as_u64().expect("offline_since");
    assert!(
        offline_since <= now && offline_since + 60 > now,
        "{details}"
    );
    let expires_in = details["session_expires_in"].as_u64().expect("expiry");
    assert!(expires_in <= 3600 && expires_in > 3500, "{details}");
    assert_eq!(details["subscriptions"][0]["filter"], "q/#");

    // Searches: by client id prefix, by user name, both, with paging.
    let listing = broker.admin_json("/api/v1/clients?prefix=sensor-");
    assert_eq!(ids(&listing), ["sensor-1", "sensor-2", "sensor-3"]);
    assert_eq!(listing["total"], 3);
    let listing = broker.admin_json("/api/v1/clients?username=alice");
    assert_eq!(ids(&listing), ["sensor-1", "sensor-2"]);
    let listing =
        broker.admin_json("/api/v1/clients?prefix=sensor-&username=alice&per_page=1&page=2");
    assert_eq!(ids(&listing), ["sensor-2"]);
    assert_eq!(listing["total"], 2);
    let listing = broker.admin_json("/api/v1/clients?prefix=plant&username=alice");
    assert_eq!(listing["total"], 0);
    assert!(ids(&listing).is_empty());
    let listing = broker.admin_json("/api/v1/clients?prefix=kee");
    assert_eq!(ids(&listing), ["keeper"], "offline sessions are found too");
    let everyone = broker.admin_json("/api/v1/clients");
    assert_eq!(everyone["total"], 6);
}

/// Drives a rumqttc connection until `done` takes an event; panics after [`WAIT`].
fn drive(connection: &mut Connection, mut done: impl FnMut(&Event) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .expect("the client waited too long");
        match connection.recv_timeout(left) {
            Ok(Ok(event)) if done(&event) => return,
            Ok(Ok(_)) => {}
            Ok(Err(err)) => panic!("rumqttc: {err}"),
            Err(err) => panic!("rumqttc: {err:?}"),
        }
    }
}

/// A rumqttc client with a persistent session (clean session off); returns it with its
/// connection and the CONNACK's Session Present.
fn persistent_client(broker: &Broker, client_id: &str) -> (Client, Connection, bool) {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", broker.addr.port());
    options.set_clean_session(false);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut connection) = Client::new(options, 16);
    let mut present = None;
    drive(&mut connection, |event| match event {
        Event::Incoming(MqttPacket::ConnAck(ack)) => {
            present = Some(ack.session_present);
            true
        }
        _ => false,
    });
    (client, connection, present.expect("CONNACK"))
}

#[test]
fn an_offline_session_is_purged_and_the_next_connection_starts_clean() {
    let broker = Broker::start(&[]);
    let (keeper, mut connection, present) = persistent_client(&broker, "keeper");
    assert!(!present);
    keeper
        .subscribe("news/#", rumqttc::QoS::AtLeastOnce)
        .unwrap();
    drive(&mut connection, |event| {
        matches!(event, Event::Incoming(MqttPacket::SubAck(_)))
    });

    // Connected: not purged (kicking is DELETE /api/v1/clients/{id}).
    let (status, body) = delete(&broker, "/api/v1/sessions/keeper");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("connected"), "{body}");

    keeper.disconnect().unwrap();
    drive(&mut connection, |event| {
        matches!(event, Event::Outgoing(Outgoing::Disconnect))
    });
    drop((keeper, connection));
    wait_until("keeper offline", WAIT, || {
        broker
            .client("keeper")
            .is_some_and(|client| client["connected"] == false)
    });
    broker.wait_for_stats("one offline session", |stats| {
        stats["total"]["sessions_offline"] == 1 && stats["total"]["subscriptions"] == 1
    });

    let (status, body) = delete(&broker, "/api/v1/sessions/keeper");
    assert_eq!(status, 204, "{body}");
    let (status, body) = delete(&broker, "/api/v1/sessions/keeper");
    assert_eq!(status, 404, "purged already: {body}");
    assert!(body.contains("\"error\""), "{body}");
    assert!(broker.client("keeper").is_none());
    assert_eq!(get(&broker, "/api/v1/clients/keeper").0, 404);
    let stats = broker.wait_for_stats("the purge in the figures", |stats| {
        stats["total"]["sessions_purged"] == 1
    });
    assert_eq!(stats["total"]["sessions_offline"], 0, "{stats}");
    assert_eq!(stats["total"]["subscriptions"], 0, "{stats}");

    // Published after the purge: nobody holds news/# any more.
    let mut publisher = RawClient::connect(broker.addr, "publisher");
    publish_acked(&mut publisher, "news/1", b"after the purge");

    let (keeper, mut connection, present) = persistent_client(&broker, "keeper");
    assert!(!present, "Session Present 0 after the purge");
    let details = broker.admin_json("/api/v1/clients/keeper");
    assert_eq!(
        details["subscriptions"],
        Value::Array(Vec::new()),
        "{details}"
    );
    assert_eq!(details["queued"], 0, "{details}");
    // Nothing was queued: the first message to arrive is one published after a new
    // subscription (a queued message would come first, right after the CONNACK).
    keeper
        .subscribe("probe", rumqttc::QoS::AtLeastOnce)
        .unwrap();
    drive(&mut connection, |event| {
        matches!(event, Event::Incoming(MqttPacket::SubAck(_)))
    });
    publish_acked(&mut publisher, "probe", b"probe");
    let mut first = None;
    drive(&mut connection, |event| match event {
        Event::Incoming(MqttPacket::Publish(publish)) => {
            first = Some(publish.topic.clone());
            true
        }
        _ => false,
    });
    assert_eq!(first.as_deref(), Some("probe"));

    let (status, _) = delete(&broker, "/api/v1/sessions/nobody");
    assert_eq!(status, 404);
    let (status, _) = http(broker.admin(), "GET", "/api/v1/sessions/keeper", None);
    assert_eq!(status, 405);
}

/// The login figures of `/metrics`, by sample name (`shardmq_login_failures{reason="banned"}`).
fn login_metrics(broker: &Broker) -> Vec<(String, f64)> {
    let (status, text) = http(broker.admin(), "GET", "/metrics", None);
    assert_eq!(status, 200);
    text.lines()
        .filter(|line| line.starts_with("shardmq_login_") || line.starts_with("shardmq_bans_"))
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn metric(metrics: &[(String, f64)], name: &str) -> f64 {
    metrics
        .iter()
        .find(|(sample, _)| sample == name)
        .unwrap_or_else(|| panic!("no {name} in {metrics:?}"))
        .1
}

#[test]
fn bans_are_listed_counted_and_lifted() {
    let files = Files::new("admin-bans");
    let passwd = files.passwords(&[("alice", "right")]);
    let broker = Broker::start(&[
        "--password-file",
        &passwd,
        "--max-login-failures",
        "3",
        "--ban-seconds",
        "600",
    ]);
    assert_eq!(
        broker.admin_json("/api/v1/bans"),
        serde_json::json!({"bans": []})
    );

    const ATTACKER: &str = "127.0.0.2";
    for n in 0..2 {
        let (_, code) = login_from(&broker, ATTACKER, &format!("guess-{n}"), "alice", b"wrong");
        assert_eq!(code, BAD_CREDENTIALS);
    }
    let (_, code) = login_from(&broker, ATTACKER, "guess-2", "mallory", b"x");
    assert_eq!(
        code, BAD_CREDENTIALS,
        "an unknown user reads as a wrong password"
    );
    let (_, code) = login_from(&broker, ATTACKER, "guess-3", "alice", b"right");
    assert_eq!(code, NOT_AUTHORIZED, "banned by the third failure");
    // Anonymous clients are not allowed beside a password file.
    let mut anonymous = RawClient::open_from(broker.addr, "127.0.0.4".parse().unwrap());
    anonymous.send(&Packet::Connect(Box::new(connect_packet(
        "anonymous",
        true,
    ))));
    match anonymous.recv(WAIT) {
        Some(Packet::ConnAck(ack)) => assert_eq!(Some(ack.code.to_v3_connack()), NOT_AUTHORIZED),
        other => panic!("expected CONNACK, got {other:?}"),
    }

    // Counted as they were refused: each answer came after its count.
    let metrics = login_metrics(&broker);
    for (reason, count) in [
        ("bad_password", 2.0),
        ("unknown_user", 1.0),
        ("not_authorized", 1.0),
        ("banned", 1.0),
    ] {
        let name = format!("shardmq_login_failures{{reason=\"{reason}\"}}");
        assert_eq!(metric(&metrics, &name), count, "{name}");
    }
    assert_eq!(metric(&metrics, "shardmq_bans_issued"), 1.0);
    assert_eq!(metric(&metrics, "shardmq_bans_active"), 1.0);
    let logins = &broker.admin_json("/api/v1/stats")["logins"];
    assert_eq!(
        *logins,
        serde_json::json!({
            "failures": {"bad_password": 2, "unknown_user": 1, "not_authorized": 1, "banned": 1},
            "bans_issued": 1,
            "bans_active": 1,
        })
    );

    // The ban, listed.
    let bans = broker.admin_json("/api/v1/bans");
    let bans = bans["bans"].as_array().expect("bans");
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert_eq!(bans[0]["address"], ATTACKER);
    assert_eq!(bans[0]["failures"], 3);
    let left = bans[0]["seconds_left"].as_u64().expect("seconds_left");
    assert!(left <= 600 && left > 540, "{bans:?}");
    let until = bans[0]["banned_until"].as_u64().expect("banned_until");
    assert!(until.abs_diff(unix_now() + left) <= 2, "{bans:?}");

    // Each failure and the ban were logged with reason, address, client id and user name.
    let failed = broker
        .wait_for_log(
            &[
                "login failed",
                "reason=\"bad_password\"",
                ATTACKER,
                "guess-0",
                "alice",
            ],
            WAIT,
        )
        .is_some();
    assert!(failed, "{:#?}", broker.log());
    assert!(broker
        .wait_for_log(
            &[
                "login failed",
                "reason=\"unknown_user\"",
                "guess-2",
                "mallory"
            ],
            WAIT
        )
        .is_some());
    assert!(broker
        .wait_for_log(&["login failed", "reason=\"banned\"", "guess-3"], WAIT)
        .is_some());
    assert!(broker
        .wait_for_log(&["address banned", ATTACKER, "guess-2", "failures=3"], WAIT)
        .is_some());

    // Lifting: unknown and malformed addresses first.
    assert_eq!(delete(&broker, "/api/v1/bans/127.0.0.3").0, 404);
    assert_eq!(delete(&broker, "/api/v1/bans/not-an-address").0, 400);
    let (status, body) = delete(&broker, &format!("/api/v1/bans/{ATTACKER}"));
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        broker.admin_json("/api/v1/bans"),
        serde_json::json!({"bans": []})
    );
    let metrics = login_metrics(&broker);
    assert_eq!(metric(&metrics, "shardmq_bans_active"), 0.0);
    assert_eq!(metric(&metrics, "shardmq_bans_issued"), 1.0);
    let (_alice, code) = login_from(&broker, ATTACKER, "alice-phone", "alice", b"right");
    assert_eq!(code, ACCEPTED, "the address may log in again");
    assert!(broker
        .wait_for_log(&["ban lifted", ATTACKER], WAIT)
        .is_some());
}

#[test]
fn failed_logins_are_logged_a_few_per_address() {
    let files = Files::new("admin-login-log");
    let passwd = files.passwords(&[("alice", "right")]);
    let broker = Broker::start(&["--password-file", &passwd, "--max-login-failures", "8"]);
    const FLOOD: &str = "127.0.0.5";
    // Eight failures at once (each answer is held back a little longer than the last, so they
    // are sent together); the eighth bans the address.
    let attempts: Vec<_> = (0..8)
        .map(|n| {
            let broker_addr = broker.addr;
            std::thread::spawn(move || {
                let mut client = RawClient::open_from(broker_addr, FLOOD.parse().unwrap());
                let mut connect = connect_packet(&format!("flood-{n}"), true);
                connect.username = Some(ByteStr::from("alice"));
                connect.password = Some(bytes::Bytes::from_static(b"wrong"));
                client.send(&Packet::Connect(Box::new(connect)));
                matches!(client.recv(WAIT), Some(Packet::ConnAck(_)))
            })
        })
        .collect();
    for attempt in attempts {
        assert!(attempt.join().unwrap(), "every attempt is answered");
    }
    // The ban is logged after the failure that caused it, and bans are never suppressed: once
    // its line is in, every failure line is.
    assert!(
        broker
            .wait_for_log(&["address banned", FLOOD], WAIT)
            .is_some(),
        "{:#?}",
        broker.log()
    );
    let lines = broker
        .log()
        .iter()
        .filter(|line| line.contains("login failed") && line.contains(FLOOD))
        .count();
    assert_eq!(
        lines,
        5,
        "five lines per address a minute: {:#?}",
        broker.log()
    );
    let failures = login_metrics(&broker);
    assert_eq!(
        metric(&failures, "shardmq_login_failures{reason=\"bad_password\"}"),
        8.0,
        "every failure is counted"
    );
}

/// Publishes QoS 1 messages on `topic`, each after the last one's PUBACK, and reads what a
/// subscriber receives, until dropped.
struct Traffic {
    running: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(broker: &Broker, topic: &'static str) -> Traffic {
        let running = Arc::new(AtomicBool::new(true));
        let mut subscriber = RawClient::connect(broker.addr, "top-subscriber");
        subscriber.subscribe(&[(topic, QoS::AtMostOnce)]);
        let mut publisher = RawClient::connect(broker.addr, "top-publisher");
        let reading = Arc::clone(&running);
        let reader = std::thread::spawn(move || {
            while reading.load(Ordering::Acquire) {
                subscriber.recv(Duration::from_millis(100));
            }
        });
        let publishing = Arc::clone(&running);
        let writer = std::thread::spawn(move || {
            let mut id = 0u16;
            while publishing.load(Ordering::Acquire) {
                id = id % 60_000 + 1;
                publisher.publish_with_id(topic, b"figure", QoS::AtLeastOnce, false, id);
                assert!(matches!(publisher.recv(WAIT), Some(Packet::PubAck(_))));
            }
        });
        Traffic {
            running,
            threads: vec![reader, writer],
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Release);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The number after `label` in `line` (`in 12.5/s` → 12.5).
fn figure_after(line: &str, label: &str) -> f64 {
    let rest = line
        .split(label)
        .nth(1)
        .unwrap_or_else(|| panic!("no {label:?} in {line:?}"));
    rest.split_whitespace()
        .next()
        .and_then(|word| {
            word.trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no number after {label:?} in {line:?}"))
}

#[test]
fn top_once_prints_the_broker_figures() {
    let broker = Broker::start(&["--admin-token", "tk"]);
    let (_keeper, _) = RawClient::connect_with(broker.addr, connect_packet("idle", true));
    let traffic = Traffic::start(&broker, "top/hot");
    // The ranking has the topic once the monitor has counted a second of traffic.
    wait_until("top/hot ranked", Duration::from_secs(10), || {
        let (status, body) = http(broker.admin(), "GET", "/api/v1/topics/hot", Some("tk"));
        assert_eq!(status, 200, "{body}");
        let ranking: Value = serde_json::from_str(&body).expect("JSON");
        ranking["topics"][0]["topic"] == "top/hot"
    });
    let output = Command::new(env!("CARGO_BIN_EXE_shardmq"))
        .args(["top", "--once", "--interval", "1", "--top", "3"])
        .args([
            "--admin",
            &format!("http://{}", broker.admin()),
            "--token",
            "tk",
        ])
        .output()
        .expect("run shardmq top");
    drop(traffic);
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !text.contains('\x1b'),
        "no escape sequences when piped: {text:?}"
    );
    let line = |prefix: &str| {
        text.lines()
            .find(|line| line.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?} in\n{text}"))
    };
    assert!(line("shardmq ").contains("  2 shards  "), "{text}");
    let seconds = figure_after(line("shardmq "), "rates over");
    assert!((0.5..=3.0).contains(&seconds), "{text}");
    assert_eq!(figure_after(line("clients "), "connected"), 3.0, "{text}");
    assert_eq!(
        figure_after(line("clients "), "subscriptions"),
        1.0,
        "{text}"
    );
    let messages = line("messages ");
    assert!(figure_after(messages, "in") > 0.0, "{text}");
    assert!(figure_after(messages, "out") > 0.0, "{text}");
    assert!(figure_after(messages, "total in") > 0.0, "{text}");
    assert_eq!(figure_after(line("drops "), "queue full"), 0.0, "{text}");
    assert_eq!(figure_after(line("logins "), "bans active"), 0.0, "{text}");
    assert!(figure_after(line("host "), "cpu") >= 0.0, "{text}");
    assert!(line("broker ").contains("memory"), "{text}");
    // One line per shard under the header; their connections add up to the broker's.
    let header = text
        .lines()
        .position(|line| line.trim_start().starts_with("shard "))
        .expect("shard table");
    let shards: Vec<Vec<&str>> = text
        .lines()
        .skip(header + 1)
        .take(2)
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(shards[0][0], "0", "{text}");
    assert_eq!(shards[1][0], "1", "{text}");
    let connections: u64 = shards
        .iter()
        .map(|cells| cells[1].parse::<u64>().unwrap())
        .sum();
    assert_eq!(connections, 3, "{text}");
    let hot = text
        .lines()
        .find(|line| line.ends_with("  top/hot"))
        .unwrap_or_else(|| panic!("top/hot not among the hot topics:\n{text}"));
    let cells: Vec<&str> = hot.split_whitespace().collect();
    assert_eq!(cells[0], "1", "{text}");
    assert!(cells[1].parse::<u64>().unwrap() > 0, "{text}");
}

#[test]
fn top_refreshes_until_stopped() {
    let broker = Broker::start(&[]);
    let mut top = Command::new(env!("CARGO_BIN_EXE_shardmq"))
        .args(["top", "--interval", "0.3"])
        .args(["--admin", &format!("http://{}", broker.admin())])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start shardmq top");
    let stdout = top.stdout.take().expect("stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut frames = Vec::new();
    while frames.len() < 2 {
        let left = deadline
            .checked_duration_since(Instant::now())
            .expect("two frames within 10 s");
        let line = lines_rx.recv_timeout(left).expect("a line");
        assert!(!line.contains('\x1b'), "no escape sequences when piped");
        if line.starts_with("shardmq ") {
            frames.push(line);
        }
    }
    let _ = top.kill();
    let _ = top.wait();
    for frame in &frames {
        assert!(frame.contains("  2 shards  "), "{frames:?}");
    }
}
