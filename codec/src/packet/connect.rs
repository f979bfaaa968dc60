//! CONNECT (MQTT 3.1 §3.1, 3.1.1 §3.1, 5.0 §3.1) and its will message.
//!
//! ```text
//! variable header  protocol name   "MQIsdp" (3.1) | "MQTT" (3.1.1, 5.0)
//!                  protocol level  3 | 4 | 5
//!                  connect flags   7 user name | 6 password | 5 will retain | 4-3 will QoS
//!                                  | 2 will | 1 clean start | 0 reserved
//!                  keep alive      u16
//!                  properties      (5.0)
//! payload          client id, [will properties (5.0), will topic, will payload],
//!                  [user name], [password]
//! ```
//!
//! CONNECT carries its own level, so decoding it needs none and encoding uses
//! [`Connect::protocol`] whatever level the caller names. An unknown protocol name is
//! [`DecodeError::InvalidProtocolName`] and a known name with an unknown level is
//! [`DecodeError::UnsupportedProtocolLevel`], so the broker can answer the latter with CONNACK
//! return code 1 (0x84 in MQTT 5) [MQTT-3.1.2-2]. Client id rules (length, characters, empty id
//! with a persistent session) are the broker's: the codec only checks that it is a string.

use bytes::{BufMut, Bytes, BytesMut};

use crate::properties::PropertyPlace;
use crate::wire::{
    finish, packet_len, put_fixed_header, put_string, read_binary, read_string, read_u16, read_u8,
    string_len, varint_len,
};
use crate::{topic, ByteStr, DecodeError, EncodeError, PacketType, Properties, Protocol, QoS};

/// The will message of a CONNECT.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct LastWill {
    /// Topic the will is published to (a valid topic name).
    pub topic: ByteStr,
    /// Payload.
    pub payload: Bytes,
    /// QoS of the will publication.
    pub qos: QoS,
    /// Whether the will is retained.
    pub retain: bool,
    /// MQTT 5 will properties (will delay interval, message expiry, content type, ...).
    pub properties: Properties,
}

/// CONNECT (MQTT 3.1.1 §3.1, MQTT 5.0 §3.1).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Connect {
    /// Protocol level (and so name) requested.
    pub protocol: Protocol,
    /// Clean Session (3.1.1) / Clean Start (5.0).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 disables it.
    pub keep_alive: u16,
    /// Client identifier; may be empty (the server then assigns one, or refuses).
    pub client_id: ByteStr,
    /// Will message, if the will flag is set.
    pub will: Option<LastWill>,
    /// User name, if the flag is set.
    pub username: Option<ByteStr>,
    /// Password (binary data), if the flag is set.
    pub password: Option<Bytes>,
    /// MQTT 5 CONNECT properties.
    pub properties: Properties,
}

const USERNAME: u8 = 0x80;
const PASSWORD: u8 = 0x40;
const WILL_RETAIN: u8 = 0x20;
const WILL: u8 = 0x04;
const CLEAN_START: u8 = 0x02;
const RESERVED: u8 = 0x01;

