//! The control core: one dedicated OS thread that makes every decision that may block or burn
//! CPU off the shards — verifying salted password hashes, compiling a session's ACL with its
//! relations expanded, expanding auto-subscriptions, and remembering failed logins.
//!
//! Shards send [`ConnectRequest`]s on a bounded crossbeam channel and await the reply without
//! blocking (the oneshot completed here wakes the shard's task). If the queue is full or the
//! thread is gone, the shard refuses with "server unavailable" rather than wait. Requests that
//! queue up together are decided as one batch, after one [`Backend::prefetch`] call that lets a
//! remote backend read all their users in one round trip.
//!
//! The rules come from a [`Backend`]: the embedded files by default ([`files::FileBackend`]).
//! A reload (SIGHUP) re-reads the backend and pushes recompiled ACLs to the connected sessions
//! through the [`BrokerHandle`], so a revoked `read` removes the now-forbidden subscriptions.
//! A backend that learns of changes by itself (Redis pub/sub, [`redis::RedisBackend`]) reports
//! them from [`Backend::poll`], which the thread calls between requests and at least every
//! [`POLL`]; the sessions concerned get recompiled rules the same way.
//!
//! What it decides with is not here: the rules and their expansion are [`crate::access`], the
//! file formats and password hashes [`crate::auth`]. Here are the thread and its [`Backend`]s
//! ([`files`], [`redis`]), the brute-force [`guard`], and the [`Plan`] that start-up makes from
//! the settings to choose a backend and start the thread.
//!
//! Before a backend sees a CONNECT, the [`LoginGuard`] refuses a banned source address, and a
//! user name longer than [`MAX_USERNAME_LEN`] is refused as bad credentials (counted against
//! the address), so neither the guard's table nor a backend query is keyed by it. Refusals of
//! failed logins are held back by the guard's penalty without blocking this thread.
//!
//! Every failed login is counted by reason in [`LoginFigures`] (atomics the admin API reads)
//! and logged with its reason, address, client id and user name, at most a few lines per
//! address a minute ([`audit`]); every ban is logged. The admin API lists and lifts bans
//! through a [`GuardHandle`]: its queries wait in a channel of their own, answered between
//! CONNECTs, so the guard stays this thread's alone and no shard ever waits on a lock.

pub mod audit;
pub mod files;
pub mod guard;
pub mod plan;
pub mod redis;

use std::net::IpAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, Sender};
use futures_channel::oneshot;
use shardmq_codec::{QoS, ReasonCode};
use shardmq_shard::acl::SessionAcl;
use shardmq_shard::control::{Authenticator, ClientInfo, ConnectDecision, ConnectRequest};
use shardmq_shard::BrokerHandle;
use tracing::{info, warn};

use self::audit::Audit;
use self::guard::{Ban, LoginGuard};
pub use self::plan::Plan;
use crate::auth::MAX_USERNAME_LEN;
use crate::status::logins::{Failure, LoginFigures, Logins};

/// Requests queued for the control core at most; beyond this CONNECTs are refused at once.
const QUEUE: usize = 4096;

/// How long a reload waits for the shards' client lists.
const LIST_TIMEOUT: Duration = Duration::from_secs(2);

/// Most CONNECTs decided together (see [`Backend::prefetch`]).
const BATCH: usize = 64;

/// Longest wait between two [`Backend::poll`] calls.
pub const POLL: Duration = Duration::from_millis(100);

/// A backend's answer about credentials.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Verdict {
    /// Known user and right password, or anonymous where that is allowed.
    Allowed,
    /// A known user with a wrong (or no) password. Answered as [`Verdict::UnknownUser`] is
    /// (CONNACK "bad user name or password", in the same time); only counted apart.
    BadPassword,
    /// No such user.
    UnknownUser,
    /// Not allowed to connect (anonymous where it is not allowed).
    NotAuthorized,
    /// The backend cannot answer now (Redis unreachable): refused as "server unavailable", not
    /// counted as a failed login.
    Unavailable,
}

/// Which connected sessions need their rules recompiled after a change in the backend.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Refresh {
    /// Every session: the shared rules changed, or changes may have been missed.
    All,
    /// The sessions of these users (and whoever else the backend knows depends on them).
    Users(Vec<String>),
}

