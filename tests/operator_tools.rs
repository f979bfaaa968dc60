//! The operator's tools around the broker, through the real binary and scripts:
//! `import-mosquitto-conf` on Debian's default mosquitto.conf and on a fuller one (the TOML it
//! writes passes `check-config`, and a broker started with it lets Mosquitto's users in under
//! Mosquitto's ACL), the hint for a mosquitto.conf given to `--config`, `check-config` reading
//! every file the configuration names without listening, and `tuning/check.sh --role`.
//!
//! The fixtures are in `tests/fixtures/mosquitto`: `debian.conf` is Debian's default
//! `/etc/mosquitto/mosquitto.conf` as the package installs it; `full.conf` names the `passwd`
//! (written by `mosquitto_passwd`) and `acl` beside it and includes `conf.d`, by paths relative
//! to the repository root, where every command here runs.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use common::files::Files;
use common::{login, refused_start, Broker, QUIET, WAIT};
use shardmq_codec::{QoS, ReasonCode};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const DEBIAN: &str = "tests/fixtures/mosquitto/debian.conf";
const FULL: &str = "tests/fixtures/mosquitto/full.conf";

/// Runs `program` with `args` from the repository root and waits (bounded) for it to end.
fn run_program(program: &str, args: &[&str]) -> Output {
    let child = Command::new(program)
        .args(args)
        .current_dir(ROOT)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let pid = child.id();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait_with_output());
    });
    match done_rx.recv_timeout(Duration::from_secs(60)) {
        Ok(output) => output.expect("output"),
        Err(_) => {
            // SAFETY: signalling our own child by PID.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
            panic!("{program} {args:?} did not end within 60 s");
        }
    }
}

fn shardmq(args: &[&str]) -> Output {
    run_program(env!("CARGO_BIN_EXE_shardmq"), args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "status {}\nstdout: {}\nstderr: {}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

#[track_caller]
fn failed(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "succeeded\nstdout: {}",
        text(&output.stdout)
    );
    text(&output.stderr)
}

/// The `FILE:LINE: option` of every `not mapped:` line of `stderr`.
fn unmapped(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|line| line.strip_prefix("not mapped: "))
        .map(|line| {
            let mut parts = line.splitn(4, ": ");
            let (at, option) = (parts.next().unwrap(), parts.next().unwrap());
            format!("{at}: {option}")
        })
        .collect()
}

fn expected(file: &str, lines: &[(usize, &str)]) -> Vec<String> {
    lines
        .iter()
        .map(|(line, option)| format!("{file}:{line}: {option}"))
        .collect()
}

/// Converts `conf` into `out`; the TOML and the stderr.
fn import(conf: &str, out: &Path) -> (toml::Table, String, String) {
    let output = shardmq(&["import-mosquitto-conf", conf, "-o", out.to_str().unwrap()]);
    succeeded(&output);
    let written = std::fs::read_to_string(out).expect("output written");
    let table = written
        .parse::<toml::Table>()
        .unwrap_or_else(|err| panic!("{err}\n{written}"));
    (table, written, text(&output.stderr))
}

#[test]
fn debian_default_mosquitto_conf_converts_to_shardmq_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("shardmq.toml");
    let (table, written, stderr) = import(DEBIAN, &out);

    // `include_dir /etc/mosquitto/conf.d` is read when this host has it (mosquitto installed).
    let conf_d = Path::new("/etc/mosquitto/conf.d");
    let included: Vec<_> = std::fs::read_dir(conf_d)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.file_name().to_string_lossy().ends_with(".conf"))
                .collect()
        })
        .unwrap_or_default();
    let mut lines = vec![
        (6, "pid_file"),
        (8, "persistence"),
        (9, "persistence_location"),
        (11, "log_dest"),
    ];
    if conf_d.is_dir() {
        assert!(
            written.contains("include_dir /etc/mosquitto/conf.d ("),
            "{written}"
        );
    } else {
        lines.push((13, "include_dir"));
    }
    let from_debian: Vec<String> = unmapped(&stderr)
        .into_iter()
        .filter(|line| line.starts_with(DEBIAN))
        .collect();
    assert_eq!(from_debian, expected(DEBIAN, &lines), "{stderr}");
    let persistence = format!("# not mapped: {DEBIAN}:8: persistence: shardmq keeps sessions");
    assert!(written.contains(&persistence), "{written}");
    assert!(written.contains("no persistence yet"), "{written}");
    if included.is_empty() {
        assert!(table.is_empty(), "nothing to set: {written}");
    }

    let stdout = succeeded(&shardmq(&[
        "check-config",
        "--config",
        out.to_str().unwrap(),
    ]));
    if included.is_empty() {
        assert!(
            stdout.contains("listening on [127.0.0.1:1883]"),
            "Mosquitto's local-only mode is shardmq's default: {stdout}"
        );
    }
}

