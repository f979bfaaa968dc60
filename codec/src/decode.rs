//! Streaming decoder: check-then-parse over a `BytesMut` read buffer.
//!
//! `Decoder::decode` first reads the fixed header without consuming anything. The first byte
//! alone is enough to refuse a wrong packet type or reserved flags, and the remaining length to
//! refuse a packet over the maximum size, so both fail before the body is buffered (a flood
//! never makes the connection buffer it). If the packet is not all there yet it returns
//! `Ok(None)`; otherwise it splits the whole frame off the buffer, freezes it and parses it, so
//! topics, strings and payloads are slices of the frame (the shape of rumqttd's `V4::read_mut`
//! and mini-redis' `Frame::check`).
//!
//! After an error the connection is unusable: the broker sends the reason code
//! ([`DecodeError::reason_code`]) where the protocol allows and closes it. What is left in the
//! buffer after an error is unspecified.
//!
//! Server side, the level is unknown until CONNECT: only CONNECT decodes, and a decoded CONNECT
//! sets the level. A second CONNECT also decodes (and resets the level); refusing it is the
//! session's job [MQTT-3.1.0-2], since only the session knows whether one was accepted.

use bytes::{Buf, BytesMut};

use crate::packet::{
    Auth, ConnAck, Connect, Disconnect, PubAck, PubComp, PubRec, PubRel, Publish, SubAck,
    Subscribe, UnsubAck, Unsubscribe,
};
use crate::wire::peek_varint;
use crate::{DecodeError, Packet, Protocol};

/// A streaming MQTT decoder for one connection.
#[derive(Clone, Debug)]
pub struct Decoder {
    max_packet_size: usize,
    protocol: Option<Protocol>,
}

impl Decoder {
    /// A decoder that accepts packets up to `max_packet_size` bytes (fixed header included) and
    /// expects CONNECT first (server side).
    pub fn new(max_packet_size: usize) -> Self {
        Self {
            max_packet_size,
            protocol: None,
        }
    }

    /// A decoder for a connection whose level is already known (client side, or after CONNECT).
    pub fn with_protocol(max_packet_size: usize, protocol: Protocol) -> Self {
        Self {
            max_packet_size,
            protocol: Some(protocol),
        }
    }

    /// Tells the decoder the level CONNECT negotiated; later packets are parsed for it.
    pub fn set_protocol(&mut self, protocol: Protocol) {
        self.protocol = Some(protocol);
    }

    /// The negotiated level, if known.
    pub fn protocol(&self) -> Option<Protocol> {
        self.protocol
    }

    /// The maximum packet size.
    pub fn max_packet_size(&self) -> usize {
        self.max_packet_size
    }

    /// Changes the maximum packet size.
    pub fn set_max_packet_size(&mut self, max: usize) {
        self.max_packet_size = max;
    }

