//! Monitoring of the real broker: the `$SYS` tree (exact counters, host figures), Prometheus
//! metrics, the admin API (clients, kick, hot topics, bearer token), the `hot-topics` and
//! `status` commands, and the Postgres status history through a Postgres outage.
//!
//! The Postgres test runs a real server: `initdb` into a temporary directory (as the `postgres`
//! user, since initdb refuses root), `pg_ctl start` on an ephemeral loopback port, stopped by PID.
//! The hot-topics test runs a real `redis-server` the same way. Without those programs the tests
//! fail under CI and are skipped elsewhere ([`common::external`]).

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::external::{available, starts};
use common::{http, wait_until, Broker, RawClient, WAIT};
use serde_json::Value;
use shardmq_codec::QoS;

/// The broker with its admin API, from the shared harness.
struct Monitored {
    broker: Broker,
    addr: SocketAddr,
}

impl Monitored {
    /// Two shards on 127.0.0.1:0, the admin API on 127.0.0.1:0, cores not pinned, plus `args`.
    fn start(args: &[&str]) -> Monitored {
        let broker = Broker::start_with(
            &[
                "--listen",
                "127.0.0.1:0",
                "--shards",
                "2",
                "--pin-cores",
                "false",
                "--admin-listen",
                "127.0.0.1:0",
            ],
            args,
        );
        let addr = broker.addr;
        Monitored { broker, addr }
    }

    fn admin(&self) -> SocketAddr {
        self.broker.admin()
    }

    fn log_lines(&self, needle: &str) -> usize {
        self.broker.log_lines(needle)
    }

    /// `GET path` on the admin API, as JSON.
    fn get_json(&self, path: &str) -> Value {
        self.broker.admin_json(path)
    }

    /// Polls `/api/v1/stats` until `ready` holds for it.
    fn wait_for_stats(&self, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        self.broker.wait_for_stats(what, ready)
    }
}

