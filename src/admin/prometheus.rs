//! `/metrics` in the Prometheus text exposition format (version 0.0.4).
//!
//! The broker figures are generated from `Snapshot::figures()`, so a figure added to a shard
//! appears here without an edit. Each figure gives two families: `shardmq_<name>` for the
//! broker and `shardmq_shard_<name>{shard="<n>"}` per shard, so that `sum()` over the per-shard
//! family never counts the broker total twice. Names keep the figures' own names (no `_total`
//! suffix is added, since some already end in it). Host figures from the monitor follow as
//! `shardmq_system_*` gauges, the broker process's as `shardmq_process_*`, and the control
//! core's login figures as `shardmq_login_failures{reason="..."}`, `shardmq_bans_issued` and
//! `shardmq_bans_active`.

use std::fmt::Write;

use shardmq_shard::stats::Kind;

use crate::status::logins::{Failure, Logins};
use crate::status::Status;

/// The `Content-Type` of the exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders every metric.
pub fn render(status: &Status, hot_untracked: u64, logins: &Logins) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let total = status.figures.total.figures();
    for (index, (name, kind, value, help)) in total.iter().enumerate() {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        family(&mut out, &format!("shardmq_{name}"), kind, help);
        let _ = writeln!(out, "shardmq_{name} {value}");
        family(
            &mut out,
            &format!("shardmq_shard_{name}"),
            kind,
            &format!("{help} Per shard."),
        );
        for (shard, figures) in status.figures.shards.iter().enumerate() {
            if let Some((_, _, value, _)) = figures.figures().get(index) {
                let _ = writeln!(out, "shardmq_shard_{name}{{shard=\"{shard}\"}} {value}");
            }
        }
    }
    let gauges: [(&str, &str, f64); 13] = [
        (
            "uptime_seconds",
            "Seconds since the broker started.",
            status.uptime as f64,
        ),
        (
            "clients_maximum",
            "Most clients connected at once since start.",
            status.clients_maximum as f64,
        ),
        (
            "system_cpu_percent",
            "Host CPU busy over the last second, percent of all CPUs.",
            status.system.cpu_percent,
        ),
        (
            "system_load_1min",
            "Host 1-minute load average.",
            status.system.load_1min,
        ),
        (
            "system_memory_used_bytes",
            "Host memory in use.",
            status.system.memory.used as f64,
        ),
        (
            "system_memory_total_bytes",
            "Host memory.",
            status.system.memory.total as f64,
        ),
        (
            "system_disk_free_bytes",
            "Space available on the data directory's file system.",
            status.system.disk.free as f64,
        ),
        (
            "system_disk_total_bytes",
            "Size of the data directory's file system.",
            status.system.disk.total as f64,
        ),
        (
            "system_network_received_bytes_per_second",
            "Host bytes received per second over the last second, loopback excluded.",
            status.system.network_received_per_second,
        ),
        (
            "system_network_sent_bytes_per_second",
            "Host bytes sent per second over the last second, loopback excluded.",
            status.system.network_sent_per_second,
        ),
        (
            "process_resident_memory_bytes",
            "Resident memory of the broker process.",
            status.system.process.rss_bytes as f64,
        ),
        (
            "process_cpu_percent",
            "CPU used by the broker process over the last second, percent of one CPU.",
            status.system.process.cpu_percent,
        ),
        (
            "hot_topics_untracked",
            "Publications counted in no ranked hot topic (over the tracking bounds).",
            hot_untracked as f64,
        ),
    ];
    for (name, help, value) in gauges {
        family(&mut out, &format!("shardmq_{name}"), "gauge", help);
        let _ = writeln!(out, "shardmq_{name} {value}");
    }
    family(
        &mut out,
        "shardmq_login_failures",
        "counter",
        "Failed logins since start, by reason (bad_password, unknown_user, not_authorized, banned).",
    );
    for reason in Failure::ALL {
        let _ = writeln!(
            out,
            "shardmq_login_failures{{reason=\"{}\"}} {}",
            reason.name(),
            logins.failures.get(reason)
        );
    }
    family(
        &mut out,
        "shardmq_bans_issued",
        "counter",
        "Source addresses banned for failed logins since start.",
    );
    let _ = writeln!(out, "shardmq_bans_issued {}", logins.bans_issued);
    family(
        &mut out,
        "shardmq_bans_active",
        "gauge",
        "Source addresses banned now.",
    );
    let _ = writeln!(out, "shardmq_bans_active {}", logins.bans_active);
    family(&mut out, "shardmq_info", "gauge", "Broker version.");
    let _ = writeln!(
        out,
        "shardmq_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use shardmq_shard::stats::Snapshot;

    use super::*;
    use crate::status::figures::Figures;

    #[test]
    fn every_sample_has_help_and_type() {
        let shard = Snapshot {
            connections: 2,
            messages_received: 7,
            ..Snapshot::default()
        };
        let status = Status {
            figures: Figures::new(vec![shard, shard]),
            ..Status::default()
        };
        let logins = Logins {
            bans_active: 2,
            ..Logins::default()
        };
        let text = render(&status, 0, &logins);
        assert!(text.contains("shardmq_connections 4\n"));
        assert!(text.contains("shardmq_login_failures{reason=\"banned\"} 0\n"));
        assert!(text.contains("shardmq_bans_active 2\n"));
        assert!(text.contains("shardmq_shard_messages_received{shard=\"1\"} 7\n"));
        assert!(text.contains("# TYPE shardmq_messages_received counter\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
