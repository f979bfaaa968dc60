//! The monitor: one OS thread (not a shard) that watches the broker and the host.
//!
//! Once a second ([`TICK`]) it drains the shards' hot-topic counts into the [`hot::TopicSink`]s,
//! reads every shard's published figures and the host's `/proc` counters, and updates the read
//! model ([`Shared`], defined in [`crate::status`]) that the admin API serves; it knows nothing of
//! the admin API itself. Every `sys_interval` seconds it publishes the changed part of
//! the retained `$SYS` tree ([`sys_tree`]) through [`BrokerHandle::publish`]; every
//! `monitor.interval` seconds it hands a status row to the Postgres writer ([`history`]).
//!
//! Nothing here is on the message path: shards publish their figures into atomics on their own
//! timer and hand hot-topic counts over a bounded channel that drops when the monitor is behind,
//! so a stalled monitor costs the shards nothing.

pub mod history;
pub mod hot;
pub mod hot_redis;
pub mod sys_tree;
pub mod system;

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use shardmq_codec::{ByteStr, QoS};
use shardmq_shard::session::Message;
use shardmq_shard::BrokerHandle;
use tracing::{info, warn};

use self::history::History;
use self::hot::TopicSink;
use self::hot_redis::RedisTopics;
use self::sys_tree::{SysInput, SysTree};
use self::system::Reading;
use crate::config::Settings;
use crate::status::figures::{Figures, Load};
use crate::status::hot::{HotTable, TopicFilter};
use crate::status::row::StatusRow;
use crate::status::system::SystemRates;
use crate::status::{Shared, Status};

/// How often the monitor wakes.
pub const TICK: Duration = Duration::from_secs(1);

/// Topics `$SYS/broker/topics/hot` ranks.
const SYS_HOT_TOPICS: usize = 20;

/// What the monitor is told to do, checked from the settings (so `check-config` checks them
/// too); [`start`] starts the threads.
#[derive(Debug)]
pub struct Options {
    /// Seconds between `$SYS` publications; 0 disables them.
    sys_interval: u32,
    /// The Postgres URL and the seconds between rows, when history is on.
    history: Option<(String, u32)>,
    /// Directory whose file system's free space is reported.
    data_dir: PathBuf,
    /// Bound of the in-memory hot-topic table.
    hot_capacity: usize,
    /// Which topics the hot-topic statistics count.
    hot_filter: TopicFilter,
    /// Where hot-topic totals also go when `[redis] url` is set.
    hot_redis: Option<RedisTopics>,
}

impl Options {
    /// Checks the monitoring settings.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Options> {
        let history = match &settings.monitor.postgres_url {
            Some(url) if !url.is_empty() => {
                history::check_url(url)?;
                let interval = settings.monitor.interval.map_or(10, NonZeroU32::get);
                Some((url.clone(), interval))
            }
            _ => None,
        };
        let hot_capacity = settings.shard_config().hot_topics_max;
        let hot_filter = TopicFilter::new(settings.hot_topics_filters()?);
        Ok(Options {
            sys_interval: settings.sys_interval.unwrap_or(10),
            history,
            data_dir: settings
                .monitor
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(".")),
            hot_capacity,
            hot_filter: hot_filter.clone(),
            hot_redis: match &settings.redis.url {
                Some(url) if hot_capacity > 0 => {
                    Some(RedisTopics::new(url, hot_capacity, hot_filter)?)
                }
                _ => None,
            },
        })
    }
}

/// Starts the Postgres writer (when history is on) and the monitor thread on a running broker;
/// returns the read model the monitor fills.
pub fn start(handle: BrokerHandle, options: Options) -> anyhow::Result<Arc<Shared>> {
    let history = match &options.history {
        Some((url, interval)) => Some((History::start(url)?, *interval)),
        None => None,
    };
    let shared = Arc::new(Shared::new(HotTable::new(
        options.hot_capacity,
        options.hot_filter.clone(),
    )));
    let monitor = Monitor::new(handle, options, history, Arc::clone(&shared));
    std::thread::Builder::new()
        .name("monitor".into())
        .spawn(move || monitor.run())
        .context("starting the monitor thread")?;
    Ok(shared)
}

/// A periodic consumer's memory of its last turn: when it ran, the figures and the host reading.
struct Period {
    every: Duration,
    due: Instant,
    at: Instant,
    figures: Figures,
    reading: Reading,
}

impl Period {
    fn new(seconds: u32, now: Instant, reading: &Reading) -> Period {
        let every = Duration::from_secs(seconds.into());
        Period {
            every,
            due: now + every,
            at: now,
            figures: Figures::default(),
            reading: reading.clone(),
        }
    }

    /// If due, the seconds since the last turn, the figures and reading then, and starts a new
    /// turn with `figures` and `reading`.
    fn turn(
        &mut self,
        now: Instant,
        figures: &Figures,
        reading: &Reading,
    ) -> Option<(f64, Figures, Reading)> {
        if now < self.due {
            return None;
        }
        self.due = (self.due + self.every).max(now);
        let seconds = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        Some((
            seconds,
            std::mem::replace(&mut self.figures, figures.clone()),
            std::mem::replace(&mut self.reading, reading.clone()),
        ))
    }
}

