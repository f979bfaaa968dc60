//! PUBLISH (MQTT 3.1 §3.3, 3.1.1 §3.3, 5.0 §3.3): the hot path of the broker.
//!
//! ```text
//! fixed header     0x3, DUP | QoS (2 bits) | RETAIN, remaining length
//! variable header  topic name, packet id (QoS 1 and 2 only), properties (5.0)
//! payload          the rest of the packet
//! ```
//!
//! Decoding a 3.x PUBLISH allocates nothing: the topic and the payload are slices of the frame
//! (one reference count increment for the topic, the payload takes the frame itself). The fixed
//! header flags (QoS 3, DUP on QoS 0) are checked by the decoder before the body is buffered.
//!
//! Rules that depend on the direction or on negotiated limits are the session's: a client's
//! PUBLISH carries no subscription identifier [MQTT-3.3.4-6], a topic alias is at most the
//! Topic Alias Maximum [MQTT-3.3.2-9, MQTT-3.3.2-10], a payload marked UTF-8 may be checked.
//!
//! [`Publish::encode_header`] writes everything but the payload, so a broker encodes one small
//! header per subscriber and sends it with the shared payload in one vectored write.

use bytes::{BufMut, Bytes, BytesMut};

use crate::properties::PropertyPlace;
use crate::wire::{
    check_utf8, packet_len, put_fixed_header, put_string, read_binary, read_packet_id, string_len,
    varint_len,
};
use crate::{
    ByteStr, DecodeError, EncodeError, Packet, PacketId, PacketType, Properties, Protocol, QoS,
};

/// PUBLISH (MQTT 3.1.1 §3.3, MQTT 5.0 §3.3).
///
/// Topic and payload are [`Bytes`] slices of the read buffer they were decoded from.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Publish {
    /// DUP flag: a re-delivery.
    pub dup: bool,
    /// QoS.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic name; may be empty in MQTT 5 when a topic alias is set.
    pub topic: ByteStr,
    /// Packet id: `Some` exactly when `qos` is 1 or 2 [MQTT-2.3.1-5].
    pub packet_id: Option<PacketId>,
    /// MQTT 5 PUBLISH properties.
    pub properties: Properties,
    /// Application payload.
    pub payload: Bytes,
}

const PLACE: PropertyPlace = PropertyPlace::Packet(PacketType::Publish);

impl Publish {
    /// Decodes the body of a PUBLISH whose fixed header flags are `flags` (already checked for
    /// QoS 3 and, where it applies, DUP on QoS 0).
    ///
    /// It returns the decoder's own result type so the 472-byte packet is built once, in place:
    /// every wrapping (`Publish` into `Packet`, into `Ok(Some(_))`) would be a copy of it.
    #[inline]
    pub(crate) fn decode(
        flags: u8,
        mut buf: Bytes,
        protocol: Protocol,
    ) -> Result<Option<Packet>, DecodeError> {
        // QoS MUST NOT be 3 [MQTT-3.3.1-4]; checked again here so this never trusts its caller.
        let qos = QoS::from_u8((flags >> 1) & 0b11).ok_or(DecodeError::InvalidQoS)?;
        let topic = read_binary(&mut buf)?;
        // The packet id is present only for QoS 1 and 2 and is non-zero [MQTT-2.3.1-1,
        // MQTT-2.3.1-5].
        let packet_id = match qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce | QoS::ExactlyOnce => Some(read_packet_id(&mut buf)?),
        };
        let dup = flags & 0b1000 != 0;
        let retain = flags & 1 != 0;
        if protocol.is_v5() {
            let properties = Properties::decode(&mut buf, PLACE)?;
            if topic.is_empty() {
                // An empty topic name stands for the one its topic alias maps to; "It is a
                // Protocol Error if the Topic Name is zero length and there is no Topic Alias"
                // (MQTT 5.0 §3.3.2.3.4).
                if properties.topic_alias.is_none() {
                    return Err(DecodeError::ProtocolError(
                        "empty topic name without a topic alias",
                    ));
                }
            } else {
                check_topic(&topic)?;
            }
            return Ok(Some(Packet::Publish(Publish {
                dup,
                qos,
                retain,
                // SAFETY: `check_topic` verified that the topic is UTF-8, or it is empty.
                topic: unsafe { ByteStr::from_utf8_unchecked(topic) },
                packet_id,
                properties,
                payload: buf,
            })));
        }
        check_topic(&topic)?;
        Ok(Some(Packet::Publish(Publish {
            dup,
            qos,
            retain,
            // SAFETY: `check_topic` verified that the topic is UTF-8.
            topic: unsafe { ByteStr::from_utf8_unchecked(topic) },
            packet_id,
            properties: Properties::default(),
            payload: buf,
        })))
    }

    /// The header of this PUBLISH, borrowed.
    #[inline]
    pub fn header(&self) -> PublishHeader<'_> {
        PublishHeader {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
            topic: &self.topic,
            packet_id: self.packet_id,
            properties: &self.properties,
            payload_len: self.payload.len(),
        }
    }

    pub(crate) fn encoded_len(&self, protocol: Protocol) -> Result<usize, EncodeError> {
        let header = self.header();
        packet_len(header.layout(protocol)?.0 + self.payload.len())
    }

    #[inline]
    pub(crate) fn encode(&self, protocol: Protocol, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let header = self.header();
        let (len, properties) = header.layout(protocol)?;
        put_fixed_header(dst, header.first_byte(), len + self.payload.len())?;
        header.put_variable_header(protocol, properties, dst);
        dst.put_slice(&self.payload);
        Ok(())
    }

    /// Appends the fixed and variable header of this PUBLISH for `protocol` to `dst`, sized for
    /// `self.payload`, without the payload itself: a writer sends the header and then the shared
    /// payload `Bytes` in one vectored write.
    pub fn encode_header(&self, protocol: Protocol, dst: &mut BytesMut) -> Result<(), EncodeError> {
        self.header().encode(protocol, dst)
    }
}

