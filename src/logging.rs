//! The broker's log on stderr: its level, its format, and why writing it never stalls a shard.
//!
//! Shards log each connection, disconnection, refusal and denial. A synchronous write to stderr
//! would block a shard whenever whatever reads stderr (a terminal, journald, a pipe) is slow, and
//! with it every client of that core. Lines are therefore formatted where they happen and handed
//! to one writer thread through a bounded queue; when the queue is full a line is dropped rather
//! than a shard blocked (the writer thread reports how many it dropped).
//!
//! The writer thread blocks every signal: signals are the broker's signal loop's (see `startup`).
//!
//! The filter is `RUST_LOG` when set (for per-module directives), else `log_level`, else `info`.

use std::io::IsTerminal;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogLevel};

/// Lines waiting for the writer thread before new ones are dropped.
const QUEUED_LINES: usize = 64 * 1024;

/// Keeps the writer thread; dropping it writes out what is queued.
#[must_use = "the log writer stops when this is dropped"]
pub struct Log {
    _writer: WorkerGuard,
}

/// Starts logging to stderr with `level` (or `RUST_LOG`) in `format`.
pub fn init(level: Option<&LogLevel>, format: LogFormat) -> Log {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let level = level.map_or("info", LogLevel::as_str);
        // Settings are checked when read, so this parses; `info` is the fallback regardless.
        EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"))
    });
    let (writer, guard) = without_signals(|| {
        NonBlockingBuilder::default()
            .lossy(true)
            .buffered_lines_limit(QUEUED_LINES)
            .thread_name("log")
            .finish(std::io::stderr())
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Log { _writer: guard }
}

/// Runs `spawn` with every signal blocked, so a thread it starts inherits that mask and never
/// takes a signal meant for the broker's signal loop (SIGHUP's default action would end the
/// process).
fn without_signals<T>(spawn: impl FnOnce() -> T) -> T {
    // SAFETY: plain signal-mask manipulation of this thread with local, initialised sets.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut previous: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut previous);
        let spawned = spawn();
        libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
        spawned
    }
}
