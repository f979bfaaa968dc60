//! The HTTP admin listener: Prometheus metrics and a small JSON API.
//!
//! It runs on one OS thread of its own, never on a shard: [`http`] serves connections there with
//! hyper on a current-thread tokio runtime, several at once, each under a deadline and size
//! bounds, so a slow or hostile client cannot keep a scraper or an operator waiting. The
//! endpoints ([`api`]) read broker figures and hot topics from the read model, [`Shared`], which
//! the monitor fills (at most one second old); client listings, lookups, kicks and purges go to
//! the shards through [`BrokerHandle`]; login figures and bans come from the control core
//! through its [`GuardHandle`] (when one runs).
//!
//! | method and path | answer |
//! | --- | --- |
//! | `GET /metrics` | Prometheus text ([`prometheus`]) |
//! | `GET /api/v1/stats` | broker and per-shard figures, load averages, host and login figures |
//! | `GET /api/v1/clients?page=1&per_page=100&prefix=&username=` | clients sorted by id, paged (1-based pages), optionally only ids with a prefix or one user's |
//! | `GET /api/v1/clients/{id}` | one client or offline session in full: 200, or 404 |
//! | `DELETE /api/v1/clients/{id}` | disconnects the client: 204, or 404 if unknown |
//! | `DELETE /api/v1/sessions/{id}` | removes an offline session: 204, 404 if unknown, 409 if connected |
//! | `GET /api/v1/topics/hot?top=20` | hot topics and most subscribed filters |
//! | `GET /api/v1/bans` | source addresses banned for failed logins |
//! | `DELETE /api/v1/bans/{address}` | lifts a ban: 204, or 404 if the address is not banned |
//!
//! When a token is configured every request must carry `Authorization: Bearer <token>` (401
//! otherwise). A listener on a non-loopback address without a token is refused at start-up
//! ([`AdminSettings::checked_address`]).

pub mod api;
pub mod http;
pub mod prometheus;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use anyhow::Context;
use shardmq_shard::BrokerHandle;
use tracing::warn;

use self::api::{Api, Token};
use self::http::Server;
use crate::config::AdminSettings;
use crate::control_core::GuardHandle;
use crate::status::Shared;

/// The admin API as configured: checked from the settings (so `check-config` checks it too),
/// bound before the shards start (so a configured address in use stops the broker before it
/// listens), and served once the shards and the monitor run.
#[derive(Debug)]
pub struct Plan {
    address: SocketAddr,
    /// Whether the address was configured (else it is the default, whose port may be taken).
    configured: bool,
    /// The bearer token, as a digest (its `Debug` shows nothing of it).
    token: Option<Token>,
    listener: Option<TcpListener>,
}

impl Plan {
    /// The plan for these settings; `None` when the API is disabled (`listen = ""`).
    pub fn from_settings(settings: &AdminSettings) -> anyhow::Result<Option<Plan>> {
        Ok(settings.checked_address()?.map(|address| Plan {
            address,
            configured: settings.listen.is_some(),
            token: settings.token().map(Token::new),
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
    /// it listens on. `guard` is the control core's login guard, if a control core runs.
    pub fn serve(
        self,
        handle: BrokerHandle,
        shared: Arc<Shared>,
        guard: Option<GuardHandle>,
    ) -> anyhow::Result<Option<SocketAddr>> {
        let Some(listener) = self.listener else {
            return Ok(None);
        };
        let server = Server::new(listener).context("starting the admin server")?;
        let address = server.local_addr()?;
        let api = Api::new(self.token, handle, shared, guard);
        std::thread::Builder::new()
            .name("admin".into())
            .spawn(move || server.run(api))
            .context("starting the admin thread")?;
        Ok(Some(address))
    }
}
