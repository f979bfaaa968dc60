//! The coordinator: decides how many processes a run needs, starts the workers — inside its own
//! process when one process can hold every connection, otherwise as re-executed copies of the
//! binary — walks them through the phases together (see [`crate::worker`]), prints progress,
//! enforces the time limits and Ctrl-C, samples the broker's `/proc` entries and assembles the
//! [`Report`].
//!
//! Workers are needed because `RLIMIT_NOFILE` caps descriptors per process and the hard limit may
//! be low (20,000 on some CI hosts) and impossible to raise. Each process raises its soft limit to
//! the hard one and keeps [`FD_RESERVE`] descriptors for itself; the clients are dealt round-robin
//! over `ceil(connections / (hard limit - reserve))` workers. All processes measure time from the
//! coordinator's epoch on `CLOCK_MONOTONIC`, which is system-wide, so a message published in one
//! worker and received in another has a meaningful latency.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use crate::plan::Plan;
use crate::progress::{self, Shape};
use crate::report::series::{self, Sample};
use crate::report::{
    BrokerUsage, Connections, Latency, LoadtestUsage, Messages, Outcome, Phase, Report, Setup,
    SCHEMA_VERSION,
};
use crate::scenario::{Broker, Scenario};
use crate::stats::{Counters, Shard};
use crate::sys::{self, CpuTime, Epoch};
use crate::worker::{self, Command, Event, Final, WorkerInit};

/// Descriptors each process keeps for itself (runtime, pipes, report files).
const FD_RESERVE: u64 = 64;
/// How long workers get to disconnect and report after Finish.
const FINISH_WAIT: Duration = Duration::from_secs(30);
/// How long workers get to report after Stop.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// How long the probe connection waits for the broker to close its side.
const PROBE_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// How to run a scenario, beyond the scenario itself.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Print a progress line on stderr once a second.
    pub progress: bool,
    /// Stop cleanly on Ctrl-C and still report; a second Ctrl-C stops waiting for workers.
    pub ctrl_c: bool,
    /// The `shardmq-loadtest` binary, re-executed as worker processes when one process may not
    /// hold every connection. Without it such a run is refused.
    pub worker_exe: Option<PathBuf>,
}

/// Runs `scenario` against its broker and returns the report.
///
/// Blocks the calling thread (it builds its own tokio runtime): call it from a plain thread or
/// a `#[test]`, not from inside an async runtime.
pub fn run(scenario: &Scenario, options: &RunOptions) -> anyhow::Result<Report> {
    let plan = Plan::new(scenario)?;
    let addr = resolve(&scenario.broker)?;
    probe(addr, scenario.client.connect_timeout.0)?;
    let descriptors = sys::raise_nofile_limit().context("raising RLIMIT_NOFILE")?;
    let per_process = descriptors.saturating_sub(FD_RESERVE).max(1);
    let workers = match scenario.runner.workers {
        0 => u64::from(plan.total).div_ceil(per_process) as u32,
        n => n,
    }
    .max(1);
    ensure!(
        workers == 1 || plan.groups.iter().all(|group| !group.shared),
        "a shared subscription group is measured in one process: {} connections need {workers}",
        plan.total
    );
    ensure!(
        workers == 1 || options.worker_exe.is_some(),
        "{} connections need {workers} processes (RLIMIT_NOFILE allows {descriptors} descriptors \
         per process): run the shardmq-loadtest binary, or set RunOptions::worker_exe",
        plan.total
    );
    let threads = match scenario.runner.threads {
        0 => (sys::cores() / workers as usize).max(1),
        n => n,
    };
    let runtime = worker::runtime(if workers == 1 { threads } else { 1 })?;
    let report = runtime.block_on(coordinate(scenario, &plan, addr, workers, threads, options));
    runtime.shutdown_timeout(Duration::from_secs(1));
    report
}

