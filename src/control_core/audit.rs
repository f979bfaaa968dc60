//! The login log: a line per failed login and per ban, with the reason, the address, the client
//! id and the user name, so an operator can tell a misconfigured client from an attack.
//!
//! A flood must not fill the log, so failed logins are rate-limited per source (an IPv4
//! address or an IPv6 /64, as the guard counts them, [`super::guard::source`]): at most
//! [`LINES_PER_SOURCE`] lines per source per [`WINDOW`]; the rest are counted, and when the
//! window ends one line per source says how many were suppressed. At most [`MAX_SOURCES`]
//! sources are followed per window, so a flood from many addresses costs bounded memory and at
//! most that many lines again: failures from further sources are counted together and summed
//! up in one line. Bans are always logged: a source is banned at most once per ban, so they
//! need no limit of their own.
//!
//! [`Audit`] decides and remembers; it reads no clock (callers pass `now`) and writes nothing,
//! so the control core logs what it says and the rules are tested by hand-stepped time.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use hashbrown::HashMap;

use super::guard::source;

/// How long a source's allowance of lines lasts.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Failed logins logged per source per window.
pub const LINES_PER_SOURCE: u32 = 5;

/// Sources followed per window; failures from others are only counted.
pub const MAX_SOURCES: usize = 100;

/// What to do with one failed login.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Verdict {
    /// Log it.
    Log,
    /// Count it, for the summary at the end of the window.
    Suppress,
}

/// The failed logins a window did not log.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Suppressed {
    /// Per source followed (see the module doc; `None`: no address known), how many.
    pub sources: Vec<(Option<IpAddr>, u64)>,
    /// How many from the sources past [`MAX_SOURCES`], together.
    pub unfollowed: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Allowance {
    logged: u32,
    suppressed: u64,
}

/// The per-source rate limit of the login log: see the module doc.
#[derive(Debug)]
pub struct Audit {
    started: Instant,
    sources: HashMap<Option<IpAddr>, Allowance>,
    /// Failures from sources past [`MAX_SOURCES`] in this window.
    unfollowed: u64,
}

impl Audit {
    /// A limiter whose first window starts at `now`.
    pub fn new(now: Instant) -> Audit {
        Audit {
            started: now,
            sources: HashMap::new(),
            unfollowed: 0,
        }
    }

    /// Whether to log a failed login from `address` now. It counts in the current window:
    /// [`Audit::roll`] starts the next one.
    pub fn failure(&mut self, address: Option<IpAddr>) -> Verdict {
        let key = address.map(source);
        if !self.sources.contains_key(&key) && self.sources.len() >= MAX_SOURCES {
            self.unfollowed += 1;
            return Verdict::Suppress;
        }
        let allowance = self.sources.entry(key).or_default();
        if allowance.logged < LINES_PER_SOURCE {
            allowance.logged += 1;
            Verdict::Log
        } else {
            allowance.suppressed += 1;
            Verdict::Suppress
        }
    }

    /// At the end of a window (`now` is past it), starts a new one and returns what the old
    /// one suppressed; nothing otherwise.
    pub fn roll(&mut self, now: Instant) -> Suppressed {
        if now.saturating_duration_since(self.started) < WINDOW {
            return Suppressed::default();
        }
        self.started = now;
        let mut sources: Vec<(Option<IpAddr>, u64)> = self
            .sources
            .drain()
            .filter(|(_, allowance)| allowance.suppressed > 0)
            .map(|(source, allowance)| (source, allowance.suppressed))
            .collect();
        sources.sort_unstable();
        Suppressed {
            sources,
            unfollowed: std::mem::take(&mut self.unfollowed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().expect("address"))
    }

    #[test]
    fn a_few_lines_per_source_then_a_summary() {
        let t0 = Instant::now();
        let mut audit = Audit::new(t0);
        let flood = ip("192.0.2.1");
        let verdicts: Vec<Verdict> = (0..8).map(|_| audit.failure(flood)).collect();
        assert_eq!(verdicts[..5], [Verdict::Log; 5]);
        assert_eq!(verdicts[5..], [Verdict::Suppress; 3]);
        assert_eq!(
            audit.failure(ip("192.0.2.2")),
            Verdict::Log,
            "others still log"
        );
        // Addresses of one IPv6 /64 share an allowance.
        for n in 0..5 {
            assert_eq!(audit.failure(ip(&format!("2001:db8::{n}"))), Verdict::Log);
        }
        assert_eq!(audit.failure(ip("2001:db8::ffff")), Verdict::Suppress);

        let nothing = Suppressed::default();
        assert_eq!(audit.roll(t0 + WINDOW - Duration::from_secs(1)), nothing);
        let summary = audit.roll(t0 + WINDOW);
        assert_eq!(summary.sources, [(flood, 3), (ip("2001:db8::"), 1)]);
        assert_eq!(summary.unfollowed, 0);
        assert_eq!(
            audit.failure(flood),
            Verdict::Log,
            "a new window, a new allowance"
        );
        assert_eq!(audit.roll(t0 + WINDOW + Duration::from_secs(1)), nothing);
    }

    #[test]
    fn sources_past_the_cap_are_counted_together() {
        let t0 = Instant::now();
        let mut audit = Audit::new(t0);
        for n in 0..MAX_SOURCES {
            let address = ip(&format!("10.0.{}.{}", n / 256, n % 256));
            assert_eq!(audit.failure(address), Verdict::Log);
        }
        assert_eq!(audit.failure(ip("198.51.100.1")), Verdict::Suppress);
        assert_eq!(audit.failure(ip("198.51.100.2")), Verdict::Suppress);
        assert_eq!(
            audit.failure(ip("10.0.0.0")),
            Verdict::Log,
            "followed ones go on"
        );
        let summary = audit.roll(t0 + WINDOW);
        assert_eq!((summary.sources.len(), summary.unfollowed), (0, 2));
        assert!(audit.sources.is_empty());
    }
}
