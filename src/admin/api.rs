//! The admin API's endpoints: a parsed request in, a response out, with no socket in sight.
//!
//! [`super::http`] owns the connections and turns hyper's requests into [`Request`]s; everything
//! here is plain functions of the request and the broker's state, so routing, paging and the
//! token check are tested without a server. [`Api::respond`] may block for up to
//! [`SHARD_TIMEOUT`] while the shards list, describe, kick or purge clients, or while the
//! control core lists or lifts bans, so the server calls it on a blocking thread, never on its
//! event loop.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shardmq_codec::RetainHandling;
use shardmq_shard::control::{ClientDetails, ClientFilter, ClientInfo, Purge};
use shardmq_shard::BrokerHandle;
use subtle::ConstantTimeEq;

use super::prometheus;
use crate::control_core::guard::Ban;
use crate::control_core::GuardHandle;
use crate::status::figures::figures_json;
use crate::status::logins::Logins;
use crate::status::Shared;

/// How long the shards (or the control core) may take to answer.
const SHARD_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest page of clients.
const MAX_PER_PAGE: usize = 1000;

/// Default page size of client listings.
const DEFAULT_PER_PAGE: usize = 100;

/// A request as the endpoints see it: the body, which no endpoint takes, is already discarded.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Request {
    /// `GET`, `DELETE`...
    pub method: String,
    /// Path, still percent-encoded (a client id is decoded by the endpoint that takes it).
    pub path: String,
    /// Query parameters, decoded.
    pub query: Vec<(String, String)>,
    /// The `Authorization` header's value, as sent.
    pub authorization: Option<Vec<u8>>,
}

impl Request {
    /// A request for `method` and `target` (path and optional `?query`).
    pub fn new(method: &str, target: &str) -> Request {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Request {
            method: method.to_owned(),
            path: path.to_owned(),
            query: parse_query(query),
            authorization: None,
        }
    }

    /// The first value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A response.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, value: &Value) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
        }
    }

    /// A JSON `{"error": message}`.
    pub fn error(status: u16, message: &str) -> Response {
        Response::json(status, &json!({ "error": message }))
    }

    /// An empty response.
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            content_type: "text/plain",
            body: Vec::new(),
        }
    }
}

/// The bearer token, kept only as its SHA-256 digest. Comparing the digest of what a client sends
/// with [`subtle`] takes the same time whatever the token's length and wherever the first
/// difference is, so timing reveals neither.
#[derive(Clone)]
pub struct Token([u8; 32]);

impl Token {
    /// The token `secret`.
    pub fn new(secret: &str) -> Token {
        Token(Sha256::digest(secret.as_bytes()).into())
    }

