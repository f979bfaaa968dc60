//! Start-up and shutdown of the broker: which threads start, in which order, and why.
//!
//! [`Plan::from_settings`] checks every setting before anything starts (and is all that
//! `check-config` runs). [`Plan::run`] then starts, in this order:
//!
//! 0. **Open-file limit.** The soft `RLIMIT_NOFILE` is raised to the hard one (every connection
//!    is a descriptor; a soft limit of 1024 would silently cap the broker near 1,000 clients). The
//!    effective limit is logged, with a warning when a configured `max_connections` is above what
//!    it allows.
//! 1. **Signal mask.** SIGINT, SIGTERM and SIGHUP are blocked in this thread before any other
//!    starts, so every thread inherits the mask and the signals wait for [`Plan::run`]'s loop
//!    (`sigwait`) instead of interrupting a shard.
//! 2. **Admin listener, bound only.** A configured address that is taken stops the broker before
//!    it listens for MQTT; the default address may be taken (a second broker on the host).
//! 3. **Control core** (when anything is to be checked): it loads the files or reaches Redis
//!    first, so a bad rule file stops the broker before any client can connect.
//! 4. **Shards**, one per core, with the control core's request queue; then the control core is
//!    given the broker handle it pushes refreshed ACLs through.
//! 5. **Readiness line** on stdout (`shardmq ready: ...`), which tests and service managers wait
//!    for: from here on MQTT clients are served.
//! 6. **Monitor** (and its Postgres writer), then the **admin API** on the monitor's read model,
//!    and its line `shardmq admin: listening on ...`.
//!
//! Then the thread waits for signals: SIGHUP reloads the control core's rules, SIGINT or SIGTERM
//! stops the shards, which close every connection, within the configured grace.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

use shardmq_shard::{Broker, ShardConfig};
use tracing::{error, info, warn};

use crate::config::Settings;
use crate::{admin, control_core, monitor};

/// Everything the broker will start, checked.
#[derive(Debug)]
pub struct Plan {
    config: ShardConfig,
    pin_cores: bool,
    /// `max_connections` when configured (the default is checked against nothing).
    max_connections: Option<usize>,
    monitor: monitor::Options,
    admin: Option<admin::Plan>,
    control: control_core::Plan,
}

impl Plan {
    /// Checks the settings and plans the threads; starts nothing.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Plan> {
        let config = settings.shard_config();
        let monitor = monitor::Options::from_settings(settings)?;
        let admin = admin::Plan::from_settings(&settings.admin)?;
        let control = control_core::Plan::from_settings(settings, &config.listen)?;
        Ok(Plan {
            pin_cores: settings.pin_cores.unwrap_or(true),
            max_connections: settings.max_connections.map(std::num::NonZeroUsize::get),
            config,
            monitor,
            admin,
            control,
        })
    }

    /// Reads and parses every access file the settings name, as the control core does when it
    /// starts, without starting it (for `check-config`); the error names the key, file and line.
    pub fn check_files(&self) -> anyhow::Result<()> {
        self.control.check_files()
    }

    /// The shards' configuration.
    pub fn shard_config(&self) -> &ShardConfig {
        &self.config
    }

    /// Starts the broker (see the module doc for the order), serves until SIGINT or SIGTERM,
    /// and stops it.
    pub fn run(mut self) -> anyhow::Result<()> {
        raise_open_file_limit(self.max_connections);
        let signals = block_signals();
        if let Some(admin) = &mut self.admin {
            admin.bind()?;
        }
        let control = self.control.start()?;
        let authenticator = control
            .as_ref()
            .map(|(_, authenticator)| authenticator.clone());
        let broker = Broker::start(self.config.clone(), self.pin_cores, authenticator)?;
        if let Some((core, _)) = &control {
            core.attach(broker.handle());
        }
        let addresses: Vec<String> = broker.listening().iter().map(ToString::to_string).collect();
        let mut stdout = std::io::stdout().lock();
        writeln!(
            stdout,
            "shardmq ready: {} shard(s), listening on {}",
            self.config.shards,
            addresses.join(" ")
        )?;
        stdout.flush()?;
        drop(stdout);
        info!(shards = self.config.shards, listen = %addresses.join(" "), "broker started");

        let shared = monitor::start(broker.handle(), self.monitor)?;
        if let Some(admin) = self.admin {
            let guard = control.as_ref().map(|(core, _)| core.guard());
            if let Some(address) = admin.serve(broker.handle(), shared, guard)? {
                let mut stdout = std::io::stdout().lock();
                writeln!(stdout, "shardmq admin: listening on {address}")?;
                stdout.flush()?;
                info!(admin = %address, "admin API started");
            }
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
            .recv_timeout(self.config.shutdown_grace + Duration::from_secs(2))
            .is_err()
        {
            error!("shards did not stop in time; exiting");
        }
        Ok(())
    }
}

/// Descriptors the broker needs besides its clients' sockets: listeners, rings, the admin API,
/// Redis and Postgres links, log and data files.
const RESERVED_DESCRIPTORS: u64 = 100;

/// Raises the soft open-file limit to the hard one and logs the result (see the module doc);
/// warns when a configured `max_connections` is above what the limit allows.
fn raise_open_file_limit(max_connections: Option<usize>) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid out-pointer for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        warn!(error = %std::io::Error::last_os_error(), "cannot read the open-file limit");
        return;
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit; lowering or keeping the hard limit needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            warn!(error = %std::io::Error::last_os_error(), soft = before, hard = limit.rlim_max,
                "cannot raise the open-file limit");
        }
    }
    let allowed = limit.rlim_cur.saturating_sub(RESERVED_DESCRIPTORS);
    info!(
        limit = limit.rlim_cur,
        raised_from = before,
        hard = limit.rlim_max,
        connections = allowed,
        "open-file limit"
    );
    let Some(max_connections) = max_connections else {
        return;
    };
    if max_connections as u64 > allowed {
        warn!(
            max_connections,
            open_file_limit = limit.rlim_cur,
            "max_connections is above what the open-file limit allows (about {allowed} \
             connections): raise LimitNOFILE= / `ulimit -Hn` (see tuning/) or lower max_connections"
        );
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread, before any other thread starts, so every
/// thread inherits the mask and the signals wait for [`wait_for_signal`].
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
