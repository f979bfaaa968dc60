//! Decode and encode errors. Each decode error maps to the MQTT 5 reason code a broker sends
//! before closing the connection ([`DecodeError::reason_code`]); "need more bytes" is not an
//! error (the decoder returns `Ok(None)`).

use crate::ReasonCode;

/// Why a byte stream is not a valid MQTT packet.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The remaining length uses more than 4 bytes [MQTT-2.2.3 / 1.5.5].
    #[error("remaining length longer than 4 bytes")]
    MalformedRemainingLength,
    /// The declared packet exceeds the configured maximum packet size.
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    PacketTooLarge {
        /// Size of the whole packet (fixed header included).
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// Packet type 0, or AUTH on a 3.1/3.1.1 connection.
    #[error("invalid packet type {0}")]
    InvalidPacketType(u8),
    /// Reserved fixed-header flag bits are not as required [MQTT-2.2.2-1, MQTT-2.2.2-2].
    #[error("invalid fixed header flags {flags:#06b} for packet type {packet_type}")]
    InvalidFlags {
        /// Packet type nibble.
        packet_type: u8,
        /// Flags nibble.
        flags: u8,
    },
    /// QoS 3 in a PUBLISH [MQTT-3.3.1-4] or will / subscription options.
    #[error("invalid QoS 3")]
    InvalidQoS,
    /// The body ended before a field was complete, or had bytes left over.
    #[error("packet body is malformed: {0}")]
    Malformed(&'static str),
    /// A UTF-8 string is ill-formed, contains U+0000 or a surrogate [MQTT-1.5.3-1, MQTT-1.5.3-2].
    #[error("invalid UTF-8 string")]
    InvalidUtf8,
    /// Packet id 0 where a non-zero id is required [MQTT-2.3.1-1].
    #[error("packet identifier 0")]
    ZeroPacketId,
    /// A PUBLISH topic name with wildcards or otherwise invalid [MQTT-3.3.2-2].
    #[error("invalid topic name")]
    InvalidTopicName,
    /// An invalid topic filter where the packet cannot carry a per-filter failure (UNSUBSCRIBE).
    #[error("invalid topic filter")]
    InvalidTopicFilter,
    /// SUBSCRIBE or UNSUBSCRIBE with no topic filter (3.1.1 [MQTT-3.8.3-3, MQTT-3.10.3-2];
    /// MQTT 5.0 [MQTT-3.8.3-2, MQTT-3.10.3-2], a Protocol Error).
    #[error("no topic filter")]
    NoTopicFilter,
    /// CONNECT with a protocol name other than `MQTT` / `MQIsdp` [MQTT-3.1.2-1].
    #[error("invalid protocol name")]
    InvalidProtocolName,
    /// CONNECT with an unknown protocol level [MQTT-3.1.2-2].
    #[error("unsupported protocol level {0}")]
    UnsupportedProtocolLevel(u8),
    /// CONNECT flags invalid: reserved bit set [MQTT-3.1.2-3], will QoS/retain without will flag
    /// [MQTT-3.1.2-11, MQTT-3.1.2-15], password without user name in 3.1.1 [MQTT-3.1.2-22].
    #[error("invalid CONNECT flags: {0}")]
    InvalidConnectFlags(&'static str),
    /// An unknown property identifier.
    #[error("unknown property identifier {0:#04x}")]
    UnknownProperty(u8),
    /// A property in a packet that may not carry it.
    #[error("property {0:#04x} not allowed in this packet")]
    PropertyNotAllowed(u8),
    /// A property that may appear once appeared twice.
    #[error("duplicate property {0:#04x}")]
    DuplicateProperty(u8),
    /// A property value out of range (e.g. receive maximum 0, subscription identifier 0).
    #[error("invalid value for property {0:#04x}")]
    InvalidPropertyValue(u8),
    /// A reason code not defined for this packet.
    #[error("invalid reason code {0:#04x}")]
    InvalidReasonCode(u8),
    /// A packet that needs a negotiated protocol level arrived before CONNECT [MQTT-3.1.0-1].
    #[error("first packet is not CONNECT")]
    NotConnect,
    /// A well-formed packet that breaks a rule the MQTT 5 specification calls a Protocol Error
    /// (retain handling 3, No Local on a shared subscription, AUTH without a method, ...).
    #[error("protocol error: {0}")]
    ProtocolError(&'static str),
}

impl DecodeError {
    /// The MQTT 5 reason code a server sends (in CONNACK or DISCONNECT) before closing.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            DecodeError::InvalidTopicName => ReasonCode::TopicNameInvalid,
            DecodeError::InvalidTopicFilter => ReasonCode::TopicFilterInvalid,
            DecodeError::UnsupportedProtocolLevel(_) | DecodeError::InvalidProtocolName => {
                ReasonCode::UnsupportedProtocolVersion
            }
            // "It is a Protocol Error if the Topic Alias ... is 0" is answered with 0x94 (MQTT 5.0
            // §3.3.2.3.4); every other out-of-range property value is a Protocol Error.
            DecodeError::InvalidPropertyValue(0x23) => ReasonCode::TopicAliasInvalid,
            DecodeError::NotConnect
            | DecodeError::DuplicateProperty(_)
            | DecodeError::InvalidPropertyValue(_)
            | DecodeError::NoTopicFilter
            | DecodeError::ProtocolError(_) => ReasonCode::ProtocolError,
            _ => ReasonCode::MalformedPacket,
        }
    }
}

/// Why a packet cannot be encoded.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
pub enum EncodeError {
    /// The packet would exceed the 268,435,455-byte limit of the remaining length, or a string
    /// would exceed 65,535 bytes.
    #[error("packet too large to encode")]
    TooLarge,
    /// The packet does not exist at this protocol level (AUTH before 5.0).
    #[error("packet not available at this protocol level")]
    NotInProtocol,
    /// A PUBLISH whose packet id does not agree with its QoS.
    #[error("packet id must be present exactly for QoS 1 and 2")]
    PacketIdMismatch,
    /// A property set in a packet that may not carry it (MQTT 5.0 §2.2.2.2); the peer would
    /// reject the packet as malformed.
    #[error("property {0:#04x} not allowed in this packet")]
    PropertyNotAllowed(u8),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every decode error and the reason code a server closes the connection with.
    #[test]
    fn reason_codes() {
        use DecodeError::*;
        use ReasonCode as R;
        let cases = [
            (MalformedRemainingLength, R::MalformedPacket),
            (PacketTooLarge { size: 2, max: 1 }, R::PacketTooLarge),
            (InvalidPacketType(0), R::MalformedPacket),
            (
                InvalidFlags {
                    packet_type: 8,
                    flags: 0,
                },
                R::MalformedPacket,
            ),
            (InvalidQoS, R::MalformedPacket),
            (Malformed("x"), R::MalformedPacket),
            (InvalidUtf8, R::MalformedPacket),
            (ZeroPacketId, R::MalformedPacket),
            (InvalidTopicName, R::TopicNameInvalid),
            (InvalidTopicFilter, R::TopicFilterInvalid),
            (NoTopicFilter, R::ProtocolError),
            (InvalidProtocolName, R::UnsupportedProtocolVersion),
            (UnsupportedProtocolLevel(6), R::UnsupportedProtocolVersion),
            (InvalidConnectFlags("x"), R::MalformedPacket),
            (UnknownProperty(0x7f), R::MalformedPacket),
            (PropertyNotAllowed(0x23), R::MalformedPacket),
            (DuplicateProperty(0x11), R::ProtocolError),
            (InvalidPropertyValue(0x21), R::ProtocolError),
            (InvalidPropertyValue(0x23), R::TopicAliasInvalid),
            (InvalidReasonCode(0x03), R::MalformedPacket),
            (NotConnect, R::ProtocolError),
            (ProtocolError("x"), R::ProtocolError),
        ];
        for (error, code) in cases {
            assert_eq!(error.reason_code(), code, "{error:?}");
            // Every code a decode error maps to can be sent: in CONNACK (a bad CONNECT) or in
            // DISCONNECT (any later packet).
            assert!(
                code.allowed_in(crate::PacketType::ConnAck)
                    || code.allowed_in(crate::PacketType::Disconnect),
                "{code:?}"
            );
        }
        assert_eq!(UnsupportedProtocolLevel(6).reason_code().to_v3_connack(), 1);
    }
}
