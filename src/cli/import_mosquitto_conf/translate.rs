//! A Mosquitto 2.x configuration translated into shardmq's TOML, with no I/O: [`translate`] takes
//! the text of the main file and of the files its `include_dir` lines name, and returns the TOML
//! and every option that does not carry over, each with its file, line and why ([`Unmapped`]).
//!
//! How Mosquitto reads its file, and so how this does: one `option value` per line, `#` starts a
//! comment line. Options before any `listener` line configure the broker, or its default listener:
//! `port`, `bind_address`, and listener options such as `max_connections` start that listener
//! (port 1883, every interface, unless they say otherwise). `listener PORT [ADDRESS]` starts a
//! listener whose options follow it. `include_dir` (main file only) reads its directory's `.conf`
//! files in place, each starting again at the default listener. With `per_listener_settings
//! true`, `password_file`, `acl_file` and `allow_anonymous` belong to the listener they follow.
//! Mosquitto asks for `per_listener_settings` to come first; it is read here wherever it is. No
//! listener at all: Mosquitto listens on localhost only, as shardmq does by default.
//!
//! shardmq has one set of settings for all its listeners, so:
//! - every listener becomes addresses in `listen`; one with no address binds every interface
//!   (`0.0.0.0` and `[::]`, or one of them after `socket_domain`). A listener shardmq cannot serve
//!   as Mosquitto would (TLS, WebSockets, a Unix socket, a mount point, an interface, a host name
//!   other than `localhost`) is left out rather than opened in a weaker form;
//! - per-listener access settings carry over only when every listener has the same;
//! - `max_connections`, per listener in Mosquitto, becomes the listeners' sum when each has one;
//!   `max_topic_alias` carries over when every listener has the same.
//!
//! An option set twice counts with its last value, and the earlier line is reported. Values are
//! echoed in the output only for the options that carry over; a line that does not carry over is
//! named by its option alone, so secrets in plugin or bridge options are not copied anywhere.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::auth::{content_lines, first_word};

/// A configuration file: the name its lines are reported under, and its text.
#[derive(Clone, Debug)]
pub struct Source {
    /// The path as the operator gave it (or the include directory joined with the file name).
    pub name: String,
    /// The whole file.
    pub text: String,
}

/// What the directory of an `include_dir` line held.
#[derive(Clone, Debug)]
pub enum Included {
    /// Its `.conf` files, in the order Mosquitto reads them.
    Files(Vec<Source>),
    /// Why it could not be read.
    Unreadable(String),
}

/// A line of a configuration file.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Location {
    /// [`Source::name`].
    pub file: String,
    /// 1-based.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// An option that has no equivalent in shardmq, or whose value cannot be carried over.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Unmapped {
    /// Where it is.
    pub at: Location,
    /// The option's name.
    pub option: String,
    /// Why it does not carry over, and what to do instead where there is something.
    pub reason: String,
}

impl fmt::Display for Unmapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.at, self.option, self.reason)
    }
}

/// The result of [`translate`].
#[derive(Debug)]
pub struct Translation {
    /// shardmq's configuration, with the lines each key came from as comments and every
    /// [`Unmapped`] as a `# not mapped:` comment at the end.
    pub toml: String,
    /// What did not carry over, in the order of the lines.
    pub unmapped: Vec<Unmapped>,
}

/// The directories that `main`'s `include_dir` lines name, in order (the files they hold are
/// [`translate`]'s `included`).
pub fn include_dirs(main: &Source) -> Vec<String> {
    content_lines(&main.text)
        .map(|(_, line)| first_word(line))
        .filter(|(option, rest)| *option == "include_dir" && !rest.is_empty())
        .map(|(_, rest)| rest.to_owned())
        .collect()
}

/// The first line of `text` written in Mosquitto's syntax: a Mosquitto option followed by a
/// value without `=` (shardmq's TOML shares some key names, always followed by `=`). `user` and
/// `topic` do not count: they start ACL file lines too.
pub fn mosquitto_line(text: &str) -> Option<(usize, &str)> {
    content_lines(text).find_map(|(number, line)| {
        let (option, rest) = first_word(line);
        let known = rule(option) != Rule::Unknown && !matches!(option, "user" | "topic");
        (known && !rest.is_empty() && !rest.starts_with('=')).then_some((number, option))
    })
}

/// Translates `main`; `included` holds what each of its `include_dir` lines read (see
/// [`include_dirs`]).
pub fn translate(main: &Source, included: &BTreeMap<String, Included>) -> Translation {
    let mut translator = Translator {
        per_listener: per_listener_settings(main, included),
        listeners: vec![Listener::default()],
        current: 0,
        access: Access::default(),
        numbers: BTreeMap::new(),
        flags: BTreeMap::new(),
        expiration: None,
        same: Vec::new(),
        unmapped: Vec::new(),
        read: BTreeMap::new(),
    };
    translator.file(main, Some(included));
    translator.finish(&main.name)
}

/// Payload bytes of `message_size_limit` become packet bytes with this much added: room for a
/// topic of shardmq's default `max_topic_length` (4096), the headers and some properties.
pub const PUBLISH_HEADROOM: u32 = 8192;

/// The largest MQTT packet: 268,435,455 bytes after a fixed header of at most 5.
const MAX_MQTT_PACKET: u64 = 268_435_460;

/// Mosquitto's `max_topic_alias` when a listener does not set it.
const MOSQUITTO_TOPIC_ALIASES: u64 = 10;

const PERSISTENCE: &str = "shardmq keeps sessions, queued and retained messages in memory only \
                           (no persistence yet): they do not survive a restart";
const LOGGING: &str = "shardmq logs to stderr (the journal under systemd): set log_level \
                       (error, warn, info, debug, trace) and log_format (text, json) instead";
const TLS: &str = "TLS listeners are not supported yet";
const PSK: &str = "TLS-PSK is not supported";
const WEBSOCKETS: &str = "WebSocket listeners are not supported yet";
const PLUGINS: &str = "shardmq loads no plugins: users and rules come from password_file and \
                       acl_file, or from Redis ([redis] url; `shardmq import` loads the files)";
const BRIDGES: &str = "bridges are not supported";

