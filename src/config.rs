//! Configuration: a TOML file whose keys are the command-line flags' names, overridden by the
//! flags themselves. Unknown keys and bad values are errors that name the file, line and key.
//!
//! This module owns every setting: its key and flag, its default where other modules would
//! otherwise each pick one, and the rules that concern one setting alone (an admin listener beyond
//! loopback needs a token). It depends on nothing else in the binary, so start-up, the commands,
//! the monitor, the admin API and the control core all read the settings the same way.
//!
//! The four access-control files are one struct, [`AccessFiles`], shared by the broker's settings,
//! `shardmq import` and the control core's file backend. In the TOML file their keys sit at the top
//! level beside the others, as their flags do. serde's `flatten` would do that, but it buffers
//! every key its struct does not know and so loses the line of an unknown key or a bad value;
//! [`Settings::from_file`] takes those four keys aside itself ([`TakeAccessFiles`]), inside the
//! TOML reader, so every error still names its line.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::num::{NonZeroU16, NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};
use serde::Deserialize;
use shardmq_shard::config::Limits;
use shardmq_shard::shared::{Strategies, Strategy};
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
    /// MQTT 5 Receive Maximum the broker announces in its CONNACK: incoming QoS 2 messages a
    /// client may leave unreleased at once; one more closes it with 0x93 (default 65535).
    #[arg(long)]
    pub receive_maximum: Option<NonZeroU16>,
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
    /// Payload bytes one session may queue, online or offline (default 64 MiB).
    #[arg(long)]
    pub max_queued_bytes: Option<NonZeroUsize>,
    /// Largest first packet (CONNECT) accepted before authentication, in bytes (default 64 KiB).
    #[arg(long)]
    pub max_connect_size: Option<NonZeroUsize>,
    /// Connections from one address between accept and CONNACK, per shard (default 256).
    #[arg(long)]
    pub max_connecting_per_address: Option<NonZeroUsize>,
    /// Seconds a socket may take no bytes before the connection is closed (default 30).
    #[arg(long)]
    pub write_timeout: Option<NonZeroU32>,
    /// Largest keep-alive granted, in seconds; keep-alive 0 gets it too (default 65535).
    #[arg(long)]
    pub max_keepalive: Option<NonZeroU16>,
    /// Subscriptions one session may hold (default 10000).
    #[arg(long)]
    pub max_subscriptions: Option<NonZeroUsize>,
    /// Topic filters one SUBSCRIBE may carry (default 256).
    #[arg(long)]
    pub max_subscribe_filters: Option<NonZeroUsize>,
    /// Retained messages stored (default 1000000).
    #[arg(long)]
    pub max_retained_messages: Option<usize>,
    /// Payload bytes of all retained messages (default 1 GiB).
    #[arg(long)]
    pub max_retained_bytes: Option<usize>,
    /// Offline persistent sessions kept (default 1000000).
    #[arg(long)]
    pub max_offline_sessions: Option<usize>,
    /// Seconds an MQTT 3.x persistent session is kept offline; 0 keeps it (default 0).
    #[arg(long)]
    pub persistent_client_expiration: Option<u32>,
    /// Longest MQTT 5 Session Expiry Interval granted, in seconds; a client asking for more
    /// (or for 0xFFFFFFFF, never) gets this, told in the CONNACK (default: no maximum).
    #[arg(long)]
    pub max_session_expiry: Option<u32>,
    /// Longest topic name or filter, in bytes (default 4096).
    #[arg(long)]
    pub max_topic_length: Option<NonZeroUsize>,
    /// Most levels in a topic name or filter (default 128).
    #[arg(long)]
    pub max_topic_levels: Option<NonZeroUsize>,
    /// Longest client id, in bytes (default 256).
    #[arg(long)]
    pub max_client_id_length: Option<NonZeroUsize>,
    /// Longest user name, in bytes (default 256).
    #[arg(long)]
    pub max_username_length: Option<NonZeroUsize>,
    /// MQTT 5 topic aliases a client may set (default 64).
    #[arg(long)]
    pub max_topic_aliases: Option<u16>,
    /// How a shared subscription group (`$share/<group>/<filter>`, `$queue/<filter>`) picks the
    /// member for each message: `round_robin` (default), `random`, `hash_clientid`,
    /// `hash_topic`, or `local` (a member on the publishing core when there is one).
    #[arg(long, value_name = "STRATEGY")]
    pub shared_subscription_strategy: Option<SharedStrategy>,
    /// The strategy of one group, as `<group>=<strategy>` (repeatable; `$queue` names the
    /// `$queue/` group).
    #[arg(long = "shared-subscription-groups", value_name = "GROUP=STRATEGY")]
    #[serde(default)]
    pub shared_subscription_groups: Vec<GroupStrategy>,
    /// Accept clients without a user name. Default: only when no authentication is configured
    /// and every listener is on loopback (as Mosquitto 2 does).
    #[arg(long)]
    pub allow_anonymous: Option<bool>,
    /// The access-control files (keys at the top level, like the others).
    #[command(flatten)]
    #[serde(skip)]
    pub access_files: AccessFiles,
    /// CPU to pin the control core thread to (default: not pinned).
    #[arg(long)]
    pub control_core: Option<usize>,
    /// Failed logins from one address within a minute before that address is banned; failures
    /// for one user name only delay its answers (default 10; 0 disables bans and delays).
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
    /// What the log shows: `error`, `warn`, `info` (default), `debug`, `trace`, or a filter such
    /// as `info,shardmq_shard::connection=debug`. `RUST_LOG`, when set, takes precedence.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<LogLevel>,
    /// How log lines are written on stderr: `text` (default) or `json` (one object per line).
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
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

