//! The `shardmq` broker binary: command line, configuration, start-up and signal handling.
//! Everything that runs per core lives in `shardmq-shard`.

mod access;
mod admin;
mod auth;
mod cli;
mod config;
mod control_core;
mod monitor;
mod status;
mod users_cli;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;
use shardmq_shard::Broker;
use tracing::{error, info};

use crate::config::{ConfigFile, Settings};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// A thread-per-core MQTT broker.
#[derive(Debug, Parser)]
#[command(name = "shardmq", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: ConfigFile,
    #[command(flatten)]
    settings: Settings,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Checks the configuration and exits.
    CheckConfig,
    /// Manages a password file (mosquitto_passwd compatible).
    Passwd(auth::passwd::PasswdArgs),
    /// Prints the hot-topic ranking of a running broker (from its admin API).
    HotTopics(cli::HotTopicsArgs),
    /// Prints the status history the monitor wrote to Postgres.
    Status(cli::StatusArgs),
    /// Manages the users kept in Redis (add, passwd, delete, list).
    Users(users_cli::UsersArgs),
    /// Loads password, ACL, relations and auto-subscribe files into Redis.
    Import(users_cli::ImportArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("shardmq: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let command = match cli.command {
        Some(Command::Passwd(args)) => return auth::passwd::run_passwd(args),
        other => other,
    };
    let settings = Settings::resolve(cli.config.config.as_deref(), cli.settings)?;
    let config = settings.shard_config();
    match &command {
        Some(Command::HotTopics(args)) => {
            let admin = settings
                .admin
                .address()?
                .unwrap_or(config::AdminSettings::DEFAULT_LISTEN);
            let url = format!("http://{admin}");
            return cli::hot_topics::run(args, &url, settings.admin.token.as_deref());
        }
        Some(Command::Status(args)) => {
            return cli::status::run(args, settings.monitor.postgres_url.as_deref());
        }
        Some(Command::Users(args)) => {
            return users_cli::run_users(args, settings.redis.url.as_deref());
        }
        Some(Command::Import(args)) => {
            return users_cli::run_import(args, settings.redis.url.as_deref());
        }
        _ => {}
    }
    let mut monitoring = monitor::Plan::from_settings(&settings)?;
    let access = access::AccessPlan::from_settings(&settings, &config.listen)?;
    if let Some(Command::CheckConfig) = command {
        println!(
            "configuration ok: {} shard(s), listening on {:?}",
            config.shards, config.listen
        );
        return Ok(());
    }
    let signals = block_signals();
    monitoring.bind()?;
    let control = access.start_control_core()?;
    let authenticator = control
        .as_ref()
        .map(|(_, authenticator)| authenticator.clone());
    let broker = Broker::start(
        config.clone(),
        settings.pin_cores.unwrap_or(true),
        authenticator,
    )?;
    if let Some((core, _)) = &control {
        core.attach(broker.handle());
    }
    let addresses: Vec<String> = broker.listening().iter().map(ToString::to_string).collect();
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "shardmq ready: {} shard(s), listening on {}",
        config.shards,
        addresses.join(" ")
    )?;
    stdout.flush()?;
    drop(stdout);
    info!(shards = config.shards, listen = %addresses.join(" "), "broker started");
    if let Some(admin) = monitoring.start(broker.handle())? {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "shardmq admin: listening on {admin}")?;
        stdout.flush()?;
        info!(%admin, "admin API started");
    }

    let signal = loop {
        let signal = wait_for_signal(&signals);
        if signal != libc::SIGHUP {
            break signal;
        }
        match &control {
            Some((core, _)) => {
                info!("SIGHUP: reloading password, ACL, relations and auto-subscribe files");
                core.reload();
            }
            None => info!("SIGHUP: no authentication or ACL configured; nothing to reload"),
        }
    };
    info!(signal, "shutting down");
    broker.shutdown_flag().store(true, Ordering::Release);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        broker.join();
        let _ = done_tx.send(());
    });
    if done_rx
        .recv_timeout(config.shutdown_grace + Duration::from_secs(2))
        .is_err()
    {
        error!("shards did not stop in time; exiting");
    }
    Ok(())
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread, before any shard starts, so every thread inherits
/// the mask and the signals wait for [`wait_for_signal`].
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc signal-set manipulation on a local, zero-initialised set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_for_signal(set: &libc::sigset_t) -> i32 {
    let mut signal = 0;
    // SAFETY: `set` was initialised by `block_signals`; `signal` is a valid out-pointer.
    unsafe {
        libc::sigwait(set, &mut signal);
    }
    signal
}
