//! Login figures: failed logins by reason, bans issued and bans in force.
//!
//! The control core decides every CONNECT and owns the login guard, so it alone writes these,
//! into atomics it shares with the admin API ([`LoginFigures`]); the admin API reads a
//! [`Logins`] copy for `/metrics` and `/api/v1/stats`. Nothing here is on a shard: a shard
//! never counts a login.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Why a login was refused, as counted and logged.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Failure {
    /// A known user with a wrong (or no) password.
    BadPassword,
    /// A user name no user has (or one too long to be one).
    UnknownUser,
    /// Not allowed to connect at all (anonymous where that is not allowed).
    NotAuthorized,
    /// The source address is banned.
    Banned,
}

impl Failure {
    /// Every reason, in the order figures list them.
    pub const ALL: [Failure; 4] = [
        Failure::BadPassword,
        Failure::UnknownUser,
        Failure::NotAuthorized,
        Failure::Banned,
    ];

    /// The reason's name in figures, metrics and the log.
    pub fn name(self) -> &'static str {
        match self {
            Failure::BadPassword => "bad_password",
            Failure::UnknownUser => "unknown_user",
            Failure::NotAuthorized => "not_authorized",
            Failure::Banned => "banned",
        }
    }
}

/// Failed logins per reason (in [`Failure::ALL`]'s order).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct FailureCounts(pub [u64; 4]);

impl FailureCounts {
    /// Failures for `reason`.
    pub fn get(&self, reason: Failure) -> u64 {
        self.0[reason as usize]
    }
}

impl Serialize for FailureCounts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(Failure::ALL.len()))?;
        for reason in Failure::ALL {
            map.serialize_entry(reason.name(), &self.get(reason))?;
        }
        map.end()
    }
}

/// The login figures at one moment.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Serialize)]
pub struct Logins {
    /// Failed logins since start, by reason.
    pub failures: FailureCounts,
    /// Bans imposed since start.
    pub bans_issued: u64,
    /// Source addresses banned now.
    pub bans_active: u64,
}

/// The live login figures: written by the control core, read by the admin API.
#[derive(Debug, Default)]
pub struct LoginFigures {
    failures: [AtomicU64; 4],
    bans_issued: AtomicU64,
    bans_active: AtomicU64,
}

impl LoginFigures {
    /// Counts one failed login.
    pub fn failed(&self, reason: Failure) {
        self.failures[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the ban figures.
    pub fn set_bans(&self, issued: u64, active: u64) {
        self.bans_issued.store(issued, Ordering::Relaxed);
        self.bans_active.store(active, Ordering::Relaxed);
    }

    /// The current figures.
    pub fn load(&self) -> Logins {
        Logins {
            failures: FailureCounts(std::array::from_fn(|reason| {
                self.failures[reason].load(Ordering::Relaxed)
            })),
            bans_issued: self.bans_issued.load(Ordering::Relaxed),
            bans_active: self.bans_active.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_reason_and_serializes_by_name() {
        let figures = LoginFigures::default();
        figures.failed(Failure::BadPassword);
        figures.failed(Failure::Banned);
        figures.failed(Failure::Banned);
        figures.set_bans(3, 1);
        let logins = figures.load();
        assert_eq!(logins.failures.get(Failure::Banned), 2);
        assert_eq!(logins.failures.get(Failure::UnknownUser), 0);
        assert_eq!(
            serde_json::to_value(logins).unwrap(),
            serde_json::json!({
                "failures": {"bad_password": 1, "unknown_user": 0, "not_authorized": 0, "banned": 2},
                "bans_issued": 3,
                "bans_active": 1,
            })
        );
    }
}