#[test]
fn full_mosquitto_conf_converts_and_its_users_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("shardmq.toml");
    let (table, written, stderr) = import(FULL, &out);
    assert_eq!(
        unmapped(&stderr),
        expected(
            FULL,
            &[
                (6, "pid_file"),
                (7, "user"),
                (9, "persistence"),
                (10, "persistence_location"),
                (11, "autosave_interval"),
                (14, "log_dest"),
                (15, "log_type"),
                (16, "log_type"),
                (17, "connection_messages"),
                (36, "listener"),
                (37, "certfile"),
                (38, "keyfile"),
                (39, "require_certificate"),
                (41, "connection"),
                (42, "address"),
                (43, "topic"),
                (44, "remote_password"),
                (46, "auto_id_prefix"),
                (47, "retry_interval"),
                (48, "some_future_option"),
            ]
        ),
        "{stderr}"
    );
    assert!(stderr.contains("20 option(s) not mapped"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{FULL}:36: listener: listener 8883 is left out: TLS listeners are not supported yet"
        )),
        "{stderr}"
    );
    assert!(
        !written.contains("not-copied") && !stderr.contains("not-copied"),
        "a bridge's password is not copied"
    );
    assert!(
        written.contains(&format!(
            "# not mapped: {FULL}:9: persistence: shardmq keeps sessions"
        )),
        "{written}"
    );

    let listen: Vec<&str> = table["listen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|address| address.as_str().unwrap())
        .collect();
    assert_eq!(listen, ["0.0.0.0:1883", "[::]:1883", "127.0.0.1:1884"]);
    let numbers = [
        ("max_connections", 20_100),
        ("max_packet_size", 262_144 + 8192),
        ("max_inflight_messages", 40),
        ("max_queued_messages", 2000),
        ("max_queued_messages_online", 2000),
        ("max_queued_bytes", 16_777_216),
        ("max_keepalive", 300),
        ("persistent_client_expiration", 14 * 86_400),
        ("sys_interval", 30),
    ];
    for (key, value) in numbers {
        assert_eq!(table[key].as_integer(), Some(value), "{key}: {written}");
    }
    assert_eq!(table["allow_anonymous"].as_bool(), Some(false));
    assert_eq!(
        table["queue_qos0_messages"].as_bool(),
        Some(true),
        "from conf.d"
    );
    assert_eq!(
        table["password_file"].as_str(),
        Some("tests/fixtures/mosquitto/passwd")
    );
    assert_eq!(
        table["acl_file"].as_str(),
        Some("tests/fixtures/mosquitto/acl")
    );
    assert_eq!(table.len(), numbers.len() + 5, "{written}");

    let out = out.to_str().unwrap();
    let stdout = succeeded(&shardmq(&["check-config", "--config", out]));
    assert!(stdout.contains("configuration ok"), "{stdout}");
    assert!(
        stdout.contains("password_file ok: tests/fixtures/mosquitto/passwd"),
        "{stdout}"
    );
    assert!(
        stdout.contains("acl_file ok: tests/fixtures/mosquitto/acl"),
        "{stdout}"
    );

    // The converted configuration runs (on ephemeral loopback ports, as flags win over the
    // file): mosquitto_passwd's hashes log in, Mosquitto's ACL applies, anonymous is refused.
    let broker = Broker::start(&["--config", out]);
    let (_, code) = login(&broker, "anonymous", None, None);
    assert_eq!(code.to_v3_connack(), 5, "allow_anonymous false");
    let (_, code) = login(&broker, "guess", Some("alice"), Some("bob-secret"));
    assert_eq!(code.to_v3_connack(), 4);
    let (mut bob, code) = login(&broker, "bob-1", Some("bob"), Some("bob-secret"));
    assert_eq!(code, ReasonCode::Success);
    let ack = bob.subscribe(&[("sensors/#", QoS::AtMostOnce)]);
    assert_eq!(ack.codes, [ReasonCode::Success]);
    let (mut alice, code) = login(&broker, "alice-1", Some("alice"), Some("alice-secret"));
    assert_eq!(code, ReasonCode::Success);
    alice.subscribe(&[("sensors/#", QoS::AtMostOnce)]);
    bob.publish(
        "sensors/forged",
        b"bob may only read",
        QoS::AtMostOnce,
        false,
    );
    alice.publish("sensors/temperature", b"21.5", QoS::AtMostOnce, false);
    assert_eq!(bob.next_publish(WAIT).unwrap().payload, Bytes::from("21.5"));
    let first = alice.next_publish(WAIT).unwrap();
    assert_eq!(
        first.payload,
        Bytes::from("21.5"),
        "bob's publication was denied"
    );
    assert!(alice.next_publish(QUIET).is_none());
}