    /// Decodes the next packet from the front of `buf`.
    ///
    /// Returns `Ok(None)` (consuming nothing) while the packet is incomplete. Before the level is
    /// known only CONNECT decodes (anything else is [`DecodeError::NotConnect`]); a decoded
    /// CONNECT sets the level.
    #[inline]
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        check_first_byte(first, self.protocol)?;
        let (len_bytes, remaining) = match peek_varint(&buf[1..]) {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(None),
            // At most four bytes, in the shortest form [MQTT-1.5.5-1] (3.1.1 §2.2.3).
            Err(()) => return Err(DecodeError::MalformedRemainingLength),
        };
        let size = 1 + len_bytes + remaining;
        if size > self.max_packet_size {
            return Err(DecodeError::PacketTooLarge {
                size,
                max: self.max_packet_size,
            });
        }
        if buf.len() < size {
            return Ok(None);
        }
        let mut frame = buf.split_to(size).freeze();
        frame.advance(1 + len_bytes);
        let flags = first & 0x0F;
        let Some(protocol) = self.protocol else {
            // `check_first_byte` let only CONNECT through.
            let connect = Connect::decode(flags, frame)?;
            self.protocol = Some(connect.protocol);
            return Ok(Some(Packet::Connect(Box::new(connect))));
        };
        // PUBLISH and the acknowledgements, the packets of the hot path, build their packet in
        // the returned value (see `Publish::decode`).
        match first >> 4 {
            3 => Publish::decode(flags, frame, protocol),
            4 => PubAck::decode(frame, protocol),
            5 => PubRec::decode(frame, protocol),
            6 => PubRel::decode(frame, protocol),
            7 => PubComp::decode(frame, protocol),
            12 => crate::packet::ping::decode(&frame).map(|()| Some(Packet::PingReq)),
            13 => crate::packet::ping::decode(&frame).map(|()| Some(Packet::PingResp)),
            1 => {
                let connect = Connect::decode(flags, frame)?;
                self.protocol = Some(connect.protocol);
                Ok(Some(Packet::Connect(Box::new(connect))))
            }
            2 => Ok(Some(Packet::ConnAck(ConnAck::decode(frame, protocol)?))),
            8 => Ok(Some(Packet::Subscribe(Subscribe::decode(frame, protocol)?))),
            9 => Ok(Some(Packet::SubAck(SubAck::decode(frame, protocol)?))),
            10 => Ok(Some(Packet::Unsubscribe(Unsubscribe::decode(
                frame, protocol,
            )?))),
            11 => Ok(Some(Packet::UnsubAck(UnsubAck::decode(frame, protocol)?))),
            14 => Ok(Some(Packet::Disconnect(Disconnect::decode(
                frame, protocol,
            )?))),
            // `check_first_byte` let AUTH through only for MQTT 5.
            15 => Ok(Some(Packet::Auth(Auth::decode(frame)?))),
            packet_type => Err(DecodeError::InvalidPacketType(packet_type)),
        }
    }
}