/// Where users, rules, relations and auto-subscriptions come from.
pub trait Backend: Send {
    /// Checks credentials.
    fn authenticate(&mut self, username: Option<&str>, password: Option<&[u8]>) -> Verdict;
    /// The session ACL for this client; `None` when no ACL is configured (everything allowed).
    fn session_acl(&mut self, username: Option<&str>, client_id: &str) -> Option<SessionAcl>;
    /// Subscriptions made for this client at CONNECT.
    fn auto_subscribe(&mut self, username: Option<&str>, client_id: &str) -> Vec<(String, QoS)>;
    /// Re-reads the backend's data; on error the current data stays in force.
    fn reload(&mut self) -> anyhow::Result<()>;
    /// Called before each batch of CONNECTs is decided (one by one, right after), with the
    /// batch's user names, so that a backend can read them all at once.
    fn prefetch(&mut self, _usernames: &[&str]) {}
    /// A change the backend learnt of by itself since the last call. Called between requests,
    /// at least every [`POLL`]; also the place for housekeeping such as reconnecting.
    fn poll(&mut self) -> Option<Refresh> {
        None
    }
    /// The new rules of the sessions among `clients` that `refresh` concerns, as
    /// `(client id, rules)`. A session left out keeps the rules it has.
    fn refreshed_acls(
        &mut self,
        refresh: &Refresh,
        clients: &[ClientInfo],
    ) -> Vec<(String, SessionAcl)> {
        clients
            .iter()
            .filter(|client| match refresh {
                Refresh::All => true,
                Refresh::Users(users) => client
                    .username
                    .as_ref()
                    .is_some_and(|name| users.contains(name)),
            })
            .map(|client| {
                let acl = self
                    .session_acl(client.username.as_deref(), &client.client_id)
                    .unwrap_or_else(SessionAcl::allow_all);
                (client.client_id.clone(), acl)
            })
            .collect()
    }
}

enum Job {
    Reload,
    Attach(BrokerHandle),
}

/// What the admin API asks of the login guard.
enum GuardQuery {
    /// The bans in force.
    Bans(Sender<Vec<Ban>>),
    /// Lift the ban on an address; answers whether there was one.
    Lift(IpAddr, Sender<bool>),
}

/// Queries queued for the guard at most.
const GUARD_QUERIES: usize = 16;

/// The admin API's view of the login guard: its figures, read without asking, and its bans,
/// asked of the control core thread (see the module doc).
#[derive(Clone, Debug)]
pub struct GuardHandle {
    queries: Sender<GuardQuery>,
    figures: Arc<LoginFigures>,
}

impl GuardHandle {
    /// Failed logins and bans so far.
    pub fn logins(&self) -> Logins {
        self.figures.load()
    }

    /// The bans in force, soonest to end first; `None` if the control core did not answer
    /// within `timeout` (busy verifying passwords, say).
    pub fn bans(&self, timeout: Duration) -> Option<Vec<Ban>> {
        let (reply, answer) = channel::bounded(1);
        self.queries
            .send_timeout(GuardQuery::Bans(reply), timeout)
            .ok()?;
        answer.recv_timeout(timeout).ok()
    }

    /// Lifts the ban on `address` (and forgets its failures): whether it was banned; `None` if
    /// the control core did not answer within `timeout`.
    pub fn lift(&self, address: IpAddr, timeout: Duration) -> Option<bool> {
        let (reply, answer) = channel::bounded(1);
        self.queries
            .send_timeout(GuardQuery::Lift(address, reply), timeout)
            .ok()?;
        answer.recv_timeout(timeout).ok()
    }
}

/// A handle on the running control core; dropping it stops the thread.
pub struct ControlCore {
    jobs: Option<Sender<Job>>,
    guard: GuardHandle,
    thread: Option<JoinHandle<()>>,
}

