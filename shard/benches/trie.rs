//! Subscription trie and retained index benchmarks.
//!
//! A fleet-shaped trie of 100k filters from a fixed seed: ~80% exact `device/<id>/telemetry`,
//! ~15% `device/+/alarm/<n>`, ~5% `device/<id>/#`, plus `device/+/alarm/#` and `$SYS/broker/#`.
//! Each `match` iteration matches one topic (cycling through 1,024 prepared ones, so the branch
//! predictor and caches see varied keys) and reports topics/s via `Throughput::Elements(1)`;
//! `naive_scan` runs the same topics through `shardmq_codec::topic::matches` over every filter,
//! the baseline the trie replaces. `churn` inserts and removes one filter per iteration.
//! The retained group queries 100k retained topics with `+` and `#` filters and reports retained
//! topics returned/s.
//!
//! Building each fixture prints its heap bytes per entry (requested sizes, counted by a wrapper
//! around the system allocator), the figure that decides how many subscriptions a host holds.
//!
//! `cargo bench -p shardmq-shard --bench trie -- --warm-up-time 1 --measurement-time 3`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use shardmq_codec::topic::matches;
use shardmq_shard::retained::RetainedIndex;
use shardmq_shard::trie::Trie;

const FILTERS: usize = 100_000;
const TOPICS: usize = 1_024;
const SEED: u64 = 0x5eed_cafe_f00d_d00d;

/// The system allocator, counting live requested bytes.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments and only adds counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap bytes held by what `build` returns, per `entries`, printed under `name`.
fn measure<T>(name: &str, entries: usize, build: impl FnOnce() -> T) -> T {
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let built = build();
    let bytes = LIVE_BYTES.load(Ordering::Relaxed).saturating_sub(before);
    println!(
        "{name}: {entries} entries, {} heap bytes/entry",
        bytes / entries
    );
    built
}

/// xorshift64: deterministic inputs without a `rand` dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// An element of `items`, uniformly.
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// The 100k-filter trie, its filters, and topic sets with a known number of matches each.
struct Fleet {
    trie: Trie<u32>,
    filters: Vec<String>,
    /// `device/<exact id>/telemetry`: 1 match.
    one: Vec<String>,
    /// `device/<hash id>/alarm/<plus n>`: 3 matches (`device/<id>/#`, `device/+/alarm/<n>`,
    /// `device/+/alarm/#`).
    few: Vec<String>,
    /// `device/<exact id>/status`: walks two levels deep on both branches, matches nothing.
    none: Vec<String>,
    /// Filters absent from the trie, for churn: `device/<exact id>/config/<k>`.
    churn: Vec<String>,
}

fn fleet() -> Fleet {
    let mut rng = XorShift(SEED);
    let (mut exact, mut plus, mut hash) = (Vec::new(), Vec::new(), Vec::new());
    let mut filters = Vec::with_capacity(FILTERS + 2);
    for id in 0..FILTERS as u32 {
        match rng.next() % 100 {
            0..80 => {
                exact.push(id);
                filters.push(format!("device/{id}/telemetry"));
            }
            80..95 => {
                plus.push(id);
                filters.push(format!("device/+/alarm/{id}"));
            }
            _ => {
                hash.push(id);
                filters.push(format!("device/{id}/#"));
            }
        }
    }
    filters.push("device/+/alarm/#".to_owned());
    filters.push("$SYS/broker/#".to_owned());

    let trie = measure("trie memory", filters.len(), || {
        let mut trie = Trie::new();
        for (value, filter) in filters.iter().enumerate() {
            trie.insert(filter, value as u32);
        }
        trie
    });
    assert_eq!(trie.len(), filters.len());

    let topics = |f: &mut dyn FnMut() -> String| (0..TOPICS).map(|_| f()).collect::<Vec<_>>();
    let one = topics(&mut || format!("device/{}/telemetry", rng.pick(&exact)));
    let few = topics(&mut || format!("device/{}/alarm/{}", rng.pick(&hash), rng.pick(&plus)));
    let none = topics(&mut || format!("device/{}/status", rng.pick(&exact)));
    let churn = (0..TOPICS)
        .map(|k| format!("device/{}/config/{k}", rng.pick(&exact)))
        .collect();

    let fleet = Fleet {
        trie,
        filters,
        one,
        few,
        none,
        churn,
    };
    for (topics, expected) in [(&fleet.one, 1), (&fleet.few, 3), (&fleet.none, 0)] {
        for topic in topics {
            assert_eq!(count_matches(&fleet.trie, topic), expected, "{topic}");
        }
    }
    fleet
}

