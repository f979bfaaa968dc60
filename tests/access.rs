//! Authentication, ACL, relations and auto-subscribe with the embedded file backend, through
//! the real binary: the push-server scenario, wrong passwords, anonymous refusal, ACL denials,
//! `%f` versus `%F`, reload on SIGHUP, and brute-force bans.

mod common;

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use common::external::{available, starts};
use common::files::Files;
use common::{
    check_push_server_chat, login, Broker, RawClient, QUIET, RULES_RELOADED, T1, WAIT, X, YXQ,
};
use shardmq_codec::{QoS, ReasonCode};

/// The original system's functional test: mutual followers chat through auto-subscribed
/// topics; a one-way follower may not write to the other's chat.
#[test]
fn friends_receive_chat_without_subscribing_and_strangers_are_refused() {
    let files = Files::new("chat");
    let passwd = files.passwords(&[(T1, "pw1"), (YXQ, "pw2"), (X, "pw3")]);
    let acl = files.write("acl", "pattern read /%u/chat\npattern write /%F/chat\n");
    let relations = files.write("relations", &format!("{T1} {YXQ}\n{YXQ} {T1}\n{X} {YXQ}\n"));
    let auto = files.write("auto", "/%u/chat 1\n");
    let broker = Broker::start(&[
        "--password-file",
        &passwd,
        "--acl-file",
        &acl,
        "--relations-file",
        &relations,
        "--auto-subscribe-file",
        &auto,
    ]);
    check_push_server_chat(&broker);
}

#[test]
fn follows_are_one_way_and_friends_are_mutual() {
    let files = Files::new("relations");
    let passwd = files.passwords(&[("a", "x"), ("b", "x"), ("c", "x")]);
    // a follows b and c; only b follows a back.
    let relations = files.write("relations", "a b c\nb a\n");
    let acl = files.write("acl", "pattern read presence/%f/#\npattern read friends/%F/#\npattern write presence/%u/#\npattern write friends/%u/#\n");
    let broker = Broker::start(&[
        "--password-file",
        &passwd,
        "--acl-file",
        &acl,
        "--relations-file",
        &relations,
    ]);
    let (mut a, _) = login(&broker, "a", Some("a"), Some("x"));
    let ack = a.subscribe(&[
        ("presence/b/online", QoS::AtMostOnce),
        ("presence/c/online", QoS::AtMostOnce),
        ("friends/b/news", QoS::AtMostOnce),
        ("friends/c/news", QoS::AtMostOnce),
    ]);
    assert_eq!(
        ack.codes,
        vec![
            ReasonCode::Success,
            ReasonCode::Success,
            ReasonCode::Success,
            ReasonCode::UnspecifiedError
        ],
        "%f covers everyone a follows; %F only mutual followers"
    );
}

#[test]
fn wrong_password_unknown_user_and_anonymous_are_refused() {
    let files = Files::new("refuse");
    let passwd = files.passwords(&[("alice", "secret")]);
    let broker = Broker::start(&["--password-file", &passwd, "--max-login-failures", "0"]);
    let (_, code) = login(&broker, "c1", Some("alice"), Some("wrong"));
    assert_eq!(code.to_v3_connack(), 4, "bad user name or password");
    let (_, code) = login(&broker, "c2", Some("mallory"), Some("secret"));
    assert_eq!(code.to_v3_connack(), 4);
    let (_, code) = login(&broker, "c3", None, None);
    assert_eq!(
        code.to_v3_connack(),
        5,
        "anonymous not authorized once a password file is set"
    );
    let (_, code) = login(&broker, "c4", Some("alice"), Some("secret"));
    assert_eq!(code, ReasonCode::Success);
}

#[test]
fn anonymous_can_be_allowed_explicitly_with_anonymous_rules() {
    let files = Files::new("anon");
    let passwd = files.passwords(&[("alice", "secret")]);
    let acl = files.write(
        "acl",
        "topic read public/#\nuser alice\ntopic readwrite #\n",
    );
    let broker = Broker::start(&[
        "--password-file",
        &passwd,
        "--acl-file",
        &acl,
        "--allow-anonymous",
        "true",
    ]);
    let (mut anon, code) = login(&broker, "anon", None, None);
    assert_eq!(code, ReasonCode::Success);
    let ack = anon.subscribe(&[
        ("public/news", QoS::AtMostOnce),
        ("private/x", QoS::AtMostOnce),
    ]);
    assert_eq!(
        ack.codes,
        vec![ReasonCode::Success, ReasonCode::UnspecifiedError]
    );
    let (mut alice, _) = login(&broker, "alice", Some("alice"), Some("secret"));
    alice.publish("public/news", b"extra", QoS::AtMostOnce, false);
    assert_eq!(
        anon.next_publish(WAIT).unwrap().payload,
        Bytes::from("extra")
    );
    // Anonymous may not write.
    anon.publish("public/news", b"forged", QoS::AtMostOnce, false);
    assert!(anon.next_publish(QUIET).is_none());
}

