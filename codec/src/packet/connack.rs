//! CONNACK (MQTT 3.1 §3.2, 3.1.1 §3.2, 5.0 §3.2).
//!
//! ```text
//! variable header  acknowledge flags  bit 0 session present (3.1.1, 5.0); reserved in 3.1
//!                  return code (3.x, 0-5) | reason code (5.0)
//!                  properties (5.0)
//! ```
//!
//! The struct holds an MQTT 5 reason code at every level; 3.x return codes map through
//! [`ReasonCode::to_v3_connack`] and [`ReasonCode::from_v3_connack`].

use bytes::{BufMut, Bytes, BytesMut};

use crate::properties::PropertyPlace;
use crate::wire::{finish, packet_len, put_fixed_header, read_u8, varint_len};
use crate::{DecodeError, EncodeError, PacketType, Properties, Protocol, ReasonCode};

/// CONNACK (MQTT 3.1.1 §3.2, MQTT 5.0 §3.2).
///
/// `code` is an MQTT 5 reason code; for 3.1/3.1.1 it maps to the connect return code
/// (see [`ReasonCode::to_v3_connack`]).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct ConnAck {
    /// Session present flag (always false on a 3.1 connection, which has no such flag).
    pub session_present: bool,
    /// Result of the connection attempt.
    pub code: ReasonCode,
    /// MQTT 5 CONNACK properties (assigned client id, server keep alive, maximums, ...).
    pub properties: Properties,
}

const PLACE: PropertyPlace = PropertyPlace::Packet(PacketType::ConnAck);

impl ConnAck {
    pub(crate) fn decode(mut buf: Bytes, protocol: Protocol) -> Result<ConnAck, DecodeError> {
        let flags = read_u8(&mut buf)?;
        let session_present = match protocol {
            // 3.1 names this byte "Topic Name Compression Response", reserved and unused.
            Protocol::V310 => false,
            _ => {
                // Bits 7-1 are reserved and MUST be 0 (3.1.1 §3.2.2.1, 5.0 §3.2.2.1).
                if flags & 0xFE != 0 {
                    return Err(DecodeError::Malformed("CONNACK reserved flags set"));
                }
                flags & 1 != 0
            }
        };
        let byte = read_u8(&mut buf)?;
        let (code, properties) = if protocol.is_v5() {
            let code = ReasonCode::from_u8(byte)
                .filter(|code| code.allowed_in(PacketType::ConnAck))
                .ok_or(DecodeError::InvalidReasonCode(byte))?;
            (code, Properties::decode(&mut buf, PLACE)?)
        } else {
            // Return codes 6-255 are reserved (3.1.1 §3.2.2.3).
            let code =
                ReasonCode::from_v3_connack(byte).ok_or(DecodeError::InvalidReasonCode(byte))?;
            (code, Properties::default())
        };
        finish(&buf)?;
        Ok(ConnAck {
            session_present,
            code,
            properties,
        })
    }

    fn layout(&self, protocol: Protocol) -> Result<(usize, usize), EncodeError> {
        if !protocol.is_v5() {
            return Ok((2, 0));
        }
        let properties = self.properties.encoded_len(PLACE)?;
        Ok((2 + varint_len(properties) + properties, properties))
    }

    pub(crate) fn encoded_len(&self, protocol: Protocol) -> Result<usize, EncodeError> {
        packet_len(self.layout(protocol)?.0)
    }