    /// Whether `authorization` (a header value) is `Bearer <this token>`.
    pub fn admits(&self, authorization: Option<&[u8]>) -> bool {
        let given = authorization
            .and_then(|value| value.strip_prefix(b"Bearer "))
            .unwrap_or_default();
        let digest: [u8; 32] = Sha256::digest(given).into();
        bool::from(digest.ct_eq(&self.0))
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

/// The endpoints over the broker handle, the monitor's read model and the login guard.
pub struct Api {
    token: Option<Token>,
    handle: BrokerHandle,
    shared: Arc<Shared>,
    /// The login guard, when a control core runs (with nothing to check there is none: no
    /// failed logins, no bans).
    guard: Option<GuardHandle>,
}

impl Api {
    /// The API, requiring `token` when one is given.
    pub fn new(
        token: Option<Token>,
        handle: BrokerHandle,
        shared: Arc<Shared>,
        guard: Option<GuardHandle>,
    ) -> Api {
        Api {
            token,
            handle,
            shared,
            guard,
        }
    }

    /// Whether the request carries the token (always, when none is configured).
    pub fn authorized(&self, request: &Request) -> bool {
        self.token
            .as_ref()
            .is_none_or(|token| token.admits(request.authorization.as_deref()))
    }

    /// The answer to a request that was already [`Api::authorized`]. Blocks while the shards
    /// or the control core answer.
    pub fn respond(&self, request: &Request) -> Response {
        let path = request.path.trim_end_matches('/');
        let method = request.method.as_str();
        // `/api/v1/<collection>/<item>`, the item percent-decoded.
        let item = |collection: &str| {
            path.strip_prefix(collection)
                .and_then(|rest| rest.strip_prefix('/'))
                .filter(|rest| !rest.is_empty())
                .map(percent_decode)
        };
        if let Some(id) = item("/api/v1/clients") {
            return match method {
                "GET" => self.client(&id),
                "DELETE" => self.kick(&id),
                _ => Response::error(405, "method not allowed"),
            };
        }
        if let Some(id) = item("/api/v1/sessions") {
            return match method {
                "DELETE" => self.purge(&id),
                _ => Response::error(405, "method not allowed"),
            };
        }
        if let Some(address) = item("/api/v1/bans") {
            return match method {
                "DELETE" => self.lift(&address),
                _ => Response::error(405, "method not allowed"),
            };
        }
        match (method, path) {
            ("GET", "/metrics") => Response {
                status: 200,
                content_type: prometheus::CONTENT_TYPE,
                body: prometheus::render(
                    &self.shared.status(),
                    self.shared.hot_untracked(),
                    &self.logins(),
                )
                .into_bytes(),
            },
            ("GET", "/api/v1/stats") => Response::json(200, &self.stats()),
            ("GET", "/api/v1/clients") => self.clients(request),
            ("GET", "/api/v1/topics/hot") => self.hot_topics(request),
            ("GET", "/api/v1/bans") => self.bans(),
            _ => route_error(method, path),
        }
    }

    fn logins(&self) -> Logins {
        self.guard
            .as_ref()
            .map_or_else(Logins::default, GuardHandle::logins)
    }

    fn stats(&self) -> Value {
        let status = self.shared.status();
        let shards: Vec<Value> = status
            .figures
            .shards_json()
            .into_iter()
            .enumerate()
            .map(|(shard, mut object)| {
                if let Some(load) = status.shard_load.get(shard) {
                    object.insert("load".into(), json!(load));
                }
                Value::Object(object)
            })
            .collect();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": status.uptime,
            "sampled_at": status.sampled_at,
            "shard_count": status.figures.shards.len(),
            "clients_maximum": status.clients_maximum,
            "total": figures_json(&status.figures.total),
            "shards": shards,
            "load": status.load,
            "system": status.system,
            "logins": self.logins(),
        })
    }

    /// A page of the clients, those matching `prefix` (of the client id) and `username` if
    /// given.
    fn clients(&self, request: &Request) -> Response {
        let (page, per_page) = match page_of(request) {
            Ok(paging) => paging,
            Err(response) => return response,
        };
        let filter = ClientFilter {
            prefix: request
                .param("prefix")
                .filter(|prefix| !prefix.is_empty())
                .map(str::to_owned),
            username: request.param("username").map(str::to_owned),
        };
        let clients = self.handle.clients_matching(&filter, SHARD_TIMEOUT);
        let listed: Vec<Value> = clients
            .iter()
            .skip((page - 1).saturating_mul(per_page))
            .take(per_page)
            .map(|client| Value::Object(client_json(client)))
            .collect();
        Response::json(
            200,
            &json!({
                "page": page,
                "per_page": per_page,
                "total": clients.len(),
                "clients": listed,
            }),
        )
    }

    fn client(&self, id: &str) -> Response {
        match self.handle.client(id, SHARD_TIMEOUT) {
            Some(details) => Response::json(200, &details_json(&details, unix_now())),
            None => Response::error(404, "no such client"),
        }
    }

    fn kick(&self, id: &str) -> Response {
        if self.handle.kick(id, SHARD_TIMEOUT) {
            Response::empty(204)
        } else {
            Response::error(404, "no such client")
        }
    }