impl ControlCore {
    /// Starts the thread (pinned to `cpu` if given) and returns the shards' authenticator.
    pub fn start(
        backend: Box<dyn Backend>,
        guard: LoginGuard,
        cpu: Option<usize>,
    ) -> std::io::Result<(ControlCore, Authenticator)> {
        let (jobs, job_rx) = channel::bounded::<Job>(16);
        let (connects, connect_rx) = channel::bounded::<ConnectRequest>(QUEUE);
        let (queries, query_rx) = channel::bounded::<GuardQuery>(GUARD_QUERIES);
        let figures = Arc::new(LoginFigures::default());
        let worker_figures = Arc::clone(&figures);
        let thread = std::thread::Builder::new()
            .name("control-core".into())
            .spawn(move || {
                if let Some(cpu) = cpu {
                    pin_to_cpu(cpu);
                }
                Worker {
                    delayed: Vec::new(),
                    backend,
                    guard,
                    broker: None,
                    refresh_on_attach: false,
                    figures: worker_figures,
                    audit: Audit::new(Instant::now()),
                    queries: query_rx,
                }
                .run(&job_rx, &connect_rx);
            })?;
        Ok((
            ControlCore {
                jobs: Some(jobs),
                guard: GuardHandle { queries, figures },
                thread: Some(thread),
            },
            connects,
        ))
    }

    /// The admin API's view of the login guard.
    pub fn guard(&self) -> GuardHandle {
        self.guard.clone()
    }

    /// Gives the control core the broker it pushes ACL updates to.
    pub fn attach(&self, broker: BrokerHandle) {
        self.send(Job::Attach(broker));
    }

    /// Re-reads the backend and refreshes connected sessions' ACLs.
    pub fn reload(&self) {
        self.send(Job::Reload);
    }

    fn send(&self, job: Job) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(job);
        }
    }
}

