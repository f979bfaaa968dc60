//! The `shardmq` broker binary: command line, configuration, start-up and signal handling.
//! Everything that runs per core lives in `shardmq-shard`.

mod admin;
mod auth;
mod cli;
mod config;
mod control_core;
mod monitor;
mod startup;
mod status;
mod users_cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;

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
    let plan = startup::Plan::from_settings(&settings)?;
    if let Some(Command::CheckConfig) = command {
        let config = plan.shard_config();
        println!(
            "configuration ok: {} shard(s), listening on {:?}",
            config.shards, config.listen
        );
        return Ok(());
    }
    plan.run()
}