    fn purge(&self, id: &str) -> Response {
        match self.handle.purge_session(id, SHARD_TIMEOUT) {
            Purge::Purged => Response::empty(204),
            Purge::Connected => Response::error(
                409,
                "the client is connected: disconnect it first (DELETE /api/v1/clients/{id})",
            ),
            Purge::Unknown => Response::error(404, "no such session"),
        }
    }

    fn hot_topics(&self, request: &Request) -> Response {
        match top_of(request) {
            Ok(top) => Response::json(200, &json!(self.shared.ranking(top))),
            Err(response) => response,
        }
    }

    fn bans(&self) -> Response {
        let bans = match &self.guard {
            None => Vec::new(),
            Some(guard) => match guard.bans(SHARD_TIMEOUT) {
                Some(bans) => bans,
                None => return Response::error(503, "the control core did not answer in time"),
            },
        };
        let (now, unix) = (Instant::now(), unix_now());
        let bans: Vec<Value> = bans.iter().map(|ban| ban_json(ban, now, unix)).collect();
        Response::json(200, &json!({ "bans": bans }))
    }

    fn lift(&self, address: &str) -> Response {
        let Some(address) = parse_source(address) else {
            return Response::error(400, "not an IP address");
        };
        let lifted = match &self.guard {
            None => Some(false),
            Some(guard) => guard.lift(address, SHARD_TIMEOUT),
        };
        match lifted {
            Some(true) => Response::empty(204),
            Some(false) => Response::error(404, "no ban on that address"),
            None => Response::error(503, "the control core did not answer in time"),
        }
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// A client as listings show it.
fn client_json(client: &ClientInfo) -> serde_json::Map<String, Value> {
    let value = json!({
        "client_id": client.client_id,
        "username": client.username,
        "address": client.peer.map(|peer| peer.to_string()),
        "shard": client.shard,
        "connected_since": client.connected_since,
        "subscriptions": client.subscriptions,
        "connected": client.connected,
        "queued": client.queued,
        "inflight": client.inflight,
        "dropped": client.dropped,
    });
    match value {
        Value::Object(object) => object,
        _ => serde_json::Map::new(),
    }
}

/// One client in full, at `unix` (seconds since the epoch): the listing's fields, with the
/// subscriptions listed instead of counted.
fn details_json(details: &ClientDetails, unix: u64) -> Value {
    let mut object = client_json(&details.info);
    let subscriptions: Vec<Value> = details
        .subscriptions
        .iter()
        .map(|(filter, options)| {
            json!({
                "filter": filter,
                "qos": options.qos as u8,
                "no_local": options.no_local,
                "retain_as_published": options.retain_as_published,
                "retain_handling": match options.retain_handling {
                    RetainHandling::SendAtSubscribe => "send_at_subscribe",
                    RetainHandling::SendIfNew => "send_if_new",
                    RetainHandling::DoNotSend => "do_not_send",
                },
            })
        })
        .collect();
    let protocol = details.protocol;
    for (key, value) in [
        ("subscriptions", Value::from(subscriptions)),
        ("protocol_level", protocol.level().into()),
        (
            "protocol",
            match protocol.level() {
                3 => "3.1",
                4 => "3.1.1",
                _ => "5.0",
            }
            .into(),
        ),
        ("keep_alive", details.keep_alive.into()),
        ("clean_start", details.clean_start.into()),
        ("persistent", details.persistent.into()),
        ("queued_bytes", details.queued_bytes.into()),
        (
            "offline_since",
            details
                .offline_seconds
                .map(|seconds| unix.saturating_sub(seconds))
                .into(),
        ),
        ("session_expires_in", details.expires_in.into()),
    ] {
        object.insert(key.to_owned(), value);
    }
    Value::Object(object)
}

/// A ban at `now` (monotonic) and `unix` (the same moment, seconds since the epoch).
fn ban_json(ban: &Ban, now: Instant, unix: u64) -> Value {
    let left = ban.until.saturating_duration_since(now).as_secs();
    json!({
        "address": match ban.source {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("{v6}/64"),
        },
        "banned_until": unix + left,
        "seconds_left": left,
        "failures": ban.failures,
    })
}

/// The address of `DELETE /api/v1/bans/{address}`: an IP address, or an IPv6 /64 as `GET
/// /api/v1/bans` shows it (`2001:db8:1:2::/64`).
fn parse_source(text: &str) -> Option<IpAddr> {
    text.strip_suffix("/64")
        .filter(|prefix| prefix.contains(':'))
        .unwrap_or(text)
        .parse()
        .ok()
}

/// The answer to a request no endpoint took: 405 on a known path, else 404.
fn route_error(method: &str, path: &str) -> Response {
    match (method, path) {
        (
            _,
            "/metrics" | "/api/v1/stats" | "/api/v1/clients" | "/api/v1/topics/hot"
            | "/api/v1/bans",
        ) => Response::error(405, "method not allowed"),
        _ => Response::error(404, "not found"),
    }
}

/// `page` (1-based) and `per_page` (at most [`MAX_PER_PAGE`]) of a client listing.
fn page_of(request: &Request) -> Result<(usize, usize), Response> {
    let number = |name: &'static str, default: usize| match request.param(name) {
        None => Ok(default),
        Some(text) => text.parse::<usize>().ok().filter(|n| *n > 0).ok_or(name),
    };
    match (number("page", 1), number("per_page", DEFAULT_PER_PAGE)) {
        (Ok(page), Ok(per_page)) => Ok((page, per_page.min(MAX_PER_PAGE))),
        (Err(name), _) | (_, Err(name)) => Err(Response::error(
            400,
            &format!("{name} must be a positive integer"),
        )),
    }
}

/// `top` of a hot-topic ranking: 20 unless given, at most [`MAX_PER_PAGE`].
fn top_of(request: &Request) -> Result<usize, Response> {
    match request.param("top").map(str::parse::<usize>) {
        None => Ok(20),
        Some(Ok(top)) => Ok(top.min(MAX_PER_PAGE)),
        Some(Err(_)) => Err(Response::error(400, "top must be a non-negative integer")),
    }
}

/// Splits `a=1&b=x+y` into decoded pairs (`+` is a space, `%XX` an escape).
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(&key.replace('+', " ")),
                percent_decode(&value.replace('+', " ")),
            )
        })
        .collect()
}

