//! The measurement header every published payload starts with.
//!
//! ```text
//! 0        4             8                    16       20              payload size
//! | run tag | publisher   | sent (ns, epoch)   | seq    | zero padding ... |
//! ```
//!
//! All fields little-endian. The *run tag* tells this run's messages from retained or queued ones
//! left by an earlier run (those count as unexpected, not as deliveries). *publisher* is the
//! publisher's rank (0..publishers across every group), *seq* its message number from 0, *sent* the
//! nanoseconds since the run's shared monotonic epoch at which the message was due (rate-limited
//! publishers) or encoded (unlimited ones). A subscriber's latency is its receive time minus
//! *sent*; the pair (publisher, seq) finds losses and duplicates.

use bytes::{BufMut, BytesMut};

/// Bytes of the header; the smallest payload a run may use.
pub const HEADER_LEN: usize = 20;

/// The header of one message.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) struct Stamp {
    pub run_tag: u32,
    pub publisher: u32,
    pub sent_ns: u64,
    pub seq: u32,
}

impl Stamp {
    /// Appends a payload of `len` bytes (at least [`HEADER_LEN`]) that starts with this header.
    pub(crate) fn write(&self, len: usize, dst: &mut BytesMut) {
        debug_assert!(len >= HEADER_LEN, "payload shorter than its header");
        dst.reserve(len);
        dst.put_u32_le(self.run_tag);
        dst.put_u32_le(self.publisher);
        dst.put_u64_le(self.sent_ns);
        dst.put_u32_le(self.seq);
        dst.put_bytes(0, len.saturating_sub(HEADER_LEN));
    }

    /// Reads the header of `payload`, or `None` if it is too short to carry one.
    pub(crate) fn read(payload: &[u8]) -> Option<Stamp> {
        let header = payload.get(..HEADER_LEN)?;
        let u32_at = |at: usize| {
            u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let mut sent = [0u8; 8];
        sent.copy_from_slice(&header[8..16]);
        Some(Stamp {
            run_tag: u32_at(0),
            publisher: u32_at(4),
            sent_ns: u64::from_le_bytes(sent),
            seq: u32_at(16),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_padding() {
        let stamp = Stamp {
            run_tag: 0xdead_beef,
            publisher: 7,
            sent_ns: 123_456_789_012,
            seq: 42,
        };
        let mut buf = BytesMut::new();
        stamp.write(64, &mut buf);
        assert_eq!(buf.len(), 64);
        assert!(buf[HEADER_LEN..].iter().all(|&b| b == 0));
        assert_eq!(Stamp::read(&buf), Some(stamp));
    }

    #[test]
    fn short_payload_has_no_stamp() {
        assert_eq!(Stamp::read(&[0u8; HEADER_LEN - 1]), None);
    }
}
