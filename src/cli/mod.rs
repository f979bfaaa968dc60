//! The operator commands, one file each: `shardmq <command> --help` describes each, and each
//! file's doc says what it does beyond that.
//!
//! | command | file | reads |
//! | --- | --- | --- |
//! | `check-config` | [`check_config`] | the configuration, checked as start-up checks it, and every file it names |
//! | `passwd` | [`passwd`] | a password file (no configuration) |
//! | `import-mosquitto-conf` | [`import_mosquitto_conf`] | a mosquitto.conf, written as shardmq's TOML (no configuration) |
//! | `hot-topics` | [`hot_topics`] | a running broker's admin API, or Redis |
//! | `top` | [`top`] | a running broker's admin API, live |
//! | `status` | [`status`] | the status history in Postgres |
//! | `users` | [`users`] | the users in Redis |
//! | `import` | [`import`] | the access files, written into Redis |
//!
//! Every command but `passwd` and `import-mosquitto-conf` reads its defaults (admin address and
//! token, Postgres and Redis URLs) from the same configuration as the broker (`--config` and
//! flags), so `shardmq --config broker.toml status` finds the broker's own Postgres.
//! `check-config` also takes `--config` and the flags after its name, which win over those
//! before it. A `--config` file that reads like a mosquitto.conf gets its error followed by how
//! to convert it ([`settings`]). The commands that read the admin API share its client,
//! [`admin_client`].

mod admin_client;
pub mod check_config;
pub mod hot_topics;
pub mod import;
pub mod import_mosquitto_conf;
pub mod passwd;
mod redis;
pub mod status;
pub mod top;
pub mod users;

use std::path::Path;

use clap::Subcommand;

use crate::config::{ConfigFile, Settings};

/// A `shardmq` command other than running the broker.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Checks the configuration and every file it names, and exits; starts nothing.
    CheckConfig(Box<check_config::CheckConfigArgs>),
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
    /// Converts a mosquitto.conf into shardmq's TOML configuration, naming what does not carry
    /// over.
    ImportMosquittoConf(import_mosquitto_conf::ImportMosquittoConfArgs),
}

/// Runs `command` with the configuration file and flags given before it. `passwd` and
/// `import-mosquitto-conf` never read them, so a broken configuration file does not stop an
/// operator from fixing a password file or converting a Mosquitto configuration.
pub fn run(command: Command, config: ConfigFile, flags: Settings) -> anyhow::Result<()> {
    let resolved = || settings(config.config.as_deref(), flags.clone());
    match command {
        Command::Passwd(args) => passwd::run(args),
        Command::ImportMosquittoConf(args) => import_mosquitto_conf::run(&args),
        Command::CheckConfig(args) => {
            let (file, flags) = args.after(config.config.clone(), flags.clone());
            check_config::run(&settings(file.as_deref(), flags)?)
        }
        Command::HotTopics(args) => hot_topics::run(&args, &resolved()?),
        Command::Top(args) => top::run(&args, &resolved()?),
        Command::Status(args) => status::run(&args, &resolved()?),
        Command::Users(args) => users::run(&args, &resolved()?),
        Command::Import(args) => import::run(&args, &resolved()?),
    }
}

/// The settings of `file` (if any) overridden by `flags`, as the broker and every command read
/// them. A file that is not TOML but reads like a mosquitto.conf gets its error followed by how
/// to convert it.
pub fn settings(file: Option<&Path>, flags: Settings) -> anyhow::Result<Settings> {
    Settings::resolve(file, flags).map_err(|err| match file.and_then(import_mosquitto_conf::hint) {
        Some(hint) => anyhow::anyhow!("{err:#}\n{hint}"),
        None => err,
    })
}
