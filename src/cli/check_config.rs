//! `shardmq check-config`: checks the configuration exactly as start-up does
//! ([`crate::startup::Plan::from_settings`]: every value, the access files' combination, the
//! admin and monitoring settings), then opens and parses every file it names with the loaders
//! start-up uses, and exits without starting anything: no shard, no listener, no control core
//! thread, no connection to Redis or Postgres.
//!
//! The files read: `password_file`, `acl_file`, `relations_file`, `auto_subscribe_file`
//! ([`crate::startup::Plan::check_files`]); the first error names the key, the file and the line.
//! Certificate and key files, once listeners take them, are to be read here too.
//!
//! `--config` and the flags may come before the command (`shardmq --config F check-config`) or
//! after it (`shardmq check-config --config F`); those after it win.

use std::path::PathBuf;

use crate::config::{ConfigFile, Settings};
use crate::startup::Plan;

/// Arguments of `shardmq check-config`: the configuration to check, as the broker takes it.
#[derive(clap::Args, Clone, Debug)]
pub struct CheckConfigArgs {
    #[command(flatten)]
    pub config: ConfigFile,
    #[command(flatten)]
    pub settings: Settings,
}

impl CheckConfigArgs {
    /// The file and flags to check, given `file` and `flags` from before the command: a file
    /// given after it replaces that one, and its flags override those before.
    pub fn after(self, file: Option<PathBuf>, flags: Settings) -> (Option<PathBuf>, Settings) {
        (
            self.config.config.or(file),
            flags.overridden_by(self.settings),
        )
    }
}

/// Checks `settings` and the files they name, and prints what the broker would run.
pub fn run(settings: &Settings) -> anyhow::Result<()> {
    let plan = Plan::from_settings(settings)?;
    plan.check_files()?;
    let config = plan.shard_config();
    println!(
        "configuration ok: {} shard(s), listening on {:?}",
        config.shards, config.listen
    );
    if settings.redis.url.is_some() {
        println!("users and rules: in Redis, read at start-up (not contacted here)");
    }
    for (key, path) in settings.access_files.entries() {
        if let (Some(path), None) = (path, &settings.redis.url) {
            println!("{key} ok: {}", path.display());
        }
    }
    Ok(())
}
