//! The Redis backend: users, ACL rules, follow relations and auto-subscribe tables kept in Redis,
//! read by the control core, with edits announced on a pub/sub channel so that they reach
//! connected sessions without a restart.
//!
//! # Key layout
//!
//! Every key starts with `shardmq:`. Rule tables are lists whose elements are lines in the
//! syntax of the corresponding file (see [`crate::auth`]); they are parsed by the same parsers,
//! and an error names the key and the element (as its line number, from 1).
//!
//! | key | type | content |
//! |---|---|---|
//! | `shardmq:user:<name>` | hash | `password`: a `mosquitto_passwd` hash (`$7$`, `$argon2id$`, `$6$` or legacy `$md5$`); other fields are the operator's and are ignored |
//! | `shardmq:acl` | list | shared `acl_file` lines: `topic` lines for anonymous clients, `pattern` lines for everyone (a `user` line starts that user's `topic` lines, as in the file) |
//! | `shardmq:acl:user:<name>` | list | the user's own rules: `topic [access] <filter>` lines (a `pattern` line here is the user's rule too); no `user` lines |
//! | `shardmq:follows:<name>` | set | the users `<name>` follows (`%f`); mutual followers are friends (`%F`) |
//! | `shardmq:autosub` | list | `<filter-template> <qos>` lines for every client (a `user` line starts that user's lines) |
//! | `shardmq:autosub:user:<name>` | list | the user's own `<filter-template> <qos>` lines; no `user` lines |
//! | `shardmq:invalidate` | channel | a user name: that user's data changed; `*`: anything may have changed |
//!
//! With Redis the ACL always applies (least privilege): a client that no rule allows anything
//! can connect but neither publish nor subscribe. `RPUSH shardmq:acl "pattern readwrite #"`
//! allows everything, like running without an `acl_file`.
//!
//! # Round trips and caching
//!
//! The shared lists (`shardmq:acl`, `shardmq:autosub`) are read once and kept; they are read
//! again on `*`, on SIGHUP, and each time the subscriber (re)subscribes, since messages
//! published while it was not subscribed are lost. Per-user data is not cached, so it never goes
//! stale: a CONNECT reads it in one pipelined round trip (hash, own rules, follow set, own
//! auto-subscriptions) and, when the password is right and the user follows anyone, a second
//! one asking each followee whether it follows back (`SISMEMBER`, for `%F`). CONNECTs that queue
//! up on the control core are decided as a batch ([`Backend::prefetch`]): the users of the whole
//! batch are read in those same two round trips, which is what keeps Redis-backed logins close
//! to the embedded files' rate (`benches/RESULTS.md`, "Access control").
//!
//! An invalidation for user `U` recompiles the rules of `U`'s sessions and of the connected
//! users who follow `U` (their `%F` depends on whether `U` follows them back): one pipelined
//! `SISMEMBER` per distinct connected user finds those, then their data is read in batches.
//! After editing a follow set, publishing the name of the user whose set it is suffices.
//!
//! # Threads
//!
//! Every command runs on the control core thread, on one connection. A second thread owns the
//! subscriber connection and only forwards what arrives on `shardmq:invalidate` to the control
//! core over a bounded channel, which [`Backend::poll`] drains (so an edit reaches sessions
//! within about [`super::POLL`] plus the recompilation).
//!
//! # Outages
//!
//! Connecting, reading and writing time out after [`IO_TIMEOUT`]. When a command fails at the
//! connection level the link goes down and one warning is logged; while it is down every CONNECT
//! that needs Redis is refused at once with "server unavailable" (anonymous clients, when
//! allowed, need only the cached shared lists), connected sessions keep their rules, and
//! [`Backend::poll`] reconnects with a backoff from 100 ms doubling to 5 s, logging once when it
//! is back. So a CONNECT waits on Redis for at most about one timeout, once per outage.
//!
//! # Bad data
//!
//! A shared list that does not parse stops the broker at start-up (as a bad file does), and
//! later leaves the previous rules in force with an error logged. A user whose own data does
//! not parse (bad hash, bad rule line, a key of the wrong type) is refused at CONNECT with a
//! warning naming the key, and keeps the rules it has if connected; so is a user whose hash asks
//! for more work than [`crate::auth::password`] allows ("Bounded cost"), before any of it is
//! done.
//!
//! An unknown user's password is checked against a dummy shaped like the last user hash checked
//! (same scheme and parameters; the `$7$` default until then), so that the answer takes about
//! as long as for a known user: which users exist is not told by timing.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use crossbeam::channel::{self, Receiver, Sender, TrySendError};
use redis::{Client, Connection, FromRedisValue, Pipeline, RedisError, RetryMethod, Value};
use shardmq_codec::QoS;
use shardmq_shard::acl::SessionAcl;
use shardmq_shard::control::ClientInfo;
use tracing::{debug, error, info, warn};

use super::{Backend, Refresh, Verdict};
use crate::access::{AclRules, AutoSubscribe};
use crate::auth::acl_file::parse_acl;
use crate::auth::auto_subscribe_file::parse_auto_subscribe;
use crate::auth::password::PasswordHash;

