//! MQTT 5.0 properties (§2.2.2): one struct for every packet, so the broker reads and forwards them
//! without a per-packet type. Which property may appear in which packet is checked by the decoder
//! and the encoder ([`PropertyId::allowed_in`], folded into one bit mask per packet type at
//! compile time); a property that appears twice where only one is allowed is a Protocol Error
//! (MQTT 5.0 §2.2.2.2).
//!
//! Decoded strings and binary values are slices of the packet's frame. A broker that keeps one
//! for long (an assigned client id, a will) should copy it so it does not pin the read buffer.

use bytes::{BufMut, Bytes, BytesMut};

use crate::wire::{
    put_string, put_varint, read_binary, read_string, read_u16, read_u32, read_u8, read_varint,
    string_len, varint_len, MAX_REMAINING_LENGTH, TRUNCATED,
};
use crate::{topic, ByteStr, DecodeError, EncodeError, PacketType};

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
    pub const fn allowed_in(self, place: PropertyPlace) -> bool {
        use PacketType as T;
        use PropertyId::*;
        use PropertyPlace::{Packet as P, Will};
        match self {
            PayloadFormatIndicator
            | MessageExpiryInterval
            | ContentType
            | ResponseTopic
            | CorrelationData => matches!(place, P(T::Publish) | Will),
            SubscriptionIdentifier => matches!(place, P(T::Publish) | P(T::Subscribe)),
            SessionExpiryInterval => {
                matches!(place, P(T::Connect) | P(T::ConnAck) | P(T::Disconnect))
            }
            AssignedClientIdentifier
            | ServerKeepAlive
            | ResponseInformation
            | MaximumQoS
            | RetainAvailable
            | WildcardSubscriptionAvailable
            | SubscriptionIdentifierAvailable
            | SharedSubscriptionAvailable => {
                matches!(place, P(T::ConnAck))
            }
            AuthenticationMethod | AuthenticationData => {
                matches!(place, P(T::Connect) | P(T::ConnAck) | P(T::Auth))
            }
            RequestProblemInformation | RequestResponseInformation => {
                matches!(place, P(T::Connect))
            }
            WillDelayInterval => matches!(place, Will),
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
            TopicAlias => matches!(place, P(T::Publish)),
            // Every packet with a property block, and the will properties.
            UserProperty => !matches!(place, P(T::PingReq) | P(T::PingResp)),
        }
    }
}

/// Every property identifier, in identifier order (the order the encoder writes them in).
const ALL: [PropertyId; 27] = {
    use PropertyId::*;
    [
        PayloadFormatIndicator,
        MessageExpiryInterval,
        ContentType,
        ResponseTopic,
        CorrelationData,
        SubscriptionIdentifier,
        SessionExpiryInterval,
        AssignedClientIdentifier,
        ServerKeepAlive,
        AuthenticationMethod,
        AuthenticationData,
        RequestProblemInformation,
        WillDelayInterval,
        RequestResponseInformation,
        ResponseInformation,
        ServerReference,
        ReasonString,
        ReceiveMaximum,
        TopicAliasMaximum,
        TopicAlias,
        MaximumQoS,
        RetainAvailable,
        UserProperty,
        MaximumPacketSize,
        WildcardSubscriptionAvailable,
        SubscriptionIdentifierAvailable,
        SharedSubscriptionAvailable,
    ]
};

/// Bit `id` set for every property identifier allowed in `place` (all identifiers are < 64).
const fn allowed_mask(place: PropertyPlace) -> u64 {
    let mut mask = 0u64;
    let mut i = 0;
    while i < ALL.len() {
        if ALL[i].allowed_in(place) {
            mask |= 1 << (ALL[i] as u8);
        }
        i += 1;
    }
    mask
}

