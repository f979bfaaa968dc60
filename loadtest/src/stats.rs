//! Measurements of one run in one process.
//!
//! Connection tasks run on every runtime thread, so each thread records into its own [`Shard`]
//! (counters and HdrHistograms) and nothing is shared per message: a task finds its thread's shard
//! through a thread-local, takes that shard's mutex — uncontended except when the progress line or
//! the drain check sums the shards — and records a whole read batch at once. The shards of a run
//! are merged at the end; worker processes send theirs to the coordinator serialized with
//! HdrHistogram's V2 format.
//!
//! Latencies are recorded in nanoseconds with three significant digits, up to an hour.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use anyhow::Context;
use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::payload::Stamp;

/// Largest latency a histogram holds (one hour, in ns); larger values saturate.
const MAX_LATENCY_NS: u64 = 3_600_000_000_000;

/// Significant decimal digits of every histogram.
pub(crate) const SIGNIFICANT_DIGITS: u8 = 3;

/// An empty latency histogram in nanoseconds.
pub(crate) fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that satisfy the constructor's conditions.
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, SIGNIFICANT_DIGITS).expect("valid bounds")
}

/// A histogram as base64 text of its V2 serialization (uncompressed; the zero runs are
/// run-length encoded already).
pub(crate) fn encode_histogram(histogram: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    // Serializing into a Vec cannot fail for a histogram with u64 counts.
    let _ = V2Serializer::new().serialize(histogram, &mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Parses [`encode_histogram`]'s output.
pub(crate) fn decode_histogram(text: &str) -> anyhow::Result<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .context("histogram is not base64")?;
    let histogram: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|err| anyhow::anyhow!("histogram does not deserialize: {err:?}"))?;
    Ok(histogram)
}

/// Adds `from` into `into`, resizing nothing: every histogram of a run has the same bounds.
pub(crate) fn add_histogram(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    for value in from.iter_recorded() {
        into.saturating_record_n(value.value_iterated_to(), value.count_at_value());
    }
}

/// Event counts and the times of the first and last events, in ns since the epoch.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Serialize)]
pub(crate) struct Counters {
    pub connected: u64,
    pub connect_failed: u64,
    pub subscribed: u64,
    pub subscribe_failed: u64,
    /// Connections closed by the broker or the network before the run ended them.
    pub dropped: u64,
    /// Established connections that have ended, dropped or closed by the run: `connected -
    /// closed` are open.
    pub closed: u64,
    pub published: u64,
    /// QoS 1/2 publications: each awaits a PUBACK or PUBCOMP.
    pub needs_ack: u64,
    /// QoS 1 PUBACKs and QoS 2 PUBCOMPs received by publishers.
    pub acked: u64,
    /// Every PUBLISH received by a subscriber.
    pub received: u64,
    /// First receipts of an expected (publisher, seq).
    pub unique: u64,
    pub duplicates: u64,
    /// Messages from no expected publisher, from another run, or without a measurement header.
    pub unexpected: u64,
    /// Publications the broker refused (an MQTT 5 PUBACK/PUBREC reason code of 0x80 or above).
    pub rejected: u64,
    pub first_publish_ns: Option<u64>,
    pub last_publish_ns: Option<u64>,
    pub last_delivery_ns: Option<u64>,
}

impl Counters {
    /// Connections open now.
    pub(crate) fn open(&self) -> u64 {
        self.connected.saturating_sub(self.closed)
    }

    /// QoS 1/2 publications neither acknowledged nor refused yet.
    pub(crate) fn unacked(&self) -> u64 {
        self.needs_ack.saturating_sub(self.acked + self.rejected)
    }

