//! Operator commands that read a running broker's monitoring: `shardmq hot-topics` (from the
//! admin API) and `shardmq status` (from the Postgres history). Each reads its defaults from the
//! same configuration as the broker (`--config`), so `shardmq --config broker.toml status` finds
//! the broker's own Postgres and admin address.

pub mod hot_topics;
pub mod status;

pub use hot_topics::HotTopicsArgs;
pub use status::StatusArgs;

/// Formats a byte count with a binary unit (`512 B`, `1.5 KiB`, `2.0 GiB`).
pub fn bytes(value: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = value;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_bytes() {
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(bytes(3.0 * 1024.0 * 1024.0 * 1024.0), "3.0 GiB");
    }
}
