//! Every scenario at small scale against a real broker: no loss, no duplicates, and report files
//! that parse back.
//!
//! The broker is Debian's mosquitto (`apt-get install mosquitto`) started per test on a free
//! loopback port (see `mosquitto/mod.rs`). [`check_scenario`] only needs the broker's address, so
//! the same checks can be pointed at any broker.

mod mosquitto;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use mosquitto::{closed_port, Mosquitto};
use shardmq_loadtest::report::parse_percentiles;
use shardmq_loadtest::scenario::{Conn, Dur, Fanin, Fanout, Pairs, Preset, Workload};
use shardmq_loadtest::{Report, RunOptions, Scenario};

/// A scenario with small, bounded limits against the broker at `addr`.
fn scenario(addr: SocketAddr, name: &str, workload: Workload) -> Scenario {
    let mut scenario = Scenario::new(name, workload);
    scenario.broker.host = addr.ip().to_string();
    scenario.broker.port = addr.port();
    scenario.publish.messages = 20;
    scenario.limits.timeout = Dur::secs(60);
    scenario.limits.drain = Dur::secs(20);
    scenario
}

/// Runs `scenario`, checks that every client connected and every message arrived exactly once,
/// writes the report files and parses them back.
fn check_scenario(scenario: &Scenario) -> Report {
    let options = RunOptions {
        worker_exe: Some(env!("CARGO_BIN_EXE_shardmq-loadtest").into()),
        ..RunOptions::default()
    };
    let report = shardmq_loadtest::run(scenario, &options).expect("run");
    let summary = report.summary();
    println!("{summary}");
    assert_eq!(report.problems(), Vec::<String>::new(), "{summary}");
    assert_eq!(report.connections.connected, report.setup.connections);
    assert_eq!(report.connections.subscribed, report.setup.subscribers);
    let messages = &report.messages;
    assert_eq!(messages.expected, Some(messages.delivered));
    assert_eq!(messages.latency.count, messages.delivered);

    let dir = tempfile::tempdir().unwrap();
    let written = report.write_files(dir.path()).unwrap();
    assert_eq!(
        Report::load(&dir.path().join(format!("{}.json", report.name))).unwrap(),
        report
    );
    let main = report.latencies()[0].2;
    let hgrm = std::fs::read_to_string(dir.path().join(format!("{}.hgrm", report.name))).unwrap();
    let percentiles = parse_percentiles(&hgrm).unwrap();
    assert_eq!(percentiles.total_count, main.count);
    assert!((percentiles.max - main.max_ms.expect("samples")).abs() < 0.001);
    for path in written
        .iter()
        .filter(|path| path.extension().is_some_and(|e| e == "hgrm"))
    {
        parse_percentiles(&std::fs::read_to_string(path).unwrap()).unwrap();
    }
    assert!(dir.path().join(format!("{}.html", report.name)).exists());
    report
}

#[test]
fn conn_50_reports_broker_memory() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let mut conn = scenario(
        broker.addr,
        "conn",
        Workload::Conn(Conn { connections: 50 }),
    );
    conn.broker.pid = Some(broker.pid());
    conn.client.connect_rate = 500.0;
    conn.limits.hold = Dur(Duration::from_millis(200));
    let report = check_scenario(&conn);
    assert_eq!(report.connections.connect_latency.count, 50);
    let usage = report.broker.expect("broker usage");
    assert_eq!(usage.pid, broker.pid());
    assert!(usage.rss_before_bytes.is_some() && usage.rss_end_bytes.is_some());
    assert!(usage.rss_per_connection_bytes.is_some());
    assert!(
        report.connections.ramp_s.expect("every client connected") >= 0.09,
        "50 connections at 500/s take 0.1 s"
    );
}

#[test]
fn fanout_1_to_50_qos0() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let fanout = Fanout {
        connections: 60,
        subscribers: Some(50),
        publishers: 1,
        topic: "t/fanout".into(),
    };
    let report = check_scenario(&scenario(
        broker.addr,
        "fanout-q0",
        Workload::Fanout(fanout),
    ));
    assert_eq!(report.messages.delivered, 50 * 20);
    assert!(report.messages.time_to_last_delivery_ms.is_some());
}

#[test]
fn fanout_1_to_50_qos1() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let mut fanout = scenario(
        broker.addr,
        "fanout-q1",
        Workload::Fanout(Preset::OneToAll.fanout(51)),
    );
    fanout.publish.qos = 1;
    let report = check_scenario(&fanout);
    assert_eq!(report.messages.delivered, 50 * 20);
    assert_eq!(report.messages.acked, 20);
    assert_eq!(report.messages.ack_latency.count, 20);
}

#[test]
fn fanout_qos2_over_mqtt5() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let fanout = Fanout {
        connections: 21,
        subscribers: None,
        publishers: 1,
        topic: "t/q2".into(),
    };
    let mut run = scenario(broker.addr, "fanout-q2-v5", Workload::Fanout(fanout));
    run.publish.qos = 2;
    run.broker.protocol = 5;
    let report = check_scenario(&run);
    assert_eq!(report.messages.delivered, 20 * 20);
    assert_eq!(report.messages.acked, 20);
}

#[test]
fn fanin_to_wildcard_subscribers() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let fanin = Fanin {
        publishers: 20,
        subscribers: 2,
        topic: "t/in/%i".into(),
        filter: "t/in/+".into(),
        shared_group: None,
        strategy: None,
    };
    let mut run = scenario(broker.addr, "fanin", Workload::Fanin(fanin));
    run.publish.qos = 1;
    let report = check_scenario(&run);
    assert_eq!(report.messages.delivered, 2 * 20 * 20);
}

