//! The shards' interface to the rest of the process: commands from other threads (the monitor,
//! the admin API) and the figures the shards publish for them.
//!
//! Commands travel on one bounded crossbeam channel per shard, which the shard drains every
//! [`COMMAND_POLL`]; replies go back on channels the command carries. Nothing here is on the
//! message path: it serves `$SYS` publications, client listings, lookups, kicks and purges.
//!
//! A client id is looked up (or its offline session purged) by asking every shard rather than
//! first asking the id's home shard where it is: a session lives on the shard its connection
//! arrived at, not at its home, and one round to every shard is as quick as two in a row while
//! leaving no window in which the session moves between the question and the answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crossbeam::channel::{self, Receiver, Sender};
use crossbeam::utils::CachePadded;
use futures_channel::oneshot;
use shardmq_codec::{ByteStr, Protocol, QoS, ReasonCode, SubscriptionOptions};

use crate::acl::SessionAcl;
use crate::hot_topics::TopicCounts;
use crate::session::Message;
use crate::stats::{Published, Snapshot};

/// How often a shard looks for commands.
pub const COMMAND_POLL: Duration = Duration::from_millis(20);

/// How often a shard publishes its figures.
pub const STATS_PUBLISH: Duration = Duration::from_millis(200);

/// Commands a shard queues at most; senders see the channel as full beyond this.
const COMMAND_CAPACITY: usize = 1024;

/// What the admin API shows of a client.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ClientInfo {
    /// Client id.
    pub client_id: String,
    /// User name given at CONNECT.
    pub username: Option<String>,
    /// Remote address.
    pub peer: Option<SocketAddr>,
    /// The shard holding it.
    pub shard: usize,
    /// Connected since, in seconds since the Unix epoch.
    pub connected_since: u64,
    /// Subscriptions.
    pub subscriptions: usize,
    /// Whether a connection is attached (false for an offline persistent session).
    pub connected: bool,
    /// Messages queued for it (behind the inflight window, or while offline).
    pub queued: usize,
    /// Messages sent and not yet acknowledged.
    pub inflight: usize,
    /// Messages its session dropped (slow consumer, full queue) since it began.
    pub dropped: u64,
}

/// Which clients a listing shows: all, or those matching every criterion given.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct ClientFilter {
    /// Client ids starting with this.
    pub prefix: Option<String>,
    /// Clients connected with exactly this user name.
    pub username: Option<String>,
}

impl ClientFilter {
    /// Whether a client with this id and user name is shown.
    pub fn admits(&self, client_id: &str, username: Option<&str>) -> bool {
        self.prefix
            .as_deref()
            .is_none_or(|prefix| client_id.starts_with(prefix))
            && self
                .username
                .as_deref()
                .is_none_or(|wanted| username == Some(wanted))
    }
}

/// Everything the admin API shows of one client or offline session.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ClientDetails {
    /// What a listing shows.
    pub info: ClientInfo,
    /// Protocol of its (last) connection.
    pub protocol: Protocol,
    /// Keep-alive granted to its (last) connection, in seconds (after `max_keepalive`).
    pub keep_alive: u16,
    /// Whether its (last) CONNECT asked for a clean start (3.1.1: clean session).
    pub clean_start: bool,
    /// Whether the session outlives the connection.
    pub persistent: bool,
    /// Its subscriptions, sorted by filter.
    pub subscriptions: Vec<(String, SubscriptionOptions)>,
    /// Payload bytes of the queued messages.
    pub queued_bytes: usize,
    /// For an offline session: seconds since its connection ended.
    pub offline_seconds: Option<u64>,
    /// For an offline session that expires (`persistent_client_expiration`, MQTT 3.x): seconds
    /// until it does.
    pub expires_in: Option<u64>,
}

/// What became of a request to purge a client id's offline session on one shard.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Purge {
    /// The offline session was removed, its subscriptions and queue with it.
    Purged,
    /// The client is connected (or connecting): nothing was removed.
    Connected,
    /// No session of that id here.
    Unknown,
}