    pub(crate) fn add(&mut self, other: &Counters) {
        self.connected += other.connected;
        self.connect_failed += other.connect_failed;
        self.subscribed += other.subscribed;
        self.subscribe_failed += other.subscribe_failed;
        self.dropped += other.dropped;
        self.closed += other.closed;
        self.published += other.published;
        self.needs_ack += other.needs_ack;
        self.acked += other.acked;
        self.received += other.received;
        self.unique += other.unique;
        self.duplicates += other.duplicates;
        self.unexpected += other.unexpected;
        self.rejected += other.rejected;
        self.first_publish_ns = min_some(self.first_publish_ns, other.first_publish_ns);
        self.last_publish_ns = self.last_publish_ns.max(other.last_publish_ns);
        self.last_delivery_ns = self.last_delivery_ns.max(other.last_delivery_ns);
    }
}

fn min_some(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        _ => a.or(b),
    }
}

/// One thread's measurements.
pub(crate) struct Shard {
    pub counters: Counters,
    /// Why connections failed to come up, by reason.
    pub connect_failures: BTreeMap<String, u64>,
    /// Why established connections were lost, by reason.
    pub drops: BTreeMap<String, u64>,
    /// CONNECT → CONNACK.
    pub connect: Histogram<u64>,
    /// SUBSCRIBE → SUBACK.
    pub subscribe: Histogram<u64>,
    /// Publish (due or encoded) → receipt by a subscriber.
    pub delivery: Histogram<u64>,
    /// Publish → PUBACK (QoS 1) or PUBCOMP (QoS 2), at the publisher.
    pub ack: Histogram<u64>,
}

impl Shard {
    pub(crate) fn new() -> Self {
        Self {
            counters: Counters::default(),
            connect_failures: BTreeMap::new(),
            drops: BTreeMap::new(),
            connect: new_histogram(),
            subscribe: new_histogram(),
            delivery: new_histogram(),
            ack: new_histogram(),
        }
    }

    fn add(&mut self, other: &Shard) {
        self.counters.add(&other.counters);
        for (reason, n) in &other.connect_failures {
            *self.connect_failures.entry(reason.clone()).or_default() += n;
        }
        for (reason, n) in &other.drops {
            *self.drops.entry(reason.clone()).or_default() += n;
        }
        add_histogram(&mut self.connect, &other.connect);
        add_histogram(&mut self.subscribe, &other.subscribe);
        add_histogram(&mut self.delivery, &other.delivery);
        add_histogram(&mut self.ack, &other.ack);
    }

    /// This shard as the wire form a worker reports.
    pub(crate) fn to_totals(&self) -> Totals {
        Totals {
            counters: self.counters,
            connect_failures: self.connect_failures.clone(),
            drops: self.drops.clone(),
            connect: encode_histogram(&self.connect),
            subscribe: encode_histogram(&self.subscribe),
            delivery: encode_histogram(&self.delivery),
            ack: encode_histogram(&self.ack),
        }
    }

    /// Adds a worker's totals.
    pub(crate) fn add_totals(&mut self, totals: &Totals) -> anyhow::Result<()> {
        let other = Shard {
            counters: totals.counters,
            connect_failures: totals.connect_failures.clone(),
            drops: totals.drops.clone(),
            connect: decode_histogram(&totals.connect)?,
            subscribe: decode_histogram(&totals.subscribe)?,
            delivery: decode_histogram(&totals.delivery)?,
            ack: decode_histogram(&totals.ack)?,
        };
        self.add(&other);
        Ok(())
    }
}

/// A [`Shard`] in the form worker processes send: histograms as base64 V2.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub(crate) struct Totals {
    pub counters: Counters,
    pub connect_failures: BTreeMap<String, u64>,
    pub drops: BTreeMap<String, u64>,
    pub connect: String,
    pub subscribe: String,
    pub delivery: String,
    pub ack: String,
}

/// The shards of one run in one process.
pub(crate) struct Stats {
    id: u64,
    shards: Mutex<Vec<Arc<Mutex<Shard>>>>,
}

static NEXT_STATS_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's shard of each live run (tests may run several runs in one process).
    static LOCAL_SHARDS: RefCell<Vec<(u64, Weak<Mutex<Shard>>)>> = const { RefCell::new(Vec::new()) };
}