/// Subscribes to `filter` with a fresh client and collects the retained messages it is sent.
fn retained(addr: SocketAddr, filter: &str) -> HashMap<String, String> {
    let mut reader = RawClient::connect(addr, &format!("reader-{}", rand_suffix()));
    reader.subscribe(&[(filter, QoS::AtMostOnce)]);
    let mut seen = HashMap::new();
    while let Some(publish) = reader.next_publish(Duration::from_millis(700)) {
        if publish.retain {
            let payload = String::from_utf8_lossy(&publish.payload).into_owned();
            seen.entry(publish.topic.to_string()).or_insert(payload);
        }
    }
    reader.disconnect();
    seen
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn number(topics: &HashMap<String, String>, topic: &str) -> f64 {
    let text = topics
        .get(topic)
        .unwrap_or_else(|| panic!("no {topic} in {topics:?}"));
    text.parse()
        .unwrap_or_else(|_| panic!("{topic} = {text:?} is not a number"))
}

#[test]
fn sys_counters_are_exact() {
    const N: u64 = 57;
    let broker = Monitored::start(&["--sys-interval", "1"]);
    let mut subscriber = RawClient::connect(broker.addr, "counting-sub");
    subscriber.subscribe(&[("count/me", QoS::AtLeastOnce)]);
    let mut publisher = RawClient::connect(broker.addr, "counting-pub");
    for n in 0..N {
        publisher.publish(
            "count/me",
            format!("m{n}").as_bytes(),
            QoS::AtMostOnce,
            false,
        );
    }
    for n in 0..N {
        let got = subscriber
            .next_publish(WAIT)
            .unwrap_or_else(|| panic!("delivery {n}"));
        assert_eq!(got.payload, format!("m{n}").as_bytes());
    }
    // The admin API reads the same figures as the $SYS tree: the monitor stores them, then
    // publishes the tree's changes through shard 0's command queue, once a second.
    let counted = broker.wait_for_stats("the publications to be counted", |stats| {
        stats["total"]["messages_received"] == N && stats["total"]["messages_delivered"] == N
    });
    // The monitor has finished that tick (and so handed that tree to shard 0) once it shows a
    // later uptime. A client listing is answered by shard 0 only after it has handled the
    // publications queued before it, which sends their retained copies to the other shard.
    let tick = counted["uptime_seconds"].as_u64().expect("uptime_seconds");
    broker.wait_for_stats("the monitor's next tick", |stats| {
        stats["uptime_seconds"].as_u64() > Some(tick)
    });
    broker.broker.clients();

    let sys = retained(broker.addr, "$SYS/#");
    assert_eq!(
        number(&sys, "$SYS/broker/messages/received"),
        N as f64,
        "{sys:?}"
    );
    assert_eq!(number(&sys, "$SYS/broker/messages/sent"), N as f64);
    let per_shard = number(&sys, "$SYS/broker/shard/0/messages_received")
        + number(&sys, "$SYS/broker/shard/1/messages_received");
    assert_eq!(per_shard, N as f64);
    assert_eq!(number(&sys, "$SYS/broker/subscriptions/count"), 1.0);
    assert!(number(&sys, "$SYS/broker/clients/connected") >= 2.0);
    assert!(number(&sys, "$SYS/broker/clients/maximum") >= 2.0);
    assert_eq!(number(&sys, "$SYS/broker/dropped/total"), 0.0);
    assert!(number(&sys, "$SYS/broker/load/messages/received/1min") > 0.0);
    assert!(sys["$SYS/broker/version"].starts_with("shardmq version "));
    let uptime = sys["$SYS/broker/uptime"]
        .strip_suffix(" seconds")
        .expect("uptime in seconds");
    assert!(uptime.parse::<u64>().is_ok(), "{uptime}");

    for topic in [
        "$SYS/system/cpu/percent",
        "$SYS/system/load/1min",
        "$SYS/system/memory/used",
        "$SYS/system/disk/free",
        "$SYS/system/network/received",
        "$SYS/system/network/sent",
    ] {
        assert!(number(&sys, topic) >= 0.0, "{topic}");
    }
    assert!(number(&sys, "$SYS/system/memory/total") > 0.0);
    assert!(number(&sys, "$SYS/system/disk/total") > 0.0);
    let cpu = number(&sys, "$SYS/system/cpu/percent");
    assert!((0.0..=100.0).contains(&cpu), "{cpu}");

    let hot: Value = serde_json::from_str(&sys["$SYS/broker/topics/hot"]).expect("hot topics JSON");
    assert_eq!(hot[0]["topic"], "count/me", "{hot}");
    assert_eq!(hot[0]["publishes"], N);
    let api = broker.get_json("/api/v1/topics/hot?top=5");
    assert_eq!(api["topics"][0], hot[0]);
    assert_eq!(api["filters"][0]["filter"], "count/me");
    assert_eq!(api["filters"][0]["subscribers"], 1);
}

#[test]
fn sys_tree_can_be_disabled() {
    let broker = Monitored::start(&["--sys-interval", "0"]);
    let mut reader = RawClient::connect(broker.addr, "sys-reader");
    reader.subscribe(&[("$SYS/#", QoS::AtMostOnce)]);
    // Nothing must arrive, retained or live, for longer than the first tree would take (it goes
    // out on the monitor's first one-second tick).
    assert!(
        reader.next_publish(Duration::from_secs(2)).is_none(),
        "no $SYS messages with sys_interval 0"
    );
}

/// A Prometheus text-format exposition: samples by name (labels included) and each metric
/// family's HELP and TYPE.
struct Exposition {
    samples: HashMap<String, f64>,
    help: HashMap<String, String>,
    kind: HashMap<String, String>,
}

fn parse_prometheus(text: &str) -> Exposition {
    let mut exposition = Exposition {
        samples: HashMap::new(),
        help: HashMap::new(),
        kind: HashMap::new(),
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            assert!(
                exposition.help.insert(name.into(), help.into()).is_none(),
                "two HELP for {name}"
            );
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            assert!(
                exposition.kind.insert(name.into(), kind.into()).is_none(),
                "two TYPE for {name}"
            );
        } else {
            assert!(
                !line.starts_with('#') && !line.is_empty(),
                "unexpected line {line:?}"
            );
            let (series, value) = line.rsplit_once(' ').expect("name value");
            let name = series.split('{').next().unwrap();
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && name.starts_with("shardmq_"),
                "{name}"
            );
            if let Some(labels) = series.strip_prefix(name) {
                if !labels.is_empty() {
                    let inner = labels
                        .strip_prefix('{')
                        .and_then(|l| l.strip_suffix('}'))
                        .expect("{labels}");
                    for label in inner.split(',') {
                        let (key, quoted) = label.split_once('=').expect("label=value");
                        assert!(
                            !key.is_empty() && quoted.starts_with('"') && quoted.ends_with('"'),
                            "{label}"
                        );
                    }
                }
            }
            assert!(exposition.help.contains_key(name), "no HELP for {name}");
            assert!(exposition.kind.contains_key(name), "no TYPE for {name}");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("value of {line:?}"));
            assert!(
                exposition.samples.insert(series.into(), value).is_none(),
                "duplicate {series}"
            );
        }
    }
    exposition
}