#[test]
fn import_writes_to_stdout_and_never_over_its_input() {
    let stdout = succeeded(&shardmq(&["import-mosquitto-conf", FULL]));
    assert!(stdout.contains("max_connections = 20100"), "{stdout}");
    let before = std::fs::read(Path::new(ROOT).join(FULL)).unwrap();
    let stderr = failed(&shardmq(&["import-mosquitto-conf", FULL, "-o", FULL]));
    assert!(stderr.contains("is the file being converted"), "{stderr}");
    assert_eq!(std::fs::read(Path::new(ROOT).join(FULL)).unwrap(), before);
    let stderr = failed(&shardmq(&[
        "import-mosquitto-conf",
        "no/such/mosquitto.conf",
    ]));
    assert!(stderr.contains("no/such/mosquitto.conf"), "{stderr}");
}

#[test]
fn mosquitto_conf_given_to_config_names_the_converter() {
    let stderr = refused_start(&["--config", &format!("{ROOT}/{DEBIAN}")]);
    assert!(
        stderr.contains("debian.conf") && stderr.contains("line 6"),
        "the error names the file and line: {stderr}"
    );
    assert!(
        stderr.contains("line 6 sets Mosquitto's `pid_file`")
            && stderr.contains("shardmq import-mosquitto-conf"),
        "{stderr}"
    );
    let stderr = failed(&shardmq(&["check-config", "--config", FULL]));
    assert!(
        stderr.contains("full.conf") && stderr.contains("import-mosquitto-conf"),
        "{stderr}"
    );

    // A TOML file with a wrong key still names file, line and key, and gets no hint.
    let files = Files::new("toml-error");
    let config = files.write("broker.toml", "shards = 1\nlistener = 1883\n");
    let stderr = failed(&shardmq(&["check-config", "--config", &config]));
    assert!(
        stderr.contains("broker.toml") && stderr.contains("line 2") && stderr.contains("listener"),
        "{stderr}"
    );
    assert!(!stderr.contains("import-mosquitto-conf"), "{stderr}");
}