impl Connect {
    /// Decodes the body of a CONNECT whose fixed header flags are `flags`.
    pub(crate) fn decode(flags: u8, mut buf: Bytes) -> Result<Connect, DecodeError> {
        let name = read_binary(&mut buf)?;
        let level = read_u8(&mut buf)?;
        // The protocol name and level [MQTT-3.1.2-1, MQTT-3.1.2-2].
        let protocol = match (&name[..], level) {
            (b"MQTT", 4) => Protocol::V311,
            (b"MQTT", 5) => Protocol::V500,
            (b"MQIsdp", 3) => Protocol::V310,
            (b"MQTT" | b"MQIsdp", level) => {
                return Err(DecodeError::UnsupportedProtocolLevel(level));
            }
            _ => return Err(DecodeError::InvalidProtocolName),
        };
        let strict = protocol != Protocol::V310;
        // Reserved fixed header flags [MQTT-2.2.2-1] (5.0 [MQTT-2.1.3-1]); MQTT 3.1 defines
        // DUP/QoS/RETAIN bits in every fixed header and says nothing of CONNECT's.
        if strict && flags != 0 {
            return Err(DecodeError::InvalidFlags {
                packet_type: PacketType::Connect as u8,
                flags,
            });
        }
        let connect_flags = read_u8(&mut buf)?;
        // The reserved flag MUST be 0 [MQTT-3.1.2-3]; 3.1 leaves the bit unused.
        if strict && connect_flags & RESERVED != 0 {
            return Err(DecodeError::InvalidConnectFlags("reserved flag set"));
        }
        let has_will = connect_flags & WILL != 0;
        let will_retain = connect_flags & WILL_RETAIN != 0;
        let will_qos_bits = (connect_flags >> 3) & 0b11;
        // Will QoS MUST NOT be 3 (3.1.1 [MQTT-3.1.2-14], 5.0 [MQTT-3.1.2-12]).
        let will_qos = QoS::from_u8(will_qos_bits).ok_or(DecodeError::InvalidQoS)?;
        // Without the will flag, will QoS and will retain MUST be 0 (3.1.1 [MQTT-3.1.2-11,
        // MQTT-3.1.2-13, MQTT-3.1.2-15], 5.0 [MQTT-3.1.2-11, MQTT-3.1.2-13]).
        if !has_will && (will_qos_bits != 0 || will_retain) {
            return Err(DecodeError::InvalidConnectFlags(
                "will QoS or retain without a will",
            ));
        }
        let has_username = connect_flags & USERNAME != 0;
        let has_password = connect_flags & PASSWORD != 0;
        // Without a user name there is no password [MQTT-3.1.2-22]; MQTT 5 lifts this rule.
        if !protocol.is_v5() && has_password && !has_username {
            return Err(DecodeError::InvalidConnectFlags(
                "password without a user name",
            ));
        }
        let keep_alive = read_u16(&mut buf)?;
        let properties = if protocol.is_v5() {
            Properties::decode(&mut buf, PropertyPlace::Packet(PacketType::Connect))?
        } else {
            Properties::default()
        };
        // The client id is the first field of the payload and a UTF-8 string [MQTT-3.1.3-3,
        // MQTT-3.1.3-4].
        let client_id = read_string(&mut buf)?;
        let will = if has_will {
            let properties = if protocol.is_v5() {
                Properties::decode(&mut buf, PropertyPlace::Will)?
            } else {
                Properties::default()
            };
            let topic = read_string(&mut buf)?;
            // The will topic is a topic name: no wildcards, at least one byte [MQTT-3.1.3-10]
            // (5.0 [MQTT-3.1.3-11]), [MQTT-4.7.3-1].
            if !topic::valid_name(&topic) {
                return Err(DecodeError::InvalidTopicName);
            }
            let payload = read_binary(&mut buf)?;
            Some(LastWill {
                topic,
                payload,
                qos: will_qos,
                retain: will_retain,
                properties,
            })
        } else {
            None
        };
        // MQTT 3.1 §3.1: "the Remaining Length field from the fixed header takes precedence over
        // the User Name flag": a 3.1 server must accept the flag set with the field missing, and
        // likewise for the password.
        let absent = |buf: &Bytes| protocol == Protocol::V310 && buf.is_empty();
        let username = if has_username && !absent(&buf) {
            // The user name is a UTF-8 string [MQTT-3.1.3-11] (5.0 [MQTT-3.1.3-12]).
            Some(read_string(&mut buf)?)
        } else {
            None
        };
        let password = if has_password && !absent(&buf) {
            Some(read_binary(&mut buf)?)
        } else {
            None
        };
        finish(&buf)?;
        Ok(Connect {
            protocol,
            clean_start: connect_flags & CLEAN_START != 0,
            keep_alive,
            client_id,
            will,
            username,
            password,
            properties,
        })
    }

    /// Remaining length, property block length and will property block length.
    fn layout(&self) -> Result<(usize, usize, usize), EncodeError> {
        let v5 = self.protocol.is_v5();
        let mut len = string_len(self.protocol.name().as_bytes())? + 1 + 1 + 2;
        let mut properties = 0;
        if v5 {
            properties = self
                .properties
                .encoded_len(PropertyPlace::Packet(PacketType::Connect))?;
            len += varint_len(properties) + properties;
        }
        len += string_len(self.client_id.as_bytes())?;
        let mut will_properties = 0;
        if let Some(will) = &self.will {
            if v5 {
                will_properties = will.properties.encoded_len(PropertyPlace::Will)?;
                len += varint_len(will_properties) + will_properties;
            }
            len += string_len(will.topic.as_bytes())? + string_len(&will.payload)?;
        }
        if let Some(username) = &self.username {
            len += string_len(username.as_bytes())?;
        }
        if let Some(password) = &self.password {
            len += string_len(password)?;
        }
        Ok((len, properties, will_properties))
    }

