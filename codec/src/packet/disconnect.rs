//! DISCONNECT (MQTT 3.1 §3.14, 3.1.1 §3.14, 5.0 §3.14).
//!
//! ```text
//! variable header  3.x: none
//!                  5.0: [reason code, [properties]]
//! ```
//!
//! In MQTT 5 remaining length 0 means Normal disconnection with no properties and 1 means a
//! reason code with no properties (§3.14.2.1, §3.14.2.2.1); the encoder uses the shortest form.

use bytes::{BufMut, Bytes, BytesMut};

use crate::properties::PropertyPlace;
use crate::wire::{finish, packet_len, put_fixed_header, read_u8, varint_len};
use crate::{DecodeError, EncodeError, PacketType, Properties, Protocol, ReasonCode};

/// DISCONNECT (MQTT 3.1.1 §3.14, MQTT 5.0 §3.14).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Disconnect {
    /// Reason code (MQTT 5; `Success`, i.e. normal disconnection, otherwise).
    pub code: ReasonCode,
    /// MQTT 5 properties (session expiry, reason string, server reference, ...).
    pub properties: Properties,
}

const PLACE: PropertyPlace = PropertyPlace::Packet(PacketType::Disconnect);

impl Disconnect {
    pub(crate) fn decode(mut buf: Bytes, protocol: Protocol) -> Result<Disconnect, DecodeError> {
        let mut disconnect = Disconnect::default();
        if protocol.is_v5() && !buf.is_empty() {
            let byte = read_u8(&mut buf)?;
            disconnect.code = ReasonCode::from_u8(byte)
                .filter(|code| code.allowed_in(PacketType::Disconnect))
                .ok_or(DecodeError::InvalidReasonCode(byte))?;
            if !buf.is_empty() {
                disconnect.properties = Properties::decode(&mut buf, PLACE)?;
            }
        }
        // 3.x: no variable header at all.
        finish(&buf)?;
        Ok(disconnect)
    }

    fn layout(&self, protocol: Protocol) -> Result<(usize, usize), EncodeError> {
        if !protocol.is_v5() {
            return Ok((0, 0));
        }
        let len = self.properties.encoded_len(PLACE)?;
        Ok(match (len, self.code) {
            (0, ReasonCode::Success) => (0, 0),
            (0, _) => (1, 0),
            (len, _) => (1 + varint_len(len) + len, len),
        })
    }

    pub(crate) fn encoded_len(&self, protocol: Protocol) -> Result<usize, EncodeError> {
        packet_len(self.layout(protocol)?.0)
    }

    pub(crate) fn encode(&self, protocol: Protocol, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let (remaining, properties) = self.layout(protocol)?;
        put_fixed_header(dst, (PacketType::Disconnect as u8) << 4, remaining)?;
        if remaining > 0 {
            dst.put_u8(self.code as u8);
        }
        if remaining > 1 {
            self.properties.encode(properties, dst);
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
        let packet = Packet::Disconnect(Disconnect::default());
        assert_eq!(decode_one(Some(Protocol::V311), b"\xe0\x00"), packet);
        assert_eq!(encode_bytes(&packet, Protocol::V311), b"\xe0\x00");
        let with_code = Packet::Disconnect(Disconnect {
            code: ReasonCode::ServerShuttingDown,
            ..Disconnect::default()
        });
        assert_eq!(encode_bytes(&with_code, Protocol::V311), b"\xe0\x00");
    }

    #[test]
    fn v500_literal() {
        let packet = Packet::Disconnect(Disconnect::default());
        assert_eq!(decode_one(Some(Protocol::V500), b"\xe0\x00"), packet);
        assert_eq!(encode_bytes(&packet, Protocol::V500), b"\xe0\x00");
        let packet = Packet::Disconnect(Disconnect {
            code: ReasonCode::ServerShuttingDown,
            ..Disconnect::default()
        });
        assert_eq!(decode_one(Some(Protocol::V500), b"\xe0\x01\x8b"), packet);
        assert_eq!(encode_bytes(&packet, Protocol::V500), b"\xe0\x01\x8b");
        assert_eq!(
            decode_one(Some(Protocol::V500), b"\xe0\x02\x00\x00"),
            Packet::Disconnect(Disconnect::default())
        );
        let bytes: &[u8] = b"\xe0\x07\x8e\x05\x11\x00\x00\x00\x00";
        let packet = Packet::Disconnect(Disconnect {
            code: ReasonCode::SessionTakenOver,
            properties: Properties::from(PropertyValues {
                session_expiry_interval: Some(0),
                ..PropertyValues::default()
            }),
        });
        assert_eq!(decode_one(Some(Protocol::V500), bytes), packet);
        assert_eq!(encode_bytes(&packet, Protocol::V500), bytes);
    }

    #[test]
    fn invalid() {
        let err = decode_err(Some(Protocol::V311), b"\xe0\x01\x00");
        assert_eq!(
            err,
            DecodeError::Malformed("bytes left over after the packet")
        );
        let err = decode_err(Some(Protocol::V311), b"\xe2\x00");
        assert_eq!(
            err,
            DecodeError::InvalidFlags {
                packet_type: 14,
                flags: 2
            }
        );
        let err = decode_err(Some(Protocol::V500), b"\xe0\x01\x18");
        assert_eq!(err, DecodeError::InvalidReasonCode(0x18));
        assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
        let err = decode_err(Some(Protocol::V500), b"\xe0\x04\x00\x02\x11\x00");
        assert_eq!(err, DecodeError::Malformed("packet ends inside a field"));
        let err = decode_err(Some(Protocol::V500), b"\xe0\x05\x00\x03\x23\x00\x01");
        assert_eq!(err, DecodeError::PropertyNotAllowed(0x23));
    }
}
