//! SUBACK (MQTT 3.1 §3.9, 3.1.1 §3.9, 5.0 §3.9).
//!
//! ```text
//! variable header  packet id, properties (5.0)
//! payload          one code per filter of the SUBSCRIBE
//! ```
//!
//! 3.x return codes are 0, 1, 2 (granted QoS) and 0x80 (failure); the encoder maps every MQTT 5
//! failure code to 0x80 for them ([`ReasonCode::to_v3_suback`]).

use bytes::{BufMut, Bytes, BytesMut};

use crate::properties::PropertyPlace;
use crate::wire::{finish, packet_len, put_fixed_header, read_packet_id, read_u8, varint_len};
use crate::{DecodeError, EncodeError, PacketId, PacketType, Properties, Protocol, ReasonCode};

/// SUBACK (MQTT 3.1.1 §3.9, MQTT 5.0 §3.9).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct SubAck {
    /// Packet id of the SUBSCRIBE.
    pub packet_id: PacketId,
    /// One code per filter: `GrantedQoS0..2` or a failure (0x80 and above).
    pub codes: Vec<ReasonCode>,
    /// MQTT 5 properties.
    pub properties: Properties,
}

const PLACE: PropertyPlace = PropertyPlace::Packet(PacketType::SubAck);

impl SubAck {
    pub(crate) fn decode(mut buf: Bytes, protocol: Protocol) -> Result<SubAck, DecodeError> {
        let packet_id = read_packet_id(&mut buf)?;
        let properties = if protocol.is_v5() {
            Properties::decode(&mut buf, PLACE)?
        } else {
            Properties::default()
        };
        let mut codes = Vec::with_capacity(buf.len());
        while !buf.is_empty() {
            let byte = read_u8(&mut buf)?;
            let code = if protocol.is_v5() {
                ReasonCode::from_u8(byte).filter(|code| code.allowed_in(PacketType::SubAck))
            } else {
                // "SUBACK return codes other than 0x00, 0x01, 0x02 and 0x80 are reserved and
                // MUST NOT be used" [MQTT-3.9.3-2].
                match byte {
                    0x00 | 0x01 | 0x02 | 0x80 => ReasonCode::from_u8(byte),
                    _ => None,
                }
            };
            codes.push(code.ok_or(DecodeError::InvalidReasonCode(byte))?);
        }
        // One code per filter of a SUBSCRIBE, which has at least one [MQTT-3.8.4-5, MQTT-3.9.3-1].
        if codes.is_empty() {
            return Err(DecodeError::Malformed("SUBACK without return codes"));
        }
        finish(&buf)?;
        Ok(SubAck {
            packet_id,
            codes,
            properties,
        })
    }

    fn layout(&self, protocol: Protocol) -> Result<(usize, usize), EncodeError> {
        let mut len = 2 + self.codes.len();
        let mut properties = 0;
        if protocol.is_v5() {
            properties = self.properties.encoded_len(PLACE)?;
            len += varint_len(properties) + properties;
        }
        Ok((len, properties))
    }

    pub(crate) fn encoded_len(&self, protocol: Protocol) -> Result<usize, EncodeError> {
        packet_len(self.layout(protocol)?.0)
    }

    pub(crate) fn encode(&self, protocol: Protocol, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let (remaining, properties) = self.layout(protocol)?;
        put_fixed_header(dst, (PacketType::SubAck as u8) << 4, remaining)?;
        dst.put_u16(self.packet_id.get());
        if protocol.is_v5() {
            self.properties.encode(properties, dst);
            for code in &self.codes {
                dst.put_u8(*code as u8);
            }
        } else {
            for code in &self.codes {
                dst.put_u8(code.to_v3_suback());
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
        let bytes: &[u8] = b"\x90\x06\x00\x0a\x00\x01\x02\x80";
        let codes = vec![
            ReasonCode::Success,
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS2,
            ReasonCode::UnspecifiedError,
        ];
        let packet = Packet::SubAck(SubAck {
            packet_id: id(10),
            codes,
            properties: Properties::default(),
        });
        assert_eq!(decode_one(Some(Protocol::V311), bytes), packet);
        assert_eq!(encode_bytes(&packet, Protocol::V311), bytes);
        // MQTT 5 failure codes become 0x80.
        let packet = Packet::SubAck(SubAck {
            packet_id: id(10),
            codes: vec![ReasonCode::TopicFilterInvalid, ReasonCode::NotAuthorized],
            properties: Properties::default(),
        });
        assert_eq!(
            encode_bytes(&packet, Protocol::V311),
            b"\x90\x04\x00\x0a\x80\x80"
        );
    }

    #[test]
    fn v500_literal() {
        let bytes: &[u8] = b"\x90\x09\x00\x0a\x04\x1f\x00\x01x\x01\x8f";
        let packet = Packet::SubAck(SubAck {
            packet_id: id(10),
            codes: vec![ReasonCode::GrantedQoS1, ReasonCode::TopicFilterInvalid],
            properties: Properties::from(PropertyValues {
                reason_string: Some("x".into()),
                ..PropertyValues::default()
            }),
        });
        assert_eq!(decode_one(Some(Protocol::V500), bytes), packet);
        assert_eq!(encode_bytes(&packet, Protocol::V500), bytes);
    }

    #[test]
    fn invalid() {
        let err = decode_err(Some(Protocol::V311), b"\x90\x03\x00\x0a\x8f");
        assert_eq!(err, DecodeError::InvalidReasonCode(0x8f));
        assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
        let err = decode_err(Some(Protocol::V500), b"\x90\x04\x00\x0a\x00\x92");
        assert_eq!(err, DecodeError::InvalidReasonCode(0x92));
        let err = decode_err(Some(Protocol::V311), b"\x90\x02\x00\x0a");
        assert_eq!(err, DecodeError::Malformed("SUBACK without return codes"));
        let err = decode_err(Some(Protocol::V311), b"\x91\x03\x00\x0a\x00");
        assert_eq!(
            err,
            DecodeError::InvalidFlags {
                packet_type: 9,
                flags: 1
            }
        );
        let err = decode_err(Some(Protocol::V311), b"\x90\x03\x00\x00\x00");
        assert_eq!(err, DecodeError::ZeroPacketId);
    }
}