struct Monitor {
    handle: BrokerHandle,
    shared: Arc<Shared>,
    sinks: Vec<Box<dyn TopicSink>>,
    data_dir: PathBuf,
    started: Instant,
    status: Status,
    sys: Option<(Period, SysTree)>,
    history: Option<(Period, History)>,
    sink_failing: bool,
}

impl Monitor {
    fn new(
        handle: BrokerHandle,
        options: Options,
        history: Option<(History, u32)>,
        shared: Arc<Shared>,
    ) -> Monitor {
        let now = Instant::now();
        let reading = Reading::take(&options.data_dir);
        let shards = handle.shards();
        let mut sinks: Vec<Box<dyn TopicSink>> = vec![Box::new(Arc::clone(&shared))];
        if let Some(redis) = options.hot_redis {
            sinks.push(Box::new(redis));
        }
        Monitor {
            sinks,
            shared,
            handle,
            data_dir: options.data_dir,
            started: now,
            status: Status {
                shard_load: vec![Load::default(); shards],
                ..Status::default()
            },
            sys: (options.sys_interval > 0).then(|| {
                let mut period = Period::new(options.sys_interval, now, &reading);
                // The first tree goes out on the first tick, not a whole interval later.
                period.due = now;
                (period, SysTree::default())
            }),
            history: history
                .map(|(history, seconds)| (Period::new(seconds.max(1), now, &reading), history)),
            sink_failing: false,
        }
    }

    fn run(mut self) {
        let mut last_tick = Instant::now();
        let mut reading = Reading::take(&self.data_dir);
        let mut next = last_tick + TICK;
        loop {
            while let Ok(counts) = self.handle.topic_counts().recv_deadline(next) {
                for sink in &mut self.sinks {
                    sink.add(&counts);
                }
            }
            self.flush_sinks();
            let now = Instant::now();
            next = (next + TICK).max(now);
            let current = Reading::take(&self.data_dir);
            self.tick(
                now,
                now.duration_since(last_tick).as_secs_f64(),
                &reading,
                &current,
            );
            last_tick = now;
            reading = current;
        }
    }

    /// Flushes every sink; a failure is logged when it starts and when it ends.
    fn flush_sinks(&mut self) {
        let mut failure = None;
        for sink in &mut self.sinks {
            if let Err(err) = sink.flush() {
                failure.get_or_insert(err);
            }
        }
        match failure {
            Some(err) if !self.sink_failing => {
                warn!(cause = %format!("{err:#}"), "hot-topic sink failing; counts kept (bounded) and retried");
                self.sink_failing = true;
            }
            Some(_) => {}
            None if self.sink_failing => {
                info!("hot-topic sink recovered");
                self.sink_failing = false;
            }
            None => {}
        }
    }

    fn tick(&mut self, now: Instant, seconds: f64, previous: &Reading, current: &Reading) {
        let figures = Figures::new(self.handle.shard_stats());
        let status = &mut self.status;
        status
            .load
            .update(&status.figures.total, &figures.total, seconds);
        for (shard, load) in status.shard_load.iter_mut().enumerate() {
            let before = status
                .figures
                .shards
                .get(shard)
                .copied()
                .unwrap_or_default();
            if let Some(after) = figures.shards.get(shard) {
                load.update(&before, after, seconds);
            }
        }
        status.clients_maximum = status.clients_maximum.max(figures.total.connections);
        status.uptime = now.duration_since(self.started).as_secs();
        status.sampled_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64());
        status.system = current.rates_since(previous);
        status.figures = figures;
        self.shared.set_status(self.status.clone());

        if let Some((period, history)) = &mut self.history {
            if let Some((seconds, before, reading)) =
                period.turn(now, &self.status.figures, current)
            {
                let system = current.rates_since(&reading);
                history.record(StatusRow::between(
                    &before,
                    &self.status.figures,
                    seconds,
                    &system,
                ));
            }
        }
        let sys_due = self
            .sys
            .as_mut()
            .and_then(|(period, _)| period.turn(now, &self.status.figures, current));
        if let Some((_, _, reading)) = sys_due {
            self.publish_sys(&current.rates_since(&reading));
        }
    }

    fn publish_sys(&mut self, system: &SystemRates) {
        let Some((_, tree)) = &mut self.sys else {
            return;
        };
        let hot = self.shared.ranking(SYS_HOT_TOPICS);
        let status = &self.status;
        let topics = sys_tree::topics(&SysInput {
            uptime: status.uptime,
            figures: &status.figures,
            clients_maximum: status.clients_maximum,
            load: &status.load,
            shard_load: &status.shard_load,
            hot: &hot,
            system,
        });
        for (topic, payload) in tree.changed(topics) {
            let message = Message {
                topic: ByteStr::from(topic.as_str()),
                payload: Bytes::from(payload.clone()),
                qos: QoS::AtMostOnce,
                retain: true,
                properties: Default::default(),
                expires_at: None,
            };
            if !self.handle.publish(message) {
                // Shard 0's command queue is full: the rest waits for the next interval.
                break;
            }
            tree.mark_published(topic, payload);
        }
    }
}
