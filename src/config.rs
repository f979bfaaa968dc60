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
    /// Messages queued per client behind the inflight window or while offline (default 1000).
    #[arg(long)]
    pub max_queued_messages: Option<NonZeroUsize>,
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
            ($($field:ident),*) => { $( if flags.$field.is_some() { self.$field = flags.$field; } )* };
        }
        take!(
            shards,
            pin_cores,
            max_connections,
            max_packet_size,
            connect_timeout,
            max_inflight_messages,
            max_queued_messages,
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
            ban_seconds
        );
        self
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
                queue_qos0_offline: self
                    .queue_qos0_messages
                    .unwrap_or(session_defaults.queue_qos0_offline),
                max_outbox_bytes: self
                    .max_outbox_bytes
                    .map_or(session_defaults.max_outbox_bytes, NonZeroUsize::get),
            },
            mesh_capacity: self
                .mesh_capacity
                .map_or(defaults.mesh_capacity, NonZeroUsize::get),
            shutdown_grace: defaults.shutdown_grace,
            hot_topics_max: defaults.hot_topics_max,
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
