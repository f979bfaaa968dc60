//! Host counters read from `/proc` and `statvfs`: CPU, memory, disk and network.
//!
//! A [`Reading`] holds the kernel's cumulative counters at one moment; [`Reading::rates_since`]
//! turns two readings into the percentages and per-second rates of [`SystemRates`]. Each
//! consumer (the `$SYS` tree, the Postgres history, the admin API) keeps its own previous
//! reading, so each sees rates over its own interval. Files that cannot be read give zeros: a
//! container without `/proc/net/dev` still gets a broker. The broker's own resident memory and
//! CPU time come from `/proc/self/statm` and `/proc/self/stat`.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Instant;

use crate::status::system::{Disk, InterfaceRate, Memory, Process, SystemRates};

/// Cumulative host counters at one moment.
#[derive(Clone, Debug)]
pub struct Reading {
    at: Instant,
    cpu: CpuTimes,
    memory: Memory,
    disk: Disk,
    interfaces: Vec<Interface>,
    load_1min: f64,
    /// This process's resident memory in bytes.
    rss: u64,
    /// This process's CPU time (user and system) in clock ticks.
    process_ticks: u64,
}

/// CPU time in clock ticks, summed over all CPUs.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
struct CpuTimes {
    busy: u64,
    total: u64,
}

/// Bytes an interface has moved since boot.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
struct Interface {
    name: String,
    received: u64,
    sent: u64,
}

impl Reading {
    /// Reads the host's counters now; `data_dir` is the directory whose file system is measured.
    pub fn take(data_dir: &Path) -> Reading {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        Reading {
            at: Instant::now(),
            cpu: parse_cpu(&read("/proc/stat")),
            memory: parse_meminfo(&read("/proc/meminfo")),
            disk: statvfs(data_dir),
            interfaces: parse_net_dev(&read("/proc/net/dev")),
            load_1min: parse_loadavg(&read("/proc/loadavg")),
            rss: parse_statm(&read("/proc/self/statm")) * page_size(),
            process_ticks: parse_process_ticks(&read("/proc/self/stat")),
        }
    }

    /// The figures over the interval from `previous` to this reading.
    pub fn rates_since(&self, previous: &Reading) -> SystemRates {
        let current = self;
        let seconds = current.at.duration_since(previous.at).as_secs_f64();
        let per_second = |before: u64, after: u64| {
            if seconds > 0.0 {
                after.saturating_sub(before) as f64 / seconds
            } else {
                0.0
            }
        };
        let total = current.cpu.total.saturating_sub(previous.cpu.total);
        let busy = current.cpu.busy.saturating_sub(previous.cpu.busy);
        let cpu_percent = if total > 0 {
            (busy as f64 * 100.0 / total as f64).min(100.0)
        } else {
            0.0
        };
        let interfaces: Vec<InterfaceRate> = current
            .interfaces
            .iter()
            .map(|now| {
                let before = previous
                    .interfaces
                    .iter()
                    .find(|i| i.name == now.name)
                    .cloned()
                    .unwrap_or_else(|| now.clone());
                InterfaceRate {
                    name: now.name.clone(),
                    received_per_second: per_second(before.received, now.received),
                    sent_per_second: per_second(before.sent, now.sent),
                }
            })
            .collect();
        let external = || interfaces.iter().filter(|i| i.name != "lo");
        let process_seconds = current.process_ticks.saturating_sub(previous.process_ticks) as f64
            / ticks_per_second();
        SystemRates {
            cpu_percent,
            load_1min: current.load_1min,
            memory: current.memory,
            disk: current.disk,
            network_received_per_second: external().map(|i| i.received_per_second).sum(),
            network_sent_per_second: external().map(|i| i.sent_per_second).sum(),
            interfaces,
            process: Process {
                rss_bytes: current.rss,
                cpu_percent: if seconds > 0.0 {
                    process_seconds * 100.0 / seconds
                } else {
                    0.0
                },
            },
        }
    }
}

/// Resident pages, the second field of `/proc/self/statm`.
fn parse_statm(statm: &str) -> u64 {
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .unwrap_or(0)
}

/// User plus system CPU time in ticks: fields 14 and 15 of `/proc/self/stat`, counted after the
/// command name, which is in parentheses and may itself hold spaces.
fn parse_process_ticks(stat: &str) -> u64 {
    let Some((_, after_name)) = stat.rsplit_once(')') else {
        return 0;
    };
    // After the name: field 3 (state) onwards, so utime and stime are the 12th and 13th.
    let mut fields = after_name.split_whitespace().skip(11);
    let mut next = || {
        fields
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    next() + next()
}

fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant of the system.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// The aggregate `cpu` line of `/proc/stat`: user nice system idle iowait irq softirq steal
/// (guest time is already part of user). Idle and iowait count as not busy.
fn parse_cpu(stat: &str) -> CpuTimes {
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return CpuTimes::default();
    };
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    CpuTimes {
        busy: total.saturating_sub(idle),
        total,
    }
}

