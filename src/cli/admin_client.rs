//! The commands' client of a running broker's admin API (`hot-topics`, `top`): where the API is
//! (`--admin`, else the configuration's `[admin] listen`), its token (`--token`, else `[admin]
//! token`), and `GET` over a minimal HTTP/1.1 client on std::net, one connection per request as
//! the server expects (`Connection: close`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use serde::de::DeserializeOwned;

use crate::config::{AdminSettings, Settings};

/// How long connecting to the admin API may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the admin API may take to answer (its own deadline is 10 s).
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the admin API is, for the commands that read it.
#[derive(Args, Debug)]
pub struct AdminArgs {
    /// The broker's admin API, e.g. `http://127.0.0.1:18083` (default: the configured
    /// admin.listen).
    #[arg(long, value_name = "URL")]
    pub admin: Option<String>,
    /// Bearer token for the admin API (default: the configured admin.token).
    #[arg(long)]
    pub token: Option<String>,
}

/// A broker's admin API.
#[derive(Debug)]
pub struct AdminClient {
    /// `http://host:port`, as given.
    base: String,
    /// `host:port`.
    authority: String,
    address: SocketAddr,
    token: Option<String>,
}

impl AdminClient {
    /// The API `args` name, or the configured one.
    pub fn new(args: &AdminArgs, settings: &Settings) -> anyhow::Result<AdminClient> {
        let base = match &args.admin {
            Some(url) => url.clone(),
            None => {
                let configured = settings
                    .admin
                    .address()?
                    .unwrap_or(AdminSettings::DEFAULT_LISTEN);
                format!("http://{configured}")
            }
        };
        let token = args.token.clone().or_else(|| settings.admin.token.clone());
        AdminClient::at(&base, token)
    }

    /// The API at `base` (`http://host:port` or `host:port`).
    fn at(base: &str, token: Option<String>) -> anyhow::Result<AdminClient> {
        let authority = base
            .strip_prefix("http://")
            .unwrap_or(base)
            .trim_end_matches('/');
        if authority.contains('/') || base.starts_with("https://") {
            bail!("admin URL {base:?}: expected http://HOST:PORT");
        }
        let address = authority
            .to_socket_addrs()
            .with_context(|| format!("admin URL {base:?}: cannot resolve {authority:?}"))?
            .next()
            .with_context(|| format!("admin URL {base:?}: no address"))?;
        Ok(AdminClient {
            base: base.to_owned(),
            authority: authority.to_owned(),
            address,
            token,
        })
    }

    /// `GET path`: the body of a 200 answer; any other status is an error quoting the answer.
    pub fn get(&self, path: &str) -> anyhow::Result<String> {
        let mut stream = TcpStream::connect_timeout(&self.address, CONNECT_TIMEOUT)
            .with_context(|| format!("connecting to the admin API at {}", self.base))?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        let auth = self
            .token
            .as_ref()
            .map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\n{auth}Connection: close\r\n\r\n",
            self.authority
        )?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .context("reading the admin API's answer")?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .context("the admin API sent no HTTP response")?;
        let status = head.split(' ').nth(1).unwrap_or_default();
        if status != "200" {
            bail!(
                "the admin API answered {}: {}",
                head.lines().next().unwrap_or_default(),
                body.trim()
            );
        }
        Ok(body.to_owned())
    }

    /// `GET path`, its JSON body read as a `T`.
    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let body = self.get(path)?;
        serde_json::from_str(&body)
            .with_context(|| format!("the admin API sent unexpected JSON for {path}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_other_urls() {
        assert!(AdminClient::at("https://127.0.0.1:1", None).is_err());
        assert!(AdminClient::at("http://127.0.0.1:1/x", None).is_err());
        let client = AdminClient::at("127.0.0.1:18083/", None).expect("host:port");
        assert_eq!(client.authority, "127.0.0.1:18083");
    }
}