#[test]
fn exposed_listener_without_authentication_refuses_to_start() {
    let output = Command::new(env!("CARGO_BIN_EXE_shardmq"))
        .args(["--listen", "0.0.0.0:0", "check-config"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("allow_anonymous") && stderr.contains("password_file"),
        "{stderr}"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_shardmq"))
        .args([
            "--listen",
            "0.0.0.0:0",
            "--allow-anonymous",
            "true",
            "check-config",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
}

#[test]
fn sighup_reload_revokes_read_and_removes_subscriptions() {
    let files = Files::new("reload");
    let passwd = files.passwords(&[("reader", "pw"), ("writer", "pw")]);
    let acl_path = files.write(
        "acl",
        "user reader\ntopic read news/#\nuser writer\ntopic write news/#\n",
    );
    let broker = Broker::start(&["--password-file", &passwd, "--acl-file", &acl_path]);
    let (mut reader, _) = login(&broker, "reader", Some("reader"), Some("pw"));
    let ack = reader.subscribe(&[("news/#", QoS::AtMostOnce)]);
    assert_eq!(ack.codes, vec![ReasonCode::Success]);
    let (mut writer, _) = login(&broker, "writer", Some("writer"), Some("pw"));
    writer.publish("news/1", b"before", QoS::AtMostOnce, false);
    assert_eq!(
        reader.next_publish(WAIT).unwrap().payload,
        Bytes::from("before")
    );

    files.write(
        "acl",
        "user reader\ntopic read sport/#\nuser writer\ntopic write news/#\n",
    );
    // SAFETY: signalling our own child by PID.
    unsafe {
        libc::kill(broker.pid() as i32, libc::SIGHUP);
    }
    broker.wait_for_rules(&[RULES_RELOADED], 1, WAIT);
    writer.publish("news/2", b"after", QoS::AtMostOnce, false);
    assert!(
        reader.next_publish(QUIET).is_none(),
        "revoked read stops delivery"
    );
    let ack = reader.subscribe(&[("news/#", QoS::AtMostOnce), ("sport/#", QoS::AtMostOnce)]);
    assert_eq!(
        ack.codes,
        vec![ReasonCode::UnspecifiedError, ReasonCode::Success]
    );
}

#[test]
fn a_bad_reload_keeps_the_previous_rules() {
    let files = Files::new("badreload");
    let passwd = files.passwords(&[("u", "pw")]);
    let acl = files.write("acl", "user u\ntopic readwrite a/#\n");
    let broker = Broker::start(&["--password-file", &passwd, "--acl-file", &acl]);
    files.write("acl", "user u\ntopic sideways a/#\n");
    // SAFETY: signalling our own child by PID.
    unsafe {
        libc::kill(broker.pid() as i32, libc::SIGHUP);
    }
    let line = broker
        .wait_for_log(&["reload failed"], WAIT)
        .expect("reload error logged");
    assert!(
        line.contains("acl") && line.contains(":2"),
        "names file and line: {line}"
    );
    let (mut u, code) = login(&broker, "u", Some("u"), Some("pw"));
    assert_eq!(code, ReasonCode::Success);
    assert_eq!(
        u.subscribe(&[("a/b", QoS::AtMostOnce)]).codes,
        vec![ReasonCode::Success]
    );
}

#[test]
fn bad_files_name_file_and_line_at_start() {
    let files = Files::new("badfile");
    let acl = files.write("acl", "user u\ntopic read a\nbogus line here\n");
    let output = Command::new(env!("CARGO_BIN_EXE_shardmq"))
        .args(["--listen", "127.0.0.1:0", "--acl-file", &acl])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&acl) && stderr.contains(":3") && stderr.contains("bogus"),
        "{stderr}"
    );
}

/// The ban falls on the address the failures came from (every client here is 127.0.0.1), not
/// on the user name: tests/login_guard.rs shows the user still logging in from elsewhere.
#[test]
fn repeated_failures_ban_the_user() {
    let files = Files::new("ban");
    let passwd = files.passwords(&[("victim", "right")]);
    let broker = Broker::start(&[
        "--password-file",
        &passwd,
        "--max-login-failures",
        "3",
        "--ban-seconds",
        "60",
    ]);
    for n in 0..3 {
        let (_, code) = login(
            &broker,
            &format!("guess-{n}"),
            Some("victim"),
            Some("wrong"),
        );
        assert_eq!(code.to_v3_connack(), 4);
    }
    let (_, code) = login(&broker, "owner", Some("victim"), Some("right"));
    assert_eq!(
        code.to_v3_connack(),
        5,
        "the address is banned, even with the right password"
    );
}

#[test]
fn mosquitto_clients_log_in_with_a_password_file() {
    if !available(
        "mosquitto_pub",
        starts("mosquitto_pub", &["--help"]),
        "apt-get install mosquitto-clients",
    ) {
        return;
    }
    let files = Files::new("mosq");
    let passwd = files.passwords(&[("m", "p")]);
    let broker = Broker::start(&["--password-file", &passwd]);
    let port = broker.addr.port().to_string();
    let ok = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-u",
            "m",
            "-P",
            "p",
            "-t",
            "t",
            "-m",
            "x",
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    let refused = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-u",
            "m",
            "-P",
            "bad",
            "-t",
            "t",
            "-m",
            "x",
        ])
        .status()
        .unwrap();
    assert!(!refused.success());
    let _ = Path::new(&passwd);
}

/// A SIGHUP that revokes `read news/#` reaches every one of 3,000 connected sessions before the
/// broker says the rules are reloaded.
#[test]
fn a_reload_reaches_every_session() {
    let files = Files::new("revoke-all");
    let acl = files.write(
        "acl",
        "pattern read news/#\npattern read probe/#\npattern write #\n",
    );
    let broker = Broker::start(&["--acl-file", &acl, "--allow-anonymous", "true"]);
    common::check_revocation_reaches_every_session(
        |client_id| RawClient::connect(broker.addr, client_id),
        || {
            files.write("acl", "pattern read probe/#\npattern write #\n");
            // SAFETY: signalling our own child by PID.
            unsafe {
                libc::kill(broker.pid() as i32, libc::SIGHUP);
            }
            let sessions = format!("sessions={}", common::REVOKED_SESSIONS);
            broker.wait_for_rules(&[RULES_RELOADED, &sessions], 1, WAIT * 4);
        },
    );
}
