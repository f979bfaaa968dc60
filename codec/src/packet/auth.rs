//! AUTH (MQTT 5.0 §3.15; no such packet in 3.x, where type 15 is reserved).
//!
//! ```text
//! variable header  [reason code, [properties]]
//! ```
//!
//! Remaining length 0 means Success with no properties (§3.15.2.1). Any other AUTH must name its
//! authentication method (§3.15.2.2.2), so a reason code without properties is a Protocol Error.

use bytes::{BufMut, Bytes, BytesMut};

use crate::properties::PropertyPlace;
use crate::wire::{finish, packet_len, put_fixed_header, read_u8, varint_len};
use crate::{DecodeError, EncodeError, PacketType, Properties, ReasonCode};

/// AUTH (MQTT 5.0 §3.15 only).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Auth {
    /// `Success`, `ContinueAuthentication` or `ReAuthenticate`.
    pub code: ReasonCode,
    /// Properties (authentication method and data, ...).
    pub properties: Properties,
}

const PLACE: PropertyPlace = PropertyPlace::Packet(PacketType::Auth);

impl Auth {
    pub(crate) fn decode(mut buf: Bytes) -> Result<Auth, DecodeError> {
        let mut auth = Auth::default();
        if buf.is_empty() {
            return Ok(auth);
        }
        let byte = read_u8(&mut buf)?;
        auth.code = ReasonCode::from_u8(byte)
            .filter(|code| code.allowed_in(PacketType::Auth))
            .ok_or(DecodeError::InvalidReasonCode(byte))?;
        if !buf.is_empty() {
            auth.properties = Properties::decode(&mut buf, PLACE)?;
        }
        finish(&buf)?;
        // "It is a Protocol Error to omit the Authentication Method" (§3.15.2.2.2).
        if auth.properties.authentication_method.is_none() {
            return Err(DecodeError::ProtocolError(
                "AUTH without an authentication method",
            ));
        }
        Ok(auth)
    }

    fn layout(&self) -> Result<(usize, usize), EncodeError> {
        let len = self.properties.encoded_len(PLACE)?;
        Ok(match (len, self.code) {
            (0, ReasonCode::Success) => (0, 0),
            (len, _) => (1 + varint_len(len) + len, len),
        })
    }

    pub(crate) fn encoded_len(&self) -> Result<usize, EncodeError> {
        packet_len(self.layout()?.0)
    }

    pub(crate) fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let (remaining, properties) = self.layout()?;
        put_fixed_header(dst, (PacketType::Auth as u8) << 4, remaining)?;
        if remaining > 0 {
            dst.put_u8(self.code as u8);
            self.properties.encode(properties, dst);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::test_util::{decode_err, decode_one, encode_bytes};
    use crate::*;

    #[test]
    fn v500_literal() {
        let packet = Packet::Auth(Auth::default());
        assert_eq!(decode_one(Some(Protocol::V500), b"\xf0\x00"), packet);
        assert_eq!(encode_bytes(&packet, Protocol::V500), b"\xf0\x00");
        let bytes: &[u8] = b"\xf0\x0e\x18\x0c\x15\x00\x05SCRAM\x16\x00\x01x";
        let packet = Packet::Auth(Auth {
            code: ReasonCode::ContinueAuthentication,
            properties: Properties::from(PropertyValues {
                authentication_method: Some("SCRAM".into()),
                authentication_data: Some(Bytes::from_static(b"x")),
                ..PropertyValues::default()
            }),
        });
        assert_eq!(decode_one(Some(Protocol::V500), bytes), packet);
        assert_eq!(encode_bytes(&packet, Protocol::V500), bytes);
    }

    #[test]
    fn not_in_v3() {
        for protocol in [Protocol::V310, Protocol::V311] {
            let err = decode_err(Some(protocol), b"\xf0\x00");
            assert_eq!(err, DecodeError::InvalidPacketType(15));
            assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
            let mut dst = bytes::BytesMut::new();
            assert_eq!(
                encode(&Packet::Auth(Auth::default()), protocol, &mut dst),
                Err(EncodeError::NotInProtocol)
            );
            assert_eq!(
                encoded_len(&Packet::Auth(Auth::default()), protocol),
                Err(EncodeError::NotInProtocol)
            );
        }
    }

    #[test]
    fn invalid() {
        let v500 = Some(Protocol::V500);
        let err = decode_err(v500, b"\xf0\x02\x00\x00");
        assert_eq!(
            err,
            DecodeError::ProtocolError("AUTH without an authentication method")
        );
        assert_eq!(err.reason_code(), ReasonCode::ProtocolError);
        let err = decode_err(v500, b"\xf0\x01\x87");
        assert_eq!(err, DecodeError::InvalidReasonCode(0x87));
        let err = decode_err(v500, b"\xf1\x00");
        assert_eq!(
            err,
            DecodeError::InvalidFlags {
                packet_type: 15,
                flags: 1
            }
        );
        let err = decode_err(v500, b"\xf0\x06\x18\x04\x16\x00\x01x");
        assert_eq!(
            err,
            DecodeError::ProtocolError("authentication data without a method")
        );
        // Reason string is allowed, session expiry is not.
        let err = decode_err(v500, b"\xf0\x07\x18\x05\x11\x00\x00\x00\x00");
        assert_eq!(err, DecodeError::PropertyNotAllowed(0x11));
    }
}
