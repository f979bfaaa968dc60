//! Host figures as the broker shows them: CPU, memory, disk and network over one interval.
//!
//! These are the values only; the monitor reads them from `/proc` and `statvfs`
//! (`crate::monitor::system`). The broker process's own memory and CPU are here too
//! ([`Process`]), read the same way. Network totals count every interface except loopback (`lo`),
//! because traffic to clients on other hosts is what an operator plans for; each interface,
//! loopback included, is listed too.

use serde::Serialize;

/// Memory in bytes.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Serialize)]
pub struct Memory {
    /// Memory in use (total minus what the kernel reports available).
    pub used: u64,
    /// Physical memory.
    pub total: u64,
}

/// Space of the file system holding the data directory, in bytes.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Serialize)]
pub struct Disk {
    /// Space available to the broker (unprivileged), in bytes.
    pub free: u64,
    /// Size of the file system, in bytes.
    pub total: u64,
}

/// One interface's traffic per second.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InterfaceRate {
    /// Interface name (`eth0`, `lo`...).
    pub name: String,
    /// Bytes received per second.
    pub received_per_second: f64,
    /// Bytes sent per second.
    pub sent_per_second: f64,
}

/// The broker process itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Process {
    /// Resident memory, in bytes.
    pub rss_bytes: u64,
    /// CPU time used over the interval, as a percentage of one CPU (as `top` shows it: a
    /// process busy on two CPUs shows 200).
    pub cpu_percent: f64,
}

/// Host figures over one interval.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SystemRates {
    /// CPU busy time over the interval, as a percentage of all CPUs (0–100).
    pub cpu_percent: f64,
    /// The 1-minute load average.
    pub load_1min: f64,
    /// Memory at the end of the interval.
    pub memory: Memory,
    /// Disk space at the end of the interval.
    pub disk: Disk,
    /// Bytes received per second over every interface but loopback.
    pub network_received_per_second: f64,
    /// Bytes sent per second over every interface but loopback.
    pub network_sent_per_second: f64,
    /// Each interface, loopback included.
    pub interfaces: Vec<InterfaceRate>,
    /// The broker process.
    pub process: Process,
}