/// [`allowed_mask`] for every place, indexed by [`place_index`]: computed at compile time so the
/// decoder checks a property with one AND.
const ALLOWED: [u64; 16] = {
    let mut masks = [0u64; 16];
    masks[0] = allowed_mask(PropertyPlace::Will);
    let types = [
        PacketType::Connect,
        PacketType::ConnAck,
        PacketType::Publish,
        PacketType::PubAck,
        PacketType::PubRec,
        PacketType::PubRel,
        PacketType::PubComp,
        PacketType::Subscribe,
        PacketType::SubAck,
        PacketType::Unsubscribe,
        PacketType::UnsubAck,
        PacketType::PingReq,
        PacketType::PingResp,
        PacketType::Disconnect,
        PacketType::Auth,
    ];
    let mut i = 0;
    while i < types.len() {
        masks[types[i] as usize] = allowed_mask(PropertyPlace::Packet(types[i]));
        i += 1;
    }
    masks
};

const fn place_index(place: PropertyPlace) -> usize {
    match place {
        PropertyPlace::Will => 0,
        PropertyPlace::Packet(packet_type) => packet_type as usize,
    }
}

/// The properties of one packet.
///
/// Most packets carry none (3.1/3.1.1 never do), so the values live behind one `Option<Box<_>>`
/// that is allocated only when a property is set: a packet without properties pays 8 bytes, not
/// the 400 of [`PropertyValues`]. Fields read through `Deref` (an absent block reads as all
/// `None`) and writing any field through `DerefMut` allocates the block.
#[derive(Clone, Default)]
pub struct Properties(Option<Box<PropertyValues>>);

/// Every MQTT 5 property, each optional; see [`Properties`].
#[derive(Clone, Debug, Default, Eq, PartialEq)]
#[allow(missing_docs)]
pub struct PropertyValues {
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

impl PropertyValues {
    /// No property set.
    pub const EMPTY: PropertyValues = PropertyValues {
        payload_format_indicator: None,
        message_expiry_interval: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        subscription_identifiers: Vec::new(),
        session_expiry_interval: None,
        assigned_client_identifier: None,
        server_keep_alive: None,
        authentication_method: None,
        authentication_data: None,
        request_problem_information: None,
        will_delay_interval: None,
        request_response_information: None,
        response_information: None,
        server_reference: None,
        reason_string: None,
        receive_maximum: None,
        topic_alias_maximum: None,
        topic_alias: None,
        maximum_qos: None,
        retain_available: None,
        user: Vec::new(),
        maximum_packet_size: None,
        wildcard_subscription_available: None,
        subscription_identifier_available: None,
        shared_subscription_available: None,
    };
}

static NO_PROPERTIES: PropertyValues = PropertyValues::EMPTY;

impl Properties {
    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        self.0
            .as_deref()
            .is_none_or(|values| *values == PropertyValues::EMPTY)
    }
}

impl std::ops::Deref for Properties {
    type Target = PropertyValues;

    fn deref(&self) -> &PropertyValues {
        self.0.as_deref().unwrap_or(&NO_PROPERTIES)
    }
}

impl std::ops::DerefMut for Properties {
    fn deref_mut(&mut self) -> &mut PropertyValues {
        self.0.get_or_insert_with(Box::default)
    }
}

impl From<PropertyValues> for Properties {
    fn from(values: PropertyValues) -> Self {
        Properties((values != PropertyValues::EMPTY).then(|| Box::new(values)))
    }
}

impl PartialEq for Properties {
    fn eq(&self, other: &Properties) -> bool {
        **self == **other
    }
}

impl Eq for Properties {}

