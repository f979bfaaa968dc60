//! Operating the broker: one process per port, the open-file limit, and log lines an operator
//! can act on (each connection and disconnection with its reason, refusals, denials, protocol
//! errors; `log_level` and `log_format`).

mod common;

use common::files::Files;
use common::{connect_packet, login, refused_start, Broker, RawClient, WAIT};
use serde_json::Value;
use shardmq_codec::{Packet, QoS, ReasonCode};

#[test]
fn a_second_broker_on_the_same_port_refuses_to_start() {
    let broker = Broker::start(&[]);
    let port = broker.addr.to_string();
    let stderr = refused_start(&["--listen", &port, "--admin-listen", ""]);
    assert!(
        stderr.contains("Address already in use") && stderr.contains(&port),
        "{stderr}"
    );
    // The first broker still has every client: both of these land on it.
    let mut sub = RawClient::connect(broker.addr, "sub");
    sub.subscribe(&[("t", QoS::AtMostOnce)]);
    let mut publisher = RawClient::connect(broker.addr, "pub");
    publisher.publish("t", b"one broker", QoS::AtMostOnce, false);
    assert_eq!(
        &sub.next_publish(WAIT).expect("delivered").payload[..],
        b"one broker"
    );
}

#[test]
fn a_port_another_program_holds_refuses_to_start() {
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = other.local_addr().unwrap().to_string();
    let stderr = refused_start(&["--listen", &port, "--admin-listen", ""]);
    assert!(
        stderr.contains("Address already in use") && stderr.contains(&port),
        "{stderr}"
    );
}

/// The hard open-file limit of this process, after raising its own soft limit to it.
fn raise_own_open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    limit.rlim_max
}

#[test]
fn a_low_soft_open_file_limit_is_raised_to_the_hard_one() {
    const CLIENTS: usize = 1_100;
    let hard = raise_own_open_file_limit();
    assert!(
        hard >= 2 * CLIENTS as u64 + 200,
        "this test needs a hard open-file limit of at least {}, not {hard}",
        2 * CLIENTS + 200
    );
    let broker = Broker::start_with_fd_limits(1024, hard, &[]);
    let line = broker
        .wait_for_log(&["open-file limit", "raised_from=1024"], WAIT)
        .expect("the effective limit is logged");
    assert!(line.contains(&format!("limit={hard}")), "{line}");
    // More clients than the soft limit had room for all get in.
    let clients: Vec<RawClient> = (0..CLIENTS)
        .map(|i| RawClient::connect(broker.addr, &format!("fd-{i}")))
        .collect();
    assert_eq!(clients.len(), CLIENTS);
}

#[test]
fn max_connections_above_the_open_file_limit_is_warned_about() {
    let broker = Broker::start_with_fd_limit(2048, &["--max-connections", "5000"]);
    let line = broker
        .wait_for_log(&["WARN", "max_connections is above"], WAIT)
        .unwrap_or_else(|| panic!("no warning: {:#?}", broker.log()));
    assert!(line.contains("max_connections=5000"), "{line}");
}

/// A broker with users and rules, for the log-line tests.
fn broker_with_rules(files: &Files, extra: &[&str]) -> Broker {
    let passwd = files.passwords(&[("alice", "secret")]);
    let acl = files.write("acl", "user alice\ntopic readwrite alice/#\n");
    let mut args = vec!["--password-file", &passwd, "--acl-file", &acl];
    args.extend_from_slice(extra);
    Broker::start(&args)
}

#[test]
fn connections_and_disconnections_are_logged_with_who_where_and_why() {
    let files = Files::new("log-lines");
    let broker = broker_with_rules(&files, &[]);
    let (client, code) = login(&broker, "phone-1", Some("alice"), Some("secret"));
    assert_eq!(code, ReasonCode::Success);
    let connected = broker
        .wait_for_log(&["client connected", "client_id=phone-1"], WAIT)
        .expect("connection logged");
    for field in [
        "username=\"alice\"",
        "address=127.0.0.1:",
        &format!("listener={}", broker.addr),
        "protocol=4",
        "keepalive=60",
        "clean_start=true",
        "shard=",
    ] {
        assert!(connected.contains(field), "{field} missing: {connected}");
    }
    client.disconnect();
    let line = broker
        .wait_for_log(&["client disconnected", "client_id=phone-1"], WAIT)
        .expect("disconnection logged");
    assert!(line.contains("reason=\"client sent DISCONNECT\""), "{line}");
    assert!(line.contains("username=\"alice\""), "{line}");

    // Taken over by a second connection with the same id.
    let (_first, _) = login(&broker, "phone-2", Some("alice"), Some("secret"));
    let (_second, _) = login(&broker, "phone-2", Some("alice"), Some("secret"));
    broker
        .wait_for_log(
            &["client disconnected", "client_id=phone-2", "taken over"],
            WAIT,
        )
        .unwrap_or_else(|| panic!("takeover not logged: {:#?}", broker.log()));

    // A malformed packet: the protocol error is the reason.
    let (mut rogue, _) = login(&broker, "rogue", Some("alice"), Some("secret"));
    rogue.send_raw(&[0xF0, 0x00]); // reserved packet type 15
    assert!(rogue.closed_within(WAIT));
    broker
        .wait_for_log(
            &["client disconnected", "client_id=rogue", "protocol error"],
            WAIT,
        )
        .unwrap_or_else(|| panic!("protocol error not logged: {:#?}", broker.log()));

    // A client that just vanishes.
    let (lost, _) = login(&broker, "lost", Some("alice"), Some("secret"));
    drop(lost);
    broker
        .wait_for_log(
            &[
                "client disconnected",
                "client_id=lost",
                "connection closed by the client",
            ],
            WAIT,
        )
        .unwrap_or_else(|| panic!("lost connection not logged: {:#?}", broker.log()));
}

