//! `shardmq check-config`: checks the configuration exactly as start-up does
//! ([`crate::startup::Plan::from_settings`]: every value, the access files' combination, the
//! admin and monitoring settings) and exits without starting anything.

use crate::config::Settings;
use crate::startup::Plan;

/// Checks `settings` and prints what the broker would run.
pub fn run(settings: &Settings) -> anyhow::Result<()> {
    let plan = Plan::from_settings(settings)?;
    let config = plan.shard_config();
    println!(
        "configuration ok: {} shard(s), listening on {:?}",
        config.shards, config.listen
    );
    Ok(())
}
