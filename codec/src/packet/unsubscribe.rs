//! UNSUBSCRIBE (MQTT 3.1 §3.10, 3.1.1 §3.10, 5.0 §3.10).
//!
//! ```text
//! fixed header     0xA2 (flags MUST be 0b0010 [MQTT-3.10.1-1])
//! variable header  packet id, properties (5.0)
//! payload          one or more topic filters
//! ```
//!
//! Unlike SUBSCRIBE, an invalid filter here is an error ([`DecodeError::InvalidTopicFilter`]):
//! 3.x UNSUBACK has no per-filter code to refuse it with, and no subscription can exist for it.

use bytes::{BufMut, Bytes, BytesMut};

use crate::properties::PropertyPlace;
use crate::wire::{
    finish, packet_len, put_fixed_header, put_string, read_packet_id, read_string, string_len,
    varint_len,
};
use crate::{topic, ByteStr, DecodeError, EncodeError, PacketId, PacketType, Properties, Protocol};

/// UNSUBSCRIBE (MQTT 3.1.1 §3.10, MQTT 5.0 §3.10).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Unsubscribe {
    /// Packet id.
    pub packet_id: PacketId,
    /// Filters, at least one [MQTT-3.10.3-2].
    pub filters: Vec<ByteStr>,
    /// MQTT 5 properties (user properties).
    pub properties: Properties,
}

const PLACE: PropertyPlace = PropertyPlace::Packet(PacketType::Unsubscribe);

impl Unsubscribe {
    pub(crate) fn decode(mut buf: Bytes, protocol: Protocol) -> Result<Unsubscribe, DecodeError> {
        // A non-zero packet id [MQTT-2.3.1-1].
        let packet_id = read_packet_id(&mut buf)?;
        let properties = if protocol.is_v5() {
            Properties::decode(&mut buf, PLACE)?
        } else {
            Properties::default()
        };
        let mut filters = Vec::with_capacity(super::subscribe::count_entries(&buf, 0));
        while !buf.is_empty() {
            // Topic filters are UTF-8 strings [MQTT-3.10.3-1] and valid filters: at least one
            // byte [MQTT-4.7.3-1], wildcards only as whole levels [MQTT-4.7.1-2, MQTT-4.7.1-3].
            let filter = read_string(&mut buf)?;
            if !topic::valid_filter(&filter) {
                return Err(DecodeError::InvalidTopicFilter);
            }
            filters.push(filter);
        }
        // At least one filter [MQTT-3.10.3-2].
        if filters.is_empty() {
            return Err(DecodeError::NoTopicFilter);
        }
        finish(&buf)?;
        Ok(Unsubscribe {
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
            len += string_len(filter.as_bytes())?;
        }
        Ok((len, properties))
    }

    pub(crate) fn encoded_len(&self, protocol: Protocol) -> Result<usize, EncodeError> {
        packet_len(self.layout(protocol)?.0)
    }

    pub(crate) fn encode(&self, protocol: Protocol, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let (remaining, properties) = self.layout(protocol)?;
        put_fixed_header(
            dst,
            (PacketType::Unsubscribe as u8) << 4 | 0b0010,
            remaining,
        )?;
        dst.put_u16(self.packet_id.get());
        if protocol.is_v5() {
            self.properties.encode(properties, dst);
        }
        for filter in &self.filters {
            put_string(dst, filter.as_bytes());
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
        let bytes: &[u8] = b"\xa2\x0c\x00\x05\x00\x03a/b\x00\x03c/+";
        let packet = Packet::Unsubscribe(Unsubscribe {
            packet_id: id(5),
            filters: vec!["a/b".into(), "c/+".into()],
            properties: Properties::default(),
        });
        assert_eq!(decode_one(Some(Protocol::V311), bytes), packet);
        assert_eq!(encode_bytes(&packet, Protocol::V311), bytes);
    }

    #[test]
    fn v500_literal() {
        let bytes: &[u8] = b"\xa2\x0d\x00\x05\x07\x26\x00\x01k\x00\x01v\x00\x01#";
        let packet = Packet::Unsubscribe(Unsubscribe {
            packet_id: id(5),
            filters: vec!["#".into()],
            properties: Properties::from(PropertyValues {
                user: vec![("k".into(), "v".into())],
                ..PropertyValues::default()
            }),
        });
        assert_eq!(decode_one(Some(Protocol::V500), bytes), packet);
        assert_eq!(encode_bytes(&packet, Protocol::V500), bytes);
    }

    #[test]
    fn invalid() {
        let v311 = Some(Protocol::V311);
        let err = decode_err(v311, b"\xa2\x07\x00\x05\x00\x03a#b");
        assert_eq!(err, DecodeError::InvalidTopicFilter);
        assert_eq!(err.reason_code(), ReasonCode::TopicFilterInvalid);
        let err = decode_err(v311, b"\xa2\x04\x00\x05\x00\x00");
        assert_eq!(err, DecodeError::InvalidTopicFilter);
        let err = decode_err(v311, b"\xa2\x02\x00\x05");
        assert_eq!(err, DecodeError::NoTopicFilter);
        assert_eq!(err.reason_code(), ReasonCode::ProtocolError);
        let err = decode_err(v311, b"\xa0\x05\x00\x05\x00\x01a");
        assert_eq!(
            err,
            DecodeError::InvalidFlags {
                packet_type: 10,
                flags: 0
            }
        );
        let err = decode_err(v311, b"\xa2\x05\x00\x00\x00\x01a");
        assert_eq!(err, DecodeError::ZeroPacketId);
        // Subscription identifiers belong to SUBSCRIBE only.
        let err = decode_err(
            Some(Protocol::V500),
            b"\xa2\x08\x00\x05\x02\x0b\x01\x00\x01a",
        );
        assert_eq!(err, DecodeError::PropertyNotAllowed(0x0b));
    }
}
