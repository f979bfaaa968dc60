//! The wire form PUBACK, PUBREC, PUBREL and PUBCOMP share (MQTT 5.0 §3.4-§3.7):
//!
//! ```text
//! variable header  packet id, [reason code, [properties]] (5.0)
//! ```
//!
//! In MQTT 5 the reason code and properties may be left out: remaining length 2 means Success
//! with no properties, and 3 means no properties (§3.4.2.1, §3.4.2.2.1). The encoder uses the
//! shortest form. In 3.x the packet is exactly the packet id.

use bytes::{BufMut, Bytes, BytesMut};

use crate::properties::PropertyPlace;
use crate::wire::{finish, packet_len, put_fixed_header, read_packet_id, read_u8, varint_len};
use crate::{
    DecodeError, EncodeError, Packet, PacketId, PacketType, Properties, Protocol, ReasonCode,
};

/// Decodes an acknowledgement of `packet_type` and builds its packet with `make`.
///
/// It returns the decoder's own result type so the 472-byte packet is built once, in place
/// (PUBACK is as frequent as QoS 1 PUBLISH): a struct handed back and wrapped in `Packet` and
/// then `Ok(Some(_))` would be copied at each step.
#[inline]
pub(crate) fn decode(
    packet_type: PacketType,
    mut buf: Bytes,
    protocol: Protocol,
    make: impl FnOnce(PacketId, ReasonCode, Properties) -> Packet,
) -> Result<Option<Packet>, DecodeError> {
    // A non-zero packet id [MQTT-2.3.1-1].
    let packet_id = read_packet_id(&mut buf)?;
    if !protocol.is_v5() || buf.is_empty() {
        finish(&buf)?;
        return Ok(Some(make(
            packet_id,
            ReasonCode::Success,
            Properties::default(),
        )));
    }
    let byte = read_u8(&mut buf)?;
    let code = ReasonCode::from_u8(byte)
        .filter(|code| code.allowed_in(packet_type))
        .ok_or(DecodeError::InvalidReasonCode(byte))?;
    if buf.is_empty() {
        return Ok(Some(make(packet_id, code, Properties::default())));
    }
    let properties = Properties::decode(&mut buf, PropertyPlace::Packet(packet_type))?;
    finish(&buf)?;
    Ok(Some(make(packet_id, code, properties)))
}

/// Remaining length and property block length.
fn layout(
    packet_type: PacketType,
    code: ReasonCode,
    properties: &Properties,
    protocol: Protocol,
) -> Result<(usize, usize), EncodeError> {
    if !protocol.is_v5() {
        return Ok((2, 0));
    }
    let len = properties.encoded_len(PropertyPlace::Packet(packet_type))?;
    Ok(match (len, code) {
        (0, ReasonCode::Success) => (2, 0),
        (0, _) => (3, 0),
        (len, _) => (3 + varint_len(len) + len, len),
    })
}

pub(crate) fn encoded_len(
    packet_type: PacketType,
    code: ReasonCode,
    properties: &Properties,
    protocol: Protocol,
) -> Result<usize, EncodeError> {
    packet_len(layout(packet_type, code, properties, protocol)?.0)
}

pub(crate) fn encode(
    packet_type: PacketType,
    packet_id: PacketId,
    code: ReasonCode,
    properties: &Properties,
    protocol: Protocol,
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    let (remaining, len) = layout(packet_type, code, properties, protocol)?;
    // PUBREL's reserved flags are 0b0010 [MQTT-3.6.1-1]; the others' are 0.
    let flags = if packet_type == PacketType::PubRel {
        0b0010
    } else {
        0
    };
    put_fixed_header(dst, (packet_type as u8) << 4 | flags, remaining)?;
    dst.put_u16(packet_id.get());
    if remaining > 2 {
        dst.put_u8(code as u8);
    }
    if remaining > 3 {
        properties.encode(len, dst);
    }
    Ok(())
}