fn count_matches(trie: &Trie<u32>, topic: &str) -> usize {
    let mut count = 0;
    trie.for_each_match(topic, |value| {
        black_box(value);
        count += 1;
    });
    count
}

/// Benches `run` on one topic per iteration, cycling through `topics`.
fn per_topic<M: criterion::measurement::Measurement>(
    group: &mut BenchmarkGroup<'_, M>,
    name: &str,
    topics: &[String],
    mut run: impl FnMut(&str) -> usize,
) {
    let mut next = 0;
    group.bench_function(name, |b| {
        b.iter(|| {
            next = (next + 1) % topics.len();
            black_box(run(black_box(&topics[next])))
        })
    });
}

fn trie(c: &mut Criterion) {
    let mut fleet = fleet();

    let mut group = c.benchmark_group("trie");
    group.throughput(Throughput::Elements(1));
    for (name, topics) in [
        ("match_1", &fleet.one),
        ("match_3", &fleet.few),
        ("match_none", &fleet.none),
    ] {
        per_topic(&mut group, name, topics, |topic| {
            count_matches(&fleet.trie, topic)
        });
    }
    let mut next = 0;
    let churn = &fleet.churn;
    let trie = &mut fleet.trie;
    group.bench_function("churn_insert_remove", |b| {
        b.iter(|| {
            next = (next + 1) % churn.len();
            let filter = black_box(churn[next].as_str());
            trie.insert(filter, 0);
            black_box(trie.remove(filter))
        })
    });
    group.finish();

    // The baseline: every filter through the reference matcher. ~1 ms per topic, so fewer
    // samples.
    let mut group = c.benchmark_group("naive_scan");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    let filters = &fleet.filters;
    per_topic(&mut group, "match_1", &fleet.one, |topic| {
        filters
            .iter()
            .filter(|filter| matches(topic, filter))
            .count()
    });
    group.finish();
}

fn retained(c: &mut Criterion) {
    const SITES: u32 = 100;
    const DEVICES: u32 = 1_000;
    let topics: Vec<String> = (0..SITES)
        .flat_map(|site| {
            (0..DEVICES).map(move |device| format!("site/{site}/device/{device}/status"))
        })
        .collect();
    let index = measure("retained memory", topics.len(), || {
        let mut index = RetainedIndex::new();
        for (value, topic) in topics.iter().enumerate() {
            index.set(topic, value as u32);
        }
        index
    });
    assert_eq!(index.len(), (SITES * DEVICES) as usize);
    let mut rng = XorShift(SEED);

    let mut group = c.benchmark_group("retained");
    let queries = [
        ("plus_1000", DEVICES, "site/{s}/device/+/status"),
        ("hash_1000", DEVICES, "site/{s}/#"),
        ("plus_first_100", SITES, "site/+/device/{d}/status"),
    ];
    for (name, results, template) in queries {
        let filters: Vec<String> = (0..TOPICS)
            .map(|_| {
                template
                    .replace("{s}", &(rng.next() % u64::from(SITES)).to_string())
                    .replace("{d}", &(rng.next() % u64::from(DEVICES)).to_string())
            })
            .collect();
        let count = |filter: &str| {
            let mut count = 0;
            index.for_each_matching(filter, |topic, value| {
                black_box((topic, value));
                count += 1;
            });
            count
        };
        for filter in &filters {
            assert_eq!(count(filter), results as usize, "{filter}");
        }
        group.throughput(Throughput::Elements(u64::from(results)));
        per_topic(&mut group, name, &filters, count);
    }
    group.finish();
}

criterion_group!(benches, trie, retained);
criterion_main!(benches);
