//! Every `shardmq-loadtest` scenario at small scale against the real shardmq binary: nothing
//! lost or duplicated, and the report files (JSON, HdrHistogram `.hgrm`, HTML) parse back; the
//! run over time (the JSON's `series`, the HTML's charts) with the broker's `/proc` figures; and
//! a run the broker turns clients away from, which must say so first and exit 3.

mod common;

use std::net::SocketAddr;

use common::Broker;
use shardmq_loadtest::report::{parse_percentiles, EXIT_FAILED};
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
        shared_group: None,
        strategy: None,
    };
    let mut fanin = scenario(broker.addr, "fanin", Workload::Fanin(fanin));
    fanin.publish.qos = 1;
    let report = check(&fanin);
    assert_eq!(report.messages.delivered, 100 * 20);
}

#[test]
fn fanin_to_a_shared_group_delivers_each_message_once() {
    let broker = Broker::start(&["--shared-subscription-strategy", "local"]);
    let fanin = Fanin {
        publishers: 10,
        subscribers: 4,
        topic: "in/%i".into(),
        filter: "in/+".into(),
        shared_group: Some("workers".into()),
        strategy: Some("local".into()),
    };
    let mut fanin = scenario(broker.addr, "fanin-shared", Workload::Fanin(fanin));
    fanin.publish.qos = 1;
    let report = check(&fanin);
    // Once per group, not once per member.
    assert_eq!(report.messages.delivered, 10 * 20);
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

#[test]
fn report_has_the_run_over_time_with_broker_figures() {
    let broker = Broker::start(&[]);
    let mut fanout = scenario(
        broker.addr,
        "over-time",
        Workload::Fanout(Preset::OneToAll.fanout(31)),
    );
    fanout.broker.pid = Some(broker.pid());
    fanout.publish.qos = 1;
    // 30 messages at 20/s: publishing lasts 1.5 s, so the series has points inside it.
    fanout.publish.messages = 30;
    fanout.publish.rate = 20.0;
    fanout.limits.hold = Dur(std::time::Duration::from_millis(600));
    let report = check(&fanout);

    let dir = tempfile::tempdir().unwrap();
    report.write_files(dir.path()).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("over-time.json")).unwrap())
            .unwrap();
    let series = json["series"].as_array().expect("series[]");
    assert!(series.len() >= 5, "{series:?}");
    let number = |point: &serde_json::Value, field: &str| point[field].as_f64();
    let count = |point: &serde_json::Value, field: &str| point[field].as_u64().unwrap();

    // Time runs forward from 0 to the end of the run, through the phases in order.
    let times: Vec<f64> = series.iter().map(|p| number(p, "t_s").unwrap()).collect();
    assert_eq!(times[0], 0.0);
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    let wall_s = json["loadtest"]["wall_s"].as_f64().unwrap();
    assert!(
        (times[times.len() - 1] - wall_s).abs() < 0.01,
        "{times:?} {wall_s}"
    );
    let order = [
        "connecting",
        "subscribing",
        "publishing",
        "draining",
        "holding",
        "finishing",
    ];
    let phases: Vec<usize> = series
        .iter()
        .map(|p| {
            let phase = p["phase"].as_str().unwrap();
            order.iter().position(|&known| known == phase).expect(phase)
        })
        .collect();
    assert!(phases.windows(2).all(|w| w[0] <= w[1]), "{phases:?}");
    for phase in [
        "connecting",
        "publishing",
        "draining",
        "holding",
        "finishing",
    ] {
        let at = order.iter().position(|&known| known == phase).unwrap();
        assert!(phases.contains(&at), "no {phase} point: {phases:?}");
    }

    // Connections rise to every client and fall to none; deliveries only grow, to every one.
    let connections: Vec<u64> = series.iter().map(|p| count(p, "connections")).collect();
    assert_eq!(connections.iter().max(), Some(&31));
    assert_eq!(connections.last(), Some(&0));
    let delivered: Vec<u64> = series.iter().map(|p| count(p, "delivered")).collect();
    assert!(delivered.windows(2).all(|w| w[0] <= w[1]), "{delivered:?}");
    assert_eq!(delivered.last(), Some(&(30 * 30)));
    let rates: Vec<f64> = series
        .iter()
        .filter_map(|p| number(p, "deliveries_per_s"))
        .collect();
    assert!(rates.iter().all(|&rate| rate >= 0.0), "{rates:?}");
    assert!(rates.iter().any(|&rate| rate > 0.0), "{rates:?}");
    assert!(series[0]["deliveries_per_s"].is_null());

    // The broker's RSS on every point, its CPU wherever a rate is measured.
    let cores = json["loadtest"]["cores"].as_f64().unwrap();
    for point in series {
        let rss = count(point, "broker_rss_bytes");
        assert!((1 << 20..4 << 30).contains(&rss), "RSS {rss}");
        if let Some(cpu) = number(point, "broker_cpu_percent") {
            assert!((0.0..=100.0 * cores + 5.0).contains(&cpu), "CPU {cpu}%");
        }
    }
    assert!(series
        .iter()
        .any(|point| number(point, "broker_cpu_percent").is_some()));
    let usage = report.broker.as_ref().unwrap();
    let rss_max = usage.rss_max_bytes.unwrap();
    assert!(rss_max >= usage.rss_before_bytes.unwrap());
    assert!(series
        .iter()
        .all(|point| count(point, "broker_rss_bytes") <= rss_max));

    let html = std::fs::read_to_string(dir.path().join("over-time.html")).unwrap();
    for id in [
        "chart-percentiles",
        "chart-connections",
        "chart-deliveries",
        "chart-broker-rss",
        "chart-broker-cpu",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "{id} missing");
    }
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"));
}

#[test]
fn clients_the_broker_turns_away_fail_the_run() {
    let broker = Broker::start(&["--max-connections", "3"]);
    let mut conn = scenario(
        broker.addr,
        "turned-away",
        Workload::Conn(Conn { connections: 6 }),
    );
    conn.client.connect_timeout = Dur::secs(3);
    let report = shardmq_loadtest::run(&conn, &RunOptions::default()).expect("run");
    let summary = report.summary();
    let c = &report.connections;
    assert_eq!((c.connected, c.failed), (3, 3), "{summary}");
    assert_eq!(report.exit_code(), EXIT_FAILED);
    let first = summary.lines().next().unwrap();
    assert!(
        first.starts_with("FAILED: 3 of 6 clients could not connect ("),
        "{summary}"
    );
}