/// A log filter: a level, or `tracing` directives (`info,shardmq_shard::connection=debug`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLevel(String);

impl LogLevel {
    /// The filter's text, as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for LogLevel {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("an empty log level; use error, warn, info, debug or trace".into());
        }
        const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
        let is_level = |word: &str| LEVELS.contains(&word.to_ascii_lowercase().as_str());
        // Each directive is a level or `target=level`: a bare word that is not a level would be
        // taken as a target and silently log everything of it.
        let bad =
            text.split(',')
                .map(str::trim)
                .find(|directive| match directive.split_once('=') {
                    Some((target, level)) => target.is_empty() || !is_level(level),
                    None => !is_level(directive),
                });
        if let Some(directive) = bad {
            return Err(format!(
                "{directive:?} is not a log level (off, error, warn, info, debug, trace) or \
                 `target=level`"
            ));
        }
        tracing_subscriber::EnvFilter::builder()
            .parse(text)
            .map_err(|err| format!("{text:?} is not a log filter: {err}"))?;
        Ok(LogLevel(text.to_owned()))
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(de::Error::custom)
    }
}

/// A shared subscription strategy, by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedStrategy(pub Strategy);

impl std::str::FromStr for SharedStrategy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        text.trim().parse().map(SharedStrategy)
    }
}

impl<'de> Deserialize<'de> for SharedStrategy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(de::Error::custom)
    }
}

/// One shared subscription group's strategy: `<group>=<strategy>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupStrategy {
    /// The share name.
    pub group: String,
    /// Its strategy.
    pub strategy: Strategy,
}

impl std::str::FromStr for GroupStrategy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let Some((group, strategy)) = text.split_once('=') else {
            return Err(format!("{text:?} is not `<group>=<strategy>`"));
        };
        let group = group.trim();
        if group.is_empty() || group.contains(['/', '+', '#']) {
            return Err(format!(
                "{group:?} is not a share name (non-empty, without / + #)"
            ));
        }
        Ok(GroupStrategy {
            group: group.to_owned(),
            strategy: strategy.trim().parse()?,
        })
    }
}