/// Key and channel names (see the module doc).
pub mod keys {
    /// Shared ACL lines.
    pub const ACL: &str = "shardmq:acl";
    /// Shared auto-subscribe lines.
    pub const AUTO_SUBSCRIBE: &str = "shardmq:autosub";
    /// The invalidation channel.
    pub const INVALIDATE: &str = "shardmq:invalidate";
    /// The message on [`INVALIDATE`] that means "anything may have changed".
    pub const EVERYTHING: &str = "*";
    /// The field of a user hash that holds the password hash.
    pub const PASSWORD: &str = "password";
    /// Prefix of user hashes.
    pub const USER_PREFIX: &str = "shardmq:user:";
    /// Prefix of per-user ACL lists.
    pub const USER_ACL_PREFIX: &str = "shardmq:acl:user:";
    /// Prefix of follow sets.
    pub const FOLLOWS_PREFIX: &str = "shardmq:follows:";
    /// Prefix of per-user auto-subscribe lists.
    pub const USER_AUTO_SUBSCRIBE_PREFIX: &str = "shardmq:autosub:user:";

    /// The hash of user `name`.
    pub fn user(name: &str) -> String {
        format!("{USER_PREFIX}{name}")
    }

    /// The own ACL lines of user `name`.
    pub fn user_acl(name: &str) -> String {
        format!("{USER_ACL_PREFIX}{name}")
    }

    /// The users `name` follows.
    pub fn follows(name: &str) -> String {
        format!("{FOLLOWS_PREFIX}{name}")
    }

    /// The own auto-subscribe lines of user `name`.
    pub fn user_auto_subscribe(name: &str) -> String {
        format!("{USER_AUTO_SUBSCRIBE_PREFIX}{name}")
    }
}

/// Connect, read and write timeout of both connections.
pub const IO_TIMEOUT: Duration = Duration::from_secs(1);

/// First reconnection delay; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How often the subscriber thread wakes to see whether it should stop.
const SUBSCRIBER_TICK: Duration = Duration::from_millis(500);

/// Invalidations queued for the control core at most; beyond this they collapse into one
/// "everything" refresh.
const EVENT_QUEUE: usize = 1024;

/// Users read per pipeline when many sessions are refreshed at once.
const BATCH_USERS: usize = 256;

/// Why Redis could not give an answer.
#[derive(Debug)]
enum FetchError {
    /// Not reachable now (link down, timeout, or the server asks to retry later).
    Unavailable,
    /// The data is wrong; the message names the key.
    Data(String),
}

/// The command connection, and its state across outages.
struct Link {
    client: Client,
    connection: Option<Connection>,
    /// When the current outage began; `None` while connected or before the first attempt.
    down_since: Option<Instant>,
    retry_at: Instant,
    backoff: Duration,
}

impl Link {
    /// A link that tries to connect once now.
    fn open(client: Client) -> Link {
        let now = Instant::now();
        let mut link = Link {
            client,
            connection: None,
            down_since: None,
            retry_at: now,
            backoff: BACKOFF_FIRST,
        };
        match connect(&link.client) {
            Ok(connection) => {
                info!(server = %link.client.get_connection_info().addr(), "connected to Redis");
                link.connection = Some(connection);
            }
            Err(err) => {
                warn!(
                    server = %link.client.get_connection_info().addr(),
                    error = %err,
                    "Redis unreachable: CONNECTs that need it are refused (server unavailable) until it is back"
                );
                link.down_since = Some(now);
                link.retry_at = now + BACKOFF_FIRST;
            }
        }
        link
    }

    fn is_up(&self) -> bool {
        self.connection.is_some()
    }

    /// Reconnects if the link is down and the backoff has passed; true if it is back now.
    fn poll_reconnect(&mut self, now: Instant) -> bool {
        if self.connection.is_some() || now < self.retry_at {
            return false;
        }
        match connect(&self.client) {
            Ok(connection) => {
                let down_for = self.down_since.map(|since| now.duration_since(since));
                info!(?down_for, "Redis reachable again");
                self.connection = Some(connection);
                self.down_since = None;
                self.backoff = BACKOFF_FIRST;
                true
            }
            Err(err) => {
                debug!(error = %err, backoff = ?self.backoff, "Redis still unreachable");
                self.retry_at = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                false
            }
        }
    }

    /// Runs a pipeline. A failure of the connection takes the link down.
    fn query<T: FromRedisValue>(&mut self, pipe: &Pipeline) -> Result<T, FetchError> {
        let Some(connection) = self.connection.as_mut() else {
            return Err(FetchError::Unavailable);
        };
        match pipe.query::<T>(connection) {
            Ok(value) => Ok(value),
            Err(err) if err.is_io_error() || err.is_unrecoverable_error() => {
                self.lose(&err);
                Err(FetchError::Unavailable)
            }
            Err(err) if matches!(err.retry_method(), RetryMethod::WaitAndRetry) => {
                debug!(error = %err, "Redis asks to retry later");
                Err(FetchError::Unavailable)
            }
            Err(err) => Err(FetchError::Data(err.to_string())),
        }
    }