/// A command for one shard.
#[derive(Debug)]
pub enum ShardCommand {
    /// Publish a message as the broker (retained `$SYS` topics, for instance).
    Publish(Arc<Message>),
    /// Disconnect the client with this id if it is on this shard; replies whether it was.
    Kick {
        /// Client id.
        client_id: String,
        /// Where the answer goes.
        reply: Sender<bool>,
    },
    /// List this shard's clients that `filter` admits.
    ListClients {
        /// Which clients.
        filter: ClientFilter,
        /// Where the answer goes.
        reply: Sender<Vec<ClientInfo>>,
    },
    /// Describe the client or offline session with this id, if it is on this shard.
    Client {
        /// Client id.
        client_id: String,
        /// Where the answer goes.
        reply: Sender<Option<ClientDetails>>,
    },
    /// Remove the offline session with this id if it is on this shard (never a connected one).
    PurgeSession {
        /// Client id.
        client_id: String,
        /// Where the answer goes.
        reply: Sender<Purge>,
    },
    /// Replace the access rules of the sessions named (rules or relations changed); their
    /// subscriptions the new rules no longer allow are removed. Replies how many sessions this
    /// shard updated.
    UpdateAcls {
        /// Client id → its new rules.
        updates: Vec<(ByteStr, Box<SessionAcl>)>,
        /// Where the count goes.
        reply: Sender<usize>,
    },
}

/// How often a shard hands over its hot-topic counts.
pub const TOPIC_COUNTS_FLUSH: Duration = Duration::from_secs(1);

/// The shard side of the command channel, the figures slot and the hot-topic outlet.
#[derive(Debug)]
pub struct ShardControl {
    /// Commands for this shard.
    pub commands: Receiver<ShardCommand>,
    /// Every shard's published figures (this shard writes its own slot).
    pub published: Arc<[CachePadded<Published>]>,
    /// Where this shard sends its hot-topic counts each interval (dropped when full).
    pub topic_counts: Sender<TopicCounts>,
}

/// A handle on running shards, usable from any thread.
#[derive(Clone, Debug)]
pub struct BrokerHandle {
    commands: Vec<Sender<ShardCommand>>,
    published: Arc<[CachePadded<Published>]>,
    topic_counts: Receiver<TopicCounts>,
}

impl BrokerHandle {
    /// A handle and, for each of `shards` shards, its side of the channels.
    pub fn new(shards: usize) -> (BrokerHandle, Vec<ShardControl>) {
        let published: Arc<[CachePadded<Published>]> = (0..shards)
            .map(|_| CachePadded::new(Published::default()))
            .collect();
        let mut commands = Vec::with_capacity(shards);
        let mut controls = Vec::with_capacity(shards);
        let (counts_tx, topic_counts) = channel::bounded(shards * 8);
        for _ in 0..shards {
            let (tx, rx) = channel::bounded(COMMAND_CAPACITY);
            commands.push(tx);
            controls.push(ShardControl {
                commands: rx,
                published: Arc::clone(&published),
                topic_counts: counts_tx.clone(),
            });
        }
        (
            BrokerHandle {
                commands,
                published,
                topic_counts,
            },
            controls,
        )
    }

    /// Hot-topic counts as the shards hand them over (one batch per shard per second). One
    /// consumer (the monitor) should drain it; unconsumed batches are dropped by the shards.
    pub fn topic_counts(&self) -> &Receiver<TopicCounts> {
        &self.topic_counts
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.commands.len()
    }

    /// Each shard's last published figures.
    pub fn shard_stats(&self) -> Vec<Snapshot> {
        self.published.iter().map(|slot| slot.load()).collect()
    }

    /// The figures summed over all shards.
    pub fn total_stats(&self) -> Snapshot {
        self.shard_stats()
            .iter()
            .fold(Snapshot::default(), |total, shard| total.sum(shard))
    }

    /// Publishes a message as the broker, through shard 0. Returns false if it cannot be queued.
    pub fn publish(&self, message: Message) -> bool {
        self.commands.first().is_some_and(|tx| {
            tx.try_send(ShardCommand::Publish(Arc::new(message)))
                .is_ok()
        })
    }

    /// Disconnects the client with this id; true if some shard had it.
    pub fn kick(&self, client_id: &str, timeout: Duration) -> bool {
        let (reply, answers) = channel::bounded(self.commands.len());
        let asked = self
            .commands
            .iter()
            .filter(|tx| {
                tx.try_send(ShardCommand::Kick {
                    client_id: client_id.to_owned(),
                    reply: reply.clone(),
                })
                .is_ok()
            })
            .count();
        (0..asked).any(|_| answers.recv_timeout(timeout).unwrap_or(false))
    }