impl std::fmt::Debug for Properties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl Properties {
    /// Reads a property block, its length first, for `place` (MQTT 5.0 §2.2.2).
    pub(crate) fn decode(buf: &mut Bytes, place: PropertyPlace) -> Result<Properties, DecodeError> {
        let len = read_varint(buf)?;
        let mut props = Properties::default();
        if len == 0 {
            return Ok(props);
        }
        if len > buf.len() {
            return Err(TRUNCATED);
        }
        let mut block = buf.split_to(len);
        let allowed = ALLOWED[place_index(place)];
        // User properties may repeat everywhere; subscription identifiers repeat only in PUBLISH
        // (MQTT 5.0 §3.3.2.3.8; "more than once" in SUBSCRIBE is a Protocol Error, §3.8.2.1.2).
        let mut repeatable = 1u64 << PropertyId::UserProperty as u8;
        if matches!(place, PropertyPlace::Packet(PacketType::Publish)) {
            repeatable |= 1 << PropertyId::SubscriptionIdentifier as u8;
        }
        let mut seen = 0u64;
        while !block.is_empty() {
            // The identifier is a variable byte integer, but every defined one is a single byte
            // below 0x80: any other first byte names no property.
            let byte = read_u8(&mut block)?;
            let id = PropertyId::from_u8(byte).ok_or(DecodeError::UnknownProperty(byte))?;
            let bit = 1u64 << byte;
            // A property not valid for its packet type makes a Malformed Packet (§2.2.2.2).
            if allowed & bit == 0 {
                return Err(DecodeError::PropertyNotAllowed(byte));
            }
            if seen & bit & !repeatable != 0 {
                return Err(DecodeError::DuplicateProperty(byte));
            }
            seen |= bit;
            props.decode_one(id, byte, &mut block)?;
        }
        // "It is a Protocol Error to include Authentication Data if there is no Authentication
        // Method" (§3.1.2.11.10, §3.2.2.3.18, §3.15.2.2.3).
        if props.authentication_data.is_some() && props.authentication_method.is_none() {
            return Err(DecodeError::ProtocolError(
                "authentication data without a method",
            ));
        }
        Ok(props)
    }

    fn decode_one(&mut self, id: PropertyId, byte: u8, buf: &mut Bytes) -> Result<(), DecodeError> {
        use PropertyId::*;
        let invalid = DecodeError::InvalidPropertyValue(byte);
        // Byte properties that are booleans: any value but 0 or 1 is a Protocol Error (§3.1.2.11.6,
        // §3.1.2.11.7, §3.2.2.3.4, §3.2.2.3.5, §3.2.2.3.11-13; §3.3.2.3.2 defines only 0 and 1).
        let boolean = |buf: &mut Bytes| match read_u8(buf)? {
            value @ (0 | 1) => Ok(value),
            _ => Err(invalid.clone()),
        };
        let non_zero_u16 = |buf: &mut Bytes| match read_u16(buf)? {
            0 => Err(invalid.clone()),
            value => Ok(value),
        };
        match id {
            PayloadFormatIndicator => self.payload_format_indicator = Some(boolean(buf)?),
            MessageExpiryInterval => self.message_expiry_interval = Some(read_u32(buf)?),
            ContentType => self.content_type = Some(read_string(buf)?),
            ResponseTopic => {
                let response_topic = read_string(buf)?;
                // The Response Topic MUST NOT contain wildcard characters [MQTT-3.3.2-14].
                if !topic::valid_name(&response_topic) {
                    return Err(invalid);
                }
                self.response_topic = Some(response_topic);
            }
            CorrelationData => self.correlation_data = Some(read_binary(buf)?),
            SubscriptionIdentifier => {
                // "It is a Protocol Error if the Subscription Identifier has a value of 0"
                // (§3.8.2.1.2); the varint bounds it to 268,435,455.
                let value = read_varint(buf)?;
                if value == 0 {
                    return Err(invalid);
                }
                self.subscription_identifiers.push(value as u32);
            }
            SessionExpiryInterval => self.session_expiry_interval = Some(read_u32(buf)?),
            AssignedClientIdentifier => self.assigned_client_identifier = Some(read_string(buf)?),
            ServerKeepAlive => self.server_keep_alive = Some(read_u16(buf)?),
            AuthenticationMethod => self.authentication_method = Some(read_string(buf)?),
            AuthenticationData => self.authentication_data = Some(read_binary(buf)?),
            RequestProblemInformation => self.request_problem_information = Some(boolean(buf)?),
            WillDelayInterval => self.will_delay_interval = Some(read_u32(buf)?),
            RequestResponseInformation => self.request_response_information = Some(boolean(buf)?),
            ResponseInformation => self.response_information = Some(read_string(buf)?),
            ServerReference => self.server_reference = Some(read_string(buf)?),
            ReasonString => self.reason_string = Some(read_string(buf)?),
            // "It is a Protocol Error to include the Receive Maximum value ... 0" (§3.1.2.11.3,
            // §3.2.2.3.3).
            ReceiveMaximum => self.receive_maximum = Some(non_zero_u16(buf)?),
            TopicAliasMaximum => self.topic_alias_maximum = Some(read_u16(buf)?),
            // A Topic Alias of 0 is not permitted [MQTT-3.3.2-8].
            TopicAlias => self.topic_alias = Some(non_zero_u16(buf)?),
            MaximumQoS => self.maximum_qos = Some(boolean(buf)?),
            RetainAvailable => self.retain_available = Some(boolean(buf)?),
            UserProperty => {
                let name = read_string(buf)?;
                let value = read_string(buf)?;
                self.user.push((name, value));
            }
            MaximumPacketSize => {
                // "It is a Protocol Error to include the Maximum Packet Size ... zero"
                // (§3.1.2.11.4, §3.2.2.3.6).
                let value = read_u32(buf)?;
                if value == 0 {
                    return Err(invalid);
                }
                self.maximum_packet_size = Some(value);
            }
            WildcardSubscriptionAvailable => {
                self.wildcard_subscription_available = Some(boolean(buf)?)
            }
            SubscriptionIdentifierAvailable => {
                self.subscription_identifier_available = Some(boolean(buf)?)
            }
            SharedSubscriptionAvailable => self.shared_subscription_available = Some(boolean(buf)?),
        }
        Ok(())
    }

