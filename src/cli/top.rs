//! `shardmq top`: a live view of a running broker's figures, as `top` shows processes.
//!
//! Every `--interval` seconds it reads `GET /api/v1/stats` and `GET /api/v1/topics/hot` through
//! [`AdminClient`] and prints one frame: clients, messages and bytes in and out per second,
//! drops by cause, failed logins and bans, host and broker-process CPU and memory, one line per
//! shard, and the hot topics. Rates are computed here, from two successive samples: the
//! difference of each counter over the difference of the samples' `sampled_at` (when the
//! monitor read the figures, which it does once a second), so a sample that arrives late or
//! early does not distort them. A sample whose figures are not newer than the last frame's is
//! not shown; the next one is awaited (so is the monitor's first reading, on a broker that has
//! just started).
//!
//! On a terminal each frame clears the screen first (ANSI `ESC[2J ESC[H`, nothing more); piped,
//! frames follow one another, separated by a blank line. `--once` prints one frame and exits,
//! its rates taken over two samples `--interval` apart (for scripts and tests).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde_json::Value;

use super::admin_client::{AdminArgs, AdminClient};
use super::status::bytes;
use crate::config::Settings;
use crate::status::hot::Ranking;

/// Arguments of `shardmq top`.
#[derive(Args, Debug)]
pub struct TopArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Seconds between frames (decimals allowed); with --once, between the two samples its
    /// rates are computed from.
    #[arg(long, default_value = "1", value_parser = parse_interval, value_name = "SECONDS")]
    pub interval: Duration,
    /// Prints one frame and exits.
    #[arg(long)]
    pub once: bool,
    /// Hot topics shown.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
}

/// Longest `--once` waits, beyond the interval, for the monitor to publish newer figures.
const NEWER_FIGURES: Duration = Duration::from_secs(5);

/// How often `--once` asks again while the figures are not newer.
const POLL: Duration = Duration::from_millis(100);

/// Prints frames until interrupted, or one frame with `--once`.
pub fn run(args: &TopArgs, settings: &Settings) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.admin, settings)?;
    let hot_path = format!("/api/v1/topics/hot?top={}", args.top);
    let sample = || -> anyhow::Result<Sample> {
        Ok(Sample {
            stats: client.get_json("/api/v1/stats")?,
            hot: client.get_json(&hot_path)?,
            taken: Instant::now(),
        })
    };
    let terminal = std::io::stdout().is_terminal();
    let mut previous = sample()?;
    if args.once {
        let deadline = Instant::now() + NEWER_FIGURES;
        while !previous.ready() && Instant::now() < deadline {
            std::thread::sleep(POLL);
            previous = sample()?;
        }
    }
    let mut first = true;
    loop {
        std::thread::sleep(args.interval);
        let mut current = sample()?;
        if args.once {
            let deadline = Instant::now() + NEWER_FIGURES;
            while !current.newer_than(&previous) && Instant::now() < deadline {
                std::thread::sleep(POLL);
                current = sample()?;
            }
            print!("{}", frame(&previous, &current, args.top));
            return Ok(());
        }
        if !previous.ready() {
            previous = current;
            continue;
        }
        if !current.newer_than(&previous) {
            continue;
        }
        let text = frame(&previous, &current, args.top);
        let mut stdout = std::io::stdout().lock();
        let written = if terminal {
            write!(stdout, "\x1b[2J\x1b[H{text}")
        } else if first {
            write!(stdout, "{text}")
        } else {
            write!(stdout, "\n{text}")
        };
        written
            .and_then(|()| stdout.flush())
            .context("writing to stdout")?;
        first = false;
        previous = current;
    }
}

