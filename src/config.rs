//! Configuration: a TOML file whose keys are the command-line flags' names, overridden by the
//! flags themselves. Unknown keys and bad values are errors that name the file, line and key.

use std::net::SocketAddr;
use std::num::{NonZeroU16, NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use shardmq_shard::{SessionLimits, ShardConfig};

/// Broker settings; every field is both a TOML key and a `--flag` of the same name.
#[derive(Args, Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Settings {
    /// Address to listen on for MQTT over TCP (repeatable). Default: 127.0.0.1:1883.
    #[arg(long = "listen", value_name = "ADDR")]
    #[serde(default)]
    pub listen: Vec<SocketAddr>,
    /// Number of shards (one pinned core each). Default: every available core.
    #[arg(long)]
    pub shards: Option<NonZeroUsize>,
    /// Pin each shard to its own core (default true).
    #[arg(long)]
    pub pin_cores: Option<bool>,
    /// Most connections the broker holds at once.
    #[arg(long)]
    pub max_connections: Option<NonZeroUsize>,
    /// Largest packet accepted, in bytes (default 1 MiB).
    #[arg(long)]
    pub max_packet_size: Option<NonZeroU32>,
    /// Seconds a new connection may take to send CONNECT (default 10).
    #[arg(long)]
    pub connect_timeout: Option<NonZeroU32>,
    /// Unacknowledged QoS 1/2 messages per client (default 32).
    #[arg(long)]
    pub max_inflight_messages: Option<NonZeroU16>,
    /// QoS 1/2 messages queued for an offline persistent session (default 1000).
    #[arg(long)]
    pub max_queued_messages: Option<NonZeroUsize>,
    /// QoS 1/2 messages queued behind the inflight window of a connected client (default 100000).
    #[arg(long)]
    pub max_queued_messages_online: Option<NonZeroUsize>,
    /// Also queue QoS 0 messages for offline persistent sessions (default false).
    #[arg(long)]
    pub queue_qos0_messages: Option<bool>,
    /// Bytes waiting for a client's socket before it counts as a slow consumer (default 1 MiB).
    #[arg(long)]
    pub max_outbox_bytes: Option<NonZeroUsize>,
    /// Capacity of each inter-shard ring, in messages (default 4096).
    #[arg(long)]
    pub mesh_capacity: Option<NonZeroUsize>,
    /// Accept clients without a user name. Default: only when no authentication is configured
    /// and every listener is on loopback (as Mosquitto 2 does).
    #[arg(long)]
    pub allow_anonymous: Option<bool>,
    /// Mosquitto-compatible password file (`user:hash` lines; see `shardmq passwd`).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Mosquitto-compatible ACL file (`user`, `topic`, `pattern` lines; `%u %c %f %F`).
    #[arg(long, value_name = "FILE")]
    pub acl_file: Option<PathBuf>,
    /// Follow relations, one line per user: `<user> <followee> ...` (for `%f` and `%F`).
    #[arg(long, value_name = "FILE")]
    pub relations_file: Option<PathBuf>,
    /// Auto-subscribe table: `<filter-template> <qos>` lines, per user after `user <name>`.
    #[arg(long, value_name = "FILE")]
    pub auto_subscribe_file: Option<PathBuf>,
    /// CPU to pin the control core thread to (default: not pinned).
    #[arg(long)]
    pub control_core: Option<usize>,
    /// Failed logins from one address or for one user name, within a minute, before a ban
    /// (default 10; 0 disables banning).
    #[arg(long)]
    pub max_login_failures: Option<u32>,
    /// Seconds a ban lasts (default 300).
    #[arg(long)]
    pub ban_seconds: Option<NonZeroU32>,
    /// Seconds between `$SYS` publications (default 10; 0 disables them).
    #[arg(long)]
    pub sys_interval: Option<u32>,
    /// Topics each shard tracks per second for hot-topic statistics (default 10000; 0 disables
    /// them).
    #[arg(long)]
    pub hot_topics_max: Option<usize>,
    /// Topic filter whose matching topics count in the hot-topic statistics (repeatable).
    /// Default: every topic.
    #[arg(long = "hot-topics-filters", value_name = "FILTER")]
    #[serde(default)]
    pub hot_topics_filters: Vec<String>,
    #[command(flatten)]
    #[serde(default)]
    pub admin: AdminSettings,
    #[command(flatten)]
    #[serde(default)]
    pub monitor: MonitorSettings,
    #[command(flatten)]
    #[serde(default)]
    pub redis: RedisSettings,
}

/// The `[redis]` table (flags `--redis-<key>`): the Redis access-control backend.
#[derive(Args, Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// Redis holding users, ACL rules, relations and auto-subscribe tables, e.g.
    /// `redis://127.0.0.1:6379/0` (default: none, the embedded files are used).
    #[arg(id = "redis_url", long = "redis-url", value_name = "URL")]
    pub url: Option<String>,
}

/// The `[admin]` table (flags `--admin-<key>`): the HTTP admin API.
#[derive(Args, Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// Address of the HTTP admin API (default 127.0.0.1:18083; an empty string disables it).
    #[arg(id = "admin_listen", long = "admin-listen", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Bearer token the admin API requires; needed to listen on a non-loopback address.
    #[arg(id = "admin_token", long = "admin-token", value_name = "TOKEN")]
    pub token: Option<String>,
}

