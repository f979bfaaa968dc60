//! The HTTP admin listener: Prometheus metrics and a small JSON API.
//!
//! One OS thread accepts and serves connections one at a time ([`http`] reads one request per
//! connection, under a short timeout). That is plenty for a scraper and a few operators, and it
//! means the admin side can never hold more than one socket and one request in memory. Broker
//! figures and hot topics come from the read model, [`Shared`], which the monitor fills (at most
//! one second old); client listings and kicks go to the shards through [`BrokerHandle`].
//!
//! | method and path | answer |
//! | --- | --- |
//! | `GET /metrics` | Prometheus text ([`prometheus`]) |
//! | `GET /api/v1/stats` | broker and per-shard figures, load averages, host figures |
//! | `GET /api/v1/clients?page=1&per_page=100` | clients sorted by id, paged (1-based pages) |
//! | `GET /api/v1/topics/hot?top=20` | hot topics and most subscribed filters |
//! | `DELETE /api/v1/clients/{id}` | disconnects the client: 204, or 404 if unknown |
//!
//! When a token is configured every request must carry `Authorization: Bearer <token>` (401
//! otherwise). A listener on a non-loopback address without a token is refused at start-up.

pub mod http;
pub mod prometheus;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use shardmq_shard::BrokerHandle;
use subtle::ConstantTimeEq;
use tracing::{debug, warn};

use self::http::{HttpError, Request, Response};
use crate::config::AdminSettings;
use crate::status::figures::figures_json;
use crate::status::Shared;

/// How long a client may take to send its request, or to take the response.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the shards may take to answer a listing or a kick.
const SHARD_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest page of clients.
const MAX_PER_PAGE: usize = 1000;

/// Default page size of client listings.
const DEFAULT_PER_PAGE: usize = 100;

/// The admin API as configured: checked from the settings (so `check-config` checks it too),
/// bound before the shards start (so a configured address in use stops the broker before it
/// listens), and served once the shards and the monitor run.
#[derive(Debug)]
pub struct Plan {
    address: SocketAddr,
    /// Whether the address was configured (else it is the default, whose port may be taken).
    configured: bool,
    token: Option<String>,
    listener: Option<TcpListener>,
}

impl Plan {
    /// The plan for these settings; `None` when the API is disabled (`listen = ""`).
    pub fn from_settings(settings: &AdminSettings) -> anyhow::Result<Option<Plan>> {
        Ok(settings.checked_address()?.map(|address| Plan {
            address,
            configured: settings.listen.is_some(),
            token: settings.token().map(str::to_owned),
            listener: None,
        }))
    }

    /// Binds the listener (not yet serving). On its default address it is optional: if that
    /// port is taken (a second broker on the host) the broker starts without the API and says
    /// so. A configured address must bind.
    pub fn bind(&mut self) -> anyhow::Result<()> {
        let address = self.address;
        match TcpListener::bind(address)
            .with_context(|| format!("binding the admin listener on {address}"))
        {
            Ok(listener) => self.listener = Some(listener),
            Err(err) if !self.configured => {
                warn!(cause = %format!("{err:#}"), "admin API not started");
            }
            Err(err) => return Err(err),
        }
        Ok(())
    }

    /// Serves the API from a thread of its own, if [`Plan::bind`] bound it; returns the address
    /// it listens on.
    pub fn serve(
        self,
        handle: BrokerHandle,
        shared: Arc<Shared>,
    ) -> anyhow::Result<Option<SocketAddr>> {
        let Some(listener) = self.listener else {
            return Ok(None);
        };
        let address = listener.local_addr()?;
        let admin = Admin {
            token: self.token,
            handle,
            shared,
        };
        std::thread::Builder::new()
            .name("admin".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    match stream {
                        Ok(stream) => admin.serve_connection(stream),
                        Err(err) => {
                            warn!(cause = %err, "admin accept failed");
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
            })
            .context("starting the admin thread")?;
        Ok(Some(address))
    }
}

struct Admin {
    token: Option<String>,
    handle: BrokerHandle,
    shared: Arc<Shared>,
}

impl Admin {
    fn serve_connection(&self, mut stream: TcpStream) {
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        let response = match http::read_request(&mut stream) {
            Ok(request) => self.respond(&request),
            Err(HttpError::Io(err)) => {
                debug!(cause = %err, "admin request not read");
                return;
            }
            Err(HttpError::TooLarge) => Response::error(413, "request too large"),
            Err(HttpError::Malformed) => Response::error(400, "malformed request"),
        };
        if let Err(err) = response.write_to(&mut stream) {
            debug!(cause = %err, "admin response not written");
        }
    }

    fn authorized(&self, request: &Request) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let given = request
            .authorization
            .as_deref()
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or_default();
        bool::from(given.as_bytes().ct_eq(token.as_bytes()))
    }

    fn respond(&self, request: &Request) -> Response {
        if !self.authorized(request) {
            return Response::error(401, "missing or wrong bearer token");
        }
        let path = request.path.trim_end_matches('/');
        match (request.method.as_str(), path) {
            ("GET", "/metrics") => Response {
                status: 200,
                content_type: prometheus::CONTENT_TYPE,
                body: prometheus::render(&self.shared.status(), self.shared.hot_untracked())
                    .into_bytes(),
            },
            ("GET", "/api/v1/stats") => Response::json(200, &self.stats()),
            ("GET", "/api/v1/clients") => self.clients(request),
            ("GET", "/api/v1/topics/hot") => self.hot_topics(request),
            ("DELETE", _) if path.starts_with("/api/v1/clients/") => {
                let id = http::percent_decode(&path["/api/v1/clients/".len()..]);
                if self.handle.kick(&id, SHARD_TIMEOUT) {
                    Response::empty(204)
                } else {
                    Response::error(404, "no such client")
                }
            }
            (_, "/metrics" | "/api/v1/stats" | "/api/v1/clients" | "/api/v1/topics/hot") => {
                Response::error(405, "method not allowed")
            }
            _ => Response::error(404, "not found"),
        }
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
            "shard_count": status.figures.shards.len(),
            "clients_maximum": status.clients_maximum,
            "total": figures_json(&status.figures.total),
            "shards": shards,
            "load": status.load,
            "system": status.system,
        })
    }

    fn clients(&self, request: &Request) -> Response {
        let number = |name: &'static str, default: usize| match request.param(name) {
            None => Ok(default),
            Some(text) => text.parse::<usize>().ok().filter(|n| *n > 0).ok_or(name),
        };
        let (page, per_page) = match (number("page", 1), number("per_page", DEFAULT_PER_PAGE)) {
            (Ok(page), Ok(per_page)) => (page, per_page.min(MAX_PER_PAGE)),
            (Err(name), _) | (_, Err(name)) => {
                return Response::error(400, &format!("{name} must be a positive integer"))
            }
        };
        let clients = self.handle.clients(SHARD_TIMEOUT);
        let listed: Vec<Value> = clients
            .iter()
            .skip((page - 1).saturating_mul(per_page))
            .take(per_page)
            .map(|client| {
                json!({
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
                })
            })
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

    fn hot_topics(&self, request: &Request) -> Response {
        let top = match request.param("top").map(str::parse::<usize>) {
            None => 20,
            Some(Ok(top)) => top.min(MAX_PER_PAGE),
            Some(Err(_)) => return Response::error(400, "top must be a non-negative integer"),
        };
        Response::json(200, &json!(self.shared.ranking(top)))
    }
}