/// How an option is translated.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Rule {
    Listener,
    Port,
    BindAddress,
    SocketDomain,
    Protocol,
    /// A listener option shardmq cannot honour: the listener is left out, for this reason.
    LeaveOut(&'static str),
    MaxConnections,
    MaxTopicAlias,
    MaxQos,
    Access(AccessKey),
    /// A number carried over in [`Translator::finish`], at most this.
    Number(u64),
    /// A boolean carried over in [`Translator::finish`].
    Flag,
    Expiration,
    /// A boolean: nothing to set when it is `shardmq`; otherwise not mapped, for `reason`.
    Behaviour {
        shardmq: bool,
        reason: &'static str,
    },
    PerListenerSettings,
    IncludeDir,
    Unsupported(&'static str),
    Unknown,
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum AccessKey {
    PasswordFile,
    AclFile,
    AllowAnonymous,
}

/// Every option of Mosquitto 2.0's mosquitto.conf(5), and the plugin options of 2.1.
fn rule(option: &str) -> Rule {
    match option {
        "listener" => Rule::Listener,
        "port" => Rule::Port,
        "bind_address" => Rule::BindAddress,
        "socket_domain" => Rule::SocketDomain,
        "protocol" => Rule::Protocol,
        "bind_interface" => Rule::LeaveOut(
            "shardmq binds addresses, not interfaces: put the interface's address in listen",
        ),
        "mount_point" => Rule::LeaveOut(
            "shardmq has no mount points: this listener's clients would share every topic",
        ),
        "cafile" | "capath" | "certfile" | "keyfile" | "ciphers" | "ciphers_tls1.3" | "crlfile"
        | "dhparamfile" | "require_certificate" | "tls_version" | "tls_engine" | "tls_keyform"
        | "tls_engine_kpass_sha1" | "use_identity_as_username" | "use_subject_as_username" => {
            Rule::LeaveOut(TLS)
        }
        "psk_hint" => Rule::LeaveOut(PSK),
        "max_connections" => Rule::MaxConnections,
        "max_topic_alias" => Rule::MaxTopicAlias,
        "max_qos" => Rule::MaxQos,
        "password_file" => Rule::Access(AccessKey::PasswordFile),
        "acl_file" => Rule::Access(AccessKey::AclFile),
        "allow_anonymous" => Rule::Access(AccessKey::AllowAnonymous),
        "max_packet_size" => Rule::Number(MAX_MQTT_PACKET),
        "message_size_limit" => Rule::Number(MAX_MQTT_PACKET - 5),
        "max_inflight_messages" | "max_keepalive" => Rule::Number(u16::MAX.into()),
        "max_queued_messages" | "max_queued_bytes" => Rule::Number(u64::MAX),
        "sys_interval" => Rule::Number(u32::MAX.into()),
        "queue_qos0_messages" | "retain_available" => Rule::Flag,
        "persistent_client_expiration" => Rule::Expiration,
        "persistence" | "retained_persistence" => Rule::Behaviour {
            shardmq: false,
            reason: PERSISTENCE,
        },
        "allow_zero_length_clientid" => Rule::Behaviour {
            shardmq: true,
            reason: "shardmq assigns an id to a client that connects without one (MQTT 5, or \
                     3.1.1 with a clean session)",
        },
        "use_username_as_clientid" => Rule::Behaviour {
            shardmq: false,
            reason: "shardmq keeps the client id the client sends; an ACL with %c patterns can \
                     confine each client to its own topics",
        },
        "check_retain_source" => Rule::Behaviour {
            shardmq: false,
            reason: "shardmq does not check again that a retained message's publisher may still \
                     write its topic (each subscriber's read access is checked)",
        },
        "upgrade_outgoing_qos" => Rule::Behaviour {
            shardmq: false,
            reason: "shardmq delivers at the lower of the message's and the subscription's QoS, \
                     as MQTT requires",
        },
        "allow_duplicate_messages" => Rule::Behaviour {
            shardmq: false,
            reason: "shardmq delivers a message once to a client whose subscriptions overlap, \
                     at the highest of their QoS",
        },
        "set_tcp_nodelay" => Rule::Behaviour {
            shardmq: true,
            reason: "shardmq always sets TCP_NODELAY on client sockets",
        },
        "per_listener_settings" => Rule::PerListenerSettings,
        "include_dir" => Rule::IncludeDir,
        "persistence_file" | "persistence_location" | "autosave_interval"
        | "autosave_on_changes" => Rule::Unsupported(PERSISTENCE),
        "log_dest" | "log_type" | "log_facility" | "log_timestamp" | "log_timestamp_format"
        | "connection_messages" => Rule::Unsupported(LOGGING),
        "pid_file" => Rule::Unsupported(
            "shardmq writes no pid file: a service manager tracks it (tuning/systemd/shardmq.service)",
        ),
        "user" => Rule::Unsupported(
            "shardmq does not switch users: start it as the user it runs as (User= in \
             tuning/systemd/shardmq.service)",
        ),
        "psk_file" => Rule::Unsupported(PSK),
        "auth_plugin" | "plugin" | "global_plugin" | "auth_plugin_deny_special_chars" => {
            Rule::Unsupported(PLUGINS)
        }
        plugin if plugin.starts_with("auth_opt_") || plugin.starts_with("plugin_opt_") => {
            Rule::Unsupported(PLUGINS)
        }
        "auto_id_prefix" => Rule::Unsupported("shardmq chooses the form of the ids it assigns"),
        "clientid_prefixes" => Rule::Unsupported(
            "shardmq does not restrict client ids by prefix; an ACL with %c patterns can confine \
             each client to its own topics",
        ),
        "memory_limit" => Rule::Unsupported(
            "shardmq has no overall memory limit; it bounds each thing a client can hold \
             (README, Limits)",
        ),
        "max_inflight_bytes" => Rule::Unsupported(
            "shardmq bounds in-flight messages by count (max_inflight_messages), and the bytes \
             waiting for a slow client by max_outbox_bytes",
        ),
        "http_dir" | "websockets_log_level" | "websockets_headers_size" => {
            Rule::Unsupported(WEBSOCKETS)
        }
        "retry_interval" | "store_clean_interval" => {
            Rule::Unsupported("Mosquitto 2 does not use it either")
        }
        "connection" | "address" | "addresses" | "topic" | "cleansession"
        | "local_cleansession" | "idle_timeout" | "keepalive_interval" | "local_clientid"
        | "local_password" | "local_username" | "notifications" | "notifications_local_only"
        | "notification_topic" | "remote_clientid" | "remote_password" | "remote_username"
        | "restart_timeout" | "round_robin" | "start_type" | "threshold" | "try_private" => {
            Rule::Unsupported(BRIDGES)
        }
        bridge if bridge.starts_with("bridge_") => Rule::Unsupported(BRIDGES),
        _ => Rule::Unknown,
    }
}

/// The last `per_listener_settings` of every file (unreadable or invalid: false).
fn per_listener_settings(main: &Source, included: &BTreeMap<String, Included>) -> bool {
    let files =
        std::iter::once(main).chain(included.values().flat_map(|included| match included {
            Included::Files(files) => files.as_slice(),
            Included::Unreadable(_) => &[],
        }));
    files
        .flat_map(|source| content_lines(&source.text))
        .filter_map(|(_, line)| match first_word(line) {
            ("per_listener_settings", value) => parse_bool(value).ok(),
            _ => None,
        })
        .last()
        .unwrap_or(false)
}

/// A value and the line it came from.
#[derive(Clone, Debug)]
struct Setting<T> {
    at: Location,
    /// The line as written.
    text: String,
    value: T,
}

impl<T> Setting<T> {
    fn new(at: &Location, text: &str, value: T) -> Setting<T> {
        Setting {
            at: at.clone(),
            text: text.to_owned(),
            value,
        }
    }

    /// `FILE:LINE: option value`.
    fn source(&self) -> String {
        format!("{}: {}", self.at, self.text)
    }
}

/// The access settings, of the broker or (with `per_listener_settings`) of one listener.
#[derive(Debug, Default)]
struct Access {
    password_file: Option<Setting<String>>,
    acl_file: Option<Setting<String>>,
    allow_anonymous: Option<Setting<bool>>,
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Domain {
    V4,
    V6,
}

#[derive(Debug, Default)]
struct Listener {
    /// The `listener` line; `None` for the default listener.
    declared: Option<Setting<()>>,
    port: Option<Setting<u16>>,
    address: Option<Setting<String>>,
    domain: Option<Setting<Domain>>,
    /// The options shardmq cannot honour on this listener, and why.
    left_out: Vec<(Location, String, &'static str)>,
    max_connections: Option<Setting<i64>>,
    max_topic_alias: Option<Setting<u64>>,
    access: Access,
    /// The first line that configured the default listener, which Mosquitto then starts.
    first: Option<Location>,
}

impl Listener {
    fn port(&self) -> u16 {
        self.port.as_ref().map_or(1883, |port| port.value)
    }

    /// How messages name it.
    fn name(&self) -> String {
        match &self.declared {
            Some(_) => format!("listener {}", self.port()),
            None => format!("the default listener (port {})", self.port()),
        }
    }

    /// [`Listener::name`] and where it was started.
    fn described(&self) -> String {
        match self.at() {
            Some(at) => format!("{} ({at})", self.name()),
            None => self.name(),
        }
    }

    /// Where it was started.
    fn at(&self) -> Option<&Location> {
        self.declared
            .as_ref()
            .map(|d| &d.at)
            .or(self.first.as_ref())
    }

    fn started(&self) -> bool {
        self.at().is_some()
    }

    /// The addresses shardmq listens on for it, or why there are none.
    fn addresses(&self) -> Result<Vec<SocketAddr>, String> {
        let port = self.port();
        let (v4, v6) = match self.domain.as_ref().map(|domain| domain.value) {
            None => (true, true),
            Some(Domain::V4) => (true, false),
            Some(Domain::V6) => (false, true),
        };
        let either = |four: Ipv4Addr, six: Ipv6Addr| {
            let mut addresses = Vec::new();
            if v4 {
                addresses.push(SocketAddr::from((four, port)));
            }
            if v6 {
                addresses.push(SocketAddr::from((six, port)));
            }
            addresses
        };
        let Some(address) = &self.address else {
            return Ok(either(Ipv4Addr::UNSPECIFIED, Ipv6Addr::UNSPECIFIED));
        };
        let host = address.value.trim_start_matches('[').trim_end_matches(']');
        if host == "localhost" {
            return Ok(either(Ipv4Addr::LOCALHOST, Ipv6Addr::LOCALHOST));
        }
        match host.parse::<IpAddr>() {
            Ok(ip) => Ok(vec![SocketAddr::new(ip, port)]),
            Err(_) => Err(format!(
                "`{host}` is a host name: shardmq listens on IP addresses; put the addresses it \
                 resolves to in listen"
            )),
        }
    }
}

/// One key of the output.
struct Entry {
    key: &'static str,
    /// TOML.
    value: String,
    /// The lines it came from, and why it is what it is.
    comments: Vec<String>,
}

struct Translator {
    per_listener: bool,
    /// `[0]` is the default listener.
    listeners: Vec<Listener>,
    /// The listener the options being read belong to.
    current: usize,
    /// The broker's access settings (without `per_listener_settings`).
    access: Access,
    numbers: BTreeMap<String, Setting<u64>>,
    flags: BTreeMap<String, Setting<bool>>,
    expiration: Option<Setting<u32>>,
    /// Lines shardmq already behaves like.
    same: Vec<String>,
    unmapped: Vec<Unmapped>,
    /// Each line's place in the order of reading, to report lines in that order.
    read: BTreeMap<(String, usize), usize>,
}

impl Translator {
    /// Reads `source`'s lines; `included` only for the main file, whose `include_dir` it reads.
    fn file(&mut self, source: &Source, included: Option<&BTreeMap<String, Included>>) {
        for (number, text) in content_lines(&source.text) {
            let (option, value) = first_word(text);
            let at = Location {
                file: source.name.clone(),
                line: number,
            };
            let place = self.read.len();
            self.read.insert((at.file.clone(), at.line), place);
            if rule(option) == Rule::IncludeDir {
                self.include_dir(at, value, included);
            } else {
                self.line(at, option, value, text);
            }
        }
    }

    fn include_dir(
        &mut self,
        at: Location,
        dir: &str,
        included: Option<&BTreeMap<String, Included>>,
    ) {
        let Some(included) = included else {
            self.not_mapped(
                at,
                "include_dir",
                "read only in the main file, as Mosquitto does",
            );
            return;
        };
        match included.get(dir) {
            Some(Included::Files(files)) => {
                let resume = self.current;
                for file in files {
                    self.current = 0;
                    self.file(file, None);
                }
                self.current = resume;
                let names: Vec<&str> = files.iter().map(|file| file.name.as_str()).collect();
                self.same.push(match names.as_slice() {
                    [] => format!("{at}: include_dir {dir} (no .conf files)"),
                    names => format!("{at}: include_dir {dir} (read: {})", names.join(", ")),
                });
            }
            Some(Included::Unreadable(why)) => self.not_mapped(
                at,
                "include_dir",
                &format!("cannot read {dir}: {why}; its files are not converted"),
            ),
            None => self.not_mapped(at, "include_dir", "needs a directory"),
        }
    }

    fn line(&mut self, at: Location, option: &str, value: &str, text: &str) {
        match rule(option) {
            Rule::Listener => self.listener(at.clone(), value, text),
            Rule::Port => match parse_port(value) {
                Ok(port) => {
                    let default = &mut self.listeners[0];
                    default.first.get_or_insert(at.clone());
                    if let Some(old) = default.port.replace(Setting::new(&at, text, port)) {
                        self.overridden(old.at, option, &at);
                    }
                }
                Err(why) => self.invalid(at, option, &why),
            },
            Rule::BindAddress if !value.is_empty() => {
                let default = &mut self.listeners[0];
                default.first.get_or_insert(at.clone());
                if let Some(old) =
                    default
                        .address
                        .replace(Setting::new(&at, text, value.to_owned()))
                {
                    self.overridden(old.at, option, &at);
                }
            }
            Rule::SocketDomain => {
                let domain = match value {
                    "ipv4" => Domain::V4,
                    "ipv6" => Domain::V6,
                    _ => return self.invalid(at, option, "expected ipv4 or ipv6"),
                };
                let listener = self.listener_at(&at);
                if let Some(old) = listener.domain.replace(Setting::new(&at, text, domain)) {
                    self.overridden(old.at, option, &at);
                }
            }
            Rule::Protocol => match value {
                "mqtt" => {
                    self.listener_at(&at);
                    self.same.push(format!("{at}: {text}"));
                }
                "websockets" => self.leave_out(at, option, WEBSOCKETS),
                _ => self.invalid(at, option, "expected mqtt or websockets"),
            },
            Rule::LeaveOut(reason) => self.leave_out(at, option, reason),
            Rule::MaxConnections => match value.parse::<i64>() {
                Ok(limit) => {
                    let listener = self.listener_at(&at);
                    if let Some(old) = listener
                        .max_connections
                        .replace(Setting::new(&at, text, limit))
                    {
                        self.overridden(old.at, option, &at);
                    }
                }
                Err(_) => self.invalid(at, option, "expected a number"),
            },
            Rule::MaxTopicAlias => match parse_number(value, u16::MAX.into()) {
                Ok(aliases) => {
                    let listener = self.listener_at(&at);
                    if let Some(old) = listener
                        .max_topic_alias
                        .replace(Setting::new(&at, text, aliases))
                    {
                        self.overridden(old.at, option, &at);
                    }
                }
                Err(why) => self.invalid(at, option, &why),
            },
            Rule::MaxQos => match parse_number(value, 2) {
                Ok(2) => {
                    self.listener_at(&at);
                    self.same.push(format!("{at}: {text}"));
                }
                Ok(_) => {
                    self.listener_at(&at);
                    self.not_mapped(
                        at,
                        option,
                        "shardmq accepts QoS 0, 1 and 2 on every listener",
                    )
                }
                Err(why) => self.invalid(at, option, &why),
            },
            Rule::Access(key) => self.access_line(at, key, value, text),
            Rule::Number(max) => match parse_number(value, max) {
                Ok(number) => {
                    if let Some(old) = self
                        .numbers
                        .insert(option.to_owned(), Setting::new(&at, text, number))
                    {
                        self.overridden(old.at, option, &at);
                    }
                }
                Err(why) => self.invalid(at, option, &why),
            },
            Rule::Flag => match parse_bool(value) {
                Ok(flag) => {
                    if let Some(old) = self
                        .flags
                        .insert(option.to_owned(), Setting::new(&at, text, flag))
                    {
                        self.overridden(old.at, option, &at);
                    }
                }
                Err(why) => self.invalid(at, option, &why),
            },
            Rule::Expiration => match parse_expiration(value) {
                Ok(seconds) => {
                    if let Some(old) = self.expiration.replace(Setting::new(&at, text, seconds)) {
                        self.overridden(old.at, option, &at);
                    }
                }
                Err(why) => self.invalid(at, option, &why),
            },
            Rule::Behaviour { shardmq, reason } => match parse_bool(value) {
                Ok(flag) if flag == shardmq => self.same.push(format!("{at}: {text}")),
                Ok(_) => self.not_mapped(at, option, reason),
                Err(why) => self.invalid(at, option, &why),
            },
            Rule::PerListenerSettings => match parse_bool(value) {
                Ok(_) => self.same.push(format!(
                    "{at}: {text} (shardmq has one set of access settings for every listener)"
                )),
                Err(why) => self.invalid(at, option, &why),
            },
            Rule::Unsupported(reason) => self.not_mapped(at, option, reason),
            Rule::BindAddress | Rule::IncludeDir => self.invalid(at, option, "needs a value"),
            Rule::Unknown => self.not_mapped(
                at,
                option,
                "not an option of Mosquitto 2's mosquitto.conf(5), nor one shardmq knows",
            ),
        }
    }

    /// `listener PORT [ADDRESS]`.
    fn listener(&mut self, at: Location, value: &str, text: &str) {
        let mut words = value.split_whitespace();
        let port = match words.next().map(parse_port) {
            Some(Ok(port)) => port,
            Some(Err(why)) => return self.invalid(at, "listener", &why),
            None => return self.invalid(at, "listener", "needs a port"),
        };
        let address = words.next();
        let mut listener = Listener {
            declared: Some(Setting::new(&at, text, ())),
            port: Some(Setting::new(&at, text, port)),
            address: address.map(|address| Setting::new(&at, text, address.to_owned())),
            ..Listener::default()
        };
        if port == 0 {
            // Port 0 with a path is a Unix socket.
            listener.left_out.push((
                at.clone(),
                "listener".into(),
                "Unix socket listeners are not supported",
            ));
        }
        self.listeners.push(listener);
        self.current = self.listeners.len() - 1;
    }

    /// The listener the option at `at` belongs to (marking the default listener started).
    fn listener_at(&mut self, at: &Location) -> &mut Listener {
        let listener = &mut self.listeners[self.current];
        if listener.declared.is_none() {
            listener.first.get_or_insert_with(|| at.clone());
        }
        listener
    }

    fn leave_out(&mut self, at: Location, option: &str, reason: &'static str) {
        self.listener_at(&at)
            .left_out
            .push((at.clone(), option.to_owned(), reason));
        self.not_mapped(at, option, reason);
    }

    fn access_line(&mut self, at: Location, key: AccessKey, value: &str, text: &str) {
        let option = match key {
            AccessKey::PasswordFile => "password_file",
            AccessKey::AclFile => "acl_file",
            AccessKey::AllowAnonymous => "allow_anonymous",
        };
        let per_listener = self.per_listener;
        let access = if per_listener {
            &mut self.listener_at(&at).access
        } else {
            &mut self.access
        };
        let old = match key {
            AccessKey::AllowAnonymous => match parse_bool(value) {
                Ok(flag) => access
                    .allow_anonymous
                    .replace(Setting::new(&at, text, flag))
                    .map(|old| old.at),
                Err(why) => return self.invalid(at, option, &why),
            },
            _ if value.is_empty() => return self.invalid(at, option, "needs a file"),
            AccessKey::PasswordFile | AccessKey::AclFile => {
                let slot = if key == AccessKey::PasswordFile {
                    &mut access.password_file
                } else {
                    &mut access.acl_file
                };
                slot.replace(Setting::new(&at, text, value.to_owned()))
                    .map(|old| old.at)
            }
        };
        if let Some(old) = old {
            self.overridden(old, option, &at);
        }
    }

    fn not_mapped(&mut self, at: Location, option: &str, reason: &str) {
        self.unmapped.push(Unmapped {
            at,
            option: option.to_owned(),
            reason: reason.to_owned(),
        });
    }

    fn invalid(&mut self, at: Location, option: &str, why: &str) {
        self.not_mapped(
            at,
            option,
            &format!("invalid value ({why}): Mosquitto refuses it too"),
        );
    }

    fn overridden(&mut self, at: Location, option: &str, by: &Location) {
        self.not_mapped(at, option, &format!("set again at {by}, which counts"));
    }

    /// The output, from everything read.
    fn finish(mut self, main: &str) -> Translation {
        let mut entries = Vec::new();
        let listeners = std::mem::take(&mut self.listeners);
        let started: Vec<&Listener> = listeners.iter().filter(|l| l.started()).collect();
        let served = self.listen(&started, &mut entries);
        self.max_connections(&served, &mut entries);
        self.access_settings(!started.is_empty(), &served, &mut entries);
        self.limits(&served, &mut entries);

        let read = &self.read;
        self.unmapped
            .sort_by_key(|unmapped| read.get(&(unmapped.at.file.clone(), unmapped.at.line)));
        let mut toml = format!(
            "# shardmq configuration converted from {main} by `shardmq import-mosquitto-conf`.\n\
             # Check it with `shardmq check-config --config FILE`; `shardmq --help` describes \
             every key.\n"
        );
        for entry in &entries {
            toml.push('\n');
            for comment in &entry.comments {
                let _ = writeln!(toml, "# {}", comment_text(comment));
            }
            let _ = writeln!(toml, "{} = {}", entry.key, entry.value);
        }
        if !self.same.is_empty() {
            toml.push_str("\n# Nothing to set: shardmq behaves so already.\n");
            for same in &self.same {
                let _ = writeln!(toml, "#   {}", comment_text(same));
            }
        }
        if !self.unmapped.is_empty() {
            toml.push('\n');
            for unmapped in &self.unmapped {
                let _ = writeln!(
                    toml,
                    "# not mapped: {}",
                    comment_text(&unmapped.to_string())
                );
            }
        }
        Translation {
            toml,
            unmapped: self.unmapped,
        }
    }

    /// `listen`; returns the listeners shardmq serves.
    fn listen<'a>(
        &mut self,
        started: &[&'a Listener],
        entries: &mut Vec<Entry>,
    ) -> Vec<&'a Listener> {
        if started.is_empty() {
            self.same.push(
                "no listener: Mosquitto listens on localhost port 1883 only, as shardmq does by \
                 default (127.0.0.1:1883)"
                    .into(),
            );
            return Vec::new();
        }
        let mut served = Vec::new();
        let mut addresses: Vec<SocketAddr> = Vec::new();
        let mut comments = Vec::new();
        for &listener in started {
            let Some(at) = listener.at().cloned() else {
                continue;
            };
            let resolved = if listener.left_out.is_empty() {
                listener.addresses()
            } else {
                Err(left_out_reasons(&listener.left_out))
            };
            let found = match resolved {
                Ok(found) => found,
                Err(why) => {
                    self.not_mapped(
                        at,
                        "listener",
                        &format!("{} is left out: {why}", listener.name()),
                    );
                    self.belongs_to_left_out(listener);
                    continue;
                }
            };
            served.push(listener);
            match &listener.declared {
                Some(declared) => comments.push(declared.source()),
                None => {
                    comments.extend(listener.port.iter().map(Setting::source));
                    comments.extend(listener.address.iter().map(Setting::source));
                    if listener.port.is_none() && listener.address.is_none() {
                        comments.push(format!("{at}: starts Mosquitto's default listener"));
                    }
                }
            }
            comments.extend(listener.domain.iter().map(Setting::source));
            let all = found.iter().all(|address| address.ip().is_unspecified());
            if all {
                let six = found.iter().find(|address| address.is_ipv6());
                comments.push(match six {
                    Some(six) if found.len() > 1 => format!(
                        "  no address: every interface, IPv4 and IPv6 (on a host without IPv6, \
                         leave out \"{six}\")"
                    ),
                    _ => "  no address: every interface".into(),
                });
            }
            for address in found {
                if !addresses.contains(&address) {
                    addresses.push(address);
                }
            }
        }
        if addresses.is_empty() {
            comments.push(
                "every listener is left out (see \"not mapped\" below): shardmq's default \
                 listener, 127.0.0.1:1883, applies"
                    .into(),
            );
            entries.push(Entry {
                key: "listen",
                value: "[\"127.0.0.1:1883\"]".into(),
                comments,
            });
            return served;
        }
        let list: Vec<String> = addresses
            .iter()
            .map(|address| toml_string(&address.to_string()))
            .collect();
        entries.push(Entry {
            key: "listen",
            value: format!("[{}]", list.join(", ")),
            comments,
        });
        served
    }

    /// Reports the options of a listener that is left out.
    fn belongs_to_left_out(&mut self, listener: &Listener) {
        let reason = format!("belongs to {}, which is left out", listener.described());
        let mut lines: Vec<(Location, &str)> = Vec::new();
        lines.extend(
            listener
                .max_connections
                .iter()
                .map(|s| (s.at.clone(), "max_connections")),
        );
        lines.extend(
            listener
                .max_topic_alias
                .iter()
                .map(|s| (s.at.clone(), "max_topic_alias")),
        );
        let access = &listener.access;
        lines.extend(
            access
                .password_file
                .iter()
                .map(|s| (s.at.clone(), "password_file")),
        );
        lines.extend(access.acl_file.iter().map(|s| (s.at.clone(), "acl_file")));
        lines.extend(
            access
                .allow_anonymous
                .iter()
                .map(|s| (s.at.clone(), "allow_anonymous")),
        );
        for (at, option) in lines {
            self.not_mapped(at, option, &reason);
        }
    }

    /// `max_connections`: Mosquitto's are per listener.
    fn max_connections(&mut self, served: &[&Listener], entries: &mut Vec<Entry>) {
        let limits: Vec<(&Listener, Option<&Setting<i64>>)> = served
            .iter()
            .map(|listener| (*listener, listener.max_connections.as_ref()))
            .collect();
        let unlimited = limits
            .iter()
            .find(|(_, limit)| limit.is_none_or(|limit| limit.value <= 0));
        match unlimited {
            None if !limits.is_empty() => {
                let set = || limits.iter().filter_map(|(_, limit)| *limit);
                let mut comments: Vec<String> = set().map(Setting::source).collect();
                let sum: i64 = set().map(|limit| limit.value).sum();
                if limits.len() > 1 {
                    comments.push(
                        "  the sum: Mosquitto limits each listener, shardmq all of them together"
                            .into(),
                    );
                }
                entries.push(Entry {
                    key: "max_connections",
                    value: sum.to_string(),
                    comments,
                });
            }
            None => {}
            Some((open, _)) => {
                let open = open.described();
                for (listener, limit) in &limits {
                    let Some(limit) = limit else { continue };
                    let reason = if limit.value <= 0 {
                        "no limit: shardmq always has one (default 1000000)".to_owned()
                    } else {
                        format!(
                            "limits {} only, and shardmq's max_connections counts every listener \
                             together, while {open} has no limit",
                            listener.name()
                        )
                    };
                    self.not_mapped(limit.at.clone(), "max_connections", &reason);
                }
            }
        }
    }

    /// `allow_anonymous`, `password_file`, `acl_file`.
    fn access_settings(&mut self, listeners: bool, served: &[&Listener], entries: &mut Vec<Entry>) {
        let access = std::mem::take(&mut self.access);
        let (password_file, acl_file, allow_anonymous, note) = if self.per_listener {
            let note = "  per_listener_settings: the same on every listener";
            (
                self.agreed(served, "password_file", |a| a.password_file.as_ref()),
                self.agreed(served, "acl_file", |a| a.acl_file.as_ref()),
                self.agreed_anonymous(served),
                Some(note),
            )
        } else {
            (
                Some(access.password_file),
                Some(access.acl_file),
                Some(access.allow_anonymous),
                None,
            )
        };
        match allow_anonymous {
            Some(Some(allow)) => entries.push(Entry {
                key: "allow_anonymous",
                value: allow.value.to_string(),
                comments: [Some(allow.source()), note.map(Into::into)]
                    .into_iter()
                    .flatten()
                    .collect(),
            }),
            Some(None) if listeners => entries.push(Entry {
                key: "allow_anonymous",
                value: "false".into(),
                comments: vec![
                    "not set: Mosquitto refuses anonymous clients once a listener is configured"
                        .into(),
                ],
            }),
            _ => {}
        }
        for (key, setting) in [("password_file", password_file), ("acl_file", acl_file)] {
            if let Some(Some(file)) = setting {
                entries.push(Entry {
                    key,
                    value: toml_string(&file.value),
                    comments: [Some(file.source()), note.map(Into::into)]
                        .into_iter()
                        .flatten()
                        .collect(),
                });
            }
        }
    }

    /// With `per_listener_settings`: the listeners' common setting (`Some(None)`: none has it),
    /// or `None`, each listener's line reported, when they differ.
    fn agreed<T: Clone + PartialEq>(
        &mut self,
        served: &[&Listener],
        key: &str,
        of: impl Fn(&Access) -> Option<&Setting<T>>,
    ) -> Option<Option<Setting<T>>> {
        let settings: Vec<Option<&Setting<T>>> = served.iter().map(|l| of(&l.access)).collect();
        let values: Vec<Option<&T>> = settings.iter().map(|s| s.map(|s| &s.value)).collect();
        if values.windows(2).all(|pair| pair[0] == pair[1]) {
            return Some(settings.into_iter().flatten().next().cloned());
        }
        self.differ(settings.into_iter().flatten().map(|s| s.at.clone()), key);
        None
    }

    /// [`Translator::agreed`] for `allow_anonymous`, which is false where a listener does not set
    /// it.
    fn agreed_anonymous(&mut self, served: &[&Listener]) -> Option<Option<Setting<bool>>> {
        let settings: Vec<Option<&Setting<bool>>> = served
            .iter()
            .map(|l| l.access.allow_anonymous.as_ref())
            .collect();
        let values: Vec<bool> = settings
            .iter()
            .map(|s| s.is_some_and(|s| s.value))
            .collect();
        if values.windows(2).all(|pair| pair[0] == pair[1]) {
            return Some(settings.into_iter().flatten().next().cloned());
        }
        self.differ(
            settings.into_iter().flatten().map(|s| s.at.clone()),
            "allow_anonymous",
        );
        None
    }

    fn differ(&mut self, lines: impl Iterator<Item = Location>, key: &str) {
        let reason = format!(
            "per_listener_settings true and the listeners differ in {key}: shardmq has one \
             {key} for every listener"
        );
        for at in lines {
            self.not_mapped(at, key, &reason);
        }
    }

    /// The broker-wide numbers and flags.
    fn limits(&mut self, served: &[&Listener], entries: &mut Vec<Entry>) {
        self.max_packet_size(entries);
        if let Some(inflight) = self.numbers.remove("max_inflight_messages") {
            let (value, note) = match inflight.value {
                0 => (
                    u16::MAX.into(),
                    Some("  0 (no maximum): the most MQTT lets a broker announce"),
                ),
                n => (n, None),
            };
            entries.push(number_entry(
                "max_inflight_messages",
                value,
                &inflight,
                note,
            ));
        }
        if let Some(queued) = self.numbers.remove("max_queued_messages") {
            if queued.value == 0 {
                self.not_mapped(
                    queued.at,
                    "max_queued_messages",
                    "0 means no maximum: shardmq bounds every session's queue (defaults 1000 \
                     offline, 100000 online)",
                );
            } else {
                entries.push(number_entry(
                    "max_queued_messages",
                    queued.value,
                    &queued,
                    None,
                ));
                entries.push(number_entry(
                    "max_queued_messages_online",
                    queued.value,
                    &queued,
                    Some("  Mosquitto's limit also applies to the queue of a connected client"),
                ));
            }
        }
        if let Some(bytes) = self.numbers.remove("max_queued_bytes") {
            if bytes.value == 0 {
                self.not_mapped(
                    bytes.at,
                    "max_queued_bytes",
                    "0 means no maximum: shardmq bounds the bytes every session queues (default \
                     64 MiB)",
                );
            } else {
                entries.push(number_entry("max_queued_bytes", bytes.value, &bytes, None));
            }
        }
        if let Some(qos0) = self.flags.remove("queue_qos0_messages") {
            entries.push(Entry {
                key: "queue_qos0_messages",
                value: qos0.value.to_string(),
                comments: vec![qos0.source()],
            });
        }
        if let Some(keepalive) = self.numbers.remove("max_keepalive") {
            if keepalive.value == 0 {
                self.not_mapped(
                    keepalive.at,
                    "max_keepalive",
                    "shardmq needs a maximum of 1 to 65535 seconds",
                );
            } else {
                entries.push(number_entry(
                    "max_keepalive",
                    keepalive.value,
                    &keepalive,
                    Some("  shardmq also gives it to clients that ask for no keep-alive (0)"),
                ));
            }
        }
        self.topic_aliases(served, entries);
        if let Some(retain) = self.flags.remove("retain_available") {
            if retain.value {
                self.same.push(retain.source());
            } else {
                entries.push(number_entry(
                    "max_retained_messages",
                    0,
                    &retain,
                    Some(
                        "  no retained messages: a retained PUBLISH is refused (MQTT 5 reason \
                         0x97) rather than its client disconnected",
                    ),
                ));
            }
        }
        if let Some(expiration) = self.expiration.take() {
            entries.push(number_entry(
                "persistent_client_expiration",
                expiration.value.into(),
                &expiration,
                Some("  seconds (Mosquitto's month is 30 days, its year 365)"),
            ));
        }
        if let Some(interval) = self.numbers.remove("sys_interval") {
            entries.push(number_entry(
                "sys_interval",
                interval.value,
                &interval,
                None,
            ));
        }
    }

    /// `max_packet_size`, from Mosquitto's packet and payload limits.
    fn max_packet_size(&mut self, entries: &mut Vec<Entry>) {
        let mut limits: Vec<(u64, String)> = Vec::new();
        for option in ["max_packet_size", "message_size_limit"] {
            let Some(limit) = self.numbers.remove(option) else {
                continue;
            };
            if limit.value == 0 {
                self.not_mapped(
                    limit.at,
                    option,
                    "0 means no limit: shardmq always limits packets (default 1 MiB); set \
                     max_packet_size to the largest packet clients send",
                );
            } else if option == "max_packet_size" {
                limits.push((limit.value, limit.source()));
            } else {
                let packet = (limit.value + u64::from(PUBLISH_HEADROOM)).min(MAX_MQTT_PACKET);
                limits.push((packet, limit.source()));
                limits.push((
                    packet,
                    format!(
                        "  payload bytes + {PUBLISH_HEADROOM} for the topic and headers: shardmq \
                         limits whole packets, and closes the connection of a client whose \
                         packet is larger instead of dropping the message"
                    ),
                ));
            }
        }
        if let Some(smallest) = limits.iter().map(|(limit, _)| *limit).min() {
            entries.push(Entry {
                key: "max_packet_size",
                value: smallest.to_string(),
                comments: limits.into_iter().map(|(_, comment)| comment).collect(),
            });
        }
    }

    /// `max_topic_aliases`: Mosquitto's `max_topic_alias` is per listener.
    fn topic_aliases(&mut self, served: &[&Listener], entries: &mut Vec<Entry>) {
        let set: Vec<&Setting<u64>> = served
            .iter()
            .filter_map(|listener| listener.max_topic_alias.as_ref())
            .collect();
        if set.is_empty() {
            return;
        }
        let values: Vec<u64> = served
            .iter()
            .map(|listener| {
                listener
                    .max_topic_alias
                    .as_ref()
                    .map_or(MOSQUITTO_TOPIC_ALIASES, |s| s.value)
            })
            .collect();
        if values.windows(2).all(|pair| pair[0] == pair[1]) {
            entries.push(Entry {
                key: "max_topic_aliases",
                value: values[0].to_string(),
                comments: set.iter().map(|s| s.source()).collect(),
            });
            return;
        }
        let reason = format!(
            "the listeners differ (Mosquitto's default is {MOSQUITTO_TOPIC_ALIASES}): shardmq has \
             one max_topic_aliases for every listener"
        );
        for setting in set {
            self.not_mapped(setting.at.clone(), "max_topic_alias", &reason);
        }
    }
}

/// Why a listener is left out: each reason once, with the options that gave it.
fn left_out_reasons(left_out: &[(Location, String, &'static str)]) -> String {
    let mut reasons: Vec<(&str, Vec<&str>)> = Vec::new();
    for (_, option, reason) in left_out {
        match reasons.iter_mut().find(|(known, _)| known == reason) {
            Some((_, options)) => options.push(option),
            None => reasons.push((reason, vec![option])),
        }
    }
    reasons
        .iter()
        .map(|(reason, options)| format!("{reason} ({})", options.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

fn number_entry<T>(key: &'static str, value: u64, from: &Setting<T>, note: Option<&str>) -> Entry {
    Entry {
        key,
        value: value.to_string(),
        comments: [Some(from.source()), note.map(Into::into)]
            .into_iter()
            .flatten()
            .collect(),
    }
}

/// `true`/`false` (or `1`/`0`), as Mosquitto reads booleans.
fn parse_bool(value: &str) -> Result<bool, String> {
    match value.split_whitespace().next() {
        Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

/// A whole number from 0 to `max`.
fn parse_number(value: &str, max: u64) -> Result<u64, String> {
    match value.split_whitespace().next().map(str::parse::<u64>) {
        Some(Ok(number)) if number <= max => Ok(number),
        Some(Ok(_)) => Err(format!("above {max}")),
        _ => Err(format!("expected a number from 0 to {max}")),
    }
}

fn parse_port(value: &str) -> Result<u16, String> {
    value
        .parse::<u16>()
        .map_err(|_| format!("`{value}` is not a port (0 to 65535)"))
}

/// Seconds in a Mosquitto duration: a positive number followed by `h`, `d`, `w`, `m` (30 days) or
/// `y` (365 days).
fn parse_expiration(value: &str) -> Result<u32, String> {
    const EXPECTED: &str = "expected a number followed by h, d, w, m or y";
    let value = value.split_whitespace().next().unwrap_or("");
    let Some(unit) = value.chars().last() else {
        return Err(EXPECTED.into());
    };
    let unit_seconds: u64 = match unit {
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        'm' => 30 * 86_400,
        'y' => 365 * 86_400,
        _ => return Err(EXPECTED.into()),
    };
    let count: u64 = value[..value.len() - 1]
        .parse()
        .ok()
        .filter(|&count| count > 0)
        .ok_or_else(|| EXPECTED.to_owned())?;
    count
        .checked_mul(unit_seconds)
        .and_then(|seconds| u32::try_from(seconds).ok())
        .ok_or_else(|| format!("longer than shardmq's limit of {} seconds", u32::MAX))
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `text` fit for a TOML comment, which may hold no control characters but tab.
fn comment_text(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::num::{NonZeroU16, NonZeroU32, NonZeroUsize};
    use std::path::Path;

    use super::*;
    use crate::config::Settings;

    fn source(name: &str, text: &str) -> Source {
        Source {
            name: name.into(),
            text: text.into(),
        }
    }

    fn convert(text: &str) -> Translation {
        translate(&source("m.conf", text), &BTreeMap::new())
    }

    /// The TOML read back as shardmq reads a `--config` file.
    fn read_back(translation: &Translation) -> Settings {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        file.write_all(translation.toml.as_bytes()).unwrap();
        Settings::from_file(file.path())
            .unwrap_or_else(|err| panic!("{err:#}\n{}", translation.toml))
    }

    /// `(line, option)` of each unmapped line of the main file.
    fn unmapped(translation: &Translation) -> Vec<(usize, &str)> {
        translation
            .unmapped
            .iter()
            .map(|u| (u.at.line, u.option.as_str()))
            .collect()
    }

    fn reason(translation: &Translation, line: usize) -> &str {
        translation
            .unmapped
            .iter()
            .find(|u| u.at.line == line)
            .map(|u| u.reason.as_str())
            .unwrap_or_else(|| panic!("line {line} is mapped: {:#?}", translation.unmapped))
    }

    fn listen(addresses: &[&str]) -> Vec<SocketAddr> {
        addresses.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn debian_default_keeps_shardmq_defaults_and_names_the_rest() {
        let text = "# Place your local configuration in /etc/mosquitto/conf.d/\n#\n\n\
                    pid_file /run/mosquitto/mosquitto.pid\n\n\
                    persistence true\npersistence_location /var/lib/mosquitto/\n\n\
                    log_dest file /var/log/mosquitto/mosquitto.log\n\n\
                    include_dir /etc/mosquitto/conf.d\n";
        let main = source("mosquitto.conf", text);
        assert_eq!(include_dirs(&main), ["/etc/mosquitto/conf.d"]);
        let included = BTreeMap::from([("/etc/mosquitto/conf.d".into(), Included::Files(vec![]))]);
        let translation = translate(&main, &included);
        assert_eq!(
            unmapped(&translation),
            [
                (4, "pid_file"),
                (6, "persistence"),
                (7, "persistence_location"),
                (9, "log_dest")
            ]
        );
        assert!(reason(&translation, 6).contains("no persistence yet"));
        let settings = read_back(&translation);
        assert!(settings.listen.is_empty(), "shardmq's default listener");
        assert_eq!(settings.allow_anonymous, None);
        assert!(translation
            .toml
            .contains("no listener: Mosquitto listens on localhost"));
        assert!(translation
            .toml
            .contains("include_dir /etc/mosquitto/conf.d (no .conf files)"));
        assert!(translation
            .toml
            .contains("# not mapped: mosquitto.conf:4: pid_file: shardmq writes no pid file"));
    }

    #[test]
    fn listeners_become_addresses_or_are_left_out() {
        let translation = convert(
            "listener 1883\n\
             listener 1884 127.0.0.1\n\
             listener 1885 localhost\nsocket_domain ipv4\n\
             listener 1886 ::1\n\
             listener 1887\nsocket_domain ipv6\n\
             listener 8883\ncertfile /c.pem\nkeyfile /k.pem\nmax_connections 5\n\
             listener 9001\nprotocol websockets\n\
             listener 1888 broker.example\n\
             listener 0 /run/mosquitto.sock\n\
             listener 1889\nmount_point tenant/\n\
             listener 1890\nbind_interface eth0\n\
             listener 1883\n",
        );
        assert_eq!(
            read_back(&translation).listen,
            listen(&[
                "0.0.0.0:1883",
                "[::]:1883",
                "127.0.0.1:1884",
                "127.0.0.1:1885",
                "[::1]:1886",
                "[::]:1887"
            ])
        );
        assert_eq!(
            unmapped(&translation),
            [
                (8, "listener"),
                (9, "certfile"),
                (10, "keyfile"),
                (11, "max_connections"),
                (12, "listener"),
                (13, "protocol"),
                (14, "listener"),
                (15, "listener"),
                (16, "listener"),
                (17, "mount_point"),
                (18, "listener"),
                (19, "bind_interface"),
            ]
        );
        assert!(reason(&translation, 8).contains(
            "listener 8883 is left out: TLS listeners are not supported yet (certfile, keyfile)"
        ));
        assert!(reason(&translation, 11).contains("listener 8883 (m.conf:8), which is left out"));
        assert!(reason(&translation, 12).contains("WebSocket"));
        assert!(reason(&translation, 14).contains("`broker.example` is a host name"));
        assert!(reason(&translation, 15).contains("Unix socket"));
        assert!(translation
            .toml
            .contains("IPv4 and IPv6 (on a host without IPv6, leave out"));
        assert_eq!(
            read_back(&translation).allow_anonymous,
            Some(false),
            "Mosquitto's default with listeners"
        );
    }

    #[test]
    fn port_bind_address_and_listener_options_start_the_default_listener() {
        let translation = convert("port 1884\nbind_address 192.0.2.7\nlistener 1885 127.0.0.1\n");
        let settings = read_back(&translation);
        assert_eq!(
            settings.listen,
            listen(&["192.0.2.7:1884", "127.0.0.1:1885"])
        );
        let translation = convert("max_connections 10\n");
        assert_eq!(
            read_back(&translation).listen,
            listen(&["0.0.0.0:1883", "[::]:1883"])
        );
        assert_eq!(
            read_back(&translation).max_connections,
            NonZeroUsize::new(10)
        );
        // Nothing that starts it: loopback only, anonymous clients as shardmq decides.
        let settings = read_back(&convert("sys_interval 5\n"));
        assert!(settings.listen.is_empty());
        assert_eq!(settings.allow_anonymous, None);
        assert_eq!(settings.sys_interval, Some(5));
    }

    #[test]
    fn max_connections_add_up_when_every_listener_has_one() {
        let translation =
            convert("listener 1883\nmax_connections 100\nlistener 1884\nmax_connections 50\n");
        assert_eq!(
            read_back(&translation).max_connections,
            NonZeroUsize::new(150)
        );
        assert!(
            translation.unmapped.is_empty(),
            "{:?}",
            translation.unmapped
        );
        let translation = convert("listener 1883\nmax_connections 100\nlistener 1884\n");
        assert_eq!(read_back(&translation).max_connections, None);
        assert_eq!(unmapped(&translation), [(2, "max_connections")]);
        assert!(reason(&translation, 2).contains("listener 1884 (m.conf:3) has no limit"));
        let translation = convert("listener 1883\nmax_connections -1\n");
        assert_eq!(unmapped(&translation), [(2, "max_connections")]);
    }

    #[test]
    fn access_settings_are_global_unless_listeners_differ() {
        let translation = convert(
            "listener 1883\npassword_file /etc/mosquitto/passwd\nacl_file /etc/mosquitto/acl\n\
             listener 1884\nallow_anonymous true\n",
        );
        let settings = read_back(&translation);
        assert_eq!(settings.allow_anonymous, Some(true));
        assert_eq!(
            settings.access_files.password_file.as_deref(),
            Some(Path::new("/etc/mosquitto/passwd"))
        );
        assert_eq!(
            settings.access_files.acl_file.as_deref(),
            Some(Path::new("/etc/mosquitto/acl"))
        );

        let per_listener = "per_listener_settings true\n\
                            listener 1883\npassword_file /p\nallow_anonymous false\n\
                            listener 1884\npassword_file /p\n";
        let translation = convert(per_listener);
        let settings = read_back(&translation);
        assert_eq!(
            settings.access_files.password_file.as_deref(),
            Some(Path::new("/p"))
        );
        assert_eq!(settings.allow_anonymous, Some(false));
        assert!(
            translation.unmapped.is_empty(),
            "{:?}",
            translation.unmapped
        );

        let translation = convert(
            "per_listener_settings true\n\
             listener 1883\npassword_file /p\nacl_file /a\n\
             listener 1884 127.0.0.1\nallow_anonymous true\nacl_file /a\n",
        );
        let settings = read_back(&translation);
        assert_eq!(settings.access_files.password_file, None);
        assert_eq!(settings.allow_anonymous, None);
        assert_eq!(
            settings.access_files.acl_file.as_deref(),
            Some(Path::new("/a"))
        );
        assert_eq!(
            unmapped(&translation),
            [(3, "password_file"), (6, "allow_anonymous")]
        );
        assert!(reason(&translation, 3).contains("listeners differ in password_file"));
    }

    #[test]
    fn limits_carry_over() {
        let translation = convert(
            "max_inflight_messages 20\nmax_queued_messages 500\nmax_queued_bytes 1048576\n\
             queue_qos0_messages true\nmax_keepalive 120\nsys_interval 30\n\
             persistent_client_expiration 14d\nretain_available false\n\
             listener 1883\nmax_topic_alias 20\n",
        );
        assert!(
            translation.unmapped.is_empty(),
            "{:?}",
            translation.unmapped
        );
        let settings = read_back(&translation);
        assert_eq!(settings.max_inflight_messages, NonZeroU16::new(20));
        assert_eq!(settings.max_queued_messages, NonZeroUsize::new(500));
        assert_eq!(settings.max_queued_messages_online, NonZeroUsize::new(500));
        assert_eq!(settings.max_queued_bytes, NonZeroUsize::new(1_048_576));
        assert_eq!(settings.queue_qos0_messages, Some(true));
        assert_eq!(settings.max_keepalive, NonZeroU16::new(120));
        assert_eq!(settings.sys_interval, Some(30));
        assert_eq!(settings.persistent_client_expiration, Some(14 * 86_400));
        assert_eq!(settings.max_retained_messages, Some(0));
        assert_eq!(settings.max_topic_aliases, Some(20));

        let translation = convert(
            "max_inflight_messages 0\nmax_queued_messages 0\nmax_queued_bytes 0\n\
             max_keepalive 0\nmax_packet_size 0\nmessage_size_limit 0\n",
        );
        assert_eq!(
            read_back(&translation).max_inflight_messages,
            NonZeroU16::new(65535)
        );
        assert_eq!(
            unmapped(&translation),
            [
                (2, "max_queued_messages"),
                (3, "max_queued_bytes"),
                (4, "max_keepalive"),
                (5, "max_packet_size"),
                (6, "message_size_limit"),
            ]
        );
    }

    #[test]
    fn packet_size_is_the_smaller_of_both_limits() {
        let settings_for = |text| read_back(&convert(text)).max_packet_size;
        assert_eq!(
            settings_for("max_packet_size 2048\n"),
            NonZeroU32::new(2048)
        );
        assert_eq!(
            settings_for("message_size_limit 1000\n"),
            NonZeroU32::new(1000 + PUBLISH_HEADROOM)
        );
        assert_eq!(
            settings_for("message_size_limit 1000\nmax_packet_size 4096\n"),
            NonZeroU32::new(4096)
        );
        assert_eq!(
            settings_for("max_packet_size 100000\nmessage_size_limit 1000\n"),
            NonZeroU32::new(1000 + PUBLISH_HEADROOM)
        );
        assert_eq!(
            settings_for("message_size_limit 268435455\n"),
            NonZeroU32::new(268_435_460)
        );
    }

    #[test]
    fn durations_in_mosquitto_units() {
        assert_eq!(parse_expiration("2h"), Ok(7200));
        assert_eq!(parse_expiration("14d"), Ok(14 * 86_400));
        assert_eq!(parse_expiration("1w"), Ok(604_800));
        assert_eq!(parse_expiration("2m"), Ok(60 * 86_400));
        assert_eq!(parse_expiration("1y"), Ok(31_536_000));
        for bad in ["", "5", "0d", "-1d", "d", "1s", "1.5d"] {
            assert!(parse_expiration(bad).is_err(), "{bad:?}");
        }
        let err = parse_expiration("200y").unwrap_err();
        assert!(err.contains("4294967295"), "{err}");
        let translation = convert("persistent_client_expiration 3s\n");
        assert!(reason(&translation, 1).contains("followed by h, d, w, m or y"));
    }

    #[test]
    fn what_does_not_carry_over_is_named_without_its_value() {
        let translation = convert(
            "auth_plugin /usr/lib/plugin.so\nauth_opt_db_password hunter2\n\
             connection uplink\naddress 192.0.2.1:1883\nremote_password hunter3\n\
             user mosquitto\nmemory_limit 0\nlog_type all\nno_such_option 1\n\
             persistence false\nset_tcp_nodelay true\nupgrade_outgoing_qos true\n",
        );
        assert_eq!(
            unmapped(&translation),
            [
                (1, "auth_plugin"),
                (2, "auth_opt_db_password"),
                (3, "connection"),
                (4, "address"),
                (5, "remote_password"),
                (6, "user"),
                (7, "memory_limit"),
                (8, "log_type"),
                (9, "no_such_option"),
                (12, "upgrade_outgoing_qos"),
            ]
        );
        for secret in ["hunter2", "hunter3"] {
            assert!(!translation.toml.contains(secret), "{}", translation.toml);
            assert!(translation
                .unmapped
                .iter()
                .all(|u| !u.to_string().contains(secret)));
        }
        assert!(reason(&translation, 3).contains("bridges"));
        assert!(reason(&translation, 9).contains("not an option"));
        assert!(translation
            .toml
            .contains("#   m.conf:10: persistence false"));
        assert!(translation
            .toml
            .contains("#   m.conf:11: set_tcp_nodelay true"));
        assert!(translation
            .toml
            .contains("# not mapped: m.conf:1: auth_plugin: shardmq loads no plugins"));
    }

    #[test]
    fn repeated_and_invalid_lines_are_reported() {
        let translation = convert(
            "sys_interval 5\nsys_interval 7\nmax_keepalive 70000\nallow_anonymous maybe\n\
             listener\nlistener http\npassword_file\n",
        );
        assert_eq!(read_back(&translation).sys_interval, Some(7));
        assert_eq!(
            unmapped(&translation),
            [
                (1, "sys_interval"),
                (3, "max_keepalive"),
                (4, "allow_anonymous"),
                (5, "listener"),
                (6, "listener"),
                (7, "password_file"),
            ]
        );
        assert!(reason(&translation, 1).contains("set again at m.conf:2"));
        assert!(reason(&translation, 3).contains("above 65535"));
    }

    #[test]
    fn included_files_are_read_in_place_from_the_default_listener() {
        let main = source(
            "main.conf",
            "listener 1884 127.0.0.1\ninclude_dir /conf.d\nmax_connections 7\n\
             include_dir /missing\n",
        );
        let included = BTreeMap::from([
            (
                "/conf.d".to_owned(),
                Included::Files(vec![
                    source(
                        "/conf.d/a.conf",
                        "sys_interval 3\nport 1885\ninclude_dir /x\n",
                    ),
                    source("/conf.d/b.conf", "max_connections 9\n"),
                ]),
            ),
            (
                "/missing".to_owned(),
                Included::Unreadable("No such file or directory".into()),
            ),
        ]);
        let translation = translate(&main, &included);
        let settings = read_back(&translation);
        assert_eq!(settings.sys_interval, Some(3));
        assert_eq!(
            settings.listen,
            listen(&["0.0.0.0:1885", "[::]:1885", "127.0.0.1:1884"])
        );
        // 9 on the default listener (from b.conf), 7 on 1884 (back in the main file).
        assert_eq!(settings.max_connections, NonZeroUsize::new(16));
        let reported: Vec<String> = translation.unmapped.iter().map(|u| u.to_string()).collect();
        assert_eq!(reported.len(), 2, "{reported:#?}");
        assert!(
            reported[0].starts_with("/conf.d/a.conf:3: include_dir: read only in the main"),
            "{reported:#?}"
        );
        assert!(reported[1].starts_with("main.conf:4: include_dir: cannot read /missing"));
    }

    #[test]
    fn toml_strings_round_trip() {
        for text in [
            "/etc/shardmq/passwd",
            "a \"quoted\" \\ path",
            "tab\there",
            "é\u{1}",
        ] {
            let table: toml::Table = format!("key = {}", toml_string(text)).parse().unwrap();
            assert_eq!(table["key"].as_str(), Some(text));
        }
        assert_eq!(comment_text("a\u{7}b\tc"), "a?b\tc");
    }

    #[test]
    fn mosquitto_syntax_is_recognised() {
        assert_eq!(
            mosquitto_line("# c\n\nlistener 1883\n"),
            Some((3, "listener"))
        );
        assert_eq!(mosquitto_line("max_connections = 5\n"), None);
        assert_eq!(mosquitto_line("listen = [\"127.0.0.1:1883\"]\n"), None);
        assert_eq!(mosquitto_line("user alice\ntopic read a/#\n"), None);
        assert_eq!(mosquitto_line("[admin]\nlisten = \"\"\n"), None);
    }
}
