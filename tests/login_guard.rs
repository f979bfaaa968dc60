//! Login hardening through the real binary, played as an attacker would: failing on purpose
//! with someone else's user name, logging in to an own account between guesses, an overlong
//! user name.
//!
//! Every client of the broker comes from loopback; clients that must be told apart bind their
//! socket to another address of 127.0.0.0/8 before connecting ([`common::login_from`]).

mod common;

use std::time::{Duration, Instant};

use common::files::Files;
use common::{login_from, Broker};

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
