//! Brute-force protection: repeated login failures from one address or for one user name ban
//! that address or name for a while. Kept on the control core, which sees every CONNECT.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use hashbrown::HashMap;

/// Limits of the guard.
#[derive(Clone, Copy, Debug)]
pub struct GuardLimits {
    /// Failures within `window` that trigger a ban; 0 disables the guard.
    pub max_failures: u32,
    /// Window over which failures are counted.
    pub window: Duration,
    /// How long a ban lasts.
    pub ban: Duration,
}

impl Default for GuardLimits {
    fn default() -> Self {
        Self {
            max_failures: 10,
            window: Duration::from_secs(60),
            ban: Duration::from_secs(300),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Record {
    failures: u32,
    first: Instant,
    banned_until: Option<Instant>,
}

/// Failure counts and bans per address and per user name.
#[derive(Debug, Default)]
pub struct LoginGuard {
    limits: GuardLimits,
    addresses: HashMap<IpAddr, Record>,
    usernames: HashMap<String, Record>,
    /// Bans imposed since start.
    pub bans: u64,
}

/// Entries kept at most per table, so a flood of distinct addresses cannot grow memory forever.
const MAX_ENTRIES: usize = 100_000;

impl LoginGuard {
    /// A guard with these limits.
    pub fn new(limits: GuardLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Whether the address or the user name is banned now.
    pub fn is_banned(&self, address: Option<IpAddr>, username: Option<&str>, now: Instant) -> bool {
        let banned = |record: Option<&Record>| {
            record
                .and_then(|r| r.banned_until)
                .is_some_and(|until| now < until)
        };
        banned(address.and_then(|a| self.addresses.get(&a)))
            || banned(username.and_then(|u| self.usernames.get(u)))
    }

    /// How long to hold back the refusal of a login that just failed: nothing for a first
    /// failure, then 200 ms per earlier failure of the address or name, at most 2 s.
    pub fn penalty(&self, address: Option<IpAddr>, username: Option<&str>) -> Duration {
        let failures = |record: Option<&Record>| record.map_or(0, |r| r.failures);
        let worst = failures(address.and_then(|a| self.addresses.get(&a)))
            .max(failures(username.and_then(|u| self.usernames.get(u))));
        (Duration::from_millis(200) * worst.saturating_sub(1)).min(Duration::from_secs(2))
    }

    /// A failed login.
    pub fn record_failure(
        &mut self,
        address: Option<IpAddr>,
        username: Option<&str>,
        now: Instant,
    ) {
        if self.limits.max_failures == 0 {
            return;
        }
        let limits = self.limits;
        let mut banned = 0;
        if let Some(address) = address {
            banned += u64::from(bump(&mut self.addresses, address, limits, now));
        }
        if let Some(username) = username {
            banned += u64::from(bump(&mut self.usernames, username.to_owned(), limits, now));
        }
        self.bans += banned;
    }

    /// A successful login clears the address's and the name's failures.
    pub fn record_success(&mut self, address: Option<IpAddr>, username: Option<&str>) {
        if let Some(address) = address {
            self.addresses.remove(&address);
        }
        if let Some(username) = username {
            self.usernames.remove(username);
        }
    }
}

/// Counts a failure; true if it imposed a ban.
fn bump<K: std::hash::Hash + Eq>(
    table: &mut HashMap<K, Record>,
    key: K,
    limits: GuardLimits,
    now: Instant,
) -> bool {
    if table.len() >= MAX_ENTRIES {
        table.retain(|_, r| {
            r.banned_until.is_some_and(|until| now < until)
                || now.duration_since(r.first) < limits.window
        });
    }
    let record = table.entry(key).or_insert(Record {
        failures: 0,
        first: now,
        banned_until: None,
    });
    if now.duration_since(record.first) > limits.window {
        *record = Record {
            failures: 0,
            first: now,
            banned_until: None,
        };
    }
    record.failures += 1;
    if record.failures >= limits.max_failures
        && record.banned_until.is_none_or(|until| until <= now)
    {
        record.banned_until = Some(now + limits.ban);
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_after_repeated_failures_and_expires() {
        let limits = GuardLimits {
            max_failures: 3,
            window: Duration::from_secs(10),
            ban: Duration::from_secs(30),
        };
        let mut guard = LoginGuard::new(limits);
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..2 {
            guard.record_failure(Some(ip), Some("eve"), t0);
        }
        assert!(!guard.is_banned(Some(ip), None, t0));
        guard.record_failure(Some(ip), Some("eve"), t0);
        assert!(guard.is_banned(Some(ip), None, t0));
        assert!(
            guard.is_banned(None, Some("eve"), t0),
            "the user name is banned too"
        );
        assert!(!guard.is_banned(Some("127.0.0.8".parse().unwrap()), Some("bob"), t0));
        assert!(!guard.is_banned(Some(ip), Some("eve"), t0 + Duration::from_secs(31)));
        assert_eq!(
            guard.penalty(Some(ip), None),
            Duration::from_millis(400),
            "slowed before banned"
        );
        assert_eq!(guard.penalty(None, Some("nobody")), Duration::ZERO);
        assert_eq!(guard.bans, 2);
    }

    #[test]
    fn success_resets_and_old_failures_expire() {
        let limits = GuardLimits {
            max_failures: 2,
            window: Duration::from_secs(10),
            ban: Duration::from_secs(30),
        };
        let mut guard = LoginGuard::new(limits);
        let t0 = Instant::now();
        guard.record_failure(None, Some("a"), t0);
        guard.record_success(None, Some("a"));
        guard.record_failure(None, Some("a"), t0);
        assert!(!guard.is_banned(None, Some("a"), t0));
        guard.record_failure(None, Some("a"), t0 + Duration::from_secs(11));
        assert!(
            !guard.is_banned(None, Some("a"), t0 + Duration::from_secs(11)),
            "window restarted"
        );
    }
}