    /// Replaces the access rules of these clients wherever they are (one batched command per
    /// shard) and waits for every shard to confirm. Returns how many sessions were updated, or
    /// `None` if a shard could not be asked or did not answer within `timeout`.
    pub fn update_acls(
        &self,
        updates: &[(String, SessionAcl)],
        timeout: Duration,
    ) -> Option<usize> {
        let (reply, answers) = channel::bounded(self.commands.len());
        for tx in &self.commands {
            let updates = updates
                .iter()
                .map(|(client_id, acl)| (ByteStr::from(client_id.as_str()), Box::new(acl.clone())))
                .collect();
            let command = ShardCommand::UpdateAcls {
                updates,
                reply: reply.clone(),
            };
            tx.send_timeout(command, timeout).ok()?;
        }
        let deadline = std::time::Instant::now() + timeout;
        let mut total = 0;
        for _ in 0..self.commands.len() {
            total += answers.recv_deadline(deadline).ok()?;
        }
        Some(total)
    }

    /// Every client on every shard, sorted by client id.
    pub fn clients(&self, timeout: Duration) -> Vec<ClientInfo> {
        self.clients_matching(&ClientFilter::default(), timeout)
    }

    /// The clients `filter` admits on every shard, sorted by client id. Each shard filters its
    /// own, so a search among many sessions moves only what it finds.
    pub fn clients_matching(&self, filter: &ClientFilter, timeout: Duration) -> Vec<ClientInfo> {
        let mut clients: Vec<ClientInfo> = self
            .ask_all(timeout, |reply| ShardCommand::ListClients {
                filter: filter.clone(),
                reply,
            })
            .into_iter()
            .flatten()
            .collect();
        clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        clients
    }

    /// The client or offline session with this id, wherever it is. While a session moves
    /// between shards two may answer for a moment; the connected one is the client.
    pub fn client(&self, client_id: &str, timeout: Duration) -> Option<ClientDetails> {
        self.ask_all(timeout, |reply| ShardCommand::Client {
            client_id: client_id.to_owned(),
            reply,
        })
        .into_iter()
        .flatten()
        .max_by_key(|details| details.info.connected)
    }

    /// Removes the offline session with this id: [`Purge::Purged`] if some shard removed it,
    /// else [`Purge::Connected`] if the client is connected, else [`Purge::Unknown`].
    pub fn purge_session(&self, client_id: &str, timeout: Duration) -> Purge {
        let answers = self.ask_all(timeout, |reply| ShardCommand::PurgeSession {
            client_id: client_id.to_owned(),
            reply,
        });
        [Purge::Purged, Purge::Connected]
            .into_iter()
            .find(|outcome| answers.contains(outcome))
            .unwrap_or(Purge::Unknown)
    }

    /// Sends every shard the command `command` makes for a reply channel, and collects the
    /// answers that come within `timeout` (a shard whose queue is full is not asked).
    fn ask_all<T>(&self, timeout: Duration, command: impl Fn(Sender<T>) -> ShardCommand) -> Vec<T> {
        let (reply, answers) = channel::bounded(self.commands.len());
        let asked = self
            .commands
            .iter()
            .filter(|tx| tx.try_send(command(reply.clone())).is_ok())
            .count();
        let deadline = std::time::Instant::now() + timeout;
        (0..asked)
            .filter_map(|_| answers.recv_deadline(deadline).ok())
            .collect()
    }
}

/// Asks the control core whether a CONNECT may proceed. The shard awaits the reply without
/// blocking: the control core completes the oneshot from its own thread, which wakes the task.
#[derive(Debug)]
pub struct ConnectRequest {
    /// Client id (after assignment).
    pub client_id: String,
    /// User name, if given.
    pub username: Option<String>,
    /// Password, if given.
    pub password: Option<Bytes>,
    /// Remote address.
    pub peer: Option<SocketAddr>,
    /// Where the decision goes.
    pub reply: oneshot::Sender<ConnectDecision>,
}

/// The control core's answer to a [`ConnectRequest`].
#[derive(Debug)]
pub struct ConnectDecision {
    /// `Success`, or the reason to refuse (bad credentials, not authorized, banned, unavailable).
    pub code: ReasonCode,
    /// The session's compiled access rules; `None` allows everything.
    pub acl: Option<Box<SessionAcl>>,
    /// Subscriptions to make before the CONNACK, each still checked against `acl`.
    pub auto_subscribe: Vec<(String, QoS)>,
}

impl ConnectDecision {
    /// A refusal.
    pub fn refuse(code: ReasonCode) -> Self {
        Self {
            code,
            acl: None,
            auto_subscribe: Vec::new(),
        }
    }
}

/// The shards' side of the control core: where CONNECTs are sent for a decision.
pub type Authenticator = Sender<ConnectRequest>;
