//! MQTT 5.0 properties (§2.2.2): one struct for every packet, so the broker reads and forwards them
//! without a per-packet type. Which property may appear in which packet is checked by the decoder
//! ([`PropertyId::allowed_in`]); a property that appears twice where only one is allowed is a
//! protocol error [MQTT-2.2.2-2 / §2.2.2.2].

use bytes::Bytes;

use crate::{ByteStr, PacketType};

/// Property identifiers (MQTT 5.0 §2.2.2.2).
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum PropertyId {
    PayloadFormatIndicator = 0x01,
    MessageExpiryInterval = 0x02,
    ContentType = 0x03,
    ResponseTopic = 0x08,
    CorrelationData = 0x09,
    SubscriptionIdentifier = 0x0B,
    SessionExpiryInterval = 0x11,
    AssignedClientIdentifier = 0x12,
    ServerKeepAlive = 0x13,
    AuthenticationMethod = 0x15,
    AuthenticationData = 0x16,
    RequestProblemInformation = 0x17,
    WillDelayInterval = 0x18,
    RequestResponseInformation = 0x19,
    ResponseInformation = 0x1A,
    ServerReference = 0x1C,
    ReasonString = 0x1F,
    ReceiveMaximum = 0x21,
    TopicAliasMaximum = 0x22,
    TopicAlias = 0x23,
    MaximumQoS = 0x24,
    RetainAvailable = 0x25,
    UserProperty = 0x26,
    MaximumPacketSize = 0x27,
    WildcardSubscriptionAvailable = 0x28,
    SubscriptionIdentifierAvailable = 0x29,
    SharedSubscriptionAvailable = 0x2A,
}

/// Where a property may appear: a packet type, or the will properties of CONNECT.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum PropertyPlace {
    /// The variable header of a packet of this type.
    Packet(PacketType),
    /// The will properties in a CONNECT payload.
    Will,
}

impl PropertyId {
    /// The identifier for `byte`, or `None` if it names no property.
    pub fn from_u8(byte: u8) -> Option<PropertyId> {
        use PropertyId::*;
        Some(match byte {
            0x01 => PayloadFormatIndicator,
            0x02 => MessageExpiryInterval,
            0x03 => ContentType,
            0x08 => ResponseTopic,
            0x09 => CorrelationData,
            0x0B => SubscriptionIdentifier,
            0x11 => SessionExpiryInterval,
            0x12 => AssignedClientIdentifier,
            0x13 => ServerKeepAlive,
            0x15 => AuthenticationMethod,
            0x16 => AuthenticationData,
            0x17 => RequestProblemInformation,
            0x18 => WillDelayInterval,
            0x19 => RequestResponseInformation,
            0x1A => ResponseInformation,
            0x1C => ServerReference,
            0x1F => ReasonString,
            0x21 => ReceiveMaximum,
            0x22 => TopicAliasMaximum,
            0x23 => TopicAlias,
            0x24 => MaximumQoS,
            0x25 => RetainAvailable,
            0x26 => UserProperty,
            0x27 => MaximumPacketSize,
            0x28 => WildcardSubscriptionAvailable,
            0x29 => SubscriptionIdentifierAvailable,
            0x2A => SharedSubscriptionAvailable,
            _ => return None,
        })
    }

    /// Whether this property may appear in `place` (MQTT 5.0 §2.2.2.2, the table of properties).
    pub fn allowed_in(self, place: PropertyPlace) -> bool {
        use PacketType as T;
        use PropertyId::*;
        use PropertyPlace::{Packet as P, Will};
        match self {
            PayloadFormatIndicator | MessageExpiryInterval | ContentType | ResponseTopic
            | CorrelationData => matches!(place, P(T::Publish) | Will),
            SubscriptionIdentifier => matches!(place, P(T::Publish) | P(T::Subscribe)),
            SessionExpiryInterval => {
                matches!(place, P(T::Connect) | P(T::ConnAck) | P(T::Disconnect))
            }
            AssignedClientIdentifier | ServerKeepAlive | ResponseInformation | MaximumQoS
            | RetainAvailable | WildcardSubscriptionAvailable
            | SubscriptionIdentifierAvailable | SharedSubscriptionAvailable => {
                place == P(T::ConnAck)
            }
            AuthenticationMethod | AuthenticationData => {
                matches!(place, P(T::Connect) | P(T::ConnAck) | P(T::Auth))
            }
            RequestProblemInformation | RequestResponseInformation => place == P(T::Connect),
            WillDelayInterval => place == Will,
            ServerReference => matches!(place, P(T::ConnAck) | P(T::Disconnect)),
            ReasonString => matches!(
                place,
                P(T::ConnAck)
                    | P(T::PubAck)
                    | P(T::PubRec)
                    | P(T::PubRel)
                    | P(T::PubComp)
                    | P(T::SubAck)
                    | P(T::UnsubAck)
                    | P(T::Disconnect)
                    | P(T::Auth)
            ),
            ReceiveMaximum | TopicAliasMaximum | MaximumPacketSize => {
                matches!(place, P(T::Connect) | P(T::ConnAck))
            }
            TopicAlias => place == P(T::Publish),
            UserProperty => true,
        }
    }
}

/// The properties of one packet. Every field is optional; `Default` is "no properties", which is
/// what 3.1/3.1.1 packets always carry.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
#[allow(missing_docs)]
pub struct Properties {
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<ByteStr>,
    pub response_topic: Option<ByteStr>,
    pub correlation_data: Option<Bytes>,
    /// PUBLISH may carry several (one per matching subscription); SUBSCRIBE at most one.
    pub subscription_identifiers: Vec<u32>,
    pub session_expiry_interval: Option<u32>,
    pub assigned_client_identifier: Option<ByteStr>,
    pub server_keep_alive: Option<u16>,
    pub authentication_method: Option<ByteStr>,
    pub authentication_data: Option<Bytes>,
    pub request_problem_information: Option<u8>,
    pub will_delay_interval: Option<u32>,
    pub request_response_information: Option<u8>,
    pub response_information: Option<ByteStr>,
    pub server_reference: Option<ByteStr>,
    pub reason_string: Option<ByteStr>,
    pub receive_maximum: Option<u16>,
    pub topic_alias_maximum: Option<u16>,
    pub topic_alias: Option<u16>,
    pub maximum_qos: Option<u8>,
    pub retain_available: Option<u8>,
    /// User properties in wire order; the same name may repeat [MQTT-3.1.3-10 and others].
    pub user: Vec<(ByteStr, ByteStr)>,
    pub maximum_packet_size: Option<u32>,
    pub wildcard_subscription_available: Option<u8>,
    pub subscription_identifier_available: Option<u8>,
    pub shared_subscription_available: Option<u8>,
}

impl Properties {
    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        *self == Properties::default()
    }
}