fn resolve(broker: &Broker) -> anyhow::Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = (broker.host.as_str(), broker.port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {}:{}", broker.host, broker.port))?
        .collect();
    let addr = if broker.src_ips > 0 {
        addrs.iter().find(|addr| addr.is_ipv4())
    } else {
        addrs.first()
    }
    .copied()
    .with_context(|| format!("{} has no usable address", broker.host))?;
    ensure!(
        broker.src_ips == 0 || matches!(addr.ip(), IpAddr::V4(ip) if ip.is_loopback()),
        "src_ips spreads 127.0.0.x source addresses, so the broker must be on an IPv4 loopback address"
    );
    Ok(addr)
}

/// Opens one TCP connection to the broker and closes it at once, before any client starts. With
/// no broker listening, the run fails in milliseconds with the address in the message, instead of
/// reporting every client as failed after a ramp that may take minutes at a low connect rate.
///
/// The probe sends FIN and waits (at most [`PROBE_CLOSE_WAIT`]) for the broker to close its side:
/// until then the probe may hold one of the broker's connection slots, and a broker with a
/// connection limit would turn one client away.
fn probe(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("no broker reachable at {addr} (is it running?)"))?;
    let deadline = std::time::Instant::now() + PROBE_CLOSE_WAIT;
    if stream.shutdown(std::net::Shutdown::Write).is_ok()
        && stream.set_read_timeout(Some(PROBE_CLOSE_WAIT)).is_ok()
    {
        let mut buf = [0u8; 256];
        while std::time::Instant::now() < deadline {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
    Ok(())
}

/// One worker: in this process or a child process.
struct Link {
    commands: mpsc::UnboundedSender<Command>,
    child: Option<Child>,
}

type Events = mpsc::UnboundedSender<(usize, Option<Event>)>;

impl Link {
    fn in_process(init: WorkerInit, index: usize, events: Events) -> Self {
        let (command_tx, command_rx) = mpsc::unbounded_channel();
        let (event_tx, mut event_rx) = mpsc::unbounded_channel();
        tokio::spawn(worker::run(init, command_rx, event_tx));
        tokio::spawn(async move {
            while let Some(event) = event_rx.recv().await {
                if events.send((index, Some(event))).is_err() {
                    return;
                }
            }
            let _ = events.send((index, None));
        });
        Self {
            commands: command_tx,
            child: None,
        }
    }

    fn process(
        exe: &Path,
        init: &WorkerInit,
        index: usize,
        events: Events,
    ) -> anyhow::Result<Self> {
        let mut child = tokio::process::Command::new(exe)
            .arg("worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            // Ctrl-C at the terminal reaches the coordinator only, which stops workers in order.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting worker {}", exe.display()))?;
        let mut stdin = child.stdin.take().context("worker stdin")?;
        let stdout = child.stdout.take().context("worker stdout")?;
        let mut first = serde_json::to_vec(init)?;
        first.push(b'\n');
        let (command_tx, mut command_rx) = mpsc::unbounded_channel::<Command>();
        tokio::spawn(async move {
            if stdin.write_all(&first).await.is_err() {
                return;
            }
            while let Some(command) = command_rx.recv().await {
                let Ok(mut line) = serde_json::to_vec(&command) else {
                    continue;
                };
                line.push(b'\n');
                if stdin.write_all(&line).await.is_err() {
                    return;
                }
            }
        });
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Event>(&line) {
                    Ok(event) => {
                        if events.send((index, Some(event))).is_err() {
                            return;
                        }
                    }
                    Err(_) => eprintln!("worker {index}: {line}"),
                }
            }
            let _ = events.send((index, None));
        });
        Ok(Self {
            commands: command_tx,
            child: Some(child),
        })
    }
}

/// The broker's `/proc` figures at one moment.
#[derive(Clone, Copy, Debug, Default)]
struct BrokerSample {
    rss: Option<u64>,
    cpu_ns: Option<u64>,
}

fn sample_broker(pid: Option<u32>) -> Option<BrokerSample> {
    pid.map(|pid| BrokerSample {
        rss: sys::process_rss_bytes(pid).ok(),
        cpu_ns: sys::process_cpu_ns(pid).ok(),
    })
}