/// Checks the first byte of a fixed header, before anything else is buffered: the packet type
/// for the connection's state and the reserved flag bits.
#[inline]
fn check_first_byte(first: u8, protocol: Option<Protocol>) -> Result<(), DecodeError> {
    let packet_type = first >> 4;
    let flags = first & 0x0F;
    let Some(protocol) = protocol else {
        return match packet_type {
            0 => Err(DecodeError::InvalidPacketType(0)),
            // The first packet from a client MUST be CONNECT [MQTT-3.1.0-1].
            1 => Ok(()),
            _ => Err(DecodeError::NotConnect),
        };
    };
    let invalid = || Err(DecodeError::InvalidFlags { packet_type, flags });
    match packet_type {
        3 => {
            // QoS MUST NOT be 3 [MQTT-3.3.1-4].
            if flags & 0b0110 == 0b0110 {
                return Err(DecodeError::InvalidQoS);
            }
            // DUP MUST be 0 for QoS 0 [MQTT-3.3.1-2] (3.1.1 and 5.0; MQTT 3.1 has no such rule).
            if flags & 0b1110 == 0b1000 && protocol != Protocol::V310 {
                return invalid();
            }
            Ok(())
        }
        // Type 0 is reserved; type 15 is AUTH in MQTT 5 and reserved before it.
        0 => Err(DecodeError::InvalidPacketType(0)),
        15 if !protocol.is_v5() => Err(DecodeError::InvalidPacketType(15)),
        // CONNECT's flags are checked once its own level is known.
        1 => Ok(()),
        // MQTT 3.1 defines DUP, QoS and RETAIN in every fixed header (a retried SUBSCRIBE carries
        // DUP), so its flags are not checked.
        _ if protocol == Protocol::V310 => Ok(()),
        // Reserved flags MUST be as listed [MQTT-2.2.2-1, MQTT-2.2.2-2] (5.0 [MQTT-2.1.3-1]):
        // 0b0010 for PUBREL, SUBSCRIBE and UNSUBSCRIBE [MQTT-3.6.1-1, MQTT-3.8.1-1,
        // MQTT-3.10.1-1], 0 for the others.
        6 | 8 | 10 if flags == 0b0010 => Ok(()),
        6 | 8 | 10 => invalid(),
        _ if flags == 0 => Ok(()),
        _ => invalid(),
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use proptest::prelude::*;

    use crate::strategy::{any_packet, protocol};
    use crate::test_util::{decode_err, decoder};
    use crate::*;

    const CONNECT_V5: &[u8] = b"\x10\x0f\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x02c1";

    #[test]
    fn waits_for_a_whole_packet() {
        let mut decoder = Decoder::new(1024);
        let mut buf = BytesMut::new();
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        buf.extend_from_slice(&[0x10]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        buf.extend_from_slice(&[0x80]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert_eq!(buf.len(), 2);
    }

    #[test]
    fn only_connect_before_the_level_is_known() {
        for first in [0x20u8, 0x30, 0x40, 0x62, 0x82, 0xc0, 0xe0, 0xf0] {
            // The first byte alone is refused [MQTT-3.1.0-1].
            let err = decode_err(None, &[first]);
            assert_eq!(err, DecodeError::NotConnect);
            assert_eq!(err.reason_code(), ReasonCode::ProtocolError);
        }
        assert_eq!(decode_err(None, &[0x00]), DecodeError::InvalidPacketType(0));
        let mut decoder = Decoder::new(1024);
        let mut buf = BytesMut::from(CONNECT_V5);
        buf.extend_from_slice(b"\x30\x0b\x00\x03a/b\x03\x23\x00\x01hi");
        assert!(matches!(
            decoder.decode(&mut buf),
            Ok(Some(Packet::Connect(_)))
        ));
        assert_eq!(decoder.protocol(), Some(Protocol::V500));
        // The PUBLISH after it is parsed as MQTT 5 (with properties).
        let Ok(Some(Packet::Publish(publish))) = decoder.decode(&mut buf) else {
            panic!()
        };
        assert_eq!(publish.properties.topic_alias, Some(1));
        assert_eq!(publish.payload, &b"hi"[..]);
        assert!(buf.is_empty());
    }

    #[test]
    fn reserved_packet_type() {
        for protocol in [Protocol::V310, Protocol::V311, Protocol::V500] {
            let err = decode_err(Some(protocol), b"\x00\x00");
            assert_eq!(err, DecodeError::InvalidPacketType(0));
            assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
        }
    }

    #[test]
    fn remaining_length() {
        // Five bytes [MQTT-2.2.3] / §1.5.5: refused once the fourth byte still continues.
        let err = decode_err(Some(Protocol::V311), b"\x30\xff\xff\xff\xff");
        assert_eq!(err, DecodeError::MalformedRemainingLength);
        assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
        // Not the shortest form [MQTT-1.5.5-1].
        let err = decode_err(Some(Protocol::V311), b"\xc0\x80\x00");
        assert_eq!(err, DecodeError::MalformedRemainingLength);
    }

    #[test]
    fn too_large_before_the_body_arrives() {
        let mut decoder = Decoder::with_protocol(100, Protocol::V311);
        // Remaining length 98: a 100-byte packet fits.
        let mut buf = BytesMut::from(&b"\x30\x62"[..]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        // Remaining length 99: 101 bytes, refused with only the fixed header buffered.
        let mut buf = BytesMut::from(&b"\x30\x63"[..]);
        let err = decoder.decode(&mut buf).unwrap_err();
        assert_eq!(
            err,
            DecodeError::PacketTooLarge {
                size: 101,
                max: 100
            }
        );
        assert_eq!(err.reason_code(), ReasonCode::PacketTooLarge);
        assert_eq!(buf.len(), 2);
        // A 2 MB declaration against the default.
        let mut decoder = Decoder::with_protocol(DEFAULT_MAX_PACKET_SIZE, Protocol::V311);
        let mut buf = BytesMut::from(&b"\x30\x80\x80\x80\x01"[..]);
        assert!(matches!(
            decoder.decode(&mut buf),
            Err(DecodeError::PacketTooLarge { .. })
        ));
        // CONNECT is held to the limit too.
        let mut decoder = Decoder::new(10);
        let mut buf = BytesMut::from(CONNECT_V5);
        assert!(matches!(
            decoder.decode(&mut buf),
            Err(DecodeError::PacketTooLarge { .. })
        ));
    }

    /// Decodes everything in `buf`, checking each decoded packet re-encodes to one that decodes
    /// to itself; stops at the first error or incomplete packet. Never panics on any input.
    fn drain(decoder: &mut Decoder, buf: &mut BytesMut) {
        loop {
            let before = decoder.protocol();
            match decoder.decode(buf) {
                Ok(Some(packet)) => {
                    let protocol = match &packet {
                        Packet::Connect(connect) => connect.protocol,
                        _ => before.expect("a level"),
                    };
                    let mut bytes = BytesMut::new();
                    encode(&packet, protocol, &mut bytes).expect("a decoded packet encodes");
                    let again = super::tests::decoder_for(&packet, protocol).decode(&mut bytes);
                    assert_eq!(again, Ok(Some(packet)));
                }
                Ok(None) | Err(_) => return,
            }
        }
    }

    pub(super) fn decoder_for(packet: &Packet, protocol: Protocol) -> Decoder {
        match packet {
            Packet::Connect(_) => decoder(None),
            _ => decoder(Some(protocol)),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// encode → decode is the identity, for every packet at every level.
        #[test]
        fn round_trip((protocol, packet) in any_packet()) {
            let mut bytes = BytesMut::new();
            encode(&packet, protocol, &mut bytes).unwrap();
            prop_assert_eq!(encoded_len(&packet, protocol), Ok(bytes.len()));
            let mut decoder = decoder_for(&packet, protocol);
            let mut buf = bytes.clone();
            prop_assert_eq!(decoder.decode(&mut buf), Ok(Some(packet.clone())));
            prop_assert!(buf.is_empty());
            if let Packet::Publish(publish) = &packet {
                let mut header = BytesMut::new();
                publish.encode_header(protocol, &mut header).unwrap();
                prop_assert_eq!(&bytes[..header.len()], &header[..]);
                prop_assert_eq!(&bytes[header.len()..], &publish.payload[..]);
            }
        }

        /// Split at every offset: the first part gives `Ok(None)` and consumes nothing.
        #[test]
        fn split_at_every_offset((protocol, packet) in any_packet()) {
            let mut bytes = BytesMut::new();
            encode(&packet, protocol, &mut bytes).unwrap();
            for split in 0..bytes.len() {
                let mut decoder = decoder_for(&packet, protocol);
                let mut buf = BytesMut::from(&bytes[..split]);
                prop_assert_eq!(decoder.decode(&mut buf), Ok(None));
                prop_assert_eq!(buf.len(), split);
                buf.extend_from_slice(&bytes[split..]);
                prop_assert_eq!(decoder.decode(&mut buf), Ok(Some(packet.clone())));
            }
        }

        /// Several packets in one buffer come out one per call, in order.
        #[test]
        fn back_to_back((protocol, packets) in protocol().prop_flat_map(|protocol| {
            (Just(protocol), proptest::collection::vec(crate::strategy::packet(protocol), 1..6))
        })) {
            let packets: Vec<Packet> = packets
                .into_iter()
                .filter(|packet| !matches!(packet, Packet::Connect(_)))
                .collect();
            let mut buf = BytesMut::new();
            for packet in &packets {
                encode(packet, protocol, &mut buf).unwrap();
            }
            let mut decoder = decoder(Some(protocol));
            for packet in packets {
                prop_assert_eq!(decoder.decode(&mut buf), Ok(Some(packet)));
            }
            prop_assert_eq!(decoder.decode(&mut buf), Ok(None));
            prop_assert!(buf.is_empty());
        }

        /// Random bytes never panic, at any level or none.
        #[test]
        fn random_bytes(level in proptest::option::of(protocol()),
                        bytes in proptest::collection::vec(any::<u8>(), 0..300),
                        max in prop_oneof![Just(usize::MAX), 0usize..64]) {
            let mut decoder = decoder(level);
            decoder.set_max_packet_size(max);
            drain(&mut decoder, &mut BytesMut::from(&bytes[..]));
        }

        /// Valid packets with bytes flipped, inserted, removed or cut never panic, and what
        /// still decodes re-encodes to itself.
        #[test]
        fn mutated((protocol, packet) in any_packet(),
                   edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..4)) {
            let mut bytes = BytesMut::new();
            encode(&packet, protocol, &mut bytes).unwrap();
            let mut bytes = bytes.to_vec();
            for (index, value, kind) in edits {
                if bytes.is_empty() {
                    break;
                }
                let at = index.index(bytes.len());
                match kind {
                    0 => bytes[at] = value,
                    1 => bytes[at] ^= 1 << (value % 8),
                    2 => bytes.insert(at, value),
                    _ => {
                        bytes.remove(at);
                    }
                }
            }
            drain(&mut decoder_for(&packet, protocol), &mut BytesMut::from(&bytes[..]));
        }
    }
}
