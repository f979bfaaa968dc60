//! `shardmq status`: prints the status history the monitor writes to Postgres, as a table.

use clap::Args;

use crate::config::Settings;
use crate::monitor::history;
use crate::status::row::StatusRow;

/// Arguments of `shardmq status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Postgres URL (default: the configured monitor.postgres_url).
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,
    /// How far back: a number with a unit, s, m, h or d (e.g. 90s, 15m, 1h, 2d).
    #[arg(long, default_value = "1h", value_parser = parse_since)]
    pub since: f64,
}

/// Reads and prints the rows; the Postgres URL defaults to the configuration's.
pub fn run(args: &StatusArgs, settings: &Settings) -> anyhow::Result<()> {
    let Some(url) = args
        .postgres
        .as_deref()
        .or(settings.monitor.postgres_url.as_deref())
    else {
        anyhow::bail!("no Postgres URL: pass --postgres URL or set monitor.postgres_url");
    };
    let mut client = history::connect(url)?;
    let rows = history::rows_since(&mut client, args.since)?;
    print!("{}", table(&rows));
    Ok(())
}

/// Parses `90s`, `15m`, `1h`, `2d` (or plain seconds) into seconds.
fn parse_since(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return Err(format!("unknown unit {unit:?}: use s, m, h or d")),
    };
    match number.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n * scale),
        _ => Err(format!("{text:?} is not a positive duration such as 1h")),
    }
}

const HEADER: [&str; 13] = [
    "time (UTC)",
    "clients",
    "subs",
    "msg in/s",
    "msg out/s",
    "bytes in/s",
    "bytes out/s",
    "dropped",
    "cpu %",
    "memory used",
    "disk free",
    "net in/s",
    "net out/s",
];

fn table(rows: &[(String, StatusRow)]) -> String {
    let cells: Vec<[String; 13]> = rows
        .iter()
        .map(|(time, row)| {
            [
                time.clone(),
                row.clients.to_string(),
                row.subscriptions.to_string(),
                format!("{:.1}", row.messages_in_per_second),
                format!("{:.1}", row.messages_out_per_second),
                bytes(row.bytes_in_per_second),
                bytes(row.bytes_out_per_second),
                row.dropped.to_string(),
                format!("{:.1}", row.cpu_percent),
                format!(
                    "{} / {}",
                    bytes(row.memory_used as f64),
                    bytes(row.memory_total as f64)
                ),
                bytes(row.disk_free as f64),
                bytes(row.network_in_per_second),
                bytes(row.network_out_per_second),
            ]
        })
        .collect();
    let mut widths = HEADER.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: &[&str]| {
        let mut out = String::new();
        for (n, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if n == 0 {
                out.push_str(&format!("{cell:<width$}"));
            } else {
                out.push_str(&format!("  {cell:>width$}"));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(&HEADER);
    for row in &cells {
        out.push_str(&line(&row.each_ref().map(String::as_str)));
    }
    if rows.is_empty() {
        out.push_str("(no rows in this period)\n");
    }
    out
}

/// Formats a byte count with a binary unit (`512 B`, `1.5 KiB`, `2.0 GiB`).
pub(super) fn bytes(value: f64) -> String {
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

    #[test]
    fn parses_durations() {
        assert_eq!(parse_since("1h"), Ok(3600.0));
        assert_eq!(parse_since("90s"), Ok(90.0));
        assert_eq!(parse_since("15m"), Ok(900.0));
        assert_eq!(parse_since("2d"), Ok(172800.0));
        assert_eq!(parse_since("30"), Ok(30.0));
        assert!(parse_since("1y").is_err());
        assert!(parse_since("-1h").is_err());
        assert!(parse_since("h").is_err());
    }

    #[test]
    fn aligned_table() {
        let row = StatusRow {
            clients: 12,
            messages_in_per_second: 1.5,
            memory_used: 1024,
            memory_total: 2048,
            ..StatusRow::default()
        };
        let text = table(&[("2026-01-01 00:00:00".into(), row)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), lines[1].len());
        assert!(lines[1].contains("1.0 KiB / 2.0 KiB"));
        assert!(table(&[]).contains("no rows"));
    }
}
