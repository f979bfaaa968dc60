//! What to run: a [`Scenario`] is the broker address, client and publish settings, limits and one
//! [`Workload`]. The CLI subcommands and TOML scenario files both produce one, and worker
//! processes receive it (as JSON) from the coordinator, so every process builds the same plan.
//!
//! The TOML layout (documented in `loadtest/README.md`) has one table per concern and exactly one
//! workload table: `[conn]`, `[fanout]`, `[fanin]`, `[pairs]`, or `[[group]]` entries for a
//! mixed workload. Unknown keys are errors, so a typo never silently runs the default.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use serde::{Deserialize, Serialize};

use crate::payload::HEADER_LEN;

/// A complete load-test description.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
pub struct Scenario {
    /// Run name: the stem of the report files.
    pub name: String,
    /// Where the broker is and how to reach it.
    pub broker: Broker,
    /// Connection settings shared by every client (groups may override some).
    pub client: Client,
    /// Publish settings (groups may override some).
    pub publish: Publish,
    /// Time bounds.
    pub limits: Limits,
    /// Threads and processes of the load generator itself.
    pub runner: Runner,
    /// Who connects, publishes and subscribes.
    pub workload: Workload,
}

/// The broker under test.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Broker {
    /// Host name or address (loopback only on shared machines).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// MQTT protocol level: 3 (3.1), 4 (3.1.1) or 5 (5.0).
    pub protocol: u8,
    /// Spread source addresses over 127.0.0.1 ..= 127.0.0.N (0: let the kernel choose). Each
    /// source address has its own ephemeral port range, so this is how one host opens more than
    /// ~64k connections to one broker port.
    pub src_ips: u32,
    /// The broker's process id: its RSS and CPU time are read from `/proc` before and after.
    pub pid: Option<u32>,
}

impl Default for Broker {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 1883,
            protocol: 4,
            src_ips: 0,
            pid: None,
        }
    }
}

/// Connection settings.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Client {
    /// Keep alive in seconds (0: none). Idle clients send PINGREQ after half of it.
    pub keepalive: u16,
    /// Clean session (3.1.1) / clean start (5.0).
    pub clean: bool,
    /// MQTT 5 session expiry interval in seconds (sent when non-zero).
    pub session_expiry: u32,
    /// Client id template: `%i` is the index in the client's group, `%g` the global index.
    pub client_id: String,
    /// User name template (`%i`, `%g`).
    pub username: Option<String>,
    /// Password template (`%i`, `%g`).
    pub password: Option<String>,
    /// New connections per second over the whole run (0: as fast as `connect_concurrency` allows).
    pub connect_rate: f64,
    /// Handshakes in progress at once, split over worker processes.
    pub connect_concurrency: u32,
    /// Limit for TCP connect + CONNECT/CONNACK + SUBSCRIBE/SUBACK of one client.
    pub connect_timeout: Dur,
}

impl Default for Client {
    fn default() -> Self {
        Self {
            keepalive: 60,
            clean: true,
            session_expiry: 0,
            client_id: "lt-%g".into(),
            username: None,
            password: None,
            connect_rate: 0.0,
            connect_concurrency: 64,
            connect_timeout: Dur::secs(10),
        }
    }
}

/// Publish settings.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Publish {
    /// QoS of publications and subscriptions: 0, 1 or 2.
    pub qos: u8,
    /// Payload size in bytes (at least the 20-byte measurement header).
    pub payload: usize,
    /// Messages per publisher (0: until `limits.duration`).
    pub messages: u64,
    /// Messages per second per publisher (0: as fast as the connection and `inflight` allow).
    pub rate: f64,
    /// QoS 1/2 messages a publisher leaves unacknowledged at most (the broker's MQTT 5 receive
    /// maximum lowers it further).
    pub inflight: u16,
    /// RETAIN flag on publications.
    pub retain: bool,
}

