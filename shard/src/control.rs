//! The shards' interface to the rest of the process: commands from other threads (the monitor,
//! the admin API) and the figures the shards publish for them.
//!
//! Commands travel on one bounded crossbeam channel per shard, which the shard drains every
//! [`COMMAND_POLL`]; replies go back on channels the command carries. Nothing here is on the
//! message path: it serves `$SYS` publications, client listings and kicks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crossbeam::channel::{self, Receiver, Sender};
use crossbeam::utils::CachePadded;
use futures_channel::oneshot;
use shardmq_codec::{ByteStr, QoS, ReasonCode};

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
    /// List this shard's clients.
    ListClients {
        /// Where the answer goes.
        reply: Sender<Vec<ClientInfo>>,
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
        let (reply, answers) = channel::bounded(self.commands.len());
        let asked = self
            .commands
            .iter()
            .filter(|tx| {
                tx.try_send(ShardCommand::ListClients {
                    reply: reply.clone(),
                })
                .is_ok()
            })
            .count();
        let mut clients: Vec<ClientInfo> = (0..asked)
            .filter_map(|_| answers.recv_timeout(timeout).ok())
            .flatten()
            .collect();
        clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        clients
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
