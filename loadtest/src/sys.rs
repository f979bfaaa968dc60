//! The operating-system facts the load generator reads or sets: the shared monotonic clock,
//! `RLIMIT_NOFILE`, this process's CPU time, a broker's RSS and CPU time from `/proc`, and the
//! socket option that lets many source addresses share the ephemeral port range.
//!
//! Linux only, like the broker. Every `unsafe` block here is one libc call on plain values or
//! on a descriptor the caller owns.

use std::io;
use std::os::fd::AsRawFd;

/// Nanoseconds on `CLOCK_MONOTONIC`.
///
/// The clock is system-wide, so worker processes that are handed the coordinator's epoch (a raw
/// reading of this clock) measure time on the same axis: a timestamp written by a publisher in one
/// process is comparable with the receive time in another.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The start of a run on the monotonic clock; every timestamp of the run is relative to it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Epoch(u64);

impl Epoch {
    /// An epoch starting now.
    pub(crate) fn now() -> Self {
        Self(monotonic_ns())
    }

    /// The epoch another process started (its [`Epoch::raw`]).
    pub(crate) fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw monotonic reading, to hand to worker processes.
    pub(crate) fn raw(self) -> u64 {
        self.0
    }

    /// Nanoseconds since the epoch.
    pub(crate) fn now_ns(self) -> u64 {
        monotonic_ns().saturating_sub(self.0)
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the new soft limit.
///
/// The hard limit cannot be raised without privileges (and on some CI hosts not at all: 20,000
/// there), which is why large runs spread their clients over worker processes.
pub(crate) fn raise_nofile_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit that only lifts the soft limit up to the hard one.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok(limit.rlim_cur)
}

/// CPU time this process has used so far.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CpuTime {
    /// User time in nanoseconds.
    pub user_ns: u64,
    /// System time in nanoseconds.
    pub system_ns: u64,
    /// Peak resident set size in bytes.
    pub max_rss_bytes: u64,
}

/// `getrusage(RUSAGE_SELF)`: user and system time of every thread of this process.
pub(crate) fn cpu_time() -> CpuTime {
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is valid and writable; RUSAGE_SELF cannot fail.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let ns = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000_000 + tv.tv_usec as u64 * 1_000;
    CpuTime {
        user_ns: ns(usage.ru_utime),
        system_ns: ns(usage.ru_stime),
        max_rss_bytes: usage.ru_maxrss as u64 * 1024,
    }
}

/// The resident set size of process `pid` in bytes (`VmRSS` in `/proc/PID/status`).
pub(crate) fn process_rss_bytes(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vm_rss(&status).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS line"))
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line["VmRSS:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// User plus system CPU time of process `pid` in nanoseconds (`/proc/PID/stat` fields 14 and 15).
pub(crate) fn process_cpu_ns(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // SAFETY: sysconf has no preconditions.
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    parse_stat_ticks(&stat)
        .map(|ticks| ticks * 1_000_000_000 / ticks_per_s)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed /proc stat"))
}

fn parse_stat_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is parenthesised and may contain spaces: split after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Sets `IP_BIND_ADDRESS_NO_PORT` so that binding a source address before `connect` defers the
/// choice of port to `connect`, which then only needs the full 4-tuple to be unique. Without it
/// every bound socket holds a port on its source address for any destination.
pub(crate) fn set_bind_address_no_port(socket: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: the descriptor is an open socket owned by the caller; the option value is a
    // c_int that lives across the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The number of CPUs this process may run on.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_line() {
        let status = "Name:\tmosquitto\nVmPeak:\t  9000 kB\nVmRSS:\t    6144 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss(status), Some(6144 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
    }

    #[test]
    fn stat_ticks_skip_a_command_with_spaces() {
        let stat = "42 (my (odd) cmd) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0 1 1 1";
        assert_eq!(parse_stat_ticks(stat), Some(12));
    }

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id();
        assert!(process_rss_bytes(pid).unwrap() > 0);
        process_cpu_ns(pid).unwrap();
        let before = monotonic_ns();
        assert!(monotonic_ns() >= before);
        assert!(raise_nofile_limit().unwrap() > 0);
    }
}
