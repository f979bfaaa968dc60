//! When a connection must have sent its next packet, sans I/O: the clock is passed in.
//!
//! Two rules, both absolute deadlines rather than a timeout per read, so bytes trickled one at a
//! time buy a client nothing:
//!
//! - **CONNECT**: the whole packet must have arrived `connect_timeout` after the connection was
//!   accepted.
//! - **Keep-alive**: once connected, a whole packet must arrive within one and a half times the
//!   keep-alive the client asked for, counted from the last whole packet [MQTT-3.1.2-24]. A
//!   keep-alive of 0 turns the mechanism off [MQTT-3.1.2-23].
//!
//! The connection task gives each socket read the time left as its timeout
//! ([`ReadDeadline::remaining`]); a read that times out ends the connection. No timer exists per
//! connection beyond the one its pending read carries.

use std::time::{Duration, Instant};

/// The keep-alive the broker grants, in seconds: the client's, unless it asked for none (0) or
/// more than `max` (`max_keepalive`), which then applies (MQTT 5 tells the client with Server
/// Keep Alive; a 3.x client simply meets the broker's deadline).
pub fn granted_keep_alive(requested: u16, max: u16) -> u16 {
    if requested == 0 || requested > max {
        max
    } else {
        requested
    }
}

/// The deadline of a connection's next whole packet.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct ReadDeadline {
    at: Option<Instant>,
    /// Keep-alive window, pushed forward by every packet; `None` for the CONNECT deadline.
    window: Option<Duration>,
}

impl ReadDeadline {
    /// CONNECT must be complete `timeout` after `accepted`.
    pub fn connect(accepted: Instant, timeout: Duration) -> Self {
        Self {
            at: Some(accepted + timeout),
            window: None,
        }
    }

    /// The keep-alive of a connected client, in seconds as sent in CONNECT, starting `now`.
    pub fn keep_alive(now: Instant, keep_alive: u16) -> Self {
        let window = (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
        Self {
            at: window.map(|window| now + window),
            window,
        }
    }

    /// A whole packet arrived at `now`: the keep-alive window starts again.
    pub fn handle_packet(&mut self, now: Instant) {
        if let Some(window) = self.window {
            self.at = Some(now + window);
        }
    }

    /// Time left at `now`: `None` when there is no deadline, zero once it has passed.
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        self.at.map(|at| at.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_deadline_counts_from_accept_whatever_arrives() {
        let start = Instant::now();
        let mut deadline = ReadDeadline::connect(start, Duration::from_secs(10));
        // Bytes of an incomplete CONNECT arrive every second; no packet completes.
        assert_eq!(
            deadline.remaining(start + Duration::from_secs(4)),
            Some(Duration::from_secs(6))
        );
        // Even a completed packet does not extend the CONNECT deadline.
        deadline.handle_packet(start + Duration::from_secs(9));
        assert_eq!(
            deadline.remaining(start + Duration::from_secs(11)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn keep_alive_is_one_and_a_half_times_from_the_last_packet() {
        let start = Instant::now();
        let mut deadline = ReadDeadline::keep_alive(start, 10);
        assert_eq!(deadline.remaining(start), Some(Duration::from_secs(15)));
        deadline.handle_packet(start + Duration::from_secs(14));
        assert_eq!(
            deadline.remaining(start + Duration::from_secs(20)),
            Some(Duration::from_secs(9))
        );
        assert_eq!(
            deadline.remaining(start + Duration::from_secs(29)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn the_server_maximum_bounds_keep_alive() {
        assert_eq!(granted_keep_alive(30, 60), 30);
        assert_eq!(
            granted_keep_alive(0, 60),
            60,
            "no keep-alive is not granted"
        );
        assert_eq!(granted_keep_alive(600, 60), 60);
        let start = Instant::now();
        let deadline = ReadDeadline::keep_alive(start, granted_keep_alive(0, 2));
        assert_eq!(deadline.remaining(start), Some(Duration::from_secs(3)));
    }

    #[test]
    fn keep_alive_zero_has_no_deadline() {
        let start = Instant::now();
        let mut deadline = ReadDeadline::keep_alive(start, 0);
        deadline.handle_packet(start + Duration::from_secs(3600));
        assert_eq!(
            deadline.remaining(start + Duration::from_secs(86_400)),
            None
        );
    }
}