    fn lose(&mut self, err: &RedisError) {
        // A connection that timed out may still deliver the late reply: start afresh.
        self.connection = None;
        let now = Instant::now();
        self.down_since = Some(now);
        self.retry_at = now;
        self.backoff = BACKOFF_FIRST;
        warn!(
            error = %err,
            "Redis unreachable: CONNECTs that need it are refused (server unavailable) until it is back"
        );
    }
}

fn connect(client: &Client) -> redis::RedisResult<Connection> {
    let connection = client.get_connection_with_timeout(IO_TIMEOUT)?;
    connection.set_read_timeout(Some(IO_TIMEOUT))?;
    connection.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(connection)
}

/// What the subscriber thread reports.
#[derive(Debug)]
enum Event {
    /// (Re)subscribed: messages may have been missed.
    Subscribed,
    /// `*` was published.
    Everything,
    /// A user name was published.
    User(String),
}

/// Runs on its own thread: keeps a subscription to [`keys::INVALIDATE`] and forwards what
/// arrives. Never touches the control core's state.
fn run_subscriber(
    client: Client,
    events: Sender<Event>,
    overflow: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    let send = |event: Event| match events.try_send(event) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => {
            overflow.store(true, Ordering::Release);
            true
        }
        Err(TrySendError::Disconnected(_)) => false,
    };
    let mut backoff = BACKOFF_FIRST;
    while !stop.load(Ordering::Acquire) {
        match listen(&client, &send, &stop) {
            Ok(Ended::Stopped) => return,
            // It was subscribed: try again soon.
            Ok(Ended::Lost) => backoff = BACKOFF_FIRST,
            Err(err) => debug!(error = %err, "cannot subscribe to invalidations yet"),
        }
        let until = Instant::now() + backoff;
        while Instant::now() < until && !stop.load(Ordering::Acquire) {
            std::thread::sleep(BACKOFF_FIRST);
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// How a subscription ended.
enum Ended {
    /// The backend is gone or asked to stop.
    Stopped,
    /// The connection failed after subscribing.
    Lost,
}

/// Connects, subscribes and forwards messages until the connection fails or `stop` is set.
fn listen(
    client: &Client,
    send: &dyn Fn(Event) -> bool,
    stop: &AtomicBool,
) -> redis::RedisResult<Ended> {
    let mut connection = subscribe(client)?;
    let mut pubsub = connection.as_pubsub();
    pubsub.subscribe(keys::INVALIDATE)?;
    if !send(Event::Subscribed) {
        return Ok(Ended::Stopped);
    }
    loop {
        match pubsub.get_message() {
            Ok(message) => {
                let event = match message.get_payload::<String>() {
                    Ok(text) if text == keys::EVERYTHING => Event::Everything,
                    Ok(text) if !text.is_empty() => Event::User(text),
                    _ => continue,
                };
                if !send(event) {
                    return Ok(Ended::Stopped);
                }
            }
            Err(err) if err.is_timeout() => {
                if stop.load(Ordering::Acquire) {
                    return Ok(Ended::Stopped);
                }
            }
            Err(err) => {
                debug!(error = %err, "invalidation subscription lost");
                return Ok(Ended::Lost);
            }
        }
    }
}

fn subscribe(client: &Client) -> redis::RedisResult<Connection> {
    let connection = client.get_connection_with_timeout(IO_TIMEOUT)?;
    connection.set_write_timeout(Some(IO_TIMEOUT))?;
    connection.set_read_timeout(Some(SUBSCRIBER_TICK))?;
    Ok(connection)
}

/// The shared lists, parsed.
#[derive(Debug, Default)]
struct Shared {
    acl: AclRules,
    auto_subscribe: AutoSubscribe,
}

/// One user's data as a CONNECT or a refresh needs it: the rules and auto-subscriptions that
/// apply to the user (shared and own together) and its relations.
#[derive(Debug)]
struct UserData {
    name: String,
    /// The stored hash, as text (checked at login only).
    password: Option<String>,
    acl: AclRules,
    auto_subscribe: AutoSubscribe,
    follows: Vec<String>,
    friends: Vec<String>,
}

impl UserData {
    fn session_acl(&self, client_id: &str) -> SessionAcl {
        let follows: Vec<&str> = self.follows.iter().map(String::as_str).collect();
        let friends: Vec<&str> = self.friends.iter().map(String::as_str).collect();
        self.acl
            .compile(Some(&self.name), client_id, &follows, &friends)
    }

    fn auto_subscribe(&self, client_id: &str) -> Vec<(String, QoS)> {
        let follows: Vec<&str> = self.follows.iter().map(String::as_str).collect();
        let friends: Vec<&str> = self.friends.iter().map(String::as_str).collect();
        self.auto_subscribe
            .expand(Some(&self.name), client_id, &follows, &friends)
    }
}

/// What the first round trip reads for a user.
#[derive(Debug)]
struct Stored {
    password: Option<String>,
    acl: Vec<String>,
    follows: Vec<String>,
    auto_subscribe: Vec<String>,
}

/// Commands of the first round trip per user, in [`Stored`] order.
const ROUND_ONE: usize = 4;

fn push_round_one(pipe: &mut Pipeline, name: &str) {
    pipe.cmd("HGET").arg(keys::user(name)).arg(keys::PASSWORD);
    pipe.cmd("LRANGE").arg(keys::user_acl(name)).arg(0).arg(-1);
    pipe.cmd("SMEMBERS").arg(keys::follows(name));
    pipe.cmd("LRANGE")
        .arg(keys::user_auto_subscribe(name))
        .arg(0)
        .arg(-1);
}

/// Decodes one reply of a pipeline run with `ignore_errors`, naming `key` on failure.
fn decode<T: FromRedisValue>(value: Value, key: &str) -> Result<T, String> {
    match value {
        Value::ServerError(err) => Err(format!("Redis key {key}: {}", RedisError::from(err))),
        value => redis::from_redis_value(value).map_err(|err| format!("Redis key {key}: {err}")),
    }
}

impl Stored {
    fn decode(name: &str, values: &mut impl Iterator<Item = Value>) -> Result<Stored, String> {
        let mut next = || values.next().unwrap_or(Value::Nil);
        let password = decode::<Option<String>>(next(), &keys::user(name));
        let acl = decode::<Vec<String>>(next(), &keys::user_acl(name));
        let follows = decode::<Vec<String>>(next(), &keys::follows(name));
        let auto_subscribe = decode::<Vec<String>>(next(), &keys::user_auto_subscribe(name));
        let mut follows = follows?;
        // Sorted, so the expansion order is stable whatever order SMEMBERS gives.
        follows.sort_unstable();
        Ok(Stored {
            password: password?,
            acl: acl?,
            follows,
            auto_subscribe: auto_subscribe?,
        })
    }

    /// The user's rules and auto-subscriptions, shared and own together.
    fn into_user_data(
        self,
        name: &str,
        shared: &Shared,
        friends: Vec<String>,
    ) -> Result<UserData, String> {
        let own_acl = parse_user_list(&keys::user_acl(name), &self.acl, |text, path| {
            parse_acl(text, path).map(|rules| {
                rules
                    .anonymous()
                    .iter()
                    .chain(rules.patterns())
                    .cloned()
                    .collect::<Vec<_>>()
            })
        })?;
        let own_auto = parse_user_list(
            &keys::user_auto_subscribe(name),
            &self.auto_subscribe,
            |text, path| parse_auto_subscribe(text, path).map(|table| table.everyone().to_vec()),
        )?;
        let mut acl = AclRules::new();
        for rule in shared.acl.patterns() {
            acl.push_pattern(rule.clone());
        }
        for rule in shared.acl.user(name).iter().chain(&own_acl) {
            acl.push_user(name, rule.clone());
        }
        let mut auto_subscribe = AutoSubscribe::new();
        for line in shared.auto_subscribe.everyone() {
            auto_subscribe.push_everyone(line.clone());
        }
        for line in shared.auto_subscribe.user(name).iter().chain(&own_auto) {
            auto_subscribe.push_user(name, line.clone());
        }
        Ok(UserData {
            name: name.to_owned(),
            password: self.password,
            acl,
            auto_subscribe,
            follows: self.follows,
            friends,
        })
    }
}

/// Joins list elements into file text, one element a line, so the file parsers read them and
/// their line numbers are element numbers.
fn list_text(key: &str, lines: &[String]) -> Result<String, String> {
    if let Some(at) = lines.iter().position(|line| line.contains(['\n', '\r'])) {
        return Err(format!(
            "Redis key {key}:{}: an element holds a line break",
            at + 1
        ));
    }
    Ok(lines.join("\n"))
}

/// Parses a per-user list with `parse`, refusing `user` lines (they belong in the shared list).
fn parse_user_list<T, E: std::fmt::Display>(
    key: &str,
    lines: &[String],
    parse: impl FnOnce(&str, &Path) -> Result<T, E>,
) -> Result<T, String> {
    if let Some(at) = lines
        .iter()
        .position(|line| line.split_whitespace().next() == Some("user"))
    {
        return Err(format!(
            "Redis key {key}:{}: `user` lines are not allowed in a per-user list",
            at + 1
        ));
    }
    let text = list_text(key, lines)?;
    parse(&text, Path::new(key)).map_err(|err| format!("Redis key {err}"))
}

/// Checks `password` against the stored hash of user `name` (`None`: no such user, checked
/// against `dummy` for the time it takes). A hash that can be checked becomes the model of
/// `dummy` (see the module doc, "Bad data").
fn verify(
    name: &str,
    stored: Option<&str>,
    password: &[u8],
    dummy: &mut PasswordHash,
) -> Result<bool, FetchError> {
    let Some(encoded) = stored else {
        let _ = dummy.verify(password);
        return Ok(false);
    };
    let bad = |reason: String| {
        FetchError::Data(format!(
            "Redis key {} field `{}`: {reason}",
            keys::user(name),
            keys::PASSWORD
        ))
    };
    let hash = PasswordHash::parse(encoded).map_err(|err| bad(err.to_string()))?;
    let matched = hash
        .verify(password)
        .map_err(|cost| bad(format!("too costly to verify: {cost}")))?;
    *dummy = hash.dummy();
    Ok(matched)
}

/// The Redis backend (see the module doc).
pub struct RedisBackend {
    link: Link,
    allow_anonymous: bool,
    /// `None` until the shared lists have been read once.
    shared: Option<Shared>,
    /// A refresh that could not run while Redis was unreachable.
    pending: Option<Refresh>,
    events: Receiver<Event>,
    overflow: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    /// The user authenticated by the CONNECT being decided, for the calls that follow
    /// [`Backend::authenticate`] (so one CONNECT reads Redis once).
    current: Option<UserData>,
    /// Users of the batch of CONNECTs being decided, read together by [`Backend::prefetch`].
    prefetched: HashMap<String, UserData>,
    /// What an unknown user's password is checked against (see [`verify`]).
    dummy: PasswordHash,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("server", &self.link.client.get_connection_info().addr())
            .field("up", &self.link.is_up())
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Connects to the Redis at `url` and reads the shared lists. An unreachable Redis is not
    /// an error (the backend reconnects); an invalid URL or shared list is.
    pub fn connect(url: &str, allow_anonymous: bool) -> anyhow::Result<RedisBackend> {
        let client = Client::open(url).context("invalid Redis URL ([redis] url)")?;
        let (events_tx, events) = channel::bounded(EVENT_QUEUE);
        let overflow = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let subscriber = {
            let (client, overflow, stop) =
                (client.clone(), Arc::clone(&overflow), Arc::clone(&stop));
            move || run_subscriber(client, events_tx, overflow, stop)
        };
        let mut backend = RedisBackend {
            link: Link::open(client),
            allow_anonymous,
            shared: None,
            pending: None,
            events,
            overflow,
            stop,
            current: None,
            prefetched: HashMap::new(),
            dummy: PasswordHash::default_dummy(),
        };
        match backend.read_shared() {
            Ok(shared) => backend.shared = Some(shared),
            Err(FetchError::Unavailable) => {}
            Err(FetchError::Data(message)) => return Err(anyhow!(message)),
        }
        std::thread::Builder::new()
            .name("redis-invalidate".into())
            .spawn(subscriber)
            .context("starting the Redis subscriber thread")?;
        Ok(backend)
    }

    /// Reads and parses the shared lists.
    fn read_shared(&mut self) -> Result<Shared, FetchError> {
        let mut pipe = redis::pipe();
        pipe.cmd("LRANGE").arg(keys::ACL).arg(0).arg(-1);
        pipe.cmd("LRANGE").arg(keys::AUTO_SUBSCRIBE).arg(0).arg(-1);
        let (acl, auto_subscribe): (Vec<String>, Vec<String>) =
            self.link.query(&pipe).map_err(|err| match err {
                FetchError::Data(message) => FetchError::Data(format!(
                    "Redis keys {} and {}: {message}",
                    keys::ACL,
                    keys::AUTO_SUBSCRIBE
                )),
                unavailable => unavailable,
            })?;
        let data = |message: String| FetchError::Data(message);
        let acl_text = list_text(keys::ACL, &acl).map_err(data)?;
        let auto_text = list_text(keys::AUTO_SUBSCRIBE, &auto_subscribe).map_err(data)?;
        let acl = parse_acl(&acl_text, Path::new(keys::ACL))
            .map_err(|err| FetchError::Data(format!("Redis key {err}")))?;
        let auto_subscribe = parse_auto_subscribe(&auto_text, Path::new(keys::AUTO_SUBSCRIBE))
            .map_err(|err| FetchError::Data(format!("Redis key {err}")))?;
        info!(
            patterns = acl.patterns().len(),
            anonymous = acl.anonymous().len(),
            auto_subscribe = auto_subscribe.everyone().len(),
            "shared rules read from Redis"
        );
        Ok(Shared {
            acl,
            auto_subscribe,
        })
    }

    /// Re-reads the shared lists; on bad data the previous ones stay (and the error is logged).
    fn refresh_shared(&mut self) -> Result<(), FetchError> {
        match self.read_shared() {
            Ok(shared) => {
                self.shared = Some(shared);
                Ok(())
            }
            Err(FetchError::Data(message)) => {
                error!(error = %message, "bad shared rules in Redis; the previous ones stay in force");
                Err(FetchError::Data(message))
            }
            Err(FetchError::Unavailable) => Err(FetchError::Unavailable),
        }
    }

    /// Reads a user for a CONNECT (or takes it from the prefetched batch): `Ok(None)` for an
    /// unknown user or a wrong password.
    fn login(
        &mut self,
        name: &str,
        password: &[u8],
    ) -> Result<Result<UserData, Verdict>, FetchError> {
        // A user without a password field cannot log in: as good as unknown.
        let refusal = |known: bool| {
            if known {
                Verdict::BadPassword
            } else {
                Verdict::UnknownUser
            }
        };
        if let Some(user) = self.prefetched.remove(name) {
            let known = user.password.is_some();
            let verified = verify(name, user.password.as_deref(), password, &mut self.dummy)?;
            return Ok(if verified {
                Ok(user)
            } else {
                Err(refusal(known))
            });
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        push_round_one(&mut pipe, name);
        let values: Vec<Value> = self.link.query(&pipe)?;
        let stored = Stored::decode(name, &mut values.into_iter()).map_err(FetchError::Data)?;
        if !verify(name, stored.password.as_deref(), password, &mut self.dummy)? {
            return Ok(Err(refusal(stored.password.is_some())));
        }
        let mut friends = self.friends(&[(name, &stored.follows)])?;
        let friends = friends.pop().unwrap_or_default();
        let shared = self.shared.as_ref().ok_or(FetchError::Unavailable)?;
        stored
            .into_user_data(name, shared, friends)
            .map(Ok)
            .map_err(FetchError::Data)
    }

    /// For each `(user, followees)`, the followees that follow the user back: one pipelined
    /// round trip for all of them (none if nobody follows anyone).
    fn friends(&mut self, users: &[(&str, &Vec<String>)]) -> Result<Vec<Vec<String>>, FetchError> {
        let mut pipe = redis::pipe();
        let mut asked = 0;
        for (name, follows) in users {
            for followee in follows.iter() {
                pipe.cmd("SISMEMBER")
                    .arg(keys::follows(followee))
                    .arg(*name);
                asked += 1;
            }
        }
        let answers: Vec<bool> = if asked == 0 {
            Vec::new()
        } else {
            self.link.query(&pipe)?
        };
        let mut answers = answers.into_iter();
        Ok(users
            .iter()
            .map(|(_, follows)| {
                follows
                    .iter()
                    .filter(|_| answers.next().unwrap_or(false))
                    .cloned()
                    .collect()
            })
            .collect())
    }

    /// Reads many users (no password check), in batches of [`BATCH_USERS`]; each is its data
    /// or what is wrong with it.
    fn read_users(
        &mut self,
        names: &[&str],
    ) -> Result<HashMap<String, Result<UserData, String>>, FetchError> {
        let mut users = HashMap::with_capacity(names.len());
        for batch in names.chunks(BATCH_USERS) {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for name in batch {
                push_round_one(&mut pipe, name);
            }
            let values: Vec<Value> = self.link.query(&pipe)?;
            let mut values = values.into_iter();
            let mut stored = Vec::with_capacity(batch.len());
            for name in batch {
                match Stored::decode(name, &mut values.by_ref().take(ROUND_ONE)) {
                    Ok(data) => stored.push((*name, data)),
                    Err(message) => {
                        users.insert((*name).to_owned(), Err(message));
                    }
                }
            }
            let relations: Vec<(&str, &Vec<String>)> = stored
                .iter()
                .map(|(name, data)| (*name, &data.follows))
                .collect();
            let friends = self.friends(&relations)?;
            let shared = self.shared.as_ref().ok_or(FetchError::Unavailable)?;
            for ((name, data), friends) in stored.into_iter().zip(friends) {
                users.insert(name.to_owned(), data.into_user_data(name, shared, friends));
            }
        }
        Ok(users)
    }

    /// The connected users (among `connected`) who follow one of `changed`.
    fn followers_among(
        &mut self,
        changed: &BTreeSet<String>,
        connected: &[&str],
    ) -> Result<Vec<String>, FetchError> {
        let candidates: Vec<&str> = connected
            .iter()
            .copied()
            .filter(|name| !changed.contains(*name))
            .collect();
        if candidates.is_empty() || changed.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for name in &candidates {
            // SMISMEMBER would need Redis 6.2; one SISMEMBER per changed user works everywhere.
            for changed_user in changed {
                pipe.cmd("SISMEMBER")
                    .arg(keys::follows(name))
                    .arg(changed_user);
            }
        }
        let answers: Vec<bool> = self.link.query(&pipe)?;
        Ok(candidates
            .iter()
            .zip(answers.chunks(changed.len()))
            .filter(|(_, follows)| follows.iter().any(|&yes| yes))
            .map(|(name, _)| (*name).to_owned())
            .collect())
    }

    fn try_refresh(
        &mut self,
        refresh: &Refresh,
        clients: &[ClientInfo],
    ) -> Result<Vec<(String, SessionAcl)>, FetchError> {
        let connected: BTreeSet<&str> = clients
            .iter()
            .filter_map(|c| c.username.as_deref())
            .collect();
        let connected: Vec<&str> = connected.into_iter().collect();
        let affected: BTreeSet<String> = match refresh {
            Refresh::All => connected.iter().map(|name| (*name).to_owned()).collect(),
            Refresh::Users(names) => {
                let changed: BTreeSet<String> = names.iter().cloned().collect();
                let followers = self.followers_among(&changed, &connected)?;
                changed
                    .into_iter()
                    .filter(|name| connected.binary_search(&name.as_str()).is_ok())
                    .chain(followers)
                    .collect()
            }
        };
        let names: Vec<&str> = affected.iter().map(String::as_str).collect();
        let mut users = self.read_users(&names)?;
        users.retain(|name, user| match user {
            Ok(_) => true,
            Err(message) => {
                warn!(user = %name, error = %message, "bad user data in Redis; its sessions keep their rules");
                false
            }
        });
        let shared = self.shared.as_ref().ok_or(FetchError::Unavailable)?;
        Ok(clients
            .iter()
            .filter_map(|client| match client.username.as_deref() {
                Some(name) => users
                    .get(name)
                    .and_then(|user| user.as_ref().ok())
                    .map(|user| {
                        (
                            client.client_id.clone(),
                            user.session_acl(&client.client_id),
                        )
                    }),
                // Anonymous sessions depend on the shared rules only.
                None if *refresh == Refresh::All => Some((
                    client.client_id.clone(),
                    shared.acl.compile(None, &client.client_id, &[], &[]),
                )),
                None => None,
            })
            .collect())
    }

    /// Adds `refresh` to the one waiting for Redis to come back.
    fn defer(&mut self, refresh: Refresh) {
        self.pending = Some(match (self.pending.take(), refresh) {
            (Some(Refresh::All), _) | (_, Refresh::All) => Refresh::All,
            (Some(Refresh::Users(mut old)), Refresh::Users(new)) => {
                old.extend(new);
                old.sort_unstable();
                old.dedup();
                Refresh::Users(old)
            }
            (None, users) => users,
        });
    }
}

impl Drop for RedisBackend {
    fn drop(&mut self) {
        // The subscriber notices within SUBSCRIBER_TICK (or when its channel is gone).
        self.stop.store(true, Ordering::Release);
    }
}

impl Backend for RedisBackend {
    fn prefetch(&mut self, usernames: &[&str]) {
        self.prefetched.clear();
        // One user is read by its login; the batch read pays off from two.
        if usernames.len() < 2 || self.shared.is_none() || !self.link.is_up() {
            return;
        }
        let mut names = usernames.to_vec();
        names.sort_unstable();
        names.dedup();
        // A user with bad data is left out and read (and reported) again by its own login.
        if let Ok(users) = self.read_users(&names) {
            self.prefetched = users
                .into_iter()
                .filter_map(|(name, user)| Some((name, user.ok()?)))
                .collect();
        }
    }

    fn authenticate(&mut self, username: Option<&str>, password: Option<&[u8]>) -> Verdict {
        self.current = None;
        if self.shared.is_none() && self.refresh_shared().is_err() {
            return Verdict::Unavailable;
        }
        let Some(name) = username else {
            return if self.allow_anonymous {
                Verdict::Allowed
            } else {
                Verdict::NotAuthorized
            };
        };
        let Some(password) = password else {
            return Verdict::BadPassword;
        };
        match self.login(name, password) {
            Ok(Ok(user)) => {
                self.current = Some(user);
                Verdict::Allowed
            }
            Ok(Err(refusal)) => refusal,
            Err(FetchError::Unavailable) => Verdict::Unavailable,
            Err(FetchError::Data(message)) => {
                warn!(user = %name, error = %message, "login refused: bad user data in Redis");
                Verdict::NotAuthorized
            }
        }
    }

    fn session_acl(&mut self, username: Option<&str>, client_id: &str) -> Option<SessionAcl> {
        match (username, &self.current) {
            (Some(name), Some(user)) if user.name == name => Some(user.session_acl(client_id)),
            (None, _) => {
                let shared = self.shared.as_ref()?;
                Some(shared.acl.compile(None, client_id, &[], &[]))
            }
            // Not the user just authenticated: nothing is known, so nothing is allowed.
            (Some(_), _) => Some(SessionAcl::deny_all()),
        }
    }

    fn auto_subscribe(&mut self, username: Option<&str>, client_id: &str) -> Vec<(String, QoS)> {
        match (username, self.current.take()) {
            (Some(name), Some(user)) if user.name == name => user.auto_subscribe(client_id),
            (None, _) => self.shared.as_ref().map_or_else(Vec::new, |shared| {
                shared.auto_subscribe.expand(None, client_id, &[], &[])
            }),
            (Some(_), _) => Vec::new(),
        }
    }

    fn reload(&mut self) -> anyhow::Result<()> {
        match self.read_shared() {
            Ok(shared) => {
                self.shared = Some(shared);
                Ok(())
            }
            Err(FetchError::Unavailable) => Err(anyhow!("Redis is unreachable")),
            Err(FetchError::Data(message)) => Err(anyhow!(message)),
        }
    }

    fn poll(&mut self) -> Option<Refresh> {
        self.link.poll_reconnect(Instant::now());
        let mut everything = self.overflow.swap(false, Ordering::AcqRel);
        let mut users = BTreeSet::new();
        while let Ok(event) = self.events.try_recv() {
            match event {
                Event::Subscribed | Event::Everything => everything = true,
                Event::User(name) => {
                    users.insert(name);
                }
            }
        }
        if everything {
            self.defer(Refresh::All);
        } else if !users.is_empty() {
            self.defer(Refresh::Users(users.into_iter().collect()));
        }
        if !self.link.is_up() {
            return None;
        }
        let refresh = self.pending.take()?;
        if refresh == Refresh::All {
            match self.refresh_shared() {
                Ok(()) => {}
                Err(FetchError::Unavailable) => {
                    self.defer(refresh);
                    return None;
                }
                // Logged; the sessions still get their users' current data.
                Err(FetchError::Data(_)) => {}
            }
        }
        Some(refresh)
    }

    fn refreshed_acls(
        &mut self,
        refresh: &Refresh,
        clients: &[ClientInfo],
    ) -> Vec<(String, SessionAcl)> {
        if self.shared.is_none() {
            self.defer(refresh.clone());
            return Vec::new();
        }
        match self.try_refresh(refresh, clients) {
            Ok(updates) => updates,
            Err(FetchError::Unavailable) => {
                self.defer(refresh.clone());
                Vec::new()
            }
            Err(FetchError::Data(message)) => {
                warn!(error = %message, "cannot refresh sessions from Redis");
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(items: &[&str]) -> Vec<String> {
        items.iter().map(|line| (*line).to_owned()).collect()
    }

    fn shared(acl: &str, auto: &str) -> Shared {
        Shared {
            acl: parse_acl(acl, Path::new(keys::ACL)).expect("valid acl"),
            auto_subscribe: parse_auto_subscribe(auto, Path::new(keys::AUTO_SUBSCRIBE))
                .expect("valid table"),
        }
    }

    #[test]
    fn keys_follow_the_documented_layout() {
        assert_eq!(keys::user("t1.qq.com"), "shardmq:user:t1.qq.com");
        assert_eq!(keys::user_acl("a"), "shardmq:acl:user:a");
        assert_eq!(keys::follows("a"), "shardmq:follows:a");
        assert_eq!(keys::user_auto_subscribe("a"), "shardmq:autosub:user:a");
    }

    #[test]
    fn user_data_merges_shared_and_own_rules() {
        let shared = shared(
            "pattern read /%u/chat\npattern write /%F/chat\nuser t1\ntopic read news/#\n",
            "/%u/chat 1\nuser t1\nops/%u 2\n",
        );
        let stored = Stored {
            password: None,
            acl: lines(&["topic write own/%c", "pattern deny news/secret"]),
            follows: lines(&["yxq", "x"]),
            auto_subscribe: lines(&["# mine", "mine/%F 0"]),
        };
        let user = stored
            .into_user_data("t1", &shared, lines(&["yxq"]))
            .expect("valid");
        let acl = user.session_acl("phone");
        assert!(acl.can_receive("/t1/chat"));
        assert!(acl.can_publish("/yxq/chat") && !acl.can_publish("/x/chat"));
        assert!(acl.can_receive("news/a") && !acl.can_receive("news/secret"));
        assert!(acl.can_publish("own/phone"));
        assert_eq!(
            user.auto_subscribe("phone"),
            vec![
                ("/t1/chat".to_owned(), QoS::AtLeastOnce),
                ("ops/t1".to_owned(), QoS::ExactlyOnce),
                ("mine/yxq".to_owned(), QoS::AtMostOnce),
            ]
        );
    }

    #[test]
    fn per_user_lists_name_key_and_element_on_error() {
        let shared = Shared::default();
        let bad_rule = Stored {
            password: None,
            acl: lines(&["topic read a", "topic sideways b"]),
            follows: Vec::new(),
            auto_subscribe: Vec::new(),
        };
        let err = bad_rule
            .into_user_data("u", &shared, Vec::new())
            .unwrap_err();
        assert!(
            err.starts_with("Redis key shardmq:acl:user:u:2: unknown access"),
            "{err}"
        );
        let user_line = Stored {
            password: None,
            acl: Vec::new(),
            follows: Vec::new(),
            auto_subscribe: lines(&["a 0", "user other"]),
        };
        let err = user_line
            .into_user_data("u", &shared, Vec::new())
            .unwrap_err();
        assert!(
            err.contains("shardmq:autosub:user:u:2") && err.contains("`user`"),
            "{err}"
        );
        let newline = list_text(keys::ACL, &lines(&["pattern read a", "topic b\nuser x"]));
        assert!(newline.unwrap_err().contains("shardmq:acl:2"));
    }

    #[test]
    fn decode_names_the_key_of_a_wrong_type() {
        let err = decode::<Vec<String>>(Value::Int(3), "shardmq:acl:user:u").unwrap_err();
        assert!(err.contains("shardmq:acl:user:u"), "{err}");
        let missing: Option<String> = decode(Value::Nil, "k").expect("nil is none");
        assert_eq!(missing, None);
    }
}
