//! The operator commands, one file each: `shardmq <command> --help` describes each, and each
//! file's doc says what it does beyond that.
//!
//! | command | file | reads |
//! | --- | --- | --- |
//! | `check-config` | [`check_config`] | the configuration, checked as start-up checks it |
//! | `passwd` | [`passwd`] | a password file (no configuration) |
//! | `hot-topics` | [`hot_topics`] | a running broker's admin API, or Redis |
//! | `top` | [`top`] | a running broker's admin API, live |
//! | `status` | [`status`] | the status history in Postgres |
//! | `users` | [`users`] | the users in Redis |
//! | `import` | [`import`] | the access files, written into Redis |
//!
//! Every command but `passwd` reads its defaults (admin address and token, Postgres and Redis
//! URLs) from the same configuration as the broker (`--config` and flags), so
//! `shardmq --config broker.toml status` finds the broker's own Postgres. The commands that
//! read the admin API share its client, [`admin_client`].

mod admin_client;
pub mod check_config;
pub mod hot_topics;
pub mod import;
pub mod passwd;
mod redis;
pub mod status;
pub mod top;
pub mod users;

use clap::Subcommand;

use crate::config::Settings;

/// A `shardmq` command other than running the broker.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Checks the configuration and exits.
    CheckConfig,
    /// Manages a password file (mosquitto_passwd compatible).
    Passwd(passwd::PasswdArgs),
    /// Prints the hot-topic ranking of a running broker (from its admin API).
    HotTopics(hot_topics::HotTopicsArgs),
    /// Shows a running broker's figures live, refreshed every --interval seconds.
    Top(top::TopArgs),
    /// Prints the status history the monitor wrote to Postgres.
    Status(status::StatusArgs),
    /// Manages the users kept in Redis (add, passwd, delete, list).
    Users(users::UsersArgs),
    /// Loads password, ACL, relations and auto-subscribe files into Redis.
    Import(import::ImportArgs),
}

/// Runs `command`. `settings` resolves the configuration; `passwd` never calls it, so a broken
/// configuration file does not stop an operator from fixing a password file.
pub fn run(
    command: Command,
    settings: impl FnOnce() -> anyhow::Result<Settings>,
) -> anyhow::Result<()> {
    match command {
        Command::Passwd(args) => passwd::run(args),
        Command::CheckConfig => check_config::run(&settings()?),
        Command::HotTopics(args) => hot_topics::run(&args, &settings()?),
        Command::Top(args) => top::run(&args, &settings()?),
        Command::Status(args) => status::run(&args, &settings()?),
        Command::Users(args) => users::run(&args, &settings()?),
        Command::Import(args) => import::run(&args, &settings()?),
    }
}