#[test]
fn prometheus_metrics_parse() {
    let broker = Monitored::start(&[]);
    let _a = RawClient::connect(broker.addr, "metrics-a");
    let _b = RawClient::connect(broker.addr, "metrics-b");
    broker.wait_for_stats("two connections", |stats| {
        stats["total"]["connections"] == 2
    });
    let mut stream = TcpStream::connect(broker.admin()).unwrap();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let metrics = parse_prometheus(body);
    assert_eq!(metrics.samples["shardmq_connections"], 2.0);
    let per_shard = metrics.samples["shardmq_shard_connections{shard=\"0\"}"]
        + metrics.samples["shardmq_shard_connections{shard=\"1\"}"];
    assert_eq!(per_shard, 2.0);
    assert_eq!(metrics.kind["shardmq_messages_received"], "counter");
    assert_eq!(metrics.kind["shardmq_shard_connections"], "gauge");
    assert!(metrics.samples["shardmq_system_memory_total_bytes"] > 0.0);
    assert!(metrics.samples.contains_key("shardmq_uptime_seconds"));
}

#[test]
fn clients_are_listed_paged_and_kicked() {
    let broker = Monitored::start(&[]);
    let mut clients: Vec<RawClient> = ["api-a", "api-b", "api-c"]
        .iter()
        .map(|id| RawClient::connect(broker.addr, id))
        .collect();
    clients[1].subscribe(&[("x/#", QoS::AtMostOnce), ("y", QoS::AtMostOnce)]);
    let stats = broker.wait_for_stats("three connections", |stats| {
        stats["total"]["connections"] == 3
    });

    let page1 = broker.get_json("/api/v1/clients?page=1&per_page=2");
    let page2 = broker.get_json("/api/v1/clients?page=2&per_page=2");
    assert_eq!(page1["total"], 3);
    assert_eq!(page1["clients"].as_array().unwrap().len(), 2);
    assert_eq!(page2["clients"].as_array().unwrap().len(), 1);
    let listed: Vec<&Value> = page1["clients"]
        .as_array()
        .unwrap()
        .iter()
        .chain(page2["clients"].as_array().unwrap())
        .collect();
    let mut per_shard = [0u64; 2];
    for (client, id) in listed.iter().zip(["api-a", "api-b", "api-c"]) {
        assert_eq!(client["client_id"], id);
        assert_eq!(client["connected"], true);
        assert!(client["username"].is_null());
        assert!(client["connected_since"].as_u64().unwrap() > 1_600_000_000);
        let shard = client["shard"].as_u64().expect("shard") as usize;
        per_shard[shard] += 1;
    }
    // The shard each client is listed on is the shard that counts its connection.
    for (shard, count) in per_shard.iter().enumerate() {
        assert_eq!(stats["shards"][shard]["connections"], *count, "{stats}");
    }
    for (client, raw) in listed.iter().zip(&clients) {
        assert_eq!(
            client["address"],
            raw.stream.local_addr().unwrap().to_string()
        );
    }
    assert_eq!(listed[1]["subscriptions"], 2);

    let (status, _) = http(broker.admin(), "DELETE", "/api/v1/clients/api-b", None);
    assert_eq!(status, 204);
    assert!(
        clients[1].closed_within(WAIT),
        "kicked client still connected"
    );
    let (status, body) = http(
        broker.admin(),
        "DELETE",
        "/api/v1/clients/nobody%20here",
        None,
    );
    assert_eq!(status, 404, "{body}");
    let (status, _) = http(broker.admin(), "GET", "/api/v1/nothing", None);
    assert_eq!(status, 404);
    let (status, _) = http(broker.admin(), "GET", "/api/v1/clients?page=0", None);
    assert_eq!(status, 400);
    assert!(!clients[0].closed_within(Duration::from_millis(200)));
}

