//! `shardmq hot-topics`: prints the hot-topic ranking, from Redis (`--redis`: the ranking every
//! broker sharing that Redis adds to) or else from a running broker's admin API
//! (`GET /api/v1/topics/hot`, over a minimal HTTP/1.1 client on std::net).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use crate::config::{AdminSettings, Settings};
use crate::monitor::hot_redis;
use crate::status::hot::Ranking;

/// Arguments of `shardmq hot-topics`.
#[derive(Args, Debug)]
pub struct HotTopicsArgs {
    /// Topics (and filters) to print.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// The broker's admin API, e.g. `http://127.0.0.1:18083` (default: the configured
    /// admin.listen).
    #[arg(long, value_name = "URL")]
    pub admin: Option<String>,
    /// Bearer token for the admin API (default: the configured admin.token).
    #[arg(long)]
    pub token: Option<String>,
    /// Read the ranking from this Redis (`shardmq:hot:*` keys) instead of the admin API.
    #[arg(long, value_name = "URL", conflicts_with_all = ["admin", "token"])]
    pub redis: Option<String>,
}

/// Fetches and prints the ranking; the admin address and token default to the configuration's.
pub fn run(args: &HotTopicsArgs, settings: &Settings) -> anyhow::Result<()> {
    if let Some(url) = &args.redis {
        print!("{}", format(&hot_redis::ranking(url, args.top)?));
        return Ok(());
    }
    let configured = settings
        .admin
        .address()?
        .unwrap_or(AdminSettings::DEFAULT_LISTEN);
    let configured = format!("http://{configured}");
    let admin = args.admin.as_deref().unwrap_or(&configured);
    let token = args.token.as_deref().or(settings.admin.token.as_deref());
    let body = get(
        admin,
        &format!("/api/v1/topics/hot?top={}", args.top),
        token,
    )?;
    let answer: Ranking =
        serde_json::from_str(&body).context("the admin API sent unexpected JSON")?;
    print!("{}", format(&answer));
    Ok(())
}

fn format(answer: &Ranking) -> String {
    let mut out = format!("{:>4}  {:>12}  topic\n", "rank", "publishes");
    for (rank, topic) in answer.topics.iter().enumerate() {
        out.push_str(&format!(
            "{:>4}  {:>12}  {}\n",
            rank + 1,
            topic.publishes,
            topic.topic
        ));
    }
    if answer.untracked > 0 {
        out.push_str(&format!(
            "      {:>12}  (untracked: over the tracking bounds)\n",
            answer.untracked
        ));
    }
    out.push_str(&format!("\n{:>4}  {:>12}  filter\n", "rank", "subscribers"));
    for (rank, filter) in answer.filters.iter().enumerate() {
        out.push_str(&format!(
            "{:>4}  {:>12}  {}\n",
            rank + 1,
            filter.subscribers,
            filter.filter
        ));
    }
    out
}

/// `GET path` from the admin API at `base` (`http://host:port` or `host:port`); the body on 200.
fn get(base: &str, path: &str, token: Option<&str>) -> anyhow::Result<String> {
    let authority = base
        .strip_prefix("http://")
        .unwrap_or(base)
        .trim_end_matches('/');
    if authority.contains('/') || base.starts_with("https://") {
        bail!("admin URL {base:?}: expected http://HOST:PORT");
    }
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("admin URL {base:?}: cannot resolve {authority:?}"))?
        .next()
        .with_context(|| format!("admin URL {base:?}: no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to the admin API at {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\n{auth}Connection: close\r\n\r\n"
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::hot::{FilterRank, TopicRank};

    #[test]
    fn reads_what_the_api_writes() {
        let ranking = Ranking {
            topics: vec![TopicRank {
                topic: "a/b".into(),
                publishes: 7,
            }],
            filters: vec![FilterRank {
                filter: "a/#".into(),
                subscribers: 2,
            }],
            untracked: 3,
        };
        let answer: Ranking = serde_json::from_value(serde_json::json!(ranking)).unwrap();
        let text = format(&answer);
        assert!(text.contains("   1             7  a/b\n"), "{text}");
        assert!(text.contains("   1             2  a/#\n"), "{text}");
        assert!(text.contains("3  (untracked"), "{text}");
    }

    #[test]
    fn refuses_other_urls() {
        assert!(get("https://127.0.0.1:1", "/", None).is_err());
        assert!(get("http://127.0.0.1:1/x", "/", None).is_err());
    }
}
