//! Every `shardmq-loadtest` scenario at small scale against the real shardmq binary: nothing
//! lost or duplicated, and the report files (JSON, HdrHistogram `.hgrm`, HTML) parse back.

mod common;

use std::net::SocketAddr;

use common::Broker;
use shardmq_loadtest::report::parse_percentiles;
use shardmq_loadtest::scenario::{Conn, Dur, Fanin, Fanout, Pairs, Preset, Workload};
use shardmq_loadtest::{Report, RunOptions, Scenario};

fn scenario(addr: SocketAddr, name: &str, workload: Workload) -> Scenario {
    let mut scenario = Scenario::new(name, workload);
    scenario.broker.host = addr.ip().to_string();
    scenario.broker.port = addr.port();
    scenario.publish.messages = 20;
    scenario.limits.timeout = Dur::secs(60);
    scenario.limits.drain = Dur::secs(20);
    scenario
}

/// Runs the scenario, checks every client connected and every message arrived once, and that
/// the report files parse.
fn check(scenario: &Scenario) -> Report {
    let report = shardmq_loadtest::run(scenario, &RunOptions::default()).expect("run");
    let summary = report.summary();
    println!("{summary}");
    assert_eq!(report.problems(), Vec::<String>::new(), "{summary}");
    assert_eq!(report.connections.connected, report.setup.connections);
    assert_eq!(report.connections.subscribed, report.setup.subscribers);
    assert_eq!(report.messages.expected, Some(report.messages.delivered));
    assert_eq!(report.messages.duplicates, 0);

    let dir = std::env::temp_dir().join(format!(
        "shardmq-loadtest-{}-{}",
        report.name,
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    report.write_files(&dir).unwrap();
    assert_eq!(
        Report::load(&dir.join(format!("{}.json", report.name))).unwrap(),
        report
    );
    let hgrm = std::fs::read_to_string(dir.join(format!("{}.hgrm", report.name))).unwrap();
    let percentiles = parse_percentiles(&hgrm).unwrap();
    assert_eq!(percentiles.total_count, report.latencies()[0].2.count);
    assert!(dir.join(format!("{}.html", report.name)).exists());
    let _ = std::fs::remove_dir_all(&dir);
    report
}

#[test]
fn conn_reports_broker_memory() {
    let broker = Broker::start(&[]);
    let mut conn = scenario(
        broker.addr,
        "conn",
        Workload::Conn(Conn { connections: 200 }),
    );
    conn.broker.pid = Some(broker.pid());
    conn.limits.hold = Dur(std::time::Duration::from_millis(300));
    let report = check(&conn);
    assert_eq!(report.connections.connect_latency.count, 200);
    let usage = report.broker.expect("broker usage from /proc");
    assert!(usage.rss_per_connection_bytes.is_some());
}

#[test]
fn fanout_one_to_all_at_every_qos() {
    let broker = Broker::start(&[]);
    for qos in [0u8, 1, 2] {
        let mut fanout = scenario(
            broker.addr,
            &format!("fanout-q{qos}"),
            Workload::Fanout(Preset::OneToAll.fanout(101)),
        );
        fanout.publish.qos = qos;
        let report = check(&fanout);
        assert_eq!(report.messages.delivered, 100 * 20);
    }
}

#[test]
fn fanout_over_mqtt5_with_idle_connections() {
    let broker = Broker::start(&[]);
    let mut fanout = scenario(
        broker.addr,
        "fanout-v5",
        Workload::Fanout(Fanout {
            connections: 150,
            subscribers: Some(100),
            publishers: 2,
            topic: "t/v5".into(),
        }),
    );
    fanout.broker.protocol = 5;
    fanout.publish.qos = 1;
    let report = check(&fanout);
    assert_eq!(report.messages.delivered, 2 * 100 * 20);
}

#[test]
fn fanin_to_a_wildcard_subscriber() {
    let broker = Broker::start(&[]);
    let fanin = Fanin {
        publishers: 100,
        subscribers: 1,
        topic: "in/%i".into(),
        filter: "in/+".into(),
    };
    let mut fanin = scenario(broker.addr, "fanin", Workload::Fanin(fanin));
    fanin.publish.qos = 1;
    let report = check(&fanin);
    assert_eq!(report.messages.delivered, 100 * 20);
}

#[test]
fn pairs_at_qos_0_and_1() {
    let broker = Broker::start(&[]);
    for qos in [0u8, 1] {
        let pairs = Pairs {
            pairs: 50,
            topic: "pair/%i".into(),
        };
        let mut pairs = scenario(
            broker.addr,
            &format!("pairs-q{qos}"),
            Workload::Pairs(pairs),
        );
        pairs.publish.qos = qos;
        pairs.publish.messages = 200;
        let report = check(&pairs);
        assert_eq!(report.messages.delivered, 50 * 200);
    }
}
