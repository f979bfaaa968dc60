//! The progress line the coordinator prints on stderr once a second: the phase the run is in and
//! the columns that mean something for this workload in this phase, nothing else. A `conn` run
//! never shows publications or deliveries; nobody is shown publishing while clients connect; a
//! rate is only shown while the figure it measures can change.
//!
//! Everything here is a pure function of the counters, so every phase and workload shape is
//! tested without a broker.

use std::fmt::Write as _;
use std::time::Duration;

use crate::plan::Plan;
use crate::report::Phase;
use crate::stats::Counters;

/// Which columns a run has: who publishes, who subscribes, whether publications are
/// acknowledged.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) struct Shape {
    pub clients: u64,
    pub publishers: u64,
    pub subscribers: u64,
    /// Some publishing group uses QoS 1 or 2, so publications wait for PUBACK or PUBCOMP.
    pub acks: bool,
}

impl Shape {
    pub(crate) fn of(plan: &Plan) -> Self {
        Self {
            clients: plan.total.into(),
            publishers: plan.publishers.into(),
            subscribers: plan.subscribers.into(),
            acks: plan.groups.iter().any(|group| {
                group.publish.is_some() && group.qos != shardmq_codec::QoS::AtMostOnce
            }),
        }
    }
}

/// The phase to show while the coordinator is in `phase`: connecting turns into subscribing once
/// every client has connected or failed and subscribers still wait for their SUBACKs.
pub(crate) fn phase(phase: Phase, shape: &Shape, now: &Counters) -> Phase {
    let handshakes_over = now.connected + now.connect_failed >= shape.clients;
    let subscriptions_over = now.subscribed + now.subscribe_failed >= shape.subscribers;
    if phase == Phase::Connecting && handshakes_over && !subscriptions_over {
        Phase::Subscribing
    } else {
        phase
    }
}

