//! Log lines that a flood could repeat (descriptor exhaustion, refused connections) are written
//! at most a few per interval, and the next line written says how many were held back, so a log
//! stays readable and bounded whatever a client or the host does.

use std::time::{Duration, Instant};

/// Decides which occurrences of one repeated event are logged.
#[derive(Debug)]
pub struct Throttle {
    interval: Duration,
    burst: u32,
    window_start: Option<Instant>,
    in_window: u32,
    suppressed: u64,
}

impl Throttle {
    /// At most `burst` lines per `interval`.
    pub const fn new(interval: Duration, burst: u32) -> Self {
        Self {
            interval,
            burst,
            window_start: None,
            in_window: 0,
            suppressed: 0,
        }
    }

    /// An occurrence at `now`: `Some(held back since the last line)` when it is to be logged.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        let in_window = self
            .window_start
            .is_some_and(|start| now.saturating_duration_since(start) < self.interval);
        if !in_window {
            self.window_start = Some(now);
            self.in_window = 0;
        }
        if self.in_window >= self.burst {
            self.suppressed += 1;
            return None;
        }
        self.in_window += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_the_count_held_back() {
        let mut throttle = Throttle::new(Duration::from_secs(10), 1);
        let t0 = Instant::now();
        assert_eq!(throttle.allow(t0), Some(0));
        assert_eq!(throttle.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(throttle.allow(t0 + Duration::from_secs(9)), None);
        assert_eq!(throttle.allow(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(throttle.allow(t0 + Duration::from_secs(11)), None);
        assert_eq!(throttle.allow(t0 + Duration::from_secs(30)), Some(1));
    }

    #[test]
    fn a_burst_passes_then_the_rest_of_the_window_is_counted() {
        let mut throttle = Throttle::new(Duration::from_secs(1), 3);
        let t0 = Instant::now();
        let allowed: Vec<_> = (0..10).map(|_| throttle.allow(t0)).collect();
        assert_eq!(&allowed[..3], &[Some(0), Some(0), Some(0)]);
        assert!(allowed[3..].iter().all(Option::is_none));
        assert_eq!(throttle.allow(t0 + Duration::from_secs(1)), Some(7));
    }
}
