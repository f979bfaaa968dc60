//! Who may connect: turns the authentication settings into a plan, applying Mosquitto 2's rule
//! for anonymous clients, and starts the control core when anything is to be checked. The plan
//! is made (and so checked) before anything starts, which is also all `check-config` does.
//!
//! - Nothing configured: anonymous clients are allowed only because every listener is on
//!   loopback; a non-loopback listener refuses to start unless `allow_anonymous = true`.
//! - A password file (or ACL, relations, auto-subscribe file) configured: anonymous clients are
//!   refused unless `allow_anonymous = true`.
//! - `[redis] url` set: Redis holds users and rules instead of the files (the two do not mix:
//!   `shardmq import` loads the files into Redis); anonymous clients as with a password file.
//!
//! `control_core` must name a CPU this process may run on: a typo there is a configuration
//! error at start-up, not a control core left unpinned with a warning in the log.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use shardmq_shard::control::Authenticator;

use super::files::FileBackend;
use super::guard::{GuardLimits, LoginGuard};
use super::redis::RedisBackend;
use super::{Backend, ControlCore};
use crate::config::{AccessFiles, Settings};

/// The resolved access settings.
#[derive(Debug)]
pub struct Plan {
    files: AccessFiles,
    redis_url: Option<String>,
    allow_anonymous: bool,
    guard: GuardLimits,
    control_core_cpu: Option<usize>,
}

impl Plan {
    /// Resolves the settings; refuses an unauthenticated broker exposed beyond loopback.
    pub fn from_settings(settings: &Settings, listen: &[SocketAddr]) -> anyhow::Result<Plan> {
        let files = settings.access_files.clone();
        let redis_url = settings.redis.url.clone();
        if let (Some(name), Some(_)) = (files.first_configured(), &redis_url) {
            bail!(
                "`{name}` and `[redis] url` are both set: with Redis, users and rules live in \
                 Redis (load the files with `shardmq import`)"
            );
        }
        let authenticated = files.password_file.is_some() || redis_url.is_some();
        let loopback_only = listen.iter().all(|addr| addr.ip().is_loopback());
        let allow_anonymous = match settings.allow_anonymous {
            Some(allow) => allow,
            None if authenticated => false,
            None if loopback_only => true,
            None => bail!(
                "listening beyond loopback ({}) with no authentication configured: set \
                 `password_file` or `[redis] url`, or `allow_anonymous = true` to accept \
                 anonymous clients",
                listen
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let defaults = GuardLimits::default();
        let guard = GuardLimits {
            max_failures: settings.max_login_failures.unwrap_or(defaults.max_failures),
            window: defaults.window,
            ban: settings
                .ban_seconds
                .map_or(defaults.ban, |s| Duration::from_secs(s.get().into())),
        };
        if let Some(cpu) = settings.control_core {
            check_cpu(cpu, crate::control_core::usable_cpus())?;
        }
        Ok(Plan {
            files,
            redis_url,
            allow_anonymous,
            guard,
            control_core_cpu: settings.control_core,
        })
    }

    /// Whether CONNECTs need the control core at all: with no file configured and anonymous
    /// clients allowed, every client is accepted with no ACL and the shards skip the round trip.
    fn needs_control_core(&self) -> bool {
        !self.allow_anonymous || self.redis_url.is_some() || !self.files.is_empty()
    }

    /// Reads and parses the configured files with the loaders [`Plan::start`] uses, without
    /// starting the control core; nothing is read when Redis holds users and rules.
    pub fn check_files(&self) -> anyhow::Result<()> {
        if self.redis_url.is_some() || self.files.is_empty() {
            return Ok(());
        }
        FileBackend::load(self.files.clone(), self.allow_anonymous).map(drop)
    }

    /// Loads the files (or connects to Redis) and starts the control core, when needed.
    pub fn start(&self) -> anyhow::Result<Option<(ControlCore, Authenticator)>> {
        if !self.needs_control_core() {
            return Ok(None);
        }
        let backend: Box<dyn Backend> = match &self.redis_url {
            Some(url) => Box::new(
                RedisBackend::connect(url, self.allow_anonymous)
                    .context("starting the Redis backend")?,
            ),
            None => Box::new(FileBackend::load(self.files.clone(), self.allow_anonymous)?),
        };
        let started =
            ControlCore::start(backend, LoginGuard::new(self.guard), self.control_core_cpu)?;
        Ok(Some(started))
    }
}

/// Checks the `control_core` setting against the CPUs this process may run on (`None`: the
/// system would not say, and pinning will tell).
fn check_cpu(cpu: usize, usable: Option<Vec<usize>>) -> anyhow::Result<()> {
    let Some(usable) = usable else {
        return Ok(());
    };
    if usable.contains(&cpu) {
        return Ok(());
    }
    bail!(
        "`control_core` = {cpu}: not a CPU this process may run on (it may use CPUs {})",
        cpu_ranges(&usable)
    )
}

/// `0-3,6,8-9` for CPUs 0, 1, 2, 3, 6, 8, 9 (ascending), as `taskset -c` writes them.
fn cpu_ranges(cpus: &[usize]) -> String {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for &cpu in cpus {
        match ranges.last_mut() {
            Some((_, last)) if *last + 1 == cpu => *last = cpu,
            _ => ranges.push((cpu, cpu)),
        }
    }
    ranges
        .iter()
        .map(|&(first, last)| {
            if first == last {
                first.to_string()
            } else {
                format!("{first}-{last}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_core_must_be_a_usable_cpu() {
        assert!(check_cpu(1, Some(vec![0, 1])).is_ok());
        let err = check_cpu(2, Some(vec![0, 1])).expect_err("out of range");
        assert_eq!(
            err.to_string(),
            "`control_core` = 2: not a CPU this process may run on (it may use CPUs 0-1)"
        );
        let err = check_cpu(1, Some(vec![0, 2, 3])).expect_err("excluded");
        assert!(err.to_string().ends_with("CPUs 0,2-3)"), "{err}");
        assert!(
            check_cpu(999, None).is_ok(),
            "unknown mask: left to pinning"
        );
    }

    #[test]
    fn cpu_ranges_are_written_like_taskset() {
        assert_eq!(cpu_ranges(&[0, 1, 2, 3, 6, 8, 9]), "0-3,6,8-9");
        assert_eq!(cpu_ranges(&[5]), "5");
        assert_eq!(cpu_ranges(&[]), "");
    }
}