#[test]
fn fanin_to_a_shared_group() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let fanin = Fanin {
        publishers: 20,
        subscribers: 3,
        topic: "t/in/%i".into(),
        filter: "t/in/+".into(),
        shared_group: Some("g".into()),
        strategy: None,
    };
    let mut run = scenario(broker.addr, "fanin-shared", Workload::Fanin(fanin));
    run.publish.qos = 1;
    let report = check_scenario(&run);
    // Each message once, to one member of the group.
    assert_eq!(report.messages.delivered, 20 * 20);
}

#[test]
fn pairs_on_their_own_topics() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let report = check_scenario(&scenario(
        broker.addr,
        "pairs",
        Workload::Pairs(Pairs {
            pairs: 20,
            topic: "t/pair/%i".into(),
        }),
    ));
    assert_eq!(report.messages.delivered, 20 * 20);
}

#[test]
fn rate_limited_pairs_for_a_duration() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let mut run = scenario(
        broker.addr,
        "pairs-rate",
        Workload::Pairs(Pairs {
            pairs: 5,
            topic: "t/rate/%i".into(),
        }),
    );
    run.publish.messages = 0;
    run.publish.rate = 50.0;
    run.limits.duration = Dur(Duration::from_millis(500));
    let report = check_scenario(&run);
    let published = report.messages.published;
    assert!(
        (5 * 20..=5 * 30).contains(&published),
        "{published} messages in 0.5 s at 5 x 50/s"
    );
}

#[test]
fn mixed_scenario_file() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let file = format!(
        r#"
        name = "mixed"
        [broker]
        port = {port}
        [publish]
        messages = 10
        qos = 1
        [limits]
        timeout = "60s"
        [[group]]
        name = "rooms"
        count = 4
        publish = "chat/%i"
        [[group]]
        name = "members"
        count = 12
        subscribe = ["chat/+"]
        qos = 0
        [[group]]
        name = "lurkers"
        count = 10
        "#,
        port = broker.addr.port()
    );
    let scenario = Scenario::from_toml(&file, "unused").unwrap();
    let report = check_scenario(&scenario);
    assert_eq!(report.messages.delivered, 12 * 4 * 10);
}

#[test]
fn worker_processes_report_as_one_run() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let fanout = Fanout {
        connections: 41,
        subscribers: None,
        publishers: 1,
        topic: "t/w".into(),
    };
    let mut run = scenario(broker.addr, "workers", Workload::Fanout(fanout));
    run.runner.workers = 2;
    run.publish.qos = 1;
    let report = check_scenario(&run);
    assert_eq!((report.setup.workers, report.loadtest.processes), (2, 3));
    assert_eq!(report.messages.delivered, 40 * 20);
}

#[test]
fn username_and_password_templates() {
    let users = 5;
    let Some(broker) = Mosquitto::start_with(|dir| {
        let passwords = dir.join("passwords");
        for n in 0..users {
            let mut passwd = Command::new("mosquitto_passwd");
            if n == 0 {
                passwd.arg("-c");
            }
            let status = passwd
                .arg("-b")
                .arg(&passwords)
                .arg(format!("user{n}"))
                .arg(format!("secret-{n}"))
                .status()
                .expect("mosquitto_passwd (package mosquitto)");
            assert!(status.success());
        }
        format!(
            "allow_anonymous false\npassword_file {}\n",
            passwords.display()
        )
    }) else {
        return;
    };
    let mut run = scenario(
        broker.addr,
        "auth",
        Workload::Conn(Conn { connections: users }),
    );
    run.client.username = Some("user%i".into());
    run.client.password = Some("secret-%i".into());
    check_scenario(&run);

    run.client.password = Some("wrong-%i".into());
    let report = shardmq_loadtest::run(&run, &RunOptions::default()).unwrap();
    assert_eq!(report.connections.connected, 0);
    assert_eq!(report.connections.failed, u64::from(users));
    let reason = report.connections.failures.keys().next().unwrap();
    assert!(reason.starts_with("CONNACK"), "{reason}");
}

#[test]
fn no_broker_is_an_error_naming_the_address() {
    let addr = closed_port();
    let mut run = scenario(addr, "refused", Workload::Conn(Conn { connections: 5 }));
    run.limits.timeout = Dur::secs(20);
    let err = shardmq_loadtest::run(&run, &RunOptions::default()).unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains(&addr.to_string()) && message.contains("refused"),
        "{message}"
    );
}

#[test]
fn clients_turned_away_are_counted_by_reason() {
    // mosquitto closes connections beyond max_connections as soon as it accepts them.
    let Some(broker) =
        Mosquitto::start_with(|_| "allow_anonymous true\nmax_connections 2\n".into())
    else {
        return;
    };
    let mut run = scenario(
        broker.addr,
        "turned-away",
        Workload::Conn(Conn { connections: 8 }),
    );
    run.client.connect_timeout = Dur::secs(5);
    let report = shardmq_loadtest::run(&run, &RunOptions::default()).unwrap();
    let c = &report.connections;
    assert!(c.failed > 0 && c.connected > 0, "{}", report.summary());
    assert_eq!(c.failed + c.connected, 8);
    assert_eq!(c.failures.values().sum::<u64>(), c.failed);
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    assert!(
        report.failures[0].starts_with(&format!("{} of 8 clients could not connect (", c.failed)),
        "{:?}",
        report.failures
    );
}