#[test]
fn denials_are_logged_a_few_per_connection_then_counted() {
    let files = Files::new("log-denials");
    let broker = broker_with_rules(&files, &[]);
    let (mut client, _) = login(&broker, "nosy", Some("alice"), Some("secret"));
    let ack = client.subscribe(&[("bob/inbox", QoS::AtMostOnce)]);
    assert_eq!(ack.codes, vec![ReasonCode::UnspecifiedError]);
    for n in 0..20 {
        client.publish(&format!("bob/inbox/{n}"), b"x", QoS::AtMostOnce, false);
    }
    // A round trip: every publication before it was handled.
    client.subscribe(&[("alice/x", QoS::AtMostOnce)]);
    let line = broker
        .wait_for_log(
            &["denied by the access rules", "action=\"subscribe\""],
            WAIT,
        )
        .expect("subscription denial logged");
    assert!(line.contains("topic=\"bob/inbox\"") && line.contains("client_id=nosy"));
    client.disconnect();
    let farewell = broker
        .wait_for_log(&["client disconnected", "client_id=nosy"], WAIT)
        .expect("disconnection logged");
    assert!(farewell.contains("denied=21"), "{farewell}");
    assert_eq!(
        broker.log_lines("denied by the access rules"),
        3,
        "only the first few denials of a connection are logged one by one"
    );
}

#[test]
fn connections_that_fail_before_connect_are_logged() {
    let broker = Broker::start(&[]);
    let mut client = RawClient::open(broker.addr);
    // PINGREQ before CONNECT.
    client.send_raw(&[0xC0, 0x00]);
    assert!(client.closed_within(WAIT));
    let line = broker
        .wait_for_log(&["connection failed", "not CONNECT"], WAIT)
        .unwrap_or_else(|| panic!("not logged: {:#?}", broker.log()));
    assert!(line.contains("address=127.0.0.1:"), "{line}");
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let broker = Broker::start(&["--log-format", "json"]);
    RawClient::connect(broker.addr, "json-client").disconnect();
    broker
        .wait_for_log(&["client disconnected", "json-client"], WAIT)
        .expect("disconnection logged");
    let lines = broker.log();
    let events: Vec<Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line:?}")))
        .collect();
    let connected = events
        .iter()
        .find(|event| event["message"] == "client connected")
        .expect("a connection event");
    assert_eq!(connected["client_id"], "json-client");
    assert_eq!(connected["protocol"], 4);
    assert_eq!(connected["level"], "INFO");
}

#[test]
fn log_level_warn_leaves_out_connections() {
    let broker = Broker::start_without_rust_log(&["--log-level", "warn", "--max-connections", "1"]);
    let _first = RawClient::connect(broker.addr, "quiet");
    // The second connection is refused, which is a warning: once it is in the log, an info line
    // for the first connection would be too.
    let mut second = RawClient::open(broker.addr);
    second.send(&Packet::Connect(Box::new(connect_packet("over", true))));
    assert!(second.closed_within(WAIT));
    broker
        .wait_for_log(&["max_connections reached"], WAIT)
        .unwrap_or_else(|| panic!("no warning: {:#?}", broker.log()));
    assert_eq!(
        broker.log_lines("client connected"),
        0,
        "{:#?}",
        broker.log()
    );
    assert_eq!(broker.log_lines("INFO"), 0, "{:#?}", broker.log());
}

#[test]
fn a_bad_log_level_in_the_config_names_file_line_and_key() {
    let files = Files::new("log-level");
    let config = files.write("shardmq.toml", "shards = 1\nlog_level = \"loud\"\n");
    let stderr = refused_start(&["--config", &config]);
    assert!(
        stderr.contains(&config) && stderr.contains("line 2") && stderr.contains("log_level"),
        "{stderr}"
    );
    let stderr = refused_start(&["--log-format", "xml"]);
    assert!(stderr.contains("xml"), "{stderr}");
}