/// The line for `now`, with rates over the `interval` since the counters were `before`.
pub(crate) fn line(
    elapsed: Duration,
    phase: Phase,
    shape: &Shape,
    now: &Counters,
    before: &Counters,
    interval: Duration,
) -> String {
    let rate = |now: u64, before: u64| {
        let seconds = interval.as_secs_f64();
        if seconds > 0.0 {
            format!(" (+{:.0}/s)", now.saturating_sub(before) as f64 / seconds)
        } else {
            String::new()
        }
    };
    let mut out = format!("[{:>5}s] {:<11}", elapsed.as_secs(), phase.as_str());
    let _ = write!(out, " up {}/{}", now.open(), shape.clients);
    if phase == Phase::Connecting {
        out.push_str(&rate(now.connected, before.connected));
        let _ = write!(out, ", {} failed", now.connect_failed);
    } else if now.connect_failed > 0 {
        let _ = write!(out, ", {} failed", now.connect_failed);
    }
    if now.dropped > 0 {
        let _ = write!(out, ", {} dropped", now.dropped);
    }
    if shape.subscribers > 0 && phase <= Phase::Subscribing {
        let _ = write!(
            out,
            " | subscribed {}/{}",
            now.subscribed, shape.subscribers
        );
        if phase == Phase::Subscribing {
            out.push_str(&rate(now.subscribed, before.subscribed));
        }
        if now.subscribe_failed > 0 {
            let _ = write!(out, ", {} refused", now.subscribe_failed);
        }
    }
    if shape.publishers > 0 && phase == Phase::Publishing {
        let _ = write!(
            out,
            " | published {}{}",
            now.published,
            rate(now.published, before.published)
        );
    }
    let delivering = matches!(phase, Phase::Publishing | Phase::Draining);
    if shape.acks && delivering {
        let _ = write!(out, ", {} unacked", now.unacked());
    }
    if shape.subscribers > 0 && shape.publishers > 0 && delivering {
        let _ = write!(
            out,
            " | delivered {}{}",
            now.unique,
            rate(now.unique, before.unique)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn fanout() -> Shape {
        Shape {
            clients: 101,
            publishers: 1,
            subscribers: 100,
            acks: false,
        }
    }

    fn conn() -> Shape {
        Shape {
            clients: 1000,
            publishers: 0,
            subscribers: 0,
            acks: false,
        }
    }

    #[test]
    fn conn_shows_connections_only() {
        let before = Counters {
            connected: 100,
            ..Counters::default()
        };
        let now = Counters {
            connected: 400,
            connect_failed: 2,
            ..Counters::default()
        };
        assert_eq!(
            line(
                3 * SECOND,
                Phase::Connecting,
                &conn(),
                &now,
                &before,
                SECOND
            ),
            "[    3s] connecting  up 400/1000 (+300/s), 2 failed"
        );
        let held = Counters {
            connected: 1000,
            ..Counters::default()
        };
        for phase in [Phase::Publishing, Phase::Draining, Phase::Holding] {
            let text = line(9 * SECOND, phase, &conn(), &held, &held, SECOND);
            assert_eq!(
                text,
                format!("[    9s] {:<11} up 1000/1000", phase.as_str())
            );
        }
    }

    #[test]
    fn connecting_shows_no_publications() {
        let now = Counters {
            connected: 50,
            subscribed: 40,
            ..Counters::default()
        };
        let text = line(
            SECOND,
            Phase::Connecting,
            &fanout(),
            &now,
            &Counters::default(),
            SECOND,
        );
        assert_eq!(
            text,
            "[    1s] connecting  up 50/101 (+50/s), 0 failed | subscribed 40/100"
        );
    }

    #[test]
    fn subscribing_once_every_client_is_up() {
        let shape = fanout();
        let mut now = Counters {
            connected: 100,
            connect_failed: 0,
            subscribed: 60,
            ..Counters::default()
        };
        assert_eq!(phase(Phase::Connecting, &shape, &now), Phase::Connecting);
        now.connect_failed = 1;
        assert_eq!(phase(Phase::Connecting, &shape, &now), Phase::Subscribing);
        let before = Counters {
            subscribed: 20,
            ..now
        };
        assert_eq!(
            line(
                2 * SECOND,
                Phase::Subscribing,
                &shape,
                &now,
                &before,
                2 * SECOND
            ),
            "[    2s] subscribing up 100/101, 1 failed | subscribed 60/100 (+20/s)"
        );
        now.subscribed = 99;
        now.subscribe_failed = 1;
        assert_eq!(phase(Phase::Connecting, &shape, &now), Phase::Connecting);
        // A workload without subscribers never subscribes.
        let idle = Counters {
            connected: 1000,
            ..Counters::default()
        };
        assert_eq!(phase(Phase::Connecting, &conn(), &idle), Phase::Connecting);
        assert_eq!(phase(Phase::Holding, &shape, &now), Phase::Holding);
    }

    #[test]
    fn publishing_and_draining_show_traffic() {
        let shape = Shape {
            acks: true,
            ..fanout()
        };
        let before = Counters {
            connected: 101,
            subscribed: 100,
            published: 10,
            needs_ack: 10,
            acked: 8,
            unique: 900,
            ..Counters::default()
        };
        let now = Counters {
            published: 30,
            needs_ack: 30,
            acked: 27,
            unique: 2900,
            dropped: 1,
            closed: 1,
            ..before
        };
        assert_eq!(
            line(5 * SECOND, Phase::Publishing, &shape, &now, &before, SECOND),
            "[    5s] publishing  up 100/101, 1 dropped | published 30 (+20/s), 3 unacked | delivered 2900 (+2000/s)"
        );
        assert_eq!(
            line(6 * SECOND, Phase::Draining, &shape, &now, &before, SECOND),
            "[    6s] draining    up 100/101, 1 dropped, 3 unacked | delivered 2900 (+2000/s)"
        );
    }

    #[test]
    fn publishers_without_subscribers_show_no_deliveries() {
        let shape = Shape {
            clients: 10,
            publishers: 10,
            subscribers: 0,
            acks: false,
        };
        let now = Counters {
            connected: 10,
            published: 100,
            ..Counters::default()
        };
        let text = line(SECOND, Phase::Publishing, &shape, &now, &now, SECOND);
        assert_eq!(text, "[    1s] publishing  up 10/10 | published 100 (+0/s)");
    }

    #[test]
    fn finishing_counts_connections_down() {
        let now = Counters {
            connected: 101,
            closed: 60,
            subscribed: 100,
            unique: 2000,
            published: 20,
            ..Counters::default()
        };
        assert_eq!(
            line(8 * SECOND, Phase::Finishing, &fanout(), &now, &now, SECOND),
            "[    8s] finishing   up 41/101"
        );
    }
}