impl<'de> Deserialize<'de> for GroupStrategy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(de::Error::custom)
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
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
    /// The address the admin API listens on unless configured.
    pub const DEFAULT_LISTEN: SocketAddr =
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 18083));

    /// The address to listen on, `None` when disabled (`listen = ""`).
    pub fn address(&self) -> anyhow::Result<Option<SocketAddr>> {
        match self.listen.as_deref().map(str::trim) {
            None => Ok(Some(Self::DEFAULT_LISTEN)),
            Some("") => Ok(None),
            Some(text) => text.parse().map(Some).with_context(|| {
                format!("admin.listen {text:?} is not an address like 127.0.0.1:18083")
            }),
        }
    }

    /// The bearer token every request must carry, if one is set (an empty one is none).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref().filter(|token| !token.is_empty())
    }

    /// [`AdminSettings::address`], refusing a non-loopback address without a token: the API
    /// lists and disconnects clients, so it is never open to the network unprotected.
    pub fn checked_address(&self) -> anyhow::Result<Option<SocketAddr>> {
        let Some(listen) = self.address()? else {
            return Ok(None);
        };
        if !listen.ip().is_loopback() && self.token().is_none() {
            anyhow::bail!(
                "admin.listen {listen} is not a loopback address: set admin.token (--admin-token) \
                 so the API is not open to the network, or listen on 127.0.0.1"
            );
        }
        Ok(Some(listen))
    }
}

impl Settings {
    /// The settings of a run: those of the `--config` file, if one is given, overridden by the
    /// flags.
    pub fn resolve(file: Option<&Path>, flags: Settings) -> anyhow::Result<Settings> {
        match file {
            Some(path) => Ok(Settings::from_file(path)?.overridden_by(flags)),
            None => Ok(flags),
        }
    }

    /// Reads `path` as TOML.
    pub fn from_file(path: &Path) -> anyhow::Result<Settings> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        let named = |err: toml::de::Error| {
            anyhow::anyhow!(
                "config file {}: {}",
                path.display(),
                err.to_string().trim_end()
            )
        };
        let mut files = AccessFiles::default();
        let document = toml::Deserializer::parse(&text).map_err(named)?;
        let mut settings = Settings::deserialize(TakeAccessFiles {
            inner: document,
            files: &mut files,
        })
        .map_err(named)?;
        settings.access_files = files;
        Ok(settings)
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
            receive_maximum,
            max_queued_messages,
            max_queued_messages_online,
            queue_qos0_messages,
            max_outbox_bytes,
            mesh_capacity,
            max_queued_bytes,
            max_connect_size,
            max_connecting_per_address,
            write_timeout,
            max_keepalive,
            max_subscriptions,
            max_subscribe_filters,
            max_retained_messages,
            max_retained_bytes,
            max_offline_sessions,
            persistent_client_expiration,
            max_session_expiry,
            max_topic_length,
            max_topic_levels,
            max_client_id_length,
            max_username_length,
            max_topic_aliases,
            shared_subscription_strategy,
            allow_anonymous,
            access_files.password_file,
            access_files.acl_file,
            access_files.relations_file,
            access_files.auto_subscribe_file,
            control_core,
            max_login_failures,
            ban_seconds,
            sys_interval,
            hot_topics_max,
            log_level,
            log_format
        );
        if !flags.hot_topics_filters.is_empty() {
            self.hot_topics_filters = flags.hot_topics_filters;
        }
        if !flags.shared_subscription_groups.is_empty() {
            self.shared_subscription_groups = flags.shared_subscription_groups;
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
                max_queued_bytes: self
                    .max_queued_bytes
                    .map_or(session_defaults.max_queued_bytes, NonZeroUsize::get),
                receive_maximum: self
                    .receive_maximum
                    .map_or(session_defaults.receive_maximum, NonZeroU16::get),
            },
            mesh_capacity: self
                .mesh_capacity
                .map_or(defaults.mesh_capacity, NonZeroUsize::get),
            shutdown_grace: defaults.shutdown_grace,
            hot_topics_max: self.hot_topics_max.unwrap_or(defaults.hot_topics_max),
            limits: self.limits(),
            shared: Strategies {
                default: self
                    .shared_subscription_strategy
                    .map_or(Strategy::default(), |strategy| strategy.0),
                groups: self
                    .shared_subscription_groups
                    .iter()
                    .map(|group| (group.group.clone(), group.strategy))
                    .collect(),
            },
        }
    }

    fn limits(&self) -> Limits {
        let defaults = Limits::default();
        let size = |value: Option<NonZeroUsize>, default| value.map_or(default, NonZeroUsize::get);
        Limits {
            max_connect_size: size(self.max_connect_size, defaults.max_connect_size),
            max_connecting_per_address: size(
                self.max_connecting_per_address,
                defaults.max_connecting_per_address,
            ),
            write_timeout: self.write_timeout.map_or(defaults.write_timeout, |v| {
                Duration::from_secs(v.get().into())
            }),
            max_keepalive: self
                .max_keepalive
                .map_or(defaults.max_keepalive, NonZeroU16::get),
            max_subscriptions: size(self.max_subscriptions, defaults.max_subscriptions),
            max_subscribe_filters: size(self.max_subscribe_filters, defaults.max_subscribe_filters),
            max_retained_messages: self
                .max_retained_messages
                .unwrap_or(defaults.max_retained_messages),
            max_retained_bytes: self
                .max_retained_bytes
                .unwrap_or(defaults.max_retained_bytes),
            max_offline_sessions: self
                .max_offline_sessions
                .unwrap_or(defaults.max_offline_sessions),
            persistent_client_expiration: match self.persistent_client_expiration {
                Some(0) => None,
                Some(seconds) => Some(Duration::from_secs(seconds.into())),
                None => defaults.persistent_client_expiration,
            },
            max_session_expiry: self
                .max_session_expiry
                .unwrap_or(defaults.max_session_expiry),
            max_topic_length: size(self.max_topic_length, defaults.max_topic_length),
            max_topic_levels: size(self.max_topic_levels, defaults.max_topic_levels),
            max_client_id_length: size(self.max_client_id_length, defaults.max_client_id_length),
            max_username_length: size(self.max_username_length, defaults.max_username_length),
            max_topic_aliases: self.max_topic_aliases.unwrap_or(defaults.max_topic_aliases),
        }
    }
}

