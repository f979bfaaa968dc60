//! Login hardening through the real binary, played as an attacker would: failing on purpose
//! with someone else's user name, logging in to an own account between guesses, an overlong
//! user name, a password hash that asks for hours of work, an Argon2id entry as Mosquitto 2.1
//! writes it, and a `control_core` CPU that does not exist.
//!
//! Every client of the broker comes from loopback; clients that must be told apart bind their
//! socket to another address of 127.0.0.0/8 before connecting ([`common::login_from`]).

mod common;

use std::time::{Duration, Instant};

use common::files::Files;
use common::{login_from, Broker, WAIT};

/// CONNACK return codes of MQTT 3.1.1 (a ban reads as "not authorized").
const ACCEPTED: Option<u8> = Some(0);
const BAD_CREDENTIALS: Option<u8> = Some(4);
const NOT_AUTHORIZED: Option<u8> = Some(5);

const ATTACKER: &str = "127.0.0.2";
const VICTIM: &str = "127.0.0.3";

/// The longest a refusal may be held back (README, "Access control"), plus room for a loaded
/// machine.
const PENALTY_BOUND: Duration = Duration::from_secs(3);

/// An attacker fails with the victim's name until banned: the ban falls on the attacker's
/// address, and the victim, from elsewhere, can still fail a typo and then log in.
#[test]
fn failing_with_a_victims_name_bans_the_attacker_not_the_victim() {
    let files = Files::new("guard-victim");
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
        let (_, code) = login_from(&broker, ATTACKER, &format!("guess-{n}"), "victim", b"wrong");
        assert_eq!(code, BAD_CREDENTIALS, "guess {n}");
    }
    let (_, code) = login_from(&broker, ATTACKER, "guess-right", "victim", b"right");
    assert_eq!(
        code, NOT_AUTHORIZED,
        "the attacker's address is banned, even with the right password"
    );

    // The name has four failures now: the victim's typo is answered late, as a wrong password,
    // within the bound; not banned.
    let started = Instant::now();
    let (_, code) = login_from(&broker, VICTIM, "victim-typo", "victim", b"rihgt");
    assert_eq!(code, BAD_CREDENTIALS, "a wrong password, not a ban");
    assert!(started.elapsed() < PENALTY_BOUND, "{:?}", started.elapsed());
    let started = Instant::now();
    let (_session, code) = login_from(&broker, VICTIM, "victim-phone", "victim", b"right");
    assert_eq!(code, ACCEPTED, "the victim gets in");
    assert!(started.elapsed() < PENALTY_BOUND, "{:?}", started.elapsed());

    // The victim's success cleared the name, not the attacker's ban.
    let (_, code) = login_from(&broker, ATTACKER, "guess-again", "victim", b"right");
    assert_eq!(code, NOT_AUTHORIZED);
}

/// An attacker with an account of his own logs in to it between guesses: that does not wipe
/// out the failures counted against his address.
#[test]
fn logging_in_to_an_own_account_keeps_the_address_failures() {
    let files = Files::new("guard-own-account");
    let passwd = files.passwords(&[("victim", "right"), ("mallory", "mine")]);
    let broker = Broker::start(&["--password-file", &passwd, "--max-login-failures", "3"]);
    for n in 0..2 {
        let (_, code) = login_from(&broker, ATTACKER, &format!("guess-{n}"), "victim", b"x");
        assert_eq!(code, BAD_CREDENTIALS);
    }
    let (mallory, code) = login_from(&broker, ATTACKER, "mallory", "mallory", b"mine");
    assert_eq!(code, ACCEPTED);
    mallory.disconnect();
    let (_, code) = login_from(&broker, ATTACKER, "guess-2", "victim", b"y");
    assert_eq!(code, BAD_CREDENTIALS);
    let (_, code) = login_from(&broker, ATTACKER, "mallory-again", "mallory", b"mine");
    assert_eq!(
        code, NOT_AUTHORIZED,
        "the third failure of the address banned it"
    );
}