/// Decodes `%XX` escapes; invalid escapes and invalid UTF-8 are kept as they are (lossy).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&hi), Some(&lo)) if hex(hi).is_some() && hex(lo).is_some() => {
                out.push((hex(hi).unwrap_or(0) * 16 + hex(lo).unwrap_or(0)) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::hot::{HotTable, TopicFilter};

    #[test]
    fn parses_target_and_query() {
        let request = Request::new("GET", "/api/v1/clients?page=2&per_page=10&x=a%20b+c&flag");
        assert_eq!(request.path, "/api/v1/clients");
        assert_eq!(request.param("page"), Some("2"));
        assert_eq!(request.param("x"), Some("a b c"));
        assert_eq!(request.param("flag"), Some(""));
        assert_eq!(request.param("nope"), None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%20c"), "a/b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn token_admits_only_the_exact_bearer_token() {
        let token = Token::new("s3cret");
        assert!(token.admits(Some(b"Bearer s3cret")));
        for wrong in [
            &b"Bearer s3creT"[..],
            b"Bearer s3cre",
            b"Bearer s3cret2",
            b"Bearer ",
            b"bearer s3cret",
            b"s3cret",
            b"Bearer s3cret ",
        ] {
            assert!(!token.admits(Some(wrong)), "{wrong:?}");
        }
        assert!(!token.admits(None));
        assert!(!Token::new("").admits(Some(b"Bearer x")));
        assert_eq!(format!("{token:?}"), "Token(..)");
    }

    #[test]
    fn paging_and_top_are_checked() {
        let paging = |target: &str| page_of(&Request::new("GET", target)).map_err(|r| r.status);
        assert_eq!(paging("/c"), Ok((1, DEFAULT_PER_PAGE)));
        assert_eq!(paging("/c?page=3&per_page=5000"), Ok((3, MAX_PER_PAGE)));
        assert_eq!(paging("/c?page=0"), Err(400));
        assert_eq!(paging("/c?per_page=x"), Err(400));
        let top = |target: &str| top_of(&Request::new("GET", target)).map_err(|r| r.status);
        assert_eq!(top("/t"), Ok(20));
        assert_eq!(top("/t?top=0"), Ok(0));
        assert_eq!(top("/t?top=-1"), Err(400));
    }

    #[test]
    fn ban_addresses_are_read_as_shown() {
        assert_eq!(parse_source("192.0.2.1"), "192.0.2.1".parse().ok());
        assert_eq!(
            parse_source("2001:db8:1:2::/64"),
            "2001:db8:1:2::".parse().ok()
        );
        assert_eq!(
            parse_source("2001:db8:1:2::9"),
            "2001:db8:1:2::9".parse().ok()
        );
        assert_eq!(parse_source("192.0.2.1/64"), None);
        assert_eq!(parse_source("nobody"), None);
        let now = Instant::now();
        let ban = Ban {
            source: "2001:db8:1:2::".parse().unwrap(),
            until: now + Duration::from_secs(90),
            failures: 10,
        };
        assert_eq!(
            ban_json(&ban, now, 1_000),
            json!({"address": "2001:db8:1:2::/64", "banned_until": 1_090, "seconds_left": 90, "failures": 10})
        );
    }

    /// The API over shards that never answer and no control core: what needs neither.
    fn offline_api() -> Api {
        let (handle, _controls) = BrokerHandle::new(1);
        let shared = Shared::new(HotTable::new(10, TopicFilter::default()));
        Api::new(None, handle, Arc::new(shared), None)
    }

    #[test]
    fn item_routes_and_bans_without_a_control_core() {
        let api = offline_api();
        let status = |method: &str, target: &str| api.respond(&Request::new(method, target)).status;
        assert_eq!(status("PUT", "/api/v1/clients/x"), 405);
        assert_eq!(status("GET", "/api/v1/sessions/x"), 405);
        assert_eq!(status("POST", "/api/v1/bans"), 405);
        assert_eq!(status("GET", "/api/v1/bans/192.0.2.1"), 405);
        assert_eq!(status("DELETE", "/api/v1/bans/not%20an%20address"), 400);
        assert_eq!(
            status("DELETE", "/api/v1/bans/192.0.2.1"),
            404,
            "nothing is banned"
        );
        let bans = api.respond(&Request::new("GET", "/api/v1/bans/"));
        assert_eq!(bans.body, br#"{"bans":[]}"#.to_vec());
        let stats = api.respond(&Request::new("GET", "/api/v1/stats"));
        let stats: Value = serde_json::from_slice(&stats.body).unwrap();
        assert_eq!(stats["logins"]["failures"]["banned"], 0);
        assert_eq!(stats["logins"]["bans_active"], 0);
        assert!(stats["sampled_at"].is_number());
    }

    #[test]
    fn unknown_routes_and_methods() {
        assert_eq!(route_error("POST", "/metrics").status, 405);
        assert_eq!(route_error("PUT", "/api/v1/clients").status, 405);
        assert_eq!(route_error("GET", "/api/v1/nothing").status, 404);
        assert_eq!(
            route_error("GET", "/x").body,
            br#"{"error":"not found"}"#.to_vec()
        );
    }
}