    pub(crate) fn encoded_len(&self) -> Result<usize, EncodeError> {
        packet_len(self.layout()?.0)
    }

    pub(crate) fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let (remaining, properties, will_properties) = self.layout()?;
        put_fixed_header(dst, (PacketType::Connect as u8) << 4, remaining)?;
        put_string(dst, self.protocol.name().as_bytes());
        dst.put_u8(self.protocol.level());
        let mut flags = 0;
        if self.username.is_some() {
            flags |= USERNAME;
        }
        if self.password.is_some() {
            flags |= PASSWORD;
        }
        if let Some(will) = &self.will {
            flags |= WILL | (will.qos as u8) << 3;
            if will.retain {
                flags |= WILL_RETAIN;
            }
        }
        if self.clean_start {
            flags |= CLEAN_START;
        }
        dst.put_u8(flags);
        dst.put_u16(self.keep_alive);
        if self.protocol.is_v5() {
            self.properties.encode(properties, dst);
        }
        put_string(dst, self.client_id.as_bytes());
        if let Some(will) = &self.will {
            if self.protocol.is_v5() {
                will.properties.encode(will_properties, dst);
            }
            put_string(dst, will.topic.as_bytes());
            put_string(dst, &will.payload);
        }
        if let Some(username) = &self.username {
            put_string(dst, username.as_bytes());
        }
        if let Some(password) = &self.password {
            put_string(dst, password);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::test_util::{decode_err, decode_one, encode_bytes};
    use crate::*;

    fn minimal(protocol: Protocol) -> Connect {
        Connect {
            protocol,
            clean_start: true,
            keep_alive: 60,
            client_id: "c1".into(),
            ..Connect::default()
        }
    }

    #[test]
    fn v310_literal() {
        let bytes: &[u8] = b"\x10\x10\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x02c1";
        let connect = minimal(Protocol::V310);
        assert_eq!(
            decode_one(None, bytes),
            Packet::Connect(Box::new(connect.clone()))
        );
        assert_eq!(
            encode_bytes(&Packet::Connect(Box::new(connect)), Protocol::V311),
            bytes
        );
    }

    #[test]
    fn v311_literal() {
        let bytes: &[u8] = b"\x10\x23\x00\x04MQTT\x04\xee\x00\x3c\x00\x02c1\x00\x03w/t\x00\x02wp\
            \x00\x04user\x00\x04pass";
        let connect = Connect {
            will: Some(LastWill {
                topic: "w/t".into(),
                payload: Bytes::from_static(b"wp"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: Properties::default(),
            }),
            username: Some("user".into()),
            password: Some(Bytes::from_static(b"pass")),
            ..minimal(Protocol::V311)
        };
        // Flags 0xee: user name, password, will retain, will QoS 1, will, clean.
        assert_eq!(
            decode_one(None, bytes),
            Packet::Connect(Box::new(connect.clone()))
        );
        assert_eq!(
            encode_bytes(&Packet::Connect(Box::new(connect)), Protocol::V311),
            bytes
        );
        let minimal_bytes: &[u8] = b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02c1";
        assert_eq!(
            decode_one(None, minimal_bytes),
            Packet::Connect(Box::new(minimal(Protocol::V311)))
        );
    }

    #[test]
    fn v500_literal() {
        let bytes: &[u8] = b"\x10\x23\x00\x04MQTT\x05\x06\x00\x3c\x05\x11\x00\x00\x00\x0a\
            \x00\x02c1\x05\x18\x00\x00\x00\x05\x00\x03w/t\x00\x02wp";
        let connect = Connect {
            properties: Properties::from(PropertyValues {
                session_expiry_interval: Some(10),
                ..PropertyValues::default()
            }),
            will: Some(LastWill {
                topic: "w/t".into(),
                payload: Bytes::from_static(b"wp"),
                qos: QoS::AtMostOnce,
                retain: false,
                properties: Properties::from(PropertyValues {
                    will_delay_interval: Some(5),
                    ..PropertyValues::default()
                }),
            }),
            ..minimal(Protocol::V500)
        };
        assert_eq!(
            decode_one(None, bytes),
            Packet::Connect(Box::new(connect.clone()))
        );
        assert_eq!(
            encode_bytes(&Packet::Connect(Box::new(connect)), Protocol::V500),
            bytes
        );
    }

    #[test]
    fn v310_missing_credentials_allowed() {
        // User name and password flags set, fields absent (MQTT 3.1 §3.1 compatibility note).
        let bytes: &[u8] = b"\x10\x10\x00\x06MQIsdp\x03\xc2\x00\x3c\x00\x02c1";
        assert_eq!(
            decode_one(None, bytes),
            Packet::Connect(Box::new(minimal(Protocol::V310)))
        );
        // 3.1.1 requires them.
        let bytes: &[u8] = b"\x10\x0e\x00\x04MQTT\x04\x82\x00\x3c\x00\x02c1";
        assert_eq!(
            decode_err(None, bytes),
            DecodeError::Malformed("packet ends inside a field")
        );
    }

    #[test]
    fn protocol_name_and_level() {
        let err = decode_err(None, b"\x10\x0e\x00\x04MQTX\x04\x02\x00\x3c\x00\x02c1");
        assert_eq!(err, DecodeError::InvalidProtocolName);
        assert_eq!(err.reason_code(), ReasonCode::UnsupportedProtocolVersion);
        let err = decode_err(None, b"\x10\x0e\x00\x04MQTT\x06\x02\x00\x3c\x00\x02c1");
        assert_eq!(err, DecodeError::UnsupportedProtocolLevel(6));
        assert_eq!(err.reason_code(), ReasonCode::UnsupportedProtocolVersion);
        assert_eq!(err.reason_code().to_v3_connack(), 1);
        // "MQTT" with level 3 and "MQIsdp" with level 4 are not a known pair.
        let err = decode_err(None, b"\x10\x0e\x00\x04MQTT\x03\x02\x00\x3c\x00\x02c1");
        assert_eq!(err, DecodeError::UnsupportedProtocolLevel(3));
        let err = decode_err(None, b"\x10\x10\x00\x06MQIsdp\x04\x02\x00\x3c\x00\x02c1");
        assert_eq!(err, DecodeError::UnsupportedProtocolLevel(4));
    }

    #[test]
    fn flags() {
        let with_flags = |fixed: u8, flags: u8| {
            let mut bytes = b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02c1".to_vec();
            bytes[0] = fixed;
            bytes[9] = flags;
            decode_err(None, &bytes)
        };
        // [MQTT-2.2.2-1]
        assert_eq!(
            with_flags(0x11, 0x02),
            DecodeError::InvalidFlags {
                packet_type: 1,
                flags: 1
            }
        );
        // [MQTT-3.1.2-3]
        let err = with_flags(0x10, 0x03);
        assert_eq!(err, DecodeError::InvalidConnectFlags("reserved flag set"));
        assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
        // [MQTT-3.1.2-13]
        let err = with_flags(0x10, 0x0a);
        assert_eq!(
            err,
            DecodeError::InvalidConnectFlags("will QoS or retain without a will")
        );
        assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
        // [MQTT-3.1.2-15]
        let err = with_flags(0x10, 0x22);
        assert_eq!(
            err,
            DecodeError::InvalidConnectFlags("will QoS or retain without a will")
        );
        // [MQTT-3.1.2-14]
        let err = with_flags(0x10, 0x1e);
        assert_eq!(err, DecodeError::InvalidQoS);
        assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
        // [MQTT-3.1.2-22]
        let err = with_flags(0x10, 0x42);
        assert_eq!(
            err,
            DecodeError::InvalidConnectFlags("password without a user name")
        );
        assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
        // MQTT 5 allows a password without a user name.
        let bytes: &[u8] = b"\x10\x12\x00\x04MQTT\x05\x40\x00\x3c\x00\x00\x02c1\x00\x01p";
        let Packet::Connect(connect) = decode_one(None, bytes) else {
            panic!()
        };
        assert_eq!(connect.password, Some(Bytes::from_static(b"p")));
        assert_eq!(connect.username, None);
    }

    #[test]
    fn will_topic_and_strings() {
        // Will topic with a wildcard [MQTT-3.1.3-10].
        let bytes: &[u8] = b"\x10\x16\x00\x04MQTT\x04\x06\x00\x3c\x00\x02c1\x00\x03w/#\x00\x01p";
        let err = decode_err(None, bytes);
        assert_eq!(err, DecodeError::InvalidTopicName);
        assert_eq!(err.reason_code(), ReasonCode::TopicNameInvalid);
        // Client id with U+0000 [MQTT-1.5.3-2].
        let err = decode_err(None, b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02c\x00");
        assert_eq!(err, DecodeError::InvalidUtf8);
        assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
        // Trailing bytes.
        let err = decode_err(None, b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x3c\x00\x02c1x");
        assert_eq!(
            err,
            DecodeError::Malformed("bytes left over after the packet")
        );
    }

    #[test]
    fn v500_properties() {
        // Receive maximum 0 is a Protocol Error (§3.1.2.11.3).
        let err = decode_err(
            None,
            b"\x10\x12\x00\x04MQTT\x05\x02\x00\x3c\x03\x21\x00\x00\x00\x02c1",
        );
        assert_eq!(err, DecodeError::InvalidPropertyValue(0x21));
        assert_eq!(err.reason_code(), ReasonCode::ProtocolError);
        // Maximum packet size 0 (§3.1.2.11.4).
        let err = decode_err(
            None,
            b"\x10\x14\x00\x04MQTT\x05\x02\x00\x3c\x05\x27\x00\x00\x00\x00\x00\x02c1",
        );
        assert_eq!(err, DecodeError::InvalidPropertyValue(0x27));
        assert_eq!(err.reason_code(), ReasonCode::ProtocolError);
        // Topic alias is not a CONNECT property.
        let err = decode_err(
            None,
            b"\x10\x12\x00\x04MQTT\x05\x02\x00\x3c\x03\x23\x00\x01\x00\x02c1",
        );
        assert_eq!(err, DecodeError::PropertyNotAllowed(0x23));
        assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
        // Will delay interval is a will property, not a CONNECT property.
        let err = decode_err(
            None,
            b"\x10\x14\x00\x04MQTT\x05\x02\x00\x3c\x05\x18\x00\x00\x00\x01\x00\x02c1",
        );
        assert_eq!(err, DecodeError::PropertyNotAllowed(0x18));
        // Session expiry twice.
        let err = decode_err(
            None,
            b"\x10\x19\x00\x04MQTT\x05\x02\x00\x3c\x0a\x11\x00\x00\x00\x01\x11\x00\x00\x00\x02\x00\x02c1",
        );
        assert_eq!(err, DecodeError::DuplicateProperty(0x11));
        assert_eq!(err.reason_code(), ReasonCode::ProtocolError);
        // Request problem information 2.
        let err = decode_err(
            None,
            b"\x10\x11\x00\x04MQTT\x05\x02\x00\x3c\x02\x17\x02\x00\x02c1",
        );
        assert_eq!(err, DecodeError::InvalidPropertyValue(0x17));
        // Authentication data without a method.
        let err = decode_err(
            None,
            b"\x10\x13\x00\x04MQTT\x05\x02\x00\x3c\x04\x16\x00\x01x\x00\x02c1",
        );
        assert_eq!(
            err,
            DecodeError::ProtocolError("authentication data without a method")
        );
        assert_eq!(err.reason_code(), ReasonCode::ProtocolError);
        // Unknown property 0x7f.
        let err = decode_err(
            None,
            b"\x10\x11\x00\x04MQTT\x05\x02\x00\x3c\x02\x7f\x00\x00\x02c1",
        );
        assert_eq!(err, DecodeError::UnknownProperty(0x7f));
        assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
        // Property length past the end of the packet.
        let err = decode_err(None, b"\x10\x0f\x00\x04MQTT\x05\x02\x00\x3c\x05\x00\x02c1");
        assert_eq!(err, DecodeError::Malformed("packet ends inside a field"));
    }

    #[test]
    fn encode_limits() {
        let connect = Connect {
            client_id: ByteStr::from("x".repeat(65_536)),
            ..minimal(Protocol::V311)
        };
        let packet = Packet::Connect(Box::new(connect));
        assert_eq!(
            encoded_len(&packet, Protocol::V311),
            Err(EncodeError::TooLarge)
        );
        assert_eq!(
            encode(&packet, Protocol::V311, &mut bytes::BytesMut::new()),
            Err(EncodeError::TooLarge)
        );
        let connect = Connect {
            properties: Properties::from(PropertyValues {
                topic_alias: Some(1),
                ..PropertyValues::default()
            }),
            ..minimal(Protocol::V500)
        };
        let packet = Packet::Connect(Box::new(connect));
        assert_eq!(
            encoded_len(&packet, Protocol::V500),
            Err(EncodeError::PropertyNotAllowed(0x23))
        );
    }
}
