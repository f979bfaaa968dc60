//! `shardmq-loadtest`: an MQTT load generator that measures what capacity planners ask about —
//! connect latency and broker memory per connection, fan-out completion time, per-delivery latency
//! percentiles, throughput, losses and duplicates — and writes HdrHistogram reports.
//!
//! Use it as a binary (`shardmq-loadtest fanout --preset 1-to-1000 -n 10000`, see `README.md`) or
//! as a library: [`run`] takes a [`Scenario`] and returns a [`Report`], so integration tests can
//! drive a real broker in-process.
//!
//! # Layout
//!
//! - [`scenario`]: what to run (CLI flags and TOML files both end up here).
//! - `plan`: the scenario as numbered clients in groups, and which publishers each subscriber
//!   should hear from.
//! - `coordinator`: processes, phases, time limits, Ctrl-C, `/proc` sampling, the report.
//! - `progress`: the once-a-second progress line, a pure function of the counters.
//! - `worker`: the clients of one process walked through the phases by the coordinator.
//! - `client`: one connection (reader task + writer task) and its publishing schedule.
//! - `stats`, `payload`, `sys`: per-thread measurements, the payload's measurement header, OS
//!   facts.
//! - [`report`]: JSON, `.hgrm`, HTML and the side-by-side comparison.
//!
//! # Why tokio
//!
//! The generator runs on tokio's multi-threaded runtime (epoll), not on io_uring like the broker.
//! It must not share the broker's I/O design (a measuring instrument with the subject's blind
//! spots measures less), it must run wherever the broker's competitors are measured, and its
//! load is lopsided — one publisher's task feeds 100k subscriber connections' tasks — which a
//! work-stealing scheduler spreads over the cores by itself. A connection costs two small tasks
//! and, when idle, no buffer; reads are batched per readiness event and writes per writer turn,
//! and each thread records into its own stats shard. Plain threads with mio would need our own
//! timers, wake-ups and load balancing for no gain the reports could show. Whether the generator
//! kept up is not assumed: every report states its CPU use next to the broker's.
//!
//! Every packet is built and parsed with `shardmq-codec`, the broker's own codec; the load
//! generator uses no other MQTT implementation.
#![warn(missing_docs)]

mod client;
mod coordinator;
mod payload;
mod plan;
mod progress;
pub mod report;
pub mod scenario;
mod stats;
mod sys;
mod worker;

pub use coordinator::{run, RunOptions};
pub use payload::HEADER_LEN;
pub use report::Report;
pub use scenario::Scenario;
pub use worker::worker_main;