/// Everything of a PUBLISH but its payload, borrowed: a broker encodes one per subscriber from
/// the message it shares, without building (and cloning the properties of) a whole [`Publish`].
#[derive(Clone, Copy, Debug)]
pub struct PublishHeader<'a> {
    /// DUP flag: a re-delivery.
    pub dup: bool,
    /// QoS.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic name.
    pub topic: &'a ByteStr,
    /// Packet id: `Some` exactly when `qos` is 1 or 2 [MQTT-2.3.1-5].
    pub packet_id: Option<PacketId>,
    /// MQTT 5 properties (ignored for 3.x).
    pub properties: &'a Properties,
    /// Length of the payload that follows the header on the wire.
    pub payload_len: usize,
}

impl PublishHeader<'_> {
    /// Appends the fixed and variable header to `dst`; the payload is the caller's to send.
    #[inline]
    pub fn encode(&self, protocol: Protocol, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let (header, properties) = self.layout(protocol)?;
        let remaining = header + self.payload_len;
        let total = packet_len(remaining)?;
        dst.reserve(total - self.payload_len);
        dst.put_u8(self.first_byte());
        crate::wire::put_varint(dst, remaining);
        self.put_variable_header(protocol, properties, dst);
        Ok(())
    }

    /// Length on the wire of the whole packet, payload included: what a client's MQTT 5
    /// Maximum Packet Size is compared with [MQTT-3.1.2-24].
    pub fn packet_len(&self, protocol: Protocol) -> Result<usize, EncodeError> {
        let (header, _) = self.layout(protocol)?;
        packet_len(header + self.payload_len)
    }

    fn first_byte(&self) -> u8 {
        (PacketType::Publish as u8) << 4
            | u8::from(self.dup) << 3
            | (self.qos as u8) << 1
            | u8::from(self.retain)
    }

    /// Length of the variable header and of the property block.
    #[inline]
    fn layout(&self, protocol: Protocol) -> Result<(usize, usize), EncodeError> {
        let mut len = string_len(self.topic.as_bytes())?;
        match (self.qos, self.packet_id) {
            (QoS::AtMostOnce, None) => {}
            (QoS::AtLeastOnce | QoS::ExactlyOnce, Some(_)) => len += 2,
            _ => return Err(EncodeError::PacketIdMismatch),
        }
        let mut properties = 0;
        if protocol.is_v5() {
            properties = self.properties.encoded_len(PLACE)?;
            len += varint_len(properties) + properties;
        }
        Ok((len, properties))
    }

    #[inline]
    fn put_variable_header(&self, protocol: Protocol, properties: usize, dst: &mut BytesMut) {
        put_string(dst, self.topic.as_bytes());
        if let Some(packet_id) = self.packet_id {
            dst.put_u16(packet_id.get());
        }
        if protocol.is_v5() {
            self.properties.encode(properties, dst);
        }
    }
}

