//! Status history in Postgres: one row per `monitor.interval` in table [`TABLE`], which the
//! writer creates when missing.
//!
//! The monitor hands rows to [`History::record`], which never blocks: rows go on a small bounded
//! channel to a writer thread of their own, so a slow or absent Postgres stalls neither the
//! monitor nor, through it, any shard. The writer keeps at most [`MAX_BUFFERED`] unwritten rows
//! (the oldest go first), reconnects with a doubling back-off capped at [`MAX_BACKOFF`], and logs
//! an outage once when it starts and once when it ends, with how many rows were lost.
//!
//! The schema is also what `shardmq status` reads ([`rows_since`]), so both stay in this file.

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use anyhow::Context;
use postgres::{Client, NoTls};
use tracing::{info, warn};

use crate::status::row::StatusRow;

/// The table the history lives in.
pub const TABLE: &str = "shardmq_status";

/// Unwritten rows kept through an outage.
pub const MAX_BUFFERED: usize = 1000;

/// Longest wait between reconnection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// Rows in flight between the monitor and the writer thread.
const CHANNEL_ROWS: usize = 64;

/// Time allowed to connect before an attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

const CREATE: &str = "CREATE TABLE IF NOT EXISTS shardmq_status (
    time timestamptz NOT NULL,
    clients bigint NOT NULL,
    sessions_offline bigint NOT NULL,
    subscriptions bigint NOT NULL,
    retained bigint NOT NULL,
    messages_in_per_second double precision NOT NULL,
    messages_out_per_second double precision NOT NULL,
    bytes_in_per_second double precision NOT NULL,
    bytes_out_per_second double precision NOT NULL,
    dropped bigint NOT NULL,
    cpu_percent double precision NOT NULL,
    memory_used bigint NOT NULL,
    memory_total bigint NOT NULL,
    disk_free bigint NOT NULL,
    network_in_per_second double precision NOT NULL,
    network_out_per_second double precision NOT NULL,
    shards jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS shardmq_status_time ON shardmq_status (time);";

const INSERT: &str =
    "INSERT INTO shardmq_status VALUES (to_timestamp($1), $2, $3, $4, $5, $6, $7, \
     $8, $9, $10, $11, $12, $13, $14, $15, $16, $17::text::jsonb)";

const SELECT: &str = "SELECT to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), \
     clients, sessions_offline, subscriptions, retained, messages_in_per_second, \
     messages_out_per_second, bytes_in_per_second, bytes_out_per_second, dropped, cpu_percent, \
     memory_used, memory_total, disk_free, network_in_per_second, network_out_per_second, \
     shards::text, extract(epoch FROM time)::float8 FROM shardmq_status WHERE time >= now() - make_interval(secs => $1) \
     ORDER BY time";

/// Parses `monitor.postgres_url`.
pub fn check_url(url: &str) -> anyhow::Result<postgres::Config> {
    postgres::Config::from_str(url).context("monitor.postgres_url is not a valid Postgres URL")
}

/// The monitor's end of the writer thread.
#[derive(Debug)]
pub struct History {
    rows: SyncSender<StatusRow>,
}

impl History {
    /// Checks `url` and starts the writer thread. The first connection is made by the thread, so
    /// a broker starts even while Postgres is down.
    pub fn start(url: &str) -> anyhow::Result<History> {
        let mut config = check_url(url)?;
        config.connect_timeout(CONNECT_TIMEOUT);
        let (rows, incoming) = mpsc::sync_channel(CHANNEL_ROWS);
        std::thread::Builder::new()
            .name("monitor-postgres".into())
            .spawn(move || Writer::new(config).run(incoming))
            .context("starting the Postgres writer thread")?;
        Ok(History { rows })
    }

    /// Queues a row; drops it (and the writer counts nothing) only if the writer thread is more
    /// than [`CHANNEL_ROWS`] rows behind, which a connect timeout alone never causes.
    pub fn record(&self, row: StatusRow) {
        match self.rows.try_send(row) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => warn!("postgres writer far behind; status row dropped"),
        }
    }
}

/// The writer thread's state.
struct Writer {
    config: postgres::Config,
    client: Option<(Client, postgres::Statement)>,
    buffer: VecDeque<StatusRow>,
    /// Rows dropped from a full buffer during the current outage.
    lost: u64,
    /// When the current outage began, if one is going on.
    outage: Option<Instant>,
    backoff: Duration,
    next_attempt: Instant,
}

impl Writer {
    fn new(config: postgres::Config) -> Writer {
        Writer {
            config,
            client: None,
            buffer: VecDeque::new(),
            lost: 0,
            outage: None,
            backoff: Duration::from_secs(1),
            next_attempt: Instant::now(),
        }
    }

