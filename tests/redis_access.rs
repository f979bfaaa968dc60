//! Authentication, ACL, relations and auto-subscribe with the Redis backend, through the real
//! binary and a real `redis-server` that each test starts on an ephemeral loopback port: the
//! push-server scenario, refusals, the `users` and `import` commands, live revocation through
//! `shardmq:invalidate`, and Redis stopped and restarted under a running broker.
//!
//! Without `redis-server` these tests fail under CI and are skipped elsewhere
//! ([`common::external`]).

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::external::{available, starts};
use common::{
    check_push_server_chat, connect_packet, login, Broker, RawClient, QUIET, RULES_RELOADED, T1,
    WAIT, X, YXQ,
};
use shardmq_codec::{ByteStr, QoS, ReasonCode};

/// A `redis-server` child on a free loopback port, in its own directory, killed by PID on drop.
struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts one, or `None` when `redis-server` is not installed and the test is skipped
    /// (see [`available`]).
    fn start(name: &str) -> Option<RedisServer> {
        if !available(
            "redis-server",
            starts("redis-server", &["--version"]),
            "apt-get install redis-server",
        ) {
            return None;
        }
        let dir = std::env::temp_dir().join(format!("shardmq-redis-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut server = RedisServer {
            child: None,
            port,
            dir,
        };
        server.launch();
        Some(server)
    }

    /// Starts the process on `self.port` and waits until it answers PING.
    fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(mut con) = self.try_connection() {
                if redis::cmd("PING").query::<String>(&mut con).is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process (by PID) and waits for it.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn try_connection(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(1))
    }

    fn connection(&self) -> redis::Connection {
        self.try_connection().expect("connect to redis")
    }

    /// Runs one command, ignoring its reply.
    fn run(&self, args: &[&str]) {
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command.exec(&mut self.connection()).expect(args[0]);
    }

    /// A Redis-backed broker.
    fn broker(&self, extra: &[&str]) -> Broker {
        let url = self.url();
        let mut args = vec!["--redis-url", url.as_str()];
        args.extend_from_slice(extra);
        Broker::start(&args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `shardmq <args>` and returns its output.
fn shardmq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shardmq"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run shardmq")
}

fn assert_ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn add_user(redis: &RedisServer, user: &str, password: &str) {
    assert_ok(&shardmq(&[
        "users",
        "--redis-url",
        &redis.url(),
        "add",
        user,
        password,
    ]));
}

/// Writes `files` (name, text) to the server's directory and imports them.
fn import(redis: &RedisServer, files: &[(&str, &str)]) -> String {
    let mut args: Vec<String> = vec!["import".into(), "--redis-url".into(), redis.url()];
    for (flag, text) in files {
        let path = redis.dir.join(flag);
        std::fs::write(&path, text).unwrap();
        args.push(format!("--{flag}"));
        args.push(path.to_str().unwrap().to_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_ok(&shardmq(&args))
}

/// The push-server data: t1 and yxq follow each other, x follows yxq only.
fn push_server_data(redis: &RedisServer) {
    for (user, password) in [(T1, "pw1"), (YXQ, "pw2"), (X, "pw3")] {
        add_user(redis, user, password);
    }
    import(
        redis,
        &[
            (
                "acl-file",
                "pattern read /%u/chat\npattern write /%F/chat\n",
            ),
            (
                "relations-file",
                &format!("{T1} {YXQ}\n{YXQ} {T1}\n{X} {YXQ}\n"),
            ),
            ("auto-subscribe-file", "/%u/chat 1\n"),
        ],
    );
}

/// The original system's functional test, with Redis holding users, rules and relations.
#[test]
fn friends_receive_chat_without_subscribing_and_strangers_are_refused() {
    let Some(redis) = RedisServer::start("chat") else {
        return;
    };
    push_server_data(&redis);
    let broker = redis.broker(&[]);
    check_push_server_chat(&broker);
}

#[test]
fn wrong_password_unknown_user_and_anonymous_are_refused() {
    let Some(redis) = RedisServer::start("refuse") else {
        return;
    };
    add_user(&redis, "alice", "secret");
    // A legacy salted-MD5 entry, as migrated from the original design: md5("pw" + "salt").
    redis.run(&[
        "HSET",
        "shardmq:user:legacy",
        "password",
        "$md5$salt$55e70b9971d050fe8f7455eb551189cf",
        "created",
        "2015-01-01",
    ]);
    redis.run(&["HSET", "shardmq:user:broken", "password", "not-a-hash"]);
    let broker = redis.broker(&["--max-login-failures", "0"]);
    let (_, code) = login(&broker, "c1", Some("alice"), Some("wrong"));
    assert_eq!(code.to_v3_connack(), 4, "bad user name or password");
    let (_, code) = login(&broker, "c2", Some("mallory"), Some("secret"));
    assert_eq!(code.to_v3_connack(), 4, "unknown user");
    let (_, code) = login(&broker, "c3", None, None);
    assert_eq!(
        code.to_v3_connack(),
        5,
        "anonymous refused once Redis is set"
    );
    let (_, code) = login(&broker, "c4", Some("broken"), Some("x"));
    assert_eq!(
        code.to_v3_connack(),
        5,
        "a bad stored hash refuses the user"
    );
    assert!(broker
        .wait_for_log(&["shardmq:user:broken", "password"], WAIT)
        .is_some());
    let (_, code) = login(&broker, "c5", Some("alice"), Some("secret"));
    assert_eq!(code, ReasonCode::Success);
    let (_, code) = login(&broker, "c6", Some("legacy"), Some("pw"));
    assert_eq!(code, ReasonCode::Success, "legacy hashes are verified");
}

#[test]
fn users_and_import_commands_round_trip() {
    let Some(redis) = RedisServer::start("cli") else {
        return;
    };
    let url = redis.url();
    add_user(&redis, "bob", "one");
    let again = shardmq(&["users", "--redis-url", &url, "add", "bob", "two"]);
    assert!(!again.status.success(), "add refuses an existing user");
    assert_ok(&shardmq(&[
        "users",
        "--redis-url",
        &url,
        "passwd",
        "bob",
        "two",
    ]));
    let missing = shardmq(&["users", "--redis-url", &url, "passwd", "nobody", "x"]);
    assert!(!missing.status.success());

    let passwd = redis.dir.join("passwd");
    for (n, (user, password)) in [("carol", "c"), ("dave", "d")].iter().enumerate() {
        let mut args = vec!["passwd", "-b"];
        if n == 0 {
            args.push("-c");
        }
        let path = passwd.to_str().unwrap();
        args.extend([path, user, password]);
        assert_ok(&shardmq(&args));
    }
    let summary = import(
        &redis,
        &[
            ("password-file", &std::fs::read_to_string(&passwd).unwrap()),
            (
                "acl-file",
                "# anonymous\ntopic read public/#\nuser carol\ntopic readwrite carol/#\npattern read /%u/chat\nuser dave\ntopic write x y/with space\n",
            ),
            ("relations-file", "carol dave\ndave carol bob\n# c\n"),
            ("auto-subscribe-file", "/%u/chat 1\nuser dave\nnews 0\n"),
        ],
    );
    assert!(summary.contains("users: 2"), "{summary}");
    let list = assert_ok(&shardmq(&["users", "--redis-url", &url, "list"]));
    assert_eq!(list.lines().collect::<Vec<_>>(), ["bob", "carol", "dave"]);

    let mut con = redis.connection();
    let lrange = |con: &mut redis::Connection, key: &str| -> Vec<String> {
        redis::cmd("LRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .query(con)
            .unwrap()
    };
    assert_eq!(
        lrange(&mut con, "shardmq:acl"),
        ["topic read public/#", "pattern read /%u/chat"]
    );
    assert_eq!(
        lrange(&mut con, "shardmq:acl:user:carol"),
        ["topic readwrite carol/#"]
    );
    assert_eq!(
        lrange(&mut con, "shardmq:acl:user:dave"),
        ["topic write x y/with space"]
    );
    assert_eq!(lrange(&mut con, "shardmq:autosub"), ["/%u/chat 1"]);
    assert_eq!(lrange(&mut con, "shardmq:autosub:user:dave"), ["news 0"]);
    let mut follows: Vec<String> = redis::cmd("SMEMBERS")
        .arg("shardmq:follows:dave")
        .query(&mut con)
        .unwrap();
    follows.sort();
    assert_eq!(follows, ["bob", "carol"]);
    let hash: String = redis::cmd("HGET")
        .arg("shardmq:user:bob")
        .arg("password")
        .query(&mut con)
        .unwrap();
    assert!(hash.starts_with("$7$101$"), "{hash}");

    // Importing a smaller ACL replaces the per-user lists, and a bad file changes nothing.
    import(&redis, &[("acl-file", "pattern read a/%u\n")]);
    assert!(lrange(&mut con, "shardmq:acl:user:carol").is_empty());
    let bad = redis.dir.join("bad-acl");
    std::fs::write(&bad, "pattern read b\ntopic sideways c\n").unwrap();
    let output = shardmq(&[
        "import",
        "--redis-url",
        &url,
        "--acl-file",
        bad.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad-acl:2"), "{stderr}");
    assert_eq!(lrange(&mut con, "shardmq:acl"), ["pattern read a/%u"]);

    // The imported users log in, and delete removes one.
    let broker = redis.broker(&[]);
    let (_, code) = login(&broker, "c", Some("carol"), Some("c"));
    assert_eq!(code, ReasonCode::Success);
    let (_, code) = login(&broker, "b", Some("bob"), Some("two"));
    assert_eq!(code, ReasonCode::Success);
    assert_ok(&shardmq(&["users", "--redis-url", &url, "delete", "carol"]));
    let (_, code) = login(&broker, "c2", Some("carol"), Some("c"));
    assert_eq!(code.to_v3_connack(), 4);
    let again = shardmq(&["users", "--redis-url", &url, "delete", "carol"]);
    assert!(!again.status.success());
}

#[test]
fn redis_edits_reach_connected_sessions_within_a_second() {
    let Some(redis) = RedisServer::start("live") else {
        return;
    };
    add_user(&redis, "reader", "pw");
    add_user(&redis, "writer", "pw");
    redis.run(&["RPUSH", "shardmq:acl:user:reader", "topic read news/#"]);
    redis.run(&["RPUSH", "shardmq:acl:user:writer", "topic write news/#"]);
    let broker = redis.broker(&[]);
    let (mut reader, _) = login(&broker, "reader", Some("reader"), Some("pw"));
    assert_eq!(
        reader.subscribe(&[("news/#", QoS::AtMostOnce)]).codes,
        vec![ReasonCode::Success]
    );
    let (mut writer, _) = login(&broker, "writer", Some("writer"), Some("pw"));
    writer.publish("news/1", b"before", QoS::AtMostOnce, false);
    assert_eq!(
        reader.next_publish(WAIT).unwrap().payload,
        Bytes::from("before")
    );

    redis.run(&["DEL", "shardmq:acl:user:reader"]);
    redis.run(&["RPUSH", "shardmq:acl:user:reader", "topic read sport/#"]);
    redis.run(&["PUBLISH", "shardmq:invalidate", "reader"]);
    broker.wait_for_rules(&[RULES_RELOADED, "reader"], 1, Duration::from_secs(1));
    assert_eq!(
        broker.client("reader").expect("reader listed")["subscriptions"],
        0,
        "the revoked read removed the subscription"
    );
    writer.publish("news/2", b"after", QoS::AtMostOnce, false);
    assert!(
        reader.next_publish(QUIET).is_none(),
        "revoked read stops delivery; log: {:?}",
        broker.log()
    );
    let ack = reader.subscribe(&[("news/#", QoS::AtMostOnce), ("sport/#", QoS::AtMostOnce)]);
    assert_eq!(
        ack.codes,
        vec![ReasonCode::UnspecifiedError, ReasonCode::Success]
    );
}

/// Unfollowing changes the other side's `%F`: publishing the name of the user whose follow set
/// changed refreshes its former friend's session too.
#[test]
fn an_unfollow_revokes_the_former_friends_write() {
    let Some(redis) = RedisServer::start("unfollow") else {
        return;
    };
    push_server_data(&redis);
    let broker = redis.broker(&[]);
    let (mut yxq, _) = login(&broker, "yxq", Some(YXQ), Some("pw2"));
    let (mut t1, _) = login(&broker, "t1", Some(T1), Some("pw1"));
    t1.publish(
        &format!("/{YXQ}/chat"),
        b"still friends",
        QoS::AtMostOnce,
        false,
    );
    assert_eq!(
        yxq.next_publish(WAIT).unwrap().payload,
        Bytes::from("still friends")
    );

    redis.run(&["SREM", &format!("shardmq:follows:{YXQ}"), T1]);
    redis.run(&["PUBLISH", "shardmq:invalidate", YXQ]);
    // Both sessions recompiled, and applied by the shards.
    broker.wait_for_rules(&[RULES_RELOADED, "sessions=2"], 1, WAIT);
    t1.publish(
        &format!("/{YXQ}/chat"),
        b"no longer",
        QoS::AtMostOnce,
        false,
    );
    assert!(yxq.next_publish(QUIET).is_none());
}

#[test]
fn invalidating_everything_rereads_the_shared_rules() {
    let Some(redis) = RedisServer::start("everything") else {
        return;
    };
    add_user(&redis, "u", "pw");
    redis.run(&["RPUSH", "shardmq:acl", "pattern readwrite a/#"]);
    let broker = redis.broker(&[]);
    let (mut u, _) = login(&broker, "u", Some("u"), Some("pw"));
    assert_eq!(
        u.subscribe(&[("a/1", QoS::AtMostOnce)]).codes,
        vec![ReasonCode::Success]
    );
    // The first subscription to the channel counts as a refresh of everything.
    assert!(broker
        .wait_for_log(&[RULES_RELOADED, "All"], WAIT)
        .is_some());
    let before = broker
        .log()
        .iter()
        .filter(|line| line.contains(RULES_RELOADED) && line.contains("All"))
        .count();
    redis.run(&["RPUSH", "shardmq:acl", "pattern deny a/secret"]);
    redis.run(&["PUBLISH", "shardmq:invalidate", "*"]);
    broker.wait_for_rules(&[RULES_RELOADED, "All"], before + 1, WAIT);
    u.publish("a/secret", b"x", QoS::AtMostOnce, false);
    u.publish("a/1", b"y", QoS::AtMostOnce, false);
    let got = u.next_publish(WAIT).unwrap();
    assert_eq!(
        got.topic.as_ref(),
        "a/1",
        "the denied topic is not delivered"
    );
    assert_eq!(
        u.subscribe(&[("a/secret", QoS::AtMostOnce)]).codes,
        vec![ReasonCode::UnspecifiedError]
    );
}

/// Redis stopped mid-run: connected clients keep working, a new CONNECT is refused with code 3
/// (server unavailable) without waiting for the shard's own timeout, and the outage is logged
/// once. Restarted on the same port with the data it had: CONNECTs succeed.
#[test]
fn redis_down_refuses_new_connects_and_recovers() {
    let Some(mut redis) = RedisServer::start("down") else {
        return;
    };
    push_server_data(&redis);
    let broker = redis.broker(&[]);
    let (mut yxq, _) = login(&broker, "yxq", Some(YXQ), Some("pw2"));
    let (mut t1, _) = login(&broker, "t1", Some(T1), Some("pw1"));

    // A snapshot the restarted server loads before it serves anyone: the broker re-reads the
    // rules of every session when it is back, and must not find them half-written (a session
    // that lost its read rule meanwhile would lose its auto-subscription for good).
    redis.run(&["SAVE"]);
    redis.stop();
    t1.publish(&format!("/{YXQ}/chat"), b"during", QoS::AtMostOnce, false);
    assert_eq!(
        yxq.next_publish(WAIT)
            .expect("connected clients keep working")
            .payload,
        Bytes::from("during")
    );
    for n in 0..3 {
        let started = Instant::now();
        let (_, code) = login(&broker, &format!("new-{n}"), Some(T1), Some("pw1"));
        assert_eq!(code.to_v3_connack(), 3, "server unavailable");
        // The shard gives up after 5 s; the control core answers well before.
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
    }
    let outages = broker
        .log()
        .iter()
        .filter(|line| line.contains("Redis unreachable"))
        .count();
    assert_eq!(outages, 1, "one warning per outage: {:?}", broker.log());

    redis.launch();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, code) = login(&broker, "back", Some(T1), Some("pw1"));
        if code == ReasonCode::Success {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "CONNECTs succeed again after Redis is back: {:?}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(broker
        .wait_for_log(&["Redis reachable again"], WAIT)
        .is_some());
    t1.publish(&format!("/{YXQ}/chat"), b"after", QoS::AtMostOnce, false);
    assert_eq!(
        yxq.next_publish(WAIT)
            .unwrap_or_else(|| panic!("no delivery after the outage: {:#?}", broker.log()))
            .payload,
        Bytes::from("after")
    );
}

#[test]
fn broker_starts_without_redis_and_refuses_until_it_is_there() {
    let Some(mut redis) = RedisServer::start("late") else {
        return;
    };
    redis.stop();
    let broker = redis.broker(&[]);
    let (_, code) = login(&broker, "early", Some("u"), Some("pw"));
    assert_eq!(code.to_v3_connack(), 3);
    redis.launch();
    add_user(&redis, "u", "pw");
    let deadline = Instant::now() + Duration::from_secs(15);
    while login(&broker, "late", Some("u"), Some("pw")).1 != ReasonCode::Success {
        assert!(Instant::now() < deadline, "{:?}", broker.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn bad_shared_rules_stop_the_broker_at_start_naming_key_and_line() {
    let Some(redis) = RedisServer::start("badrules") else {
        return;
    };
    redis.run(&[
        "RPUSH",
        "shardmq:acl",
        "pattern read a",
        "pattern sideways b",
    ]);
    let output = Command::new(env!("CARGO_BIN_EXE_shardmq"))
        .args(["--listen", "127.0.0.1:0", "--redis-url", &redis.url()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("shardmq:acl:2") && stderr.contains("sideways"),
        "{stderr}"
    );
}

#[test]
fn redis_and_files_do_not_mix() {
    let output = shardmq(&[
        "--redis-url",
        "redis://127.0.0.1:1/",
        "--acl-file",
        "/nonexistent",
        "check-config",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("acl_file") && stderr.contains("import"),
        "{stderr}"
    );
}

/// CONNECTs that queue up together are read from Redis as one batch; each still gets its own
/// answer.
#[test]
fn concurrent_connects_each_get_their_own_answer() {
    let Some(redis) = RedisServer::start("batch") else {
        return;
    };
    let users: Vec<String> = (0..8).map(|n| format!("user{n}")).collect();
    let passwd = redis.dir.join("passwd");
    let plain: String = users
        .iter()
        .map(|user| format!("{user}:pw-{user}\n"))
        .collect();
    std::fs::write(&passwd, plain).unwrap();
    assert_ok(&shardmq(&["passwd", "-U", passwd.to_str().unwrap()]));
    import(
        &redis,
        &[
            ("password-file", &std::fs::read_to_string(&passwd).unwrap()),
            ("acl-file", "pattern readwrite own/%u/#\n"),
        ],
    );
    let broker = redis.broker(&["--max-login-failures", "0"]);
    let addr = broker.addr;
    let threads: Vec<_> = (0..48)
        .map(|n| {
            let user = format!("user{}", n % 10);
            // user8 and user9 do not exist; every third attempt has a wrong password.
            let password = if n % 3 == 0 {
                "wrong".to_owned()
            } else {
                format!("pw-{user}")
            };
            std::thread::spawn(move || {
                let mut connect = connect_packet(&format!("c{n}"), true);
                connect.username = Some(ByteStr::from(user.as_str()));
                connect.password = Some(Bytes::from(password.clone()));
                let (mut client, ack) = RawClient::connect_with(addr, connect);
                let expected = n % 10 < 8 && n % 3 != 0;
                assert_eq!(
                    ack.code == ReasonCode::Success,
                    expected,
                    "{user} {password}"
                );
                if expected {
                    let codes = client
                        .subscribe(&[
                            (&format!("own/{user}/x"), QoS::AtMostOnce),
                            ("own/other/x", QoS::AtMostOnce),
                        ])
                        .codes;
                    assert_eq!(
                        codes,
                        vec![ReasonCode::Success, ReasonCode::UnspecifiedError],
                        "{user} got its own rules"
                    );
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("client thread");
    }
}

#[test]
fn sighup_rereads_the_shared_rules() {
    let Some(redis) = RedisServer::start("sighup") else {
        return;
    };
    add_user(&redis, "u", "pw");
    redis.run(&["RPUSH", "shardmq:acl", "pattern read a/#"]);
    let broker = redis.broker(&[]);
    let (mut u, _) = login(&broker, "u", Some("u"), Some("pw"));
    assert_eq!(
        u.subscribe(&[("a/1", QoS::AtMostOnce)]).codes,
        vec![ReasonCode::Success]
    );
    // The first subscription to the invalidation channel applies everything once.
    broker.wait_for_rules(&[RULES_RELOADED, "All"], 1, WAIT);
    // Edited without publishing: SIGHUP makes the broker read it.
    redis.run(&["DEL", "shardmq:acl"]);
    redis.run(&["RPUSH", "shardmq:acl", "pattern read b/#"]);
    // SAFETY: signalling our own child by PID.
    unsafe {
        libc::kill(broker.pid() as i32, libc::SIGHUP);
    }
    broker.wait_for_rules(&[RULES_RELOADED, "All"], 2, WAIT);
    assert_eq!(
        u.subscribe(&[("a/2", QoS::AtMostOnce), ("b/1", QoS::AtMostOnce)])
            .codes,
        vec![ReasonCode::UnspecifiedError, ReasonCode::Success]
    );
}

/// An invalidation that revokes `read news/#` reaches every one of 3,000 connected sessions
/// before the broker says the rules are reloaded.
#[test]
fn an_invalidation_reaches_every_session() {
    let Some(redis) = RedisServer::start("revoke-all") else {
        return;
    };
    for rule in [
        "pattern read news/#",
        "pattern read probe/#",
        "pattern write #",
    ] {
        redis.run(&["RPUSH", "shardmq:acl", rule]);
    }
    let broker = redis.broker(&["--allow-anonymous", "true"]);
    broker.wait_for_rules(&[RULES_RELOADED, "All"], 1, WAIT);
    common::check_revocation_reaches_every_session(
        |client_id| RawClient::connect(broker.addr, client_id),
        || {
            redis.run(&["LREM", "shardmq:acl", "0", "pattern read news/#"]);
            redis.run(&["PUBLISH", "shardmq:invalidate", "*"]);
            let sessions = format!("sessions={}", common::REVOKED_SESSIONS);
            broker.wait_for_rules(&[RULES_RELOADED, &sessions], 1, WAIT * 4);
        },
    );
}
