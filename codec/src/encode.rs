//! Encoder for every packet at every protocol level.
//!
//! Each packet computes its remaining length first (checking every string against 65,535 bytes,
//! the whole against 268,435,455 bytes and every property against the packet type), then
//! reserves the exact size in `dst` once and writes. Nothing is written when encoding fails.
//!
//! Fields a level does not have are left out: properties and reason codes for 3.x (reason codes
//! map to 3.x return codes in CONNACK and SUBACK), the session present flag for 3.1. MQTT 5
//! acknowledgements, DISCONNECT and AUTH use their short forms when the code is Success and
//! there are no properties.

use bytes::{BufMut, BytesMut};

use crate::packet::ping::{PING_REQ, PING_RESP};
use crate::{EncodeError, Packet, Protocol};

/// Appends `packet`, encoded for `protocol`, to `dst`.
///
/// CONNECT is encoded for its own [`crate::Connect::protocol`], whatever `protocol` says.
pub fn encode(packet: &Packet, protocol: Protocol, dst: &mut BytesMut) -> Result<(), EncodeError> {
    match packet {
        Packet::Publish(publish) => publish.encode(protocol, dst),
        Packet::PubAck(ack) => ack.encode(protocol, dst),
        Packet::PubRec(ack) => ack.encode(protocol, dst),
        Packet::PubRel(ack) => ack.encode(protocol, dst),
        Packet::PubComp(ack) => ack.encode(protocol, dst),
        Packet::Connect(connect) => connect.encode(dst),
        Packet::ConnAck(ack) => ack.encode(protocol, dst),
        Packet::Subscribe(subscribe) => subscribe.encode(protocol, dst),
        Packet::SubAck(ack) => ack.encode(protocol, dst),
        Packet::Unsubscribe(unsubscribe) => unsubscribe.encode(protocol, dst),
        Packet::UnsubAck(ack) => ack.encode(protocol, dst),
        Packet::PingReq => {
            dst.put_slice(&PING_REQ);
            Ok(())
        }
        Packet::PingResp => {
            dst.put_slice(&PING_RESP);
            Ok(())
        }
        Packet::Disconnect(disconnect) => disconnect.encode(protocol, dst),
        Packet::Auth(auth) if protocol.is_v5() => auth.encode(dst),
        Packet::Auth(_) => Err(EncodeError::NotInProtocol),
    }
}

/// The size in bytes of `packet` encoded for `protocol` (fixed header included).
pub fn encoded_len(packet: &Packet, protocol: Protocol) -> Result<usize, EncodeError> {
    match packet {
        Packet::Publish(publish) => publish.encoded_len(protocol),
        Packet::PubAck(ack) => ack.encoded_len(protocol),
        Packet::PubRec(ack) => ack.encoded_len(protocol),
        Packet::PubRel(ack) => ack.encoded_len(protocol),
        Packet::PubComp(ack) => ack.encoded_len(protocol),
        Packet::Connect(connect) => connect.encoded_len(),
        Packet::ConnAck(ack) => ack.encoded_len(protocol),
        Packet::Subscribe(subscribe) => subscribe.encoded_len(protocol),
        Packet::SubAck(ack) => ack.encoded_len(protocol),
        Packet::Unsubscribe(unsubscribe) => unsubscribe.encoded_len(protocol),
        Packet::UnsubAck(ack) => ack.encoded_len(protocol),
        Packet::PingReq | Packet::PingResp => Ok(2),
        Packet::Disconnect(disconnect) => disconnect.encoded_len(protocol),
        Packet::Auth(auth) if protocol.is_v5() => auth.encoded_len(),
        Packet::Auth(_) => Err(EncodeError::NotInProtocol),
    }
}