impl Stats {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            id: NEXT_STATS_ID.fetch_add(1, Ordering::Relaxed),
            shards: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` on this thread's shard.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Shard) -> R) -> R {
        let shard = LOCAL_SHARDS.with(|local| {
            let mut local = local.borrow_mut();
            if let Some(shard) = local
                .iter()
                .find(|(id, _)| *id == self.id)
                .and_then(|(_, shard)| shard.upgrade())
            {
                return shard;
            }
            local.retain(|(_, shard)| shard.strong_count() > 0);
            let shard = Arc::new(Mutex::new(Shard::new()));
            local.push((self.id, Arc::downgrade(&shard)));
            lock(&self.shards).push(shard.clone());
            shard
        });
        let mut guard = lock(&shard);
        f(&mut guard)
    }

    /// The counters summed over every shard.
    pub(crate) fn counters(&self) -> Counters {
        let mut sum = Counters::default();
        for shard in lock(&self.shards).iter() {
            sum.add(&lock(shard).counters);
        }
        sum
    }

    /// Every shard merged.
    pub(crate) fn merged(&self) -> Shard {
        let mut sum = Shard::new();
        for shard in lock(&self.shards).iter() {
            sum.add(&lock(shard));
        }
        sum
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked (counters only grow).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Measurements of one read batch, recorded into the thread's shard in one go.
pub(crate) struct Batch {
    counters: Counters,
    deliveries: [u64; Batch::CAPACITY],
    delivery_len: usize,
    acks: [u64; Batch::CAPACITY],
    ack_len: usize,
}

impl Batch {
    /// Samples held before a flush. Small, because every connection's reader holds a batch for
    /// its whole life: a read of more deliveries flushes more than once, which costs little.
    const CAPACITY: usize = 16;

    pub(crate) fn new() -> Self {
        Self {
            counters: Counters::default(),
            deliveries: [0; Self::CAPACITY],
            delivery_len: 0,
            acks: [0; Self::CAPACITY],
            ack_len: 0,
        }
    }

    pub(crate) fn counters(&mut self) -> &mut Counters {
        &mut self.counters
    }

    /// A first receipt at `now_ns` of a message sent at `sent_ns`.
    pub(crate) fn delivery(&mut self, stats: &Stats, sent_ns: u64, now_ns: u64) {
        if self.delivery_len == Self::CAPACITY {
            self.flush(stats);
        }
        self.deliveries[self.delivery_len] = now_ns.saturating_sub(sent_ns);
        self.delivery_len += 1;
        self.counters.unique += 1;
        self.counters.last_delivery_ns = self.counters.last_delivery_ns.max(Some(now_ns));
    }

    /// A publication acknowledged after `latency_ns`.
    pub(crate) fn ack(&mut self, stats: &Stats, latency_ns: u64) {
        if self.ack_len == Self::CAPACITY {
            self.flush(stats);
        }
        self.acks[self.ack_len] = latency_ns;
        self.ack_len += 1;
        self.counters.acked += 1;
    }

    /// Records everything gathered so far and starts over.
    pub(crate) fn flush(&mut self, stats: &Stats) {
        if self.counters == Counters::default() {
            return;
        }
        stats.with(|shard| {
            for &latency in &self.deliveries[..self.delivery_len] {
                shard.delivery.saturating_record(latency.max(1));
            }
            for &latency in &self.acks[..self.ack_len] {
                shard.ack.saturating_record(latency.max(1));
            }
            shard.counters.add(&self.counters);
        });
        self.counters = Counters::default();
        self.delivery_len = 0;
        self.ack_len = 0;
    }
}

/// What one subscriber has received, to tell first receipts from duplicates and strays.
pub(crate) struct Tracker {
    run_tag: u32,
    /// Sorted ranks of the publishers this subscriber expects.
    expected: Arc<[u32]>,
    /// One bit per sequence number, per expected publisher; allocated at the first receipt.
    seen: Vec<Vec<u64>>,
}

/// How a receipt counts.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Receipt {
    First,
    Duplicate,
    Unexpected,
}

impl Tracker {
    pub(crate) fn new(run_tag: u32, expected: Arc<[u32]>) -> Self {
        Self {
            run_tag,
            expected,
            seen: Vec::new(),
        }
    }

    pub(crate) fn receive(&mut self, stamp: &Stamp) -> Receipt {
        if stamp.run_tag != self.run_tag {
            return Receipt::Unexpected;
        }
        let Ok(slot) = self.expected.binary_search(&stamp.publisher) else {
            return Receipt::Unexpected;
        };
        if self.seen.is_empty() {
            self.seen.resize_with(self.expected.len(), Vec::new);
        }
        let bits = &mut self.seen[slot];
        let (word, bit) = (stamp.seq as usize / 64, stamp.seq % 64);
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        let mask = 1u64 << bit;
        if bits[word] & mask != 0 {
            Receipt::Duplicate
        } else {
            bits[word] |= mask;
            Receipt::First
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_text_round_trip() {
        let mut histogram = new_histogram();
        for value in [1, 1_000, 1_000_000, 5_000_000_000] {
            histogram.record(value).unwrap();
        }
        let back = decode_histogram(&encode_histogram(&histogram)).unwrap();
        assert_eq!(back, histogram);
        assert!(decode_histogram("not base64!").is_err());
    }

    #[test]
    fn shards_per_thread_merge() {
        let stats = Stats::new();
        stats.with(|shard| shard.counters.connected += 1);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                stats.with(|shard| {
                    shard.counters.connected += 2;
                    shard.connect.record(1000).unwrap();
                    *shard.connect_failures.entry("refused".into()).or_default() += 1;
                })
            });
        });
        assert_eq!(lock(&stats.shards).len(), 2);
        assert_eq!(stats.counters().connected, 3);
        let merged = stats.merged();
        assert_eq!(merged.connect.len(), 1);
        assert_eq!(merged.connect_failures["refused"], 1);

        let mut total = Shard::new();
        total.add_totals(&merged.to_totals()).unwrap();
        total.add_totals(&merged.to_totals()).unwrap();
        assert_eq!(total.counters.connected, 6);
        assert_eq!(total.connect.len(), 2);
    }

    #[test]
    fn batch_records_and_times() {
        let stats = Stats::new();
        let mut batch = Batch::new();
        for n in 0..100u64 {
            batch.delivery(&stats, 1_000, 2_000 + n);
        }
        batch.ack(&stats, 500);
        batch.flush(&stats);
        let merged = stats.merged();
        assert_eq!(merged.delivery.len(), 100);
        assert_eq!(merged.ack.len(), 1);
        assert_eq!(merged.counters.unique, 100);
        assert_eq!(merged.counters.last_delivery_ns, Some(2_099));
    }

    #[test]
    fn counters_keep_first_and_last_times() {
        let mut a = Counters {
            first_publish_ns: Some(5),
            last_publish_ns: Some(9),
            ..Counters::default()
        };
        a.add(&Counters {
            first_publish_ns: Some(3),
            ..Counters::default()
        });
        a.add(&Counters::default());
        assert_eq!((a.first_publish_ns, a.last_publish_ns), (Some(3), Some(9)));
    }

    #[test]
    fn tracker_sorts_receipts() {
        let mut tracker = Tracker::new(7, Arc::from([2u32, 5]));
        let stamp = |publisher, seq| Stamp {
            run_tag: 7,
            publisher,
            sent_ns: 0,
            seq,
        };
        assert_eq!(tracker.receive(&stamp(2, 0)), Receipt::First);
        assert_eq!(tracker.receive(&stamp(2, 0)), Receipt::Duplicate);
        assert_eq!(tracker.receive(&stamp(5, 1000)), Receipt::First);
        assert_eq!(tracker.receive(&stamp(3, 0)), Receipt::Unexpected);
        let other_run = Stamp {
            run_tag: 8,
            ..stamp(2, 1)
        };
        assert_eq!(tracker.receive(&other_run), Receipt::Unexpected);
    }
}