/// `MemTotal` and `MemAvailable` from `/proc/meminfo` (kB), in bytes.
fn parse_meminfo(meminfo: &str) -> Memory {
    let field = |name: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    let total = field("MemTotal");
    let available = field("MemAvailable");
    Memory {
        used: total.saturating_sub(available),
        total,
    }
}

/// Per-interface byte counters from `/proc/net/dev`: `name: rx_bytes rx_packets ... (8 receive
/// fields) tx_bytes ...`.
fn parse_net_dev(net_dev: &str) -> Vec<Interface> {
    net_dev
        .lines()
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let fields: Vec<u64> = counters
                .split_whitespace()
                .map(|f| f.parse().ok())
                .collect::<Option<_>>()?;
            Some(Interface {
                name: name.trim().to_owned(),
                received: *fields.first()?,
                sent: *fields.get(8)?,
            })
        })
        .collect()
}

/// The first field of `/proc/loadavg`.
fn parse_loadavg(loadavg: &str) -> f64 {
    loadavg
        .split_whitespace()
        .next()
        .and_then(|f| f.parse().ok())
        .unwrap_or(0.0)
}

/// Free and total space of the file system holding `path`; zeros if it cannot be queried.
fn statvfs(path: &Path) -> Disk {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return Disk::default();
    };
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` a zeroed out-parameter that
    // statvfs fills; nothing is read from it unless the call succeeds.
    unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c_path.as_ptr(), &mut stat) != 0 {
            return Disk::default();
        }
        let block = stat.f_frsize as u64;
        Disk {
            free: stat.f_bavail as u64 * block,
            total: stat.f_blocks as u64 * block,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const STAT: &str = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\n";
    const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit\n \
         face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
         lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0\n  \
         eth0:    5000      50    0    0    0     0          0         0     7000      70    0    0    0     0       0          0\n";

    #[test]
    fn parses_proc_files() {
        assert_eq!(
            parse_cpu(STAT),
            CpuTimes {
                busy: 150,
                total: 1000
            }
        );
        let memory =
            parse_meminfo("MemTotal:       2048 kB\nMemFree:  100 kB\nMemAvailable:   1024 kB\n");
        assert_eq!(
            memory,
            Memory {
                used: 1024 * 1024,
                total: 2048 * 1024
            }
        );
        let interfaces = parse_net_dev(NET_DEV);
        assert_eq!(interfaces.len(), 2);
        assert_eq!(
            interfaces[1],
            Interface {
                name: "eth0".into(),
                received: 5000,
                sent: 7000
            }
        );
        assert_eq!(parse_loadavg("0.52 0.40 0.30 1/200 1234\n"), 0.52);
        assert_eq!(parse_cpu("garbage"), CpuTimes::default());
        assert_eq!(parse_meminfo(""), Memory::default());
        assert!(parse_net_dev("eth0: not numbers\n").is_empty());
        assert_eq!(parse_statm("1000 250 100 10 0 300 0\n"), 250);
        let stat = "42 (shard (1) x) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 9 0 1 2 3\n";
        assert_eq!(parse_process_ticks(stat), 10);
        assert_eq!(parse_process_ticks("garbage"), 0);
    }

    #[test]
    fn rates_between_readings() {
        let start = Instant::now();
        let before = Reading {
            at: start,
            cpu: CpuTimes {
                busy: 100,
                total: 1000,
            },
            memory: Memory::default(),
            disk: Disk::default(),
            interfaces: parse_net_dev(NET_DEV),
            load_1min: 0.0,
            rss: 4096,
            process_ticks: 10,
        };
        let mut after = before.clone();
        after.at = start + Duration::from_secs(2);
        after.cpu = CpuTimes {
            busy: 150,
            total: 1200,
        };
        after.interfaces[0].received += 400;
        after.interfaces[1].received += 2000;
        after.interfaces[1].sent += 1000;
        after.process_ticks += ticks_per_second() as u64;
        let rates = after.rates_since(&before);
        assert_eq!(rates.cpu_percent, 25.0);
        assert_eq!(rates.process.cpu_percent, 50.0, "one second of CPU in two");
        assert_eq!(rates.process.rss_bytes, 4096);
        assert_eq!(rates.network_received_per_second, 1000.0);
        assert_eq!(rates.network_sent_per_second, 500.0);
        assert_eq!(rates.interfaces[0].received_per_second, 200.0);
    }

    #[test]
    fn reads_this_host() {
        let reading = Reading::take(Path::new("."));
        assert!(reading.rss > 0);
        assert!(reading.memory.total > 0);
        assert!(reading.disk.total > 0);
        assert!(reading.cpu.total > 0);
    }
}