impl Default for Publish {
    fn default() -> Self {
        Self {
            qos: 0,
            payload: 64,
            messages: 10,
            rate: 0.0,
            inflight: 64,
            retain: false,
        }
    }
}

/// Time bounds; every phase of a run ends by itself.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Longest publish phase; with `messages = 0` publishers run this long.
    pub duration: Dur,
    /// Longest whole run, connecting and reporting included.
    pub timeout: Dur,
    /// How long to wait, after the last publication, for deliveries still on their way.
    pub drain: Dur,
    /// How long to keep every connection open after the deliveries (the `conn` hold time).
    pub hold: Dur,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            duration: Dur::secs(60),
            timeout: Dur::secs(600),
            drain: Dur::secs(10),
            hold: Dur::secs(0),
        }
    }
}

/// The load generator's own resources.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Runner {
    /// Runtime threads per process (0: the CPUs available, divided among worker processes).
    pub threads: usize,
    /// Worker processes (0: one process unless `RLIMIT_NOFILE` needs more).
    pub workers: u32,
}

/// The shape of the load.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// Connections only.
    Conn(Conn),
    /// Few publishers, many subscribers on one topic.
    Fanout(Fanout),
    /// Many publishers, one or few wildcard subscribers.
    Fanin(Fanin),
    /// Publisher/subscriber pairs, each pair on its own topic.
    Pairs(Pairs),
    /// Arbitrary client groups (scenario files only).
    Mixed(Vec<Group>),
}

/// `conn`: open connections, hold them, close them.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Conn {
    /// Number of connections.
    pub connections: u32,
}

/// `fanout`: publishers, subscribers and idle clients among `connections`.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Fanout {
    /// Connections in all: publishers, subscribers and idle clients.
    pub connections: u32,
    /// Subscribers (`None`: every connection that is not a publisher).
    #[serde(default)]
    pub subscribers: Option<u32>,
    /// Publishers.
    #[serde(default = "one")]
    pub publishers: u32,
    /// The topic (templates allowed, but one topic is the point).
    #[serde(default = "fanout_topic")]
    pub topic: String,
}

/// `fanin`: many publishers on their own topics, few subscribers on a wildcard filter.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Fanin {
    /// Publishers.
    pub publishers: u32,
    /// Subscribers.
    #[serde(default = "one")]
    pub subscribers: u32,
    /// Publisher topic template.
    #[serde(default = "fanin_topic")]
    pub topic: String,
    /// Subscriber filter template.
    #[serde(default = "fanin_filter")]
    pub filter: String,
    /// Subscribe as members of this shared group (`$share/<group>/<filter>`): each message
    /// reaches one subscriber, not all.
    #[serde(default)]
    pub shared_group: Option<String>,
    /// The broker's strategy for the shared group, as configured there: recorded in the report
    /// so runs are told apart (the load generator does not set it).
    #[serde(default)]
    pub strategy: Option<String>,
}

/// `pairs`: publisher `i` publishes to the topic subscriber `i` subscribes to.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Pairs {
    /// Number of pairs (twice as many connections).
    pub pairs: u32,
    /// Topic template; `%i` is the pair number.
    #[serde(default = "pairs_topic")]
    pub topic: String,
}

/// One group of a mixed workload. A group publishes when `publish` is set and subscribes when
/// `subscribe` is not empty (it may do both, or neither: idle clients).
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Name, unique in the scenario.
    pub name: String,
    /// Number of clients.
    pub count: u32,
    /// Topic template this group publishes to.
    #[serde(default)]
    pub publish: Option<String>,
    /// Filter templates this group subscribes to.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Overrides `publish.qos` (publications and subscriptions).
    #[serde(default)]
    pub qos: Option<u8>,
    /// Overrides `publish.messages`.
    #[serde(default)]
    pub messages: Option<u64>,
    /// Overrides `publish.rate`.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Overrides `publish.payload`.
    #[serde(default)]
    pub payload: Option<usize>,
    /// Overrides `publish.retain`.
    #[serde(default)]
    pub retain: Option<bool>,
    /// Overrides `client.keepalive`.
    #[serde(default)]
    pub keepalive: Option<u16>,
    /// Overrides `client.clean`.
    #[serde(default)]
    pub clean: Option<bool>,
    /// Overrides `client.client_id`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Overrides `client.username`.
    #[serde(default)]
    pub username: Option<String>,
    /// Overrides `client.password`.
    #[serde(default)]
    pub password: Option<String>,
}