/// A user name longer than 256 bytes never logs in, even with the password of its entry; 256
/// bytes do. (The shards refuse such names before the control core is asked; the control core
/// refuses them again, so its table stays bounded whatever the shards' settings.)
#[test]
fn an_overlong_user_name_is_refused_even_with_its_password() {
    let files = Files::new("guard-long-name");
    let longest = "v".repeat(256);
    let passwd = files.passwords(&[("short", "pw"), (&longest, "pw")]);
    let text = std::fs::read_to_string(&passwd).expect("password file");
    let overlong = "w".repeat(257);
    let text = text.replacen("short:", &format!("{overlong}:"), 1);
    files.write("passwd", &text);
    let broker = Broker::start(&["--password-file", &passwd]);
    let (_, code) = login_from(&broker, ATTACKER, "long", &overlong, b"pw");
    assert_eq!(code, BAD_CREDENTIALS);
    let (_, code) = login_from(&broker, VICTIM, "longest", &longest, b"pw");
    assert_eq!(code, ACCEPTED);
}

/// A `$7$` entry asking for four billion PBKDF2 iterations (hours of work) is refused at once,
/// with a log line naming its user, and the control core goes on deciding other logins.
#[test]
fn a_hash_too_costly_to_verify_is_refused_without_freezing_logins() {
    let files = Files::new("costly-hash");
    let passwd = files.passwords(&[("alice", "secret")]);
    let text = std::fs::read_to_string(&passwd).expect("password file");
    let alice_hash = text
        .lines()
        .find_map(|line| line.strip_prefix("alice:"))
        .expect("alice's entry");
    assert!(alice_hash.starts_with("$7$101$"), "{alice_hash}");
    let slow_hash = alice_hash.replacen("$7$101$", "$7$4000000000$", 1);
    files.write("passwd", &format!("{text}slow:{slow_hash}\n"));
    let broker = Broker::start(&["--password-file", &passwd]);
    assert!(
        broker.wait_for_log(&["slow", "too costly"], WAIT).is_some(),
        "named at start-up: {:?}",
        broker.log()
    );

    let (_, code) = login_from(&broker, ATTACKER, "slow", "slow", b"secret");
    assert_eq!(code, BAD_CREDENTIALS, "refused, within the CONNACK wait");
    assert!(
        broker
            .wait_for_log(&["login refused", "slow", "too costly"], WAIT)
            .is_some(),
        "{:?}",
        broker.log()
    );
    let (_alice, code) = login_from(&broker, VICTIM, "alice", "alice", b"secret");
    assert_eq!(code, ACCEPTED, "the control core is not frozen");
}

/// An Argon2id entry as Mosquitto 2.1's `mosquitto_passwd` writes it (`t=1, m=47104, p=1`,
/// 64-byte salt and hash; this one made by argon2-cffi 25.1.0, i.e. libargon2) logs in.
#[test]
fn an_argon2id_user_logs_in() {
    const ARGON2ID: &str = "$argon2id$v=19$m=47104,t=1,p=1$AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaG\
        xwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw$sPEIinca8RYJDxlc8jKe8jHjzxdTavdKcP76J1S7\
        ooh3DLbwJDJDDG1g0m72j5JdJsuYN3v4eY69IUNv3kZWEA";
    let files = Files::new("argon2id");
    let passwd = files.passwords(&[("alice", "secret")]);
    let text = std::fs::read_to_string(&passwd).expect("password file");
    files.write("passwd", &format!("{text}mosq21:{ARGON2ID}\n"));
    let broker = Broker::start(&["--password-file", &passwd]);
    let (_, code) = login_from(&broker, ATTACKER, "wrong", "mosq21", b"argon-pw!");
    assert_eq!(code, BAD_CREDENTIALS);
    let (_mosq21, code) = login_from(&broker, VICTIM, "mosq21", "mosq21", b"argon-pw");
    assert_eq!(code, ACCEPTED);
    let (_alice, code) = login_from(&broker, VICTIM, "alice", "alice", b"secret");
    assert_eq!(code, ACCEPTED);
}

/// `--control-core 999` on a machine without CPU 999 stops the broker with an error naming the
/// key, instead of running with the control core unpinned.
#[test]
fn a_control_core_cpu_out_of_range_is_a_configuration_error() {
    let files = Files::new("control-core-cpu");
    let passwd = files.passwords(&[("alice", "secret")]);
    let stderr = common::refused_start(&[
        "--listen",
        "127.0.0.1:0",
        "--shards",
        "1",
        "--admin-listen",
        "127.0.0.1:0",
        "--password-file",
        &passwd,
        "--control-core",
        "999",
    ]);
    assert!(
        stderr.contains("`control_core` = 999"),
        "the error names the key: {stderr}"
    );
}
