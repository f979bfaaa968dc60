//! SUBSCRIBE (MQTT 3.1 §3.8, 3.1.1 §3.8, 5.0 §3.8) and its subscription options.
//!
//! ```text
//! fixed header     0x82 (flags MUST be 0b0010 [MQTT-3.8.1-1])
//! variable header  packet id, properties (5.0)
//! payload          one or more of: topic filter, options byte
//! options byte     3.x:  7-2 reserved | 1-0 QoS
//!                  5.0:  7-6 reserved | 5-4 retain handling | 3 retain as published
//!                        | 2 no local | 1-0 QoS
//! ```
//!
//! Filters that are well-formed strings but not valid filters (`a/#/b`, `""`) are kept: the
//! broker answers each with a failure code in SUBACK (0x80, or 0x8F in MQTT 5) rather than
//! closing the connection. A malformed packet (bad UTF-8, reserved option bits, QoS 3) is an
//! error, as is a SUBSCRIBE without filters.

use bytes::{BufMut, Bytes, BytesMut};

use crate::properties::PropertyPlace;
use crate::wire::{
    finish, packet_len, put_fixed_header, put_string, read_packet_id, read_string, read_u8,
    string_len, varint_len,
};
use crate::{ByteStr, DecodeError, EncodeError, PacketId, PacketType, Properties, Protocol, QoS};

/// Retain handling subscription option (MQTT 5.0 §3.8.3.1).
#[derive(Clone, Copy, Debug, Default, Eq, Hash, PartialEq)]
#[repr(u8)]
pub enum RetainHandling {
    /// Send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// Send retained messages only if the subscription did not already exist.
    SendIfNew = 1,
    /// Do not send retained messages.
    DoNotSend = 2,
}

/// Subscription options byte (MQTT 5.0 §3.8.3.1); for 3.1.1 only `qos` is on the wire.
#[derive(Clone, Copy, Debug, Default, Eq, Hash, PartialEq)]
pub struct SubscriptionOptions {
    /// Maximum QoS.
    pub qos: QoS,
    /// No Local: do not deliver this client's own publications to it.
    pub no_local: bool,
    /// Retain As Published: keep the RETAIN flag on forwarded messages.
    pub retain_as_published: bool,
    /// Retain handling.
    pub retain_handling: RetainHandling,
}

/// One topic filter of a SUBSCRIBE.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct SubscribeFilter {
    /// The topic filter: a UTF-8 string, not necessarily a valid filter (see [`Subscribe`]).
    pub filter: ByteStr,
    /// Options.
    pub options: SubscriptionOptions,
}

/// SUBSCRIBE (MQTT 3.1.1 §3.8, MQTT 5.0 §3.8).
///
/// The decoder keeps syntactically invalid filters (a broker answers them with 0x80 / 0x8F in
/// SUBACK rather than closing the connection); [`crate::topic::valid_filter`] tells them apart.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Subscribe {
    /// Packet id.
    pub packet_id: PacketId,
    /// Filters, at least one [MQTT-3.8.3-3].
    pub filters: Vec<SubscribeFilter>,
    /// MQTT 5 properties (subscription identifier, user properties).
    pub properties: Properties,
}

const PLACE: PropertyPlace = PropertyPlace::Packet(PacketType::Subscribe);

impl SubscriptionOptions {
    /// Decodes an options byte for `protocol`.
    fn decode(byte: u8, protocol: Protocol) -> Result<SubscriptionOptions, DecodeError> {
        // Reserved bits MUST be 0: 7-2 in 3.1.1 [MQTT-3.8.3-4], 7-6 in 5.0 [MQTT-3.8.3-5].
        let reserved = if protocol.is_v5() {
            0b1100_0000
        } else {
            0b1111_1100
        };
        if byte & reserved != 0 {
            return Err(DecodeError::Malformed(
                "reserved subscription option bits set",
            ));
        }
        // QoS 3 is malformed in 3.1.1 [MQTT-3.8.3-4] and a Protocol Error in 5.0 (§3.8.3.1).
        let qos = QoS::from_u8(byte & 0b11).ok_or(DecodeError::InvalidQoS)?;
        let retain_handling = match (byte >> 4) & 0b11 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            // "It is a Protocol Error to send a Retain Handling value of 3" (§3.8.3.1).
            _ => return Err(DecodeError::ProtocolError("retain handling 3")),
        };
        Ok(SubscriptionOptions {
            qos,
            no_local: byte & 0b0100 != 0,
            retain_as_published: byte & 0b1000 != 0,
            retain_handling,
        })
    }

    /// The options byte for `protocol`.
    fn to_byte(self, protocol: Protocol) -> u8 {
        let mut byte = self.qos as u8;
        if protocol.is_v5() {
            byte |= u8::from(self.no_local) << 2
                | u8::from(self.retain_as_published) << 3
                | (self.retain_handling as u8) << 4;
        }
        byte
    }
}

