//! Packet types of MQTT 3.1, 3.1.1 and 5.0, named as the specifications name them.
//!
//! One set of structs serves every protocol level: fields that exist only in MQTT 5 (reason codes
//! on acknowledgements, properties) are ignored when encoding for 3.1/3.1.1 and take their
//! defaults when decoding them, so the broker handles one shape and properties flow through.

use bytes::Bytes;

use crate::{ByteStr, Properties, ReasonCode};

/// The protocol level negotiated by CONNECT.
#[derive(Clone, Copy, Debug, Default, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub enum Protocol {
    /// MQTT 3.1: protocol name `MQIsdp`, level 3.
    V310,
    /// MQTT 3.1.1: protocol name `MQTT`, level 4.
    #[default]
    V311,
    /// MQTT 5.0: protocol name `MQTT`, level 5.
    V500,
}

impl Protocol {
    /// The protocol level byte of CONNECT.
    pub const fn level(self) -> u8 {
        match self {
            Protocol::V310 => 3,
            Protocol::V311 => 4,
            Protocol::V500 => 5,
        }
    }

    /// The protocol name CONNECT carries for this level.
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::V310 => "MQIsdp",
            Protocol::V311 | Protocol::V500 => "MQTT",
        }
    }

    /// True for MQTT 5.0, the only level with properties and reason codes.
    pub const fn is_v5(self) -> bool {
        matches!(self, Protocol::V500)
    }
}

/// Quality of service of a PUBLISH or granted for a subscription.
#[derive(Clone, Copy, Debug, Default, Eq, Hash, Ord, PartialEq, PartialOrd)]
#[repr(u8)]
pub enum QoS {
    /// At most once.
    #[default]
    AtMostOnce = 0,
    /// At least once.
    AtLeastOnce = 1,
    /// Exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for `bits`, or `None` for 3 and above [MQTT-3.3.1-4].
    pub const fn from_u8(bits: u8) -> Option<QoS> {
        match bits {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// A non-zero packet identifier [MQTT-2.3.1-1].
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct PacketId(std::num::NonZeroU16);

impl PacketId {
    /// The id for `value`, or `None` for 0.
    pub const fn new(value: u16) -> Option<PacketId> {
        match std::num::NonZeroU16::new(value) {
            Some(id) => Some(PacketId(id)),
            None => None,
        }
    }

    /// The numeric value (never 0).
    pub const fn get(self) -> u16 {
        self.0.get()
    }
}

/// The control packet type, the high nibble of the fixed header's first byte.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum PacketType {
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
    Auth = 15,
}

/// Any MQTT control packet.
#[derive(Clone, Debug, Eq, PartialEq)]
#[allow(missing_docs)]
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(PubAck),
    PubRec(PubRec),
    PubRel(PubRel),
    PubComp(PubComp),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    Auth(Auth),
}

impl Packet {
    /// This packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }
}

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

/// CONNACK (MQTT 3.1.1 §3.2, MQTT 5.0 §3.2).
///
/// `code` is an MQTT 5 reason code; for 3.1/3.1.1 it maps to the connect return code
/// (see [`ReasonCode::to_v3_connack`]).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct ConnAck {
    /// Session present flag.
    pub session_present: bool,
    /// Result of the connection attempt.
    pub code: ReasonCode,
    /// MQTT 5 CONNACK properties (assigned client id, server keep alive, maximums, ...).
    pub properties: Properties,
}

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

/// PUBACK (MQTT 3.1.1 §3.4, MQTT 5.0 §3.4).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct PubAck {
    /// The acknowledged packet id.
    pub packet_id: PacketId,
    /// Reason code (MQTT 5; `Success` otherwise).
    pub code: ReasonCode,
    /// MQTT 5 properties (reason string, user properties).
    pub properties: Properties,
}

/// PUBREC (MQTT 3.1.1 §3.5, MQTT 5.0 §3.5).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct PubRec {
    /// The acknowledged packet id.
    pub packet_id: PacketId,
    /// Reason code (MQTT 5; `Success` otherwise).
    pub code: ReasonCode,
    /// MQTT 5 properties (reason string, user properties).
    pub properties: Properties,
}

/// PUBREL (MQTT 3.1.1 §3.6, MQTT 5.0 §3.6).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct PubRel {
    /// The released packet id.
    pub packet_id: PacketId,
    /// Reason code (MQTT 5; `Success` otherwise).
    pub code: ReasonCode,
    /// MQTT 5 properties (reason string, user properties).
    pub properties: Properties,
}

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
    /// The topic filter (validated by the decoder unless the packet is refused per filter).
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

/// UNSUBACK (MQTT 3.1.1 §3.11, MQTT 5.0 §3.11).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct UnsubAck {
    /// Packet id of the UNSUBSCRIBE.
    pub packet_id: PacketId,
    /// MQTT 5: one code per filter; empty for 3.1/3.1.1.
    pub codes: Vec<ReasonCode>,
    /// MQTT 5 properties.
    pub properties: Properties,
}

/// DISCONNECT (MQTT 3.1.1 §3.14, MQTT 5.0 §3.14).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Disconnect {
    /// Reason code (MQTT 5; `Success`, i.e. normal disconnection, otherwise).
    pub code: ReasonCode,
    /// MQTT 5 properties (session expiry, reason string, server reference, ...).
    pub properties: Properties,
}

/// AUTH (MQTT 5.0 §3.15 only).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Auth {
    /// `Success`, `ContinueAuthentication` or `ReAuthenticate`.
    pub code: ReasonCode,
    /// Properties (authentication method and data, ...).
    pub properties: Properties,
}

impl PubAck {
    /// A successful acknowledgement of `packet_id`.
    pub fn new(packet_id: PacketId) -> Self {
        Self { packet_id, code: ReasonCode::Success, properties: Properties::default() }
    }
}

impl PubRec {
    /// A successful acknowledgement of `packet_id`.
    pub fn new(packet_id: PacketId) -> Self {
        Self { packet_id, code: ReasonCode::Success, properties: Properties::default() }
    }
}

impl PubRel {
    /// A successful release of `packet_id`.
    pub fn new(packet_id: PacketId) -> Self {
        Self { packet_id, code: ReasonCode::Success, properties: Properties::default() }
    }
}

impl PubComp {
    /// A successful completion of `packet_id`.
    pub fn new(packet_id: PacketId) -> Self {
        Self { packet_id, code: ReasonCode::Success, properties: Properties::default() }
    }
}