#[test]
fn check_config_takes_its_configuration_before_or_after_the_command_and_does_not_listen() {
    // A port this test holds: check-config must not try to listen on it.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let files = Files::new("check-order");
    let config = files.write(
        "broker.toml",
        &format!("listen = [\"127.0.0.1:{port}\"]\nshards = 1\n[admin]\nlisten = \"\"\n"),
    );
    let ok = format!("configuration ok: 1 shard(s), listening on [127.0.0.1:{port}]");
    for args in [
        ["check-config", "--config", &config],
        ["--config", &config, "check-config"],
    ] {
        let stdout = succeeded(&shardmq(&args));
        assert!(stdout.contains(&ok), "{args:?}: {stdout}");
    }
    let stdout = succeeded(&shardmq(&[
        "--shards",
        "2",
        "check-config",
        "--config",
        &config,
        "--shards",
        "3",
    ]));
    assert!(
        stdout.contains("3 shard(s)"),
        "flags after the command win over the file and the flags before it: {stdout}"
    );
    let stdout = succeeded(&shardmq(&[
        "--config",
        &config,
        "--shards",
        "2",
        "check-config",
    ]));
    assert!(stdout.contains("2 shard(s)"), "{stdout}");
    drop(held);
}

#[test]
fn check_config_reads_every_file_the_configuration_names() {
    let files = Files::new("check-files");
    let passwd = files.passwords(&[("alice", "secret")]);
    let acl = files.write("acl", "user alice\ntopic read a/#\ntopic sideways b\n");
    let good_acl = files.write("good-acl", "user alice\ntopic read a/#\n");
    let relations = files.write("relations", "alice bob\n");
    let auto = files.write("auto", "a/%u 1\nuser alice\nb/# 7\n");
    let missing = files.write("placeholder", "");
    std::fs::remove_file(&missing).unwrap();
    let base = [
        "check-config",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "",
    ];
    let check = |extra: &[&str]| shardmq(&[&base[..], extra].concat());

    let stdout = succeeded(&check(&[
        "--password-file",
        &passwd,
        "--acl-file",
        &good_acl,
        "--relations-file",
        &relations,
        "--auto-subscribe-file",
        &files.write("good-auto", "a/%u 1\n"),
    ]));
    assert!(stdout.contains("configuration ok"), "{stdout}");
    for key in [
        "password_file",
        "acl_file",
        "relations_file",
        "auto_subscribe_file",
    ] {
        assert!(stdout.contains(&format!("{key} ok: ")), "{stdout}");
    }

    let stderr = failed(&check(&["--password-file", &passwd, "--acl-file", &acl]));
    assert!(
        stderr.contains(&format!("acl_file: {acl}:3: unknown access `sideways`")),
        "{stderr}"
    );
    let stderr = failed(&check(&["--password-file", &missing]));
    assert!(
        stderr.contains(&format!("password_file: {missing}: cannot read")),
        "{stderr}"
    );
    let stderr = failed(&check(&[
        "--password-file",
        &passwd,
        "--relations-file",
        &missing,
    ]));
    assert!(
        stderr.contains(&format!("relations_file: {missing}")),
        "{stderr}"
    );
    let stderr = failed(&check(&[
        "--password-file",
        &passwd,
        "--auto-subscribe-file",
        &auto,
    ]));
    assert!(
        stderr.contains(&format!("auto_subscribe_file: {auto}:3: invalid QoS `7`")),
        "{stderr}"
    );
}

/// `tuning/check.sh`'s report for `args`: its output, whatever this host's verdict.
fn check_sh(args: &[&str]) -> String {
    let output = run_program("bash", &[&["tuning/check.sh"], args].concat());
    assert_ne!(
        output.status.code(),
        Some(2),
        "usage error: {}",
        text(&output.stderr)
    );
    text(&output.stdout)
}

#[test]
fn tuning_check_reports_the_port_range_only_for_a_load_generator() {
    const PORTS: &str = "net.ipv4.ip_local_port_range";
    for broker in [
        check_sh(&["--connections", "1000"]),
        check_sh(&["--role", "broker", "--connections", "1000"]),
    ] {
        assert!(broker.contains("RLIMIT_NOFILE"), "{broker}");
        assert!(!broker.contains(PORTS), "{broker}");
    }
    let loadgen = check_sh(&["--role", "loadgen", "--connections", "1000"]);
    assert!(loadgen.contains(PORTS), "{loadgen}");
    assert!(loadgen.contains("RLIMIT_NOFILE"), "{loadgen}");
    let output = run_program("bash", &["tuning/check.sh", "--role", "client"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("--role"));
}
