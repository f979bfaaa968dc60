//! The `shardmq` binary: the command line, and a call. Everything that runs per core lives in
//! `shardmq-shard`; this crate assembles the rest.
//!
//! | module | owns |
//! | --- | --- |
//! | [`config`] | every setting (TOML keys and flags), its defaults and single-setting rules |
//! | [`startup`] | which threads start, in which order, and shutdown |
//! | [`logging`] | the log's level, format and writer thread |
//! | [`cli`] | the operator commands, a file each |
//! | [`control_core`] | the thread that authenticates CONNECTs and compiles ACLs, and its backends |
//! | [`access`] | the access rules, relations and auto-subscriptions, and their expansion |
//! | [`auth`] | password hashes and the access files' parsers |
//! | [`status`] | the read model: what the broker shows about itself |
//! | [`monitor`] | the thread that fills the read model, `$SYS` and the Postgres history |
//! | [`admin`] | the HTTP admin API over the read model |
//!
//! Dependencies point one way: `config`, `status` and `access` depend on nothing here, `auth` only
//! on `access` (whose types its parsers build); the threads' modules on those; `startup` on the
//! threads' modules; `cli` on all of them; `main` on `cli` and `startup`.

mod access;
mod admin;
mod auth;
mod cli;
mod config;
mod control_core;
mod logging;
mod monitor;
mod startup;
mod status;

use std::process::ExitCode;

use clap::Parser;
use mimalloc::MiMalloc;

use crate::config::{ConfigFile, Settings};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// A thread-per-core MQTT broker.
#[derive(Debug, Parser)]
#[command(name = "shardmq", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<cli::Command>,
    #[command(flatten)]
    config: ConfigFile,
    #[command(flatten)]
    settings: Settings,
}

fn main() -> ExitCode {
    let Cli {
        command,
        config,
        settings: flags,
    } = Cli::parse();
    let settings = cli::settings(config.config.as_deref(), flags.clone());
    let _log = match &settings {
        Ok(settings) => logging::init(
            settings.log_level.as_ref(),
            settings.log_format.unwrap_or_default(),
        ),
        Err(_) => logging::init(None, Default::default()),
    };
    let result = match command {
        None => settings.and_then(|settings| startup::Plan::from_settings(&settings)?.run()),
        Some(command) => cli::run(command, config, flags),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("shardmq: {err:#}");
            ExitCode::FAILURE
        }
    }
}