impl Group {
    /// A group of `count` idle clients called `name`.
    pub fn idle(name: &str, count: u32) -> Self {
        Self {
            name: name.into(),
            count,
            publish: None,
            subscribe: Vec::new(),
            qos: None,
            messages: None,
            rate: None,
            payload: None,
            retain: None,
            keepalive: None,
            clean: None,
            client_id: None,
            username: None,
            password: None,
        }
    }
}

fn one() -> u32 {
    1
}

fn fanout_topic() -> String {
    "loadtest/fanout".into()
}

fn fanin_topic() -> String {
    "loadtest/fanin/%i".into()
}

fn fanin_filter() -> String {
    "loadtest/fanin/#".into()
}

fn pairs_topic() -> String {
    "loadtest/pairs/%i".into()
}

/// The fan-out presets: one publisher and 100, 1000 or all other connections subscribed.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Preset {
    /// `1-to-100`.
    OneToHundred,
    /// `1-to-1000`.
    OneToThousand,
    /// `1-to-all`.
    OneToAll,
}

impl Preset {
    /// The fan-out workload this preset makes of `connections`.
    pub fn fanout(self, connections: u32) -> Fanout {
        let subscribers = match self {
            Preset::OneToHundred => Some(100),
            Preset::OneToThousand => Some(1000),
            Preset::OneToAll => None,
        };
        Fanout {
            connections,
            subscribers,
            publishers: 1,
            topic: fanout_topic(),
        }
    }
}

impl FromStr for Preset {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        match text {
            "1-to-100" => Ok(Preset::OneToHundred),
            "1-to-1000" => Ok(Preset::OneToThousand),
            "1-to-all" => Ok(Preset::OneToAll),
            _ => bail!("unknown preset {text:?} (1-to-100, 1-to-1000, 1-to-all)"),
        }
    }
}

/// The file layout: one table per concern, exactly one workload.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    name: Option<String>,
    #[serde(default)]
    broker: Broker,
    #[serde(default)]
    client: Client,
    #[serde(default)]
    publish: Publish,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    runner: Runner,
    conn: Option<Conn>,
    fanout: Option<FanoutFile>,
    fanin: Option<Fanin>,
    pairs: Option<Pairs>,
    #[serde(default)]
    group: Vec<Group>,
}

/// `[fanout]` may name a preset instead of the counts.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FanoutFile {
    connections: u32,
    preset: Option<String>,
    subscribers: Option<u32>,
    publishers: Option<u32>,
    topic: Option<String>,
}

impl FanoutFile {
    fn resolve(self) -> anyhow::Result<Fanout> {
        let mut fanout = match &self.preset {
            Some(preset) => {
                ensure!(
                    self.subscribers.is_none() && self.publishers.is_none(),
                    "[fanout] preset and subscribers/publishers exclude each other"
                );
                preset.parse::<Preset>()?.fanout(self.connections)
            }
            None => Fanout {
                connections: self.connections,
                subscribers: self.subscribers,
                publishers: self.publishers.unwrap_or(1),
                topic: fanout_topic(),
            },
        };
        if let Some(topic) = self.topic {
            fanout.topic = topic;
        }
        Ok(fanout)
    }
}

impl Scenario {
    /// A scenario with default settings around `workload`.
    pub fn new(name: &str, workload: Workload) -> Self {
        Self {
            name: name.into(),
            broker: Broker::default(),
            client: Client::default(),
            publish: Publish::default(),
            limits: Limits::default(),
            runner: Runner::default(),
            workload,
        }
    }