/// The files of the embedded access-control backend; `None` for a file not configured. Keys of
/// the configuration's top level and flags of the same names, for the broker and for
/// `shardmq import`.
#[derive(Args, Clone, Debug, Default, Eq, PartialEq)]
pub struct AccessFiles {
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
}

impl AccessFiles {
    /// The keys, in the order of the fields (their flags are the same names with `-`).
    pub const KEYS: [&'static str; 4] = [
        "password_file",
        "acl_file",
        "relations_file",
        "auto_subscribe_file",
    ];

    /// Every file with its key, configured or not, in [`AccessFiles::KEYS`] order.
    pub fn entries(&self) -> impl Iterator<Item = (&'static str, Option<&Path>)> {
        let paths = [
            self.password_file.as_deref(),
            self.acl_file.as_deref(),
            self.relations_file.as_deref(),
            self.auto_subscribe_file.as_deref(),
        ];
        Self::KEYS.into_iter().zip(paths)
    }

    /// The key of the first configured file, if any is.
    pub fn first_configured(&self) -> Option<&'static str> {
        self.entries()
            .find_map(|(key, path)| path.is_some().then_some(key))
    }

    /// True if no file is configured.
    pub fn is_empty(&self) -> bool {
        self.first_configured().is_none()
    }

    /// The field for `key`, if it is one of [`AccessFiles::KEYS`].
    fn slot(&mut self, key: &str) -> Option<&mut Option<PathBuf>> {
        let index = Self::KEYS.iter().position(|known| *known == key)?;
        let slots = [
            &mut self.password_file,
            &mut self.acl_file,
            &mut self.relations_file,
            &mut self.auto_subscribe_file,
        ];
        slots.into_iter().nth(index)
    }
}

/// The `--config` flag.
#[derive(Args, Clone, Debug, Default)]
pub struct ConfigFile {
    /// TOML configuration file; flags override its values.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Deserializes [`Settings`] from a TOML table, taking the [`AccessFiles::KEYS`] entries out into
/// `files` as they come. Each key reaches the struct's own field visitor from inside the TOML
/// reader's map access, which tags an error with the key's line; an access file's value is read
/// there too, for the same reason. An unknown key is refused here, naming the access files' keys
/// among those expected, as it would be if they were fields of [`Settings`].
struct TakeAccessFiles<'a, D> {
    inner: D,
    files: &'a mut AccessFiles,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for TakeAccessFiles<'_, D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_any(TakeVisitor {
            inner: visitor,
            files: self.files,
            fields: None,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_struct(
            name,
            fields,
            TakeVisitor {
                inner: visitor,
                files: self.files,
                fields: Some(fields),
            },
        )
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

struct TakeVisitor<'a, V> {
    inner: V,
    files: &'a mut AccessFiles,
    /// The struct's own keys, when known.
    fields: Option<&'static [&'static str]>,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for TakeVisitor<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(TakeMap {
            inner: map,
            files: self.files,
            fields: self.fields,
        })
    }
}