/// The number of `string, then extra bytes` entries `buf` appears to hold, counted by their
/// length prefixes alone, so the filter list is allocated once (a malformed tail only makes the
/// estimate short; the parse that follows reports it).
pub(crate) fn count_entries(buf: &[u8], extra: usize) -> usize {
    let (mut count, mut at) = (0, 0);
    while let Some(prefix) = buf.get(at..at + 2) {
        at += 2 + usize::from(u16::from_be_bytes([prefix[0], prefix[1]])) + extra;
        count += 1;
    }
    count
}

impl Subscribe {
    pub(crate) fn decode(mut buf: Bytes, protocol: Protocol) -> Result<Subscribe, DecodeError> {
        // A non-zero packet id [MQTT-2.3.1-1].
        let packet_id = read_packet_id(&mut buf)?;
        let properties = if protocol.is_v5() {
            Properties::decode(&mut buf, PLACE)?
        } else {
            Properties::default()
        };
        let mut filters = Vec::with_capacity(count_entries(&buf, 1));
        while !buf.is_empty() {
            // Topic filters are UTF-8 strings [MQTT-3.8.3-1].
            let filter = read_string(&mut buf)?;
            let options = SubscriptionOptions::decode(read_u8(&mut buf)?, protocol)?;
            // "It is a Protocol Error to set the No Local bit to 1 on a Shared Subscription"
            // [MQTT-3.8.3-4] (5.0).
            if options.no_local && filter.starts_with("$share/") {
                return Err(DecodeError::ProtocolError(
                    "no local on a shared subscription",
                ));
            }
            filters.push(SubscribeFilter { filter, options });
        }
        // At least one filter (3.1.1 [MQTT-3.8.3-3], 5.0 [MQTT-3.8.3-2]).
        if filters.is_empty() {
            return Err(DecodeError::NoTopicFilter);
        }
        finish(&buf)?;
        Ok(Subscribe {
            packet_id,
            filters,
            properties,
        })
    }

    fn layout(&self, protocol: Protocol) -> Result<(usize, usize), EncodeError> {
        let mut len = 2;
        let mut properties = 0;
        if protocol.is_v5() {
            properties = self.properties.encoded_len(PLACE)?;
            len += varint_len(properties) + properties;
        }
        for filter in &self.filters {
            len += string_len(filter.filter.as_bytes())? + 1;
        }
        Ok((len, properties))
    }

    pub(crate) fn encoded_len(&self, protocol: Protocol) -> Result<usize, EncodeError> {
        packet_len(self.layout(protocol)?.0)
    }

