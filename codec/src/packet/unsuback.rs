//! UNSUBACK (MQTT 3.1 §3.11, 3.1.1 §3.11, 5.0 §3.11).
//!
//! ```text
//! variable header  packet id, properties (5.0)
//! payload          one reason code per filter (5.0); none in 3.x
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use crate::properties::PropertyPlace;
use crate::wire::{finish, packet_len, put_fixed_header, read_packet_id, read_u8, varint_len};
use crate::{DecodeError, EncodeError, PacketId, PacketType, Properties, Protocol, ReasonCode};

/// UNSUBACK (MQTT 3.1.1 §3.11, MQTT 5.0 §3.11).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct UnsubAck {
    /// Packet id of the UNSUBSCRIBE.
    pub packet_id: PacketId,
    /// MQTT 5: one code per filter; empty for 3.1/3.1.1.
    pub codes: Vec<ReasonCode>,
    /// MQTT 5 properties.
    pub properties: Properties,
}

const PLACE: PropertyPlace = PropertyPlace::Packet(PacketType::UnsubAck);

impl UnsubAck {
    pub(crate) fn decode(mut buf: Bytes, protocol: Protocol) -> Result<UnsubAck, DecodeError> {
        let packet_id = read_packet_id(&mut buf)?;
        let mut ack = UnsubAck {
            packet_id,
            codes: Vec::new(),
            properties: Properties::default(),
        };
        if protocol.is_v5() {
            ack.properties = Properties::decode(&mut buf, PLACE)?;
            ack.codes.reserve_exact(buf.len());
            while !buf.is_empty() {
                let byte = read_u8(&mut buf)?;
                let code = ReasonCode::from_u8(byte)
                    .filter(|code| code.allowed_in(PacketType::UnsubAck))
                    .ok_or(DecodeError::InvalidReasonCode(byte))?;
                ack.codes.push(code);
            }
            // One code per filter of an UNSUBSCRIBE, which has at least one (§3.11.3).
            if ack.codes.is_empty() {
                return Err(DecodeError::Malformed("UNSUBACK without reason codes"));
            }
        }
        finish(&buf)?;
        Ok(ack)
    }

    fn layout(&self, protocol: Protocol) -> Result<(usize, usize), EncodeError> {
        if !protocol.is_v5() {
            return Ok((2, 0));
        }
        let properties = self.properties.encoded_len(PLACE)?;
        Ok((
            2 + varint_len(properties) + properties + self.codes.len(),
            properties,
        ))
    }

    pub(crate) fn encoded_len(&self, protocol: Protocol) -> Result<usize, EncodeError> {
        packet_len(self.layout(protocol)?.0)
    }

    pub(crate) fn encode(&self, protocol: Protocol, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let (remaining, properties) = self.layout(protocol)?;
        put_fixed_header(dst, (PacketType::UnsubAck as u8) << 4, remaining)?;
        dst.put_u16(self.packet_id.get());
        if protocol.is_v5() {
            self.properties.encode(properties, dst);
            for code in &self.codes {
                dst.put_u8(*code as u8);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::test_util::{decode_err, decode_one, encode_bytes, id};
    use crate::*;

    #[test]
    fn v311_literal() {
        let bytes: &[u8] = b"\xb0\x02\x00\x05";
        let packet = Packet::UnsubAck(UnsubAck {
            packet_id: id(5),
            codes: Vec::new(),
            properties: Properties::default(),
        });
        assert_eq!(decode_one(Some(Protocol::V311), bytes), packet);
        assert_eq!(encode_bytes(&packet, Protocol::V311), bytes);
        // Codes do not exist in 3.x.
        let with_codes = Packet::UnsubAck(UnsubAck {
            packet_id: id(5),
            codes: vec![ReasonCode::NoSubscriptionExisted],
            properties: Properties::default(),
        });
        assert_eq!(encode_bytes(&with_codes, Protocol::V311), bytes);
    }

    #[test]
    fn v500_literal() {
        let bytes: &[u8] = b"\xb0\x05\x00\x05\x00\x00\x11";
        let packet = Packet::UnsubAck(UnsubAck {
            packet_id: id(5),
            codes: vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted],
            properties: Properties::default(),
        });
        assert_eq!(decode_one(Some(Protocol::V500), bytes), packet);
        assert_eq!(encode_bytes(&packet, Protocol::V500), bytes);
    }

    #[test]
    fn invalid() {
        let err = decode_err(Some(Protocol::V311), b"\xb0\x03\x00\x05\x00");
        assert_eq!(
            err,
            DecodeError::Malformed("bytes left over after the packet")
        );
        let err = decode_err(Some(Protocol::V500), b"\xb0\x04\x00\x05\x00\x01");
        assert_eq!(err, DecodeError::InvalidReasonCode(0x01));
        assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
        let err = decode_err(Some(Protocol::V500), b"\xb0\x03\x00\x05\x00");
        assert_eq!(err, DecodeError::Malformed("UNSUBACK without reason codes"));
        let err = decode_err(Some(Protocol::V500), b"\xb0\x02\x00\x05");
        assert_eq!(err, DecodeError::Malformed("packet ends inside a field"));
    }
}