/// Defines one acknowledgement packet: its struct, its codec entry points, and its tests, which
/// are the same literal cases for all four (one body, four packets).
macro_rules! ack_packet {
    (
        $(#[$doc:meta])*
        $name:ident, $tests:ident {
            id_doc: $id_doc:literal,
            new_doc: $new_doc:literal,
            header: $header:literal,
            wrong_flags: $wrong_flags:literal,
            refusal: $refusal:ident,
            foreign_code: $foreign_code:literal,
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Eq, PartialEq)]
        pub struct $name {
            #[doc = $id_doc]
            pub packet_id: PacketId,
            /// Reason code (MQTT 5; `Success` otherwise).
            pub code: ReasonCode,
            /// MQTT 5 properties (reason string, user properties).
            pub properties: Properties,
        }

        impl $name {
            #[doc = $new_doc]
            pub fn new(packet_id: PacketId) -> Self {
                Self { packet_id, code: ReasonCode::Success, properties: Properties::default() }
            }

            pub(crate) fn decode(buf: Bytes, protocol: Protocol) -> Result<Option<Packet>, DecodeError> {
                decode(PacketType::$name, buf, protocol, |packet_id, code, properties| {
                    Packet::$name(Self { packet_id, code, properties })
                })
            }

            pub(crate) fn encoded_len(&self, protocol: Protocol) -> Result<usize, EncodeError> {
                encoded_len(PacketType::$name, self.code, &self.properties, protocol)
            }

            pub(crate) fn encode(&self, protocol: Protocol, dst: &mut BytesMut) -> Result<(), EncodeError> {
                encode(PacketType::$name, self.packet_id, self.code, &self.properties, protocol, dst)
            }
        }

        #[cfg(test)]
        mod $tests {
            use crate::test_util::{decode_err, decode_one, encode_bytes, id};
            use crate::*;

            const H: u8 = $header;
            const REFUSAL: ReasonCode = ReasonCode::$refusal;

            fn with(code: ReasonCode, reason: Option<&str>, packet_id: u16) -> Packet {
                let properties = match reason {
                    Some(text) => Properties::from(PropertyValues {
                        reason_string: Some(text.into()),
                        ..PropertyValues::default()
                    }),
                    None => Properties::default(),
                };
                Packet::$name($name { code, properties, ..$name::new(id(packet_id)) })
            }

            #[test]
            fn v311_literal() {
                let bytes = [H, 0x02, 0x12, 0x34];
                let packet = Packet::$name($name::new(id(0x1234)));
                for protocol in [Protocol::V310, Protocol::V311] {
                    assert_eq!(decode_one(Some(protocol), &bytes), packet);
                    assert_eq!(encode_bytes(&packet, protocol), bytes);
                }
                // Reason codes and properties do not exist in 3.x.
                assert_eq!(encode_bytes(&with(REFUSAL, Some("why"), 0x1234), Protocol::V311), bytes);
            }

            #[test]
            fn v500_literal() {
                // Short form: Success and no properties.
                let bytes = [H, 0x02, 0x00, 0x01];
                let packet = Packet::$name($name::new(id(1)));
                assert_eq!(decode_one(Some(Protocol::V500), &bytes), packet);
                assert_eq!(encode_bytes(&packet, Protocol::V500), bytes);
                // A reason code and no properties.
                let bytes = [H, 0x03, 0x00, 0x01, REFUSAL as u8];
                let packet = with(REFUSAL, None, 1);
                assert_eq!(decode_one(Some(Protocol::V500), &bytes), packet);
                assert_eq!(encode_bytes(&packet, Protocol::V500), bytes);
                // Success with a zero property length is accepted too.
                let bytes = [H, 0x04, 0x00, 0x01, 0x00, 0x00];
                assert_eq!(decode_one(Some(Protocol::V500), &bytes), Packet::$name($name::new(id(1))));
                // Full form.
                let bytes = [H, 0x0a, 0x00, 0x01, REFUSAL as u8, 0x06, 0x1f, 0x00, 0x03, b'w', b'h', b'y'];
                let packet = with(REFUSAL, Some("why"), 1);
                assert_eq!(decode_one(Some(Protocol::V500), &bytes), packet);
                assert_eq!(encode_bytes(&packet, Protocol::V500), bytes);
            }

            #[test]
            fn invalid() {
                // Packet id 0 [MQTT-2.3.1-1].
                let err = decode_err(Some(Protocol::V311), &[H, 0x02, 0x00, 0x00]);
                assert_eq!(err, DecodeError::ZeroPacketId);
                assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
                // Reserved flags [MQTT-2.2.2-1].
                let wrong: u8 = $wrong_flags;
                let err = decode_err(Some(Protocol::V311), &[wrong, 0x02, 0x00, 0x01]);
                assert_eq!(err, DecodeError::InvalidFlags { packet_type: H >> 4, flags: wrong & 0x0f });
                assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
                // 3.x: exactly the packet id.
                let err = decode_err(Some(Protocol::V311), &[H, 0x03, 0x00, 0x01, 0x00]);
                assert_eq!(err, DecodeError::Malformed("bytes left over after the packet"));
                let err = decode_err(Some(Protocol::V311), &[H, 0x01, 0x00]);
                assert_eq!(err, DecodeError::Malformed("packet ends inside a field"));
                // A reason code this packet may not carry.
                let foreign: u8 = $foreign_code;
                let err = decode_err(Some(Protocol::V500), &[H, 0x03, 0x00, 0x01, foreign]);
                assert_eq!(err, DecodeError::InvalidReasonCode(foreign));
                assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
                // A property this packet may not carry.
                let err = decode_err(Some(Protocol::V500), &[H, 0x06, 0x00, 0x01, 0x00, 0x02, 0x01, 0x01]);
                assert_eq!(err, DecodeError::PropertyNotAllowed(0x01));
                // Reason string twice.
                let twice = [H, 0x0a, 0x00, 0x01, 0x00, 0x06, 0x1f, 0x00, 0x00, 0x1f, 0x00, 0x00];
                let err = decode_err(Some(Protocol::V500), &twice);
                assert_eq!(err, DecodeError::DuplicateProperty(0x1f));
                assert_eq!(err.reason_code(), ReasonCode::ProtocolError);
            }
        }
    };
}

