//! PINGREQ and PINGRESP (MQTT 3.1.1 §3.12-§3.13, MQTT 5.0 §3.12-§3.13): a fixed header with
//! remaining length 0 and nothing else, the same at every level.

use bytes::Bytes;

use crate::wire::finish;
use crate::DecodeError;

/// The whole PINGREQ packet.
pub(crate) const PING_REQ: [u8; 2] = [0xC0, 0x00];

/// The whole PINGRESP packet.
pub(crate) const PING_RESP: [u8; 2] = [0xD0, 0x00];

/// Checks a PINGREQ or PINGRESP body: there is none.
pub(crate) fn decode(buf: &Bytes) -> Result<(), DecodeError> {
    finish(buf)
}

#[cfg(test)]
mod tests {
    use crate::test_util::{decode_err, decode_one, encode_bytes};
    use crate::*;

    #[test]
    fn literals() {
        for protocol in [Protocol::V310, Protocol::V311, Protocol::V500] {
            assert_eq!(decode_one(Some(protocol), b"\xc0\x00"), Packet::PingReq);
            assert_eq!(decode_one(Some(protocol), b"\xd0\x00"), Packet::PingResp);
            assert_eq!(encode_bytes(&Packet::PingReq, protocol), b"\xc0\x00");
            assert_eq!(encode_bytes(&Packet::PingResp, protocol), b"\xd0\x00");
        }
    }

    #[test]
    fn invalid() {
        let err = decode_err(Some(Protocol::V311), b"\xc0\x01\x00");
        assert_eq!(
            err,
            DecodeError::Malformed("bytes left over after the packet")
        );
        let err = decode_err(Some(Protocol::V500), b"\xc1\x00");
        assert_eq!(
            err,
            DecodeError::InvalidFlags {
                packet_type: 12,
                flags: 1
            }
        );
        let err = decode_err(Some(Protocol::V311), b"\xd8\x00");
        assert_eq!(
            err,
            DecodeError::InvalidFlags {
                packet_type: 13,
                flags: 8
            }
        );
        // MQTT 3.1 lets DUP/QoS/RETAIN bits be set on any packet.
        assert_eq!(
            decode_one(Some(Protocol::V310), b"\xc1\x00"),
            Packet::PingReq
        );
    }
}