struct Coordinator<'a> {
    scenario: &'a Scenario,
    plan: &'a Plan,
    links: Vec<Link>,
    /// Where the run is; never [`Phase::Subscribing`], which only the counters tell apart.
    state: Phase,
    phase_deadline: Option<Instant>,
    /// Set when the run is stopped, or when the drain time runs out.
    outcome: Option<Outcome>,
    errors: Vec<String>,
    ready: usize,
    published: usize,
    drained: usize,
    sent: Vec<u64>,
    shape: Shape,
    /// Each worker's latest counters.
    progress: Vec<Counters>,
    /// The counters and time of the last progress line.
    last_progress: (Counters, Instant),
    finals: Vec<Option<Box<Final>>>,
    gone: Vec<bool>,
    start: Instant,
    /// Earliest start and latest end of the workers' connect phases, ns since the epoch.
    ramp: (u64, u64),
    ramp_s: Option<f64>,
    broker_connected: Option<BrokerSample>,
    broker_end: Option<BrokerSample>,
    /// The run over time, for the report's series.
    series: Vec<Sample>,
}

async fn coordinate(
    scenario: &Scenario,
    plan: &Plan,
    addr: SocketAddr,
    workers: u32,
    threads: usize,
    options: &RunOptions,
) -> anyhow::Result<Report> {
    let epoch = Epoch::now();
    let run_tag = (epoch.raw() ^ (epoch.raw() >> 32) ^ u64::from(std::process::id()) << 16) as u32;
    let started_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    let broker_before = sample_broker(scenario.broker.pid);
    let cpu_before = sys::cpu_time();
    let start = Instant::now();

    let (event_tx, mut events) = mpsc::unbounded_channel();
    let mut links = Vec::new();
    for worker in 0..workers {
        let init = WorkerInit {
            scenario: scenario.clone(),
            worker,
            workers,
            epoch: epoch.raw(),
            run_tag,
            threads,
            addr,
        };
        let index = worker as usize;
        links.push(match &options.worker_exe {
            Some(exe) if workers > 1 => Link::process(exe, &init, index, event_tx.clone())?,
            _ => Link::in_process(init, index, event_tx.clone()),
        });
    }
    drop(event_tx);

    let count = workers as usize;
    let mut run = Coordinator {
        scenario,
        plan,
        links,
        state: Phase::Connecting,
        phase_deadline: None,
        outcome: None,
        errors: Vec::new(),
        ready: 0,
        published: 0,
        drained: 0,
        sent: vec![0; plan.publishers as usize],
        shape: Shape::of(plan),
        progress: vec![Counters::default(); count],
        last_progress: (Counters::default(), start),
        finals: vec![None; count],
        gone: vec![false; count],
        start,
        ramp: (u64::MAX, 0),
        ramp_s: None,
        broker_connected: None,
        broker_end: None,
        series: vec![Sample {
            t_s: 0.0,
            phase: Phase::Connecting,
            counters: Counters::default(),
            broker_rss: broker_before.and_then(|sample| sample.rss),
            broker_cpu_ns: broker_before.and_then(|sample| sample.cpu_ns),
        }],
    };
    let deadline = start + scenario.limits.timeout.0;
    let mut interrupts = if options.ctrl_c {
        Some(tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::interrupt(),
        )?)
    } else {
        None
    };
    let mut interrupted_at = None;
    let mut tick = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    while !(0..count).all(|w| run.finals[w].is_some() || run.gone[w]) {
        tokio::select! {
            event = events.recv() => match event {
                Some((worker, event)) => run.handle(worker, event),
                None => break,
            },
            _ = sleep_until(deadline), if run.state < Phase::Finishing => run.stop(Outcome::Timeout),
            _ = sleep_until_some(run.phase_deadline) => {
                match run.state {
                    Phase::Draining => {
                        run.outcome = Some(Outcome::DrainTimeout);
                        run.hold();
                    }
                    Phase::Holding => run.finish(),
                    Phase::Finishing => break,
                    Phase::Connecting | Phase::Subscribing | Phase::Publishing => {
                        run.phase_deadline = None;
                    }
                }
            }
            _ = interrupted(&mut interrupts) => {
                // One Ctrl-C can arrive twice (to the process and to its process group): only a
                // second one a moment later means "stop waiting".
                match interrupted_at {
                    None => {
                        interrupted_at = Some(Instant::now());
                        run.stop(Outcome::Interrupted);
                    }
                    Some(first) if first.elapsed() > Duration::from_secs(1) => break,
                    Some(_) => {}
                }
            }
            _ = tick.tick() => {
                run.record();
                if options.progress {
                    run.print_progress();
                }
            }
        }
    }
    for (worker, report) in run.finals.iter().enumerate() {
        if report.is_none() && !run.gone[worker] {
            run.errors.push(format!(
                "worker {worker} did not report: its clients are not counted"
            ));
        }
    }
    let cpu_after = sys::cpu_time();
    let wall_s = start.elapsed().as_secs_f64();
    for link in &mut run.links {
        if let Some(child) = &mut link.child {
            if tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
    run.report(Samples {
        started_unix_ms,
        threads,
        broker_before,
        broker_after: sample_broker(scenario.broker.pid),
        cpu_before,
        cpu_after,
        wall_s,
    })
}

/// What the coordinator measured around the run, for the report.
struct Samples {
    started_unix_ms: u64,
    threads: usize,
    broker_before: Option<BrokerSample>,
    broker_after: Option<BrokerSample>,
    cpu_before: CpuTime,
    cpu_after: CpuTime,
    wall_s: f64,
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn interrupted(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

impl Coordinator<'_> {
    fn broadcast(&self, command: &Command) {
        for link in &self.links {
            let _ = link.commands.send(command.clone());
        }
    }

    fn handle(&mut self, worker: usize, event: Option<Event>) {
        let workers = self.links.len();
        let Some(event) = event else {
            self.gone[worker] = true;
            if self.finals[worker].is_none() {
                self.errors
                    .push(format!("worker {worker} ended without reporting"));
                self.stop(Outcome::Failed);
            }
            return;
        };
        match event {
            Event::Progress { counters } => self.progress[worker] = counters,
            Event::Ready {
                started_ns,
                done_ns,
            } => {
                self.ready += 1;
                self.ramp.0 = self.ramp.0.min(started_ns);
                self.ramp.1 = self.ramp.1.max(done_ns);
                if self.ready == workers && self.state == Phase::Connecting {
                    self.ramp_s = Some(self.ramp.1.saturating_sub(self.ramp.0) as f64 / 1e9);
                    self.broker_connected = sample_broker(self.scenario.broker.pid);
                    self.state = Phase::Publishing;
                    self.record();
                    self.broadcast(&Command::Go);
                }
            }
            Event::Published { sent } => {
                for (rank, count) in sent {
                    if let Some(total) = self.sent.get_mut(rank as usize) {
                        *total += count;
                    }
                }
                self.published += 1;
                if self.published == workers && self.state == Phase::Publishing {
                    self.state = Phase::Draining;
                    self.record();
                    self.phase_deadline = Some(Instant::now() + self.scenario.limits.drain.0);
                    self.broadcast(&Command::Drain {
                        sent: self.sent.clone(),
                    });
                }
            }
            Event::Drained => {
                self.drained += 1;
                if self.drained == workers && self.state == Phase::Draining {
                    self.hold();
                }
            }
            Event::Final(report) => self.finals[worker] = Some(report),
            Event::Failed { error } => {
                self.errors.push(format!("worker {worker}: {error}"));
                self.stop(Outcome::Failed);
            }
        }
    }

    /// Every delivery is in (or the drain time is up): keep the connections for the hold time.
    fn hold(&mut self) {
        self.state = Phase::Holding;
        self.record();
        self.phase_deadline = Some(Instant::now() + self.scenario.limits.hold.0);
    }

    fn finish(&mut self) {
        self.state = Phase::Finishing;
        self.broker_end = self.record();
        self.phase_deadline = Some(Instant::now() + FINISH_WAIT);
        self.broadcast(&Command::Finish);
    }

    fn stop(&mut self, outcome: Outcome) {
        if self.state == Phase::Finishing {
            return;
        }
        self.outcome = Some(outcome);
        self.state = Phase::Finishing;
        self.broker_end = self.record();
        self.phase_deadline = Some(Instant::now() + STOP_WAIT);
        self.broadcast(&Command::Stop);
    }

    /// The workers' latest counters, summed.
    fn counters(&self) -> Counters {
        let mut sum = Counters::default();
        for counters in &self.progress {
            sum.add(counters);
        }
        sum
    }

    /// Adds a point to the series (now, in the current phase) and returns the broker's figures
    /// read for it.
    fn record(&mut self) -> Option<BrokerSample> {
        let counters = self.counters();
        let broker = sample_broker(self.scenario.broker.pid);
        self.series.push(Sample {
            t_s: self.start.elapsed().as_secs_f64(),
            phase: progress::phase(self.state, &self.shape, &counters),
            counters,
            broker_rss: broker.and_then(|sample| sample.rss),
            broker_cpu_ns: broker.and_then(|sample| sample.cpu_ns),
        });
        broker
    }

    fn print_progress(&mut self) {
        let now = self.counters();
        let (before, before_at) = self.last_progress;
        let at = Instant::now();
        let phase = progress::phase(self.state, &self.shape, &now);
        eprintln!(
            "{}",
            progress::line(
                at - self.start,
                phase,
                &self.shape,
                &now,
                &before,
                at - before_at
            )
        );
        self.last_progress = (now, at);
    }

    fn report(mut self, samples: Samples) -> anyhow::Result<Report> {
        let Samples {
            started_unix_ms,
            threads,
            broker_before,
            broker_after,
            cpu_before,
            cpu_after,
            wall_s,
        } = samples;
        let scenario = self.scenario;
        let workers = self.links.len();
        let in_process = self.links.iter().all(|link| link.child.is_none());
        let mut total = Shard::new();
        let mut expected = Some(0u64);
        let mut user_ns = cpu_after.user_ns.saturating_sub(cpu_before.user_ns);
        let mut system_ns = cpu_after.system_ns.saturating_sub(cpu_before.system_ns);
        let mut max_rss_bytes = cpu_after.max_rss_bytes;
        for worker in &self.finals {
            let Some(worker) = worker else {
                expected = None;
                continue;
            };
            total.add_totals(&worker.totals)?;
            expected = expected.zip(worker.expected).map(|(sum, more)| sum + more);
            if !in_process {
                user_ns += worker.cpu_user_ns;
                system_ns += worker.cpu_system_ns;
                max_rss_bytes = max_rss_bytes.max(worker.max_rss_bytes);
            }
        }
        let counters = total.counters;
        self.series.push(Sample {
            t_s: wall_s,
            phase: Phase::Finishing,
            counters,
            broker_rss: broker_after.and_then(|sample| sample.rss),
            broker_cpu_ns: broker_after.and_then(|sample| sample.cpu_ns),
        });
        let series = series::points(&self.series);
        let drain_complete = self.drained == workers;
        let outcome = self.outcome.unwrap_or(if drain_complete {
            Outcome::Complete
        } else {
            Outcome::DrainTimeout
        });
        let span_s = |from: Option<u64>, to: Option<u64>| match (from, to) {
            (Some(from), Some(to)) if to >= from => Some((to - from) as f64 / 1e9),
            _ => None,
        };
        let per_second = |count: u64, seconds: Option<f64>| {
            seconds.filter(|&s| s > 0.0).map(|s| count as f64 / s)
        };
        let publish_s = span_s(counters.first_publish_ns, counters.last_publish_ns);
        let delivery_s = span_s(counters.first_publish_ns, counters.last_delivery_ns);

        let broker = scenario.broker.pid.map(|pid| {
            let before = broker_before.unwrap_or_default();
            let after = broker_after.unwrap_or_default();
            let end = self.broker_end.unwrap_or_default();
            let cpu_s = before
                .cpu_ns
                .zip(after.cpu_ns)
                .map(|(before, after)| after.saturating_sub(before) as f64 / 1e9);
            BrokerUsage {
                pid,
                rss_before_bytes: before.rss,
                rss_connected_bytes: self.broker_connected.and_then(|sample| sample.rss),
                rss_end_bytes: end.rss,
                rss_max_bytes: series
                    .iter()
                    .filter_map(|point| point.broker_rss_bytes)
                    .max(),
                rss_per_connection_bytes: before
                    .rss
                    .zip(end.rss)
                    .filter(|_| counters.connected > 0)
                    .map(|(before, end)| (end as f64 - before as f64) / counters.connected as f64),
                cpu_s,
                cpu_percent: cpu_s.map(|cpu| 100.0 * cpu / wall_s.max(1e-9)),
            }
        });

        let cpu_s = (user_ns + system_ns) as f64 / 1e9;
        let mut report = Report {
            schema: SCHEMA_VERSION,
            tool: format!("shardmq-loadtest {}", env!("CARGO_PKG_VERSION")),
            name: scenario.name.clone(),
            scenario: scenario.kind().into(),
            started_unix_ms,
            outcome,
            errors: self.errors,
            failures: Vec::new(),
            warnings: Vec::new(),
            setup: Setup {
                host: scenario.broker.host.clone(),
                port: scenario.broker.port,
                protocol: scenario.broker.protocol,
                qos: scenario.publish.qos,
                payload_bytes: scenario.publish.payload,
                connections: self.plan.total.into(),
                publishers: self.plan.publishers.into(),
                subscribers: self.plan.subscribers.into(),
                messages_per_publisher: scenario.publish.messages,
                publish_rate: scenario.publish.rate,
                inflight: scenario.publish.inflight,
                keepalive_s: scenario.client.keepalive,
                clean: scenario.client.clean,
                src_ips: scenario.broker.src_ips,
                connect_rate: scenario.client.connect_rate,
                workers: workers as u32,
                threads_per_worker: threads,
            },
            connections: Connections {
                attempted: counters.connected + counters.connect_failed,
                connected: counters.connected,
                failed: counters.connect_failed,
                failures: total.connect_failures.clone(),
                subscribed: counters.subscribed,
                subscribe_failed: counters.subscribe_failed,
                dropped: counters.dropped,
                drops: total.drops.clone(),
                ramp_s: self.ramp_s,
                connects_per_s: per_second(counters.connected, self.ramp_s),
                connect_latency: Latency::from_histogram(&total.connect),
                subscribe_latency: Latency::from_histogram(&total.subscribe),
            },
            messages: Messages {
                published: counters.published,
                publish_s,
                publishes_per_s: per_second(counters.published, publish_s),
                acked: counters.acked,
                rejected: counters.rejected,
                unacked: counters.unacked(),
                expected,
                received: counters.received,
                delivered: counters.unique,
                lost: expected.map(|expected| expected.saturating_sub(counters.unique)),
                duplicates: counters.duplicates,
                unexpected: counters.unexpected,
                drain_complete,
                time_to_last_delivery_ms: delivery_s.map(|s| s * 1e3),
                deliveries_per_s: per_second(counters.unique, delivery_s),
                latency: Latency::from_histogram(&total.delivery),
                ack_latency: Latency::from_histogram(&total.ack),
            },
            broker,
            loadtest: LoadtestUsage {
                wall_s,
                user_s: user_ns as f64 / 1e9,
                system_s: system_ns as f64 / 1e9,
                cpu_percent: 100.0 * cpu_s / wall_s.max(1e-9),
                cores: sys::cores(),
                processes: if in_process { 1 } else { workers as u32 + 1 },
                max_rss_bytes,
            },
            series,
        };
        report.judge();
        Ok(report)
    }
}
