//! A worker runs the clients of one slice of a run (client `g` belongs to worker `g % workers`, so
//! every worker ramps at the same pace and holds a share of every group) and walks them through
//! the run's phases on the coordinator's commands:
//!
//! ```text
//! worker                                  coordinator
//!   connect + subscribe every client
//!   ── Ready ──────────────────────────▶    (all Ready)
//!                                      ◀── Go
//!   publishers publish
//!   ── Published {sent per publisher} ─▶    (all Published: sums the counts)
//!                                      ◀── Drain {sent by every publisher}
//!   wait until every expected delivery
//!   and every acknowledgement has arrived
//!   ── Drained ────────────────────────▶    (all Drained, or the drain time is up; hold)
//!                                      ◀── Finish          (Stop at any time instead)
//!   DISCONNECT, close
//!   ── Final {counters, histograms, CPU} ▶
//! ```
//!
//! The same engine runs inside the coordinator's process (over channels) or in a worker process
//! (over JSON lines on stdin/stdout, [`worker_main`]); the messages are the same [`Command`] and
//! [`Event`] values either way.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{self, Phase, Shared};
use crate::plan::{Expectations, Plan};
use crate::scenario::Scenario;
use crate::stats::{lock, Counters, Stats, Totals};
use crate::sys::{self, Epoch};

/// Everything a worker needs to know, sent as the first line to a worker process.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub(crate) struct WorkerInit {
    pub scenario: Scenario,
    pub worker: u32,
    pub workers: u32,
    /// The coordinator's epoch on the system-wide monotonic clock.
    pub epoch: u64,
    pub run_tag: u32,
    pub threads: usize,
    pub addr: SocketAddr,
}

/// Coordinator → worker.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub(crate) enum Command {
    /// Every client is connected: publish.
    Go,
    /// Every publisher is done; `sent[rank]` is what each sent.
    Drain { sent: Vec<u64> },
    /// Disconnect and report.
    Finish,
    /// Interrupted: disconnect at once and report.
    Stop,
}

/// Worker → coordinator.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum Event {
    /// Every client of this worker has connected (or failed to); times in ns since the epoch.
    Ready { started_ns: u64, done_ns: u64 },
    /// Counters so far, every [`PROGRESS_EVERY`].
    Progress { counters: Counters },
    /// Every publisher of this worker is done: (rank, messages sent).
    Published { sent: Vec<(u32, u64)> },
    /// Every delivery this worker's subscribers expect has arrived, and every QoS 1/2
    /// publication of its publishers is acknowledged.
    Drained,
    /// The worker's measurements; the last event.
    Final(Box<Final>),
    /// The worker could not run.
    Failed { error: String },
}

/// A worker's measurements.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub(crate) struct Final {
    pub totals: Totals,
    /// Deliveries this worker's subscribers should have received (unknown when the run stopped
    /// before every publisher was done).
    pub expected: Option<u64>,
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    pub max_rss_bytes: u64,
}

/// How long clients get to disconnect before their tasks are cancelled.
const FINISH_GRACE: Duration = Duration::from_secs(15);
const STOP_GRACE: Duration = Duration::from_secs(3);
/// How often a worker sends its counters: often enough that the coordinator's once-a-second
/// progress line is never more than a quarter of a second old.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// How often a draining worker compares deliveries with expectations.
const DRAIN_POLL: Duration = Duration::from_millis(2);

/// A multi-threaded runtime with `threads` workers: connection tasks move between threads, so no
/// thread idles while another has work.
pub(crate) fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
}

/// Runs one worker until it has sent [`Event::Final`] (or [`Event::Failed`]).
pub(crate) async fn run(
    init: WorkerInit,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
) {
    if let Err(err) = drive(init, &mut commands, &events).await {
        let _ = events.send(Event::Failed {
            error: format!("{err:#}"),
        });
    }
}