ack_packet! {
    /// PUBACK (MQTT 3.1.1 §3.4, MQTT 5.0 §3.4).
    PubAck, puback_tests {
        id_doc: "The acknowledged packet id.",
        new_doc: "A successful acknowledgement of `packet_id`.",
        header: 0x40,
        wrong_flags: 0x42,
        refusal: NotAuthorized,
        foreign_code: 0x92,
    }
}

ack_packet! {
    /// PUBREC (MQTT 3.1.1 §3.5, MQTT 5.0 §3.5).
    PubRec, pubrec_tests {
        id_doc: "The acknowledged packet id.",
        new_doc: "A successful acknowledgement of `packet_id`.",
        header: 0x50,
        wrong_flags: 0x52,
        refusal: NotAuthorized,
        foreign_code: 0x92,
    }
}

ack_packet! {
    /// PUBREL (MQTT 3.1.1 §3.6, MQTT 5.0 §3.6).
    PubRel, pubrel_tests {
        id_doc: "The released packet id.",
        new_doc: "A successful release of `packet_id`.",
        header: 0x62,
        wrong_flags: 0x60,
        refusal: PacketIdentifierNotFound,
        foreign_code: 0x10,
    }
}

ack_packet! {
    /// PUBCOMP (MQTT 3.1.1 §3.7, MQTT 5.0 §3.7).
    PubComp, pubcomp_tests {
        id_doc: "The completed packet id.",
        new_doc: "A successful completion of `packet_id`.",
        header: 0x70,
        wrong_flags: 0x72,
        refusal: PacketIdentifierNotFound,
        foreign_code: 0x10,
    }
}
