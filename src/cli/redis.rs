//! The Redis connection the `users` and `import` commands share: one synchronous connection with
//! the commands' timeouts, and key listing with `SCAN`.

use std::time::Duration;

use anyhow::{bail, Context};
use redis::{Client, Connection};

/// How long the commands wait for Redis.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `url` (the command's `--redis-url`, else the configuration's).
pub fn connect(url: Option<&str>) -> anyhow::Result<Connection> {
    let Some(url) = url else {
        bail!("no Redis given: use --redis-url URL (or `[redis] url` in the --config file)");
    };
    let client = Client::open(url).context("invalid Redis URL")?;
    let connection = client
        .get_connection_with_timeout(TIMEOUT)
        .with_context(|| {
            format!(
                "connecting to Redis at {}",
                client.get_connection_info().addr()
            )
        })?;
    connection.set_read_timeout(Some(TIMEOUT))?;
    connection.set_write_timeout(Some(TIMEOUT))?;
    Ok(connection)
}

/// Every key that starts with `prefix` (SCAN, so a large database is not blocked).
pub fn scan(redis: &mut Connection, prefix: &str) -> anyhow::Result<Vec<String>> {
    let pattern = format!("{}*", escape_glob(prefix));
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query(redis)
            .context("listing keys")?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort_unstable();
    keys.dedup();
    Ok(keys)
}

/// `text` as a literal in a SCAN MATCH pattern.
fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(escape_glob("shardmq:user:"), "shardmq:user:");
        assert_eq!(escape_glob("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