    /// The size of the encoded properties for `place`, without the length prefix; fails when a
    /// property is not allowed there or a value is too large to encode.
    pub(crate) fn encoded_len(&self, place: PropertyPlace) -> Result<usize, EncodeError> {
        use PropertyId::*;
        let mut len = 0;
        let mut present = 0u64;
        let mut byte = |id: PropertyId, value: Option<u8>| {
            if value.is_some() {
                present |= 1 << id as u8;
                len += 2;
            }
        };
        byte(PayloadFormatIndicator, self.payload_format_indicator);
        byte(RequestProblemInformation, self.request_problem_information);
        byte(
            RequestResponseInformation,
            self.request_response_information,
        );
        byte(MaximumQoS, self.maximum_qos);
        byte(RetainAvailable, self.retain_available);
        byte(
            WildcardSubscriptionAvailable,
            self.wildcard_subscription_available,
        );
        byte(
            SubscriptionIdentifierAvailable,
            self.subscription_identifier_available,
        );
        byte(
            SharedSubscriptionAvailable,
            self.shared_subscription_available,
        );
        let mut two = |id: PropertyId, value: Option<u16>| {
            if value.is_some() {
                present |= 1 << id as u8;
                len += 3;
            }
        };
        two(ServerKeepAlive, self.server_keep_alive);
        two(ReceiveMaximum, self.receive_maximum);
        two(TopicAliasMaximum, self.topic_alias_maximum);
        two(TopicAlias, self.topic_alias);
        let mut four = |id: PropertyId, value: Option<u32>| {
            if value.is_some() {
                present |= 1 << id as u8;
                len += 5;
            }
        };
        four(MessageExpiryInterval, self.message_expiry_interval);
        four(SessionExpiryInterval, self.session_expiry_interval);
        four(WillDelayInterval, self.will_delay_interval);
        four(MaximumPacketSize, self.maximum_packet_size);
        let mut text = |id: PropertyId, value: Option<&[u8]>| -> Result<(), EncodeError> {
            if let Some(value) = value {
                present |= 1 << id as u8;
                len += 1 + string_len(value)?;
            }
            Ok(())
        };
        text(ContentType, string(&self.content_type))?;
        text(ResponseTopic, string(&self.response_topic))?;
        text(CorrelationData, self.correlation_data.as_deref())?;
        text(
            AssignedClientIdentifier,
            string(&self.assigned_client_identifier),
        )?;
        text(AuthenticationMethod, string(&self.authentication_method))?;
        text(AuthenticationData, self.authentication_data.as_deref())?;
        text(ResponseInformation, string(&self.response_information))?;
        text(ServerReference, string(&self.server_reference))?;
        text(ReasonString, string(&self.reason_string))?;
        for &id in &self.subscription_identifiers {
            let id = id as usize;
            if id > MAX_REMAINING_LENGTH {
                return Err(EncodeError::TooLarge);
            }
            present |= 1 << SubscriptionIdentifier as u8;
            len += 1 + varint_len(id);
        }
        for (name, value) in &self.user {
            present |= 1 << UserProperty as u8;
            len += 1 + string_len(name.as_bytes())? + string_len(value.as_bytes())?;
        }
        let not_allowed = present & !ALLOWED[place_index(place)];
        if not_allowed != 0 {
            return Err(EncodeError::PropertyNotAllowed(
                not_allowed.trailing_zeros() as u8,
            ));
        }
        if len > MAX_REMAINING_LENGTH {
            return Err(EncodeError::TooLarge);
        }
        Ok(len)
    }