#[test]
fn token_is_required_when_set() {
    let broker = Monitored::start(&["--admin-token", "s3cret"]);
    for path in [
        "/metrics",
        "/api/v1/stats",
        "/api/v1/clients",
        "/api/v1/topics/hot",
    ] {
        assert_eq!(http(broker.admin(), "GET", path, None).0, 401, "{path}");
        assert_eq!(
            http(broker.admin(), "GET", path, Some("wrong")).0,
            401,
            "{path}"
        );
        assert_eq!(
            http(broker.admin(), "GET", path, Some("s3cret")).0,
            200,
            "{path}"
        );
    }
    assert_eq!(
        http(broker.admin(), "DELETE", "/api/v1/clients/x", None).0,
        401
    );
}

#[test]
fn non_loopback_admin_needs_a_token() {
    let stderr = common::refused_start(&[
        "--listen",
        "127.0.0.1:0",
        "--shards",
        "1",
        "--admin-listen",
        "0.0.0.0:0",
    ]);
    assert!(
        stderr.contains("not a loopback address") && stderr.contains("admin.token"),
        "{stderr}"
    );
}

#[test]
fn hot_topics_command_prints_the_ranking() {
    let broker = Monitored::start(&["--admin-token", "tk"]);
    let mut publisher = RawClient::connect(broker.addr, "hot-pub");
    for (topic, n) in [("news/a", 5), ("news/b", 9), ("news/c", 1)] {
        for _ in 0..n {
            publisher.publish(topic, b"x", QoS::AtMostOnce, false);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let output = loop {
        let output = Command::new(env!("CARGO_BIN_EXE_shardmq"))
            .args([
                "hot-topics",
                "--top",
                "2",
                "--admin",
                &format!("http://{}", broker.admin()),
            ])
            .args(["--token", "tk"])
            .output()
            .expect("run hot-topics");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8(output.stdout).unwrap();
        if stdout.contains("news/a") || Instant::now() > deadline {
            break stdout;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let lines: Vec<&str> = output.lines().collect();
    assert!(lines[1].ends_with("9  news/b"), "{output}");
    assert!(lines[2].ends_with("5  news/a"), "{output}");
    assert!(!output.contains("news/c"), "{output}");

    let refused = Command::new(env!("CARGO_BIN_EXE_shardmq"))
        .args([
            "hot-topics",
            "--admin",
            &format!("http://{}", broker.admin()),
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"));
}

/// A throwaway Postgres cluster on an ephemeral loopback port, run as the `postgres` user and
/// stopped by PID.
struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    pid: Option<i32>,
}

impl Postgres {
    /// Initialises and starts a cluster, or `None` where Postgres is not installed and the test
    /// is skipped (see [`available`]).
    fn start() -> Option<Postgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|entry| entry.path().join("bin"))
            .find(|bin| bin.join("initdb").exists() && bin.join("pg_ctl").exists());
        if !available(
            "Postgres (/usr/lib/postgresql/*/bin/initdb and pg_ctl)",
            bin.is_some(),
            "apt-get install postgresql",
        ) {
            return None;
        }
        let bin = bin?;
        let dir = std::env::temp_dir().join(format!(
            "shardmq-pg-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        run_checked(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir),
        );
        run_checked(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(bin.join("initdb"))
                .args(["-A", "trust", "-U", "postgres", "-D"])
                .arg(dir.join("data")),
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut postgres = Postgres {
            bin,
            dir,
            port,
            pid: None,
        };
        postgres.resume();
        Some(postgres)
    }

    fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again) on the same port.
    fn resume(&mut self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        run_checked(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["-o", &options, "-l"])
                .arg(self.dir.join("log"))
                .args(["-w", "start"]),
        );
        let pid_file = std::fs::read_to_string(self.dir.join("data/postmaster.pid")).unwrap();
        self.pid = Some(pid_file.lines().next().unwrap().trim().parse().unwrap());
    }

    /// Fast shutdown (SIGINT: connections are closed, not waited for) by PID.
    fn stop(&mut self) {
        let Some(pid) = self.pid.take() else { return };
        // SAFETY: signalling the postmaster this test started, by PID.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(20);
        // SAFETY: signal 0 only checks that the process exists.
        while unsafe { libc::kill(pid, 0) } == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).expect("connect to test postgres")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run_checked(command: &mut Command) {
    let output = command.output().expect("run command");
    assert!(
        output.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn count_rows(client: &mut postgres::Client, condition: &str) -> i64 {
    client
        .query_one(
            &format!("SELECT count(*) FROM shardmq_status WHERE {condition}"),
            &[],
        )
        .map(|row| row.get(0))
        .unwrap_or(0)
}

#[test]
fn postgres_history_survives_an_outage() {
    let Some(mut postgres) = Postgres::start() else {
        return;
    };
    let url = postgres.url();
    let broker = Monitored::start(&[
        "--monitor-postgres-url",
        &url,
        "--monitor-interval",
        "1",
        "--sys-interval",
        "0",
    ]);
    let _client = RawClient::connect(broker.addr, "history-client");
    let mut db = postgres.client();
    wait_until("two rows with the client", Duration::from_secs(20), || {
        count_rows(&mut db, "clients = 1") >= 2
    });
    let row = db
        .query_one(
            "SELECT clients, memory_total, disk_free, shards::text FROM shardmq_status \
             WHERE clients = 1 ORDER BY time DESC LIMIT 1",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    assert!(row.get::<_, i64>(1) > 0);
    assert!(row.get::<_, i64>(2) > 0);
    let shards: Value = serde_json::from_str(row.get(3)).unwrap();
    assert_eq!(shards.as_array().unwrap().len(), 2);
    assert_eq!(
        shards[0]["connections"].as_u64().unwrap() + shards[1]["connections"].as_u64().unwrap(),
        1
    );
    drop(db);

    // Outage: the broker keeps serving and buffering, and says so once.
    postgres.stop();
    let stopped_at = unix_now();
    assert!(
        broker
            .broker
            .wait_for_log(&["postgres unavailable"], Duration::from_secs(10))
            .is_some(),
        "the outage is reported: {:?}",
        broker.broker.log()
    );
    let mut sub = RawClient::connect(broker.addr, "during-outage-sub");
    sub.subscribe(&[("still/up", QoS::AtMostOnce)]);
    let mut publisher = RawClient::connect(broker.addr, "during-outage-pub");
    publisher.publish("still/up", b"yes", QoS::AtMostOnce, false);
    assert_eq!(
        sub.next_publish(WAIT)
            .expect("delivery during the outage")
            .payload,
        &b"yes"[..]
    );
    // Postgres stays down a while, so rows are buffered; the broker retries meanwhile but does
    // not report the same outage again.
    assert!(
        broker
            .broker
            .wait_for_nth_log(&["postgres unavailable"], 2, Duration::from_secs(5))
            .is_none(),
        "one warning per outage"
    );
    assert_eq!(
        broker.log_lines("postgres unavailable"),
        1,
        "{:?}",
        broker.broker.log()
    );

    let resumed_at = unix_now();
    postgres.resume();
    let mut db = postgres.client();
    wait_until("rows after the outage", Duration::from_secs(30), || {
        count_rows(
            &mut db,
            &format!("time > to_timestamp({resumed_at}) AND clients = 3"),
        ) >= 1
    });
    // Rows taken while Postgres was down were buffered and written once it was back.
    let buffered = count_rows(
        &mut db,
        &format!(
            "time > to_timestamp({}) AND time < to_timestamp({})",
            stopped_at + 1.0,
            resumed_at - 1.0
        ),
    );
    let outage = resumed_at - stopped_at;
    assert!(
        buffered as f64 >= outage - 4.0,
        "{buffered} rows for a {outage:.1}s outage"
    );
    assert!(count_rows(&mut db, "clients = 3") >= 1);
    // The writer logs the recovery after committing the rows the test has just read.
    assert!(
        broker
            .broker
            .wait_for_log(&["postgres reachable again"], WAIT)
            .is_some(),
        "the recovery is reported: {:?}",
        broker.broker.log()
    );
    assert_eq!(broker.log_lines("postgres reachable again"), 1);
    let gaps: i64 = db
        .query_one(
            "SELECT count(*) FROM (SELECT time - lag(time) OVER (ORDER BY time) AS gap FROM shardmq_status) g \
             WHERE gap > interval '3 seconds'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(gaps, 0, "rows were lost during the outage");

    let status = Command::new(env!("CARGO_BIN_EXE_shardmq"))
        .args(["status", "--postgres", &url, "--since", "5m"])
        .output()
        .expect("run status");
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    println!("{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("time (UTC)") && lines[0].contains("msg in/s"),
        "{table}"
    );
    assert!(lines.len() >= 5, "{table}");
    assert!(lines.iter().all(|l| l.len() == lines[0].len()), "{table}");
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A `redis-server` on an ephemeral loopback port in its own directory, killed by PID on drop.
struct Redis {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    /// Starts one, or `None` where `redis-server` is not installed and the test is skipped (see
    /// [`available`]).
    fn start() -> Option<Redis> {
        if !available(
            "redis-server",
            starts("redis-server", &["--version"]),
            "apt-get install redis-server",
        ) {
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // One directory per server: the tests of this file run in parallel.
        let dir =
            std::env::temp_dir().join(format!("shardmq-hot-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let redis = Redis { child, port, dir };
        wait_until("redis-server to answer", WAIT, || {
            redis
                .connection()
                .is_some_and(|mut c| redis::cmd("PING").query::<String>(&mut c).is_ok())
        });
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn connection(&self) -> Option<redis::Connection> {
        redis::Client::open(self.url())
            .ok()?
            .get_connection_with_timeout(Duration::from_secs(1))
            .ok()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn hot_topics_are_flushed_to_redis() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let mut db = redis.connection().expect("redis connection");
    // With Redis the ACL always applies: allow everything for this test.
    redis::cmd("RPUSH")
        .arg("shardmq:acl")
        .arg("pattern readwrite #")
        .query::<()>(&mut db)
        .unwrap();
    let url = redis.url();
    let broker = Monitored::start(&[
        "--redis-url",
        &url,
        "--allow-anonymous",
        "true",
        "--sys-interval",
        "0",
    ]);
    let mut subscriber = RawClient::connect(broker.addr, "redis-hot-sub");
    subscriber.subscribe(&[("r/#", QoS::AtMostOnce)]);
    let mut publisher = RawClient::connect(broker.addr, "redis-hot-pub");
    for (topic, n) in [("r/a", 7), ("r/b", 3)] {
        for _ in 0..n {
            publisher.publish(topic, b"x", QoS::AtMostOnce, false);
        }
    }
    let score = |db: &mut redis::Connection, key: &str, member: &str| -> Option<f64> {
        redis::cmd("ZSCORE")
            .arg(key)
            .arg(member)
            .query(db)
            .ok()
            .flatten()
    };
    wait_until("counts in Redis", Duration::from_secs(10), || {
        score(&mut db, "shardmq:hot:publishes", "r/a") == Some(7.0)
            && score(&mut db, "shardmq:hot:publishes", "r/b") == Some(3.0)
    });
    let counter: u64 = redis::cmd("GET")
        .arg("shardmq:topic:publishes:r/a")
        .query(&mut db)
        .unwrap();
    assert_eq!(counter, 7);
    assert_eq!(score(&mut db, "shardmq:hot:subscribers", "r/#"), Some(1.0));

    let output = Command::new(env!("CARGO_BIN_EXE_shardmq"))
        .args(["hot-topics", "--redis", &url, "--top", "5"])
        .output()
        .expect("run hot-topics");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[1].ends_with("7  r/a") && lines[2].ends_with("3  r/b"),
        "{stdout}"
    );
    assert!(stdout.contains("1  r/#"), "{stdout}");

    // A clean disconnect takes the subscriber off, and the filter leaves the ranking.
    subscriber.disconnect();
    wait_until(
        "the filter to leave the ranking",
        Duration::from_secs(10),
        || score(&mut db, "shardmq:hot:subscribers", "r/#").is_none(),
    );
}

#[test]
fn hot_topic_keys_in_redis_stay_bounded() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let mut db = redis.connection().expect("redis connection");
    redis::cmd("RPUSH")
        .arg("shardmq:acl")
        .arg("pattern readwrite #")
        .query::<()>(&mut db)
        .unwrap();
    let broker = Monitored::start(&[
        "--redis-url",
        &redis.url(),
        "--allow-anonymous",
        "true",
        "--sys-interval",
        "0",
        "--hot-topics-max",
        "5",
    ]);
    // Every transaction trims, so the sorted sets never hold more than five, whenever looked at.
    let ranked = |db: &mut redis::Connection, key: &str| -> Vec<(String, f64)> {
        let members: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query(db)
            .unwrap();
        assert!(members.len() <= 5, "{key}: {members:?}");
        members
    };
    let names = |members: Vec<(String, f64)>| -> Vec<String> {
        let mut names: Vec<String> = members.into_iter().map(|(name, _)| name).collect();
        names.sort();
        names
    };
    let exists = |db: &mut redis::Connection, key: &str| -> bool {
        redis::cmd("EXISTS").arg(key).query::<u32>(db).unwrap() == 1
    };
    let ttl = |db: &mut redis::Connection, key: &str| -> i64 {
        redis::cmd("TTL").arg(key).query(db).unwrap()
    };
    let old: Vec<String> = (0..5).map(|i| format!("h/a/{i}")).collect();
    let new: Vec<String> = (0..5).map(|i| format!("h/b/{i}")).collect();

    // Five topics published once each fill the ranking.
    let mut publisher = RawClient::connect(broker.addr, "bounded-pub");
    for topic in &old {
        publisher.publish(topic, b"x", QoS::AtMostOnce, false);
    }
    wait_until(
        "the first five topics ranked",
        Duration::from_secs(10),
        || names(ranked(&mut db, "shardmq:hot:publishes")) == old,
    );
    // Five more, three times each, outrank them (and, on a tie, sort after them): the first
    // five are trimmed, their counters deleted and their publications counted as untracked.
    for topic in &new {
        for _ in 0..3 {
            publisher.publish(topic, b"x", QoS::AtMostOnce, false);
        }
    }
    wait_until(
        "the new topics to replace the old",
        Duration::from_secs(10),
        || {
            ranked(&mut db, "shardmq:hot:publishes")
                == new.iter().map(|t| (t.clone(), 3.0)).collect::<Vec<_>>()
        },
    );
    wait_until(
        "the trimmed topics' counters deleted and counted",
        Duration::from_secs(10),
        || {
            old.iter()
                .all(|topic| !exists(&mut db, &format!("shardmq:topic:publishes:{topic}")))
                && redis::cmd("GET")
                    .arg("shardmq:hot:untracked")
                    .query::<Option<u64>>(&mut db)
                    .unwrap()
                    == Some(5)
        },
    );
    for topic in &new {
        let counter = format!("shardmq:topic:publishes:{topic}");
        let count: u64 = redis::cmd("GET").arg(&counter).query(&mut db).unwrap();
        assert_eq!(count, 3, "{counter}");
        let left = ttl(&mut db, &counter);
        assert!(
            (1..=86_400).contains(&left),
            "{counter} expires: TTL {left}"
        );
    }

    // Filters: five with one subscriber each, then a sixth with two, which pushes out the
    // lowest (on a tie, the first in byte order).
    let filters: Vec<String> = (1..=5).map(|i| format!("f/a/{i}")).collect();
    let mut one = RawClient::connect(broker.addr, "bounded-sub-1");
    let wanted: Vec<(&str, QoS)> = filters
        .iter()
        .map(|f| (f.as_str(), QoS::AtMostOnce))
        .collect();
    one.subscribe(&wanted);
    wait_until("five filters ranked", Duration::from_secs(10), || {
        names(ranked(&mut db, "shardmq:hot:subscribers")) == filters
    });
    let mut two = RawClient::connect(broker.addr, "bounded-sub-2");
    let mut three = RawClient::connect(broker.addr, "bounded-sub-3");
    two.subscribe(&[("f/b", QoS::AtMostOnce)]);
    three.subscribe(&[("f/b", QoS::AtMostOnce)]);
    wait_until("the sixth filter ranked", Duration::from_secs(10), || {
        ranked(&mut db, "shardmq:hot:subscribers").last() == Some(&("f/b".to_owned(), 2.0))
    });
    let kept = names(ranked(&mut db, "shardmq:hot:subscribers"));
    assert_eq!(kept, ["f/a/2", "f/a/3", "f/a/4", "f/a/5", "f/b"]);
    wait_until(
        "the trimmed filter's counter deleted",
        Duration::from_secs(10),
        || !exists(&mut db, "shardmq:topic:subscribers:f/a/1"),
    );
    let left = ttl(&mut db, "shardmq:topic:subscribers:f/b");
    assert!((1..=86_400).contains(&left), "filter counter TTL {left}");
}
