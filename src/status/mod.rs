//! The read model: what the broker shows about itself, in one place for every reader.
//!
//! The monitor computes it ([`crate::monitor`]) and the control core counts its login figures
//! ([`logins`]); the admin API serves it as JSON and Prometheus text, the `$SYS` tree publishes
//! it, the Postgres history stores its [`row::StatusRow`]s, and the commands `shardmq
//! hot-topics`, `shardmq top` and `shardmq status` print it back. Keeping the types and their
//! one JSON form here, apart from the threads that fill or serve them, means the monitor and the
//! admin API know nothing of each other: start-up hands both the same [`Shared`].
//!
//! - [`figures`]: per-shard snapshots, broker totals, load averages, and their JSON form.
//! - [`hot`]: hot-topic totals and their ranking.
//! - [`logins`]: failed logins by reason and bans, which the control core counts.
//! - [`system`]: host figures over an interval.
//! - [`row`]: one status history row.

pub mod figures;
pub mod hot;
pub mod logins;
pub mod row;
pub mod system;

use std::sync::{Mutex, PoisonError};

use shardmq_shard::hot_topics::TopicCounts;

use self::figures::{Figures, Load};
use self::hot::{HotTable, Ranking};
use self::system::SystemRates;

/// The monitor's latest view of the broker and the host.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// Seconds since the monitor started (with the broker).
    pub uptime: u64,
    /// When the monitor read these figures, in seconds since the Unix epoch: rates computed
    /// from two statuses (`shardmq top`) divide by the difference.
    pub sampled_at: f64,
    /// Shard and broker figures.
    pub figures: Figures,
    /// Most clients connected at once.
    pub clients_maximum: u64,
    /// Broker load averages.
    pub load: Load,
    /// Per-shard load averages.
    pub shard_load: Vec<Load>,
    /// Host figures over the last tick.
    pub system: SystemRates,
}

/// The live read model, written by the monitor thread and read by the admin thread. Each half
/// sits behind its own lock, held only to copy in or out, so a reader never waits on the
/// monitor's work.
#[derive(Debug)]
pub struct Shared {
    status: Mutex<Status>,
    hot: Mutex<HotTable>,
}

impl Shared {
    /// An empty status and the given (empty) hot-topic table.
    pub fn new(hot: HotTable) -> Shared {
        Shared {
            status: Mutex::new(Status::default()),
            hot: Mutex::new(hot),
        }
    }

    /// The latest status (at most one monitor tick old).
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the status.
    pub fn set_status(&self, status: Status) {
        *self.status.lock().unwrap_or_else(PoisonError::into_inner) = status;
    }

    /// The current hot-topic ranking (see [`HotTable::ranking`]).
    pub fn ranking(&self, top: usize) -> Ranking {
        self.hot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ranking(top)
    }

    /// Publications counted in no ranked topic.
    pub fn hot_untracked(&self) -> u64 {
        self.hot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .untracked()
    }

    /// Adds one shard's hot-topic counts for one interval.
    pub fn add_topic_counts(&self, counts: &TopicCounts) {
        self.hot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(counts);
    }
}