struct TakeMap<'a, A> {
    inner: A,
    files: &'a mut AccessFiles,
    fields: Option<&'static [&'static str]>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for TakeMap<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        mut seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            let key = KeySeed {
                seed,
                fields: self.fields,
            };
            match self.inner.next_key_seed(key)? {
                None => return Ok(None),
                Some(Key::Field(key)) => return Ok(Some(key)),
                Some(Key::Taken(returned, key)) => {
                    let path: PathBuf = self.inner.next_value()?;
                    if let Some(slot) = self.files.slot(&key) {
                        *slot = Some(path);
                    }
                    seed = returned;
                }
            }
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.next_value_seed(seed)
    }
}

/// A key read by [`TakeMap`]: one for the struct, or an access file's (with the struct's seed
/// handed back unused, for the next key).
enum Key<K, T> {
    Field(T),
    Taken(K, String),
}

struct KeySeed<K> {
    seed: K,
    fields: Option<&'static [&'static str]>,
}

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for KeySeed<K> {
    type Value = Key<K, K::Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        let key = String::deserialize(deserializer)?;
        if AccessFiles::KEYS.contains(&key.as_str()) {
            return Ok(Key::Taken(self.seed, key));
        }
        if let Some(fields) = self.fields {
            if !fields.contains(&key.as_str()) {
                return Err(de::Error::unknown_field(&key, expected_keys(fields)));
            }
        }
        let key: de::value::StringDeserializer<D::Error> = key.into_deserializer();
        self.seed.deserialize(key).map(Key::Field)
    }
}

