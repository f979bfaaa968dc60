//! Packet types of MQTT 3.1, 3.1.1 and 5.0, named as the specifications name them.
//!
//! One set of structs serves every protocol level: fields that exist only in MQTT 5 (reason codes
//! on acknowledgements, properties) are ignored when encoding for 3.1/3.1.1 and take their
//! defaults when decoding them, so the broker handles one shape and properties flow through.
//!
//! Each packet type has one file holding its struct, its decoder (from the frozen frame, fixed
//! header already checked and removed) and its encoder, with literal-byte tests beside them.
//! This module holds what they share: levels, QoS, packet ids and the [`Packet`] enum.
//!
//! Fixed header, first byte (MQTT 3.1.1 §2.2, MQTT 5.0 §2.1.1):
//!
//! ```text
//!   7   6   5   4   3   2   1   0
//! | packet type   | flags         |   flags: PUBLISH DUP, QoS (2 bits), RETAIN;
//!                                          PUBREL, SUBSCRIBE, UNSUBSCRIBE 0b0010; others 0
//! ```
//!
//! followed by the remaining length, a variable byte integer of 1 to 4 bytes.

mod ack;
mod auth;
mod connack;
mod connect;
mod disconnect;
pub(crate) mod ping;
mod publish;
mod suback;
mod subscribe;
mod unsuback;
mod unsubscribe;

pub use ack::{PubAck, PubComp, PubRec, PubRel};
pub use auth::Auth;
pub use connack::ConnAck;
pub use connect::{Connect, LastWill};
pub use disconnect::Disconnect;
pub use publish::{Publish, PublishHeader};
pub use suback::SubAck;
pub use subscribe::{RetainHandling, Subscribe, SubscribeFilter, SubscriptionOptions};
pub use unsuback::UnsubAck;
pub use unsubscribe::Unsubscribe;

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
