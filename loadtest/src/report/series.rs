//! The run over time: [`Phase`] names where a run is, [`Point`] is one sample of the time series
//! that `series[]` in the JSON holds and the HTML report draws.

use serde::{Deserialize, Serialize};

/// Where a run is. The phases follow one another in this order; a run that is stopped skips to
/// [`Phase::Finishing`].
#[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Clients open connections (TCP, CONNECT/CONNACK, and SUBSCRIBE right after the CONNACK).
    Connecting,
    /// Every client has connected or failed; subscribers still wait for SUBACKs.
    Subscribing,
    /// Publishers publish.
    Publishing,
    /// Every publisher is done; waiting for the last deliveries and acknowledgements.
    Draining,
    /// Every connection is kept open for the hold time.
    Holding,
    /// Clients disconnect.
    Finishing,
}

impl Phase {
    /// The snake_case name used in the JSON and on the progress line.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connecting => "connecting",
            Phase::Subscribing => "subscribing",
            Phase::Publishing => "publishing",
            Phase::Draining => "draining",
            Phase::Holding => "holding",
            Phase::Finishing => "finishing",
        }
    }
}