async fn drive(
    init: WorkerInit,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    events: &mpsc::UnboundedSender<Event>,
) -> anyhow::Result<()> {
    let scenario = &init.scenario;
    let plan = Arc::new(Plan::new(scenario)?);
    let workers = init.workers.max(1);
    let mine: Vec<u32> = (init.worker..plan.total)
        .step_by(workers as usize)
        .collect();
    let my_publishers = mine
        .iter()
        .filter(|&&global| plan.groups[plan.locate(global).0].publish.is_some())
        .count();
    let max_payload = plan
        .groups
        .iter()
        .filter_map(|group| group.publish.as_ref().map(|publish| publish.payload))
        .max()
        .unwrap_or(0);
    let (phase_tx, phase_rx) = watch::channel(Phase::Connect);
    let stats = Stats::new();
    let client_settings = &scenario.client;
    let epoch = Epoch::from_raw(init.epoch);
    let started_ns = epoch.now_ns();
    // Every worker ramps on one schedule that starts at the coordinator's epoch.
    let ramp_start = Instant::now()
        .checked_sub(Duration::from_nanos(started_ns))
        .unwrap_or_else(Instant::now);
    let shared = Arc::new(Shared {
        plan: plan.clone(),
        epoch,
        run_tag: init.run_tag,
        stats: stats.clone(),
        phase: phase_rx,
        addr: init.addr,
        src_ips: scenario.broker.src_ips,
        max_packet_size: shardmq_codec::DEFAULT_MAX_PACKET_SIZE.max(max_payload + 65_536),
        session_expiry: client_settings.session_expiry,
        inflight: scenario.publish.inflight,
        publish_duration: scenario.limits.duration.0,
        connect_timeout: client_settings.connect_timeout.0,
        ramp_start,
        connect_interval: (client_settings.connect_rate > 0.0)
            .then(|| Duration::from_secs_f64(1.0 / client_settings.connect_rate)),
        connect_slots: Semaphore::new(
            (client_settings.connect_concurrency / workers).max(1) as usize
        ),
        handshakes_left: AtomicU32::new(mine.len() as u32),
        handshakes_done: Notify::new(),
        publishers_left: AtomicU32::new(my_publishers as u32),
        publishers_done: Notify::new(),
        sent: Mutex::new(Vec::new()),
    });

    let mut expectations = Expectations::new(&plan);
    let mut expectants = vec![0u64; plan.publishers as usize];
    let mut clients = JoinSet::new();
    for &global in &mine {
        let group = &plan.groups[plan.locate(global).0];
        let expected = if group.subscribe.is_empty() {
            None
        } else {
            let expected = expectations.of(global)?;
            // A shared group's members together expect each message once: counted for its
            // first member (the run keeps a shared group in one process).
            if !group.shared || global == group.start {
                for &rank in expected.iter() {
                    expectants[rank as usize] += 1;
                }
            }
            Some(expected)
        };
        clients.spawn(client::run(shared.clone(), global, expected));
    }
    drop(expectations);

    let progress = tokio::spawn({
        let stats = stats.clone();
        let events = events.clone();
        async move {
            let mut tick = tokio::time::interval(PROGRESS_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                if events
                    .send(Event::Progress {
                        counters: stats.counters(),
                    })
                    .is_err()
                {
                    break;
                }
            }
        }
    });

    let mut expected = None;
    let ended = 'run: {
        let all_connected = || shared.handshakes_left.load(Ordering::Acquire) == 0;
        if let Some(end) = wait_until(&shared.handshakes_done, all_connected, commands).await {
            break 'run end;
        }
        // Every phase event follows fresh counters, so the coordinator's view at a phase change
        // is exact, not up to PROGRESS_EVERY old.
        let progress_now = || {
            let _ = events.send(Event::Progress {
                counters: stats.counters(),
            });
        };
        progress_now();
        let _ = events.send(Event::Ready {
            started_ns,
            done_ns: epoch.now_ns(),
        });

        loop {
            match next_command(commands).await {
                Command::Go => break,
                command => {
                    if let Some(end) = ending(&command) {
                        break 'run end;
                    }
                }
            }
        }
        phase_tx.send_replace(Phase::Publish);

        let all_published = || shared.publishers_left.load(Ordering::Acquire) == 0;
        if let Some(end) = wait_until(&shared.publishers_done, all_published, commands).await {
            break 'run end;
        }
        let sent = std::mem::take(&mut *lock(&shared.sent));
        progress_now();
        let _ = events.send(Event::Published { sent });

        let total_sent = loop {
            match next_command(commands).await {
                Command::Drain { sent } => break sent,
                command => {
                    if let Some(end) = ending(&command) {
                        break 'run end;
                    }
                }
            }
        };
        let target: u64 = expectants
            .iter()
            .zip(total_sent.iter().chain(std::iter::repeat(&0)))
            .map(|(subscribers, sent)| subscribers * sent)
            .sum();
        expected = Some(target);
        let mut poll = tokio::time::interval(DRAIN_POLL);
        loop {
            let counters = stats.counters();
            if counters.unique >= target && counters.unacked() == 0 {
                progress_now();
                let _ = events.send(Event::Drained);
                break;
            }
            tokio::select! {
                _ = poll.tick() => {}
                command = next_command(commands) => {
                    if let Some(end) = ending(&command) {
                        break 'run end;
                    }
                }
            }
        }

        loop {
            if let Some(end) = ending(&next_command(commands).await) {
                break 'run end;
            }
        }
    };

    phase_tx.send_replace(ended);
    let grace = if ended == Phase::Stop {
        STOP_GRACE
    } else {
        FINISH_GRACE
    };
    let _ = tokio::time::timeout(grace, async {
        while clients.join_next().await.is_some() {}
    })
    .await;
    clients.abort_all();
    progress.abort();

    let cpu = sys::cpu_time();
    let _ = events.send(Event::Final(Box::new(Final {
        totals: stats.merged().to_totals(),
        expected,
        cpu_user_ns: cpu.user_ns,
        cpu_system_ns: cpu.system_ns,
        max_rss_bytes: cpu.max_rss_bytes,
    })));
    Ok(())
}