    pub(crate) fn encode(&self, protocol: Protocol, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let (remaining, properties) = self.layout(protocol)?;
        put_fixed_header(dst, (PacketType::ConnAck as u8) << 4, remaining)?;
        dst.put_u8(u8::from(self.session_present && protocol != Protocol::V310));
        if protocol.is_v5() {
            dst.put_u8(self.code as u8);
            self.properties.encode(properties, dst);
        } else {
            dst.put_u8(self.code.to_v3_connack());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::test_util::{decode_err, decode_one, encode_bytes};
    use crate::*;

    #[test]
    fn v311_literal() {
        let ack = ConnAck {
            session_present: true,
            ..ConnAck::default()
        };
        let bytes: &[u8] = b"\x20\x02\x01\x00";
        assert_eq!(
            decode_one(Some(Protocol::V311), bytes),
            Packet::ConnAck(ack.clone())
        );
        assert_eq!(encode_bytes(&Packet::ConnAck(ack), Protocol::V311), bytes);
        let ack = ConnAck {
            code: ReasonCode::NotAuthorized,
            ..ConnAck::default()
        };
        let bytes: &[u8] = b"\x20\x02\x00\x05";
        assert_eq!(
            decode_one(Some(Protocol::V311), bytes),
            Packet::ConnAck(ack.clone())
        );
        assert_eq!(encode_bytes(&Packet::ConnAck(ack), Protocol::V311), bytes);
        // Reason codes without a 3.x return code map to the nearest one.
        let ack = ConnAck {
            code: ReasonCode::ServerBusy,
            ..ConnAck::default()
        };
        assert_eq!(
            encode_bytes(&Packet::ConnAck(ack), Protocol::V311),
            b"\x20\x02\x00\x03"
        );
    }

    #[test]
    fn v310_has_no_session_present() {
        let ack = ConnAck {
            session_present: true,
            ..ConnAck::default()
        };
        assert_eq!(
            encode_bytes(&Packet::ConnAck(ack), Protocol::V310),
            b"\x20\x02\x00\x00"
        );
        assert_eq!(
            decode_one(Some(Protocol::V310), b"\x20\x02\x01\x00"),
            Packet::ConnAck(ConnAck::default())
        );
    }

    #[test]
    fn v500_literal() {
        let ack = ConnAck {
            session_present: false,
            code: ReasonCode::Success,
            properties: Properties::from(PropertyValues {
                assigned_client_identifier: Some("id".into()),
                topic_alias_maximum: Some(10),
                ..PropertyValues::default()
            }),
        };
        let bytes: &[u8] = b"\x20\x0b\x00\x00\x08\x12\x00\x02id\x22\x00\x0a";
        assert_eq!(
            decode_one(Some(Protocol::V500), bytes),
            Packet::ConnAck(ack.clone())
        );
        assert_eq!(encode_bytes(&Packet::ConnAck(ack), Protocol::V500), bytes);
        let ack = ConnAck {
            code: ReasonCode::Banned,
            ..ConnAck::default()
        };
        let bytes: &[u8] = b"\x20\x03\x00\x8a\x00";
        assert_eq!(
            decode_one(Some(Protocol::V500), bytes),
            Packet::ConnAck(ack.clone())
        );
        assert_eq!(encode_bytes(&Packet::ConnAck(ack), Protocol::V500), bytes);
    }

    #[test]
    fn invalid() {
        let err = decode_err(Some(Protocol::V311), b"\x20\x02\x02\x00");
        assert_eq!(err, DecodeError::Malformed("CONNACK reserved flags set"));
        assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
        let err = decode_err(Some(Protocol::V311), b"\x20\x02\x00\x06");
        assert_eq!(err, DecodeError::InvalidReasonCode(6));
        assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
        // 0x8E Session taken over is a DISCONNECT code, not a CONNACK code.
        let err = decode_err(Some(Protocol::V500), b"\x20\x03\x00\x8e\x00");
        assert_eq!(err, DecodeError::InvalidReasonCode(0x8e));
        // Properties are not optional in an MQTT 5 CONNACK.
        let err = decode_err(Some(Protocol::V500), b"\x20\x02\x00\x00");
        assert_eq!(err, DecodeError::Malformed("packet ends inside a field"));
        let err = decode_err(Some(Protocol::V311), b"\x20\x03\x00\x00\x00");
        assert_eq!(
            err,
            DecodeError::Malformed("bytes left over after the packet")
        );
        // Maximum QoS 2 is a Protocol Error (§3.2.2.3.4).
        let err = decode_err(Some(Protocol::V500), b"\x20\x05\x00\x00\x02\x24\x02");
        assert_eq!(err, DecodeError::InvalidPropertyValue(0x24));
        assert_eq!(err.reason_code(), ReasonCode::ProtocolError);
        // Retain available 2 (§3.2.2.3.5).
        let err = decode_err(Some(Protocol::V500), b"\x20\x05\x00\x00\x02\x25\x02");
        assert_eq!(err, DecodeError::InvalidPropertyValue(0x25));
    }
}