impl Drop for ControlCore {
    fn drop(&mut self) {
        // Closing the job channel ends the thread's loop.
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Worker {
    backend: Box<dyn Backend>,
    guard: LoginGuard,
    broker: Option<BrokerHandle>,
    /// Rules changed before the broker was attached: applied to every session once it is (shards
    /// serve clients before the control core learns their handle).
    refresh_on_attach: bool,
    /// Refusals held back by the brute-force penalty: when, to whom, what.
    delayed: Vec<(Instant, oneshot::Sender<ConnectDecision>, ConnectDecision)>,
    figures: Arc<LoginFigures>,
    audit: Audit,
    /// The admin API's questions about bans. [`ControlCore`] holds a sender for as long as
    /// the thread should run, so this never disconnects before `jobs` does.
    queries: Receiver<GuardQuery>,
}

impl Worker {
    fn run(&mut self, jobs: &Receiver<Job>, connects: &Receiver<ConnectRequest>) {
        let queries = self.queries.clone();
        loop {
            let wait = self.send_due().map_or(POLL, |next| next.min(POLL));
            channel::select! {
                recv(connects) -> request => match request {
                    Ok(request) => self.handle_connects(request, connects),
                    Err(_) => return,
                },
                recv(jobs) -> job => match job {
                    Ok(Job::Attach(broker)) => {
                        self.broker = Some(broker);
                        if std::mem::take(&mut self.refresh_on_attach) {
                            self.refresh_sessions(&Refresh::All);
                        }
                    }
                    Ok(Job::Reload) => self.handle_reload(),
                    Err(_) => return,
                },
                recv(queries) -> query => match query {
                    Ok(query) => self.handle_query(query),
                    Err(_) => return,
                },
                default(wait) => {}
            }
            if let Some(refresh) = self.backend.poll() {
                self.handle_refresh(&refresh);
            }
            self.housekeeping(Instant::now());
        }
    }

    /// Publishes the ban figures and, at the end of each log window, what it did not log.
    fn housekeeping(&mut self, now: Instant) {
        self.publish_bans(now);
        let suppressed = self.audit.roll(now);
        for (source, count) in suppressed.sources {
            info!(
                address = %shown(source),
                suppressed = count,
                "failed logins from this address not logged (rate limit)"
            );
        }
        if suppressed.unfollowed > 0 {
            info!(
                suppressed = suppressed.unfollowed,
                "failed logins from further addresses not logged (rate limit)"
            );
        }
    }

    fn publish_bans(&mut self, now: Instant) {
        let active = self.guard.active_bans(now) as u64;
        self.figures.set_bans(self.guard.bans, active);
    }

    fn handle_query(&mut self, query: GuardQuery) {
        let now = Instant::now();
        match query {
            GuardQuery::Bans(reply) => {
                let _ = reply.try_send(self.guard.bans(now));
            }
            GuardQuery::Lift(address, reply) => {
                let lifted = self.guard.lift(address, now);
                if lifted {
                    info!(address = %address, "ban lifted through the admin API");
                }
                self.publish_bans(now);
                let _ = reply.try_send(lifted);
            }
        }
    }

    /// Decides `first` and the requests queued behind it (up to [`BATCH`]) as one batch.
    fn handle_connects(&mut self, first: ConnectRequest, queue: &Receiver<ConnectRequest>) {
        let mut batch = Vec::with_capacity(1 + queue.len().min(BATCH - 1));
        batch.push(first);
        batch.extend(queue.try_iter().take(BATCH - 1));
        let usernames: Vec<&str> = batch
            .iter()
            .filter_map(|request| request.username.as_deref())
            .filter(|name| name.len() <= MAX_USERNAME_LEN)
            .collect();
        self.backend.prefetch(&usernames);
        for request in batch {
            self.handle_connect(request);
            // A batch can take a while to verify: the admin API is answered in between.
            while let Ok(query) = self.queries.try_recv() {
                self.handle_query(query);
            }
        }
    }

    fn handle_connect(&mut self, request: ConnectRequest) {
        let now = Instant::now();
        let (decision, failure) = self.decide(&request, now);
        let delay = match failure {
            Some(failure) => self.failed(&request, failure, now),
            None => Duration::ZERO,
        };
        if delay.is_zero() {
            // The shard may have given up waiting; nothing to do then.
            let _ = request.reply.send(decision);
        } else {
            // Repeated failures are answered late (without blocking this thread) before they
            // are banned outright.
            self.delayed
                .push((Instant::now() + delay, request.reply, decision));
        }
    }

    /// Sends the delayed refusals that are due; returns how long until the next one.
    fn send_due(&mut self) -> Option<Duration> {
        let now = Instant::now();
        let mut index = 0;
        while index < self.delayed.len() {
            if self.delayed[index].0 <= now {
                let (_, reply, decision) = self.delayed.swap_remove(index);
                let _ = reply.send(decision);
            } else {
                index += 1;
            }
        }
        self.delayed
            .iter()
            .map(|(due, _, _)| due.saturating_duration_since(now))
            .min()
    }

    /// A failed login: counted, logged (within the rate limit), and, unless its address is
    /// banned already, counted by the guard, which may ban the address for it. Returns how long
    /// to hold the refusal back.
    fn failed(&mut self, request: &ConnectRequest, failure: Failure, now: Instant) -> Duration {
        let address = request.peer.map(|peer| peer.ip());
        let username = request.username.as_deref();
        self.figures.failed(failure);
        if self.audit.failure(address) == audit::Verdict::Log {
            info!(
                reason = failure.name(),
                address = %shown(address),
                client_id = %request.client_id,
                username = ?username,
                "login failed"
            );
        }
        if failure == Failure::Banned {
            return Duration::ZERO;
        }
        if let Some(ban) = self.guard.record_failure(address, username, now) {
            warn!(
                reason = failure.name(),
                address = %shown(address),
                failures = ban.failures,
                seconds = ban.until.saturating_duration_since(now).as_secs(),
                client_id = %request.client_id,
                username = ?username,
                "address banned after failed logins"
            );
            self.publish_bans(now);
        }
        self.guard.penalty(address, username)
    }

    /// The decision on a CONNECT, and why it failed if it is a failed login (a backend that
    /// cannot answer refuses without a failure).
    fn decide(
        &mut self,
        request: &ConnectRequest,
        now: Instant,
    ) -> (ConnectDecision, Option<Failure>) {
        let address: Option<IpAddr> = request.peer.map(|peer| peer.ip());
        let username = request.username.as_deref();
        let failure = if self.guard.is_banned(address, now) {
            Some(Failure::Banned)
        } else if username.is_some_and(|name| name.len() > MAX_USERNAME_LEN) {
            // Never looked up (see MAX_USERNAME_LEN): no user has such a name, and the guard
            // counts the failure against the address only.
            Some(Failure::UnknownUser)
        } else {
            match self
                .backend
                .authenticate(username, request.password.as_deref())
            {
                Verdict::Allowed => {
                    self.guard.record_success(username);
                    None
                }
                Verdict::BadPassword => Some(Failure::BadPassword),
                Verdict::UnknownUser => Some(Failure::UnknownUser),
                Verdict::NotAuthorized => Some(Failure::NotAuthorized),
                Verdict::Unavailable => {
                    return (ConnectDecision::refuse(ReasonCode::ServerUnavailable), None)
                }
            }
        };
        if let Some(failure) = failure {
            let code = match failure {
                Failure::BadPassword | Failure::UnknownUser => ReasonCode::BadUserNameOrPassword,
                Failure::NotAuthorized => ReasonCode::NotAuthorized,
                Failure::Banned => ReasonCode::Banned,
            };
            return (ConnectDecision::refuse(code), Some(failure));
        }
        let acl = self
            .backend
            .session_acl(username, &request.client_id)
            .map(Box::new);
        let auto_subscribe = self.backend.auto_subscribe(username, &request.client_id);
        let decision = ConnectDecision {
            code: ReasonCode::Success,
            acl,
            auto_subscribe,
        };
        (decision, None)
    }

    fn handle_reload(&mut self) {
        if let Err(err) = self.backend.reload() {
            warn!(error = %format!("{err:#}"), "reload failed; the previous rules stay in force");
            return;
        }
        self.refresh_sessions(&Refresh::All);
    }

    fn handle_refresh(&mut self, refresh: &Refresh) {
        self.refresh_sessions(refresh);
    }

    /// Pushes recompiled rules to the sessions `refresh` concerns, in one batch per shard, and
    /// logs "access rules reloaded" once every shard confirmed it applied them.
    fn refresh_sessions(&mut self, refresh: &Refresh) {
        let Some(broker) = &self.broker else {
            self.refresh_on_attach = true;
            return;
        };
        let clients = broker.clients(LIST_TIMEOUT);
        let updates = self.backend.refreshed_acls(refresh, &clients);
        match broker.update_acls(&updates, LIST_TIMEOUT) {
            Some(sessions) => info!(sessions, ?refresh, "access rules reloaded"),
            None => warn!(
                sessions = updates.len(),
                ?refresh,
                "access rules sent, but not every shard confirmed applying them"
            ),
        }
    }
}

/// An address as the login log shows it (`unknown` when the peer's address was not known).
fn shown(address: Option<IpAddr>) -> String {
    address.map_or_else(|| "unknown".to_owned(), |address| address.to_string())
}

/// Pins the calling thread to `cpu`. The setting was checked at start-up against the CPUs this
/// process may use ([`usable_cpus`]); should that change meanwhile, the thread runs unpinned
/// with a warning rather than not at all.
fn pin_to_cpu(cpu: usize) {
    if cpu >= CPU_SET_SIZE {
        warn!(cpu, "could not pin the control core: no such CPU");
        return;
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes within it, as `cpu` is
    // below its size (checked above).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            warn!(cpu, "could not pin the control core");
        }
    }
}

/// CPUs a `cpu_set_t` can name.
const CPU_SET_SIZE: usize = 8 * std::mem::size_of::<libc::cpu_set_t>();

/// The CPUs the calling thread may run on (its affinity mask: the online CPUs, less any that
/// `taskset`, cgroups or the like exclude), in ascending order; `None` if the system will not
/// say.
pub fn usable_cpus() -> Option<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set, filled in by sched_getaffinity within
    // its size; CPU_ISSET reads indexes below that size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        Some(
            (0..CPU_SET_SIZE)
                .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_cpus_are_the_ones_this_thread_may_run_on() {
        let cpus = usable_cpus().expect("sched_getaffinity");
        let available = std::thread::available_parallelism().map_or(1, usize::from);
        // The standard library counts the same mask (less any cgroup quota).
        assert!(!cpus.is_empty() && available <= cpus.len());
        assert!(cpus.windows(2).all(|pair| pair[0] < pair[1]), "ascending");
        assert!(cpus.iter().all(|&cpu| cpu < CPU_SET_SIZE));
    }

    #[test]
    fn pinning_to_a_cpu_beyond_the_set_warns_instead_of_panicking() {
        std::thread::spawn(|| pin_to_cpu(CPU_SET_SIZE + 7))
            .join()
            .expect("no panic");
    }
}