/// The next command; a coordinator that went away means stop.
async fn next_command(commands: &mut mpsc::UnboundedReceiver<Command>) -> Command {
    commands.recv().await.unwrap_or(Command::Stop)
}

/// The phase a command ends the run with, if it ends it.
fn ending(command: &Command) -> Option<Phase> {
    match command {
        Command::Finish => Some(Phase::Finish),
        Command::Stop => Some(Phase::Stop),
        Command::Go | Command::Drain { .. } => None,
    }
}

/// Waits until `done()` (checked again whenever `notify` fires) or until a command ends the run.
async fn wait_until(
    notify: &Notify,
    done: impl Fn() -> bool,
    commands: &mut mpsc::UnboundedReceiver<Command>,
) -> Option<Phase> {
    loop {
        if done() {
            return None;
        }
        tokio::select! {
            _ = notify.notified() => {}
            command = next_command(commands) => {
                if let Some(end) = ending(&command) {
                    return Some(end);
                }
            }
        }
    }
}

/// The body of a worker process (the binary's hidden `worker` subcommand): a [`WorkerInit`] line
/// and then [`Command`] lines on stdin, [`Event`] lines on stdout. End of stdin means stop, so a
/// worker never outlives its coordinator for long.
pub fn worker_main() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the worker init line")?;
    let init: WorkerInit = serde_json::from_str(&line).context("parsing the worker init line")?;
    sys::raise_nofile_limit().context("raising RLIMIT_NOFILE")?;
    let runtime = runtime(init.threads)?;
    let (command_tx, command_rx) = mpsc::unbounded_channel();
    // Stdin is read on a plain thread: a blocked read must not hold a runtime thread, and the
    // thread ends with the process.
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<Command>(&line) {
                Ok(command) => {
                    if command_tx.send(command).is_err() {
                        break;
                    }
                }
                Err(err) => eprintln!("shardmq-loadtest worker: bad command {line:?}: {err}"),
            }
        }
    });
    runtime.block_on(async move {
        let (event_tx, mut event_rx) = mpsc::unbounded_channel();
        tokio::spawn(run(init, command_rx, event_tx));
        let mut stdout = std::io::stdout().lock();
        while let Some(event) = event_rx.recv().await {
            let last = matches!(event, Event::Final(_) | Event::Failed { .. });
            serde_json::to_writer(&mut stdout, &event)?;
            stdout.write_all(b"\n")?;
            stdout.flush()?;
            if last {
                break;
            }
        }
        anyhow::Ok(())
    })?;
    runtime.shutdown_background();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_json_lines() {
        let command = serde_json::to_string(&Command::Drain { sent: vec![3, 4] }).unwrap();
        assert_eq!(command, r#"{"command":"drain","sent":[3,4]}"#);
        let event = serde_json::to_string(&Event::Published {
            sent: vec![(0, 10)],
        })
        .unwrap();
        assert_eq!(event, r#"{"event":"published","sent":[[0,10]]}"#);
        let back: Event = serde_json::from_str(&event).unwrap();
        assert!(matches!(back, Event::Published { sent } if sent == [(0, 10)]));
    }
}
