//! The `shardmq-loadtest` binary as a user runs it: exit statuses, the verdict lines that open the
//! summary, and the progress line on stderr. Brokers are mosquitto processes (see
//! `mosquitto/mod.rs`); every run is bounded by its own limits and by a deadline here, after
//! which the binary is killed by its pid.

mod mosquitto;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use mosquitto::{closed_port, Mosquitto};
use shardmq_loadtest::report::{EXIT_ERROR, EXIT_FAILED, EXIT_INCOMPLETE, EXIT_OK};
use shardmq_loadtest::Report;

/// How long any run here may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(60);

/// Runs the binary with `args` plus `--out DIR`, waiting at most `limit`.
fn loadtest(args: &[&str], out: &Path, limit: Duration) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_shardmq-loadtest"))
        .args(args)
        .arg("--out")
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting shardmq-loadtest");
    let pid = child.id();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait_with_output());
    });
    match done_rx.recv_timeout(limit) {
        Ok(output) => output.expect("waiting for shardmq-loadtest"),
        Err(_) => {
            // SAFETY: kill(2) on the pid of the child this test started and has not reaped.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("shardmq-loadtest {args:?} still running after {limit:?}");
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn port(broker: &Mosquitto) -> String {
    broker.addr.port().to_string()
}

#[test]
fn no_broker_exits_at_once_with_the_address() {
    let addr = closed_port();
    let out = tempfile::tempdir().unwrap();
    let port = addr.port().to_string();
    // 1000 clients at 10/s would take 100 s to fail one by one.
    let output = loadtest(
        &["conn", "-n", "1000", "--connect-rate", "10", "-p", &port],
        out.path(),
        Duration::from_secs(20),
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(EXIT_ERROR.into()), "{stderr}");
    assert!(
        stderr.contains(&format!("no broker reachable at {addr}")) && stderr.contains("refused"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

#[test]
fn clients_that_could_not_connect_exit_3_and_say_so_first() {
    let Some(broker) =
        Mosquitto::start_with(|_| "allow_anonymous true\nmax_connections 2\n".into())
    else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let output = loadtest(
        &[
            "conn",
            "-n",
            "8",
            "--connect-timeout",
            "5s",
            "--name",
            "turned-away",
            "-p",
            &port(&broker),
        ],
        out.path(),
        DEADLINE,
    );
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(EXIT_FAILED.into()), "{stdout}");
    let report = Report::load(&out.path().join("turned-away.json")).unwrap();
    let failed = report.connections.failed;
    assert!(failed > 0, "{stdout}");
    let first = stdout.lines().next().unwrap();
    assert!(
        first.starts_with(&format!(
            "FAILED: {failed} of 8 clients could not connect ("
        )),
        "{stdout}"
    );
    assert_eq!(first, format!("FAILED: {}", report.failures[0]));
}

#[test]
fn nothing_delivered_exits_3() {
    // Anonymous clients may subscribe to anything and publish nothing: mosquitto drops every
    // publication silently.
    let Some(broker) = Mosquitto::start_with(|dir| {
        let acl = dir.join("acl");
        std::fs::write(&acl, "topic read #\n").unwrap();
        format!("allow_anonymous true\nacl_file {}\n", acl.display())
    }) else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let output = loadtest(
        &[
            "fanout",
            "-n",
            "3",
            "-m",
            "5",
            "--drain",
            "300ms",
            "-p",
            &port(&broker),
        ],
        out.path(),
        DEADLINE,
    );
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(EXIT_FAILED.into()), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "FAILED: no message was delivered (10 expected)");
    assert_eq!(
        lines[1],
        "INCOMPLETE: the drain time ran out with 10 of 10 deliveries missing"
    );
}

#[test]
fn a_run_cut_short_exits_2() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let output = loadtest(
        &[
            "pairs",
            "-n",
            "2",
            "-m",
            "0",
            "--rate",
            "10",
            "--duration",
            "30s",
            "--timeout",
            "1s",
            "-p",
            &port(&broker),
        ],
        out.path(),
        DEADLINE,
    );
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(EXIT_INCOMPLETE.into()),
        "{stdout}"
    );
    assert!(
        stdout.starts_with("INCOMPLETE: the run reached its time limit"),
        "{stdout}"
    );
}

/// The progress lines of `stderr`: (phase, whole line).
fn progress_lines(stderr: &str) -> Vec<(&str, &str)> {
    stderr
        .lines()
        .filter(|line| line.starts_with('['))
        .map(|line| {
            let phase = line
                .split("] ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or_else(|| panic!("no phase in {line:?}"));
            (phase, line)
        })
        .collect()
}

#[test]
fn progress_lines_name_the_phase_and_only_its_columns() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    // The hold alone outlasts the first progress tick.
    let conn = loadtest(
        &[
            "conn",
            "-n",
            "5",
            "--hold",
            "1500ms",
            "--progress",
            "-p",
            &port(&broker),
        ],
        out.path(),
        DEADLINE,
    );
    let stderr = text(&conn.stderr);
    assert_eq!(conn.status.code(), Some(EXIT_OK.into()), "{stderr}");
    let lines = progress_lines(&stderr);
    assert!(!lines.is_empty(), "no progress line in {stderr:?}");
    for (phase, line) in &lines {
        assert!(
            [
                "connecting",
                "publishing",
                "draining",
                "holding",
                "finishing"
            ]
            .contains(phase),
            "{line}"
        );
        for column in ["subscribed", "published", "delivered", "unacked"] {
            assert!(!line.contains(column), "{column} in a conn run: {line}");
        }
    }

    // 30 messages at 20/s: publishing outlasts the first progress tick.
    let fanout = loadtest(
        &[
            "fanout",
            "-n",
            "6",
            "-m",
            "30",
            "--rate",
            "20",
            "-q",
            "1",
            "--progress",
            "-p",
            &port(&broker),
        ],
        out.path(),
        DEADLINE,
    );
    let stderr = text(&fanout.stderr);
    assert_eq!(fanout.status.code(), Some(EXIT_OK.into()), "{stderr}");
    let lines = progress_lines(&stderr);
    assert!(!lines.is_empty(), "no progress line in {stderr:?}");
    for (phase, line) in &lines {
        let has = |column: &str| line.contains(column);
        match *phase {
            "connecting" | "subscribing" => {
                assert!(
                    has("subscribed") && !has("published") && !has("delivered"),
                    "{line}"
                );
            }
            "publishing" => {
                assert!(
                    has("published") && has("unacked") && has("delivered"),
                    "{line}"
                );
                assert!(!has("subscribed"), "{line}");
            }
            "draining" => {
                assert!(has("delivered") && !has("published"), "{line}");
            }
            "holding" | "finishing" => {
                assert!(!has("published") && !has("delivered"), "{line}");
            }
            other => panic!("unknown phase {other}: {line}"),
        }
    }
    let stdout = text(&fanout.stdout);
    assert!(stdout.starts_with("shardmq-loadtest fanout"), "{stdout}");
}

#[test]
fn broker_pid_draws_the_broker_over_time() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let pid = broker.pid().to_string();
    let output = loadtest(
        &[
            "conn",
            "-n",
            "20",
            "--hold",
            "700ms",
            "--broker-pid",
            &pid,
            "--name",
            "held",
            "-p",
            &port(&broker),
        ],
        out.path(),
        DEADLINE,
    );
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(EXIT_OK.into()), "{stdout}");
    let report = Report::load(&out.path().join("held.json")).unwrap();
    assert_eq!(report.broker.as_ref().map(|b| b.pid), Some(broker.pid()));
    let series = &report.series;
    assert!(series.len() >= 4, "{series:?}");
    assert!(series.iter().all(|point| point.broker_rss_bytes.is_some()));
    // The hold alone is longer than the shortest span a rate is measured over.
    assert!(series
        .iter()
        .any(|point| point.broker_cpu_percent.is_some()));
    assert_eq!(series.iter().map(|p| p.connections).max(), Some(20));
    assert!(series.iter().all(|p| p.published == 0 && p.delivered == 0));
    let html = std::fs::read_to_string(out.path().join("held.html")).unwrap();
    for id in ["chart-connections", "chart-broker-rss", "chart-broker-cpu"] {
        assert!(html.contains(&format!("id=\"{id}\"")), "{id} missing");
    }
    assert!(
        !html.contains("id=\"chart-deliveries\""),
        "a conn run draws no message rates"
    );
}
