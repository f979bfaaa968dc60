//! PUBCOMP (MQTT 3.1.1 §3.7, MQTT 5.0 §3.7); the wire form is shared with the other
//! acknowledgements, see `ack.rs`.

use bytes::{Bytes, BytesMut};

use super::ack;
use crate::{
    DecodeError, EncodeError, Packet, PacketId, PacketType, Properties, Protocol, ReasonCode,
};

/// PUBCOMP (MQTT 3.1.1 §3.7, MQTT 5.0 §3.7).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct PubComp {
    /// The completed packet id.
    pub packet_id: PacketId,
    /// Reason code (MQTT 5; `Success` otherwise).
    pub code: ReasonCode,
    /// MQTT 5 properties (reason string, user properties).
    pub properties: Properties,
}

impl PubComp {
    /// A successful completion of `packet_id`.
    pub fn new(packet_id: PacketId) -> Self {
        Self {
            packet_id,
            code: ReasonCode::Success,
            properties: Properties::default(),
        }
    }

    pub(crate) fn decode(buf: Bytes, protocol: Protocol) -> Result<Option<Packet>, DecodeError> {
        ack::decode(
            PacketType::PubComp,
            buf,
            protocol,
            |packet_id, code, properties| {
                Packet::PubComp(Self {
                    packet_id,
                    code,
                    properties,
                })
            },
        )
    }

    pub(crate) fn encoded_len(&self, protocol: Protocol) -> Result<usize, EncodeError> {
        ack::encoded_len(PacketType::PubComp, self.code, &self.properties, protocol)
    }

    pub(crate) fn encode(&self, protocol: Protocol, dst: &mut BytesMut) -> Result<(), EncodeError> {
        ack::encode(
            PacketType::PubComp,
            self.packet_id,
            self.code,
            &self.properties,
            protocol,
            dst,
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::test_util::{decode_err, decode_one, encode_bytes, id};
    use crate::*;

    #[test]
    fn v311_literal() {
        let bytes: &[u8] = b"\x70\x02\x12\x34";
        let packet = Packet::PubComp(PubComp::new(id(0x1234)));
        for protocol in [Protocol::V310, Protocol::V311] {
            assert_eq!(decode_one(Some(protocol), bytes), packet);
            assert_eq!(encode_bytes(&packet, protocol), bytes);
        }
        // Reason codes and properties do not exist in 3.x.
        let packet = Packet::PubComp(PubComp {
            code: ReasonCode::PacketIdentifierNotFound,
            properties: Properties::from(PropertyValues {
                reason_string: Some("why".into()),
                ..PropertyValues::default()
            }),
            ..PubComp::new(id(0x1234))
        });
        assert_eq!(encode_bytes(&packet, Protocol::V311), bytes);
    }

    #[test]
    fn v500_literal() {
        // Short form: Success and no properties.
        let bytes: &[u8] = b"\x70\x02\x00\x01";
        let packet = Packet::PubComp(PubComp::new(id(1)));
        assert_eq!(decode_one(Some(Protocol::V500), bytes), packet);
        assert_eq!(encode_bytes(&packet, Protocol::V500), bytes);
        // A reason code and no properties.
        let bytes: &[u8] = b"\x70\x03\x00\x01\x92";
        let packet = Packet::PubComp(PubComp {
            code: ReasonCode::PacketIdentifierNotFound,
            ..PubComp::new(id(1))
        });
        assert_eq!(decode_one(Some(Protocol::V500), bytes), packet);
        assert_eq!(encode_bytes(&packet, Protocol::V500), bytes);
        // Success with a zero property length is accepted too.
        assert_eq!(
            decode_one(Some(Protocol::V500), b"\x70\x04\x00\x01\x00\x00"),
            Packet::PubComp(PubComp::new(id(1)))
        );
        // Full form.
        let bytes: &[u8] = b"\x70\x0a\x00\x01\x92\x06\x1f\x00\x03why";
        let packet = Packet::PubComp(PubComp {
            code: ReasonCode::PacketIdentifierNotFound,
            properties: Properties::from(PropertyValues {
                reason_string: Some("why".into()),
                ..PropertyValues::default()
            }),
            ..PubComp::new(id(1))
        });
        assert_eq!(decode_one(Some(Protocol::V500), bytes), packet);
        assert_eq!(encode_bytes(&packet, Protocol::V500), bytes);
    }

    #[test]
    fn invalid() {
        // Packet id 0 [MQTT-2.3.1-1].
        let err = decode_err(Some(Protocol::V311), b"\x70\x02\x00\x00");
        assert_eq!(err, DecodeError::ZeroPacketId);
        assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
        // Reserved flags [MQTT-2.2.2-1].
        let err = decode_err(Some(Protocol::V311), b"\x72\x02\x00\x01");
        assert_eq!(
            err,
            DecodeError::InvalidFlags {
                packet_type: 7,
                flags: 2
            }
        );
        assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
        // 3.x: exactly the packet id.
        let err = decode_err(Some(Protocol::V311), b"\x70\x03\x00\x01\x00");
        assert_eq!(
            err,
            DecodeError::Malformed("bytes left over after the packet")
        );
        let err = decode_err(Some(Protocol::V311), b"\x70\x01\x00");
        assert_eq!(err, DecodeError::Malformed("packet ends inside a field"));
        // A reason code this packet may not carry.
        let err = decode_err(Some(Protocol::V500), b"\x70\x03\x00\x01\x10");
        assert_eq!(err, DecodeError::InvalidReasonCode(0x10));
        assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
        // A property this packet may not carry.
        let err = decode_err(Some(Protocol::V500), b"\x70\x06\x00\x01\x00\x02\x01\x01");
        assert_eq!(err, DecodeError::PropertyNotAllowed(0x01));
        // Reason string twice.
        let err = decode_err(
            Some(Protocol::V500),
            b"\x70\x0a\x00\x01\x00\x06\x1f\x00\x00\x1f\x00\x00",
        );
        assert_eq!(err, DecodeError::DuplicateProperty(0x1f));
        assert_eq!(err.reason_code(), ReasonCode::ProtocolError);
    }
}