    fn run(mut self, incoming: Receiver<StatusRow>) {
        loop {
            let wait = if self.buffer.is_empty() {
                Duration::from_secs(3600)
            } else {
                self.next_attempt.saturating_duration_since(Instant::now())
            };
            match incoming.recv_timeout(wait) {
                Ok(row) => self.push(row),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while let Ok(row) = incoming.try_recv() {
                self.push(row);
            }
            if !self.buffer.is_empty() && Instant::now() >= self.next_attempt {
                self.write_buffered();
            }
        }
    }

    fn push(&mut self, row: StatusRow) {
        if self.buffer.len() >= MAX_BUFFERED {
            self.buffer.pop_front();
            self.lost += 1;
        }
        self.buffer.push_back(row);
    }

    fn write_buffered(&mut self) {
        match self.try_write() {
            Ok(()) => {
                if let Some(since) = self.outage.take() {
                    info!(
                        table = TABLE,
                        down_seconds = since.elapsed().as_secs(),
                        lost_rows = self.lost,
                        "postgres reachable again; buffered status rows written"
                    );
                }
                self.lost = 0;
                self.backoff = Duration::from_secs(1);
            }
            Err(err) => {
                self.client = None;
                if self.outage.is_none() {
                    self.outage = Some(Instant::now());
                    warn!(
                        cause = %format!("{err:#}"),
                        buffered_max = MAX_BUFFERED,
                        "postgres unavailable; buffering status rows and retrying"
                    );
                }
                self.next_attempt = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// Connects if needed and writes every buffered row in one transaction.
    fn try_write(&mut self) -> anyhow::Result<()> {
        if self.client.is_none() {
            let mut client = self.config.connect(NoTls).context("connecting")?;
            client.batch_execute(CREATE).context("creating the table")?;
            let insert = client.prepare(INSERT).context("preparing the insert")?;
            self.client = Some((client, insert));
        }
        let Some((client, insert)) = self.client.as_mut() else {
            return Ok(());
        };
        let mut transaction = client.transaction()?;
        for row in &self.buffer {
            transaction.execute(
                &*insert,
                &[
                    &row.time,
                    &row.clients,
                    &row.sessions_offline,
                    &row.subscriptions,
                    &row.retained,
                    &row.messages_in_per_second,
                    &row.messages_out_per_second,
                    &row.bytes_in_per_second,
                    &row.bytes_out_per_second,
                    &row.dropped,
                    &row.cpu_percent,
                    &row.memory_used,
                    &row.memory_total,
                    &row.disk_free,
                    &row.network_in_per_second,
                    &row.network_out_per_second,
                    &row.shards,
                ],
            )?;
        }
        transaction.commit()?;
        self.buffer.clear();
        Ok(())
    }
}

/// The rows of the last `seconds`, oldest first, each with its time as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn rows_since(client: &mut Client, seconds: f64) -> anyhow::Result<Vec<(String, StatusRow)>> {
    let rows = client
        .query(SELECT, &[&seconds])
        .with_context(|| format!("reading {TABLE}"))?;
    rows.iter()
        .map(|row| {
            let status = StatusRow {
                time: row.try_get(17)?,
                clients: row.try_get(1)?,
                sessions_offline: row.try_get(2)?,
                subscriptions: row.try_get(3)?,
                retained: row.try_get(4)?,
                messages_in_per_second: row.try_get(5)?,
                messages_out_per_second: row.try_get(6)?,
                bytes_in_per_second: row.try_get(7)?,
                bytes_out_per_second: row.try_get(8)?,
                dropped: row.try_get(9)?,
                cpu_percent: row.try_get(10)?,
                memory_used: row.try_get(11)?,
                memory_total: row.try_get(12)?,
                disk_free: row.try_get(13)?,
                network_in_per_second: row.try_get(14)?,
                network_out_per_second: row.try_get(15)?,
                shards: row.try_get(16)?,
            };
            Ok((row.try_get(0)?, status))
        })
        .collect()
}

/// Connects for a one-off query (the `status` command).
pub fn connect(url: &str) -> anyhow::Result<Client> {
    let mut config = postgres::Config::from_str(url).context("not a valid Postgres URL")?;
    config.connect_timeout(CONNECT_TIMEOUT);
    config.connect(NoTls).context("connecting to Postgres")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_is_bounded_and_keeps_the_newest() {
        let mut writer = Writer::new(postgres::Config::new());
        for n in 0..MAX_BUFFERED + 5 {
            writer.push(StatusRow {
                clients: n as i64,
                ..StatusRow::default()
            });
        }
        assert_eq!(writer.buffer.len(), MAX_BUFFERED);
        assert_eq!(writer.lost, 5);
        assert_eq!(writer.buffer.front().map(|r| r.clients), Some(5));
    }

    #[test]
    fn bad_url_is_refused_at_start() {
        assert!(History::start("postgresql://[bad").is_err());
    }
}