/// Every key of the table whose own fields are `fields` ([`Settings`]'), with the access files'
/// keys where their struct stands among the fields: before `control_core`.
fn expected_keys(fields: &'static [&'static str]) -> &'static [&'static str] {
    static EXPECTED: OnceLock<Vec<&'static str>> = OnceLock::new();
    EXPECTED.get_or_init(|| {
        let at = fields
            .iter()
            .position(|field| *field == "control_core")
            .unwrap_or(fields.len());
        let mut keys = fields[..at].to_vec();
        keys.extend(AccessFiles::KEYS);
        keys.extend(&fields[at..]);
        keys
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// Parses `text` as a config file, from a real temporary file named `*.toml`.
    fn parse(text: &str) -> anyhow::Result<Settings> {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile()?;
        file.write_all(text.as_bytes())?;
        Settings::from_file(file.path())
    }

    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        settings: Settings,
    }

    fn flags(words: &[&str]) -> Settings {
        let argv = std::iter::once("shardmq").chain(words.iter().copied());
        <Flags as clap::Parser>::parse_from(argv).settings
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
    fn shared_subscription_strategies() {
        let settings = parse(
            "shared_subscription_strategy = \"local\"\n\
             shared_subscription_groups = [\"orders=hash_clientid\", \"$queue = random\"]\n",
        )
        .unwrap();
        let shared = settings.shard_config().shared;
        assert_eq!(shared.default, Strategy::Local);
        assert_eq!(shared.of("orders"), Strategy::HashClientId);
        assert_eq!(shared.of("$queue"), Strategy::Random);
        assert_eq!(shared.of("other"), Strategy::Local);
        let err = parse("\nshared_subscription_strategy = \"fastest\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("fastest") && err.contains("round_robin"),
            "{err}"
        );
        let err = parse("shared_subscription_groups = [\"a/b=local\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 1") && err.contains("share name"),
            "{err}"
        );
        let flags = flags(&["--shared-subscription-groups", "g=hash_topic"]);
        assert_eq!(flags.shard_config().shared.of("g"), Strategy::HashTopic);
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

        let flags = flags(&[
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
        ]);
        let merged = settings.overridden_by(flags);
        assert_eq!(merged.sys_interval, Some(1));
        assert_eq!(merged.admin.address().unwrap().map(|a| a.port()), Some(0));
        assert_eq!(merged.admin.token.as_deref(), Some("t"));
        assert_eq!(merged.monitor.interval, NonZeroU32::new(2));
        assert_eq!(merged.hot_topics_filters, vec!["a/+", "b/#"]);
    }

    #[test]
    fn bad_monitoring_values_are_named() {
        let err = parse("\n\n[admin]\nlisten = 18083\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 4") && err.contains("listen"), "{err}");
        let err = parse("[monitor]\npostgres = \"x\"\n")
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
        let settings = parse("[redis]\nurl = \"redis://127.0.0.1:6379/0\"\n").unwrap();
        assert_eq!(
            settings.redis.url.as_deref(),
            Some("redis://127.0.0.1:6379/0")
        );
        let err = parse("\n[redis]\nurl = \"redis://x\"\nhost = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 4") && err.contains("host"), "{err}");
        let err = parse("redis_url = \"redis://x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("redis_url"), "{err}");

        let merged = settings.overridden_by(flags(&["--redis-url", "redis://127.0.0.1:1/"]));
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

    #[test]
    fn access_files_are_top_level_keys_and_flags() {
        let settings = parse(
            "shards = 1\npassword_file = \"p\"\nacl_file = \"a\"\nrelations_file = \"r\"\n\
             auto_subscribe_file = \"s\"\n[admin]\nlisten = \"\"\n",
        )
        .unwrap();
        let from_file: Vec<_> = settings.access_files.entries().collect();
        let from_flags = flags(&[
            "--password-file",
            "p",
            "--acl-file",
            "a",
            "--relations-file",
            "r",
            "--auto-subscribe-file",
            "s",
        ]);
        // The flags are named after the fields, so this also checks `KEYS` against the fields.
        assert_eq!(
            from_flags.access_files.entries().collect::<Vec<_>>(),
            from_file
        );
        assert_eq!(
            from_file,
            [
                ("password_file", Some(Path::new("p"))),
                ("acl_file", Some(Path::new("a"))),
                ("relations_file", Some(Path::new("r"))),
                ("auto_subscribe_file", Some(Path::new("s"))),
            ]
        );
        assert_eq!(settings.shards, NonZeroUsize::new(1));
        assert_eq!(settings.admin.address().unwrap(), None);

        let only_acl = parse("acl_file = \"a\"\n").unwrap().access_files;
        assert_eq!(only_acl.first_configured(), Some("acl_file"));
        assert!(!only_acl.is_empty() && AccessFiles::default().is_empty());
        let merged = Settings {
            access_files: only_acl,
            ..Settings::default()
        }
        .overridden_by(flags(&["--password-file", "q"]));
        assert_eq!(
            merged.access_files.password_file.as_deref(),
            Some(Path::new("q"))
        );
        assert_eq!(
            merged.access_files.acl_file.as_deref(),
            Some(Path::new("a"))
        );
    }

    #[test]
    fn access_file_errors_keep_their_line() {
        let err = parse("shards = 2\nacl_file = 5\n").unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("acl_file"), "{err}");
        let err = parse("acl_file = \"a\"\n\nbogus = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3") && err.contains("bogus"), "{err}");
        assert!(
            err.contains(
                "`allow_anonymous`, `password_file`, `acl_file`, `relations_file`, \
                 `auto_subscribe_file`, `control_core`"
            ),
            "every key is named, in the order of the settings: {err}"
        );
        let err = parse("[admin]\nacl_file = \"a\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("acl_file"), "{err}");
    }

    #[test]
    fn admin_beyond_loopback_needs_a_token() {
        let admin = |listen: &str, token: Option<&str>| AdminSettings {
            listen: Some(listen.into()),
            token: token.map(Into::into),
        };
        assert!(admin("0.0.0.0:18083", None).checked_address().is_err());
        assert!(admin("0.0.0.0:18083", Some("")).checked_address().is_err());
        assert!(admin("0.0.0.0:18083", Some("t")).checked_address().is_ok());
        assert!(admin("127.0.0.1:0", None).checked_address().is_ok());
        assert_eq!(admin("", None).checked_address().unwrap(), None);
        assert_eq!(
            AdminSettings::default().checked_address().unwrap(),
            Some(AdminSettings::DEFAULT_LISTEN)
        );
        assert_eq!(admin("x", Some("")).token(), None);
    }
}