/// Checks a PUBLISH topic name: a UTF-8 string [MQTT-3.3.2-1] without U+0000 [MQTT-1.5.3-2]
/// and without wildcards [MQTT-3.3.2-2], at least one byte long [MQTT-4.7.3-1].
#[inline]
fn check_topic(topic: &[u8]) -> Result<(), DecodeError> {
    if topic.is_empty() {
        return Err(DecodeError::InvalidTopicName);
    }
    // One branch-free pass over the usual short, all-ASCII topic; a non-ASCII or NUL byte sends
    // it to the full UTF-8 check.
    let (mut unusual, mut wildcards) = (false, false);
    for &byte in topic {
        unusual |= !byte.is_ascii() | (byte == 0);
        wildcards |= (byte == b'+') | (byte == b'#');
    }
    if unusual {
        check_utf8(topic)?;
    }
    if wildcards {
        return Err(DecodeError::InvalidTopicName);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::test_util::{decode_err, decode_one, encode_bytes};
    use crate::*;
    use bytes::{Bytes, BytesMut};

    fn publish(qos: QoS, packet_id: u16) -> Publish {
        Publish {
            qos,
            topic: "a/b".into(),
            packet_id: PacketId::new(packet_id),
            payload: Bytes::from_static(b"hi"),
            ..Publish::default()
        }
    }

    #[test]
    fn v311_literal() {
        let bytes: &[u8] = b"\x30\x07\x00\x03a/bhi";
        let packet = Packet::Publish(publish(QoS::AtMostOnce, 0));
        assert_eq!(decode_one(Some(Protocol::V311), bytes), packet);
        assert_eq!(encode_bytes(&packet, Protocol::V311), bytes);
        let bytes: &[u8] = b"\x3d\x09\x00\x03a/b\x00\x07hi";
        let packet = Packet::Publish(Publish {
            dup: true,
            retain: true,
            ..publish(QoS::ExactlyOnce, 7)
        });
        assert_eq!(decode_one(Some(Protocol::V311), bytes), packet);
        assert_eq!(encode_bytes(&packet, Protocol::V311), bytes);
        // An empty payload.
        let packet = Packet::Publish(Publish {
            payload: Bytes::new(),
            ..publish(QoS::AtLeastOnce, 1)
        });
        let bytes: &[u8] = b"\x32\x07\x00\x03a/b\x00\x01";
        assert_eq!(decode_one(Some(Protocol::V311), bytes), packet);
        assert_eq!(encode_bytes(&packet, Protocol::V311), bytes);
    }

    #[test]
    fn v500_literal() {
        let bytes: &[u8] = b"\x32\x0d\x00\x03a/b\x00\x01\x03\x23\x00\x05hi";
        let packet = Packet::Publish(Publish {
            properties: Properties::from(PropertyValues {
                topic_alias: Some(5),
                ..PropertyValues::default()
            }),
            ..publish(QoS::AtLeastOnce, 1)
        });
        assert_eq!(decode_one(Some(Protocol::V500), bytes), packet);
        assert_eq!(encode_bytes(&packet, Protocol::V500), bytes);
        // No properties, an empty topic with a topic alias, several subscription identifiers.
        let bytes: &[u8] = b"\x30\x06\x00\x03a/b\x00";
        let packet = Packet::Publish(Publish {
            payload: Bytes::new(),
            ..publish(QoS::AtMostOnce, 0)
        });
        assert_eq!(decode_one(Some(Protocol::V500), bytes), packet);
        assert_eq!(encode_bytes(&packet, Protocol::V500), bytes);
        let bytes: &[u8] = b"\x30\x0d\x00\x00\x08\x0b\x01\x0b\x80\x01\x23\x00\x01hi";
        let packet = Packet::Publish(Publish {
            topic: ByteStr::default(),
            properties: Properties::from(PropertyValues {
                subscription_identifiers: vec![1, 128],
                topic_alias: Some(1),
                ..PropertyValues::default()
            }),
            ..publish(QoS::AtMostOnce, 0)
        });
        assert_eq!(decode_one(Some(Protocol::V500), bytes), packet);
        assert_eq!(encode_bytes(&packet, Protocol::V500), bytes);
    }

    #[test]
    fn zero_copy() {
        let mut buf = BytesMut::from(&b"\x30\x07\x00\x03a/bhi"[..]);
        let start = buf.as_ptr() as usize;
        let Some(Packet::Publish(publish)) = Decoder::with_protocol(1024, Protocol::V311)
            .decode(&mut buf)
            .unwrap()
        else {
            panic!("not a publish");
        };
        assert_eq!(publish.topic.as_ptr() as usize, start + 4);
        assert_eq!(publish.payload.as_ptr() as usize, start + 7);
    }

    #[test]
    fn encode_header_leaves_out_payload() {
        for protocol in [Protocol::V311, Protocol::V500] {
            let publish = Publish {
                properties: if protocol.is_v5() {
                    Properties::from(PropertyValues {
                        message_expiry_interval: Some(9),
                        ..PropertyValues::default()
                    })
                } else {
                    Properties::default()
                },
                payload: Bytes::from(vec![7; 300]),
                ..publish(QoS::AtLeastOnce, 3)
            };
            let mut header = BytesMut::new();
            publish.encode_header(protocol, &mut header).unwrap();
            let mut whole = BytesMut::new();
            encode(&Packet::Publish(publish.clone()), protocol, &mut whole).unwrap();
            assert_eq!(&whole[..header.len()], &header[..]);
            assert_eq!(&whole[header.len()..], &publish.payload[..]);
        }
    }

    #[test]
    fn flags() {
        // QoS 3 [MQTT-3.3.1-4], rejected from the first byte alone.
        for protocol in [Protocol::V310, Protocol::V311, Protocol::V500] {
            let err = decode_err(Some(protocol), b"\x36");
            assert_eq!(err, DecodeError::InvalidQoS);
            assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
        }
        // DUP on QoS 0 [MQTT-3.3.1-2].
        for protocol in [Protocol::V311, Protocol::V500] {
            let err = decode_err(Some(protocol), b"\x38\x07\x00\x03a/bhi");
            assert_eq!(
                err,
                DecodeError::InvalidFlags {
                    packet_type: 3,
                    flags: 0b1000
                }
            );
            assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
        }
        // MQTT 3.1 does not forbid it.
        let Packet::Publish(publish) = decode_one(Some(Protocol::V310), b"\x38\x07\x00\x03a/bhi")
        else {
            panic!()
        };
        assert!(publish.dup);
    }

    #[test]
    fn invalid() {
        let v311 = Some(Protocol::V311);
        let v500 = Some(Protocol::V500);
        // Packet id 0 [MQTT-2.3.1-1].
        let err = decode_err(v311, b"\x32\x07\x00\x03a/b\x00\x00");
        assert_eq!(err, DecodeError::ZeroPacketId);
        assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
        // Wildcards [MQTT-3.3.2-2].
        for topic in [&b"a/+"[..], b"a/#", b"#", b"+"] {
            let mut bytes = vec![0x30, 2 + topic.len() as u8, 0, topic.len() as u8];
            bytes.extend_from_slice(topic);
            let err = decode_err(v311, &bytes);
            assert_eq!(err, DecodeError::InvalidTopicName);
            assert_eq!(err.reason_code(), ReasonCode::TopicNameInvalid);
        }
        // U+0000 and ill-formed UTF-8 [MQTT-1.5.3-1, MQTT-1.5.3-2].
        let err = decode_err(v311, b"\x30\x05\x00\x03a\x00b");
        assert_eq!(err, DecodeError::InvalidUtf8);
        let err = decode_err(v311, b"\x30\x05\x00\x03a\xffb");
        assert_eq!(err, DecodeError::InvalidUtf8);
        let err = decode_err(v311, b"\x30\x05\x00\x03\xed\xa0\x80");
        assert_eq!(err, DecodeError::InvalidUtf8);
        assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
        // Empty topic: invalid in 3.1.1 [MQTT-4.7.3-1], a Protocol Error without an alias in 5.0.
        let err = decode_err(v311, b"\x30\x04\x00\x00hi");
        assert_eq!(err, DecodeError::InvalidTopicName);
        let err = decode_err(v500, b"\x30\x05\x00\x00\x00hi");
        assert_eq!(
            err,
            DecodeError::ProtocolError("empty topic name without a topic alias")
        );
        assert_eq!(err.reason_code(), ReasonCode::ProtocolError);
        // Topic length past the end.
        let err = decode_err(v311, b"\x30\x03\x00\x03a");
        assert_eq!(err, DecodeError::Malformed("packet ends inside a field"));
        // Topic alias 0 [MQTT-3.3.2-8].
        let err = decode_err(v500, b"\x30\x09\x00\x03a/b\x03\x23\x00\x00");
        assert_eq!(err, DecodeError::InvalidPropertyValue(0x23));
        assert_eq!(err.reason_code(), ReasonCode::TopicAliasInvalid);
        // Subscription identifier 0 (§3.3.2.3.8).
        let err = decode_err(v500, b"\x30\x08\x00\x03a/b\x02\x0b\x00");
        assert_eq!(err, DecodeError::InvalidPropertyValue(0x0b));
        assert_eq!(err.reason_code(), ReasonCode::ProtocolError);
        // Duplicate message expiry interval.
        let err = decode_err(
            v500,
            b"\x30\x10\x00\x03a/b\x0a\x02\x00\x00\x00\x01\x02\x00\x00\x00\x01",
        );
        assert_eq!(err, DecodeError::DuplicateProperty(0x02));
        assert_eq!(err.reason_code(), ReasonCode::ProtocolError);
        // Session expiry interval is not a PUBLISH property.
        let err = decode_err(v500, b"\x30\x0b\x00\x03a/b\x05\x11\x00\x00\x00\x01");
        assert_eq!(err, DecodeError::PropertyNotAllowed(0x11));
        // Payload format indicator 2.
        let err = decode_err(v500, b"\x30\x08\x00\x03a/b\x02\x01\x02");
        assert_eq!(err, DecodeError::InvalidPropertyValue(0x01));
        // Response topic with a wildcard [MQTT-3.3.2-14].
        let err = decode_err(v500, b"\x30\x0b\x00\x03a/b\x05\x08\x00\x02a#");
        assert_eq!(err, DecodeError::InvalidPropertyValue(0x08));
        // A subscription identifier longer than 4 bytes.
        let err = decode_err(v500, b"\x30\x0c\x00\x03a/b\x06\x0b\xff\xff\xff\xff\x01");
        assert_eq!(err, DecodeError::Malformed("invalid variable byte integer"));
    }

    proptest::proptest! {
        /// The single-pass topic check agrees with the plain one.
        #[test]
        fn topic_check_matches_naive(
            topic in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::prelude::Just(b'a'),
                    proptest::prelude::Just(b'/'),
                    proptest::prelude::Just(b'+'),
                    proptest::prelude::Just(b'#'),
                    proptest::prelude::Just(0u8),
                    proptest::prelude::any::<u8>(),
                ],
                0..40,
            )
        ) {
            let naive = if topic.is_empty() {
                Err(DecodeError::InvalidTopicName)
            } else {
                crate::wire::check_utf8(&topic).and_then(|()| {
                    if topic.contains(&b'+') || topic.contains(&b'#') {
                        Err(DecodeError::InvalidTopicName)
                    } else {
                        Ok(())
                    }
                })
            };
            proptest::prop_assert_eq!(super::check_topic(&topic), naive);
        }
    }

    #[test]
    fn encode_errors() {
        let mut dst = BytesMut::new();
        let mismatched = Packet::Publish(publish(QoS::AtLeastOnce, 0));
        assert_eq!(
            encode(&mismatched, Protocol::V311, &mut dst),
            Err(EncodeError::PacketIdMismatch)
        );
        let mismatched = Packet::Publish(publish(QoS::AtMostOnce, 1));
        assert_eq!(
            encode(&mismatched, Protocol::V311, &mut dst),
            Err(EncodeError::PacketIdMismatch)
        );
        let long_topic = Packet::Publish(Publish {
            topic: ByteStr::from("t".repeat(65_536)),
            ..publish(QoS::AtMostOnce, 0)
        });
        assert_eq!(
            encode(&long_topic, Protocol::V311, &mut dst),
            Err(EncodeError::TooLarge)
        );
        // The largest remaining length is 268,435,455 bytes.
        let max_payload = 268_435_455 - 5;
        let largest = Publish {
            payload: Bytes::from(vec![0; max_payload]),
            ..publish(QoS::AtMostOnce, 0)
        };
        assert_eq!(
            encoded_len(&Packet::Publish(largest.clone()), Protocol::V311),
            Ok(268_435_460)
        );
        let too_large = Publish {
            payload: Bytes::from(vec![0; max_payload + 1]),
            ..largest
        };
        assert_eq!(
            encoded_len(&Packet::Publish(too_large.clone()), Protocol::V311),
            Err(EncodeError::TooLarge)
        );
        assert_eq!(
            too_large.encode_header(Protocol::V311, &mut dst),
            Err(EncodeError::TooLarge)
        );
        assert!(dst.is_empty());
        let wrong_property = Packet::Publish(Publish {
            properties: Properties::from(PropertyValues {
                receive_maximum: Some(1),
                ..PropertyValues::default()
            }),
            ..publish(QoS::AtMostOnce, 0)
        });
        assert_eq!(
            encode(&wrong_property, Protocol::V500, &mut dst),
            Err(EncodeError::PropertyNotAllowed(0x21))
        );
        // 3.x has no properties: they are left out.
        assert!(encode(&wrong_property, Protocol::V311, &mut dst).is_ok());
    }
}