    /// Parses a TOML scenario; `default_name` names it when the file does not.
    pub fn from_toml(text: &str, default_name: &str) -> anyhow::Result<Self> {
        let file: ScenarioFile = toml::from_str(text)?;
        let mut workloads = Vec::new();
        if let Some(conn) = file.conn {
            workloads.push(Workload::Conn(conn));
        }
        if let Some(fanout) = file.fanout {
            workloads.push(Workload::Fanout(fanout.resolve()?));
        }
        if let Some(fanin) = file.fanin {
            workloads.push(Workload::Fanin(fanin));
        }
        if let Some(pairs) = file.pairs {
            workloads.push(Workload::Pairs(pairs));
        }
        if !file.group.is_empty() {
            workloads.push(Workload::Mixed(file.group));
        }
        ensure!(
            workloads.len() == 1,
            "a scenario needs exactly one of [conn], [fanout], [fanin], [pairs] or [[group]] (found {})",
            workloads.len()
        );
        let scenario = Scenario {
            name: file.name.unwrap_or_else(|| default_name.to_owned()),
            broker: file.broker,
            client: file.client,
            publish: file.publish,
            limits: file.limits,
            runner: file.runner,
            workload: workloads.remove(0),
        };
        scenario.validate()?;
        Ok(scenario)
    }

    /// Reads and parses a TOML scenario file; the file stem is the default name.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("scenario");
        Self::from_toml(&text, stem).with_context(|| format!("in scenario file {}", path.display()))
    }

    /// The workload's kind: `conn`, `fanout`, `fanin`, `pairs` or `mixed`.
    pub fn kind(&self) -> &'static str {
        match self.workload {
            Workload::Conn(_) => "conn",
            Workload::Fanout(_) => "fanout",
            Workload::Fanin(_) => "fanin",
            Workload::Pairs(_) => "pairs",
            Workload::Mixed(_) => "mixed",
        }
    }

    /// Checks every setting that can be checked without a broker.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(!self.name.is_empty(), "the scenario name is empty");
        ensure!(
            !self.name.contains(['/', '\\']) && self.name != "." && self.name != "..",
            "the scenario name {:?} is not a file name",
            self.name
        );
        ensure!(
            matches!(self.broker.protocol, 3..=5),
            "protocol must be 3, 4 or 5, not {}",
            self.broker.protocol
        );
        ensure!(
            self.publish.qos <= 2,
            "qos must be 0, 1 or 2, not {}",
            self.publish.qos
        );
        ensure!(
            (HEADER_LEN..=256 << 20).contains(&self.publish.payload),
            "payload must be {HEADER_LEN} bytes (the measurement header) to 256 MiB, not {}",
            self.publish.payload
        );
        ensure!(self.publish.inflight > 0, "inflight must be at least 1");
        ensure!(
            self.publish.rate >= 0.0 && self.publish.rate.is_finite(),
            "publish rate must be a finite number >= 0"
        );
        ensure!(
            self.client.connect_rate >= 0.0 && self.client.connect_rate.is_finite(),
            "connect rate must be a finite number >= 0"
        );
        ensure!(
            self.client.connect_concurrency > 0,
            "connect_concurrency must be at least 1"
        );
        ensure!(!self.limits.timeout.is_zero(), "timeout must be positive");
        ensure!(self.broker.src_ips <= 1 << 16, "src_ips is at most 65536");
        match &self.workload {
            Workload::Conn(conn) => ensure!(conn.connections > 0, "connections must be positive"),
            Workload::Fanout(fanout) => {
                ensure!(fanout.publishers > 0, "fanout needs at least one publisher");
                let subscribers = fanout.subscribers.unwrap_or(0);
                ensure!(
                    u64::from(fanout.publishers) + u64::from(subscribers)
                        <= u64::from(fanout.connections),
                    "fanout: {} publishers and {subscribers} subscribers do not fit in {} connections",
                    fanout.publishers,
                    fanout.connections
                );
            }
            Workload::Fanin(fanin) => {
                ensure!(
                    fanin.publishers > 0 && fanin.subscribers > 0,
                    "fanin counts must be positive"
                );
                if let Some(group) = &fanin.shared_group {
                    ensure!(
                        !group.is_empty() && !group.contains(['/', '+', '#']),
                        "fanin: {group:?} is not a share name (non-empty, without / + #)"
                    );
                }
            }
            Workload::Pairs(pairs) => ensure!(pairs.pairs > 0, "pairs must be positive"),
            Workload::Mixed(groups) => {
                ensure!(!groups.is_empty(), "a mixed workload needs groups");
                for (n, group) in groups.iter().enumerate() {
                    ensure!(
                        group.count > 0,
                        "group {:?}: count must be positive",
                        group.name
                    );
                    ensure!(
                        !groups[..n].iter().any(|other| other.name == group.name),
                        "group name {:?} is used twice",
                        group.name
                    );
                    if let Some(qos) = group.qos {
                        ensure!(qos <= 2, "group {:?}: qos must be 0, 1 or 2", group.name);
                    }
                    if let Some(payload) = group.payload {
                        ensure!(
                            (HEADER_LEN..=256 << 20).contains(&payload),
                            "group {:?}: payload must be {HEADER_LEN} bytes to 256 MiB",
                            group.name
                        );
                    }
                    if let Some(rate) = group.rate {
                        ensure!(
                            rate >= 0.0 && rate.is_finite(),
                            "group {:?}: bad rate",
                            group.name
                        );
                    }
                }
            }
        }
        ensure!(self.connections() > 0, "the workload has no connections");
        ensure!(
            self.connections() <= u64::from(u32::MAX / 2),
            "too many connections for one run"
        );
        Ok(())
    }

    /// Connections the workload opens in all.
    pub fn connections(&self) -> u64 {
        match &self.workload {
            Workload::Conn(conn) => conn.connections.into(),
            Workload::Fanout(fanout) => fanout.connections.into(),
            Workload::Fanin(fanin) => u64::from(fanin.publishers) + u64::from(fanin.subscribers),
            Workload::Pairs(pairs) => 2 * u64::from(pairs.pairs),
            Workload::Mixed(groups) => groups.iter().map(|g| u64::from(g.count)).sum(),
        }
    }
}