/// The `[monitor]` table (flags `--monitor-<key>`): status history and host figures.
#[derive(Args, Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorSettings {
    /// Postgres URL for the status history, e.g. `postgresql://user@127.0.0.1/db` (default:
    /// none, no history).
    #[arg(
        id = "monitor_postgres_url",
        long = "monitor-postgres-url",
        value_name = "URL"
    )]
    pub postgres_url: Option<String>,
    /// Seconds between status history rows (default 10).
    #[arg(
        id = "monitor_interval",
        long = "monitor-interval",
        value_name = "SECONDS"
    )]
    pub interval: Option<NonZeroU32>,
    /// Directory whose file system's free space is reported (default: the current directory).
    #[arg(id = "monitor_data_dir", long = "monitor-data-dir", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl AdminSettings {
    /// The address to listen on, `None` when disabled (`listen = ""`).
    pub fn address(&self) -> anyhow::Result<Option<SocketAddr>> {
        match self.listen.as_deref().map(str::trim) {
            None => Ok(Some(crate::admin::DEFAULT_LISTEN)),
            Some("") => Ok(None),
            Some(text) => text.parse().map(Some).with_context(|| {
                format!("admin.listen {text:?} is not an address like 127.0.0.1:18083")
            }),
        }
    }
}

impl Settings {
    /// Reads `path` as TOML.
    pub fn from_file(path: &Path) -> anyhow::Result<Settings> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).map_err(|err| {
            anyhow::anyhow!(
                "config file {}: {}",
                path.display(),
                err.to_string().trim_end()
            )
        })
    }

    /// `self` with every value that `flags` sets replaced.
    pub fn overridden_by(mut self, flags: Settings) -> Settings {
        if !flags.listen.is_empty() {
            self.listen = flags.listen;
        }
        macro_rules! take {
            ($($($field:ident).+),*) => { $( if flags.$($field).+.is_some() { self.$($field).+ = flags.$($field).+; } )* };
        }
        take!(
            shards,
            pin_cores,
            max_connections,
            max_packet_size,
            connect_timeout,
            max_inflight_messages,
            max_queued_messages,
            max_queued_messages_online,
            queue_qos0_messages,
            max_outbox_bytes,
            mesh_capacity,
            allow_anonymous,
            password_file,
            acl_file,
            relations_file,
            auto_subscribe_file,
            control_core,
            max_login_failures,
            ban_seconds,
            sys_interval,
            hot_topics_max
        );
        if !flags.hot_topics_filters.is_empty() {
            self.hot_topics_filters = flags.hot_topics_filters;
        }
        take!(admin.listen, admin.token);
        take!(monitor.postgres_url, monitor.interval, monitor.data_dir);
        take!(redis.url);
        self
    }

    /// The hot-topic filters, each checked to be a valid topic filter.
    pub fn hot_topics_filters(&self) -> anyhow::Result<Vec<String>> {
        for filter in &self.hot_topics_filters {
            if !shardmq_codec::topic::valid_filter(filter) {
                anyhow::bail!("hot_topics_filters: {filter:?} is not a valid topic filter");
            }
        }
        Ok(self.hot_topics_filters.clone())
    }

    /// The shard configuration these settings describe.
    pub fn shard_config(&self) -> ShardConfig {
        let defaults = ShardConfig::default();
        let session_defaults = SessionLimits::default();
        let listen = if self.listen.is_empty() {
            vec![SocketAddr::from(([127, 0, 0, 1], 1883))]
        } else {
            self.listen.clone()
        };
        let shards = self
            .shards
            .map(NonZeroUsize::get)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, NonZeroUsize::get));
        ShardConfig {
            listen,
            shards,
            max_packet_size: self
                .max_packet_size
                .map_or(defaults.max_packet_size, |v| v.get() as usize),
            connect_timeout: self.connect_timeout.map_or(defaults.connect_timeout, |v| {
                Duration::from_secs(v.get().into())
            }),
            max_connections: self
                .max_connections
                .map_or(defaults.max_connections, NonZeroUsize::get),
            session: SessionLimits {
                inflight: self
                    .max_inflight_messages
                    .map_or(session_defaults.inflight, NonZeroU16::get),
                max_queued: self
                    .max_queued_messages
                    .map_or(session_defaults.max_queued, NonZeroUsize::get),
                max_queued_online: self
                    .max_queued_messages_online
                    .map_or(session_defaults.max_queued_online, NonZeroUsize::get),
                queue_qos0_offline: self
                    .queue_qos0_messages
                    .unwrap_or(session_defaults.queue_qos0_offline),
                max_outbox_bytes: self
                    .max_outbox_bytes
                    .map_or(session_defaults.max_outbox_bytes, NonZeroUsize::get),
                ..session_defaults
            },
            mesh_capacity: self
                .mesh_capacity
                .map_or(defaults.mesh_capacity, NonZeroUsize::get),
            shutdown_grace: defaults.shutdown_grace,
            hot_topics_max: self.hot_topics_max.unwrap_or(defaults.hot_topics_max),
            limits: defaults.limits.clone(),
        }
    }
}

