//! The wire form PUBACK, PUBREC, PUBREL and PUBCOMP share (MQTT 5.0 §3.4-§3.7):
//!
//! ```text
//! variable header  packet id, [reason code, [properties]] (5.0)
//! ```
//!
//! In MQTT 5 the reason code and properties may be left out: remaining length 2 means Success
//! with no properties, and 3 means no properties (§3.4.2.1, §3.4.2.2.1). The encoder uses the
//! shortest form. In 3.x the packet is exactly the packet id.

use bytes::{BufMut, Bytes, BytesMut};

use crate::properties::PropertyPlace;
use crate::wire::{finish, packet_len, put_fixed_header, read_packet_id, read_u8, varint_len};
use crate::{
    DecodeError, EncodeError, Packet, PacketId, PacketType, Properties, Protocol, ReasonCode,
};

/// Decodes an acknowledgement of `packet_type` and builds its packet with `make`.
///
/// It returns the decoder's own result type so the 472-byte packet is built once, in place
/// (PUBACK is as frequent as QoS 1 PUBLISH): a struct handed back and wrapped in `Packet` and
/// then `Ok(Some(_))` would be copied at each step.
#[inline]
pub(crate) fn decode(
    packet_type: PacketType,
    mut buf: Bytes,
    protocol: Protocol,
    make: impl FnOnce(PacketId, ReasonCode, Properties) -> Packet,
) -> Result<Option<Packet>, DecodeError> {
    // A non-zero packet id [MQTT-2.3.1-1].
    let packet_id = read_packet_id(&mut buf)?;
    if !protocol.is_v5() || buf.is_empty() {
        finish(&buf)?;
        return Ok(Some(make(
            packet_id,
            ReasonCode::Success,
            Properties::default(),
        )));
    }
    let byte = read_u8(&mut buf)?;
    let code = ReasonCode::from_u8(byte)
        .filter(|code| code.allowed_in(packet_type))
        .ok_or(DecodeError::InvalidReasonCode(byte))?;
    if buf.is_empty() {
        return Ok(Some(make(packet_id, code, Properties::default())));
    }
    let properties = Properties::decode(&mut buf, PropertyPlace::Packet(packet_type))?;
    finish(&buf)?;
    Ok(Some(make(packet_id, code, properties)))
}

/// Remaining length and property block length.
fn layout(
    packet_type: PacketType,
    code: ReasonCode,
    properties: &Properties,
    protocol: Protocol,
) -> Result<(usize, usize), EncodeError> {
    if !protocol.is_v5() {
        return Ok((2, 0));
    }
    let len = properties.encoded_len(PropertyPlace::Packet(packet_type))?;
    Ok(match (len, code) {
        (0, ReasonCode::Success) => (2, 0),
        (0, _) => (3, 0),
        (len, _) => (3 + varint_len(len) + len, len),
    })
}

pub(crate) fn encoded_len(
    packet_type: PacketType,
    code: ReasonCode,
    properties: &Properties,
    protocol: Protocol,
) -> Result<usize, EncodeError> {
    packet_len(layout(packet_type, code, properties, protocol)?.0)
}

pub(crate) fn encode(
    packet_type: PacketType,
    packet_id: PacketId,
    code: ReasonCode,
    properties: &Properties,
    protocol: Protocol,
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    let (remaining, len) = layout(packet_type, code, properties, protocol)?;
    // PUBREL's reserved flags are 0b0010 [MQTT-3.6.1-1]; the others' are 0.
    let flags = if packet_type == PacketType::PubRel {
        0b0010
    } else {
        0
    };
    put_fixed_header(dst, (packet_type as u8) << 4 | flags, remaining)?;
    dst.put_u16(packet_id.get());
    if remaining > 2 {
        dst.put_u8(code as u8);
    }
    if remaining > 3 {
        properties.encode(len, dst);
    }
    Ok(())
}
