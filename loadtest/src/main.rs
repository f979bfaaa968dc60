//! `shardmq-loadtest`: the command line over the library. Each scenario is a subcommand with
//! the shared flags of [`Common`]; `run FILE` reads a TOML scenario (flags override the file);
//! `compare` prints two reports side by side. The hidden `worker` subcommand is how the
//! coordinator re-executes this binary when one process may not hold every connection.
//!
//! Exit status (`report::EXIT_*`): 0 when the run completed and its figures are a measurement,
//! 1 on errors (bad scenario, no broker, files), 2 when the run ended early (interrupted, timed
//! out, deliveries missing at the end of the drain, a worker failed), 3 when clients could not
//! connect or subscribe, or nothing was delivered, however the run ended.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use mimalloc::MiMalloc;
use shardmq_loadtest::report::{compare, EXIT_ERROR};
use shardmq_loadtest::scenario::{Dur, Fanin, Fanout, Pairs, Preset, Workload};
use shardmq_loadtest::{Report, RunOptions, Scenario};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Parser)]
#[command(
    name = "shardmq-loadtest",
    version,
    about = "MQTT load generator with HdrHistogram reports"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Open N connections (at --connect-rate), hold them (--hold), close them: connect latency and,
    /// with --broker-pid, the broker's memory per connection.
    Conn {
        /// Connections.
        #[arg(short = 'n', long)]
        connections: u32,
        #[command(flatten)]
        common: Common,
    },
    /// Publishers and subscribers on one topic among N connections (the rest idle).
    Fanout {
        /// Connections in all (publishers, subscribers and idle clients).
        #[arg(short = 'n', long)]
        connections: u32,
        /// 1-to-100, 1-to-1000 or 1-to-all: one publisher and that many subscribers.
        #[arg(long, conflicts_with_all = ["subscribers", "publishers"])]
        preset: Option<Preset>,
        /// Subscribers (default: every connection that does not publish).
        #[arg(long)]
        subscribers: Option<u32>,
        /// Publishers.
        #[arg(long, default_value_t = 1)]
        publishers: u32,
        /// The topic.
        #[arg(long, default_value = "loadtest/fanout")]
        topic: String,
        #[command(flatten)]
        common: Common,
    },
    /// Many publishers on their own topics, few subscribers on a wildcard filter (or, with
    /// --shared-group, a shared subscription group: each message reaches one of them).
    Fanin {
        /// Publishers.
        #[arg(long)]
        publishers: u32,
        /// Subscribers.
        #[arg(long, default_value_t = 1)]
        subscribers: u32,
        /// Publisher topic template (%i: publisher index).
        #[arg(long, default_value = "loadtest/fanin/%i")]
        topic: String,
        /// Subscriber filter template.
        #[arg(long, default_value = "loadtest/fanin/#")]
        filter: String,
        /// The subscribers form this shared group (`$share/<GROUP>/<filter>`).
        #[arg(long, value_name = "GROUP")]
        shared_group: Option<String>,
        /// The broker's strategy for the shared group, recorded in the report (set it on the
        /// broker).
        #[arg(long, requires = "shared_group")]
        strategy: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// N publisher/subscriber pairs, each pair on its own topic.
    Pairs {
        /// Pairs (twice as many connections).
        #[arg(short = 'n', long)]
        pairs: u32,
        /// Topic template (%i: pair index).
        #[arg(long, default_value = "loadtest/pairs/%i")]
        topic: String,
        #[command(flatten)]
        common: Common,
    },
    /// Run a TOML scenario file; flags given override the file.
    Run {
        /// The scenario file.
        file: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Print two JSON reports side by side with ratios (B/A).
    Compare {
        /// The first report (A).
        a: PathBuf,
        /// The second report (B).
        b: PathBuf,
    },
    /// Runs part of a run's clients for a coordinator (stdin/stdout JSON lines).
    #[command(hide = true)]
    Worker,
}

/// Flags every scenario shares; each one given overrides the scenario's value.
#[derive(Args)]
struct Common {
    /// Run name: the report files are OUT/NAME.json, .hgrm, .html.
    #[arg(long)]
    name: Option<String>,
    /// Directory for the report files.
    #[arg(long, default_value = "loadtest-results")]
    out: PathBuf,
    /// Broker host.
    #[arg(long)]
    host: Option<String>,
    /// Broker port.
    #[arg(short, long)]
    port: Option<u16>,
    /// MQTT protocol level: 3 (3.1), 4 (3.1.1) or 5 (5.0).
    #[arg(long, value_parser = clap::value_parser!(u8).range(3..=5))]
    protocol: Option<u8>,
    /// Spread source addresses over 127.0.0.1..=127.0.0.N (needed past ~64k connections).
    #[arg(long)]
    src_ips: Option<u32>,
    /// The broker's pid: report its RSS (per connection) and CPU from /proc.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// QoS of publications and subscriptions.
    #[arg(short, long, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: Option<u8>,
    /// Payload size in bytes (at least 20, the measurement header).
    #[arg(long)]
    payload: Option<usize>,
    /// Messages per publisher (0: until --duration).
    #[arg(short, long)]
    messages: Option<u64>,
    /// Messages per second per publisher (0: as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    /// Unacknowledged QoS 1/2 publications per publisher.
    #[arg(long)]
    inflight: Option<u16>,
    /// Set RETAIN on publications.
    #[arg(long)]
    retain: bool,
    /// Keep alive in seconds (0: none).
    #[arg(long)]
    keepalive: Option<u16>,
    /// Persistent sessions (clean session / clean start off).
    #[arg(long)]
    persistent: bool,
    /// MQTT 5 session expiry interval in seconds.
    #[arg(long)]
    session_expiry: Option<u32>,
    /// Client id template (%i: index in its group, %g: global index).
    #[arg(long)]
    client_id: Option<String>,
    /// User name template (%i, %g).
    #[arg(long)]
    username: Option<String>,
    /// Password template (%i, %g).
    #[arg(long)]
    password: Option<String>,
    /// New connections per second (0: as fast as --connect-concurrency allows).
    #[arg(long)]
    connect_rate: Option<f64>,
    /// Handshakes in progress at once.
    #[arg(long)]
    connect_concurrency: Option<u32>,
    /// Limit per client for connect + CONNACK + SUBACK, e.g. 10s.
    #[arg(long)]
    connect_timeout: Option<Dur>,
    /// Longest publish phase, e.g. 30s (with --messages 0, how long to publish).
    #[arg(long)]
    duration: Option<Dur>,
    /// Longest whole run, e.g. 10m.
    #[arg(long)]
    timeout: Option<Dur>,
    /// How long to wait for deliveries after the last publication.
    #[arg(long)]
    drain: Option<Dur>,
    /// How long to keep every connection open before disconnecting.
    #[arg(long)]
    hold: Option<Dur>,
    /// Runtime threads per process (0: the CPUs, shared among workers).
    #[arg(long)]
    threads: Option<usize>,
    /// Worker processes (0: as RLIMIT_NOFILE requires).
    #[arg(long)]
    workers: Option<u32>,
    /// No progress line on stderr.
    #[arg(long, conflicts_with = "progress")]
    quiet: bool,
    /// A progress line on stderr once a second even when stderr is not a terminal.
    #[arg(long)]
    progress: bool,
}

impl Common {
    fn apply(&self, scenario: &mut Scenario) {
        fn set<T: Clone>(target: &mut T, value: &Option<T>) {
            if let Some(value) = value {
                *target = value.clone();
            }
        }
        set(&mut scenario.name, &self.name);
        let broker = &mut scenario.broker;
        set(&mut broker.host, &self.host);
        set(&mut broker.port, &self.port);
        set(&mut broker.protocol, &self.protocol);
        set(&mut broker.src_ips, &self.src_ips);
        if self.broker_pid.is_some() {
            broker.pid = self.broker_pid;
        }
        let publish = &mut scenario.publish;
        set(&mut publish.qos, &self.qos);
        set(&mut publish.payload, &self.payload);
        set(&mut publish.messages, &self.messages);
        set(&mut publish.rate, &self.rate);
        set(&mut publish.inflight, &self.inflight);
        publish.retain |= self.retain;
        let client = &mut scenario.client;
        set(&mut client.keepalive, &self.keepalive);
        client.clean &= !self.persistent;
        set(&mut client.session_expiry, &self.session_expiry);
        set(&mut client.client_id, &self.client_id);
        if self.username.is_some() {
            client.username = self.username.clone();
        }
        if self.password.is_some() {
            client.password = self.password.clone();
        }
        set(&mut client.connect_rate, &self.connect_rate);
        set(&mut client.connect_concurrency, &self.connect_concurrency);
        set(&mut client.connect_timeout, &self.connect_timeout);
        let limits = &mut scenario.limits;
        set(&mut limits.duration, &self.duration);
        set(&mut limits.timeout, &self.timeout);
        set(&mut limits.drain, &self.drain);
        set(&mut limits.hold, &self.hold);
        set(&mut scenario.runner.threads, &self.threads);
        set(&mut scenario.runner.workers, &self.workers);
    }
}

/// A name that tells runs apart in one results directory: kind, shape, QoS.
fn default_name(scenario: &Scenario) -> String {
    let shape = match &scenario.workload {
        Workload::Conn(conn) => format!("n{}", conn.connections),
        Workload::Fanout(fanout) => format!(
            "{}-to-{}-n{}",
            fanout.publishers,
            fanout
                .subscribers
                .map_or("all".into(), |subscribers| subscribers.to_string()),
            fanout.connections
        ),
        Workload::Fanin(fanin) => match (&fanin.shared_group, &fanin.strategy) {
            (Some(_), strategy) => format!(
                "{}-to-shared{}-{}",
                fanin.publishers,
                fanin.subscribers,
                strategy.as_deref().unwrap_or("default")
            ),
            (None, _) => format!("{}-to-{}", fanin.publishers, fanin.subscribers),
        },
        Workload::Pairs(pairs) => format!("n{}", pairs.pairs),
        Workload::Mixed(groups) => format!("{}-groups", groups.len()),
    };
    format!("{}-{shape}-q{}", scenario.kind(), scenario.publish.qos)
}

/// Prints to stdout; a closed stdout (`| head`) must not keep the report files from being written.
fn print_out(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn main() -> ExitCode {
    match run_cli(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("shardmq-loadtest: {err:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn run_cli(cli: Cli) -> anyhow::Result<ExitCode> {
    let (mut scenario, common, from_file) = match cli.command {
        Command::Worker => {
            shardmq_loadtest::worker_main()?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Compare { a, b } => {
            print_out(&compare(&Report::load(&a)?, &Report::load(&b)?));
            return Ok(ExitCode::SUCCESS);
        }
        Command::Conn {
            connections,
            common,
        } => (
            Scenario::new(
                "conn",
                Workload::Conn(shardmq_loadtest::scenario::Conn { connections }),
            ),
            common,
            false,
        ),
        Command::Fanout {
            connections,
            preset,
            subscribers,
            publishers,
            topic,
            common,
        } => {
            let mut fanout = match preset {
                Some(preset) => preset.fanout(connections),
                None => Fanout {
                    connections,
                    subscribers,
                    publishers,
                    topic: String::new(),
                },
            };
            fanout.topic = topic;
            (
                Scenario::new("fanout", Workload::Fanout(fanout)),
                common,
                false,
            )
        }
        Command::Fanin {
            publishers,
            subscribers,
            topic,
            filter,
            shared_group,
            strategy,
            common,
        } => (
            Scenario::new(
                "fanin",
                Workload::Fanin(Fanin {
                    publishers,
                    subscribers,
                    topic,
                    filter,
                    shared_group,
                    strategy,
                }),
            ),
            common,
            false,
        ),
        Command::Pairs {
            pairs,
            topic,
            common,
        } => (
            Scenario::new("pairs", Workload::Pairs(Pairs { pairs, topic })),
            common,
            false,
        ),
        Command::Run { file, common } => (Scenario::load(&file)?, common, true),
    };
    common.apply(&mut scenario);
    if common.name.is_none() && !from_file {
        scenario.name = default_name(&scenario);
    }
    scenario.validate()?;

    let options = RunOptions {
        progress: common.progress || (!common.quiet && std::io::stderr().is_terminal()),
        ctrl_c: true,
        worker_exe: Some(std::env::current_exe().context("locating this binary for workers")?),
    };
    let report = shardmq_loadtest::run(&scenario, &options)?;
    print_out(&report.summary());
    let written = report.write_files(&common.out)?;
    let names: Vec<String> = written
        .iter()
        .map(|path| path.display().to_string())
        .collect();
    print_out(&format!("reports      {}\n", names.join(" ")));
    Ok(ExitCode::from(report.exit_code()))
}