/// The `--config` flag.
#[derive(Args, Clone, Debug, Default)]
pub struct ConfigFile {
    /// TOML configuration file; flags override its values.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Settings> {
        let dir = std::env::temp_dir().join(format!("shardmq-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.toml", text.len()));
        std::fs::write(&path, text)?;
        Settings::from_file(&path)
    }

    #[test]
    fn reads_keys_named_like_flags() {
        let settings =
            parse("listen = [\"127.0.0.1:0\"]\nshards = 2\nmax_inflight_messages = 7\n").unwrap();
        let config = settings.shard_config();
        assert_eq!(config.shards, 2);
        assert_eq!(config.listen[0].port(), 0);
        assert_eq!(config.session.inflight, 7);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = parse("shards = 2\nbogus_key = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains(".toml"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("bogus_key"), "{err}");
    }

    #[test]
    fn bad_values_name_line_and_key() {
        let err = parse("listen = [\"not an address\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
        let err = parse("\nshards = 0\n").unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("shards"), "{err}");
    }

    #[test]
    fn monitoring_keys_and_tables() {
        let settings = parse(
            "sys_interval = 0\nhot_topics_max = 0\nhot_topics_filters = [\"chat/#\"]\n\
             [admin]\nlisten = \"\"\ntoken = \"t\"\n\
             [monitor]\npostgres_url = \"postgresql://u@127.0.0.1/db\"\ninterval = 5\n",
        )
        .unwrap();
        assert_eq!(settings.sys_interval, Some(0));
        assert_eq!(settings.shard_config().hot_topics_max, 0);
        assert_eq!(settings.hot_topics_filters().unwrap(), vec!["chat/#"]);
        assert_eq!(settings.admin.address().unwrap(), None);
        assert_eq!(settings.admin.token.as_deref(), Some("t"));
        assert_eq!(settings.monitor.interval, NonZeroU32::new(5));
        assert_eq!(
            Settings::default()
                .admin
                .address()
                .unwrap()
                .map(|a| a.port()),
            Some(18083)
        );
        assert_eq!(Settings::default().shard_config().hot_topics_max, 10_000);

        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            settings: Settings,
        }
        let flags = <Flags as clap::Parser>::parse_from([
            "shardmq",
            "--sys-interval",
            "1",
            "--admin-listen",
            "127.0.0.1:0",
            "--monitor-interval",
            "2",
            "--hot-topics-filters",
            "a/+",
            "--hot-topics-filters",
            "b/#",
        ])
        .settings;
        let merged = settings.overridden_by(flags);
        assert_eq!(merged.sys_interval, Some(1));
        assert_eq!(merged.admin.address().unwrap().map(|a| a.port()), Some(0));
        assert_eq!(merged.admin.token.as_deref(), Some("t"));
        assert_eq!(merged.monitor.interval, NonZeroU32::new(2));
        assert_eq!(merged.hot_topics_filters, vec!["a/+", "b/#"]);
    }

    #[test]
    fn bad_monitoring_values_are_named() {
        let err = parse("\n\n[admin]\nlisten = 18083\n# an admin table with a number for listen\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 4") && err.contains("listen"), "{err}");
        let err = parse(
            "[monitor]\npostgres = \"x\"\n# the key is postgres_url, not postgres; padding\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 2") && err.contains("postgres"), "{err}");
        let settings = Settings {
            hot_topics_filters: vec!["a/#/b".into()],
            admin: AdminSettings {
                listen: Some("nowhere".into()),
                token: None,
            },
            ..Settings::default()
        };
        assert!(settings.hot_topics_filters().is_err());
        assert!(settings.admin.address().is_err());
    }

    #[test]
    fn redis_table_and_flag() {
        let settings =
            parse("[redis]\nurl = \"redis://127.0.0.1:6379/0\"\n# the redis table, padded more\n")
                .unwrap();
        assert_eq!(
            settings.redis.url.as_deref(),
            Some("redis://127.0.0.1:6379/0")
        );
        let err = parse(
            "\n[redis]\nurl = \"redis://x\"\nhost = \"x\"\n# unknown key in the redis table\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 4") && err.contains("host"), "{err}");
        let err =
            parse("redis_url = \"redis://x\"\n# the flag name is no top-level key; padding\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("redis_url"), "{err}");

        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            settings: Settings,
        }
        let flags =
            <Flags as clap::Parser>::parse_from(["shardmq", "--redis-url", "redis://127.0.0.1:1/"])
                .settings;
        let merged = settings.overridden_by(flags);
        assert_eq!(merged.redis.url.as_deref(), Some("redis://127.0.0.1:1/"));
    }

    #[test]
    fn flags_override_file() {
        let file = Settings {
            shards: NonZeroUsize::new(4),
            ..Settings::default()
        };
        let flags = Settings {
            shards: NonZeroUsize::new(2),
            ..Settings::default()
        };
        assert_eq!(file.overridden_by(flags).shards, NonZeroUsize::new(2));
    }
}