    pub(crate) fn encode(&self, protocol: Protocol, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let (remaining, properties) = self.layout(protocol)?;
        put_fixed_header(dst, (PacketType::Subscribe as u8) << 4 | 0b0010, remaining)?;
        dst.put_u16(self.packet_id.get());
        if protocol.is_v5() {
            self.properties.encode(properties, dst);
        }
        for filter in &self.filters {
            put_string(dst, filter.filter.as_bytes());
            dst.put_u8(filter.options.to_byte(protocol));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::test_util::{decode_err, decode_one, encode_bytes, id};
    use crate::*;

    fn filter(filter: &str, qos: QoS) -> SubscribeFilter {
        SubscribeFilter {
            filter: filter.into(),
            options: SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            },
        }
    }

    #[test]
    fn v311_literal() {
        let bytes: &[u8] = b"\x82\x0e\x00\x0a\x00\x03a/b\x01\x00\x03c/#\x02";
        let packet = Packet::Subscribe(Subscribe {
            packet_id: id(10),
            filters: vec![
                filter("a/b", QoS::AtLeastOnce),
                filter("c/#", QoS::ExactlyOnce),
            ],
            properties: Properties::default(),
        });
        assert_eq!(decode_one(Some(Protocol::V311), bytes), packet);
        assert_eq!(encode_bytes(&packet, Protocol::V311), bytes);
        assert_eq!(decode_one(Some(Protocol::V310), bytes), packet);
    }

    #[test]
    fn v500_literal() {
        let bytes: &[u8] = b"\x82\x0b\x00\x0a\x02\x0b\x07\x00\x03a/b\x2d";
        let packet = Packet::Subscribe(Subscribe {
            packet_id: id(10),
            filters: vec![SubscribeFilter {
                filter: "a/b".into(),
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
            }],
            properties: Properties::from(PropertyValues {
                subscription_identifiers: vec![7],
                ..PropertyValues::default()
            }),
        });
        assert_eq!(decode_one(Some(Protocol::V500), bytes), packet);
        assert_eq!(encode_bytes(&packet, Protocol::V500), bytes);
    }

    #[test]
    fn invalid_filters_are_kept() {
        let bytes: &[u8] = b"\x82\x0d\x00\x01\x00\x05a/#/b\x00\x00\x00\x00";
        let packet = Packet::Subscribe(Subscribe {
            packet_id: id(1),
            filters: vec![
                filter("a/#/b", QoS::AtMostOnce),
                filter("", QoS::AtMostOnce),
            ],
            properties: Properties::default(),
        });
        assert_eq!(decode_one(Some(Protocol::V311), bytes), packet);
    }

    #[test]
    fn invalid() {
        let v311 = Some(Protocol::V311);
        let v500 = Some(Protocol::V500);
        // Flags MUST be 0b0010 [MQTT-3.8.1-1].
        let err = decode_err(v311, b"\x80\x08\x00\x01\x00\x03a/b\x00");
        assert_eq!(
            err,
            DecodeError::InvalidFlags {
                packet_type: 8,
                flags: 0
            }
        );
        assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
        // No filters [MQTT-3.8.3-3].
        let err = decode_err(v311, b"\x82\x02\x00\x01");
        assert_eq!(err, DecodeError::NoTopicFilter);
        assert_eq!(err.reason_code(), ReasonCode::ProtocolError);
        let err = decode_err(v500, b"\x82\x03\x00\x01\x00");
        assert_eq!(err, DecodeError::NoTopicFilter);
        // Packet id 0.
        let err = decode_err(v311, b"\x82\x08\x00\x00\x00\x03a/b\x00");
        assert_eq!(err, DecodeError::ZeroPacketId);
        // Reserved option bits [MQTT-3.8.3-4] (3.1.1: bits 7-2, 5.0: bits 7-6).
        let err = decode_err(v311, b"\x82\x08\x00\x01\x00\x03a/b\x04");
        assert_eq!(
            err,
            DecodeError::Malformed("reserved subscription option bits set")
        );
        assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
        let err = decode_err(v500, b"\x82\x09\x00\x01\x00\x00\x03a/b\x40");
        assert_eq!(
            err,
            DecodeError::Malformed("reserved subscription option bits set")
        );
        // QoS 3.
        let err = decode_err(v311, b"\x82\x08\x00\x01\x00\x03a/b\x03");
        assert_eq!(err, DecodeError::InvalidQoS);
        assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
        // Retain handling 3.
        let err = decode_err(v500, b"\x82\x09\x00\x01\x00\x00\x03a/b\x30");
        assert_eq!(err, DecodeError::ProtocolError("retain handling 3"));
        assert_eq!(err.reason_code(), ReasonCode::ProtocolError);
        // No Local on a shared subscription.
        let err = decode_err(v500, b"\x82\x0e\x00\x01\x00\x00\x08$share/g\x04");
        assert_eq!(
            err,
            DecodeError::ProtocolError("no local on a shared subscription")
        );
        // A filter without its options byte.
        let err = decode_err(v311, b"\x82\x07\x00\x01\x00\x03a/b");
        assert_eq!(err, DecodeError::Malformed("packet ends inside a field"));
        // Bad UTF-8 in a filter closes the connection.
        let err = decode_err(v311, b"\x82\x06\x00\x01\x00\x01\xff\x00");
        assert_eq!(err, DecodeError::InvalidUtf8);
        // Two subscription identifiers (§3.8.2.1.2).
        let err = decode_err(v500, b"\x82\x0b\x00\x01\x04\x0b\x01\x0b\x02\x00\x01a\x00");
        assert_eq!(err, DecodeError::DuplicateProperty(0x0b));
        assert_eq!(err.reason_code(), ReasonCode::ProtocolError);
        // Subscription identifier 0.
        let err = decode_err(v500, b"\x82\x09\x00\x01\x02\x0b\x00\x00\x01a\x00");
        assert_eq!(err, DecodeError::InvalidPropertyValue(0x0b));
        assert_eq!(err.reason_code(), ReasonCode::ProtocolError);
        // Topic alias is not a SUBSCRIBE property.
        let err = decode_err(v500, b"\x82\x0a\x00\x01\x03\x23\x00\x01\x00\x01a\x00");
        assert_eq!(err, DecodeError::PropertyNotAllowed(0x23));
    }
}