/// `--interval`: positive seconds, at most an hour.
fn parse_interval(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(seconds > 0.0 && seconds <= 3600.0) {
        return Err(format!(
            "{text}: expected more than 0 and at most 3600 seconds"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// What the admin API said at one moment.
struct Sample {
    stats: Value,
    hot: Ranking,
    /// When the answer arrived here (for a broker that does not say `sampled_at`).
    taken: Instant,
}

impl Sample {
    /// When the monitor read the figures; `None` from a broker that does not say.
    fn sampled_at(&self) -> Option<f64> {
        self.stats.get("sampled_at").map(number)
    }

    /// Whether the figures are the monitor's (not the empty ones before its first reading).
    fn ready(&self) -> bool {
        self.sampled_at().is_none_or(|at| at > 0.0)
    }

    /// Whether the monitor read these figures after `earlier`'s.
    fn newer_than(&self, earlier: &Sample) -> bool {
        match (self.sampled_at(), earlier.sampled_at()) {
            (Some(now), Some(before)) => now > before,
            (now, _) => now.is_none_or(|at| at > 0.0),
        }
    }

    /// Seconds from `earlier` to this sample: by the monitor's clock when both say, else by
    /// when the answers arrived.
    fn seconds_since(&self, earlier: &Sample) -> f64 {
        match (self.sampled_at(), earlier.sampled_at()) {
            (Some(now), Some(before)) if before > 0.0 && now > before => now - before,
            _ => self
                .taken
                .saturating_duration_since(earlier.taken)
                .as_secs_f64(),
        }
    }
}

fn number(value: &Value) -> f64 {
    value.as_f64().unwrap_or(0.0)
}

/// Per-second rates between two samples.
struct Rates<'a> {
    before: &'a Value,
    after: &'a Value,
    seconds: f64,
}

impl Rates<'_> {
    /// The rate of the counter at JSON pointer `pointer` (a counter that went back, after a
    /// restart, counts from zero).
    fn of(&self, pointer: &str) -> f64 {
        let value = |stats: &Value| stats.pointer(pointer).map_or(0.0, number);
        let after = value(self.after);
        let delta = after - value(self.before);
        let delta = if delta < 0.0 { after } else { delta };
        if self.seconds > 0.0 {
            delta / self.seconds
        } else {
            0.0
        }
    }
}

/// Drop figures, by cause, as the frame names them.
const DROPS: [(&str, &str); 4] = [
    ("dropped_slow", "slow"),
    ("dropped_queue_full", "queue full"),
    ("dropped_denied", "denied"),
    ("mesh_dropped", "mesh"),
];

/// Failed-login reasons, as the frame names them.
const FAILURES: [(&str, &str); 4] = [
    ("bad_password", "bad password"),
    ("unknown_user", "unknown user"),
    ("not_authorized", "not authorized"),
    ("banned", "banned"),
];

/// One frame: the figures of `current`, with rates since `previous`.
fn frame(previous: &Sample, current: &Sample, top: usize) -> String {
    let stats = &current.stats;
    let seconds = current.seconds_since(previous);
    let rates = Rates {
        before: &previous.stats,
        after: stats,
        seconds,
    };
    let total = |name: &str| number(&stats["total"][name]);
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(format!(
        "shardmq {}  up {}  {} shards  rates over {seconds:.1} s",
        stats["version"].as_str().unwrap_or("?"),
        uptime(number(&stats["uptime_seconds"]) as u64),
        number(&stats["shard_count"]),
    ));
    line(format!(
        "clients   connected {}   offline sessions {}   maximum {}   subscriptions {}   retained {}",
        total("connections"),
        total("sessions_offline"),
        number(&stats["clients_maximum"]),
        total("subscriptions"),
        total("retained"),
    ));
    line(format!(
        "messages  in {:.1}/s   out {:.1}/s   total in {}   out {}",
        rates.of("/total/messages_received"),
        rates.of("/total/messages_delivered"),
        total("messages_received"),
        total("messages_delivered"),
    ));
    line(format!(
        "bytes     in {}/s   out {}/s   total in {}   out {}",
        bytes(rates.of("/total/bytes_received")),
        bytes(rates.of("/total/bytes_sent")),
        bytes(total("bytes_received")),
        bytes(total("bytes_sent")),
    ));
    let drops: Vec<String> = DROPS
        .iter()
        .map(|(name, label)| format!("{label} {}", total(name)))
        .collect();
    let drop_rate: f64 = DROPS
        .iter()
        .map(|(name, _)| rates.of(&format!("/total/{name}")))
        .sum();
    line(format!(
        "drops     {}   now {drop_rate:.1}/s",
        drops.join("   ")
    ));
    let logins = &stats["logins"];
    let failures: Vec<String> = FAILURES
        .iter()
        .map(|(name, label)| format!("{label} {}", number(&logins["failures"][name])))
        .collect();
    line(format!(
        "logins    failed: {}   bans active {}, issued {}",
        failures.join(", "),
        number(&logins["bans_active"]),
        number(&logins["bans_issued"]),
    ));
    let system = &stats["system"];
    line(format!(
        "host      cpu {:.1}%   load {:.2}   memory {} / {}",
        number(&system["cpu_percent"]),
        number(&system["load_1min"]),
        bytes(number(&system["memory"]["used"])),
        bytes(number(&system["memory"]["total"])),
    ));
    if let Some(process) = system.get("process") {
        line(format!(
            "broker    cpu {:.1}%   memory {}",
            number(&process["cpu_percent"]),
            bytes(number(&process["rss_bytes"])),
        ));
    }
    line(String::new());
    line(format!(
        "{:>5}  {:>11}  {:>7}  {:>13}  {:>9}  {:>9}  {:>11}  {:>11}  {:>7}",
        "shard",
        "connections",
        "offline",
        "subscriptions",
        "msg in/s",
        "msg out/s",
        "bytes in/s",
        "bytes out/s",
        "dropped"
    ));
    let empty = Vec::new();
    let shards = stats["shards"].as_array().unwrap_or(&empty);
    for (index, shard) in shards.iter().enumerate() {
        let figure = |name: &str| number(&shard[name]);
        let rate = |name: &str| rates.of(&format!("/shards/{index}/{name}"));
        let dropped: f64 = DROPS.iter().map(|(name, _)| figure(name)).sum();
        line(format!(
            "{:>5}  {:>11}  {:>7}  {:>13}  {:>9.1}  {:>9.1}  {:>11}  {:>11}  {:>7}",
            figure("shard"),
            figure("connections"),
            figure("sessions_offline"),
            figure("subscriptions"),
            rate("messages_received"),
            rate("messages_delivered"),
            bytes(rate("bytes_received")),
            bytes(rate("bytes_sent")),
            dropped,
        ));
    }
    if top > 0 {
        line(String::new());
        line(format!(
            "{:>4}  {:>12}  {:>10}  topic",
            "rank", "publishes", "per second"
        ));
        for (rank, topic) in current.hot.topics.iter().take(top).enumerate() {
            let before = previous
                .hot
                .topics
                .iter()
                .find(|earlier| earlier.topic == topic.topic)
                .map_or(0, |earlier| earlier.publishes);
            let per_second = if seconds > 0.0 {
                topic.publishes.saturating_sub(before) as f64 / seconds
            } else {
                0.0
            };
            line(format!(
                "{:>4}  {:>12}  {per_second:>10.1}  {}",
                rank + 1,
                topic.publishes,
                topic.topic
            ));
        }
        if current.hot.topics.is_empty() {
            line("      (no publications counted yet)".to_owned());
        }
    }
    out
}

/// `3d 04:05:06`, or `04:05:06` under a day.
fn uptime(seconds: u64) -> String {
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let clock = format!(
        "{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    );
    if days > 0 {
        format!("{days}d {clock}")
    } else {
        clock
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::status::hot::TopicRank;

    fn sample(sampled_at: f64, received: u64, publishes: u64) -> Sample {
        Sample {
            stats: json!({
                "version": "0.1.0",
                "uptime_seconds": 3725,
                "sampled_at": sampled_at,
                "shard_count": 2,
                "clients_maximum": 4,
                "total": {"connections": 3, "messages_received": received, "dropped_slow": 2},
                "shards": [
                    {"shard": 0, "connections": 1, "messages_received": received, "dropped_slow": 2},
                    {"shard": 1, "connections": 2, "messages_received": 0},
                ],
                "system": {"cpu_percent": 12.5, "memory": {"used": 1024, "total": 2048}},
                "logins": {"failures": {"banned": 4}, "bans_active": 1, "bans_issued": 2},
            }),
            hot: Ranking {
                topics: vec![TopicRank {
                    topic: "a/b".into(),
                    publishes,
                }],
                ..Ranking::default()
            },
            taken: Instant::now(),
        }
    }

    #[test]
    fn rates_come_from_the_samples_own_times() {
        let before = sample(100.0, 1000, 10);
        let after = sample(102.0, 1300, 50);
        assert!(after.newer_than(&before) && !before.newer_than(&after));
        let starting = sample(0.0, 0, 0);
        assert!(!starting.ready() && before.ready());
        assert!(!starting.newer_than(&starting) && before.newer_than(&starting));
        let text = frame(&before, &after, 5);
        assert!(
            text.starts_with("shardmq 0.1.0  up 01:02:05  2 shards  rates over 2.0 s\n"),
            "{text}"
        );
        assert!(
            text.contains("connected 3   offline sessions 0   maximum 4"),
            "{text}"
        );
        assert!(
            text.contains("messages  in 150.0/s   out 0.0/s   total in 1300"),
            "{text}"
        );
        assert!(
            text.contains("drops     slow 2   queue full 0   denied 0   mesh 0   now 0.0/s"),
            "{text}"
        );
        assert!(
            text.contains("banned 4   bans active 1, issued 2"),
            "{text}"
        );
        assert!(text.contains("host      cpu 12.5%"), "{text}");
        assert!(
            !text.contains("broker    cpu"),
            "no process figures in these stats: {text}"
        );
        let shard0 = text
            .lines()
            .find(|line| line.trim_start().starts_with("0 "))
            .expect("shard 0's line");
        let cells: Vec<&str> = shard0.split_whitespace().collect();
        assert_eq!(cells[..5], ["0", "1", "0", "0", "150.0"], "{shard0}");
        assert_eq!(cells.last(), Some(&"2"), "dropped: {shard0}");
        assert!(
            text.ends_with("   1            50        20.0  a/b\n"),
            "{text}"
        );
        assert!(text.lines().all(|line| line == line.trim_end()), "{text}");
        assert!(!text.contains('\x1b'), "no escape sequences in a frame");
    }

    #[test]
    fn intervals_and_uptimes() {
        assert_eq!(parse_interval("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("2"), Ok(Duration::from_secs(2)));
        assert!(parse_interval("0").is_err());
        assert!(parse_interval("-1").is_err());
        assert!(parse_interval("NaN").is_err());
        assert!(parse_interval("soon").is_err());
        assert_eq!(uptime(59), "00:00:59");
        assert_eq!(uptime(90_061), "1d 01:01:01");
    }
}