/// A duration written `"250ms"`, `"10s"`, `"2m"`, `"1h"` or as a number of seconds.
#[derive(Clone, Copy, Debug, Default, Eq, Ord, PartialEq, PartialOrd)]
pub struct Dur(pub Duration);

impl Dur {
    /// `n` seconds.
    pub const fn secs(n: u64) -> Self {
        Self(Duration::from_secs(n))
    }

    /// True for zero.
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl FromStr for Dur {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: f64 = number
            .parse()
            .with_context(|| format!("bad duration {text:?}"))?;
        let scale = match unit.trim() {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "" | "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            other => bail!("bad duration unit {other:?} in {text:?} (ms, s, m, h)"),
        };
        Duration::try_from_secs_f64(number * scale)
            .map(Dur)
            .with_context(|| format!("bad duration {text:?}"))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_secs_f64() * 1e3;
        if ms >= 1000.0 && ms % 1000.0 == 0.0 {
            write!(f, "{}s", ms / 1000.0)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(f64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Seconds(s) => Duration::try_from_secs_f64(s)
                .map(Dur)
                .map_err(serde::de::Error::custom),
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            "250ms".parse::<Dur>().unwrap().0,
            Duration::from_millis(250)
        );
        assert_eq!("10s".parse::<Dur>().unwrap().0, Duration::from_secs(10));
        assert_eq!("1.5".parse::<Dur>().unwrap().0, Duration::from_millis(1500));
        assert_eq!("2m".parse::<Dur>().unwrap().0, Duration::from_secs(120));
        assert!("ten".parse::<Dur>().is_err());
        assert!("5 parsecs".parse::<Dur>().is_err());
        assert_eq!(Dur::secs(10).to_string(), "10s");
        assert_eq!(Dur(Duration::from_millis(1500)).to_string(), "1500ms");
    }

    #[test]
    fn fanout_preset_file() {
        let scenario = Scenario::from_toml(
            r#"
            [broker]
            port = 1884
            protocol = 5
            src_ips = 4

            [publish]
            qos = 1
            payload = 128
            messages = 5

            [limits]
            timeout = "2m"
            drain = 3

            [fanout]
            connections = 10000
            preset = "1-to-1000"
            "#,
            "file-stem",
        )
        .unwrap();
        assert_eq!(scenario.name, "file-stem");
        assert_eq!(scenario.broker.port, 1884);
        assert_eq!(scenario.broker.protocol, 5);
        assert_eq!(scenario.broker.src_ips, 4);
        assert_eq!(scenario.publish.qos, 1);
        assert_eq!(scenario.limits.timeout, Dur::secs(120));
        assert_eq!(scenario.limits.drain, Dur::secs(3));
        assert_eq!(scenario.client, Client::default());
        assert_eq!(
            scenario.workload,
            Workload::Fanout(Fanout {
                connections: 10000,
                subscribers: Some(1000),
                publishers: 1,
                topic: "loadtest/fanout".into()
            })
        );
        assert_eq!(scenario.connections(), 10000);
    }

    #[test]
    fn mixed_groups_file() {
        let scenario = Scenario::from_toml(
            r#"
            name = "chat"
            [client]
            username = "user%i"
            password = "secret-%g"
            keepalive = 30

            [[group]]
            name = "senders"
            count = 10
            publish = "chat/room/%i"
            rate = 5.0
            qos = 2

            [[group]]
            name = "readers"
            count = 100
            subscribe = ["chat/room/+"]

            [[group]]
            name = "idle"
            count = 1000
            "#,
            "unused",
        )
        .unwrap();
        assert_eq!(scenario.name, "chat");
        assert_eq!(scenario.kind(), "mixed");
        assert_eq!(scenario.connections(), 1110);
        assert_eq!(scenario.client.username.as_deref(), Some("user%i"));
        let Workload::Mixed(groups) = &scenario.workload else {
            panic!("not mixed")
        };
        assert_eq!(groups[0].qos, Some(2));
        assert_eq!(groups[1].subscribe, ["chat/room/+"]);
        assert_eq!(groups[2], Group::idle("idle", 1000));
    }

    #[test]
    fn bad_files_are_refused() {
        let no_workload = Scenario::from_toml("[broker]\nport = 1\n", "x");
        assert!(no_workload.unwrap_err().to_string().contains("exactly one"));
        let two = Scenario::from_toml("[conn]\nconnections = 1\n[pairs]\npairs = 1\n", "x");
        assert!(two.is_err());
        let typo = Scenario::from_toml("[conn]\nconnectoins = 1\n", "x");
        assert!(typo.is_err());
        let qos3 = Scenario::from_toml("[publish]\nqos = 3\n[conn]\nconnections = 1\n", "x");
        assert!(qos3.is_err());
        let overfull = Scenario::from_toml("[fanout]\nconnections = 10\nsubscribers = 10\n", "x");
        assert!(overfull.is_err());
        let tiny = Scenario::from_toml("[publish]\npayload = 4\n[pairs]\npairs = 1\n", "x");
        assert!(tiny.is_err());
    }

    #[test]
    fn scenario_survives_json_for_workers() {
        let mut scenario = Scenario::new(
            "x",
            Workload::Pairs(Pairs {
                pairs: 3,
                topic: pairs_topic(),
            }),
        );
        scenario.limits.drain = Dur(Duration::from_millis(250));
        let json = serde_json::to_string(&scenario).unwrap();
        assert_eq!(serde_json::from_str::<Scenario>(&json).unwrap(), scenario);
    }
}