    /// Writes the length prefix `len` (from [`Properties::encoded_len`]) and the properties, in
    /// identifier order.
    pub(crate) fn encode(&self, len: usize, dst: &mut BytesMut) {
        use PropertyId::*;
        put_varint(dst, len);
        if len == 0 {
            return;
        }
        let byte = |dst: &mut BytesMut, id: PropertyId, value: Option<u8>| {
            if let Some(value) = value {
                dst.put_u8(id as u8);
                dst.put_u8(value);
            }
        };
        let two = |dst: &mut BytesMut, id: PropertyId, value: Option<u16>| {
            if let Some(value) = value {
                dst.put_u8(id as u8);
                dst.put_u16(value);
            }
        };
        let four = |dst: &mut BytesMut, id: PropertyId, value: Option<u32>| {
            if let Some(value) = value {
                dst.put_u8(id as u8);
                dst.put_u32(value);
            }
        };
        let text = |dst: &mut BytesMut, id: PropertyId, value: Option<&[u8]>| {
            if let Some(value) = value {
                dst.put_u8(id as u8);
                put_string(dst, value);
            }
        };
        byte(dst, PayloadFormatIndicator, self.payload_format_indicator);
        four(dst, MessageExpiryInterval, self.message_expiry_interval);
        text(dst, ContentType, string(&self.content_type));
        text(dst, ResponseTopic, string(&self.response_topic));
        text(dst, CorrelationData, self.correlation_data.as_deref());
        for &id in &self.subscription_identifiers {
            dst.put_u8(SubscriptionIdentifier as u8);
            put_varint(dst, id as usize);
        }
        four(dst, SessionExpiryInterval, self.session_expiry_interval);
        text(
            dst,
            AssignedClientIdentifier,
            string(&self.assigned_client_identifier),
        );
        two(dst, ServerKeepAlive, self.server_keep_alive);
        text(
            dst,
            AuthenticationMethod,
            string(&self.authentication_method),
        );
        text(dst, AuthenticationData, self.authentication_data.as_deref());
        byte(
            dst,
            RequestProblemInformation,
            self.request_problem_information,
        );
        four(dst, WillDelayInterval, self.will_delay_interval);
        byte(
            dst,
            RequestResponseInformation,
            self.request_response_information,
        );
        text(dst, ResponseInformation, string(&self.response_information));
        text(dst, ServerReference, string(&self.server_reference));
        text(dst, ReasonString, string(&self.reason_string));
        two(dst, ReceiveMaximum, self.receive_maximum);
        two(dst, TopicAliasMaximum, self.topic_alias_maximum);
        two(dst, TopicAlias, self.topic_alias);
        byte(dst, MaximumQoS, self.maximum_qos);
        byte(dst, RetainAvailable, self.retain_available);
        for (name, value) in &self.user {
            dst.put_u8(UserProperty as u8);
            put_string(dst, name.as_bytes());
            put_string(dst, value.as_bytes());
        }
        four(dst, MaximumPacketSize, self.maximum_packet_size);
        byte(
            dst,
            WildcardSubscriptionAvailable,
            self.wildcard_subscription_available,
        );
        byte(
            dst,
            SubscriptionIdentifierAvailable,
            self.subscription_identifier_available,
        );
        byte(
            dst,
            SharedSubscriptionAvailable,
            self.shared_subscription_available,
        );
    }
}

/// The bytes of an optional string property.
fn string(value: &Option<ByteStr>) -> Option<&[u8]> {
    value.as_ref().map(|v| v.as_str().as_bytes())
}
